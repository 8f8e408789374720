//! Per-layer diagnostics of a direction on the concept's own examples (in sample; the
//! held-out numbers are [`crate::heldout`]'s).
//!
//! - separation along the unit direction u on the examples that made it: AUROC and Cohen's d
//!   (`auroc_in_sample`, `cohens_d_in_sample`: optimistic by construction; shown to teach why
//!   Tiller holds them out);
//! - the Selective Steering criterion (Dang & Ngo 2026) on the residual stream: the class means
//!   of the *normalised* projection `(h / |h|) . u` have opposite signs;
//! - the direction's norm over the mean residual norm at that layer;
//! - the direct unembedding view: the LM head applied to the final norm's gain times the
//!   direction (a logit lens of the direction, skipping every later layer; high-norm rows of
//!   the unembedding dominate it). What adding the direction does to the next-token
//!   distribution is [`crate::effects::next_token_shift`].

use crate::concept::Acts;
use crate::stats::{auroc, cohens_d, mean_var};
use crate::{dot, unit, Result};
use tiller_engine::{Backend, Model};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerDiagnostics {
    pub auroc_in_sample: f64,
    pub cohens_d_in_sample: f64,
    /// Class means of the normalised projection have opposite signs.
    pub opposite_signs: bool,
    pub norm_over_mean_residual: f64,
}

/// Diagnostics of direction `v` at `layer` over the concept's positive and negative examples.
pub fn layer(pos: &Acts, neg: &Acts, layer: usize, v: &[f32]) -> LayerDiagnostics {
    let u = unit(v);
    let proj = |a: &Acts| a.at(layer).map(|h| dot(h, &u) as f64).collect::<Vec<f64>>();
    let nproj = |a: &Acts| {
        a.at(layer)
            .map(|h| {
                let n = h.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
                (dot(h, &u) / n) as f64
            })
            .collect::<Vec<f64>>()
    };
    let (p, n) = (proj(pos), proj(neg));
    let (np, nn) = (nproj(pos), nproj(neg));
    let (mnp, mnn) = (mean_var(&np).0, mean_var(&nn).0);
    let norm = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let all: Vec<f64> = pos
        .at(layer)
        .chain(neg.at(layer))
        .map(|h| h.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt())
        .collect();
    let mean_resid = all.iter().sum::<f64>() / all.len().max(1) as f64;
    LayerDiagnostics {
        auroc_in_sample: auroc(&p, &n),
        cohens_d_in_sample: cohens_d(&p, &n),
        opposite_signs: mnp * mnn < 0.0,
        norm_over_mean_residual: if mean_resid > 0.0 { norm / mean_resid } else { 0.0 },
    }
}

/// Token ids with their unembedding scores, best first.
pub type Scored = Vec<(u32, f32)>;

/// The `k` tokens the direct unembedding of `v` scores highest and lowest, with scores.
pub async fn top_tokens<B: Backend>(
    model: &Model<B>,
    v: &[f32],
    k: usize,
) -> Result<(Scored, Scored)> {
    let scores = model.unembed_direction(v).await?;
    Ok(top_bottom(&scores, k))
}

/// The `k` highest scores (highest first, ties by id) and the `k` lowest (lowest first: the
/// same order reversed), by partial selection rather than sorting the whole vocabulary.
pub fn top_bottom(scores: &[f32], k: usize) -> (Scored, Scored) {
    // Highest first, ties by id; the bottom list is the same order reversed.
    let order =
        |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b));
    let first_k = |cmp: &dyn Fn(&u32, &u32) -> std::cmp::Ordering| -> Scored {
        let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
        let k = k.min(idx.len());
        if k > 0 && k < idx.len() {
            idx.select_nth_unstable_by(k - 1, cmp);
        }
        idx.truncate(k);
        idx.sort_unstable_by(cmp);
        idx.into_iter().map(|i| (i, scores[i as usize])).collect()
    };
    (first_k(&order), first_k(&|a, b| order(b, a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_bottom_equals_a_full_sort() {
        let mut s = 3u64;
        // Few distinct values: many ties, broken by id.
        let scores: Vec<f32> = (0..500)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 37) as f32 - 18.0
            })
            .collect();
        let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
        idx.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
        for k in [0, 1, 7, 20, 499, 500, 600] {
            let want_top: Scored = idx.iter().take(k).map(|&i| (i, scores[i as usize])).collect();
            let want_bottom: Scored =
                idx.iter().rev().take(k).map(|&i| (i, scores[i as usize])).collect();
            assert_eq!(top_bottom(&scores, k), (want_top, want_bottom), "k = {k}");
        }
    }

    fn acts(vals: &[[f32; 2]]) -> Acts {
        Acts { acts: vals.iter().map(|v| vec![v.to_vec()]).collect(), n_layer: 1, d: 2 }
    }

    #[test]
    fn separation_measures() {
        let pos = acts(&[[3.0, 1.0], [2.0, -1.0], [4.0, 0.5]]);
        let neg = acts(&[[-3.0, 1.0], [-2.0, 0.0], [-1.0, 2.0]]);
        let d = layer(&pos, &neg, 0, &[1.0, 0.0]);
        assert_eq!(d.auroc_in_sample, 1.0);
        assert!(d.cohens_d_in_sample > 3.0 && d.opposite_signs);
        let r = layer(&pos, &neg, 0, &[-1.0, 0.0]);
        assert_eq!(r.auroc_in_sample, 0.0);
        assert!(r.cohens_d_in_sample < -3.0);
        // Both classes on the same side: the criterion fails.
        let shifted = acts(&[[10.0, 0.0], [11.0, 0.0]]);
        let d = layer(&shifted, &pos, 0, &[1.0, 0.0]);
        assert!(!d.opposite_signs && d.auroc_in_sample == 1.0);
    }
}
