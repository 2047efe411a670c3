//! Where a command runs: device and CPU threads, shared by the commands that run a model.

use anyhow::Result;
use tch::Device;

use crate::device::{parse_device, set_threads};

#[derive(clap::Args, Clone, Debug)]
pub struct RunFlags {
    /// cpu, cuda, cuda:N, or auto (a GPU when there is one).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads for libtorch (default: one per physical core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl RunFlags {
    /// Sets the thread count and returns the device.
    pub fn setup(&self) -> Result<Device> {
        set_threads(self.threads);
        parse_device(&self.device)
    }
}
