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

    /// The names of the stored tensors, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// Removes a tensor; returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        self.entries.remove(name).is_some()
    }

    /// Reads a tensor of element type `F` that must have exactly `shape` (the checked read of
    /// restored state: a tensor cut short or reshaped is refused with its name).
    pub fn tensor_shaped<F: Float>(&self, name: &str, shape: &[usize]) -> Result<Tensor<F>> {
        let t = self.tensor::<F>(name)?;
        if t.dims() != shape {
            return Err(Error::Checkpoint(format!(
                "`{name}` has shape {:?}, expected {shape:?}",
                t.dims()
            )));
        }
        Ok(t)
    }

    /// Reads a tensor that must have been stored in element type `F` and hold only finite
    /// values.
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
        if let Some(i) = data.iter().position(|x| !x.to_f64().is_finite()) {
            return Err(non_finite(name, i));
        }
        Tensor::from_vec(data, &e.shape)
    }

    /// Reads an f64 buffer and its shape; refuses a non-finite value.
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
            .collect::<Vec<f64>>();
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(non_finite(name, i));
        }
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

/// The refusal of a non-finite value at flat index `i` of tensor `name`.
fn non_finite(name: &str, i: usize) -> Error {
    Error::Checkpoint(format!(
        "`{name}` holds a non-finite value (NaN or ±Inf) at index {i}"
    ))
}

impl TensorDict {
    /// The dict as the bytes of a safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let views = self
            .entries
            .iter()
            .map(|(k, e)| {
                TensorView::new(e.dtype, e.shape.clone(), &e.bytes).map(|v| (k.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Checkpoint(e.to_string()))?;
        let meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::Checkpoint(e.to_string()))
    }

    /// Parses the bytes of a safetensors file; `source` names it in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<TensorDict> {
        parse(bytes, source)
    }
}

/// Writes `dict` to `path` as safetensors, atomically.
pub fn write_dict(path: &Path, dict: &TensorDict) -> Result<()> {
    let bytes = dict
        .to_bytes()
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Reads a safetensors file written by [`write_dict`] (or by Python's `safetensors`).
pub fn read_dict(path: &Path) -> Result<TensorDict> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, &path.display().to_string())
}

/// The dict in the bytes of a safetensors file.
fn parse(bytes: &[u8], source: &str) -> Result<TensorDict> {
    let bad = |e: safetensors::SafeTensorError| {
        Error::Checkpoint(format!("{source} is not a valid safetensors file: {e}"))
    };
    let st = SafeTensors::deserialize(bytes).map_err(bad)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(bad)?;
    let mut dict = TensorDict::default();
    if let Some(meta) = header.metadata() {
        dict.meta = meta.clone().into_iter().collect();
    }
    for (name, view) in st.tensors() {
        if !matches!(view.dtype(), Dtype::F32 | Dtype::F64) {
            return Err(Error::Checkpoint(format!(
                "{source}: `{name}` has unsupported dtype {:?}",
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
