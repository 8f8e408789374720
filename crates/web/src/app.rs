//! The page: starts the worker, routes its messages into [`AppState`], restores the setup
//! (share link, else autosave, else the first preset) and lays out the panels. IO (worker,
//! location, localStorage) happens here and in the share bar only.

use crate::components::{
    AttentionView, ConceptResults, ConceptsPanel, ConversationView, GeneratePanel, LensView,
    LessonPanel, ModelBar, OutputPanel, PatchView, ReadingView, ShareBar, SteeringPanel, SweepView,
};
use crate::state::{
    AppState, CellResult, Computed, ConditionResult, LensResult, LoadState, ModelStatus,
    PatchResult, Reading, RunState, TurnReadings,
};
use leptos::prelude::*;
use tiller_share::SteeringConfig;
use tiller_web::protocol::{
    FromWorker, Stage, Stream, Task, ToWorker, DEFAULT_MODEL_URL, THREADED_WORKER_URL, WORKER_URL,
};
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

/// localStorage key of the autosaved setup (JSON).
pub const AUTOSAVE_KEY: &str = "tiller.setup.v1";

fn mb(x: f64) -> String {
    format!("{:.1} MB", x / 1e6)
}

/// The model to open: `?model=URL` on the page's address, else the default model.
/// A parameter of the page's query string (`?model=URL`, `?backend=cpu`).
fn query(key: &str) -> Option<String> {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .and_then(|q| web_sys::UrlSearchParams::new_with_str(&q).ok())
        .and_then(|p| p.get(key))
        .filter(|u| !u.trim().is_empty())
}

fn model_url() -> String {
    query("model").unwrap_or_else(|| DEFAULT_MODEL_URL.to_string())
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The setup to start from: a share link in the fragment, else the autosave.
fn initial_setup(st: AppState) -> Option<SteeringConfig> {
    let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
    if hash.contains("c=") {
        match tiller_share::url::decode(&hash) {
            Ok(c) => return Some(c),
            Err(e) => st.notice.set(Some(format!("The link could not be opened: {e}"))),
        }
    }
    let saved = storage()?.get_item(AUTOSAVE_KEY).ok()??;
    SteeringConfig::from_json(&saved).ok()
}

fn on_message(st: AppState, msg: FromWorker) {
    match msg {
        FromWorker::Bench { report } => {
            st.working.set(None);
            st.bench.set(Some(report));
        }
        FromWorker::Started => {
            let url = model_url();
            st.model_id.set(url.clone());
            st.send(&ToWorker::Backend {
                webgpu: query("backend").as_deref() != Some("cpu"),
                force: query("backend").as_deref() == Some("webgpu"),
                lose_after: query("lose-gpu-after").and_then(|n| n.parse().ok()),
                lose_in_analyze: query("lose-gpu-in").as_deref() == Some("analyze"),
            });
            st.send(&ToWorker::Load { url });
        }
        FromWorker::Fallback { backend, reason, task } => {
            st.status.update(|s| {
                s.backend = format!("{backend}; WebGPU off: {reason}");
                s.concepts = "cpu".into();
            });
            st.notice.set(Some(format!(
                "The model moved to the CPU ({reason}); what was running runs again there."
            )));
            if task == Task::Generate {
                for out in [st.baseline, st.steered] {
                    out.update(|o| {
                        o.ids.clear();
                        o.text.clear();
                    });
                }
            }
        }
        FromWorker::Progress { stage, done, total, cached } => st.status.update(|s| {
            s.state = Some(LoadState::Loading);
            let from = if cached { "reading the cached model" } else { "downloading the model" };
            let (msg, frac) = match stage {
                Stage::Downloading => (
                    match total {
                        Some(t) => format!("{from}: {} of {}", mb(done), mb(t)),
                        None => format!("{from}: {}", mb(done)),
                    },
                    total.map(|t| done / t.max(1.0)),
                ),
                Stage::Parsing => {
                    ("reading the weights".to_string(), total.map(|t| done / t.max(1.0)))
                }
            };
            s.message = msg;
            s.fraction = frac;
        }),
        FromWorker::Ready {
            model,
            family,
            backend,
            concepts,
            fallback,
            n_layer,
            d_model,
            load_ms,
            sha256,
            memory_bytes,
            wasm_bytes,
            gpu_bytes,
            steps,
        } => {
            st.open_timing.set((load_ms, steps.clone()));
            st.status.set(ModelStatus {
                state: Some(LoadState::Ready),
                message: format!(
                    "{model} ({family}): {n_layer} layers, width {d_model}; ready in {:.1} s ({})",
                    load_ms / 1000.0,
                    steps
                        .iter()
                        .map(|(what, ms)| format!("{what} {:.2} s", ms / 1000.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                fraction: Some(1.0),
                backend: match fallback {
                    Some(why) => format!("{backend}; {why}"),
                    None => backend,
                },
                memory: if gpu_bytes > 0.0 {
                    format!(
                        "{} file; one copy of the weights, on the GPU ({}); worker memory {} at its peak",
                        mb(memory_bytes),
                        mb(gpu_bytes),
                        mb(wasm_bytes)
                    )
                } else {
                    format!("{} file, worker memory {} at its peak", mb(memory_bytes), mb(wasm_bytes))
                },
                concepts,
                sha256,
            });
            st.computed.set(Default::default());
            // A setup from another model still opens, and says so.
            let cfg = st.to_config();
            let status_sha = st.status.get_untracked().sha256;
            if let Some(w) = cfg
                .model_mismatch(&status_sha)
                .filter(|_| cfg.model.id != st.model_id.get_untracked())
            {
                st.notice.set(Some(w));
            }
            st.compute_next();
        }
        FromWorker::Working { task, stage, done, total } => {
            let what = match task {
                Task::Analyze => "computing the concept",
                Task::Generate => "preparing the generation",
                Task::Read => "reading",
                Task::Sweep => "sweeping",
                Task::Export => "exporting",
                Task::Promotes => "what the direction promotes",
                Task::Patch => "patching",
                Task::Lens => "the logit lens",
                Task::Attention => "attention patterns",
                Task::Bench => "benchmark",
                Task::Load => "loading",
            };
            let frac = if total > 0 { format!(" ({done}/{total})") } else { String::new() };
            st.working.set(Some(format!("{what}: {stage}{frac}")));
        }
        FromWorker::Analyzed { report, ms } => {
            st.working.set(None);
            let name = report.name.clone();
            if let Some(concept) = st.valid_concepts().into_iter().find(|c| c.name == name) {
                let layer = report.best_layer;
                let promotes = report.promotes.iter().map(|p| (p.layer, p.clone())).collect();
                st.computed.update(|m| {
                    m.insert(name.clone(), Computed { concept, report, ms, promotes });
                });
                if st.layer.get_untracked().is_none() {
                    st.layer.set(Some(layer));
                }
            }
            st.compute_next();
        }
        FromWorker::Prompt { .. } => {}
        FromWorker::Token { stream, id, text } => {
            let out = if stream == Stream::Baseline { st.baseline } else { st.steered };
            st.working.set(None);
            out.update(|o| {
                o.ids.push(id);
                o.text.push_str(&text);
            });
        }
        FromWorker::Done {
            stream,
            ids,
            text,
            stop,
            prefill_ms,
            decode_tok_s,
            dispatches_per_token,
            submits_per_token,
        } => {
            let out = if stream == Stream::Baseline { st.baseline } else { st.steered };
            out.update(|o| {
                o.finish(ids, text, stop, prefill_ms, decode_tok_s);
                if dispatches_per_token > 0.0 {
                    o.stats.push_str(&format!(
                        "; {dispatches_per_token:.0} GPU dispatches and {submits_per_token:.1} \
                         submits a decoded token"
                    ));
                }
            });
            st.working.set(None);
        }
        FromWorker::Reading { layer, concept, tokens, values } => {
            st.working.set(None);
            st.reading_error.set(None);
            st.reading.set(Some(Reading { concept, layer, tokens, values }));
        }
        FromWorker::File { name, bytes } => {
            st.working.set(None);
            save_file(&name, &bytes);
        }
        FromWorker::SweepPoint { point } => st.sweep.update(|v| v.push(point)),
        FromWorker::Promotes { concept, promotes } => {
            st.working.set(None);
            st.computed.update(|m| {
                if let Some(c) = m.get_mut(&concept) {
                    c.promotes.insert(promotes.layer, promotes);
                }
            });
        }
        FromWorker::Condition { concept, layer, score, threshold, below, met } => {
            st.condition_result.set(Some(ConditionResult {
                concept,
                layer,
                score,
                threshold,
                below,
                met,
            }));
            if !met {
                st.steered.update(|o| {
                    o.state = RunState::Done;
                    o.stats = "not steered: the prompt does not meet the condition".into();
                });
            }
        }
        FromWorker::Attention { tokens, layer, heads } => {
            st.working.set(None);
            st.attention_error.set(None);
            st.attention.set(Some((tokens, layer, heads)));
        }
        FromWorker::TurnReadings { layer, concepts, values } => {
            st.turn_readings.set(Some(TurnReadings { layer, concepts, values }));
        }
        FromWorker::Patched { tokens, source_tokens, patched, ld_base, ld_source, recovery } => {
            st.working.set(None);
            st.patch_error.set(None);
            st.patch_cell.set(None);
            st.patch.set(Some(PatchResult {
                tokens,
                source_tokens,
                patched,
                ld_base,
                ld_source,
                recovery,
            }));
        }
        FromWorker::PatchCell { layer, pos, top, base_top } => {
            st.working.set(None);
            st.patch_cell.set(Some(CellResult { layer, pos, top, base_top }));
        }
        FromWorker::Lens { tokens, top, track, tracked } => {
            st.working.set(None);
            st.lens_error.set(None);
            st.lens.set(Some(LensResult { tokens, top, track, tracked }));
        }
        FromWorker::SweepDone => {
            st.working.set(None);
            st.sweep_running.set(false);
        }
        FromWorker::Error { task, message } => {
            st.working.set(None);
            match task {
                Task::Load => st.status.update(|s| {
                    s.state = Some(LoadState::Error);
                    s.message = message;
                }),
                Task::Analyze => {
                    st.concept_error.set(Some(message));
                }
                Task::Generate => {
                    for out in [st.baseline, st.steered] {
                        out.update(|o| {
                            if o.state == RunState::Running {
                                o.state = RunState::Done;
                            }
                        });
                    }
                    st.baseline.update(|o| o.error = Some(message));
                }
                Task::Read => st.reading_error.set(Some(message)),
                Task::Promotes => st.concept_error.set(Some(message)),
                Task::Export => st.notice.set(Some(format!("Export failed: {message}"))),
                Task::Sweep => {
                    st.sweep_running.set(false);
                    st.sweep_error.set(Some(message));
                }
                Task::Patch => st.patch_error.set(Some(message)),
                Task::Lens => st.lens_error.set(Some(message)),
                Task::Attention => st.attention_error.set(Some(message)),
                Task::Bench => st.bench_error.set(Some(message)),
            }
        }
    }
}

/// Offer `bytes` as a download named `name`.
fn save_file(name: &str, bytes: &[u8]) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return };
    let arr = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("application/octet-stream");
    let Ok(blob) = web_sys::Blob::new_with_u8_array_sequence_and_options(&arr, &opts) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else { return };
    if let Ok(a) = doc.create_element("a") {
        let _ = a.set_attribute("href", &url);
        let _ = a.set_attribute("download", name);
        if let Some(a) = wasm_bindgen::JsCast::dyn_ref::<web_sys::HtmlElement>(&a) {
            a.click();
        }
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

/// Whether the page may share memory between workers (COOP/COEP from the server, or the
/// service worker of `www/coi.js` on a static host).
fn cross_origin_isolated() -> bool {
    web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &"crossOriginIsolated".into()).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// The threaded engine when the page is cross-origin isolated (unless `?threads=1`), else the
/// single-threaded one; a threaded worker that fails before it starts is replaced by the
/// single-threaded one.
fn start_worker(st: AppState) {
    let threaded = cross_origin_isolated() && query("threads").as_deref() != Some("1");
    spawn_worker(st, if threaded { THREADED_WORKER_URL } else { WORKER_URL }, None);
}

/// `why_one`: why the single-threaded worker replaces the threaded one; it reads it from its
/// name and says it in the backend line.
fn spawn_worker(st: AppState, url: &'static str, why_one: Option<String>) {
    let opts = WorkerOptions::new();
    opts.set_type(WorkerType::Classic);
    let adopt = why_one.is_none();
    if let Some(why) = why_one {
        opts.set_name(&format!("{}{why}", tiller_web::protocol::FALLBACK_NAME));
    }
    // The worker index.html started for this URL, with what it said meanwhile, if any.
    let early = if adopt { adopt_early(url) } else { None };
    let (worker, said) = match early {
        Some((w, said)) => (Ok(w), said),
        None => (Worker::new_with_options(url, &opts), Vec::new()),
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            st.status.set(ModelStatus {
                state: Some(LoadState::Error),
                message: format!("cannot start the engine worker: {e:?}"),
                ..Default::default()
            });
            return;
        }
    };
    let started = std::rc::Rc::new(std::cell::Cell::new(false));
    let started_in = started.clone();
    let on_msg = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        match serde_wasm_bindgen::from_value::<FromWorker>(ev.data()) {
            Ok(m) => {
                if matches!(m, FromWorker::Started) {
                    started_in.set(true);
                }
                on_message(st, m)
            }
            Err(e) => web_sys::console::error_1(&format!("bad message from worker: {e}").into()),
        }
    });
    // The worker itself failing (out of memory, a wasm trap) must not leave the page waiting.
    let w = worker.clone();
    let on_err = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
        if url == THREADED_WORKER_URL && !started.get() {
            web_sys::console::warn_1(
                &format!("the threaded engine did not start ({}); using one thread", ev.message())
                    .into(),
            );
            w.terminate();
            let why = format!("the threaded engine did not start ({})", ev.message());
            return spawn_worker(st, WORKER_URL, Some(why));
        }
        let message =
            format!("The engine stopped: {}. Reload the page to start it again.", ev.message());
        st.working.set(None);
        for out in [st.baseline, st.steered] {
            out.update(|o| {
                if o.state == RunState::Running {
                    o.state = RunState::Done;
                    o.error = Some(message.clone());
                }
            });
        }
        st.status.update(|s| {
            s.state = Some(LoadState::Error);
            s.message = message;
        });
    });
    worker.set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_err.as_ref().unchecked_ref()));
    on_msg.forget();
    on_err.forget();
    st.worker.set_value(Some(worker.clone()));
    // What the adopted worker said before the page's handlers were set, in order.
    for (ev, error) in said {
        let handler = if error { worker.onerror() } else { worker.onmessage() };
        if let Some(f) = handler {
            let _ = f.call1(&worker, &ev);
        }
    }
}

/// Take the worker index.html started early for `url` (see its inline script), with its
/// messages and then its errors so far (`true` marks an error event). None when it started
/// none, or one for another URL (which is then ended).
fn adopt_early(url: &str) -> Option<(Worker, Vec<(JsValue, bool)>)> {
    let window: JsValue = web_sys::window()?.into();
    let key = JsValue::from_str("__tillerEarlyWorker");
    let early = js_sys::Reflect::get(&window, &key).ok().filter(|v| v.is_object())?;
    let _ = js_sys::Reflect::delete_property(window.unchecked_ref::<js_sys::Object>(), &key);
    let get = |k: &str| js_sys::Reflect::get(&early, &JsValue::from_str(k)).ok();
    let worker: Worker = get("worker")?.dyn_into().ok()?;
    if get("url")?.as_string().as_deref() != Some(url) {
        worker.terminate();
        return None;
    }
    let list = |k: &str| get(k).and_then(|v| v.dyn_into::<js_sys::Array>().ok());
    let mut said: Vec<(JsValue, bool)> = Vec::new();
    said.extend(list("messages")?.iter().map(|m| (m, false)));
    said.extend(list("errors")?.iter().map(|e| (e, true)));
    Some((worker, said))
}

#[component]
pub fn App() -> impl IntoView {
    let st = AppState::new();
    provide_context(st);
    match initial_setup(st) {
        Some(c) => st.apply_config(&c),
        None => st.apply_config(&crate::components::share_bar::starter()),
    }
    crate::components::lesson::start(st);
    start_worker(st);
    // Autosave: the setup goes to localStorage whenever it changes, so a reload loses nothing.
    Effect::new(move |_| {
        st.concepts.track();
        st.interventions.track();
        st.gen.track();
        st.selected.track();
        st.layer.track();
        st.reading_text.track();
        st.large_text.track();
        st.condition.track();
        st.conversation.track();
        st.lesson.track();
        st.lesson_step.track();
        let json = st.to_config().to_json_pretty();
        if let Some(s) = storage() {
            let _ = s.set_item(AUTOSAVE_KEY, &json);
        }
    });
    view! {
        <div class="app" class:large=move || st.large_text.get() class:lesson-open=move || st.lesson.with(|l| l.is_some())>
            <ShareBar />
            <Show when=move || st.notice.get().is_some()>
                <p class="notice" role="status" data-testid="notice">{move || st.notice.get().unwrap_or_default()}</p>
            </Show>
            <main>
                <LessonPanel />
                <ModelBar />
                <div class="columns">
                    <div class="column">
                        <ConceptsPanel />
                        <ConceptResults />
                    </div>
                    <div class="column">
                        <SteeringPanel />
                        <GeneratePanel />
                        <OutputPanel />
                        <ReadingView />
                        <SweepView />
                        <ConversationView />
                        <PatchView />
                        <LensView />
                        <AttentionView />
                    </div>
                </div>
            </main>
        </div>
    }
}
