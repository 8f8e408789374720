// Causal grouped-query attention over a KV cache. q: [rows, n_head * hd] (row i at position
// pos0 + i), k and v caches: [ctx, n_kv * hd] holding positions 0..pos0 + rows. Head h reads
// kv head h / (n_head / n_kv). One workgroup per (row, head), keys in chunks of 64 with an
// online softmax: each thread scores one key of the chunk, the chunk's max rescales the running
// sums, then thread i accumulates output dims i, i + 64, i + 128 and i + 192 over the chunk's
// keys. With `window` > 0 a query attends to its last `window` positions only (sliding-window
// layers). `scale` multiplies q . k; with `softcap` > 0 the scores are soft-capped
// (Gemma 2). Workgroup memory: 512 bytes (WebGPU's default limit is 16 KiB), head widths up to
// 256. With `splits` > 1 (few rows over many keys: decode) workgroup (row, head, s) takes the
// row's keys first + s * span .. first + (s + 1) * span and writes its running max, sum and
// unnormalised output to `part` ((row * n_head + head) * splits + s, hd + 2 values each) for
// attention_merge.wgsl to combine; with 1 it writes `o` as before. With `packed` set the rows
// are several sequences one after another (pos0 0, kc and vc their keys and values row for
// row): row i attends to rows starts[i]..i, starts[i] being the first row of its sequence.
struct Params { rows: u32, n_head: u32, n_kv: u32, hd: u32, pos0: u32, scale: f32, window: u32, softcap: f32, splits: u32, span: u32, packed: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;
@group(0) @binding(6) var<storage, read> starts: array<u32>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

fn score(qo: u32, ko: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < p.hd; i++) {
        s += q[qo + i] * kc[ko + i];
    }
    s *= p.scale;
    if (p.softcap > 0.0) {
        // cap * tanh(s / cap), tanh through exp of a clamped argument.
        let e = exp(2.0 * clamp(s / p.softcap, -15.0, 15.0));
        s = p.softcap * (e - 1.0) / (e + 1.0);
    }
    return s;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.x;
    let h = wg.y;
    let kvh = h / (p.n_head / p.n_kv);
    let n = p.pos0 + row + 1u; // attends to keys first..n
    var first = 0u;
    if (p.packed != 0u) {
        first = starts[row];
    }
    if (p.window > 0u && n - first > p.window) {
        first = n - p.window;
    }
    var hi = n;
    if (p.splits > 1u) {
        first += wg.z * p.span;
        hi = min(n, first + p.span);
    }
    let qo = row * p.n_head * p.hd + h * p.hd;
    let kw = p.n_kv * p.hd;
    let ko = kvh * p.hd;
    var m = -3.4e38;
    var z = 0.0;
    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    for (var c = first; c < hi; c += 64u) {
        let j = c + lid.x;
        var s = -3.4e38;
        if (j < hi) {
            s = score(qo, j * kw + ko);
        }
        sc[lid.x] = s;
        red[lid.x] = s;
        workgroupBarrier();
        for (var k = 32u; k > 0u; k >>= 1u) {
            if (lid.x < k) {
                red[lid.x] = max(red[lid.x], red[lid.x + k]);
            }
            workgroupBarrier();
        }
        let mn = max(m, red[0]);
        let f = exp(m - mn);
        z *= f;
        a0 *= f;
        a1 *= f;
        a2 *= f;
        a3 *= f;
        let cnt = min(64u, hi - c);
        for (var t = 0u; t < cnt; t++) {
            let e = exp(sc[t] - mn);
            z += e;
            let vo = (c + t) * kw + ko;
            if (lid.x < p.hd) {
                a0 += e * vc[vo + lid.x];
            }
            if (lid.x + 64u < p.hd) {
                a1 += e * vc[vo + lid.x + 64u];
            }
            if (lid.x + 128u < p.hd) {
                a2 += e * vc[vo + lid.x + 128u];
            }
            if (lid.x + 192u < p.hd) {
                a3 += e * vc[vo + lid.x + 192u];
            }
        }
        m = mn;
        workgroupBarrier();
    }
    if (p.splits > 1u) {
        let po = ((row * p.n_head + h) * p.splits + wg.z) * (p.hd + 2u);
        if (lid.x == 0u) {
            part[po] = m;
            part[po + 1u] = z;
        }
        if (lid.x < p.hd) {
            part[po + 2u + lid.x] = a0;
        }
        if (lid.x + 64u < p.hd) {
            part[po + 2u + lid.x + 64u] = a1;
        }
        if (lid.x + 128u < p.hd) {
            part[po + 2u + lid.x + 128u] = a2;
        }
        if (lid.x + 192u < p.hd) {
            part[po + 2u + lid.x + 192u] = a3;
        }
        return;
    }
    let oo = row * p.n_head * p.hd + h * p.hd;
    if (lid.x < p.hd) {
        o[oo + lid.x] = a0 / z;
    }
    if (lid.x + 64u < p.hd) {
        o[oo + lid.x + 64u] = a1 / z;
    }
    if (lid.x + 128u < p.hd) {
        o[oo + lid.x + 128u] = a2 / z;
    }
    if (lid.x + 192u < p.hd) {
        o[oo + lid.x + 192u] = a3 / z;
    }
}
