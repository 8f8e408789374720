//! Steering flags shared by `generate` and `logits`, and the `concept` command.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use tiller_engine::{Backend, Model};
use tiller_share::SteeringConfig;
use tiller_steer::concept::Concept;
use tiller_steer::directions::Method;
use tiller_steer::intervene::{Intervention, Plan, Positions};
use tiller_steer::lineas::LineasParams;
use tiller_steer::plan::{self, InterventionSpec, OpKind};
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
    /// NAME@LAYERS[=S]: LinEAS affine maps trained from NAME's negatives to its positives at
    /// LAYERS, applied at strength S (default 1).
    #[arg(long)]
    pub affine: Vec<String>,
    /// With --rotate: only on the listed layers that pass the opposite-sign criterion.
    #[arg(long)]
    pub selective: bool,
    /// Where interventions act: prompt, generated or all (default).
    #[arg(long, default_value = "all")]
    pub positions: String,
    /// A saved setup (JSON file) or a share link (URL, #c=... fragment, or a file holding one):
    /// its concepts and interventions, and for generate its prompt, chat mode and sampling.
    /// Flags add to it and override its prompt and sampling.
    #[arg(long)]
    pub config: Option<String>,
    /// FILE[=STRENGTH]: a llama.cpp control-vector GGUF; direction.N is added (times STRENGTH,
    /// default 1) at layer N, as llama.cpp does. Repeatable.
    #[arg(long = "control-vector")]
    pub control_vectors: Vec<String>,
    /// With --control-vector: apply direction.N at layer N - 1, where llama.cpp's
    /// cvector-generator measured it.
    #[arg(long)]
    pub control_vector_shift: bool,
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
    /// The flags as intervention specs, in the order add, add-unit, ablate, clamp, rotate,
    /// affine.
    pub fn specs(&self) -> Result<Vec<InterventionSpec>> {
        let positions = self.positions()?;
        let spec = |concept: &str, op, layers, strength| InterventionSpec {
            concept: concept.to_string(),
            op,
            layers,
            strength,
            positions,
            selective: self.selective && op == OpKind::Rotate,
            enabled: true,
        };
        let layer = |flag: &str, spec: &str, l: &str| -> Result<usize> {
            l.trim().parse().map_err(|_| anyhow!("--{flag} {spec}: `{l}` is not a layer"))
        };
        let mut out = Vec::new();
        for (flag, list, op) in
            [("add", &self.add, OpKind::Add), ("add-unit", &self.add_unit, OpKind::AddUnit)]
        {
            for sp in list {
                let (name, rest) = split_spec(flag, sp)?;
                let (l, c) = rest
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--{flag} {sp}: expected NAME@L=C"))?;
                out.push(spec(name, op, vec![layer(flag, sp, l)?], value(flag, sp, c)?));
            }
        }
        for sp in &self.ablate {
            let (name, layers) = split_spec("ablate", sp)?;
            out.push(spec(name, OpKind::Ablate, parse_layers(layers)?, 0.0));
        }
        for sp in &self.clamp {
            let (name, rest) = split_spec("clamp", sp)?;
            let (layers, v) = rest
                .split_once('=')
                .ok_or_else(|| anyhow!("--clamp {sp}: expected NAME@LAYERS=V"))?;
            out.push(spec(name, OpKind::Clamp, parse_layers(layers)?, value("clamp", sp, v)?));
        }
        for sp in &self.rotate {
            let (name, rest) = split_spec("rotate", sp)?;
            let (ls, deg) = rest
                .split_once('=')
                .ok_or_else(|| anyhow!("--rotate {sp}: expected NAME@L=DEGREES"))?;
            out.push(spec(name, OpKind::Rotate, parse_layers(ls)?, value("rotate", sp, deg)?));
        }
        for sp in &self.affine {
            let (name, rest) = split_spec("affine", sp)?;
            let (ls, st) = rest.split_once('=').unwrap_or((rest, "1"));
            out.push(spec(name, OpKind::Affine, parse_layers(ls)?, value("affine", sp, st)?));
        }
        Ok(out)
    }

    /// The setup given with --config, if any.
    pub fn config(&self) -> Result<Option<SteeringConfig>> {
        self.config.as_deref().map(crate::share::read_config).transpose()
    }

    /// The concepts: the setup's, then the --concept files'.
    pub fn concepts(&self) -> Result<Vec<Concept>> {
        let mut out = self.config()?.map(|c| c.concepts).unwrap_or_default();
        for p in &self.concepts {
            let c = read_concept(p)?;
            if out.iter().any(|o| o.name == c.name) {
                bail!(
                    "concept `{}` is defined twice (--concept {} and the setup)",
                    c.name,
                    p.display()
                );
            }
            out.push(c);
        }
        Ok(out)
    }

    /// The interventions as an engine hook, or None when none were asked for.
    pub fn plan<B: Backend>(&self, model: &Model<B>, prompt_len: usize) -> Result<Option<Plan>> {
        let mut specs = self.config()?.map(|c| c.interventions).unwrap_or_default();
        specs.extend(self.specs()?);
        // Only the concepts an enabled intervention names are computed.
        let prepared = self
            .concepts()?
            .iter()
            .filter(|c| specs.iter().any(|s| s.enabled && s.concept == c.name))
            .map(|c| plan::prepare(model, c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut plan = plan::build(model, &prepared, &specs, prompt_len, &LineasParams::default())?;
        let positions = self.positions()?;
        for spec in &self.control_vectors {
            let (path, strength) = match spec.rsplit_once('=') {
                Some((p, s)) => (p, value("control-vector", spec, s)?),
                None => (spec.as_str(), 1.0),
            };
            let bytes =
                std::fs::read(path).with_context(|| format!("reading control vector {path}"))?;
            let cv = tiller_share::cvec::read(&bytes).with_context(|| path.to_string())?;
            let (n, d) = (model.config.n_layer, model.config.d_model);
            let layers = cv
                .ops(n, d, strength, self.control_vector_shift)
                .with_context(|| path.to_string())?;
            plan.get_or_insert_with(|| Plan { interventions: Vec::new(), prompt_len })
                .interventions
                .push(Intervention { layers, positions });
        }
        Ok(plan)
    }

    fn positions(&self) -> Result<Positions> {
        Ok(match self.positions.as_str() {
            "all" => Positions::All,
            "prompt" => Positions::Prompt,
            "generated" => Positions::Generated,
            other => bail!("--positions {other}: expected prompt, generated or all"),
        })
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
    use tiller_steer::sweep::{sweep, Sweep};
    if a.strengths.iter().any(|s| !s.is_finite()) {
        bail!("--strengths must be finite numbers");
    }
    let op = match a.op.as_str() {
        "add" => OpKind::Add,
        "add-unit" | "add_unit" => OpKind::AddUnit,
        "clamp" => OpKind::Clamp,
        "rotate" => OpKind::Rotate,
        "affine" => OpKind::Affine,
        other => bail!("--op {other}: expected add, add-unit, clamp, rotate or affine"),
    };
    let concepts: Vec<Concept> = a.concepts.iter().map(read_concept).collect::<Result<_>>()?;
    let target = a.steer.clone().unwrap_or_else(|| concepts[0].name.clone());
    if !concepts.iter().any(|c| c.name == target) {
        bail!("--steer {target}: no such concept loaded");
    }
    let model = crate::load(&a.m)?;
    let read = a.read_layer.unwrap_or(a.layer);
    if read >= model.config.n_layer {
        bail!(
            "--read-layer {read} is out of range: the model has layers 0..={}",
            model.config.n_layer - 1
        );
    }
    let prepared =
        concepts.iter().map(|c| plan::prepare(&model, c)).collect::<Result<Vec<_>, _>>()?;
    let prompt = model.encode_prompt(&a.prompt, a.chat)?;
    let neutral = model.encode_prompt(&a.neutral, false)?;
    let spec = InterventionSpec {
        concept: target.clone(),
        op,
        layers: vec![a.layer],
        strength: 0.0,
        positions: Positions::All,
        selective: false,
        enabled: true,
    };
    let sw = Sweep {
        spec: &spec,
        strengths: &a.strengths,
        prompt: &prompt,
        neutral: &neutral,
        max_tokens: a.max_tokens,
        read_layer: read,
    };
    let points = sweep(&model, &prepared, &sw, &mut |_| {})?;
    println!(
        "{}",
        json!({ "concept": target, "op": a.op, "layer": a.layer, "read_layer": read, "prompt": a.prompt, "neutral": a.neutral, "points": points })
    );
    Ok(())
}

#[derive(Args)]
pub struct LineasArgs {
    #[command(flatten)]
    pub m: crate::ModelArgs,
    /// Concept file: its negatives are the source texts, its positives the target.
    #[arg(long)]
    pub concept: PathBuf,
    /// Layers to train maps at (4-16 or 3,5,7).
    #[arg(long)]
    pub layers: String,
    #[arg(long, default_value_t = LineasParams::default().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = LineasParams::default().steps)]
    pub steps: usize,
    #[arg(long, default_value_t = LineasParams::default().lr)]
    pub lr: f32,
    /// Group-lasso weight: larger keeps fewer neurons.
    #[arg(long, default_value_t = LineasParams::default().lambda)]
    pub lambda: f32,
    /// Include the maps (gamma, beta per layer) in the JSON.
    #[arg(long)]
    pub maps: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn lineas(a: LineasArgs) -> Result<()> {
    let c = read_concept(&a.concept)?;
    let layers = parse_layers(&a.layers)?;
    let model = crate::load(&a.m)?;
    let p = LineasParams { epochs: a.epochs, steps: a.steps, lr: a.lr, lambda: a.lambda };
    let (pos, neg): (Vec<String>, Vec<String>) = c.pairs.iter().cloned().unzip();
    let mut layers = layers;
    layers.sort_unstable();
    layers.dedup();
    let t = std::time::Instant::now();
    let fit = tiller_steer::lineas::fit(&model, &neg, &pos, &layers, &p)?;
    let secs = t.elapsed().as_secs_f64();
    let kept: Vec<_> = fit
        .layers
        .iter()
        .zip(&fit.kept)
        .map(|(l, k)| json!({ "layer": l, "count": k.len(), "neurons": k }))
        .collect();
    let mut o = json!({ "concept": c.name, "layers": fit.layers, "loss": fit.loss, "kept": kept, "seconds": secs, "width": model.config.d_model });
    if a.maps {
        o["gamma"] = json!(fit.gamma);
        o["beta"] = json!(fit.beta);
    }
    println!("{o}");
    Ok(())
}

#[derive(Args)]
pub struct ObservableArgs {
    #[command(flatten)]
    pub m: crate::ModelArgs,
    /// The token pair "A,B" (each a single token, e.g. " good, bad" is " good" and " bad"):
    /// the observable is logit(A) - logit(B).
    #[arg(long)]
    pub pair: String,
    /// Concept files whose per-layer directions are coupled with the observable.
    #[arg(long = "concept")]
    pub concepts: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn observable(a: ObservableArgs) -> Result<()> {
    use tiller_steer::observable::{coupling, observable};
    let model = crate::load(&a.m)?;
    let (ta, tb) =
        a.pair.split_once(',').ok_or_else(|| anyhow!("--pair {}: expected A,B", a.pair))?;
    let id = |t: &str| -> Result<u32> {
        let ids = model.tokenizer.encode(t)?;
        match ids.as_slice() {
            [one] => Ok(*one),
            _ => bail!("--pair: {t:?} is {} tokens; each side must be one token", ids.len()),
        }
    };
    let (ia, ib) = (id(ta)?, id(tb)?);
    let y = observable(&model, ia, ib)?;
    let mut couplings = Vec::new();
    for p in &a.concepts {
        let c = read_concept(p)?;
        let prepared = plan::prepare(&model, &c)?;
        let per_layer: Vec<f64> = prepared.dirs.iter().map(|d| coupling(d, &y)).collect();
        couplings.push(json!({ "concept": c.name, "coupling": per_layer }));
    }
    println!(
        "{}",
        json!({ "a": { "id": ia, "token": ta }, "b": { "id": ib, "token": tb }, "direction": y, "couplings": couplings })
    );
    Ok(())
}
