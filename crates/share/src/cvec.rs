//! llama.cpp control vectors (GGUF), out and in.
//!
//! The format, as llama.cpp's loader (`common/common.cpp`, `llama_control_vector_load_one`)
//! reads it and repeng and EasySteer write it: `general.architecture = "controlvector"`,
//! `controlvector.model_hint` (the model's architecture), `controlvector.layer_count`, and one
//! 1-D F32 tensor `direction.N` of n_embd values per layer N >= 1. llama.cpp rejects
//! `direction.0` and adds `direction.N` (times the strength it is loaded with) to the output
//! of block N, which is Tiller's layer N. So **layer 0 cannot be exported**: [`write`] refuses
//! it with a clear error instead of dropping it.
//!
//! On import, `direction.N` acts at layer N, as llama.cpp applies it. llama.cpp's
//! cvector-generator writes a vector it measured at block l as `direction.(l+1)`: to steer at
//! the layer it was measured at instead, import with `shift` (N - 1).

use crate::{Error, Result};
use std::collections::BTreeMap;
use tiller_model::gguf_write::{self, Meta, Tensor};
use tiller_model::{GgmlType, Gguf};
use tiller_steer::intervene::Op;

/// Most directions a file may hold.
pub const MAX_DIRECTIONS: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct ControlVector {
    /// The model architecture the vectors are for, e.g. "llama".
    pub model_hint: String,
    /// (layer N, vector), ascending N.
    pub directions: Vec<(usize, Vec<f32>)>,
}

/// The GGUF bytes of `cv`.
pub fn write(cv: &ControlVector) -> Result<Vec<u8>> {
    if cv.directions.is_empty() {
        return Err(Error::ControlVector("no directions to write".into()));
    }
    let width = cv.directions[0].1.len();
    let mut seen = std::collections::BTreeSet::new();
    for (l, v) in &cv.directions {
        if *l == 0 {
            return Err(Error::ControlVector(
                "layer 0 cannot be exported: llama.cpp rejects direction.0 (it adds direction.N \
                 to the output of block N, N >= 1); choose layers from 1"
                    .into(),
            ));
        }
        if v.len() != width || width == 0 {
            return Err(Error::ControlVector("directions of different widths".into()));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::ControlVector(format!("direction.{l} is not finite")));
        }
        if !seen.insert(*l) {
            return Err(Error::ControlVector(format!("layer {l} given twice")));
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert("general.architecture".into(), Meta::Str("controlvector".into()));
    meta.insert("controlvector.model_hint".into(), Meta::Str(cv.model_hint.clone()));
    meta.insert("controlvector.layer_count".into(), Meta::U32(cv.directions.len() as u32));
    let tensors: Vec<Tensor> = cv
        .directions
        .iter()
        .map(|(l, v)| Tensor::f32(&format!("direction.{l}"), &[v.len() as u64], v))
        .collect();
    Ok(gguf_write::write(&meta, &tensors))
}

/// Read a control-vector GGUF.
pub fn read(bytes: &[u8]) -> Result<ControlVector> {
    let g = Gguf::parse(bytes).map_err(|e| Error::ControlVector(e.to_string()))?;
    let arch = g.architecture().map_err(|e| Error::ControlVector(e.to_string()))?;
    if arch != "controlvector" {
        return Err(Error::ControlVector(format!(
            "general.architecture is `{arch}`, not `controlvector`: is this a model file?"
        )));
    }
    let model_hint =
        g.get("controlvector.model_hint").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let mut directions = Vec::new();
    for t in &g.tensors {
        let Some(n) = t.name.strip_prefix("direction.") else {
            continue; // llama.cpp ignores other tensors too
        };
        let l: usize = n
            .parse()
            .map_err(|_| Error::ControlVector(format!("tensor `{}`: bad layer index", t.name)))?;
        if l == 0 {
            return Err(Error::ControlVector(
                "direction.0: llama.cpp rejects layer index 0 and so does Tiller".into(),
            ));
        }
        if t.dtype != GgmlType::F32 || t.dims.len() != 1 {
            return Err(Error::ControlVector(format!(
                "tensor `{}` must be a 1-D F32 vector, found {:?} {:?}",
                t.name, t.dtype, t.dims
            )));
        }
        let data = g.data(bytes, t).map_err(|e| Error::ControlVector(e.to_string()))?;
        let v: Vec<f32> =
            data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::ControlVector(format!("`{}` holds a non-finite value", t.name)));
        }
        directions.push((l, v));
        if directions.len() > MAX_DIRECTIONS {
            return Err(Error::ControlVector(format!("more than {MAX_DIRECTIONS} directions")));
        }
    }
    if directions.is_empty() {
        return Err(Error::ControlVector("the file has no direction.N tensors".into()));
    }
    directions.sort_by_key(|d| d.0);
    Ok(ControlVector { model_hint, directions })
}

impl ControlVector {
    /// The vectors as `add` interventions on a model with `n_layer` blocks of width `d`:
    /// `strength * direction.N` at layer N (or N - 1 with `shift`). Like llama.cpp, layers the
    /// model does not have are an error rather than silently skipped.
    pub fn ops(
        &self,
        n_layer: usize,
        d: usize,
        strength: f32,
        shift: bool,
    ) -> Result<Vec<(usize, Op)>> {
        if !strength.is_finite() {
            return Err(Error::ControlVector(format!("strength {strength} is not finite")));
        }
        self.directions
            .iter()
            .map(|(n, v)| {
                let l = if shift { n - 1 } else { *n };
                if l >= n_layer {
                    return Err(Error::ControlVector(format!(
                        "direction.{n} is for layer {l}; the model has layers 0..={}",
                        n_layer - 1
                    )));
                }
                if v.len() != d {
                    return Err(Error::ControlVector(format!(
                        "direction.{n} has {} values; the model's width is {d}",
                        v.len()
                    )));
                }
                Ok((l, Op::Add { v: v.iter().map(|x| x * strength).collect() }))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cv() -> ControlVector {
        ControlVector {
            model_hint: "llama".into(),
            directions: vec![(3, vec![0.5, -1.0, 2.0]), (7, vec![1.0, 0.0, -0.25])],
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let bytes = write(&cv()).unwrap();
        let back = read(&bytes).unwrap();
        assert_eq!(back, cv());
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.architecture().unwrap(), "controlvector");
        assert_eq!(g.get("controlvector.layer_count").and_then(|v| v.as_u64()), Some(2));
        assert_eq!(g.tensor("direction.7").unwrap().dims, vec![3]);
        let ops = back.ops(8, 3, 2.0, false).unwrap();
        assert_eq!(ops[0].0, 3);
        assert_eq!(ops[0].1, Op::Add { v: vec![1.0f32, -2.0, 4.0].into() });
        assert_eq!(back.ops(8, 3, 1.0, true).unwrap()[1].0, 6);
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut c = cv();
        c.directions.push((0, vec![0.0; 3]));
        assert!(write(&c).unwrap_err().to_string().contains("layer 0"));
        let mut c = cv();
        c.directions[1].1.push(1.0);
        assert!(write(&c).is_err());
        assert!(read(b"GGUF garbage").is_err());
        assert!(cv().ops(5, 3, 1.0, false).unwrap_err().to_string().contains("layer 7"));
        assert!(cv().ops(8, 4, 1.0, false).is_err());
        assert!(cv().ops(8, 3, f32::NAN, false).is_err());
    }
}
