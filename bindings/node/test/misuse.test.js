// Misuse the binding must turn into errors, not crashes: values koffi would pass to C as
// something else (a number as a string pointer, a string cut at a NUL, a negative count
// wrapped into a huge one), label words that do not match the labels, a controller where
// a signal belongs, options misspelt or null, a logger that throws, a logger with worker
// threads, a process that exits while a run trains, and a worker that exits while it predicts.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { execFileSync, spawnSync } = require('child_process');
const { Worker } = require('worker_threads');
const fs = require('fs');
const os = require('os');
const path = require('path');
const lmbff = require('..');

const model = process.env.LMBFF_DEFAULT_MODEL;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lmbff-node-misuse-'));
// Each run's folder holds models and exports (hundreds of MB): removed when the file's tests end.
test.after(() => fs.rmSync(work, { recursive: true, force: true }));
const invalid = (pattern) => (e) => e instanceof lmbff.LmbffError && e.code === 'INVALID_ARGUMENT' && pattern.test(e.message);

/** Collects the process's warnings (their messages in `seen`) until stop(). */
function watchWarnings() {
  const seen = [];
  const on = (w) => seen.push(w.message);
  process.on('warning', on);
  return { seen, stop: () => process.off('warning', on) };
}

/** A saved two-example sentiment task on the default model. */
function savedTask(name) {
  const task = lmbff.Task.create({ modelDir: model, labels: ['neg', 'pos'], labelWords: ['terrible', 'great'] });
  task.addExample('A dull ride.', 'neg');
  task.addExample('A great ride.', 'pos');
  task.save(path.join(work, name));
  return task;
}

test('arguments of the wrong type or range are refused by name', () => {
  assert.throws(() => lmbff.setTorchThreads(-1), invalid(/threads is -1/));
  assert.throws(() => lmbff.setTorchThreads(1000000), invalid(/threads is 1000000: give 1 to \d+/));
  assert.throws(() => lmbff.setTorchThreads(2 ** 32 + 1), invalid(/threads is 4294967297/));
  assert.throws(() => lmbff.setLogger('not a function'), invalid(/the logger is a string/));
  assert.throws(() => new lmbff.Predictor(7), invalid(/exportDir is a number/));
  assert.throws(() => lmbff.Task.create({ modelDir: 3, labels: ['a', 'b'], labelWords: ['terrible', 'great'] }), invalid(/modelDir is a number/));
  assert.throws(() => lmbff.Task.create({ modelDir: model, labels: ['a', 'b', 'c'], labelWords: ['terrible', 'great'] }), invalid(/3 labels but 2 label words/));
  // Too few labels is named as such, not as missing label words.
  assert.throws(() => lmbff.Task.create({ modelDir: model, labels: ['only'] }), invalid(/at least two labels, got 1/));
  assert.throws(() => lmbff.Task.create({ modelDir: model, labels: [], multiLabel: true }), invalid(/at least one label, got 0/));
  assert.throws(() => lmbff.Task.create({ modelDir: model, labels: ['a', 'b'], labelWords: ['No'], multiLabel: true }), invalid(/two answer words/));
  assert.throws(() => lmbff.Task.create({ modelDir: model, labels: ['a', 'b'], labelWords: ['terrible', 'great'], maxLen: -1 }), invalid(/maxLen is -1/));
  const task = lmbff.Task.create({ modelDir: model, labels: ['neg', 'pos'], labelWords: ['terrible', 'great'] });
  assert.throws(() => task.addExample('A fine film.', 1), invalid(/label is a number/));
  assert.throws(() => task.addExample(12345, 'pos'), invalid(/text is a number/));
  assert.throws(() => task.addExample('x', 'pos\0junk'), invalid(/label holds a NUL character at index 3/));
  // A lone surrogate has no UTF-8 form (koffi wrote U+FFFD in its place, silently).
  assert.throws(() => task.addExample('bad \uD800 film', 'pos'), invalid(/text holds a lone UTF-16 surrogate \(\\ud800\) at index 4/));
  assert.throws(() => task.addExample('\uDE00', 'pos'), invalid(/lone UTF-16 surrogate \(\\ude00\) at index 0/));
  task.remove(task.addExample('a surrogate pair \u{1F600} is fine', 'pos'));
  assert.throws(() => task.remove(-1), invalid(/id is -1/));
  assert.throws(() => task.counts(1.5), invalid(/label index is 1.5/));
  assert.strictEqual(task.counts(1).examples, 0, 'nothing was added');
  task.close();
  assert.throws(() => task.numDev(), /the task is closed/);
});

test('predict refuses inputs C would misread', () => {
  const out = path.join(work, 'export');
  const cli = path.join(__dirname, '../../../target/release/lmbff');
  execFileSync(cli, ['export', '--model', model, '--out', out, '--template', '{text_a} ? {mask} , {text_b}', '--regression', '1,5'], { stdio: 'pipe' });
  const p = new lmbff.Predictor(out, { threads: 1 });
  // What the export reads, for a host that did not make it.
  assert.deepStrictEqual([p.readsPairs, p.regression, p.multiLabel], [true, [1, 5], false]);
  assert.throws(() => p.predict('one text'), invalid(/inputs is a string: give an array/));
  assert.throws(() => p.predict([[42, 'b']]), invalid(/input 0's textA is a number/));
  assert.throws(() => p.predict([['a\0b', 'c']]), invalid(/input 0's textA holds a NUL character at index 1/));
  assert.throws(() => p.predict([['a', 'b', 'c']]), invalid(/input 0 is a pair of 3 texts/));
  const r = p.predictBatch([['The film was fun.', 'I laughed a lot.']]);
  assert.throws(() => r.labelStudio('a\0', 'b'), invalid(/fromName holds a NUL/));
  r.close();
  assert.strictEqual(r.length, 0);
  assert.throws(() => r.get(0), /predictions are closed/);
  p.close();
});

test('train rejects a controller passed as its signal, and starts nothing', async () => {
  const task = savedTask('signal');
  await assert.rejects(task.train({ method: 'zero-shot-words', device: 'cpu' }, { signal: new AbortController() }), invalid(/not an AbortSignal/));
  await assert.rejects(task.train({ method: 'zero-shot-words', steps: '10' }), invalid(/steps is "10"/));
  await assert.rejects(task.train({ method: 'zero-shot-words', warmStart: 5 }), invalid(/warmStart is a number/));
  // Names of Object.prototype's members are not methods or devices (they reached koffi,
  // which threw a TypeError instead of the promise rejecting).
  await assert.rejects(task.train({ method: 'toString' }), invalid(/method "toString"/));
  await assert.rejects(task.train({ device: '__proto__' }), invalid(/device "__proto__"/));
  assert.deepStrictEqual(task.versions(), []);
  // No run is left going: the logger can still be set.
  lmbff.setLogger(null);
  task.close();
});

test('a logger that throws does not fail the call that logged', async () => {
  const warnings = watchWarnings();
  lmbff.setLogger(() => {
    throw new Error('logger broke');
  }, lmbff.LogLevel.DEBUG);
  try {
    const task = savedTask('throwing-logger');
    const out = path.join(work, 'throwing-logger-export');
    // Opening a predictor logs on this thread; training logs from lmbff's.
    assert.strictEqual(await task.train({ method: 'zero-shot-words', device: 'cpu' }), 'v1');
    task.exportVersion('v1', out);
    const p = new lmbff.Predictor(out, { threads: 1 });
    assert.strictEqual(p.predict(['A great ride.'])[0].label, 'pos');
    p.close();
    task.close();
  } finally {
    lmbff.setLogger(null);
  }
  await new Promise((resolve) => setImmediate(resolve));
  warnings.stop();
  assert.ok(warnings.seen.some((m) => m.includes('logger broke')), `warnings: ${warnings.seen.slice(0, 3)}`);
});

test('a logger that stops logging from inside its call, and throws, fails nothing', async () => {
  const warnings = watchWarnings();
  // The drain read the logger again after the call had set it to null (an uncaught
  // TypeError: the process died, or the training promise never settled).
  let calls = 0;
  lmbff.setLogger(() => {
    calls += 1;
    lmbff.setLogger(null);
    throw new Error('logger gone');
  }, lmbff.LogLevel.DEBUG);
  try {
    const task = savedTask('self-stopping-logger');
    assert.strictEqual(await task.train({ method: 'zero-shot-words', device: 'cpu' }), 'v1');
    task.close();
    await new Promise((resolve) => setTimeout(resolve, 120)); // the timer's drain has run too
  } finally {
    lmbff.setLogger(null);
    warnings.stop();
  }
  assert.ok(warnings.seen.some((m) => m.includes('logger gone')), `warnings: ${warnings.seen.slice(0, 3)}`);
  assert.strictEqual(calls, 1);
  // What was queued when it stopped is not delivered to a later logger.
  const later = [];
  lmbff.setLogger((level, message) => later.push(message), lmbff.LogLevel.DEBUG);
  lmbff.setLogger(null);
  assert.deepStrictEqual(later, []);
});

test('a logger that sets another from inside is called once; the next messages go to the other', async () => {
  // The drain its setLogger set off returned at once: it went on delivering the queued
  // messages to the first logger, which set the other again, one level deeper a message.
  const task = savedTask('switching-logger');
  assert.strictEqual(await task.train({ method: 'zero-shot-words', device: 'cpu' }), 'v1');
  const out = path.join(work, 'switching-logger-export');
  task.exportVersion('v1', out);
  task.close();
  let first = 0;
  const second = [];
  lmbff.setLogger(() => {
    first += 1;
    lmbff.setLogger((level, message) => second.push(message), lmbff.LogLevel.DEBUG);
  }, lmbff.LogLevel.DEBUG);
  try {
    // Several messages queued before the next drain: each open logs.
    for (let i = 0; i < 3; i++) new lmbff.Predictor(out, { threads: 1 }).close();
    await new Promise((resolve) => setTimeout(resolve, 120));
  } finally {
    lmbff.setLogger(null);
  }
  assert.strictEqual(first, 1);
  assert.ok(second.some((m) => m.includes('predictor opened')), JSON.stringify(second.slice(0, 3)));
});

test('onProgress that throws once the run has ended hides no saved version', async () => {
  const warnings = watchWarnings();
  const task = savedTask('late-progress-throw');
  // The first poll comes after the run (a zero-shot version, no training) has ended.
  const run = task.train({ method: 'zero-shot-words', device: 'cpu' }, { onProgress: () => { throw new Error('late'); }, pollMs: 5000 });
  const outcome = await run.then((v) => ({ v }), (e) => ({ e }));
  await new Promise((resolve) => setImmediate(resolve));
  warnings.stop();
  if (outcome.e) {
    // Cancelled while it ran: then nothing was saved.
    assert.match(String(outcome.e), /late/);
    assert.deepStrictEqual(task.versions(), []);
  } else {
    assert.strictEqual(outcome.v, 'v1');
    assert.deepStrictEqual(task.versions(), ['v1']);
    assert.ok(warnings.seen.some((m) => m.includes('onProgress threw after the training run had ended')), `warnings: ${warnings.seen.slice(0, 3)}`);
  }
  task.close();
});

test('a process that exits while a run trains exits cleanly', () => {
  const dir = path.join(work, 'exit');
  savedTask('exit').close();
  const script = `
    const lmbff = require(${JSON.stringify(path.join(__dirname, '..'))});
    lmbff.setTorchThreads(1);
    if (process.argv[2] === 'log') lmbff.setLogger(() => {}, lmbff.LogLevel.DEBUG);
    const t = lmbff.Task.open(${JSON.stringify(dir)});
    t.train({ method: 'sentence-embedding', device: 'cpu', embeddingMaxSteps: 1000, steps: 1000 }).catch(() => {});
    setTimeout(() => process.exit(0), Number(process.argv[3]));`;
  // Before runs were cancelled and waited for at exit, about one exit in four crashed.
  for (const [i, delay] of [0, 50, 200, 400, 800, 1500].entries()) {
    const mode = i % 2 ? 'log' : 'quiet';
    const r = spawnSync(process.execPath, ['-e', script, mode, String(delay)], { encoding: 'utf8', timeout: 120000 });
    assert.strictEqual(r.signal, null, `${mode} exit after ${delay} ms: signal ${r.signal}\n${r.stderr}`);
    assert.strictEqual(r.status, 0, `${mode} exit after ${delay} ms: status ${r.status}\n${r.stderr}`);
  }
});

test('options: null is none, a misspelt or non-object one is refused by name', async () => {
  assert.throws(() => lmbff.Task.create(null), invalid(/labels is undefined, not an array of strings/));
  assert.throws(() => lmbff.Task.create({ modelDir: model, labels: ['a', 'b'], labelWord: ['x', 'y'] }), invalid(/params has no option "labelWord": the options are modelDir, labels, labelWords/));
  assert.throws(() => new lmbff.Predictor(path.join(work, 'none'), 'fast'), invalid(/options is a string: give an object/));
  assert.throws(() => new lmbff.Predictor(path.join(work, 'none'), { thread: 1 }), invalid(/options has no option "thread"/));
  // null options are no options: the call goes on to the missing folder.
  assert.throws(() => new lmbff.Predictor(path.join(work, 'none'), null), (e) => e.code === 'IO');
  assert.throws(() => lmbff.exportCheckpoint(model, path.join(work, 'x'), { f16: true }), invalid(/no option "f16"/));
  const task = savedTask('options');
  await assert.rejects(task.train({ step: 5 }), invalid(/params has no option "step": the options are steps, batchSize/));
  await assert.rejects(task.train({ method: 'zero-shot-words' }, { onprogress: () => {} }), invalid(/run options has no option "onprogress"/));
  await assert.rejects(task.train([]), invalid(/params is an array/));
  // null params are the defaults (a run starts: cancelled at once by an aborted signal).
  await assert.rejects(task.train(null, { signal: AbortSignal.abort() }), (e) => e.code === 'CANCELLED');
  assert.strictEqual(await task.train({ method: 'zero-shot-words', steps: undefined }, null), 'v1');
  assert.throws(() => task.exportVersion('v1', path.join(work, 'options-export'), { fp: true }), invalid(/no option "fp"/));
  task.exportVersion('v1', path.join(work, 'options-export'), null);
  const p = new lmbff.Predictor(path.join(work, 'options-export'), { threads: 1 });
  // A sparse array's hole is refused by name, not passed to C as NULL.
  assert.throws(() => p.predict(new Array(3)), invalid(/input 0 is undefined/));
  assert.throws(() => p.predict(['a', , 'c']), invalid(/input 1 is undefined/));
  const r = p.predictBatch(['A great ride.']);
  assert.throws(() => r.labelStudio('sentiment', 'text', { version: 'x' }), invalid(/no option "version"/));
  assert.strictEqual(r.labelStudio('sentiment', 'text', null).length, 1);
  r.close();
  p.close();
  task.close();
});

test('a logger set on the main thread gets the messages of lmbff calls in workers; workers cannot set one', async () => {
  const out = path.join(work, 'worker-export');
  const task = savedTask('worker');
  assert.strictEqual(await task.train({ method: 'zero-shot-words', device: 'cpu' }), 'v1');
  task.exportVersion('v1', out);
  task.close();
  const logged = [];
  lmbff.setLogger((level, message) => logged.push(message), lmbff.LogLevel.INFO);
  try {
    const code = `
      const { parentPort, workerData } = require('worker_threads');
      const lmbff = require(${JSON.stringify(path.join(__dirname, '..'))});
      let refused = null;
      try { lmbff.setLogger(() => {}); } catch (e) { refused = e.code + ': ' + e.message; }
      const p = new lmbff.Predictor(workerData, { threads: 1 });
      const label = p.predict(['A great ride.'])[0].label;
      p.close();
      // Training is refused in a worker: a terminated worker could not cancel its run.
      const task = lmbff.Task.create({ modelDir: process.env.LMBFF_DEFAULT_MODEL, labels: ['neg', 'pos'], labelWords: ['terrible', 'great'] });
      task.train({ method: 'zero-shot-words' }).then(
        () => parentPort.postMessage({ refused, label, train: 'trained' }),
        (e) => { task.close(); parentPort.postMessage({ refused, label, train: e.code + ': ' + e.message }); });`;
    // Two workers at once, each opening a predictor (which logs) on its own thread: that
    // aborted the process when the message went straight to the main thread's function.
    const results = await Promise.all([0, 1].map(() => new Promise((resolve, reject) => {
      const w = new Worker(code, { eval: true, workerData: out });
      w.once('message', resolve);
      w.once('error', reject);
    })));
    for (const r of results) {
      assert.strictEqual(r.label, 'pos');
      assert.match(r.refused, /^INVALID_ARGUMENT: .*this is a worker thread: the logger is process-wide, set it on the main thread/);
      assert.match(r.train, /^INVALID_ARGUMENT: train: this is a worker thread: start training on the main thread/);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(logged.filter((m) => m.includes('predictor opened')).length >= 2, JSON.stringify(logged));
  } finally {
    lmbff.setLogger(null);
  }
});

test("handles a worker's exit frees read as closed to the program's own exit listeners", () => {
  // The binding frees what is unclosed at a worker's exit, in its listener, which runs
  // before the program's: a close() there freed each handle a second time.
  const out = path.join(work, 'worker-export');
  const script = `
    const { Worker } = require('worker_threads');
    const code = \`
      const lmbff = require(${JSON.stringify(path.join(__dirname, '..'))});
      const p = new lmbff.Predictor(${JSON.stringify(out)}, { threads: 1 });
      const r = p.predictBatch(['A great ride.']);
      const t = lmbff.Task.create({ modelDir: process.env.LMBFF_DEFAULT_MODEL, labels: ['neg', 'pos'], labelWords: ['terrible', 'great'] });
      process.on('exit', () => {
        p.close(); r.close(); t.close();
        try { p.predict(['x']); } catch (e) { console.log('predict:', e.code); }
        try { t.versions(); } catch (e) { console.log('task:', e.code); }
      });
      process.exit(0);\`;
    const w = new Worker(code, { eval: true });
    w.on('exit', (c) => console.log('worker exit', c));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120000 });
  assert.strictEqual(r.signal, null, `signal ${r.signal}\n${r.stderr}`);
  assert.strictEqual(r.status, 0, `status ${r.status}\n${r.stderr}`);
  assert.match(r.stdout, /predict: INVALID_ARGUMENT\ntask: INVALID_ARGUMENT\nworker exit 0/);
});

test('a worker that exits with Predictor.open and predictAsync started exits cleanly', () => {
  // The export of the test above. On libuv's pool, a call still running when its worker
  // exited aborted the process (koffi, at the worker's clean-up): in a worker,
  // Predictor.open and predictAsync run on the worker's own thread.
  const out = path.join(work, 'worker-export');
  const script = `
    const { Worker } = require('worker_threads');
    const code = \`
      const lmbff = require(${JSON.stringify(path.join(__dirname, '..'))});
      lmbff.Predictor.open(${JSON.stringify(out)}, { threads: 1 }).then((p) =>
        p.predictAsync(Array.from({ length: 300 }, (_, i) => 'Review ' + i + ': fun to watch.')).then((r) => console.log(r.length)));
      setTimeout(() => process.exit(0), 20);\`;
    const w = new Worker(code, { eval: true });
    w.on('exit', (c) => console.log('worker exit', c));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120000 });
  assert.strictEqual(r.signal, null, `signal ${r.signal}\n${r.stderr}`);
  assert.strictEqual(r.status, 0, `status ${r.status}\n${r.stderr}`);
  assert.match(r.stdout, /300\nworker exit 0/);
});

test('an asynchronous call koffi refuses (its queue full) rejects with an LmbffError, BUSY', async (t) => {
  // Another module's calls fill koffi's queue of asynchronous calls (usleep from libc).
  const koffi = require('koffi');
  let usleep;
  try {
    usleep = koffi.load('libc.so.6').func('int usleep(uint32_t)');
  } catch (e) {
    t.skip(`no glibc libc.so.6 to fill koffi's queue with (${e.message})`);
    return;
  }
  const sleeping = [];
  let full = false;
  for (let i = 0; i < 4096 && !full; i++) {
    let settle;
    const slept = new Promise((resolve) => { settle = resolve; });
    try {
      usleep.async(20000, () => settle());
      sleeping.push(slept);
    } catch (e) {
      full = /Too many asynchronous calls/.test(e.message);
    }
  }
  assert.ok(full, 'koffi never refused a call: the test fills nothing');
  await assert.rejects(lmbff.Predictor.open(path.join(work, 'no-export')),
    (e) => e instanceof lmbff.LmbffError && e.code === 'BUSY' && /koffi refused/.test(e.message) && e.cause instanceof Error);
  await Promise.all(sleeping);
  // Once they have settled, the same call runs (and fails for what it is).
  await assert.rejects(lmbff.Predictor.open(path.join(work, 'no-export')), (e) => e instanceof lmbff.LmbffError && e.code !== 'BUSY');
});
