use crate::app::ModelStatus;
use leptos::prelude::*;

/// The model's load state, progress and backend.
#[component]
pub fn ModelBar(
    /// Current status from the worker.
    status: ReadSignal<ModelStatus>,
) -> impl IntoView {
    view! {
        <section class="model-bar" data-testid="model-status" data-state=move || status.get().state.as_str()>
            <div class="model-line">
                <span class="model-message">{move || status.get().message}</span>
                <span class="backend" class:hidden=move || status.get().backend.is_empty()>
                    "backend: " <b data-testid="backend-name">{move || status.get().backend}</b>
                </span>
            </div>
            <Show when=move || status.get().state == crate::app::LoadState::Error>
                <p class="hint">
                    "Tiller reads GGUF files of Llama-family models. Check the file or its address, or "
                    <a href="./">"open the default model"</a>"."
                </p>
            </Show>
            <progress
                max="1"
                value=move || status.get().fraction.map(|f| f.to_string()).unwrap_or_default()
                class:hidden=move || status.get().state != crate::app::LoadState::Loading
            ></progress>
        </section>
    }
}
