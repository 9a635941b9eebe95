//! export and predict: a trained model to an ONNX export directory, and predictions
//! from one through ONNX Runtime.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Args;

use super::progress::Bar;
use super::task::TaskArgs;
use crate::data::read_tsv;
use crate::export::{export, ExportOptions, WeightType};
use crate::prompt::Example;
use crate::serve::{Predictor, PredictorOptions};
use crate::train::{Progress, Stage};
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
    #[arg(long)]
    pub fp16: bool,
    /// Store weights in model.onnx.data beside model.onnx (automatic past 2 GiB).
    #[arg(long)]
    pub external_data: bool,
    /// Also write a Triton Inference Server model repository under triton/<NAME>/.
    #[arg(long, value_name = "NAME")]
    pub triton: Option<String>,
    /// Triton's max_batch_size.
    #[arg(long, default_value_t = 64)]
    pub triton_max_batch: usize,
    #[command(flatten)]
    pub task: TaskArgs,
}

pub fn export_cmd(mut a: ExportArgs) -> Result<()> {
    a.task.device = "cpu".into();
    let l = a.task.load(&a.model, 0)?;
    l.note_new_head();
    let notes = crate::checkpoint::Manifest::read(&a.model).map(|m| m.notes).unwrap_or_default();
    let opts = ExportOptions {
        weights: if a.fp16 { WeightType::Fp16 } else { WeightType::Fp32 },
        external_data: a.external_data,
        triton: a.triton.clone(),
        triton_max_batch: a.triton_max_batch,
    };
    let m = export(&l.model, &l.tok, &l.prompt, notes, &a.out, &opts)?;
    println!("{}", serde_json::json!({"out": a.out, "model_version": m.model.version, "labels": m.labels, "weights": m.model.weights}));
    Ok(())
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Export directory (from `lmbff export`).
    #[arg(long)]
    pub export: PathBuf,
    /// Inputs: a text file (one input per line; `text_a<TAB>text_b` for pair templates),
    /// a .tsv with a header (sentence columns as for training; a label column, if any,
    /// gives an accuracy on stderr), or `-` for stdin lines.
    #[arg(long, default_value = "-")]
    pub input: String,
    /// Largest batch run at once.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// libonnxruntime to load (default: LMBFF_ORT_LIB, ORT_DYLIB_PATH, next to the library).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
}

fn read_inputs(spec: &str) -> Result<(Vec<Example>, Option<Vec<String>>)> {
    let lines = |r: Box<dyn BufRead>| -> Result<Vec<Example>> {
        let mut out = Vec::new();
        for line in r.lines() {
            let line = line.map_err(|e| Error::io(spec, e))?;
            let (a, b) = match line.split_once('\t') {
                Some((a, b)) => (a.to_string(), Some(b.to_string())),
                None => (line, None),
            };
            out.push(Example { text_a: a, text_b: b, label: None });
        }
        Ok(out)
    };
    if spec == "-" {
        return Ok((lines(Box::new(std::io::stdin().lock()))?, None));
    }
    let path = PathBuf::from(spec);
    if path.extension().is_some_and(|e| e == "tsv") {
        let rows = read_tsv(&path)?;
        let gold = rows.iter().map(|r| r.label.clone()).collect();
        return Ok((rows.into_iter().map(|r| Example { text_a: r.text_a, text_b: r.text_b, label: None }).collect(), Some(gold)));
    }
    let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    Ok((lines(Box::new(std::io::BufReader::new(f)))?, None))
}

pub fn predict_cmd(a: PredictArgs) -> Result<()> {
    let opts = PredictorOptions { threads: a.threads, max_batch: a.batch_size, ort_library: a.ort_lib.clone(), ..Default::default() };
    let p = Predictor::open(&a.export, &opts)?;
    let (inputs, gold) = read_inputs(&a.input)?;
    let labels = p.labels().to_vec();
    let mut bar = Bar::new("predict");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut correct = 0usize;
    // Chunks of 1024 inputs: progress on long files, and length bucketing within each.
    for (c, chunk) in inputs.chunks(1024).enumerate() {
        let preds = p.predict(chunk)?;
        for (k, pr) in preds.iter().enumerate() {
            let i = c * 1024 + k;
            let probs: serde_json::Map<String, serde_json::Value> =
                labels.iter().zip(&pr.probs).map(|(l, v)| (l.clone(), serde_json::json!(v))).collect();
            let line = serde_json::json!({"index": i, "label": labels[pr.label], "probs": probs, "margin": pr.margin, "entropy": pr.entropy});
            writeln!(out, "{line}").map_err(|e| Error::io("stdout", e))?;
            if gold.as_ref().is_some_and(|g| g[i] == labels[pr.label]) {
                correct += 1;
            }
        }
        bar.update(Progress { stage: Stage::Evaluate, step: (c * 1024 + chunk.len()), total: inputs.len(), loss: f64::NAN, metric: f64::NAN });
    }
    bar.finish();
    out.flush().map_err(|e| Error::io("stdout", e))?;
    if gold.is_some() && !inputs.is_empty() {
        eprintln!("accuracy {:.4} ({correct}/{})", correct as f64 / inputs.len() as f64, inputs.len());
    }
    Ok(())
}
