//! Verified by the real thing: a control vector exported by Tiller, loaded into llama.cpp
//! (llama-cpp-python from PyPI, through its C API `llama_set_adapter_cvec`, laid out the way
//! llama.cpp's own loader lays it out: scripts/llamacpp_cvec.py), steers llama.cpp as it steers
//! Tiller: next-token top-1 and greedy tokens agree as well as they do unsteered.
//!
//! Needs tools/llama-venv (built by `./dev setup`); without it the test fails and says so.

use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use tiller_engine::Wait;
use tiller_engine::{LogitsFor, Precision, Site};
use tiller_share::cvec::{self, ControlVector};
use tiller_steer::concept::Concept;
use tiller_steer::intervene::{Intervention, Plan, Positions};
use tiller_tests::*;

const LAYERS: [usize; 1] = [10];
const COEF: f32 = 1.0;
const GREEDY: usize = 24;

fn argmax_rows(logits: &[f32], vocab: usize) -> Vec<u32> {
    logits.chunks_exact(vocab).map(tiller_engine::sampling::argmax).collect()
}

#[test]
fn llama_cpp_applies_our_control_vector_like_we_do() {
    let python = workspace().join("tools/llama-venv/bin/python");
    assert!(
        python.is_file(),
        "llama-cpp-python is not installed at {}: run `./dev setup` (it builds it from PyPI)",
        python.display()
    );
    let m = model(Precision::F32);
    let c: Concept = serde_json::from_value(reference("concept-sentiment.json")).unwrap();
    let prepared = tiller_steer::plan::prepare(m, &c).wait().unwrap();
    let cv = ControlVector {
        model_hint: m.config.architecture.clone(),
        directions: LAYERS
            .iter()
            .map(|&l| (l, prepared.dirs[l].iter().map(|x| x * COEF).collect()))
            .collect(),
    };
    let dir = std::env::temp_dir().join(format!("tiller-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sentiment.gguf");
    std::fs::write(&path, cvec::write(&cv).unwrap()).unwrap();
    // Tiller steers with the file as imported (the same path `--control-vector` takes).
    let imported = cvec::read(&std::fs::read(&path).unwrap()).unwrap();
    let plan = |n: usize| Plan {
        interventions: vec![Intervention {
            layers: imported.ops(m.config.n_layer, m.config.d_model, 1.0, false).unwrap(),
            positions: Positions::All,
            site: Site::Residual,
        }],
        prompt_len: n,
    };
    let greedy_cases = reference("greedy.json");
    let prompts: Vec<Vec<u32>> =
        greedy_cases["cases"].as_array().unwrap().iter().map(|c| ids(&c["ids"])).collect();
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for p in &prompts {
        let plain = greedy(m, p, GREEDY, None);
        let mut pl = plan(p.len());
        let steered = greedy(m, p, GREEDY, Some(&mut pl));
        cases.push(json!({ "ids": p, "teacher_plain": plain, "teacher_steered": steered, "greedy": GREEDY }));
        ours.push((plain, steered));
    }
    let mut child = Command::new(&python)
        .arg(workspace().join("scripts/llamacpp_cvec.py"))
        .args([model_path().to_str().unwrap(), path.to_str().unwrap(), "1.0", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running llama-cpp-python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json!({ "cases": cases }).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "llamacpp_cvec.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let llama: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Per mode: teacher-forced top-1 agreement along Tiller's greedy continuation, next-token
    // top-1 at the end of the prompt, and the shared prefix of the two greedy continuations.
    let vocab = m.config.vocab;
    let report = |mode: &str, k: usize| -> (f64, usize, f64) {
        let (mut agree, mut total, mut next, mut prefix) = (0usize, 0usize, 0usize, 0usize);
        for (i, p) in prompts.iter().enumerate() {
            let teacher = if k == 0 { &ours[i].0 } else { &ours[i].1 };
            let theirs = ids(&llama[mode][i]["top1"]);
            let n = p.len();
            for (j, t) in teacher.iter().enumerate() {
                total += 1;
                agree += (theirs[n - 1 + j] == *t) as usize;
            }
            next += (theirs[n - 1] == teacher[0]) as usize;
            prefix += same_prefix(&ids(&llama[mode][i]["greedy"]), teacher);
            // Our own top-1 along the same tokens is the teacher (a check of the harness).
            let all: Vec<u32> = p.iter().chain(teacher.iter()).copied().collect();
            let mut pl = plan(n);
            let hooks: Option<&mut dyn tiller_engine::Hooks> =
                if k == 0 { None } else { Some(&mut pl) };
            let lg = m.session().forward(&all, hooks, LogitsFor::All).wait().unwrap();
            assert_eq!(&argmax_rows(&lg, vocab)[n - 1..n - 1 + teacher.len()], &teacher[..]);
        }
        let a = agree as f64 / total as f64;
        let mean_prefix = prefix as f64 / prompts.len() as f64;
        println!(
            "{mode}: teacher-forced top-1 agreement llama.cpp vs Tiller {a:.4} ({agree}/{total}); \
             next-token top-1 {next}/{}; mean shared greedy prefix {mean_prefix:.1}/{GREEDY}",
            prompts.len()
        );
        (a, next, mean_prefix)
    };
    let (a0, n0, g0) = report("plain", 0);
    let (a1, n1, g1) = report("steered", 1);
    // The vector really steers llama.cpp: its steered greedy text differs from its plain one.
    let changed = (0..prompts.len())
        .filter(|&i| llama["plain"][i]["greedy"] != llama["steered"][i]["greedy"])
        .count();
    println!(
        "llama.cpp's greedy continuation changed by the vector in {changed}/{} cases",
        prompts.len()
    );
    assert!(changed * 2 >= prompts.len(), "the control vector barely changed llama.cpp's output");
    // Steered agreement is within llama.cpp's own deviation from Tiller (unsteered here, and
    // 0.952 against HF in the reference yardstick).
    let yard =
        reference("llamacpp-yardstick.json")["teacher_forced_top1_agreement"].as_f64().unwrap();
    assert!(
        a1 >= a0.min(yard) - 0.03,
        "steered agreement {a1:.4} vs unsteered {a0:.4} (yardstick {yard})"
    );
    assert!(n1 + 1 >= n0, "steered next-token top-1 {n1} vs unsteered {n0}");
    assert!(g1 >= 0.6 * g0, "steered greedy prefix {g1:.1} vs unsteered {g0:.1}");
}
