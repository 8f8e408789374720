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
}

/// Records the residual stream at chosen layers, every position of every call.
#[derive(Debug, Default, Clone)]
pub struct Capture {
    layers: Vec<usize>,
    /// Per captured layer, the rows seen so far (row-major, `width` each).
    pub rows: Vec<Vec<f32>>,
    pub width: usize,
}

impl Capture {
    pub fn new(layers: impl IntoIterator<Item = usize>) -> Self {
        let layers: Vec<usize> = layers.into_iter().collect();
        let rows = vec![Vec::new(); layers.len()];
        Capture { layers, rows, width: 0 }
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
        self.layers.contains(&layer)
    }
    fn block_output(&mut self, layer: usize, _pos0: usize, resid: &mut [f32], width: usize) {
        if let Some(i) = self.layers.iter().position(|&l| l == layer) {
            self.width = width;
            self.rows[i].extend_from_slice(resid);
        }
    }
}
