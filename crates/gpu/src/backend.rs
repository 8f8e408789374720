//! The engine's `Backend` on the GPU: weights, activations and the KV cache in GPU buffers.
//! A forward pass is recorded into one command buffer and submitted when something is read
//! back (the logits, or with greedy decoding one token id from an argmax on the GPU).
//! Activations come from a pool of buffers, bind groups and parameters are cached: a warm
//! decode step creates no buffers. Steering runs on the GPU as [`Edit`]s; captures are copies
//! made during the pass and read back with the logits in one mapping. Every op returns
//! `Result`: the device's own errors (kept by [`Gpu`]) fail the next read-back.

use crate::ops::matvec::{code_words, matvec, Format, Out};
use crate::ops::{add, argmax, attention, edit, layer_norm, mlp, qkv, rms_norm, rope, swiglu};
use crate::Gpu;
use tiller_engine::backend::{mlp_in_unfused, AttnShape, Backend, Precision};
use tiller_engine::{Edit, Error, Result};
use tiller_model::gguf::dequantize;
use tiller_model::{Activation, RopeStyle};
use tiller_model::{GgmlType, TensorInfo};

/// A weight matrix `[rows, cols]` on the GPU. The token embedding also keeps its GGUF bytes
/// on the host: embedding a prompt reads a few rows there.
pub struct GpuMatrix {
    /// The weights (the first part's when the matrix is held in parts).
    pub buf: wgpu::Buffer,
    /// A matrix larger than one storage binding is held as row ranges `(first row, rows,
    /// buffer)`, multiplied part by part; empty for a matrix in one buffer.
    pub parts: Vec<(usize, usize, wgpu::Buffer)>,
    pub rows: usize,
    pub cols: usize,
    pub format: Format,
    host: Option<Vec<u8>>,
    dtype: GgmlType,
}

/// Activations: `rows` x `cols` f32 in a pooled buffer, handed back when dropped.
pub struct GpuAct {
    pub buf: wgpu::Buffer,
    pub rows: usize,
    pub cols: usize,
    pool: crate::ops::Pool,
}

impl Drop for GpuAct {
    fn drop(&mut self) {
        self.pool.put(self.buf.clone());
    }
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

impl Gpu {
    fn act(&self, rows: usize, cols: usize) -> Result<GpuAct> {
        let buf = self.scratch(rows * cols).map_err(gpu_err)?;
        Ok(GpuAct { buf, rows, cols, pool: self.pool() })
    }

    /// The last row's argmax, recorded (read it with `read_u32`, blocking or not).
    pub fn argmax_buffer(&self, logits: &GpuAct) -> crate::Result<wgpu::Buffer> {
        let out = self.scratch(1)?;
        let n = logits.cols;
        let last = GpuAct { buf: self.scratch(n)?, rows: 1, cols: n, pool: self.pool() };
        let bytes = (n * 4) as u64;
        self.copy(&logits.buf, (logits.rows as u64 - 1) * bytes, &last.buf, 0, bytes);
        argmax::argmax(self, &last.buf, &out, n)?;
        Ok(out)
    }

    /// The next token id from logits on the device, read back without blocking (the page).
    pub async fn argmax_async(&self, logits: &GpuAct) -> crate::Result<u32> {
        let out = self.argmax_buffer(logits)?;
        let id = self.read_u32_async(&out, 1).await?[0];
        self.release(out);
        Ok(id)
    }
}

/// Decode (one row) with Q4_1 matrices over an input the fused kernels can normalise in
/// workgroup memory: the norm and the products go in one dispatch.
fn fusable(x: &GpuAct, ws: &[&GpuMatrix]) -> bool {
    x.rows == 1
        && x.cols <= mlp::MAX_COLS
        && ws.iter().all(|w| w.format == Format::Q4_1 && w.cols == x.cols && w.parts.is_empty())
}

impl Backend for Gpu {
    type Matrix = GpuMatrix;
    type Vector = wgpu::Buffer;
    type Act = GpuAct;
    type KvCache = GpuKv;

    fn name(&self) -> String {
        match self.info.backend {
            wgpu::Backend::BrowserWebGpu => format!("webgpu: {}", Gpu::name(self)),
            _ => format!("gpu: {}", Gpu::name(self)),
        }
    }

    fn matrix(&self, t: &TensorInfo, data: &[u8], precision: Precision) -> Result<GpuMatrix> {
        let (cols, rows) = match t.dims.as_slice() {
            [c] => (*c as usize, 1),
            [c, r] => (*c as usize, *r as usize),
            d => return Err(Error::Unsupported(format!("tensor {} of dims {d:?}", t.name))),
        };
        let codes = match precision {
            Precision::Fast => code_words(t, data).map_err(gpu_err)?,
            Precision::F32 => None,
        };
        let (format, bytes) = match (t.dtype, precision) {
            (GgmlType::Q4_1 | GgmlType::Q8_0, Precision::Fast) => {
                (format_of(t.dtype), data.to_vec())
            }
            // Q4_0, Q4_K, Q5_x and Q6_K: their codes and f32 scales, exactly (matvec_codes.wgsl).
            (_, Precision::Fast) if codes.is_some() => codes.expect("checked"),
            // Q2_K, Q3_K and the float types: re-quantized to Q8_0.
            (_, Precision::Fast) if cols.is_multiple_of(32) => (Format::Q8_0, requantize(t, data)?),
            _ => {
                let f = dequantize(t, data)?;
                (Format::F32, f.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        };
        // In parts of whole rows when one binding cannot hold it (Gemma's 262k-token table).
        let row_bytes = bytes.len() / rows.max(1);
        let max = self.limits.max_storage_buffer_binding_size as usize;
        let per_part = (max / row_bytes.max(1)).max(1);
        let mut parts = Vec::new();
        if bytes.len() > max {
            let mut r0 = 0;
            while r0 < rows {
                let n = per_part.min(rows - r0);
                let b = &bytes[r0 * row_bytes..(r0 + n) * row_bytes];
                let label = format!("{}[{r0}..{}]", t.name, r0 + n);
                parts.push((r0, n, self.upload(&label, b).map_err(gpu_err)?));
                r0 += n;
            }
        }
        let buf = match parts.first() {
            Some(p) => p.2.clone(),
            None => self.upload(&t.name, &bytes).map_err(gpu_err)?,
        };
        // Tables read by row (`embed`) keep their bytes on the host too.
        let table = t.name == "token_embd.weight" || t.name == "position_embd.weight";
        let host = table.then(|| data.to_vec());
        Ok(GpuMatrix { buf, parts, rows, cols, format, host, dtype: t.dtype })
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
        let Some(host) = &table.host else {
            return Err(Error::Unsupported(
                "embedding through a matrix that is not token_embd".into(),
            ));
        };
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
            data.extend(dequantize(&info, &host[start..start + row_bytes as usize])?);
        }
        let x = self.act(ids.len(), cols)?;
        self.write(&x.buf, bytemuck::cast_slice(&data));
        Ok(x)
    }

    fn rms_norm(&self, x: &GpuAct, w: &wgpu::Buffer, eps: f32) -> Result<GpuAct> {
        let y = self.act(x.rows, x.cols)?;
        rms_norm::rms_norm(self, &x.buf, w, &y.buf, x.rows, x.cols, eps).map_err(gpu_err)?;
        Ok(y)
    }

    fn matmul(&self, x: &GpuAct, ws: &[&GpuMatrix]) -> Result<Vec<GpuAct>> {
        ws.iter()
            .map(|w| {
                let y = self.act(x.rows, w.rows)?;
                if w.parts.is_empty() {
                    let (f, n) = (w.format, x.rows);
                    let r = matvec(self, f, &w.buf, &x.buf, &y.buf, w.rows, w.cols, n, Out::Set);
                    r.map_err(gpu_err)?;
                    return Ok(y);
                }
                // Part by part, each part's rows copied into place in every output row.
                for (r0, n, buf) in &w.parts {
                    let part = self.act(x.rows, *n)?;
                    let r = matvec(
                        self,
                        w.format,
                        buf,
                        &x.buf,
                        &part.buf,
                        *n,
                        w.cols,
                        x.rows,
                        Out::Set,
                    );
                    r.map_err(gpu_err)?;
                    for t in 0..x.rows {
                        let (from, to) = ((t * n * 4) as u64, ((t * w.rows + r0) * 4) as u64);
                        self.copy(&part.buf, from, &y.buf, to, (n * 4) as u64);
                    }
                }
                Ok(y)
            })
            .collect()
    }

    fn rope(
        &self,
        x: &mut GpuAct,
        n_heads: usize,
        head_dim: usize,
        pos0: usize,
        theta: f32,
        style: RopeStyle,
    ) -> Result<()> {
        rope::rope(self, &x.buf, x.rows, n_heads, head_dim, pos0, theta, style).map_err(gpu_err)
    }

    fn rms_norm_groups(
        &self,
        x: &GpuAct,
        w: &wgpu::Buffer,
        group: usize,
        eps: f32,
    ) -> Result<GpuAct> {
        // Each group is a row of its own: the activations are contiguous.
        let y = self.act(x.rows, x.cols)?;
        let rows = x.rows * x.cols / group.max(1);
        rms_norm::rms_norm(self, &x.buf, w, &y.buf, rows, group, eps).map_err(gpu_err)?;
        Ok(y)
    }

    fn add_bias(&self, x: &mut GpuAct, b: &wgpu::Buffer) -> Result<()> {
        add::add_rows(self, &x.buf, b, x.rows * x.cols, x.cols).map_err(gpu_err)
    }

    fn geglu(&self, gate: &GpuAct, up: &GpuAct) -> Result<GpuAct> {
        let y = self.act(gate.rows, gate.cols)?;
        let n = gate.rows * gate.cols;
        swiglu::gated(self, &gate.buf, &up.buf, &y.buf, n, Activation::GeluTanh)
            .map_err(gpu_err)?;
        Ok(y)
    }

    fn gelu(&self, x: &GpuAct) -> Result<GpuAct> {
        let y = self.act(x.rows, x.cols)?;
        swiglu::gelu(self, &x.buf, &y.buf, x.rows * x.cols).map_err(gpu_err)?;
        Ok(y)
    }

    fn layer_norm(
        &self,
        x: &GpuAct,
        w: &wgpu::Buffer,
        b: &wgpu::Buffer,
        eps: f32,
    ) -> Result<GpuAct> {
        let y = self.act(x.rows, x.cols)?;
        let r = layer_norm::layer_norm(self, &x.buf, w, b, &y.buf, x.rows, x.cols, eps);
        r.map_err(gpu_err)?;
        Ok(y)
    }

    fn scale(&self, x: &mut GpuAct, s: f32) -> Result<()> {
        // On the device, as an edit whose per-neuron scale is s everywhere.
        let e = Edit::scaled(vec![s; x.cols].into());
        edit::edit(self, &x.buf, x.rows, x.cols, 0, &e).map_err(gpu_err)
    }

    fn attention(
        &self,
        q: &GpuAct,
        k: &GpuAct,
        v: &GpuAct,
        c: &mut GpuKv,
        s: AttnShape,
    ) -> Result<GpuAct> {
        let need = s.pos0 + k.rows;
        let w = c.width;
        if need > c.cap || c.k.is_none() {
            // Grow (doubling), keeping what is cached.
            let cap = need.max(c.cap * 2).max(64);
            let (nk, nv) = (
                self.zeros("k cache", cap * w).map_err(gpu_err)?,
                self.zeros("v cache", cap * w).map_err(gpu_err)?,
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
        let (Some(kc), Some(vc)) = (c.k.as_ref(), c.v.as_ref()) else {
            return Err(Error::Backend("the KV cache was not allocated".into()));
        };
        let off = (s.pos0 * w * 4) as u64;
        let n = (k.rows * w * 4) as u64;
        self.copy(&k.buf, 0, kc, off, n);
        self.copy(&v.buf, 0, vc, off, n);
        c.len = need;
        let out = self.act(q.rows, s.n_head * s.head_dim)?;
        let shape = attention::Shape {
            rows: q.rows,
            n_head: s.n_head,
            n_kv: s.n_kv_head,
            head_dim: s.head_dim,
            pos0: s.pos0,
            window: s.window.unwrap_or(0),
            scale: s.scale,
            softcap: s.softcap.unwrap_or(0.0),
        };
        attention::attention(self, &q.buf, kc, vc, &out.buf, shape).map_err(gpu_err)?;
        Ok(out)
    }

    fn swiglu(&self, gate: &GpuAct, up: &GpuAct) -> Result<GpuAct> {
        let y = self.act(gate.rows, gate.cols)?;
        swiglu::swiglu(self, &gate.buf, &up.buf, &y.buf, gate.rows * gate.cols).map_err(gpu_err)?;
        Ok(y)
    }

    fn add_assign(&self, x: &mut GpuAct, y: &GpuAct) -> Result<()> {
        add::add(self, &x.buf, &y.buf, x.rows * x.cols).map_err(gpu_err)
    }

    fn last_row(&self, x: &GpuAct) -> Result<GpuAct> {
        self.copy_rows(x, x.rows.saturating_sub(1), 1)
    }

    fn rows(&self, x: &GpuAct) -> usize {
        x.rows
    }

    fn upload_act(&self, data: Vec<f32>, rows: usize, cols: usize) -> Result<GpuAct> {
        if data.len() != rows * cols {
            return Err(Error::Backend(format!("{} values are not {rows} x {cols}", data.len())));
        }
        let x = self.act(rows, cols)?;
        self.write(&x.buf, bytemuck::cast_slice(&data));
        Ok(x)
    }

    fn copy_rows(&self, x: &GpuAct, first: usize, n: usize) -> Result<GpuAct> {
        if first + n > x.rows {
            return Err(Error::Backend(format!("rows {first}..{} of {}", first + n, x.rows)));
        }
        let y = self.act(n, x.cols)?;
        let row = (x.cols * 4) as u64;
        if n > 0 {
            self.copy(&x.buf, first as u64 * row, &y.buf, 0, n as u64 * row);
        }
        Ok(y)
    }

    async fn read(&self, xs: &[&GpuAct]) -> Result<Vec<Vec<f32>>> {
        let bufs: Vec<(&wgpu::Buffer, usize)> =
            xs.iter().map(|x| (&x.buf, x.rows * x.cols)).collect();
        self.read_many_async(&bufs).await.map_err(gpu_err)
    }

    fn softcap(&self, x: &mut GpuAct, cap: f32) -> Result<()> {
        let y = self.act(x.rows, x.cols)?;
        swiglu::softcap(self, &x.buf, &y.buf, x.rows * x.cols, cap).map_err(gpu_err)?;
        *x = y;
        Ok(())
    }

    fn fits(&self, cfg: &tiller_model::ModelConfig, rows: usize, logit_rows: usize) -> Result<()> {
        let widths = [cfg.d_ff, cfg.n_head * cfg.head_dim, cfg.d_model];
        let act = rows * widths.into_iter().max().unwrap_or(0);
        let (n, what) = match logit_rows * cfg.vocab {
            l if l > act => (l, format!("{logit_rows} rows of logits")),
            _ => (act, format!("the activations of {rows} tokens")),
        };
        let (bytes, max) = (n as u64 * 4, self.limits.max_storage_buffer_binding_size);
        if bytes > max {
            return Err(Error::Backend(format!(
                "on this GPU ({}) {what} take {} MiB, beyond its largest storage binding ({} MiB): \
                 ask for fewer positions or use the CPU backend",
                Gpu::name(self),
                bytes >> 20,
                max >> 20
            )));
        }
        Ok(())
    }

    fn attn_in(
        &self,
        x: &GpuAct,
        norm: &wgpu::Buffer,
        eps: f32,
        ws: &[&GpuMatrix],
    ) -> Result<Vec<GpuAct>> {
        if let ([q, k, v], true) = (ws, fusable(x, ws)) {
            let out = [self.act(1, q.rows)?, self.act(1, k.rows)?, self.act(1, v.rows)?];
            let r = qkv::qkv_q4_1(
                self,
                &x.buf,
                (norm, eps),
                [&q.buf, &k.buf, &v.buf],
                [&out[0].buf, &out[1].buf, &out[2].buf],
                [q.rows, k.rows, v.rows],
                x.cols,
            );
            r.map_err(gpu_err)?;
            return Ok(out.into());
        }
        let h = self.rms_norm(x, norm, eps)?;
        self.matmul(&h, ws)
    }

    fn mlp_in(
        &self,
        x: &GpuAct,
        norm: &wgpu::Buffer,
        eps: f32,
        gate: &GpuMatrix,
        up: &GpuMatrix,
    ) -> Result<GpuAct> {
        if fusable(x, &[gate, up]) && gate.rows == up.rows {
            let y = self.act(1, gate.rows)?;
            let r = mlp::gate_up_q4_1(
                self,
                &x.buf,
                (norm, eps),
                &gate.buf,
                &up.buf,
                &y.buf,
                gate.rows,
                gate.cols,
            );
            r.map_err(gpu_err)?;
            return Ok(y);
        }
        mlp_in_unfused(self, x, norm, eps, gate, up)
    }

    fn rope_qk(
        &self,
        q: &mut GpuAct,
        k: &mut GpuAct,
        n_head: usize,
        n_kv_head: usize,
        head_dim: usize,
        pos0: usize,
        theta: f32,
        style: RopeStyle,
    ) -> Result<()> {
        let r = rope::rope_qk(
            self,
            (&q.buf, n_head),
            Some((&k.buf, n_kv_head)),
            q.rows,
            head_dim,
            pos0,
            theta,
            style,
            None,
        );
        r.map_err(gpu_err)
    }

    fn packs_sequences(&self) -> bool {
        true
    }

    fn concat_rows(&self, parts: &[&GpuAct]) -> Result<GpuAct> {
        let cols = parts.first().map_or(0, |p| p.cols);
        if parts.iter().any(|p| p.cols != cols) {
            return Err(Error::Backend("rows of different widths joined".into()));
        }
        let y = self.act(parts.iter().map(|p| p.rows).sum(), cols)?;
        let mut at = 0;
        for p in parts {
            let n = (p.rows * cols * 4) as u64;
            if n > 0 {
                self.copy(&p.buf, 0, &y.buf, at, n);
            }
            at += n;
        }
        Ok(y)
    }

    /// Every sequence's RoPE in one dispatch and its attention in another: each row knows the
    /// first row of its sequence (a buffer uploaded once per shape of pack), keys and values
    /// are read from the packed rows themselves (no cache). The same sums in the same order
    /// as one sequence at a time.
    fn attention_packed(
        &self,
        q: &GpuAct,
        k: &GpuAct,
        v: &GpuAct,
        lens: &[usize],
        theta: f32,
        style: RopeStyle,
        s: AttnShape,
    ) -> Result<GpuAct> {
        let rows: usize = lens.iter().sum();
        if rows != q.rows || k.rows != rows || v.rows != rows {
            return Err(Error::Backend(format!("{rows} packed rows, q {} k {}", q.rows, k.rows)));
        }
        let sb = crate::ops::starts(self, lens).map_err(gpu_err)?;
        let r = rope::rope_qk(
            self,
            (&q.buf, s.n_head),
            Some((&k.buf, s.n_kv_head)),
            rows,
            s.head_dim,
            0,
            theta,
            style,
            Some(&sb),
        );
        r.map_err(gpu_err)?;
        let out = self.act(rows, s.n_head * s.head_dim)?;
        let shape = attention::Shape {
            rows,
            n_head: s.n_head,
            n_kv: s.n_kv_head,
            head_dim: s.head_dim,
            pos0: 0,
            window: s.window.unwrap_or(0),
            scale: s.scale,
            softcap: s.softcap.unwrap_or(0.0),
        };
        let sp = attention::splits(&shape);
        attention::attention_split(self, &q.buf, &k.buf, &v.buf, &out.buf, shape, sp, Some(&sb))
            .map_err(gpu_err)?;
        Ok(out)
    }

    fn matmul_add(&self, x: &GpuAct, w: &GpuMatrix, into: &mut GpuAct) -> Result<()> {
        if !w.parts.is_empty() {
            let y = self.matmul(x, &[w])?.pop();
            let y = y.ok_or_else(|| Error::Backend("the product returned nothing".into()))?;
            return self.add_assign(into, &y);
        }
        let r = matvec(self, w.format, &w.buf, &x.buf, &into.buf, w.rows, w.cols, x.rows, Out::Add);
        r.map_err(gpu_err)
    }

    fn edit(&self, x: &mut GpuAct, edits: &[Edit], pos0: usize) -> Result<()> {
        for e in edits {
            edit::edit(self, &x.buf, x.rows, x.cols, pos0, e).map_err(gpu_err)?;
        }
        Ok(())
    }

    async fn argmax(&self, logits: &GpuAct) -> Result<u32> {
        self.argmax_async(logits).await.map_err(gpu_err)
    }
}

fn format_of(t: GgmlType) -> Format {
    match t {
        GgmlType::Q4_1 => Format::Q4_1,
        _ => Format::Q8_0,
    }
}

/// A matrix of any type as Q8_0 blocks, a few hundred rows at a time so a large table (a 1B
/// model's 262M-value embedding) never exists as f32 all at once (the page's worker lives in
/// wasm32's 4 GiB).
fn requantize(t: &TensorInfo, data: &[u8]) -> Result<Vec<u8>> {
    let (el, by) = t.dtype.block();
    let cols = t.dims.first().copied().unwrap_or(0);
    let rows = (t.dims.iter().product::<u64>() / cols.max(1)) as usize;
    let row_bytes = (cols / el.max(1) * by) as usize;
    let chunk = (1 << 22) / (cols as usize).max(1) + 1;
    let mut out = Vec::with_capacity(rows * cols as usize / 32 * 34);
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        let part = TensorInfo {
            name: t.name.clone(),
            dims: vec![cols, n as u64],
            dtype: t.dtype,
            start: 0,
            n_bytes: n * row_bytes,
        };
        let bytes = data.get(r0 * row_bytes..(r0 + n) * row_bytes).ok_or_else(|| {
            Error::Backend(format!("tensor `{}`: {} bytes are too few", t.name, data.len()))
        })?;
        out.extend(requantize_q8_0(&dequantize(&part, bytes)?));
        r0 += n;
    }
    Ok(out)
}

/// f32 weights (a multiple of 32) as Q8_0 blocks: f16 scale max|w| / 127, rounded codes.
fn requantize_q8_0(w: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(w.len() / 32 * 34);
    for blk in w.chunks_exact(32) {
        let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = half::f16::from_f32(amax / 127.0);
        let id = if d.to_f32() > 0.0 { 1.0 / d.to_f32() } else { 0.0 };
        out.extend(d.to_le_bytes());
        out.extend(blk.iter().map(|v| (v * id).round().clamp(-127.0, 127.0) as i8 as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(t: GgmlType, n: usize, bytes: usize) -> TensorInfo {
        TensorInfo { name: "w".into(), dims: vec![n as u64], dtype: t, start: 0, n_bytes: bytes }
    }

    /// The re-quantization to Q8_0 stays within half a code step of each block's scale.
    #[test]
    fn requantization_stays_within_half_a_step() {
        let mut s = 7u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        };
        let mut blocks = |by: usize| -> Vec<u8> {
            (0..8)
                .flat_map(|_| {
                    let mut b: Vec<u8> = (0..by).map(|_| next()).collect();
                    let d = half::f16::from_f32((b[0] as f32 - 128.0) / 4096.0);
                    b[0..2].copy_from_slice(&d.to_le_bytes());
                    b
                })
                .collect()
        };
        let deq = |t, data: &[u8]| dequantize(&info(t, 256, data.len()), data).unwrap();
        let q5_0 = blocks(22);
        let w = deq(GgmlType::Q5_0, &q5_0);
        let back = deq(GgmlType::Q8_0, &requantize_q8_0(&w));
        for (blk, (a, b)) in w.chunks(32).zip(back.chunks(32)).enumerate() {
            let step = a.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(err <= 0.51 * step + 1e-7, "block {blk}: error {err}, step {step}");
        }
    }
}
