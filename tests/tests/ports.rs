//! The science against independent implementations, on the same activations of the real model:
//! Selective Steering against a NumPy/scikit-learn port of its authors' code, SNMF against a
//! NumPy port of the first author's update (same start), the probe and the held-out protocol
//! against scikit-learn, and geometric stability against the `shesha-geometry` package.
//! Each prints its largest difference and where it is.
//!
//! The ports live in scripts/ports/ and run in tools/llama-venv (numpy, scikit-learn, scipy,
//! shesha-geometry; installed by `./dev test`); without it these tests fail and say so.

use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use tiller_engine::Precision;
use tiller_engine::Wait;
use tiller_steer::concept::{capture_concept, capture_concept_mlp, capture_sites, Acts, Read};
use tiller_steer::directions::{directions, Method};
use tiller_steer::intervene::Op;
use tiller_steer::selective::{plane, SITES};
use tiller_steer::snmf::{init, snmf_rows, SnmfParams};
use tiller_steer::{geometry, heldout, probe};
use tiller_tests::*;

fn python() -> PathBuf {
    let p = workspace().join("tools/llama-venv/bin/python");
    assert!(
        p.is_file(),
        "the reference environment is not installed at {}: run `./dev test` (it installs numpy, \
         scikit-learn and shesha-geometry there)",
        p.display()
    );
    p
}

/// Run scripts/ports/NAME with `input` on stdin; its JSON on stdout.
fn port(name: &str, input: &Value) -> Value {
    let mut child = Command::new(python())
        .arg(workspace().join("scripts/ports").join(name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{name} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn rows_at(a: &Acts, l: usize) -> Vec<Vec<f32>> {
    a.at(l).map(|r| r.to_vec()).collect()
}

const SITE_NAMES: [&str; 2] = ["input_layernorm", "post_attention_layernorm"];

/// b1 from the candidate with the highest mean cosine, b2 from scikit-learn's PCA of the
/// candidates, the layer mask with both norms required, and the rotated activations.
#[test]
fn selective_steering_matches_the_authors_code() {
    let m = model(Precision::Fast);
    let c = sentiment();
    let pos: Vec<String> = c.pairs.iter().map(|p| p.0.clone()).collect();
    let neg: Vec<String> = c.pairs.iter().map(|p| p.1.clone()).collect();
    let p = capture_sites(m, &pos, Read::LastToken, &SITES).wait().unwrap();
    let n = capture_sites(m, &neg, Read::LastToken, &SITES).wait().unwrap();
    let ours = plane(&[(p[0].clone(), n[0].clone()), (p[1].clone(), n[1].clone())]).unwrap();
    let mut sites = serde_json::Map::new();
    for l in 0..m.config.n_layer {
        for (s, name) in SITE_NAMES.iter().enumerate() {
            sites.insert(
                format!("model.layers.{l}.{name}"),
                json!({ "pos": rows_at(&p[s], l), "neg": rows_at(&n[s], l) }),
            );
        }
    }
    let probe: Vec<Vec<f32>> =
        [(0, 10), (1, 20), (0, 25)].iter().flat_map(|&(s, l)| rows_at(&p[s], l)).collect();
    let theirs =
        port("selective_steering.py", &json!({ "sites": sites, "probe": probe, "theta": 60.0 }));
    let site = SITES.iter().position(|s| *s == ours.b1_site).unwrap();
    let want_best = format!("model.layers.{}.{}", ours.b1_layer, SITE_NAMES[site]);
    assert_eq!(theirs["best"].as_str().unwrap(), want_best, "b1 comes from another candidate");
    let mut md = MaxDiff::default();
    for (what, v) in [("b1", &ours.b1), ("b2", &ours.b2)] {
        for (i, (a, b)) in v.iter().zip(f64s(&theirs[what])).enumerate() {
            md.see(*a, b as f32, || format!("{what}[{i}]"));
        }
    }
    println!("{}", md.report("Selective Steering plane vs the authors' code", 1e-7));
    assert!(md.max < 1e-7, "{}", md.report("plane", 1e-7));
    let mask = theirs["mask"].as_object().unwrap();
    for l in 0..m.config.n_layer {
        for (s, name) in SITE_NAMES.iter().enumerate() {
            let want = mask[&format!("model.layers.{l}.{name}")].as_bool().unwrap();
            assert_eq!(ours.mask[l], want, "layer {l} {name}: ours {:?}", ours.site_passes[l][s]);
        }
    }
    let chosen: Vec<usize> = (0..m.config.n_layer).filter(|&l| ours.mask[l]).collect();
    println!("blocks steered: {chosen:?}; b1 from {want_best}");
    let op = Op::Rotate {
        b1: ours.b1.as_slice().into(),
        b2: ours.b2.as_slice().into(),
        theta: 60f32.to_radians(),
    };
    let mut md = MaxDiff::default();
    for (k, (h, want)) in probe.iter().zip(theirs["steered"].as_array().unwrap()).enumerate() {
        let mut h = h.clone();
        op.edit((0, usize::MAX)).apply(&mut h);
        let scale = h.iter().fold(0f32, |a, x| a.max(x.abs()));
        for (i, (a, b)) in h.iter().zip(f64s(want)).enumerate() {
            md.see(*a / scale, b as f32 / scale, || format!("vector {k} entry {i}"));
        }
    }
    println!("{}", md.report("steered activations (relative to the largest entry)", 1e-6));
    assert!(md.max < 1e-6);
}

/// The SNMF iterations from the same start, on real MLP activations (layer 10 of the sentiment
/// texts, the attention sink left out): the loss curve, the best iteration and the factors.
#[test]
fn snmf_matches_the_reference_update() {
    let m = model(Precision::Fast);
    let (_, _, mlp) = capture_concept_mlp(m, &sentiment()).wait().unwrap();
    let (l, width) = (10, mlp.width);
    let rows: Vec<usize> = (0..mlp.tokens.len()).filter(|&r| mlp.tokens[r].1 != 0).collect();
    let a: Vec<f32> =
        rows.iter().flat_map(|&r| mlp.layers[l][r * width..(r + 1) * width].to_vec()).collect();
    let (n, k) = (rows.len(), 10);
    let p = SnmfParams {
        k,
        sparsity: 0.01,
        max_iter: 40,
        patience: 100,
        tol: 1e-4,
        reg: 1e-6,
        seed: 7,
    };
    let g0 = init(n, k, p.seed);
    let ours = snmf_rows(&a, n, width, g0.clone(), &p).unwrap();
    let a_rows: Vec<&[f32]> = a.chunks_exact(width).collect();
    let g0_rows: Vec<Vec<f64>> = (0..n).map(|i| (0..k).map(|j| g0[(i, j)]).collect()).collect();
    let theirs = port(
        "snmf.py",
        &json!({ "a": a_rows, "g0": g0_rows, "sparsity": p.sparsity, "max_iter": p.max_iter,
                 "tol": p.tol, "reg": p.reg, "patience": p.patience }),
    );
    let losses = f64s(&theirs["losses"]);
    assert_eq!(ours.losses.len(), losses.len());
    let worst = ours
        .losses
        .iter()
        .zip(&losses)
        .enumerate()
        .map(|(i, (a, b))| ((a - b).abs() / b, i))
        .fold((0f64, 0), |m, x| if x.0 > m.0 { x } else { m });
    println!(
        "SNMF ({n} tokens x {width} neurons, k {k}): loss {:.1} -> {:.1}; largest relative loss \
         difference {:.2e} at iteration {}",
        losses[0],
        losses[losses.len() - 1],
        worst.0,
        worst.1
    );
    assert!(worst.0 < 1e-6, "losses differ by {:.2e} at iteration {}", worst.0, worst.1);
    assert_eq!(ours.best_iter as u64, theirs["best_iter"].as_u64().unwrap());
    let (f, g) = (theirs["f"].as_array().unwrap(), theirs["g"].as_array().unwrap());
    let fmax = ours.f.iter().fold(0f64, |a, x| a.max(x.abs()));
    let mut md = MaxDiff::default();
    let mut support = 0usize;
    for (i, row) in f.iter().enumerate() {
        for (j, v) in f64s(row).iter().enumerate() {
            support += ((ours.f[(i, j)] != 0.0) != (*v != 0.0)) as usize;
            md.see((ours.f[(i, j)] / fmax) as f32, (v / fmax) as f32, || format!("F[{i}][{j}]"));
        }
    }
    println!(
        "{}; {support} entries kept by one side only",
        md.report("F relative to its largest entry", 1e-5)
    );
    assert!(md.max < 1e-5 && support == 0);
    let mut md = MaxDiff::default();
    for (i, row) in g.iter().enumerate() {
        for (j, v) in f64s(row).iter().enumerate() {
            md.see(ours.g[(i, j)] as f32, *v as f32, || format!("G[{i}][{j}]"));
        }
    }
    println!("{}", md.report("G (unit columns)", 1e-6));
    assert!(md.max < 1e-6);
}

/// The probe's weights and intercept against scikit-learn's LogisticRegression at the same
/// regularisation, its held-out accuracy fold for fold, and the held-out separation of the
/// mean difference against roc_auc_score.
#[test]
fn probe_and_held_out_protocol_match_scikit_learn() {
    let m = model(Precision::Fast);
    let (pos, neg) = capture_concept(m, &formality16()).wait().unwrap();
    let layers = [2usize, 10, 20, 29];
    let input = json!({
        "lambda": probe::LAMBDA,
        "layers": layers.iter().map(|&l| json!({ "pos": rows_at(&pos, l), "neg": rows_at(&neg, l) })).collect::<Vec<_>>(),
    });
    let theirs = port("probe.py", &input);
    let sep = heldout::separation(&pos, &neg, &|p: &Acts, n: &Acts, t: &[usize]| {
        directions(Method::MeanDiff, &p.subset(t), &n.subset(t))
    })
    .unwrap();
    let (mut mw, mut ms) = (MaxDiff::default(), MaxDiff::default());
    for (k, &l) in layers.iter().enumerate() {
        let t = &theirs["layers"][k];
        let all: Vec<usize> = (0..pos.acts.len()).collect();
        let mut x = Vec::new();
        let mut y = Vec::new();
        for &i in &all {
            x.push(pos.acts[i][l].as_slice());
            y.push(1.0);
            x.push(neg.acts[i][l].as_slice());
            y.push(0.0);
        }
        let pr = probe::Probe::fit(&x, &y);
        let w = f64s(&t["w"]);
        let wmax = w.iter().fold(0f64, |a, v| a.max(v.abs()));
        for (j, (a, b)) in pr.w.iter().zip(&w).enumerate() {
            mw.see((a / wmax) as f32, (b / wmax) as f32, || format!("layer {l} w[{j}]"));
        }
        mw.see(pr.b as f32, t["b"].as_f64().unwrap() as f32, || format!("layer {l} intercept"));
        println!(
            "layer {l}: probe converged in {} Newton steps (gradient {:.1e})",
            pr.iterations, pr.grad
        );
        let acc = probe::heldout_accuracy(&pos, &neg, l).unwrap();
        assert_eq!(
            acc,
            t["probe_accuracy"].as_f64().unwrap(),
            "layer {l}: held-out probe accuracy"
        );
        for (what, ours) in
            [("auroc", sep[l].auroc), ("cohens_d", sep[l].cohens_d), ("accuracy", sep[l].accuracy)]
        {
            ms.see(ours as f32, t[what].as_f64().unwrap() as f32, || format!("layer {l} {what}"));
        }
        println!(
            "layer {l}: held-out AUROC {:.3}, d {:.2}, accuracy {:.3}, probe accuracy {acc:.3}",
            sep[l].auroc, sep[l].cohens_d, sep[l].accuracy
        );
    }
    println!("{}", mw.report("probe weights (relative) and intercepts vs scikit-learn", 1e-5));
    println!("{}", ms.report("held-out AUROC, d, accuracy vs the port", 1e-6));
    assert!(mw.max < 1e-5 && ms.max < 1e-6);
}

/// Supervised alignment and the feature-split stability against shesha-geometry.
#[test]
fn geometric_stability_matches_shesha() {
    let m = model(Precision::Fast);
    let (pos, neg) = capture_concept(m, &sentiment()).wait().unwrap();
    let layers = [3usize, 15, 27];
    let parts: Vec<Vec<geometry::Partition>> = layers
        .iter()
        .map(|&l| geometry::partitions(m.config.d_model, geometry::N_SPLITS, l as u64))
        .collect();
    let input = json!({ "layers": layers.iter().zip(&parts).map(|(&l, pt)| {
        let x: Vec<Vec<f32>> = rows_at(&pos, l).into_iter().chain(rows_at(&neg, l)).collect();
        let y: Vec<u8> = (0..x.len()).map(|i| (i < pos.acts.len()) as u8).collect();
        json!({ "x": x, "y": y, "partitions": pt })
    }).collect::<Vec<_>>() });
    let theirs = port("shesha_check.py", &input);
    let mut md = MaxDiff::default();
    for (k, &l) in layers.iter().enumerate() {
        let rows: Vec<&[f32]> = pos.at(l).chain(neg.at(l)).collect();
        let labels: Vec<bool> = (0..rows.len()).map(|i| i < pos.acts.len()).collect();
        let t = &theirs["layers"][k];
        let al = geometry::supervised_alignment(&rows, &labels, 0);
        let fs = geometry::feature_split_with(&rows, &parts[k]);
        let own = geometry::feature_split(&rows, 1);
        md.see(al as f32, t["alignment"].as_f64().unwrap() as f32, || {
            format!("layer {l} alignment")
        });
        md.see(fs as f32, t["feature_split_same"].as_f64().unwrap() as f32, || {
            format!("layer {l} feature split")
        });
        let mc = t["feature_split_own"].as_f64().unwrap();
        println!(
            "layer {l}: alignment {al:.4}, feature split {fs:.4} (same partitions), ours {own:.4} \
             vs shesha's own 200 random splits {mc:.4}"
        );
        assert!((own - mc).abs() < 0.05, "layer {l}: feature split {own} vs {mc}");
    }
    println!("{}", md.report("Shesha alignment and feature split vs shesha-geometry", 1e-6));
    assert!(md.max < 1e-6);
}

/// Activation patching along a direction (and of the whole residual stream) against an
/// independent NumPy forward pass of the same GGUF (scripts/ports/patching.py: weights
/// de-quantized by the `gguf` package, float64): the logit differences of the base, the
/// source and each patched run, on the f32 path.
#[test]
fn activation_patching_matches_a_numpy_forward_pass() {
    use tiller_steer::patch::{patch, patched_logits, PatchSetup, Patched};
    let m = model(Precision::F32);
    let enc = |t: &str| m.encode_prompt(t, false).unwrap();
    let tok = |t: &str| enc(t)[0];
    let setup = PatchSetup {
        base: enc("The capital of France is the city of"),
        source: enc("The capital of Italy is the city of"),
        answer: tok(" Rome"),
        wrong: tok(" Paris"),
    };
    let n = setup.base.len();
    // Directions: the formality concept's, and at layer 3 a fixed pseudo-random one.
    let c: tiller_steer::concept::Concept = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("tests/data/formality.json")).unwrap(),
    )
    .unwrap();
    let mut dirs = tiller_steer::plan::prepare(m, &c).wait().unwrap().dirs;
    let mut seed = 12345u64;
    dirs[3] = (0..m.config.d_model)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5
        })
        .collect();
    let cells = [(0, 3), (3, 3), (10, 3), (10, n - 1), (20, n - 1), (29, n - 1)];
    let ld = |z: &[f32]| z[setup.answer as usize] as f64 - z[setup.wrong as usize] as f64;
    for (what, name) in [(Patched::Direction(&dirs), "direction"), (Patched::Residual, "residual")]
    {
        let ours: Vec<f64> = cells
            .iter()
            .map(|&(l, p)| ld(&patched_logits(m, &setup, what, l, p).wait().unwrap()))
            .collect();
        let dirs_json: serde_json::Map<String, Value> =
            cells.iter().map(|&(l, _)| (l.to_string(), json!(dirs[l]))).collect();
        let theirs = port(
            "patching.py",
            &json!({
                "model": model_path(), "base": setup.base, "source": setup.source,
                "answer": setup.answer, "wrong": setup.wrong, "cells": cells,
                "dirs": dirs_json, "what": name,
            }),
        );
        let mut md = MaxDiff::default();
        for (i, (o, t)) in ours.iter().zip(f64s(&theirs["ld"])).enumerate() {
            md.see(*o as f32, t as f32, || {
                format!("{name} patch at layer {} pos {}", cells[i].0, cells[i].1)
            });
        }
        // The recovery table from the full sweep agrees with the cells patched one by one.
        if name == "direction" {
            let full = patch(m, &setup, what, &mut |_, _| {}).wait().unwrap();
            md.see(full.ld_base as f32, theirs["ld_base"].as_f64().unwrap() as f32, || {
                "base".into()
            });
            md.see(full.ld_source as f32, theirs["ld_source"].as_f64().unwrap() as f32, || {
                "source".into()
            });
            for (i, &(l, p)) in cells.iter().enumerate() {
                assert_eq!(full.ld[l][p], ours[i], "sweep and single patch differ at {l},{p}");
            }
        }
        const TOL: f32 = 1e-4; // measured 1.5e-5
        println!("{}", md.report(&format!("{name} patching logit differences vs NumPy"), TOL));
        assert!(md.max <= TOL, "{}", md.report(name, TOL));
    }
}

/// Attention patterns (recomputed from the queries and keys the forward pass used) against the
/// attention weights of the independent NumPy forward pass.
#[test]
fn attention_patterns_match_a_numpy_forward_pass() {
    let m = model(Precision::F32);
    let ids = m.encode_prompt("The capital of France is the city of", false).unwrap();
    for layer in [0, 14, 29] {
        let ours = tiller_steer::attention::patterns(m, &ids, layer).wait().unwrap();
        let theirs = port(
            "patching.py",
            &json!({ "model": model_path(), "attention": { "ids": ids, "layer": layer } }),
        );
        let heads = theirs["heads"].as_array().unwrap();
        assert_eq!(heads.len(), ours.heads.len());
        let mut md = MaxDiff::default();
        for (h, (o, t)) in ours.heads.iter().zip(heads).enumerate() {
            for (i, row) in t.as_array().unwrap().iter().enumerate() {
                for (j, x) in f64s(row).into_iter().enumerate() {
                    md.see(o[i * ours.n + j], x as f32, || format!("head {h} query {i} key {j}"));
                }
            }
        }
        const TOL: f32 = 1e-5;
        println!("{}", md.report(&format!("attention weights at layer {layer} vs NumPy"), TOL));
        assert!(md.max <= TOL, "{}", md.report("attention", TOL));
    }
}
