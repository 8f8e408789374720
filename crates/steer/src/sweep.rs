//! A strength sweep: one intervention at several strengths, with its effect metrics as curves
//! ([`crate::effects`]): the greedy continuation of a prompt, every concept's score on it (the
//! steered concept's and the side effects on the others), and KL and perplexity on a neutral
//! text.

use crate::effects::{concept_score, kl_rows, perplexity};
use crate::lineas::LineasParams;
use crate::plan::{build, InterventionSpec, OpKind, Prepared};
use crate::{Error, Result};
use std::collections::BTreeMap;
use tiller_engine::{Backend, LogitsFor, Model};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SweepPoint {
    pub strength: f32,
    pub ids: Vec<u32>,
    pub text: String,
    /// Mean over the neutral text's positions of KL(steered || baseline).
    pub kl_mean: f64,
    pub kl: Vec<f64>,
    pub perplexity: f64,
    /// Every concept's score on the generated text (unsteered read at the reading layer).
    pub scores: BTreeMap<String, f64>,
}

/// What to sweep over.
pub struct Sweep<'a> {
    pub spec: &'a InterventionSpec,
    pub strengths: &'a [f32],
    pub prompt: &'a [u32],
    pub neutral: &'a [u32],
    pub max_tokens: usize,
    pub read_layer: usize,
}

/// Run the sweep, calling `on_point` as each strength finishes.
pub fn sweep<B: Backend>(
    model: &Model<B>,
    concepts: &[Prepared],
    s: &Sweep,
    on_point: &mut dyn FnMut(&SweepPoint),
) -> Result<Vec<SweepPoint>> {
    if s.strengths.iter().any(|x| !x.is_finite()) {
        return Err(Error::Intervention("strengths must be finite numbers".into()));
    }
    if s.read_layer >= model.config.n_layer {
        return Err(Error::Layer { layer: s.read_layer, max: model.config.n_layer - 1 });
    }
    if s.prompt.is_empty() || s.neutral.len() < 2 {
        return Err(Error::Intervention(
            "the prompt needs a token and the neutral text at least two".into(),
        ));
    }
    let vocab = model.config.vocab;
    let base = model.session().forward(s.neutral, None, LogitsFor::All)?;
    let lineas = LineasParams::default();
    // LinEAS is trained once; its strength only scales the trained maps.
    let trained = if s.spec.op == OpKind::Affine {
        let one = InterventionSpec { strength: 1.0, enabled: true, ..s.spec.clone() };
        build(model, concepts, &[one], s.prompt.len(), &lineas)?
    } else {
        None
    };
    let mut points = Vec::new();
    for &x in s.strengths {
        let mut plan = match &trained {
            Some(p) => {
                let mut p = p.clone();
                for iv in &mut p.interventions {
                    for (_, op) in &mut iv.layers {
                        if let crate::intervene::Op::Affine { strength, .. } = op {
                            *strength = x;
                        }
                    }
                }
                p
            }
            None => {
                let spec = InterventionSpec { strength: x, enabled: true, ..s.spec.clone() };
                build(model, concepts, &[spec], s.prompt.len(), &lineas)?
                    .ok_or_else(|| Error::Intervention("nothing to sweep".into()))?
            }
        };
        plan.prompt_len = s.prompt.len();
        let sampler = tiller_engine::Sampler::new(Default::default())?;
        let g = tiller_engine::generate(
            model,
            s.prompt,
            s.max_tokens,
            sampler,
            Some(&mut plan),
            &mut |_| std::ops::ControlFlow::Continue(()),
        )?;
        let all: Vec<u32> = s.prompt.iter().chain(&g.ids).copied().collect();
        let mut scores = BTreeMap::new();
        for c in concepts {
            let v = &c.mean_diff[s.read_layer];
            scores.insert(
                c.concept.name.clone(),
                concept_score(model, &all, s.prompt.len(), s.read_layer, v)?,
            );
        }
        // One steered forward over the neutral text gives both KL and perplexity.
        plan.prompt_len = s.neutral.len();
        let steered = model.session().forward(s.neutral, Some(&mut plan), LogitsFor::All)?;
        let kl = kl_rows(&steered, &base, vocab);
        let p = SweepPoint {
            strength: x,
            text: model.tokenizer.decode(&g.ids).map_err(tiller_engine::Error::from)?,
            ids: g.ids,
            kl_mean: kl.iter().sum::<f64>() / kl.len().max(1) as f64,
            kl,
            perplexity: perplexity(&steered, s.neutral, vocab),
            scores,
        };
        on_point(&p);
        points.push(p);
    }
    Ok(points)
}
