//! The kernels that sum each output row over four threads (the decode products), built in two
//! forms that give the same bits: with `row_sum.wgsl` (workgroup memory and barriers, any
//! adapter) or with `row_sum_subgroup.wgsl` (subgroup shuffles, where the adapter has
//! subgroups and [`probe`] finds them laid out along the invocation index).

use crate::{Gpu, Result};

/// One form of the row-summing kernels.
pub struct RowKernels {
    pub matvec_q4_1: wgpu::ComputePipeline,
    pub matvec_q8_0: wgpu::ComputePipeline,
    pub matvec_f32: wgpu::ComputePipeline,
    pub matvec_codes: wgpu::ComputePipeline,
    pub mlp_q4_1: wgpu::ComputePipeline,
    pub qkv_q4_1: wgpu::ComputePipeline,
    /// Whether these use subgroup shuffles.
    pub subgroups: bool,
}

impl RowKernels {
    /// `browser`: the shaders go to the browser's WebGPU, whose WGSL needs `enable subgroups;`
    /// (naga, natively, does not take that directive yet and needs none).
    pub(crate) fn new(device: &wgpu::Device, subgroups: bool, browser: bool) -> Self {
        let (head, tail) = match subgroups {
            true => (
                if browser { "enable subgroups;\n" } else { "" },
                include_str!("row_sum_subgroup.wgsl"),
            ),
            false => ("", include_str!("row_sum.wgsl")),
        };
        let k =
            |name: &str, src: &str| super::pipeline(device, name, &format!("{head}{src}{tail}"));
        RowKernels {
            matvec_q4_1: k("matvec_q4_1", include_str!("matvec_q4_1.wgsl")),
            matvec_q8_0: k("matvec_q8_0", include_str!("matvec_q8_0.wgsl")),
            matvec_f32: k("matvec_f32", include_str!("matvec_f32.wgsl")),
            matvec_codes: k("matvec_codes", include_str!("matvec_codes.wgsl")),
            mlp_q4_1: k("mlp_q4_1", include_str!("mlp_q4_1.wgsl")),
            qkv_q4_1: k("qkv_q4_1", include_str!("qkv_q4_1.wgsl")),
            subgroups,
        }
    }
}

/// The subgroup form of the row-summing kernels, or why this device cannot use it: the
/// adapter offers subgroups, the kernels compile, and a probe dispatch finds every invocation
/// of a 64-thread workgroup at lane `index % size` of a subgroup of a size that is a multiple
/// of four (what `row_sum_subgroup.wgsl` takes a row's four threads to be). A probe that fails
/// on the device is a reason too: the portable kernels serve.
pub(crate) async fn probe(gpu: &Gpu) -> std::result::Result<RowKernels, String> {
    match try_probe(gpu).await {
        Ok(r) => r,
        Err(e) => Err(format!("the subgroup probe failed: {e}")),
    }
}

async fn try_probe(gpu: &Gpu) -> Result<std::result::Result<RowKernels, String>> {
    if !gpu.device.features().contains(wgpu::Features::SUBGROUP) {
        return Ok(Err("the adapter has no subgroups".into()));
    }
    // A shader the device rejects is reported here, not as a device failure.
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let browser = gpu.info.backend == wgpu::Backend::BrowserWebGpu;
    let head = if browser { "enable subgroups;\n" } else { "" };
    let src = format!("{head}{}", include_str!("subgroup_layout.wgsl"));
    let probe = super::pipeline(&gpu.device, "subgroup_layout", &src);
    let kernels = RowKernels::new(&gpu.device, true, browser);
    if let Some(e) = scope.pop().await {
        return Ok(Err(format!("the subgroup kernels did not compile here: {e}")));
    }
    const GROUPS: usize = 4;
    let out = gpu.upload("subgroup layout", bytemuck::cast_slice(&[u32::MAX; 2 * 64 * GROUPS]))?;
    gpu.dispatch(&probe, &[&out], (GROUPS as u32, 1, 1));
    let got = gpu.read_u32_async(&out, 2 * 64 * GROUPS).await?;
    let (lanes, sizes) = got.split_at(64 * GROUPS);
    let size = sizes[0];
    if size < 4 || size % 4 != 0 || sizes.iter().any(|&s| s != size) {
        return Ok(Err(format!("subgroups of {size} lanes (a multiple of four is needed)")));
    }
    if let Some(i) = (0..lanes.len()).find(|&i| lanes[i] != (i % 64) as u32 % size) {
        return Ok(Err(format!(
            "subgroups are not laid out along the invocation index (invocation {} is lane {})",
            i % 64,
            lanes[i]
        )));
    }
    Ok(Ok(kernels))
}

#[cfg(test)]
mod tests {
    use crate::ops::matvec::{matvec, Format, Out};
    use crate::ops::test_util::*;
    use crate::Gpu;
    use half::f16;
    use rand::Rng;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    /// Every row-summing kernel gives the same bits with subgroups as without, on an adapter
    /// that has them (lavapipe does: one without fails here, loudly).
    #[test]
    fn subgroup_kernels_give_the_portable_bits() {
        // Probed here whatever TILLER_GPU_SUBGROUPS says.
        let plain = gpu().without_subgroups();
        let mut gpu = plain.clone();
        let kernels = pollster::block_on(super::probe(&gpu));
        let kernels = kernels.unwrap_or_else(|why| panic!("no subgroups on {}: {why}", gpu.name()));
        gpu.set_rows(kernels);
        assert!(gpu.rows().subgroups && gpu.subgroups_off().is_none());
        assert!(!plain.rows().subgroups);
        let both = [&gpu, &plain];
        let mut r = rng(11);
        let (rows, cols) = (70, 576);
        let x = gpu.upload_f32("x", &random(&mut r, 2 * cols, 2.0)).unwrap();
        let mut q8 = Vec::new();
        for _ in 0..rows * cols / 32 {
            q8.extend(f16::from_f32(r.random_range(0.0005f32..0.01)).to_le_bytes());
            q8.extend((0..32).map(|_| r.random::<u8>()));
        }
        let halves: Vec<u8> = (0..rows * cols)
            .flat_map(|_| f16::from_f32(r.random_range(-0.1f32..0.1)).to_le_bytes())
            .collect();
        let f32s: Vec<u8> =
            random(&mut r, rows * cols, 0.1).iter().flat_map(|v| v.to_le_bytes()).collect();
        let cases = [
            (Format::Q4_1, q4(&mut r, rows, cols)),
            (Format::Q8_0, q8),
            (Format::F16, halves),
            (Format::F32, f32s),
        ];
        for (format, bytes) in &cases {
            let w = gpu.upload("w", bytes).unwrap();
            for (n_tok, out) in [(1, Out::Set), (1, Out::Add), (3, Out::Add)] {
                let got: Vec<Vec<f32>> = both
                    .iter()
                    .map(|g| {
                        let y = g.upload_f32("y", &vec![0.25f32; n_tok * rows]).unwrap();
                        matvec(g, *format, &w, &x, &y, rows, cols, n_tok, out).unwrap();
                        g.read_f32(&y, n_tok * rows).unwrap()
                    })
                    .collect();
                assert_eq!(bits(&got[0]), bits(&got[1]), "{format:?} x{n_tok} {out:?}");
            }
        }
        // The fused decode kernels: norm and gate/up, norm and q/k/v.
        let norm = gpu.upload_f32("norm", &random(&mut r, cols, 1.5)).unwrap();
        let (g, u) = (q4(&mut r, 100, cols), q4(&mut r, 100, cols));
        let (g, u) = (gpu.upload("g", &g).unwrap(), gpu.upload("u", &u).unwrap());
        let got: Vec<Vec<f32>> = both
            .iter()
            .map(|d| {
                let y = d.filled("y", 100, f32::NAN).unwrap();
                crate::ops::mlp::gate_up_q4_1(d, &x, (&norm, 1e-5), &g, &u, &y, 100, cols).unwrap();
                d.read_f32(&y, 100).unwrap()
            })
            .collect();
        assert_eq!(bits(&got[0]), bits(&got[1]), "gate and up");
        let rs = [64usize, 32, 32];
        let ws: Vec<wgpu::Buffer> =
            rs.iter().map(|&n| gpu.upload("w", &q4(&mut r, n, cols)).unwrap()).collect();
        let got: Vec<Vec<f32>> = both
            .iter()
            .map(|d: &&Gpu| {
                let outs: Vec<wgpu::Buffer> =
                    rs.iter().map(|&n| d.filled("o", n, f32::NAN).unwrap()).collect();
                let w = [&ws[0], &ws[1], &ws[2]];
                let o = [&outs[0], &outs[1], &outs[2]];
                crate::ops::qkv::qkv_q4_1(d, &x, (&norm, 1e-5), w, o, rs, cols).unwrap();
                outs.iter().zip(rs).flat_map(|(b, n)| d.read_f32(b, n).unwrap()).collect()
            })
            .collect();
        assert_eq!(bits(&got[0]), bits(&got[1]), "q, k and v");
        println!("subgroup row sums on {}: the portable kernels' bits", gpu.name());
    }
}
