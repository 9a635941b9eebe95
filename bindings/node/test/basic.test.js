// The Node bindings end to end on the default model (LMBFF_DEFAULT_MODEL, set by
// scripts/env.sh): a task, training off the main thread with progress, cancellation,
// export, prediction, and errors as LmbffError with a status code.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const lmbff = require('..');

const model = process.env.LMBFF_DEFAULT_MODEL;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lmbff-node-'));

test('version', () => assert.match(lmbff.version(), /^\d+\.\d+\.\d+/));

test('bad input is an LmbffError with a code', () => {
  assert.throws(() => new lmbff.Predictor(path.join(work, 'missing')), (e) => e instanceof lmbff.LmbffError && e.code === 'INVALID_ARGUMENT' && /does not exist/.test(e.message));
  assert.throws(() => lmbff.Task.create({ modelDir: model, labels: ['0', '1'], labelWords: ['terrible', 'zzzqqqx'] }), (e) => e.code === 'MODEL');
});

test('task, training with progress and cancellation, export, predict', async () => {
  const task = lmbff.Task.create({ modelDir: model, labels: ['0', '1'], labelWords: ['terrible', 'great'] });
  const rows = fs.readFileSync(path.join(__dirname, '../../../data/reviews/train.tsv'), 'utf8').trim().split('\n').slice(1);
  for (const row of rows.slice(0, 16)) {
    const [text, label] = row.split('\t');
    task.addExample(text, label);
  }
  task.addUnlabeled('An unlabeled review.');
  assert.deepStrictEqual(task.counts(1).unlabeled, 1);
  task.save(path.join(work, 'task'));

  const seen = [];
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5); // the event loop keeps running during training
  const version = await task.train({ steps: 6, batchSize: 4 }, { onProgress: (p) => seen.push(p), pollMs: 10 });
  clearInterval(timer);
  assert.strictEqual(version, 'v1');
  assert.ok(ticks > 0, 'the main thread was free while training');
  assert.deepStrictEqual(seen[seen.length - 1], { step: 6, total: 6 });

  const abort = new AbortController();
  const long = task.train({ steps: 100000 }, { signal: abort.signal });
  setTimeout(() => abort.abort(), 50);
  await assert.rejects(long, (e) => e.code === 'CANCELLED');

  const out = path.join(work, 'export');
  task.exportVersion(version, out);
  task.close();
  const p = new lmbff.Predictor(out, { threads: 1 });
  assert.deepStrictEqual(p.labels, ['0', '1']);
  const preds = p.predict(['A delightful film.', 'Broken on arrival.', '']);
  assert.strictEqual(preds.length, 3);
  for (const r of preds) {
    assert.ok(['0', '1'].includes(r.label));
    assert.ok(Math.abs(r.probs[0] + r.probs[1] - 1) < 1e-5);
    assert.ok(r.margin >= 0 && r.entropy >= 0);
  }
  p.close();
  assert.throws(() => p.predict(['x']), /closed/);
});
