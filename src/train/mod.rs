//! Training: the shared loop and what it is made of, and the two tasks that use it.

pub mod classify;
pub mod config;
pub mod log;
pub mod metrics;
pub mod optim;
pub mod pretrain;
pub mod progress;
pub mod schedule;
pub mod trainer;

pub use config::{Precision, TrainConfig};
pub use trainer::{Evaluation, Outcome, StepLoss, Stop, Task, train};
