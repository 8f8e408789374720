//! `x += y`, elementwise (the residual adds).

use crate::{Error, Gpu, Result};

pub fn add(gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, n: usize) -> Result<()> {
    if n == 0 || n > u32::MAX as usize {
        return Err(Error::Shape(format!("add of {n}")));
    }
    let p = gpu.uniform(&[n as u32, 0, 0, 0]);
    gpu.dispatch(&gpu.pipelines().add, &[&p, x, y], super::groups(n, 256));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    #[test]
    fn matches_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(8);
        for n in [1usize, 576, 70_001] {
            let (x, y) = (random(&mut r, n, 5.0), random(&mut r, n, 5.0));
            let (xb, yb) = (gpu.upload_f32("x", &x).unwrap(), gpu.upload_f32("y", &y).unwrap());
            add(&gpu, &xb, &yb, n).unwrap();
            let got = gpu.read_f32(&xb, n).unwrap();
            let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| *a as f64 + *b as f64).collect();
            check(&format!("add {n} on {}", gpu.name()), &got, &want, 1e-6);
        }
    }
}
