//! Which kernels the CPU backend runs: one explicit choice per backend, made at construction
//! from the CPU's features (AVX2+FMA by default; AVX-512 on request, since it measured no faster
//! here: AMD EPYC runs 512-bit ops in two halves), simd128 in wasm, scalar otherwise.
//! `TILLER_KERNELS=scalar|avx2|avx512` forces a set natively.

use super::attention::{self, Attend};
use super::quant::{self, DotQ4_1, DotQ4_1x4, DotQ5, DotQ8_0, DotQ8_0x4, DotQ8x16};
use super::vecops::{self, Axpy, Dot};

#[derive(Clone, Copy)]
pub struct Kernels {
    pub q4_1: DotQ4_1,
    /// Four activation rows at once (prefill), where the set has it.
    pub q4_1x4: Option<DotQ4_1x4>,
    pub q8_0: DotQ8_0,
    /// Four activation rows at once, where the set has it.
    pub q8_0x4: Option<DotQ8_0x4>,
    pub q5: DotQ5,
    pub q8x16: DotQ8x16,
    pub dot_f32: Dot,
    pub axpy_f32: Axpy,
    /// Attention for one (row, head), with this set's dot and axpy inlined.
    pub attend: Attend,
    pub name: &'static str,
}

impl Kernels {
    pub fn scalar() -> Self {
        Kernels {
            q4_1: quant::dot_q4_1_scalar,
            q4_1x4: None,
            q8_0: quant::dot_q8_0_scalar,
            q8_0x4: None,
            q5: quant::dot_q5_scalar,
            q8x16: quant::dot_q8x16_scalar,
            dot_f32: vecops::dot_portable,
            axpy_f32: vecops::axpy_portable,
            attend: attention::attend_portable,
            name: "scalar",
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn avx2() -> Option<Self> {
        let ok = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        ok.then_some(Kernels {
            q4_1: quant::avx2::dot_q4_1,
            q4_1x4: None,
            q8_0: quant::avx2::dot_q8_0,
            q8_0x4: None,
            q5: quant::avx2::dot_q5,
            q8x16: quant::avx2::dot_q8x16,
            dot_f32: vecops::avx2::dot,
            axpy_f32: vecops::avx2::axpy,
            attend: vecops::avx2::attend,
            name: "avx2",
        })
    }

    #[cfg(target_arch = "x86_64")]
    fn avx512() -> Option<Self> {
        let ok = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw");
        // Every AVX-512 CPU has AVX2 and FMA for the f32 ops (and the Q5 and Q8x16 kernels).
        Self::avx2().filter(|_| ok).map(|a| Kernels {
            q4_1: quant::avx512::dot_q4_1,
            q8_0: quant::avx512::dot_q8_0,
            name: "avx512",
            ..a
        })
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn simd128() -> Option<Self> {
        Some(Kernels {
            q4_1: quant::simd128::dot_q4_1,
            q4_1x4: Some(quant::simd128::dot_q4_1_x4),
            q8_0: quant::simd128::dot_q8_0,
            q8_0x4: Some(quant::simd128::dot_q8_0_x4),
            q5: quant::simd128::dot_q5,
            q8x16: quant::simd128::dot_q8x16,
            dot_f32: vecops::simd128::dot,
            axpy_f32: vecops::simd128::axpy,
            attend: vecops::simd128::attend,
            name: "simd128",
        })
    }

    /// Every kernel set this machine can run, scalar first (for tests).
    pub fn available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut v = vec![Self::scalar()];
        #[cfg(target_arch = "x86_64")]
        v.extend(Self::avx2().into_iter().chain(Self::avx512()));
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        v.extend(Self::simd128());
        v
    }

    /// The set this machine should run.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let forced = std::env::var("TILLER_KERNELS").ok();
            match forced.as_deref() {
                Some("scalar") => return Self::scalar(),
                Some("avx512") => {
                    return Self::avx512().or_else(Self::avx2).unwrap_or_else(Self::scalar)
                }
                _ => return Self::avx2().unwrap_or_else(Self::scalar),
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return Self::simd128().unwrap_or_else(Self::scalar);
        #[allow(unreachable_code)]
        Self::scalar()
    }
}
