//! export and predict: a trained model to an ONNX export directory, and predictions
//! from one through ONNX Runtime.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Args;

use super::progress::Bar;
use super::task::TaskArgs;
use crate::data::read_tsv_inputs;
use crate::export::{export, export_embedding, ExportOptions, WeightType};
use crate::prompt::Example;
use crate::serve::{Predictor, PredictorOptions};
use crate::train::{Demos, Progress, Stage};
use crate::{Error, Result};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Trained checkpoint (its lmbff.json gives template and labels) or HF model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Export directory to write (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Store weight matrices as fp16 (half the size; computation stays fp32).
    #[arg(long, conflicts_with = "int8")]
    pub fp16: bool,
    /// Dynamic int8 quantisation of the linear layers (smaller, faster on CPU; check
    /// accuracy on your dev set).
    #[arg(long)]
    pub int8: bool,
    /// Store weights in model.onnx.data beside model.onnx (automatic past 1.8 GB, under
    /// protobuf's 2 GiB limit).
    #[arg(long)]
    pub external_data: bool,
    /// Also write a Triton Inference Server model repository under triton/<NAME>/.
    #[arg(long, value_name = "NAME")]
    pub triton: Option<String>,
    /// Export as regression over LOW,HIGH (two label words: lower pole, upper pole); the
    /// model then also outputs `score` = LOW + (HIGH - LOW) * p(upper pole).
    #[arg(allow_hyphen_values = true, long, value_name = "LOW,HIGH", value_delimiter = ',')]
    pub regression: Option<Vec<f32>>,
    /// Triton's max_batch_size.
    #[arg(long, default_value_t = 64)]
    pub triton_max_batch: usize,
    #[command(flatten)]
    pub task: TaskArgs,
}

pub fn export_cmd(mut a: ExportArgs) -> Result<()> {
    if a.regression.as_ref().is_some_and(|r| r.len() != 2) {
        return Err(Error::InvalidArgument("--regression takes LOW,HIGH (two numbers)".into()));
    }
    // The graph is written from CPU weights whatever the device; a device named is still
    // checked, so a script's `--device cuda` on a machine without one fails here as it
    // does in train.
    if a.task.device != "auto" && a.task.device != "cpu" {
        crate::model::parse_device(&a.task.device)?;
        eprintln!("note: export runs on the CPU; --device {} is not used", a.task.device);
    }
    a.task.device = "cpu".into();
    crate::export::source_outside(&a.model, &a.out)?;
    let trained = crate::checkpoint::Manifest::read(&a.model).ok();
    let embedding = trained.as_ref().filter(|m| m.method == crate::checkpoint::METHOD_EMBEDDING);
    if let Some(m) = embedding {
        super::commands::refuse_prompt_settings(m, &a.task, &a.model, "exported")?;
    }
    // A saved prompt this lmbff renders otherwise than the one that trained the model is
    // refused here (the load only warns: training or scoring it goes on).
    if let Some(m) = trained.as_ref().filter(|m| m.rendering.is_some() && a.task.reads_as_saved()) {
        m.prompt(&crate::tokenize::Tokenizer::from_dir(&a.model)?, &a.model)?;
    }
    let l = a.task.load(&a.model, 0)?;
    if embedding.is_none() && l.model.load_report().head_initialised {
        // Exported as it is, the graph reads the mask with a head of random weights.
        eprintln!(
            "warning: {} has no masked-LM head: a new one was initialised, and this export's predictions come from that untrained \
             head. Train the model first (`lmbff train --out`, which picks a method this model suits) and export that.",
            a.model.display()
        );
    }
    let demos = match &trained {
        Some(m) => Demos::of_checkpoint(m, &l.prompt, l.model.device())?,
        None => Demos::None,
    };
    let notes = trained.as_ref().map(|m| m.notes.clone()).unwrap_or_default();
    let opts = ExportOptions {
        weights: if a.int8 { WeightType::Int8 } else if a.fp16 { WeightType::Fp16 } else { WeightType::Fp32 },
        external_data: a.external_data,
        triton: a.triton.clone(),
        triton_max_batch: a.triton_max_batch,
        // The checkpoint's own range when none is given (a task-trained STS-B version).
        regression: a
            .regression
            .as_ref()
            .map(|r| crate::export::RegressionRange { low: r[0], high: r[1] })
            .or(trained.as_ref().and_then(|m| m.regression).map(|(low, high)| crate::export::RegressionRange { low, high })),
        temperature: trained.as_ref().and_then(|m| m.temperature).map(|t| t as f32),
        multi_label: trained.as_ref().and_then(|m| m.multi_label.clone()),
    };
    // A regression's probability is its score: a temperature would push every score
    // towards the range's ends (the task API refuses calibration for regression too).
    if let (Some(r), Some(t)) = (opts.regression, opts.temperature) {
        return Err(Error::InvalidArgument(format!(
            "--regression {},{}: {} was calibrated (temperature {t:.3}), and a regression's probability is its score; \
             export it without --regression, or train it without --calibrate",
            r.low,
            r.high,
            a.model.display()
        )));
    }
    let m = match embedding {
        Some(m) => export_embedding(&l.model, &l.tok, &l.prompt, m.embedding_classifier(&a.model)?, notes, &a.out, &opts)?,
        None => export(&l.model, &l.tok, &l.prompt, &demos, notes, &a.out, &opts)?,
    };
    outln!("{}", serde_json::json!({"out": a.out, "model_version": m.model.version, "labels": m.labels, "weights": m.model.weights}))?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Export directory (from `lmbff export`).
    #[arg(long)]
    pub export: PathBuf,
    /// Inputs: a text file (one input per line; `text_a<TAB>text_b` for pair templates),
    /// a .tsv with a header or a .csv (sentence columns as for training; a label column,
    /// if any, gives an accuracy on stderr, blank labels not scored), or `-` for stdin lines. Text files and stdin
    /// are streamed: answers leave a chunk at a time (on stdin, as soon as a line arrives);
    /// a line that is not UTF-8 gets an error record in its place (the exit status says so).
    #[arg(long, default_value = "-")]
    pub input: String,
    /// Largest batch run at once, 1 to 4096 (larger inputs are split).
    #[arg(long, default_value_t = 16, value_parser = super::at_least_one)]
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// libonnxruntime to load (default: LMBFF_ORT_LIB, ORT_DYLIB_PATH, next to the library).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Write Label Studio predictions (one JSON object per line) with these from_name and
    /// to_name of the labelling config, e.g. `sentiment,text`.
    #[arg(long, value_name = "FROM,TO", value_delimiter = ',')]
    pub label_studio: Option<Vec<String>>,
}

/// Inputs predicted in chunks of at most this many (progress, and length bucketing
/// within each).
const CHUNK: usize = 1024;

/// Where `predict` reads its inputs, a chunk at a time, so that output starts before the
/// input ends and memory stays bounded by a chunk. In a text file or on stdin a tab
/// separates text_a from text_b only when the export reads `pairs`; otherwise a line is
/// one text.
enum Inputs {
    /// A TSV with a header or an LM-BFF CSV, read whole (its label column, if any, gives
    /// an accuracy), with each row's file line (blank lines and the header are no rows).
    Rows(std::vec::IntoIter<Example>, Vec<usize>),
    /// A text file, read as the chunks need it.
    File(std::io::Lines<std::io::BufReader<std::fs::File>>),
    /// Stdin, or a pipe named as a file (`/dev/stdin`, `<(cmd)`, a FIFO), read by a
    /// thread: a chunk is what has arrived (at least one line), so a host that writes a
    /// line and waits gets its answer, and a pipe still fills chunks.
    Stream(std::sync::mpsc::Receiver<std::io::Result<String>>),
}

/// An input line, or its line number and why it cannot be predicted (not UTF-8, a pair
/// export's line without a tab): that line's answer is an error record, and the lines
/// after it are still read.
type Line = std::result::Result<Example, (usize, String)>;

const NOT_UTF8: &str = "not UTF-8 text";
/// A pair export's line without a tab (a blank line too): it has no second sentence.
const NO_TAB: &str = "no tab: this export reads sentence pairs, text_a<TAB>text_b a line";
/// A line holding a NUL byte: no text has one, and UTF-16's lines after the first are
/// valid UTF-8 with a NUL beside each letter (they were predicted as garbage).
const HOLDS_NUL: &str = "holds a NUL byte: not text (UTF-16?)";

/// Whether a line of plain text with a tab was already reported (once a process).
static TAB_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Inputs {
    /// The inputs of `spec`, how many there are when that is known beforehand, and the
    /// gold labels of a labelled TSV.
    /// `flag` names the option that gave `spec`, for its errors.
    fn open(spec: &str, flag: &str) -> Result<(Inputs, Option<usize>, Option<Vec<String>>)> {
        if spec == "-" {
            return Ok((Inputs::Stream(stream_lines(|| Box::new(std::io::stdin().lock()))), None, None));
        }
        let path = PathBuf::from(spec);
        // A wrong path is the flag's mistake, named so (not as a read that failed).
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::InvalidArgument(format!("{flag} {spec}: no such file (give a file, or - for stdin)")));
            }
            Ok(m) if m.is_dir() => return Err(Error::InvalidArgument(format!("{flag} {spec}: this is a folder; give a file, or - for stdin"))),
            _ => {}
        }
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv")) {
            let (rows, labelled) = read_tsv_inputs(&path)?;
            let gold = labelled.then(|| rows.iter().map(|r| r.label.clone()).collect());
            let n = rows.len();
            let lines = rows.iter().map(|r| r.line).collect();
            let rows: Vec<Example> = rows.into_iter().map(|r| Example { text_a: r.text_a, text_b: r.text_b, label: None }).collect();
            return Ok((Inputs::Rows(rows.into_iter(), lines), Some(n), gold));
        }
        if crate::data::is_csv(&path) {
            // LM-BFF's `label,sentence` layout, or columns named by a header (the label
            // column optional), read as train and eval read them.
            let (read, labelled) = crate::data::read_csv_inputs(&path)?;
            let lines = read.iter().map(|r| r.line).collect();
            let (rows, gold): (Vec<Example>, Vec<String>) =
                read.into_iter().map(|r| (Example { text_a: r.text_a, text_b: r.text_b, label: None }, r.label)).unzip();
            let n = rows.len();
            return Ok((Inputs::Rows(rows.into_iter(), lines), Some(n), labelled.then_some(gold)));
        }
        // A pipe, a FIFO, /dev/stdin or `<(cmd)` can be read once, and a host may wait on
        // its answers: it is streamed as stdin is, without a count (counting it first
        // drained it, and then nothing was predicted).
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return Ok((Inputs::Stream(stream_lines(move || Box::new(std::io::BufReader::new(f)))), None, None));
        }
        let lines = count_lines(&path)?;
        Ok((Inputs::File(std::io::BufReader::new(f).lines()), Some(lines), None))
    }

    /// The first `n` inputs of `spec` (fewer if it has fewer).
    fn first(spec: &str, flag: &str, pairs: bool, n: usize) -> Result<Vec<Example>> {
        let (mut inputs, mut out, mut read) = (Inputs::open(spec, flag)?.0, Vec::new(), 0);
        while out.len() < n {
            let chunk = inputs.next_chunk(spec, pairs, &mut read)?;
            if chunk.is_empty() {
                break;
            }
            for line in chunk {
                out.push(line.map_err(|(line, message)| Error::Data { path: spec.into(), line, message })?);
            }
        }
        out.truncate(n);
        Ok(out)
    }

    /// Up to [`CHUNK`] more inputs (none: the end); `read` counts the lines read so far,
    /// for the line number of an error. A line that is not UTF-8 is an `Err` naming it;
    /// a read that fails otherwise ends the whole.
    fn next_chunk(&mut self, spec: &str, pairs: bool, read: &mut usize) -> Result<Vec<Line>> {
        let mut out = Vec::new();
        let mut push = |line: std::io::Result<String>, read: &mut usize| -> Result<()> {
            *read += 1;
            let line = match line {
                Ok(line) => line,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    out.push(Err((*read, NOT_UTF8.to_string())));
                    return Ok(());
                }
                Err(e) => return Err(Error::Data { path: spec.into(), line: *read, message: format!("cannot read the line: {e}") }),
            };
            if line.contains('\0') {
                out.push(Err((*read, HOLDS_NUL.to_string())));
                return Ok(());
            }
            // A byte-order mark before the first line is not text (as every reader has it).
            let line = match line.strip_prefix('\u{feff}') {
                Some(rest) if *read == 1 => rest.to_string(),
                _ => line,
            };
            if pairs && !line.contains('\t') {
                out.push(Err((*read, NO_TAB.to_string())));
                return Ok(());
            }
            out.push(Ok(match line.split_once('\t') {
                Some((a, b)) if pairs => Example { text_a: a.to_string(), text_b: Some(b.to_string()), label: None },
                tab => {
                    // A one-sentence model reads the whole line, tab and all: say so once, as
                    // `text<TAB>label` lines (a TSV without its header) would score the label too.
                    if tab.is_some() && !TAB_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        eprintln!(
                            "warning: {spec}, line {read}: the line holds a tab, and this model reads one sentence: \
                             the whole line is its text (for columns, give a .tsv file with a header)"
                        );
                    }
                    Example { text_a: line, text_b: None, label: None }
                }
            }));
            Ok(())
        };
        match self {
            Inputs::Rows(rows, _) => return Ok(rows.by_ref().take(CHUNK).map(Ok).collect()),
            Inputs::File(lines) => {
                for line in lines.by_ref().take(CHUNK) {
                    push(line, read)?;
                }
            }
            Inputs::Stream(rx) => {
                // Wait for one line, then take what has already arrived.
                if let Ok(line) = rx.recv() {
                    push(line, read)?;
                    for _ in 1..CHUNK {
                        match rx.try_recv() {
                            Ok(line) => push(line, read)?,
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The lines of the reader `open` makes, read on a thread of their own (the reader is
/// made there): the receiver gets each line as it arrives, a line that is not UTF-8 as
/// its error (the next one follows), and another read error last.
fn stream_lines(open: impl FnOnce() -> Box<dyn BufRead> + Send + 'static) -> std::sync::mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(CHUNK);
    std::thread::spawn(move || {
        for line in open().lines() {
            let stop = line.as_ref().is_err_and(|e| e.kind() != std::io::ErrorKind::InvalidData);
            if tx.send(line).is_err() || stop {
                return;
            }
        }
    });
    rx
}

/// The number of lines `BufRead::lines` reads from the file (a last line without a
/// newline counts), for the progress bar. A file this reader would misread as a whole is
/// refused here: UTF-16 (Windows' "Unicode", PowerShell 5's `>`), and lines ended by a
/// carriage return alone.
fn count_lines(path: &std::path::Path) -> Result<usize> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let (mut buf, mut n, mut last, mut returns, mut first) = (vec![0u8; 1 << 16], 0usize, b'\n', false, true);
    loop {
        let got = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if first && got >= 2 && (buf[..2] == [0xff, 0xfe] || buf[..2] == [0xfe, 0xff]) {
            return Err(Error::Data { path: path.to_path_buf(), line: 1, message: "UTF-16 text (its byte-order mark): save the file as UTF-8".into() });
        }
        first = false;
        if got == 0 {
            // Lines ended by a carriage return alone would be one input.
            if n == 0 && returns {
                return Err(Error::Data { path: path.to_path_buf(), line: 1, message: crate::data::CR_ONLY.into() });
            }
            return Ok(n + usize::from(last != b'\n'));
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count();
        returns |= buf[..got].contains(&b'\r');
        last = buf[got - 1];
    }
}

pub fn predict_cmd(a: PredictArgs) -> Result<()> {
    if a.label_studio.as_ref().is_some_and(|l| l.len() != 2) {
        return Err(Error::InvalidArgument("--label-studio takes FROM,TO (the labelling config's from_name and to_name)".into()));
    }
    if a.batch_size > crate::serve::MAX_BATCH {
        return Err(Error::InvalidArgument(format!("--batch-size is {}: give 1 to {}", a.batch_size, crate::serve::MAX_BATCH)));
    }
    let opts = PredictorOptions { threads: a.threads, max_batch: a.batch_size, ort_library: a.ort_lib.clone(), ..Default::default() };
    let p = Predictor::open(&a.export, &opts)?;
    let (mut inputs, total, gold) = Inputs::open(&a.input, "--input")?;
    if a.input == "-" && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("reading inputs from the terminal, one a line (end with Ctrl-D); --input FILE reads a file");
    }
    // A labelled file's columns against the export's template, named as eval names them
    // (the predictor would name the first input, counted from 0).
    if let Inputs::Rows(rows, _) = &inputs {
        let rows = rows.as_slice();
        if !p.reads_pairs() && rows.iter().any(|e| e.text_b.is_some()) {
            return Err(Error::InvalidArgument(format!(
                "{} has a second sentence column, and this export's template reads one sentence: it would be ignored",
                a.input
            )));
        }
        if p.reads_pairs() && rows.iter().any(|e| e.text_b.is_none()) {
            return Err(Error::InvalidArgument(format!("{} has no second sentence column, and this export's template reads pairs", a.input)));
        }
    }
    let labels = p.labels().to_vec();
    // Rows whose label the export does not know (SNLI's "-", say) are predicted but not
    // scored, and said so; a label column that shares none is no accuracy at all.
    let classifier = !p.is_multi_label() && p.manifest().regression.is_none();
    let known = |l: &String| labels.contains(l);
    // A blank label is a row nobody has labelled yet (a spreadsheet's empty column): it is
    // predicted and not scored, and it is no sign of a file meant for another model.
    if let Some(g) = gold.as_ref().filter(|_| classifier) {
        let given: Vec<&String> = g.iter().filter(|l| !l.trim().is_empty()).collect();
        let unknown: Vec<&String> = given.iter().copied().filter(|l| !known(l)).collect();
        if !given.is_empty() && unknown.len() == given.len() {
            return Err(Error::InvalidArgument(format!(
                "{}: no row's label is one of the export's labels {labels:?} (the first is {:?}{}): not a labelled file for this model",
                a.input,
                unknown[0],
                crate::data::float_hint(unknown[0], &labels)
            )));
        }
        if let Some(first) = unknown.first() {
            eprintln!("warning: {} of {} rows have labels the export does not know (the first: {first:?}); accuracy counts the others", unknown.len(), g.len());
        }
        match g.len() - given.len() {
            0 => {}
            n if n == g.len() => eprintln!("the label column is empty: the predictions are not scored"),
            n => eprintln!("{n} of {} rows have no label: they are predicted and not scored", g.len()),
        }
    }
    let mut bar = total.map(|_| Bar::new("predict"));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut done, mut read, mut correct, mut scored) = (0usize, 0usize, 0usize, 0usize);
    let mut scores: Vec<(f64, f64)> = Vec::new();
    // Lines answered with an error record: how many, and the first's line number and why.
    let (mut unreadable, mut first_unreadable, mut not_text) = (0usize, None, false);
    loop {
        let chunk = inputs.next_chunk(&a.input, p.reads_pairs(), &mut read)?;
        if chunk.is_empty() {
            break;
        }
        // The readable inputs are predicted together; each unreadable line keeps its place
        // in the output with an error record.
        let (mut readable, mut answers) = (Vec::with_capacity(chunk.len()), Vec::with_capacity(chunk.len()));
        for line in chunk {
            match line {
                Ok(e) => {
                    readable.push(e);
                    answers.push(None);
                }
                Err(bad) => answers.push(Some(bad)),
            }
        }
        let preds = match readable.is_empty() {
            true => Vec::new(),
            // An error names the input by its place in the whole call: the index-th
            // readable line's.
            false => p.predict(&readable).map_err(|e| match e {
                Error::Input { index, source } => {
                    let k = answers.iter().enumerate().filter(|(_, a)| a.is_none()).nth(index).map_or(index, |(k, _)| k);
                    Error::Input { index: done + k, source }
                }
                other => other,
            })?,
        };
        let mut preds = preds.iter();
        for answer in answers {
            let i = done;
            done += 1;
            if let Some((line, why)) = answer {
                unreadable += 1;
                not_text |= why != NO_TAB;
                first_unreadable.get_or_insert((line, why.clone()));
                writeln!(out, "{}", serde_json::json!({"index": i, "line": line, "error": format!("line {line}: {why}")})).map_err(|e| Error::io("stdout", e))?;
                continue;
            }
            let pr = preds.next().expect("the predictor answers every input");
            let probs: serde_json::Map<String, serde_json::Value> =
                labels.iter().zip(&pr.probs).map(|(l, v)| (l.clone(), serde_json::json!(v))).collect();
            let mut line = serde_json::json!({"index": i, "label": labels[pr.label], "probs": probs, "margin": pr.margin, "entropy": pr.entropy});
            // A table's rows skip blank lines and the header: its line in the file too.
            if let Inputs::Rows(_, lines) = &inputs {
                line["line"] = serde_json::json!(lines[i]);
            }
            if let Some(s) = pr.score {
                line["score"] = serde_json::json!(s);
            }
            if p.is_multi_label() {
                line["labels"] = serde_json::json!(pr.labels.iter().map(|&l| &labels[l]).collect::<Vec<_>>());
            }
            if let Some(ls) = &a.label_studio {
                let version = &p.manifest().model.version;
                line = crate::serve::label_studio_json(std::slice::from_ref(pr), &labels, &ls[0], &ls[1], version)?[0].clone();
            }
            writeln!(out, "{line}").map_err(|e| Error::io("stdout", e))?;
            if let Some(g) = gold.as_ref().filter(|_| classifier) {
                scored += usize::from(known(&g[i]));
                correct += usize::from(g[i] == labels[pr.label]);
            }
            if let (Some(g), Some(s)) = (gold.as_ref(), pr.score) {
                // A regression's gold column is its score (STS-B's `score`).
                if let Some(v) = g[i].trim().parse::<f64>().ok().filter(|v| v.is_finite()) {
                    scores.push((s as f64, v));
                }
            }
        }
        // Each chunk's answers leave at once (a host on the other end of a pipe waits for them).
        out.flush().map_err(|e| Error::io("stdout", e))?;
        if let (Some(bar), Some(total)) = (bar.as_mut(), total) {
            bar.update(Progress { stage: Stage::Evaluate, step: done, total: total.max(done), loss: f64::NAN, metric: f64::NAN });
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    if let Some((line, why)) = first_unreadable {
        // Every other line was answered; the exit status still tells a script.
        let rest = match done - unreadable {
            0 => "no line was predicted".to_string(),
            n => format!("the other {n} were predicted"),
        };
        return Err(Error::Data {
            path: if a.input == "-" { "stdin".into() } else { a.input.clone().into() },
            line,
            message: format!(
                "{why}, and {unreadable} of {done} lines could not be predicted: each has an error record in its place, {rest}{}",
                if not_text { " (give UTF-8 text)" } else { "" }
            ),
        });
    }
    if gold.is_some() && scored > 0 {
        eprintln!("accuracy {:.4} ({correct}/{scored})", correct as f64 / scored as f64);
    }
    if let Some(g) = gold.as_ref().filter(|g| !classifier && !g.is_empty()) {
        if !scores.is_empty() {
            let (x, y): (Vec<f64>, Vec<f64>) = scores.iter().copied().unzip();
            eprintln!("Pearson {:.4} (the score against the gold column, {} of {} rows numeric)", crate::metrics::pearson(&x, &y), scores.len(), g.len());
        } else {
            // A multi-label row's gold is a label set: no single label to compare.
            eprintln!("not scored: a {} export's predictions are not compared with the label column", if p.is_multi_label() { "multi-label" } else { "regression" });
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchPredictArgs {
    /// Export directory of the model.
    #[arg(long)]
    pub export: PathBuf,
    /// The same model as a checkpoint directory, for the tch forward (optional).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A TSV with a header (sentence column), a .csv, or a text file; the first --n
    /// inputs are used.
    #[arg(long)]
    pub texts: String,
    /// Inputs timed: the file's first N (all of them where it has fewer).
    #[arg(long, default_value_t = 1000, value_parser = super::at_least_one)]
    pub n: usize,
    /// Batch sizes to time, one table row each.
    #[arg(long, default_value = "1,8,64,256", value_delimiter = ',')]
    pub batch_sizes: Vec<usize>,
    /// Threads for ONNX Runtime and libtorch alike (0: all cores).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// libonnxruntime to load (default: LMBFF_ORT_LIB, ORT_DYLIB_PATH, next to the library).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Name of the ONNX Runtime rows in the output (e.g. lmbff-ort-int8).
    #[arg(long, default_value = "lmbff-ort")]
    pub name: String,
    /// Also measure one predictor shared by 1, 2 and 4 calling threads (batches of 8),
    /// with one locked session of --threads threads vs a pool of --threads
    /// single-threaded sessions.
    #[arg(long)]
    pub shared: bool,
}

/// FLOPs the exported graph executes over the unpadded tokens of `lens` (a multiply-add
/// counts 2): every layer but the last computes, per token, the Q, K, V, O projections,
/// the feed-forward and attention over the input's own length; the last layer computes
/// K and V for every token and the rest for the mask row only.
fn encoder_flops(lens: &[usize], h: f64, inter: f64, layers: f64) -> f64 {
    lens.iter()
        .map(|&s| {
            let s = s as f64;
            let full = s * (2.0 * (4.0 * h * h + 2.0 * h * inter) + 4.0 * s * h);
            let last = s * 4.0 * h * h + (4.0 * h * h + 4.0 * h * inter + 4.0 * s * h);
            (layers - 1.0) * full + last
        })
        .sum()
}

/// Times end-to-end prediction (strings in, probabilities out) at each batch size, for
/// the ONNX Runtime predictor and, with --model, the tch forward; prints JSON lines.
pub fn bench_predict(a: BenchPredictArgs) -> Result<()> {
    use std::time::Instant;
    // Named before any timing (0 and counts past i32 reached libtorch: a panic, a wrap).
    tch::set_num_threads(crate::torch_threads(i64::try_from(a.threads).unwrap_or(i64::MAX), "--threads")?);
    if a.batch_sizes.contains(&0) {
        return Err(Error::InvalidArgument("--batch-sizes: every batch size must be at least 1".into()));
    }
    // Matrix-multiply peak of this machine at these threads (libtorch, fp32, 2048^3).
    let peak = {
        let x = tch::Tensor::randn([2048, 2048], (tch::Kind::Float, tch::Device::Cpu));
        let _ = x.matmul(&x);
        let t = Instant::now();
        for _ in 0..5 {
            let _ = x.matmul(&x);
        }
        5.0 * 2.0 * 2048f64.powi(3) / t.elapsed().as_secs_f64()
    };
    outln!("{}", serde_json::json!({"impl": "matmul-peak", "threads": a.threads, "gflops": peak / 1e9}))?;
    // The predictor as a host gets it (default options: calls larger than its batch
    // limit are split), opened once; the caller's batch size varies.
    let opts = PredictorOptions { threads: a.threads, ort_library: a.ort_lib.clone(), ..Default::default() };
    let p = Predictor::open(&a.export, &opts)?;
    let inputs = Inputs::first(&a.texts, "--texts", p.reads_pairs(), a.n)?;
    if inputs.is_empty() {
        return Err(Error::InvalidArgument(format!("{}: no inputs to time", a.texts)));
    }
    // What the exported graph computes on these inputs (the same at every batch size).
    let m = p.manifest().model.clone();
    // Every rendering is a forward pass (one per demonstration set, if the export has any).
    let lens: Vec<usize> =
        inputs.iter().map(|e| p.encode(e)).collect::<Result<Vec<_>>>()?.into_iter().flatten().map(|x| x.input_ids.len()).collect();
    let cfg: serde_json::Value = a
        .model
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("config.json")).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let inter = cfg["intermediate_size"].as_f64().unwrap_or(4.0 * m.hidden_size as f64);
    let flops = encoder_flops(&lens, m.hidden_size as f64, inter, m.layers as f64);
    // Our tch forward, loaded once.
    let tch_model = match &a.model {
        Some(dir) => {
            let l = TaskArgs { device: "cpu".into(), ..task_defaults() }.load(dir, 0)?;
            let head = crate::train::Head::for_prompt(&l.model, &l.prompt)?;
            Some((l, head))
        }
        None => None,
    };
    for &bs in &a.batch_sizes {
        let (secs, p50) = time_in_batches(&inputs, bs, |chunk| p.predict(chunk).map(|_| ()))?;
        outln!(
            "{}",
            serde_json::json!({"impl": a.name, "batch": bs, "threads": a.threads, "n": inputs.len(),
                "examples_per_sec": inputs.len() as f64 / secs, "p50_ms": p50,
                "gflops": flops / secs / 1e9,
                // Against the fp32 matrix-multiply peak: an int8 graph's multiplies are not
                // fp32 work (it read above 1), so it has none.
                "peak_fraction": (m.weights_name() != "int8").then(|| flops / secs / peak)})
        )?;
        if let Some((l, head)) = &tch_model {
            let pad = l.tok.special().pad;
            let (secs, p50) = time_in_batches(&inputs, bs, |chunk| {
                let enc = crate::train::encode_all(&l.tok, &l.prompt, crate::train::Method::Prompt, chunk)?;
                crate::train::softmax_rows(&crate::train::predict_logits(&l.model, head, &enc, pad, bs)?);
                Ok(())
            })?;
            outln!(
                "{}",
                serde_json::json!({"impl": "lmbff-tch", "batch": bs, "threads": a.threads, "n": inputs.len(),
                    "examples_per_sec": inputs.len() as f64 / secs, "p50_ms": p50})
            )?;
        }
    }
    if a.shared {
        // --threads 0 is all cores: that many single-threaded sessions (at most a
        // predictor's MAX_SESSIONS) beside one session of them all.
        let cores = match a.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Each line names the threads a session got (all cores for 0, as asked).
        for (sessions, threads) in [(1, cores), (cores.min(crate::serve::MAX_SESSIONS), 1)] {
            let opts = PredictorOptions { threads, sessions, ort_library: a.ort_lib.clone(), ..Default::default() };
            let p = Predictor::open(&a.export, &opts)?;
            p.predict(&inputs[..8.min(inputs.len())])?;
            for callers in [1, 2, 4] {
                let eps = shared_throughput(&p, &inputs, callers)?;
                outln!(
                    "{}",
                    serde_json::json!({"impl": "lmbff-ort-shared", "sessions": sessions, "threads_per_session": threads,
                        "callers": callers, "batch": 8, "examples_per_sec": eps})
                )?;
            }
        }
    }
    Ok(())
}

/// Runs `f` over `inputs` in consecutive batches of `bs` after one untimed warm-up batch;
/// returns the total seconds and the median per-batch latency in ms.
fn time_in_batches(inputs: &[Example], bs: usize, mut f: impl FnMut(&[Example]) -> Result<()>) -> Result<(f64, f64)> {
    f(&inputs[..bs.min(inputs.len())])?;
    let mut lat = Vec::new();
    let t = std::time::Instant::now();
    for chunk in inputs.chunks(bs) {
        let c = std::time::Instant::now();
        f(chunk)?;
        lat.push(c.elapsed().as_secs_f64() * 1e3);
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok((secs, lat[lat.len() / 2]))
}

/// Throughput of one predictor shared by `callers` threads, each predicting its share of
/// `inputs` in batches of 8.
fn shared_throughput(p: &Predictor, inputs: &[Example], callers: usize) -> Result<f64> {
    let t = std::time::Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..callers)
            .map(|k| {
                s.spawn(move || -> Result<()> {
                    let mine: Vec<Example> = inputs.iter().skip(k).step_by(callers).cloned().collect();
                    for chunk in mine.chunks(8) {
                        p.predict(chunk)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().expect("a caller panicked"))
    })?;
    Ok(inputs.len() as f64 / t.elapsed().as_secs_f64())
}

fn task_defaults() -> TaskArgs {
    TaskArgs { template: None, labels: None, max_len: None, first_sent_limit: None, other_sent_limit: None, device: "cpu".into(), threads: None }
}
