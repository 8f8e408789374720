// Rotary position embedding on rows of `n_head` heads of `head_dim`, adjacent pairs
// (GGUF Llama layout, as the CPU backend): row i is position pos0 + i, pair (2k, 2k + 1) turns
// by pos * theta^(-2k / head_dim). One invocation per pair.
struct Params { rows: u32, n_head: u32, head_dim: u32, pos0: u32, theta: f32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.head_dim / 2u;
    let per_row = p.n_head * half;
    let i = gid.x + gid.y * 65535u * 64u;
    if (i >= p.rows * per_row) {
        return;
    }
    let row = i / per_row;
    let k = i % half;
    let head = (i % per_row) / half;
    let pos = f32(p.pos0 + row);
    let ang = pos * pow(p.theta, -2.0 * f32(k) / f32(p.head_dim));
    let c = cos(ang);
    let s = sin(ang);
    let o = row * p.n_head * p.head_dim + head * p.head_dim + 2u * k;
    let a = x[o];
    let b = x[o + 1u];
    x[o] = a * c - b * s;
    x[o + 1u] = a * s + b * c;
}
