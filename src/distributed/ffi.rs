//! The C entry points of `csrc/dist.cpp`, wrapped: handles that free themselves, errors that
//! carry c10d's message.

use std::ffi::{CString, c_char, c_void};
use std::time::Duration;

use anyhow::{Result, bail};
use tch::Tensor;
use torch_sys::C_tensor;

use super::World;

unsafe extern "C" {
    fn bertkit_dist_init(
        host: *const c_char,
        port: i32,
        rank: i32,
        world: i32,
        timeout_ms: i64,
        nccl: Option<super::nccl::BackendFn>,
        out: *mut *mut c_void,
    ) -> i32;
    fn bertkit_dist_free(group: *mut c_void);
    fn bertkit_dist_broadcast(group: *mut c_void, tensors: *const *const C_tensor, n: i32, root: i32) -> i32;
    fn bertkit_dist_all_reduce(group: *mut c_void, tensor: *const C_tensor, op: i32) -> i32;
    fn bertkit_dist_barrier(group: *mut c_void) -> i32;
    fn bertkit_dist_store_set(group: *mut c_void, key: *const c_char, value: *const c_char, len: i64) -> i32;
    fn bertkit_dist_store_get(group: *mut c_void, key: *const c_char, buf: *mut c_char, cap: i64) -> i32;
    fn bertkit_reducer_new(
        group: *mut c_void,
        params: *const *const C_tensor,
        n: i32,
        bucket_bytes: i64,
        find_unused: i32,
        out: *mut *mut c_void,
    ) -> i32;
    fn bertkit_reducer_prepare(reducer: *mut c_void, outputs: *const *const C_tensor, n: i32) -> i32;
    fn bertkit_reducer_free(reducer: *mut c_void);
}

/// Turns a C status into a result with c10d's message.
fn check(rc: i32) -> Result<i32> {
    if rc < 0 {
        let msg = crate::ffi::last_error();
        bail!("{}", msg.lines().next().unwrap_or("c10d failed"));
    }
    Ok(rc)
}

fn handles(tensors: &[Tensor]) -> Vec<*const C_tensor> {
    tensors.iter().map(Tensor::as_ptr).collect()
}

/// A joined process group (its store and gloo backend).
pub(crate) struct GroupHandle(*mut c_void);

// SAFETY: c10d's ProcessGroup and Store are thread-safe; the pointer is only freed in Drop.
unsafe impl Send for GroupHandle {}
unsafe impl Sync for GroupHandle {}

impl GroupHandle {
    /// `nccl`: the NCCL backend's constructor, for CUDA tensors (gloo serves them otherwise).
    pub fn init(w: &World, timeout: Duration, nccl: Option<super::nccl::BackendFn>) -> Result<Self> {
        let host = CString::new(w.master_addr.as_str())?;
        let mut out = std::ptr::null_mut();
        let ms = timeout.as_millis() as i64;
        let (port, rank, size) = (w.master_port as i32, w.rank as i32, w.size as i32);
        // SAFETY: a valid C string, function pointer and out-pointer; the group is ours to free.
        check(unsafe { bertkit_dist_init(host.as_ptr(), port, rank, size, ms, nccl, &mut out) })?;
        Ok(GroupHandle(out))
    }

    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        let h = handles(tensors);
        // SAFETY: live tensor handles for the duration of the call.
        check(unsafe { bertkit_dist_broadcast(self.0, h.as_ptr(), h.len() as i32, root as i32) }).map(drop)
    }

    pub fn all_reduce(&self, t: &Tensor, max: bool) -> Result<()> {
        // SAFETY: a live tensor handle, reduced in place.
        check(unsafe { bertkit_dist_all_reduce(self.0, t.as_ptr(), i32::from(max)) }).map(drop)
    }

    pub fn barrier(&self) -> Result<()> {
        // SAFETY: the group is live.
        check(unsafe { bertkit_dist_barrier(self.0) }).map(drop)
    }

    pub fn store_set(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = CString::new(key)?;
        // SAFETY: a C string and a byte slice of the given length.
        check(unsafe { bertkit_dist_store_set(self.0, key.as_ptr(), value.as_ptr().cast(), value.len() as i64) })
            .map(drop)
    }

    /// Waits for `key` (up to the group's timeout).
    pub fn store_get(&self, key: &str) -> Result<Vec<u8>> {
        let key = CString::new(key)?;
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: a C string and a buffer of `cap` bytes.
        let len =
            check(unsafe { bertkit_dist_store_get(self.0, key.as_ptr(), buf.as_mut_ptr().cast(), buf.len() as i64) })?
                as usize;
        if len > buf.len() {
            bail!("store key {}: {len} bytes, more than the {} read", key.to_string_lossy(), buf.len());
        }
        buf.truncate(len);
        Ok(buf)
    }
}

impl Drop for GroupHandle {
    fn drop(&mut self) {
        // SAFETY: allocated by bertkit_dist_init, freed once.
        unsafe { bertkit_dist_free(self.0) }
    }
}

/// DDP's Reducer, registered on the parameters' gradient accumulators.
pub(crate) struct ReducerHandle(*mut c_void);

impl ReducerHandle {
    pub fn new(group: &GroupHandle, params: &[Tensor], bucket_bytes: i64) -> Result<Self> {
        let h = handles(params);
        let mut out = std::ptr::null_mut();
        // SAFETY: live parameter handles (the Reducer keeps its own references) and an out-pointer.
        // Unused parameters are searched for: a head or pooler a task never reads must not
        // leave the other ranks waiting for its gradient.
        check(unsafe { bertkit_reducer_new(group.0, h.as_ptr(), h.len() as i32, bucket_bytes, 1, &mut out) })?;
        Ok(ReducerHandle(out))
    }

    pub fn prepare(&self, loss: &Tensor) -> Result<()> {
        let h = [loss.as_ptr()];
        // SAFETY: a live tensor handle for the duration of the call.
        check(unsafe { bertkit_reducer_prepare(self.0, h.as_ptr(), 1) }).map(drop)
    }
}

impl Drop for ReducerHandle {
    fn drop(&mut self) {
        // SAFETY: allocated by bertkit_reducer_new, freed once.
        unsafe { bertkit_reducer_free(self.0) }
    }
}
