//! Where tensors run, and how many CPU threads libtorch uses.

use anyhow::{Result, bail};
use tch::{Device, Tensor};

/// `cpu`, `cuda`, `cuda:N`, or `auto` (the first GPU when one is usable, else the CPU).
pub fn parse_device(spec: &str) -> Result<Device> {
    Ok(match spec {
        "cpu" => Device::Cpu,
        "auto" if nvidia_driver_present() && load_libtorch_cuda().is_ok() => Device::cuda_if_available(),
        "auto" => Device::Cpu,
        "cuda" => cuda(0)?,
        s => match s.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => cuda(i)?,
            None => bail!("unknown device {spec:?} (expected cpu, cuda, cuda:N or auto)"),
        },
    })
}

fn nvidia_driver_present() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists() || std::path::Path::new("/proc/driver/nvidia/version").exists()
}

/// libtorch's CUDA half (and the CUDA libraries behind it) is loaded only when a GPU is wanted:
/// linking it always cost every CPU run ~400 MB of resident memory and start-up time. Loading
/// it registers libtorch's CUDA backend, exactly as if it had been linked.
fn load_libtorch_cuda() -> Result<()> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let name = c"libtorch_cuda.so";
            // SAFETY: dlopen with a valid C string; the handle is kept for the process lifetime.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns a C string owned by libc, valid until the next dl call.
                let why = unsafe { std::ffi::CStr::from_ptr(libc::dlerror()) };
                return Err(why.to_string_lossy().into_owned());
            }
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("cannot load libtorch's CUDA library (a CPU-only PyTorch?): {e}"))
}

fn cuda(index: usize) -> Result<Device> {
    load_libtorch_cuda()?;
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
    fn bertkit_upload_async(src: *const torch_sys::C_tensor, index: i32, out: *mut *mut torch_sys::C_tensor) -> i32;
    fn bertkit_cuda_peak_memory(index: i32, allocated: *mut i64, reserved: *mut i64) -> i32;
}

/// Peak GPU memory of this process so far, as `torch.cuda.max_memory_allocated()` /
/// `max_memory_reserved()` report it. None on the CPU.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct GpuMemory {
    /// Bytes in tensors at the peak.
    pub peak_allocated: i64,
    /// Bytes the caching allocator held from the driver at the peak (what can run out).
    pub peak_reserved: i64,
}

pub fn gpu_peak_memory(device: Device) -> Option<GpuMemory> {
    let Device::Cuda(index) = device else { return None };
    let (mut peak_allocated, mut peak_reserved) = (0, 0);
    // SAFETY: two valid out-pointers.
    let rc = unsafe { bertkit_cuda_peak_memory(index as i32, &mut peak_allocated, &mut peak_reserved) };
    (rc == 0).then_some(GpuMemory { peak_allocated, peak_reserved })
}

/// A batch tensor built on the host, on `device`. To a GPU it goes through page-locked memory
/// without waiting: a plain copy would make the host wait until the GPU has finished all the
/// work queued before it, at every micro-batch.
pub fn upload(t: &Tensor, device: Device) -> Tensor {
    let Device::Cuda(index) = device else { return t.to_device(device) };
    // SAFETY: a live tensor handle in; on success the C++ side allocates the copy for us.
    unsafe { crate::torch_failure::csrc_tensor(|out| bertkit_upload_async(t.as_ptr(), index as i32, out)) }
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
