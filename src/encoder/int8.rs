//! Int8 linear layers: dynamic quantisation as `torch.ao.quantization.quantize_dynamic` does it
//! with `per_channel_dynamic_qconfig`. Each weight row is stored as int8 with its own scale
//! (symmetric, zero point 0); at every call libtorch's `quantized::linear_dynamic` quantizes the
//! input from its range, multiplies in int8 (fbgemm or onednn, as libtorch chose for this CPU)
//! and returns float32. Everything else in the model stays as it was.
//!
//! A layer can also run both ways at once and keep the difference (`Int8Linear::measuring`):
//! each layer then sees the float input the original model gives it, so its error is its own,
//! not the sum of the layers before it. `bertkit quantize` ranks the layers by it.

use std::sync::{Mutex, OnceLock};

use anyhow::Result;
use tch::{Kind, Tensor};

use crate::ffi::PackedInt8;

/// A weight as int8 values and a float32 scale per output row: `weight ≈ values × scales[:, None]`.
pub struct Int8Weight {
    /// `[out, in]`, int8.
    pub values: Tensor,
    /// `[out]`, float32.
    pub scales: Tensor,
}

impl Int8Weight {
    /// `weight` (`[out, in]`, float) quantized per row as PyTorch's `PerChannelMinMaxObserver`
    /// (qint8, `per_channel_symmetric`) and `quantize_per_channel` do it: scale = max |w| / 127.5
    /// (at least float32's epsilon), values rounded to the nearest even and clamped to
    /// [-128, 127]. The same bytes as PyTorch's, so the same outputs.
    pub fn of(weight: &Tensor) -> Int8Weight {
        let w = weight.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float);
        let largest = w.abs().amax([1].as_slice(), false);
        let scales = (largest / 127.5).clamp_min(f64::from(f32::EPSILON));
        let zero_points = Tensor::zeros([scales.size()[0]], (Kind::Int64, tch::Device::Cpu));
        let values = w.quantize_per_channel(&scales.to_kind(Kind::Double), &zero_points, 0, Kind::QInt8).int_repr();
        Int8Weight { values, scales }
    }

    /// The float32 weight these values stand for.
    pub fn dequantized(&self) -> Tensor {
        self.values.to_kind(Kind::Float) * self.scales.unsqueeze(1)
    }

    pub fn shallow_clone(&self) -> Int8Weight {
        Int8Weight { values: self.values.shallow_clone(), scales: self.scales.shallow_clone() }
    }
}

/// A linear layer's int8 form, packed for libtorch's quantized kernels.
pub struct Int8Linear {
    packed: PackedInt8,
    /// The int8 weight and float bias it was packed from, for `fused`.
    source: Mutex<(Int8Weight, Option<Tensor>)>,
    /// This layer and the ones after it in a group that reads one input (a self-attention's
    /// query, key and value), packed as one weight the first time the group runs. A layer is
    /// the first of one group at most.
    group: OnceLock<PackedInt8>,
    /// While measuring: the sums of squared error and of squared reference output.
    errors: Option<Mutex<(f64, f64)>>,
}

impl Int8Linear {
    /// Packs `weight` with the layer's float32 `bias`. Inputs are quantized to 7 bits, as
    /// PyTorch's dynamic Linear does on x86 (`reduce_range`): fbgemm's AVX2 kernels sum pairs of
    /// 8-bit products in 16 bits, which full-range inputs can overflow, and the same model must
    /// give the same outputs on every CPU.
    pub fn new(weight: &Int8Weight, bias: Option<&Tensor>) -> Result<Int8Linear> {
        let bias = bias.map(|b| b.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float));
        let packed = PackedInt8::new(&weight.values, &weight.scales, bias.as_ref(), true)?;
        let source = Mutex::new((weight.shallow_clone(), bias));
        Ok(Int8Linear { packed, source, group: OnceLock::new(), errors: None })
    }

    /// The same layer, answering in float32 from the original weights while it sums how far
    /// its int8 outputs are from them (`relative_error`).
    pub fn measuring(weight: &Int8Weight, bias: Option<&Tensor>) -> Result<Int8Linear> {
        Ok(Int8Linear { errors: Some(Mutex::new((0.0, 0.0))), ..Int8Linear::new(weight, bias)? })
    }

    /// `xs` (`[..., in]`) through the int8 layer; measuring, through `exact` (the float layer).
    pub fn forward(&self, xs: &Tensor, exact: impl FnOnce() -> Tensor) -> Tensor {
        let out = self.packed.forward(&xs.to_kind(Kind::Float));
        let Some(errors) = &self.errors else { return out };
        let reference = exact();
        let error = (&out - &reference).square().sum(Kind::Double).double_value(&[]);
        let scale = reference.square().sum(Kind::Double).double_value(&[]);
        let mut sums = errors.lock().expect("a layer's error sums");
        sums.0 += error;
        sums.1 += scale;
        reference
    }

    /// `xs` through this layer and `rest` as one int8 matrix product, outputs side by side
    /// (`[..., sum of outputs]`): the input quantized once, one GEMM, no concatenation after.
    /// Rows are quantized each with its own scale, so stacking the layers' rows is exact.
    /// None while any of them is measuring (each must see its own error).
    pub fn fused(&self, rest: &[&Int8Linear], xs: &Tensor) -> Option<Tensor> {
        if self.errors.is_some() || rest.iter().any(|l| l.errors.is_some()) {
            return None;
        }
        let packed = self.group.get_or_init(|| {
            let sources: Vec<_> = std::iter::once(self).chain(rest.iter().copied()).map(|l| l.source()).collect();
            let values = Tensor::cat(&sources.iter().map(|(w, _)| &w.values).collect::<Vec<_>>(), 0);
            let scales = Tensor::cat(&sources.iter().map(|(w, _)| &w.scales).collect::<Vec<_>>(), 0);
            let biases: Option<Vec<Tensor>> = sources.into_iter().map(|(_, b)| b).collect();
            let bias = biases.map(|b| Tensor::cat(&b, 0));
            PackedInt8::new(&values, &scales, bias.as_ref(), true).expect("packing a group of packed layers")
        });
        Some(packed.forward(&xs.to_kind(Kind::Float)))
    }

    fn source(&self) -> (Int8Weight, Option<Tensor>) {
        let source = self.source.lock().expect("an int8 layer's source");
        (source.0.shallow_clone(), source.1.as_ref().map(Tensor::shallow_clone))
    }

    /// While measuring: the root of the summed squared error over the summed squared output
    /// (0 before any input).
    pub fn relative_error(&self) -> f64 {
        let Some(errors) = &self.errors else { return 0.0 };
        let (error, scale) = *errors.lock().expect("a layer's error sums");
        if scale > 0.0 { (error / scale).sqrt() } else { 0.0 }
    }
}
