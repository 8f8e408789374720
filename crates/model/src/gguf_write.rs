//! Writes GGUF files: metadata and tensors, GGUF v3, tensors aligned to 32 bytes. No IO: it
//! returns the bytes. Used for control-vector export and by the tests' synthetic models.

use std::collections::BTreeMap;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

/// A tensor to write: its bytes as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    /// ggml order: innermost first.
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

impl Tensor {
    /// An F32 tensor.
    pub fn f32(name: &str, dims: &[u64], values: &[f32]) -> Self {
        Tensor {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type: 0,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

fn s(out: &mut Vec<u8>, v: &str) {
    out.extend((v.len() as u64).to_le_bytes());
    out.extend(v.as_bytes());
}

/// The GGUF file of `meta` (written in key order) and `tensors` (in order).
pub fn write(meta: &BTreeMap<String, Meta>, tensors: &[Tensor]) -> Vec<u8> {
    let mut o = b"GGUF".to_vec();
    o.extend(3u32.to_le_bytes());
    o.extend((tensors.len() as u64).to_le_bytes());
    o.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        s(&mut o, k);
        match v {
            Meta::U32(x) => {
                o.extend(4u32.to_le_bytes());
                o.extend(x.to_le_bytes());
            }
            Meta::F32(x) => {
                o.extend(6u32.to_le_bytes());
                o.extend(x.to_le_bytes());
            }
            Meta::Bool(x) => {
                o.extend(7u32.to_le_bytes());
                o.push(*x as u8);
            }
            Meta::Str(x) => {
                o.extend(8u32.to_le_bytes());
                s(&mut o, x);
            }
            Meta::Strs(xs) => {
                o.extend(9u32.to_le_bytes());
                o.extend(8u32.to_le_bytes());
                o.extend((xs.len() as u64).to_le_bytes());
                xs.iter().for_each(|x| s(&mut o, x));
            }
            Meta::I32s(xs) => {
                o.extend(9u32.to_le_bytes());
                o.extend(5u32.to_le_bytes());
                o.extend((xs.len() as u64).to_le_bytes());
                xs.iter().for_each(|x| o.extend(x.to_le_bytes()));
            }
        }
    }
    let mut off = 0u64;
    let mut offsets = Vec::new();
    for t in tensors {
        s(&mut o, &t.name);
        o.extend((t.dims.len() as u32).to_le_bytes());
        t.dims.iter().for_each(|d| o.extend(d.to_le_bytes()));
        o.extend(t.ggml_type.to_le_bytes());
        o.extend(off.to_le_bytes());
        offsets.push(off);
        off = (off + t.data.len() as u64).div_ceil(32) * 32;
    }
    while !o.len().is_multiple_of(32) {
        o.push(0);
    }
    let base = o.len();
    for (t, off) in tensors.iter().zip(offsets) {
        o.resize(base + off as usize, 0);
        o.extend(&t.data);
    }
    o
}
