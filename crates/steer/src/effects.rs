//! Effect metrics of an intervention.
//!
//! - KL divergence of the steered next-token distribution from the baseline one at each
//!   position, `KL(P_steered || P_base) = sum_v p_s(v) log(p_s(v) / p_b(v))`;
//! - perplexity of a text under steering, `exp(mean_t -log p(x_t+1 | x_<=t))`;
//! - concept score of a text: the mean projection, over the text's tokens, of the residual at a
//!   reading layer on a concept's unit direction, read by the *unsteered* model, so scores
//!   compare across strengths; scoring every concept gives the side effects.

use crate::{dot, unit, Result};
use tiller_engine::{Backend, Capture, Hooks, LogitsFor, Model};

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = mx + row.iter().map(|x| (*x as f64 - mx).exp()).sum::<f64>().ln();
    row.iter().map(|x| *x as f64 - lse).collect()
}

/// `KL(P_steered || P_base)` for one position's logits.
pub fn kl(steered: &[f32], base: &[f32]) -> f64 {
    let (ls, lb) = (log_softmax(steered), log_softmax(base));
    ls.iter()
        .zip(&lb)
        .map(|(s, b)| s.exp() * (s - b))
        .sum::<f64>()
        .max(0.0)
}

/// KL of the steered from the baseline next-token distribution at every position of `ids`.
pub fn kl_per_position<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
    hooks: &mut dyn Hooks,
) -> Result<Vec<f64>> {
    let v = model.config.vocab;
    let base = model.session().forward(ids, None, LogitsFor::All)?;
    let steered = model.session().forward(ids, Some(hooks), LogitsFor::All)?;
    Ok(steered
        .chunks_exact(v)
        .zip(base.chunks_exact(v))
        .map(|(s, b)| kl(s, b))
        .collect())
}

/// Perplexity of `ids` (each token predicted from the ones before it), optionally steered.
pub fn perplexity<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
    hooks: Option<&mut dyn Hooks>,
) -> Result<f64> {
    if ids.len() < 2 {
        return Ok(f64::NAN);
    }
    let v = model.config.vocab;
    let logits = model.session().forward(ids, hooks, LogitsFor::All)?;
    let nll: f64 = (0..ids.len() - 1)
        .map(|t| -log_softmax(&logits[t * v..(t + 1) * v])[ids[t + 1] as usize])
        .sum();
    Ok((nll / (ids.len() - 1) as f64).exp())
}

/// Mean projection on `unit(direction)` at `layer` over tokens `from..` of `ids`, unsteered.
pub fn concept_score<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
    from: usize,
    layer: usize,
    direction: &[f32],
) -> Result<f64> {
    let u = unit(direction);
    let mut cap = Capture::new([layer]);
    model
        .session()
        .forward(ids, Some(&mut cap), LogitsFor::Last)?;
    let d = model.config.d_model;
    let rows: Vec<&[f32]> = cap.rows[0].chunks_exact(d).skip(from).collect();
    if rows.is_empty() {
        return Ok(f64::NAN);
    }
    Ok(rows.iter().map(|r| dot(r, &u) as f64).sum::<f64>() / rows.len() as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn kl_is_zero_for_equal_and_positive_otherwise() {
        let a = [1.0f32, 2.0, 3.0];
        assert!(super::kl(&a, &a).abs() < 1e-12);
        assert!(super::kl(&[3.0, 2.0, 1.0], &a) > 0.1);
        // Shifting all logits leaves the distribution unchanged.
        assert!(super::kl(&[11.0, 12.0, 13.0], &a).abs() < 1e-9);
    }
}
