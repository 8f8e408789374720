//! RMSNorm of `rows` rows of `n`: `y = x / sqrt(mean(x^2) + eps) * g`.

use crate::{Error, Gpu, Result};

pub fn rms_norm(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    g: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: usize,
    n: usize,
    eps: f32,
) -> Result<()> {
    if rows == 0 || n == 0 || rows > gpu.limits.max_compute_workgroups_per_dimension as usize {
        return Err(Error::Shape(format!("rms_norm of {rows} rows of {n}")));
    }
    let p = gpu.uniform(&[n as u32, rows as u32, eps.to_bits(), 0])?;
    gpu.dispatch(&gpu.pipelines().rms_norm, &[&p, x, g, y], (rows as u32, 1, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    #[test]
    fn matches_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(1);
        for (rows, n) in [(1usize, 576usize), (7, 576), (3, 1000), (2, 64)] {
            let x = random(&mut r, rows * n, 3.0);
            let g = random(&mut r, n, 1.0);
            let (xb, gb) = (gpu.upload_f32("x", &x).unwrap(), gpu.upload_f32("g", &g).unwrap());
            let yb = gpu.filled("y", rows * n, f32::NAN).unwrap();
            rms_norm(&gpu, &xb, &gb, &yb, rows, n, 1e-5).unwrap();
            let got = gpu.read_f32(&yb, rows * n).unwrap();
            let want: Vec<f64> = x
                .chunks(n)
                .flat_map(|row| {
                    let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
                    let inv = 1.0 / (ms + 1e-5).sqrt();
                    row.iter()
                        .zip(&g)
                        .map(move |(v, gi)| *v as f64 * inv * *gi as f64)
                        .collect::<Vec<_>>()
                })
                .collect();
            check(&format!("rms_norm {rows}x{n} on {}", gpu.name()), &got, &want, 1e-5);
        }
    }
}
