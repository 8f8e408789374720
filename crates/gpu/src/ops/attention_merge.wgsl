// The splits of attention.wgsl combined: workgroup (row, head) rescales each split's sums to
// the largest running max of the row's splits and divides the summed outputs by the summed
// weights. Each thread takes output dims i, i + 64, i + 128, i + 192.
struct Params { rows: u32, n_head: u32, hd: u32, splits: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.x;
    let h = wg.y;
    let w = p.hd + 2u;
    let base = (row * p.n_head + h) * p.splits * w;
    var m = -3.4e38;
    for (var s = 0u; s < p.splits; s++) {
        m = max(m, part[base + s * w]);
    }
    var z = 0.0;
    var a = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var s = 0u; s < p.splits; s++) {
        let at = base + s * w;
        let f = exp(part[at] - m);
        z += f * part[at + 1u];
        for (var k = 0u; k < 4u; k++) {
            let i = lid.x + 64u * k;
            if (i < p.hd) {
                a[k] += f * part[at + 2u + i];
            }
        }
    }
    let oo = row * p.n_head * p.hd + h * p.hd;
    for (var k = 0u; k < 4u; k++) {
        let i = lid.x + 64u * k;
        if (i < p.hd) {
            o[oo + i] = a[k] / z;
        }
    }
}
