// Causal grouped-query attention over a KV cache. q: [rows, n_head * hd] (row i at position
// pos0 + i), k and v caches: [ctx, n_kv * hd] holding positions 0..pos0 + rows. Head h reads
// kv head h / (n_head / n_kv). One workgroup per (row, head): each thread takes every 64th key;
// pass 1 finds the max score, pass 2 sums exp(score - max) and the weighted values, then the
// threads' partial sums are added up.
struct Params { rows: u32, n_head: u32, n_kv: u32, hd: u32, pos0: u32, scale: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
const MAX_HD: u32 = 128u;
var<workgroup> red: array<f32, 64>;
var<workgroup> acc: array<f32, 8192>; // 64 threads x MAX_HD

fn score(qo: u32, ko: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < p.hd; i++) {
        s += q[qo + i] * kc[ko + i];
    }
    return s * p.scale;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.x;
    let h = wg.y;
    let kvh = h / (p.n_head / p.n_kv);
    let last = p.pos0 + row; // attends to keys 0..=last
    let qo = row * p.n_head * p.hd + h * p.hd;
    let kw = p.n_kv * p.hd;
    var m = -3.4e38;
    for (var j = lid.x; j <= last; j += 64u) {
        m = max(m, score(qo, j * kw + kvh * p.hd));
    }
    red[lid.x] = m;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (lid.x < k) {
            red[lid.x] = max(red[lid.x], red[lid.x + k]);
        }
        workgroupBarrier();
    }
    let mx = red[0];
    workgroupBarrier();
    var z = 0.0;
    let base = lid.x * MAX_HD;
    for (var i = 0u; i < p.hd; i++) {
        acc[base + i] = 0.0;
    }
    for (var j = lid.x; j <= last; j += 64u) {
        let e = exp(score(qo, j * kw + kvh * p.hd) - mx);
        z += e;
        let vo = j * kw + kvh * p.hd;
        for (var i = 0u; i < p.hd; i++) {
            acc[base + i] += e * vc[vo + i];
        }
    }
    red[lid.x] = z;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if (lid.x < k) {
            red[lid.x] += red[lid.x + k];
            for (var i = 0u; i < p.hd; i++) {
                acc[lid.x * MAX_HD + i] += acc[(lid.x + k) * MAX_HD + i];
            }
        }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    for (var i = lid.x; i < p.hd; i += 64u) {
        o[row * p.n_head * p.hd + h * p.hd + i] = acc[i] * inv;
    }
}
