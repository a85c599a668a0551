//! LLaVA's multimodal projector: `linear_1 → activation (exact GELU) → linear_2`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::Activation;

pub struct Projector {
    linear_1: Linear,
    linear_2: Linear,
    act: Activation,
}

impl Projector {
    /// `vb` at `multi_modal_projector`.
    pub fn new(vision_hidden: usize, text_hidden: usize, act: Activation, bias: bool, vb: VarBuilder) -> Result<Self> {
        let lin = |i, o, name: &str| if bias { candle_nn::linear(i, o, vb.pp(name)) } else { candle_nn::linear_no_bias(i, o, vb.pp(name)) };
        Ok(Projector { linear_1: lin(vision_hidden, text_hidden, "linear_1")?, linear_2: lin(text_hidden, text_hidden, "linear_2")?, act })
    }

    /// `[B, N, vision_hidden]` → `[B, N, text_hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.act.forward(&self.linear_1.forward(x)?)?)
    }
}
