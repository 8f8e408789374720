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
    pub fn attend(h: &crate::cpu::attention::Head, o: &mut [f32]) {
        crate::cpu::attention::attend_with(dot, axpy, h, o)
    }
}

/// The portable loops written with simd128, bit for bit the same (the same eight lanes, the
/// same sums in the same order: wasm has no fused multiply-add to contract them into), and
/// inlined into attention's loops.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) mod simd128 {
    use std::arch::wasm32::*;

    #[inline(always)]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let n8 = n - n % 8;
        let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        while i < n8 {
            // SAFETY: i + 8 <= n8 <= both lengths (unaligned loads).
            unsafe {
                let (a0, a1) =
                    (v128_load(pa.add(i) as *const v128), v128_load(pa.add(i + 4) as *const v128));
                let (b0, b1) =
                    (v128_load(pb.add(i) as *const v128), v128_load(pb.add(i + 4) as *const v128));
                lo = f32x4_add(lo, f32x4_mul(a0, b0));
                hi = f32x4_add(hi, f32x4_mul(a1, b1));
            }
            i += 8;
        }
        let acc = [
            f32x4_extract_lane::<0>(lo),
            f32x4_extract_lane::<1>(lo),
            f32x4_extract_lane::<2>(lo),
            f32x4_extract_lane::<3>(lo),
            f32x4_extract_lane::<0>(hi),
            f32x4_extract_lane::<1>(hi),
            f32x4_extract_lane::<2>(hi),
            f32x4_extract_lane::<3>(hi),
        ];
        acc.iter().sum::<f32>() + a[n8..n].iter().zip(&b[n8..n]).map(|(x, y)| x * y).sum::<f32>()
    }

    #[inline(always)]
    pub fn axpy(w: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let n4 = n - n % 4;
        let wv = f32x4_splat(w);
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let mut i = 0;
        while i < n4 {
            // SAFETY: i + 4 <= n4 <= both lengths (unaligned loads and stores).
            unsafe {
                let p = py.add(i) as *mut v128;
                v128_store(
                    p,
                    f32x4_add(v128_load(p), f32x4_mul(wv, v128_load(px.add(i) as *const v128))),
                );
            }
            i += 4;
        }
        for (a, b) in y[n4..n].iter_mut().zip(&x[n4..n]) {
            *a += w * b;
        }
    }

    /// [`f32x4`] lanes summed as `(l0 + l2) + (l1 + l3)`, four vectors at once.
    #[inline(always)]
    fn reduce4(a: v128, b: v128, c: v128, d: v128) -> v128 {
        let ab = f32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a, b), i32x4_shuffle::<2, 6, 3, 7>(a, b));
        let cd = f32x4_add(i32x4_shuffle::<0, 4, 1, 5>(c, d), i32x4_shuffle::<2, 6, 3, 7>(c, d));
        f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd))
    }

    /// Attention for one (row, head). Scores four keys at a time (four independent sums per
    /// lane, reduced together: a dot product's serial lane sum cost more than its products),
    /// each key's score the same whether it falls in a group of four or in the rest. Heads
    /// whose width is not a multiple of 4 take the portable loops.
    pub fn attend(h: &crate::cpu::attention::Head, o: &mut [f32]) {
        let hd = h.q.len();
        if !hd.is_multiple_of(4) {
            return crate::cpu::attention::attend_with(dot, axpy, h, o);
        }
        let (w, k, v) = (h.cache.width, &h.cache.k, &h.cache.v);
        let n = h.last + 1 - h.first;
        assert!(h.off + hd <= w && (h.last + 1) * w <= k.len().min(v.len()) && o.len() >= hd);
        let mut sc = vec![0f32; n];
        let (q, kp) = (h.q.as_ptr(), k.as_ptr());
        let scale = f32x4_splat(h.scale);
        // SAFETY (loads below): key rows first..=last lie in `k` (asserted), columns
        // off..off + hd in a row; c + 4 <= hd.
        let row = |j: usize| unsafe { kp.add(j * w + h.off) };
        let mut i = 0;
        while i + 4 <= n {
            let r: [*const f32; 4] = std::array::from_fn(|t| row(h.first + i + t));
            let mut acc = [f32x4_splat(0.0); 4];
            for c in (0..hd).step_by(4) {
                let qv = unsafe { v128_load(q.add(c) as *const v128) };
                for t in 0..4 {
                    let kv = unsafe { v128_load(r[t].add(c) as *const v128) };
                    acc[t] = f32x4_add(acc[t], f32x4_mul(qv, kv));
                }
            }
            let s4 = f32x4_mul(reduce4(acc[0], acc[1], acc[2], acc[3]), scale);
            // SAFETY: i + 4 <= n = sc.len().
            unsafe { v128_store(sc.as_mut_ptr().add(i) as *mut v128, s4) };
            i += 4;
        }
        while i < n {
            let r = row(h.first + i);
            let mut acc = f32x4_splat(0.0);
            for c in (0..hd).step_by(4) {
                let (qv, kv) = unsafe {
                    (v128_load(q.add(c) as *const v128), v128_load(r.add(c) as *const v128))
                };
                acc = f32x4_add(acc, f32x4_mul(qv, kv));
            }
            sc[i] = f32x4_extract_lane::<0>(f32x4_mul(reduce4(acc, acc, acc, acc), scale));
            i += 1;
        }
        crate::cpu::attention::weigh_values(axpy, h, &mut sc, o);
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
                // simd128 is the portable loop written out: the same bits.
                if k.name == "simd128" {
                    assert_eq!(d.to_bits(), p.to_bits(), "simd128 dot n={n}");
                }
                let (mut y1, mut y2) = (b.clone(), b.clone());
                (k.axpy_f32)(0.37, &a, &mut y1);
                super::axpy_portable(0.37, &a, &mut y2);
                let e = y1.iter().zip(&y2).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(e < 1e-5, "{} axpy n={n}: max diff {e}", k.name);
                if k.name == "simd128" {
                    assert_eq!(y1, y2, "simd128 axpy n={n}");
                }
            }
        }
    }
}
