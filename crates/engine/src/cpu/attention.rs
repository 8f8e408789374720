//! Causal grouped-query attention over the KV cache, softmax in f32 with the max subtracted.

use super::kernels::Kernels;
use super::{par, CpuKv};
use crate::backend::AttnShape;

/// `q` holds `rows` new tokens (positions `pos0..pos0 + rows`, already in `cache`).
pub fn causal(k: &Kernels, q: &[f32], rows: usize, cache: &CpuKv, s: AttnShape) -> Vec<f32> {
    let (dot, axpy) = (k.dot_f32, k.axpy_f32);
    let hd = s.head_dim;
    let qw = s.n_head * hd;
    let group = s.n_head / s.n_kv_head;
    let scale = s.scale;
    let mut out = vec![0f32; rows * qw];
    // One task per (row, head): output slices of `hd` floats, disjoint.
    let jobs: Vec<(usize, &mut [f32])> = out.chunks_exact_mut(hd).enumerate().collect();
    let work = rows * s.n_head * (s.pos0 + rows) * hd;
    let run = |(idx, o): (usize, &mut [f32])| {
        let (i, h) = (idx / s.n_head, idx % s.n_head);
        let g = h / group;
        let p = s.pos0 + i;
        let qh = &q[i * qw + h * hd..i * qw + (h + 1) * hd];
        // Keys from the window's first position (sliding-window layers) to the query's own.
        let first = s.window.map_or(0, |w| (p + 1).saturating_sub(w));
        let mut sc: Vec<f32> = (first..=p)
            .map(|j| dot(qh, &cache.k[j * cache.width + g * hd..][..hd]) * scale)
            .collect();
        if let Some(cap) = s.softcap {
            sc.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        let mx = sc.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for v in sc.iter_mut() {
            *v = (*v - mx).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for (j, w) in (first..=p).zip(&sc) {
            let vj = &cache.v[j * cache.width + g * hd..][..hd];
            axpy(w * inv, vj, o);
        }
    };
    if work > 1 << 13 {
        par::for_each(jobs, run);
    } else {
        jobs.into_iter().for_each(run);
    }
    out
}
