//! Logistic-regression probe (L2-regularised) and its held-out accuracy.
//!
//! `p(positive | h) = sigmoid(w . z + b)` with `z = (h - mu) / sigma` (features standardised
//! with one global scale), fitted to the minimum of the mean log-loss plus `lambda / 2 |w|^2`
//! (Alain & Bengio 2016, "Understanding intermediate layers using linear classifier probes").
//! The intercept is not penalised. This is scikit-learn's `LogisticRegression(C = 1 / (n
//! lambda))` on the same standardised features; `tests/tests/ports.rs` checks the weights and
//! the held-out accuracy against it (`scripts/ports/probe.py`).
//!
//! Solved by Newton's method with a backtracking line search, stopped when the gradient's
//! largest entry is below [`GRAD_TOL`] (a few steps; [`Probe::iterations`] says how many). The
//! solution lies in the span of the examples (representer theorem), so the solve runs in
//! coordinates of that span: with the n x n kernel `K = Z Z' = U L U'`, `w = Z' U L^-1/2 beta`
//! and `|w| = |beta|`, an (r + 1)-unknown problem (r = rank of Z <= n) whatever the width.
//! The direction reported is `w / sigma` in residual-stream units.
//!
//! Held-out accuracy is k-fold over pairs (the folds of [`crate::heldout`]): both members of a
//! pair sit in the same fold, so the probe is never scored on the partner of an example it was
//! trained on.

use crate::concept::Acts;
use nalgebra::{DMatrix, DVector};

pub const LAMBDA: f64 = 1e-2;
/// Newton stops when every entry of the gradient is below this.
pub const GRAD_TOL: f64 = 1e-9;
const MAX_ITERS: usize = 100;

pub struct Probe {
    pub w: Vec<f64>,
    pub b: f64,
    mu: Vec<f64>,
    sigma: f64,
    /// Newton steps taken.
    pub iterations: usize,
    /// Largest gradient entry at the end (below [`GRAD_TOL`] when it converged).
    pub grad: f64,
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(x))` without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The standardisation of rows `x`: the mean and one global scale.
pub fn standardize(x: &[&[f32]]) -> (Vec<f64>, f64) {
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
    (mu, var.sqrt().max(1e-12))
}

impl Probe {
    /// Fit on rows `x` with labels `y` (1 positive, 0 negative).
    pub fn fit(x: &[&[f32]], y: &[f64]) -> Probe {
        let (n, d) = (x.len(), x.first().map_or(0, |r| r.len()));
        let (mu, sigma) = standardize(x);
        let z = DMatrix::from_fn(n, d, |i, j| (x[i][j] as f64 - mu[j]) / sigma);
        // Coordinates of the examples in an orthonormal basis of their span: X = U L^1/2.
        let eig = nalgebra::SymmetricEigen::new(&z * z.transpose());
        let top = eig.eigenvalues.iter().fold(0f64, |m, v| m.max(*v));
        let keep: Vec<usize> =
            (0..n).filter(|&i| eig.eigenvalues[i] > top * 1e-12 && top > 0.0).collect();
        let r = keep.len();
        let xs = DMatrix::from_fn(n, r, |i, j| {
            eig.eigenvectors[(i, keep[j])] * eig.eigenvalues[keep[j]].sqrt()
        });
        let yv = DVector::from_column_slice(y);
        let nf = n as f64;
        // theta = (beta, b).
        let mut beta = DVector::<f64>::zeros(r);
        let mut b = 0f64;
        let objective = |beta: &DVector<f64>, b: f64| -> f64 {
            let s = &xs * beta;
            let loss: f64 =
                s.iter().zip(yv.iter()).map(|(si, yi)| softplus(si + b) - yi * (si + b)).sum();
            loss / nf + LAMBDA / 2.0 * beta.norm_squared()
        };
        let mut f = objective(&beta, b);
        let mut iterations = 0usize;
        let grad;
        loop {
            let s = &xs * &beta;
            let p: DVector<f64> = s.map(|si| sigmoid(si + b));
            let e = &p - &yv;
            let g_beta = xs.transpose() * &e / nf + &beta * LAMBDA;
            let g_b = e.sum() / nf;
            let gmax = g_beta.iter().fold(g_b.abs(), |m, v| m.max(v.abs()));
            if gmax < GRAD_TOL || iterations >= MAX_ITERS {
                grad = gmax;
                break;
            }
            iterations += 1;
            // Hessian of (beta, b).
            let wts: DVector<f64> = p.map(|pi| pi * (1.0 - pi) / nf);
            let mut h = DMatrix::<f64>::zeros(r + 1, r + 1);
            let xw = DMatrix::from_fn(n, r, |i, j| xs[(i, j)] * wts[i]);
            h.view_mut((0, 0), (r, r)).copy_from(&(xs.transpose() * &xw));
            for j in 0..r {
                h[(j, j)] += LAMBDA;
                let c: f64 = (0..n).map(|i| xw[(i, j)]).sum();
                h[(j, r)] = c;
                h[(r, j)] = c;
            }
            h[(r, r)] = wts.sum() + 1e-12;
            let mut g = DVector::<f64>::zeros(r + 1);
            g.rows_mut(0, r).copy_from(&g_beta);
            g[r] = g_b;
            let Some(step) = h.cholesky().map(|c| c.solve(&g)) else {
                grad = gmax;
                break;
            };
            // Backtracking (Armijo) on the Newton direction.
            let slope = -g.dot(&step);
            let mut t = 1.0;
            loop {
                let nb = &beta - step.rows(0, r) * t;
                let nbb = b - step[r] * t;
                let nf2 = objective(&nb, nbb);
                if nf2 <= f + 1e-4 * t * slope || t < 1e-10 {
                    beta = nb;
                    b = nbb;
                    f = nf2;
                    break;
                }
                t *= 0.5;
            }
        }
        // w = Z' U L^-1/2 beta
        let coef = DVector::from_fn(n, |i, _| {
            (0..r)
                .map(|j| eig.eigenvectors[(i, keep[j])] / eig.eigenvalues[keep[j]].sqrt() * beta[j])
                .sum::<f64>()
        });
        let w = z.transpose() * coef;
        Probe { w: w.iter().copied().collect(), b, mu, sigma, iterations, grad }
    }

    pub fn prob(&self, h: &[f32]) -> f64 {
        sigmoid(self.logit(h))
    }

    /// `w . z + b`: positive means the probe says "positive".
    pub fn logit(&self, h: &[f32]) -> f64 {
        let s: f64 = h
            .iter()
            .zip(&self.mu)
            .zip(&self.w)
            .map(|((v, m), w)| (*v as f64 - m) / self.sigma * w)
            .sum();
        s + self.b
    }

    /// The probe's direction in residual-stream units.
    pub fn direction(&self) -> Vec<f32> {
        self.w.iter().map(|w| (w / self.sigma) as f32).collect()
    }

    /// The standardisation it was fitted with (mean, global scale).
    pub fn scaling(&self) -> (&[f64], f64) {
        (&self.mu, self.sigma)
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

/// Held-out accuracy at `layer` over the folds of [`crate::heldout::folds`] (a probe fitted
/// on the other folds classifies each held-out example, `p > 0.5`); `None` with fewer than 2
/// pairs.
pub fn heldout_accuracy(pos: &Acts, neg: &Acts, layer: usize) -> Option<f64> {
    let n = pos.acts.len().min(neg.acts.len());
    let folds = crate::heldout::folds(n)?;
    let (mut right, mut total) = (0usize, 0usize);
    for (train, test) in &folds {
        let (x, y) = rows(pos, neg, layer, train);
        let p = Probe::fit(&x, &y);
        let (tx, ty) = rows(pos, neg, layer, test);
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

    /// At the solution the gradient of the objective vanishes (checked here in the original
    /// coordinates, independently of the span parameterisation).
    #[test]
    fn converges_to_a_stationary_point() {
        let mut s = 11u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let rows: Vec<Vec<f32>> = (0..24).map(|_| (0..40).map(|_| rnd()).collect()).collect();
        let y: Vec<f64> = (0..24).map(|i| (i % 2) as f64).collect();
        let x: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let p = Probe::fit(&x, &y);
        let (mu, sigma) = p.scaling();
        let n = x.len() as f64;
        let mut g = p.w.iter().map(|w| LAMBDA * w).collect::<Vec<f64>>();
        let mut gb = 0.0;
        for (r, yi) in x.iter().zip(&y) {
            let e = (p.prob(r) - yi) / n;
            gb += e;
            for (j, v) in r.iter().enumerate() {
                g[j] += e * (*v as f64 - mu[j]) / sigma;
            }
        }
        let worst = g.iter().fold(gb.abs(), |m, v| m.max(v.abs()));
        println!("probe: {} Newton steps, largest gradient entry {worst:.2e}", p.iterations);
        assert!(worst < 1e-8 && p.iterations < 30, "gradient {worst}, {} steps", p.iterations);
    }
}
