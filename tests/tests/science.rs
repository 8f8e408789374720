//! Numbers that mean what they say, on the real model: a concept of unrelated sentences with
//! random labels separates at chance held out (though perfectly in sample), real concepts
//! separate held out above the null band, and ObsProp's head feature vectors are what the
//! weights say.

use tiller_engine::Precision;
use tiller_engine::Wait;
use tiller_steer::concept::Concept;
use tiller_steer::directions::Method;
use tiller_steer::report::{analyze, ConceptReport, Options};
use tiller_tests::*;

fn report(c: &Concept, method: Method) -> ConceptReport {
    let m = model(Precision::Fast);
    analyze(m, c, method, &Options::default(), &mut |_, _, _| {}).wait().unwrap()
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

/// 16 pairs of unrelated sentences, labelled by coin flips: in sample every layer looks
/// separable; held out, AUROC and probe accuracy sit at chance, inside the null band.
#[test]
fn random_labels_are_chance_held_out() {
    let c = data_concept("random-labels");
    for method in [Method::MeanDiff, Method::Probe] {
        let r = report(&c, method);
        let auroc = mean(r.layers.iter().map(|l| l.auroc));
        let worst = r.layers.iter().map(|l| (l.auroc, l.layer)).fold((0.0, 0), |a, b| {
            if b.0 > a.0 {
                b
            } else {
                a
            }
        });
        let probe = mean(r.layers.iter().filter_map(|l| l.probe_accuracy));
        let in_sample = mean(r.layers.iter().map(|l| l.diagnostics.auroc_in_sample));
        let inside = r.layers.iter().filter(|l| l.auroc <= l.auroc_null_band[1]).count();
        println!(
            "random labels, {method:?}: held-out AUROC mean {auroc:.3} (highest {:.3} at layer {}), \
             probe accuracy mean {probe:.3}, in-sample AUROC mean {in_sample:.3}; {inside}/30 \
             layers inside the null band",
            worst.0, worst.1
        );
        assert!((0.35..=0.65).contains(&auroc), "held-out AUROC mean {auroc}");
        assert!(worst.0 < 0.85, "held-out AUROC {} at layer {}", worst.0, worst.1);
        assert!((0.35..=0.65).contains(&probe), "held-out probe accuracy mean {probe}");
        // A noise concept is one more draw from the null: it exceeds the highest of 8 shuffled
        // runs with probability 1/9, at about 3 of 30 layers.
        assert!(inside >= 22, "only {inside}/30 layers inside the null band");
        if method == Method::MeanDiff {
            assert!(in_sample > 0.9, "in sample the noise looks separable ({in_sample})");
        }
    }
}

/// Sentiment (8 pairs) and formality (16 pairs) separate held-out pairs at their best layer,
/// above the whole null band.
#[test]
fn real_concepts_separate_held_out() {
    for (c, method) in [
        (sentiment(), Method::MeanDiff),
        (formality16(), Method::MeanDiff),
        (formality16(), Method::Probe),
        (sentiment(), Method::PcaRepe),
    ] {
        let r = report(&c, method);
        let b = &r.layers[r.best_layer];
        println!(
            "{} by {method:?}: best layer {}, held-out AUROC {:.3} (null {:.3}, band {:.3}-{:.3}), \
             d {:.2}, probe accuracy {:?}; promotes {:?}",
            c.name,
            r.best_layer,
            b.auroc,
            b.auroc_null,
            b.auroc_null_band[0],
            b.auroc_null_band[1],
            b.cohens_d,
            b.probe_accuracy,
            r.promotes.as_ref().map(|p| p.promotes.iter().take(5).map(|t| t.token.clone()).collect::<Vec<_>>())
        );
        assert!(b.auroc >= 0.85, "{}: held-out AUROC {} at the best layer", c.name, b.auroc);
        assert!(b.auroc > b.auroc_null_band[1], "{}: not above the null band", c.name);
    }
}

/// ObsProp's head feature vectors: the readback of W_O and W_V matches the GGUF's own weights,
/// and for every head `f_h . (g * x) = y . W_O^h W_V^h (g * x)` computed the long way.
#[test]
fn obsprop_head_features_follow_the_weights() {
    use tiller_steer::observable::{head_features, observable};
    let m = model(Precision::F32);
    let cfg = &m.config;
    let tok = |s: &str| m.tokenizer.encode(s).unwrap()[0];
    let y = observable(m, tok(" good"), tok(" bad")).wait().unwrap();
    let heads = head_features(m, &y).wait().unwrap();
    assert_eq!(heads.len(), cfg.n_layer * cfg.n_head);
    let (d, hd) = (cfg.d_model, cfg.head_dim);
    let l = 7;
    let lw = &m.weights.layers[l];
    let wo_t = m.dense_transposed(&lw.wo, cfg.n_head * hd).wait().unwrap();
    let wv_t = m.dense_transposed(&lw.wv, d).wait().unwrap();
    // The same matrices from the file.
    let bytes = std::fs::read(model_path()).unwrap();
    let g = tiller_model::Gguf::parse(&bytes).unwrap();
    let file = |name: &str| {
        let t = g.tensor(name).unwrap();
        tiller_model::gguf::dequantize(t, g.data(&bytes, t).unwrap()).unwrap()
    };
    let (wo, wv) =
        (file(&format!("blk.{l}.attn_output.weight")), file(&format!("blk.{l}.attn_v.weight")));
    let mut md = MaxDiff::default();
    for o in 0..d {
        for j in 0..cfg.n_head * hd {
            md.see(wo_t[j * d + o], wo[o * cfg.n_head * hd + j], || format!("W_O[{o}][{j}]"));
        }
    }
    for r in 0..cfg.n_kv_head * hd {
        for i in 0..d {
            md.see(wv_t[i * cfg.n_kv_head * hd + r], wv[r * d + i], || format!("W_V[{r}][{i}]"));
        }
    }
    println!("{}", md.report("W_O, W_V read back through the backend vs the GGUF", 1e-6));
    assert!(md.max < 1e-6);
    // f_h . x  vs  y . W_O^h W_V^h (g * x) for a pseudo-random x.
    let x: Vec<f32> = (0..d).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let gx: Vec<f32> = x.iter().zip(&lw.attn_norm_host).map(|(a, b)| a * b).collect();
    let group = cfg.n_head / cfg.n_kv_head;
    let mut md = MaxDiff::default();
    for h in 0..cfg.n_head {
        let kv = h / group;
        let v: Vec<f64> = (0..hd)
            .map(|r| (0..d).map(|i| wv[(kv * hd + r) * d + i] as f64 * gx[i] as f64).sum())
            .collect();
        let out: Vec<f64> = (0..d)
            .map(|o| (0..hd).map(|r| wo[o * cfg.n_head * hd + h * hd + r] as f64 * v[r]).sum())
            .collect();
        let long: f64 = out.iter().zip(&y).map(|(a, b)| a * *b as f64).sum();
        let f = &heads[l * cfg.n_head + h];
        let short: f64 = f.vector.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        md.see(short as f32, long as f32, || format!("layer {l} head {h}"));
    }
    println!(
        "{}",
        md.report("head feature . x vs the head's contribution to the observable", 1e-3)
    );
    assert!(md.max < 1e-3);
    let top = heads.iter().max_by(|a, b| a.norm.total_cmp(&b.norm)).unwrap();
    println!(
        "the head that writes \" good\" - \" bad\" most: layer {} head {} (|f| {:.2})",
        top.layer, top.head, top.norm
    );
}
