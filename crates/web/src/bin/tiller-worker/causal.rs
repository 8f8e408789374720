//! The causal tools in the worker: activation patching (the heatmap and one cell's
//! distribution) and the logit lens, on whichever device holds the model.

use crate::device::OnDevice;
use crate::worker::{post, prepare_one, yield_now, Shared};
use tiller_engine::{LogitsFor, Model};
use tiller_steer::lens::{lens as logit_lens, softmax, top_k};
use tiller_steer::patch::{self, PatchSetup, Patched};
use tiller_web::protocol::{FromWorker, PatchRequest, Task};

/// Tokens listed per lens cell and per patched distribution.
const TOP: usize = 5;

fn texts<B: OnDevice>(model: &Model<B>, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&i| model.tokenizer.decode(&[i]).unwrap_or_default()).collect()
}

/// The request as token ids, and the directions when a concept is patched.
async fn setup<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    r: &PatchRequest,
    task: Task,
) -> Result<(PatchSetup, Option<(String, Vec<Vec<f32>>)>), String> {
    let e = |e: tiller_steer::Error| e.to_string();
    if r.base.trim().is_empty() || r.source.trim().is_empty() {
        return Err("give a base prompt and a source prompt".into());
    }
    let enc = |t: &str| model.encode_prompt(t, r.chat).map_err(|e| e.to_string());
    let setup = PatchSetup {
        base: enc(&r.base)?,
        source: enc(&r.source)?,
        answer: patch::token_id(model, &r.answer).map_err(|x| format!("answer: {}", e(x)))?,
        wrong: patch::token_id(model, &r.wrong).map_err(|x| format!("wrong token: {}", e(x)))?,
    };
    if setup.base.len() != setup.source.len() {
        return Err(format!(
            "the base is {} tokens ({:?}) and the source {} ({:?}): patching needs equal token \
             counts; reword one",
            setup.base.len(),
            texts(model, &setup.base),
            setup.source.len(),
            texts(model, &setup.source)
        ));
    }
    let dirs = match &r.concept {
        Some(c) => {
            let p = prepare_one(state, model, c.clone(), task).await?;
            Some((c.name.clone(), p.dirs.clone()))
        }
        None => None,
    };
    Ok((setup, dirs))
}

pub(crate) async fn patch_all<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    r: PatchRequest,
) -> Result<(), String> {
    let (setup, dirs) = setup(state, model, &r, Task::Patch).await?;
    let what = dirs.as_ref().map_or(Patched::Residual, |(_, d)| Patched::Direction(d));
    let n_layer = model.config.n_layer;
    post(&FromWorker::Working {
        task: Task::Patch,
        stage: format!("{} patched runs", n_layer * setup.base.len()),
        done: 0,
        total: n_layer,
    });
    yield_now().await;
    let p = patch::Patcher::new(model, &setup, what).await.map_err(|e| e.to_string())?;
    let mut recovery = Vec::with_capacity(n_layer);
    for layer in 0..n_layer {
        let ld = p.layer(layer).await.map_err(|e| e.to_string())?;
        recovery.push(ld.iter().map(|&v| p.recovery(v)).collect());
        post(&FromWorker::Working {
            task: Task::Patch,
            stage: format!("layer {layer}"),
            done: layer + 1,
            total: n_layer,
        });
        yield_now().await;
        if state.borrow().stop {
            return Err("stopped".into());
        }
    }
    post(&FromWorker::Patched {
        tokens: texts(model, &setup.base),
        source_tokens: texts(model, &setup.source),
        patched: dirs.as_ref().map_or("residual".into(), |(n, _)| format!("direction:{n}")),
        ld_base: p.ld_base,
        ld_source: p.ld_source,
        recovery,
    });
    Ok(())
}

fn top_texts<B: OnDevice>(model: &Model<B>, logits: &[f32]) -> Vec<(String, f32)> {
    let p = softmax(logits);
    top_k(&p, TOP)
        .into_iter()
        .map(|(i, p)| (model.tokenizer.decode(&[i]).unwrap_or_default(), p as f32))
        .collect()
}

pub(crate) async fn patch_cell<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    r: PatchRequest,
    layer: usize,
    pos: usize,
) -> Result<(), String> {
    let (setup, dirs) = setup(state, model, &r, Task::Patch).await?;
    let what = dirs.as_ref().map_or(Patched::Residual, |(_, d)| Patched::Direction(d));
    let logits =
        patch::patched_logits(model, &setup, what, layer, pos).await.map_err(|e| e.to_string())?;
    let base = model
        .session()
        .forward(&setup.base, None, LogitsFor::Last)
        .await
        .map_err(|e| e.to_string())?;
    post(&FromWorker::PatchCell {
        layer,
        pos,
        top: top_texts(model, &logits),
        base_top: top_texts(model, &base),
    });
    Ok(())
}

pub(crate) async fn lens<B: OnDevice>(
    model: &Model<B>,
    text: &str,
    chat: bool,
    track: Option<String>,
) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("there is no text to look through: type some".into());
    }
    let ids = model.encode_prompt(text, chat).map_err(|e| e.to_string())?;
    if ids.len() > model.config.context_length {
        return Err(format!(
            "the text has {} tokens; the model reads at most {}",
            ids.len(),
            model.config.context_length
        ));
    }
    let track = track.filter(|t| !t.is_empty());
    let tid = match &track {
        Some(t) => Some(patch::token_id(model, t).map_err(|e| format!("tracked token: {e}"))?),
        None => None,
    };
    post(&FromWorker::Working { task: Task::Lens, stage: "one pass".into(), done: 0, total: 1 });
    yield_now().await;
    let l = logit_lens(model, &ids, TOP, tid).await.map_err(|e| e.to_string())?;
    let word = |i: u32| model.tokenizer.decode(&[i]).unwrap_or_default();
    let top = l
        .layers
        .iter()
        .map(|layer| {
            layer.top.iter().map(|cell| cell.iter().map(|&(i, p)| (word(i), p)).collect()).collect()
        })
        .collect();
    let tracked = l.layers.iter().map(|layer| layer.tracked.clone().unwrap_or_default()).collect();
    post(&FromWorker::Lens { tokens: texts(model, &ids), top, track, tracked });
    Ok(())
}

pub(crate) async fn attention<B: OnDevice>(
    model: &Model<B>,
    text: &str,
    layer: usize,
) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("there is no text: type some".into());
    }
    let ids = model.encode_prompt(text, false).map_err(|e| e.to_string())?;
    if ids.len() > 128 {
        return Err(format!(
            "the text has {} tokens; the attention view shows at most 128: shorten it",
            ids.len()
        ));
    }
    let p =
        tiller_steer::attention::patterns(model, &ids, layer).await.map_err(|e| e.to_string())?;
    post(&FromWorker::Attention { tokens: texts(model, &ids), layer, heads: p.heads });
    Ok(())
}
