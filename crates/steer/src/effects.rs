//! Effect metrics of an intervention.
//!
//! - KL divergence of the steered next-token distribution from the baseline one at each
//!   position, `KL(P_steered || P_base) = sum_v p_s(v) log(p_s(v) / p_b(v))`;
//! - perplexity of a text under steering, `exp(mean_t -log p(x_t+1 | x_<=t))`;
//! - concept score of a text: the mean projection, over the text's tokens, of the residual at a
//!   reading layer on a concept's unit direction, read by the *unsteered* model, so scores
//!   compare across strengths; [`crate::sweep`] reports it as a z-score against the baseline
//!   tokens' spread, so concepts compare with each other;
//! - what a direction promotes: the mean change, over some contexts, of the next-token
//!   log-probabilities when the direction is added at its layer ([`next_token_shift`]).

use crate::intervene::{Intervention, Op, Plan, Positions};
use crate::{dot, unit, Result};
use tiller_engine::{Backend, Capture, LogitsFor, Model, Site};

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = mx + row.iter().map(|x| (*x as f64 - mx).exp()).sum::<f64>().ln();
    row.iter().map(|x| *x as f64 - lse).collect()
}

/// `KL(P_steered || P_base)` for one position's logits.
pub fn kl(steered: &[f32], base: &[f32]) -> f64 {
    let (ls, lb) = (log_softmax(steered), log_softmax(base));
    ls.iter().zip(&lb).map(|(s, b)| s.exp() * (s - b)).sum::<f64>().max(0.0)
}

/// KL of the steered from the baseline next-token distribution at every position: both are
/// `[positions, vocab]` logits of the same text.
pub fn kl_rows(steered: &[f32], base: &[f32], vocab: usize) -> Vec<f64> {
    steered.chunks_exact(vocab).zip(base.chunks_exact(vocab)).map(|(s, b)| kl(s, b)).collect()
}

/// Perplexity of `ids` from the logits of a forward over them (`[ids.len(), vocab]`): each token
/// predicted from the ones before it. NaN for fewer than two tokens.
pub fn perplexity(logits: &[f32], ids: &[u32], vocab: usize) -> f64 {
    if ids.len() < 2 || logits.len() < ids.len() * vocab {
        return f64::NAN;
    }
    let nll: f64 = (0..ids.len() - 1)
        .map(|t| -log_softmax(&logits[t * vocab..(t + 1) * vocab])[ids[t + 1] as usize])
        .sum();
    (nll / (ids.len() - 1) as f64).exp()
}

/// Mean projection on `unit(direction)` at `layer` over tokens `from..` of `ids`, unsteered.
pub async fn concept_score<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
    from: usize,
    layer: usize,
    direction: &[f32],
) -> Result<f64> {
    let u = unit(direction);
    let mut cap = Capture::new([layer]);
    model.session().forward(ids, Some(&mut cap), LogitsFor::Hooks).await?;
    let d = model.config.d_model;
    let rows: Vec<&[f32]> = cap.rows[0].chunks_exact(d).skip(from).collect();
    if rows.is_empty() {
        return Ok(f64::NAN);
    }
    Ok(rows.iter().map(|r| dot(r, &u) as f64).sum::<f64>() / rows.len() as f64)
}

/// The change of the next-token log-probabilities at the last position of each context when
/// `v` is added to the residual stream at `layer` (every position), averaged over `contexts`.
/// `base` holds the contexts' unsteered last-position logits when the caller has them.
pub async fn next_token_shift<B: Backend>(
    model: &Model<B>,
    contexts: &[Vec<u32>],
    base: Option<&[Vec<f32>]>,
    layer: usize,
    v: &[f32],
) -> Result<Vec<f64>> {
    let vocab = model.config.vocab;
    let mut sum = vec![0f64; vocab];
    let mut plan = Plan {
        interventions: vec![Intervention {
            layers: vec![(layer, Op::Add { v: v.into() })],
            positions: Positions::All,
            site: Site::Residual,
        }],
        prompt_len: 0,
    };
    for (i, ids) in contexts.iter().enumerate() {
        let b = match base.and_then(|b| b.get(i)) {
            Some(b) => log_softmax(b),
            None => log_softmax(&model.session().forward(ids, None, LogitsFor::Last).await?),
        };
        plan.prompt_len = ids.len();
        let s = model.session().forward(ids, Some(&mut plan), LogitsFor::Last).await?;
        let s = log_softmax(&s);
        sum.iter_mut().zip(s.iter().zip(&b)).for_each(|(acc, (x, y))| *acc += x - y);
    }
    let n = contexts.len().max(1) as f64;
    Ok(sum.into_iter().map(|x| x / n).collect())
}

/// Token ids with scores.
pub type Ranked = Vec<(u32, f64)>;

/// The `k` largest and `k` smallest entries of `scores` with their ids, largest (resp.
/// smallest) first; ties to the lower id.
pub fn extremes(scores: &[f64], k: usize) -> (Ranked, Ranked) {
    let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
    idx.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    let top = idx.iter().take(k).map(|&i| (i, scores[i as usize])).collect();
    let bottom = idx.iter().rev().take(k).map(|&i| (i, scores[i as usize])).collect();
    (top, bottom)
}

#[cfg(test)]
mod tests {
    #[test]
    fn perplexity_of_a_certain_model_is_one() {
        // Vocabulary of 3; logits that put (almost) all mass on the next token.
        let ids = [0u32, 2, 1];
        let mut logits = vec![0f32; 9];
        logits[2] = 50.0;
        logits[3 + 1] = 50.0;
        assert!((super::perplexity(&logits, &ids, 3) - 1.0).abs() < 1e-6);
        assert!(super::perplexity(&logits, &ids[..1], 3).is_nan());
        let uniform = vec![0f32; 9];
        assert!((super::perplexity(&uniform, &ids, 3) - 3.0).abs() < 1e-9);
        assert_eq!(super::kl_rows(&uniform, &uniform, 3), vec![0.0; 3]);
    }

    #[test]
    fn kl_is_zero_for_equal_and_positive_otherwise() {
        let a = [1.0f32, 2.0, 3.0];
        assert!(super::kl(&a, &a).abs() < 1e-12);
        assert!(super::kl(&[3.0, 2.0, 1.0], &a) > 0.1);
        // Shifting all logits leaves the distribution unchanged.
        assert!(super::kl(&[11.0, 12.0, 13.0], &a).abs() < 1e-9);
    }
}
