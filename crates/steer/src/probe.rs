//! Logistic-regression probe (L2-regularised) and its held-out accuracy.
//!
//! `p(positive | h) = sigmoid(w . z + b)` with `z = (h - mu) / sigma` (features standardised
//! with one global scale), fitted by gradient descent on the mean log-loss plus
//! `lambda / 2 |w|^2` (Alain & Bengio 2016, "Understanding intermediate layers using linear
//! classifier probes"). The direction reported is `w / sigma` in residual-stream units.
//! Held-out accuracy is k-fold over pairs: both members of a pair sit in the same fold, so the
//! probe is never scored on the partner of an example it was trained on.

use crate::concept::Acts;

pub const LAMBDA: f64 = 1e-2;
const ITERS: usize = 300;

pub struct Probe {
    pub w: Vec<f64>,
    pub b: f64,
    mu: Vec<f64>,
    sigma: f64,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Probe {
    /// Fit on rows `x` with labels `y` (1 positive, 0 negative).
    pub fn fit(x: &[&[f32]], y: &[f64]) -> Probe {
        let (n, d) = (x.len(), x.first().map_or(0, |r| r.len()));
        let mut mu = vec![0f64; d];
        for r in x {
            mu.iter_mut().zip(r.iter()).for_each(|(m, v)| *m += *v as f64 / n as f64);
        }
        let var = x
            .iter()
            .map(|r| r.iter().zip(&mu).map(|(v, m)| (*v as f64 - m).powi(2)).sum::<f64>())
            .sum::<f64>()
            / (n * d).max(1) as f64;
        let sigma = var.sqrt().max(1e-12);
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|r| r.iter().zip(&mu).map(|(v, m)| (*v as f64 - m) / sigma).collect())
            .collect();
        // Step size from a bound on the loss's Lipschitz constant: |Z|_F^2 / (4 n) + lambda.
        let frob = z.iter().map(|r| r.iter().map(|v| v * v).sum::<f64>()).sum::<f64>();
        let step = 1.0 / (frob / (4.0 * n as f64) + LAMBDA + 0.25);
        // Gradient descent from w = 0 keeps w in the span of the rows, w = Z' alpha, and the
        // step `w -= step * (Z' e / n + lambda w)` is `alpha -= step * (e / n + lambda alpha)`:
        // the same iterates at n^2 per step (n examples) instead of n d.
        let kern: Vec<f64> = z
            .iter()
            .flat_map(|a| z.iter().map(move |c| a.iter().zip(c).map(|(x, y)| x * y).sum::<f64>()))
            .collect();
        let (mut alpha, mut b) = (vec![0f64; n], 0f64);
        let mut e = vec![0f64; n];
        for _ in 0..ITERS {
            let mut gb = 0.0;
            for (i, ei) in e.iter_mut().enumerate() {
                let s: f64 = kern[i * n..(i + 1) * n].iter().zip(&alpha).map(|(k, a)| k * a).sum();
                *ei = (sigmoid(s + b) - y[i]) / n as f64;
                gb += *ei;
            }
            alpha.iter_mut().zip(&e).for_each(|(a, ei)| *a -= step * (ei + LAMBDA * *a));
            b -= step * gb;
        }
        let mut w = vec![0f64; d];
        for (zi, a) in z.iter().zip(&alpha) {
            w.iter_mut().zip(zi).for_each(|(wj, zj)| *wj += a * zj);
        }
        Probe { w, b, mu, sigma }
    }

    pub fn prob(&self, h: &[f32]) -> f64 {
        let s: f64 = h
            .iter()
            .zip(&self.mu)
            .zip(&self.w)
            .map(|((v, m), w)| (*v as f64 - m) / self.sigma * w)
            .sum();
        sigmoid(s + self.b)
    }

    /// The probe's direction in residual-stream units.
    pub fn direction(&self) -> Vec<f32> {
        self.w.iter().map(|w| (w / self.sigma) as f32).collect()
    }
}

fn rows<'a>(
    pos: &'a Acts,
    neg: &'a Acts,
    layer: usize,
    pairs: &[usize],
) -> (Vec<&'a [f32]>, Vec<f64>) {
    let mut x = Vec::with_capacity(pairs.len() * 2);
    let mut y = Vec::with_capacity(pairs.len() * 2);
    for &i in pairs {
        x.push(pos.acts[i][layer].as_slice());
        y.push(1.0);
        x.push(neg.acts[i][layer].as_slice());
        y.push(0.0);
    }
    (x, y)
}

/// Probe direction at `layer`, trained on all pairs.
pub fn direction(pos: &Acts, neg: &Acts, layer: usize) -> Vec<f32> {
    let all: Vec<usize> = (0..pos.acts.len().min(neg.acts.len())).collect();
    let (x, y) = rows(pos, neg, layer, &all);
    Probe::fit(&x, &y).direction()
}

/// Held-out accuracy at `layer` by k-fold over pairs (k = min(5, pairs)); `None` with fewer
/// than 2 pairs.
pub fn heldout_accuracy(pos: &Acts, neg: &Acts, layer: usize) -> Option<f64> {
    let n = pos.acts.len().min(neg.acts.len());
    if n < 2 {
        return None;
    }
    let k = n.min(5);
    let (mut right, mut total) = (0usize, 0usize);
    for fold in 0..k {
        let train: Vec<usize> = (0..n).filter(|i| i % k != fold).collect();
        let test: Vec<usize> = (0..n).filter(|i| i % k == fold).collect();
        let (x, y) = rows(pos, neg, layer, &train);
        let p = Probe::fit(&x, &y);
        let (tx, ty) = rows(pos, neg, layer, &test);
        for (h, t) in tx.iter().zip(&ty) {
            right += ((p.prob(h) > 0.5) == (*t > 0.5)) as usize;
            total += 1;
        }
    }
    Some(right as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_data_is_learned_and_held_out() {
        // Class signal on dimension 0, noise elsewhere.
        let mut s = 7u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mk = |sign: f32, rnd: &mut dyn FnMut() -> f32| {
            (0..8)
                .map(|_| {
                    vec![(0..16)
                        .map(|j| if j == 0 { sign * 2.0 + rnd() * 0.3 } else { rnd() })
                        .collect::<Vec<f32>>()]
                })
                .collect()
        };
        let pos = Acts { acts: mk(1.0, &mut rnd), n_layer: 1, d: 16 };
        let neg = Acts { acts: mk(-1.0, &mut rnd), n_layer: 1, d: 16 };
        assert_eq!(heldout_accuracy(&pos, &neg, 0), Some(1.0));
        let w = direction(&pos, &neg, 0);
        let biggest =
            w.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).map(|x| x.0);
        assert_eq!(biggest, Some(0));
        assert!(w[0] > 0.0);
    }
}
