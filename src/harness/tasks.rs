//! The tasks of LM-BFF's evaluation, as its data layout stores them, with the paper's
//! manual prompts (Table 1) and metrics.

use std::path::{Path, PathBuf};

use crate::data::read_tsv;
use crate::prompt::{Example, Verbalizer};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

/// How a task's split files are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<split>.tsv` with a header row (GLUE).
    Tsv,
    /// `<split>.csv`, `label,sentence`, no header, quoted fields.
    Csv,
}

/// One task of the benchmark.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Folder name under `k-shot/`.
    pub name: &'static str,
    pub format: Format,
    /// The paper's manual template, in LM-BFF's syntax.
    pub template: &'static str,
    /// (label as written in the files, label word), in class order.
    pub labels: &'static [(&'static str, &'static str)],
    /// Per-sentence token limits of the reference configuration.
    pub first_sent_limit: Option<usize>,
    pub other_sent_limit: Option<usize>,
}

const SENTIMENT: &[(&str, &str)] = &[("0", "terrible"), ("1", "great")];
const IT_WAS: &str = "*cls**sent_0*_It_was*mask*.*sep+*";

/// A CSV task with the reference configuration's limits (first sentence 110 tokens,
/// demonstrations `other`).
const fn csv(name: &'static str, template: &'static str, labels: &'static [(&'static str, &'static str)], other: Option<usize>) -> TaskSpec {
    TaskSpec { name, format: Format::Csv, template, labels, first_sent_limit: Some(110), other_sent_limit: other }
}

/// The seven single-sentence tasks (all scored by accuracy).
pub const TASKS: &[TaskSpec] = &[
    TaskSpec { name: "SST-2", format: Format::Tsv, template: IT_WAS, labels: SENTIMENT, first_sent_limit: None, other_sent_limit: None },
    csv("sst-5", IT_WAS, &[("0", "terrible"), ("1", "bad"), ("2", "okay"), ("3", "good"), ("4", "great")], Some(20)),
    csv("mr", IT_WAS, SENTIMENT, Some(50)),
    csv("cr", IT_WAS, SENTIMENT, Some(50)),
    csv("mpqa", IT_WAS, SENTIMENT, None),
    csv("subj", "*cls**sent_0*_This_is*mask*.*sep+*", &[("0", "subjective"), ("1", "objective")], Some(50)),
    csv(
        "trec",
        "*cls**mask*:*+sent_0**sep+*",
        &[("0", "Description"), ("1", "Entity"), ("2", "Expression"), ("3", "Human"), ("4", "Location"), ("5", "Number")],
        None,
    ),
];

/// The task named `name` (case-insensitive).
pub fn task(name: &str) -> Result<&'static TaskSpec> {
    TASKS
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown task {name:?}: the harness knows {}",
                TASKS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
            ))
        })
}

impl TaskSpec {
    /// Class names (labels as written in the files), in class order.
    pub fn label_names(&self) -> Vec<String> {
        self.labels.iter().map(|(l, _)| l.to_string()).collect()
    }

    /// The label words as a verbalizer over `tok` (each must be one token of it).
    pub fn verbalizer(&self, tok: &Tokenizer) -> Result<Verbalizer> {
        let pairs: Vec<(String, String)> = self.labels.iter().map(|(l, w)| (l.to_string(), w.to_string())).collect();
        Verbalizer::new(tok, &pairs)
    }

    /// The file of `split` (train, dev, test) for data seed `seed` under the k-shot root.
    pub fn file(&self, root: &Path, seed: u64, split: &str) -> PathBuf {
        let ext = match self.format {
            Format::Tsv => "tsv",
            Format::Csv => "csv",
        };
        root.join(self.name)
            .join(format!("16-{seed}"))
            .join(format!("{split}.{ext}"))
    }

    /// Reads one split as labelled examples.
    pub fn read(&self, root: &Path, seed: u64, split: &str) -> Result<Vec<Example>> {
        let path = self.file(root, seed, split);
        let names = self.label_names();
        match self.format {
            Format::Tsv => crate::data::to_examples(&read_tsv(&path)?, &names, &path),
            Format::Csv => read_csv(&path, &names),
        }
    }
}

/// `label,sentence` rows without a header (LM-BFF's CSV tasks).
fn read_csv(path: &Path, labels: &[String]) -> Result<Vec<Example>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let bad = |message: String| Error::Data {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let (Some(label), Some(text)) = (record.get(0), record.get(1)) else {
            return Err(bad(format!(
                "expected `label,sentence`, found {} field(s)",
                record.len()
            )));
        };
        let idx = labels
            .iter()
            .position(|l| l == label)
            .ok_or_else(|| bad(format!("label {label:?} is not one of {labels:?}")))?;
        out.push(Example::single(text, Some(idx)));
    }
    Ok(out)
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line() as usize);
    Error::Data {
        path: path.to_path_buf(),
        line,
        message: e.to_string(),
    }
}
