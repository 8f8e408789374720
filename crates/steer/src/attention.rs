//! Attention patterns: each head's attention weights at one layer, recomputed from the
//! queries and keys the forward pass used (after biases, q/k norms and RoPE, read through
//! the [`Site::Query`] and [`Site::Key`] hooks) with the block's own scale, soft-cap, causal
//! mask and sliding window, as the backends' attention computes them.

use crate::{Error, Result};
use tiller_engine::{Backend, Capture, LogitsFor, Model, Site};

/// One layer's attention: `heads[h][q * n + k]` is the weight query position `q` gives key
/// position `k` in head `h` (0 for `k > q` and outside a sliding window).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Patterns {
    pub layer: usize,
    pub n: usize,
    pub heads: Vec<Vec<f32>>,
}

pub async fn patterns<B: Backend>(model: &Model<B>, ids: &[u32], layer: usize) -> Result<Patterns> {
    let cfg = &model.config;
    if layer >= cfg.n_layer {
        return Err(Error::Layer { layer, max: cfg.n_layer - 1 });
    }
    let mut caps = vec![Capture::at(Site::Query, [layer]), Capture::at(Site::Key, [layer])];
    model.session().forward(ids, Some(&mut caps), LogitsFor::Hooks).await?;
    let (q, k) = (&caps[0].rows[0], &caps[1].rows[0]);
    let (n, hd, nh, nkv) = (ids.len(), cfg.head_dim, cfg.n_head, cfg.n_kv_head);
    if q.len() != n * nh * hd || k.len() != n * nkv * hd {
        return Err(Error::Intervention("the queries and keys were not captured whole".into()));
    }
    let b = &cfg.block;
    let scale = b.query_scale.unwrap_or(1.0 / (hd as f32).sqrt());
    let window = if cfg.is_swa(layer) { b.sliding_window } else { None };
    let group = nh / nkv.max(1);
    let mut heads = vec![vec![0f32; n * n]; nh];
    for (h, out) in heads.iter_mut().enumerate() {
        let g = h / group.max(1);
        for i in 0..n {
            let qh = &q[(i * nh + h) * hd..][..hd];
            let first = window.map_or(0, |w| (i + 1).saturating_sub(w));
            let mut sc: Vec<f32> = (first..=i)
                .map(|j| {
                    let kh = &k[(j * nkv + g) * hd..][..hd];
                    qh.iter().zip(kh).map(|(a, b)| a * b).sum::<f32>() * scale
                })
                .collect();
            if let Some(cap) = b.attn_softcap {
                sc.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
            }
            let mx = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = sc.iter().map(|v| (v - mx).exp()).collect();
            let z: f32 = e.iter().sum();
            for (j, x) in (first..=i).zip(e) {
                out[i * n + j] = x / z;
            }
        }
    }
    Ok(Patterns { layer, n, heads })
}
