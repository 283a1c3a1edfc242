//! Tag: a sink head gives every token it catches the sink's value vector. This module extracts the
//! tags, splits each head output into its tag part and the rest, and measures how much of the head
//! output lies in the span of the tags: ||A V U U^T||_F / ||A V||_F (Zhang et al., arXiv 2502.00919).

use serde::Serialize;

use super::linalg::{cosine, orthonormal_basis};

/// Relative tolerance below which a tag adds no new direction to the span.
const RANK_TOL: f64 = 1e-6;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagAnalysis {
    pub sinks: Vec<usize>,
    /// The sink tokens' value vectors v_s (head space, before W_O), [|S|][D].
    pub tags: Vec<Vec<f32>>,
    /// Their directions in the residual stream, v_s · W_O[h] ([|S|][hidden]), when W_O was given.
    pub tag_resid: Option<Vec<Vec<f32>>>,
    /// Pairwise cosine similarity of the tags, [|S|][|S|].
    pub tag_cosine: Vec<Vec<f32>>,
    /// Dimension of the tag span.
    pub rank: usize,
    /// z_tag[q] = sum over sinks s <= q of A[q, s] v_s, [T·D].
    #[serde(skip)]
    pub z_tag: Vec<f32>,
    /// z_no_tag = z - z_tag, [T·D].
    #[serde(skip)]
    pub z_no_tag: Vec<f32>,
    /// ||Z U U^T||_F / ||Z||_F with Z = A V and U an orthonormal basis of the tag span.
    pub variance_explained: f32,
    /// The square of `variance_explained` (a fraction of squared norm).
    pub variance_explained_sq: f32,
    /// The same ratio for each tag alone (span of one v_s).
    pub per_tag_explained: Vec<f32>,
    /// ||z_tag||_F / ||z||_F: the share of the output that literally is the tag part.
    pub tag_part_norm_ratio: f32,
}

/// Z = A V for one head: pattern [T, T], values [T, D] -> [T, D].
pub fn head_output(pattern: &[f32], v: &[f32], t: usize, d: usize) -> Vec<f32> {
    let mut z = vec![0.0f32; t * d];
    for q in 0..t {
        let out = &mut z[q * d..(q + 1) * d];
        for k in 0..=q {
            let a = pattern[q * t + k];
            if a != 0.0 {
                out.iter_mut().zip(&v[k * d..(k + 1) * d]).for_each(|(o, &x)| *o += a * x);
            }
        }
    }
    z
}

/// Squared Frobenius norm of the projection of the rows of `z` ([T, D]) on the span of `basis`.
fn projected_sq(z: &[f32], d: usize, basis: &[Vec<f64>]) -> f64 {
    z.chunks_exact(d)
        .map(|row| basis.iter().map(|b| row.iter().zip(b).map(|(&x, y)| x as f64 * y).sum::<f64>().powi(2)).sum::<f64>())
        .sum()
}

/// Tag analysis of one head.
/// * `pattern` [T, T], `v` [T, D] (the head's KV group), `sinks` the sink tokens;
/// * `z` the head output [T, D] if already computed (else it is computed as A V);
/// * `w_o` the head's slice of W_O, [D, hidden], to map tags into the residual stream.
pub fn tags(pattern: &[f32], v: &[f32], t: usize, d: usize, sinks: &[usize], z: Option<&[f32]>, w_o: Option<(&[f32], usize)>) -> TagAnalysis {
    let computed;
    let z = match z {
        Some(z) => z,
        None => {
            computed = head_output(pattern, v, t, d);
            &computed
        }
    };
    let tags: Vec<Vec<f32>> = sinks.iter().map(|&s| v[s * d..(s + 1) * d].to_vec()).collect();
    let tag_resid = w_o.map(|(w, hidden)| {
        tags.iter()
            .map(|tag| {
                let mut out = vec![0.0f32; hidden];
                for (i, &x) in tag.iter().enumerate() {
                    out.iter_mut().zip(&w[i * hidden..(i + 1) * hidden]).for_each(|(o, &w)| *o += x * w);
                }
                out
            })
            .collect()
    });
    let tag_cosine = tags.iter().map(|a| tags.iter().map(|b| cosine(a, b)).collect()).collect();

    let mut z_tag = vec![0.0f32; t * d];
    for q in 0..t {
        for (&s, tag) in sinks.iter().zip(&tags) {
            if s <= q {
                let a = pattern[q * t + s];
                z_tag[q * d..(q + 1) * d].iter_mut().zip(tag).for_each(|(o, &x)| *o += a * x);
            }
        }
    }
    let z_no_tag: Vec<f32> = z.iter().zip(&z_tag).map(|(a, b)| a - b).collect();

    let total: f64 = z.iter().map(|&x| (x as f64).powi(2)).sum();
    let ratio = |basis: &[Vec<f64>]| if total > 0.0 { (projected_sq(z, d, basis) / total).sqrt() as f32 } else { 0.0 };
    let refs: Vec<&[f32]> = tags.iter().map(Vec::as_slice).collect();
    let basis = orthonormal_basis(&refs, RANK_TOL);
    let variance_explained = ratio(&basis);
    let per_tag_explained = refs.iter().map(|tag| ratio(&orthonormal_basis(&[tag], RANK_TOL))).collect();
    let tag_sq: f64 = z_tag.iter().map(|&x| (x as f64).powi(2)).sum();
    TagAnalysis {
        sinks: sinks.to_vec(),
        tags,
        tag_resid,
        tag_cosine,
        rank: basis.len(),
        z_tag,
        z_no_tag,
        variance_explained,
        variance_explained_sq: variance_explained * variance_explained,
        per_tag_explained,
        tag_part_norm_ratio: if total > 0.0 { (tag_sq / total).sqrt() as f32 } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pure_sink_output_is_all_tag() {
        let (t, d) = (6, 4);
        let mut a = vec![0.0; t * t];
        for q in 0..t {
            a[q * t] = 1.0;
        }
        let v: Vec<f32> = (0..t * d).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let r = tags(&a, &v, t, d, &[0], None, None);
        assert!((r.variance_explained - 1.0).abs() < 1e-6);
        assert!(r.z_no_tag.iter().all(|x| x.abs() < 1e-6));
        assert_eq!(r.rank, 1);
    }

    #[test]
    fn split_adds_up_and_ratio_in_unit_interval() {
        let (t, d) = (7, 5);
        let mut a = vec![0.0f32; t * t];
        for q in 0..t {
            let w: Vec<f32> = (0..=q).map(|k| 1.0 + ((q * 3 + k * 5) % 4) as f32).collect();
            let s: f32 = w.iter().sum();
            for k in 0..=q {
                a[q * t + k] = w[k] / s;
            }
        }
        let v: Vec<f32> = (0..t * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let r = tags(&a, &v, t, d, &[0, 3], None, Some((&[1.0; 5 * 3], 3)));
        let z = head_output(&a, &v, t, d);
        for i in 0..t * d {
            assert!((r.z_tag[i] + r.z_no_tag[i] - z[i]).abs() < 1e-6);
        }
        assert!((0.0..=1.0).contains(&r.variance_explained));
        assert!((r.variance_explained_sq - r.variance_explained.powi(2)).abs() < 1e-7);
        assert_eq!(r.tag_cosine[0][0], 1.0);
        assert_eq!(r.tag_resid.as_ref().map(|x| x[0].len()), Some(3));
        // each tag alone explains no more than both together
        assert!(r.per_tag_explained.iter().all(|&x| x <= r.variance_explained + 1e-6));
    }
}
