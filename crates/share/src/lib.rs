//! tiller-share: the setup as data.
//!
//! - [`config`]: the SteeringConfig (versioned) that links, files, presets and the CLI hold;
//! - [`url`]: the share link codec (compact binary, compressed, base64url, in the fragment);
//! - [`wire`]: the frozen binary structs of each link version;
//! - [`lesson`]: guided steps over a setup (lessons are presets with steps);
//! - [`cvec`]: llama.cpp control-vector GGUF files, out and in.

pub mod config;
pub mod cvec;
pub mod lesson;
pub mod url;
pub mod wire;

pub use config::SteeringConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid setup: {0}")]
    Invalid(String),
    #[error("setup file: {0}")]
    Json(String),
    #[error("share link: {0}")]
    Link(String),
    #[error(
        "this setup is from a newer Tiller (format version {version}); this build reads versions up to {supported}: update Tiller to open it"
    )]
    Newer { version: u32, supported: u32 },
    #[error("control vector: {0}")]
    ControlVector(String),
}

pub type Result<T> = std::result::Result<T, Error>;
