//! adapt, train, eval, compare and bench-step.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::progress::Bar;
use super::task::{Loaded, TaskArgs};
use crate::checkpoint::{write_dir_atomic, Manifest};
use crate::data::{read_examples, read_texts};
use crate::prompt::{gold_labels, Example, Template};
use crate::train::{self, accuracy, AdaptParams, Demos, Head, Method, Resume, Trainable, TrainParams};
use crate::{Error, Result};

/// Writes a JSON report atomically (an interrupted write leaves the old file whole).
fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    crate::harness::write_atomic(path, &serde_json::to_string_pretty(value).expect("JSON serialises"))
}

/// Class logits of `head` on labelled examples (averaged over demonstration sets, if
/// any), with their gold classes.
fn logits_and_gold(l: &Loaded, head: &Head, method: Method, examples: &[Example], demos: &Demos) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
    let logits = train::predict_examples(&l.model, &l.tok, &l.prompt, method, head, examples, demos, 64)?;
    Ok((logits, gold_labels(examples)))
}

/// Accuracy of `head` on labelled examples.
pub fn evaluate(l: &Loaded, head: &Head, method: Method, examples: &[Example], demos: &Demos) -> Result<f64> {
    let (logits, gold) = logits_and_gold(l, head, method, examples, demos)?;
    Ok(accuracy(&logits, &gold))
}

fn labels_of(l: &Loaded) -> Vec<String> {
    l.prompt.verbalizer.labels().to_vec()
}

/// Whether `a` and `b` are one folder (both exist and resolve to the same place).
fn same_folder(a: &Path, b: &Path) -> bool {
    matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// Checks, before any long work, that `out` (the `flag`) may take a command's output of
/// the kind `marker` marks: new, empty, or such an earlier output, and not the model the
/// command reads or a folder holding it (which it would replace).
pub(super) fn check_out(out: &Path, flag: &str, model: &Path, marker: &str) -> Result<()> {
    if same_folder(out, model) {
        return Err(Error::InvalidArgument(format!(
            "{flag} {} is the model this command reads (--model): writing there would replace it; give another folder",
            out.display()
        )));
    }
    // A model inside the output's folder (`--model out/base --out out`) goes with it.
    if crate::checkpoint::is_within(model, out) {
        return Err(Error::InvalidArgument(format!(
            "{flag} {} holds the model this command reads (--model {}): the output replaces that folder; give a folder outside the model's",
            out.display(),
            model.display()
        )));
    }
    // A task's versions (`<task>/models/v<N>`) each name one model, once: an output there
    // would replace a version, or bring back a deleted one's name, with another model.
    let resolved = crate::task::resolved(out).unwrap_or_else(|_| crate::absolute(out));
    if let Some(version) = resolved.ancestors().find(|a| {
        let models = a.parent().filter(|m| m.file_name().is_some_and(|n| n == "models"));
        a.file_name().and_then(|n| n.to_str()).is_some_and(|n| crate::task::version_digits(n).is_some())
            && models.and_then(Path::parent).is_some_and(|t| t.join(crate::task::TASK_FILE).is_file())
    }) {
        return Err(Error::InvalidArgument(format!(
            "{flag} {} is a task's version folder or inside one ({}): versions are made by training the task; give a folder outside it",
            out.display(),
            version.display()
        )));
    }
    crate::checkpoint::check_dest(out, marker).map_err(|e| match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{flag}: {m}")),
        other => other,
    })
}

/// The labelled examples of `file`, checked against the task's labels and template: a
/// file for a one-sentence template must not hold second sentences (they would be
/// ignored), as the predictor refuses them.
/// `flag` is the option that named the file (`--train`), for the messages.
pub(super) fn read_labelled(l: &Loaded, file: &Path, flag: &str) -> Result<Vec<Example>> {
    read_for(&l.prompt.template, &labels_of(l), file, flag)
}

/// The labelled examples of `file` (named by `flag`) with `labels`, checked against
/// `template` as [`read_labelled`] says.
pub(super) fn read_for(template: &Template, labels: &[String], file: &Path, flag: &str) -> Result<Vec<Example>> {
    if file.is_dir() {
        return Err(Error::InvalidArgument(format!("{flag} {}: this is a folder; give a .tsv or .csv file", file.display())));
    }
    let examples = read_examples(file, labels).map_err(|e| match e {
        // A file that is not there is a wrong argument, named by its flag.
        Error::Io { path, source } if path == file && source.kind() == std::io::ErrorKind::NotFound => {
            Error::InvalidArgument(format!("{flag} {}: no such file", file.display()))
        }
        other => other,
    })?;
    // An empty file would score nothing (accuracy null) or select nothing, and an empty
    // dev set fails --calibrate only once training is done.
    if examples.is_empty() {
        return Err(Error::InvalidArgument(format!("{flag} {} holds no examples (a header row only?)", file.display())));
    }
    if template.num_sentences() == 1 && examples.iter().any(|e| e.text_b.is_some()) {
        return Err(Error::InvalidArgument(format!(
            "{} has a second sentence column, and the template {:?} reads one sentence: it would be ignored",
            file.display(),
            template.source()
        )));
    }
    if template.num_sentences() == 2 && examples.iter().any(|e| e.text_b.is_none()) {
        return Err(Error::InvalidArgument(format!(
            "{} has one sentence a row, and the template {:?} reads two: give a file with both sentence columns \
             (sentence1 and sentence2) or a one-sentence template",
            file.display(),
            template.source()
        )));
    }
    Ok(examples)
}

// ---------------------------------------------------------------------------- adapt

#[derive(Debug, Args)]
pub struct AdaptArgs {
    /// HF model directory to start from.
    #[arg(long)]
    pub model: PathBuf,
    /// Unlabeled text: .tsv with a header and a sentence column, .csv (LM-BFF's
    /// `label,sentence`, or with a header row naming a text column), any other file a
    /// text per line; repeatable.
    #[arg(long, required = true, num_args = 1..)]
    pub texts: Vec<PathBuf>,
    /// Drop every text that also occurs in these files (test sets; read as --texts).
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<PathBuf>,
    /// Where to write the adapted HF model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Masked-LM training steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    pub seq_len: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// head, all, or topN (head + top N layers).
    #[arg(long, default_value = "all")]
    pub trainable: String,
    /// Seed of the masking and the batches.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Report zero-shot accuracy on this labelled file before and after.
    #[arg(long)]
    pub zero_shot_test: Option<PathBuf>,
    /// Save the run's state here every --save-every steps; running the same command
    /// again resumes from it. Removed when the run completes. [default: <out>.state]
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Steps between state saves (0: never save, never resume).
    #[arg(long, default_value_t = 100)]
    pub save_every: usize,
    #[command(flatten)]
    pub task: TaskArgs,
}

/// Reads texts, drops the excluded ones and duplicates (compared without case and
/// surrounding space): the texts kept, and how many texts (counting repeats) were
/// dropped for being excluded. A text is excluded when it is an excluded text written
/// otherwise (compared on its letters and digits alone: SST-2 writes MR's "it's" as
/// "it 's"), or holds one of at least 25 letters and digits (a test sentence inside a
/// longer snippet).
pub fn corpus(files: &[PathBuf], exclude: &[PathBuf]) -> Result<(Vec<String>, usize)> {
    let letters = |t: &str| -> String { t.chars().flat_map(char::to_lowercase).filter(|c| c.is_alphanumeric()).collect() };
    let mut banned = std::collections::HashSet::new();
    for f in exclude {
        banned.extend(read_texts(f)?.iter().map(|t| letters(t)).filter(|k| !k.is_empty()));
    }
    let inside: Vec<&String> = banned.iter().filter(|k| k.chars().count() >= 25).collect();
    let mut seen = std::collections::HashSet::new();
    let (mut out, mut excluded) = (Vec::new(), 0);
    for f in files {
        for t in read_texts(f)? {
            let key = t.trim().to_lowercase();
            let bare = letters(&t);
            if banned.contains(&bare) || inside.iter().any(|k| bare.contains(k.as_str())) {
                excluded += 1;
            } else if seen.insert(key) {
                out.push(t);
            }
        }
    }
    Ok((out, excluded))
}

pub fn adapt(a: AdaptArgs) -> Result<()> {
    check_out(&a.out, "--out", &a.model, crate::checkpoint::ADAPTATION_FILE)?;
    let state = a.state.clone().unwrap_or_else(|| train::state_dir_beside(&a.out));
    if a.save_every > 0 {
        // The state folder is replaced as the run goes and removed at its end: it must
        // be a folder of its own (new, empty, or an earlier run's state), never the
        // output, the model or a user's folder.
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let (s, o) = (absolute(&state), absolute(&a.out));
        if same_folder(&state, &a.out) || s.starts_with(&o) || o.starts_with(&s) {
            return Err(Error::InvalidArgument(format!(
                "--state {} and --out {} are one folder or one holds the other: give the state a folder of its own",
                state.display(),
                a.out.display()
            )));
        }
        check_out(&state, "--state", &a.model, train::STATE_JSON)?;
    }
    // The texts before the model: an --exclude that leaves none is named at once.
    let (texts, excluded) = corpus(&a.texts, &a.exclude)?;
    if !a.exclude.is_empty() {
        eprintln!("--exclude: {excluded} texts dropped, found in {} file(s)", a.exclude.len());
    }
    if texts.is_empty() {
        return Err(Error::InvalidArgument(format!("--texts: no text left to adapt on ({excluded} excluded by --exclude)")));
    }
    let l = a.task.load(&a.model, a.seed)?;
    l.note_new_head();
    let params = AdaptParams {
        steps: a.steps,
        batch_size: a.batch_size,
        max_len: a.seq_len,
        lr: a.lr,
        trainable: a.trainable.parse::<Trainable>()?,
        seed: a.seed,
        ..AdaptParams::default()
    };
    // Before the zero-shot evaluation, which may take a while.
    params.check().map_err(|e| match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{m} (--steps, --batch-size, --seq-len, --lr)")),
        other => other,
    })?;
    params.trainable.check(l.model.config.num_hidden_layers as usize)?;
    let test = match &a.zero_shot_test {
        Some(f) => Some(read_labelled(&l, f, "--zero-shot-test")?),
        None => None,
    };
    let head = Head::for_prompt(&l.model, &l.prompt)?;
    let before = test.as_ref().map(|t| evaluate(&l, &head, Method::Prompt, t, &Demos::None)).transpose()?;
    // Sequences are cut to the model's positions (`train::adapt`).
    let seq_len = a.seq_len.min(l.model.config.max_input_len() as usize);
    eprintln!("adapting {} on {} texts: {} steps x {} sequences of {seq_len} tokens", a.model.display(), texts.len(), a.steps, a.batch_size);
    let resume = (a.save_every > 0).then_some(Resume { dir: &state, every: a.save_every });
    if resume.is_some() && state.join(train::STATE_JSON).is_file() {
        eprintln!("resuming from {}", state.display());
    }
    let mut bar = Bar::new("adapt");
    let report = train::adapt(&l.model, &l.tok, &texts, &params, resume, &mut |p| bar.update(p))?;
    bar.finish();
    let after = test.as_ref().map(|t| evaluate(&l, &head, Method::Prompt, t, &Demos::None)).transpose()?;
    let summary = json!({
        "source_model": a.model, "report": report,
        "zero_shot": {"test": a.zero_shot_test, "template": l.prompt.template.source(),
                      "label_words": l.prompt.verbalizer.words(), "before": before, "after": after},
    });
    write_dir_atomic(&a.out, crate::checkpoint::ADAPTATION_FILE, |dir| {
        l.model.save_pretrained(dir)?;
        write_json(&dir.join(crate::checkpoint::ADAPTATION_FILE), &summary)
    })?;
    // Only a state this run (or the one it resumed) saved: a folder without its marker
    // was never written by it.
    if resume.is_some() && state.join(train::STATE_JSON).is_file() {
        std::fs::remove_dir_all(&state).map_err(|e| Error::io(&state, e))?;
    }
    outln!(
        "adapted in {:.0} s; final MLM loss {:.3}; zero-shot before {} after {}; saved to {}",
        report.seconds,
        report.loss_curve.last().map(|c| c.1).unwrap_or(f64::NAN),
        before.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or("-".into()),
        after.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or("-".into()),
        a.out.display()
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------- train

#[derive(Debug, Args, Clone)]
pub struct FitArgs {
    /// Training steps of the prompt and plain methods [default: 1000] (sentence-embedding
    /// follows SetFit's schedule: see --embedding-max-steps).
    #[arg(long, value_parser = super::at_least_one)]
    pub steps: Option<usize>,
    /// Batch size of the prompt and plain methods [default: 8].
    #[arg(long, value_parser = super::at_least_one)]
    pub batch_size: Option<usize>,
    /// Learning rate [default: 1e-5; sentence-embedding: 2e-5].
    #[arg(long, value_parser = super::positive_number)]
    pub lr: Option<f64>,
    /// Dev evaluation interval of the prompt and plain methods (steps) [default: 100].
    #[arg(long)]
    pub eval_every: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Append demonstrations (one labelled example per class) to every input.
    #[arg(long)]
    pub demos: bool,
    /// Demonstration sets for evaluation and prediction (logits averaged): fixed ones, or
    /// each input's own with --demo-filter [default: 1].
    #[arg(long, requires = "demos", value_parser = super::demo_set_count)]
    pub demo_sets: Option<usize>,
    /// Similarity-filtered demonstrations (LM-BFF's demo_filter): this sentence encoder
    /// (an HF model directory, such as the default MiniLM) ranks each class's examples by
    /// similarity to the input, and demonstrations come from the most similar half.
    #[arg(long, value_name = "ENCODER_DIR", requires = "demos")]
    pub demo_filter: Option<PathBuf>,
}

impl FitArgs {
    pub fn params(&self) -> TrainParams {
        TrainParams {
            steps: self.steps.unwrap_or(1000),
            batch_size: self.batch_size.unwrap_or(8),
            lr: self.lr.unwrap_or(1e-5),
            eval_every: self.eval_every.unwrap_or(100),
            seed: self.seed,
            demonstrations: self.demos,
            demo_sets: self.demo_sets.unwrap_or(1),
            // Absolute: the saved model names the encoder, and commands that read it may
            // run from another folder.
            demo_filter: self.demo_filter.as_deref().map(crate::absolute),
            ..TrainParams::default()
        }
    }
}

/// The fine-tuning methods (`compare` compares these two); `accepted` lists what the
/// command asking accepts, for the message.
fn parse_method(s: &str, accepted: &str) -> Result<Method> {
    match s {
        "prompt" => Ok(Method::Prompt),
        "plain" | "cls" => Ok(Method::Cls),
        _ => Err(Error::InvalidArgument(format!("method {s:?}: expected {accepted}"))),
    }
}

const TRAIN_METHODS: &str = "auto, prompt, plain, sentence-embedding or zero-shot-words";

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// HF model directory (or a saved checkpoint) to start from.
    #[arg(long)]
    pub model: PathBuf,
    /// Training examples (every method but zero-shot-words, which trains nothing): a .tsv
    /// with a header naming `sentence` (or `text`, or `sentence1`/`sentence2` for pairs)
    /// and `label` columns, or a .csv (LM-BFF's headerless `label,sentence`, or with such
    /// a header). Dev and test files are read the same way.
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Dev examples (every method but zero-shot-words, for which they are optional: scored,
    /// and what --calibrate fits on).
    #[arg(long)]
    pub dev: Option<PathBuf>,
    /// Test examples, scored after training (test_acc).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// auto (the library's choice, docs/methods.md: prompt with --demos; sentence-embedding
    /// for a checkpoint without a masked-LM head; otherwise prompt if its zero-shot answers
    /// on the --train examples beat chance, else sentence-embedding), prompt (LM-BFF),
    /// plain ([CLS] head), sentence-embedding (SetFit-style; uses --lr and --seed,
    /// SetFit's schedule otherwise) or zero-shot-words (no training and no example: each
    /// input takes the class whose label word its 3 closest tokens come nearest, read by
    /// the model as it is; saved as a sentence-embedding model).
    #[arg(long, default_value = "auto")]
    pub method: String,
    /// Save the fine-tuned prompt or sentence-embedding model (HF directory + lmbff.json) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Why the method was chosen (the notes' `method_reason`), set as the run starts.
    #[arg(skip)]
    pub method_reason: String,
    /// Whether `--method auto` chose the method (its refusals then say so).
    #[arg(skip)]
    pub chosen_by_auto: bool,
    /// Fit temperature scaling on dev (minimum NLL) and save it with the model: its
    /// exports divide the class logits by it, so probabilities match accuracy. Prints the
    /// dev (and test) expected calibration error before and after.
    #[arg(long)]
    pub calibrate: bool,
    /// sentence-embedding: leave out the label anchors (the template's text with each
    /// label word, "It was great.") and run SetFit's method as published.
    #[arg(long)]
    pub no_anchors: bool,
    /// sentence-embedding and zero-shot-words: a further template whose texts are label
    /// anchors too ("{text} A truly {mask} movie."); repeat for several.
    #[arg(long = "anchor-template", value_name = "TEMPLATE")]
    pub anchor_templates: Vec<String>,
    /// sentence-embedding: at most this many contrastive steps (default 2000; 0:
    /// SetFit's whole schedule, 2.5 steps per example and anchor copy, however many).
    #[arg(long)]
    pub embedding_max_steps: Option<usize>,
    #[command(flatten)]
    pub fit: FitArgs,
    #[command(flatten)]
    pub task: TaskArgs,
}

pub fn train(mut a: TrainArgs) -> Result<()> {
    if a.out.is_none() && !["plain", "cls", "zero-shot-words"].contains(&a.method.as_str()) {
        eprintln!("note: no --out: the model is scored, and not saved");
    }
    // As the library words a method given (the notes read the same whichever made them).
    a.method_reason = "asked for".into();
    if a.method == "zero-shot-words" {
        return train_zero_shot_words(a);
    }
    if !["sentence-embedding", "auto"].contains(&a.method.as_str()) {
        parse_method(&a.method, TRAIN_METHODS)?;
    }
    let (Some(train_file), Some(dev_file)) = (a.train.clone(), a.dev.clone()) else {
        return Err(Error::InvalidArgument(format!("--method {} trains on --train and keeps the best on --dev: give both", a.method)));
    };
    // The automatic choice loads the model and reads the examples; the method chosen
    // goes on with them, and its own checks of the flags follow.
    let mut loaded = None;
    if a.method == "auto" {
        let (method, reason, l, sets) = choose_auto(&a, &train_file, &dev_file)?;
        eprintln!("method {method} (--method auto): {reason}");
        a.method = method.into();
        a.method_reason = reason;
        a.chosen_by_auto = true;
        loaded = Some((l, sets));
    }
    if a.method == "sentence-embedding" {
        return train_embedding(a, &train_file, &dev_file, loaded);
    }
    let method = parse_method(&a.method, TRAIN_METHODS)?;
    if !a.anchor_templates.is_empty() {
        return Err(Error::InvalidArgument("--anchor-template is for --method sentence-embedding or zero-shot-words (label anchors)".into()));
    }
    if a.no_anchors {
        return Err(Error::InvalidArgument("--no-anchors is for --method sentence-embedding (its label anchors)".into()));
    }
    if a.embedding_max_steps.is_some() {
        return Err(Error::InvalidArgument("--embedding-max-steps is for --method sentence-embedding (its contrastive steps)".into()));
    }
    if a.out.is_some() && method == Method::Cls {
        return Err(Error::InvalidArgument(
            "--out saves prompt and sentence-embedding models; plain fine-tuning is a baseline and is not saved: leave --out out".into(),
        ));
    }
    // Every file is read before training: a typo shows now, not after it.
    let (l, (tr, dev, test_ex)) = load_and_read(&a, &train_file, &dev_file, loaded)?;
    if method == Method::Prompt {
        l.note_new_head();
    }
    let mut bar = Bar::new(method.name());
    let (report, head) = train::finetune(&l.model, &l.tok, &l.prompt, method, &tr, &dev, &a.fit.params(), &mut |p| bar.update(p))?;
    bar.finish();
    let test = test_ex.as_ref().map(|ex| evaluate(&l, &head, method, ex, &report.demos)).transpose()?;
    let logits_of = |ex: &[Example]| train::predict_examples(&l.model, &l.tok, &l.prompt, method, &head, ex, &report.demos, 32);
    let calibration = maybe_calibrate(a.calibrate, logits_of, &dev, test_ex.as_deref())?;
    // Saved before anything is printed: a failed write to stdout must not lose the model.
    if let Some(out) = &a.out {
        let notes = json!({"method": method.name(), "method_reason": a.method_reason, "steps": report.steps, "lr": report.lr, "seed": report.seed, "best_step": report.best_step,
                           "best_dev_acc": report.best_dev_acc, "test_acc": test, "source_model": a.model,
                           "demonstrations": report.demonstrations, "calibration": calibration});
        let mut m = Manifest::for_prompt(&l.prompt, &[], notes).with_rendering(&l.prompt, &l.tok);
        report.demos.record(&mut m);
        save_trained(&l, out, m, calibration.as_ref())?;
    }
    outln!("{}", json!({"method": method.name(), "report": report, "test_acc": test, "calibration": calibration}))
}

/// The train, dev and (if given) test examples.
type Sets = (Vec<Example>, Vec<Example>, Option<Vec<Example>>);

/// `train --method auto`: the library's choice ([`crate::task::choose_method`]) on the
/// model and the --train examples, with the reason in words, and the model and every
/// input file as read (a missing one is named before the choice).
fn choose_auto(a: &TrainArgs, train_file: &Path, dev_file: &Path) -> Result<(&'static str, String, Loaded, Sets)> {
    let (l, sets) = load_and_read(a, train_file, dev_file, None)?;
    let p = crate::task::RunParams { demonstrations: a.fit.demos, ..crate::task::RunParams::default() };
    let (method, reason) = crate::task::choose_method(&l.model, &l.tok, &l.prompt, &sets.0, false, &p, &mut |_| true)?;
    Ok((method.name(), reason, l, sets))
}

/// The model and the input files: as the automatic choice left them, or (`--out`
/// checked first) loaded and read now.
fn load_and_read(a: &TrainArgs, train_file: &Path, dev_file: &Path, loaded: Option<(Loaded, Sets)>) -> Result<(Loaded, Sets)> {
    match loaded {
        Some(both) => Ok(both),
        None => {
            check_train_out(a)?;
            let l = a.task.load(&a.model, a.fit.seed)?;
            let sets = read_sets(&l, train_file, dev_file, a.test.as_deref())?;
            Ok((l, sets))
        }
    }
}

/// A sentence-embedding model (`m`, read from `model`) is read by its classifier with the
/// classes, template and length it was trained with: a flag that sets one of them is
/// refused by name (`what` the command does with the model: "scored", "exported").
pub(super) fn refuse_prompt_settings(m: &Manifest, task: &TaskArgs, model: &Path, what: &str) -> Result<()> {
    let given = [
        ("--labels", task.labels.is_some()),
        ("--template", task.template.is_some()),
        ("--max-len", task.max_len.is_some()),
        ("--first-sent-limit", task.first_sent_limit.is_some()),
        ("--other-sent-limit", task.other_sent_limit.is_some()),
    ];
    match given.iter().find(|(_, set)| *set).filter(|_| m.classifier.is_some()) {
        Some((flag, _)) => Err(Error::InvalidArgument(format!(
            "{} is a sentence-embedding model, {what} by its classifier with the classes ({:?}), template and length it \
             was trained with: {flag} does not apply",
            model.display(),
            m.labels
        ))),
        None => Ok(()),
    }
}

/// `--out` of `train`, checked before training ([`check_out`]): nor may it be the
/// `--demo-filter` encoder, which the saved model reads whenever it predicts.
fn check_train_out(a: &TrainArgs) -> Result<()> {
    let Some(out) = &a.out else { return Ok(()) };
    if let Some(encoder) = a.fit.demo_filter.as_deref().filter(|e| same_folder(out, e)) {
        return Err(Error::InvalidArgument(format!(
            "--out {} is the --demo-filter encoder ({}): the model saved there would replace the encoder it ranks demonstrations with; give another folder",
            out.display(),
            encoder.display()
        )));
    }
    check_out(out, "--out", &a.model, crate::checkpoint::MANIFEST_FILE)
}

/// The train, dev and (if given) test examples ([`read_labelled`]); a class that has no
/// training example is named in a warning (the model can hardly learn it).
fn read_sets(l: &Loaded, train_file: &Path, dev_file: &Path, test_file: Option<&Path>) -> Result<Sets> {
    let sets = (read_labelled(l, train_file, "--train")?, read_labelled(l, dev_file, "--dev")?, test_file.map(|f| read_labelled(l, f, "--test")).transpose()?);
    let names = labels_of(l);
    let gold = gold_labels(&sets.0);
    let missing: Vec<&String> = names.iter().enumerate().filter(|(c, _)| !gold.contains(c)).map(|(_, n)| n).collect();
    if !missing.is_empty() {
        eprintln!("warning: {} has no training example of class {missing:?}", train_file.display());
    }
    Ok(sets)
}

/// `train --method sentence-embedding`: contrastive fine-tuning and the logistic head.
fn train_embedding(a: TrainArgs, train_file: &Path, dev_file: &Path, loaded: Option<(Loaded, Sets)>) -> Result<()> {
    if a.fit.demos {
        return Err(Error::InvalidArgument("--demos needs the prompt method, not sentence-embedding".into()));
    }
    // Settings this method does not read are refused, not silently ignored.
    let unread = [("--steps", a.fit.steps.is_some()), ("--batch-size", a.fit.batch_size.is_some()), ("--eval-every", a.fit.eval_every.is_some())];
    if let Some((flag, _)) = unread.iter().find(|(_, given)| *given) {
        let auto = if a.chosen_by_auto { " (--method auto chose it for this model: give --method prompt or plain to train with these settings)" } else { "" };
        return Err(Error::InvalidArgument(format!(
            "{flag} sets the prompt and plain methods' training; sentence-embedding follows SetFit's schedule (cap it with --embedding-max-steps){auto}"
        )));
    }
    if a.no_anchors && !a.anchor_templates.is_empty() {
        return Err(Error::InvalidArgument("--anchor-template adds label anchors, and --no-anchors turns them off: give one or the other".into()));
    }
    let (l, (tr, dev, test_ex)) = load_and_read(&a, train_file, dev_file, loaded)?;
    // A template that cannot give anchors is refused before any training.
    let anchor_templates = l.prompt.parse_anchor_templates(&a.anchor_templates)?;
    // Its own default learning rate (2e-5, SetFit's), not the prompt method's 1e-5.
    let lr = a.fit.lr.unwrap_or(train::EmbedParams::default().lr);
    let ep = train::EmbedParams { lr, seed: a.fit.seed, anchor_templates, max_steps: a.embedding_max_steps.unwrap_or(crate::task::DEFAULT_EMBEDDING_MAX_STEPS), ..train::EmbedParams::default() }
        .with_anchors(!a.no_anchors);
    let mut bar = Bar::new("sentence-embedding");
    let (head, report) = train::train_embedding(&l.model, &l.tok, &l.prompt, &tr, &ep, &mut |p| bar.update(p))?;
    bar.finish();
    let logits_of = |ex: &[Example]| train::embedding_logits(&l.model, &l.tok, &l.prompt, &head, ex, 32);
    let (dev_acc, test, calibration) = score_sets(a.calibrate, logits_of, Some(&dev), test_ex.as_deref())?;
    let dev_acc = dev_acc.unwrap_or_default();
    // Saved before anything is printed: a failed write to stdout must not lose the model.
    if let Some(out) = &a.out {
        let notes = json!({"method": "sentence-embedding", "method_reason": a.method_reason, "steps": report.steps, "steps_capped_from": report.capped_from, "pairs": report.pairs, "lr": ep.lr, "seed": ep.seed,
                           "dev_acc": dev_acc, "test_acc": test, "source_model": a.model, "calibration": calibration,
                           "label_anchors": report.anchors});
        save_trained(&l, out, Manifest::for_embedding(&l.prompt, head, None, notes).with_rendering(&l.prompt, &l.tok), calibration.as_ref())?;
    }
    outln!("{}", json!({"method": "sentence-embedding", "report": report, "dev_acc": dev_acc, "test_acc": test, "calibration": calibration}))
}

/// Accuracy on dev and on test (those given) and, with `calibrate`, the temperature
/// fitted on dev ([`calibrate`]), each set's logits computed once.
#[allow(clippy::type_complexity)]
fn score_sets<'a>(
    calibrate_on: bool,
    logits_of: impl Fn(&[Example]) -> Result<Vec<Vec<f32>>>,
    dev: Option<&'a [Example]>,
    test: Option<&'a [Example]>,
) -> Result<(Option<f64>, Option<f64>, Option<CalibrationReport>)> {
    let scored = |ex: Option<&'a [Example]>| ex.map(|ex| logits_of(ex).map(|lg| (lg, ex))).transpose();
    let (dev, test) = (scored(dev)?, scored(test)?);
    let acc = |s: &Option<(Vec<Vec<f32>>, &[Example])>| s.as_ref().map(|(lg, ex)| accuracy(lg, &gold_labels(ex)));
    let (dev_acc, test_acc) = (acc(&dev), acc(&test));
    let calibration = match calibrate_on {
        true => {
            let (lg, ex) = dev.as_ref().map_or((&[][..], &[][..]), |(lg, ex)| (lg.as_slice(), *ex));
            Some(calibrate(lg, ex, test.as_ref().map(|(lg, ex)| (lg.as_slice(), *ex)))?)
        }
        false => None,
    };
    Ok((dev_acc, test_acc, calibration))
}

/// `train --method zero-shot-words`: the word anchors' zero-shot head on the model as it
/// is (`train::word_anchor_zero_shot`), scored on dev and test when given, calibrated on
/// dev with --calibrate, and saved as a sentence-embedding model.
fn train_zero_shot_words(a: TrainArgs) -> Result<()> {
    let refused = if a.train.is_some() {
        Some("--train: it trains nothing, so the examples would go unused")
    } else if a.fit.demos {
        Some("--demos: demonstrations belong to the prompt method")
    } else if a.no_anchors {
        Some("--no-anchors: its classifier is the label words read in their anchor texts")
    } else if a.embedding_max_steps.is_some() {
        Some("--embedding-max-steps: it has no contrastive steps")
    } else if a.fit.lr.is_some() || a.fit.steps.is_some() || a.fit.batch_size.is_some() || a.fit.eval_every.is_some() {
        Some("--lr, --steps, --batch-size or --eval-every: it trains nothing")
    } else if a.calibrate && a.dev.is_none() {
        Some("--calibrate without --dev: the temperature is fitted on dev")
    } else {
        None
    };
    if let Some(why) = refused {
        return Err(Error::InvalidArgument(format!("--method zero-shot-words takes no {why}")));
    }
    check_train_out(&a)?;
    let l = a.task.load(&a.model, a.fit.seed)?;
    let anchor_templates = l.prompt.parse_anchor_templates(&a.anchor_templates)?;
    let head = train::word_anchor_zero_shot(&l.model, &l.tok, &l.prompt, &anchor_templates)?;
    let read = |f: &Option<PathBuf>, flag: &str| f.as_ref().map(|f| read_labelled(&l, f, flag)).transpose();
    let (dev, test_ex) = (read(&a.dev, "--dev")?, read(&a.test, "--test")?);
    let logits_of = |ex: &[Example]| train::embedding_logits(&l.model, &l.tok, &l.prompt, &head, ex, 32);
    let (dev_acc, test, calibration) = score_sets(a.calibrate, logits_of, dev.as_deref(), test_ex.as_deref())?;
    let anchors: Vec<String> = l.prompt.anchor_texts_with(&anchor_templates)?.unwrap_or_default().into_iter().map(|(_, t)| t).collect();
    if let Some(out) = &a.out {
        let notes = json!({"method": "zero-shot-words", "method_reason": a.method_reason, "dev_acc": dev_acc, "test_acc": test, "source_model": a.model,
                           "calibration": calibration, "label_anchors": anchors});
        save_trained(&l, out, Manifest::for_embedding(&l.prompt, head, None, notes).with_rendering(&l.prompt, &l.tok), calibration.as_ref())?;
    }
    outln!("{}", json!({"method": "zero-shot-words", "dev_acc": dev_acc, "test_acc": test, "calibration": calibration, "label_anchors": anchors}))
}

/// Temperature scaling fitted on dev, with the expected calibration error (10 bins)
/// before and after, on dev and on the test set when there is one. `applied`: false for
/// a temperature the dev set does not bound ([`crate::metrics::temperature_unsupported`]),
/// which a saved model does not take.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CalibrationReport {
    pub temperature: f64,
    pub applied: bool,
    pub dev_ece_before: f64,
    pub dev_ece_after: f64,
    pub test_ece_before: Option<f64>,
    pub test_ece_after: Option<f64>,
}

/// Fits the calibration when `on` (see [`calibrate`]), from the model's logits function.
fn maybe_calibrate(
    on: bool,
    logits_of: impl Fn(&[Example]) -> Result<Vec<Vec<f32>>>,
    dev: &[Example],
    test: Option<&[Example]>,
) -> Result<Option<CalibrationReport>> {
    if !on {
        return Ok(None);
    }
    Ok(score_sets(true, logits_of, Some(dev), test)?.2)
}

/// Saves a trained model and its manifest (atomically), with the fitted temperature.
fn save_trained(l: &Loaded, out: &Path, mut manifest: Manifest, calibration: Option<&CalibrationReport>) -> Result<()> {
    manifest.temperature = calibration.filter(|c| c.applied).map(|c| c.temperature);
    write_dir_atomic(out, crate::checkpoint::MANIFEST_FILE, |dir| {
        l.model.save_pretrained(dir)?;
        manifest.write_into(dir)
    })?;
    eprintln!("saved to {}", out.display());
    Ok(())
}

fn calibrate(dev_logits: &[Vec<f32>], dev: &[Example], test: Option<(&[Vec<f32>], &[Example])>) -> Result<CalibrationReport> {
    use crate::metrics::fit_calibration;
    if dev.is_empty() {
        return Err(Error::InvalidArgument("--calibrate fits on the dev set, which is empty".into()));
    }
    let fit = fit_calibration(dev_logits, &gold_labels(dev));
    let (t, applied) = (fit.temperature, fit.applied);
    if !applied {
        eprintln!("warning: calibration temperature {t:.3}: {}", crate::task::TEMPERATURE_AT_BOUND);
    }
    // After: the saved model's, which keeps its own probabilities where the fit is not
    // applied.
    let both = |lg: &[Vec<f32>], g: &[usize]| fit.ece_before_after(lg, g, 10);
    let (dev_before, dev_after) = both(dev_logits, &gold_labels(dev));
    let test = test.map(|(lg, ex)| both(lg, &gold_labels(ex)));
    Ok(CalibrationReport {
        temperature: t,
        applied,
        dev_ece_before: dev_before,
        dev_ece_after: dev_after,
        test_ece_before: test.map(|x| x.0),
        test_ece_after: test.map(|x| x.1),
    })
}

// ---------------------------------------------------------------------------- eval

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A model saved by `train --out` (or an HF masked LM, read with --template and --labels).
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled examples to score (a .tsv with a header or a .csv, as train reads them).
    #[arg(long)]
    pub test: PathBuf,
    #[command(flatten)]
    pub task: TaskArgs,
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let manifest = match a.model.join(crate::checkpoint::MANIFEST_FILE).exists() {
        true => Some(crate::checkpoint::Manifest::read(&a.model)?),
        false => None,
    };
    if let Some(m) = &manifest {
        let kind = if m.multi_label.is_some() {
            Some("multi-label")
        } else if m.regression.is_some() {
            Some("regression")
        } else {
            None
        };
        if let Some(kind) = kind {
            return Err(Error::InvalidArgument(format!(
                "{} is a {kind} model, and eval scores single-label classifiers: export it and run predict",
                a.model.display()
            )));
        }
        refuse_prompt_settings(m, &a.task, &a.model, "scored")?;
    }
    let l = a.task.load(&a.model, 0)?;
    let ex = read_labelled(&l, &a.test, "--test")?;
    // A sentence-embedding model is scored by its own classifier, as training and the
    // predictor score it; any other by the prompt's masked-LM head.
    let (logits, demos) = match manifest.as_ref().and_then(|m| m.classifier.clone()) {
        Some(head) => (train::embedding_logits(&l.model, &l.tok, &l.prompt, &head, &ex, 32)?, Demos::None),
        None => {
            l.note_new_head();
            let demos = match &manifest {
                Some(m) => Demos::of_checkpoint(m, &l.prompt, l.model.device())?,
                None => Demos::None,
            };
            (logits_and_gold(&l, &Head::for_prompt(&l.model, &l.prompt)?, Method::Prompt, &ex, &demos)?.0, demos)
        }
    };
    let gold = gold_labels(&ex);
    let predicted = crate::metrics::argmax_rows(&logits);
    let share: Vec<f64> = (0..l.prompt.verbalizer.num_labels())
        .map(|c| predicted.iter().filter(|&&p| p == c).count() as f64 / predicted.len().max(1) as f64)
        .collect();
    outln!(
        "{}",
        json!({"model": a.model, "test": a.test, "n": ex.len(), "method": manifest.as_ref().map_or("prompt", |m| m.method.as_str()), "template": l.prompt.template.source(),
               "demo_sets": demos.sets_per_input(), "demo_filter": demos.filter_dir(), "acc": accuracy(&logits, &gold), "acc_centered": train::centered_accuracy(&logits, &gold),
               "predicted_share": share})
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------- compare

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// HF model directory the prompt method fine-tunes (and plain, without --plain-model).
    #[arg(long)]
    pub model: PathBuf,
    /// Model for plain fine-tuning, if not --model (e.g. the encoder before adaptation).
    #[arg(long)]
    pub plain_model: Option<PathBuf>,
    /// Folder holding 16-<seed>/{train,dev,test}.tsv or .csv (LM-BFF's k-shot layout for
    /// one task).
    #[arg(long)]
    pub splits: PathBuf,
    /// Seeds of the splits to run (16-<seed> folders).
    #[arg(long, value_delimiter = ',', default_value = "13,42")]
    pub seeds: Vec<u64>,
    /// Learning rates of the grid (both methods).
    #[arg(long, value_delimiter = ',', default_value = "1e-5,2e-5,5e-5")]
    pub lrs: Vec<f64>,
    /// Step budgets of the grid (both methods).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub steps: Vec<usize>,
    /// Examples per step.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Dev evaluation every N steps, keeping the best weights.
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Methods to run: plain, prompt (the harness compares the others).
    #[arg(long, value_delimiter = ',', default_value = "plain,prompt")]
    pub methods: Vec<String>,
    /// Write the full JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub task: TaskArgs,
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let methods = a.methods.iter().map(|m| parse_method(m, "prompt or plain (compare fine-tunes; the harness runs every method)")).collect::<Result<Vec<_>>>()?;
    // The grid runs for hours: what would stop it half-way is checked first.
    if a.lrs.iter().any(|lr| !(*lr > 0.0 && lr.is_finite())) || a.steps.contains(&0) || a.batch_size == 0 || a.eval_every == 0 {
        return Err(Error::InvalidArgument(format!(
            "--lrs {:?}, --steps {:?}, --batch-size {} and --eval-every {} must all be positive",
            a.lrs, a.steps, a.batch_size, a.eval_every
        )));
    }
    // A seed, method, learning rate or step count twice would be run (and counted) twice.
    super::harness::once("--seeds", &a.seeds.iter().map(u64::to_string).collect::<Vec<_>>())?;
    // By the method each name means (`cls` is `plain`).
    super::harness::once("--methods", &methods.iter().map(|m| m.name().to_string()).collect::<Vec<_>>())?;
    super::harness::once("--lrs", &a.lrs.iter().map(f64::to_string).collect::<Vec<_>>())?;
    super::harness::once("--steps", &a.steps.iter().map(usize::to_string).collect::<Vec<_>>())?;
    if let Some(r) = &a.report {
        if r.is_dir() {
            return Err(Error::InvalidArgument(format!("--report {} is a folder: give the JSON file to write", r.display())));
        }
        // A file where its folder would go, or a folder nothing can be written in
        // (read-only, /proc), fails the write after the grid: named now (a folder not
        // there yet is made by the write).
        if let Some(existing) = crate::checkpoint::existing_above(r) {
            if !existing.is_dir() {
                return Err(Error::InvalidArgument(format!("--report {}: {} is a file, not a folder", r.display(), existing.display())));
            }
            crate::checkpoint::can_make_folder_in(existing)
                .map_err(|e| Error::InvalidArgument(format!("--report {}: nothing can be written in {} ({e})", r.display(), existing.display())))?;
        }
        // An existing file is replaced only as an earlier report (a split, or any other
        // file, was overwritten with the JSON).
        if r.exists() {
            let earlier = std::fs::read(r).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if !earlier.is_some_and(|v| v.get("runs").is_some() && v.get("grid").is_some()) {
                return Err(Error::InvalidArgument(format!(
                    "--report {} exists and is not an earlier compare report: give a new file (or that report) to write",
                    r.display()
                )));
            }
        }
    }
    if let Some(m) = &a.plain_model {
        if methods.contains(&Method::Cls) && !m.join("config.json").is_file() {
            return Err(Error::InvalidArgument(format!("--plain-model {} is not a model folder (no config.json)", m.display())));
        }
    }
    // A split is `<part>.tsv` (GLUE's layout, with a header) or `<part>.csv` (LM-BFF's
    // `label,sentence`, as its sst-5, mr, cr, mpqa, subj and trec splits are).
    let split_file = |seed: u64, part: &str| -> Result<PathBuf> {
        let dir = a.splits.join(format!("16-{seed}"));
        ["tsv", "csv"].iter().map(|ext| dir.join(format!("{part}.{ext}"))).find(|f| f.is_file()).ok_or_else(|| {
            let f = dir.join(format!("{part}.tsv"));
            Error::io(&f, std::io::Error::new(std::io::ErrorKind::NotFound, format!("seed {seed}'s {part} split is not there (nor {part}.csv)")))
        })
    };
    for &seed in &a.seeds {
        for part in ["train", "dev", "test"] {
            split_file(seed, part)?;
        }
    }
    let Some(&first) = a.seeds.first() else { return Err(Error::InvalidArgument("--seeds names no seed".into())) };
    // Every seed's splits are read (and their labels and sentence columns checked against
    // the template, as train reads them: a pair file under a one-sentence template ran
    // the grid on first sentences alone) before the first run.
    let splits = {
        let l = a.task.load(&a.model, first)?;
        a.seeds
            .iter()
            .map(|seed| {
                let read = |part: &str| read_labelled(&l, &split_file(*seed, part)?, "--splits");
                Ok((read("train")?, read("dev")?, read("test")?))
            })
            .collect::<Result<Vec<_>>>()?
    };
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for (&seed, (tr, dev, test)) in a.seeds.iter().zip(&splits) {
        // Zero-shot (no training) with the prompt, for reference.
        let l = a.task.load(&a.model, seed)?;
        l.note_new_head();
        let zs = evaluate(&l, &Head::for_prompt(&l.model, &l.prompt)?, Method::Prompt, test, &Demos::None)?;
        rows.push(("zero-shot".to_string(), seed, "-".to_string(), f64::NAN, zs));
        drop(l);
        for &method in &methods {
            let mut best: Option<(f64, f64, String)> = None;
            for &steps in &a.steps {
                for &lr in &a.lrs {
                    let model = match (method, &a.plain_model) {
                        (Method::Cls, Some(m)) => m,
                        _ => &a.model,
                    };
                    let l = a.task.load(model, seed)?;
                    let p = TrainParams { steps, batch_size: a.batch_size, lr, eval_every: a.eval_every, seed, ..TrainParams::default() };
                    let mut bar = Bar::new(&format!("{} s{seed}", method.name()));
                    let (rep, head) = train::finetune(&l.model, &l.tok, &l.prompt, method, tr, dev, &p, &mut |p| bar.update(p))?;
                    bar.finish();
                    let acc = evaluate(&l, &head, method, test, &rep.demos)?;
                    let cell = format!("lr {lr:e}, {steps} steps (best at {})", rep.best_step);
                    eprintln!("{} seed {seed} {cell}: dev {:.3} test {:.3} ({:.2} steps/s)", method.name(), rep.best_dev_acc, acc, rep.steps_per_sec);
                    all.push(json!({"seed": seed, "report": rep, "test_acc": acc}));
                    if best.as_ref().is_none_or(|b| rep.best_dev_acc > b.0) {
                        best = Some((rep.best_dev_acc, acc, cell));
                    }
                }
            }
            let (dev_acc, test_acc, cell) = best.expect("the grid is not empty");
            rows.push((method.name().to_string(), seed, cell, dev_acc, test_acc));
        }
    }
    // The report is written before the table is printed: a failed write to stdout must
    // not lose it.
    if let Some(path) = &a.report {
        write_json(path, &json!({"model": a.model, "plain_model": a.plain_model, "splits": a.splits, "grid": {"lrs": a.lrs, "steps": a.steps, "batch_size": a.batch_size}, "runs": all}))?;
    }
    outln!(
        "Every method gets the same grid (lr {:?} x steps {:?}, batch {}, dev evaluation every {} steps keeping the best), \
         chosen per seed on dev accuracy; test accuracy of the chosen run.\n",
        a.lrs, a.steps, a.batch_size, a.eval_every
    )?;
    outln!("| method | seed | chosen on dev | dev acc | test acc |\n|---|---|---|---|---|")?;
    for (m, seed, cell, dev, test) in &rows {
        let dev = if dev.is_finite() { format!("{:.1}", 100.0 * dev) } else { "-".into() };
        outln!("| {m} | {seed} | {cell} | {dev} | {:.1} |", 100.0 * test)?;
    }
    let mut names: Vec<&String> = Vec::new();
    for r in &rows {
        if !names.contains(&&r.0) {
            names.push(&r.0);
        }
    }
    for name in names {
        let accs: Vec<f64> = rows.iter().filter(|r| &r.0 == name).map(|r| r.4).collect();
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        outln!("| {name} | mean | | | {:.1} |", 100.0 * mean)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------- bench

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// HF model directory whose prompt fine-tuning steps are timed.
    #[arg(long)]
    pub model: PathBuf,
    /// Inputs per step.
    #[arg(long, default_value_t = 8, value_parser = super::at_least_one)]
    pub batch_size: usize,
    /// Tokens per input (at most the model's positions).
    #[arg(long, default_value_t = 128, value_parser = super::at_least_one)]
    pub seq_len: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20, value_parser = super::at_least_one)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    #[command(flatten)]
    pub task: TaskArgs,
}

/// Times full prompt-FT steps (forward, label-word loss at the mask, backward, AdamW)
/// on random token ids of the given shape.
pub fn bench_step(a: BenchArgs) -> Result<()> {
    // Its inputs are random ids of --seq-len tokens, not rendered texts: the length
    // limits of a task would be read by nothing (they were taken and ignored).
    for (flag, given) in [("--max-len", a.task.max_len.is_some()), ("--first-sent-limit", a.task.first_sent_limit.is_some()), ("--other-sent-limit", a.task.other_sent_limit.is_some())] {
        if given {
            return Err(Error::InvalidArgument(format!("bench-step times random token ids of --seq-len tokens: {flag} does not apply (give --seq-len)")));
        }
    }
    let l = a.task.load(&a.model, 0)?;
    // Timed through the prompt head: a model without one gets a new head, as eval says.
    l.note_new_head();
    let (b, s) = (a.batch_size, a.seq_len);
    let vocab = l.model.config.vocab_size as u32;
    let low = 1000.min(vocab / 2);
    if s < 3 || b == 0 {
        return Err(Error::InvalidArgument("bench-step needs --seq-len >= 3 and --batch-size >= 1".into()));
    }
    let sp = l.tok.special();
    let items: Vec<crate::prompt::Encoded> = (0..b)
        .map(|r| {
            let mut ids: Vec<u32> = (0..s).map(|c| low + ((r * 7919 + c * 104729) as u32 % (vocab - low))).collect();
            ids[0] = sp.cls;
            ids[s - 1] = sp.sep;
            ids[s / 2] = sp.mask;
            crate::prompt::Encoded { input_ids: ids, segment_ids: vec![0; s], mask_pos: s / 2 }
        })
        .collect();
    let refs: Vec<&crate::prompt::Encoded> = items.iter().collect();
    let batch = l.model.batch(&refs, sp.pad)?;
    let head = Head::for_prompt(&l.model, &l.prompt)?;
    let target = tch::Tensor::from_slice(&(0..b as i64).map(|i| i % 2).collect::<Vec<_>>()).f_to_device(l.model.device())?;
    // The optimiser training uses, with HF's defaults (weight decay 0.01, no clipping,
    // constant rate), as the reference step in python/bench_hf_step.py.
    let mut opt = train::Optimiser::new(&l.model.vs, 1e-5, 0.01, 0, usize::MAX, 0.0)?;
    let mut run = |n: usize| -> Result<f64> {
        let t = Instant::now();
        for _ in 0..n {
            let logits = head.logits(&l.model, &batch, true)?;
            let loss = logits.f_cross_entropy_loss::<tch::Tensor>(&target, None, tch::Reduction::Mean, -100, 0.0)?;
            opt.step(&loss, 0)?;
        }
        if let tch::Device::Cuda(i) = l.model.device() {
            tch::Cuda::synchronize(i as i64);
        }
        Ok(t.elapsed().as_secs_f64())
    };
    run(a.warmup)?;
    let secs = run(a.steps)?;
    outln!(
        "{}",
        json!({"impl": "lmbff (tch)", "batch": b, "seq_len": s, "threads": tch::get_num_threads(), "device": format!("{:?}", l.model.device()),
               "steps": a.steps, "steps_per_sec": a.steps as f64 / secs})
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An excluded sentence is dropped however it is written, and inside a longer text
    /// when it is long enough to be itself (a short phrase would take every text with it).
    #[test]
    fn the_corpus_drops_excluded_text_written_otherwise() {
        let dir = std::env::temp_dir().join(format!("lmbff-corpus-{}", crate::checkpoint::tmp_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let (texts, test) = (dir.join("texts.txt"), dir.join("test.txt"));
        std::fs::write(&test, "it 's a charming and often affecting journey .\ngood\n").unwrap();
        std::fs::write(
            &texts,
            "It's a charming and often affecting journey.\n\
             A slow start, but it's a charming and often affecting journey. Worth it.\n\
             A good film.\n\
             Another film entirely.\n\
             another film entirely.\n",
        )
        .unwrap();
        let (kept, excluded) = corpus(&[texts], &[test]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(kept, vec!["A good film.", "Another film entirely."]);
        assert_eq!(excluded, 2);
    }
}
