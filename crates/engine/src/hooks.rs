//! Hook points: the residual stream at the output of every block ("layer l" = output of
//! block l, 0-based, as HF `hidden_states[l + 1]` and llama.cpp's control vector `direction.l`).
//!
//! Besides the block output, a hook may ask for the outputs of the block's two input norms
//! (what attention and the MLP read; Selective Steering rotates these) and the MLP hidden
//! activation ([`Site`]). A hook sees the rows of one forward call, row `i` at absolute
//! position `pos0 + i`; it may read (capture) and write (intervene). The forward pass asks
//! [`Hooks::wants`] first, so sites nobody hooks cost nothing.

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
}

impl Site {
    pub const ALL: [Site; 4] = [Site::Residual, Site::AttnIn, Site::MlpIn, Site::Mlp];
}

/// Hooks see the rows of one forward call at the sites they ask for.
pub trait Hooks {
    /// Does this hook want `site` of block `layer`? Asked first: sites nobody wants cost
    /// nothing (and the fused kernels stay in use).
    fn wants(&self, site: Site, layer: usize) -> bool;
    /// The rows at `site` of block `layer` (`[rows, width]` row-major, row `i` is absolute
    /// position `pos0 + i`); the hook may read (capture) and write (intervene). Only called
    /// when `wants` said yes and [`Hooks::edits`] gave `None` or the backend cannot apply edits.
    fn at(&mut self, site: Site, layer: usize, pos0: usize, rows: &mut [f32], width: usize);
    /// What this hook does there, as data a backend can apply on its own device without
    /// reading the activations back (the GPU backend does). `None`: the hook needs the host
    /// rows ([`Hooks::at`] is called).
    fn edits(&self, _site: Site, _layer: usize) -> Option<Vec<Edit>> {
        None
    }
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
    /// Apply to one row on the host (the reference the device kernels are tested against).
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
    fn at(&mut self, site: Site, layer: usize, _pos0: usize, rows: &mut [f32], width: usize) {
        if site != self.site {
            return;
        }
        if let Some(i) = self.layers.iter().position(|&l| l == layer) {
            self.width = width;
            self.rows[i].extend_from_slice(rows);
        }
    }
}

/// Two hooks as one: both see every site, the first before the second.
impl<A: Hooks, B: Hooks> Hooks for (A, B) {
    fn wants(&self, site: Site, layer: usize) -> bool {
        self.0.wants(site, layer) || self.1.wants(site, layer)
    }
    fn at(&mut self, site: Site, layer: usize, pos0: usize, rows: &mut [f32], width: usize) {
        if self.0.wants(site, layer) {
            self.0.at(site, layer, pos0, rows, width);
        }
        if self.1.wants(site, layer) {
            self.1.at(site, layer, pos0, rows, width);
        }
    }
    fn edits(&self, site: Site, layer: usize) -> Option<Vec<Edit>> {
        match (self.0.wants(site, layer), self.1.wants(site, layer)) {
            (true, true) => Some([self.0.edits(site, layer)?, self.1.edits(site, layer)?].concat()),
            (true, false) => self.0.edits(site, layer),
            (false, true) => self.1.edits(site, layer),
            (false, false) => Some(Vec::new()),
        }
    }
}

/// Several hooks as one, in order (e.g. captures of several sites in one pass).
impl<H: Hooks> Hooks for Vec<H> {
    fn wants(&self, site: Site, layer: usize) -> bool {
        self.iter().any(|h| h.wants(site, layer))
    }
    fn at(&mut self, site: Site, layer: usize, pos0: usize, rows: &mut [f32], width: usize) {
        for h in self.iter_mut().filter(|h| h.wants(site, layer)) {
            h.at(site, layer, pos0, rows, width);
        }
    }
    fn edits(&self, site: Site, layer: usize) -> Option<Vec<Edit>> {
        let mut out = Vec::new();
        for h in self.iter().filter(|h| h.wants(site, layer)) {
            out.extend(h.edits(site, layer)?);
        }
        Some(out)
    }
}

/// Run the hook at `site` of block `layer` on `x` when it wants it: on the device when it
/// describes itself as edits and the backend applies them, else on the host rows.
pub fn run<B: crate::Backend + ?Sized>(
    be: &B,
    hooks: Option<&mut (dyn Hooks + '_)>,
    site: Site,
    layer: usize,
    pos0: usize,
    x: &mut B::Act,
    width: usize,
) {
    let Some(h) = hooks else { return };
    if !h.wants(site, layer) {
        return;
    }
    let on_device = h.edits(site, layer).is_some_and(|e| be.edit(x, &e, pos0));
    if !on_device {
        be.with_host(x, &mut |r| h.at(site, layer, pos0, r, width));
    }
}
