//! Messages between the page and the engine worker.

use serde::{Deserialize, Serialize};
use tiller_engine::{SamplingParams, StopReason};

/// Where the default model lives, relative to the page.
pub const DEFAULT_MODEL_URL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The worker's loader script, built by Trunk from the `tiller-worker` binary.
pub const WORKER_URL: &str = "./tiller-worker_loader.js";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// Download (with progress) and load a GGUF.
    Load {
        url: String,
    },
    Generate {
        prompt: String,
        chat: bool,
        max_tokens: usize,
        sampling: SamplingParams,
    },
    /// Stop the running generation after the current token.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Downloading,
    Parsing,
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
    },
    Ready {
        model: String,
        backend: String,
        n_layer: usize,
        d_model: usize,
        load_ms: f64,
    },
    /// The prompt as token ids (sent once before the first token).
    Prompt {
        ids: Vec<u32>,
    },
    Token {
        id: u32,
        text: String,
    },
    Done {
        ids: Vec<u32>,
        text: String,
        stop: StopReason,
        prefill_ms: f64,
        decode_tok_s: f64,
    },
    Error {
        message: String,
    },
}
