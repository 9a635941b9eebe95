//! Training runs at the C ABI: parameters, a progress callback that can stop the run,
//! cancellation from any thread, synchronous and asynchronous runs, model versions and
//! their export. In a serve-only build every call here returns LMBFF_ERR_NO_TRAINING.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::task::lmbff_task;
use super::{guard, lmbff_status, set_last_error, str_arg, write_c_string};
use crate::{Error, Result};

/// Which device trains (validated: other values are LMBFF_ERR_INVALID_ARGUMENT).
pub const LMBFF_DEVICE_AUTO: i32 = 0;
pub const LMBFF_DEVICE_CPU: i32 = 1;
pub const LMBFF_DEVICE_CUDA: i32 = 2;

/// Which method trains (lmbff_train_params.method; other values are
/// LMBFF_ERR_INVALID_ARGUMENT).
pub const LMBFF_METHOD_AUTO: i32 = 0;
pub const LMBFF_METHOD_PROMPT: i32 = 1;
pub const LMBFF_METHOD_SENTENCE_EMBEDDING: i32 = 2;
/// No training: the word anchors' zero-shot classifier (each input takes the class whose
/// label word its 3 closest tokens come nearest, read by the model as it is). Needs no
/// registered example; single-sentence, single-label classification only.
pub const LMBFF_METHOD_ZERO_SHOT_WORDS: i32 = 3;

/// Stages reported to the progress callback.
pub const LMBFF_STAGE_ADAPT: i32 = 0;
pub const LMBFF_STAGE_TRAIN: i32 = 1;
pub const LMBFF_STAGE_EVALUATE: i32 = 2;

/// States of an asynchronous run (lmbff_run_poll).
pub const LMBFF_RUN_RUNNING: i32 = 0;
pub const LMBFF_RUN_SUCCEEDED: i32 = 1;
pub const LMBFF_RUN_FAILED: i32 = 2;
pub const LMBFF_RUN_CANCELLED: i32 = 3;

/// Progress of a run: `stage` (LMBFF_STAGE_*), `step` of `total`, the training loss
/// (the batch loss at the latest tenth step, and at the last step; in
/// LMBFF_STAGE_ADAPT the mean over the ten steps up to it; NaN before the tenth) and
/// the last dev metric (NaN when none). Called on the training thread; return false
/// to stop the run (it then ends LMBFF_ERR_CANCELLED). A stage's last report may come
/// again, at most once a second, while work after its last step runs (the
/// sentence-embedding method embedding its examples and fitting its classifier, which
/// take minutes on thousands of examples): the answer is read as to any report, and a
/// display treats a report equal to the one before as no change.
pub type lmbff_progress_fn =
    Option<unsafe extern "C" fn(stage: i32, step: usize, total: usize, loss: f64, metric: f64, user_data: *mut c_void) -> bool>;

/// Settings of a training run. Get defaults from lmbff_train_params_init (or
/// lmbff_train_default_params). A struct laid out by an earlier header (before
/// demonstrations, method, demo_filter, calibrate, anchor_templates or
/// embedding_max_steps), whose
/// struct_size says so, is read as such:
/// its fields are read, and the newer ones keep their defaults.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct lmbff_train_params {
    /// sizeof(lmbff_train_params), set by lmbff_train_default_params().
    pub struct_size: usize,
    /// Fine-tuning steps (default 300) of `batch_size` examples (default 8); each at least
    /// 1 (0 is LMBFF_ERR_INVALID_ARGUMENT).
    pub steps: u32,
    pub batch_size: u32,
    /// Peak learning rate of AdamW with linear decay (default 2e-5).
    pub learning_rate: f64,
    /// Seed of every random choice (default 42): same seed, same model on CPU. On CUDA the
    /// draws are the same but the GPU's sums are not ordered (atomic adds in embedding
    /// gradients), so two runs may differ in the last digits and, through dev selection,
    /// in the step kept.
    pub seed: u64,
    /// LMBFF_DEVICE_AUTO (CUDA if present), LMBFF_DEVICE_CPU or LMBFF_DEVICE_CUDA.
    pub device: i32,
    /// CUDA device index with LMBFF_DEVICE_CUDA.
    pub device_index: u32,
    /// Masked-LM adaptation steps on the task's texts before fine-tuning (default 0;
    /// models without a masked-LM head need some).
    pub adaptation_steps: u32,
    /// A version of this task to start from (warm start), or NULL for the task's model.
    /// Checked when the run starts (a version the task lacks is
    /// LMBFF_ERR_INVALID_ARGUMENT from lmbff_train_start), and kept from deletion by
    /// this process until the run ends.
    pub warm_start: *const c_char,
    /// Demonstrations (LM-BFF): one labelled example per class appended to every input,
    /// drawn afresh at each training step (default false). The trained version keeps
    /// `demo_sets` fixed sets, and its exports predict with them.
    pub demonstrations: bool,
    /// Fixed demonstration sets a version predicts with, label logits averaged (default
    /// 1; the paper uses 16; at most 64). Each set costs one forward pass per input.
    pub demo_sets: u32,
    /// LMBFF_METHOD_AUTO (default), LMBFF_METHOD_PROMPT, LMBFF_METHOD_SENTENCE_EMBEDDING or
    /// LMBFF_METHOD_ZERO_SHOT_WORDS (below).
    /// Auto takes the prompt method when demonstrations are on, the sentence-embedding
    /// method when the model has no masked-LM head (and adaptation_steps is 0), and
    /// otherwise the prompt method only if the prompt's zero-shot accuracy on the
    /// registered examples beats chance, the share of their largest class (one-sided
    /// binomial test, p < 0.05; a
    /// multi-label task with a head always takes the prompt). The sentence-embedding
    /// method runs SetFit's schedule (20 rounds of pairs, 16 pairs a step) at
    /// `learning_rate`, on a multi-label task with a yes/no head per label (each label
    /// needs training examples with it and without it: one on every example is refused,
    /// LMBFF_ERR_INVALID_ARGUMENT naming it, auto's choice included); `steps` and
    /// `batch_size` are the prompt method's. Its schedule grows with the examples:
    /// 2.5 steps (40 pairs) per registered example and label-anchor copy, so 32 examples take
    /// 100 steps, up to `embedding_max_steps` (2000 by default: about 800 examples).
    /// Regression tasks need the prompt method.
    /// LMBFF_METHOD_ZERO_SHOT_WORDS trains nothing and needs no example: a version that
    /// labels by how close each input's tokens come to the label words, to pre-label a
    /// pool before anyone has (dev examples, when marked, are scored and can calibrate
    /// it; anchor_templates read each label word in more phrasings). The version's notes
    /// (exported in lmbff-export.json) say which method ran and why.
    pub method: i32,
    /// Similarity-filtered demonstrations (LM-BFF's demo_filter; needs demonstrations):
    /// a sentence encoder ranks each class's examples by similarity to the input, and
    /// demonstrations come from the most similar half; at inference each input gets its
    /// own `demo_sets` sets (set k: each class's k-th most similar), and exports carry the
    /// encoder (demo-encoder.onnx) so the predictor picks the same ones (default false).
    pub demo_filter: bool,
    /// The filter's sentence encoder, an HF model directory, or NULL for the task's model
    /// (the default MiniLM is a sentence encoder: mean pooling).
    pub demo_filter_model: *const c_char,
    /// Temperature scaling (default false): fit one temperature on the task's dev
    /// examples (lmbff_task_set_dev; minimum negative log-likelihood) so that the
    /// version's probabilities match its accuracy, which a host needs before it
    /// auto-accepts labels above a probability. Exports divide the class logits by it;
    /// the version's notes hold it with the dev ECE before and after. Needs dev examples.
    /// A temperature the dev examples do not bound (all of them right, or all wrong, or
    /// a fit whose dev loss is as low at the search's bound, 0.05 or 20, as at the
    /// fitted temperature) is noted and not applied, with
    /// a warning: the version keeps its own probabilities.
    /// (Dev examples are held out of training in any case: the prompt method keeps the
    /// weights that score best on them, the other methods are scored on them, and the
    /// version's notes hold the score.)
    pub calibrate: bool,
    /// The sentence-embedding method without label anchors, as SetFit publishes it
    /// (default false). By default a single-sentence task's template and label words
    /// give each class anchor texts, the template's text with the word in place of the
    /// mask ("It was great."): they join the contrastive pairs as examples of their
    /// class (4 times each), so the encoder learns to place inputs near their class's
    /// anchor; the classifier is fitted on the registered examples alone. It also reads
    /// word anchors: how close the input's tokens come to each label word as the tuned
    /// encoder reads it in its anchor text. The version's
    /// notes list the anchors (label_anchors). Zero is the default so that a host built
    /// before this field (it sits in that struct's trailing padding) keeps anchors on,
    /// provided it initialised the struct as the header asks (lmbff_train_params_init or
    /// lmbff_train_default_params, or zeroed it): padding filled field by field holds
    /// whatever was there, and a nonzero byte reads as true.
    /// A multi-label task's anchors are its labels' names ("sports"), each a text of
    /// that label alone among the pairs.
    pub disable_label_anchors: bool,
    /// Further templates whose texts are label anchors too (default NULL and 0: none):
    /// `num_anchor_templates` single-sentence templates in either syntax, read with the
    /// task's label words, so "A truly {mask} movie." adds "A truly great movie." and
    /// "A truly terrible movie." beside the task template's anchors (an anchor template
    /// needs its mask; the input's place is optional, and dropped). More phrasings give
    /// the encoder a broader target than one. Only the sentence-embedding method uses
    /// them; a pair or multi-label task (whose anchors are its labels' names), or
    /// anchors turned off, refuses them.
    pub anchor_templates: *const *const c_char,
    pub num_anchor_templates: usize,
    /// At most this many contrastive steps of the sentence-embedding method (default
    /// 2000; 0: no cap). Its schedule grows 2.5 steps (40 pairs) per example and label
    /// anchor copy, so the cap leaves tasks of up to 800 of those as SetFit trains them
    /// and trains a larger one on 32,000 pairs drawn from its schedule (a uniform sample;
    /// the notes' steps_capped_from gives the whole schedule's steps). A step of
    /// SST-2's sentences takes about 1.6 s of one core of our 2-core VM, so the default
    /// cap bounds the contrastive phase there to about 55 minutes (longer texts take
    /// longer; a GPU takes minutes).
    pub embedding_max_steps: u32,
}

/// lmbff_train_params of hosts built before `demonstrations` (ending with
/// `warm_start`), before `method` (ending with `demo_sets`), before `demo_filter` (ending
/// with `method`),
/// before `calibrate` (ending with `demo_filter_model`), before `anchor_templates`
/// (ending with `disable_label_anchors`; hosts built before that field have the same
/// size, with padding where it sits: see TRAIN_PARAMS_BOOLS) and before
/// `embedding_max_steps` (ending with `num_anchor_templates`).
const TRAIN_PARAMS_EARLIER: [super::EarlierLayout; 6] = [
    super::EarlierLayout {
        size: std::mem::offset_of!(lmbff_train_params, demonstrations),
        fields_end: std::mem::offset_of!(lmbff_train_params, demonstrations),
    },
    super::EarlierLayout {
        size: std::mem::offset_of!(lmbff_train_params, method),
        fields_end: std::mem::offset_of!(lmbff_train_params, method),
    },
    super::EarlierLayout {
        size: std::mem::offset_of!(lmbff_train_params, demo_filter).next_multiple_of(std::mem::align_of::<lmbff_train_params>()),
        fields_end: std::mem::offset_of!(lmbff_train_params, demo_filter),
    },
    super::EarlierLayout {
        size: std::mem::offset_of!(lmbff_train_params, calibrate),
        fields_end: std::mem::offset_of!(lmbff_train_params, calibrate),
    },
    super::EarlierLayout {
        size: std::mem::offset_of!(lmbff_train_params, anchor_templates),
        fields_end: std::mem::offset_of!(lmbff_train_params, disable_label_anchors) + std::mem::size_of::<bool>(),
    },
    super::EarlierLayout {
        size: (std::mem::offset_of!(lmbff_train_params, num_anchor_templates) + std::mem::size_of::<usize>())
            .next_multiple_of(std::mem::align_of::<lmbff_train_params>()),
        fields_end: std::mem::offset_of!(lmbff_train_params, num_anchor_templates) + std::mem::size_of::<usize>(),
    },
];

/// Fills `*params` (`size` bytes: pass sizeof(lmbff_train_params)) with the defaults of
/// lmbff_train_default_params(), writing only the bytes the host has (see
/// lmbff_task_params_init).
///
/// # Safety
/// `params` is NULL or points to at least `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn lmbff_train_params_init(params: *mut lmbff_train_params, size: usize) -> lmbff_status {
    guard(|| super::init_params(params, size, lmbff_train_default_params(), &TRAIN_PARAMS_EARLIER, "lmbff_train_params_init"))
}

/// Where lmbff_train_params' bools sit (read_params reads them byte-wise).
#[cfg(feature = "train")]
const TRAIN_PARAMS_BOOLS: [usize; 4] = [
    std::mem::offset_of!(lmbff_train_params, demonstrations),
    std::mem::offset_of!(lmbff_train_params, demo_filter),
    std::mem::offset_of!(lmbff_train_params, calibrate),
    std::mem::offset_of!(lmbff_train_params, disable_label_anchors),
];

/// Default training settings, returned by value (see lmbff_task_default_params: a host
/// that must run with later libraries uses lmbff_train_params_init).
#[no_mangle]
pub extern "C" fn lmbff_train_default_params() -> lmbff_train_params {
    lmbff_train_params {
        struct_size: std::mem::size_of::<lmbff_train_params>(),
        steps: 300,
        batch_size: 8,
        learning_rate: 2e-5,
        seed: 42,
        device: LMBFF_DEVICE_AUTO,
        device_index: 0,
        adaptation_steps: 0,
        warm_start: std::ptr::null(),
        demonstrations: false,
        demo_sets: 1,
        method: LMBFF_METHOD_AUTO,
        demo_filter: false,
        demo_filter_model: std::ptr::null(),
        calibrate: false,
        disable_label_anchors: false,
        anchor_templates: std::ptr::null(),
        num_anchor_templates: 0,
        embedding_max_steps: crate::task::DEFAULT_EMBEDDING_MAX_STEPS as u32,
    }
}

/// A run's [`lmbff_run::control`]: going, cancel asked for, outcome decided.
const GOING: u8 = 0;
const CANCELLING: u8 = 1;
#[cfg_attr(not(feature = "train"), allow(dead_code))]
const DECIDED: u8 = 2;

/// A training run started by lmbff_train_start.
pub struct lmbff_run {
    /// [`GOING`], [`CANCELLING`] or [`DECIDED`]: a cancel and the run's end settle
    /// which came first in one step.
    control: Arc<AtomicU8>,
    /// The latest `step` of `total`, kept together: a poll never reads one stage's step
    /// with another's total.
    progress: Arc<Mutex<(usize, usize)>>,
    outcome: Arc<Mutex<Option<std::result::Result<std::ffi::CString, (lmbff_status, String)>>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The training thread, known before it calls back: a wait or free from its own
    /// callbacks must not join it.
    trainer: Arc<std::sync::OnceLock<u64>>,
}

impl lmbff_run {
    /// Asks the run to stop, unless its outcome is decided already.
    fn cancel(&self) {
        let _ = self.control.compare_exchange(GOING, CANCELLING, Ordering::SeqCst, Ordering::SeqCst);
    }

    fn on_own_thread(&self) -> bool {
        self.trainer.get() == Some(&crate::thread_no())
    }
}

thread_local! {
    /// Set on every run's training thread: the thread that holds (or waits for) the
    /// process's one training turn, where the run's progress and log callbacks run.
    static ON_TRAINING_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn on_a_training_thread() -> bool {
    ON_TRAINING_THREAD.with(std::cell::Cell::get)
}

#[cfg_attr(not(feature = "train"), allow(dead_code))]
struct Callback {
    f: lmbff_progress_fn,
    user_data: *mut c_void,
}
// SAFETY: the host promises (in the header) that its callback and user_data may be used
// from the training thread.
unsafe impl Send for Callback {}

#[cfg(feature = "train")]
unsafe fn run_params(p: *const lmbff_train_params) -> Result<crate::task::RunParams> {
    let p = &super::read_params(p, lmbff_train_default_params(), &TRAIN_PARAMS_EARLIER, &TRAIN_PARAMS_BOOLS, "lmbff_train_default_params")?;
    let device = match p.device {
        LMBFF_DEVICE_AUTO => "auto".to_string(),
        LMBFF_DEVICE_CPU => "cpu".to_string(),
        LMBFF_DEVICE_CUDA => format!("cuda:{}", p.device_index),
        other => return Err(Error::InvalidArgument(format!("params.device is {other}: use LMBFF_DEVICE_AUTO, _CPU or _CUDA"))),
    };
    if p.steps == 0 {
        return Err(Error::InvalidArgument("params.steps is 0: give at least 1 step".into()));
    }
    if p.batch_size == 0 {
        return Err(Error::InvalidArgument("params.batch_size is 0: give at least 1 example a step".into()));
    }
    if !(p.learning_rate > 0.0 && p.learning_rate.is_finite()) {
        return Err(Error::InvalidArgument(format!("params.learning_rate is {}: give a positive number", p.learning_rate)));
    }
    if p.demonstrations && p.demo_sets == 0 {
        return Err(Error::InvalidArgument("params.demo_sets is 0: demonstrations need at least one set".into()));
    }
    if p.demonstrations && p.demo_sets as usize > crate::train::MAX_DEMO_SETS {
        return Err(Error::InvalidArgument(format!("params.demo_sets is {}: at most {} sets", p.demo_sets, crate::train::MAX_DEMO_SETS)));
    }
    let method = match p.method {
        LMBFF_METHOD_AUTO => crate::task::TrainMethod::Auto,
        LMBFF_METHOD_PROMPT => crate::task::TrainMethod::Prompt,
        LMBFF_METHOD_SENTENCE_EMBEDDING => crate::task::TrainMethod::SentenceEmbedding,
        LMBFF_METHOD_ZERO_SHOT_WORDS => crate::task::TrainMethod::ZeroShotWords,
        other => {
            return Err(Error::InvalidArgument(format!(
                "params.method is {other}: use LMBFF_METHOD_AUTO, _PROMPT, _SENTENCE_EMBEDDING or _ZERO_SHOT_WORDS"
            )))
        }
    };
    if p.demonstrations && matches!(p.method, LMBFF_METHOD_SENTENCE_EMBEDDING | LMBFF_METHOD_ZERO_SHOT_WORDS) {
        let name = if p.method == LMBFF_METHOD_ZERO_SHOT_WORDS { "LMBFF_METHOD_ZERO_SHOT_WORDS" } else { "LMBFF_METHOD_SENTENCE_EMBEDDING" };
        return Err(Error::InvalidArgument(format!("params.demonstrations need the prompt method, not {name}")));
    }
    let warm_start = if p.warm_start.is_null() { None } else { Some(str_arg(p.warm_start, "params.warm_start")?.to_string()) };
    if p.demo_filter && !p.demonstrations {
        return Err(Error::InvalidArgument("params.demo_filter needs params.demonstrations".into()));
    }
    let demo_filter = match (p.demo_filter, p.demo_filter_model.is_null()) {
        (false, _) => None,
        (true, true) => Some(crate::task::DemoFilterEncoder::TaskModel),
        // Taken against the current directory now, as the task's folders are at the start.
        (true, false) => {
            let text = str_arg(p.demo_filter_model, "params.demo_filter_model")?;
            if text.is_empty() {
                return Err(Error::InvalidArgument(
                    "params.demo_filter_model is empty: give a model folder, or NULL for the task's model".into(),
                ));
            }
            let dir = std::path::PathBuf::from(text);
            Some(crate::task::DemoFilterEncoder::Dir(crate::absolute(&dir)))
        }
    };
    Ok(crate::task::RunParams {
        steps: p.steps as usize,
        batch_size: p.batch_size as usize,
        lr: p.learning_rate,
        seed: p.seed,
        device,
        adaptation_steps: p.adaptation_steps as usize,
        warm_start,
        demonstrations: p.demonstrations,
        demo_sets: p.demo_sets as usize,
        demo_filter,
        method,
        calibrate: p.calibrate,
        label_anchors: !p.disable_label_anchors,
        anchor_templates: if p.num_anchor_templates == 0 {
            Vec::new()
        } else {
            super::task::strings(p.anchor_templates, p.num_anchor_templates, "params.anchor_templates")?
        },
        embedding_max_steps: p.embedding_max_steps as usize,
    })
}

/// Starts training `task` in the background; the task is snapshotted now, so the host
/// may go on registering. The task must have been saved (lmbff_task_save) or opened: its
/// versions are stored in its directory (the one it was saved to or opened from when the
/// run starts, even if the host saves it elsewhere meanwhile; a relative folder given to
/// lmbff_task_save or lmbff_task_open is taken against the current directory of that
/// call, and a relative model folder against the current directory when the run starts). `progress` (may be NULL)
/// runs on the training thread. Runs in one process train one after another. On success
/// *out holds the run.
///
/// # Safety
/// `task` is a live task; `params` set up by lmbff_train_params_init or
/// lmbff_train_default_params(); `out` valid;
/// `progress` and `user_data` usable from another thread until lmbff_run_wait or
/// lmbff_run_free returns (after lmbff_run_cancel a call may still be under way).
#[no_mangle]
pub unsafe extern "C" fn lmbff_train_start(
    task: *mut lmbff_task,
    params: *const lmbff_train_params,
    progress: lmbff_progress_fn,
    user_data: *mut c_void,
    out: *mut *mut lmbff_run,
) -> lmbff_status {
    guard(|| {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".into()));
        }
        *out = std::ptr::null_mut();
        start(task, params, Callback { f: progress, user_data }).map(|run| *out = Box::into_raw(Box::new(run)))
    })
}

#[cfg(feature = "train")]
unsafe fn start(task: *mut lmbff_task, params: *const lmbff_train_params, cb: Callback) -> Result<lmbff_run> {
    let p = run_params(params)?;
    let mut snapshot = super::task::with_task(task, |t| Ok(t.clone()))?;
    // The run's folders are fixed now: a host that changes directory while the run waits
    // or trains does not move them.
    snapshot.make_paths_absolute();
    if snapshot.dir().is_none() {
        return Err(Error::InvalidArgument("save the task (lmbff_task_save) before training it: versions are stored in its directory".into()));
    }
    // The warm-start version is checked now and kept until the run ends.
    let pin = crate::task::pin_warm_start(&snapshot, &p)?;
    let run = lmbff_run {
        control: Arc::new(AtomicU8::new(GOING)),
        // The total is unknown until the run reports: the schedule depends on the method
        // it takes.
        progress: Arc::new(Mutex::new((0, 0))),
        outcome: Arc::new(Mutex::new(None)),
        thread: Mutex::new(None),
        trainer: Arc::default(),
    };
    let (control, progress, outcome) = (run.control.clone(), run.progress.clone(), run.outcome.clone());
    let (run_control, trainer) = (run.control.clone(), run.trainer.clone());
    let handle = std::thread::Builder::new()
        .name("lmbff-train".into())
        .spawn(move || {
            let _ = trainer.set(crate::thread_no());
            ON_TRAINING_THREAD.with(|t| t.set(true));
            let cb = cb;
            let mut report = |pr: crate::train::Progress| -> bool {
                *progress.lock() = (pr.step, pr.total);
                let stage = match pr.stage {
                    crate::train::Stage::Adapt => LMBFF_STAGE_ADAPT,
                    crate::train::Stage::Train => LMBFF_STAGE_TRAIN,
                    crate::train::Stage::Evaluate => LMBFF_STAGE_EVALUATE,
                };
                // A cancelled run starts no more calls (user_data must stay valid until
                // the run is waited for or freed: a cancel may land just after this check).
                if control.load(Ordering::SeqCst) == CANCELLING {
                    return false;
                }
                // SAFETY: the host's callback, with its own user_data.
                let go_on = cb.f.map(|f| unsafe { f(stage, pr.step, pr.total, pr.loss, pr.metric, cb.user_data) }).unwrap_or(true);
                go_on && control.load(Ordering::SeqCst) != CANCELLING
            };
            let stop = run_control.clone();
            let cancelled = move || stop.load(Ordering::SeqCst) == CANCELLING;
            // The pin is dropped when the run ends, inside train_when_free.
            let result = super::catch_quietly(|| crate::task::train_when_free(&snapshot, &p, pin, &mut report, &cancelled));
            // The outcome is decided here, once: a cancel that came before this (after
            // the last step, while the version was evaluated or saved) still cancels,
            // and one after it does nothing.
            let result = match result {
                Ok(Ok(v)) if run_control.compare_exchange(GOING, DECIDED, Ordering::SeqCst, Ordering::SeqCst).is_err() => {
                    super::catch_quietly(|| crate::task::cancel_saved(&snapshot, v))
                }
                other => other,
            };
            *outcome.lock() = Some(match result {
                Ok(Ok(v)) => Ok(std::ffi::CString::new(v).unwrap_or_default()),
                Ok(Err(e)) => Err((super::status_of(&e), e.to_string())),
                Err(what) => Err((lmbff_status::LMBFF_ERR_INTERNAL, what)),
            });
        })
        .map_err(|e| Error::Runtime(format!("cannot start the training thread: {e}")))?;
    *run.thread.lock() = Some(handle);
    Ok(run)
}

#[cfg(not(feature = "train"))]
unsafe fn start(_: *mut lmbff_task, _: *const lmbff_train_params, _: Callback) -> Result<lmbff_run> {
    Err(Error::NoTraining("lmbff_train_start"))
}

/// State of a run (LMBFF_RUN_*) and its progress (`step` of `total`; `total` is 0
/// until the run reports its first step, since the schedule depends on the method it
/// takes, and a stage's total may differ from the next's); any output pointer may be
/// NULL. Never blocks.
///
/// # Safety
/// `run` is a live run; output pointers are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn lmbff_run_poll(run: *const lmbff_run, state: *mut i32, step: *mut usize, total: *mut usize) -> lmbff_status {
    guard(|| {
        let r = run.as_ref().ok_or_else(|| Error::InvalidArgument("run is NULL".into()))?;
        let s = match &*r.outcome.lock() {
            None => LMBFF_RUN_RUNNING,
            Some(Ok(_)) => LMBFF_RUN_SUCCEEDED,
            Some(Err((lmbff_status::LMBFF_ERR_CANCELLED, _))) => LMBFF_RUN_CANCELLED,
            Some(Err(_)) => LMBFF_RUN_FAILED,
        };
        if !state.is_null() {
            *state = s;
        }
        let (at, of) = *r.progress.lock();
        if !step.is_null() {
            *step = at;
        }
        if !total.is_null() {
            *total = of;
        }
        Ok(())
    })
}

/// Asks the run to stop (from any thread); it ends LMBFF_ERR_CANCELLED at its next step,
/// or within 50 ms if it is still waiting for another run of this process to end (runs
/// in one process train one at a time). Once this returns, the run's progress callback
/// is not started again, but the training thread may still be inside a call it began
/// (or had just decided to begin) before: the callback and its user_data stay valid until
/// lmbff_run_wait or lmbff_run_free returns. (Waiting for that call here could deadlock a
/// host whose callback takes a lock held by the thread that cancels.) A cancel that comes
/// after the run saved its version, before it decided its outcome, deletes that version;
/// one that cannot be deleted (another run took it as its warm start meanwhile, an I/O
/// error) is the run's result instead (LMBFF_OK, with a warning logged), so that no
/// version is left unnamed. A cancel after the outcome is decided (the run's last act,
/// just before lmbff_run_poll reports it ended) does nothing: a host that cancels may
/// still get LMBFF_OK and a version from lmbff_run_wait.
///
/// # Safety
/// `run` is a live run.
#[no_mangle]
pub unsafe extern "C" fn lmbff_run_cancel(run: *const lmbff_run) -> lmbff_status {
    guard(|| {
        let r = run.as_ref().ok_or_else(|| Error::InvalidArgument("run is NULL".into()))?;
        r.cancel();
        Ok(())
    })
}

/// Waits for the run to end and returns its outcome: LMBFF_OK (then lmbff_run_version
/// names the new model version) or the run's error, with its message (a run whose
/// training diverged, its weights giving non-finite scores, is LMBFF_ERR_INVALID_ARGUMENT
/// naming the learning rate, and saves nothing). Any number of
/// threads may wait (none may free the run before they all return). Called from the
/// run's own progress or log callback it returns LMBFF_ERR_INVALID_ARGUMENT at once
/// (that thread is the run), and so it does from another run's callback while this run
/// has not ended (the process trains one run at a time, and the calling run keeps the
/// turn until its callback returns).
///
/// # Safety
/// `run` is a live run.
#[no_mangle]
pub unsafe extern "C" fn lmbff_run_wait(run: *const lmbff_run) -> lmbff_status {
    let r = match run.as_ref() {
        Some(r) => r,
        None => {
            set_last_error("invalid argument: run is NULL");
            return lmbff_status::LMBFF_ERR_INVALID_ARGUMENT;
        }
    };
    if r.on_own_thread() {
        set_last_error("invalid argument: lmbff_run_wait called from the run's own thread (its progress or log callback) would wait for itself");
        return lmbff_status::LMBFF_ERR_INVALID_ARGUMENT;
    }
    if on_a_training_thread() && r.outcome.lock().is_none() {
        set_last_error(
            "invalid argument: lmbff_run_wait called from another run's progress or log callback: that run holds the process's \
             one training turn, so this one cannot end before the callback returns; wait for it from another thread",
        );
        return lmbff_status::LMBFF_ERR_INVALID_ARGUMENT;
    }
    {
        // Held while joining: a second waiter blocks here until the run has ended.
        let mut thread = r.thread.lock();
        if let Some(h) = thread.take() {
            let _ = h.join();
        }
    }
    match &*r.outcome.lock() {
        Some(Ok(_)) => lmbff_status::LMBFF_OK,
        Some(Err((status, message))) => {
            set_last_error(message);
            *status
        }
        None => {
            set_last_error("internal error (please report): the run ended without an outcome");
            lmbff_status::LMBFF_ERR_INTERNAL
        }
    }
}

/// The model version a succeeded run made ("v1", "v2", ...), or NULL before success.
/// Borrowed: valid while the run lives.
///
/// # Safety
/// `run` is NULL or a live run.
#[no_mangle]
pub unsafe extern "C" fn lmbff_run_version(run: *const lmbff_run) -> *const c_char {
    let Some(r) = run.as_ref() else { return std::ptr::null() };
    let guard = r.outcome.lock();
    match &*guard {
        // The CString lives in the run's outcome, which is never replaced once set.
        Some(Ok(v)) => v.as_ptr(),
        _ => std::ptr::null(),
    }
}

/// Frees a run (NULL is a no-op); a run still going is cancelled and waited for (a run
/// still waiting behind another run of this process stops within 50 ms). Freed from its
/// own progress or log callback, the run is cancelled and its thread ends by itself. No
/// other call on the run may be in progress or follow: free it after every
/// lmbff_run_wait on it has returned.
///
/// # Safety
/// `run` is NULL or a live run on which no other call is in progress.
#[no_mangle]
pub unsafe extern "C" fn lmbff_run_free(run: *mut lmbff_run) {
    if run.is_null() {
        return;
    }
    let r = Box::from_raw(run);
    r.cancel();
    let handle = r.thread.lock().take();
    // From the run's own callback the thread cannot be joined: it is cancelled and left
    // to end by itself (it holds only its own shares of the run's state).
    if let Some(h) = handle.filter(|_| !r.on_own_thread()) {
        let _ = h.join();
    }
}

/// Trains synchronously (start, then wait) and copies the new version's name into
/// `version` (capacity `capacity` bytes, NUL included; may be NULL to skip). A buffer too
/// small for the name is an LMBFF_ERR_INVALID_ARGUMENT whose message names the version,
/// which is trained and saved all the same. Called from a run's progress or log
/// callback it is LMBFF_ERR_INVALID_ARGUMENT at once, nothing started (it would wait
/// for the run whose callback it is in): use lmbff_train_start there.
///
/// # Safety
/// As lmbff_train_start; `version` is NULL or holds `capacity` bytes.
#[no_mangle]
pub unsafe extern "C" fn lmbff_train(
    task: *mut lmbff_task,
    params: *const lmbff_train_params,
    progress: lmbff_progress_fn,
    user_data: *mut c_void,
    version: *mut c_char,
    capacity: usize,
) -> lmbff_status {
    if on_a_training_thread() {
        set_last_error(
            "invalid argument: lmbff_train called from a run's progress or log callback: that run holds the process's one \
             training turn, so the new run would wait for it while it waits for the callback; call lmbff_train_start there \
             and wait for the run from another thread",
        );
        return lmbff_status::LMBFF_ERR_INVALID_ARGUMENT;
    }
    let mut run = std::ptr::null_mut();
    let s = lmbff_train_start(task, params, progress, user_data, &mut run);
    if s != lmbff_status::LMBFF_OK {
        return s;
    }
    let s = lmbff_run_wait(run);
    let s = if s == lmbff_status::LMBFF_OK && !version.is_null() {
        let made = std::ffi::CStr::from_ptr(lmbff_run_version(run)).to_string_lossy().into_owned();
        guard(|| {
            write_c_string(&made, version, capacity, std::ptr::null_mut(), "the version").map_err(|_| {
                Error::InvalidArgument(format!(
                    "version {made} was trained and saved, but the buffer holds {capacity} bytes and its name needs {}",
                    made.len() + 1
                ))
            })
        })
    } else {
        s
    };
    let message = std::ffi::CStr::from_ptr(super::lmbff_last_error()).to_owned();
    lmbff_run_free(run);
    // Already cut to size where it was set: carried as it is (cut again, it lost the
    // size it named).
    super::carry_last_error(&message.to_string_lossy());
    s
}

/// Writes the task's model versions, oldest first, as one string of names separated by
/// '\n' into `buf` (`capacity` bytes, NUL included); *needed (if not NULL) gets the size
/// required. With a too-small buffer (or NULL) only *needed is set and the call returns
/// LMBFF_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// `task` is a live task; `buf` is NULL or holds `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_versions(task: *mut lmbff_task, buf: *mut c_char, capacity: usize, needed: *mut usize) -> lmbff_status {
    guard(|| {
        let list = super::task::with_task(task, |t| versions_of(t))?.join("\n");
        write_c_string(&list, buf, capacity, needed, "the list")
    })
}

/// Deletes model version `version` of the task, in one step (its folder is renamed
/// aside, then emptied). Its name is never given to a later version: versions are
/// numbered past every one made before, deleted or not, also when several processes
/// train the task at once. A version folder that is a symbolic link loses the link,
/// never what it points to. A version that a run of this process warm-starts from
/// cannot be deleted from its lmbff_train_start until the run ends
/// (LMBFF_ERR_BUSY; the run may still be waiting its turn, not having read it); a run
/// in another process that has read it goes on (the model and tokenizer it read are
/// held in memory), and its new version is whole.
///
/// # Safety
/// `task` is a live task; `version` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_delete_version(task: *mut lmbff_task, version: *const c_char) -> lmbff_status {
    guard(|| {
        let v = str_arg(version, "version")?;
        super::task::with_task(task, |t| delete_of(t, v))
    })
}

/// Exports model version `version` of the task to the export directory `out_dir`, for
/// lmbff_predictor_open (`fp16`: weight matrices stored as fp16). `out_dir` may be new,
/// empty or an earlier export (replaced atomically) that holds only what its write made
/// (listed in its `.lmbff-output`); any other folder, the task's own included, is
/// refused (LMBFF_ERR_INVALID_ARGUMENT, naming what it holds) and left as it is. The
/// export does not take the task (it reads the folder the task's last call left): other
/// calls on it, from other threads too, go on meanwhile, and neither gets
/// LMBFF_ERR_BUSY. A version deleted meanwhile is named so. A version whose prompt this
/// lmbff renders otherwise than the lmbff that trained it did (a template or tokenizer
/// rule changed since; recorded in its lmbff.json since 2026-12-08) is LMBFF_ERR_FORMAT:
/// its export would feed the model ids it was not trained on.
///
/// # Safety
/// `task` is a live task; strings are NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_export(task: *mut lmbff_task, version: *const c_char, out_dir: *const c_char, fp16: bool) -> lmbff_status {
    guard(|| {
        let (v, out) = (str_arg(version, "version")?, std::path::PathBuf::from(str_arg(out_dir, "out_dir")?));
        export_of(task, v, &out, fp16)
    })
}

/// As lmbff_task_export, with the message of a failure copied into `error` as
/// lmbff_predict_with_error does, and the export made on a thread of its own (8 MiB
/// stack) that the call waits for: for hosts that export on a pool thread (Node's
/// asynchronous calls), whose other calls on the task go on meanwhile.
///
/// # Safety
/// As lmbff_task_export; `error` is NULL or points to `capacity` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_export_with_error(
    task: *mut lmbff_task,
    version: *const c_char,
    out_dir: *const c_char,
    fp16: bool,
    error: *mut c_char,
    capacity: usize,
) -> lmbff_status {
    // SAFETY (of the call on another thread): as this function's own contract; the task
    // is used there only under its one-thread-at-a-time rule.
    super::predict::with_error(super::predict::OwnThread(move || unsafe { lmbff_task_export(task, version, out_dir, fp16) }), error, capacity)
}

/// Sets libtorch's intra-op threads for training: 1 to 256, or to the machine's hardware
/// threads where it has more (libtorch starts them at once), or 0 for the cores this
/// process may use (as a predictor's threads 0); anything else is
/// LMBFF_ERR_INVALID_ARGUMENT. Process-wide: it affects every
/// run in the process (and any other libtorch user in it).
#[no_mangle]
pub extern "C" fn lmbff_set_torch_threads(threads: u32) -> lmbff_status {
    guard(|| set_threads(threads))
}

#[cfg(feature = "train")]
fn task_dir(t: &crate::task::Task) -> Result<&std::path::Path> {
    t.dir().ok_or_else(super::task::not_saved)
}

#[cfg(feature = "train")]
fn versions_of(t: &crate::task::Task) -> Result<Vec<String>> {
    match t.dir() {
        Some(d) => crate::task::versions(d),
        None => Ok(Vec::new()),
    }
}
#[cfg(feature = "train")]
fn delete_of(t: &crate::task::Task, v: &str) -> Result<()> {
    crate::task::delete_version(task_dir(t)?, v)
}
/// The export of `task`'s version `v`, from the folder its last call left (the task is
/// not taken).
#[cfg(feature = "train")]
unsafe fn export_of(task: *mut lmbff_task, v: &str, out: &std::path::Path, fp16: bool) -> Result<()> {
    let dir = super::task::folder_of(task)?;
    let weights = if fp16 { crate::export::WeightType::Fp16 } else { crate::export::WeightType::Fp32 };
    let options = crate::export::ExportOptions { weights, ..Default::default() };
    // A bug in the export leaves the task unusable, as one inside any call on it does;
    // a free from a log callback inside it waits for it, as in any call on the task.
    super::task::as_call_on(task, || {
        super::catch_quietly(|| crate::task::export_version(&dir, v, out, &options)).unwrap_or_else(|what| {
            super::task::mark_broken(task);
            Err(Error::Internal(what))
        })
    })
}
#[cfg(feature = "train")]
fn set_threads(n: u32) -> Result<()> {
    tch::set_num_threads(crate::torch_threads(n.into(), "threads")?);
    Ok(())
}

#[cfg(not(feature = "train"))]
fn versions_of(_: &crate::task::Task) -> Result<Vec<String>> {
    Err(Error::NoTraining("lmbff_task_versions"))
}
#[cfg(not(feature = "train"))]
fn delete_of(_: &crate::task::Task, _: &str) -> Result<()> {
    Err(Error::NoTraining("lmbff_task_delete_version"))
}
#[cfg(not(feature = "train"))]
unsafe fn export_of(_: *mut lmbff_task, _: &str, _: &std::path::Path, _: bool) -> Result<()> {
    Err(Error::NoTraining("lmbff_task_export"))
}
#[cfg(not(feature = "train"))]
fn set_threads(_: u32) -> Result<()> {
    Err(Error::NoTraining("lmbff_set_torch_threads"))
}
