//! The causal tools: activation patching (a layer x position heatmap of the fraction of the
//! source's logit difference each patch recovers; click a cell for its next-token
//! distribution) and the logit lens (each layer's top token at each position).

use crate::state::{AppState, PatchForm};
use leptos::prelude::*;
use tiller_web::protocol::{PatchRequest, ToWorker};

/// Red for recovery toward 1, blue below 0, white at 0.
fn heat(v: f64) -> String {
    let a = v.abs().min(1.0) * 0.85;
    if v >= 0.0 {
        format!("background: rgba(214, 69, 65, {a:.3})")
    } else {
        format!("background: rgba(52, 120, 198, {a:.3})")
    }
}

/// Token text for a header: visible spaces and newlines.
fn show(t: &str) -> String {
    t.replace(' ', "\u{2423}").replace('\n', "\u{21b5}")
}

fn request(st: AppState) -> Result<PatchRequest, String> {
    let f = st.patch_form.get_untracked();
    let concept = if f.along.is_empty() {
        None
    } else {
        Some(
            st.valid_concepts()
                .into_iter()
                .find(|c| c.name == f.along)
                .ok_or_else(|| format!("concept `{}` is not defined (or not valid)", f.along))?,
        )
    };
    Ok(PatchRequest {
        base: f.base,
        source: f.source,
        chat: false,
        answer: f.answer,
        wrong: f.wrong,
        concept,
    })
}

#[component]
pub fn PatchView() -> impl IntoView {
    let st = expect_context::<AppState>();
    let f = st.patch_form;
    let run = move |_| {
        st.patch_error.set(None);
        match request(st) {
            Ok(patch) => {
                st.working.set(Some("patching".into()));
                st.send(&ToWorker::Patch { patch });
            }
            Err(e) => st.patch_error.set(Some(e)),
        }
    };
    let field = move |label: &'static str,
                      testid: &'static str,
                      get: fn(&PatchForm) -> String,
                      set: fn(&mut PatchForm, String)| {
        view! {
            <label class="field">{label}
                <input type="text" data-testid=testid prop:value=move || get(&f.get())
                    on:input=move |ev| { let v = event_target_value(&ev); f.update(|x| set(x, v)) } />
            </label>
        }
    };
    view! {
        <section class="panel patch" id="panel-patch">
            <div class="panel-head">
                <h2>"Is it used? Activation patching"</h2>
            </div>
            <p class="muted">"Run the base and the source, put the source's activation into the base at one layer and position, and see how much of the source's preference for the answer over the wrong token comes back: 1 all of it, 0 none."</p>
            <div class="patch-form">
                {field("base", "patch-base", |x| x.base.clone(), |x, v| x.base = v)}
                {field("source", "patch-source", |x| x.source.clone(), |x, v| x.source = v)}
                {field("answer", "patch-answer", |x| x.answer.clone(), |x, v| x.answer = v)}
                {field("wrong", "patch-wrong", |x| x.wrong.clone(), |x, v| x.wrong = v)}
                <label class="field">"patch"
                    <select data-testid="patch-along" on:change=move |ev| { let v = event_target_value(&ev); f.update(|x| x.along = v) }>
                        <option value="" selected=move || f.get().along.is_empty()>"the whole residual stream"</option>
                        {move || st.valid_concepts().into_iter().map(|c| {
                            let n = c.name.clone();
                            let sel = f.get().along == n;
                            view! { <option value=n.clone() selected=sel>{format!("along `{n}`'s direction")}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <button data-testid="patch-run" class="primary" on:click=run
                    disabled=move || !st.ready() || st.working.get().is_some()>"Patch every layer × position"</button>
            </div>
            <Show when=move || st.patch_error.get().is_some()>
                <p class="error" role="alert" data-testid="patch-error">{move || st.patch_error.get().unwrap_or_default()}</p>
            </Show>
            {move || st.patch.get().map(|p| {
                let n = p.tokens.len();
                view! {
                    <p class="muted">{format!(
                        "Logit difference (answer − wrong): base {:.2}, source {:.2}. Cells: the fraction recovered by patching {} at that layer (row) and position (column). Click a cell for the patched prediction.",
                        p.ld_base, p.ld_source,
                        if p.patched == "residual" { "the whole residual stream".to_string() } else { format!("the component along `{}`", p.patched.trim_start_matches("direction:")) },
                    )}</p>
                    <div class="heatmap-wrap">
                        <table class="heatmap" data-testid="patch-heatmap" data-patched=p.patched.clone()>
                            <caption class="sr-only">"Fraction of the logit difference recovered, by layer and position"</caption>
                            <thead><tr><th scope="col">"layer"</th>
                                {p.tokens.iter().zip(&p.source_tokens).map(|(b, s)| {
                                    let t = if b == s { show(b) } else { format!("{}→{}", show(s), show(b)) };
                                    view! { <th scope="col" title=format!("base {b:?}, source {s:?}")>{t}</th> }
                                }).collect_view()}
                            </tr></thead>
                            <tbody>
                                {p.recovery.iter().enumerate().map(|(l, row)| view! {
                                    <tr><th scope="row">{l}</th>
                                        {row.iter().enumerate().map(|(pos, &v)| {
                                            let click = move |_| {
                                                if let Ok(patch) = request(st) {
                                                    st.working.set(Some(format!("patching layer {l}, position {pos}")));
                                                    st.send(&ToWorker::PatchCell { patch, layer: l, pos });
                                                }
                                            };
                                            view! {
                                                <td style=heat(v)>
                                                    <button class="cell" data-testid="patch-cell" data-layer=l data-pos=pos
                                                        data-value=format!("{v:.6}") title=format!("layer {l}, position {pos}: {v:.3} recovered")
                                                        on:click=click>{format!("{v:.2}")}</button>
                                                </td>
                                            }
                                        }).collect_view()}
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                    <p class="muted">{format!("{} layers × {n} positions; red: toward the source's answer, blue: away from it.", p.recovery.len())}</p>
                }
            })}
            {move || st.patch_cell.get().map(|c| view! {
                <div class="patch-cell-top" data-testid="patch-cell-top" data-layer=c.layer data-pos=c.pos>
                    <h3>{format!("Next token with the patch at layer {}, position {}", c.layer, c.pos)}</h3>
                    <table class="sweep-table">
                        <thead><tr><th>"patched"</th><th>"p"</th><th>"base"</th><th>"p"</th></tr></thead>
                        <tbody>
                            {c.top.iter().zip(&c.base_top).map(|((t, p), (bt, bp))| view! {
                                <tr><td class="gen">{format!("{t:?}")}</td><td>{format!("{p:.3}")}</td>
                                    <td class="gen">{format!("{bt:?}")}</td><td>{format!("{bp:.3}")}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            })}
        </section>
    }
}

#[component]
pub fn LensView() -> impl IntoView {
    let st = expect_context::<AppState>();
    let run = move |_| {
        st.lens_error.set(None);
        let t = st.lens_text.get_untracked();
        let text = if t.trim().is_empty() { st.gen.get_untracked().prompt } else { t };
        let track = Some(st.lens_track.get_untracked()).filter(|t| !t.is_empty());
        st.working.set(Some("the logit lens".into()));
        st.send(&ToWorker::Lens { text, chat: false, track });
    };
    view! {
        <section class="panel lens" id="panel-lens">
            <div class="panel-head">
                <h2>"Logit lens"</h2>
            </div>
            <p class="muted">"What each layer would predict: its residual stream read through the final norm and the unembedding. The last layer is the model's own prediction."</p>
            <textarea rows="2" data-testid="lens-input" placeholder="Any text (empty: the prompt)"
                prop:value=move || st.lens_text.get()
                on:input=move |ev| st.lens_text.set(event_target_value(&ev))></textarea>
            <div class="controls">
                <label>"follow token "<input type="text" size="10" data-testid="lens-track" placeholder=" Paris"
                    prop:value=move || st.lens_track.get()
                    on:input=move |ev| st.lens_track.set(event_target_value(&ev)) /></label>
                <button data-testid="lens-run" on:click=run disabled=move || !st.ready() || st.working.get().is_some()>"Look through"</button>
            </div>
            <Show when=move || st.lens_error.get().is_some()>
                <p class="error" role="alert" data-testid="lens-error">{move || st.lens_error.get().unwrap_or_default()}</p>
            </Show>
            {move || st.lens.get().map(|r| {
                let track = r.track.clone();
                view! {
                    <div class="heatmap-wrap">
                        <table class="heatmap lens-grid" data-testid="lens-grid">
                            <caption class="sr-only">"Each layer's most likely next token at each position, with its probability"</caption>
                            <thead><tr><th scope="col">"layer"</th>
                                {r.tokens.iter().map(|t| view! { <th scope="col">{show(t)}</th> }).collect_view()}
                            </tr></thead>
                            <tbody>
                                {r.top.iter().enumerate().rev().map(|(l, row)| view! {
                                    <tr><th scope="row">{l}</th>
                                        {row.iter().enumerate().map(|(pos, cell)| {
                                            let (t, p) = cell.first().cloned().unwrap_or_default();
                                            let tracked = r.tracked.get(l).and_then(|v| v.get(pos)).copied();
                                            let mut title: Vec<String> = cell.iter().map(|(t, p)| format!("{t:?} {p:.3}")).collect();
                                            if let (Some(tk), Some(x)) = (&track, tracked) {
                                                title.push(format!("p({tk:?}) = {x:.4}"));
                                            }
                                            view! {
                                                <td style=heat(p as f64) data-testid="lens-cell" data-layer=l data-pos=pos
                                                    data-top=t.clone() data-prob=format!("{p:.6}")
                                                    data-tracked=tracked.map(|x| format!("{x:.6}")).unwrap_or_default()
                                                    title=title.join("\n") tabindex="0">{show(&t)}</td>
                                            }
                                        }).collect_view()}
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                    {track.map(|tk| {
                        let last: Vec<f32> = r.tracked.iter().map(|v| v.last().copied().unwrap_or(0.0)).collect();
                        view! {
                            <div class="turns" data-testid="lens-tracked">
                                <h3>{format!("p({tk:?}) at the last position, by layer")}</h3>
                                {last.into_iter().enumerate().map(|(l, x)| view! {
                                    <div class="turn" data-layer=l data-prob=format!("{x:.6}")>
                                        <span class="role">{format!("layer {l}")}</span>
                                        <span class="track"><span class="bar" style=format!("width: {:.1}%; background: rgba(214, 69, 65, 0.7)", 100.0 * x)></span></span>
                                        <span class="muted">{format!("{x:.3}")}</span>
                                    </div>
                                }).collect_view()}
                            </div>
                        }
                    })}
                    <p class="muted">"Top token per layer (rows, last layer first) and position (columns); shade: its probability. Hover or focus a cell for the top 5."</p>
                }
            })}
        </section>
    }
}

/// Each head's attention at a layer as a query x key grid, heads side by side.
#[component]
pub fn AttentionView() -> impl IntoView {
    let st = expect_context::<AppState>();
    let run = move |_| {
        st.attention_error.set(None);
        let t = st.attention_text.get_untracked();
        let text = if t.trim().is_empty() { st.gen.get_untracked().prompt } else { t };
        st.working.set(Some("attention patterns".into()));
        st.send(&ToWorker::Attention { text, layer: st.attention_layer.get_untracked() });
    };
    view! {
        <section class="panel attention" id="panel-attention">
            <div class="panel-head">
                <h2>"Attention patterns"</h2>
            </div>
            <p class="muted">"Each head's attention weights at one layer: row = the query token, column = the key token it reads; darker = more weight. Hover a cell for the tokens."</p>
            <textarea rows="2" data-testid="attention-input" placeholder="Any text (empty: the prompt)"
                prop:value=move || st.attention_text.get()
                on:input=move |ev| st.attention_text.set(event_target_value(&ev))></textarea>
            <div class="controls">
                <label>"layer "<input type="number" min="0" class="num" data-testid="attention-layer"
                    prop:value=move || st.attention_layer.get().to_string()
                    on:change=move |ev| { if let Ok(l) = event_target_value(&ev).parse() { st.attention_layer.set(l) } } /></label>
                <button data-testid="attention-run" on:click=run disabled=move || !st.ready() || st.working.get().is_some()>"Show"</button>
            </div>
            <Show when=move || st.attention_error.get().is_some()>
                <p class="error" role="alert" data-testid="attention-error">{move || st.attention_error.get().unwrap_or_default()}</p>
            </Show>
            {move || st.attention.get().map(|(tokens, layer, heads)| {
                let n = tokens.len();
                let cell = (160.0 / n.max(1) as f64).clamp(3.0, 14.0);
                let size = cell * n as f64;
                view! {
                    <div class="heads" data-testid="attention-view" data-layer=layer>
                        {heads.iter().enumerate().map(|(h, w)| view! {
                            <figure class="head">
                                <svg viewBox=format!("-14 -14 {} {}", size + 14.0, size + 14.0) width=size + 14.0 height=size + 14.0
                                    class="chart" data-testid="attention-head" data-head=h
                                    role="img" aria-label=format!("layer {layer} head {h}: query rows, key columns")>
                                    <text x=size / 2.0 y="-4" class="axis-title mid">"key →"</text>
                                    <text class="axis-title mid" transform=format!("translate(-4 {}) rotate(-90)", size / 2.0)>"query →"</text>
                                    {(0..n).flat_map(|i| (0..=i).map(move |j| (i, j))).map(|(i, j)| {
                                        let x = w[i * n + j];
                                        view! {
                                            <rect x=j as f64 * cell y=i as f64 * cell width=cell height=cell
                                                fill="#c2562c" fill-opacity=format!("{:.3}", x.sqrt())>
                                                <title>{format!("{:?} reads {:?}: {x:.3}", tokens[i], tokens[j])}</title>
                                            </rect>
                                        }
                                    }).collect_view()}
                                </svg>
                                <figcaption>{format!("head {h}")}</figcaption>
                            </figure>
                        }).collect_view()}
                    </div>
                    <details class="numbers" data-testid="attention-numbers">
                        <summary>"Each head's strongest key per query"</summary>
                        <table>
                            <thead><tr><th scope="col">"query"</th>
                                {(0..heads.len()).map(|h| view! { <th scope="col">{format!("head {h}")}</th> }).collect_view()}
                            </tr></thead>
                            <tbody>
                                {(0..n).map(|i| view! {
                                    <tr><th scope="row">{show(&tokens[i])}</th>
                                        {heads.iter().map(|w| {
                                            let (j, x) = (0..=i).map(|j| (j, w[i * n + j])).fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
                                            view! { <td>{format!("{} {x:.2}", show(&tokens[j]))}</td> }
                                        }).collect_view()}
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </details>
                    <p class="muted">{format!("Layer {layer}: {} heads over {n} tokens (shade: square root of the weight, so small weights show).", heads.len())}</p>
                }
            })}
        </section>
    }
}
