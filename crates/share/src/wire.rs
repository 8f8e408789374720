//! The binary forms of the config inside share links, one frozen struct set per version.
//!
//! Never change a released version's structs or codes: add `V2` beside `V1`, make `encode`
//! write it, and keep `V1::into_config` working (the frozen corpus in tests/data/share-links
//! checks that every released link still decodes to the same setup).
//!
//! V1 (Tiller 0.1): postcard of [`V1`]. Compact choices: the default model is an empty id;
//! concepts and ops are small codes; an intervention names its concept by index; layers are
//! runs (start, count).
//!
//! V2 (Tiller 0.2): the same structs; the code tables grow by the RepE PCA method (5) and the
//! Selective Steering op (6). A setup that uses neither is still written as V1, so links stay
//! readable by the previous release; one that does is written as V2, which that release
//! reports as "from a newer Tiller" instead of misreading a code.
//!
//! V3 (Tiller 0.3): [`V3`], the V1 struct followed by a conditional-steering condition and a
//! conversation, with V2's code tables. Written only for a setup that has one of them.
//!
//! V4 (Tiller 0.4): [`V4`], the V3 struct followed by a lesson (guided steps) and its open
//! step, with V2's code tables. Written only for a setup with a lesson.

use crate::config::{ModelRef, Sampling, SteeringConfig, View};
use crate::lesson::{Action, Lesson, Step};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tiller_model::ChatMessage;
use tiller_steer::concept::{Concept, Read};
use tiller_steer::condition::Condition;
use tiller_steer::conversation::{Conversation, ROLES};
use tiller_steer::directions::Method;
use tiller_steer::intervene::Positions;
use tiller_steer::plan::{InterventionSpec, OpKind};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct V1 {
    /// "" = the default model.
    model_id: String,
    model_sha256: Option<[u8; 32]>,
    concepts: Vec<ConceptV1>,
    interventions: Vec<InterventionV1>,
    prompt: String,
    chat: bool,
    sampling: SamplingV1,
    view: ViewV1,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ConceptV1 {
    name: String,
    pairs: Vec<(String, String)>,
    /// 0 last token, 1 mean.
    read: u8,
    /// 0 mean-diff, 1 pca, 2 probe, 3 svd, 4 snmf.
    method: u8,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct InterventionV1 {
    concept: u16,
    /// 0 add, 1 add_unit, 2 ablate, 3 clamp, 4 rotate, 5 affine.
    op: u8,
    /// (first layer, count) runs.
    layers: Vec<(u16, u16)>,
    strength: f32,
    positions: PositionsV1,
    selective: bool,
    enabled: bool,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum PositionsV1 {
    All,
    Prompt,
    Generated,
    /// start, end (u32::MAX = no end).
    Range(u32, u32),
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SamplingV1 {
    max_tokens: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    seed: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ViewV1 {
    concept: Option<u16>,
    layer: Option<u32>,
    panel: Option<String>,
    reading: Option<String>,
    large_text: bool,
}

/// V3: V1's fields, then the condition (conditional steering).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct V3 {
    pub base: V1,
    pub condition: Option<ConditionV3>,
    pub conversation: Option<ConversationV3>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ConversationV3 {
    /// (role: 0 system, 1 user, 2 assistant; content)
    turns: Vec<(u8, String)>,
    steer_from: u16,
    probe: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ConditionV3 {
    concept: u16,
    layer: u16,
    threshold: f32,
    below: bool,
}

/// V4: V3's fields, then the lesson and its open step.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct V4 {
    pub base: V3,
    pub lesson: Option<LessonV4>,
    pub step: Option<u16>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct LessonV4 {
    title: String,
    steps: Vec<StepV4>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StepV4 {
    text: String,
    todo: String,
    question: String,
    expect: String,
    /// Index into the concepts.
    concept: Option<u16>,
    layer: Option<u16>,
    panel: Option<String>,
    run: Option<String>,
}

/// The method and op codes of one wire version (append only: a code never changes meaning).
pub struct Codes {
    pub version: u8,
    methods: &'static [Method],
    ops: &'static [OpKind],
    /// Whether the version carries a condition and a conversation.
    condition: bool,
    /// Whether the version carries a lesson.
    lesson: bool,
}

/// V1's tables, frozen.
pub const CODES_V1: Codes = Codes {
    version: 1,
    methods: &[Method::MeanDiff, Method::Pca, Method::Probe, Method::Svd, Method::Snmf],
    ops: &[
        OpKind::Add,
        OpKind::AddUnit,
        OpKind::Ablate,
        OpKind::Clamp,
        OpKind::Rotate,
        OpKind::Affine,
    ],
    condition: false,
    lesson: false,
};

/// V2's method table: V1's, then RepE's PCA.
const METHODS_V2: &[Method] =
    &[Method::MeanDiff, Method::Pca, Method::Probe, Method::Svd, Method::Snmf, Method::PcaRepe];
/// V2's op table: V1's, then Selective Steering.
const OPS_V2: &[OpKind] = &[
    OpKind::Add,
    OpKind::AddUnit,
    OpKind::Ablate,
    OpKind::Clamp,
    OpKind::Rotate,
    OpKind::Affine,
    OpKind::SelectiveSteering,
];

/// V2's tables: V1's and then the new variants.
pub const CODES_V2: Codes =
    Codes { version: 2, methods: METHODS_V2, ops: OPS_V2, condition: false, lesson: false };

/// V3's tables: V2's (V3 adds the condition).
pub const CODES_V3: Codes =
    Codes { version: 3, methods: METHODS_V2, ops: OPS_V2, condition: true, lesson: false };

/// V4's tables: V2's (V4 adds the lesson).
pub const CODES_V4: Codes =
    Codes { version: 4, methods: METHODS_V2, ops: OPS_V2, condition: true, lesson: true };

/// Every wire version this build reads, oldest first.
pub const VERSIONS: [&Codes; 4] = [&CODES_V1, &CODES_V2, &CODES_V3, &CODES_V4];

impl Codes {
    /// Can this version carry every method and op of `c`?
    pub fn carries(&self, c: &SteeringConfig) -> bool {
        c.concepts.iter().all(|k| self.methods.contains(&k.method))
            && c.interventions.iter().all(|s| self.ops.contains(&s.op))
            && (self.condition || (c.condition.is_none() && c.conversation.is_none()))
            && (self.lesson || (c.lesson.is_none() && c.view.step.is_none()))
    }
}

fn code<T: PartialEq + std::fmt::Debug>(table: &[T], x: &T, version: u8) -> Result<u8> {
    table
        .iter()
        .position(|t| t == x)
        .map(|i| i as u8)
        .ok_or_else(|| Error::Invalid(format!("{x:?} has no code in share-link version {version}")))
}

fn from_code<T: Copy>(table: &[T], c: u8, what: &str) -> Result<T> {
    table.get(c as usize).copied().ok_or_else(|| Error::Link(format!("unknown {what} code {c}")))
}

fn runs(layers: &[usize]) -> Result<Vec<(u16, u16)>> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &l in layers {
        let l = u16::try_from(l).map_err(|_| Error::Invalid(format!("layer {l} is too large")))?;
        match out.last_mut() {
            Some((s, n)) if s.checked_add(*n) == Some(l) && *n < u16::MAX => *n += 1,
            _ => out.push((l, 1)),
        }
    }
    Ok(out)
}

fn unruns(r: &[(u16, u16)]) -> Result<Vec<usize>> {
    let total: usize = r.iter().map(|&(_, n)| n as usize).sum();
    if total > crate::config::MAX_LAYERS {
        return Err(Error::Link(format!("an intervention lists {total} layers")));
    }
    Ok(r.iter().flat_map(|&(s, n)| s as usize..s as usize + n as usize).collect())
}

fn sha_bytes(h: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if h.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn sha_hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl V1 {
    pub const VERSION: u8 = 1;

    /// The setup in the wire structs with `codes`' tables (V1's or V2's).
    pub fn from_config(c: &SteeringConfig, codes: &Codes) -> Result<V1> {
        let default = ModelRef::default();
        let (model_id, model_sha256) = if c.model == default {
            (String::new(), None)
        } else {
            (c.model.id.clone(), c.model.sha256.as_deref().and_then(sha_bytes))
        };
        let index = |name: &str| -> Result<u16> {
            c.concepts
                .iter()
                .position(|x| x.name == name)
                .map(|i| i as u16)
                .ok_or_else(|| Error::Invalid(format!("no concept named `{name}`")))
        };
        Ok(V1 {
            model_id,
            model_sha256,
            concepts: c
                .concepts
                .iter()
                .map(|k| {
                    Ok(ConceptV1 {
                        name: k.name.clone(),
                        pairs: k.pairs.clone(),
                        read: (k.read == Read::Mean) as u8,
                        method: code(codes.methods, &k.method, codes.version)?,
                    })
                })
                .collect::<Result<_>>()?,
            interventions: c
                .interventions
                .iter()
                .map(|s| {
                    Ok(InterventionV1 {
                        concept: index(&s.concept)?,
                        op: code(codes.ops, &s.op, codes.version)?,
                        layers: runs(&s.layers)?,
                        strength: s.strength,
                        positions: match s.positions {
                            Positions::All => PositionsV1::All,
                            Positions::Prompt => PositionsV1::Prompt,
                            Positions::Generated => PositionsV1::Generated,
                            Positions::Range { start, end } => PositionsV1::Range(
                                u32::try_from(start).unwrap_or(u32::MAX),
                                u32::try_from(end).unwrap_or(u32::MAX),
                            ),
                        },
                        selective: s.selective,
                        enabled: s.enabled,
                    })
                })
                .collect::<Result<_>>()?,
            prompt: c.prompt.clone(),
            chat: c.chat,
            sampling: SamplingV1 {
                max_tokens: c.sampling.max_tokens,
                temperature: c.sampling.temperature,
                top_k: c.sampling.top_k,
                top_p: c.sampling.top_p,
                seed: c.sampling.seed,
            },
            view: ViewV1 {
                concept: match &c.view.concept {
                    Some(n) => Some(index(n)?),
                    None => None,
                },
                layer: c.view.layer,
                panel: c.view.panel.clone(),
                reading: c.view.reading.clone(),
                large_text: c.view.large_text,
            },
        })
    }

    /// Back to a setup, reading codes with `codes`' tables.
    pub fn into_config(self, codes: &Codes) -> Result<SteeringConfig> {
        let concepts: Vec<Concept> = self
            .concepts
            .into_iter()
            .map(|k| {
                Ok(Concept {
                    name: k.name,
                    pairs: k.pairs,
                    read: match k.read {
                        0 => Read::LastToken,
                        1 => Read::Mean,
                        r => return Err(Error::Link(format!("unknown read code {r}"))),
                    },
                    method: from_code(codes.methods, k.method, "method")?,
                })
            })
            .collect::<Result<_>>()?;
        let name = |i: u16| -> Result<String> {
            concepts.get(i as usize).map(|c| c.name.clone()).ok_or_else(|| {
                Error::Link(format!("an intervention names concept {i}, not in the link"))
            })
        };
        let interventions = self
            .interventions
            .into_iter()
            .map(|s| {
                Ok(InterventionSpec {
                    concept: name(s.concept)?,
                    op: from_code(codes.ops, s.op, "op")?,
                    layers: unruns(&s.layers)?,
                    strength: s.strength,
                    positions: match s.positions {
                        PositionsV1::All => Positions::All,
                        PositionsV1::Prompt => Positions::Prompt,
                        PositionsV1::Generated => Positions::Generated,
                        PositionsV1::Range(a, b) => Positions::Range {
                            start: a as usize,
                            end: if b == u32::MAX { usize::MAX } else { b as usize },
                        },
                    },
                    selective: s.selective,
                    enabled: s.enabled,
                })
            })
            .collect::<Result<_>>()?;
        let model = if self.model_id.is_empty() {
            ModelRef::default()
        } else {
            ModelRef { id: self.model_id, sha256: self.model_sha256.as_ref().map(sha_hex) }
        };
        Ok(SteeringConfig {
            version: crate::config::VERSION,
            model,
            view: View {
                concept: match self.view.concept {
                    Some(i) => Some(name(i)?),
                    None => None,
                },
                layer: self.view.layer,
                panel: self.view.panel,
                reading: self.view.reading,
                large_text: self.view.large_text,
                step: None,
            },
            condition: None,
            conversation: None,
            lesson: None,
            concepts,
            interventions,
            prompt: self.prompt,
            chat: self.chat,
            sampling: Sampling {
                max_tokens: self.sampling.max_tokens,
                temperature: self.sampling.temperature,
                top_k: self.sampling.top_k,
                top_p: self.sampling.top_p,
                seed: self.sampling.seed,
            },
        })
    }
}

impl V3 {
    pub fn from_config(c: &SteeringConfig, codes: &Codes) -> Result<V3> {
        let condition =
            match &c.condition {
                Some(k) => Some(ConditionV3 {
                    concept: c.concepts.iter().position(|x| x.name == k.concept).ok_or_else(
                        || Error::Invalid(format!("no concept named `{}`", k.concept)),
                    )? as u16,
                    layer: u16::try_from(k.layer)
                        .map_err(|_| Error::Invalid(format!("layer {} is too large", k.layer)))?,
                    threshold: k.threshold,
                    below: k.below,
                }),
                None => None,
            };
        let conversation = match &c.conversation {
            Some(k) => Some(ConversationV3 {
                turns: k
                    .turns
                    .iter()
                    .map(|t| {
                        let role = ROLES.iter().position(|r| *r == t.role).ok_or_else(|| {
                            Error::Invalid(format!("role `{}` has no code", t.role))
                        })?;
                        Ok((role as u8, t.content.clone()))
                    })
                    .collect::<Result<_>>()?,
                steer_from: u16::try_from(k.steer_from)
                    .map_err(|_| Error::Invalid("steer_from is too large".into()))?,
                probe: k.probe.clone(),
            }),
            None => None,
        };
        Ok(V3 { base: V1::from_config(c, codes)?, condition, conversation })
    }

    pub fn into_config(self, codes: &Codes) -> Result<SteeringConfig> {
        let mut c = self.base.into_config(codes)?;
        if let Some(k) = self.condition {
            let concept = c.concepts.get(k.concept as usize).map(|x| x.name.clone());
            c.condition = Some(Condition {
                concept: concept.ok_or_else(|| {
                    Error::Link(format!(
                        "the condition names concept {}, not in the link",
                        k.concept
                    ))
                })?,
                layer: k.layer as usize,
                threshold: k.threshold,
                below: k.below,
            });
        }
        if let Some(k) = self.conversation {
            c.conversation = Some(Conversation {
                turns: k
                    .turns
                    .into_iter()
                    .map(|(r, content)| {
                        let role = ROLES
                            .get(r as usize)
                            .ok_or_else(|| Error::Link(format!("unknown role code {r}")))?;
                        Ok(ChatMessage { role: role.to_string(), content })
                    })
                    .collect::<Result<_>>()?,
                steer_from: k.steer_from as usize,
                probe: k.probe,
            });
        }
        Ok(c)
    }
}

impl V4 {
    pub fn from_config(c: &SteeringConfig, codes: &Codes) -> Result<V4> {
        let lesson = match &c.lesson {
            Some(l) => Some(LessonV4 {
                title: l.title.clone(),
                steps: l
                    .steps
                    .iter()
                    .map(|s| {
                        let a = &s.action;
                        Ok(StepV4 {
                            text: s.text.clone(),
                            todo: s.todo.clone(),
                            question: s.question.clone(),
                            expect: s.expect.clone(),
                            concept: match &a.concept {
                                Some(n) => {
                                    Some(c.concepts.iter().position(|x| &x.name == n).ok_or_else(
                                        || Error::Invalid(format!("no concept named `{n}`")),
                                    )? as u16)
                                }
                                None => None,
                            },
                            layer: match a.layer {
                                Some(l) => Some(u16::try_from(l).map_err(|_| {
                                    Error::Invalid(format!("layer {l} is too large"))
                                })?),
                                None => None,
                            },
                            panel: a.panel.clone(),
                            run: a.run.clone(),
                        })
                    })
                    .collect::<Result<_>>()?,
            }),
            None => None,
        };
        let step = match c.view.step {
            Some(s) => Some(
                u16::try_from(s).map_err(|_| Error::Invalid(format!("step {s} is too large")))?,
            ),
            None => None,
        };
        Ok(V4 { base: V3::from_config(c, codes)?, lesson, step })
    }

    pub fn into_config(self, codes: &Codes) -> Result<SteeringConfig> {
        let mut c = self.base.into_config(codes)?;
        if let Some(l) = self.lesson {
            let steps = l
                .steps
                .into_iter()
                .map(|s| {
                    let concept = match s.concept {
                        Some(i) => {
                            Some(c.concepts.get(i as usize).map(|x| x.name.clone()).ok_or_else(
                                || {
                                    Error::Link(format!(
                                        "a lesson step names concept {i}, not in the link"
                                    ))
                                },
                            )?)
                        }
                        None => None,
                    };
                    Ok(Step {
                        text: s.text,
                        todo: s.todo,
                        question: s.question,
                        expect: s.expect,
                        action: Action {
                            concept,
                            layer: s.layer.map(u32::from),
                            panel: s.panel,
                            run: s.run,
                        },
                    })
                })
                .collect::<Result<_>>()?;
            c.lesson = Some(Lesson { title: l.title, steps });
        }
        c.view.step = self.step.map(u32::from);
        Ok(c)
    }
}
