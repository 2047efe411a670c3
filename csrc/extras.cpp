// The few libtorch calls the tch crate does not bind: autocast on the CPU and with bf16 (tch's
// autocast is CUDA-only and float16). Plain C entry points, exceptions turned into return codes.
#include <ATen/autocast_mode.h>

extern "C" {

// Turns bf16 autocast on for `cuda` (1) or the CPU (0); returns the previous state (0/1), -1 on error.
int bertkit_autocast_enter(int cuda) {
  try {
    auto device = cuda ? at::kCUDA : at::kCPU;
    bool previous = at::autocast::is_autocast_enabled(device);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
    at::autocast::increment_nesting();
    return previous ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Restores the state `bertkit_autocast_enter` returned; 0 on success, -1 on error.
int bertkit_autocast_exit(int cuda, int previous) {
  try {
    auto device = cuda ? at::kCUDA : at::kCPU;
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device, previous == 1);
    return 0;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
