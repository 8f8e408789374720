//! Bounded mutational fuzzing of everything that reads untrusted bytes: share links (the text,
//! and the binary inside them), setup JSON, control-vector files, and model GGUF files (parse
//! and load). Every input must give Ok or a clear Err: a panic fails the test and saves the
//! input under artifacts/fuzz/.
//!
//! Time per target: TILLER_FUZZ_SECS (default 4; the README's figures come from 600).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};
use tiller_engine::Wait;
use tiller_engine::{Cpu, Model, Precision};
use tiller_tests::gguf_writer::{Tiny, TinyModel};
use tiller_tests::workspace;

fn budget() -> Duration {
    let s = std::env::var("TILLER_FUZZ_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(4.0);
    Duration::from_secs_f64(s)
}

/// One mutation of `seed`: flips, interesting bytes, big little-endian integers, cuts,
/// insertions and duplicated chunks.
fn mutate(r: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..r.random_range(1..=4) {
        if b.is_empty() {
            b.push(r.random());
            continue;
        }
        let i = r.random_range(0..b.len());
        match r.random_range(0..7) {
            0 => b[i] ^= 1 << r.random_range(0..8),
            1 => b[i] = [0u8, 0xff, 0x7f, 0x80, 1, 0x20][r.random_range(0..6)],
            2 => {
                let v: u64 = [u64::MAX, 1 << 40, 1 << 31, 0, 0xffff_ffff][r.random_range(0..5)];
                let n = (b.len() - i).min(8);
                b[i..i + n].copy_from_slice(&v.to_le_bytes()[..n]);
            }
            3 => b.truncate(i),
            4 => {
                let n = r.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| r.random()).collect();
                b.splice(i..i, bytes);
            }
            5 => {
                let j = r.random_range(i..b.len().min(i + 64) + 1).min(b.len());
                let chunk = b[i..j].to_vec();
                b.splice(i..i, chunk);
            }
            _ => {
                let j = r.random_range(i..=b.len());
                b.drain(i..j);
            }
        }
    }
    b
}

/// Run `f` on mutations of the seeds for the budget; fail on the first panic.
fn fuzz(name: &str, seeds: &[Vec<u8>], f: &dyn Fn(&[u8])) {
    let mut r = StdRng::seed_from_u64(name.len() as u64 * 7919 + 1);
    let (t, limit) = (Instant::now(), budget());
    let (mut runs, mut seen_ok) = (0u64, 0u64);
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while t.elapsed() < limit {
        let k = r.random_range(0..seeds.len());
        let input = mutate(&mut r, &seeds[k]);
        runs += 1;
        match catch_unwind(AssertUnwindSafe(|| f(&input))) {
            Ok(()) => seen_ok += 1,
            Err(e) => {
                std::panic::set_hook(prev);
                let dir = workspace().join("artifacts/fuzz");
                std::fs::create_dir_all(&dir).ok();
                let p = dir.join(format!("{name}-crash.bin"));
                std::fs::write(&p, &input).ok();
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!(
                    "{name}: panic after {runs} inputs: {msg:?}; input saved to {}",
                    p.display()
                );
            }
        }
    }
    std::panic::set_hook(prev);
    println!("fuzz {name}: {runs} inputs in {:.0} s, 0 panics", t.elapsed().as_secs_f64());
    assert_eq!(runs, seen_ok);
    assert!(runs > 0);
}

fn corpus_links() -> Vec<String> {
    let dir = workspace().join("tests/data/share-links/v1");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|f| {
            let p = f.unwrap().path();
            (p.extension()? == "link").then(|| std::fs::read_to_string(p).unwrap())
        })
        .collect()
}

#[test]
fn fuzz_share_link_text() {
    let seeds: Vec<Vec<u8>> = corpus_links().into_iter().map(String::into_bytes).collect();
    fuzz("link-text", &seeds, &|b| {
        let _ = tiller_share::url::decode(&String::from_utf8_lossy(b));
    });
}

#[test]
fn fuzz_share_link_binary() {
    // Mutate the postcard bytes inside the link and re-wrap them, to reach the decoder.
    let seeds: Vec<Vec<u8>> = corpus_links()
        .iter()
        .map(|l| {
            let raw = URL_SAFE_NO_PAD.decode(tiller_share::url::payload(l)).unwrap();
            miniz_oxide::inflate::decompress_to_vec(&raw[1..]).unwrap()
        })
        .collect();
    fuzz("link-binary", &seeds, &|b| {
        let mut bytes = vec![1u8];
        bytes.extend(miniz_oxide::deflate::compress_to_vec(b, 1));
        let _ = tiller_share::url::decode(&format!("#c={}", URL_SAFE_NO_PAD.encode(bytes)));
    });
}

#[test]
fn fuzz_setup_json() {
    let dir = workspace().join("tests/data/share-links/v1");
    let seeds: Vec<Vec<u8>> = ["every-op.json", "reference-add.json", "minimal.json"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    fuzz("setup-json", &seeds, &|b| {
        let _ = tiller_share::SteeringConfig::from_json(&String::from_utf8_lossy(b));
    });
}

#[test]
fn fuzz_control_vector_gguf() {
    use tiller_share::cvec::{read, write, ControlVector};
    let cv = ControlVector {
        model_hint: "llama".into(),
        directions: vec![(1, vec![0.5; 32]), (7, vec![-1.0; 32])],
    };
    let seeds = vec![write(&cv).unwrap()];
    fuzz("control-vector", &seeds, &|b| {
        if let Ok(c) = read(b) {
            let _ = c.ops(8, 32, 1.0, true);
        }
    });
}

#[test]
fn fuzz_model_gguf_parse_and_load() {
    let t = Tiny { n_layer: 1, d: 32, n_head: 4, n_kv_head: 2, d_ff: 48, tied: false };
    let seeds = vec![TinyModel::new(t, 3).bytes()];
    fuzz("model-gguf", &seeds, &|b| {
        if tiller_model::Gguf::parse(b).is_ok() {
            if let Ok(m) = Model::load(b, Cpu::default(), Precision::Fast) {
                let _ =
                    m.session().forward(&[3, 4, 5], None, tiller_engine::LogitsFor::Last).wait();
            }
        }
    });
}
