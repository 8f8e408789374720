// The index of the largest value of x (ties: the smaller index), in one workgroup, so decode
// reads back one token id instead of the logits.
struct Params { n: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
    var v = -3.4e38;
    var idx = 0xffffffffu;
    for (var i = lid.x; i < p.n; i += 256u) {
        let xi = x[i];
        if (xi > v) {
            v = xi;
            idx = i;
        }
    }
    best_v[lid.x] = v;
    best_i[lid.x] = idx;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid.x < k) {
            let ov = best_v[lid.x + k];
            let oi = best_i[lid.x + k];
            if (ov > best_v[lid.x] || (ov == best_v[lid.x] && oi < best_i[lid.x])) {
                best_v[lid.x] = ov;
                best_i[lid.x] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        out[0] = best_i[0];
    }
}
