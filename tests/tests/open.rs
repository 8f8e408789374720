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
    // One engine worker (the one index.html starts while the page loads, adopted by the page;
    // served isolated, the threaded one), and the first open counts its start.
    let engines: Vec<&str> = v["first_visit_workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| w.contains("tiller-worker"))
        .collect();
    assert_eq!(engines, ["/tiller-worker-mt_loader.js"], "{}", v["first_visit_workers"]);
    let first = visits[0]["message"].as_str().unwrap();
    assert!(first.contains("starting the engine"), "{first}");
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
    // Where the concept's time went: every stage of the compute, adding up to at most its total.
    let stages = b["concept_stages_ms"].as_array().unwrap();
    assert_eq!(stages[0]["stage"], "reading the examples", "{b}");
    assert!(stages.len() >= 5, "{b}");
    let sum: f64 = stages.iter().map(|s| s["ms"].as_f64().unwrap()).sum();
    assert!(sum > 0.0 && sum <= b["concept_ms"].as_f64().unwrap() + 1.0, "{b}");
    assert!(b["cross_origin_isolated"].is_boolean() && b["user_agent"].is_string(), "{b}");
    assert!(v["console_errors"].as_array().unwrap().is_empty(), "{}", v["console_errors"]);
}

/// Threads in the page (tests/e2e/threads.mjs): served with COOP/COEP the page runs its threaded
/// engine; from a static host without headers, `coi.js`'s service worker makes it isolated after
/// one reload (threaded again); with service workers blocked it runs on one thread and the
/// backend line says why; a threaded module that does not instantiate is replaced by the
/// single-threaded worker, which says so. The concept's per-layer numbers and the baseline and steered tokens
/// are the same all four ways (the parallel regions split work into disjoint outputs).
#[test]
fn the_page_runs_threaded_when_isolated_and_on_one_thread_otherwise_with_the_same_results() {
    let dist = workspace().join("dist");
    assert!(
        dist.join("tiller-worker-mt_bg.wasm").is_file(),
        "the threaded worker is missing: run `./dev build`"
    );
    let v = run_script("threads.mjs", &[dist.as_os_str()]);
    let runs = &v["runs"];
    for mode in ["headers", "service-worker", "blocked", "broken"] {
        let r = &runs[mode];
        println!(
            "{mode}: ready {} ms, {}; {}; {}",
            r["ready_ms"], r["backend"], r["concept"], r["stats"]
        );
        assert_eq!(r["state"], "ready", "{r}");
    }
    let backend = |m: &str| runs[m]["backend"].as_str().unwrap().to_string();
    for mode in ["headers", "service-worker"] {
        assert_eq!(runs[mode]["isolated"], true, "{mode}");
        let b = backend(mode);
        let n: usize = b
            .split(" threads")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        assert!(n >= 2, "{mode}: {b}");
    }
    assert_eq!(runs["headers"]["reloaded"], false, "COOP/COEP need no reload");
    assert_eq!(runs["service-worker"]["reloaded"], true, "the service worker reloads once");
    assert_eq!(runs["blocked"]["isolated"], false);
    let b = backend("blocked");
    assert!(b.contains("1 thread") && b.contains("not cross-origin isolated"), "{b}");
    let b = backend("broken");
    assert!(b.contains("1 thread)") && b.contains("the threaded engine did not start"), "{b}");
    let h = &runs["headers"];
    assert!(
        h["steered"].as_array().unwrap().len() == 24 && h["chart"].as_array().unwrap().len() == 30,
        "{h}"
    );
    for mode in ["service-worker", "blocked", "broken"] {
        for k in ["chart", "baseline", "steered"] {
            assert_eq!(runs[mode][k], h[k], "{mode}: {k} differs from the threaded run's");
        }
    }
    assert_ne!(h["baseline"], h["steered"]);
    assert!(v["console_errors"].as_array().unwrap().is_empty(), "{}", v["console_errors"]);
}
