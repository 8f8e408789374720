//! Conditional steering (CAST: Lee et al. 2024, "Programming Refusal with Conditional
//! Activation Steering"): steer only when the prompt is about something, judged by a condition
//! concept's direction.
//!
//! The score is CAST's: with `h` the hidden state at the condition layer averaged over the
//! prompt's tokens and `P = c c' / (c' c)` the projector on the condition direction `c`,
//! `sim = cos(h, tanh(P h))` (IBM/activation-steering `LeashLayer._process_single_condition`
//! with `condition_threshold_comparison_mode="mean"`). It does not say which side: `P h` and `h`
//! point the same way along `c` whatever the sign of `h . c`, so the score says how much of `h`
//! lies along `c`, on either side (CAST chooses the side that counts, "larger" or "smaller", and the threshold by a grid
//! search; here [`Condition::below`] and the threshold).
//! The condition is read on the unsteered prompt, once; the interventions then run for the
//! whole generation when it is met, and none run when it is not (so the output is exactly the
//! steered one or exactly the baseline).
//!
//! Layer convention: Tiller's "layer l" is block l's output; CAST's condition layer `l` reads
//! block l's input, which is Tiller's layer `l - 1`.

use crate::{Error, Result};
use tiller_engine::{Backend, Capture, LogitsFor, Model};

/// A condition as a person chose it: a concept, the layer it is read at, a threshold, and
/// which side of it counts as met.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Condition {
    pub concept: String,
    pub layer: usize,
    pub threshold: f32,
    /// Met when the score is below the threshold ("if the input is *not* about ..."), instead
    /// of at or above it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub below: bool,
}

/// The condition's verdict on one prompt.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Check {
    pub score: f32,
    pub threshold: f32,
    pub met: bool,
}

/// CAST's similarity of a hidden state `h` with direction `c`: `cos(h, tanh(P h))`.
pub fn similarity(h: &[f32], c: &[f32]) -> f64 {
    let cc: f64 = c.iter().map(|x| (*x as f64).powi(2)).sum();
    if cc == 0.0 {
        return 0.0;
    }
    let ch: f64 = c.iter().zip(h).map(|(a, b)| *a as f64 * *b as f64).sum();
    let a = ch / cc;
    let proj: Vec<f32> = c.iter().map(|x| (a * *x as f64).tanh() as f32).collect();
    crate::cosine(h, &proj)
}

impl Condition {
    /// Check the fields against the model.
    pub fn validate(&self, n_layer: usize) -> Result<()> {
        if self.layer >= n_layer {
            return Err(Error::Layer { layer: self.layer, max: n_layer - 1 });
        }
        if !self.threshold.is_finite() {
            return Err(Error::Intervention(format!(
                "the condition's threshold must be a finite number, got {}",
                self.threshold
            )));
        }
        Ok(())
    }

    /// Score `prompt` (token ids, as the model will read them) against the condition
    /// direction `dirs[layer]` (the concept's directions by its method).
    pub async fn check<B: Backend>(
        &self,
        model: &Model<B>,
        prompt: &[u32],
        dirs: &[Vec<f32>],
    ) -> Result<Check> {
        self.validate(model.config.n_layer)?;
        let c = dirs
            .get(self.layer)
            .ok_or(Error::Layer { layer: self.layer, max: dirs.len().saturating_sub(1) })?;
        let mut cap = Capture::new([self.layer]);
        model.session().forward(prompt, Some(&mut cap), LogitsFor::Hooks).await?;
        let d = model.config.d_model;
        let rows = &cap.rows[0];
        let n = rows.len() / d;
        let mut h = vec![0f64; d];
        for r in rows.chunks_exact(d) {
            h.iter_mut().zip(r).for_each(|(a, b)| *a += *b as f64);
        }
        let h: Vec<f32> = h.iter().map(|x| (x / n.max(1) as f64) as f32).collect();
        let score = similarity(&h, c) as f32;
        let met = if self.below { score < self.threshold } else { score >= self.threshold };
        Ok(Check { score, threshold: self.threshold, met })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_matches_the_formula() {
        // h = (3, 4), c = (1, 0): P h = (3, 0), tanh -> (tanh 3, 0); cos = 3 / 5.
        assert!((similarity(&[3.0, 4.0], &[1.0, 0.0]) - 0.6).abs() < 1e-6);
        // Unsigned: the opposite side scores the same; the scale of c does not matter.
        assert!((similarity(&[-3.0, 4.0], &[2.0, 0.0]) - 0.6).abs() < 1e-6);
        // With c's entries equal, tanh(P h) stays parallel to c: the score is cos(h, c).
        let s = similarity(&[0.01, 1.0], &[1.0, 1.0]);
        let cos = 1.01 / (2f64.sqrt() * (1.0001f64).sqrt());
        assert!((s - cos).abs() < 1e-3, "{s} vs {cos}");
        assert_eq!(similarity(&[1.0, 2.0], &[0.0, 0.0]), 0.0);
    }
}
