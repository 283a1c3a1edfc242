//! A large block product split across helpers by ranges of output rows (in the browser's CPU
//! worker: other Web Workers running the same wasm, see `web::helpers`; natively nothing is
//! installed and every product runs on the calling thread).
//!
//! Each part is computed with the same kernel as the whole product would be, over the full length
//! of every row, so the split changes no output value by a single bit (each output is one row's dot
//! product, its terms summed in the same order whichever rows are computed next to it). Only the
//! tiled kernel's products are split (4 input rows or more, and large enough to pay for the copies
//! and the wake-up: [`MIN_MACS`]).

use std::cell::RefCell;

use crate::quant::{self, QType, QuantError, TILED_FROM_ROWS};

/// Workers that compute parts of a product.
pub trait Helpers {
    /// How many helpers there are (some may not be ready yet: [`Helpers::send`] then says no).
    fn count(&self) -> usize;
    /// Start helper `h` on x [t, k] times the weight rows `rows` (`n_rows` rows of `ty`, the rows
    /// this helper computes of the weight `id`; ids are never reused for other bytes, so a helper
    /// may keep the rows and skip copying them again). False: not sent (the helper is not ready,
    /// is gone, or the product does not fit its buffer); the caller computes that part.
    #[allow(clippy::too_many_arguments)]
    fn send(&self, h: usize, id: u64, ty: QType, x: &[f32], t: usize, k: usize, rows: &[u8], n_rows: usize) -> bool;
    /// Wait for helper `h`'s part, [t, n_rows] row-major, into `out`. False: it failed or did not
    /// answer in time (the caller computes the part; the helper is not used again).
    fn receive(&self, h: usize, out: &mut [f32]) -> bool;
}

/// Shared helpers (the web worker keeps a handle to its pool after installing it).
impl<H: Helpers + ?Sized> Helpers for std::rc::Rc<H> {
    fn count(&self) -> usize {
        (**self).count()
    }
    fn send(&self, h: usize, id: u64, ty: QType, x: &[f32], t: usize, k: usize, rows: &[u8], n_rows: usize) -> bool {
        (**self).send(h, id, ty, x, t, k, rows, n_rows)
    }
    fn receive(&self, h: usize, out: &mut [f32]) -> bool {
        (**self).receive(h, out)
    }
}

thread_local! {
    static HELPERS: RefCell<Option<Box<dyn Helpers>>> = const { RefCell::new(None) };
}

/// Products with fewer multiply-adds than this run unsplit: a part sent to a helper costs two
/// copies of x and of its output through shared memory and the hand-over (SmolLM2's smallest
/// layer product at T = 4, 4 x 576 x 192 = 0.4 M, stays local).
///
/// The fused kernel's products (1–3 input rows: one more typed token) are not split at all:
/// measured in Chromium, splitting them made one more word slower (40 vs 22 ms at T = 64; its
/// products take ~0.1 ms each, streamed from memory).
pub const MIN_MACS: usize = 1 << 19;

/// Use `helpers` for the products of this thread from now on.
pub fn install(helpers: Box<dyn Helpers>) {
    HELPERS.with(|h| *h.borrow_mut() = Some(helpers));
}

/// Output rows of part `p` of `parts` of a product with `n` rows: equal shares in multiples of 16
/// rows (whole tiles of every kernel), the last part takes the rest (possibly none).
fn part_rows(n: usize, parts: usize, p: usize) -> std::ops::Range<usize> {
    let share = n.div_ceil(parts).div_ceil(16) * 16;
    (p * share).min(n)..((p + 1) * share).min(n)
}

/// [`quant::matmul_nt_q`] for the weight `id`, split across the installed helpers where it pays.
#[allow(clippy::too_many_arguments)]
pub fn matmul_nt_q(id: u64, x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &mut [f32]) -> Result<(), QuantError> {
    if t < TILED_FROM_ROWS || t.saturating_mul(k).saturating_mul(n) < MIN_MACS {
        return quant::matmul_nt_q(x, t, k, w, ty, n, out);
    }
    HELPERS.with(|cell| {
        let guard = cell.borrow();
        let Some(helpers) = guard.as_ref().filter(|h| h.count() > 0) else {
            return quant::matmul_nt_q(x, t, k, w, ty, n, out);
        };
        split(helpers.as_ref(), id, x, t, k, w, ty, n, out)
    })
}

#[allow(clippy::too_many_arguments)]
fn split(helpers: &dyn Helpers, id: u64, x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &mut [f32]) -> Result<(), QuantError> {
    // the checks of the whole product, before any part is sent
    quant::check(x, t, k, w, ty, n, out)?;
    let parts = helpers.count() + 1;
    let rb = ty.row_bytes(k);
    // part p > 0 goes to helper p - 1; part 0 is ours
    let sent: Vec<bool> = (1..parts)
        .map(|p| {
            let r = part_rows(n, parts, p);
            !r.is_empty() && helpers.send(p - 1, id, ty, x, t, k, &w[r.start * rb..r.end * rb], r.len())
        })
        .collect();
    if !sent.contains(&true) {
        // (no helper took a part: the same numbers in one piece, without the copies)
        return quant::matmul_nt_q(x, t, k, w, ty, n, out);
    }
    let mut part = Vec::new();
    for p in 0..parts {
        let r = part_rows(n, parts, p);
        if r.is_empty() {
            continue;
        }
        part.clear();
        part.resize(t * r.len(), 0.0);
        let done = p > 0 && sent[p - 1] && helpers.receive(p - 1, &mut part);
        if !done {
            quant::matmul_nt_q(x, t, k, &w[r.start * rb..r.end * rb], ty, r.len(), &mut part)?;
        }
        for (o, src) in out.chunks_exact_mut(n).zip(part.chunks_exact(r.len())) {
            o[r.clone()].copy_from_slice(src);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Helpers that compute their part at once on this thread (or refuse, or fail), counting what
    /// they were asked.
    struct Local {
        n: usize,
        refuse: bool,
        fail: bool,
        sent: Rc<Cell<usize>>,
        pending: RefCell<Vec<Option<Vec<f32>>>>,
    }

    impl Helpers for Local {
        fn count(&self) -> usize {
            self.n
        }
        fn send(&self, h: usize, _id: u64, ty: QType, x: &[f32], t: usize, k: usize, rows: &[u8], n_rows: usize) -> bool {
            if self.refuse {
                return false;
            }
            let mut o = vec![0.0; t * n_rows];
            quant::matmul_nt_q(x, t, k, rows, ty, n_rows, &mut o).unwrap();
            self.pending.borrow_mut()[h] = Some(o);
            self.sent.set(self.sent.get() + 1);
            true
        }
        fn receive(&self, h: usize, out: &mut [f32]) -> bool {
            match self.pending.borrow_mut()[h].take() {
                Some(o) if !self.fail => {
                    out.copy_from_slice(&o);
                    true
                }
                _ => false,
            }
        }
    }

    fn local(n: usize, refuse: bool, fail: bool) -> Box<Local> {
        Box::new(Local { n, refuse, fail, sent: Rc::new(Cell::new(0)), pending: RefCell::new(vec![None; n]) })
    }

    #[test]
    fn parts_cover_the_rows_in_whole_tiles() {
        for n in [1, 15, 16, 17, 192, 576, 1000, 1536] {
            for parts in 1..5 {
                let rs: Vec<_> = (0..parts).map(|p| part_rows(n, parts, p)).collect();
                assert_eq!(rs[0].start, 0);
                assert_eq!(rs[parts - 1].end, n);
                for w in rs.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                for r in &rs[..parts - 1] {
                    assert!(r.end == n || r.len() % 16 == 0, "{n} {parts} {r:?}");
                }
            }
        }
    }

    #[test]
    fn a_split_product_is_bit_identical_and_survives_failed_helpers() {
        for ty in [QType::Q4_0, QType::Q4_1, QType::Q8_0] {
            let (t, k, n) = (9, 256, 1000);
            let w = quant::random_rows(ty, n, k, 7);
            let x: Vec<f32> = (0..t * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let mut whole = vec![0.0; t * n];
            quant::matmul_nt_q(&x, t, k, &w, ty, n, &mut whole).unwrap();
            for (helpers, refuse, fail) in [(1, false, false), (3, false, false), (2, true, false), (2, false, true)] {
                let h = local(helpers, refuse, fail);
                let mut out = vec![f32::NAN; t * n];
                split(h.as_ref(), 1, &x, t, k, &w, ty, n, &mut out).unwrap();
                assert!(out.iter().zip(&whole).all(|(a, b)| a.to_bits() == b.to_bits()), "{ty:?} {helpers} {refuse} {fail}");
                assert_eq!(h.sent.get(), if refuse { 0 } else { helpers }, "{ty:?}");
            }
        }
    }

    #[test]
    fn only_large_products_with_enough_rows_are_split() {
        let h = local(1, false, false);
        let sent = h.sent.clone();
        install(h);
        let ty = QType::Q8_0;
        for (t, k, n, split) in [(8, 64, 32, false), (3, 1024, 2048, false), (4, 1024, 2048, true)] {
            let w = quant::random_rows(ty, n, k, 3);
            let x: Vec<f32> = (0..t * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let (mut out, mut whole) = (vec![0.0; t * n], vec![0.0; t * n]);
            let before = sent.get();
            matmul_nt_q(9, &x, t, k, &w, ty, n, &mut out).unwrap();
            quant::matmul_nt_q(&x, t, k, &w, ty, n, &mut whole).unwrap();
            assert_eq!(out, whole);
            assert_eq!(sent.get() - before, split as usize, "{t} {k} {n}");
        }
        HELPERS.with(|h| *h.borrow_mut() = None);
    }
}
