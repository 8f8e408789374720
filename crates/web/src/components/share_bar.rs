use crate::state::AppState;
use leptos::prelude::*;
use tiller_share::SteeringConfig;
use wasm_bindgen_futures::JsFuture;

/// The setup a first visit starts from: the sentiment preset.
pub fn starter() -> SteeringConfig {
    SteeringConfig::from_json(include_str!("../../../../www/presets/sentiment.json"))
        .unwrap_or_default()
}

#[derive(Debug, Clone, serde::Deserialize)]
struct PresetEntry {
    file: String,
    title: String,
    #[serde(default)]
    kind: String,
}

async fn fetch_text(url: &str) -> Result<String, String> {
    let w = web_sys::window().ok_or("no window")?;
    let resp = JsFuture::from(w.fetch_with_str(url)).await.map_err(|e| format!("{e:?}"))?;
    let resp: web_sys::Response =
        wasm_bindgen::JsCast::dyn_into(resp).map_err(|_| "not a response")?;
    if !resp.ok() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let t = JsFuture::from(resp.text().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("{e:?}"))?;
    t.as_string().ok_or_else(|| "not text".into())
}

/// Title, presets and lessons, large-text mode, and Share (one click copies a link that
/// restores the whole setup).
#[component]
pub fn ShareBar() -> impl IntoView {
    let st = expect_context::<AppState>();
    let presets = LocalResource::new(|| async {
        let t = fetch_text("presets/index.json").await.ok()?;
        serde_json::from_str::<Vec<PresetEntry>>(&t).ok()
    });
    let (copied, set_copied) = signal(false);
    let share = move |_| match tiller_share::url::encode(&st.to_config()) {
        Ok(frag) => {
            let Some(w) = web_sys::window() else { return };
            let loc = w.location();
            let base = format!(
                "{}{}{}",
                loc.origin().unwrap_or_default(),
                loc.pathname().unwrap_or_default(),
                loc.search().unwrap_or_default()
            );
            let url = format!("{base}{frag}");
            if let Ok(h) = w.history() {
                let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
            }
            st.share_url.set(url.clone());
            let clip = w.navigator().clipboard();
            leptos::task::spawn_local(async move {
                set_copied.set(JsFuture::from(clip.write_text(&url)).await.is_ok());
            });
        }
        Err(e) => st.notice.set(Some(format!("This setup cannot be shared: {e}"))),
    };
    let load_preset = move |file: String| {
        if file.is_empty() {
            return;
        }
        leptos::task::spawn_local(async move {
            match fetch_text(&format!("presets/{file}"))
                .await
                .map_err(|e| e.to_string())
                .and_then(|t| SteeringConfig::from_json(&t).map_err(|e| e.to_string()))
            {
                Ok(c) => {
                    st.apply_config(&c);
                    st.notice.set(None);
                    st.compute_next();
                    crate::components::lesson::start(st);
                }
                Err(e) => {
                    st.notice.set(Some(format!("The preset {file} could not be opened: {e}")))
                }
            }
        });
    };
    view! {
        <header class="top">
            <h1>"Tiller"</h1>
            <p class="tagline">"See and steer what a language model represents, in your browser."</p>
            <div class="top-controls">
                <label>"Start from "
                    <select data-testid="presets" on:change=move |ev| load_preset(event_target_value(&ev))>
                        <option value="">"a preset or lesson…"</option>
                        {move || presets.get().flatten().unwrap_or_default().into_iter().map(|p| {
                            let label = if p.kind == "lesson" { format!("Lesson: {}", p.title) } else { p.title.clone() };
                            view! { <option value=p.file.clone()>{label}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <label><input type="checkbox" prop:checked=move || st.large_text.get()
                    on:change=move |ev| st.large_text.set(event_target_checked(&ev)) />" large text"</label>
                <button class="primary" data-testid="share" on:click=share>"Share"</button>
            </div>
            <Show when=move || !st.share_url.get().is_empty()>
                <div class="share-line">
                    <input readonly data-testid="share-url" prop:value=move || st.share_url.get()
                        aria-label="share link" on:focus=move |ev| {
                            if let Some(i) = wasm_bindgen::JsCast::dyn_ref::<web_sys::HtmlInputElement>(&event_target::<web_sys::HtmlInputElement>(&ev)) { i.select() }
                        } />
                    <span class="muted">{move || if copied.get() { "copied" } else { "copy this link" }}</span>
                </div>
            </Show>
        </header>
    }
}
