//! The engine's threads. The threaded build's pool: rayon's threads are Web Workers sharing
//! this module's memory. The single-threaded build (the fallback, same source) says why it runs
//! on one thread.
//!
//! The pool exists only with wasm atomics (`scripts/build-threads.sh`, pinned nightly, `-Z build-std`).
//! Each pool thread is a worker running `tiller-thread.js`, which instantiates this same module
//! on the shared memory and calls [`tiller_thread_run`] with its rayon `ThreadBuilder`; it then
//! stays inside rayon's worker loop. Parallel regions use the pool only once every thread has
//! said it started ([`tiller_engine::cpu::par::set_wasm_pool`]): a pool with no live thread
//! would block the engine forever.

use std::cell::RefCell;
use tiller_engine::Cpu;
#[cfg(target_feature = "atomics")]
use {
    js_sys::{Array, Promise},
    wasm_bindgen::prelude::*,
    wasm_bindgen::JsCast,
    wasm_bindgen_futures::JsFuture,
    web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType},
};

thread_local! {
    /// Why the CPU backend runs on one thread, when it does.
    static ONE_THREAD: RefCell<Option<String>> = const { RefCell::new(None) };
}

thread_local! {
    /// The pool's start: settles once its threads have started, or failed to.
    static STARTING: RefCell<Option<js_sys::Promise>> = const { RefCell::new(None) };
}

/// Start the engine's threads where this build and the page allow them, without waiting for
/// them: the model is read meanwhile (a parallel region before they are up runs on this
/// thread). [`started`] waits for them.
pub fn init() {
    let p = wasm_bindgen_futures::future_to_promise(async {
        let why = pool().await.err();
        ONE_THREAD.with(|w| *w.borrow_mut() = why);
        Ok(wasm_bindgen::JsValue::UNDEFINED)
    });
    STARTING.with(|s| *s.borrow_mut() = Some(p));
}

/// Wait until the pool's threads have started (or failed to): [`cpu_name`] then says how many
/// run, or why only one.
pub async fn started() {
    if let Some(p) = STARTING.with(|s| s.borrow().clone()) {
        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
    }
}

#[cfg(target_feature = "atomics")]
async fn pool() -> Result<usize, String> {
    start(wanted()).await
}

#[cfg(not(target_feature = "atomics"))]
async fn pool() -> Result<usize, String> {
    let isolated = js_sys::Reflect::get(&js_sys::global(), &"crossOriginIsolated".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let name = js_sys::Reflect::get(&js_sys::global(), &"name".into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    Err(if let Some(why) = name.strip_prefix(tiller_web::protocol::FALLBACK_NAME) {
        why.to_string()
    } else if isolated {
        "the threaded engine was not asked for (?threads=1)".into()
    } else {
        "the page is not cross-origin isolated, so the browser shares no memory between workers"
            .into()
    })
}

/// The CPU backend's name with its threads, and why there is one only.
pub fn cpu_name(cpu: &Cpu) -> String {
    let name = tiller_engine::Backend::name(cpu);
    match ONE_THREAD.with(|w| w.borrow().clone()) {
        Some(why) if tiller_engine::cpu::par::threads() == 1 => format!("{name}: {why}"),
        _ => name,
    }
}

#[cfg(target_feature = "atomics")]
/// How long the pool's workers may take to start before the engine runs on one thread.
const START_TIMEOUT_MS: i32 = 15_000;

#[cfg(target_feature = "atomics")]
thread_local! {
    /// The pool's workers, kept so nothing collects them.
    static WORKERS: RefCell<Vec<Worker>> = const { RefCell::new(Vec::new()) };
}

#[cfg(target_feature = "atomics")]
/// Entry of a pool thread (called by `tiller-thread.js` on its own instance of this module):
/// it runs the engine's parallel regions from now on and never returns.
#[wasm_bindgen]
pub fn tiller_thread_run() {
    console_error_panic_hook::set_once();
    tiller_engine::cpu::wasm_pool::helper();
}

#[cfg(target_feature = "atomics")]
/// Threads for this browser: its logical cores, at most 8 (more threads than cores only adds
/// waiting on a decode's small regions).
pub fn wanted() -> usize {
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let cores = global.navigator().hardware_concurrency() as usize;
    cores.clamp(1, 8)
}

#[cfg(target_feature = "atomics")]
/// Start `n - 1` helper threads (this worker is the n-th) and wait, without blocking (a Web
/// Worker cannot start while its creator blocks), until each has started. `Ok(n)` once
/// parallel regions use them; an error (the engine then runs on one thread) says why.
pub async fn start(n: usize) -> Result<usize, String> {
    if n < 2 {
        return Err("this browser reports one core".into());
    }
    let mut started: Vec<Promise> = Vec::new();
    for i in 1..n {
        let opts = WorkerOptions::new();
        opts.set_type(WorkerType::Classic);
        opts.set_name(&format!("tiller-{i}"));
        let worker = Worker::new_with_options("./tiller-thread.js", &opts)
            .map_err(|e| format!("cannot start a pool worker: {e:?}"))?;
        started.push(first_message(&worker));
        let msg = Array::of2(&wasm_bindgen::module(), &wasm_bindgen::memory());
        worker.post_message(&msg).map_err(|e| format!("cannot start a pool worker: {e:?}"))?;
        WORKERS.with(|w| w.borrow_mut().push(worker));
    }
    let all = Promise::all(&started.iter().collect::<Array>());
    let timeout = Promise::new(&mut |_, reject| {
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let msg = JsValue::from_str("the pool's workers did not start in time");
        let cb = Closure::once_into_js(move || {
            let _ = reject.call1(&JsValue::NULL, &msg);
        });
        let _ = global.set_timeout_with_callback_and_timeout_and_arguments_0(
            cb.unchecked_ref(),
            START_TIMEOUT_MS,
        );
    });
    let race = Promise::race(&Array::of2(&all, &timeout));
    JsFuture::from(race).await.map_err(|e| e.as_string().unwrap_or_else(|| format!("{e:?}")))?;
    tiller_engine::cpu::wasm_pool::set_helpers(n - 1);
    Ok(n)
}

#[cfg(target_feature = "atomics")]
/// Resolves with the worker's first message ("started"), rejects on its error event. Later
/// messages are a panic in the engine's parallel work on that thread (a bug: the engine's
/// thread, waiting for that thread, cannot go on until the page is reloaded): logged to the
/// console.
fn first_message(worker: &Worker) -> Promise {
    let w = worker.clone();
    Promise::new(&mut |resolve, reject| {
        let w2 = w.clone();
        let ok = Closure::once_into_js(move |ev: MessageEvent| {
            let _ = resolve.call1(&JsValue::NULL, &ev.data());
            let later = Closure::<dyn FnMut(MessageEvent)>::new(|ev: MessageEvent| {
                web_sys::console::error_2(&"a thread of the engine failed:".into(), &ev.data());
            });
            w2.set_onmessage(Some(later.as_ref().unchecked_ref()));
            later.forget();
        });
        let fail = Closure::once_into_js(move |ev: web_sys::ErrorEvent| {
            let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(&ev.message()));
        });
        w.set_onmessage(Some(ok.unchecked_ref()));
        w.set_onerror(Some(fail.unchecked_ref()));
    })
}
