use crate::state::AppState;
use leptos::prelude::*;
use tiller_steer::report::{ConceptReport, LayerReport};

const W: f64 = 560.0;
const H: f64 = 200.0;
const PAD: f64 = 28.0;

/// The selected concept's per-layer chart, scatter at the selected layer, promoted and
/// suppressed tokens, and the SVD spectrum or SNMF features.
#[component]
pub fn ConceptResults() -> impl IntoView {
    let st = expect_context::<AppState>();
    let computed = move || st.concepts.get().get(st.selected.get()).and_then(|d| st.report_for(d));
    view! {
        <Show when=move || computed().is_some()
            fallback=move || view! { <section class="panel results muted">"Compute a concept to see its directions layer by layer."</section> }>
            {move || computed().map(|c| {
                let r = c.report.clone();
                let layer = st.layer.get().unwrap_or(r.best_layer).min(r.layers.len().saturating_sub(1));
                let lr = r.layers.get(layer).cloned();
                view! {
                    <section class="panel results">
                        <div class="panel-head">
                            <h2>{format!("`{}` by {}", r.name, method_name(&r))}</h2>
                            <span class="muted">{format!("computed in {:.1} s", c.ms / 1000.0)}</span>
                        </div>
                        <LayerChart report=r.clone() selected=layer />
                        {lr.map(|l| view! {
                            <div class="layer-detail">
                                <Scatter layer=l.clone() />
                                <LayerFacts layer=l.clone() best=r.best_layer />
                            </div>
                            <Tokens layer=l.clone() />
                            <Extras layer=l />
                        })}
                    </section>
                }
            })}
        </Show>
    }
}

fn method_name(r: &ConceptReport) -> &'static str {
    use tiller_steer::directions::Method::*;
    match r.method {
        MeanDiff => "mean difference",
        Pca => "PCA of differences",
        Probe => "logistic probe",
        Svd => "SVD subspace",
        Snmf => "SNMF",
    }
}

fn x_of(l: usize, n: usize) -> f64 {
    PAD + (W - 2.0 * PAD) * (l as f64 + 0.5) / n as f64
}

fn y_of(v: f64) -> f64 {
    H - PAD - (H - 2.0 * PAD) * v.clamp(0.0, 1.0)
}

fn polyline(r: &ConceptReport, f: impl Fn(&LayerReport) -> f64) -> String {
    let n = r.layers.len();
    r.layers
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{:.1},{:.1}", x_of(i, n), y_of(f(l))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Probe accuracy, separation (AUROC), stability per layer; the sign criterion as marks; the
/// selected layer highlighted; click a layer to select it.
#[component]
fn LayerChart(
    /// The concept's report.
    report: ConceptReport,
    /// The highlighted layer.
    selected: usize,
) -> impl IntoView {
    let st = expect_context::<AppState>();
    let n = report.layers.len().max(1);
    let band = (W - 2.0 * PAD) / n as f64;
    let acc = polyline(&report, |l| l.probe_accuracy.unwrap_or(0.0));
    let auroc = polyline(&report, |l| l.diagnostics.auroc);
    let stab = polyline(&report, |l| l.stability.max(0.0));
    let best = report.best_layer;
    view! {
        <svg class="chart" data-testid="layer-chart" viewBox=format!("0 0 {W} {H}") role="img"
            aria-label="Per-layer diagnostics: probe accuracy, separation, stability">
            {(0..n).map(|i| {
                let x = PAD + band * i as f64;
                let sign = report.layers[i].diagnostics.opposite_signs;
                view! {
                    <g class="col" data-layer=i.to_string() on:click=move |_| st.layer.set(Some(i))>
                        <rect x=x y=PAD - 8.0 width=band height=H - 2.0 * PAD + 8.0
                            class:sel=move || i == selected class:best=move || i == best />
                        <circle cx=x + band / 2.0 cy=H - PAD + 10.0 r="3" class=if sign { "sign on" } else { "sign" }>
                            <title>{format!("layer {i}: {}", if sign { "class means have opposite signs" } else { "same sign" })}</title>
                        </circle>
                        <title>{format!("layer {i}")}</title>
                    </g>
                }
            }).collect_view()}
            <line x1=PAD y1=y_of(0.5) x2=W - PAD y2=y_of(0.5) class="grid" />
            <polyline points=acc class="line acc" />
            <polyline points=auroc class="line auroc" />
            <polyline points=stab class="line stab" />
            <text x=PAD y=H - 4.0 class="axis">"layer 0"</text>
            <text x=W - PAD y=H - 4.0 class="axis end">{format!("layer {}", n - 1)}</text>
            <text x=PAD - 4.0 y=y_of(1.0) + 4.0 class="axis end">"1"</text>
            <text x=PAD - 4.0 y=y_of(0.0) + 4.0 class="axis end">"0"</text>
        </svg>
        <p class="legend">
            <span class="key acc">"probe accuracy (held out)"</span>
            <span class="key auroc">"separation (AUROC)"</span>
            <span class="key stab">"stability"</span>
            <span class="key sign">"opposite signs"</span>
            <span class="key best">"best layer"</span>
        </p>
    }
}

/// The examples at the selected layer: along the direction and the top orthogonal component.
#[component]
fn Scatter(
    /// The selected layer's report.
    layer: LayerReport,
) -> impl IntoView {
    let (w, h, p) = (260.0, 200.0, 14.0);
    let all: Vec<[f32; 2]> = layer.scatter_pos.iter().chain(&layer.scatter_neg).copied().collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for [x, y] in &all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    let sx = move |x: f32| p + (w - 2.0 * p) * ((x - x0) / (x1 - x0).max(1e-6)) as f64;
    let sy = move |y: f32| h - p - (h - 2.0 * p) * ((y - y0) / (y1 - y0).max(1e-6)) as f64;
    let dots = |pts: &[[f32; 2]], class: &'static str| {
        pts.iter()
            .map(|[x, y]| view! { <circle cx=sx(*x) cy=sy(*y) r="4" class=class /> })
            .collect_view()
    };
    view! {
        <figure class="scatter">
            <svg viewBox=format!("0 0 {w} {h}") data-testid="scatter" role="img"
                aria-label="Examples projected on the direction (x) and the top orthogonal component (y)">
                {dots(&layer.scatter_neg, "neg")}
                {dots(&layer.scatter_pos, "pos")}
            </svg>
            <figcaption>{format!("layer {}: examples along the direction →, top orthogonal component ↑ (positives ●, negatives ○)", layer.layer)}</figcaption>
        </figure>
    }
}

#[component]
fn LayerFacts(
    /// The selected layer's report.
    layer: LayerReport,
    /// The layer the diagnostics pick.
    best: usize,
) -> impl IntoView {
    let d = &layer.diagnostics;
    let rows = vec![
        ("probe accuracy", layer.probe_accuracy.map(|a| format!("{a:.2}")).unwrap_or("—".into())),
        ("AUROC", format!("{:.2}", d.auroc)),
        ("Cohen's d", format!("{:.2}", d.cohens_d)),
        ("stability", format!("{:.2}", layer.stability)),
        ("opposite signs", if d.opposite_signs { "yes".into() } else { "no".into() }),
        ("norm / mean residual", format!("{:.3}", d.norm_over_mean_residual)),
    ];
    view! {
        <div class="facts">
            <h3>{format!("Layer {}{}", layer.layer, if layer.layer == best { " (best)" } else { "" })}</h3>
            <table>{rows.into_iter().map(|(k, v)| view! { <tr><th>{k}</th><td>{v}</td></tr> }).collect_view()}</table>
        </div>
    }
}

#[component]
fn Tokens(
    /// The selected layer's report.
    layer: LayerReport,
) -> impl IntoView {
    let list = |xs: &[tiller_steer::report::TokenScore]| {
        xs.iter().map(|t| view! { <li><code>{format!("{:?}", t.token)}</code>" "<span class="muted">{format!("{:+.2}", t.score)}</span></li> }).collect_view()
    };
    view! {
        <div class="tokens" data-testid="top-tokens">
            <div><h3>"Promotes"</h3><ol>{list(&layer.promotes)}</ol></div>
            <div><h3>"Suppresses"</h3><ol>{list(&layer.suppresses)}</ol></div>
        </div>
    }
}

/// SVD spectrum or SNMF features, for those methods.
#[component]
fn Extras(
    /// The selected layer's report.
    layer: LayerReport,
) -> impl IntoView {
    let svd = layer.svd.clone().map(|s| {
        let top = s.singular_values.first().copied().unwrap_or(1.0).max(1e-9);
        view! {
            <div class="svd">
                <h3>{format!("Spectrum (eigengap {:.2}, effective rank {:.1})", s.eigengap, s.effective_rank)}</h3>
                <svg viewBox="0 0 200 60" class="spectrum">
                    {s.singular_values.iter().enumerate().map(|(i, v)| {
                        let hgt = 50.0 * v / top;
                        view! { <rect x=10.0 + 40.0 * i as f64 y=55.0 - hgt width="28" height=hgt><title>{format!("s{} = {v:.2}", i + 1)}</title></rect> }
                    }).collect_view()}
                </svg>
            </div>
        }
    });
    let snmf = layer.snmf.clone().map(|s| view! {
        <div class="snmf">
            <h3>{format!("SNMF features (error {:.3} → {:.3} in {} steps)", s.error_first, s.error_last, s.steps)}</h3>
            <ol>
                {s.features.iter().enumerate().map(|(i, f)| view! {
                    <li class:best=i == s.best_feature>
                        <span class="muted">{format!("gap {:+.3}: ", f.concept_gap)}</span>
                        {f.top_tokens.iter().map(|t| format!("{:?}", t.token)).collect::<Vec<_>>().join(" ")}
                    </li>
                }).collect_view()}
            </ol>
        </div>
    });
    view! { {svd} {snmf} }
}
