//! The MLP's input side fused for decode: `silu(gate x) * (up x)` in one dispatch when both
//! matrices are Q4_1 (`mlp_q4_1.wgsl`); the backend otherwise runs two products and `swiglu`.

use crate::{Error, Gpu, Result};

/// `y = silu(G x) * (U x)` for one activation row, G and U (`rows` x `cols`) in Q4_1.
pub fn gate_up_q4_1(
    gpu: &Gpu,
    gate: &wgpu::Buffer,
    up: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if rows == 0 || cols == 0 || !cols.is_multiple_of(32) || rows.div_ceil(16) > max {
        return Err(Error::Shape(format!("fused MLP of {rows}x{cols}")));
    }
    let p = gpu.uniform(&[rows as u32, cols as u32, 0, 0]);
    gpu.dispatch(
        &gpu.pipelines().mlp_q4_1,
        &[&p, gate, up, x, y],
        (rows.div_ceil(16) as u32, 1, 1),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::matvec::{matvec, Format, Out};
    use crate::ops::swiglu::swiglu;
    use crate::ops::test_util::*;
    use half::f16;
    use rand::Rng;

    /// The fused kernel equals the two products followed by SwiGLU, and the f64 reference.
    #[test]
    fn equals_two_products_and_swiglu() {
        let gpu = gpu();
        let mut r = rng(21);
        let (rows, cols) = (1536usize, 576usize);
        let q4 = |r: &mut rand::rngs::StdRng| -> Vec<u8> {
            let mut out = Vec::new();
            for _ in 0..rows * cols / 32 {
                out.extend(f16::from_f32(r.random_range(0.001f32..0.05)).to_le_bytes());
                out.extend(f16::from_f32(r.random_range(-0.2f32..0.0)).to_le_bytes());
                out.extend((0..16).map(|_| r.random::<u8>()));
            }
            out
        };
        let (g, u) = (q4(&mut r), q4(&mut r));
        let x = random(&mut r, cols, 2.0);
        let (gb, ub) = (gpu.upload("g", &g).unwrap(), gpu.upload("u", &u).unwrap());
        let xb = gpu.upload_f32("x", &x).unwrap();
        let y = gpu.filled("y", rows, f32::NAN).unwrap();
        gate_up_q4_1(&gpu, &gb, &ub, &xb, &y, rows, cols).unwrap();
        let fused = gpu.read_f32(&y, rows).unwrap();
        let (gy, uy, sy) = (
            gpu.filled("gy", rows, f32::NAN).unwrap(),
            gpu.filled("uy", rows, f32::NAN).unwrap(),
            gpu.filled("sy", rows, f32::NAN).unwrap(),
        );
        matvec(&gpu, Format::Q4_1, &gb, &xb, &gy, rows, cols, 1, Out::Set).unwrap();
        matvec(&gpu, Format::Q4_1, &ub, &xb, &uy, rows, cols, 1, Out::Set).unwrap();
        swiglu(&gpu, &gy, &uy, &sy, rows).unwrap();
        let (gv, uv) = (gpu.read_f32(&gy, rows).unwrap(), gpu.read_f32(&uy, rows).unwrap());
        let want: Vec<f64> = gv
            .iter()
            .zip(&uv)
            .map(|(a, b)| (*a as f64) / (1.0 + (-*a as f64).exp()) * *b as f64)
            .collect();
        check(&format!("fused MLP {rows}x{cols} on {}", gpu.name()), &fused, &want, 1e-5);
        assert_eq!(
            fused,
            gpu.read_f32(&sy, rows).unwrap(),
            "fused = products + swiglu, bit for bit"
        );
    }
}
