//! One op a file: `<op>.rs` encodes `<op>.wgsl`. Buffer helpers for uploads and read-back.

pub mod add;
pub mod argmax;
pub mod attention;
pub mod matvec;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;

use crate::{Error, Gpu, Result};
use wgpu::util::DeviceExt;

/// Every op's compute pipeline, built once per device.
pub struct Pipelines {
    pub rms_norm: wgpu::ComputePipeline,
    pub matvec_q4_1: wgpu::ComputePipeline,
    pub matvec_q8_0: wgpu::ComputePipeline,
    pub rope: wgpu::ComputePipeline,
    pub swiglu: wgpu::ComputePipeline,
    pub argmax: wgpu::ComputePipeline,
    pub attention: wgpu::ComputePipeline,
    pub add: wgpu::ComputePipeline,
    pub matvec_f32: wgpu::ComputePipeline,
}

/// Workgroups for `n` invocations of `size` each, split over y past the per-dimension limit.
pub(crate) fn groups(n: usize, size: usize) -> (u32, u32, u32) {
    let g = n.div_ceil(size);
    let x = g.min(65535);
    (x as u32, g.div_ceil(65535).max(1) as u32, 1)
}

fn pipeline(device: &wgpu::Device, name: &str, src: &str) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

impl Pipelines {
    pub fn new(device: &wgpu::Device) -> Self {
        Pipelines {
            rms_norm: pipeline(device, "rms_norm", include_str!("rms_norm.wgsl")),
            matvec_q4_1: pipeline(device, "matvec_q4_1", include_str!("matvec_q4_1.wgsl")),
            matvec_q8_0: pipeline(device, "matvec_q8_0", include_str!("matvec_q8_0.wgsl")),
            rope: pipeline(device, "rope", include_str!("rope.wgsl")),
            swiglu: pipeline(device, "swiglu", include_str!("swiglu.wgsl")),
            argmax: pipeline(device, "argmax", include_str!("argmax.wgsl")),
            attention: pipeline(device, "attention", include_str!("attention.wgsl")),
            add: pipeline(device, "add", include_str!("add.wgsl")),
            matvec_f32: pipeline(device, "matvec_f32", include_str!("matvec_f32.wgsl")),
        }
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Gpu {
    pub(crate) fn pipelines(&self) -> &Pipelines {
        &self.pipelines
    }

    /// A storage buffer holding `bytes` (checked against the binding limit), padded with
    /// zeros to whole words (Q8_0 blocks are 34 bytes).
    pub fn upload(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        self.check_size(bytes.len() as u64)?;
        let padded;
        let bytes = if bytes.len().is_multiple_of(4) {
            bytes
        } else {
            padded = [bytes, &[0u8; 3][..4 - bytes.len() % 4]].concat();
            &padded[..]
        };
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: STORAGE,
        }))
    }

    pub fn upload_f32(&self, label: &str, v: &[f32]) -> Result<wgpu::Buffer> {
        self.upload(label, bytemuck::cast_slice(v))
    }

    /// A storage buffer of `n` f32 set to `fill` (tests poison outputs with NaN).
    pub fn filled(&self, label: &str, n: usize, fill: f32) -> Result<wgpu::Buffer> {
        self.upload_f32(label, &vec![fill; n])
    }

    /// A zeroed storage buffer of `n` f32.
    pub fn zeros(&self, label: &str, n: usize) -> Result<wgpu::Buffer> {
        self.check_size((n * 4) as u64)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (n.max(1) * 4) as u64,
            usage: STORAGE,
            mapped_at_creation: false,
        }))
    }

    /// Copy `n_bytes` from `src` at `from` to `dst` at `to`.
    pub fn copy(&self, src: &wgpu::Buffer, from: u64, dst: &wgpu::Buffer, to: u64, n_bytes: u64) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, from, dst, to, n_bytes);
        self.queue.submit([enc.finish()]);
    }

    pub(crate) fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::cast_slice(words),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Run one compute pass of `pipeline` over `groups` with `buffers` bound in order.
    pub(crate) fn dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) {
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        }
        self.queue.submit([enc.finish()]);
    }

    /// Copy `n` f32 back to the host (blocking; natively).
    pub fn read_f32(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<f32>> {
        Ok(bytemuck::cast_slice::<u8, f32>(&self.read_bytes(buf, n * 4)?).to_vec())
    }

    /// Copy `n` u32 back to the host (blocking; natively).
    pub fn read_u32(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<u32>> {
        Ok(bytemuck::cast_slice::<u8, u32>(&self.read_bytes(buf, n * 4)?).to_vec())
    }

    fn read_bytes(&self, buf: &wgpu::Buffer, n_bytes: usize) -> Result<Vec<u8>> {
        let size = n_bytes as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        rx.recv().map_err(|e| Error::Gpu(e.to_string()))?.map_err(|e| Error::Gpu(e.to_string()))?;
        let view = staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("{e:?}")))?;
        let out = view.to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::Gpu;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// The default adapter: lavapipe here. No adapter fails loudly: tests never pass silently.
    pub fn gpu() -> Gpu {
        pollster::block_on(Gpu::request()).unwrap_or_else(|e| {
            panic!("{e}: install a Vulkan driver (Debian's mesa-vulkan-drivers gives lavapipe; ./dev setup)")
        })
    }

    pub fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    /// Fresh random values in [-scale, scale].
    pub fn random(r: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| r.random_range(-scale..scale)).collect()
    }

    /// Compare with a relative tolerance (of the largest reference magnitude); print the max
    /// error and where.
    pub fn check(what: &str, got: &[f32], want: &[f64], rel: f64) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(0f64, |m, w| m.max(w.abs())).max(1e-12);
        let (mut worst, mut at) = (0f64, 0usize);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let e = if g.is_finite() { (*g as f64 - w).abs() } else { f64::INFINITY };
            if e > worst {
                (worst, at) = (e, i);
            }
        }
        println!("{what}: max |diff| {worst:.3e} at {at} (ours {}, reference {:.6}), tolerance {:.1e} x {scale:.3}", got[at], want[at], rel);
        assert!(worst <= rel * scale, "{what}: max |diff| {worst} at {at} over tolerance");
    }
}
