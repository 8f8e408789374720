// x += y, elementwise; with `cols` > 0, y is one row added to every row of x (a bias).
struct Params { n: u32, cols: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i < p.n) {
        if (p.cols > 0u) {
            x[i] += y[i % p.cols];
        } else {
            x[i] += y[i];
        }
    }
}
