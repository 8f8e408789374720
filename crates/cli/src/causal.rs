//! `tiller patch` (activation patching, interchange-intervention accuracy) and `tiller lens`
//! (the logit lens).

use crate::steering::read_concept;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use tiller_engine::{Backend, Model, Wait};
use tiller_steer::lens::lens;
use tiller_steer::patch::{self, Interchange, PatchSetup, Patched};
use tiller_steer::plan;

#[derive(Args)]
pub struct PatchArgs {
    #[command(flatten)]
    pub m: crate::ModelArgs,
    /// The base prompt (the run that is patched).
    #[arg(long, required_unless_present = "triples")]
    pub base: Option<String>,
    /// The source prompt (where patched activations come from); the same token count as base.
    #[arg(long, required_unless_present = "triples")]
    pub source: Option<String>,
    /// The answer token (the text of one token, e.g. " Paris"): LD = logit(answer) - logit(wrong).
    #[arg(long, required_unless_present = "triples")]
    pub answer: Option<String>,
    /// The wrong token (one token).
    #[arg(long, required_unless_present = "triples")]
    pub wrong: Option<String>,
    /// Apply the chat template to both prompts (one user turn + generation prompt).
    #[arg(long)]
    pub chat: bool,
    /// Concept files; with --direction, only the component along that concept's direction
    /// (by its method, per layer) is patched instead of the whole residual stream.
    #[arg(long = "concept")]
    pub concepts: Vec<PathBuf>,
    /// The concept whose direction is patched (default: the only --concept given).
    #[arg(long)]
    pub direction: Option<String>,
    /// Interchange-intervention accuracy instead: a JSON file of
    /// [{"base": ..., "source": ..., "answer": ...}, ...]; per layer, the fraction of examples
    /// whose base run predicts the answer once the direction's component at the last position
    /// is the source's. Needs --concept.
    #[arg(long)]
    pub triples: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// The id of a text that must be exactly one token (or #ID).
pub fn one_token<B: Backend>(model: &Model<B>, flag: &str, t: &str) -> Result<u32> {
    patch::token_id(model, t).map_err(|e| anyhow!("--{flag}: {e}"))
}

fn token_texts<B: Backend>(model: &Model<B>, ids: &[u32]) -> Result<Vec<String>> {
    Ok(ids.iter().map(|&i| model.tokenizer.decode(&[i])).collect::<Result<_, _>>()?)
}

/// The direction per layer of the concept --direction names (None without --concept).
fn directions<B: Backend>(
    model: &Model<B>,
    a: &PatchArgs,
) -> Result<Option<(String, Vec<Vec<f32>>)>> {
    if a.concepts.is_empty() {
        if let Some(d) = &a.direction {
            bail!("--direction {d}: give the concept with --concept FILE");
        }
        return Ok(None);
    }
    let concepts = a.concepts.iter().map(read_concept).collect::<Result<Vec<_>>>()?;
    let c = match &a.direction {
        Some(n) => concepts.iter().find(|c| &c.name == n).ok_or_else(|| {
            let known: Vec<&str> = concepts.iter().map(|c| c.name.as_str()).collect();
            anyhow!("--direction {n}: no such concept (loaded: {})", known.join(", "))
        })?,
        None if concepts.len() == 1 => &concepts[0],
        None => bail!("several concepts given: say which with --direction NAME"),
    };
    let p = plan::prepare(model, c).wait()?;
    Ok(Some((c.name.clone(), p.dirs)))
}

pub fn patch(a: PatchArgs) -> Result<()> {
    crate::with_model!(&a.m, model => {
        let dirs = directions(&model, &a)?;
        if let Some(path) = &a.triples {
            let Some((name, dirs)) = dirs else {
                bail!("--triples measures a direction: give --concept FILE");
            };
            return interchange(&model, &a, path, &name, &dirs);
        }
        let (base, source) = (a.base.as_deref().unwrap_or(""), a.source.as_deref().unwrap_or(""));
        let setup = PatchSetup {
            base: model.encode_prompt(base, a.chat)?,
            source: model.encode_prompt(source, a.chat)?,
            answer: one_token(&model, "answer", a.answer.as_deref().unwrap_or(""))?,
            wrong: one_token(&model, "wrong", a.wrong.as_deref().unwrap_or(""))?,
        };
        let what = match &dirs {
            Some((_, d)) => Patched::Direction(d),
            None => Patched::Residual,
        };
        let r = patch::patch(&model, &setup, what, &mut |_, _| {}).wait()?;
        println!(
            "{}",
            json!({
                "tokens": token_texts(&model, &setup.base)?,
                "source_tokens": token_texts(&model, &setup.source)?,
                "ids": setup.base, "source_ids": setup.source,
                "answer": setup.answer, "wrong": setup.wrong,
                "patched": dirs.as_ref().map_or("residual".to_string(), |(n, _)| format!("direction:{n}")),
                "ld_base": r.ld_base, "ld_source": r.ld_source,
                "ld": r.ld, "recovery": r.recovery,
            })
        );
        Ok(())
    })
}

fn interchange<B: Backend>(
    model: &Model<B>,
    a: &PatchArgs,
    path: &PathBuf,
    name: &str,
    dirs: &[Vec<f32>],
) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Triple {
        base: String,
        source: String,
        answer: String,
    }
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("reading triples file {}", path.display()))?;
    let triples: Vec<Triple> = serde_json::from_str(&s).with_context(|| {
        format!(
            "{}: expected [{{\"base\": ..., \"source\": ..., \"answer\": ...}}, ...]",
            path.display()
        )
    })?;
    let examples = triples
        .iter()
        .map(|t| {
            Ok(Interchange {
                base: model.encode_prompt(&t.base, a.chat)?,
                source: model.encode_prompt(&t.source, a.chat)?,
                expected: one_token(model, "triples answer", &t.answer)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let acc = patch::interchange_accuracy(model, &examples, dirs, &mut |_, _| {}).wait()?;
    println!("{}", json!({ "direction": name, "examples": examples.len(), "accuracy": acc }));
    Ok(())
}

#[derive(Args)]
pub struct LensArgs {
    #[command(flatten)]
    pub m: crate::ModelArgs,
    #[arg(long)]
    pub prompt: String,
    /// Apply the chat template (one user turn + generation prompt).
    #[arg(long)]
    pub chat: bool,
    /// Tokens listed per layer and position.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Also give this token's probability at every layer and position (one token's text, or #ID).
    #[arg(long)]
    pub track: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn lens_cmd(a: LensArgs) -> Result<()> {
    crate::with_model!(&a.m, model => {
        let ids = model.encode_prompt(&a.prompt, a.chat)?;
        if ids.is_empty() {
            bail!("the prompt is empty: it has no tokens");
        }
        let track = a.track.as_deref().map(|t| one_token(&model, "track", t)).transpose()?;
        let l = lens(&model, &ids, a.top, track).wait()?;
        let mut v = serde_json::to_value(&l)?;
        v["ids"] = json!(l.tokens);
        v["tokens"] = json!(token_texts(&model, &ids)?);
        if let Some(t) = track {
            v["track"] = json!(t);
        }
        println!("{v}");
        Ok(())
    })
}

#[derive(Args)]
pub struct AttentionArgs {
    #[command(flatten)]
    pub m: crate::ModelArgs,
    #[arg(long)]
    pub prompt: String,
    /// Apply the chat template (one user turn + generation prompt).
    #[arg(long)]
    pub chat: bool,
    /// The layer (block) whose heads are shown.
    #[arg(long)]
    pub layer: usize,
    #[arg(long)]
    pub json: bool,
}

/// `{"tokens", "layer", "heads": [[[weight per key] per query] per head]}`.
pub fn attention(a: AttentionArgs) -> Result<()> {
    crate::with_model!(&a.m, model => {
        let ids = model.encode_prompt(&a.prompt, a.chat)?;
        if ids.is_empty() {
            bail!("the prompt is empty: it has no tokens");
        }
        let p = tiller_steer::attention::patterns(&model, &ids, a.layer).wait()?;
        let heads: Vec<Vec<&[f32]>> =
            p.heads.iter().map(|h| h.chunks_exact(p.n).collect()).collect();
        println!(
            "{}",
            json!({ "tokens": token_texts(&model, &ids)?, "ids": ids, "layer": a.layer, "heads": heads })
        );
        Ok(())
    })
}
