//! simd128 (wasm) versions of the quantized dot products and the activation quantizer.

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
        let away =
            v128_and(f32x4_ge(f32x4_abs(f32x4_sub(y, t)), half), v128_or(one, v128_and(y, sign)));
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

/// Lane `j` of `v` in every lane.
#[inline(always)]
fn lane(v: v128, j: usize) -> v128 {
    match j {
        0 => i32x4_shuffle::<0, 0, 0, 0>(v, v),
        1 => i32x4_shuffle::<1, 1, 1, 1>(v, v),
        2 => i32x4_shuffle::<2, 2, 2, 2>(v, v),
        _ => i32x4_shuffle::<3, 3, 3, 3>(v, v),
    }
}

/// Four f32 at `v[at..at + 4]`.
#[inline(always)]
fn load4(v: &[f32], at: usize) -> v128 {
    assert!(at + 4 <= v.len());
    // SAFETY: bounds checked above (unaligned load).
    unsafe { v128_load(v.as_ptr().add(at) as *const v128) }
}

/// [`dot_q4_1`] for four activation rows: the same operations per row, in the same order
/// (so the same results), with each block's codes loaded and widened once, and the four rows'
/// scales and sums (interleaved, `xd4`/`xs4`) multiplied as one vector each.
pub fn dot_q4_1_x4(
    d: &[f32],
    m: &[f32],
    qs: &[u8],
    xq: [&[i16]; 4],
    xd4: &[f32],
    xs4: &[f32],
) -> [f32; 4] {
    let nb = d.len();
    assert!(m.len() >= nb && qs.len() >= nb * 16 && xd4.len() >= 4 * nb && xs4.len() >= 4 * nb);
    assert!(xq.iter().all(|x| x.len() >= nb * QK));
    let mut acc = [f32x4_splat(0.0); 4];
    // Lane j: row j's sum of m * xs, block by block as the one-row kernel adds them.
    let mut mins = f32x4_splat(0.0);
    let mask = u8x16_splat(15);
    for b in 0..nb {
        let q = &qs[b * 16..b * 16 + 16];
        // SAFETY: `q` is exactly 16 bytes.
        let qv = unsafe { v128_load(q.as_ptr() as *const v128) };
        let lo = v128_and(qv, mask);
        let hi = u8x16_shr(qv, 4);
        let (l0, l1) = (u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo));
        let (h0, h1) = (u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi));
        // Lane j: d * xd of row j (the one-row kernel's product).
        let scale = f32x4_mul(f32x4_splat(d[b]), load4(xd4, 4 * b));
        mins = f32x4_add(mins, f32x4_mul(f32x4_splat(m[b]), load4(xs4, 4 * b)));
        for j in 0..4 {
            let x = &xq[j][b * QK..b * QK + QK];
            let s = i32x4_add(dot16(l0, l1, &x[..16]), dot16(h0, h1, &x[16..]));
            acc[j] = f32x4_add(acc[j], f32x4_mul(lane(scale, j), f32x4_convert_i32x4(s)));
        }
    }
    [
        hsum(acc[0]) + f32x4_extract_lane::<0>(mins),
        hsum(acc[1]) + f32x4_extract_lane::<1>(mins),
        hsum(acc[2]) + f32x4_extract_lane::<2>(mins),
        hsum(acc[3]) + f32x4_extract_lane::<3>(mins),
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
        let (h0, h1) = with_bits(u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi), h >> 16);
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

/// [`dot_q8_0`] for four activation rows: the same operations per row, in the same order (so
/// the same results), with each block's codes loaded and widened once and the four rows'
/// scales (interleaved, `xd4`) multiplied as one vector.
pub fn dot_q8_0_x4(d: &[f32], qs: &[i8], xq: [&[i16]; 4], xd4: &[f32]) -> [f32; 4] {
    let nb = d.len();
    assert!(qs.len() >= nb * QK && xd4.len() >= 4 * nb);
    assert!(xq.iter().all(|x| x.len() >= nb * QK));
    let mut acc = [f32x4_splat(0.0); 4];
    for b in 0..nb {
        let w = &qs[b * QK..b * QK + QK];
        // SAFETY: `w` is exactly 32 bytes.
        let (w0, w1) = unsafe {
            (v128_load(w.as_ptr() as *const v128), v128_load(w.as_ptr().add(16) as *const v128))
        };
        let (l0, h0) = (i16x8_extend_low_i8x16(w0), i16x8_extend_high_i8x16(w0));
        let (l1, h1) = (i16x8_extend_low_i8x16(w1), i16x8_extend_high_i8x16(w1));
        let scale = f32x4_mul(f32x4_splat(d[b]), load4(xd4, 4 * b));
        for j in 0..4 {
            let x = &xq[j][b * QK..b * QK + QK];
            let s = i32x4_add(dot16(l0, h0, &x[..16]), dot16(l1, h1, &x[16..]));
            acc[j] = f32x4_add(acc[j], f32x4_mul(lane(scale, j), f32x4_convert_i32x4(s)));
        }
    }
    [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
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
