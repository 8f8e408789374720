//! Worker state and message handling. One task runs at a time; every long task yields to the
//! event loop between steps so `Stop` is seen and progress reaches the page.

use crate::device::{device, gpu_failed, Device};
use crate::fetch::{fetch_cached, remember};
use crate::stream::stream;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tiller_engine::{Capture, Cpu, LogitsFor, Model, Precision};
use tiller_gpu::Gpu;
use tiller_steer::concept::Concept;
use tiller_steer::lineas::LineasParams;
use tiller_steer::plan::{self, InterventionSpec, Prepared};
use tiller_steer::report::{self, analyze_and_prepare, Options};
use tiller_web::protocol::{FromWorker, Stage, Task, ToWorker};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

#[derive(Default)]
pub(crate) struct State {
    /// The model on the CPU: concept work, reading, sweeps, and generation without WebGPU.
    pub(crate) model: Option<Rc<Model<Cpu>>>,
    /// The same model on the WebGPU device: generation (forward, steering, argmax) runs there.
    pub(crate) gpu_model: Option<Rc<Model<Gpu>>>,
    pub(crate) device: Device,
    /// Test hook: destroy the WebGPU device after this many generated tokens.
    pub(crate) lose_after: Option<usize>,
    /// `?backend=webgpu`: use WebGPU even on a software adapter.
    pub(crate) force_webgpu: bool,
    /// Prepared concepts by their JSON (a changed example is a different concept).
    pub(crate) prepared: HashMap<String, Rc<Prepared>>,
    pub(crate) queue: std::collections::VecDeque<ToWorker>,
    pub(crate) busy: bool,
    pub(crate) stop: bool,
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

/// Let the event loop run (so a Stop message can arrive) before the next step.
pub(crate) async fn yield_now() {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
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
        if let Err(message) = run(state, msg).await {
            post(&FromWorker::Error { task, message });
        }
    }
}

fn task_of(m: &ToWorker) -> Task {
    match m {
        ToWorker::Analyze { .. } => Task::Analyze,
        ToWorker::Generate { .. } => Task::Generate,
        ToWorker::Read { .. } => Task::Read,
        ToWorker::Sweep { .. } => Task::Sweep,
        ToWorker::Export { .. } => Task::Export,
        ToWorker::Promotes { .. } => Task::Promotes,
        ToWorker::Load { .. }
        | ToWorker::LoadBytes { .. }
        | ToWorker::Backend { .. }
        | ToWorker::Stop => Task::Load,
    }
}

async fn run(state: &Shared, msg: ToWorker) -> Result<(), String> {
    match msg {
        ToWorker::Backend { webgpu, force, lose_after } => {
            let mut s = state.borrow_mut();
            s.lose_after = lose_after;
            s.force_webgpu = force;
            if !webgpu {
                s.device = Device::Off("the page asked for the CPU (?backend=cpu)".into());
            } else if matches!(s.device, Device::Off(_)) {
                s.device = Device::Untried;
            }
            Ok(())
        }
        ToWorker::Load { url } => load_url(state, &url).await,
        ToWorker::LoadBytes { name, bytes } => load(state, &name, bytes, now()).await.map(|_| ()),
        ToWorker::Analyze { concept } => analyze(state, concept).await,
        ToWorker::Generate { prompt, chat, max_tokens, sampling, concepts, interventions } => {
            generate(state, &prompt, chat, max_tokens, sampling, &concepts, &interventions).await
        }
        ToWorker::Read { text, concept, layer, chat_prompt } => {
            read(state, &text, concept, layer, chat_prompt).await
        }
        ToWorker::Sweep {
            prompt,
            chat,
            max_tokens,
            concepts,
            intervention,
            strengths,
            read_layer,
        } => {
            sweep(state, &prompt, chat, max_tokens, &concepts, intervention, &strengths, read_layer)
                .await
        }
        ToWorker::Export { concept, layers, strength } => {
            export(state, concept, &layers, strength).await
        }
        ToWorker::Promotes { concept, layer } => promotes(state, concept, layer).await,
        ToWorker::Stop => Ok(()),
    }
}

async fn export(
    state: &Shared,
    concept: Concept,
    layers: &[usize],
    strength: f32,
) -> Result<(), String> {
    use tiller_share::cvec::{write, ControlVector};
    let model = model(state)?;
    let name = concept.name.clone();
    let p = prepare_one(state, &model, concept, Task::Export).await?;
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

async fn promotes(state: &Shared, concept: Concept, layer: usize) -> Result<(), String> {
    let model = model(state)?;
    if layer >= model.config.n_layer {
        return Err(format!("layer {layer} is out of range (0..={})", model.config.n_layer - 1));
    }
    let name = concept.name.clone();
    let p = prepare_one(state, &model, concept.clone(), Task::Promotes).await?;
    post(&FromWorker::Working {
        task: Task::Promotes,
        stage: format!("adding `{name}` at layer {layer}"),
        done: 0,
        total: 1,
    });
    yield_now().await;
    let contexts = report::shift_contexts(&model, &concept).map_err(|e| e.to_string())?;
    let promotes =
        report::promotes_at(&model, &p, &contexts, None, layer, Options::default().top_k)
            .map_err(|e| e.to_string())?;
    post(&FromWorker::Promotes { concept: name, promotes });
    Ok(())
}

fn model(state: &Shared) -> Result<Rc<Model<Cpu>>, String> {
    state.borrow().model.clone().ok_or_else(|| "the model is not loaded yet".to_string())
}

async fn load_url(state: &Shared, url: &str) -> Result<(), String> {
    let t0 = now();
    let (bytes, cached) = fetch_cached(url, &mut |done, total, cached| {
        post(&FromWorker::Progress { stage: Stage::Downloading, done, total, cached })
    })
    .await?;
    let mut bytes = load(state, url, bytes, t0).await?;
    if !cached {
        remember(url, &mut bytes).await;
    }
    Ok(())
}

/// Load a model from its bytes; hands the bytes back (for the cache).
async fn load(state: &Shared, name: &str, bytes: Vec<u8>, t0: f64) -> Result<Vec<u8>, String> {
    post(&FromWorker::Progress { stage: Stage::Parsing, done: 0.0, total: None, cached: false });
    yield_now().await;
    let sha256 = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let model = Model::load_with_progress(&bytes, Cpu::default(), Precision::Fast, &mut |d, t| {
        post(&FromWorker::Progress {
            stage: Stage::Parsing,
            done: d as f64,
            total: Some(t as f64),
            cached: false,
        })
    })
    .map_err(|e| format!("cannot load {name}: {e}"))?;
    let force = state.borrow().force_webgpu;
    let gpu_model = match device(state).await {
        // A software adapter runs the GPU path on the CPU, slower than the CPU backend itself:
        // not used unless the page asks for it.
        Ok(gpu) if gpu.info.device_type == wgpu::DeviceType::Cpu && !force => {
            Err("WebGPU here is a software adapter, slower than the CPU backend, so the page runs \
             on the CPU (?backend=webgpu uses the adapter anyway)"
                .to_string())
        }
        Ok(gpu) => {
            post(&FromWorker::Progress {
                stage: Stage::Parsing,
                done: 0.0,
                total: None,
                cached: false,
            });
            yield_now().await;
            match Model::load(&bytes, gpu, Precision::Fast) {
                Ok(m) => match tiller_engine::Backend::fits(&m.backend, &m.config, 1, 1) {
                    Ok(()) => Ok(Rc::new(m)),
                    Err(e) => Err(format!("the model does not run on this WebGPU device: {e}")),
                },
                Err(e) => Err(format!("the model does not fit this WebGPU device: {e}")),
            }
        }
        Err(why) => Err(why),
    };
    let short = name.rsplit('/').next().unwrap_or(name).to_string();
    let (backend, fallback) = match &gpu_model {
        Ok(g) if g.backend.info.device_type == wgpu::DeviceType::Cpu => {
            let name = tiller_engine::Backend::name(&g.backend);
            (
                format!("{name} (asked for with ?backend=webgpu; the CPU backend is faster here)"),
                None,
            )
        }
        Ok(g) => (tiller_engine::Backend::name(&g.backend), None),
        Err(why) => (tiller_engine::Backend::name(&model.backend), Some(why.clone())),
    };
    post(&FromWorker::Ready {
        model: short,
        family: model.config.architecture.clone(),
        backend,
        fallback,
        n_layer: model.config.n_layer,
        d_model: model.config.d_model,
        load_ms: now() - t0,
        sha256,
        memory_bytes: bytes.len() as f64,
        wasm_bytes: wasm_memory_bytes(),
    });
    let mut s = state.borrow_mut();
    s.model = Some(Rc::new(model));
    s.gpu_model = gpu_model.ok();
    s.prepared.clear();
    Ok(bytes)
}

/// The size of this worker's wasm memory (its high-water mark: wasm memory only grows).
fn wasm_memory_bytes() -> f64 {
    use wasm_bindgen::JsCast;
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .ok()
        .and_then(|m| m.buffer().dyn_into::<js_sys::ArrayBuffer>().ok())
        .map_or(0.0, |b| b.byte_length() as f64)
}

fn key(c: &Concept) -> String {
    serde_json::to_string(c).unwrap_or_default()
}

async fn analyze(state: &Shared, concept: Concept) -> Result<(), String> {
    let model = model(state)?;
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
    let (report, prepared) =
        analyze_and_prepare(&model, &concept, concept.method, &opts, &mut |s, d, t| {
            post(&FromWorker::Working { task: Task::Analyze, stage: s.into(), done: d, total: t })
        })
        .map_err(|e| e.to_string())?;
    let best = report.best_layer;
    state.borrow_mut().prepared.insert(key(&concept), Rc::new(prepared));
    post(&FromWorker::Analyzed { report, ms: now() - t0 });
    state.borrow_mut().queue.push_front(ToWorker::Promotes { concept, layer: best });
    Ok(())
}

/// The concepts the enabled interventions name, prepared (from the cache when computed).
async fn prepare(
    state: &Shared,
    model: &Model<Cpu>,
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
                let p = Rc::new(plan::prepare(model, c).map_err(|e| e.to_string())?);
                state.borrow_mut().prepared.insert(k, p.clone());
                p
            }
        };
        out.push(p);
    }
    Ok(out)
}

/// One concept, prepared (from the cache when computed).
async fn prepare_one(
    state: &Shared,
    model: &Model<Cpu>,
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

#[allow(clippy::too_many_arguments)]
async fn generate(
    state: &Shared,
    prompt: &str,
    chat: bool,
    max_tokens: usize,
    sampling: tiller_engine::SamplingParams,
    concepts: &[Concept],
    specs: &[InterventionSpec],
) -> Result<(), String> {
    let model = model(state)?;
    if prompt.trim().is_empty() {
        return Err("the prompt is empty: type something to continue".into());
    }
    let ids = model.encode_prompt(prompt, chat).map_err(|e| e.to_string())?;
    if ids.len() >= model.config.context_length {
        return Err(format!(
            "the prompt has {} tokens; the model's context holds {}: shorten it",
            ids.len(),
            model.config.context_length
        ));
    }
    let prepared = prepare(state, &model, concepts, specs, Task::Generate).await?;
    let owned: Vec<Prepared> = prepared.iter().map(|p| Prepared::clone(p)).collect();
    if specs.iter().any(|s| s.enabled && s.op == plan::OpKind::Affine) {
        post(&FromWorker::Working {
            task: Task::Generate,
            stage: "training LinEAS maps".into(),
            done: 0,
            total: 1,
        });
        yield_now().await;
    }
    let mut steer = plan::build(&model, &owned, specs, ids.len(), &LineasParams::default())
        .map_err(|e| e.to_string())?;
    post(&FromWorker::Prompt { ids: ids.clone() });
    let gpu_model = state.borrow().gpu_model.clone();
    if let Some(gm) = gpu_model.filter(|_| gpu_failed(state).is_none()) {
        match stream(state, &gm, &ids, max_tokens, sampling, &mut steer).await {
            // The device failed mid-way: the page was told (Fallback) and clears the text;
            // the same generation runs again on the CPU.
            Err(_) if gpu_failed(state).is_some() => {}
            r => return r,
        }
    }
    stream(state, &model, &ids, max_tokens, sampling, &mut steer).await
}

async fn read(
    state: &Shared,
    text: &str,
    concept: Concept,
    layer: usize,
    chat_prompt: Option<String>,
) -> Result<(), String> {
    let model = model(state)?;
    if text.trim().is_empty() {
        return Err("there is no text to read: type or paste some".into());
    }
    let text = match chat_prompt {
        Some(p) => {
            let user = tiller_model::ChatMessage::user(p);
            let conv = model.chat.render(&[user], true).map_err(|e| e.to_string())?;
            format!("{conv}{text}")
        }
        None => text.to_string(),
    };
    let text = text.as_str();
    if layer >= model.config.n_layer {
        return Err(format!("layer {layer} is out of range (0..={})", model.config.n_layer - 1));
    }
    let ids = model.encode_prompt(text, false).map_err(|e| e.to_string())?;
    if ids.len() > model.config.context_length {
        return Err(format!(
            "the text has {} tokens; the model reads at most {}",
            ids.len(),
            model.config.context_length
        ));
    }
    let name = concept.name.clone();
    let p = prepare_one(state, &model, concept, Task::Read).await?;
    let u = {
        let v = &p.dirs[layer];
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let mut cap = Capture::new([layer]);
    model.session().forward(&ids, Some(&mut cap), LogitsFor::Last).map_err(|e| e.to_string())?;
    let d = model.config.d_model;
    let values = cap.rows[0]
        .chunks_exact(d)
        .map(|h| h.iter().zip(&u).map(|(a, b)| a * b).sum::<f32>())
        .collect();
    let tokens = ids.iter().map(|&i| model.tokenizer.decode(&[i]).unwrap_or_default()).collect();
    post(&FromWorker::Reading { layer, concept: name, tokens, values });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn sweep(
    state: &Shared,
    prompt: &str,
    chat: bool,
    max_tokens: usize,
    concepts: &[Concept],
    spec: InterventionSpec,
    strengths: &[f32],
    read_layer: usize,
) -> Result<(), String> {
    use tiller_steer::sweep::{Sweep, Sweeper};
    let model = model(state)?;
    let all: Vec<InterventionSpec> = concepts
        .iter()
        .map(|c| InterventionSpec { concept: c.name.clone(), enabled: true, ..spec.clone() })
        .collect();
    let prepared = prepare(state, &model, concepts, &all, Task::Sweep).await?;
    let owned: Vec<Prepared> = prepared.iter().map(|p| Prepared::clone(p)).collect();
    let prompt_ids = model.encode_prompt(prompt, chat).map_err(|e| e.to_string())?;
    let total = 2 * strengths.len() + 1;
    post(&FromWorker::Working {
        task: Task::Sweep,
        stage: "unsteered references (prompt and neutral texts)".into(),
        done: 0,
        total,
    });
    yield_now().await;
    let sw = Sweep {
        spec: &spec,
        strengths,
        prompt: &prompt_ids,
        neutral: &[],
        max_tokens,
        read_layer,
        control: true,
    };
    let sweeper = Sweeper::new(&model, &owned, &sw).map_err(|e| e.to_string())?;
    let runs = strengths.iter().map(|&x| (x, false)).chain(strengths.iter().map(|&x| (x, true)));
    for (i, (x, control)) in runs.enumerate() {
        let what = if control { "random control" } else { "strength" };
        post(&FromWorker::Working {
            task: Task::Sweep,
            stage: format!("{what} {x}"),
            done: i + 1,
            total,
        });
        yield_now().await;
        if state.borrow().stop {
            break;
        }
        let point = sweeper.point(x, control).map_err(|e| e.to_string())?;
        post(&FromWorker::SweepPoint { point });
    }
    post(&FromWorker::SweepDone);
    Ok(())
}
