// Where each invocation of a 64-thread workgroup sits in its subgroup: out[i] =
// subgroup_invocation_id, out[64 * groups + i] = subgroup_size, for the host to check that
// subgroups run along the invocation index (lane = index % size), which row_sum_subgroup.wgsl
// relies on.
@group(0) @binding(0) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) n: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
) {
    let i = wg.x * 64u + li;
    out[i] = lane;
    out[64u * n.x + i] = size;
}
