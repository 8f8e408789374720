//! Golden tests of tiller-steer against ../shared/reference (f32 path): concept directions
//! (concept-sentiment.json) and the add / ablate / rotate cases of steering.json.

use tiller_engine::Precision;
use tiller_engine::Wait;
use tiller_steer::concept::capture_concept;
use tiller_steer::directions::mean_diff;
use tiller_tests::*;

const MD_COS: f64 = 0.999;
const MD_NORM_REL: f64 = 0.01;
const PCA_COS: f64 = 0.99;

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn mean_difference_and_pca_match_reference() {
    let m = model(Precision::F32);
    let r = reference("concept-sentiment.json");
    let (md, pca) = directions(m);
    let (mut worst_cos, mut worst_norm, mut worst_pca) = ((1.0f64, 0), (0.0f64, 0), (1.0f64, 0));
    for l in 0..m.config.n_layer {
        let want = floats(&r["mean_diff"][l]);
        let cos = cosine(&md[l], &want);
        let (a, b) = (
            md[l].iter().map(|x| x * x).sum::<f32>().sqrt() as f64,
            want.iter().map(|x| x * x).sum::<f32>().sqrt() as f64,
        );
        let rel = (a - b).abs() / b;
        if cos < worst_cos.0 {
            worst_cos = (cos, l);
        }
        if rel > worst_norm.0 {
            worst_norm = (rel, l);
        }
        let pc = cosine(&pca[l], &floats(&r["pca_diff_unit"][l]));
        if pc < worst_pca.0 {
            worst_pca = (pc, l);
        }
    }
    println!(
        "mean difference: min cosine {:.6} at layer {}; max relative norm error {:.2e} at layer {}",
        worst_cos.0, worst_cos.1, worst_norm.0, worst_norm.1
    );
    println!("PCA of pair differences: min cosine {:.6} at layer {}", worst_pca.0, worst_pca.1);
    assert!(worst_cos.0 >= MD_COS && worst_norm.0 <= MD_NORM_REL && worst_pca.0 >= PCA_COS);
}

#[test]
fn steering_cases_reproduce_reference() {
    let m = model(Precision::F32);
    let (md, _) = directions(m);
    steering_cases(m, &md, "CPU");
}

/// The in-sample diagnostics say what a person would: sentiment separates its examples in the
/// later layers, and the direction's direct unembedding suppresses negative words.
#[test]
fn diagnostics_of_the_sentiment_direction() {
    let m = model(Precision::Fast);
    let (pos, neg) = capture_concept(m, &sentiment()).wait().unwrap();
    let md = mean_diff(&pos, &neg).unwrap();
    let mut opposite = Vec::new();
    for (l, v) in md.iter().enumerate().skip(12) {
        let d = tiller_steer::diagnostics::layer(&pos, &neg, l, v);
        assert_eq!(d.auroc_in_sample, 1.0, "layer {l}");
        assert!(d.cohens_d_in_sample > 2.0, "layer {l}: {d:?}");
        if d.opposite_signs {
            opposite.push(l);
        }
    }
    let last = m.config.n_layer - 1;
    println!("opposite-sign criterion holds at layers {opposite:?} (of 12..={last})");
    assert!(opposite.contains(&last));
    let (_, down) = tiller_steer::diagnostics::top_tokens(m, &md[last], 10).wait().unwrap();
    let words: Vec<String> = down.iter().map(|(i, _)| m.tokenizer.decode(&[*i]).unwrap()).collect();
    println!("layer {last} suppresses {words:?}");
    assert!(words.iter().any(|w| w.trim().eq_ignore_ascii_case("worse")), "{words:?}");
}

/// The bootstrap cosine tells a steerable direction from a fragile one: the mean difference
/// holds up under bootstrap resampling of the pairs, while PCA of centred differences (which
/// removes the mean difference itself) does not, with 8 pairs; RepE's PCA (pair order
/// randomised) keeps the concept.
#[test]
fn stability_and_probe_accuracy() {
    use tiller_steer::directions::{bootstrap_cosine as stability, directions, Method};
    let m = model(Precision::Fast);
    let (pos, neg) = capture_concept(m, &sentiment()).wait().unwrap();
    let md = directions(Method::MeanDiff, &pos, &neg).unwrap();
    let pca = directions(Method::Pca, &pos, &neg).unwrap();
    let s_md = stability(Method::MeanDiff, &pos, &neg, &md, 16, 1).unwrap();
    let s_pca = stability(Method::Pca, &pos, &neg, &pca, 16, 1).unwrap();
    let late = 20..m.config.n_layer;
    let avg = |v: &[f64]| late.clone().map(|l| v[l]).sum::<f64>() / late.len() as f64;
    let repe = directions(Method::PcaRepe, &pos, &neg).unwrap();
    let s_repe = stability(Method::PcaRepe, &pos, &neg, &repe, 16, 1).unwrap();
    let cos_repe = late.clone().map(|l| tiller_tests::cosine(&repe[l], &md[l])).sum::<f64>()
        / late.len() as f64;
    println!(
        "mean bootstrap cosine, layers 20-29: mean-diff {:.3}, pca {:.3}, pca-repe {:.3}; \
         pca-repe vs mean-diff cosine {cos_repe:.3}",
        avg(&s_md),
        avg(&s_pca),
        avg(&s_repe)
    );
    assert!(avg(&s_md) > 0.8 && avg(&s_md) > avg(&s_pca));
    assert!(avg(&s_repe) > avg(&s_pca) && cos_repe > 0.5);
    let acc = tiller_steer::probe::heldout_accuracy(&pos, &neg, 25).unwrap();
    println!("held-out probe accuracy at layer 25: {acc:.3}");
    assert!(acc >= 0.8);
}

/// ObsProp: the observable " good" minus " bad" couples positively with the sentiment
/// direction at the last layer, and its reverse negatively.
#[test]
fn observable_directions_couple_with_the_concept() {
    use tiller_steer::observable::{coupling, observable};
    let m = model(Precision::Fast);
    let (pos, neg) = capture_concept(m, &sentiment()).wait().unwrap();
    let md = mean_diff(&pos, &neg).unwrap();
    let tok = |s: &str| m.tokenizer.encode(s).unwrap()[0];
    let (good, bad) = (tok(" good"), tok(" bad"));
    let y = observable(m, good, bad).wait().unwrap();
    let last = m.config.n_layer - 1;
    let (c1, c2) =
        (coupling(&md[last], &y), coupling(&md[last], &observable(m, bad, good).wait().unwrap()));
    println!("coupling of sentiment (layer {last}) with good-bad: {c1:.4}, with bad-good: {c2:.4}");
    assert!(c1 > 0.0 && c2 < 0.0 && (c1 + c2).abs() < 1e-6);
}
