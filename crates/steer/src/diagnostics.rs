//! Per-layer diagnostics of a direction, from the concept's own examples.
//!
//! - separation along the unit direction u: AUROC (the probability that a random positive
//!   projects above a random negative, ties count half) and Cohen's d
//!   (`(mean_p - mean_n) / pooled sd`);
//! - the Selective Steering criterion (Hu et al. 2025): the class means of the *normalised*
//!   projection `(h / |h|) . u` have opposite signs;
//! - the direction's norm over the mean residual norm at that layer;
//! - the tokens it promotes and suppresses: the LM head applied to the final norm's gain
//!   times the direction (the logit lens of the direction).

use crate::concept::Acts;
use crate::{dot, unit};
use tiller_engine::{Backend, Model};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerDiagnostics {
    pub auroc: f64,
    pub cohens_d: f64,
    /// Class means of the normalised projection have opposite signs.
    pub opposite_signs: bool,
    pub norm_over_mean_residual: f64,
}

fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = if xs.len() > 1 {
        xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, v)
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
    let mut wins = 0.0;
    for a in &p {
        for b in &n {
            wins += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    let auroc = wins / (p.len() * n.len()) as f64;
    let ((mp, vp), (mn, vn)) = (mean_var(&p), mean_var(&n));
    let pooled = (((p.len() as f64 - 1.0) * vp + (n.len() as f64 - 1.0) * vn)
        / ((p.len() + n.len()) as f64 - 2.0).max(1.0))
    .sqrt();
    let cohens_d = if pooled > 0.0 { (mp - mn) / pooled } else { 0.0 };
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
        auroc,
        cohens_d,
        opposite_signs: mnp * mnn < 0.0,
        norm_over_mean_residual: if mean_resid > 0.0 { norm / mean_resid } else { 0.0 },
    }
}

/// Token ids with their unembedding scores, best first.
pub type Scored = Vec<(u32, f32)>;

/// The `k` tokens direction `v` promotes most and the `k` it suppresses most, with scores.
pub fn top_tokens<B: Backend>(model: &Model<B>, v: &[f32], k: usize) -> (Scored, Scored) {
    let scores = model.unembed_direction(v);
    let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
    idx.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    let top = idx.iter().take(k).map(|&i| (i, scores[i as usize])).collect();
    let bottom = idx.iter().rev().take(k).map(|&i| (i, scores[i as usize])).collect();
    (top, bottom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acts(vals: &[[f32; 2]]) -> Acts {
        Acts { acts: vals.iter().map(|v| vec![v.to_vec()]).collect(), n_layer: 1, d: 2 }
    }

    #[test]
    fn separation_measures() {
        let pos = acts(&[[3.0, 1.0], [2.0, -1.0], [4.0, 0.5]]);
        let neg = acts(&[[-3.0, 1.0], [-2.0, 0.0], [-1.0, 2.0]]);
        let d = layer(&pos, &neg, 0, &[1.0, 0.0]);
        assert_eq!(d.auroc, 1.0);
        assert!(d.cohens_d > 3.0 && d.opposite_signs);
        let r = layer(&pos, &neg, 0, &[-1.0, 0.0]);
        assert_eq!(r.auroc, 0.0);
        assert!(r.cohens_d < -3.0);
        // Both classes on the same side: the criterion fails.
        let shifted = acts(&[[10.0, 0.0], [11.0, 0.0]]);
        let d = layer(&shifted, &pos, 0, &[1.0, 0.0]);
        assert!(!d.opposite_signs && d.auroc == 1.0);
    }
}
