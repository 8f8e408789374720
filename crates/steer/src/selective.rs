//! Selective Steering as its authors' code does it (Dang & Ngo 2026, "Selective Steering:
//! Norm-Preserving Control Through Discriminative Layer Selection"; code: knoveleng/steering,
//! `steering/pipeline/steering_pipeline.py` with `configs/selective.yaml`).
//!
//! - Where: the outputs of every block's normalisation layers, the modules whose names contain
//!   `layernorm` (for Llama-family models `input_layernorm` and `post_attention_layernorm`:
//!   what attention and the MLP read; Tiller's [`Site::AttnIn`] and [`Site::MlpIn`]), read at
//!   the examples' last token (or the concept's read position).
//! - Candidates: one unit mean difference per norm site, `d = (mean(pos) - mean(neg)) /
//!   (|mean(pos) - mean(neg)| + 1e-8)`, in module order (block 0's two norms, block 1's...).
//! - `b1`: the candidate with the highest mean cosine similarity to all candidates (itself
//!   included; the first on a tie), ONE direction for every layer.
//! - `b2`: the first principal component of the candidate matrix (scikit-learn's `PCA`:
//!   centred, sign by its `svd_flip`), made orthogonal to b1 and normalised.
//! - Layers: a site passes when the class means of `(h / (|h| + 1e-8)) . b1` have opposite
//!   signs; a block is steered only when all its norm sites pass (`_filter_by_index`).
//! - Operator, at both norm outputs of each selected block, every position:
//!   `h' = h - P h + V_t h`, `P = b1 b1' + b2 b2'`, `V_t = cos t P + sin t (b2 b1' - b1 b2')`,
//!   a rotation by t in the plane that keeps `|h|`.
//!
//! `tests/tests/ports.rs` checks b1, b2, the layer mask and the steered activations against a
//! NumPy/scikit-learn port of these functions (`scripts/ports/selective_steering.py`).

use crate::concept::{capture_sites, Acts, Concept};
use crate::intervene::{Intervention, Op, Positions};
use crate::{Error, Result};
use tiller_engine::{Backend, Model, Site};

/// The sites Selective Steering reads and rotates, in the authors' module order.
pub const SITES: [Site; 2] = [Site::AttnIn, Site::MlpIn];

/// What the authors' calibration produces.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SelectivePlane {
    pub b1: Vec<f32>,
    pub b2: Vec<f32>,
    /// The block and site b1 came from.
    pub b1_layer: usize,
    pub b1_site: Site,
    /// Per block, per site of [`SITES`]: the opposite-sign test.
    pub site_passes: Vec<[bool; 2]>,
    /// Per block: steered (all its sites pass).
    pub mask: Vec<bool>,
    /// Mean cosine of each candidate with all candidates (block-major, [`SITES`] order).
    pub mean_cosine: Vec<f64>,
}

const EPS: f64 = 1e-8;

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn mean_rows(a: &Acts, l: usize) -> Vec<f64> {
    let mut m = vec![0f64; a.d];
    for r in a.at(l) {
        m.iter_mut().zip(r).for_each(|(s, x)| *s += *x as f64);
    }
    m.iter_mut().for_each(|s| *s /= a.acts.len().max(1) as f64);
    m
}

/// The first principal component as scikit-learn's `PCA(n_components=1)` gives it: rows
/// centred, the top right singular vector, signed by `svd_flip(u_based_decision=False)` (the
/// entry of largest magnitude is positive; scikit-learn >= 1.5).
pub fn sklearn_first_pc(rows: &[Vec<f64>]) -> Result<Vec<f64>> {
    let (_, mut v) = crate::directions::top_components(rows, true, 1)?;
    let mut pc = v.remove(0);
    let big = pc.iter().copied().fold(0f64, |m, x| if x.abs() > m.abs() { x } else { m });
    if big < 0.0 {
        pc.iter_mut().for_each(|x| *x = -*x);
    }
    Ok(pc)
}

/// The authors' calibration from the norm outputs of positives and negatives:
/// `sites[s] = (pos, neg)` for each site of [`SITES`], every layer.
pub fn plane(sites: &[(Acts, Acts); 2]) -> Result<SelectivePlane> {
    let n_layer = sites[0].0.n_layer;
    if sites.iter().any(|(p, n)| p.acts.is_empty() || n.acts.is_empty() || p.n_layer != n_layer) {
        return Err(Error::Concept {
            name: String::new(),
            msg: "Selective Steering needs examples of both classes at every norm".into(),
        });
    }
    // Candidates in module order: block-major, then site.
    let mut cands: Vec<Vec<f64>> = Vec::with_capacity(2 * n_layer);
    for l in 0..n_layer {
        for (p, n) in sites {
            let d: Vec<f64> =
                mean_rows(p, l).iter().zip(mean_rows(n, l)).map(|(a, b)| a - b).collect();
            let len = norm(&d) + EPS;
            cands.push(d.iter().map(|x| x / len).collect());
        }
    }
    let cos = |a: &[f64], b: &[f64]| {
        let d: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        d / (norm(a) * norm(b)).max(EPS)
    };
    let mean_cosine: Vec<f64> = cands
        .iter()
        .map(|a| cands.iter().map(|b| cos(a, b)).sum::<f64>() / cands.len() as f64)
        .collect();
    let mut best = 0;
    for (i, m) in mean_cosine.iter().enumerate() {
        if *m > mean_cosine[best] {
            best = i;
        }
    }
    let feature = &cands[best];
    let fl = norm(feature) + EPS;
    let b1: Vec<f64> = feature.iter().map(|x| x / fl).collect();
    let pc = sklearn_first_pc(&cands)?;
    let along: f64 = pc.iter().zip(&b1).map(|(a, b)| a * b).sum();
    let mut b2: Vec<f64> = pc.iter().zip(&b1).map(|(p, b)| p - along * b).collect();
    let l2 = norm(&b2);
    if l2 < 1e-6 {
        return Err(Error::LinAlg(
            "Selective Steering: the principal component is parallel to b1, no plane".into(),
        ));
    }
    b2.iter_mut().for_each(|x| *x /= l2 + EPS);
    // Layer selection against the shared direction (unit feature direction).
    let passes = |(p, n): &(Acts, Acts), l: usize| {
        let proj = |a: &Acts| {
            a.at(l)
                .map(|h| {
                    let hn = h.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt() + EPS;
                    h.iter().zip(&b1).map(|(x, u)| *x as f64 / hn * u).sum::<f64>()
                })
                .sum::<f64>()
                / a.acts.len() as f64
        };
        proj(p) * proj(n) < 0.0
    };
    let site_passes: Vec<[bool; 2]> =
        (0..n_layer).map(|l| [passes(&sites[0], l), passes(&sites[1], l)]).collect();
    Ok(SelectivePlane {
        b1: b1.iter().map(|x| *x as f32).collect(),
        b2: b2.iter().map(|x| *x as f32).collect(),
        b1_layer: best / 2,
        b1_site: SITES[best % 2],
        mask: site_passes.iter().map(|s| s[0] && s[1]).collect(),
        site_passes,
        mean_cosine,
    })
}

/// Capture a concept's norm outputs at every block and calibrate.
pub async fn calibrate<B: Backend>(model: &Model<B>, c: &Concept) -> Result<SelectivePlane> {
    c.validate()?;
    let pos: Vec<String> = c.pairs.iter().map(|p| p.0.clone()).collect();
    let neg: Vec<String> = c.pairs.iter().map(|p| p.1.clone()).collect();
    let mut p = capture_sites(model, &pos, c.read, &SITES).await?.into_iter();
    let mut n = capture_sites(model, &neg, c.read, &SITES).await?.into_iter();
    let (Some(pa), Some(pm), Some(na), Some(nm)) = (p.next(), p.next(), n.next(), n.next()) else {
        return Err(Error::LinAlg("Selective Steering: capture returned no sites".into()));
    };
    plane(&[(pa, na), (pm, nm)])
}

impl SelectivePlane {
    /// The blocks steered among `layers` (those in the mask).
    pub fn selected(&self, layers: &[usize]) -> Vec<usize> {
        layers.iter().copied().filter(|&l| self.mask.get(l).copied().unwrap_or(false)).collect()
    }

    /// The rotation by `degrees` at both norm outputs of each selected block among `layers`,
    /// as interventions (one per site).
    pub fn interventions(
        &self,
        layers: &[usize],
        degrees: f32,
        positions: Positions,
    ) -> Result<Vec<Intervention>> {
        if !degrees.is_finite() {
            return Err(Error::Intervention(format!(
                "the angle must be a finite number, got {degrees}"
            )));
        }
        if let Some(&l) = layers.iter().find(|&&l| l >= self.mask.len()) {
            return Err(Error::Layer { layer: l, max: self.mask.len() - 1 });
        }
        let chosen = self.selected(layers);
        if chosen.is_empty() {
            return Err(Error::Intervention(
                "no listed block passes Selective Steering's test (opposite class-mean signs at \
                 both of its norms)"
                    .into(),
            ));
        }
        let op = Op::Rotate {
            b1: self.b1.as_slice().into(),
            b2: self.b2.as_slice().into(),
            theta: degrees.to_radians(),
        };
        Ok(SITES
            .iter()
            .map(|&site| Intervention {
                layers: chosen.iter().map(|&l| (l, op.clone())).collect(),
                positions,
                site,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acts(rows: Vec<Vec<Vec<f32>>>) -> Acts {
        let (n_layer, d) = (rows[0].len(), rows[0][0].len());
        Acts { acts: rows, n_layer, d }
    }

    /// Two blocks: block 0's classes lie on opposite sides of the shared direction at both
    /// norms, block 1's MLP norm has both classes on the same side, so only block 0 is steered.
    #[test]
    fn shared_direction_and_both_norms_must_pass() {
        let p = |a: f32, b: f32, y: f32| vec![vec![a, 1.0, 0.2], vec![b, y, -0.1]];
        let attn = (
            acts(vec![p(2.0, 3.0, 1.5), p(2.5, 2.0, 1.5)]),
            acts(vec![p(-2.0, -1.0, 0.5), p(-1.5, -2.0, 0.5)]),
        );
        let q = |a: f32, b: f32| vec![vec![a, 0.5, 0.0], vec![b + 5.0, 0.3, 0.1]];
        let mlp = (acts(vec![q(1.0, 1.0), q(2.0, 2.0)]), acts(vec![q(-1.0, -1.0), q(-2.0, -1.5)]));
        let pl = plane(&[attn, mlp]).unwrap();
        assert_eq!(pl.site_passes[0], [true, true]);
        assert!(pl.site_passes[1][0] && !pl.site_passes[1][1]);
        assert_eq!(pl.mask, vec![true, false]);
        let dot: f32 = pl.b1.iter().zip(&pl.b2).map(|(a, b)| a * b).sum();
        assert!(dot.abs() < 1e-6, "b1 . b2 = {dot}");
        let ivs = pl.interventions(&[0, 1], 30.0, Positions::All).unwrap();
        assert_eq!(ivs.len(), 2);
        assert!(ivs.iter().all(|iv| iv.layers.len() == 1 && iv.layers[0].0 == 0));
        assert_eq!((ivs[0].site, ivs[1].site), (Site::AttnIn, Site::MlpIn));
        assert!(pl.interventions(&[1], 30.0, Positions::All).is_err());
        assert!(pl.interventions(&[0], f32::NAN, Positions::All).is_err());
        assert!(pl.interventions(&[5], 10.0, Positions::All).is_err());
    }

    #[test]
    fn sklearn_sign_rule() {
        let rows = vec![vec![1.0, -3.0], vec![-1.0, 3.0], vec![0.5, -1.4]];
        let pc = sklearn_first_pc(&rows).unwrap();
        let big = pc.iter().copied().fold(0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        assert!(big > 0.0, "{pc:?}");
    }
}
