//! tiller-engine: one Llama-family forward pass, generic over a [`Backend`].
//!
//! - [`backend`]: the trait a compute backend implements (CPU here; WebGPU plugs in later).
//! - [`cpu`]: the CPU backend: candle-core de-quantizes any GGML type, our own Q4_1/Q8_0
//!   kernels (AVX2 at run time, simd128 in wasm, scalar otherwise) do the quantized
//!   matrix-vector products, `gemm` does the f32 tiles.
//! - [`model`]: weights, the block (attention + SwiGLU MLP), the forward pass with hook
//!   points at every block output, and the KV cache.
//! - [`hooks`]: capture and intervention at block outputs. No hooks, no cost.
//! - [`sampling`] and [`generate`]: greedy / temperature / top-k / top-p with a seed.

pub mod backend;
pub mod cpu;
pub mod generate;
pub mod hooks;
pub mod model;
pub mod sampling;

pub use backend::{Backend, Precision};
pub use cpu::Cpu;
pub use generate::{generate, Generation, Generator, StopReason};
pub use hooks::{Capture, Edit, Hooks, Site};
pub use model::{LogitsFor, Model, Session};
pub use sampling::{Sampler, SamplingParams};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] tiller_model::Error),
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    #[error("context is full: {used} tokens used + {asked} asked > the model's context of {max}")]
    ContextFull { used: usize, asked: usize, max: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
    #[error("invalid sampling setting: {0}")]
    Sampling(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("backend: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, Error>;
