//! A concept analysed: its direction by one method at every layer, with every diagnostic.
//! This is what `tiller concept --json` prints and what the page charts; both call [`analyze`].

use crate::concept::{capture_concept, capture_concept_mlp, Acts, Concept, MlpActs, Read};
use crate::diagnostics::{self, LayerDiagnostics};
use crate::directions::{directions, orient, stability, svd_subspace, Method};
use crate::plan::Prepared;
use crate::snmf::{concept_snmf, Feature, LayerSnmf, SnmfParams};
use crate::{probe, Result};
use tiller_engine::cpu::par;
use tiller_engine::{Backend, Model};

/// A token with its unembedding score.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenScore {
    pub id: u32,
    pub token: String,
    pub score: f32,
}

/// The SVD method's subspace at one layer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SvdReport {
    pub singular_values: Vec<f64>,
    pub eigengap: f64,
    pub effective_rank: f64,
    /// Unit vectors, largest singular value first.
    pub subspace: Vec<Vec<f32>>,
}

/// The SNMF method's features at one layer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SnmfReport {
    pub features: Vec<FeatureReport>,
    /// Index of the feature the direction comes from.
    pub best_feature: usize,
    /// Relative reconstruction error |A - YZ| / |A| at the first and the last step.
    pub error_first: f64,
    pub error_last: f64,
    pub steps: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FeatureReport {
    pub concept_gap: f64,
    /// Top-activating tokens: the token and the text it is in.
    pub top_tokens: Vec<FeatureToken>,
    /// Unit residual-stream direction of the feature (through the down projection).
    pub direction: Vec<f32>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FeatureToken {
    pub token: String,
    pub text: usize,
    pub position: usize,
    pub weight: f32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerReport {
    pub layer: usize,
    pub direction: Vec<f32>,
    pub norm: f32,
    /// k-fold held-out accuracy of a logistic probe (None with fewer than 2 pairs).
    pub probe_accuracy: Option<f64>,
    #[serde(flatten)]
    pub diagnostics: LayerDiagnostics,
    pub stability: f64,
    pub promotes: Vec<TokenScore>,
    pub suppresses: Vec<TokenScore>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub svd: Option<SvdReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmf: Option<SnmfReport>,
    /// The examples at this layer: (projection on the unit direction, on the top principal
    /// component orthogonal to it), positives and negatives.
    pub scatter_pos: Vec<[f32; 2]>,
    pub scatter_neg: Vec<[f32; 2]>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConceptReport {
    pub name: String,
    pub method: Method,
    pub read: Read,
    /// The layer to steer at by the diagnostics (see [`best_layer`]).
    pub best_layer: usize,
    pub layers: Vec<LayerReport>,
}

/// How much to compute.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bootstrap resamples for stability (0: skip; SNMF reports the agreement of seeds).
    pub resamples: usize,
    /// Promoted and suppressed tokens listed per layer.
    pub top_k: usize,
    pub snmf: SnmfParams,
}

impl Default for Options {
    fn default() -> Self {
        Options { resamples: 16, top_k: 10, snmf: SnmfParams::default() }
    }
}

/// Capture the concept, compute `method`'s direction at every layer and all diagnostics.
/// `progress(stage, done, total)` is called between stages.
pub fn analyze<B: Backend>(
    model: &Model<B>,
    c: &Concept,
    method: Method,
    opts: &Options,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<ConceptReport> {
    Ok(analyze_and_prepare(model, c, method, opts, progress)?.0)
}

/// As [`analyze`], also returning what interventions on the concept need (with `method` as
/// its method), from the same capture.
pub fn analyze_and_prepare<B: Backend>(
    model: &Model<B>,
    c: &Concept,
    method: Method,
    opts: &Options,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(ConceptReport, Prepared)> {
    let n_layer = model.config.n_layer;
    progress("reading the examples", 0, 4);
    let Computed { pos, neg, dirs, snmf } = compute(model, c, method, &opts.snmf)?;
    progress("directions", 2, 4);
    let stab = match &snmf {
        // SNMF is refitted from other seeds: the stability is how well they agree.
        Some((_, mlp)) if opts.resamples > 0 => snmf_seed_agreement(model, mlp, c, &dirs, opts)?,
        Some(_) => vec![0.0; n_layer],
        None if opts.resamples > 0 => {
            // Fewer resamples for the probe, which is refitted each time.
            let r =
                if method == Method::Probe { opts.resamples.div_ceil(2) } else { opts.resamples };
            stability(method, &pos, &neg, &dirs, r, 0x5eed)?
        }
        None => vec![0.0; n_layer],
    };
    progress("diagnostics", 3, 4);
    let per_layer = par::map((0..n_layer).collect(), |l| {
        (
            probe::heldout_accuracy(&pos, &neg, l),
            diagnostics::layer(&pos, &neg, l, &dirs[l]),
            scatter(&pos, &neg, l, &dirs[l]),
        )
    });
    let tok = |model: &Model<B>, ids: Vec<(u32, f32)>| -> Vec<TokenScore> {
        ids.into_iter()
            .map(|(id, score)| TokenScore {
                id,
                token: model.tokenizer.decode(&[id]).unwrap_or_default(),
                score,
            })
            .collect()
    };
    let mut layers = Vec::with_capacity(n_layer);
    for (l, (acc, diag, (scatter_pos, scatter_neg))) in per_layer.into_iter().enumerate() {
        let d = &dirs[l];
        let (up, down) = diagnostics::top_tokens(model, d, opts.top_k);
        let svd = if method == Method::Svd {
            svd_subspace(&pos, &neg, l, 4).ok().map(|s| SvdReport {
                singular_values: s.singular_values,
                eigengap: s.eigengap,
                effective_rank: s.effective_rank,
                subspace: s.vectors,
            })
        } else {
            None
        };
        let snmf = snmf.as_ref().map(|(s, _)| {
            let s = &s[l];
            let feature = |f: &Feature| FeatureReport {
                concept_gap: f.concept_gap,
                direction: crate::unit(&f.direction),
                top_tokens: f
                    .top
                    .iter()
                    .map(|t| FeatureToken {
                        token: model.tokenizer.decode(&[t.token]).unwrap_or_default(),
                        text: t.text,
                        position: t.position,
                        weight: t.weight,
                    })
                    .collect(),
            };
            SnmfReport {
                features: s.features.iter().map(feature).collect(),
                best_feature: s.best,
                error_first: s.errors.first().copied().unwrap_or(0.0),
                error_last: s.errors.last().copied().unwrap_or(0.0),
                steps: s.errors.len(),
            }
        });
        layers.push(LayerReport {
            layer: l,
            norm: d.iter().map(|x| x * x).sum::<f32>().sqrt(),
            direction: d.clone(),
            probe_accuracy: acc,
            diagnostics: diag,
            stability: stab[l],
            promotes: tok(model, up),
            suppresses: tok(model, down),
            svd,
            snmf,
            scatter_pos,
            scatter_neg,
        });
    }
    progress("done", 4, 4);
    let report = ConceptReport {
        name: c.name.clone(),
        method,
        read: c.read,
        best_layer: best_layer(&layers),
        layers,
    };
    let prepared = Prepared::from_acts(Concept { method, ..c.clone() }, &pos, &neg, dirs)?;
    Ok((report, prepared))
}

/// Each example at layer `l` as (projection on the unit direction, projection on the top
/// principal component of the examples with the direction removed).
#[allow(clippy::type_complexity)]
fn scatter(pos: &Acts, neg: &Acts, l: usize, dir: &[f32]) -> (Vec<[f32; 2]>, Vec<[f32; 2]>) {
    let u = crate::unit(dir);
    let rows: Vec<Vec<f64>> = pos
        .at(l)
        .chain(neg.at(l))
        .map(|h| {
            let c = crate::dot(h, &u);
            h.iter().zip(&u).map(|(x, y)| (x - c * y) as f64).collect()
        })
        .collect();
    let pc = crate::directions::first_pc(&rows).ok();
    let point = |h: &[f32]| {
        let y =
            pc.as_ref().map_or(0.0, |p| h.iter().zip(p).map(|(a, b)| *a as f64 * b).sum::<f64>());
        [crate::dot(h, &u), y as f32]
    };
    (pos.at(l).map(point).collect(), neg.at(l).map(point).collect())
}

/// A concept's activations and its direction at every layer.
pub struct Computed {
    pub pos: Acts,
    pub neg: Acts,
    pub dirs: Vec<Vec<f32>>,
    /// For SNMF: the factorization of each layer and the MLP activations it came from.
    pub snmf: Option<(Vec<LayerSnmf>, MlpActs)>,
}

/// Capture the concept and compute its direction by `method` at every layer.
pub fn compute<B: Backend>(
    model: &Model<B>,
    c: &Concept,
    method: Method,
    snmf: &SnmfParams,
) -> Result<Computed> {
    if method != Method::Snmf {
        let (pos, neg) = capture_concept(model, c)?;
        let dirs = directions(method, &pos, &neg)?;
        return Ok(Computed { pos, neg, dirs, snmf: None });
    }
    let (pos, neg, mlp) = capture_concept_mlp(model, c)?;
    let layers = concept_snmf(model, &mlp, c.pairs.len(), c.read, snmf)?;
    // The feature's own sign says which class uses it more at the read position; what
    // steering needs is the side of the residual stream the positives lie on.
    let dirs = layers
        .iter()
        .enumerate()
        .map(|(l, f)| {
            let mut v: Vec<f64> = f.direction.iter().map(|x| *x as f64).collect();
            orient(&mut v, &pos, &neg, l);
            v.iter().map(|x| *x as f32).collect()
        })
        .collect();
    Ok(Computed { pos, neg, dirs, snmf: Some((layers, mlp)) })
}

/// For SNMF: the mean |cosine| between each layer's direction and the one from a refit with
/// other seeds (two refits).
fn snmf_seed_agreement<B: Backend>(
    model: &Model<B>,
    mlp: &MlpActs,
    c: &Concept,
    dirs: &[Vec<f32>],
    opts: &Options,
) -> Result<Vec<f64>> {
    let mut sum = vec![0f64; dirs.len()];
    let seeds = [opts.snmf.seed ^ 0x9e37_79b9, opts.snmf.seed ^ 0x7f4a_7c15];
    for seed in seeds {
        let p = SnmfParams { seed, ..opts.snmf };
        let other = concept_snmf(model, mlp, c.pairs.len(), c.read, &p)?;
        for (l, o) in other.iter().enumerate() {
            sum[l] += crate::cosine(&o.direction, &dirs[l]).abs();
        }
    }
    Ok(sum.into_iter().map(|s| s / seeds.len() as f64).collect())
}

/// The layer to steer at: among the middle half of the layers (the first and last quarter
/// steer poorly in the literature and in our sweeps), the one where the direction separates
/// the classes best, `auroc * stability * min(|d| / 2, 1)`, ties to the earlier layer.
pub fn best_layer(layers: &[LayerReport]) -> usize {
    let n = layers.len();
    let (lo, hi) = (n / 4, (3 * n).div_ceil(4).max(n / 4 + 1).min(n));
    let score = |r: &LayerReport| {
        r.diagnostics.auroc * r.stability.max(0.0) * (r.diagnostics.cohens_d.abs() / 2.0).min(1.0)
    };
    let mut best = lo.min(n.saturating_sub(1));
    for l in lo..hi {
        if score(&layers[l]) > score(&layers[best]) {
            best = l;
        }
    }
    best
}
