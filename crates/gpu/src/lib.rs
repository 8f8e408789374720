//! tiller-gpu: the model's ops on the GPU through wgpu (Vulkan natively, WebGPU in the page).
//!
//! Started in issue 4, not finished: the device context ([`Gpu`]: injected device and queue,
//! limits and features probed once) and the first ops, each in `ops/<op>.rs` beside its
//! `ops/<op>.wgsl` and tested against the CPU reference on fresh random inputs with poisoned
//! outputs. The `Backend` implementation, attention with the KV cache, interventions and
//! sampling on the GPU come next.

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

/// A device and queue with what the adapter offers. Entry points take one (so tests and the
/// page supply their own).
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// shader-f16 is used when present, never required.
    pub f16: bool,
    pipelines: Arc<ops::Pipelines>,
    exec: Arc<std::sync::Mutex<ops::Exec>>,
}

impl Gpu {
    /// Wrap an existing device (its adapter's info for the name).
    pub fn new(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let limits = device.limits();
        let f16 = device.features().contains(wgpu::Features::SHADER_F16);
        let pipelines = Arc::new(ops::Pipelines::new(&device));
        Gpu { device, queue, info, limits, f16, pipelines, exec: Default::default() }
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
        let want = adapter.features() & wgpu::Features::SHADER_F16;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("tiller"),
                required_features: want,
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(e.to_string()))?;
        Ok(Self::new(device, queue, info))
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
