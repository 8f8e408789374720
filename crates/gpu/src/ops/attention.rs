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

pub fn attention(
    gpu: &Gpu,
    q: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    out: &wgpu::Buffer,
    s: Shape,
) -> Result<()> {
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if s.rows == 0
        || s.n_kv == 0
        || !s.n_head.is_multiple_of(s.n_kv)
        || s.head_dim == 0
        || s.head_dim > MAX_HEAD_DIM
        || s.rows > max
        || s.n_head > max
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
    ])?;
    gpu.dispatch(
        &gpu.pipelines().attention,
        &[&p, q, k_cache, v_cache, out],
        (s.rows as u32, s.n_head as u32, 1),
    );
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
            let ob = gpu.filled("o", s.rows * qw, f32::NAN).unwrap();
            attention(&gpu, &qb, &kb, &vb, &ob, s).unwrap();
            let got = gpu.read_f32(&ob, s.rows * qw).unwrap();
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
            check(&format!("attention {s:?} on {}", gpu.name()), &got, &want, 1e-4);
        }
    }
}
