//! `y[t] = W x[t]` with W (rows x cols) in f32.

use crate::{Error, Gpu, Result};

pub fn matvec_f32(
    gpu: &Gpu,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: usize,
    cols: usize,
    n_tok: usize,
) -> Result<()> {
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    if cols == 0 || rows == 0 || rows > max || n_tok == 0 || n_tok > max {
        return Err(Error::Shape(format!("f32 matvec of {rows}x{cols} by {n_tok} rows")));
    }
    let p = gpu.uniform(&[rows as u32, cols as u32, n_tok as u32, 0]);
    gpu.dispatch(&gpu.pipelines().matvec_f32, &[&p, w, x, y], (rows as u32, n_tok as u32, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    #[test]
    fn matches_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(9);
        for (rows, cols, n_tok) in [(576usize, 576usize, 1usize), (100, 70, 3)] {
            let w = random(&mut r, rows * cols, 0.1);
            let x = random(&mut r, n_tok * cols, 2.0);
            let want: Vec<f64> = (0..n_tok)
                .flat_map(|t| {
                    let (w, x) = (&w, &x);
                    (0..rows).map(move |i| {
                        (0..cols).map(|c| w[i * cols + c] as f64 * x[t * cols + c] as f64).sum()
                    })
                })
                .collect();
            let (wb, xb) = (gpu.upload_f32("w", &w).unwrap(), gpu.upload_f32("x", &x).unwrap());
            let yb = gpu.filled("y", n_tok * rows, f32::NAN).unwrap();
            matvec_f32(&gpu, &wb, &xb, &yb, rows, cols, n_tok).unwrap();
            let got = gpu.read_f32(&yb, n_tok * rows).unwrap();
            check(
                &format!("f32 matvec {rows}x{cols} x{n_tok} on {}", gpu.name()),
                &got,
                &want,
                1e-5,
            );
        }
    }
}
