use crate::state::{AppState, ConceptDraft};
use leptos::prelude::*;
use tiller_steer::concept::Read;
use tiller_steer::directions::Method;
use tiller_web::protocol::ToWorker;

/// The concepts: tabs, and the editor of the selected one (name, examples, read position,
/// method), with Compute.
#[component]
pub fn ConceptsPanel() -> impl IntoView {
    let st = expect_context::<AppState>();
    let cur = move || st.concepts.get().get(st.selected.get()).cloned();
    let edit = move |f: &dyn Fn(&mut ConceptDraft)| {
        let i = st.selected.get_untracked();
        st.concepts.update(|v| {
            if let Some(d) = v.get_mut(i) {
                f(d)
            }
        });
    };
    let add = move |_| {
        let n = st.concepts.get_untracked().len();
        st.concepts.update(|v| {
            v.push(ConceptDraft {
                name: format!("concept {}", n + 1),
                positives: String::new(),
                negatives: String::new(),
                read: Read::LastToken,
                method: Method::MeanDiff,
            })
        });
        st.selected.set(n);
    };
    let remove = move |_| {
        let i = st.selected.get_untracked();
        let name = st.concepts.get_untracked().get(i).map(|d| d.name.trim().to_string());
        st.concepts.update(|v| {
            if i < v.len() {
                v.remove(i);
            }
        });
        if let Some(n) = name {
            st.interventions.update(|v| v.retain(|s| s.concept != n));
        }
        st.selected.set(i.saturating_sub(1));
    };
    let compute = move |_| {
        st.concept_error.set(None);
        let Some(d) = cur() else { return };
        match d.concept() {
            Ok(c) => {
                if !st.ready() {
                    st.concept_error.set(Some("The model is not loaded yet.".into()));
                    return;
                }
                st.working.set(Some(format!("computing `{}`", c.name)));
                st.send(&ToWorker::Analyze { concept: c });
            }
            Err(e) => st.concept_error.set(Some(e)),
        }
    };
    let stale = move || cur().map(|d| st.report_for(&d).is_none()).unwrap_or(false);
    view! {
        <section class="panel concepts" id="panel-concepts">
            <div class="panel-head">
                <h2>"Concepts"</h2>
                <button data-testid="concept-add" on:click=add title="Add a concept">"+ concept"</button>
            </div>
            <div class="tabs" role="tablist">
                <For each={move || st.concepts.get().into_iter().enumerate().collect::<Vec<_>>()}
                    key={|(i, d)| (*i, d.name.clone())}
                    children=move |(i, d)| view! {
                        <button role="tab" class="tab" class:active=move || st.selected.get() == i
                            aria-selected=move || (st.selected.get() == i).to_string()
                            on:click=move |_| st.selected.set(i)>{d.name.clone()}</button>
                    } />
            </div>
            <Show when=move || cur().is_some()
                fallback=|| view! { <p class="muted">"Add a concept: two sets of examples that differ in one thing."</p> }>
                <div class="editor">
                    <label>"Name "
                        <input data-testid="concept-name" type="text"
                            prop:value=move || cur().map(|d| d.name).unwrap_or_default()
                            on:input=move |ev| { let v = event_target_value(&ev); edit(&|d| d.name = v.clone()) } />
                    </label>
                    <div class="examples">
                        <label>"Positive examples (one per line)"
                            <textarea data-testid="positive-examples" rows="6"
                                prop:value=move || cur().map(|d| d.positives).unwrap_or_default()
                                on:input=move |ev| { let v = event_target_value(&ev); edit(&|d| d.positives = v.clone()) }></textarea>
                        </label>
                        <label>"Negative examples (paired line by line)"
                            <textarea data-testid="negative-examples" rows="6"
                                prop:value=move || cur().map(|d| d.negatives).unwrap_or_default()
                                on:input=move |ev| { let v = event_target_value(&ev); edit(&|d| d.negatives = v.clone()) }></textarea>
                        </label>
                    </div>
                    <div class="controls">
                        <label>"method "
                            <select data-testid="concept-method"
                                on:change=move |ev| {
                                    let v = event_target_value(&ev);
                                    if let Ok(m) = v.parse::<Method>() { edit(&|d| d.method = m) }
                                }>
                                {Method::ALL.iter().map(|m| {
                                    let m = *m;
                                    view! { <option value=m.name() selected=move || cur().map(|d| d.method == m).unwrap_or(false)>{m.label()}</option> }
                                }).collect_view()}
                            </select>
                        </label>
                        <label>"read at "
                            <select on:change=move |ev| {
                                let r = if event_target_value(&ev) == "mean" { Read::Mean } else { Read::LastToken };
                                edit(&|d| d.read = r)
                            }>
                                <option value="last" selected=move || cur().map(|d| d.read == Read::LastToken).unwrap_or(true)>"last token"</option>
                                <option value="mean" selected=move || cur().map(|d| d.read == Read::Mean).unwrap_or(false)>"mean of tokens"</option>
                            </select>
                        </label>
                        <button class="primary" data-testid="compute-concept" on:click=compute
                            disabled=move || !st.ready() || st.working.get().is_some()>
                            {move || if stale() { "Compute" } else { "Recompute" }}
                        </button>
                        <button on:click=remove title="Remove this concept">"Remove"</button>
                    </div>
                    <Show when=move || st.working.get().is_some()>
                        <p class="working" role="status" data-testid="working">{move || st.working.get().unwrap_or_default()}</p>
                    </Show>
                    <Show when=move || st.concept_error.get().is_some()>
                        <p class="error" role="alert" data-testid="concept-error">{move || st.concept_error.get().unwrap_or_default()}</p>
                    </Show>
                </div>
            </Show>
        </section>
    }
}
