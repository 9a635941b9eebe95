//! AdamW with linear learning-rate decay and global-norm gradient clipping, computed
//! on the device (no host sync per step). Weight decay is decoupled (as torch's AdamW)
//! and, as in HF's Trainer, skips biases and layer-norm weights.

use tch::{nn, nn::OptimizerConfig, Tensor};

use crate::{Error, Result};

pub struct Optimiser {
    opt: nn::Optimizer,
    params: Vec<Tensor>,
    /// Parameters that get weight decay (not biases, not layer norms).
    decay: Vec<Tensor>,
    weight_decay: f64,
    base_lr: f64,
    warmup: usize,
    total: usize,
    max_grad_norm: f64,
}

impl Optimiser {
    /// AdamW (betas 0.9/0.999, eps 1e-8, as HF's Trainer) over the store's variables that
    /// require grad; learning rate warms up linearly for `warmup` steps, then decays
    /// linearly to 0 at `total`.
    pub fn new(vs: &nn::VarStore, lr: f64, weight_decay: f64, warmup: usize, total: usize, max_grad_norm: f64) -> Result<Self> {
        // Decay is applied here, by name, so the optimiser itself runs without it.
        let opt = nn::AdamW { beta1: 0.9, beta2: 0.999, wd: 0.0, eps: 1e-8, amsgrad: false }.build(vs, lr)?;
        let params = vs.trainable_variables().into_iter().filter(|t| t.requires_grad()).collect();
        let decay = vs
            .variables()
            .into_iter()
            .filter(|(name, t)| t.requires_grad() && !name.ends_with(".bias") && !name.contains("LayerNorm") && !name.contains("layer_norm"))
            .map(|(_, t)| t)
            .collect();
        Ok(Optimiser { opt, params, decay, weight_decay, base_lr: lr, warmup, total: total.max(1), max_grad_norm })
    }

    /// Learning rate used for step `step` (0-based), as HF's linear schedule.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.base_lr * step as f64 / self.warmup.max(1) as f64;
        }
        let left = self.total.saturating_sub(step) as f64;
        self.base_lr * left / (self.total - self.warmup.min(self.total)).max(1) as f64
    }

    /// Back-propagates `loss`, clips, takes a step with the scheduled rate for `step`.
    pub fn step(&mut self, loss: &Tensor, step: usize) -> Result<()> {
        let lr = self.lr_at(step);
        // tch's Optimizer methods panic on libtorch errors (an out-of-memory while the
        // Adam state is allocated, say): turn those into errors.
        guard(|| self.opt.zero_grad())?;
        loss.f_backward()?;
        if self.max_grad_norm > 0.0 {
            self.clip()?;
        }
        if self.weight_decay > 0.0 {
            tch::no_grad(|| -> Result<()> {
                for p in &self.decay {
                    let _ = p.shallow_clone().f_mul_scalar_(1.0 - lr * self.weight_decay)?;
                }
                Ok(())
            })?;
        }
        guard(|| {
            self.opt.set_lr(lr);
            self.opt.step()
        })
    }

    fn clip(&self) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            let grads: Vec<Tensor> = self.params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
            if grads.is_empty() {
                return Ok(());
            }
            let norms: Vec<Tensor> = grads.iter().map(|g| g.f_norm()).collect::<std::result::Result<_, _>>()?;
            let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
            let coef = total.f_add_scalar(1e-6)?.f_reciprocal()?.f_mul_scalar(self.max_grad_norm)?.f_clamp_max(1.0)?;
            for g in &grads {
                let _ = g.shallow_clone().f_mul_(&coef)?;
            }
            Ok(())
        })
    }
}

fn guard(f: impl FnOnce()) -> Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown libtorch failure".into());
        Error::Optimiser(msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_matches_hf() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _w = vs.root().zeros("w", &[1]);
        let o = Optimiser::new(&vs, 1e-3, 0.0, 0, 100, 1.0).unwrap();
        assert_eq!(o.lr_at(0), 1e-3);
        assert!((o.lr_at(50) - 5e-4).abs() < 1e-12);
        assert_eq!(o.lr_at(100), 0.0);
        let w = Optimiser::new(&vs, 1e-3, 0.0, 10, 110, 1.0).unwrap();
        assert_eq!(w.lr_at(0), 0.0);
        assert!((w.lr_at(5) - 5e-4).abs() < 1e-12);
        assert_eq!(w.lr_at(10), 1e-3);
        assert!((w.lr_at(60) - 5e-4).abs() < 1e-12);
    }

    #[test]
    fn decoupled_decay_skips_biases_and_norms() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let w = (&root / "dense").ones("weight", &[2]);
        let b = (&root / "dense").ones("bias", &[2]);
        let n = (&root / "LayerNorm").ones("weight", &[2]);
        let mut o = Optimiser::new(&vs, 0.1, 0.5, 0, 10, 0.0).unwrap();
        // Zero loss gradient: only the decay moves the weights.
        let loss = (&w * 0.0).sum(tch::Kind::Float) + (&b * 0.0).sum(tch::Kind::Float) + (&n * 0.0).sum(tch::Kind::Float);
        o.step(&loss, 0).unwrap();
        assert!((w.double_value(&[0]) - 0.95).abs() < 1e-6, "decayed by lr * wd");
        assert_eq!(b.double_value(&[0]), 1.0);
        assert_eq!(n.double_value(&[0]), 1.0);
    }
}
