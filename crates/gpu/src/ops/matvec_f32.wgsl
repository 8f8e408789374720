// y[t, r] = sum_c W[r, c] x[t, c] with W in f32 (row-major [rows, cols]).
struct Params { rows: u32, cols: u32, n_tok: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wg.x;
    let t = wg.y;
    var s = 0.0;
    if (r < p.rows) {
        for (var c = lid.x; c < p.cols; c += 64u) {
            s += w[r * p.cols + c] * x[t * p.cols + c];
        }
    }
    part[lid.x] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (lid.x < k) {
            part[lid.x] += part[lid.x + k];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u && r < p.rows) {
        y[t * p.rows + r] = part[0];
    }
}
