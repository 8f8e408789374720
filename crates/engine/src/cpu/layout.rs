//! GGUF blocks into the layouts the integer kernels read, code for code.
//!
//! Every format below keeps the file's integer codes (4, 5, 6 or 8 bits) and widens only the
//! scales to f32, so a weight de-quantizes to exactly the value ggml (and candle) compute:
//! - [`Format::Q4_1`]: 4-bit codes, `w = d q + m` per 32. Q4_1 as stored; Q4_0 (`m = -8 d`)
//!   and Q4_K (each 32-wide sub-block's `d * scale` and `-dmin * min`) re-laid out.
//! - [`Format::Q5`]: 5-bit codes (nibbles plus a 32-bit word of high bits), `w = d q + m` per
//!   32: Q5_0 (`m = -16 d`), Q5_1, Q5_K.
//! - [`Format::Q8_0`]: signed 8-bit codes, `w = d q` per 32.
//! - [`Format::Q8x16`]: signed codes with a scale per 16: Q6_K (`q - 32`, `d * scale`).
//! - [`Format::F16`], [`Format::BF16`]: the half-precision values as stored.
//!
//! Bytes per weight in memory against the file: Q4_1 0.75 (0.625), Q4_0 and Q4_K 0.75 (0.56),
//! Q5_x 0.875 (0.69 / 0.75 / 0.69), Q8_0 1.125 (1.06), Q6_K 1.25 (0.82), F16 and BF16 2 (2).
//! Q2_K and Q3_K are re-quantized to Q8_0 (not exact; said in the README). The GPU backend
//! uploads these same layouts (`tiller_gpu::ops::matvec::code_words`).

use super::matmul::Format;
use super::quant::QK;
use crate::{Error, Result};
use tiller_model::{GgmlType, TensorInfo};

fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K / Q5_K super-block (ggml's
/// `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// 32 codes (each < 16) into a Q4 block: byte j holds codes j (low) and j + 16 (high).
fn pack4(v: &[u8; 32], qs: &mut Vec<u8>) {
    qs.extend((0..16).map(|j| (v[j] & 15) | (v[j + 16] << 4)));
}

/// 32 codes (each < 32) into a Q5 block: nibbles as [`pack4`], bit 4 of code j in bit j.
fn pack5(v: &[u8; 32], qs: &mut Vec<u8>, qh: &mut Vec<u32>) {
    pack4(&v.map(|c| c & 15), qs);
    qh.push((0..32).fold(0u32, |h, j| h | (((v[j] >> 4) as u32 & 1) << j)));
}

/// The tensor's blocks in a kernel layout, or `None` for the types re-quantized instead.
pub fn from_gguf(t: &TensorInfo, data: &[u8]) -> Result<Option<Format>> {
    let (el, by) = t.dtype.block();
    let n = t.dims.iter().product::<u64>();
    if n % el != 0 || data.len() as u64 != n / el * by {
        return Err(Error::Backend(format!(
            "tensor `{}`: {} bytes for {n} {:?} values",
            t.name,
            data.len(),
            t.dtype
        )));
    }
    let nb = n as usize / QK;
    let blocks = data.chunks_exact(by as usize);
    let mut d = Vec::with_capacity(nb);
    let mut m = Vec::with_capacity(nb);
    let mut qs = Vec::with_capacity(nb * 16);
    let mut qh = Vec::new();
    let f = match t.dtype {
        GgmlType::Q4_0 => {
            for b in blocks {
                let dd = f16(&b[0..2]);
                d.push(dd);
                m.push(-8.0 * dd);
                qs.extend_from_slice(&b[2..18]);
            }
            Format::Q4_1 { d, m, qs }
        }
        GgmlType::Q4_1 => {
            for b in blocks {
                d.push(f16(&b[0..2]));
                m.push(f16(&b[2..4]));
                qs.extend_from_slice(&b[4..20]);
            }
            Format::Q4_1 { d, m, qs }
        }
        GgmlType::Q4K => {
            for b in blocks {
                let (dd, dmin, sc, q) = (f16(&b[0..2]), f16(&b[2..4]), &b[4..16], &b[16..144]);
                for pair in 0..4 {
                    let bytes = &q[32 * pair..32 * pair + 32];
                    for (half, shift) in [(0, 0), (1, 4)] {
                        let (s, mn) = scale_min_k4(2 * pair + half, sc);
                        d.push(dd * s as f32);
                        m.push(-(dmin * mn as f32));
                        pack4(&std::array::from_fn(|l| (bytes[l] >> shift) & 15), &mut qs);
                    }
                }
            }
            Format::Q4_1 { d, m, qs }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            qh.reserve(nb);
            let q5_1 = t.dtype == GgmlType::Q5_1;
            for b in blocks {
                let dd = f16(&b[0..2]);
                let (mm, o) = if q5_1 { (f16(&b[2..4]), 4) } else { (-16.0 * dd, 2) };
                d.push(dd);
                m.push(mm);
                qh.push(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]));
                qs.extend_from_slice(&b[o + 4..o + 20]);
            }
            Format::Q5 { d, m, qs, qh }
        }
        GgmlType::Q5K => {
            qh.reserve(nb);
            for b in blocks {
                let (dd, dmin, sc) = (f16(&b[0..2]), f16(&b[2..4]), &b[4..16]);
                let (hb, q) = (&b[16..48], &b[48..176]);
                for pair in 0..4 {
                    let bytes = &q[32 * pair..32 * pair + 32];
                    for (half, shift) in [(0, 0), (1, 4)] {
                        let (s, mn) = scale_min_k4(2 * pair + half, sc);
                        d.push(dd * s as f32);
                        m.push(-(dmin * mn as f32));
                        let bit = 2 * pair + half;
                        let v = std::array::from_fn(|l| {
                            ((bytes[l] >> shift) & 15) | (((hb[l] >> bit) & 1) << 4)
                        });
                        pack5(&v, &mut qs, &mut qh);
                    }
                }
            }
            Format::Q5 { d, m, qs, qh }
        }
        GgmlType::Q8_0 => {
            let mut q8 = Vec::with_capacity(nb * QK);
            for b in blocks {
                d.push(f16(&b[0..2]));
                q8.extend(b[2..34].iter().map(|&x| x as i8));
            }
            Format::Q8_0 { d, qs: q8 }
        }
        GgmlType::Q6K => {
            let mut q8 = vec![0i8; nb * QK];
            let mut d16 = Vec::with_capacity(nb * 2);
            for (i, b) in blocks.enumerate() {
                let (ql, hb, sc, dd) = (&b[0..128], &b[128..192], &b[192..208], f16(&b[208..210]));
                let y = &mut q8[i * 256..(i + 1) * 256];
                for half in 0..2 {
                    let (ql, hb, y) = (&ql[64 * half..], &hb[32 * half..], &mut y[128 * half..]);
                    for l in 0..32 {
                        let c = |lo: u8, sh: u8| ((lo | (((hb[l] >> sh) & 3) << 4)) as i8) - 32;
                        y[l] = c(ql[l] & 15, 0);
                        y[l + 32] = c(ql[l + 32] & 15, 2);
                        y[l + 64] = c(ql[l] >> 4, 4);
                        y[l + 96] = c(ql[l + 32] >> 4, 6);
                    }
                }
                d16.extend(sc.iter().map(|&s| dd * (s as i8) as f32));
            }
            Format::Q8x16 { d: d16, qs: q8 }
        }
        GgmlType::F16 | GgmlType::BF16 => {
            let h: Vec<u16> =
                data.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
            match t.dtype {
                GgmlType::F16 => Format::F16(h),
                _ => Format::BF16(h),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::matmul::CpuMatrix;
    use crate::Precision;

    /// Random blocks of `t` with finite, modest f16 scales in their scale fields.
    fn random_blocks(t: GgmlType, nblocks: usize, seed: &mut u64) -> Vec<u8> {
        let by = t.block().1 as usize;
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 32) as u8
        };
        let mut out = Vec::with_capacity(nblocks * by);
        for _ in 0..nblocks {
            let mut b: Vec<u8> = (0..by).map(|_| next()).collect();
            // Scale fields: f16 in about [-0.03, 0.03] (sign included where the format has one).
            let mut scale = |at: usize| {
                let v = (next() as f32 - 128.0) / 4096.0;
                b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
            };
            match t {
                GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => scale(0),
                GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => {
                    scale(0);
                    scale(2)
                }
                GgmlType::Q6K => scale(208),
                // Half floats: every 16-bit pattern but NaN and infinity, scaled down.
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

    /// Each format's codes and scales de-quantize to exactly candle's values.
    #[test]
    fn layouts_dequantize_exactly_as_ggml() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        for t in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q4K,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q5K,
            GgmlType::Q8_0,
            GgmlType::Q6K,
            GgmlType::F16,
            GgmlType::BF16,
        ] {
            let (rows, cols) = (3usize, 2560usize);
            let data = random_blocks(t, rows * cols / t.block().0 as usize, &mut seed);
            let info = TensorInfo {
                name: format!("{t:?}"),
                dims: vec![cols as u64, rows as u64],
                dtype: t,
                start: 0,
                n_bytes: data.len(),
            };
            let want = tiller_model::gguf::dequantize(&info, &data).unwrap();
            let mat = CpuMatrix::from_gguf(&info, &data, Precision::Fast).unwrap();
            let mut got = vec![f32::NAN; rows * cols];
            mat.dequant_rows(0, rows, &mut got);
            // Equal as numbers (a zero code may come out as -0 on one side).
            let bad = got.iter().zip(&want).position(|(a, b)| a != b);
            if let Some(i) = bad {
                panic!("{t:?}: value {i} is {} in our layout, {} by candle", got[i], want[i]);
            }
            // The decode product (integer activations) and the prefill one (GEMM over
            // de-quantized tiles) against f64 sums over candle's values.
            for n in [1usize, 9] {
                let x: Vec<f32> =
                    (0..n * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
                let k = crate::cpu::kernels::Kernels::detect();
                let y = crate::cpu::matmul::matmul(&k, &x, n, &[&mat]).remove(0);
                let (mut worst, mut scale) = (0f64, 0f64);
                for t_ in 0..n {
                    for r in 0..rows {
                        let (w, xr) =
                            (&want[r * cols..(r + 1) * cols], &x[t_ * cols..(t_ + 1) * cols]);
                        let exact: f64 = w.iter().zip(xr).map(|(a, b)| *a as f64 * *b as f64).sum();
                        scale = scale.max(
                            w.iter().zip(xr).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum(),
                        );
                        worst = worst.max((y[t_ * rows + r] as f64 - exact).abs());
                    }
                }
                assert!(
                    worst <= 1e-4 * scale,
                    "{t:?}, {n} rows: product off by {worst} (scale {scale})"
                );
            }
            println!("{t:?}: {} values, all equal; products within 1e-4", want.len());
        }
    }
}
