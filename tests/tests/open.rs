//! Opening the page (issue 14's fast open), in headless Chromium on the CPU backend
//! (tests/e2e/open.mjs): the first visit hashes the model while it streams and keeps it in the
//! Cache API with its sha256; later visits read it from there with that hash (no re-hash); the
//! hash the page holds is the file's; a damaged cached copy is a clear error, dropped, and the
//! next visit downloads the file again; the page's own benchmark gives its JSON. Times are printed, not asserted (the benchmark is
//! `node tests/e2e/open.mjs dist`).

use tiller_share::config::DEFAULT_MODEL_SHA256;
use tiller_tests::{run_script, workspace};

#[test]
fn cached_model_opens_with_its_stored_hash_and_a_damaged_copy_is_replaced() {
    let dist = workspace().join("dist");
    assert!(dist.join("index.html").is_file(), "dist is missing: run `./dev build`");
    let v = run_script("open.mjs", &[dist.as_os_str()]);
    let visits = v["visits"].as_array().unwrap();
    for (i, x) in visits.iter().enumerate() {
        println!("visit {i}: page open-to-ready {} ms; {}", x["page_ms"], x["message"]);
        assert_eq!(x["state"], "ready", "{x}");
        assert_eq!(x["sha256"], DEFAULT_MODEL_SHA256, "visit {i}");
        let m = x["message"].as_str().unwrap();
        let want = if i == 0 { "download and sha256" } else { "read from the cache" };
        assert!(m.contains(want) && m.contains("reading the weights"), "visit {i}: {m}");
        // Cached visits hash nothing: no step names the hash.
        assert!(i == 0 || !m.contains("sha256"), "visit {i}: {m}");
    }
    assert_eq!(v["damaged"].as_u64(), Some(1));
    let d = &v["after_damage"];
    assert_eq!(d["state"], "error");
    let e = d["error"].as_str().unwrap();
    assert!(e.contains("damaged copy was removed") && e.contains("reload"), "{e}");
    let r = &v["redownload"];
    assert_eq!(
        (r["state"].as_str(), r["sha256"].as_str()),
        (Some("ready"), Some(DEFAULT_MODEL_SHA256))
    );
    assert!(r["message"].as_str().unwrap().contains("download and sha256"), "{r}");
    // The page's benchmark: its JSON has the figures the README's tables hold.
    let b = &v["bench"];
    println!("the page's benchmark: {b}");
    assert!(b["backend"].as_str().unwrap().starts_with("cpu"), "{b}");
    assert_eq!((b["prompt_tokens"].as_u64(), b["decode_tokens"].as_u64()), (Some(201), Some(63)));
    assert_eq!((b["concept"].as_str(), b["concept_pairs"].as_u64()), (Some("formality"), Some(16)));
    for k in ["prefill_tok_s", "decode_tok_s", "concept_ms", "open_ms"] {
        assert!(b[k].as_f64().unwrap() > 0.0, "{k}: {b}");
    }
    assert_eq!(b["sha256"], DEFAULT_MODEL_SHA256);
    assert!(b["open_steps"].as_array().unwrap().len() >= 3, "{b}");
    assert!(b["cross_origin_isolated"].is_boolean() && b["user_agent"].is_string(), "{b}");
    assert!(v["console_errors"].as_array().unwrap().is_empty(), "{}", v["console_errors"]);
}
