use crate::state::AppState;
use leptos::prelude::*;
use tiller_steer::concept::Concept;
use tiller_web::protocol::{BenchReport, ToWorker};

/// The concept the benchmark computes: formality, 16 pairs (the CLI's benchmarks use it too).
fn bench_concept() -> Option<Concept> {
    serde_json::from_str(include_str!("../../../../tests/data/formality16.json")).ok()
}

/// The benchmark as JSON a visitor can paste: this browser, the model, how it opened, prefill,
/// decode and a concept's compute.
pub fn report_json(st: AppState, r: &BenchReport) -> String {
    let w = web_sys::window();
    let nav = w.as_ref().map(|w| w.navigator());
    let status = st.status.get_untracked();
    let (open_ms, steps) = st.open_timing.get_untracked();
    let v = serde_json::json!({
        "tiller": env!("CARGO_PKG_VERSION"),
        "date": String::from(js_sys::Date::new_0().to_iso_string()),
        "user_agent": nav.as_ref().and_then(|n| n.user_agent().ok()),
        "hardware_concurrency": nav.as_ref().map(|n| n.hardware_concurrency()),
        "cross_origin_isolated": js_sys::Reflect::get(&js_sys::global(), &"crossOriginIsolated".into())
            .ok()
            .and_then(|v| v.as_bool()),
        "model": st.model_id.get_untracked(),
        "sha256": status.sha256,
        "backend": r.backend,
        "open_ms": open_ms,
        "open_steps": steps.iter().map(|(k, ms)| serde_json::json!({"step": k, "ms": ms})).collect::<Vec<_>>(),
        "prompt_tokens": r.prompt_tokens,
        "prefill_ms": r.prefill_ms,
        "prefill_tok_s": r.prefill_tok_s,
        "decode_tokens": r.decode_tokens,
        "decode_tok_s": r.decode_tok_s,
        "dispatches_per_token": r.dispatches_per_token,
        "submits_per_token": r.submits_per_token,
        "concept": r.concept,
        "concept_pairs": r.concept_pairs,
        "concept_ms": r.concept_ms,
        "concept_stages_ms": r.concept_stages_ms.iter().map(|(k, ms)| serde_json::json!({"stage": k, "ms": ms})).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// *Benchmark this browser*: the figures the README's tables hold, measured here, as JSON.
#[component]
pub fn BenchPanel() -> impl IntoView {
    let st = expect_context::<AppState>();
    let run = move |_| {
        st.bench.set(None);
        st.bench_error.set(None);
        match bench_concept() {
            Some(concept) => {
                st.working.set(Some("benchmark".into()));
                st.send(&ToWorker::Bench { concept });
            }
            None => st.bench_error.set(Some("the benchmark's concept is missing".into())),
        }
    };
    let json = move || st.bench.get().map(|r| report_json(st, &r)).unwrap_or_default();
    let copy = move |_| {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&json());
        }
    };
    view! {
        <details class="bench" data-testid="bench">
            <summary>"Benchmark this browser"</summary>
            <p class="muted">{"Prefill of a fixed prompt (201 tokens on SmolLM2; the table gives the count for this model), 64 greedy tokens, and a 16-pair concept's full compute, on the backend the model is on (open the page with ?backend=cpu or ?backend=webgpu to measure the other). The JSON below is what the README's tables hold: paste it into an issue."}</p>
            <div class="controls">
                <button data-testid="bench-run" on:click=run disabled=move || !st.ready() || st.working.get().is_some()>"Run the benchmark"</button>
                <Show when=move || st.bench.get().is_some()>
                    <button on:click=copy>"Copy the JSON"</button>
                </Show>
            </div>
            <Show when=move || st.bench_error.get().is_some()>
                <p class="error" role="alert">{move || st.bench_error.get().unwrap_or_default()}</p>
            </Show>
            {move || st.bench.get().map(|r| view! {
                <table class="bench-table" data-testid="bench-table">
                    <tr><th scope="row">"backend"</th><td>{r.backend.clone()}</td></tr>
                    <tr><th scope="row">"prefill"</th><td>{format!("{} tokens in {:.0} ms ({:.0} tok/s)", r.prompt_tokens, r.prefill_ms, r.prefill_tok_s)}</td></tr>
                    <tr><th scope="row">"decode"</th><td>{format!("{} tokens at {:.1} tok/s", r.decode_tokens, r.decode_tok_s)}</td></tr>
                    <tr><th scope="row">"concept"</th><td>{format!("`{}`, {} pairs, in {:.2} s", r.concept, r.concept_pairs, r.concept_ms / 1000.0)}</td></tr>
                    <tr><th scope="row">"open"</th><td>{move || format!("{:.2} s", st.open_timing.get().0 / 1000.0)}</td></tr>
                </table>
            })}
            <Show when=move || st.bench.get().is_some()>
                <textarea readonly rows="12" data-testid="bench-json" aria-label="benchmark JSON" prop:value=json></textarea>
            </Show>
        </details>
    }
}
