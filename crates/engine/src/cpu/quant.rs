//! Quantized blocks and the kernels that read them.
//!
//! Formats (ggml): Q4_1 blocks of 32 weights = f16 scale d, f16 min m, 16 bytes of nibbles;
//! weight j = d * (qs[j] & 15) + m and weight j + 16 = d * (qs[j] >> 4) + m. Q8_0 blocks of
//! 32 = f16 scale d, 32 signed bytes; weight j = d * qs[j]. Scales are widened to f32 at load.
//!
//! Activations are quantized per 32-block to int8 with scale dx = max|x| / 127 and the block
//! sum sx = dx * sum(q) (ggml's Q8_1), so that a Q4_1 block dot product is
//! `dw * dx * sum(nib * q) + m * sx`, exactly llama.cpp's q4_1 x q8_1 scheme.
//!
//! Each dot product has a scalar reference and an AVX2 version chosen once at run time;
//! in wasm, simd128 when the build enables it.

pub const QK: usize = 32;

/// A row-major quantized activation matrix (`rows` x `cols`, cols a multiple of 32).
pub struct Q8Act {
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    pub cols: usize,
}

impl Q8Act {
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        let nb = x.len() / QK;
        let mut qs = vec![0i8; x.len()];
        let mut d = vec![0f32; nb];
        let mut s = vec![0f32; nb];
        for b in 0..nb {
            let xb = &x[b * QK..(b + 1) * QK];
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let db = amax / 127.0;
            let id = if db > 0.0 { 1.0 / db } else { 0.0 };
            let mut sum = 0i32;
            for (q, v) in qs[b * QK..(b + 1) * QK].iter_mut().zip(xb) {
                let r = (v * id).round() as i32;
                *q = r.clamp(-127, 127) as i8;
                sum += *q as i32;
            }
            d[b] = db;
            s[b] = db * sum as f32;
        }
        Q8Act { qs, d, s, cols }
    }
    pub fn rows(&self) -> usize {
        self.qs.len() / self.cols
    }
    /// (qs, d, s) of one row.
    pub fn row(&self, r: usize) -> (&[i8], &[f32], &[f32]) {
        let nb = self.cols / QK;
        (
            &self.qs[r * self.cols..(r + 1) * self.cols],
            &self.d[r * nb..(r + 1) * nb],
            &self.s[r * nb..(r + 1) * nb],
        )
    }
}

/// Q4_1 row dot a quantized activation row.
pub type DotQ4_1 = fn(d: &[f32], m: &[f32], qs: &[u8], xq: &[i8], xd: &[f32], xs: &[f32]) -> f32;
/// Q8_0 row dot a quantized activation row.
pub type DotQ8_0 = fn(d: &[f32], qs: &[i8], xq: &[i8], xd: &[f32]) -> f32;

pub fn dot_q4_1_scalar(d: &[f32], m: &[f32], qs: &[u8], xq: &[i8], xd: &[f32], xs: &[f32]) -> f32 {
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

pub fn dot_q8_0_scalar(d: &[f32], qs: &[i8], xq: &[i8], xd: &[f32]) -> f32 {
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
mod avx2 {
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

    #[target_feature(enable = "avx2,fma")]
    unsafe fn q4_1(d: &[f32], m: &[f32], qs: &[u8], xq: &[i8], xd: &[f32], xs: &[f32]) -> f32 {
        let nb = d.len();
        debug_assert!(
            qs.len() >= nb * 16 && xq.len() >= nb * QK && xd.len() >= nb && xs.len() >= nb
        );
        let mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut mins = 0f32;
        let qp = qs.as_ptr();
        let xp = xq.as_ptr();
        let mut b = 0;
        while b + 1 < nb {
            for (k, acc) in [(0usize, &mut acc0), (1usize, &mut acc1)] {
                let bb = b + k;
                let q = _mm_loadu_si128(qp.add(bb * 16) as *const __m128i);
                let w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), mask);
                let x = _mm256_loadu_si256(xp.add(bb * QK) as *const __m256i);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
                *acc = _mm256_fmadd_ps(
                    _mm256_set1_ps(*d.get_unchecked(bb) * *xd.get_unchecked(bb)),
                    _mm256_cvtepi32_ps(p),
                    *acc,
                );
                mins += *m.get_unchecked(bb) * *xs.get_unchecked(bb);
            }
            b += 2;
        }
        if b < nb {
            let q = _mm_loadu_si128(qp.add(b * 16) as *const __m128i);
            let w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), mask);
            let x = _mm256_loadu_si256(xp.add(b * QK) as *const __m256i);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d[b] * xd[b]), _mm256_cvtepi32_ps(p), acc0);
            mins += m[b] * xs[b];
        }
        hsum(_mm256_add_ps(acc0, acc1)) + mins
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn q8_0(d: &[f32], qs: &[i8], xq: &[i8], xd: &[f32]) -> f32 {
        let nb = d.len();
        debug_assert!(qs.len() >= nb * QK && xq.len() >= nb * QK && xd.len() >= nb);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let w = _mm256_loadu_si256(qs.as_ptr().add(b * QK) as *const __m256i);
            let x = _mm256_loadu_si256(xq.as_ptr().add(b * QK) as *const __m256i);
            let aw = _mm256_sign_epi8(w, w);
            let sx = _mm256_sign_epi8(x, w);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
            acc = _mm256_fmadd_ps(
                _mm256_set1_ps(*d.get_unchecked(b) * *xd.get_unchecked(b)),
                _mm256_cvtepi32_ps(p),
                acc,
            );
        }
        hsum(acc)
    }

    pub fn dot_q4_1(d: &[f32], m: &[f32], qs: &[u8], xq: &[i8], xd: &[f32], xs: &[f32]) -> f32 {
        assert!(
            qs.len() >= d.len() * 16
                && xq.len() >= d.len() * QK
                && xd.len() >= d.len()
                && xs.len() >= d.len()
                && m.len() >= d.len()
        );
        // SAFETY: chosen only after `is_x86_feature_detected!("avx2")` and "fma"; bounds asserted above.
        unsafe { q4_1(d, m, qs, xq, xd, xs) }
    }
    pub fn dot_q8_0(d: &[f32], qs: &[i8], xq: &[i8], xd: &[f32]) -> f32 {
        assert!(qs.len() >= d.len() * QK && xq.len() >= d.len() * QK && xd.len() >= d.len());
        // SAFETY: as above.
        unsafe { q8_0(d, qs, xq, xd) }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use super::QK;
    use std::arch::wasm32::*;

    fn hsum(v: v128) -> f32 {
        f32x4_extract_lane::<0>(v)
            + f32x4_extract_lane::<1>(v)
            + f32x4_extract_lane::<2>(v)
            + f32x4_extract_lane::<3>(v)
    }

    /// i32x4 partial sums of 16 u8 weights (as i16) times 16 i8 activations.
    #[inline(always)]
    fn dot16(w: v128, x: v128) -> v128 {
        let wl = u16x8_extend_low_u8x16(w);
        let wh = u16x8_extend_high_u8x16(w);
        let xl = i16x8_extend_low_i8x16(x);
        let xh = i16x8_extend_high_i8x16(x);
        i32x4_add(i32x4_dot_i16x8(wl, xl), i32x4_dot_i16x8(wh, xh))
    }
    #[inline(always)]
    fn dot16s(w: v128, x: v128) -> v128 {
        let wl = i16x8_extend_low_i8x16(w);
        let wh = i16x8_extend_high_i8x16(w);
        let xl = i16x8_extend_low_i8x16(x);
        let xh = i16x8_extend_high_i8x16(x);
        i32x4_add(i32x4_dot_i16x8(wl, xl), i32x4_dot_i16x8(wh, xh))
    }

    pub fn dot_q4_1(d: &[f32], m: &[f32], qs: &[u8], xq: &[i8], xd: &[f32], xs: &[f32]) -> f32 {
        let mut acc = f32x4_splat(0.0);
        let mut mins = 0f32;
        let mask = u8x16_splat(15);
        for b in 0..d.len() {
            let q = &qs[b * 16..b * 16 + 16];
            let x = &xq[b * QK..b * QK + QK];
            // SAFETY: the slices above are exactly 16 and 32 bytes long.
            let (qv, x0, x1) = unsafe {
                (
                    v128_load(q.as_ptr() as *const v128),
                    v128_load(x.as_ptr() as *const v128),
                    v128_load(x.as_ptr().add(16) as *const v128),
                )
            };
            let lo = v128_and(qv, mask);
            let hi = u8x16_shr(qv, 4);
            let s = i32x4_add(dot16(lo, x0), dot16(hi, x1));
            acc = f32x4_add(
                acc,
                f32x4_mul(f32x4_splat(d[b] * xd[b]), f32x4_convert_i32x4(s)),
            );
            mins += m[b] * xs[b];
        }
        hsum(acc) + mins
    }

    pub fn dot_q8_0(d: &[f32], qs: &[i8], xq: &[i8], xd: &[f32]) -> f32 {
        let mut acc = f32x4_splat(0.0);
        for b in 0..d.len() {
            let w = &qs[b * QK..b * QK + QK];
            let x = &xq[b * QK..b * QK + QK];
            // SAFETY: both slices are exactly 32 bytes long.
            let (w0, w1, x0, x1) = unsafe {
                (
                    v128_load(w.as_ptr() as *const v128),
                    v128_load(w.as_ptr().add(16) as *const v128),
                    v128_load(x.as_ptr() as *const v128),
                    v128_load(x.as_ptr().add(16) as *const v128),
                )
            };
            let s = i32x4_add(dot16s(w0, x0), dot16s(w1, x1));
            acc = f32x4_add(
                acc,
                f32x4_mul(f32x4_splat(d[b] * xd[b]), f32x4_convert_i32x4(s)),
            );
        }
        hsum(acc)
    }
}

/// The kernels this machine runs, chosen once.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub q4_1: DotQ4_1,
    pub q8_0: DotQ8_0,
    pub name: &'static str,
}

impl Kernels {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernels {
                    q4_1: avx2::dot_q4_1,
                    q8_0: avx2::dot_q8_0,
                    name: "avx2",
                };
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            return Kernels {
                q4_1: simd128::dot_q4_1,
                q8_0: simd128::dot_q8_0,
                name: "simd128",
            };
        }
        #[allow(unreachable_code)]
        Self::scalar()
    }
    pub fn scalar() -> Self {
        Kernels {
            q4_1: dot_q4_1_scalar,
            q8_0: dot_q8_0_scalar,
            name: "scalar",
        }
    }
}
