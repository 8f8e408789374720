//! The interventions on the GPU: one kernel applies any [`Edit`] (add, ablate, clamp,
//! rotate, LinEAS affine are all of its form) to the rows of an activation in place, so
//! steering never reads the residual stream back.

use crate::{Error, Gpu, Result};
use tiller_engine::Edit;

/// Apply `e` to `x` (`rows` x `width`, row i at position `pos0 + i`).
pub fn edit(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    rows: usize,
    width: usize,
    pos0: usize,
    e: &Edit,
) -> Result<()> {
    let lens = e.scale.iter().chain(&e.bias).chain(&e.dirs).map(|v| v.len());
    if rows == 0 || width == 0 || e.dirs.len() > 2 || lens.clone().any(|n| n != width) {
        return Err(Error::Shape(format!(
            "edit of {rows} rows of {width} with vectors of {:?}",
            lens.collect::<Vec<_>>()
        )));
    }
    let vec = |v: Option<&std::sync::Arc<[f32]>>| match v {
        Some(v) => gpu.constant(v),
        None => gpu.constant(&[0.0]),
    };
    let (scale, bias) = (vec(e.scale.as_ref())?, vec(e.bias.as_ref())?);
    let (u1, u2) = (vec(e.dirs.first())?, vec(e.dirs.get(1))?);
    let flags = e.scale.is_some() as u32 | (e.bias.is_some() as u32) << 1;
    let clip = |n: usize| n.min(u32::MAX as usize) as u32;
    let p = gpu.uniform(&[
        rows as u32,
        width as u32,
        clip(pos0),
        clip(e.start),
        clip(e.end),
        flags,
        e.dirs.len() as u32,
        0,
        e.m[0][0].to_bits(),
        e.m[0][1].to_bits(),
        e.m[1][0].to_bits(),
        e.m[1][1].to_bits(),
        e.k[0].to_bits(),
        e.k[1].to_bits(),
        0,
        0,
    ])?;
    let pl = &gpu.pipelines().edit;
    gpu.dispatch(pl, &[&p, x, &scale, &bias, &u1, &u2], super::groups(rows, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use std::sync::Arc;

    /// Every kind of edit against `Edit::apply` (the host reference), on random rows, with a
    /// position range that leaves some rows untouched.
    #[test]
    fn matches_the_host_edit() {
        let gpu = gpu();
        let mut r = rng(11);
        let (rows, width, pos0) = (7usize, 576usize, 10usize);
        let v = |r: &mut _, s: f32| -> Arc<[f32]> { random(r, width, s).into() };
        let unit = |v: Arc<[f32]>| -> Arc<[f32]> {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect()
        };
        let none = Edit {
            scale: None,
            bias: None,
            dirs: vec![],
            m: [[0.0; 2]; 2],
            k: [0.0; 2],
            start: 0,
            end: usize::MAX,
        };
        let (u1, u2) = (unit(v(&mut r, 1.0)), unit(v(&mut r, 1.0)));
        let edits = [
            ("add", Edit { bias: Some(v(&mut r, 4.0)), ..none.clone() }),
            (
                "ablate",
                Edit { dirs: vec![u1.clone()], m: [[-1.0, 0.0], [0.0, 0.0]], ..none.clone() },
            ),
            (
                "clamp, rows 12..15",
                Edit {
                    dirs: vec![u1.clone()],
                    m: [[-1.0, 0.0], [0.0, 0.0]],
                    k: [3.5, 0.0],
                    start: 12,
                    end: 15,
                    ..none.clone()
                },
            ),
            ("rotate", Edit { dirs: vec![u1, u2], m: [[-0.3, -0.7], [0.7, -0.3]], ..none.clone() }),
            (
                "affine, generated rows",
                Edit {
                    scale: Some(v(&mut r, 1.5)),
                    bias: Some(v(&mut r, 2.0)),
                    start: 14,
                    ..none.clone()
                },
            ),
        ];
        for (name, e) in edits {
            let x = random(&mut r, rows * width, 20.0);
            let mut want = x.clone();
            for (i, row) in want.chunks_exact_mut(width).enumerate() {
                if (e.start..e.end).contains(&(pos0 + i)) {
                    e.apply(row);
                }
            }
            let xb = gpu.upload_f32("x", &x).unwrap();
            edit(&gpu, &xb, rows, width, pos0, &e).unwrap();
            let got = gpu.read_f32(&xb, rows * width).unwrap();
            let want: Vec<f64> = want.iter().map(|w| *w as f64).collect();
            check(&format!("edit {name} on {}", gpu.name()), &got, &want, 1e-5);
        }
        let bad = Edit { bias: Some(vec![0.0; 3].into()), ..none };
        let xb = gpu.upload_f32("x", &[0.0; 8]).unwrap();
        assert!(edit(&gpu, &xb, 1, 8, 0, &bad).is_err(), "a vector of the wrong width");
    }
}
