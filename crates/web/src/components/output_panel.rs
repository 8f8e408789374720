use crate::state::{AppState, Output};
use leptos::prelude::*;

/// Baseline and steered generations side by side. Text is rendered as text, never as HTML.
#[component]
pub fn OutputPanel() -> impl IntoView {
    let st = expect_context::<AppState>();
    view! {
        <section class="panel output" id="panel-output">
            <div class="side-by-side">
                <OutputColumn title="Baseline" testid="baseline-output" output=st.baseline />
                <OutputColumn title="Steered" testid="steered-output" output=st.steered />
            </div>
        </section>
    }
}

#[component]
fn OutputColumn(
    /// Heading.
    title: &'static str,
    /// data-testid of the text.
    testid: &'static str,
    /// The generation.
    output: RwSignal<Output>,
) -> impl IntoView {
    let st = expect_context::<AppState>();
    view! {
        <div class="out-col">
            <h2>{title}</h2>
            <pre class="generation" data-testid=testid
                data-state=move || output.get().state.as_str()
                data-ids=move || join_ids(&output.get().ids)>{move || output.get().text}</pre>
            <p class="stats">{move || output.get().stats}</p>
            <Show when=move || output.get().error.is_some()>
                <p class="error" role="alert" data-testid="generation-error">{move || output.get().error.unwrap_or_default()}</p>
            </Show>
            <button class="link" disabled=move || output.get().text.is_empty()
                on:click=move |_| {
                    let g = st.gen.get_untracked();
                    let text = output.get_untracked().text;
                    // A chat generation is read as the conversation it is.
                    st.reading_chat.set(g.chat);
                    st.reading_text.set(if g.chat { text } else { format!("{}{text}", g.prompt) });
                }>"read this text"</button>
        </div>
    }
}

/// Token ids as "1,2,3" for tests and tools that read the page.
fn join_ids(ids: &[u32]) -> String {
    let v: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    v.join(",")
}
