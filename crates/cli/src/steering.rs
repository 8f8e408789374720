//! Steering flags shared by `generate` and `logits`, and the `concept` command.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use tiller_engine::Wait;
use tiller_engine::{Backend, Model, Site};
use tiller_share::SteeringConfig;
use tiller_steer::concept::Concept;
use tiller_steer::condition::{Check, Condition};
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
    /// NAME@L=DEGREES (or NAME@LAYERS=DEGREES): angular steering of the residual stream, a
    /// norm-preserving rotation in each layer's plane (b1 that layer's mean difference).
    #[arg(long)]
    pub rotate: Vec<String>,
    /// NAME@LAYERS=DEGREES: Selective Steering as its authors do it: rotate both norm outputs
    /// of each listed block that passes its test, in one plane shared by all (LAYERS: 0-29 to
    /// let the test choose among all blocks).
    #[arg(long)]
    pub selective_steering: Vec<String>,
    /// NAME@LAYERS[=S]: LinEAS affine maps trained from NAME's negatives to its positives at
    /// LAYERS, applied at strength S (default 1).
    #[arg(long)]
    pub affine: Vec<String>,
    /// With --rotate: only on the listed layers that pass the opposite-sign criterion on the
    /// residual stream.
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
    /// Conditional steering (CAST): NAME@LAYER=T steers only when the prompt's condition score
    /// on concept NAME at LAYER is at least T; NAME@LAYER<T only when it is below T. The score
    /// is CAST's: cos(h, tanh(P h)), h the prompt's mean hidden state, P the projector on the
    /// concept's direction. Overrides the setup's condition.
    #[arg(long)]
    pub condition: Option<String>,
}

pub fn read_concept(p: &PathBuf) -> Result<Concept> {
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
    /// selective-steering, affine.
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
        for sp in &self.selective_steering {
            let (name, rest) = split_spec("selective-steering", sp)?;
            let (ls, deg) = rest.split_once('=').ok_or_else(|| {
                anyhow!("--selective-steering {sp}: expected NAME@LAYERS=DEGREES")
            })?;
            let deg = value("selective-steering", sp, deg)?;
            out.push(spec(name, OpKind::SelectiveSteering, parse_layers(ls)?, deg));
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
            .map(|c| plan::prepare(model, c).wait())
            .collect::<Result<Vec<_>, _>>()?;
        let mut plan =
            plan::build(model, &prepared, &specs, prompt_len, &LineasParams::default()).wait()?;
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
                .push(Intervention { layers, positions, site: Site::Residual });
        }
        Ok(plan)
    }

    fn positions(&self) -> Result<Positions> {
        positions(&self.positions)
    }

    /// The condition: --condition, else the setup's.
    pub fn condition(&self) -> Result<Option<Condition>> {
        let Some(sp) = &self.condition else {
            return Ok(self.config()?.and_then(|c| c.condition));
        };
        let (name, rest) = split_spec("condition", sp)?;
        let (l, t, below) = match (rest.split_once('='), rest.split_once('<')) {
            (Some((l, t)), None) => (l, t, false),
            (None, Some((l, t))) => (l, t, true),
            _ => bail!("--condition {sp}: expected NAME@LAYER=THRESHOLD or NAME@LAYER<THRESHOLD"),
        };
        let layer =
            l.trim().parse().map_err(|_| anyhow!("--condition {sp}: `{l}` is not a layer"))?;
        let threshold = value("condition", sp, t)?;
        Ok(Some(Condition { concept: name.to_string(), layer, threshold, below }))
    }

    /// The condition's verdict on the prompt `ids` (None when there is no condition).
    pub fn check_condition<B: Backend>(
        &self,
        model: &Model<B>,
        ids: &[u32],
    ) -> Result<Option<Check>> {
        let Some(cond) = self.condition()? else { return Ok(None) };
        let concepts = self.concepts()?;
        let c = concepts.iter().find(|c| c.name == cond.concept).ok_or_else(|| {
            anyhow!("--condition: no concept named `{}` (give it with --concept)", cond.concept)
        })?;
        let prepared = plan::prepare(model, c).wait()?;
        Ok(Some(cond.check(model, ids, &prepared.dirs).wait()?))
    }
}

/// The condition's verdict as JSON: {"score", "threshold", "met"} (and "below" when set).
pub fn condition_json(c: &Check, below: bool) -> serde_json::Value {
    // f32 as its shortest decimal (0.9, not 0.8999999761581421).
    let num = |x: f32| x.to_string().parse::<f64>().unwrap_or(x as f64);
    let mut v = json!({ "score": num(c.score), "threshold": num(c.threshold), "met": c.met });
    if below {
        v["below"] = json!(true);
    }
    v
}

#[derive(Args)]
pub struct ConceptArgs {
    #[command(flatten)]
    pub m: crate::ModelArgs,
    /// Concept file: {"name": ..., "pairs": [[positive, negative], ...]}.
    #[arg(long)]
    pub pairs: PathBuf,
    /// mean-diff, pca (centred differences, repeng's pca_diff), pca-repe (pair order
    /// randomised, as RepE), probe, svd or snmf.
    #[arg(long, default_value = "mean-diff")]
    pub method: String,
    /// SNMF: features per layer (at most half the tokens; the report says how many were used).
    #[arg(long, default_value_t = tiller_steer::snmf::DEFAULT_K)]
    pub features: usize,
    /// SNMF: fraction of neurons each feature keeps (winner-take-all).
    #[arg(long, default_value_t = tiller_steer::snmf::DEFAULT_SPARSITY)]
    pub sparsity: f64,
    /// SNMF: most iterations.
    #[arg(long)]
    pub snmf_iters: Option<usize>,
    /// Shuffled-label runs of the null baseline (0: none).
    #[arg(long, default_value_t = 8)]
    pub null_runs: usize,
    /// What the direction promotes (the mean change of next-token log-probabilities when it
    /// is added) at these layers too (4-16 or 3,5,7); the best layer always has it.
    #[arg(long)]
    pub promotes_layers: Option<String>,
    /// Print JSON (the only output format today).
    #[arg(long)]
    pub json: bool,
}

pub fn concept(a: ConceptArgs) -> Result<()> {
    let method: Method = a.method.parse().map_err(|e: String| anyhow!(e))?;
    let c = read_concept(&a.pairs)?;
    let extra = a.promotes_layers.as_deref().map(parse_layers).transpose()?.unwrap_or_default();
    crate::with_model!(&a.m, model => {
        if let Some(&l) = extra.iter().find(|&&l| l >= model.config.n_layer) {
            bail!("--promotes-layers: layer {l} is out of range (0..={})", model.config.n_layer - 1);
        }
        let defaults = SnmfParams::default();
        let opts = report::Options {
            snmf: SnmfParams {
                k: a.features,
                sparsity: a.sparsity,
                max_iter: a.snmf_iters.unwrap_or(defaults.max_iter),
                ..defaults
            },
            null_runs: a.null_runs,
            ..Default::default()
        };
        let (r, prepared) =
            report::analyze_and_prepare(&model, &c, method, &opts, &mut |_, _, _| {}).wait()?;
        let mut v = serde_json::to_value(&r)?;
        if !extra.is_empty() {
            let contexts = report::shift_contexts(&model, &c)?;
            let more = extra
                .iter()
                .map(|&l| report::promotes_at(&model, &prepared, &contexts, None, l, opts.top_k).wait())
                .collect::<Result<Vec<_>, _>>()?;
            v["promotes_more"] = serde_json::to_value(more)?;
        }
        println!("{}", serde_json::to_string(&v)?);
        Ok(())
    })
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
    /// add (strength = coefficient on the mean difference), add-unit, clamp (the projection
    /// value), rotate (degrees), selective-steering (degrees) or affine (LinEAS).
    #[arg(long, default_value = "add")]
    pub op: String,
    /// The layer (or layers: 4-16, 3,5,7) the intervention acts on.
    #[arg(long)]
    pub layer: String,
    /// Where it acts: all (default), prompt or generated.
    #[arg(long, default_value = "all")]
    pub positions: String,
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
    /// Neutral prompts for the side effects (continued by the unsteered model, then KL and
    /// perplexity under steering); repeatable. Default: four built-in prompts.
    #[arg(long)]
    pub neutral: Vec<String>,
    /// Layer at which concept scores are read (default: the first steered layer).
    #[arg(long)]
    pub read_layer: Option<usize>,
    /// Leave out the random-direction control.
    #[arg(long)]
    pub no_control: bool,
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
        "ablate" => OpKind::Ablate,
        "clamp" => OpKind::Clamp,
        "rotate" => OpKind::Rotate,
        "selective-steering" | "selective_steering" => OpKind::SelectiveSteering,
        "affine" => OpKind::Affine,
        other => bail!(
            "--op {other}: expected add, add-unit, ablate, clamp, rotate, selective-steering or affine"
        ),
    };
    let positions = positions(&a.positions)?;
    let layers = parse_layers(&a.layer)?;
    let concepts: Vec<Concept> = a.concepts.iter().map(read_concept).collect::<Result<_>>()?;
    let target = a.steer.clone().unwrap_or_else(|| concepts[0].name.clone());
    if !concepts.iter().any(|c| c.name == target) {
        bail!("--steer {target}: no such concept loaded");
    }
    crate::with_model!(&a.m, model => {
        let read = a.read_layer.unwrap_or(layers[0]);
        if read >= model.config.n_layer {
            bail!(
                "--read-layer {read} is out of range: the model has layers 0..={}",
                model.config.n_layer - 1
            );
        }
        let prepared =
            concepts.iter().map(|c| plan::prepare(&model, c).wait()).collect::<Result<Vec<_>, _>>()?;
        let prompt = model.encode_prompt(&a.prompt, a.chat)?;
        let neutral =
            a.neutral.iter().map(|t| model.encode_prompt(t, false)).collect::<Result<Vec<_>, _>>()?;
        let spec = InterventionSpec {
            concept: target.clone(),
            op,
            layers: layers.clone(),
            strength: 0.0,
            positions,
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
            control: !a.no_control,
        };
        let r = sweep(&model, &prepared, &sw, &mut |_| {}).wait()?;
        println!(
            "{}",
            json!({
                "concept": target, "op": a.op, "layers": layers, "positions": a.positions,
                "read_layer": read, "prompt": a.prompt, "baseline": r.baseline,
                "baseline_text": r.baseline_text, "neutral_prompts": r.neutral_prompts,
                "points": r.points, "control": r.control,
            })
        );
        Ok(())
    })
}

fn positions(s: &str) -> Result<Positions> {
    Ok(match s {
        "all" => Positions::All,
        "prompt" => Positions::Prompt,
        "generated" => Positions::Generated,
        other => bail!("--positions {other}: expected prompt, generated or all"),
    })
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
    let fit = tiller_steer::lineas::fit(&model, &neg, &pos, &layers, &p).wait()?;
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
    use tiller_steer::observable::{cosine, coupling, head_features, observable};
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
    let y = observable(&model, ia, ib).wait()?;
    let heads = head_features(&model, &y).wait()?;
    let mut concepts = Vec::new();
    for p in &a.concepts {
        let c = read_concept(p)?;
        concepts.push((c.name.clone(), plan::prepare(&model, &c).wait()?));
    }
    let couplings: Vec<_> = concepts
        .iter()
        .map(|(name, pr)| {
            let per_layer: Vec<f64> = pr.dirs.iter().map(|d| coupling(d, &y)).collect();
            json!({ "concept": name, "coupling": per_layer })
        })
        .collect();
    // A head of block l reads the residual stream after block l - 1 (the embeddings for l = 0,
    // where no concept direction is measured).
    let heads_json: Vec<_> = heads
        .iter()
        .map(|h| {
            let per: serde_json::Map<String, serde_json::Value> = concepts
                .iter()
                .filter(|_| h.layer > 0)
                .map(|(name, pr)| {
                    let d = &pr.dirs[h.layer - 1];
                    (name.clone(), json!({ "cosine": cosine(d, &h.vector), "coupling": coupling(d, &h.vector) }))
                })
                .collect();
            json!({ "layer": h.layer, "head": h.head, "norm": h.norm, "concepts": per })
        })
        .collect();
    println!(
        "{}",
        json!({ "a": { "id": ia, "token": ta }, "b": { "id": ib, "token": tb }, "direction": y, "couplings": couplings, "heads": heads_json })
    );
    Ok(())
}
