//! The generation loop: prefill the prompt, then decode one token at a time, streaming each
//! token to a callback that may stop early.

use crate::backend::Backend;
use crate::hooks::Hooks;
use crate::model::{LogitsFor, Model};
use crate::sampling::Sampler;
use crate::{Error, Result};
use std::ops::ControlFlow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-sequence token was produced (it is included in the output).
    Eos,
    MaxTokens,
    ContextFull,
    /// The callback asked to stop.
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub stop: StopReason,
}

/// Generate up to `max_tokens` after `prompt`. `on_token` sees each new id as it is chosen.
pub fn generate<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    mut hooks: Option<&mut dyn Hooks>,
    on_token: &mut dyn FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    let ctx = model.config.context_length;
    if prompt.len() >= ctx {
        return Err(Error::ContextFull {
            used: 0,
            asked: prompt.len(),
            max: ctx,
        });
    }
    let mut s = model.session();
    let mut ids = Vec::new();
    if max_tokens == 0 {
        return Ok(Generation {
            ids,
            stop: StopReason::MaxTokens,
        });
    }
    let mut logits = s.forward(prompt, hooks.as_deref_mut(), LogitsFor::Last)?;
    loop {
        let id = sampler.sample(&logits);
        ids.push(id);
        if on_token(id).is_break() {
            return Ok(Generation {
                ids,
                stop: StopReason::Cancelled,
            });
        }
        if model.tokenizer.stop.contains(&id) {
            return Ok(Generation {
                ids,
                stop: StopReason::Eos,
            });
        }
        if ids.len() >= max_tokens {
            return Ok(Generation {
                ids,
                stop: StopReason::MaxTokens,
            });
        }
        if s.position() >= ctx {
            return Ok(Generation {
                ids,
                stop: StopReason::ContextFull,
            });
        }
        logits = s.forward(&[id], hooks.as_deref_mut(), LogitsFor::Last)?;
    }
}
