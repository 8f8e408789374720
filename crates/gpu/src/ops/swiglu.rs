//! SwiGLU: `y = silu(g) * u`, elementwise.

use crate::{Error, Gpu, Result};

pub fn swiglu(
    gpu: &Gpu,
    g: &wgpu::Buffer,
    u: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
) -> Result<()> {
    if n == 0 || n > u32::MAX as usize {
        return Err(Error::Shape(format!("swiglu of {n}")));
    }
    let p = gpu.uniform(&[n as u32, 0, 0, 0]);
    gpu.dispatch(&gpu.pipelines().swiglu, &[&p, g, u, y], super::groups(n, 256));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    #[test]
    fn matches_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(4);
        for n in [1usize, 1536, 3 * 1536 + 7] {
            let (g, u) = (random(&mut r, n, 6.0), random(&mut r, n, 2.0));
            let (gb, ub) = (gpu.upload_f32("g", &g).unwrap(), gpu.upload_f32("u", &u).unwrap());
            let yb = gpu.filled("y", n, f32::NAN).unwrap();
            swiglu(&gpu, &gb, &ub, &yb, n).unwrap();
            let got = gpu.read_f32(&yb, n).unwrap();
            let want: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(a, b)| *a as f64 / (1.0 + (-*a as f64).exp()) * *b as f64)
                .collect();
            check(&format!("swiglu {n} on {}", gpu.name()), &got, &want, 1e-5);
        }
    }
}
