//! Fine-tuning on a few labelled examples: LM-BFF's prompt-based objective
//! (cross-entropy over the label words' logits at the mask) or plain [CLS] fine-tuning.
//! AdamW, linear decay, dev evaluation every N steps keeping the best weights.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::demos::Demos;
use super::eval::{predict_examples, predict_examples_with};
use crate::metrics::{accuracy, argmax_rows, f1_binary, matthews, upper_pole_pearson};
use super::optim::Optimiser;
use super::{Progress, ProgressFn, Stage};
use crate::model::{Batch, ClsHead, MaskedLm};
use crate::prompt::{DemoPool, Encoded, Example, Prompt};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// LM-BFF: the template's mask, scored by the label words.
    Prompt,
    /// A fresh classifier on the first token of `[CLS] text [SEP]`.
    Cls,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Prompt => "prompt",
            Method::Cls => "plain",
        }
    }
}

pub use crate::prompt::MAX_DEMO_SETS;

/// Fine-tuning settings (defaults: LM-BFF's, except the step count and `demo_sets`, 1 where
/// LM-BFF averages 16: each set costs a forward pass per input).
#[derive(Debug, Clone)]
pub struct TrainParams {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    /// Evaluate on dev every this many steps (and after the last); 0 = only at the end.
    pub eval_every: usize,
    pub seed: u64,
    pub max_grad_norm: f64,
    pub eval_batch_size: usize,
    /// Append demonstrations (prompt method only): a fresh set for every query at every
    /// step during training; `demo_sets` fixed sets, logits averaged, at evaluation.
    pub demonstrations: bool,
    /// Demonstration sets used at evaluation and kept for inference (LM-BFF: 16; each
    /// costs one forward pass per input).
    pub demo_sets: usize,
    /// Similarity-filtered demonstrations (LM-BFF's `demo_filter`): the HF encoder
    /// directory whose mean-pooled embeddings rank each class's examples by similarity to
    /// the query; demonstrations then come from each class's most similar half, and each
    /// input gets its own sets at inference (`DemoPool::similar_sets`). None: drawn from
    /// the whole class, fixed sets at inference.
    pub demo_filter: Option<std::path::PathBuf>,
    /// Regression (LM-BFF's STS-B): each training example's score, and each dev
    /// example's, mapped to [0, 1] over the range of the two pole words (label 0: lower
    /// pole, label 1: upper). The loss is then KL(target || model) with the target
    /// distribution [1 - s, s] over the two label words, and dev selection uses the
    /// Pearson correlation of p(upper pole) with the dev scores. The examples' labels
    /// still give each its side (for demonstrations).
    pub regression: Option<RegressionTargets>,
    /// What dev selection maximises for classification (regression: Pearson).
    pub dev_metric: DevMetric,
    /// Weigh each class's loss by `n / (classes * n_class)` over the training examples
    /// (scikit-learn's "balanced"), so a rare class counts as much as a common one: a
    /// multi-label task's yes/no pairs are mostly "no".
    pub balance_classes: bool,
    /// Training demonstrations never share the query's first text (a multi-label task:
    /// its (input, label) pairs of one input would answer each other).
    pub demos_apart_by_input: bool,
}

/// The dev metric that picks the kept weights of a classification run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevMetric {
    #[default]
    Accuracy,
    /// F1 of class 1: LM-BFF's metric for MRPC and QQP.
    PositiveF1,
    /// A multi-label task's micro-F1: F1 of its yes/no pairs' yes class, a pair answered
    /// as the predictor answers it ([`crate::prompt::decisions`]: a tie is yes).
    MultiLabelF1,
    /// Matthews correlation of the two classes (CoLA, LM-BFF's metric there).
    Matthews,
}

/// The next batch of example indices from `order` (what is left of the epoch), at most
/// `batch_size` and at most the `n` examples. A new epoch is a reshuffle; nothing is
/// dropped: a short tail is topped up from the next epoch, whose copies of the tail's
/// examples go to its end, so that no batch holds an example twice.
fn next_batch(order: &mut Vec<usize>, n: usize, batch_size: usize, rng: &mut impl rand::Rng) -> Vec<usize> {
    let size = batch_size.min(n);
    if order.len() < size {
        let mut epoch: Vec<usize> = (0..n).collect();
        epoch.shuffle(rng);
        let (later, now): (Vec<usize>, Vec<usize>) = epoch.into_iter().partition(|i| order.contains(i));
        order.extend(now);
        order.extend(later);
    }
    order.drain(..size).collect()
}

/// Scores in [0, 1] of the training and dev examples, in their order.
#[derive(Debug, Clone, Default)]
pub struct RegressionTargets {
    pub train: Vec<f32>,
    pub dev: Vec<f32>,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            steps: 1000,
            batch_size: 8,
            lr: 1e-5,
            weight_decay: 0.0,
            warmup_steps: 0,
            eval_every: 100,
            seed: 42,
            max_grad_norm: 1.0,
            eval_batch_size: 32,
            demonstrations: false,
            demo_sets: 1,
            demo_filter: None,
            regression: None,
            dev_metric: DevMetric::Accuracy,
            balance_classes: false,
            demos_apart_by_input: false,
        }
    }
}

/// What turns encoder states into class logits.
pub enum Head {
    /// Scored token ids (int64 [T]) of the label words, read by the masked-LM head at
    /// the mask, and, unless each class is one single-token word, the [T, L] matrix that
    /// averages them into class logits.
    Prompt { label_ids: Tensor, weights: Option<Tensor> },
    Cls(ClsHead),
}

impl Head {
    pub fn for_prompt(model: &MaskedLm, prompt: &Prompt) -> Result<Self> {
        let ids: Vec<i64> = prompt.verbalizer.token_ids().iter().map(|&i| i as i64).collect();
        let weights = match prompt.verbalizer.class_weights() {
            Some(w) => {
                let flat: Vec<f32> = w.iter().flatten().copied().collect();
                Some(Tensor::from_slice(&flat).f_view([w.len() as i64, prompt.verbalizer.num_labels() as i64])?.f_to_device(model.device())?)
            }
            None => None,
        };
        Ok(Head::Prompt { label_ids: Tensor::from_slice(&ids).f_to_device(model.device())?, weights })
    }

    /// Class logits [B, L].
    pub fn logits(&self, model: &MaskedLm, batch: &Batch, train: bool) -> Result<Tensor> {
        match self {
            Head::Prompt { label_ids, weights } => {
                let logits = model.label_logits(batch, label_ids, train)?;
                match weights {
                    Some(w) => Ok(logits.f_to_kind(w.kind())?.f_matmul(w)?),
                    None => Ok(logits),
                }
            }
            Head::Cls(h) => {
                let hidden = model.encode(&batch.input_ids, &batch.attention_mask, &batch.token_type_ids, train)?;
                h.forward(&hidden, train)
            }
        }
    }
}

/// Encodes examples the way `method` reads them.
pub fn encode_all(tok: &Tokenizer, prompt: &Prompt, method: Method, examples: &[Example]) -> Result<Vec<Encoded>> {
    let plain;
    let p = match method {
        Method::Prompt => prompt,
        Method::Cls => {
            plain = prompt.plain();
            &plain
        }
    };
    examples.iter().map(|e| p.encode(tok, e)).collect()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FinetuneReport {
    pub method: &'static str,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub best_step: usize,
    pub best_dev_acc: f64,
    /// (step, dev accuracy) at each evaluation.
    pub dev_curve: Vec<(usize, f64)>,
    /// (step, training loss) every 10 steps.
    pub loss_curve: Vec<(usize, f64)>,
    pub train_seconds: f64,
    pub steps_per_sec: f64,
    pub demonstrations: bool,
    /// The demonstrations the model predicts with: evaluation used them, and a saved
    /// model keeps them.
    #[serde(skip)]
    pub demos: Demos,
}

fn gold(examples: &[Example], what: &str) -> Result<Vec<usize>> {
    examples
        .iter()
        .map(|e| e.label.ok_or_else(|| Error::InvalidArgument(format!("a {what} example has no label"))))
        .collect()
}

/// Fine-tunes `model` in place and returns the head to predict with. The weights left
/// in the model are those of the best dev evaluation (ties keep the earlier step).
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    method: Method,
    train: &[Example],
    dev: &[Example],
    p: &TrainParams,
    progress: ProgressFn,
) -> Result<(FinetuneReport, Head)> {
    if train.is_empty() {
        return Err(Error::InvalidArgument("no training examples".into()));
    }
    if p.steps == 0 || p.batch_size == 0 || !(p.lr > 0.0 && p.lr.is_finite()) {
        return Err(Error::InvalidArgument(format!("steps ({}), batch size ({}) and learning rate ({}) must be positive", p.steps, p.batch_size, p.lr)));
    }
    let labels = gold(train, "training")?;
    let dev_gold = gold(dev, "dev")?;
    if let Some(&bad) = labels.iter().chain(&dev_gold).find(|&&l| l >= prompt.verbalizer.num_labels()) {
        return Err(Error::InvalidArgument(format!("label index {bad} is out of range")));
    }
    if p.demonstrations && (method != Method::Prompt || p.demo_sets == 0 || p.demo_sets > MAX_DEMO_SETS) {
        return Err(Error::InvalidArgument(format!(
            "demonstrations need the prompt method and 1 to {MAX_DEMO_SETS} inference sets (method {}, {} sets)",
            method.name(),
            p.demo_sets
        )));
    }
    if let Some(r) = &p.regression {
        let in_range = |v: &[f32]| v.iter().all(|x| (0.0..=1.0).contains(x));
        if prompt.verbalizer.num_labels() != 2 || r.train.len() != train.len() || r.dev.len() != dev.len() || !in_range(&r.train) || !in_range(&r.dev) {
            return Err(Error::InvalidArgument(format!(
                "regression needs two label words and one score in [0, 1] per example ({} labels; {} scores for {} training and {} for {} dev examples)",
                prompt.verbalizer.num_labels(),
                r.train.len(),
                train.len(),
                r.dev.len(),
                dev.len()
            )));
        }
    }
    if p.demo_filter.is_some() && !p.demonstrations {
        return Err(Error::InvalidArgument("a demonstration filter needs demonstrations on".into()));
    }
    let pool = match p.demonstrations {
        true if p.demos_apart_by_input => Some(DemoPool::new(train, prompt.verbalizer.num_labels())?.grouped_by_input()),
        true => Some(DemoPool::new(train, prompt.verbalizer.num_labels())?),
        false => None,
    };
    // Similarity filtering: the encoder's embeddings of the training examples rank the
    // candidates of each query (the encoder stays frozen, so once is enough).
    let (demos, train_emb) = match (&pool, &p.demo_filter) {
        (None, _) => (Demos::None, None),
        (Some(pool), None) => (Demos::Fixed(pool.inference_sets(p.seed, p.demo_sets)), None),
        (Some(pool), Some(dir)) => {
            let demos = Demos::similar(pool.clone(), dir, model.device(), prompt.template.num_sentences(), p.demo_sets)?;
            let filtered = demos.filtered_pool().cloned();
            (demos, filtered)
        }
    };
    // Its own stream, so that turning demonstrations on leaves the batch order alone.
    let mut demo_rng = ChaCha8Rng::seed_from_u64(p.seed.wrapping_add(1));
    tch::manual_seed(p.seed as i64);
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let head = match method {
        Method::Prompt => {
            // Prompt fine-tuning trains the masked-LM head with the rest: a save writes it.
            model.mark_head_trained();
            Head::for_prompt(model, prompt)?
        }
        Method::Cls => Head::Cls(model.new_cls_head(prompt.verbalizer.num_labels())?),
    };
    let pad = tok.special().pad;
    let enc_train = encode_all(tok, prompt, method, train)?;
    let mut opt = Optimiser::new(&model.vs, p.lr, p.weight_decay, p.warmup_steps, p.steps, p.max_grad_norm)?;
    let mut report = FinetuneReport {
        method: method.name(),
        steps: p.steps,
        batch_size: p.batch_size,
        lr: p.lr,
        seed: p.seed,
        best_step: 0,
        best_dev_acc: f64::NEG_INFINITY,
        dev_curve: vec![],
        loss_curve: vec![],
        train_seconds: 0.0,
        steps_per_sec: 0.0,
        demonstrations: p.demonstrations,
        demos,
    };
    let class_weights = if p.balance_classes {
        let w: Vec<f32> = super::embed::balanced_weights(&labels, prompt.verbalizer.num_labels()).into_iter().map(|v| v as f32).collect();
        Some(Tensor::from_slice(&w).f_to_device(model.device())?)
    } else {
        None
    };
    let mut best = None;
    let mut order: Vec<usize> = Vec::new();
    let mut last_loss = f64::NAN;
    let mut last_metric = f64::NAN;
    let start = Instant::now();
    let mut eval_secs = 0.0;
    // A dev set its metric cannot rank on (one regression score, or all alike; no
    // positive for F1; one class for Matthews) scores every step alike: the later
    // weights win the tie then, not those of the first evaluation.
    let uninformative = match (&p.regression, p.dev_metric) {
        (Some(r), _) => r.dev.len() < 2 || r.dev.iter().all(|&s| s == r.dev[0]),
        (None, DevMetric::PositiveF1 | DevMetric::MultiLabelF1) => !dev_gold.contains(&1),
        (None, DevMetric::Matthews) => dev_gold.iter().all(|&g| Some(&g) == dev_gold.first()),
        (None, DevMetric::Accuracy) => false,
    };
    for step in 0..p.steps {
        let take = next_batch(&mut order, train.len(), p.batch_size, &mut rng);
        let with_demos: Vec<Encoded>;
        let items: Vec<&Encoded> = match (&pool, &train_emb) {
            (Some(_), Some(filtered)) => {
                with_demos = take
                    .iter()
                    .map(|&i| prompt.encode_with_demos(tok, &train[i], &filtered.sample_similar_for(&mut demo_rng, i)?))
                    .collect::<Result<_>>()?;
                with_demos.iter().collect()
            }
            (Some(pool), None) => {
                with_demos = take
                    .iter()
                    .map(|&i| prompt.encode_with_demos(tok, &train[i], &pool.sample(&mut demo_rng, Some(i))))
                    .collect::<Result<_>>()?;
                with_demos.iter().collect()
            }
            (None, _) => take.iter().map(|&i| &enc_train[i]).collect(),
        };
        let batch = model.batch(&items, pad)?;
        let logits = head.logits(model, &batch, true)?.f_to_kind(Kind::Float)?;
        let loss = match &p.regression {
            // KL(t || q) = sum t (ln t - ln q), with 0 ln 0 = 0.
            Some(r) => {
                let t: Vec<f32> = take.iter().flat_map(|&i| [1.0 - r.train[i], r.train[i]]).collect();
                let t = Tensor::from_slice(&t).f_view([take.len() as i64, 2])?.f_to_device(model.device())?;
                let log_q = logits.f_log_softmax(-1, Kind::Float)?;
                let t_log_t = t.f_xlogy(&t)?;
                t_log_t.f_sub(&t.f_mul(&log_q)?)?.f_sum_dim_intlist(1, false, Kind::Float)?.f_mean(Kind::Float)?
            }
            None => {
                let y: Vec<i64> = take.iter().map(|&i| labels[i] as i64).collect();
                let target = Tensor::from_slice(&y).f_to_device(model.device())?;
                logits.f_cross_entropy_loss(&target, class_weights.as_ref(), tch::Reduction::Mean, -100, 0.0)?
            }
        };
        opt.step(&loss, step)?;
        let done = step + 1;
        if done % 10 == 0 || done == p.steps {
            last_loss = loss.f_double_value(&[])?;
            report.loss_curve.push((done, last_loss));
        }
        let eval_now = done == p.steps || (p.eval_every > 0 && done % p.eval_every == 0);
        if eval_now && !dev.is_empty() {
            let t = Instant::now();
            // `progress` is asked between batches, at most once a second, with this step's
            // report: a cancel is taken during a long evaluation (thousands of dev inputs,
            // many demonstration sets), not only after it.
            let at = Progress { stage: Stage::Train, step: done, total: p.steps, loss: last_loss, metric: last_metric };
            let mut last = Instant::now();
            let mut beat = || {
                if last.elapsed() < std::time::Duration::from_secs(1) {
                    return Ok(());
                }
                last = Instant::now();
                if progress(at) {
                    Ok(())
                } else {
                    Err(Error::Cancelled)
                }
            };
            let logits = predict_examples_with(model, tok, prompt, method, &head, dev, &report.demos, p.eval_batch_size, &mut beat)?;
            let acc = match (&p.regression, p.dev_metric) {
                // Weights that give a non-finite logit (a diverged run) are never kept:
                // argmax would read their NaN rows as class 0 and score them.
                _ if logits.iter().flatten().any(|v| !v.is_finite()) => f64::NEG_INFINITY,
                (Some(r), _) => upper_pole_pearson(&logits, &r.dev),
                (None, DevMetric::Accuracy) => accuracy(&logits, &dev_gold),
                (None, DevMetric::PositiveF1) => f1_binary(&argmax_rows(&logits), &dev_gold, 1),
                (None, DevMetric::MultiLabelF1) => f1_binary(&crate::prompt::decisions(&logits), &dev_gold, 1),
                (None, DevMetric::Matthews) => matthews(&argmax_rows(&logits), &dev_gold),
            };
            eval_secs += t.elapsed().as_secs_f64();
            report.dev_curve.push((done, acc));
            // The host reads NaN as "no metric"; a diverged evaluation has none.
            last_metric = if acc.is_finite() { acc } else { f64::NAN };
            if acc > report.best_dev_acc || (uninformative && acc.is_finite() && acc >= report.best_dev_acc) {
                report.best_dev_acc = acc;
                report.best_step = done;
                // The old copy goes first: two at once doubled the memory kept.
                drop(best.take());
                best = Some(model.snapshot()?);
            }
        }
        if !progress(Progress { stage: Stage::Train, step: done, total: p.steps, loss: last_loss, metric: last_metric }) {
            return Err(Error::Cancelled);
        }
    }
    report.train_seconds = start.elapsed().as_secs_f64() - eval_secs;
    report.steps_per_sec = p.steps as f64 / report.train_seconds.max(1e-9);
    if !report.dev_curve.is_empty() && report.dev_curve.iter().all(|&(_, m)| m == f64::NEG_INFINITY) {
        return Err(Error::InvalidArgument(format!(
            "training diverged: the model gave non-finite logits on dev at every evaluation (learning rate {}): lower it",
            p.lr
        )));
    }
    if let Some(snap) = best {
        model.restore(&snap)?;
    } else {
        report.best_step = p.steps;
        report.best_dev_acc = f64::NAN;
        // No dev set read the last weights: the training examples do, so that a diverged
        // model (NaN probabilities that a host would read as certain) is never returned.
        let probe = &train[..train.len().min(8)];
        let logits = predict_examples(model, tok, prompt, method, &head, probe, &report.demos, p.eval_batch_size)?;
        if logits.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "training diverged: the model gives non-finite logits on the training examples (learning rate {}): lower it",
                p.lr
            )));
        }
    }
    Ok((report, head))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example once an epoch, no batch holding one twice, also where the epoch is
    /// not a whole number of batches (10 examples in batches of 8).
    #[test]
    fn batches_cover_each_epoch_without_repeats() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut order = Vec::new();
        let batches: Vec<Vec<usize>> = (0..40).map(|_| next_batch(&mut order, 10, 8, &mut rng)).collect();
        for b in &batches {
            let mut seen = b.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!((b.len(), seen.len()), (8, 8), "{b:?}");
        }
        let flat: Vec<usize> = batches.concat();
        for epoch in flat.chunks(10) {
            let mut e = epoch.to_vec();
            e.sort_unstable();
            assert_eq!(e, (0..10).collect::<Vec<_>>());
        }
        // Fewer examples than a batch: each batch is the whole set.
        assert_eq!(next_batch(&mut Vec::new(), 3, 8, &mut rng).len(), 3);
    }
}
