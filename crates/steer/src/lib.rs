//! tiller-steer: concepts, directions and interventions.
//!
//! - [`concept`]: a concept is contrast pairs (positive, negative); [`concept::capture`] runs
//!   them through the engine and reads the residual stream at every layer (last token, or the
//!   mean over tokens).
//! - [`directions`]: mean difference and PCA of pair differences, per layer.
//! - [`intervene`]: add, ablate, clamp and norm-preserving rotation as engine hooks, with
//!   position filters; they compose.
//! - [`patch`]: activation patching (interchange interventions) and interchange-intervention
//!   accuracy; [`lens`]: the logit lens; [`condition`]: conditional steering (CAST);
//!   [`conversation`]: conversations and per-turn readings; [`attention`]: attention patterns.
//!
//! Conventions (as ../shared/reference): "layer l" is the residual stream at the output of
//! block l, 0-based.

pub mod attention;
pub mod concept;
pub mod condition;
pub mod conversation;
pub mod diagnostics;
pub mod directions;
pub mod effects;
pub mod geometry;
pub mod heldout;
pub mod intervene;
pub mod lens;
pub mod lineas;
pub mod observable;
pub mod patch;
pub mod plan;
pub mod probe;
pub mod report;
pub mod selective;
pub mod snmf;
pub mod stats;
pub mod sweep;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] tiller_engine::Error),
    #[error("concept `{name}`: {msg}")]
    Concept { name: String, msg: String },
    #[error("layer {layer} is out of range: the model has layers 0..={max}")]
    Layer { layer: usize, max: usize },
    #[error("invalid intervention: {0}")]
    Intervention(String),
    #[error("linear algebra: {0}")]
    LinAlg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
    if n == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| (*x as f64 / n) as f32).collect()
}

pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
