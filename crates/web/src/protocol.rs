//! Messages between the page and the engine worker.

use serde::{Deserialize, Serialize};
use tiller_engine::{SamplingParams, StopReason};
use tiller_steer::concept::Concept;
use tiller_steer::plan::InterventionSpec;
use tiller_steer::report::{ConceptReport, Promotes};
use tiller_steer::sweep::SweepPoint;

/// Where the default model lives, relative to the page.
pub const DEFAULT_MODEL_URL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The worker's loader script, built by Trunk from the `tiller-worker` binary.
pub const WORKER_URL: &str = "./tiller-worker_loader.js";

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
    Load { url: String },
    /// Load a GGUF the visitor dropped or picked.
    LoadBytes {
        name: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Capture a concept, compute its direction by its method at every layer, and every
    /// diagnostic.
    Analyze { concept: Concept },
    /// Generate the baseline and, when an intervention is enabled, the steered continuation,
    /// token by token side by side.
    Generate {
        prompt: String,
        chat: bool,
        max_tokens: usize,
        sampling: SamplingParams,
        concepts: Vec<Concept>,
        interventions: Vec<InterventionSpec>,
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
    Promotes { concept: Concept, layer: usize },
    /// An `add` intervention as a llama.cpp control-vector GGUF: the concept's direction at
    /// each layer times `strength` (layer 0 cannot be written).
    Export { concept: Concept, layers: Vec<usize>, strength: f32 },
    /// Stop the running task after its current step.
    Stop,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    /// The worker is up and listening.
    Started,
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
    Error {
        task: Task,
        message: String,
    },
}
