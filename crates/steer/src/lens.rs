//! The logit lens (nostalgebraist 2020): each layer's residual stream read through the final
//! norm and the unembedding, as if it were the last layer's, so one sees what the model would
//! predict at every depth. The last layer's lens is the model's own output.

use crate::Result;
use tiller_engine::{Backend, Capture, LogitsFor, Model};

/// One layer of the lens: at every position, the top tokens and their probabilities.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LensLayer {
    pub layer: usize,
    /// Per position, `(token id, probability)` best first.
    pub top: Vec<Vec<(u32, f32)>>,
    /// Per position, the probability of the tracked token (when one is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracked: Option<Vec<f32>>,
}

/// The lens of a text: per layer (0..n_layer), per position.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lens {
    pub tokens: Vec<u32>,
    pub layers: Vec<LensLayer>,
}

/// Softmax of one row of logits, in f64.
pub fn softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// The `k` largest entries of `row`, best first (ties by lower id); a NaN ranks last.
pub fn top_k<T: Copy + Into<f64>>(row: &[T], k: usize) -> Vec<(u32, T)> {
    let k = k.min(row.len());
    if k == 0 {
        return Vec::new();
    }
    let key = |i: &u32| {
        let x: f64 = row[*i as usize].into();
        if x.is_nan() {
            f64::NEG_INFINITY
        } else {
            x
        }
    };
    let by = |a: &u32, b: &u32| key(b).total_cmp(&key(a)).then(a.cmp(b));
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.select_nth_unstable_by(k - 1, by);
    idx.truncate(k);
    idx.sort_by(by);
    idx.into_iter().map(|i| (i, row[i as usize])).collect()
}

/// Run `ids` once and read every layer through the final norm and the unembedding: the top
/// `k` tokens at every position, and the probability of `track` when given.
pub async fn lens<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
    k: usize,
    track: Option<u32>,
) -> Result<Lens> {
    let (n_layer, vocab) = (model.config.n_layer, model.config.vocab);
    if let Some(t) = track.filter(|&t| t as usize >= vocab) {
        return Err(crate::Error::Intervention(format!(
            "token {t} is not in the vocabulary (0..{vocab})"
        )));
    }
    let mut cap = Capture::new(0..n_layer);
    model.session().forward(ids, Some(&mut cap), LogitsFor::Last).await?;
    let mut layers = Vec::with_capacity(n_layer);
    for (layer, rows) in cap.rows.into_iter().enumerate() {
        let logits = model.logits_of(rows).await?;
        let mut top = Vec::new();
        let mut tracked = track.map(|_| Vec::new());
        for row in logits.chunks_exact(vocab) {
            let p = softmax(row);
            top.push(top_k(&p, k).into_iter().map(|(i, p)| (i, p as f32)).collect());
            if let (Some(t), Some(v)) = (track, tracked.as_mut()) {
                v.push(p[t as usize] as f32);
            }
        }
        layers.push(LensLayer { layer, top, tracked });
    }
    Ok(Lens { tokens: ids.to_vec(), layers })
}
