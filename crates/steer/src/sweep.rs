//! A strength sweep: one intervention at several strengths, with its effect metrics as curves
//! ([`crate::effects`]), and the same sweep of a random direction as a control.
//!
//! - **Concept scores** of the steered greedy continuation of the prompt: every concept's mean
//!   projection at the reading layer (read by the unsteered model), as a z-score: minus the
//!   unsteered continuation's mean, over the standard deviation of the per-token projections of
//!   the unsteered continuations (the prompt's and the neutral prompts'). The steered concept's
//!   score is the effect; the others' are side effects, on one scale.
//! - **Side effects on neutral text**: a few neutral prompts are continued greedily by the
//!   unsteered model; each prompt + continuation is run again with the intervention applied as
//!   configured (with its prompt length, so an intervention on generated positions steers the
//!   continuation), and at every continuation position the KL divergence of the steered from
//!   the unsteered next-token distribution is taken, and the perplexity of the continuation.
//! - **Random control**: the same op at the same layers and strengths with the concept's
//!   directions replaced by random ones of the same norms (seeded; for the LinEAS maps, the
//!   trained maps with their neurons shuffled; for Selective Steering, a random plane with the
//!   same layers). A steering effect that the control also shows is not the concept's.

use crate::effects::{kl, perplexity};
use crate::intervene::{Op, Plan};
use crate::lineas::LineasParams;
use crate::plan::{build, InterventionSpec, OpKind, Prepared};
use crate::selective::SelectivePlane;
use crate::stats::Rng;
use crate::{dot, unit, Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use tiller_engine::{Backend, Capture, LogitsFor, Model};

/// The neutral prompts side effects are measured on (continued by the unsteered model).
pub const NEUTRAL_PROMPTS: [&str; 4] = [
    "The city council met on Tuesday to discuss the budget for",
    "To replace the filter, first turn off the",
    "The train from the coast arrives at the station",
    "In the museum's new wing, the paintings are",
];
/// Tokens each neutral prompt is continued by.
pub const NEUTRAL_TOKENS: usize = 16;
/// Seed of the control's random directions.
pub const CONTROL_SEED: u64 = 0xc0a7_0001;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SweepPoint {
    pub strength: f32,
    /// True for the random-direction control.
    #[serde(default)]
    pub control: bool,
    pub ids: Vec<u32>,
    pub text: String,
    /// Mean KL(steered || unsteered) over every continuation position of the neutral prompts.
    pub kl_mean: f64,
    /// The mean KL of each neutral prompt.
    pub kl: Vec<f64>,
    /// Perplexity of the neutral continuations under steering (all positions pooled).
    pub perplexity: f64,
    /// Every concept's score on the generated text, as a z-score (see the module docs).
    pub scores: BTreeMap<String, f64>,
    /// The same, as raw mean projections.
    pub raw_scores: BTreeMap<String, f64>,
}

/// What to sweep over.
pub struct Sweep<'a> {
    pub spec: &'a InterventionSpec,
    pub strengths: &'a [f32],
    pub prompt: &'a [u32],
    /// Neutral prompts (token ids); [`NEUTRAL_PROMPTS`] when empty.
    pub neutral: &'a [Vec<u32>],
    pub max_tokens: usize,
    pub read_layer: usize,
    /// Also sweep the random-direction control.
    pub control: bool,
}

/// The unsteered reference of every concept's score: mean of the prompt's unsteered
/// continuation and the spread of the unsteered tokens.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Baseline {
    pub mean: f64,
    pub sd: f64,
}

/// A sweep in progress: the unsteered references are computed once, then [`Sweeper::point`]
/// runs one strength (the page yields between points).
pub struct Sweeper<'m, B: Backend> {
    model: &'m Model<B>,
    concepts: Vec<Prepared>,
    control: Vec<Prepared>,
    spec: InterventionSpec,
    prompt: Vec<u32>,
    max_tokens: usize,
    read_layer: usize,
    /// Neutral prompt + unsteered continuation, the prompt's length, and the unsteered logits.
    neutral: Vec<(Vec<u32>, usize, Vec<f32>)>,
    pub baseline: BTreeMap<String, Baseline>,
    /// The unsteered continuation of the prompt.
    pub baseline_ids: Vec<u32>,
    trained: Option<(Plan, Plan)>,
}

async fn greedy<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    n: usize,
    plan: Option<&mut Plan>,
) -> Result<Vec<u32>> {
    let sampler = tiller_engine::Sampler::new(Default::default())?;
    let g = tiller_engine::generate(model, prompt, n, sampler, plan.map(|p| p as _), &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .await?;
    Ok(g.ids)
}

/// Per-token projections on `unit(v)` at `layer` of `ids[from..]`, unsteered.
async fn projections<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
    from: usize,
    layer: usize,
    v: &[f32],
) -> Result<Vec<f64>> {
    let u = unit(v);
    let mut cap = Capture::new([layer]);
    model.session().forward(ids, Some(&mut cap), LogitsFor::Last).await?;
    let d = model.config.d_model;
    Ok(cap.rows[0].chunks_exact(d).skip(from).map(|r| dot(r, &u) as f64).collect())
}

/// A random vector with the norm of `v`.
fn random_like(r: &mut Rng, v: &[f32]) -> Vec<f32> {
    let g: Vec<f32> = v.iter().map(|_| r.normal() as f32).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    unit(&g).iter().map(|x| x * n).collect()
}

/// The concept with its directions (and mean differences) replaced by random ones of the same
/// norms; its Selective Steering plane (when it has one) by a random plane with the same mask.
async fn control_of<B: Backend>(
    model: &Model<B>,
    c: &Prepared,
    op: OpKind,
    seed: u64,
) -> Result<Prepared> {
    let mut r = Rng::new(seed);
    let mut out = Prepared::clone(c);
    out.dirs = c.dirs.iter().map(|v| random_like(&mut r, v)).collect();
    out.mean_diff = c.mean_diff.iter().map(|v| random_like(&mut r, v)).collect();
    out.selective = Default::default();
    if op == OpKind::SelectiveSteering {
        let real = c.selective_plane(model).await?;
        let b1 = unit(&random_like(&mut r, &real.b1));
        let mut b2 = random_like(&mut r, &real.b2);
        let along = dot(&b2, &b1);
        b2.iter_mut().zip(&b1).for_each(|(x, y)| *x -= along * y);
        let plane = SelectivePlane { b1, b2: unit(&b2), ..(*real).clone() };
        let _ = out.selective.set(Arc::new(plane));
    }
    Ok(out)
}

/// The trained LinEAS plan with each map's neurons shuffled (the affine op's control).
fn shuffled(plan: &Plan, seed: u64) -> Plan {
    let mut r = Rng::new(seed);
    let mut p = plan.clone();
    for iv in &mut p.interventions {
        for (_, op) in &mut iv.layers {
            if let Op::Affine { gamma, beta, .. } = op {
                let perm = r.permutation(gamma.len());
                *gamma = perm.iter().map(|&i| gamma[i]).collect();
                *beta = perm.iter().map(|&i| beta[i]).collect();
            }
        }
    }
    p
}

fn set_affine_strength(plan: &mut Plan, x: f32) {
    for iv in &mut plan.interventions {
        for (_, op) in &mut iv.layers {
            if let Op::Affine { strength, .. } = op {
                *strength = x;
            }
        }
    }
}

impl<'m, B: Backend> Sweeper<'m, B> {
    pub async fn new(model: &'m Model<B>, concepts: &[Prepared], s: &Sweep<'_>) -> Result<Self> {
        if s.strengths.iter().any(|x| !x.is_finite()) {
            return Err(Error::Intervention("strengths must be finite numbers".into()));
        }
        if s.read_layer >= model.config.n_layer {
            return Err(Error::Layer { layer: s.read_layer, max: model.config.n_layer - 1 });
        }
        if s.prompt.is_empty() {
            return Err(Error::Intervention("the prompt needs a token".into()));
        }
        let target = concepts
            .iter()
            .find(|c| c.concept.name == s.spec.concept)
            .ok_or_else(|| Error::Intervention(format!("unknown concept `{}`", s.spec.concept)))?;
        let control = if s.control {
            let mut cs: Vec<Prepared> = concepts.iter().map(Prepared::clone).collect();
            for c in cs.iter_mut().filter(|c| c.concept.name == s.spec.concept) {
                *c = control_of(model, target, s.spec.op, CONTROL_SEED).await?;
            }
            cs
        } else {
            Vec::new()
        };
        let owned: Vec<Vec<u32>>;
        let neutral_prompts: &[Vec<u32>] = if s.neutral.is_empty() {
            owned = NEUTRAL_PROMPTS
                .iter()
                .map(|t| model.encode_prompt(t, false))
                .collect::<tiller_engine::Result<_>>()?;
            &owned
        } else {
            s.neutral
        };
        let mut neutral = Vec::new();
        for p in neutral_prompts {
            if p.is_empty() {
                return Err(Error::Intervention("a neutral prompt is empty".into()));
            }
            let cont = greedy(model, p, NEUTRAL_TOKENS, None).await?;
            let all: Vec<u32> = p.iter().chain(&cont).copied().collect();
            let logits = model.session().forward(&all, None, LogitsFor::All).await?;
            neutral.push((all, p.len(), logits));
        }
        let baseline_ids = greedy(model, s.prompt, s.max_tokens, None).await?;
        let prompt_all: Vec<u32> = s.prompt.iter().chain(&baseline_ids).copied().collect();
        let mut baseline = BTreeMap::new();
        for c in concepts {
            let v = &c.mean_diff[s.read_layer];
            let own = projections(model, &prompt_all, s.prompt.len(), s.read_layer, v).await?;
            let mut pool = own.clone();
            for (all, plen, _) in &neutral {
                pool.extend(projections(model, all, *plen, s.read_layer, v).await?);
            }
            let mean = own.iter().sum::<f64>() / own.len().max(1) as f64;
            let (pm, _) = crate::stats::mean_var(&pool);
            let sd = (pool.iter().map(|x| (x - pm).powi(2)).sum::<f64>()
                / pool.len().max(1) as f64)
                .sqrt();
            baseline.insert(c.concept.name.clone(), Baseline { mean, sd });
        }
        // LinEAS is trained once; its strength only scales the trained maps.
        let trained = if s.spec.op == OpKind::Affine {
            let one = InterventionSpec { strength: 1.0, enabled: true, ..s.spec.clone() };
            let p = build(model, concepts, &[one], s.prompt.len(), &LineasParams::default())
                .await?
                .ok_or_else(|| Error::Intervention("nothing to sweep".into()))?;
            let c = shuffled(&p, CONTROL_SEED);
            Some((p, c))
        } else {
            None
        };
        Ok(Sweeper {
            model,
            concepts: concepts.iter().map(Prepared::clone).collect(),
            control,
            spec: s.spec.clone(),
            prompt: s.prompt.to_vec(),
            max_tokens: s.max_tokens,
            read_layer: s.read_layer,
            neutral,
            baseline,
            baseline_ids,
            trained,
        })
    }

    async fn plan(&self, x: f32, control: bool) -> Result<Plan> {
        if let Some((real, ctl)) = &self.trained {
            let mut p = if control { ctl.clone() } else { real.clone() };
            set_affine_strength(&mut p, x);
            return Ok(p);
        }
        let concepts = if control { &self.control } else { &self.concepts };
        let spec = InterventionSpec { strength: x, enabled: true, ..self.spec.clone() };
        build(self.model, concepts, &[spec], self.prompt.len(), &LineasParams::default())
            .await?
            .ok_or_else(|| Error::Intervention("nothing to sweep".into()))
    }

    /// One strength of the sweep (or of its random control).
    pub async fn point(&self, x: f32, control: bool) -> Result<SweepPoint> {
        if !x.is_finite() {
            return Err(Error::Intervention(format!(
                "the strength must be a finite number, got {x}"
            )));
        }
        if control && self.control.is_empty() && self.trained.is_none() {
            return Err(Error::Intervention("this sweep has no control".into()));
        }
        let model = self.model;
        let vocab = model.config.vocab;
        let mut plan = self.plan(x, control).await?;
        plan.prompt_len = self.prompt.len();
        let ids = greedy(model, &self.prompt, self.max_tokens, Some(&mut plan)).await?;
        let all: Vec<u32> = self.prompt.iter().chain(&ids).copied().collect();
        let (mut scores, mut raw_scores) = (BTreeMap::new(), BTreeMap::new());
        for c in &self.concepts {
            let p = projections(
                model,
                &all,
                self.prompt.len(),
                self.read_layer,
                &c.mean_diff[self.read_layer],
            )
            .await?;
            let raw = if p.is_empty() { f64::NAN } else { p.iter().sum::<f64>() / p.len() as f64 };
            let b = self.baseline[&c.concept.name];
            raw_scores.insert(c.concept.name.clone(), raw);
            scores.insert(
                c.concept.name.clone(),
                if b.sd > 0.0 { (raw - b.mean) / b.sd } else { f64::NAN },
            );
        }
        // Side effects: each neutral prompt's unsteered continuation, run with the
        // intervention applied as configured.
        let (mut kls, mut all_kl, mut nll, mut count) = (Vec::new(), Vec::new(), 0f64, 0usize);
        for (text, plen, base) in &self.neutral {
            plan.prompt_len = *plen;
            let steered = model.session().forward(text, Some(&mut plan), LogitsFor::All).await?;
            let rows = plen - 1..text.len() - 1;
            let mut these = Vec::new();
            for t in rows.clone() {
                these.push(kl(
                    &steered[t * vocab..(t + 1) * vocab],
                    &base[t * vocab..(t + 1) * vocab],
                ));
            }
            kls.push(these.iter().sum::<f64>() / these.len().max(1) as f64);
            all_kl.extend(these);
            // Perplexity of the continuation: tokens plen.. predicted from plen-1..
            let cont = &text[plen - 1..];
            let logits = &steered[(plen - 1) * vocab..];
            let ppl = perplexity(logits, cont, vocab);
            if ppl.is_finite() {
                nll += ppl.ln() * (cont.len() - 1) as f64;
                count += cont.len() - 1;
            }
        }
        Ok(SweepPoint {
            strength: x,
            control,
            text: model.tokenizer.decode(&ids).map_err(tiller_engine::Error::from)?,
            ids,
            kl_mean: all_kl.iter().sum::<f64>() / all_kl.len().max(1) as f64,
            kl: kls,
            perplexity: if count > 0 { (nll / count as f64).exp() } else { f64::NAN },
            scores,
            raw_scores,
        })
    }
}

/// The whole sweep: every strength, then (when asked) every strength of the control.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SweepReport {
    pub points: Vec<SweepPoint>,
    pub control: Vec<SweepPoint>,
    pub baseline: BTreeMap<String, Baseline>,
    pub baseline_text: String,
    pub neutral_prompts: usize,
}

/// Run the sweep, calling `on_point` as each point finishes.
pub async fn sweep<B: Backend>(
    model: &Model<B>,
    concepts: &[Prepared],
    s: &Sweep<'_>,
    on_point: &mut dyn FnMut(&SweepPoint),
) -> Result<SweepReport> {
    let sw = Sweeper::new(model, concepts, s).await?;
    let mut points = Vec::new();
    for &x in s.strengths {
        let p = sw.point(x, false).await?;
        on_point(&p);
        points.push(p);
    }
    let mut control = Vec::new();
    if s.control {
        for &x in s.strengths {
            let p = sw.point(x, true).await?;
            on_point(&p);
            control.push(p);
        }
    }
    Ok(SweepReport {
        points,
        control,
        baseline_text: model
            .tokenizer
            .decode(&sw.baseline_ids)
            .map_err(tiller_engine::Error::from)?,
        baseline: sw.baseline,
        neutral_prompts: sw.neutral.len(),
    })
}
