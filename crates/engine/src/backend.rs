//! The contract between the forward pass and a compute backend.
//!
//! The forward pass in [`crate::model`] is written once against this trait. A backend owns
//! its weights (`Matrix`, `Vector`), activations (`Act`, rows = tokens) and KV cache; the
//! model never looks inside them: interventions are [`Edit`]s the backend applies, captures
//! are copies it keeps ([`Backend::copy_rows`]) and hands back after the pass
//! ([`Backend::read`]).

use crate::hooks::Edit;
use crate::{Error, Result};
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

/// The primitives of a forward pass. Every op that can fail returns `Result` (a GPU can run
/// out of memory or lose its device); the forward pass passes errors up with `?`.
///
/// Ops only record work. Reading activations back is [`Backend::read`], asynchronous: on the
/// CPU its future is ready at once; on a GPU it resolves once the device has done the work
/// queued so far (in the browser the page awaits it; natively [`crate::wait`] blocks on it).
#[allow(async_fn_in_trait)]
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
    fn rms_norm(&self, x: &Self::Act, w: &Self::Vector, eps: f32) -> Result<Self::Act>;
    /// `x @ w.T` for each `w`, sharing the work on `x` (fused QKV, fused gate/up).
    fn matmul(&self, x: &Self::Act, ws: &[&Self::Matrix]) -> Result<Vec<Self::Act>>;
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
    ) -> Result<()>;
    /// RMSNorm of every `group` consecutive values of each row with the gain `w` (`group`
    /// long): the per-head q and k norms of Gemma 3 and Qwen 3.
    fn rms_norm_groups(
        &self,
        x: &Self::Act,
        w: &Self::Vector,
        group: usize,
        eps: f32,
    ) -> Result<Self::Act>;
    /// `x[r] += b` for every row r (a projection's bias).
    fn add_bias(&self, x: &mut Self::Act, b: &Self::Vector) -> Result<()>;
    /// `gelu(gate) * up` with the tanh approximation of GELU (GeGLU).
    fn geglu(&self, gate: &Self::Act, up: &Self::Act) -> Result<Self::Act>;
    /// `gelu(x)`, tanh approximation (GPT-2's ungated MLP).
    fn gelu(&self, x: &Self::Act) -> Result<Self::Act>;
    /// LayerNorm of each row: `(x - mean) / sqrt(var + eps) * w + b` (GPT-2).
    fn layer_norm(
        &self,
        x: &Self::Act,
        w: &Self::Vector,
        b: &Self::Vector,
        eps: f32,
    ) -> Result<Self::Act>;
    /// `x = cap * tanh(x / cap)` (Gemma 2's final logits).
    fn softcap(&self, x: &mut Self::Act, cap: f32) -> Result<()>;
    /// `x *= s` (Gemma's embedding scale).
    fn scale(&self, x: &mut Self::Act, s: f32) -> Result<()>;
    /// Append `k`, `v` to `cache` and attend causally from the rows of `q`.
    fn attention(
        &self,
        q: &Self::Act,
        k: &Self::Act,
        v: &Self::Act,
        cache: &mut Self::KvCache,
        s: AttnShape,
    ) -> Result<Self::Act>;
    /// `silu(gate) * up`
    fn swiglu(&self, gate: &Self::Act, up: &Self::Act) -> Result<Self::Act>;
    fn add_assign(&self, x: &mut Self::Act, y: &Self::Act) -> Result<()>;
    /// The last row only.
    fn last_row(&self, x: &Self::Act) -> Result<Self::Act>;
    fn rows(&self, x: &Self::Act) -> usize;
    /// Activations from a host buffer (`rows` x `cols`, row-major).
    fn upload_act(&self, data: Vec<f32>, rows: usize, cols: usize) -> Result<Self::Act>;
    /// A copy of `n` rows of `x` from row `first`, kept where the backend keeps activations
    /// (what a capture records during a pass, to read after it).
    fn copy_rows(&self, x: &Self::Act, first: usize, n: usize) -> Result<Self::Act>;
    /// The rows of `parts`, one after another (same width). Backends that can pack several
    /// sequences into one pass ([`Backend::packs_sequences`]) have it.
    fn concat_rows(&self, _parts: &[&Self::Act]) -> Result<Self::Act> {
        Err(Error::Backend(format!("{}: no packed passes", self.name())))
    }
    /// RoPE (each sequence from position 0; `style` None: none) and causal attention within
    /// each of several sequences packed one after another (`lens` rows each, no cache): what
    /// a block of [`crate::Model::forward_packed`] runs. By default one sequence at a time
    /// (rows copied out, attended over a fresh cache, joined again); a GPU does all the
    /// sequences in one dispatch each, with the same results.
    #[allow(clippy::too_many_arguments)]
    fn attention_packed(
        &self,
        q: &Self::Act,
        k: &Self::Act,
        v: &Self::Act,
        lens: &[usize],
        theta: f32,
        style: RopeStyle,
        s: AttnShape,
    ) -> Result<Self::Act> {
        let mut parts = Vec::with_capacity(lens.len());
        let mut first = 0;
        for &n in lens {
            let mut qs = self.copy_rows(q, first, n)?;
            let mut ks = self.copy_rows(k, first, n)?;
            let vs = self.copy_rows(v, first, n)?;
            if style != RopeStyle::None {
                self.rope_qk(&mut qs, &mut ks, s.n_head, s.n_kv_head, s.head_dim, 0, theta, style)?;
            }
            let mut cache = self.new_cache(s.n_kv_head * s.head_dim);
            parts.push(self.attention(&qs, &ks, &vs, &mut cache, AttnShape { pos0: 0, ..s })?);
            first += n;
        }
        self.concat_rows(&parts.iter().collect::<Vec<_>>())
    }
    /// Does [`crate::Model::forward_packed`] run here (several short sequences in one pass:
    /// the products see all their rows at once)? The CPU's products gain from more rows, and
    /// a GPU saves a submission and a read-back per sequence.
    fn packs_sequences(&self) -> bool {
        false
    }
    /// Apply `edits` (in order) to the rows of `x`, row i at absolute position `pos0 + i`:
    /// the one form every intervention takes, on any backend.
    fn edit(&self, x: &mut Self::Act, edits: &[Edit], pos0: usize) -> Result<()>;
    /// Read activations back to the host (row-major), all of them after the work recorded so
    /// far: one wait for the lot. Ready at once on the CPU.
    async fn read(&self, xs: &[&Self::Act]) -> Result<Vec<Vec<f32>>>;
    /// The index of the largest value of the last row (first index on ties), computed where
    /// the activations live where a backend can (a GPU reads back one id, not the logits).
    async fn argmax(&self, logits: &Self::Act) -> Result<u32> {
        let last = self.last_row(logits)?;
        let host = self.read(&[&last]).await?;
        Ok(host.first().map_or(0, |l| crate::sampling::argmax(l)))
    }

    /// The attention's input side: `h = RMSNorm(x) * norm`, then `h @ w.T` for each of `ws`
    /// (q, k, v; a backend may fuse it all).
    fn attn_in(
        &self,
        x: &Self::Act,
        norm: &Self::Vector,
        eps: f32,
        ws: &[&Self::Matrix],
    ) -> Result<Vec<Self::Act>> {
        let h = self.rms_norm(x, norm, eps)?;
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
    ) -> Result<Self::Act> {
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
    ) -> Result<()> {
        self.rope(q, n_head, head_dim, pos0, theta, style)?;
        self.rope(k, n_kv_head, head_dim, pos0, theta, style)
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
    fn matmul_add(&self, x: &Self::Act, w: &Self::Matrix, into: &mut Self::Act) -> Result<()> {
        match self.matmul(x, &[w])?.pop() {
            Some(y) => self.add_assign(into, &y),
            None => Err(Error::Backend("the product returned nothing".into())),
        }
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
) -> Result<B::Act> {
    let h = be.rms_norm(x, norm, eps)?;
    let mut gu = be.matmul(&h, &[gate, up])?.into_iter();
    match (gu.next(), gu.next()) {
        (Some(g), Some(u)) => be.swiglu(&g, &u),
        _ => Err(Error::Backend("the gate and up products returned too little".into())),
    }
}
