use crate::state::{AppState, Output, RunState};
use leptos::prelude::*;
use tiller_engine::SamplingParams;
use tiller_web::protocol::ToWorker;

/// Prompt, sampling settings, Generate and Stop.
#[component]
pub fn GeneratePanel() -> impl IntoView {
    let st = expect_context::<AppState>();
    let g = st.gen;
    let (problem, set_problem) = signal(None::<String>);
    let running = move || {
        st.baseline.get().state == RunState::Running || st.steered.get().state == RunState::Running
    };
    let submit = move || {
        let s = g.get_untracked();
        if !s.temperature.is_finite() || s.temperature < 0.0 {
            set_problem.set(Some("Temperature must be a number of at least 0.".into()));
            return;
        }
        set_problem.set(None);
        if s.prompt.trim().is_empty() {
            st.baseline.set(Output {
                error: Some(
                    "The prompt is empty: type something for the model to continue.".into(),
                ),
                ..Default::default()
            });
            st.steered.set(Output::default());
            return;
        }
        let steering = st.interventions.get_untracked().iter().any(|i| i.enabled);
        st.condition_result.set(None);
        st.baseline.set(Output { state: RunState::Running, ..Default::default() });
        st.steered.set(Output {
            state: if steering { RunState::Running } else { RunState::Idle },
            ..Default::default()
        });
        st.send(&ToWorker::Generate {
            prompt: s.prompt,
            chat: s.chat,
            max_tokens: s.max_tokens as usize,
            sampling: SamplingParams {
                temperature: s.temperature,
                seed: s.seed,
                ..Default::default()
            },
            concepts: st.valid_concepts(),
            interventions: st.interventions.get_untracked(),
            condition: st.condition.get_untracked(),
        });
    };
    view! {
        <section class="panel generate" id="panel-generate">
            <label for="prompt">"Prompt"</label>
            <textarea id="prompt" data-testid="prompt-input" rows="3"
                prop:value=move || g.get().prompt
                on:input=move |ev| { let v = event_target_value(&ev); g.update(|s| s.prompt = v) }
                on:keydown=move |ev: web_sys::KeyboardEvent| if ev.key() == "Enter" && (ev.ctrl_key() || ev.meta_key()) { submit() }></textarea>
            <div class="controls">
                <label><input type="checkbox" data-testid="chat-mode" prop:checked=move || g.get().chat
                    on:change=move |ev| { let v = event_target_checked(&ev); g.update(|s| s.chat = v) } />" chat template"</label>
                <label>"max tokens "<input type="number" min="1" max="2048" data-testid="max-tokens"
                    prop:value=move || g.get().max_tokens.to_string()
                    on:input=move |ev| { let v = event_target_value(&ev).parse().unwrap_or(32u32).clamp(1, 2048); g.update(|s| s.max_tokens = v) } /></label>
                <label>"temperature "<input type="number" min="0" step="0.1" data-testid="temperature"
                    prop:value=move || g.get().temperature.to_string()
                    on:input=move |ev| { let v = event_target_value(&ev).parse().unwrap_or(f32::NAN); g.update(|s| s.temperature = v) } /></label>
                <label>"seed "<input type="number" min="0" data-testid="seed"
                    prop:value=move || g.get().seed.to_string()
                    on:input=move |ev| { let v = event_target_value(&ev).parse().unwrap_or(0); g.update(|s| s.seed = v) } /></label>
                <button data-testid="generate" class="primary" disabled=move || !st.ready() || running()
                    on:click=move |_| submit() title="Generate (Ctrl+Enter)">"Generate"</button>
                <button data-testid="stop" disabled=move || !running() && st.working.get().is_none()
                    on:click=move |_| st.send(&ToWorker::Stop)>"Stop"</button>
            </div>
            <Show when=move || problem.get().is_some()>
                <p class="error" role="alert">{move || problem.get().unwrap_or_default()}</p>
            </Show>
        </section>
    }
}
