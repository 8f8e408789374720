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
    let decode = if a.gen_tokens > 0 {
        a.gen_tokens as f64 / best_dec
    } else {
        0.0
    };
    eprintln!(
        "{}: {:?} on {}; prefill {} tokens: {prefill:.1} tok/s; decode {} tokens: {decode:.1} tok/s (best of {})",
        a.m.model.display(),
        model.precision,
        tiller_engine::Backend::name(&model.backend),
        a.prompt_tokens,
        a.gen_tokens,
        a.reps
    );
    if a.json {
        println!(
            "{}",
            json!({ "prefill_tok_s": prefill, "decode_tok_s": decode })
        );
    } else {
        println!("prefill_tok_s {prefill:.1}\ndecode_tok_s {decode:.1}");
    }
    Ok(())
}
