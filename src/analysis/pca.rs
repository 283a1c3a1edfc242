//! 2-D principal components (centred, via the SVD of the data through its smaller Gram matrix),
//! for the paper's Figure 2: a head's input tokens beside its output A V; and how much of a point
//! cloud's variance a grouping of its points explains (do tokens cluster by the sink that caught them?).

use serde::Serialize;

use super::linalg::top_eigen;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pca2 {
    /// Each row's coordinates on the first two components.
    pub coords: Vec<[f32; 2]>,
    /// Fraction of the total variance on each of the two components.
    pub explained: [f32; 2],
    /// The two unit components in feature space, [2][cols].
    pub components: Vec<Vec<f32>>,
}

/// PCA of `x` ([rows, cols], row-major): rows are centred, then the two leading right singular
/// vectors are found from X Xᵀ or Xᵀ X, whichever is smaller.
pub fn pca2(x: &[f32], rows: usize, cols: usize) -> Pca2 {
    let mut mean = vec![0.0f64; cols];
    for r in x.chunks_exact(cols) {
        mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    let xc: Vec<f64> = x.chunks_exact(cols).flat_map(|r| r.iter().zip(&mean).map(|(&v, m)| v as f64 - m)).collect();
    let total: f64 = xc.iter().map(|v| v * v).sum();
    let row = |i: usize| &xc[i * cols..(i + 1) * cols];
    let mut components: Vec<Vec<f64>> = if rows <= cols {
        // Gram G = Xc Xcᵀ: eigenvectors u give components Xcᵀ u / |Xcᵀ u|.
        let mut g = vec![0.0; rows * rows];
        for i in 0..rows {
            for j in 0..=i {
                let s: f64 = row(i).iter().zip(row(j)).map(|(a, b)| a * b).sum();
                g[i * rows + j] = s;
                g[j * rows + i] = s;
            }
        }
        let (_, us) = top_eigen(&g, rows, 2);
        us.iter()
            .map(|u| {
                let mut c = vec![0.0; cols];
                for (i, &ui) in u.iter().enumerate() {
                    c.iter_mut().zip(row(i)).for_each(|(o, x)| *o += ui * x);
                }
                c
            })
            .collect()
    } else {
        let mut cov = vec![0.0; cols * cols];
        for i in 0..rows {
            let r = row(i);
            for a in 0..cols {
                for b in 0..=a {
                    cov[a * cols + b] += r[a] * r[b];
                }
            }
        }
        for a in 0..cols {
            for b in 0..a {
                cov[b * cols + a] = cov[a * cols + b];
            }
        }
        top_eigen(&cov, cols, 2).1
    };
    for c in components.iter_mut() {
        let n = c.iter().map(|v| v * v).sum::<f64>().sqrt();
        if n > 0.0 {
            c.iter_mut().for_each(|v| *v /= n);
        }
        // Sign convention: the largest-magnitude entry is positive (stable pictures).
        if let Some(m) = c.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs())) {
            if m < 0.0 {
                c.iter_mut().for_each(|v| *v = -*v);
            }
        }
    }
    while components.len() < 2 {
        components.push(vec![0.0; cols]);
    }
    let coords: Vec<[f32; 2]> = (0..rows)
        .map(|i| {
            let p = |c: &Vec<f64>| row(i).iter().zip(c).map(|(a, b)| a * b).sum::<f64>() as f32;
            [p(&components[0]), p(&components[1])]
        })
        .collect();
    let var = |k: usize| coords.iter().map(|c| (c[k] as f64).powi(2)).sum::<f64>();
    let explained = if total > 0.0 { [(var(0) / total) as f32, (var(1) / total) as f32] } else { [0.0, 0.0] };
    Pca2 { coords, explained, components: components.into_iter().map(|c| c.into_iter().map(|v| v as f32).collect()).collect() }
}

/// The share of the variance of the labelled rows of `x` ([rows, cols]) that lies between the
/// groups' centroids (the correlation ratio η²): 1 when each row equals its group's centroid, about 0
/// when the groups are random. Rows labelled `None` are left out. `None` when fewer than two groups
/// have members, or the labelled rows do not vary.
pub fn grouping(x: &[f32], cols: usize, labels: &[Option<usize>]) -> Option<f32> {
    let rows: Vec<(usize, usize)> = labels.iter().enumerate().filter_map(|(i, l)| l.map(|g| (i, g))).filter(|&(i, _)| (i + 1) * cols <= x.len()).collect();
    let mut groups: Vec<usize> = rows.iter().map(|&(_, g)| g).collect();
    groups.sort_unstable();
    groups.dedup();
    if groups.len() < 2 {
        return None;
    }
    let row = |i: usize| &x[i * cols..(i + 1) * cols];
    let mut mean = vec![0.0f64; cols];
    let mut centroids = vec![vec![0.0f64; cols]; groups.len()];
    let mut counts = vec![0usize; groups.len()];
    for &(i, g) in &rows {
        let gi = groups.binary_search(&g).ok()?;
        counts[gi] += 1;
        for (k, &v) in row(i).iter().enumerate() {
            mean[k] += v as f64;
            centroids[gi][k] += v as f64;
        }
    }
    let n = rows.len() as f64;
    mean.iter_mut().for_each(|m| *m /= n);
    for (c, &m) in centroids.iter_mut().zip(&counts) {
        c.iter_mut().for_each(|v| *v /= m as f64);
    }
    let total: f64 = rows.iter().map(|&(i, _)| row(i).iter().zip(&mean).map(|(&v, m)| (v as f64 - m).powi(2)).sum::<f64>()).sum();
    let between: f64 = centroids.iter().zip(&counts).map(|(c, &m)| m as f64 * c.iter().zip(&mean).map(|(a, b)| (a - b).powi(2)).sum::<f64>()).sum();
    (total > 0.0).then(|| (between / total).clamp(0.0, 1.0) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_measures_clusters() {
        // two tight clusters far apart: nearly all variance is between the groups
        let x = [0.0, 0.0, 0.1, 0.0, 10.0, 10.0, 10.1, 10.0, 5.0, 5.0];
        let l = [Some(0), Some(0), Some(4), Some(4), None];
        assert!(grouping(&x, 2, &l).unwrap() > 0.999);
        // the same points with labels that cut across the clusters: almost nothing explained
        let l2 = [Some(0), Some(4), Some(0), Some(4), None];
        assert!(grouping(&x, 2, &l2).unwrap() < 0.01);
        // one group only, or no variance: no answer
        assert_eq!(grouping(&x, 2, &[Some(0), Some(0), None, None, None]), None);
        assert_eq!(grouping(&[1.0, 1.0, 1.0, 1.0], 2, &[Some(0), Some(1)]), None);
    }

    #[test]
    fn recovers_a_dominant_direction_and_is_orthonormal() {
        // points along (3, 4, 0)/5 with a little spread along (0, 0, 1)
        let rows = 40;
        let mut x = Vec::new();
        for i in 0..rows {
            let s = i as f32 - 20.0;
            x.extend([0.6 * s, 0.8 * s, 0.1 * ((i % 5) as f32 - 2.0)]);
        }
        let p = pca2(&x, rows, 3);
        let c0 = &p.components[0];
        assert!((c0[0] - 0.6).abs() < 1e-3 && (c0[1] - 0.8).abs() < 1e-3, "{c0:?}");
        for comp in &p.components {
            let n: f32 = comp.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
        let d: f32 = p.components[0].iter().zip(&p.components[1]).map(|(a, b)| a * b).sum();
        assert!(d.abs() < 1e-5);
        assert!(p.explained[0] >= p.explained[1] && p.explained[0] + p.explained[1] <= 1.0 + 1e-5);
        // Gram route (fewer rows than columns): three points on a line in 10-D
        let u: Vec<f32> = (0..10).map(|i| (i as f32 + 1.0) / 19.621416).collect();
        let line: Vec<f32> = [-1.0f32, 0.5, 2.0].iter().flat_map(|s| u.iter().map(move |x| s * x)).collect();
        let p = pca2(&line, 3, 10);
        for (a, b) in p.components[0].iter().zip(&u) {
            assert!((a - b).abs() < 1e-4);
        }
        assert!((p.explained[0] - 1.0).abs() < 1e-5);
        // wide data uses the Gram route
        let wide: Vec<f32> = (0..4 * 10).map(|i| ((i * 37) % 11) as f32).collect();
        let p = pca2(&wide, 4, 10);
        let d: f32 = p.components[0].iter().zip(&p.components[1]).map(|(a, b)| a * b).sum();
        assert!(d.abs() < 1e-5);
    }
}
