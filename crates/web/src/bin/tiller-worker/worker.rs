//! Worker state and message handling.

use crate::fetch::fetch_bytes;
use std::cell::RefCell;
use std::rc::Rc;
use tiller_engine::{Cpu, Generator, Model, Precision, Sampler};
use tiller_model::tokenizer::StreamDecoder;
use tiller_web::protocol::{FromWorker, Stage, ToWorker};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

#[derive(Default)]
struct State {
    model: Option<Rc<Model<Cpu>>>,
    busy: bool,
    stop: bool,
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(msg: &FromWorker) {
    match serde_wasm_bindgen::to_value(msg) {
        Ok(v) => {
            let _ = scope().post_message(&v);
        }
        Err(e) => {
            web_sys::console::error_1(&format!("worker: cannot serialize message: {e}").into())
        }
    }
}

fn now() -> f64 {
    js_sys::Date::now()
}

/// Let the event loop run (so a Stop message can arrive) before the next step.
async fn yield_now() {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
    });
    let _ = JsFuture::from(p).await;
}

pub fn start() {
    let state = Rc::new(RefCell::new(State::default()));
    let on_msg = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        let msg: ToWorker = match serde_wasm_bindgen::from_value(ev.data()) {
            Ok(m) => m,
            Err(e) => {
                return post(&FromWorker::Error { message: format!("bad message to worker: {e}") })
            }
        };
        let state = state.clone();
        match msg {
            ToWorker::Stop => state.borrow_mut().stop = true,
            ToWorker::Load { url } => spawn_local(async move {
                if let Err(message) = load(&state, &url).await {
                    post(&FromWorker::Error { message });
                }
            }),
            ToWorker::Generate { prompt, chat, max_tokens, sampling } => spawn_local(async move {
                let r = generate(&state, &prompt, chat, max_tokens, sampling).await;
                state.borrow_mut().busy = false;
                if let Err(message) = r {
                    post(&FromWorker::Error { message });
                }
            }),
        }
    });
    scope().set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
    on_msg.forget();
    post(&FromWorker::Started);
}

async fn load(state: &Rc<RefCell<State>>, url: &str) -> Result<(), String> {
    let t0 = now();
    let bytes = fetch_bytes(url, &mut |done, total| {
        post(&FromWorker::Progress { stage: Stage::Downloading, done, total })
    })
    .await?;
    post(&FromWorker::Progress { stage: Stage::Parsing, done: 0.0, total: None });
    yield_now().await;
    let model = Model::load_with_progress(&bytes, Cpu::default(), Precision::Fast, &mut |d, t| {
        post(&FromWorker::Progress { stage: Stage::Parsing, done: d as f64, total: Some(t as f64) })
    })
    .map_err(|e| format!("cannot load {url}: {e}"))?;
    let name = url.rsplit('/').next().unwrap_or(url).to_string();
    post(&FromWorker::Ready {
        model: name,
        backend: tiller_engine::Backend::name(&model.backend),
        n_layer: model.config.n_layer,
        d_model: model.config.d_model,
        load_ms: now() - t0,
    });
    state.borrow_mut().model = Some(Rc::new(model));
    Ok(())
}

async fn generate(
    state: &Rc<RefCell<State>>,
    prompt: &str,
    chat: bool,
    max_tokens: usize,
    sampling: tiller_engine::SamplingParams,
) -> Result<(), String> {
    let model = {
        let mut s = state.borrow_mut();
        if s.busy {
            return Err("a generation is already running".into());
        }
        let m = s.model.clone().ok_or("the model is not loaded yet")?;
        s.busy = true;
        s.stop = false;
        m
    };
    if prompt.trim().is_empty() {
        return Err("the prompt is empty: type something to continue".into());
    }
    let ids = model.encode_prompt(prompt, chat).map_err(|e| e.to_string())?;
    post(&FromWorker::Prompt { ids: ids.clone() });
    let sampler = Sampler::new(sampling).map_err(|e| e.to_string())?;
    let mut g = Generator::new(&model, &ids, max_tokens, sampler).map_err(|e| e.to_string())?;
    let mut stream = StreamDecoder::default();
    let t0 = now();
    let mut t_first = None;
    while let Some(id) = g.step(None).map_err(|e| e.to_string())? {
        t_first.get_or_insert_with(now);
        let text = stream.push(&model.tokenizer, id).map_err(|e| e.to_string())?;
        post(&FromWorker::Token { id, text });
        yield_now().await;
        if state.borrow().stop {
            g.cancel();
            break;
        }
        g.advance(None).map_err(|e| e.to_string())?;
    }
    let t_end = now();
    let gen = g.finish();
    let first = t_first.unwrap_or(t_end);
    let n_dec = gen.ids.len().saturating_sub(1) as f64;
    let text = model.tokenizer.decode(&gen.ids).map_err(|e| e.to_string())?;
    post(&FromWorker::Done {
        ids: gen.ids,
        text,
        stop: gen.stop,
        prefill_ms: first - t0,
        decode_tok_s: if n_dec > 0.0 { n_dec * 1000.0 / (t_end - first).max(1e-3) } else { 0.0 },
    });
    Ok(())
}
