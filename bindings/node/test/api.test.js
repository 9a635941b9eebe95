// The rest of the Node bindings' surface without training: library facts, editing a task
// (relabel, remove, counts, save and reopen), and a regression export of a two-sentence
// template (made with the CLI) predicting pairs with scores, and asynchronous prediction.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const lmbff = require('..');

const model = process.env.LMBFF_DEFAULT_MODEL;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lmbff-node-api-'));
// Each run's folder holds models and exports (hundreds of MB): removed when the file's tests end.
test.after(() => fs.rmSync(work, { recursive: true, force: true }));
const isInvalid = (e) => e instanceof lmbff.LmbffError && e.code === 'INVALID_ARGUMENT' && e.status === 1;

test('library facts and settings', () => {
  assert.strictEqual(lmbff.abiVersion(), lmbff.ABI_VERSION);
  assert.strictEqual(lmbff.hasTraining(), true);
  lmbff.setTorchThreads(0); // all cores, as a predictor's threads 0
  lmbff.setTorchThreads(1);
  assert.throws(() => lmbff.setLogger(() => {}, 9), isInvalid);
  lmbff.setLogger(null);
});

test('relabel and remove change the counts; a saved task reopens as it was', () => {
  let task = lmbff.Task.create({ modelDir: model, template: '{text_a} ? {mask} , {text_b}', labels: ['no', 'yes'], labelWords: ['No', 'Yes'], maxLen: 64 });
  assert.deepStrictEqual(task.labels, ['no', 'yes']);
  const counts = () => [task.counts(0).examples, task.counts(1).examples, task.counts(0).unlabeled];
  const a = task.addExample('It rains.', 'yes', 'The street is wet.');
  task.addExample('It is sunny.', 'no', 'The street is flooded.');
  const u = task.addUnlabeled('A cat sleeps.', 'An animal rests.');
  // A pair task's texts come in pairs: a lone one is refused when added.
  assert.throws(() => task.addUnlabeled('A lone text.'), isInvalid);
  task.addUnlabeled('A dog barks.', 'An animal is loud.');
  assert.deepStrictEqual(counts(), [1, 1, 2]);
  task.relabel(u, 'yes');
  assert.deepStrictEqual(counts(), [1, 2, 1]);
  task.relabel(a, 'no');
  assert.deepStrictEqual(counts(), [2, 1, 1]);
  task.remove(a);
  assert.deepStrictEqual(counts(), [1, 1, 1]);
  assert.throws(() => task.remove(a), isInvalid);
  assert.throws(() => task.relabel(u, 'maybe'), isInvalid);
  assert.throws(() => task.counts(2), isInvalid);
  assert.deepStrictEqual(task.versions(), []);

  const dir = path.join(work, 'task');
  task.save(dir);
  task.close();
  task = lmbff.Task.open(dir);
  assert.deepStrictEqual(task.labels, ['no', 'yes']);
  assert.deepStrictEqual(counts(), [1, 1, 1]);
  assert.deepStrictEqual(task.versions(), []);
  task.close();
  assert.throws(() => lmbff.Task.open(path.join(work, 'missing')), lmbff.LmbffError);
});

test('a regression export predicts pairs with scores', () => {
  const out = path.join(work, 'export');
  const cli = path.join(__dirname, '../../../target/release/lmbff');
  execFileSync(cli, ['export', '--model', model, '--out', out, '--template', '{text_a} ? {mask} , {text_b}', '--regression', '1,5'], { stdio: 'pipe' });
  const p = new lmbff.Predictor(out, { threads: 1 });
  const r = p.predictBatch([['The film was fun.', 'I laughed a lot.'], ['The plot was thin.', 'I left early.']]);
  for (let i = 0; i < r.length; i++) {
    // score = low + (high - low) * p(upper pole)
    assert.ok(Math.abs(r.score(i) - (1 + 4 * r.get(i).probs[1])) < 1e-4);
  }
  assert.throws(() => r.score(2), isInvalid);
  // predict() and get() give the score too (predict() lost it), and the label list is
  // frozen (predictions name their classes by it).
  const all = p.predict([['The film was fun.', 'I laughed a lot.']]);
  assert.strictEqual(all[0].score, r.score(0));
  assert.strictEqual(r.get(0).score, r.score(0));
  assert.throws(() => p.labels.reverse(), TypeError);
  r.close();
  // Pairs and single texts in one batch are refused (a single text used to get an empty
  // second sentence).
  assert.throws(() => p.predict([['The film was fun.', 'I laughed a lot.'], 'The plot was thin.']), (e) => isInvalid(e) && /1 of 2 inputs/.test(e.message));
  p.close();
});

test('predictAsync predicts on the thread pool: the same results, the event loop free, errors with their message', async () => {
  const out = path.join(work, 'export-one');
  const cli = path.join(__dirname, '../../../target/release/lmbff');
  execFileSync(cli, ['export', '--model', model, '--out', out], { stdio: 'pipe' });
  const p = new lmbff.Predictor(out, { threads: 1 });
  const texts = ['A warm, funny film.', 'Dull and far too long.', ''];
  assert.deepStrictEqual(await p.predictAsync(texts), p.predict(texts));
  // Three at once, each its own batch.
  const [x, y, z] = await Promise.all([p.predictAsync(texts), p.predictAsync(texts.slice(1)), p.predictAsync([])]);
  assert.deepStrictEqual([x, y, z], [p.predict(texts), p.predict(texts.slice(1)), []]);
  const r = await p.predictBatchAsync(texts);
  assert.deepStrictEqual(r.get(1), p.predict(texts)[1]);
  r.close();

  // The event loop runs while a batch is predicted (a synchronous call would hold it:
  // no timer could fire before the call returned).
  const many = Array.from({ length: 400 }, (_, i) => `Review ${i}: the plot was thin but the actors were fun to watch.`);
  let ticks = 0;
  const timer = setInterval(() => { ticks += 1; }, 1);
  const started = Date.now();
  const pending = p.predictAsync(many);
  const ticksAtCall = ticks;
  const preds = await pending;
  clearInterval(timer);
  assert.strictEqual(preds.length, 400);
  assert.ok(ticksAtCall === 0 && ticks > 0, `${ticks} timer ticks during ${Date.now() - started} ms of prediction`);

  // A failure the library finds (pairs for a one-sentence export) rejects with its
  // message, read from the pool thread's buffer; a bad argument rejects before any work.
  await assert.rejects(p.predictAsync([['The film was fun.', 'I laughed a lot.']]),
    (e) => isInvalid(e) && /input 0.*reads one sentence/.test(e.message));
  await assert.rejects(p.predictAsync('one text'), (e) => isInvalid(e) && /inputs is a string/.test(e.message));
  await assert.rejects(p.predictAsync(['a\0b']), (e) => isInvalid(e) && /NUL character/.test(e.message));

  // Predictor.open: the same predictor, opened on the pool; a folder that does not open
  // rejects with the library's message, a bad option before any work.
  const opened = await lmbff.Predictor.open(out, { threads: 1 });
  assert.deepStrictEqual([opened.labels, opened.readsPairs, await opened.predictAsync(texts)], [p.labels, p.readsPairs, p.predict(texts)]);
  opened.close();
  await assert.rejects(lmbff.Predictor.open(path.join(work, 'missing')), (e) => e instanceof lmbff.LmbffError && e.code === 'IO' && e.message.includes(path.join(work, 'missing')));
  // More calls at once than koffi runs in a process (256) wait their turn in the binding:
  // each rejects with the library's message, none with koffi's refusal.
  const opens = await Promise.allSettled(Array.from({ length: 300 }, () => lmbff.Predictor.open(path.join(work, 'missing'))));
  assert.deepStrictEqual([...new Set(opens.map((r) => (r.reason instanceof lmbff.LmbffError ? r.reason.code : String(r.reason))))], ['IO']);
  await assert.rejects(lmbff.Predictor.open(out, { sessions: -1 }), (e) => isInvalid(e) && /sessions/.test(e.message));
  await assert.rejects(lmbff.Predictor.open(out, { session: 2 }), (e) => isInvalid(e) && /no option "session"/.test(e.message));

  // close() with calls running and waiting: they finish on the open predictor, which is
  // freed after the last.
  const inFlight = [p.predictAsync(many.slice(0, 50)), p.predictAsync(many.slice(0, 20)), p.predictAsync(texts)];
  p.close();
  assert.deepStrictEqual((await Promise.all(inFlight)).map((r) => r.length), [50, 20, 3]);
  await assert.rejects(p.predictAsync(texts), /the predictor is closed/);
});

test('predictAsync leaves the other pool threads free, and runs from a small stack', async () => {
  // One session: four batches run one at a time, so a file read (also on libuv's pool,
  // 4 threads) is not held behind them. With every batch on a pool thread, three waited
  // there for the session and the read came after the first batch.
  const p = new lmbff.Predictor(path.join(work, 'export-one'), { threads: 1 });
  const many = Array.from({ length: 500 }, (_, i) => `Review ${i}: the plot was thin but the actors were fun to watch.`);
  const order = [];
  const batches = [0, 1, 2, 3].map((k) => p.predictAsync(many).then(() => order.push(`batch ${k}`)));
  await new Promise((resolve) => setImmediate(resolve));
  const read = fs.promises.readFile(__filename).then(() => order.push('read'));
  await Promise.all([...batches, read]);
  assert.deepStrictEqual(order, ['read', 'batch 0', 'batch 1', 'batch 2', 'batch 3']);
  p.close();

  // koffi runs an asynchronous call on a stack of its own (128 KiB by default); the
  // model ran on it, and crashed below 56 KiB. The library now predicts on a thread
  // of its own: 16 KiB is enough.
  const script = `
    const koffi = require(${JSON.stringify(require.resolve('koffi', { paths: [path.join(__dirname, '..')] }))});
    koffi.config({ ...koffi.config(), async_stack_size: 16 * 1024 });
    const lmbff = require(${JSON.stringify(path.join(__dirname, '..'))});
    const p = new lmbff.Predictor(${JSON.stringify(path.join(work, 'export-one'))}, { threads: 1 });
    p.predictAsync(['A warm, funny film.', 'Dull and far too long.']).then((r) => console.log(r.length));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120000 });
  assert.strictEqual(r.signal, null, `signal ${r.signal}\n${r.stderr}`);
  assert.strictEqual(r.status, 0, `status ${r.status}\n${r.stderr}`);
  assert.strictEqual(r.stdout.trim(), '2');
});

test('a predictor dropped without close() is freed when it is collected', () => {
  // The regression test above wrote this export. Each predictor holds MiniLM's weights
  // in ONNX Runtime (about 90 MB): fifteen never freed grow the process by a gigabyte.
  const out = path.join(work, 'export');
  const script = `
    const lmbff = require(${JSON.stringify(path.join(__dirname, '..'))});
    const open = () => new lmbff.Predictor(${JSON.stringify(out)}, { threads: 1 }).predict([['a', 'b']]);
    const settle = async () => { global.gc(); await new Promise((r) => setTimeout(r, 20)); };
    (async () => {
      open(); await settle();
      const base = process.memoryUsage().rss;
      for (let i = 0; i < 15; i++) { open(); await settle(); }
      console.log(Math.round((process.memoryUsage().rss - base) / 1e6));
    })();`;
  const grew = Number(execFileSync(process.execPath, ['--expose-gc', '-e', script], { env: process.env }).toString().trim());
  assert.ok(grew < 300, `the process grew ${grew} MB over fifteen predictors dropped without close()`);
});

test('settings refused when training starts reject the promise', async () => {
  const task = lmbff.Task.create({ modelDir: model, labels: ['neg', 'pos'], labelWords: ['terrible', 'great'] });
  task.addExample('A dull ride.', 'neg');
  task.addExample('A great ride.', 'pos');
  // Not saved: lmbff_train_start refuses it (there is no place for versions).
  const pending = task.train({ steps: 1, device: 'cpu' });
  assert.ok(pending instanceof Promise);
  await assert.rejects(pending, (e) => isInvalid(e) && /save the task/.test(e.message));
  task.close();
});
