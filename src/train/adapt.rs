//! Masked-LM adaptation: continued masked-LM training on unlabeled text, with whole-word
//! masking (15% of words; of their tokens 80% [MASK], 10% random, 10% kept, as BERT).
//! It gives a checkpoint without a masked-LM head (a sentence encoder) a trained one,
//! and adapts any model to the host's domain (Gururangan et al., 2020).

//!
//! Runs can be resumed: every batch, mask and dropout pattern is a function of the seed
//! and the step number alone, and the weights, the optimiser state and the loss curve are
//! saved atomically to a state directory every N steps, so a run stopped at any point
//! continues exactly as if it had not stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::optim::Optimiser;
use super::{Progress, ProgressFn, Stage};
use crate::checkpoint::{fnv1a, write_dir_atomic, FNV_OFFSET};
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

impl Trainable {
    /// `TopLayers(n)` names 1 to `layers` layers.
    pub fn check(self, layers: usize) -> Result<()> {
        match self {
            Trainable::TopLayers(n) if n == 0 || n > layers => Err(Error::InvalidArgument(format!(
                "adaptation: trainable top{n}: the model has {layers} encoder layers; give top1 to top{layers}, head or all"
            ))),
            _ => Ok(()),
        }
    }
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
    /// Training time, summed over the sessions of a resumed run.
    pub seconds: f64,
    /// Steps already done when this call started (0 unless resumed).
    pub resumed_at: usize,
}

impl AdaptParams {
    /// Every setting in range, or the first that is not (a command checks before its
    /// slow work, such as a zero-shot evaluation).
    pub fn check(&self) -> Result<()> {
        let p = self;
        let wrong = [
            (p.steps == 0, format!("steps is {}: give at least 1", p.steps)),
            (p.batch_size == 0, format!("batch size is {}: give at least 1", p.batch_size)),
            (p.max_len < 4, format!("sequence length is {} tokens: give at least 4", p.max_len)),
            (!(p.lr > 0.0 && p.lr.is_finite()), format!("learning rate is {}: give a positive number", p.lr)),
            // (0 masked one word a sequence all the same.)
            (!(p.mask_prob > 0.0 && p.mask_prob < 1.0), format!("mask probability is {}: give one in (0, 1)", p.mask_prob)),
            // (NaN or below 0 read as no warmup; above 1, the run never left it.)
            (!(0.0..=1.0).contains(&p.warmup_ratio), format!("warmup ratio is {}: give one in [0, 1]", p.warmup_ratio)),
        ];
        match wrong.into_iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(Error::InvalidArgument(format!("adaptation: {why}"))),
            None => Ok(()),
        }
    }
}

/// The usual state directory of a run writing `out`: `out.state` beside it (the suffix
/// appended, so a name with a dot, `bge-v1.5`, keeps it). A trailing slash (`adapted/`,
/// as a shell completes it) is dropped first: the state goes beside the folder, not in it.
pub fn state_dir_beside(out: &Path) -> PathBuf {
    let mut s = out.components().collect::<PathBuf>().into_os_string();
    s.push(".state");
    PathBuf::from(s)
}

/// Where and how often a run saves its state so that it can be resumed.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    /// State directory: read at the start if present, rewritten atomically.
    pub dir: &'a Path,
    /// Save every this many steps (0: only when stopped by the progress callback).
    pub every: usize,
}

const STATE_WEIGHTS: &str = "state.safetensors";
/// The file that marks a state directory ([`Resume::dir`]).
pub const STATE_JSON: &str = "state.json";
const STATE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SavedState {
    version: u32,
    /// Steps done.
    step: usize,
    /// The settings and data the state belongs to (checked on resume).
    fingerprint: String,
    loss_curve: Vec<(usize, f64)>,
    window: Vec<f64>,
    seconds: f64,
    /// The settings, to name the one that differs when the fingerprint does (absent in
    /// states saved before it was recorded).
    #[serde(default)]
    params: Option<serde_json::Value>,
}

/// What a saved state belongs to: the settings, the texts as token ids, and the model's
/// starting weights (every weight but the masked-LM head's, which a model without one
/// gets new), so that a state is never resumed into another checkpoint of the same shape.
fn fingerprint(p: &AdaptParams, data: &[Tokenized], model: &MaskedLm) -> Result<String> {
    let mut h = fnv1a(serde_json::to_string(p).unwrap_or_default().as_bytes(), FNV_OFFSET);
    for t in data {
        for id in &t.ids {
            h = fnv1a(&id.to_le_bytes(), h);
        }
        h = fnv1a(b"\n", h);
    }
    let mut weights = FNV_OFFSET;
    let mut vars: Vec<(String, Tensor)> = model.vs.variables().into_iter().filter(|(name, _)| !is_head(name)).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in vars {
        weights = fnv1a(name.as_bytes(), weights);
        let values = Vec::<f32>::try_from(t.f_to_device(tch::Device::Cpu)?.f_to_kind(Kind::Float)?.f_flatten(0, -1)?)?;
        for v in values {
            weights = fnv1a(&v.to_bits().to_le_bytes(), weights);
        }
    }
    Ok(format!("{:016x}:{}x{}:{weights:016x}", h, model.config.num_hidden_layers, model.config.hidden_size))
}

/// A weight of the masked-LM head (BERT's `cls.`, RoBERTa's and MPNet's `lm_head.`).
fn is_head(name: &str) -> bool {
    name.starts_with("cls.") || name.starts_with("lm_head.")
}

fn save_state(dir: &Path, model: &MaskedLm, opt: &Optimiser, st: &SavedState) -> Result<()> {
    write_dir_atomic(dir, STATE_JSON, |tmp| {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (name, t) in model.vs.variables() {
            named.push((format!("model.{name}"), t.f_detach()?.f_to_device(tch::Device::Cpu)?.f_contiguous()?));
        }
        for (name, t) in opt.state() {
            named.push((format!("optim.{name}"), t.f_to_device(tch::Device::Cpu)?.f_contiguous()?));
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Tensor::write_safetensors(&named, tmp.join(STATE_WEIGHTS))?;
        let path = tmp.join(STATE_JSON);
        let text = serde_json::to_string_pretty(st).expect("state serialises");
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    })
}

/// Loads a saved state into the model and optimiser; `None` when `dir` holds none.
fn load_state(dir: &Path, model: &MaskedLm, opt: &mut Optimiser, want: &str, p: &AdaptParams) -> Result<Option<SavedState>> {
    // A state moved aside by a save that a crash interrupted is put back first.
    crate::checkpoint::restore_moved_aside(dir, STATE_JSON)?;
    let path = dir.join(STATE_JSON);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let st: SavedState =
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.clone(), what: "an adaptation state", source })?;
    if st.version != STATE_VERSION {
        return Err(Error::InvalidArgument(format!("{}: state format {} (this lmbff reads {STATE_VERSION})", path.display(), st.version)));
    }
    if st.fingerprint != want {
        let fields = st.params.as_ref().map(|stored| crate::checkpoint::fields_differing(stored, &serde_json::to_value(p).unwrap_or_default()));
        let what = match fields {
            None => "other settings, texts or model".to_string(),
            Some(f) if f.is_empty() => "the same settings but other texts or another model".to_string(),
            Some(f) => format!("other settings ({})", f.join("; ")),
        };
        return Err(Error::InvalidArgument(format!(
            "{} holds the state of a run with {what}; delete it or choose another state directory",
            dir.display()
        )));
    }
    let file = dir.join(STATE_WEIGHTS);
    let tensors = Tensor::read_safetensors(&file).map_err(|e| Error::CorruptWeights { file: file.clone(), message: e.to_string() })?;
    let mut weights = HashMap::new();
    let mut optim = HashMap::new();
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            weights.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix("optim.") {
            optim.insert(n.to_string(), t);
        }
    }
    let vars = model.vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (name, v) in &vars {
            let t = weights.get(name).ok_or_else(|| Error::MissingWeight { name: name.clone(), file: file.clone() })?;
            if t.size() != v.size() {
                return Err(Error::WeightShape { name: name.clone(), file: file.clone(), expected: v.size(), found: t.size() });
            }
            v.shallow_clone().f_copy_(t)?;
        }
        Ok(())
    })?;
    opt.load_state(&optim)?;
    Ok(Some(st))
}

/// The data indices of step `step`'s batch: epoch after epoch, each a permutation
/// drawn from (seed, epoch), so any step's batch is known without replaying the run.
struct Sampler {
    n: usize,
    seed: u64,
    epoch: Option<(usize, Vec<usize>)>,
}

impl Sampler {
    fn batch(&mut self, step: usize, size: usize) -> Vec<usize> {
        (step * size..(step + 1) * size)
            .map(|pos| {
                let e = pos / self.n;
                if self.epoch.as_ref().is_none_or(|(k, _)| *k != e) {
                    let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                    rng.set_stream(1 + e as u64);
                    let mut perm: Vec<usize> = (0..self.n).collect();
                    perm.shuffle(&mut rng);
                    self.epoch = Some((e, perm));
                }
                self.epoch.as_ref().expect("just set").1[pos % self.n]
            })
            .collect()
    }
}

/// Masking randomness of one step, independent of every other step's.
fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d61_736b_6d61_736b);
    rng.set_stream(step as u64);
    rng
}

struct Tokenized {
    ids: Vec<u32>,
    words: Vec<Option<u32>>,
}

/// Builds one masked sequence: `[CLS] tokens [SEP]` with whole words masked.
/// Returns (input ids, labels with -100 where not predicted).
/// A random replacement is drawn from the first `vocab` ids (the tokenizer's and the
/// model's embedding table's, whichever is smaller: an id past the table would stop the
/// run with an index error).
fn mask_sequence(t: &Tokenized, max_len: usize, p: f64, tok: &Tokenizer, vocab: u32, rng: &mut ChaCha8Rng) -> (Vec<i64>, Vec<i64>) {
    let special = tok.special();
    let n = t.ids.len().min(max_len - 2);
    let mut words: Vec<u32> = t.words[..n].iter().flatten().copied().collect();
    words.dedup();
    let k = ((words.len() as f64 * p).round() as usize).max(1).min(words.len());
    let chosen: Vec<u32> = words.choose_multiple(rng, k).copied().collect();
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
        let head = is_head(&name);
        let layer: Option<usize> = name.split(".layer.").nth(1).and_then(|r| r.split('.').next()).and_then(|n| n.parse().ok());
        let on = match what {
            Trainable::All => true,
            Trainable::Head => head,
            Trainable::TopLayers(n) => head || layer.is_some_and(|l| l + n >= layers),
        };
        let _ = t.set_requires_grad(on);
    }
}

/// The texts as adaptation reads them: each one's first `max_len - 2` tokens
/// (`mask_sequence` adds [CLS] and [SEP]) with their words; texts without a word are left
/// out. A mask, separator, [CLS] or padding token typed in a text reads as unknown, as in
/// a prompt (it was masked and predicted as a word, and a typed padding token moved
/// RoBERTa's positions).
fn tokenize_corpus(tok: &Tokenizer, texts: &[String], max_len: usize) -> Result<Vec<Tokenized>> {
    let special = tok.special();
    let controls = [special.mask, special.sep, special.cls, special.pad];
    let mut data = Vec::with_capacity(texts.len());
    for text in texts {
        let (mut ids, words) = tok.encode_words_head(text, max_len - 2)?;
        ids.iter_mut().filter(|i| controls.contains(i)).for_each(|i| *i = special.unk);
        if words.iter().any(Option::is_some) {
            data.push(Tokenized { ids, words });
        }
    }
    Ok(data)
}

/// Continues masked-LM training of `model` on `texts`, in place. With `resume`, a state
/// saved there by an earlier call with the same settings, texts and model is picked up,
/// and the state is saved every `resume.every` steps and when the callback stops the run.
pub fn adapt(
    model: &MaskedLm,
    tok: &Tokenizer,
    texts: &[String],
    p: &AdaptParams,
    resume: Option<Resume>,
    progress: ProgressFn,
) -> Result<AdaptReport> {
    p.check()?;
    p.trainable.check(model.config.num_hidden_layers as usize)?;
    let positions = model.config.max_input_len().max(0) as usize;
    let vocab = (tok.vocab_size() as u32).min(u32::try_from(model.config.vocab_size).unwrap_or(u32::MAX)).max(1);
    if positions < 4 {
        return Err(Error::InvalidArgument(format!("the model reads at most {positions} tokens: adaptation needs sequences of at least 4")));
    }
    let max_len = p.max_len.min(positions);
    let data = tokenize_corpus(tok, texts, max_len)?;
    if data.is_empty() {
        return Err(Error::InvalidArgument("no unlabeled text to adapt on".into()));
    }
    set_trainable(model, p.trainable);
    // Every choice of weights trains the head: a save from now on writes it.
    model.mark_head_trained();
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
    // Only a run that saves or resumes a state needs it (it reads every weight: seconds
    // on a large model, before the first progress report).
    let print = if resume.is_some() { fingerprint(p, &data, model)? } else { String::new() };
    let mut st = SavedState { version: STATE_VERSION, step: 0, fingerprint: print.clone(), loss_curve: Vec::new(), window: Vec::new(), seconds: 0.0, params: serde_json::to_value(p).ok() };
    if let Some(r) = resume {
        if let Some(saved) = load_state(r.dir, model, &mut opt, &print, p)? {
            st = SavedState { params: st.params, ..saved };
        }
    }
    let resumed_at = st.step;
    let dev = model.device();
    let pad = tok.special().pad as i64;
    let mut sampler = Sampler { n: data.len(), seed: p.seed, epoch: None };
    let start = Instant::now();
    let seconds_before = st.seconds;
    for step in resumed_at..p.steps {
        // Dropout's randomness, like the batch and the masks, depends on the step only.
        tch::manual_seed((p.seed as i64).wrapping_mul(1_000_003).wrapping_add(step as i64));
        let mut rng = step_rng(p.seed, step);
        let rows: Vec<(Vec<i64>, Vec<i64>)> =
            sampler.batch(step, p.batch_size).into_iter().map(|i| mask_sequence(&data[i], max_len, p.mask_prob, tok, vocab, &mut rng)).collect();
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
        let loss_value = loss.f_double_value(&[])?;
        // A non-finite loss would step every weight to NaN, and those would be saved.
        if !loss_value.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "adaptation diverged: the masked-LM loss is {loss_value} at step {} (learning rate {}): lower it",
                step + 1,
                p.lr
            )));
        }
        opt.step(&loss, step)?;
        // A finite loss can still back-propagate a NaN or infinite gradient: that step
        // wrote non-finite weights, which must not be saved (the loss read synced already).
        if opt.saw_nonfinite_gradient()? {
            return Err(Error::InvalidArgument(format!(
                "adaptation diverged: the gradient is not finite at step {} (masked-LM loss {loss_value}, learning rate {}): lower it",
                step + 1,
                p.lr
            )));
        }
        st.window.push(loss_value);
        let done = step + 1;
        if done % 10 == 0 || done == p.steps {
            st.loss_curve.push((done, st.window.iter().sum::<f64>() / st.window.len() as f64));
            st.window.clear();
        }
        st.step = done;
        st.seconds = seconds_before + start.elapsed().as_secs_f64();
        let last = st.loss_curve.last().map(|c| c.1).unwrap_or(f64::NAN);
        let go_on = progress(Progress { stage: Stage::Adapt, step: done, total: p.steps, loss: last, metric: f64::NAN });
        if let Some(r) = resume {
            if !go_on || (r.every > 0 && done % r.every == 0 && done < p.steps) {
                save_state(r.dir, model, &opt, &st)?;
            }
        }
        if !go_on {
            return Err(Error::Cancelled);
        }
    }
    Ok(AdaptReport { params: p.clone(), texts: data.len(), loss_curve: st.loss_curve, seconds: st.seconds, resumed_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_folder_keeps_a_dotted_name() {
        assert_eq!(state_dir_beside(Path::new("cache/bge-small-v1.5-00ff")), Path::new("cache/bge-small-v1.5-00ff.state"));
        assert_eq!(state_dir_beside(Path::new("runs/adapted/")), Path::new("runs/adapted.state"));
        assert_eq!(state_dir_beside(Path::new("/tmp/adapted//")), Path::new("/tmp/adapted.state"));
    }

    #[test]
    fn typed_special_tokens_read_as_unknown() {
        let added: Vec<serde_json::Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .enumerate()
            .map(|(id, t)| serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
            .collect();
        let vocab: serde_json::Map<String, serde_json::Value> =
            ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "x"].iter().enumerate().map(|(i, t)| (t.to_string(), i.into())).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab},
        });
        let tok = Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
        let s = tok.special();
        let data = tokenize_corpus(&tok, &["hello [MASK] world [SEP] x [CLS] [PAD]".to_string(), "[SEP]".to_string()], 64).unwrap();
        let ids = &data[0].ids;
        assert!(ids.iter().all(|i| ![s.mask, s.sep, s.cls, s.pad].contains(i)), "{ids:?}");
        assert_eq!(ids.iter().filter(|&&i| i == s.unk).count(), 4, "{ids:?}");
        // A text of control tokens alone still has words (read as unknown).
        assert_eq!(data.len(), 2);
    }

    #[test]
    fn parses_trainable() {
        assert_eq!("head".parse::<Trainable>().unwrap(), Trainable::Head);
        assert_eq!("top2".parse::<Trainable>().unwrap(), Trainable::TopLayers(2));
        assert_eq!("all".parse::<Trainable>().unwrap(), Trainable::All);
        assert!("some".parse::<Trainable>().is_err());
    }
}
