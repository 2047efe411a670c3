//! libtorch failures as one-line errors. tch panics when a libtorch call fails (out of memory
//! above all); the training loop catches that around each step and says which step failed and
//! what to change, and any other such panic prints as one line instead of a backtrace.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What to change when a batch does not fit.
pub(crate) const OUT_OF_MEMORY_HINT: &str =
    "lower --batch-size (--grad-accum keeps the effective batch), --max-len, or pass --gradient-checkpointing";

/// Calls inside `catch` right now: their panics are reported by `catch`'s caller, not the hook.
/// A process-wide count, not a thread-local one: on CUDA, backward runs on libtorch's threads.
static CATCHING: AtomicUsize = AtomicUsize::new(0);

/// A libtorch call that failed.
#[derive(Debug, Clone)]
pub(crate) struct TorchFailure {
    /// libtorch's message, first line only (the rest is a C++ stack trace).
    pub message: String,
    pub out_of_memory: bool,
}

impl std::fmt::Display for TorchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.out_of_memory {
            write!(f, "out of memory ({}); {OUT_OF_MEMORY_HINT}", self.message)
        } else {
            write!(f, "libtorch failed: {}", self.message)
        }
    }
}

impl TorchFailure {
    /// From a panic's message: tch's `Torch("...")` error, or any other text.
    pub fn from_panic_message(text: &str) -> Self {
        let inner = text.split_once("Torch(\"").map_or(text, |(_, rest)| rest);
        // tch's Debug formatting escapes newlines: libtorch's first line ends at the first `\n`.
        let first = inner.split("\\n").next().unwrap_or(inner).lines().next().unwrap_or("");
        let message = first.trim_end_matches("\")").trim().to_string();
        let out_of_memory = ["out of memory", "can't allocate memory", "not enough memory", "OutOfMemory"]
            .iter()
            .any(|m| message.contains(m));
        TorchFailure { message, out_of_memory }
    }
}

/// Fails the way tch does when a libtorch call fails (a panic carrying `Torch("...")`), for
/// the libtorch calls made through `crate::ffi`: `catch` and the panic hook then treat them alike.
pub(crate) fn fail(message: &str) -> ! {
    panic!("Torch(\"{message}\")")
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown failure".into())
}

/// Runs `f`; a panic inside it (a failed libtorch call) comes back as an error.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, TorchFailure> {
    CATCHING.fetch_add(1, Ordering::SeqCst);
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.fetch_sub(1, Ordering::SeqCst);
    result.map_err(|payload| TorchFailure::from_panic_message(&panic_text(&*payload)))
}

/// Panics inside `catch` stay quiet (the caller reports them); libtorch failures elsewhere print
/// as one line; any other panic (a bug) keeps Rust's full report.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if CATCHING.load(Ordering::SeqCst) > 0 {
            return;
        }
        let text = panic_text(info.payload());
        if text.contains("Torch(\"") {
            eprintln!("error: {}", TorchFailure::from_panic_message(&text));
        } else {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtorchs_first_line() {
        let text = r#"called `Result::unwrap()` on an `Err` value: Torch("[enforce fail at alloc_cpu.cpp:119] data. DefaultCPUAllocator: not enough memory: you tried to allocate 17179869184 bytes.\nException raised from alloc_cpu at ...\nframe #0: ...")"#;
        let f = TorchFailure::from_panic_message(text);
        assert!(f.out_of_memory);
        assert_eq!(
            f.message,
            "[enforce fail at alloc_cpu.cpp:119] data. DefaultCPUAllocator: not enough memory: you tried to allocate 17179869184 bytes."
        );
        let cuda = r#"Torch("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB\nframe")"#;
        assert!(TorchFailure::from_panic_message(cuda).out_of_memory);
        let other =
            TorchFailure::from_panic_message(r#"Torch("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")"#);
        assert!(!other.out_of_memory);
        assert_eq!(other.to_string(), "libtorch failed: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)");
    }
}
