// The Node bindings end to end on the default model (LMBFF_DEFAULT_MODEL, set by
// scripts/env.sh): a task, training off the main thread with progress, cancellation and
// a warm start, versions, export, prediction, Label Studio JSON, logging from lmbff's
// training thread, and errors as LmbffError with a status code.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const lmbff = require('..');

const model = process.env.LMBFF_DEFAULT_MODEL;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lmbff-node-'));
// Each run's folder holds models and exports (hundreds of MB): removed when the file's tests end.
test.after(() => fs.rmSync(work, { recursive: true, force: true }));

test('version', () => assert.match(lmbff.version(), /^\d+\.\d+\.\d+/));

test('bad input is an LmbffError with a code', () => {
  assert.throws(() => new lmbff.Predictor(path.join(work, 'missing')), (e) => e instanceof lmbff.LmbffError && e.code === 'IO' && /does not exist/.test(e.message));
  assert.throws(() => lmbff.Task.create({ modelDir: model, labels: ['0', '1'], labelWords: ['terrible', '☃☃'] }), (e) => e.code === 'MODEL');
});

/** Asserts that f throws an LmbffError with status name `code`. */
function throwsCode(f, code) {
  assert.throws(f, (e) => e instanceof lmbff.LmbffError && e.code === code && e.status === STATUS[code]);
}
const STATUS = { INVALID_ARGUMENT: 1, IO: 3 };

test('task, training with progress and cancellation, versions, export, predict', async (t) => {
  const logged = [];
  lmbff.setLogger((level, message) => logged.push([level, message]), lmbff.LogLevel.INFO);
  t.after(() => lmbff.setLogger(null));
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
  const training = task.train({ steps: 6, batchSize: 4, method: 'prompt' }, { onProgress: (p) => seen.push(p), pollMs: 10 });
  // The logger may change while a run trains (messages wait in lmbff's queue, nothing blocks).
  lmbff.setLogger((level, message) => logged.push([level, message]), lmbff.LogLevel.INFO);
  const version = await training;
  clearInterval(timer);
  assert.strictEqual(version, 'v1');
  assert.ok(ticks > 0, 'the main thread was free while training');
  assert.deepStrictEqual(seen[seen.length - 1], { step: 6, total: 6 });

  const abort = new AbortController();
  const long = task.train({ steps: 100000, method: 'prompt' }, { signal: abort.signal });
  const reason = new Error('the user closed the labelling session');
  setTimeout(() => abort.abort(reason), 50);
  await assert.rejects(long, (e) => e.code === 'CANCELLED' && e.cause === reason);
  // A signal aborted before the run starts cancels it at once (an 'abort' event never
  // comes); one aborted after its run ended touches no freed run.
  const early = new AbortController();
  early.abort();
  await assert.rejects(task.train({ steps: 100000, method: 'prompt', device: 'cpu' }, { signal: early.signal }), (e) => e.code === 'CANCELLED' && e.cause?.name === 'AbortError');
  const late = new AbortController();
  assert.strictEqual(await task.train({ steps: 1, batchSize: 4, method: 'prompt' }, { signal: late.signal }), 'v2');
  late.abort();
  task.deleteVersion('v2');
  await assert.rejects(task.train({ device: 'tpu' }), (e) => e.code === 'INVALID_ARGUMENT' && /device "tpu"/.test(e.message));
  assert.ok(logged.some(([level, m]) => level === lmbff.LogLevel.INFO && m === `saved model version v1 in ${path.join(work, 'task')}`), JSON.stringify(logged));

  // A progress callback that throws cancels the run; the promise rejects with its error.
  const boom = task.train({ steps: 100000, method: 'prompt' }, { onProgress: () => { throw new Error('boom'); } });
  await assert.rejects(boom, /boom/);
  // Whatever it throws, undefined included, is what the promise rejects with.
  let thrown = 0;
  const falsy = task.train({ steps: 100000, method: 'prompt' }, { onProgress: () => { thrown += 1; throw undefined; } });
  await assert.rejects(falsy, (e) => e === undefined);
  assert.strictEqual(thrown, 1, 'onProgress is called no more once it threw');
  // An async onProgress that rejects does the same (it killed the process, unhandled).
  const rejected = task.train({ steps: 100000, method: 'prompt' }, { onProgress: async () => { throw new Error('async boom'); } });
  await assert.rejects(rejected, /async boom/);

  // Versions: a warm-started second one with demonstrations (its export predicts with
  // 2 fixed sets), deleted again.
  // (A deleted version's number is never given again: v2 was deleted above.)
  assert.strictEqual(await task.train({ steps: 2, batchSize: 4, warmStart: version, demonstrations: true, demoSets: 2 }), 'v3');
  task.exportVersion('v3', path.join(work, 'export-v2'));
  const sets = JSON.parse(fs.readFileSync(path.join(work, 'export-v2', 'lmbff-export.json'), 'utf8')).demonstrations.sets;
  assert.deepStrictEqual(sets.map((s) => s.map((d) => d.label)), [[0, 1], [0, 1]]);
  assert.deepStrictEqual(task.versions(), ['v1', 'v3']);
  task.deleteVersion('v3');

  // Similarity-filtered demonstrations, ranked by the task's model: the export carries
  // the encoder and picks each input's sets.
  assert.strictEqual(await task.train({ steps: 2, batchSize: 4, method: 'prompt', demonstrations: true, demoSets: 2, demoFilter: true }), 'v4');
  task.exportVersion('v4', path.join(work, 'export-filter'));
  const filter = JSON.parse(fs.readFileSync(path.join(work, 'export-filter', 'lmbff-export.json'), 'utf8')).demonstrations.filter;
  assert.strictEqual(filter.sets, 2);
  assert.ok(fs.existsSync(path.join(work, 'export-filter', filter.file)));
  const filtered = new lmbff.Predictor(path.join(work, 'export-filter'), { threads: 1 }).predict(['A delightful film.', 'A dull one.']);
  assert.ok(filtered.every((r) => Math.abs(r.probs[0] + r.probs[1] - 1) < 1e-5));
  task.deleteVersion('v4');

  // The sentence-embedding method: its export says so and predicts; a bad method name
  // is refused before anything runs.
  await assert.rejects(task.train({ method: 'magic' }), (e) => e.code === 'INVALID_ARGUMENT' && /magic/.test(e.message));
  assert.strictEqual(await task.train({ method: 'sentence-embedding', learningRate: 1e-3 }), 'v5');
  // Exported off the event loop: the task takes other calls meanwhile.
  const exporting = task.exportVersionAsync('v5', path.join(work, 'export-se'));
  task.remove(task.addUnlabeled('Registered while the export runs.'));
  await exporting;
  const se = JSON.parse(fs.readFileSync(path.join(work, 'export-se', 'lmbff-export.json'), 'utf8'));
  assert.strictEqual(se.method, 'sentence-embedding');
  assert.strictEqual(se.notes.method_reason, 'asked for');
  assert.deepStrictEqual(se.notes.label_anchors, ['It was terrible.', 'It was great.']);
  const sePreds = new lmbff.Predictor(path.join(work, 'export-se'), { threads: 1 }).predict(['A delightful film.', '']);
  assert.ok(sePreds.every((r) => Math.abs(r.probs[0] + r.probs[1] - 1) < 1e-5));
  task.deleteVersion('v5');
  // Without label anchors (SetFit as published), the notes list none.
  const plain = await task.train({ method: 'sentence-embedding', learningRate: 1e-3, labelAnchors: false });
  const notes = JSON.parse(fs.readFileSync(path.join(work, 'task', 'models', plain, 'lmbff.json'), 'utf8')).notes;
  assert.deepStrictEqual(notes.label_anchors, []);
  task.deleteVersion(plain);
  // Further anchor templates add their texts; a non-array is refused before anything runs.
  const more = await task.train({ method: 'sentence-embedding', learningRate: 1e-3, anchorTemplates: ['{text} So {mask}.'] });
  const moreNotes = JSON.parse(fs.readFileSync(path.join(work, 'task', 'models', more, 'lmbff.json'), 'utf8')).notes;
  assert.deepStrictEqual(moreNotes.label_anchors, ['It was terrible.', 'It was great.', 'So terrible.', 'So great.']);
  task.deleteVersion(more);
  // A cap on the contrastive steps: the notes give the steps run and the whole schedule's.
  const capped = await task.train({ method: 'sentence-embedding', learningRate: 1e-3, embeddingMaxSteps: 2 });
  const cappedNotes = JSON.parse(fs.readFileSync(path.join(work, 'task', 'models', capped, 'lmbff.json'), 'utf8')).notes;
  assert.strictEqual(cappedNotes.steps, 2);
  assert.ok(cappedNotes.steps_capped_from > 2, JSON.stringify(cappedNotes));
  task.deleteVersion(capped);
  await assert.rejects(task.train({ method: 'sentence-embedding', embeddingMaxSteps: -1 }), (e) => e.code === 'INVALID_ARGUMENT' && /embeddingMaxSteps/.test(e.message));
  await assert.rejects(task.train({ method: 'sentence-embedding', anchorTemplates: '{text} So {mask}.' }), (e) => e.code === 'INVALID_ARGUMENT' && /anchorTemplates/.test(e.message));
  await assert.rejects(task.train({ method: 'sentence-embedding', anchorTemplates: ['{text_a} ? {mask} , {text_b}'] }), (e) => e.code === 'INVALID_ARGUMENT' && /two sentences/.test(e.message));
  // zero-shot-words trains nothing: a sentence-embedding export whose notes name it.
  const zero = await task.train({ method: 'zero-shot-words' });
  const zeroNotes = JSON.parse(fs.readFileSync(path.join(work, 'task', 'models', zero, 'lmbff.json'), 'utf8'));
  assert.strictEqual(zeroNotes.method, 'sentence-embedding');
  assert.strictEqual(zeroNotes.notes.method, 'zero-shot-words');
  task.deleteVersion(zero);
  assert.deepStrictEqual(task.versions(), ['v1']);
  throwsCode(() => task.exportVersion('v2', path.join(work, 'gone')), 'INVALID_ARGUMENT');
  await assert.rejects(task.exportVersionAsync('v2', path.join(work, 'gone')), (e) => e.code === 'INVALID_ARGUMENT' && /no model version v2/.test(e.message));
  await assert.rejects(task.exportVersionAsync('v1', path.join(work, 'gone'), { fp: true }), (e) => e.code === 'INVALID_ARGUMENT' && /no option "fp"/.test(e.message));
  throwsCode(() => task.deleteVersion('v2'), 'INVALID_ARGUMENT');

  const out = path.join(work, 'export');
  // Closed while its export runs: freed when the export ends, which completes.
  const exported = task.exportVersionAsync(version, out);
  task.close();
  await exported;
  await assert.rejects(task.exportVersionAsync(version, out), /the task is closed/);

  // A multi-label task: an example's labels separated by '|' ('' for none), one yes/no
  // prompt per label; its export gives each label's own probability.
  const multi = lmbff.Task.create({ modelDir: model, labels: ['plot', 'acting'], multiLabel: true });
  multi.addExample('The plot was thin.', 'plot');
  multi.addExample('Great acting and a clever plot.', 'plot|acting');
  multi.addExample('Nothing to say.', '');
  multi.addExample('The acting was wooden.', 'acting');
  multi.setDev(multi.addExample('A tense plot and strong acting.', 'plot|acting'));
  assert.strictEqual(multi.numDev(), 1);
  assert.deepStrictEqual([multi.counts(0).examples, multi.counts(1).examples], [2, 2]);
  throwsCode(() => multi.addExample('x', 'plot|music'), 'INVALID_ARGUMENT');
  multi.save(path.join(work, 'multi'));
  const mv = await multi.train({ steps: 2, batchSize: 4, calibrate: true });
  multi.exportVersion(mv, path.join(work, 'export-multi'));
  const calibrated = JSON.parse(fs.readFileSync(path.join(work, 'export-multi', 'lmbff-export.json'), 'utf8'));
  // A temperature is fitted on the dev example; it is applied (and exported) only where
  // the dev example bounds it (one dev example often does not).
  const fitted = JSON.parse(fs.readFileSync(path.join(work, 'multi', 'models', mv, 'lmbff.json'), 'utf8')).notes.calibration;
  assert.ok(fitted.temperature > 0, 'a temperature fitted on the dev example');
  if (fitted.applied) assert.ok(Math.abs(calibrated.temperature - fitted.temperature) < 1e-5, 'the applied temperature is exported');
  else assert.ok(calibrated.temperature === undefined || calibrated.temperature === null, 'an unbounded temperature is not exported');
  multi.close();
  const mp = new lmbff.Predictor(path.join(work, 'export-multi'), { threads: 1 });
  assert.ok(mp.multiLabel);
  assert.deepStrictEqual(mp.labels, ['plot', 'acting']);
  const [one] = mp.predict(['The plot was fun.']);
  assert.deepStrictEqual(one.labels, mp.labels.filter((_, l) => one.probs[l] >= 0.5));
  mp.close();

  // A regression task: scores as labels, checked against the range.
  const reg = lmbff.Task.create({ modelDir: model, labels: ['low', 'high'], labelWords: ['terrible', 'great'], regression: [0, 5] });
  reg.addExample('A masterpiece.', '4.5');
  throwsCode(() => reg.addExample('Off the scale.', '7'), 'INVALID_ARGUMENT');
  assert.strictEqual(reg.counts(1).examples, 1);
  reg.close();
  const p = new lmbff.Predictor(out, { threads: 1 });
  assert.deepStrictEqual(p.labels, ['0', '1']);
  const preds = p.predict(['A delightful film.', 'Broken on arrival.', '']);
  assert.strictEqual(preds.length, 3);
  for (const r of preds) {
    assert.ok(['0', '1'].includes(r.label));
    assert.ok(Math.abs(r.probs[0] + r.probs[1] - 1) < 1e-5);
    assert.ok(r.margin >= 0 && r.entropy >= 0);
  }

  // Label Studio JSON of the same predictions; a classifier has no score.
  const r = p.predictBatch(['A delightful film.', 'Broken on arrival.', '']);
  assert.strictEqual(r.length, 3);
  throwsCode(() => r.score(0), 'INVALID_ARGUMENT');
  throwsCode(() => r.get(3), 'INVALID_ARGUMENT');
  const ls = r.labelStudio('sentiment', 'text');
  assert.strictEqual(ls.length, 3);
  ls.forEach((x, i) => {
    assert.ok(x.model_version);
    assert.ok(Math.abs(x.score - Math.max(...preds[i].probs)) < 1e-5);
    assert.deepStrictEqual(x.result, [{ from_name: 'sentiment', to_name: 'text', type: 'choices', value: { choices: [preds[i].label] } }]);
  });
  assert.strictEqual(r.labelStudio('sentiment', 'text', { modelVersion: 'mine-1' })[0].model_version, 'mine-1');
  assert.ok(logged.some(([, m]) => m.startsWith('predictor opened')), JSON.stringify(logged));

  // A task's version directory is a checkpoint: export it directly, fp16.
  const out16 = path.join(work, 'export-fp16');
  lmbff.exportCheckpoint(path.join(work, 'task', 'models', version), out16, { fp16: true });
  throwsCode(() => lmbff.exportCheckpoint(path.join(work, 'missing'), path.join(work, 'none')), 'IO');
  const p16 = new lmbff.Predictor(out16, { threads: 1, sessions: 2, maxBatch: 2 });
  const preds16 = p16.predict(['A delightful film.', 'Broken on arrival.', '']);
  assert.ok(Math.abs(preds16[0].probs[1] - preds[0].probs[1]) < 1e-2);
  p16.close();

  p.close();
  assert.throws(() => p.predict(['x']), /closed/);
  assert.throws(() => r.labelStudio('a', 'b'), /closed/);
  r.close();
});
