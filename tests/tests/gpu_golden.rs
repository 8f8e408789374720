//! The GPU backend (tiller-gpu on the default adapter: lavapipe here) against the reference:
//! teacher-forced top-1 agreement on greedy.json, through the KV cache one token at a time and
//! in one batched forward. No adapter fails loudly (`./dev setup` installs lavapipe).
//!
//! The first two cases by default (the concept-work test below holds the GPU time spent here
//! level); `TILLER_GPU_GOLDEN=full` checks all eight, both paths (about a minute a path on
//! lavapipe here).

use tiller_engine::{Model, Precision};
use tiller_tests::*;

#[test]
fn gpu_teacher_forced_agreement() {
    let gpu = tiller_tests::gpu();
    let name = gpu.name();
    let bytes = std::fs::read(model_path()).unwrap();
    let m = Model::load(&bytes, gpu, Precision::Fast).expect("the model loads on the GPU");
    let full = gpu_full();
    let cases = if full { usize::MAX } else { 2 };
    for incremental in [false, true] {
        let how = if incremental { "through the KV cache" } else { "batched" };
        let t0 = std::time::Instant::now();
        let a = agreement(&m, incremental, &format!("GPU ({name}), fast, {how}"), cases);
        println!("({:.1} s)", t0.elapsed().as_secs_f64());
        assert!(a >= 0.995, "agreement {a}");
    }
}

/// steering.json's add, ablate and rotate cases on the GPU (f32 weights, as the CPU golden
/// test): the interventions run on the GPU as edits; the directions come from the CPU. By
/// default the first case of each operation (the three adds differ only in strength);
/// `TILLER_GPU_GOLDEN=full` runs all five.
#[test]
fn gpu_steering_cases() {
    let cpu = model(Precision::F32);
    let (md, _) = directions(cpu);
    let gpu = tiller_tests::gpu();
    let name = format!("GPU ({})", gpu.name());
    let bytes = std::fs::read(model_path()).unwrap();
    let m = Model::load(&bytes, gpu.clone(), Precision::F32).expect("the model loads on the GPU");
    let mut st = reference("steering.json");
    if !gpu_full() {
        let mut seen = std::collections::HashSet::new();
        let cases = st["cases"].as_array().expect("cases").iter();
        let first: Vec<_> = cases.filter(|c| seen.insert(c["op"].to_string())).cloned().collect();
        println!(
            "{name}: {} steering cases, one per operation (TILLER_GPU_GOLDEN=full runs all)",
            first.len()
        );
        st["cases"] = serde_json::Value::Array(first);
    }
    let before = gpu.stats();
    steering_cases_with(&m, &md, &st, &name, gpu_greedy_len());
    let after = gpu.stats();
    println!(
        "{name}: {} dispatches, {} submits",
        after.dispatches - before.dispatches,
        after.submits - before.submits
    );
}

/// Concept work on the GPU (issue 13): the reference's sentiment concept (8 pairs) analysed on
/// the GPU model gives the CPU's directions (every layer, cosine), held-out statistics, what the
/// direction promotes and Selective Steering's plane; captures are copies kept during the pass
/// and read back with the logits, with no blocking read inside it.
#[test]
fn gpu_concept_work() {
    use tiller_engine::Wait;
    use tiller_steer::report::{analyze_and_prepare, Options};
    let gpu = tiller_tests::gpu();
    let name = format!("GPU ({})", gpu.name());
    let bytes = std::fs::read(model_path()).unwrap();
    let g = Model::load(&bytes, gpu.clone(), Precision::Fast).expect("the model loads on the GPU");
    let c = model(Precision::Fast);
    let concept = sentiment();
    let opts = Options { null_runs: 4, resamples: 4, ..Options::default() };
    let t0 = std::time::Instant::now();
    let before = gpu.stats();
    let (rg, pg) =
        analyze_and_prepare(&g, &concept, concept.method, &opts, &mut |_, _, _| {}).wait().unwrap();
    let after = gpu.stats();
    println!(
        "{name}: concept analysed in {:.1} s ({} submits, {} dispatches)",
        t0.elapsed().as_secs_f64(),
        after.submits - before.submits,
        after.dispatches - before.dispatches
    );
    let t1 = std::time::Instant::now();
    let (rc, pc) =
        analyze_and_prepare(c, &concept, concept.method, &opts, &mut |_, _, _| {}).wait().unwrap();
    println!("CPU: the same in {:.1} s", t1.elapsed().as_secs_f64());
    let (mut worst, mut at) = (1.0f64, 0);
    for (l, (a, b)) in pg.dirs.iter().zip(&pc.dirs).enumerate() {
        let cos = cosine(a, b);
        if cos < worst {
            (worst, at) = (cos, l);
        }
    }
    println!("{name} vs CPU: direction cosine min {worst:.8} (layer {at})");
    assert!(worst >= 0.99999, "directions differ at layer {at}: cosine {worst}");
    let (mut d_auroc, mut d_at) = (0f64, 0);
    for (a, b) in rg.layers.iter().zip(&rc.layers) {
        let d = (a.auroc - b.auroc).abs();
        if d > d_auroc {
            (d_auroc, d_at) = (d, a.layer);
        }
    }
    println!("{name} vs CPU: held-out AUROC max |diff| {d_auroc:.2e} (layer {d_at})");
    assert!(d_auroc <= 1e-9, "AUROC differs by {d_auroc} at layer {d_at}");
    assert_eq!(rg.best_layer, rc.best_layer);
    let top = |r: &tiller_steer::report::ConceptReport| -> Vec<u32> {
        r.layers[r.best_layer].unembedding_promotes.iter().map(|t| t.id).collect()
    };
    assert_eq!(top(&rg), top(&rc), "tokens the direction promotes through the unembedding");
    let (sg, sc) = (pg.selective_plane(&g).wait().unwrap(), pc.selective_plane(c).wait().unwrap());
    println!("{name} vs CPU: Selective Steering b1 cosine {:.8}", cosine(&sg.b1, &sc.b1));
    assert_eq!(sg.mask, sc.mask, "Selective Steering's layer mask");
    assert!(cosine(&sg.b1, &sc.b1) >= 0.99999);
    // A sweep (two strengths and their random control, one neutral prompt) and a LinEAS map,
    // trained on each backend: the same tokens, KL within rounding, the same maps.
    use tiller_steer::plan::{InterventionSpec, OpKind};
    use tiller_steer::sweep::{Sweep, Sweeper};
    let spec = |op: OpKind, strength: f32| InterventionSpec {
        concept: "sentiment".into(),
        op,
        layers: vec![10],
        strength,
        positions: Default::default(),
        selective: false,
        enabled: true,
    };
    let add = spec(OpKind::Add, 1.0);
    let prompt = c.encode_prompt("I think that the weather today is", false).unwrap();
    let neutral =
        vec![c.encode_prompt("To replace the filter, first turn off the", false).unwrap()];
    let sw = Sweep {
        spec: &add,
        strengths: &[2.0, 4.0],
        prompt: &prompt,
        neutral: &neutral,
        max_tokens: 4,
        read_layer: 10,
        control: true,
    };
    fn points<B: tiller_engine::Backend>(
        s: Sweeper<'_, B>,
    ) -> Vec<tiller_steer::sweep::SweepPoint> {
        [(2.0, false), (4.0, false), (4.0, true)]
            .iter()
            .map(|&(x, ctl)| s.point(x, ctl).wait().unwrap())
            .collect()
    }
    let on_gpu = points(Sweeper::new(&g, std::slice::from_ref(&pg), &sw).wait().unwrap());
    let on_cpu = points(Sweeper::new(c, std::slice::from_ref(&pc), &sw).wait().unwrap());
    for (a, b) in on_gpu.iter().zip(&on_cpu) {
        println!(
            "sweep {} (control {}): GPU {:?} KL {:.5} / CPU {:?} KL {:.5}",
            a.strength, a.control, a.text, a.kl_mean, b.text, b.kl_mean
        );
        assert_eq!(a.ids, b.ids, "sweep tokens at strength {}", a.strength);
        assert!((a.kl_mean - b.kl_mean).abs() <= 2e-3 * (1.0 + b.kl_mean), "KL");
    }
    let lin = spec(OpKind::Affine, 1.0);
    fn lineas<B: tiller_engine::Backend>(
        m: &Model<B>,
        p: &tiller_steer::plan::Prepared,
        spec: &InterventionSpec,
    ) -> tiller_steer::intervene::Plan {
        let (p, s) = (std::slice::from_ref(p), std::slice::from_ref(spec));
        // Two epochs (three runs of the source texts): enough to train on each backend and
        // compare; fewer blocks run than the whole model (the passes stop after layer 10).
        let lp = tiller_steer::lineas::LineasParams { epochs: 2, ..Default::default() };
        tiller_steer::plan::build(m, p, s, 9, &lp).wait().unwrap().unwrap()
    }
    let (lg, lc) = (lineas(&g, &pg, &lin), lineas(c, &pc, &lin));
    let affine = |p: &tiller_steer::intervene::Plan| -> Vec<f32> {
        match &p.interventions[0].layers[0].1 {
            tiller_steer::intervene::Op::Affine { gamma, beta, .. } => {
                gamma.iter().chain(beta.iter()).copied().collect()
            }
            op => panic!("not an affine map: {op:?}"),
        }
    };
    let (ag, ac) = (affine(&lg), affine(&lc));
    let d = ag.iter().zip(&ac).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("{name} vs CPU: LinEAS map (gamma, beta) max |diff| {d:.2e}");
    assert!(cosine(&ag, &ac) >= 0.9999, "LinEAS maps differ: cosine {}", cosine(&ag, &ac));
}
