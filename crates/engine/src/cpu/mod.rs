//! The CPU backend. Activations are plain row-major `Vec<f32>`; weights are [`CpuMatrix`].

pub mod attention;
pub mod kernels;
pub mod layout;
pub mod matmul;
pub mod par;
pub mod quant;
pub mod vecops;
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub mod wasm_pool;

use crate::backend::{AttnShape, Backend, Precision};
use crate::hooks::Edit;
use crate::{Error, Result};
use kernels::Kernels;
pub use matmul::CpuMatrix;
use tiller_model::{RopeStyle, TensorInfo};

/// Row-major activations: `rows` x `cols`.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuAct {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

/// Keys and values of one layer, one row (`kv_width` floats) per position.
pub struct CpuKv {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub width: usize,
}

/// The CPU backend. Natively it splits each matmul over rayon's pool; call the engine from
/// inside that pool (`rayon::ThreadPool::install`, as the CLI does) so that the ~150 parallel
/// regions per token are work-stealing joins rather than wake-ups of a blocked caller thread.
pub struct Cpu {
    kernels: Kernels,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu { kernels: Kernels::detect() }
    }
}

/// GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

impl Backend for Cpu {
    type Matrix = CpuMatrix;
    type Vector = Vec<f32>;
    type Act = CpuAct;
    type KvCache = CpuKv;

    fn name(&self) -> String {
        let n = par::threads();
        format!("cpu ({}, {n} thread{})", self.kernels.name, if n == 1 { "" } else { "s" })
    }

    fn matrix(&self, t: &TensorInfo, data: &[u8], precision: Precision) -> Result<CpuMatrix> {
        CpuMatrix::from_gguf(t, data, precision)
    }

    fn vector(&self, v: Vec<f32>) -> Result<Vec<f32>> {
        Ok(v)
    }

    fn new_cache(&self, width: usize) -> CpuKv {
        CpuKv { k: Vec::new(), v: Vec::new(), width }
    }

    fn truncate_cache(&self, c: &mut CpuKv, len: usize) {
        c.k.truncate(len * c.width);
        c.v.truncate(len * c.width);
    }

    fn embed(&self, table: &CpuMatrix, ids: &[u32]) -> Result<CpuAct> {
        let cols = table.cols;
        let mut data = vec![0f32; ids.len() * cols];
        for (i, &id) in ids.iter().enumerate() {
            if id as usize >= table.rows {
                return Err(Error::BadToken { id, vocab: table.rows });
            }
            table.dequant_rows(id as usize, 1, &mut data[i * cols..(i + 1) * cols]);
        }
        Ok(CpuAct { data, rows: ids.len(), cols })
    }

    fn rms_norm(&self, x: &CpuAct, w: &Vec<f32>, eps: f32) -> Result<CpuAct> {
        let mut out = vec![0f32; x.data.len()];
        for (o, r) in out.chunks_exact_mut(x.cols).zip(x.data.chunks_exact(x.cols)) {
            let ms = r.iter().map(|v| v * v).sum::<f32>() / x.cols as f32;
            let s = 1.0 / (ms + eps).sqrt();
            for ((o, v), g) in o.iter_mut().zip(r).zip(w) {
                *o = v * s * g;
            }
        }
        Ok(CpuAct { data: out, rows: x.rows, cols: x.cols })
    }

    fn matmul(&self, x: &CpuAct, ws: &[&CpuMatrix]) -> Result<Vec<CpuAct>> {
        Ok(matmul::matmul(&self.kernels, &x.data, x.rows, ws)
            .into_iter()
            .zip(ws)
            .map(|(data, w)| CpuAct { data, rows: x.rows, cols: w.rows })
            .collect())
    }

    fn rope(
        &self,
        x: &mut CpuAct,
        n_heads: usize,
        head_dim: usize,
        pos0: usize,
        theta: f32,
        style: RopeStyle,
    ) -> Result<()> {
        if style == RopeStyle::None {
            return Ok(());
        }
        let half = head_dim / 2;
        let inv: Vec<f32> =
            (0..half).map(|i| theta.powf(-((2 * i) as f32) / head_dim as f32)).collect();
        for (r, row) in x.data.chunks_exact_mut(x.cols).enumerate() {
            let p = (pos0 + r) as f32;
            let cs: Vec<(f32, f32)> =
                inv.iter().map(|f| (p * f).sin_cos()).map(|(s, c)| (c, s)).collect();
            for h in 0..n_heads {
                let v = &mut row[h * head_dim..(h + 1) * head_dim];
                for (i, &(c, s)) in cs.iter().enumerate() {
                    // The pair dimension i turns with: i + 1 (adjacent) or i + half (halves).
                    let (ia, ib) = match style {
                        RopeStyle::Normal => (2 * i, 2 * i + 1),
                        RopeStyle::Neox | RopeStyle::None => (i, i + half),
                    };
                    let (a, b) = (v[ia], v[ib]);
                    v[ia] = a * c - b * s;
                    v[ib] = a * s + b * c;
                }
            }
        }
        Ok(())
    }

    fn rms_norm_groups(&self, x: &CpuAct, w: &Vec<f32>, group: usize, eps: f32) -> Result<CpuAct> {
        let g = CpuAct { data: x.data.clone(), rows: x.data.len() / group.max(1), cols: group };
        let mut out = self.rms_norm(&g, w, eps)?;
        (out.rows, out.cols) = (x.rows, x.cols);
        Ok(out)
    }

    fn add_bias(&self, x: &mut CpuAct, b: &Vec<f32>) -> Result<()> {
        for row in x.data.chunks_exact_mut(x.cols) {
            row.iter_mut().zip(b).for_each(|(a, c)| *a += c);
        }
        Ok(())
    }

    fn geglu(&self, gate: &CpuAct, up: &CpuAct) -> Result<CpuAct> {
        let data = gate.data.iter().zip(&up.data).map(|(g, u)| gelu_tanh(*g) * u).collect();
        Ok(CpuAct { data, rows: gate.rows, cols: gate.cols })
    }

    fn gelu(&self, x: &CpuAct) -> Result<CpuAct> {
        let data = x.data.iter().map(|v| gelu_tanh(*v)).collect();
        Ok(CpuAct { data, rows: x.rows, cols: x.cols })
    }

    fn layer_norm(&self, x: &CpuAct, w: &Vec<f32>, b: &Vec<f32>, eps: f32) -> Result<CpuAct> {
        let mut out = vec![0f32; x.data.len()];
        let n = x.cols as f32;
        for (o, r) in out.chunks_exact_mut(x.cols).zip(x.data.chunks_exact(x.cols)) {
            let mean = r.iter().sum::<f32>() / n;
            let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let s = 1.0 / (var + eps).sqrt();
            for (((o, v), g), c) in o.iter_mut().zip(r).zip(w).zip(b) {
                *o = (v - mean) * s * g + c;
            }
        }
        Ok(CpuAct { data: out, rows: x.rows, cols: x.cols })
    }

    fn softcap(&self, x: &mut CpuAct, cap: f32) -> Result<()> {
        x.data.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        Ok(())
    }

    fn scale(&self, x: &mut CpuAct, s: f32) -> Result<()> {
        x.data.iter_mut().for_each(|v| *v *= s);
        Ok(())
    }

    fn attention(
        &self,
        q: &CpuAct,
        k: &CpuAct,
        v: &CpuAct,
        cache: &mut CpuKv,
        s: AttnShape,
    ) -> Result<CpuAct> {
        cache.k.extend_from_slice(&k.data);
        cache.v.extend_from_slice(&v.data);
        let data = attention::causal(&self.kernels, &q.data, q.rows, cache, s);
        Ok(CpuAct { data, rows: q.rows, cols: q.cols })
    }

    fn swiglu(&self, gate: &CpuAct, up: &CpuAct) -> Result<CpuAct> {
        let data =
            gate.data.iter().zip(&up.data).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
        Ok(CpuAct { data, rows: gate.rows, cols: gate.cols })
    }

    fn add_assign(&self, x: &mut CpuAct, y: &CpuAct) -> Result<()> {
        for (a, b) in x.data.iter_mut().zip(&y.data) {
            *a += b;
        }
        Ok(())
    }

    fn last_row(&self, x: &CpuAct) -> Result<CpuAct> {
        self.copy_rows(x, x.rows.saturating_sub(1), 1)
    }

    fn rows(&self, x: &CpuAct) -> usize {
        x.rows
    }

    fn upload_act(&self, data: Vec<f32>, rows: usize, cols: usize) -> Result<CpuAct> {
        if data.len() != rows * cols {
            return Err(Error::Backend(format!("{} values are not {rows} x {cols}", data.len())));
        }
        Ok(CpuAct { data, rows, cols })
    }

    fn copy_rows(&self, x: &CpuAct, first: usize, n: usize) -> Result<CpuAct> {
        let rows = x.data.get(first * x.cols..(first + n) * x.cols);
        let rows = rows
            .ok_or_else(|| Error::Backend(format!("rows {first}..{} of {}", first + n, x.rows)))?;
        Ok(CpuAct { data: rows.to_vec(), rows: n, cols: x.cols })
    }

    fn concat_rows(&self, parts: &[&CpuAct]) -> Result<CpuAct> {
        let cols = parts.first().map_or(0, |p| p.cols);
        if parts.iter().any(|p| p.cols != cols) {
            return Err(Error::Backend("concatenated rows of different widths".into()));
        }
        let data: Vec<f32> = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        Ok(CpuAct { rows: parts.iter().map(|p| p.rows).sum(), cols, data })
    }

    fn packs_sequences(&self) -> bool {
        true
    }

    fn edit(&self, x: &mut CpuAct, edits: &[Edit], pos0: usize) -> Result<()> {
        for (i, row) in x.data.chunks_exact_mut(x.cols).enumerate() {
            let p = pos0 + i;
            for e in edits.iter().filter(|e| (e.start..e.end).contains(&p)) {
                e.apply(row);
            }
        }
        Ok(())
    }

    async fn read(&self, xs: &[&CpuAct]) -> Result<Vec<Vec<f32>>> {
        Ok(xs.iter().map(|x| x.data.clone()).collect())
    }
}
