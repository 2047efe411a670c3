//! Hugging Face model directories: opening one (or a hub id), loading it as an encoder with a
//! task head (the one loader every command uses), and writing a model back out so that
//! `transformers.from_pretrained` loads it unchanged.

pub mod extend;
mod hub;
pub mod int8;
pub mod sentence;
pub mod weights;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub use crate::encoder::ModelConfig;
pub use sentence::SentenceConfig;
pub use weights::{LoadReport, TensorInfo, read_weights, write_safetensors};

use crate::data::Collator;
use crate::device::Autocast;
use crate::encoder::{Dims, Family, Unpadding, family_of};
use crate::error::Marked;
use crate::fsutil::atomic_write;
use crate::task::{TaskModel, set_cross_encoder};
use crate::tokenizer::Tokenizer;

/// Tokenizer files copied along with a model so the output directory is self-contained.
const TOKENIZER_FILES: [&str; 4] = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"];

/// A model directory on disk, its config and its family: cheap to open (no weights read), so
/// commands check their flags against it before anything is loaded or written.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub family: &'static Family,
    pub dims: Dims,
}

/// Whether `spec` names a model on the Hugging Face hub (`name` or `owner/name`) rather than a
/// local directory; one that does not exist and does not look like a hub id is a mistyped path.
pub(crate) fn is_hub_id(spec: &str) -> bool {
    !Path::new(spec).exists() && !spec.starts_with(['/', '.', '~']) && spec.matches('/').count() <= 1
}

impl ModelDir {
    /// A model without a task head given `from`'s labels and task, for a fresh head (seeded); one
    /// with a head is left as it is.
    pub fn adopt_head(&mut self, from: &ModelDir, seed: i64) -> Result<()> {
        if self.has_task_head()? {
            return Ok(());
        }
        tracing::info!(
            "{}: no task head; a fresh one with {}'s labels (seed {seed})",
            self.display_name(),
            from.display_name()
        );
        self.config.set_labels(&from.config.label_names());
        if let Some(p) = from.config.problem_type() {
            self.config.set("problem_type", serde_json::json!(p));
        }
        self.config.set("architectures", serde_json::json!(from.config.architectures()));
        tch::manual_seed(seed);
        Ok(())
    }

    /// `--max-len` as given (checked against the positions the model's embeddings cover), or by
    /// default 512 tokens, fewer where the model covers fewer.
    pub fn max_len(&self, given: Option<usize>) -> anyhow::Result<usize> {
        match given {
            Some(len) => self.check_max_len("max-len", len).map(|()| len),
            None => Ok(self.dims.max_positions.min(512) as usize),
        }
    }

    /// The longest input in tokens where a sentence-transformers model may say it: `given`
    /// (checked as `max_len` checks it), else its `max_seq_length` (`saved`, cut to the
    /// positions), else `max_len`'s default.
    pub fn input_len(&self, given: Option<usize>, saved: Option<usize>) -> anyhow::Result<usize> {
        match (given, saved) {
            (None, Some(saved)) => Ok(saved.min(self.dims.max_positions as usize)),
            (given, _) => self.max_len(given),
        }
    }

    /// `--{flag} {len}` against the `max_positions` the model's position embeddings cover.
    pub fn check_max_len(&self, flag: &str, len: usize) -> anyhow::Result<()> {
        if len as i64 > self.dims.max_positions {
            crate::error::refuse!(
                "--{flag} {len} exceeds the {} positions of {} (allowed: 3 to {})",
                self.dims.max_positions,
                self.dir.display(),
                self.dims.max_positions
            );
        }
        Ok(())
    }

    /// A local directory, or a Hugging Face hub id fetched into the hub cache.
    pub fn open(spec: &str) -> Result<Self> {
        Self::find(spec).model_error()
    }

    fn find(spec: &str) -> Result<Self> {
        let dir = if Path::new(spec).exists() {
            PathBuf::from(spec)
        } else if !is_hub_id(spec) {
            bail!("{spec}: no such model directory");
        } else {
            hub::download(spec)?
        };
        if !dir.is_dir() {
            bail!("{spec}: not a model directory");
        }
        let path = dir.join("config.json");
        let mut config = ModelConfig::from_file(&path)?;
        // Where a CrossEncoder's files say how its scores are made, the config says it too.
        if let Some(activation) = sentence::cross_encoder_activation(&dir, &config)? {
            set_cross_encoder(&mut config, &activation);
        }
        let family = family_of(&config).with_context(|| path.display().to_string())?;
        let dims = (family.dims)(&config).with_context(|| path.display().to_string())?;
        Ok(ModelDir { dir, config, family, dims })
    }

    /// Overrides the hidden and attention dropout (`--dropout`), in the config that is saved too.
    pub fn set_dropout(&mut self, p: f64) -> Result<()> {
        for key in self.family.dropout_keys {
            self.config.set(key, Value::from(p));
        }
        self.dims = (self.family.dims)(&self.config)?;
        Ok(())
    }

    /// What the weight files hold, by canonical name, from their headers alone.
    pub fn tensor_index(&self) -> Result<BTreeMap<String, TensorInfo>> {
        weights::tensor_index(&self.dir, self.family)
    }

    /// Whether the checkpoint has a trained classification head.
    pub fn has_classifier(&self) -> Result<bool> {
        let prefix = format!("{}.", self.family.heads.classifier);
        Ok(self.tensor_index()?.keys().any(|name| name.starts_with(&prefix)))
    }

    /// Whether the checkpoint holds a task head: a classifier, or a reader's `qa_outputs`.
    pub fn has_task_head(&self) -> Result<bool> {
        let prefixes = [self.family.heads.classifier, self.family.heads.qa_outputs].map(|h| format!("{h}."));
        Ok(self.tensor_index()?.keys().any(|name| prefixes.iter().any(|p| name.starts_with(p))))
    }

    /// The directory's name, for titles and messages.
    pub fn display_name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| self.dir.display().to_string())
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub device: Device,
    pub autocast: Autocast,
    pub gradient_checkpointing: bool,
    /// Start the task head fresh even where the checkpoint has one (`--new-head`).
    pub new_head: bool,
    /// Whether padded batches run packed (`encoder::packing`).
    pub unpadding: Unpadding,
}

impl LoadOptions {
    /// For evaluation and inspection: no recomputation, the checkpoint's own head.
    pub fn inference(device: Device, autocast: Autocast) -> Self {
        LoadOptions { device, autocast, gradient_checkpointing: false, new_head: false, unpadding: Unpadding::Auto }
    }
}

/// For inference on the CPU in float32.
impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions::inference(Device::Cpu, Autocast::off())
    }
}

/// A loaded model: encoder and task head, their parameters, their tokenizer.
pub struct Pretrained<M> {
    pub model: M,
    pub vs: VarStore,
    pub config: ModelConfig,
    pub family: &'static Family,
    pub dims: Dims,
    pub tokenizer: Tokenizer,
    pub report: LoadReport,
    pub device: Device,
    pub autocast: Autocast,
    /// Where the tokenizer files come from (copied into every directory saved).
    source: PathBuf,
    /// Checkpoint tensors this model does not use, written back unchanged (`carry_unused`).
    carried: BTreeMap<String, Tensor>,
}

/// The one loader: `dir` (its config as the caller left it: labels, dropout) built as encoder
/// and task head `M`, weights filled from the files, heads the files lack created as
/// transformers creates them (listed in one warning).
pub fn load<M: TaskModel>(dir: &ModelDir, opts: &LoadOptions) -> Result<Pretrained<M>> {
    build::<M>(dir, opts).model_error()
}

fn build<M: TaskModel>(dir: &ModelDir, opts: &LoadOptions) -> Result<Pretrained<M>> {
    let tokenizer = Tokenizer::from_dir(&dir.dir)?;
    tokenizer.check_fits(dir.dims.vocab_size, &dir.dir)?;
    let vs = VarStore::new(opts.device);
    let root = vs.root();
    let encoder = (dir.family.build)(&root, &dir.config, M::pooler(dir.family))?;
    let mut model = M::new(&root, encoder, dir.family, &dir.dims, &dir.config);
    model.encoder_mut().set_gradient_checkpointing(opts.gradient_checkpointing);
    model.encoder_mut().set_unpadding(opts.unpadding);
    let fresh = opts.new_head.then(|| M::head_path(dir.family)).flatten().map(|p| format!("{p}."));
    let quantized = int8::is_int8(&dir.config).with_context(|| dir.dir.display().to_string())?;
    if quantized && opts.device != Device::Cpu {
        bail!("{}: an int8 model runs on the CPU only (libtorch's quantized kernels): --device cpu", dir.dir.display());
    }
    let mut int8_layers = BTreeMap::new();
    let report = weights::with_mapped_weights(&dir.dir, dir.family, |mut weights| {
        if quantized {
            int8_layers = int8::take_int8(&mut weights)?;
        }
        if let Some(prefix) = &fresh {
            weights.retain(|name, _| !name.starts_with(prefix.as_str()));
        }
        weights::load_weights(&vs, dir.family, weights)
    })
    .with_context(|| format!("loading {}", dir.dir.display()))?;
    int8::apply(&vs, model.encoder_mut(), int8_layers).with_context(|| format!("loading {}", dir.dir.display()))?;
    report.log(&dir.dir);
    if let Some(note) = dir.family.mlm_head_elsewhere(&report.initialised, &report.unused) {
        tracing::warn!("{}: {note}", dir.dir.display());
    }
    Ok(Pretrained {
        model,
        vs,
        config: dir.config.clone(),
        family: dir.family,
        dims: dir.dims,
        tokenizer,
        report,
        device: opts.device,
        autocast: opts.autocast,
        source: dir.dir.clone(),
        carried: BTreeMap::new(),
    })
}

impl<M: TaskModel> Pretrained<M> {
    /// The model directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.source
    }

    pub fn collator(&self) -> Collator {
        Collator { pad_id: self.tokenizer.pad_id }
    }

    /// Keeps the checkpoint's tensors this model has no use for (BERT's pooler and a classifier
    /// under an MLM head) and writes them back unchanged with every save, so that further
    /// pretraining changes only what it trains and a model fine-tuned from its output starts
    /// from the original's pooler, as one fine-tuned from the original does.
    pub fn carry_unused(&mut self) -> Result<()> {
        self.carry_unused_where(|_| true)
    }

    /// The same for the unused tensors whose (canonical) name `keep` accepts: an embedding
    /// model keeps its encoder's pooler, which transformers' `AutoModel` expects, and no task head.
    pub fn carry_unused_where(&mut self, keep: impl Fn(&str) -> bool) -> Result<()> {
        let unused: std::collections::BTreeSet<&String> = self.report.unused.iter().filter(|n| keep(n)).collect();
        self.carried = weights::with_mapped_weights(&self.source, self.family, |all| {
            Ok(all.into_iter().filter(|(name, _)| unused.contains(name)).map(|(name, t)| (name, t.copy())).collect())
        })?;
        if !self.carried.is_empty() {
            let names: Vec<&str> = self.carried.keys().map(String::as_str).collect();
            tracing::info!("kept unchanged in the output (not trained here): {}", names.join(", "));
        }
        Ok(())
    }

    /// Writes the model as a Hugging Face directory (`{Family}{M::ARCHITECTURE}`).
    pub fn save(&self, out: &Path) -> Result<()> {
        if int8::is_int8(&self.config)? {
            bail!(
                "{}: an int8 model is for inference; train and save the float model, then quantize it",
                self.source.display()
            );
        }
        let architecture = self.family.architecture(M::ARCHITECTURE);
        let mut config = self.config.clone();
        // Old configs may lack it; AutoConfig needs it to find the family.
        config.set("model_type", Value::from(self.family.model_type));
        let mut tensors: BTreeMap<String, Tensor> =
            self.carried.iter().map(|(name, t)| (name.clone(), t.shallow_clone())).collect();
        tensors.extend(self.vs.variables());
        save_pretrained(out, &tensors, &config, &architecture, &self.source)
    }
}

/// Writes an HF model directory: config.json (with `architectures`), model.safetensors (`tensors`
/// under their canonical names) and the tokenizer files from `tokenizer_from`. Each file is written to a temporary name and renamed,
/// so a crash leaves either the old file or the new one.
pub(crate) fn save_pretrained(
    out: &Path,
    tensors: &BTreeMap<String, Tensor>,
    config: &ModelConfig,
    architecture: &str,
    tokenizer_from: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_safetensors(&out.join("model.safetensors"), tensors)?;
    let mut config = config.clone();
    config.set("architectures", Value::from(vec![architecture]));
    config.set("dtype", Value::from("float32"));
    config.remove("torch_dtype");
    atomic_write(&out.join("config.json"), serde_json::to_string_pretty(config.json())?.as_bytes())?;
    let same_dir = tokenizer_from.canonicalize().ok() == out.canonicalize().ok();
    for name in TOKENIZER_FILES {
        let src = tokenizer_from.join(name);
        if src.exists() && !same_dir {
            let bytes = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            atomic_write(&out.join(name), &bytes)?;
        }
    }
    Ok(())
}
