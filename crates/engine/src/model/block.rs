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

/// Where a pass's rows come from.
pub enum Seq<'a, C> {
    /// One sequence, continuing `cache` at position `pos0`.
    Cached { cache: &'a mut C, pos0: usize },
    /// Independent sequences of these lengths, one after another, each from position 0 with
    /// no cache kept. Hooks may only keep every row here.
    Packed { lens: &'a [usize] },
}

/// [`hooks::run`], refusing in a packed pass what needs to know where a sequence starts (an
/// edit, a last-row copy) or comes before RoPE there (the query and key sites).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_hooks<B: Backend>(
    be: &B,
    hooks: Option<&(dyn Hooks + '_)>,
    kept: &mut Vec<Kept<B::Act>>,
    site: Site,
    layer: usize,
    packed: bool,
    pos0: usize,
    x: &mut B::Act,
    width: usize,
) -> Result<()> {
    if let (true, Some(h)) = (packed, hooks) {
        if h.wants(site, layer)
            && (matches!(site, Site::Query | Site::Key)
                || !h.edits(site, layer).is_empty()
                || h.keeps(site, layer).iter().any(|k| k.rows != hooks::Rows::All))
        {
            return Err(Error::Backend(format!(
                "a packed pass only captures whole rows ({site:?} at layer {layer})"
            )));
        }
    }
    hooks::run(be, hooks, kept, site, layer, pos0, x, width)
}

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
    seq: Seq<'_, B::KvCache>,
    layer: usize,
    hooks: Option<&(dyn Hooks + '_)>,
    kept: &mut Vec<Kept<B::Act>>,
) -> Result<()> {
    let (packed, pos0) = match &seq {
        Seq::Cached { pos0, .. } => (false, *pos0),
        Seq::Packed { .. } => (true, 0),
    };
    let run = |kept: &mut Vec<Kept<B::Act>>, site, x: &mut B::Act, width| {
        run_hooks(be, hooks, kept, site, layer, packed, pos0, x, width)
    };
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
        run(kept, Site::AttnIn, &mut h, d)?;
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
    let theta = cfg.rope_theta_at(layer);
    let rope = |q: &mut B::Act, k: &mut B::Act, pos0| {
        if b.rope == RopeStyle::None {
            return Ok(());
        }
        be.rope_qk(q, k, cfg.n_head, cfg.n_kv_head, hd, pos0, theta, b.rope)
    };
    if !packed {
        rope(&mut q, &mut k, pos0)?;
    }
    run(kept, Site::Query, &mut q, cfg.n_head * hd)?;
    run(kept, Site::Key, &mut k, cfg.n_kv_head * hd)?;
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
    let a = match seq {
        Seq::Cached { cache, .. } => be.attention(&q, &k, &v, cache, shape)?,
        // RoPE and attention per sequence, each from position 0 over its own keys.
        Seq::Packed { lens } => be.attention_packed(&q, &k, &v, lens, theta, b.rope, shape)?,
    };
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
            run(kept, Site::MlpIn, &mut h, d)?;
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
    run(kept, Site::Mlp, &mut a, cfg.d_ff)?;
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
