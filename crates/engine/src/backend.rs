//! The contract between the forward pass and a compute backend.
//!
//! The forward pass in [`crate::model`] is written once against this trait. A backend owns
//! its weights (`Matrix`, `Vector`), activations (`Act`, rows = tokens) and KV cache; the
//! model never looks inside them except through [`Backend::with_host`], which hooks use.

use crate::Result;
use tiller_model::{RopeStyle, TensorInfo};

/// How weight matrices are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Weights de-quantized to f32 at load: the exact path, the one golden tests hold tight.
    F32,
    /// Weights stay quantized (Q4_1 and Q8_0 as stored; other types repacked to Q8_0);
    /// matrix-vector products in int8 like llama.cpp.
    #[default]
    Fast,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "fast" => Ok(Precision::Fast),
            _ => Err(format!("unknown precision `{s}` (f32 or fast)")),
        }
    }
}

/// Shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Position of the first new row (tokens already in the cache).
    pub pos0: usize,
    /// Sliding window: a query attends to at most this many positions, itself included.
    pub window: Option<usize>,
    /// The factor on `q . k` (`1 / sqrt(head_dim)` unless the family says otherwise).
    pub scale: f32,
    /// Scores become `cap * tanh(s / cap)` before the softmax (Gemma 2).
    pub softcap: Option<f32>,
}

pub trait Backend {
    /// A weight matrix `[out, in]` (ggml dims `[in, out]`).
    type Matrix;
    /// A weight vector (norm gains).
    type Vector;
    /// Activations: `rows` tokens by some width.
    type Act;
    /// One layer's key/value cache.
    type KvCache;

    fn name(&self) -> String;

    /// Take a weight matrix from its GGUF bytes, in the given precision.
    fn matrix(&self, t: &TensorInfo, data: &[u8], precision: Precision) -> Result<Self::Matrix>;
    fn vector(&self, v: Vec<f32>) -> Result<Self::Vector>;
    fn new_cache(&self, kv_width: usize) -> Self::KvCache;
    /// Forget cache entries from `len` on.
    fn truncate_cache(&self, cache: &mut Self::KvCache, len: usize);

    /// Rows of `table` for `ids` (the token embedding).
    fn embed(&self, table: &Self::Matrix, ids: &[u32]) -> Result<Self::Act>;
    fn rms_norm(&self, x: &Self::Act, w: &Self::Vector, eps: f32) -> Self::Act;
    /// `x @ w.T` for each `w`, sharing the work on `x` (fused QKV, fused gate/up).
    fn matmul(&self, x: &Self::Act, ws: &[&Self::Matrix]) -> Vec<Self::Act>;
    /// Rotary embedding of `n_heads` heads per row, row i at position `pos0 + i`: adjacent pairs
    /// (`RopeStyle::Normal`, ggml's mode for GGUF Llama weights) or halves (`Neox`).
    fn rope(
        &self,
        x: &mut Self::Act,
        n_heads: usize,
        head_dim: usize,
        pos0: usize,
        theta: f32,
        style: RopeStyle,
    );
    /// RMSNorm of every `group` consecutive values of each row with the gain `w` (`group`
    /// long): the per-head q and k norms of Gemma 3 and Qwen 3.
    fn rms_norm_groups(&self, x: &Self::Act, w: &Self::Vector, group: usize, eps: f32)
        -> Self::Act;
    /// `x[r] += b` for every row r (a projection's bias).
    fn add_bias(&self, x: &mut Self::Act, b: &Self::Vector);
    /// `gelu(gate) * up` with the tanh approximation of GELU (GeGLU).
    fn geglu(&self, gate: &Self::Act, up: &Self::Act) -> Self::Act;
    /// `gelu(x)`, tanh approximation (GPT-2's ungated MLP).
    fn gelu(&self, x: &Self::Act) -> Self::Act;
    /// LayerNorm of each row: `(x - mean) / sqrt(var + eps) * w + b` (GPT-2).
    fn layer_norm(&self, x: &Self::Act, w: &Self::Vector, b: &Self::Vector, eps: f32) -> Self::Act;
    /// `x = cap * tanh(x / cap)` (Gemma 2's final logits). The default goes through the host.
    fn softcap(&self, x: &mut Self::Act, cap: f32) {
        self.with_host(x, &mut |r| r.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh()));
    }
    /// `x *= s` (Gemma's embedding scale). The default goes through the host.
    fn scale(&self, x: &mut Self::Act, s: f32) {
        self.with_host(x, &mut |r| r.iter_mut().for_each(|v| *v *= s));
    }
    /// Append `k`, `v` to `cache` and attend causally from the rows of `q`.
    fn attention(
        &self,
        q: &Self::Act,
        k: &Self::Act,
        v: &Self::Act,
        cache: &mut Self::KvCache,
        s: AttnShape,
    ) -> Self::Act;
    /// `silu(gate) * up`
    fn swiglu(&self, gate: &Self::Act, up: &Self::Act) -> Self::Act;
    fn add_assign(&self, x: &mut Self::Act, y: &Self::Act);
    /// The last row only.
    fn last_row(&self, x: &Self::Act) -> Self::Act;
    fn rows(&self, x: &Self::Act) -> usize;
    fn to_host(&self, x: &Self::Act) -> Vec<f32>;
    /// Activations from a host buffer (`rows` x `cols`, row-major).
    fn upload_act(&self, data: Vec<f32>, rows: usize, cols: usize) -> Self::Act;
    /// Give `f` the activations as a host slice (row-major) and keep what it writes.
    fn with_host(&self, x: &mut Self::Act, f: &mut dyn FnMut(&mut [f32]));

    /// The attention's input side: `h = RMSNorm(x) * norm`, then `h @ w.T` for each of `ws`
    /// (q, k, v; a backend may fuse it all).
    fn attn_in(
        &self,
        x: &Self::Act,
        norm: &Self::Vector,
        eps: f32,
        ws: &[&Self::Matrix],
    ) -> Vec<Self::Act> {
        let h = self.rms_norm(x, norm, eps);
        self.matmul(&h, ws)
    }
    /// The MLP's input side: `h = RMSNorm(x) * norm`, then `silu(h @ gate.T) * (h @ up.T)` (a
    /// backend may fuse it all).
    fn mlp_in(
        &self,
        x: &Self::Act,
        norm: &Self::Vector,
        eps: f32,
        gate: &Self::Matrix,
        up: &Self::Matrix,
    ) -> Self::Act {
        mlp_in_unfused(self, x, norm, eps, gate, up)
    }
    /// RoPE on q (`n_head` heads) and k (`n_kv_head` heads) at the same positions (a backend
    /// may do both at once).
    #[allow(clippy::too_many_arguments)]
    fn rope_qk(
        &self,
        q: &mut Self::Act,
        k: &mut Self::Act,
        n_head: usize,
        n_kv_head: usize,
        head_dim: usize,
        pos0: usize,
        theta: f32,
        style: RopeStyle,
    ) {
        self.rope(q, n_head, head_dim, pos0, theta, style);
        self.rope(k, n_kv_head, head_dim, pos0, theta, style);
    }
    /// Can one forward pass of `rows` tokens returning `logit_rows` rows of logits run here?
    /// A backend with size limits (a GPU's largest storage binding) says why not, before any
    /// work; the default is yes.
    fn fits(
        &self,
        _cfg: &tiller_model::ModelConfig,
        _rows: usize,
        _logit_rows: usize,
    ) -> Result<()> {
        Ok(())
    }
    /// `into += x @ w.T` (a backend may fuse the residual add into the product).
    fn matmul_add(&self, x: &Self::Act, w: &Self::Matrix, into: &mut Self::Act) {
        if let Some(y) = self.matmul(x, &[w]).pop() {
            self.add_assign(into, &y);
        }
    }
    /// Apply `edits` on the device to rows at positions `pos0..`; `false` if this backend
    /// has no device-side edits (the forward pass then hands the hook the host rows).
    fn edit(&self, _x: &mut Self::Act, _edits: &[crate::hooks::Edit], _pos0: usize) -> bool {
        false
    }
    /// The index of the largest value of the last row, computed where the activations live
    /// so decoding reads back one id instead of the logits; `None`: not offered (the caller
    /// reads the logits and samples on the host, with the same tie rule: first index).
    fn argmax(&self, _logits: &Self::Act) -> Option<u32> {
        None
    }
}

/// [`Backend::mlp_in`] op by op: RMSNorm, the gate and up products (sharing the work on the
/// input), SwiGLU. What a backend that fuses only some shapes runs for the others.
pub fn mlp_in_unfused<B: Backend + ?Sized>(
    be: &B,
    x: &B::Act,
    norm: &B::Vector,
    eps: f32,
    gate: &B::Matrix,
    up: &B::Matrix,
) -> B::Act {
    let h = be.rms_norm(x, norm, eps);
    let mut gu = be.matmul(&h, &[gate, up]).into_iter();
    match (gu.next(), gu.next()) {
        (Some(g), Some(u)) => be.swiglu(&g, &u),
        _ => unreachable!("Backend::matmul returns one output per matrix"),
    }
}
