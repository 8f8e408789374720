use crate::app::Output;
use leptos::prelude::*;

/// The streamed generation. The text is rendered as text, never as HTML.
#[component]
pub fn OutputPanel(
    /// The current generation.
    output: ReadSignal<Output>,
) -> impl IntoView {
    view! {
        <section class="panel output">
            <h2>"Output"</h2>
            <pre
                class="generation"
                data-testid="baseline-output"
                data-state=move || output.get().state.as_str()
                data-ids=move || join_ids(&output.get().ids)
            >{move || output.get().text}</pre>
            <p class="stats">{move || output.get().stats}</p>
            <Show when=move || output.get().error.is_some()>
                <p class="error" role="alert" data-testid="generation-error">{move || output.get().error.unwrap_or_default()}</p>
            </Show>
        </section>
    }
}

/// Token ids as "1,2,3" for tests and tools that read the page.
fn join_ids(ids: &[u32]) -> String {
    let v: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    v.join(",")
}
