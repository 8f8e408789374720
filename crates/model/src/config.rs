//! Hyper-parameters from GGUF metadata (`{arch}.*` keys), validated against the tensors present
//! so that a file that lies about its shapes fails at load with a message.
//!
//! One forward pass serves every family: what differs between them is data, a [`BlockConfig`]
//! (RoPE style, per-head q/k norms, the "sandwich" norms after attention and the MLP, the MLP's
//! activation, the embedding scale, sliding-window layers and their RoPE base), read here per
//! architecture the way llama.cpp's `llama-model.cpp` reads it.

use crate::{Error, GgmlType, Gguf, Result};

/// Architectures whose GGUF tensors follow the Llama layout.
pub const LLAMA_FAMILY: &[&str] = &["llama", "mistral", "granite"];
/// Every architecture this build runs.
pub const SUPPORTED: &[&str] =
    &["llama", "mistral", "granite", "gemma3", "gemma2", "qwen2", "qwen3", "phi3", "gpt2"];

/// How rotary embeddings pair a head's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i + 1): ggml's "normal" mode, which GGUF Llama weights use.
    #[default]
    Normal,
    /// Halves (i, i + d/2): ggml's NEOX mode (Gemma, Qwen, Phi-3, GPT-NeoX).
    Neox,
    /// No rotary embedding: learned absolute positions instead (GPT-2).
    None,
}

/// The normalisation before attention, before the MLP and at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// `x / rms(x) * w`.
    #[default]
    Rms,
    /// `(x - mean) / sd * w + b` (GPT-2): every norm has a bias tensor.
    Layer,
}

/// The MLP's gated activation: `act(gate) * up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SiLU (SwiGLU): Llama, Qwen, Phi-3.
    #[default]
    Silu,
    /// GELU, tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// What a family's block looks like, beyond the shapes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BlockConfig {
    pub rope: RopeStyle,
    pub norm: NormKind,
    pub activation: Activation,
    /// The MLP is `act(gate) * up` (every family but GPT-2), or `act(up)` with no gate.
    pub gated: bool,
    /// Learned absolute position embeddings added to the token embeddings (`position_embd`:
    /// GPT-2).
    pub pos_embed: bool,
    /// Biases on the attention output and the MLP's up and down projections (GPT-2).
    pub out_biases: bool,
    /// Attention scores are `cap * tanh(s / cap)` before the softmax (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Logits are `cap * tanh(l / cap)` (Gemma 2).
    pub final_softcap: Option<f32>,
    /// The query scale, when it is not `1 / sqrt(head_dim)` (Gemma 2 27B).
    pub query_scale: Option<f32>,
    /// Per-head RMSNorm of q and k before RoPE (`attn_q_norm`, `attn_k_norm`: Gemma 3, Qwen 3).
    pub qk_norm: bool,
    /// Biases on the q, k and v projections (`attn_q.bias`...: Qwen 2).
    pub qkv_bias: bool,
    /// q, k and v in one tensor (`attn_qkv`, rows q then k then v: Phi-3), split at load.
    pub fused_qkv: bool,
    /// Gate and up in one tensor (`ffn_up`, 2 x d_ff rows, the gate first: Phi-3), split at
    /// load.
    pub fused_gate_up: bool,
    /// RMSNorm of the attention and MLP outputs before they join the residual stream
    /// (`post_attention_norm`, `post_ffw_norm`: Gemma 2 and 3).
    pub post_norms: bool,
    /// The token embedding is multiplied by this (Gemma: sqrt(d_model)).
    pub embed_scale: Option<f32>,
    /// Sliding-window attention: a query attends to at most this many positions (itself
    /// included) on the layers [`ModelConfig::is_swa`] names.
    pub sliding_window: Option<usize>,
    /// Layer l uses the sliding window when `l % swa_pattern < swa_pattern - 1` (Gemma 3: 6,
    /// every sixth layer global); 0 = every layer global.
    pub swa_pattern: usize,
    /// RoPE base of the sliding-window layers (Gemma 3: 10 000; the global layers use
    /// `rope_theta`).
    pub rope_theta_swa: f32,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            rope: RopeStyle::Normal,
            norm: NormKind::Rms,
            activation: Activation::Silu,
            gated: true,
            pos_embed: false,
            out_biases: false,
            attn_softcap: None,
            final_softcap: None,
            query_scale: None,
            qk_norm: false,
            qkv_bias: false,
            fused_qkv: false,
            fused_gate_up: false,
            post_norms: false,
            embed_scale: None,
            sliding_window: None,
            swa_pattern: 0,
            rope_theta_swa: 10000.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub architecture: String,
    pub n_layer: usize,
    pub d_model: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub vocab: usize,
    pub context_length: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// True when there is no `output.weight` and the token embedding doubles as the LM head.
    pub tied_embeddings: bool,
    pub block: BlockConfig,
}

/// Upper bounds that keep a hostile header from asking for absurd buffers.
const MAX_LAYERS: u64 = 1024;
const MAX_WIDTH: u64 = 1 << 16;
const MAX_CONTEXT: u64 = 1 << 20;

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.architecture()?.to_string();
        if !SUPPORTED.contains(&arch.as_str()) {
            return Err(Error::Unsupported(format!(
                "architecture `{arch}`: this build of Tiller runs {}",
                SUPPORTED.join(", ")
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let bounded = |k: &str, max: u64| -> Result<usize> {
            let v = g.u64(&key(k))?;
            if v == 0 || v > max {
                return Err(Error::Shape(format!("{} = {v} is out of range 1..={max}", key(k))));
            }
            Ok(v as usize)
        };
        let n_layer = bounded("block_count", MAX_LAYERS)?;
        let d_model = bounded("embedding_length", MAX_WIDTH)?;
        let n_head = bounded("attention.head_count", MAX_WIDTH)?;
        let n_kv_head = match g.get(&key("attention.head_count_kv")) {
            Some(_) => bounded("attention.head_count_kv", MAX_WIDTH)?,
            None => n_head,
        };
        let d_ff = bounded("feed_forward_length", MAX_WIDTH * 4)?;
        let context_length = match g.get(&key("context_length")) {
            Some(_) => bounded("context_length", MAX_CONTEXT)?,
            None => 2048,
        };
        let rope_theta =
            g.get(&key("rope.freq_base")).and_then(|v| v.as_f64()).unwrap_or(10000.0) as f32;
        let rms_eps = match g.get(&key("attention.layer_norm_rms_epsilon")) {
            Some(_) => g.f64(&key("attention.layer_norm_rms_epsilon"))?,
            // LayerNorm families (GPT-2) name their epsilon so.
            None => g.f64(&key("attention.layer_norm_epsilon"))?,
        } as f32;
        if d_model % n_head != 0 || n_head % n_kv_head != 0 {
            return Err(Error::Shape(format!(
                "embedding_length {d_model}, head_count {n_head}, head_count_kv {n_kv_head}: heads must divide evenly"
            )));
        }
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(v) => v.as_u64().unwrap_or(0) as usize,
            None => d_model / n_head,
        };
        if head_dim == 0 || head_dim % 2 != 0 || head_dim > 1024 {
            return Err(Error::Shape(format!(
                "head dimension {head_dim} must be even and at most 1024"
            )));
        }
        if !(rope_theta.is_finite() && rope_theta > 0.0 && rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(Error::Shape(format!(
                "rope.freq_base {rope_theta} or rms epsilon {rms_eps} is invalid"
            )));
        }
        let emb = g
            .tensor("token_embd.weight")
            .ok_or_else(|| Error::Shape("tensor `token_embd.weight` is missing".into()))?;
        let vocab = emb.dims.get(1).copied().unwrap_or(0) as usize;
        let tied_embeddings = g.tensor("output.weight").is_none();
        let block = match arch.as_str() {
            "gemma3" => {
                let window = match g.get(&key("attention.sliding_window")) {
                    Some(_) => Some(bounded("attention.sliding_window", MAX_CONTEXT)?),
                    None => None,
                };
                BlockConfig {
                    rope: RopeStyle::Neox,
                    activation: Activation::GeluTanh,
                    qk_norm: true,
                    post_norms: true,
                    embed_scale: Some((d_model as f32).sqrt()),
                    sliding_window: window,
                    // llama.cpp: hparams.set_swa_pattern(6), rope_freq_base_train_swa = 10000.
                    swa_pattern: if window.is_some() { 6 } else { 0 },
                    rope_theta_swa: 10000.0,
                    ..Default::default()
                }
            }
            "gemma2" => {
                // llama.cpp's defaults where the file is silent: a 4096 window, caps 50 and 30.
                let window = match g.get(&key("attention.sliding_window")) {
                    Some(_) => bounded("attention.sliding_window", MAX_CONTEXT)?,
                    None => 4096,
                };
                let cap = |k: &str, default: f32| {
                    let c = g.get(&key(k)).and_then(|v| v.as_f64()).map(|c| c as f32);
                    Some(c.filter(|c| *c > 0.0).unwrap_or(default))
                };
                BlockConfig {
                    rope: RopeStyle::Neox,
                    activation: Activation::GeluTanh,
                    post_norms: true,
                    embed_scale: Some((d_model as f32).sqrt()),
                    attn_softcap: cap("attn_logit_softcapping", 50.0),
                    final_softcap: cap("final_logit_softcapping", 30.0),
                    // llama.cpp: 1 / sqrt(n_embd / n_head) for the 27B (46 layers), else the
                    // head width's.
                    query_scale: (n_layer == 46).then(|| 1.0 / ((d_model / n_head) as f32).sqrt()),
                    sliding_window: Some(window),
                    // llama.cpp: hparams.set_swa_pattern(2); one RoPE base for all layers.
                    swa_pattern: 2,
                    rope_theta_swa: rope_theta,
                    ..Default::default()
                }
            }
            "gpt2" => BlockConfig {
                rope: RopeStyle::None,
                norm: NormKind::Layer,
                activation: Activation::GeluTanh,
                gated: false,
                pos_embed: true,
                out_biases: true,
                qkv_bias: true,
                fused_qkv: true,
                ..Default::default()
            },
            // llama.cpp: LLM_ARCH_QWEN2 and QWEN3 use LLAMA_ROPE_TYPE_NEOX.
            "qwen2" => BlockConfig { rope: RopeStyle::Neox, qkv_bias: true, ..Default::default() },
            "qwen3" => BlockConfig { rope: RopeStyle::Neox, qk_norm: true, ..Default::default() },
            "phi3" => {
                // llama.cpp: NEOX RoPE; q/k/v fused or apart; gate and up always fused; its
                // sliding window disabled ("Phi SWA is currently disabled").
                if g.tensor("rope_factors_long.weight").is_some()
                    || g.tensor("blk.0.rope_factors_long.weight").is_some()
                {
                    return Err(Error::Unsupported(
                        "Phi-3 with LongRoPE factors (the 128k-context variants)".into(),
                    ));
                }
                BlockConfig {
                    rope: RopeStyle::Neox,
                    fused_qkv: g.tensor("blk.0.attn_qkv.weight").is_some(),
                    fused_gate_up: true,
                    ..Default::default()
                }
            }
            _ => BlockConfig::default(),
        };
        if let Some(v) = g.get(&key("rope.dimension_count")).and_then(|v| v.as_u64()) {
            if v as usize != head_dim {
                return Err(Error::Unsupported(format!(
                    "partial rotary embeddings ({key}: {v} of {head_dim} dims)",
                    key = key("rope.dimension_count")
                )));
            }
        }
        let cfg = ModelConfig {
            architecture: arch,
            n_layer,
            d_model,
            n_head,
            n_kv_head,
            head_dim,
            d_ff,
            vocab,
            context_length,
            rope_theta,
            rms_eps,
            tied_embeddings,
            block,
        };
        cfg.check_tensors(g)?;
        Ok(cfg)
    }

    /// Every tensor the forward pass reads, with its expected ggml dims `[in, out]`.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<u64>)> {
        let (d, q, kv, ff) = (
            self.d_model as u64,
            (self.n_head * self.head_dim) as u64,
            (self.n_kv_head * self.head_dim) as u64,
            self.d_ff as u64,
        );
        let mut v = vec![("token_embd.weight".to_string(), vec![d, self.vocab as u64])];
        v.push(("output_norm.weight".into(), vec![d]));
        if self.block.norm == NormKind::Layer {
            v.push(("output_norm.bias".into(), vec![d]));
        }
        if self.block.pos_embed {
            v.push(("position_embd.weight".into(), vec![d, self.context_length as u64]));
        }
        if !self.tied_embeddings {
            v.push(("output.weight".into(), vec![d, self.vocab as u64]));
        }
        for l in 0..self.n_layer {
            let b = |s: &str| format!("blk.{l}.{s}.weight");
            let bias = |s: &str| format!("blk.{l}.{s}.bias");
            v.push((b("attn_norm"), vec![d]));
            if self.block.norm == NormKind::Layer {
                v.push((bias("attn_norm"), vec![d]));
                v.push((bias("ffn_norm"), vec![d]));
            }
            if self.block.out_biases {
                v.push((bias("attn_output"), vec![d]));
                v.push((bias("ffn_up"), vec![ff]));
                v.push((bias("ffn_down"), vec![d]));
            }
            if self.block.fused_qkv {
                v.push((b("attn_qkv"), vec![d, q + 2 * kv]));
            } else {
                v.push((b("attn_q"), vec![d, q]));
                v.push((b("attn_k"), vec![d, kv]));
                v.push((b("attn_v"), vec![d, kv]));
            }
            v.push((b("attn_output"), vec![q, d]));
            v.push((b("ffn_norm"), vec![d]));
            if !self.block.gated {
                v.push((b("ffn_up"), vec![d, ff]));
            } else if self.block.fused_gate_up {
                v.push((b("ffn_up"), vec![d, 2 * ff]));
            } else {
                v.push((b("ffn_gate"), vec![d, ff]));
                v.push((b("ffn_up"), vec![d, ff]));
            }
            v.push((b("ffn_down"), vec![ff, d]));
            if self.block.qkv_bias && self.block.fused_qkv {
                v.push((bias("attn_qkv"), vec![q + 2 * kv]));
            } else if self.block.qkv_bias {
                v.push((bias("attn_q"), vec![q]));
                v.push((bias("attn_k"), vec![kv]));
                v.push((bias("attn_v"), vec![kv]));
            }
            if self.block.qk_norm {
                v.push((b("attn_q_norm"), vec![self.head_dim as u64]));
                v.push((b("attn_k_norm"), vec![self.head_dim as u64]));
            }
            if self.block.post_norms {
                v.push((b("post_attention_norm"), vec![d]));
                v.push((b("post_ffw_norm"), vec![d]));
            }
        }
        v
    }

    /// Does layer `l` attend through the sliding window?
    pub fn is_swa(&self, l: usize) -> bool {
        let p = self.block.swa_pattern;
        self.block.sliding_window.is_some() && p > 0 && l % p < p - 1
    }

    /// The RoPE base of layer `l`.
    pub fn rope_theta_at(&self, l: usize) -> f32 {
        if self.is_swa(l) {
            self.block.rope_theta_swa
        } else {
            self.rope_theta
        }
    }

    fn check_tensors(&self, g: &Gguf) -> Result<()> {
        if self.vocab == 0 {
            return Err(Error::Shape("token_embd.weight has no vocabulary dimension".into()));
        }
        for (name, dims) in self.expected_tensors() {
            let t = g
                .tensor(&name)
                .ok_or_else(|| Error::Shape(format!("tensor `{name}` is missing")))?;
            if t.dims != dims {
                return Err(Error::Shape(format!(
                    "tensor `{name}` has dims {:?}, expected {dims:?}",
                    t.dims
                )));
            }
            if dims.len() == 1 && !matches!(t.dtype, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
            {
                return Err(Error::Unsupported(format!("norm tensor `{name}` is {:?}", t.dtype)));
            }
        }
        Ok(())
    }
}
