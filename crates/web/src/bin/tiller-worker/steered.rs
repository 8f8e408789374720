//! Steered work in the worker: baseline and steered generation (with a condition), reading
//! text through a direction, strength sweeps and conversations, on whichever device holds
//! the model.

use crate::device::OnDevice;
use crate::stream::stream;
use crate::worker::{post, prepare, prepare_one, yield_now, Shared};
use tiller_engine::{Capture, LogitsFor, Model};
use tiller_steer::concept::Concept;
use tiller_steer::condition::Condition;
use tiller_steer::lineas::LineasParams;
use tiller_steer::plan::{self, InterventionSpec, Prepared};
use tiller_web::protocol::{FromWorker, Task};

/// What a generation steers with: the concepts, the interventions and their condition.
pub(crate) struct Steering<'a> {
    pub(crate) concepts: &'a [Concept],
    pub(crate) specs: &'a [InterventionSpec],
    pub(crate) condition: Option<Condition>,
}

pub(crate) async fn generate<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    prompt: &str,
    chat: bool,
    max_tokens: usize,
    sampling: tiller_engine::SamplingParams,
    steering: Steering<'_>,
) -> Result<(), String> {
    if prompt.trim().is_empty() {
        return Err("the prompt is empty: type something to continue".into());
    }
    let ids = model.encode_prompt(prompt, chat).map_err(|e| e.to_string())?;
    generate_ids(state, model, ids, max_tokens, sampling, steering).await
}

/// Baseline and steered generation after the prompt `ids`.
async fn generate_ids<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    ids: Vec<u32>,
    max_tokens: usize,
    sampling: tiller_engine::SamplingParams,
    steering: Steering<'_>,
) -> Result<(), String> {
    let Steering { concepts, specs, condition } = steering;
    if ids.len() >= model.config.context_length {
        return Err(format!(
            "the prompt has {} tokens; the model's context holds {}: shorten it",
            ids.len(),
            model.config.context_length
        ));
    }
    let steering_on = specs.iter().any(|s| s.enabled);
    // Conditional steering: the prompt's score first; when the condition is not met no
    // intervention runs (only the baseline).
    if let (Some(cond), true) = (&condition, steering_on) {
        let c = concepts.iter().find(|c| c.name == cond.concept).ok_or_else(|| {
            format!("the condition names concept `{}`, which is not defined", cond.concept)
        })?;
        let p = prepare_one(state, model, c.clone(), Task::Generate).await?;
        let check = cond.check(model, &ids, &p.dirs).await.map_err(|e| e.to_string())?;
        post(&FromWorker::Condition {
            concept: cond.concept.clone(),
            layer: cond.layer,
            score: check.score,
            threshold: check.threshold,
            below: cond.below,
            met: check.met,
        });
        if !check.met {
            post(&FromWorker::Prompt { ids: ids.clone() });
            return stream(state, model, &ids, max_tokens, sampling, &mut None).await;
        }
    }
    let prepared = prepare(state, model, concepts, specs, Task::Generate).await?;
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
    let mut steer = plan::build(model, &owned, specs, ids.len(), &LineasParams::default())
        .await
        .map_err(|e| e.to_string())?;
    post(&FromWorker::Prompt { ids: ids.clone() });
    stream(state, model, &ids, max_tokens, sampling, &mut steer).await
}

pub(crate) async fn read<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    text: &str,
    concept: Concept,
    layer: usize,
    chat_prompt: Option<String>,
) -> Result<(), String> {
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
    let p = prepare_one(state, model, concept, Task::Read).await?;
    let u = {
        let v = &p.dirs[layer];
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let mut cap = Capture::new([layer]);
    model
        .session()
        .forward(&ids, Some(&mut cap), LogitsFor::Last)
        .await
        .map_err(|e| e.to_string())?;
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
pub(crate) async fn sweep<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    prompt: &str,
    chat: bool,
    max_tokens: usize,
    concepts: &[Concept],
    spec: InterventionSpec,
    strengths: &[f32],
    read_layer: usize,
) -> Result<(), String> {
    use tiller_steer::sweep::{Sweep, Sweeper};
    let all: Vec<InterventionSpec> = concepts
        .iter()
        .map(|c| InterventionSpec { concept: c.name.clone(), enabled: true, ..spec.clone() })
        .collect();
    let prepared = prepare(state, model, concepts, &all, Task::Sweep).await?;
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
    let sweeper = Sweeper::new(model, &owned, &sw).await.map_err(|e| e.to_string())?;
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
        let point = sweeper.point(x, control).await.map_err(|e| e.to_string())?;
        post(&FromWorker::SweepPoint { point });
    }
    post(&FromWorker::SweepDone);
    Ok(())
}

/// A conversation's readings after each turn, then its next assistant turn, baseline and
/// steered from turn `steer_from` on.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn converse<B: OnDevice>(
    state: &Shared,
    model: &Model<B>,
    conv: &tiller_steer::conversation::Conversation,
    layer: usize,
    max_tokens: usize,
    sampling: tiller_engine::SamplingParams,
    concepts: &[Concept],
    specs: &[InterventionSpec],
) -> Result<(), String> {
    use tiller_steer::conversation::readings;
    let e = |e: tiller_steer::Error| e.to_string();
    let (ids, start) = conv.prompt(model).map_err(e)?;
    if !conv.probe.trim().is_empty() && !concepts.is_empty() {
        let mut dirs = Vec::new();
        for c in concepts {
            dirs.push(prepare_one(state, model, c.clone(), Task::Generate).await?);
        }
        post(&FromWorker::Working {
            task: Task::Generate,
            stage: format!("reading the probe after each of {} turns", conv.turns.len()),
            done: 0,
            total: 1,
        });
        yield_now().await;
        let d: Vec<&[f32]> =
            dirs.iter().map(|p| p.dirs.get(layer).map_or(&[][..], |d| d.as_slice())).collect();
        let values = readings(model, conv, layer, &d).await.map_err(e)?;
        post(&FromWorker::TurnReadings {
            layer,
            concepts: concepts.iter().map(|c| c.name.clone()).collect(),
            values,
        });
    }
    // The interventions act from the first token of turn `steer_from` on.
    let from: Vec<InterventionSpec> = specs
        .iter()
        .map(|s| InterventionSpec {
            positions: tiller_steer::intervene::Positions::Range { start, end: usize::MAX },
            ..s.clone()
        })
        .collect();
    let steering = Steering { concepts, specs: &from, condition: None };
    generate_ids(state, model, ids, max_tokens, sampling, steering).await
}
