// Decode's attention input in one dispatch: h = RMSNorm(x) * g, then q = Wq h, k = Wk h,
// v = Wv h with the three matrices in GGUF Q4_1 blocks as stored (see matvec_q4_1.wgsl). Every
// workgroup normalises x into workgroup memory (cols <= 2048), then takes sixteen of the
// rq + rk + rv output rows, four threads a row striding over its blocks.
struct Params { cols: u32, rq: u32, rk: u32, rv: u32, eps: f32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> wq: array<u32>;
@group(0) @binding(4) var<storage, read> wk: array<u32>;
@group(0) @binding(5) var<storage, read> wv: array<u32>;
@group(0) @binding(6) var<storage, read_write> q: array<f32>;
@group(0) @binding(7) var<storage, read_write> k: array<f32>;
@group(0) @binding(8) var<storage, read_write> v: array<f32>;
var<workgroup> xn: array<f32, 2048>;
var<workgroup> part: array<f32, 64>;

// One Q4_1 block (scale/minimum word, four words of nibbles) against xn from xb.
fn blk(dmw: u32, qs: array<u32, 4>, xb: u32) -> f32 {
    let dm = unpack2x16float(dmw);
    var acc = 0.0;
    var xs = 0.0;
    for (var kk = 0u; kk < 4u; kk++) {
        for (var j = 0u; j < 4u; j++) {
            let byte = (qs[kk] >> (8u * j)) & 0xffu;
            let i = kk * 4u + j;
            let x0 = xn[xb + i];
            let x1 = xn[xb + i + 16u];
            acc += f32(byte & 0xfu) * x0 + f32(byte >> 4u) * x1;
            xs += x0 + x1;
        }
    }
    return dm.x * acc + dm.y * xs;
}

fn row_q(r: u32, lane: u32, nb: u32) -> f32 {
    var s = 0.0;
    for (var b = lane; b < nb; b += 4u) {
        let o = (r * nb + b) * 5u;
        s += blk(wq[o], array<u32, 4>(wq[o + 1u], wq[o + 2u], wq[o + 3u], wq[o + 4u]), b * 32u);
    }
    return s;
}

fn row_k(r: u32, lane: u32, nb: u32) -> f32 {
    var s = 0.0;
    for (var b = lane; b < nb; b += 4u) {
        let o = (r * nb + b) * 5u;
        s += blk(wk[o], array<u32, 4>(wk[o + 1u], wk[o + 2u], wk[o + 3u], wk[o + 4u]), b * 32u);
    }
    return s;
}

fn row_v(r: u32, lane: u32, nb: u32) -> f32 {
    var s = 0.0;
    for (var b = lane; b < nb; b += 4u) {
        let o = (r * nb + b) * 5u;
        s += blk(wv[o], array<u32, 4>(wv[o + 1u], wv[o + 2u], wv[o + 3u], wv[o + 4u]), b * 32u);
    }
    return s;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var ss = 0.0;
    for (var i = lid.x; i < p.cols; i += 64u) {
        let a = x[i];
        ss += a * a;
    }
    part[lid.x] = ss;
    workgroupBarrier();
    for (var kk = 32u; kk > 0u; kk >>= 1u) {
        if (lid.x < kk) {
            part[lid.x] += part[lid.x + kk];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(part[0] / f32(p.cols) + p.eps);
    for (var i = lid.x; i < p.cols; i += 64u) {
        xn[i] = x[i] * inv * g[i];
    }
    workgroupBarrier();
    let r = wg.x * 16u + lid.x / 4u;
    let lane = lid.x % 4u;
    let nb = p.cols / 32u;
    var s = 0.0;
    if (r < p.rq) {
        s = row_q(r, lane, nb);
    } else if (r < p.rq + p.rk) {
        s = row_k(r - p.rq, lane, nb);
    } else if (r < p.rq + p.rk + p.rv) {
        s = row_v(r - p.rq - p.rk, lane, nb);
    }
    // The row's four partial sums (row_sum.wgsl or row_sum_subgroup.wgsl, appended).
    let y = row_sum(s, lid.x);
    if (lane == 0u) {
        if (r < p.rq) {
            q[r] = y;
        } else if (r < p.rq + p.rk) {
            k[r - p.rq] = y;
        } else if (r < p.rq + p.rk + p.rv) {
            v[r - p.rq - p.rk] = y;
        }
    }
}
