//! The sentence-embedding method, for encoders without a usable masked-LM head (the
//! default MiniLM is one): SetFit-style (Tunstall et al. 2022). The encoder is
//! fine-tuned contrastively on pairs built from the labelled examples (cosine similarity
//! of the mean-pooled embeddings pushed to 1 for a same-class pair, 0 for a
//! different-class pair), then a multinomial logistic regression is fitted on the
//! embeddings of the examples. Inputs are read as `[CLS] text [SEP]`.

use std::time::Instant;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::finetune::encode_all;
use super::optim::Optimiser;
use super::{Method, Progress, ProgressFn, Stage};
use crate::checkpoint::LinearHead;
use crate::model::{Batch, MaskedLm};
use crate::prompt::{Encoded, Example, Prompt, Template};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

/// Settings of the sentence-embedding method (defaults: SetFit's).
#[derive(Debug, Clone)]
pub struct EmbedParams {
    /// Pair-generation rounds: each round gives every example one same-class and one
    /// different-class partner (SetFit's `num_iterations`, 20).
    pub iterations: usize,
    /// Pairs per contrastive step (16).
    pub batch_size: usize,
    /// AdamW peak learning rate of the contrastive phase (2e-5), linear decay.
    pub lr: f64,
    pub seed: u64,
    /// Inverse L2 strength of the logistic regression (scikit-learn's C, 1.0).
    pub head_c: f64,
    /// Label anchors (not SetFit's; 4, 0 for none): each of the prompt's anchor texts
    /// ([`Prompt::anchor_texts`], "It was great.") joins the contrastive pairs as an
    /// example of its class this many times (see [`train_embedding`]).
    pub anchor_repeats: usize,
    /// Further templates whose texts are anchors too (none by default): each renders one
    /// more anchor per label word ([`Prompt::anchor_texts_with`]), and each anchor joins
    /// the pairs `anchor_repeats` times. Several phrasings of the prompt give the encoder
    /// a broader target than one.
    pub anchor_templates: Vec<Template>,
}

impl EmbedParams {
    /// These settings with the default label anchors (`on`) or none.
    pub fn with_anchors(self, on: bool) -> Self {
        EmbedParams { anchor_repeats: if on { EmbedParams::default().anchor_repeats } else { 0 }, ..self }
    }
}

impl Default for EmbedParams {
    fn default() -> Self {
        EmbedParams {
            iterations: 20,
            batch_size: 16,
            lr: 2e-5,
            seed: 42,
            head_c: 1.0,
            anchor_repeats: 4,
            anchor_templates: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EmbedReport {
    pub pairs: usize,
    pub steps: usize,
    /// (step, contrastive loss) every 10 steps.
    pub loss_curve: Vec<(usize, f64)>,
    pub train_seconds: f64,
    /// The label anchors trained with (empty: none).
    pub anchors: Vec<String>,
}

/// Mean of the last hidden states over the real tokens, L2-normalised: [B, H].
pub fn embed_batch(model: &MaskedLm, batch: &Batch, train: bool) -> Result<Tensor> {
    let hidden = model
        .encode(
            &batch.input_ids,
            &batch.attention_mask,
            &batch.token_type_ids,
            train,
        )?
        .f_to_kind(Kind::Float)?;
    let mask = batch
        .attention_mask
        .f_to_kind(Kind::Float)?
        .f_unsqueeze(-1)?;
    let summed = hidden
        .f_mul(&mask)?
        .f_sum_dim_intlist(1, false, Kind::Float)?;
    let count = mask
        .f_sum_dim_intlist(1, false, Kind::Float)?
        .f_clamp_min(1e-9)?;
    let mean = summed.f_div(&count)?;
    let norm = mean
        .f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?
        .f_clamp_min(1e-12)?;
    Ok(mean.f_div(&norm)?)
}

/// Embeddings of `examples` read as `[CLS] text [SEP]`, in input order.
pub fn embed_examples(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    examples: &[Example],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let enc = encode_all(tok, prompt, Method::Cls, examples)?;
    let mut order: Vec<usize> = (0..enc.len()).collect();
    order.sort_by_key(|&i| enc[i].input_ids.len());
    let mut out = vec![Vec::new(); enc.len()];
    tch::no_grad(|| -> Result<()> {
        for chunk in order.chunks(batch_size.max(1)) {
            let items: Vec<&Encoded> = chunk.iter().map(|&i| &enc[i]).collect();
            let e = embed_batch(model, &model.batch(&items, tok.special().pad)?, false)?
                .f_to_device(tch::Device::Cpu)?;
            for (&i, row) in chunk.iter().zip(Vec::<Vec<f32>>::try_from(&e)?) {
                out[i] = row;
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// SetFit's pairs: in each round, every example with a random other example of its class
/// (target 1) and one of another class (target 0); shuffled. A class with one example
/// has no positive partner; a task with one class has no negatives.
pub fn contrastive_pairs(
    labels: &[usize],
    iterations: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(usize, usize, f32)> {
    contrastive_pairs_by(labels.len(), iterations, rng, |i, j| labels[i] == labels[j])
}

/// Multi-label pairs: two examples are alike when their label sets share a label (or
/// both are empty), unlike when they share none. SetFit pairs by one label at a time,
/// which can call two examples both alike and unlike; this never does.
pub fn multi_label_pairs(
    sets: &[Vec<usize>],
    iterations: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(usize, usize, f32)> {
    let alike = |a: &[usize], b: &[usize]| if a.is_empty() || b.is_empty() { a.is_empty() && b.is_empty() } else { a.iter().any(|l| b.contains(l)) };
    contrastive_pairs_by(sets.len(), iterations, rng, |i, j| alike(&sets[i], &sets[j]))
}

/// The pairs of `n` examples under `alike` (symmetric): each round gives every example
/// one partner it is alike with (target 1) and one it is not (target 0), where it has
/// one; shuffled.
fn contrastive_pairs_by(
    n: usize,
    iterations: usize,
    rng: &mut ChaCha8Rng,
    alike: impl Fn(usize, usize) -> bool,
) -> Vec<(usize, usize, f32)> {
    let mut pairs = Vec::with_capacity(2 * n * iterations);
    let (same, other): (Vec<Vec<usize>>, Vec<Vec<usize>>) = (0..n)
        .map(|i| {
            let same = (0..n).filter(|&j| j != i && alike(i, j)).collect();
            let other = (0..n).filter(|&j| j != i && !alike(i, j)).collect();
            (same, other)
        })
        .unzip();
    for _ in 0..iterations {
        for i in 0..n {
            if let Some(&j) = same[i].choose(rng) {
                pairs.push((i, j, 1.0));
            }
            if let Some(&j) = other[i].choose(rng) {
                pairs.push((i, j, 0.0));
            }
        }
    }
    pairs.shuffle(rng);
    pairs
}

/// Contrastive fine-tuning of the encoder in place (one pass over `pairs`: indices into
/// `inputs` and the target cosine, 1 alike or 0 not).
pub fn contrastive_finetune(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    inputs: &[Example],
    pairs: &[(usize, usize, f32)],
    p: &EmbedParams,
    progress: ProgressFn,
) -> Result<EmbedReport> {
    check_params(p)?;
    if pairs.is_empty() {
        return Err(Error::InvalidArgument(
            "no contrastive pairs: register at least two examples, not all alike".into(),
        ));
    }
    let enc = encode_all(tok, prompt, Method::Cls, inputs)?;
    let steps = pairs.len().div_ceil(p.batch_size);
    let mut opt = Optimiser::new(&model.vs, p.lr, 0.0, 0, steps, 1.0)?;
    let mut report = EmbedReport {
        pairs: pairs.len(),
        steps,
        loss_curve: Vec::new(),
        train_seconds: 0.0,
        anchors: Vec::new(),
    };
    let start = Instant::now();
    let pad = tok.special().pad;
    for (step, chunk) in pairs.chunks(p.batch_size).enumerate() {
        let a: Vec<&Encoded> = chunk.iter().map(|&(i, _, _)| &enc[i]).collect();
        let b: Vec<&Encoded> = chunk.iter().map(|&(_, j, _)| &enc[j]).collect();
        let target: Vec<f32> = chunk.iter().map(|&(_, _, t)| t).collect();
        let ea = embed_batch(model, &model.batch(&a, pad)?, true)?;
        let eb = embed_batch(model, &model.batch(&b, pad)?, true)?;
        // Both embeddings are unit vectors: the cosine is their dot product.
        let cos = ea.f_mul(&eb)?.f_sum_dim_intlist(1, false, Kind::Float)?;
        let target = Tensor::from_slice(&target).f_to_device(model.device())?;
        let loss = cos.f_mse_loss(&target, tch::Reduction::Mean)?;
        opt.step(&loss, step)?;
        let done = step + 1;
        let mut last = f64::NAN;
        if done % 10 == 0 || done == steps {
            last = loss.f_double_value(&[])?;
            report.loss_curve.push((done, last));
        }
        if !progress(Progress {
            stage: Stage::Train,
            step: done,
            total: steps,
            loss: last,
            metric: f64::NAN,
        }) {
            return Err(Error::Cancelled);
        }
    }
    report.train_seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn check_params(p: &EmbedParams) -> Result<()> {
    if p.iterations == 0 || p.batch_size == 0 || !(p.lr > 0.0) || !(p.head_c > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "iterations ({}), batch size ({}), learning rate ({}) and head C ({}) must be positive",
            p.iterations, p.batch_size, p.lr, p.head_c
        )));
    }
    Ok(())
}

/// What both trainers share: seeds libtorch and the pair generator with `p.seed`, draws
/// the pairs, fine-tunes the encoder on them, and returns the embeddings of the first
/// `keep` inputs (those the classifier is fitted on) with the report.
#[allow(clippy::too_many_arguments)]
fn tune_and_embed(
    model: &MaskedLm,
    tok: &Tokenizer,
    reader: &Prompt,
    inputs: &[Example],
    keep: usize,
    p: &EmbedParams,
    progress: ProgressFn,
    pairs: impl FnOnce(&mut ChaCha8Rng) -> Vec<(usize, usize, f32)>,
) -> Result<(Vec<Vec<f32>>, EmbedReport)> {
    check_params(p)?;
    tch::manual_seed(p.seed as i64);
    let pairs = pairs(&mut ChaCha8Rng::seed_from_u64(p.seed));
    let report = contrastive_finetune(model, tok, reader, inputs, &pairs, p, progress)?;
    Ok((embed_examples(model, tok, reader, &inputs[..keep], 32)?, report))
}

/// Trains the sentence-embedding method on `train`: contrastive fine-tuning of `model`
/// in place, then the logistic-regression classifier on the training embeddings.
///
/// With label anchors (`p.anchor_repeats` > 0 and a template that reads one sentence),
/// the prompt's template and label words carry into this method what they carry into
/// the prompt: each anchor text ("It was great.") is an example of its class in the
/// contrastive pairs, `anchor_repeats` times, so the tuned encoder draws inputs towards
/// their class's anchor and away from the others'. The classifier is fitted on the
/// registered examples alone: the anchors shape the embedding, never outvote the labels.
pub fn train_embedding(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    train: &[Example],
    p: &EmbedParams,
    progress: ProgressFn,
) -> Result<(LinearHead, EmbedReport)> {
    let labels: Vec<usize> = train
        .iter()
        .map(|e| {
            e.label
                .ok_or_else(|| Error::InvalidArgument("a training example has no label".into()))
        })
        .collect::<Result<_>>()?;
    let k = prompt.verbalizer.num_labels();
    let anchors = if p.anchor_repeats > 0 { prompt.anchor_texts_with(&p.anchor_templates)?.unwrap_or_default() } else { Vec::new() };
    let (inputs, labels) = with_anchors(train, labels, &anchors, p.anchor_repeats);
    let n = train.len();
    let (features, mut report) = tune_and_embed(model, tok, prompt, &inputs, n, p, progress, |rng| contrastive_pairs(&labels, p.iterations, rng))?;
    let head = fit_logistic(&features, &labels[..n], k, p.head_c)?;
    report.anchors = anchors.into_iter().map(|(_, t)| t).collect();
    Ok((head, report))
}

/// `inputs` and their pair targets (a class, or a label set) with each anchor (its target
/// and text) appended `repeats` times: anchors join the contrastive pairs as examples,
/// while the classifier's rows stay the first `inputs.len()`.
fn with_anchors<T: Clone>(inputs: &[Example], mut targets: Vec<T>, anchors: &[(T, String)], repeats: usize) -> (Vec<Example>, Vec<T>) {
    let mut all = inputs.to_vec();
    for _ in 0..repeats {
        all.extend(anchors.iter().map(|(_, text)| Example::single(text.clone(), None)));
        targets.extend(anchors.iter().map(|(target, _)| target.clone()));
    }
    (all, targets)
}

/// Trains the sentence-embedding method on a multi-label task: `inputs` (single texts,
/// read by `reader`, see `Prompt::input_reader`) with their label sets over the labels
/// `names`. Contrastive fine-tuning on [`multi_label_pairs`], then one-vs-rest: a binary
/// logistic regression per label on the embeddings (rows no, yes; the same objective as
/// the single-label head with two classes). The classifier holds the heads side by
/// side, `2 * labels` rows `[no_0, yes_0, no_1, yes_1, ...]`:
/// `MultiLabel::split_heads` turns its logits into the yes/no pairs of the prompt
/// reading, so metrics, calibration and serving treat both methods alike.
///
/// With label anchors (`p.anchor_repeats` > 0), each label's name is its anchor: a text
/// whose set is that label alone, `anchor_repeats` times among the contrastive pairs, so
/// the encoder draws inputs about "Location" towards the word. As in [`train_embedding`],
/// the heads are fitted on the registered examples alone.
#[allow(clippy::too_many_arguments)]
pub fn train_embedding_multi(
    model: &MaskedLm,
    tok: &Tokenizer,
    reader: &Prompt,
    inputs: &[Example],
    sets: &[Vec<usize>],
    names: &[String],
    p: &EmbedParams,
    progress: ProgressFn,
) -> Result<(LinearHead, EmbedReport)> {
    let labels = names.len();
    if sets.len() != inputs.len() || labels == 0 {
        return Err(Error::InvalidArgument(format!("{} label sets for {} inputs over {labels} labels", sets.len(), inputs.len())));
    }
    if let Some(bad) = sets.iter().flatten().find(|&&l| l >= labels) {
        return Err(Error::InvalidArgument(format!("multi-label index {bad} is out of range ({labels} labels)")));
    }
    let n = inputs.len();
    let anchors: Vec<(Vec<usize>, String)> = names.iter().enumerate().map(|(l, name)| (vec![l], name.clone())).collect();
    let (all, all_sets) = with_anchors(inputs, sets.to_vec(), &anchors, p.anchor_repeats);
    let (features, mut report) = tune_and_embed(model, tok, reader, &all, n, p, progress, |rng| multi_label_pairs(&all_sets, p.iterations, rng))?;
    let mut head = LinearHead { weight: Vec::with_capacity(2 * labels), bias: Vec::with_capacity(2 * labels) };
    for l in 0..labels {
        let yes: Vec<usize> = sets.iter().map(|s| usize::from(s.contains(&l))).collect();
        let h = fit_logistic_weighted(&features, &yes, 2, p.head_c, Some(&balanced_weights(&yes, 2)))?;
        head.weight.extend(h.weight);
        head.bias.extend(h.bias);
    }
    if p.anchor_repeats > 0 {
        report.anchors = names.to_vec();
    }
    Ok((head, report))
}

/// Class logits of `examples` under a sentence-embedding model (its encoder and head).
pub fn embedding_logits(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    head: &LinearHead,
    examples: &[Example],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    Ok(embed_examples(model, tok, prompt, examples, batch_size)?
        .iter()
        .map(|f| head.logits(f))
        .collect())
}

/// Multinomial logistic regression on fixed features: minimises
/// `0.5 |W|^2 + C * sum_i cross_entropy(W x_i + b, y_i)` (scikit-learn's objective; the
/// intercept is not penalised) by gradient descent with Nesterov momentum.
pub fn fit_logistic(x: &[Vec<f32>], y: &[usize], num_labels: usize, c: f64) -> Result<LinearHead> {
    fit_logistic_weighted(x, y, num_labels, c, None)
}

/// Class weights that make every class count as much in the loss, `n / (k n_class)`
/// (scikit-learn's "balanced"); 1 for a class absent from `y` (no example carries it, so
/// it weighs nothing).
pub fn balanced_weights(y: &[usize], num_labels: usize) -> Vec<f64> {
    let n = y.len() as f64;
    (0..num_labels)
        .map(|c| match y.iter().filter(|&&l| l == c).count() {
            0 => 1.0,
            m => n / (num_labels as f64 * m as f64),
        })
        .collect()
}

/// [`fit_logistic`] with each example's cross-entropy weighted by its class's weight
/// (`class_weights[y_i]`; None: 1).
pub fn fit_logistic_weighted(x: &[Vec<f32>], y: &[usize], num_labels: usize, c: f64, class_weights: Option<&[f64]>) -> Result<LinearHead> {
    let d = x.first().map_or(0, Vec::len);
    if x.is_empty()
        || x.len() != y.len()
        || x.iter().any(|r| r.len() != d)
        || y.iter().any(|&l| l >= num_labels)
        || !(c > 0.0)
        || class_weights.is_some_and(|w| w.len() != num_labels || w.iter().any(|v| !(*v > 0.0 && v.is_finite())))
    {
        return Err(Error::InvalidArgument(format!(
            "logistic regression: {} rows, {} labels, C {c}",
            x.len(),
            y.len()
        )));
    }
    let k = num_labels;
    // Step 1/L with L bounding the Hessian: C * n * max|x~|^2 / 2 + 1 (x~ = [x, 1]).
    let max_sq = x
        .iter()
        .map(|r| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() + 1.0)
        .fold(0.0, f64::max);
    let weights: Vec<f64> = y.iter().map(|&l| class_weights.map_or(1.0, |w| w[l])).collect();
    let lr = 1.0 / (c * weights.iter().sum::<f64>() * max_sq / 2.0 + 1.0);
    let n_params = k * (d + 1);
    let (mut theta, mut prev) = (vec![0.0f64; n_params], vec![0.0f64; n_params]);
    for t in 1..=3000 {
        // Nesterov look-ahead point.
        let mom = (t as f64 - 1.0) / (t as f64 + 2.0);
        let look: Vec<f64> = theta
            .iter()
            .zip(&prev)
            .map(|(a, b)| a + mom * (a - b))
            .collect();
        let grad = gradient(&look, x, y, &weights, k, d, c);
        prev = std::mem::replace(
            &mut theta,
            look.iter().zip(&grad).map(|(p, g)| p - lr * g).collect(),
        );
        if grad.iter().map(|g| g * g).sum::<f64>().sqrt() < 1e-6 {
            break;
        }
    }
    let weight = (0..k)
        .map(|j| {
            theta[j * (d + 1)..j * (d + 1) + d]
                .iter()
                .map(|&v| v as f32)
                .collect()
        })
        .collect();
    let bias = (0..k).map(|j| theta[j * (d + 1) + d] as f32).collect();
    Ok(LinearHead { weight, bias })
}

/// Gradient of the objective at `theta` (row j: weights of class j, then its bias), example
/// i's loss weighted by `w[i]`.
fn gradient(theta: &[f64], x: &[Vec<f32>], y: &[usize], w: &[f64], k: usize, d: usize, c: f64) -> Vec<f64> {
    let mut g = vec![0.0f64; theta.len()];
    for j in 0..k {
        for f in 0..d {
            g[j * (d + 1) + f] = theta[j * (d + 1) + f];
        }
    }
    for ((row, &label), &wi) in x.iter().zip(y).zip(w) {
        let z: Vec<f64> = (0..k)
            .map(|j| {
                row.iter()
                    .enumerate()
                    .map(|(f, v)| theta[j * (d + 1) + f] * *v as f64)
                    .sum::<f64>()
                    + theta[j * (d + 1) + d]
            })
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for j in 0..k {
            let r = c * wi * (e[j] / s - if j == label { 1.0 } else { 0.0 });
            for (f, v) in row.iter().enumerate() {
                g[j * (d + 1) + f] += r * *v as f64;
            }
            g[j * (d + 1) + d] += r;
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_same_class_positives_and_cross_class_negatives() {
        let labels = [0, 0, 1, 1, 1];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let pairs = contrastive_pairs(&labels, 4, &mut rng);
        assert_eq!(pairs.len(), 2 * 5 * 4);
        for (i, j, t) in pairs {
            assert_ne!(i, j);
            assert_eq!(t == 1.0, labels[i] == labels[j]);
        }
    }

    #[test]
    fn multi_label_pairs_are_alike_when_the_sets_share_a_label() {
        let sets = [vec![0], vec![0, 1], vec![1], vec![2], vec![], vec![]];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let pairs = multi_label_pairs(&sets, 6, &mut rng);
        let share = |i: usize, j: usize| sets[i].iter().any(|l| sets[j].contains(l)) || (sets[i].is_empty() && sets[j].is_empty());
        for &(i, j, t) in &pairs {
            assert_ne!(i, j);
            assert_eq!(t == 1.0, share(i, j), "pair ({i}, {j})");
        }
        // {2} is alike no other example: it only has negatives; every other one has both.
        assert!(pairs.iter().all(|&(i, _, t)| i != 3 || t == 0.0));
        assert_eq!(pairs.len(), 6 * (2 * 6 - 1));
    }

    #[test]
    fn logistic_regression_separates_and_matches_the_optimum() {
        // Two clusters in 2-D.
        let x = vec![
            vec![1.0, 0.1],
            vec![0.9, -0.1],
            vec![-1.0, 0.05],
            vec![-0.8, -0.2],
        ];
        let y = [1, 1, 0, 0];
        let h = fit_logistic(&x, &y, 2, 1.0).unwrap();
        for (r, &l) in x.iter().zip(&y) {
            let z = h.logits(r);
            assert_eq!(usize::from(z[1] > z[0]), l);
        }
        // At the optimum the gradient vanishes.
        let theta: Vec<f64> = (0..2)
            .flat_map(|j| {
                h.weight[j]
                    .iter()
                    .map(|&v| v as f64)
                    .chain([h.bias[j] as f64])
            })
            .collect();
        let g = gradient(&theta, &x, &y, &[1.0; 4], 2, 2, 1.0);
        assert!(g.iter().all(|v| v.abs() < 1e-4), "{g:?}");
        // Weighted: one example of class 1 among three; balanced weights move the
        // boundary towards class 0 (class 1's probability at the midpoint rises) and
        // the weighted gradient vanishes at the weighted optimum.
        let (x3, y3) = (vec![vec![1.0, 0.0], vec![-1.0, 0.1], vec![-0.9, -0.1], vec![-1.1, 0.0]], [1, 0, 0, 0]);
        let w = balanced_weights(&y3, 2);
        assert_eq!(w, vec![4.0 / 6.0, 2.0]);
        let p1 = |h: &LinearHead| {
            let z = h.logits(&[0.0, 0.0]);
            1.0 / (1.0 + (z[0] - z[1]).exp())
        };
        let (plain, balanced) = (fit_logistic(&x3, &y3, 2, 1.0).unwrap(), fit_logistic_weighted(&x3, &y3, 2, 1.0, Some(&w)).unwrap());
        assert!(p1(&balanced) > p1(&plain) + 0.05, "{} vs {}", p1(&balanced), p1(&plain));
        let theta: Vec<f64> = (0..2).flat_map(|j| balanced.weight[j].iter().map(|&v| v as f64).chain([balanced.bias[j] as f64])).collect();
        let per: Vec<f64> = y3.iter().map(|&l| w[l]).collect();
        assert!(gradient(&theta, &x3, &y3, &per, 2, 2, 1.0).iter().all(|v| v.abs() < 1e-4));
        assert!(fit_logistic_weighted(&x3, &y3, 2, 1.0, Some(&[1.0])).is_err(), "a weight per class");
        assert_eq!(balanced_weights(&[0, 0], 2), vec![0.5, 1.0], "an absent class keeps weight 1");
        assert!(fit_logistic(&x, &[0, 1, 2, 0], 2, 1.0).is_err());
    }
}
