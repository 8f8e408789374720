//! Decode's MLP input in one dispatch (`mlp_q4_1.wgsl`): RMSNorm, then
//! `silu(gate h) * (up h)` with Q4_1 gate and up matrices. The backend otherwise runs RMSNorm,
//! the two products and SwiGLU apart.

use crate::{Error, Gpu, Result};

/// Widest input the fused kernels (this and [`super::qkv`]) normalise in workgroup memory
/// (8 KiB).
pub const MAX_COLS: usize = 2048;

/// Shapes the fused kernels take.
pub(crate) fn check_shape(gpu: &Gpu, rows: usize, cols: usize) -> Result<()> {
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
    let p = gpu.uniform(&[rows as u32, cols as u32, eps.to_bits(), 0])?;
    let rk = gpu.rows();
    let pl = &rk.mlp_q4_1;
    gpu.dispatch(pl, &[&p, x, norm, gate, up, y], (rows.div_ceil(16) as u32, 1, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::swiglu::swiglu;
    use crate::ops::test_util::*;

    /// Against RMSNorm, the two products and SwiGLU on the GPU.
    #[test]
    fn equals_norm_products_and_swiglu() {
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
    }
}
