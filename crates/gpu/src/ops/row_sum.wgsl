
// row_sum, the portable form (appended to the kernels that sum a row over four threads):
// the total of `s` over the four threads `i - i % 4 .. i - i % 4 + 4` of a 64-thread
// workgroup, added as (s0 + s2) + (s1 + s3), through workgroup memory; valid in the row's
// first thread (i % 4 == 0). Called by every thread (it holds barriers).
var<workgroup> row_part: array<f32, 64>;

fn row_sum(s: f32, i: u32) -> f32 {
    row_part[i] = s;
    workgroupBarrier();
    if (i % 4u < 2u) {
        row_part[i] += row_part[i + 2u];
    }
    workgroupBarrier();
    if (i % 4u == 0u) {
        row_part[i] += row_part[i + 1u];
    }
    // Before the next call writes the slots read above.
    workgroupBarrier();
    return row_part[i];
}
