//! Hook points: the residual stream at the output of every block ("layer l" = output of
//! block l, 0-based, as HF `hidden_states[l + 1]` and llama.cpp's control vector `direction.l`).
//!
//! Besides the block output, a hook may ask for the outputs of the block's two input norms
//! (what attention and the MLP read; Selective Steering rotates these) and the MLP hidden
//! activation ([`Site`]). A hook sees the rows of one forward call, row `i` at absolute
//! position `pos0 + i`: it may write them as [`Edit`]s (intervene) and keep copies to read
//! after the pass (capture). The forward pass asks [`Hooks::wants`] first, so sites nobody
//! hooks cost nothing.

/// Where in a block a hook reads or writes. "Layer l" means block l for every site.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// The residual stream at the block's output (`d_model` wide).
    #[default]
    Residual,
    /// The output of the block's attention-input norm: what attention reads (`d_model` wide;
    /// Llama's `input_layernorm`).
    AttnIn,
    /// The output of the block's MLP-input norm: what the MLP reads (`d_model` wide; Llama's
    /// `post_attention_layernorm`).
    MlpIn,
    /// The MLP hidden activation (SwiGLU output, `d_ff` wide), before the down projection.
    Mlp,
    /// Attention's queries as they meet the keys: after biases, q-norm and RoPE
    /// (`n_head * head_dim` wide, head by head).
    Query,
    /// Attention's keys as they enter the cache: after biases, k-norm and RoPE
    /// (`n_kv_head * head_dim` wide).
    Key,
}

impl Site {
    pub const ALL: [Site; 6] =
        [Site::Residual, Site::AttnIn, Site::MlpIn, Site::Mlp, Site::Query, Site::Key];
}

/// Hooks see the rows of one forward call at the sites they ask for: they edit them (as
/// [`Edit`]s, data any backend applies where the activations live) and keep copies of them to
/// read after the pass ([`Keep`], delivered to [`Hooks::take`]). Nothing in a pass waits for a
/// read-back, so the same hooks run on the CPU and on WebGPU.
pub trait Hooks {
    /// Does this hook want `site` of block `layer`? Asked first: sites nobody wants cost
    /// nothing (and the fused kernels stay in use).
    fn wants(&self, site: Site, layer: usize) -> bool;
    /// The edits to apply there, in order.
    fn edits(&self, _site: Site, _layer: usize) -> Vec<Edit> {
        Vec::new()
    }
    /// The copies to keep there (read back after the pass and handed to [`Hooks::take`]).
    fn keeps(&self, _site: Site, _layer: usize) -> Vec<Keep> {
        Vec::new()
    }
    /// Rows kept by the [`Keep`] tagged `tag` at `site` of block `layer`, read back after the
    /// pass (`[rows, width]` row-major, row `i` at absolute position `pos0 + i`).
    fn take(
        &mut self,
        _tag: u32,
        _site: Site,
        _layer: usize,
        _pos0: usize,
        _rows: &[f32],
        _width: usize,
    ) {
    }
}

/// A copy a hook keeps at a site: which rows, whether before or after the edits there, and a
/// tag the hook gets back with the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub rows: Rows,
    /// Copy the rows before the edits at this site (what an intervention reads), not after.
    pub before_edits: bool,
    pub tag: u32,
}

/// Which rows of a forward call a [`Keep`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    All,
    Last,
}

/// A residual-stream edit as data: for every row whose absolute position is in
/// `start..end`, with `c_j = h . dirs[j]`,
///
/// `h' = scale * h + bias + sum_j dirs[j] (sum_k m[j][k] c_k + k[j])`
///
/// (`scale` and `bias` per neuron, absent = 1 and 0; at most two directions). Add, ablate,
/// clamp, rotate and the LinEAS affine map are all of this form (`tiller_steer::intervene`).
/// Vectors are shared (`Arc`) so a backend can keep its upload of one edit across tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub scale: Option<std::sync::Arc<[f32]>>,
    pub bias: Option<std::sync::Arc<[f32]>>,
    pub dirs: Vec<std::sync::Arc<[f32]>>,
    pub m: [[f32; 2]; 2],
    pub k: [f32; 2],
    pub start: usize,
    pub end: usize,
}

impl Edit {
    /// `h' = scale * h` per neuron at every position.
    pub fn scaled(scale: std::sync::Arc<[f32]>) -> Self {
        Edit {
            scale: Some(scale),
            bias: None,
            dirs: Vec::new(),
            m: [[0.0; 2]; 2],
            k: [0.0; 2],
            start: 0,
            end: usize::MAX,
        }
    }

    /// Apply to one row on the host (the CPU backend's edit, and the reference the device
    /// kernels are tested against).
    pub fn apply(&self, h: &mut [f32]) {
        let c: Vec<f64> = self
            .dirs
            .iter()
            .map(|u| u.iter().zip(h.iter()).map(|(a, b)| *a as f64 * *b as f64).sum())
            .collect();
        let coef: Vec<f64> = (0..self.dirs.len())
            .map(|j| {
                (0..self.dirs.len()).map(|k| self.m[j][k] as f64 * c[k]).sum::<f64>()
                    + self.k[j] as f64
            })
            .collect();
        for (i, a) in h.iter_mut().enumerate() {
            let mut v = *a as f64 * self.scale.as_ref().map_or(1.0, |s| s[i] as f64);
            v += self.bias.as_ref().map_or(0.0, |b| b[i] as f64);
            for (u, cj) in self.dirs.iter().zip(&coef) {
                v += u[i] as f64 * cj;
            }
            *a = v as f32;
        }
    }
}

/// Records one site (by default the residual stream) at chosen layers, every position of
/// every call.
#[derive(Debug, Default, Clone)]
pub struct Capture {
    layers: Vec<usize>,
    site: Site,
    /// Per captured layer, the rows seen so far (row-major, `width` each).
    pub rows: Vec<Vec<f32>>,
    pub width: usize,
}

impl Capture {
    pub fn new(layers: impl IntoIterator<Item = usize>) -> Self {
        Self::at(Site::Residual, layers)
    }
    /// Capture the MLP hidden activation instead of the residual stream.
    pub fn mlp(layers: impl IntoIterator<Item = usize>) -> Self {
        Self::at(Site::Mlp, layers)
    }
    /// Capture `site` at `layers`.
    pub fn at(site: Site, layers: impl IntoIterator<Item = usize>) -> Self {
        let layers: Vec<usize> = layers.into_iter().collect();
        let rows = vec![Vec::new(); layers.len()];
        Capture { layers, site, rows, width: 0 }
    }
    /// The last captured row at `layer`, if any.
    pub fn last(&self, layer: usize) -> Option<&[f32]> {
        let i = self.layers.iter().position(|&l| l == layer)?;
        let r = &self.rows[i];
        (self.width > 0 && r.len() >= self.width).then(|| &r[r.len() - self.width..])
    }
}

impl Hooks for Capture {
    fn wants(&self, site: Site, layer: usize) -> bool {
        self.site == site && self.layers.contains(&layer)
    }
    fn keeps(&self, _site: Site, _layer: usize) -> Vec<Keep> {
        vec![Keep { rows: Rows::All, before_edits: false, tag: 0 }]
    }
    fn take(&mut self, _: u32, _: Site, layer: usize, _: usize, rows: &[f32], width: usize) {
        self.width = width;
        if let Some(i) = self.layers.iter().position(|&l| l == layer) {
            self.rows[i].extend_from_slice(rows);
        }
    }
}

/// Two hooks as one: both see every site, the first's edits before the second's.
impl<A: Hooks, B: Hooks> Hooks for (A, B) {
    fn wants(&self, site: Site, layer: usize) -> bool {
        self.0.wants(site, layer) || self.1.wants(site, layer)
    }
    fn edits(&self, site: Site, layer: usize) -> Vec<Edit> {
        let mut e = Vec::new();
        if self.0.wants(site, layer) {
            e.extend(self.0.edits(site, layer));
        }
        if self.1.wants(site, layer) {
            e.extend(self.1.edits(site, layer));
        }
        e
    }
    fn keeps(&self, site: Site, layer: usize) -> Vec<Keep> {
        let tagged = |h: &dyn Hooks, i: u32| -> Vec<Keep> {
            if !h.wants(site, layer) {
                return Vec::new();
            }
            h.keeps(site, layer).into_iter().map(|k| Keep { tag: k.tag * 2 + i, ..k }).collect()
        };
        [tagged(&self.0, 0), tagged(&self.1, 1)].concat()
    }
    fn take(
        &mut self,
        tag: u32,
        site: Site,
        layer: usize,
        pos0: usize,
        rows: &[f32],
        width: usize,
    ) {
        match tag % 2 {
            0 => self.0.take(tag / 2, site, layer, pos0, rows, width),
            _ => self.1.take(tag / 2, site, layer, pos0, rows, width),
        }
    }
}

/// Several hooks as one, in order (e.g. captures of several sites in one pass).
impl<H: Hooks> Hooks for Vec<H> {
    fn wants(&self, site: Site, layer: usize) -> bool {
        self.iter().any(|h| h.wants(site, layer))
    }
    fn edits(&self, site: Site, layer: usize) -> Vec<Edit> {
        self.iter().filter(|h| h.wants(site, layer)).flat_map(|h| h.edits(site, layer)).collect()
    }
    fn keeps(&self, site: Site, layer: usize) -> Vec<Keep> {
        let n = self.len() as u32;
        let mut out = Vec::new();
        for (i, h) in self.iter().enumerate().filter(|(_, h)| h.wants(site, layer)) {
            out.extend(
                h.keeps(site, layer).into_iter().map(|k| Keep { tag: k.tag * n + i as u32, ..k }),
            );
        }
        out
    }
    fn take(
        &mut self,
        tag: u32,
        site: Site,
        layer: usize,
        pos0: usize,
        rows: &[f32],
        width: usize,
    ) {
        let n = self.len().max(1) as u32;
        if let Some(h) = self.get_mut((tag % n) as usize) {
            h.take(tag / n, site, layer, pos0, rows, width);
        }
    }
}

/// A copy kept during a pass, waiting to be read: whose, where, and the rows.
pub struct Kept<A> {
    pub tag: u32,
    pub site: Site,
    pub layer: usize,
    /// Absolute position of the first kept row.
    pub pos0: usize,
    pub width: usize,
    pub act: A,
}

/// At `site` of block `layer`, when the hook wants it: keep what it keeps before the edits,
/// apply its edits to `x` (rows at positions `pos0..`), keep what it keeps after.
#[allow(clippy::too_many_arguments)]
pub fn run<B: crate::Backend + ?Sized>(
    be: &B,
    hooks: Option<&(dyn Hooks + '_)>,
    kept: &mut Vec<Kept<B::Act>>,
    site: Site,
    layer: usize,
    pos0: usize,
    x: &mut B::Act,
    width: usize,
) -> crate::Result<()> {
    let Some(h) = hooks else { return Ok(()) };
    if !h.wants(site, layer) {
        return Ok(());
    }
    let keeps = h.keeps(site, layer);
    let mut keep = |k: &Keep, x: &B::Act| -> crate::Result<()> {
        let n = be.rows(x);
        let first = if k.rows == Rows::Last { n.saturating_sub(1) } else { 0 };
        let act = be.copy_rows(x, first, n - first)?;
        kept.push(Kept { tag: k.tag, site, layer, pos0: pos0 + first, width, act });
        Ok(())
    };
    for k in keeps.iter().filter(|k| k.before_edits) {
        keep(k, x)?;
    }
    let edits = h.edits(site, layer);
    if !edits.is_empty() {
        be.edit(x, &edits, pos0)?;
    }
    for k in keeps.iter().filter(|k| !k.before_edits) {
        keep(k, x)?;
    }
    Ok(())
}
