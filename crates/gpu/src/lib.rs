//! tiller-gpu: the model's ops on the GPU through wgpu (Vulkan natively, WebGPU in the page).
//!
//! The device context ([`Gpu`]: injected device and queue, limits and features probed once, the
//! device's errors kept), the ops, each in `ops/<op>.rs` beside its `ops/<op>.wgsl` and tested
//! against the CPU reference on fresh random inputs with poisoned outputs, and the engine's
//! `Backend` on them ([`backend`]).

pub mod backend;
pub mod ops;

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("GPU device: {0}")]
    Device(String),
    #[error("tensor of {bytes} bytes exceeds this device's largest storage binding ({max} bytes)")]
    TooLarge { bytes: u64, max: u64 },
    #[error("shape: {0}")]
    Shape(String),
    #[error("GPU: {0}")]
    Gpu(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `TILLER_GPU_PROFILE=1` (native): time every dispatch with timestamp queries, where the
/// adapter has them ([`Gpu::take_profile`]; `tiller bench --backend gpu` reports it).
fn profiling() -> bool {
    !cfg!(target_arch = "wasm32") && std::env::var("TILLER_GPU_PROFILE").is_ok_and(|v| v == "1")
}

/// A device and queue with what the adapter offers. Entry points take one (so tests and the
/// page supply their own).
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Whether the adapter offers shader-f16 (reported; no kernel uses it: every f16 value is
    /// read exactly with `unpack2x16float`, and f16 arithmetic would change the CPU's bits).
    pub f16: bool,
    pipelines: Arc<ops::Pipelines>,
    /// The row-summing kernels this device runs: the portable form, or the subgroup form once
    /// [`ops::rows::probe`] finds it usable (the same bits, fewer barriers).
    rows: Arc<ops::rows::RowKernels>,
    /// Why the subgroup form is not in use (`None` when it is).
    subgroups_off: Option<String>,
    exec: Arc<std::sync::Mutex<ops::Exec>>,
    /// The first error the device reported on its own (a validation error, out of memory, a
    /// lost device): every read-back after it fails with it, so the caller hears of it.
    failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl Gpu {
    /// Wrap an existing device (its adapter's info for the name).
    pub fn new(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let limits = device.limits();
        let f16 = device.features().contains(wgpu::Features::SHADER_F16);
        let mut exec = ops::Exec::default();
        exec.prof = (profiling() && device.features().contains(wgpu::Features::TIMESTAMP_QUERY))
            .then(|| ops::Prof::new(&device, &queue));
        // Shared between natively threaded callers; in the page's threaded wasm build WebGPU
        // objects are not Send, and they stay on the engine's thread.
        #[allow(clippy::arc_with_non_send_sync)]
        let pipelines = Arc::new(ops::Pipelines::new(&device));
        let failure: Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let fail = {
            let failure = failure.clone();
            move |why: String| {
                if let Ok(mut f) = failure.lock() {
                    f.get_or_insert(why);
                }
            }
        };
        let f2 = fail.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            fail(format!("the GPU device reported an error: {e}"))
        }));
        device
            .set_device_lost_callback(move |_, msg| f2(format!("the GPU device was lost: {msg}")));
        Gpu {
            device,
            queue,
            info,
            limits,
            f16,
            rows: pipelines.rows.clone(),
            subgroups_off: Some("not probed".into()),
            pipelines,
            #[allow(clippy::arc_with_non_send_sync)]
            exec: Arc::new(std::sync::Mutex::new(exec)),
            failure,
        }
    }

    /// Find out whether this device's subgroups can serve the row sums ([`ops::rows::probe`])
    /// and use them if so; `TILLER_GPU_SUBGROUPS=0` (native) keeps the portable kernels.
    pub async fn use_subgroups(&mut self) {
        if !cfg!(target_arch = "wasm32")
            && std::env::var("TILLER_GPU_SUBGROUPS").is_ok_and(|v| v == "0")
        {
            self.subgroups_off = Some("turned off by TILLER_GPU_SUBGROUPS=0".into());
            return;
        }
        match ops::rows::probe(self).await {
            Ok(k) => self.set_rows(k),
            Err(why) => self.subgroups_off = Some(why),
        }
    }

    /// Run the row sums with `kernels`.
    pub(crate) fn set_rows(&mut self, kernels: ops::rows::RowKernels) {
        self.subgroups_off = (!kernels.subgroups).then(|| "turned off".into());
        // Shared between natively threaded callers; in the page's threaded build WebGPU
        // objects are not Send and stay on the engine's thread.
        #[allow(clippy::arc_with_non_send_sync)]
        let kernels = Arc::new(kernels);
        self.rows = kernels;
    }

    /// Why the row sums do not use subgroups on this device, or `None` when they do.
    pub fn subgroups_off(&self) -> Option<String> {
        self.subgroups_off.clone()
    }

    /// The same device with the portable row-summing kernels only (tests and benchmarks
    /// compare the two forms).
    pub fn without_subgroups(&self) -> Gpu {
        Gpu {
            rows: self.pipelines.rows.clone(),
            subgroups_off: Some("turned off".into()),
            ..self.clone()
        }
    }

    /// The row-summing kernels this device runs.
    pub(crate) fn rows(&self) -> &ops::rows::RowKernels {
        &self.rows
    }

    /// What went wrong with the device, if anything has (see [`Gpu::check_failure`]).
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// `Err` once the device has reported an error or been lost.
    pub fn check_failure(&self) -> Result<()> {
        match self.failure() {
            Some(why) => Err(Error::Gpu(why)),
            None => Ok(()),
        }
    }

    /// Give up the device now (a test hook for a lost device): later work fails with `why`.
    pub fn lose(&self, why: &str) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(why.to_string());
        }
        self.device.destroy();
    }

    /// The default adapter (lavapipe where there is no GPU), asking for its own limits.
    pub async fn request() -> Result<Self> {
        // Vulkan, Metal, DX12 natively (lavapipe here), WebGPU in the browser; not GL.
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::PRIMARY | wgpu::Backends::BROWSER_WEBGPU,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions::default())
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let mut want = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        if profiling() {
            want |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let want = adapter.features() & want;
        let mut limits = adapter.limits();
        // TILLER_GPU_MAX_BINDING=BYTES caps the largest storage binding (`./dev test` gives
        // WebGPU's default, 128 MiB, so the native tests take the row-part paths that a browser's
        // device needs, on any Mesa).
        if let Some(cap) = std::env::var("TILLER_GPU_MAX_BINDING").ok().and_then(|v| v.parse().ok())
        {
            let l = &mut limits.max_storage_buffer_binding_size;
            *l = (*l).min(cap);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("tiller"),
                required_features: want,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(e.to_string()))?;
        let mut gpu = Self::new(device, queue, info);
        gpu.use_subgroups().await;
        Ok(gpu)
    }

    /// The adapter and API ("llvmpipe (Vulkan)"; in the browser "WebGPU (...)", whose adapter
    /// details the browser may hide).
    pub fn name(&self) -> String {
        let i = &self.info;
        if i.backend == wgpu::Backend::BrowserWebGpu {
            let what: Vec<&str> = [i.name.as_str(), i.driver.as_str(), i.driver_info.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            let soft =
                if i.device_type == wgpu::DeviceType::Cpu { ", software adapter" } else { "" };
            match what.is_empty() {
                true => format!("WebGPU{soft}"),
                false => format!("WebGPU ({}){soft}", what.join(", ")),
            }
        } else {
            format!("{} ({:?})", i.name, i.backend)
        }
    }

    /// Refuse a buffer larger than one storage binding can see.
    pub fn check_size(&self, bytes: u64) -> Result<()> {
        let max = self.limits.max_storage_buffer_binding_size;
        if bytes > max {
            return Err(Error::TooLarge { bytes, max });
        }
        Ok(())
    }
}
