//! Tokenizer access: loads a Hugging Face `tokenizer.json`, encodes text pieces without
//! special tokens (prompts assemble special tokens themselves), and knows the special
//! tokens and the word-boundary convention of the vocabulary.

use std::path::Path;

use crate::{Error, Result};

/// How the vocabulary marks a word start. Byte-level BPE (RoBERTa, GPT-2) folds the
/// leading space into the token (`Ġgreat`); WordPiece (BERT) ignores spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordBoundary {
    /// Spaces are significant: `" great"` and `"great"` are different tokens.
    LeadingSpace,
    /// Spaces only separate words.
    Ignored,
}

/// Ids of the special tokens a prompt needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    pub pad: u32,
    /// Stands in for mask tokens inside input text (see `prompt`).
    pub unk: u32,
}

/// A loaded tokenizer with padding and truncation switched off.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    boundary: WordBoundary,
    lowercase: bool,
}

impl Tokenizer {
    /// Loads `tokenizer.json` from a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let file = dir.join("tokenizer.json");
        if !file.is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                what: "tokenizer",
                looked_for: "tokenizer.json".into(),
            });
        }
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Tokenizer(m) => Error::Tokenizer(format!("{}: {m}", file.display())),
            other => other,
        })
    }

    /// Loads a tokenizer from the bytes of a `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Tokenizer(format!("cannot parse tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("cannot disable truncation: {e}")))?;
        let json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json is not JSON: {e}")))?;
        let boundary = if mentions_type(&json["pre_tokenizer"], "ByteLevel") {
            WordBoundary::LeadingSpace
        } else {
            WordBoundary::Ignored
        };
        let lowercase = json["normalizer"]["lowercase"].as_bool().unwrap_or(false)
            || mentions_type(&json["normalizer"], "Lowercase");
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let missing = |what: &str| Error::Tokenizer(format!("vocabulary has no {what} token"));
        let special = SpecialTokens {
            cls: find(&["[CLS]", "<s>"]).ok_or_else(|| missing("[CLS]/<s>"))?,
            sep: find(&["[SEP]", "</s>"]).ok_or_else(|| missing("[SEP]/</s>"))?,
            mask: find(&["[MASK]", "<mask>"]).ok_or_else(|| missing("[MASK]/<mask>"))?,
            pad: find(&["[PAD]", "<pad>"]).ok_or_else(|| missing("[PAD]/<pad>"))?,
            unk: find(&["[UNK]", "<unk>"]).ok_or_else(|| missing("[UNK]/<unk>"))?,
        };
        Ok(Tokenizer { inner, special, boundary, lowercase })
    }

    pub fn special(&self) -> SpecialTokens {
        self.special
    }

    pub fn word_boundary(&self) -> WordBoundary {
        self.boundary
    }

    /// Whether the normalizer lower-cases text (uncased BERT vocabularies).
    pub fn lowercases(&self) -> bool {
        self.lowercase
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes a piece of text without special tokens.
    pub fn encode_piece(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("cannot encode {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes text without special tokens and returns ids with the index of the word
    /// each token belongs to (for whole-word masking).
    pub fn encode_words(&self, text: &str) -> Result<(Vec<u32>, Vec<Option<u32>>)> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("cannot encode {text:?}: {e}")))?;
        Ok((enc.get_ids().to_vec(), enc.get_word_ids().to_vec()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Decodes ids back to text (special tokens kept), for messages and debugging.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }
}

fn mentions_type(v: &serde_json::Value, ty: &str) -> bool {
    match v {
        serde_json::Value::Object(m) => {
            m.get("type").and_then(|t| t.as_str()) == Some(ty) || m.values().any(|x| mentions_type(x, ty))
        }
        serde_json::Value::Array(a) => a.iter().any(|x| mentions_type(x, ty)),
        _ => false,
    }
}
