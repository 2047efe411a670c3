//! Training: the loop shared by fine-tuning and further pretraining (`trainer`), the run
//! directory it writes (`run_dir`), and the two objectives that use it (`classify`, `pretrain`).

pub mod classify;
pub mod config;
pub mod fingerprint;
pub mod log;
pub mod loss_scale;
pub mod loss_weights;
pub mod model_card;
pub mod optim;
pub mod pretrain;
pub mod probe;
pub mod run_dir;
pub mod schedule;
pub mod tag;
pub mod tensorboard;
pub mod trainer;

pub use config::{HyperParams, Placement, RunControl, TrainConfig};
pub use trainer::{Evaluation, Objective, Outcome, StepLoss, Stop, train};
