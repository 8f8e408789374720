//! Top-level state: one worker, the model status, the generation; wires worker messages to
//! signals. Domain state never touches `window()`; only the worker handle does IO.

use crate::components::{GeneratePanel, ModelBar, OutputPanel};
use leptos::prelude::*;
use tiller_engine::{SamplingParams, StopReason};
use tiller_web::protocol::{FromWorker, Stage, ToWorker, DEFAULT_MODEL_URL, WORKER_URL};
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadState {
    Loading,
    Ready,
    Error,
}

impl LoadState {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadState::Loading => "loading",
            LoadState::Ready => "ready",
            LoadState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelStatus {
    pub state: LoadState,
    pub message: String,
    /// 0..=1 when known.
    pub fraction: Option<f64>,
    pub backend: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Idle,
    Running,
    Done,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Idle => "idle",
            RunState::Running => "running",
            RunState::Done => "done",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub state: RunState,
    pub text: String,
    pub ids: Vec<u32>,
    pub stats: String,
    pub error: Option<String>,
}

/// What the visitor asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prompt: String,
    pub chat: bool,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
}

fn mb(x: f64) -> String {
    format!("{:.1} MB", x / 1e6)
}

/// The model to open: `?model=URL` on the page's address, else the default model.
fn model_url() -> String {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .and_then(|q| web_sys::UrlSearchParams::new_with_str(&q).ok())
        .and_then(|p| p.get("model"))
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_MODEL_URL.to_string())
}

fn send(worker: &Worker, msg: &ToWorker) {
    if let Ok(v) = serde_wasm_bindgen::to_value(msg) {
        let _ = worker.post_message(&v);
    }
}

#[component]
pub fn App() -> impl IntoView {
    let (status, set_status) = signal(ModelStatus {
        state: LoadState::Loading,
        message: "starting the engine worker".into(),
        fraction: None,
        backend: String::new(),
    });
    let (output, set_output) = signal(Output {
        state: RunState::Idle,
        text: String::new(),
        ids: vec![],
        stats: String::new(),
        error: None,
    });

    let opts = WorkerOptions::new();
    opts.set_type(WorkerType::Classic);
    let worker = match Worker::new_with_options(WORKER_URL, &opts) {
        Ok(w) => Some(w),
        Err(e) => {
            set_status.set(ModelStatus {
                state: LoadState::Error,
                message: format!("cannot start the engine worker: {e:?}"),
                fraction: None,
                backend: String::new(),
            });
            None
        }
    };
    let worker = StoredValue::new_local(worker);

    let on_msg = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let msg: FromWorker = match serde_wasm_bindgen::from_value(ev.data()) {
            Ok(m) => m,
            Err(e) => {
                return web_sys::console::error_1(&format!("bad message from worker: {e}").into())
            }
        };
        match msg {
            FromWorker::Started => worker.with_value(|w| {
                if let Some(w) = w {
                    send(w, &ToWorker::Load { url: model_url() });
                }
            }),
            FromWorker::Progress { stage, done, total } => set_status.update(|s| {
                s.state = LoadState::Loading;
                let (msg, frac) = match stage {
                    Stage::Downloading => (
                        match total {
                            Some(t) => format!("downloading the model: {} of {}", mb(done), mb(t)),
                            None => format!("downloading the model: {}", mb(done)),
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
            FromWorker::Ready { model, backend, n_layer, d_model, load_ms } => {
                set_status.set(ModelStatus {
                    state: LoadState::Ready,
                    message: format!(
                        "{model}: {n_layer} layers, width {d_model}; loaded in {:.1} s",
                        load_ms / 1000.0
                    ),
                    fraction: Some(1.0),
                    backend,
                })
            }
            FromWorker::Prompt { .. } => {}
            FromWorker::Token { id, text } => set_output.update(|o| {
                o.ids.push(id);
                o.text.push_str(&text);
            }),
            FromWorker::Done { ids, text, stop, prefill_ms, decode_tok_s } => {
                set_output.update(|o| {
                    o.state = RunState::Done;
                    let why = match stop {
                        StopReason::Eos => "end of text",
                        StopReason::MaxTokens => "token limit",
                        StopReason::ContextFull => "context full",
                        StopReason::Cancelled => "stopped",
                    };
                    o.stats = format!(
                        "{} tokens ({why}); prompt {:.0} ms, decode {:.1} tok/s",
                        ids.len(),
                        prefill_ms,
                        decode_tok_s
                    );
                    o.ids = ids;
                    o.text = text;
                })
            }
            FromWorker::Error { message } => {
                if status.get_untracked().state == LoadState::Ready {
                    set_output.update(|o| {
                        o.state =
                            if o.state == RunState::Running { RunState::Done } else { o.state };
                        o.error = Some(message);
                    });
                } else {
                    set_status.update(|s| {
                        s.state = LoadState::Error;
                        s.message = message;
                    });
                }
            }
        }
    });
    // The worker itself failing (out of memory, a wasm trap) must not leave the page waiting.
    let on_err = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
        let message =
            format!("The engine stopped: {}. Reload the page to start it again.", ev.message());
        if status.get_untracked().state == LoadState::Ready {
            let message = message.clone();
            set_output.update(|o| {
                o.state = RunState::Done;
                o.error = Some(message);
            });
        }
        set_status.update(|s| {
            s.state = LoadState::Error;
            s.message = message;
        });
    });
    worker.with_value(|w| {
        if let Some(w) = w {
            w.set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
            w.set_onerror(Some(on_err.as_ref().unchecked_ref()));
        }
    });
    on_msg.forget();
    on_err.forget();

    let on_generate = move |req: Request| {
        if req.prompt.trim().is_empty() {
            set_output.set(Output {
                state: RunState::Idle,
                text: String::new(),
                ids: vec![],
                stats: String::new(),
                error: Some(
                    "The prompt is empty: type something for the model to continue.".into(),
                ),
            });
            return;
        }
        set_output.set(Output {
            state: RunState::Running,
            text: String::new(),
            ids: vec![],
            stats: String::new(),
            error: None,
        });
        worker.with_value(|w| {
            if let Some(w) = w {
                send(
                    w,
                    &ToWorker::Generate {
                        prompt: req.prompt,
                        chat: req.chat,
                        max_tokens: req.max_tokens,
                        sampling: req.sampling,
                    },
                );
            }
        });
    };
    let on_stop = move || {
        worker.with_value(|w| {
            if let Some(w) = w {
                send(w, &ToWorker::Stop);
            }
        })
    };

    view! {
        <header class="top">
            <h1>"Tiller"</h1>
            <p class="tagline">"See and steer what a language model represents, in your browser."</p>
        </header>
        <main>
            <ModelBar status=status />
            <GeneratePanel
                ready=Signal::derive(move || status.get().state == LoadState::Ready)
                running=Signal::derive(move || output.get().state == RunState::Running)
                on_generate=on_generate
                on_stop=on_stop
            />
            <OutputPanel output=output />
        </main>
    }
}
