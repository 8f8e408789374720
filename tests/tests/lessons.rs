//! Teaching (issue 16), in headless Chromium with the real default model on the CPU backend
//! (tests/e2e/lessons.mjs): every lesson in the menu opens its lesson panel with at least three
//! steps, next and back work, a step that selects a layer selects it, steps that run the
//! reading view, a generation and the sweep run them (the generation equals the engine's
//! tokens for the lesson's setup); every chart's SVG has axis titles; the keyboard reaches the
//! lesson and the layer chart; a metric's explanation shows on focus; large text widens the
//! charts; no horizontal overflow at 360, 390 or 1920 px; a lesson travels in a share link.
//! Screenshots of each lesson's first step and of the page at 390 and 1920 px go to
//! artifacts/.

use tiller_engine::{Precision, Wait};
use tiller_share::SteeringConfig;
use tiller_steer::lineas::LineasParams;
use tiller_steer::plan;
use tiller_tests::{greedy, model, run_script, workspace};

#[test]
fn lessons_guide_and_the_page_explains_itself_on_any_screen() {
    let ws = workspace();
    let dist = ws.join("dist");
    assert!(dist.join("index.html").is_file(), "dist is missing: run `./dev build`");
    assert!(
        ws.join("tests/e2e/node_modules/playwright-core").is_dir(),
        "playwright-core missing: run `./dev setup`"
    );
    let shots = ws.join("artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let v = run_script("lessons.mjs", &[dist.as_os_str(), shots.as_os_str()]);

    // Every lesson in the menu: the panel, at least 3 steps, next and back.
    let lessons = v["lessons"].as_array().unwrap();
    assert!(lessons.len() >= 5, "{} lessons in the menu", lessons.len());
    for l in lessons {
        println!("{}: {} steps", l["title"], l["steps"]);
        assert!(l["steps"].as_u64().unwrap() >= 3, "{l}");
        assert_eq!((l["first"].as_u64(), l["back_disabled"].as_bool()), (Some(0), Some(true)));
        assert_eq!((l["after_next"].as_u64(), l["after_back"].as_u64()), (Some(1), Some(0)));
        let file = l["file"].as_str().unwrap().trim_end_matches(".json");
        assert!(shots.join(format!("lesson-{file}.png")).is_file(), "no screenshot of {file}");
    }
    // Steps that select a layer select it; arrows on the focused chart move it.
    assert_eq!((v["layer_step2"].as_u64(), v["layer_step3"].as_u64()), (Some(2), Some(21)));
    assert_eq!(v["layer_arrow"].as_u64(), Some(22), "ArrowRight on the layer chart");
    assert_eq!(v["chart_focus_outline"], "solid", "the focused chart shows its focus");
    assert_eq!((v["tip_hidden"].as_bool(), v["tip_on_focus"].as_bool()), (Some(false), Some(true)));
    println!("explanation on focus: {}", v["tip_text"]);
    // A step that runs the reading view ran it at the step's layer.
    assert_eq!(v["reading_label"], "projection on `sentiment` at layer 21");
    assert!(v["reading_tokens"].as_u64().unwrap() > 5);
    assert_eq!(v["next_disabled_at_end"], true);

    // The steering lesson's generation step: the engine's tokens for the lesson's setup.
    let cfg = SteeringConfig::from_json(
        &std::fs::read_to_string(ws.join("www/presets/lesson-steering-sentiment.json")).unwrap(),
    )
    .unwrap();
    let m = model(Precision::Fast);
    let ids = m.encode_prompt(&cfg.prompt, cfg.chat).unwrap();
    let n = cfg.sampling.max_tokens as usize;
    let p = plan::prepare(m, &cfg.concepts[0]).wait().unwrap();
    let mut steer = plan::build(m, &[p], &cfg.interventions, ids.len(), &LineasParams::default())
        .wait()
        .unwrap()
        .unwrap();
    let u32s = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
    };
    assert_eq!(u32s(&v["steer_baseline"]), greedy(m, &ids, n, None), "baseline");
    assert_eq!(u32s(&v["steer_steered"]), greedy(m, &ids, n, Some(&mut steer)), "steered");

    // Every chart has axis titles (the per-layer chart, the scatter, the three sweep charts).
    assert_eq!(v["sweep_charts"].as_u64(), Some(3));
    assert!(v["svg_count"].as_u64().unwrap() >= 5, "{}", v["svg_count"]);
    assert_eq!(v["untitled_all"], serde_json::json!([]), "charts without axis titles");
    assert_eq!(v["untitled_results"], serde_json::json!([]));
    // Large text: one column, the per-layer chart at least 1.5x as wide.
    let w = &v["large_chart_widths"];
    assert!(w[1].as_f64().unwrap() > 1.5 * w[0].as_f64().unwrap(), "{w}");
    // Any screen.
    for k in ["overflow_start_1280", "overflow_390", "overflow_360", "overflow_1920"] {
        assert!(v[k].as_i64().unwrap() <= 0, "{k}: {} px of horizontal overflow", v[k]);
    }
    for f in ["page-390.png", "page-1920.png"] {
        assert!(shots.join(f).is_file(), "no screenshot {f}");
    }
    // A lesson travels in a link, at its open step; closing it removes the panel.
    assert!(v["shared_title"].as_str().unwrap().contains("mean difference"));
    assert_eq!(v["shared_step"].as_u64(), Some(3));
    assert!(v["shared_overflow_390"].as_i64().unwrap() <= 0);
    assert_eq!(v["closed"].as_u64(), Some(0));
    let console = v["console_errors"].as_array().unwrap();
    assert!(console.is_empty(), "console errors: {console:?}");
}
