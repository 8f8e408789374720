//! One pre-norm transformer block, configured per family (`tiller_model::BlockConfig`):
//! `x += post(attn(norm(x)))`, then `x += post(mlp(norm(x)))`, where `post` is the identity
//! unless the family has the "sandwich" norms (Gemma), the q/k/v projections may carry biases
//! (Qwen 2), attention may normalise q and k per head (Gemma 3, Qwen 3) and attend through a
//! sliding window (with Gemma 2's score soft-capping), the MLP's gate is SiLU or GELU or absent
//! (GPT-2), and the norms are RMSNorm or LayerNorm with biases (GPT-2, which also has biases on
//! every projection).

use super::LayerWeights;
use crate::backend::{AttnShape, Backend};
use crate::hooks::{self, Hooks, Kept, Site};
use crate::{Error, Result};
use tiller_model::{Activation, ModelConfig, RopeStyle};

/// Block `layer` on `x` in place. `hooks` may edit or keep the outputs of the two input norms
/// (what attention and the MLP read) and the MLP's hidden activation (the gated activation,
/// `d_ff` wide, the input of the down projection) when it asks for them; kept copies go to
/// `kept`. A hooked norm output runs the norm and the products apart, so the hook sits between
/// them; otherwise the backend may fuse them.
#[allow(clippy::too_many_arguments)]
pub fn forward<B: Backend>(
    be: &B,
    cfg: &ModelConfig,
    w: &LayerWeights<B>,
    x: &mut B::Act,
    cache: &mut B::KvCache,
    pos0: usize,
    layer: usize,
    hooks: Option<&(dyn Hooks + '_)>,
    kept: &mut Vec<Kept<B::Act>>,
) -> Result<()> {
    let wants = |site| hooks.is_some_and(|h| h.wants(site, layer));
    let (d, hd, eps) = (cfg.d_model, cfg.head_dim, cfg.rms_eps);
    let b = &cfg.block;
    let norm = |x: &B::Act, w: &B::Vector, bias: &Option<B::Vector>| match bias {
        Some(bias) => be.layer_norm(x, w, bias, eps),
        None => be.rms_norm(x, w, eps),
    };
    // Attention: QKV projection (fused with the norm when nothing hooks it and the norm is
    // RMSNorm), biases, q/k norms, RoPE, causal GQA over the cache.
    let qkv = [&w.wq, &w.wk, &w.wv];
    let qkv = if wants(Site::AttnIn) || w.attn_norm_b.is_some() {
        let mut h = norm(x, &w.attn_norm, &w.attn_norm_b)?;
        hooks::run(be, hooks, kept, Site::AttnIn, layer, pos0, &mut h, d)?;
        be.matmul(&h, &qkv)?
    } else {
        be.attn_in(x, &w.attn_norm, eps, &qkv)?
    };
    let mut qkv = qkv.into_iter();
    let (Some(mut q), Some(mut k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
        return Err(Error::Backend("the q/k/v products returned too little".into()));
    };
    let mut v = v;
    if let Some([bq, bk, bv]) = &w.qkv_bias {
        be.add_bias(&mut q, bq)?;
        be.add_bias(&mut k, bk)?;
        be.add_bias(&mut v, bv)?;
    }
    if let (Some(qn), Some(kn)) = (&w.q_norm, &w.k_norm) {
        q = be.rms_norm_groups(&q, qn, hd, eps)?;
        k = be.rms_norm_groups(&k, kn, hd, eps)?;
    }
    if b.rope != RopeStyle::None {
        let theta = cfg.rope_theta_at(layer);
        be.rope_qk(&mut q, &mut k, cfg.n_head, cfg.n_kv_head, hd, pos0, theta, b.rope)?;
    }
    hooks::run(be, hooks, kept, Site::Query, layer, pos0, &mut q, cfg.n_head * hd)?;
    hooks::run(be, hooks, kept, Site::Key, layer, pos0, &mut k, cfg.n_kv_head * hd)?;
    let window = if cfg.is_swa(layer) { b.sliding_window } else { None };
    let shape = AttnShape {
        n_head: cfg.n_head,
        n_kv_head: cfg.n_kv_head,
        head_dim: hd,
        pos0,
        window,
        scale: b.query_scale.unwrap_or(1.0 / (hd as f32).sqrt()),
        softcap: b.attn_softcap,
    };
    let a = be.attention(&q, &k, &v, cache, shape)?;
    project_out(be, &a, &w.wo, &w.wo_b, &w.post_attn_norm, eps, x)?;
    // MLP: gate/up projection (fused with the norm and SwiGLU when nothing hooks the norm's
    // output, the norm is RMSNorm and the gate is SiLU), or GPT-2's ungated `gelu(up)`.
    let fused = !wants(Site::MlpIn)
        && b.activation == Activation::Silu
        && w.ffn_norm_b.is_none()
        && w.up_b.is_none();
    let mut a = match &w.gate {
        Some(gate) if fused => be.mlp_in(x, &w.ffn_norm, eps, gate, &w.up)?,
        gate => {
            let mut h = norm(x, &w.ffn_norm, &w.ffn_norm_b)?;
            hooks::run(be, hooks, kept, Site::MlpIn, layer, pos0, &mut h, d)?;
            let ws: Vec<&B::Matrix> = gate.iter().chain([&w.up]).collect();
            let mut gu = be.matmul(&h, &ws)?;
            let Some(mut u) = gu.pop() else {
                return Err(Error::Backend("the up product returned nothing".into()));
            };
            if let Some(ub) = &w.up_b {
                be.add_bias(&mut u, ub)?;
            }
            match (gu.pop(), b.activation) {
                (None, _) => be.gelu(&u)?,
                (Some(g), Activation::Silu) => be.swiglu(&g, &u)?,
                (Some(g), Activation::GeluTanh) => be.geglu(&g, &u)?,
            }
        }
    };
    hooks::run(be, hooks, kept, Site::Mlp, layer, pos0, &mut a, cfg.d_ff)?;
    project_out(be, &a, &w.down, &w.down_b, &w.post_ffw_norm, eps, x)
}

/// `x += post(a @ w.T + bias)`: an output projection into the residual stream, with its bias
/// and sandwich norm when the family has them (otherwise one fused product-and-add).
fn project_out<B: Backend>(
    be: &B,
    a: &B::Act,
    w: &B::Matrix,
    bias: &Option<B::Vector>,
    post: &Option<B::Vector>,
    eps: f32,
    x: &mut B::Act,
) -> Result<()> {
    if bias.is_none() && post.is_none() {
        return be.matmul_add(a, w, x);
    }
    let Some(mut o) = be.matmul(a, &[w])?.pop() else {
        return Err(Error::Backend("the output product returned nothing".into()));
    };
    if let Some(b) = bias {
        be.add_bias(&mut o, b)?;
    }
    match post {
        Some(pn) => be.add_assign(x, &be.rms_norm(&o, pn, eps)?),
        None => be.add_assign(x, &o),
    }
}
