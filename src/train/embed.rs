//! The sentence-embedding method, for encoders without a usable masked-LM head (the
//! default MiniLM is one): SetFit-style (Tunstall et al. 2022). The encoder is
//! fine-tuned contrastively on pairs built from the labelled examples (cosine similarity
//! of the mean-pooled embeddings pushed to 1 for a same-class pair, 0 for a
//! different-class pair), then a multinomial logistic regression is fitted on the
//! embeddings of the examples. Inputs are read as `[CLS] text [SEP]`.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::finetune::encode_all;
use super::optim::Optimiser;
use super::{Method, Progress, ProgressFn, Stage};
use crate::checkpoint::{LinearHead, WordAnchors, WORD_ANCHOR_GROUPS};
use crate::model::{Batch, MaskedLm};
use crate::prompt::{Encoded, Example, Prompt, Template};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

/// Settings of the sentence-embedding method (defaults: SetFit's pairs, batch, learning
/// rate and head; its optimiser without SetFit's 10% warm-up and 0.01 weight decay, as
/// every measured run of the method trained).
#[derive(Debug, Clone)]
pub struct EmbedParams {
    /// Pair-generation rounds: each round gives every example one same-class and one
    /// different-class partner (SetFit's `num_iterations`, 20).
    pub iterations: usize,
    /// Pairs per contrastive step (16).
    pub batch_size: usize,
    /// AdamW peak learning rate of the contrastive phase (2e-5), linear decay from the
    /// first step (no warm-up), no weight decay.
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
    /// Word anchors (not SetFit's; 3.0, 0 for none): the classifier also reads how close
    /// the input's tokens come to each class's label word in the tuned encoder
    /// ([`word_anchor_features`]), those features multiplied by this before the
    /// logistic regression (whose penalty makes the factor their weight against the
    /// embedding). Needs label anchors' texts: a prompt reading one sentence.
    pub word_anchor_scale: f64,
    /// At most this many contrastive steps (0, the default: SetFit's whole schedule,
    /// which grows with the examples), applied by [`train_embedding`] and
    /// [`train_embedding_multi`] ([`contrastive_finetune`] trains on the pairs it is
    /// given). A cap trains on the first `max_steps` x
    /// `batch_size` of the shuffled pairs, so a capped run is a uniform sample of the
    /// uncapped one's pairs, with the learning rate decaying over the capped steps.
    pub max_steps: usize,
}

impl EmbedParams {
    /// Every setting in range, or what is not.
    pub fn check(&self) -> Result<()> {
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if self.iterations == 0 || self.batch_size == 0 || !positive(self.lr) || !positive(self.head_c) {
            return Err(Error::InvalidArgument(format!(
                "iterations ({}), batch size ({}), learning rate ({}) and head C ({}) must be positive",
                self.iterations, self.batch_size, self.lr, self.head_c
            )));
        }
        if !(self.word_anchor_scale >= 0.0 && self.word_anchor_scale.is_finite()) {
            return Err(Error::InvalidArgument(format!("the word anchors' scale ({}) must be 0 (none) or positive", self.word_anchor_scale)));
        }
        Ok(())
    }

    /// These settings with the default label and word anchors (`on`) or none.
    pub fn with_anchors(self, on: bool) -> Self {
        let d = EmbedParams::default();
        EmbedParams {
            anchor_repeats: if on { d.anchor_repeats } else { 0 },
            word_anchor_scale: if on { d.word_anchor_scale } else { 0.0 },
            ..self
        }
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
            word_anchor_scale: 3.0,
            max_steps: 0,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EmbedReport {
    pub pairs: usize,
    pub steps: usize,
    /// The steps of the whole schedule when `max_steps` cut it short (None: not cut).
    pub capped_from: Option<usize>,
    /// (step, contrastive loss) every 10 steps.
    pub loss_curve: Vec<(usize, f64)>,
    pub train_seconds: f64,
    /// The label anchors trained with (empty: none).
    pub anchors: Vec<String>,
}

/// Mean of the last hidden states over the real tokens, L2-normalised: [B, H].
pub fn embed_batch(model: &MaskedLm, batch: &Batch, train: bool) -> Result<Tensor> {
    mean_pool(&last_hidden(model, batch, train)?, &batch.attention_mask)
}

fn last_hidden(model: &MaskedLm, batch: &Batch, train: bool) -> Result<Tensor> {
    Ok(model.encode(&batch.input_ids, &batch.attention_mask, &batch.token_type_ids, train)?.f_to_kind(Kind::Float)?)
}

/// `hidden` [B, S, H] averaged over the tokens of `mask` [B, S], L2-normalised.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?;
    let summed = hidden.f_mul(&mask)?.f_sum_dim_intlist(1, false, Kind::Float)?;
    let count = mask.f_sum_dim_intlist(1, false, Kind::Float)?.f_clamp_min(1e-9)?;
    let mean = summed.f_div(&count)?;
    let norm = mean.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?;
    Ok(mean.f_div(&norm)?)
}

/// Added to a masked-out token's cosine so that no max or top-k picks it.
pub const WORD_ANCHOR_MASKED: f64 = 1e4;
/// How many of the tokens most like a class's word the second feature group averages.
pub const WORD_ANCHOR_TOP: i64 = 3;

/// The word anchors' features of a batch ([B, 4C], before scaling): each of the input's
/// own tokens (every real token but the first and the last, `[CLS]` and `[SEP]`; all
/// real tokens when there is none between them) is compared by cosine with each class's
/// word vector (`anchors` [C, H], unit rows), and per class the batch row holds the
/// highest cosine, the mean of the `WORD_ANCHOR_TOP` highest (of all when the input has
/// fewer tokens), and the highest and lowest margin of the cosine over the mean of the
/// classes' cosines at that token. Sentence embeddings average a review's few telling
/// words away; these read them. `mask` [B, S] is the batch's attention mask, real tokens
/// first (right padding). Mirrored in src/export/encoder.rs (`word_anchor_graph`).
pub fn word_anchor_features(hidden: &Tensor, mask: &Tensor, anchors: &Tensor) -> Result<Tensor> {
    let m = mask.f_to_kind(Kind::Float)?;
    let s = m.size()[1];
    // Token t is the input's own when t >= 1 and token t + 1 is real.
    let zero = m.f_narrow(1, 0, 1)?.f_zeros_like()?;
    let inner = if s >= 2 { Tensor::f_cat(&[&zero, &m.f_narrow(1, 2, s - 2)?, &zero], 1)? } else { zero.shallow_clone() };
    let none = inner.f_amax([1i64].as_slice(), true)?.f_neg()?.f_add_scalar(1.0)?;
    let inner = inner.f_add(&m.f_mul(&none)?)?;
    let norm = hidden.f_norm_scalaropt_dim(2, [-1i64].as_slice(), true)?.f_clamp_min(1e-12)?;
    let sim = hidden.f_div(&norm)?.f_matmul(&anchors.f_tr()?)?; // [B, S, C]
    let margin = sim.f_sub(&sim.f_mean_dim([-1i64].as_slice(), true, Kind::Float)?)?;
    // 0 on the input's tokens, -WORD_ANCHOR_MASKED elsewhere [B, S, 1].
    let pen = inner.f_unsqueeze(-1)?.f_sub_scalar(1.0)?.f_mul_scalar(WORD_ANCHOR_MASKED)?;
    let masked = sim.f_add(&pen)?;
    let best = masked.f_amax([1i64].as_slice(), false)?;
    // Top-k over the tokens, padded with masked rows so that k never exceeds the length.
    let filler = masked.f_narrow(1, 0, 1)?.f_zeros_like()?.f_sub_scalar(WORD_ANCHOR_MASKED)?.f_repeat([1, WORD_ANCHOR_TOP - 1, 1])?;
    let (top, _) = Tensor::f_cat(&[&masked, &filler], 1)?.f_topk(WORD_ANCHOR_TOP, 1, true, true)?;
    let valid = top.f_gt(-WORD_ANCHOR_MASKED / 2.0)?.f_to_kind(Kind::Float)?;
    let top_mean = top
        .f_mul(&valid)?
        .f_sum_dim_intlist(1, false, Kind::Float)?
        .f_div(&valid.f_sum_dim_intlist(1, false, Kind::Float)?.f_clamp_min(1.0)?)?;
    let high = margin.f_add(&pen)?.f_amax([1i64].as_slice(), false)?;
    let low = margin.f_sub(&pen)?.f_amin([1i64].as_slice(), false)?;
    Ok(Tensor::f_cat(&[&best, &top_mean, &high, &low], 1)?)
}

/// What the classifier reads for a batch: the embedding ([`embed_batch`]), followed,
/// with word anchors, by their features times their scale.
fn classifier_batch(model: &MaskedLm, batch: &Batch, word: Option<&(Tensor, f64)>) -> Result<Tensor> {
    let hidden = last_hidden(model, batch, false)?;
    let e = mean_pool(&hidden, &batch.attention_mask)?;
    match word {
        None => Ok(e),
        Some((anchors, scale)) => {
            let f = word_anchor_features(&hidden, &batch.attention_mask, anchors)?.f_mul_scalar(*scale)?;
            Ok(Tensor::f_cat(&[&e, &f], 1)?)
        }
    }
}

/// Embeddings of `examples` read as `[CLS] text [SEP]`, in input order.
pub fn embed_examples(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    examples: &[Example],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    classifier_inputs(model, tok, prompt, None, examples, batch_size, &mut || Ok(()))
}

/// What a sentence-embedding classifier reads for each of `examples`, in input order:
/// the embedding, then with `word` anchors (vectors [C, H] on the model's device, scale)
/// their features. `beat` runs before each batch (a cancel it returns ends the work).
fn classifier_inputs(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    word: Option<&(Tensor, f64)>,
    examples: &[Example],
    batch_size: usize,
    beat: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<Vec<f32>>> {
    let enc = encode_all(tok, prompt, Method::Cls, examples)?;
    let mut order: Vec<usize> = (0..enc.len()).collect();
    order.sort_by_key(|&i| enc[i].input_ids.len());
    let mut out = vec![Vec::new(); enc.len()];
    tch::no_grad(|| -> Result<()> {
        for chunk in order.chunks(batch_size.max(1)) {
            beat()?;
            let items: Vec<&Encoded> = chunk.iter().map(|&i| &enc[i]).collect();
            let e = classifier_batch(model, &model.batch(&items, tok.special().pad)?, word)?.f_to_device(tch::Device::Cpu)?;
            for (&i, row) in chunk.iter().zip(Vec::<Vec<f32>>::try_from(&e)?) {
                out[i] = row;
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The word anchors' vectors of a prompt: each anchor text ([`Prompt::anchor_texts`],
/// "It was great.", and those of the further `templates`) read by the tuned encoder, and
/// the states of its label word's tokens averaged. A word's tokens are found without
/// asking the tokenizer where words go: an anchor differs from the template's frame (its
/// text without a word, "It was.") only in the word, so they are the tokens it has
/// beyond the frame's, from where the frame's text before the mask ends ([`word_span`],
/// which falls back to what the shared start and end leave). Comparing the anchors with each other
/// instead loses what words share: "good" and "not good" share "good", which left "not"
/// for one and nothing for the other. A
/// class's vector is the normalised mean of its words' normalised vectors. None when the
/// prompt has no anchors (it reads two sentences).
pub fn word_anchor_vectors(model: &MaskedLm, tok: &Tokenizer, prompt: &Prompt, templates: &[Template]) -> Result<Option<Vec<Vec<f32>>>> {
    let Some(first) = prompt.anchor_texts() else { return Ok(None) };
    let mut groups = vec![(first, prompt.anchor_text(""), prompt.anchor_text_before_mask())];
    for t in templates {
        let p = Prompt::new(t.clone(), prompt.verbalizer.clone(), prompt.truncation)?;
        let texts = p.anchor_texts().ok_or_else(|| Error::InvalidArgument(format!("anchor template {:?} reads two sentences", t.source())))?;
        // A template whose anchors are all there already (the task's own, given again)
        // is not counted twice, as the pairs take each text once.
        if texts.iter().all(|a| groups.iter().any(|(g, _, _)| g.contains(a))) {
            continue;
        }
        groups.push((texts, p.anchor_text(""), p.anchor_text_before_mask()));
    }
    let k = prompt.verbalizer.num_labels();
    let mut sums: Vec<Option<Tensor>> = (0..k).map(|_| None).collect();
    for (group, frame, before) in &groups {
        let examples: Vec<Example> = group.iter().map(|(_, t)| Example::single(t.clone(), None)).collect();
        let enc = encode_all(tok, prompt, Method::Cls, &examples)?;
        let frame = encode_all(tok, prompt, Method::Cls, &[Example::single(frame.clone(), None)])?.remove(0).input_ids;
        // The text before the mask as tokens, less the [SEP] that closes it alone.
        let at = encode_all(tok, prompt, Method::Cls, &[Example::single(before.clone(), None)])?.remove(0).input_ids.len().saturating_sub(1);
        let hidden = tch::no_grad(|| -> Result<Tensor> {
            let items: Vec<&Encoded> = enc.iter().collect();
            last_hidden(model, &model.batch(&items, tok.special().pad)?, false)
        })?;
        for (row, (&(class, _), e)) in group.iter().zip(&enc).enumerate() {
            let (start, end) = word_span(&e.input_ids, &frame, at);
            let (start, end) = (start as i64, end as i64);
            let v = hidden.f_get(row as i64)?.f_narrow(0, start, end - start)?.f_mean_dim([0i64].as_slice(), false, Kind::Float)?;
            let v = v.f_div(&v.f_norm()?.f_clamp_min(1e-12)?)?;
            sums[class] = Some(match sums[class].take() {
                None => v,
                Some(acc) => acc.f_add(&v)?,
            });
        }
    }
    let mut out = Vec::with_capacity(k);
    for (class, sum) in sums.into_iter().enumerate() {
        let sum = sum.ok_or_else(|| Error::InvalidArgument(format!("class {class} has no label anchor")))?;
        let v = sum.f_div(&sum.f_norm()?.f_clamp_min(1e-12)?)?.f_to_device(tch::Device::Cpu)?;
        out.push(Vec::<f32>::try_from(&v)?);
    }
    Ok(Some(out))
}

/// Where an anchor's word lies in its tokens `ids`, against the `frame`'s (the anchor
/// text without its word) and `at`, the frame's tokens before the mask: the tokens from
/// `at` that the frame lacks, when the rest match the frame; else the span the frame's
/// longest shared head and tail leave (a word whose tokens merged with their
/// neighbours'), and at worst every token but [CLS] and [SEP]. Matching the head alone
/// would take a word starting with the token after the mask ("A moviegoer movie."
/// against "A movie.") one token too late.
pub(crate) fn word_span(ids: &[u32], frame: &[u32], at: usize) -> (usize, usize) {
    let len = ids.len();
    if len > frame.len() && at <= frame.len() {
        let w = len - frame.len();
        if ids[..at] == frame[..at] && ids[at + w..] == frame[at..] {
            return (at, at + w);
        }
    }
    let shortest = len.min(frame.len());
    let prefix = (0..shortest).take_while(|&p| ids[p] == frame[p]).count();
    let suffix = (0..shortest - prefix).take_while(|&q| ids[len - 1 - q] == frame[frame.len() - 1 - q]).count();
    match (prefix, len - suffix) {
        (start, end) if end > start => (start, end),
        _ if len > 2 => (1, len - 1),
        _ => (0, len),
    }
}

/// Logit per unit of cosine of [`word_anchor_zero_shot`] (SimCSE's temperature, 0.05):
/// a class whose word comes 0.05 closer gets e times the odds.
pub const ZERO_SHOT_WORDS_LOGIT_SCALE: f32 = 20.0;

/// The word anchors' zero-shot classifier: no training, no example. The encoder as it is
/// reads each class's label word in its anchor text ([`word_anchor_vectors`], "great" in
/// "It was great."), and an input's logit for a class is how close its 3 closest tokens
/// come to that word: the mean of their cosines ([`word_anchor_features`]' second group)
/// times [`ZERO_SHOT_WORDS_LOGIT_SCALE`]. It is a [`LinearHead`] over the word-anchor
/// features with every other weight 0, so it is scored, exported and served as any
/// sentence-embedding model is. A headless encoder keeps its prompt knowledge in its
/// tokens, not in the mask slot (docs/harness.md, "Word anchors"). Further `templates`
/// read each word in more phrasings, as for the trained method. A prompt without anchors
/// (its template reads two sentences) is an `InvalidArgument` error that says so.
pub fn word_anchor_zero_shot(model: &MaskedLm, tok: &Tokenizer, prompt: &Prompt, templates: &[Template]) -> Result<LinearHead> {
    let Some(vectors) = word_anchor_vectors(model, tok, prompt, templates)? else {
        return Err(Error::InvalidArgument(
            "the zero-shot-words method reads the label words in the template's own text, and this template reads two sentences".into(),
        ));
    };
    let (k, hidden) = (vectors.len(), vectors.first().map_or(0, Vec::len));
    let width = hidden + WORD_ANCHOR_GROUPS * k;
    let weight = (0..k)
        .map(|c| {
            let mut row = vec![0.0f32; width];
            row[hidden + k + c] = ZERO_SHOT_WORDS_LOGIT_SCALE;
            row
        })
        .collect();
    Ok(LinearHead { weight, bias: vec![0.0; k], word_anchors: Some(WordAnchors { vectors, scale: 1.0 }) })
}

/// SetFit's pairs: in each round, every example with a random other example of its class
/// (target 1) and one of another class (target 0); shuffled. A class with one example
/// has no positive partner; a task with one class has no negatives. Memory is linear in
/// the examples (each class's members, not each example's partner lists).
pub fn contrastive_pairs(
    labels: &[usize],
    iterations: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(usize, usize, f32)> {
    contrastive_pairs_by(&ByClass::new(labels), labels.len(), iterations, rng)
}

/// Multi-label pairs: two examples are alike when their label sets share a label (or
/// both are empty), unlike when they share none. SetFit pairs by one label at a time,
/// which can call two examples both alike and unlike; this never does. Alikeness is
/// held as one bit per pair of examples (12.5 MB for 10,000 examples).
pub fn multi_label_pairs(
    sets: &[Vec<usize>],
    iterations: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(usize, usize, f32)> {
    let alike = |a: &[usize], b: &[usize]| if a.is_empty() || b.is_empty() { a.is_empty() && b.is_empty() } else { a.iter().any(|l| b.contains(l)) };
    contrastive_pairs_by(&AlikeBits::new(sets.len(), |i, j| alike(&sets[i], &sets[j])), sets.len(), iterations, rng)
}

/// Whom each of `n` examples may pair with: for example `i`, how many others are alike
/// with it (or unlike), and the `k`-th of them in index order.
trait Partners {
    fn count(&self, i: usize, alike: bool) -> usize;
    fn nth(&self, i: usize, alike: bool, k: usize) -> usize;
}

/// Single-label partners from each class's members in index order: the `k`-th member
/// of `i`'s class after skipping `i`, or the `k`-th index outside the class (a binary
/// search over the members).
struct ByClass<'a> {
    labels: &'a [usize],
    members: std::collections::HashMap<usize, Vec<usize>>,
    /// Each example's position among its class's members.
    pos: Vec<usize>,
}

impl<'a> ByClass<'a> {
    fn new(labels: &'a [usize]) -> Self {
        let mut members: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
        let pos = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let m = members.entry(l).or_default();
                m.push(i);
                m.len() - 1
            })
            .collect();
        ByClass { labels, members, pos }
    }
}

impl Partners for ByClass<'_> {
    fn count(&self, i: usize, alike: bool) -> usize {
        let m = self.members[&self.labels[i]].len();
        if alike { m - 1 } else { self.labels.len() - m }
    }

    fn nth(&self, i: usize, alike: bool, k: usize) -> usize {
        let cls = &self.members[&self.labels[i]];
        if alike {
            return cls[k + usize::from(k >= self.pos[i])];
        }
        // The k-th index not in `cls` is k + t, t the number of members below it: the
        // first t whose member lies past k + t (cls[t] - t grows with t).
        let (mut lo, mut hi) = (0, cls.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if cls[mid] - mid <= k {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        k + lo
    }
}

/// Partners under any symmetric relation: one bit per pair.
struct AlikeBits {
    n: usize,
    words: usize,
    bits: Vec<u64>,
    alike: Vec<usize>,
}

impl AlikeBits {
    fn new(n: usize, alike: impl Fn(usize, usize) -> bool) -> Self {
        let words = n.div_ceil(64);
        let mut bits = vec![0u64; n * words];
        let mut count = vec![0usize; n];
        for i in 0..n {
            for j in (i + 1)..n {
                if alike(i, j) {
                    bits[i * words + j / 64] |= 1 << (j % 64);
                    bits[j * words + i / 64] |= 1 << (i % 64);
                    count[i] += 1;
                    count[j] += 1;
                }
            }
        }
        AlikeBits { n, words, bits, alike: count }
    }
}

impl Partners for AlikeBits {
    fn count(&self, i: usize, alike: bool) -> usize {
        if alike { self.alike[i] } else { self.n - 1 - self.alike[i] }
    }

    fn nth(&self, i: usize, alike: bool, mut k: usize) -> usize {
        for w in 0..self.words {
            let mut word = self.bits[i * self.words + w];
            if !alike {
                // Unlike: neither alike nor `i` itself, within 0..n.
                word = !word;
                if w == i / 64 {
                    word &= !(1 << (i % 64));
                }
                if w + 1 == self.words && !self.n.is_multiple_of(64) {
                    word &= (1 << (self.n % 64)) - 1;
                }
            }
            let ones = word.count_ones() as usize;
            if k < ones {
                for _ in 0..k {
                    word &= word - 1;
                }
                return w * 64 + word.trailing_zeros() as usize;
            }
            k -= ones;
        }
        unreachable!("nth partner past the count")
    }
}

/// The pairs of `n` examples: each round gives every example one partner it is alike
/// with (target 1) and one it is not (target 0), where it has one; shuffled. The draws
/// are those of choosing from each example's list of partners in index order.
fn contrastive_pairs_by(partners: &impl Partners, n: usize, iterations: usize, rng: &mut ChaCha8Rng) -> Vec<(usize, usize, f32)> {
    let mut pairs = Vec::with_capacity(2 * n * iterations);
    for _ in 0..iterations {
        for i in 0..n {
            for (alike, target) in [(true, 1.0), (false, 0.0)] {
                let m = partners.count(i, alike);
                if m > 0 {
                    pairs.push((i, partners.nth(i, alike, rng.random_range(..m)), target));
                }
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
    p.check()?;
    if pairs.is_empty() {
        return Err(Error::InvalidArgument(
            "no contrastive pairs: register at least two examples, not all alike".into(),
        ));
    }
    if let Some(&(i, j, _)) = pairs.iter().find(|&&(i, j, _)| i.max(j) >= inputs.len()) {
        return Err(Error::InvalidArgument(format!("contrastive pair ({i}, {j}) names an input past the {} given", inputs.len())));
    }
    let enc = encode_all(tok, prompt, Method::Cls, inputs)?;
    let steps = pairs.len().div_ceil(p.batch_size);
    let mut opt = Optimiser::new(&model.vs, p.lr, 0.0, 0, steps, 1.0)?;
    let mut report = EmbedReport {
        pairs: pairs.len(),
        steps,
        capped_from: None,
        loss_curve: Vec::new(),
        train_seconds: 0.0,
        anchors: Vec::new(),
    };
    let start = Instant::now();
    let pad = tok.special().pad;
    let mut last = f64::NAN;
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


/// What both trainers share: seeds libtorch and the pair generator with `p.seed`, draws
/// the pairs, fine-tunes the encoder on them, and returns the embeddings of the first
/// `keep` inputs (those the classifier is fitted on) with the report, and the
/// [`heartbeat`] for the work after it.
#[allow(clippy::too_many_arguments)]
fn tune_and_embed<'a>(
    model: &MaskedLm,
    tok: &Tokenizer,
    reader: &Prompt,
    inputs: &[Example],
    keep: usize,
    p: &EmbedParams,
    progress: ProgressFn<'a>,
    pairs: impl FnOnce(&mut ChaCha8Rng) -> Vec<(usize, usize, f32)>,
) -> Result<(Vec<Vec<f32>>, EmbedReport, impl FnMut() -> Result<()> + 'a)> {
    p.check()?;
    tch::manual_seed(p.seed as i64);
    let mut pairs = pairs(&mut ChaCha8Rng::seed_from_u64(p.seed));
    let full = pairs.len().div_ceil(p.batch_size);
    let capped = p.max_steps > 0 && full > p.max_steps;
    if capped {
        pairs.truncate(p.max_steps * p.batch_size);
    }
    let mut report = contrastive_finetune(model, tok, reader, inputs, &pairs, p, &mut *progress)?;
    report.capped_from = capped.then_some(full);
    let mut beat = heartbeat(progress, &report);
    Ok((classifier_inputs(model, tok, reader, None, &inputs[..keep], 32, &mut beat)?, report, beat))
}

/// What runs after the last contrastive step (the training examples embedded, the
/// classifier fitted: minutes on many examples) asks `progress` whether to go on at most
/// once a second, repeating that step's report: a cancel is taken there too.
fn heartbeat<'a>(progress: ProgressFn<'a>, report: &EmbedReport) -> impl FnMut() -> Result<()> + 'a {
    let at = Progress {
        stage: Stage::Train,
        step: report.steps,
        total: report.steps,
        loss: report.loss_curve.last().map_or(f64::NAN, |&(_, l)| l),
        metric: f64::NAN,
    };
    let mut last = std::time::Instant::now();
    move || {
        if last.elapsed() < std::time::Duration::from_secs(1) {
            return Ok(());
        }
        last = std::time::Instant::now();
        if progress(at) {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    }
}

/// Refuses a classifier's inputs that hold NaN or infinity: a diverged encoder (a
/// non-finite loss or gradient wrote non-finite weights) would fit a classifier that
/// serves NaN probabilities.
fn check_finite(features: &[Vec<f32>], p: &EmbedParams) -> Result<()> {
    if features.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "training diverged: the tuned encoder gives non-finite embeddings of the training examples (learning rate {}): lower it",
            p.lr
        )));
    }
    Ok(())
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
    if let Some(bad) = labels.iter().find(|&&l| l >= k) {
        return Err(Error::InvalidArgument(format!("label index {bad} is out of range ({k} labels)")));
    }
    if train.is_empty() {
        // The anchors alone would tune the encoder, and the classifier then has no row.
        return Err(Error::InvalidArgument("no training examples: the sentence-embedding method needs labelled examples".into()));
    }
    // One class alone gives the classifier nothing to tell apart (it would answer that
    // class for every input), and without anchors the pairs pull every text together.
    if labels.iter().all(|&l| l == labels[0]) {
        return Err(Error::InvalidArgument(format!(
            "every training example is of class {:?}: the sentence-embedding method's classifier needs examples of at least two classes",
            prompt.verbalizer.labels()[labels[0]]
        )));
    }
    // A class with no example has no row to fit: the classifier's unpenalised bias for
    // it falls for as long as the fit runs, and it is never answered.
    if let Some(missing) = (0..k).find(|c| !labels.contains(c)) {
        return Err(Error::InvalidArgument(format!(
            "class {:?} has no training example: the sentence-embedding method's classifier needs one or more of each class",
            prompt.verbalizer.labels()[missing]
        )));
    }
    // The anchor templates are checked before any tuning, also when only the word
    // anchors read them.
    let anchor_texts = if p.anchor_repeats > 0 || p.word_anchor_scale > 0.0 { prompt.anchor_texts_with(&p.anchor_templates)? } else { None };
    let anchors = if p.anchor_repeats > 0 { anchor_texts.unwrap_or_default() } else { Vec::new() };
    let (inputs, labels) = with_anchors(train, labels, &anchors, p.anchor_repeats);
    let n = train.len();
    // With word anchors the classifier's inputs are read after tuning, beside the
    // embedding: the plain embeddings are not needed then.
    // (word_anchor_vectors gives them exactly when the template reads one sentence.)
    let keep = if p.word_anchor_scale > 0.0 && prompt.anchor_texts().is_some() { 0 } else { n };
    let (mut features, mut report, mut beat) = tune_and_embed(model, tok, prompt, &inputs, keep, p, progress, |rng| contrastive_pairs(&labels, p.iterations, rng))?;
    let word = match p.word_anchor_scale > 0.0 {
        true => word_anchor_vectors(model, tok, prompt, &p.anchor_templates)?.map(|vectors| WordAnchors { vectors, scale: p.word_anchor_scale as f32 }),
        false => None,
    };
    if let Some(w) = &word {
        features = classifier_inputs(model, tok, prompt, Some(&word_tensor(model, w)?), train, 32, &mut beat)?;
    }
    check_finite(&features, p)?;
    let mut head = fit_logistic_with(&features, &labels[..n], k, p.head_c, None, &mut beat)?;
    head.word_anchors = word;
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
    if inputs.is_empty() {
        // The anchors alone would tune the encoder, and the heads then have no row.
        return Err(Error::InvalidArgument("no training examples: the sentence-embedding method needs labelled examples".into()));
    }
    // Each label's yes/no head needs both: without one side its unpenalised bias runs
    // for as long as the fit does.
    for (l, name) in names.iter().enumerate() {
        let with = sets.iter().filter(|s| s.contains(&l)).count();
        if with == 0 || with == sets.len() {
            return Err(Error::InvalidArgument(format!(
                "label {name:?} is on {} training example: the sentence-embedding method's yes/no classifier for it needs examples with it and without it",
                if with == 0 { "no" } else { "every" }
            )));
        }
    }
    let n = inputs.len();
    let anchors: Vec<(Vec<usize>, String)> = names.iter().enumerate().map(|(l, name)| (vec![l], name.clone())).collect();
    let (all, all_sets) = with_anchors(inputs, sets.to_vec(), &anchors, p.anchor_repeats);
    let (features, mut report, mut beat) = tune_and_embed(model, tok, reader, &all, n, p, progress, |rng| multi_label_pairs(&all_sets, p.iterations, rng))?;
    check_finite(&features, p)?;
    let mut head = LinearHead { weight: Vec::with_capacity(2 * labels), bias: Vec::with_capacity(2 * labels), word_anchors: None };
    for l in 0..labels {
        let yes: Vec<usize> = sets.iter().map(|s| usize::from(s.contains(&l))).collect();
        let h = fit_logistic_with(&features, &yes, 2, p.head_c, Some(&balanced_weights(&yes, 2)), &mut beat)?;
        head.weight.extend(h.weight);
        head.bias.extend(h.bias);
    }
    if p.anchor_repeats > 0 {
        report.anchors = names.to_vec();
    }
    Ok((head, report))
}

/// The word anchors as the feature functions take them: vectors [C, H] on the model's
/// device, and the scale.
fn word_tensor(model: &MaskedLm, w: &WordAnchors) -> Result<(Tensor, f64)> {
    let flat: Vec<f32> = w.vectors.iter().flatten().copied().collect();
    let t = Tensor::from_slice(&flat).f_reshape([w.vectors.len() as i64, -1])?.f_to_device(model.device())?;
    Ok((t, w.scale as f64))
}

/// Class logits of `examples` under a sentence-embedding model (its encoder and head,
/// with the head's word anchors when it has them).
pub fn embedding_logits(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    head: &LinearHead,
    examples: &[Example],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let word = head.word_anchors.as_ref().map(|w| word_tensor(model, w)).transpose()?;
    Ok(classifier_inputs(model, tok, prompt, word.as_ref(), examples, batch_size, &mut || Ok(()))?
        .iter()
        .map(|f| head.logits(f))
        .collect())
}

/// Multinomial logistic regression on fixed features, as scikit-learn's
/// `LogisticRegression(C)` fits it (the intercept not penalised), by gradient descent with
/// Nesterov momentum: `0.5 |W|^2 + C * sum_i cross_entropy(W x_i + b, y_i)` over the
/// classes' rows, and for two classes scikit-learn's one vector `w`, `0.5 |w|^2 + C *
/// sum_i log_loss`. (Two softmax rows carry that vector as `w1 - w0 = w` with `w0 = -w1`
/// at the optimum, penalised `0.25 |w|^2` by the first form: it is run with C / 2.)
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
    fit_logistic_with(x, y, num_labels, c, class_weights, &mut || Ok(()))
}

/// [`fit_logistic_weighted`], with `beat` run at every iteration (a cancel it returns
/// ends the fit).
fn fit_logistic_with(
    x: &[Vec<f32>],
    y: &[usize],
    num_labels: usize,
    c: f64,
    class_weights: Option<&[f64]>,
    beat: &mut dyn FnMut() -> Result<()>,
) -> Result<LinearHead> {
    let d = x.first().map_or(0, Vec::len);
    if x.is_empty()
        || x.len() != y.len()
        || x.iter().any(|r| r.len() != d)
        || y.iter().any(|&l| l >= num_labels)
        || !(c > 0.0 && c.is_finite())
        || class_weights.is_some_and(|w| w.len() != num_labels || w.iter().any(|v| !(*v > 0.0 && v.is_finite())))
    {
        return Err(Error::InvalidArgument(format!(
            "logistic regression: {} feature rows of width {d} for {} labels over {num_labels} classes, C {c}",
            x.len(),
            y.len()
        )));
    }
    let k = num_labels;
    // The first form at C / 2 is the binary form at C (see above); it was run at C, a
    // head regularised half as much as SetFit's and the probes' scikit-learn heads.
    let c = if k == 2 { c / 2.0 } else { c };
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
        beat()?;
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
    Ok(LinearHead { weight, bias, word_anchors: None })
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
    use rand::seq::IndexedRandom;

    /// After the last contrastive step a cancel is still taken: the heartbeat asks at
    /// most once a second (repeating that step's report), and the head's fit and the
    /// embedding of the training rows stop at its answer.
    #[test]
    fn a_cancel_after_the_last_step_stops_the_fit() {
        let report = EmbedReport { pairs: 80, steps: 5, capped_from: None, loss_curve: vec![(5, 0.25)], train_seconds: 0.0, anchors: Vec::new() };
        let mut seen = Vec::new();
        let mut cb = |p: Progress| {
            seen.push((p.stage, p.step, p.total, p.loss));
            false
        };
        let mut beat = heartbeat(&mut cb, &report);
        assert!(beat().is_ok(), "not asked within the first second");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(matches!(beat(), Err(Error::Cancelled)));
        drop(beat);
        assert_eq!(seen, [(Stage::Train, 5, 5, 0.25)]);
        // The fit runs the beat at each iteration and stops at a cancel.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<Vec<f32>> = (0..64).map(|_| (0..8).map(|_| rng.random::<f32>()).collect()).collect();
        let y: Vec<usize> = (0..64).map(|_| rng.random_range(0..2)).collect();
        let mut calls = 0;
        let fit = fit_logistic_with(&x, &y, 2, 1.0, None, &mut || {
            calls += 1;
            if calls == 10 { Err(Error::Cancelled) } else { Ok(()) }
        });
        assert!(matches!(fit, Err(Error::Cancelled)) && calls == 10, "{calls}");
    }

    /// The word's tokens are found from the mask's place, not from the longest shared
    /// head: "A moviegoer movie." against the frame "A movie." (ids: [CLS]=1, a=2,
    /// movie=3, ##go=4, ##er=5, .=6, [SEP]=7).
    #[test]
    fn a_word_span_starts_where_the_mask_was() {
        let (frame, anchor) = ([1, 2, 3, 6, 7], [1, 2, 3, 4, 5, 3, 6, 7]);
        assert_eq!(word_span(&anchor, &frame, 2), (2, 5));
        // "It was great." against "It was.": the head and the mask agree.
        assert_eq!(word_span(&[1, 8, 9, 10, 6, 7], &[1, 8, 9, 6, 7], 3), (3, 4));
        // A word at the start ("Great movie." against "movie.").
        assert_eq!(word_span(&[1, 11, 3, 6, 7], &[1, 3, 6, 7], 1), (1, 2));
        // Tokens that merged across the word's edge fall back to the shared head and tail.
        assert_eq!(word_span(&[1, 2, 12, 6, 7], &[1, 2, 3, 6, 7], 2), (2, 3));
        // Nothing told apart: every token but [CLS] and [SEP].
        assert_eq!(word_span(&[1, 2, 7], &[1, 2, 7], 2), (1, 2));
    }

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

    /// The pairs as they were drawn before the partner lists went (every example's lists
    /// of alike and unlike partners, n^2 memory): the same draws, so runs made then
    /// are reproduced by the same seed.
    fn pairs_from_lists(n: usize, iterations: usize, rng: &mut ChaCha8Rng, alike: impl Fn(usize, usize) -> bool) -> Vec<(usize, usize, f32)> {
        let lists: Vec<(Vec<usize>, Vec<usize>)> =
            (0..n).map(|i| ((0..n).filter(|&j| j != i && alike(i, j)).collect(), (0..n).filter(|&j| j != i && !alike(i, j)).collect())).collect();
        let mut pairs = Vec::new();
        for _ in 0..iterations {
            for (i, (same, other)) in lists.iter().enumerate() {
                if let Some(&j) = same.choose(rng) {
                    pairs.push((i, j, 1.0));
                }
                if let Some(&j) = other.choose(rng) {
                    pairs.push((i, j, 0.0));
                }
            }
        }
        pairs.shuffle(rng);
        pairs
    }

    #[test]
    fn pairs_are_drawn_as_from_the_partner_lists() {
        let mut gen = ChaCha8Rng::seed_from_u64(11);
        for n in [1, 2, 5, 63, 64, 65, 130, 300] {
            // Classes of uneven sizes, one of a single example, labels not 0..k.
            let labels: Vec<usize> = (0..n).map(|i| if i == n / 2 { 99 } else { [3, 7, 7, 1, 3][gen.random_range(..5usize)] }).collect();
            let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(n as u64), ChaCha8Rng::seed_from_u64(n as u64));
            assert_eq!(contrastive_pairs(&labels, 3, &mut a), pairs_from_lists(n, 3, &mut b, |i, j| labels[i] == labels[j]), "{n} examples");
            let sets: Vec<Vec<usize>> = (0..n).map(|_| (0..4).filter(|_| gen.random_range(..3u32) == 0).collect()).collect();
            let share = |i: usize, j: usize| if sets[i].is_empty() || sets[j].is_empty() { sets[i].is_empty() && sets[j].is_empty() } else { sets[i].iter().any(|l| sets[j].contains(l)) };
            let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(n as u64), ChaCha8Rng::seed_from_u64(n as u64));
            assert_eq!(multi_label_pairs(&sets, 3, &mut a), pairs_from_lists(n, 3, &mut b, share), "{n} multi-label examples");
        }
    }

    /// The features by hand: three rows of one-hot states against two unit vectors, one
    /// with padding, one whose only tokens are `[CLS]` and `[SEP]` (all real tokens are
    /// then read) and one with a single token of its own (the top 3 average just it).
    #[test]
    fn word_anchor_features_read_the_input_tokens_only() {
        // States over 3 dimensions; anchors: class 0 = e0, class 1 = e1.
        let e = |i: usize, v: f32| {
            let mut r = [0.0f32; 3];
            r[i] = v;
            r
        };
        let rows: [[[f32; 3]; 5]; 3] = [
            // [CLS] e0 e1*0.5 (same direction) e2 [SEP]: CLS and SEP point at class 1 and must be ignored.
            [e(1, 1.0), e(0, 2.0), e(1, 0.5), e(2, 1.0), e(1, 3.0)],
            // [CLS] [SEP] pad pad pad: no token of its own.
            [e(0, 1.0), e(2, 1.0), e(1, 1.0), e(1, 1.0), e(1, 1.0)],
            // [CLS] e2 [SEP] pad pad
            [e(1, 1.0), e(2, 1.0), e(1, 1.0), e(0, 1.0), e(0, 1.0)],
        ];
        let flat: Vec<f32> = rows.iter().flatten().flatten().copied().collect();
        let hidden = Tensor::from_slice(&flat).reshape([3, 5, 3]);
        let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]).reshape([3, 5]);
        let anchors = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0]).reshape([2, 3]);
        let f = Vec::<Vec<f32>>::try_from(&word_anchor_features(&hidden, &mask, &anchors).unwrap()).unwrap();
        // Groups: max [c0 c1], top-3 mean [c0 c1], margin max [c0 c1], margin min [c0 c1].
        // Row 0, own tokens e0, e1, e2: cosines (1,0), (0,1), (0,0); margins (.5,-.5), (-.5,.5), (0,0).
        let want0 = [1.0, 1.0, 1.0 / 3.0, 1.0 / 3.0, 0.5, 0.5, -0.5, -0.5];
        // Row 1, tokens [CLS]=e0 and [SEP]=e2: cosines (1,0), (0,0); two tokens for the top 3.
        let want1 = [1.0, 0.0, 0.5, 0.0, 0.5, 0.0, 0.0, -0.5];
        // Row 2, its own token e2: all zero.
        let want2 = [0.0; 8];
        for (got, want) in f.iter().zip([want0, want1, want2]) {
            assert_eq!(got.len(), 8);
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "{got:?} against {want:?}");
            }
        }
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
        // At the optimum the gradient of scikit-learn's binary objective vanishes:
        // w + C sum_i weight_i (sigmoid(w x_i + b) - y_i) x_i, and its sum for b, where
        // w and b are the rows' differences.
        let binary_gradient = |h: &LinearHead, x: &[Vec<f32>], y: &[usize], weight: &[f64], c: f64| {
            let w: Vec<f64> = (0..2).map(|d| f64::from(h.weight[1][d] - h.weight[0][d])).collect();
            let b = f64::from(h.bias[1] - h.bias[0]);
            let mut g = vec![w[0], w[1], 0.0];
            for ((r, &l), wt) in x.iter().zip(y).zip(weight) {
                let p = 1.0 / (1.0 + (-(w[0] * f64::from(r[0]) + w[1] * f64::from(r[1]) + b)).exp());
                let e = c * wt * (p - l as f64);
                g[0] += e * f64::from(r[0]);
                g[1] += e * f64::from(r[1]);
                g[2] += e;
            }
            g
        };
        let g = binary_gradient(&h, &x, &y, &[1.0; 4], 1.0);
        assert!(g.iter().all(|v| v.abs() < 1e-4), "{g:?}");
        // Three classes: the multinomial objective's gradient vanishes at C itself.
        let (x4, y4) = (vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, -1.0], vec![0.9, 0.2], vec![0.1, 0.8], vec![-0.7, -1.2]], [0, 1, 2, 0, 1, 2]);
        let h3 = fit_logistic(&x4, &y4, 3, 1.0).unwrap();
        let theta: Vec<f64> = (0..3).flat_map(|j| h3.weight[j].iter().map(|&v| v as f64).chain([h3.bias[j] as f64])).collect();
        let g = gradient(&theta, &x4, &y4, &[1.0; 6], 3, 2, 1.0);
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
        let per: Vec<f64> = y3.iter().map(|&l| w[l]).collect();
        assert!(binary_gradient(&balanced, &x3, &y3, &per, 1.0).iter().all(|v| v.abs() < 1e-4));
        assert!(fit_logistic_weighted(&x3, &y3, 2, 1.0, Some(&[1.0])).is_err(), "a weight per class");
        assert_eq!(balanced_weights(&[0, 0], 2), vec![0.5, 1.0], "an absent class keeps weight 1");
        assert!(fit_logistic(&x, &[0, 1, 2, 0], 2, 1.0).is_err());
    }
}
