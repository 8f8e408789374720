//! End-to-end: the page built by Trunk (dist/), driven in Debian's headless Chromium by
//! tests/e2e/page.mjs (playwright-core). The page's greedy 16 tokens must equal what
//! `tiller generate` produces (the same engine call, in-process here) for the same prompt.
//! Missing prerequisites fail loudly with what to run; `./dev test` provides them all.

use std::process::Command;
use tiller_engine::Precision;
use tiller_tests::{greedy, model, workspace};

const PROMPT: &str = "The capital of France is";
const N: usize = 16;

#[test]
fn page_loads_generates_stops_and_reports_errors() {
    let ws = workspace();
    let dist = ws.join("dist");
    assert!(
        dist.join("index.html").is_file(),
        "{} is missing: build the page with `./dev build` (or run `./dev test`)",
        dist.display()
    );
    assert!(
        dist.join("models").join(tiller_tests::MODEL_FILE).is_file(),
        "dist/models lacks the model: run `./dev setup` then `./dev build`"
    );
    let script = ws.join("tests/e2e/page.mjs");
    assert!(
        ws.join("tests/e2e/node_modules/playwright-core").is_dir(),
        "playwright-core missing: run `./dev setup`"
    );
    let shots = ws.join("artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(&dist)
        .arg(PROMPT)
        .arg(N.to_string())
        .arg(&shots)
        .output()
        .expect("running node (install Node.js, see ./dev setup)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .expect("page.mjs prints one JSON line");
    assert_eq!(v["ok"], true, "e2e failed: {}", v["error"]);
    println!("page: ready in {} ms on {}; {}", v["load_ms"], v["backend"], v["stats"]);

    let page_ids: Vec<u32> =
        v["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let m = model(Precision::Fast);
    let ids = m.encode_prompt(PROMPT, false).unwrap();
    let cli = greedy(m, &ids, N, None);
    println!("page {:?}\ncli  {:?}", page_ids, cli);
    assert_eq!(page_ids.len(), N, "the page produced {} tokens", page_ids.len());
    assert_eq!(page_ids, cli, "page and CLI greedy tokens differ");
    assert_eq!(v["text"].as_str().unwrap(), m.tokenizer.decode(&cli).unwrap());

    let stopped = v["stopped_after"].as_u64().unwrap();
    assert!((3..400).contains(&stopped), "Stop did not stop the generation: {stopped} tokens");
    assert!(v["empty_prompt_error"].as_str().unwrap().contains("empty"));
    assert!(v["corrupt_error"].as_str().unwrap().contains("cannot load"), "{}", v["corrupt_error"]);
    let crash = v["worker_crash"].as_str().unwrap_or_default();
    assert!(
        crash.contains("engine stopped") && crash.contains("Reload"),
        "a dead worker must show an error: {crash:?}"
    );
    let console: Vec<&str> =
        v["console_errors"].as_array().unwrap().iter().filter_map(|e| e.as_str()).collect();
    // The only console error allowed is the 404 for /favicon.ico.
    assert!(console.iter().all(|e| e.contains("404")), "console errors: {console:?}");
}
