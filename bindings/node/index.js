// Node bindings of lmbff over its C ABI (include/lmbff.h), through koffi.
// The library: LMBFF_LIB, else ../../target/release/liblmbff.so (the full build; the
// serve-only build works for Predictor). Long work (training) runs on lmbff's own thread
// and is awaited with a Promise that polls it, so the event loop never blocks. Log
// messages wait in lmbff's queue and go to setLogger's function from the main thread's
// event loop.
'use strict';
const path = require('path');
const { isMainThread } = require('worker_threads');
const koffi = require('koffi');

const libPath = process.env.LMBFF_LIB || path.join(__dirname, '../../target/release/liblmbff.so');
const lib = (() => {
  try {
    return koffi.load(libPath);
  } catch (e) {
    throw new Error(`lmbff: cannot load ${libPath} (set LMBFF_LIB to liblmbff.so): ${e.message}`);
  }
})();

/** The C ABI version this binding is written for (LMBFF_ABI_VERSION of include/lmbff.h). */
const ABI_VERSION = 1;

const Predictor_ = koffi.opaque('lmbff_predictor');
const Predictions_ = koffi.opaque('lmbff_predictions');
const Task_ = koffi.opaque('lmbff_task');
const Run_ = koffi.opaque('lmbff_run');
const PredictorParams = koffi.struct('lmbff_predictor_params', {
  struct_size: 'size_t', threads: 'uint32_t', sessions: 'uint32_t', max_batch: 'uint32_t', ort_library: 'const char *',
});
const TaskParams = koffi.struct('lmbff_task_params', {
  struct_size: 'size_t', model_dir: 'const char *', template_: 'const char *', labels: 'const char **',
  label_words: 'const char **', num_labels: 'size_t', max_len: 'uint32_t', flags: 'uint64_t',
  regression_low: 'float', regression_high: 'float',
});
/** lmbff_task_params.flags: a multi-label task, a regression task. */
const TASK_MULTI_LABEL = 1;
const TASK_REGRESSION = 2;
const TrainParams = koffi.struct('lmbff_train_params', {
  struct_size: 'size_t', steps: 'uint32_t', batch_size: 'uint32_t', learning_rate: 'double', seed: 'uint64_t',
  device: 'int32_t', device_index: 'uint32_t', adaptation_steps: 'uint32_t', warm_start: 'const char *',
  demonstrations: 'bool', demo_sets: 'uint32_t', method: 'int32_t', demo_filter: 'bool', demo_filter_model: 'const char *',
  calibrate: 'bool', disable_label_anchors: 'bool', anchor_templates: 'const char **', num_anchor_templates: 'size_t',
  embedding_max_steps: 'uint32_t',
});
/** Training methods (lmbff_train_params.method): 'auto' lets the library decide. */
const METHODS = { auto: 0, prompt: 1, 'sentence-embedding': 2, 'zero-shot-words': 3 };
// LMBFF_DEVICE_*: 'auto' trains on CUDA when the machine has it, else on the CPU.
const DEVICES = { auto: 0, cpu: 1, cuda: 2 };

const c = {
  abiVersion: lib.func('uint32_t lmbff_abi_version()'),
  version: lib.func('const char *lmbff_version_string()'),
  hasTraining: lib.func('bool lmbff_has_training()'),
  lastError: lib.func('const char *lmbff_last_error()'),
  setLogCallback: lib.func('int lmbff_set_log_callback(void *, int32_t, void *)'),
  setLogQueue: lib.func('int lmbff_set_log_queue(int32_t, size_t)'),
  logNext: lib.func('const char *lmbff_log_next(_Out_ int32_t *)'),
  predictorInit: lib.func('int lmbff_predictor_params_init(_Out_ lmbff_predictor_params *, size_t)'),
  predictorOpen: lib.func('int lmbff_predictor_open(const char *, const lmbff_predictor_params *, _Out_ lmbff_predictor **)'),
  predictorOpenWithError: lib.func('int lmbff_predictor_open_with_error(const char *, const lmbff_predictor_params *, _Out_ lmbff_predictor **, void *, size_t)'),
  predictorFree: lib.func('void lmbff_predictor_free(lmbff_predictor *)'),
  numLabels: lib.func('size_t lmbff_predictor_num_labels(const lmbff_predictor *)'),
  label: lib.func('const char *lmbff_predictor_label(const lmbff_predictor *, size_t)'),
  multiLabel: lib.func('bool lmbff_predictor_multi_label(const lmbff_predictor *)'),
  readsPairs: lib.func('bool lmbff_predictor_reads_pairs(const lmbff_predictor *)'),
  regression: lib.func('bool lmbff_predictor_regression(const lmbff_predictor *, _Out_ float *, _Out_ float *)'),
  applies: lib.func('int lmbff_predictions_applies(const lmbff_predictions *, size_t, size_t, _Out_ bool *)'),
  predict: lib.func('int lmbff_predict(const lmbff_predictor *, const char **, const char **, size_t, _Out_ lmbff_predictions **)'),
  predictWithError: lib.func('int lmbff_predict_with_error(const lmbff_predictor *, const char **, const char **, size_t, _Out_ lmbff_predictions **, void *, size_t)'),
  predictionsFree: lib.func('void lmbff_predictions_free(lmbff_predictions *)'),
  predictionsGet: lib.func('int lmbff_predictions_get(const lmbff_predictions *, size_t, _Out_ uint32_t *, _Out_ float *, _Out_ float *)'),
  predictionsCount: lib.func('size_t lmbff_predictions_count(const lmbff_predictions *)'),
  predictionsProbs: lib.func('int lmbff_predictions_probs(const lmbff_predictions *, size_t, _Out_ float *, size_t)'),
  predictionsScore: lib.func('int lmbff_predictions_score(const lmbff_predictions *, size_t, _Out_ float *)'),
  labelStudioJson: lib.func('int lmbff_predictions_label_studio_json(const lmbff_predictor *, const lmbff_predictions *, const char *, const char *, const char *, void *, size_t, _Out_ size_t *)'),
  export: lib.func('int lmbff_export(const char *, const char *, bool)'),
  taskInit: lib.func('int lmbff_task_params_init(_Out_ lmbff_task_params *, size_t)'),
  taskCreate: lib.func('int lmbff_task_create(const lmbff_task_params *, _Out_ lmbff_task **)'),
  taskOpen: lib.func('int lmbff_task_open(const char *, _Out_ lmbff_task **)'),
  taskSave: lib.func('int lmbff_task_save(lmbff_task *, const char *)'),
  taskFree: lib.func('void lmbff_task_free(lmbff_task *)'),
  addExample: lib.func('int lmbff_task_add_example(lmbff_task *, const char *, const char *, const char *, _Out_ uint64_t *)'),
  addUnlabeled: lib.func('int lmbff_task_add_unlabeled(lmbff_task *, const char *, const char *, _Out_ uint64_t *)'),
  remove: lib.func('int lmbff_task_remove(lmbff_task *, uint64_t)'),
  relabel: lib.func('int lmbff_task_relabel(lmbff_task *, uint64_t, const char *)'),
  setDev: lib.func('int lmbff_task_set_dev(lmbff_task *, uint64_t, bool)'),
  numDev: lib.func('size_t lmbff_task_num_dev(lmbff_task *)'),
  taskNumLabels: lib.func('size_t lmbff_task_num_labels(const lmbff_task *)'),
  taskLabel: lib.func('const char *lmbff_task_label(const lmbff_task *, size_t)'),
  counts: lib.func('int lmbff_task_counts(lmbff_task *, size_t, _Out_ size_t *, _Out_ size_t *)'),
  trainInit: lib.func('int lmbff_train_params_init(_Out_ lmbff_train_params *, size_t)'),
  trainStart: lib.func('int lmbff_train_start(lmbff_task *, const lmbff_train_params *, void *, void *, _Out_ lmbff_run **)'),
  runPoll: lib.func('int lmbff_run_poll(const lmbff_run *, _Out_ int32_t *, _Out_ size_t *, _Out_ size_t *)'),
  runWait: lib.func('int lmbff_run_wait(const lmbff_run *)'),
  runCancel: lib.func('int lmbff_run_cancel(const lmbff_run *)'),
  runVersion: lib.func('const char *lmbff_run_version(const lmbff_run *)'),
  runFree: lib.func('void lmbff_run_free(lmbff_run *)'),
  versions: lib.func('int lmbff_task_versions(lmbff_task *, void *, size_t, _Out_ size_t *)'),
  deleteVersion: lib.func('int lmbff_task_delete_version(lmbff_task *, const char *)'),
  taskExport: lib.func('int lmbff_task_export(lmbff_task *, const char *, const char *, bool)'),
  taskExportWithError: lib.func('int lmbff_task_export_with_error(lmbff_task *, const char *, const char *, bool, void *, size_t)'),
  setTorchThreads: lib.func('int lmbff_set_torch_threads(uint32_t)'),
};

// Another ABI version changed what a call means (include/lmbff.h): refused at load, before
// any call could read or write a struct this binding does not know.
if (c.abiVersion() !== ABI_VERSION) {
  throw new Error(`lmbff: ${libPath} has C ABI version ${c.abiVersion()}, this binding is written for ${ABI_VERSION}: use the binding of the same lmbff version`);
}

// A handle the program drops without close() is freed when it is garbage-collected (an
// open predictor holds its model; waiting for the process to end could hold gigabytes).
// close() frees at once and unregisters.
// A worker thread that ends runs no finaliser: what its program dropped unclosed is
// freed when it exits (its 'exit' event), or a dropped predictor's model would stay
// in the process's memory for good.
const unclosed = new Set(); // [free, handle, WeakRef(owner)] of every handle not yet closed or collected
const collected = new FinalizationRegistry((entry) => {
  unclosed.delete(entry);
  entry[0](entry[1]);
});
const entries = new WeakMap(); // owner -> its entry
const collectable = {
  register(owner, entry) {
    entry[2] = new WeakRef(owner);
    unclosed.add(entry);
    entries.set(owner, entry);
    collected.register(owner, entry, owner);
  },
  unregister(owner) {
    collected.unregister(owner);
    unclosed.delete(entries.get(owner));
    entries.delete(owner);
  },
};
if (!isMainThread) {
  process.on('exit', () => {
    // Each is freed on its own (predictions hold nothing of their predictor), through
    // its owner where the program still holds it: the owner reads as closed after, so a
    // close() in a later 'exit' listener is a no-op and a call is refused (they freed
    // the handle a second time, or used it freed).
    for (const entry of [...unclosed]) {
      const owner = entry[2].deref();
      if (owner) owner.close();
      else entry[0](entry[1]);
    }
    unclosed.clear();
  });
}

// The parameter structs mirror include/lmbff.h. Their defaults come from the library's
// lmbff_X_params_init with this binding's size, never by value (a later library's larger
// struct, returned by value, would overflow the binding's smaller one): a library that
// knows this layout fills it, one that does not is refused here, before any call.
const PARAMS = {
  predictor: ['lmbff_predictor_params', PredictorParams, c.predictorInit],
  task: ['lmbff_task_params', TaskParams, c.taskInit],
  train: ['lmbff_train_params', TrainParams, c.trainInit],
};

function defaults(which) {
  const [name, type, init] = PARAMS[which];
  const p = {};
  if (init(p, koffi.sizeof(type)) !== 0) {
    throw new Error(`${name}: ${libPath} does not know this binding's layout (${koffi.sizeof(type)} bytes; ${c.lastError()}): use the binding of the same lmbff version`);
  }
  return p;
}

for (const which of Object.keys(PARAMS)) defaults(which);

// Room for any message of lmbff_last_error() (4 KiB and a short suffix; include/lmbff.h).
const ERROR_CAPACITY = 4160;

const STATUS = ['OK', 'INVALID_ARGUMENT', 'UTF8', 'IO', 'FORMAT', 'MODEL', 'RUNTIME', 'NO_TRAINING', 'CANCELLED', 'INTERNAL', 'BUSY', 'CONFLICT'];

/** A failed lmbff call: `code` is the status name (e.g. 'INVALID_ARGUMENT'), `status` its number. */
class LmbffError extends Error {
  constructor(status, what, message = null) {
    super(`${what}: ${message ?? c.lastError()}`);
    this.status = status;
    this.code = STATUS[status] || `STATUS_${status}`;
  }
}

function check(status, what) {
  if (status !== 0) throw new LmbffError(status, what);
}

// Arguments are checked here, before koffi converts them: koffi takes a JS number where
// C wants `const char *` as an address (a crash), cuts strings at a NUL, and wraps
// numbers into the C integer's range. Each failure is an INVALID_ARGUMENT LmbffError.
function invalid(what, message) {
  return new LmbffError(1, what, message);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** `v` as a C string: a string without NUL or lone surrogates, or null where `nullable`. */
function str(what, name, v, nullable = false) {
  if (v === null || v === undefined) {
    if (nullable) return null;
    throw invalid(what, `${name} is ${v}: give a string`);
  }
  if (typeof v !== 'string') throw invalid(what, `${name} is a ${typeof v}, not a string`);
  const nul = v.indexOf('\0');
  if (nul >= 0) throw invalid(what, `${name} holds a NUL character at index ${nul}: C strings end there, so lmbff would read only what comes before it`);
  // A lone surrogate has no UTF-8 form: koffi would write U+FFFD in its place, and the
  // text would change without a word.
  const lone = LONE_SURROGATE.exec(v);
  if (lone) throw invalid(what, `${name} holds a lone UTF-16 surrogate (\\u${lone[0].charCodeAt(0).toString(16)}) at index ${lone.index}: it has no UTF-8 form`);
  return v;
}

/** `v` as an array of C strings. */
function strs(what, name, v) {
  if (!Array.isArray(v)) throw invalid(what, `${name} is ${v === null || v === undefined ? v : `a ${typeof v}`}, not an array of strings`);
  // Array.from visits the holes of a sparse array (map skips them).
  return Array.from(v, (s, i) => str(what, `${name}[${i}]`, s));
}

/**
 * An options object: undefined or null for none; a key it does not know is refused
 * (a misspelt option would otherwise be ignored and its default used).
 */
function options(what, name, v, known) {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(what, `${name} is ${Array.isArray(v) ? 'an array' : `a ${typeof v}`}: give an object`);
  const unknown = Object.keys(v).filter((k) => !known.includes(k));
  if (unknown.length) throw invalid(what, `${name} has no option ${unknown.map((k) => JSON.stringify(k)).join(', ')}: the options are ${known.join(', ')}`);
  return v;
}

/** `v` as a whole number in [min, max] (a BigInt too, where max is beyond 2^53). */
function whole(what, name, v, min = 0, max = 0xffffffff) {
  const ok = (typeof v === 'number' && Number.isInteger(v)) || (typeof v === 'bigint' && max > Number.MAX_SAFE_INTEGER);
  if (!ok || v < min || v > max) throw invalid(what, `${name} is ${typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v)}: give a whole number from ${min} to ${max}`);
  return v;
}

/**
 * Sets on the params struct `p` (the library's defaults) only the options given in `o`
 * (undefined: not given): `table` maps an option to [field, convert], convert checking
 * the value and returning what the field takes. A later library's other default is kept.
 */
function assignGiven(p, o, table) {
  for (const [k, [field, convert]] of Object.entries(table)) {
    if (o[k] !== undefined) p[field] = convert(o[k]);
  }
  return p;
}

/** An item id (uint64): a non-negative integer Number or BigInt. */
function itemId(what, v) {
  return whole(what, 'id', v, 0, 0xffffffffffffffffn);
}

function bool(what, name, v) {
  if (typeof v !== 'boolean') throw invalid(what, `${name} is ${JSON.stringify(v) ?? String(v)}: give true or false`);
  return v;
}

/**
 * Runs a size-query call `call(buf, capacity, needed)`: first without a buffer, which only
 * sets needed, then with a buffer of that size (again if it grew meanwhile). Returns the
 * string without its NUL.
 */
function copyOut(call, what) {
  let buf = null;
  for (;;) {
    const needed = [0];
    const status = call(buf, buf ? buf.length : 0, needed);
    if (status === 0) return buf.toString('utf8', 0, needed[0] - 1);
    if (needed[0] === 0 || needed[0] <= (buf ? buf.length : 0)) throw new LmbffError(status, what); // not a size problem
    buf = Buffer.alloc(needed[0]);
  }
}

/** Log levels of setLogger, most severe first. */
const LogLevel = Object.freeze({ ERROR: 0, WARN: 1, INFO: 2, DEBUG: 3 });
// The logger, if any: messages wait in lmbff's queue (lmbff_set_log_queue) and are
// delivered from this thread's event loop. A callback would be called on whatever thread
// logs, and koffi calls JS only on the thread that made the function: a worker thread
// logging through the main thread's function aborts the process.
let logger = null; // { fn, timer, threw }
const liveRuns = new Set(); // the handles of training runs started by train() and not yet ended
const LOG_QUEUE_CAPACITY = 65536;
const LOG_EVERY_MS = 50;

// Delivers every queued message to the logger. A logger that throws must not fail the
// call that drains (or leak its result): its error becomes a process warning, once.
let draining = false;
function drainLog() {
  // A logger that sets another (or none) from inside drains again: that inner drain
  // returns at once, and the outer loop reads the new logger for the next message (it
  // recursed once a queued message, which a full queue of 65,536 could overflow).
  if (draining) return;
  draining = true;
  try {
    drainQueued();
  } finally {
    draining = false;
  }
}

function drainQueued() {
  const level = [0];
  // Read per message: a logger may replace itself, or stop logging, from inside.
  for (let l = logger, m = l && c.logNext(level); l && m !== null; l = logger, m = l && c.logNext(level)) {
    try {
      l.fn(level[0], m);
    } catch (e) {
      if (!l.threw) process.emitWarning(`the lmbff logger threw (reported once; its later errors are dropped): ${e && e.stack ? e.stack : e}`, 'LmbffLoggerWarning');
      l.threw = true;
    }
  }
}

// A process that exits while a run is going would unload libtorch under the training
// thread (a crash at exit): runs are cancelled and waited for first (one training step;
// longer where the run is loading or saving a model, which a cancel does not cut short).
// Messages still queued are delivered before the exit.
process.on('exit', () => {
  for (const run of liveRuns) c.runCancel(run);
  const until = Date.now() + 60000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (const run of liveRuns) {
    const state = [0], step = [0], total = [0];
    while (c.runPoll(run, state, step, total) === 0 && state[0] === 0 && Date.now() < until) Atomics.wait(pause, 0, 0, 10);
    if (state[0] === 0) {
      require('fs').writeSync(2, 'lmbff: a training run cancelled at exit is still going after 60 s (loading or saving a model): the exit waits for it\n');
    }
    // The wait joins the thread (it logs nothing more), so nothing of it outlives the exit.
    c.runWait(run);
  }
  drainLog();
});

/**
 * Sends the library's messages up to maxLevel (a LogLevel) to fn(level, message); null
 * stops logging (the default). Process-wide, so it is set on the main thread: the
 * messages of lmbff calls made in worker threads reach it there. Messages are delivered
 * from the event loop (every 50 ms while a logger is set, when the logger changes, and
 * at exit), in the order lmbff logged them, also those of lmbff's training thread.
 */
function setLogger(fn, maxLevel = LogLevel.INFO) {
  if (fn !== null && fn !== undefined && typeof fn !== 'function') throw invalid('set logger', `the logger is a ${typeof fn}: give a function, or null to stop logging`);
  whole('set logger', 'maxLevel', maxLevel, LogLevel.ERROR, 0x7fffffff);
  if (!isMainThread) throw invalid('set logger', 'this is a worker thread: the logger is process-wide, set it on the main thread (messages of lmbff calls made in workers reach it there)');
  const status = fn ? c.setLogQueue(maxLevel, LOG_QUEUE_CAPACITY) : c.setLogCallback(null, LogLevel.ERROR, null);
  if (status !== 0) throw new LmbffError(status, 'set logger');
  // What the previous logger was sent goes to it.
  drainLog();
  if (logger) clearInterval(logger.timer);
  // A logger that stops logging from inside its own call wants no more: what is still
  // queued is dropped (it stayed for whichever logger came next, maybe much later).
  if (draining && !fn) {
    const level = [0];
    while (c.logNext(level) !== null);
  }
  logger = null;
  if (fn) {
    const timer = setInterval(drainLog, LOG_EVERY_MS);
    timer.unref(); // a logger alone does not keep the process alive
    logger = { fn, timer, threw: false };
  }
}

/** Sets libtorch's intra-op threads for training (1 to 256, or the machine's hardware threads where it has more; 0 for all cores); process-wide. */
function setTorchThreads(n) {
  check(c.setTorchThreads(whole('set torch threads', 'threads', n)), 'set torch threads');
}

/**
 * Exports a trained checkpoint directory (a `lmbff train --out` directory, or a task's
 * version under <task>/models/) to an export directory for Predictor.
 */
function exportCheckpoint(checkpointDir, outDir, opts) {
  const { fp16 = false } = options('export', 'options', opts, ['fp16']);
  check(c.export(str('export', 'checkpointDir', checkpointDir), str('export', 'outDir', outDir), bool('export', 'fp16', fp16)), 'export');
}

/** The export folder and lmbff_predictor_params of `new Predictor` / `Predictor.open`. */
function predictorArgs(what, exportDir, opts) {
  const o = options(what, 'options', opts, ['threads', 'sessions', 'maxBatch', 'ortLibrary']);
  const p = assignGiven(defaults('predictor'), o, {
    threads: ['threads', (v) => whole(what, 'threads', v)], sessions: ['sessions', (v) => whole(what, 'sessions', v)],
    maxBatch: ['max_batch', (v) => whole(what, 'maxBatch', v)], ortLibrary: ['ort_library', (v) => str(what, 'ortLibrary', v, true)],
  });
  return [str(what, 'exportDir', exportDir), p];
}

// `new Predictor(OPENED, [handle, params])`: a predictor Predictor.open opened.
const OPENED = Symbol('opened');

/** A predictor over an export directory; shareable, close() when done. */
class Predictor {
  /** Opens the export folder here, holding the event loop for the load (Predictor.open does not). */
  constructor(exportDir, opts) {
    let handle, p;
    if (exportDir === OPENED) {
      [handle, p] = opts;
    } else {
      const what = 'open predictor';
      let dir;
      [dir, p] = predictorArgs(what, exportDir, opts);
      const out = [null];
      check(c.predictorOpen(dir, p, out), what);
      handle = out[0];
    }
    this.handle = handle;
    // Asynchronous calls (predictBatchAsync): at most `sessions` on libuv's pool at once
    // (more would hold pool threads waiting for a session, and stall the process's file
    // system, DNS and crypto work), the rest queued; close() frees after the last.
    const state = { raw: this.handle, closed: false };
    state.turns = new Limiter(p.sessions, () => {
      if (state.closed && state.raw) {
        c.predictorFree(state.raw);
        state.raw = null;
      }
    });
    this.state = state;
    collectable.register(this, [c.predictorFree, this.handle]);
    /** Class names, in class order (frozen: predictions name their classes by it). */
    this.labels = Object.freeze(Array.from({ length: Number(c.numLabels(this.handle)) }, (_, i) => c.label(this.handle, i)));
    /** A multi-label export: probs are each label's own probability; `labels` of a prediction lists those that apply. */
    this.multiLabel = c.multiLabel(this.handle);
    /** The export reads [textA, textB] pairs (a two-sentence template). */
    this.readsPairs = c.readsPairs(this.handle);
    /** A regression export's score range [low, high] (each prediction has a score), else null. */
    const low = [0], high = [0];
    this.regression = c.regression(this.handle, low, high) ? [low[0], high[0]] : null;
  }

  /**
   * Opens the export folder on a thread of libuv's pool, without holding the event loop:
   * a Promise of the Predictor (options as the constructor's). A bad argument rejects
   * before any work, a folder that does not open with its LmbffError. In a worker
   * thread it opens on the worker's own thread (see predictAsync).
   */
  static open(exportDir, opts) {
    const what = 'open predictor';
    try {
      if (!isMainThread) return Promise.resolve(new Predictor(exportDir, opts));
      const [dir, p] = predictorArgs(what, exportDir, opts);
      return new Promise((resolve, reject) => {
        callWithError(c.predictorOpenWithError, what, [dir, p], (e, handle) => (e ? reject(e) : resolve(new Predictor(OPENED, [handle, p]))));
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Predicts texts (or [textA, textB] pairs): [{label, labels, probs, margin, entropy}] (with `score` for a regression export). */
  predict(inputs) {
    return readAll(this.predictBatch(inputs));
  }

  /** Predicts as predict() does, keeping the results for get, score and labelStudio. */
  predictBatch(inputs) {
    const [a, b] = this.#inputs(inputs);
    const out = [null];
    check(c.predict(this.handle, a, b, a.length, out), 'predict');
    return new Predictions(this, out[0]);
  }

  /**
   * As predict(), without holding the event loop: the batch runs on a thread of libuv's
   * pool. As many run at once as the predictor has sessions (the `sessions` option; the
   * rest wait their turn in order), which leaves the pool's other threads to the
   * process's file system, DNS and crypto work where sessions are fewer than the pool's
   * threads (UV_THREADPOOL_SIZE, 4 by default). A Promise of the results; a bad argument
   * rejects before any work, a failed call with its LmbffError. close() with calls
   * waiting or running takes effect when the last ends. In a worker
   * thread the batch runs on the worker's own thread (a worker is off the main event
   * loop already, and one that exits during a pool call aborts the process in koffi).
   */
  async predictAsync(inputs) {
    return readAll(await this.predictBatchAsync(inputs));
  }

  /** As predictBatch(), asynchronously (see predictAsync): a Promise of a Predictions. */
  predictBatchAsync(inputs) {
    let a, b;
    try {
      if (!isMainThread) return Promise.resolve(this.predictBatch(inputs));
      [a, b] = this.#inputs(inputs);
    } catch (e) {
      return Promise.reject(e);
    }
    const state = this.state;
    return new Promise((resolve, reject) => {
      state.turns.run((release) => {
        callWithError(c.predictWithError, 'predict', [state.raw, a, b, a.length], (e, handle) => {
          try {
            if (e) reject(e);
            else resolve(new Predictions(this, handle));
          } finally {
            release();
          }
        });
      });
    });
  }

  /** The inputs as C strings, [texts, textsB or null]; throws INVALID_ARGUMENT by name. */
  #inputs(inputs) {
    if (!this.handle) throw invalid('predict', 'the predictor is closed');
    if (!Array.isArray(inputs)) throw invalid('predict', `inputs is ${inputs === null ? 'null' : `a ${typeof inputs}`}: give an array of texts or of [textA, textB] pairs`);
    // Holes of a sparse array become undefined, refused by name below (filter and map skip them).
    inputs = Array.from(inputs);
    const pairs = inputs.filter(Array.isArray).length;
    if (pairs !== 0 && pairs !== inputs.length) {
      throw invalid('predict', `${pairs} of ${inputs.length} inputs are [textA, textB] pairs: give all pairs or all texts`);
    }
    const bad = inputs.findIndex((x) => Array.isArray(x) && x.length !== 2);
    if (bad >= 0) throw invalid('predict', `input ${bad} is a pair of ${inputs[bad].length} texts: a pair is [textA, textB]`);
    const a = inputs.map((x, i) => str('predict', pairs ? `input ${i}'s textA` : `input ${i}`, Array.isArray(x) ? x[0] : x));
    const b = pairs ? inputs.map((x, i) => str('predict', `input ${i}'s textB`, x[1])) : null;
    return [a, b];
  }

  /** Frees the predictor; one with asynchronous calls in flight is freed when the last ends. */
  close() {
    if (this.handle) {
      collectable.unregister(this);
      this.state.closed = true;
      this.state.turns.poke();
    }
    this.handle = null;
  }
}

/**
 * Turns for asynchronous work: at most `limit` hold one at once, the rest wait in order.
 * `idle()` runs whenever none holds or waits after a turn ends or a poke.
 */
class Limiter {
  constructor(limit, idle = () => {}) {
    this.limit = limit;
    this.idle = idle;
    this.running = 0;
    this.waiting = [];
  }

  /** Calls start(release) in its turn; release() ends the turn (once; again does nothing). */
  run(start) {
    this.waiting.push(start);
    this.poke();
  }

  /** Starts waiting work while turns are free; idle() if none holds or waits. */
  poke() {
    while (this.running < this.limit && this.waiting.length > 0) {
      this.running += 1;
      let held = true;
      this.waiting.shift()(() => {
        if (!held) return;
        held = false;
        this.running -= 1;
        this.poke();
      });
    }
    if (this.running === 0 && this.waiting.length === 0) this.idle();
  }
}

/**
 * How many of lmbff's asynchronous calls run at once on the main thread, all predictors
 * together; the rest wait in order. koffi refuses more than 256 at once in a Node
 * environment by default (its own error, not lmbff's; koffi.config's max_async_calls),
 * and other modules' koffi calls count too. (In a worker the calls run synchronously.)
 */
const ASYNC_LIMIT = 64;
const asyncTurns = new Limiter(ASYNC_LIMIT);

/**
 * Calls `fn`, an lmbff_*_with_error function, on libuv's pool with `args`, then its out
 * pointer (where `hasOut`) and an error buffer: the pool thread's lmbff_last_error() is
 * out of this thread's reach, so the message comes back in the buffer.
 * `settle(error, handle)` gets koffi's error or an LmbffError named `what`, or the handle
 * written to the out pointer. At most ASYNC_LIMIT such calls run at once; a call waits
 * its turn here.
 */
function callWithError(fn, what, args, settle, hasOut = true) {
  asyncTurns.run((release) => {
    const message = Buffer.alloc(ERROR_CAPACITY);
    const out = [null];
    const end = (err, status) => {
      try {
        if (err) settle(err);
        else if (status !== 0) settle(new LmbffError(status, what, message.toString('utf8', 0, message.indexOf(0))));
        else settle(null, out[0]);
      } finally {
        release();
      }
    };
    try {
      fn.async(...args, ...(hasOut ? [out] : []), message, message.length, end);
    } catch (e) {
      // koffi refused the call: nothing runs, nothing calls back. Settled on the next
      // tick, so that refused calls do not start one another recursively, with an
      // LmbffError as every failed call, koffi's error its cause: BUSY where its queue
      // of asynchronous calls is full (other modules' calls fill it; nothing was done,
      // and the same call may be made again), INTERNAL otherwise (an argument koffi
      // could not convert: a bug in this binding, not to be retried).
      const full = /too many asynchronous calls/i.test(String(e && e.message));
      const failed = new LmbffError(full ? 10 : 9, what, full
        ? `koffi refused the asynchronous call (${e.message}): nothing ran; call again once calls in flight have settled`
        : `koffi refused the asynchronous call (${e && e.message}): a bug in the lmbff binding`);
      failed.cause = e;
      process.nextTick(end, failed);
    }
  });
}

/** Every result of `r` as plain objects; `r` is closed. */
function readAll(r) {
  try {
    return Array.from({ length: r.length }, (_, i) => r.get(i));
  } finally {
    r.close();
  }
}

/** The results of one predictBatch call; close() when done. */
class Predictions {
  constructor(predictor, handle) {
    this.predictor = predictor;
    this.handle = handle;
    this.length = Number(c.predictionsCount(handle));
    collectable.register(this, [c.predictionsFree, handle]);
  }

  /**
   * The prediction of input i: {label, labels, probs, margin, entropy}, and a regression
   * export's score; labels are those that apply (the predicted class; for a multi-label
   * export each label at 0.5 or more).
   */
  get(i) {
    if (!this.handle) throw invalid('read prediction', 'the predictions are closed');
    whole('read prediction', 'index', i, 0, Number.MAX_SAFE_INTEGER);
    const label = [0], margin = [0], entropy = [0];
    check(c.predictionsGet(this.handle, i, label, margin, entropy), 'read prediction');
    const probs = new Array(this.predictor.labels.length).fill(0);
    check(c.predictionsProbs(this.handle, i, probs, probs.length), 'read probabilities');
    const labels = this.predictor.labels.filter((_, l) => {
      const yes = [false];
      check(c.applies(this.handle, i, l, yes), 'read labels');
      return yes[0];
    });
    const out = { label: this.predictor.labels[label[0]], labels, probs, margin: margin[0], entropy: entropy[0] };
    // (predict() and predictAsync() read results through here: they lost the score.)
    if (this.predictor.regression) out.score = this.score(i);
    return out;
  }

  /** The regression score of input i (regression exports; INVALID_ARGUMENT for a classifier). */
  score(i) {
    if (!this.handle) throw invalid('read score', 'the predictions are closed');
    whole('read score', 'index', i, 0, Number.MAX_SAFE_INTEGER);
    const score = [0];
    check(c.predictionsScore(this.handle, i, score), 'read score');
    return score[0];
  }

  /**
   * The predictions as Label Studio predictions, one per input: [{model_version, score
   * (top probability), result: [{from_name, to_name, type: 'choices', value: {choices:
   * [label]}}]}] (a regression export: result [{..., type: 'number', value: {number:
   * score}}], no score). modelVersion null takes the export's. The predictor must be open.
   */
  labelStudio(fromName, toName, opts) {
    if (!this.predictor.handle) throw invalid('Label Studio JSON', 'the predictor is closed');
    if (!this.handle) throw invalid('Label Studio JSON', 'the predictions are closed');
    const what = 'Label Studio JSON';
    const { modelVersion = null } = options(what, 'options', opts, ['modelVersion']);
    const args = [str(what, 'fromName', fromName), str(what, 'toName', toName), str(what, 'modelVersion', modelVersion, true)];
    const json = copyOut((buf, capacity, needed) => c.labelStudioJson(this.predictor.handle, this.handle, ...args, buf, capacity, needed), what);
    return JSON.parse(json);
  }

  close() {
    if (this.handle) {
      collectable.unregister(this);
      c.predictionsFree(this.handle);
    }
    this.handle = null;
    this.length = 0;
  }
}

// train()'s options: [field of lmbff_train_params, check and convert]; an option not
// given keeps the library's default.
const TRAIN_WHAT = 'train';
const TRAIN_OPTIONS = {
  steps: ['steps', (v) => whole(TRAIN_WHAT, 'steps', v)],
  batchSize: ['batch_size', (v) => whole(TRAIN_WHAT, 'batchSize', v)],
  learningRate: ['learning_rate', (v) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(TRAIN_WHAT, `learningRate is ${JSON.stringify(v) ?? String(v)}: give a number`);
    return v;
  }],
  seed: ['seed', (v) => whole(TRAIN_WHAT, 'seed', v, 0, 0xffffffffffffffffn)],
  device: ['device', (v) => {
    if (!Object.hasOwn(DEVICES, v)) throw invalid(TRAIN_WHAT, `device ${JSON.stringify(v)}: use one of ${Object.keys(DEVICES).join(', ')}`);
    return DEVICES[v];
  }],
  deviceIndex: ['device_index', (v) => whole(TRAIN_WHAT, 'deviceIndex', v)],
  adaptationSteps: ['adaptation_steps', (v) => whole(TRAIN_WHAT, 'adaptationSteps', v)],
  warmStart: ['warm_start', (v) => str(TRAIN_WHAT, 'warmStart', v, true)],
  demonstrations: ['demonstrations', (v) => bool(TRAIN_WHAT, 'demonstrations', v)],
  demoSets: ['demo_sets', (v) => whole(TRAIN_WHAT, 'demoSets', v)],
  demoFilter: ['demo_filter', (v) => bool(TRAIN_WHAT, 'demoFilter', v)],
  demoFilterModel: ['demo_filter_model', (v) => str(TRAIN_WHAT, 'demoFilterModel', v, true)],
  method: ['method', (v) => {
    if (!Object.hasOwn(METHODS, v)) throw invalid(TRAIN_WHAT, `method ${JSON.stringify(v)}: use one of ${Object.keys(METHODS).join(', ')}`);
    return METHODS[v];
  }],
  calibrate: ['calibrate', (v) => bool(TRAIN_WHAT, 'calibrate', v)],
  labelAnchors: ['disable_label_anchors', (v) => !bool(TRAIN_WHAT, 'labelAnchors', v)],
  anchorTemplates: ['anchor_templates', (v) => {
    if (!Array.isArray(v)) throw invalid(TRAIN_WHAT, 'anchorTemplates must be an array of template strings');
    strs(TRAIN_WHAT, 'anchorTemplates', v);
    return v.length ? v : null;
  }],
  embeddingMaxSteps: ['embedding_max_steps', (v) => whole(TRAIN_WHAT, 'embeddingMaxSteps', v)],
};

/** A labelling task (one thread at a time); close() when done. */
class Task {
  constructor(handle) {
    this.handle = handle;
    collectable.register(this, [c.taskFree, handle]);
    /** Class names, in class order (frozen). */
    this.labels = Object.freeze(Array.from({ length: Number(c.taskNumLabels(handle)) }, (_, i) => c.taskLabel(handle, i)));
  }

  /**
   * multiLabel: any number of labels may apply to an example; it trains as one yes/no
   * prompt per label, reading each label's name as the template's second sentence
   * (default template `{text_a} Is it about {text_b}? {mask}.`). labelWords are then the
   * two answer words, no then yes (default No, Yes), and addExample's label lists the
   * labels that apply separated by '|' ('' for none). regression: [low, high] makes a
   * regression task (labels and labelWords: the lower then the upper pole; an example's
   * label is its score, '3.5'; exports output a score).
   */
  static create(params) {
    const what = 'create task';
    const { modelDir, labels, labelWords = null, template = null, maxLen, multiLabel = false, regression = null } = options(what, 'params', params, ['modelDir', 'labels', 'labelWords', 'template', 'maxLen', 'multiLabel', 'regression']);
    const p = defaults('task');
    const tmpl = str(what, 'template', template ?? (multiLabel ? null : '{text} It was {mask}.'), true);
    strs(what, 'labels', labels);
    // Too few labels is named as such, as the library names it, before their words.
    if (labels.length < (multiLabel ? 1 : 2)) {
      throw invalid(what, multiLabel ? 'a multi-label task needs at least one label, got 0' : `a task needs at least two labels, got ${labels.length}`);
    }
    if (labelWords !== null && labelWords !== undefined) {
      strs(what, 'labelWords', labelWords);
      // The C struct has one count for both arrays: a shorter one would be read past its end.
      const want = multiLabel ? 2 : labels.length;
      if (labelWords.length !== want) {
        throw invalid(what, multiLabel ? `a multi-label task takes two answer words (no, yes), not ${labelWords.length}` : `${labels.length} labels but ${labelWords.length} label words: give one per label`);
      }
    } else if (!multiLabel) {
      throw invalid(what, 'labelWords is missing: give one label word per label');
    }
    if (regression !== undefined && regression !== null && (!Array.isArray(regression) || regression.length !== 2 || !regression.every(Number.isFinite))) {
      throw invalid(what, 'regression is a [low, high] pair of numbers');
    }
    const flags = (bool(what, 'multiLabel', multiLabel) ? TASK_MULTI_LABEL : 0) | (regression ? TASK_REGRESSION : 0);
    Object.assign(p, { model_dir: str(what, 'modelDir', modelDir), template_: tmpl, labels, label_words: labelWords ?? null, num_labels: labels.length, flags });
    if (maxLen !== undefined) p.max_len = whole(what, 'maxLen', maxLen);
    if (regression) Object.assign(p, { regression_low: regression[0], regression_high: regression[1] });
    const out = [null];
    check(c.taskCreate(p, out), what);
    return new Task(out[0]);
  }

  static open(dir) {
    const out = [null];
    check(c.taskOpen(str('open task', 'dir', dir), out), 'open task');
    return new Task(out[0]);
  }

  /** The handle, for an operation `what` (a closed task throws). */
  handleFor(what) {
    if (!this.handle) throw invalid(what, 'the task is closed');
    return this.handle;
  }

  addExample(text, label, textB = null) {
    const what = 'add example';
    const id = [0];
    check(c.addExample(this.handleFor(what), str(what, 'text', text), str(what, 'textB', textB, true), str(what, 'label', label), id), what);
    return id[0];
  }

  addUnlabeled(text, textB = null) {
    const what = 'add unlabeled text';
    const id = [0];
    check(c.addUnlabeled(this.handleFor(what), str(what, 'text', text), str(what, 'textB', textB, true), id), what);
    return id[0];
  }

  /** Removes the example or unlabeled text `id`. */
  remove(id) {
    check(c.remove(this.handleFor('remove'), itemId('remove', id)), 'remove');
  }

  /** Sets the label of item `id` (an unlabeled text becomes an example). */
  relabel(id, label) {
    check(c.relabel(this.handleFor('relabel'), itemId('relabel', id), str('relabel', 'label', label)), 'relabel');
  }

  /**
   * Marks labelled example id as a dev example (held out of training; it picks the kept
   * weights and, with train({calibrate: true}), fits the temperature), or back.
   */
  setDev(id, dev = true) {
    check(c.setDev(this.handleFor('set dev'), itemId('set dev', id), bool('set dev', 'dev', dev)), 'set dev');
  }

  /** The number of dev examples. */
  numDev() {
    return Number(c.numDev(this.handleFor('count dev examples')));
  }

  /** Examples of label index `i`, and the number of unlabeled texts. */
  counts(i) {
    const n = [0], free = [0];
    check(c.counts(this.handleFor('count'), whole('count', 'label index', i, 0, Number.MAX_SAFE_INTEGER), n, free), 'count');
    return { examples: Number(n[0]), unlabeled: Number(free[0]) };
  }

  save(dir) {
    check(c.taskSave(this.handleFor('save task'), str('save task', 'dir', dir)), 'save task');
  }

  /**
   * Trains a new model version in lmbff's background thread; resolves to the version
   * ('v1', ...). onProgress({step, total}) is called as it goes (if it throws, the run
   * is cancelled and the promise rejects with that error; a throw on the last call,
   * after the run has ended, is a process warning and the result stands); signal (an AbortSignal)
   * cancels the run (the promise then rejects with code 'CANCELLED' and the signal's
   * reason as its cause; a signal already aborted cancels it at once; one that comes
   * after the run decided its outcome, or whose saved version could not be deleted, leaves
   * the promise resolved to that version, as lmbff_run_cancel says). device is 'auto' (CUDA when the machine has it, else
   * the CPU), 'cpu' or 'cuda' (deviceIndex picks the GPU). demonstrations appends one labelled example per class to every input (LM-BFF); the version then
   * predicts with demoSets fixed sets. demoFilter picks each input's demonstrations from
   * the most similar half of each class (LM-BFF's demo_filter), ranked by the sentence
   * encoder demoFilterModel (an HF model directory; null: the task's model). method is
   * 'auto' (the library decides: see lmbff.h), 'prompt', 'sentence-embedding' or
   * 'zero-shot-words' (no training and no example needed: labels by how close each
   * input's tokens come to the label words).
   * calibrate fits temperature scaling on the dev examples (setDev). labelAnchors: the
   * sentence-embedding method trains with the template's text and each label word
   * ("It was great.") as extra examples of their class (default true; false: SetFit as
   * published); a multi-label task's anchors are its labels' names. anchorTemplates:
   * further single-sentence templates whose texts are anchors too ('{text} A truly
   * {mask} movie.' adds 'A truly great movie.'). embeddingMaxSteps caps the
   * sentence-embedding method's contrastive steps (default 2000; 0: SetFit's whole
   * schedule, 2.5 steps per example and anchor).
   */
  train(params, runOptions) {
    // Every refused setting rejects the promise, before any run starts.
    const what = TRAIN_WHAT;
    let p, handle, onProgress, signal, pollMs;
    try {
      const given = options(what, 'params', params, Object.keys(TRAIN_OPTIONS));
      ({ onProgress, signal, pollMs = 50 } = options(what, 'run options', runOptions, ['onProgress', 'signal', 'pollMs']));
      handle = this.handleFor(what);
      // A worker's runs could not be cancelled and waited for when it is terminated (its
      // exit handler does not run then), and a run left going crashes the process at
      // exit. train() is asynchronous already: the event loop stays free without a worker.
      if (!isMainThread) throw invalid(what, 'this is a worker thread: start training on the main thread (train() runs on lmbff\'s own thread and does not block the event loop)');
      if (onProgress !== undefined && onProgress !== null && typeof onProgress !== 'function') throw invalid(what, `onProgress is a ${typeof onProgress}: give a function`);
      if (signal !== undefined && signal !== null && (typeof signal.addEventListener !== 'function' || typeof signal.aborted !== 'boolean')) {
        throw invalid(what, 'signal is not an AbortSignal: give an AbortController\'s signal (controller.signal), not the controller');
      }
      whole(what, 'pollMs', pollMs, 1, 0x7fffffff);
      // The library's defaults (lmbff_train_params_init), with the options given set.
      p = assignGiven(defaults('train'), given, TRAIN_OPTIONS);
      if (given.anchorTemplates !== undefined) p.num_anchor_templates = given.anchorTemplates.length;
    } catch (e) {
      return Promise.reject(e);
    }
    const out = [null];
    const started = c.trainStart(handle, p, null, null, out);
    if (started !== 0) return Promise.reject(new LmbffError(started, 'start training'));
    const run = out[0];
    liveRuns.add(run);
    // The listener goes before the run is freed: a signal that outlives the run (a
    // timeout, a long-lived controller) must not cancel a freed handle.
    const onAbort = () => c.runCancel(run);
    if (signal?.aborted) onAbort();
    else if (signal) signal.addEventListener('abort', onAbort, { once: true });
    return new Promise((resolve, reject) => {
      let threw = false, thrown; // what onProgress threw (any value, undefined included)
      // The run's end, however it came: the listener goes, then the handle.
      const release = () => {
        if (signal) signal.removeEventListener('abort', onAbort);
        liveRuns.delete(run);
        c.runFree(run);
        drainLog();
      };
      const tick = () => {
        const state = [0], step = [0], total = [0];
        const polled = c.runPoll(run, state, step, total);
        if (polled !== 0) {
          // A run that cannot be polled cannot be followed: free it and say why, rather
          // than poll it forever.
          const err = new LmbffError(polled, 'poll the training run');
          c.runCancel(run);
          // Waited for on libuv's pool: a run still loading or saving a model would hold
          // the event loop that long.
          const done = () => {
            release();
            reject(err);
          };
          // (Through the gate every asynchronous call takes: koffi's queue is shared.)
          asyncTurns.run((turn) => {
            const end = () => {
              turn();
              done();
            };
            try {
              c.runWait.async(run, end);
            } catch (e) {
              c.runWait(run);
              end();
            }
          });
          return undefined;
        }
        // What onProgress throws, or an async onProgress rejects with, cancels the run
        // while it goes; a run that has ended can no longer be cancelled: its result
        // stands (a saved version is not hidden behind the error), and the error becomes a
        // process warning.
        const failed = (e) => {
          if (threw) return;
          if (state[0] === 0 && liveRuns.has(run)) {
            threw = true;
            thrown = e;
            c.runCancel(run);
          } else {
            process.emitWarning(`onProgress threw after the training run had ended (its result stands): ${e && e.stack ? e.stack : e}`, 'LmbffProgressWarning');
          }
        };
        try {
          if (onProgress && !threw) {
            const r = onProgress({ step: Number(step[0]), total: Number(total[0]) });
            if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function') r.then(undefined, failed);
          }
        } catch (e) {
          failed(e);
        }
        drainLog();
        // Wait by polling: lmbff_run_wait here would block the event loop.
        if (state[0] === 0) return setTimeout(tick, pollMs);
        const status = c.runWait(run);
        const version = status === 0 ? c.runVersion(run) : null;
        // A cancel that came after the save and could not delete the version ends OK
        // with it (the header: no version is left unnamed): the error names it.
        if (threw && version) {
          process.emitWarning(`onProgress threw, and the run had saved version ${version}, which could not be deleted: it stays`, 'LmbffProgressWarning');
          try {
            if (thrown instanceof Object) thrown.version = version;
          } catch {
            // A frozen value: the warning names the version.
          }
        }
        // The run's message is read before release() hands the log to the logger, whose
        // own lmbff calls would replace it.
        const failure = status === 0 ? null : new LmbffError(status, 'training');
        // A cancel the signal asked for carries its reason, as an aborted fetch's does
        // (the code stays 'CANCELLED').
        if (failure && failure.code === 'CANCELLED' && signal?.aborted) failure.cause = signal.reason;
        release();
        if (threw) return reject(thrown);
        return failure ? reject(failure) : resolve(version);
      };
      setTimeout(tick, pollMs);
    });
  }

  /** The task's model versions, oldest first. */
  versions() {
    const handle = this.handleFor('list versions');
    const list = copyOut((buf, capacity, needed) => c.versions(handle, buf, capacity, needed), 'list versions');
    return list ? list.split('\n') : [];
  }

  deleteVersion(version) {
    check(c.deleteVersion(this.handleFor('delete version'), str('delete version', 'version', version)), 'delete version');
  }

  /** Exports model version `version` to an export directory for Predictor (holds the event loop: see exportVersionAsync). */
  exportVersion(version, outDir, opts) {
    check(c.taskExport(...this.#exportArgs(version, outDir, opts)), 'export');
  }

  /**
   * As exportVersion(), without holding the event loop: the export (seconds for a large
   * model) runs on a thread of libuv's pool, and the task takes other calls meanwhile.
   * A Promise; a bad argument rejects before any work, a failed export with its
   * LmbffError. close() during it frees the task when it ends. In a worker thread it
   * exports on the worker's own thread.
   */
  exportVersionAsync(version, outDir, opts) {
    let args;
    try {
      if (!isMainThread) return Promise.resolve(this.exportVersion(version, outDir, opts));
      args = this.#exportArgs(version, outDir, opts);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      this.#calls.run((release) => {
        callWithError(c.taskExportWithError, 'export', args, (e) => {
          try {
            if (e) reject(e);
            else resolve();
          } finally {
            release();
          }
        }, false);
      });
    });
  }

  /** Asynchronous calls under way (any number at once), and a handle close() left to free after them. */
  #calls = new Limiter(Infinity, () => {
    if (this.#closedHandle) {
      c.taskFree(this.#closedHandle);
      this.#closedHandle = null;
    }
  });
  #closedHandle = null;

  #exportArgs(version, outDir, opts) {
    const { fp16 = false } = options('export', 'options', opts, ['fp16']);
    return [this.handleFor('export'), str('export', 'version', version), str('export', 'outDir', outDir), bool('export', 'fp16', fp16)];
  }

  /** Frees the task; with an exportVersionAsync under way, when the last ends. */
  close() {
    if (this.handle) {
      collectable.unregister(this);
      this.#closedHandle = this.handle;
      this.#calls.poke();
    }
    this.handle = null;
  }
}

module.exports = {
  Predictor, Predictions, Task, LmbffError, LogLevel, ABI_VERSION,
  setLogger, setTorchThreads, exportCheckpoint,
  version: () => c.version(),
  abiVersion: () => c.abiVersion(),
  hasTraining: () => c.hasTraining(),
};
