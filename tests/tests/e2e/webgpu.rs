//! Issue 13 in the page: concept work on WebGPU (SwiftShader) equals the CPU's.

use super::BROWSER;
use std::process::Command;
use tiller_tests::workspace;

/// Issue 13: the playground flow with the model on WebGPU (SwiftShader, `?backend=webgpu`)
/// gives the CPU's results on the same small setup: the page says concept work runs on
/// WebGPU (`data-concepts`), holds one copy of the weights (on the GPU), and its directions
/// (the exported control vectors), steered and baseline tokens, reading values and what the
/// direction promotes equal the CPU page's (sweeps on a GPU: `gpu_golden.rs`, natively). A
/// device lost in the middle of a concept compute ends in the CPU's result, the setup kept.
#[test]
fn page_does_concept_work_on_webgpu() {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let ws = workspace();
    let dist = ws.join("dist");
    assert!(dist.join("index.html").is_file(), "dist is missing: run `./dev build`");
    // Three pairs (held-out statistics need two), few tokens: SwiftShader runs the GPU path on
    // the CPU, about 50 times slower than the CPU backend.
    let setup = serde_json::json!({
        "version": 1,
        "model": { "id": tiller_tests::MODEL_FILE },
        "concepts": [{
            "name": "sentiment",
            "pairs": [
                ["I love this. It is wonderful", "I hate this. It is awful"],
                ["What a beautiful day, I feel so happy", "What a miserable day, I feel so sad"],
                ["She was kind, warm and generous", "She was cruel, cold and selfish"]
            ],
            "read": "last_token",
            "method": "mean-diff"
        }],
        "interventions": [{
            "concept": "sentiment", "op": "add", "layers": [10], "strength": 4.0,
            "positions": "all", "selective": false, "enabled": true
        }],
        "prompt": "I think that the weather today is",
        "chat": false,
        "sampling": { "max_tokens": 4, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0 },
        "view": { "large_text": false }
    });
    let cfg: tiller_share::SteeringConfig = serde_json::from_value(setup).unwrap();
    let link = tiller_share::url::encode(&cfg).unwrap();
    let link = if link.starts_with('#') { link } else { format!("#{link}") };
    let shots = ws.join("artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(ws.join("tests/e2e/webgpu.mjs"))
        .arg(&dist)
        .arg(&link)
        .arg(&shots)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .expect("webgpu.mjs prints one JSON line");
    assert_eq!(v["ok"], true, "webgpu e2e failed: {}", v["error"]);
    let (g, c) = (&v["webgpu"], &v["cpu"]);
    for (k, r) in [("webgpu", g), ("cpu", c)] {
        println!(
            "{k}: {}; {}; concept {} ms (chart {} ms), generate {} ms",
            r["backend"], r["memory"], r["concept_ms"], r["chart_ms"], r["generate_ms"]
        );
    }
    assert_eq!(g["concepts"], "webgpu", "concept work is not on WebGPU: {}", g["backend"]);
    assert_eq!(c["concepts"], "cpu");
    assert!(
        g["memory"].as_str().unwrap().contains("one copy of the weights, on the GPU"),
        "{}",
        g["memory"]
    );
    // Directions: the exported control vectors, layer by layer.
    let cv = |r: &serde_json::Value| {
        let p = r["export_path"].as_str().unwrap();
        tiller_share::cvec::read(&std::fs::read(p).unwrap()).unwrap()
    };
    let (cg, cc) = (cv(g), cv(c));
    assert_eq!(cg.directions.len(), cc.directions.len());
    let mut worst = (1.0f64, 0usize);
    for ((l, a), (_, b)) in cg.directions.iter().zip(&cc.directions) {
        let cos = tiller_tests::cosine(a, b);
        if cos < worst.0 {
            worst = (cos, *l);
        }
    }
    println!("control vector WebGPU vs CPU: min cosine {:.7} (layer {})", worst.0, worst.1);
    assert!(worst.0 >= 0.9999, "directions differ: cosine {} at layer {}", worst.0, worst.1);
    // The chart, what the direction promotes, the tokens, the reading, the sweep.
    let max_diff = |a: &serde_json::Value, b: &serde_json::Value| -> (f64, usize) {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).enumerate().fold((0.0, 0), |m, (i, (x, y))| {
            let d = (x.as_f64().unwrap() - y.as_f64().unwrap()).abs();
            if d > m.0 {
                (d, i)
            } else {
                m
            }
        })
    };
    let (d, at) = max_diff(&g["chart"], &c["chart"]);
    println!("held-out AUROC per layer: max |WebGPU - CPU| {d:.2e} (layer {at})");
    assert!(d <= 1e-9, "AUROC differs by {d} at layer {at}");
    assert_eq!(g["promotes"], c["promotes"], "what the direction promotes");
    assert_eq!(g["baseline_ids"], c["baseline_ids"], "baseline tokens");
    assert_eq!(g["steered_ids"], c["steered_ids"], "steered tokens");
    assert_ne!(g["baseline_ids"], g["steered_ids"], "the intervention steered nothing");
    let (d, at) = max_diff(&g["reading_values"], &c["reading_values"]);
    println!("reading view: max |WebGPU - CPU| {d:.2e} (token {at})");
    assert!(d <= 2e-2, "reading values differ by {d} at token {at}");
    // Lost in the middle of the concept compute: the CPU's result.
    let lost = &v["lost"];
    println!("lost device: {} / {}", lost["backend"], lost["notice"]);
    assert_eq!(lost["concepts_before"], "webgpu");
    assert_eq!(lost["concepts"], "cpu");
    assert!(lost["notice"].as_str().unwrap().contains("moved to the CPU"), "{}", lost["notice"]);
    assert!(lost["tabs"].as_array().unwrap().iter().any(|t| t == "sentiment"), "setup kept");
    assert_eq!(lost["chart"], c["chart"], "the CPU's chart after the fallback");
    let console: Vec<&str> =
        v["console_errors"].as_array().unwrap().iter().filter_map(|e| e.as_str()).collect();
    assert!(console.is_empty(), "console errors: {console:?}");
}
