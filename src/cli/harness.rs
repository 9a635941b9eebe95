//! `lmbff harness`: methods x tasks x seeds on LM-BFF's k-shot splits (see src/harness).

use std::path::PathBuf;

use clap::Args;

use super::Bar;
use crate::harness::{self, RunMethod, Settings};
use crate::{Error, Result};

#[derive(Debug, Args)]
pub struct HarnessArgs {
    /// The k-shot folder of LM-BFF's data (`<TASK>/16-<SEED>/{train,dev,test}.*`).
    #[arg(long)]
    pub data: PathBuf,
    /// Folder for the per-run results and report.md (re-running continues there).
    #[arg(long)]
    pub out: PathBuf,
    /// Tasks, comma-separated: SST-2, sst-5, mr, cr, mpqa, subj, trec, CoLA, MNLI, SNLI,
    /// QNLI, RTE, MRPC, QQP, STS-B, trec-multi (docs/harness.md).
    #[arg(long, value_delimiter = ',', default_value = "SST-2,sst-5,mr,cr,mpqa,subj,trec")]
    pub tasks: Vec<String>,
    /// Data seeds, comma-separated (the k-shot folders `16-<SEED>`).
    #[arg(long, value_delimiter = ',', default_value = "13,21,42,87,100")]
    pub seeds: Vec<u64>,
    /// Methods, comma-separated: majority, zero-shot, zero-shot-words, in-context, plain,
    /// prompt, prompt-demos, prompt-demos-filter, prompt-auto-1 to -4, full-data,
    /// sentence-embedding, sentence-embedding-anchors, sentence-embedding-anchors-auto,
    /// sentence-embedding-words (docs/harness.md).
    #[arg(long, value_delimiter = ',', default_value = "majority,zero-shot,plain,prompt,prompt-demos")]
    pub methods: Vec<String>,
    /// Model of the prompt methods (zero-shot, in-context, prompt, prompt-demos, ...).
    #[arg(long)]
    pub model: PathBuf,
    /// Model of plain fine-tuning, full-data, zero-shot-words, the sentence-embedding
    /// methods and the demonstration filter's encoder (default: --model).
    #[arg(long)]
    pub plain_model: Option<PathBuf>,
    /// Fine-tuning steps of each few-shot run (plain and prompt methods).
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Examples per step of every fine-tuned method.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Peak learning rate of the plain and prompt methods.
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    /// Dev evaluation every N steps, the last step's always among them (0: the last
    /// step's only).
    #[arg(long, default_value_t = 50)]
    pub eval_every: usize,
    /// Longest input in tokens (at least 4), template included.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Longest input with its demonstrations, in tokens (at least 4).
    #[arg(long, default_value_t = 256)]
    pub demo_max_len: usize,
    /// Fixed demonstration sets averaged at test time (1 to 64).
    #[arg(long, default_value_t = 1)]
    pub demo_sets: usize,
    /// Score only the first N test inputs of each task.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// The methods with demonstrations (in-context, prompt-demos, prompt-demos-filter)
    /// also score this many random test inputs with --demo-subsample-sets demonstration
    /// sets averaged, next to the --demo-sets sets of the main table (0: skip).
    #[arg(long, default_value_t = 1000)]
    pub demo_subsample: usize,
    /// Demonstration sets averaged on that subsample (LM-BFF's 16).
    #[arg(long, default_value_t = 16)]
    pub demo_subsample_sets: usize,
    /// full-data: steps of plain fine-tuning on the task's whole training set (batch 16,
    /// dev every fifth of them).
    #[arg(long, default_value_t = harness::DEFAULT_FULL_DATA_STEPS)]
    pub full_data_steps: usize,
    /// sentence-embedding-anchors(-auto): copies of each label anchor among the contrastive
    /// pairs (at least 1; default: the library's). A folder's runs share one count.
    #[arg(long, default_value_t = crate::train::EmbedParams::default().anchor_repeats)]
    pub anchor_repeats: usize,
    /// Sentence-embedding methods: the contrastive phase's peak learning rate.
    #[arg(long, default_value_t = crate::train::EmbedParams::default().lr)]
    pub embed_lr: f64,
    /// Sentence-embedding methods: pair rounds (each gives every example one same-class
    /// and one other-class partner; SetFit's num_iterations).
    #[arg(long, default_value_t = crate::train::EmbedParams::default().iterations)]
    pub embed_iterations: usize,
    /// Sentence-embedding methods: the logistic regression's inverse L2 strength.
    #[arg(long, default_value_t = crate::train::EmbedParams::default().head_c)]
    pub head_c: f64,
    /// sentence-embedding-words: the factor on the word-anchor features.
    #[arg(long, default_value_t = crate::train::EmbedParams::default().word_anchor_scale)]
    pub word_anchor_scale: f64,
    /// Start no new run after this many minutes (the run going on finishes); re-run the
    /// same command to continue. Not a setting: chunks of one grid may differ.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// cpu, cuda, cuda:N or auto (CUDA when present).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch intra-op threads (0: all cores); default: libtorch's choice.
    #[arg(long)]
    pub threads: Option<i32>,
}

pub fn run(a: HarnessArgs) -> Result<()> {
    if let Some(n) = a.threads {
        tch::set_num_threads(crate::torch_threads(n.into(), "--threads")?);
    }
    let tasks = a.tasks.iter().map(|t| harness::task(t)).collect::<Result<Vec<_>>>()?;
    let methods = a.methods.iter().map(|m| RunMethod::parse(m)).collect::<Result<Vec<_>>>()?;
    // A name twice would run or count its runs twice (a mean over seeds 13, 42, 42).
    once("--tasks", &tasks.iter().map(|t| t.name.to_string()).collect::<Vec<_>>())?;
    once("--seeds", &a.seeds.iter().map(u64::to_string).collect::<Vec<_>>())?;
    once("--methods", &methods.iter().map(|m| m.name().to_string()).collect::<Vec<_>>())?;
    let anchored = methods.iter().find(|m| matches!(m, RunMethod::SentenceEmbeddingAnchors | RunMethod::SentenceEmbeddingAnchorsAuto | RunMethod::SentenceEmbeddingWords));
    if let (0, Some(m)) = (a.anchor_repeats, anchored) {
        return Err(Error::InvalidArgument(format!("--anchor-repeats 0 leaves {} without anchors: run sentence-embedding instead", m.name())));
    }
    for (flag, v) in [("--lr", a.lr), ("--embed-lr", a.embed_lr), ("--head-c", a.head_c)] {
        if !(v > 0.0 && v.is_finite()) {
            return Err(Error::InvalidArgument(format!("{flag} must be a positive number, got {v}")));
        }
    }
    if let Some(m) = a.max_minutes.filter(|m| !(*m >= 0.0 && m.is_finite())) {
        return Err(Error::InvalidArgument(format!("--max-minutes must be a number of minutes, 0 or more, got {m}")));
    }
    let demos = methods.iter().any(|m| m.demonstrations());
    for (flag, v, used) in [("--max-len", a.max_len, true), ("--demo-max-len", a.demo_max_len, demos)] {
        if used && v < 4 {
            return Err(Error::InvalidArgument(format!("{flag} {v} is too small: an input needs at least 4 tokens")));
        }
    }
    // A device that is not there, named before the first run (not at the first model).
    if methods.iter().any(|m| *m != RunMethod::Majority) {
        crate::model::parse_device(&a.device)?;
    }
    // What a run would refuse, refused before the first run: a grid stopped at its first
    // such run stops there again on every re-run.
    if let Some(m) = methods.iter().find(|m| m.fine_tunes()) {
        let few_shot = methods.iter().any(|m| m.fine_tunes() && *m != RunMethod::FullData);
        let full = methods.contains(&RunMethod::FullData);
        // (full-data trains with its own batch size.)
        if (few_shot && (a.batch_size == 0 || a.steps == 0)) || (full && a.full_data_steps == 0) {
            let mut flags = Vec::new();
            if few_shot {
                flags.extend([format!("--batch-size ({})", a.batch_size), format!("--steps ({})", a.steps)]);
            }
            if full {
                flags.push(format!("--full-data-steps ({})", a.full_data_steps));
            }
            return Err(Error::InvalidArgument(format!("{} fine-tunes: {} must be positive", m.name(), flags.join(", "))));
        }
    }
    if let Some(m) = methods.iter().find(|m| m.demonstrations()) {
        if a.demo_sets == 0 || a.demo_sets > crate::train::MAX_DEMO_SETS {
            return Err(Error::InvalidArgument(format!("{} reads demonstrations: --demo-sets must be 1 to {}, got {}", m.name(), crate::train::MAX_DEMO_SETS, a.demo_sets)));
        }
        // The subsample's sets, as the main table's: 0 skipped the subsample without a word.
        if a.demo_subsample > 0 && (a.demo_subsample_sets == 0 || a.demo_subsample_sets > crate::train::MAX_DEMO_SETS) {
            return Err(Error::InvalidArgument(format!(
                "{} reads demonstrations: --demo-subsample-sets must be 1 to {} with --demo-subsample {} (--demo-subsample 0 skips the subsample), got {}",
                m.name(),
                crate::train::MAX_DEMO_SETS,
                a.demo_subsample,
                a.demo_subsample_sets
            )));
        }
    }
    if a.test_limit == Some(0) {
        return Err(Error::InvalidArgument("--test-limit 0 scores nothing: give at least 1, or leave it out for the whole test set".into()));
    }
    let embed = crate::train::EmbedParams { lr: a.embed_lr, iterations: a.embed_iterations, head_c: a.head_c, word_anchor_scale: a.word_anchor_scale, ..Default::default() };
    embed.check()?;
    // Stored as absolute paths: a later command from another working directory reads
    // them as this one meant them (a missing folder is named when it is read).
    let absolute = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    let settings = Settings {
        model: absolute(&a.model),
        plain_model: absolute(a.plain_model.as_ref().unwrap_or(&a.model)),
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        eval_every: a.eval_every,
        max_len: a.max_len,
        demo_max_len: a.demo_max_len,
        demo_sets: a.demo_sets,
        test_limit: a.test_limit,
        demo_subsample: a.demo_subsample,
        demo_subsample_sets: a.demo_subsample_sets,
        full_data_steps: a.full_data_steps,
        anchor_repeats: a.anchor_repeats,
        embed_lr: a.embed_lr,
        embed_iterations: a.embed_iterations,
        head_c: a.head_c,
        word_anchor_scale: a.word_anchor_scale,
    };
    harness::check_out_folder(&a.out)?;
    // glue_pretrain/ and auto/ sit beside the k-shot folder: its parent must be a folder
    // (`--data .` has none as written). Made absolute without following links: beside a
    // linked k-shot folder is beside the link.
    let data = crate::absolute(&a.data);
    // Every split is read before the first run: a missing or bad file is named now.
    let splits = harness::check_data(&data, &tasks, &a.seeds, &methods)?;
    // So are the models, before the folder records the settings (a mistyped --model would
    // otherwise leave a new folder claimed for it).
    let models = harness::model_prints(&settings)?;
    harness::claim_folder(&a.out, &settings)?;
    harness::check_inputs(&a.out, &settings, models, splits)?;
    let started = std::time::Instant::now();
    let out_of_time = || a.max_minutes.is_some_and(|m| started.elapsed().as_secs_f64() > 60.0 * m);
    let total = tasks.len() * a.seeds.len() * methods.len();
    // Runs stored before, and runs another command on this folder made meanwhile.
    let (mut results, mut reused, mut shared) = (Vec::with_capacity(total), 0, 0);
    // Seed by seed: a grid cut short has every task at the same number of seeds.
    let mut left = 0;
    // Runs another command on this folder is making (it holds their claim): this one
    // goes on with the others, then waits for those and reads their results.
    let mut theirs = Vec::new();
    // Runs that failed: named as they fail, counted in the report and the exit status.
    let mut failed: Vec<(String, Error)> = Vec::new();
    // What cannot be written under --out (a full disk) stops the grid: every run after
    // would fail the same way, after its training.
    let keep = |r: Result<harness::RunResult>, results: &mut Vec<harness::RunResult>, failed: &mut Vec<(String, Error)>, name: String| -> Result<()> {
        match r {
            Ok(r) => results.push(r),
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(e) => failed.push((name, e)),
        }
        Ok(())
    };
    let run = |seed: u64, t: &harness::TaskSpec, m: RunMethod, done: usize| -> Result<harness::RunResult> {
        let label = format!("{}/{total} {} s{seed} {}", done + 1, t.name, m.name());
        let mut bar = Bar::new(&label);
        let r = harness::run_one(&data, t, seed, m, &settings, &a.device, &a.out, &mut |p| bar.update(p));
        bar.finish();
        // A run that fails is named and left; the others go on (a run that fails the
        // same way each time, as a seeded one does, stopped the whole grid at it on
        // every re-run).
        let r = r.inspect_err(|e| match e {
            Error::Io { .. } => eprintln!("{label}: the run failed on a file, and the grid stops: {e}"),
            _ => eprintln!("{label}: the run failed, and its result is not stored; the others go on: {e}"),
        })?;
        let score = if r.test.is_finite() { format!("{:.1}", 100.0 * r.test) } else { "diverged (NaN)".into() };
        eprintln!("{label}: test {} {score} ({:.0} s)", r.metric, r.seconds);
        Ok(r)
    };
    // A stored run, checked as this version would make it.
    let stored = |t: &harness::TaskSpec, seed: u64, m: RunMethod, n_test: usize| -> Result<Option<harness::RunResult>> {
        let r = harness::stored(&a.out, t.name, seed, m, &settings, n_test)?;
        if let Some(r) = &r {
            harness::check_full_data(&data, &a.out, t, seed, r)?;
        }
        Ok(r)
    };
    for &seed in &a.seeds {
        for t in &tasks {
            // The test rows every stored result of this split must have scored.
            let n_test = harness::expected_n_test(&data, t, seed, &settings)?;
            for &m in &methods {
                if let Some(r) = stored(t, seed, m, n_test)? {
                    reused += 1;
                    results.push(r);
                    continue;
                }
                if out_of_time() {
                    left += 1;
                    continue;
                }
                let Some(_claim) = harness::RunClaim::try_take(&a.out, t.name, seed, m)? else {
                    theirs.push((seed, *t, m, n_test));
                    continue;
                };
                // Finished by the other command between the look and the claim.
                if let Some(r) = stored(t, seed, m, n_test)? {
                    shared += 1;
                    results.push(r);
                    continue;
                }
                let r = run(seed, t, m, results.len() + failed.len());
                keep(r, &mut results, &mut failed, format!("{} s{seed} {}", t.name, m.name()))?;
            }
        }
    }
    for (seed, t, m, n_test) in theirs {
        if out_of_time() {
            left += 1;
            continue;
        }
        eprintln!("waiting for another harness command on {} to finish {} s{seed} {}", a.out.display(), t.name, m.name());
        // Out of time while the other command still holds it: left for a later chunk, as
        // a run not started (the wait used to outlast --max-minutes without end).
        let Some(_claim) = harness::RunClaim::wait(&a.out, t.name, seed, m, &out_of_time)? else {
            left += 1;
            continue;
        };
        match stored(t, seed, m, n_test)? {
            Some(r) => {
                shared += 1;
                results.push(r);
            }
            None if out_of_time() => left += 1,
            // The other command stopped before it (killed, out of time): made here.
            None => {
                let r = run(seed, t, m, results.len() + failed.len());
                keep(r, &mut results, &mut failed, format!("{} s{seed} {}", t.name, m.name()))?;
            }
        }
    }
    // The grid's order (seed, task, method), whichever command made a run.
    let place = |r: &harness::RunResult| {
        (a.seeds.iter().position(|&s| s == r.seed), tasks.iter().position(|t| t.name == r.task), methods.iter().position(|&m| m == r.method))
    };
    results.sort_by_key(place);
    let table = harness::report(&results, &tasks, &methods, &a.seeds);
    let sub = harness::subsample_report(&results, &tasks);
    let cal = harness::calibration_report(&results, &methods);
    let cal = cal + &harness::macro_f1_report(&results, &methods);
    let ens = harness::ensemble_report(&a.out, &data, &tasks, &a.seeds, &settings)?;
    let sources = harness::test_source_note(&results);
    let made_there = if shared > 0 { format!(", {shared} made by another command on this folder meanwhile") } else { String::new() };
    // Always said, "0 runs not started" included: a grid script repeats until it reads
    // that, which it is not while a run failed (the grid has a hole).
    let status = if !failed.is_empty() {
        let named: Vec<String> = failed.iter().map(|(run, e)| format!("{run} ({e})")).collect();
        format!(
            " {} runs failed (the same command tries them again; the grid is not whole until they pass): {}. {left} more not started.",
            failed.len(),
            named.join("; ")
        )
    } else if left > 0 {
        format!(" {left} runs not started (--max-minutes): run the same command again to continue.")
    } else {
        " 0 runs not started.".to_string()
    };
    let text = format!(
        "# Harness report\n\nData: {} ({} seeds: {:?}). {total} runs ({reused} reused from earlier{made_there}).{status} Settings: {}\n\n\
         This report covers this command's tasks, methods and seeds (another command on this folder writes its own: \
         the whole grid's command, run again, reuses every stored run and reports them all).\n\n\
         Test metric in percent, mean (std) over the seeds (the sample standard deviation, n - 1; LM-BFF's tables \
         give numpy's, n, which is 0.89 times this over 5 seeds); `[k/n]` marks a cell with k of n seeds done.\n\n\
         {sources}{table}\n{sub}\n{cal}\n{ens}",
        data.display(),
        a.seeds.len(),
        a.seeds,
        serde_json::to_string(&settings).expect("settings serialise")
    );
    let path = a.out.join("report.md");
    harness::write_atomic(&path, &text)?;
    // Every result of this grid in one file, for charts (python/harness_chart.py).
    let all = a.out.join("results.json");
    harness::write_atomic(&all, &serde_json::to_string_pretty(&results).map_err(|e| Error::Internal(format!("results do not serialise: {e}")))?)?;
    outln!("{table}\n{sub}\n{cal}\n{ens}")?;
    eprintln!("{reused} of {total} runs reused{made_there};{status} report in {}", path.display());
    // The exit status says so, with the first failure's own error.
    if let Some((run, e)) = failed.into_iter().next() {
        eprintln!("the first failed run: {run}");
        return Err(e);
    }
    Ok(())
}

/// Refuses a list naming one item twice, naming it.
pub(super) fn once(flag: &str, items: &[String]) -> Result<()> {
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            return Err(Error::InvalidArgument(format!("{flag} names {item} twice")));
        }
    }
    Ok(())
}
