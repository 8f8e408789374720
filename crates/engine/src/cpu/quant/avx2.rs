//! AVX2 (+FMA) versions of the quantized dot products.

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
        let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(qs.as_ptr().add(b * QK) as *const __m128i));
        let w1 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(qs.as_ptr().add(b * QK + 16) as *const __m128i));
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
        let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(qs.as_ptr().add(b * QK) as *const __m128i));
        let w1 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(qs.as_ptr().add(b * QK + 16) as *const __m128i));
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
