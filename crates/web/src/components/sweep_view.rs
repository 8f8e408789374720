use crate::components::Term;
use crate::state::AppState;
use leptos::prelude::*;
use tiller_steer::sweep::SweepPoint;
use tiller_web::protocol::ToWorker;

/// Curves of concept scores (z), side effects (KL and perplexity on neutral continuations)
/// against the strength of the first enabled intervention, with a random-direction control.
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
        <section class="panel sweep" id="panel-sweep">
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

/// One line of a small chart: its label, css class, (strength, value) points, and whether it is
/// dashed (the random control).
#[derive(Clone)]
pub struct Series {
    label: String,
    class: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

/// One quantity against strength: the real sweep solid, its random control dashed.
#[component]
fn SmallChart(
    /// Title above the chart (the quantity and its unit).
    title: String,
    /// What the quantity is, in one line (shown on hover, focus or tap).
    tip: &'static str,
    /// The y axis's title (the quantity, short, with its unit).
    y_title: &'static str,
    /// data-testid of the svg.
    testid: &'static str,
    /// The lines.
    series: Vec<Series>,
) -> impl IntoView {
    let (w, h, px, py) = (320.0, 150.0, 52.0, 22.0);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(_, y)| y.is_finite())
        .collect();
    let (x0, x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    let (mut y0, mut y1) =
        all.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    if y1 <= y0 {
        (y0, y1) = (y0.min(0.0) - 0.5, y1.max(0.0) + 0.5);
    }
    let sx = move |x: f64| px + (w - px - 10.0) * (x - x0) / (x1 - x0).max(1e-9);
    let sy = move |y: f64| h - py - (h - py - 10.0) * (y - y0) / (y1 - y0).max(1e-9);
    let lines = series
        .iter()
        .map(|Series { label, class, points, dashed }| {
            let p = points
                .iter()
                .filter(|(_, y)| y.is_finite())
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect::<Vec<_>>()
                .join(" ");
            view! { <polyline points=p class=format!("line {class}") class:dashed=*dashed><title>{label.clone()}</title></polyline> }
        })
        .collect_view();
    let table: Vec<String> = series
        .iter()
        .map(|s| {
            let v: Vec<String> = s.points.iter().map(|(x, y)| format!("{x:.2}: {y:.3}")).collect();
            format!("{}: {}", s.label, v.join(", "))
        })
        .collect();
    view! {
        <figure class="small-chart">
            <figcaption><Term name=title.clone() tip=tip /></figcaption>
            <svg class="chart" viewBox=format!("0 0 {w} {h}") data-testid=testid role="img" aria-label=format!("{title} against strength")>
                {lines}
                <line x1=px y1=sy(0.0f64.clamp(y0, y1)) x2=w - 10.0 y2=sy(0.0f64.clamp(y0, y1)) class="grid" />
                <text x=px - 4.0 y=sy(y1) + 4.0 class="axis end">{format!("{y1:.2}")}</text>
                <text x=px - 4.0 y=sy(y0) + 4.0 class="axis end">{format!("{y0:.2}")}</text>
                <text x=px y=h - 6.0 class="axis">{format!("{x0:.2}")}</text>
                <text x=w - 10.0 y=h - 6.0 class="axis end">{format!("{x1:.2}")}</text>
                <text x=(w + px) / 2.0 y=h - 6.0 class="axis-title mid">"strength"</text>
                <text class="axis-title mid" transform=format!("translate(12 {}) rotate(-90)", (h - py) / 2.0)>{y_title}</text>
            </svg>
            <ul class="sr-only">{table.into_iter().map(|t| view! { <li>{t}</li> }).collect_view()}</ul>
        </figure>
    }
}

#[component]
fn Curves(
    /// Sweep points so far (real and control), in arrival order.
    points: Vec<SweepPoint>,
) -> impl IntoView {
    let real: Vec<&SweepPoint> = points.iter().filter(|q| !q.control).collect();
    let ctl: Vec<&SweepPoint> = points.iter().filter(|q| q.control).collect();
    let names: Vec<String> =
        real.first().map(|q| q.scores.keys().cloned().collect()).unwrap_or_default();
    let pts = |ps: &[&SweepPoint], f: &dyn Fn(&SweepPoint) -> f64| -> Vec<(f64, f64)> {
        ps.iter().map(|q| (q.strength as f64, f(q))).collect()
    };
    let mut scores = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let class = format!("score s{}", i % 4);
        let z = |q: &SweepPoint| q.scores.get(n).copied().unwrap_or(f64::NAN);
        scores.push(Series {
            label: n.clone(),
            class: class.clone(),
            points: pts(&real, &z),
            dashed: false,
        });
        if !ctl.is_empty() {
            let label = format!("{n}, random control");
            scores.push(Series { label, class, points: pts(&ctl, &z), dashed: true });
        }
    }
    let two = |f: &dyn Fn(&SweepPoint) -> f64, class: &str| {
        let line = |label: &str, ps: &[&SweepPoint], dashed| Series {
            label: label.into(),
            class: class.into(),
            points: pts(ps, f),
            dashed,
        };
        let mut v = vec![line("steered", &real, false)];
        if !ctl.is_empty() {
            v.push(line("random control", &ctl, true));
        }
        v
    };
    let kl = two(&|q| q.kl_mean, "kl");
    let ppl = two(&|q| q.perplexity, "ppl");
    let ctl_kl = |x: f32| {
        ctl.iter()
            .find(|q| q.strength == x)
            .map(|q| format!("{:.3}", q.kl_mean))
            .unwrap_or("…".into())
    };
    view! {
        <div class="small-multiples">
            <SmallChart title="concept scores (z: baseline standard deviations)".into() testid="sweep-chart" series=scores
                y_title="score (z)" tip="Each concept's reading of the generated text, in standard deviations of the unsteered baseline's readings: how far steering moved it" />
            <SmallChart title="side effects: KL on neutral continuations (nats)".into() testid="sweep-kl" series=kl
                y_title="KL (nats)" tip="KL divergence of the steered next-token distribution from the unsteered one, averaged over neutral texts: 0 means steering changed nothing there" />
            <SmallChart title="perplexity of neutral continuations".into() testid="sweep-ppl" series=ppl
                y_title="perplexity" tip="How surprised the steered model is by ordinary text (exp of the mean negative log-likelihood): rising perplexity means the model is being damaged" />
        </div>
        <p class="legend">
            {names.iter().enumerate().map(|(i, n)| view! { <span class=format!("key score s{}", i % 4)>{n.clone()}</span> }).collect_view()}
            <span class="key dashed">"random direction, same norm (control)"</span>
        </p>
        <table class="sweep-table">
            <tr><th>"strength"</th><th>"text"</th><th>"KL"</th><th>"KL, control"</th><th>"perplexity"</th></tr>
            {real.iter().map(|q| view! {
                <tr><td>{format!("{:.2}", q.strength)}</td><td class="gen">{q.text.clone()}</td>
                <td>{format!("{:.3}", q.kl_mean)}</td><td>{ctl_kl(q.strength)}</td><td>{format!("{:.1}", q.perplexity)}</td></tr>
            }).collect_view()}
        </table>
    }
}
