//! The SteeringConfig: the whole setup of a session (model, concepts, interventions, prompt,
//! sampling, what is on screen). Share links, saved files, presets and the CLI all hold one.
//!
//! Directions are never stored: they are recomputed from the examples, deterministically.

use crate::{Error, Result};
use tiller_steer::concept::Concept;
use tiller_steer::condition::Condition;
use tiller_steer::conversation::Conversation;
use tiller_steer::plan::InterventionSpec;

pub use crate::lesson::Lesson;

/// The config format this build writes. Every earlier version still opens.
pub const VERSION: u32 = 4;

/// The default model's id and the sha256 of its file.
pub const DEFAULT_MODEL_ID: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Caps on what a config may hold (a config can come from an untrusted link).
pub const MAX_CONCEPTS: usize = 16;
pub const MAX_INTERVENTIONS: usize = 32;
pub const MAX_LAYERS: usize = 256;
pub const MAX_PROMPT_CHARS: usize = 8192;
pub const MAX_ID_CHARS: usize = 2048;
pub const MAX_TOKENS: u32 = 4096;
pub const MAX_TURNS: usize = 64;

/// Which model the setup was made with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelRef {
    /// The default model's file name, or the URL of another GGUF.
    pub id: String,
    /// sha256 of the GGUF file (hex), to say so when another model is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Default for ModelRef {
    fn default() -> Self {
        ModelRef { id: DEFAULT_MODEL_ID.into(), sha256: Some(DEFAULT_MODEL_SHA256.into()) }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Sampling {
    pub max_tokens: u32,
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: u32,
    pub top_p: f32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { max_tokens: 64, temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

/// What is on screen.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct View {
    /// The selected concept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concept: Option<String>,
    /// The selected layer (charts, scatter, reading view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<u32>,
    /// The open panel, e.g. "steer", "read", "sweep".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panel: Option<String>,
    /// Text in the reading view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reading: Option<String>,
    /// Large-text (projector) mode.
    pub large_text: bool,
    /// The open step of the lesson (0-based; version 4 on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SteeringConfig {
    /// The format version it was written in (files without one are version 1).
    #[serde(default = "v1")]
    pub version: u32,
    #[serde(default)]
    pub model: ModelRef,
    #[serde(default)]
    pub concepts: Vec<Concept>,
    #[serde(default)]
    pub interventions: Vec<InterventionSpec>,
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub chat: bool,
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub view: View,
    /// Conditional steering (CAST): the interventions run only when the prompt meets it
    /// (version 3 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// A multi-turn conversation continued baseline and steered, with per-turn readings on a
    /// probe item (version 3 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
    /// A lesson: guided steps over this setup (version 4 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lesson: Option<Lesson>,
}

fn v1() -> u32 {
    1
}

impl Default for SteeringConfig {
    fn default() -> Self {
        SteeringConfig {
            version: VERSION,
            model: ModelRef::default(),
            concepts: Vec::new(),
            interventions: Vec::new(),
            prompt: String::new(),
            chat: false,
            sampling: Sampling::default(),
            view: View::default(),
            condition: None,
            conversation: None,
            lesson: None,
        }
    }
}

fn too_long(what: &str, n: usize, max: usize) -> Error {
    Error::Invalid(format!("{what}: {n} is more than the {max} allowed"))
}

impl SteeringConfig {
    /// Check every cap and every reference: concepts valid and uniquely named, interventions
    /// naming loaded concepts, finite numbers.
    pub fn validate(&self) -> Result<()> {
        if self.version > VERSION {
            return Err(Error::Newer { version: self.version, supported: VERSION });
        }
        if self.model.id.len() > MAX_ID_CHARS {
            return Err(too_long("model id characters", self.model.id.len(), MAX_ID_CHARS));
        }
        if let Some(h) = &self.model.sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Invalid("model sha256 must be 64 hex digits".into()));
            }
        }
        if self.concepts.len() > MAX_CONCEPTS {
            return Err(too_long("concepts", self.concepts.len(), MAX_CONCEPTS));
        }
        for (i, c) in self.concepts.iter().enumerate() {
            c.validate().map_err(|e| Error::Invalid(e.to_string()))?;
            if self.concepts[..i].iter().any(|o| o.name == c.name) {
                return Err(Error::Invalid(format!("two concepts are named `{}`", c.name)));
            }
        }
        if self.interventions.len() > MAX_INTERVENTIONS {
            return Err(too_long("interventions", self.interventions.len(), MAX_INTERVENTIONS));
        }
        for (i, s) in self.interventions.iter().enumerate() {
            let n = i + 1;
            if !self.concepts.iter().any(|c| c.name == s.concept) {
                return Err(Error::Invalid(format!(
                    "intervention {n} names concept `{}`, which the setup does not define",
                    s.concept
                )));
            }
            if s.layers.is_empty() || s.layers.len() > MAX_LAYERS {
                return Err(Error::Invalid(format!(
                    "intervention {n}: give 1 to {MAX_LAYERS} layers"
                )));
            }
            if !s.strength.is_finite() {
                return Err(Error::Invalid(format!(
                    "intervention {n}: the strength is not finite"
                )));
            }
        }
        if let Some(c) = &self.condition {
            if !self.concepts.iter().any(|k| k.name == c.concept) {
                return Err(Error::Invalid(format!(
                    "the condition names concept `{}`, which the setup does not define",
                    c.concept
                )));
            }
            if c.layer >= MAX_LAYERS || !c.threshold.is_finite() {
                return Err(Error::Invalid(
                    "the condition needs a layer below 256 and a finite threshold".into(),
                ));
            }
        }
        if let Some(c) = &self.conversation {
            c.validate().map_err(|e| Error::Invalid(e.to_string()))?;
            if c.turns.len() > MAX_TURNS {
                return Err(too_long("conversation turns", c.turns.len(), MAX_TURNS));
            }
            let chars: usize =
                c.turns.iter().map(|t| t.content.len()).sum::<usize>() + c.probe.len();
            if chars > MAX_PROMPT_CHARS {
                return Err(too_long("conversation characters", chars, MAX_PROMPT_CHARS));
            }
        }
        if self.lesson.is_none() && self.view.step.is_some() {
            return Err(Error::Invalid(
                "the view names a lesson step, but there is no lesson".into(),
            ));
        }
        if let Some(l) = &self.lesson {
            let names: Vec<&str> = self.concepts.iter().map(|c| c.name.as_str()).collect();
            l.validate(&names)?;
            if let Some(s) = self.view.step {
                if s as usize >= l.steps.len() {
                    return Err(Error::Invalid(format!(
                        "the open step is {}, but the lesson has {} steps",
                        s + 1,
                        l.steps.len()
                    )));
                }
            }
        }
        if self.prompt.len() > MAX_PROMPT_CHARS {
            return Err(too_long("prompt characters", self.prompt.len(), MAX_PROMPT_CHARS));
        }
        if let Some(r) = &self.view.reading {
            if r.len() > MAX_PROMPT_CHARS {
                return Err(too_long("reading text characters", r.len(), MAX_PROMPT_CHARS));
            }
        }
        let s = &self.sampling;
        if s.max_tokens > MAX_TOKENS {
            return Err(too_long("max tokens", s.max_tokens as usize, MAX_TOKENS as usize));
        }
        if !(s.temperature.is_finite() && s.temperature >= 0.0) {
            return Err(Error::Invalid("temperature must be a finite number >= 0".into()));
        }
        if !(s.top_p.is_finite() && s.top_p > 0.0 && s.top_p <= 1.0) {
            return Err(Error::Invalid("top_p must be in (0, 1]".into()));
        }
        Ok(())
    }

    /// Read a JSON config (a saved file or a preset), checking its version and caps.
    pub fn from_json(s: &str) -> Result<Self> {
        // The version first, so a file from a newer Tiller says so rather than failing on a
        // field this build does not know.
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(default = "v1")]
            version: u32,
        }
        let p: Probe = serde_json::from_str(s).map_err(|e| Error::Json(e.to_string()))?;
        if p.version > VERSION {
            return Err(Error::Newer { version: p.version, supported: VERSION });
        }
        let c: SteeringConfig = serde_json::from_str(s).map_err(|e| Error::Json(e.to_string()))?;
        c.validate()?;
        Ok(SteeringConfig { version: VERSION, ..c })
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// What to say when the loaded model is not the one the setup was made with (None when it
    /// is, or when the setup names no hash).
    pub fn model_mismatch(&self, loaded_sha256: &str) -> Option<String> {
        let want = self.model.sha256.as_deref()?;
        (!want.eq_ignore_ascii_case(loaded_sha256)).then(|| {
            format!(
                "this setup was made with model {} (sha256 {}…); the loaded model's sha256 is {}…: \
                 directions are recomputed on it, so results may differ",
                self.model.id,
                &want[..12.min(want.len())],
                &loaded_sha256[..12.min(loaded_sha256.len())]
            )
        })
    }
}
