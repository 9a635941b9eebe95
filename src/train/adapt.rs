//! Masked-LM adaptation: continued masked-LM training on unlabeled text, with whole-word
//! masking (15% of words; of their tokens 80% [MASK], 10% random, 10% kept, as BERT).
//! It gives a checkpoint without a masked-LM head (a sentence encoder) a trained one,
//! and adapts any model to the host's domain (Gururangan et al., 2020).

use std::time::Instant;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::optim::Optimiser;
use super::{Progress, ProgressFn, Stage};
use crate::model::MaskedLm;
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

/// Which weights adaptation trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Trainable {
    /// Only the masked-LM head's transform and bias (the tied decoder stays frozen).
    Head,
    /// The head and the top N encoder layers.
    TopLayers(usize),
    /// Everything, embeddings included.
    All,
}

impl std::str::FromStr for Trainable {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "head" => Ok(Trainable::Head),
            "all" => Ok(Trainable::All),
            _ => s
                .strip_prefix("top")
                .and_then(|n| n.trim_start_matches(':').parse().ok())
                .map(Trainable::TopLayers)
                .ok_or_else(|| Error::InvalidArgument(format!("trainable {s:?}: expected head, all or topN (e.g. top2)"))),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AdaptParams {
    pub steps: usize,
    pub batch_size: usize,
    /// Tokens per sequence, special tokens included.
    pub max_len: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Warm-up steps as a fraction of `steps`.
    pub warmup_ratio: f64,
    /// Fraction of words masked.
    pub mask_prob: f64,
    pub trainable: Trainable,
    pub seed: u64,
}

impl Default for AdaptParams {
    fn default() -> Self {
        AdaptParams {
            steps: 2000,
            batch_size: 32,
            max_len: 64,
            lr: 1e-4,
            weight_decay: 0.01,
            warmup_ratio: 0.06,
            mask_prob: 0.15,
            trainable: Trainable::All,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AdaptReport {
    pub params: AdaptParams,
    pub texts: usize,
    /// (step, mean masked-LM loss over the last 10 steps).
    pub loss_curve: Vec<(usize, f64)>,
    pub seconds: f64,
}

struct Tokenized {
    ids: Vec<u32>,
    words: Vec<Option<u32>>,
}

/// Builds one masked sequence: `[CLS] tokens [SEP]` with whole words masked.
/// Returns (input ids, labels with -100 where not predicted).
fn mask_sequence(t: &Tokenized, max_len: usize, p: f64, tok: &Tokenizer, rng: &mut ChaCha8Rng) -> (Vec<i64>, Vec<i64>) {
    let special = tok.special();
    let n = t.ids.len().min(max_len - 2);
    let mut words: Vec<u32> = t.words[..n].iter().flatten().copied().collect();
    words.dedup();
    let k = ((words.len() as f64 * p).round() as usize).max(1).min(words.len());
    let chosen: Vec<u32> = words.choose_multiple(rng, k).copied().collect();
    let vocab = tok.vocab_size() as u32;
    let mut ids = Vec::with_capacity(n + 2);
    let mut labels = Vec::with_capacity(n + 2);
    ids.push(special.cls as i64);
    labels.push(-100);
    for i in 0..n {
        let original = t.ids[i];
        let masked = t.words[i].is_some_and(|w| chosen.contains(&w));
        if masked {
            let r: f64 = rng.random();
            let id = if r < 0.8 {
                special.mask
            } else if r < 0.9 {
                rng.random_range(0..vocab)
            } else {
                original
            };
            ids.push(id as i64);
            labels.push(original as i64);
        } else {
            ids.push(original as i64);
            labels.push(-100);
        }
    }
    ids.push(special.sep as i64);
    labels.push(-100);
    (ids, labels)
}

fn set_trainable(model: &MaskedLm, what: Trainable) {
    let layers = model.config.num_hidden_layers as usize;
    for (name, t) in model.vs.variables() {
        let head = name.starts_with("cls.") || name.starts_with("lm_head.");
        let layer: Option<usize> = name.split(".layer.").nth(1).and_then(|r| r.split('.').next()).and_then(|n| n.parse().ok());
        let on = match what {
            Trainable::All => true,
            Trainable::Head => head,
            Trainable::TopLayers(n) => head || layer.is_some_and(|l| l + n >= layers),
        };
        let _ = t.set_requires_grad(on);
    }
}

/// Continues masked-LM training of `model` on `texts`, in place.
pub fn adapt(model: &MaskedLm, tok: &Tokenizer, texts: &[String], p: &AdaptParams, progress: ProgressFn) -> Result<AdaptReport> {
    if p.steps == 0 || p.batch_size == 0 || p.max_len < 4 || !(p.lr > 0.0) || !(0.0..1.0).contains(&p.mask_prob) {
        return Err(Error::InvalidArgument(format!("adaptation settings out of range: {p:?}")));
    }
    let max_len = p.max_len.min(model.config.max_input_len() as usize);
    let mut data = Vec::with_capacity(texts.len());
    for text in texts {
        let (ids, words) = tok.encode_words(text)?;
        if words.iter().any(Option::is_some) {
            data.push(Tokenized { ids, words });
        }
    }
    if data.is_empty() {
        return Err(Error::InvalidArgument("no unlabeled text to adapt on".into()));
    }
    tch::manual_seed(p.seed as i64);
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    set_trainable(model, p.trainable);
    // Whatever happens (error, cancellation), leave every weight trainable again.
    struct Unfreeze<'a>(&'a MaskedLm);
    impl Drop for Unfreeze<'_> {
        fn drop(&mut self) {
            set_trainable(self.0, Trainable::All);
        }
    }
    let _unfreeze = Unfreeze(model);
    let warmup = (p.steps as f64 * p.warmup_ratio) as usize;
    let mut opt = Optimiser::new(&model.vs, p.lr, p.weight_decay, warmup, p.steps, 1.0)?;
    let dev = model.device();
    let pad = tok.special().pad as i64;
    let mut order: Vec<usize> = Vec::new();
    let mut curve = Vec::new();
    let mut window = Vec::new();
    let start = Instant::now();
    for step in 0..p.steps {
        while order.len() < p.batch_size {
            let mut epoch: Vec<usize> = (0..data.len()).collect();
            epoch.shuffle(&mut rng);
            order.extend(epoch);
        }
        let rows: Vec<(Vec<i64>, Vec<i64>)> =
            order.drain(..p.batch_size).map(|i| mask_sequence(&data[i], max_len, p.mask_prob, tok, &mut rng)).collect();
        let s = rows.iter().map(|r| r.0.len()).max().unwrap_or(2);
        let b = rows.len();
        let mut ids = vec![pad; b * s];
        let mut labels = vec![-100i64; b * s];
        let mut mask = vec![0i64; b * s];
        for (r, (x, y)) in rows.iter().enumerate() {
            ids[r * s..r * s + x.len()].copy_from_slice(x);
            labels[r * s..r * s + y.len()].copy_from_slice(y);
            mask[r * s..r * s + x.len()].iter_mut().for_each(|m| *m = 1);
        }
        let shape = [b as i64, s as i64];
        let to = |v: &[i64]| -> Result<Tensor> { Ok(Tensor::from_slice(v).f_view(shape)?.f_to_device(dev)?) };
        let (input_ids, attention_mask, labels_t) = (to(&ids)?, to(&mask)?, to(&labels)?);
        let types = input_ids.f_zeros_like()?;
        let hidden = model.encode(&input_ids, &attention_mask, &types, true)?;
        // Only masked positions go through the head and the full-vocabulary decoder.
        let flat_labels = labels_t.f_view([-1])?;
        let picked = flat_labels.f_ne(-100)?.f_nonzero()?.f_view([-1])?;
        let h = hidden.f_view([(b * s) as i64, -1])?.f_index_select(0, &picked)?;
        let logits = model.head().logits(&model.head().transform(&h)?, model.word_embeddings())?;
        let target = flat_labels.f_index_select(0, &picked)?;
        let loss = logits.f_to_kind(Kind::Float)?.f_cross_entropy_loss::<Tensor>(&target, None, tch::Reduction::Mean, -100, 0.0)?;
        opt.step(&loss, step)?;
        window.push(loss.f_double_value(&[])?);
        let done = step + 1;
        if done % 10 == 0 || done == p.steps {
            curve.push((done, window.iter().sum::<f64>() / window.len() as f64));
            window.clear();
        }
        let last = curve.last().map(|c| c.1).unwrap_or(f64::NAN);
        if !progress(Progress { stage: Stage::Adapt, step: done, total: p.steps, loss: last, metric: f64::NAN }) {
            return Err(Error::Cancelled);
        }
    }
    Ok(AdaptReport { params: p.clone(), texts: data.len(), loss_curve: curve, seconds: start.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trainable() {
        assert_eq!("head".parse::<Trainable>().unwrap(), Trainable::Head);
        assert_eq!("top2".parse::<Trainable>().unwrap(), Trainable::TopLayers(2));
        assert_eq!("all".parse::<Trainable>().unwrap(), Trainable::All);
        assert!("some".parse::<Trainable>().is_err());
    }
}
