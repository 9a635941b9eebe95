//! AdamW with linear learning-rate decay and global-norm gradient clipping, computed
//! on the device (no host sync per step). Weight decay is decoupled (as torch's AdamW)
//! and, as in HF's Trainer, skips biases and layer-norm weights.
//!
//! The update is written here rather than taken from tch's `nn::AdamW` so that its state
//! (both moments and the step count of every parameter) can be saved and restored: long
//! runs (adaptation) resume where they stopped. It follows torch's single-tensor AdamW
//! step for step, and a test holds it to tch's optimiser.

use std::collections::HashMap;

use tch::{nn, Tensor};

use crate::{Error, Result};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

struct Slot {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Updates applied to this parameter (torch keeps one count per parameter).
    steps: i64,
    decay: bool,
}

pub struct Optimiser {
    slots: Vec<Slot>,
    weight_decay: f64,
    base_lr: f64,
    warmup: usize,
    total: usize,
    max_grad_norm: f64,
    /// On the device: whether any step so far met a non-finite gradient norm (read by
    /// [`Optimiser::saw_nonfinite_gradient`], so a step needs no host sync).
    nonfinite: Option<Tensor>,
}

impl Optimiser {
    /// AdamW (betas 0.9/0.999, eps 1e-8, as HF's Trainer) over the store's variables that
    /// require grad; learning rate warms up linearly for `warmup` steps, then decays
    /// linearly to 0 at `total`.
    pub fn new(vs: &nn::VarStore, lr: f64, weight_decay: f64, warmup: usize, total: usize, max_grad_norm: f64) -> Result<Self> {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut slots = Vec::with_capacity(vars.len());
        for (name, param) in vars {
            // As HF's Trainer and LM-BFF: no decay for any name holding "bias" (MPNet's
            // relative_attention_bias.weight too) or a layer norm.
            let decay = !name.contains("bias") && !name.contains("LayerNorm") && !name.contains("layer_norm");
            let exp_avg = param.f_zeros_like()?;
            let exp_avg_sq = param.f_zeros_like()?;
            slots.push(Slot { name, param, exp_avg, exp_avg_sq, steps: 0, decay });
        }
        Ok(Optimiser { slots, weight_decay, base_lr: lr, warmup, total: total.max(1), max_grad_norm, nonfinite: None })
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
        for s in &self.slots {
            let g = s.param.grad();
            if g.defined() {
                let _ = g.shallow_clone().f_zero_()?;
            }
        }
        loss.f_backward()?;
        self.clip()?;
        let wd = self.weight_decay;
        tch::no_grad(|| -> Result<()> {
            for s in self.slots.iter_mut() {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                s.steps += 1;
                let mut p = s.param.shallow_clone();
                if wd > 0.0 && s.decay {
                    let _ = p.f_mul_scalar_(1.0 - lr * wd)?;
                }
                let _ = s.exp_avg.f_lerp_(&g, 1.0 - BETA1)?;
                let _ = s.exp_avg_sq.f_mul_scalar_(BETA2)?;
                let _ = s.exp_avg_sq.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - BETA2)?)?;
                let bc1 = 1.0 - BETA1.powi(s.steps as i32);
                let bc2 = 1.0 - BETA2.powi(s.steps as i32);
                let denom = s.exp_avg_sq.f_sqrt()?.f_div_scalar(bc2.sqrt())?.f_add_scalar(EPS)?;
                let _ = p.f_sub_(&s.exp_avg.f_div(&denom)?.f_mul_scalar(lr / bc1)?)?;
            }
            Ok(())
        })
    }

    /// Records whether the gradients' global norm is finite and, with `max_grad_norm` set,
    /// scales them to it.
    fn clip(&mut self) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            let grads: Vec<Tensor> = self.slots.iter().map(|s| s.param.grad()).filter(|g| g.defined()).collect();
            if grads.is_empty() {
                return Ok(());
            }
            let norms: Vec<Tensor> = grads.iter().map(|g| g.f_norm()).collect::<std::result::Result<_, _>>()?;
            let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
            let bad = total.f_isfinite()?.f_logical_not()?;
            self.nonfinite = Some(match self.nonfinite.take() {
                Some(seen) => seen.f_logical_or(&bad)?,
                None => bad,
            });
            if self.max_grad_norm <= 0.0 {
                return Ok(());
            }
            let coef = total.f_add_scalar(1e-6)?.f_reciprocal()?.f_mul_scalar(self.max_grad_norm)?.f_clamp_max(1.0)?;
            for g in &grads {
                let _ = g.shallow_clone().f_mul_(&coef)?;
            }
            Ok(())
        })
    }

    /// Whether a step so far back-propagated a gradient whose norm is NaN or infinite (a
    /// finite loss can give one): that step wrote non-finite weights. Reads the device
    /// (one host sync), so loops call it where they sync anyway.
    pub fn saw_nonfinite_gradient(&self) -> Result<bool> {
        Ok(match &self.nonfinite {
            Some(t) => t.f_int64_value(&[])? != 0,
            None => false,
        })
    }

    /// The optimiser's state as named tensors (`exp_avg.<param>`, `exp_avg_sq.<param>`,
    /// `steps.<param>`), shallow copies: save them before the next step.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(3 * self.slots.len());
        for s in &self.slots {
            out.push((format!("exp_avg.{}", s.name), s.exp_avg.shallow_clone()));
            out.push((format!("exp_avg_sq.{}", s.name), s.exp_avg_sq.shallow_clone()));
            out.push((format!("steps.{}", s.name), Tensor::from_slice(&[s.steps])));
        }
        out
    }

    /// Restores a [`state`](Self::state); every trained parameter must be in it, with
    /// its shape.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let get = |key: String, like: &Tensor| -> Result<Tensor> {
            let t = state.get(&key).ok_or_else(|| Error::InvalidArgument(format!("optimiser state has no {key}")))?;
            if t.size() != like.size() {
                return Err(Error::InvalidArgument(format!("optimiser state {key}: shape {:?}, parameter {:?}", t.size(), like.size())));
            }
            Ok(t.f_to_kind(like.kind())?.f_to_device(like.device())?)
        };
        for s in self.slots.iter_mut() {
            s.exp_avg = get(format!("exp_avg.{}", s.name), &s.param)?;
            s.exp_avg_sq = get(format!("exp_avg_sq.{}", s.name), &s.param)?;
            let key = format!("steps.{}", s.name);
            s.steps = state
                .get(&key)
                .ok_or_else(|| Error::InvalidArgument(format!("optimiser state has no {key}")))?
                .f_int64_value(&[0])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;

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

    /// A non-finite gradient norm is remembered until read, whatever came after it.
    #[test]
    fn remembers_a_nonfinite_gradient() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().ones("w", &[2]);
        let mut o = Optimiser::new(&vs, 1e-3, 0.0, 0, 10, 0.0).unwrap();
        o.step(&w.sum(tch::Kind::Float), 0).unwrap();
        assert!(!o.saw_nonfinite_gradient().unwrap());
        // sqrt at 0: a finite loss whose gradient is infinite.
        o.step(&(&w * 0.0).sqrt().sum(tch::Kind::Float), 1).unwrap();
        o.step(&w.sum(tch::Kind::Float), 2).unwrap();
        assert!(o.saw_nonfinite_gradient().unwrap());
    }

    /// The hand-written update equals torch's AdamW (tch's `nn::AdamW`), decay included.
    #[test]
    fn matches_torch_adamw() {
        tch::manual_seed(3);
        let init = Tensor::randn([4, 5], (tch::Kind::Float, tch::Device::Cpu));
        let x = Tensor::randn([5, 2], (tch::Kind::Float, tch::Device::Cpu));
        let make = || {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let w = vs.root().var_copy("w", &init);
            (vs, w)
        };
        let (vs_a, w_a) = make();
        let (vs_b, w_b) = make();
        let mut ours = Optimiser::new(&vs_a, 0.05, 0.1, 0, 1_000_000, 0.0).unwrap();
        let mut theirs = nn::AdamW { beta1: 0.9, beta2: 0.999, wd: 0.1, eps: 1e-8, amsgrad: false }.build(&vs_b, 0.05).unwrap();
        for step in 0..6 {
            ours.step(&w_a.matmul(&x).tanh().sum(tch::Kind::Float), step).unwrap();
            theirs.set_lr(ours.lr_at(step));
            theirs.zero_grad();
            w_b.matmul(&x).tanh().sum(tch::Kind::Float).backward();
            theirs.step();
        }
        let diff = (&w_a - &w_b).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "max diff {diff}");
        assert!((&w_a - &init).abs().max().double_value(&[]) > 0.1, "the weights moved");
    }

    /// Saving the state and loading it into a fresh optimiser continues the same run.
    #[test]
    fn state_round_trips() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0, 3.0]));
        let loss = |w: &Tensor| (w * w).sum(tch::Kind::Float);
        let mut a = Optimiser::new(&vs, 0.1, 0.0, 0, 100, 0.0).unwrap();
        a.step(&loss(&w), 0).unwrap();
        let saved: HashMap<String, Tensor> = a.state().into_iter().map(|(k, t)| (k, t.copy())).collect();
        let at = w.copy();
        a.step(&loss(&w), 1).unwrap();
        let after_a = w.copy();
        tch::no_grad(|| w.shallow_clone().copy_(&at));
        let mut b = Optimiser::new(&vs, 0.1, 0.0, 0, 100, 0.0).unwrap();
        b.load_state(&saved).unwrap();
        b.step(&loss(&w), 1).unwrap();
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), Vec::<f32>::try_from(&after_a).unwrap());
        let missing: HashMap<String, Tensor> =
            saved.iter().filter(|(k, _)| *k != "exp_avg.w").map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        assert!(b.load_state(&missing).unwrap_err().to_string().contains("exp_avg.w"));
    }

    #[test]
    fn decoupled_decay_skips_biases_and_norms() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let w = (&root / "dense").ones("weight", &[2]);
        let b = (&root / "dense").ones("bias", &[2]);
        let n = (&root / "LayerNorm").ones("weight", &[2]);
        let r = (&root / "relative_attention_bias").ones("weight", &[2]);
        let mut o = Optimiser::new(&vs, 0.1, 0.5, 0, 10, 0.0).unwrap();
        // Zero loss gradient: only the decay moves the weights.
        let loss = [&w, &b, &n, &r].iter().map(|t| (*t * 0.0).sum(tch::Kind::Float)).fold(Tensor::zeros([], (tch::Kind::Float, tch::Device::Cpu)), |a, x| a + x);
        o.step(&loss, 0).unwrap();
        assert!((w.double_value(&[0]) - 0.95).abs() < 1e-6, "decayed by lr * wd");
        assert_eq!(b.double_value(&[0]), 1.0);
        assert_eq!(n.double_value(&[0]), 1.0);
        assert_eq!(r.double_value(&[0]), 1.0, "MPNet's relative_attention_bias.weight, as HF's rule reads it");
    }
}
