// y[t, r] = sum_c W[r, c] x[t, c] with W in f32 (row-major [rows, cols]).
// acc = 1: y += W x (the residual add fused into the product).
struct Params { rows: u32, cols: u32, n_tok: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // Sixteen rows a workgroup, four threads a row.
    let r = wg.x * 16u + lid.x / 4u;
    let lane = lid.x % 4u;
    let t = wg.y;
    var s = 0.0;
    if (r < p.rows) {
        for (var c = lane; c < p.cols; c += 4u) {
            s += w[r * p.cols + c] * x[t * p.cols + c];
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
