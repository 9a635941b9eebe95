//! Label words (the verbalizer): one vocabulary token per class, checked against the
//! tokenizer. Byte-level BPE vocabularies use the leading-space form (`Ġgreat`), as the
//! word follows a space in every template.

use crate::tokenize::{Tokenizer, WordBoundary};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verbalizer {
    labels: Vec<String>,
    words: Vec<String>,
    ids: Vec<u32>,
}

impl Verbalizer {
    /// Builds a verbalizer from `(label, word)` pairs; the order gives class indices.
    pub fn new(tok: &Tokenizer, pairs: &[(String, String)]) -> Result<Self> {
        if pairs.len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "a task needs at least two labels, got {}",
                pairs.len()
            )));
        }
        let mut v = Verbalizer { labels: vec![], words: vec![], ids: vec![] };
        for (label, word) in pairs {
            let bad = |message: String| Error::LabelWord { label: label.clone(), word: word.clone(), message };
            if v.labels.contains(label) {
                return Err(bad("this label is listed twice".into()));
            }
            let trimmed = word.trim();
            if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
                return Err(bad("a label word is one word, with no spaces".into()));
            }
            let form = match tok.word_boundary() {
                WordBoundary::LeadingSpace => format!(" {trimmed}"),
                WordBoundary::Ignored => trimmed.to_string(),
            };
            let ids = tok.encode_piece(&form)?;
            if ids.len() != 1 {
                let pieces: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap_or_default()).collect();
                return Err(bad(format!(
                    "it is not a single token of this vocabulary (it splits into {pieces:?}); pick a word that is"
                )));
            }
            let unk = ["[UNK]", "<unk>"].iter().filter_map(|t| tok.token_to_id(t)).any(|u| u == ids[0]);
            if unk {
                return Err(bad("it is not in the vocabulary (it encodes as the unknown token)".into()));
            }
            if let Some(other) = v.ids.iter().position(|&i| i == ids[0]) {
                return Err(bad(format!("it is the same token as label {:?}'s word", v.labels[other])));
            }
            v.labels.push(label.clone());
            v.words.push(trimmed.to_string());
            v.ids.push(ids[0]);
        }
        Ok(v)
    }

    /// Parses LM-BFF's mapping syntax, `{'0':'terrible','1':'great'}`, or JSON.
    pub fn parse_mapping(tok: &Tokenizer, mapping: &str) -> Result<Self> {
        let json = mapping.replace('\'', "\"");
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json)
            .map_err(|e| Error::InvalidArgument(format!("label mapping {mapping:?} is not `{{'label':'word',...}}`: {e}")))?;
        let pairs: Vec<(String, String)> = map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(w) => Ok((k, w)),
                other => Err(Error::InvalidArgument(format!("label {k:?} maps to {other}, not a word"))),
            })
            .collect::<Result<_>>()?;
        Self::new(tok, &pairs)
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Token id of each class's label word, in class order.
    pub fn token_ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// Class index of a label name.
    pub fn index_of(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }
}
