//! What every training recipe does before and after its own part, written once: the device and
//! its threads, the process group, the seed, the model directory with the run's dropout, how
//! the model loads, the global batch, and at the end the model card.

use anyhow::Result;
use tch::Device;

use super::Trained;
use crate::device::Autocast;
use crate::pretrained::{LoadOptions, ModelDir};
use crate::train::model_card::ModelCard;
use crate::train::{Outcome, Stop, TrainConfig};

/// The device, joined to the process group of a data-parallel run (none otherwise), with the
/// seed set: fresh heads start from it, as with Trainer's `set_seed` before the model is built.
pub(crate) fn start(cfg: &TrainConfig) -> Result<Device> {
    let device = cfg.placement.device.setup()?;
    cfg.placement.join_group(device)?;
    tch::manual_seed(cfg.hyper.seed as i64);
    Ok(device)
}

/// The model to train: `model`, or the checkpoint being resumed.
pub(crate) fn open_model(cfg: &TrainConfig, model: &str) -> Result<ModelDir> {
    let dir = ModelDir::open(&cfg.control.model_source(model))?;
    if crate::pretrained::int8::is_int8(&dir.config)? {
        crate::error::refuse!(
            "--model {}: an int8 model is for inference (its layers have no gradients); train the float model it came from",
            dir.dir.display()
        );
    }
    Ok(dir)
}

/// `--dropout`, written into the config the model is built from.
pub(crate) fn set_dropout(cfg: &TrainConfig, model: &mut ModelDir) -> Result<()> {
    match cfg.hyper.dropout {
        Some(p) => model.set_dropout(p),
        None => Ok(()),
    }
}

/// How the model loads for training: its precision, gradient checkpointing and unpadding.
pub(crate) fn load_options(cfg: &TrainConfig, device: Device, new_head: bool) -> LoadOptions {
    let autocast = Autocast::new(cfg.placement.precision, device);
    let gradient_checkpointing = cfg.placement.gradient_checkpointing;
    LoadOptions { device, autocast, gradient_checkpointing, new_head, unpadding: cfg.placement.unpad }
}

/// A step's batch over all ranks: `--batch-size` is per rank, as per_device_train_batch_size.
pub(crate) fn global_batch(cfg: &TrainConfig) -> usize {
    cfg.hyper.batch_size * crate::distributed::world_size()
}

/// A run that finished (or stopped early) gets its model card, written by rank 0.
pub(crate) fn finish(outcome: Outcome, cfg: &TrainConfig, card: &ModelCard) -> Result<Trained> {
    let finished = matches!(outcome.stop, Stop::Finished | Stop::EarlyStopped);
    if finished && crate::distributed::is_main() {
        card.write(&cfg.control.output, &outcome)?;
    }
    Ok(Trained { outcome, output: cfg.control.output.clone(), tuned: None })
}
