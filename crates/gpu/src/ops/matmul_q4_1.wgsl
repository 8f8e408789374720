// Prefill: y[t, r] = sum_c W[r, c] x[t, c] for a tile of 8 activation rows at once, W in GGUF
// Q4_1 blocks as stored (see matvec_q4_1.wgsl): each weight block is read once per tile
// instead of once per row. Sixteen output rows a workgroup (x), four threads a row striding
// over its blocks, one tile of 8 activation rows (y); acc = 1 adds into y.
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
            let o = (r * nb + b) * 5u;
            let dm = unpack2x16float(w[o]);
            let q = array<u32, 4>(w[o + 1u], w[o + 2u], w[o + 3u], w[o + 4u]);
            for (var t = 0u; t < nt; t++) {
                let xb = (t0 + t) * p.cols + b * 32u;
                var acc = 0.0;
                var xs = 0.0;
                for (var k = 0u; k < 4u; k++) {
                    for (var j = 0u; j < 4u; j++) {
                        let byte = (q[k] >> (8u * j)) & 0xffu;
                        let i = k * 4u + j;
                        let x0 = x[xb + i];
                        let x1 = x[xb + i + 16u];
                        acc += f32(byte & 0xfu) * x0 + f32(byte >> 4u) * x1;
                        xs += x0 + x1;
                    }
                }
                s[t] += dm.x * acc + dm.y * xs;
            }
        }
    }
    // The tile's sums into y (tile_out.wgsl, appended).
    tile_out(s, lid.x, r, t0, nt);
}
