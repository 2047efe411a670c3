// jemalloc serves every allocation in the process: with unprefixed symbols its malloc/free replace
// glibc's, so libtorch's tensors use it too, not only Rust's heap. A training step frees and
// re-allocates the same activation and gradient buffers every step; glibc's arenas fragment
// around them while jemalloc's size classes reuse them, which lowers peak resident memory.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// jemalloc by default hands freed pages back to the kernel within seconds, and a step that then
// re-allocates them page-faults them in again: measured on bert-base, 4x the page faults and 15%
// slower than glibc. Keeping freed pages (no decay) reuses them at the cost of never shrinking,
// which a training process, whose peak recurs every step, does not need. Kept pages are never
// purged, and so never merged: jemalloc by default splits a kept extent only for a request at
// least 1/64 of its size, and ModernBERT's steps, whose frees leave large extents and whose
// requests are smaller, then mapped new memory every step (+300 MB a step at B=8 L=128, steps
// slowing). Letting any kept extent be split (2^20) keeps it flat at the first step's peak and
// BERT's steps as they were (measured in bench/README.md, "Allocator"). MALLOC_CONF overrides.
#[cfg(not(target_env = "msvc"))]
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
static malloc_conf: Option<&'static std::ffi::c_char> =
    Some(unsafe { &*c"dirty_decay_ms:-1,muzzy_decay_ms:-1,lg_extent_max_active_fit:20".as_ptr() });

mod cli;

fn main() {
    std::process::exit(cli::main());
}
