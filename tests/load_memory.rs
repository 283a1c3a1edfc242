//! Memory taken while loading each real model, measured with a counting allocator (this test binary
//! holds only this test, so nothing else allocates meanwhile). The bound the README states: the
//! weights take about the file's size (blocks kept as stored), and loading peaks below
//! 1.5 x the file's size + 160 MB (the tokenizer: Gemma's 262,144-piece vocabulary and its merges)
//! on top of the file's own bytes.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = NOW.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        NOW.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn loading_memory_is_bounded_by_the_file_size() {
    for (name, bytes) in [("SmolLM2", common::model_bytes()), ("Gemma 3", common::gemma_bytes())] {
        let base = NOW.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let loaded = sinkscope::app::load(bytes, &burn::prelude::Device::flex()).expect("loads");
        let peak = PEAK.load(Ordering::Relaxed) - base;
        let kept = NOW.load(Ordering::Relaxed) - base;
        let file = bytes.len();
        println!("{name}: file {} MB, peak while loading {} MB ({:.2}x), kept {} MB ({:.2}x)", file >> 20, peak >> 20, peak as f64 / file as f64, kept >> 20, kept as f64 / file as f64);
        assert!(peak <= file * 3 / 2 + (160 << 20), "{name}: loading peaked at {peak} bytes for a {file}-byte file");
        assert!(kept <= file + (120 << 20), "{name}: the loaded model keeps {kept} bytes for a {file}-byte file");
        drop(loaded);
    }
}
