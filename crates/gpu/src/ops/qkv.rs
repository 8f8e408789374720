//! Decode's attention input in one dispatch (`qkv_q4_1.wgsl`): RMSNorm, then the q, k and v
//! products with Q4_1 matrices. The backend otherwise runs RMSNorm and three products.

use super::mlp::check_shape;
use crate::{Gpu, Result};

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
    ])?;
    let rk = gpu.rows();
    let pl = &rk.qkv_q4_1;
    let b = [&p, x, norm, w[0], w[1], w[2], out[0], out[1], out[2]];
    gpu.dispatch(pl, &b, (total.div_ceil(16) as u32, 1, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    /// Against RMSNorm and three products on the GPU.
    #[test]
    fn equals_norm_and_products() {
        let gpu = gpu();
        let mut r = rng(22);
        let cols = 576usize;
        let x = gpu.upload_f32("x", &random(&mut r, cols, 3.0)).unwrap();
        let n = gpu.upload_f32("norm", &random(&mut r, cols, 1.5)).unwrap();
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
