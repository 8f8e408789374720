//! The page's state: what the visitor set up (a [`SteeringConfig`] in signals), what the
//! worker computed, and the handle to the worker. Shared with every component by context.

use leptos::prelude::*;
use std::collections::HashMap;
use tiller_engine::StopReason;
use tiller_share::config::{ModelRef, Sampling, SteeringConfig, View, VERSION};
use tiller_share::lesson::Lesson;
use tiller_steer::concept::{Concept, Read};
use tiller_steer::condition::Condition;
use tiller_steer::conversation::Conversation;
use tiller_steer::directions::Method;
use tiller_steer::plan::{InterventionSpec, OpKind};
use tiller_steer::report::{ConceptReport, Promotes};
use tiller_steer::sweep::SweepPoint;
use tiller_web::protocol::ToWorker;
use web_sys::Worker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadState {
    Loading,
    Ready,
    Error,
}

impl LoadState {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadState::Loading => "loading",
            LoadState::Ready => "ready",
            LoadState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelStatus {
    pub state: Option<LoadState>,
    pub message: String,
    /// 0..=1 when known.
    pub fraction: Option<f64>,
    pub backend: String,
    /// Where concept work runs: `webgpu` or `cpu` (the model's one device).
    pub concepts: String,
    pub sha256: String,
    pub memory: String,
}

impl ModelStatus {
    pub fn state(&self) -> LoadState {
        self.state.unwrap_or(LoadState::Loading)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunState {
    #[default]
    Idle,
    Running,
    Done,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Idle => "idle",
            RunState::Running => "running",
            RunState::Done => "done",
        }
    }
}

/// One streamed generation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Output {
    pub state: RunState,
    pub text: String,
    pub ids: Vec<u32>,
    pub stats: String,
    pub error: Option<String>,
}

impl Output {
    pub fn finish(&mut self, ids: Vec<u32>, text: String, stop: StopReason, ms: f64, tps: f64) {
        let why = match stop {
            StopReason::Eos => "end of text",
            StopReason::MaxTokens => "token limit",
            StopReason::ContextFull => "context full",
            StopReason::Cancelled => "stopped",
        };
        self.state = RunState::Done;
        self.stats =
            format!("{} tokens ({why}); prompt {ms:.0} ms, decode {tps:.1} tok/s", ids.len());
        self.ids = ids;
        self.text = text;
    }
}

/// A concept as the visitor edits it: one example per line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptDraft {
    pub name: String,
    pub positives: String,
    pub negatives: String,
    pub read: Read,
    pub method: Method,
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

impl ConceptDraft {
    pub fn from_concept(c: &Concept) -> Self {
        let (p, n): (Vec<String>, Vec<String>) = c.pairs.iter().cloned().unzip();
        ConceptDraft {
            name: c.name.clone(),
            positives: p.join("\n"),
            negatives: n.join("\n"),
            read: c.read,
            method: c.method,
        }
    }

    /// The concept, or what is wrong with the draft.
    pub fn concept(&self) -> Result<Concept, String> {
        let (p, n) = (lines(&self.positives), lines(&self.negatives));
        if p.len() != n.len() {
            return Err(format!(
                "{} positive and {} negative examples: give them in pairs, one per line",
                p.len(),
                n.len()
            ));
        }
        let c = Concept {
            name: self.name.trim().to_string(),
            pairs: p.into_iter().zip(n).collect(),
            read: self.read,
            method: self.method,
        };
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// Prompt and sampling.
#[derive(Debug, Clone, PartialEq)]
pub struct GenSettings {
    pub prompt: String,
    pub chat: bool,
    pub max_tokens: u32,
    pub temperature: f32,
    pub seed: u64,
}

impl Default for GenSettings {
    fn default() -> Self {
        GenSettings {
            prompt: "I think that the weather today is".into(),
            chat: false,
            max_tokens: 32,
            temperature: 0.0,
            seed: 0,
        }
    }
}

/// A computed concept: its report and the exact concept it came from.
#[derive(Debug, Clone)]
pub struct Computed {
    pub concept: Concept,
    pub report: ConceptReport,
    pub ms: f64,
    /// What adding the direction does to the next token, by layer (the best layer's comes
    /// with the report; others on request).
    pub promotes: HashMap<usize, Promotes>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    pub concept: String,
    pub layer: usize,
    pub tokens: Vec<String>,
    pub values: Vec<f32>,
}

/// The prompt's conditional-steering verdict from the last generation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionResult {
    pub concept: String,
    pub layer: usize,
    pub score: f32,
    pub threshold: f32,
    pub below: bool,
    pub met: bool,
}

/// The activation-patching form.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchForm {
    pub base: String,
    pub source: String,
    pub answer: String,
    pub wrong: String,
    /// Patch along this concept's direction (empty: the whole residual stream).
    pub along: String,
}

impl Default for PatchForm {
    fn default() -> Self {
        PatchForm {
            base: "The capital of France is the city of".into(),
            source: "The capital of Italy is the city of".into(),
            answer: " Rome".into(),
            wrong: " Paris".into(),
            along: String::new(),
        }
    }
}

/// Activation patching's heatmap: `recovery[layer][pos]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchResult {
    pub tokens: Vec<String>,
    pub source_tokens: Vec<String>,
    pub patched: String,
    pub ld_base: f64,
    pub ld_source: f64,
    pub recovery: Vec<Vec<f64>>,
}

/// One heatmap cell's patched next-token distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct CellResult {
    pub layer: usize,
    pub pos: usize,
    pub top: Vec<(String, f32)>,
    pub base_top: Vec<(String, f32)>,
}

/// The logit lens of a text: `top[layer][pos]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LensResult {
    pub tokens: Vec<String>,
    pub top: Vec<Vec<Vec<(String, f32)>>>,
    pub track: Option<String>,
    pub tracked: Vec<Vec<f32>>,
}

/// Each concept's reading on the probe item after each turn: `values[turn][concept]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnReadings {
    pub layer: usize,
    pub concepts: Vec<String>,
    pub values: Vec<Vec<f32>>,
}

/// Attention patterns: (tokens, layer, `heads[h][q * n + k]`).
pub type AttentionResult = (Vec<String>, usize, Vec<Vec<f32>>);

/// Everything on the page, as signals (Copy: hand it to closures freely).
#[derive(Clone, Copy)]
pub struct AppState {
    pub status: RwSignal<ModelStatus>,
    pub model_id: RwSignal<String>,
    pub concepts: RwSignal<Vec<ConceptDraft>>,
    pub selected: RwSignal<usize>,
    pub layer: RwSignal<Option<usize>>,
    pub computed: RwSignal<HashMap<String, Computed>>,
    /// The running long task's message (computing a concept, preparing, sweeping).
    pub working: RwSignal<Option<String>>,
    pub concept_error: RwSignal<Option<String>>,
    pub interventions: RwSignal<Vec<InterventionSpec>>,
    pub gen: RwSignal<GenSettings>,
    pub baseline: RwSignal<Output>,
    pub steered: RwSignal<Output>,
    pub reading_text: RwSignal<String>,
    /// Read the text as the reply to the prompt, through the chat template.
    pub reading_chat: RwSignal<bool>,
    pub reading: RwSignal<Option<Reading>>,
    pub reading_error: RwSignal<Option<String>>,
    pub sweep: RwSignal<Vec<SweepPoint>>,
    pub sweep_running: RwSignal<bool>,
    pub sweep_error: RwSignal<Option<String>>,
    pub panel: RwSignal<Option<String>>,
    pub large_text: RwSignal<bool>,
    pub share_url: RwSignal<String>,
    /// A message about the setup that was opened (a link from another model, a bad link).
    pub notice: RwSignal<Option<String>>,
    /// Conditional steering: the interventions run only when the prompt meets it.
    pub condition: RwSignal<Option<Condition>>,
    pub condition_result: RwSignal<Option<ConditionResult>>,
    pub patch_form: RwSignal<PatchForm>,
    pub patch: RwSignal<Option<PatchResult>>,
    pub patch_cell: RwSignal<Option<CellResult>>,
    pub patch_error: RwSignal<Option<String>>,
    pub lens_text: RwSignal<String>,
    pub lens_track: RwSignal<String>,
    pub lens: RwSignal<Option<LensResult>>,
    pub lens_error: RwSignal<Option<String>>,
    pub attention_text: RwSignal<String>,
    pub attention_layer: RwSignal<usize>,
    pub attention: RwSignal<Option<AttentionResult>>,
    pub attention_error: RwSignal<Option<String>>,
    /// A conversation continued baseline and steered (None: not started).
    pub conversation: RwSignal<Option<Conversation>>,
    pub turn_readings: RwSignal<Option<TurnReadings>>,
    /// The open lesson and its open step.
    pub lesson: RwSignal<Option<Lesson>>,
    pub lesson_step: RwSignal<usize>,
    /// What the open step asked to run (one of `tiller_share::lesson::RUNS`), waiting for the
    /// model and the concepts to be ready.
    pub lesson_run: RwSignal<Option<String>>,
    /// How the model opened: (ms, steps).
    pub open_timing: RwSignal<(f64, Vec<(String, f64)>)>,
    pub bench: RwSignal<Option<tiller_web::protocol::BenchReport>>,
    pub bench_error: RwSignal<Option<String>>,
    pub worker: StoredValue<Option<Worker>, LocalStorage>,
}

impl AppState {
    pub fn new() -> Self {
        AppState {
            status: RwSignal::new(ModelStatus {
                message: "starting the engine worker".into(),
                ..Default::default()
            }),
            model_id: RwSignal::new(String::new()),
            concepts: RwSignal::new(Vec::new()),
            selected: RwSignal::new(0),
            layer: RwSignal::new(None),
            computed: RwSignal::new(HashMap::new()),
            working: RwSignal::new(None),
            concept_error: RwSignal::new(None),
            interventions: RwSignal::new(Vec::new()),
            gen: RwSignal::new(GenSettings::default()),
            baseline: RwSignal::new(Output::default()),
            steered: RwSignal::new(Output::default()),
            reading_text: RwSignal::new(String::new()),
            reading_chat: RwSignal::new(false),
            reading: RwSignal::new(None),
            reading_error: RwSignal::new(None),
            sweep: RwSignal::new(Vec::new()),
            sweep_running: RwSignal::new(false),
            sweep_error: RwSignal::new(None),
            panel: RwSignal::new(None),
            large_text: RwSignal::new(false),
            share_url: RwSignal::new(String::new()),
            notice: RwSignal::new(None),
            condition: RwSignal::new(None),
            condition_result: RwSignal::new(None),
            patch_form: RwSignal::new(PatchForm::default()),
            patch: RwSignal::new(None),
            patch_cell: RwSignal::new(None),
            patch_error: RwSignal::new(None),
            lens_text: RwSignal::new(String::new()),
            lens_track: RwSignal::new(String::new()),
            lens: RwSignal::new(None),
            lens_error: RwSignal::new(None),
            attention_text: RwSignal::new(String::new()),
            attention_layer: RwSignal::new(0),
            attention: RwSignal::new(None),
            attention_error: RwSignal::new(None),
            conversation: RwSignal::new(None),
            turn_readings: RwSignal::new(None),
            lesson: RwSignal::new(None),
            lesson_step: RwSignal::new(0),
            lesson_run: RwSignal::new(None),
            open_timing: RwSignal::new((0.0, Vec::new())),
            bench: RwSignal::new(None),
            bench_error: RwSignal::new(None),
            worker: StoredValue::new_local(None),
        }
    }

    pub fn send(&self, msg: &ToWorker) {
        self.worker.with_value(|w| {
            if let (Some(w), Ok(v)) = (w, serde_wasm_bindgen::to_value(msg)) {
                let _ = w.post_message(&v);
            }
        });
    }

    pub fn ready(&self) -> bool {
        self.status.get().state() == LoadState::Ready
    }

    /// The concepts that are valid, in order.
    pub fn valid_concepts(&self) -> Vec<Concept> {
        self.concepts.get().iter().filter_map(|d| d.concept().ok()).collect()
    }

    /// The computed report of a concept, if it is up to date with its draft.
    pub fn report_for(&self, d: &ConceptDraft) -> Option<Computed> {
        let c = d.concept().ok()?;
        self.computed.get().get(&c.name).filter(|x| x.concept == c).cloned()
    }

    /// The whole setup as a config (what a share link and autosave hold).
    pub fn to_config(self) -> SteeringConfig {
        let concepts: Vec<Concept> = self.valid_concepts();
        let names: Vec<String> = concepts.iter().map(|c| c.name.clone()).collect();
        let g = self.gen.get_untracked();
        let sel = self
            .concepts
            .get_untracked()
            .get(self.selected.get_untracked())
            .map(|d| d.name.trim().to_string());
        let id = self.model_id.get_untracked();
        let sha = self.status.get_untracked().sha256;
        // Step actions may name concepts the visitor has since removed: keep the lesson only
        // while it is still valid for the setup.
        let lesson = self
            .lesson
            .get_untracked()
            .filter(|l| l.validate(&names.iter().map(String::as_str).collect::<Vec<_>>()).is_ok());
        SteeringConfig {
            version: VERSION,
            model: if id.is_empty() || id == tiller_web::protocol::DEFAULT_MODEL_URL {
                ModelRef::default()
            } else {
                ModelRef { id, sha256: (sha.len() == 64).then_some(sha) }
            },
            interventions: self
                .interventions
                .get_untracked()
                .into_iter()
                .filter(|s| names.contains(&s.concept))
                .collect(),
            concepts,
            prompt: g.prompt,
            chat: g.chat,
            sampling: Sampling {
                max_tokens: g.max_tokens,
                temperature: g.temperature,
                top_k: 0,
                top_p: 1.0,
                seed: g.seed,
            },
            view: View {
                concept: sel.filter(|n| names.contains(n)),
                layer: self.layer.get_untracked().map(|l| l as u32),
                panel: self.panel.get_untracked(),
                reading: Some(self.reading_text.get_untracked()).filter(|t| !t.is_empty()),
                large_text: self.large_text.get_untracked(),
                step: lesson.as_ref().map(|l| {
                    self.lesson_step.get_untracked().min(l.steps.len().saturating_sub(1)) as u32
                }),
            },
            condition: self.condition.get_untracked().filter(|c| names.contains(&c.concept)),
            conversation: self.conversation.get_untracked(),
            lesson,
        }
    }

    /// Replace the setup with `c` (a link, a preset, the autosave).
    pub fn apply_config(&self, c: &SteeringConfig) {
        self.concepts.set(c.concepts.iter().map(ConceptDraft::from_concept).collect());
        let sel = c
            .view
            .concept
            .as_ref()
            .and_then(|n| c.concepts.iter().position(|x| &x.name == n))
            .unwrap_or(0);
        self.selected.set(sel);
        self.layer.set(c.view.layer.map(|l| l as usize));
        self.interventions.set(c.interventions.clone());
        self.gen.set(GenSettings {
            prompt: c.prompt.clone(),
            chat: c.chat,
            max_tokens: c.sampling.max_tokens.clamp(1, 2048),
            temperature: c.sampling.temperature,
            seed: c.sampling.seed,
        });
        self.reading_text.set(c.view.reading.clone().unwrap_or_default());
        self.panel.set(c.view.panel.clone());
        self.large_text.set(c.view.large_text);
        self.condition.set(c.condition.clone());
        self.condition_result.set(None);
        self.conversation.set(c.conversation.clone());
        self.turn_readings.set(None);
        self.baseline.set(Output::default());
        self.steered.set(Output::default());
        self.reading.set(None);
        self.sweep.set(Vec::new());
        self.lesson.set(c.lesson.clone());
        self.lesson_step.set(c.view.step.unwrap_or(0) as usize);
        self.lesson_run.set(None);
    }

    /// Is everything a step may run ready: the model loaded, no task running, every valid
    /// concept computed?
    pub fn settled(&self) -> bool {
        if !self.ready() || self.working.get().is_some() {
            return false;
        }
        let have = self.computed.get();
        self.valid_concepts().iter().all(|c| have.get(&c.name).is_some_and(|x| &x.concept == c))
    }

    /// Compute every valid concept that is not computed yet, one after another (the worker
    /// runs one task at a time: the next is sent when one finishes).
    pub fn compute_next(&self) {
        if !self.ready() || self.working.get_untracked().is_some() {
            return;
        }
        let have = self.computed.get_untracked();
        let next = self
            .valid_concepts()
            .into_iter()
            .find(|c| have.get(&c.name).is_none_or(|x| &x.concept != c));
        if let Some(c) = next {
            self.working.set(Some(format!("computing `{}`", c.name)));
            self.send(&ToWorker::Analyze { concept: c });
        }
    }

    /// An `add` intervention on the most recently computed concept, at its best layer, with
    /// a strength that visibly steers: the vector's length is 0.4 of the layer's mean residual
    /// norm (a coefficient on the concept's raw direction, like `tiller generate --add`).
    pub fn default_intervention(&self, c: &Computed) -> InterventionSpec {
        let l = c.report.best_layer;
        let r =
            c.report.layers.get(l).map(|x| x.diagnostics.norm_over_mean_residual).unwrap_or(1.0);
        let raw = if r > 0.0 { 0.4 / r } else { 1.0 };
        InterventionSpec {
            concept: c.concept.name.clone(),
            op: OpKind::Add,
            layers: vec![l],
            strength: round2(raw) as f32,
            positions: Default::default(),
            selective: false,
            enabled: true,
        }
    }
}

/// Two significant digits.
pub fn round2(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return 0.0;
    }
    let m = 10f64.powf(1.0 - x.abs().log10().floor());
    (x * m).round() / m
}
