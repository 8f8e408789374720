//! `x += y`, elementwise (the residual adds), or `x[r] += b` for every row (a bias).

use crate::{Error, Gpu, Result};

pub fn add(gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, n: usize) -> Result<()> {
    add_rows(gpu, x, y, n, 0)
}

/// `x += y` over `n` values; with `cols` > 0, `y` is one row of `cols` added to every row.
pub fn add_rows(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: usize,
    cols: usize,
) -> Result<()> {
    if n == 0 || n > u32::MAX as usize || (cols > 0 && !n.is_multiple_of(cols)) {
        return Err(Error::Shape(format!("add of {n} (rows of {cols})")));
    }
    let p = gpu.uniform(&[n as u32, cols as u32, 0, 0])?;
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
        // A bias on every row.
        let (rows, cols) = (5usize, 96usize);
        let (x, b) = (random(&mut r, rows * cols, 5.0), random(&mut r, cols, 5.0));
        let (xb, bb) = (gpu.upload_f32("x", &x).unwrap(), gpu.upload_f32("b", &b).unwrap());
        add_rows(&gpu, &xb, &bb, rows * cols, cols).unwrap();
        let got = gpu.read_f32(&xb, rows * cols).unwrap();
        let want: Vec<f64> =
            x.iter().enumerate().map(|(i, a)| *a as f64 + b[i % cols] as f64).collect();
        check(&format!("bias {rows}x{cols} on {}", gpu.name()), &got, &want, 1e-6);
    }
}
