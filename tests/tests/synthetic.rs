//! Synthetic tiny GGUF models written by a test helper: shapes, GQA, tied and untied
//! embeddings against a plain f64 reference forward pass, and the error paths.

use tiller_engine::Wait;
use tiller_engine::{Capture, Cpu, Hooks, LogitsFor, Model, Precision, Site};
use tiller_tests::gguf_writer::{write, Meta, Tensor, Tiny, TinyModel};
use tiller_tests::MaxDiff;

const TOL: f32 = 2e-3;

fn check(t: Tiny, seed: u64) {
    let tm = TinyModel::new(t, seed);
    let bytes = tm.bytes();
    let m = Model::load(&bytes, Cpu::default(), Precision::F32).expect("tiny model loads");
    assert_eq!(m.config.tied_embeddings, t.tied);
    assert_eq!((m.config.n_head, m.config.n_kv_head), (t.n_head, t.n_kv_head));
    let ids: Vec<u32> = vec![5, 77, 3, 200, 9, 41, 120];
    let want = tm.reference_logits(t, &ids);
    // All positions in one call, then the same through the KV cache one token at a time.
    let all = m.session().forward(&ids, None, LogitsFor::All).wait().unwrap();
    let mut s = m.session();
    let mut inc = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let l = if i == 0 {
            s.forward(&ids[..1], None, LogitsFor::Last).wait()
        } else {
            s.forward(&[id], None, LogitsFor::Last).wait()
        };
        inc.extend(l.unwrap());
    }
    let mut md = MaxDiff::default();
    for (p, row) in want.iter().enumerate() {
        for (v, &w) in row.iter().enumerate() {
            md.see(all[p * tm.vocab + v], w as f32, || format!("batched, position {p} token {v}"));
            md.see(inc[p * tm.vocab + v], w as f32, || {
                format!("incremental, position {p} token {v}")
            });
        }
    }
    println!("{t:?}: {}", md.report("logits vs f64 reference", TOL));
    assert!(md.max < TOL, "{}", md.report("logits", TOL));
    // The fast path repacks f32 weights to Q8_0 (int8 activations too on the decode path):
    // within 1% of the logit scale, and the same top-1 token at every position.
    let fast = Model::load(&bytes, Cpu::default(), Precision::Fast).unwrap();
    let mut s = fast.session();
    let f: Vec<f32> = ids
        .iter()
        .flat_map(|&id| s.forward(&[id], None, LogitsFor::Last).wait().unwrap())
        .collect();
    let d = f.iter().zip(&all).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = all.iter().map(|a| a.abs()).fold(0f32, f32::max);
    println!("fast (Q8_0 repack) vs f32: max diff {d} (logit scale {scale})");
    assert!(d < 0.01 * scale, "fast vs f32 max diff {d}, scale {scale}");
    for (a, b) in f.chunks(tm.vocab).zip(all.chunks(tm.vocab)) {
        assert_eq!(tiller_engine::sampling::argmax(a), tiller_engine::sampling::argmax(b));
    }
    check_mlp_hook(&m, &tm, t, &ids);
    // A pass for its hooks only (LogitsFor::None) captures what a pass with logits does.
    let mut with = Capture::new(0..t.n_layer);
    m.session().forward(&ids, Some(&mut with), LogitsFor::Last).wait().unwrap();
    let mut without = Capture::new(0..t.n_layer);
    let none = m.session().forward(&ids, Some(&mut without), LogitsFor::None).wait().unwrap();
    assert!(none.is_empty());
    assert_eq!(with.rows, without.rows);
    check_hooks_only(&m, t, &ids, &with);
    check_packed(&m, t);
    check_packed(&fast, t);
    // Unembedding several directions at once is one at a time.
    let d = t.d;
    let v: Vec<f32> = (0..2 * d).map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5).collect();
    let both = m.unembed_direction(&v).wait().unwrap();
    let one = m.unembed_direction(&v[..d]).wait().unwrap();
    let two = m.unembed_direction(&v[d..]).wait().unwrap();
    let want = [one, two].concat();
    let md = both.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    // (f32 weights: one GEMM for both rows, summing in another order than for one.)
    println!("unembedding two rows at once vs one by one: max diff {md:.1e}");
    assert!(md < 1e-5, "{md}");
    assert!(m.unembed_direction(&v[..d - 1]).wait().is_err());
}

/// The MLP hook sees the SwiGLU output of every layer and position, and what it writes is
/// what the down projection reads.
fn check_mlp_hook(m: &Model<Cpu>, tm: &TinyModel, t: Tiny, ids: &[u32]) {
    let (_, want) = tm.reference(t, ids);
    let mut cap = Capture::mlp(0..t.n_layer);
    m.session().forward(ids, Some(&mut cap), LogitsFor::All).wait().unwrap();
    let mut md = MaxDiff::default();
    for (l, rows) in cap.rows.iter().enumerate() {
        for (p, r) in rows.chunks(cap.width).enumerate() {
            for (j, &x) in r.iter().enumerate() {
                md.see(x, want[l][p][j] as f32, || format!("layer {l} position {p} neuron {j}"));
            }
        }
    }
    println!("{t:?}: {}", md.report("MLP activations vs f64 reference", TOL));
    assert!(md.max < TOL, "{}", md.report("MLP activations", TOL));
    // Zeroing the last layer's MLP activation removes exactly its down projection's output.
    struct Zero(usize, usize);
    impl Hooks for Zero {
        fn wants(&self, site: Site, l: usize) -> bool {
            site == Site::Mlp && l == self.0
        }
        fn edits(&self, _: Site, _: usize) -> Vec<tiller_engine::Edit> {
            vec![tiller_engine::Edit::scaled(vec![0.0; self.1].into())]
        }
    }
    let last = t.n_layer - 1;
    let mut before = Capture::new([last]);
    m.session().forward(ids, Some(&mut before), LogitsFor::Last).wait().unwrap();
    let mut zeroed = (Zero(last, t.d_ff), Capture::new([last]));
    m.session().forward(ids, Some(&mut zeroed), LogitsFor::Last).wait().unwrap();
    let down = m.down_project(last, cap.rows[last].clone()).wait().unwrap();
    let mut md = MaxDiff::default();
    for (i, ((b, a), d)) in before.rows[0].iter().zip(&zeroed.1.rows[0]).zip(&down).enumerate() {
        md.see(b - a, *d, || format!("row value {i}"));
    }
    println!("{}", md.report("zeroed MLP = minus its down projection", TOL));
    assert!(md.max < TOL);
}

#[test]
fn tiny_multi_head_tied() {
    check(Tiny { n_layer: 2, d: 64, n_head: 4, n_kv_head: 4, d_ff: 96, tied: true }, 1);
}

#[test]
fn tiny_gqa_untied() {
    check(Tiny { n_layer: 3, d: 64, n_head: 8, n_kv_head: 2, d_ff: 128, tied: false }, 2);
}

#[test]
fn tiny_multi_query() {
    check(Tiny { n_layer: 1, d: 32, n_head: 4, n_kv_head: 1, d_ff: 64, tied: true }, 3);
}

fn load_err(bytes: &[u8]) -> String {
    match Model::load(bytes, Cpu::default(), Precision::Fast) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn tiny() -> TinyModel {
    TinyModel::new(Tiny { n_layer: 1, d: 32, n_head: 2, n_kv_head: 1, d_ff: 32, tied: true }, 9)
}

#[test]
fn truncated_file_is_an_error() {
    let b = tiny().bytes();
    for cut in [0, 3, 10, 100, b.len() / 2, b.len() - 1] {
        let e = load_err(&b[..cut]);
        println!("cut at {cut}: {e}");
        assert!(
            e.contains("truncated") || e.contains("shorter") || e.contains("not a GGUF"),
            "{e}"
        );
    }
}

#[test]
fn wrong_magic_is_an_error() {
    let mut b = tiny().bytes();
    b[..4].copy_from_slice(b"GGML");
    let e = load_err(&b);
    assert!(e.contains("magic"), "{e}");
}

#[test]
fn absurd_tensor_size_is_an_error() {
    let mut t = tiny();
    t.tensors[0].dims = vec![32, 1 << 40];
    let e = load_err(&t.bytes());
    println!("{e}");
    assert!(e.contains("beyond the end") || e.contains("overflow"), "{e}");
    // An absurd string length in the header.
    let mut b = tiny().bytes();
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = load_err(&b);
    println!("{e}");
    assert!(e.contains("cap") || e.contains("truncated"), "{e}");
}

#[test]
fn unknown_dtype_is_an_error() {
    let mut t = tiny();
    t.tensors[2].ggml_type = 99;
    let e = load_err(&t.bytes());
    assert!(e.contains("unknown ggml type id 99"), "{e}");
}

#[test]
fn missing_tokenizer_keys_are_errors() {
    for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.model"] {
        let mut t = tiny();
        t.meta.remove(key);
        let e = load_err(&t.bytes());
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[test]
fn missing_tensor_and_wrong_shape_are_errors() {
    let mut t = tiny();
    t.tensors.retain(|x| x.name != "blk.0.ffn_up.weight");
    assert!(load_err(&t.bytes()).contains("blk.0.ffn_up.weight"));
    let mut t = tiny();
    let i = t.tensors.iter().position(|x| x.name == "blk.0.attn_q.weight").unwrap();
    t.tensors[i] = Tensor::f32("blk.0.attn_q.weight", &[32, 16], &vec![0.0; 512]);
    assert!(load_err(&t.bytes()).contains("expected"));
}

#[test]
fn unsupported_architecture_is_an_error() {
    let mut t = tiny();
    t.meta.insert("general.architecture".into(), Meta::Str("mamba".into()));
    assert!(load_err(&t.bytes()).contains("architecture `mamba`"));
    assert!(load_err(&write(&Default::default(), &[])).contains("general.architecture"));
}

#[test]
fn bad_tokens_and_empty_prompt_are_errors() {
    let m = Model::load(&tiny().bytes(), Cpu::default(), Precision::F32).unwrap();
    let e =
        m.session().forward(&[100_000], None, LogitsFor::Last).wait().err().unwrap().to_string();
    assert!(e.contains("outside the vocabulary"), "{e}");
    let e = m.session().forward(&[], None, LogitsFor::Last).wait().err().unwrap().to_string();
    assert!(e.contains("empty"), "{e}");
    let long = vec![3u32; 65];
    let e = m.session().forward(&long, None, LogitsFor::Last).wait().err().unwrap().to_string();
    assert!(e.contains("context is full"), "{e}");
}

#[test]
fn tokenizer_round_trips_bytes() {
    let m = Model::load(&tiny().bytes(), Cpu::default(), Precision::F32).unwrap();
    let text = "héllo <s> wörld 🦀";
    let ids = m.tokenizer.encode(text).unwrap();
    assert!(ids.contains(&0), "<s> is a special token: {ids:?}");
    assert_eq!(m.tokenizer.decode(&ids).unwrap(), text);
}

/// A pass for its hooks only (LogitsFor::Hooks, and a packed pass with no logits) stops after
/// the first block when only layer 0 is captured: the same rows as a full pass (`full`), the
/// later blocks never run (once the pass runs, the hook is never asked about the last block),
/// and the session cannot go on.
fn check_hooks_only(m: &Model<Cpu>, t: Tiny, ids: &[u32], full: &Capture) {
    use std::cell::Cell;
    struct First {
        cap: Capture,
        asked_last: Cell<usize>,
        last: usize,
        running: Cell<bool>,
    }
    impl Hooks for First {
        fn wants(&self, site: Site, l: usize) -> bool {
            // Counted once the pass runs (keeps is first asked in block 0).
            if l == self.last && self.running.get() {
                self.asked_last.set(self.asked_last.get() + 1);
            }
            self.cap.wants(site, l)
        }
        fn keeps(&self, site: Site, l: usize) -> Vec<tiller_engine::Keep> {
            self.running.set(true);
            self.cap.keeps(site, l)
        }
        fn take(&mut self, tag: u32, site: Site, l: usize, p: usize, rows: &[f32], w: usize) {
            self.cap.take(tag, site, l, p, rows, w)
        }
    }
    let first = || First {
        cap: Capture::new([0]),
        asked_last: Cell::new(0),
        last: t.n_layer - 1,
        running: Cell::new(false),
    };
    let (mut a, mut b) = (first(), first());
    m.session().forward(ids, Some(&mut a), LogitsFor::None).wait().unwrap();
    let mut s = m.session();
    assert!(s.forward(ids, Some(&mut b), LogitsFor::Hooks).wait().unwrap().is_empty());
    assert_eq!(a.cap.rows[0], full.rows[0]);
    assert_eq!(b.cap.rows[0], full.rows[0]);
    println!(
        "asked about the last block: {} times by a pass with no logits, {} by a hooks-only one",
        a.asked_last.get(),
        b.asked_last.get()
    );
    // (With one block there is nothing to skip.)
    let skips = t.n_layer > 1;
    assert!(a.asked_last.get() > 0 || !skips);
    assert!(b.asked_last.get() == 0 || !skips, "a hooks-only pass ran the last block");
    let e = s.forward(&ids[..1], None, LogitsFor::Last).wait().unwrap_err().to_string();
    assert!(e.contains("start a new session"), "{e}");
    let mut p = first();
    m.forward_packed(&[ids.to_vec()], Some(&mut p), &[false]).wait().unwrap();
    assert_eq!(p.cap.rows[0], full.rows[0]);
    assert!(p.asked_last.get() == 0 || !skips, "a packed pass with no logits ran the last block");
}

/// Sequences packed into one pass capture what one pass each does (f32 and quantized
/// weights; the products may sum in another order for more rows, so within a tolerance), the
/// logits asked for are those of each sequence's last position, and a hook that edits is
/// refused rather than applied at the wrong positions.
fn check_packed(m: &Model<Cpu>, t: Tiny) {
    let seqs: Vec<Vec<u32>> = vec![vec![5, 77, 3], vec![200, 9, 41, 120, 7, 8, 9, 10, 11], vec![1]];
    let mut packed = Capture::new(0..t.n_layer);
    let logits = m.forward_packed(&seqs, Some(&mut packed), &[true, false, true]).wait().unwrap();
    assert!(logits[1].is_empty());
    let mut md = MaxDiff::default();
    let mut first = 0;
    for (i, ids) in seqs.iter().enumerate() {
        let mut one = Capture::new(0..t.n_layer);
        let l = m.session().forward(ids, Some(&mut one), LogitsFor::Last).wait().unwrap();
        for (layer, (a, b)) in packed.rows.iter().zip(&one.rows).enumerate() {
            let a = &a[first * t.d..(first + ids.len()) * t.d];
            for (j, (x, y)) in a.iter().zip(b).enumerate() {
                md.see(*x, *y, || format!("sequence {i} layer {layer} value {j}"));
            }
        }
        if i != 1 {
            for (j, (x, y)) in logits[i].iter().zip(&l).enumerate() {
                md.see(*x, *y, || format!("sequence {i} logit {j}"));
            }
            assert_eq!(logits[i].len(), l.len());
        }
        first += ids.len();
    }
    println!("{t:?}: {}", md.report("packed pass vs one pass per sequence", 1e-3));
    assert!(md.max < 1e-3);
    struct Shift;
    impl Hooks for Shift {
        fn wants(&self, site: Site, _: usize) -> bool {
            site == Site::Residual
        }
        fn edits(&self, _: Site, _: usize) -> Vec<tiller_engine::Edit> {
            vec![tiller_engine::Edit::scaled(vec![2.0f32; 4].into())]
        }
    }
    let err = m.forward_packed(&seqs, Some(&mut Shift), &[]).wait().unwrap_err().to_string();
    assert!(err.contains("packed pass only captures"), "{err}");
}
