//! One pre-norm transformer block, configured per family (`tiller_model::BlockConfig`):
//! `x += post(attn(norm(x)))`, then `x += post(mlp(norm(x)))`, where `post` is the identity
//! unless the family has the "sandwich" norms (Gemma), the q/k/v projections may carry biases
//! (Qwen 2), attention may normalise q and k per head (Gemma 3, Qwen 3) and attend through a
//! sliding window, and the MLP's gate is SiLU or GELU.

use super::LayerWeights;
use crate::backend::{AttnShape, Backend};
use crate::hooks::{self, Hooks, Site};
use tiller_model::{Activation, ModelConfig};

/// Block `layer` on `x` in place. `hooks` may read or edit the outputs of the two input norms
/// (what attention and the MLP read) and the MLP's hidden activation (the gated activation,
/// `d_ff` wide, the input of the down projection) when it asks for them. A hooked norm output
/// runs the norm and the products apart, so the hook sits between them; otherwise the backend
/// may fuse them.
#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend>(
    be: &B,
    cfg: &ModelConfig,
    w: &LayerWeights<B>,
    x: &mut B::Act,
    cache: &mut B::KvCache,
    pos0: usize,
    layer: usize,
    mut hooks: Option<&mut (dyn Hooks + '_)>,
) {
    let wants = |h: &Option<&mut (dyn Hooks + '_)>, site| {
        h.as_deref().is_some_and(|h| h.wants(site, layer))
    };
    let (d, hd, eps) = (cfg.d_model, cfg.head_dim, cfg.rms_eps);
    let b = &cfg.block;
    // Attention: QKV projection (fused with the norm when nothing hooks it), q/k norms, RoPE,
    // causal GQA over the cache.
    let qkv = [&w.wq, &w.wk, &w.wv];
    let qkv = if wants(&hooks, Site::AttnIn) {
        let mut h = be.rms_norm(x, &w.attn_norm, eps);
        hooks::run(be, hooks.as_deref_mut(), Site::AttnIn, layer, pos0, &mut h, d);
        be.matmul(&h, &qkv)
    } else {
        be.attn_in(x, &w.attn_norm, eps, &qkv)
    };
    let mut qkv = qkv.into_iter();
    let (Some(mut q), Some(mut k), Some(mut v)) = (qkv.next(), qkv.next(), qkv.next()) else {
        return;
    };
    if let Some([bq, bk, bv]) = &w.qkv_bias {
        be.add_bias(&mut q, bq);
        be.add_bias(&mut k, bk);
        be.add_bias(&mut v, bv);
    }
    if let (Some(qn), Some(kn)) = (&w.q_norm, &w.k_norm) {
        q = be.rms_norm_groups(&q, qn, hd, eps);
        k = be.rms_norm_groups(&k, kn, hd, eps);
    }
    let theta = cfg.rope_theta_at(layer);
    be.rope_qk(&mut q, &mut k, cfg.n_head, cfg.n_kv_head, hd, pos0, theta, b.rope);
    let window = if cfg.is_swa(layer) { b.sliding_window } else { None };
    let shape =
        AttnShape { n_head: cfg.n_head, n_kv_head: cfg.n_kv_head, head_dim: hd, pos0, window };
    let a = be.attention(&q, &k, &v, cache, shape);
    match &w.post_attn_norm {
        Some(pn) => {
            if let Some(o) = be.matmul(&a, &[&w.wo]).pop() {
                be.add_assign(x, &be.rms_norm(&o, pn, eps));
            }
        }
        None => be.matmul_add(&a, &w.wo, x),
    }
    // Gated MLP: gate/up projection (fused with the norm and SwiGLU when nothing hooks the
    // norm's output and the gate is SiLU).
    let mut a = if wants(&hooks, Site::MlpIn) || b.activation != Activation::Silu {
        let mut h = be.rms_norm(x, &w.ffn_norm, eps);
        hooks::run(be, hooks.as_deref_mut(), Site::MlpIn, layer, pos0, &mut h, d);
        let mut gu = be.matmul(&h, &[&w.gate, &w.up]).into_iter();
        let (Some(g), Some(u)) = (gu.next(), gu.next()) else { return };
        match b.activation {
            Activation::Silu => be.swiglu(&g, &u),
            Activation::GeluTanh => be.geglu(&g, &u),
        }
    } else {
        be.mlp_in(x, &w.ffn_norm, eps, &w.gate, &w.up)
    };
    hooks::run(be, hooks, Site::Mlp, layer, pos0, &mut a, cfg.d_ff);
    match &w.post_ffw_norm {
        Some(pn) => {
            if let Some(o) = be.matmul(&a, &[&w.down]).pop() {
                be.add_assign(x, &be.rms_norm(&o, pn, eps));
            }
        }
        None => be.matmul_add(&a, &w.down, x),
    }
}
