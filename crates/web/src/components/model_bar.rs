use crate::state::{AppState, LoadState};
use leptos::prelude::*;
use tiller_web::protocol::ToWorker;
use wasm_bindgen::JsCast;

/// Read a dropped or picked file and hand its bytes to the worker.
fn open_file(st: AppState, file: web_sys::File) {
    let name = file.name();
    st.status.update(|s| {
        s.state = Some(LoadState::Loading);
        s.message = format!("reading {name}");
        s.fraction = None;
    });
    leptos::task::spawn_local(async move {
        match wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await {
            Ok(buf) => {
                let bytes = js_sys::Uint8Array::new(&buf).to_vec();
                st.model_id.set(name.clone());
                st.send(&ToWorker::LoadBytes { name, bytes });
            }
            Err(e) => st.status.update(|s| {
                s.state = Some(LoadState::Error);
                s.message = format!("cannot read the file: {e:?}");
            }),
        }
    });
}

/// The model's load state, progress, backend and memory; open another GGUF by URL or file.
#[component]
pub fn ModelBar() -> impl IntoView {
    let st = expect_context::<AppState>();
    let status = st.status;
    let (url, set_url) = signal(String::new());
    let open_url = move || {
        let u = url.get_untracked().trim().to_string();
        if u.is_empty() {
            return;
        }
        st.model_id.set(u.clone());
        st.status.update(|s| {
            s.state = Some(LoadState::Loading);
            s.message = format!("opening {u}");
        });
        st.send(&ToWorker::Load { url: u });
    };
    let on_drop = move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        if let Some(f) = ev.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)) {
            open_file(st, f);
        }
    };
    let on_pick = move |ev: web_sys::Event| {
        let input: Option<web_sys::HtmlInputElement> = ev.target().and_then(|t| t.dyn_into().ok());
        if let Some(f) = input.and_then(|i| i.files()).and_then(|f| f.get(0)) {
            open_file(st, f);
        }
    };
    view! {
        <section class="model-bar" data-testid="model-status" data-state=move || status.get().state().as_str()
            data-sha256=move || status.get().sha256
            on:dragover=|ev: web_sys::DragEvent| ev.prevent_default() on:drop=on_drop>
            <div class="model-line">
                <span class="model-message">{move || status.get().message}</span>
                <span class="backend" class:hidden=move || status.get().backend.is_empty()>
                    "backend: " <b data-testid="backend-name" data-concepts=move || status.get().concepts>
                        {move || status.get().backend}</b>
                    " · " <span data-testid="memory">{move || status.get().memory}</span>
                </span>
            </div>
            <progress
                max="1"
                value=move || status.get().fraction.map(|f| f.to_string()).unwrap_or_default()
                class:hidden=move || status.get().state() != LoadState::Loading
            ></progress>
            <Show when=move || status.get().state() == LoadState::Error>
                <p class="hint">
                    "Tiller reads GGUF files of Llama-family models. Check the file or its address, or "
                    <a href="./">"open the default model"</a>"."
                </p>
            </Show>
            <details class="open-model">
                <summary>"Open another model"</summary>
                <div class="controls">
                    <input type="url" placeholder="https://…/model.gguf" aria-label="GGUF address"
                        prop:value=move || url.get() on:input=move |ev| set_url.set(event_target_value(&ev)) />
                    <button on:click=move |_| open_url()>"Open"</button>
                    <label class="file">"or a file: "<input type="file" accept=".gguf" on:change=on_pick /></label>
                    <span class="muted">"(or drop a .gguf here)"</span>
                </div>
            </details>
            <crate::components::BenchPanel />
        </section>
    }
}
