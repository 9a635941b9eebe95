// Node bindings of lmbff over its C ABI (include/lmbff.h), through koffi.
// The library: LMBFF_LIB, else ../../target/release/liblmbff.so (the full build; the
// serve-only build works for Predictor). Long work (training) runs on lmbff's own thread
// and is awaited with a Promise that polls it, so the event loop never blocks.
'use strict';
const path = require('path');
const koffi = require('koffi');

const lib = koffi.load(process.env.LMBFF_LIB || path.join(__dirname, '../../target/release/liblmbff.so'));

const Predictor_ = koffi.opaque('lmbff_predictor');
const Predictions_ = koffi.opaque('lmbff_predictions');
const Task_ = koffi.opaque('lmbff_task');
const Run_ = koffi.opaque('lmbff_run');
const PredictorParams = koffi.struct('lmbff_predictor_params', {
  struct_size: 'size_t', threads: 'uint32_t', sessions: 'uint32_t', max_batch: 'uint32_t', ort_library: 'const char *',
});
const TaskParams = koffi.struct('lmbff_task_params', {
  struct_size: 'size_t', model_dir: 'const char *', template_: 'const char *', labels: 'const char **',
  label_words: 'const char **', num_labels: 'size_t', max_len: 'uint32_t',
});
const TrainParams = koffi.struct('lmbff_train_params', {
  struct_size: 'size_t', steps: 'uint32_t', batch_size: 'uint32_t', learning_rate: 'double', seed: 'uint64_t',
  device: 'int32_t', device_index: 'uint32_t', adaptation_steps: 'uint32_t', warm_start: 'const char *',
});

const c = {
  version: lib.func('const char *lmbff_version_string()'),
  lastError: lib.func('const char *lmbff_last_error()'),
  predictorDefaults: lib.func('lmbff_predictor_params lmbff_predictor_default_params()'),
  predictorOpen: lib.func('int lmbff_predictor_open(const char *, const lmbff_predictor_params *, _Out_ lmbff_predictor **)'),
  predictorFree: lib.func('void lmbff_predictor_free(lmbff_predictor *)'),
  numLabels: lib.func('size_t lmbff_predictor_num_labels(const lmbff_predictor *)'),
  label: lib.func('const char *lmbff_predictor_label(const lmbff_predictor *, size_t)'),
  predict: lib.func('int lmbff_predict(const lmbff_predictor *, const char **, const char **, size_t, _Out_ lmbff_predictions **)'),
  predictionsFree: lib.func('void lmbff_predictions_free(lmbff_predictions *)'),
  predictionsGet: lib.func('int lmbff_predictions_get(const lmbff_predictions *, size_t, _Out_ uint32_t *, _Out_ float *, _Out_ float *)'),
  predictionsProbs: lib.func('int lmbff_predictions_probs(const lmbff_predictions *, size_t, _Out_ float *, size_t)'),
  taskDefaults: lib.func('lmbff_task_params lmbff_task_default_params()'),
  taskCreate: lib.func('int lmbff_task_create(const lmbff_task_params *, _Out_ lmbff_task **)'),
  taskOpen: lib.func('int lmbff_task_open(const char *, _Out_ lmbff_task **)'),
  taskSave: lib.func('int lmbff_task_save(lmbff_task *, const char *)'),
  taskFree: lib.func('void lmbff_task_free(lmbff_task *)'),
  addExample: lib.func('int lmbff_task_add_example(lmbff_task *, const char *, const char *, const char *, _Out_ uint64_t *)'),
  addUnlabeled: lib.func('int lmbff_task_add_unlabeled(lmbff_task *, const char *, const char *, _Out_ uint64_t *)'),
  counts: lib.func('int lmbff_task_counts(lmbff_task *, size_t, _Out_ size_t *, _Out_ size_t *)'),
  trainDefaults: lib.func('lmbff_train_params lmbff_train_default_params()'),
  trainStart: lib.func('int lmbff_train_start(lmbff_task *, const lmbff_train_params *, void *, void *, _Out_ lmbff_run **)'),
  runPoll: lib.func('int lmbff_run_poll(const lmbff_run *, _Out_ int32_t *, _Out_ size_t *, _Out_ size_t *)'),
  runWait: lib.func('int lmbff_run_wait(const lmbff_run *)'),
  runCancel: lib.func('int lmbff_run_cancel(const lmbff_run *)'),
  runVersion: lib.func('const char *lmbff_run_version(const lmbff_run *)'),
  runFree: lib.func('void lmbff_run_free(lmbff_run *)'),
  taskExport: lib.func('int lmbff_task_export(lmbff_task *, const char *, const char *, bool)'),
};

const STATUS = ['OK', 'INVALID_ARGUMENT', 'UTF8', 'IO', 'FORMAT', 'MODEL', 'RUNTIME', 'NO_TRAINING', 'CANCELLED', 'INTERNAL', 'BUSY'];

/** A failed lmbff call: `code` is the status name (e.g. 'INVALID_ARGUMENT'), `status` its number. */
class LmbffError extends Error {
  constructor(status, what) {
    super(`${what}: ${c.lastError()}`);
    this.status = status;
    this.code = STATUS[status] || `STATUS_${status}`;
  }
}

function check(status, what) {
  if (status !== 0) throw new LmbffError(status, what);
}

/** A predictor over an export directory; shareable, close() when done. */
class Predictor {
  constructor(exportDir, { threads = 0, sessions = 1, maxBatch = 16 } = {}) {
    const p = c.predictorDefaults();
    Object.assign(p, { threads, sessions, max_batch: maxBatch });
    const out = [null];
    check(c.predictorOpen(exportDir, p, out), 'open predictor');
    this.handle = out[0];
    this.labels = Array.from({ length: Number(c.numLabels(this.handle)) }, (_, i) => c.label(this.handle, i));
  }

  /** Predicts texts (or [textA, textB] pairs): [{label, probs, margin, entropy}]. */
  predict(inputs) {
    if (!this.handle) throw new Error('predictor is closed');
    const a = inputs.map((x) => (Array.isArray(x) ? x[0] : x));
    const b = inputs.some(Array.isArray) ? inputs.map((x) => (Array.isArray(x) ? x[1] : '')) : null;
    const out = [null];
    check(c.predict(this.handle, a, b, a.length, out), 'predict');
    try {
      return a.map((_, i) => {
        const label = [0], margin = [0], entropy = [0];
        check(c.predictionsGet(out[0], i, label, margin, entropy), 'read prediction');
        const probs = new Array(this.labels.length).fill(0);
        check(c.predictionsProbs(out[0], i, probs, probs.length), 'read probabilities');
        return { label: this.labels[label[0]], probs, margin: margin[0], entropy: entropy[0] };
      });
    } finally {
      c.predictionsFree(out[0]);
    }
  }

  close() {
    if (this.handle) c.predictorFree(this.handle);
    this.handle = null;
  }
}

/** A labelling task (one thread at a time); close() when done. */
class Task {
  constructor(handle) {
    this.handle = handle;
  }

  static create({ modelDir, labels, labelWords, template = '{text} It was {mask}.', maxLen = 128 }) {
    const p = c.taskDefaults();
    Object.assign(p, { model_dir: modelDir, template_: template, labels, label_words: labelWords, num_labels: labels.length, max_len: maxLen });
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
   * ('v1', ...). onProgress({step, total}) is called as it goes; signal (an AbortSignal)
   * cancels the run (the promise then rejects with code 'CANCELLED').
   */
  train({ steps = 300, batchSize = 8, learningRate = 2e-5, seed = 42, adaptationSteps = 0, warmStart = null } = {}, { onProgress, signal, pollMs = 50 } = {}) {
    const p = c.trainDefaults();
    Object.assign(p, { steps, batch_size: batchSize, learning_rate: learningRate, seed, device: 1, adaptation_steps: adaptationSteps, warm_start: warmStart });
    const out = [null];
    check(c.trainStart(this.handle, p, null, null, out), 'start training');
    const run = out[0];
    if (signal) signal.addEventListener('abort', () => c.runCancel(run), { once: true });
    return new Promise((resolve, reject) => {
      const tick = () => {
        const state = [0], step = [0], total = [0];
        c.runPoll(run, state, step, total);
        if (onProgress) onProgress({ step: Number(step[0]), total: Number(total[0]) });
        if (state[0] === 0) return setTimeout(tick, pollMs);
        const status = c.runWait(run);
        const version = status === 0 ? c.runVersion(run) : null;
        const err = status === 0 ? null : new LmbffError(status, 'training');
        c.runFree(run);
        return err ? reject(err) : resolve(version);
      };
      setTimeout(tick, pollMs);
    });
  }

  exportVersion(version, outDir, { fp16 = false } = {}) {
    check(c.taskExport(this.handle, version, outDir, fp16), 'export');
  }

  close() {
    if (this.handle) c.taskFree(this.handle);
    this.handle = null;
  }
}

module.exports = { Predictor, Task, LmbffError, version: () => c.version() };
