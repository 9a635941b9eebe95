//! Predictors and their results at the C ABI, plus export (training builds only).

use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{guard, lmbff_status, str_arg, write_c_string};
use crate::prompt::Example;
use crate::serve::{Prediction, Predictor, PredictorOptions};
use crate::{Error, Result};

/// An open predictor over an export directory. Thread-safe: any number of threads may
/// call lmbff_predict on one predictor at once.
pub struct lmbff_predictor {
    inner: Predictor,
    labels: Vec<CString>,
    broken: AtomicBool,
    /// Held shared by each lmbff_predict for its whole call, and whole by
    /// lmbff_predictor_free, which so waits for the calls under way.
    calls: parking_lot::RwLock<()>,
}

/// The predictions of one lmbff_predict call.
pub struct lmbff_predictions {
    rows: Vec<Prediction>,
    /// The labels of the predictor that made them, by which the Label Studio writer
    /// names their classes.
    labels: Vec<String>,
    /// The model version of the export that made them (the Label Studio default): a
    /// predictor opened later on a folder exported again would name its own.
    version: String,
}

/// Options of lmbff_predictor_open. Get defaults from lmbff_predictor_default_params()
/// and change fields; `struct_size` lets the struct grow in later versions.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct lmbff_predictor_params {
    /// sizeof(lmbff_predictor_params), set by lmbff_predictor_default_params().
    pub struct_size: usize,
    /// ONNX Runtime intra-op threads per session (0: the available cores divided among
    /// the sessions, at least 1; at most 256, and sessions x threads at most 256 or
    /// twice the machine's hardware threads where that is more, counting a
    /// similarity-filtered export's second pool).
    pub threads: u32,
    /// Sessions in the pool: how many calls run at once (each holds the weights; 1 to 64).
    /// A similarity-filtered export's sentence encoder, which picks each input's
    /// demonstrations, has as many sessions of its own.
    pub sessions: u32,
    /// Largest batch run at once (1 to 4096); larger calls are split (inputs sorted by
    /// length within a window of 8 batches, which a call reads at a time).
    pub max_batch: u32,
    /// Path of libonnxruntime.so, or NULL: LMBFF_ORT_LIB, ORT_DYLIB_PATH, then
    /// libonnxruntime.so* next to liblmbff.so (a path given that is not a file is an
    /// error, never a fallback). The first predictor opened loads it for the whole process.
    pub ort_library: *const c_char,
}

/// Fills `*params` (`size` bytes: pass sizeof(lmbff_predictor_params)) with the
/// defaults of lmbff_predictor_default_params(), writing only the bytes the host has
/// (see lmbff_task_params_init).
///
/// # Safety
/// `params` is NULL or points to at least `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictor_params_init(params: *mut lmbff_predictor_params, size: usize) -> lmbff_status {
    guard(|| super::init_params(params, size, lmbff_predictor_default_params(), &[], "lmbff_predictor_params_init"))
}

/// Default predictor options (threads 0 = all cores, 1 session, batches of up to 16),
/// returned by value (see lmbff_task_default_params: a host that must run with later
/// libraries uses lmbff_predictor_params_init).
#[no_mangle]
pub extern "C" fn lmbff_predictor_default_params() -> lmbff_predictor_params {
    lmbff_predictor_params {
        struct_size: std::mem::size_of::<lmbff_predictor_params>(),
        threads: 0,
        sessions: 1,
        max_batch: 16,
        ort_library: std::ptr::null(),
    }
}

/// Opens the export directory `export_dir` (written by lmbff_export or `lmbff export`).
/// `params` may be NULL for the defaults. On success *out holds a predictor to free with
/// lmbff_predictor_free. Loads ONNX Runtime; never loads libtorch. A directory that does
/// not exist (or is a file), or a file the process may not read, is LMBFF_ERR_IO; one
/// without an export manifest, or with a file that does not hold (a model.onnx ONNX
/// Runtime cannot load, a missing tokenizer or one the tokenizers library cannot parse,
/// a task or method this library does not serve), LMBFF_ERR_FORMAT; an empty path,
/// LMBFF_ERR_INVALID_ARGUMENT. An export that replaces
/// the folder while it opens (a new version exported into it) is waited out: the folder
/// is read again, so a predictor never mixes two versions' files; replaced 5 times in a
/// row, LMBFF_ERR_CONFLICT.
///
/// # Safety
/// `export_dir` is a NUL-terminated string; `params` is NULL or points to params set up by
/// lmbff_predictor_params_init or lmbff_predictor_default_params(); `out` is a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictor_open(
    export_dir: *const c_char,
    params: *const lmbff_predictor_params,
    out: *mut *mut lmbff_predictor,
) -> lmbff_status {
    guard(|| {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".into()));
        }
        *out = std::ptr::null_mut();
        let dir = PathBuf::from(str_arg(export_dir, "export_dir")?);
        let mut opts = PredictorOptions::default();
        if !params.is_null() {
            // Read as its struct_size says (no field past it), as the other params are.
            let p = super::read_params(params, lmbff_predictor_default_params(), &[], &[], "lmbff_predictor_default_params")?;
            opts.threads = p.threads as usize;
            opts.sessions = p.sessions as usize;
            opts.max_batch = p.max_batch as usize;
            if !p.ort_library.is_null() {
                opts.ort_library = Some(PathBuf::from(str_arg(p.ort_library, "params.ort_library")?));
            }
        }
        let inner = Predictor::open(&dir, &opts)?;
        let labels = inner.labels().iter().map(|l| CString::new(l.replace('\0', " ")).unwrap_or_default()).collect();
        *out = Box::into_raw(Box::new(lmbff_predictor { inner, labels, broken: AtomicBool::new(false), calls: parking_lot::RwLock::new(()) }));
        Ok(())
    })
}

/// Frees a predictor (NULL is a no-op). Predictions under way on other threads are
/// waited for (a safety net: the host still orders its calls, for a call just begun may
/// not have reached the predictor yet); no call on it may start once this is called, and
/// it is not called from a log callback inside a call on the same predictor (it would
/// wait for itself).
///
/// # Safety
/// `p` is NULL or a predictor from lmbff_predictor_open, not yet freed, on which no call
/// starts after this one.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictor_free(p: *mut lmbff_predictor) {
    if !p.is_null() {
        drop((*p).calls.write());
        let _ = super::catch_quietly(|| drop(Box::from_raw(p)));
    }
}

/// Whether the export is multi-label (one yes/no prompt or head per label): then
/// lmbff_predictions_probs gives each label's own probability (they do not sum to 1), a
/// label applies at 0.5 or more (the manifest's threshold, 0.5 in every export lmbff
/// writes; lmbff_predictions_applies), lmbff_predictions_get's `label` is the most
/// probable, `margin` the least certain label's distance from the threshold
/// scaled to [0, 1], and `entropy` the sum of the labels' yes/no entropies. False if `p`
/// is NULL.
///
/// # Safety
/// `p` is NULL or a live predictor.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictor_multi_label(p: *const lmbff_predictor) -> bool {
    p.as_ref().is_some_and(|p| p.inner.is_multi_label())
}

/// Whether the export reads pairs of texts (a two-sentence template: lmbff_predict's
/// `texts_b` is then required). A host serving an export it did not make learns here
/// what to pass. False if `p` is NULL.
///
/// # Safety
/// `p` is NULL or a live predictor.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictor_reads_pairs(p: *const lmbff_predictor) -> bool {
    p.as_ref().is_some_and(|p| p.inner.reads_pairs())
}

/// Whether the export is a regression (two pole labels, each input scored on a range:
/// lmbff_predictions_score); with `low` and `high` not NULL, they get the range. False
/// (and `low`, `high` untouched) if `p` is NULL or the export classifies.
///
/// # Safety
/// `p` is NULL or a live predictor; `low` and `high` are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictor_regression(p: *const lmbff_predictor, low: *mut f32, high: *mut f32) -> bool {
    let Some((l, h)) = p.as_ref().and_then(|p| p.inner.regression_range()) else { return false };
    if let Some(low) = low.as_mut() {
        *low = l;
    }
    if let Some(high) = high.as_mut() {
        *high = h;
    }
    true
}

/// The predictor behind `p`: NULL is an argument error; one that hit an internal error
/// earlier is refused as `Internal` (the header's code for a handle no longer usable).
unsafe fn usable<'a>(p: *const lmbff_predictor) -> Result<&'a lmbff_predictor> {
    let p = p.as_ref().ok_or_else(|| Error::InvalidArgument("predictor is NULL".into()))?;
    if p.broken.load(Ordering::Relaxed) {
        return Err(Error::Internal("this predictor hit an internal error earlier and is unusable: free it and open the export again".into()));
    }
    Ok(p)
}

/// Number of classes, or of labels for a multi-label export (0 if `p` is NULL).
///
/// # Safety
/// `p` is NULL or a live predictor.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictor_num_labels(p: *const lmbff_predictor) -> usize {
    p.as_ref().map(|p| p.labels.len()).unwrap_or(0)
}

/// Name of class (or multi-label label) `i` (NULL if out of range). Borrowed: valid while the predictor lives.
///
/// # Safety
/// `p` is NULL or a live predictor.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictor_label(p: *const lmbff_predictor, i: usize) -> *const c_char {
    p.as_ref().and_then(|p| p.labels.get(i)).map(|l| l.as_ptr()).unwrap_or(std::ptr::null())
}

/// Predicts `n` inputs: `texts[i]`, paired with `texts_b[i]` for two-sentence templates
/// (`texts_b` NULL otherwise: a second text for a one-sentence template is
/// LMBFF_ERR_INVALID_ARGUMENT, naming the input). n = 0 gives an empty result. Texts over the length limit
/// are truncated as the export's manifest says (the mask is kept); of a long text only as
/// much is tokenized as truncation keeps (a few kilobytes past it); a stretch with no
/// space, tab or line break ends the text once 64 KiB of it is read (256 bytes a token
/// where max_len is over 256; docs/export.md).
/// A model that gives an input a probability that is not a number (weights that
/// diverged in training) is LMBFF_ERR_FORMAT naming the input, never a NaN result. On
/// success *out holds the results, to free with lmbff_predictions_free.
///
/// # Safety
/// `texts` (and `texts_b` if not NULL) point to `n` NUL-terminated strings; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predict(
    p: *const lmbff_predictor,
    texts: *const *const c_char,
    texts_b: *const *const c_char,
    n: usize,
    out: *mut *mut lmbff_predictions,
) -> lmbff_status {
    guard(|| {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".into()));
        }
        *out = std::ptr::null_mut();
        let p = usable(p)?;
        // Recursive: a log callback inside this call may predict with it too, also while
        // lmbff_predictor_free waits.
        let _call = p.calls.read_recursive();
        if n > 0 && texts.is_null() {
            return Err(Error::InvalidArgument("texts is NULL".into()));
        }
        let mut inputs = Vec::new();
        inputs.try_reserve_exact(n).map_err(|_| Error::InvalidArgument(format!("n is {n}: more inputs than memory holds")))?;
        for i in 0..n {
            let a = str_arg(*texts.add(i), &format!("texts[{i}]"))?.to_string();
            let b = if texts_b.is_null() { None } else { Some(str_arg(*texts_b.add(i), &format!("texts_b[{i}]"))?.to_string()) };
            inputs.push(Example { text_a: a, text_b: b, label: None });
        }
        let rows = match super::catch_quietly(|| p.inner.predict(&inputs)) {
            Ok(r) => r?,
            Err(what) => {
                p.broken.store(true, Ordering::Relaxed);
                return Err(Error::Internal(what));
            }
        };
        *out = Box::into_raw(Box::new(lmbff_predictions { rows, labels: p.inner.labels().to_vec(), version: p.inner.manifest().model.version.clone() }));
        Ok(())
    })
}

/// As lmbff_predict, and on failure also copies the message lmbff_last_error() gives
/// into `error` (`capacity` bytes; cut at a character boundary to fit, NUL-terminated;
/// "" on success; nothing is written when `error` is NULL or `capacity` is 0). For hosts
/// that make the call on a pool thread and read its outcome on another, where the
/// calling thread's lmbff_last_error() is out of reach (Node's asynchronous calls).
/// A message is at most 4 KiB and a short suffix: 4160 bytes hold any whole.
/// The batch runs on a thread of its own with an 8 MiB stack, which the call waits for:
/// such hosts may call from a small stack (koffi's asynchronous calls run on 128 KiB).
///
/// # Safety
/// As lmbff_predict; `error` is NULL or points to `capacity` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predict_with_error(
    p: *const lmbff_predictor,
    texts: *const *const c_char,
    texts_b: *const *const c_char,
    n: usize,
    out: *mut *mut lmbff_predictions,
    error: *mut c_char,
    capacity: usize,
) -> lmbff_status {
    // SAFETY (of the call on another thread): as this function's own contract; the
    // predictor may be used from any thread (lmbff.h).
    // NULL on every failure, one to start the call's thread included.
    if !out.is_null() {
        *out = std::ptr::null_mut();
    }
    with_error(OwnThread(move || unsafe { lmbff_predict(p, texts, texts_b, n, out) }), error, capacity)
}

/// As lmbff_predictor_open, with the message of a failure copied into `error` as
/// lmbff_predict_with_error does, and the opening done on a thread of its own (8 MiB
/// stack) that the call waits for: for hosts that open on a pool thread (Node's
/// asynchronous calls).
///
/// # Safety
/// As lmbff_predictor_open; `error` is NULL or points to `capacity` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictor_open_with_error(
    export_dir: *const c_char,
    params: *const lmbff_predictor_params,
    out: *mut *mut lmbff_predictor,
    error: *mut c_char,
    capacity: usize,
) -> lmbff_status {
    // SAFETY (of the call on another thread): as this function's own contract.
    if !out.is_null() {
        *out = std::ptr::null_mut();
    }
    with_error(OwnThread(move || unsafe { lmbff_predictor_open(export_dir, params, out) }), error, capacity)
}

/// An lmbff call moved to the thread that makes it: its pointer arguments stay valid
/// there, since the caller waits for that thread ([`with_error`]).
pub(super) struct OwnThread<F>(pub(super) F);
// SAFETY: see the type's comment; each wrapped call may be made from any thread.
unsafe impl<F> Send for OwnThread<F> {}
impl<F: FnOnce() -> lmbff_status> OwnThread<F> {
    /// Makes the call; its message where it fails.
    fn call(self) -> (lmbff_status, String) {
        let status = (self.0)();
        let message = if status == lmbff_status::LMBFF_OK { String::new() } else { last_error_string() };
        (status, message)
    }
}

/// Makes `call` on a thread of its own with an 8 MiB stack and waits for it; sets this
/// thread's lmbff_last_error() to its message and copies that into `error` (`capacity`
/// bytes, cut at a character boundary, NUL-terminated; "" on success).
///
/// # Safety
/// `error` is NULL or points to `capacity` writable bytes.
pub(super) unsafe fn with_error<F: FnOnce() -> lmbff_status>(call: OwnThread<F>, error: *mut c_char, capacity: usize) -> lmbff_status {
    // A call made from inside a log callback is so on its own thread too: its messages
    // are not delivered (lmbff_set_log_callback), where they would reach the host's
    // callback on a second thread while the first still runs (a callback holding a lock
    // waited for itself).
    let inside = crate::log::in_callback();
    let ran = std::thread::scope(|scope| {
        let work = move || {
            let _inside = inside.then(crate::log::InCallback::enter);
            call.call()
        };
        std::thread::Builder::new().name("lmbff-call".into()).stack_size(8 << 20).spawn_scoped(scope, work).map(|t| t.join())
    });
    let (status, message) = match ran {
        Ok(Ok(done)) => done,
        // The calls catch their panics: a panic here is outside them.
        Ok(Err(_)) => (lmbff_status::LMBFF_ERR_INTERNAL, "internal error (please report): the call's thread panicked".to_string()),
        Err(e) => (lmbff_status::LMBFF_ERR_RUNTIME, format!("could not start the call's thread: {e}")),
    };
    if status != lmbff_status::LMBFF_OK {
        super::carry_last_error(&message);
    }
    if !error.is_null() && capacity > 0 {
        let cut = super::cut_at(&message, capacity - 1);
        // Pointer writes: the caller's buffer may be uninitialised memory.
        std::ptr::copy_nonoverlapping(message.as_ptr().cast::<c_char>(), error, cut);
        *error.add(cut) = 0;
    }
    status
}

/// This thread's lmbff_last_error() message.
fn last_error_string() -> String {
    // SAFETY: lmbff_last_error returns a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(super::lmbff_last_error()) }.to_string_lossy().into_owned()
}

/// Frees predictions (NULL is a no-op).
///
/// # Safety
/// `r` is NULL or from lmbff_predict, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictions_free(r: *mut lmbff_predictions) {
    if !r.is_null() {
        drop(Box::from_raw(r));
    }
}

/// Number of predictions (0 if `r` is NULL).
///
/// # Safety
/// `r` is NULL or live predictions.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictions_count(r: *const lmbff_predictions) -> usize {
    r.as_ref().map(|r| r.rows.len()).unwrap_or(0)
}

/// The predicted class of input `i`, with its uncertainty: `margin` (top probability
/// minus the second) and `entropy` (nats). Any output pointer may be NULL.
///
/// # Safety
/// `r` is live predictions; output pointers are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictions_get(
    r: *const lmbff_predictions,
    i: usize,
    label: *mut u32,
    margin: *mut f32,
    entropy: *mut f32,
) -> lmbff_status {
    guard(|| {
        let row = row(r, i)?;
        if !label.is_null() {
            *label = row.label as u32;
        }
        if !margin.is_null() {
            *margin = row.margin;
        }
        if !entropy.is_null() {
            *entropy = row.entropy;
        }
        Ok(())
    })
}

/// Copies the class probabilities of input `i` into `probs`, which holds `capacity`
/// floats (at least lmbff_predictor_num_labels()).
///
/// # Safety
/// `r` is live predictions; `probs` points to `capacity` floats.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictions_probs(r: *const lmbff_predictions, i: usize, probs: *mut f32, capacity: usize) -> lmbff_status {
    guard(|| {
        let row = row(r, i)?;
        if probs.is_null() {
            return Err(Error::InvalidArgument("probs is NULL".into()));
        }
        if capacity < row.probs.len() {
            return Err(Error::InvalidArgument(format!("probs needs room for {} floats (capacity {capacity})", row.probs.len())));
        }
        std::ptr::copy_nonoverlapping(row.probs.as_ptr(), probs, row.probs.len());
        Ok(())
    })
}

/// Whether `label` applies to input `row_index`: `*applies` is true for the predicted
/// class of a classifier, and for each label at or over the threshold of a multi-label
/// export.
///
/// # Safety
/// `r` is live predictions; `applies` is a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictions_applies(r: *const lmbff_predictions, row_index: usize, label: usize, applies: *mut bool) -> lmbff_status {
    guard(|| {
        let row = row(r, row_index)?;
        if label >= row.probs.len() {
            return Err(Error::InvalidArgument(format!("label {label} is out of range ({} labels)", row.probs.len())));
        }
        if applies.is_null() {
            return Err(Error::InvalidArgument("applies is NULL".into()));
        }
        *applies = row.labels.contains(&label);
        Ok(())
    })
}

/// The regression score of input `i` (exports made with a regression range); for a
/// classification export it returns LMBFF_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// `r` is live predictions; `score` is a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictions_score(r: *const lmbff_predictions, i: usize, score: *mut f32) -> lmbff_status {
    guard(|| {
        let s = row(r, i)?.score.ok_or_else(|| Error::InvalidArgument("this export is a classifier: it has no score".into()))?;
        if score.is_null() {
            return Err(Error::InvalidArgument("score is NULL".into()));
        }
        *score = s;
        Ok(())
    })
}

unsafe fn row<'a>(r: *const lmbff_predictions, i: usize) -> Result<&'a Prediction> {
    let r = r.as_ref().ok_or_else(|| Error::InvalidArgument("predictions is NULL".into()))?;
    r.rows.get(i).ok_or_else(|| Error::InvalidArgument(format!("index {i} is out of range ({} predictions)", r.rows.len())))
}

/// Exports a trained checkpoint directory (a `lmbff train --out` directory, with its
/// lmbff.json) to an export directory for lmbff_predictor_open. `fp16` stores weight
/// matrices as fp16. `out_dir` may be new, empty or an earlier export (replaced
/// atomically) that holds only what its write made (listed in its `.lmbff-output`);
/// any other folder is refused (LMBFF_ERR_INVALID_ARGUMENT, naming what it holds) and
/// left as it is. Returns LMBFF_ERR_NO_TRAINING in a serve-only build.
///
/// # Safety
/// `checkpoint_dir` and `out_dir` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn lmbff_export(checkpoint_dir: *const c_char, out_dir: *const c_char, fp16: bool) -> lmbff_status {
    guard(|| {
        let from = PathBuf::from(str_arg(checkpoint_dir, "checkpoint_dir")?);
        let to = PathBuf::from(str_arg(out_dir, "out_dir")?);
        export_checkpoint(&from, &to, fp16)
    })
}

#[cfg(feature = "train")]
fn export_checkpoint(from: &std::path::Path, to: &std::path::Path, fp16: bool) -> Result<()> {
    use crate::export::{ExportOptions, WeightType};
    let opts = ExportOptions { weights: if fp16 { WeightType::Fp16 } else { WeightType::Fp32 }, ..Default::default() };
    crate::export::export_checkpoint(from, to, &opts).map(|_| ())
}

#[cfg(not(feature = "train"))]
fn export_checkpoint(_: &std::path::Path, _: &std::path::Path, _: bool) -> Result<()> {
    Err(Error::NoTraining("lmbff_export"))
}

/// Writes the predictions as Label Studio predictions (JSON, one object per input, in
/// input order): `{"model_version", "score": top probability, "result": [{"from_name",
/// "to_name", "type": "choices", "value": {"choices": [label]}}]}` (a multi-label
/// export's choices are every label that applies, possibly none; a regression export's
/// result is `"type": "number", "value": {"number": score}`, without "score"), NUL-terminated, into
/// `buf` (`capacity` bytes). *needed (if not NULL) gets the size required; with a buffer
/// too small (or NULL) only *needed is set and the call returns
/// LMBFF_ERR_INVALID_ARGUMENT. `model_version` may be NULL (the model version of the
/// export that made the predictions is used, even if `p` was opened on a later one). Predictions made by a predictor with other labels than `p`'s (names or
/// order) are LMBFF_ERR_INVALID_ARGUMENT: their classes would be named wrongly.
///
/// # Safety
/// `r` and `p` are live; strings NUL-terminated or NULL where allowed; `buf` NULL or
/// `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn lmbff_predictions_label_studio_json(
    p: *const lmbff_predictor,
    r: *const lmbff_predictions,
    from_name: *const c_char,
    to_name: *const c_char,
    model_version: *const c_char,
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> lmbff_status {
    guard(|| {
        let p = usable(p)?;
        // A call on the predictor, as lmbff_predict is: a free waits for it.
        let _call = p.calls.read_recursive();
        let r = r.as_ref().ok_or_else(|| Error::InvalidArgument("predictions is NULL".into()))?;
        let (from, to) = (str_arg(from_name, "from_name")?, str_arg(to_name, "to_name")?);
        let version = if model_version.is_null() {
            r.version.clone()
        } else {
            str_arg(model_version, "model_version")?.to_string()
        };
        let labels = p.inner.labels();
        if r.labels != labels {
            return Err(Error::InvalidArgument(format!(
                "the predictions were made by a predictor with the labels {:?}, and this one has {labels:?}: pass the predictor that made them",
                r.labels
            )));
        }
        let json = crate::serve::label_studio_json(&r.rows, labels, from, to, &version)?.to_string();
        write_c_string(&json, buf, capacity, needed, "the JSON")
    })
}

