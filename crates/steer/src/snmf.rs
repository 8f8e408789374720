//! SNMF: semi-nonnegative matrix factorization of MLP activations, unsupervised features.
//!
//! Shafran, Geiger, Geva et al. 2025, "Decomposing MLP Activations into Interpretable Features
//! via Semi-Nonnegative Matrix Factorization"; the algorithm is Ding, Li & Jordan 2010,
//! "Convex and Semi-Nonnegative Matrix Factorizations" (Theorems 1 and 2).
//!
//! The MLP hidden activations of every token of the given texts at one layer, `A` (n tokens x
//! m neurons), are factored as `A ~ Y Z` with `Y >= 0` (n x k: how much each token uses each
//! feature) and `Z` of any sign (k x m: the features, as neuron patterns). Alternating:
//!
//! - `Z = (Y'Y)^+ Y'A` (least squares given Y),
//! - `Y <- Y .* sqrt( ([AZ']+ + Y [ZZ']-) ./ ([AZ']- + Y [ZZ']+) )`, `[X]+ = (|X| + X) / 2`,
//!   `[X]- = (|X| - X) / 2`.
//!
//! Neither step increases `|A - YZ|_F`, and the multiplicative step keeps `Y` non-negative.
//! A feature's residual-stream direction is its neuron pattern through the down projection,
//! `W_down z_i` (what writing the feature adds to the residual stream).

use crate::concept::{MlpActs, Read};
use crate::{Error, Result};
use nalgebra::DMatrix;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tiller_engine::cpu::par;
use tiller_engine::{Backend, Model};

/// Settings of one factorization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnmfParams {
    /// Number of features.
    pub k: usize,
    /// Most iterations (each is one Z step and one Y step).
    pub max_iter: usize,
    /// Stop when the relative error improves by less than this.
    pub tol: f64,
    pub seed: u64,
}

impl Default for SnmfParams {
    fn default() -> Self {
        SnmfParams { k: 8, max_iter: 200, tol: 1e-5, seed: 0x5eed }
    }
}

/// `A ~ Y Z`: Y (n x k, non-negative), Z (k x m).
#[derive(Debug, Clone)]
pub struct Factors {
    pub y: DMatrix<f64>,
    pub z: DMatrix<f64>,
    /// Relative error `|A - YZ|_F / |A|_F` after each Z step, first to last.
    pub errors: Vec<f64>,
}

/// Factor `a` (n x m) into `k` semi-non-negative features.
pub fn snmf(a: &DMatrix<f64>, p: &SnmfParams) -> Result<Factors> {
    if a.iter().any(|x| !x.is_finite()) {
        return Err(Error::LinAlg("SNMF: the activations are not finite".into()));
    }
    let (y, errors) = factor_gram(&(a * a.transpose()), a.ncols(), p)?;
    let z = inverse(&(y.transpose() * &y)) * (y.transpose() * a);
    Ok(Factors { y, z, errors })
}

/// The Y of an SNMF of `A` given only its Gram matrix `G = A A'` (n x n) and width `m`, with
/// the relative error after each Z step.
///
/// Everything the updates need is a function of G: with `M = Y'Y` and `Z = M^-1 Y'A`,
/// `AZ' = G Y M^-1`, `ZZ' = M^-1 (Y'GY) M^-1` and `|A - YZ|^2 = tr G - tr(M^-1 Y'GY)`. One step
/// costs n^2 k instead of 2 n m k, and the features are formed once at the end.
pub fn factor_gram(g: &DMatrix<f64>, m: usize, p: &SnmfParams) -> Result<(DMatrix<f64>, Vec<f64>)> {
    let n = g.nrows();
    if n == 0 || m == 0 || g.ncols() != n {
        return Err(Error::LinAlg("SNMF: no activations to factor".into()));
    }
    if p.k == 0 || p.k > n {
        return Err(Error::LinAlg(format!(
            "SNMF: {} features from {n} tokens; ask for 1 to {n}",
            p.k
        )));
    }
    if g.iter().any(|x| !x.is_finite()) {
        return Err(Error::LinAlg("SNMF: the activations are not finite".into()));
    }
    let a2 = g.trace();
    if a2.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(Error::LinAlg("SNMF: the activations are all zero".into()));
    }
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut y = DMatrix::from_fn(n, p.k, |_, _| rng.random::<f64>() + 0.1);
    let mut errors: Vec<f64> = Vec::new();
    loop {
        // Z step (implicit) and its error.
        let minv = inverse(&(y.transpose() * &y));
        let gy = g * &y; // n x k
        let ygy = y.transpose() * &gy; // k x k
        let err = ((a2 - (&minv * &ygy).trace()).max(0.0) / a2).sqrt();
        let last = errors.last().copied();
        errors.push(err);
        if errors.len() > p.max_iter || last.is_some_and(|e| e - err < p.tol * e.max(1e-300)) {
            break;
        }
        // Y step (multiplicative, keeps Y >= 0).
        let azt = &gy * &minv;
        let zzt = &minv * &ygy * &minv;
        let (zp, zn) = (zzt.map(|x| (x.abs() + x) / 2.0), zzt.map(|x| (x.abs() - x) / 2.0));
        let (yzn, yzp) = (&y * zn, &y * zp);
        for i in 0..n {
            for j in 0..p.k {
                let v = azt[(i, j)];
                let num = (v.abs() + v) / 2.0 + yzn[(i, j)];
                let den = (v.abs() - v) / 2.0 + yzp[(i, j)];
                y[(i, j)] *= if den > 0.0 { (num / den).sqrt() } else { 1.0 };
            }
        }
    }
    Ok((y, errors))
}

/// `M^-1` for the k x k `M = Y'Y`: Cholesky, or the pseudo-inverse when a feature is unused
/// and M is singular (the least-squares solution of least norm).
fn inverse(m: &DMatrix<f64>) -> DMatrix<f64> {
    match m.clone().cholesky() {
        Some(c) => c.inverse(),
        // nalgebra's SVD pseudo-inverse returned wrong solutions here (the error rose); the
        // symmetric eigensolver is right.
        None => sym_pinv(m),
    }
}

/// Pseudo-inverse of a symmetric positive semi-definite matrix.
fn sym_pinv(s: &DMatrix<f64>) -> DMatrix<f64> {
    let e = nalgebra::SymmetricEigen::new(s.clone());
    let top = e.eigenvalues.iter().fold(0f64, |a, b| a.max(b.abs()));
    let inv = e.eigenvalues.map(|x| if x > top * 1e-12 { 1.0 / x } else { 0.0 });
    &e.eigenvectors * DMatrix::from_diagonal(&inv) * e.eigenvectors.transpose()
}

/// One SNMF feature of a layer, for people to read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Feature {
    /// The residual-stream direction `W_down z` (not normalised).
    pub direction: Vec<f32>,
    /// The tokens that use the feature most, largest weight first.
    pub top: Vec<TokenWeight>,
    /// Mean weight at the positive texts' read positions minus at the negative texts'.
    pub concept_gap: f64,
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
    /// Relative reconstruction error after each step.
    pub errors: Vec<f64>,
    /// The feature whose weight separates positives from negatives most.
    pub best: usize,
    /// The concept direction: `gap * W_down z` of the best feature (the expected difference
    /// the feature writes into the residual stream between the classes). [`crate::report`]
    /// orients it by the residual stream itself.
    pub direction: Vec<f32>,
}

/// Tokens listed per feature.
pub const TOP_TOKENS: usize = 8;

/// SNMF at every layer of the MLP activations `mlp` of a concept's texts: the first `n_pos`
/// texts are the positives. `read` says which tokens stand for a text in the class gap.
pub fn concept_snmf<B: Backend>(
    model: &Model<B>,
    mlp: &MlpActs,
    n_pos: usize,
    read: Read,
    p: &SnmfParams,
) -> Result<Vec<LayerSnmf>> {
    let (n, m) = (mlp.tokens.len(), mlp.width);
    let n_text = mlp.tokens.last().map_or(0, |t| t.0 + 1);
    if n == 0 || n_pos == 0 || n_pos >= n_text {
        return Err(Error::LinAlg("SNMF needs texts of both classes".into()));
    }
    // Which rows stand for each text, and its class.
    let mut reads: Vec<Vec<usize>> = vec![Vec::new(); n_text];
    for (row, t) in mlp.tokens.iter().enumerate() {
        reads[t.0].push(row);
    }
    if read == Read::LastToken {
        reads.iter_mut().for_each(|r| r.drain(..r.len().saturating_sub(1)).for_each(drop));
    }
    let layers: Vec<usize> = (0..mlp.layers.len()).collect();
    let factored = par::map(layers, |l| -> Result<(DMatrix<f64>, DMatrix<f32>, Vec<f64>)> {
        let a = DMatrix::from_row_slice(n, m, &mlp.layers[l]);
        let g = (&a * a.transpose()).map(|x| x as f64);
        let (y, errors) = factor_gram(&g, m, p)?;
        let yt = y.transpose().map(|x| x as f32);
        let z = inverse(&(y.transpose() * &y)).map(|x| x as f32) * (yt * &a);
        Ok((y, z, errors))
    });
    let mut out = Vec::with_capacity(factored.len());
    for (l, f) in factored.into_iter().enumerate() {
        let (y, z, errors) = f?;
        let k = z.nrows();
        // Row-major k x m for the backend.
        let zrows: Vec<f32> = z.transpose().iter().copied().collect();
        let dirs = model.down_project(l, zrows)?;
        let d = dirs.len() / k.max(1);
        let features: Vec<Feature> = (0..k)
            .map(|j| {
                let weight = |t: usize| {
                    reads[t].iter().map(|&r| y[(r, j)]).sum::<f64>() / reads[t].len().max(1) as f64
                };
                let class = |r: std::ops::Range<usize>| {
                    let len = r.len() as f64;
                    r.map(weight).sum::<f64>() / len
                };
                let mut rows: Vec<usize> = (0..n).collect();
                rows.sort_by(|&a, &b| y[(b, j)].total_cmp(&y[(a, j)]).then(a.cmp(&b)));
                let top = rows
                    .iter()
                    .take(TOP_TOKENS)
                    .map(|&r| {
                        let (text, position, token) = mlp.tokens[r];
                        TokenWeight { text, position, token, weight: y[(r, j)] as f32 }
                    })
                    .collect();
                Feature {
                    direction: dirs[j * d..(j + 1) * d].to_vec(),
                    top,
                    concept_gap: class(0..n_pos) - class(n_pos..n_text),
                }
            })
            .collect();
        let best = (0..k)
            .max_by(|&a, &b| {
                features[a].concept_gap.abs().total_cmp(&features[b].concept_gap.abs())
            })
            .unwrap_or(0);
        let gap = features[best].concept_gap as f32;
        let direction = features[best].direction.iter().map(|x| x * gap).collect();
        out.push(LayerSnmf { features, errors, best, direction });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planted(n: usize, m: usize, k: usize, noise: f64, seed: u64) -> DMatrix<f64> {
        let mut r = StdRng::seed_from_u64(seed);
        let y = DMatrix::from_fn(n, k, |_, _| r.random::<f64>().max(0.0));
        let z = DMatrix::from_fn(k, m, |_, _| r.random::<f64>() * 2.0 - 1.0);
        y * z + DMatrix::from_fn(n, m, |_, _| noise * (r.random::<f64>() - 0.5))
    }

    #[test]
    fn error_never_rises_and_y_stays_non_negative() {
        for (seed, k) in [(1u64, 3usize), (2, 5), (3, 8)] {
            let a = planted(60, 40, 4, 0.3, seed);
            let f = snmf(&a, &SnmfParams { k, max_iter: 300, tol: 0.0, seed }).unwrap();
            let worst = f
                .errors
                .windows(2)
                .enumerate()
                .map(|(i, w)| (w[1] - w[0], i))
                .fold((f64::MIN, 0), |a, b| if b.0 > a.0 { b } else { a });
            println!(
                "k={k}: error {:.4} -> {:.4} over {} steps; largest rise {:.2e} at step {}",
                f.errors[0],
                f.errors.last().unwrap(),
                f.errors.len(),
                worst.0,
                worst.1
            );
            assert!(worst.0 <= 1e-12, "the error rose by {:.3e} at step {}", worst.0, worst.1);
            assert!(f.y.iter().all(|x| *x >= 0.0 && x.is_finite()), "Y has a negative entry");
            // The reported error is the real one.
            let real = (&a - &f.y * &f.z).norm() / a.norm();
            assert!((real - f.errors.last().unwrap()).abs() < 1e-9);
        }
    }

    #[test]
    fn recovers_a_planted_factorization() {
        let a = planted(80, 30, 3, 0.0, 7);
        let f = snmf(&a, &SnmfParams { k: 3, max_iter: 2000, tol: 1e-12, seed: 1 }).unwrap();
        let e = *f.errors.last().unwrap();
        println!("planted rank-3 SNMF: relative error {e:.2e} after {} steps", f.errors.len());
        assert!(e < 0.02, "relative error {e}");
    }

    #[test]
    fn an_unused_feature_does_not_break_the_solve() {
        let a = planted(30, 20, 3, 0.1, 4);
        let mut y = DMatrix::from_fn(30, 3, |i, j| ((i + j) % 5) as f64 + 0.5);
        y.column_mut(2).fill(0.0);
        let z = sym_pinv(&(y.transpose() * &y)) * (y.transpose() * &a);
        assert!(z.row(2).iter().all(|x| *x == 0.0) && z.iter().all(|x| x.is_finite()));
        let r = (&a - &y * &z).norm();
        let y2 = y.columns(0, 2).into_owned();
        let best = (&a
            - &y2 * (y2.transpose() * &y2).try_inverse().unwrap() * (y2.transpose() * &a))
            .norm();
        assert!((r - best).abs() < 1e-9 * best, "{r} vs {best}");
    }

    #[test]
    fn bad_input_is_an_error() {
        let a = DMatrix::<f64>::zeros(4, 3);
        assert!(snmf(&a, &SnmfParams::default()).is_err());
        let a = planted(4, 3, 2, 0.1, 1);
        assert!(snmf(&a, &SnmfParams { k: 0, ..Default::default() }).is_err());
        assert!(snmf(&a, &SnmfParams { k: 5, ..Default::default() }).is_err());
        let mut b = a.clone();
        b[(0, 0)] = f64::NAN;
        assert!(snmf(&b, &SnmfParams { k: 2, ..Default::default() }).is_err());
    }
}
