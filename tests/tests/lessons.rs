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

/// What the lessons say the learner will see ("What you should see"), checked on the default
/// model with the engine the page runs: numbers and texts the lesson files quote. A change
/// of the engine that moves them fails here, so the lessons never teach something untrue.
#[test]
fn what_the_lessons_say_holds_on_the_default_model() {
    use tiller_steer::lens::lens;
    use tiller_steer::patch::{patch, token_id, PatchSetup, Patched};
    use tiller_steer::report::{analyze_and_prepare, Options};
    let ws = workspace();
    let lesson = |f: &str| {
        SteeringConfig::from_json(&std::fs::read_to_string(ws.join("www/presets").join(f)).unwrap())
            .unwrap()
    };
    let m = model(Precision::Fast);
    let text = |cfg: &SteeringConfig, strength: f32| -> String {
        let mut specs = cfg.interventions.clone();
        specs[0].strength = strength;
        let ids = m.encode_prompt(&cfg.prompt, cfg.chat).unwrap();
        let p = plan::prepare(m, &cfg.concepts[0]).wait().unwrap();
        let mut steer =
            plan::build(m, &[p], &specs, ids.len(), &LineasParams::default()).wait().unwrap();
        let hooks = steer.as_mut().map(|s| s as &mut dyn tiller_engine::Hooks);
        m.tokenizer.decode(&greedy(m, &ids, 24, hooks)).unwrap()
    };

    // Reading a concept: best layer 21; layer 2 inside the chance band though near 1 in
    // sample; the first layers at most just above the band; 0.94 or more (to two digits) from
    // layer 12 on.
    let read = lesson("lesson-reading-a-concept.json");
    let (r, _) = analyze_and_prepare(
        m,
        &read.concepts[0],
        read.concepts[0].method,
        &Options { promotes: false, ..Options::default() },
        &mut |_, _, _| {},
    )
    .wait()
    .unwrap();
    let l = &r.layers;
    println!(
        "sentiment: best {}; layer 2 {:.3} in {:?}",
        r.best_layer, l[2].auroc, l[2].auroc_null_band
    );
    assert_eq!(r.best_layer, 21);
    assert!(l[2].auroc <= l[2].auroc_null_band[1] && l[2].diagnostics.auroc_in_sample >= 0.95);
    assert!(l[..3].iter().all(|x| x.auroc <= x.auroc_null_band[1] + 0.07));
    let from12: Vec<f64> = l[12..].iter().map(|x| x.auroc).collect();
    assert!(from12.iter().all(|&a| a >= 0.935), "{from12:?}");
    // Selective Steering's first step: the residual stream's opposite-sign test fails at
    // layers 1, 2, 7 and 14 only.
    let fails: Vec<usize> =
        l.iter().filter(|x| !x.diagnostics.opposite_signs).map(|x| x.layer).collect();
    assert_eq!(fails, [1, 2, 7, 14]);

    // Steering with a mean difference: strength 1 and -1 against the baseline.
    let steer = lesson("lesson-steering-sentiment.json");
    let (base, up, down) = (text(&steer, 0.0), text(&steer, 1.0), text(&steer, -1.0));
    println!("steering: {base:?} / {up:?} / {down:?}");
    assert!(base.contains("a bit of a challenge"), "{base}");
    assert!(up.contains("perfect for a day of enjoying the outdoors"), "{up}");
    assert!(down.contains("going to be a disaster"), "{down}");
    // Selective Steering: 180 degrees flips the sentiment, 90 changes less.
    let sel = lesson("lesson-selective-rotation.json");
    let (half, quarter) = (text(&sel, 180.0), text(&sel, 90.0));
    println!("selective: {half:?} / {quarter:?}");
    assert!(half.contains("going to be a disaster"), "{half}");
    assert!(quarter.contains("a bit of a different story"), "{quarter}");

    // Is a readable concept used? The Italy/France direction reads at 0.94 at layer 4 and 1
    // from layer 23 on; patching the whole residual carries the answer at " France" up to
    // layer 22 and at the last position from 24 on; along the direction at most about 0.1 at
    // the country's position, about half at the last position late; the lens puts " Rome" on
    // top at the last position only at layers 28 and 29.
    let used = lesson("lesson-is-it-used.json");
    let italy = &used.concepts[0];
    let (r, p) = analyze_and_prepare(
        m,
        italy,
        italy.method,
        &Options { promotes: false, ..Options::default() },
        &mut |_, _, _| {},
    )
    .wait()
    .unwrap();
    assert!((r.layers[4].auroc - 0.94).abs() < 0.01, "{}", r.layers[4].auroc);
    assert!(r.layers[23..].iter().all(|x| x.auroc >= 0.99));
    let enc = |t: &str| m.encode_prompt(t, false).unwrap();
    let setup = PatchSetup {
        base: enc("The capital of France is the city of"),
        source: enc("The capital of Italy is the city of"),
        answer: token_id(m, " Rome").unwrap(),
        wrong: token_id(m, " Paris").unwrap(),
    };
    let last = setup.base.len() - 1;
    let whole = patch(m, &setup, Patched::Residual, &mut |_, _| {}).wait().unwrap().recovery;
    assert!(whole[..=22].iter().all(|row| row[3] > 0.95), "at ' France'");
    assert!(whole[24..].iter().all(|row| row[last] > 0.7 && row[3] < 0.05), "at the last position");
    let along =
        patch(m, &setup, Patched::Direction(&p.dirs), &mut |_, _| {}).wait().unwrap().recovery;
    let country = along.iter().map(|row| row[3]).fold(f64::MIN, f64::max);
    let late: Vec<f64> = along[24..].iter().map(|row| row[last]).collect();
    println!(
        "along italy: at ' France' at most {country:.3}; last position, layers 24-29 {late:.2?}"
    );
    assert!(country <= 0.12, "{country}");
    assert!(late.iter().all(|&x| (0.4..0.7).contains(&x)), "{late:?}");
    let rome = setup.answer;
    let lens = lens(m, &setup.source, 1, None).wait().unwrap();
    let on_top: Vec<usize> =
        lens.layers.iter().filter(|l| l.top[last][0].0 == rome).map(|l| l.layer).collect();
    assert_eq!(on_top, [28, 29]);
}
