//! Gradient (activation) checkpointing: a block's forward keeps none of its activations, only
//! its input; backward runs the block again to get them. Trades ~a third more compute for
//! activation memory that no longer grows with the number of layers, as transformers'
//! `gradient_checkpointing_enable()` (torch.utils.checkpoint) does.
//!
//! The autograd node is libtorch's (`csrc/recompute.cpp`); the block is a Rust closure it
//! calls, in forward and again in backward, with the RNG and autocast state of the first call.

use std::ffi::{c_char, c_void};

use tch::Tensor;
use torch_sys::C_tensor;

use crate::ffi;
use crate::torch_failure::catch;

/// `block(input)`, with the activations inside `block` recomputed in backward instead of kept
/// (`torch.utils.checkpoint`).
///
/// `block` must be a pure function of its input, the parameters it reads, and the random draws
/// it makes (it is called twice). On CUDA, libtorch runs backward on its own thread, which is
/// why the closure must be `Send`. Fails (panics) as tch's own operations do.
pub fn recomputed<F>(input: &Tensor, block: F) -> Tensor
where
    F: Fn(&Tensor) -> Tensor + Send + 'static,
{
    let closure = Box::into_raw(Box::new(block)) as *mut c_void;
    // SAFETY: `call::<F>` and `drop_closure::<F>` match the closure's type.
    unsafe { ffi::checkpoint(call::<F>, closure, drop_closure::<F>, input) }
}

/// Calls the closure on an input the C++ side allocated for us; returns the output's ownership,
/// or null with libtorch's message in `error` when a call inside failed.
unsafe extern "C" fn call<F: Fn(&Tensor) -> Tensor>(
    closure: *mut c_void,
    input: *mut C_tensor,
    error: *mut c_char,
    error_len: usize,
) -> *mut C_tensor {
    // SAFETY: `closure` came from `Box<F>` in `recomputed` and lives until `drop_closure`.
    let block = unsafe { &*(closure as *const F) };
    // SAFETY: `input` is a fresh tensor handle we own.
    let input = unsafe { Tensor::from_ptr(input) };
    // A panic must not unwind into C++: it goes back as an exception with libtorch's message,
    // which reaches whoever called backward (out of memory while recomputing, typically).
    match catch(|| block(&input)) {
        Ok(mut out) => {
            let ptr = out.as_mut_ptr();
            std::mem::forget(out);
            ptr
        }
        Err(failure) => {
            let message = failure.message.as_bytes();
            let n = message.len().min(error_len.saturating_sub(1));
            // SAFETY: `error` has room for `error_len` bytes; we write n + 1 <= error_len.
            unsafe {
                std::ptr::copy_nonoverlapping(message.as_ptr(), error as *mut u8, n);
                *error.add(n) = 0;
            }
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn drop_closure<F>(closure: *mut c_void) {
    // SAFETY: created by `Box::into_raw` in `recomputed`, freed once, here.
    drop(unsafe { Box::from_raw(closure as *mut F) });
}
