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
use crate::stats::dot64;
use nalgebra::DMatrix;

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

/// The inner products of a set of rows (after subtracting their common mean, which the probe
/// is blind to: it standardises), in f64. The fit and its predictions on any of these rows
/// need nothing else (the solution lies in the rows' span), so k folds and shuffled-label
/// refits cost one pass over the features, not one each.
pub struct Gram {
    n: usize,
    width: usize,
    g: Vec<f64>,
}

impl Gram {
    pub fn of(rows: &[&[f32]]) -> Gram {
        let (n, width) = (rows.len(), rows.first().map_or(0, |r| r.len()));
        let mut mean = vec![0f64; width];
        for r in rows {
            mean.iter_mut().zip(r.iter()).for_each(|(m, v)| *m += *v as f64);
        }
        let centred: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().zip(&mean).map(|(v, m)| *v as f64 - m / n as f64).collect())
            .collect();
        Gram { n, width, g: crate::stats::gram64(&centred) }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.g[i * self.n + j]
    }
}

/// What a probe fit on rows `train` of a [`Gram`] matrix needs that the labels leave
/// unchanged: the training rows' mean terms, the global scale, and the examples' coordinates in
/// an orthonormal basis of their span. A fold's held-out fit and all its shuffled-label refits
/// share one (the eigendecomposition is most of a fit's cost).
struct Basis {
    train: Vec<usize>,
    /// `x_k . mu` for every row k (mu: the training rows' mean) and `mu . mu`.
    a: Vec<f64>,
    c: f64,
    sigma: f64,
    /// Rank kept (eigenvalues above `1e-12` of the largest).
    r: usize,
    /// `Z = U L^1/2` on the kept eigenvalues, column-major (r columns of n).
    xs: Vec<f64>,
    /// `U L^-1/2` on the kept eigenvalues, column-major: `coef = back beta`.
    back: Vec<f64>,
}

impl Basis {
    fn new(g: &Gram, train: Vec<usize>) -> Basis {
        let n = train.len();
        let nf = n as f64;
        let a: Vec<f64> =
            (0..g.n).map(|k| train.iter().map(|&t| g.at(k, t)).sum::<f64>() / nf).collect();
        let c = train.iter().map(|&t| a[t]).sum::<f64>() / nf;
        let cen = |i: usize, j: usize| g.at(i, j) - a[i] - a[j] + c;
        // One global scale: the root mean square of the centred training features.
        let var = train.iter().map(|&t| cen(t, t)).sum::<f64>() / (n * g.width).max(1) as f64;
        let sigma = var.max(0.0).sqrt().max(1e-12);
        let s2 = sigma * sigma;
        // Coordinates of the examples in an orthonormal basis of their span: Z = U L^1/2.
        let eig = nalgebra::SymmetricEigen::new(DMatrix::from_fn(n, n, |i, j| {
            cen(train[i], train[j]) / s2
        }));
        let top = eig.eigenvalues.iter().fold(0f64, |m, v| m.max(*v));
        let keep: Vec<usize> =
            (0..n).filter(|&i| eig.eigenvalues[i] > top * 1e-12 && top > 0.0).collect();
        let r = keep.len();
        let (mut xs, mut back) = (vec![0f64; n * r], vec![0f64; n * r]);
        for (j, &kj) in keep.iter().enumerate() {
            let sq = eig.eigenvalues[kj].sqrt();
            for i in 0..n {
                xs[j * n + i] = eig.eigenvectors[(i, kj)] * sq;
                back[j * n + i] = eig.eigenvectors[(i, kj)] / sq;
            }
        }
        Basis { train, a, c, sigma, r, xs, back }
    }

    fn centred(&self, g: &Gram, i: usize, j: usize) -> f64 {
        g.at(i, j) - self.a[i] - self.a[j] + self.c
    }
}

/// A probe fitted on a [`Basis`], in kernel form: `w . z_k = sum_i coef_i C(train_i, k) /
/// sigma^2`, with `C` the inner products after centring on the training rows' mean.
struct KernelFit<'a> {
    basis: &'a Basis,
    coef: Vec<f64>,
    b: f64,
    iterations: usize,
    grad: f64,
}

impl KernelFit<'_> {
    /// `w . z_k + b` for row k of the Gram matrix.
    fn logit(&self, g: &Gram, k: usize) -> f64 {
        let bs = self.basis;
        let s2 = bs.sigma * bs.sigma;
        bs.train.iter().zip(&self.coef).map(|(&t, c)| c * bs.centred(g, t, k)).sum::<f64>() / s2
            + self.b
    }
}

/// Solve `a x = rhs` for a symmetric positive definite `m x m` matrix `a` (row-major,
/// overwritten by its Cholesky factor); false when `a` is not positive definite.
fn cholesky_solve(a: &mut [f64], m: usize, rhs: &[f64], x: &mut [f64]) -> bool {
    for j in 0..m {
        let d = a[j * m + j] - (0..j).map(|k| a[j * m + k] * a[j * m + k]).sum::<f64>();
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * m + j] = d;
        for i in j + 1..m {
            let v = a[i * m + j] - (0..j).map(|k| a[i * m + k] * a[j * m + k]).sum::<f64>();
            a[i * m + j] = v / d;
        }
    }
    // L z = rhs, then L' x = z.
    for i in 0..m {
        x[i] = (rhs[i] - (0..i).map(|k| a[i * m + k] * x[k]).sum::<f64>()) / a[i * m + i];
    }
    for i in (0..m).rev() {
        x[i] = (x[i] - (i + 1..m).map(|k| a[k * m + i] * x[k]).sum::<f64>()) / a[i * m + i];
    }
    true
}

/// The probe on a fold's [`Basis`] with labels `y` (1 positive, 0 negative; one per training
/// row).
fn fit_kernel<'a>(bs: &'a Basis, y: &[f64]) -> KernelFit<'a> {
    let n = bs.train.len();
    let nf = n as f64;
    let (r, xs) = (bs.r, &bs.xs);
    // The Newton loop below works in plain buffers allocated once (it runs for every fold of
    // every shuffled-label refit, on threads that share one allocator) and in dot products
    // over the n examples (vectorized).
    let col = |j: usize| &xs[j * n..(j + 1) * n];
    let scores = |beta: &[f64], out: &mut [f64]| {
        out.iter_mut().for_each(|o| *o = 0.0);
        for (j, bj) in beta.iter().enumerate() {
            out.iter_mut().zip(col(j)).for_each(|(o, x)| *o += x * bj);
        }
    };
    let mut s = vec![0f64; n];
    // theta = (beta, b).
    let mut beta = vec![0f64; r];
    let mut b = 0f64;
    let objective = |beta: &[f64], b: f64, s: &mut [f64]| -> f64 {
        scores(beta, s);
        let loss: f64 = s.iter().zip(y).map(|(si, yi)| softplus(si + b) - yi * (si + b)).sum();
        loss / nf + LAMBDA / 2.0 * beta.iter().map(|v| v * v).sum::<f64>()
    };
    let mut f = objective(&beta, b, &mut s);
    let m = r + 1;
    let (mut e, mut wts) = (vec![0f64; n], vec![0f64; n]);
    let (mut g, mut h, mut step, mut nb) =
        (vec![0f64; m], vec![0f64; m * m], vec![0f64; m], vec![0f64; r]);
    let mut xw = vec![0f64; n];
    let mut iterations = 0usize;
    let grad;
    loop {
        scores(&beta, &mut s);
        for i in 0..n {
            let pi = sigmoid(s[i] + b);
            e[i] = pi - y[i];
            wts[i] = pi * (1.0 - pi) / nf;
        }
        for j in 0..r {
            g[j] = dot64(col(j), &e) / nf + beta[j] * LAMBDA;
        }
        g[r] = e.iter().sum::<f64>() / nf;
        let gmax = g.iter().fold(0f64, |mx, v| mx.max(v.abs()));
        if gmax < GRAD_TOL || iterations >= MAX_ITERS {
            grad = gmax;
            break;
        }
        iterations += 1;
        // Hessian of (beta, b): Xs' W Xs + lambda I, bordered by Xs' w and sum(w).
        for j in 0..r {
            xw.iter_mut().zip(col(j).iter().zip(&wts)).for_each(|(v, (x, w))| *v = x * w);
            for k in 0..=j {
                let v = dot64(&xw, col(k));
                h[j * m + k] = v;
                h[k * m + j] = v;
            }
            h[j * m + j] += LAMBDA;
            let c = xw.iter().sum::<f64>();
            h[j * m + r] = c;
            h[r * m + j] = c;
        }
        h[r * m + r] = wts.iter().sum::<f64>() + 1e-12;
        if !cholesky_solve(&mut h, m, &g, &mut step) {
            grad = gmax;
            break;
        }
        // Backtracking (Armijo) on the Newton direction.
        let slope = -g.iter().zip(&step).map(|(a, b)| a * b).sum::<f64>();
        let mut t = 1.0;
        loop {
            nb.iter_mut().zip(beta.iter().zip(&step)).for_each(|(v, (bj, sj))| *v = bj - sj * t);
            let nbb = b - step[r] * t;
            let nf2 = objective(&nb, nbb, &mut s);
            if nf2 <= f + 1e-4 * t * slope || t < 1e-10 {
                std::mem::swap(&mut beta, &mut nb);
                b = nbb;
                f = nf2;
                break;
            }
            t *= 0.5;
        }
    }
    // w = Z' U L^-1/2 beta = Z' coef.
    let coef = (0..n).map(|i| (0..r).map(|j| bs.back[j * n + i] * beta[j]).sum::<f64>()).collect();
    KernelFit { basis: bs, coef, b, iterations, grad }
}

impl Probe {
    /// Fit on rows `x` with labels `y` (1 positive, 0 negative).
    pub fn fit(x: &[&[f32]], y: &[f64]) -> Probe {
        let (n, d) = (x.len(), x.first().map_or(0, |r| r.len()));
        let g = Gram::of(x);
        let bs = Basis::new(&g, (0..n).collect());
        let k = fit_kernel(&bs, y);
        let mut mu = vec![0f64; d];
        for r in x {
            mu.iter_mut().zip(r.iter()).for_each(|(m, v)| *m += *v as f64 / n as f64);
        }
        let mut w = vec![0f64; d];
        for (r, c) in x.iter().zip(&k.coef) {
            let c = c / bs.sigma;
            w.iter_mut().zip(r.iter().zip(&mu)).for_each(|(w, (v, m))| *w += c * (*v as f64 - m));
        }
        Probe { w, b: k.b, mu, sigma: bs.sigma, iterations: k.iterations, grad: k.grad }
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

/// The [`Gram`] matrix of `layer`'s examples, pair by pair (positive, then negative).
pub fn gram(pos: &Acts, neg: &Acts, layer: usize) -> Gram {
    let all: Vec<usize> = (0..pos.acts.len().min(neg.acts.len())).collect();
    Gram::of(&rows(pos, neg, layer, &all).0)
}

/// Held-out accuracy at `layer` over the folds of [`crate::heldout::folds`] (a probe fitted
/// on the other folds classifies each held-out example, `p > 0.5`); `None` with fewer than 2
/// pairs.
pub fn heldout_accuracy(pos: &Acts, neg: &Acts, layer: usize) -> Option<f64> {
    let n = pos.acts.len().min(neg.acts.len());
    heldout_accuracy_gram(&gram(pos, neg, layer), &vec![false; n])
}

/// [`heldout_accuracy`] from a layer's [`gram`], with the labels of pairs where `flips` is
/// true swapped (the shuffled-label null).
pub fn heldout_accuracy_gram(g: &Gram, flips: &[bool]) -> Option<f64> {
    heldout_accuracies(g, std::slice::from_ref(&flips.to_vec())).pop().flatten()
}

/// [`heldout_accuracy_gram`] for several label flips at once (the true labels are all
/// `false`): each fold's basis is computed once for every run, so the results are the same,
/// bit for bit, as one call per run.
pub fn heldout_accuracies(g: &Gram, runs: &[Vec<bool>]) -> Vec<Option<f64>> {
    let n = g.n / 2;
    let Some(folds) = crate::heldout::folds(n) else {
        return vec![None; runs.len()];
    };
    let mut right = vec![0usize; runs.len()];
    let mut total = 0usize;
    for (train, test) in &folds {
        let rows: Vec<usize> = train.iter().flat_map(|&i| [2 * i, 2 * i + 1]).collect();
        let bs = Basis::new(g, rows);
        for (flips, right) in runs.iter().zip(right.iter_mut()) {
            let label = |i: usize, positive: bool| if positive ^ flips[i] { 1.0 } else { 0.0 };
            let y: Vec<f64> =
                train.iter().flat_map(|&i| [label(i, true), label(i, false)]).collect();
            let k = fit_kernel(&bs, &y);
            for &i in test {
                for (row, positive) in [(2 * i, true), (2 * i + 1, false)] {
                    *right +=
                        ((sigmoid(k.logit(g, row)) > 0.5) == (label(i, positive) > 0.5)) as usize;
                }
            }
        }
        total += 2 * test.len();
    }
    right.into_iter().map(|r| Some(r as f64 / total as f64)).collect()
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

    /// The kernel-form refits equal the explicit ones: labels flipped through the Gram matrix
    /// give the held-out accuracy of a probe fitted on the swapped rows, and a fit's kernel
    /// logits are its weights' logits.
    #[test]
    fn gram_refits_equal_explicit_ones() {
        let mut s = 5u64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        // Weak signal on a large common offset (as residual streams have), so folds differ.
        let mut mk = |sign: f32| -> Vec<Vec<Vec<f32>>> {
            (0..12)
                .map(|_| {
                    vec![(0..48)
                        .map(|j| 30.0 + if j < 3 { sign * 0.4 + rnd() } else { rnd() })
                        .collect()]
                })
                .collect()
        };
        let pos = Acts { acts: mk(1.0), n_layer: 1, d: 48 };
        let neg = Acts { acts: mk(-1.0), n_layer: 1, d: 48 };
        let g = gram(&pos, &neg, 0);
        for flips in crate::heldout::label_flips(12, 6, 3) {
            let (fp, fneg) = crate::heldout::flipped(&pos, &neg, &flips);
            // The old way: explicit fits on the swapped rows.
            let folds = crate::heldout::folds(12).unwrap();
            let (mut right, mut total) = (0, 0);
            for (train, test) in &folds {
                let (x, y) = rows(&fp, &fneg, 0, train);
                let p = Probe::fit(&x, &y);
                let (tx, ty) = rows(&fp, &fneg, 0, test);
                for (h, t) in tx.iter().zip(&ty) {
                    right += ((p.prob(h) > 0.5) == (*t > 0.5)) as usize;
                    total += 1;
                }
            }
            let explicit = right as f64 / total as f64;
            println!("shuffled labels: held-out probe accuracy {explicit:.3}");
            assert_eq!(heldout_accuracy_gram(&g, &flips), Some(explicit), "flips {flips:?}");
        }
        // One basis per fold for every run gives what a basis per run gives.
        let runs: Vec<Vec<bool>> =
            std::iter::once(vec![false; 12]).chain(crate::heldout::label_flips(12, 6, 3)).collect();
        let single: Vec<Option<f64>> = runs.iter().map(|f| heldout_accuracy_gram(&g, f)).collect();
        assert_eq!(heldout_accuracies(&g, &runs), single);
        assert_eq!(single[0], heldout_accuracy(&pos, &neg, 0));
        let all: Vec<usize> = (0..12).collect();
        let (x, y) = rows(&pos, &neg, 0, &all);
        let p = Probe::fit(&x, &y);
        let g = Gram::of(&x);
        let bs = Basis::new(&g, all.iter().flat_map(|&i| [2 * i, 2 * i + 1]).collect());
        let k = fit_kernel(&bs, &y);
        let worst = (0..24).map(|r| (p.logit(x[r]) - k.logit(&g, r)).abs()).fold(0f64, f64::max);
        println!("kernel vs explicit probe logits: max difference {worst:.2e}");
        assert!(worst < 1e-9, "{worst}");
    }
}
