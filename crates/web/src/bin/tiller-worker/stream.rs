//! Generation streamed to the page, on the CPU or the WebGPU model alike.

use crate::device::OnDevice;
use crate::worker::{now, post, yield_now, Shared};
use tiller_engine::{Generator, Model, Sampler};
use tiller_model::tokenizer::StreamDecoder;
use tiller_web::protocol::{FromWorker, Stream};

/// Baseline and (with steering) steered generation in lockstep on `model`, a token of each
/// per turn of the event loop, streamed to the page. The token is chosen where the logits are
/// (WebGPU: an argmax on the device reads back one id, or the logits are read back without
/// blocking and sampled here).
pub(crate) async fn stream<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    ids: &[u32],
    max_tokens: usize,
    sampling: tiller_engine::SamplingParams,
    steer: &mut Option<tiller_steer::intervene::Plan>,
) -> Result<(), String> {
    let new_gen = |p: &tiller_engine::SamplingParams| -> Result<Generator<'_, B>, String> {
        let s = Sampler::new(*p).map_err(|e| e.to_string())?;
        Generator::new(model, ids, max_tokens, s).map_err(|e| e.to_string())
    };
    struct Run<'m, B: tiller_engine::Backend> {
        g: Generator<'m, B>,
        stream: Stream,
        dec: StreamDecoder,
        live: bool,
        t0: f64,
        first: Option<f64>,
        end: f64,
    }
    let run = |g, stream| Run {
        g,
        stream,
        dec: StreamDecoder::default(),
        live: true,
        t0: now(),
        first: None,
        end: 0.0,
    };
    let mut runs = vec![run(new_gen(&sampling)?, Stream::Baseline)];
    if steer.is_some() {
        runs.push(run(new_gen(&sampling)?, Stream::Steered));
    }
    // The GPU's counters once every stream has its first token (after the prompts).
    let mut after_prompt: Option<((u64, u64), usize)> = None;
    loop {
        let mut any = false;
        for r in runs.iter_mut().filter(|r| r.live) {
            let hooks = match (&mut *steer, r.stream) {
                (Some(p), Stream::Steered) => Some(p as &mut dyn tiller_engine::Hooks),
                _ => None,
            };
            match r.g.forward(hooks).await.map_err(|e| e.to_string())? {
                Some(logits) => {
                    let id = r.g.pick(&logits).await.map_err(|e| e.to_string())?;
                    r.g.accept(id);
                    r.first.get_or_insert_with(now);
                    let text = r.dec.push(&model.tokenizer, id).map_err(|e| e.to_string())?;
                    post(&FromWorker::Token { stream: r.stream, id, text });
                    any = true;
                    let lose = {
                        let mut s = state.borrow_mut();
                        let now = s.lose_after.is_some_and(|n| r.g.ids.len() >= n);
                        if now {
                            s.lose_after = None;
                        }
                        now
                    };
                    if lose {
                        model.backend.lose();
                    }
                }
                None => {
                    r.live = false;
                    r.end = now();
                }
            }
        }
        if after_prompt.is_none() {
            let n: usize = runs.iter().map(|r| r.g.ids.len()).sum();
            after_prompt = Some((model.backend.counters(), n));
        }
        yield_now().await;
        if state.borrow().stop {
            for r in runs.iter_mut().filter(|r| r.live) {
                r.g.cancel();
                r.live = false;
                r.end = now();
            }
        }
        if !any {
            break;
        }
    }
    let (dispatches_per_token, submits_per_token) = match after_prompt {
        Some(((d0, s0), n0)) => {
            let n: usize = runs.iter().map(|r| r.g.ids.len()).sum();
            let (d, s) = model.backend.counters();
            let per = |a: u64, b: u64| if n > n0 { (a - b) as f64 / (n - n0) as f64 } else { 0.0 };
            (per(d, d0), per(s, s0))
        }
        None => (0.0, 0.0),
    };
    for r in runs {
        let (t0, end, first, stream) = (r.t0, r.end.max(r.t0), r.first, r.stream);
        let gen = r.g.finish();
        let first = first.unwrap_or(end);
        let n_dec = gen.ids.len().saturating_sub(1) as f64;
        let text = model.tokenizer.decode(&gen.ids).map_err(|e| e.to_string())?;
        post(&FromWorker::Done {
            stream,
            ids: gen.ids,
            text,
            stop: gen.stop,
            prefill_ms: first - t0,
            decode_tok_s: if n_dec > 0.0 { n_dec * 1000.0 / (end - first).max(1e-3) } else { 0.0 },
            dispatches_per_token,
            submits_per_token,
        });
    }
    Ok(())
}
