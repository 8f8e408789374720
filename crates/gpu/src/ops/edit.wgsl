// A residual-stream edit (tiller_engine::Edit) in place, one workgroup per row: for rows whose
// position pos0 + row is in [start, end), with c_j = h . u_j,
//   h' = scale * h + bias + u1 (m00 c1 + m01 c2 + k0) + u2 (m10 c1 + m11 c2 + k1)
// (flags bit 0: scale present, bit 1: bias present; n_dirs directions, at most 2).
struct Params {
    rows: u32, width: u32, pos0: u32, start: u32,
    end: u32, flags: u32, n_dirs: u32, pad0: u32,
    m00: f32, m01: f32, m10: f32, m11: f32,
    k0: f32, k1: f32, pad1: u32, pad2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> u1: array<f32>;
@group(0) @binding(5) var<storage, read> u2: array<f32>;
var<workgroup> r1: array<f32, 64>;
var<workgroup> r2: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.x + wg.y * 65535u;
    let pos = p.pos0 + row;
    if (row >= p.rows || pos < p.start || pos >= p.end) {
        return;
    }
    let base = row * p.width;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var i = lid.x; i < p.width; i += 64u) {
        let h = x[base + i];
        if (p.n_dirs > 0u) {
            s1 += h * u1[i];
        }
        if (p.n_dirs > 1u) {
            s2 += h * u2[i];
        }
    }
    r1[lid.x] = s1;
    r2[lid.x] = s2;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (lid.x < k) {
            r1[lid.x] += r1[lid.x + k];
            r2[lid.x] += r2[lid.x + k];
        }
        workgroupBarrier();
    }
    let c1 = r1[0];
    let c2 = r2[0];
    let a1 = p.m00 * c1 + p.m01 * c2 + p.k0;
    let a2 = p.m10 * c1 + p.m11 * c2 + p.k1;
    for (var i = lid.x; i < p.width; i += 64u) {
        var v = x[base + i];
        if ((p.flags & 1u) != 0u) {
            v *= scale[i];
        }
        if ((p.flags & 2u) != 0u) {
            v += bias[i];
        }
        if (p.n_dirs > 0u) {
            v += u1[i] * a1;
        }
        if (p.n_dirs > 1u) {
            v += u2[i] * a2;
        }
        x[base + i] = v;
    }
}
