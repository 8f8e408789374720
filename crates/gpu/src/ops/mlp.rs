//! Decode's block inputs fused: RMSNorm then the products in one dispatch, for Q4_1 weights.
//! `gate_up_q4_1`: `silu(gate h) * (up h)` (`mlp_q4_1.wgsl`); `qkv_q4_1`: q, k and v
//! (`qkv_q4_1.wgsl`). The backend otherwise runs RMSNorm, the products and SwiGLU apart.

use crate::{Error, Gpu, Result};

/// Widest input the fused kernels normalise in workgroup memory (8 KiB).
pub const MAX_COLS: usize = 2048;

fn check_shape(gpu: &Gpu, rows: usize, cols: usize) -> Result<()> {
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if rows == 0
        || cols == 0
        || cols > MAX_COLS
        || !cols.is_multiple_of(32)
        || rows.div_ceil(16) > max
    {
        return Err(Error::Shape(format!("fused block input of {rows}x{cols}")));
    }
    Ok(())
}

/// `y = silu(G h) * (U h)` with `h = RMSNorm(x) * norm`, one activation row, G and U
/// (`rows` x `cols`) in Q4_1.
#[allow(clippy::too_many_arguments)]
pub fn gate_up_q4_1(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    (norm, eps): (&wgpu::Buffer, f32),
    gate: &wgpu::Buffer,
    up: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: usize,
    cols: usize,
) -> Result<()> {
    check_shape(gpu, rows, cols)?;
    let p = gpu.uniform(&[rows as u32, cols as u32, eps.to_bits(), 0]);
    let pl = &gpu.pipelines().mlp_q4_1;
    gpu.dispatch(pl, &[&p, x, norm, gate, up, y], (rows.div_ceil(16) as u32, 1, 1));
    Ok(())
}

/// `q, k, v = Wq h, Wk h, Wv h` with `h = RMSNorm(x) * norm`, one activation row, the three
/// matrices (`rows[i]` x `cols`) in Q4_1.
pub fn qkv_q4_1(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    (norm, eps): (&wgpu::Buffer, f32),
    w: [&wgpu::Buffer; 3],
    out: [&wgpu::Buffer; 3],
    rows: [usize; 3],
    cols: usize,
) -> Result<()> {
    let total: usize = rows.iter().sum();
    check_shape(gpu, total, cols)?;
    let p = gpu.uniform(&[
        cols as u32,
        rows[0] as u32,
        rows[1] as u32,
        rows[2] as u32,
        eps.to_bits(),
        0,
        0,
        0,
    ]);
    let pl = &gpu.pipelines().qkv_q4_1;
    let b = [&p, x, norm, w[0], w[1], w[2], out[0], out[1], out[2]];
    gpu.dispatch(pl, &b, (total.div_ceil(16) as u32, 1, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::matvec::{matvec, Format, Out};
    use crate::ops::rms_norm::rms_norm;
    use crate::ops::swiglu::swiglu;
    use crate::ops::test_util::*;
    use half::f16;
    use rand::{rngs::StdRng, Rng};

    fn q4(r: &mut StdRng, rows: usize, cols: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rows * cols / 32 {
            out.extend(f16::from_f32(r.random_range(0.001f32..0.05)).to_le_bytes());
            out.extend(f16::from_f32(r.random_range(-0.2f32..0.0)).to_le_bytes());
            out.extend((0..16).map(|_| r.random::<u8>()));
        }
        out
    }

    /// The unfused path the fused kernels replace: RMSNorm, then a product per matrix.
    fn unfused(
        gpu: &Gpu,
        x: &wgpu::Buffer,
        n: &wgpu::Buffer,
        ws: &[(&wgpu::Buffer, usize)],
        cols: usize,
    ) -> Vec<wgpu::Buffer> {
        let h = gpu.filled("h", cols, f32::NAN).unwrap();
        rms_norm(gpu, x, n, &h, 1, cols, 1e-5).unwrap();
        ws.iter()
            .map(|(w, rows)| {
                let y = gpu.filled("y", *rows, f32::NAN).unwrap();
                matvec(gpu, Format::Q4_1, w, &h, &y, *rows, cols, 1, Out::Set).unwrap();
                y
            })
            .collect()
    }

    /// Both fused kernels against RMSNorm + products (+ SwiGLU) on the GPU.
    #[test]
    fn equal_norm_products_and_swiglu() {
        let gpu = gpu();
        let mut r = rng(21);
        let cols = 576usize;
        let x = gpu.upload_f32("x", &random(&mut r, cols, 3.0)).unwrap();
        let n = gpu.upload_f32("norm", &random(&mut r, cols, 1.5)).unwrap();

        let rows = 1536usize;
        let (g, u) = (q4(&mut r, rows, cols), q4(&mut r, rows, cols));
        let (gb, ub) = (gpu.upload("g", &g).unwrap(), gpu.upload("u", &u).unwrap());
        let y = gpu.filled("y", rows, f32::NAN).unwrap();
        gate_up_q4_1(&gpu, &x, (&n, 1e-5), &gb, &ub, &y, rows, cols).unwrap();
        let fused = gpu.read_f32(&y, rows).unwrap();
        let gu = unfused(&gpu, &x, &n, &[(&gb, rows), (&ub, rows)], cols);
        let sy = gpu.filled("sy", rows, f32::NAN).unwrap();
        swiglu(&gpu, &gu[0], &gu[1], &sy, rows).unwrap();
        let want: Vec<f64> = gpu.read_f32(&sy, rows).unwrap().iter().map(|v| *v as f64).collect();
        check(
            &format!("fused norm + gate/up + SwiGLU {rows}x{cols} on {}", gpu.name()),
            &fused,
            &want,
            1e-5,
        );

        let rs = [576usize, 192, 192];
        let ws: Vec<wgpu::Buffer> =
            rs.iter().map(|&n| gpu.upload("w", &q4(&mut r, n, cols)).unwrap()).collect();
        let outs: Vec<wgpu::Buffer> =
            rs.iter().map(|&n| gpu.filled("o", n, f32::NAN).unwrap()).collect();
        qkv_q4_1(
            &gpu,
            &x,
            (&n, 1e-5),
            [&ws[0], &ws[1], &ws[2]],
            [&outs[0], &outs[1], &outs[2]],
            rs,
            cols,
        )
        .unwrap();
        let want =
            unfused(&gpu, &x, &n, &[(&ws[0], rs[0]), (&ws[1], rs[1]), (&ws[2], rs[2])], cols);
        for (i, name) in ["q", "k", "v"].iter().enumerate() {
            let got = gpu.read_f32(&outs[i], rs[i]).unwrap();
            let w: Vec<f64> =
                gpu.read_f32(&want[i], rs[i]).unwrap().iter().map(|v| *v as f64).collect();
            check(
                &format!("fused norm + {name} {}x{cols} on {}", rs[i], gpu.name()),
                &got,
                &w,
                1e-5,
            );
        }
        assert!(
            qkv_q4_1(
                &gpu,
                &x,
                (&n, 1e-5),
                [&ws[0], &ws[1], &ws[2]],
                [&outs[0], &outs[1], &outs[2]],
                rs,
                4096
            )
            .is_err(),
            "too wide for workgroup memory"
        );
    }
}
