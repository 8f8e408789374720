//! `tiller share encode|decode`, `tiller export`, and reading a setup given as a file or a link.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use tiller_engine::Wait;
use tiller_share::cvec::{self, ControlVector};
use tiller_share::{url, SteeringConfig};
use tiller_steer::concept::Concept;
use tiller_steer::directions::Method;

#[derive(Subcommand)]
pub enum ShareCmd {
    /// Print the URL fragment (#c=...) of a setup file (JSON).
    Encode(EncodeArgs),
    /// Print the setup in a share link (a URL, a fragment, or a file holding one) as JSON.
    Decode(DecodeArgs),
}

#[derive(Args)]
pub struct EncodeArgs {
    /// Setup file (JSON), or a link to re-encode.
    #[arg(long)]
    pub config: String,
    /// Print the whole URL: this page address followed by the fragment.
    #[arg(long)]
    pub base: Option<String>,
}

#[derive(Args)]
pub struct DecodeArgs {
    /// A share URL, its fragment (#c=... or c=...), or a file holding either.
    pub link: String,
}

/// A setup from a JSON file, a file holding a link, or a link given inline.
pub fn read_config(s: &str) -> Result<SteeringConfig> {
    let p = std::path::Path::new(s);
    let text = if p.is_file() {
        std::fs::read_to_string(p).with_context(|| format!("reading setup file {s}"))?
    } else {
        s.to_string()
    };
    let t = text.trim();
    if t.starts_with('{') {
        SteeringConfig::from_json(t).with_context(|| format!("setup {s}"))
    } else if t.contains("c=") || p.is_file() {
        Ok(url::decode(t)?)
    } else {
        bail!("--config {s}: not a file, and not a share link (expected a URL with #c=...)")
    }
}

pub fn share(c: ShareCmd) -> Result<()> {
    match c {
        ShareCmd::Encode(a) => {
            let cfg = read_config(&a.config)?;
            let frag = url::encode(&cfg)?;
            match a.base {
                Some(b) => println!("{}{frag}", b.split('#').next().unwrap_or_default()),
                None => println!("{frag}"),
            }
        }
        ShareCmd::Decode(a) => {
            let p = std::path::Path::new(&a.link);
            let link = if p.is_file() { std::fs::read_to_string(p)? } else { a.link };
            println!("{}", url::decode(&link)?.to_json_pretty());
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub m: crate::ModelArgs,
    /// Concept file.
    #[arg(long)]
    pub concept: PathBuf,
    /// mean-diff (raw vector), pca, pca-repe, probe, svd or snmf.
    #[arg(long, default_value = "mean-diff")]
    pub method: String,
    /// Layers to write (4-16 or 3,5,7); layer 0 cannot be written (llama.cpp rejects it).
    #[arg(long)]
    pub layers: String,
    /// Scale every vector by this (llama.cpp scales again by its own strength).
    #[arg(long, default_value_t = 1.0)]
    pub coef: f32,
    /// Unit vectors scaled by each layer's mean residual norm (one coefficient means the same
    /// at every layer), instead of the method's raw vector.
    #[arg(long)]
    pub unit: bool,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let method: Method = a.method.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    if !a.coef.is_finite() {
        bail!("--coef must be a finite number");
    }
    let s = std::fs::read_to_string(&a.concept)
        .with_context(|| format!("reading concept file {}", a.concept.display()))?;
    let c: Concept =
        serde_json::from_str(&s).with_context(|| format!("{}", a.concept.display()))?;
    c.validate()?;
    let layers = crate::steering::parse_layers(&a.layers)?;
    let model = crate::load(&a.m)?;
    let n_layer = model.config.n_layer;
    if let Some(l) = layers.iter().find(|&&l| l >= n_layer) {
        bail!("layer {l} is out of range: the model has layers 0..={}", n_layer - 1);
    }
    let prepared = tiller_steer::plan::prepare(&model, &Concept { method, ..c.clone() }).wait()?;
    let directions = layers
        .iter()
        .map(|&l| {
            let v = &prepared.dirs[l];
            let scale = if a.unit {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
                a.coef * prepared.mean_norms[l] / n
            } else {
                a.coef
            };
            (l, v.iter().map(|x| x * scale).collect())
        })
        .collect();
    let cv = ControlVector { model_hint: model.config.architecture.clone(), directions };
    let bytes = cvec::write(&cv)?;
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {} ({} bytes): {} directions of {} for `{}` by {}",
        a.out.display(),
        bytes.len(),
        cv.directions.len(),
        model.config.d_model,
        c.name,
        a.method
    );
    Ok(())
}
