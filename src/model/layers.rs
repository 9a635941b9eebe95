//! Small building blocks with Hugging Face weight names (`weight`, `bias`).

use tch::{nn, Tensor};

use super::config::Activation;
use crate::Result;

/// `nn.Linear`: y = x W^T + b.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    /// New weights ~ N(0, init_std), bias 0 (HF `_init_weights`); a checkpoint then
    /// overwrites them.
    pub fn new(p: nn::Path, in_dim: i64, out_dim: i64, init_std: f64) -> Result<Self> {
        let weight = p.f_var("weight", &[out_dim, in_dim], nn::Init::Randn { mean: 0.0, stdev: init_std })?;
        let bias = p.f_zeros("bias", &[out_dim])?;
        Ok(Linear { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, Some(&self.bias))?)
    }
}

/// `nn.LayerNorm` over the last dimension.
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    pub fn new(p: nn::Path, dim: i64, eps: f64) -> Result<Self> {
        Ok(LayerNorm { weight: p.f_ones("weight", &[dim])?, bias: p.f_zeros("bias", &[dim])?, dim, eps })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_layer_norm([self.dim], Some(&self.weight), Some(&self.bias), self.eps, true)?)
    }
}

/// `nn.Embedding` (lookup only; padding rows are ordinary rows, as in HF at inference).
#[derive(Debug)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(p: nn::Path, num: i64, dim: i64, init_std: f64) -> Result<Self> {
        Ok(Embedding { weight: p.f_var("weight", &[num, dim], nn::Init::Randn { mean: 0.0, stdev: init_std })? })
    }

    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(Tensor::f_embedding(&self.weight, ids, -1, false, false)?)
    }
}

pub fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::Gelu => x.f_gelu("none")?,
        Activation::GeluNew => x.f_gelu("tanh")?,
        Activation::Relu => x.f_relu()?,
        Activation::Silu => x.f_silu()?,
    })
}

pub fn dropout(x: Tensor, p: f64, train: bool) -> Result<Tensor> {
    if train && p > 0.0 {
        Ok(x.f_dropout(p, true)?)
    } else {
        Ok(x)
    }
}
