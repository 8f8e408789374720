//! Interventions as data, and their compilation into an engine [`Plan`].
//!
//! An [`InterventionSpec`] says what a person chose (concept, op, layers, strength, positions);
//! it is what a saved setup, a share link and the CLI flags hold. [`prepare`] computes what a
//! concept's interventions need once (its directions by its method, mean differences for the
//! rotation plane, residual norms, the sign criterion), and [`build`] turns specs into hooks.

use crate::concept::{Acts, Concept};
use crate::diagnostics;
use crate::directions::{mean_diff, mean_norms, Method};
use crate::intervene::{self, Intervention, Plan, Positions};
use crate::lineas::{self, LineasParams};
use crate::report::{compute, Computed};
use crate::selective::SelectivePlane;
use crate::snmf::SnmfParams;
use crate::{Error, Result};
use tiller_engine::{Backend, Model, Site};

/// The operation of an intervention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// `h + strength * v` with v the concept's direction at that layer (raw, not normalised).
    Add,
    /// `h + strength * mean residual norm * unit(v)`.
    AddUnit,
    /// Project the unit direction out.
    Ablate,
    /// Set the projection on the unit direction to `strength`.
    Clamp,
    /// Angular steering of the residual stream: rotation by `strength` degrees in each layer's
    /// plane (b1 that layer's mean difference; the reference data's rotation).
    Rotate,
    /// LinEAS affine maps trained from the concept's negatives to its positives, applied at
    /// `strength` (1 = as trained).
    Affine,
    /// Selective Steering as its authors do it ([`crate::selective`]): rotation by `strength`
    /// degrees of both norm outputs of the listed blocks that pass its test, one plane for all.
    SelectiveSteering,
}

impl OpKind {
    /// Every op, in the order menus list them.
    pub const ALL: [OpKind; 7] = [
        OpKind::Add,
        OpKind::AddUnit,
        OpKind::Ablate,
        OpKind::Clamp,
        OpKind::Rotate,
        OpKind::SelectiveSteering,
        OpKind::Affine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::AddUnit => "add_unit",
            OpKind::Ablate => "ablate",
            OpKind::Clamp => "clamp",
            OpKind::Rotate => "rotate",
            OpKind::Affine => "affine",
            OpKind::SelectiveSteering => "selective_steering",
        }
    }

    /// What it is, in a few words (the page's menu).
    pub fn label(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::AddUnit => "add (unit)",
            OpKind::Ablate => "ablate",
            OpKind::Clamp => "clamp",
            OpKind::Rotate => "rotate (residual)",
            OpKind::Affine => "affine (LinEAS)",
            OpKind::SelectiveSteering => "Selective Steering",
        }
    }
}

fn yes() -> bool {
    true
}

/// One intervention as a person chose it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InterventionSpec {
    pub concept: String,
    pub op: OpKind,
    /// The layers it acts on (block outputs, 0-based).
    pub layers: Vec<usize>,
    /// add / add_unit: the coefficient; clamp: the value; rotate and selective_steering:
    /// degrees; affine: the strength; ablate: unused.
    #[serde(default)]
    pub strength: f32,
    #[serde(default)]
    pub positions: Positions,
    /// rotate: only on the listed layers that pass the opposite-sign criterion.
    #[serde(default)]
    pub selective: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// What a concept's interventions need, computed once.
#[derive(Clone)]
pub struct Prepared {
    pub concept: Concept,
    /// Directions by the concept's method, per layer.
    pub dirs: Vec<Vec<f32>>,
    /// Mean differences per layer (the rotation plane is built from them).
    pub mean_diff: Vec<Vec<f32>>,
    pub mean_norms: Vec<f32>,
    /// Layers passing the opposite-sign criterion on the residual stream (`rotate --selective`).
    pub opposite: Vec<bool>,
    /// Selective Steering's calibration, made the first time an intervention needs it (clones
    /// share it).
    pub selective: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<SelectivePlane>>>,
}

impl Prepared {
    /// Selective Steering's plane and layer mask for this concept (captured once, then kept).
    pub async fn selective_plane<B: Backend>(
        &self,
        model: &Model<B>,
    ) -> Result<std::sync::Arc<SelectivePlane>> {
        if let Some(p) = self.selective.get() {
            return Ok(p.clone());
        }
        let p = std::sync::Arc::new(crate::selective::calibrate(model, &self.concept).await?);
        Ok(self.selective.get_or_init(|| p).clone())
    }
}

/// Capture a concept and compute what interventions on it need.
pub async fn prepare<B: Backend>(model: &Model<B>, c: &Concept) -> Result<Prepared> {
    let Computed { pos, neg, dirs, .. } =
        compute(model, c, c.method, &SnmfParams::default(), false).await?;
    Prepared::from_acts(c.clone(), &pos, &neg, dirs)
}

impl Prepared {
    /// From a capture already made: `dirs` by the concept's method.
    pub fn from_acts(c: Concept, pos: &Acts, neg: &Acts, dirs: Vec<Vec<f32>>) -> Result<Self> {
        let md = if c.method == Method::MeanDiff { dirs.clone() } else { mean_diff(pos, neg)? };
        let opposite =
            (0..md.len()).map(|l| diagnostics::layer(pos, neg, l, &md[l]).opposite_signs).collect();
        Ok(Prepared {
            concept: c,
            mean_norms: mean_norms(pos, neg),
            dirs,
            mean_diff: md,
            opposite,
            selective: Default::default(),
        })
    }
}

fn spec_err(i: usize, s: &InterventionSpec, msg: impl std::fmt::Display) -> Error {
    Error::Intervention(format!(
        "intervention {} ({} on `{}`): {msg}",
        i + 1,
        s.op.name(),
        s.concept
    ))
}

/// The enabled specs as one plan (`None` when none is enabled). Affine specs train LinEAS
/// (seconds) with `lineas`.
pub async fn build<B: Backend>(
    model: &Model<B>,
    concepts: &[Prepared],
    specs: &[InterventionSpec],
    prompt_len: usize,
    lineas: &LineasParams,
) -> Result<Option<Plan>> {
    let mut ivs = Vec::new();
    for (i, s) in specs.iter().enumerate().filter(|(_, s)| s.enabled) {
        let err = |m: String| spec_err(i, s, m);
        let c = concepts.iter().find(|c| c.concept.name == s.concept).ok_or_else(|| {
            let known: Vec<&str> = concepts.iter().map(|c| c.concept.name.as_str()).collect();
            err(format!("unknown concept `{}` (known: {})", s.concept, known.join(", ")))
        })?;
        if s.layers.is_empty() {
            return Err(err("no layers given".into()));
        }
        if !s.strength.is_finite() {
            return Err(err(format!("the strength must be a finite number, got {}", s.strength)));
        }
        let wrap = |e: Error| err(e.to_string());
        let layers = match s.op {
            OpKind::Add => {
                let mut ops = Vec::new();
                for &l in &s.layers {
                    ops.extend(intervene::add(&c.dirs, l, s.strength).map_err(wrap)?);
                }
                ops
            }
            OpKind::AddUnit => {
                let mut ops = Vec::new();
                for &l in &s.layers {
                    ops.extend(
                        intervene::add_unit(&c.dirs, &c.mean_norms, l, s.strength).map_err(wrap)?,
                    );
                }
                ops
            }
            OpKind::Ablate => intervene::ablate(&c.dirs, &s.layers).map_err(wrap)?,
            OpKind::Clamp => intervene::clamp(&c.dirs, &s.layers, s.strength).map_err(wrap)?,
            OpKind::Rotate => {
                let mut layers = s.layers.clone();
                if s.selective {
                    layers.retain(|&l| c.opposite.get(l).copied().unwrap_or(false));
                    if layers.is_empty() {
                        return Err(err(
                            "no listed layer passes the opposite-sign criterion (selective)".into(),
                        ));
                    }
                }
                intervene::rotate_layers(&c.mean_diff, &layers, s.strength).map_err(wrap)?
            }
            OpKind::SelectiveSteering => {
                let plane = c.selective_plane(model).await.map_err(wrap)?;
                ivs.extend(plane.interventions(&s.layers, s.strength, s.positions).map_err(wrap)?);
                continue;
            }
            OpKind::Affine => {
                let mut layers = s.layers.clone();
                layers.sort_unstable();
                layers.dedup();
                let (pos, neg): (Vec<String>, Vec<String>) =
                    c.concept.pairs.iter().cloned().unzip();
                let ops = lineas::fit(model, &neg, &pos, &layers, lineas).await.map_err(wrap)?;
                // Never on position 0, the attention sink (see lineas::fit).
                let positions = match s.positions {
                    Positions::All => Positions::Range { start: 1, end: usize::MAX },
                    Positions::Prompt => Positions::Range { start: 1, end: prompt_len },
                    Positions::Generated => Positions::Generated,
                    Positions::Range { start, end } => {
                        Positions::Range { start: start.max(1), end }
                    }
                };
                ivs.push(Intervention {
                    layers: ops.ops(s.strength),
                    positions,
                    site: Site::Residual,
                });
                continue;
            }
        };
        ivs.push(Intervention { layers, positions: s.positions, site: Site::Residual });
    }
    Ok((!ivs.is_empty()).then_some(Plan { interventions: ivs, prompt_len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_json_form() {
        let s: InterventionSpec = serde_json::from_str(
            r#"{"concept": "formal", "op": "rotate", "layers": [4, 5], "strength": 30}"#,
        )
        .unwrap();
        assert_eq!(s.op, OpKind::Rotate);
        assert!(s.enabled && !s.selective && s.positions == Positions::All);
        let back: InterventionSpec =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<InterventionSpec>(
            r#"{"concept": "x", "op": "twist", "layers": [1]}"#
        )
        .is_err());
    }
}
