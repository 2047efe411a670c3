// The NCCL backend of c10d, built apart from the rest of csrc/: ProcessGroupNCCL lives in
// libtorch_cuda, which bertkit does not link (src/device.rs loads it when a GPU is asked for).
// build.rs compiles this file into a small shared library linked against libtorch_cuda and
// embeds it in the binary; src/dist/nccl.rs loads it only for `--dist-backend nccl`, after
// libtorch_cuda, and hands its one entry point to bertkit_dist_init (csrc/dist.cpp).
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include <cstring>

extern "C" {

// A NCCL backend for `rank` of `world` that rendezvous through `store` (a
// c10::intrusive_ptr<c10d::Store>*); on success `*out` is a new c10::intrusive_ptr<c10d::Backend>*
// that the caller owns. On failure returns -1 with the message in `error` (`cap` bytes).
int bertkit_nccl_backend(void* store, int rank, int world, long timeout_ms, void** out, char* error, long cap) {
  try {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto& s = *static_cast<c10::intrusive_ptr<c10d::Store>*>(store);
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(s, rank, world, options);
    *out = new c10::intrusive_ptr<c10d::Backend>(nccl);
    return 0;
  } catch (const std::exception& e) {
    std::strncpy(error, e.what(), static_cast<size_t>(cap) - 1);
    error[cap - 1] = '\0';
    return -1;
  }
}

}  // extern "C"
