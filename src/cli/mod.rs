//! The `lmbff` command line: adapt, train, eval, compare, demo (the README's main job),
//! export, predict and bench-step.

/// `println!` that hands back a failed write to stdout (a reader gone, `| head -1`; a
/// full disk, `> /dev/full`) as the command's `Error::Io` instead of panicking; the
/// caller applies `?`. A closed pipe then ends the command quietly with status 141.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(|e| crate::Error::io(std::path::Path::new("stdout"), e))
    }};
}

mod commands;
mod demo;
mod harness;
mod progress;
mod serve;
mod task;

pub use progress::Bar;
pub use task::{parse_labels, Loaded, TaskArgs};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "lmbff", version, about = "Few-shot labelling with LM-BFF prompt-based fine-tuning")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Continue masked-LM training on unlabeled text (gives a headless checkpoint an MLM head).
    Adapt(commands::AdaptArgs),
    /// Fine-tune on a few labelled examples (prompt-based, plain, sentence-embedding or
    /// zero-shot-words) and evaluate.
    Train(commands::TrainArgs),
    /// Evaluate a model or checkpoint on a labelled file (zero-shot for a plain model).
    Eval(commands::EvalArgs),
    /// Prompt FT vs plain FT with the same tuning grid, chosen on dev, reported on test.
    Compare(commands::CompareArgs),
    /// The main job: bootstrap labels for a pool from a few examples on the default model.
    Demo(demo::DemoArgs),
    /// Export a trained model to ONNX (model.onnx, tokenizer.json, lmbff-export.json).
    Export(serve::ExportArgs),
    /// Predict texts with an export directory through ONNX Runtime (JSON lines out).
    Predict(serve::PredictArgs),
    /// Methods x tasks x seeds on LM-BFF's k-shot splits: a markdown report (resumable).
    Harness(harness::HarnessArgs),
    /// Time our prompt-FT training step (prints one JSON line).
    BenchStep(commands::BenchArgs),
    /// Time end-to-end prediction: ONNX Runtime predictor and tch forward (JSON lines).
    BenchPredict(serve::BenchPredictArgs),
}

/// Runs the command line; returns the process exit code.
/// A count of at least 1, as clap parses a flag's value.
pub(crate) fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("give 1 or more".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A positive, finite number, as clap parses a flag's value (a learning rate).
pub(crate) fn positive_number(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err("give a positive number".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A count of demonstration sets, 1 to [`crate::train::MAX_DEMO_SETS`].
#[cfg(feature = "train")]
pub(crate) fn demo_set_count(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=crate::train::MAX_DEMO_SETS).contains(&n) => Ok(n),
        Ok(_) => Err(format!("give 1 to {}", crate::train::MAX_DEMO_SETS)),
        Err(e) => Err(e.to_string()),
    }
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Adapt(a) => commands::adapt(a),
        Command::Train(a) => commands::train(a),
        Command::Eval(a) => commands::eval(a),
        Command::Compare(a) => commands::compare(a),
        Command::Demo(a) => demo::run(a),
        Command::Export(a) => serve::export_cmd(a),
        Command::Predict(a) => serve::predict_cmd(a),
        Command::Harness(a) => harness::run(a),
        Command::BenchStep(a) => commands::bench_step(a),
        Command::BenchPredict(a) => serve::bench_predict(a),
    };
    match result {
        Ok(()) => 0,
        // The reader of our output went away (`lmbff predict ... | head -1`): what it read
        // was right, so no error message; the shell's status for a closed pipe.
        Err(crate::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => 141,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
