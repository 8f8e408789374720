//! Concepts as contrast pairs, and reading them out of the model.

use crate::directions::Method;
use crate::{Error, Result};
use tiller_engine::{Backend, Capture, LogitsFor, Model, Site};

/// Where a prompt's activation is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Read {
    /// The last token (the reference's convention).
    #[default]
    LastToken,
    /// The mean over all tokens of the prompt.
    Mean,
}

/// Read from JSON leniently: `last_token` or `mean`, or a description that starts with "last"
/// or "mean" (the reference files say `"read": "last token, raw prompt, no BOS"`).
impl<'de> serde::Deserialize<'de> for Read {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim().to_ascii_lowercase();
        if t.starts_with("last") {
            Ok(Read::LastToken)
        } else if t.starts_with("mean") {
            Ok(Read::Mean)
        } else {
            Err(serde::de::Error::custom(format!(
                "read position `{s}`: expected last_token or mean"
            )))
        }
    }
}

/// A concept: (positive, negative) prompt pairs. The JSON form is
/// `{"name": ..., "pairs": [[positive, negative], ...]}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Concept {
    pub name: String,
    pub pairs: Vec<(String, String)>,
    #[serde(default)]
    pub read: Read,
    /// How its direction is computed when it steers (default: mean difference).
    #[serde(default)]
    pub method: Method,
}

/// Caps on what a concept may hold (a concept can come from an untrusted link).
pub const MAX_PAIRS: usize = 256;
pub const MAX_CHARS: usize = 4096;

impl Concept {
    pub fn validate(&self) -> Result<()> {
        let err = |msg: String| Err(Error::Concept { name: self.name.clone(), msg });
        if self.name.trim().is_empty() {
            return Err(Error::Concept {
                name: "(unnamed)".into(),
                msg: "a concept needs a name".into(),
            });
        }
        if self.pairs.is_empty() {
            return err("it has no pairs: give at least one [positive, negative] pair".into());
        }
        if self.pairs.len() > MAX_PAIRS {
            return err(format!("{} pairs is more than the {MAX_PAIRS} allowed", self.pairs.len()));
        }
        for (i, (p, n)) in self.pairs.iter().enumerate() {
            if p.trim().is_empty() || n.trim().is_empty() {
                return err(format!("pair {} has an empty side", i + 1));
            }
            if p.len() > MAX_CHARS || n.len() > MAX_CHARS {
                return err(format!("pair {} is longer than {MAX_CHARS} characters", i + 1));
            }
        }
        Ok(())
    }
}

/// Activations of a set of prompts: `acts[prompt][layer]` is a `d`-vector.
#[derive(Debug, Clone)]
pub struct Acts {
    pub acts: Vec<Vec<Vec<f32>>>,
    pub n_layer: usize,
    pub d: usize,
}

impl Acts {
    /// The examples at `idx` (repeats allowed, for bootstrap resampling).
    pub fn subset(&self, idx: &[usize]) -> Acts {
        Acts {
            acts: idx.iter().map(|&i| self.acts[i].clone()).collect(),
            n_layer: self.n_layer,
            d: self.d,
        }
    }

    pub fn at(&self, layer: usize) -> impl Iterator<Item = &[f32]> {
        self.acts.iter().map(move |a| a[layer].as_slice())
    }
}

/// MLP hidden activations of every token of some texts (the input of SNMF).
#[derive(Debug, Clone, Default)]
pub struct MlpActs {
    /// Per layer, `tokens.len()` rows of `width` values.
    pub layers: Vec<Vec<f32>>,
    pub width: usize,
    /// Each row's (text index, position, token id).
    pub tokens: Vec<(usize, usize, u32)>,
}

/// Most tokens a capture puts through one packed pass.
const PACK_ROWS: usize = 512;

/// Most tokens SNMF reads (all layers' MLP activations are held at once).
pub const MAX_MLP_TOKENS: usize = 1024;

fn read_rows(rows: &[f32], d: usize, read: Read) -> Vec<f32> {
    match read {
        Read::LastToken => rows[rows.len() - d..].to_vec(),
        Read::Mean => {
            let n = rows.len() / d;
            let mut m = vec![0f32; d];
            for r in rows.chunks_exact(d) {
                m.iter_mut().zip(r).for_each(|(a, b)| *a += b / n as f32);
            }
            m
        }
    }
}

/// Run each raw prompt (no chat template) and read its residual stream at every layer.
pub async fn capture<B: Backend>(model: &Model<B>, texts: &[String], read: Read) -> Result<Acts> {
    capture_with(model, texts, read, None).await
}

/// As [`capture`], and in the same pass the MLP activations of every token into `mlp`.
pub async fn capture_with<B: Backend>(
    model: &Model<B>,
    texts: &[String],
    read: Read,
    mlp: Option<&mut MlpActs>,
) -> Result<Acts> {
    capture_full(model, texts, read, mlp, None).await
}

/// As [`capture_with`], also keeping the last position's logits of the first `logits.1` texts
/// in `logits.0` (the baseline of [`crate::effects::next_token_shift`]).
pub async fn capture_full<B: Backend>(
    model: &Model<B>,
    texts: &[String],
    read: Read,
    mut mlp: Option<&mut MlpActs>,
    mut logits: Option<(&mut Vec<Vec<f32>>, usize)>,
) -> Result<Acts> {
    let (n_layer, d) = (model.config.n_layer, model.config.d_model);
    if let Some(m) = mlp.as_deref_mut() {
        if m.layers.len() != n_layer {
            *m = MlpActs { layers: vec![Vec::new(); n_layer], ..Default::default() };
        }
    }
    let mut acts = Vec::with_capacity(texts.len());
    let mut ids = Vec::with_capacity(texts.len());
    for t in texts {
        ids.push(model.encode_prompt(t, false)?);
    }
    if let Some(m) = mlp.as_deref() {
        if m.tokens.len() + ids.iter().map(Vec::len).sum::<usize>() > MAX_MLP_TOKENS {
            return Err(Error::Concept {
                name: String::new(),
                msg: format!(
                    "SNMF reads every token and these texts have more than {MAX_MLP_TOKENS}: \
                     use fewer or shorter examples"
                ),
            });
        }
    }
    let keep_logits = logits.as_ref().map_or(0, |l| l.1);
    // Texts go through in packs of up to PACK_ROWS tokens (one pass each where the backend
    // packs sequences; the same activations as one pass per text).
    let mut start = 0;
    while start < ids.len() {
        let mut end = start + 1;
        let mut rows = ids[start].len();
        while end < ids.len() && rows + ids[end].len() <= PACK_ROWS {
            rows += ids[end].len();
            end += 1;
        }
        let group = &ids[start..end];
        let want: Vec<bool> = (start..end).map(|i| i < keep_logits).collect();
        let resid = Capture::new(0..n_layer);
        let (resid, last) = if let Some(m) = mlp.as_deref_mut() {
            let mut both = (resid, Capture::mlp(0..n_layer));
            let last = model.forward_packed(group, Some(&mut both), &want).await?;
            // Text indices continue from the texts already read into `m`.
            let base = m.tokens.last().map_or(0, |t| t.0 + 1);
            for (k, t) in group.iter().enumerate() {
                m.tokens.extend(t.iter().enumerate().map(|(p, &id)| (base + k, p, id)));
            }
            m.width = both.1.width;
            for (dst, src) in m.layers.iter_mut().zip(&both.1.rows) {
                dst.extend_from_slice(src);
            }
            (both.0, last)
        } else {
            let mut resid = resid;
            let last = model.forward_packed(group, Some(&mut resid), &want).await?;
            (resid, last)
        };
        // Split each layer's packed rows back into texts.
        let mut first = 0;
        for (k, (t, logit)) in group.iter().zip(last).enumerate() {
            let span = first * d..(first + t.len()) * d;
            acts.push(
                resid.rows.iter().map(|rows| read_rows(&rows[span.clone()], d, read)).collect(),
            );
            if let Some((out, n)) = logits.as_mut() {
                if start + k < *n {
                    out.push(logit);
                }
            }
            first += t.len();
        }
        start = end;
    }
    Ok(Acts { acts, n_layer, d })
}

/// Run each raw prompt once and read every site of `sites` at every layer (one [`Acts`] per
/// site, in order; the norm outputs are `d_model` wide like the residual stream).
pub async fn capture_sites<B: Backend>(
    model: &Model<B>,
    texts: &[String],
    read: Read,
    sites: &[Site],
) -> Result<Vec<Acts>> {
    let n_layer = model.config.n_layer;
    let mut out: Vec<Acts> =
        sites.iter().map(|_| Acts { acts: Vec::new(), n_layer, d: 0 }).collect();
    for t in texts {
        let ids = model.encode_prompt(t, false)?;
        let mut caps: Vec<Capture> = sites.iter().map(|&s| Capture::at(s, 0..n_layer)).collect();
        model.session().forward(&ids, Some(&mut caps), LogitsFor::Hooks).await?;
        for (o, c) in out.iter_mut().zip(&caps) {
            o.d = c.width;
            o.acts.push(c.rows.iter().map(|rows| read_rows(rows, c.width, read)).collect());
        }
    }
    Ok(out)
}

/// Contexts per class whose next-token distributions [`crate::effects::next_token_shift`]
/// averages over (the first of the concept's pairs).
pub const SHIFT_CONTEXTS: usize = 8;

/// A concept's examples read out of the model.
pub struct ConceptActs {
    pub pos: Acts,
    pub neg: Acts,
    /// The MLP activations of every token (positives' texts first), when asked for.
    pub mlp: Option<MlpActs>,
    /// The token ids of the first [`SHIFT_CONTEXTS`] positives and negatives, and their
    /// last-position logits.
    pub contexts: Vec<Vec<u32>>,
    pub context_logits: Vec<Vec<f32>>,
}

/// Capture a concept's examples (and, with `mlp`, the MLP activations of every token; with
/// `logits`, the contexts' last-position logits, else `contexts` and `context_logits` are
/// empty).
pub async fn capture_concept_full<B: Backend>(
    model: &Model<B>,
    c: &Concept,
    mlp: bool,
    logits: bool,
) -> Result<ConceptActs> {
    c.validate()?;
    let pos: Vec<String> = c.pairs.iter().map(|p| p.0.clone()).collect();
    let neg: Vec<String> = c.pairs.iter().map(|p| p.1.clone()).collect();
    let mut m = mlp.then(MlpActs::default);
    let (mut lp, mut ln) = (Vec::new(), Vec::new());
    let keep = if logits { SHIFT_CONTEXTS } else { 0 };
    let p = capture_full(model, &pos, c.read, m.as_mut(), Some((&mut lp, keep))).await?;
    let n = capture_full(model, &neg, c.read, m.as_mut(), Some((&mut ln, keep))).await?;
    let take = keep.min(c.pairs.len());
    let mut contexts = Vec::with_capacity(2 * take);
    for t in pos.iter().take(take).chain(neg.iter().take(take)) {
        contexts.push(model.encode_prompt(t, false)?);
    }
    lp.extend(ln);
    Ok(ConceptActs { pos: p, neg: n, mlp: m, contexts, context_logits: lp })
}

/// Positive and negative activations of a concept.
pub async fn capture_concept<B: Backend>(model: &Model<B>, c: &Concept) -> Result<(Acts, Acts)> {
    let a = capture_concept_full(model, c, false, false).await?;
    Ok((a.pos, a.neg))
}

/// As [`capture_concept`], with the MLP activations of every token (positives' texts first).
pub async fn capture_concept_mlp<B: Backend>(
    model: &Model<B>,
    c: &Concept,
) -> Result<(Acts, Acts, MlpActs)> {
    let a = capture_concept_full(model, c, true, false).await?;
    Ok((a.pos, a.neg, a.mlp.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(pairs: Vec<(&str, &str)>) -> Concept {
        Concept {
            name: "x".into(),
            pairs: pairs.into_iter().map(|(a, b)| (a.into(), b.into())).collect(),
            read: Read::LastToken,
            method: Method::MeanDiff,
        }
    }

    #[test]
    fn validation_errors_are_clear() {
        assert!(c(vec![]).validate().unwrap_err().to_string().contains("no pairs"));
        assert!(c(vec![("good", " ")]).validate().unwrap_err().to_string().contains("empty side"));
        let long = "a".repeat(MAX_CHARS + 1);
        assert!(c(vec![("a", long.as_str())]).validate().is_err());
        let mut unnamed = c(vec![("a", "b")]);
        unnamed.name = " ".into();
        assert!(unnamed.validate().is_err());
        assert!(c(vec![("a", "b")]).validate().is_ok());
    }

    #[test]
    fn json_form_matches_the_reference_files() {
        let c: Concept =
            serde_json::from_str(r#"{"name": "s", "pairs": [["good", "bad"]]}"#).unwrap();
        assert_eq!(c.pairs, vec![("good".to_string(), "bad".to_string())]);
        assert_eq!(c.read, Read::LastToken);
        let c: Concept = serde_json::from_str(
            r#"{"name": "s", "read": "last token, raw prompt, no BOS", "pairs": [["a", "b"]]}"#,
        )
        .unwrap();
        assert_eq!(c.read, Read::LastToken);
        let c: Concept =
            serde_json::from_str(r#"{"name": "s", "read": "mean", "pairs": [["a", "b"]]}"#)
                .unwrap();
        assert_eq!(c.read, Read::Mean);
        assert!(serde_json::from_str::<Concept>(
            r#"{"name": "s", "read": "first", "pairs": [["a", "b"]]}"#
        )
        .is_err());
    }
}
