//! Labelling tasks at the C ABI: create or reopen, register examples and unlabeled
//! texts, remove and relabel by id, count per label, save.

use std::ffi::{c_char, CString};
use std::path::PathBuf;

use parking_lot::Mutex;

use super::{guard, lmbff_status, str_arg};
use crate::prompt::Truncation;
use crate::task::{Task, TaskSpec};
use crate::{Error, Result};

/// A labelling task. Not shareable: one thread at a time; a call made while another
/// thread is inside a call on the same task returns LMBFF_ERR_BUSY.
pub struct lmbff_task {
    /// Locked without waiting: a second thread gets LMBFF_ERR_BUSY, not a queue.
    inner: Mutex<Task>,
    labels: Vec<CString>,
    /// Set when a call on the task panicked (a bug): it then refuses every call.
    broken: std::sync::atomic::AtomicBool,
    /// The task's folder as its last call left it (`Task::dir`): an export reads it here,
    /// never waiting for or blocking the task's other calls.
    folder: parking_lot::Mutex<Option<PathBuf>>,
}

/// What a new task is. Get defaults from lmbff_task_params_init (or
/// lmbff_task_default_params), then set at least `model_dir`, `labels`, `label_words`
/// and `num_labels`. A struct laid out by an earlier header (before `flags` or before
/// `regression_low`), whose
/// struct_size says so, is read as such: its fields are read, and the newer ones keep
/// their defaults.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct lmbff_task_params {
    /// sizeof(lmbff_task_params), set by lmbff_task_default_params().
    pub struct_size: usize,
    /// HF model directory training starts from (config.json, tokenizer.json, weights).
    pub model_dir: *const c_char,
    /// Template, readable (`{text} It was {mask}.`; `{{` and `}}` are literal braces) or
    /// LM-BFF syntax; NULL for `{text} It was {mask}.`.
    pub template_: *const c_char,
    /// `num_labels` class names and their label words: one word, or several separated by
    /// `|` (`"great|good"`); a word may span several tokens. A class scores the mean over
    /// its words of each word's mean sub-token logit at the mask; where a template or a
    /// demonstration shows the class, its first word is used.
    pub labels: *const *const c_char,
    pub label_words: *const *const c_char,
    pub num_labels: usize,
    /// Maximum input length in tokens (default 128). A single-sentence task trained with
    /// demonstrations reads twice that (at most the model's positions), as LM-BFF does:
    /// the demonstrations keep their text; the version records the length it read.
    pub max_len: u32,
    /// LMBFF_TASK_* flags, or-ed (default 0). LMBFF_TASK_MULTI_LABEL: any number of
    /// `labels` may apply to an example; it trains as one yes/no prompt per label, or
    /// with the sentence-embedding method as one yes/no head per label.
    /// `labels` are then the label names, each read as the template's second sentence
    /// (the default template becomes `{text_a} Is it about {text_b}? {mask}.`);
    /// `label_words` holds two answer words, no then yes, or is NULL for "No" and "Yes";
    /// examples are single texts whose label string lists the labels that apply,
    /// separated by `|` (empty: none). Exports are multi-label
    /// (lmbff_predictor_multi_label).
    /// LMBFF_TASK_REGRESSION: examples are scored from `regression_low` to
    /// `regression_high` (LM-BFF's STS-B); `labels` and `label_words` are the two poles,
    /// lower then upper; an example's label string is its score ("3.5"). It trains the
    /// prompt towards [1 - s, s] over the pole words (s the score scaled to 0..1; KL
    /// divergence) and its exports output a score (lmbff_predictions_score).
    pub flags: u64,
    /// The range of a regression task's scores (LMBFF_TASK_REGRESSION).
    pub regression_low: f32,
    pub regression_high: f32,
}

/// lmbff_task_params.flags: a multi-label task.
pub const LMBFF_TASK_MULTI_LABEL: u64 = 1;
/// lmbff_task_params.flags: a regression task.
pub const LMBFF_TASK_REGRESSION: u64 = 2;

/// lmbff_task_params of hosts built before `flags` (ending with `max_len`) and before
/// `regression_low` (ending with `flags`).
const TASK_PARAMS_EARLIER: [super::EarlierLayout; 2] = [
    super::EarlierLayout {
        size: std::mem::offset_of!(lmbff_task_params, flags),
        fields_end: std::mem::offset_of!(lmbff_task_params, max_len) + std::mem::size_of::<u32>(),
    },
    super::EarlierLayout {
        size: std::mem::offset_of!(lmbff_task_params, regression_low),
        fields_end: std::mem::offset_of!(lmbff_task_params, regression_low),
    },
];

/// Fills `*params` (`size` bytes: pass sizeof(lmbff_task_params)) with the defaults of
/// lmbff_task_default_params(). Unlike that function it writes only the bytes the host
/// has, so a host built against this header keeps working with a later library whose
/// struct has grown. LMBFF_ERR_INVALID_ARGUMENT for a NULL `params` or a size that is
/// no layout of the struct.
///
/// # Safety
/// `params` is NULL or points to at least `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_params_init(params: *mut lmbff_task_params, size: usize) -> lmbff_status {
    guard(|| super::init_params(params, size, lmbff_task_default_params(), &TASK_PARAMS_EARLIER, "lmbff_task_params_init"))
}

/// Default task parameters (no model, no labels, the default template, 128 tokens),
/// returned by value: for a host that runs with the library it was built against (a
/// later library returns a larger struct than such a host has room for; a host that
/// must run with later libraries uses lmbff_task_params_init).
#[no_mangle]
pub extern "C" fn lmbff_task_default_params() -> lmbff_task_params {
    lmbff_task_params {
        struct_size: std::mem::size_of::<lmbff_task_params>(),
        model_dir: std::ptr::null(),
        template_: std::ptr::null(),
        labels: std::ptr::null(),
        label_words: std::ptr::null(),
        num_labels: 0,
        max_len: 128,
        flags: 0,
        regression_low: 0.0,
        regression_high: 1.0,
    }
}

fn wrap(inner: Task) -> *mut lmbff_task {
    let labels = inner.spec().labels.iter().map(|l| CString::new(l.replace('\0', " ")).unwrap_or_default()).collect();
    let folder = parking_lot::Mutex::new(inner.dir().map(std::path::Path::to_path_buf));
    Box::into_raw(Box::new(lmbff_task { inner: Mutex::new(inner), labels, broken: std::sync::atomic::AtomicBool::new(false), folder }))
}

thread_local! {
    /// The tasks (their addresses) whose calls this thread is inside, innermost last:
    /// tells a re-entrant call from a callback apart from another thread's.
    static IN_TASKS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Those of them freed from inside their own call (a log callback): freed when that
    /// call returns.
    static FREE_AFTER: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether this thread is inside a call on the task at `me`. (After this thread's
/// thread-locals are gone, at its exit or the process's, it is inside none: a free from
/// an atexit handler or a static destructor must not panic.)
fn in_call_on(me: usize) -> bool {
    IN_TASKS.try_with(|held| held.borrow().contains(&me)).unwrap_or(false)
}

/// This thread inside a call on the task at the address given, until dropped
/// ([`IN_TASKS`]; nothing is tracked once this thread's thread-locals are gone, at its
/// exit, when no callback runs inside a call made then).
struct InCall(bool);

impl InCall {
    fn enter(me: usize) -> Self {
        InCall(IN_TASKS.try_with(|held| held.borrow_mut().push(me)).is_ok())
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        if self.0 {
            let _ = IN_TASKS.try_with(|held| held.borrow_mut().pop());
        }
    }
}

/// Whether the task at `me` was freed from inside a call on it that this thread is
/// still in (it goes when that call returns).
fn freed_inside(me: usize) -> bool {
    FREE_AFTER.try_with(|later| later.borrow().contains(&me)).unwrap_or(false)
}

/// Frees the task at `raw` if it was freed from inside the call on it that has just
/// returned on this thread (a log callback did): nothing holds it now.
unsafe fn free_if_freed_inside(raw: *mut lmbff_task) {
    let me = raw as usize;
    if in_call_on(me) {
        return; // an outer call on it still runs on this thread
    }
    let freed = FREE_AFTER
        .try_with(|later| {
            let mut later = later.borrow_mut();
            let at = later.iter().position(|&p| p == me)?;
            Some(later.swap_remove(at))
        })
        .ok()
        .flatten();
    if freed.is_some() {
        free_now(raw);
    }
}

/// Frees the task at `raw`: a call on another thread that holds the task (which breaks
/// lmbff_task_free's rule, or raced an export, which does not take it) is waited for
/// rather than freed under.
unsafe fn free_now(raw: *mut lmbff_task) {
    drop((*raw).inner.lock());
    drop(Box::from_raw(raw));
}

/// Runs `f`, a call on the task at `raw` that does not take it (an export), as a call on
/// it for the rule of a free from a log callback inside it: the task is freed when `f`
/// returns, not under it.
#[cfg(feature = "train")]
pub(crate) unsafe fn as_call_on<T>(raw: *mut lmbff_task, f: impl FnOnce() -> T) -> T {
    let inside = InCall::enter(raw as usize);
    let out = f();
    drop(inside);
    free_if_freed_inside(raw);
    out
}

/// Marks the task unusable after an internal error (a bug) in a call on it.
#[cfg(feature = "train")]
pub(crate) unsafe fn mark_broken(raw: *mut lmbff_task) {
    if let Some(t) = raw.as_ref() {
        t.broken.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The task behind `raw`: NULL is an argument error; one that hit an internal error
/// earlier is refused.
unsafe fn usable<'a>(raw: *mut lmbff_task) -> Result<&'a lmbff_task> {
    let t = raw.as_ref().ok_or_else(|| Error::InvalidArgument("task is NULL".into()))?;
    if freed_inside(raw as usize) {
        return Err(Error::Busy("this task was freed from a log callback inside a call on it: it goes when that call returns, and takes no more calls"));
    }
    if t.broken.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Internal("this task is unusable after an internal error: free it and reopen it from its folder".into()));
    }
    Ok(t)
}

/// The error of a call that needs the task's folder (its versions) before it has one.
#[cfg(feature = "train")]
pub(crate) fn not_saved() -> Error {
    Error::InvalidArgument("the task has not been saved: it has no versions".into())
}

/// The folder the task was last saved to or opened from, read without taking the task
/// (a call on it may be under way on another thread): an error if it has none.
#[cfg(feature = "train")]
pub(crate) unsafe fn folder_of(raw: *mut lmbff_task) -> Result<PathBuf> {
    usable(raw)?.folder.lock().clone().ok_or_else(not_saved)
}

/// Runs `f` on the task with the one-thread-at-a-time rule enforced.
pub(crate) unsafe fn with_task<T>(raw: *mut lmbff_task, f: impl FnOnce(&mut Task) -> Result<T>) -> Result<T> {
    let t = usable(raw)?;
    let me = raw as usize;
    let mut task = t.inner.try_lock().ok_or_else(|| {
        if in_call_on(me) {
            Error::Busy("this task is already in a call on this thread: a log callback called back into it (call it after that call returns)")
        } else {
            Error::Busy("this task is in use by another thread (a task is used by one thread at a time)")
        }
    })?;
    let inside = InCall::enter(me);
    let result = super::catch_quietly(|| f(&mut task));
    drop(inside);
    let out = match result {
        Ok(r) => r,
        Err(what) => {
            t.broken.store(true, std::sync::atomic::Ordering::Relaxed);
            Err(Error::Internal(what))
        }
    };
    // Copied only when a call moved it (a save elsewhere, a first save).
    let mut folder = t.folder.lock();
    if folder.as_deref() != task.dir() {
        *folder = task.dir().map(std::path::Path::to_path_buf);
    }
    drop(folder);
    // The last use of `t`: a free waiting on another thread may go on once it is unlocked.
    drop(task);
    free_if_freed_inside(raw);
    out
}

pub(super) unsafe fn strings(p: *const *const c_char, n: usize, name: &str) -> Result<Vec<String>> {
    if p.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    (0..n).map(|i| str_arg(*p.add(i), &format!("{name}[{i}]")).map(str::to_string)).collect()
}

unsafe fn opt_str(p: *const c_char, name: &str) -> Result<Option<String>> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p, name).map(|s| Some(s.to_string()))
    }
}

/// Creates a task. Label names that do not hold are LMBFF_ERR_INVALID_ARGUMENT (fewer
/// than two, or none for a multi-label task, which may ask about one label; an empty or
/// repeated name, a multi-label name holding `|`,
/// a regression range that does not hold); the template and the label words (an empty or
/// repeated word, one the tokenizer cannot read) are checked against the model's
/// tokenizer (LMBFF_ERR_MODEL with the reason otherwise), and, in a library built to
/// train, max_len against the model's positions (LMBFF_ERR_INVALID_ARGUMENT; a
/// serve-only build, which cannot train, leaves that to the build that trains the task).
/// Free with lmbff_task_free.
///
/// # Safety
/// `params` points to params set up by lmbff_task_params_init or
/// lmbff_task_default_params(); `labels` holds `num_labels` strings and `label_words`
/// as many (two for a multi-label task), which the library cannot count: a shorter
/// array is read past its end; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_create(params: *const lmbff_task_params, out: *mut *mut lmbff_task) -> lmbff_status {
    guard(|| {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".into()));
        }
        *out = std::ptr::null_mut();
        let p = &super::read_params(params, lmbff_task_default_params(), &TASK_PARAMS_EARLIER, &[], "lmbff_task_default_params")?;
        if p.flags & !(LMBFF_TASK_MULTI_LABEL | LMBFF_TASK_REGRESSION) != 0 {
            return Err(Error::InvalidArgument(format!("params.flags has unknown bits ({:#x}): use LMBFF_TASK_MULTI_LABEL, LMBFF_TASK_REGRESSION", p.flags)));
        }
        let multi_label = p.flags & LMBFF_TASK_MULTI_LABEL != 0;
        let default_template = if multi_label { "{text_a} Is it about {text_b}? {mask}." } else { "{text} It was {mask}." };
        // Too few labels is named as such, before their words are read (a host with no
        // labels passes no words either); a multi-label task may ask about one.
        if p.num_labels < 2 && !multi_label {
            return Err(Error::InvalidArgument(format!("a task needs at least two labels, got {} (params.num_labels)", p.num_labels)));
        }
        if p.num_labels == 0 {
            return Err(Error::InvalidArgument("a multi-label task needs at least one label, got 0 (params.num_labels)".into()));
        }
        let label_words = match (multi_label, p.label_words.is_null()) {
            (true, true) => vec!["No".to_string(), "Yes".to_string()],
            (true, false) => strings(p.label_words, 2, "params.label_words")?,
            (false, _) => strings(p.label_words, p.num_labels, "params.label_words")?,
        };
        let spec = TaskSpec {
            model_dir: PathBuf::from(str_arg(p.model_dir, "params.model_dir")?),
            template: opt_str(p.template_, "params.template_")?.unwrap_or_else(|| default_template.into()),
            labels: strings(p.labels, p.num_labels, "params.labels")?,
            label_words,
            truncation: Truncation { max_len: p.max_len as usize, ..Truncation::default() },
            multi_label,
            regression: (p.flags & LMBFF_TASK_REGRESSION != 0).then_some((p.regression_low, p.regression_high)),
        };
        *out = wrap(Task::new(spec)?);
        Ok(())
    })
}

/// Reopens a task saved with lmbff_task_save. A directory that does not exist is
/// LMBFF_ERR_IO. A directory without a task file, or one that is malformed, of a newer
/// format, or not UTF-8, or whose settings or items do not hold (two items with one id, a
/// label out of range or listed twice, a template that does not parse) is
/// LMBFF_ERR_FORMAT, naming the problem. Examples an older lmbff saved with a second
/// sentence the template does not read (or without one it reads) open, with a warning
/// to the log callback that names them. The
/// model folder is not needed to open it (it is checked when training); when it has no
/// config.json the log callback gets a warning that names it.
///
/// # Safety
/// `dir` is a NUL-terminated string; `out` is valid.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_open(dir: *const c_char, out: *mut *mut lmbff_task) -> lmbff_status {
    guard(|| {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".into()));
        }
        *out = std::ptr::null_mut();
        *out = wrap(Task::open(&PathBuf::from(str_arg(dir, "dir")?))?);
        Ok(())
    })
}

/// Saves the task to directory `dir` (not an empty path), replacing its task.json
/// atomically and durably (an interrupted save leaves the previous version). Saves to
/// one folder take turns (a lock file, .lmbff.lock, in it), and a save never replaces
/// what this handle has not seen: LMBFF_ERR_CONFLICT when the folder's task was saved by
/// another handle or process since this one opened or last saved it (nothing is written:
/// reopen and apply the change again); LMBFF_ERR_INVALID_ARGUMENT when `dir` holds another
/// task (one this handle was not opened from or saved to), or the versions of one whose
/// task.json is gone (`<dir>/models/`: this task would take them as its own), or a model or an export
/// (lmbff.json, lmbff-export.json, adaptation.json: lmbff replaces those folders whole
/// when it writes them again), or is a new folder inside one. Model versions
/// live under the folder last saved to or opened from (`<dir>/models/`): after a save to
/// another folder (a backup copy) training, listing and exporting use that folder's, and
/// a warning is logged when versions are left behind (save back to use them again).
///
/// # Safety
/// `t` is a live task; `dir` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_save(t: *mut lmbff_task, dir: *const c_char) -> lmbff_status {
    guard(|| {
        let dir = PathBuf::from(str_arg(dir, "dir")?);
        with_task(t, |task| task.save(&dir))
    })
}

/// Frees a task (NULL is a no-op). Unsaved registrations are lost. Freed from a log
/// callback inside a call on the same task, it is freed when that call returns (calls
/// on it meanwhile get LMBFF_ERR_BUSY).
///
/// # Safety
/// `t` is NULL or a task not yet freed, with no call running on it on another thread.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_free(t: *mut lmbff_task) {
    if t.is_null() {
        return;
    }
    if in_call_on(t as usize) {
        // (Where this thread's list is gone, at its exit, the task is left allocated
        // rather than freed under the call.)
        let _ = FREE_AFTER.try_with(|later| {
            let mut later = later.borrow_mut();
            if !later.contains(&(t as usize)) {
                later.push(t as usize);
            }
        });
        return;
    }
    free_now(t);
}

/// Registers a labelled example (`text_b` is required when the template reads a pair,
/// and must be NULL otherwise, and always in a multi-label task, whose template's second
/// sentence is the label's name: LMBFF_ERR_INVALID_ARGUMENT either way);
/// `label` is one of the task's label names (multi-label: the names that apply,
/// separated by `|`, or "" for none; regression: the score, a number in the task's
/// range). Its id goes to *id (if not NULL). The same text may be registered twice
/// (each is an item of its own); a dev copy of a training text makes dev scores
/// optimistic.
///
/// # Safety
/// `t` is a live task; strings are NUL-terminated or NULL where allowed.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_add_example(
    t: *mut lmbff_task,
    text: *const c_char,
    text_b: *const c_char,
    label: *const c_char,
    id: *mut u64,
) -> lmbff_status {
    guard(|| {
        let (a, b, l) = (str_arg(text, "text")?, opt_str(text_b, "text_b")?, str_arg(label, "label")?);
        let new = with_task(t, |task| task.add_example(a, b.as_deref(), l))?;
        if !id.is_null() {
            *id = new;
        }
        Ok(())
    })
}

/// Registers an unlabeled text (for adaptation and, later, labelling; a pair task's
/// texts come with their `text_b`, and only theirs: as for lmbff_task_add_example). Its
/// id goes to *id (if not NULL).
///
/// # Safety
/// `t` is a live task; strings are NUL-terminated or NULL where allowed.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_add_unlabeled(t: *mut lmbff_task, text: *const c_char, text_b: *const c_char, id: *mut u64) -> lmbff_status {
    guard(|| {
        let (a, b) = (str_arg(text, "text")?, opt_str(text_b, "text_b")?);
        let new = with_task(t, |task| task.add_unlabeled(a, b.as_deref()))?;
        if !id.is_null() {
            *id = new;
        }
        Ok(())
    })
}

/// Removes the example or unlabeled text `id`.
///
/// # Safety
/// `t` is a live task.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_remove(t: *mut lmbff_task, id: u64) -> lmbff_status {
    guard(|| with_task(t, |task| task.remove(id)))
}

/// Marks labelled example `id` as a dev example (`dev` true) or back as a training one.
/// Dev examples are held out of training: they pick the prompt method's kept weights
/// (at most five evaluations a run, the last step's among them), score every method (the version's notes: `dev_accuracy`, or
/// `dev_micro_f1` for a multi-label task, or the prompt method's `best_dev_metric`) and,
/// with lmbff_train_params.calibrate, fit the temperature.
///
/// # Safety
/// `t` is a live task.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_set_dev(t: *mut lmbff_task, id: u64, dev: bool) -> lmbff_status {
    guard(|| with_task(t, |task| task.set_dev(id, dev)))
}

/// Number of dev examples (0 if `t` is NULL or busy).
///
/// # Safety
/// `t` is NULL or a live task.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_num_dev(t: *mut lmbff_task) -> usize {
    with_task(t, |task| Ok(task.num_dev())).unwrap_or(0)
}

/// Sets the label of item `id` (an unlabeled text becomes a labelled example). An item
/// lmbff_task_add_example would refuse as an example (a second sentence the template
/// does not read, none where it reads two, a pair in a multi-label task) is
/// LMBFF_ERR_INVALID_ARGUMENT, and keeps what it was.
///
/// # Safety
/// `t` is a live task; `label` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_relabel(t: *mut lmbff_task, id: u64, label: *const c_char) -> lmbff_status {
    guard(|| {
        let l = str_arg(label, "label")?;
        with_task(t, |task| task.relabel(id, l))
    })
}

/// Number of classes (0 if `t` is NULL).
///
/// # Safety
/// `t` is NULL or a live task.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_num_labels(t: *const lmbff_task) -> usize {
    t.as_ref().map(|t| t.labels.len()).unwrap_or(0)
}

/// Name of class `i` (NULL if out of range). Borrowed: valid while the task lives.
///
/// # Safety
/// `t` is NULL or a live task.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_label(t: *const lmbff_task, i: usize) -> *const c_char {
    t.as_ref().and_then(|t| t.labels.get(i)).map(|l| l.as_ptr()).unwrap_or(std::ptr::null())
}

/// Counts: labelled training examples of class `label_index` into *examples (dev
/// examples not counted; multi-label: the examples the label applies to), unlabeled
/// texts into *unlabeled (either pointer may be NULL).
///
/// # Safety
/// `t` is a live task; output pointers are NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn lmbff_task_counts(t: *mut lmbff_task, label_index: usize, examples: *mut usize, unlabeled: *mut usize) -> lmbff_status {
    guard(|| {
        let (counts, free) = with_task(t, |task| Ok((task.counts(), task.num_unlabeled())))?;
        let c = *counts.get(label_index).ok_or_else(|| {
            Error::InvalidArgument(format!("label index {label_index} is out of range ({} labels)", counts.len()))
        })?;
        if !examples.is_null() {
            *examples = c;
        }
        if !unlabeled.is_null() {
            *unlabeled = free;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer with the special tokens and the label words (with a
    /// config.json, enough for a task to be created without weights).
    const TOKENIZER: &str = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "unk_token": "[UNK]", "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2,
        "[SEP]": 3, "[MASK]": 4, "terrible": 5, "great": 6, "it": 7, "was": 8, ".": 9}}}"#;

    /// A call on a task from inside another call on it is told apart by thread: the same
    /// thread (a log callback calling back in) or another one.
    #[test]
    fn busy_says_whether_the_other_call_is_on_this_thread() {
        let dir = std::env::temp_dir().join(format!("lmbff-reentry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokenizer.json"), TOKENIZER).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"model_type": "bert", "vocab_size": 10}"#).unwrap();
        let spec = crate::task::TaskSpec {
            model_dir: dir.clone(),
            template: "{text} It was {mask}.".into(),
            labels: vec!["neg".into(), "pos".into()],
            label_words: vec!["terrible".into(), "great".into()],
            truncation: crate::prompt::Truncation::default(),
            multi_label: false,
            regression: None,
        };
        let t = wrap(Task::new(spec).unwrap());
        let (inner, other) = unsafe {
            with_task(t, |_| {
                let inner = with_task(t, |_| Ok(()));
                let addr = t as usize;
                let other = std::thread::spawn(move || with_task(addr as *mut lmbff_task, |_| Ok(()))).join().unwrap();
                Ok((inner, other))
            })
        }
        .unwrap();
        assert!(matches!(&inner, Err(Error::Busy(m)) if m.contains("on this thread")), "{inner:?}");
        assert!(matches!(&other, Err(Error::Busy(m)) if m.contains("another thread")), "{other:?}");
        // Once the outer call returned, calls go through again.
        assert!(unsafe { with_task(t, |_| Ok(())) }.is_ok());
        unsafe { lmbff_task_free(t) };
        std::fs::remove_dir_all(&dir).ok();
    }
}
