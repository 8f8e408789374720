//! Weight matrices on the CPU and `y = x @ W.T`.
//!
//! Two paths, picked by an explicit match on the weight format and the number of rows:
//! - few rows (decode) and quantized weights: integer dot products per weight row
//!   ([`super::quant`]), rows split across threads;
//! - many rows (prefill) or f32 weights: tiles of `TILE` weight rows are de-quantized into a
//!   per-task f32 buffer and multiplied with `gemm`, so prefill runs at f32 GEMM speed while
//!   memory holds only the quantized weights.

use super::kernels::Kernels;
use super::par;
use super::quant::{dequant_q4_1, dequant_q5, dequant_q8_0, dequant_q8x16, QAct, QK};
use crate::{Error, Precision, Result};
use tiller_model::TensorInfo;

/// Weight rows per parallel task on the GEMM path.
const TILE: usize = 64;
/// From this many activation rows on, quantized weights go through the GEMM path. In wasm,
/// `gemm` has no simd128 kernel, so the integer kernels (simd128) serve every row count.
#[cfg(not(target_arch = "wasm32"))]
pub const GEMM_MIN_ROWS: usize = 8;
#[cfg(target_arch = "wasm32")]
pub const GEMM_MIN_ROWS: usize = usize::MAX;

/// How a matrix is held (see [`super::layout`] for which GGUF types land in which).
pub enum Format {
    F32(Vec<f32>),
    /// 4-bit codes, `w = d q + m` per 32 (Q4_1, Q4_0, Q4_K).
    Q4_1 {
        d: Vec<f32>,
        m: Vec<f32>,
        qs: Vec<u8>,
    },
    /// 5-bit codes, `w = d q + m` per 32; bit 4 of code j in bit j of the block's `qh`
    /// (Q5_0, Q5_1, Q5_K).
    Q5 {
        d: Vec<f32>,
        m: Vec<f32>,
        qs: Vec<u8>,
        qh: Vec<u32>,
    },
    /// Signed 8-bit codes, `w = d q` per 32 (Q8_0; the re-quantized types).
    Q8_0 {
        d: Vec<f32>,
        qs: Vec<i8>,
    },
    /// Signed codes with a scale per 16 (Q6_K).
    Q8x16 {
        d: Vec<f32>,
        qs: Vec<i8>,
    },
    /// Half-precision values as stored (F16, BF16).
    F16(Vec<u16>),
    BF16(Vec<u16>),
}

fn f16_to_f32(h: &[u16], out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    // SAFETY: half::f16 is a repr(transparent) u16.
    let h: &[half::f16] = unsafe { std::slice::from_raw_parts(h.as_ptr().cast(), h.len()) };
    h.convert_to_f32_slice(out);
}

fn bf16_to_f32(h: &[u16], out: &mut [f32]) {
    out.iter_mut().zip(h).for_each(|(o, &b)| *o = f32::from_bits((b as u32) << 16));
}

/// One weight row (by index) dot a group of four activation rows (by index: rows 4 g .. 4 g + 4).
type FourDot<'a> = dyn Fn(usize, usize) -> [f32; 4] + 'a;

/// One weight row (by index) dot one quantized activation row (qs, scales, sums).
type RowDot<'a> = dyn Fn(usize, &[i16], &[f32], &[f32]) -> f32 + 'a;

pub struct CpuMatrix {
    pub rows: usize,
    pub cols: usize,
    pub format: Format,
}

impl CpuMatrix {
    pub fn from_gguf(t: &TensorInfo, data: &[u8], precision: Precision) -> Result<Self> {
        if t.dims.len() != 2 {
            return Err(Error::Backend(format!(
                "tensor `{}` is not a matrix: dims {:?}",
                t.name, t.dims
            )));
        }
        let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
        let format = match precision {
            Precision::Fast if cols % QK == 0 => match super::layout::from_gguf(t, data)? {
                Some(f) => f,
                None => {
                    // Q2_K, Q3_K and the float types are re-quantized to Q8_0: near-lossless,
                    // not exact.
                    let w = tiller_model::gguf::dequantize(t, data)?;
                    let nb = w.len() / QK;
                    let (mut d, mut qs) = (Vec::with_capacity(nb), Vec::with_capacity(w.len()));
                    for blk in w.chunks_exact(QK) {
                        let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
                        let db = half::f16::from_f32(amax / 127.0).to_f32();
                        let id = if db > 0.0 { 1.0 / db } else { 0.0 };
                        d.push(db);
                        qs.extend(blk.iter().map(|v| (v * id).round().clamp(-127.0, 127.0) as i8));
                    }
                    Format::Q8_0 { d, qs }
                }
            },
            _ => Format::F32(tiller_model::gguf::dequantize(t, data)?),
        };
        Ok(CpuMatrix { rows, cols, format })
    }

    /// Bytes the matrix takes in memory.
    pub fn bytes(&self) -> usize {
        match &self.format {
            Format::F32(w) => w.len() * 4,
            Format::Q4_1 { d, m, qs } => (d.len() + m.len()) * 4 + qs.len(),
            Format::Q5 { d, m, qs, qh } => (d.len() + m.len() + qh.len()) * 4 + qs.len(),
            Format::Q8_0 { d, qs } | Format::Q8x16 { d, qs } => d.len() * 4 + qs.len(),
            Format::F16(h) | Format::BF16(h) => h.len() * 2,
        }
    }

    pub fn is_quantized(&self) -> bool {
        !matches!(self.format, Format::F32(_))
    }

    /// De-quantize rows `r0..r0 + n` into `out` (`n * cols`).
    pub fn dequant_rows(&self, r0: usize, n: usize, out: &mut [f32]) {
        let c = self.cols;
        let (b0, b1) = (r0 * c / QK, (r0 + n) * c / QK);
        match &self.format {
            Format::F32(w) => out.copy_from_slice(&w[r0 * c..(r0 + n) * c]),
            Format::Q4_1 { d, m, qs } => {
                dequant_q4_1(&d[b0..b1], &m[b0..b1], &qs[b0 * 16..b1 * 16], out)
            }
            Format::Q5 { d, m, qs, qh } => {
                dequant_q5(&d[b0..b1], &m[b0..b1], &qs[b0 * 16..b1 * 16], &qh[b0..b1], out)
            }
            Format::Q8_0 { d, qs } => dequant_q8_0(&d[b0..b1], &qs[b0 * QK..b1 * QK], out),
            Format::Q8x16 { d, qs } => {
                dequant_q8x16(&d[2 * b0..2 * b1], &qs[b0 * QK..b1 * QK], out)
            }
            Format::F16(h) => f16_to_f32(&h[r0 * c..(r0 + n) * c], out),
            Format::BF16(h) => bf16_to_f32(&h[r0 * c..(r0 + n) * c], out),
        }
    }

    /// Block `b` (32 values) of row `r` of a half-float matrix, as f32.
    fn dequant_rows_part(&self, r: usize, b: usize, out: &mut [f32; QK]) {
        let at = r * self.cols + b * QK;
        match &self.format {
            Format::F16(h) => f16_to_f32(&h[at..at + QK], out),
            Format::BF16(h) => bf16_to_f32(&h[at..at + QK], out),
            _ => unreachable!("half-float matrices only"),
        }
    }

    /// Dot products of weight rows `r0..r0 + n` with every row of `x`: `out[r][i]`, `n * x.rows()`.
    fn dot_rows(&self, k: &Kernels, r0: usize, n: usize, x: &QAct, out: &mut [f32]) {
        let (nbr, xr, cols) = (self.cols / QK, x.rows(), self.cols);
        // The row kernel for this format, chosen once per task.
        let row_dot: Box<RowDot<'_>> = match &self.format {
            Format::Q4_1 { d, m, qs } => Box::new(move |r, xq, xd, xs| {
                let (b0, b1) = (r * nbr, (r + 1) * nbr);
                (k.q4_1)(&d[b0..b1], &m[b0..b1], &qs[b0 * 16..b1 * 16], xq, xd, xs)
            }),
            Format::Q5 { d, m, qs, qh } => Box::new(move |r, xq, xd, xs| {
                let (b0, b1) = (r * nbr, (r + 1) * nbr);
                (k.q5)(&d[b0..b1], &m[b0..b1], &qs[b0 * 16..b1 * 16], &qh[b0..b1], xq, xd, xs)
            }),
            Format::Q8_0 { d, qs } => Box::new(move |r, xq, xd, _| {
                let (b0, b1) = (r * nbr, (r + 1) * nbr);
                (k.q8_0)(&d[b0..b1], &qs[b0 * QK..b1 * QK], xq, xd)
            }),
            Format::Q8x16 { d, qs } => Box::new(move |r, xq, xd, _| {
                let (b0, b1) = (r * nbr, (r + 1) * nbr);
                (k.q8x16)(&d[2 * b0..2 * b1], &qs[b0 * QK..b1 * QK], xq, xd)
            }),
            // Half floats against the activation's codes: converted a block at a time.
            Format::F16(_) | Format::BF16(_) => Box::new(move |r, xq, xd, _| {
                let mut w = [0f32; QK];
                let mut acc = 0f32;
                let mut x = [0f32; QK];
                for (b, (qb, d)) in xq.chunks_exact(QK).zip(xd).enumerate() {
                    self.dequant_rows_part(r, b, &mut w);
                    x.iter_mut().zip(qb).for_each(|(x, q)| *x = *q as f32);
                    acc += d * (k.dot_f32)(&w, &x);
                }
                acc
            }),
            // `matmul` sends f32 weights to the GEMM path; should one get here, it is still right.
            Format::F32(w) => Box::new(move |r, xq, xd, _| {
                let row = &w[r * cols..(r + 1) * cols];
                row.chunks_exact(QK)
                    .zip(xq.chunks_exact(QK))
                    .zip(xd)
                    .map(|((wb, qb), d)| {
                        d * wb.iter().zip(qb).map(|(a, q)| a * *q as f32).sum::<f32>()
                    })
                    .sum()
            }),
        };
        // Q4_1 and Q8_0 with a four-row kernel: each weight block unpacked once for four
        // activation rows (the rest one at a time); the same results as the one-row kernel.
        // Each group of four rows' codes and interleaved scales, looked up once per task.
        let groups: Vec<_> = (0..xr / 4).map(|g| x.group4(g)).collect();
        let groups = &groups;
        let four: Option<Box<FourDot<'_>>> = match (&self.format, k.q4_1x4, k.q8_0x4) {
            (Format::Q4_1 { d, m, qs }, Some(f), _) if xr >= 4 => Some(Box::new(move |r, g| {
                let (b0, b1) = (r * nbr, (r + 1) * nbr);
                let (codes, xd4, xs4) = groups[g];
                f(&d[b0..b1], &m[b0..b1], &qs[b0 * 16..b1 * 16], codes, xd4, xs4)
            })),
            (Format::Q8_0 { d, qs }, _, Some(f)) if xr >= 4 => Some(Box::new(move |r, g| {
                let (b0, b1) = (r * nbr, (r + 1) * nbr);
                let (codes, xd4, _) = groups[g];
                f(&d[b0..b1], &qs[b0 * QK..b1 * QK], codes, xd4)
            })),
            _ => None,
        };
        let mut first = 0;
        if let Some(f) = four {
            first = xr - xr % 4;
            for r in 0..n {
                for g in 0..first / 4 {
                    out[r * xr + 4 * g..r * xr + 4 * g + 4].copy_from_slice(&f(r0 + r, g));
                }
            }
        }
        for r in 0..n {
            for i in first..xr {
                let (xq, xd, xs) = x.row(i);
                out[r * xr + i] = row_dot(r0 + r, xq, xd, xs);
            }
        }
    }
}

/// `dst[r][j] = sum_k w[r][k] * x[j][k]` for a tile of `m` weight rows against `n` activation rows.
fn gemm_tile(w: &[f32], x: &[f32], m: usize, n: usize, k: usize, dst: &mut [f32]) {
    assert!(w.len() >= m * k && x.len() >= n * k && dst.len() >= m * n);
    // SAFETY: the asserts above bound every index gemm touches: lhs is m x k row-major,
    // rhs is x^T (k x n, column stride k), dst is m x n row-major.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            w.as_ptr(),
            1,
            k as isize,
            x.as_ptr(),
            k as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `x @ w.T` for every `w` (same `cols`), one parallel region for all of them.
/// `x` is `n x cols` row-major; each result is `n x w.rows` row-major.
pub fn matmul(k: &Kernels, x: &[f32], n: usize, ws: &[&CpuMatrix]) -> Vec<Vec<f32>> {
    let cols = ws[0].cols;
    let quantized_decode = n < GEMM_MIN_ROWS && ws.iter().all(|w| w.is_quantized());
    let xq = quantized_decode.then(|| QAct::quantize(x, cols));
    // Results are computed transposed (weight-row major) so that tasks own disjoint slices.
    let total: usize = ws.iter().map(|w| w.rows).sum();
    let mut yt = vec![0f32; total * n];
    let tile = if quantized_decode {
        // Enough tasks to balance two to sixteen threads, few enough to keep overhead low.
        (total / (par::threads() * 8)).clamp(16, 512)
    } else {
        TILE
    };
    let mut tasks = Vec::new();
    for (wi, w) in ws.iter().enumerate() {
        let mut r = 0;
        while r < w.rows {
            let len = tile.min(w.rows - r);
            tasks.push((wi, r, len));
            r += len;
        }
    }
    let outs = par::split_lengths(&mut yt, tasks.iter().map(|t| t.2 * n));
    let jobs: Vec<_> = tasks.into_iter().zip(outs).collect();
    par::for_each(jobs, |((wi, r0, len), out)| {
        let w = ws[wi];
        match (&xq, &w.format) {
            (Some(xq), _) => w.dot_rows(k, r0, len, xq, out),
            (None, Format::F32(data)) => {
                gemm_tile(&data[r0 * cols..(r0 + len) * cols], x, len, n, cols, out)
            }
            (None, _) => {
                let mut buf = vec![0f32; len * cols];
                w.dequant_rows(r0, len, &mut buf);
                gemm_tile(&buf, x, len, n, cols, out);
            }
        }
    });
    // Transpose back to row-major per matrix.
    let mut res = Vec::with_capacity(ws.len());
    let mut off = 0;
    for w in ws {
        let block = &yt[off * n..(off + w.rows) * n];
        let y = if n == 1 { block.to_vec() } else { transpose(block, w.rows, n) };
        res.push(y);
        off += w.rows;
    }
    res
}

/// `block` (`rows` x `n`, row-major) as `n` x `rows`: on threads, a band of output rows per
/// task, read in runs of [`RUN`] input rows so the lines read stay in cache across the band.
fn transpose(block: &[f32], rows: usize, n: usize) -> Vec<f32> {
    /// Output rows per task, input rows per run.
    const BAND: usize = 16;
    const RUN: usize = 64;
    let mut y = vec![0f32; n * rows];
    let bands: Vec<(usize, &mut [f32])> = y.chunks_mut(rows * BAND).enumerate().collect();
    par::for_each(bands, |(b, out)| {
        let j0 = b * BAND;
        for r0 in (0..rows).step_by(RUN) {
            let r1 = (r0 + RUN).min(rows);
            for (jj, o) in out.chunks_exact_mut(rows).enumerate() {
                let j = j0 + jj;
                for (r, v) in o[r0..r1].iter_mut().enumerate() {
                    *v = block[(r0 + r) * n + j];
                }
            }
        }
    });
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_a_transpose() {
        for (rows, n) in [(1, 5), (70, 3), (130, 17), (64, 16), (200, 33)] {
            let block: Vec<f32> = (0..rows * n).map(|i| i as f32).collect();
            let y = transpose(&block, rows, n);
            for r in 0..rows {
                for j in 0..n {
                    assert_eq!(y[j * rows + r], block[r * n + j], "{rows} x {n}");
                }
            }
        }
    }

    /// The four-row paths of `dot_rows` (Q4_1 and Q8_0: whole groups of four activation rows,
    /// then the rest) give the one-row paths' results exactly, for every row count the decode
    /// path takes.
    #[test]
    fn four_row_paths_equal_one_row_paths() {
        let (rows, cols) = (37, 4 * QK);
        let nb = rows * cols / QK;
        let mut seed = 7u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let q4 = CpuMatrix {
            rows,
            cols,
            format: Format::Q4_1 {
                d: (0..nb).map(|_| rnd() * 0.1).collect(),
                m: (0..nb).map(|_| rnd() * 0.1).collect(),
                qs: (0..nb * 16).map(|_| ((rnd() + 0.5) * 255.0) as u8).collect(),
            },
        };
        let q8 = CpuMatrix {
            rows,
            cols,
            format: Format::Q8_0 {
                d: (0..nb).map(|_| rnd() * 0.1).collect(),
                qs: (0..nb * QK).map(|_| (rnd() * 254.0) as i8).collect(),
            },
        };
        let one = Kernels::scalar();
        let four = Kernels {
            q4_1x4: Some(super::super::quant::dot_q4_1_x4_scalar),
            q8_0x4: Some(super::super::quant::dot_q8_0_x4_scalar),
            ..one
        };
        // The scalar pair, and every set with a four-row kernel (simd128) against itself
        // without it.
        let mut pairs = vec![(one, four)];
        pairs.extend(
            Kernels::available()
                .into_iter()
                .filter(|k| k.q4_1x4.is_some() || k.q8_0x4.is_some())
                .map(|k| (Kernels { q4_1x4: None, q8_0x4: None, ..k }, k)),
        );
        let most = [GEMM_MIN_ROWS, 12].into_iter().min().unwrap_or(12);
        for (one, four) in pairs {
            for n in 1..most {
                let x: Vec<f32> = (0..n * cols).map(|_| rnd()).collect();
                for w in [&q4, &q8] {
                    let a = matmul(&one, &x, n, &[w]);
                    let b = matmul(&four, &x, n, &[w]);
                    assert_eq!(a, b, "{}: {n} activation rows", four.name);
                }
            }
        }
    }
}
