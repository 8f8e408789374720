//! Worker state and message handling. One task runs at a time; every long task yields to the
//! event loop between steps so `Stop` is seen and progress reaches the page.

use crate::device::{Device, OnDevice};
use crate::steered::{converse, generate, read, sweep, Steering};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tiller_engine::{Cpu, Model};
use tiller_gpu::Gpu;
use tiller_steer::concept::Concept;
use tiller_steer::plan::{self, InterventionSpec, Prepared};
use tiller_steer::report::{self, analyze_and_prepare, Options};
use tiller_web::protocol::{FromWorker, Task, ToWorker};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

/// The model, on one device: every task (concept work, reading, sweeps, generation) runs
/// where it is. One copy of the weights.
#[derive(Clone)]
pub(crate) enum Loaded {
    Cpu(Rc<Model<Cpu>>),
    Gpu(Rc<Model<Gpu>>),
}

/// Run `$body` with `$m` bound to the loaded model, whichever backend holds it.
macro_rules! with_model {
    ($state:expr, $m:ident => $body:expr) => {
        match loaded($state)? {
            Loaded::Cpu($m) => $body,
            Loaded::Gpu($m) => $body,
        }
    };
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) model: Option<Loaded>,
    /// Where the model's bytes can be read again (the Cache API key it was kept under): the
    /// worker keeps no copy of the file once the weights are loaded, and loads it again on the
    /// CPU if the GPU fails.
    pub(crate) source: Option<String>,
    pub(crate) device: Device,
    /// Test hook: destroy the WebGPU device after this many generated tokens.
    pub(crate) lose_after: Option<usize>,
    /// Test hook: destroy the WebGPU device in the middle of the next concept compute.
    pub(crate) lose_in_analyze: bool,
    /// `?backend=webgpu`: use WebGPU even on a software adapter.
    pub(crate) force_webgpu: bool,
    /// Prepared concepts by their JSON (a changed example is a different concept).
    pub(crate) prepared: HashMap<String, Rc<Prepared>>,
    pub(crate) queue: std::collections::VecDeque<ToWorker>,
    pub(crate) busy: bool,
    pub(crate) stop: bool,
    /// A model was asked for before (the engine's start is part of the first open only).
    pub(crate) opened: bool,
}

pub(crate) type Shared = Rc<RefCell<State>>;

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

pub(crate) fn post(msg: &FromWorker) {
    match serde_wasm_bindgen::to_value(msg) {
        Ok(v) => {
            let _ = scope().post_message(&v);
        }
        Err(e) => {
            web_sys::console::error_1(&format!("worker: cannot serialize message: {e}").into())
        }
    }
}

pub(crate) fn now() -> f64 {
    js_sys::Date::now()
}

/// Milliseconds since this worker was created (its `performance.now()`).
pub(crate) fn since_start() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| {
            let f: js_sys::Function =
                js_sys::Reflect::get(&p, &"now".into()).ok()?.dyn_into().ok()?;
            f.call0(&p).ok()?.as_f64()
        })
        .unwrap_or(0.0)
}

/// Let the event loop run (so a Stop message can arrive) before the next step. A message to a
/// channel's other port, not `setTimeout(0)`: browsers hold nested timers back 4 ms, which was
/// a quarter of a decode step.
pub(crate) async fn yield_now() {
    let p = js_sys::Promise::new(&mut |resolve, _| match web_sys::MessageChannel::new() {
        Ok(ch) => {
            ch.port1().set_onmessage(Some(&resolve));
            let _ = ch.port2().post_message(&JsValue::NULL);
        }
        Err(_) => {
            let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        }
    });
    let _ = JsFuture::from(p).await;
}

pub fn start() {
    let state: Shared = Rc::new(RefCell::new(State::default()));
    let on_msg = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let msg: ToWorker = match serde_wasm_bindgen::from_value(ev.data()) {
            Ok(m) => m,
            Err(e) => {
                return post(&FromWorker::Error {
                    task: Task::Load,
                    message: format!("bad message to worker: {e}"),
                })
            }
        };
        if let ToWorker::Stop = msg {
            // Stops the running task and drops the queued ones (each says so).
            let dropped: Vec<ToWorker> = {
                let mut s = state.borrow_mut();
                s.stop = true;
                s.queue.drain(..).collect()
            };
            for m in dropped {
                let message = "stopped before it started".to_string();
                post(&FromWorker::Error { task: task_of(&m), message });
            }
            return;
        }
        let start = {
            let mut s = state.borrow_mut();
            s.queue.push_back(msg);
            !std::mem::replace(&mut s.busy, true)
        };
        if start {
            let state = state.clone();
            spawn_local(async move { drain(&state).await });
        }
    });
    scope().set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
    on_msg.forget();
    // The page sends its first task (the model to load) on `Started`; the pool's threads start
    // meanwhile (loading waits for them before it says which backend runs).
    crate::pool::init();
    post(&FromWorker::Started);
}

/// Run queued tasks one after another (one model, one thread).
async fn drain(state: &Shared) {
    loop {
        let next = {
            let mut s = state.borrow_mut();
            let n = s.queue.pop_front();
            if n.is_none() {
                s.busy = false;
            }
            n
        };
        let Some(msg) = next else { break };
        state.borrow_mut().stop = false;
        let task = task_of(&msg);
        // A task on the GPU that fails with the device runs again on the CPU.
        let again = (task != Task::Load).then(|| msg.clone());
        let r = run(state, msg).await;
        match (gpu_failure(state), r) {
            (Some(why), r) => {
                let rerun = r.is_err();
                if let Err(message) = crate::load::fall_back(state, &why, task).await {
                    post(&FromWorker::Error { task, message });
                } else if let (true, Some(m)) = (rerun, again) {
                    if let Err(message) = run(state, m).await {
                        post(&FromWorker::Error { task, message });
                    }
                }
            }
            (None, Err(message)) => post(&FromWorker::Error { task, message }),
            (None, Ok(())) => {}
        }
    }
}

/// Why the GPU holding the model failed, if it holds it and failed.
fn gpu_failure(state: &Shared) -> Option<String> {
    match &state.borrow().model {
        Some(Loaded::Gpu(m)) => m.backend.failure(),
        _ => None,
    }
}

fn task_of(m: &ToWorker) -> Task {
    match m {
        ToWorker::Analyze { .. } => Task::Analyze,
        ToWorker::Generate { .. } | ToWorker::Converse { .. } => Task::Generate,
        ToWorker::Read { .. } => Task::Read,
        ToWorker::Sweep { .. } => Task::Sweep,
        ToWorker::Export { .. } => Task::Export,
        ToWorker::Promotes { .. } => Task::Promotes,
        ToWorker::Patch { .. } | ToWorker::PatchCell { .. } => Task::Patch,
        ToWorker::Lens { .. } => Task::Lens,
        ToWorker::Attention { .. } => Task::Attention,
        ToWorker::Bench { .. } => Task::Bench,
        ToWorker::Load { .. }
        | ToWorker::LoadBytes { .. }
        | ToWorker::Backend { .. }
        | ToWorker::Stop => Task::Load,
    }
}

async fn run(state: &Shared, msg: ToWorker) -> Result<(), String> {
    match msg {
        ToWorker::Backend { webgpu, force, lose_after, lose_in_analyze } => {
            let mut s = state.borrow_mut();
            s.lose_after = lose_after;
            s.lose_in_analyze = lose_in_analyze;
            s.force_webgpu = force;
            if !webgpu {
                s.device = Device::Off("the page asked for the CPU (?backend=cpu)".into());
            } else if matches!(s.device, Device::Off(_)) {
                s.device = Device::Untried;
            }
            Ok(())
        }
        ToWorker::Load { url } => crate::load::load_url(state, &url).await,
        ToWorker::LoadBytes { name, bytes } => crate::load::load_bytes(state, &name, bytes).await,
        ToWorker::Analyze { concept } => with_model!(state, m => analyze(state, &m, concept).await),
        ToWorker::Generate {
            prompt,
            chat,
            max_tokens,
            sampling,
            concepts,
            interventions,
            condition,
        } => {
            let setup = Steering { concepts: &concepts, specs: &interventions, condition };
            with_model!(state, m => generate(state, &m, &prompt, chat, max_tokens, sampling, setup)
                .await)
        }
        ToWorker::Converse {
            conversation,
            layer,
            max_tokens,
            sampling,
            concepts,
            interventions,
        } => with_model!(state, m => converse(
            state, &m, &conversation, layer, max_tokens, sampling, &concepts, &interventions
        )
        .await),
        ToWorker::Patch { patch } => {
            with_model!(state, m => crate::causal::patch_all(state, &m, patch).await)
        }
        ToWorker::PatchCell { patch, layer, pos } => {
            with_model!(state, m => crate::causal::patch_cell(state, &m, patch, layer, pos).await)
        }
        ToWorker::Attention { text, layer } => {
            with_model!(state, m => crate::causal::attention(&m, &text, layer).await)
        }
        ToWorker::Lens { text, chat, track } => {
            with_model!(state, m => crate::causal::lens(&m, &text, chat, track).await)
        }
        ToWorker::Read { text, concept, layer, chat_prompt } => {
            with_model!(state, m => read(state, &m, &text, concept, layer, chat_prompt).await)
        }
        ToWorker::Sweep {
            prompt,
            chat,
            max_tokens,
            concepts,
            intervention,
            strengths,
            read_layer,
        } => with_model!(state, m => sweep(
            state, &m, &prompt, chat, max_tokens, &concepts, intervention, &strengths, read_layer
        )
        .await),
        ToWorker::Export { concept, layers, strength } => {
            with_model!(state, m => export(state, &m, concept, &layers, strength).await)
        }
        ToWorker::Promotes { concept, layer } => {
            with_model!(state, m => promotes(state, &m, concept, layer).await)
        }
        ToWorker::Bench { concept } => {
            with_model!(state, m => crate::bench::bench(state, &m, concept).await)
        }
        ToWorker::Stop => Ok(()),
    }
}

async fn export<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    concept: Concept,
    layers: &[usize],
    strength: f32,
) -> Result<(), String> {
    use tiller_share::cvec::{write, ControlVector};
    let name = concept.name.clone();
    let p = prepare_one(state, model, concept, Task::Export).await?;
    if let Some(l) = layers.iter().find(|&&l| l >= p.dirs.len()) {
        return Err(format!("layer {l} is out of range"));
    }
    let cv = ControlVector {
        model_hint: model.config.architecture.clone(),
        directions: layers
            .iter()
            .map(|&l| (l, p.dirs[l].iter().map(|x| x * strength).collect()))
            .collect(),
    };
    let bytes = write(&cv).map_err(|e| e.to_string())?;
    let slug: String = name.chars().map(|c| if c.is_alphanumeric() { c } else { '-' }).collect();
    post(&FromWorker::File { name: format!("{slug}-control-vector.gguf"), bytes });
    Ok(())
}

async fn promotes<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    concept: Concept,
    layer: usize,
) -> Result<(), String> {
    if layer >= model.config.n_layer {
        return Err(format!("layer {layer} is out of range (0..={})", model.config.n_layer - 1));
    }
    let name = concept.name.clone();
    let p = prepare_one(state, model, concept.clone(), Task::Promotes).await?;
    post(&FromWorker::Working {
        task: Task::Promotes,
        stage: format!("adding `{name}` at layer {layer}"),
        done: 0,
        total: 1,
    });
    yield_now().await;
    let contexts = report::shift_contexts(model, &concept).map_err(|e| e.to_string())?;
    let promotes = report::promotes_at(model, &p, &contexts, None, layer, Options::default().top_k)
        .await
        .map_err(|e| e.to_string())?;
    post(&FromWorker::Promotes { concept: name, promotes });
    Ok(())
}

fn loaded(state: &Shared) -> Result<Loaded, String> {
    state.borrow().model.clone().ok_or_else(|| "the model is not loaded yet".to_string())
}

fn key(c: &Concept) -> String {
    serde_json::to_string(c).unwrap_or_default()
}

async fn analyze<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    concept: Concept,
) -> Result<(), String> {
    concept.validate().map_err(|e| e.to_string())?;
    let t0 = now();
    let name = concept.name.clone();
    post(&FromWorker::Working {
        task: Task::Analyze,
        stage: format!("reading {} examples of `{name}`", concept.pairs.len() * 2),
        done: 0,
        total: 4,
    });
    yield_now().await;
    // The report first (the chart appears), then what the direction promotes at the best
    // layer as a task of its own (a forward pass per context).
    let opts = Options { promotes: false, ..Options::default() };
    let lose = std::mem::take(&mut state.borrow_mut().lose_in_analyze);
    let (report, prepared) =
        analyze_and_prepare(model, &concept, concept.method, &opts, &mut |s, d, t| {
            post(&FromWorker::Working { task: Task::Analyze, stage: s.into(), done: d, total: t });
            if lose && d == 1 {
                model.backend.lose();
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    let best = report.best_layer;
    state.borrow_mut().prepared.insert(key(&concept), Rc::new(prepared));
    post(&FromWorker::Analyzed { report, ms: now() - t0 });
    state.borrow_mut().queue.push_front(ToWorker::Promotes { concept, layer: best });
    Ok(())
}

/// The concepts the enabled interventions name, prepared (from the cache when computed).
pub(crate) async fn prepare<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    concepts: &[Concept],
    specs: &[InterventionSpec],
    task: Task,
) -> Result<Vec<Rc<Prepared>>, String> {
    let mut out = Vec::new();
    for c in concepts.iter().filter(|c| specs.iter().any(|s| s.enabled && s.concept == c.name)) {
        let k = key(c);
        let hit = state.borrow().prepared.get(&k).cloned();
        let p = match hit {
            Some(p) => p,
            None => {
                post(&FromWorker::Working {
                    task,
                    stage: format!("computing concept `{}`", c.name),
                    done: 0,
                    total: 1,
                });
                yield_now().await;
                let p = Rc::new(plan::prepare(model, c).await.map_err(|e| e.to_string())?);
                state.borrow_mut().prepared.insert(k, p.clone());
                p
            }
        };
        out.push(p);
    }
    Ok(out)
}

/// One concept, prepared (from the cache when computed).
pub(crate) async fn prepare_one<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    concept: Concept,
    task: Task,
) -> Result<Rc<Prepared>, String> {
    let any = InterventionSpec {
        concept: concept.name.clone(),
        op: plan::OpKind::Add,
        layers: vec![0],
        strength: 0.0,
        positions: Default::default(),
        selective: false,
        enabled: true,
    };
    let p = prepare(state, model, &[concept], &[any], task).await?;
    p.into_iter().next().ok_or_else(|| "the concept could not be prepared".to_string())
}
