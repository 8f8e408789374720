
// row_sum with subgroup shuffles (used where the adapter has subgroups and lays them out
// along the invocation index, checked once per device by subgroup_layout.wgsl): the same
// additions in the same order, (s0 + s2) + (s1 + s3), so the same bits as row_sum.wgsl,
// without workgroup memory or barriers.
fn row_sum(s: f32, i: u32) -> f32 {
    let t = s + subgroupShuffleXor(s, 2u);
    return t + subgroupShuffleXor(t, 1u);
}
