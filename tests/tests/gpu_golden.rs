//! The GPU backend (tiller-gpu on the default adapter: lavapipe here) against the reference:
//! teacher-forced top-1 agreement on greedy.json, through the KV cache one token at a time and
//! in one batched forward. No adapter fails loudly (`./dev setup` installs lavapipe).
//!
//! lavapipe runs about a token a second here, so `cargo test` checks the first two cases
//! (both paths); `TILLER_GPU_GOLDEN=full` checks all eight (the README's figure).

use tiller_engine::{LogitsFor, Model, Precision};
use tiller_gpu::Gpu;
use tiller_tests::*;

#[test]
fn gpu_teacher_forced_agreement() {
    let gpu = pollster::block_on(Gpu::request()).unwrap_or_else(|e| {
        panic!("{e}: install a Vulkan driver (Debian's mesa-vulkan-drivers gives lavapipe; ./dev setup)")
    });
    let name = gpu.name();
    let bytes = std::fs::read(model_path()).unwrap();
    let m = Model::load(&bytes, gpu, Precision::Fast).expect("the model loads on the GPU");
    let r = reference("greedy.json");
    let v = m.config.vocab;
    for incremental in [false, true] {
        let (mut agree, mut total) = (0usize, 0usize);
        let mut md = MaxDiff::default();
        let t0 = std::time::Instant::now();
        let full = std::env::var("TILLER_GPU_GOLDEN").is_ok_and(|v| v == "full");
        let cases = r["cases"].as_array().unwrap();
        for c in cases.iter().take(if full { cases.len() } else { 2 }) {
            let prompt = ids(&c["ids"]);
            let gen = ids(&c["greedy"]);
            let tf = c["teacher_forced_top5"].as_array().unwrap();
            let rows: Vec<Vec<f32>> = if incremental {
                let mut s = m.session();
                let mut rows = vec![s.forward(&prompt, None, LogitsFor::Last).unwrap()];
                for &t in &gen[..gen.len() - 1] {
                    rows.push(s.forward(&[t], None, LogitsFor::Last).unwrap());
                }
                rows
            } else {
                let all: Vec<u32> = prompt.iter().chain(&gen).copied().collect();
                let l = m.session().forward(&all, None, LogitsFor::All).unwrap();
                (0..gen.len())
                    .map(|j| l[(prompt.len() - 1 + j) * v..(prompt.len() + j) * v].to_vec())
                    .collect()
            };
            for (j, row) in rows.iter().enumerate() {
                let top5 = pairs(&tf[j]);
                total += 1;
                agree += (tiller_engine::sampling::argmax(row) == top5[0].0) as usize;
                md.see(row[top5[0].0 as usize], top5[0].1, || {
                    format!("case {:?} position {j}", c["prompt"])
                });
            }
        }
        let a = agree as f64 / total as f64;
        let how = if incremental { "through the KV cache" } else { "batched" };
        println!(
            "GPU ({name}), fast precision, {how}: teacher-forced top-1 agreement {agree}/{total} = {a:.4} in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        println!("{}", md.report("GPU top-1 logit vs reference", f32::NAN));
        assert!(a >= 0.995, "agreement {a}");
    }
}
