//! Observable directions and their propagation through attention heads, after ObsProp
//! (Dunefsky & Cohan 2024, "Observable Propagation: Uncovering Feature Vectors in
//! Transformers").
//!
//! - The observable of a token pair (a, b) is the linear functional "logit of a minus logit of
//!   b", whose direction in the final residual stream is `n = W_U[a] - W_U[b]` (rows of the LM
//!   head); with the final norm's gain folded in, `y = g * n` lives in the residual stream
//!   before the norm (the norm's positive 1/rms scale aside). This is the direct path.
//! - The paper's point is propagating an observable through the model: an attention head h of
//!   block l adds `W_O^h W_V^h x` to the residual stream (x its normed input), so its
//!   contribution to the observable is `y . W_O^h W_V^h x = f_h . x` with the head's **feature
//!   vector** `f_h = W_V^h' W_O^h' y`; through the block's input norm gain g_l it is
//!   `g_l * f_h` in the (unit-rms) residual stream. Its norm says how strongly the head can
//!   write the observable; its cosine with a concept's direction at the block's input says
//!   whether the head reads the concept to write it.
//! - The coupling coefficient of two directions, `y1 . y2 / |y1|^2`, is how much moving along
//!   y1 moves the observable of y2.

use crate::{dot, Result};
use tiller_engine::{Backend, Model};

/// One attention head's feature vector for an observable.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HeadFeature {
    pub layer: usize,
    pub head: usize,
    /// `|g_l * W_V^h' W_O^h' y|`.
    pub norm: f64,
    /// The feature vector itself (residual-stream space, block l's normed input).
    #[serde(skip)]
    pub vector: Vec<f32>,
}

/// The feature vector of every attention head of every block for the observable `y` (the
/// output of [`observable`]).
pub async fn head_features<B: Backend>(model: &Model<B>, y: &[f32]) -> Result<Vec<HeadFeature>> {
    let cfg = &model.config;
    let (d, hd) = (cfg.d_model, cfg.head_dim);
    let mut out = Vec::with_capacity(cfg.n_layer * cfg.n_head);
    for (l, lw) in model.weights.layers.iter().enumerate() {
        // W_O' y: W_O is [d, n_head * hd]; its transpose read back is (n_head * hd) x d.
        let wo_t = model.dense_transposed(&lw.wo, cfg.n_head * hd).await?;
        let oy: Vec<f64> = wo_t
            .chunks_exact(d)
            .map(|r| r.iter().zip(y).map(|(a, b)| *a as f64 * *b as f64).sum())
            .collect();
        // W_V is [n_kv_head * hd, d]; its transpose read back is d x (n_kv_head * hd).
        let kv = cfg.n_kv_head * hd;
        let wv_t = model.dense_transposed(&lw.wv, d).await?;
        let group = cfg.n_head / cfg.n_kv_head.max(1);
        for h in 0..cfg.n_head {
            let g = h / group.max(1);
            let u = &oy[h * hd..(h + 1) * hd];
            let f: Vec<f32> = (0..d)
                .map(|i| {
                    let row = &wv_t[i * kv + g * hd..i * kv + (g + 1) * hd];
                    let s: f64 = row.iter().zip(u).map(|(a, b)| *a as f64 * b).sum();
                    (s * lw.attn_norm_host[i] as f64) as f32
                })
                .collect();
            let norm = f.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            out.push(HeadFeature { layer: l, head: h, norm, vector: f });
        }
    }
    Ok(out)
}

/// Cosine of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    crate::cosine(a, b)
}

/// `g * (W_U[a] - W_U[b])` for token ids a, b.
pub async fn observable<B: Backend>(model: &Model<B>, a: u32, b: u32) -> Result<Vec<f32>> {
    let head = model.weights.lm_head.as_ref().unwrap_or(&model.weights.embed);
    let rows = model.backend.embed(head, &[a, b])?;
    let h = model.backend.read(&[&rows]).await?.pop().unwrap_or_default();
    let d = model.config.d_model;
    Ok(h[..d]
        .iter()
        .zip(&h[d..])
        .zip(&model.weights.out_norm_host)
        .map(|((x, y), g)| (x - y) * g)
        .collect())
}

/// `y1 . y2 / |y1|^2`
pub fn coupling(y1: &[f32], y2: &[f32]) -> f64 {
    let n = dot(y1, y1) as f64;
    if n == 0.0 {
        return 0.0;
    }
    dot(y1, y2) as f64 / n
}

#[cfg(test)]
mod tests {
    #[test]
    fn coupling_of_a_direction_with_itself_is_one() {
        let y = [1.0f32, -2.0, 0.5];
        assert!((super::coupling(&y, &y) - 1.0).abs() < 1e-12);
        assert!((super::coupling(&y, &[2.0, -4.0, 1.0]) - 2.0).abs() < 1e-12);
        assert_eq!(super::coupling(&[0.0; 3], &y), 0.0);
    }
}
