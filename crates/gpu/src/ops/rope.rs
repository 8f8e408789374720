//! Rotary position embedding in place, adjacent pairs (as the CPU backend).

use crate::{Error, Gpu, Result};

pub fn rope(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    rows: usize,
    n_head: usize,
    head_dim: usize,
    pos0: usize,
    theta: f32,
) -> Result<()> {
    let pairs = rows * n_head * (head_dim / 2);
    if pairs == 0 || !head_dim.is_multiple_of(2) || pairs > u32::MAX as usize {
        return Err(Error::Shape(format!("rope of {rows} rows of {n_head} x {head_dim}")));
    }
    let p = gpu.uniform(&[
        rows as u32,
        n_head as u32,
        head_dim as u32,
        pos0 as u32,
        theta.to_bits(),
        0,
        0,
        0,
    ]);
    gpu.dispatch(&gpu.pipelines().rope, &[&p, x], super::groups(pairs, 64));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    #[test]
    fn matches_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(3);
        for (rows, n_head, hd, pos0) in
            [(1usize, 9usize, 64usize, 0usize), (5, 3, 64, 17), (3, 2, 32, 1000)]
        {
            let x = random(&mut r, rows * n_head * hd, 2.0);
            let xb = gpu.upload_f32("x", &x).unwrap();
            rope(&gpu, &xb, rows, n_head, hd, pos0, 10000.0).unwrap();
            let got = gpu.read_f32(&xb, x.len()).unwrap();
            let mut want: Vec<f64> = x.iter().map(|v| *v as f64).collect();
            for (row, v) in want.chunks_mut(n_head * hd).enumerate() {
                let pos = (pos0 + row) as f64;
                for h in 0..n_head {
                    for k in 0..hd / 2 {
                        let ang = pos * 10000f64.powf(-2.0 * k as f64 / hd as f64);
                        let (s, c) = ang.sin_cos();
                        let (a, b) = (v[h * hd + 2 * k], v[h * hd + 2 * k + 1]);
                        v[h * hd + 2 * k] = a * c - b * s;
                        v[h * hd + 2 * k + 1] = a * s + b * c;
                    }
                }
            }
            check(
                &format!("rope {rows}x{n_head}x{hd} at {pos0} on {}", gpu.name()),
                &got,
                &want,
                1e-3,
            );
        }
    }
}
