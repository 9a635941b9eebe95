// Node bindings of lmbff over its C ABI (include/lmbff.h), through koffi.
// The library: LMBFF_LIB, else ../../target/release/liblmbff.so (the full build; the
// serve-only build works for Predictor). Long work (training) runs on lmbff's own thread
// and is awaited with a Promise that polls it, so the event loop never blocks. Log
// messages go to setLogger's function, on the main thread.
'use strict';
const path = require('path');
const koffi = require('koffi');

const libPath = process.env.LMBFF_LIB || path.join(__dirname, '../../target/release/liblmbff.so');
const lib = koffi.load(libPath);

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
const LogFn = koffi.proto('void lmbff_log_fn(int32_t level, const char *message, void *user_data)');
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
  setLogCallback: lib.func('int lmbff_set_log_callback(lmbff_log_fn *, int32_t, void *)'),
  predictorInit: lib.func('int lmbff_predictor_params_init(_Out_ lmbff_predictor_params *, size_t)'),
  predictorOpen: lib.func('int lmbff_predictor_open(const char *, const lmbff_predictor_params *, _Out_ lmbff_predictor **)'),
  predictorFree: lib.func('void lmbff_predictor_free(lmbff_predictor *)'),
  numLabels: lib.func('size_t lmbff_predictor_num_labels(const lmbff_predictor *)'),
  label: lib.func('const char *lmbff_predictor_label(const lmbff_predictor *, size_t)'),
  multiLabel: lib.func('bool lmbff_predictor_multi_label(const lmbff_predictor *)'),
  applies: lib.func('int lmbff_predictions_applies(const lmbff_predictions *, size_t, size_t, _Out_ bool *)'),
  predict: lib.func('int lmbff_predict(const lmbff_predictor *, const char **, const char **, size_t, _Out_ lmbff_predictions **)'),
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
  setTorchThreads: lib.func('int lmbff_set_torch_threads(uint32_t)'),
};

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
let logger = null; // the registered koffi callback, if any
let liveRuns = 0; // training runs started by train() and not yet ended

/**
 * Sends the library's messages up to maxLevel (a LogLevel) to fn(level, message); null
 * stops logging (the default). Process-wide. Messages from lmbff's training thread wait
 * for the event loop, so the logger cannot change while a run is going (that could
 * deadlock): it throws then.
 */
function setLogger(fn, maxLevel = LogLevel.INFO) {
  if (liveRuns > 0) throw new Error('setLogger: a training run is going; set the logger before or after it');
  const next = fn ? koffi.register((level, message) => fn(level, message), koffi.pointer(LogFn)) : null;
  const status = c.setLogCallback(next, maxLevel, null);
  if (status !== 0) {
    const err = new LmbffError(status, 'set logger');
    if (next) koffi.unregister(next);
    throw err;
  }
  // The library no longer calls the previous callback once the call above returns.
  if (logger) koffi.unregister(logger);
  logger = next;
}

/** Sets libtorch's intra-op threads for training (at least 1); process-wide. */
function setTorchThreads(n) {
  check(c.setTorchThreads(n), 'set torch threads');
}

/**
 * Exports a trained checkpoint directory (a `lmbff train --out` directory, or a task's
 * version under <task>/models/) to an export directory for Predictor.
 */
function exportCheckpoint(checkpointDir, outDir, { fp16 = false } = {}) {
  check(c.export(checkpointDir, outDir, fp16), 'export');
}

/** A predictor over an export directory; shareable, close() when done. */
class Predictor {
  constructor(exportDir, { threads = 0, sessions = 1, maxBatch = 16, ortLibrary = null } = {}) {
    const p = defaults('predictor');
    Object.assign(p, { threads, sessions, max_batch: maxBatch, ort_library: ortLibrary });
    const out = [null];
    check(c.predictorOpen(exportDir, p, out), 'open predictor');
    this.handle = out[0];
    this.labels = Array.from({ length: Number(c.numLabels(this.handle)) }, (_, i) => c.label(this.handle, i));
    /** A multi-label export: probs are each label's own probability; `labels` of a prediction lists those that apply. */
    this.multiLabel = c.multiLabel(this.handle);
  }

  /** Predicts texts (or [textA, textB] pairs): [{label, labels, probs, margin, entropy}]. */
  predict(inputs) {
    const r = this.predictBatch(inputs);
    try {
      return Array.from({ length: r.length }, (_, i) => r.get(i));
    } finally {
      r.close();
    }
  }

  /** Predicts as predict() does, keeping the results for get, score and labelStudio. */
  predictBatch(inputs) {
    if (!this.handle) throw new Error('predictor is closed');
    const pairs = inputs.filter(Array.isArray).length;
    if (pairs !== 0 && pairs !== inputs.length) {
      throw new LmbffError(1, 'predict', `${pairs} of ${inputs.length} inputs are [textA, textB] pairs: give all pairs or all texts`);
    }
    const a = inputs.map((x) => (Array.isArray(x) ? x[0] : x));
    const b = pairs ? inputs.map((x) => x[1]) : null;
    const out = [null];
    check(c.predict(this.handle, a, b, a.length, out), 'predict');
    return new Predictions(this, out[0]);
  }

  close() {
    if (this.handle) c.predictorFree(this.handle);
    this.handle = null;
  }
}

/** The results of one predictBatch call; close() when done. */
class Predictions {
  constructor(predictor, handle) {
    this.predictor = predictor;
    this.handle = handle;
    this.length = Number(c.predictionsCount(handle));
  }

  /**
   * The prediction of input i: {label, labels, probs, margin, entropy}; labels are those
   * that apply (the predicted class; for a multi-label export each label at 0.5 or more).
   */
  get(i) {
    const label = [0], margin = [0], entropy = [0];
    check(c.predictionsGet(this.handle, i, label, margin, entropy), 'read prediction');
    const probs = new Array(this.predictor.labels.length).fill(0);
    check(c.predictionsProbs(this.handle, i, probs, probs.length), 'read probabilities');
    const labels = this.predictor.labels.filter((_, l) => {
      const yes = [false];
      check(c.applies(this.handle, i, l, yes), 'read labels');
      return yes[0];
    });
    return { label: this.predictor.labels[label[0]], labels, probs, margin: margin[0], entropy: entropy[0] };
  }

  /** The regression score of input i (regression exports; INVALID_ARGUMENT for a classifier). */
  score(i) {
    const score = [0];
    check(c.predictionsScore(this.handle, i, score), 'read score');
    return score[0];
  }

  /**
   * The predictions as Label Studio predictions, one per input: [{model_version, score
   * (top probability), result: [{from_name, to_name, type: 'choices', value: {choices:
   * [label]}}]}]. modelVersion null takes the export's. The predictor must be open.
   */
  labelStudio(fromName, toName, { modelVersion = null } = {}) {
    if (!this.predictor.handle) throw new Error('predictor is closed');
    const json = copyOut((buf, capacity, needed) => c.labelStudioJson(this.predictor.handle, this.handle, fromName, toName, modelVersion, buf, capacity, needed), 'Label Studio JSON');
    return JSON.parse(json);
  }

  close() {
    c.predictionsFree(this.handle);
    this.handle = null;
  }
}

/** A labelling task (one thread at a time); close() when done. */
class Task {
  constructor(handle) {
    this.handle = handle;
    /** Class names, in class order. */
    this.labels = Array.from({ length: Number(c.taskNumLabels(handle)) }, (_, i) => c.taskLabel(handle, i));
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
  static create({ modelDir, labels, labelWords = null, template = null, maxLen = 128, multiLabel = false, regression = null }) {
    const p = defaults('task');
    const tmpl = template ?? (multiLabel ? null : '{text} It was {mask}.');
    const flags = (multiLabel ? TASK_MULTI_LABEL : 0) | (regression ? TASK_REGRESSION : 0);
    Object.assign(p, { model_dir: modelDir, template_: tmpl, labels, label_words: labelWords, num_labels: labels.length, max_len: maxLen, flags });
    if (regression) Object.assign(p, { regression_low: regression[0], regression_high: regression[1] });
    const out = [null];
    check(c.taskCreate(p, out), 'create task');
    return new Task(out[0]);
  }

  static open(dir) {
    const out = [null];
    check(c.taskOpen(dir, out), 'open task');
    return new Task(out[0]);
  }

  addExample(text, label, textB = null) {
    const id = [0];
    check(c.addExample(this.handle, text, textB, label, id), 'add example');
    return id[0];
  }

  addUnlabeled(text, textB = null) {
    const id = [0];
    check(c.addUnlabeled(this.handle, text, textB, id), 'add unlabeled text');
    return id[0];
  }

  /** Removes the example or unlabeled text `id`. */
  remove(id) {
    check(c.remove(this.handle, id), 'remove');
  }

  /** Sets the label of item `id` (an unlabeled text becomes an example). */
  relabel(id, label) {
    check(c.relabel(this.handle, id, label), 'relabel');
  }

  /**
   * Marks labelled example id as a dev example (held out of training; it picks the kept
   * weights and, with train({calibrate: true}), fits the temperature), or back.
   */
  setDev(id, dev = true) {
    check(c.setDev(this.handle, id, dev), 'set dev');
  }

  /** The number of dev examples. */
  numDev() {
    return Number(c.numDev(this.handle));
  }

  /** Examples of label index `i`, and the number of unlabeled texts. */
  counts(i) {
    const n = [0], free = [0];
    check(c.counts(this.handle, i, n, free), 'count');
    return { examples: Number(n[0]), unlabeled: Number(free[0]) };
  }

  save(dir) {
    check(c.taskSave(this.handle, dir), "save task");
  }

  /**
   * Trains a new model version in lmbff's background thread; resolves to the version
   * ('v1', ...). onProgress({step, total}) is called as it goes (if it throws, the run
   * is cancelled and the promise rejects with that error); signal (an AbortSignal)
   * cancels the run (the promise then rejects with code 'CANCELLED'; a signal already
   * aborted cancels it at once). device is 'auto' (CUDA when the machine has it, else
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
  train({ steps = 300, batchSize = 8, learningRate = 2e-5, seed = 42, device = 'auto', deviceIndex = 0, adaptationSteps = 0, warmStart = null, demonstrations = false, demoSets = 1, demoFilter = false, demoFilterModel = null, method = 'auto', calibrate = false, labelAnchors = true, anchorTemplates = [], embeddingMaxSteps = 2000 } = {}, { onProgress, signal, pollMs = 50 } = {}) {
    if (!(method in METHODS)) {
      const e = new Error(`train: method ${JSON.stringify(method)}: use one of ${Object.keys(METHODS).join(', ')}`);
      e.code = 'INVALID_ARGUMENT';
      return Promise.reject(e);
    }
    if (!(device in DEVICES)) {
      const e = new Error(`train: device ${JSON.stringify(device)}: use one of ${Object.keys(DEVICES).join(', ')}`);
      e.code = 'INVALID_ARGUMENT';
      return Promise.reject(e);
    }
    if (!Array.isArray(anchorTemplates) || anchorTemplates.some((t) => typeof t !== 'string')) {
      const e = new Error('train: anchorTemplates must be an array of template strings');
      e.code = 'INVALID_ARGUMENT';
      return Promise.reject(e);
    }
    if (!Number.isInteger(embeddingMaxSteps) || embeddingMaxSteps < 0 || embeddingMaxSteps > 0xffffffff) {
      const e = new Error(`train: embeddingMaxSteps ${JSON.stringify(embeddingMaxSteps)}: use a whole number of steps, 0 for no cap`);
      e.code = 'INVALID_ARGUMENT';
      return Promise.reject(e);
    }
    const p = defaults('train');
    Object.assign(p, { steps, batch_size: batchSize, learning_rate: learningRate, seed, device: DEVICES[device], device_index: deviceIndex, adaptation_steps: adaptationSteps, warm_start: warmStart, demonstrations, demo_sets: demoSets, demo_filter: demoFilter, demo_filter_model: demoFilterModel, method: METHODS[method], calibrate, disable_label_anchors: !labelAnchors, anchor_templates: anchorTemplates.length ? anchorTemplates : null, num_anchor_templates: anchorTemplates.length, embedding_max_steps: embeddingMaxSteps });
    const out = [null];
    // Refused settings reject the promise, as the checks above do, rather than throw.
    const started = c.trainStart(this.handle, p, null, null, out);
    if (started !== 0) return Promise.reject(new LmbffError(started, 'start training'));
    const run = out[0];
    liveRuns++;
    // The listener goes before the run is freed: a signal that outlives the run (a
    // timeout, a long-lived controller) must not cancel a freed handle.
    const onAbort = () => c.runCancel(run);
    if (signal?.aborted) onAbort();
    else if (signal) signal.addEventListener('abort', onAbort, { once: true });
    return new Promise((resolve, reject) => {
      let thrown = null;
      const tick = () => {
        const state = [0], step = [0], total = [0];
        c.runPoll(run, state, step, total);
        try {
          if (onProgress && !thrown) onProgress({ step: Number(step[0]), total: Number(total[0]) });
        } catch (e) {
          thrown = e;
          c.runCancel(run);
        }
        // Wait by polling: lmbff_run_wait here would block the event loop that the
        // training thread's log callbacks need.
        if (state[0] === 0) return setTimeout(tick, pollMs);
        const status = c.runWait(run);
        const version = status === 0 ? c.runVersion(run) : null;
        const err = thrown || (status === 0 ? null : new LmbffError(status, 'training'));
        if (signal) signal.removeEventListener('abort', onAbort);
        c.runFree(run);
        liveRuns--;
        return err ? reject(err) : resolve(version);
      };
      setTimeout(tick, pollMs);
    });
  }

  /** The task's model versions, oldest first. */
  versions() {
    const list = copyOut((buf, capacity, needed) => c.versions(this.handle, buf, capacity, needed), 'list versions');
    return list ? list.split('\n') : [];
  }

  deleteVersion(version) {
    check(c.deleteVersion(this.handle, version), 'delete version');
  }

  /** Exports model version `version` to an export directory for Predictor. */
  exportVersion(version, outDir, { fp16 = false } = {}) {
    check(c.taskExport(this.handle, version, outDir, fp16), 'export');
  }

  close() {
    if (this.handle) c.taskFree(this.handle);
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
