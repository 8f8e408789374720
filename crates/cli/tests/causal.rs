//! The causal tools of the `tiller` CLI (issue 15): `patch`, `lens` and conditional steering
//! (`--condition`), on the real model; their JSON contracts and their defining properties.

mod common;
use common::*;
use serde_json::Value;

const BASE: &str = "The capital of France is the city of";
const SOURCE: &str = "The capital of Italy is the city of";

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

/// Patching the whole residual stream: at the last layer and position it carries all of the
/// source's logit difference (exactly 1); at layer 0, at positions before the first token
/// where base and source differ, nothing (exactly 0: the residual there depends only on the
/// tokens up to it, which agree).
#[test]
fn patch_recovers_one_at_the_end_and_zero_where_inputs_agree() {
    let m = model();
    let v = json_ok(&[
        "patch", "--model", &m, "--base", BASE, "--source", SOURCE, "--answer", " Rome", "--wrong",
        " Paris", "--json",
    ]);
    let tokens: Vec<&str> =
        v["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let src: Vec<&str> =
        v["source_tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.len(), src.len());
    let r = rows(&v["recovery"]);
    assert_eq!(r.len(), 30, "one row per layer 0..L-1");
    assert!(r.iter().all(|row| row.len() == tokens.len()));
    let last = r[29][tokens.len() - 1];
    println!(
        "recovery at the last layer and position: {last} (|1 - r| {:.2e})",
        (1.0 - last).abs()
    );
    assert!((last - 1.0).abs() < 1e-3, "{last}");
    let first_diff = tokens.iter().zip(&src).position(|(a, b)| a != b).unwrap();
    assert_eq!(tokens[first_diff], " France");
    for (p, &x) in r[0].iter().enumerate().take(first_diff) {
        assert!(x.abs() < 1e-6, "layer 0 position {p} ({:?}) recovers {x}", tokens[p]);
    }
    // The differing token itself carries the answer at layer 0.
    assert!(r[0][first_diff] > 0.9, "{}", r[0][first_diff]);
    let (lb, ls) = (v["ld_base"].as_f64().unwrap(), v["ld_source"].as_f64().unwrap());
    assert!(lb < 0.0 && ls > 0.0, "base prefers Paris, source Rome: {lb} {ls}");
}

#[test]
fn patch_along_a_direction_and_interchange_accuracy() {
    let (m, f) = (model(), formality());
    let v = json_ok(&[
        "patch",
        "--model",
        &m,
        "--base",
        BASE,
        "--source",
        SOURCE,
        "--answer",
        " Rome",
        "--wrong",
        " Paris",
        "--concept",
        &f,
        "--direction",
        "formality",
        "--json",
    ]);
    assert_eq!(v["patched"], "direction:formality");
    let r = rows(&v["recovery"]);
    assert_eq!(r.len(), 30);
    // One direction carries little of a country swap.
    let most = r.iter().flatten().fold(0f64, |a, &x| a.max(x.abs()));
    assert!(most < 0.5, "{most}");
    let dir = std::env::temp_dir().join(format!("tiller-iia-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let triples = dir.join("triples.json");
    std::fs::write(
        &triples,
        r#"[{"base": "The capital of France is the city of", "source": "The capital of Italy is the city of", "answer": " Rome"},
            {"base": "The capital of Spain is the city of", "source": "The capital of France is the city of", "answer": " Paris"}]"#,
    )
    .unwrap();
    let v = json_ok(&[
        "patch",
        "--model",
        &m,
        "--triples",
        triples.to_str().unwrap(),
        "--concept",
        &f,
        "--json",
    ]);
    let acc: Vec<f64> =
        v["accuracy"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!((acc.len(), v["examples"].as_u64()), (30, Some(2)));
    assert!(acc.iter().all(|a| (0.0..=1.0).contains(a)));
}

#[test]
fn patch_says_what_is_wrong() {
    let m = model();
    let a = |base: &str, answer: &str| {
        vec![
            "patch".to_string(),
            "--model".into(),
            m.clone(),
            "--base".into(),
            base.into(),
            "--source".into(),
            SOURCE.into(),
            "--answer".into(),
            answer.into(),
            "--wrong".into(),
            " Paris".into(),
            "--json".into(),
        ]
    };
    let run = |v: Vec<String>, needle: &str| {
        fails(&v.iter().map(|s| s.as_str()).collect::<Vec<_>>(), needle)
    };
    run(a("The capital of the French Republic is", " Rome"), "equal token counts");
    run(a(BASE, " Rome and Milan"), "give the text of one token");
    run(a(BASE, " Paris"), "same token");
    fails(
        &[
            "patch",
            "--model",
            &m,
            "--base",
            BASE,
            "--source",
            SOURCE,
            "--answer",
            " Rome",
            "--wrong",
            " Paris",
            "--direction",
            "x",
        ],
        "--concept",
    );
}

/// The last layer of the lens is the model's own output: its top-1 at every position is
/// `tiller logits --all`'s.
#[test]
fn lens_last_layer_is_the_models_output() {
    let m = model();
    let v = json_ok(&[
        "lens", "--model", &m, "--prompt", BASE, "--top", "3", "--track", " Paris", "--json",
    ]);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 30);
    assert_eq!(layers[4]["layer"], 4);
    let n = v["tokens"].as_array().unwrap().len();
    let logits = json_ok(&["logits", "--model", &m, "--prompt", BASE, "--all", "--top", "1"]);
    let want: Vec<u64> =
        logits["top"].as_array().unwrap().iter().map(|p| p[0][0].as_u64().unwrap()).collect();
    assert_eq!(want.len(), n);
    let last = layers[29]["top"].as_array().unwrap();
    for (p, cell) in last.iter().enumerate() {
        let top = cell.as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0][0].as_u64(), Some(want[p]), "position {p}");
        let probs: Vec<f64> = top.iter().map(|t| t[1].as_f64().unwrap()).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]) && probs[0] <= 1.0);
    }
    // " Paris" after "... the city of" at the last layer: the tracked probability is the
    // top token's there.
    let tracked = layers[29]["tracked"].as_array().unwrap();
    assert_eq!(tracked.len(), n);
    assert_eq!(last[n - 1][0][0], v["track"]);
    assert_eq!(tracked[n - 1], last[n - 1][0][1]);
}

/// With the threshold below the prompt's condition score the output is the plain steered
/// output; above it, the baseline; `--json` says which.
#[test]
fn condition_gates_the_interventions() {
    let (m, f) = (model(), formality());
    let gen = |extra: &[&str]| {
        let mut a = vec![
            "generate",
            "--model",
            &m,
            "--prompt",
            "Dear Sir, I am writing to",
            "--max-tokens",
            "8",
            "--concept",
            &f,
            "--json",
        ];
        a.extend_from_slice(extra);
        json_ok(&a)
    };
    let steered = gen(&["--add-unit", "formality@10=8"]);
    let baseline = gen(&[]);
    assert_ne!(steered["ids"], baseline["ids"], "the intervention must change the output");
    let probe = gen(&["--add-unit", "formality@10=8", "--condition", "formality@10=-1"]);
    let score = probe["condition"]["score"].as_f64().unwrap();
    assert_eq!((probe["condition"]["met"].as_bool(), &probe["ids"]), (Some(true), &steered["ids"]));
    let below = format!("formality@10={}", score - 0.01);
    let above = format!("formality@10={}", score + 0.01);
    let met = gen(&["--add-unit", "formality@10=8", "--condition", &below]);
    assert_eq!((met["condition"]["met"].as_bool(), &met["ids"]), (Some(true), &steered["ids"]));
    let not = gen(&["--add-unit", "formality@10=8", "--condition", &above]);
    assert_eq!((not["condition"]["met"].as_bool(), &not["ids"]), (Some(false), &baseline["ids"]));
    assert!((not["condition"]["score"].as_f64().unwrap() - score).abs() < 1e-9);
    // The other side: NAME@L<T.
    let inv = gen(&["--add-unit", "formality@10=8", "--condition", &above.replace('=', "<")]);
    assert_eq!((inv["condition"]["met"].as_bool(), &inv["ids"]), (Some(true), &steered["ids"]));
    // logits takes it too.
    let l = json_ok(&[
        "logits",
        "--model",
        &m,
        "--prompt",
        "Dear Sir, I am writing to",
        "--concept",
        &f,
        "--add-unit",
        "formality@10=8",
        "--condition",
        &above,
    ]);
    assert_eq!(l["condition"]["met"], false);
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--concept",
            &f,
            "--condition",
            "formality@10",
        ],
        "expected NAME@LAYER",
    );
    fails(
        &[
            "generate",
            "--model",
            &m,
            "--prompt",
            "x",
            "--concept",
            &f,
            "--condition",
            "formality@99=0.1",
        ],
        "out of range",
    );
    fails(
        &["generate", "--model", &m, "--prompt", "x", "--condition", "nobody@3=0.1"],
        "no concept named",
    );
}

/// `tiller attention`: every head's weights at a layer, causal rows summing to 1.
#[test]
fn attention_patterns_are_causal_distributions() {
    let m = model();
    let v = json_ok(&["attention", "--model", &m, "--prompt", BASE, "--layer", "3", "--json"]);
    let n = v["tokens"].as_array().unwrap().len();
    let heads = v["heads"].as_array().unwrap();
    assert_eq!((heads.len(), v["layer"].as_u64()), (9, Some(3)));
    for h in heads {
        let rows = rows(h);
        assert_eq!(rows.len(), n);
        for (i, r) in rows.iter().enumerate() {
            assert!(
                (r.iter().sum::<f64>() - 1.0).abs() < 1e-5,
                "row {i} sums to {}",
                r.iter().sum::<f64>()
            );
            assert!(r[i + 1..].iter().all(|&x| x == 0.0), "row {i} attends to the future");
        }
    }
    fails(&["attention", "--model", &m, "--prompt", BASE, "--layer", "30"], "out of range");
}
