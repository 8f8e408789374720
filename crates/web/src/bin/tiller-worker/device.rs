//! The WebGPU device of the worker: asked for once, and turned off for the page (the model
//! loaded again on the CPU, the page told why) when it fails.

use crate::worker::Shared;
use tiller_engine::{Backend, Cpu};
use tiller_gpu::Gpu;

/// The WebGPU device: asked for once, on the first load that wants it.
#[derive(Default)]
pub(crate) enum Device {
    #[default]
    Untried,
    Ready(Box<Gpu>),
    /// Why there is none (no adapter, the page asked for the CPU, the device was lost).
    Off(String),
}

/// The WebGPU device, asked for once (its absence is remembered with the reason).
pub(crate) async fn device(state: &Shared) -> Result<Gpu, String> {
    let tried = match &state.borrow().device {
        Device::Ready(g) => Some(Ok(Gpu::clone(g.as_ref()))),
        Device::Off(why) => Some(Err(why.clone())),
        Device::Untried => None,
    };
    if let Some(r) = tried {
        return r;
    }
    let r = Gpu::request().await.map_err(|e| format!("WebGPU is not available here ({e})"));
    let mut s = state.borrow_mut();
    s.device = match &r {
        Ok(g) => Device::Ready(Box::new(g.clone())),
        Err(why) => Device::Off(why.clone()),
    };
    r
}

/// What the worker needs of a backend beyond the engine's trait: which device it is, its
/// counters, and the test hook that loses it (a device's failure reaches the worker as the
/// error of the next read-back).
pub(crate) trait OnDevice: Backend {
    /// Lose the device now (test hook).
    fn lose(&self) {}
    /// `webgpu` or `cpu`.
    fn kind(&self) -> &'static str;
    /// Compute dispatches and command submissions so far (0 on the CPU).
    fn counters(&self) -> (u64, u64) {
        (0, 0)
    }
}

impl OnDevice for Cpu {
    fn kind(&self) -> &'static str {
        "cpu"
    }
}

impl OnDevice for Gpu {
    fn lose(&self) {
        Gpu::lose(self, "the WebGPU device was lost (test hook)");
    }
    fn kind(&self) -> &'static str {
        "webgpu"
    }
    fn counters(&self) -> (u64, u64) {
        let s = self.stats();
        (s.dispatches, s.submits)
    }
}
