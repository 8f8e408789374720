//! Directions per layer from a concept's activations.
//!
//! - Mean difference (e.g. Turner et al. 2023, "Activation Addition"; Rimsky et al. 2024,
//!   "Contrastive Activation Addition"): `v_l = mean(pos_l) - mean(neg_l)`.
//! - PCA of pair differences (Zou et al. 2023, "Representation Engineering"): the first right
//!   singular vector of the centred differences `D_l = (pos_i,l - neg_i,l) - mean_i(...)`, a unit
//!   vector, signed so that positives project higher than negatives on average.

use crate::concept::Acts;
use crate::{Error, Result};
use nalgebra::DMatrix;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    MeanDiff,
    Pca,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mean-diff" => Ok(Method::MeanDiff),
            "pca" => Ok(Method::Pca),
            _ => Err(format!("unknown method `{s}` (mean-diff or pca)")),
        }
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
        .map(|l| {
            mean(pos, l)
                .iter()
                .zip(mean(neg, l))
                .map(|(a, b)| (a - b) as f32)
                .collect()
        })
        .collect())
}

/// First principal direction (unit) of the rows of `rows` after centring them.
///
/// Computed from the n x n Gram matrix `G = D D'` (n examples, usually far fewer than the
/// width): its top eigenvector `u` gives `v = D' u / |D' u|`, the top right singular vector of
/// `D`. A symmetric eigensolver on the small matrix is both cheaper and steadier than an SVD of
/// the wide n x d matrix.
pub fn first_pc(rows: &[Vec<f64>]) -> Result<Vec<f64>> {
    let (n, d) = (rows.len(), rows.first().map_or(0, |r| r.len()));
    if n == 0 || d == 0 {
        return Err(Error::LinAlg("no rows to decompose".into()));
    }
    let mut mean = vec![0f64; d];
    for r in rows {
        mean.iter_mut().zip(r).for_each(|(m, x)| *m += x / n as f64);
    }
    let m = DMatrix::from_fn(n, d, |i, j| rows[i][j] - mean[j]);
    let gram = &m * m.transpose();
    let eig = nalgebra::SymmetricEigen::new(gram);
    let (best, _) = eig
        .eigenvalues
        .iter()
        .enumerate()
        .fold(
            (0, f64::MIN),
            |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
        );
    let v = m.transpose() * eig.eigenvectors.column(best);
    let norm = v.norm();
    if !(norm > 0.0 && norm.is_finite()) {
        return Err(Error::LinAlg(
            "the examples do not vary: no principal direction".into(),
        ));
    }
    Ok(v.iter().map(|x| x / norm).collect())
}

/// Unit PCA direction of centred pair differences at every layer (pairs: `pos[i]` with `neg[i]`).
pub fn pca_diff(pos: &Acts, neg: &Acts) -> Result<Vec<Vec<f32>>> {
    check(pos, neg)?;
    if pos.acts.len() != neg.acts.len() {
        return Err(Error::Concept {
            name: String::new(),
            msg: format!(
                "{} positives but {} negatives: PCA needs pairs",
                pos.acts.len(),
                neg.acts.len()
            ),
        });
    }
    (0..pos.n_layer)
        .map(|l| {
            let diffs: Vec<Vec<f64>> = pos
                .at(l)
                .zip(neg.at(l))
                .map(|(p, n)| p.iter().zip(n).map(|(a, b)| (*a - *b) as f64).collect())
                .collect();
            let mut v = first_pc(&diffs)?;
            let proj = |a: &Acts| {
                a.at(l)
                    .map(|x| x.iter().zip(&v).map(|(p, q)| *p as f64 * q).sum::<f64>())
                    .sum::<f64>()
                    / a.acts.len() as f64
            };
            if proj(pos) < proj(neg) {
                v.iter_mut().for_each(|x| *x = -*x);
            }
            Ok(v.iter().map(|x| *x as f32).collect())
        })
        .collect()
}

/// Directions of a concept by `method`, one per layer.
pub fn directions(method: Method, pos: &Acts, neg: &Acts) -> Result<Vec<Vec<f32>>> {
    match method {
        Method::MeanDiff => mean_diff(pos, neg),
        Method::Pca => pca_diff(pos, neg),
    }
}
