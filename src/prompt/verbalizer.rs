//! Label words (the verbalizer), checked against the tokenizer. A class has one word or
//! several (`great|good`), and a word may span several tokens of the vocabulary. The
//! class's score at the mask is the mean over its words of each word's mean sub-token
//! logit (OpenPrompt's "mean" handling of multi-token words and of several words); with
//! one single-token word per class it is that token's logit, as in LM-BFF. Byte-level
//! BPE vocabularies use the leading-space form (`Ġgreat`) wherever the mask stands, as
//! LM-BFF does (also after `?` in its NLI templates or at the start of TREC's
//! `*cls**mask*:`, where the word follows no space), but for words that start with `<`,
//! `[`, `.` or `,`, which it takes as they are.

use crate::tokenize::{Tokenizer, WordBoundary};
use crate::{Error, Result};

/// Separates a class's words in a label-word spec (`great|good`).
pub const WORD_SEPARATOR: char = '|';

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verbalizer {
    labels: Vec<String>,
    /// Each class's words as given (`great|good`).
    words: Vec<String>,
    /// [class][word][sub-token]
    tokens: Vec<Vec<Vec<u32>>>,
    /// Every sub-token of every word of every class, in that order (the scored tokens).
    ids: Vec<u32>,
}

impl Verbalizer {
    /// No classes: the verbalizer of a reading without a mask (see `Prompt::sentence_reader`).
    pub(crate) fn none() -> Self {
        Verbalizer { labels: vec![], words: vec![], tokens: vec![], ids: vec![] }
    }

    /// Builds a verbalizer from `(label, words)` pairs; the order gives class indices.
    /// `words` is one word or several separated by `|`; each word may be several tokens.
    pub fn new(tok: &Tokenizer, pairs: &[(String, String)]) -> Result<Self> {
        if pairs.len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "a task needs at least two labels, got {}",
                pairs.len()
            )));
        }
        let mut v = Verbalizer { labels: vec![], words: vec![], tokens: vec![], ids: vec![] };
        for (label, spec) in pairs {
            let bad = |message: String| Error::LabelWord { label: label.clone(), word: spec.clone(), message };
            if v.labels.contains(label) {
                return Err(Error::InvalidArgument(format!("label {label:?} is listed twice: labels must differ")));
            }
            if label.trim().is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "label {} has an empty name: a class needs one (predictions and exports name it)",
                    v.labels.len()
                )));
            }
            let mut class = Vec::new();
            for word in spec.split(WORD_SEPARATOR) {
                let trimmed = word.trim();
                if trimmed.is_empty() {
                    return Err(bad(format!(
                        "a label word is empty (several words are separated by `{WORD_SEPARATOR}`, with a word on each side: `great{WORD_SEPARATOR}good`)"
                    )));
                }
                if trimmed.contains(char::is_whitespace) {
                    return Err(bad(format!("a label word is one word, with no spaces (several words: `great{WORD_SEPARATOR}good`)")));
                }
                // LM-BFF's rule: a word that starts with `<`, `[`, `.` or `,` is taken
                // as it is (punctuation and markup follow no space), any other in its
                // leading-space form.
                let form = match tok.word_boundary() {
                    WordBoundary::LeadingSpace if !trimmed.starts_with(['<', '[', '.', ',']) => format!(" {trimmed}"),
                    _ => trimmed.to_string(),
                };
                let ids = tok.encode_piece(&form)?;
                // The model's own unknown token (its name varies), and the usual names.
                let unk: Vec<u32> = ["[UNK]", "<unk>"].iter().filter_map(|t| tok.token_to_id(t)).chain([tok.special().unk]).collect();
                if ids.is_empty() {
                    // (Characters the tokenizer's normalizer drops: control or zero-width ones.)
                    return Err(bad(format!("{trimmed:?} encodes to no token at all (its characters are dropped by the tokenizer)")));
                }
                if ids.iter().any(|i| unk.contains(i)) {
                    return Err(bad(format!("{trimmed:?} is not in the vocabulary (it encodes to the unknown token)")));
                }
                let s = tok.special();
                if ids.iter().any(|i| [s.mask, s.sep, s.cls, s.pad].contains(i)) {
                    return Err(bad(format!("{trimmed:?} is a control token ([MASK], [SEP], [CLS], [PAD] or their like), not a word")));
                }
                if let Some(other) = v.tokens.iter().position(|c| c.contains(&ids)) {
                    return Err(bad(format!("{trimmed:?} is also a word of label {:?}", v.labels[other])));
                }
                if class.contains(&ids) {
                    return Err(bad(format!("{trimmed:?} is listed twice")));
                }
                class.push(ids);
            }
            v.labels.push(label.clone());
            v.words.push(spec.split(WORD_SEPARATOR).map(str::trim).collect::<Vec<_>>().join("|"));
            v.ids.extend(class.iter().flatten());
            v.tokens.push(class);
        }
        Ok(v)
    }

    /// A warning naming the label words this vocabulary splits into several tokens, with
    /// their pieces; None when every word is one token. Several tokens are a feature (a
    /// class scores the mean of its word's sub-token logits at the mask), but a misspelt
    /// word ("grate", "terible") is also several tokens and is scored all the same.
    pub fn split_words(&self, tok: &Tokenizer) -> Option<String> {
        let split: Vec<String> = self
            .words
            .iter()
            .zip(&self.tokens)
            .flat_map(|(spec, class)| spec.split(WORD_SEPARATOR).zip(class))
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(word, ids)| format!("{word:?} = {}", ids.iter().map(|&i| tok.id_to_token(i).unwrap_or_else(|| i.to_string())).collect::<Vec<_>>().join(" ")))
            .collect();
        (!split.is_empty()).then(|| {
            format!(
                "label words this vocabulary splits into several tokens: {} (a misspelt word splits too and is used all the same: \
                 check the spelling; the prompt method scores such a word by the mean of its pieces' logits at the mask)",
                split.join(", ")
            )
        })
    }

    /// One single-token word per class (LM-BFF's verbalizers): the class logits are the
    /// scored tokens' logits.
    pub fn is_simple(&self) -> bool {
        self.tokens.iter().all(|c| c.len() == 1 && c[0].len() == 1)
    }

    /// How the scored tokens' logits ([`Verbalizer::token_ids`], T of them) make the class
    /// logits: `class = token_logits x W` with W [T][classes], each class's column
    /// averaging over its words, each word averaging over its sub-tokens. None when the
    /// verbalizer is simple (W would be the identity).
    pub fn class_weights(&self) -> Option<Vec<Vec<f32>>> {
        if self.is_simple() {
            return None;
        }
        let mut w = vec![vec![0.0f32; self.num_labels()]; self.ids.len()];
        let mut row = 0;
        for (c, words) in self.tokens.iter().enumerate() {
            for word in words {
                for _ in word {
                    w[row][c] = 1.0 / (words.len() * word.len()) as f32;
                    row += 1;
                }
            }
        }
        Some(w)
    }

    /// Each class's shown tokens ([`Verbalizer::word_tokens`]) when the verbalizer is not
    /// simple; None when it is (a class is then shown by its one scored token). What an
    /// export's manifest records as `label_word_tokens`.
    pub fn shown_tokens(&self) -> Option<Vec<Vec<u32>>> {
        (!self.is_simple()).then(|| self.tokens.iter().map(|c| c[0].clone()).collect())
    }

    /// The tokens that stand for class `label` where a template shows its word (a
    /// demonstration's answer, `*label_N*`): its first word.
    pub fn word_tokens(&self, label: usize) -> Option<&[u32]> {
        self.tokens.get(label).map(|c| c[0].as_slice())
    }

    /// Parses LM-BFF's mapping syntax, `{'0':'terrible','1':'great'}` (its scripts also
    /// write bare numbers as keys: `{0:'terrible',1:'great'}`), or JSON.
    pub fn parse_mapping(tok: &Tokenizer, mapping: &str) -> Result<Self> {
        // JSON as it is first (a word may hold an apostrophe: "don't"), then LM-BFF's
        // single quotes, then with its bare number keys quoted.
        let single = mapping.replace('\'', "\"");
        let map: Entries = serde_json::from_str(mapping)
            .or_else(|_| serde_json::from_str(&single))
            .or_else(|e| serde_json::from_str(&quote_number_keys(&single)).map_err(|_| e))
            .map_err(|e| Error::InvalidArgument(format!("label mapping {mapping:?} is not `{{'label':'word',...}}`: {e}")))?;
        let pairs: Vec<(String, String)> = map
            .0
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

    /// The scored token ids: every sub-token of every word of every class, class by
    /// class (for a simple verbalizer, one per class, in class order).
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

/// `text` with each object key written as a bare (optionally negative) integer quoted:
/// `{0:"a", 1:"b"}` -> `{"0":"a", "1":"b"}`. Only keys: a number is one when it follows
/// `{` or `,` (spaces aside) and a `:` follows it; quoted strings are left as they are.
fn quote_number_keys(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let (mut out, mut i, mut in_string, mut after_open) = (String::with_capacity(text.len() + 8), 0, false, false);
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            match c {
                '\\' if i + 1 < chars.len() => {
                    out.push(chars[i + 1]);
                    i += 1;
                }
                '"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if after_open && (c.is_ascii_digit() || c == '-') {
            let start = i;
            let mut end = i + 1;
            while end < chars.len() && chars[end].is_ascii_digit() {
                end += 1;
            }
            let mut colon = end;
            while colon < chars.len() && chars[colon].is_whitespace() {
                colon += 1;
            }
            if colon < chars.len() && chars[colon] == ':' && chars[start..end].iter().any(char::is_ascii_digit) {
                out.push('"');
                out.extend(&chars[start..end]);
                out.push('"');
                i = end;
                after_open = false;
                continue;
            }
        }
        match c {
            '"' => (in_string, after_open) = (true, false),
            '{' | ',' => after_open = true,
            c if c.is_whitespace() => {}
            _ => after_open = false,
        }
        out.push(c);
        i += 1;
    }
    out
}

/// A JSON object's entries in order, a key given twice kept twice (serde_json's map kept
/// the last, dropping a class without a word): [`Verbalizer::new`] refuses the repeat.
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of label: word")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> std::result::Result<Entries, M::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Visit)
    }
}
