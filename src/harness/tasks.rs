//! The tasks of LM-BFF's evaluation, as its data layout stores them, with the paper's
//! manual prompts (Table 1) and metrics.

use std::path::{Path, PathBuf};

use crate::data::read_tsv;
use crate::prompt::{Example, MultiLabel, Verbalizer};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

/// How a task's split files are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<split>.tsv` with a header row (GLUE).
    Tsv,
    /// `<split>.csv`, `label,sentence`, no header, quoted fields.
    Csv,
    /// CoLA's `<split>.tsv`: no header, four fields (source, label, the source's
    /// acceptability mark, sentence).
    Cola,
}

/// The paper's metric of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Acc,
    /// F1 of the positive class (label "1": paraphrase, duplicate).
    F1,
    /// Pearson correlation of the predicted score with the gold score (regression).
    Pearson,
    /// Multi-label micro-F1: F1 of "yes" over every (input, label) pair (the macro-F1
    /// over the labels is reported beside it).
    MicroF1,
    /// Matthews correlation of the predicted class with the gold class (CoLA; 0 when
    /// either is constant, as scikit-learn's).
    Matthews,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::F1 => "f1",
            Metric::Pearson => "pearson",
            Metric::MicroF1 => "micro-f1",
            Metric::Matthews => "mcc",
        }
    }

    /// The metric of class logits against gold class indices, or for Pearson against the
    /// gold `scores` (the prediction is p(upper pole); a constant prediction scores 0).
    pub fn score(self, logits: &[Vec<f32>], gold: &[usize], scores: &[f32]) -> f64 {
        match self {
            Metric::Pearson => crate::metrics::upper_pole_pearson(logits, scores),
            Metric::Acc => crate::metrics::accuracy(logits, gold),
            Metric::F1 => crate::metrics::f1_binary(&crate::metrics::argmax_rows(logits), gold, 1),
            Metric::MicroF1 => crate::metrics::f1_binary(&crate::prompt::decisions(logits), gold, 1),
            Metric::Matthews => crate::metrics::matthews(&crate::metrics::argmax_rows(logits), gold),
        }
    }
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
    /// Input length of the reference configuration where it is longer than the usual
    /// 128 (MNLI, SNLI, RTE: 256); the harness uses the longer of this and its own.
    pub max_len: Option<usize>,
    pub metric: Metric,
    /// File stem of the dev split ("dev"; MNLI's is "dev_matched").
    pub dev: &'static str,
    /// File stem of the test split ("test"; MNLI's is "test_matched": LM-BFF's data script
    /// writes GLUE's matched and mismatched dev sets as `test_matched`/`test_mismatched`).
    pub test: &'static str,
    /// Regression (STS-B): the range of the gold scores; an example's class is its side
    /// of the midpoint (label 0: lower pole, 1: upper), and training fits the scores.
    pub regression: Option<(f32, f32)>,
    /// A multi-label task built from a single-label one (see [`MultiSource`]); its
    /// examples are the yes/no pairs (input, label name) of `MultiLabel::expand`.
    pub multi_label: Option<MultiSource>,
    /// The k-shot folder may lack its test file (MNLI, SNLI, QQP: GLUE's dev sets, too
    /// large to ship in the shared copy): where it does, `glue_pretrain/<TASK>/dev.json`
    /// beside the k-shot folder is the test set, less every pair that also occurs in the
    /// seed's train or dev split ([`TaskSpec::test_from_pretrain`]).
    pub test_fallback: bool,
}

const SENTIMENT: &[(&str, &str)] = &[("0", "terrible"), ("1", "great")];
const IT_WAS: &str = "*cls**sent_0*_It_was*mask*.*sep+*";

/// A CSV task with the reference configuration's limits (first sentence 110 tokens,
/// demonstrations `other`).
const fn csv(name: &'static str, template: &'static str, labels: &'static [(&'static str, &'static str)], other: Option<usize>) -> TaskSpec {
    TaskSpec {
        name,
        format: Format::Csv,
        template,
        labels,
        first_sent_limit: Some(110),
        other_sent_limit: other,
        max_len: None,
        metric: Metric::Acc,
        dev: "dev",
        test: "test",
        regression: None,
        multi_label: None,
        test_fallback: false,
    }
}

/// A GLUE sentence-pair task (TSV with its own columns) scored by `metric`.
const fn pair(name: &'static str, template: &'static str, labels: &'static [(&'static str, &'static str)], metric: Metric) -> TaskSpec {
    TaskSpec {
        name,
        format: Format::Tsv,
        template,
        labels,
        first_sent_limit: None,
        other_sent_limit: None,
        max_len: None,
        metric,
        dev: "dev",
        test: "test",
        regression: None,
        multi_label: None,
        test_fallback: false,
    }
}

/// How a multi-label task is built from a single-label task's splits (no multi-label set
/// ships with LM-BFF's data): each split's inputs are shuffled (a generator seeded by the
/// data seed and the split) and joined in groups of 1, 2 or 3 (drawn uniformly; the last
/// group takes what is left), texts separated by a space; a group's labels are the set of
/// its members' classes, named by `names` (the label words of the source task). Every
/// source input is used once, so train, dev and test stay disjoint as the source's are.
#[derive(Debug, Clone, Copy)]
pub struct MultiSource {
    pub source: &'static str,
    pub names: &'static [&'static str],
    pub max_group: usize,
}

const NLI: &str = "*cls**sent-_0*?*mask*,*+sentl_1**sep+*";
const PARAPHRASE: &str = "*cls**sent_0**mask*,*+sentl_1**sep+*";
const THREE_WAY: &[(&str, &str)] = &[("contradiction", "No"), ("entailment", "Yes"), ("neutral", "Maybe")];
const TWO_WAY: &[(&str, &str)] = &[("entailment", "Yes"), ("not_entailment", "No")];
const YES_NO: &[(&str, &str)] = &[("0", "No"), ("1", "Yes")];

/// The seven single-sentence tasks (all scored by accuracy) and CoLA (Matthews), then
/// the six sentence-pair tasks, with the manual prompts and the per-task settings of
/// LM-BFF's configuration.
pub const TASKS: &[TaskSpec] = &[
    pair("SST-2", IT_WAS, SENTIMENT, Metric::Acc),
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
    TaskSpec { format: Format::Cola, ..pair("CoLA", "*cls**sent_0*_This_is*mask*.*sep+*", &[("0", "incorrect"), ("1", "correct")], Metric::Matthews) },
    TaskSpec { max_len: Some(256), dev: "dev_matched", test: "test_matched", test_fallback: true, ..pair("MNLI", NLI, THREE_WAY, Metric::Acc) },
    TaskSpec { max_len: Some(256), test_fallback: true, ..pair("SNLI", NLI, THREE_WAY, Metric::Acc) },
    pair("QNLI", NLI, TWO_WAY, Metric::Acc),
    TaskSpec { max_len: Some(256), first_sent_limit: Some(240), ..pair("RTE", NLI, TWO_WAY, Metric::Acc) },
    pair("MRPC", PARAPHRASE, YES_NO, Metric::F1),
    TaskSpec { test_fallback: true, ..pair("QQP", PARAPHRASE, YES_NO, Metric::F1) },
    TaskSpec { regression: Some((0.0, 5.0)), ..pair("STS-B", PARAPHRASE, YES_NO, Metric::Pearson) },
    // Multi-label, built from TREC: which kinds of answer do the joined questions ask for?
    TaskSpec {
        multi_label: Some(MultiSource { source: "trec", names: &["Description", "Entity", "Expression", "Human", "Location", "Number"], max_group: 3 }),
        other_sent_limit: None,
        metric: Metric::MicroF1,
        ..csv("trec-multi", "*cls**sent_0*_Does_it_ask_for*+sentl_1*?*mask*.*sep+*", YES_NO, None)
    },
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

    /// The file of `split` (train, dev, test) for data seed `seed` under the k-shot root
    /// (`dev` and `test` are the task's dev and test files; a test taken from
    /// glue_pretrain, [`TaskSpec::test_from_pretrain`], is its dev.json).
    pub fn file(&self, root: &Path, seed: u64, split: &str) -> PathBuf {
        if split == "test" && self.test_from_pretrain(root, seed) {
            return self.pretrain_test_file(root);
        }
        self.kshot_file(root, seed, split)
    }

    /// The file of `split` in the seed's k-shot folder, whether or not it is there.
    fn kshot_file(&self, root: &Path, seed: u64, split: &str) -> PathBuf {
        let ext = match self.format {
            Format::Tsv | Format::Cola => "tsv",
            Format::Csv => "csv",
        };
        let stem = match split {
            "dev" => self.dev,
            "test" => self.test,
            other => other,
        };
        root.join(self.name)
            .join(format!("16-{seed}"))
            .join(format!("{stem}.{ext}"))
    }

    /// `glue_pretrain/<TASK>/dev.json` beside the k-shot folder: the test set of a task
    /// whose k-shot folder lacks its test file.
    fn pretrain_test_file(&self, root: &Path) -> PathBuf {
        root.parent().unwrap_or(Path::new("..")).join("glue_pretrain").join(self.name).join("dev.json")
    }

    /// Whether the test split of `seed` comes from glue_pretrain: the task allows it
    /// (MNLI, SNLI, QQP) and the seed's k-shot folder has no test file of its own (the
    /// shared copy's; LM-BFF's data script writes one, read before any fallback).
    pub fn test_from_pretrain(&self, root: &Path, seed: u64) -> bool {
        self.test_fallback && !self.kshot_file(root, seed, "test").is_file()
    }

    /// The file the test split of `seed` is read from (a multi-label task's: its source
    /// task's), recorded with each result.
    pub fn test_file(&self, root: &Path, seed: u64) -> Result<PathBuf> {
        match &self.multi_label {
            Some(m) => task(m.source)?.test_file(root, seed),
            None => Ok(self.file(root, seed, "test")),
        }
    }

    /// Reads one split as labelled examples. A test split taken from glue_pretrain is
    /// returned whole; [`TaskSpec::read_test`] drops what the seed's splits hold.
    pub fn read(&self, root: &Path, seed: u64, split: &str) -> Result<Vec<Example>> {
        if let Some(m) = &self.multi_label {
            let (inputs, sets) = m.build(root, seed, split)?;
            return m.labels()?.expand(&inputs, Some(&sets));
        }
        let path = self.file(root, seed, split);
        let names = self.label_names();
        if split == "test" && self.test_from_pretrain(root, seed) {
            if !path.is_file() {
                // Neither file: both are named (the fallback's alone would hide the first).
                return Err(Error::MissingFile {
                    dir: root.join(self.name).join(format!("16-{seed}")),
                    what: "test split",
                    looked_for: format!("{}, then {}", self.kshot_file(root, seed, "test").display(), path.display()),
                });
            }
            return read_json_pairs(&path, &names);
        }
        if let Some((low, high)) = self.regression {
            let mid = (low + high) / 2.0;
            return self.scores(root, seed, split)?.into_iter().zip(read_tsv(&path)?).map(|(v, r)| {
                Ok(Example { text_a: r.text_a, text_b: r.text_b, label: Some(usize::from(v > mid)) })
            }).collect();
        }
        match self.format {
            Format::Tsv => crate::data::to_examples(&read_tsv(&path)?, &names, &path),
            Format::Csv => crate::data::read_csv_examples(&path, &names),
            Format::Cola => read_cola(&path, &names),
        }
    }

    /// The task's whole training data, glue_pretrain's `train.json` (90% of the original
    /// training set) or `dev.json` (10%) beside the k-shot folder, for the full-data
    /// ceiling. Classification tasks only.
    pub fn read_full(&self, root: &Path, split: &str) -> Result<Vec<Example>> {
        if self.regression.is_some() || self.multi_label.is_some() {
            return Err(Error::InvalidArgument(format!("{}: the full-data ceiling is for classification tasks", self.name)));
        }
        let parent = root.parent().unwrap_or(Path::new(".."));
        read_json_pairs(&parent.join("glue_pretrain").join(self.name).join(format!("{split}.json")), &self.label_names())
    }

    /// The gold scores of a regression task's split, in file order (checked against its
    /// range).
    pub fn scores(&self, root: &Path, seed: u64, split: &str) -> Result<Vec<f32>> {
        let (low, high) = self.regression.ok_or_else(|| Error::InvalidArgument(format!("{} is not a regression task", self.name)))?;
        let path = self.file(root, seed, split);
        read_tsv(&path)?
            .into_iter()
            .map(|r| match r.label.trim().parse::<f32>() {
                Ok(v) if (low..=high).contains(&v) => Ok(v),
                _ => Err(Error::Data { path: path.clone(), line: r.line, message: format!("score {:?} is not a number in {low}..{high}", r.label) }),
            })
            .collect()
    }

    /// The test split, less any input that also occurs in `seen` (the seed's train and
    /// dev) where it comes from glue_pretrain (only its text can overlap them), and how
    /// many were dropped.
    pub fn read_test(&self, root: &Path, seed: u64, seen: &[&[Example]]) -> Result<(Vec<Example>, usize)> {
        let test = self.read(root, seed, "test")?;
        if !self.test_from_pretrain(root, seed) {
            return Ok((test, 0));
        }
        let known: std::collections::HashSet<(&str, Option<&str>)> =
            seen.iter().flat_map(|s| s.iter()).map(|e| (e.text_a.as_str(), e.text_b.as_deref())).collect();
        let n = test.len();
        let kept: Vec<Example> = test.into_iter().filter(|e| !known.contains(&(e.text_a.as_str(), e.text_b.as_deref()))).collect();
        let dropped = n - kept.len();
        Ok((kept, dropped))
    }
}

impl MultiSource {
    /// The labels, named by the source task's label words.
    pub fn labels(&self) -> Result<MultiLabel> {
        MultiLabel::new(&self.names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    }

    /// The joined inputs of `split` and the label set of each.
    pub fn build(&self, root: &Path, seed: u64, split: &str) -> Result<(Vec<Example>, Vec<Vec<usize>>)> {
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let source = task(self.source)?;
        let ex = source.read(root, seed, split)?;
        let split_code = split.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) ^ split_code);
        let mut order: Vec<usize> = (0..ex.len()).collect();
        order.shuffle(&mut rng);
        let (mut inputs, mut sets) = (Vec::new(), Vec::new());
        let mut rest = &order[..];
        while !rest.is_empty() {
            let k = rng.random_range(1..=self.max_group.max(1)).min(rest.len());
            let (group, tail) = rest.split_at(k);
            rest = tail;
            let text = group.iter().map(|&i| ex[i].text_a.as_str()).collect::<Vec<_>>().join(" ");
            let mut labels: Vec<usize> = group.iter().filter_map(|&i| ex[i].label).collect();
            labels.sort_unstable();
            labels.dedup();
            inputs.push(Example::single(text, None));
            sets.push(labels);
        }
        Ok((inputs, sets))
    }
}

/// glue_pretrain's `dev.json`: an object of `{"text_a", "text_b", "label"}` records.
fn read_json_pairs(path: &Path, labels: &[String]) -> Result<Vec<Example>> {
    #[derive(serde::Deserialize)]
    struct Record {
        text_a: String,
        text_b: Option<String>,
        /// A string ("entailment", "1") or a number (0).
        label: serde_json::Value,
    }
    let text = crate::data::read_utf8(path)?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_path_buf(), what: "a glue_pretrain split", source })?;
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        let r: Record = serde_json::from_value(value).map_err(|source| Error::Json { path: path.to_path_buf(), what: "a glue_pretrain record", source })?;
        let label = match &r.label {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        // A JSON object has no line to name: the record's key names it.
        let idx = labels.iter().position(|l| *l == label).ok_or_else(|| Error::Format {
            path: path.to_path_buf(),
            message: format!("record {key:?}: label {} is not one of {labels:?}", r.label),
        })?;
        out.push(Example { text_a: r.text_a, text_b: r.text_b, label: Some(idx) });
    }
    Ok(out)
}

/// CoLA's split files: no header; each line `source<TAB>label<TAB>mark<TAB>sentence`.
fn read_cola(path: &Path, labels: &[String]) -> Result<Vec<Example>> {
    let text = crate::data::read_utf8(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |message: String| Error::Data { path: path.to_path_buf(), line: i + 1, message };
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 4 {
            return Err(bad(format!("expected CoLA's 4 tab-separated fields (source, label, mark, sentence), found {}", f.len())));
        }
        let label = f[1].trim();
        let idx = labels.iter().position(|l| l == label).ok_or_else(|| bad(format!("label {label:?} is not one of {labels:?}")))?;
        out.push(Example::single(f[3], Some(idx)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CoLA's headerless rows: the label is the second field, the sentence the fourth
    /// (the third is the source's mark, `*` or empty); another layout names its line.
    #[test]
    fn cola_rows() {
        let dir = std::env::temp_dir().join(format!("lmbff-cola-{}", crate::checkpoint::tmp_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let labels = task("CoLA").unwrap().label_names();
        let f = dir.join("train.tsv");
        std::fs::write(&f, "gj04\t1\t\tThe sailors rode the breeze.\nbc01\t0\t*\tBill seems to be obnoxious that.\n").unwrap();
        let ex = read_cola(&f, &labels).unwrap();
        let got: Vec<(&str, Option<usize>)> = ex.iter().map(|e| (e.text_a.as_str(), e.label)).collect();
        assert_eq!(got, [("The sailors rode the breeze.", Some(1)), ("Bill seems to be obnoxious that.", Some(0))]);
        std::fs::write(&f, "gj04\t1\t\tFine.\nsentence\tlabel\n").unwrap();
        let e = read_cola(&f, &labels).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("found 2"), "{e}");
        assert_eq!(task("cola").unwrap().metric, Metric::Matthews);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A quote left open is an error naming the line it starts on, not rows silently
    /// swallowed into one field; quoted commas are kept.
    #[test]
    fn csv_rows_and_an_open_quote() {
        let dir = std::env::temp_dir().join(format!("lmbff-csv-{}", crate::checkpoint::tmp_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let labels = vec!["0".to_string(), "1".to_string()];
        let good = dir.join("good.csv");
        std::fs::write(&good, "1,\"fun, warm\"\n0,dull\n").unwrap();
        let rows = crate::data::read_csv_examples(&good, &labels).unwrap();
        assert_eq!((rows.len(), rows[0].text_a.as_str()), (2, "fun, warm"));
        let open = dir.join("open.csv");
        std::fs::write(&open, "1,fine\n0,\"never closed\n1,lost\n0,lost too\n").unwrap();
        let e = crate::data::read_csv_examples(&open, &labels).unwrap_err().to_string();
        assert!(e.contains("open.csv, line 2") && e.contains("a quote left open"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
