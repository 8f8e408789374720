//! Helpers shared by the CLI test files: the model, running `tiller`, JSON and exit-code checks.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

pub fn model() -> String {
    let p = std::env::var_os("TILLER_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../www/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    assert!(p.is_file(), "model not found at {}: run `./dev setup`", p.display());
    p.to_string_lossy().into_owned()
}

pub fn tiller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiller")).args(args).output().expect("running tiller")
}

pub fn json_ok(args: &[&str]) -> Value {
    let o = tiller(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "tiller {args:?} failed: {err}");
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"))
}

pub fn fails(args: &[&str], needle: &str) {
    let o = tiller(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "tiller {args:?}: expected exit 2, stderr: {err}");
    assert!(err.contains(needle), "tiller {args:?}: stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
}

pub fn reference_concept() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/smollm2-135m-instruct/concept-sentiment.json");
    assert!(p.is_file(), "reference concept not found at {}", p.display());
    p.to_string_lossy().into_owned()
}

/// The formality concept in tests/data (8 pairs).
pub fn formality() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/formality.json")
        .to_string_lossy()
        .into_owned()
}
