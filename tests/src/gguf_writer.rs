//! Writes small GGUF files for tests: tiny Llama models with random weights, and the
//! malformed variants the error-path tests need.

use std::collections::BTreeMap;
pub use tiller_model::gguf_write::{write, Meta, Tensor};

/// GPT-2's byte-to-unicode table: the byte-level BPE alphabet.
pub fn byte_alphabet() -> Vec<String> {
    let mut bs: Vec<u32> =
        (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    pairs.into_iter().map(|(_, c)| char::from_u32(c).unwrap_or('?').to_string()).collect()
}

/// A deterministic xorshift generator for test weights.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32() * scale).collect()
    }
}

/// Shape of a tiny Llama.
#[derive(Clone, Copy, Debug)]
pub struct Tiny {
    pub n_layer: usize,
    pub d: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub d_ff: usize,
    pub tied: bool,
}

pub struct TinyModel {
    pub meta: BTreeMap<String, Meta>,
    pub tensors: Vec<Tensor>,
    /// name -> f32 values (row-major [out, in]) for the reference forward pass.
    pub values: BTreeMap<String, Vec<f32>>,
    pub vocab: usize,
}

impl TinyModel {
    pub fn new(t: Tiny, seed: u64) -> Self {
        let mut tokens = vec!["<s>".to_string(), "</s>".to_string()];
        tokens.extend(byte_alphabet());
        let vocab = tokens.len();
        let mut meta = BTreeMap::new();
        meta.insert("general.architecture".into(), Meta::Str("llama".into()));
        meta.insert("llama.block_count".into(), Meta::U32(t.n_layer as u32));
        meta.insert("llama.context_length".into(), Meta::U32(64));
        meta.insert("llama.embedding_length".into(), Meta::U32(t.d as u32));
        meta.insert("llama.feed_forward_length".into(), Meta::U32(t.d_ff as u32));
        meta.insert("llama.attention.head_count".into(), Meta::U32(t.n_head as u32));
        meta.insert("llama.attention.head_count_kv".into(), Meta::U32(t.n_kv_head as u32));
        meta.insert("llama.rope.freq_base".into(), Meta::F32(10000.0));
        meta.insert("llama.attention.layer_norm_rms_epsilon".into(), Meta::F32(1e-5));
        meta.insert("tokenizer.ggml.model".into(), Meta::Str("gpt2".into()));
        meta.insert("tokenizer.ggml.pre".into(), Meta::Str("gpt2".into()));
        let mut types = vec![3, 3];
        types.extend(vec![1; vocab - 2]);
        meta.insert("tokenizer.ggml.token_type".into(), Meta::I32s(types));
        meta.insert("tokenizer.ggml.tokens".into(), Meta::Strs(tokens));
        meta.insert("tokenizer.ggml.merges".into(), Meta::Strs(vec![]));
        meta.insert("tokenizer.ggml.bos_token_id".into(), Meta::U32(0));
        meta.insert("tokenizer.ggml.eos_token_id".into(), Meta::U32(1));
        let mut rng = Rng(seed);
        let hd = t.d / t.n_head;
        let mut values = BTreeMap::new();
        let mut tensors = Vec::new();
        let mut add = |name: String, rows: usize, cols: usize, v: Vec<f32>| {
            let dims = if rows == 1 { vec![cols as u64] } else { vec![cols as u64, rows as u64] };
            tensors.push(Tensor::f32(&name, &dims, &v));
            values.insert(name, v);
        };
        add("token_embd.weight".into(), vocab, t.d, rng.vec(vocab * t.d, 1.0));
        add(
            "output_norm.weight".into(),
            1,
            t.d,
            rng.vec(t.d, 0.2).iter().map(|x| 1.0 + x).collect(),
        );
        if !t.tied {
            add("output.weight".into(), vocab, t.d, rng.vec(vocab * t.d, 0.5));
        }
        for l in 0..t.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let sc = 1.0 / (t.d as f32).sqrt();
            add(n("attn_norm"), 1, t.d, rng.vec(t.d, 0.2).iter().map(|x| 1.0 + x).collect());
            add(n("attn_q"), t.n_head * hd, t.d, rng.vec(t.n_head * hd * t.d, sc));
            add(n("attn_k"), t.n_kv_head * hd, t.d, rng.vec(t.n_kv_head * hd * t.d, sc));
            add(n("attn_v"), t.n_kv_head * hd, t.d, rng.vec(t.n_kv_head * hd * t.d, sc));
            add(n("attn_output"), t.d, t.n_head * hd, rng.vec(t.d * t.n_head * hd, sc));
            add(n("ffn_norm"), 1, t.d, rng.vec(t.d, 0.2).iter().map(|x| 1.0 + x).collect());
            add(n("ffn_gate"), t.d_ff, t.d, rng.vec(t.d_ff * t.d, sc));
            add(n("ffn_up"), t.d_ff, t.d, rng.vec(t.d_ff * t.d, sc));
            add(n("ffn_down"), t.d, t.d_ff, rng.vec(t.d * t.d_ff, 1.0 / (t.d_ff as f32).sqrt()));
        }
        TinyModel { meta, tensors, values, vocab }
    }

    /// A tiny model of another family (its `{arch}.*` keys and extra tensors, f32 weights):
    /// `gemma3` (head width 32 set by `attention.key_length`, q/k norms, sandwich norms, a
    /// sliding window of 4 on layers l % 6 < 5), `qwen2` (q/k/v biases), `qwen3` (q/k norms),
    /// `phi3` (fused q/k/v and gate/up tensors), `gemma2` (sandwich norms, a window of 4 on even
    /// layers, attention scores capped at 2 and logits at 8 so both caps bite), `gpt2`
    /// (LayerNorm with biases, fused q/k/v with a bias, biases on every product, an ungated
    /// GELU MLP, learned positions, no RoPE).
    /// Compared with llama.cpp, not with [`TinyModel::reference`] (which is the Llama block).
    pub fn family(arch: &str, t: Tiny, seed: u64) -> Self {
        let mut m = TinyModel::new(t, seed);
        let keys: Vec<String> =
            m.meta.keys().filter(|k| k.starts_with("llama.")).cloned().collect();
        for k in keys {
            let v = m.meta.remove(&k).expect("key");
            m.meta.insert(k.replacen("llama.", &format!("{arch}."), 1), v);
        }
        m.meta.insert("general.architecture".into(), Meta::Str(arch.into()));
        // llama.cpp knows GPT-2's pre-tokenizer as `default`.
        m.meta.insert("tokenizer.ggml.pre".into(), Meta::Str("default".into()));
        let mut rng = Rng(seed ^ 0xfa);
        let hd = t.d / t.n_head;
        let extra = |m: &mut TinyModel, name: String, n: usize, v: Vec<f32>| {
            m.tensors.push(Tensor::f32(&name, &[n as u64], &v));
            m.values.insert(name, v);
        };
        let gain =
            |rng: &mut Rng, n: usize| rng.vec(n, 0.2).iter().map(|x| 1.0 + x).collect::<Vec<f32>>();
        match arch {
            "gemma3" => {
                m.meta.insert("gemma3.attention.sliding_window".into(), Meta::U32(4));
                m.meta.insert("gemma3.attention.key_length".into(), Meta::U32(hd as u32));
                m.meta.insert("gemma3.attention.value_length".into(), Meta::U32(hd as u32));
                m.meta.insert("gemma3.attention.layer_norm_rms_epsilon".into(), Meta::F32(1e-6));
                for l in 0..t.n_layer {
                    let n = |s: &str| format!("blk.{l}.{s}.weight");
                    let (q, k) = (gain(&mut rng, hd), gain(&mut rng, hd));
                    extra(&mut m, n("attn_q_norm"), hd, q);
                    extra(&mut m, n("attn_k_norm"), hd, k);
                    let (a, f) = (gain(&mut rng, t.d), gain(&mut rng, t.d));
                    extra(&mut m, n("post_attention_norm"), t.d, a);
                    extra(&mut m, n("post_ffw_norm"), t.d, f);
                }
            }
            "qwen2" => {
                for l in 0..t.n_layer {
                    let b = |s: &str| format!("blk.{l}.{s}.bias");
                    let (q, k, v) = (
                        rng.vec(t.n_head * hd, 0.5),
                        rng.vec(t.n_kv_head * hd, 0.5),
                        rng.vec(t.n_kv_head * hd, 0.5),
                    );
                    extra(&mut m, b("attn_q"), t.n_head * hd, q);
                    extra(&mut m, b("attn_k"), t.n_kv_head * hd, k);
                    extra(&mut m, b("attn_v"), t.n_kv_head * hd, v);
                }
            }
            "phi3" => {
                // q, k, v in one tensor (rows q then k then v); gate and up in `ffn_up` (gate
                // first), as Phi-3's GGUFs hold them.
                for l in 0..t.n_layer {
                    let n = |s: &str| format!("blk.{l}.{s}.weight");
                    let mut take = |name: String| -> Vec<f32> {
                        m.tensors.retain(|x| x.name != name);
                        m.values.remove(&name).expect("tensor")
                    };
                    let qkv: Vec<f32> =
                        [take(n("attn_q")), take(n("attn_k")), take(n("attn_v"))].concat();
                    let gu: Vec<f32> = [take(n("ffn_gate")), take(n("ffn_up"))].concat();
                    let rows = (t.n_head + 2 * t.n_kv_head) * hd;
                    m.tensors.push(Tensor::f32(&n("attn_qkv"), &[t.d as u64, rows as u64], &qkv));
                    m.tensors.push(Tensor::f32(
                        &n("ffn_up"),
                        &[t.d as u64, 2 * t.d_ff as u64],
                        &gu,
                    ));
                    m.values.insert(n("attn_qkv"), qkv);
                    m.values.insert(n("ffn_up"), gu);
                }
            }
            "gemma2" => {
                m.meta.insert("gemma2.attention.sliding_window".into(), Meta::U32(4));
                m.meta.insert("gemma2.attention.key_length".into(), Meta::U32(hd as u32));
                m.meta.insert("gemma2.attention.value_length".into(), Meta::U32(hd as u32));
                m.meta.insert("gemma2.attn_logit_softcapping".into(), Meta::F32(2.0));
                m.meta.insert("gemma2.final_logit_softcapping".into(), Meta::F32(8.0));
                for l in 0..t.n_layer {
                    let n = |s: &str| format!("blk.{l}.{s}.weight");
                    let (a, f) = (gain(&mut rng, t.d), gain(&mut rng, t.d));
                    extra(&mut m, n("post_attention_norm"), t.d, a);
                    extra(&mut m, n("post_ffw_norm"), t.d, f);
                }
            }
            "gpt2" => {
                m.meta.remove("gpt2.attention.layer_norm_rms_epsilon");
                m.meta.remove("gpt2.rope.freq_base");
                m.meta.insert("gpt2.attention.layer_norm_epsilon".into(), Meta::F32(1e-5));
                let ctx = 64;
                let pos = rng.vec(t.d * ctx, 0.5);
                m.tensors.push(Tensor::f32(
                    "position_embd.weight",
                    &[t.d as u64, ctx as u64],
                    &pos,
                ));
                m.values.insert("position_embd.weight".into(), pos);
                let bias = |rng: &mut Rng, m: &mut TinyModel, name: String, n: usize| {
                    let v = rng.vec(n, 0.3);
                    m.tensors.push(Tensor::f32(&name, &[n as u64], &v));
                    m.values.insert(name, v);
                };
                bias(&mut rng, &mut m, "output_norm.bias".into(), t.d);
                let rows = (t.n_head + 2 * t.n_kv_head) * hd;
                for l in 0..t.n_layer {
                    let n = |s: &str| format!("blk.{l}.{s}.weight");
                    let b = |s: &str| format!("blk.{l}.{s}.bias");
                    let mut take = |name: String| -> Vec<f32> {
                        m.tensors.retain(|x| x.name != name);
                        m.values.remove(&name).expect("tensor")
                    };
                    let qkv: Vec<f32> =
                        [take(n("attn_q")), take(n("attn_k")), take(n("attn_v"))].concat();
                    take(n("ffn_gate"));
                    m.tensors.push(Tensor::f32(&n("attn_qkv"), &[t.d as u64, rows as u64], &qkv));
                    m.values.insert(n("attn_qkv"), qkv);
                    bias(&mut rng, &mut m, b("attn_qkv"), rows);
                    for (s, w) in [
                        ("attn_norm", t.d),
                        ("ffn_norm", t.d),
                        ("attn_output", t.d),
                        ("ffn_up", t.d_ff),
                        ("ffn_down", t.d),
                    ] {
                        bias(&mut rng, &mut m, b(s), w);
                    }
                }
            }
            "qwen3" => {
                for l in 0..t.n_layer {
                    let n = |s: &str| format!("blk.{l}.{s}.weight");
                    let (q, k) = (gain(&mut rng, hd), gain(&mut rng, hd));
                    extra(&mut m, n("attn_q_norm"), hd, q);
                    extra(&mut m, n("attn_k_norm"), hd, k);
                }
            }
            _ => {}
        }
        m
    }

    pub fn bytes(&self) -> Vec<u8> {
        write(&self.meta, &self.tensors)
    }

    /// A plain, obviously-correct forward pass (f64, no cache) for comparison: all logits.
    pub fn reference_logits(&self, t: Tiny, ids: &[u32]) -> Vec<Vec<f64>> {
        self.reference(t, ids).0
    }

    /// The reference forward pass: all logits, and the MLP hidden activation (SwiGLU output)
    /// of every layer at every position, `mlp[layer][position]`.
    #[allow(clippy::type_complexity, clippy::needless_range_loop)]
    pub fn reference(&self, t: Tiny, ids: &[u32]) -> (Vec<Vec<f64>>, Vec<Vec<Vec<f64>>>) {
        let mut mlp = vec![Vec::new(); t.n_layer];
        let v = |n: &str| self.values[n].iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let hd = t.d / t.n_head;
        let mm = |x: &[f64], w: &[f64], rows: usize| -> Vec<f64> {
            (0..rows).map(|r| (0..x.len()).map(|k| x[k] * w[r * x.len() + k]).sum()).collect()
        };
        let rms = |x: &[f64], g: &[f64]| -> Vec<f64> {
            let s = (x.iter().map(|a| a * a).sum::<f64>() / x.len() as f64 + 1e-5).sqrt();
            x.iter().zip(g).map(|(a, b)| a / s * b).collect()
        };
        let rope = |x: &mut [f64], pos: usize| {
            for h in 0..x.len() / hd {
                for i in 0..hd / 2 {
                    let ang = pos as f64 * 10000f64.powf(-(2.0 * i as f64) / hd as f64);
                    let (s, c) = ang.sin_cos();
                    let (a, b) = (x[h * hd + 2 * i], x[h * hd + 2 * i + 1]);
                    x[h * hd + 2 * i] = a * c - b * s;
                    x[h * hd + 2 * i + 1] = a * s + b * c;
                }
            }
        };
        let emb = v("token_embd.weight");
        let mut xs: Vec<Vec<f64>> =
            ids.iter().map(|&i| emb[i as usize * t.d..(i as usize + 1) * t.d].to_vec()).collect();
        for l in 0..t.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let (wq, wk, wv, wo) =
                (v(&n("attn_q")), v(&n("attn_k")), v(&n("attn_v")), v(&n("attn_output")));
            let hs: Vec<Vec<f64>> = xs.iter().map(|x| rms(x, &v(&n("attn_norm")))).collect();
            let mut qs: Vec<Vec<f64>> = hs.iter().map(|h| mm(h, &wq, t.n_head * hd)).collect();
            let mut ks: Vec<Vec<f64>> = hs.iter().map(|h| mm(h, &wk, t.n_kv_head * hd)).collect();
            let vs: Vec<Vec<f64>> = hs.iter().map(|h| mm(h, &wv, t.n_kv_head * hd)).collect();
            for p in 0..ids.len() {
                rope(&mut qs[p], p);
                rope(&mut ks[p], p);
            }
            for p in 0..ids.len() {
                let mut att = vec![0f64; t.n_head * hd];
                for h in 0..t.n_head {
                    let g = h / (t.n_head / t.n_kv_head);
                    let sc: Vec<f64> = (0..=p)
                        .map(|j| {
                            (0..hd).map(|i| qs[p][h * hd + i] * ks[j][g * hd + i]).sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let mx = sc.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = sc.iter().map(|s| (s - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for j in 0..=p {
                        for i in 0..hd {
                            att[h * hd + i] += e[j] / z * vs[j][g * hd + i];
                        }
                    }
                }
                let o = mm(&att, &wo, t.d);
                xs[p].iter_mut().zip(o).for_each(|(a, b)| *a += b);
                let h = rms(&xs[p], &v(&n("ffn_norm")));
                let g = mm(&h, &v(&n("ffn_gate")), t.d_ff);
                let u = mm(&h, &v(&n("ffn_up")), t.d_ff);
                let a: Vec<f64> =
                    g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
                let d = mm(&a, &v(&n("ffn_down")), t.d);
                mlp[l].push(a);
                xs[p].iter_mut().zip(d).for_each(|(a, b)| *a += b);
            }
        }
        let head = if t.tied { v("token_embd.weight") } else { v("output.weight") };
        let logits =
            xs.iter().map(|x| mm(&rms(x, &v("output_norm.weight")), &head, self.vocab)).collect();
        (logits, mlp)
    }
}
