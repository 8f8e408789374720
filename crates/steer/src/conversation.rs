//! Conversations: a multi-turn chat (system, user and assistant turns through the model's chat
//! template) whose next assistant turn is generated baseline and steered, the steering acting
//! from a chosen turn on; and the design of Lampinen et al. ("Linear representations in
//! language models can change dramatically over a conversation"): after each turn, a fixed
//! probe item is asked and each concept's reading is taken on it, so the drift of a
//! representation over the conversation shows, turn by turn.

use crate::{unit, Error, Result};
use tiller_engine::{Backend, Capture, LogitsFor, Model};
use tiller_model::ChatMessage;

/// A conversation as a person set it up.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Conversation {
    /// The turns so far, in order (roles: system, user, assistant).
    pub turns: Vec<ChatMessage>,
    /// Interventions act from this turn's first token on (0: the whole conversation).
    #[serde(default)]
    pub steer_from: usize,
    /// The probe item asked after each turn for the readings (a user message).
    #[serde(default)]
    pub probe: String,
}

pub const ROLES: [&str; 3] = ["system", "user", "assistant"];

impl Conversation {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Intervention(m));
        if self.turns.is_empty() {
            return bad("the conversation has no turns".into());
        }
        if let Some((i, t)) =
            self.turns.iter().enumerate().find(|(_, t)| !ROLES.contains(&t.role.as_str()))
        {
            return bad(format!(
                "turn {}: role `{}` is not system, user or assistant",
                i + 1,
                t.role
            ));
        }
        if self.steer_from > self.turns.len() {
            return bad(format!(
                "steering from turn {} but the conversation has {} turns",
                self.steer_from + 1,
                self.turns.len()
            ));
        }
        Ok(())
    }

    /// The token ids of the conversation followed by the assistant's generation prompt, and
    /// the position at which steering starts (the first token of turn `steer_from`; the end
    /// of the conversation, where the reply starts, when it is past the last turn).
    pub fn prompt<B: Backend>(&self, model: &Model<B>) -> Result<(Vec<u32>, usize)> {
        self.validate()?;
        let ids = render(model, &self.turns, true)?;
        let start = if self.steer_from == 0 {
            0
        } else {
            render(model, &self.turns[..self.steer_from], false)?.len().min(ids.len())
        };
        Ok((ids, start))
    }
}

fn render<B: Backend>(model: &Model<B>, turns: &[ChatMessage], gen: bool) -> Result<Vec<u32>> {
    let text = model.chat.render(turns, gen).map_err(tiller_engine::Error::from)?;
    Ok(model.tokenizer.encode(&text).map_err(tiller_engine::Error::from)?)
}

/// After each turn k (1..=n), the probe item asked as the next user message: its last token's
/// residual stream at `layer` projected on each unit direction in `dirs` (one per concept).
/// `[turn][concept]`.
pub async fn readings<B: Backend>(
    model: &Model<B>,
    conv: &Conversation,
    layer: usize,
    dirs: &[&[f32]],
) -> Result<Vec<Vec<f32>>> {
    conv.validate()?;
    if layer >= model.config.n_layer {
        return Err(Error::Layer { layer, max: model.config.n_layer - 1 });
    }
    if conv.probe.trim().is_empty() {
        return Err(Error::Intervention("give a probe item to read after each turn".into()));
    }
    let units: Vec<Vec<f32>> = dirs.iter().map(|d| unit(d)).collect();
    let mut out = Vec::with_capacity(conv.turns.len());
    for k in 1..=conv.turns.len() {
        let mut msgs = conv.turns[..k].to_vec();
        msgs.push(ChatMessage::user(conv.probe.clone()));
        let ids = render(model, &msgs, true)?;
        let mut cap = Capture::new([layer]);
        model.session().forward(&ids, Some(&mut cap), LogitsFor::Last).await?;
        let h =
            cap.last(layer).ok_or_else(|| Error::Intervention("nothing was captured".into()))?;
        out.push(units.iter().map(|u| crate::dot(u, h)).collect());
    }
    Ok(out)
}
