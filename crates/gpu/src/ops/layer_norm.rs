//! LayerNorm of `rows` rows of `n`: `y = (x - mean) / sqrt(var + eps) * g + b` (GPT-2).

use crate::{Error, Gpu, Result};

#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    g: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: usize,
    n: usize,
    eps: f32,
) -> Result<()> {
    if rows == 0 || n == 0 || rows > gpu.limits.max_compute_workgroups_per_dimension as usize {
        return Err(Error::Shape(format!("layer_norm of {rows} rows of {n}")));
    }
    let p = gpu.uniform(&[n as u32, rows as u32, eps.to_bits(), 0])?;
    gpu.dispatch(&gpu.pipelines().layer_norm, &[&p, x, g, b, y], (rows as u32, 1, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    #[test]
    fn matches_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(11);
        for (rows, n) in [(1usize, 768usize), (5, 768), (3, 1000), (2, 64)] {
            // An offset on every value, as GPT-2's residual stream has: the mean matters.
            let x: Vec<f32> = random(&mut r, rows * n, 3.0).iter().map(|v| v + 5.0).collect();
            let (g, b) = (random(&mut r, n, 1.0), random(&mut r, n, 1.0));
            let xb = gpu.upload_f32("x", &x).unwrap();
            let (gb, bb) = (gpu.upload_f32("g", &g).unwrap(), gpu.upload_f32("b", &b).unwrap());
            let yb = gpu.filled("y", rows * n, f32::NAN).unwrap();
            layer_norm(&gpu, &xb, &gb, &bb, &yb, rows, n, 1e-5).unwrap();
            let got = gpu.read_f32(&yb, rows * n).unwrap();
            let want: Vec<f64> = x
                .chunks(n)
                .flat_map(|row| {
                    let mean = row.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
                    let var =
                        row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                    let inv = 1.0 / (var + 1e-5).sqrt();
                    row.iter()
                        .zip(&g)
                        .zip(&b)
                        .map(|((v, gi), bi)| (*v as f64 - mean) * inv * *gi as f64 + *bi as f64)
                        .collect::<Vec<_>>()
                })
                .collect();
            check(&format!("layer_norm {rows}x{n} on {}", gpu.name()), &got, &want, 1e-5);
        }
    }
}
