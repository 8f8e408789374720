//! Messages between the page and the engine worker.

use serde::{Deserialize, Serialize};
use tiller_engine::{SamplingParams, StopReason};
use tiller_steer::concept::Concept;
use tiller_steer::condition::Condition;
use tiller_steer::conversation::Conversation;
use tiller_steer::plan::InterventionSpec;
use tiller_steer::report::{ConceptReport, Promotes};
use tiller_steer::sweep::SweepPoint;

/// Where the default model lives, relative to the page.
pub const DEFAULT_MODEL_URL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The worker's loader script, built by Trunk from the `tiller-worker` binary (one thread).
pub const WORKER_URL: &str = "./tiller-worker_loader.js";
/// The threaded worker's loader (the same binary built with wasm atomics by
/// `scripts/build-threads.sh`): used when the page is cross-origin isolated.
pub const THREADED_WORKER_URL: &str = "./tiller-worker-mt_loader.js";
/// How a single-threaded worker started in place of a failed threaded one is named: this, then
/// why (the worker says it in the backend line).
pub const FALLBACK_NAME: &str = "fallback: ";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// Which backend generation may use: WebGPU when `webgpu` and the browser offers a
    /// hardware adapter, or any adapter when `force` (`?backend=webgpu`); else the CPU, and
    /// `Ready` says why. Sent before the first `Load`.
    Backend {
        webgpu: bool,
        /// Use WebGPU even on a software adapter (SwiftShader, llvmpipe), which is slower than
        /// the CPU backend (tests use it to run the GPU path).
        #[serde(default)]
        force: bool,
        /// Test hook (`?lose-gpu-after=N`): destroy the WebGPU device after N generated tokens,
        /// as a driver reset would, to exercise the fallback.
        #[serde(default)]
        lose_after: Option<usize>,
        /// Test hook (`?lose-gpu-in=analyze`): destroy the WebGPU device in the middle of the
        /// next concept compute (after the capture, before the diagnostics).
        #[serde(default)]
        lose_in_analyze: bool,
    },
    /// Download (with progress, through the Cache API) and load a GGUF.
    Load {
        url: String,
    },
    /// Load a GGUF the visitor dropped or picked.
    LoadBytes {
        name: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Capture a concept, compute its direction by its method at every layer, and every
    /// diagnostic.
    Analyze {
        concept: Concept,
    },
    /// Generate the baseline and, when an intervention is enabled, the steered continuation,
    /// token by token side by side.
    Generate {
        prompt: String,
        chat: bool,
        max_tokens: usize,
        sampling: SamplingParams,
        concepts: Vec<Concept>,
        interventions: Vec<InterventionSpec>,
        /// Conditional steering (CAST): the interventions run only when the prompt meets it.
        #[serde(default)]
        condition: Option<Condition>,
    },
    /// Continue a conversation: the next assistant turn, baseline and steered (the
    /// interventions acting from turn `steer_from` on), after the readings of each concept on
    /// the probe item after each turn, at `layer`.
    Converse {
        conversation: Conversation,
        layer: usize,
        max_tokens: usize,
        sampling: SamplingParams,
        concepts: Vec<Concept>,
        interventions: Vec<InterventionSpec>,
    },
    /// Activation patching at every layer x position of `base` from `source` (the whole
    /// residual stream, or only its component along `concept`'s direction).
    Patch {
        patch: PatchRequest,
    },
    /// The base run's next-token distribution with one patch (a heatmap cell).
    PatchCell {
        patch: PatchRequest,
        layer: usize,
        pos: usize,
    },
    /// The logit lens of `text`: every layer's top tokens at every position.
    Lens {
        text: String,
        chat: bool,
        /// A token (its text, or #ID) whose probability is followed across layers.
        track: Option<String>,
    },
    /// Every head's attention pattern at `layer` over `text`.
    Attention {
        text: String,
        layer: usize,
    },
    /// Project every token of `text` on a concept's direction at `layer`.
    Read {
        text: String,
        concept: Concept,
        layer: usize,
        /// Read `text` as the assistant's reply to this user prompt, through the chat template
        /// (the conversation's turns then show how the projection drifts).
        chat_prompt: Option<String>,
    },
    /// Sweep one intervention's strength.
    Sweep {
        prompt: String,
        chat: bool,
        max_tokens: usize,
        concepts: Vec<Concept>,
        intervention: InterventionSpec,
        strengths: Vec<f32>,
        read_layer: usize,
    },
    /// What adding a computed concept's direction at `layer` does to the next token.
    Promotes {
        concept: Concept,
        layer: usize,
    },
    /// An `add` intervention as a llama.cpp control-vector GGUF: the concept's direction at
    /// each layer times `strength` (layer 0 cannot be written).
    Export {
        concept: Concept,
        layers: Vec<usize>,
        strength: f32,
    },
    /// Stop the running task after its current step.
    /// The page's benchmark: prefill and decode of a fixed prompt, then `concept`'s compute.
    Bench {
        concept: Concept,
    },
    Stop,
}

/// An activation-patching question: base and source prompts of equal token count, the
/// answer and wrong tokens (each the text of one token, or #ID), and what is patched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchRequest {
    pub base: String,
    pub source: String,
    pub chat: bool,
    pub answer: String,
    pub wrong: String,
    /// Patch only the component along this concept's direction (None: the whole residual).
    pub concept: Option<Concept>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Downloading,
    Parsing,
}

/// Which output a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Baseline,
    Steered,
}

/// What failed, so the page shows the error where it belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Load,
    Analyze,
    Generate,
    Read,
    Sweep,
    Export,
    Promotes,
    Patch,
    Lens,
    Attention,
    Bench,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    /// The worker is up and listening.
    Started,
    /// The benchmark's figures.
    Bench {
        report: BenchReport,
    },
    Progress {
        stage: Stage,
        done: f64,
        total: Option<f64>,
        /// The bytes came from the Cache API.
        cached: bool,
    },
    Ready {
        model: String,
        /// The architecture (`general.architecture`: llama, gemma3, ...).
        #[serde(default)]
        family: String,
        /// Where the model runs (the CPU backend's name, or the WebGPU adapter's).
        backend: String,
        /// Where concept work (capture, directions, diagnostics, reading, sweeps) runs:
        /// `webgpu` or `cpu`, the same device as generation (the worker holds one copy).
        #[serde(default)]
        concepts: String,
        /// Why generation is on the CPU when WebGPU was wanted (no adapter, device lost...).
        #[serde(default)]
        fallback: Option<String>,
        n_layer: usize,
        d_model: usize,
        load_ms: f64,
        /// sha256 of the GGUF (hex).
        sha256: String,
        /// Bytes of the GGUF file.
        memory_bytes: f64,
        /// The worker's wasm memory once loaded: its peak, since wasm memory never shrinks
        /// (the file's bytes and the weights were both held while loading).
        #[serde(default)]
        wasm_bytes: f64,
        /// Bytes of GPU buffers once loaded (the weights; 0 on the CPU).
        #[serde(default)]
        gpu_bytes: f64,
        /// What opening took, step by step: (what, ms).
        #[serde(default)]
        steps: Vec<(String, f64)>,
    },
    /// The model moved from WebGPU to the CPU (the device failed or was lost): it was loaded
    /// again there and `task` runs again from the start.
    Fallback {
        backend: String,
        reason: String,
        task: Task,
    },
    /// A long task moved on: `stage` says what it is doing.
    Working {
        task: Task,
        stage: String,
        done: usize,
        total: usize,
    },
    Analyzed {
        report: ConceptReport,
        ms: f64,
    },
    /// The prompt as token ids (sent once before the first token).
    Prompt {
        ids: Vec<u32>,
    },
    Token {
        stream: Stream,
        id: u32,
        text: String,
    },
    Done {
        stream: Stream,
        ids: Vec<u32>,
        text: String,
        stop: StopReason,
        prefill_ms: f64,
        decode_tok_s: f64,
        /// On a GPU: compute dispatches and command submissions per decoded token (both
        /// streams' tokens counted; 0 on the CPU).
        #[serde(default)]
        dispatches_per_token: f64,
        #[serde(default)]
        submits_per_token: f64,
    },
    Reading {
        layer: usize,
        concept: String,
        tokens: Vec<String>,
        values: Vec<f32>,
    },
    /// A file for the visitor to save.
    File {
        name: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// One point of the sweep or (`point.control`) of its random-direction control.
    SweepPoint {
        point: SweepPoint,
    },
    Promotes {
        concept: String,
        promotes: Promotes,
    },
    SweepDone,
    /// The prompt's conditional-steering verdict (sent before the streams when the generation
    /// has a condition; when it is not met only the baseline runs).
    Condition {
        concept: String,
        layer: usize,
        score: f32,
        threshold: f32,
        below: bool,
        met: bool,
    },
    /// The conversation's readings: `values[turn][concept]`, the probe item's projection on
    /// each concept's direction at `layer` after each turn.
    TurnReadings {
        layer: usize,
        concepts: Vec<String>,
        values: Vec<Vec<f32>>,
    },
    /// Activation patching's result: `recovery[layer][pos]`.
    Patched {
        tokens: Vec<String>,
        source_tokens: Vec<String>,
        /// "residual" or "direction:NAME".
        patched: String,
        ld_base: f64,
        ld_source: f64,
        recovery: Vec<Vec<f64>>,
    },
    /// One patched run's next-token distribution: the top tokens and probabilities.
    PatchCell {
        layer: usize,
        pos: usize,
        top: Vec<(String, f32)>,
        /// The unpatched base's, for comparison.
        base_top: Vec<(String, f32)>,
    },
    /// The logit lens: `top[layer][pos]` = the top tokens (text, probability), best first.
    Lens {
        tokens: Vec<String>,
        top: Vec<Vec<Vec<(String, f32)>>>,
        /// The tracked token and its probability at `[layer][pos]`.
        track: Option<String>,
        tracked: Vec<Vec<f32>>,
    },
    /// Attention patterns: `heads[h][q * n + k]`.
    Attention {
        tokens: Vec<String>,
        layer: usize,
        heads: Vec<Vec<f32>>,
    },
    Error {
        task: Task,
        message: String,
    },
}

/// What the page's benchmark measured on the loaded model's device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub backend: String,
    pub prompt_tokens: usize,
    /// The prompt's forward pass and its first token.
    pub prefill_ms: f64,
    pub prefill_tok_s: f64,
    /// Greedy tokens decoded after the first.
    pub decode_tokens: usize,
    pub decode_tok_s: f64,
    /// WebGPU only (0 on the CPU).
    pub dispatches_per_token: f64,
    pub submits_per_token: f64,
    pub concept: String,
    pub concept_pairs: usize,
    /// Capture, directions and every diagnostic, as *Compute* does it.
    pub concept_ms: f64,
    /// Where that time went: each stage of the compute and its milliseconds, in order.
    #[serde(default)]
    pub concept_stages_ms: Vec<(String, f64)>,
}
