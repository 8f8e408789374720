//! tiller-model: everything about a model file that is not compute.
//!
//! - [`gguf`]: a GGUF parser over a byte slice that caps every length it reads from the
//!   file, so a corrupt or hostile file is an `Err`, never a panic or a huge allocation.
//! - [`config`]: the hyper-parameters and block configuration of each family, checked against
//!   the tensors present.
//! - [`tokenizer`]: a `tokenizers::Tokenizer` built from the GGUF's `tokenizer.ggml.*` keys.
//! - [`chat`]: the GGUF's Jinja chat template, rendered with minijinja.
//!
//! No IO: callers hand over bytes (a file read natively, a fetch body in the browser).

pub mod chat;
pub mod config;
pub mod gguf;
pub mod gguf_write;
pub mod tokenizer;

pub use chat::{ChatMessage, ChatTemplate};
pub use config::{Activation, BlockConfig, ModelConfig, NormKind, RopeStyle};
pub use gguf::{GgmlType, Gguf, TensorInfo, Value};
pub use tokenizer::Tokenizer;

/// Everything that can go wrong while reading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a GGUF file: {0}")]
    Format(String),
    #[error("GGUF file is truncated: {0}")]
    Truncated(String),
    #[error("GGUF limit exceeded: {0}")]
    Limit(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("missing metadata key `{0}`")]
    MissingKey(String),
    #[error("metadata key `{key}` has the wrong type: expected {expected}")]
    WrongType { key: String, expected: &'static str },
    #[error("model is inconsistent: {0}")]
    Shape(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("dequantizing tensor `{name}`: {msg}")]
    Dequant { name: String, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;
