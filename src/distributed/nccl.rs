//! The NCCL backend: `csrc/nccl.cpp`, compiled by build.rs into a small library linked against
//! libtorch_cuda and embedded in the binary, is loaded from memory only when a run asks for
//! NCCL, after libtorch_cuda itself; a CPU run maps none of it. Built only where build.rs found
//! a CUDA PyTorch and the NCCL and CUDA headers (`cfg(nccl_plugin)`).

use std::ffi::{c_char, c_void};
#[cfg(nccl_plugin)]
use std::sync::OnceLock;

use anyhow::Result;
#[cfg(not(nccl_plugin))]
use anyhow::bail;

/// `bertkit_nccl_backend` of csrc/nccl.cpp.
pub(crate) type BackendFn = unsafe extern "C" fn(
    store: *mut c_void,
    rank: i32,
    world: i32,
    timeout_ms: i64,
    out: *mut *mut c_void,
    error: *mut c_char,
    cap: i64,
) -> i32;

#[cfg(not(nccl_plugin))]
pub(crate) fn backend_fn() -> Result<BackendFn> {
    bail!(
        "this bertkit was built without NCCL (its build found no CUDA PyTorch or no NCCL/CUDA headers: \
         scripts/setup.sh installs them); --dist-backend gloo works on GPUs too, through the host"
    )
}

/// The NCCL backend's constructor, loading libtorch_cuda and the embedded library once.
#[cfg(nccl_plugin)]
pub(crate) fn backend_fn() -> Result<BackendFn> {
    static LOADED: OnceLock<Result<usize, String>> = OnceLock::new();
    let address = LOADED.get_or_init(|| load().map_err(|e| format!("{e:#}"))).clone();
    // SAFETY: the address of `bertkit_nccl_backend`, whose signature is BackendFn's.
    address.map(|a| unsafe { std::mem::transmute::<usize, BackendFn>(a) }).map_err(anyhow::Error::msg)
}

#[cfg(nccl_plugin)]
fn load() -> Result<usize> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};

    use anyhow::{Context, bail};

    static LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libbertkit_nccl.so"));
    crate::ffi::load_libtorch_cuda()?;
    // SAFETY: memfd_create with a valid name; the descriptor is owned by the File below.
    let fd = unsafe { libc::memfd_create(c"bertkit_nccl".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        bail!("memfd_create: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(LIBRARY).context("writing the NCCL library to memory")?;
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    // SAFETY: dlopen/dlsym with valid C strings; the handle stays open for the process.
    let symbol = unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            bail!("loading the NCCL library: {}", std::ffi::CStr::from_ptr(libc::dlerror()).to_string_lossy());
        }
        libc::dlsym(handle, c"bertkit_nccl_backend".as_ptr())
    };
    if symbol.is_null() {
        bail!("the NCCL library has no bertkit_nccl_backend");
    }
    Ok(symbol as usize)
}

#[cfg(all(test, nccl_plugin))]
mod tests {
    use std::time::Duration;

    use crate::distributed::World;
    use crate::distributed::ffi::GroupHandle;

    /// The embedded library loads beside libtorch_cuda and builds c10d's NCCL backend through
    /// the group's store; without a GPU (CI), ProcessGroupNCCL's own refusal comes back.
    #[test]
    fn the_embedded_library_builds_a_nccl_backend_or_says_why_not() {
        let nccl = super::backend_fn().expect("the NCCL library loads");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let world = World { rank: 0, size: 1, local_rank: 0, master_addr: "127.0.0.1".into(), master_port: port };
        match GroupHandle::init(&world, Duration::from_secs(30), Some(nccl)) {
            Ok(_) => assert!(tch::Cuda::is_available(), "a NCCL backend without a GPU"),
            Err(e) => {
                let message = format!("{e:#}");
                assert!(!tch::Cuda::is_available() && message.contains("GPU"), "{message}");
            }
        }
    }
}
