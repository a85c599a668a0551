//! Models (candle, f32 on CPU; CUDA behind the `cuda` feature).
//!
//! Model code does no I/O: a model is built from its typed config and a candle `VarBuilder`, and
//! its methods take and return tensors.
//!
//! - [`sae`]: SAELens-format sparse autoencoders — [`sae::SaeConfig`] (both `cfg.json` styles),
//!   [`sae::Sae`] (`encode`/`decode`, standard and JumpReLU), [`sae::sparsify`] (per-token top-k of
//!   the non-zeros) and the plan-time check against a model ([`sae::check_against_model`]).

pub mod sae;
