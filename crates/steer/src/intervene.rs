//! Interventions as engine hooks, on the residual stream at block outputs unless said otherwise.
//!
//! - add: `h + c v` (v as computed, e.g. the raw mean difference);
//! - ablate: `h - (h.u) u` with u the unit direction of that layer;
//! - clamp: `h + (value - h.u) u`, the projection on u set to `value`;
//! - rotate: angular steering of the residual stream, a norm-preserving rotation by angle t in
//!   the plane (b1, b2), `h' = h - P h + V h` with `P = b1 b1' + b2 b2'` and
//!   `V = cos t P + sin t (b2 b1' - b1 b2')`; b1 the unit mean difference at *that* layer, b2
//!   the first principal component of the centred unit mean differences of all layers, made
//!   orthogonal to b1. This is the rotation of the reference data (steering.json); Selective
//!   Steering as its authors do it is [`crate::selective`] (the same rotation on the outputs
//!   of each block's two norms, one plane for all layers);
//! - affine (LinEAS, [`crate::lineas`]): `h + s ((gamma - 1) h + beta)`, per neuron.
//!
//! Each acts on chosen layers, sites and positions and they compose in order ([`Plan`]).

use crate::directions::first_pc;
use crate::{unit, Error, Result};
use std::sync::Arc;
use tiller_engine::{Edit, Hooks, Site};

/// Which token positions an intervention touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// Every position, prompt and generated (the reference's convention).
    #[default]
    All,
    /// Prompt tokens only (positions below the prompt length).
    Prompt,
    /// Generated tokens only.
    Generated,
    /// Absolute positions `start..end`.
    Range { start: usize, end: usize },
}

/// An intervention's map at one layer, by kind. Each becomes an engine [`Edit`] ([`Op::edit`]),
/// the one form a backend applies; the vectors are shared with it (no copy per token).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `h + v` (the coefficient is already in `v`).
    Add { v: Arc<[f32]> },
    /// Remove the component along unit `u`.
    Ablate { u: Arc<[f32]> },
    /// Set the component along unit `u` to `value`.
    Clamp { u: Arc<[f32]>, value: f32 },
    /// Rotate by `theta` (radians) in the plane of orthonormal `b1`, `b2`.
    Rotate { b1: Arc<[f32]>, b2: Arc<[f32]>, theta: f32 },
    /// Diagonal affine map at a strength: `h + s ((gamma - 1) h + beta)` (LinEAS).
    Affine { gamma: Arc<[f32]>, beta: Arc<[f32]>, strength: f32 },
}

/// One intervention: an op per layer it acts on, the site in those blocks, and the positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Intervention {
    pub layers: Vec<(usize, Op)>,
    pub positions: Positions,
    /// Where in the block (the residual stream at its output for every op but Selective
    /// Steering, which acts on the norm outputs).
    pub site: Site,
}

/// Interventions applied in order at each block output.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub interventions: Vec<Intervention>,
    /// Tokens of the prompt (for `Positions::Prompt` / `Generated`).
    pub prompt_len: usize,
}

impl Positions {
    /// The absolute positions touched, as a half-open range.
    fn range(&self, prompt_len: usize) -> (usize, usize) {
        match *self {
            Positions::All => (0, usize::MAX),
            Positions::Prompt => (0, prompt_len),
            Positions::Generated => (prompt_len, usize::MAX),
            Positions::Range { start, end } => (start, end),
        }
    }
}

impl Op {
    /// The op as an engine [`Edit`] on the rows at positions `start..end` (what every backend
    /// applies; the formulas of the module header).
    pub fn edit(&self, (start, end): (usize, usize)) -> Edit {
        let arc = |v: &Arc<[f32]>| v.clone();
        let none = Edit {
            scale: None,
            bias: None,
            dirs: Vec::new(),
            m: [[0.0; 2]; 2],
            k: [0.0; 2],
            start,
            end,
        };
        match self {
            Op::Add { v } => Edit { bias: Some(arc(v)), ..none },
            Op::Ablate { u } => Edit { dirs: vec![arc(u)], m: [[-1.0, 0.0], [0.0, 0.0]], ..none },
            Op::Clamp { u, value } => {
                Edit { dirs: vec![arc(u)], m: [[-1.0, 0.0], [0.0, 0.0]], k: [*value, 0.0], ..none }
            }
            Op::Rotate { b1, b2, theta } => {
                let (s, c) = theta.sin_cos();
                Edit { dirs: vec![arc(b1), arc(b2)], m: [[c - 1.0, -s], [s, c - 1.0]], ..none }
            }
            Op::Affine { gamma, beta, strength } => Edit {
                scale: Some(gamma.iter().map(|g| 1.0 + strength * (g - 1.0)).collect()),
                bias: Some(beta.iter().map(|b| strength * b).collect()),
                ..none
            },
        }
    }
}

impl Plan {
    fn at_site(&self, site: Site, layer: usize) -> impl Iterator<Item = (&Intervention, &Op)> {
        self.interventions.iter().filter(move |iv| iv.site == site).flat_map(move |iv| {
            iv.layers.iter().filter(move |(l, _)| *l == layer).map(move |(_, op)| (iv, op))
        })
    }
}

impl Hooks for Plan {
    fn wants(&self, site: Site, layer: usize) -> bool {
        self.at_site(site, layer).next().is_some()
    }
    fn edits(&self, site: Site, layer: usize) -> Vec<Edit> {
        self.at_site(site, layer)
            .map(|(iv, op)| op.edit(iv.positions.range(self.prompt_len)))
            .collect()
    }
}

fn check_layer(l: usize, n_layer: usize) -> Result<()> {
    if l >= n_layer {
        return Err(Error::Layer { layer: l, max: n_layer - 1 });
    }
    Ok(())
}

fn finite(x: f32, what: &str) -> Result<f32> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(Error::Intervention(format!("{what} must be a finite number, got {x}")))
    }
}

/// `h + coef * md[layer]` at one layer.
pub fn add(md: &[Vec<f32>], layer: usize, coef: f32) -> Result<Vec<(usize, Op)>> {
    check_layer(layer, md.len())?;
    let c = finite(coef, "the strength")?;
    Ok(vec![(layer, Op::Add { v: md[layer].iter().map(|x| x * c).collect() })])
}

/// `h + coef * mean_norm[layer] * unit(md[layer])`: the unit-norm mode, where one strength means
/// the same at every layer (1.0 moves h by the typical residual norm of that layer).
pub fn add_unit(
    md: &[Vec<f32>],
    mean_norms: &[f32],
    layer: usize,
    coef: f32,
) -> Result<Vec<(usize, Op)>> {
    check_layer(layer, md.len())?;
    let c = finite(coef, "the strength")? * mean_norms.get(layer).copied().unwrap_or(0.0);
    Ok(vec![(layer, Op::Add { v: unit(&md[layer]).iter().map(|x| x * c).collect() })])
}

/// Each listed layer's own unit direction projected out of that layer's output.
pub fn ablate(dirs: &[Vec<f32>], layers: &[usize]) -> Result<Vec<(usize, Op)>> {
    layers
        .iter()
        .map(|&l| check_layer(l, dirs.len()).map(|_| (l, Op::Ablate { u: unit(&dirs[l]).into() })))
        .collect()
}

/// The projection on each listed layer's unit direction set to `value`.
pub fn clamp(dirs: &[Vec<f32>], layers: &[usize], value: f32) -> Result<Vec<(usize, Op)>> {
    let value = finite(value, "the clamp value")?;
    layers
        .iter()
        .map(|&l| {
            check_layer(l, dirs.len()).map(|_| (l, Op::Clamp { u: unit(&dirs[l]).into(), value }))
        })
        .collect()
}

/// The rotation plane of Selective Steering at `layer` from the per-layer mean differences.
/// b2's sign (which way the rotation turns) is not fixed by the method: Tiller orients b2 so
/// that the first layer's unit mean difference projects on it at least as much as the last
/// layer's, which matches the reference implementation's SVD sign on its data. A negative
/// angle turns the other way.
pub fn rotation_plane(md: &[Vec<f32>], layer: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    check_layer(layer, md.len())?;
    let units: Vec<Vec<f64>> =
        md.iter().map(|v| unit(v).iter().map(|x| *x as f64).collect()).collect();
    let b1 = &units[layer];
    let mut pc = first_pc(&units)?;
    let along: f64 = pc.iter().zip(b1).map(|(a, b)| a * b).sum();
    pc.iter_mut().zip(b1).for_each(|(a, b)| *a -= along * b);
    let n = pc.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n < 1e-9 {
        return Err(Error::LinAlg(
            "the principal component is parallel to b1: no rotation plane".into(),
        ));
    }
    pc.iter_mut().for_each(|x| *x /= n);
    let drift: f64 =
        units[units.len() - 1].iter().zip(&units[0]).zip(&pc).map(|((a, b), p)| (a - b) * p).sum();
    if drift > 0.0 {
        pc.iter_mut().for_each(|x| *x = -*x);
    }
    Ok((b1.iter().map(|x| *x as f32).collect(), pc.iter().map(|x| *x as f32).collect()))
}

/// Rotate by `degrees` at `layer` in its Selective Steering plane.
pub fn rotate(md: &[Vec<f32>], layer: usize, degrees: f32) -> Result<Vec<(usize, Op)>> {
    rotate_layers(md, &[layer], degrees)
}

/// Rotate by `degrees` at each listed layer, each in its own plane (b1 of that layer, the common
/// b2 made orthogonal to it). Selective Steering applies it on the layers that pass the
/// opposite-sign criterion ([`crate::diagnostics::LayerDiagnostics::opposite_signs`]).
pub fn rotate_layers(md: &[Vec<f32>], layers: &[usize], degrees: f32) -> Result<Vec<(usize, Op)>> {
    let deg = finite(degrees, "the angle")?;
    layers
        .iter()
        .map(|&l| {
            let (b1, b2) = rotation_plane(md, l)?;
            Ok((l, Op::Rotate { b1: b1.into(), b2: b2.into(), theta: deg.to_radians() }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dot;
    use tiller_engine::Backend;

    /// Deterministic pseudo-random vectors.
    fn vecs(seed: u64, n: usize, d: usize) -> Vec<Vec<f32>> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                (0..d)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                    })
                    .collect()
            })
            .collect()
    }

    fn norm(v: &[f32]) -> f64 {
        v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
    }

    /// Each op's map written out on its own (the module header's formulas, in f64): what its
    /// `Edit` must do.
    fn reference(op: &Op, h: &mut [f32]) {
        let dot64 = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
        };
        match op {
            Op::Add { v } => h.iter_mut().zip(v.iter()).for_each(|(a, b)| *a += b),
            Op::Ablate { u } => {
                let c = dot64(h, u);
                h.iter_mut().zip(u.iter()).for_each(|(a, b)| *a -= (c * *b as f64) as f32);
            }
            Op::Clamp { u, value } => {
                let c = *value as f64 - dot64(h, u);
                h.iter_mut().zip(u.iter()).for_each(|(a, b)| *a += (c * *b as f64) as f32);
            }
            Op::Rotate { b1, b2, theta } => {
                let (c1, c2) = (dot64(h, b1), dot64(h, b2));
                let (s, c) = (*theta as f64).sin_cos();
                for ((a, x1), x2) in h.iter_mut().zip(b1.iter()).zip(b2.iter()) {
                    let (x1, x2) = (*x1 as f64, *x2 as f64);
                    *a += ((c - 1.0) * (c1 * x1 + c2 * x2) + s * (c1 * x2 - c2 * x1)) as f32;
                }
            }
            Op::Affine { gamma, beta, strength } => {
                for ((a, g), b) in h.iter_mut().zip(gamma.iter()).zip(beta.iter()) {
                    *a += strength * ((g - 1.0) * *a + b);
                }
            }
        }
    }

    fn apply(op: &Op, h: &mut [f32]) {
        op.edit((0, usize::MAX)).apply(h)
    }

    /// Every op's engine `Edit` (what every backend applies) maps rows as its formula says.
    #[test]
    fn edits_equal_the_ops() {
        let d = 40;
        let md: Vec<Vec<f32>> =
            vecs(7, 5, d).into_iter().map(|v| v.iter().map(|x| x * 8.0).collect()).collect();
        let g = vecs(8, 2, d);
        let ops: Vec<Op> = [
            add(&md, 1, 1.7).unwrap(),
            ablate(&md, &[2]).unwrap(),
            clamp(&md, &[3], -2.5).unwrap(),
            rotate(&md, 2, 40.0).unwrap(),
            vec![(
                0,
                Op::Affine { gamma: g[0].clone().into(), beta: g[1].clone().into(), strength: 0.7 },
            )],
        ]
        .into_iter()
        .flat_map(|v| v.into_iter().map(|(_, op)| op))
        .collect();
        let mut worst = 0f32;
        for (i, op) in ops.iter().enumerate() {
            for h0 in vecs(20 + i as u64, 8, d) {
                let h0: Vec<f32> = h0.iter().map(|x| x * 30.0).collect();
                let (mut a, mut b) = (h0.clone(), h0.clone());
                reference(op, &mut a);
                apply(op, &mut b);
                let scale = a.iter().fold(1f32, |m, x| m.max(x.abs()));
                let e = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                worst = worst.max(e / scale);
                assert!(e <= 1e-5 * scale, "op {i} ({op:?}): max |diff| {e}");
            }
        }
        println!("edits vs ops: max relative diff {worst:.2e}");
    }

    #[test]
    fn rotation_preserves_norm_and_zero_is_identity() {
        for seed in 1..40u64 {
            let md: Vec<Vec<f32>> = vecs(seed, 6, 48)
                .into_iter()
                .map(|v| v.iter().map(|x| x * 10.0).collect())
                .collect();
            let h0 =
                vecs(seed + 100, 1, 48).remove(0).iter().map(|x| x * 50.0).collect::<Vec<f32>>();
            for deg in [0.0f32, 15.0, 60.0, 90.0, 180.0, -45.0] {
                let ops = rotate(&md, 2, deg).unwrap();
                let mut h = h0.clone();
                apply(&ops[0].1, &mut h);
                let rel = (norm(&h) - norm(&h0)).abs() / norm(&h0);
                assert!(rel <= 1e-5, "seed {seed} angle {deg}: relative norm change {rel}");
                if deg == 0.0 {
                    let e = h.iter().zip(&h0).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                    assert!(e < 1e-4, "rotation by 0 moved h by {e}");
                }
            }
        }
    }

    #[test]
    fn ablate_is_idempotent_and_clamp_sets_the_projection() {
        for seed in 1..40u64 {
            let dirs = vecs(seed, 3, 32);
            let h0 = vecs(seed + 7, 1, 32).remove(0);
            let ops = ablate(&dirs, &[1]).unwrap();
            let (mut once, mut twice) = (h0.clone(), h0.clone());
            apply(&ops[0].1, &mut once);
            apply(&ops[0].1, &mut twice);
            apply(&ops[0].1, &mut twice);
            let e = once.iter().zip(&twice).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(e < 1e-5, "ablating twice differs from once by {e}");
            assert!(dot(&once, &unit(&dirs[1])).abs() < 1e-5);
            let ops = clamp(&dirs, &[2], 3.5).unwrap();
            let mut h = h0.clone();
            apply(&ops[0].1, &mut h);
            assert!((dot(&h, &unit(&dirs[2])) - 3.5).abs() < 1e-4);
        }
    }

    #[test]
    fn add_zero_is_identity_and_positions_filter() {
        let md = vecs(3, 4, 16);
        let h0 = vecs(4, 3, 16).concat();
        let mut plan = Plan {
            interventions: vec![Intervention {
                layers: add(&md, 1, 0.0).unwrap(),
                positions: Positions::All,
                site: Site::Residual,
            }],
            prompt_len: 2,
        };
        let cpu = tiller_engine::Cpu::default();
        let run = |plan: &Plan| {
            let mut x = cpu.upload_act(h0.clone(), 3, 16).unwrap();
            cpu.edit(&mut x, &plan.edits(Site::Residual, 1), 0).unwrap();
            x.data
        };
        let h = run(&plan);
        assert_eq!(h, h0);
        // Generated positions only: rows at positions 0, 1 (prompt) untouched, 2 changed.
        plan.interventions[0] = Intervention {
            layers: add(&md, 1, 1.0).unwrap(),
            positions: Positions::Generated,
            site: Site::Residual,
        };
        let h = run(&plan);
        assert_eq!(h[..32], h0[..32]);
        assert_ne!(h[32..], h0[32..]);
        assert!(!plan.wants(Site::Residual, 0) && plan.wants(Site::Residual, 1));
        assert!(!plan.wants(Site::AttnIn, 1));
    }

    #[test]
    fn unit_add_is_scaled_and_rotation_covers_each_layer() {
        let md = vecs(9, 4, 8);
        let norms = vec![2.0f32; 4];
        let ops = add_unit(&md, &norms, 1, 0.5).unwrap();
        let Op::Add { v } = &ops[0].1 else { panic!("add") };
        assert!((norm(v) - 1.0).abs() < 1e-5, "0.5 x norm 2 = length 1, got {}", norm(v));
        let ops = rotate_layers(&md, &[0, 2, 3], 20.0).unwrap();
        assert_eq!(ops.iter().map(|o| o.0).collect::<Vec<_>>(), vec![0, 2, 3]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let md = vecs(5, 4, 8);
        assert!(add(&md, 1, f32::NAN).is_err());
        assert!(add(&md, 4, 1.0).unwrap_err().to_string().contains("out of range"));
        assert!(ablate(&md, &[0, 9]).is_err());
        assert!(clamp(&md, &[0], f32::INFINITY).is_err());
        assert!(rotate(&md, 1, f32::NAN).is_err());
    }
}
