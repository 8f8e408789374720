// Rotary position embedding on rows of q (`n_head` heads of `head_dim`) and of k (`n_head_k`
// heads) in one dispatch, as the CPU backend: row i is position pos0 + i, pair k turns by
// pos * theta^(-2k / head_dim); the pair is (2k, 2k + 1) (adjacent, GGUF Llama layout) or, with
// `neox` set, (k, k + head_dim / 2) (halves: Gemma, Qwen). One invocation per pair: q's pairs
// first, then k's. With `packed` set the rows are several sequences one after another, each
// from position 0: row i is position i - starts[i] (starts[i]: the first row of its sequence).
struct Params { rows: u32, n_head: u32, head_dim: u32, pos0: u32, theta: f32, n_head_k: u32, neox: u32, packed: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read> starts: array<u32>;

fn pos(row: u32) -> f32 {
    if (p.packed != 0u) {
        return f32(row - starts[row]);
    }
    return f32(p.pos0 + row);
}

// Offsets of a pair's two dims within its head.
fn dims(pair: u32, half: u32) -> vec2<u32> {
    if (p.neox != 0u) {
        return vec2<u32>(pair, pair + half);
    }
    return vec2<u32>(2u * pair, 2u * pair + 1u);
}

fn turn(pos: f32, pair: u32) -> vec2<f32> {
    let ang = pos * pow(p.theta, -2.0 * f32(pair) / f32(p.head_dim));
    return vec2<f32>(cos(ang), sin(ang));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.head_dim / 2u;
    let nq = p.rows * p.n_head * half;
    let i = gid.x + gid.y * 65535u * 64u;
    if (i < nq) {
        let per_row = p.n_head * half;
        let row = i / per_row;
        let pair = i % half;
        let head = (i % per_row) / half;
        let cs = turn(pos(row), pair);
        let d = row * p.n_head * p.head_dim + head * p.head_dim + dims(pair, half);
        let a = q[d.x];
        let b = q[d.y];
        q[d.x] = a * cs.x - b * cs.y;
        q[d.y] = a * cs.y + b * cs.x;
    } else if (i < nq + p.rows * p.n_head_k * half) {
        let j = i - nq;
        let per_row = p.n_head_k * half;
        let row = j / per_row;
        let pair = j % half;
        let head = (j % per_row) / half;
        let cs = turn(pos(row), pair);
        let d = row * p.n_head_k * p.head_dim + head * p.head_dim + dims(pair, half);
        let a = k[d.x];
        let b = k[d.y];
        k[d.x] = a * cs.x - b * cs.y;
        k[d.y] = a * cs.y + b * cs.x;
    }
}
