use crate::state::AppState;
use leptos::prelude::*;
use tiller_web::protocol::ToWorker;

/// Background colour of a projection: blue below zero, red above, by its size against the
/// largest in the text.
fn colour(v: f32, max: f32) -> String {
    let a = (v.abs() / max.max(1e-6)).clamp(0.0, 1.0) * 0.75;
    if v >= 0.0 {
        format!("background: rgba(214, 69, 65, {a:.3})")
    } else {
        format!("background: rgba(52, 120, 198, {a:.3})")
    }
}

/// A text coloured token by token by its projection on a concept's direction at a layer.
#[component]
pub fn ReadingView() -> impl IntoView {
    let st = expect_context::<AppState>();
    let read = move |_| {
        st.reading_error.set(None);
        let d = st.concepts.get_untracked().get(st.selected.get_untracked()).cloned();
        let Some(c) = d.and_then(|d| d.concept().ok()) else {
            st.reading_error
                .set(Some("Select a concept with valid examples to read along.".into()));
            return;
        };
        let text = {
            let t = st.reading_text.get_untracked();
            if t.trim().is_empty() {
                st.gen.get_untracked().prompt
            } else {
                t
            }
        };
        let layer = st.layer.get_untracked().unwrap_or(0);
        let chat_prompt = st.reading_chat.get_untracked().then(|| st.gen.get_untracked().prompt);
        st.working.set(Some(format!("reading along `{}` at layer {layer}", c.name)));
        st.send(&ToWorker::Read { text, concept: c, layer, chat_prompt });
    };
    let concept_line = move || {
        let name =
            st.concepts.get().get(st.selected.get()).map(|d| d.name.clone()).unwrap_or_default();
        format!("along `{name}` at layer {}", st.layer.get().unwrap_or(0))
    };
    view! {
        <section class="panel reading" id="panel-read">
            <div class="panel-head">
                <h2>"Read a text"</h2>
                <span class="muted">{concept_line}</span>
            </div>
            <textarea rows="3" data-testid="reading-input" placeholder="Any text (empty: the prompt)"
                prop:value=move || st.reading_text.get()
                on:input=move |ev| st.reading_text.set(event_target_value(&ev))></textarea>
            <div class="controls">
                <label><input type="checkbox" data-testid="reading-chat" prop:checked=move || st.reading_chat.get()
                    on:change=move |ev| st.reading_chat.set(event_target_checked(&ev)) />
                    " as the reply to the prompt (chat template)"</label>
                <button data-testid="read-text" on:click=read disabled=move || !st.ready() || st.working.get().is_some()>"Read"</button>
            </div>
            <Show when=move || st.reading_error.get().is_some()>
                <p class="error" role="alert">{move || st.reading_error.get().unwrap_or_default()}</p>
            </Show>
            {move || st.reading.get().map(|r| {
                // Relative to the midpoint of the examples' class means along the direction
                // (positive: on the concept's side), when the concept is computed.
                let mid = st
                    .computed
                    .get()
                    .get(&r.concept)
                    .and_then(|c| c.report.layers.get(r.layer).cloned())
                    .map(|l| {
                        let mean = |v: &[[f32; 2]]| v.iter().map(|p| p[0]).sum::<f32>() / v.len().max(1) as f32;
                        (mean(&l.scatter_pos) + mean(&l.scatter_neg)) / 2.0
                    })
                    .unwrap_or(0.0);
                let values: Vec<f32> = r.values.iter().map(|v| v - mid).collect();
                // The first token is the attention sink, far larger than the rest: the colour
                // scale leaves it out.
                let max = values.iter().skip(1).fold(0f32, |m, v| m.max(v.abs()));
                let r = crate::state::Reading { values, ..r };
                view! {
                    <p class="reading-text" data-testid="reading-view"
                        aria-label=format!("projection on `{}` at layer {}", r.concept, r.layer)>
                        {r.tokens.iter().zip(&r.values).map(|(t, v)| view! {
                            <span class="tok" style=colour(*v, max) data-value=format!("{v:.3}")
                                title=format!("{t:?}: {v:+.3}")>{t.clone()}</span>
                        }).collect_view()}
                    </p>
                    <Turns tokens=r.tokens.clone() values=r.values.clone() />
                    <p class="muted">{format!("`{}` at layer {}: projection on the direction minus the midpoint of the examples' class means ({mid:.2}); red on the concept's side, blue on the other; hover for values", r.concept, r.layer)}</p>
                }
            })}
        </section>
    }
}

/// The conversation's turns (each starts at a `<|im_start|>`-like token): the mean projection
/// of each, so the drift from turn to turn shows. Nothing when the text has no turns.
#[component]
fn Turns(
    /// The tokens read.
    tokens: Vec<String>,
    /// Their (centred) projections.
    values: Vec<f32>,
) -> impl IntoView {
    let mut turns: Vec<(String, f32, usize)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].contains("im_start") || tokens[i].contains("start_header_id") {
            // The role is the tokens up to the end of the header line ("ass" + "istant").
            let role: String = tokens[i + 1..]
                .iter()
                .take_while(|t| !t.contains('\n') && !t.contains("end_header"))
                .take(6)
                .map(String::as_str)
                .collect::<String>()
                .trim()
                .to_string();
            turns.push((role, 0.0, 0));
        } else if let Some(t) = turns.last_mut() {
            if i > 0 {
                t.1 += values[i];
                t.2 += 1;
            }
        }
        i += 1;
    }
    let turns: Vec<(String, f32)> =
        turns.into_iter().filter(|t| t.2 > 0).map(|(r, s, n)| (r, s / n as f32)).collect();
    let max = turns.iter().fold(0f32, |m, t| m.max(t.1.abs())).max(1e-6);
    (!turns.is_empty()).then(|| view! {
        <div class="turns" data-testid="reading-turns">
            <h3>"By turn"</h3>
            {turns.into_iter().enumerate().map(|(k, (role, m))| {
                let w = 45.0 * (m.abs() / max);
                let style = if m >= 0.0 { format!("margin-left: 50%; width: {w:.1}%; background: rgba(214, 69, 65, 0.7)") }
                    else { format!("margin-left: {:.1}%; width: {w:.1}%; background: rgba(52, 120, 198, 0.7)", 50.0 - w) };
                view! {
                    <div class="turn" data-mean=format!("{m:.3}")>
                        <span class="role">{format!("{}. {role}", k + 1)}</span>
                        <span class="track"><span class="bar" style=style></span></span>
                        <span class="muted">{format!("{m:+.2}")}</span>
                    </div>
                }
            }).collect_view()}
        </div>
    })
}
