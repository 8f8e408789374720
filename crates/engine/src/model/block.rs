//! One pre-norm Llama block: `x += attn(rms(x))`, then `x += mlp(rms(x))`.

use super::LayerWeights;
use crate::backend::{AttnShape, Backend};
use crate::hooks::{self, Hooks, Site};
use tiller_model::LlamaConfig;

/// Block `layer` on `x` in place. `hooks` may read or edit the outputs of the two input norms
/// (what attention and the MLP read) and the MLP's hidden activation (SwiGLU output, `d_ff`
/// wide, the input of the down projection) when it asks for them. A hooked norm output runs
/// the norm and the products apart, so the hook sits between them; otherwise the backend may
/// fuse them.
#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend>(
    be: &B,
    cfg: &LlamaConfig,
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
    let d = cfg.d_model;
    // Attention: QKV projection (fused with the norm when nothing hooks it), RoPE on q and k,
    // causal GQA over the cache.
    let qkv = [&w.wq, &w.wk, &w.wv];
    let qkv = if wants(&hooks, Site::AttnIn) {
        let mut h = be.rms_norm(x, &w.attn_norm, cfg.rms_eps);
        hooks::run(be, hooks.as_deref_mut(), Site::AttnIn, layer, pos0, &mut h, d);
        be.matmul(&h, &qkv)
    } else {
        be.attn_in(x, &w.attn_norm, cfg.rms_eps, &qkv)
    };
    let mut qkv = qkv.into_iter();
    let (Some(mut q), Some(mut k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
        return;
    };
    be.rope_qk(&mut q, &mut k, cfg.n_head, cfg.n_kv_head, cfg.head_dim, pos0, cfg.rope_theta);
    let shape =
        AttnShape { n_head: cfg.n_head, n_kv_head: cfg.n_kv_head, head_dim: cfg.head_dim, pos0 };
    let a = be.attention(&q, &k, &v, cache, shape);
    be.matmul_add(&a, &w.wo, x);
    // SwiGLU MLP: gate/up projection (fused with the norm when nothing hooks it).
    let mut a = if wants(&hooks, Site::MlpIn) {
        let mut h = be.rms_norm(x, &w.ffn_norm, cfg.rms_eps);
        hooks::run(be, hooks.as_deref_mut(), Site::MlpIn, layer, pos0, &mut h, d);
        let mut gu = be.matmul(&h, &[&w.gate, &w.up]).into_iter();
        let (Some(g), Some(u)) = (gu.next(), gu.next()) else { return };
        be.swiglu(&g, &u)
    } else {
        be.mlp_in(x, &w.ffn_norm, cfg.rms_eps, &w.gate, &w.up)
    };
    hooks::run(be, hooks, Site::Mlp, layer, pos0, &mut a, cfg.d_ff);
    be.matmul_add(&a, &w.down, x);
}
