//! `tiller`: the command line. Errors print to stderr and exit with code 2; never a panic.

mod bench;
mod causal;
mod share;
mod steering;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use tiller_engine::Wait;
use tiller_engine::{generate, Backend, Cpu, LogitsFor, Model, Precision, Sampler, SamplingParams};

#[derive(Parser)]
#[command(name = "tiller", version, about = "See and steer what a language model represents")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print next-token logits as JSON: {"ids": [...], "top": [[[id, logit], ...], ...]}.
    Logits(LogitsArgs),
    /// Generate text (streams to stdout; --json prints {"ids", "tokens", "text"} at the end).
    Generate(GenerateArgs),
    /// Measure prefill and greedy decode speed.
    Bench(bench::BenchArgs),
    /// Compute a concept's direction at every layer from contrast pairs (JSON).
    Concept(steering::ConceptArgs),
    /// Effect curves over strength: concept scores (and side effects), KL, perplexity (JSON).
    Sweep(steering::SweepArgs),
    /// Train LinEAS affine maps from a concept's negatives to its positives and report them.
    Lineas(steering::LineasArgs),
    /// The observable direction of a token pair (ObsProp) and its coupling with concepts.
    Observable(steering::ObservableArgs),
    /// Share links: `encode --config FILE` prints the URL fragment, `decode LINK` the setup.
    #[command(subcommand)]
    Share(share::ShareCmd),
    /// Write a concept's directions as a llama.cpp control-vector GGUF.
    Export(share::ExportArgs),
    /// Activation patching: how much of a source run's logit difference each layer x position
    /// carries into a base run (JSON: {"tokens", "recovery": [[per position] per layer]}).
    Patch(causal::PatchArgs),
    /// The logit lens: every layer's top tokens at every position (JSON).
    Lens(causal::LensArgs),
    /// Attention patterns: every head's weights (query x key) at one layer (JSON).
    Attention(causal::AttentionArgs),
}

#[derive(Args)]
pub struct ModelArgs {
    /// Path to a GGUF model file (default: the default model in www/models, or $TILLER_MODEL).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// f32 (weights de-quantized: exact) or fast (quantized matmul).
    #[arg(long, default_value = "fast")]
    pub precision: Precision,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the forward pass runs: cpu, or gpu (wgpu on the default adapter: Vulkan,
    /// Metal or DX12; lavapipe where there is no GPU). logits, generate and bench take gpu.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum BackendKind {
    Cpu,
    Gpu,
}

#[derive(Args)]
struct LogitsArgs {
    #[command(flatten)]
    m: ModelArgs,
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    prompt: Option<String>,
    /// Apply the model's chat template to the prompt (one user turn + generation prompt).
    #[arg(long, requires = "prompt")]
    chat: bool,
    /// Token ids, comma separated.
    #[arg(long, value_delimiter = ',')]
    ids: Option<Vec<u32>>,
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    steer: steering::SteerArgs,
    /// One list per input position instead of the last only.
    #[arg(long)]
    all: bool,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// The prompt (with --config: default the setup's).
    #[arg(long, required_unless_present = "config")]
    prompt: Option<String>,
    /// Apply the chat template (with --config: also when the setup says chat).
    #[arg(long)]
    chat: bool,
    /// Tokens to generate [default: 128, or the setup's].
    #[arg(long)]
    max_tokens: Option<usize>,
    /// 0 = greedy [default: 0, or the setup's].
    #[arg(long)]
    temperature: Option<f32>,
    /// 0 = off [default: 0, or the setup's].
    #[arg(long)]
    top_k: Option<usize>,
    /// [default: 1, or the setup's]
    #[arg(long)]
    top_p: Option<f32>,
    /// [default: 0, or the setup's]
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    steer: steering::SteerArgs,
}

/// The thread count a command asked for (`--threads`), checked.
fn threads(cmd: &Cmd) -> Result<Option<usize>> {
    let t = match cmd {
        Cmd::Logits(a) => a.m.threads,
        Cmd::Generate(a) => a.m.threads,
        Cmd::Bench(a) => a.m.threads,
        Cmd::Concept(a) => a.m.threads,
        Cmd::Sweep(a) => a.m.threads,
        Cmd::Lineas(a) => a.m.threads,
        Cmd::Export(a) => a.m.threads,
        Cmd::Observable(a) => a.m.threads,
        Cmd::Patch(a) => a.m.threads,
        Cmd::Lens(a) => a.m.threads,
        Cmd::Attention(a) => a.m.threads,
        Cmd::Share(_) => None,
    };
    if t == Some(0) {
        bail!("--threads must be at least 1");
    }
    Ok(t)
}

/// Run the whole command on a rayon worker: parallel regions in the forward pass then split
/// work between pool threads directly, instead of waking a blocked main thread each time.
fn in_pool(cmd: Cmd) -> Result<()> {
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads(&cmd)? {
        b = b.num_threads(n);
    }
    let pool = b.build().context("starting the thread pool")?;
    pool.install(move || match cmd {
        Cmd::Logits(a) => logits(a),
        Cmd::Generate(a) => gen(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Concept(a) => steering::concept(a),
        Cmd::Sweep(a) => steering::sweep(a),
        Cmd::Lineas(a) => steering::lineas(a),
        Cmd::Share(c) => share::share(c),
        Cmd::Export(a) => share::export(a),
        Cmd::Observable(a) => steering::observable(a),
        Cmd::Patch(a) => causal::patch(a),
        Cmd::Lens(a) => causal::lens_cmd(a),
        Cmd::Attention(a) => causal::attention(a),
    })
}

/// The model file: --model, else $TILLER_MODEL, else the default model in www/models (looked
/// for from the working directory and from the executable's directory upwards).
pub fn model_path(m: &ModelArgs) -> Result<PathBuf> {
    if let Some(p) = &m.model {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("TILLER_MODEL") {
        return Ok(p.into());
    }
    let rel = PathBuf::from("www/models").join(tiller_share::config::DEFAULT_MODEL_ID);
    let mut tried = Vec::new();
    let mut dirs: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).map(PathBuf::from));
    }
    for d in dirs {
        let p = d.join(&rel);
        if p.is_file() {
            return Ok(p);
        }
        tried.push(p.display().to_string());
    }
    bail!(
        "no --model given and the default model is not at {} (run `./dev setup`)",
        tried.join(", ")
    )
}

/// The model on the CPU (commands other than logits, generate, bench, concept and sweep run
/// there).
pub fn load(m: &ModelArgs) -> Result<Model<Cpu>> {
    if m.backend != BackendKind::Cpu {
        bail!(
            "--backend gpu is taken by logits, generate, bench, concept and sweep; this command \
             runs on the CPU"
        );
    }
    Ok(load_bytes(m, Cpu::default())?.0)
}

/// Run `$body` with `$model` loaded on the backend `--backend` names (the body is generic
/// code, compiled for each).
#[macro_export]
macro_rules! with_model {
    ($m:expr, $model:ident => $body:block) => {
        match $m.backend {
            $crate::BackendKind::Cpu => {
                let $model = $crate::load_bytes($m, tiller_engine::Cpu::default())?.0;
                $body
            }
            $crate::BackendKind::Gpu => {
                let $model = $crate::load_bytes($m, $crate::gpu()?)?.0;
                $body
            }
        }
    };
}

/// The default GPU adapter's device (lavapipe where there is no GPU).
/// Test hook: `TILLER_TEST_LOSE_GPU=1` destroys the device as soon as it is made (what a
/// driver reset does), so the error path can be tested: a message and exit code 2.
pub fn gpu() -> Result<tiller_gpu::Gpu> {
    let g = pollster::block_on(tiller_gpu::Gpu::request()).context(
        "--backend gpu needs a GPU adapter (Vulkan, Metal or DX12); on Debian without a GPU, \
         mesa-vulkan-drivers gives lavapipe",
    )?;
    if std::env::var_os("TILLER_TEST_LOSE_GPU").is_some() {
        g.lose("the GPU device was lost (TILLER_TEST_LOSE_GPU)");
    }
    Ok(g)
}

/// The model on `backend` and the bytes of its file.
pub fn load_bytes<B: Backend>(m: &ModelArgs, backend: B) -> Result<(Model<B>, Vec<u8>)> {
    let path = model_path(m)?;
    let bytes =
        std::fs::read(&path).with_context(|| format!("reading model file {}", path.display()))?;
    let model = Model::load(&bytes, backend, m.precision)
        .with_context(|| format!("loading model {}", path.display()))?;
    for w in &model.tokenizer.warnings {
        eprintln!("warning: {w}");
    }
    Ok((model, bytes))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn logits(a: LogitsArgs) -> Result<()> {
    match a.m.backend {
        BackendKind::Cpu => logits_on(a, Cpu::default()),
        BackendKind::Gpu => logits_on(a, gpu()?),
    }
}

fn logits_on<B: Backend>(a: LogitsArgs, backend: B) -> Result<()> {
    let cfg = a.steer.config()?;
    let model = load_for(&a.m, cfg.as_ref(), backend)?;
    let ids = match (&a.prompt, &a.ids) {
        (Some(p), _) => model.encode_prompt(p, a.chat)?,
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give --prompt or --ids"),
    };
    if ids.is_empty() {
        bail!("the prompt is empty: it has no tokens");
    }
    let which = if a.all { LogitsFor::All } else { LogitsFor::Last };
    let (mut plan, condition) = conditional_plan(&a.steer, &model, &ids)?;
    let hooks = plan.as_mut().map(|p| p as &mut dyn tiller_engine::Hooks);
    let out = model.session().forward(&ids, hooks, which).wait()?;
    let v = model.config.vocab;
    let top: Vec<Vec<(u32, f32)>> =
        out.chunks_exact(v).map(|r| tiller_steer::lens::top_k(r, a.top)).collect();
    let mut o = json!({ "ids": ids, "top": top });
    if let Some(c) = condition {
        o["condition"] = c;
    }
    println!("{o}");
    Ok(())
}

/// The interventions, unless a condition is given and the prompt does not meet it; and the
/// condition's verdict as JSON.
fn conditional_plan<B: Backend>(
    steer: &steering::SteerArgs,
    model: &Model<B>,
    ids: &[u32],
) -> Result<(Option<tiller_steer::intervene::Plan>, Option<serde_json::Value>)> {
    let below = steer.condition()?.is_some_and(|c| c.below);
    match steer.check_condition(model, ids)? {
        Some(c) if !c.met => Ok((None, Some(steering::condition_json(&c, below)))),
        check => {
            let plan = steer.plan(model, ids.len())?;
            Ok((plan, check.map(|c| steering::condition_json(&c, below))))
        }
    }
}

/// Load the model; with a setup that names its model's sha256, say when it differs.
fn load_for<B: Backend>(
    m: &ModelArgs,
    cfg: Option<&tiller_share::SteeringConfig>,
    backend: B,
) -> Result<Model<B>> {
    let (model, bytes) = load_bytes(m, backend)?;
    if let Some(c) = cfg.filter(|c| c.model.sha256.is_some()) {
        if let Some(w) = c.model_mismatch(&sha256_hex(&bytes)) {
            eprintln!("warning: {w}");
        }
    }
    Ok(model)
}

fn gen(a: GenerateArgs) -> Result<()> {
    match a.m.backend {
        BackendKind::Cpu => gen_on(a, Cpu::default()),
        BackendKind::Gpu => gen_on(a, gpu()?),
    }
}

fn gen_on<B: Backend>(a: GenerateArgs, backend: B) -> Result<()> {
    let cfg = a.steer.config()?;
    let model = load_for(&a.m, cfg.as_ref(), backend)?;
    let s = cfg.as_ref().map(|c| c.sampling.clone());
    let params = SamplingParams {
        temperature: a.temperature.or(s.as_ref().map(|s| s.temperature)).unwrap_or(0.0),
        top_k: a.top_k.or(s.as_ref().map(|s| s.top_k as usize)).unwrap_or(0),
        top_p: a.top_p.or(s.as_ref().map(|s| s.top_p)).unwrap_or(1.0),
        seed: a.seed.or(s.as_ref().map(|s| s.seed)).unwrap_or(0),
    };
    let max_tokens = a.max_tokens.or(s.as_ref().map(|s| s.max_tokens as usize)).unwrap_or(128);
    let sampler = Sampler::new(params)?;
    let (prompt, chat) = match (&a.prompt, &cfg) {
        (Some(p), _) => (p.clone(), a.chat),
        (None, Some(c)) => (c.prompt.clone(), a.chat || c.chat),
        (None, None) => bail!("give --prompt (or --config with a prompt)"),
    };
    let ids = model.encode_prompt(&prompt, chat)?;
    if ids.is_empty() {
        bail!("the prompt is empty: it has no tokens");
    }
    let mut stream = tiller_model::tokenizer::StreamDecoder::default();
    let mut out = std::io::stdout().lock();
    let mut err: Option<anyhow::Error> = None;
    let (mut plan, condition) = conditional_plan(&a.steer, &model, &ids)?;
    if let (Some(c), false) = (&condition, a.json) {
        let met = c["met"].as_bool().unwrap_or(false);
        eprintln!(
            "condition: score {:.4}, threshold {}: {}",
            c["score"].as_f64().unwrap_or(f64::NAN),
            c["threshold"],
            if met { "met, steering" } else { "not met, no steering" }
        );
    }
    let hooks = plan.as_mut().map(|p| p as &mut dyn tiller_engine::Hooks);
    let g = generate(&model, &ids, max_tokens, sampler, hooks, &mut |id| {
        if !a.json {
            match stream.push(&model.tokenizer, id) {
                Ok(piece) => {
                    let _ = out.write_all(piece.as_bytes());
                    let _ = out.flush();
                }
                Err(e) => {
                    err = Some(e.into());
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    })
    .wait()?;
    if let Some(e) = err {
        return Err(e);
    }
    if a.json {
        let tokens: Vec<String> =
            g.ids.iter().map(|&i| model.tokenizer.decode(&[i])).collect::<Result<_, _>>()?;
        let text = model.tokenizer.decode(&g.ids)?;
        let mut o = json!({ "ids": g.ids, "tokens": tokens, "text": text, "stop": g.stop });
        if let Some(c) = condition {
            o["condition"] = c;
        }
        writeln!(out, "{o}")?;
    } else {
        writeln!(out)?;
    }
    Ok(())
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let r = in_pool(cli.cmd);
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
