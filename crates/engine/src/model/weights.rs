//! Weights of a model on a backend: the Llama layout, plus the norms, biases and position
//! table some families add.

use crate::backend::{Backend, Precision};
use crate::Result;
use tiller_model::{Gguf, ModelConfig};

pub struct LayerWeights<B: Backend> {
    pub attn_norm: B::Vector,
    /// LayerNorm biases of the two input norms (`NormKind::Layer`: GPT-2).
    pub attn_norm_b: Option<B::Vector>,
    pub ffn_norm_b: Option<B::Vector>,
    /// Biases of the attention output and the MLP's up and down products
    /// (`BlockConfig::out_biases`).
    pub wo_b: Option<B::Vector>,
    pub up_b: Option<B::Vector>,
    pub down_b: Option<B::Vector>,
    /// The attention-input norm's gain on the host (for analysis: ObsProp's head features).
    pub attn_norm_host: Vec<f32>,
    pub wq: B::Matrix,
    pub wk: B::Matrix,
    pub wv: B::Matrix,
    pub wo: B::Matrix,
    pub ffn_norm: B::Vector,
    /// `None` for an ungated MLP (`act(up)`: GPT-2).
    pub gate: Option<B::Matrix>,
    pub up: B::Matrix,
    pub down: B::Matrix,
    /// Biases of the q, k and v projections (`BlockConfig::qkv_bias`).
    pub qkv_bias: Option<[B::Vector; 3]>,
    /// Per-head RMSNorm gains of q and k (`BlockConfig::qk_norm`).
    pub q_norm: Option<B::Vector>,
    pub k_norm: Option<B::Vector>,
    /// RMSNorm gains of the attention and MLP outputs (`BlockConfig::post_norms`).
    pub post_attn_norm: Option<B::Vector>,
    pub post_ffw_norm: Option<B::Vector>,
}

pub struct Weights<B: Backend> {
    pub embed: B::Matrix,
    pub out_norm: B::Vector,
    /// The final LayerNorm's bias (GPT-2).
    pub out_norm_b: Option<B::Vector>,
    /// Learned absolute position embeddings (GPT-2), a row per position.
    pub pos_embd: Option<B::Matrix>,
    /// The final norm's gain on the host (for analysis: unembedding a direction).
    pub out_norm_host: Vec<f32>,
    /// `None` when the embedding is tied and doubles as the LM head.
    pub lm_head: Option<B::Matrix>,
    pub layers: Vec<LayerWeights<B>>,
}

impl<B: Backend> Weights<B> {
    pub fn load(
        g: &Gguf,
        bytes: &[u8],
        cfg: &ModelConfig,
        be: &B,
        precision: Precision,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let total = 3 + cfg.n_layer;
        // `ModelConfig::from_gguf` has checked that every tensor exists with the right dims.
        let info = |name: &str| {
            g.tensor(name)
                .ok_or_else(|| tiller_model::Error::Shape(format!("tensor `{name}` is missing")))
        };
        let mat = |name: &str| -> Result<B::Matrix> {
            let t = info(name)?;
            be.matrix(t, g.data(bytes, t)?, precision)
        };
        let vec = |name: &str| -> Result<B::Vector> {
            let t = info(name)?;
            be.vector(tiller_model::gguf::dequantize(t, g.data(bytes, t)?)?)
        };
        let host = |name: &str| -> Result<Vec<f32>> {
            let t = info(name)?;
            Ok(tiller_model::gguf::dequantize(t, g.data(bytes, t)?)?)
        };
        let bias = |l: usize, s: &str| vec(&format!("blk.{l}.{s}.bias"));
        let layer_norm = cfg.block.norm == tiller_model::NormKind::Layer;
        let out_b = cfg.block.out_biases;
        // Rows `first..first + n` of a matrix (a fused tensor's part): every row is a whole
        // number of blocks, so the part is a contiguous slice of the stored bytes.
        let part = |name: &str, first: usize, n: usize| -> Result<B::Matrix> {
            let t = info(name)?;
            let data = g.data(bytes, t)?;
            let (el, by) = t.dtype.block();
            let inner = t.dims.first().copied().unwrap_or(0);
            let row = (inner / el.max(1) * by) as usize;
            let (a, b) = (first * row, (first + n) * row);
            if inner % el.max(1) != 0 || b > data.len() {
                return Err(tiller_model::Error::Shape(format!(
                    "tensor `{name}`: rows {first}..{} are not whole blocks inside it",
                    first + n
                ))
                .into());
            }
            let sub = tiller_model::TensorInfo {
                name: format!("{name}[{first}..{}]", first + n),
                dims: vec![inner, n as u64],
                dtype: t.dtype,
                start: t.start + a,
                n_bytes: b - a,
            };
            be.matrix(&sub, &data[a..b], precision)
        };
        let (q_rows, kv_rows, ff) =
            (cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim, cfg.d_ff);
        let embed = mat("token_embd.weight")?;
        progress(1, total);
        let out_norm_host = {
            let t = info("output_norm.weight")?;
            tiller_model::gguf::dequantize(t, g.data(bytes, t)?)?
        };
        let out_norm = be.vector(out_norm_host.clone())?;
        let out_norm_b = layer_norm.then(|| vec("output_norm.bias")).transpose()?;
        let pos_embd = cfg.block.pos_embed.then(|| mat("position_embd.weight")).transpose()?;
        let lm_head = if cfg.tied_embeddings { None } else { Some(mat("output.weight")?) };
        progress(3, total);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let attn_norm_host = {
                let t = info(&n("attn_norm"))?;
                tiller_model::gguf::dequantize(t, g.data(bytes, t)?)?
            };
            let qkv_bias = match (cfg.block.qkv_bias, cfg.block.fused_qkv) {
                (false, _) => None,
                (true, false) => Some([bias(l, "attn_q")?, bias(l, "attn_k")?, bias(l, "attn_v")?]),
                (true, true) => {
                    // One bias for the fused product, split as its rows are.
                    let b = host(&format!("blk.{l}.attn_qkv.bias"))?;
                    let (q, k) = (b[..q_rows].to_vec(), b[q_rows..q_rows + kv_rows].to_vec());
                    let v = b[q_rows + kv_rows..].to_vec();
                    Some([be.vector(q)?, be.vector(k)?, be.vector(v)?])
                }
            };
            layers.push(LayerWeights {
                attn_norm: be.vector(attn_norm_host.clone())?,
                attn_norm_b: layer_norm.then(|| bias(l, "attn_norm")).transpose()?,
                ffn_norm_b: layer_norm.then(|| bias(l, "ffn_norm")).transpose()?,
                wo_b: out_b.then(|| bias(l, "attn_output")).transpose()?,
                up_b: out_b.then(|| bias(l, "ffn_up")).transpose()?,
                down_b: out_b.then(|| bias(l, "ffn_down")).transpose()?,
                attn_norm_host,
                wq: match cfg.block.fused_qkv {
                    true => part(&n("attn_qkv"), 0, q_rows)?,
                    false => mat(&n("attn_q"))?,
                },
                wk: match cfg.block.fused_qkv {
                    true => part(&n("attn_qkv"), q_rows, kv_rows)?,
                    false => mat(&n("attn_k"))?,
                },
                wv: match cfg.block.fused_qkv {
                    true => part(&n("attn_qkv"), q_rows + kv_rows, kv_rows)?,
                    false => mat(&n("attn_v"))?,
                },
                wo: mat(&n("attn_output"))?,
                ffn_norm: vec(&n("ffn_norm"))?,
                gate: match (cfg.block.gated, cfg.block.fused_gate_up) {
                    (false, _) => None,
                    (true, true) => Some(part(&n("ffn_up"), 0, ff)?),
                    (true, false) => Some(mat(&n("ffn_gate"))?),
                },
                up: match cfg.block.gated && cfg.block.fused_gate_up {
                    true => part(&n("ffn_up"), ff, ff)?,
                    false => mat(&n("ffn_up"))?,
                },
                down: mat(&n("ffn_down"))?,
                qkv_bias,
                q_norm: cfg.block.qk_norm.then(|| vec(&n("attn_q_norm"))).transpose()?,
                k_norm: cfg.block.qk_norm.then(|| vec(&n("attn_k_norm"))).transpose()?,
                post_attn_norm: cfg
                    .block
                    .post_norms
                    .then(|| vec(&n("post_attention_norm")))
                    .transpose()?,
                post_ffw_norm: cfg
                    .block
                    .post_norms
                    .then(|| vec(&n("post_ffw_norm")))
                    .transpose()?,
            });
            progress(4 + l, total);
        }
        Ok(Weights { embed, out_norm, out_norm_b, pos_embd, out_norm_host, lm_head, layers })
    }
}
