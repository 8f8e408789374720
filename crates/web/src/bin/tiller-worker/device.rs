//! The WebGPU device of the worker: asked for once, watched for errors and loss, and turned
//! off (generation back on the CPU model, the page told why) when it fails.

use crate::worker::{post, Shared};
use tiller_gpu::Gpu;
use tiller_web::protocol::FromWorker;

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
        Ok(g) => {
            watch(g);
            Device::Ready(Box::new(g.clone()))
        }
        Err(why) => Device::Off(why.clone()),
    };
    r
}

/// What went wrong with the WebGPU device, set by its callbacks (which must be Send).
pub(crate) static GPU_FAILURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// A validation error or a lost device is recorded; the next GPU step sees it and generation
/// moves to the CPU model (kept loaded).
fn watch(g: &Gpu) {
    let fail = |why: String| {
        web_sys::console::warn_1(&format!("tiller: {why}").into());
        if let Ok(mut f) = GPU_FAILURE.lock() {
            f.get_or_insert(why);
        }
    };
    g.device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
        fail(format!("the WebGPU device reported an error: {e}"))
    }));
    g.device
        .set_device_lost_callback(move |_, msg| fail(format!("the WebGPU device was lost: {msg}")));
}

/// The device's failure, if any: the GPU is then turned off for this page and the page told.
pub(crate) fn gpu_failed(state: &Shared) -> Option<String> {
    let why = GPU_FAILURE.lock().ok()?.clone()?;
    let mut s = state.borrow_mut();
    if s.gpu_model.take().is_some() || !matches!(s.device, Device::Off(_)) {
        s.device = Device::Off(why.clone());
        if let Some(m) = &s.model {
            let backend = tiller_engine::Backend::name(&m.backend);
            post(&FromWorker::Fallback { backend, reason: why.clone() });
        }
    }
    Some(why)
}
