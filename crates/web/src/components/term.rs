use leptos::prelude::*;

/// A metric's or a term's name with its one-line explanation in place: shown on hover, on
/// keyboard focus and on tap (the name is focusable), and read by screen readers as the
/// name's description.
#[component]
pub fn Term(
    /// The name as shown.
    #[prop(into)]
    name: String,
    /// One line: what it is and how to read it.
    #[prop(into)]
    tip: String,
) -> impl IntoView {
    view! {
        <span class="term" tabindex="0" data-testid="term">
            {name}
            <span class="tip" role="tooltip">{tip}</span>
        </span>
    }
}
