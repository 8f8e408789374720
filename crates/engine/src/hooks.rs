//! Hook points: the residual stream at the output of every block ("layer l" = output of
//! block l, 0-based, as HF `hidden_states[l + 1]` and llama.cpp's control vector `direction.l`).
//!
//! A hook sees the rows of one forward call: `resid` is `[rows, width]` row-major and row `i`
//! is absolute position `pos0 + i`. It may read (capture) and write (intervene). The forward
//! pass asks [`Hooks::active`] first, so layers nobody hooks cost nothing.

pub trait Hooks {
    /// Does this hook want layer `layer`'s output?
    fn active(&self, layer: usize) -> bool;
    fn block_output(&mut self, layer: usize, pos0: usize, resid: &mut [f32], width: usize);
    /// Does this hook want block `layer`'s MLP hidden activation? (Default: no.)
    fn mlp_active(&self, _layer: usize) -> bool {
        false
    }
    /// The MLP hidden activation of block `layer` (SwiGLU output, `[rows, d_ff]`), before
    /// the down projection.
    fn mlp_activation(&mut self, _layer: usize, _pos0: usize, _act: &mut [f32], _width: usize) {}
    /// What this hook does at layer `layer`'s output, as data a backend can apply on its own
    /// device without reading the activations back (the GPU backend does). `None`: the hook
    /// needs the host rows ([`Hooks::block_output`] is called). Only asked when `active`.
    fn edits(&self, _layer: usize) -> Option<Vec<Edit>> {
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

/// Where a [`Capture`] reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The residual stream at the block's output (`d_model` wide).
    #[default]
    Residual,
    /// The MLP hidden activation (`d_ff` wide).
    Mlp,
}

/// Records the residual stream (or the MLP activation) at chosen layers, every position of
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
        let layers: Vec<usize> = layers.into_iter().collect();
        let rows = vec![Vec::new(); layers.len()];
        Capture { layers, site: Site::Residual, rows, width: 0 }
    }
    /// Capture the MLP hidden activation instead of the residual stream.
    pub fn mlp(layers: impl IntoIterator<Item = usize>) -> Self {
        Capture { site: Site::Mlp, ..Self::new(layers) }
    }
    fn record(&mut self, layer: usize, rows: &[f32], width: usize) {
        if let Some(i) = self.layers.iter().position(|&l| l == layer) {
            self.width = width;
            self.rows[i].extend_from_slice(rows);
        }
    }
    /// The last captured row at `layer`, if any.
    pub fn last(&self, layer: usize) -> Option<&[f32]> {
        let i = self.layers.iter().position(|&l| l == layer)?;
        let r = &self.rows[i];
        (self.width > 0 && r.len() >= self.width).then(|| &r[r.len() - self.width..])
    }
}

impl Hooks for Capture {
    fn active(&self, layer: usize) -> bool {
        self.site == Site::Residual && self.layers.contains(&layer)
    }
    fn block_output(&mut self, layer: usize, _pos0: usize, resid: &mut [f32], width: usize) {
        self.record(layer, resid, width);
    }
    fn mlp_active(&self, layer: usize) -> bool {
        self.site == Site::Mlp && self.layers.contains(&layer)
    }
    fn mlp_activation(&mut self, layer: usize, _pos0: usize, act: &mut [f32], width: usize) {
        self.record(layer, act, width);
    }
}

/// Two hooks as one: both see every hook point, the first before the second.
impl<A: Hooks, B: Hooks> Hooks for (A, B) {
    fn active(&self, layer: usize) -> bool {
        self.0.active(layer) || self.1.active(layer)
    }
    fn block_output(&mut self, layer: usize, pos0: usize, resid: &mut [f32], width: usize) {
        if self.0.active(layer) {
            self.0.block_output(layer, pos0, resid, width);
        }
        if self.1.active(layer) {
            self.1.block_output(layer, pos0, resid, width);
        }
    }
    fn mlp_active(&self, layer: usize) -> bool {
        self.0.mlp_active(layer) || self.1.mlp_active(layer)
    }
    fn mlp_activation(&mut self, layer: usize, pos0: usize, act: &mut [f32], width: usize) {
        if self.0.mlp_active(layer) {
            self.0.mlp_activation(layer, pos0, act, width);
        }
        if self.1.mlp_active(layer) {
            self.1.mlp_activation(layer, pos0, act, width);
        }
    }
    fn edits(&self, layer: usize) -> Option<Vec<Edit>> {
        match (self.0.active(layer), self.1.active(layer)) {
            (true, true) => Some([self.0.edits(layer)?, self.1.edits(layer)?].concat()),
            (true, false) => self.0.edits(layer),
            (false, true) => self.1.edits(layer),
            (false, false) => Some(Vec::new()),
        }
    }
}
