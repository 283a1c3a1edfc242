//! Release: does a head's tag persist in the residual stream at later layers? And the massive
//! activations that sink tokens are known to carry.

use serde::Serialize;

use super::linalg::{dot, norm};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Release {
    /// The layers measured (the head's layer and every later recorded one).
    pub layers: Vec<usize>,
    /// `proj[i][t]`: residual stream of token t after layer `layers[i]`, projected on the unit tag direction.
    pub proj: Vec<Vec<f32>>,
    /// `cosine[i][t]`: the same as a cosine (the stream's norm grows with depth).
    pub cosine: Vec<Vec<f32>>,
}

/// Project every token's residual stream (`resids`: (layer, [T, hidden]) pairs) on `direction`.
pub fn release(resids: &[(usize, &[f32])], hidden: usize, direction: &[f32]) -> Release {
    let dn = norm(direction);
    let unit: Vec<f32> = direction.iter().map(|&x| if dn > 0.0 { (x as f64 / dn) as f32 } else { 0.0 }).collect();
    let mut out = Release { layers: Vec::new(), proj: Vec::new(), cosine: Vec::new() };
    for &(l, r) in resids {
        out.layers.push(l);
        let (p, c): (Vec<f32>, Vec<f32>) = r
            .chunks_exact(hidden)
            .map(|row| {
                let p = dot(row, &unit);
                let n = norm(row);
                (p as f32, if n > 0.0 { (p / n) as f32 } else { 0.0 })
            })
            .unzip();
        out.proj.push(p);
        out.cosine.push(c);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Massive {
    /// L2 norm of the token's residual stream.
    pub norm: f32,
    /// Largest |channel|.
    pub max_abs: f32,
    /// Which channel.
    pub channel: usize,
}

/// Per token of `resid` ([T, hidden]): the norm and the largest channel magnitude.
pub fn massive(resid: &[f32], hidden: usize) -> Vec<Massive> {
    resid
        .chunks_exact(hidden)
        .map(|row| {
            let (channel, max_abs) = row.iter().map(|x| x.abs()).enumerate().fold((0, 0.0f32), |b, (i, x)| if x > b.1 { (i, x) } else { b });
            Massive { norm: norm(row) as f32, max_abs, channel }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_and_outliers() {
        let hidden = 3;
        let r0 = [1.0, 0.0, 0.0, 0.0, 2.0, 0.0];
        let r1 = [3.0, 4.0, 0.0, 0.0, 0.0, -9.0];
        let rel = release(&[(4, &r0), (5, &r1)], hidden, &[2.0, 0.0, 0.0]);
        assert_eq!(rel.layers, vec![4, 5]);
        assert_eq!(rel.proj, vec![vec![1.0, 0.0], vec![3.0, 0.0]]);
        assert!((rel.cosine[1][0] - 0.6).abs() < 1e-6);
        let m = massive(&r1, hidden);
        assert_eq!(m[1].channel, 2);
        assert_eq!(m[1].max_abs, 9.0);
        assert_eq!(m[0].norm, 5.0);
    }
}
