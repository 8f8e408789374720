//! Opening a model: from a URL (the Cache API first) or a dropped file, onto WebGPU or the
//! CPU, with each step's time; and moving it to the CPU when the GPU fails.

use crate::device::{device, Device, OnDevice};
use crate::fetch::{fetch_cached, forget, remember, sha256_hex, Fetched};
use crate::worker::{now, post, yield_now, Loaded, Shared};
use std::rc::Rc;
use tiller_engine::{Cpu, Model, Precision};
use tiller_web::protocol::{FromWorker, Stage, Task};

/// A file the visitor dropped or picked: kept in the Cache API under its content's hash, so
/// the worker can read it again (the CPU fallback) without holding it.
pub(crate) async fn load_bytes(state: &Shared, name: &str, bytes: Vec<u8>) -> Result<(), String> {
    let t0 = now();
    let sha256 = sha256_hex(&bytes);
    let key = format!("local-models/{sha256}");
    let steps = vec![("sha256".to_string(), now() - t0)];
    load(state, name, &key, Fetched { bytes, cached: false, sha256 }, t0, steps).await
}

/// The GPU failed: turn WebGPU off for this page, load the model again on the CPU (from the
/// Cache API, where it was kept), tell the page.
pub(crate) async fn fall_back(state: &Shared, why: &str, task: Task) -> Result<(), String> {
    web_sys::console::warn_1(&format!("tiller: {why}; moving to the CPU").into());
    let source = {
        let mut s = state.borrow_mut();
        s.device = Device::Off(why.to_string());
        s.model = None;
        s.source.clone()
    };
    let Some(key) = source else { return Err(format!("{why}; no model to load again")) };
    let bytes = fetch_cached(&key, &mut |done, total, cached| {
        post(&FromWorker::Progress { stage: Stage::Downloading, done, total, cached })
    })
    .await
    .map_err(|e| {
        format!("{why}; the model could not be read again for the CPU ({e}): open it again")
    })?
    .bytes;
    let model = Model::load_with_progress(&bytes, Cpu::default(), Precision::Fast, &mut |d, t| {
        post(&FromWorker::Progress {
            stage: Stage::Parsing,
            done: d as f64,
            total: Some(t as f64),
            cached: true,
        })
    })
    .map_err(|e| format!("{why}; loading on the CPU failed: {e}"))?;
    crate::pool::started().await;
    let backend = crate::pool::cpu_name(&model.backend);
    state.borrow_mut().model = Some(Loaded::Cpu(Rc::new(model)));
    post(&FromWorker::Fallback { backend, reason: why.to_string(), task });
    Ok(())
}

/// The message for a model file that does not open; a damaged cached copy is dropped, so the
/// next visit downloads the file again.
async fn unloadable(name: &str, key: &str, cached: bool, e: tiller_engine::Error) -> String {
    if cached {
        forget(key).await;
        format!(
            "cannot load {name} from the browser's cache ({e}); the damaged copy was removed: \
             reload the page to download it again"
        )
    } else {
        format!("cannot load {name}: {e}")
    }
}

pub(crate) async fn load_url(state: &Shared, url: &str) -> Result<(), String> {
    let t0 = now();
    // The first open counts from the worker's start: the engine's module compiled and its
    // threads started before the page could ask for the model.
    let first = !std::mem::replace(&mut state.borrow_mut().opened, true);
    let (t0, mut steps) = if first {
        let boot = crate::worker::since_start();
        (t0 - boot, vec![("starting the engine".to_string(), boot)])
    } else {
        (t0, Vec::new())
    };
    let f = fetch_cached(url, &mut |done, total, cached| {
        post(&FromWorker::Progress { stage: Stage::Downloading, done, total, cached })
    })
    .await?;
    let what = if f.cached { "read from the cache" } else { "download and sha256" };
    let so_far: f64 = steps.iter().map(|s| s.1).sum();
    steps.push((what.to_string(), now() - t0 - so_far));
    load(state, url, url, f, t0, steps).await
}

/// Load a model from its bytes onto one device: WebGPU when there is a hardware adapter (or
/// the page forces it), else the CPU. The bytes are kept in the Cache API under `key` with
/// their sha256 (unless they came from there) and then dropped: the weights are the only copy.
/// `steps`: what opening took so far (name, ms), reported with Ready.
async fn load(
    state: &Shared,
    name: &str,
    key: &str,
    f: Fetched,
    t0: f64,
    mut steps: Vec<(String, f64)>,
) -> Result<(), String> {
    let Fetched { mut bytes, cached, sha256 } = f;
    post(&FromWorker::Progress { stage: Stage::Parsing, done: 0.0, total: None, cached: false });
    yield_now().await;
    state.borrow_mut().model = None;
    let mut t = now();
    let mut step = |what: &str, steps: &mut Vec<(String, f64)>| {
        let n = now();
        steps.push((what.to_string(), n - t));
        t = n;
    };
    let mut progress = |d: usize, t: usize| {
        post(&FromWorker::Progress {
            stage: Stage::Parsing,
            done: d as f64,
            total: Some(t as f64),
            cached: false,
        })
    };
    let force = state.borrow().force_webgpu;
    let gpu = device(state).await;
    step("WebGPU adapter", &mut steps);
    let gpu = match gpu {
        // A software adapter runs the GPU path on the CPU, slower than the CPU backend itself:
        // not used unless the page asks for it.
        Ok(gpu) if gpu.info.device_type == wgpu::DeviceType::Cpu && !force => {
            Err("WebGPU here is a software adapter, slower than the CPU backend, so the page runs \
             on the CPU (?backend=webgpu uses the adapter anyway)"
                .to_string())
        }
        r => r,
    };
    let on_gpu = match gpu {
        Ok(gpu) => match Model::load_with_progress(&bytes, gpu, Precision::Fast, &mut progress) {
            Ok(m) => match tiller_engine::Backend::fits(&m.backend, &m.config, 1, 1) {
                Ok(()) => Ok(m),
                Err(e) => Err(format!("the model does not run on this WebGPU device: {e}")),
            },
            Err(tiller_engine::Error::Backend(e)) => {
                Err(format!("the model does not fit this WebGPU device: {e}"))
            }
            Err(e) => return Err(unloadable(name, key, cached, e).await),
        },
        Err(why) => Err(why),
    };
    let (loaded, fallback) = match on_gpu {
        Ok(m) => (Loaded::Gpu(Rc::new(m)), None),
        Err(why) => {
            let m = match Model::load_with_progress(
                &bytes,
                Cpu::default(),
                Precision::Fast,
                &mut progress,
            ) {
                Ok(m) => m,
                Err(e) => return Err(unloadable(name, key, cached, e).await),
            };
            (Loaded::Cpu(Rc::new(m)), Some(why))
        }
    };
    step("reading the weights", &mut steps);
    let file_bytes = bytes.len() as f64;
    if !cached {
        remember(key, &mut bytes, &sha256).await;
        step("keeping it in the cache", &mut steps);
    }
    drop(bytes);
    crate::pool::started().await;
    step("the engine's threads", &mut steps);
    let short = name.rsplit('/').next().unwrap_or(name).to_string();
    let (backend, concepts, gpu_bytes, cfg) = match &loaded {
        Loaded::Gpu(m) => {
            let n = tiller_engine::Backend::name(&m.backend);
            let n = if m.backend.info.device_type == wgpu::DeviceType::Cpu {
                format!("{n} (asked for with ?backend=webgpu; the CPU backend is faster here)")
            } else {
                n
            };
            (n, m.backend.kind(), m.backend.stats().bytes as f64, m.config.clone())
        }
        Loaded::Cpu(m) => {
            (crate::pool::cpu_name(&m.backend), m.backend.kind(), 0.0, m.config.clone())
        }
    };
    post(&FromWorker::Ready {
        model: short,
        family: cfg.architecture.clone(),
        backend,
        concepts: concepts.into(),
        fallback,
        n_layer: cfg.n_layer,
        d_model: cfg.d_model,
        load_ms: now() - t0,
        sha256,
        memory_bytes: file_bytes,
        wasm_bytes: wasm_memory_bytes(),
        gpu_bytes,
        steps,
    });
    let mut s = state.borrow_mut();
    s.model = Some(loaded);
    s.source = Some(key.to_string());
    s.prepared.clear();
    Ok(())
}

/// The size of this worker's wasm memory (its high-water mark: wasm memory only grows).
fn wasm_memory_bytes() -> f64 {
    use wasm_bindgen::JsCast;
    // An ArrayBuffer, or a SharedArrayBuffer in the threaded build: read its byteLength either way.
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .ok()
        .and_then(|m| js_sys::Reflect::get(&m.buffer(), &"byteLength".into()).ok())
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0)
}
