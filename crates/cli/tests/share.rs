//! The sharing side of the CLI (issue #5): `share encode|decode`, `generate --config` with a
//! file or a link, `export` and `--control-vector`.

mod common;
use common::*;
use serde_json::{json, Value};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tiller-share-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn out(args: &[&str]) -> String {
    let o = tiller(args);
    assert!(o.status.success(), "tiller {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The reference add case (steering.json) as a setup file.
fn add_setup() -> Value {
    let concept: Value =
        serde_json::from_str(&std::fs::read_to_string(reference_concept()).unwrap()).unwrap();
    json!({
        "version": 1,
        "concepts": [concept],
        "interventions": [{"concept": "sentiment", "op": "add", "layers": [10], "strength": 1.0}],
        "prompt": "I think that the weather today is",
        "sampling": {"max_tokens": 30},
    })
}

#[test]
fn generate_with_a_setup_file_or_its_link_equals_the_flags() {
    let m = model();
    let file = tmp("add.json");
    std::fs::write(&file, add_setup().to_string()).unwrap();
    let f = file.to_str().unwrap();
    let by_file =
        json_ok(&["generate", "--model", &m, "--precision", "f32", "--config", f, "--json"]);
    let flags = json_ok(&[
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
        &reference_concept(),
        "--add",
        "sentiment@10=1",
        "--json",
    ]);
    assert_eq!(by_file["ids"], flags["ids"]);
    assert!(by_file["text"]
        .as_str()
        .unwrap()
        .starts_with(" perfect for a day of enjoying the outdoors."));
    // The same through a share link, whole URL or bare fragment.
    let frag = out(&["share", "encode", "--config", f]);
    assert!(frag.starts_with("#c=") && frag.len() < 2000, "{frag}");
    let url = out(&["share", "encode", "--config", f, "--base", "https://tiller.example/play/"]);
    assert_eq!(url, format!("https://tiller.example/play/{frag}"));
    let by_link =
        json_ok(&["generate", "--model", &m, "--precision", "f32", "--config", &url, "--json"]);
    assert_eq!(by_link["ids"], flags["ids"]);
    // decode prints the setup.
    let decoded: Value = serde_json::from_str(&out(&["share", "decode", &frag])).unwrap();
    assert_eq!(decoded["interventions"][0]["op"], "add");
    assert_eq!(decoded["concepts"][0]["name"], "sentiment");
    assert_eq!(decoded["prompt"], "I think that the weather today is");
    // Flags override the setup's prompt and sampling.
    let short = json_ok(&["generate", "--model", &m, "--config", f, "--max-tokens", "3", "--json"]);
    assert_eq!(short["ids"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_setups_and_links_are_clear_errors() {
    let m = model();
    fails(&["share", "decode", "#c=!!!"], "base64");
    fails(&["share", "decode", "https://x.example/#c=CQECAw"], "newer Tiller");
    let file = tmp("bad.json");
    let mut s = add_setup();
    s["interventions"][0]["concept"] = json!("nope");
    std::fs::write(&file, s.to_string()).unwrap();
    fails(&["share", "encode", "--config", file.to_str().unwrap()], "does not define");
    fails(&["generate", "--model", &m, "--config", file.to_str().unwrap()], "does not define");
    let mut s = add_setup();
    s["version"] = json!(tiller_share::config::VERSION + 1);
    std::fs::write(&file, s.to_string()).unwrap();
    fails(&["generate", "--model", &m, "--config", file.to_str().unwrap()], "newer Tiller");
    fails(&["generate", "--model", &m, "--config", "not-a-file-or-link"], "not a file");
    // A setup made with another model says so, and still runs.
    let mut s = add_setup();
    s["model"] = json!({"id": "other.gguf", "sha256": "00".repeat(32)});
    s["sampling"]["max_tokens"] = json!(2);
    std::fs::write(&file, s.to_string()).unwrap();
    let o = tiller(&["generate", "--model", &m, "--config", file.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("made with model other.gguf"));
}

#[test]
fn export_then_import_steers_like_the_flags() {
    let (m, c) = (model(), reference_concept());
    let cv = tmp("sentiment.gguf");
    let cvs = cv.to_str().unwrap();
    // The same precision as the generations below, so the vectors are the same.
    let o = tiller(&[
        "export",
        "--model",
        &m,
        "--precision",
        "f32",
        "--concept",
        &c,
        "--layers",
        "10",
        "--coef",
        "1",
        "--out",
        cvs,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let prompt = "I think that the weather today is";
    let base = [
        "generate",
        "--model",
        &m,
        "--precision",
        "f32",
        "--prompt",
        prompt,
        "--max-tokens",
        "20",
        "--json",
    ];
    let mut a = base.to_vec();
    a.extend(["--concept", &c, "--add", "sentiment@10=1"]);
    let flags = json_ok(&a);
    let mut b = base.to_vec();
    b.extend(["--control-vector", cvs]);
    let imported = json_ok(&b);
    assert_eq!(flags["ids"], imported["ids"], "direction.10 acts at layer 10");
    let mut s = base.to_vec();
    let scaled = format!("{cvs}=2");
    s.extend(["--control-vector", &scaled]);
    let mut f2 = base.to_vec();
    f2.extend(["--concept", &c, "--add", "sentiment@10=2"]);
    assert_eq!(json_ok(&s)["ids"], json_ok(&f2)["ids"], "strength scales");
    // cvector-generator's convention: --control-vector-shift applies direction.10 at layer 9
    // (the unit tests check the mapping; here it runs and steers differently).
    let mut sh = base.to_vec();
    sh.extend(["--control-vector", cvs, "--control-vector-shift"]);
    assert_ne!(json_ok(&sh)["ids"], imported["ids"]);
    fails(&["export", "--model", &m, "--concept", &c, "--layers", "0-3", "--out", cvs], "layer 0");
    fails(
        &["generate", "--model", &m, "--prompt", "x", "--control-vector", &m],
        "not `controlvector`",
    );
}
