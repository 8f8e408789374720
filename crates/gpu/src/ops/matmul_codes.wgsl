// Prefill over the code layouts (see matvec_codes.wgsl for the five kinds): y[t, r] =
// sum_c W[r, c] x[t, c] for a tile of 8 activation rows at once. Each thread reads a block's
// words once into registers, then takes its product with each of the tile's rows (the same
// arithmetic as matvec_codes.wgsl), so a weight block is read from memory once per 8 rows
// instead of once per row (as matmul_q4_1.wgsl does for Q4_1). Sixteen output rows a workgroup (x), four threads a row
// striding over its blocks, one tile (y); acc = 1 adds into y.
struct Params { rows: u32, cols: u32, n_tok: u32, acc: u32, kind: u32, words: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wg.x * 16u + lid.x / 4u;
    let lane = lid.x % 4u;
    let t0 = wg.y * T;
    let nt = min(T, p.n_tok - t0);
    let nb = p.cols / 32u;
    var s: array<f32, 8>;
    if (r < p.rows) {
        for (var b = lane; b < nb; b += 4u) {
            let o = (r * nb + b) * p.words;
            // The block's words, read once for the tile.
            var q: array<u32, 16>;
            for (var i = 0u; i < p.words; i++) {
                q[i] = w[o + i];
            }
            for (var t = 0u; t < nt; t++) {
                let xb = (t0 + t) * p.cols + b * 32u;
                if (p.kind >= 3u) {
                    var a = 0.0;
                    for (var i = 0u; i < 16u; i++) {
                        let v = q[i];
                        var pair = vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
                        if (p.kind == 3u) {
                            pair = unpack2x16float(v);
                        }
                        a += pair.x * x[xb + 2u * i] + pair.y * x[xb + 2u * i + 1u];
                    }
                    s[t] += a;
                } else if (p.kind == 2u) {
                    var a0 = 0.0;
                    var a1 = 0.0;
                    for (var i = 0u; i < 4u; i++) {
                        let w0 = q[2u + i];
                        let w1 = q[6u + i];
                        for (var k = 0u; k < 4u; k++) {
                            let sh = 24u - 8u * k;
                            a0 += f32((i32(w0 << sh)) >> 24u) * x[xb + 4u * i + k];
                            a1 += f32((i32(w1 << sh)) >> 24u) * x[xb + 16u + 4u * i + k];
                        }
                    }
                    s[t] += bitcast<f32>(q[0]) * a0 + bitcast<f32>(q[1]) * a1;
                } else {
                    var h = 0u;
                    var q0 = 2u;
                    if (p.kind == 1u) {
                        h = q[2];
                        q0 = 3u;
                    }
                    var acc = 0.0;
                    var xs = 0.0;
                    for (var i = 0u; i < 4u; i++) {
                        let word = q[q0 + i];
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
                    s[t] += bitcast<f32>(q[0]) * acc + bitcast<f32>(q[1]) * xs;
                }
            }
        }
    }
    // The tile's sums into y (tile_out.wgsl, appended).
    tile_out(s, lid.x, r, t0, nt);
}
