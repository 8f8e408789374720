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
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let p = gpu.uniform(&[
        s.rows as u32,
        s.n_head as u32,
        s.n_kv as u32,
        s.head_dim as u32,
        s.pos0 as u32,
        scale.to_bits(),
        s.window.min(u32::MAX as usize) as u32,
        0,
    ]);
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
        for s in [
            Shape { rows: 1, n_head: 9, n_kv: 3, head_dim: 64, pos0: 200, window: 0 },
            Shape { rows: 12, n_head: 9, n_kv: 3, head_dim: 64, pos0: 0, window: 0 },
            Shape { rows: 3, n_head: 4, n_kv: 4, head_dim: 32, pos0: 70, window: 0 },
            Shape { rows: 2, n_head: 8, n_kv: 1, head_dim: 128, pos0: 5, window: 0 },
            // Gemma 3's shape (4 heads, 1 KV head, 256 wide), through a sliding window.
            Shape { rows: 5, n_head: 4, n_kv: 1, head_dim: 256, pos0: 150, window: 100 },
            Shape { rows: 1, n_head: 4, n_kv: 1, head_dim: 256, pos0: 3, window: 100 },
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
                            qv.iter().zip(kv).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                                / (hd as f64).sqrt()
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
