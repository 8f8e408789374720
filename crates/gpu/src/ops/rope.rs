//! Rotary position embedding in place, adjacent pairs or halves (as the CPU backend).

use crate::{Error, Gpu, Result};
use tiller_model::RopeStyle;

#[allow(clippy::too_many_arguments)]
pub fn rope(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    rows: usize,
    n_head: usize,
    head_dim: usize,
    pos0: usize,
    theta: f32,
    style: RopeStyle,
) -> Result<()> {
    rope_qk(gpu, (x, n_head), None, rows, head_dim, pos0, theta, style, None)
}

/// RoPE on q (`n_head` heads) and, if given, k (`n_head_k` heads) in one dispatch; with
/// `starts` (each row's first row of its sequence, as u32) rows are packed sequences, each
/// from position 0 (`pos0` unused).
#[allow(clippy::too_many_arguments)]
pub fn rope_qk(
    gpu: &Gpu,
    (q, n_head): (&wgpu::Buffer, usize),
    k: Option<(&wgpu::Buffer, usize)>,
    rows: usize,
    head_dim: usize,
    pos0: usize,
    theta: f32,
    style: RopeStyle,
    starts: Option<&wgpu::Buffer>,
) -> Result<()> {
    if style == RopeStyle::None {
        return Ok(());
    }
    let n_head_k = k.map_or(0, |k| k.1);
    let pairs = rows * (n_head + n_head_k) * (head_dim / 2);
    if pairs == 0 || !head_dim.is_multiple_of(2) || pairs > u32::MAX as usize {
        return Err(Error::Shape(format!(
            "rope of {rows} rows of {n_head} + {n_head_k} heads x {head_dim}"
        )));
    }
    let p = gpu.uniform(&[
        rows as u32,
        n_head as u32,
        head_dim as u32,
        pos0 as u32,
        theta.to_bits(),
        n_head_k as u32,
        (style == RopeStyle::Neox) as u32,
        starts.is_some() as u32,
    ])?;
    let none;
    let kb = match k {
        Some((b, _)) => b,
        None => {
            none = gpu.constant(&[0.0])?;
            &none
        }
    };
    let sb = &super::starts_or_unused(gpu, starts)?;
    gpu.dispatch(&gpu.pipelines().rope, &[&p, q, kb, sb], super::groups(pairs, 64));
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
        for style in [RopeStyle::Normal, RopeStyle::Neox] {
            for (rows, n_head, hd, pos0) in [
                (1usize, 9usize, 64usize, 0usize),
                (5, 3, 64, 17),
                (3, 2, 32, 1000),
                (2, 4, 256, 9),
            ] {
                let x = random(&mut r, rows * n_head * hd, 2.0);
                let xb = gpu.upload_f32("x", &x).unwrap();
                rope(&gpu, &xb, rows, n_head, hd, pos0, 10000.0, style).unwrap();
                let got = gpu.read_f32(&xb, x.len()).unwrap();
                // q and k in one dispatch: k (one head fewer when it can) turns the same way.
                let nk = n_head.max(2) - 1;
                let k = random(&mut r, rows * nk * hd, 2.0);
                let (qb, kb) = (gpu.upload_f32("q", &x).unwrap(), gpu.upload_f32("k", &k).unwrap());
                rope_qk(&gpu, (&qb, n_head), Some((&kb, nk)), rows, hd, pos0, 10000.0, style, None)
                    .unwrap();
                assert_eq!(gpu.read_f32(&qb, x.len()).unwrap(), got, "q through rope_qk");
                let kgot = gpu.read_f32(&kb, k.len()).unwrap();
                let kb1 = gpu.upload_f32("k alone", &k).unwrap();
                rope(&gpu, &kb1, rows, nk, hd, pos0, 10000.0, style).unwrap();
                assert_eq!(gpu.read_f32(&kb1, k.len()).unwrap(), kgot, "k through rope_qk");
                let mut want: Vec<f64> = x.iter().map(|v| *v as f64).collect();
                for (row, v) in want.chunks_mut(n_head * hd).enumerate() {
                    let pos = (pos0 + row) as f64;
                    for h in 0..n_head {
                        for k in 0..hd / 2 {
                            let ang = pos * 10000f64.powf(-2.0 * k as f64 / hd as f64);
                            let (s, c) = ang.sin_cos();
                            let (ia, ib) = match style {
                                RopeStyle::Normal => (2 * k, 2 * k + 1),
                                RopeStyle::Neox | RopeStyle::None => (k, k + hd / 2),
                            };
                            let (a, b) = (v[h * hd + ia], v[h * hd + ib]);
                            v[h * hd + ia] = a * c - b * s;
                            v[h * hd + ib] = a * s + b * c;
                        }
                    }
                }
                check(
                    &format!("rope {style:?} {rows}x{n_head}x{hd} at {pos0} on {}", gpu.name()),
                    &got,
                    &want,
                    1e-3,
                );
            }
        }
    }
}
