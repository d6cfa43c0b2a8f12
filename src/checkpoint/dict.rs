//! `TensorDict`: named f32/f64 tensors plus string metadata, stored as one `.safetensors` file.

use super::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One stored tensor: shape and little-endian bytes of its dtype.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Named tensors and metadata: the in-memory form of a checkpoint file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorDict {
    entries: BTreeMap<String, Entry>,
    /// Free-form string metadata (counters, config, crate version).
    pub meta: BTreeMap<String, String>,
}

impl TensorDict {
    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no tensor is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stores a tensor in its own element type.
    pub fn put_tensor<F: Float>(&mut self, name: &str, t: &Tensor<F>) {
        let (dtype, bytes) = if F::DTYPE == "f32" {
            (
                Dtype::F32,
                t.data()
                    .iter()
                    .flat_map(|x| (x.to_f64() as f32).to_le_bytes())
                    .collect(),
            )
        } else {
            (
                Dtype::F64,
                t.data()
                    .iter()
                    .flat_map(|x| x.to_f64().to_le_bytes())
                    .collect(),
            )
        };
        self.entries.insert(
            name.to_string(),
            Entry {
                dtype,
                shape: t.dims().to_vec(),
                bytes,
            },
        );
    }

    /// Stores an f64 buffer with a shape (optimizer state that is not a `Tensor`).
    pub fn put_f64(&mut self, name: &str, shape: &[usize], data: &[f64]) {
        let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.entries.insert(
            name.to_string(),
            Entry {
                dtype: Dtype::F64,
                shape: shape.to_vec(),
                bytes,
            },
        );
    }

    /// Reads a tensor that must have been stored in element type `F`.
    pub fn tensor<F: Float>(&self, name: &str) -> Result<Tensor<F>> {
        let e = self.entry(name)?;
        let want = if F::DTYPE == "f32" {
            Dtype::F32
        } else {
            Dtype::F64
        };
        if e.dtype != want {
            return Err(Error::Checkpoint(format!(
                "`{name}` is {:?}, expected {want:?}",
                e.dtype
            )));
        }
        let data: Vec<F> = match e.dtype {
            Dtype::F32 => e
                .bytes
                .chunks_exact(4)
                .map(|b| F::from_f64(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64))
                .collect(),
            _ => e
                .bytes
                .chunks_exact(8)
                .map(|b| F::from_f64(f64::from_le_bytes(b.try_into().expect("8 bytes"))))
                .collect(),
        };
        Tensor::from_vec(data, &e.shape)
    }

    /// Reads an f64 buffer and its shape.
    pub fn f64s(&self, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let e = self.entry(name)?;
        if e.dtype != Dtype::F64 {
            return Err(Error::Checkpoint(format!(
                "`{name}` is {:?}, expected F64",
                e.dtype
            )));
        }
        let data = e
            .bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        Ok((e.shape.clone(), data))
    }

    /// True when a tensor of that name is stored.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| Error::Checkpoint(format!("missing tensor `{name}`")))
    }
}

/// Writes `dict` to `path` as safetensors, atomically.
pub fn write_dict(path: &Path, dict: &TensorDict) -> Result<()> {
    let views = dict
        .entries
        .iter()
        .map(|(k, e)| TensorView::new(e.dtype, e.shape.clone(), &e.bytes).map(|v| (k.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    let meta: HashMap<String, String> = dict.meta.clone().into_iter().collect();
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Reads a safetensors file written by [`write_dict`] (or by Python's `safetensors`).
pub fn read_dict(path: &Path) -> Result<TensorDict> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: safetensors::SafeTensorError| {
        Error::Checkpoint(format!(
            "{} is not a valid safetensors file: {e}",
            path.display()
        ))
    };
    let st = SafeTensors::deserialize(&bytes).map_err(bad)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let mut dict = TensorDict::default();
    if let Some(meta) = header.metadata() {
        dict.meta = meta.clone().into_iter().collect();
    }
    for (name, view) in st.tensors() {
        if !matches!(view.dtype(), Dtype::F32 | Dtype::F64) {
            return Err(Error::Checkpoint(format!(
                "{}: `{name}` has unsupported dtype {:?}",
                path.display(),
                view.dtype()
            )));
        }
        let entry = Entry {
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            bytes: view.data().to_vec(),
        };
        dict.entries.insert(name, entry);
    }
    Ok(dict)
}
