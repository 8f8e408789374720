//! Directions per layer from a concept's activations.
//!
//! - Mean difference (e.g. Turner et al. 2023, "Activation Addition"; Rimsky et al. 2024,
//!   "Contrastive Activation Addition"): `v_l = mean(pos_l) - mean(neg_l)`.
//! - `pca`: PCA of centred pair differences, as repeng's `pca_diff` does it: the first right
//!   singular vector of `D_l = (pos_i,l - neg_i,l) - mean_i(...)` with every pair in its given
//!   order, a unit vector signed so that positives project higher than negatives on average.
//!   Centring removes the mean difference, so with few pairs this finds how pairs differ from
//!   one another rather than the concept (see the README).
//! - `pca-repe`: PCA as Representation Engineering does it (Zou et al. 2023, "Representation
//!   Engineering"; their `rep_readers.PCARepReader`): each pair's order is randomised (seeded)
//!   before differencing, the differences centred, the first component signed by the labels.
//!   The random signs keep the concept's difference as the main axis of variation.
//! - SVD subspace of pair differences (the "Neural FOXP2" analysis): the top-k right singular
//!   vectors of the uncentred differences with their singular values, the eigengap as a ratio
//!   s1 / s2, the variance the first explains (s1^2 / sum s^2) and the effective rank
//!   exp(H(s / sum s)) (Roy & Vetterli 2007). The `svd` direction is the top singular vector,
//!   signed like PCA.
//! - Logistic probe: see [`crate::probe`].
//! - Bootstrap cosine: the mean cosine between the direction from bootstrap resamples of the
//!   pairs and the direction from all of them. Optimistic (a resample shares about 63% of its
//!   pairs with the whole set); Shesha's geometric stability is in [`crate::geometry`].

use crate::concept::Acts;
use crate::{Error, Result};
use nalgebra::DMatrix;
use tiller_engine::cpu::par;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    #[default]
    MeanDiff,
    /// PCA of centred pair differences in their given order (repeng's `pca_diff`).
    Pca,
    Probe,
    Svd,
    /// From MLP activations: see [`crate::snmf`] and [`crate::report::analyze`].
    Snmf,
    /// PCA of pair differences with each pair's order randomised (RepE).
    PcaRepe,
}

impl Method {
    /// Every method, in the order menus list them.
    pub const ALL: [Method; 6] =
        [Method::MeanDiff, Method::Pca, Method::PcaRepe, Method::Probe, Method::Svd, Method::Snmf];

    /// The name on the command line and in setup files.
    pub fn name(self) -> &'static str {
        match self {
            Method::MeanDiff => "mean-diff",
            Method::Pca => "pca",
            Method::PcaRepe => "pca-repe",
            Method::Probe => "probe",
            Method::Svd => "svd",
            Method::Snmf => "snmf",
        }
    }

    /// What it is, in a few words (the page's menu).
    pub fn label(self) -> &'static str {
        match self {
            Method::MeanDiff => "mean difference",
            Method::Pca => "PCA of centred differences (repeng pca_diff)",
            Method::PcaRepe => "PCA, pair order randomised (RepE)",
            Method::Probe => "logistic probe",
            Method::Svd => "SVD of differences",
            Method::Snmf => "SNMF (MLP features)",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Method::ALL.iter().copied().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
            format!("unknown method `{s}` ({})", names.join(", "))
        })
    }
}

fn check(pos: &Acts, neg: &Acts) -> Result<()> {
    if pos.acts.is_empty() || neg.acts.is_empty() {
        return Err(Error::Concept {
            name: String::new(),
            msg: "one class has no examples".into(),
        });
    }
    if pos.n_layer != neg.n_layer || pos.d != neg.d {
        return Err(Error::Concept {
            name: String::new(),
            msg: "positive and negative activations have different shapes".into(),
        });
    }
    Ok(())
}

fn mean(a: &Acts, l: usize) -> Vec<f64> {
    let mut m = vec![0f64; a.d];
    for v in a.at(l) {
        m.iter_mut().zip(v).for_each(|(s, x)| *s += *x as f64);
    }
    let n = a.acts.len() as f64;
    m.iter_mut().for_each(|s| *s /= n);
    m
}

/// `mean(pos) - mean(neg)` at every layer (raw, not normalised).
pub fn mean_diff(pos: &Acts, neg: &Acts) -> Result<Vec<Vec<f32>>> {
    check(pos, neg)?;
    Ok((0..pos.n_layer)
        .map(|l| mean(pos, l).iter().zip(mean(neg, l)).map(|(a, b)| (a - b) as f32).collect())
        .collect())
}

/// The top `k` right singular vectors of the rows (centred first when asked) and their
/// singular values, largest first.
///
/// Computed from the n x n Gram matrix `G = D D'` (n examples, usually far fewer than the
/// width): its eigenvectors `u` give `v = D' u / |D' u|`, the right singular vectors of `D`. A
/// symmetric eigensolver on the small matrix is both cheaper and steadier than an SVD of the wide
/// n x d matrix (nalgebra's returned a wrong vector at one layer of the reference concept).
pub fn top_components(
    rows: &[Vec<f64>],
    center: bool,
    k: usize,
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let (n, d) = (rows.len(), rows.first().map_or(0, |r| r.len()));
    if n == 0 || d == 0 {
        return Err(Error::LinAlg("no rows to decompose".into()));
    }
    let mut mean = vec![0f64; d];
    if center {
        for r in rows {
            mean.iter_mut().zip(r).for_each(|(m, x)| *m += x / n as f64);
        }
    }
    let m = DMatrix::from_fn(n, d, |i, j| rows[i][j] - mean[j]);
    let eig = nalgebra::SymmetricEigen::new(&m * m.transpose());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let (mut svals, mut vecs) = (Vec::new(), Vec::new());
    for &i in order.iter().take(k) {
        let v = m.transpose() * eig.eigenvectors.column(i);
        let norm = v.norm();
        if !(norm > 1e-12 && norm.is_finite()) {
            break;
        }
        svals.push(eig.eigenvalues[i].max(0.0).sqrt());
        vecs.push(v.iter().map(|x| x / norm).collect());
    }
    if vecs.is_empty() {
        return Err(Error::LinAlg("the examples do not vary: no principal direction".into()));
    }
    Ok((svals, vecs))
}

/// First principal direction (unit) of the rows after centring them.
pub fn first_pc(rows: &[Vec<f64>]) -> Result<Vec<f64>> {
    Ok(top_components(rows, true, 1)?.1.remove(0))
}

fn pair_diffs(pos: &Acts, neg: &Acts, l: usize) -> Vec<Vec<f64>> {
    pos.at(l)
        .zip(neg.at(l))
        .map(|(p, n)| p.iter().zip(n).map(|(a, b)| (*a - *b) as f64).collect())
        .collect()
}

/// Flip `v` so positives project higher than negatives on average.
pub(crate) fn orient(v: &mut [f64], pos: &Acts, neg: &Acts, l: usize) {
    let proj = |a: &Acts| {
        a.at(l)
            .map(|x| x.iter().zip(v.iter()).map(|(p, q)| *p as f64 * q).sum::<f64>())
            .sum::<f64>()
            / a.acts.len() as f64
    };
    if proj(pos) < proj(neg) {
        v.iter_mut().for_each(|x| *x = -*x);
    }
}

fn need_pairs(pos: &Acts, neg: &Acts, what: &str) -> Result<()> {
    if pos.acts.len() != neg.acts.len() {
        return Err(Error::Concept {
            name: String::new(),
            msg: format!(
                "{} positives but {} negatives: {what} needs pairs",
                pos.acts.len(),
                neg.acts.len()
            ),
        });
    }
    Ok(())
}

/// The SVD subspace of the pair differences at one layer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Subspace {
    pub singular_values: Vec<f64>,
    /// Unit vectors, largest singular value first (the first signed like PCA).
    pub vectors: Vec<Vec<f32>>,
    /// s1 / s2 (infinite when only one direction varies): scale-free, so layers compare.
    pub eigengap_ratio: f64,
    /// s1^2 / sum s^2: the share of the differences' energy along the first direction.
    pub explained_variance: f64,
    pub effective_rank: f64,
}

pub fn svd_subspace(pos: &Acts, neg: &Acts, l: usize, k: usize) -> Result<Subspace> {
    check(pos, neg)?;
    need_pairs(pos, neg, "the SVD subspace")?;
    let diffs = pair_diffs(pos, neg, l);
    // Effective rank uses the whole spectrum.
    let (all, _) = top_components(&diffs, false, diffs.len())?;
    let (sv, mut vecs) = top_components(&diffs, false, k.max(1))?;
    orient(&mut vecs[0], pos, neg, l);
    let total: f64 = all.iter().sum();
    let entropy: f64 =
        all.iter().filter(|s| **s > 0.0).map(|s| s / total).map(|p| -p * p.ln()).sum();
    let (s1, s2) = (all.first().copied().unwrap_or(0.0), all.get(1).copied().unwrap_or(0.0));
    let energy: f64 = all.iter().map(|s| s * s).sum();
    Ok(Subspace {
        eigengap_ratio: if s2 > 0.0 { s1 / s2 } else { f64::INFINITY },
        explained_variance: if energy > 0.0 { s1 * s1 / energy } else { 0.0 },
        effective_rank: entropy.exp(),
        singular_values: sv,
        vectors: vecs.into_iter().map(|v| v.iter().map(|x| *x as f32).collect()).collect(),
    })
}

/// Unit PCA direction of centred pair differences at every layer (pairs: `pos[i]` with `neg[i]`).
pub fn pca_diff(pos: &Acts, neg: &Acts) -> Result<Vec<Vec<f32>>> {
    check(pos, neg)?;
    need_pairs(pos, neg, "PCA")?;
    (0..pos.n_layer)
        .map(|l| {
            let mut v = first_pc(&pair_diffs(pos, neg, l))?;
            orient(&mut v, pos, neg, l);
            Ok(v.iter().map(|x| *x as f32).collect())
        })
        .collect()
}

/// The seed of `pca-repe`'s pair order (fixed, so a shared setup recomputes the same direction).
pub const REPE_SEED: u64 = 0x2e9e;

/// Unit RepE PCA direction at every layer: each pair's difference taken in a random order
/// (seeded), centred, first principal component, signed so positives project higher.
pub fn pca_repe(pos: &Acts, neg: &Acts, seed: u64) -> Result<Vec<Vec<f32>>> {
    check(pos, neg)?;
    need_pairs(pos, neg, "PCA")?;
    let mut r = crate::stats::Rng::new(seed);
    let signs: Vec<f64> = (0..pos.acts.len()).map(|_| if r.coin() { -1.0 } else { 1.0 }).collect();
    (0..pos.n_layer)
        .map(|l| {
            let mut d = pair_diffs(pos, neg, l);
            d.iter_mut().zip(&signs).for_each(|(row, s)| row.iter_mut().for_each(|x| *x *= s));
            let mut v = first_pc(&d)?;
            orient(&mut v, pos, neg, l);
            Ok(v.iter().map(|x| *x as f32).collect())
        })
        .collect()
}

/// Directions of a concept by `method`, one per layer.
pub fn directions(method: Method, pos: &Acts, neg: &Acts) -> Result<Vec<Vec<f32>>> {
    match method {
        Method::MeanDiff => mean_diff(pos, neg),
        Method::Pca => pca_diff(pos, neg),
        Method::PcaRepe => pca_repe(pos, neg, REPE_SEED),
        Method::Svd => {
            (0..pos.n_layer).map(|l| Ok(svd_subspace(pos, neg, l, 1)?.vectors.remove(0))).collect()
        }
        Method::Probe => {
            check(pos, neg)?;
            need_pairs(pos, neg, "the probe")?;
            Ok(par::map((0..pos.n_layer).collect(), |l| crate::probe::direction(pos, neg, l)))
        }
        Method::Snmf => Err(Error::LinAlg(
            "SNMF factors MLP activations, not these residual ones: use report::analyze".into(),
        )),
    }
}

/// Bootstrap cosine of `method` at every layer: the mean cosine between the direction from
/// `resamples` resamples of the pairs (with replacement, seeded) and the one from all pairs.
pub fn bootstrap_cosine(
    method: Method,
    pos: &Acts,
    neg: &Acts,
    full: &[Vec<f32>],
    resamples: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    check(pos, neg)?;
    need_pairs(pos, neg, "stability")?;
    let n = pos.acts.len();
    let mut s = seed | 1;
    // The resamples' indices in order (one seeded stream), then their directions on threads.
    let resampled: Vec<Vec<usize>> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % n as u64) as usize
                })
                .collect()
        })
        .collect();
    let cosines: Vec<Option<Vec<f64>>> = par::map(resampled, |idx| {
        let (p, q) = (pos.subset(&idx), neg.subset(&idx));
        // A resample whose examples do not vary has no direction: count it as unstable (0).
        directions(method, &p, &q)
            .ok()
            .map(|dirs| dirs.iter().zip(full).map(|(a, b)| crate::cosine(a, b)).collect())
    });
    let mut sum = vec![0f64; pos.n_layer];
    for c in cosines.iter().flatten() {
        sum.iter_mut().zip(c).for_each(|(s, c)| *s += c);
    }
    Ok(sum.into_iter().map(|x| x / resamples.max(1) as f64).collect())
}

/// Mean residual norm of all examples at every layer (the scale of the unit-norm add mode).
pub fn mean_norms(pos: &Acts, neg: &Acts) -> Vec<f32> {
    (0..pos.n_layer)
        .map(|l| {
            let all: Vec<f64> = pos
                .at(l)
                .chain(neg.at(l))
                .map(|h| h.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt())
                .collect();
            (all.iter().sum::<f64>() / all.len().max(1) as f64) as f32
        })
        .collect()
}
