use crate::state::AppState;
use leptos::prelude::*;
use tiller_steer::sweep::SweepPoint;
use tiller_web::protocol::ToWorker;

/// Curves of concept score, KL and perplexity against the strength of the first enabled
/// intervention.
#[component]
pub fn SweepView() -> impl IntoView {
    let st = expect_context::<AppState>();
    let run = move |_| {
        st.sweep_error.set(None);
        let Some(iv) = st.interventions.get_untracked().into_iter().find(|i| i.enabled) else {
            st.sweep_error
                .set(Some("Add and enable an intervention to sweep its strength.".into()));
            return;
        };
        let s = if iv.strength == 0.0 { 1.0 } else { iv.strength };
        let strengths: Vec<f32> =
            [-1.0f32, -0.5, 0.0, 0.5, 1.0, 1.5].iter().map(|k| k * s).collect();
        let g = st.gen.get_untracked();
        st.sweep.set(Vec::new());
        st.sweep_running.set(true);
        st.send(&ToWorker::Sweep {
            prompt: g.prompt,
            chat: g.chat,
            max_tokens: (g.max_tokens as usize).min(24),
            concepts: st.valid_concepts(),
            read_layer: iv.layers[0],
            intervention: iv,
            strengths,
        });
    };
    view! {
        <section class="panel sweep">
            <div class="panel-head">
                <h2>"Strength sweep"</h2>
                <button data-testid="sweep" on:click=run disabled=move || !st.ready() || st.sweep_running.get() || st.working.get().is_some()>"Sweep"</button>
            </div>
            <Show when=move || st.sweep_error.get().is_some()>
                <p class="error" role="alert">{move || st.sweep_error.get().unwrap_or_default()}</p>
            </Show>
            <Show when=move || !st.sweep.get().is_empty()>
                <Curves points=st.sweep.get() />
            </Show>
        </section>
    }
}

#[component]
fn Curves(
    /// Sweep points so far, in strength order.
    points: Vec<SweepPoint>,
) -> impl IntoView {
    let (w, h, p) = (520.0, 160.0, 30.0);
    let xs: Vec<f64> = points.iter().map(|q| q.strength as f64).collect();
    let (x0, x1) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let sx = move |x: f64| p + (w - 2.0 * p) * (x - x0) / (x1 - x0).max(1e-9);
    let names: Vec<String> =
        points.first().map(|q| q.scores.keys().cloned().collect()).unwrap_or_default();
    let mut series: Vec<(String, &'static str, Vec<f64>)> = names
        .iter()
        .map(|n| {
            (
                format!("score: {n}"),
                "score",
                points.iter().map(|q| q.scores.get(n).copied().unwrap_or(f64::NAN)).collect(),
            )
        })
        .collect();
    series.push(("KL (neutral text)".into(), "kl", points.iter().map(|q| q.kl_mean).collect()));
    series.push((
        "log perplexity".into(),
        "ppl",
        points.iter().map(|q| q.perplexity.ln()).collect(),
    ));
    let lines = series.iter().map(|(label, class, ys)| {
        let finite: Vec<f64> = ys.iter().copied().filter(|y| y.is_finite()).collect();
        let (y0, y1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(*y), b.max(*y)));
        let sy = |y: f64| h - p - (h - 2.0 * p) * (y - y0) / (y1 - y0).max(1e-9);
        let pts = xs.iter().zip(ys).filter(|(_, y)| y.is_finite()).map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect::<Vec<_>>().join(" ");
        view! { <polyline points=pts class=format!("line {class}")><title>{format!("{label}: {y0:.3} to {y1:.3}")}</title></polyline> }
    }).collect_view();
    view! {
        <svg class="chart" viewBox=format!("0 0 {w} {h}") data-testid="sweep-chart" role="img" aria-label="Effect curves against strength">
            {lines}
            <text x=p y=h - 6.0 class="axis">{format!("strength {x0:.2}")}</text>
            <text x=w - p y=h - 6.0 class="axis end">{format!("{x1:.2}")}</text>
        </svg>
        <p class="legend">{series.iter().map(|(l, c, _)| view! { <span class=format!("key {c}")>{l.clone()}</span> }).collect_view()}</p>
        <table class="sweep-table">
            <tr><th>"strength"</th><th>"text"</th><th>"KL"</th><th>"perplexity"</th></tr>
            {points.iter().map(|q| view! {
                <tr><td>{format!("{:.2}", q.strength)}</td><td class="gen">{q.text.clone()}</td>
                <td>{format!("{:.3}", q.kl_mean)}</td><td>{format!("{:.1}", q.perplexity)}</td></tr>
            }).collect_view()}
        </table>
    }
}
