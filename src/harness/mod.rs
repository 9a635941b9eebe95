//! The evaluation harness: methods x tasks x data seeds on LM-BFF's k-shot splits, each
//! run's result stored on its own (written atomically) so that an interrupted harness
//! continues where it stopped, and a report of mean (std) per task and method.
//!
//! A run trains on the seed's 16-per-class train split, keeps the weights of the best
//! dev evaluation, and scores the test split with the task's metric. Settings are chosen
//! on dev only; the test split never decides anything.

mod tasks;

pub use tasks::{task, Format, Metric, MultiSource, TaskSpec, TASKS};

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::metrics::{accuracy, ece_before_after};
use crate::model::{parse_device, MaskedLm};
use crate::prompt::{gold_labels, DemoPool, Example, Prompt, Template, Truncation};
use crate::tokenize::Tokenizer;
use crate::train::{self, Demos, EmbedParams, Head, Method, ProgressFn, TrainParams};
use crate::{Error, Result};

/// A method the harness compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMethod {
    /// The most frequent class of the training split, for every test input.
    Majority,
    /// The prompt and label words on the untrained model.
    ZeroShot,
    /// The word anchors' zero-shot classifier on `--plain-model` as it is
    /// (`train::word_anchor_zero_shot`): each class's label word read in its anchor text,
    /// and the class whose word the input's 3 closest tokens come nearest. The zero-shot
    /// baseline of an encoder without a masked-LM head. Single-sentence tasks.
    ZeroShotWords,
    /// In-context learning (GPT-3 style): the untrained model with demonstrations
    /// appended, no training.
    InContext,
    /// A [CLS] classifier fine-tuned with the encoder.
    Plain,
    /// LM-BFF prompt-based fine-tuning.
    Prompt,
    /// Prompt-based fine-tuning with demonstrations.
    PromptDemos,
    /// The ceiling: plain fine-tuning of `--plain-model` on the task's whole training set
    /// (glue_pretrain's 90% split, less every text of the test set), dev on its 10%.
    FullData,
    /// Prompt-based fine-tuning with similarity-filtered demonstrations (LM-BFF's
    /// `demo_filter`), ranked by the plain model's mean-pooled embeddings.
    PromptDemosFilter,
    /// SetFit-style: contrastive fine-tuning of sentence embeddings, then logistic
    /// regression (for encoders without a usable masked-LM head).
    SentenceEmbedding,
    /// The sentence-embedding method with the prompt's label anchors (the library's
    /// default for it: `EmbedParams::anchor_repeats`); on a multi-label task the labels'
    /// names are the anchors; on sentence-pair tasks, which have none, the same as
    /// `sentence-embedding`.
    SentenceEmbeddingAnchors,
    /// `sentence-embedding-anchors` with more anchor texts: those of the first
    /// [`AUTO_ANCHOR_TEMPLATES`] of LM-BFF's automatic templates for the task and seed (the
    /// `prompt-auto-N` templates) beside the manual template's
    /// (`EmbedParams::anchor_templates`); on a multi-label task the same as
    /// `sentence-embedding-anchors` (the labels' names), on sentence-pair tasks as
    /// `sentence-embedding`.
    SentenceEmbeddingAnchorsAuto,
    /// `sentence-embedding-anchors` whose classifier also reads the word anchors'
    /// per-token features (`EmbedParams::word_anchor_scale`, the library's default since
    /// they were measured); on a multi-label task or a sentence-pair task, which have no
    /// word anchors, the same as `sentence-embedding-anchors`.
    SentenceEmbeddingWords,
    /// Prompt-based fine-tuning with the N-th of LM-BFF's automatically found templates
    /// for the task and seed (`auto/auto_template/<TASK>/16-<SEED>.sort.txt` beside the
    /// k-shot folder, best first) and the manual label words: the members of the
    /// template ensemble, with `prompt`.
    #[serde(rename = "prompt-auto-1")]
    PromptAuto1,
    #[serde(rename = "prompt-auto-2")]
    PromptAuto2,
    #[serde(rename = "prompt-auto-3")]
    PromptAuto3,
    #[serde(rename = "prompt-auto-4")]
    PromptAuto4,
}

/// How many automatic templates `sentence-embedding-anchors-auto` anchors on.
pub const AUTO_ANCHOR_TEMPLATES: usize = 4;

/// The template ensemble: `prompt` and the auto-template runs, label logits averaged.
pub const ENSEMBLE: [RunMethod; 5] = [RunMethod::Prompt, RunMethod::PromptAuto1, RunMethod::PromptAuto2, RunMethod::PromptAuto3, RunMethod::PromptAuto4];

impl RunMethod {
    pub fn name(self) -> &'static str {
        match self {
            RunMethod::Majority => "majority",
            RunMethod::ZeroShot => "zero-shot",
            RunMethod::ZeroShotWords => "zero-shot-words",
            RunMethod::InContext => "in-context",
            RunMethod::Plain => "plain",
            RunMethod::Prompt => "prompt",
            RunMethod::PromptDemos => "prompt-demos",
            RunMethod::PromptDemosFilter => "prompt-demos-filter",
            RunMethod::FullData => "full-data",
            RunMethod::SentenceEmbedding => "sentence-embedding",
            RunMethod::SentenceEmbeddingAnchors => "sentence-embedding-anchors",
            RunMethod::SentenceEmbeddingAnchorsAuto => "sentence-embedding-anchors-auto",
            RunMethod::SentenceEmbeddingWords => "sentence-embedding-words",
            RunMethod::PromptAuto1 => "prompt-auto-1",
            RunMethod::PromptAuto2 => "prompt-auto-2",
            RunMethod::PromptAuto3 => "prompt-auto-3",
            RunMethod::PromptAuto4 => "prompt-auto-4",
        }
    }

    /// Whether the method reads demonstrations (`--demo-sets` of them at test time).
    pub fn demonstrations(self) -> bool {
        matches!(self, RunMethod::PromptDemos | RunMethod::PromptDemosFilter | RunMethod::InContext)
    }

    /// Whether the method fine-tunes a [CLS] classifier on `--plain-model` (plain and
    /// full-data), whose head starts as [`CLS_HEAD`] says.
    pub fn cls(self) -> bool {
        matches!(self, RunMethod::Plain | RunMethod::FullData)
    }

    /// Whether the method fine-tunes the model (`--steps`, `--batch-size`, `--eval-every`;
    /// full-data's steps are `--full-data-steps`).
    pub fn fine_tunes(self) -> bool {
        matches!(self, RunMethod::Plain | RunMethod::Prompt | RunMethod::PromptDemos | RunMethod::PromptDemosFilter | RunMethod::FullData)
            || self.auto_template().is_some()
    }

    /// Which auto template (1-based line of the sorted file) the method trains with.
    pub fn auto_template(self) -> Option<usize> {
        match self {
            RunMethod::PromptAuto1 => Some(1),
            RunMethod::PromptAuto2 => Some(2),
            RunMethod::PromptAuto3 => Some(3),
            RunMethod::PromptAuto4 => Some(4),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        const ALL: [RunMethod; 17] = [
            RunMethod::Majority,
            RunMethod::ZeroShot,
            RunMethod::ZeroShotWords,
            RunMethod::InContext,
            RunMethod::Plain,
            RunMethod::Prompt,
            RunMethod::PromptDemos,
            RunMethod::PromptDemosFilter,
            RunMethod::FullData,
            RunMethod::SentenceEmbedding,
            RunMethod::SentenceEmbeddingAnchors,
            RunMethod::SentenceEmbeddingAnchorsAuto,
            RunMethod::SentenceEmbeddingWords,
            RunMethod::PromptAuto1,
            RunMethod::PromptAuto2,
            RunMethod::PromptAuto3,
            RunMethod::PromptAuto4,
        ];
        ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "method {s:?}: expected one of {}",
                ALL.map(RunMethod::name).join(", ")
            ))
        })
    }
}

/// What every run of one harness folder shares. Stored with each result: a folder never
/// mixes results of different settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Model for the prompt methods (an MLM-adapted checkpoint for a headless encoder).
    pub model: PathBuf,
    /// Encoder of the methods that do not prompt: plain fine-tuning and the sentence-
    /// embedding method (default: `model`).
    pub plain_model: PathBuf,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub eval_every: usize,
    pub max_len: usize,
    /// Input length with demonstrations (LM-BFF doubles it).
    pub demo_max_len: usize,
    /// Fixed demonstration sets at evaluation (LM-BFF: 16).
    pub demo_sets: usize,
    /// Score at most this many test inputs (the first N in file order; None: all).
    pub test_limit: Option<usize>,
    /// prompt-demos also scores a random subsample of this many test inputs (0: none)
    /// with `demo_subsample_sets` demonstration sets averaged (LM-BFF's 16), next to the
    /// one fixed set on the same inputs.
    #[serde(default)]
    pub demo_subsample: usize,
    #[serde(default)]
    pub demo_subsample_sets: usize,
    /// full-data: steps of the ceiling (batch [`FULL_DATA_BATCH`], dev every fifth).
    #[serde(default = "default_full_data_steps")]
    pub full_data_steps: usize,
    /// sentence-embedding-anchors(-auto): copies of each label anchor among the
    /// contrastive pairs (`EmbedParams::anchor_repeats`; the other methods ignore it).
    #[serde(default = "legacy_anchor_repeats")]
    pub anchor_repeats: usize,
    /// The sentence-embedding methods' contrastive learning rate, pair rounds, logistic
    /// regression C and (`sentence-embedding-words` only) word-anchor scale. A result
    /// stored before they could be set reads as made with the values the library used
    /// then (pinned: a later change of its defaults must not relabel old results).
    #[serde(default = "legacy_embed_lr")]
    pub embed_lr: f64,
    #[serde(default = "legacy_embed_iterations")]
    pub embed_iterations: usize,
    #[serde(default = "legacy_head_c")]
    pub head_c: f64,
    #[serde(default = "legacy_word_anchor_scale")]
    pub word_anchor_scale: f64,
}

/// How plain fine-tuning's [CLS] head starts now (`RunResult::cls_head`): its dense
/// layer from a BERT checkpoint's pooler, as BertForSequenceClassification, else new.
pub const CLS_HEAD: &str = "pooler";

/// Steps of the full-data ceiling unless set (results stored before the setting existed
/// count as this).
pub const DEFAULT_FULL_DATA_STEPS: usize = 500;
/// Batch size of the full-data ceiling.
pub const FULL_DATA_BATCH: usize = 16;

fn default_full_data_steps() -> usize {
    DEFAULT_FULL_DATA_STEPS
}

/// Results stored before `Settings::embed_lr` and its siblings existed were made with
/// `EmbedParams::default()` as it was then: lr 2e-5, 20 pair rounds, C 1, word-anchor
/// scale 3.
fn legacy_embed_lr() -> f64 {
    2e-5
}

fn legacy_embed_iterations() -> usize {
    20
}

fn legacy_head_c() -> f64 {
    1.0
}

fn legacy_word_anchor_scale() -> f64 {
    3.0
}

/// Results stored before `Settings::anchor_repeats` existed were made with 4 copies.
fn legacy_anchor_repeats() -> usize {
    4
}

/// The full-data ceiling's data: the task's glue_pretrain train and dev splits less every
/// text that also occurs in its test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullData {
    pub train: usize,
    pub dev: usize,
    /// Train and dev inputs dropped because the test set holds them.
    pub dropped: usize,
}

/// A method with demonstrations on a test subsample: the main table's reading (its
/// `--demo-sets` fixed sets, one by default: `one_set`, named for that default) against
/// the average over `sets` sets (LM-BFF's inference), on the same `n` inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsampleScore {
    pub n: usize,
    pub sets: usize,
    #[serde(with = "nan_as_null")]
    pub one_set: f64,
    #[serde(with = "nan_as_null")]
    pub all_sets: f64,
}

/// The outcome of one (task, seed, method) run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub task: String,
    pub seed: u64,
    pub method: RunMethod,
    /// "acc" for the single-sentence tasks.
    pub metric: String,
    #[serde(with = "nan_as_null")]
    pub test: f64,
    /// Best dev score (NaN-free: null for untrained methods).
    pub dev: Option<f64>,
    pub best_step: Option<usize>,
    pub n_test: usize,
    /// Test inputs dropped because the seed's train or dev split holds them (only a test
    /// set taken from glue_pretrain can overlap).
    #[serde(default)]
    pub test_dropped: usize,
    pub seconds: f64,
    /// prompt-demos: the subsample comparison of one set and many (see [`Settings`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsample: Option<SubsampleScore>,
    /// Temperature scaling fitted on dev and the test ECE before and after (methods with
    /// a model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Multi-label tasks: the macro-F1 over the labels (`test` is the micro-F1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    /// full-data: the sizes of its train and dev sets and what the test overlap removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_data: Option<FullData>,
    /// What computed the test and dev logits of a model: "onnxruntime" (a prompt model on
    /// CPU, through its export) or "libtorch".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scorer: Option<String>,
    /// The sentence-embedding methods: the label anchors trained with (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anchors: Vec<String>,
    /// The device the run's model ran on ("cpu", "cuda:0"; none for majority, and in
    /// results stored before it was recorded). Not a setting: chunks of one grid may run
    /// on different machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The file the test split was read from: the seed's k-shot test file, or
    /// glue_pretrain's dev.json where MNLI's, SNLI's or QQP's is missing (see
    /// [`TaskSpec::test_from_pretrain`]). None in results stored before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_file: Option<PathBuf>,
    /// plain and full-data: how the [CLS] head started ([`CLS_HEAD`]); None for the other
    /// methods, and for plain and full-data results stored before 2026-12-07, whose
    /// dense layer was always new: those are not read as this version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cls_head: Option<String>,
    pub settings: Settings,
}

/// Scores a trained prompt model through its ONNX export and the predictor: the graph
/// computes the last layer at the mask only and runs on ONNX Runtime's kernels, about
/// twice libtorch's throughput on CPU (docs/serve-bench.md), with the same renderings
/// (`Prompt::encode_with_demos`) and probabilities within ~1e-7. The export lives in a
/// temporary folder under the harness output, removed when the scorer is dropped.
struct OrtScorer {
    predictor: crate::serve::Predictor,
    dir: PathBuf,
}

/// The scorer folders this process holds: a folder named with this process's id that is
/// not among them is an earlier process's (a container's first process is pid 1 on every
/// start), stale like a dead process's.
fn live_scorers() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static LIVE: std::sync::OnceLock<std::sync::Mutex<Vec<PathBuf>>> = std::sync::OnceLock::new();
    LIVE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the scorer folders of harness processes that ended without removing theirs
/// (killed): a model-sized folder each, named `.scorer-<pid>-<n>`
/// ([`crate::checkpoint::tmp_suffix`]; `.scorer-<pid>` before). Only on Linux, where
/// `/proc` tells a live process from a dead one.
fn remove_stale_scorers(out: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let live: Vec<PathBuf> = live_scorers().clone();
    for entry in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        // Exactly `.scorer-<pid>-<n>` or `.scorer-<pid>`, digits only: no other name.
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let exact = name.strip_prefix(".scorer-").filter(|rest| rest.split('-').count() <= 2 && rest.split('-').all(digits));
        let Some(pid) = exact.and_then(|rest| rest.split('-').next()?.parse::<u32>().ok()) else { continue };
        if live.iter().any(|d| d.file_name() == Some(entry.file_name().as_os_str())) {
            continue;
        }
        // Left alone for an hour, as the other temporaries: a harness on another machine
        // sharing the folder (whose process this one cannot see) may still be using it.
        let idle = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
        let gone = pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists();
        if gone && idle.is_some_and(|d| d > crate::checkpoint::STALE_AFTER) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl OrtScorer {
    /// None when the model cannot be exported or ONNX Runtime not loaded: the caller
    /// scores with libtorch instead (and the result says so).
    fn new(model: &MaskedLm, tok: &Tokenizer, prompt: &Prompt, out: &Path) -> Option<Self> {
        // Unique per process and scorer: two harnesses sharing `out` from two machines
        // or containers (both pid 1) never export into, or delete, each other's folder.
        let dir = out.join(format!(".scorer-{}", crate::checkpoint::tmp_suffix()));
        remove_stale_scorers(out);
        live_scorers().push(dir.clone());
        let opened = crate::export::export(model, tok, prompt, &Demos::None, Default::default(), &dir, &Default::default()).and_then(|_| {
            let threads = tch::get_num_threads().max(1) as usize;
            crate::serve::Predictor::open(&dir, &crate::serve::PredictorOptions { threads, ..Default::default() })
        });
        match opened {
            Ok(predictor) => Some(OrtScorer { predictor, dir }),
            Err(e) => {
                crate::log::log(crate::log::Level::Warn, || format!("harness: scoring with libtorch ({e})"));
                let _ = std::fs::remove_dir_all(&dir);
                live_scorers().retain(|d| *d != dir);
                None
            }
        }
    }

    /// Label logits of `examples` with `demos`, averaged over the sets, in input order.
    fn logits(&self, tok: &Tokenizer, prompt: &Prompt, examples: &[Example], demos: &Demos) -> Result<Vec<Vec<f32>>> {
        train::prompt_logits(tok, prompt, examples, demos, |enc| self.predictor.logits_encoded(enc))
    }
}

impl Drop for OrtScorer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        live_scorers().retain(|d| *d != self.dir);
    }
}

/// The macro-F1 of a multi-label task's yes/no pair logits against the pairs' gold
/// classes (`labels` pairs per input, in label order).
/// A model's test metric, and a multi-label task's macro-F1 over its labels (from the
/// yes/no pairs, input-major). A model whose test logits went NaN or infinite diverged:
/// both are NaN, left out of their cells' means and counted (accuracy, F1 and Matthews
/// read a NaN row as wrong, which scored such a run 0, or -1, into the mean).
fn model_scores(spec: &TaskSpec, logits: &[Vec<f32>], gold: &[usize], scores: &[f32]) -> (f64, Option<f64>) {
    if logits.iter().flatten().any(|v| !v.is_finite()) {
        return (f64::NAN, spec.multi_label.as_ref().map(|_| f64::NAN));
    }
    (spec.metric.score(logits, gold, scores), spec.multi_label.as_ref().map(|m| multi_label_macro(logits, gold, m.names.len())))
}

fn multi_label_macro(logits: &[Vec<f32>], gold: &[usize], labels: usize) -> f64 {
    let sets = |yes: &dyn Fn(usize) -> bool| -> Vec<Vec<usize>> {
        (0..gold.len() / labels.max(1)).map(|i| (0..labels).filter(|&l| yes(i * labels + l)).collect()).collect()
    };
    // A pair whose row holds NaN (a diverged model, NO_CLASS) is wrong, as in the micro-F1.
    let predicted = crate::prompt::decisions(logits);
    let pred = sets(&|k| match predicted[k] {
        crate::metrics::NO_CLASS => gold[k] != crate::prompt::YES,
        p => p == crate::prompt::YES,
    });
    let truth = sets(&|k| gold[k] == crate::prompt::YES);
    crate::metrics::multi_label_f1(&pred, &truth, labels).1
}

/// Bins of the expected calibration error.
pub const ECE_BINS: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Divides the logits before the softmax (fitted by dev NLL).
    #[serde(with = "nan_as_null")]
    pub temperature: f64,
    /// Test ECE (10 bins) of the raw probabilities and of the scaled ones.
    #[serde(with = "nan_as_null")]
    pub ece_before: f64,
    #[serde(with = "nan_as_null")]
    pub ece_after: f64,
    /// The fitted temperature says nothing the dev set can back
    /// ([`crate::metrics::temperature_unsupported`]: no temperature fits, as when the
    /// model gets every dev example right or scores every one's class lowest, or the search ended at its
    /// bound): `ece_after` says nothing of calibration, and the report leaves such runs
    /// out of its scaled means, as the library leaves their temperature unapplied.
    /// Absent (results stored before it) reads false.
    #[serde(default)]
    pub at_bound: bool,
}

/// Numbers a diverged run may leave not finite (NaN logits give NaN scores): JSON has no
/// NaN, so they are written as null and read back as NaN, and the folder stays readable.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Rows of logits, with the same rule as [`nan_as_null`].
mod nan_rows_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(rows: &[Vec<f32>], s: S) -> Result<S::Ok, S::Error> {
        let rows: Vec<Vec<Option<f32>>> = rows.iter().map(|r| r.iter().map(|v| v.is_finite().then_some(*v)).collect()).collect();
        rows.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f32>>, D::Error> {
        let rows = Vec::<Vec<Option<f32>>>::deserialize(d)?;
        Ok(rows.into_iter().map(|r| r.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect()).collect())
    }
}

/// The class logits of a run on dev and test (input order), stored beside its result
/// (`<seed>-<method>.logits.json`) for analyses that need no re-run: ensembles,
/// calibration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Logits {
    #[serde(with = "nan_rows_as_null")]
    pub dev: Vec<Vec<f32>>,
    #[serde(with = "nan_rows_as_null")]
    pub test: Vec<Vec<f32>>,
}

/// Where the logits of a run live.
pub fn logits_path(out: &Path, task: &str, seed: u64, method: RunMethod) -> PathBuf {
    result_path(out, task, seed, method).with_extension("logits.json")
}

fn save_logits(out: &Path, task: &str, seed: u64, method: RunMethod, l: &Logits) -> Result<()> {
    write_atomic(&logits_path(out, task, seed, method), &serde_json::to_string(l).expect("logits serialise"))
}

/// Writes `text` to `path` (creating its folder) through a temporary file renamed onto
/// it: an interrupted run leaves no half-written file.
/// The temporary file is this writer's alone and synced before the rename
/// ([`crate::checkpoint::write_file_atomic`]).
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::checkpoint::write_file_atomic(path, text.as_bytes())
}

/// The result stored at `path`, None when there is none.
fn read_result(path: &Path) -> Result<Option<RunResult>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|source| Error::Json { path: path.to_path_buf(), what: "a harness result", source })
}

/// The fields in which `theirs` (stored) and `ours` differ, as "field: X there, Y here"
/// (None: the same settings). A model folder named by another path to the same folder
/// (relative, with `..`) is the same model.
fn settings_differ(theirs: &Settings, ours: &Settings) -> Option<String> {
    let canonical = |s: &Settings| {
        let mut s = s.clone();
        for p in [&mut s.model, &mut s.plain_model] {
            if let Ok(c) = std::fs::canonicalize(&*p) {
                *p = c;
            }
        }
        s
    };
    let (theirs, ours) = (canonical(theirs), canonical(ours));
    if theirs == ours {
        return None;
    }
    let (a, b) = (serde_json::to_value(&theirs).unwrap_or_default(), serde_json::to_value(&ours).unwrap_or_default());
    Some(crate::checkpoint::fields_differing(&a, &b).join("; "))
}

/// Removes what killed harness processes left in `out` and its run folders: temporary
/// files of interrupted writes and scorer folders (see [`remove_stale_scorers`]).
fn remove_stale_files(out: &Path) {
    remove_stale_scorers(out);
    crate::checkpoint::remove_stale_temps_in(out, crate::checkpoint::Owner::Shared(&[SETTINGS_FILE, INPUTS_FILE, "report.md", "results.json"]));
    for task in std::fs::read_dir(out.join("runs")).into_iter().flatten().flatten() {
        crate::checkpoint::remove_stale_temps_in(&task.path(), crate::checkpoint::Owner::Lmbff);
    }
}

/// The file recording what a harness folder's runs read: a fingerprint of each model
/// and of each (task, seed)'s splits.
pub const INPUTS_FILE: &str = "inputs.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Inputs {
    /// "model" and "plain_model": a fingerprint of the folder's files.
    models: std::collections::BTreeMap<String, String>,
    /// "<task>/16-<seed>": a fingerprint of the examples of its train, dev and test splits.
    splits: std::collections::BTreeMap<String, String>,
}

/// A fingerprint of a model folder: its files' names and bytes (not its subfolders).
pub(crate) fn model_fingerprint(dir: &Path) -> Result<String> {
    use crate::checkpoint::{fnv1a, fnv1a_file, FNV_OFFSET};
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        // `is_file` follows links: a model folder of links (a Hugging Face cache snapshot)
        // is fingerprinted by the files they point to.
        .filter(|e| e.path().is_file() && !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut h = FNV_OFFSET;
    for f in &files {
        h = fnv1a(f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default(), h);
        h = fnv1a_file(f, h)?;
    }
    Ok(format!("{h:016x}"))
}

/// Reads every split each (task, seed) run will read, before any run: a missing file, a
/// bad row, an empty split or a missing automatic template is named now, not hours into
/// the grid. Returns each (task, seed)'s fingerprint ("<task>/16-<seed>").
pub fn check_data(root: &Path, tasks: &[&TaskSpec], seeds: &[u64], methods: &[RunMethod]) -> Result<Vec<(String, String)>> {
    use crate::checkpoint::{fnv1a, FNV_OFFSET};
    let mut prints = Vec::new();
    for spec in tasks {
        for &seed in seeds {
            let name = format!("{}/16-{seed}", spec.name);
            let (train_ex, dev_ex) = (spec.read(root, seed, "train")?, spec.read(root, seed, "dev")?);
            let (test_ex, _) = spec.read_test(root, seed, &[&train_ex, &dev_ex])?;
            for (split, ex) in [("train", &train_ex), ("dev", &dev_ex), ("test", &test_ex)] {
                if ex.is_empty() {
                    let dropped = if split == "test" && spec.test_from_pretrain(root, seed) { " left once the pairs its train and dev splits hold are dropped" } else { "" };
                    return Err(Error::InvalidArgument(format!("{name}: the {split} split has no rows{dropped} (in {})", root.display())));
                }
            }
            let mut h = FNV_OFFSET;
            for (split, ex) in [("train", &train_ex), ("dev", &dev_ex), ("test", &test_ex)] {
                h = examples_print(ex, fnv1a(split.as_bytes(), h));
            }
            if spec.regression.is_some() {
                for split in ["train", "dev", "test"] {
                    for v in spec.scores(root, seed, split)? {
                        h = fnv1a(&v.to_le_bytes(), h);
                    }
                }
            }
            prints.push((name.clone(), format!("{h:016x}")));
            for m in methods {
                // As `run_one` refuses it, before the first run instead of at this one.
                if *m == RunMethod::ZeroShotWords && (spec.multi_label.is_some() || Template::parse(spec.template)?.num_sentences() != 1) {
                    return Err(Error::InvalidArgument(format!(
                        "zero-shot-words scores single-label tasks of one sentence; {} is {}",
                        spec.name,
                        if spec.multi_label.is_some() { "multi-label" } else { "a sentence-pair task" }
                    )));
                }
                // The automatic templates a run reads are its inputs too, each its own entry
                // (runs of other methods read others).
                let mut used: Vec<usize> = m.auto_template().into_iter().collect();
                // As `run_one` reads them: a single-label task whose template reads one sentence.
                if *m == RunMethod::SentenceEmbeddingAnchorsAuto && spec.multi_label.is_none() && Template::parse(spec.template)?.num_sentences() == 1 {
                    used.extend(1..=AUTO_ANCHOR_TEMPLATES);
                }
                for n in used {
                    let t = auto_template(root, spec.name, seed, n)?;
                    let entry = (format!("{name}/auto-template-{n}"), format!("{:016x}", fnv1a(t.as_bytes(), FNV_OFFSET)));
                    if !prints.contains(&entry) {
                        prints.push(entry);
                    }
                }
            }
        }
        if methods.contains(&RunMethod::FullData) {
            let mut full = spec.read_full(root, "train")?;
            if !spec.test_fallback {
                full.extend(spec.read_full(root, "dev")?);
            }
            prints.push((format!("{}/full-data", spec.name), format!("{:016x}", examples_print(&full, FNV_OFFSET))));
        }
    }
    Ok(prints)
}

/// `h` carried over `examples`' texts and labels (FNV-1a): what [`check_data`]
/// fingerprints.
fn examples_print(examples: &[Example], mut h: u64) -> u64 {
    use crate::checkpoint::fnv1a;
    for e in examples {
        h = fnv1a(e.text_a.as_bytes(), h);
        h = fnv1a(&[0], h);
        h = fnv1a(e.text_b.as_deref().unwrap_or("").as_bytes(), h);
        h = fnv1a(&e.label.map_or(u64::MAX, |l| l as u64).to_le_bytes(), h);
    }
    h
}

/// The fingerprints of the settings' models (`model`, and `plain_model` where it is
/// another folder), for [`check_inputs`]; a path that is not a model folder (no
/// config.json) is named here, before any run or record.
pub fn model_prints(s: &Settings) -> Result<Vec<(&'static str, String)>> {
    let mut models = vec![("model", &s.model)];
    if s.plain_model != s.model {
        models.push(("plain_model", &s.plain_model));
    }
    models
        .into_iter()
        .map(|(key, dir)| {
            if !dir.join("config.json").is_file() {
                return Err(Error::MissingFile { dir: dir.clone(), what: if key == "model" { "model config (--model)" } else { "model config (--plain-model)" }, looked_for: "config.json".into() });
            }
            Ok((key, model_fingerprint(dir)?))
        })
        .collect()
}

/// Checks that the models (`models`, from [`model_prints`]) and the (task, seed) splits
/// (`splits`, from [`check_data`]) are those the folder's stored runs were made from, and
/// records the new ones. A folder made before this record existed takes its inputs as
/// they are now.
pub fn check_inputs(out: &Path, s: &Settings, models: Vec<(&'static str, String)>, splits: Vec<(String, String)>) -> Result<()> {
    let _lock = crate::checkpoint::DirLock::exclusive(out)?;
    let path = out.join(INPUTS_FILE);
    let mut known: Inputs = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|source| Error::Json { path: path.clone(), what: "the harness's inputs", source })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Inputs::default(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut changed = false;
    for (key, print) in models {
        let dir = if key == "model" { &s.model } else { &s.plain_model };
        match known.models.get(key) {
            Some(p) if *p != print => {
                return Err(Error::InvalidArgument(format!(
                    "{}: the files of --{} {} changed since the runs stored here were made (fingerprint {p} then, {print} now); \
                     use a new --out folder for the new model",
                    out.display(),
                    key.replace('_', "-"),
                    dir.display()
                )))
            }
            Some(_) => {}
            None => {
                known.models.insert(key.to_string(), print);
                changed = true;
            }
        }
    }
    for (name, print) in splits {
        match known.splits.get(&name) {
            Some(p) if *p != print => {
                // Since 2026-12-06 a seed's own test file comes before glue_pretrain's.
                let fallback = TASKS.iter().any(|t| t.test_fallback && name.starts_with(t.name));
                let why = if fallback { ", or its k-shot folder now has the test file read before glue_pretrain's dev.json" } else { "" };
                return Err(Error::InvalidArgument(format!(
                    "{}: the data of {name} differ from those its stored runs read (another --data folder, or its files \
                     changed{why}); use a new --out folder for other data",
                    out.display()
                )))
            }
            Some(_) => {}
            None => {
                known.splits.insert(name, print);
                changed = true;
            }
        }
    }
    if changed {
        write_atomic(&path, &serde_json::to_string_pretty(&known).expect("inputs serialise"))?;
    }
    Ok(())
}

/// A claim on one (task, seed, method) run: an exclusive lock on its lock file, held
/// while it runs, so that two harness commands on one folder share the grid's runs
/// instead of each making them all.
pub struct RunClaim {
    _file: std::fs::File,
}

impl RunClaim {
    fn lock_path(out: &Path, task: &str, seed: u64, method: RunMethod) -> Result<PathBuf> {
        let dir = out.join("runs").join(task);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir.join(format!(".{seed}-{}.lock", method.name())))
    }

    /// The claim, or None while another command holds it.
    pub fn try_take(out: &Path, task: &str, seed: u64, method: RunMethod) -> Result<Option<Self>> {
        Ok(crate::checkpoint::try_lock_file(&Self::lock_path(out, task, seed, method)?)?.map(|f| RunClaim { _file: f }))
    }

    /// The claim, once the command holding it lets it go; None once `give_up` says so
    /// (the command's `--max-minutes` spent: the run is left for a later chunk instead of
    /// waiting on another command's run for as long as it takes).
    pub fn wait(out: &Path, task: &str, seed: u64, method: RunMethod, give_up: &dyn Fn() -> bool) -> Result<Option<Self>> {
        let path = Self::lock_path(out, task, seed, method)?;
        loop {
            if let Some(f) = crate::checkpoint::try_lock_file(&path)? {
                return Ok(Some(RunClaim { _file: f }));
            }
            if give_up() {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

/// The settings file of a harness folder, written by its first command.
pub const SETTINGS_FILE: &str = "settings.json";

/// Claims `out` for `settings` before any run: a folder holds the results of one set of
/// settings. Its `settings.json`, written by the first command, must match; a folder made
/// before that file existed is checked result by result first. Another setting is an
/// error naming the fields that differ (use another folder to compare settings).
pub fn claim_folder(out: &Path, settings: &Settings) -> Result<()> {
    check_out_folder(out)?;
    // Two commands starting on one folder take turns: the second sees the first's file.
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let _lock = crate::checkpoint::DirLock::exclusive(out)?;
    remove_stale_files(out);
    claim_settings(out, settings)
}

/// A harness writes its report, results and runs only into its own folder (one holding
/// its settings file), a new or an empty one, never among a user's files or into a
/// model: a `runs/` folder alone does not make one (`--out .` in a repository with its
/// own `runs/`).
pub fn check_out_folder(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::InvalidArgument(format!("--out {} is a file: give a new or empty folder, or an earlier harness folder", out.display())));
    }
    if let Some(file) = out.ancestors().skip(1).find(|a| !a.as_os_str().is_empty() && a.exists()).filter(|a| !a.is_dir()) {
        return Err(Error::InvalidArgument(format!("--out {}: {} is a file, not a folder", out.display(), file.display())));
    }
    if out.is_dir() && !is_harness_folder(out) {
        // Another command making this folder now holds its lock and writes its settings
        // first (through a temporary file): those are a harness's, not a user's.
        let ours = |name: &str| [crate::checkpoint::LOCK_FILE, SETTINGS_FILE].contains(&name) || crate::checkpoint::is_temp_of(name, SETTINGS_FILE);
        let mut others = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.filter_map(|e| e.ok()).filter(|e| !ours(&e.file_name().to_string_lossy()));
        if let Some(other) = others.next() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a harness folder (no {SETTINGS_FILE}) and is not empty (it holds {:?}): give a new or empty --out folder",
                out.display(),
                other.file_name()
            )));
        }
    }
    Ok(())
}

/// Whether `out` holds a harness's results: its settings file, or, for a folder made
/// before that file existed, a `runs/` holding nothing but folders named after the
/// harness's tasks (at least one). A `runs/` of anything else is a user's.
fn is_harness_folder(out: &Path) -> bool {
    if out.join(SETTINGS_FILE).is_file() {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(out.join("runs")) else { return false };
    let mut any = false;
    for entry in entries {
        let Ok(entry) = entry else { return false };
        let task_folder = entry.file_name().to_str().is_some_and(|n| TASKS.iter().any(|t| t.name == n)) && entry.path().is_dir();
        if !task_folder {
            return false;
        }
        any = true;
    }
    any
}

/// [`claim_folder`]'s check and record of the settings, under the folder's lock.
fn claim_settings(out: &Path, settings: &Settings) -> Result<()> {
    let path = out.join(SETTINGS_FILE);
    let differ = |theirs: &Settings, what: &Path| -> Result<()> {
        match settings_differ(theirs, settings) {
            None => Ok(()),
            Some(fields) => Err(Error::InvalidArgument(format!(
                "{} holds results made with other settings ({fields}); use another --out folder to compare settings",
                what.display()
            ))),
        }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let theirs: Settings = serde_json::from_str(&text).map_err(|source| Error::Json { path: path.clone(), what: "harness settings", source })?;
            // The first command writes the file before its first run: one that stopped
            // before any run was stored claimed the folder all the same (it said "holds
            // results" of a folder holding none).
            return match settings_differ(&theirs, settings) {
                Some(fields) if !holds_results(out)? => Err(Error::InvalidArgument(format!(
                    "{} was claimed by an earlier command with other settings ({fields}), which stored no run: \
                     remove its {SETTINGS_FILE} to use the folder with these, or use another --out folder",
                    out.display()
                ))),
                _ => differ(&theirs, out),
            };
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let runs = out.join("runs");
    if runs.is_dir() {
        let files = std::fs::read_dir(&runs).map_err(|e| Error::io(&runs, e))?.map(|task| {
            let dir = task.map_err(|e| Error::io(&runs, e))?.path();
            Ok(if dir.is_dir() { std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.filter_map(|f| f.ok().map(|f| f.path())).collect() } else { Vec::new() })
        });
        for file in files.collect::<Result<Vec<Vec<PathBuf>>>>()?.into_iter().flatten() {
            let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if !name.ends_with(".json") || name.ends_with(".logits.json") {
                continue;
            }
            if let Some(r) = read_result(&file)? {
                differ(&r.settings, &file)?;
            }
        }
    }
    write_atomic(&path, &serde_json::to_string_pretty(settings).map_err(|e| Error::Internal(format!("settings do not serialise: {e}")))?)
}

/// Whether a harness folder holds a stored run (a result file under `runs/`).
fn holds_results(out: &Path) -> Result<bool> {
    let runs = out.join("runs");
    if !runs.is_dir() {
        return Ok(false);
    }
    for task in std::fs::read_dir(&runs).map_err(|e| Error::io(&runs, e))? {
        let dir = task.map_err(|e| Error::io(&runs, e))?.path();
        if dir.is_dir() && std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.filter_map(|f| f.ok()).any(|f| {
            let name = f.file_name().to_string_lossy().to_string();
            name.ends_with(".json") && !name.starts_with('.')
        }) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The most examples the full-data ceiling holds out of train as its dev set where the
/// task's own dev set is its test set (MNLI, SNLI, QQP).
pub const FULL_DATA_DEV: usize = 1000;

/// Splits `all` into (train, dev): dev a fixed draw ([`subsample`]) of a tenth of it, at
/// most [`FULL_DATA_DEV`], train the rest, both in file order.
pub fn carve_dev(all: Vec<Example>) -> (Vec<Example>, Vec<Example>) {
    let pick: std::collections::HashSet<usize> = subsample(all.len(), FULL_DATA_DEV.min(all.len() / 10)).into_iter().collect();
    let (dev, train): (Vec<_>, Vec<_>) = all.into_iter().enumerate().partition(|(i, _)| pick.contains(i));
    (train.into_iter().map(|(_, e)| e).collect(), dev.into_iter().map(|(_, e)| e).collect())
}

/// `n` indices of `0..len` drawn without replacement by a fixed generator (the same
/// inputs for every seed and method), in increasing order; all of them if `n >= len`.
pub fn subsample(len: usize, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    if n < len {
        let mut rng = ChaCha8Rng::seed_from_u64(0x7375_6273); // "subs"
        idx.shuffle(&mut rng);
        idx.truncate(n);
        idx.sort_unstable();
    }
    idx
}

/// Where one run's result lives under the harness folder.
pub fn result_path(out: &Path, task: &str, seed: u64, method: RunMethod) -> PathBuf {
    out.join("runs")
        .join(task)
        .join(format!("{seed}-{}.json", method.name()))
}

/// The stored result of a run, if it was made with `settings` and scored the `n_test`
/// test rows the run would score now ([`expected_n_test`]); another setting or count is
/// an error (use another folder, or remove the file).
pub fn stored(
    out: &Path,
    task: &str,
    seed: u64,
    method: RunMethod,
    settings: &Settings,
    n_test: usize,
) -> Result<Option<RunResult>> {
    let path = result_path(out, task, seed, method);
    let Some(r) = read_result(&path)? else { return Ok(None) };
    let wrong = |why: String| Err(Error::InvalidArgument(format!("{}: {why}; remove it to make the run again", path.display())));
    if (r.task.as_str(), r.seed, r.method) != (task, seed, method) {
        return wrong(format!("holds the result of {} seed {} {}, not of {task} seed {seed} {}", r.task, r.seed, r.method.name(), method.name()));
    }
    // A result scored by another metric than the task's now (an older version's) would be
    // averaged with this version's as if they were one measure.
    let spec = self::task(task)?;
    let metric = spec.metric.name();
    if r.metric != metric {
        return wrong(format!("was scored by {} where {task} is now scored by {metric}", r.metric));
    }
    // A multi-label task scores every input's (input, label) pairs: a count that is no
    // multiple of the labels is a result made when --test-limit counted pairs.
    let per_input = test_rows_per_input(spec)?;
    if r.n_test % per_input != 0 {
        return wrong(format!("scored {} (input, label) pairs, not whole inputs of {per_input} labels (made when --test-limit counted pairs)", r.n_test));
    }
    if let Some(fields) = settings_differ(&r.settings, settings) {
        return Err(Error::InvalidArgument(format!(
            "{} was made with other settings ({fields}); use another --out folder to compare settings",
            path.display()
        )));
    }
    // Plain fine-tuning's [CLS] head started new before it started from a BERT
    // checkpoint's pooler: such a result is another baseline's.
    if method.cls() && r.cls_head.as_deref() != Some(CLS_HEAD) {
        return wrong(format!(
            "was made with a new dense layer in the [CLS] head (before 2026-12-07), where {} now starts it from a BERT checkpoint's pooler",
            method.name()
        ));
    }
    // Another count is another test set (other data, another pairing, an older version's
    // overlap rule): its score is not this run's.
    if r.n_test != n_test {
        return wrong(format!("scored {} test rows where {task} seed {seed} now gives {n_test}", r.n_test));
    }
    // A metric is a fraction (accuracy, F1) or a correlation (Matthews, Pearson); NaN is
    // a diverged run's (NaN logits make Pearson NaN; constant predictions score 0).
    let low = if matches!(r.metric.as_str(), "mcc" | "pearson") { -1.0 } else { 0.0 };
    if r.n_test == 0 || (r.test.is_finite() && !(low..=1.0).contains(&r.test)) {
        return wrong(format!("{} test {} over {} inputs is not a result", r.metric, r.test, r.n_test));
    }
    Ok(Some(r))
}

fn save(out: &Path, r: &RunResult) -> Result<()> {
    write_atomic(&result_path(out, &r.task, r.seed, r.method), &serde_json::to_string_pretty(r).expect("a result serialises"))
}

/// The full-data ceiling's train and dev: the task's whole training set, less what the
/// test set holds (the data README lists exact-match overlaps: MPQA 445, TREC 10, CR 2,
/// SST-5 2), compared without case ("What are the Twin Cities ?" in TREC's training set
/// is a test question, lower case, there: 11 for TREC); with their counts.
fn full_data_split(root: &Path, spec: &TaskSpec, test_ex: &[Example]) -> Result<(Vec<Example>, Vec<Example>, FullData)> {
    let key = |e: &Example| (e.text_a.trim().to_lowercase(), e.text_b.as_deref().map(|b| b.trim().to_lowercase()));
    let test_texts: std::collections::HashSet<(String, Option<String>)> = test_ex.iter().map(key).collect();
    let (full_train, full_dev) = if spec.test_fallback {
        // glue_pretrain's dev is this task's test set where the k-shot folder has no
        // test file: dev comes out of train instead, whichever test file a seed has
        // (one ceiling per task).
        carve_dev(spec.read_full(root, "train")?)
    } else {
        (spec.read_full(root, "train")?, spec.read_full(root, "dev")?)
    };
    let n = full_train.len() + full_dev.len();
    let keep = |v: Vec<Example>| -> Vec<Example> { v.into_iter().filter(|e| !test_texts.contains(&key(e))).collect() };
    let (train, dev) = (keep(full_train), keep(full_dev));
    let counts = FullData { train: train.len(), dev: dev.len(), dropped: n - train.len() - dev.len() };
    Ok((train, dev, counts))
}

/// A stored full-data result is this version's only if it trained on the data this
/// version cuts from the same files (an older overlap rule dropped other texts); other
/// results pass. For every place a stored result is reused.
pub fn check_full_data(root: &Path, out: &Path, spec: &TaskSpec, seed: u64, r: &RunResult) -> Result<()> {
    if r.method != RunMethod::FullData {
        return Ok(());
    }
    if r.full_data.is_none() {
        // Stored before the counts were: reused, and said so (an older overlap rule may
        // have cut other texts from the same files).
        eprintln!(
            "note: {} records no counts of the full data it trained on (an older version's result): reused unchecked; remove it to make the run again",
            result_path(out, &r.task, r.seed, r.method).display()
        );
        return Ok(());
    }
    let (train, dev) = (spec.read(root, seed, "train")?, spec.read(root, seed, "dev")?);
    let (test, _) = spec.read_test(root, seed, &[&train, &dev])?;
    same_full_data(out, r, &full_data_split(root, spec, &test)?.2)
}

fn same_full_data(out: &Path, r: &RunResult, current: &FullData) -> Result<()> {
    match &r.full_data {
        Some(f) if f != current => Err(Error::InvalidArgument(format!(
            "{} was trained on other full data ({} train, {} dev, {} dropped as test texts) than {} now gives ({} train, {} dev, {} dropped); \
             remove it to make the run again",
            result_path(out, &r.task, r.seed, r.method).display(),
            f.train,
            f.dev,
            f.dropped,
            r.task,
            current.train,
            current.dev,
            current.dropped
        ))),
        _ => Ok(()),
    }
}

/// Runs (or reuses) one (task, seed, method) run and stores its result.
pub fn run_one(
    root: &Path,
    spec: &TaskSpec,
    seed: u64,
    method: RunMethod,
    s: &Settings,
    device: &str,
    out: &Path,
    progress: ProgressFn,
) -> Result<RunResult> {
    let started = Instant::now();
    let (mut train_ex, mut dev_ex) = (spec.read(root, seed, "train")?, spec.read(root, seed, "dev")?);
    let (mut test_ex, test_dropped) = spec.read_test(root, seed, &[&train_ex, &dev_ex])?;
    let n_test = scored_rows(spec, test_ex.len(), s)?;
    let full_data = if method == RunMethod::FullData {
        let (full_train, full_dev, counts) = full_data_split(root, spec, &test_ex)?;
        (train_ex, dev_ex) = (full_train, full_dev);
        Some(counts)
    } else {
        None
    };
    if let Some(r) = stored(out, spec.name, seed, method, s, n_test)? {
        if let Some(current) = &full_data {
            same_full_data(out, &r, current)?;
        }
        return Ok(r);
    }
    let test_file = spec.test_file(root, seed)?;
    test_ex.truncate(n_test);
    let gold: Vec<usize> = test_ex
        .iter()
        .map(|e| e.label.expect("read() labels every example"))
        .collect();
    let dev_gold: Vec<usize> = dev_ex.iter().map(|e| e.label.expect("read() labels every example")).collect();
    // Regression: gold test scores, and train/dev scores scaled to [0, 1] as targets.
    let (test_scores, targets) = match spec.regression {
        Some((low, high)) => {
            let scaled = |split: &str| -> Result<Vec<f32>> {
                Ok(spec.scores(root, seed, split)?.into_iter().map(|v| (v - low) / (high - low)).collect())
            };
            let mut t = spec.scores(root, seed, "test")?;
            t.truncate(gold.len());
            (t, Some(train::RegressionTargets { train: scaled("train")?, dev: scaled("dev")? }))
        }
        None => (Vec::new(), None),
    };
    let mut subsample_score = None;
    let mut majority_test = None;
    let mut scorer = None;
    let mut anchors = Vec::new();
    let mut run_device = None;
    // Dev and test logits of the methods that have a model.
    let mut outputs: Option<Logits> = None;
    let (dev, best_step) = match method {
        RunMethod::Majority => {
            let k = spec.labels.len();
            let counts = (0..k)
                .map(|c| train_ex.iter().filter(|e| e.label == Some(c)).count())
                .collect::<Vec<_>>();
            // Ties go to the first class (the balanced k-shot splits always tie).
            let majority = (0..k)
                .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
                .unwrap_or(0);
            let rows: Vec<Vec<f32>> = gold.iter().map(|_| (0..k).map(|c| f32::from(u8::from(c == majority))).collect()).collect();
            majority_test = Some(spec.metric.score(&rows, &gold, &test_scores));
            (None, None)
        }
        _ => {
            let demos = method.demonstrations();
            let embedding = matches!(
                method,
                RunMethod::SentenceEmbedding | RunMethod::SentenceEmbeddingAnchors | RunMethod::SentenceEmbeddingAnchorsAuto | RunMethod::SentenceEmbeddingWords | RunMethod::ZeroShotWords
            );
            let model_dir = if embedding || method.cls() {
                &s.plain_model
            } else {
                &s.model
            };
            let tok = Tokenizer::from_dir(model_dir)?;
            let verbalizer = spec.verbalizer(&tok)?;
            // Cut to the model's positions, as `train` cuts its default (a small model's
            // 64 against the default 128; the setting stays as given).
            let positions = crate::model::Config::from_dir(model_dir)?.0.max_input_len() as usize;
            let truncation = Truncation {
                max_len: if demos { s.demo_max_len } else { s.max_len }.max(spec.max_len.unwrap_or(0)).min(positions),
                first_sent_limit: spec.first_sent_limit,
                other_sent_limit: spec.other_sent_limit,
                ..Truncation::default()
            };
            let template = match method.auto_template() {
                Some(n) => auto_template(root, spec.name, seed, n)?,
                None => spec.template.to_string(),
            };
            let prompt = Prompt::new(Template::parse(&template)?, verbalizer, truncation)?;
            tch::manual_seed(seed as i64);
            let model = MaskedLm::load(model_dir, parse_device(device)?)?;
            run_device = Some(device_name(model.device()));
            if embedding {
                // SetFit's method, as compared with the setfit package, has no anchors.
                let anchor_repeats = if method == RunMethod::SentenceEmbedding { 0 } else { s.anchor_repeats };
                let anchor_templates = if method == RunMethod::SentenceEmbeddingAnchorsAuto && spec.multi_label.is_none() && prompt.anchor_texts().is_some() {
                    (1..=AUTO_ANCHOR_TEMPLATES).map(|n| Template::parse(&auto_template(root, spec.name, seed, n)?)).collect::<Result<Vec<_>>>()?
                } else {
                    Vec::new()
                };
                // Word anchors only where the method names them: the other methods keep
                // the results they were measured with before the default changed.
                let word_anchor_scale = if method == RunMethod::SentenceEmbeddingWords { s.word_anchor_scale } else { 0.0 };
                let p = EmbedParams {
                    seed,
                    anchor_repeats,
                    anchor_templates,
                    word_anchor_scale,
                    lr: s.embed_lr,
                    iterations: s.embed_iterations,
                    head_c: s.head_c,
                    ..EmbedParams::default()
                };
                let (dev_logits, logits) = match &spec.multi_label {
                    // A yes/no head per label on the input's embedding; its logits split
                    // into the yes/no pairs the prompt methods are scored on.
                    Some(_) if method == RunMethod::ZeroShotWords => {
                        return Err(Error::InvalidArgument(format!("zero-shot-words scores single-label tasks; {} is multi-label", spec.name)));
                    }
                    Some(ms) => {
                        let (ml, reader) = (ms.labels()?, prompt.input_reader());
                        let (inputs, sets) = ms.build(root, seed, "train")?;
                        let (head, report) = train::train_embedding_multi(&model, &tok, &reader, &inputs, &sets, ml.names(), &p, progress)?;
                        anchors = report.anchors;
                        let pairs = |split: &str| -> Result<Vec<Vec<f32>>> {
                            let (inputs, _) = ms.build(root, seed, split)?;
                            ml.split_heads(&train::embedding_logits(&model, &tok, &reader, &head, &inputs, 32)?)
                        };
                        let (dev_logits, mut logits) = (pairs("dev")?, pairs("test")?);
                        logits.truncate(test_ex.len());
                        (dev_logits, logits)
                    }
                    None if method == RunMethod::ZeroShotWords => {
                        let head = train::word_anchor_zero_shot(&model, &tok, &prompt, &[]).map_err(|e| match e {
                            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{}: {m}", spec.name)),
                            e => e,
                        })?;
                        (
                            train::embedding_logits(&model, &tok, &prompt, &head, &dev_ex, 32)?,
                            train::embedding_logits(&model, &tok, &prompt, &head, &test_ex, 32)?,
                        )
                    }
                    None => {
                        let (head, report) = train::train_embedding(&model, &tok, &prompt, &train_ex, &p, progress)?;
                        anchors = report.anchors;
                        (
                            train::embedding_logits(&model, &tok, &prompt, &head, &dev_ex, 32)?,
                            train::embedding_logits(&model, &tok, &prompt, &head, &test_ex, 32)?,
                        )
                    }
                };
                // Reported only (this method selects nothing on dev): the task's metric,
                // the one the fine-tuned methods select by.
                let dev = match (spec.metric, &targets) {
                    (Metric::Pearson, Some(t)) => spec.metric.score(&dev_logits, &dev_gold, &t.dev),
                    (Metric::Pearson, None) => accuracy(&dev_logits, &dev_gold),
                    (m, _) => m.score(&dev_logits, &dev_gold, &[]),
                };
                outputs = Some(Logits { dev: dev_logits, test: logits });
                (Some(dev), None)
            } else {
                let (head, demo_sets, dev, best_step, train_method) =
                    if matches!(method, RunMethod::ZeroShot | RunMethod::InContext) {
                        // In-context: the fixed sets training would keep, from the same
                        // generator, so it is prompt-demos minus the training.
                        let sets = if demos {
                            Demos::Fixed(DemoPool::new(&train_ex, spec.labels.len())?.inference_sets(seed, s.demo_sets))
                        } else {
                            Demos::None
                        };
                        (Head::for_prompt(&model, &prompt)?, sets, None, None, Method::Prompt)
                    } else {
                        let train_method = if method.cls() {
                            Method::Cls
                        } else {
                            Method::Prompt
                        };
                        let full = method == RunMethod::FullData;
                        let p = TrainParams {
                            steps: if full { s.full_data_steps } else { s.steps },
                            batch_size: if full { FULL_DATA_BATCH } else { s.batch_size },
                            lr: s.lr,
                            eval_every: if full { (s.full_data_steps / 5).max(1) } else { s.eval_every },
                            seed,
                            demonstrations: demos,
                            demo_sets: s.demo_sets,
                            demo_filter: (method == RunMethod::PromptDemosFilter).then(|| s.plain_model.clone()),
                            dev_metric: match spec.metric {
                                Metric::F1 => train::DevMetric::PositiveF1,
                                Metric::MicroF1 => train::DevMetric::MultiLabelF1,
                                Metric::Matthews => train::DevMetric::Matthews,
                                _ => train::DevMetric::Accuracy,
                            },
                            balance_classes: spec.multi_label.is_some(),
                            demos_apart_by_input: spec.multi_label.is_some(),
                            regression: targets.clone(),
                            ..TrainParams::default()
                        };
                        let (rep, head) = train::finetune(
                            &model,
                            &tok,
                            &prompt,
                            train_method,
                            &train_ex,
                            &dev_ex,
                            &p,
                            progress,
                        )?;
                        (
                            head,
                            rep.demos,
                            Some(rep.best_dev_acc),
                            Some(rep.best_step),
                            train_method,
                        )
                    };
                // Prompt models on CPU are scored through their ONNX export (the serving
                // path; parity with libtorch ~1e-7, about twice as fast); others by libtorch.
                let ort = if train_method == Method::Prompt && model.device() == tch::Device::Cpu {
                    OrtScorer::new(&model, &tok, &prompt, out)
                } else {
                    None
                };
                scorer = Some(if ort.is_some() { "onnxruntime" } else { "libtorch" });
                let score = |ex: &[Example], demos: &Demos| -> Result<Vec<Vec<f32>>> {
                    match &ort {
                        Some(o) => o.logits(&tok, &prompt, ex, demos),
                        None => train::predict_examples(&model, &tok, &prompt, train_method, &head, ex, demos, 32),
                    }
                };
                let logits = score(&test_ex, &demo_sets)?;
                if demos && s.demo_subsample > 0 && s.demo_subsample_sets > 0 {
                    let idx = subsample(test_ex.len(), s.demo_subsample);
                    let sub_ex: Vec<Example> = idx.iter().map(|&i| test_ex[i].clone()).collect();
                    let sub_gold: Vec<usize> = idx.iter().map(|&i| gold[i]).collect();
                    let sub_scores: Vec<f32> = idx.iter().filter_map(|&i| test_scores.get(i).copied()).collect();
                    let one: Vec<Vec<f32>> = idx.iter().map(|&i| logits[i].clone()).collect();
                    // The same generator as training's inference sets: the first of these
                    // is the fixed set scored above (filtered: each input's nearest).
                    let sets = match &demo_sets {
                        Demos::Similar { pool, encoder, .. } => Demos::Similar { pool: pool.clone(), encoder: encoder.clone(), sets: s.demo_subsample_sets },
                        _ => Demos::Fixed(DemoPool::new(&train_ex, spec.labels.len())?.inference_sets(seed, s.demo_subsample_sets)),
                    };
                    let many = score(&sub_ex, &sets)?;
                    subsample_score = Some(SubsampleScore {
                        n: idx.len(),
                        sets: sets.sets_per_input(),
                        one_set: spec.metric.score(&one, &sub_gold, &sub_scores),
                        all_sets: spec.metric.score(&many, &sub_gold, &sub_scores),
                    });
                }
                let dev_logits = score(&dev_ex, &demo_sets)?;
                outputs = Some(Logits { dev: dev_logits, test: logits });
                (dev, best_step)
            }
        }
    };
    let (test, macro_f1) = match &outputs {
        Some(o) => model_scores(spec, &o.test, &gold, &test_scores),
        None => (majority_test.unwrap_or(f64::NAN), None),
    };
    // Temperature scaling fitted on dev (its logits, the kept weights), judged on test
    // (classification only: a regression's probabilities are a score, not a confidence).
    let calibration = outputs.as_ref().filter(|_| spec.regression.is_none()).map(|o| {
        calibrate(&o.dev, &dev_gold, &o.test, &gold)
    });
    if let Some(o) = &outputs {
        save_logits(out, spec.name, seed, method, o)?;
    }
    let r = RunResult {
        task: spec.name.into(),
        seed,
        method,
        metric: spec.metric.name().into(),
        test,
        dev,
        best_step,
        n_test: gold.len(),
        test_dropped,
        seconds: started.elapsed().as_secs_f64(),
        subsample: subsample_score,
        calibration,
        macro_f1,
        full_data,
        scorer: scorer.map(String::from),
        anchors,
        device: run_device,
        test_file: Some(test_file),
        cls_head: method.cls().then(|| CLS_HEAD.to_string()),
        settings: s.clone(),
    };
    save(out, &r)?;
    Ok(r)
}

/// The `n`-th (1-based) of LM-BFF's automatically found templates for `task` and `seed`:
/// `auto/auto_template/<task>/16-<seed>.sort.txt` beside the k-shot folder `root`.
pub fn auto_template(root: &Path, task: &str, seed: u64, n: usize) -> Result<String> {
    let path = root.parent().unwrap_or(Path::new("..")).join("auto/auto_template").join(task).join(format!("16-{seed}.sort.txt"));
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .nth(n - 1)
        .map(|l| l.trim().to_string())
        .ok_or_else(|| Error::InvalidArgument(format!("{}: has fewer than {n} templates", path.display())))
}

/// How many test examples one test input gives: a multi-label task's input is one
/// (input, label) pair per label (`--test-limit` counts inputs).
fn test_rows_per_input(spec: &TaskSpec) -> Result<usize> {
    Ok(match &spec.multi_label {
        Some(ms) => ms.labels()?.names().len(),
        None => 1,
    })
}

/// How many of a test split's `test_len` rows a run scores: all, or the rows of the
/// first `--test-limit` inputs.
fn scored_rows(spec: &TaskSpec, test_len: usize, s: &Settings) -> Result<usize> {
    Ok(match s.test_limit {
        Some(n) => test_len.min(n.saturating_mul(test_rows_per_input(spec)?)),
        None => test_len,
    })
}

/// The test rows a run of `spec` and `seed` scores with settings `s` (a stored result's
/// `n_test` must be this): its test split as [`TaskSpec::read_test`] gives it, cut as
/// `run_one` cuts it.
pub fn expected_n_test(root: &Path, spec: &TaskSpec, seed: u64, s: &Settings) -> Result<usize> {
    let (train, dev) = (spec.read(root, seed, "train")?, spec.read(root, seed, "dev")?);
    let (test, _) = spec.read_test(root, seed, &[&train, &dev])?;
    scored_rows(spec, test.len(), s)
}

/// A device as `--device` names it ("cpu", "cuda:0").
fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cpu => "cpu".into(),
        tch::Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The template ensemble per task: for each seed where `prompt` and every auto-template
/// run are stored, the test metric of their averaged label logits, as mean (std) over
/// those seeds. Empty when no seed has them all.
pub fn ensemble_report(out: &Path, data: &Path, tasks: &[&TaskSpec], seeds: &[u64], settings: &Settings) -> Result<String> {
    let mut cells = Vec::new();
    for t in tasks {
        let mut v = Vec::new();
        for &seed in seeds {
            // The test set is read only for a seed whose members are all stored (each
            // result is checked against its row count).
            if !ENSEMBLE.iter().all(|&m| result_path(out, t.name, seed, m).is_file()) {
                continue;
            }
            let (mut test, _) = t.read_test(data, seed, &[&t.read(data, seed, "train")?, &t.read(data, seed, "dev")?])?;
            let n_test = scored_rows(t, test.len(), settings)?;
            test.truncate(n_test);
            let mut tables = Vec::new();
            for m in ENSEMBLE {
                // A member stored by an older version (another metric, another test
                // set) leaves its seed out, said so: it stopped the whole report, after
                // every run of the command was done.
                match stored(out, t.name, seed, m, settings, n_test) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("note: {} seed {seed} is left out of the template ensemble: {e}", t.name);
                        break;
                    }
                }
                let path = logits_path(out, t.name, seed, m);
                // A result without its logits (made before they were stored, or its file
                // removed) leaves the seed out of the ensemble, said so, not the report.
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        eprintln!("note: {} is missing: {} seed {seed} is left out of the template ensemble", path.display(), t.name);
                        break;
                    }
                    Err(e) => return Err(Error::io(&path, e)),
                };
                // A damaged one (not UTF-8, not the JSON stored) likewise, named with what
                // to do: an error here stopped every later report of the folder, after
                // the command's runs were done.
                match serde_json::from_slice::<Logits>(&bytes) {
                    Ok(l) => tables.push(l.test),
                    Err(e) => {
                        eprintln!(
                            "note: {} is not readable stored logits ({e}): {} seed {seed} is left out of the template ensemble \
                             (remove it and the result beside it to run that member again)",
                            path.display(),
                            t.name
                        );
                        break;
                    }
                }
            }
            if tables.len() < ENSEMBLE.len() {
                continue;
            }
            let gold = gold_labels(&test);
            let scores = match t.regression {
                Some(_) => t.scores(data, seed, "test")?.into_iter().take(gold.len()).collect(),
                None => Vec::new(),
            };
            v.push(100.0 * t.metric.score(&crate::metrics::mean_rows(&tables), &gold, &scores));
        }
        cells.push((t.name, v));
    }
    if cells.iter().all(|(_, v)| v.is_empty()) {
        return Ok(String::new());
    }
    let mut s = String::from("Template ensemble (prompt + prompt-auto-1..4, label logits averaged), mean (std) [seeds]:\n\n| |");
    for (name, _) in &cells {
        s += &format!(" {name} |");
    }
    s += "\n|---|";
    s += &"---|".repeat(cells.len());
    s += "\n| ensemble |";
    for (_, v) in &cells {
        if v.is_empty() {
            s += " - |";
        } else {
            s += &format!(" {} |", finite_cell(v));
        }
    }
    s.push('\n');
    Ok(s)
}

/// A table cell over runs' values: `mean (std) [k]` over the finite ones, a diverged
/// run's NaN left out and counted (`, d diverged`); `diverged (k of k)` when none is
/// finite.
fn finite_cell(v: &[f64]) -> String {
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let diverged = v.len() - finite.len();
    if finite.is_empty() {
        return format!("diverged ({diverged} of {})", v.len());
    }
    let (m, sd) = mean_std(&finite);
    let note = if diverged > 0 { format!(", {diverged} diverged") } else { String::new() };
    format!("{m:.1} ({sd:.1}) [{}]{note}", v.len())
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The markdown report: one row per method, one column per task, cells `mean (std)` of
/// the test metric in percent over the seeds done, with the seed count where a cell is
/// incomplete; the last column is the mean over the tasks complete for every method.
/// A diverged run (test metric NaN, stored as null) is left out of its cell's mean and
/// std and counted in the cell (`d of k diverged`; a cell of diverged runs only reads
/// `diverged (k of k)` and leaves its row without a mean); a note under the table says
/// so when there is one.
pub fn report(
    results: &[RunResult],
    tasks: &[&TaskSpec],
    methods: &[RunMethod],
    seeds: &[u64],
) -> String {
    let mut s = String::from("| method |");
    for t in tasks {
        match t.metric {
            Metric::Acc => s += &format!(" {} |", t.name),
            m => s += &format!(" {} ({}) |", t.name, m.name()),
        }
    }
    s += " mean |\n|---|";
    s += &"---|".repeat(tasks.len() + 1);
    s.push('\n');
    let mut any_diverged = false;
    for &m in methods {
        s += &format!("| {} |", m.name());
        let mut means = Vec::new();
        for t in tasks {
            let v: Vec<f64> = results
                .iter()
                .filter(|r| r.task == t.name && r.method == m)
                .map(|r| 100.0 * r.test)
                .collect();
            if v.is_empty() {
                s += " - |";
                continue;
            }
            let done = if v.len() == seeds.len() { String::new() } else { format!(" [{}/{}]", v.len(), seeds.len()) };
            let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            let diverged = v.len() - finite.len();
            any_diverged |= diverged > 0;
            if finite.is_empty() {
                s += &format!(" diverged ({diverged} of {}){done} |", v.len());
                continue;
            }
            let (mean, std) = mean_std(&finite);
            if v.len() == seeds.len() {
                means.push(mean);
            }
            let note = if diverged > 0 { format!(", {diverged} of {} diverged", v.len()) } else { String::new() };
            s += &format!(" {mean:.1} ({std:.1}){done}{note} |");
        }
        s += &if means.len() == tasks.len() {
            format!(" {:.1} |\n", means.iter().sum::<f64>() / means.len() as f64)
        } else {
            " - |\n".into()
        };
    }
    if any_diverged {
        s += "\nA diverged run (test metric NaN: its model's logits went NaN) is left out of its cell's mean (std) and \
              counted there; the mean column takes each task's mean over the runs that did not diverge, and has none \
              where a task's runs all diverged.\n";
    }
    s
}

/// A note naming the tasks whose test set was glue_pretrain's dev.json (their k-shot
/// folders have no test file; [`TaskSpec::test_from_pretrain`]): not the paper's test
/// sets. Empty when no result says so.
pub fn test_source_note(results: &[RunResult]) -> String {
    let mut tasks: Vec<&str> = Vec::new();
    for r in results {
        let pretrain = Path::new("glue_pretrain").join(&r.task).join("dev.json");
        // A result stored before the file was recorded read glue_pretrain for every task
        // that may fall back to it (the harness read no other test file then).
        let from_pretrain = match r.test_file.as_deref() {
            Some(f) => f.ends_with(&pretrain),
            None => task(&r.task).is_ok_and(|t| t.test_fallback),
        };
        if from_pretrain && !tasks.contains(&r.task.as_str()) {
            tasks.push(&r.task);
        }
    }
    if tasks.is_empty() {
        return String::new();
    }
    format!(
        "Test sets of {} (their k-shot folders have no test file): glue_pretrain/<TASK>/dev.json beside the k-shot folder, \
         less the pairs the seed's train and dev splits hold; not the paper's test sets (GLUE's dev sets).\n\n",
        tasks.join(", ")
    )
}

/// Temperature scaling fitted on the dev logits, and test ECE before and after it; a
/// temperature the dev set cannot back is flagged, by the rule the library applies one
/// by.
fn calibrate(dev: &[Vec<f32>], dev_gold: &[usize], test: &[Vec<f32>], gold: &[usize]) -> Calibration {
    let fit = crate::metrics::fit_calibration(dev, dev_gold);
    let (ece_before, ece_after) = ece_before_after(test, gold, fit.temperature, ECE_BINS);
    Calibration { temperature: fit.temperature, ece_before, ece_after, at_bound: !fit.applied }
}

/// The calibration table: per method, over every run with a model, the mean test ECE
/// (percent points, 10 bins) of the raw probabilities and after temperature scaling
/// fitted on dev, and the mean fitted temperature; the scaled means leave out the runs
/// whose fitted temperature the dev set cannot back ([`Calibration::at_bound`], counted
/// in their column).
pub fn calibration_report(results: &[RunResult], methods: &[RunMethod]) -> String {
    let mut s = String::from(
        "Calibration: test expected calibration error (10 bins, percent points), mean over the runs, \
         before and after temperature scaling fitted on dev. \"no fit\": runs whose dev set backs no temperature (the model gets \
         every dev example right or scores every one's class lowest, or the fit ended at its bound, 0.05 or 20), which the library would not \
         apply; the scaled ECE and the temperature are the means over the others. A diverged run (its ECE not a number) \
         is left out of every mean and counted in the runs column.\n\n\
         | method | runs | ECE | no fit | ECE scaled | temperature |\n|---|---|---|---|---|---|\n",
    );
    let mut any = false;
    for &m in methods {
        let c: Vec<&Calibration> = results.iter().filter(|r| r.method == m).filter_map(|r| r.calibration.as_ref()).collect();
        if c.is_empty() {
            continue;
        }
        any = true;
        let finite: Vec<&Calibration> = c.iter().copied().filter(|x| x.ece_before.is_finite()).collect();
        let fitted: Vec<&Calibration> = finite.iter().copied().filter(|x| !x.at_bound && x.ece_after.is_finite()).collect();
        let mean = |c: &[&Calibration], f: fn(&Calibration) -> f64| c.iter().map(|x| f(x)).sum::<f64>() / c.len() as f64;
        let scaled = if fitted.is_empty() {
            "- | -".to_string()
        } else {
            format!("{:.1} | {:.2}", 100.0 * mean(&fitted, |x| x.ece_after), mean(&fitted, |x| x.temperature))
        };
        let diverged = c.len() - finite.len();
        let runs = if diverged > 0 { format!("{} ({diverged} diverged)", c.len()) } else { c.len().to_string() };
        let before = if finite.is_empty() { "-".to_string() } else { format!("{:.1}", 100.0 * mean(&finite, |x| x.ece_before)) };
        s += &format!("| {} | {runs} | {before} | {} | {scaled} |\n", m.name(), finite.len() - fitted.len());
    }
    if any { s } else { String::new() }
}

/// The multi-label table: per method and multi-label task, the mean (std) macro-F1 in
/// percent over the seeds done [seeds] (the main table has the micro-F1). Empty when no
/// result is of a multi-label task. A diverged run (NaN, stored as null, its test score
/// too) is left out of its cell's mean and counted, as in the main table; a method that
/// makes no model (majority) has no row.
pub fn macro_f1_report(results: &[RunResult], methods: &[RunMethod]) -> String {
    let multi_label = |r: &&RunResult| r.macro_f1.is_some() || task(&r.task).is_ok_and(|t| t.multi_label.is_some());
    let mut tasks: Vec<&str> = Vec::new();
    for r in results.iter().filter(multi_label) {
        if !tasks.contains(&r.task.as_str()) {
            tasks.push(&r.task);
        }
    }
    if tasks.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nMulti-label: macro-F1 over the labels, mean (std) [seeds].\n\n| method |");
    for t in &tasks {
        s += &format!(" {t} |");
    }
    s += "\n|---|";
    s += &"---|".repeat(tasks.len());
    s.push('\n');
    for &m in methods {
        // A run without a macro-F1 is a diverged one (NaN, stored as null) where its test
        // score diverged too; otherwise it made no model to score (majority).
        let cells: Vec<Vec<f64>> = tasks
            .iter()
            .map(|t| {
                results
                    .iter()
                    .filter(|r| r.method == m && r.task == *t)
                    .filter_map(|r| r.macro_f1.or(r.test.is_nan().then_some(f64::NAN)))
                    .map(|v| 100.0 * v)
                    .collect()
            })
            .collect();
        if cells.iter().all(Vec::is_empty) {
            continue;
        }
        s += &format!("| {} |", m.name());
        for v in &cells {
            s += &if v.is_empty() { " - |".to_string() } else { format!(" {} |", finite_cell(v)) };
        }
        s.push('\n');
    }
    s
}

/// The subsample table of the methods with demonstrations (prompt-demos, in-context):
/// per task, mean (std) accuracy in percent over the seeds done with one fixed
/// demonstration set and with the average over many, on the same test inputs. Empty when
/// no result has a subsample.
pub fn subsample_report(results: &[RunResult], tasks: &[&TaskSpec]) -> String {
    let subs: Vec<(&RunResult, &SubsampleScore)> =
        results.iter().filter_map(|r| r.subsample.as_ref().map(|s| (r, s))).collect();
    let Some((first_run, first)) = subs.first() else {
        return String::new();
    };
    // The main table's reading: --demo-sets fixed sets (a folder's runs share the count).
    let fixed = first_run.settings.demo_sets;
    let mut s = format!(
        "Methods with demonstrations on a random subsample of up to {} test inputs per task (all of a smaller test set): \
         the main table's {} vs the average over {} sets, mean (std) [seeds].\n\n| method | sets |",
        subs.iter().map(|(_, x)| x.n).max().unwrap_or(first.n),
        if fixed == 1 { "one fixed demonstration set".to_string() } else { format!("{fixed} fixed demonstration sets averaged") },
        first.sets
    );
    for t in tasks {
        s += &format!(" {} |", t.name);
    }
    s += "\n|---|---|";
    s += &"---|".repeat(tasks.len());
    s.push('\n');
    let mut methods: Vec<RunMethod> = Vec::new();
    for (r, _) in &subs {
        if !methods.contains(&r.method) {
            methods.push(r.method);
        }
    }
    for m in methods {
        let rows: [(String, fn(&SubsampleScore) -> f64); 2] =
            [(fixed.to_string(), |x| x.one_set), (first.sets.to_string(), |x| x.all_sets)];
        for (name, pick) in rows {
            s += &format!("| {} | {name} |", m.name());
            for t in tasks {
                let v: Vec<f64> =
                    subs.iter().filter(|(r, _)| r.task == t.name && r.method == m).map(|(_, x)| 100.0 * pick(x)).collect();
                if v.is_empty() {
                    s += " - |";
                } else {
                    s += &format!(" {} |", finite_cell(&v));
                }
            }
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsamples_are_fixed_sorted_and_distinct() {
        let a = subsample(2000, 1000);
        assert_eq!(a, subsample(2000, 1000));
        assert_eq!(a.len(), 1000);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(*a.last().unwrap() < 2000);
        assert_eq!(subsample(500, 1000), (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }

    /// A classifier whose logits went NaN scores NaN (a diverged run), not 0 (its rows
    /// all wrong), and so does a multi-label one's macro-F1; finite logits score.
    #[test]
    fn a_diverged_model_scores_nan() {
        let sst2 = task("SST-2").unwrap();
        let ok = vec![vec![0.0, 1.0], vec![2.0, 0.0]];
        assert_eq!(model_scores(sst2, &ok, &[1, 0], &[]), (1.0, None));
        let nan = vec![vec![f32::NAN, f32::NAN], vec![2.0, 0.0]];
        assert!(model_scores(sst2, &nan, &[1, 0], &[]).0.is_nan());
        let cola = task("CoLA").unwrap();
        assert!(model_scores(cola, &[vec![f32::INFINITY, 0.0]], &[0], &[]).0.is_nan());
        let multi = task("trec-multi").unwrap();
        let (micro, macro_f1) = model_scores(multi, &nan, &[1, 0], &[]);
        assert!(micro.is_nan() && macro_f1.is_some_and(f64::is_nan));
    }

    #[test]
    fn full_data_dev_is_a_fixed_tenth_of_train() {
        let all: Vec<Example> = (0..50).map(|i| Example::single(format!("text {i}"), Some(i % 2))).collect();
        let (train, dev) = carve_dev(all.clone());
        assert_eq!((train.len(), dev.len()), (45, 5));
        assert_eq!(carve_dev(all.clone()).1, dev, "the same draw each time");
        assert!(dev.iter().all(|d| !train.contains(d)));
        let (big_train, big_dev) = carve_dev((0..20_000).map(|i| Example::single(format!("t{i}"), Some(0))).collect());
        assert_eq!((big_train.len(), big_dev.len()), (19_000, FULL_DATA_DEV));
    }

    /// A dev set of right answers and one tie: some rows are not right, so a temperature
    /// "fits", but the NLL falls all the way to the search's bound. The run is flagged
    /// by the rule by which the library refuses to apply it, not by the all-right rule
    /// alone.
    #[test]
    fn a_temperature_at_the_search_bound_is_flagged() {
        let dev = vec![vec![0.0, 2.0], vec![3.0, 0.0], vec![1.0, 1.0]];
        let c = calibrate(&dev, &[1, 0, 0], &dev, &[1, 0, 0]);
        assert!(!crate::metrics::no_temperature_fits(&dev, &[1, 0, 0]));
        assert!(c.temperature < 0.1 && c.at_bound, "{c:?}");
        let dev = vec![vec![0.0, 2.0], vec![3.0, 0.0], vec![0.0, 1.0]];
        let c = calibrate(&dev, &[1, 0, 0], &dev, &[1, 0, 0]);
        assert!(!c.at_bound && c.temperature > 0.05 && c.temperature < 20.0, "{c:?}");
    }

    /// A run whose dev set no temperature fits (every dev example right: the fit runs to
    /// its bound) is counted apart and left out of the scaled ECE and temperature means.
    #[test]
    fn calibration_means_leave_out_runs_no_temperature_fits() {
        let settings = Settings {
            model: "m".into(),
            plain_model: "m".into(),
            steps: 1,
            batch_size: 1,
            lr: 1e-5,
            eval_every: 1,
            max_len: 8,
            demo_max_len: 8,
            demo_sets: 1,
            test_limit: None,
            demo_subsample: 0,
            demo_subsample_sets: 0,
            full_data_steps: 1,
            anchor_repeats: 1,
            embed_lr: 1e-5,
            embed_iterations: 1,
            head_c: 1.0,
            word_anchor_scale: 1.0,
        };
        let run = |at_bound: bool, temperature: f64, ece_after: f64| RunResult {
            task: "SST-2".into(),
            seed: 13,
            method: RunMethod::Plain,
            metric: "acc".into(),
            test: 0.8,
            dev: Some(1.0),
            best_step: Some(1),
            n_test: 10,
            test_dropped: 0,
            seconds: 1.0,
            subsample: None,
            calibration: Some(Calibration { temperature, ece_before: 0.10, ece_after, at_bound }),
            macro_f1: None,
            full_data: None,
            scorer: None,
            anchors: Vec::new(),
            device: None,
            test_file: None,
            cls_head: Some(CLS_HEAD.into()),
            settings: settings.clone(),
        };
        let report = calibration_report(&[run(false, 2.0, 0.04), run(true, 0.05, 0.30)], &[RunMethod::Plain]);
        assert!(report.contains("| plain | 2 | 10.0 | 1 | 4.0 | 2.00 |"), "{report}");
        let report = calibration_report(&[run(true, 0.05, 0.30)], &[RunMethod::Plain]);
        assert!(report.contains("| plain | 1 | 10.0 | 1 | - | - |"), "{report}");
        // A diverged run (NaN ECEs, stored as null) is left out of every mean: the row
        // read NaN throughout.
        let mut nan = run(false, 1.0, f64::NAN);
        nan.calibration.as_mut().unwrap().ece_before = f64::NAN;
        let report = calibration_report(&[run(false, 2.0, 0.04), nan], &[RunMethod::Plain]);
        assert!(report.contains("| plain | 2 (1 diverged) | 10.0 | 0 | 4.0 | 2.00 |"), "{report}");
        assert_eq!(finite_cell(&[70.0, f64::NAN, 72.0]), "71.0 (1.4) [3], 1 diverged");
        assert_eq!(finite_cell(&[f64::NAN]), "diverged (1 of 1)");
    }

    /// A diverged run's NaN scores and logits are stored as null and read back as NaN:
    /// the folder stays readable (it used to fail to parse on every later command).
    #[test]
    fn non_finite_numbers_round_trip_through_json() {
        let c = Calibration { temperature: 1.5, ece_before: f64::NAN, ece_after: f64::INFINITY, at_bound: false };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"temperature":1.5,"ece_before":null,"ece_after":null,"at_bound":false}"#);
        let back: Calibration = serde_json::from_str(&text).unwrap();
        assert!(back.temperature == 1.5 && back.ece_before.is_nan() && back.ece_after.is_nan() && !back.at_bound);
        // A result stored before `at_bound` existed reads as fitted.
        let old: Calibration = serde_json::from_str(r#"{"temperature":1.5,"ece_before":0.1,"ece_after":0.05}"#).unwrap();
        assert!(!old.at_bound);
        let l = Logits { dev: vec![vec![0.5, f32::NAN]], test: vec![] };
        let back: Logits = serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(back.dev[0][0], 0.5);
        assert!(back.dev[0][1].is_nan());
    }
}
