//! Training a task into a model version: snapshot the registered examples, optionally
//! adapt the model on the task's texts (masked LM), prompt-fine-tune, and save the result
//! as `<task dir>/models/v<N>/` (an HF model directory with its lmbff.json, written
//! atomically). Versions can warm-start later runs, be exported and be deleted.

use std::path::{Path, PathBuf};

use super::{version_digits, Task};
use crate::checkpoint::{write_new_dir, Manifest, METHOD_EMBEDDING, METHOD_PROMPT};
use crate::export::{export_checkpoint, ExportOptions};
use crate::model::{parse_device, MaskedLm};
use crate::prompt::{gold_labels, Example, Prompt, Template};
use crate::tokenize::Tokenizer;
use crate::train::{self, AdaptParams, EmbedParams, Head, Method, ProgressFn, TrainParams};
use crate::{Error, Result};

/// Settings of one training run.
#[derive(Debug, Clone)]
pub struct RunParams {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// cpu, cuda, cuda:N or auto.
    pub device: String,
    /// Masked-LM adaptation steps on the task's texts before fine-tuning (0: none).
    pub adaptation_steps: usize,
    /// A version of this task to start from instead of the task's model.
    pub warm_start: Option<String>,
    /// Append demonstrations (one labelled example per class) to every input.
    pub demonstrations: bool,
    /// Demonstration sets the model predicts with (logits averaged); each costs one
    /// forward pass per input.
    pub demo_sets: usize,
    /// Similarity-filtered demonstrations: the sentence encoder that picks each input's
    /// demonstrations from the most similar half of each class.
    pub demo_filter: Option<DemoFilterEncoder>,
    /// Which method trains the model; `Auto` decides by [`choose_method`].
    pub method: TrainMethod,
    /// Fit temperature scaling on the dev examples (`Task::set_dev`) so that exported
    /// probabilities match accuracy; needs dev examples.
    pub calibrate: bool,
    /// The sentence-embedding method's label anchors (`train::EmbedParams::anchor_repeats`;
    /// default on).
    pub label_anchors: bool,
    /// Further templates whose texts are label anchors too (`EmbedParams::anchor_templates`):
    /// more phrasings of the prompt, in either template syntax. Single-sentence tasks
    /// only; other methods ignore them.
    pub anchor_templates: Vec<String>,
    /// At most this many contrastive steps of the sentence-embedding method
    /// ([`super::DEFAULT_EMBEDDING_MAX_STEPS`]; 0: SetFit's whole schedule, 2.5 steps per
    /// example, however many examples there are).
    pub embedding_max_steps: usize,
}

impl Default for RunParams {
    fn default() -> Self {
        RunParams {
            steps: 300,
            batch_size: 8,
            lr: 2e-5,
            seed: 42,
            device: "auto".into(),
            adaptation_steps: 0,
            warm_start: None,
            demonstrations: false,
            demo_sets: 1,
            demo_filter: None,
            method: TrainMethod::Auto,
            calibrate: false,
            label_anchors: true,
            anchor_templates: Vec::new(),
            embedding_max_steps: super::DEFAULT_EMBEDDING_MAX_STEPS,
        }
    }
}

/// The sentence encoder of similarity-filtered demonstrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoFilterEncoder {
    /// The task's model as registered (not a warm-start version): mean-pooled embeddings.
    TaskModel,
    /// An HF model directory.
    Dir(PathBuf),
}

/// The training methods of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainMethod {
    /// Decide from the model and the examples ([`choose_method`]).
    Auto,
    /// LM-BFF prompt-based fine-tuning (label words at the template's mask).
    Prompt,
    /// SetFit-style: contrastive fine-tuning of mean-pooled sentence embeddings, then a
    /// logistic-regression classifier on them (src/train/embed.rs).
    SentenceEmbedding,
    /// No training and no example needed: the word anchors' zero-shot classifier
    /// (`train::word_anchor_zero_shot`) on the model as it is, saved and exported as a
    /// sentence-embedding model. Each input takes the class whose label word its 3
    /// closest tokens come nearest. For single-sentence, single-label classification;
    /// never chosen by `Auto`.
    ZeroShotWords,
}

impl TrainMethod {
    pub fn name(self) -> &'static str {
        match self {
            TrainMethod::Auto => "auto",
            TrainMethod::Prompt => METHOD_PROMPT,
            TrainMethod::SentenceEmbedding => METHOD_EMBEDDING,
            TrainMethod::ZeroShotWords => "zero-shot-words",
        }
    }
}

/// Significance level of the zero-shot test of [`choose_method`].
pub const ZERO_SHOT_ALPHA: f64 = 0.05;

/// The automatic choice of method, never by model name:
/// 1. demonstrations asked for: the prompt method (they are part of it);
/// 2. the checkpoint has no masked-LM head (a new one would be initialised) and no
///    adaptation runs: the sentence-embedding method;
/// 3. a multi-label task (`multi_label`; `examples` are its yes/no pairs): the prompt
///    method, one yes/no prompt per label (the pairs are mostly "no", so rule 4's test
///    would pass a head that says "no" to everything);
/// 4. otherwise the prompt's zero-shot predictions on the registered examples: if their
///    accuracy beats chance (the share of the examples' largest class; 1 / labels when
///    they are balanced) by a one-sided binomial test at [`ZERO_SHOT_ALPHA`], the head
///    reads the template and the prompt method is chosen; if not, the
///    sentence-embedding method. The examples are read in chunks, each reported to
///    `progress` (an evaluation stage), which may cancel.
///
/// Returns the method and the reason, in words (logged and kept in the version's notes).
pub fn choose_method(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    examples: &[Example],
    multi_label: bool,
    p: &RunParams,
    progress: ProgressFn,
) -> Result<(TrainMethod, String)> {
    if p.method != TrainMethod::Auto {
        return Ok((p.method, "asked for".into()));
    }
    if p.demonstrations {
        return Ok((TrainMethod::Prompt, "demonstrations were asked for, and they belong to the prompt method".into()));
    }
    if model.load_report().head_initialised && p.adaptation_steps == 0 {
        return Ok((TrainMethod::SentenceEmbedding, "the checkpoint has no masked-LM head".into()));
    }
    if multi_label {
        return Ok((TrainMethod::Prompt, "a multi-label task on a checkpoint with a masked-LM head trains one yes/no prompt per label".into()));
    }
    let head = Head::for_prompt(model, prompt)?;
    let logits = scored_on_dev(examples, progress, |chunk| train::predict_examples(model, tok, prompt, Method::Prompt, &head, chunk, &train::Demos::None, 32))?;
    let gold = gold_labels(examples);
    let n = examples.len();
    let right = logits.iter().zip(&gold).filter(|(l, &g)| crate::metrics::argmax(l) == g).count();
    // Chance is what always answering the examples' largest class scores (1/labels for
    // balanced examples): a head stuck on one word passes no imbalanced task.
    let largest = (0..prompt.verbalizer.num_labels()).map(|c| gold.iter().filter(|&&g| g == c).count()).max().unwrap_or(0);
    let chance = (1.0 / prompt.verbalizer.num_labels() as f64).max(largest as f64 / n.max(1) as f64);
    let p_value = crate::metrics::binomial_upper_tail(n, right, chance);
    let facts = format!("zero-shot {right}/{n} right on the examples (chance {:.0}%, one-sided binomial p = {p_value:.3})", 100.0 * chance);
    Ok(if p_value < ZERO_SHOT_ALPHA {
        (TrainMethod::Prompt, format!("{facts}: the masked-LM head reads the prompt"))
    } else {
        (TrainMethod::SentenceEmbedding, format!("{facts}: no better than chance for the prompt"))
    })
}

fn models_dir(task_dir: &Path) -> PathBuf {
    task_dir.join("models")
}


fn check_version(v: &str) -> Result<()> {
    match version_digits(v) {
        Some(_) => Ok(()),
        None => Err(Error::InvalidArgument(format!("model version {v:?}: versions are named v1, v2, ..."))),
    }
}

/// The names in `models/` (none when it does not exist yet).
fn model_entries(task_dir: &Path) -> Result<Vec<String>> {
    let dir = models_dir(task_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    entries.map(|e| e.map(|e| e.file_name().to_string_lossy().to_string()).map_err(|e| Error::io(&dir, e))).collect()
}

/// The task's model versions, oldest first.
pub fn versions(task_dir: &Path) -> Result<Vec<String>> {
    let dir = models_dir(task_dir);
    let mut out: Vec<(u64, String)> = model_entries(task_dir)?
        .into_iter()
        .filter_map(|n| Some((version_digits(&n)?.parse().unwrap_or(u64::MAX), n)))
        .filter(|(_, n)| dir.join(n).join(crate::checkpoint::MANIFEST_FILE).is_file())
        .collect();
    out.sort();
    Ok(out.into_iter().map(|(_, n)| n).collect())
}

/// A deleted version's tombstone in `models/`: its folder, renamed and emptied, which
/// keeps the number from being given to another version.
fn tombstone(v: &str) -> String {
    format!(".{v}.deleted")
}

/// The version number an entry of `models/` takes: a version's (or any entry named like
/// one), or a deleted version's tombstone's.
fn taken_number(name: &str) -> Option<u64> {
    let v = name.strip_prefix('.').and_then(|n| n.strip_suffix(".deleted")).unwrap_or(name);
    version_digits(v)?.parse().ok()
}

/// Refuses a task folder moved or deleted since the task was saved there: a `models/`
/// made anew there would hold versions apart from their task.
fn task_still_there(task_dir: &Path) -> Result<()> {
    // (A file that cannot be looked at, its permissions, is named as such.)
    if !crate::checkpoint::is_file(&task_dir.join(crate::task::TASK_FILE))? {
        return Err(Error::InvalidArgument(format!(
            "the task's folder {} no longer holds its task.json (moved or deleted?): save the task again before training",
            task_dir.display()
        )));
    }
    Ok(())
}

/// Makes the task's `models/` if needed and checks that a folder can be made in it.
fn writable_models_dir(task_dir: &Path) -> Result<()> {
    task_still_there(task_dir)?;
    let dir = models_dir(task_dir);
    crate::checkpoint::create_dir_all_synced(&dir)?;
    crate::checkpoint::can_make_folder_in(&dir).map_err(|e| Error::io(&dir, std::io::Error::new(e.kind(), format!("the task's versions cannot be written there: {e}"))))
}

/// Reserves the next version: the number past every version, every entry named like one
/// and every deleted one, taken by creating its folder (empty) in one step, which
/// succeeds for one writer only; a writer that loses the race takes the next number.
/// Numbers are never given twice, so a version name always means one model.
fn reserve_version(task_dir: &Path) -> Result<(String, PathBuf)> {
    let dir = models_dir(task_dir);
    task_still_there(task_dir)?;
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // The new models/ must outlast a power loss with the version put in it.
        crate::checkpoint::sync_dir(task_dir)?;
    }
    // A version half-written by a killed process (models/.vN.lmbff-tmp-<pid>-<n>, a
    // model's size) goes once its process is gone and it has been left an hour.
    crate::checkpoint::remove_stale_temps_in(&dir, crate::checkpoint::Owner::Lmbff);
    let highest = model_entries(task_dir)?.iter().filter_map(|n| taken_number(n)).max().unwrap_or(0);
    let mut n = highest;
    loop {
        n = n.checked_add(1).ok_or_else(|| Error::InvalidArgument(format!("{}: no version number is left after v{highest}", dir.display())))?;
        let version = format!("v{n}");
        let path = dir.join(&version);
        match std::fs::create_dir(&path) {
            // A listing made while a deletion renamed vN to its tombstone may have shown
            // neither name (POSIX lets it): the tombstone, there now, keeps the number.
            Ok(()) if dir.join(tombstone(&version)).exists() => {
                let _ = std::fs::remove_dir(&path);
                continue;
            }
            Ok(()) => return Ok((version, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
}

fn version_dir(task_dir: &Path, v: &str) -> Result<PathBuf> {
    check_version(v)?;
    let d = models_dir(task_dir).join(v);
    if !crate::checkpoint::is_file(&d.join(crate::checkpoint::MANIFEST_FILE))? {
        return Err(Error::InvalidArgument(format!("the task has no model version {v} (it has {:?})", versions(task_dir)?)));
    }
    Ok(d)
}

/// Deletes version `v` in one step: its folder is renamed to its tombstone (the version
/// is gone from then on, whatever happens next), then emptied. The emptied tombstone
/// stays, so the number is never given to a later version.
pub fn delete_version(task_dir: &Path, v: &str) -> Result<()> {
    let d = version_dir(task_dir, v)?;
    // Held until the version is renamed away: a run pinning it meanwhile (another
    // thread's warm start) either sees it gone or keeps it.
    let pins = WARM_PINS.lock();
    if d.canonicalize().is_ok_and(|c| pins.contains(&c)) {
        return Err(Error::Busy(WARM_START_BUSY));
    }
    if crate::checkpoint::holds_task(&d) {
        return Err(Error::InvalidArgument(format!(
            "{} holds a task (task.json) saved into the version's folder or a folder inside it: deleting the version \
             would delete that task; move the task out first",
            d.display()
        )));
    }
    let models = models_dir(task_dir);
    let grave = models.join(tombstone(v));
    // Deleted meanwhile (by another thread or process): named as a version that is not
    // there, not as the rename's "no such file".
    std::fs::rename(&d, &grave).map_err(|e| version_dir(task_dir, v).err().unwrap_or(Error::io(&d, e)))?;
    drop(pins);
    crate::checkpoint::sync_dir(&models)?;
    if grave.is_symlink() {
        // A link someone put in the version's place: the link goes, never what it
        // points to, replaced in one step by an empty file that keeps the number (a
        // removal, then a new tombstone, left the number free in between).
        let tomb = models.join(crate::checkpoint::temp_name(&tombstone(v)));
        std::fs::File::create(&tomb).map_err(|e| Error::io(&tomb, e))?;
        std::fs::rename(&tomb, &grave).map_err(|e| {
            let _ = std::fs::remove_file(&tomb);
            Error::io(&grave, e)
        })?;
        return crate::checkpoint::sync_dir(&models);
    }
    let emptied = std::fs::read_dir(&grave).and_then(|entries| {
        entries.map(|e| e.map(|e| e.path())).try_for_each(|p| {
            let p = p?;
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            }
        })
    });
    if let Err(e) = emptied {
        crate::log::log(crate::log::Level::Warn, || format!("version {v} is deleted, but its files could not all be removed from {}: {e}", grave.display()));
    }
    Ok(())
}

/// Exports version `v` to `out` (see `export`); its notes name the version.
pub fn export_version(task_dir: &Path, v: &str, out: &Path, opts: &ExportOptions) -> Result<()> {
    // A version deleted while it was read is named so, not by the file that went.
    export_checkpoint(&version_dir(task_dir, v)?, out, opts).map(|_| ()).map_err(|e| version_dir(task_dir, v).err().unwrap_or(e))
}

/// The task's labelled examples, training ones or dev ones, as the trainer reads them (a
/// multi-label task's as yes/no pairs, one per label).
fn labelled(task: &Task, multi: Option<&crate::prompt::MultiLabel>, dev: bool) -> Result<Vec<Example>> {
    Ok(match multi {
        Some(m) => {
            let (inputs, sets) = labelled_sets(task, dev);
            m.expand(&inputs, Some(&sets))?
        }
        None => task
            .items()
            .filter(|i| i.is_labelled() && i.dev == dev)
            .filter_map(|i| i.label.map(|l| Example { text_a: i.text_a.clone(), text_b: i.text_b.clone(), label: Some(l) }))
            .collect(),
    })
}

/// A multi-label task's labelled inputs (training or dev) and their label sets (what
/// `labelled` expands into yes/no pairs).
fn labelled_sets(task: &Task, dev: bool) -> (Vec<Example>, Vec<Vec<usize>>) {
    task.items()
        .filter(|i| i.is_labelled() && i.dev == dev)
        .filter_map(|i| i.label_set.as_ref().map(|s| (Example::single(i.text_a.clone(), None), s.clone())))
        .unzip()
}

/// A regression task's scores of its training (or dev) examples, in `labelled`'s order,
/// scaled from `range` to [0, 1].
fn scaled(task: &Task, (low, high): (f32, f32), dev: bool) -> Vec<f32> {
    task.items().filter(|i| i.is_labelled() && i.dev == dev).map(|i| (i.score.unwrap_or(low) - low) / (high - low)).collect()
}

/// With `on`, fits temperature scaling on the dev examples' logits (minimum NLL) into the
/// manifest (exports divide the class logits by it) and notes the dev ECE before and after
/// (after: the exported version's, the same as before where the fit is not applied).
fn calibrate(m: &mut Manifest, on: bool, dev_logits: &[Vec<f32>], dev: &[Example], dev_inputs: usize) {
    if !on {
        return;
    }
    let gold = gold_labels(dev);
    let fit = crate::metrics::fit_calibration(dev_logits, &gold);
    let (t, applied) = (fit.temperature, fit.applied);
    // The version's ECE: a temperature not applied changes nothing.
    let (before, after) = fit.ece_before_after(dev_logits, &gold, 10);
    // A temperature at the search's bound is noted, not exported (see TEMPERATURE_AT_BOUND).
    m.temperature = applied.then_some(t);
    m.notes.insert(
        "calibration".into(),
        serde_json::json!({"temperature": t, "applied": applied, "dev_ece_before": before, "dev_ece_after": after, "dev_examples": dev_inputs, "dev_rows": dev.len()}),
    );
    // A multi-label task fits on its dev examples' yes/no pairs, a row each.
    let rows = if dev.len() == dev_inputs { String::new() } else { format!(" ({} yes/no pairs)", dev.len()) };
    crate::log::log(crate::log::Level::Info, || format!("calibration: temperature {t:.3} on {dev_inputs} dev examples{rows} (ECE {before:.3} -> {after:.3})"));
    if !applied {
        m.notes.insert("calibration_warning".into(), serde_json::json!(TEMPERATURE_AT_BOUND));
        crate::log::log(crate::log::Level::Warn, || format!("calibration: temperature {t:.3}: {TEMPERATURE_AT_BOUND}"));
    }
}

/// Why a temperature at its bound deserves a warning.
pub const TEMPERATURE_AT_BOUND: &str =
    "the dev set does not bound the temperature (the model gets every dev example right, or scores every one's class lowest, or the fit ran to the search's bound), so it is not applied: the model keeps its own probabilities, which are not calibrated (add dev examples it gets wrong, or leave calibration off)";

/// Runs in one process train one after another: libtorch's random generator is
/// process-wide (a concurrent run would break the other's repeatability), and versions
/// are numbered in order.
static ONE_RUN_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// The run's further anchor templates, parsed and checked against the task before any
/// model loads: they need label anchors on and a single-sentence, single-label task.
fn anchor_templates(prompt: &Prompt, multi_label: bool, p: &RunParams) -> Result<Vec<Template>> {
    if p.anchor_templates.is_empty() {
        return Ok(Vec::new());
    }
    if !p.label_anchors {
        return Err(Error::InvalidArgument("anchor templates were given with label anchors turned off: turn them on or give none".into()));
    }
    if multi_label {
        return Err(Error::InvalidArgument("a multi-label task's label anchors are its labels' names, not templates (its template reads the label as a second sentence): give no anchor templates".into()));
    }
    prompt.parse_anchor_templates(&p.anchor_templates)
}

/// Version folders that runs of this process warm-start from, once per run: deleting
/// one is refused until its runs end (a run waiting its turn has not read it yet).
static WARM_PINS: parking_lot::Mutex<Vec<PathBuf>> = parking_lot::Mutex::new(Vec::new());

const WARM_START_BUSY: &str = "a training run of this process warm-starts from this version: delete it once the run has ended";

/// Keeps the version a run warm-starts from from being deleted while the run goes.
pub struct WarmPin(Option<PathBuf>);

impl Drop for WarmPin {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let mut pins = WARM_PINS.lock();
            if let Some(i) = pins.iter().position(|p| *p == d) {
                pins.swap_remove(i);
            }
        }
    }
}

/// Checks, when a run starts, that the version it warm-starts from exists (a wrong name
/// is an error now, not when the run gets its turn), and keeps it from deletion by this
/// process until the returned pin is dropped. Nothing to pin without a warm start or
/// before the task is saved (training refuses that).
pub fn pin_warm_start(task: &Task, p: &RunParams) -> Result<WarmPin> {
    let (Some(v), Some(dir)) = (&p.warm_start, task.dir()) else { return Ok(WarmPin(None)) };
    // Checked and pinned under the pins' lock, which a deletion holds until its rename:
    // a version is never pinned after a deletion found it unpinned.
    let mut pins = WARM_PINS.lock();
    let d = version_dir(dir, v)?;
    let d = d.canonicalize().map_err(|e| Error::io(&d, e))?;
    pins.push(d.clone());
    Ok(WarmPin(Some(d)))
}

/// Trains `task` (a snapshot: the caller may keep registering) into a new version
/// under its directory; returns the version id.
pub fn train(task: &Task, p: &RunParams, progress: ProgressFn) -> Result<String> {
    let _pin = pin_warm_start(task, p)?;
    let _one = ONE_RUN_AT_A_TIME.lock();
    train_now(task, p, progress)
}

/// [`train`] for a run that may wait behind another in this process: while it waits
/// its turn, `cancelled` is asked every 50 ms, and a true answer ends it with
/// [`Error::Cancelled`] before it ever starts. `_pin` is what [`pin_warm_start`] gave
/// when the run was started (before it was queued), held until the run ends. A cancel
/// that comes after the last step (while the version is evaluated or saved) is the
/// caller's to settle with the run's end, in one place ([`cancel_saved`]).
pub fn train_when_free(task: &Task, p: &RunParams, _pin: WarmPin, progress: ProgressFn, cancelled: &dyn Fn() -> bool) -> Result<String> {
    let _one = loop {
        if cancelled() {
            return Err(Error::Cancelled);
        }
        if let Some(turn) = ONE_RUN_AT_A_TIME.try_lock_for(std::time::Duration::from_millis(50)) {
            break turn;
        }
    };
    train_now(task, p, progress)
}

/// A run cancelled after it saved `version`: the version goes, rather than one the host
/// never learns of (`Cancelled`). One that cannot be deleted (another run took it as its
/// warm start meanwhile, an I/O error) is reported as the run's result instead, so that
/// none is left unnamed.
pub fn cancel_saved(task: &Task, version: String) -> Result<String> {
    match task.dir().map(|dir| delete_version(dir, &version)).transpose() {
        Ok(_) => Err(Error::Cancelled),
        Err(e) => {
            crate::log::log(crate::log::Level::Warn, || {
                format!("the run was cancelled after it saved version {version}, which could not be deleted ({e}): the run reports it")
            });
            Ok(version)
        }
    }
}

/// The prompt a run with `demonstrations` reads: a single-sentence template's max_len
/// doubled (at most the model's positions), as LM-BFF doubles 128 to 256 (method.md),
/// so that the demonstrations appended keep their text rather than being cut to make
/// room; a pair template's as set (LM-BFF gives MNLI, SNLI and RTE 256 either way). The
/// version's manifest, and so its export, records the length it was trained with.
fn with_demonstrations_length(mut prompt: Prompt, model: &crate::model::MaskedLm, demonstrations: bool) -> Prompt {
    if demonstrations && prompt.template.num_sentences() == 1 {
        let positions = usize::try_from(model.config.max_input_len()).unwrap_or(usize::MAX);
        let doubled = prompt.truncation.max_len.saturating_mul(2).min(positions);
        if doubled > prompt.truncation.max_len {
            crate::log::log(crate::log::Level::Info, || {
                format!("demonstrations: inputs read up to {doubled} tokens (twice the task's max_len {}, as LM-BFF)", prompt.truncation.max_len)
            });
            prompt.truncation.max_len = doubled;
        }
    }
    prompt
}

/// [`train`]'s work, with the process's one training turn held by the caller.
fn train_now(task: &Task, p: &RunParams, progress: ProgressFn) -> Result<String> {
    let task_dir = task.dir().ok_or_else(|| Error::InvalidArgument("save the task to a directory before training it".into()))?.to_path_buf();
    let prompt = task.spec().prompt()?;
    let multi = task.spec().multi_labels();
    let (examples, dev) = (labelled(task, multi.as_ref(), false)?, labelled(task, multi.as_ref(), true)?);
    // The dev examples as the host counts them (a multi-label task's `dev` is their pairs).
    let dev_inputs = task.items().filter(|i| i.is_labelled() && i.dev).count();
    if p.calibrate && dev.is_empty() {
        return Err(Error::InvalidArgument("calibration fits a temperature on dev examples, and the task has none: mark some (set_dev)".into()));
    }
    let anchor_templates = anchor_templates(&prompt, multi.is_some(), p)?;
    // The model records its demonstrations' encoder folder as text: one whose path is not
    // UTF-8 is named now (it failed when the model was saved, after the training).
    let encoder_dir = p.demo_filter.as_ref().map(|e| match e {
        DemoFilterEncoder::TaskModel => &task.spec().model_dir,
        DemoFilterEncoder::Dir(d) => d,
    });
    if let Some(d) = encoder_dir {
        if d.to_str().is_none() {
            return Err(Error::InvalidArgument(format!(
                "demo_filter encoder {}: its path is not valid UTF-8, and the model records it as text: rename or link it",
                d.display()
            )));
        }
    }
    // The versions folder must take the version at the end: a folder that cannot be
    // written (a read-only mount) is named now, not after the training.
    writable_models_dir(&task_dir)?;
    let counts = task.counts();
    let zero_shot = p.method == TrainMethod::ZeroShotWords;
    if zero_shot {
        let why = if multi.is_some() {
            Some("a multi-label task")
        } else if task.spec().regression.is_some() {
            Some("a regression task")
        } else if p.demonstrations {
            Some("demonstrations (they belong to the prompt method)")
        } else if prompt.template.num_sentences() == 2 {
            Some("a sentence-pair task")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::InvalidArgument(format!("the zero-shot-words method classifies one sentence into one label; it cannot train {why}")));
        }
    }
    let regression = task.spec().regression;
    // What the method cannot do is refused before the model loads and adapts.
    if regression.is_some() && p.method == TrainMethod::SentenceEmbedding {
        return Err(Error::InvalidArgument(
            "a regression task trains a prompt between its two pole words: it needs the prompt method, not the sentence-embedding method".into(),
        ));
    }
    if p.calibrate && regression.is_some() {
        return Err(Error::InvalidArgument("calibration is for classification: a regression's probability is its score".into()));
    }
    if p.method == TrainMethod::SentenceEmbedding && p.demonstrations {
        return Err(Error::InvalidArgument("demonstrations need the prompt method, not the sentence-embedding method".into()));
    }
    // A regression's "labels" are the halves of its range: its loss needs no score on
    // either side, but a demonstration set needs an example of each pole.
    if let (Some((low, high)), true) = (regression, p.demonstrations) {
        if let Some(side) = counts.iter().position(|&c| c == 0) {
            let (lo, mid, hi) = (low, (low + high) / 2.0, high);
            let range = if side == 0 { format!("{lo} to {mid}") } else { format!("{mid} to {hi}") };
            return Err(Error::InvalidArgument(format!(
                "demonstrations show an example of each pole, and no training example scores in the {} half ({range}): register one, or train without demonstrations",
                if side == 0 { "lower" } else { "upper" }
            )));
        }
    }
    if regression.is_some() && counts.iter().all(|&c| c == 0) {
        return Err(Error::InvalidArgument("the regression task has no scored training examples: register at least one".into()));
    }
    if let Some(empty) = counts.iter().position(|&c| c == 0).filter(|_| !zero_shot && regression.is_none()) {
        let label = &task.spec().labels[empty];
        let held_out = task.items().filter(|i| i.dev && (i.label == Some(empty) || i.label_set.as_ref().is_some_and(|s| s.contains(&empty)))).count();
        return Err(Error::InvalidArgument(if held_out > 0 {
            format!("label {label:?} has no training examples: its {held_out} labelled example(s) are all held out as dev; register one more or move one back (set_dev)")
        } else {
            format!("label {label:?} has no examples: register at least one per label")
        }));
    }
    let from = match &p.warm_start {
        Some(v) => version_dir(&task_dir, v)?,
        None => task.spec().model_dir.clone(),
    };
    let device = parse_device(&p.device)?;
    tch::manual_seed(p.seed as i64);
    let model = MaskedLm::load(&from, device)?;
    let tok = Tokenizer::from_dir(&from)?;
    let mut adaptation_texts = 0;
    if p.adaptation_steps > 0 {
        // Every text but the dev examples' (held out of training, adaptation included).
        let texts: Vec<String> = task.items().filter(|i| !i.dev).flat_map(|i| std::iter::once(i.text_a.clone()).chain(i.text_b.clone())).collect();
        adaptation_texts = texts.len();
        let ap = AdaptParams { steps: p.adaptation_steps, seed: p.seed, ..AdaptParams::default() };
        train::adapt(&model, &tok, &texts, &ap, None, &mut *progress)?;
    }
    let headless = model.load_report().head_initialised && p.adaptation_steps == 0;
    let (method, reason) = match (regression, p.method) {
        (Some(_), TrainMethod::Auto) => (TrainMethod::Prompt, "a regression task trains the prompt between its two pole words".to_string()),
        _ => choose_method(&model, &tok, &prompt, &examples, multi.is_some(), p, progress)?,
    };
    // The automatic choice (an explicit one was refused above).
    if method == TrainMethod::SentenceEmbedding && p.demonstrations {
        return Err(Error::InvalidArgument("demonstrations need the prompt method, not the sentence-embedding method".into()));
    }
    crate::log::log(crate::log::Level::Info, || format!("method {}: {reason}", method.name()));
    if method == TrainMethod::Prompt && headless {
        crate::log::log(crate::log::Level::Warn, || {
            format!("{} has no masked-LM head: a new one was initialised; adapt it (adaptation_steps) before relying on prompts", from.display())
        });
    }
    let mut notes = serde_json::json!({"method": method.name(), "method_reason": reason, "seed": p.seed,
                                       "examples_per_label": counts, "adaptation_steps": p.adaptation_steps,
                                       "adaptation_texts": adaptation_texts,
                                       "warm_start": p.warm_start, "source_model": from.to_string_lossy()});
    let manifest = if method == TrainMethod::ZeroShotWords {
        let head = train::word_anchor_zero_shot(&model, &tok, &prompt, &anchor_templates)?;
        // Its one step: a cancel asked for by now ends the run, as at any method's step.
        if dev.is_empty() && !progress(train::Progress { stage: train::Stage::Evaluate, step: 1, total: 1, loss: f64::NAN, metric: f64::NAN }) {
            return Err(Error::Cancelled);
        }
        let mut dev_logits = Vec::new();
        if !dev.is_empty() {
            dev_logits = scored_on_dev(&dev, progress, |chunk| train::embedding_logits(&model, &tok, &prompt, &head, chunk, 32))?;
            let gold = gold_labels(&dev);
            notes["dev_examples"] = dev_inputs.into();
            notes["dev_accuracy"] = crate::metrics::accuracy(&dev_logits, &gold).into();
        }
        let mut m = Manifest::for_embedding(&prompt, head, None, notes).with_rendering(&prompt, &tok);
        calibrate(&mut m, p.calibrate, &dev_logits, &dev, dev_inputs);
        m
    } else if method == TrainMethod::SentenceEmbedding {
        let ep = EmbedParams { lr: p.lr, seed: p.seed, anchor_templates, max_steps: p.embedding_max_steps, ..EmbedParams::default() }.with_anchors(p.label_anchors);
        // Multi-label: the input alone, a yes/no head per label; dev logits as the yes/no
        // pairs of `dev` (the expanded examples), so calibration reads them as a prompt's.
        let (head, report, dev_logits) = match &multi {
            Some(ml) => {
                let reader = prompt.input_reader();
                let (inputs, sets) = labelled_sets(task, false);
                let (head, report) = train::train_embedding_multi(&model, &tok, &reader, &inputs, &sets, ml.names(), &ep, progress)?;
                let (dev_inputs, _) = labelled_sets(task, true);
                let dev_logits = if dev.is_empty() {
                    Vec::new()
                } else {
                    ml.split_heads(&scored_on_dev(&dev_inputs, progress, |chunk| train::embedding_logits(&model, &tok, &reader, &head, chunk, 32))?)?
                };
                (head, report, dev_logits)
            }
            None => {
                let (head, report) = train::train_embedding(&model, &tok, &prompt, &examples, &ep, progress)?;
                let dev_logits = scored_on_dev(&dev, progress, |chunk| train::embedding_logits(&model, &tok, &prompt, &head, chunk, 32))?;
                (head, report, dev_logits)
            }
        };
        crate::log::log(crate::log::Level::Info, || format!("trained {} contrastive steps ({} pairs) on {:?} examples per label", report.steps, report.pairs, counts));
        notes["steps"] = report.steps.into();
        notes["pairs"] = report.pairs.into();
        if let Some(full) = report.capped_from {
            notes["steps_capped_from"] = full.into();
        }
        notes["lr"] = ep.lr.into();
        notes["label_anchors"] = report.anchors.clone().into();
        if !dev.is_empty() {
            // Nothing is selected on dev here (one schedule, no checkpoints): it scores
            // the version, as the prompt method's best_dev_metric does.
            let gold = gold_labels(&dev);
            let (key, score) = match multi {
                Some(_) => ("dev_micro_f1", crate::metrics::f1_binary(&crate::prompt::decisions(&dev_logits), &gold, 1)),
                None => ("dev_accuracy", crate::metrics::accuracy(&dev_logits, &gold)),
            };
            notes["dev_examples"] = dev_inputs.into();
            notes[key] = score.into();
            if !progress(train::Progress { stage: train::Stage::Evaluate, step: report.steps, total: report.steps, loss: f64::NAN, metric: score }) {
                return Err(Error::Cancelled);
            }
        }
        let mut m = Manifest::for_embedding(&prompt, head, multi.as_ref().map(|ml| ml.names()), notes).with_rendering(&prompt, &tok);
        calibrate(&mut m, p.calibrate, &dev_logits, &dev, dev_inputs);
        m
    } else {
        let prompt = with_demonstrations_length(prompt.clone(), &model, p.demonstrations);
        let tp = TrainParams {
            steps: p.steps,
            batch_size: p.batch_size,
            lr: p.lr,
            seed: p.seed,
            // Dev examples pick the kept weights among at most five evaluations (the
            // last step's among them).
            eval_every: if dev.is_empty() { 0 } else { p.steps.div_ceil(5).max(1) },
            demonstrations: p.demonstrations,
            demo_sets: p.demo_sets,
            balance_classes: multi.is_some(),
            demos_apart_by_input: multi.is_some(),
            // A multi-label task's dev pairs are mostly "no": the kept weights are the
            // ones with the best F1 of "yes" (micro-F1 over the labels), not accuracy.
            dev_metric: if multi.is_some() { train::DevMetric::MultiLabelF1 } else { train::DevMetric::Accuracy },
            // Regression: KL to [1 - s, s] over the pole words, s the score scaled to [0, 1].
            regression: regression.map(|range| train::RegressionTargets { train: scaled(task, range, false), dev: scaled(task, range, true) }),
            demo_filter: p.demo_filter.as_ref().map(|e| match e {
                DemoFilterEncoder::TaskModel => task.spec().model_dir.clone(),
                DemoFilterEncoder::Dir(d) => d.clone(),
            }),
            ..TrainParams::default()
        };
        let (report, head) = train::finetune(&model, &tok, &prompt, Method::Prompt, &examples, &dev, &tp, progress)?;
        crate::log::log(crate::log::Level::Info, || format!("trained {} steps on {:?} examples per label", report.steps, counts));
        notes["steps"] = report.steps.into();
        notes["lr"] = report.lr.into();
        notes["demonstrations"] = p.demonstrations.into();
        notes["demo_filter"] = serde_json::json!(report.demos.filter_dir().map(|d| d.to_string_lossy().into_owned()));
        if !dev.is_empty() {
            notes["dev_examples"] = dev_inputs.into();
            notes["dev_metric"] = match (multi.is_some(), regression.is_some()) {
                (true, _) => "micro-f1",
                (_, true) => "pearson",
                _ => "accuracy",
            }
            .into();
            notes["best_step"] = report.best_step.into();
            notes["best_dev_metric"] = report.best_dev_acc.into();
        }
        let dev_logits = scored_on_dev(&dev, progress, |chunk| train::predict_examples(&model, &tok, &prompt, Method::Prompt, &head, chunk, &report.demos, 32))?;
        let mut m = Manifest::for_prompt(&prompt, &[], notes).with_rendering(&prompt, &tok);
        report.demos.record(&mut m);
        m.multi_label = multi.as_ref().map(|ml| ml.names().to_vec());
        m.regression = regression;
        calibrate(&mut m, p.calibrate, &dev_logits, &dev, dev_inputs);
        m
    };
    // A new name, never given before (an export or a stray folder at models/v2 is never
    // replaced, a deleted v2 never comes back as another model).
    let (version, dest) = reserve_version(&task_dir)?;
    let mut manifest = manifest;
    manifest.notes.insert("model_version".into(), version.clone().into());
    let written = write_new_dir(&dest, |d| {
        model.save_pretrained(d)?;
        manifest.write_into(d)
    });
    if let Err(e) = written {
        // Give the (empty) reserved name back. Not empty, the model was put in place
        // and only the folder's sync failed: a run that reports failure leaves no
        // version, so it is deleted as a version is (its tombstone keeps the number,
        // which a host may have listed meanwhile).
        if std::fs::remove_dir(&dest).is_err() {
            let _ = delete_version(&task_dir, &version);
        }
        return Err(e);
    }
    crate::log::log(crate::log::Level::Info, || format!("saved model version {version} in {}", task_dir.display()));
    Ok(version)
}


/// The logits `score` gives the dev examples, a chunk at a time with an EVALUATE report
/// after each, so that a cancel ends a long dev pass within a chunk (nothing saved).
/// `score` of `dev` (or any examples) in chunks, each reported to `progress` as an
/// evaluation step (so a host sees the run move, and a cancel takes effect between
/// chunks).
fn scored_on_dev(dev: &[Example], progress: train::ProgressFn, score: impl Fn(&[Example]) -> Result<Vec<Vec<f32>>>) -> Result<Vec<Vec<f32>>> {
    const CHUNK: usize = 256;
    let total = dev.len().div_ceil(CHUNK);
    let mut out = Vec::with_capacity(dev.len());
    for (i, chunk) in dev.chunks(CHUNK).enumerate() {
        out.extend(score(chunk)?);
        if !progress(train::Progress { stage: train::Stage::Evaluate, step: i + 1, total, loss: f64::NAN, metric: f64::NAN }) {
            return Err(Error::Cancelled);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_are_never_given_twice() {
        let task = std::env::temp_dir().join(format!("lmbff-versions-{}", crate::checkpoint::tmp_suffix()));
        let models = models_dir(&task);
        std::fs::create_dir_all(models.join("v7")).unwrap();
        std::fs::create_dir_all(models.join(".v9.deleted")).unwrap();
        std::fs::create_dir_all(models.join("v8-export")).unwrap();
        // A task folder holds its task.json (a folder without one takes no version).
        assert!(reserve_version(&task).unwrap_err().to_string().contains("no longer holds its task.json"));
        std::fs::write(task.join(crate::task::TASK_FILE), "{}").unwrap();
        assert_eq!((taken_number("v12"), taken_number(".v3.deleted"), taken_number("v"), taken_number("v1x"), taken_number(".v3")), (Some(12), Some(3), None, None, None));
        // Eight writers at once each get their own number, past the highest taken (9).
        let mut got: Vec<u64> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..8).map(|_| s.spawn(|| reserve_version(&task).unwrap().0)).collect();
            runs.into_iter().map(|r| r.join().unwrap()[1..].parse().unwrap()).collect()
        });
        got.sort();
        assert_eq!(got, (10..18).collect::<Vec<u64>>());
        // An entry at the last number leaves none to give.
        std::fs::create_dir(models.join(format!("v{}", u64::MAX))).unwrap();
        assert!(reserve_version(&task).unwrap_err().to_string().contains("no version number is left"));
        let _ = std::fs::remove_dir_all(&task);
    }
}
