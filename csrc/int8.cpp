// Int8 linear layers through libtorch's own quantized kernels, as
// torch.ao.quantization.quantize_dynamic's Linear runs them: the int8 weight (per output row
// scale, zero point 0) packed once by `quantized::linear_prepack` for the engine libtorch chose
// for this CPU (x86: fbgemm, or onednn where it is faster), and each call
// `quantized::linear_dynamic`, which quantizes the input from its own range and returns float32
// with the bias added. The ops are called through the dispatcher, boxed, so that the packed
// weight is held as the IValue the op returns and no quantization header is needed.
#include "bertkit.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <vector>

// A packed weight and how its inputs are quantized.
struct bertkit_int8_linear_t {
  c10::IValue packed;
  // Inputs quantized to 7 bits instead of 8: fbgemm's AVX2 kernels add pairs of u8 x s8
  // products in 16 bits, which 8-bit inputs can overflow (PyTorch passes true on x86).
  bool reduce_range;
};

extern "C" {

// `*out` = the packed form of `weight` (int8, [out, in]) with per-row `scales` ([out]) and the
// optional float32 `bias` ([out]). Free it with bertkit_int8_free. 0 on success, -1 on error.
int bertkit_int8_pack(const at::Tensor* weight, const at::Tensor* scales, const at::Tensor* bias,
                      int reduce_range, void** out) {
  return bertkit_guard([&] {
    torch::autograd::AutoGradMode no_grad(false);
    auto zero_points = at::zeros({scales->size(0)}, at::kLong);
    auto q = at::_make_per_channel_quantized_tensor(weight->contiguous(), scales->to(at::kDouble), zero_points, 0);
    static auto prepack = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
    std::vector<c10::IValue> stack{q, bias ? c10::optional<at::Tensor>(bias->contiguous()) : c10::nullopt};
    prepack.callBoxed(&stack);
    *out = new bertkit_int8_linear_t{stack.at(0), reduce_range != 0};
    return 0;
  });
}

// `*out` = `input` ([..., in], float32) through the packed layer: [..., out], float32.
int bertkit_int8_linear(void* layer, const at::Tensor* input, at::Tensor** out) {
  return bertkit_guard([&] {
    auto* l = static_cast<bertkit_int8_linear_t*>(layer);
    static auto dynamic = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "");
    std::vector<c10::IValue> stack{input->contiguous(), l->packed, l->reduce_range};
    dynamic.callBoxed(&stack);
    *out = new at::Tensor(stack.at(0).toTensor());
    return 0;
  });
}

void bertkit_int8_free(void* layer) { delete static_cast<bertkit_int8_linear_t*>(layer); }

}  // extern "C"
