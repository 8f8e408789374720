use crate::components::Term;
use crate::state::{AppState, Computed};
use leptos::prelude::*;
use tiller_steer::report::{ConceptReport, LayerReport, Promotes, TokenScore};
use tiller_web::protocol::ToWorker;

const W: f64 = 560.0;
const H: f64 = 220.0;
const PAD: f64 = 34.0;
const BOTTOM: f64 = 40.0;

/// The selected concept's per-layer chart (held-out separation against the null band), the
/// scatter at the selected layer, what the direction promotes, and the SVD spectrum or SNMF
/// features.
#[component]
pub fn ConceptResults() -> impl IntoView {
    let st = expect_context::<AppState>();
    let computed = move || st.concepts.get().get(st.selected.get()).and_then(|d| st.report_for(d));
    view! {
        <Show when=move || computed().is_some()
            fallback=move || view! { <section class="panel results muted" id="panel-results">"Compute a concept to see its directions layer by layer."</section> }>
            {move || computed().map(|c| {
                let r = c.report.clone();
                let layer = st.layer.get().unwrap_or(r.best_layer).min(r.layers.len().saturating_sub(1));
                let lr = r.layers.get(layer).cloned();
                view! {
                    <section class="panel results" id="panel-results">
                        <div class="panel-head">
                            <h2>{format!("`{}` by {}", r.name, r.method.label())}</h2>
                            <span class="muted">{format!("computed in {:.1} s", c.ms / 1000.0)}</span>
                        </div>
                        <LayerChart report=r.clone() selected=layer />
                        {lr.map(|l| view! {
                            <div class="layer-detail">
                                <Scatter layer=l.clone() />
                                <LayerFacts layer=l.clone() report=r.clone() />
                            </div>
                            <Tokens layer=l.clone() computed=c.clone() />
                            <Extras layer=l />
                        })}
                    </section>
                }
            })}
        </Show>
    }
}

fn x_of(l: usize, n: usize) -> f64 {
    PAD + (W - 2.0 * PAD) * (l as f64 + 0.5) / n as f64
}

fn y_of(v: f64) -> f64 {
    H - BOTTOM - (H - BOTTOM - PAD / 2.0) * v.clamp(0.0, 1.0)
}

fn polyline(r: &ConceptReport, f: impl Fn(&LayerReport) -> Option<f64>) -> String {
    let n = r.layers.len();
    r.layers
        .iter()
        .enumerate()
        .filter_map(|(i, l)| f(l).filter(|v| v.is_finite()).map(|v| (i, v)))
        .map(|(i, v)| format!("{:.1},{:.1}", x_of(i, n), y_of(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The null band: the range of the shuffled-label runs' held-out AUROC, as a closed shape.
fn band(r: &ConceptReport) -> String {
    let n = r.layers.len();
    let up = r.layers.iter().enumerate().map(|(i, l)| (i, l.auroc_null_band[1]));
    let down = r.layers.iter().enumerate().rev().map(|(i, l)| (i, l.auroc_null_band[0]));
    up.chain(down)
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| format!("{:.1},{:.1}", x_of(i, n), y_of(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Held-out AUROC and probe accuracy per layer over the null band (labels shuffled within
/// pairs); in-sample AUROC faint; the sign criterion as marks; the best and selected layers;
/// click a layer to select it.
#[component]
fn LayerChart(
    /// The concept's report.
    report: ConceptReport,
    /// The highlighted layer.
    selected: usize,
) -> impl IntoView {
    let st = expect_context::<AppState>();
    let n = report.layers.len().max(1);
    let col = (W - 2.0 * PAD) / n as f64;
    let auroc = polyline(&report, |l| Some(l.auroc));
    let acc = polyline(&report, |l| l.probe_accuracy);
    let in_sample = polyline(&report, |l| Some(l.diagnostics.auroc_in_sample));
    let null_mean = polyline(&report, |l| Some(l.auroc_null));
    let null_band = band(&report);
    let best = report.best_layer;
    let ticks = (0..n).filter(|i| i % 5 == 0 || *i == n - 1).collect::<Vec<_>>();
    let desc = format!(
        "Per-layer chart of `{}`: held-out AUROC and probe accuracy against the null band of {} \
         shuffled-label runs; best layer {best}.",
        report.name, report.null_runs
    );
    // Arrow keys move the selected layer (Home / End: first / last).
    let key = move |ev: web_sys::KeyboardEvent| {
        let to = match ev.key().as_str() {
            "ArrowLeft" | "ArrowDown" => selected.checked_sub(1),
            "ArrowRight" | "ArrowUp" => Some((selected + 1).min(n - 1)),
            "Home" => Some(0),
            "End" => Some(n - 1),
            _ => None,
        };
        if let Some(l) = to {
            ev.prevent_default();
            st.layer.set(Some(l));
        }
    };
    let rows = report
        .layers
        .iter()
        .map(|l| {
            view! {
                <tr class:sel=l.layer == selected>
                    <th scope="row">{l.layer}</th>
                    <td>{f2(l.auroc)}</td>
                    <td>{format!("{}–{}", f2(l.auroc_null_band[0]), f2(l.auroc_null_band[1]))}</td>
                    <td>{l.probe_accuracy.map(f2).unwrap_or("—".into())}</td>
                    <td>{f2(l.diagnostics.auroc_in_sample)}</td>
                    <td>{f2(l.cohens_d)}</td>
                    <td>{if l.diagnostics.opposite_signs { "yes" } else { "no" }}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <svg class="chart" data-testid="layer-chart" viewBox=format!("0 0 {W} {H}") role="img"
            aria-label=format!("{desc} Selected layer {selected}: arrow keys change it.") tabindex="0"
            on:keydown=key>
            <polygon points=null_band class="null-band" data-testid="null-band">
                <title>"range of held-out AUROC with labels shuffled within pairs (chance)"</title>
            </polygon>
            {(0..n).map(|i| {
                let x = PAD + col * i as f64;
                let l = &report.layers[i];
                let sign = l.diagnostics.opposite_signs;
                let tip = format!(
                    "layer {i}: held-out AUROC {:.2} (null {:.2}, {:.2}–{:.2}); probe accuracy {}; in-sample AUROC {:.2}",
                    l.auroc, l.auroc_null, l.auroc_null_band[0], l.auroc_null_band[1],
                    l.probe_accuracy.map(|a| format!("{a:.2}")).unwrap_or("—".into()),
                    l.diagnostics.auroc_in_sample
                );
                view! {
                    <g class="col" data-layer=i.to_string() data-auroc=format!("{:.4}", l.auroc)
                        data-null-lo=format!("{:.4}", l.auroc_null_band[0]) data-null-hi=format!("{:.4}", l.auroc_null_band[1])
                        data-probe=l.probe_accuracy.map(|a| format!("{a:.4}")).unwrap_or_default()
                        on:click=move |_| st.layer.set(Some(i))>
                        <rect x=x y=PAD / 2.0 width=col height=H - BOTTOM - PAD / 2.0
                            class:sel=move || i == selected class:best=move || i == best />
                        <circle cx=x + col / 2.0 cy=H - BOTTOM + 8.0 r="3" class=if sign { "sign on" } else { "sign" }>
                            <title>{format!("layer {i}: class means {}", if sign { "have opposite signs" } else { "have the same sign" })}</title>
                        </circle>
                        <title>{tip}</title>
                    </g>
                }
            }).collect_view()}
            <line x1=PAD y1=y_of(0.5) x2=W - PAD y2=y_of(0.5) class="grid" />
            <polyline points=null_mean class="line null" />
            <polyline points=in_sample class="line insample" />
            <polyline points=acc class="line acc" />
            <polyline points=auroc class="line auroc" />
            {ticks.into_iter().map(|i| view! {
                <text x=x_of(i, n) y=H - BOTTOM + 24.0 class="axis mid">{i.to_string()}</text>
            }).collect_view()}
            {[0.0, 0.5, 1.0].into_iter().map(|v| view! {
                <text x=PAD - 4.0 y=y_of(v) + 4.0 class="axis end">{format!("{v}")}</text>
            }).collect_view()}
            <text x=W / 2.0 y=H - 4.0 class="axis-title mid">"layer (block output)"</text>
            <text x=10.0 y=y_of(0.5) class="axis-title mid" transform=format!("rotate(-90 10 {})", y_of(0.5))>"held out (0 to 1)"</text>
        </svg>
        <p class="legend">
            <span class="key auroc"><Term name="AUROC (held out)" tip="Probability that a held-out positive projects above a held-out negative, on a direction fitted on the other folds of pairs: 0.5 is chance, 1 perfect" /></span>
            <span class="key acc"><Term name="probe accuracy (held out)" tip="Accuracy of a logistic probe on pairs it was not trained on" /></span>
            <span class="key nullkey"><Term name=format!("chance: shuffled labels ({} runs)", report.null_runs) tip="The same pipeline with labels shuffled within pairs: separation inside this band is indistinguishable from chance" /></span>
            <span class="key insample"><Term name="AUROC in sample" tip="AUROC on the examples the direction was fitted on: optimistic, near 1 even for noise" /></span>
            <span class="key sign"><Term name="opposite signs" tip="Selective Steering's criterion: the class means of the normalised projection have opposite signs at this layer" /></span>
            <span class="key best"><Term name="best layer" tip="Among the middle half of the layers, the largest held-out AUROC x min(|d|/2, 1)" /></span>
        </p>
        <details class="numbers" data-testid="layer-numbers">
            <summary>"The chart's numbers"</summary>
            <table>
                <caption class="sr-only">"Per layer: held-out AUROC, its chance range, probe accuracy, in-sample AUROC, Cohen's d, opposite signs"</caption>
                <thead><tr><th scope="col">"layer"</th><th scope="col">"AUROC"</th><th scope="col">"chance range"</th><th scope="col">"probe"</th><th scope="col">"in sample"</th><th scope="col">"d"</th><th scope="col">"opposite signs"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </details>
    }
}

/// The examples at the selected layer: along the direction and the top orthogonal component.
#[component]
fn Scatter(
    /// The selected layer's report.
    layer: LayerReport,
) -> impl IntoView {
    // Width, height, outer pad, left margin (ticks and title), bottom margin.
    let (w, h, p, l, b) = (260.0, 210.0, 10.0, 34.0, 30.0);
    let all: Vec<[f32; 2]> = layer.scatter_pos.iter().chain(&layer.scatter_neg).copied().collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for [x, y] in &all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    let sx = move |x: f32| l + 4.0 + (w - p - l - 8.0) * ((x - x0) / (x1 - x0).max(1e-6)) as f64;
    let sy =
        move |y: f32| h - b - 4.0 - (h - b - p - 8.0) * ((y - y0) / (y1 - y0).max(1e-6)) as f64;
    let dots = |pts: &[[f32; 2]], class: &'static str| {
        pts.iter()
            .map(|[x, y]| view! { <circle cx=sx(*x) cy=sy(*y) r="4" class=class /> })
            .collect_view()
    };
    let rows = |pts: &[[f32; 2]], label: &'static str| {
        pts.iter()
            .map(|[x, y]| view! { <tr><td>{label}</td><td>{format!("{x:.2}")}</td><td>{format!("{y:.2}")}</td></tr> })
            .collect_view()
    };
    view! {
        <figure class="scatter">
            <svg class="chart" viewBox=format!("0 0 {w} {h}") data-testid="scatter" role="img"
                aria-label="Examples projected on the direction (x) and the top orthogonal component (y)">
                <line class="grid" x1=l y1=h - b x2=w - p y2=h - b />
                <line class="grid" x1=l y1=p x2=l y2=h - b />
                {dots(&layer.scatter_neg, "neg")}
                {dots(&layer.scatter_pos, "pos")}
                <text x=l y=h - b + 12.0 class="axis mid">{format!("{x0:.1}")}</text>
                <text x=w - p y=h - b + 12.0 class="axis mid">{format!("{x1:.1}")}</text>
                <text x=l - 3.0 y=h - b class="axis end">{format!("{y0:.1}")}</text>
                <text x=l - 3.0 y=p + 4.0 class="axis end">{format!("{y1:.1}")}</text>
                <text x=(l + w - p) / 2.0 y=h - 4.0 class="axis-title mid">"along the direction (projection)"</text>
                <text class="axis-title mid" transform=format!("translate(10 {}) rotate(-90)", (h - b + p) / 2.0)>"top other component"</text>
            </svg>
            <figcaption>{format!("layer {}: the examples along the direction →, top orthogonal component ↑ (positives ●, negatives ○; in sample: the direction was fitted on these)", layer.layer)}</figcaption>
            <details class="numbers">
                <summary>"The points"</summary>
                <table>
                    <thead><tr><th scope="col">"class"</th><th scope="col">"along the direction"</th><th scope="col">"other component"</th></tr></thead>
                    <tbody>{rows(&layer.scatter_pos, "positive")}{rows(&layer.scatter_neg, "negative")}</tbody>
                </table>
            </details>
        </figure>
    }
}

fn f2(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "—".into()
    }
}

#[component]
fn LayerFacts(
    /// The selected layer's report.
    layer: LayerReport,
    /// The whole report (best layer, folds, null runs).
    report: ConceptReport,
) -> impl IntoView {
    let d = &layer.diagnostics;
    let null = |m: f64, b: [f64; 2]| format!("chance {} ({}–{})", f2(m), f2(b[0]), f2(b[1]));
    let rows: Vec<(&str, &str, String, String)> = vec![
        ("AUROC", "held out: probability that a held-out positive projects above a held-out negative, on a direction fitted on the other folds", f2(layer.auroc), null(layer.auroc_null, layer.auroc_null_band)),
        ("Cohen's d", "held out: the gap between the classes' held-out projections in pooled standard deviations", f2(layer.cohens_d), String::new()),
        ("accuracy", "held out: held-out examples on their side of the training classes' midpoint", f2(layer.accuracy), format!("chance {}", f2(layer.accuracy_null))),
        ("probe accuracy", "held out: a logistic probe (L2, solved to convergence) scored on pairs it was not trained on", layer.probe_accuracy.map(f2).unwrap_or("—".into()),
            match (layer.probe_accuracy_null, layer.probe_accuracy_null_band) { (Some(m), Some(b)) => null(m, b), _ => String::new() }),
        ("AUROC in sample", "on the examples the direction was fitted on: optimistic (noise scores near 1 with few examples)", f2(d.auroc_in_sample), String::new()),
        ("bootstrap cosine", "mean cosine of directions fitted on bootstrap resamples of the pairs with this one (optimistic: resamples share most pairs); SNMF: agreement with a refit from another seed", f2(layer.bootstrap_cosine), String::new()),
        ("feature-split stability", "Shesha: rank correlation of the examples' distance structure on two random halves of the neurons (no labels)", f2(layer.feature_split), String::new()),
        ("supervised alignment", "Shesha: rank correlation of the examples' distances with the label structure (fits nothing)", f2(layer.supervised_alignment), String::new()),
        ("opposite signs", "the class means of the normalised projection have opposite signs (Selective Steering's criterion, on the residual stream)", if d.opposite_signs { "yes".into() } else { "no".into() }, String::new()),
        ("norm / mean residual", "the direction's length over the mean residual norm at this layer", format!("{:.3}", d.norm_over_mean_residual), String::new()),
    ];
    let best = report.best_layer;
    view! {
        <div class="facts" data-testid="layer-facts">
            <h3>{format!("Layer {}{}", layer.layer, if layer.layer == best { " (best)" } else { "" })}</h3>
            <p class="muted small">{format!("held out: {}-fold over pairs; chance: {} runs with labels shuffled within pairs", report.folds, report.null_runs)}</p>
            <table>{rows.into_iter().map(|(k, tip, v, n)| view! {
                <tr><th><Term name=k tip=tip /></th><td>{v}</td><td class="muted">{n}</td></tr>
            }).collect_view()}</table>
        </div>
    }
}

fn token_list(xs: &[TokenScore], digits: usize) -> impl IntoView {
    xs.iter()
        .map(|t| view! { <li><code>{format!("{:?}", t.token)}</code>" "<span class="muted">{format!("{:+.*}", digits, t.score)}</span></li> })
        .collect_view()
}

/// What adding the direction does to the next token at the selected layer (computed on
/// request), beside the direction's direct unembedding.
#[component]
fn Tokens(
    /// The selected layer's report.
    layer: LayerReport,
    /// The computed concept (its promotes by layer).
    computed: Computed,
) -> impl IntoView {
    let st = expect_context::<AppState>();
    let l = layer.layer;
    let have: Option<Promotes> = computed.promotes.get(&l).cloned();
    let concept = computed.concept.clone();
    let ask = move |_| {
        st.working.set(Some(format!("adding the direction at layer {l}")));
        st.send(&ToWorker::Promotes { concept: concept.clone(), layer: l });
    };
    let causal = match have {
        Some(p) => view! {
            <div class="promotes" data-testid="promotes">
                <h3><Term name=format!("Adding it at layer {} (|v| = {:.1}, {} contexts)", p.layer, p.added_norm, p.contexts)
                    tip="The mean change of next-token log-probabilities over the concept's example contexts when the direction (scaled to the distance between the class means) is added at this layer" /></h3>
                <div class="tokens">
                    <div><h4>"raises"</h4><ol>{token_list(&p.promotes, 2)}</ol></div>
                    <div><h4>"lowers"</h4><ol>{token_list(&p.suppresses, 2)}</ol></div>
                </div>
            </div>
        }
        .into_any(),
        None => view! {
            <div class="promotes">
                <h3>{format!("Adding it at layer {l}")}</h3>
                <button data-testid="promotes-compute" on:click=ask disabled=move || st.working.get().is_some()>
                    "What does it promote here?"</button>
            </div>
        }
        .into_any(),
    };
    view! {
        <div class="tokens-all" data-testid="top-tokens">
            {causal}
            <div class="unembed">
                <h3><Term name="Direct unembedding of the direction" tip="The LM head applied to the direction (through the final norm's gain), skipping every later layer: a logit lens of the direction, dominated by high-norm rows of the unembedding" /></h3>
                <div class="tokens">
                    <div><h4>"highest"</h4><ol>{token_list(&layer.unembedding_promotes, 2)}</ol></div>
                    <div><h4>"lowest"</h4><ol>{token_list(&layer.unembedding_suppresses, 2)}</ol></div>
                </div>
            </div>
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
                <h3>"Spectrum: "
                    <Term name=format!("σ1/σ2 = {:.2}", s.eigengap_ratio) tip="The largest singular value of the paired differences over the second: well above 1 when one direction dominates the differences" />
                    {format!(", σ1 explains {:.0}% of the differences, ", 100.0 * s.explained_variance)}
                    <Term name=format!("effective rank {:.1}", s.effective_rank) tip="exp of the entropy of the normalised singular values: about 1 when the differences lie along one direction, larger when they spread over many" /></h3>
                <svg viewBox="0 0 220 84" class="chart spectrum" role="img" aria-label=format!("singular values: {}", s.singular_values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", "))>
                    <text x="26" y="12" class="axis end">{format!("{top:.1}")}</text>
                    <text x="26" y="60" class="axis end">"0"</text>
                    <text class="axis-title mid" transform="translate(8 34) rotate(-90)">"σ"</text>
                    <text x="120" y="82" class="axis-title mid">"component (σ1, σ2, …)"</text>
                    {s.singular_values.iter().enumerate().map(|(i, v)| {
                        let hgt = 50.0 * v / top;
                        view! {
                            <rect x=32.0 + 36.0 * i as f64 y=58.0 - hgt width="26" height=hgt><title>{format!("σ{} = {v:.2}", i + 1)}</title></rect>
                            <text x=45.0 + 36.0 * i as f64 y="70" class="axis mid">{format!("{}", i + 1)}</text>
                        }
                    }).collect_view()}
                </svg>
            </div>
        }
    });
    let snmf = layer.snmf.clone().map(|s| view! {
        <div class="snmf">
            <h3>{format!("SNMF: {} features, each keeping {:.0}% of the neurons; error {:.3} → {:.3} (best at step {} of {})",
                s.k, 100.0 * s.sparsity, s.error_first, s.error_best, s.best_iteration + 1, s.steps)}</h3>
            <ol>
                {s.features.iter().enumerate().map(|(i, f)| view! {
                    <li class:best=i == s.best_feature>
                        <span class="muted">{format!("AUROC {:.2}, d {:+.2}, {} neurons: ", f.concept_auroc, f.concept_d, f.neurons)}</span>
                        {f.top_tokens.iter().map(|t| format!("{:?}", t.token)).collect::<Vec<_>>().join(" ")}
                    </li>
                }).collect_view()}
            </ol>
        </div>
    });
    view! { {svd} {snmf} }
}
