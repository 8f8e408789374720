//! Issue 15 in the page: conditional steering, activation patching, the logit lens and
//! conversations against the engine's numbers.

use super::BROWSER;
use tiller_engine::{Precision, Wait};
use tiller_tests::{greedy, model, run_script, workspace};

/// The causal tools in the page (issue 15), on the CPU backend: conditional steering opened
/// from two share links (threshold below the prompt's score: the plain steered output; above
/// it: the baseline, no steering), the activation-patching heatmap against the engine's
/// numbers (what `tiller patch` prints), a cell's distribution, and the logit lens, whose last
/// layer is the model's own prediction.
#[test]
fn page_patches_looks_through_and_steers_on_condition() {
    use tiller_model::ChatMessage;
    use tiller_share::config::{Sampling, SteeringConfig};
    use tiller_steer::concept::Concept;
    use tiller_steer::condition::Condition;
    use tiller_steer::conversation::{readings, Conversation};
    use tiller_steer::lineas::LineasParams;
    use tiller_steer::patch::{patch, PatchSetup, Patched};
    use tiller_steer::plan::{self, InterventionSpec, OpKind};
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let ws = workspace();
    let dist = ws.join("dist");
    assert!(dist.join("index.html").is_file(), "dist is missing: run `./dev build`");
    let m = model(Precision::Fast);
    let c: Concept = serde_json::from_str(
        &std::fs::read_to_string(ws.join("tests/data/formality.json")).unwrap(),
    )
    .unwrap();
    let prompt = "Dear Sir, I am writing to";
    let ids = m.encode_prompt(prompt, false).unwrap();
    let p = plan::prepare(m, &c).wait().unwrap();
    let probe = Condition { concept: c.name.clone(), layer: 10, threshold: 0.0, below: false };
    let score = probe.check(m, &ids, &p.dirs).wait().unwrap().score;
    let spec = InterventionSpec {
        concept: c.name.clone(),
        op: OpKind::AddUnit,
        layers: vec![10],
        strength: 8.0,
        positions: Default::default(),
        selective: false,
        enabled: true,
    };
    let mut steer =
        plan::build(m, &[p], std::slice::from_ref(&spec), ids.len(), &LineasParams::default())
            .wait()
            .unwrap()
            .unwrap();
    let steered = greedy(m, &ids, 8, Some(&mut steer));
    let baseline = greedy(m, &ids, 8, None);
    assert_ne!(steered, baseline);
    let link = |threshold: f32| {
        let cfg = SteeringConfig {
            concepts: vec![c.clone()],
            interventions: vec![spec.clone()],
            prompt: prompt.into(),
            sampling: Sampling { max_tokens: 8, ..Default::default() },
            condition: Some(Condition { threshold, ..probe.clone() }),
            ..Default::default()
        };
        tiller_share::url::encode(&cfg).unwrap()
    };
    let shots = ws.join("artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let (met, not) = (link(score - 0.01), link(score + 0.01));
    // A three-turn conversation, steered (add-unit formality at layer 10) from turn 2 on.
    let conv = Conversation {
        turns: vec![
            ChatMessage::user("hey, can u help me write a msg to my landlord"),
            ChatMessage {
                role: "assistant".into(),
                content: "Sure! What would you like to say?".into(),
            },
            ChatMessage::user("tell him the sink is broken again"),
        ],
        steer_from: 1,
        probe: "How would you describe the tone of this chat?".into(),
    };
    let conv_link = tiller_share::url::encode(&SteeringConfig {
        concepts: vec![c.clone()],
        interventions: vec![spec.clone()],
        sampling: Sampling { max_tokens: 8, ..Default::default() },
        conversation: Some(conv.clone()),
        view: tiller_share::config::View { layer: Some(10), ..Default::default() },
        ..Default::default()
    })
    .unwrap();
    let args =
        [dist.as_os_str(), met.as_ref(), not.as_ref(), shots.as_os_str(), conv_link.as_ref()];
    let v = run_script("causal.mjs", &args);
    let u32s = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
    };

    // Conditional steering, reproduced from the links.
    let (met, not) = (&v["condition"][0], &v["condition"][1]);
    println!("condition: native score {score:.5}; page {} / {}", met["score"], not["score"]);
    for r in [met, not] {
        assert_eq!(r["checkbox"], true, "the link restores the condition");
        assert!((r["score"].as_f64().unwrap() - score as f64).abs() < 1e-3, "{r}");
    }
    assert_eq!(met["met"], true, "{met}");
    assert_eq!(
        (u32s(&met["steered"]), u32s(&met["baseline"])),
        (steered.clone(), baseline.clone())
    );
    assert_eq!(not["met"], false, "{not}");
    assert_eq!(u32s(&not["baseline"]), baseline);
    assert!(u32s(&not["steered"]).is_empty(), "nothing is steered when the condition fails");

    // The heatmap equals the engine's patching (`tiller patch` on the same prompts).
    let enc = |t: &str| m.encode_prompt(t, false).unwrap();
    let setup = PatchSetup {
        base: enc("The capital of France is the city of"),
        source: enc("The capital of Italy is the city of"),
        answer: enc(" Rome")[0],
        wrong: enc(" Paris")[0],
    };
    let ours = patch(m, &setup, Patched::Residual, &mut |_, _| {}).wait().unwrap();
    let cells = v["patch"].as_array().unwrap();
    assert_eq!(cells.len(), 30 * setup.base.len());
    let mut md = tiller_tests::MaxDiff::default();
    for cell in cells {
        let (l, pos) = (cell[0].as_u64().unwrap() as usize, cell[1].as_u64().unwrap() as usize);
        md.see(cell[2].as_f64().unwrap() as f32, ours.recovery[l][pos] as f32, || {
            format!("layer {l} position {pos}")
        });
    }
    const TOL: f32 = 5e-4; // measured 7.7e-5 (wasm's CPU kernels against native ones)
    println!(
        "{} (page: {} ms for 240 patched runs)",
        md.report("page heatmap vs engine", TOL),
        v["patch_ms"]
    );
    assert!(md.max <= TOL, "{}", md.report("page heatmap vs engine", TOL));
    assert_eq!(v["cell_top"].as_array().unwrap().len(), 5, "a cell's distribution: top 5");
    assert!(v["patched_along"].as_str().unwrap().starts_with("direction:"));
    assert!(v["patch_error"].as_str().unwrap().contains("equal token"), "{}", v["patch_error"]);

    // The lens: its last layer's top token at each position is the model's argmax.
    let lens_ids = enc("The capital of France is the city of");
    let logits =
        m.session().forward(&lens_ids, None, tiller_engine::LogitsFor::All).wait().unwrap();
    let want: Vec<String> = logits
        .chunks_exact(m.config.vocab)
        .map(|r| {
            let top = tiller_steer::lens::top_k(r, 1)[0].0;
            m.tokenizer.decode(&[top]).unwrap()
        })
        .collect();
    let last: Vec<String> = v["lens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c[0].as_u64() == Some(29))
        .map(|c| c[2].as_str().unwrap().to_string())
        .collect();
    assert_eq!(last, want, "the lens's last layer is the model's prediction");
    assert_eq!(v["lens_tracked_rows"], 30);
    // Attention patterns: 9 heads, head 0's lower triangle as the engine computes it.
    let att = tiller_steer::attention::patterns(m, &lens_ids, 3).wait().unwrap();
    let n = att.n;
    let want: Vec<f32> = (0..n)
        .flat_map(|i| (0..=i).map(move |j| (i, j)))
        .map(|(i, j)| att.heads[0][i * n + j])
        .collect();
    let got: Vec<f64> =
        v["attention_head0"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!((v["attention_heads"].as_u64(), got.len()), (Some(9), want.len()));
    for (g, w) in got.iter().zip(&want) {
        // The page draws sqrt(weight) to 3 decimals.
        assert!((g - *w as f64).abs() < 2e-3, "attention {g} vs {w}");
    }
    assert!(
        v["overflow_390"].as_f64().unwrap() <= 0.0,
        "horizontal overflow at 390 px: {}",
        v["overflow_390"]
    );

    // The conversation: per-turn readings equal the engine's, the steered branch (from turn
    // 2 on) equals the engine's, and the setup with the kept reply comes back from its link.
    let p = plan::prepare(m, &c).wait().unwrap();
    let want = readings(m, &conv, 10, &[&p.dirs[10]]).wait().unwrap();
    let got: Vec<Vec<f64>> = v["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    println!("conversation readings, page {got:?}; engine {want:?}");
    assert_eq!(
        (v["turns_opened"].as_u64(), got.len(), v["conv_chart"].as_u64()),
        (Some(3), 3, Some(1))
    );
    for (g, w) in got.iter().zip(&want) {
        // Measured 1e-3 (the page prints 4 decimals; wasm kernels against native ones).
        assert!((g[0] - w[0] as f64).abs() < 5e-3, "reading {g:?} vs {w:?}");
    }
    let (conv_ids, start) = conv.prompt(m).unwrap();
    let from = InterventionSpec {
        positions: tiller_steer::intervene::Positions::Range { start, end: usize::MAX },
        ..spec.clone()
    };
    let mut steer = plan::build(m, &[p], &[from], conv_ids.len(), &LineasParams::default())
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(u32s(&v["conv_baseline"]), greedy(m, &conv_ids, 8, None));
    assert_eq!(u32s(&v["conv_steered"]), greedy(m, &conv_ids, 8, Some(&mut steer)));
    assert_ne!(v["conv_baseline"], v["conv_steered"], "the steered branch differs");
    assert_eq!(v["turns_kept"], 4);
    let reloaded: Vec<&str> =
        v["turns_reloaded"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(reloaded.len(), 4, "the link restores the conversation with the kept reply");
    assert_eq!(&reloaded[..3], conv.turns.iter().map(|t| t.content.as_str()).collect::<Vec<_>>());
    assert_eq!(v["turns_roles"][3], "assistant");
    // Every chart (attention heads, the conversation's readings) has axis titles.
    for k in ["untitled_attention", "untitled_conversation"] {
        assert_eq!(v[k], serde_json::json!([]), "{k}: charts without axis titles");
    }
    let console = v["console_errors"].as_array().unwrap();
    assert!(console.is_empty(), "console errors: {console:?}");
}
