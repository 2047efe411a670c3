// The few libtorch calls the tch crate does not bind: autocast on the CPU and with bf16 (tch's
// autocast is CUDA-only and float16), the fused AdamW kernel, asynchronous uploads, GPU memory
// statistics; and a dropout mask for the CPU. Plain C entry points, exceptions turned into
// return codes by bertkit_guard (bertkit.h).
#include "bertkit.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/_fused_adamw.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

thread_local std::string bertkit_error;

extern "C" {

const char* bertkit_last_error() { return bertkit_error.c_str(); }

// One AdamW step over `n` parameters with libtorch's fused kernel, the one
// torch.optim.AdamW(fused=True) -- Trainer's default optimizer -- runs. The arrays hold tch's
// tensor handles (at::Tensor*); `steps[i]` is a float scalar holding the step count of this
// update (the caller increments it, as torch.optim does; the kernel only reads it, so one
// tensor may stand for every parameter). 0 on success, -1 on error.
int bertkit_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads, at::Tensor* const* exp_avgs,
                        at::Tensor* const* exp_avg_sqs, at::Tensor* const* steps, int n, double lr, double beta1,
                        double beta2, double weight_decay, double eps) {
  return bertkit_guard([&] {
    std::vector<at::Tensor> p, g, m, v, s;
    for (int i = 0; i < n; i++) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      s.push_back(*steps[i]);
    }
    torch::autograd::AutoGradMode no_grad(false);
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
    return 0;
  });
}

// Turns autocast on for `cuda` (1) or the CPU (0), in fp16 (`half` 1) or bf16; returns the
// previous state (0/1), -1 on error.
int bertkit_autocast_enter(int cuda, int half) {
  return bertkit_guard([&] {
    auto device = cuda ? at::kCUDA : at::kCPU;
    bool previous = at::autocast::is_autocast_enabled(device);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::set_autocast_dtype(device, half ? at::kHalf : at::kBFloat16);
    at::autocast::increment_nesting();
    return previous ? 1 : 0;
  });
}

// Restores the state `bertkit_autocast_enter` returned; 0 on success, -1 on error.
int bertkit_autocast_exit(int cuda, int previous) {
  return bertkit_guard([&] {
    auto device = cuda ? at::kCUDA : at::kCPU;
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device, previous == 1);
    return 0;
  });
}

// `*out` = `src` (a CPU tensor) on CUDA device `index`, copied from page-locked memory without
// waiting (the host goes on queueing work): DataLoader(pin_memory=True) + .to(non_blocking=True).
// 0 on success, -1 on error.
int bertkit_upload_async(const at::Tensor* src, int index, at::Tensor** out) {
  return bertkit_guard([&] {
    auto device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
    *out = new at::Tensor(src->pin_memory().to(device, /*non_blocking=*/true));
    return 0;
  });
}

// Peak bytes held by libtorch's CUDA caching allocator on device `index` since the process
// started: in tensors (torch.cuda.max_memory_allocated) and reserved from the driver
// (max_memory_reserved). Found through c10's allocator registry, which libtorch_cuda fills when
// it is loaded, so nothing here links CUDA. 0 on success, -1 on error.
int bertkit_cuda_peak_memory(int index, int64_t* allocated, int64_t* reserved) {
  return bertkit_guard([&] {
    auto stats = c10::getDeviceAllocator(c10::DeviceType::CUDA)->getDeviceStats(static_cast<c10::DeviceIndex>(index));
    auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[aggregate].peak;
    *reserved = stats.reserved_bytes[aggregate].peak;
    return 0;
  });
}

// Drops the gradients of `n` parameters (optimizer.zero_grad(set_to_none=True), PyTorch's
// default): zeroing them in place would keep their memory through the next forward pass,
// when activations are at their peak.
int bertkit_clear_grads(at::Tensor* const* params, int n) {
  return bertkit_guard([&] {
    for (int i = 0; i < n; i++) {
      params[i]->mutable_grad().reset();
    }
    return 0;
  });
}

// `*out` = a bool tensor shaped like `like`, on the CPU, each element true with probability
// `keep`: the mask of nn.Dropout(p = 1 - keep). libtorch's CPU Bernoulli draws one element at a
// time from one Mersenne Twister on one thread (MKL's parallel one is used on Intel CPUs only):
// about a sixth of a MiniLM training step on an AMD machine. Here each element is SplitMix64 of
// its index from a seed drawn from the default CPU generator, so masks follow torch.manual_seed and
// a restored generator state (gradient checkpointing's recompute) gives the same mask, whatever
// the number of threads. 0 on success, -1 on error.
int bertkit_dropout_mask(const at::Tensor* like, double keep, at::Tensor** out) {
  return bertkit_guard([&] {
    uint64_t seed;
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
    }
    auto mask = at::empty(like->sizes(), at::TensorOptions().dtype(at::kBool));
    // Keep where a uniform 32-bit draw falls below keep * 2^32 (exact to 2^-32).
    const uint64_t threshold = static_cast<uint64_t>(std::llround(std::clamp(keep, 0.0, 1.0) * 4294967296.0));
    bool* m = mask.data_ptr<bool>();
    at::parallel_for(0, mask.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) {
        uint64_t z = seed + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        m[i] = (z >> 32) < threshold;
      }
    });
    *out = new at::Tensor(std::move(mask));
    return 0;
  });
}

// Runs body(context, begin, end) over pieces of [0, n) on libtorch's intra-op threads (the
// ones its kernels just used: no threads to start, and none left spinning beside ours). The
// body must not throw or unwind; Rust's side catches its panics.
int bertkit_parallel_for(int64_t n, int64_t grain, void (*body)(void*, int64_t, int64_t), void* context) {
  return bertkit_guard([&] {
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { body(context, begin, end); });
    return 0;
  });
}

}  // extern "C"
