//! The page's own benchmark: prefill and greedy decode of a fixed prompt, and one concept's
//! full compute (capture, directions, every diagnostic), on whichever device holds the model.
//! The same prompt as `tests/e2e/bench.mjs` (201 tokens on SmolLM2).

use crate::device::OnDevice;
use crate::worker::{now, post, yield_now, Shared};
use tiller_engine::{Generator, Model, Sampler, SamplingParams};
use tiller_steer::concept::Concept;
use tiller_steer::report::{analyze_and_prepare, Options};
use tiller_web::protocol::{BenchReport, FromWorker, Task};

/// The prompt: this sentence eight times (201 tokens on SmolLM2).
pub const UNIT: &str = "The history of the printing press begins in the fifteenth century, when movable type changed how books were made and read across Europe. ";
/// Tokens decoded after it.
pub const DECODE: usize = 64;

fn working(stage: &str, done: usize) {
    post(&FromWorker::Working { task: Task::Bench, stage: stage.into(), done, total: 3 });
}

pub(crate) async fn bench<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    concept: Concept,
) -> Result<(), String> {
    concept.validate().map_err(|e| e.to_string())?;
    working("prefill", 0);
    yield_now().await;
    let ids = model.encode_prompt(&UNIT.repeat(8), false).map_err(|e| e.to_string())?;
    let sampler = Sampler::new(SamplingParams::default()).map_err(|e| e.to_string())?;
    let mut g = Generator::new(model, &ids, DECODE, sampler).map_err(|e| e.to_string())?;
    let t0 = now();
    let (mut first, mut n, mut counters) = (None, 0usize, (0, 0));
    while let Some(logits) = g.forward(None).await.map_err(|e| e.to_string())? {
        let id = g.pick(&logits).await.map_err(|e| e.to_string())?;
        g.accept(id);
        n += 1;
        if first.is_none() {
            first = Some(now());
            counters = model.backend.counters();
            working("decode", 1);
        }
        // Stop is seen between tokens (a token's time includes this yield, as in generation).
        yield_now().await;
        if state.borrow().stop {
            g.cancel();
            return Err("the benchmark was stopped".into());
        }
    }
    let end = now();
    let first = first.unwrap_or(end);
    let (d1, s1) = model.backend.counters();
    let decoded = n.saturating_sub(1);
    let per = |a: u64, b: u64| if decoded > 0 { (a - b) as f64 / decoded as f64 } else { 0.0 };
    working(&format!("computing `{}` ({} pairs)", concept.name, concept.pairs.len()), 2);
    yield_now().await;
    let tc = now();
    // As the page computes a concept (the unembedding's promoted tokens come on request).
    let opts = Options { promotes: false, ..Options::default() };
    let mut stages: Vec<(String, f64)> = Vec::new();
    let mut last = tc;
    analyze_and_prepare(model, &concept, concept.method, &opts, &mut |stage, done, total| {
        let t = now();
        if let Some(s) = stages.last_mut() {
            s.1 = t - last;
        }
        last = t;
        // The last call (done == total) only ends the stage before it.
        if done < total {
            stages.push((stage.to_string(), 0.0));
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    let concept_ms = now() - tc;
    let prefill_ms = first - t0;
    post(&FromWorker::Bench {
        report: BenchReport {
            backend: tiller_engine::Backend::name(&model.backend),
            prompt_tokens: ids.len(),
            prefill_ms,
            prefill_tok_s: ids.len() as f64 * 1000.0 / prefill_ms.max(1e-3),
            decode_tokens: decoded,
            decode_tok_s: decoded as f64 * 1000.0 / (end - first).max(1e-3),
            dispatches_per_token: per(d1, counters.0),
            submits_per_token: per(s1, counters.1),
            concept: concept.name.clone(),
            concept_pairs: concept.pairs.len(),
            concept_ms,
            concept_stages_ms: stages,
        },
    });
    Ok(())
}
