// RMSNorm of each row: y = x / sqrt(mean(x^2) + eps) * g. One workgroup per row.
struct Params { n: u32, rows: u32, eps: f32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = wg.x * p.n;
    var s = 0.0;
    for (var i = lid.x; i < p.n; i += 256u) {
        let v = x[base + i];
        s += v * v;
    }
    part[lid.x] = s;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid.x < k) {
            part[lid.x] += part[lid.x + k];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(part[0] / f32(p.n) + p.eps);
    for (var i = lid.x; i < p.n; i += 256u) {
        y[base + i] = x[base + i] * inv * g[i];
    }
}
