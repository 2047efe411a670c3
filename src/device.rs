//! Where tensors run, and how many CPU threads libtorch uses.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::ffi;

/// Where a command runs: the flags every command that runs a model has.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
pub struct DeviceFlags {
    /// cpu, cuda, cuda:N, or auto (a GPU when there is one).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads for libtorch (default: one per physical core).
    #[arg(long, value_parser = crate::values::positive)]
    pub threads: Option<usize>,
}

impl DeviceFlags {
    /// Sets the thread count and returns the device.
    pub fn setup(&self) -> Result<Device> {
        set_threads(self.threads);
        parse_device(&self.device)
    }
}

/// `cpu`, `cuda`, `cuda:N`, or `auto` (a GPU when one is usable, else the CPU). `cuda` and
/// `auto` mean this process's GPU: in a data-parallel run the one numbered by its local rank, as
/// torchrun scripts do with `torch.cuda.set_device(LOCAL_RANK)`; otherwise the first.
pub fn parse_device(spec: &str) -> Result<Device> {
    let own = crate::distributed::World::from_env().ok().flatten().map_or(0, |w| w.local_rank);
    Ok(match spec {
        "cpu" => Device::Cpu,
        "auto" if nvidia_driver_present() && ffi::load_libtorch_cuda().is_ok() && tch::Cuda::is_available() => {
            cuda(own)?
        }
        "auto" => Device::Cpu,
        "cuda" => cuda(own)?,
        s => match s.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => cuda(i)?,
            None => bail!("unknown device {spec:?} (expected cpu, cuda, cuda:N or auto)"),
        },
    })
}

fn nvidia_driver_present() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists() || std::path::Path::new("/proc/driver/nvidia/version").exists()
}

fn cuda(index: usize) -> Result<Device> {
    ffi::load_libtorch_cuda()?;
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        crate::error::refuse!("--device cuda:{index} asked for, but libtorch sees {count} CUDA device(s)");
    }
    Ok(Device::Cuda(index))
}

/// Intra-op threads: the user's number, else OMP_NUM_THREADS (torchrun and `bertkit launch`
/// set it per rank), else one per physical core shared among this machine's ranks
/// (hyper-threads slow libtorch's GEMMs down rather than up).
pub(crate) fn set_threads(threads: Option<usize>) {
    let env = |key: &str| std::env::var(key).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0);
    let n = threads
        .or_else(|| env("OMP_NUM_THREADS"))
        .unwrap_or_else(|| (physical_cores() / env("LOCAL_WORLD_SIZE").unwrap_or(1)).max(1));
    tch::set_num_threads(n as i32);
}

pub fn physical_cores() -> usize {
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

/// Peak GPU memory of this process so far, as `torch.cuda.max_memory_allocated()` /
/// `max_memory_reserved()` report it. None on the CPU.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct GpuMemory {
    /// Bytes in tensors at the peak.
    pub peak_allocated: i64,
    /// Bytes the caching allocator held from the driver at the peak (what can run out).
    pub peak_reserved: i64,
}

pub(crate) fn gpu_peak_memory(device: Device) -> Option<GpuMemory> {
    let Device::Cuda(index) = device else { return None };
    let (peak_allocated, peak_reserved) = ffi::cuda_peak_memory(index)?;
    Some(GpuMemory { peak_allocated, peak_reserved })
}

/// The most resident memory this process has held so far, in bytes (the host side of a GPU
/// run; all of a CPU run).
pub(crate) fn peak_rss() -> Option<u64> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    // Linux reports kilobytes.
    ok.then(|| usage.ru_maxrss as u64 * 1024)
}

/// A batch tensor built on the host, on `device`. To a GPU it goes through page-locked memory
/// without waiting: a plain copy would make the host wait until the GPU has finished all the
/// work queued before it, at every micro-batch.
pub(crate) fn upload(t: &Tensor, device: Device) -> Tensor {
    let Device::Cuda(index) = device else { return t.to_device(device) };
    ffi::upload_async(t, index)
}

/// Numeric precision of forward passes, as the `--precision` flag names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// What the device computes fast: bf16 on a CPU with avx512_bf16 or AMX and on GPUs of
    /// compute capability 8.0 or more, fp16 on 7.x (T4, V100, where bf16 is emulated), else fp32.
    Auto,
    Fp32,
    /// bf16 autocast with fp32 master weights.
    Bf16,
    /// fp16 autocast with fp32 master weights; training scales the loss as PyTorch's GradScaler
    /// does (fp16's narrow range would flush small gradients to zero).
    Fp16,
}

/// Whether bf16 matrix products run natively on `device` (x86: avx512_bf16 or AMX; Arm: the
/// bf16 extension; CUDA: compute capability 8.0 or more). On a CPU without them, libtorch
/// emulates them: measured on a 2-core AVX2 EPYC, inference 7x and MLM training 28x slower
/// than fp32.
pub(crate) fn native_bf16(device: Device) -> bool {
    match device {
        Device::Cpu => cpu_flags().iter().any(|f| ["avx512_bf16", "amx_bf16", "bf16"].contains(&f.as_str())),
        Device::Cuda(i) => cuda_capability(i).is_some_and(|(major, _)| major >= 8),
        _ => false,
    }
}

/// The CPU's vector extensions that decide which of libtorch's kernels run (avx2, avx512f,
/// avx512_vnni, avx512_bf16, amx_*), for reports beside a timing.
pub fn cpu_features() -> String {
    const KNOWN: [&str; 7] = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"];
    let flags = cpu_flags();
    KNOWN.iter().filter(|k| flags.iter().any(|f| f == *k)).copied().collect::<Vec<_>>().join(" ")
}

/// The CPU's feature flags as Linux lists them (`flags` on x86, `Features` on Arm; empty elsewhere).
fn cpu_flags() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags").or_else(|| l.strip_prefix("Features")));
    let flags = flags.unwrap_or("");
    flags.trim_start_matches([' ', '\t', ':']).split_whitespace().map(str::to_string).collect()
}

/// GPU `index`'s compute capability (major, minor), from the CUDA driver (libcuda, loaded here
/// only to ask: libtorch links no CUDA runtime a CPU run could ask instead); None without one.
fn cuda_capability(index: usize) -> Option<(i32, i32)> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    type Get = unsafe extern "C" fn(*mut i32, i32) -> i32;
    type Attribute = unsafe extern "C" fn(*mut i32, i32, i32) -> i32;
    const MAJOR: i32 = 75; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    const MINOR: i32 = 76;
    // SAFETY: dlopen/dlsym of the driver's documented C entry points, called with their
    // signatures; every result code is checked before a value is read.
    unsafe {
        let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if lib.is_null() {
            return None;
        }
        let symbol = |name: &std::ffi::CStr| libc::dlsym(lib, name.as_ptr());
        let (init, get, attribute) = (symbol(c"cuInit"), symbol(c"cuDeviceGet"), symbol(c"cuDeviceGetAttribute"));
        if init.is_null() || get.is_null() || attribute.is_null() {
            return None;
        }
        type Symbol = *mut libc::c_void;
        let init = std::mem::transmute::<Symbol, Init>(init);
        let get = std::mem::transmute::<Symbol, Get>(get);
        let attribute = std::mem::transmute::<Symbol, Attribute>(attribute);
        let (mut device, mut major, mut minor) = (0, 0, 0);
        let ok = init(0) == 0
            && get(&mut device, index as i32) == 0
            && attribute(&mut major, MAJOR, device) == 0
            && attribute(&mut minor, MINOR, device) == 0;
        ok.then_some((major, minor))
    }
}

/// What `--precision auto` takes on a GPU of compute capability `capability`: bf16 from 8.0
/// (Ampere on), fp16 with loss scaling on 7.x (Volta, Turing: fp16 tensor cores, bf16 emulated
/// and slow), fp32 below or when the capability is unknown.
pub(crate) fn auto_for_gpu(capability: Option<(i32, i32)>) -> Precision {
    match capability {
        Some((major, _)) if major >= 8 => Precision::Bf16,
        Some((7, _)) => Precision::Fp16,
        _ => Precision::Fp32,
    }
}

/// Mixed precision for forward passes: autocast (matmuls in bf16 or fp16, reductions and weights
/// in fp32), as `torch.autocast(device, dtype=...)`. Backward needs no autocast.
#[derive(Debug, Clone, Copy)]
pub struct Autocast {
    precision: Precision,
    cuda: bool,
}

impl Autocast {
    /// `auto` resolved for `device`; the choice is logged, and bf16 asked for where it is
    /// emulated draws a warning.
    pub fn new(precision: Precision, device: Device) -> Self {
        let (chosen, why) = match (precision, device) {
            (Precision::Auto, Device::Cuda(i)) => {
                let capability = cuda_capability(i);
                let why = capability.map_or("auto: compute capability unknown".to_string(), |(major, minor)| {
                    format!("auto: compute capability {major}.{minor}")
                });
                (auto_for_gpu(capability), why)
            }
            (Precision::Auto, _) if native_bf16(device) => (Precision::Bf16, "auto: native bf16 on this CPU".into()),
            (Precision::Auto, _) => (Precision::Fp32, "auto: no native bf16 on this CPU".into()),
            (Precision::Bf16, _) if !native_bf16(device) => {
                tracing::warn!(
                    "--precision bf16: this device has no native bf16 (a CPU without avx512_bf16 or AMX, a GPU \
                     under compute capability 8.0), so bf16 runs several times slower than fp32 here"
                );
                (Precision::Bf16, "--precision".into())
            }
            (p, _) => (p, "--precision".into()),
        };
        let name = match chosen {
            Precision::Bf16 => "bf16 autocast",
            Precision::Fp16 => "fp16 autocast",
            _ => "fp32",
        };
        tracing::info!("precision: {name} ({why})");
        Autocast { precision: chosen, cuda: device.is_cuda() }
    }

    pub fn off() -> Self {
        Autocast { precision: Precision::Fp32, cuda: false }
    }

    /// What forward passes compute in, once `auto` is resolved.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// `f` under autocast; the previous state comes back afterwards, also when `f` panics.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.precision == Precision::Fp32 {
            return f();
        }
        let _on = AutocastGuard::enter(self.cuda, self.precision == Precision::Fp16);
        f()
    }
}

/// Autocast switched on; dropping it restores the state found.
struct AutocastGuard {
    cuda: bool,
    previous: bool,
}

impl AutocastGuard {
    fn enter(cuda: bool, half: bool) -> Self {
        match ffi::autocast_enter(cuda, half) {
            Ok(previous) => AutocastGuard { cuda, previous },
            Err(e) => crate::torch_failure::fail(&format!("{e:#}")),
        }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // Not a panic: this may run while a panic unwinds, where a second one would abort.
        if let Err(e) = ffi::autocast_exit(self.cuda, self.previous) {
            tracing::error!("{e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_state_comes_back_after_a_panic() {
        let bf16 = Autocast { precision: Precision::Bf16, cuda: false };
        let a = Tensor::ones([4, 4], (tch::Kind::Float, Device::Cpu));
        assert_eq!(bf16.run(|| a.matmul(&a)).kind(), tch::Kind::BFloat16, "autocast on inside");
        let caught = crate::torch_failure::catch(|| bf16.run(|| panic!("Torch(\"inside autocast\")")));
        assert!(caught.is_err());
        assert_eq!(a.matmul(&a).kind(), tch::Kind::Float, "autocast off again after the panic");
    }

    #[test]
    fn explicit_precisions_are_kept_and_auto_follows_the_hardware() {
        for p in [Precision::Fp32, Precision::Bf16, Precision::Fp16] {
            assert_eq!(Autocast::new(p, Device::Cpu).precision(), p);
        }
        let auto = Autocast::new(Precision::Auto, Device::Cpu).precision();
        assert_eq!(auto == Precision::Bf16, native_bf16(Device::Cpu));
    }

    #[test]
    fn auto_on_a_gpu_follows_its_compute_capability() {
        assert_eq!(auto_for_gpu(Some((9, 0))), Precision::Bf16, "H100");
        assert_eq!(auto_for_gpu(Some((8, 0))), Precision::Bf16, "A100");
        assert_eq!(auto_for_gpu(Some((7, 5))), Precision::Fp16, "T4");
        assert_eq!(auto_for_gpu(Some((7, 0))), Precision::Fp16, "V100");
        assert_eq!(auto_for_gpu(Some((6, 1))), Precision::Fp32, "P4");
        assert_eq!(auto_for_gpu(None), Precision::Fp32);
    }

    #[test]
    fn fp16_autocast_computes_matrix_products_in_half() {
        let fp16 = Autocast { precision: Precision::Fp16, cuda: false };
        let a = Tensor::ones([4, 4], (tch::Kind::Float, Device::Cpu));
        assert_eq!(fp16.run(|| a.matmul(&a)).kind(), tch::Kind::Half);
    }
}
