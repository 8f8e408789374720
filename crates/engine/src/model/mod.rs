//! The model: weights ([`weights`]), one block configured per family ([`block`]), and the
//! forward pass with its KV cache and hook points ([`Session`]).

mod block;
mod weights;

pub use weights::{LayerWeights, Weights};

use crate::backend::{Backend, Precision};
use crate::hooks::{Hooks, Kept, Site};
use crate::{Error, Result};
use tiller_model::{ChatMessage, ChatTemplate, Gguf, ModelConfig, Tokenizer};

/// A loaded model: config, tokenizer, chat template and weights on backend `B`.
pub struct Model<B: Backend> {
    pub backend: B,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub chat: ChatTemplate,
    pub precision: Precision,
    pub weights: Weights<B>,
}

impl<B: Backend> Model<B> {
    /// Parse a GGUF held in `bytes` and upload its weights to `backend`.
    pub fn load(bytes: &[u8], backend: B, precision: Precision) -> Result<Self> {
        Self::load_with_progress(bytes, backend, precision, &mut |_, _| {})
    }

    /// As [`Model::load`], calling `progress(done, total)` as tensors are uploaded.
    pub fn load_with_progress(
        bytes: &[u8],
        backend: B,
        precision: Precision,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let gguf = Gguf::parse(bytes)?;
        let config = ModelConfig::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let chat = ChatTemplate::from_gguf(&gguf);
        let weights = Weights::load(&gguf, bytes, &config, &backend, precision, progress)?;
        Ok(Model { backend, config, tokenizer, chat, precision, weights })
    }

    /// Token ids for a prompt: raw text, or a single user turn through the chat template
    /// with the assistant generation prompt appended.
    pub fn encode_prompt(&self, text: &str, chat: bool) -> Result<Vec<u32>> {
        let text = if chat {
            self.chat.render(&[ChatMessage::user(text)], true)?
        } else {
            text.to_string()
        };
        Ok(self.tokenizer.encode(&text)?)
    }

    /// Unembedding scores of residual-stream vectors (`rows` x d): the LM head applied to
    /// `gain * v`, the final RMSNorm's gain without its (positive) scale, so a direction's
    /// scores say which tokens it promotes and suppresses.
    pub async fn unembed_direction(&self, v: &[f32]) -> Result<Vec<f32>> {
        let d = self.config.d_model;
        if v.is_empty() || !v.len().is_multiple_of(d) {
            return Err(Error::Backend(format!(
                "unembedding: {} values are not rows of {d}",
                v.len()
            )));
        }
        let g: Vec<f32> =
            v.iter().zip(self.weights.out_norm_host.iter().cycle()).map(|(a, b)| a * b).collect();
        let head = self.weights.lm_head.as_ref().unwrap_or(&self.weights.embed);
        self.product(g, v.len() / d, d, head).await
    }

    /// Rows of MLP hidden activations (`rows` x d_ff) through block `layer`'s down
    /// projection: what they write into the residual stream (`rows` x d_model).
    pub async fn down_project(&self, layer: usize, rows: Vec<f32>) -> Result<Vec<f32>> {
        let (dff, lw) = (self.config.d_ff, self.weights.layers.get(layer));
        let Some(lw) = lw.filter(|_| rows.len().is_multiple_of(dff)) else {
            return Err(Error::Backend(format!(
                "down projection of layer {layer}: {} values are not rows of {dff}",
                rows.len()
            )));
        };
        let n = rows.len() / dff;
        self.product(rows, n, dff, &lw.down).await
    }

    /// A weight matrix `[out, in]` read back to the host, transposed: `in` rows of `out`
    /// values (row j is column j of the matrix). For analysis of small models; it multiplies an
    /// identity through the backend, so it works whatever the weights' format or device.
    pub async fn dense_transposed(&self, m: &B::Matrix, in_width: usize) -> Result<Vec<f32>> {
        let mut eye = vec![0f32; in_width * in_width];
        for i in 0..in_width {
            eye[i * in_width + i] = 1.0;
        }
        self.product(eye, in_width, in_width, m).await
    }

    /// `x @ m.T` for host rows `x` (`rows` x `cols`), read back.
    async fn product(
        &self,
        x: Vec<f32>,
        rows: usize,
        cols: usize,
        m: &B::Matrix,
    ) -> Result<Vec<f32>> {
        let be = &self.backend;
        let x = be.upload_act(x, rows, cols)?;
        let y = be.matmul(&x, &[m])?.pop();
        let y = y.ok_or_else(|| Error::Backend("the product returned nothing".into()))?;
        Ok(be.read(&[&y]).await?.pop().unwrap_or_default())
    }

    /// The model's output for residual-stream rows at the last block's output: the final
    /// norm, the LM head and the final soft-cap (the logits a forward pass returns).
    fn head(&self, x: &B::Act) -> Result<B::Act> {
        let (be, w, cfg) = (&self.backend, &self.weights, &self.config);
        let x = match &w.out_norm_b {
            Some(b) => be.layer_norm(x, &w.out_norm, b, cfg.rms_eps)?,
            None => be.rms_norm(x, &w.out_norm, cfg.rms_eps)?,
        };
        let head = w.lm_head.as_ref().unwrap_or(&w.embed);
        let mut logits = be
            .matmul(&x, &[head])?
            .pop()
            .ok_or_else(|| Error::Backend("the LM head produced no logits".into()))?;
        if let Some(cap) = cfg.block.final_softcap {
            be.softcap(&mut logits, cap)?;
        }
        Ok(logits)
    }

    /// Logits of host residual-stream rows (`rows` x d_model) taken at any block's output, as
    /// if they were the last block's: the logit lens. Rows from the last block give the
    /// forward pass's own logits.
    pub async fn logits_of(&self, rows: Vec<f32>) -> Result<Vec<f32>> {
        let d = self.config.d_model;
        if rows.is_empty() || !rows.len().is_multiple_of(d) {
            return Err(Error::Backend(format!(
                "the logit lens takes rows of {d} values, not {}",
                rows.len()
            )));
        }
        let be = &self.backend;
        let n = rows.len() / d;
        let x = be.upload_act(rows, n, d)?;
        let y = self.head(&x)?;
        Ok(be.read(&[&y]).await?.pop().unwrap_or_default())
    }

    /// Embed `ids` (at `positions`) and run the first `upto` blocks (every block for a pass
    /// with logits): over `caches` from `pos0`, or, with no caches, as independent sequences
    /// of lengths `lens` packed one after another.
    #[allow(clippy::too_many_arguments)]
    fn blocks(
        &self,
        ids: &[u32],
        positions: &[u32],
        mut caches: Option<&mut [B::KvCache]>,
        pos0: usize,
        lens: &[usize],
        hooks: Option<&(dyn Hooks + '_)>,
        kept: &mut Vec<Kept<B::Act>>,
        upto: usize,
    ) -> Result<B::Act> {
        let (be, w, cfg) = (&self.backend, &self.weights, &self.config);
        let mut x = be.embed(&w.embed, ids)?;
        if let Some(s) = cfg.block.embed_scale {
            be.scale(&mut x, s)?;
        }
        if let Some(table) = &w.pos_embd {
            be.add_assign(&mut x, &be.embed(table, positions)?)?;
        }
        let packed = caches.is_none();
        for (l, lw) in w.layers.iter().enumerate().take(upto) {
            let seq = match caches.as_deref_mut() {
                Some(c) => block::Seq::Cached { cache: &mut c[l], pos0 },
                None => block::Seq::Packed { lens },
            };
            block::forward(be, cfg, lw, &mut x, seq, l, hooks, kept)?;
            let d = cfg.d_model;
            block::run_hooks(be, hooks, kept, Site::Residual, l, packed, pos0, &mut x, d)?;
        }
        Ok(x)
    }

    /// Several independent sequences in one forward pass, each from position 0 with no KV
    /// cache kept: the products see all their rows at once (on the CPU: one parallel region
    /// per product, whole groups of four rows), attention runs per sequence, and the results
    /// are those of one pass per sequence. The hooks see the packed rows (sequence after
    /// sequence, from position 0) and may only keep every row, as a [`crate::Capture`] does:
    /// anything else is an error. Returns the last position's logits of each sequence `i`
    /// with `logits[i]` (an empty vector for the others). Backends without
    /// [`Backend::packs_sequences`] run one pass per sequence.
    pub async fn forward_packed(
        &self,
        seqs: &[Vec<u32>],
        hooks: Option<&mut (dyn Hooks + '_)>,
        logits: &[bool],
    ) -> Result<Vec<Vec<f32>>> {
        let (be, cfg) = (&self.backend, &self.config);
        if seqs.is_empty() || seqs.iter().any(|s| s.is_empty()) {
            return Err(Error::EmptyPrompt);
        }
        if let Some(s) = seqs.iter().find(|s| s.len() > cfg.context_length) {
            return Err(Error::ContextFull { used: 0, asked: s.len(), max: cfg.context_length });
        }
        let want = |i: usize| logits.get(i).copied().unwrap_or(false);
        if !be.packs_sequences() {
            let mut hooks = hooks;
            let mut out = Vec::with_capacity(seqs.len());
            for (i, ids) in seqs.iter().enumerate() {
                let which = if want(i) { LogitsFor::Last } else { LogitsFor::Hooks };
                out.push(self.session().forward(ids, hooks.as_deref_mut(), which).await?);
            }
            return Ok(out);
        }
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let ids: Vec<u32> = seqs.concat();
        let positions: Vec<u32> = lens.iter().flat_map(|&n| 0..n as u32).collect();
        let n_logits = (0..seqs.len()).filter(|&i| want(i)).count();
        be.fits(cfg, ids.len(), n_logits)?;
        let mut kept = Vec::new();
        // With no logits wanted, the blocks after the last one any hook wants are skipped.
        let upto =
            if n_logits == 0 { hooked_blocks(hooks.as_deref(), cfg.n_layer) } else { cfg.n_layer };
        let x = self.blocks(&ids, &positions, None, 0, &lens, hooks.as_deref(), &mut kept, upto)?;
        // The last row of each sequence that wants logits, through the head together.
        let mut last = Vec::with_capacity(n_logits);
        let mut end = 0;
        for (i, &n) in lens.iter().enumerate() {
            end += n;
            if want(i) {
                last.push(be.copy_rows(&x, end - 1, 1)?);
            }
        }
        let head = match last.len() {
            0 => None,
            _ => Some(self.head(&be.concat_rows(&last.iter().collect::<Vec<_>>())?)?),
        };
        let mut acts: Vec<&B::Act> = head.iter().collect();
        acts.extend(kept.iter().map(|k| &k.act));
        let mut host = be.read(&acts).await?.into_iter();
        let all = if head.is_some() { host.next().unwrap_or_default() } else { vec![] };
        deliver(hooks, &kept, host);
        let vocab = all.len() / n_logits.max(1);
        let mut rows = all.chunks(vocab.max(1));
        Ok((0..seqs.len())
            .map(|i| {
                if want(i) {
                    rows.next().map(<[f32]>::to_vec).unwrap_or_default()
                } else {
                    vec![]
                }
            })
            .collect())
    }

    pub fn session(&self) -> Session<'_, B> {
        let kv = self.config.n_kv_head * self.config.head_dim;
        Session {
            model: self,
            caches: (0..self.config.n_layer).map(|_| self.backend.new_cache(kv)).collect(),
            pos: 0,
            ended: false,
        }
    }
}

/// Which logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    Last,
    All,
    /// No logits (the pass is run for what its hooks capture): an empty vector, and neither
    /// the final norm nor the LM head is computed.
    None,
    /// Only what the hooks keep: no logits, and the pass stops after the last block any hook
    /// wants (a capture of layer 10 runs 11 blocks). The later blocks' KV cache is never
    /// written, so the session ends there: a later forward on it is an error.
    Hooks,
}

/// One sequence being processed: the KV cache and the position reached.
pub struct Session<'m, B: Backend> {
    model: &'m Model<B>,
    caches: Vec<B::KvCache>,
    pos: usize,
    /// A [`LogitsFor::Hooks`] pass stopped early here: the cache is incomplete.
    ended: bool,
}

impl<'m, B: Backend> Session<'m, B> {
    /// Tokens processed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Run `ids` through the model (appending to the cache) and return logits, `vocab` per
    /// row: the last row only, or every row. Hooks see every block output; what they keep is
    /// read back with the logits (one wait) and handed to them before this returns.
    pub async fn forward(
        &mut self,
        ids: &[u32],
        hooks: Option<&mut (dyn Hooks + '_)>,
        which: LogitsFor,
    ) -> Result<Vec<f32>> {
        let pass = self.record(ids, hooks.as_deref(), which)?;
        let be = &self.model.backend;
        let mut acts: Vec<&B::Act> = pass.logits.iter().collect();
        acts.extend(pass.kept.iter().map(|k| &k.act));
        let mut host = be.read(&acts).await?.into_iter();
        let logits = if pass.logits.is_some() { host.next().unwrap_or_default() } else { vec![] };
        deliver(hooks, &pass.kept, host);
        Ok(logits)
    }

    /// As [`Session::forward`], leaving the logits where the backend keeps them (on the GPU,
    /// nothing is read back but what the hooks keep; the caller picks the token there or reads
    /// them itself).
    pub async fn forward_act(
        &mut self,
        ids: &[u32],
        hooks: Option<&mut (dyn Hooks + '_)>,
        which: LogitsFor,
    ) -> Result<B::Act> {
        let pass = self.record(ids, hooks.as_deref(), which)?;
        if !pass.kept.is_empty() {
            let acts: Vec<&B::Act> = pass.kept.iter().map(|k| &k.act).collect();
            let host = self.model.backend.read(&acts).await?;
            deliver(hooks, &pass.kept, host.into_iter());
        }
        pass.logits.ok_or_else(|| Error::Backend("forward_act was asked for no logits".into()))
    }

    /// Record one forward pass: the logits and the hooks' kept copies, where the backend keeps
    /// activations. Nothing is read back or waited for.
    pub fn record(
        &mut self,
        ids: &[u32],
        hooks: Option<&(dyn Hooks + '_)>,
        which: LogitsFor,
    ) -> Result<Pass<B>> {
        let m = self.model;
        let cfg = &m.config;
        if ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if self.ended {
            return Err(Error::SessionEnded);
        }
        if self.pos + ids.len() > cfg.context_length {
            return Err(Error::ContextFull {
                used: self.pos,
                asked: ids.len(),
                max: cfg.context_length,
            });
        }
        let be = &m.backend;
        let logit_rows = match which {
            LogitsFor::All => ids.len(),
            LogitsFor::Last => 1,
            LogitsFor::None | LogitsFor::Hooks => 0,
        };
        be.fits(cfg, ids.len(), logit_rows)?;
        let mut kept = Vec::new();
        let positions: Vec<u32> = (self.pos..self.pos + ids.len()).map(|p| p as u32).collect();
        let upto = match which {
            LogitsFor::Hooks => {
                self.ended = true;
                hooked_blocks(hooks, cfg.n_layer)
            }
            _ => cfg.n_layer,
        };
        let caches = Some(&mut self.caches[..]);
        let x = m.blocks(ids, &positions, caches, self.pos, &[], hooks, &mut kept, upto)?;
        self.pos += ids.len();
        let logits = match which {
            LogitsFor::All => Some(m.head(&x)?),
            LogitsFor::Last => Some(m.head(&be.last_row(&x)?)?),
            LogitsFor::None | LogitsFor::Hooks => None,
        };
        Ok(Pass { logits, kept })
    }
}

/// One recorded forward pass: the logits and what the hooks kept, not yet read.
pub struct Pass<B: Backend> {
    /// None for [`LogitsFor::None`].
    pub logits: Option<B::Act>,
    pub kept: Vec<Kept<B::Act>>,
}

/// How many blocks a pass must run for `hooks` alone: up to the last block where they want a
/// site (none without hooks).
fn hooked_blocks(hooks: Option<&(dyn Hooks + '_)>, n_layer: usize) -> usize {
    let Some(h) = hooks else { return 0 };
    (0..n_layer).rev().find(|&l| Site::ALL.iter().any(|&s| h.wants(s, l))).map_or(0, |l| l + 1)
}

/// Hand each kept copy, read back, to the hook that kept it.
fn deliver(
    hooks: Option<&mut (dyn Hooks + '_)>,
    kept: &[Kept<impl Sized>],
    host: impl Iterator<Item = Vec<f32>>,
) {
    if let Some(h) = hooks {
        for (k, rows) in kept.iter().zip(host) {
            h.take(k.tag, k.site, k.layer, k.pos0, &rows, k.width);
        }
    }
}
