// Prefill: y[t, r] = sum_c W[r, c] x[t, c] for a tile of 8 activation rows at once, W in GGUF
// Q8_0 blocks as stored (see matvec_q8_0.wgsl: 34 bytes, f16 scale then 32 signed bytes, not
// word aligned). Each thread reads a block's scale and codes once into registers, then takes
// its product with each of the tile's rows in matvec_q8_0.wgsl's order, so every row's result
// is the matrix-vector kernel's, while a weight block is read once per 8 rows. Sixteen output
// rows a workgroup (x), four threads a row striding over its blocks, one tile (y); acc = 1 adds
// into y.
struct Params { rows: u32, cols: u32, n_tok: u32, acc: u32 }
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
            let o = (r * nb + b) * 34u;
            let pair = unpack2x16float(w[o >> 2u]);
            var d = pair.x;
            if ((o & 3u) == 2u) {
                d = pair.y;
            }
            // The 32 codes start 2 bytes in: at a word boundary, or 2 bytes past one (then
            // each code word is the high half of one word and the low half of the next).
            let c0 = o + 2u;
            let wi = c0 >> 2u;
            let sh = (c0 & 3u) * 8u;
            var q: array<f32, 32>;
            for (var k = 0u; k < 8u; k++) {
                var v = w[wi + k];
                if (sh != 0u) {
                    v = (v >> sh) | (w[wi + k + 1u] << (32u - sh));
                }
                for (var j = 0u; j < 4u; j++) {
                    q[4u * k + j] = f32((i32(v << (24u - 8u * j))) >> 24u);
                }
            }
            for (var t = 0u; t < nt; t++) {
                let xb = (t0 + t) * p.cols + b * 32u;
                var acc = 0.0;
                for (var i = 0u; i < 32u; i++) {
                    acc += q[i] * x[xb + i];
                }
                s[t] += d * acc;
            }
        }
    }
    // The tile's sums into y (tile_out.wgsl, appended).
    tile_out(s, lid.x, r, t0, nt);
}
