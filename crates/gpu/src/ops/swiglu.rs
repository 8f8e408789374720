//! The MLP's gated activation, elementwise: `y = silu(g) * u` (SwiGLU) or `gelu(g) * u`
//! (GeGLU, tanh approximation).

use crate::{Error, Gpu, Result};
use tiller_model::Activation;

pub fn swiglu(
    gpu: &Gpu,
    g: &wgpu::Buffer,
    u: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
) -> Result<()> {
    gated(gpu, g, u, y, n, Activation::Silu)
}

/// `y = gelu(g)`, tanh approximation (an ungated MLP: GPT-2).
pub fn gelu(gpu: &Gpu, g: &wgpu::Buffer, y: &wgpu::Buffer, n: usize) -> Result<()> {
    if n == 0 || n > u32::MAX as usize {
        return Err(Error::Shape(format!("gelu of {n}")));
    }
    let p = gpu.uniform(&[n as u32, 1, 1, 0])?;
    gpu.dispatch(&gpu.pipelines().swiglu, &[&p, g, g, y], super::groups(n, 256));
    Ok(())
}

/// `y = cap * tanh(x / cap)` (Gemma 2's final-logit soft-capping).
pub fn softcap(gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, n: usize, cap: f32) -> Result<()> {
    if n == 0 || n > u32::MAX as usize || cap.is_nan() || cap <= 0.0 {
        return Err(Error::Shape(format!("soft-capping of {n} at {cap}")));
    }
    let p = gpu.uniform(&[n as u32, 2, 1, cap.to_bits()])?;
    gpu.dispatch(&gpu.pipelines().swiglu, &[&p, x, x, y], super::groups(n, 256));
    Ok(())
}

pub fn gated(
    gpu: &Gpu,
    g: &wgpu::Buffer,
    u: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
    act: Activation,
) -> Result<()> {
    if n == 0 || n > u32::MAX as usize {
        return Err(Error::Shape(format!("gated activation of {n}")));
    }
    let p = gpu.uniform(&[n as u32, (act == Activation::GeluTanh) as u32, 0, 0])?;
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
            let yb = gpu.filled("y", n, f32::NAN).unwrap();
            gated(&gpu, &gb, &ub, &yb, n, Activation::GeluTanh).unwrap();
            let got = gpu.read_f32(&yb, n).unwrap();
            let want: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(a, b)| {
                    let a = *a as f64;
                    let t = (0.7978845608028654 * (a + 0.044715 * a * a * a)).tanh();
                    0.5 * a * (1.0 + t) * *b as f64
                })
                .collect();
            check(&format!("geglu {n} on {}", gpu.name()), &got, &want, 1e-5);
            let yb = gpu.filled("y", n, f32::NAN).unwrap();
            gelu(&gpu, &gb, &yb, n).unwrap();
            let got = gpu.read_f32(&yb, n).unwrap();
            let want: Vec<f64> = g
                .iter()
                .map(|a| {
                    let a = *a as f64;
                    0.5 * a * (1.0 + (0.7978845608028654 * (a + 0.044715 * a * a * a)).tanh())
                })
                .collect();
            check(&format!("gelu {n} on {}", gpu.name()), &got, &want, 1e-5);
        }
    }
}
