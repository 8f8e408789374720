use crate::app::Request;
use leptos::prelude::*;
use tiller_engine::SamplingParams;

/// Prompt, sampling settings, Generate and Stop.
#[component]
pub fn GeneratePanel(
    /// The model is loaded.
    #[prop(into)]
    ready: Signal<bool>,
    /// A generation is streaming.
    #[prop(into)]
    running: Signal<bool>,
    /// Called with the visitor's request.
    on_generate: impl Fn(Request) + 'static,
    /// Called when the visitor presses Stop.
    on_stop: impl Fn() + 'static,
) -> impl IntoView {
    let (prompt, set_prompt) = signal("The capital of France is".to_string());
    let (chat, set_chat) = signal(false);
    let (max_tokens, set_max_tokens) = signal(64usize);
    let (temperature, set_temperature) = signal(0.0f32);
    let (seed, set_seed) = signal(0u64);
    let (problem, set_problem) = signal(None::<String>);
    let submit = move || {
        let t = temperature.get_untracked();
        if !t.is_finite() || t < 0.0 {
            set_problem.set(Some("Temperature must be a number of at least 0.".into()));
            return;
        }
        set_problem.set(None);
        on_generate(Request {
            prompt: prompt.get_untracked(),
            chat: chat.get_untracked(),
            max_tokens: max_tokens.get_untracked(),
            sampling: SamplingParams {
                temperature: t,
                seed: seed.get_untracked(),
                ..Default::default()
            },
        });
    };
    view! {
        <section class="panel generate">
            <label for="prompt">"Prompt"</label>
            <textarea
                id="prompt"
                data-testid="prompt-input"
                rows="3"
                prop:value=move || prompt.get()
                on:input=move |ev| set_prompt.set(event_target_value(&ev))
            ></textarea>
            <div class="controls">
                <label><input type="checkbox" data-testid="chat-mode" prop:checked=move || chat.get()
                    on:change=move |ev| set_chat.set(event_target_checked(&ev)) />" chat template"</label>
                <label>"max tokens "<input type="number" min="1" max="2048" data-testid="max-tokens"
                    prop:value=move || max_tokens.get().to_string()
                    on:input=move |ev| set_max_tokens.set(event_target_value(&ev).parse().unwrap_or(64).clamp(1, 2048)) /></label>
                <label>"temperature "<input type="number" min="0" step="0.1" data-testid="temperature"
                    prop:value=move || temperature.get().to_string()
                    on:input=move |ev| set_temperature.set(event_target_value(&ev).parse().unwrap_or(f32::NAN)) /></label>
                <label>"seed "<input type="number" min="0" data-testid="seed"
                    prop:value=move || seed.get().to_string()
                    on:input=move |ev| set_seed.set(event_target_value(&ev).parse().unwrap_or(0)) /></label>
                <button data-testid="generate" class="primary" disabled=move || !ready.get() || running.get()
                    on:click=move |_| submit()>"Generate"</button>
                <button data-testid="stop" disabled=move || !running.get() on:click=move |_| on_stop()>"Stop"</button>
            </div>
            <Show when=move || problem.get().is_some()>
                <p class="error" role="alert">{move || problem.get().unwrap_or_default()}</p>
            </Show>
        </section>
    }
}
