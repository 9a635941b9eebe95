//! Small building blocks with Hugging Face weight names (`weight`, `bias`).

use std::cell::Cell;

use tch::{nn, Tensor};

use super::config::Activation;
use crate::Result;

thread_local! {
    /// Whether new weights on this thread are drawn at random ([`without_random_init`]).
    static RANDOM_INIT: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with new weights made zero instead of drawn from libtorch's random
/// generator, which is process-wide: loading a checkpoint that holds every weight (an
/// export, an encoder that ranks demonstrations) then leaves the draws of a training run
/// on another thread as they were. Restored however `f` ends.
pub fn without_random_init<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RANDOM_INIT.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(RANDOM_INIT.with(|r| r.replace(false)));
    f()
}

/// N(0, std), or zero inside [`without_random_init`].
fn init(stdev: f64) -> nn::Init {
    if RANDOM_INIT.with(Cell::get) {
        nn::Init::Randn { mean: 0.0, stdev }
    } else {
        nn::Init::Const(0.0)
    }
}

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
        let weight = p.f_var("weight", &[out_dim, in_dim], init(init_std))?;
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
        Ok(Embedding { weight: p.f_var("weight", &[num, dim], init(init_std))? })
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
