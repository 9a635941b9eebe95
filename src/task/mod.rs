//! A labelling task: what a host registers before training. The label set with its label
//! words, the template, the model directory and truncation, the labelled examples (text or
//! text pair, label; each with a stable id) and the unlabeled texts (for adaptation and
//! demonstrations). It persists to a directory (`task.json`, written atomically) and
//! reopens with everything registered; trained model versions live beside it, under
//! `models/<version>/` (see `train`, training builds only). Registration needs no libtorch.

#[cfg(feature = "train")]
mod train;
#[cfg(feature = "train")]
pub use train::{
    cancel_saved, choose_method, delete_version, export_version, pin_warm_start, train, train_when_free, versions, DemoFilterEncoder, RunParams, TrainMethod,
    WarmPin,
    TEMPERATURE_AT_BOUND, ZERO_SHOT_ALPHA,
};

/// The sentence-embedding method's default cap on its contrastive steps: SetFit's
/// schedule (2.5 steps per example and anchor copy) up to 800 of those, then 32,000 pairs
/// drawn from it, so that a task grown to thousands of labels trains in minutes on a
/// GPU and in about an hour on a CPU core (1.6 s a step of SST-2's sentences on our
/// 2-core VM) instead of many hours (10,000 examples: 25,000 steps).
pub const DEFAULT_EMBEDDING_MAX_STEPS: usize = 2000;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{fnv1a, sync_dir, write_file_atomic, DirLock, FNV_OFFSET};
use crate::prompt::{Prompt, Template, Truncation, Verbalizer};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

pub const TASK_FILE: &str = "task.json";
pub const TASK_FORMAT: &str = "lmbff-task";
/// Readers accept this version and older ones; fields are only ever added. Version 2
/// added multi-label tasks (`multi_label`, `label_set`), regression tasks (`regression`,
/// `score`) and dev examples (`dev`); version 3 `truncation.demonstrations_first: false`
/// (see [`task_truncation`]). A task is written with the lowest version that holds it,
/// so that an older reader either keeps all of it or refuses it, never drops a part.
pub const TASK_FORMAT_VERSION: u32 = 3;

/// Separates the labels of a multi-label example in `add_example` / `relabel`.
pub const LABEL_SEPARATOR: char = '|';

/// What the task is: labels, their words, template, model, lengths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// HF model directory training starts from.
    pub model_dir: PathBuf,
    /// Template in either syntax (`{text} It was {mask}.`).
    pub template: String,
    /// Class names, in class order.
    pub labels: Vec<String>,
    /// One label word per class (multi-label: the two answer words, no then yes).
    pub label_words: Vec<String>,
    #[serde(with = "task_truncation")]
    pub truncation: Truncation,
    /// Multi-label: any number of `labels` may apply to an example. It trains as one
    /// yes/no prompt per label (docs/methods.md): the template reads the example as its
    /// first sentence and the label's name as its second.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multi_label: bool,
    /// Regression over [low, high] (LM-BFF's STS-B): `labels` and `label_words` are the
    /// lower and the upper pole; an example's label is a number in the range, and the
    /// model's score is `low + (high - low) * p(upper pole)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<(f32, f32)>,
}

/// A registered input: labelled (`label` is a class index) or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: u64,
    pub text_a: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_b: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<usize>,
    /// A multi-label task's example: the labels that apply (possibly none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_set: Option<Vec<usize>>,
    /// A regression task's example: its score (`label` is then its side of the range's
    /// midpoint: 0 lower pole, 1 upper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// A dev example: held out of training, it picks the kept weights and fits the
    /// calibration temperature.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dev: bool,
}

impl Item {
    /// Whether the item is a labelled example.
    pub fn is_labelled(&self) -> bool {
        self.label.is_some() || self.label_set.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TaskFile {
    format: String,
    format_version: u32,
    lmbff_version: String,
    spec: TaskSpec,
    next_id: u64,
    items: Vec<Item>,
}

#[derive(Debug, Clone)]
pub struct Task {
    spec: TaskSpec,
    items: BTreeMap<u64, Item>,
    next_id: u64,
    /// Where the task was last saved or opened from (its model versions live there).
    dir: Option<PathBuf>,
    /// Every folder this handle opened or saved, with the hash of its task.json as this
    /// handle last read or wrote it there: a save back to one of them finds out whether
    /// another writer saved since (a backup copy saved elsewhere in between keeps the
    /// first folder the handle's own).
    seen: Vec<(PathBuf, u64)>,
}

impl PartialEq for Task {
    fn eq(&self, other: &Self) -> bool {
        (&self.spec, &self.items, self.next_id) == (&other.spec, &other.items, other.next_id)
    }
}

/// A task records its model folder as text: one whose path is not UTF-8 is refused by
/// name (saving it failed as an internal error).
fn utf8_model_dir(dir: &Path) -> Result<()> {
    match dir.to_str() {
        Some(_) => Ok(()),
        None => Err(Error::InvalidArgument(format!(
            "model folder {}: its path is not valid UTF-8, and a task records it as text (task.json): rename or link it",
            dir.display()
        ))),
    }
}

/// `dir` with its longest existing start resolved (links and `..` followed) and the rest,
/// not there yet, appended as written.
/// The digits of a version's name (`v12` gives `12`), None for any other name.
pub(crate) fn version_digits(v: &str) -> Option<&str> {
    v.strip_prefix('v').filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn resolved(dir: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Ok(absolute),
        }
    }
    let mut out = std::fs::canonicalize(existing).map_err(|e| Error::io(existing, e))?;
    out.extend(rest.iter().rev());
    Ok(out)
}

impl Task {
    /// A new, empty task. The template and label words are checked against the model's
    /// tokenizer now, so a mistake shows at registration, not at training.
    pub fn new(mut spec: TaskSpec) -> Result<Self> {
        utf8_model_dir(&spec.model_dir)?;
        // Space around a new task's template (a config file's newline) is no text of it:
        // a byte-level vocabulary read it as tokens before [CLS] and after the last
        // [SEP]. (A saved task keeps its own, as its versions were trained with it.)
        spec.template = spec.template.trim().to_string();
        spec.prompt()?;
        Ok(Task { spec, items: BTreeMap::new(), next_id: 1, dir: None, seen: Vec::new() })
    }

    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// The directory the task was last saved to or opened from, absolute (as the
    /// current directory was then).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Takes the task's folder and its model folder, where relative, against the current
    /// directory (a training run fixes them so when it starts).
    #[cfg(feature = "train")]
    pub(crate) fn make_paths_absolute(&mut self) {
        self.dir = self.dir.as_deref().map(crate::absolute);
        self.spec.model_dir = crate::absolute(&self.spec.model_dir);
    }

    /// Registers a labelled example; returns its id. In a multi-label task `label` lists
    /// the labels that apply, separated by `|` (empty: none applies), and examples are
    /// single texts.
    pub fn add_example(&mut self, text_a: &str, text_b: Option<&str>, label: &str) -> Result<u64> {
        let (label, label_set, score) = self.parse_label(label)?;
        let id = self.push(text_a, text_b, label, label_set)?;
        if let Some(item) = self.items.get_mut(&id) {
            item.score = score;
        }
        Ok(id)
    }

    /// Registers an unlabeled text; returns its id.
    pub fn add_unlabeled(&mut self, text_a: &str, text_b: Option<&str>) -> Result<u64> {
        self.push(text_a, text_b, None, None)
    }

    /// Ids are never reused: a task whose ids ran out (only a hand-edited `next_id` gets
    /// there) refuses new items rather than overwrite one.
    /// An item's second text is there exactly when the task reads pairs: a missing one
    /// would fail at training, and one the template never reads would be left out of
    /// training and prediction (only masked-LM adaptation would read it, as more
    /// unlabeled text, which is what `add_unlabeled` is for).
    fn push(&mut self, text_a: &str, text_b: Option<&str>, label: Option<usize>, label_set: Option<Vec<usize>>) -> Result<u64> {
        if self.spec.multi_label {
            if text_b.is_some() {
                return Err(Error::InvalidArgument("a multi-label task's items are single texts (its template's second sentence is the label's name): pass no text_b".into()));
            }
        } else {
            self.second_sentence_fits(text_b.is_some()).map_err(|why| Error::InvalidArgument(format!("{why}: pass one that does")))?;
        }
        let id = self.next_id;
        self.next_id = id.checked_add(1).ok_or_else(|| {
            Error::InvalidArgument(format!("the task has given out every item id (next_id {id}): ids are never reused, so it takes no new item"))
        })?;
        self.items.insert(id, Item { id, text_a: text_a.to_string(), text_b: text_b.map(str::to_string), label, label_set, score: None, dev: false });
        Ok(id)
    }

    /// Whether an item with (or without) a second sentence is one a single-label task's
    /// template reads: `Err` says why not.
    fn second_sentence_fits(&self, has_text_b: bool) -> std::result::Result<(), String> {
        match (Template::parse(&self.spec.template).map_err(|e| e.to_string())?.num_sentences(), has_text_b) {
            (2, false) => Err(format!("this task's template {:?} reads two sentences and the item has no second (text_b)", self.spec.template)),
            (1, true) => Err(format!(
                "this task's template {:?} reads one sentence, so the item's second (text_b) would be ignored (more text goes in as its own unlabeled item)",
                self.spec.template
            )),
            _ => Ok(()),
        }
    }

    /// A class, a multi-label task's set of labels (`a|b`, or empty for none), or a
    /// regression task's score (with its side as the class).
    fn parse_label(&self, label: &str) -> Result<(Option<usize>, Option<Vec<usize>>, Option<f32>)> {
        if let Some((low, high)) = self.spec.regression {
            let v: f32 = label.trim().parse().ok().filter(|v: &f32| (low..=high).contains(v)).ok_or_else(|| {
                Error::InvalidArgument(format!("label {label:?}: a regression task's label is a number from {low} to {high}"))
            })?;
            return Ok((Some(usize::from(v > (low + high) / 2.0)), None, Some(v)));
        }
        if !self.spec.multi_label {
            return Ok((Some(self.label_index(label)?), None, None));
        }
        let mut set: Vec<usize> = if label.is_empty() { Vec::new() } else { label.split(LABEL_SEPARATOR).map(|l| self.label_index(l)).collect::<Result<_>>()? };
        set.sort_unstable();
        set.dedup();
        Ok((None, Some(set), None))
    }

    /// Removes an example or unlabeled text.
    pub fn remove(&mut self, id: u64) -> Result<()> {
        self.items.remove(&id).map(|_| ()).ok_or_else(|| unknown(id))
    }

    /// Gives item `id` a label (or a new one); an unlabeled text becomes an example.
    pub fn relabel(&mut self, id: u64, label: &str) -> Result<()> {
        let (label, label_set, score) = self.parse_label(label)?;
        let has_text_b = self.items.get(&id).ok_or_else(|| unknown(id))?.text_b.is_some();
        if self.spec.multi_label && has_text_b {
            return Err(Error::InvalidArgument(format!("item {id} is a text pair: a multi-label task's examples are single texts")));
        }
        // As add_example asks: an unlabeled text kept from an older lmbff (a pair under a
        // one-sentence template) or a single text under a pair template is no example.
        if !self.spec.multi_label {
            self.second_sentence_fits(has_text_b).map_err(|why| Error::InvalidArgument(format!("item {id} cannot be an example: {why}")))?;
        }
        let item = self.items.get_mut(&id).ok_or_else(|| unknown(id))?;
        (item.label, item.label_set, item.score) = (label, label_set, score);
        Ok(())
    }

    /// Marks labelled example `id` as a dev example (held out of training; it selects the
    /// kept weights and fits the calibration temperature), or back as a training one.
    pub fn set_dev(&mut self, id: u64, dev: bool) -> Result<()> {
        let item = self.items.get_mut(&id).ok_or_else(|| unknown(id))?;
        if dev && !item.is_labelled() {
            return Err(Error::InvalidArgument(format!("item {id} has no label: only labelled examples can be dev examples")));
        }
        item.dev = dev;
        Ok(())
    }

    /// Dev examples.
    pub fn num_dev(&self) -> usize {
        self.items.values().filter(|i| i.dev).count()
    }

    pub fn item(&self, id: u64) -> Option<&Item> {
        self.items.get(&id)
    }

    /// Labelled training examples per class (dev examples not counted), in class order
    /// (multi-label: the examples each label applies to).
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.spec.labels.len()];
        for i in self.items.values().filter(|i| !i.dev) {
            for &l in i.label.iter().chain(i.label_set.iter().flatten()) {
                c[l] += 1;
            }
        }
        c
    }

    /// Labelled examples (a multi-label example counts once, whatever applies to it).
    pub fn num_examples(&self) -> usize {
        self.items.values().filter(|i| i.is_labelled()).count()
    }

    pub fn num_unlabeled(&self) -> usize {
        self.items.values().filter(|i| !i.is_labelled()).count()
    }

    /// All items in id order.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    fn label_index(&self, label: &str) -> Result<usize> {
        self.spec.labels.iter().position(|l| l == label).ok_or_else(|| {
            Error::InvalidArgument(format!("unknown label {label:?}: the task's labels are {:?}", self.spec.labels))
        })
    }

    /// Writes `task.json` into `dir` (created if needed), atomically and durably: a
    /// temporary file, synced, renamed over the old one, and the folder synced. Model
    /// versions in `dir` are kept.
    ///
    /// Nothing is overwritten that this handle has not seen. Writers of one folder take
    /// its lock ([`DirLock`]) in turn, and a save is refused:
    /// - with `Conflict` when the folder's task.json is no longer what this handle opened
    ///   or last saved there (another handle or process saved since: reopen the task and
    ///   apply the change again);
    /// - with `InvalidArgument` when `dir` holds a task this handle neither opened nor
    ///   saved (another task's examples). Any folder it opened or saved stays its own: a
    ///   backup copy saved elsewhere does not stop a later save back.
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        check_dir_path(dir)?;
        let file = TaskFile {
            format: TASK_FORMAT.into(),
            format_version: if !self.spec.truncation.demonstrations_first {
                3
            } else if self.spec.multi_label || self.spec.regression.is_some() || self.items.values().any(|i| i.dev) {
                2
            } else {
                1
            },
            lmbff_version: crate::VERSION.into(),
            spec: self.spec.clone(),
            next_id: self.next_id,
            items: self.items.values().cloned().collect(),
        };
        // (The model folder is made absolute against a current directory that may not be
        // UTF-8; it is the one path the file records.)
        utf8_model_dir(&file.spec.model_dir)?;
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::Internal(format!("the task does not serialise: {e}")))?;
        // An export's, a model's or an adaptation's folder is replaced whole when it is
        // written again: a task saved there, or in a folder inside it, would go with it.
        // (A folder holding a task already, saved before this check, is kept by those
        // writes: it may be saved again.) The path is resolved as far as it exists, so
        // that `..` and links name the folder the task goes to.
        if !dir.join(TASK_FILE).is_file() {
            let absolute = resolved(dir)?;
            let markers = [crate::export::EXPORT_MANIFEST, crate::checkpoint::MANIFEST_FILE, crate::checkpoint::ADAPTATION_FILE];
            let inside = absolute.ancestors().flat_map(|a| markers.map(|m| (a, m))).find(|(a, m)| a.join(m).exists());
            if let Some((at, marker)) = inside {
                return Err(Error::InvalidArgument(format!(
                    "{} {} a model or an export ({marker}), which lmbff replaces whole when it writes it again: save the \
                     task to a folder of its own",
                    dir.display(),
                    if at == absolute { "holds".to_string() } else { format!("is inside {}, which holds", at.display()) }
                )));
            }
        }
        // New folders' entries in their parents, so a saved task survives a power loss.
        crate::checkpoint::create_dir_all_synced(dir)?;
        let lock = DirLock::exclusive(dir)?;
        // task.json's temporary files a save killed half-way left (their process gone,
        // left an hour).
        crate::checkpoint::remove_stale_temps_in(dir, crate::checkpoint::Owner::Shared(&[TASK_FILE]));
        let path = dir.join(TASK_FILE);
        let known = self.seen.iter().position(|(d, _)| same_dir(d, dir));
        match std::fs::read(&path) {
            Ok(current) => {
                let Some(&(_, last)) = known.map(|i| &self.seen[i]) else {
                    return Err(Error::InvalidArgument(format!(
                        "{} already holds a task (task.json) that this handle neither opened nor saved: saving would \
                         replace its examples; choose a new or empty folder, or open that task",
                        dir.display()
                    )));
                };
                if last != fnv1a(&current, FNV_OFFSET) {
                    return Err(Error::Conflict(format!(
                        "{} was saved by another handle or process since this one opened or last saved it; nothing was \
                         written: reopen the task and apply the change again",
                        path.display()
                    )));
                }
            }
            // No task.json: versions left in models/ (a task.json removed to start over, a
            // removal stopped half-way) belong to another task, and this one would list,
            // export and warm-start from them as its own, under its labels. Its own
            // folder (opened or saved by this handle) is this task's still.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let models = dir.join("models");
                let versions: Vec<String> = match std::fs::read_dir(&models) {
                    Ok(d) => d
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| version_digits(n).is_some() && models.join(n).join(crate::checkpoint::MANIFEST_FILE).is_file())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                if known.is_none() && !versions.is_empty() {
                    let mut named = versions;
                    named.sort();
                    return Err(Error::InvalidArgument(format!(
                        "{} holds model versions of a task whose task.json is gone ({}): this task would take them as its \
                         own; choose a new or empty folder, or move that models folder away first",
                        models.display(),
                        named.join(", ")
                    )));
                }
            }
            Err(e) => return Err(Error::io(&path, e)),
        }
        write_file_atomic(&path, &bytes)?;
        let hash = fnv1a(&bytes, FNV_OFFSET);
        match known {
            Some(i) => self.seen[i].1 = hash,
            None => self.seen.push((crate::absolute(dir), hash)),
        }
        // Versions follow the folder last saved to: say so when that leaves versions behind
        // (a backup copy saved elsewhere; save back to the first folder to train there).
        // Entries named with a leading dot are not versions: deleted versions' tombstones
        // and half-written ones.
        let left_behind = self.dir.as_ref().filter(|old| !same_dir(old, dir)).filter(|old| {
            let holds_version = |d: std::fs::ReadDir| d.flatten().any(|e| !e.file_name().to_string_lossy().starts_with('.'));
            std::fs::read_dir(old.join("models")).is_ok_and(holds_version)
        });
        let warning = left_behind.map(|old| {
            let (old, new) = (old.display().to_string(), dir.display().to_string());
            format!("the task's model versions now follow {new}: those in {old} (its models/) are not this handle's versions until it saves to {old} again")
        });
        // Absolute: the versions calls (list, delete, export) read it later, and the host
        // may change directory meanwhile (a relative one then named another task's).
        self.dir = Some(crate::absolute(dir));
        let synced = sync_dir(dir);
        // Logged with the folder's lock released: the host's callback may call lmbff, a
        // save to this folder included (flock would block it on this very thread).
        drop(lock);
        if let Some(w) = warning {
            crate::log::log(crate::log::Level::Warn, || w);
        }
        synced
    }

    /// Reopens a task saved by [`save`](Self::save) (this version or an older one). The
    /// saved settings are checked as [`new`](Self::new) checks them, and every item
    /// against them: a file that does not hold is a `Format` error naming the problem.
    pub fn open(dir: &Path) -> Result<Self> {
        check_dir_path(dir)?;
        let (f, text): (TaskFile, String) = crate::checkpoint::read_versioned_text(dir, TASK_FILE, TASK_FORMAT, TASK_FORMAT_VERSION, "task")?;
        let path = dir.join(TASK_FILE);
        let format = |message: String| Error::Format { path: path.clone(), message };
        let template = f.spec.check_settings().map_err(|e| format(format!("the task's settings do not hold: {e}")))?;
        let n = f.spec.labels.len();
        // Examples whose second sentence does not fit the template, which add_example
        // refuses today, an older lmbff saved: the file still opens (nothing else reads
        // them), and the host hears which, before training ignores or refuses them.
        let pairs = template.num_sentences() == 2;
        let unfit: Vec<u64> =
            f.items.iter().filter(|i| i.is_labelled() && !f.spec.multi_label && i.text_b.is_some() != pairs).map(|i| i.id).collect();
        if let Some(first) = unfit.first() {
            crate::log::log(crate::log::Level::Warn, || {
                format!(
                    "task {}: {} example(s) (the first: item {first}) {} a second sentence (text_b) and the template {:?} reads {}: {}; \
                     remove them, or add them again as the template reads",
                    dir.display(),
                    unfit.len(),
                    if pairs { "have no" } else { "have" },
                    f.spec.template,
                    if pairs { "two" } else { "one" },
                    if pairs { "training refuses them" } else { "training ignores their second sentence" }
                )
            });
        }
        let bad_score = |i: &Item| match (f.spec.regression, i.score) {
            (Some((low, high)), Some(v)) => !(low..=high).contains(&v),
            (Some(_), None) => i.label.is_some(),
            (None, Some(_)) => true,
            (None, None) => false,
        };
        let bad_label = |i: &Item| {
            i.label.is_some_and(|l| l >= n || f.spec.multi_label)
                || i.label_set.as_ref().is_some_and(|s| !f.spec.multi_label || s.iter().any(|&l| l >= n))
                || (i.dev && !i.is_labelled())
        };
        if let Some(bad) = f.items.iter().find(|i| bad_label(i) || bad_score(i)) {
            return Err(format(format!("item {} is inconsistent with the task's labels", bad.id)));
        }
        if let Some(bad) = f.items.iter().find(|i| i.id >= f.next_id) {
            return Err(format(format!("item {} is not below next_id {}", bad.id, f.next_id)));
        }
        let mut items: BTreeMap<u64, Item> = BTreeMap::new();
        for item in f.items {
            let id = item.id;
            if items.insert(id, item).is_some() {
                return Err(format(format!("two items have id {id}: ids are unique")));
            }
        }
        // A moved model folder still lets the task be read, listed and edited; training
        // needs it back, so the host hears about it now rather than at the next train.
        if !f.spec.model_dir.join("config.json").is_file() {
            crate::log::log(crate::log::Level::Warn, || {
                format!("task {} opened, but its model folder {} has no config.json: training fails until the model is back there", dir.display(), f.spec.model_dir.display())
            });
        }
        Ok(Task { spec: f.spec, items, next_id: f.next_id, dir: Some(crate::absolute(dir)), seen: vec![(crate::absolute(dir), fnv1a(text.as_bytes(), FNV_OFFSET))] })
    }
}

impl TaskSpec {
    /// What can be checked without the model (a reopened task's model may have moved):
    /// `max_len` at least 4; a multi-label task's names and its two answer words, a
    /// single-label task's two or more labels with one word each and its sound regression
    /// range; the template, which it returns (a multi-label one reading two sentences).
    fn check_settings(&self) -> Result<Template> {
        if self.truncation.max_len < 4 {
            return Err(Error::InvalidArgument(format!("max_len {} is too small", self.truncation.max_len)));
        }
        if self.multi_label {
            if self.regression.is_some() {
                return Err(Error::InvalidArgument("a task is multi-label or regression, not both".into()));
            }
            crate::prompt::MultiLabel::new(&self.labels)?;
            if let Some(bad) = self.labels.iter().find(|l| l.contains(LABEL_SEPARATOR)) {
                return Err(Error::InvalidArgument(format!("multi-label name {bad:?} contains {LABEL_SEPARATOR:?}, which separates an example's labels")));
            }
            if self.label_words.len() != 2 {
                return Err(Error::InvalidArgument(format!(
                    "a multi-label task takes two answer words, no then yes (such as No, Yes); got {}",
                    self.label_words.len()
                )));
            }
        } else {
            if let Some((low, high)) = self.regression {
                if !(crate::export::RegressionRange { low, high }).is_valid() || self.labels.len() != 2 {
                    return Err(Error::InvalidArgument(format!(
                        "a regression task needs a finite range low < high, its span finite too ({low}..{high}) and two labels with their words, the lower pole then the upper ({} labels)",
                        self.labels.len()
                    )));
                }
            }
            if self.labels.len() < 2 {
                return Err(Error::InvalidArgument(format!("a task needs at least two labels, got {}", self.labels.len())));
            }
            // (Verbalizer::new says so too, with the model; a reopened task is checked here.)
            if let Some((_, l)) = self.labels.iter().enumerate().find(|(i, l)| self.labels[..*i].contains(l)) {
                return Err(Error::InvalidArgument(format!("label {l:?} is listed twice: labels must differ")));
            }
            if self.labels.len() != self.label_words.len() {
                return Err(Error::InvalidArgument(format!(
                    "{} labels but {} label words: give one word per label",
                    self.labels.len(),
                    self.label_words.len()
                )));
            }
        }
        let template = Template::parse(&self.template)?;
        if self.multi_label && template.num_sentences() != 2 {
            return Err(Error::InvalidArgument(format!(
                "a multi-label template reads the example and the label's name (`{{text_a}} Is it about {{text_b}}? {{mask}}.`); {:?} reads {} sentence(s)",
                self.template,
                template.num_sentences()
            )));
        }
        Ok(template)
    }

    /// The prompt this task trains with: the settings ([`check_settings`]), the label
    /// words against the model's tokenizer, in a build that trains `max_len` against the
    /// model's positions, and room for the input beside the template's own text within
    /// `max_len`. A multi-label task's prompt is yes/no (classes "no" and "yes" with the
    /// two answer words), its template reading (example, label name).
    pub fn prompt(&self) -> Result<Prompt> {
        let template = self.check_settings()?;
        #[cfg(feature = "train")]
        {
            let (config, _) = crate::model::Config::from_dir(&self.model_dir)?;
            if i64::try_from(self.truncation.max_len).map_or(true, |m| m > config.max_input_len()) {
                return Err(Error::InvalidArgument(format!(
                    "max_len {} is longer than the model's {} positions",
                    self.truncation.max_len,
                    config.max_input_len()
                )));
            }
        }
        let tok = Tokenizer::from_dir(&self.model_dir)?;
        let pairs: Vec<(String, String)> = if self.multi_label {
            vec![("no".to_string(), self.label_words[0].clone()), ("yes".to_string(), self.label_words[1].clone())]
        } else {
            self.labels.iter().cloned().zip(self.label_words.iter().cloned()).collect()
        };
        let prompt = Prompt::new(template, Verbalizer::new(&tok, &pairs)?, self.truncation)?;
        let empty = crate::prompt::Example {
            text_a: String::new(),
            text_b: (prompt.template.num_sentences() == 2).then(String::new),
            label: None,
        };
        prompt.encode(&tok, &empty)?;
        for warning in prompt.warnings(&tok)? {
            crate::log::log(crate::log::Level::Warn, || warning);
        }
        Ok(prompt)
    }

    /// The multi-label names, for a multi-label task.
    pub fn multi_labels(&self) -> Option<crate::prompt::MultiLabel> {
        self.multi_label.then(|| crate::prompt::MultiLabel::new(&self.labels).ok()).flatten()
    }
}

/// An empty path would mean the process's working directory: refused, by name.
/// Whether two paths name the same folder (either may be relative or reach it through
/// a link).
/// A task's `truncation` in task.json. Its `demonstrations_first` is written only when
/// false, and a file without it reads as true, the rule every task the library makes
/// has: an older lmbff, which knows no such field, drops it when it saves a task, and
/// the task must come back with the rule it had. A task holding false is written at
/// format version 3, which older readers refuse instead of dropping the field. (Tasks
/// saved before the field existed read as true too, and train with demonstrations cut
/// first from now on; their trained versions keep the rule they were trained with,
/// which each version's own manifest records.)
mod task_truncation {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::prompt::Truncation;

    #[derive(Serialize, Deserialize)]
    struct InTask {
        max_len: usize,
        first_sent_limit: Option<usize>,
        other_sent_limit: Option<usize>,
        #[serde(default = "yes", skip_serializing_if = "is_yes")]
        demonstrations_first: bool,
    }

    fn yes() -> bool {
        true
    }

    fn is_yes(b: &bool) -> bool {
        *b
    }

    pub fn serialize<S: Serializer>(t: &Truncation, s: S) -> Result<S::Ok, S::Error> {
        InTask { max_len: t.max_len, first_sent_limit: t.first_sent_limit, other_sent_limit: t.other_sent_limit, demonstrations_first: t.demonstrations_first }
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Truncation, D::Error> {
        let t = InTask::deserialize(d)?;
        Ok(Truncation { max_len: t.max_len, first_sent_limit: t.first_sent_limit, other_sent_limit: t.other_sent_limit, demonstrations_first: t.demonstrations_first })
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn check_dir_path(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Err(Error::InvalidArgument("the task's folder is an empty path: give a folder".into()));
    }
    Ok(())
}

fn unknown(id: u64) -> Error {
    Error::InvalidArgument(format!("no item with id {id} in the task"))
}
