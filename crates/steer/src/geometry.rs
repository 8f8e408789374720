//! Geometric stability of a layer's representation of the examples, after Shesha ("Geometric
//! Stability: The Missing Axis of Representations"; the `shesha-geometry` package, whose
//! `feature_split` and `supervised_alignment` these follow).
//!
//! - **Feature-split stability**: split the features (neurons) into two random disjoint
//!   halves, compute the cosine-distance RDM of the examples (all pairwise distances) on each
//!   half, and take Spearman's rho between the two RDMs; the mean over [`N_SPLITS`] splits.
//!   High: the examples' geometry is carried redundantly across the neurons. Uses no labels.
//! - **Supervised alignment**: Spearman's rho between the examples' correlation-distance RDM
//!   (features centred first) and the ideal RDM of the labels (0 within a class, 1 across).
//!   High: examples of a class are near each other and far from the other class. It fits
//!   nothing, so it is computed on all examples.
//!
//! `tests/tests/ports.rs` checks both against `shesha-geometry` 0.3.0 on the same activations
//! (feature split with the same partitions).

use crate::stats::{dot64, gram64, spearman, Rng};

/// Random feature partitions averaged over (Shesha's default).
pub const N_SPLITS: usize = 30;
/// Most examples used (a random subset beyond it; Shesha's own caps are 1600 for the feature
/// split and 300 for the alignment): the RDMs cost n^2 x width per split.
pub const MAX_SAMPLES: usize = 128;

/// Two disjoint halves of `0..width` (the second as long as the first).
pub type Partition = (Vec<usize>, Vec<usize>);

/// `count` random partitions of `0..width` (seeded).
pub fn partitions(width: usize, count: usize, seed: u64) -> Vec<Partition> {
    let mut r = Rng::new(seed);
    (0..count)
        .map(|_| {
            let p = r.permutation(width);
            let mid = width / 2;
            (p[..mid].to_vec(), p[mid..2 * mid].to_vec())
        })
        .collect()
}

/// Inner products (n x n, row-major) of `rows` restricted to the features `cols`, in f64.
fn gram_cols(rows: &[&[f32]], cols: &[usize]) -> Vec<f64> {
    let sub: Vec<Vec<f64>> =
        rows.iter().map(|r| cols.iter().map(|&c| r[c] as f64).collect()).collect();
    gram64(&sub)
}

/// Condensed cosine-distance RDM (scipy's `pdist(metric="cosine")` order: (0,1), (0,2), ...)
/// from the rows' inner products (a zero row is at distance 1 from everything).
fn cosine_rdm(g: &[f64], n: usize) -> Vec<f64> {
    let norm: Vec<f64> = (0..n).map(|i| g[i * n + i].max(0.0).sqrt()).collect();
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let den = norm[i] * norm[j];
            out.push(if den > 0.0 { 1.0 - g[i * n + j] / den } else { 1.0 });
        }
    }
    out
}

fn std(xs: &[f64]) -> f64 {
    let m = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len().max(1) as f64).sqrt()
}

/// Feature-split stability of `rows` over the given partitions: the mean Spearman rho of the
/// two halves' RDMs (partitions whose RDMs are constant are skipped, as Shesha does). NaN with
/// fewer than 4 rows or 4 features.
pub fn feature_split_with(rows: &[&[f32]], parts: &[Partition]) -> f64 {
    let width = rows.first().map_or(0, |r| r.len());
    if rows.len() < 4 || width < 4 {
        return f64::NAN;
    }
    let n = rows.len();
    // When the halves cover every feature, the second half's inner products are the whole
    // rows' less the first half's: one pass over the features per split instead of two.
    let all: Vec<usize> = (0..width).collect();
    let full = gram_cols(rows, &all);
    let mut rhos = Vec::new();
    for (a, b) in parts {
        let ga = gram_cols(rows, a);
        let gb = if a.len() + b.len() == width {
            full.iter().zip(&ga).map(|(f, x)| f - x).collect()
        } else {
            gram_cols(rows, b)
        };
        let (r1, r2) = (cosine_rdm(&ga, n), cosine_rdm(&gb, n));
        if std(&r1) < 1e-12 || std(&r2) < 1e-12 {
            continue;
        }
        let rho = spearman(&r1, &r2);
        if rho.is_finite() {
            rhos.push(rho);
        }
    }
    if rhos.is_empty() {
        f64::NAN
    } else {
        rhos.iter().sum::<f64>() / rhos.len() as f64
    }
}

/// At most [`MAX_SAMPLES`] of `n` indices (all of them, in order, when n is small enough).
fn sample(n: usize, seed: u64) -> Vec<usize> {
    if n <= MAX_SAMPLES {
        return (0..n).collect();
    }
    let mut idx = Rng::new(seed).permutation(n);
    idx.truncate(MAX_SAMPLES);
    idx.sort_unstable();
    idx
}

/// Feature-split stability with [`N_SPLITS`] seeded partitions.
pub fn feature_split(rows: &[&[f32]], seed: u64) -> f64 {
    let keep = sample(rows.len(), seed ^ 0xfeed);
    let rows: Vec<&[f32]> = keep.iter().map(|&i| rows[i]).collect();
    let width = rows.first().map_or(0, |r| r.len());
    feature_split_with(&rows, &partitions(width, N_SPLITS, seed))
}

/// Supervised RDM alignment of `rows` with binary `labels` (see the module docs). NaN when a
/// class is missing.
pub fn supervised_alignment(rows: &[&[f32]], labels: &[bool], seed: u64) -> f64 {
    let keep = sample(rows.len(), seed ^ 0xa11);
    let (rows, labels): (Vec<&[f32]>, Vec<bool>) =
        keep.iter().map(|&i| (rows[i], labels[i])).unzip();
    if labels.iter().all(|&l| l) || labels.iter().all(|&l| !l) {
        return f64::NAN;
    }
    let (n, d) = (rows.len(), rows.first().map_or(0, |r| r.len()));
    let mut mean = vec![0f64; d];
    for r in &rows {
        mean.iter_mut().zip(r.iter()).for_each(|(m, x)| *m += *x as f64 / n as f64);
    }
    // Correlation distance: each centred row centred again by its own mean, then cosine.
    let z: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            let c: Vec<f64> = r.iter().zip(&mean).map(|(x, m)| *x as f64 - m).collect();
            let rm = c.iter().sum::<f64>() / d.max(1) as f64;
            let c: Vec<f64> = c.into_iter().map(|x| x - rm).collect();
            let nn = c.iter().map(|x| x * x).sum::<f64>().sqrt();
            c.into_iter().map(|x| if nn > 0.0 { x / nn } else { 0.0 }).collect()
        })
        .collect();
    let (mut model, mut ideal) = (Vec::new(), Vec::new());
    for i in 0..n {
        for j in i + 1..n {
            model.push(1.0 - dot64(&z[i], &z[j]));
            ideal.push(if labels[i] == labels[j] { 0.0 } else { 1.0 });
        }
    }
    spearman(&model, &ideal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_is_stable_and_aligned_noise_is_not_aligned() {
        let mut r = Rng::new(5);
        // Two clusters along a shared pattern carried by every feature.
        let rows: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                let c = if i < 10 { 1.0 } else { -1.0 };
                (0..64)
                    .map(|j| c * if j % 2 == 0 { 1.0 } else { -1.0 } + 0.3 * r.normal() as f32)
                    .collect()
            })
            .collect();
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let labels: Vec<bool> = (0..20).map(|i| i < 10).collect();
        let fs = feature_split(&refs, 1);
        let al = supervised_alignment(&refs, &labels, 1);
        println!("clusters: feature split {fs:.3}, alignment {al:.3}");
        assert!(fs > 0.5 && al > 0.5, "{fs} {al}");
        let shuffled: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
        let al0 = supervised_alignment(&refs, &shuffled, 1);
        assert!(al0.abs() < 0.2, "labels unrelated to the clusters: {al0}");
        assert!(supervised_alignment(&refs, &[true; 20], 1).is_nan());
        assert!(feature_split(&refs[..3], 1).is_nan());
    }
}
