//! Small statistics shared by the diagnostics: AUROC, Cohen's d, ranks and Spearman's rho.

/// `a . b` in f64, four running sums (vectorizable).
pub fn dot64(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// The inner products of `rows` (n x n, row-major), each computed once.
pub fn gram64(rows: &[Vec<f64>]) -> Vec<f64> {
    let n = rows.len();
    let mut g = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = dot64(&rows[i], &rows[j]);
            g[i * n + j] = v;
            g[j * n + i] = v;
        }
    }
    g
}

/// `(mean, unbiased variance)`; variance 0 for fewer than two values.
pub fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n.max(1.0);
    let v = if xs.len() > 1 {
        xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, v)
}

/// The probability that a random positive scores above a random negative (ties count half):
/// the area under the ROC curve of the scores (Mann-Whitney U / (n_p n_n)). NaN when a class
/// is empty.
pub fn auroc(p: &[f64], n: &[f64]) -> f64 {
    if p.is_empty() || n.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for a in p {
        for b in n {
            wins += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (p.len() * n.len()) as f64
}

/// `(mean_p - mean_n) / pooled sd`; 0 when the pooled sd is 0.
pub fn cohens_d(p: &[f64], n: &[f64]) -> f64 {
    let ((mp, vp), (mn, vn)) = (mean_var(p), mean_var(n));
    let pooled = (((p.len() as f64 - 1.0) * vp + (n.len() as f64 - 1.0) * vn)
        / ((p.len() + n.len()) as f64 - 2.0).max(1.0))
    .sqrt();
    if pooled > 0.0 {
        (mp - mn) / pooled
    } else {
        0.0
    }
}

/// Ranks from 1, ties sharing their average rank (scipy's `rankdata(method="average")`).
pub fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0f64; xs.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && xs[idx[j + 1]] == xs[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson's correlation; NaN when either side is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let (ma, _) = mean_var(a);
    let (mb, _) = mean_var(b);
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma).powi(2);
        bb += (y - mb).powi(2);
    }
    if aa == 0.0 || bb == 0.0 {
        return f64::NAN;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Spearman's rank correlation (Pearson on average ranks, as scipy's `spearmanr`).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// A small seeded generator (xorshift64*) for resampling and shuffles: the same seed gives the
/// same draws on every platform, so links and tests reproduce.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// A random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.below(i + 1));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_spearman_match_scipy_on_ties() {
        // scipy.stats.rankdata([3, 1, 4, 1, 5]) = [3, 1.5, 4, 1.5, 5]
        assert_eq!(ranks(&[3.0, 1.0, 4.0, 1.0, 5.0]), vec![3.0, 1.5, 4.0, 1.5, 5.0]);
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [0, 0, 1, 1, 1]).statistic = 0.8660254037844387
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[0.0, 0.0, 1.0, 1.0, 1.0]);
        assert!((r - 0.8660254037844387).abs() < 1e-12, "{r}");
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
    }

    #[test]
    fn auroc_and_d() {
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auroc(&[1.0, 2.0], &[1.0, 2.0]), 0.5);
        assert!(auroc(&[], &[1.0]).is_nan());
        assert!(cohens_d(&[3.0, 4.0], &[1.0, 2.0]) > 2.0);
        let mut r = Rng::new(3);
        let p = r.permutation(10);
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        let m = (0..4000).map(|_| r.normal()).sum::<f64>() / 4000.0;
        assert!(m.abs() < 0.06, "mean of normals {m}");
    }
}
