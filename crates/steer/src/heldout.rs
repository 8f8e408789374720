//! Held-out separation of a concept's direction, and its null baseline.
//!
//! A direction fitted on the examples it is then scored on separates them almost always when
//! the width (576) dwarfs the number of examples (tens): a concept of pure noise scores AUROC
//! 1.0 in sample. So every separation number Tiller shows is held out:
//!
//! - **Folds over pairs**: k = min(5, pairs) folds, pair i in fold `i % k`; both members of a
//!   pair sit in the same fold.
//! - For each fold, the method fits a direction at every layer on the other folds' pairs; each
//!   held-out example is scored by its projection on the unit direction, measured from the
//!   midpoint of the training classes' projected means (`s = h.u - (m_pos + m_neg) . u / 2`,
//!   so scores from different folds share a zero: the fold's decision boundary).
//! - The pooled held-out scores of all folds give the **AUROC** (probability that a positive
//!   scores above a negative), **Cohen's d**, and the **accuracy** of the rule `s > 0`.
//! - **Null baseline**: the same pipeline with the labels shuffled within pairs (each pair's
//!   two texts swap classes with probability 1/2, seeded), a few times; the mean and range of
//!   the shuffled runs' numbers show where "separation" is indistinguishable from chance.
//!
//! `tests/tests/ports.rs` checks this protocol against a NumPy/scikit-learn port
//! (`scripts/ports/heldout.py`) on the same activations.

use crate::concept::Acts;
use crate::stats::{auroc, cohens_d, Rng};
use crate::{Error, Result};

/// The folds as (training pairs, held-out pairs); `None` with fewer than 2 pairs.
pub fn folds(n_pairs: usize) -> Option<Vec<(Vec<usize>, Vec<usize>)>> {
    if n_pairs < 2 {
        return None;
    }
    let k = n_pairs.min(5);
    Some(
        (0..k)
            .map(|f| {
                let train = (0..n_pairs).filter(|i| i % k != f).collect();
                let test = (0..n_pairs).filter(|i| i % k == f).collect();
                (train, test)
            })
            .collect(),
    )
}

/// Held-out separation at one layer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Separation {
    pub auroc: f64,
    pub cohens_d: f64,
    /// Fraction of held-out examples on their class's side of the training midpoint.
    pub accuracy: f64,
}

/// A direction per layer, fitted on the training pairs `train` of `(pos, neg)`.
pub type Fit<'a> = dyn Fn(&Acts, &Acts, &[usize]) -> Result<Vec<Vec<f32>>> + 'a;

/// Held-out separation at every layer of the directions `fit` makes.
pub fn separation(pos: &Acts, neg: &Acts, fit: &Fit) -> Result<Vec<Separation>> {
    let n = pos.acts.len();
    if n != neg.acts.len() {
        return Err(Error::Concept {
            name: String::new(),
            msg: format!(
                "{n} positives but {} negatives: held-out scores need pairs",
                neg.acts.len()
            ),
        });
    }
    let Some(folds) = folds(n) else {
        return Err(Error::Concept {
            name: String::new(),
            msg: "held-out separation needs at least 2 pairs".into(),
        });
    };
    let n_layer = pos.n_layer;
    let mut sp: Vec<Vec<f64>> = vec![Vec::with_capacity(n); n_layer];
    let mut sn: Vec<Vec<f64>> = vec![Vec::with_capacity(n); n_layer];
    for (train, test) in &folds {
        let dirs = fit(pos, neg, train)?;
        for l in 0..n_layer {
            let u = crate::unit(&dirs[l]);
            let proj =
                |h: &[f32]| h.iter().zip(&u).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>();
            let mean = |a: &Acts| {
                train.iter().map(|&i| proj(&a.acts[i][l])).sum::<f64>() / train.len() as f64
            };
            let mid = (mean(pos) + mean(neg)) / 2.0;
            for &i in test {
                sp[l].push(proj(&pos.acts[i][l]) - mid);
                sn[l].push(proj(&neg.acts[i][l]) - mid);
            }
        }
    }
    Ok((0..n_layer)
        .map(|l| {
            let right = sp[l].iter().filter(|s| **s > 0.0).count()
                + sn[l].iter().filter(|s| **s < 0.0).count();
            Separation {
                auroc: auroc(&sp[l], &sn[l]),
                cohens_d: cohens_d(&sp[l], &sn[l]),
                accuracy: right as f64 / (sp[l].len() + sn[l].len()) as f64,
            }
        })
        .collect())
}

/// Which pairs swap classes in each shuffled run (seeded).
pub fn label_flips(n_pairs: usize, runs: usize, seed: u64) -> Vec<Vec<bool>> {
    let mut r = Rng::new(seed);
    (0..runs).map(|_| (0..n_pairs).map(|_| r.coin()).collect()).collect()
}

/// The examples with the pairs in `flips` swapped between the classes.
pub fn flipped(pos: &Acts, neg: &Acts, flips: &[bool]) -> (Acts, Acts) {
    let pick = |want_pos: bool| Acts {
        acts: flips
            .iter()
            .enumerate()
            .map(|(i, &f)| if f ^ want_pos { pos.acts[i].clone() } else { neg.acts[i].clone() })
            .collect(),
        n_layer: pos.n_layer,
        d: pos.d,
    };
    (pick(true), pick(false))
}

/// One number per layer summarised over the shuffled runs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Band {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Band {
    pub fn of(xs: &[f64]) -> Band {
        let xs: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        if xs.is_empty() {
            return Band { mean: f64::NAN, lo: f64::NAN, hi: f64::NAN };
        }
        Band {
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            lo: xs.iter().copied().fold(f64::INFINITY, f64::min),
            hi: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directions::{directions, Method};

    fn noise(seed: u64, n: usize, d: usize, shift: f32) -> Acts {
        let mut r = Rng::new(seed);
        Acts {
            acts: (0..n)
                .map(|_| {
                    vec![(0..d)
                        .map(|j| r.normal() as f32 + if j == 0 { shift } else { 0.0 })
                        .collect()]
                })
                .collect(),
            n_layer: 1,
            d,
        }
    }

    fn md_fit(p: &Acts, n: &Acts, train: &[usize]) -> Result<Vec<Vec<f32>>> {
        directions(Method::MeanDiff, &p.subset(train), &n.subset(train))
    }

    /// Pure noise separates perfectly in sample and not held out; a real shift does both.
    #[test]
    fn noise_is_chance_held_out_and_signal_is_not() {
        let (pos, neg) = (noise(1, 16, 576, 0.0), noise(2, 16, 576, 0.0));
        let dir = directions(Method::MeanDiff, &pos, &neg).unwrap();
        let u = crate::unit(&dir[0]);
        let proj = |a: &Acts| a.at(0).map(|h| crate::dot(h, &u) as f64).collect::<Vec<_>>();
        let in_sample = auroc(&proj(&pos), &proj(&neg));
        let held = separation(&pos, &neg, &md_fit).unwrap()[0];
        println!("noise: in-sample AUROC {in_sample:.3}, held out {:.3}", held.auroc);
        assert!(in_sample > 0.99, "in sample {in_sample}");
        assert!((0.2..0.8).contains(&held.auroc), "held out {}", held.auroc);
        let (pos, neg) = (noise(3, 16, 576, 12.0), noise(4, 16, 576, 0.0));
        let held = separation(&pos, &neg, &md_fit).unwrap()[0];
        assert!(held.auroc > 0.95 && held.accuracy > 0.8, "{held:?}");
        let flips = label_flips(16, 3, 9);
        assert_eq!(flips.len(), 3);
        let (fp, fneg) = flipped(&pos, &neg, &flips[0]);
        for (i, &f) in flips[0].iter().enumerate() {
            assert_eq!(fp.acts[i] == pos.acts[i], !f);
            assert_eq!(fneg.acts[i] == neg.acts[i], !f);
        }
        assert!(folds(1).is_none());
        assert_eq!(folds(3).unwrap().len(), 3);
    }
}
