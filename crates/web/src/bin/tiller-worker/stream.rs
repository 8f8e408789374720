//! Generation streamed to the page, on the CPU or the WebGPU model alike.

use crate::device::GPU_FAILURE;
use crate::worker::{now, post, yield_now, Shared};
use tiller_engine::{Cpu, Generator, Model, Sampler};
use tiller_gpu::backend::GpuAct;
use tiller_gpu::Gpu;
use tiller_model::tokenizer::StreamDecoder;
use tiller_web::protocol::{FromWorker, Stream};

/// How a backend turns a generator's logits into the next token in the worker without
/// blocking: the CPU samples its host logits; WebGPU runs the argmax on the device and reads
/// back one id (greedy), or reads the logits back asynchronously and samples them.
pub(crate) trait Pick: tiller_engine::Backend + Sized {
    async fn pick(&self, g: &mut Generator<'_, Self>, logits: Self::Act) -> Result<u32, String>;
    /// The test hook's device loss (nothing on the CPU).
    fn lose(&self) {}
}

impl Pick for Cpu {
    async fn pick(&self, g: &mut Generator<'_, Self>, logits: Self::Act) -> Result<u32, String> {
        Ok(g.sample(&tiller_engine::Backend::to_host(self, &logits)))
    }
}

impl Pick for Gpu {
    async fn pick(&self, g: &mut Generator<'_, Self>, logits: GpuAct) -> Result<u32, String> {
        let id = if g.greedy() {
            self.argmax_async(&logits).await.map_err(|e| e.to_string())?
        } else {
            let l = self.read_act_async(&logits).await.map_err(|e| e.to_string())?;
            g.sample(&l)
        };
        match GPU_FAILURE.lock().ok().and_then(|f| f.clone()) {
            Some(why) => Err(why),
            None => Ok(id),
        }
    }
    fn lose(&self) {
        self.device.destroy();
    }
}

/// Baseline and (with steering) steered generation in lockstep on `model`, a token of each
/// per turn of the event loop, streamed to the page.
pub(crate) async fn stream<B: Pick>(
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
    loop {
        let mut any = false;
        for r in runs.iter_mut().filter(|r| r.live) {
            let hooks = match (&mut *steer, r.stream) {
                (Some(p), Stream::Steered) => Some(p as &mut dyn tiller_engine::Hooks),
                _ => None,
            };
            match r.g.forward(hooks).map_err(|e| e.to_string())? {
                Some(logits) => {
                    let id = model.backend.pick(&mut r.g, logits).await?;
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
        });
    }
    Ok(())
}
