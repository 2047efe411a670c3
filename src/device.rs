//! Where tensors run, and how many CPU threads libtorch uses.

use anyhow::{Result, bail};
use tch::Device;

/// `cpu`, `cuda`, `cuda:N`, or `auto` (the first GPU when one is usable, else the CPU).
pub fn parse_device(spec: &str) -> Result<Device> {
    Ok(match spec {
        "cpu" => Device::Cpu,
        "auto" => Device::cuda_if_available(),
        "cuda" => cuda(0)?,
        s => match s.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => cuda(i)?,
            None => bail!("unknown device {spec:?} (expected cpu, cuda, cuda:N or auto)"),
        },
    })
}

fn cuda(index: usize) -> Result<Device> {
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        bail!("--device cuda:{index} asked for, but libtorch sees {count} CUDA device(s)");
    }
    Ok(Device::Cuda(index))
}

/// Intra-op threads: the user's number, else one per physical core (hyper-threads slow
/// libtorch's GEMMs down rather than up).
pub fn set_threads(threads: Option<usize>) {
    let n = threads.unwrap_or_else(physical_cores);
    tch::set_num_threads(n as i32);
}

fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // /proc/cpuinfo lists (physical id, core id) per logical CPU on Linux.
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return logical };
    let mut cores = std::collections::HashSet::new();
    let mut phys = None;
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("physical id") {
            phys = v.trim_start_matches([' ', '\t', ':']).parse::<u32>().ok();
        } else if let Some(v) = line.strip_prefix("core id")
            && let Ok(core) = v.trim_start_matches([' ', '\t', ':']).parse::<u32>()
        {
            cores.insert((phys, core));
        }
    }
    // In a container the cpuinfo may list the host's cores: never exceed what we may use.
    if cores.is_empty() { logical } else { cores.len().min(logical) }
}

unsafe extern "C" {
    fn bertkit_autocast_enter(cuda: i32) -> i32;
    fn bertkit_autocast_exit(cuda: i32, previous: i32) -> i32;
}

/// Mixed precision for forward passes: bf16 autocast (matmuls in bf16, reductions and weights in
/// fp32), as `torch.autocast(device, dtype=torch.bfloat16)`. Backward needs no autocast.
#[derive(Debug, Clone, Copy)]
pub struct Autocast {
    enabled: bool,
    cuda: bool,
}

impl Autocast {
    pub fn new(precision: crate::train::Precision, device: Device) -> Self {
        Autocast { enabled: precision == crate::train::Precision::Bf16, cuda: device.is_cuda() }
    }

    pub fn off() -> Self {
        Autocast { enabled: false, cuda: false }
    }

    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        if !self.enabled {
            return f();
        }
        let cuda = i32::from(self.cuda);
        // SAFETY: plain C calls into libtorch's thread-local autocast state; no pointers.
        let previous = unsafe { bertkit_autocast_enter(cuda) };
        assert!(previous >= 0, "libtorch refused to enable autocast");
        let result = f();
        // SAFETY: as above; restores the state saved by the matching enter.
        unsafe { bertkit_autocast_exit(cuda, previous) };
        result
    }
}
