//! Every call into `csrc/` (the libtorch functions tch does not bind), declared once and wrapped
//! in safe functions; c10d's (`csrc/dist.cpp`) are in `distributed/ffi.rs`, beside what uses them. The C side turns exceptions into a -1 status and keeps libtorch's message
//! (`csrc/bertkit.h`); here a failure becomes an error carrying that message, or, where tch's
//! own operations would panic, the same panic (so `torch_failure::catch` treats both alike).

use std::ffi::{c_char, c_void};

use anyhow::{Result, bail};
use tch::Tensor;
use torch_sys::C_tensor;

use crate::torch_failure::fail;

/// A block that `checkpoint` runs (and runs again in backward): closure, input handle (ours to
/// own), error buffer and its length; returns the output handle, or null after writing the error.
pub(crate) type BlockFn = unsafe extern "C" fn(*mut c_void, *mut C_tensor, *mut c_char, usize) -> *mut C_tensor;
/// Frees a block's closure.
pub(crate) type DropFn = unsafe extern "C" fn(*mut c_void);

unsafe extern "C" {
    fn bertkit_last_error() -> *const c_char;
    fn bertkit_autocast_enter(cuda: i32, half: i32) -> i32;
    fn bertkit_autocast_exit(cuda: i32, previous: i32) -> i32;
    fn bertkit_upload_async(src: *const C_tensor, index: i32, out: *mut *mut C_tensor) -> i32;
    fn bertkit_cuda_peak_memory(index: i32, allocated: *mut i64, reserved: *mut i64) -> i32;
    fn bertkit_dropout_mask(like: *const C_tensor, keep: f64, out: *mut *mut C_tensor) -> i32;
    fn bertkit_clear_grads(params: *const *const C_tensor, n: i32) -> i32;
    fn bertkit_int8_pack(
        weight: *const C_tensor,
        scales: *const C_tensor,
        bias: *const C_tensor,
        reduce_range: i32,
        out: *mut *mut c_void,
    ) -> i32;
    fn bertkit_int8_linear(layer: *mut c_void, input: *const C_tensor, out: *mut *mut C_tensor) -> i32;
    fn bertkit_int8_free(layer: *mut c_void);
    fn bertkit_profile_start() -> i32;
    fn bertkit_profile_stop(out: *mut c_char, cap: i32) -> i32;
    fn bertkit_parallel_for(
        n: i64,
        grain: i64,
        body: unsafe extern "C" fn(*mut c_void, i64, i64),
        context: *mut c_void,
    ) -> i32;
    fn bertkit_fused_adamw(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        steps: *const *const C_tensor,
        n: i32,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> i32;
    fn bertkit_checkpoint(
        call: BlockFn,
        closure: *mut c_void,
        drop: DropFn,
        input: *const C_tensor,
        output: *mut *mut C_tensor,
    ) -> i32;
}

/// The message of the last call into `csrc/` that failed on this thread.
pub(crate) fn last_error() -> String {
    // SAFETY: a NUL-terminated string owned by the C++ side, valid until its next error.
    unsafe { std::ffi::CStr::from_ptr(bertkit_last_error()) }.to_string_lossy().into_owned()
}

/// The tensor a call hands back through its out-pointer; a failure fails as tch's operations do.
///
/// # Safety
/// `call` must return 0 only after storing in its argument a tensor allocated for the caller.
unsafe fn returned_tensor(call: impl FnOnce(*mut *mut C_tensor) -> i32) -> Tensor {
    let mut out = std::ptr::null_mut();
    if call(&mut out) != 0 {
        fail(&last_error());
    }
    // SAFETY: per the contract, a tensor allocated for us; the returned Tensor frees it.
    unsafe { Tensor::from_ptr(out) }
}

/// Turns autocast on for the CPU or CUDA, in fp16 (`half`) or bf16; returns whether it was on
/// before.
pub(crate) fn autocast_enter(cuda: bool, half: bool) -> Result<bool> {
    // SAFETY: a plain C call into libtorch's thread-local autocast state.
    match unsafe { bertkit_autocast_enter(i32::from(cuda), i32::from(half)) } {
        previous @ (0 | 1) => Ok(previous == 1),
        _ => bail!("libtorch refused to enable autocast: {}", last_error()),
    }
}

/// Restores the autocast state `autocast_enter` returned.
pub(crate) fn autocast_exit(cuda: bool, previous: bool) -> Result<()> {
    // SAFETY: as above.
    if unsafe { bertkit_autocast_exit(i32::from(cuda), i32::from(previous)) } != 0 {
        bail!("libtorch failed to restore the autocast state: {}", last_error());
    }
    Ok(())
}

/// `t` (a CPU tensor) on CUDA device `index`, through page-locked memory, without waiting.
pub(crate) fn upload_async(t: &Tensor, index: usize) -> Tensor {
    // SAFETY: a live tensor handle in; on success the C++ side allocates the copy for us.
    unsafe { returned_tensor(|out| bertkit_upload_async(t.as_ptr(), index as i32, out)) }
}

/// Peak bytes (allocated, reserved) of libtorch's CUDA caching allocator on device `index`.
pub(crate) fn cuda_peak_memory(index: usize) -> Option<(i64, i64)> {
    let (mut allocated, mut reserved) = (0, 0);
    // SAFETY: two valid out-pointers.
    let rc = unsafe { bertkit_cuda_peak_memory(index as i32, &mut allocated, &mut reserved) };
    (rc == 0).then_some((allocated, reserved))
}

/// A bool tensor shaped like `like` (on the CPU), true with probability `keep`, drawn from the
/// default CPU generator (so `manual_seed` and saved generator states apply).
pub(crate) fn dropout_mask(like: &Tensor, keep: f64) -> Tensor {
    // SAFETY: a live tensor handle in; on success the C++ side allocates the mask for us.
    unsafe { returned_tensor(|out| bertkit_dropout_mask(like.as_ptr(), keep, out)) }
}

/// Starts summing the self time of every libtorch operator (csrc/profile.cpp), from zero.
pub(crate) fn profile_start() -> Result<()> {
    // SAFETY: a plain C call; the callback it installs touches only its own state.
    if unsafe { bertkit_profile_start() } != 0 {
        bail!("starting libtorch's operator profiling failed: {}", last_error());
    }
    Ok(())
}

/// Stops: each operator's name, self seconds and calls since `profile_start`.
pub(crate) fn profile_stop() -> Result<Vec<(String, f64, i64)>> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: `buf` is writable for its length; the C side writes at most that, NUL-terminated.
        let needed = unsafe { bertkit_profile_stop(buf.as_mut_ptr().cast(), buf.len() as i32) };
        if needed < 0 {
            bail!("reading libtorch's operator profile failed: {}", last_error());
        }
        if (needed as usize) < buf.len() {
            buf.truncate(needed as usize);
            break;
        }
        buf = vec![0u8; needed as usize + 1];
    }
    let text = String::from_utf8_lossy(&buf);
    let parse = |line: &str| {
        let mut parts = line.split('\t');
        let name = parts.next()?.to_string();
        Some((name, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    Ok(text.lines().filter_map(parse).collect())
}

/// A linear layer's int8 weight packed by libtorch for its quantized kernels (csrc/int8.cpp).
pub(crate) struct PackedInt8(*mut c_void);

// SAFETY: the packed weight is immutable once made, and libtorch's quantized linear only reads
// it, so it may be used from any thread and from several at once.
unsafe impl Send for PackedInt8 {}
unsafe impl Sync for PackedInt8 {}

impl PackedInt8 {
    /// `values` (int8 `[out, in]`), per-row `scales` (`[out]`) and `bias`; inputs quantized to
    /// 7 bits when `reduce_range`.
    pub fn new(values: &Tensor, scales: &Tensor, bias: Option<&Tensor>, reduce_range: bool) -> Result<PackedInt8> {
        let mut out = std::ptr::null_mut();
        let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
        // SAFETY: live tensor handles (or null for no bias) and a valid out-pointer.
        let rc =
            unsafe { bertkit_int8_pack(values.as_ptr(), scales.as_ptr(), bias, i32::from(reduce_range), &mut out) };
        if rc != 0 {
            bail!("packing an int8 weight failed: {}", last_error());
        }
        Ok(PackedInt8(out))
    }

    /// `xs` (`[..., in]`, float32, CPU) through the layer: `[..., out]`, float32.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        // SAFETY: our packed layer and a live tensor handle; on success C++ allocates the output.
        unsafe { returned_tensor(|out| bertkit_int8_linear(self.0, xs.as_ptr(), out)) }
    }
}

impl Drop for PackedInt8 {
    fn drop(&mut self) {
        // SAFETY: made by bertkit_int8_pack, freed once.
        unsafe { bertkit_int8_free(self.0) }
    }
}

/// `body(begin, end)` over pieces of `0..n` of at least `grain` items, on libtorch's intra-op
/// threads (`at::parallel_for`): loops of our own that follow libtorch's kernels share their
/// threads instead of starting more beside them. A panic in `body` is raised here afterwards.
pub(crate) fn parallel_for(n: usize, grain: usize, body: impl Fn(usize, usize) + Sync) {
    struct Call<'a> {
        body: &'a (dyn Fn(usize, usize) + Sync),
        panic: std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>,
    }
    unsafe extern "C" fn trampoline(context: *mut c_void, begin: i64, end: i64) {
        // SAFETY: `context` is the `Call` below, alive until bertkit_parallel_for returns.
        let call = unsafe { &*(context as *const Call) };
        let run = std::panic::AssertUnwindSafe(|| (call.body)(begin as usize, end as usize));
        if let Err(panic) = std::panic::catch_unwind(run) {
            *call.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(panic);
        }
    }
    let call = Call { body: &body, panic: std::sync::Mutex::new(None) };
    let context = &call as *const Call as *mut c_void;
    // SAFETY: the trampoline reads `call` only during this call and never unwinds into C++.
    if unsafe { bertkit_parallel_for(n as i64, grain.max(1) as i64, trampoline, context) } != 0 {
        fail(&last_error());
    }
    if let Some(panic) = call.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        std::panic::resume_unwind(panic);
    }
}

/// Drops the gradients of `params` (`zero_grad(set_to_none=True)`).
pub(crate) fn clear_grads<'a>(params: impl IntoIterator<Item = &'a Tensor>) {
    let handles: Vec<*const C_tensor> = params.into_iter().map(Tensor::as_ptr).collect();
    // SAFETY: live tensor handles, borrowed for the duration of the call.
    if unsafe { bertkit_clear_grads(handles.as_ptr(), handles.len() as i32) } != 0 {
        fail(&last_error());
    }
}

/// Tensors of one AdamW parameter group, updated in place by `fused_adamw`.
pub(crate) struct AdamWGroup<'a> {
    pub params: Vec<&'a Tensor>,
    pub grads: Vec<&'a Tensor>,
    pub exp_avgs: Vec<&'a Tensor>,
    pub exp_avg_sqs: Vec<&'a Tensor>,
    /// The step count as a float scalar on the parameters' device (read, not written).
    pub step: &'a Tensor,
}

/// Hyper-parameters of one fused AdamW update.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWUpdate {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// One step of libtorch's fused AdamW kernel (`torch.optim.AdamW(fused=True)`) over a group.
pub(crate) fn fused_adamw(group: &AdamWGroup, u: AdamWUpdate) -> Result<()> {
    let handles = |ts: &[&Tensor]| -> Vec<*const C_tensor> { ts.iter().map(|t| t.as_ptr()).collect() };
    let n = group.params.len();
    assert!([group.grads.len(), group.exp_avgs.len(), group.exp_avg_sqs.len()].iter().all(|&l| l == n));
    let (p, g, m, v) =
        (handles(&group.params), handles(&group.grads), handles(&group.exp_avgs), handles(&group.exp_avg_sqs));
    let steps = vec![group.step.as_ptr(); n];
    // SAFETY: five arrays of `n` live tensor handles, kept alive by `group` for the call; the
    // kernel updates them in place.
    let rc = unsafe {
        let ptrs = (p.as_ptr(), g.as_ptr(), m.as_ptr(), v.as_ptr(), steps.as_ptr());
        bertkit_fused_adamw(
            ptrs.0, ptrs.1, ptrs.2, ptrs.3, ptrs.4, n as i32, u.lr, u.beta1, u.beta2, u.weight_decay, u.eps,
        )
    };
    if rc != 0 {
        bail!("{}", last_error());
    }
    Ok(())
}

/// `call(closure, input)` as a libtorch autograd node that keeps only `input` and calls the
/// block again in backward (`encoder::recompute` builds `call` and `drop` for a Rust closure).
///
/// # Safety
/// `call` and `drop` must match what `closure` points to; the C++ side owns the closure from
/// here on and frees it exactly once through `drop`.
pub unsafe fn checkpoint(call: BlockFn, closure: *mut c_void, drop: DropFn, input: &Tensor) -> Tensor {
    // SAFETY: per the contract; on success the C++ side allocates the output for us.
    unsafe { returned_tensor(|out| bertkit_checkpoint(call, closure, drop, input.as_ptr(), out)) }
}

/// libtorch's CUDA half (and the CUDA libraries behind it) is loaded only when a GPU is wanted:
/// linking it always cost every CPU run ~400 MB of resident memory and start-up time. Loading
/// it registers libtorch's CUDA backend, exactly as if it had been linked.
pub(crate) fn load_libtorch_cuda() -> Result<()> {
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
