use std::time::Instant;
fn main() {
    for (t, k, n) in [(14usize, 576usize, 3072usize), (14, 576, 960), (14, 1536, 576), (1, 576, 49152), (64, 576, 3072)] {
        let x: Vec<f32> = (0..t * k).map(|i| (i % 7) as f32).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32).collect();
        let mut o = vec![0.0; t * n];
        sinkscope::linear::matmul_nt(&x, &w, &mut o, t, k, n);
        let reps = 30;
        let t0 = Instant::now();
        for _ in 0..reps { sinkscope::linear::matmul_nt(&x, &w, &mut o, t, k, n); }
        let ms = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!("{t}x{k}x{n}: {ms:.3} ms  {:.1} GFLOP/s  {:.1} GB/s weights", 2.0 * (t * k * n) as f64 / ms / 1e6, (n * k * 4) as f64 / ms / 1e6);
    }
}
