//! Fine-tuning and adaptation on the tiny BERT fixture: they learn, they repeat exactly
//! under a fixed seed, they stop when asked, and checkpoints round-trip.

mod common;

use lmbff::checkpoint::{write_dir_atomic, Manifest};
use lmbff::model::MaskedLm;
use lmbff::prompt::{Example, Prompt, Template, Truncation, Verbalizer};
use lmbff::tokenize::Tokenizer;
use lmbff::train::{self, AdaptParams, Head, Method, Resume, TrainParams, Trainable};
use lmbff::Error;
use tch::Device;

/// libtorch's random generator is process-global: tests that train take turns, so a
/// fixed seed gives the same run (as it does for one run at a time in a host).
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup() -> (Tokenizer, Prompt, std::path::PathBuf, std::sync::MutexGuard<'static, ()>) {
    let guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    common::one_thread();
    let dir = common::fixtures().join("bert");
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let v = Verbalizer::new(&tok, &[("0".into(), "terrible".into()), ("1".into(), "great".into())]).unwrap();
    let p = Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v, Truncation { max_len: 32, ..Truncation::default() }).unwrap();
    (tok, p, dir, guard)
}

/// A separable toy task: sentiment words decide the label.
fn toy() -> Vec<Example> {
    let pos = ["the movie was fun", "i loved this book", "the acting was good", "a great ride", "the music was bright", "i enjoyed the story"];
    let neg = ["the movie was boring", "i hated this book", "the acting was bad", "a dull ride", "the music was slow", "i hated the story"];
    pos.iter().map(|t| Example::single(*t, Some(1))).chain(neg.iter().map(|t| Example::single(*t, Some(0)))).collect()
}

fn params(steps: usize) -> TrainParams {
    TrainParams { steps, batch_size: 4, lr: 3e-3, eval_every: 20, seed: 7, ..TrainParams::default() }
}

#[test]
fn prompt_finetuning_learns_and_repeats_exactly() {
    let (tok, p, dir, _rng) = setup();
    let data = toy();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
        let (rep, head) = train::finetune(&m, &tok, &p, Method::Prompt, &data, &data, &params(120), &mut |_| true).unwrap();
        let enc = train::encode_all(&tok, &p, Method::Prompt, &data).unwrap();
        let logits = train::predict_logits(&m, &head, &enc, tok.special().pad, 8).unwrap();
        runs.push((rep, logits));
    }
    let (rep, logits) = &runs[0];
    assert_eq!(rep.best_dev_acc, 1.0, "the toy task is learnt: {:?}", rep.dev_curve);
    assert!(rep.loss_curve.first().unwrap().1 > rep.loss_curve.last().unwrap().1, "{:?}", rep.loss_curve);
    assert_eq!(rep.loss_curve, runs[1].0.loss_curve, "same seed, same losses");
    assert_eq!(logits, &runs[1].1, "same seed, same predictions");
    // The weights kept are those of the best evaluation.
    let gold: Vec<usize> = data.iter().map(|e| e.label.unwrap()).collect();
    assert_eq!(train::accuracy(logits, &gold), rep.best_dev_acc);
}

#[test]
fn plain_cls_finetuning_learns() {
    let (tok, p, dir, _rng) = setup();
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let (rep, _) = train::finetune(&m, &tok, &p, Method::Cls, &toy(), &toy(), &params(120), &mut |_| true).unwrap();
    assert_eq!(rep.method, "plain");
    assert_eq!(rep.best_dev_acc, 1.0, "{:?}", rep.dev_curve);
}

#[test]
fn cancellation_and_bad_settings() {
    let (tok, p, dir, _rng) = setup();
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let mut calls = 0;
    let r = train::finetune(&m, &tok, &p, Method::Prompt, &toy(), &toy(), &params(50), &mut |_| {
        calls += 1;
        calls < 3
    });
    assert!(matches!(r, Err(Error::Cancelled)));
    assert_eq!(calls, 3);
    let bad = TrainParams { lr: 0.0, ..params(5) };
    assert!(matches!(train::finetune(&m, &tok, &p, Method::Prompt, &toy(), &toy(), &bad, &mut |_| true), Err(Error::InvalidArgument(_))));
    // A diverged run is an error, with a dev set (every evaluation non-finite) and
    // without one (the training examples read the last weights): never a model whose
    // probabilities are NaN.
    let wild = TrainParams { lr: 1e8, ..params(5) };
    for (method, dev) in [(Method::Prompt, toy()), (Method::Prompt, Vec::new()), (Method::Cls, Vec::new())] {
        let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
        let err = train::finetune(&m, &tok, &p, method, &toy(), &dev, &wild, &mut |_| true).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("training diverged"), "{method:?} with {} dev examples: {err:?}", dev.len());
    }
    let unlabeled = vec![Example::single("no label here", None)];
    assert!(matches!(train::finetune(&m, &tok, &p, Method::Prompt, &unlabeled, &[], &params(5), &mut |_| true), Err(Error::InvalidArgument(_))));
    // The sentence-embedding method refuses what it cannot use before it tunes the
    // encoder: an anchor template of two sentences that only the word anchors read, and
    // a multi-label task without an example (it tuned on the labels' names first).
    let two = train::EmbedParams { anchor_repeats: 0, anchor_templates: vec![Template::parse("{text_a} ? {mask} , {text_b}").unwrap()], ..train::EmbedParams::default() };
    let mut steps = 0;
    let err = train::train_embedding(&m, &tok, &p, &toy(), &two, &mut |_| { steps += 1; true }).unwrap_err().to_string();
    assert!(err.contains("reads two sentences") && steps == 0, "{steps} steps, then: {err}");
    let names = ["sports".to_string(), "music".to_string()];
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let err = train::train_embedding_multi(&m, &tok, &p.input_reader(), &[], &[], &names, &train::EmbedParams::default(), &mut |_| { steps += 1; true }).unwrap_err().to_string();
    assert!(err.contains("no training examples") && steps == 0, "{steps} steps, then: {err}");
    // Examples of one class only: the classifier would answer it for every input.
    let one_class: Vec<Example> = toy().into_iter().filter(|e| e.label == Some(1)).collect();
    let err = train::train_embedding(&m, &tok, &p, &one_class, &train::EmbedParams::default(), &mut |_| { steps += 1; true }).unwrap_err().to_string();
    assert!(err.contains("every training example is of class") && err.contains("at least two classes") && steps == 0, "{steps} steps, then: {err}");
    // A class without an example (its head row had nothing to fit), and a multi-label
    // label on every example or on none (its yes/no head has one side only).
    let v3 = Verbalizer::new(&tok, &[("0".into(), "terrible".into()), ("1".into(), "great".into()), ("2".into(), "fine".into())]).unwrap();
    let p3 = Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v3, Truncation { max_len: 32, ..Truncation::default() }).unwrap();
    let err = train::train_embedding(&m, &tok, &p3, &toy(), &train::EmbedParams::default(), &mut |_| { steps += 1; true }).unwrap_err().to_string();
    assert!(err.contains("class \"2\" has no training example") && steps == 0, "{steps} steps, then: {err}");
    for (sets, which) in [(vec![vec![0], vec![0, 1]], "every"), (vec![vec![0], vec![]], "no")] {
        let two: Vec<Example> = toy().into_iter().take(2).collect();
        let err = train::train_embedding_multi(&m, &tok, &p.input_reader(), &two, &sets, &names, &train::EmbedParams::default(), &mut |_| { steps += 1; true })
            .unwrap_err()
            .to_string();
        let named = if which == "every" { "\"sports\" is on every" } else { "\"music\" is on no" };
        assert!(err.contains(named) && err.contains("with it and without it") && steps == 0, "{steps} steps, then: {err}");
    }
    // A diverged encoder is an error, not a classifier fitted on NaN embeddings.
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let wild = train::EmbedParams { lr: 1e30, ..train::EmbedParams::default() };
    let err = train::train_embedding(&m, &tok, &p, &toy(), &wild, &mut |_| true).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("training diverged") && err.contains("non-finite embeddings"), "{err:?}");
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let err = train::train_embedding_multi(&m, &tok, &p.input_reader(), &toy(), &(0..toy().len()).map(|i| vec![i % 2]).collect::<Vec<_>>(), &names, &wild, &mut |_| true)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("training diverged"), "{err:?}");
}

#[test]
fn checkpoint_round_trip() {
    let (tok, p, dir, _rng) = setup();
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let (_, head) = train::finetune(&m, &tok, &p, Method::Prompt, &toy(), &toy(), &params(20), &mut |_| true).unwrap();
    let out = common::tempdir("ckpt").join("model");
    let manifest = Manifest::for_prompt(&p, &[], Default::default());
    write_dir_atomic(&out, lmbff::checkpoint::MANIFEST_FILE, |d| {
        m.save_pretrained(d)?;
        manifest.write_into(d)
    })
    .unwrap();
    assert_eq!(Manifest::read(&out).unwrap(), manifest);
    let back = MaskedLm::load(&out, Device::Cpu).unwrap();
    assert!(!back.load_report().head_initialised);
    let enc = train::encode_all(&tok, &p, Method::Prompt, &toy()).unwrap();
    let a = train::predict_logits(&m, &head, &enc, 0, 8).unwrap();
    let b = train::predict_logits(&back, &Head::for_prompt(&back, &p).unwrap(), &enc, 0, 8).unwrap();
    assert_eq!(a, b, "saved weights predict exactly as before");
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "BertForMaskedLM");
    assert!(out.join("tokenizer.json").is_file());
}

#[test]
fn adaptation_lowers_the_masked_lm_loss_and_respects_trainable() {
    let (tok, _, dir, _rng) = setup();
    let texts: Vec<String> = toy().into_iter().map(|e| e.text_a).collect();
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let before = m.snapshot().unwrap();
    let p = AdaptParams { steps: 60, batch_size: 8, max_len: 16, lr: 3e-3, trainable: Trainable::Head, seed: 3, ..AdaptParams::default() };
    let rep = train::adapt(&m, &tok, &texts, &p, None, &mut |_| true).unwrap();
    let (first, last) = (rep.loss_curve.first().unwrap().1, rep.loss_curve.last().unwrap().1);
    assert!(last < first, "MLM loss {first} -> {last}");
    // Head-only adaptation leaves the encoder untouched.
    let vars = m.vs.variables();
    for (name, t) in &before {
        let same = vars[name].equal(t);
        let is_head = name.starts_with("cls.");
        assert_eq!(same, !is_head, "{name} changed: {}", !same);
    }
    assert!(matches!(train::adapt(&m, &tok, &[], &p, None, &mut |_| true), Err(Error::InvalidArgument(_))));
}

/// Reading a checkpoint for an export or a demonstration filter draws nothing from
/// libtorch's random generator, which a training run on another thread draws its
/// dropout from; the weights it reads are the checkpoint's all the same.
#[test]
fn loading_without_the_random_generator() {
    let (_, _, dir, _rng) = setup();
    let draw = |load: &dyn Fn()| {
        tch::manual_seed(11);
        load();
        tch::Tensor::randn([6], (tch::Kind::Float, Device::Cpu))
    };
    let clean = draw(&|| {});
    assert!(draw(&|| drop(MaskedLm::load_without_rng(&dir, Device::Cpu).unwrap())).equal(&clean));
    assert!(!draw(&|| drop(MaskedLm::load(&dir, Device::Cpu).unwrap())).equal(&clean), "a plain load draws");
    let (a, b) = (MaskedLm::load(&dir, Device::Cpu).unwrap(), MaskedLm::load_without_rng(&dir, Device::Cpu).unwrap());
    let va = a.vs.variables();
    for (name, t) in b.vs.variables() {
        assert!(t.equal(&va[&name]), "{name}");
    }
}

#[test]
fn snapshot_restores_exactly() {
    let (_, _, dir, _rng) = setup();
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let snap = m.snapshot().unwrap();
    let w = m.vs.variables()["bert.encoder.layer.0.output.dense.weight"].shallow_clone();
    let before = w.copy();
    tch::no_grad(|| {
        let _ = w.shallow_clone().fill_(0.25);
    });
    assert!(!w.equal(&before));
    m.restore(&snap).unwrap();
    assert!(w.equal(&before));
}

#[test]
fn adaptation_with_fewer_texts_than_a_batch() {
    let (tok, _, dir, _rng) = setup();
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let texts = vec!["it was great .".to_string(), "it was terrible .".to_string()];
    let p = AdaptParams { steps: 3, batch_size: 8, max_len: 16, ..AdaptParams::default() };
    let rep = train::adapt(&m, &tok, &texts, &p, None, &mut |_| true).unwrap();
    assert_eq!(rep.loss_curve.last().unwrap().0, 3);
}

/// A run stopped part-way and resumed from its saved state ends with exactly the
/// weights and loss curve of a run that never stopped; a state written for other
/// settings is refused.
#[test]
fn adaptation_resumes_exactly() {
    let (tok, _, dir, _rng) = setup();
    let texts: Vec<String> = toy().into_iter().map(|e| e.text_a).collect();
    let p = AdaptParams { steps: 12, batch_size: 4, max_len: 16, lr: 1e-3, seed: 5, ..AdaptParams::default() };
    let whole = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let rep_whole = train::adapt(&whole, &tok, &texts, &p, None, &mut |_| true).unwrap();

    let state = common::tempdir("adapt-resume").join("state");
    let first = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let resume = Some(Resume { dir: &state, every: 4 });
    // Stop after step 7: the state is saved at 4 and at the stop.
    let stopped = train::adapt(&first, &tok, &texts, &p, resume, &mut |pr| pr.step < 7);
    assert!(matches!(stopped, Err(Error::Cancelled)));
    assert!(state.join("state.json").is_file());

    let second = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let rep = train::adapt(&second, &tok, &texts, &p, resume, &mut |_| true).unwrap();
    assert_eq!(rep.resumed_at, 7);
    assert_eq!(rep.loss_curve, rep_whole.loss_curve);
    let a = whole.vs.variables();
    for (name, t) in second.vs.variables() {
        assert!(t.equal(&a[&name]), "{name} differs after resuming");
    }

    let other = AdaptParams { lr: 2e-3, ..p.clone() };
    let err = train::adapt(&MaskedLm::load(&dir, Device::Cpu).unwrap(), &tok, &texts, &other, resume, &mut |_| true).unwrap_err();
    assert!(err.to_string().contains("other settings (lr: 0.001 there, 0.002 here)"), "the setting is named: {err}");
    let fewer: Vec<String> = texts[1..].to_vec();
    let err = train::adapt(&MaskedLm::load(&dir, Device::Cpu).unwrap(), &tok, &fewer, &p, resume, &mut |_| true).unwrap_err();
    assert!(err.to_string().contains("the same settings but other texts or another model"), "{err}");
    // Another checkpoint of the same shape (one weight changed by 1%) is another model.
    let changed = MaskedLm::load(&dir, Device::Cpu).unwrap();
    tch::no_grad(|| {
        let _ = changed.vs.variables()["bert.encoder.layer.0.output.dense.weight"].shallow_clone().f_mul_scalar_(1.01).unwrap();
    });
    let err = train::adapt(&changed, &tok, &texts, &p, resume, &mut |_| true).unwrap_err();
    assert!(err.to_string().contains("the same settings but other texts or another model"), "{err}");
}

/// Demonstrations: training draws a fresh set per query and step, the report keeps the
/// fixed inference sets, evaluation averages over them, and a run repeats exactly.
#[test]
fn prompt_finetuning_with_demonstrations() {
    let (tok, p, dir, _rng) = setup();
    let data = toy();
    let demo = TrainParams { demonstrations: true, demo_sets: 3, ..params(120) };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
        let (rep, head) = train::finetune(&m, &tok, &p, Method::Prompt, &data, &data, &demo, &mut |_| true).unwrap();
        let logits = train::predict_examples(&m, &tok, &p, Method::Prompt, &head, &data, &rep.demos, 8).unwrap();
        runs.push((rep, logits));
    }
    let (rep, logits) = &runs[0];
    assert!(rep.demonstrations);
    assert_eq!(rep.demos.fixed().len(), 3);
    assert!(rep.demos.fixed().iter().all(|s| s.iter().map(|e| e.label.unwrap()).collect::<Vec<_>>() == vec![0, 1]), "one per class, in class order");
    assert_eq!(rep.loss_curve, runs[1].0.loss_curve, "same seed, same losses");
    assert_eq!(logits, &runs[1].1, "same seed, same predictions");
    let gold: Vec<usize> = data.iter().map(|e| e.label.unwrap()).collect();
    assert_eq!(train::accuracy(logits, &gold), rep.best_dev_acc, "dev evaluation used the same sets");
    assert!(rep.best_dev_acc >= 0.9, "the toy task is learnt with demonstrations: {:?}", rep.dev_curve);
    // The plain method has no template to append demonstrations to.
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let err = train::finetune(&m, &tok, &p, Method::Cls, &data, &data, &demo, &mut |_| true).err().unwrap();
    assert!(err.to_string().contains("demonstrations need the prompt method"), "{err}");
}

/// Regression (LM-BFF's STS-B objective): the KL between the target [1 - s, s] and the
/// label words' distribution falls to near its floor, and p(upper pole) follows graded
/// scores, ranked as the targets are (dev selection by Pearson correlation).
#[test]
fn regression_fits_graded_scores_by_kl() {
    let (tok, p, dir, _rng) = setup();
    let m = MaskedLm::load(&dir, Device::Cpu).unwrap();
    let data = toy();
    // Graded scores: the positives from 0.6 up, the negatives from 0.4 down.
    let scores: Vec<f32> = (0..data.len()).map(|i| if i < 6 { 0.6 + 0.07 * i as f32 } else { 0.4 - 0.07 * (i - 6) as f32 }).collect();
    let targets = train::RegressionTargets { train: scores.clone(), dev: scores.clone() };
    let tp = TrainParams { regression: Some(targets), ..params(200) };
    let (rep, head) = train::finetune(&m, &tok, &p, Method::Prompt, &data, &data, &tp, &mut |_| true).unwrap();
    assert!(rep.best_dev_acc > 0.9, "dev Pearson {:?}", rep.dev_curve);
    let last_kl = rep.loss_curve.last().unwrap().1;
    assert!((0.0..0.05).contains(&last_kl), "KL {:?}", rep.loss_curve);
    let logits = train::predict_examples(&m, &tok, &p, Method::Prompt, &head, &data, &train::Demos::None, 8).unwrap();
    // A long evaluation is asked before each batch whether to go on (a training run's dev
    // evaluation asks its progress callback there): 12 inputs of batch 8 ask twice, and
    // a no stops it.
    let mut asked = 0;
    let again = train::predict_examples_with(&m, &tok, &p, Method::Prompt, &head, &data, &train::Demos::None, 8, &mut || {
        asked += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!((asked, &again), (2, &logits));
    let stopped = train::predict_examples_with(&m, &tok, &p, Method::Prompt, &head, &data, &train::Demos::None, 8, &mut || Err(lmbff::Error::Cancelled));
    assert!(matches!(stopped, Err(lmbff::Error::Cancelled)));
    let upper: Vec<f64> = train::softmax_rows(&logits).iter().map(|q| q[1] as f64).collect();
    let gold: Vec<f64> = scores.iter().map(|&v| v as f64).collect();
    assert!((lmbff::metrics::pearson(&upper, &gold) - rep.best_dev_acc).abs() < 1e-6, "the kept weights are the best dev's");
    // One dev example has no Pearson (every evaluation scores 0): the last weights are
    // kept, not the first evaluation's.
    let one = train::RegressionTargets { train: scores.clone(), dev: vec![scores[0]] };
    let tp = TrainParams { regression: Some(one), eval_every: 5, ..params(20) };
    let (rep, _) = train::finetune(&m, &tok, &p, Method::Prompt, &data, &data[..1], &tp, &mut |_| true).unwrap();
    assert_eq!(rep.best_step, 20, "dev curve {:?}", rep.dev_curve);
    // Bad targets are named.
    let bad = TrainParams { regression: Some(train::RegressionTargets { train: vec![0.5; 3], dev: vec![] }), ..params(5) };
    let Err(e) = train::finetune(&m, &tok, &p, Method::Prompt, &data, &data, &bad, &mut |_| true) else { panic!("3 scores for 12 examples were accepted") };
    assert!(e.to_string().contains("one score in [0, 1] per example"), "{e}");
}
