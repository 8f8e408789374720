//! Causal grouped-query attention over the KV cache (decode and prefill rows alike).

use crate::{Error, Gpu, Result};

/// Head widths the kernel takes (each of its 64 threads accumulates four output dims).
pub const MAX_HEAD_DIM: usize = 256;

/// The shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rows: usize,
    pub n_head: usize,
    pub n_kv: usize,
    pub head_dim: usize,
    /// Position of the first query row; the caches hold positions 0..pos0 + rows.
    pub pos0: usize,
    /// Sliding window (positions a query attends to, itself included); 0 = all.
    pub window: usize,
    /// The factor on `q . k`.
    pub scale: f32,
    /// Scores become `cap * tanh(s / cap)`; 0 = none.
    pub softcap: f32,
}

/// Fewer (row, head) workgroups than this, over more keys than [`SPLIT_KEYS`], and the keys are
/// split over workgroups (flash-decoding): one workgroup per head walking a long context alone
/// leaves a GPU idle.
const SPLIT_BELOW: usize = 256;
/// Keys per split at least (one chunk of the kernel), and at most this many splits.
const SPLIT_KEYS: usize = 64;
const MAX_SPLITS: usize = 64;

/// How many splits a shape's keys are cut into, and the keys each takes (1 split: the
/// one-pass kernel). `TILLER_GPU_ATTN_SPLIT=0` (native) keeps one pass.
pub fn splits(s: &Shape) -> (usize, usize) {
    let mut keys = s.pos0 + s.rows;
    if s.window > 0 {
        keys = keys.min(s.window);
    }
    let off = !cfg!(target_arch = "wasm32")
        && std::env::var("TILLER_GPU_ATTN_SPLIT").is_ok_and(|v| v == "0");
    if off || s.rows * s.n_head >= SPLIT_BELOW || keys <= 2 * SPLIT_KEYS {
        return (1, keys);
    }
    let span = keys.div_ceil(MAX_SPLITS).next_multiple_of(SPLIT_KEYS).max(SPLIT_KEYS);
    (keys.div_ceil(span), span)
}

pub fn attention(
    gpu: &Gpu,
    q: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    out: &wgpu::Buffer,
    s: Shape,
) -> Result<()> {
    attention_split(gpu, q, k_cache, v_cache, out, s, splits(&s), None)
}

/// [`attention`] with the keys cut into `(splits, span)` (tests compare both forms); with
/// `starts` (each row's first row of its sequence, as u32; `s.pos0` 0) the rows are packed
/// sequences and `k_cache`, `v_cache` their keys and values, row for row.
#[allow(clippy::too_many_arguments)]
pub fn attention_split(
    gpu: &Gpu,
    q: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    out: &wgpu::Buffer,
    s: Shape,
    (n_split, span): (usize, usize),
    starts: Option<&wgpu::Buffer>,
) -> Result<()> {
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if s.rows == 0
        || s.n_kv == 0
        || !s.n_head.is_multiple_of(s.n_kv)
        || s.head_dim == 0
        || s.head_dim > MAX_HEAD_DIM
        || s.rows > max
        || s.n_head > max
        || n_split == 0
        || n_split > max
        || (starts.is_some() && s.pos0 != 0)
    {
        return Err(Error::Shape(format!("attention {s:?}")));
    }
    let p = gpu.uniform(&[
        s.rows as u32,
        s.n_head as u32,
        s.n_kv as u32,
        s.head_dim as u32,
        s.pos0 as u32,
        s.scale.to_bits(),
        s.window.min(u32::MAX as usize) as u32,
        s.softcap.to_bits(),
        n_split as u32,
        span as u32,
        starts.is_some() as u32,
    ])?;
    let groups = (s.rows as u32, s.n_head as u32, n_split as u32);
    let pl = gpu.pipelines();
    let sb = &super::starts_or_unused(gpu, starts)?;
    if n_split == 1 {
        // `part` is not used: a scratch buffer from the pool binds it.
        let none = gpu.scratch(1)?;
        gpu.dispatch(&pl.attention, &[&p, q, k_cache, v_cache, out, &none, sb], groups);
        gpu.release(none);
        return Ok(());
    }
    let part = gpu.scratch(s.rows * s.n_head * n_split * (s.head_dim + 2))?;
    gpu.dispatch(&pl.attention, &[&p, q, k_cache, v_cache, out, &part, sb], groups);
    let pm = gpu.uniform(&[s.rows as u32, s.n_head as u32, s.head_dim as u32, n_split as u32])?;
    gpu.dispatch(&pl.attention_merge, &[&pm, &part, out], (s.rows as u32, s.n_head as u32, 1));
    gpu.release(part);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    #[test]
    fn matches_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(6);
        // SmolLM2-135M's shape (9 heads, 3 KV heads, 64 wide) for decode deep in the context
        // and for a prefill; MHA and MQA too.
        let sh = |rows, n_head, n_kv, head_dim: usize, pos0, window| Shape {
            rows,
            n_head,
            n_kv,
            head_dim,
            pos0,
            window,
            scale: 1.0 / (head_dim as f32).sqrt(),
            softcap: 0.0,
        };
        for s in [
            sh(1, 9, 3, 64, 200, 0),
            sh(1, 9, 3, 64, 5000, 0),
            sh(12, 9, 3, 64, 0, 0),
            sh(3, 4, 4, 32, 70, 0),
            sh(2, 8, 1, 128, 5, 0),
            // Gemma 3's shape (4 heads, 1 KV head, 256 wide), through a sliding window.
            sh(5, 4, 1, 256, 150, 100),
            sh(1, 4, 1, 256, 3, 100),
            // Gemma 2: scores soft-capped at 50 (scaled up so the cap bites), another scale.
            Shape { scale: 4.0, softcap: 50.0, ..sh(4, 8, 4, 256, 20, 16) },
        ] {
            let ctx = s.pos0 + s.rows;
            let (qw, kw) = (s.n_head * s.head_dim, s.n_kv * s.head_dim);
            let q = random(&mut r, s.rows * qw, 1.0);
            let kc = random(&mut r, ctx * kw, 1.0);
            let vc = random(&mut r, ctx * kw, 1.0);
            let (qb, kb, vb) = (
                gpu.upload_f32("q", &q).unwrap(),
                gpu.upload_f32("k", &kc).unwrap(),
                gpu.upload_f32("v", &vc).unwrap(),
            );
            let mut runs = vec![("one pass", (1, ctx)), ("as chosen", splits(&s))];
            // Every shape also cut into splits of one chunk (some of them empty for the
            // earlier rows and past a window).
            runs.push(("forced splits", (ctx.div_ceil(64), 64)));
            let got: Vec<(&str, Vec<f32>)> = runs
                .into_iter()
                .map(|(what, sp)| {
                    let ob = gpu.filled("o", s.rows * qw, f32::NAN).unwrap();
                    attention_split(&gpu, &qb, &kb, &vb, &ob, s, sp, None).unwrap();
                    (what, gpu.read_f32(&ob, s.rows * qw).unwrap())
                })
                .collect();
            let hd = s.head_dim;
            let mut want = vec![0f64; s.rows * qw];
            for row in 0..s.rows {
                for h in 0..s.n_head {
                    let g = h / (s.n_head / s.n_kv);
                    let qv = &q[row * qw + h * hd..row * qw + (h + 1) * hd];
                    let p = s.pos0 + row;
                    let first = if s.window > 0 { (p + 1).saturating_sub(s.window) } else { 0 };
                    let sc: Vec<f64> = (first..=p)
                        .map(|j| {
                            let kv = &kc[j * kw + g * hd..j * kw + (g + 1) * hd];
                            let x =
                                qv.iter().zip(kv).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                                    * s.scale as f64;
                            match s.softcap as f64 {
                                0.0 => x,
                                c => c * (x / c).tanh(),
                            }
                        })
                        .collect();
                    let mx = sc.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = sc.iter().map(|x| (x - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (j, ej) in (first..=p).zip(&e) {
                        for i in 0..hd {
                            want[row * qw + h * hd + i] += ej / z * vc[j * kw + g * hd + i] as f64;
                        }
                    }
                }
            }
            for (what, got) in got {
                check(&format!("attention {s:?}, {what}, on {}", gpu.name()), &got, &want, 1e-4);
            }
        }
    }

    /// Several sequences packed in one call (each row attending to its own sequence's rows,
    /// through a window too) give what one call per sequence gives, bit for bit.
    #[test]
    fn packed_sequences_equal_one_call_each() {
        let gpu = gpu();
        let mut r = rng(9);
        let lens = [3usize, 7, 1, 12, 150];
        let rows: usize = lens.iter().sum();
        for (n_head, n_kv, hd, window) in [(9, 3, 64, 0), (4, 1, 256, 5)] {
            let (qw, kw) = (n_head * hd, n_kv * hd);
            let (q, k, v) = (
                random(&mut r, rows * qw, 1.0),
                random(&mut r, rows * kw, 1.0),
                random(&mut r, rows * kw, 1.0),
            );
            let sh = |rows| Shape {
                rows,
                n_head,
                n_kv,
                head_dim: hd,
                pos0: 0,
                window,
                scale: 0.125,
                softcap: 0.0,
            };
            let sb = crate::ops::starts(&gpu, &lens).unwrap();
            let up = |v: &[f32]| gpu.upload_f32("x", v).unwrap();
            let ob = gpu.filled("o", rows * qw, f32::NAN).unwrap();
            let s = sh(rows);
            attention_split(&gpu, &up(&q), &up(&k), &up(&v), &ob, s, splits(&s), Some(&sb))
                .unwrap();
            let got = gpu.read_f32(&ob, rows * qw).unwrap();
            let mut first = 0;
            for &n in &lens {
                let part = |x: &[f32], w: usize| up(&x[first * w..(first + n) * w]);
                let o1 = gpu.filled("o", n * qw, f32::NAN).unwrap();
                attention(&gpu, &part(&q, qw), &part(&k, kw), &part(&v, kw), &o1, sh(n)).unwrap();
                let want = gpu.read_f32(&o1, n * qw).unwrap();
                let same = got[first * qw..(first + n) * qw]
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "packed sequence of {n} rows at row {first} ({n_head} heads, window {window}) differs");
                first += n;
            }
        }
    }
}
