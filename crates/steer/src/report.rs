//! A concept analysed: its direction by one method at every layer, with every diagnostic.
//! This is what `tiller concept --json` prints and what the page charts; both call [`analyze`].
//!
//! Separation numbers are held out ([`crate::heldout`]): `auroc`, `cohens_d`, `accuracy` and
//! `probe_accuracy` come from directions (and probes) fitted on other folds of pairs, and each
//! has a null baseline from runs with the labels shuffled within pairs. In-sample values are
//! named `*_in_sample`. The layer to steer at is chosen from held-out numbers only.

use crate::concept::{capture_concept_full, Acts, Concept, ConceptActs, MlpActs, Read};
use crate::diagnostics::{self, LayerDiagnostics};
use crate::directions::{bootstrap_cosine, directions, orient, svd_subspace, Method};
use crate::effects::{extremes, next_token_shift};
use crate::heldout::{flipped, label_flips, separation, Band, Fit, Separation};
use crate::plan::Prepared;
use crate::snmf::{concept_snmf, rank_features, Feature, LayerSnmf, SnmfParams};
use crate::{geometry, probe, Error, Result};
use tiller_engine::cpu::par;
use tiller_engine::{Backend, Model};

/// A token with a score (an unembedding score, or a mean log-probability change).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenScore {
    pub id: u32,
    pub token: String,
    pub score: f32,
}

/// What adding the direction at a layer does to the next token (see
/// [`crate::effects::next_token_shift`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Promotes {
    pub layer: usize,
    /// The length of the vector added: the distance between the class means along the
    /// direction (for the mean difference, the mean difference itself).
    pub added_norm: f32,
    /// Contexts averaged over (the concept's first examples of each class).
    pub contexts: usize,
    /// Largest mean log-probability increase first.
    pub promotes: Vec<TokenScore>,
    /// Largest mean decrease first (scores negative).
    pub suppresses: Vec<TokenScore>,
}

/// The SVD method's subspace at one layer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SvdReport {
    pub singular_values: Vec<f64>,
    /// s1 / s2.
    pub eigengap_ratio: f64,
    /// s1^2 / sum s^2.
    pub explained_variance: f64,
    pub effective_rank: f64,
    /// Unit vectors, largest singular value first.
    pub subspace: Vec<Vec<f32>>,
}

/// The SNMF method's features at one layer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SnmfReport {
    /// Features factored (the k asked for, at most half the tokens).
    pub k: usize,
    pub sparsity: f64,
    pub features: Vec<FeatureReport>,
    /// Index of the feature the direction comes from.
    pub best_feature: usize,
    /// Relative reconstruction error |A - GF'| / |A| at the first and the best iteration.
    pub error_first: f64,
    pub error_best: f64,
    pub best_iteration: usize,
    pub steps: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FeatureReport {
    /// Scale-free class separation of the feature's weight at the texts' read positions.
    pub concept_auroc: f64,
    pub concept_d: f64,
    pub neurons: usize,
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
    /// Held-out AUROC of the direction (k-fold over pairs).
    pub auroc: f64,
    /// Held-out Cohen's d.
    pub cohens_d: f64,
    /// Held-out accuracy of the direction with the training midpoint as threshold.
    pub accuracy: f64,
    /// k-fold held-out accuracy of a logistic probe (None with fewer than 2 pairs).
    pub probe_accuracy: Option<f64>,
    /// The same numbers with labels shuffled within pairs: the mean over the runs and their
    /// range (lowest, highest).
    pub auroc_null: f64,
    pub auroc_null_band: [f64; 2],
    pub accuracy_null: f64,
    pub probe_accuracy_null: Option<f64>,
    pub probe_accuracy_null_band: Option<[f64; 2]>,
    #[serde(flatten)]
    pub diagnostics: LayerDiagnostics,
    /// Mean cosine of directions from bootstrap resamples of the pairs with this one
    /// (optimistic: resamples share most pairs). SNMF: agreement with a refit from another seed.
    pub bootstrap_cosine: f64,
    /// Shesha's feature-split stability of the examples' geometry (no labels).
    pub feature_split: f64,
    /// Shesha's supervised RDM alignment with the labels (fits nothing: all examples).
    pub supervised_alignment: f64,
    /// The direct unembedding of the direction (LM head on the final norm's gain times it).
    pub unembedding_promotes: Vec<TokenScore>,
    pub unembedding_suppresses: Vec<TokenScore>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub svd: Option<SvdReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmf: Option<SnmfReport>,
    /// The examples at this layer: (projection on the unit direction, on the top principal
    /// component orthogonal to it), positives and negatives (in sample).
    pub scatter_pos: Vec<[f32; 2]>,
    pub scatter_neg: Vec<[f32; 2]>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConceptReport {
    pub name: String,
    pub method: Method,
    pub read: Read,
    /// Folds of the held-out protocol.
    pub folds: usize,
    /// Shuffled-label runs of the null baseline.
    pub null_runs: usize,
    /// The layer to steer at by the held-out numbers (see [`best_layer`]).
    pub best_layer: usize,
    /// What adding the direction does to the next token, at the best layer.
    pub promotes: Option<Promotes>,
    pub layers: Vec<LayerReport>,
}

/// How much to compute.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bootstrap resamples for the bootstrap cosine (0: skip; SNMF refits from another seed).
    pub resamples: usize,
    /// Shuffled-label runs for the null baseline (0: skip).
    pub null_runs: usize,
    /// Tokens listed per layer and for the promoted/suppressed view.
    pub top_k: usize,
    /// Compute what the direction promotes at the best layer.
    pub promotes: bool,
    pub snmf: SnmfParams,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            resamples: 16,
            null_runs: 8,
            top_k: 10,
            promotes: true,
            snmf: SnmfParams::default(),
        }
    }
}

/// Seed of the null baseline's label shuffles.
pub const NULL_SEED: u64 = 0x0a11;

/// Capture the concept, compute `method`'s direction at every layer and all diagnostics.
/// `progress(stage, done, total)` is called between stages.
pub async fn analyze<B: Backend>(
    model: &Model<B>,
    c: &Concept,
    method: Method,
    opts: &Options,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<ConceptReport> {
    Ok(analyze_and_prepare(model, c, method, opts, progress).await?.0)
}

/// As [`analyze`], also returning what interventions on the concept need (with `method` as
/// its method), from the same capture.
pub async fn analyze_and_prepare<B: Backend>(
    model: &Model<B>,
    c: &Concept,
    method: Method,
    opts: &Options,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(ConceptReport, Prepared)> {
    let n_layer = model.config.n_layer;
    let total = 6;
    progress("reading the examples", 0, total);
    let Computed { pos, neg, dirs, snmf, contexts, context_logits } =
        compute(model, c, method, &opts.snmf, opts.promotes).await?;
    let n_pairs = pos.acts.len();
    progress("held-out separation", 1, total);
    let snmf_layers = snmf.as_ref().map(|(s, _)| s.as_slice());
    let no_flips = vec![false; n_pairs];
    let fit = fitter(method, snmf_layers, &no_flips);
    // With one pair nothing can be held out: the held-out numbers are absent (NaN), not faked.
    let held = if n_pairs >= 2 {
        separation(&pos, &neg, &*fit)?
    } else {
        vec![Separation { auroc: f64::NAN, cohens_d: f64::NAN, accuracy: f64::NAN }; n_layer]
    };
    progress("null baseline (shuffled labels)", 2, total);
    let runs = if n_pairs >= 2 { opts.null_runs } else { 0 };
    let flips = label_flips(n_pairs, runs, NULL_SEED);
    // Per shuffled run: the held-out separation and probe accuracy at every layer.
    type Run = (Vec<Separation>, Vec<Option<f64>>);
    let seps: Vec<Result<Vec<Separation>>> = par::map(flips.clone(), |f| {
        let (fp, fneg) = flipped(&pos, &neg, &f);
        let fit = fitter(method, snmf_layers, &f);
        separation(&fp, &fneg, &*fit)
    });
    // The probe's fits per layer (true labels first, then each shuffle) share one Gram matrix
    // of the examples and, per fold, one basis of their span.
    let probe_runs: Vec<Vec<bool>> = std::iter::once(no_flips.clone()).chain(flips).collect();
    let mut accs: Vec<Vec<Option<f64>>> = par::map((0..n_layer).collect(), |l| {
        probe::heldout_accuracies(&probe::gram(&pos, &neg, l), &probe_runs)
    });
    let probe_acc: Vec<Option<f64>> = accs.iter_mut().map(|a| a.remove(0)).collect();
    let nulls: Vec<Run> = seps
        .into_iter()
        .enumerate()
        .map(|(r, sep)| Ok((sep?, accs.iter().map(|a| a[r]).collect())))
        .collect::<Result<_>>()?;
    progress("stability and geometry", 3, total);
    let boot = match &snmf {
        // SNMF is refitted from another seed: how well the two agree.
        Some((_, mlp)) if opts.resamples > 0 => {
            snmf_seed_agreement(model, mlp, c, &pos, &neg, &dirs, opts).await?
        }
        Some(_) => vec![0.0; n_layer],
        None if opts.resamples > 0 => {
            // Fewer resamples for the probe, which is refitted each time.
            let r =
                if method == Method::Probe { opts.resamples.div_ceil(2) } else { opts.resamples };
            bootstrap_cosine(method, &pos, &neg, &dirs, r, 0x5eed)?
        }
        None => vec![0.0; n_layer],
    };
    let labels: Vec<bool> = (0..2 * n_pairs).map(|i| i < n_pairs).collect();
    let geo = par::map((0..n_layer).collect(), |l| {
        let rows: Vec<&[f32]> = pos.at(l).chain(neg.at(l)).collect();
        (
            geometry::feature_split(&rows, 0x5e5a ^ l as u64),
            geometry::supervised_alignment(&rows, &labels, 0x5e5a ^ l as u64),
            diagnostics::layer(&pos, &neg, l, &dirs[l]),
            scatter(&pos, &neg, l, &dirs[l]),
        )
    });
    progress("tokens", 4, total);
    let tok = |id: u32, score: f64| TokenScore {
        id,
        token: model.tokenizer.decode(&[id]).unwrap_or_default(),
        score: score as f32,
    };
    // Every layer's direction through the unembedding in one product, then each layer's
    // highest and lowest tokens on threads.
    let flat: Vec<f32> = dirs.iter().flatten().copied().collect();
    let scores = model.unembed_direction(&flat).await?;
    let vocab = scores.len() / n_layer.max(1);
    let tops =
        par::map(scores.chunks(vocab.max(1)).collect(), |s| diagnostics::top_bottom(s, opts.top_k));
    let mut layers = Vec::with_capacity(n_layer);
    for (l, ((fs, al, diag, (scatter_pos, scatter_neg)), (up, down))) in
        geo.into_iter().zip(tops).enumerate()
    {
        let d = &dirs[l];
        let svd = if method == Method::Svd {
            svd_subspace(&pos, &neg, l, 4).ok().map(|s| SvdReport {
                singular_values: s.singular_values,
                eigengap_ratio: s.eigengap_ratio,
                explained_variance: s.explained_variance,
                effective_rank: s.effective_rank,
                subspace: s.vectors,
            })
        } else {
            None
        };
        let snmf = snmf.as_ref().map(|(s, _)| snmf_report(model, &s[l], &opts.snmf));
        let band = |xs: Vec<f64>| Band::of(&xs);
        let auroc_null = band(nulls.iter().map(|n| n.0[l].auroc).collect());
        let acc_null = band(nulls.iter().map(|n| n.0[l].accuracy).collect());
        let probe_null: Vec<f64> = nulls.iter().filter_map(|n| n.1[l]).collect();
        let probe_null = (!probe_null.is_empty()).then(|| Band::of(&probe_null));
        layers.push(LayerReport {
            layer: l,
            norm: d.iter().map(|x| x * x).sum::<f32>().sqrt(),
            direction: d.clone(),
            auroc: held[l].auroc,
            cohens_d: held[l].cohens_d,
            accuracy: held[l].accuracy,
            probe_accuracy: probe_acc[l],
            auroc_null: auroc_null.mean,
            auroc_null_band: [auroc_null.lo, auroc_null.hi],
            accuracy_null: acc_null.mean,
            probe_accuracy_null: probe_null.map(|b| b.mean),
            probe_accuracy_null_band: probe_null.map(|b| [b.lo, b.hi]),
            diagnostics: diag,
            bootstrap_cosine: boot[l],
            feature_split: fs,
            supervised_alignment: al,
            unembedding_promotes: up.into_iter().map(|(i, s)| tok(i, s as f64)).collect(),
            unembedding_suppresses: down.into_iter().map(|(i, s)| tok(i, s as f64)).collect(),
            svd,
            snmf,
            scatter_pos,
            scatter_neg,
        });
    }
    let best = best_layer(&layers);
    progress("what the direction promotes", 5, total);
    let prepared = Prepared::from_acts(Concept { method, ..c.clone() }, &pos, &neg, dirs)?;
    let promotes = if opts.promotes {
        Some(
            promotes_at(model, &prepared, &contexts, Some(&context_logits), best, opts.top_k)
                .await?,
        )
    } else {
        None
    };
    progress("done", total, total);
    let report = ConceptReport {
        name: c.name.clone(),
        method,
        read: c.read,
        folds: n_pairs.min(5),
        null_runs: runs,
        best_layer: best,
        promotes,
        layers,
    };
    Ok((report, prepared))
}

/// What adding the concept's direction at `layer` does to the next-token distribution over
/// the contexts: the vector added is the unit direction times the distance between the class
/// means along it (for the mean difference: the mean difference itself).
pub async fn promotes_at<B: Backend>(
    model: &Model<B>,
    c: &Prepared,
    contexts: &[Vec<u32>],
    base: Option<&[Vec<f32>]>,
    layer: usize,
    top_k: usize,
) -> Result<Promotes> {
    let n_layer = model.config.n_layer;
    if layer >= n_layer {
        return Err(Error::Layer { layer, max: n_layer - 1 });
    }
    let u = crate::unit(&c.dirs[layer]);
    let gap = crate::dot(&c.mean_diff[layer], &u).abs();
    let v: Vec<f32> = u.iter().map(|x| x * gap).collect();
    let shift = next_token_shift(model, contexts, base, layer, &v).await?;
    let (up, down) = extremes(&shift, top_k);
    let tok = |(id, s): (u32, f64)| TokenScore {
        id,
        token: model.tokenizer.decode(&[id]).unwrap_or_default(),
        score: s as f32,
    };
    Ok(Promotes {
        layer,
        added_norm: gap,
        contexts: contexts.len(),
        promotes: up.into_iter().map(tok).collect(),
        suppresses: down.into_iter().map(tok).collect(),
    })
}

/// The contexts [`promotes_at`] averages over, for a concept: its first examples of each class.
pub fn shift_contexts<B: Backend>(model: &Model<B>, c: &Concept) -> Result<Vec<Vec<u32>>> {
    let take = crate::concept::SHIFT_CONTEXTS.min(c.pairs.len());
    let texts =
        c.pairs.iter().take(take).map(|p| &p.0).chain(c.pairs.iter().take(take).map(|p| &p.1));
    texts.map(|t| Ok(model.encode_prompt(t, false)?)).collect()
}

fn snmf_report<B: Backend>(model: &Model<B>, s: &LayerSnmf, p: &SnmfParams) -> SnmfReport {
    let feature = |f: &Feature| FeatureReport {
        concept_auroc: f.concept_auroc,
        concept_d: f.concept_d,
        neurons: f.neurons,
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
        k: s.features.len(),
        sparsity: p.sparsity,
        features: s.features.iter().map(feature).collect(),
        best_feature: s.best,
        error_first: s.errors.first().copied().unwrap_or(0.0),
        error_best: s.errors.get(s.best_iter).copied().unwrap_or(0.0),
        best_iteration: s.best_iter,
        steps: s.errors.len(),
    }
}

/// How `method` fits directions on training pairs, for the held-out protocol. `flips` says
/// which pairs have their classes swapped (the null baseline); SNMF needs it to know each
/// text's class, since its factorization (which uses no labels) is shared by every fold: only
/// the choice of feature and its sign are fitted on the training pairs.
fn fitter<'a>(method: Method, snmf: Option<&'a [LayerSnmf]>, flips: &'a [bool]) -> Box<Fit<'a>> {
    match snmf {
        None => Box::new(move |p: &Acts, n: &Acts, train: &[usize]| {
            directions(method, &p.subset(train), &n.subset(train))
        }),
        Some(layers) => Box::new(move |p: &Acts, n: &Acts, train: &[usize]| {
            let n_pairs = flips.len();
            let text = |i: usize, positive: bool| if flips[i] ^ positive { i } else { n_pairs + i };
            let pos_t: Vec<usize> = train.iter().map(|&i| text(i, true)).collect();
            let neg_t: Vec<usize> = train.iter().map(|&i| text(i, false)).collect();
            let (tp, tn) = (p.subset(train), n.subset(train));
            Ok(layers
                .iter()
                .enumerate()
                .map(|(l, s)| {
                    let best = rank_features(&s.text_weights, &pos_t, &neg_t);
                    let mut v: Vec<f64> =
                        s.features[best].direction.iter().map(|x| *x as f64).collect();
                    orient(&mut v, &tp, &tn, l);
                    v.iter().map(|x| *x as f32).collect()
                })
                .collect())
        }),
    }
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
    /// The first examples' token ids and last-position logits (see [`promotes_at`]; empty
    /// unless asked for).
    pub contexts: Vec<Vec<u32>>,
    pub context_logits: Vec<Vec<f32>>,
}

/// Capture the concept and compute its direction by `method` at every layer (with
/// `contexts`, also the contexts [`promotes_at`] averages over and their logits).
pub async fn compute<B: Backend>(
    model: &Model<B>,
    c: &Concept,
    method: Method,
    snmf: &SnmfParams,
    contexts: bool,
) -> Result<Computed> {
    let ConceptActs { pos, neg, mlp, contexts, context_logits } =
        capture_concept_full(model, c, method == Method::Snmf, contexts).await?;
    let Some(mlp) = mlp else {
        let dirs = directions(method, &pos, &neg)?;
        return Ok(Computed { pos, neg, dirs, snmf: None, contexts, context_logits });
    };
    let layers = concept_snmf(model, &mlp, c.pairs.len(), c.read, snmf).await?;
    let dirs = snmf_directions(&layers, &pos, &neg);
    Ok(Computed { pos, neg, dirs, snmf: Some((layers, mlp)), contexts, context_logits })
}

/// The best feature's direction at each layer, oriented so the positives lie on its positive
/// side in the residual stream (the feature's own sign says which class uses it more at the
/// read position; steering needs the side of the residual stream).
fn snmf_directions(layers: &[LayerSnmf], pos: &Acts, neg: &Acts) -> Vec<Vec<f32>> {
    layers
        .iter()
        .enumerate()
        .map(|(l, f)| {
            let mut v: Vec<f64> = f.direction.iter().map(|x| *x as f64).collect();
            orient(&mut v, pos, neg, l);
            v.iter().map(|x| *x as f32).collect()
        })
        .collect()
}

/// For SNMF: |cosine| between each layer's direction and the one from a refit with another
/// seed.
async fn snmf_seed_agreement<B: Backend>(
    model: &Model<B>,
    mlp: &MlpActs,
    c: &Concept,
    pos: &Acts,
    neg: &Acts,
    dirs: &[Vec<f32>],
    opts: &Options,
) -> Result<Vec<f64>> {
    let p = SnmfParams { seed: opts.snmf.seed ^ 0x9e37_79b9, ..opts.snmf };
    let other = concept_snmf(model, mlp, c.pairs.len(), c.read, &p).await?;
    let other = snmf_directions(&other, pos, neg);
    Ok(other.iter().zip(dirs).map(|(o, d)| crate::cosine(o, d).abs()).collect())
}

/// The layer to steer at: among the middle half of the layers (the first and last quarter
/// steer poorly in the literature and in our sweeps), the one whose direction separates
/// held-out pairs best, `auroc * min(|d| / 2, 1)` (held out), ties to the earlier layer (the
/// first of the middle half when nothing could be held out).
pub fn best_layer(layers: &[LayerReport]) -> usize {
    let n = layers.len();
    let (lo, hi) = (n / 4, (3 * n).div_ceil(4).max(n / 4 + 1).min(n));
    let score = |r: &LayerReport| {
        let s = r.auroc * (r.cohens_d.abs() / 2.0).min(1.0);
        if s.is_finite() {
            s
        } else {
            f64::NEG_INFINITY
        }
    };
    let mut best = lo.min(n.saturating_sub(1));
    for l in lo..hi {
        if score(&layers[l]) > score(&layers[best]) {
            best = l;
        }
    }
    best
}
