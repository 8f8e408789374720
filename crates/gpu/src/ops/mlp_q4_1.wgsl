// The MLP's input side in one dispatch (decode): h = RMSNorm(x) * n, then
// y[r] = silu(G h)[r] * (U h)[r], G (gate) and U (up) in GGUF Q4_1 blocks as stored (see
// matvec_q4_1.wgsl). Every workgroup normalises x into workgroup memory (cols <= 2048), then
// takes sixteen output rows, four threads a row striding over its blocks.
struct Params { rows: u32, cols: u32, eps: f32, pad1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> n: array<f32>;
@group(0) @binding(3) var<storage, read> wg_: array<u32>;
@group(0) @binding(4) var<storage, read> wu: array<u32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
var<workgroup> xn: array<f32, 2048>;
var<workgroup> pg: array<f32, 64>;

// The 32 weights of a block against x: (sum q x, sum x), to be scaled by d and m.
fn nibbles(q: array<u32, 4>, xb: u32) -> vec2<f32> {
    var acc = 0.0;
    var xs = 0.0;
    for (var k = 0u; k < 4u; k++) {
        for (var j = 0u; j < 4u; j++) {
            let byte = (q[k] >> (8u * j)) & 0xffu;
            let i = k * 4u + j;
            let x0 = xn[xb + i];
            let x1 = xn[xb + i + 16u];
            acc += f32(byte & 0xfu) * x0 + f32(byte >> 4u) * x1;
            xs += x0 + x1;
        }
    }
    return vec2<f32>(acc, xs);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var ss = 0.0;
    for (var i = lid.x; i < p.cols; i += 64u) {
        let a = x[i];
        ss += a * a;
    }
    pg[lid.x] = ss;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (lid.x < k) {
            pg[lid.x] += pg[lid.x + k];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(pg[0] / f32(p.cols) + p.eps);
    for (var i = lid.x; i < p.cols; i += 64u) {
        xn[i] = x[i] * inv * n[i];
    }
    workgroupBarrier();
    let r = wg.x * 16u + lid.x / 4u;
    let lane = lid.x % 4u;
    let nb = p.cols / 32u;
    var sg = 0.0;
    var su = 0.0;
    if (r < p.rows) {
        for (var b = lane; b < nb; b += 4u) {
            let o = (r * nb + b) * 5u;
            let xb = b * 32u;
            let dg = unpack2x16float(wg_[o]);
            let g = nibbles(array<u32, 4>(wg_[o + 1u], wg_[o + 2u], wg_[o + 3u], wg_[o + 4u]), xb);
            sg += dg.x * g.x + dg.y * g.y;
            let du = unpack2x16float(wu[o]);
            let u = nibbles(array<u32, 4>(wu[o + 1u], wu[o + 2u], wu[o + 3u], wu[o + 4u]), xb);
            su += du.x * u.x + du.y * u.y;
        }
    }
    // Each row's four partial sums (row_sum.wgsl or row_sum_subgroup.wgsl, appended).
    let a = row_sum(sg, lid.x);
    let u = row_sum(su, lid.x);
    if (lane == 0u && r < p.rows) {
        y[r] = a / (1.0 + exp(-a)) * u;
    }
}
