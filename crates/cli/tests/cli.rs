//! The `tiller` command-line contract (issue #2): JSON shapes, streaming, exit code 2 on
//! errors with a message on stderr, never a panic. Runs the real binary on the real model.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn model() -> String {
    let p = std::env::var_os("TILLER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../www/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.is_file(),
        "model not found at {}: run `./dev setup`",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

fn tiller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args(args)
        .output()
        .expect("running tiller")
}

fn json_ok(args: &[&str]) -> Value {
    let o = tiller(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "tiller {args:?} failed: {err}");
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"))
}

fn fails(args: &[&str], needle: &str) {
    let o = tiller(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "tiller {args:?}: expected exit 2, stderr: {err}"
    );
    assert!(
        err.contains(needle),
        "tiller {args:?}: stderr lacks {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
}

#[test]
fn logits_last_position_top_k() {
    let m = model();
    let v = json_ok(&[
        "logits",
        "--model",
        &m,
        "--prompt",
        "The capital of France is",
        "--top",
        "5",
    ]);
    assert_eq!(v["ids"], serde_json::json!([504, 3575, 282, 4649, 314]));
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 1);
    let row = top[0].as_array().unwrap();
    assert_eq!(row.len(), 5);
    assert_eq!(row[0][0], 7042, "' Paris' first");
    let logits: Vec<f64> = row.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert!(logits.windows(2).all(|w| w[0] >= w[1]), "sorted by logit");
}

#[test]
fn logits_all_positions_from_ids_and_chat() {
    let m = model();
    let v = json_ok(&[
        "logits",
        "--model",
        &m,
        "--ids",
        "504,3575,282",
        "--all",
        "--precision",
        "f32",
    ]);
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert!(
        top.iter().all(|r| r.as_array().unwrap().len() == 10),
        "default K is 10"
    );
    let v = json_ok(&[
        "logits",
        "--model",
        &m,
        "--prompt",
        "What is 2 + 2?",
        "--chat",
    ]);
    let ids = v["ids"].as_array().unwrap();
    assert_eq!(ids[0], 1, "chat template starts with <|im_start|>");
}

#[test]
fn generate_streams_and_json() {
    let m = model();
    let o = tiller(&[
        "generate",
        "--model",
        &m,
        "--prompt",
        "The capital of France is",
        "--max-tokens",
        "8",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(" Paris."));
    let v = json_ok(&[
        "generate",
        "--model",
        &m,
        "--prompt",
        "The capital of France is",
        "--max-tokens",
        "8",
        "--json",
    ]);
    assert_eq!(v["ids"].as_array().unwrap().len(), 8);
    assert_eq!(v["tokens"].as_array().unwrap().len(), 8);
    assert!(v["text"].as_str().unwrap().starts_with(" Paris."));
}

#[test]
fn sampling_is_seeded() {
    let m = model();
    let run = |seed: &str| {
        json_ok(&[
            "generate",
            "--model",
            &m,
            "--prompt",
            "Once upon a time",
            "--max-tokens",
            "12",
            "--temperature",
            "0.9",
            "--top-k",
            "40",
            "--top-p",
            "0.95",
            "--seed",
            seed,
            "--json",
        ])["ids"]
            .clone()
    };
    assert_eq!(run("7"), run("7"), "same seed, same tokens");
    assert_ne!(run("7"), run("8"), "another seed, other tokens");
}

#[test]
fn bench_json_last_line() {
    let m = model();
    let v = json_ok(&[
        "bench",
        "--model",
        &m,
        "--prompt-tokens",
        "16",
        "--gen-tokens",
        "4",
        "--reps",
        "1",
        "--json",
    ]);
    assert!(v["prefill_tok_s"].as_f64().unwrap() > 0.0);
    assert!(v["decode_tok_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let m = model();
    fails(
        &["logits", "--model", "/nonexistent.gguf", "--prompt", "x"],
        "reading model file",
    );
    let dir = std::env::temp_dir().join(format!("tiller-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    fails(
        &["logits", "--model", bad.to_str().unwrap(), "--prompt", "x"],
        "truncated",
    );
    std::fs::write(&bad, b"not a model at all").unwrap();
    fails(
        &[
            "generate",
            "--model",
            bad.to_str().unwrap(),
            "--prompt",
            "x",
        ],
        "magic",
    );
    fails(&["logits", "--model", &m, "--prompt", ""], "empty");
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "",
            "--max-tokens",
            "4",
        ],
        "empty",
    );
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--temperature",
            "NaN",
        ],
        "temperature",
    );
    fails(
        &["generate", "--model", &m, "--prompt", "x", "--top-p", "0"],
        "top-p",
    );
    fails(
        &["logits", "--model", &m, "--ids", "1,99999999"],
        "outside the vocabulary",
    );
    fails(
        &[
            "logits",
            "--model",
            &m,
            "--prompt",
            "x",
            "--precision",
            "f16",
        ],
        "precision",
    );
    fails(
        &[
            "bench",
            "--model",
            &m,
            "--prompt-tokens",
            "9000",
            "--gen-tokens",
            "1",
        ],
        "context",
    );
    let long = "word ".repeat(9000);
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            &long,
            "--max-tokens",
            "2",
        ],
        "context",
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn reference_concept() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/smollm2-135m-instruct/concept-sentiment.json");
    assert!(
        p.is_file(),
        "reference concept not found at {}",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

#[test]
fn concept_json_shape() {
    let (m, c) = (model(), reference_concept());
    for method in ["mean-diff", "pca"] {
        let v = json_ok(&[
            "concept", "--model", &m, "--pairs", &c, "--method", method, "--json",
        ]);
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
    fails(
        &["concept", "--model", &m, "--pairs", &c, "--method", "lda"],
        "unknown method",
    );
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
        v["text"]
            .as_str()
            .unwrap()
            .starts_with(" perfect for a day of enjoying the outdoors."),
        "{}",
        v["text"]
    );
    let base = json_ok(&[
        "logits",
        "--model",
        &m,
        "--prompt",
        "I love this. It is",
        "--top",
        "3",
    ]);
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
    assert!(
        unit["text"].as_str().unwrap().starts_with(" perfect"),
        "{}",
        unit["text"]
    );
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
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--concept",
            &c,
            "--add",
            "nope@10=1",
        ],
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
            &c,
            "--add",
            "sentiment@40=1",
        ],
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
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--add",
            "sentiment@3=1",
        ],
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
    assert!(
        score(0) < score(1) && score(1) < score(2),
        "sentiment score rises with strength"
    );
    assert!(
        pts[1]["kl_mean"].as_f64().unwrap() < 1e-6,
        "no steering, no divergence"
    );
    assert!(
        pts[0]["kl_mean"].as_f64().unwrap() > 0.01 && pts[2]["kl_mean"].as_f64().unwrap() > 0.01
    );
    assert!(pts[2]["perplexity"].as_f64().unwrap() > 1.0);
    assert!(
        pts[0]["scores"]["formality"].is_number(),
        "side effects are scored"
    );
    fails(
        &[
            "sweep",
            "--model",
            &m,
            "--concept",
            &c,
            "--layer",
            "10",
            "--strengths",
            "NaN",
        ],
        "finite",
    );
    fails(
        &[
            "sweep",
            "--model",
            &m,
            "--concept",
            &c,
            "--layer",
            "10",
            "--op",
            "twist",
        ],
        "--op",
    );
    fails(
        &["sweep", "--model", &m, "--concept", &c, "--layer", "99"],
        "out of range",
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
    assert!(
        v["prefill_tok_s"].as_f64().unwrap() > 0.0,
        "the contract's keys stay"
    );
    let r = v["concept"]["capture_over_prefill"].as_f64().unwrap();
    assert!(r > 0.0 && r.is_finite());
    for meth in ["mean-diff", "pca", "probe", "svd"] {
        assert!(
            v["concept"]["methods"][meth]["directions_ms"]
                .as_f64()
                .unwrap()
                >= 0.0
        );
    }
}
