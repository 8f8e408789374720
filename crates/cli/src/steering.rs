//! Steering flags shared by `generate` and `logits`, and the `concept` command.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tiller_engine::{Backend, LogitsFor, Model};
use tiller_steer::concept::{capture_concept, Concept};
use tiller_steer::diagnostics;
use tiller_steer::directions::{mean_diff, mean_norms, Method};
use tiller_steer::intervene::{self, Intervention, Plan, Positions};
use tiller_steer::report;
use tiller_steer::snmf::SnmfParams;

#[derive(Args, Default)]
pub struct SteerArgs {
    /// A concept file ({"name": ..., "pairs": [[positive, negative], ...]}); repeatable.
    #[arg(long = "concept")]
    pub concepts: Vec<PathBuf>,
    /// NAME@L=C: add C times the raw mean-difference vector of NAME at layer L.
    #[arg(long)]
    pub add: Vec<String>,
    /// NAME@L=C: add C times the unit mean difference scaled by the layer's mean residual norm
    /// (one strength means the same at every layer).
    #[arg(long)]
    pub add_unit: Vec<String>,
    /// NAME@LAYERS: project each layer's unit mean-difference direction out (LAYERS: 4-16 or 3,5,7).
    #[arg(long)]
    pub ablate: Vec<String>,
    /// NAME@LAYERS=V: set the projection on each layer's unit direction to V.
    #[arg(long)]
    pub clamp: Vec<String>,
    /// NAME@L=DEGREES (or NAME@LAYERS=DEGREES): Selective Steering rotation.
    #[arg(long)]
    pub rotate: Vec<String>,
    /// With --rotate: only on the listed layers that pass the opposite-sign criterion.
    #[arg(long)]
    pub selective: bool,
    /// Where interventions act: prompt, generated or all (default).
    #[arg(long, default_value = "all")]
    pub positions: String,
}

fn read_concept(p: &PathBuf) -> Result<Concept> {
    let s = std::fs::read_to_string(p)
        .with_context(|| format!("reading concept file {}", p.display()))?;
    let c: Concept = serde_json::from_str(&s).with_context(|| {
        format!(
            "{}: expected {{\"name\": ..., \"pairs\": [[positive, negative], ...]}}",
            p.display()
        )
    })?;
    c.validate()?;
    Ok(c)
}

/// "4-16", "3,5,7" or "10".
pub fn parse_layers(s: &str) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
            if a > b {
                bail!("layer range {part} is backwards");
            }
            v.extend(a..=b);
        } else {
            v.push(part.parse().map_err(|_| anyhow!("`{part}` is not a layer number"))?);
        }
    }
    Ok(v)
}

/// "NAME@REST" -> (NAME, REST)
fn split_spec<'a>(flag: &str, spec: &'a str) -> Result<(&'a str, &'a str)> {
    spec.rsplit_once('@').ok_or_else(|| anyhow!("--{flag} {spec}: expected NAME@..."))
}

fn value(flag: &str, spec: &str, s: &str) -> Result<f32> {
    let v: f32 = s.trim().parse().map_err(|_| anyhow!("--{flag} {spec}: `{s}` is not a number"))?;
    if !v.is_finite() {
        bail!("--{flag} {spec}: the value must be a finite number, got {s}");
    }
    Ok(v)
}

impl SteerArgs {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.add_unit.is_empty()
            && self.ablate.is_empty()
            && self.clamp.is_empty()
            && self.rotate.is_empty()
    }

    /// The interventions as an engine hook, or None when none were asked for.
    pub fn plan<B: Backend>(&self, model: &Model<B>, prompt_len: usize) -> Result<Option<Plan>> {
        if self.is_empty() {
            return Ok(None);
        }
        let positions = match self.positions.as_str() {
            "all" => Positions::All,
            "prompt" => Positions::Prompt,
            "generated" => Positions::Generated,
            other => bail!("--positions {other}: expected prompt, generated or all"),
        };
        let mut md: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
        let mut norms: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut criterion: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for p in &self.concepts {
            let c = read_concept(p)?;
            let (pos, neg) = capture_concept(model, &c)?;
            let dirs = mean_diff(&pos, &neg)?;
            // Only what the flags use: the sign criterion for --selective, norms for --add-unit.
            if self.selective {
                let pass = (0..dirs.len())
                    .filter(|&l| diagnostics::layer(&pos, &neg, l, &dirs[l]).opposite_signs)
                    .collect();
                criterion.insert(c.name.clone(), pass);
            }
            if !self.add_unit.is_empty() {
                norms.insert(c.name.clone(), mean_norms(&pos, &neg));
            }
            md.insert(c.name.clone(), dirs);
        }
        let get = |flag: &str, name: &str| {
            md.get(name).ok_or_else(|| {
                anyhow!(
                    "--{flag}: unknown concept `{name}` (known: {}); load it with --concept FILE",
                    md.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
        };
        let mut ivs = Vec::new();
        for spec in &self.add {
            let (name, rest) = split_spec("add", spec)?;
            let (l, c) =
                rest.split_once('=').ok_or_else(|| anyhow!("--add {spec}: expected NAME@L=C"))?;
            let l: usize =
                l.trim().parse().map_err(|_| anyhow!("--add {spec}: `{l}` is not a layer"))?;
            ivs.push(intervene::add(get("add", name)?, l, value("add", spec, c)?)?);
        }
        for spec in &self.add_unit {
            let (name, rest) = split_spec("add-unit", spec)?;
            let (l, c) = rest
                .split_once('=')
                .ok_or_else(|| anyhow!("--add-unit {spec}: expected NAME@L=C"))?;
            let l: usize =
                l.trim().parse().map_err(|_| anyhow!("--add-unit {spec}: `{l}` is not a layer"))?;
            let n = norms.get(name).map(Vec::as_slice).unwrap_or(&[]);
            ivs.push(intervene::add_unit(
                get("add-unit", name)?,
                n,
                l,
                value("add-unit", spec, c)?,
            )?);
        }
        for spec in &self.ablate {
            let (name, layers) = split_spec("ablate", spec)?;
            ivs.push(intervene::ablate(get("ablate", name)?, &parse_layers(layers)?)?);
        }
        for spec in &self.clamp {
            let (name, rest) = split_spec("clamp", spec)?;
            let (layers, v) = rest
                .split_once('=')
                .ok_or_else(|| anyhow!("--clamp {spec}: expected NAME@LAYERS=V"))?;
            ivs.push(intervene::clamp(
                get("clamp", name)?,
                &parse_layers(layers)?,
                value("clamp", spec, v)?,
            )?);
        }
        for spec in &self.rotate {
            let (name, rest) = split_spec("rotate", spec)?;
            let (ls, deg) = rest
                .split_once('=')
                .ok_or_else(|| anyhow!("--rotate {spec}: expected NAME@L=DEGREES"))?;
            let mut layers = parse_layers(ls)?;
            if self.selective {
                let pass = criterion.get(name).map(Vec::as_slice).unwrap_or(&[]);
                layers.retain(|l| pass.contains(l));
                if layers.is_empty() {
                    bail!("--rotate {spec} --selective: no listed layer passes the opposite-sign criterion");
                }
            }
            ivs.push(intervene::rotate_layers(
                get("rotate", name)?,
                &layers,
                value("rotate", spec, deg)?,
            )?);
        }
        Ok(Some(Plan {
            interventions: ivs
                .into_iter()
                .map(|layers| Intervention { layers, positions })
                .collect(),
            prompt_len,
        }))
    }
}

#[derive(Args)]
pub struct ConceptArgs {
    #[command(flatten)]
    pub m: crate::ModelArgs,
    /// Concept file: {"name": ..., "pairs": [[positive, negative], ...]}.
    #[arg(long)]
    pub pairs: PathBuf,
    /// mean-diff, pca, probe, svd or snmf.
    #[arg(long, default_value = "mean-diff")]
    pub method: String,
    /// Number of SNMF features per layer.
    #[arg(long, default_value_t = 8)]
    pub features: usize,
    /// Print JSON (the only output format today).
    #[arg(long)]
    pub json: bool,
}

pub fn concept(a: ConceptArgs) -> Result<()> {
    let method: Method = a.method.parse().map_err(|e: String| anyhow!(e))?;
    let c = read_concept(&a.pairs)?;
    let model = crate::load(&a.m)?;
    let opts = report::Options {
        snmf: SnmfParams { k: a.features, ..Default::default() },
        ..Default::default()
    };
    let r = report::analyze(&model, &c, method, &opts, &mut |_, _, _| {})?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub m: crate::ModelArgs,
    /// Concept files; the first (or --steer NAME) is steered, every one is scored (side effects).
    #[arg(long = "concept", required = true)]
    pub concepts: Vec<PathBuf>,
    /// Which loaded concept to steer (default: the first).
    #[arg(long)]
    pub steer: Option<String>,
    /// add (strength = coefficient on the mean difference), clamp (the projection value) or
    /// rotate (degrees).
    #[arg(long, default_value = "add")]
    pub op: String,
    #[arg(long)]
    pub layer: usize,
    /// Strengths, comma separated.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, default_value = "-2,-1,0,1,2")]
    pub strengths: Vec<f32>,
    /// The prompt whose greedy continuation is scored.
    #[arg(long, default_value = "I think that the weather today is")]
    pub prompt: String,
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 24)]
    pub max_tokens: usize,
    /// A neutral text for perplexity and KL.
    #[arg(
        long,
        default_value = "The city council met on Tuesday to discuss the budget for roads, schools and the library."
    )]
    pub neutral: String,
    /// Layer at which concept scores are read (default: the steered layer).
    #[arg(long)]
    pub read_layer: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

pub fn sweep(a: SweepArgs) -> Result<()> {
    use tiller_steer::effects::{concept_score, kl_rows, perplexity};
    if a.strengths.iter().any(|s| !s.is_finite()) {
        bail!("--strengths must be finite numbers");
    }
    let model = crate::load(&a.m)?;
    let mut names = Vec::new();
    let mut md: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    for p in &a.concepts {
        let c = read_concept(p)?;
        let (pos, neg) = capture_concept(&model, &c)?;
        names.push(c.name.clone());
        md.insert(c.name, mean_diff(&pos, &neg)?);
    }
    let target = a.steer.clone().unwrap_or_else(|| names[0].clone());
    let dirs =
        md.get(&target).ok_or_else(|| anyhow!("--steer {target}: no such concept loaded"))?;
    let read = a.read_layer.unwrap_or(a.layer);
    if read >= model.config.n_layer {
        bail!(
            "--read-layer {read} is out of range: the model has layers 0..={}",
            model.config.n_layer - 1
        );
    }
    let prompt = model.encode_prompt(&a.prompt, a.chat)?;
    let neutral = model.encode_prompt(&a.neutral, false)?;
    if prompt.is_empty() || neutral.len() < 2 {
        bail!("the prompt must have a token and the neutral text at least two");
    }
    let vocab = model.config.vocab;
    let base = model.session().forward(&neutral, None, LogitsFor::All)?;
    let mut points = Vec::new();
    for &s in &a.strengths {
        let layers = match a.op.as_str() {
            "add" => intervene::add(dirs, a.layer, s)?,
            "clamp" => intervene::clamp(dirs, &[a.layer], s)?,
            "rotate" => intervene::rotate(dirs, a.layer, s)?,
            other => bail!("--op {other}: expected add, clamp or rotate"),
        };
        let mut plan = Plan {
            interventions: vec![Intervention { layers, positions: Positions::All }],
            prompt_len: prompt.len(),
        };
        let sampler = tiller_engine::Sampler::new(Default::default())?;
        let g = tiller_engine::generate(
            &model,
            &prompt,
            a.max_tokens,
            sampler,
            Some(&mut plan),
            &mut |_| std::ops::ControlFlow::Continue(()),
        )?;
        let all: Vec<u32> = prompt.iter().chain(&g.ids).copied().collect();
        let mut scores = serde_json::Map::new();
        for n in &names {
            scores.insert(
                n.clone(),
                json!(concept_score(&model, &all, prompt.len(), read, &md[n][read])?),
            );
        }
        // One steered forward over the neutral text gives both KL (against the baseline, run
        // once before the loop) and perplexity.
        plan.prompt_len = neutral.len();
        let steered = model.session().forward(&neutral, Some(&mut plan), LogitsFor::All)?;
        let kl = kl_rows(&steered, &base, vocab);
        let kl_mean = kl.iter().sum::<f64>() / kl.len() as f64;
        let ppl = perplexity(&steered, &neutral, vocab);
        points.push(json!({
            "strength": s, "text": model.tokenizer.decode(&g.ids)?, "kl_mean": kl_mean, "kl": kl,
            "perplexity": ppl, "scores": scores,
        }));
    }
    println!(
        "{}",
        json!({ "concept": target, "op": a.op, "layer": a.layer, "read_layer": read, "prompt": a.prompt, "neutral": a.neutral, "points": points })
    );
    Ok(())
}
