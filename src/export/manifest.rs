//! The export manifest, `lmbff-export.json`: everything a host needs, next to
//! `model.onnx` and `tokenizer.json`, to turn texts into the model's inputs and its
//! outputs into labels, in any language. docs/export.md specifies the rendering
//! algorithm; tests/python/render_from_manifest.py reimplements it from this file alone.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::prompt::{Case, Part, Template, Truncation};
use crate::tokenize::{Tokenizer, WordBoundary};
use crate::{Error, Result};

pub const EXPORT_MANIFEST: &str = "lmbff-export.json";
/// Graph outputs: class probabilities and label-word logits [batch, labels], and the
/// regression score [batch, 1] of regression exports. A multi-label sentence-embedding
/// graph gives each label's P(yes) as `probs` [batch, multi-labels] and the yes/no
/// logits of every label side by side as `label_logits` [batch, 2 x multi-labels].
pub const OUTPUT_PROBS: &str = "probs";
pub const OUTPUT_LOGITS: &str = "label_logits";
pub const OUTPUT_SCORE: &str = "score";
/// The output of a demonstration filter's sentence encoder: the normalised mean-pooled
/// embedding, float [batch, hidden].
pub const OUTPUT_EMBEDDING: &str = "embedding";
/// Files of a demonstration filter's sentence encoder in an export directory.
pub const DEMO_ENCODER_FILE: &str = "demo-encoder.onnx";
pub const DEMO_TOKENIZER_FILE: &str = "demo-tokenizer.json";
pub const EXPORT_FORMAT: &str = "lmbff-export";
/// Readers accept this version and older ones; fields are only ever added. Version 2
/// added `demonstrations`, version 3 the method "sentence-embedding", version 4
/// `label_word_tokens` (several or multi-token label words), version 5
/// `demonstrations.filter` (similarity-filtered demonstrations), version 6 `multi_label`,
/// version 7 multi-label sentence-embedding exports (a yes/no head per label in the
/// graph), version 8 `truncation.demonstrations_first` (with demonstrations, theirs are
/// cut before the query's sentences); an export is written with the lowest version that describes it (a prompt
/// export without demonstrations: 1).
pub const EXPORT_FORMAT_VERSION: u32 = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportManifest {
    /// Always "lmbff-export".
    pub format: String,
    pub format_version: u32,
    pub lmbff_version: String,
    /// "classification", "regression" (two pole words; see `regression`) or
    /// "multi-label" (see `multi_label`).
    pub task: String,
    /// Regression: the score is `low + (high - low) * probs[1]` (label 1 is the upper
    /// pole), as LM-BFF maps STS-B's 0-5 range; the graph outputs it as `score`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionRange>,
    /// Multi-label: `labels` are the classes of each label's yes/no decision (no, yes)
    /// and a label applies when its P(yes) reaches `threshold`. Method "prompt": one
    /// yes/no prompt per label, each input read once per label as the pair (input,
    /// label name). Method "sentence-embedding": each input read once (`template` is the
    /// plain reading of one sentence), one yes/no head per label in the graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<MultiLabelSpec>,
    /// "prompt": label words' logits at the template's mask (LM-BFF). "sentence-embedding":
    /// a linear classifier (inside the graph) on the mean of the last hidden states over
    /// the real tokens, L2-normalised; `template` is then the plain reading
    /// (`[CLS] text [SEP]`) and the label words are unused.
    pub method: String,
    /// Class names, in the order of the model's outputs.
    pub labels: Vec<String>,
    /// Each class's words as given (several separated by `|`).
    pub label_words: Vec<String>,
    /// The scored tokens: every sub-token of every word of every class, class by class
    /// (one per class, in class order, when each class is one single-token word).
    pub label_word_ids: Vec<u32>,
    /// Only when a class has several words or a multi-token word (format version 4):
    /// the tokens that stand for each class where the template shows its word (its first
    /// word). Otherwise a class's word is `label_word_ids[class]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_word_tokens: Option<Vec<Vec<u32>>>,
    /// Temperature scaling inside the graph: `label_logits` are the class logits divided
    /// by it, `probs` their softmax (absent: not calibrated). Informational: a host
    /// needs to do nothing with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    pub template: TemplateSpec,
    /// Demonstrations appended to every input (null: none). See [`Demonstrations`].
    pub demonstrations: Option<Demonstrations>,
    pub tokenizer: TokenizerSpec,
    pub truncation: Truncation,
    pub model: ModelSpec,
    /// Facts about the training run (steps, seed, dev accuracy, source checkpoint).
    #[serde(default)]
    pub notes: serde_json::Map<String, serde_json::Value>,
}

/// LM-BFF's demonstrations at inference: each input is rendered once per set (the query
/// through the template, then each demonstration of the set through the template
/// without `cls`, its label word in place of the mask, in the segment of the query's
/// last token; docs/export.md), the graph run on every rendering, and the `label_logits`
/// averaged over the sets before the softmax. One set is one forward pass per input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Demonstrations {
    /// Fixed sets, the same for every input; each holds one labelled example per class
    /// (`label` is a class index). Empty with `filter`.
    pub sets: Vec<Vec<crate::prompt::Example>>,
    /// Similarity-filtered demonstrations (format version 5): each input's own sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<DemoFilter>,
}

/// Similarity-filtered demonstrations (LM-BFF's `demo_filter`). The sentence encoder
/// embeds every pool example and each input (its plain reading, `[CLS] text [SEP]`, cut
/// to `max_len` tokens); for each class, its pool examples are ranked by the dot product
/// of the embeddings with the input's (cosine similarity; ties: the earlier example) and
/// cut to the most similar half, rounded up. Set k (k = 0 .. sets-1) takes each class's
/// k-th example of that ranking, cycling (index k mod its length), classes in order; a
/// class with no example is left out of the sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoFilter {
    /// The labelled examples demonstrations are chosen from.
    pub pool: Vec<crate::prompt::Example>,
    /// Sets per input (one forward pass each).
    pub sets: usize,
    /// The sentence encoder's graph (inputs as `inputs`, int64 [batch, sequence]; output
    /// `embedding`, float [batch, hidden]), always stored in fp32.
    pub file: String,
    pub inputs: Vec<String>,
    pub tokenizer: TokenizerSpec,
    /// Longest encoder input, in tokens (the sentences are cut, longest first).
    pub max_len: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiLabelSpec {
    /// The labels' names, in output order; each is the second sentence of its prompt.
    pub labels: Vec<String>,
    pub threshold: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionRange {
    pub low: f32,
    pub high: f32,
}

impl ModelSpec {
    /// "fp32", "fp16" or "int8".
    pub fn weights_name(&self) -> &'static str {
        match self.weights {
            WeightType::Fp32 => "fp32",
            WeightType::Fp16 => "fp16",
            WeightType::Int8 => "int8",
        }
    }
}

impl RegressionRange {
    /// Whether scores over the range are finite numbers: both ends finite, `low < high`,
    /// and the span between them an f32 too (-3e38..3e38 is not: every score would be
    /// infinite, or NaN at a probability of 0).
    pub fn is_valid(&self) -> bool {
        self.low.is_finite() && self.high.is_finite() && self.low < self.high && (self.high - self.low).is_finite()
    }

    /// The score for the upper pole's probability.
    pub fn score(&self, p_upper: f32) -> f32 {
        self.low + (self.high - self.low) * p_upper
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateSpec {
    /// As the user wrote it (either syntax).
    pub source: String,
    /// Resolved parts, rendered in order.
    pub parts: Vec<PartSpec>,
}

/// One template part. `sentence` parts are the only ones truncation may shorten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PartSpec {
    Cls,
    Mask,
    /// A separator; with `next_segment` the following tokens get the next token type id.
    Sep { next_segment: bool },
    Sentence { index: usize, space: bool, case: CaseSpec, drop_last: bool },
    /// The word of a fixed label (`label_word_tokens[label]`, or `[label_word_ids[label]]`).
    LabelWord { label: usize },
    /// Literal text, tokenized without special tokens.
    Text { text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseSpec {
    Keep,
    LowerFirst,
    UpperFirst,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerSpec {
    /// File name inside the export directory.
    pub file: String,
    /// "leading_space" (byte-level BPE: `space` parts get a leading space) or "ignored".
    pub word_boundary: String,
    pub special_tokens: SpecialSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialSpec {
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    pub pad: u32,
    pub unk: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub file: String,
    /// External data file beside `file`, if the weights are stored outside it.
    pub external_data: Option<String>,
    /// "bert", "roberta" or "mpnet".
    pub architecture: String,
    /// Graph inputs in order (int64 [batch, sequence]); `token_type_ids` only for BERT.
    pub inputs: Vec<String>,
    /// Graph outputs: `probs`, `label_logits` (float [batch, labels]) and, for
    /// regression, `score` (float [batch, 1]).
    pub outputs: Vec<String>,
    pub opset: i64,
    pub ir_version: i64,
    pub weights: WeightType,
    pub hidden_size: i64,
    pub layers: i64,
    /// Longest input the position embeddings allow (tokens).
    pub max_positions: i64,
    /// The model's version: FNV-1a 64 over the graphs (external data included), the
    /// tokenizers and this manifest with the field empty (docs/export.md).
    pub version: String,
}

impl PartSpec {
    pub fn from_part(p: &Part) -> Result<Self> {
        Ok(match p {
            Part::Cls => PartSpec::Cls,
            Part::Mask => PartSpec::Mask,
            Part::Sep { next_segment } => PartSpec::Sep { next_segment: *next_segment },
            Part::Sentence { index, space, case, drop_last } => PartSpec::Sentence {
                index: *index,
                space: *space,
                case: match case {
                    Case::Keep => CaseSpec::Keep,
                    Case::LowerFirst => CaseSpec::LowerFirst,
                    Case::UpperFirst => CaseSpec::UpperFirst,
                },
                drop_last: *drop_last,
            },
            Part::LabelWord { label, .. } => PartSpec::LabelWord { label: *label },
            Part::Text(t) => PartSpec::Text { text: t.clone() },
            Part::OwnLabelWord { .. } => {
                return Err(Error::InvalidArgument("a query template cannot show the example's own label word".into()))
            }
        })
    }

    pub fn to_part(&self) -> Part {
        match self {
            PartSpec::Cls => Part::Cls,
            PartSpec::Mask => Part::Mask,
            PartSpec::Sep { next_segment } => Part::Sep { next_segment: *next_segment },
            PartSpec::Sentence { index, space, case, drop_last } => Part::Sentence {
                index: *index,
                space: *space,
                case: match case {
                    CaseSpec::Keep => Case::Keep,
                    CaseSpec::LowerFirst => Case::LowerFirst,
                    CaseSpec::UpperFirst => Case::UpperFirst,
                },
                drop_last: *drop_last,
            },
            PartSpec::LabelWord { label } => Part::LabelWord { label: *label, space: false },
            PartSpec::Text { text } => Part::Text(text.clone()),
        }
    }
}

impl TemplateSpec {
    pub fn of(t: &Template) -> Result<Self> {
        Ok(TemplateSpec { source: t.source().to_string(), parts: t.parts().iter().map(PartSpec::from_part).collect::<Result<_>>()? })
    }

    pub fn template(&self) -> Result<Template> {
        Template::from_parts(&self.source, self.parts.iter().map(PartSpec::to_part).collect())
    }

    /// The plain reading of a sentence-embedding export (no mask).
    pub fn plain_template(&self) -> Result<Template> {
        Template::plain_from_parts(self.parts.iter().map(PartSpec::to_part).collect())
    }
}

impl TokenizerSpec {
    pub fn of(tok: &Tokenizer, file: &str) -> Self {
        let s = tok.special();
        TokenizerSpec {
            file: file.into(),
            word_boundary: match tok.word_boundary() {
                WordBoundary::LeadingSpace => "leading_space",
                WordBoundary::Ignored => "ignored",
            }
            .into(),
            special_tokens: SpecialSpec { cls: s.cls, sep: s.sep, mask: s.mask, pad: s.pad, unk: s.unk },
        }
    }
}

impl ExportManifest {
    /// Whether the graph holds a yes/no head per label (a multi-label sentence-embedding
    /// export) rather than reading each (input, label name) pair.
    pub fn multi_label_heads(&self) -> bool {
        self.method == crate::checkpoint::METHOD_EMBEDDING && self.multi_label.is_some()
    }

    /// The graph output class predictions read: `label_logits` when they average over
    /// demonstration sets (fixed ones, or each input's own when similarity-filtered),
    /// else `probs`.
    pub fn predicted_output(&self) -> &'static str {
        if self.demonstrations.as_ref().is_some_and(|d| !d.sets.is_empty() || d.filter.is_some()) {
            OUTPUT_LOGITS
        } else {
            OUTPUT_PROBS
        }
    }

    /// Columns of graph output `name` per input: 1 for `score`; for a multi-label
    /// sentence-embedding export the labels (`probs`) or their yes/no pairs
    /// (`label_logits`); otherwise the classes.
    pub fn output_width(&self, name: &str) -> usize {
        match (&self.multi_label, name) {
            (_, OUTPUT_SCORE) => 1,
            (Some(m), OUTPUT_PROBS) if self.multi_label_heads() => m.labels.len(),
            (Some(m), OUTPUT_LOGITS) if self.multi_label_heads() => 2 * m.labels.len(),
            _ => self.labels.len(),
        }
    }

    /// Reads the manifest of `dir`; every file it names must be a plain name inside `dir`
    /// (an export is one self-contained folder).
    pub fn read(dir: &Path) -> Result<Self> {
        let m: Self = crate::checkpoint::read_versioned(dir, EXPORT_MANIFEST, EXPORT_FORMAT, EXPORT_FORMAT_VERSION, "export manifest")?;
        let mut files = vec![m.model.file.as_str(), m.tokenizer.file.as_str()];
        files.extend(m.model.external_data.as_deref());
        if let Some(f) = m.demonstrations.as_ref().and_then(|d| d.filter.as_ref()) {
            files.extend([f.file.as_str(), f.tokenizer.file.as_str()]);
        }
        let plain = |f: &str| {
            let mut parts = Path::new(f).components();
            matches!((parts.next(), parts.next()), (Some(std::path::Component::Normal(_)), None))
        };
        if let Some(bad) = files.into_iter().find(|f| !plain(f)) {
            return Err(Error::Format {
                path: dir.join(EXPORT_MANIFEST),
                message: format!("file {bad:?} is not a plain file name inside the export directory"),
            });
        }
        Ok(m)
    }

    pub fn write_into(&self, dir: &Path) -> Result<()> {
        let path = dir.join(EXPORT_MANIFEST);
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }
}

/// How float weight matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightType {
    /// fp32, as trained.
    Fp32,
    /// fp16 storage (half the file), cast to fp32 when the session loads: computation
    /// stays fp32.
    Fp16,
    /// Dynamic int8 quantisation of the linear layers (int8 weights, one scale per output
    /// column; activations quantised per call); embeddings, norms and the label rows fp32.
    Int8,
}

