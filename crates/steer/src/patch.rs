//! Activation patching (interchange interventions): run a base and a source input of equal
//! length, put the source's activation (the whole residual stream, or only its component along
//! a direction) into the base's run at one layer and position, and measure how much of the
//! source's output comes back.
//!
//! The metric is the logit difference `LD = logit(answer) - logit(wrong)` at the last
//! position, reported as the fraction recovered `(LD_patched - LD_base) / (LD_source - LD_base)`
//! (1: the patch carries all of the difference; 0: none of it). As TransformerLens'
//! `patching` and pyvene's interchange interventions do it.
//!
//! Each patch is an ordinary intervention on the residual stream at one position:
//! - whole residual: `h' = 0 h + s` (the affine map with gamma 0 and beta the source row);
//! - along unit `u`: `h' = h + (u.s - u.h) u` (the clamp of the component on `u` to the
//!   source's value), so the base keeps everything orthogonal to `u`.

use crate::intervene::{Intervention, Op, Plan, Positions};
use crate::{unit, Error, Result};
use std::sync::Arc;
use tiller_engine::{Backend, Capture, LogitsFor, Model, Site};

/// What is patched at each (layer, position).
#[derive(Debug, Clone, Copy)]
pub enum Patched<'a> {
    /// The whole residual stream.
    Residual,
    /// Only its component along each layer's direction (`dirs[layer]`, any norm).
    Direction(&'a [Vec<f32>]),
}

/// A base and a source of equal token count, and the two tokens whose logit difference is
/// the metric.
#[derive(Debug, Clone)]
pub struct PatchSetup {
    pub base: Vec<u32>,
    pub source: Vec<u32>,
    pub answer: u32,
    pub wrong: u32,
}

/// Patching at every layer and position.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Patching {
    pub ld_base: f64,
    pub ld_source: f64,
    /// `[layer][position]`: the patched run's logit difference.
    pub ld: Vec<Vec<f64>>,
    /// `[layer][position]`: the fraction recovered.
    pub recovery: Vec<Vec<f64>>,
}

/// A base and a source of equal, non-zero token count.
fn check_pair(base: &[u32], source: &[u32]) -> Result<()> {
    if base.is_empty() || source.is_empty() {
        return Err(Error::Intervention(
            "patching needs a base and a source with at least one token each".into(),
        ));
    }
    if base.len() != source.len() {
        return Err(Error::Intervention(format!(
            "the base has {} tokens and the source {}: patching needs equal token counts \
             (reword one so that both tokenise to the same length)",
            base.len(),
            source.len()
        )));
    }
    Ok(())
}

fn check_token<B: Backend>(model: &Model<B>, t: u32) -> Result<()> {
    let v = model.config.vocab as u32;
    if t >= v {
        return Err(Error::Intervention(format!("token {t} is not in the vocabulary (0..{v})")));
    }
    Ok(())
}

impl PatchSetup {
    fn check<B: Backend>(&self, model: &Model<B>) -> Result<()> {
        check_pair(&self.base, &self.source)?;
        check_token(model, self.answer)?;
        check_token(model, self.wrong)?;
        if self.answer == self.wrong {
            return Err(Error::Intervention(
                "the answer and the wrong token are the same token".into(),
            ));
        }
        Ok(())
    }

    fn ld(&self, logits: &[f32]) -> f64 {
        logits[self.answer as usize] as f64 - logits[self.wrong as usize] as f64
    }
}

/// The plan that patches `source_row` (the source's residual at `layer`, `pos`) into a run.
fn patch_plan(what: Patched, layer: usize, pos: usize, source_row: &[f32]) -> Result<Plan> {
    let op = match what {
        Patched::Residual => Op::Affine {
            gamma: vec![0f32; source_row.len()].into(),
            beta: Arc::from(source_row),
            strength: 1.0,
        },
        Patched::Direction(dirs) => {
            let d =
                dirs.get(layer).ok_or(Error::Layer { layer, max: dirs.len().saturating_sub(1) })?;
            if d.len() != source_row.len() {
                return Err(Error::Intervention(format!(
                    "the direction at layer {layer} has {} values; the residual stream has {}",
                    d.len(),
                    source_row.len()
                )));
            }
            let u = unit(d);
            let value = crate::dot(&u, source_row);
            Op::Clamp { u: u.into(), value }
        }
    };
    Ok(Plan {
        interventions: vec![Intervention {
            layers: vec![(layer, op)],
            positions: Positions::Range { start: pos, end: pos + 1 },
            site: Site::Residual,
        }],
        prompt_len: 0,
    })
}

/// The source's residual stream at every layer (`[layer]` rows, `d` each) and its last
/// position's logits.
async fn source_rows<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
) -> Result<(Vec<Vec<f32>>, Vec<f32>)> {
    let mut cap = Capture::new(0..model.config.n_layer);
    let logits = model.session().forward(ids, Some(&mut cap), LogitsFor::Last).await?;
    Ok((cap.rows, logits))
}

/// Patching one layer at a time (a caller that must yield between steps, like the page's
/// worker, drives it layer by layer; [`patch`] runs it all).
pub struct Patcher<'a, 'm, B: Backend> {
    model: &'m Model<B>,
    setup: &'a PatchSetup,
    what: Patched<'a>,
    /// The source's residual stream per layer.
    src: Vec<Vec<f32>>,
    pub ld_base: f64,
    pub ld_source: f64,
}

impl<'a, 'm, B: Backend> Patcher<'a, 'm, B> {
    /// Run the source (keeping its residual stream) and the base.
    pub async fn new(
        model: &'m Model<B>,
        setup: &'a PatchSetup,
        what: Patched<'a>,
    ) -> Result<Patcher<'a, 'm, B>> {
        setup.check(model)?;
        let (src, src_logits) = source_rows(model, &setup.source).await?;
        let base_logits = model.session().forward(&setup.base, None, LogitsFor::Last).await?;
        let (ld_base, ld_source) = (setup.ld(&base_logits), setup.ld(&src_logits));
        let gap = ld_source - ld_base;
        if !gap.is_finite() || gap.abs() < 1e-6 {
            return Err(Error::Intervention(format!(
                "the logit difference is {ld_base:.4} on the base and {ld_source:.4} on the \
                 source: there is nothing to recover (choose an answer the source prefers)"
            )));
        }
        Ok(Patcher { model, setup, what, src, ld_base, ld_source })
    }

    /// The patched runs' logit differences at every position of `layer`.
    pub async fn layer(&self, layer: usize) -> Result<Vec<f64>> {
        let d = self.model.config.d_model;
        let rows = self
            .src
            .get(layer)
            .ok_or(Error::Layer { layer, max: self.src.len().saturating_sub(1) })?;
        let mut out = Vec::with_capacity(self.setup.base.len());
        for pos in 0..self.setup.base.len() {
            let mut plan = patch_plan(self.what, layer, pos, &rows[pos * d..(pos + 1) * d])?;
            let logits = self
                .model
                .session()
                .forward(&self.setup.base, Some(&mut plan), LogitsFor::Last)
                .await?;
            out.push(self.setup.ld(&logits));
        }
        Ok(out)
    }

    /// A logit difference as the fraction of the source's recovered.
    pub fn recovery(&self, ld: f64) -> f64 {
        (ld - self.ld_base) / (self.ld_source - self.ld_base)
    }
}

/// Patch at every layer and position of the base; `progress(done, total)` after each layer.
pub async fn patch<B: Backend>(
    model: &Model<B>,
    setup: &PatchSetup,
    what: Patched<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Patching> {
    let p = Patcher::new(model, setup, what).await?;
    let n_layer = model.config.n_layer;
    let (mut ld, mut recovery) = (Vec::with_capacity(n_layer), Vec::with_capacity(n_layer));
    for layer in 0..n_layer {
        let l = p.layer(layer).await?;
        recovery.push(l.iter().map(|&v| p.recovery(v)).collect());
        ld.push(l);
        progress(layer + 1, n_layer);
    }
    Ok(Patching { ld_base: p.ld_base, ld_source: p.ld_source, ld, recovery })
}

/// The base run's last-position logits with one patch at `layer`, `pos` (a heatmap cell's
/// next-token distribution).
pub async fn patched_logits<B: Backend>(
    model: &Model<B>,
    setup: &PatchSetup,
    what: Patched<'_>,
    layer: usize,
    pos: usize,
) -> Result<Vec<f32>> {
    setup.check(model)?;
    let (n_layer, d) = (model.config.n_layer, model.config.d_model);
    if layer >= n_layer {
        return Err(Error::Layer { layer, max: n_layer - 1 });
    }
    if pos >= setup.base.len() {
        return Err(Error::Intervention(format!(
            "position {pos} is past the base's {} tokens",
            setup.base.len()
        )));
    }
    let (src, _) = source_rows(model, &setup.source).await?;
    let mut plan = patch_plan(what, layer, pos, &src[layer][pos * d..(pos + 1) * d])?;
    Ok(model.session().forward(&setup.base, Some(&mut plan), LogitsFor::Last).await?)
}

/// One (base, source, expected answer) example for interchange-intervention accuracy.
#[derive(Debug, Clone)]
pub struct Interchange {
    pub base: Vec<u32>,
    pub source: Vec<u32>,
    /// The token the base should predict once the source's value is put in.
    pub expected: u32,
}

/// Interchange-intervention accuracy of a direction, per layer (Geiger et al.; pyvene): the
/// fraction of examples whose base run, with its component along `dirs[layer]` at the last
/// position set to the source's, predicts the expected token (greedy top-1).
pub async fn interchange_accuracy<B: Backend>(
    model: &Model<B>,
    examples: &[Interchange],
    dirs: &[Vec<f32>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let (n_layer, d) = (model.config.n_layer, model.config.d_model);
    if examples.is_empty() {
        return Err(Error::Intervention("interchange accuracy needs at least one example".into()));
    }
    let mut hits = vec![0usize; n_layer];
    for (i, ex) in examples.iter().enumerate() {
        let which = |e: Error| Error::Intervention(format!("example {}: {e}", i + 1));
        check_pair(&ex.base, &ex.source).map_err(which)?;
        check_token(model, ex.expected).map_err(which)?;
        let (src, _) = source_rows(model, &ex.source).await?;
        let last = ex.base.len() - 1;
        for (layer, hit) in hits.iter_mut().enumerate() {
            let row = &src[layer][last * d..(last + 1) * d];
            let mut plan = patch_plan(Patched::Direction(dirs), layer, last, row)?;
            let logits =
                model.session().forward(&ex.base, Some(&mut plan), LogitsFor::Last).await?;
            if crate::lens::top_k(&logits, 1).first().map(|t| t.0) == Some(ex.expected) {
                *hit += 1;
            }
            progress(i * n_layer + layer + 1, examples.len() * n_layer);
        }
    }
    Ok(hits.into_iter().map(|h| h as f64 / examples.len() as f64).collect())
}

/// The id of a text that must be one token (`" Paris"`, with its leading space), or `#ID`.
pub fn token_id<B: Backend>(model: &Model<B>, text: &str) -> Result<u32> {
    if let Some(id) = text.strip_prefix('#').and_then(|n| n.parse::<u32>().ok()) {
        check_token(model, id)?;
        return Ok(id);
    }
    let ids = model.tokenizer.encode(text).map_err(tiller_engine::Error::from)?;
    match ids.as_slice() {
        [one] => Ok(*one),
        _ => {
            let pieces: Vec<String> =
                ids.iter().map(|&i| model.tokenizer.decode(&[i]).unwrap_or_default()).collect();
            Err(Error::Intervention(format!(
                "{text:?} is {} tokens ({pieces:?}); give the text of one token (often with its \
                 leading space, e.g. \" Paris\") or #ID",
                ids.len()
            )))
        }
    }
}
