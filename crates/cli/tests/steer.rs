//! The steering side of the `tiller` CLI (issue #3): `concept`, the steering flags, `sweep`
//! and `bench --concept`, on the real model and the reference concept.

mod common;
use common::*;
use std::path::PathBuf;

#[test]
fn concept_json_shape() {
    let (m, c) = (model(), reference_concept());
    for method in ["mean-diff", "pca"] {
        let v = json_ok(&["concept", "--model", &m, "--pairs", &c, "--method", method, "--json"]);
        assert_eq!(v["name"], "sentiment");
        assert_eq!(v["method"], method);
        let layers = v["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 30);
        assert_eq!(layers[7]["layer"], 7);
        assert_eq!(layers[7]["direction"].as_array().unwrap().len(), 576);
        for key in [
            "norm",
            "auroc",
            "cohens_d",
            "opposite_signs",
            "norm_over_mean_residual",
            "promotes",
            "suppresses",
        ] {
            assert!(!layers[20][key].is_null(), "{key} missing");
        }
        assert_eq!(layers[20]["promotes"].as_array().unwrap().len(), 10);
    }
    fails(&["concept", "--model", &m, "--pairs", &c, "--method", "lda"], "unknown method");
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
    let mut separated = 0;
    for l in layers {
        let s = &l["snmf"];
        let features = s["features"].as_array().unwrap();
        assert_eq!(features.len(), 4);
        let (first, last) = (s["error_first"].as_f64().unwrap(), s["error_last"].as_f64().unwrap());
        assert!(last < first, "layer {}: error {first} -> {last}", l["layer"]);
        for f in features {
            assert_eq!(f["top_tokens"].as_array().unwrap().len(), 8);
            assert!(f["top_tokens"][0]["weight"].as_f64().unwrap() >= 0.0);
            assert_eq!(f["direction"].as_array().unwrap().len(), 576);
        }
        let bf = s["best_feature"].as_u64().unwrap() as usize;
        assert!(features[bf]["concept_gap"].as_f64().unwrap() != 0.0);
        // The direction is oriented so positives project higher.
        separated += (l["auroc"].as_f64().unwrap() > 0.5) as usize;
    }
    println!("SNMF: best layer {best}, {separated}/30 layers with AUROC > 0.5");
    assert!(separated >= 25, "only {separated}/30 layers orient the SNMF direction right");
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
    let v = json_ok(&[
        "sweep",
        "--model",
        &m,
        "--concept",
        &c,
        "--concept",
        f.to_str().unwrap(),
        "--layer",
        "10",
        "--strengths=-1,0,1",
        "--max-tokens",
        "12",
        "--json",
    ]);
    let pts = v["points"].as_array().unwrap();
    assert_eq!(pts.len(), 3);
    let score = |i: usize| pts[i]["scores"]["sentiment"].as_f64().unwrap();
    assert!(score(0) < score(1) && score(1) < score(2), "sentiment score rises with strength");
    assert!(pts[1]["kl_mean"].as_f64().unwrap() < 1e-6, "no steering, no divergence");
    assert!(
        pts[0]["kl_mean"].as_f64().unwrap() > 0.01 && pts[2]["kl_mean"].as_f64().unwrap() > 0.01
    );
    assert!(pts[2]["perplexity"].as_f64().unwrap() > 1.0);
    assert!(pts[0]["scores"]["formality"].is_number(), "side effects are scored");
    fails(
        &["sweep", "--model", &m, "--concept", &c, "--layer", "10", "--strengths", "NaN"],
        "finite",
    );
    fails(&["sweep", "--model", &m, "--concept", &c, "--layer", "10", "--op", "twist"], "--op");
    fails(&["sweep", "--model", &m, "--concept", &c, "--layer", "99"], "out of range");
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
