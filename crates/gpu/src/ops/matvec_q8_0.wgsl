// y[t, r] = sum_c W[r, c] x[t, c] with W in GGUF Q8_0 blocks read as stored: 32 weights a block,
// 34 bytes: f16 scale d, then 32 signed bytes; w = d q. Blocks are not word aligned: bytes are
// picked out of the u32 words (the f16 scale never straddles a word: 34 b is even).
// acc = 1: y += W x (the residual add fused into the product).
struct Params { rows: u32, cols: u32, n_tok: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn byte_at(o: u32) -> u32 {
    return (w[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu;
}

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
            let o = (r * nb + b) * 34u;
            let pair = unpack2x16float(w[o >> 2u]);
            var d = pair.x;
            if ((o & 3u) == 2u) {
                d = pair.y;
            }
            let xb = t * p.cols + b * 32u;
            var acc = 0.0;
            for (var i = 0u; i < 32u; i++) {
                let q = (i32(byte_at(o + 2u + i)) << 24u) >> 24u;
                acc += f32(q) * x[xb + i];
            }
            s += d * acc;
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
