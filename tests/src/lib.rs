//! Shared helpers for the golden and end-to-end tests: where the reference data and the
//! model are, a loader that shares one model per test binary, comparison reports, and a
//! writer of small synthetic GGUF files.

pub mod gguf_writer;

use std::path::PathBuf;
use std::sync::OnceLock;
use tiller_engine::Wait;
use tiller_engine::{Cpu, Hooks, LogitsFor, Model, Precision, Sampler, Site};
use tiller_steer::concept::{Acts, Concept, Read};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `../shared/reference/smollm2-135m-instruct` beside the checkout (or $TILLER_REFERENCE).
pub fn reference_dir() -> PathBuf {
    let d = std::env::var_os("TILLER_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/reference/smollm2-135m-instruct"));
    assert!(d.is_dir(), "reference data not found at {} (set TILLER_REFERENCE)", d.display());
    d
}

pub fn reference(name: &str) -> serde_json::Value {
    read_json(&reference_dir().join(name))
}

/// `../shared/reference/gemma-3-270m` beside the checkout.
pub fn gemma_reference(name: &str) -> serde_json::Value {
    let d = reference_dir().join("../gemma-3-270m");
    assert!(d.is_dir(), "Gemma reference data not found at {}", d.display());
    read_json(&d.join(name))
}

fn read_json(p: &std::path::Path) -> serde_json::Value {
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("parsing {}: {e}", p.display()))
}

/// The default GPU adapter (lavapipe here). No adapter fails loudly: GPU tests never pass
/// silently.
pub fn gpu() -> tiller_gpu::Gpu {
    pollster::block_on(tiller_gpu::Gpu::request()).unwrap_or_else(|e| {
        panic!("{e}: install a Vulkan driver (Debian's mesa-vulkan-drivers gives lavapipe; ./dev setup)")
    })
}

pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The default model in www/models (or $TILLER_MODEL). Fails loudly when it is missing.
pub fn model_path() -> PathBuf {
    let p = std::env::var_os("TILLER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("www/models").join(MODEL_FILE));
    assert!(
        p.is_file(),
        "model not found at {}: run `./dev setup` (or set TILLER_MODEL)",
        p.display()
    );
    p
}

fn load(precision: Precision) -> Model<Cpu> {
    let bytes = std::fs::read(model_path()).expect("reading the model");
    Model::load(&bytes, Cpu::default(), precision).expect("loading the model")
}

pub const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

/// Gemma 3 270M Q4_K_M in www/models (fetched by `./dev setup`). Fails loudly when missing.
pub fn gemma_path() -> PathBuf {
    let p = workspace().join("www/models").join(GEMMA_FILE);
    assert!(p.is_file(), "Gemma 3 270M not found at {}: run `./dev setup`", p.display());
    p
}

/// One Gemma 3 270M per precision per test binary.
pub fn gemma(precision: Precision) -> &'static Model<Cpu> {
    static F32: OnceLock<Model<Cpu>> = OnceLock::new();
    static FAST: OnceLock<Model<Cpu>> = OnceLock::new();
    let load = || {
        let bytes = std::fs::read(gemma_path()).expect("reading Gemma");
        Model::load(&bytes, Cpu::default(), precision).expect("loading Gemma")
    };
    match precision {
        Precision::F32 => F32.get_or_init(load),
        Precision::Fast => FAST.get_or_init(load),
    }
}

/// One model per precision per test binary.
pub fn model(precision: Precision) -> &'static Model<Cpu> {
    static F32: OnceLock<Model<Cpu>> = OnceLock::new();
    static FAST: OnceLock<Model<Cpu>> = OnceLock::new();
    match precision {
        Precision::F32 => F32.get_or_init(|| load(precision)),
        Precision::Fast => FAST.get_or_init(|| load(precision)),
    }
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array of ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// `[[id, logit], ...]`
pub fn pairs(v: &serde_json::Value) -> Vec<(u32, f32)> {
    v.as_array()
        .expect("pairs")
        .iter()
        .map(|p| (p[0].as_u64().expect("id") as u32, p[1].as_f64().expect("logit") as f32))
        .collect()
}

/// Tracks the largest absolute difference and where it happened.
#[derive(Default, Debug)]
pub struct MaxDiff {
    pub max: f32,
    pub at: String,
    pub count: usize,
}

impl MaxDiff {
    pub fn see(&mut self, ours: f32, theirs: f32, at: impl FnOnce() -> String) {
        let d = (ours - theirs).abs();
        self.count += 1;
        if d > self.max || d.is_nan() {
            self.max = if d.is_nan() { f32::INFINITY } else { d };
            self.at = format!("{} (ours {ours}, reference {theirs})", at());
        }
    }
    pub fn report(&self, what: &str, tol: impl std::fmt::Display) -> String {
        format!(
            "{what}: max |diff| {:.2e} over {} values (tolerance {tol}) at {}",
            self.max, self.count, self.at
        )
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += *x as f64 * *y as f64;
        aa += *x as f64 * *x as f64;
        bb += *y as f64 * *y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// The model's final RMSNorm (with its gain) applied to one residual vector. HF's last
/// `hidden_states` entry is taken after it, so the reference's "layer 29" vectors are normed.
pub fn final_norm(m: &Model<Cpu>, v: &[f32]) -> Vec<f32> {
    let s = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32 + m.config.rms_eps).sqrt();
    v.iter().zip(&m.weights.out_norm_host).map(|(x, g)| x / s * g).collect()
}

/// Greedy continuation of `prompt`, at most `n` tokens, through `hooks` if given.
pub fn greedy<B: tiller_engine::Backend>(
    m: &Model<B>,
    prompt: &[u32],
    n: usize,
    hooks: Option<&mut dyn Hooks>,
) -> Vec<u32> {
    let s = Sampler::new(Default::default()).expect("greedy sampler");
    tiller_engine::generate(m, prompt, n, s, hooks, &mut |_| std::ops::ControlFlow::Continue(()))
        .wait()
        .expect("generation")
        .ids
}

/// How many leading tokens two sequences share.
pub fn same_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Teacher-forced agreement: at every generated position of greedy.json, is our argmax the
/// reference's top-1? `incremental` feeds one token at a time through the KV cache (the
/// decode path); otherwise one forward over prompt + continuation (the prefill path).
/// Only the first `max_cases` cases are run (the GPU test on lavapipe runs a few).
pub fn agreement<B: tiller_engine::Backend>(
    m: &Model<B>,
    incremental: bool,
    label: &str,
    max_cases: usize,
) -> f64 {
    agreement_with(m, &reference("greedy.json"), incremental, label, max_cases)
}

/// [`agreement`] against a given greedy.json (another model's reference set).
pub fn agreement_with<B: tiller_engine::Backend>(
    m: &Model<B>,
    r: &serde_json::Value,
    incremental: bool,
    label: &str,
    max_cases: usize,
) -> f64 {
    let (mut agree, mut total) = (0usize, 0usize);
    let mut md = MaxDiff::default();
    let mut firsts = Vec::new();
    for c in r["cases"].as_array().unwrap().iter().take(max_cases) {
        let prompt = ids(&c["ids"]);
        let gen = ids(&c["greedy"]);
        let tf = c["teacher_forced_top5"].as_array().unwrap();
        let v = m.config.vocab;
        let rows: Vec<Vec<f32>> = if incremental {
            let mut s = m.session();
            let mut rows = vec![s.forward(&prompt, None, LogitsFor::Last).wait().unwrap()];
            for &t in &gen[..gen.len() - 1] {
                rows.push(s.forward(&[t], None, LogitsFor::Last).wait().unwrap());
            }
            rows
        } else {
            let all: Vec<u32> = prompt.iter().chain(&gen).copied().collect();
            let l = m.session().forward(&all, None, LogitsFor::All).wait().unwrap();
            (0..gen.len())
                .map(|j| l[(prompt.len() - 1 + j) * v..(prompt.len() + j) * v].to_vec())
                .collect()
        };
        let mut first = None;
        for (j, row) in rows.iter().enumerate() {
            let top5 = pairs(&tf[j]);
            total += 1;
            if tiller_engine::sampling::argmax(row) == top5[0].0 {
                agree += 1;
            } else if first.is_none() {
                first = Some(j);
            }
            md.see(row[top5[0].0 as usize], top5[0].1, || {
                format!("case {:?} position {j}", c["prompt"])
            });
        }
        firsts.push(first);
    }
    let a = agree as f64 / total as f64;
    println!("{label}: teacher-forced top-1 agreement {agree}/{total} = {a:.4}; first disagreement per case {firsts:?}");
    println!("{}", md.report(&format!("{label} top-1 logit"), "none: the agreement is the gate"));
    a
}

/// `TILLER_GPU_GOLDEN=full`: the GPU tests' whole sets (by default they run the smaller ones
/// that keep `./dev test` within its time on lavapipe).
pub fn gpu_full() -> bool {
    std::env::var("TILLER_GPU_GOLDEN").is_ok_and(|v| v == "full")
}

/// How many tokens of a steered greedy continuation the GPU tests decode one by one by default
/// (the KV-cache path with its edits; the teacher-forced pass covers every position).
pub fn gpu_greedy_len() -> usize {
    if gpu_full() {
        usize::MAX
    } else {
        8
    }
}

/// Teacher-forced agreement a steering case must reach.
pub const STEER_AGREE: f64 = 0.99;

/// The add / ablate / rotate cases of steering.json on `m` with the sentiment mean differences
/// `md` (reference style): the steered greedy continuation must equal the reference's and
/// the teacher-forced top-1 agreement reach [`STEER_AGREE`].
pub fn steering_cases<B: tiller_engine::Backend>(m: &Model<B>, md: &[Vec<f32>], label: &str) {
    steering_cases_with(m, md, &reference("steering.json"), label, usize::MAX)
}

/// [`steering_cases`] against a given steering.json (another model's reference set), the greedy
/// continuation compared over its first `greedy_len` tokens (the GPU tests' default: the
/// teacher-forced pass checks every position, and token-by-token decoding on lavapipe is the
/// slow part; `usize::MAX` for all).
pub fn steering_cases_with<B: tiller_engine::Backend>(
    m: &Model<B>,
    md: &[Vec<f32>],
    st: &serde_json::Value,
    label: &str,
    greedy_len: usize,
) {
    use tiller_engine::sampling::argmax;
    use tiller_engine::LogitsFor;
    use tiller_steer::intervene::{self, Intervention, Plan, Positions};
    for c in st["cases"].as_array().expect("cases") {
        let op = c["op"].as_str().expect("op");
        let floats = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .expect("floats")
                .iter()
                .map(|x| x.as_f64().expect("float") as f32)
                .collect()
        };
        let layers = match op {
            "add" => intervene::add(
                md,
                c["layer"].as_u64().expect("layer") as usize,
                c["coef"].as_f64().expect("coef") as f32,
            )
            .expect("add"),
            "ablate" => {
                let ls: Vec<usize> = c["layers"]
                    .as_array()
                    .expect("layers")
                    .iter()
                    .map(|x| x.as_u64().expect("layer") as usize)
                    .collect();
                intervene::ablate(md, &ls).expect("ablate")
            }
            "rotate" => {
                let l = c["layer"].as_u64().expect("layer") as usize;
                let (_, b2) = intervene::rotation_plane(md, l).expect("plane");
                let cos = cosine(&b2, &floats(&c["b2"]));
                // b2's sign is the reference's SVD routine's (torch's LAPACK: arbitrary, and
                // no rule on the data reproduces it for both reference sets). A rotation by
                // -theta in the plane (b1, -b2) is the rotation by theta in (b1, b2).
                let flip = if cos < 0.0 { -1.0 } else { 1.0 };
                println!(
                    "rotate: b2 cosine with the reference {cos:.6} (turning {})",
                    if flip < 0.0 {
                        "by -theta: the reference's b2 has the other sign"
                    } else {
                        "by theta"
                    }
                );
                assert!(cos.abs() > 0.999, "b2 differs from the reference (cosine {cos})");
                intervene::rotate(md, l, flip * c["theta_deg"].as_f64().expect("theta") as f32)
                    .expect("rotate")
            }
            other => panic!("unknown op {other}"),
        };
        let prompt = ids(&c["ids"]);
        let want = ids(&c["steered"]);
        let mut plan = Plan {
            interventions: vec![Intervention {
                layers,
                positions: Positions::All,
                site: Site::Residual,
            }],
            prompt_len: prompt.len(),
        };
        let n = want.len().min(greedy_len);
        let got = greedy(m, &prompt, n, Some(&mut plan));
        let same = same_prefix(&got, &want);
        // Teacher-forced: the reference's steered continuation fed in, our argmax at each step.
        let all: Vec<u32> = prompt.iter().chain(&want).copied().collect();
        let l = m.session().forward(&all, Some(&mut plan), LogitsFor::All).wait().expect("forward");
        let v = m.config.vocab;
        let tf = c["teacher_forced_top5"].as_array().expect("top5");
        let agree = (0..want.len())
            .filter(|&j| {
                argmax(&l[(prompt.len() - 1 + j) * v..(prompt.len() + j) * v]) == pairs(&tf[j])[0].0
            })
            .count();
        let a = agree as f64 / want.len() as f64;
        println!(
            "{label}: {op} on {:?}: greedy {same}/{n} equal, teacher-forced agreement {a:.3} over {}; ours {:?}",
            c["prompt"],
            want.len(),
            m.tokenizer.decode(&got).expect("decode")
        );
        assert!(a >= STEER_AGREE, "{label}: {op}: agreement {a}");
        assert_eq!(got, want[..n], "{label}: {op}: steered greedy continuation differs");
    }
}

/// A concept file from tests/data (`NAME.json`).
pub fn data_concept(name: &str) -> Concept {
    let p = workspace().join("tests/data").join(format!("{name}.json"));
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The 16-pair formality concept (tests/data/formality16.json).
pub fn formality16() -> Concept {
    data_concept("formality16")
}

/// The reference's sentiment concept (concept-sentiment.json), read at the last token.
pub fn sentiment() -> Concept {
    let r = reference("concept-sentiment.json");
    let pairs = r["pairs"]
        .as_array()
        .expect("reference directions")
        .iter()
        .map(|p| {
            (
                p[0].as_str().expect("reference directions").to_string(),
                p[1].as_str().expect("reference directions").to_string(),
            )
        })
        .collect();
    Concept { name: "sentiment".into(), pairs, read: Read::LastToken, method: Default::default() }
}

/// The reference read HF `hidden_states[l + 1]`, whose last entry is after the final RMSNorm;
/// apply that norm at the last layer so directions are comparable (Tiller's own layer 29 is
/// the block output, before the norm).
pub fn reference_style(m: &Model<Cpu>, mut a: Acts) -> Acts {
    let last = m.config.n_layer - 1;
    for v in a.acts.iter_mut() {
        v[last] = final_norm(m, &v[last]);
    }
    a
}

/// Mean differences and PCA directions of [`sentiment`] in the reference's style.
pub fn directions(m: &Model<Cpu>) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    use tiller_steer::concept::capture_concept;
    use tiller_steer::directions::{mean_diff, pca_diff};
    let (pos, neg) = capture_concept(m, &sentiment()).wait().expect("reference directions");
    let (pos, neg) = (reference_style(m, pos), reference_style(m, neg));
    (
        mean_diff(&pos, &neg).expect("reference directions"),
        pca_diff(&pos, &neg).expect("reference directions"),
    )
}

/// Run tests/e2e/SCRIPT with node and `args`; its last stdout line as JSON, which must say
/// `"ok": true` (its stderr is printed).
pub fn run_script(script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = std::process::Command::new("node")
        .arg(workspace().join("tests/e2e").join(script))
        .args(args)
        .output()
        .expect("running node (install Node.js, see ./dev setup)");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{script} prints one JSON line ({e}): {stdout}"));
    assert_eq!(v["ok"], true, "{script} failed: {}", v["error"]);
    v
}
