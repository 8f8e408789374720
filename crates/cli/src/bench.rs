//! `tiller bench`: prefill and greedy decode throughput on a synthetic prompt.

use crate::{gpu, load_bytes, BackendKind, ModelArgs};
use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use std::time::Instant;
use tiller_engine::Wait;
use tiller_engine::{Backend, Cpu, LogitsFor, Model};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub m: ModelArgs,
    #[arg(long, default_value_t = 216)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Timed repetitions (the best is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    #[arg(long)]
    json: bool,
    /// Also time concept work on this concept file, its pairs repeated to 32: capture of all
    /// layers against a plain prefill of the same prompts, and each direction method.
    #[arg(long)]
    concept: Option<std::path::PathBuf>,
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.prompt_tokens == 0 || a.reps == 0 {
        bail!("--prompt-tokens and --reps must be at least 1");
    }
    let o = match a.m.backend {
        BackendKind::Cpu => {
            let (mut o, model) = run_on(&a, Cpu::default(), None, None)?;
            if let Some(p) = &a.concept {
                o["concept"] = concept_bench(&model, p, a.reps, &|| None)?;
            }
            o
        }
        BackendKind::Gpu => {
            let g = gpu()?;
            let h = g.clone();
            // Whether the decode products sum their rows with subgroup shuffles, or why not.
            let off = g.subgroups_off();
            // Whether the adapter offers shader-f16 (no kernel needs it: see the README).
            let f16 = g.f16;
            let p = g.clone();
            let (mut o, model) = run_on(
                &a,
                g,
                Some(Box::new(move || h.stats())),
                Some(Box::new(move || p.take_profile())),
            )?;
            o["subgroups"] = json!(off.is_none());
            o["shader_f16"] = json!(f16);
            if let Some(why) = off {
                o["subgroups_off"] = json!(why);
            }
            if let Some(p) = &a.concept {
                let before = model.backend.stats();
                let prof = || model.backend.take_profile();
                o["concept"] = concept_bench(&model, p, a.reps, &prof)?;
                let after = model.backend.stats();
                o["concept"]["submits"] = json!(after.submits - before.submits);
                o["concept"]["dispatches"] = json!(after.dispatches - before.dispatches);
            }
            o
        }
    };
    print(&a, &o);
    Ok(())
}

/// The GPU's counters, read before and after the decode loop.
type Stats = Box<dyn Fn() -> tiller_gpu::ops::Stats>;

/// GPU time by dispatch site since the last call (with `TILLER_GPU_PROFILE=1`).
type Profile = Box<dyn Fn() -> Option<Vec<(String, u64, f64)>>>;

/// A profile as JSON, each site's passes and milliseconds divided by `per`, and its total;
/// the largest sites also to stderr.
fn profile_json(what: &str, p: Vec<(String, u64, f64)>, per: f64) -> serde_json::Value {
    let total: f64 = p.iter().map(|s| s.2).sum::<f64>() / per / 1e6;
    let passes: u64 = p.iter().map(|s| s.1).sum();
    eprintln!(
        "GPU profile, {what}: {total:.3} ms of GPU time in {:.1} passes",
        passes as f64 / per
    );
    for (site, n, ns) in p.iter().take(8) {
        eprintln!("  {site:>16} {:>8.1} passes {:>9.3} ms", *n as f64 / per, ns / per / 1e6);
    }
    let sites: Vec<_> = p
        .iter()
        .map(|(site, n, ns)| json!({ "site": site, "passes": *n as f64 / per, "ms": ns / per / 1e6 }))
        .collect();
    json!({ "gpu_ms": total, "passes": passes as f64 / per, "sites": sites })
}

fn run_on<B: Backend>(
    a: &BenchArgs,
    backend: B,
    stats: Option<Stats>,
    prof: Option<Profile>,
) -> Result<(serde_json::Value, Model<B>)> {
    let model = load_bytes(&a.m, backend)?.0;
    let be = &model.backend;
    let ctx = model.config.context_length;
    if a.prompt_tokens + a.gen_tokens > ctx {
        bail!(
            "--prompt-tokens + --gen-tokens = {} exceeds the model's context of {ctx}",
            a.prompt_tokens + a.gen_tokens
        );
    }
    // A deterministic prompt of ordinary text, repeated to the asked length.
    let text = "The history of the printing press begins in the fifteenth century, when movable type changed how books were made and read across Europe. ";
    let mut ids = Vec::new();
    let unit = model.tokenizer.encode(text)?;
    while ids.len() < a.prompt_tokens {
        ids.extend_from_slice(&unit);
    }
    ids.truncate(a.prompt_tokens);
    let (mut best_pf, mut best_dec) = (f64::MAX, f64::MAX);
    // The next token as a decoder picks it: argmax where the logits live (one id read back
    // from a GPU), else on the host.
    let next = |l: &B::Act| be.argmax(l).wait();
    let mut per_token = None;
    let take = || prof.as_ref().and_then(|f| f());
    let mut profiles = (None, None);
    // One untimed warm-up, then `reps` timed runs.
    for rep in 0..=a.reps {
        let mut s = model.session();
        take();
        let t = Instant::now();
        let mut tok = next(&s.forward_act(&ids, None, LogitsFor::Last).wait()?)?;
        let pf = t.elapsed().as_secs_f64();
        profiles.0 = take();
        let before = stats.as_ref().map(|f| f());
        let t = Instant::now();
        let mut rec = 0.0;
        for _ in 0..a.gen_tokens {
            let r = Instant::now();
            let l = s.forward_act(&[tok], None, LogitsFor::Last).wait()?;
            rec += r.elapsed().as_secs_f64();
            tok = next(&l)?;
        }
        let dec = t.elapsed().as_secs_f64();
        profiles.1 = take();
        if let (Some(b), Some(f)) = (before, &stats) {
            let (after, n) = (f(), a.gen_tokens.max(1) as f64);
            per_token = Some(json!({
                "record_ms": rec * 1e3 / n,
                "dispatches": (after.dispatches - b.dispatches) as f64 / n,
                "submits": (after.submits - b.submits) as f64 / n,
                "buffers_created": (after.buffers - b.buffers) as f64 / n,
                "bind_groups_created": (after.bind_groups - b.bind_groups) as f64 / n,
            }));
        }
        if rep > 0 {
            best_pf = best_pf.min(pf);
            best_dec = best_dec.min(dec);
        }
    }
    let prefill = a.prompt_tokens as f64 / best_pf;
    let decode = if a.gen_tokens > 0 { a.gen_tokens as f64 / best_dec } else { 0.0 };
    let backend = be.name();
    eprintln!(
        "{}: {:?} on {backend}; prefill {} tokens: {prefill:.1} tok/s; decode {} tokens: {decode:.1} tok/s (best of {})",
        crate::model_path(&a.m)?.display(),
        model.precision,
        a.prompt_tokens,
        a.gen_tokens,
        a.reps
    );
    if let Some(p) = &per_token {
        eprintln!("per decoded token: {p}");
    }
    let mut o = json!({ "prefill_tok_s": prefill, "decode_tok_s": decode, "backend": backend });
    if let Some(p) = per_token {
        o["per_decoded_token"] = p;
    }
    if let (Some(p), Some(d)) = profiles {
        o["gpu_profile"] = json!({
            "prefill": profile_json(&format!("prefill of {} tokens", a.prompt_tokens), p, 1.0),
            "decode_per_token": profile_json("per decoded token", d, a.gen_tokens.max(1) as f64),
        });
    }
    Ok((o, model))
}

fn print(a: &BenchArgs, o: &serde_json::Value) {
    if a.json {
        println!("{o}");
    } else {
        let f = |k: &str| o[k].as_f64().unwrap_or(0.0);
        println!("prefill_tok_s {:.1}\ndecode_tok_s {:.1}", f("prefill_tok_s"), f("decode_tok_s"));
    }
}

/// Capture cost against a plain prefill, and the time of every direction method with its
/// diagnostics, for 32 pairs (the concept's pairs repeated), on any backend (the capture and
/// the model's products run where the model is; the statistics on the host).
fn concept_bench<B: Backend>(
    model: &tiller_engine::Model<B>,
    path: &std::path::Path,
    reps: usize,
    prof: &dyn Fn() -> Option<Vec<(String, u64, f64)>>,
) -> Result<serde_json::Value> {
    use tiller_steer::concept::{capture, capture_concept_mlp, Concept};
    use tiller_steer::directions::{directions, Method};
    use tiller_steer::report::{analyze, Options};
    use tiller_steer::snmf::{concept_snmf, SnmfParams};
    let s = std::fs::read_to_string(path)?;
    let c: Concept = serde_json::from_str(&s)?;
    c.validate()?;
    let pairs: Vec<(String, String)> = c.pairs.iter().cycle().take(32).cloned().collect();
    let pos: Vec<String> = pairs.iter().map(|p| p.0.clone()).collect();
    let neg: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    let texts: Vec<String> = pos.iter().chain(&neg).cloned().collect();
    let ids: Vec<Vec<u32>> =
        texts.iter().map(|t| model.encode_prompt(t, false)).collect::<Result<_, _>>()?;
    let (mut plain, mut cap) = (f64::MAX, f64::MAX);
    let mut cap_prof = None;
    for _ in 0..=reps {
        let t = Instant::now();
        for i in &ids {
            model.session().forward(i, None, LogitsFor::Last).wait()?;
        }
        plain = plain.min(t.elapsed().as_secs_f64());
        prof();
        let t = Instant::now();
        capture(model, &texts, c.read).wait()?;
        cap = cap.min(t.elapsed().as_secs_f64());
        cap_prof = prof();
    }
    let (p, n) = (capture(model, &pos, c.read).wait()?, capture(model, &neg, c.read).wait()?);
    let big = Concept { pairs, ..c.clone() };
    let mut methods = serde_json::Map::new();
    for (name, m) in [
        ("mean-diff", Method::MeanDiff),
        ("pca", Method::Pca),
        ("probe", Method::Probe),
        ("svd", Method::Svd),
        ("snmf", Method::Snmf),
        ("pca-repe", Method::PcaRepe),
    ] {
        // The direction at every layer from captured activations (SNMF: from the MLP
        // activations, whose capture is not counted here).
        let dir_ms = if m == Method::Snmf {
            let (_, _, mlp) = capture_concept_mlp(model, &big).wait()?;
            let t = Instant::now();
            concept_snmf(model, &mlp, big.pairs.len(), big.read, &SnmfParams::default()).wait()?;
            t.elapsed().as_secs_f64() * 1e3
        } else {
            let t = Instant::now();
            directions(m, &p, &n)?;
            t.elapsed().as_secs_f64() * 1e3
        };
        // What a click on "compute" costs: capture, directions and every diagnostic, by stage.
        let t = Instant::now();
        let mut stages = serde_json::Map::new();
        let (mut last, mut stage) = (Instant::now(), String::new());
        analyze(model, &big, m, &Options::default(), &mut |s, _, _| {
            if !stage.is_empty() {
                stages.insert(stage.clone(), json!(last.elapsed().as_secs_f64() * 1e3));
            }
            (last, stage) = (Instant::now(), s.to_string());
        })
        .wait()?;
        let all_ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!("concept bench: {name}: directions {dir_ms:.0} ms; capture + directions + diagnostics {all_ms:.0} ms; stages {stages:?}");
        methods.insert(
            name.into(),
            json!({ "directions_ms": dir_ms, "analyze_ms": all_ms, "stages_ms": stages }),
        );
    }
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let cap_prof = cap_prof.map(|p| profile_json("the capture of 32 pairs", p, 1.0));
    eprintln!("concept bench: 32 pairs ({tokens} tokens): plain prefill {:.0} ms, capture of all layers {:.0} ms ({:.3}x)", plain * 1e3, cap * 1e3, cap / plain);
    Ok(
        json!({ "pairs": 32, "tokens": tokens, "prefill_ms": plain * 1e3, "capture_ms": cap * 1e3, "capture_over_prefill": cap / plain, "methods": methods, "capture_gpu_profile": cap_prof }),
    )
}
