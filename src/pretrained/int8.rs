//! Int8 models on disk (`bertkit quantize` writes them, every command loads them): a Hugging
//! Face directory in which each quantized layer's weight is int8 (`{layer}.weight`, I8
//! `[out, in]`) beside its scale per output row (`{layer}.weight_scale`, F32) and zero point
//! (`{layer}.weight_zero_point`, I32, always 0: symmetric), everything else float32 as before, and
//! `quantization_config` in config.json saying how it was made. transformers does not know the
//! method and refuses the directory; `weight × scale` gives the float weight back.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::encoder::int8::{Int8Linear, Int8Weight};
use crate::encoder::{Encoder, ModelConfig};
use crate::pretrained::Pretrained;
use crate::task::TaskModel;

/// `quantization_config.quant_method` of an int8 model.
pub const QUANT_METHOD: &str = "bertkit-int8";

const SCALE: &str = ".weight_scale";
const ZERO_POINT: &str = ".weight_zero_point";

/// Whether the config is an int8 model's; an error for a quantization this is not.
pub fn is_int8(config: &ModelConfig) -> Result<bool> {
    let Some(q) = config.json().get("quantization_config") else { return Ok(false) };
    match q.get("quant_method").and_then(Value::as_str) {
        Some(QUANT_METHOD) => Ok(true),
        other => bail!(
            "config.json: quantization_config's quant_method is {other:?}; bertkit loads float models and its own \
             int8 ones (\"{QUANT_METHOD}\")"
        ),
    }
}

/// Takes the int8 layers out of a checkpoint's tensors (canonical names): each int8 weight is
/// replaced by the float32 weight it stands for (so the model fills as any other) and returned
/// under its layer's name (`...query`) with its scales.
pub(crate) fn take_int8(weights: &mut BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Int8Weight>> {
    let layers: Vec<String> = weights.keys().filter_map(|name| name.strip_suffix(SCALE)).map(str::to_string).collect();
    let mut int8 = BTreeMap::new();
    for layer in layers {
        let scales = weights.remove(&format!("{layer}{SCALE}")).expect("listed above").copy();
        weights.remove(&format!("{layer}{ZERO_POINT}"));
        let name = format!("{layer}.weight");
        let values = weights.remove(&name).with_context(|| format!("{name}: a scale but no weight"))?;
        if values.kind() != Kind::Int8 || values.dim() != 2 || values.size()[0] != scales.size()[0] {
            bail!(
                "{name}: expected int8 [{}, in] beside its scales, found {:?} {:?}",
                scales.size()[0],
                values.kind(),
                values.size()
            );
        }
        // The int8 values are already copied out of the mapped file (only float32 tensors are
        // views of it, `with_mapped_weights`); the scales are such a view, copied above.
        let weight = Int8Weight { values, scales: scales.to_kind(Kind::Float) };
        weights.insert(name, weight.dequantized());
        int8.insert(layer, weight);
    }
    Ok(int8)
}

/// The VarStore name of each of the encoder's linear layers (`bert.encoder.layer.0.attention.
/// self.query`), in `Encoder::linears` order: the variable whose storage the layer's weight
/// shares.
pub(crate) fn linear_names(vs: &VarStore, encoder: &mut dyn Encoder) -> Vec<String> {
    let by_address: BTreeMap<usize, String> =
        vs.variables().into_iter().map(|(name, t)| (t.data_ptr() as usize, name)).collect();
    encoder
        .linears()
        .iter()
        .map(|l| {
            let name = &by_address[&(l.weight.data_ptr() as usize)];
            name.strip_suffix(".weight").unwrap_or(name).to_string()
        })
        .collect()
}

/// Each of the encoder's linear layers, by name (`linear_names`' order), with its weight in
/// int8: what `quantize` starts from.
pub fn int8_weights(vs: &VarStore, encoder: &mut dyn Encoder) -> Vec<(String, Int8Weight)> {
    let names = linear_names(vs, encoder);
    names.into_iter().zip(encoder.linears()).map(|(name, l)| (name, Int8Weight::of(&l.weight))).collect()
}

/// Every linear layer of a loaded model's encoder in int8 from now on, as `quantize` makes them
/// (without its gate); their int8 weights by layer name.
pub fn quantize_in_place<M: TaskModel>(model: &mut Pretrained<M>) -> Result<BTreeMap<String, Int8Weight>> {
    let encoder = model.model.encoder_mut();
    let weights: BTreeMap<String, Int8Weight> = int8_weights(&model.vs, encoder).into_iter().collect();
    apply(&model.vs, encoder, weights.iter().map(|(n, w)| (n.clone(), w.shallow_clone())).collect())?;
    Ok(weights)
}

/// Gives each of the encoder's linear layers named in `int8` that int8 form.
pub(crate) fn apply(vs: &VarStore, encoder: &mut dyn Encoder, mut int8: BTreeMap<String, Int8Weight>) -> Result<()> {
    let names = linear_names(vs, encoder);
    for (name, linear) in names.iter().zip(encoder.linears()) {
        if let Some(weight) = int8.remove(name) {
            let layer = Int8Linear::new(&weight, linear.bias.as_ref()).with_context(|| format!("layer {name}"))?;
            linear.set_int8(Some(std::sync::Arc::new(layer)));
        }
    }
    if let Some(name) = int8.keys().next() {
        bail!("{name} is stored as int8 but is not one of the encoder's linear layers");
    }
    Ok(())
}

/// `tensors` (a float model's, canonical names) with the layers of `int8` stored as int8.
pub fn int8_tensors(
    mut tensors: BTreeMap<String, Tensor>,
    int8: &BTreeMap<String, Int8Weight>,
) -> BTreeMap<String, Tensor> {
    for (layer, weight) in int8 {
        let rows = weight.scales.size()[0];
        tensors.insert(format!("{layer}.weight"), weight.values.shallow_clone());
        tensors.insert(format!("{layer}{SCALE}"), weight.scales.shallow_clone());
        tensors.insert(format!("{layer}{ZERO_POINT}"), Tensor::zeros([rows], (Kind::Int, tch::Device::Cpu)));
    }
    tensors
}
