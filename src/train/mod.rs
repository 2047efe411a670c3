//! Training: optimiser and (to come) schedules, loops and checkpoints.

pub mod optim;
