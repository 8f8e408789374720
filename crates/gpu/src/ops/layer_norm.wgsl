// LayerNorm of each row: y = (x - mean) / sqrt(var + eps) * g + b (GPT-2). One workgroup per
// row; two passes over the row (mean, then the centred sum of squares) for accuracy.
struct Params { n: u32, rows: u32, eps: f32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, 256>;

fn reduce(lid: u32) -> f32 {
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid < k) {
            part[lid] += part[lid + k];
        }
        workgroupBarrier();
    }
    let total = part[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = wg.x * p.n;
    var s = 0.0;
    for (var i = lid.x; i < p.n; i += 256u) {
        s += x[base + i];
    }
    part[lid.x] = s;
    let mean = reduce(lid.x) / f32(p.n);
    var v = 0.0;
    for (var i = lid.x; i < p.n; i += 256u) {
        let c = x[base + i] - mean;
        v += c * c;
    }
    part[lid.x] = v;
    let inv = inverseSqrt(reduce(lid.x) / f32(p.n) + p.eps);
    for (var i = lid.x; i < p.n; i += 256u) {
        y[base + i] = (x[base + i] - mean) * inv * g[i] + b[i];
    }
}
