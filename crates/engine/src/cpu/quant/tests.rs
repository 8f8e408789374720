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
        let qh: Vec<u32> = rand(&mut seed, nb).iter().map(|v| v.to_bits() ^ 0x5a5a_a5a5).collect();
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
        for (what, err) in
            [("q8x16 scalar vs f32", (s - exact).abs() / scale), (k.name, (f - s).abs() / scale)]
        {
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
