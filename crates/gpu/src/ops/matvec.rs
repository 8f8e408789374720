//! `y[t] = W x[t]` with W (rows x cols) as stored: GGUF Q4_1 or Q8_0 blocks, or f32. One op
//! (with a tiled prefill kernel for each, `matmul_*.wgsl`, picked by the same match),
//! one kernel per weight format (`matvec_q4_1.wgsl`, `matvec_q8_0.wgsl`, `matvec_f32.wgsl`),
//! chosen by an explicit match; all take the same parameters and dispatch (a workgroup per
//! sixteen output rows and one activation row, four threads a row).

use crate::{Error, Gpu, Result};

/// How a weight matrix is held on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    F32,
    /// 32 weights in 20 bytes: f16 scale, f16 minimum, 16 bytes of nibbles.
    Q4_1,
    /// 32 weights in 34 bytes: f16 scale, 32 signed bytes.
    Q8_0,
    /// Integer codes with f32 scales in word-aligned blocks, the CPU backend's exact layouts
    /// (`matvec_codes.wgsl`): 4-bit (Q4_0, Q4_K), 5-bit (Q5_0, Q5_1, Q5_K), signed 8-bit
    /// with a scale per 16 (Q6_K).
    Q4,
    Q5,
    Q8x16,
    /// Half floats as stored (also read by `matvec_codes.wgsl`).
    F16,
    BF16,
}

impl Format {
    /// (kind, u32 words a block of 32) of the code formats.
    fn codes(self) -> Option<(u32, u32)> {
        match self {
            Format::Q4 => Some((0, 6)),
            Format::Q5 => Some((1, 7)),
            Format::Q8x16 => Some((2, 10)),
            Format::F16 => Some((3, 16)),
            Format::BF16 => Some((4, 16)),
            _ => None,
        }
    }
}

/// A matrix's blocks (any GGUF type [`tiller_engine::cpu::layout`] keeps code for code) in the
/// word layout `matvec_codes.wgsl` reads, or `None` for the types it does not.
pub fn code_words(t: &tiller_model::TensorInfo, data: &[u8]) -> Result<Option<(Format, Vec<u8>)>> {
    use tiller_engine::cpu::matmul::Format as Cpu;
    use tiller_model::GgmlType;
    let cols = t.dims.first().copied().unwrap_or(0);
    match t.dtype {
        GgmlType::F16 if cols % 32 == 0 => return Ok(Some((Format::F16, data.to_vec()))),
        GgmlType::BF16 if cols % 32 == 0 => return Ok(Some((Format::BF16, data.to_vec()))),
        _ => {}
    }
    if !matches!(
        t.dtype,
        GgmlType::Q4_0
            | GgmlType::Q4K
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q5K
            | GgmlType::Q6K
    ) {
        return Ok(None);
    }
    let f =
        tiller_engine::cpu::layout::from_gguf(t, data).map_err(|e| Error::Shape(e.to_string()))?;
    // Little-endian words, written as bytes (no second copy of a large table).
    let mut out: Vec<u8> = Vec::new();
    let words = |out: &mut Vec<u8>, w: &[u32]| w.iter().for_each(|x| out.extend(x.to_le_bytes()));
    let format = match f {
        Some(Cpu::Q4_1 { d, m, qs }) => {
            out.reserve(qs.len() / 16 * 24);
            for (i, q) in qs.chunks_exact(16).enumerate() {
                words(&mut out, &[d[i].to_bits(), m[i].to_bits()]);
                out.extend_from_slice(q);
            }
            Format::Q4
        }
        Some(Cpu::Q5 { d, m, qs, qh }) => {
            out.reserve(qs.len() / 16 * 28);
            for (i, q) in qs.chunks_exact(16).enumerate() {
                words(&mut out, &[d[i].to_bits(), m[i].to_bits(), qh[i]]);
                out.extend_from_slice(q);
            }
            Format::Q5
        }
        Some(Cpu::Q8x16 { d, qs }) => {
            out.reserve(qs.len() / 32 * 40);
            for (i, q) in qs.chunks_exact(32).enumerate() {
                words(&mut out, &[d[2 * i].to_bits(), d[2 * i + 1].to_bits()]);
                out.extend(q.iter().map(|&v| v as u8));
            }
            Format::Q8x16
        }
        _ => return Ok(None),
    };
    Ok(Some((format, out)))
}

/// Whether the product replaces `y` or is added to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Set,
    /// `y += W x`: the residual add fused into the product.
    Add,
}

#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn matvec(
    gpu: &Gpu,
    format: Format,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: usize,
    cols: usize,
    n_tok: usize,
    out: Out,
) -> Result<()> {
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let blocks = format == Format::F32 || cols.is_multiple_of(32);
    if !blocks || cols == 0 || rows == 0 || rows.div_ceil(16) > max || n_tok == 0 || n_tok > max {
        return Err(Error::Shape(format!("{format:?} matvec of {rows}x{cols} by {n_tok} rows")));
    }
    let pl = gpu.pipelines();
    let rk = gpu.rows();
    // Decode (one row) reads each weight once anyway; a prefill takes a tiled kernel for every
    // format, which reads (and decodes) each weight block once per 8 rows and gives each row
    // the matrix-vector kernel's result.
    let (pipeline, tile) = match (format, n_tok) {
        (Format::Q4_1, 1) => (&rk.matvec_q4_1, 1),
        (Format::Q4_1, _) => (&pl.matmul_q4_1, 8),
        (Format::Q8_0, 1) => (&rk.matvec_q8_0, 1),
        (Format::Q8_0, _) => (&pl.matmul_q8_0, 8),
        (Format::F32, 1) => (&rk.matvec_f32, 1),
        (Format::F32, _) => (&pl.matmul_f32, 8),
        (Format::Q4 | Format::Q5 | Format::Q8x16 | Format::F16 | Format::BF16, 1) => {
            (&rk.matvec_codes, 1)
        }
        (Format::Q4 | Format::Q5 | Format::Q8x16 | Format::F16 | Format::BF16, _) => {
            (&pl.matmul_codes, 8)
        }
    };
    let mut words = vec![rows as u32, cols as u32, n_tok as u32, (out == Out::Add) as u32];
    if let Some((kind, block)) = format.codes() {
        words.extend([kind, block, 0, 0]);
    }
    let p = gpu.uniform(&words)?;
    let groups = (rows.div_ceil(16) as u32, n_tok.div_ceil(tile) as u32, 1);
    gpu.dispatch(pipeline, &[&p, w, x, y], groups);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use half::f16;
    use rand::{rngs::StdRng, Rng};
    use tiller_model::gguf::{dequantize, TensorInfo};
    use tiller_model::GgmlType;

    /// Random weights in `format`'s bytes: small f16 scales (and minimums), random codes.
    fn weights(r: &mut StdRng, format: Format, rows: usize, cols: usize) -> (Vec<u8>, GgmlType) {
        let mut out = Vec::new();
        let blocks = rows * cols / 32;
        match format {
            Format::F32 => {
                let v = random(r, rows * cols, 0.1);
                (v.iter().flat_map(|x| x.to_le_bytes()).collect(), GgmlType::F32)
            }
            Format::Q4_1 => {
                for _ in 0..blocks {
                    out.extend(f16::from_f32(r.random_range(0.001f32..0.05)).to_le_bytes());
                    out.extend(f16::from_f32(r.random_range(-0.2f32..0.0)).to_le_bytes());
                    out.extend((0..16).map(|_| r.random::<u8>()));
                }
                (out, GgmlType::Q4_1)
            }
            Format::Q8_0 => {
                for _ in 0..blocks {
                    out.extend(f16::from_f32(r.random_range(0.0005f32..0.01)).to_le_bytes());
                    out.extend((0..32).map(|_| r.random::<u8>()));
                }
                (out, GgmlType::Q8_0)
            }
            _ => unreachable!("the code formats have their own test"),
        }
    }

    /// `format` weights (`bytes`, de-quantized by the GGUF reader to `wf`) times random
    /// activations on the GPU, set and accumulated into a residual, against f64 sums.
    #[allow(clippy::too_many_arguments)]
    fn check_product(
        gpu: &Gpu,
        r: &mut StdRng,
        format: Format,
        bytes: &[u8],
        wf: &[f32],
        (rows, cols, n_tok): (usize, usize, usize),
        what: &str,
    ) {
        let x = random(r, n_tok * cols, 2.0);
        let want: Vec<f64> = (0..n_tok)
            .flat_map(|t| {
                let x = &x;
                (0..rows).map(move |i| {
                    (0..cols).map(|c| wf[i * cols + c] as f64 * x[t * cols + c] as f64).sum()
                })
            })
            .collect();
        let wb = gpu.upload("w", bytes).unwrap();
        let xb = gpu.upload_f32("x", &x).unwrap();
        let yb = gpu.filled("y", n_tok * rows, f32::NAN).unwrap();
        matvec(gpu, format, &wb, &xb, &yb, rows, cols, n_tok, Out::Set).unwrap();
        let got = gpu.read_f32(&yb, n_tok * rows).unwrap();
        let what = format!("{what}: {rows}x{cols} x{n_tok} on {}", gpu.name());
        check(&what, &got, &want, 1e-4);
        // Accumulating into a residual.
        let base = random(r, n_tok * rows, 3.0);
        let yb = gpu.upload_f32("y", &base).unwrap();
        matvec(gpu, format, &wb, &xb, &yb, rows, cols, n_tok, Out::Add).unwrap();
        let got = gpu.read_f32(&yb, n_tok * rows).unwrap();
        let want: Vec<f64> = want.iter().zip(&base).map(|(w, b)| w + *b as f64).collect();
        check(&format!("{what}, accumulated"), &got, &want, 1e-4);
    }

    /// A `rows` x `cols` tensor of type `t` (`n_bytes` of data at offset 0).
    fn tensor(t: GgmlType, rows: usize, cols: usize, n_bytes: usize) -> TensorInfo {
        TensorInfo {
            name: "w".into(),
            dims: vec![cols as u64, rows as u64],
            dtype: t,
            start: 0,
            n_bytes,
        }
    }

    /// Random GGUF blocks of `t` (modest f16 scales in the scale fields).
    fn gguf_blocks(r: &mut StdRng, t: GgmlType, n: usize) -> Vec<u8> {
        let (el, by) = t.block();
        let mut out = Vec::new();
        for _ in 0..n / el as usize {
            let mut b: Vec<u8> = (0..by).map(|_| r.random::<u8>()).collect();
            let mut scale = |at: usize, lo: f32, hi: f32| {
                b[at..at + 2].copy_from_slice(&f16::from_f32(r.random_range(lo..hi)).to_le_bytes())
            };
            match t {
                GgmlType::Q4_0 | GgmlType::Q5_0 => scale(0, 0.001, 0.05),
                GgmlType::Q5_1 => {
                    scale(0, 0.001, 0.05);
                    scale(2, -0.2, 0.0)
                }
                GgmlType::Q4K | GgmlType::Q5K => {
                    scale(0, 0.0001, 0.002);
                    scale(2, 0.0001, 0.004)
                }
                GgmlType::Q6K => scale(208, 0.0001, 0.002),
                GgmlType::F16 | GgmlType::BF16 => {
                    for c in b.chunks_exact_mut(2) {
                        c[1] &= 0x3f;
                    }
                }
                _ => unreachable!(),
            }
            out.extend(b);
        }
        out
    }

    /// The code formats (Q4_0, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K in the CPU's exact layouts; F16
    /// and BF16 as stored)
    /// against the GGUF de-quantizer, decode and prefill shapes, set and accumulated.
    #[test]
    fn code_formats_match_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(3);
        for t in [
            GgmlType::Q4_0,
            GgmlType::Q4K,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q5K,
            GgmlType::Q6K,
            GgmlType::F16,
            GgmlType::BF16,
        ] {
            for (rows, cols, n_tok) in [(64usize, 512usize, 1usize), (37, 256, 5), (24, 256, 19)] {
                let data = gguf_blocks(&mut r, t, rows * cols);
                let info = tensor(t, rows, cols, data.len());
                let (format, words) = code_words(&info, &data).unwrap().expect("a code format");
                let wf = dequantize(&info, &data).unwrap();
                let what = format!("{t:?} as {format:?}");
                check_product(&gpu, &mut r, format, &words, &wf, (rows, cols, n_tok), &what);
            }
        }
    }

    /// A prefill (the tiled kernels, up to 8 rows a tile) gives every row the bits of a
    /// decode step on that row alone (the matrix-vector kernels), for every weight format: a
    /// prompt's positions do not depend on how many went through together.
    #[test]
    fn tiled_prefill_equals_decode_bit_for_bit() {
        let gpu = gpu();
        let mut r = rng(4);
        let (rows, n_tok) = (37usize, 11usize);
        // (name, format, columns, weight bytes)
        let mut cases: Vec<(String, Format, usize, Vec<u8>)> =
            [Format::Q4_1, Format::Q8_0, Format::F32]
                .into_iter()
                .map(|f| (format!("{f:?}"), f, 96, weights(&mut r, f, rows, 96).0))
                .collect();
        for t in [GgmlType::Q4_0, GgmlType::Q5_1, GgmlType::Q6K, GgmlType::F16, GgmlType::BF16] {
            // Q6_K's super-blocks hold 256 weights.
            let cols = if t == GgmlType::Q6K { 256 } else { 96 };
            let data = gguf_blocks(&mut r, t, rows * cols);
            let (f, words) = code_words(&tensor(t, rows, cols, data.len()), &data)
                .unwrap()
                .expect("a code format");
            cases.push((format!("{t:?}"), f, cols, words));
        }
        for (name, format, cols, bytes) in cases {
            let x = random(&mut r, n_tok * cols, 2.0);
            let wb = gpu.upload("w", &bytes).unwrap();
            let xb = gpu.upload_f32("x", &x).unwrap();
            let yb = gpu.filled("y", n_tok * rows, f32::NAN).unwrap();
            matvec(&gpu, format, &wb, &xb, &yb, rows, cols, n_tok, Out::Set).unwrap();
            let tiled = gpu.read_f32(&yb, n_tok * rows).unwrap();
            for t in 0..n_tok {
                let xt = gpu.upload_f32("x", &x[t * cols..(t + 1) * cols]).unwrap();
                let yt = gpu.filled("y", rows, f32::NAN).unwrap();
                matvec(&gpu, format, &wb, &xt, &yt, rows, cols, 1, Out::Set).unwrap();
                let one = gpu.read_f32(&yt, rows).unwrap();
                let row = &tiled[t * rows..(t + 1) * rows];
                let worst = one
                    .iter()
                    .zip(row)
                    .enumerate()
                    .map(|(i, (a, b))| ((a - b).abs(), i))
                    .fold((0f32, 0), |m, v| if v.0 > m.0 { v } else { m });
                assert!(
                    one.iter().zip(row).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name}: row {t} of the prefill differs from its decode step, max {} at {}",
                    worst.0,
                    worst.1
                );
            }
        }
    }

    #[test]
    fn every_format_matches_the_cpu_reference() {
        let gpu = gpu();
        let mut r = rng(2);
        // Q8_0's 34-byte blocks are not word aligned: 3 x 96 is 9 blocks, 306 bytes.
        let shapes = [
            (576usize, 576usize, 1usize),
            (1536, 576, 1),
            (576, 1536, 3),
            (576, 576, 17),
            (1536, 576, 8),
            (101, 64, 2),
            (3, 96, 1),
        ];
        for format in [Format::Q4_1, Format::Q8_0, Format::F32] {
            for (rows, cols, n_tok) in shapes {
                let (wq, dtype) = weights(&mut r, format, rows, cols);
                let info = tensor(dtype, rows, cols, wq.len());
                // The CPU reference: the GGUF de-quantizer the CPU backend uses, then f64 sums.
                let wf = dequantize(&info, &wq).unwrap();
                let what = format!("{format:?} matvec");
                check_product(&gpu, &mut r, format, &wq, &wf, (rows, cols, n_tok), &what);
            }
        }
        let wb = gpu.upload("w", &[0u8; 68]).unwrap();
        let xb = gpu.upload_f32("x", &[0.0; 33]).unwrap();
        let e = matvec(&gpu, Format::Q8_0, &wb, &xb, &xb, 1, 33, 1, Out::Set);
        assert!(e.is_err(), "cols not a multiple of 32");
    }
}
