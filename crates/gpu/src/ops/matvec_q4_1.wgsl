// y[t, r] = sum_c W[r, c] x[t, c] with W in GGUF Q4_1 blocks read as stored: 32 weights a block,
// 20 bytes = 5 words: f16 scale d and f16 minimum m (word 0, unpacked without shader-f16), then
// 16 bytes of nibbles, byte j holding weight j (low) and weight j + 16 (high); w = d q + m.
// Sixteen output rows a workgroup (x), one activation row (y); a row's 4 threads stride over
// its blocks.
// acc = 1: y += W x (the residual add fused into the product).
struct Params { rows: u32, cols: u32, n_tok: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // Sixteen rows a workgroup, four threads a row.
    let r = wg.x * 16u + lid.x / 4u;
    let lane = lid.x % 4u;
    let t = wg.y;
    let nb = p.cols / 32u;
    var s = 0.0;
    if (r < p.rows) {
        for (var b = lane; b < nb; b += 4u) {
            let o = (r * nb + b) * 5u;
            let dm = unpack2x16float(w[o]);
            let xb = t * p.cols + b * 32u;
            var acc = 0.0;
            var xs = 0.0;
            for (var k = 0u; k < 4u; k++) {
                let q = w[o + 1u + k];
                for (var j = 0u; j < 4u; j++) {
                    let byte = (q >> (8u * j)) & 0xffu;
                    let i = k * 4u + j;
                    let x0 = x[xb + i];
                    let x1 = x[xb + i + 16u];
                    acc += f32(byte & 0xfu) * x0 + f32(byte >> 4u) * x1;
                    xs += x0 + x1;
                }
            }
            s += dm.x * acc + dm.y * xs;
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
