// y[t, r] = sum_c W[r, c] x[t, c] with W as integer codes and f32 scales in word-aligned blocks
// of 32 weights, the layouts the CPU backend keeps (tiller_engine::cpu::layout), so a weight has
// exactly the value ggml gives it:
//   kind 0 (Q4: Q4_0, Q4_K), 6 words: d, m, 4 words of nibbles; w = d q + m, byte j holding
//     codes j (low nibble) and j + 16 (high);
//   kind 1 (Q5: Q5_0, Q5_1, Q5_K), 7 words: d, m, the 32 high bits, 4 words of nibbles;
//     code j = nibble | bit j << 4;
//   kind 2 (Q8x16: Q6_K), 10 words: a scale for codes 0..16, one for 16..32, 8 words of
//     signed bytes; w = d q;
//   kind 3 (F16) and 4 (BF16), 16 words: the half floats as stored, two a word (no shader-f16
//     needed: unpack2x16float, or the bits shifted into an f32).
// Sixteen rows a workgroup, four threads a row, as the other matvec kernels.
struct Params { rows: u32, cols: u32, n_tok: u32, acc: u32, kind: u32, words: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wg.x * 16u + lid.x / 4u;
    let lane = lid.x % 4u;
    let t = wg.y;
    let nb = p.cols / 32u;
    var s = 0.0;
    if (r < p.rows) {
        for (var b = lane; b < nb; b += 4u) {
            let o = (r * nb + b) * p.words;
            let xb = t * p.cols + b * 32u;
            if (p.kind >= 3u) {
                var a = 0.0;
                for (var i = 0u; i < 16u; i++) {
                    let v = w[o + i];
                    var pair = vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
                    if (p.kind == 3u) {
                        pair = unpack2x16float(v);
                    }
                    a += pair.x * x[xb + 2u * i] + pair.y * x[xb + 2u * i + 1u];
                }
                s += a;
            } else if (p.kind == 2u) {
                var a0 = 0.0;
                var a1 = 0.0;
                for (var i = 0u; i < 4u; i++) {
                    let w0 = w[o + 2u + i];
                    let w1 = w[o + 6u + i];
                    for (var k = 0u; k < 4u; k++) {
                        let sh = 24u - 8u * k;
                        a0 += f32((i32(w0 << sh)) >> 24u) * x[xb + 4u * i + k];
                        a1 += f32((i32(w1 << sh)) >> 24u) * x[xb + 16u + 4u * i + k];
                    }
                }
                s += bitcast<f32>(w[o]) * a0 + bitcast<f32>(w[o + 1u]) * a1;
            } else {
                var h = 0u;
                var q0 = o + 2u;
                if (p.kind == 1u) {
                    h = w[o + 2u];
                    q0 = o + 3u;
                }
                var acc = 0.0;
                var xs = 0.0;
                for (var i = 0u; i < 4u; i++) {
                    let word = w[q0 + i];
                    for (var k = 0u; k < 4u; k++) {
                        let j = 4u * i + k;
                        let byte = (word >> (8u * k)) & 0xffu;
                        let lo = (byte & 15u) | (((h >> j) & 1u) << 4u);
                        let hi = (byte >> 4u) | (((h >> (j + 16u)) & 1u) << 4u);
                        let xl = x[xb + j];
                        let xh = x[xb + j + 16u];
                        acc += f32(lo) * xl + f32(hi) * xh;
                        xs += xl + xh;
                    }
                }
                s += bitcast<f32>(w[o]) * acc + bitcast<f32>(w[o + 1u]) * xs;
            }
        }
    }
    // The row's four partial sums (row_sum.wgsl or row_sum_subgroup.wgsl, appended).
    let total = row_sum(s, lid.x);
    if (lane == 0u && r < p.rows) {
        let i = t * p.rows + r;
        if (p.acc == 1u) {
            y[i] += total;
        } else {
            y[i] = total;
        }
    }
}
