use crate::state::AppState;
use leptos::prelude::*;
use tiller_steer::condition::Condition;
use tiller_steer::intervene::Positions;
use tiller_steer::plan::{InterventionSpec, OpKind};
use tiller_web::protocol::ToWorker;

/// Slider range and step of an op's strength.
fn range(op: OpKind) -> (f32, f32, f32) {
    match op {
        OpKind::Add => (-20.0, 20.0, 0.05),
        OpKind::AddUnit => (-2.0, 2.0, 0.05),
        OpKind::Ablate => (0.0, 0.0, 1.0),
        OpKind::Clamp => (-50.0, 50.0, 0.5),
        OpKind::Rotate | OpKind::SelectiveSteering => (-180.0, 180.0, 1.0),
        OpKind::Affine => (0.0, 2.0, 0.05),
    }
}

fn unit(op: OpKind) -> &'static str {
    match op {
        OpKind::Add => "× direction",
        OpKind::AddUnit => "× mean residual norm",
        OpKind::Ablate => "",
        OpKind::Clamp => "projection value",
        OpKind::Rotate => "degrees",
        OpKind::SelectiveSteering => "degrees (both norm outputs of the blocks that pass its test)",
        OpKind::Affine => "strength",
    }
}

/// Interventions as cards: concept, op, strength, layers, positions, on/off. They compose.
#[component]
pub fn SteeringPanel() -> impl IntoView {
    let st = expect_context::<AppState>();
    let add = move |_| {
        // On the most recently computed concept (the selected one if computed), at its best
        // layer, with a strength that visibly steers.
        let sel = st
            .concepts
            .get_untracked()
            .get(st.selected.get_untracked())
            .and_then(|d| st.report_for(d));
        let any = st.computed.get_untracked().into_values().max_by(|a, b| a.ms.total_cmp(&b.ms));
        let latest = sel.or(any);
        match latest {
            Some(c) => st.interventions.update(|v| v.push(st.default_intervention(&c))),
            None => st.concept_error.set(Some(
                "Compute a concept first: interventions steer along its direction.".into(),
            )),
        }
    };
    view! {
        <section class="panel steering" id="panel-steer">
            <div class="panel-head">
                <h2>"Steering"</h2>
                <button data-testid="intervention-add" on:click=add disabled=move || st.computed.get().is_empty()>"+ intervention"</button>
            </div>
            <Show when=move || st.interventions.get().is_empty()>
                <p class="muted">"No intervention: generation shows the baseline only. Compute a concept, then add one."</p>
            </Show>
            <div class="cards">
                <For each={move || (0..st.interventions.get().len()).collect::<Vec<_>>()} key={|i| *i}
                    children=move |i| view! { <Card index=i /> } />
            </div>
            <ConditionCard />
        </section>
    }
}

/// Conditional steering (CAST): a condition concept, the layer it is read at and a threshold;
/// the interventions run only when the prompt's score passes.
#[component]
fn ConditionCard() -> impl IntoView {
    let st = expect_context::<AppState>();
    let c = st.condition;
    let edit = move |f: &dyn Fn(&mut Condition)| {
        c.update(|x| {
            if let Some(x) = x {
                f(x)
            }
        })
    };
    let toggle = move |ev| {
        if event_target_checked(&ev) {
            let concept = st.valid_concepts().first().map(|k| k.name.clone()).unwrap_or_default();
            let layer = st.layer.get_untracked().unwrap_or(10);
            c.set(Some(Condition { concept, layer, threshold: 0.05, below: false }));
        } else {
            c.set(None);
        }
    };
    view! {
        <div class="card condition" data-testid="condition">
            <label><input type="checkbox" data-testid="condition-on" prop:checked=move || c.get().is_some()
                on:change=toggle disabled=move || st.valid_concepts().is_empty() />
                " steer only when the prompt is about a concept (CAST)"</label>
            <Show when=move || c.get().is_some()>
                <div class="controls">
                    <select aria-label="condition concept" data-testid="condition-concept"
                        on:change=move |ev| { let v = event_target_value(&ev); edit(&|x| x.concept = v.clone()) }>
                        {move || st.valid_concepts().into_iter().map(|k| {
                            let n = k.name.clone();
                            let sel = c.get().map(|x| x.concept == n).unwrap_or(false);
                            view! { <option value=n.clone() selected=sel>{n.clone()}</option> }
                        }).collect_view()}
                    </select>
                    <label>"layer "<input type="number" min="0" class="num" data-testid="condition-layer"
                        prop:value=move || c.get().map(|x| x.layer).unwrap_or(0).to_string()
                        on:change=move |ev| { if let Ok(l) = event_target_value(&ev).parse::<usize>() { edit(&|x| x.layer = l) } } /></label>
                    <select aria-label="comparison" data-testid="condition-side"
                        on:change=move |ev| { let below = event_target_value(&ev) == "below"; edit(&|x| x.below = below) }>
                        <option value="at_least" selected=move || !c.get().map(|x| x.below).unwrap_or(false)>"score ≥"</option>
                        <option value="below" selected=move || c.get().map(|x| x.below).unwrap_or(false)>"score <"</option>
                    </select>
                    <input type="number" step="any" class="num" aria-label="threshold" data-testid="condition-threshold"
                        prop:value=move || c.get().map(|x| x.threshold).unwrap_or(0.0).to_string()
                        on:change=move |ev| { if let Ok(t) = event_target_value(&ev).parse::<f32>() { if t.is_finite() { edit(&|x| x.threshold = t) } } } />
                </div>
                <p class="muted">"Score: CAST's cos(h, tanh(P h)), h the prompt's mean hidden state at the layer, P the projection on the concept's direction; it says how much of h lies along the direction, on either side."</p>
            </Show>
            {move || st.condition_result.get().map(|r| view! {
                <p data-testid="condition-result" data-met=r.met.to_string() data-score=format!("{:.6}", r.score)
                    class=if r.met { "cond met" } else { "cond not-met" }>
                    {format!("Prompt's score on `{}` at layer {}: {:.4} {} {}: {}", r.concept, r.layer, r.score,
                        if r.score >= r.threshold { "≥" } else { "<" }, r.threshold,
                        if r.met { "met, steering" } else { "not met, no steering (the steered side is the baseline)" })}
                </p>
            })}
        </div>
    }
}

#[component]
fn Card(
    /// Which intervention.
    index: usize,
) -> impl IntoView {
    let st = expect_context::<AppState>();
    let spec = move || st.interventions.get().get(index).cloned();
    let edit = move |f: &dyn Fn(&mut InterventionSpec)| {
        st.interventions.update(|v| {
            if let Some(s) = v.get_mut(index) {
                f(s)
            }
        })
    };
    let n_layer = move || {
        st.computed.get().values().next().map(|c| c.report.layers.len()).unwrap_or(30).max(1)
    };
    let first = move || spec().and_then(|s| s.layers.first().copied()).unwrap_or(0);
    let last = move || spec().and_then(|s| s.layers.last().copied()).unwrap_or(0);
    let set_layers = move |a: usize, b: usize| {
        let (a, b) = (a.min(b), a.max(b));
        edit(&|s| s.layers = (a..=b).collect());
    };
    view! {
        <Show when=move || spec().is_some()>
            <div class="card" data-testid="intervention" class:off=move || !spec().map(|s| s.enabled).unwrap_or(true)>
                <div class="controls">
                    <label><input type="checkbox" prop:checked=move || spec().map(|s| s.enabled).unwrap_or(false)
                        on:change=move |ev| { let on = event_target_checked(&ev); edit(&|s| s.enabled = on) } />" on"</label>
                    <select aria-label="concept" on:change=move |ev| { let v = event_target_value(&ev); edit(&|s| s.concept = v.clone()) }>
                        {move || st.valid_concepts().into_iter().map(|c| {
                            let n = c.name.clone();
                            let sel = spec().map(|s| s.concept == n).unwrap_or(false);
                            view! { <option value=n.clone() selected=sel>{n.clone()}</option> }
                        }).collect_view()}
                    </select>
                    <select aria-label="operation" data-testid="intervention-op" on:change=move |ev| {
                        let v = event_target_value(&ev);
                        if let Some(op) = OpKind::ALL.iter().find(|o| o.label() == v) { let op = *op; edit(&|s| s.op = op) }
                    }>
                        {OpKind::ALL.iter().map(|op| {
                            let op = *op;
                            view! { <option value=op.label() selected=move || spec().map(|s| s.op == op).unwrap_or(false)>{op.label()}</option> }
                        }).collect_view()}
                    </select>
                    <button class="remove" title="Remove" aria-label="remove intervention"
                        on:click=move |_| st.interventions.update(|v| { if index < v.len() { v.remove(index); } })>"×"</button>
                </div>
                <Show when=move || spec().map(|s| s.op != OpKind::Ablate).unwrap_or(false)>
                    <label class="slider">"strength "
                        <input type="range" data-testid="intervention-strength"
                            min=move || spec().map(|s| range(s.op).0).unwrap_or(0.0).to_string()
                            max=move || spec().map(|s| range(s.op).1).unwrap_or(1.0).to_string()
                            step=move || spec().map(|s| range(s.op).2).unwrap_or(0.1).to_string()
                            prop:value=move || spec().map(|s| s.strength).unwrap_or(0.0).to_string()
                            on:input=move |ev| { if let Ok(x) = event_target_value(&ev).parse::<f32>() { edit(&|s| s.strength = x) } } />
                        <input type="number" class="num" step="any" aria-label="strength value"
                            prop:value=move || spec().map(|s| s.strength).unwrap_or(0.0).to_string()
                            on:change=move |ev| { if let Ok(x) = event_target_value(&ev).parse::<f32>() { if x.is_finite() { edit(&|s| s.strength = x) } } } />
                        <span class="muted">{move || spec().map(|s| unit(s.op)).unwrap_or("")}</span>
                    </label>
                </Show>
                <label class="slider">"layers "
                    <input type="range" min="0" max=move || (n_layer() - 1).to_string() prop:value=move || first().to_string()
                        aria-label="first layer"
                        on:input=move |ev| { if let Ok(a) = event_target_value(&ev).parse() { set_layers(a, last().max(a)) } } />
                    <input type="range" min="0" max=move || (n_layer() - 1).to_string() prop:value=move || last().to_string()
                        aria-label="last layer"
                        on:input=move |ev| { if let Ok(b) = event_target_value(&ev).parse::<usize>() { set_layers(first().min(b), b) } } />
                    <span data-testid="intervention-layers">{move || if first() == last() { format!("{}", first()) } else { format!("{}–{}", first(), last()) }}</span>
                </label>
                <label>"positions "
                    <select on:change=move |ev| {
                        let p = match event_target_value(&ev).as_str() { "prompt" => Positions::Prompt, "generated" => Positions::Generated, _ => Positions::All };
                        edit(&|s| s.positions = p)
                    }>
                        <option value="all" selected=move || spec().map(|s| s.positions == Positions::All).unwrap_or(true)>"all"</option>
                        <option value="prompt" selected=move || spec().map(|s| s.positions == Positions::Prompt).unwrap_or(false)>"prompt"</option>
                        <option value="generated" selected=move || spec().map(|s| s.positions == Positions::Generated).unwrap_or(false)>"generated"</option>
                    </select>
                </label>
                <Show when=move || spec().map(|s| s.op == OpKind::Add).unwrap_or(false)>
                    <button class="link" data-testid="export-cv" title="This card as a llama.cpp control vector (GGUF)"
                        disabled=move || !st.ready() || first() == 0
                        on:click=move |_| {
                            let Some(s) = spec() else { return };
                            let c = st.valid_concepts().into_iter().find(|c| c.name == s.concept);
                            if let Some(concept) = c {
                                st.working.set(Some(format!("exporting `{}`", concept.name)));
                                st.send(&ToWorker::Export { concept, layers: s.layers.clone(), strength: s.strength });
                            }
                        }>{move || if first() == 0 { "layer 0 cannot be a llama.cpp control vector" } else { "download as llama.cpp control vector" }}</button>
                </Show>
                <Show when=move || spec().map(|s| s.op == OpKind::Rotate).unwrap_or(false)>
                    <label><input type="checkbox" prop:checked=move || spec().map(|s| s.selective).unwrap_or(false)
                        on:change=move |ev| { let on = event_target_checked(&ev); edit(&|s| s.selective = on) } />" only layers with opposite signs"</label>
                </Show>
            </div>
        </Show>
    }
}
