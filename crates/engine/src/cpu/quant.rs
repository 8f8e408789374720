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
        QAct { qs, d, s, cols }
    }
    pub fn rows(&self) -> usize {
        self.qs.len() / self.cols
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
/// unpacked once for the four): `None` where a set has no such kernel (one row at a time).
/// Each result is the same, bit for bit, as the one-row kernel's.
pub type DotQ4_1x4 = fn(&[f32], &[f32], &[u8], [&[i16]; 4], [&[f32]; 4], [&[f32]; 4]) -> [f32; 4];
/// Q8_0 row dot a quantized activation row.
pub type DotQ8_0 = fn(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32;

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

/// [`DotQ4_1x4`] as four one-row scalar dots: the reference the four-row kernels equal.
pub fn dot_q4_1_x4_scalar(
    d: &[f32],
    m: &[f32],
    qs: &[u8],
    xq: [&[i16]; 4],
    xd: [&[f32]; 4],
    xs: [&[f32]; 4],
) -> [f32; 4] {
    std::array::from_fn(|j| dot_q4_1_scalar(d, m, qs, xq[j], xd[j], xs[j]))
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
pub(super) mod avx2 {
    use super::QK;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// i32x8 partial sums of one Q4_1 block's 32 nibbles times 32 i16 activations.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block_q4(q: *const u8, x: *const i16) -> __m256i {
        let mask = _mm_set1_epi8(0x0F);
        let raw = _mm_loadu_si128(q as *const __m128i);
        let lo = _mm256_cvtepu8_epi16(_mm_and_si128(raw, mask));
        let hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), mask));
        let x0 = _mm256_loadu_si256(x as *const __m256i);
        let x1 = _mm256_loadu_si256(x.add(16) as *const __m256i);
        _mm256_add_epi32(_mm256_madd_epi16(lo, x0), _mm256_madd_epi16(hi, x1))
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn q4_1(d: &[f32], m: &[f32], qs: &[u8], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32 {
        let nb = d.len();
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut mins = 0f32;
        let (qp, xp) = (qs.as_ptr(), xq.as_ptr());
        let mut b = 0;
        while b + 1 < nb {
            let p0 = block_q4(qp.add(b * 16), xp.add(b * QK));
            let p1 = block_q4(qp.add((b + 1) * 16), xp.add((b + 1) * QK));
            acc0 = _mm256_fmadd_ps(
                _mm256_set1_ps(*d.get_unchecked(b) * *xd.get_unchecked(b)),
                _mm256_cvtepi32_ps(p0),
                acc0,
            );
            acc1 = _mm256_fmadd_ps(
                _mm256_set1_ps(*d.get_unchecked(b + 1) * *xd.get_unchecked(b + 1)),
                _mm256_cvtepi32_ps(p1),
                acc1,
            );
            mins += *m.get_unchecked(b) * *xs.get_unchecked(b)
                + *m.get_unchecked(b + 1) * *xs.get_unchecked(b + 1);
            b += 2;
        }
        if b < nb {
            let p = block_q4(qp.add(b * 16), xp.add(b * QK));
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d[b] * xd[b]), _mm256_cvtepi32_ps(p), acc0);
            mins += m[b] * xs[b];
        }
        hsum(_mm256_add_ps(acc0, acc1)) + mins
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn q8_0(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
        let nb = d.len();
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let w0 =
                _mm256_cvtepi8_epi16(_mm_loadu_si128(qs.as_ptr().add(b * QK) as *const __m128i));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                qs.as_ptr().add(b * QK + 16) as *const __m128i
            ));
            let x0 = _mm256_loadu_si256(xq.as_ptr().add(b * QK) as *const __m256i);
            let x1 = _mm256_loadu_si256(xq.as_ptr().add(b * QK + 16) as *const __m256i);
            let p = _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1));
            acc = _mm256_fmadd_ps(
                _mm256_set1_ps(*d.get_unchecked(b) * *xd.get_unchecked(b)),
                _mm256_cvtepi32_ps(p),
                acc,
            );
        }
        hsum(acc)
    }

    /// i32x8 partial sums of one Q5 block (nibbles at `q`, high bits `h`) times 32 i16
    /// activations: the Q4 block with bit j of `h` adding 16 to code j.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block_q5(q: *const u8, h: u32, x: *const i16) -> __m256i {
        let mask = _mm_set1_epi8(0x0F);
        let raw = _mm_loadu_si128(q as *const __m128i);
        let lo = _mm256_cvtepu8_epi16(_mm_and_si128(raw, mask));
        let hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), mask));
        let sel = _mm256_setr_epi16(
            1,
            2,
            4,
            8,
            16,
            32,
            64,
            128,
            256,
            512,
            1024,
            2048,
            4096,
            8192,
            16384,
            i16::MIN,
        );
        let sixteen = _mm256_set1_epi16(16);
        let bits = |v: u32| {
            let b = _mm256_set1_epi16(v as u16 as i16);
            _mm256_and_si256(_mm256_cmpeq_epi16(_mm256_and_si256(b, sel), sel), sixteen)
        };
        let lo = _mm256_or_si256(lo, bits(h & 0xFFFF));
        let hi = _mm256_or_si256(hi, bits(h >> 16));
        let x0 = _mm256_loadu_si256(x as *const __m256i);
        let x1 = _mm256_loadu_si256(x.add(16) as *const __m256i);
        _mm256_add_epi32(_mm256_madd_epi16(lo, x0), _mm256_madd_epi16(hi, x1))
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn q5(
        d: &[f32],
        m: &[f32],
        qs: &[u8],
        qh: &[u32],
        xq: &[i16],
        xd: &[f32],
        xs: &[f32],
    ) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0f32;
        let (qp, xp) = (qs.as_ptr(), xq.as_ptr());
        for b in 0..d.len() {
            let p = block_q5(qp.add(b * 16), *qh.get_unchecked(b), xp.add(b * QK));
            acc = _mm256_fmadd_ps(
                _mm256_set1_ps(*d.get_unchecked(b) * *xd.get_unchecked(b)),
                _mm256_cvtepi32_ps(p),
                acc,
            );
            mins += *m.get_unchecked(b) * *xs.get_unchecked(b);
        }
        hsum(acc) + mins
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn q8x16(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for b in 0..d.len() / 2 {
            let w0 =
                _mm256_cvtepi8_epi16(_mm_loadu_si128(qs.as_ptr().add(b * QK) as *const __m128i));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                qs.as_ptr().add(b * QK + 16) as *const __m128i
            ));
            let x0 = _mm256_loadu_si256(xq.as_ptr().add(b * QK) as *const __m256i);
            let x1 = _mm256_loadu_si256(xq.as_ptr().add(b * QK + 16) as *const __m256i);
            let dx = *xd.get_unchecked(b);
            acc = _mm256_fmadd_ps(
                _mm256_set1_ps(*d.get_unchecked(2 * b) * dx),
                _mm256_cvtepi32_ps(_mm256_madd_epi16(w0, x0)),
                acc,
            );
            acc = _mm256_fmadd_ps(
                _mm256_set1_ps(*d.get_unchecked(2 * b + 1) * dx),
                _mm256_cvtepi32_ps(_mm256_madd_epi16(w1, x1)),
                acc,
            );
        }
        hsum(acc)
    }

    pub fn dot_q5(
        d: &[f32],
        m: &[f32],
        qs: &[u8],
        qh: &[u32],
        xq: &[i16],
        xd: &[f32],
        xs: &[f32],
    ) -> f32 {
        super::check_q5(d, m, qs, qh, xq, xd, xs);
        // SAFETY: chosen only after `is_x86_feature_detected!("avx2")` and "fma"; bounds asserted above.
        unsafe { q5(d, m, qs, qh, xq, xd, xs) }
    }
    pub fn dot_q8x16(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
        super::check_q8x16(d, qs, xq, xd);
        // SAFETY: as above.
        unsafe { q8x16(d, qs, xq, xd) }
    }

    pub fn dot_q4_1(d: &[f32], m: &[f32], qs: &[u8], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32 {
        super::check_q4_1(d, m, qs, xq, xd, xs);
        // SAFETY: chosen only after `is_x86_feature_detected!("avx2")` and "fma"; bounds asserted above.
        unsafe { q4_1(d, m, qs, xq, xd, xs) }
    }
    pub fn dot_q8_0(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
        super::check_q8_0(d, qs, xq, xd);
        // SAFETY: as above.
        unsafe { q8_0(d, qs, xq, xd) }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::QK;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn q4_1(d: &[f32], m: &[f32], qs: &[u8], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32 {
        let mask = _mm_set1_epi8(0x0F);
        let mut acc = _mm512_setzero_ps();
        let mut mins = 0f32;
        for b in 0..d.len() {
            let raw = _mm_loadu_si128(qs.as_ptr().add(b * 16) as *const __m128i);
            let lo = _mm_and_si128(raw, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
            // 32 weights in order (low nibbles are elements 0..15, high 16..31), widened to i16.
            let w = _mm512_cvtepu8_epi16(_mm256_set_m128i(hi, lo));
            let x = _mm512_loadu_si512(xq.as_ptr().add(b * QK) as *const _);
            let p = _mm512_madd_epi16(w, x);
            acc = _mm512_fmadd_ps(
                _mm512_set1_ps(*d.get_unchecked(b) * *xd.get_unchecked(b)),
                _mm512_cvtepi32_ps(p),
                acc,
            );
            mins += *m.get_unchecked(b) * *xs.get_unchecked(b);
        }
        _mm512_reduce_add_ps(acc) + mins
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn q8_0(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
        let mut acc = _mm512_setzero_ps();
        for b in 0..d.len() {
            let w =
                _mm512_cvtepi8_epi16(_mm256_loadu_si256(qs.as_ptr().add(b * QK) as *const __m256i));
            let x = _mm512_loadu_si512(xq.as_ptr().add(b * QK) as *const _);
            let p = _mm512_madd_epi16(w, x);
            acc = _mm512_fmadd_ps(
                _mm512_set1_ps(*d.get_unchecked(b) * *xd.get_unchecked(b)),
                _mm512_cvtepi32_ps(p),
                acc,
            );
        }
        _mm512_reduce_add_ps(acc)
    }

    pub fn dot_q4_1(d: &[f32], m: &[f32], qs: &[u8], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32 {
        super::check_q4_1(d, m, qs, xq, xd, xs);
        // SAFETY: chosen only after `is_x86_feature_detected!` for avx512f and avx512bw; bounds asserted above.
        unsafe { q4_1(d, m, qs, xq, xd, xs) }
    }
    pub fn dot_q8_0(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
        super::check_q8_0(d, qs, xq, xd);
        // SAFETY: as above.
        unsafe { q8_0(d, qs, xq, xd) }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) mod simd128 {
    use super::{QK, QMAX};
    use std::arch::wasm32::*;

    /// [`super::quantize_block`] four lanes at a time, bit for bit: the max ignores NaN as
    /// `f32::max` does (pmax keeps the accumulator when the other side is NaN), rounding is half
    /// away from zero (truncate, then step away from zero where the dropped part is >= 0.5:
    /// the difference is exact), NaN codes become 0 as `as i16` makes them.
    #[inline]
    pub fn quantize_block(xb: &[f32], qb: &mut [i16]) -> (f32, i32) {
        assert!(xb.len() == QK && qb.len() == QK);
        let p = xb.as_ptr() as *const v128;
        // SAFETY: xb holds exactly 32 f32 = 8 v128 (unaligned loads).
        let v: [v128; 8] = std::array::from_fn(|i| unsafe { v128_load(p.add(i)) });
        let mut m = f32x4_splat(0.0);
        for x in &v {
            m = f32x4_pmax(m, f32x4_abs(*x));
        }
        let lanes = [
            f32x4_extract_lane::<0>(m),
            f32x4_extract_lane::<1>(m),
            f32x4_extract_lane::<2>(m),
            f32x4_extract_lane::<3>(m),
        ];
        let amax = lanes.iter().fold(0f32, |a, v| a.max(*v));
        let db = amax / QMAX;
        let id = f32x4_splat(if db > 0.0 { 1.0 / db } else { 0.0 });
        let (half, one, sign) = (f32x4_splat(0.5), f32x4_splat(1.0), f32x4_splat(-0.0));
        let (lo, hi) = (f32x4_splat(-QMAX), f32x4_splat(QMAX));
        let code = |x: v128| {
            let y = f32x4_mul(x, id);
            let t = f32x4_trunc(y);
            let away = v128_and(
                f32x4_ge(f32x4_abs(f32x4_sub(y, t)), half),
                v128_or(one, v128_and(y, sign)),
            );
            // pmax(x, lo) = x < lo ? lo : x and pmin(x, hi) = hi < x ? hi : x keep a NaN.
            let r = f32x4_pmin(f32x4_pmax(f32x4_add(t, away), lo), hi);
            i32x4_trunc_sat_f32x4(r)
        };
        let mut sum = i32x4_splat(0);
        let out = qb.as_mut_ptr() as *mut v128;
        for i in 0..4 {
            let (a, b) = (code(v[2 * i]), code(v[2 * i + 1]));
            sum = i32x4_add(sum, i32x4_add(a, b));
            // SAFETY: qb holds exactly 32 i16 = 4 v128.
            unsafe { v128_store(out.add(i), i16x8_narrow_i32x4(a, b)) };
        }
        let sum = i32x4_extract_lane::<0>(sum)
            + i32x4_extract_lane::<1>(sum)
            + i32x4_extract_lane::<2>(sum)
            + i32x4_extract_lane::<3>(sum);
        (db, sum)
    }

    fn hsum(v: v128) -> f32 {
        f32x4_extract_lane::<0>(v)
            + f32x4_extract_lane::<1>(v)
            + f32x4_extract_lane::<2>(v)
            + f32x4_extract_lane::<3>(v)
    }

    /// i32x4 partial sums of 16 weights (as i16x8 low/high) times 16 i16 activations.
    #[inline(always)]
    fn dot16(wl: v128, wh: v128, x: &[i16]) -> v128 {
        // SAFETY: callers pass slices of exactly 16 i16.
        let (x0, x1) = unsafe {
            (v128_load(x.as_ptr() as *const v128), v128_load(x.as_ptr().add(8) as *const v128))
        };
        i32x4_add(i32x4_dot_i16x8(wl, x0), i32x4_dot_i16x8(wh, x1))
    }

    /// [`dot_q4_1`] for four activation rows: the same operations per row, in the same order
    /// (so the same results), with each block's codes loaded and widened once.
    pub fn dot_q4_1_x4(
        d: &[f32],
        m: &[f32],
        qs: &[u8],
        xq: [&[i16]; 4],
        xd: [&[f32]; 4],
        xs: [&[f32]; 4],
    ) -> [f32; 4] {
        let mut acc = [f32x4_splat(0.0); 4];
        let mut mins = [0f32; 4];
        let mask = u8x16_splat(15);
        for b in 0..d.len() {
            let q = &qs[b * 16..b * 16 + 16];
            // SAFETY: `q` is exactly 16 bytes.
            let qv = unsafe { v128_load(q.as_ptr() as *const v128) };
            let lo = v128_and(qv, mask);
            let hi = u8x16_shr(qv, 4);
            let (l0, l1) = (u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo));
            let (h0, h1) = (u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi));
            for j in 0..4 {
                let x = &xq[j][b * QK..b * QK + QK];
                let s = i32x4_add(dot16(l0, l1, &x[..16]), dot16(h0, h1, &x[16..]));
                acc[j] = f32x4_add(
                    acc[j],
                    f32x4_mul(f32x4_splat(d[b] * xd[j][b]), f32x4_convert_i32x4(s)),
                );
                mins[j] += m[b] * xs[j][b];
            }
        }
        [
            hsum(acc[0]) + mins[0],
            hsum(acc[1]) + mins[1],
            hsum(acc[2]) + mins[2],
            hsum(acc[3]) + mins[3],
        ]
    }

    pub fn dot_q4_1(d: &[f32], m: &[f32], qs: &[u8], xq: &[i16], xd: &[f32], xs: &[f32]) -> f32 {
        let mut acc = f32x4_splat(0.0);
        let mut mins = 0f32;
        let mask = u8x16_splat(15);
        for b in 0..d.len() {
            let q = &qs[b * 16..b * 16 + 16];
            let x = &xq[b * QK..b * QK + QK];
            // SAFETY: `q` is exactly 16 bytes.
            let qv = unsafe { v128_load(q.as_ptr() as *const v128) };
            let lo = v128_and(qv, mask);
            let hi = u8x16_shr(qv, 4);
            let s = i32x4_add(
                dot16(u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo), &x[..16]),
                dot16(u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi), &x[16..]),
            );
            acc = f32x4_add(acc, f32x4_mul(f32x4_splat(d[b] * xd[b]), f32x4_convert_i32x4(s)));
            mins += m[b] * xs[b];
        }
        hsum(acc) + mins
    }

    /// 16 in i16x8 halves plus 16 where bits 0..8 / 8..16 of `h` are set.
    fn with_bits(lo: v128, hi: v128, h: u32) -> (v128, v128) {
        let sel = i16x8(1, 2, 4, 8, 16, 32, 64, 128);
        let sixteen = i16x8_splat(16);
        let bits = |v: u32| {
            let b = i16x8_splat((v & 0xFF) as i16);
            v128_and(i16x8_eq(v128_and(b, sel), sel), sixteen)
        };
        (v128_or(lo, bits(h)), v128_or(hi, bits(h >> 8)))
    }

    pub fn dot_q5(
        d: &[f32],
        m: &[f32],
        qs: &[u8],
        qh: &[u32],
        xq: &[i16],
        xd: &[f32],
        xs: &[f32],
    ) -> f32 {
        let mut acc = f32x4_splat(0.0);
        let mut mins = 0f32;
        let mask = u8x16_splat(15);
        for b in 0..d.len() {
            let q = &qs[b * 16..b * 16 + 16];
            let x = &xq[b * QK..b * QK + QK];
            let h = qh[b];
            // SAFETY: `q` is exactly 16 bytes.
            let qv = unsafe { v128_load(q.as_ptr() as *const v128) };
            let lo = v128_and(qv, mask);
            let hi = u8x16_shr(qv, 4);
            let (l0, l1) = with_bits(u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo), h);
            let (h0, h1) =
                with_bits(u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi), h >> 16);
            let s = i32x4_add(dot16(l0, l1, &x[..16]), dot16(h0, h1, &x[16..]));
            acc = f32x4_add(acc, f32x4_mul(f32x4_splat(d[b] * xd[b]), f32x4_convert_i32x4(s)));
            mins += m[b] * xs[b];
        }
        hsum(acc) + mins
    }

    pub fn dot_q8x16(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
        let mut acc = f32x4_splat(0.0);
        for b in 0..d.len() / 2 {
            let w = &qs[b * QK..b * QK + QK];
            let x = &xq[b * QK..b * QK + QK];
            // SAFETY: `w` is exactly 32 bytes.
            let (w0, w1) = unsafe {
                (v128_load(w.as_ptr() as *const v128), v128_load(w.as_ptr().add(16) as *const v128))
            };
            let s0 = dot16(i16x8_extend_low_i8x16(w0), i16x8_extend_high_i8x16(w0), &x[..16]);
            let s1 = dot16(i16x8_extend_low_i8x16(w1), i16x8_extend_high_i8x16(w1), &x[16..]);
            acc = f32x4_add(
                acc,
                f32x4_add(
                    f32x4_mul(f32x4_splat(d[2 * b] * xd[b]), f32x4_convert_i32x4(s0)),
                    f32x4_mul(f32x4_splat(d[2 * b + 1] * xd[b]), f32x4_convert_i32x4(s1)),
                ),
            );
        }
        hsum(acc)
    }

    pub fn dot_q8_0(d: &[f32], qs: &[i8], xq: &[i16], xd: &[f32]) -> f32 {
        let mut acc = f32x4_splat(0.0);
        for b in 0..d.len() {
            let w = &qs[b * QK..b * QK + QK];
            let x = &xq[b * QK..b * QK + QK];
            // SAFETY: `w` is exactly 32 bytes.
            let (w0, w1) = unsafe {
                (v128_load(w.as_ptr() as *const v128), v128_load(w.as_ptr().add(16) as *const v128))
            };
            let s = i32x4_add(
                dot16(i16x8_extend_low_i8x16(w0), i16x8_extend_high_i8x16(w0), &x[..16]),
                dot16(i16x8_extend_low_i8x16(w1), i16x8_extend_high_i8x16(w1), &x[16..]),
            );
            acc = f32x4_add(acc, f32x4_mul(f32x4_splat(d[b] * xd[b]), f32x4_convert_i32x4(s)));
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::Kernels;

    /// Deterministic pseudo-random values in [-1, 1).
    fn rand(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The activation quantizer (simd128 in wasm) gives the scalar one's codes, scales and sums
    /// bit for bit, ties (x.5), NaN, infinities, zeros and extremes included.
    #[test]
    fn quantizer_equals_the_scalar_one() {
        let mut seed = 0x5eed_u64;
        let mut x: Vec<f32> = rand(&mut seed, 32 * 64).iter().map(|v| v * 7.0).collect();
        // A block whose max makes the scale exactly 1/4096: codes at ties k + 0.5 on both sides.
        for (i, v) in x[32..64].iter_mut().enumerate() {
            *v = (i as f32 - 16.0 + 0.5) / 4096.0;
        }
        x[63] = 32767.0 / 4096.0;
        x[64 + 5] = f32::NAN;
        x[96 + 7] = f32::INFINITY;
        x[128 + 9] = f32::NEG_INFINITY;
        x[160..192].iter_mut().for_each(|v| *v = 0.0);
        x[192 + 1] = -0.0;
        x[224..256]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = if i % 2 == 0 { 1e30 } else { -1e-30 });
        x[256..288].iter_mut().enumerate().for_each(|(i, v)| *v = f32::MIN_POSITIVE * i as f32);
        let got = QAct::quantize(&x, x.len());
        for (b, xb) in x.chunks_exact(QK).enumerate() {
            let mut q = [0i16; QK];
            let (d, sum) = quantize_block(xb, &mut q);
            assert_eq!(&got.qs[b * QK..(b + 1) * QK], &q, "codes of block {b}");
            assert_eq!(got.d[b].to_bits(), d.to_bits(), "scale of block {b}");
            assert_eq!(got.s[b].to_bits(), (d * sum as f32).to_bits(), "sum of block {b}");
        }
    }

    /// Every kernel this machine has against the scalar reference, and the scalar reference
    /// against plain f32 math on the de-quantized weights, on fresh random data.
    #[test]
    fn kernels_match_scalar_and_f32() {
        for k in Kernels::available() {
            check_kernels(k);
        }
    }

    fn check_kernels(k: Kernels) {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut worst = (0f32, String::new());
        for &cols in &[32usize, 64, 576, 1536] {
            let nb = cols / QK;
            let x: Vec<f32> = rand(&mut seed, cols).iter().map(|v| v * 30.0).collect();
            let xq = QAct::quantize(&x, cols);
            let (q, xd, xs) = xq.row(0);
            // Q4_1 weights: random scales, mins and nibbles.
            let d: Vec<f32> = rand(&mut seed, nb).iter().map(|v| v.abs() * 0.1).collect();
            let m: Vec<f32> = rand(&mut seed, nb).iter().map(|v| v * 0.5).collect();
            let qs: Vec<u8> =
                rand(&mut seed, nb * 16).iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
            let mut w = vec![f32::NAN; cols];
            dequant_q4_1(&d, &m, &qs, &mut w);
            let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
            let s = dot_q4_1_scalar(&d, &m, &qs, q, xd, xs);
            let f = (k.q4_1)(&d, &m, &qs, q, xd, xs);
            let scale = w.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum::<f32>();
            for (what, err) in
                [("q4_1 scalar vs f32", (s - exact).abs() / scale), (k.name, (f - s).abs() / scale)]
            {
                if err > worst.0 {
                    worst = (err, format!("{what} at cols {cols}"));
                }
            }
            // Q8_0 weights, including the extreme -128.
            let q8: Vec<i8> = rand(&mut seed, cols)
                .iter()
                .enumerate()
                .map(|(i, v)| if i == 3 { -128 } else { (v * 127.0) as i8 })
                .collect();
            let mut w = vec![f32::NAN; cols];
            dequant_q8_0(&d, &q8, &mut w);
            let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
            let s = dot_q8_0_scalar(&d, &q8, q, xd);
            let f = (k.q8_0)(&d, &q8, q, xd);
            let scale = w.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum::<f32>();
            for (what, err) in
                [("q8_0 scalar vs f32", (s - exact).abs() / scale), (k.name, (f - s).abs() / scale)]
            {
                if err > worst.0 {
                    worst = (err, format!("{what} at cols {cols}"));
                }
            }
            // Q5 weights (5-bit codes) and Q8x16 (two scales per block).
            let qh: Vec<u32> =
                rand(&mut seed, nb).iter().map(|v| v.to_bits() ^ 0x5a5a_a5a5).collect();
            let mut w = vec![f32::NAN; cols];
            dequant_q5(&d, &m, &qs, &qh, &mut w);
            let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
            let s = dot_q5_scalar(&d, &m, &qs, &qh, q, xd, xs);
            let f = (k.q5)(&d, &m, &qs, &qh, q, xd, xs);
            let scale = w.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum::<f32>();
            for (what, err) in
                [("q5 scalar vs f32", (s - exact).abs() / scale), (k.name, (f - s).abs() / scale)]
            {
                if err > worst.0 {
                    worst = (err, format!("{what} at cols {cols}"));
                }
            }
            let d16: Vec<f32> = rand(&mut seed, 2 * nb).iter().map(|v| v * 0.1).collect();
            let mut w = vec![f32::NAN; cols];
            dequant_q8x16(&d16, &q8, &mut w);
            let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
            let s = dot_q8x16_scalar(&d16, &q8, q, xd);
            let f = (k.q8x16)(&d16, &q8, q, xd);
            let scale = w.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum::<f32>();
            for (what, err) in [
                ("q8x16 scalar vs f32", (s - exact).abs() / scale),
                (k.name, (f - s).abs() / scale),
            ] {
                if err > worst.0 {
                    worst = (err, format!("{what} at cols {cols}"));
                }
            }
        }
        println!("kernels {}: max relative error {:.2e} at {}", k.name, worst.0, worst.1);
        // int16 activations: ~1/32767 relative rounding per element.
        assert!(worst.0 < 1e-4, "max relative error {:.2e} at {}", worst.0, worst.1);
    }

    #[test]
    fn zero_block_quantizes_to_zero() {
        let x = vec![0f32; 64];
        let q = QAct::quantize(&x, 64);
        assert!(q.qs.iter().all(|&v| v == 0) && q.d.iter().all(|&d| d == 0.0));
    }
}
