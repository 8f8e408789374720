//! GGUF v2/v3 reader over a byte slice.
//!
//! Layout (ggml docs/gguf.md): magic "GGUF", u32 version, u64 tensor count, u64 metadata
//! count, metadata key/values, tensor infos (name, n_dims, dims, type, offset), padding to
//! `general.alignment` (default 32), then tensor data.
//!
//! Every count and length read from the file is checked against both a fixed cap and the
//! bytes that remain before anything is allocated, so a hostile file cannot make us
//! allocate gigabytes or index out of bounds. candle's own reader allocates whatever a
//! string length says (`vec![0u8; len]`), which is why this one exists.

use crate::{Error, Result};
use std::collections::BTreeMap;

const MAGIC: &[u8; 4] = b"GGUF";
/// Caps on what a file may declare. Real models are far below these.
pub const MAX_TENSORS: u64 = 1 << 16;
pub const MAX_KV: u64 = 1 << 16;
pub const MAX_STRING: u64 = 1 << 24;
pub const MAX_ARRAY: u64 = 1 << 24;
pub const MAX_DIMS: u32 = 4;
pub const MAX_ARRAY_DEPTH: u32 = 2;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer type as u64 (negative values are rejected).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The ggml tensor types Tiller knows the block layout of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
}

impl GgmlType {
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            30 => Self::BF16,
            _ => return None,
        })
    }
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q8_1 => 9,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Q8K => 15,
            Self::BF16 => 30,
        }
    }
    /// (elements per block, bytes per block)
    pub fn block(self) -> (u64, u64) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q8_1 => (32, 36),
            Self::Q2K => (256, 84),
            Self::Q3K => (256, 110),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
            Self::Q8K => (256, 292),
        }
    }
}

/// One tensor's description. `dims` are in ggml order: `dims[0]` is the innermost
/// (contiguous) dimension, so a weight matrix `[out, in]` has `dims == [in, out]`.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    /// Offset of the data from the start of the file.
    pub start: usize,
    pub n_bytes: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: metadata and tensor table. Tensor bytes stay in the caller's buffer.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    index: BTreeMap<String, usize>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Truncated(format!(
                "{what} needs {n} bytes at offset {} but the file has {} left",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > MAX_STRING {
            return Err(Error::Limit(format!("{what}: string of {len} bytes (cap {MAX_STRING})")));
        }
        let bytes = self.take(len as usize, what)?;
        // Invalid UTF-8 (seen in some vocabularies) is replaced rather than rejected.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>(key)?[0]),
            1 => Value::I8(self.arr::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.arr(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.arr(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.arr(key)?)),
            7 => Value::Bool(self.arr::<1>(key)?[0] != 0),
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::Limit(format!(
                        "{key}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let elem = self.u32(key)?;
                let len = self.u64(key)?;
                // Every element takes at least one byte, so `len` cannot exceed what is left.
                if len > MAX_ARRAY || len > self.remaining() as u64 {
                    return Err(Error::Limit(format!(
                        "{key}: array of {len} elements (cap {MAX_ARRAY}, {} bytes left)",
                        self.remaining()
                    )));
                }
                let mut v = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    v.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.arr(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.arr(key)?)),
            t => return Err(Error::Format(format!("metadata `{key}` has unknown value type {t}"))),
        })
    }
}

impl Gguf {
    /// Parse the header, metadata and tensor table of a GGUF file held in `bytes`, and check
    /// that every tensor's data lies inside `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let magic =
            r.take(4, "magic").map_err(|_| Error::Format("file is shorter than 4 bytes".into()))?;
        if magic != MAGIC {
            return Err(Error::Format(format!("wrong magic {magic:02x?}, expected \"GGUF\"")));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::Unsupported(format!(
                "GGUF version {version} (Tiller reads 2 and 3)"
            )));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        if n_tensors > MAX_TENSORS {
            return Err(Error::Limit(format!("{n_tensors} tensors (cap {MAX_TENSORS})")));
        }
        if n_kv > MAX_KV {
            return Err(Error::Limit(format!("{n_kv} metadata entries (cap {MAX_KV})")));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32(&key)?;
            let v = r.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        let mut infos = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let n_dims = r.u32(&name)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::Limit(format!(
                    "tensor `{name}` has {n_dims} dimensions (1..={MAX_DIMS})"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64(&name)?);
            }
            let ty = r.u32(&name)?;
            let dtype = GgmlType::from_id(ty).ok_or_else(|| {
                Error::Unsupported(format!("tensor `{name}` has unknown ggml type id {ty}"))
            })?;
            let offset = r.u64(&name)?;
            infos.push((name, dims, dtype, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => {
                v.as_u64().filter(|a| *a > 0 && *a <= 1 << 16 && a.is_power_of_two()).ok_or_else(
                    || Error::Format(format!("general.alignment {v:?} is not a power of two")),
                )?
            }
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(infos.len());
        let mut index = BTreeMap::new();
        for (name, dims, dtype, offset) in infos {
            let n = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| Error::Limit(format!("tensor `{name}` dims {dims:?} overflow")))?;
            let (blk, bsz) = dtype.block();
            if dims[0] % blk != 0 {
                return Err(Error::Shape(format!(
                    "tensor `{name}`: row length {} is not a multiple of the {dtype:?} block size {blk}",
                    dims[0]
                )));
            }
            let n_bytes = (n / blk)
                .checked_mul(bsz)
                .ok_or_else(|| Error::Limit(format!("tensor `{name}` size overflows")))?;
            let start = data_start
                .checked_add(offset)
                .filter(|s| s % alignment == 0 || offset == 0)
                .ok_or_else(|| {
                    Error::Format(format!("tensor `{name}` offset {offset} is invalid"))
                })?;
            let end = start.checked_add(n_bytes);
            if end.is_none_or(|e| e > bytes.len() as u64) {
                return Err(Error::Truncated(format!(
                    "tensor `{name}` ({dtype:?} {dims:?}, {n_bytes} bytes at {start}) lies beyond the end of the {}-byte file",
                    bytes.len()
                )));
            }
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::Format(format!("tensor `{name}` appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                dtype,
                start: start as usize,
                n_bytes: n_bytes as usize,
            });
        }
        Ok(Gguf { version, metadata, tensors, index })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor inside the file buffer `parse` was given.
    pub fn data<'b>(&self, bytes: &'b [u8], t: &TensorInfo) -> Result<&'b [u8]> {
        bytes.get(t.start..t.start + t.n_bytes).ok_or_else(|| {
            Error::Truncated(format!("tensor `{}` is not inside this buffer", t.name))
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
    pub fn req(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))
    }
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.req(key)?.as_u64().ok_or(Error::WrongType { key: key.into(), expected: "integer" })
    }
    pub fn f64(&self, key: &str) -> Result<f64> {
        self.req(key)?.as_f64().ok_or(Error::WrongType { key: key.into(), expected: "number" })
    }
    pub fn str(&self, key: &str) -> Result<&str> {
        self.req(key)?.as_str().ok_or(Error::WrongType { key: key.into(), expected: "string" })
    }
    pub fn architecture(&self) -> Result<&str> {
        self.str("general.architecture")
    }
}

/// De-quantize one tensor's bytes to f32 (any type candle knows).
pub fn dequantize(t: &TensorInfo, data: &[u8]) -> Result<Vec<f32>> {
    use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
    let err = |msg: String| Error::Dequant { name: t.name.clone(), msg };
    match t.dtype {
        GgmlType::F32 => {
            return Ok(data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
        GgmlType::F16 => {
            return Ok(data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect())
        }
        GgmlType::BF16 => {
            return Ok(data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect())
        }
        _ => {}
    }
    let dt = match t.dtype {
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q8_1 => GgmlDType::Q8_1,
        GgmlType::Q2K => GgmlDType::Q2K,
        GgmlType::Q3K => GgmlDType::Q3K,
        GgmlType::Q4K => GgmlDType::Q4K,
        GgmlType::Q5K => GgmlDType::Q5K,
        GgmlType::Q6K => GgmlDType::Q6K,
        GgmlType::Q8K => GgmlDType::Q8K,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            return Err(err("float types are read directly".into()))
        }
    };
    // candle wants dims outermost-first.
    let dims: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
    let q = qtensor_from_ggml(dt, data, dims, &candle_core::Device::Cpu)
        .map_err(|e| err(e.to_string()))?;
    let deq = q.dequantize(&candle_core::Device::Cpu).map_err(|e| err(e.to_string()))?;
    deq.flatten_all().and_then(|x| x.to_vec1::<f32>()).map_err(|e| err(e.to_string()))
}
