//! `y[t] = W x[t]` with W (rows x cols) in GGUF Q8_0 blocks as stored.

use crate::{Error, Gpu, Result};

/// Bytes of one Q8_0 block of 32 weights.
pub const BLOCK_BYTES: usize = 34;

pub fn matvec_q8_0(
    gpu: &Gpu,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: usize,
    cols: usize,
    n_tok: usize,
) -> Result<()> {
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if !cols.is_multiple_of(32) || rows == 0 || rows > max || n_tok == 0 || n_tok > max {
        return Err(Error::Shape(format!("Q8_0 matvec of {rows}x{cols} by {n_tok} rows")));
    }
    let p = gpu.uniform(&[rows as u32, cols as u32, n_tok as u32, 0]);
    gpu.dispatch(&gpu.pipelines().matvec_q8_0, &[&p, w, x, y], (rows as u32, n_tok as u32, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use rand::Rng;
    use tiller_model::gguf::{dequantize, TensorInfo};
    use tiller_model::GgmlType;

    /// Random Q8_0 blocks: small f16 scales, random signed bytes.
    fn q8_0(r: &mut rand::rngs::StdRng, rows: usize, cols: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(rows * cols / 32 * BLOCK_BYTES);
        for _ in 0..rows * cols / 32 {
            let d = half::f16::from_f32(r.random_range(0.0005f32..0.01));
            out.extend(d.to_le_bytes());
            out.extend((0..32).map(|_| r.random::<u8>()));
        }
        out
    }

    #[test]
    fn matches_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(7);
        for (rows, cols, n_tok) in
            [(576usize, 576usize, 1usize), (1536, 576, 1), (576, 1536, 3), (101, 64, 2), (3, 96, 1)]
        {
            let wq = q8_0(&mut r, rows, cols);
            let x = random(&mut r, n_tok * cols, 2.0);
            let info = TensorInfo {
                name: "w".into(),
                dims: vec![cols as u64, rows as u64],
                dtype: GgmlType::Q8_0,
                start: 0,
                n_bytes: wq.len(),
            };
            // The CPU reference: the GGUF de-quantizer the CPU backend uses, then f64 sums.
            let wf = dequantize(&info, &wq).unwrap();
            let want: Vec<f64> = (0..n_tok)
                .flat_map(|t| {
                    let (wf, x) = (&wf, &x);
                    (0..rows).map(move |i| {
                        (0..cols).map(|c| wf[i * cols + c] as f64 * x[t * cols + c] as f64).sum()
                    })
                })
                .collect();
            let wb = gpu.upload("w", &wq).unwrap();
            let xb = gpu.upload_f32("x", &x).unwrap();
            let yb = gpu.filled("y", n_tok * rows, f32::NAN).unwrap();
            matvec_q8_0(&gpu, &wb, &xb, &yb, rows, cols, n_tok).unwrap();
            let got = gpu.read_f32(&yb, n_tok * rows).unwrap();
            check(
                &format!("Q8_0 matvec {rows}x{cols} x{n_tok} on {}", gpu.name()),
                &got,
                &want,
                1e-4,
            );
        }
        let wb = gpu.upload("w", &[0u8; 68]).unwrap();
        let xb = gpu.upload_f32("x", &[0.0; 33]).unwrap();
        assert!(matvec_q8_0(&gpu, &wb, &xb, &xb, 1, 33, 1).is_err(), "cols not a multiple of 32");
    }
}
