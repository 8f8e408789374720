//! SNMF: semi-nonnegative matrix factorization of MLP activations, unsupervised features.
//!
//! Shafran, Geiger, Geva et al. 2025, "Decomposing MLP Activations into Interpretable Features
//! via Semi-Nonnegative Matrix Factorization", as the first author's code does it
//! (`seminmf.py`, `NMFSemiNMF.fit` with its default random start); the updates are Ding, Li &
//! Jordan 2010's.
//!
//! The MLP hidden activations of every token of the texts at one layer, `A` (n tokens x m
//! neurons; position 0, the attention sink, left out), are factored as `A ~ G F'` with
//! `G >= 0` (n x k: how much each token uses each feature) and `F` of any sign (m x k: the
//! features as neuron patterns). From `G0` uniform in [0, 1) (at least 1e-6), each iteration:
//!
//! 1. `F = A' G (G'G + reg I)^-1` (least squares, reg = 1e-6);
//! 2. winner-take-all: in each column of F keep the `ceil(sparsity m)` entries of largest
//!    magnitude (default 1% of the neurons; ties at the threshold kept), zero the rest;
//! 3. rescale: each column of G to unit norm, F's column by the same factor (`G F'` unchanged);
//! 4. `G <- G .* sqrt( ([AF]+ + G [F'F]-) ./ ([AF]- + G [F'F]+ + 1e-6) )`, `[X]+ = (|X| + X) / 2`,
//!    `[X]- = (|X| - X) / 2` (keeps G non-negative);
//! 5. the loss `|A - G F'|_F^2`; the best iterate so far is kept when it improves by more than
//!    `tol`; stop after `patience` iterations without improvement, or `max_iter`.
//!
//! The sparsity makes the loss non-monotone (hence the best iterate). A feature's
//! residual-stream direction is its neuron pattern through the down projection, `W_down f_j`
//! (what writing the feature adds to the residual stream). `tests/tests/ports.rs` checks F, G
//! and the loss curve against a NumPy port of `NMFSemiNMF.fit` (`scripts/ports/snmf.py`) from
//! the same start.

use crate::concept::{MlpActs, Read};
use crate::stats::{auroc, cohens_d, Rng};
use crate::{Error, Result};
use nalgebra::DMatrix;
use tiller_engine::cpu::par;
use tiller_engine::{Backend, Model};

/// Settings of one factorization (defaults: the reference code's, but `max_iter` (500 there)
/// and `patience` (100), lowered so all layers of a concept factor in seconds; the README has
/// the measured difference).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnmfParams {
    /// Number of features (at most half the tokens; see [`concept_snmf`]).
    pub k: usize,
    /// Fraction of neurons each feature keeps (winner-take-all).
    pub sparsity: f64,
    pub max_iter: usize,
    /// Stop after this many iterations without an improvement larger than `tol`.
    pub patience: usize,
    pub tol: f64,
    /// Ridge on `G'G` in the F step.
    pub reg: f64,
    pub seed: u64,
}

/// The reference code's feature count and sparsity.
pub const DEFAULT_K: usize = 50;
pub const DEFAULT_SPARSITY: f64 = 0.01;

impl Default for SnmfParams {
    fn default() -> Self {
        SnmfParams {
            k: DEFAULT_K,
            sparsity: DEFAULT_SPARSITY,
            max_iter: 100,
            patience: 20,
            tol: 1e-4,
            reg: 1e-6,
            seed: 0x5eed,
        }
    }
}

/// `A ~ G F'`: G (n x k, non-negative), F (m x k), the best iterate.
#[derive(Debug, Clone)]
pub struct Factors {
    pub g: DMatrix<f64>,
    pub f: DMatrix<f64>,
    /// `|A - G F'|^2` after each iteration.
    pub losses: Vec<f64>,
    /// The iteration whose factors these are.
    pub best_iter: usize,
}

/// The reference code's random start: uniform in [0, 1), at least 1e-6 (seeded).
pub fn init(n: usize, k: usize, seed: u64) -> DMatrix<f64> {
    let mut r = Rng::new(seed);
    DMatrix::from_fn(n, k, |_, _| ((r.next_u64() >> 11) as f64 / (1u64 << 53) as f64).max(1e-6))
}

/// Factor `a` (n tokens x m neurons) from the start `g0` (n x k).
pub fn snmf(a: &DMatrix<f64>, g0: DMatrix<f64>, p: &SnmfParams) -> Result<Factors> {
    if a.iter().any(|x| !x.is_finite()) {
        return Err(Error::LinAlg("SNMF: the activations are not finite".into()));
    }
    let rows: Vec<f32> = a.transpose().iter().map(|x| *x as f32).collect();
    snmf_rows(&rows, a.nrows(), a.ncols(), g0, p)
}

/// `F' = H' A` as k rows of m (row-major): lhs H' (k x n) from `h` n x k row-major, rhs `a`
/// n x m row-major. One f32 GEMM: the one product per iteration that touches every activation.
fn ht_a(h: &[f32], a: &[f32], n: usize, m: usize, k: usize) -> Vec<f32> {
    let mut dst = vec![0f32; k * m];
    assert!(a.len() >= n * m && h.len() >= n * k);
    // SAFETY: the assert bounds every index: lhs = h' is k x n (row stride 1, column stride
    // k), rhs = a is n x m (row stride m, column stride 1), dst is k x m row-major.
    unsafe {
        gemm::gemm(
            k,
            m,
            n,
            dst.as_mut_ptr(),
            1,
            m as isize,
            false,
            h.as_ptr(),
            k as isize,
            1,
            a.as_ptr(),
            1,
            m as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
    dst
}

/// A feature's neuron pattern after winner-take-all: (neuron, weight), neurons increasing.
type Sparse = Vec<(usize, f64)>;

/// Keep the `keep` largest-magnitude entries of `row` (every entry at least as large as the
/// keep-th, as the reference's threshold does).
fn winner_take_all(row: &[f32], keep: usize, scratch: &mut Vec<f32>) -> Sparse {
    scratch.clear();
    scratch.extend(row.iter().map(|x| x.abs()));
    let idx = scratch.len() - keep.min(scratch.len());
    let (_, th, _) = scratch.select_nth_unstable_by(idx, |a, b| a.total_cmp(b));
    let th = *th;
    row.iter().enumerate().filter(|(_, x)| x.abs() >= th).map(|(i, x)| (i, *x as f64)).collect()
}

/// As [`snmf`], for activations `a` given as n rows of m values (row-major f32, as captured).
pub fn snmf_rows(
    a: &[f32],
    n: usize,
    m: usize,
    g0: DMatrix<f64>,
    p: &SnmfParams,
) -> Result<Factors> {
    if n == 0 || m == 0 || a.len() != n * m {
        return Err(Error::LinAlg("SNMF: no activations to factor".into()));
    }
    let k = p.k;
    if k == 0 || k > n {
        return Err(Error::LinAlg(format!("SNMF: {k} features from {n} tokens; ask for 1 to {n}")));
    }
    if !(p.sparsity > 0.0 && p.sparsity <= 1.0) {
        return Err(Error::LinAlg(format!("SNMF: sparsity {} is not in (0, 1]", p.sparsity)));
    }
    if a.iter().any(|x| !x.is_finite()) {
        return Err(Error::LinAlg("SNMF: the activations are not finite".into()));
    }
    let a2: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    if a2 == 0.0 {
        return Err(Error::LinAlg("SNMF: the activations are all zero".into()));
    }
    if g0.shape() != (n, k) {
        return Err(Error::LinAlg("SNMF: the start has the wrong shape".into()));
    }
    let keep = ((p.sparsity * m as f64).ceil() as usize).clamp(1, m);
    let mut g = g0;
    let mut f: Vec<Sparse> = vec![Vec::new(); k];
    let (mut best, mut best_f, mut best_g, mut best_iter) =
        (f64::INFINITY, f.clone(), g.clone(), 0);
    let mut losses = Vec::new();
    let (mut stale, mut scratch) = (0, Vec::with_capacity(m));
    let mut gram_g = g.tr_mul(&g);
    for it in 0..p.max_iter.max(1) {
        // 1. F = A' G (G'G + reg I)^-1, as A' (G inv): the small product first.
        let mut gtg = gram_g.clone();
        for i in 0..k {
            gtg[(i, i)] += p.reg;
        }
        let inv = gtg
            .clone()
            .cholesky()
            .map(|c| c.inverse())
            .or_else(|| gtg.try_inverse())
            .ok_or_else(|| Error::LinAlg("SNMF: G'G is singular".into()))?;
        let h = &g * inv;
        let h32: Vec<f32> = h.transpose().iter().map(|x| *x as f32).collect();
        let ft = ht_a(&h32, a, n, m, k);
        // 2. winner-take-all per feature; 3. unit columns of G, F's columns scaled to match.
        for j in 0..k {
            let mut col = winner_take_all(&ft[j * m..(j + 1) * m], keep, &mut scratch);
            let nn = g.column(j).norm().max(1e-8);
            g.column_mut(j).unscale_mut(nn);
            col.iter_mut().for_each(|(_, w)| *w *= nn);
            f[j] = col;
        }
        // 4. multiplicative G step.
        let af = sparse_product(a, n, m, &f);
        let q = sparse_gram(&f, k);
        let (qp, qn) = (q.map(|x| (x.abs() + x) / 2.0), q.map(|x| (x.abs() - x) / 2.0));
        let (gqn, gqp) = (&g * qn, &g * qp);
        for j in 0..k {
            for i in 0..n {
                let v = af[(i, j)];
                let num = (v.abs() + v) / 2.0 + gqn[(i, j)];
                let den = (v.abs() - v) / 2.0 + gqp[(i, j)] + 1e-6;
                g[(i, j)] *= (num / den).sqrt();
            }
        }
        // 5. |A - G F'|^2 = |A|^2 - 2 <G, A F> + <G'G, F'F>
        let cross: f64 = g.iter().zip(af.iter()).map(|(x, y)| x * y).sum();
        gram_g = g.tr_mul(&g);
        let gram: f64 = gram_g.iter().zip(q.iter()).map(|(x, y)| x * y).sum();
        let loss = (a2 - 2.0 * cross + gram).max(0.0);
        losses.push(loss);
        if loss < best - p.tol {
            (best, best_iter, stale) = (loss, it, 0);
            best_f.clone_from(&f);
            best_g.copy_from(&g);
        } else {
            stale += 1;
            if stale >= p.patience {
                break;
            }
        }
    }
    let mut fd = DMatrix::<f64>::zeros(m, k);
    for (j, col) in best_f.iter().enumerate() {
        for &(r, w) in col {
            fd[(r, j)] = w;
        }
    }
    Ok(Factors { g: best_g, f: fd, losses, best_iter })
}

/// `a f` (n x k) for `a` n x m row-major and `f` given by its sparse columns.
fn sparse_product(a: &[f32], n: usize, m: usize, f: &[Sparse]) -> DMatrix<f64> {
    let mut out = DMatrix::<f64>::zeros(n, f.len());
    for (j, col) in f.iter().enumerate() {
        for i in 0..n {
            let row = &a[i * m..(i + 1) * m];
            out[(i, j)] = col.iter().map(|&(r, w)| row[r] as f64 * w).sum();
        }
    }
    out
}

/// `f' f` (k x k) from sparse columns (rows in increasing order).
fn sparse_gram(f: &[Sparse], k: usize) -> DMatrix<f64> {
    let mut q = DMatrix::<f64>::zeros(k, k);
    for i in 0..k {
        for j in i..k {
            let (a, b) = (&f[i], &f[j]);
            let (mut x, mut y, mut s) = (0, 0, 0f64);
            while x < a.len() && y < b.len() {
                match a[x].0.cmp(&b[y].0) {
                    std::cmp::Ordering::Less => x += 1,
                    std::cmp::Ordering::Greater => y += 1,
                    std::cmp::Ordering::Equal => {
                        s += a[x].1 * b[y].1;
                        x += 1;
                        y += 1;
                    }
                }
            }
            q[(i, j)] = s;
            q[(j, i)] = s;
        }
    }
    q
}

/// One SNMF feature of a layer, for people to read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Feature {
    /// The residual-stream direction `W_down f_j` (not normalised).
    pub direction: Vec<f32>,
    /// The tokens that use the feature most, largest weight first.
    pub top: Vec<TokenWeight>,
    /// How the feature's weight at the texts' read positions separates the classes, scale-free:
    /// AUROC (positives above negatives) and Cohen's d.
    pub concept_auroc: f64,
    pub concept_d: f64,
    /// Neurons it keeps.
    pub neurons: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenWeight {
    /// Index of the text (positives first, then negatives).
    pub text: usize,
    pub position: usize,
    pub token: u32,
    pub weight: f32,
}

/// SNMF of one layer's MLP activations over a concept's texts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerSnmf {
    pub features: Vec<Feature>,
    /// Relative reconstruction error `|A - G F'| / |A|` after each iteration.
    pub errors: Vec<f64>,
    pub best_iter: usize,
    /// The feature whose weight separates positives from negatives most (largest
    /// `|concept_auroc - 0.5|`, then `|concept_d|`).
    pub best: usize,
    /// Per feature, its weight at each text's read position(s) (texts in order).
    pub text_weights: Vec<Vec<f64>>,
    /// The concept direction: the best feature's `W_down f` ([`crate::report`] orients it by the
    /// residual stream).
    pub direction: Vec<f32>,
}

/// Tokens listed per feature.
pub const TOP_TOKENS: usize = 8;

/// The feature among `weights` (per feature, per text) that separates the texts in `pos` from
/// those in `neg` most: largest `|AUROC - 0.5|`, then `|d|`.
pub fn rank_features(weights: &[Vec<f64>], pos: &[usize], neg: &[usize]) -> usize {
    let score = |w: &Vec<f64>| {
        let p: Vec<f64> = pos.iter().map(|&t| w[t]).collect();
        let n: Vec<f64> = neg.iter().map(|&t| w[t]).collect();
        ((auroc(&p, &n) - 0.5).abs(), cohens_d(&p, &n).abs())
    };
    let mut best = (0usize, (f64::NEG_INFINITY, f64::NEG_INFINITY));
    for (j, w) in weights.iter().enumerate() {
        let s = score(w);
        if s.0 > best.1 .0 || (s.0 == best.1 .0 && s.1 > best.1 .1) {
            best = (j, s);
        }
    }
    best.0
}

/// The k a concept's tokens allow: the one asked for, at most half the tokens.
pub fn effective_k(asked: usize, tokens: usize) -> usize {
    asked.min(tokens / 2).max(1)
}

/// SNMF at every layer of the MLP activations `mlp` of a concept's texts: the first `n_pos`
/// texts are the positives. Position 0 of every text is left out. `read` says which tokens
/// stand for a text in the class gap. `k` is capped at half the tokens ([`effective_k`]).
pub async fn concept_snmf<B: Backend>(
    model: &Model<B>,
    mlp: &MlpActs,
    n_pos: usize,
    read: Read,
    p: &SnmfParams,
) -> Result<Vec<LayerSnmf>> {
    let m = mlp.width;
    let n_text = mlp.tokens.last().map_or(0, |t| t.0 + 1);
    if mlp.tokens.is_empty() || n_pos == 0 || n_pos >= n_text {
        return Err(Error::LinAlg("SNMF needs texts of both classes".into()));
    }
    // The rows used: every token but the attention sink at position 0.
    let rows: Vec<usize> = (0..mlp.tokens.len()).filter(|&r| mlp.tokens[r].1 != 0).collect();
    let n = rows.len();
    if n < 2 {
        return Err(Error::LinAlg("SNMF: the texts are too short (one token each)".into()));
    }
    let p = SnmfParams { k: effective_k(p.k, n), ..*p };
    // Which of the used rows stand for each text.
    let mut reads: Vec<Vec<usize>> = vec![Vec::new(); n_text];
    for (i, &r) in rows.iter().enumerate() {
        reads[mlp.tokens[r].0].push(i);
    }
    if read == Read::LastToken {
        reads.iter_mut().for_each(|r| r.drain(..r.len().saturating_sub(1)).for_each(drop));
    }
    let g0 = init(n, p.k, p.seed);
    let layers: Vec<usize> = (0..mlp.layers.len()).collect();
    let factored = par::map(layers, |l| -> Result<Factors> {
        let src = &mlp.layers[l];
        let a: Vec<f32> =
            rows.iter().flat_map(|&r| src[r * m..(r + 1) * m].iter().copied()).collect();
        snmf_rows(&a, n, m, g0.clone(), &p)
    });
    let (pos_t, neg_t): (Vec<usize>, Vec<usize>) =
        ((0..n_pos).collect(), (n_pos..n_text).collect());
    let mut out = Vec::with_capacity(factored.len());
    for (l, fac) in factored.into_iter().enumerate() {
        let fac = fac?;
        let a2: f64 = mlp.layers[l]
            .chunks_exact(m)
            .enumerate()
            .filter(|(r, _)| mlp.tokens[*r].1 != 0)
            .map(|(_, row)| row.iter().map(|x| (*x as f64).powi(2)).sum::<f64>())
            .sum();
        let k = fac.f.ncols();
        // Row-major k x m for the backend: F (m x k) is stored column by column.
        let zrows: Vec<f32> = fac.f.iter().map(|x| *x as f32).collect();
        let dirs = model.down_project(l, zrows).await?;
        let d = dirs.len() / k.max(1);
        let text_weights: Vec<Vec<f64>> = (0..k)
            .map(|j| {
                reads
                    .iter()
                    .map(|r| r.iter().map(|&i| fac.g[(i, j)]).sum::<f64>() / r.len().max(1) as f64)
                    .collect()
            })
            .collect();
        let features: Vec<Feature> = (0..k)
            .map(|j| {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| fac.g[(b, j)].total_cmp(&fac.g[(a, j)]).then(a.cmp(&b)));
                let top = order
                    .iter()
                    .take(TOP_TOKENS)
                    .map(|&i| {
                        let (text, position, token) = mlp.tokens[rows[i]];
                        TokenWeight { text, position, token, weight: fac.g[(i, j)] as f32 }
                    })
                    .collect();
                let w = &text_weights[j];
                let (pw, nw): (Vec<f64>, Vec<f64>) =
                    (pos_t.iter().map(|&t| w[t]).collect(), neg_t.iter().map(|&t| w[t]).collect());
                Feature {
                    direction: dirs[j * d..(j + 1) * d].to_vec(),
                    top,
                    concept_auroc: auroc(&pw, &nw),
                    concept_d: cohens_d(&pw, &nw),
                    neurons: fac.f.column(j).iter().filter(|x| **x != 0.0).count(),
                }
            })
            .collect();
        let best = rank_features(&text_weights, &pos_t, &neg_t);
        let direction = features[best].direction.clone();
        let errors = fac.losses.iter().map(|x| (x / a2.max(1e-300)).sqrt()).collect();
        out.push(LayerSnmf {
            features,
            errors,
            best_iter: fac.best_iter,
            best,
            text_weights,
            direction,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planted(n: usize, m: usize, k: usize, noise: f64, seed: u64) -> DMatrix<f64> {
        let mut r = Rng::new(seed);
        let y = DMatrix::from_fn(n, k, |_, _| r.normal().abs());
        let z = DMatrix::from_fn(k, m, |_, _| r.normal());
        y * z + DMatrix::from_fn(n, m, |_, _| noise * r.normal())
    }

    /// Without the sparsity (keep every neuron) the updates are Ding et al.'s: the loss never
    /// rises; with it, each feature keeps exactly its share of neurons, G stays non-negative
    /// with unit columns, and the factors returned are the best iterate's.
    #[test]
    fn updates_keep_their_invariants() {
        let a = planted(60, 40, 4, 0.3, 1);
        let p = SnmfParams {
            k: 5,
            sparsity: 1.0,
            max_iter: 300,
            patience: 300,
            tol: 0.0,
            ..Default::default()
        };
        let f = snmf(&a, init(60, 5, 1), &p).unwrap();
        let rise = f.losses.windows(2).map(|w| w[1] - w[0]).fold(f64::MIN, f64::max);
        println!(
            "dense: loss {:.4} -> {:.4}, largest rise {rise:.2e}",
            f.losses[0],
            f.losses.last().unwrap()
        );
        assert!(rise <= 1e-6 * f.losses[0], "the loss rose by {rise}");
        let p = SnmfParams {
            k: 6,
            sparsity: 0.1,
            max_iter: 100,
            patience: 100,
            tol: 0.0,
            ..Default::default()
        };
        let f = snmf(&a, init(60, 6, 2), &p).unwrap();
        for j in 0..6 {
            assert_eq!(f.f.column(j).iter().filter(|x| **x != 0.0).count(), 4, "10% of 40 neurons");
        }
        assert!(f.g.iter().all(|x| *x >= 0.0 && x.is_finite()));
        let real = (&a - &f.g * f.f.transpose()).norm_squared();
        let best = f.losses.iter().copied().fold(f64::INFINITY, f64::min);
        assert!((real - best).abs() < 1e-6 * best, "returned {real}, best {best}");
        assert_eq!(f.losses[f.best_iter], best);
    }

    #[test]
    fn bad_input_is_an_error() {
        let a = DMatrix::<f64>::zeros(4, 3);
        assert!(snmf(&a, init(4, 2, 1), &SnmfParams { k: 2, ..Default::default() }).is_err());
        let a = planted(4, 3, 2, 0.1, 1);
        assert!(snmf(&a, init(4, 0, 1), &SnmfParams { k: 0, ..Default::default() }).is_err());
        assert!(snmf(&a, init(4, 5, 1), &SnmfParams { k: 5, ..Default::default() }).is_err());
        assert!(snmf(&a, init(4, 2, 1), &SnmfParams { k: 2, sparsity: 0.0, ..Default::default() })
            .is_err());
        let mut b = a.clone();
        b[(0, 0)] = f64::NAN;
        assert!(snmf(&b, init(4, 2, 1), &SnmfParams { k: 2, ..Default::default() }).is_err());
        assert_eq!(effective_k(50, 30), 15);
        assert_eq!(effective_k(50, 400), 50);
    }

    #[test]
    fn ranking_is_scale_free() {
        // Feature 1 separates perfectly with small weights; feature 0 has a larger raw gap
        // but overlaps.
        let w = vec![vec![10.0, 0.0, 30.0, 5.0, 8.0, 1.0], vec![0.2, 0.3, 0.25, 0.1, 0.0, 0.05]];
        assert_eq!(rank_features(&w, &[0, 1, 2], &[3, 4, 5]), 1);
    }
}
