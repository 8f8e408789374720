//! tiller-engine: one Llama-family forward pass, generic over a [`Backend`].
//!
//! - [`backend`]: the trait a compute backend implements (CPU here; WebGPU plugs in later).
//! - [`cpu`]: the CPU backend: candle-core de-quantizes any GGML type, our own Q4_1/Q8_0
//!   kernels (AVX2 at run time, simd128 in wasm, scalar otherwise) do the quantized
//!   matrix-vector products, `gemm` does the f32 tiles.
//! - [`model`]: weights, the block (attention + SwiGLU MLP), the forward pass with hook
//!   points at every block output, and the KV cache.
//! - [`hooks`]: capture (copies kept during the pass, read after it) and intervention
//!   ([`Edit`]s any backend applies) at block outputs. No hooks, no cost.
//! - [`sampling`] and [`generate`]: greedy / temperature / top-k / top-p with a seed.
// The threaded wasm build (pinned nightly) waits on atomics with the wasm32 intrinsics.
#![cfg_attr(
    all(target_arch = "wasm32", target_feature = "atomics"),
    feature(stdarch_wasm_atomic_wait)
)]

pub mod backend;
pub mod cpu;
pub mod generate;
pub mod hooks;
pub mod model;
pub mod sampling;

pub use backend::{Backend, Precision};
pub use cpu::Cpu;
pub use generate::{generate, Generation, Generator, StopReason};
pub use hooks::{Capture, Edit, Hooks, Keep, Rows, Site};
pub use model::{LogitsFor, Model, Pass, Session};
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
    #[error(
        "this session ended with a pass run only for its hooks (LogitsFor::Hooks), which left \
         the later blocks' KV cache unwritten: start a new session"
    )]
    SessionEnded,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Run a future of the engine to its end on this thread: what native callers (the CLI, tests)
/// do with the async API. On the CPU backend every future is ready at once; a native GPU
/// read-back completes inside its first poll (it waits on the device there). In the browser
/// a WebGPU read-back can only finish once the event loop runs, so the page awaits instead:
/// waiting on one there is a bug, said as such rather than a frozen tab.
pub fn wait<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        if cfg!(target_arch = "wasm32") {
            panic!("tiller_engine::wait on a future that is not ready in the browser: await it");
        }
        std::thread::yield_now();
    }
}

/// `.wait()` on any future: [`wait`] as a method.
pub trait Wait: std::future::Future + Sized {
    fn wait(self) -> Self::Output {
        wait(self)
    }
}

impl<F: std::future::Future> Wait for F {}
