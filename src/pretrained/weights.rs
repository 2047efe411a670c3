//! Weight files of a model directory: reading them (every naming variant mapped to the
//! family's canonical names, as views of the memory-mapped files), and writing tensors as
//! safetensors that transformers loads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors, View};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::encoder::{Family, Mapped};
use crate::fsutil::atomic_write_with;

/// What loading did beyond copying tensors: heads created fresh, heads left behind.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Parameters the file lacks, left at transformers' initialisation (new task heads).
    pub initialised: Vec<String>,
    /// Tensors of other task heads in the file that this model has no use for.
    pub unused: Vec<String>,
}

impl LoadReport {
    /// One warning for fresh heads (as transformers prints), one note for dropped ones.
    pub fn log(&self, source: &Path) {
        if !self.initialised.is_empty() {
            tracing::warn!(
                "{}: newly initialised (not in the checkpoint, train before use): {}",
                source.display(),
                self.initialised.join(", ")
            );
        }
        if !self.unused.is_empty() {
            tracing::info!("{}: not used by this task: {}", source.display(), self.unused.join(", "));
        }
    }
}

/// The weight files of a directory: one `model.safetensors`, or the shards an index lists.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).with_context(|| format!("reading {}", index.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", index.display()))?;
        let map = json["weight_map"].as_object().with_context(|| format!("{}: no weight_map", index.display()))?;
        let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
    }
    if dir.join("pytorch_model.bin").exists() {
        bail!(
            "{}: only pytorch_model.bin is there, a Python pickle that can run arbitrary code when \
             loaded; bertkit reads safetensors only. Convert it once with transformers: \
             python -c \"from transformers import AutoModel as M; M.from_pretrained('{d}').save_pretrained('{d}')\"",
            dir.display(),
            d = dir.display()
        );
    }
    bail!("{}: no model.safetensors or model.safetensors.index.json", dir.display())
}

/// Name, dtype and shape of a stored tensor, read from the file headers alone.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<i64>,
}

/// What the checkpoint holds, by canonical name, without reading the weights themselves.
pub fn tensor_index(dir: &Path, family: &Family) -> Result<BTreeMap<String, TensorInfo>> {
    let mut out = BTreeMap::new();
    for file in weight_files(dir)? {
        let mut f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
        let mut len = [0u8; 8];
        std::io::Read::read_exact(&mut f, &mut len)
            .with_context(|| format!("{}: too short for safetensors", file.display()))?;
        let n = u64::from_le_bytes(len);
        if n > 100_000_000 {
            bail!("{}: header length {n} is not plausible; not a safetensors file?", file.display());
        }
        let mut header = vec![0u8; n as usize];
        std::io::Read::read_exact(&mut f, &mut header)
            .with_context(|| format!("{}: truncated header", file.display()))?;
        let meta: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header).with_context(|| format!("{}: unreadable header", file.display()))?;
        for (name, info) in meta {
            if name == "__metadata__" {
                continue;
            }
            let Mapped::Param(canon) = (family.canonical_name)(&name) else { continue };
            let info: safetensors::tensor::TensorInfo = serde_json::from_value(info)
                .with_context(|| format!("{}: tensor {name}: bad header entry", file.display()))?;
            out.insert(canon, TensorInfo { dtype: info.dtype, shape: info.shape.iter().map(|&d| d as i64).collect() });
        }
    }
    Ok(out)
}

/// Every tensor of the checkpoint on the CPU, under its canonical name: float ones as float32,
/// an int8 model's int8 weights and int32 zero points as they are (`int8.rs`).
pub fn read_weights(dir: &Path, family: &Family) -> Result<BTreeMap<String, Tensor>> {
    with_mapped_weights(dir, family, |weights| Ok(weights.into_iter().map(|(name, t)| (name, t.copy())).collect()))
}

/// Calls `f` with every tensor of the checkpoint under its canonical name, float32 tensors as
/// views of the memory-mapped files: loading into a model then holds the weights twice (the
/// model and the page cache), not three times. The views must not outlive `f`.
pub(crate) fn with_mapped_weights<R>(
    dir: &Path,
    family: &Family,
    f: impl FnOnce(BTreeMap<String, Tensor>) -> Result<R>,
) -> Result<R> {
    let mut maps = Vec::new();
    for file in weight_files(dir)? {
        let handle = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
        // SAFETY: a read-only map, alive until `f` has returned (below); a concurrent writer
        // truncating the file is the one hazard, the same as for any reader.
        let mmap = unsafe { memmap2::Mmap::map(&handle) }.with_context(|| format!("mapping {}", file.display()))?;
        maps.push((file, mmap));
    }
    let mut out = BTreeMap::new();
    for (file, mmap) in &maps {
        let st = SafeTensors::deserialize(mmap).map_err(|e| {
            anyhow::anyhow!("{}: not a complete safetensors file (truncated or corrupt?): {e}", file.display())
        })?;
        for (name, view) in st.tensors() {
            let Mapped::Param(canon) = (family.canonical_name)(&name) else { continue };
            let kind = match view.dtype() {
                Dtype::F32 => Kind::Float,
                Dtype::F16 => Kind::Half,
                Dtype::BF16 => Kind::BFloat16,
                Dtype::F64 => Kind::Double,
                // An int8 model's weights and their zero points (`int8.rs`), kept as they are.
                Dtype::I8 => Kind::Int8,
                Dtype::I32 => Kind::Int,
                other => bail!("{}: tensor {name} has dtype {other:?}, expected a float type", file.display()),
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            // `deserialize` has checked that `data` is exactly the tensor's bytes.
            let data = view.data();
            let t = if kind == Kind::Float && (data.as_ptr() as usize).is_multiple_of(4) {
                // SAFETY: `data` holds exactly the tensor's bytes, aligned, and stays mapped until
                // `f` returns; nothing writes through the view (it is only copied from).
                unsafe { Tensor::from_blob(data.as_ptr(), &shape, &[], Kind::Float, tch::Device::Cpu) }
            } else {
                let t = Tensor::f_from_data_size(data, &shape, kind)
                    .with_context(|| format!("{}: tensor {name}", file.display()))?;
                if matches!(kind, Kind::Half | Kind::BFloat16 | Kind::Double) { t.to_kind(Kind::Float) } else { t }
            };
            if out.insert(canon.clone(), t).is_some() {
                bail!("{}: tensor {canon} appears twice (under two naming variants)", file.display());
            }
        }
    }
    let result = f(out);
    drop(maps);
    result
}

/// Copies `weights` into `vs`. Parameters missing from the file are fine for task heads (they
/// keep their fresh initialisation); for the encoder they mean config and weights disagree.
pub(crate) fn load_weights(
    vs: &VarStore,
    family: &Family,
    mut weights: BTreeMap<String, Tensor>,
) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    let mut missing_encoder = Vec::new();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in &vars {
        match weights.remove(name) {
            Some(src) => {
                if !src.is_floating_point() {
                    bail!(
                        "tensor {name} is {:?}, not a float: int8 weights need an int8 model's config.json",
                        src.kind()
                    );
                }
                if src.size() != var.size() {
                    bail!(
                        "tensor {name} has shape {:?} in the checkpoint but the config implies {:?}{}",
                        src.size(),
                        var.size(),
                        if name.starts_with(family.heads.classifier) {
                            " (a different number of labels: fine-tune from the base model or pass matching labels)"
                        } else {
                            ""
                        }
                    );
                }
                tch::no_grad(|| var.shallow_clone().copy_(&src));
            }
            None if family.is_head_tensor(name) => report.initialised.push(name.clone()),
            None => missing_encoder.push(name.clone()),
        }
    }
    if !missing_encoder.is_empty() {
        bail!(
            "the checkpoint lacks {} encoder tensor(s) the config implies, e.g. {} (config.json does not match the weights)",
            missing_encoder.len(),
            missing_encoder[0]
        );
    }
    let (unused, unknown): (Vec<String>, Vec<String>) = weights.into_keys().partition(|n| family.is_head_tensor(n));
    if let Some(first) = unknown.first() {
        bail!(
            "unexpected tensor {first} in the checkpoint{} (config.json does not match the weights?)",
            if unknown.len() > 1 { format!(" and {} more", unknown.len() - 1) } else { String::new() }
        );
    }
    report.unused = unused;
    Ok(report)
}

/// A CPU, contiguous tensor seen as safetensors data, without copying its bytes.
struct TensorBytes {
    tensor: Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl View for &TensorBytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let len = self.data_len();
        if len == 0 {
            return (&[][..]).into();
        }
        // SAFETY: `tensor` is contiguous, on the CPU, `len` bytes long, and lives as long as
        // `self`; nothing writes to it while it is being serialised.
        unsafe { std::slice::from_raw_parts(self.tensor.data_ptr() as *const u8, len) }.into()
    }
    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.kind().elt_size_in_bytes()
    }
}

/// The tensors on the CPU, contiguous (CPU tensors usually as they are, without a copy).
fn prepare(tensors: &BTreeMap<String, Tensor>) -> Result<Vec<(String, TensorBytes)>> {
    let mut prepared = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let tensor = t.detach().to_device(Device::Cpu).contiguous();
        let dtype = match tensor.kind() {
            Kind::Float => Dtype::F32,
            Kind::BFloat16 => Dtype::BF16,
            Kind::Half => Dtype::F16,
            Kind::Double => Dtype::F64,
            Kind::Int64 => Dtype::I64,
            Kind::Int => Dtype::I32,
            Kind::Uint8 => Dtype::U8,
            Kind::Int8 => Dtype::I8,
            k => bail!("tensor {name}: kind {k:?} cannot be saved"),
        };
        let shape = tensor.size().iter().map(|&d| d as usize).collect();
        prepared.push((name.clone(), TensorBytes { tensor, dtype, shape }));
    }
    Ok(prepared)
}

/// Writes tensors (any device, float kinds) as a safetensors file with transformers' metadata,
/// atomically, streamed from the tensors' own memory: building the file in memory first held
/// the data two more times (for a checkpoint's optimizer state, 4x the model).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let prepared = prepare(tensors)?;
    let metadata = Some(std::collections::HashMap::from([("format".to_string(), "pt".to_string())]));
    atomic_write_with(path, |tmp| {
        Ok(safetensors::serialize_to_file(prepared.iter().map(|(n, b)| (n.as_str(), b)), metadata, tmp)?)
    })
}
