//! Conversations: a multi-turn chat editor, the next assistant turn generated baseline and
//! steered (steering from a chosen turn on), and each concept's reading on a fixed probe item
//! after each turn, plotted per turn (Lampinen et al.'s design).

use crate::state::{AppState, Output, RunState};
use leptos::prelude::*;
use tiller_engine::SamplingParams;
use tiller_model::ChatMessage;
use tiller_steer::conversation::{Conversation, ROLES};
use tiller_web::protocol::ToWorker;

fn starter() -> Conversation {
    Conversation {
        turns: vec![ChatMessage::user("Hi! Can you help me write a short note to my neighbour?")],
        steer_from: 0,
        probe: "In one word, how would you describe the tone of this chat?".into(),
    }
}

#[component]
pub fn ConversationView() -> impl IntoView {
    let st = expect_context::<AppState>();
    let c = st.conversation;
    let edit = move |f: &dyn Fn(&mut Conversation)| {
        c.update(|x| {
            if let Some(x) = x {
                f(x)
            }
        })
    };
    let running = move || {
        st.baseline.get().state == RunState::Running || st.steered.get().state == RunState::Running
    };
    let go = move |_| {
        let Some(conv) = c.get_untracked() else { return };
        let g = st.gen.get_untracked();
        let steering = st.interventions.get_untracked().iter().any(|i| i.enabled);
        st.turn_readings.set(None);
        st.baseline.set(Output { state: RunState::Running, ..Default::default() });
        st.steered.set(Output {
            state: if steering { RunState::Running } else { RunState::Idle },
            ..Default::default()
        });
        st.send(&ToWorker::Converse {
            conversation: conv,
            layer: st.layer.get_untracked().unwrap_or(10),
            max_tokens: g.max_tokens as usize,
            sampling: SamplingParams {
                temperature: g.temperature,
                seed: g.seed,
                ..Default::default()
            },
            concepts: st.valid_concepts(),
            interventions: st.interventions.get_untracked(),
        });
    };
    let keep = move |out: RwSignal<Output>| {
        let text = out.get_untracked().text;
        edit(&|x| {
            x.turns.push(ChatMessage { role: "assistant".into(), content: text.trim().to_string() })
        });
    };
    view! {
        <section class="panel conversation" id="panel-conversation" data-testid="conversation">
            <div class="panel-head">
                <h2>"Conversation"</h2>
                <Show when=move || c.get().is_none()>
                    <button data-testid="conversation-start" on:click=move |_| c.set(Some(starter()))>"Start a conversation"</button>
                </Show>
                <Show when=move || c.get().is_some()>
                    <button class="link" on:click=move |_| { c.set(None); st.turn_readings.set(None) }>"close"</button>
                </Show>
            </div>
            <Show when=move || c.get().is_some()>
                <p class="muted">"Turns go through the chat template; Continue generates the next assistant turn, baseline and steered (the interventions act from the chosen turn on), after reading each concept on the probe item asked after each turn."</p>
                <ol class="turns-editor">
                    {move || c.get().map(|conv| conv.turns.iter().enumerate().map(|(i, t)| {
                        let role = t.role.clone();
                        view! {
                            <li data-testid="turn" data-role=role.clone()>
                                <select aria-label="role" data-testid="turn-role" on:change=move |ev| {
                                    let v = event_target_value(&ev);
                                    edit(&|x| if let Some(t) = x.turns.get_mut(i) { t.role = v.clone() })
                                }>
                                    {ROLES.iter().map(|r| view! { <option value=*r selected=role == *r>{*r}</option> }).collect_view()}
                                </select>
                                <textarea rows="2" data-testid="turn-text" prop:value=t.content.clone()
                                    on:change=move |ev| { let v = event_target_value(&ev); edit(&|x| if let Some(t) = x.turns.get_mut(i) { t.content = v.clone() }) }></textarea>
                                <button class="remove" aria-label="remove turn" title="Remove"
                                    on:click=move |_| edit(&|x| if x.turns.len() > 1 && i < x.turns.len() {
                                        x.turns.remove(i);
                                        x.steer_from = x.steer_from.min(x.turns.len());
                                    })>"×"</button>
                            </li>
                        }
                    }).collect_view())}
                </ol>
                <div class="controls">
                    <button data-testid="turn-add" on:click=move |_| edit(&|x| {
                        let role = if x.turns.last().is_some_and(|t| t.role == "user") { "assistant" } else { "user" };
                        x.turns.push(ChatMessage { role: role.into(), content: String::new() });
                    })>"+ turn"</button>
                    <label>"steer from "
                        <select data-testid="conversation-steer-from" on:change=move |ev| {
                            if let Ok(k) = event_target_value(&ev).parse::<usize>() { edit(&|x| x.steer_from = k) }
                        }>
                            {move || c.get().map(|conv| (0..=conv.turns.len()).map(|k| {
                                let label = if k == conv.turns.len() { "the reply only".to_string() } else { format!("turn {}", k + 1) };
                                view! { <option value=k.to_string() selected=conv.steer_from == k>{label}</option> }
                            }).collect_view())}
                        </select>
                    </label>
                </div>
                <label class="field">"probe item (asked after each turn, for the readings)"
                    <input type="text" data-testid="conversation-probe"
                        prop:value=move || c.get().map(|x| x.probe).unwrap_or_default()
                        on:change=move |ev| { let v = event_target_value(&ev); edit(&|x| x.probe = v.clone()) } />
                </label>
                <div class="controls">
                    <button class="primary" data-testid="conversation-continue" on:click=go
                        disabled=move || !st.ready() || running()>"Continue"</button>
                    <button data-testid="conversation-keep-baseline" disabled=move || st.baseline.get().state != RunState::Done
                        on:click=move |_| keep(st.baseline)>"+ baseline reply as a turn"</button>
                    <button data-testid="conversation-keep-steered" disabled=move || st.steered.get().state != RunState::Done || st.steered.get().text.is_empty()
                        on:click=move |_| keep(st.steered)>"+ steered reply as a turn"</button>
                </div>
                <p class="muted">"The replies appear under Baseline and Steered."</p>
                {move || st.turn_readings.get().map(|r| view! { <ReadingsChart r=r /> })}
            </Show>
        </section>
    }
}

/// Readings per turn: one line per concept, with axes; the same numbers as a table.
#[component]
fn ReadingsChart(r: crate::state::TurnReadings) -> impl IntoView {
    const W: f64 = 420.0;
    const H: f64 = 180.0;
    const L: f64 = 48.0;
    const B: f64 = 30.0;
    let n = r.values.len();
    let all: Vec<f32> = r.values.iter().flatten().copied().collect();
    let (lo, hi) =
        all.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo as f64, hi as f64)
    } else {
        (lo as f64 - 1.0, lo as f64 + 1.0)
    };
    let x =
        move |i: usize| L + (W - L - 10.0) * if n > 1 { i as f64 / (n - 1) as f64 } else { 0.5 };
    let y = move |v: f64| 10.0 + (H - B - 10.0) * (1.0 - (v - lo) / (hi - lo));
    let colours = ["#2f6f9f", "#c2562c", "#4f9a5f", "#b08a2f", "#7a4f9a"];
    view! {
        <figure class="small-chart">
            <svg class="chart" viewBox=format!("0 0 {W} {H}") data-testid="conversation-readings" role="img"
                aria-label=format!("each concept's reading on the probe after each turn, at layer {}", r.layer)>
                <line class="axis" x1=L y1={H - B} x2={W - 10.0} y2={H - B} />
                <line class="axis" x1=L y1=10.0 x2=L y2={H - B} />
                <text class="axis" x={L - 4.0} y={y(hi) + 4.0} text-anchor="end">{format!("{hi:.1}")}</text>
                <text class="axis" x={L - 4.0} y={y(lo) + 4.0} text-anchor="end">{format!("{lo:.1}")}</text>
                {(0..n).map(|i| view! { <text class="axis mid" x=x(i) y={H - B + 14.0}>{(i + 1).to_string()}</text> }).collect_view()}
                <text class="axis-title mid" x={(L + W) / 2.0} y={H - 2.0}>"after turn"</text>
                <text class="axis-title mid" transform=format!("translate(12 {}) rotate(-90)", (H - B) / 2.0)>"projection"</text>
                {r.concepts.iter().enumerate().map(|(k, _)| {
                    let pts: Vec<String> = r.values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(v[k] as f64))).collect();
                    let col = colours[k % colours.len()];
                    view! {
                        <polyline fill="none" stroke=col stroke-width="2" points=pts.join(" ") />
                        {r.values.iter().enumerate().map(|(i, v)| view! { <circle cx=x(i) cy=y(v[k] as f64) r="3" fill=col /> }).collect_view()}
                    }
                }).collect_view()}
            </svg>
            <figcaption>
                {r.concepts.iter().enumerate().map(|(k, c)| view! {
                    <span class="key" style=format!("color: {}", colours[k % colours.len()])>{format!("● {c} ")}</span>
                }).collect_view()}
                {format!("at layer {}: the probe item's last token projected on each concept's unit direction", r.layer)}
            </figcaption>
            <table class="sweep-table">
                <thead><tr><th>"after turn"</th>{r.concepts.iter().map(|c| view! { <th>{c.clone()}</th> }).collect_view()}</tr></thead>
                <tbody>
                    {r.values.iter().enumerate().map(|(i, v)| {
                        let values = v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(",");
                        view! {
                            <tr data-testid="turn-reading" data-turn=i + 1 data-values=values>
                                <td>{i + 1}</td>{v.iter().map(|x| view! { <td>{format!("{x:+.3}")}</td> }).collect_view()}
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </figure>
    }
}
