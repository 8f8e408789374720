//! The GPU backend (tiller-gpu on the default adapter: lavapipe here) against the reference:
//! teacher-forced top-1 agreement on greedy.json, through the KV cache one token at a time and
//! in one batched forward. No adapter fails loudly (`./dev setup` installs lavapipe).
//!
//! All eight cases, both paths (about a minute a path on lavapipe here);
//! `TILLER_GPU_GOLDEN=quick` checks the first two.

use tiller_engine::{Model, Precision};
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
    let quick = std::env::var("TILLER_GPU_GOLDEN").is_ok_and(|v| v == "quick");
    let cases = if quick { 2 } else { usize::MAX };
    for incremental in [false, true] {
        let how = if incremental { "through the KV cache" } else { "batched" };
        let t0 = std::time::Instant::now();
        let a = agreement(&m, incremental, &format!("GPU ({name}), fast, {how}"), cases);
        println!("({:.1} s)", t0.elapsed().as_secs_f64());
        assert!(a >= 0.995, "agreement {a}");
    }
}

/// steering.json's add, ablate and rotate cases on the GPU (f32 weights, as the CPU golden
/// test): the interventions run on the GPU as edits; the directions come from the CPU.
#[test]
fn gpu_steering_cases() {
    let cpu = model(Precision::F32);
    let (md, _) = directions(cpu);
    let gpu = pollster::block_on(Gpu::request()).unwrap_or_else(|e| {
        panic!("{e}: install a Vulkan driver (Debian's mesa-vulkan-drivers gives lavapipe; ./dev setup)")
    });
    let name = format!("GPU ({})", gpu.name());
    let bytes = std::fs::read(model_path()).unwrap();
    let m = Model::load(&bytes, gpu.clone(), Precision::F32).expect("the model loads on the GPU");
    let before = gpu.stats();
    steering_cases(&m, &md, &name);
    let after = gpu.stats();
    println!(
        "{name}: {} dispatches, {} submits",
        after.dispatches - before.dispatches,
        after.submits - before.submits
    );
}
