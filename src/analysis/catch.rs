//! Catch: which sink each query attends to most, how much of its attention goes to sinks, and the
//! span of queries each sink catches.

use serde::Serialize;

/// Smallest share of a query's attention that its strongest sink must hold for the query to count
/// as *caught* by it. Without a floor nearly every token would be "caught" by some sink through a
/// sliver of attention; with it, a caught token really receives a visible part of the sink's value
/// vector (its tag). 0.2 is the paper's own sink threshold, applied per query instead of on average.
pub const MIN_CATCH_SHARE: f32 = 0.2;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadCatch {
    /// For each query, the sink (among those at or before it) with the largest attention, if that
    /// attention is at least the catch share.
    pub top_sink: Vec<Option<usize>>,
    /// For each query, the total attention on sinks.
    pub sink_mass: Vec<f32>,
    /// For each sink (in the given order), the queries it catches.
    pub spans: Vec<(usize, Vec<usize>)>,
}

/// Catch analysis of one head's pattern [T, T] for the sink set `sinks`: a query is caught by its
/// strongest sink when that sink holds at least `min_share` of its attention.
pub fn catch(pattern: &[f32], t: usize, sinks: &[usize], min_share: f32) -> HeadCatch {
    let mut top_sink = Vec::with_capacity(t);
    let mut sink_mass = Vec::with_capacity(t);
    let mut spans: Vec<(usize, Vec<usize>)> = sinks.iter().map(|&s| (s, Vec::new())).collect();
    for q in 0..t {
        let row = &pattern[q * t..(q + 1) * t];
        let mut best: Option<(usize, f32)> = None;
        let mut mass = 0.0f64;
        for (i, &s) in sinks.iter().enumerate() {
            if s > q {
                continue;
            }
            mass += row[s] as f64;
            if row[s] > 0.0 && row[s] >= min_share && best.is_none_or(|(_, b)| row[s] > b) {
                best = Some((i, row[s]));
            }
        }
        if let Some((i, _)) = best {
            spans[i].1.push(q);
        }
        top_sink.push(best.map(|(i, _)| sinks[i]));
        sink_mass.push(mass as f32);
    }
    HeadCatch { top_sink, sink_mass, spans }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sinks catching two spans: queries 1..=3 attend to token 0, queries 5..=7 to token 4.
    pub fn two_spans() -> (Vec<f32>, usize) {
        let t = 8;
        let mut a = vec![0.0; t * t];
        a[0] = 1.0;
        for q in 1..4 {
            a[q * t] = 0.8;
            a[q * t + q] = 0.2;
        }
        a[4 * t] = 0.4;
        a[4 * t + 4] = 0.6;
        for q in 5..8 {
            a[q * t] = 0.1;
            a[q * t + 4] = 0.7;
            a[q * t + q] = 0.2;
        }
        (a, t)
    }

    #[test]
    fn two_sinks_two_spans() {
        let (a, t) = two_spans();
        let al = crate::analysis::sinks::alpha(&a, t);
        let sinks: Vec<usize> = (0..t).filter(|&k| al[k] > 0.3).collect();
        assert_eq!(sinks, vec![0, 4]);
        let c = catch(&a, t, &[0, 4], 0.0);
        assert_eq!(c.spans, vec![(0, vec![0, 1, 2, 3]), (4, vec![4, 5, 6, 7])]);
        assert!((c.sink_mass[6] - 0.8).abs() < 1e-6);
        assert_eq!(c.top_sink[2], Some(0));
        // query 4 gives token 0 only 0.4 and itself 0.6: with a 0.5 floor it is caught by nobody
        let c = catch(&a, t, &[0, 4], 0.5);
        assert_eq!(c.top_sink[4], Some(4), "token 4 attends 0.6 to itself, a sink");
        let c = catch(&a, t, &[0], 0.5);
        assert_eq!(c.top_sink[4], None);
        assert_eq!(c.top_sink[5], None, "0.1 on token 0 is no catch");
        assert_eq!(c.spans, vec![(0, vec![0, 1, 2, 3])]);
    }
}
