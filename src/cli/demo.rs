//! The README's main job: bootstrap labels for a pool of unlabeled texts from a few
//! labelled examples, on the default model, and report held-out accuracy next to plain
//! fine-tuning's.
//!
//! 1. Adapt the default encoder (which has no masked-LM head) on the pool's own text;
//!    the result is cached per machine under `.cache/adapted/` and reused.
//! 2. Prompt-based fine-tuning (LM-BFF) of the adapted model on the few labels, plain
//!    [CLS] fine-tuning of the original encoder, with the same learning-rate grid and
//!    step budget, and the sentence-embedding method (SetFit-style) on the original
//!    encoder over the same learning rates, each chosen on dev.
//! 3. Label the pool with the method that did best on dev (JSON lines with
//!    probabilities and margin) and print accuracy on the held-out set for zero-shot and
//!    the three methods.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::commands::{corpus, evaluate, read_for};
use super::progress::Bar;
use super::task::{parse_labels, Loaded, TaskArgs, DEFAULT_LABELS};
use crate::checkpoint::{fnv1a, write_dir_atomic, LinearHead, FNV_OFFSET};
use crate::data::read_texts;
use crate::prompt::{gold_labels, Example};
use crate::train::{self, accuracy, Demos, predict_logits, softmax_rows, AdaptParams, Head, Method, Resume, TrainParams, Trainable};
use crate::{Error, Result};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder with train.tsv, dev.tsv, test.tsv and unlabeled.txt.
    #[arg(long, default_value = "data/reviews")]
    pub data: PathBuf,
    /// Model directory (default: $LMBFF_DEFAULT_MODEL, the MiniLM installed by set-up).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Cache folder for the adapted model.
    #[arg(long, default_value = ".cache")]
    pub cache: PathBuf,
    /// Masked-LM adaptation steps (batch 32, 64 tokens); 0 skips adaptation.
    #[arg(long, default_value_t = 500)]
    pub adapt_steps: usize,
    /// Fine-tuning steps per run of plain and prompt fine-tuning (the sentence-embedding
    /// method runs its own schedule: 20 rounds of pairs).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Learning rates tried by every method (chosen on dev).
    #[arg(long, value_delimiter = ',', default_value = "2e-5,5e-5,1e-4")]
    pub lrs: Vec<f64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output folder for labels.jsonl and report.json.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    #[command(flatten)]
    pub task: TaskArgs,
}

/// The version of masked-LM adaptation's results that the demo's cache key names: an
/// adapted model cached by an earlier version is made again, not reused.
/// (3: the key reads every file of the model folder, and tokenizers saved with
/// `add_prefix_space` are read without it. 4: a typed [MASK]/[SEP]/[CLS]/[PAD] in a text
/// reads as unknown, and long texts are not cut at a form feed.)
const ADAPT_CACHE_FORMAT: u32 = 4;

fn adapted_model(a: &DemoArgs, base: &Path, texts: &[String]) -> Result<PathBuf> {
    let params = AdaptParams { steps: a.adapt_steps, trainable: Trainable::All, seed: a.seed, ..AdaptParams::default() };
    // The key covers what shapes the adapted model: how adaptation works (bump
    // ADAPT_CACHE_FORMAT when its results change), its settings, the texts (each ended
    // by a newline, so that "ab","c" is not "a","bc"), and every file of the model
    // folder (a sharded model's shards too, not only their index).
    let mut key = fnv1a(format!("{ADAPT_CACHE_FORMAT} {params:?}").as_bytes(), FNV_OFFSET);
    for t in texts {
        key = fnv1a(b"\n", fnv1a(t.as_bytes(), key));
    }
    key = fnv1a(crate::harness::model_fingerprint(base)?.as_bytes(), key);
    let name = base.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let dir = a.cache.join("adapted").join(format!("{name}-{key:016x}"));
    if dir.join(crate::checkpoint::ADAPTATION_FILE).is_file() {
        eprintln!("using the cached adapted model {}", dir.display());
        return Ok(dir);
    }
    eprintln!(
        "adapting {} on {} texts (the pool's and the training examples'; {} steps; cached in {} for these texts, model and settings)",
        base.display(),
        texts.len(),
        params.steps,
        dir.display()
    );
    let l = a.task.load(base, a.seed)?;
    // An interrupted first run resumes from here (saved every 50 steps).
    let state = train::state_dir_beside(&dir);
    let mut bar = Bar::new("adapt");
    let resume = Some(Resume { dir: &state, every: 50 });
    let report = train::adapt(&l.model, &l.tok, texts, &params, resume, &mut |p| bar.update(p))?;
    bar.finish();
    write_dir_atomic(&dir, crate::checkpoint::ADAPTATION_FILE, |d| {
        l.model.save_pretrained(d)?;
        let path = d.join(crate::checkpoint::ADAPTATION_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(&json!({"source_model": base, "report": report})).unwrap())
            .map_err(|e| Error::io(&path, e))
    })?;
    if state.exists() {
        std::fs::remove_dir_all(&state).map_err(|e| Error::io(&state, e))?;
    }
    eprintln!("adaptation took {:.0} s", report.seconds);
    Ok(dir)
}

struct Fitted {
    loaded: Loaded,
    head: Head,
    lr: f64,
    dev_acc: f64,
}

fn fit_best(a: &DemoArgs, model: &Path, method: Method, tr: &[Example], dev: &[Example]) -> Result<Fitted> {
    let mut best: Option<Fitted> = None;
    for &lr in &a.lrs {
        let loaded = a.task.load(model, a.seed)?;
        // At most five dev evaluations (the last step's among them), as a task's run has:
        // more would tilt the choice among methods towards the fine-tuned ones.
        let p = TrainParams { steps: a.steps, lr, eval_every: a.steps.div_ceil(5).max(1), seed: a.seed, ..TrainParams::default() };
        let mut bar = Bar::new(method.name());
        let (rep, head) = train::finetune(&loaded.model, &loaded.tok, &loaded.prompt, method, tr, dev, &p, &mut |p| bar.update(p))?;
        bar.finish();
        eprintln!("{:>6} lr {lr:e}: dev {:.1}% (best at step {})", method.name(), 100.0 * rep.best_dev_acc, rep.best_step);
        if best.as_ref().is_none_or(|b| rep.best_dev_acc > b.dev_acc) {
            best = Some(Fitted { loaded, head, lr, dev_acc: rep.best_dev_acc });
        }
    }
    best.ok_or_else(|| Error::InvalidArgument("--lrs is empty".into()))
}

/// The sentence-embedding method over `--lrs`, chosen on dev.
fn fit_embedding(a: &DemoArgs, model: &Path, tr: &[Example], dev: &[Example]) -> Result<(Loaded, LinearHead, f64, f64)> {
    let mut best: Option<(Loaded, LinearHead, f64, f64)> = None;
    let dev_gold = gold_labels(dev);
    for &lr in &a.lrs {
        let loaded = a.task.load(model, a.seed)?;
        let p = train::EmbedParams { lr, seed: a.seed, ..train::EmbedParams::default() };
        let mut bar = Bar::new("sentence-embedding");
        let (head, _) = train::train_embedding(&loaded.model, &loaded.tok, &loaded.prompt, tr, &p, &mut |p| bar.update(p))?;
        bar.finish();
        let dev_acc = accuracy(&train::embedding_logits(&loaded.model, &loaded.tok, &loaded.prompt, &head, dev, 64)?, &dev_gold);
        eprintln!("sentence-embedding lr {lr:e}: dev {:.1}%", 100.0 * dev_acc);
        if best.as_ref().is_none_or(|b| dev_acc > b.3) {
            best = Some((loaded, head, lr, dev_acc));
        }
    }
    best.ok_or_else(|| Error::InvalidArgument("--lrs is empty".into()))
}

pub fn run(a: DemoArgs) -> Result<()> {
    // What fine-tuning would refuse, refused before the adaptation (minutes).
    if a.steps == 0 {
        return Err(Error::InvalidArgument("--steps is 0: give at least 1 fine-tuning step".into()));
    }
    if a.lrs.is_empty() || a.lrs.iter().any(|&lr| !(lr > 0.0 && lr.is_finite())) {
        return Err(Error::InvalidArgument(format!("--lrs {:?}: give one or more positive learning rates", a.lrs)));
    }
    let base = match &a.model {
        Some(m) => m.clone(),
        None => std::env::var_os("LMBFF_DEFAULT_MODEL")
            .map(PathBuf::from)
            .ok_or_else(|| Error::InvalidArgument("no --model and LMBFF_DEFAULT_MODEL is unset: run `bash scripts/demo` (it sets up the default model)".into()))?,
    };
    // A wrong --out is named now, not after the run (labels.jsonl, written first, marks
    // an earlier demo's folder).
    super::commands::check_out(&a.out, "--out", &base, "labels.jsonl")?;
    // The output is replaced whole. A folder an older demo wrote into lists nothing (it
    // wrote its two files among whatever was there): it is taken only while it holds no
    // more than those.
    if a.out.join("labels.jsonl").is_file() && !crate::checkpoint::lists_its_output(&a.out) {
        let others: Vec<String> = std::fs::read_dir(&a.out)
            .map_err(|e| Error::io(&a.out, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n != "labels.jsonl" && n != "report.json")
            .collect();
        if !others.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "--out {} holds an older demo's labels.jsonl among other files ({}): the demo replaces its output folder whole; \
                 give a new folder",
                a.out.display(),
                others.join(", ")
            )));
        }
    }
    // The demo starts from a pretrained model: a trained lmbff model brings its own
    // labels (in its order), which the demo's data would be read against wrongly.
    if base.join(crate::checkpoint::MANIFEST_FILE).is_file() {
        return Err(Error::InvalidArgument(format!(
            "{} is a trained lmbff model ({}): the demo starts from a pretrained one; give the model it was trained from",
            base.display(),
            crate::checkpoint::MANIFEST_FILE
        )));
    }
    // The output folder is replaced whole at the end: a cache in it (or holding it) would
    // be lost with it, or make it a folder the demo may not replace, after the whole run.
    let (cache, out) = (crate::absolute(&a.cache.join("adapted")), crate::absolute(&a.out));
    if a.adapt_steps > 0 && (cache.starts_with(&out) || out.starts_with(&cache)) {
        return Err(Error::InvalidArgument(format!(
            "--cache {} would keep the adapted model in --out {}, which the demo replaces whole: give the cache a folder of its own",
            a.cache.display(),
            a.out.display()
        )));
    }
    // The adapted model is cached under --cache: a folder that cannot be made there is
    // named now, not at the adaptation's first saved state.
    if a.adapt_steps > 0 {
        let adapted = a.cache.join("adapted");
        std::fs::create_dir_all(&adapted)
            .and_then(|()| crate::checkpoint::can_make_folder_in(&adapted))
            .map_err(|e| Error::InvalidArgument(format!("--cache {}: no folder can be made in {} ({e})", a.cache.display(), adapted.display())))?;
    }
    let started = std::time::Instant::now();
    // The sets are read as train reads them, against the template (a two-sentence
    // template on one-sentence data failed only after the adaptation, minutes in).
    let tok = crate::tokenize::Tokenizer::from_dir(&base)?;
    let label_names = parse_labels(&tok, a.task.labels.as_deref().unwrap_or(DEFAULT_LABELS))?.labels().to_vec();
    let template = a.task.pretrained_template()?;
    let read = |set: &str| read_for(&template, &label_names, &a.data.join(set), "--data");
    let (tr, dev, test) = (read("train.tsv")?, read("dev.tsv")?, read("test.tsv")?);
    let pool = read_texts(&a.data.join("unlabeled.txt"))?;
    // Empty sets would make every dev comparison false (NaN) and the report NaN%
    // (`read_for` refuses an empty labelled set).
    if pool.is_empty() {
        return Err(Error::InvalidArgument(format!("{}: no examples (the demo trains on train.tsv, chooses on dev.tsv, reports test.tsv and labels unlabeled.txt)", a.data.join("unlabeled.txt").display())));
    }
    eprintln!("{} labelled ({} train + {} dev), {} held out, {} unlabeled", tr.len() + dev.len(), tr.len(), dev.len(), test.len(), pool.len());

    // 1. Adaptation on the host's own text: the pool and the training texts (not the
    //    dev examples, which choose among the methods, nor the held-out set).
    let (texts, _) = corpus(&[a.data.join("unlabeled.txt"), a.data.join("train.tsv")], &[a.data.join("test.tsv"), a.data.join("dev.tsv")])?;
    let prompt_model = if a.adapt_steps > 0 { adapted_model(&a, &base, &texts)? } else { base.clone() };

    // 2. Fine-tuning, both methods with the same grid and budget.
    let zero = {
        let l = a.task.load(&prompt_model, a.seed)?;
        evaluate(&l, &Head::for_prompt(&l.model, &l.prompt)?, Method::Prompt, &test, &Demos::None)?
    };
    let plain = fit_best(&a, &base, Method::Cls, &tr, &dev)?;
    let plain_acc = evaluate(&plain.loaded, &plain.head, Method::Cls, &test, &Demos::None)?;
    let prompt = fit_best(&a, &prompt_model, Method::Prompt, &tr, &dev)?;
    let prompt_acc = evaluate(&prompt.loaded, &prompt.head, Method::Prompt, &test, &Demos::None)?;
    let (se_loaded, se_head, se_lr, se_dev) = fit_embedding(&a, &base, &tr, &dev)?;
    let test_gold = gold_labels(&test);
    let se_acc = accuracy(&train::embedding_logits(&se_loaded.model, &se_loaded.tok, &se_loaded.prompt, &se_head, &test, 64)?, &test_gold);

    // 3. Label the pool with the method that did best on dev (the held-out set is only
    //    reported, never used to choose; ties go to the earlier of prompt, plain,
    //    sentence-embedding).
    let pool_ex: Vec<Example> = pool.iter().map(|t| Example::single(t.clone(), None)).collect();
    let best_dev = prompt.dev_acc.max(plain.dev_acc).max(se_dev);
    let (method_name, l, logits) = if prompt.dev_acc == best_dev || plain.dev_acc == best_dev {
        let (winner, method) = if prompt.dev_acc == best_dev { (&prompt, Method::Prompt) } else { (&plain, Method::Cls) };
        let l = &winner.loaded;
        let enc = train::encode_all(&l.tok, &l.prompt, method, &pool_ex)?;
        (method.name(), l, predict_logits(&l.model, &winner.head, &enc, l.tok.special().pad, 64)?)
    } else {
        ("sentence-embedding", &se_loaded, train::embedding_logits(&se_loaded.model, &se_loaded.tok, &se_loaded.prompt, &se_head, &pool_ex, 64)?)
    };
    let probs = softmax_rows(&logits);
    let names = l.prompt.verbalizer.labels();
    let mut lines = String::new();
    let mut scored: Vec<(f32, usize)> = Vec::new();
    let mut counts = vec![0usize; names.len()];
    for (i, (text, p)) in pool.iter().zip(&probs).enumerate() {
        let top = train::argmax(p);
        let mut sorted = p.clone();
        sorted.sort_by(|x, y| y.total_cmp(x));
        let margin = sorted[0] - sorted.get(1).copied().unwrap_or(0.0);
        counts[top] += 1;
        scored.push((margin, i));
        lines += &json!({"text": text, "label": names[top], "probs": p, "margin": margin}).to_string();
        lines.push('\n');
    }
    let report = json!({
        "model": base, "adapted_model": prompt_model, "steps": a.steps, "lrs": a.lrs, "seed": a.seed,
        "held_out": test.len(), "zero_shot_acc": zero, "pool_labelled_by": method_name,
        "plain": {"lr": plain.lr, "dev_acc": plain.dev_acc, "test_acc": plain_acc},
        "prompt": {"lr": prompt.lr, "dev_acc": prompt.dev_acc, "test_acc": prompt_acc},
        "sentence_embedding": {"lr": se_lr, "dev_acc": se_dev, "test_acc": se_acc},
        "seconds": started.elapsed().as_secs_f64(),
    });
    // The labels and the report are one output, written whole (new labels beside an
    // old report could be left before).
    let report = serde_json::to_string_pretty(&report).map_err(|e| Error::Internal(format!("the demo's report does not serialise: {e}")))?;
    write_dir_atomic(&a.out, "labels.jsonl", |d| {
        for (name, text) in [("labels.jsonl", &lines), ("report.json", &report)] {
            std::fs::write(d.join(name), text).map_err(|e| Error::io(d.join(name), e))?;
        }
        Ok(())
    })?;
    let (labels_path, report_path) = (a.out.join("labels.jsonl"), a.out.join("report.json"));

    scored.sort_by(|x, y| x.0.total_cmp(&y.0));
    outln!("\nLeast certain pool items (review these first):")?;
    for &(m, i) in scored.iter().take(5) {
        outln!("  margin {m:.2}  {:<8} {}", names[train::argmax(&probs[i])], pool[i])?;
    }
    outln!("\nLabelled {} pool texts with {} (best on dev) -> {} ({})", pool.len(), method_name, labels_path.display(),
        names.iter().zip(&counts).map(|(n, c)| format!("{n}: {c}")).collect::<Vec<_>>().join(", "))?;
    outln!("\nHeld-out accuracy ({} items, {} labelled examples, {} steps of plain and prompt fine-tuning, lr chosen on dev from {:?}):", test.len(), tr.len(), a.steps, a.lrs)?;
    outln!("| method | model | dev | held-out ({}) |\n|---|---|---|---|", test.len())?;
    let adapted = match (a.adapt_steps > 0, prompt.loaded.model.load_report().head_initialised) {
        (true, _) => "adapted",
        (false, true) => "original, new head",
        (false, false) => "original",
    };
    outln!("| prompt zero-shot | {adapted} | - | {:.1}% |", 100.0 * zero)?;
    outln!("| plain [CLS] fine-tuning | original | {:.1}% | {:.1}% |", 100.0 * plain.dev_acc, 100.0 * plain_acc)?;
    outln!("| prompt fine-tuning (LM-BFF) | {adapted} | {:.1}% | {:.1}% |", 100.0 * prompt.dev_acc, 100.0 * prompt_acc)?;
    outln!("| sentence-embedding (label and word anchors) | original | {:.1}% | {:.1}% |", 100.0 * se_dev, 100.0 * se_acc)?;
    outln!("\nreport: {}  ({:.0} s)", report_path.display(), started.elapsed().as_secs_f64())?;
    Ok(())
}
