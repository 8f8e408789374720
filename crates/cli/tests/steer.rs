//! The steering side of the `tiller` CLI (issue #3): `concept`, the steering flags, `sweep`
//! and `bench --concept`, on the real model and the reference concept.

mod common;
use common::*;
use std::path::PathBuf;

#[test]
fn concept_json_shape() {
    let (m, c) = (model(), reference_concept());
    for method in ["mean-diff", "pca-repe"] {
        let v = json_ok(&[
            "concept",
            "--model",
            &m,
            "--pairs",
            &c,
            "--method",
            method,
            "--json",
            "--promotes-layers",
            "5",
        ]);
        assert_eq!(v["name"], "sentiment");
        assert_eq!(v["method"], method);
        assert_eq!((v["folds"].as_u64(), v["null_runs"].as_u64()), (Some(5), Some(8)));
        let layers = v["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 30);
        assert_eq!(layers[7]["layer"], 7);
        assert_eq!(layers[7]["direction"].as_array().unwrap().len(), 576);
        for key in [
            "norm",
            "auroc",
            "auroc_null",
            "auroc_null_band",
            "cohens_d",
            "accuracy",
            "accuracy_null",
            "probe_accuracy",
            "probe_accuracy_null",
            "auroc_in_sample",
            "cohens_d_in_sample",
            "bootstrap_cosine",
            "feature_split",
            "supervised_alignment",
            "opposite_signs",
            "norm_over_mean_residual",
            "unembedding_promotes",
            "unembedding_suppresses",
        ] {
            assert!(!layers[20][key].is_null(), "{key} missing");
        }
        let band = layers[20]["auroc_null_band"].as_array().unwrap();
        let (lo, hi) = (band[0].as_f64().unwrap(), band[1].as_f64().unwrap());
        let mean = layers[20]["auroc_null"].as_f64().unwrap();
        assert!(lo <= mean && mean <= hi, "null mean {mean} outside its band {lo}..{hi}");
        assert_eq!(layers[20]["unembedding_promotes"].as_array().unwrap().len(), 10);
        // What the direction promotes, at the best layer and at the layer asked for.
        let best = v["best_layer"].as_u64().unwrap();
        assert_eq!(v["promotes"]["layer"].as_u64(), Some(best));
        assert_eq!(v["promotes"]["promotes"].as_array().unwrap().len(), 10);
        assert_eq!(v["promotes_more"][0]["layer"], 5);
        let up = v["promotes"]["promotes"][0]["score"].as_f64().unwrap();
        let down = v["promotes"]["suppresses"][0]["score"].as_f64().unwrap();
        assert!(up > 0.0 && down < 0.0, "log-probability shifts {up} / {down}");
    }
    // One pair: nothing can be held out; the report says so (null), it does not fake it.
    let one = std::env::temp_dir().join(format!("tiller-one-pair-{}.json", std::process::id()));
    std::fs::write(&one, r#"{"name": "one", "pairs": [["I love it", "I hate it"]]}"#).unwrap();
    let v = json_ok(&["concept", "--model", &m, "--pairs", one.to_str().unwrap(), "--json"]);
    assert!(v["layers"][10]["auroc"].is_null() && v["layers"][10]["probe_accuracy"].is_null());
    assert_eq!(v["null_runs"], 0);
    assert!(v["layers"][10]["auroc_in_sample"].is_number());
    fails(&["concept", "--model", &m, "--pairs", &c, "--method", "lda"], "unknown method");
    fails(&["concept", "--model", &m, "--pairs", &c, "--promotes-layers", "31"], "out of range");
}

#[test]
fn concept_snmf_features() {
    let (m, c) = (model(), reference_concept());
    let v = json_ok(&[
        "concept",
        "--model",
        &m,
        "--pairs",
        &c,
        "--method",
        "snmf",
        "--features",
        "4",
        "--json",
    ]);
    assert_eq!(v["method"], "snmf");
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 30);
    let best = v["best_layer"].as_u64().unwrap() as usize;
    assert!((7..23).contains(&best), "best layer {best} outside the middle half");
    let mut oriented = 0;
    for l in layers {
        let s = &l["snmf"];
        assert_eq!((s["k"].as_u64(), s["sparsity"].as_f64()), (Some(4), Some(0.01)));
        let features = s["features"].as_array().unwrap();
        assert_eq!(features.len(), 4);
        let (first, best) = (s["error_first"].as_f64().unwrap(), s["error_best"].as_f64().unwrap());
        assert!(best <= first, "layer {}: error {first} -> {best}", l["layer"]);
        for f in features {
            assert_eq!(f["top_tokens"].as_array().unwrap().len(), 8);
            assert!(f["top_tokens"][0]["weight"].as_f64().unwrap() >= 0.0);
            assert_eq!(f["direction"].as_array().unwrap().len(), 576);
            // Winner-take-all: 1% of the 1536 neurons (ties at the threshold kept).
            assert!(f["neurons"].as_u64().unwrap() >= 16, "{}", f["neurons"]);
            let a = f["concept_auroc"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a));
        }
        // The direction is oriented so positives project higher (in sample).
        oriented += (l["auroc_in_sample"].as_f64().unwrap() > 0.5) as usize;
    }
    println!("SNMF: best layer {best}, {oriented}/30 layers oriented");
    assert!(oriented >= 25, "only {oriented}/30 layers orient the SNMF direction right");
}

#[test]
fn lineas_trains_keeps_some_neurons_and_steers() {
    let m = model();
    let c = formality();
    let v = json_ok(&["lineas", "--model", &m, "--concept", &c, "--layers", "8-14", "--json"]);
    let loss: Vec<f64> =
        v["loss"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let kept: Vec<u64> =
        v["kept"].as_array().unwrap().iter().map(|k| k["count"].as_u64().unwrap()).collect();
    println!(
        "LinEAS on formality, layers 8-14: loss {loss:?}, kept {kept:?} of 576, {:.1} s",
        v["seconds"]
    );
    let (first, last) = (loss[0], *loss.last().unwrap());
    assert!(last < 0.5 * first, "the distribution loss fell only from {first} to {last}");
    assert!(loss.windows(2).all(|w| w[1] <= w[0]), "accepted losses never rise");
    assert_eq!(kept.len(), 7);
    assert!(kept.iter().all(|&k| k > 0 && k < 576), "the penalty selects neurons: {kept:?}");
    // Steering with the maps changes the continuation.
    let gen = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            &m,
            "--prompt",
            "hey, can you send me the",
            "--max-tokens",
            "12",
            "--json",
        ];
        args.extend_from_slice(extra);
        json_ok(&args)["text"].as_str().unwrap().to_string()
    };
    let base = gen(&[]);
    let steered = gen(&["--concept", &c, "--affine", "formality@8-14=1"]);
    let none = gen(&["--concept", &c, "--affine", "formality@8-14=0"]);
    println!("baseline: {base:?}\nLinEAS 1: {steered:?}");
    assert_ne!(base, steered);
    assert_eq!(base, none, "strength 0 is the identity");
}

#[test]
fn observable_direction_and_coupling() {
    let (m, c) = (model(), reference_concept());
    let v =
        json_ok(&["observable", "--model", &m, "--pair", " good, bad", "--concept", &c, "--json"]);
    assert_eq!(v["direction"].as_array().unwrap().len(), 576);
    let k: Vec<f64> = v["couplings"][0]["coupling"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(k.len(), 30);
    // Moving along the sentiment direction raises logit(" good") - logit(" bad") in late layers.
    assert!(k[20..].iter().all(|x| *x > 0.0), "{k:?}");
    fails(&["observable", "--model", &m, "--pair", "good things, bad"], "one token");
    fails(&["observable", "--model", &m, "--pair", "good"], "expected A,B");
}

#[test]
fn steering_flags_reproduce_the_reference_add_case() {
    let (m, c) = (model(), reference_concept());
    let v = json_ok(&[
        "generate",
        "--model",
        &m,
        "--precision",
        "f32",
        "--prompt",
        "I think that the weather today is",
        "--max-tokens",
        "30",
        "--concept",
        &c,
        "--add",
        "sentiment@10=1",
        "--json",
    ]);
    assert!(
        v["text"].as_str().unwrap().starts_with(" perfect for a day of enjoying the outdoors."),
        "{}",
        v["text"]
    );
    let base = json_ok(&["logits", "--model", &m, "--prompt", "I love this. It is", "--top", "3"]);
    let abl = json_ok(&[
        "logits",
        "--model",
        &m,
        "--prompt",
        "I love this. It is",
        "--top",
        "3",
        "--concept",
        &c,
        "--ablate",
        "sentiment@0-29",
    ]);
    assert_ne!(base["top"], abl["top"], "ablation changes the logits");
    let rot = json_ok(&[
        "logits",
        "--model",
        &m,
        "--prompt",
        "I love this",
        "--concept",
        &c,
        "--rotate",
        "sentiment@10=0",
        "--positions",
        "prompt",
    ]);
    let plain = json_ok(&["logits", "--model", &m, "--prompt", "I love this"]);
    assert_eq!(rot["ids"], plain["ids"]);
    let unit = json_ok(&[
        "generate",
        "--model",
        &m,
        "--prompt",
        "I think that the weather today is",
        "--max-tokens",
        "8",
        "--concept",
        &c,
        "--add-unit",
        "sentiment@10=0.25",
        "--json",
    ]);
    assert!(unit["text"].as_str().unwrap().starts_with(" perfect"), "{}", unit["text"]);
    let sel = json_ok(&[
        "logits",
        "--model",
        &m,
        "--prompt",
        "I love this",
        "--concept",
        &c,
        "--rotate",
        "sentiment@10-20=30",
        "--selective",
    ]);
    assert_ne!(sel["top"], plain["top"]);
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--concept",
            &c,
            "--rotate",
            "sentiment@14=30",
            "--selective",
        ],
        "criterion",
    );
    fails(
        &["generate", "--model", &m, "--prompt", "x", "--concept", &c, "--add", "nope@10=1"],
        "unknown concept",
    );
    fails(
        &["generate", "--model", &m, "--prompt", "x", "--concept", &c, "--add", "sentiment@40=1"],
        "out of range",
    );
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--concept",
            &c,
            "--clamp",
            "sentiment@3-5=NaN",
        ],
        "finite",
    );
    fails(
        &["generate", "--model", &m, "--prompt", "x", "--add", "sentiment@3=1"],
        "unknown concept",
    );
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--concept",
            "/nonexistent.json",
            "--add",
            "s@3=1",
        ],
        "reading concept file",
    );
}

#[test]
fn sweep_curves() {
    let (m, c) = (model(), reference_concept());
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/formality.json");
    let sweep = |extra: &[&str]| {
        let mut args = vec![
            "sweep",
            "--model",
            &m,
            "--concept",
            &c,
            "--concept",
            f.to_str().unwrap(),
            "--layer",
            "10",
            "--max-tokens",
            "24",
            "--json",
        ];
        args.extend_from_slice(extra);
        json_ok(&args)
    };
    let v = sweep(&["--strengths=-2,-1,0,1,2"]);
    let pts = v["points"].as_array().unwrap();
    assert_eq!(pts.len(), 5);
    let z = |ps: &[serde_json::Value]| -> Vec<f64> {
        ps.iter().map(|p| p["scores"]["sentiment"].as_f64().unwrap()).collect()
    };
    let score = z(pts);
    assert!(score[1] < score[2] && score[2] < score[3], "sentiment z-score rises with strength");
    assert!(score[2].abs() < 1e-9, "strength 0 is the baseline: z = 0, got {}", score[2]);
    assert!(pts[2]["kl_mean"].as_f64().unwrap() < 1e-6, "no steering, no divergence");
    assert!(
        pts[1]["kl_mean"].as_f64().unwrap() > 0.01 && pts[3]["kl_mean"].as_f64().unwrap() > 0.01
    );
    assert_eq!(pts[3]["kl"].as_array().unwrap().len(), 4, "one KL per neutral prompt");
    assert!(pts[3]["perplexity"].as_f64().unwrap() > 1.0);
    assert!(pts[0]["scores"]["formality"].is_number(), "side effects are scored");
    assert!(pts[0]["raw_scores"]["sentiment"].is_number());
    // The random control: same op, layer and strengths, a random direction of the same norm.
    let ctl = v["control"].as_array().unwrap();
    assert_eq!(ctl.len(), 5);
    assert!(ctl.iter().all(|p| p["control"] == true));
    let cz = z(ctl);
    let range = |v: &[f64]| {
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    println!("sentiment z over -2..2: steered {score:.2?}, random control {cz:.2?}");
    assert!(range(&score) > range(&cz), "the concept moves its score more than a random direction");
    // On generated positions only, the neutral continuations are steered too: side effects
    // are not zero.
    let g = sweep(&["--strengths=0,1", "--positions", "generated", "--no-control"]);
    let kl = g["points"][1]["kl_mean"].as_f64().unwrap();
    println!("generated positions only, strength 1: KL on the neutral continuations {kl:.3}");
    assert!(kl > 0.01, "KL {kl}");
    assert!(g["control"].as_array().unwrap().is_empty());
    fails(
        &["sweep", "--model", &m, "--concept", &c, "--layer", "10", "--strengths", "NaN"],
        "finite",
    );
    fails(&["sweep", "--model", &m, "--concept", &c, "--layer", "10", "--op", "twist"], "--op");
    fails(&["sweep", "--model", &m, "--concept", &c, "--layer", "99"], "out of range");
}

/// Selective Steering from the command line: the flag steers, 0 degrees is the identity, a
/// block that fails its test alone is refused with the reason.
#[test]
fn selective_steering_flag() {
    let (m, c) = (model(), reference_concept());
    let gen = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            &m,
            "--prompt",
            "I think that the weather today is",
            "--max-tokens",
            "10",
            "--json",
        ];
        args.extend_from_slice(extra);
        json_ok(&args)["ids"].clone()
    };
    let base = gen(&[]);
    let zero = gen(&["--concept", &c, "--selective-steering", "sentiment@0-29=0"]);
    let steered = gen(&["--concept", &c, "--selective-steering", "sentiment@0-29=90"]);
    assert_eq!(base, zero, "a rotation by 0 is the identity");
    assert_ne!(base, steered);
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--concept",
            &c,
            "--selective-steering",
            "sentiment@0-29",
        ],
        "NAME@LAYERS=DEGREES",
    );
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--concept",
            &c,
            "--selective-steering",
            "sentiment@0=30",
        ],
        "passes Selective Steering's test",
    );
}

#[test]
fn bench_concept_reports_capture_and_methods() {
    let (m, c) = (model(), reference_concept());
    let v = json_ok(&[
        "bench",
        "--model",
        &m,
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "2",
        "--reps",
        "1",
        "--concept",
        &c,
        "--json",
    ]);
    assert!(v["prefill_tok_s"].as_f64().unwrap() > 0.0, "the contract's keys stay");
    let r = v["concept"]["capture_over_prefill"].as_f64().unwrap();
    assert!(r > 0.0 && r.is_finite());
    for meth in ["mean-diff", "pca", "probe", "svd", "snmf"] {
        assert!(v["concept"]["methods"][meth]["directions_ms"].as_f64().unwrap() >= 0.0);
        assert!(v["concept"]["methods"][meth]["analyze_ms"].as_f64().unwrap() > 0.0);
    }
}
