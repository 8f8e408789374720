//! Observable (unembedding) directions, after ObsProp (Tan et al. 2024, "Observable Propagation").
//!
//! The observable of a token pair (a, b) is the linear functional "logit of a minus logit of b",
//! whose direction in the final residual stream is `y = W_U[a] - W_U[b]` (rows of the LM head;
//! ObsProp folds the final norm's gain in, `g * (W_U[a] - W_U[b])`, which is what we return so
//! the direction lives in the residual stream before the norm). The coupling coefficient of two
//! directions, `y1 . y2 / |y1|^2`, is how much moving along y1 moves the observable of y2.

use crate::{dot, Result};
use tiller_engine::{Backend, Model};

/// `g * (W_U[a] - W_U[b])` for token ids a, b.
pub fn observable<B: Backend>(model: &Model<B>, a: u32, b: u32) -> Result<Vec<f32>> {
    let head = model.weights.lm_head.as_ref().unwrap_or(&model.weights.embed);
    let rows = model.backend.embed(head, &[a, b])?;
    let h = model.backend.to_host(&rows);
    let d = model.config.d_model;
    Ok(h[..d]
        .iter()
        .zip(&h[d..])
        .zip(&model.weights.out_norm_host)
        .map(|((x, y), g)| (x - y) * g)
        .collect())
}

/// `y1 . y2 / |y1|^2`
pub fn coupling(y1: &[f32], y2: &[f32]) -> f64 {
    let n = dot(y1, y1) as f64;
    if n == 0.0 {
        return 0.0;
    }
    dot(y1, y2) as f64 / n
}

#[cfg(test)]
mod tests {
    #[test]
    fn coupling_of_a_direction_with_itself_is_one() {
        let y = [1.0f32, -2.0, 0.5];
        assert!((super::coupling(&y, &y) - 1.0).abs() < 1e-12);
        assert!((super::coupling(&y, &[2.0, -4.0, 1.0]) - 2.0).abs() < 1e-12);
        assert_eq!(super::coupling(&[0.0; 3], &y), 0.0);
    }
}
