//! Causal grouped-query attention over the KV cache, softmax in f32 with the max subtracted.

use super::kernels::Kernels;
use super::{par, CpuKv};
use crate::backend::AttnShape;

/// One query row of one head against keys and values `first..=last` of the cache.
pub struct Head<'a> {
    pub q: &'a [f32],
    pub cache: &'a CpuKv,
    /// Where this head's group starts in a cache row.
    pub off: usize,
    pub first: usize,
    pub last: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
}

/// A head's scores, softmax and weighted sum of values into `o` (`head_dim` floats, zeroed).
/// One call per (row, head), so each kernel set inlines its own dot and axpy into the loops.
pub type Attend = fn(&Head, &mut [f32]);

/// [`Attend`] over any dot and axpy (each kernel set instantiates it with its own, so the
/// results are those of the set's dot and axpy, call for call).
#[inline(always)]
pub fn attend_with(
    dot: impl Fn(&[f32], &[f32]) -> f32,
    axpy: impl Fn(f32, &[f32], &mut [f32]),
    h: &Head,
    o: &mut [f32],
) {
    let (hd, w, k) = (h.q.len(), h.cache.width, &h.cache.k);
    let mut sc: Vec<f32> =
        (h.first..=h.last).map(|j| dot(h.q, &k[j * w + h.off..][..hd]) * h.scale).collect();
    weigh_values(axpy, h, &mut sc, o);
}

/// The second half of [`Attend`], given the scaled scores of keys `first..=last`: the score cap,
/// the softmax (max subtracted) and the weighted sum of the values into `o`.
#[inline(always)]
pub fn weigh_values(
    axpy: impl Fn(f32, &[f32], &mut [f32]),
    h: &Head,
    sc: &mut [f32],
    o: &mut [f32],
) {
    let (hd, w, v) = (h.q.len(), h.cache.width, &h.cache.v);
    if let Some(cap) = h.softcap {
        sc.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
    }
    let mx = sc.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in sc.iter_mut() {
        *v = (*v - mx).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for (j, s) in (h.first..=h.last).zip(sc.iter()) {
        axpy(s * inv, &v[j * w + h.off..][..hd], o);
    }
}

pub fn attend_portable(h: &Head, o: &mut [f32]) {
    attend_with(super::vecops::dot_portable, super::vecops::axpy_portable, h, o)
}

/// `q` holds `rows` new tokens (positions `pos0..pos0 + rows`, already in `cache`).
pub fn causal(k: &Kernels, q: &[f32], rows: usize, cache: &CpuKv, s: AttnShape) -> Vec<f32> {
    let attend = k.attend;
    let hd = s.head_dim;
    let qw = s.n_head * hd;
    let group = s.n_head / s.n_kv_head;
    let mut out = vec![0f32; rows * qw];
    // One task per (row, head): output slices of `hd` floats, disjoint.
    let jobs: Vec<(usize, &mut [f32])> = out.chunks_exact_mut(hd).enumerate().collect();
    let work = rows * s.n_head * (s.pos0 + rows) * hd;
    let run = |(idx, o): (usize, &mut [f32])| {
        let (i, h) = (idx / s.n_head, idx % s.n_head);
        let p = s.pos0 + i;
        let head = Head {
            q: &q[i * qw + h * hd..i * qw + (h + 1) * hd],
            cache,
            off: (h / group) * hd,
            // Keys from the window's first position (sliding-window layers) to the query's own.
            first: s.window.map_or(0, |w| (p + 1).saturating_sub(w)),
            last: p,
            scale: s.scale,
            softcap: s.softcap,
        };
        attend(&head, o);
    };
    if work > 1 << 13 {
        par::for_each(jobs, run);
    } else {
        jobs.into_iter().for_each(run);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel set's attention against the portable one: key counts around the groups
    /// of four, a window, a score cap, head widths with and without a multiple of 4.
    #[test]
    fn every_kernel_sets_attention_matches_portable() {
        let mut seed = 0x2545_f491_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut worst = 0f32;
        for k in Kernels::available() {
            for hd in [64usize, 6] {
                let w = 3 * hd;
                let len = 13;
                let cache = CpuKv {
                    k: (0..len * w).map(|_| rnd() * 2.0).collect(),
                    v: (0..len * w).map(|_| rnd()).collect(),
                    width: w,
                };
                let q: Vec<f32> = (0..hd).map(|_| rnd()).collect();
                for (first, last, softcap) in
                    [(0, 0, None), (0, 3, None), (0, 12, None), (2, 9, Some(5.0)), (5, 12, None)]
                {
                    let h =
                        Head { q: &q, cache: &cache, off: hd, first, last, scale: 0.125, softcap };
                    let (mut a, mut b) = (vec![0f32; hd], vec![0f32; hd]);
                    (k.attend)(&h, &mut a);
                    attend_portable(&h, &mut b);
                    let e = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                    assert!(e < 1e-5, "{} hd {hd} keys {first}..={last}: max diff {e}", k.name);
                    worst = worst.max(e);
                }
            }
        }
        println!("attention, every kernel set vs portable: max diff {worst:e}");
    }
}
