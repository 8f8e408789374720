//! `tiller bench`: prefill and greedy decode throughput on a synthetic prompt.

use crate::{load, ModelArgs};
use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use std::time::Instant;
use tiller_engine::{sampling::argmax, LogitsFor};

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
    let model = load(&a.m)?;
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
    // One untimed warm-up, then `reps` timed runs.
    for rep in 0..=a.reps {
        let mut s = model.session();
        let t = Instant::now();
        let logits = s.forward(&ids, None, LogitsFor::Last)?;
        let pf = t.elapsed().as_secs_f64();
        let mut tok = argmax(&logits);
        let t = Instant::now();
        for _ in 0..a.gen_tokens {
            let l = s.forward(&[tok], None, LogitsFor::Last)?;
            tok = argmax(&l);
        }
        let dec = t.elapsed().as_secs_f64();
        if rep > 0 {
            best_pf = best_pf.min(pf);
            best_dec = best_dec.min(dec);
        }
    }
    let prefill = a.prompt_tokens as f64 / best_pf;
    let decode = if a.gen_tokens > 0 { a.gen_tokens as f64 / best_dec } else { 0.0 };
    eprintln!(
        "{}: {:?} on {}; prefill {} tokens: {prefill:.1} tok/s; decode {} tokens: {decode:.1} tok/s (best of {})",
        crate::model_path(&a.m)?.display(),
        model.precision,
        tiller_engine::Backend::name(&model.backend),
        a.prompt_tokens,
        a.gen_tokens,
        a.reps
    );
    let concept = match &a.concept {
        Some(p) => Some(concept_bench(&model, p, a.reps)?),
        None => None,
    };
    if a.json {
        let mut o = json!({ "prefill_tok_s": prefill, "decode_tok_s": decode });
        if let Some(c) = concept {
            o["concept"] = c;
        }
        println!("{o}");
    } else {
        println!("prefill_tok_s {prefill:.1}\ndecode_tok_s {decode:.1}");
    }
    Ok(())
}

/// Capture cost against a plain prefill, and the time of every direction method with its
/// diagnostics, for 32 pairs (the concept's pairs repeated).
fn concept_bench(
    model: &tiller_engine::Model<tiller_engine::Cpu>,
    path: &std::path::Path,
    reps: usize,
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
    for _ in 0..=reps {
        let t = Instant::now();
        for i in &ids {
            model.session().forward(i, None, LogitsFor::Last)?;
        }
        plain = plain.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        capture(model, &texts, c.read)?;
        cap = cap.min(t.elapsed().as_secs_f64());
    }
    let (p, n) = (capture(model, &pos, c.read)?, capture(model, &neg, c.read)?);
    let big = Concept { pairs, ..c.clone() };
    let mut methods = serde_json::Map::new();
    for (name, m) in [
        ("mean-diff", Method::MeanDiff),
        ("pca", Method::Pca),
        ("probe", Method::Probe),
        ("svd", Method::Svd),
        ("snmf", Method::Snmf),
    ] {
        // The direction at every layer from captured activations (SNMF: from the MLP
        // activations, whose capture is not counted here).
        let dir_ms = if m == Method::Snmf {
            let (_, _, mlp) = capture_concept_mlp(model, &big)?;
            let t = Instant::now();
            concept_snmf(model, &mlp, big.pairs.len(), big.read, &SnmfParams::default())?;
            t.elapsed().as_secs_f64() * 1e3
        } else {
            let t = Instant::now();
            directions(m, &p, &n)?;
            t.elapsed().as_secs_f64() * 1e3
        };
        // What a click on "compute" costs: capture, directions and every diagnostic.
        let t = Instant::now();
        analyze(model, &big, m, &Options::default(), &mut |_, _, _| {})?;
        let all_ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!("concept bench: {name}: directions {dir_ms:.0} ms; capture + directions + diagnostics {all_ms:.0} ms");
        methods.insert(name.into(), json!({ "directions_ms": dir_ms, "analyze_ms": all_ms }));
    }
    let tokens: usize = ids.iter().map(Vec::len).sum();
    eprintln!("concept bench: 32 pairs ({tokens} tokens): plain prefill {:.0} ms, capture of all layers {:.0} ms ({:.3}x)", plain * 1e3, cap * 1e3, cap / plain);
    Ok(
        json!({ "pairs": 32, "tokens": tokens, "prefill_ms": plain * 1e3, "capture_ms": cap * 1e3, "capture_over_prefill": cap / plain, "methods": methods }),
    )
}
