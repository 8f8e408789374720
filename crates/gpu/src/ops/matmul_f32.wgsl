// Prefill: y[t, r] = sum_c W[r, c] x[t, c] for a tile of 8 activation rows at once, W in f32
// (row-major [rows, cols]). Each thread reads each of its weights once and multiplies it into
// every row of the tile in matvec_f32.wgsl's order, so every row's result is the
// matrix-vector kernel's, while the weights are read once per 8 rows. Sixteen output rows a
// workgroup (x), four threads a row striding over its columns, one tile (y); acc = 1 adds into y.
struct Params { rows: u32, cols: u32, n_tok: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wg.x * 16u + lid.x / 4u;
    let lane = lid.x % 4u;
    let t0 = wg.y * T;
    let nt = min(T, p.n_tok - t0);
    var s: array<f32, 8>;
    if (r < p.rows) {
        for (var c = lane; c < p.cols; c += 4u) {
            let v = w[r * p.cols + c];
            for (var t = 0u; t < nt; t++) {
                s[t] += v * x[(t0 + t) * p.cols + c];
            }
        }
    }
    // The tile's sums into y (tile_out.wgsl, appended).
    tile_out(s, lid.x, r, t0, nt);
}
