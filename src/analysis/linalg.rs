//! Small dense linear algebra on row-major f32 slices (accumulating in f64 where it matters).

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

pub fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let n = norm(a) * norm(b);
    if n > 0.0 {
        (dot(a, b) / n) as f32
    } else {
        0.0
    }
}

/// An orthonormal basis of the span of `vectors` (modified Gram–Schmidt, twice for stability).
/// Vectors whose remaining part is below `rel_tol` of their norm are dropped (rank deficiency).
pub fn orthonormal_basis(vectors: &[&[f32]], rel_tol: f64) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for v in vectors {
        let mut w: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        let n0 = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n0 == 0.0 {
            continue;
        }
        for _ in 0..2 {
            for b in &basis {
                let p: f64 = w.iter().zip(b).map(|(x, y)| x * y).sum();
                w.iter_mut().zip(b).for_each(|(x, y)| *x -= p * y);
            }
        }
        let n = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n > rel_tol * n0 {
            w.iter_mut().for_each(|x| *x /= n);
            basis.push(w);
        }
    }
    basis
}

/// The coordinates of each row of `x` ([rows, cols]) on the orthonormal `basis`: [rows, |basis|].
pub fn project_rows(x: &[f32], cols: usize, basis: &[Vec<f64>]) -> Vec<f32> {
    x.chunks_exact(cols).flat_map(|r| basis.iter().map(move |b| r.iter().zip(b).map(|(&v, w)| v as f64 * w).sum::<f64>() as f32)).collect()
}

/// Eigen-decomposition of a small symmetric matrix (cyclic Jacobi). Returns eigenvalues in
/// descending order and the matching eigenvectors as rows.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * n + j].powi(2)).sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i].powi(2)).sum();
        if off <= 1e-30 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let vectors = order.iter().map(|&i| (0..n).map(|k| v[k * n + i]).collect()).collect();
    (values, vectors)
}

/// The `k` leading eigenpairs of the symmetric positive semi-definite `m` x `m` matrix `a`
/// by subspace iteration with a Rayleigh–Ritz step (deterministic start).
pub fn top_eigen(a: &[f64], m: usize, k: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let k = k.min(m);
    if m <= 48 {
        let (vals, vecs) = symmetric_eigen(a, m);
        return (vals.into_iter().take(k).collect(), vecs.into_iter().take(k).collect());
    }
    let block = (k + 4).min(m);
    // Deterministic, generic start: a fixed pseudo-random sequence.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut q: Vec<Vec<f64>> = (0..block)
        .map(|_| {
            (0..m)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                })
                .collect()
        })
        .collect();
    let matvec = |x: &[f64]| -> Vec<f64> { (0..m).map(|i| a[i * m..(i + 1) * m].iter().zip(x).map(|(p, q)| p * q).sum()).collect() };
    let orthonormalize = |q: &mut Vec<Vec<f64>>| {
        for i in 0..q.len() {
            for j in 0..i {
                let p: f64 = q[i].iter().zip(&q[j]).map(|(x, y)| x * y).sum();
                let qj = q[j].clone();
                q[i].iter_mut().zip(&qj).for_each(|(x, y)| *x -= p * y);
            }
            let n = q[i].iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
            q[i].iter_mut().for_each(|x| *x /= n);
        }
    };
    orthonormalize(&mut q);
    let mut prev = vec![f64::INFINITY; k];
    for _ in 0..500 {
        let mut z: Vec<Vec<f64>> = q.iter().map(|x| matvec(x)).collect();
        orthonormalize(&mut z);
        q = z;
        let ritz: Vec<f64> = q.iter().take(k).map(|x| matvec(x).iter().zip(x).map(|(p, q)| p * q).sum()).collect();
        let done = ritz.iter().zip(&prev).all(|(r, p)| (r - p).abs() <= 1e-12 * r.abs().max(1e-300));
        prev = ritz;
        if done {
            break;
        }
    }
    // Rayleigh–Ritz on the block.
    let aq: Vec<Vec<f64>> = q.iter().map(|x| matvec(x)).collect();
    let mut small = vec![0.0; block * block];
    for i in 0..block {
        for j in 0..block {
            small[i * block + j] = q[i].iter().zip(&aq[j]).map(|(x, y)| x * y).sum();
        }
    }
    let (vals, vecs) = symmetric_eigen(&small, block);
    let vectors = vecs
        .iter()
        .take(k)
        .map(|c| {
            let mut out = vec![0.0; m];
            for (ci, qi) in c.iter().zip(&q) {
                out.iter_mut().zip(qi).for_each(|(o, x)| *o += ci * x);
            }
            out
        })
        .collect();
    (vals.into_iter().take(k).collect(), vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises() {
        let a = [4.0, 1.0, 0.0, 1.0, 3.0, 0.5, 0.0, 0.5, 1.0];
        let (vals, vecs) = symmetric_eigen(&a, 3);
        for (l, v) in vals.iter().zip(&vecs) {
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i * 3 + j] * v[j]).sum();
                assert!((av - l * v[i]).abs() < 1e-10);
            }
        }
        assert!(vals[0] >= vals[1] && vals[1] >= vals[2]);
    }

    #[test]
    fn subspace_iteration_matches_jacobi() {
        let m = 60;
        let mut a = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..m {
                a[i * m + j] = ((i * 7 + j * 3) % 11) as f64 * 0.01 + if i == j { (m - i) as f64 } else { 0.0 };
            }
        }
        for i in 0..m {
            for j in 0..i {
                let s = (a[i * m + j] + a[j * m + i]) / 2.0;
                a[i * m + j] = s;
                a[j * m + i] = s;
            }
        }
        let (full, _) = symmetric_eigen(&a, m);
        let (top, vecs) = top_eigen(&a, m, 2);
        assert!((full[0] - top[0]).abs() < 1e-6 && (full[1] - top[1]).abs() < 1e-6);
        let d: f64 = vecs[0].iter().zip(&vecs[1]).map(|(x, y)| x * y).sum();
        assert!(d.abs() < 1e-9);
    }
}
