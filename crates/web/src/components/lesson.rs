use crate::state::AppState;
use leptos::prelude::*;
use tiller_share::lesson::{Lesson, Step};

/// The button a step's `run` presses (the page's own button, so a step runs exactly what a
/// click would, and not while the button is disabled).
fn run_button(run: &str) -> Option<&'static str> {
    Some(match run {
        "generate" => "generate",
        "sweep" => "sweep",
        "read" => "read-text",
        "patch" => "patch-run",
        "lens" => "lens-run",
        "attention" => "attention-run",
        "continue" => "conversation-continue",
        _ => return None,
    })
}

fn document() -> Option<web_sys::Document> {
    web_sys::window()?.document()
}

/// Scroll a panel into view and mark it as the one the step is about.
fn show_panel(name: Option<&str>) {
    let Some(doc) = document() else { return };
    if let Ok(list) = doc.query_selector_all(".lesson-focus") {
        for i in 0..list.length() {
            if let Some(e) = list
                .item(i)
                .and_then(|n| wasm_bindgen::JsCast::dyn_into::<web_sys::Element>(n).ok())
            {
                let _ = e.class_list().remove_1("lesson-focus");
            }
        }
    }
    let Some(name) = name else { return };
    if let Some(e) = doc.get_element_by_id(&format!("panel-{name}")) {
        let _ = e.class_list().add_1("lesson-focus");
        let opts = web_sys::ScrollIntoViewOptions::new();
        opts.set_block(web_sys::ScrollLogicalPosition::Start);
        opts.set_behavior(web_sys::ScrollBehavior::Smooth);
        e.scroll_into_view_with_scroll_into_view_options(&opts);
    }
}

/// Open step `i`: select what it names, show its panel, queue what it runs; `refocus`: the
/// learner moved with the lesson's own buttons (keep the keyboard focus in the lesson).
fn enter(st: AppState, lesson: &Lesson, i: usize, refocus: bool) {
    let Some(step) = lesson.steps.get(i) else { return };
    st.lesson_step.set(i);
    let a = &step.action;
    if let Some(c) = &a.concept {
        if let Some(k) = st.concepts.get_untracked().iter().position(|d| d.name.trim() == c) {
            st.selected.set(k);
        }
    }
    if let Some(l) = a.layer {
        st.layer.set(Some(l as usize));
    }
    st.lesson_run.set(a.run.clone());
    if a.panel.is_some() {
        st.panel.set(a.panel.clone());
    }
    show_panel(a.panel.as_deref());
    // After the panel re-renders: its own scroll shows the current step, and the keyboard
    // focus (lost with the old buttons) goes to Next (Back on the last step).
    request_animation_frame(move || {
        let Some(doc) = document() else { return };
        let Ok(Some(panel)) = doc.query_selector("[data-testid=lesson-panel]") else { return };
        if let Ok(Some(cur)) = panel.query_selector("li.current") {
            if let Some(cur) = wasm_bindgen::JsCast::dyn_ref::<web_sys::HtmlElement>(&cur) {
                panel.set_scroll_top((cur.offset_top() - 48).max(0));
            }
        }
        let focus_lost = refocus && doc.active_element().is_none_or(|e| e.tag_name() == "BODY");
        if focus_lost {
            for id in ["lesson-next", "lesson-back"] {
                let sel = format!("[data-testid={id}]:not([disabled])");
                if let Ok(Some(b)) = panel.query_selector(&sel) {
                    if let Some(b) = wasm_bindgen::JsCast::dyn_ref::<web_sys::HtmlElement>(&b) {
                        let _ = b.focus();
                    }
                    break;
                }
            }
        }
    });
}

/// Paragraphs of a step's text (blank lines separate them).
fn paragraphs(text: &str) -> impl IntoView {
    text.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| view! { <p>{p.trim().to_string()}</p> })
        .collect_view()
}

fn first_sentence(text: &str) -> String {
    let t = text.trim();
    let end = t.find(". ").map(|i| i + 1).unwrap_or(t.len());
    let s: String = t[..end].chars().take(90).collect();
    if s.len() < t[..end].len() {
        format!("{s}…")
    } else {
        s
    }
}

fn step_body(step: Step) -> impl IntoView {
    let Step { text, todo, question, expect, .. } = step;
    view! {
        <div class="step-body">
            {paragraphs(&text)}
            {(!todo.is_empty()).then(|| view! { <p class="try"><strong>"Try: "</strong>{todo}</p> })}
            {(!question.is_empty()).then(|| view! { <p class="question"><strong>"Question: "</strong>{question}</p> })}
            {(!expect.is_empty()).then(|| view! {
                <details class="expect" data-testid="lesson-expect">
                    <summary>"What you should see"</summary>
                    <p>{expect}</p>
                </details>
            })}
        </div>
    }
}

/// The open lesson: its steps (the current one in full, the others as a list to jump to), next
/// and back, and close. Entering a step applies its action; a queued run starts once the
/// model and the concepts are ready.
#[component]
pub fn LessonPanel() -> impl IntoView {
    let st = expect_context::<AppState>();
    // A queued run: press the page's own button once everything is ready.
    Effect::new(move |_| {
        let Some(run) = st.lesson_run.get() else { return };
        if !st.settled() {
            return;
        }
        let Some(id) = run_button(&run) else {
            st.lesson_run.set(None);
            return;
        };
        let sel = format!("[data-testid=\"{id}\"]");
        if let Some(b) = document().and_then(|d| d.query_selector(&sel).ok().flatten()) {
            if !b.has_attribute("disabled") {
                st.lesson_run.set(None);
                if let Some(h) = wasm_bindgen::JsCast::dyn_ref::<web_sys::HtmlElement>(&b) {
                    h.click();
                }
            }
        }
    });
    let go = move |i: usize| {
        if let Some(l) = st.lesson.get_untracked() {
            enter(st, &l, i, true);
        }
    };
    let close = move |_| {
        st.lesson.set(None);
        st.lesson_run.set(None);
        show_panel(None);
    };
    view! {
        <Show when=move || st.lesson.get().is_some()>
            {move || st.lesson.get().map(|l| {
                let n = l.steps.len();
                let cur = st.lesson_step.get().min(n.saturating_sub(1));
                view! {
                    <section class="panel lesson" data-testid="lesson-panel" id="panel-lesson"
                        aria-label=format!("Lesson: {}", l.title) data-step=cur.to_string()>
                        <div class="panel-head">
                            <h2>{format!("Lesson: {}", l.title)}</h2>
                            <button class="link" data-testid="lesson-close" on:click=close>"close the lesson"</button>
                        </div>
                        <ol class="steps">
                            {l.steps.iter().cloned().enumerate().map(|(i, s)| {
                                let here = i == cur;
                                let label = first_sentence(&s.text);
                                view! {
                                    <li data-testid="lesson-step" data-step=i.to_string() class:current=here
                                        aria-current=if here { Some("step") } else { None }>
                                        {if here {
                                            view! { <h3>{format!("Step {} of {n}", i + 1)}</h3>{step_body(s)} }.into_any()
                                        } else {
                                            view! { <button class="step-link" on:click=move |_| go(i)>{label}</button> }.into_any()
                                        }}
                                    </li>
                                }
                            }).collect_view()}
                        </ol>
                        <div class="controls lesson-nav">
                            <button data-testid="lesson-back" disabled={cur == 0} on:click=move |_| go(cur.saturating_sub(1))>"← Back"</button>
                            <span class="muted" aria-live="polite">{format!("step {} of {n}", cur + 1)}</span>
                            <button class="primary" data-testid="lesson-next" disabled={cur + 1 >= n} on:click=move |_| go(cur + 1)>"Next →"</button>
                        </div>
                    </section>
                }
            })}
        </Show>
    }
}

/// Apply the open step's action after a lesson is opened (from a preset, a link or the
/// autosave).
pub fn start(st: AppState) {
    if let Some(l) = st.lesson.get_untracked() {
        enter(st, &l, st.lesson_step.get_untracked(), false);
    }
}
