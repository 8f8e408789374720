//! One pre-norm Llama block: `x += attn(rms(x))`, then `x += mlp(rms(x))`.

use super::LayerWeights;
use crate::backend::{AttnShape, Backend};
use crate::hooks::Hooks;
use tiller_model::LlamaConfig;

/// Block `layer` on `x` in place. `hooks` may read or edit the MLP's hidden activation
/// (SwiGLU output, `d_ff` wide, the input of the down projection) when it asks for it.
#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend>(
    be: &B,
    cfg: &LlamaConfig,
    w: &LayerWeights<B>,
    x: &mut B::Act,
    cache: &mut B::KvCache,
    pos0: usize,
    layer: usize,
    hooks: Option<&mut (dyn Hooks + '_)>,
) {
    // Attention: fused QKV projection, RoPE on q and k, causal GQA over the cache.
    let mut qkv = be.attn_in(x, &w.attn_norm, cfg.rms_eps, &[&w.wq, &w.wk, &w.wv]).into_iter();
    let (Some(mut q), Some(mut k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
        return;
    };
    be.rope_qk(&mut q, &mut k, cfg.n_head, cfg.n_kv_head, cfg.head_dim, pos0, cfg.rope_theta);
    let shape =
        AttnShape { n_head: cfg.n_head, n_kv_head: cfg.n_kv_head, head_dim: cfg.head_dim, pos0 };
    let a = be.attention(&q, &k, &v, cache, shape);
    be.matmul_add(&a, &w.wo, x);
    // SwiGLU MLP: fused gate/up projection.
    let mut a = be.mlp_in(x, &w.ffn_norm, cfg.rms_eps, &w.gate, &w.up);
    if let Some(h) = hooks {
        if h.mlp_active(layer) {
            let width = cfg.d_ff;
            be.with_host(&mut a, &mut |r| h.mlp_activation(layer, pos0, r, width));
        }
    }
    be.matmul_add(&a, &w.down, x);
}
