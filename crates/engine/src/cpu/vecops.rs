//! f32 vector primitives for attention (q.k and weighted sums of v): AVX2+FMA, and portable
//! loops (simd128 auto-vectorised in wasm). [`super::kernels::Kernels`] picks one.

/// `a . b`
pub type Dot = fn(&[f32], &[f32]) -> f32;
/// `y += w * x`
pub type Axpy = fn(f32, &[f32], &mut [f32]);

pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent lanes so the compiler vectorizes it.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

pub fn axpy_portable(w: f32, x: &[f32], y: &mut [f32]) {
    for (a, b) in y.iter_mut().zip(x) {
        *a += w * b;
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            s0 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
                s0,
            );
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                s1,
            );
            i += 16;
        }
        let s = _mm256_add_ps(s0, s1);
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        let mut r = _mm_cvtss_f32(h);
        while i < n {
            r += a[i] * b[i];
            i += 1;
        }
        r
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn axpy_impl(w: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            let p = y.as_mut_ptr().add(i);
            _mm256_storeu_ps(
                p,
                _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p)),
            );
            i += 8;
        }
        while i < n {
            y[i] += w * x[i];
            i += 1;
        }
    }

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: selected only when avx2 and fma are detected; every access is below min(len).
        unsafe { dot_impl(a, b) }
    }
    pub fn axpy(w: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: as above.
        unsafe { axpy_impl(w, x, y) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kernel_set_matches_portable() {
        for k in crate::cpu::kernels::Kernels::available() {
            for n in [1usize, 7, 8, 16, 63, 64, 100] {
                let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3).collect();
                let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.7).collect();
                let (d, p) = ((k.dot_f32)(&a, &b), super::dot_portable(&a, &b));
                assert!((d - p).abs() <= 1e-4 * (1.0 + p.abs()), "{} n={n}: {d} vs {p}", k.name);
                let (mut y1, mut y2) = (b.clone(), b.clone());
                (k.axpy_f32)(0.37, &a, &mut y1);
                super::axpy_portable(0.37, &a, &mut y2);
                let e = y1.iter().zip(&y2).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(e < 1e-5, "{} axpy n={n}: max diff {e}", k.name);
            }
        }
    }
}
