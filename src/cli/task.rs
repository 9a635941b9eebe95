//! What every command shares: the task definition (template, labels, lengths) and
//! loading a model with its tokenizer.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::checkpoint::{Manifest, MANIFEST_FILE};
use crate::model::{parse_device, MaskedLm};
use crate::prompt::{Prompt, Template, Truncation, Verbalizer};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

/// Labels when neither `--labels` nor a manifest gives them (SST-2's words).
pub const DEFAULT_LABELS: &str = "0=terrible,1=great";
pub const DEFAULT_TEMPLATE: &str = "{text} It was {mask}.";

#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// Template, readable (`{text} It was {mask}.`) or LM-BFF syntax (`*cls**sent_0*_It_was*mask*.*sep+*`).
    /// Default: the checkpoint's manifest, else `{text} It was {mask}.`
    #[arg(long)]
    pub template: Option<String>,
    /// Labels and their words, in class order: `0=terrible,1=great`, or LM-BFF's
    /// `{'0':'terrible','1':'great'}`. Default: the manifest's, else `0=terrible,1=great`.
    #[arg(long)]
    pub labels: Option<String>,
    /// Maximum input length in tokens. Default: the manifest's, else 128.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Token limit of the first sentence (LM-BFF's first_sent_limit). Default: the manifest's.
    #[arg(long, value_parser = super::at_least_one)]
    pub first_sent_limit: Option<usize>,
    /// Token limit of the other sentences (LM-BFF's other_sent_limit). Default: the manifest's.
    #[arg(long, value_parser = super::at_least_one)]
    pub other_sent_limit: Option<usize>,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch intra-op threads (process-wide; 0: all cores); default: libtorch's choice.
    #[arg(long)]
    pub threads: Option<i32>,
}

/// A model, its tokenizer and the task's prompt.
pub struct Loaded {
    pub dir: PathBuf,
    pub tok: Tokenizer,
    pub model: MaskedLm,
    pub prompt: Prompt,
}

impl Loaded {
    /// Says so when the masked-LM head is new (prompting such a model is near chance).
    pub fn note_new_head(&self) {
        if self.model.load_report().head_initialised {
            eprintln!(
                "note: {} has no masked-LM head; a new one was initialised (decoder tied to the word embeddings). \
                 Adapt it on unlabeled text (`lmbff adapt`) before prompting.",
                self.dir.display()
            );
        }
    }
}

pub fn parse_labels(tok: &Tokenizer, spec: &str) -> Result<Verbalizer> {
    if spec.trim_start().starts_with('{') {
        return Verbalizer::parse_mapping(tok, spec);
    }
    let pairs = spec
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').ok_or_else(|| Error::InvalidArgument(format!("label spec {kv:?}: expected label=word")))?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() {
                return Err(Error::InvalidArgument(format!("label spec {kv:?}: the label's name is empty (label=word)")));
            }
            if v.contains('=') {
                return Err(Error::InvalidArgument(format!("label spec {kv:?}: one '=' between the label and its word (label=word)")));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Verbalizer::new(tok, &pairs)
}

impl TaskArgs {
    /// Whether a saved model's prompt is read as it was saved: no template, labels or
    /// lengths given in its place.
    pub fn reads_as_saved(&self) -> bool {
        self.given_template().is_none()
            && self.labels.is_none()
            && self.max_len.is_none()
            && self.first_sent_limit.is_none()
            && self.other_sent_limit.is_none()
    }

    /// `--template` as given, without the space around it.
    fn given_template(&self) -> Option<String> {
        self.template.as_deref().map(|t| t.trim().to_string())
    }

    /// The template a pretrained model (no lmbff.json) is read through: `--template`, or
    /// the default.
    pub fn pretrained_template(&self) -> Result<Template> {
        Template::parse(&self.given_template().unwrap_or_else(|| DEFAULT_TEMPLATE.into()))
    }

    pub fn load(&self, dir: &Path, seed: u64) -> Result<Loaded> {
        if let Some(n) = self.threads {
            tch::set_num_threads(crate::torch_threads(n.into(), "--threads")?);
        }
        if !dir.is_dir() {
            let what = if dir.exists() { "is a file, not a model folder" } else { "does not exist" };
            return Err(Error::InvalidArgument(format!("model directory {} {what}", dir.display())));
        }
        // A model directory without lmbff.json is an ordinary HF model; a broken or too
        // new manifest is an error, not a silent fallback to defaults.
        if !dir.join("config.json").exists() && dir.join(crate::export::EXPORT_MANIFEST).exists() {
            return Err(Error::InvalidArgument(format!(
                "{} is an ONNX export ({}), not a model folder: `lmbff predict --export` serves it",
                dir.display(),
                crate::export::EXPORT_MANIFEST
            )));
        }
        if let Some(n) = self.max_len.filter(|&n| n < 4) {
            return Err(Error::InvalidArgument(format!("--max-len {n} is too small: an input needs at least 4 tokens")));
        }
        let manifest = if dir.join(MANIFEST_FILE).exists() { Some(Manifest::read(dir)?) } else { None };
        let tok = Tokenizer::from_dir(dir)?;
        // A template given here is trimmed (a config file's newline is no text of it); a
        // saved one is read as the model was trained with it.
        let template = self
            .given_template()
            .or_else(|| manifest.as_ref().and_then(|m| m.template.clone()))
            .unwrap_or_else(|| DEFAULT_TEMPLATE.into());
        let verbalizer = match (&self.labels, &manifest) {
            (Some(spec), _) => parse_labels(&tok, spec)?,
            (None, Some(m)) => m.verbalizer(&tok)?,
            (None, None) => parse_labels(&tok, DEFAULT_LABELS)?,
        };
        let template = Template::parse(&template)?;
        let device = parse_device(&self.device)?;
        // Seeded before loading: a checkpoint without a head gets a repeatable new one.
        tch::manual_seed(seed as i64);
        let model = MaskedLm::load(dir, device)?;
        // The default length fits the model; one asked for (or saved) must.
        let positions = model.config.max_input_len().max(0) as usize;
        let saved = manifest.as_ref().map(|m| m.truncation);
        let max_len = match (self.max_len, saved) {
            (Some(n), _) if n > positions => {
                return Err(Error::InvalidArgument(format!(
                    "--max-len {n} is longer than the model's {positions} positions (a model saved with it could not be exported)"
                )));
            }
            (None, Some(Truncation { max_len: n, .. })) if n > positions => {
                return Err(Error::InvalidArgument(format!(
                    "{}'s max_len {n} (its {MANIFEST_FILE}) is longer than the model's {positions} positions: give --max-len {positions} or less",
                    dir.display()
                )));
            }
            (Some(n), _) | (None, Some(Truncation { max_len: n, .. })) => n,
            (None, None) => Truncation::default().max_len.min(positions),
        };
        let saved = saved.unwrap_or_default();
        let truncation = Truncation {
            max_len,
            first_sent_limit: self.first_sent_limit.or(saved.first_sent_limit),
            other_sent_limit: self.other_sent_limit.or(saved.other_sent_limit),
            // A saved model keeps the rule it was trained with.
            demonstrations_first: saved.demonstrations_first,
        };
        let prompt = Prompt::new(template, verbalizer, truncation)?;
        for warning in prompt.warnings(&tok)? {
            eprintln!("warning: {warning}");
        }
        // A saved prompt read as saved: said when this lmbff renders it otherwise than
        // the one that trained the model (export refuses it; training from it, or scoring
        // it, goes on, said so).
        if let Some(Err(e)) = manifest.as_ref().filter(|_| self.reads_as_saved()).map(|m| m.check_rendering(&prompt, &tok, dir)) {
            eprintln!("warning: {e}");
        }
        Ok(Loaded { dir: dir.to_path_buf(), tok, model, prompt })
    }
}
