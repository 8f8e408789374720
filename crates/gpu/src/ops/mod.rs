//! One op a file: `<op>.rs` encodes `<op>.wgsl`. Buffer helpers for uploads and read-back.

pub mod add;
pub mod argmax;
pub mod attention;
pub mod edit;
pub mod layer_norm;
pub mod matvec;
pub mod mlp;
mod profile;
pub mod qkv;
pub mod rms_norm;
pub mod rope;
pub mod rows;
pub mod swiglu;

pub(crate) use profile::{Prof, PROF_PASSES};

use crate::{Error, Gpu, Result};
use std::collections::HashMap;

/// Every op's compute pipeline, built once per device (the row-summing kernels in their
/// portable form; [`rows`] builds the subgroup form where it is usable).
pub struct Pipelines {
    pub rows: std::sync::Arc<rows::RowKernels>,
    pub rms_norm: wgpu::ComputePipeline,
    pub layer_norm: wgpu::ComputePipeline,
    pub rope: wgpu::ComputePipeline,
    pub swiglu: wgpu::ComputePipeline,
    pub argmax: wgpu::ComputePipeline,
    pub attention: wgpu::ComputePipeline,
    pub attention_merge: wgpu::ComputePipeline,
    pub add: wgpu::ComputePipeline,
    pub edit: wgpu::ComputePipeline,
    pub matmul_q4_1: wgpu::ComputePipeline,
    pub matmul_codes: wgpu::ComputePipeline,
    pub matmul_q8_0: wgpu::ComputePipeline,
    pub matmul_f32: wgpu::ComputePipeline,
}

/// Workgroups for `n` invocations of `size` each, split over y past the per-dimension limit.
pub(crate) fn groups(n: usize, size: usize) -> (u32, u32, u32) {
    let g = n.div_ceil(size);
    let x = g.min(65535);
    (x as u32, g.div_ceil(65535).max(1) as u32, 1)
}

pub(crate) fn pipeline(device: &wgpu::Device, name: &str, src: &str) -> wgpu::ComputePipeline {
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

/// A tiled prefill kernel with `tile_out.wgsl` (the tile's sums written out) appended.
fn tiled(device: &wgpu::Device, name: &str, src: &str) -> wgpu::ComputePipeline {
    pipeline(device, name, &format!("{src}{}", include_str!("tile_out.wgsl")))
}

impl Pipelines {
    pub fn new(device: &wgpu::Device) -> Self {
        #[allow(clippy::arc_with_non_send_sync)]
        let rows = std::sync::Arc::new(rows::RowKernels::new(device, false, false));
        Pipelines {
            rows,
            rms_norm: pipeline(device, "rms_norm", include_str!("rms_norm.wgsl")),
            layer_norm: pipeline(device, "layer_norm", include_str!("layer_norm.wgsl")),
            rope: pipeline(device, "rope", include_str!("rope.wgsl")),
            swiglu: pipeline(device, "swiglu", include_str!("swiglu.wgsl")),
            argmax: pipeline(device, "argmax", include_str!("argmax.wgsl")),
            attention: pipeline(device, "attention", include_str!("attention.wgsl")),
            attention_merge: pipeline(
                device,
                "attention_merge",
                include_str!("attention_merge.wgsl"),
            ),
            add: pipeline(device, "add", include_str!("add.wgsl")),
            edit: pipeline(device, "edit", include_str!("edit.wgsl")),
            matmul_q4_1: tiled(device, "matmul_q4_1", include_str!("matmul_q4_1.wgsl")),
            matmul_codes: tiled(device, "matmul_codes", include_str!("matmul_codes.wgsl")),
            matmul_q8_0: tiled(device, "matmul_q8_0", include_str!("matmul_q8_0.wgsl")),
            matmul_f32: tiled(device, "matmul_f32", include_str!("matmul_f32.wgsl")),
        }
    }
}

/// For packed sequences of these lengths, each row's first row of its sequence (u32), in a
/// constant buffer (found again by content: every layer of a pass shares it).
pub(crate) fn starts(gpu: &Gpu, lens: &[usize]) -> Result<wgpu::Buffer> {
    let mut v = Vec::with_capacity(lens.iter().sum());
    let mut first = 0u32;
    for &n in lens {
        v.extend(std::iter::repeat_n(f32::from_bits(first), n));
        first += n as u32;
    }
    gpu.constant(&v)
}

/// `starts` where a kernel takes it, else a buffer for its unused binding (two words, so not
/// the one-word constant that RoPE binds read-write for a missing k).
pub(crate) fn starts_or_unused(gpu: &Gpu, starts: Option<&wgpu::Buffer>) -> Result<wgpu::Buffer> {
    match starts {
        Some(b) => Ok(b.clone()),
        None => gpu.constant(&[0.0, 0.0]),
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Past this many cached bind groups (or uniforms, or edit vectors) a cache starts over:
/// bounded memory when shapes keep changing (prompts of many lengths).
const CACHE_MAX: usize = 4096;

/// Recording state shared by a device's users: the command encoder being filled (a whole
/// forward pass goes into one command buffer, submitted when something is read back), the
/// caches that make a decoded token allocate nothing once warm (bind groups, uniforms,
/// activation buffers by size class, edit vectors, the staging buffer), and counters.
#[derive(Default)]
pub(crate) struct Exec {
    encoder: Option<wgpu::CommandEncoder>,
    binds: HashMap<(usize, Vec<wgpu::Buffer>), wgpu::BindGroup>,
    uniforms: HashMap<Vec<u32>, wgpu::Buffer>,
    vectors: HashMap<Vec<u32>, wgpu::Buffer>,
    pool: HashMap<u64, Vec<wgpu::Buffer>>,
    staging: Option<wgpu::Buffer>,
    pub(crate) stats: Stats,
    /// GPU time per dispatch site when profiling (`TILLER_GPU_PROFILE=1`, native).
    pub(crate) prof: Option<Prof>,
}

/// What the device was asked to do since it was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Command buffers submitted.
    pub submits: u64,
    /// Buffers created (weights, caches, activations before the pool is warm).
    pub buffers: u64,
    /// Bind groups created (cache misses).
    pub bind_groups: u64,
    /// Bytes of the storage buffers created (weights, caches, activations, staging).
    pub bytes: u64,
}

/// The device's scratch pool, shared with [`Gpu`].
#[derive(Clone)]
pub(crate) struct Pool(std::sync::Arc<std::sync::Mutex<Exec>>);

impl Pool {
    pub(crate) fn put(&self, buf: wgpu::Buffer) {
        let mut e = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let list = e.pool.entry(buf.size()).or_default();
        if list.len() < 64 {
            list.push(buf);
        }
    }
}

fn bounded<K, V>(m: &mut HashMap<K, V>) -> &mut HashMap<K, V> {
    if m.len() >= CACHE_MAX {
        m.clear();
    }
    m
}

impl Gpu {
    pub(crate) fn pipelines(&self) -> &Pipelines {
        &self.pipelines
    }

    fn exec(&self) -> std::sync::MutexGuard<'_, Exec> {
        self.exec.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counters since the device was created.
    pub fn stats(&self) -> Stats {
        self.exec().stats
    }

    fn create(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        {
            let mut e = self.exec();
            e.stats.buffers += 1;
            e.stats.bytes += size;
        }
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
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
        {
            let mut e = self.exec();
            e.stats.buffers += 1;
            e.stats.bytes += bytes.len() as u64;
        }
        self.init(label, bytes, STORAGE)
    }

    /// A buffer holding `contents` (whole words), written while mapped at creation; a device
    /// that has failed is an error here, not a panic.
    fn init(
        &self,
        label: &str,
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        self.check_failure()?;
        let size = (contents.len() as u64).next_multiple_of(4).max(4);
        let b = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: true,
        });
        {
            let mut view = b
                .get_mapped_range_mut(..)
                .map_err(|e| Error::Gpu(format!("writing {label}: {e:?}")))?;
            view.slice(..contents.len()).copy_from_slice(contents);
        }
        b.unmap();
        Ok(b)
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
        Ok(self.create(label, (n.max(1) * 4) as u64, STORAGE))
    }

    /// A scratch storage buffer for at least `n` f32 from the pool (contents undefined);
    /// hand it back with [`Gpu::release`]. Sizes go by powers of two so a few classes serve
    /// every shape.
    pub fn scratch(&self, n: usize) -> Result<wgpu::Buffer> {
        let want = (n.max(1) * 4) as u64;
        self.check_size(want)?;
        let class = want.next_power_of_two().max(256);
        let size = if class > self.limits.max_storage_buffer_binding_size { want } else { class };
        if let Some(b) = self.exec().pool.get_mut(&size).and_then(|v| v.pop()) {
            return Ok(b);
        }
        Ok(self.create("scratch", size, STORAGE))
    }

    /// Return a scratch buffer to the pool. Commands already recorded that use it run
    /// before any later use (one queue, in order).
    pub fn release(&self, buf: wgpu::Buffer) {
        self.pool().put(buf)
    }

    /// A handle on the scratch pool (what activations keep to hand their buffer back, instead
    /// of a whole `Gpu`).
    pub(crate) fn pool(&self) -> Pool {
        Pool(self.exec.clone())
    }

    /// Write host data into a buffer, after everything recorded so far (which is submitted
    /// first: a queue write would otherwise overtake it).
    pub fn write(&self, buf: &wgpu::Buffer, bytes: &[u8]) {
        self.flush();
        self.queue.write_buffer(buf, 0, bytes);
    }

    /// A buffer for a vector that stays the same across calls (an edit's direction), uploaded
    /// once and found again by content.
    pub(crate) fn constant(&self, v: &[f32]) -> Result<wgpu::Buffer> {
        let key: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        if let Some(b) = self.exec().vectors.get(&key) {
            return Ok(b.clone());
        }
        let b = self.upload_f32("constant", v)?;
        bounded(&mut self.exec().vectors).insert(key, b.clone());
        Ok(b)
    }

    fn with_encoder(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut e = self.exec();
        let enc = e
            .encoder
            .get_or_insert_with(|| self.device.create_command_encoder(&Default::default()));
        f(enc);
    }

    /// Submit what has been recorded.
    pub fn flush(&self) {
        let (enc, prof) = {
            let mut e = self.exec();
            let enc = e.encoder.take();
            if enc.is_some() {
                e.stats.submits += 1;
            }
            let prof = e.prof.as_mut().filter(|p| !p.pending.is_empty()).map(|p| {
                (p.set.clone(), p.resolve.clone(), p.read.clone(), std::mem::take(&mut p.pending))
            });
            (enc, prof)
        };
        let Some(mut enc) = enc else { return };
        if let Some((set, resolve, read, _)) = &prof {
            let n = 2 * prof.as_ref().map_or(0, |p| p.3.len()) as u32;
            enc.resolve_query_set(set, 0..n, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, read, 0, n as u64 * 8);
        }
        self.queue.submit([enc.finish()]);
        if let Some((_, _, read, sites)) = prof {
            self.tally(&read, &sites);
        }
    }

    /// Read a submission's timestamps back and add each pass's time to its site (native).
    fn tally(&self, read: &wgpu::Buffer, sites: &[&'static std::panic::Location<'static>]) {
        if cfg!(target_arch = "wasm32") {
            return;
        }
        let n = sites.len() as u64 * 16;
        read.map_async(wgpu::MapMode::Read, ..n, |_| {});
        if self.device.poll(wgpu::PollType::wait_indefinitely()).is_err() {
            return;
        }
        let ticks: Vec<u64> = match read.get_mapped_range(..n) {
            Ok(v) => bytemuck::cast_slice::<u8, u64>(&v).to_vec(),
            Err(_) => return,
        };
        read.unmap();
        if let Some(p) = self.exec().prof.as_mut() {
            p.add(sites, &ticks);
        }
    }

    /// GPU time by dispatch site since the last call (`file:line`, passes, nanoseconds), the
    /// largest first; `None` unless profiling (`TILLER_GPU_PROFILE=1` natively, on an adapter
    /// with timestamp queries).
    pub fn take_profile(&self) -> Option<Vec<(String, u64, f64)>> {
        self.flush();
        self.exec().prof.as_mut().map(Prof::take)
    }

    /// Copy `n_bytes` from `src` at `from` to `dst` at `to` (recorded in order).
    pub fn copy(&self, src: &wgpu::Buffer, from: u64, dst: &wgpu::Buffer, to: u64, n_bytes: u64) {
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(src, from, dst, to, n_bytes));
    }

    /// Uniform parameters, one buffer per distinct value (kept and reused).
    pub(crate) fn uniform(&self, words: &[u32]) -> Result<wgpu::Buffer> {
        if let Some(b) = self.exec().uniforms.get(words) {
            return Ok(b.clone());
        }
        let b = self.init("params", bytemuck::cast_slice(words), wgpu::BufferUsages::UNIFORM)?;
        let mut e = self.exec();
        e.stats.buffers += 1;
        bounded(&mut e.uniforms).insert(words.to_vec(), b.clone());
        Ok(b)
    }

    /// Record one compute pass of `pipeline` over `groups` with `buffers` bound in order
    /// (the bind group is made once per pipeline and buffers, then reused).
    #[track_caller]
    pub(crate) fn dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32, u32),
    ) {
        let key = (pipeline as *const _ as usize, buffers.iter().map(|b| (*b).clone()).collect());
        let cached = self.exec().binds.get(&key).cloned();
        let bind = cached.unwrap_or_else(|| {
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
            let mut e = self.exec();
            e.stats.bind_groups += 1;
            bounded(&mut e.binds).insert(key, bind.clone());
            bind
        });
        let site = std::panic::Location::caller();
        if self.exec().prof.as_ref().is_some_and(|p| p.pending.len() as u32 >= PROF_PASSES) {
            self.flush();
        }
        let timed = self.exec().prof.as_mut().and_then(|p| {
            let i = p.pending.len() as u32;
            (i < PROF_PASSES).then(|| {
                p.pending.push(site);
                (p.set.clone(), 2 * i)
            })
        });
        self.with_encoder(|enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: timed.as_ref().map(|(set, i)| wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(*i),
                    end_of_pass_write_index: Some(i + 1),
                }),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        });
        self.exec().stats.dispatches += 1;
    }

    /// Copy `n` f32 back to the host (blocking; native only).
    pub fn read_f32(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<f32>> {
        Ok(bytemuck::cast_slice::<u8, f32>(&self.read_bytes(buf, n * 4)?).to_vec())
    }

    /// Copy `n` u32 back to the host (blocking; native only).
    pub fn read_u32(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<u32>> {
        Ok(bytemuck::cast_slice::<u8, u32>(&self.read_bytes(buf, n * 4)?).to_vec())
    }

    /// Copy `n` f32 back to the host without blocking (the browser's way; works natively too).
    pub async fn read_f32_async(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<f32>> {
        let bytes = self.read_bytes_async(buf, n * 4).await?;
        Ok(bytemuck::cast_slice::<u8, f32>(&bytes).to_vec())
    }

    /// Copy `n` u32 back to the host without blocking.
    pub async fn read_u32_async(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<u32>> {
        let bytes = self.read_bytes_async(buf, n * 4).await?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes).to_vec())
    }

    /// Record the copies into the staging buffer (one after another), submit everything, ask
    /// for the mapping.
    fn start_read(
        &self,
        bufs: &[(&wgpu::Buffer, usize)],
    ) -> Result<(wgpu::Buffer, futures_channel::oneshot::Receiver<Result<()>>)> {
        self.check_failure()?;
        let sizes: Vec<u64> =
            bufs.iter().map(|(_, n)| (n.max(&4).to_owned() as u64).next_multiple_of(4)).collect();
        let size: u64 = sizes.iter().sum::<u64>().max(4);
        let have = self.exec().staging.take().filter(|s| s.size() >= size);
        let staging = have.unwrap_or_else(|| {
            self.create(
                "read-back",
                size.next_power_of_two(),
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )
        });
        let mut at = 0;
        for ((buf, _), n) in bufs.iter().zip(&sizes) {
            self.copy(buf, 0, &staging, at, *n);
            at += n;
        }
        self.flush();
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
            let _ = tx.send(r.map_err(|e| Error::Gpu(e.to_string())));
        });
        Ok((staging, rx))
    }

    /// The copies of [`Gpu::start_read`] once mapped, each `n_bytes` long.
    fn finish_read_many(&self, staging: wgpu::Buffer, lens: &[usize]) -> Result<Vec<Vec<u8>>> {
        let total: u64 =
            lens.iter().map(|n| (n.max(&4).to_owned() as u64).next_multiple_of(4)).sum();
        let out = {
            let view = staging
                .get_mapped_range(..total.max(4))
                .map_err(|e| Error::Gpu(format!("{e:?}")))?;
            let mut at = 0usize;
            let mut out = Vec::with_capacity(lens.len());
            for &n in lens {
                out.push(view[at..at + n].to_vec());
                at += (n.max(4) as u64).next_multiple_of(4) as usize;
            }
            out
        };
        staging.unmap();
        self.exec().staging = Some(staging);
        self.check_failure()?;
        Ok(out)
    }

    /// Several buffers' first `n` f32 each, read back together without blocking (one
    /// submission, one mapping): what a forward pass kept, with its logits.
    pub async fn read_many_async(&self, bufs: &[(&wgpu::Buffer, usize)]) -> Result<Vec<Vec<f32>>> {
        let bytes: Vec<(&wgpu::Buffer, usize)> = bufs.iter().map(|(b, n)| (*b, n * 4)).collect();
        let lens: Vec<usize> = bytes.iter().map(|(_, n)| *n).collect();
        let (staging, rx) = self.start_read(&bytes)?;
        if !cfg!(target_arch = "wasm32") {
            // Natively the callback only runs when the device is polled.
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(e.to_string()))?;
        }
        rx.await.map_err(|_| Error::Gpu("the device was lost during a read-back".into()))??;
        let raw = self.finish_read_many(staging, &lens)?;
        Ok(raw.iter().map(|b| bytemuck::cast_slice::<u8, f32>(b).to_vec()).collect())
    }

    fn finish_read(&self, staging: wgpu::Buffer, n_bytes: usize) -> Result<Vec<u8>> {
        Ok(self.finish_read_many(staging, &[n_bytes])?.pop().unwrap_or_default())
    }

    fn read_bytes(&self, buf: &wgpu::Buffer, n_bytes: usize) -> Result<Vec<u8>> {
        if cfg!(target_arch = "wasm32") {
            return Err(Error::Gpu(
                "a blocking read-back was asked for in the browser (a bug: use the async path)"
                    .into(),
            ));
        }
        let (staging, mut rx) = self.start_read(&[(buf, n_bytes)])?;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        match rx.try_recv() {
            Ok(Some(r)) => r?,
            _ => return Err(Error::Gpu("the read-back did not complete".into())),
        }
        self.finish_read(staging, n_bytes)
    }

    async fn read_bytes_async(&self, buf: &wgpu::Buffer, n_bytes: usize) -> Result<Vec<u8>> {
        let (staging, rx) = self.start_read(&[(buf, n_bytes)])?;
        if !cfg!(target_arch = "wasm32") {
            // Natively the callback only runs when the device is polled.
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(e.to_string()))?;
        }
        rx.await.map_err(|_| Error::Gpu("the device was lost during a read-back".into()))??;
        self.finish_read(staging, n_bytes)
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::ops::matvec::{matvec, Format, Out};
    use crate::ops::rms_norm::rms_norm;
    use crate::Gpu;
    use half::f16;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// The default adapter: lavapipe here. No adapter fails loudly: tests never pass silently.
    pub fn gpu() -> Gpu {
        pollster::block_on(Gpu::request()).unwrap_or_else(|e| {
            panic!("{e}: install a Vulkan driver (Debian's mesa-vulkan-drivers gives lavapipe; ./dev setup)")
        })
    }

    /// Random Q4_1 blocks: small f16 scales and minimums, random nibbles.
    pub fn q4(r: &mut StdRng, rows: usize, cols: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rows * cols / 32 {
            out.extend(f16::from_f32(r.random_range(0.001f32..0.05)).to_le_bytes());
            out.extend(f16::from_f32(r.random_range(-0.2f32..0.0)).to_le_bytes());
            out.extend((0..16).map(|_| r.random::<u8>()));
        }
        out
    }

    /// The unfused path the fused kernels replace: RMSNorm, then a product per matrix.
    pub fn unfused(
        gpu: &Gpu,
        x: &wgpu::Buffer,
        n: &wgpu::Buffer,
        ws: &[(&wgpu::Buffer, usize)],
        cols: usize,
    ) -> Vec<wgpu::Buffer> {
        let h = gpu.filled("h", cols, f32::NAN).unwrap();
        rms_norm(gpu, x, n, &h, 1, cols, 1e-5).unwrap();
        ws.iter()
            .map(|(w, rows)| {
                let y = gpu.filled("y", *rows, f32::NAN).unwrap();
                matvec(gpu, Format::Q4_1, w, &h, &y, *rows, cols, 1, Out::Set).unwrap();
                y
            })
            .collect()
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
