
// tile_out (appended to the tiled prefill kernels, matmul_*.wgsl): each thread's partial sums
// `s` for the tile's rows `t0 .. t0 + nt` go through workgroup memory, and a row's first thread
// writes the four threads' total, added as (s0 + s2) + (s1 + s3) like row_sum.wgsl, into
// y[t, r] (set, or added when p.acc == 1). Uses the kernel's `p` (rows, acc) and `y`. Called by
// every thread (it holds a barrier).
const T: u32 = 8u;
var<workgroup> part: array<f32, 512>; // T x 64 threads

fn tile_out(s: array<f32, 8>, i: u32, r: u32, t0: u32, nt: u32) {
    for (var t = 0u; t < T; t++) {
        part[t * 64u + i] = s[t];
    }
    workgroupBarrier();
    if (i % 4u == 0u && r < p.rows) {
        for (var t = 0u; t < nt; t++) {
            let b = t * 64u + i;
            let v = (part[b] + part[b + 2u]) + (part[b + 1u] + part[b + 3u]);
            let o = (t0 + t) * p.rows + r;
            if (p.acc == 1u) {
                y[o] += v;
            } else {
                y[o] = v;
            }
        }
    }
}
