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
        if !crate::checkpoint::is_file(&file)? {
            // A folder with only a slow tokenizer's files: say how to write the fast one.
            let slow = ["vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model"].into_iter().find(|f| dir.join(f).is_file());
            let looked_for = match slow {
                Some(f) => format!(
                    "tokenizer.json; it has {f}, a slow tokenizer's file: write tokenizer.json once with `python -c \"from transformers \
                     import AutoTokenizer as T; T.from_pretrained('{d}').save_pretrained('{d}')\"`",
                    d = dir.display()
                ),
                None => "tokenizer.json".into(),
            };
            return Err(Error::MissingFile { dir: dir.to_path_buf(), what: "tokenizer", looked_for });
        }
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let tok = Self::parse(&bytes, true).map_err(|e| match e {
            Error::Tokenizer(m) => Error::Tokenizer(format!("{}: {m}", file.display())),
            other => other,
        })?;
        // Model folders are read by training builds (a serve-only build reads exports).
        #[cfg(feature = "train")]
        tok.check_model_config(dir)?;
        Ok(tok)
    }

    /// A model directory's tokenizer must fit the model its config.json describes: every
    /// id inside the embedding table (an id past it fails inside the forward pass, for
    /// whichever input holds that token), and for RoBERTa and MPNet, which count
    /// positions from the padding id, the config's padding id. A directory without a
    /// readable config is not checked here; loading the model names what is wrong.
    #[cfg(feature = "train")]
    fn check_model_config(&self, dir: &Path) -> Result<()> {
        let Ok((cfg, _)) = crate::model::Config::from_dir(dir) else { return Ok(()) };
        if let Some((token, top)) = self.inner.get_vocab(true).into_iter().max_by_key(|(_, id)| *id) {
            if i64::from(top) >= cfg.vocab_size {
                return Err(Error::Tokenizer(format!(
                    "{}: tokenizer.json has token {token:?} with id {top}, past config.json's vocab_size {}: the model has no embedding for it",
                    dir.display(),
                    cfg.vocab_size
                )));
            }
        }
        if cfg.arch()?.offset_positions() && i64::from(self.special.pad) != cfg.pad_token_id {
            return Err(Error::Tokenizer(format!(
                "{}: the tokenizer pads with id {} but config.json's pad_token_id is {}: {} counts positions from the padding id, so the two must agree",
                dir.display(),
                self.special.pad,
                cfg.pad_token_id,
                cfg.model_type
            )));
        }
        Ok(())
    }

    /// Loads a tokenizer from the bytes of a `tokenizer.json`, as they are (an export's:
    /// [`without_prefix_space`] was applied when it was written, or, for an export
    /// written before, was not, as its model was trained).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes, false)
    }

    /// [`from_bytes`](Self::from_bytes), and with `no_prefix_space` as
    /// [`without_prefix_space`] would have written the bytes (a model directory's: the
    /// JSON is parsed once either way).
    fn parse(bytes: &[u8], no_prefix_space: bool) -> Result<Self> {
        let parse_error = |e| Error::Tokenizer(format!("cannot parse tokenizer.json: {e}"));
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(parse_error)?;
        let mut json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json is not JSON: {e}")))?;
        if no_prefix_space && clear_prefix_space(&mut json) {
            inner = json.to_string().parse().map_err(parse_error)?;
        }
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("cannot disable truncation: {e}")))?;
        let boundary = if mentions_type(&json["pre_tokenizer"], "ByteLevel") {
            WordBoundary::LeadingSpace
        } else {
            WordBoundary::Ignored
        };
        let lowercase = json["normalizer"]["lowercase"].as_bool().unwrap_or(false)
            || mentions_type(&json["normalizer"], "Lowercase");
        let special = special_tokens(&inner, &json)?;
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
            .map_err(|e| Error::Tokenizer(format!("cannot encode {}: {e}", preview(text))))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The first `max_tokens` ids of `encode_piece(text)` (all of them when there are
    /// fewer), without tokenizing more of a long text than they need: a host may hand
    /// over a whole document where a sentence was expected, and truncation keeps at
    /// most `max_len` tokens of it.
    ///
    /// The text is encoded up to a cut, doubled until the cut's ids number
    /// `max_tokens`. A cut lies where a space, tab or line break follows a character that is
    /// not whitespace, and there every pre-tokenizer in use (whitespace and punctuation
    /// splits, byte-level BPE's regex, Metaspace) ends a word: the ids before it are the
    /// ids the whole text starts with. Where a long stretch has no such place, two cuts
    /// whose ids agree as far as needed decide ([`encode_prefix`]), and a text shorter
    /// than that is encoded whole.
    pub fn encode_head(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        let mut ids = encode_prefix(text, max_tokens, |t| self.encode_piece(t), Vec::len, |ids, n| ids[..n].to_vec())?;
        ids.truncate(max_tokens);
        Ok(ids)
    }

    /// [`Tokenizer::encode_words`] of the text's first `max_tokens` ids, tokenizing no
    /// more of it than [`Tokenizer::encode_head`] does.
    pub fn encode_words_head(&self, text: &str, max_tokens: usize) -> Result<(Vec<u32>, Vec<Option<u32>>)> {
        let (mut ids, mut words) =
            encode_prefix(text, max_tokens, |t| self.encode_words(t), |(ids, _)| ids.len(), |(ids, words), n| (ids[..n].to_vec(), words[..n].to_vec()))?;
        ids.truncate(max_tokens);
        words.truncate(max_tokens);
        Ok((ids, words))
    }

    /// Encodes text without special tokens and returns ids with the index of the word
    /// each token belongs to (for whole-word masking).
    pub fn encode_words(&self, text: &str) -> Result<(Vec<u32>, Vec<Option<u32>>)> {
        if text.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("cannot encode {}: {e}", preview(text))))?;
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

/// Where `encode_head` first cuts: bytes per wanted token (English averages about 5),
/// and at least this many bytes.
const HEAD_BYTES_PER_TOKEN: usize = 16;
const HEAD_MIN_BYTES: usize = 4096;
/// An unbroken stretch (no space, tab or line break) this many times the first cut's
/// length is read no further ([`encode_prefix`]).
const HEAD_MAX_UNBROKEN: usize = 16;

/// `encode` of the shortest prefix of `text` ending at a cut ([`Tokenizer::encode_head`])
/// whose encoding holds `max_tokens` ids (`len` counts them), or of the whole text.
///
/// A long stretch with no whitespace (a run of punctuation, a base64 blob) has no such
/// cut: there the text is cut at the first character boundary at or after `from` and at
/// or after `2 from`, and where both prefixes hold `max_tokens` ids and agree on them,
/// those are taken (the longer prefix's tokens reaching that far no longer depend on
/// where the text stops); otherwise `from` doubles, and past the text's end it is
/// encoded whole. `head` gives an encoding's first `max_tokens` ids for the comparison.
///
/// Such a stretch may give few ids however long it is (WordPiece reads a word of over
/// 100 characters as one `[UNK]`; BERT's normaliser deletes form feeds, zero-width
/// spaces and accents, joining what they separate), and tokenizing 20 MB of it took
/// 47 s. So once the cut reaches [`HEAD_MAX_UNBROKEN`] times the first cut's length
/// (64 KiB at 128 tokens) into a stretch with no space, tab or line break, the text is
/// taken to end there: what follows such a stretch is not read.
fn encode_prefix<T, H: PartialEq>(
    text: &str,
    max_tokens: usize,
    encode: impl Fn(&str) -> Result<T>,
    len: impl Fn(&T) -> usize,
    head: impl Fn(&T, usize) -> H,
) -> Result<T> {
    let mut from = max_tokens.saturating_mul(HEAD_BYTES_PER_TOKEN).max(HEAD_MIN_BYTES);
    let unbroken = from.saturating_mul(HEAD_MAX_UNBROKEN);
    loop {
        if from >= unbroken && from < text.len() && !text.as_bytes()[from - unbroken..from].iter().any(|&b| is_break(b)) {
            return encode(&text[..char_boundary_at_or_after(text, from)]);
        }
        let far = char_boundary_at_or_after(text, from.saturating_mul(2));
        match word_end_at_or_after(text, from, far) {
            // A word's end not far past `from`: the exact cut.
            Some(cut) if cut < far => {
                let enc = encode(&text[..cut])?;
                if len(&enc) >= max_tokens {
                    return Ok(enc);
                }
                from = cut.saturating_mul(2);
                continue;
            }
            _ if far >= text.len() => return encode(text),
            _ => {}
        }
        let near = char_boundary_at_or_after(text, from);
        let (a, b) = (encode(&text[..near])?, encode(&text[..far])?);
        if len(&a) >= max_tokens && len(&b) >= max_tokens && head(&a, max_tokens) == head(&b, max_tokens) {
            return Ok(a);
        }
        from = far;
    }
}

/// The first char boundary of `text` at or after byte `from` (its length past the end).
fn char_boundary_at_or_after(text: &str, from: usize) -> usize {
    (from..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len())
}

/// The first byte offset in `from..until` where a space, tab, line feed or carriage
/// return follows a character that is not whitespace (a word's end), if any (looking no
/// further keeps a long text without one linear). An ASCII byte is always a char
/// boundary. Not a form feed: BERT's normaliser deletes it as a control character, so
/// the words on either side join ("cat\x0csat" reads "catsat").
fn word_end_at_or_after(text: &str, from: usize, until: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let start = from.max(1);
    (start..until.min(bytes.len()))
        .find(|&i| is_break(bytes[i]) && text[..i].chars().next_back().is_some_and(|c| !c.is_whitespace()))
}

/// A space, tab, line feed or carriage return: what ends a word for every pre-tokenizer
/// in use (not a form feed, which BERT's normaliser deletes).
fn is_break(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The start of a text for an error message (a whole document would flood it).
fn preview(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    match text.char_indices().nth(MAX_CHARS) {
        None => format!("{text:?}"),
        Some((end, _)) => format!("{:?}... ({} bytes)", &text[..end], text.len()),
    }
}

/// The special tokens a tokenizer.json means, as transformers reads them:
///
/// - [CLS] and [SEP] are the ones its post-processor adds (Bert-, Roberta- or
///   TemplateProcessing, alone or in a Sequence), by name only where it has none;
/// - [MASK] and [PAD] by name, `[MASK]` or `<mask>`, preferring the one registered as a
///   special added token: MPNet's vocabulary holds BERT's names as ordinary entries
///   (`[MASK]` = 107) beside the ones it uses (`<mask>` = 30526);
/// - unknown is the model's own `unk_token` (MPNet's is `[UNK]`, though `<unk>` is special
///   too), by name where the model names none.
fn special_tokens(inner: &tokenizers::Tokenizer, json: &serde_json::Value) -> Result<SpecialTokens> {
    let registered: Vec<&str> = json["added_tokens"]
        .as_array()
        .map(|a| a.iter().filter(|t| t["special"].as_bool() == Some(true)).filter_map(|t| t["content"].as_str()).collect())
        .unwrap_or_default();
    let by_name = |names: &[&str]| {
        let known: Vec<&str> = names.iter().copied().filter(|n| inner.token_to_id(n).is_some()).collect();
        let name = known.iter().find(|n| registered.contains(n)).or(known.first());
        name.and_then(|n| inner.token_to_id(n))
    };
    let id_of = |token: &str| {
        inner.token_to_id(token).ok_or_else(|| Error::Tokenizer(format!("the post-processor adds `{token}`, which the vocabulary lacks")))
    };
    let missing = |what: &str| {
        Error::Tokenizer(format!("vocabulary has no {what} token (lmbff finds the special tokens by these names, as BERT, RoBERTa and MPNet name them)"))
    };
    let (cls, sep) = match post_processor_ends(&json["post_processor"]) {
        Some((cls, sep)) => (id_of(&cls)?, id_of(&sep)?),
        None => (
            by_name(&["[CLS]", "<s>"]).ok_or_else(|| missing("[CLS]/<s>"))?,
            by_name(&["[SEP]", "</s>"]).ok_or_else(|| missing("[SEP]/</s>"))?,
        ),
    };
    let unk = json["model"]["unk_token"].as_str().and_then(|u| inner.token_to_id(u)).or_else(|| by_name(&["[UNK]", "<unk>"]));
    Ok(SpecialTokens {
        cls,
        sep,
        mask: by_name(&["[MASK]", "<mask>"]).ok_or_else(|| missing("[MASK]/<mask>"))?,
        pad: by_name(&["[PAD]", "<pad>"]).ok_or_else(|| missing("[PAD]/<pad>"))?,
        unk: unk.ok_or_else(|| missing("[UNK]/<unk>"))?,
    })
}

/// The tokens a post-processor puts first and last around a single sentence: `cls`
/// and `sep` of Bert- and RobertaProcessing, the first and last special token of
/// TemplateProcessing's `single`; None where it adds none.
fn post_processor_ends(p: &serde_json::Value) -> Option<(String, String)> {
    match p["type"].as_str()? {
        "BertProcessing" | "RobertaProcessing" => Some((p["cls"][0].as_str()?.to_string(), p["sep"][0].as_str()?.to_string())),
        "TemplateProcessing" => {
            let specials: Vec<&str> = p["single"].as_array()?.iter().filter_map(|piece| piece["SpecialToken"]["id"].as_str()).collect();
            // A special token's name in the template maps to the token(s) it adds.
            let token = |name: &str| p["special_tokens"][name]["tokens"][0].as_str().unwrap_or(name).to_string();
            match specials.as_slice() {
                [first, .., last] => Some((token(first), token(last))),
                _ => None,
            }
        }
        "Sequence" => p["processors"].as_array()?.iter().find_map(post_processor_ends),
        _ => None,
    }
}

/// The `tokenizer.json` of a byte-level BPE vocabulary saved with `add_prefix_space:
/// true` (RoBERTa's tokenizer loaded that way for token classification), with the flag
/// off; None when no pre-tokenizer has it on, or the bytes are not JSON. On, every text
/// encoded gets a leading space, and a prompt encodes its pieces one by one: "." after
/// the mask would read as " .". Prompts place the spaces themselves (a sentence's
/// leading space under `*+sent*`, label words' `Ġ`), as LM-BFF does with RoBERTa's
/// tokenizer, which adds none. A model directory's tokenizer is read through this, and
/// an export's tokenizer.json is written through it, so a host that tokenizes reads
/// what training read.
pub fn without_prefix_space(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut json: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    clear_prefix_space(&mut json).then(|| serde_json::to_vec_pretty(&json).ok()).flatten()
}

/// Turns `add_prefix_space` off in every ByteLevel part of a tokenizer.json's
/// pre-tokenizer; whether one had it on.
fn clear_prefix_space(json: &mut serde_json::Value) -> bool {
    fn clear(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => {
                let mut changed = false;
                if m.get("type").and_then(|t| t.as_str()) == Some("ByteLevel") && m.get("add_prefix_space") == Some(&serde_json::Value::Bool(true)) {
                    m.insert("add_prefix_space".into(), false.into());
                    changed = true;
                }
                m.values_mut().map(clear).fold(changed, |c, x| c | x)
            }
            serde_json::Value::Array(a) => a.iter_mut().map(clear).fold(false, |c, x| c | x),
            _ => false,
        }
    }
    json.get_mut("pre_tokenizer").is_some_and(clear)
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
