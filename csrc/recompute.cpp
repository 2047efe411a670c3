// Activation (gradient) checkpointing, as torch.utils.checkpoint(use_reentrant=True) does it:
// the forward of a block runs without keeping its activations, only its input is saved; when
// backward reaches the block, the forward is run again with the random-number generator and
// autocast state it had the first time (so dropout draws the same masks), and backpropagated
// through. The block itself is a Rust closure, called through a C function pointer.
#include "bertkit.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <mutex>
#include <stdexcept>
#include <string>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

extern "C" {
// Runs the block on `input` (which it takes ownership of); returns a new tensor, or null on
// failure with the reason in `error` (NUL-terminated, at most `error_len` bytes).
typedef at::Tensor* (*bertkit_block_fn)(void* closure, at::Tensor* input, char* error, size_t error_len);
// Frees the closure.
typedef void (*bertkit_drop_fn)(void* closure);
}

namespace {

// The Rust closure, owned by the autograd graph node that may call it again in backward.
struct Block : torch::CustomClassHolder {
  bertkit_block_fn call;
  void* closure;
  bertkit_drop_fn drop;

  Block(bertkit_block_fn call, void* closure, bertkit_drop_fn drop) : call(call), closure(closure), drop(drop) {}
  ~Block() override { drop(closure); }

  at::Tensor run(const at::Tensor& input) const {
    char error[1024] = {0};
    at::Tensor* out = call(closure, new at::Tensor(input), error, sizeof error);
    if (out == nullptr) {
      throw std::runtime_error(error);
    }
    at::Tensor result = *out;
    delete out;
    return result;
  }
};

at::Generator generator_of(const at::Tensor& t) { return at::globalContext().defaultGenerator(t.device()); }

at::Tensor rng_state(const at::Tensor& t) {
  auto gen = generator_of(t);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng_state(const at::Tensor& t, const at::Tensor& state) {
  auto gen = generator_of(t);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// The recomputation runs on the autograd engine's thread (a different one on CUDA), where the
// autocast state of the forward -- thread-local -- must be set again.
struct AutocastAs {
  at::DeviceType device;
  bool previous;
  at::ScalarType previous_dtype;
  bool enabled;

  AutocastAs(at::DeviceType device, bool enabled, at::ScalarType dtype)
      : device(device),
        previous(at::autocast::is_autocast_enabled(device)),
        previous_dtype(at::autocast::get_autocast_dtype(device)),
        enabled(enabled) {
    at::autocast::set_autocast_enabled(device, enabled);
    at::autocast::set_autocast_dtype(device, dtype);
    if (enabled) at::autocast::increment_nesting();
  }
  ~AutocastAs() {
    if (enabled && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device, previous);
    at::autocast::set_autocast_dtype(device, previous_dtype);
  }
};

struct Recompute : public torch::autograd::Function<Recompute> {
  // Runs with gradients off (Function::apply does that): nothing inside the block is recorded.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, c10::intrusive_ptr<Block> block) {
    auto device = input.device().type();
    ctx->saved_data["block"] = c10::IValue::make_capsule(block);
    ctx->saved_data["rng"] = rng_state(input);
    ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(device);
    ctx->saved_data["autocast_dtype"] = at::autocast::get_autocast_dtype(device);
    ctx->save_for_backward({input});
    return block->run(input);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto block = c10::static_intrusive_pointer_cast<Block>(ctx->saved_data["block"].toCapsule());
    at::Tensor input = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Tensor output;
    {
      // Same dropout masks as the first time; the generator is left as it was found.
      at::Tensor now = rng_state(input);
      set_rng_state(input, ctx->saved_data["rng"].toTensor());
      torch::autograd::AutoGradMode grad_on(true);
      AutocastAs autocast(input.device().type(), ctx->saved_data["autocast"].toBool(),
                          ctx->saved_data["autocast_dtype"].toScalarType());
      output = block->run(input);
      set_rng_state(input, now);
    }
    // Parameters' gradients accumulate here; the input's is handed to the block before.
    torch::autograd::backward({output}, {grads[0]});
    return {input.grad(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// `*output` = the block applied to `input`, recomputed in backward instead of stored. Takes
// ownership of `closure` (freed with `drop` when the graph no longer needs it, or on error).
// 0 on success, -1 on error (message: bertkit_last_error).
int bertkit_checkpoint(bertkit_block_fn call, void* closure, bertkit_drop_fn drop, const at::Tensor* input,
                       at::Tensor** output) {
  return bertkit_guard([&] {
    auto block = c10::make_intrusive<Block>(call, closure, drop);
    *output = new at::Tensor(Recompute::apply(*input, block));
    return 0;
  });
}

}  // extern "C"
