//! The engine's `Backend` on the GPU: weights, activations and the KV cache in GPU buffers, one
//! op per dispatch. A first, correct version (every op its own submission; hooks read back
//! through `with_host`); fusing a token into one command buffer comes next.

use crate::ops::matvec::{matvec, Format};
use crate::ops::{add, attention, rms_norm, rope, swiglu};
use crate::Gpu;
use tiller_engine::backend::{AttnShape, Backend, Precision};
use tiller_engine::{Error, Result};
use tiller_model::gguf::dequantize;
use tiller_model::{GgmlType, TensorInfo};

/// A weight matrix `[rows, cols]` on the GPU, and its GGUF bytes (the embedding reads rows).
pub struct GpuMatrix {
    pub buf: wgpu::Buffer,
    pub rows: usize,
    pub cols: usize,
    pub format: Format,
    host: Vec<u8>,
    dtype: GgmlType,
}

pub struct GpuAct {
    pub buf: wgpu::Buffer,
    pub rows: usize,
    pub cols: usize,
}

pub struct GpuKv {
    k: Option<wgpu::Buffer>,
    v: Option<wgpu::Buffer>,
    cap: usize,
    len: usize,
    width: usize,
}

fn gpu_err(e: crate::Error) -> Error {
    Error::Backend(e.to_string())
}

/// Ops on shapes the model itself built cannot fail; if one does, it is a bug worth a loud
/// message rather than a wrong answer.
fn must<T>(r: crate::Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("GPU {what}: {e}"))
}

impl Gpu {
    fn act(&self, rows: usize, cols: usize) -> GpuAct {
        GpuAct { buf: must(self.zeros("act", rows * cols), "allocation"), rows, cols }
    }
}

impl Backend for Gpu {
    type Matrix = GpuMatrix;
    type Vector = wgpu::Buffer;
    type Act = GpuAct;
    type KvCache = GpuKv;

    fn name(&self) -> String {
        format!("gpu: {}", Gpu::name(self))
    }

    fn matrix(&self, t: &TensorInfo, data: &[u8], precision: Precision) -> Result<GpuMatrix> {
        let (cols, rows) = match t.dims.as_slice() {
            [c] => (*c as usize, 1),
            [c, r] => (*c as usize, *r as usize),
            d => return Err(Error::Unsupported(format!("tensor {} of dims {d:?}", t.name))),
        };
        let (format, bytes) = match (t.dtype, precision) {
            (GgmlType::Q4_1, Precision::Fast) => (Format::Q4_1, data.to_vec()),
            (GgmlType::Q8_0, Precision::Fast) => (Format::Q8_0, data.to_vec()),
            _ => {
                let f = dequantize(t, data)?;
                (Format::F32, f.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        };
        let buf = self.upload(&t.name, &bytes).map_err(gpu_err)?;
        Ok(GpuMatrix { buf, rows, cols, format, host: data.to_vec(), dtype: t.dtype })
    }

    fn vector(&self, v: Vec<f32>) -> Result<wgpu::Buffer> {
        self.upload_f32("vector", &v).map_err(gpu_err)
    }

    fn new_cache(&self, width: usize) -> GpuKv {
        GpuKv { k: None, v: None, cap: 0, len: 0, width }
    }

    fn truncate_cache(&self, c: &mut GpuKv, len: usize) {
        c.len = c.len.min(len);
    }

    fn embed(&self, table: &GpuMatrix, ids: &[u32]) -> Result<GpuAct> {
        let cols = table.cols;
        let (be, bb) = table.dtype.block();
        let row_bytes = cols as u64 / be * bb;
        let mut data = Vec::with_capacity(ids.len() * cols);
        for &id in ids {
            if id as usize >= table.rows {
                return Err(Error::BadToken { id, vocab: table.rows });
            }
            let start = (id as u64 * row_bytes) as usize;
            let info = TensorInfo {
                name: "embedding row".into(),
                dims: vec![cols as u64],
                dtype: table.dtype,
                start: 0,
                n_bytes: row_bytes as usize,
            };
            data.extend(dequantize(&info, &table.host[start..start + row_bytes as usize])?);
        }
        let buf = self.upload_f32("embedded", &data).map_err(gpu_err)?;
        Ok(GpuAct { buf, rows: ids.len(), cols })
    }

    fn rms_norm(&self, x: &GpuAct, w: &wgpu::Buffer, eps: f32) -> GpuAct {
        let y = self.act(x.rows, x.cols);
        must(rms_norm::rms_norm(self, &x.buf, w, &y.buf, x.rows, x.cols, eps), "rms_norm");
        y
    }

    fn matmul(&self, x: &GpuAct, ws: &[&GpuMatrix]) -> Vec<GpuAct> {
        ws.iter()
            .map(|w| {
                let y = self.act(x.rows, w.rows);
                let r = matvec(self, w.format, &w.buf, &x.buf, &y.buf, w.rows, w.cols, x.rows);
                must(r, "matmul");
                y
            })
            .collect()
    }

    fn rope(&self, x: &mut GpuAct, n_heads: usize, head_dim: usize, pos0: usize, theta: f32) {
        must(rope::rope(self, &x.buf, x.rows, n_heads, head_dim, pos0, theta), "rope");
    }

    fn attention(&self, q: &GpuAct, k: &GpuAct, v: &GpuAct, c: &mut GpuKv, s: AttnShape) -> GpuAct {
        let need = s.pos0 + k.rows;
        let w = c.width;
        if need > c.cap || c.k.is_none() {
            // Grow (doubling), keeping what is cached.
            let cap = need.max(c.cap * 2).max(64);
            let (nk, nv) = (
                must(self.zeros("k cache", cap * w), "cache"),
                must(self.zeros("v cache", cap * w), "cache"),
            );
            if let (Some(ok), Some(ov)) = (&c.k, &c.v) {
                let n = (c.len * w * 4) as u64;
                if n > 0 {
                    self.copy(ok, 0, &nk, 0, n);
                    self.copy(ov, 0, &nv, 0, n);
                }
            }
            (c.k, c.v, c.cap) = (Some(nk), Some(nv), cap);
        }
        let (kc, vc) = (c.k.as_ref().expect("allocated"), c.v.as_ref().expect("allocated"));
        let off = (s.pos0 * w * 4) as u64;
        let n = (k.rows * w * 4) as u64;
        self.copy(&k.buf, 0, kc, off, n);
        self.copy(&v.buf, 0, vc, off, n);
        c.len = need;
        let out = self.act(q.rows, s.n_head * s.head_dim);
        let shape = attention::Shape {
            rows: q.rows,
            n_head: s.n_head,
            n_kv: s.n_kv_head,
            head_dim: s.head_dim,
            pos0: s.pos0,
        };
        must(attention::attention(self, &q.buf, kc, vc, &out.buf, shape), "attention");
        out
    }

    fn swiglu(&self, gate: &GpuAct, up: &GpuAct) -> GpuAct {
        let y = self.act(gate.rows, gate.cols);
        must(swiglu::swiglu(self, &gate.buf, &up.buf, &y.buf, gate.rows * gate.cols), "swiglu");
        y
    }

    fn add_assign(&self, x: &mut GpuAct, y: &GpuAct) {
        must(add::add(self, &x.buf, &y.buf, x.rows * x.cols), "add");
    }

    fn last_row(&self, x: &GpuAct) -> GpuAct {
        let y = self.act(1, x.cols);
        let n = (x.cols * 4) as u64;
        self.copy(&x.buf, (x.rows as u64 - 1) * n, &y.buf, 0, n);
        y
    }

    fn rows(&self, x: &GpuAct) -> usize {
        x.rows
    }

    fn to_host(&self, x: &GpuAct) -> Vec<f32> {
        must(self.read_f32(&x.buf, x.rows * x.cols), "read-back")
    }

    fn upload_act(&self, data: Vec<f32>, rows: usize, cols: usize) -> GpuAct {
        GpuAct { buf: must(self.upload_f32("act", &data), "upload"), rows, cols }
    }

    fn with_host(&self, x: &mut GpuAct, f: &mut dyn FnMut(&mut [f32])) {
        let mut h = self.to_host(x);
        f(&mut h);
        self.queue.write_buffer(&x.buf, 0, bytemuck::cast_slice(&h));
    }
}
