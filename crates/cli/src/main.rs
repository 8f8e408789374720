//! `tiller`: the command line. Errors print to stderr and exit with code 2; never a panic.

mod bench;
mod steering;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use tiller_engine::{generate, Cpu, LogitsFor, Model, Precision, Sampler, SamplingParams};

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
}

#[derive(Args)]
pub struct ModelArgs {
    /// Path to a GGUF model file.
    #[arg(long)]
    pub model: PathBuf,
    /// f32 (weights de-quantized: exact) or fast (quantized matmul).
    #[arg(long, default_value = "fast")]
    pub precision: Precision,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
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
    #[arg(long)]
    prompt: String,
    #[arg(long)]
    chat: bool,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
    })
}

pub fn load(m: &ModelArgs) -> Result<Model<Cpu>> {
    let bytes = std::fs::read(&m.model)
        .with_context(|| format!("reading model file {}", m.model.display()))?;
    let model = Model::load(&bytes, Cpu::default(), m.precision)
        .with_context(|| format!("loading model {}", m.model.display()))?;
    for w in &model.tokenizer.warnings {
        eprintln!("warning: {w}");
    }
    Ok(model)
}

fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let k = k.min(row.len());
    if k == 0 {
        return Vec::new();
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    idx.truncate(k);
    idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
    idx.into_iter().map(|i| (i, row[i as usize])).collect()
}

fn logits(a: LogitsArgs) -> Result<()> {
    let model = load(&a.m)?;
    let ids = match (&a.prompt, &a.ids) {
        (Some(p), _) => model.encode_prompt(p, a.chat)?,
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give --prompt or --ids"),
    };
    if ids.is_empty() {
        bail!("the prompt is empty: it has no tokens");
    }
    let which = if a.all { LogitsFor::All } else { LogitsFor::Last };
    let mut plan = a.steer.plan(&model, ids.len())?;
    let hooks = plan.as_mut().map(|p| p as &mut dyn tiller_engine::Hooks);
    let out = model.session().forward(&ids, hooks, which)?;
    let v = model.config.vocab;
    let top: Vec<Vec<(u32, f32)>> = out.chunks_exact(v).map(|r| top_k(r, a.top)).collect();
    println!("{}", json!({ "ids": ids, "top": top }));
    Ok(())
}

fn gen(a: GenerateArgs) -> Result<()> {
    let model = load(&a.m)?;
    let params =
        SamplingParams { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, seed: a.seed };
    let sampler = Sampler::new(params)?;
    let ids = model.encode_prompt(&a.prompt, a.chat)?;
    if ids.is_empty() {
        bail!("the prompt is empty: it has no tokens");
    }
    let mut stream = tiller_model::tokenizer::StreamDecoder::default();
    let mut out = std::io::stdout().lock();
    let mut err: Option<anyhow::Error> = None;
    let mut plan = a.steer.plan(&model, ids.len())?;
    let hooks = plan.as_mut().map(|p| p as &mut dyn tiller_engine::Hooks);
    let g = generate(&model, &ids, a.max_tokens, sampler, hooks, &mut |id| {
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
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    if a.json {
        let tokens: Vec<String> =
            g.ids.iter().map(|&i| model.tokenizer.decode(&[i])).collect::<Result<_, _>>()?;
        let text = model.tokenizer.decode(&g.ids)?;
        writeln!(
            out,
            "{}",
            json!({ "ids": g.ids, "tokens": tokens, "text": text, "stop": g.stop })
        )?;
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
