//! The predictor: renders texts with the exported template, batches them by length,
//! runs the ONNX graph and returns per-class probabilities with uncertainty.
//!
//! Throughput: inputs are sorted by token length and cut into batches of at most
//! `max_batch`, each padded only to its own longest input; id buffers are reused across
//! batches. Threads: one predictor is shared by any number of threads; it holds a pool of
//! `sessions` ONNX Runtime sessions (each behind a lock, as `Session::run` needs `&mut`),
//! and a call takes a free one, or waits for one. A similarity-filtered export's sentence
//! encoder has as many sessions of its own.

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};
use parking_lot::Mutex;

use crate::checkpoint::{METHOD_EMBEDDING, METHOD_PROMPT};
use crate::export::{DemoFilter, ExportManifest, TokenizerSpec, OUTPUT_EMBEDDING, OUTPUT_LOGITS, OUTPUT_PROBS};
use crate::metrics::{mean_rows, softmax_rows};
use crate::prompt::{DemoPool, Encoded, Example, MultiLabel, Prompt, Verbalizer};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct PredictorOptions {
    /// ONNX Runtime intra-op threads per session (0: the machine's available cores
    /// divided among the sessions, at least 1; at most [`MAX_THREADS`]).
    pub threads: usize,
    /// Sessions in the pool: concurrent calls that run at once (each one holds its own
    /// copy of the weights and its own thread pool; 1 to [`MAX_SESSIONS`]).
    pub sessions: usize,
    /// Largest batch handed to ONNX Runtime at once; bigger calls are split. Small
    /// batches of similar lengths keep activations in cache: on the 2-core development
    /// VM, 16 was as fast per example as any larger size (docs/serve-bench.md). 1 to
    /// [`MAX_BATCH`].
    pub max_batch: usize,
    /// Explicit path of libonnxruntime (see `serve::environment` for the search order).
    pub ort_library: Option<PathBuf>,
}

/// Most sessions one predictor holds (each is a copy of the weights: 64 of MiniLM's
/// export are about 6 GB).
pub const MAX_SESSIONS: usize = 64;
/// Most ONNX Runtime threads per session (starting a pool of thousands takes minutes).
pub const MAX_THREADS: usize = 256;
/// Largest batch a predictor hands ONNX Runtime at once: more only grows the buffers
/// (three of batch x length ids, and attention of batch x heads x length^2), and an
/// allocation that fails ends the process rather than returning an error.
pub const MAX_BATCH: usize = 4096;

/// Most ONNX Runtime threads of one predictor, all sessions together: 256, or twice the
/// machine's hardware threads where that is more. Threads past the cores only wait, and
/// where the system refuses one more thread ONNX Runtime hangs starting its pool.
pub fn max_total_threads() -> usize {
    MAX_THREADS.max(2 * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

impl Default for PredictorOptions {
    fn default() -> Self {
        PredictorOptions { threads: 0, sessions: 1, max_batch: 16, ort_library: None }
    }
}

/// The prediction for one input.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Probability of each class, in the manifest's label order.
    pub probs: Vec<f32>,
    /// Index of the most probable class.
    pub label: usize,
    /// Top probability minus the second: small means uncertain.
    pub margin: f32,
    /// Entropy of `probs` in nats (0: certain; ln(classes): uniform).
    pub entropy: f32,
    /// Regression exports: the score, `low + (high - low) * p(upper pole)`.
    pub score: Option<f32>,
    /// The labels that apply: `[label]`, or for a multi-label export every label whose
    /// probability reaches the manifest's threshold (possibly none).
    pub labels: Vec<usize>,
}

impl Prediction {
    fn from_probs(probs: Vec<f32>) -> Self {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let label = order[0];
        let margin = probs[order[0]] - order.get(1).map(|&i| probs[i]).unwrap_or(0.0);
        let entropy = -probs.iter().filter(|&&p| p > 0.0).map(|&p| p * p.ln()).sum::<f32>();
        Prediction { probs, label, margin, entropy, score: None, labels: vec![label] }
    }

    /// A multi-label prediction from each label's probability (independent, not summing
    /// to 1): `label` is the most probable, `margin` the distance of the least certain
    /// label from the threshold, scaled to [0, 1] (`min |2 p - 1|` at threshold 0.5), and
    /// `entropy` the sum of the labels' yes/no entropies (nats).
    fn multi_label(probs: Vec<f32>, threshold: f32) -> Self {
        let label = probs.iter().enumerate().fold(0, |best, (i, &p)| if p > probs[best] { i } else { best });
        let margin = probs.iter().map(|&p| (p - threshold).abs() / threshold.max(1.0 - threshold)).fold(1.0f32, f32::min);
        let h = |p: f32| -> f32 { [p, 1.0 - p].iter().filter(|&&q| q > 0.0).map(|&q| -q * q.ln()).sum() };
        let entropy = probs.iter().map(|&p| h(p)).sum();
        let labels = probs.iter().enumerate().filter(|(_, &p)| p >= threshold).map(|(i, _)| i).collect();
        Prediction { probs, label, margin, entropy, score: None, labels }
    }
}

/// Opens of an export folder replaced while they read it before giving up
/// ([`Predictor::open`]).
#[cfg(target_os = "linux")]
const OPEN_TRIES: usize = 5;

/// A multi-label prediction reads each input once per label: at most this many bytes of
/// input text are copied for those readings at once (a longer text's labels go a few at
/// a time).
const MULTI_LABEL_COPY_BYTES: usize = 64 << 20;

pub struct Predictor {
    dir: PathBuf,
    manifest: ExportManifest,
    tok: Tokenizer,
    prompt: Prompt,
    sessions: SessionPool,
    max_batch: usize,
    token_types: bool,
    filter: Option<Filter>,
    multi: Option<MultiLabel>,
}

/// Items used by one call at a time (sessions of one graph: `Session::run` needs
/// `&mut`): a call takes a free one, or waits until any is given back (not a particular
/// one, which a long batch may hold while another is free).
struct Pool<T> {
    free: Mutex<Vec<T>>,
    given_back: parking_lot::Condvar,
}

type SessionPool = Pool<Session>;

/// An item taken from its pool, given back when dropped. Not `Send`: it is given back on
/// the thread that took it, which [`holding_a_session`] counts on.
struct Taken<'a, T> {
    pool: &'a Pool<T>,
    item: Option<T>,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl<T> std::ops::Deref for Taken<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item.as_ref().expect("held until dropped")
    }
}

impl<T> std::ops::DerefMut for Taken<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().expect("held until dropped")
    }
}

thread_local! {
    /// Items of any pool this thread holds (sessions it runs a graph on).
    static HOLDING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether this thread holds a session: ONNX Runtime's messages from inside a run are
/// not handed to the host's log callback then, since a callback that predicts on the
/// same predictor would wait for the session it is called from (its errors come back as
/// the call's error all the same).
pub(crate) fn holding_a_session() -> bool {
    HOLDING.with(|h| h.get() > 0)
}

impl<T> Drop for Taken<'_, T> {
    fn drop(&mut self) {
        let _ = HOLDING.try_with(|h| h.set(h.get().saturating_sub(1)));
        if let Some(item) = self.item.take() {
            self.pool.free.lock().push(item);
            self.pool.given_back.notify_one();
        }
    }
}

impl<T> Pool<T> {
    fn new(mut items: Vec<T>) -> Self {
        // Taken from the end: the first item first.
        items.reverse();
        Pool { free: Mutex::new(items), given_back: parking_lot::Condvar::new() }
    }

    fn take(&self) -> Taken<'_, T> {
        let mut free = self.free.lock();
        let item = loop {
            match free.pop() {
                Some(item) => break item,
                None => self.given_back.wait(&mut free),
            }
        };
        drop(free);
        HOLDING.with(|h| h.set(h.get() + 1));
        Taken { pool: self, item: Some(item), _this_thread: std::marker::PhantomData }
    }
}

impl SessionPool {
    /// `count` (at least 1) sessions over `dir/file`.
    fn open(env: &ort::environment::Environment, dir: &Path, file: &str, what: &'static str, threads: usize, count: usize) -> Result<Self> {
        Ok(Pool::new((0..count.max(1)).map(|_| new_session(env, dir, file, what, threads)).collect::<Result<Vec<_>>>()?))
    }
}

/// Similarity-filtered demonstrations: the sentence encoder's sessions (as many as the
/// predictor's) and tokenizer, and the pool with its embeddings (computed when the
/// predictor opens).
struct Filter {
    sessions: SessionPool,
    tok: Tokenizer,
    reader: Prompt,
    pool: DemoPool,
    sets: usize,
    token_types: bool,
}

impl Filter {
    fn open(dir: &Path, f: &DemoFilter, sentences: usize, num_labels: usize, env: &ort::environment::Environment, threads: usize, sessions: usize, max_batch: usize) -> Result<Self> {
        if f.sets == 0 || f.sets > crate::prompt::MAX_DEMO_SETS || f.pool.is_empty() || f.max_len < 4 {
            return Err(mismatch(dir, &format!("the demonstration filter needs 1 to {} sets, a pool and max_len >= 4 (sets {}, {} pool examples, max_len {})", crate::prompt::MAX_DEMO_SETS, f.sets, f.pool.len(), f.max_len)));
        }
        let tok = open_tokenizer(dir, &f.tokenizer, "the demonstration encoder's tokenizer")?;
        let sessions = SessionPool::open(env, dir, &f.file, "demonstration encoder", threads, sessions)?;
        {
            let session = sessions.take();
            let outputs: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
            let inputs: Vec<String> = session.inputs().iter().map(|i| i.name().to_string()).collect();
            if inputs != f.inputs || !outputs.iter().any(|o| o == OUTPUT_EMBEDDING) {
                return Err(mismatch(dir, &format!("{} has inputs {inputs:?} and outputs {outputs:?}; the manifest says {:?} and {OUTPUT_EMBEDDING}", f.file, f.inputs)));
            }
        }
        let mut filter = Filter {
            sessions,
            reader: Prompt::sentence_reader(sentences, f.max_len)?,
            tok,
            pool: DemoPool::new(&f.pool, num_labels).map_err(|e| mismatch(dir, &e.to_string()))?,
            sets: f.sets,
            token_types: f.inputs.iter().any(|i| i == "token_type_ids"),
        };
        let emb = filter.embed(&f.pool, max_batch)?;
        filter.pool = filter.pool.with_embeddings(emb)?;
        Ok(filter)
    }

    fn embed(&self, inputs: &[Example], max_batch: usize) -> Result<Vec<Vec<f32>>> {
        let enc = inputs
            .iter()
            .enumerate()
            .map(|(i, ex)| self.reader.encode(&self.tok, ex).map_err(|e| for_input(i, e)))
            .collect::<Result<Vec<_>>>()?;
        run_graph(&mut self.sessions.take(), &enc, OUTPUT_EMBEDDING, None, self.tok.special().pad, self.token_types, max_batch)
    }

    /// The sets of each input, `[input][set]`.
    fn sets_for(&self, inputs: &[Example], max_batch: usize) -> Result<Vec<Vec<Vec<Example>>>> {
        self.embed(inputs, max_batch)?.iter().map(|q| self.pool.similar_sets(q, self.sets)).collect()
    }
}

/// Loads the tokenizer `spec` names and checks it is the one the manifest describes: its
/// special tokens and its word-boundary convention (which decides how a host renders).
fn open_tokenizer(dir: &Path, spec: &TokenizerSpec, what: &str) -> Result<Tokenizer> {
    let path = dir.join(&spec.file);
    if !crate::checkpoint::is_file(&path)? {
        return Err(Error::MissingFile { dir: dir.to_path_buf(), what: "export's tokenizer", looked_for: spec.file.clone() });
    }
    // A file the tokenizers library cannot read is a file that does not hold.
    let tok = Tokenizer::from_bytes(&read(&path)?).map_err(|e| match e {
        Error::Tokenizer(m) => Error::Format { path: path.clone(), message: format!("not a tokenizer the tokenizers library reads: {m}") },
        other => other,
    })?;
    let got = TokenizerSpec::of(&tok, &spec.file);
    let (s, want) = (&got.special_tokens, &spec.special_tokens);
    let pairs = [("cls", s.cls, want.cls), ("sep", s.sep, want.sep), ("mask", s.mask, want.mask), ("pad", s.pad, want.pad), ("unk", s.unk, want.unk)];
    let differ: Vec<String> = pairs.iter().filter(|(_, a, b)| a != b).map(|(n, a, b)| format!("{n} {a} here, {b} in the manifest")).collect();
    if !differ.is_empty() {
        return Err(mismatch(dir, &format!("{what}'s special tokens differ from the manifest's ({})", differ.join(", "))));
    }
    if got.word_boundary != spec.word_boundary {
        return Err(mismatch(dir, &format!("{what} marks word starts as {:?}, the manifest says {:?}", got.word_boundary, spec.word_boundary)));
    }
    Ok(tok)
}

/// A session over `dir/file` with the predictor's settings.
fn new_session(env: &ort::environment::Environment, dir: &Path, file: &str, what: &'static str, threads: usize) -> Result<Session> {
    let path = dir.join(file);
    if !crate::checkpoint::is_file(&path)? {
        return Err(Error::MissingFile { dir: dir.to_path_buf(), what, looked_for: file.to_string() });
    }
    // A file that cannot be read is the file system's error, not the model's.
    std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    Session::builder(env)
        .map_err(runtime_err("cannot create a session builder"))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .and_then(|b| b.with_intra_threads(threads))
        .and_then(|b| b.with_inter_threads(1))
        .map_err(|e| Error::Runtime(format!("session options: {e}")))?
        .commit_from_file(&path)
        // ONNX Runtime is loaded and the session set up: what fails now is the file,
        // unless ONNX Runtime says it is itself (a device, or memory: its checks of a
        // malformed graph throw the same RUNTIME_EXCEPTION as an allocation does, so
        // only the allocation's message tells them apart).
        .map_err(|e| {
            use ort::error::ErrorCode as C;
            let text = e.to_string();
            let memory = ["bad_alloc", "Failed to allocate", "out of memory"].iter().any(|m| text.contains(m));
            match e.code() {
                C::EngineError | C::ExecutionProviderFailure | C::DeviceReset => {
                    Error::Runtime(format!("ONNX Runtime could not load {} (its {:?}, not a fault of the file): {text}", path.display(), e.code()))
                }
                C::RuntimeException if memory => Error::Runtime(format!("ONNX Runtime ran out of memory loading {}: {text}", path.display())),
                _ => Error::Format { path: path.clone(), message: format!("ONNX Runtime cannot load it as an ONNX model: {text}") },
            }
        })
}

/// `e`, met encoding input `i`, as an argument error that names the input (and says
/// "invalid argument" once).
fn for_input(i: usize, e: Error) -> Error {
    Error::Input { index: i, source: Box::new(e) }
}

fn runtime_err(what: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Runtime(format!("{what}: {e}"))
}

impl Predictor {
    /// Opens an export directory: checks the manifest against the tokenizer and the
    /// graph's inputs and outputs, and starts the session pool. Its files are read one by
    /// one; an export that replaces the folder meanwhile (a new version exported into it,
    /// by a rename) must not give one file of each version. On Linux every file is read
    /// through one handle on the folder as it was when the open began, whatever replaces
    /// it at its path; a file removed under the handle (the replaced folder deleted)
    /// opens the new folder again, up to 5 times, then fails with [`Error::Conflict`].
    pub fn open(dir: &Path, opts: &PredictorOptions) -> Result<Self> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
            let mut replaced_before = false;
            for _ in 0..OPEN_TRIES {
                // A handle that only names the folder: no read permission needed, never
                // blocks, and anything but a folder is refused at once.
                let handle = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(dir) {
                    Ok(h) => h,
                    // Gone for a moment between two renames (a file system that cannot
                    // exchange two folders in one step): again.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && replaced_before => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        continue;
                    }
                    // Missing, a file, an empty path: named as the path's own errors.
                    Err(_) => break,
                };
                let via = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
                if !via.is_dir() {
                    // No /proc to read through.
                    break;
                }
                let opened = Self::open_once(&via, dir, opts).map_err(|e| e.in_dir(&via, dir));
                // Replaced meanwhile: the path is another folder than the handle's now.
                let id = |m: std::fs::Metadata| (m.dev(), m.ino());
                match opened {
                    Ok(p) => return Ok(p),
                    Err(_) if handle.metadata().map(id).ok() != std::fs::metadata(dir).map(id).ok() => replaced_before = true,
                    Err(e) => return Err(e),
                }
            }
            if replaced_before {
                // Gone for good rather than replaced (deleted while it was read): the
                // missing folder's own error, LMBFF_ERR_IO.
                std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
                return Err(Error::Conflict(format!(
                    "{}: the export folder was replaced while it was read, {OPEN_TRIES} times in a row; open it again",
                    dir.display()
                )));
            }
        }
        Self::open_once(dir, dir, opts)
    }

    /// [`open`](Self::open) reading the files in `dir`, a folder the host named `shown`.
    fn open_once(dir: &Path, shown: &Path, opts: &PredictorOptions) -> Result<Self> {
        crate::checkpoint::require_dir(dir, "export directory")?;
        if opts.sessions == 0 || opts.max_batch == 0 {
            return Err(Error::InvalidArgument("sessions and max_batch must be at least 1".into()));
        }
        if opts.max_batch > MAX_BATCH {
            return Err(Error::InvalidArgument(format!(
                "max_batch {}: a predictor runs at most {MAX_BATCH} inputs at once (larger calls are split)",
                opts.max_batch
            )));
        }
        if opts.sessions > MAX_SESSIONS || opts.threads > MAX_THREADS {
            return Err(Error::InvalidArgument(format!(
                "sessions {} and threads {}: a predictor holds at most {MAX_SESSIONS} sessions of at most {MAX_THREADS} threads",
                opts.sessions, opts.threads
            )));
        }
        let manifest = ExportManifest::read(dir)?;
        // A similarity-filtered export's sentence encoder has a pool of its own, as large.
        let pools = 1 + usize::from(manifest.demonstrations.as_ref().is_some_and(|d| d.filter.is_some()));
        if pools * opts.sessions * opts.threads > max_total_threads() {
            return Err(Error::InvalidArgument(format!(
                "{pools} pool(s) of {} sessions of {} threads are {} ONNX Runtime threads: at most {} on this machine \
                 (fewer threads per session, or 0 to share its cores)",
                opts.sessions,
                opts.threads,
                pools * opts.sessions * opts.threads,
                max_total_threads()
            )));
        }
        if let Some(r) = manifest.regression {
            if !r.is_valid() || manifest.labels.len() != 2 {
                return Err(mismatch(dir, &format!("a regression export needs two pole labels and a finite range low < high, its span finite too (labels {}, range {} to {})", manifest.labels.len(), r.low, r.high)));
            }
        }
        let known_task = manifest.task == "classification"
            || (manifest.task == "regression" && manifest.regression.is_some())
            || (manifest.task == "multi-label" && manifest.multi_label.is_some());
        let embedding = manifest.method == METHOD_EMBEDDING
            && (manifest.task == "classification" || manifest.multi_label_heads())
            && manifest.demonstrations.is_none();
        if !known_task || !(manifest.method == METHOD_PROMPT || embedding) {
            return Err(Error::Format {
                path: dir.join(crate::export::EXPORT_MANIFEST),
                message: format!("task {:?} with method {:?} is not served by this lmbff ({})", manifest.task, manifest.method, crate::VERSION),
            });
        }
        let tok = open_tokenizer(dir, &manifest.tokenizer, "the tokenizer")?;
        let pairs: Vec<(String, String)> = manifest.labels.iter().cloned().zip(manifest.label_words.iter().cloned()).collect();
        let verbalizer = Verbalizer::new(&tok, &pairs).map_err(|e| mismatch(dir, &e.to_string()))?;
        if verbalizer.token_ids() != manifest.label_word_ids.as_slice() || verbalizer.shown_tokens() != manifest.label_word_tokens {
            return Err(mismatch(dir, "the label words encode to other ids than the manifest's"));
        }
        let template = if embedding { manifest.template.plain_template() } else { manifest.template.template() }.map_err(|e| mismatch(dir, &e.to_string()))?;
        let prompt = Prompt::new(template, verbalizer, manifest.truncation).map_err(|e| mismatch(dir, &e.to_string()))?;
        // (A length past i64 counts as too long: cast, it wrapped negative and passed.)
        if i64::try_from(manifest.truncation.max_len).map_or(true, |m| m > manifest.model.max_positions) || manifest.model.max_positions < 4 {
            return Err(mismatch(
                dir,
                &format!("max_len {} does not fit the model's {} positions", manifest.truncation.max_len, manifest.model.max_positions),
            ));
        }
        if let Some(d) = &manifest.demonstrations {
            // Each set is a forward pass per input: a hand-edited count past what training
            // allows is refused, as the filter's is.
            if d.sets.len() > crate::prompt::MAX_DEMO_SETS {
                return Err(mismatch(dir, &format!("{} fixed demonstration sets: at most {}", d.sets.len(), crate::prompt::MAX_DEMO_SETS)));
            }
            prompt.check_demo_sets(&tok, &d.sets).map_err(|e| mismatch(dir, &e.to_string()))?;
            if let Some(f) = &d.filter {
                prompt.check_demo_pool(&tok, &f.pool).map_err(|e| mismatch(dir, &e.to_string()))?;
            }
        }
        let env = super::runtime::environment(opts.ort_library.as_deref())?;
        // 0: the machine's cores shared among the sessions (each session runs its own
        // calls at once, so all cores each would oversubscribe them sessions-fold).
        let threads = match opts.threads {
            0 => (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) / opts.sessions.max(1)).clamp(1, MAX_THREADS),
            n => n,
        };
        // The weights beside the graph (an export with external data): a missing or
        // unreadable file is named as such (ONNX Runtime's load failure read as a
        // malformed model.onnx).
        if let Some(data) = &manifest.model.external_data {
            let path = dir.join(data);
            if !crate::checkpoint::is_file(&path)? {
                return Err(Error::MissingFile { dir: dir.to_path_buf(), what: "ONNX model's external weights", looked_for: data.clone() });
            }
            std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        }
        let sessions = SessionPool::open(env, dir, &manifest.model.file, "ONNX model", threads, opts.sessions)?;
        {
            let s = sessions.take();
            let inputs: Vec<String> = s.inputs().iter().map(|i| i.name().to_string()).collect();
            let outputs: Vec<String> = s.outputs().iter().map(|o| o.name().to_string()).collect();
            if inputs != manifest.model.inputs || !manifest.model.outputs.iter().all(|o| outputs.contains(o)) {
                return Err(mismatch(
                    dir,
                    &format!("model.onnx has inputs {inputs:?} and outputs {outputs:?}; the manifest says {:?} and {:?}", manifest.model.inputs, manifest.model.outputs),
                ));
            }
            let needed = manifest.predicted_output();
            if !outputs.iter().any(|o| o == needed) {
                return Err(mismatch(dir, &format!("model.onnx has no output {needed:?}, which predictions read (its outputs: {outputs:?})")));
            }
            // A graph whose outputs have another width than the manifest's labels would
            // fail at the first prediction; say so at open.
            for o in s.outputs() {
                if let (true, ValueType::Tensor { shape, .. }) = (manifest.model.outputs.iter().any(|m| m == o.name()), o.dtype()) {
                    let want = manifest.output_width(o.name());
                    if let Some(&got) = shape.last().filter(|&&d| d >= 0 && d as usize != want) {
                        return Err(mismatch(dir, &format!("model.onnx's output {:?} has {got} columns and the manifest's labels call for {want}", o.name())));
                    }
                }
            }
        }
        let token_types = manifest.model.inputs.iter().any(|i| i == "token_type_ids");
        let multi = match &manifest.multi_label {
            Some(m) => {
                if !(m.threshold > 0.0 && m.threshold < 1.0) {
                    return Err(mismatch(dir, &format!("multi_label.threshold is {}: a probability strictly between 0 and 1", m.threshold)));
                }
                // Heads read the input alone; a prompt reads (input, label name).
                let sentences = if manifest.multi_label_heads() { 1 } else { 2 };
                if manifest.labels.len() != 2 || prompt.template.num_sentences() != sentences {
                    return Err(mismatch(dir, "a multi-label export needs yes/no classes, and a prompt over (input, label name) pairs or a head per label over the input"));
                }
                Some(MultiLabel::new(&m.labels).map_err(|e| mismatch(dir, &e.to_string()))?)
            }
            None => None,
        };
        let filter = match manifest.demonstrations.as_ref().and_then(|d| d.filter.as_ref()) {
            Some(f) => Some(Filter::open(dir, f, prompt.template.num_sentences(), manifest.labels.len(), env, threads, opts.sessions, opts.max_batch)?),
            None => None,
        };
        crate::log::log(crate::log::Level::Info, || {
            format!(
                "predictor opened {}: model {} ({}), {} labels, {} session(s) x {threads} thread(s)",
                shown.display(),
                manifest.model.version,
                manifest.model.weights_name(),
                manifest.labels.len(),
                opts.sessions
            )
        });
        Ok(Predictor { dir: shown.to_path_buf(), manifest, tok, prompt, sessions, max_batch: opts.max_batch, token_types, filter, multi })
    }

    pub fn manifest(&self) -> &ExportManifest {
        &self.manifest
    }

    /// The output labels: the classes, or a multi-label export's labels.
    pub fn labels(&self) -> &[String] {
        match &self.manifest.multi_label {
            Some(m) => &m.labels,
            None => &self.manifest.labels,
        }
    }

    /// Whether the export is multi-label (probabilities per label, independent).
    pub fn is_multi_label(&self) -> bool {
        self.multi.is_some()
    }

    /// Whether inputs are pairs (text_a, text_b): a template reading two sentences, not
    /// a multi-label prompt (whose second sentence is the label's name).
    pub fn reads_pairs(&self) -> bool {
        self.multi.is_none() && self.prompt.template.num_sentences() == 2
    }

    /// The regression range (low, high) of a regression export: each input then has a
    /// score ([`Prediction::score`]).
    pub fn regression_range(&self) -> Option<(f32, f32)> {
        self.manifest.regression.map(|r| (r.low, r.high))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The fixed demonstration sets of the export (empty when it has none or when they
    /// are similarity-filtered).
    pub fn demo_sets(&self) -> &[Vec<Example>] {
        self.manifest.demonstrations.as_ref().map_or(&[], |d| &d.sets)
    }

    /// The demonstration sets each input is read with, `[input][set]`: the fixed ones, or
    /// each input's own when similarity-filtered (None when the export has none).
    pub fn sets_for(&self, inputs: &[Example]) -> Result<Option<Vec<Vec<Vec<Example>>>>> {
        Ok(match (&self.filter, self.demo_sets()) {
            (Some(f), _) => Some(f.sets_for(inputs, self.max_batch)?),
            (None, []) => None,
            (None, sets) => Some(vec![sets.to_vec(); inputs.len()]),
        })
    }

    /// Renders one input as the model sees it (token ids, segments, mask position): one
    /// rendering per demonstration set, or one when the export has none; a multi-label
    /// prompt export reads the input once per label (input, label name), label by label.
    pub fn encode(&self, ex: &Example) -> Result<Vec<Encoded>> {
        let readings = match &self.multi {
            Some(m) if !self.manifest.multi_label_heads() => m.expand(std::slice::from_ref(ex), None)?,
            _ => vec![ex.clone()],
        };
        let mut out = Vec::new();
        for r in &readings {
            match self.sets_for(std::slice::from_ref(r))? {
                None => out.push(self.prompt.encode(&self.tok, r)?),
                Some(per) => {
                    for set in &per[0] {
                        out.push(self.prompt.encode_with_demos(&self.tok, r, set)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Predicts a batch of inputs (texts, or pairs for two-sentence templates). An empty
    /// batch gives an empty result. Over-long inputs are truncated as the manifest says,
    /// never losing the mask. With demonstrations in the manifest, each input is run once
    /// per set (its own sets when similarity-filtered) and the label logits averaged.
    /// A multi-label export gives each label's P(yes): a prompt export reads each input
    /// once per label (input, label name), a sentence-embedding export once.
    /// A call's inputs are read a window of [`WINDOW_BATCHES`] batches at a time: the
    /// renderings held are bounded by the window, not by the call, and each window takes
    /// a session anew, so that a long call does not hold one from the others throughout.
    pub fn predict(&self, inputs: &[Example]) -> Result<Vec<Prediction>> {
        // Inputs the export cannot read are refused before any window runs.
        self.check_sentences(inputs)?;
        let window = self.max_batch.saturating_mul(WINDOW_BATCHES).max(1);
        let mut out = Vec::with_capacity(inputs.len());
        for (w, part) in inputs.chunks(window).enumerate() {
            // Errors name the input by its place in the call, not in the window.
            out.extend(self.predict_any(part).and_then(|p| self.finite(p)).map_err(|e| e.renumbered(w * window))?);
        }
        Ok(out)
    }

    /// Predictions whose probabilities are all numbers: a model whose weights diverged in
    /// training gives NaN, which a host would read as a certain answer (entropy 0).
    fn finite(&self, preds: Vec<Prediction>) -> Result<Vec<Prediction>> {
        match preds.iter().position(|p| p.probs.iter().any(|v| !v.is_finite())) {
            None => Ok(preds),
            Some(i) => Err(for_input(
                i,
                Error::Format {
                    path: self.dir.clone(),
                    message: "the model gives a probability that is not a number: its weights diverged in training \
                              (retrain it with a lower learning rate), or an fp16 export overflowed (export it in fp32)"
                        .into(),
                },
            )),
        }
    }

    /// Refuses a second text the export would not read (a pair template's missing one is
    /// named as each input renders).
    fn check_sentences(&self, inputs: &[Example]) -> Result<()> {
        let Some(i) = inputs.iter().position(|e| e.text_b.is_some()) else { return Ok(()) };
        let why = match (&self.multi, &self.manifest.multi_label) {
            (Some(_), Some(_)) if self.manifest.multi_label_heads() => "a multi-label task reads single texts, not pairs",
            (Some(_), Some(_)) => "a multi-label task reads single texts (its template's second sentence is the label's name)",
            _ if self.prompt.template.num_sentences() == 1 => {
                "this export's template reads one sentence, so a second text would be ignored: pass none"
            }
            _ => return Ok(()),
        };
        Err(for_input(i, Error::InvalidArgument(why.into())))
    }

    fn predict_any(&self, inputs: &[Example]) -> Result<Vec<Prediction>> {
        match (&self.multi, &self.manifest.multi_label) {
            (Some(_), Some(_)) if self.manifest.multi_label_heads() => self.predict_classes(inputs),
            (Some(m), Some(spec)) => {
                // A batch's worth of (input, label) pairs at a time: each input's text is
                // copied once per label, for those inputs only, not for the whole call.
                let per_chunk = (self.max_batch / m.len()).max(1);
                let mut out = Vec::with_capacity(inputs.len());
                for (c, chunk) in inputs.chunks(per_chunk).enumerate() {
                    // Errors name the host's input, not the pair.
                    let input_of = |e: Error| match e {
                        Error::Input { index, source } => Error::Input { index: c * per_chunk + index / m.len(), source },
                        other => other,
                    };
                    let copies: usize = chunk.iter().map(|e| e.text_a.len().saturating_mul(m.len())).fold(0, usize::saturating_add);
                    let rows: Vec<Vec<f32>> = if copies <= MULTI_LABEL_COPY_BYTES {
                        self.predict_classes(&m.expand(chunk, None)?).map_err(input_of)?.into_iter().map(|p| p.probs).collect()
                    } else {
                        // A long text (a whole document) read once per label would be
                        // copied as many times at once: its labels go a few at a time,
                        // so that at most the budget's worth of copies is held.
                        let mut rows = Vec::with_capacity(chunk.len() * m.len());
                        for (i, ex) in chunk.iter().enumerate() {
                            let step = (MULTI_LABEL_COPY_BYTES / ex.text_a.len().max(1)).clamp(1, m.len());
                            for first in (0..m.len()).step_by(step) {
                                let pairs = (first..(first + step).min(m.len())).map(|l| m.pair(ex, l)).collect::<Vec<_>>();
                                let at = |e: Error| match e {
                                    Error::Input { source, .. } => Error::Input { index: c * per_chunk + i, source },
                                    other => other,
                                };
                                rows.extend(self.predict_classes(&pairs).map_err(at)?.into_iter().map(|p| p.probs));
                            }
                        }
                        rows
                    };
                    out.extend(m.gather(&rows)?.into_iter().map(|p| Prediction::multi_label(p, spec.threshold)));
                }
                Ok(out)
            }
            _ => self.predict_classes(inputs),
        }
    }

    /// Class predictions of inputs as the template reads them.
    fn predict_classes(&self, inputs: &[Example]) -> Result<Vec<Prediction>> {
        // The rule `open` checked the graph by: one reading through `probs`, or label
        // logits averaged over demonstration sets.
        let output = self.manifest.predicted_output();
        if output == OUTPUT_PROBS {
            return self.predict_encoded_any(&self.render(inputs, |_| &[])?);
        }
        let tables = match &self.filter {
            Some(f) => {
                let per = f.sets_for(inputs, self.max_batch)?;
                (0..f.sets).map(|k| self.run(&self.render(inputs, |i| per[i][k].as_slice())?, output)).collect::<Result<Vec<_>>>()?
            }
            None => self.demo_sets().iter().map(|set| self.run(&self.render(inputs, |_| set.as_slice())?, output)).collect::<Result<Vec<_>>>()?,
        };
        Ok(softmax_rows(&mean_rows(&tables)).into_iter().map(|p| self.prediction(p)).collect())
    }

    /// Renders each input `i` with demonstrations `demos(i)`; errors name the input.
    fn render<'s>(&self, inputs: &[Example], demos: impl Fn(usize) -> &'s [Example]) -> Result<Vec<Encoded>> {
        inputs
            .iter()
            .enumerate()
            .map(|(i, ex)| self.prompt.encode_with_demos(&self.tok, ex, demos(i)).map_err(|e| for_input(i, e)))
            .collect()
    }

    /// The class logits (`label_logits`: divided by the temperature of a calibrated
    /// export; a multi-label sentence-embedding export's yes/no pairs side by side) of
    /// inputs already rendered, in input order.
    pub fn logits_encoded(&self, encoded: &[Encoded]) -> Result<Vec<Vec<f32>>> {
        self.run(encoded, OUTPUT_LOGITS)
    }

    /// Predicts inputs already rendered (without demonstrations: one rendering each).
    pub fn predict_encoded(&self, encoded: &[Encoded]) -> Result<Vec<Prediction>> {
        self.finite(self.predict_encoded_any(encoded)?)
    }

    fn predict_encoded_any(&self, encoded: &[Encoded]) -> Result<Vec<Prediction>> {
        Ok(self.run(encoded, OUTPUT_PROBS)?.into_iter().map(|p| self.prediction(p)).collect())
    }

    fn prediction(&self, probs: Vec<f32>) -> Prediction {
        // A head per label: `probs` are the labels' P(yes).
        if let Some(spec) = self.manifest.multi_label.as_ref().filter(|_| self.manifest.multi_label_heads()) {
            return Prediction::multi_label(probs, spec.threshold);
        }
        let score = self.manifest.regression.map(|r| r.score(probs[1]));
        Prediction { score, ..Prediction::from_probs(probs) }
    }

    /// Runs the graph on rendered inputs and returns the rows of `output` ([n][labels])
    /// in input order.
    fn run(&self, encoded: &[Encoded], output: &str) -> Result<Vec<Vec<f32>>> {
        run_graph(&mut self.sessions.take(), encoded, output, Some(self.manifest.output_width(output)), self.tok.special().pad, self.token_types, self.max_batch)
    }
}

/// Batches of `max_batch` in one window of a call ([`Predictor::predict`]).
const WINDOW_BATCHES: usize = 8;

/// Runs `session` on rendered inputs in length-sorted batches of at most `max_batch`,
/// each padded to its own longest input, and returns the rows of `output` ([n][width];
/// `width` checked when given) in input order.
fn run_graph(
    session: &mut Session,
    encoded: &[Encoded],
    output: &str,
    width: Option<usize>,
    pad: u32,
    token_types: bool,
    max_batch: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| encoded[i].input_ids.len());
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); encoded.len()];
    let pad = pad as i64;
    let (mut ids, mut mask, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in order.chunks(max_batch) {
        let s = chunk.iter().map(|&i| encoded[i].input_ids.len()).max().unwrap_or(1);
        let b = chunk.len();
        ids.clear();
        mask.clear();
        types.clear();
        ids.resize(b * s, pad);
        mask.resize(b * s, 0i64);
        types.resize(b * s, 0i64);
        for (r, &i) in chunk.iter().enumerate() {
            let e = &encoded[i];
            for (c, (&id, &seg)) in e.input_ids.iter().zip(&e.segment_ids).enumerate() {
                ids[r * s + c] = id as i64;
                mask[r * s + c] = 1;
                types[r * s + c] = seg as i64;
            }
        }
        let shape = [b as i64, s as i64];
        // Views of the reused buffers: no copy on the way in.
        let mut feed = ort::inputs!["input_ids" => view(shape, &ids)?, "attention_mask" => view(shape, &mask)?];
        if token_types {
            feed.push(("token_type_ids".into(), view(shape, &types)?.into()));
        }
        let outputs = session.run(feed).map_err(runtime_err("inference"))?;
        let value = outputs.get(output).ok_or_else(|| Error::Runtime(format!("the ONNX graph gave no output {output:?} (its outputs were checked when the predictor opened)")))?;
        let (shape_out, rows) = value.try_extract_tensor::<f32>().map_err(runtime_err("reading the model's output"))?;
        let n = shape_out.get(1).copied().unwrap_or(0) as usize;
        if shape_out.len() != 2 || shape_out[0] as usize != b || width.is_some_and(|w| w != n) {
            return Err(Error::Runtime(format!("model returned {output} of shape {shape_out:?}, expected [{b}, {}]", width.map_or("width".into(), |w| w.to_string()))));
        }
        for (r, &i) in chunk.iter().enumerate() {
            out[i] = rows[r * n..(r + 1) * n].to_vec();
        }
    }
    Ok(out)
}

/// An input tensor viewing `data` (no copy).
fn view(shape: [i64; 2], data: &[i64]) -> Result<TensorRef<'_, i64>> {
    TensorRef::from_array_view((shape, data)).map_err(runtime_err("input tensor"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn mismatch(dir: &Path, what: &str) -> Error {
    Error::Format { path: dir.to_path_buf(), message: format!("the export directory is inconsistent: {what} (re-export it)") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call waits for any item given back, not for one particular item: with two
    /// items held, giving back the second lets a waiting call go on while the first is
    /// still held (it used to wait for the item its rotating start named).
    #[test]
    fn a_waiting_call_takes_whichever_item_comes_back() {
        let pool = Pool::new(vec![0u32, 1]);
        let (first, second) = (pool.take(), pool.take());
        let held = *first;
        std::thread::scope(|s| {
            let waiter = s.spawn(|| *pool.take());
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiter.is_finished(), "both items are taken");
            drop(second);
            let started = std::time::Instant::now();
            while !waiter.is_finished() {
                assert!(started.elapsed() < std::time::Duration::from_secs(5), "the call still waits with an item free");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_ne!(waiter.join().unwrap(), held, "it took the item given back");
        });
        drop(first);
        let (a, b) = (pool.take(), pool.take());
        assert_ne!(*a, *b, "each item is taken once at a time");
    }

    #[test]
    fn uncertainty_of_probabilities() {
        let p = Prediction::from_probs(vec![0.2, 0.7, 0.1]);
        assert_eq!(p.label, 1);
        assert!((p.margin - 0.5).abs() < 1e-6);
        let h = -(0.2f32 * 0.2f32.ln() + 0.7 * 0.7f32.ln() + 0.1 * 0.1f32.ln());
        assert!((p.entropy - h).abs() < 1e-6);
        let u = Prediction::from_probs(vec![0.5, 0.5]);
        assert_eq!(u.label, 0, "ties go to the first class");
        assert_eq!(u.margin, 0.0);
        assert!((u.entropy - 2f32.ln()).abs() < 1e-6);
    }
}
