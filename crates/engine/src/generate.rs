//! Generation: prefill the prompt, then decode one token at a time. [`Generator`] is the
//! step-by-step form (the browser worker yields to its event loop between steps so that
//! Stop gets through); [`generate`] runs it to the end with a callback per token.

use crate::backend::Backend;
use crate::hooks::Hooks;
use crate::model::{LogitsFor, Model, Session};
use crate::sampling::Sampler;
use crate::{Error, Result};
use std::ops::ControlFlow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-sequence token was produced (it is included in the output).
    Eos,
    MaxTokens,
    ContextFull,
    /// The caller asked to stop.
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub stop: StopReason,
}

pub struct Generator<'m, B: Backend> {
    model: &'m Model<B>,
    session: Session<'m, B>,
    sampler: Sampler,
    greedy: bool,
    prompt: Vec<u32>,
    max_tokens: usize,
    /// The next token, chosen by `advance`, handed out by `step`.
    next: Option<u32>,
    pub ids: Vec<u32>,
    pub stop: Option<StopReason>,
}

impl<'m, B: Backend> Generator<'m, B> {
    pub fn new(
        model: &'m Model<B>,
        prompt: &[u32],
        max_tokens: usize,
        sampler: Sampler,
    ) -> Result<Self> {
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let ctx = model.config.context_length;
        if prompt.len() >= ctx {
            return Err(Error::ContextFull { used: 0, asked: prompt.len(), max: ctx });
        }
        let stop = (max_tokens == 0).then_some(StopReason::MaxTokens);
        Ok(Generator {
            model,
            session: model.session(),
            greedy: sampler.is_greedy(),
            sampler,
            prompt: prompt.to_vec(),
            max_tokens,
            next: None,
            ids: Vec::new(),
            stop,
        })
    }

    /// Produce the next token (the first call also runs the prompt), or `None` once stopped.
    pub async fn step(&mut self, hooks: Option<&mut (dyn Hooks + '_)>) -> Result<Option<u32>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        let id = match self.next.take() {
            Some(id) => id,
            None => match self.forward(hooks).await? {
                Some(logits) => self.pick(&logits).await?,
                None => return Ok(None),
            },
        };
        self.accept(id);
        Ok(Some(id))
    }

    /// Run the model on the token just produced and choose the next, so that the next `step`
    /// returns it. Split from `step` so a caller can show the token before paying for the
    /// next forward.
    pub async fn advance(&mut self, hooks: Option<&mut (dyn Hooks + '_)>) -> Result<()> {
        if self.next.is_none() && !self.ids.is_empty() {
            if let Some(logits) = self.forward(hooks).await? {
                self.next = Some(self.pick(&logits).await?);
            }
        }
        Ok(())
    }

    /// The step split for callers that choose the token themselves: run the model on what
    /// comes next (the prompt first, then the last token) and return the last row's logits
    /// where the backend keeps them; `None` once stopped. The caller chooses the token
    /// ([`Generator::pick`]) and gives it to [`Generator::accept`].
    pub async fn forward(
        &mut self,
        hooks: Option<&mut (dyn Hooks + '_)>,
    ) -> Result<Option<B::Act>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        let input = match self.ids.last() {
            Some(&id) => vec![id],
            None => self.prompt.clone(),
        };
        self.session.forward_act(&input, hooks, LogitsFor::Last).await.map(Some)
    }

    /// Record the chosen token and update the stop state.
    pub fn accept(&mut self, id: u32) {
        self.ids.push(id);
        if self.model.tokenizer.stop.contains(&id) {
            self.stop = Some(StopReason::Eos);
        } else if self.ids.len() >= self.max_tokens {
            self.stop = Some(StopReason::MaxTokens);
        } else if self.session.position() >= self.model.config.context_length {
            self.stop = Some(StopReason::ContextFull);
        }
    }

    /// The token for logits where the backend keeps them: their argmax where they are when
    /// greedy (a GPU reads back one id), otherwise the logits read back and sampled here.
    pub async fn pick(&mut self, logits: &B::Act) -> Result<u32> {
        let be = &self.model.backend;
        if self.greedy {
            return be.argmax(logits).await;
        }
        let host = be.read(&[logits]).await?;
        Ok(self.sampler.sample(host.first().map_or(&[][..], |l| l.as_slice())))
    }

    pub fn cancel(&mut self) {
        self.stop.get_or_insert(StopReason::Cancelled);
    }

    pub fn finish(self) -> Generation {
        Generation { ids: self.ids, stop: self.stop.unwrap_or(StopReason::Cancelled) }
    }
}

/// Generate up to `max_tokens` after `prompt`. `on_token` sees each new id as it is chosen
/// and may stop the generation.
pub async fn generate<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    max_tokens: usize,
    sampler: Sampler,
    mut hooks: Option<&mut dyn Hooks>,
    on_token: &mut dyn FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation> {
    let mut g = Generator::new(model, prompt, max_tokens, sampler)?;
    while let Some(id) = g.step(hooks.as_deref_mut()).await? {
        if on_token(id).is_break() {
            g.cancel();
            break;
        }
        g.advance(hooks.as_deref_mut()).await?;
    }
    Ok(g.finish())
}
