//! A run's checkpoints: one folder per checkpoint, made visible by a single rename.
//!
//! ```text
//! <run>/checkpoints/
//!   epoch-2-step-156/            the newest complete checkpoint (highest step, then epoch)
//!     weights.safetensors        every parameter under its name (metadata: step)
//!     optimizer.safetensors      the optimizer's state (Optimizer::save_state)
//!     manifest.json              the Position, and per file its SHA-256 and tensor names
//!   .tmp-epoch-3-step-234-<pid>/ a checkpoint being written (a kill leaves it; cleaned later)
//! ```
//!
//! [`Checkpoints::save`] writes and syncs every file of the new folder under a temporary name,
//! renames the folder into place (the one atomic step), then deletes the older folders. A kill
//! at any moment therefore leaves the previous checkpoint or the new one complete, never a mix
//! of two steps. Loading checks each file against the manifest (tensor names, SHA-256) and the
//! folder's name, so a file copied in from another step, or edited, is refused with its name.

use super::position::Position;
use crate::checkpoint::{TensorDict, load_params_from};
use crate::dataset::checksum::sha256_hex;
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::params::ParamStore;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The weights file of a checkpoint folder.
pub const WEIGHTS: &str = "weights.safetensors";
/// The optimizer-state file of a checkpoint folder.
pub const OPTIMIZER: &str = "optimizer.safetensors";
/// The manifest, written last into the folder.
pub const MANIFEST: &str = "manifest.json";
/// Version of the manifest layout.
const FORMAT: u64 = 1;

/// The checkpoint folders of one run (`<run>/checkpoints/`).
#[derive(Clone, Debug)]
pub struct Checkpoints {
    dir: PathBuf,
}

/// One complete checkpoint folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The folder, `<run>/checkpoints/epoch-E-step-S`.
    pub path: PathBuf,
    /// Completed epochs when it was written.
    pub epoch: usize,
    /// Global step when it was written.
    pub step: u64,
}

impl Checkpoints {
    /// The checkpoints of the run in `run_dir` (nothing is created yet).
    pub fn new(run_dir: &Path) -> Self {
        Checkpoints {
            dir: run_dir.join("checkpoints"),
        }
    }

    /// The folder that holds the checkpoints.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every complete checkpoint folder, oldest first (temporary folders are not listed).
    pub fn list(&self) -> Result<Vec<Checkpoint>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((epoch, step)) = parse_name(&name) {
                found.push(Checkpoint {
                    path: entry.path(),
                    epoch,
                    step,
                });
            }
        }
        found.sort_by_key(|c| (c.step, c.epoch));
        Ok(found)
    }

    /// The newest complete checkpoint, if any.
    pub fn latest(&self) -> Result<Option<Checkpoint>> {
        Ok(self.list()?.pop())
    }

    /// Writes a checkpoint of `params`, `opt` and `pos` (module docs), then removes the older
    /// ones. A checkpoint of the same epoch and step already on disk is kept as it is: nothing
    /// trained since it was written.
    pub fn save(
        &self,
        params: &ParamStore<f32>,
        opt: &dyn Optimizer<f32>,
        pos: &Position,
    ) -> Result<Checkpoint> {
        let name = folder_name(pos.epoch, pos.step);
        let done = Checkpoint {
            path: self.dir.join(&name),
            epoch: pos.epoch,
            step: pos.step,
        };
        if !done.path.exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            let tmp = self.dir.join(format!(".tmp-{name}-{}", std::process::id()));
            write_folder(&tmp, params, opt, pos).inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&tmp);
            })?;
            std::fs::rename(&tmp, &done.path).map_err(|e| Error::io(&done.path, e))?;
            sync_dir(&self.dir);
        }
        self.remove_all_but(Some(&done))?;
        Ok(done)
    }

    /// Removes what a killed run left behind: temporary folders and every complete folder but
    /// the newest. Call it while holding the run's lock.
    pub fn clean(&self) -> Result<()> {
        let latest = self.latest()?;
        self.remove_all_but(latest.as_ref())
    }

    /// Removes every checkpoint (a new run replaces the one in its folder).
    pub fn clear(&self) -> Result<()> {
        self.remove_all_but(None)
    }

    /// Deletes every entry of the folder that is a checkpoint or a temporary one, except `keep`.
    fn remove_all_but(&self, keep: Option<&Checkpoint>) -> Result<()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&self.dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let ours = name.is_some_and(|n| n.starts_with(".tmp-") || parse_name(&n).is_some());
            if ours && keep.is_none_or(|k| k.path != path) {
                std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(())
    }
}

impl Checkpoint {
    /// The position this checkpoint restores, from its manifest.
    pub fn position(&self) -> Result<Position> {
        let manifest = self.manifest()?;
        let source = self.file(MANIFEST);
        let fields: BTreeMap<String, String> = manifest["position"]
            .as_object()
            .ok_or_else(|| self.bad(MANIFEST, "has no `position`"))?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let pos = Position::from_fields(&fields, &source.display().to_string())?;
        if (pos.epoch, pos.step) != (self.epoch, self.step) {
            return Err(self.bad(
                MANIFEST,
                &format!(
                    "records epoch {} step {}, but the folder is named for epoch {} step {}",
                    pos.epoch, pos.step, self.epoch, self.step
                ),
            ));
        }
        Ok(pos)
    }

    /// Restores a run from this checkpoint: the weights into `params`, the optimizer's state
    /// into `opt` (`None`: the caller keeps its optimizer as it is, e.g. a fresh one), and
    /// returns the [`Position`] to continue from. With the same model, data order and
    /// optimizer settings, the continued run is bit-identical to one that never stopped.
    ///
    /// Refusals are those of [`Checkpoint::position`], [`Checkpoint::load_weights`] (then
    /// `params` is unchanged) and [`Checkpoint::load_optimizer`].
    pub fn restore(
        &self,
        params: &mut ParamStore<f32>,
        opt: Option<&mut dyn Optimizer<f32>>,
    ) -> Result<Position> {
        let pos = self.position()?;
        self.load_weights(params)?;
        if let Some(opt) = opt {
            self.load_optimizer(params, opt)?;
        }
        Ok(pos)
    }

    /// Loads the weights into `params`, refusing a file that does not match the model, holds a
    /// non-finite value, was written at another step, or differs from the one the manifest
    /// describes. `params` is unchanged on error.
    pub fn load_weights(&self, params: &mut ParamStore<f32>) -> Result<()> {
        let (bytes, dict) = self.read_listed(WEIGHTS)?;
        let at = dict.meta.get("step").map(String::as_str);
        if at != Some(self.step.to_string().as_str()) {
            return Err(self.bad(
                WEIGHTS,
                &format!(
                    "was written at step {}, not {}",
                    at.unwrap_or("?"),
                    self.step
                ),
            ));
        }
        let mut loaded = params.clone();
        load_params_from(
            &dict,
            &mut loaded,
            &self.file(WEIGHTS).display().to_string(),
        )?;
        self.check_hash(WEIGHTS, &bytes)?;
        *params = loaded;
        Ok(())
    }

    /// Restores the optimizer's state, refusing a missing, renamed, reshaped or non-finite
    /// tensor by name, then a file that differs from the one the manifest describes. On error
    /// the optimizer's state is unspecified: build a new one.
    pub fn load_optimizer(
        &self,
        params: &mut ParamStore<f32>,
        opt: &mut dyn Optimizer<f32>,
    ) -> Result<()> {
        let (bytes, dict) = self.read_listed(OPTIMIZER)?;
        let source = self.file(OPTIMIZER).display().to_string();
        opt.load_state(params, &dict)
            .map_err(|e| Error::Checkpoint(format!("{source}: {}", message_of(&e))))?;
        self.check_hash(OPTIMIZER, &bytes)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn bad(&self, file: &str, msg: &str) -> Error {
        Error::Checkpoint(format!("{}: {msg}", self.file(file).display()))
    }

    fn manifest(&self) -> Result<Value> {
        let path = self.file(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| self.bad(MANIFEST, &format!("is not valid JSON: {e}")))?;
        if v["format"].as_u64() != Some(FORMAT) {
            return Err(self.bad(MANIFEST, &format!("is not a format-{FORMAT} manifest")));
        }
        Ok(v)
    }

    /// Reads `file` and checks that it holds exactly the tensors its manifest lists (a tensor
    /// removed or renamed is refused by name).
    fn read_listed(&self, file: &str) -> Result<(Vec<u8>, TensorDict)> {
        let entry = self.manifest()?["files"][file].clone();
        let listed: Vec<&str> = entry["tensors"]
            .as_array()
            .ok_or_else(|| self.bad(MANIFEST, &format!("does not list {file}")))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let path = self.file(file);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let dict = TensorDict::from_bytes(&bytes, &path.display().to_string())?;
        let names = dict.names();
        if let Some(missing) = listed.iter().find(|n| !names.contains(n)) {
            return Err(self.bad(
                file,
                &format!("lacks `{missing}`, which its manifest lists"),
            ));
        }
        if let Some(extra) = names.iter().find(|n| !listed.contains(n)) {
            return Err(self.bad(
                file,
                &format!("holds `{extra}`, which its manifest does not list"),
            ));
        }
        Ok((bytes, dict))
    }

    /// Checks the SHA-256 of `file`'s `bytes` against the manifest (a file replaced by one of
    /// another step or run, or edited, is refused).
    fn check_hash(&self, file: &str, bytes: &[u8]) -> Result<()> {
        let manifest = self.manifest()?;
        if manifest["files"][file]["sha256"].as_str() != Some(sha256_hex(bytes).as_str()) {
            return Err(self.bad(
                file,
                "differs from the file this checkpoint was written with (SHA-256 mismatch): \
                 it was replaced or edited after the checkpoint was saved",
            ));
        }
        Ok(())
    }
}

/// `epoch-E-step-S`.
fn folder_name(epoch: usize, step: u64) -> String {
    format!("epoch-{epoch}-step-{step}")
}

/// `(epoch, step)` of a folder named by [`folder_name`].
fn parse_name(name: &str) -> Option<(usize, u64)> {
    let (epoch, step) = name.strip_prefix("epoch-")?.split_once("-step-")?;
    Some((epoch.parse().ok()?, step.parse().ok()?))
}

/// The message of `e` without the `checkpoint: ` its Display adds.
fn message_of(e: &Error) -> String {
    match e {
        Error::Checkpoint(msg) => msg.clone(),
        other => other.to_string(),
    }
}

/// Writes the three files of a checkpoint into `dir` (new), each synced, the manifest last.
fn write_folder(
    dir: &Path,
    params: &ParamStore<f32>,
    opt: &dyn Optimizer<f32>,
    pos: &Position,
) -> Result<()> {
    std::fs::create_dir(dir).map_err(|e| Error::io(dir, e))?;
    // NOTE: always the standard W̄, also for layers an optimizer stores in their eigenbasis.
    let standard = params.to_standard();
    let mut weights = TensorDict::default();
    for id in standard.ids() {
        weights.put_tensor(standard.name(id), standard.get(id));
    }
    // NOTE: one metadata key: safetensors writes metadata from a HashMap, whose order varies,
    // and the weights of one state should be the same bytes every time.
    weights.meta.insert("step".into(), pos.step.to_string());
    let mut state = TensorDict::default();
    opt.save_state(params, &mut state);
    let mut files = serde_json::Map::new();
    for (name, dict) in [(WEIGHTS, &weights), (OPTIMIZER, &state)] {
        let bytes = dict.to_bytes()?;
        write_synced(&dir.join(name), &bytes)?;
        let entry = json!({ "sha256": sha256_hex(&bytes), "tensors": dict.names() });
        files.insert(name.to_string(), entry);
    }
    let manifest = json!({ "format": FORMAT, "position": pos.to_fields(), "files": files });
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::Checkpoint(format!("manifest: {e}")))?;
    write_synced(&dir.join(MANIFEST), text.as_bytes())?;
    sync_dir(dir);
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(path, e))
}

/// Makes a rename inside `dir` durable, where the system can sync a directory.
fn sync_dir(dir: &Path) {
    // NOTE: best effort: some file systems refuse to sync a directory; the rename is atomic
    // either way, this only hastens it to disk.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
