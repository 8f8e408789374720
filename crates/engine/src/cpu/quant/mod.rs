//! Quantized blocks and the kernels that read them.
//!
//! Formats (ggml; [`super::layout`] brings the other GGUF types to these, code for code):
//! Q4_1 blocks of 32 weights = f16 scale d, f16 min m, 16 bytes of nibbles; weight j =
//! `d * (qs[j] & 15) + m` and weight j + 16 = `d * (qs[j] >> 4) + m`. Q8_0 blocks of 32 = f16
//! scale d, 32 signed bytes; weight j = `d * qs[j]`. Scales are widened to f32 at load.
//!
//! Activations are quantized per 32-block to **int16** with scale dx = max|x| / 32767 and the
//! block sum sx = dx * sum(q), so a Q4_1 block dot product is `dw * dx * sum(nib * q) + m * sx`.
//! llama.cpp quantizes activations to int8 (q8_1); int16 costs a few more instructions per
//! block (pmaddwd / i32x4.dot_i16x8 take i16 directly) but leaves ~1/256 of the rounding
//! noise, so the fast path stays within ~1e-3 of f32 and x86 and wasm agree token for token.
//!
//! Each dot product has a scalar reference and SIMD versions (AVX2, AVX-512, simd128);
//! [`super::kernels::Kernels`] picks one set per backend.

pub const QK: usize = 32;
const QMAX: f32 = 32767.0;

/// A row-major quantized activation matrix (`rows` x `cols`, cols a multiple of 32).
pub struct QAct {
    pub qs: Vec<i16>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    pub cols: usize,
    /// The scales and sums again, interleaved by groups of four rows (`[group][block][row]`,
    /// whole groups only), so a four-row kernel loads a block's four scales as one vector.
    pub d4: Vec<f32>,
    pub s4: Vec<f32>,
}

impl QAct {
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        let nb = x.len() / QK;
        let mut qs = vec![0i16; x.len()];
        let mut d = vec![0f32; nb];
        let mut s = vec![0f32; nb];
        for b in 0..nb {
            let xb = &x[b * QK..(b + 1) * QK];
            let qb = &mut qs[b * QK..(b + 1) * QK];
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            let (db, sum) = simd128::quantize_block(xb, qb);
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            let (db, sum) = quantize_block(xb, qb);
            d[b] = db;
            s[b] = db * sum as f32;
        }
        let (d4, s4) = (interleave4(&d, cols / QK), interleave4(&s, cols / QK));
        QAct { qs, d, s, cols, d4, s4 }
    }
    pub fn rows(&self) -> usize {
        self.qs.len() / self.cols
    }
    /// The codes of rows `4 g .. 4 g + 4` and their interleaved scales and sums
    /// (`4 * blocks` each: block b's four values at `4 b ..`).
    pub fn group4(&self, g: usize) -> ([&[i16]; 4], &[f32], &[f32]) {
        let nb = self.cols / QK;
        let codes = std::array::from_fn(|j| self.row(4 * g + j).0);
        let span = g * 4 * nb..(g + 1) * 4 * nb;
        (codes, &self.d4[span.clone()], &self.s4[span])
    }
    /// (qs, d, s) of one row.
    pub fn row(&self, r: usize) -> (&[i16], &[f32], &[f32]) {
        let nb = self.cols / QK;
        (
            &self.qs[r * self.cols..(r + 1) * self.cols],
            &self.d[r * nb..(r + 1) * nb],
            &self.s[r * nb..(r + 1) * nb],
        )
    }
}

/// `v` (rows of `nb`) interleaved by whole groups of four rows: `[group][block][row]`.
fn interleave4(v: &[f32], nb: usize) -> Vec<f32> {
    let groups = v.len() / nb / 4;
    let mut out = vec![0f32; groups * 4 * nb];
    for (g, o) in out.chunks_exact_mut(4 * nb).enumerate() {
        for (b, o) in o.chunks_exact_mut(4).enumerate() {
            o.iter_mut().enumerate().for_each(|(j, o)| *o = v[(4 * g + j) * nb + b]);
        }
    }
    out
}

/// The four rows of an interleaved `[block][row]` slice (for the scalar references).
fn deinterleave4(v: &[f32]) -> [Vec<f32>; 4] {
    std::array::from_fn(|j| v.iter().skip(j).step_by(4).copied().collect())
}

/// One block of 32 activations as int16 codes: the scale `max|x| / 32767` and the codes' sum.
/// Codes round half away from zero (`f32::round`); the simd128 version gives the same bits.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
pub fn quantize_block(xb: &[f32], qb: &mut [i16]) -> (f32, i32) {
    let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
    let db = amax / QMAX;
    let id = if db > 0.0 { 1.0 / db } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in qb.iter_mut().zip(xb) {
        *q = (v * id).round().clamp(-QMAX, QMAX) as i16;
        sum += *q as i32;
    }
    (db, sum)
}

/// Q4_1 row dot a quantized activation row.
pub type DotQ4_1 = fn(d: &[f32], m: &[f32], qs: &[u8], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32;
/// Q4_1 dot products of one weight row with four activation rows at once (each block's codes
/// unpacked once for the four; the rows' scales and sums interleaved as [`QAct::group4`] gives
/// them): `None` where a set has no such kernel (one row at a time). Each result is the same,
/// bit for bit, as the one-row kernel's.
pub type DotQ4_1x4 = fn(&[f32], &[f32], &[u8], [&[i16]; 4], &[f32], &[f32]) -> [f32; 4];
/// Q8_0 row dot a quantized activation row.
pub type DotQ8_0 = fn(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32;
/// [`DotQ8_0`] for four activation rows at once (each weight block widened once; the scales
/// interleaved as [`QAct::group4`] gives them).
pub type DotQ8_0x4 = fn(&[f32], &[i8], [&[i16]; 4], &[f32]) -> [f32; 4];

/// Q5 row (5-bit codes: nibbles, high bits, `w = d q + m`) dot a quantized activation row.
pub type DotQ5 =
    fn(d: &[f32], m: &[f32], qs: &[u8], qh: &[u32], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32;
/// Q8x16 row (signed codes, two scales per 32-block) dot a quantized activation row.
pub type DotQ8x16 = fn(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32;

/// The slice lengths every Q5 kernel relies on.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn check_q5(d: &[f32], m: &[f32], qs: &[u8], qh: &[u32], xq: &[i16], xd: &[f32], xs: &[f32]) {
    check_q4_1(d, m, qs, xq, xd, xs);
    assert!(qh.len() >= d.len());
}

/// The slice lengths every Q8x16 kernel relies on.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn check_q8x16(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) {
    let nb = d.len() / 2;
    assert!(qs.len() >= nb * QK && xq.len() >= nb * QK && xd.len() >= nb);
}

/// Code j (0..32) of a Q5 block.
#[inline]
fn code5(qs: &[u8], h: u32, j: usize) -> u8 {
    let nib = if j < 16 { qs[j] & 15 } else { qs[j - 16] >> 4 };
    nib | (((h >> j) & 1) as u8) << 4
}

pub fn dot_q5_scalar(
    d: &[f32],
    m: &[f32],
    qs: &[u8],
    qh: &[u32],
    xq: &[i16],
    xd: &[f32],
    xs: &[f32],
) -> f32 {
    let mut acc = 0f32;
    for b in 0..d.len() {
        let q = &qs[b * 16..b * 16 + 16];
        let x = &xq[b * QK..b * QK + QK];
        let sum: i32 = (0..QK).map(|j| code5(q, qh[b], j) as i32 * x[j] as i32).sum();
        acc += d[b] * xd[b] * sum as f32 + m[b] * xs[b];
    }
    acc
}

pub fn dot_q8x16_scalar(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
    let mut acc = 0f32;
    for b in 0..d.len() / 2 {
        let dot = |r: std::ops::Range<usize>| -> i32 {
            r.map(|j| qs[b * QK + j] as i32 * xq[b * QK + j] as i32).sum()
        };
        acc += xd[b] * (d[2 * b] * dot(0..16) as f32 + d[2 * b + 1] * dot(16..32) as f32);
    }
    acc
}

pub fn dequant_q5(d: &[f32], m: &[f32], qs: &[u8], qh: &[u32], out: &mut [f32]) {
    for b in 0..d.len() {
        let (q, h, (db, mb)) = (&qs[b * 16..b * 16 + 16], qh[b], (d[b], m[b]));
        let o = &mut out[b * QK..b * QK + QK];
        for j in 0..16 {
            let lo = (q[j] & 15) as u32 | ((h >> j) & 1) << 4;
            let hi = (q[j] >> 4) as u32 | ((h >> (j + 16)) & 1) << 4;
            o[j] = db * lo as f32 + mb;
            o[j + 16] = db * hi as f32 + mb;
        }
    }
}

pub fn dequant_q8x16(d: &[f32], qs: &[i8], out: &mut [f32]) {
    for ((o, q), s) in out.chunks_exact_mut(16).zip(qs.chunks_exact(16)).zip(d) {
        o.iter_mut().zip(q).for_each(|(o, q)| *o = s * *q as f32);
    }
}

/// The slice lengths every Q4_1 kernel relies on (checked before any SIMD code runs).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn check_q4_1(d: &[f32], m: &[f32], qs: &[u8], xq: &[i16], xd: &[f32], xs: &[f32]) {
    let nb = d.len();
    assert!(
        qs.len() >= nb * 16
            && xq.len() >= nb * QK
            && xd.len() >= nb
            && xs.len() >= nb
            && m.len() >= nb
    );
}

/// The slice lengths every Q8_0 kernel relies on.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn check_q8_0(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) {
    let nb = d.len();
    assert!(qs.len() >= nb * QK && xq.len() >= nb * QK && xd.len() >= nb);
}

pub fn dot_q4_1_scalar(d: &[f32], m: &[f32], qs: &[u8], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32 {
    let mut acc = 0f32;
    for b in 0..d.len() {
        let q = &qs[b * 16..b * 16 + 16];
        let x = &xq[b * QK..b * QK + QK];
        let mut sum = 0i32;
        for j in 0..16 {
            sum += (q[j] & 15) as i32 * x[j] as i32 + (q[j] >> 4) as i32 * x[j + 16] as i32;
        }
        acc += d[b] * xd[b] * sum as f32 + m[b] * xs[b];
    }
    acc
}

/// [`DotQ8_0x4`] as four one-row scalar dots: the reference the four-row kernels equal.
pub fn dot_q8_0_x4_scalar(d: &[f32], qs: &[i8], xq: [&[i16]; 4], xd4: &[f32]) -> [f32; 4] {
    let xd = deinterleave4(xd4);
    std::array::from_fn(|j| dot_q8_0_scalar(d, qs, xq[j], &xd[j]))
}

/// [`DotQ4_1x4`] as four one-row scalar dots: the reference the four-row kernels equal.
pub fn dot_q4_1_x4_scalar(
    d: &[f32],
    m: &[f32],
    qs: &[u8],
    xq: [&[i16]; 4],
    xd4: &[f32],
    xs4: &[f32],
) -> [f32; 4] {
    let (xd, xs) = (deinterleave4(xd4), deinterleave4(xs4));
    std::array::from_fn(|j| dot_q4_1_scalar(d, m, qs, xq[j], &xd[j], &xs[j]))
}

pub fn dot_q8_0_scalar(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
    let mut acc = 0f32;
    for b in 0..d.len() {
        let w = &qs[b * QK..b * QK + QK];
        let x = &xq[b * QK..b * QK + QK];
        let sum: i32 = w.iter().zip(x).map(|(&a, &b)| a as i32 * b as i32).sum();
        acc += d[b] * xd[b] * sum as f32;
    }
    acc
}

pub fn dequant_q4_1(d: &[f32], m: &[f32], qs: &[u8], out: &mut [f32]) {
    for b in 0..d.len() {
        let q = &qs[b * 16..b * 16 + 16];
        let o = &mut out[b * QK..b * QK + QK];
        for j in 0..16 {
            o[j] = d[b] * (q[j] & 15) as f32 + m[b];
            o[j + 16] = d[b] * (q[j] >> 4) as f32 + m[b];
        }
    }
}

pub fn dequant_q8_0(d: &[f32], qs: &[i8], out: &mut [f32]) {
    for b in 0..d.len() {
        for j in 0..QK {
            out[b * QK + j] = d[b] * qs[b * QK + j] as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) mod simd128;
#[cfg(test)]
mod tests;
