//! AVX-512BW versions of the Q4_1 and Q8_0 dot products (opt-in: `TILLER_KERNELS=avx512`).

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
        let w = _mm512_cvtepi8_epi16(_mm256_loadu_si256(qs.as_ptr().add(b * QK) as *const __m256i));
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
