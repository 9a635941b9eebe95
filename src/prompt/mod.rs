//! Prompts: a template, a verbalizer and truncation rules turn an example into token
//! ids with exactly one mask (ref: LM-BFF `tokenize_multipart_input`).

mod demos;
mod multilabel;
mod template;
mod verbalizer;

pub use demos::{DemoPool, MAX_DEMO_SETS};
pub use multilabel::{applied, decisions, MultiLabel, MULTI_LABEL_THRESHOLD, YES};
pub use template::{Case, Part, Template};
pub use verbalizer::Verbalizer;

use serde::{Deserialize, Serialize};

use crate::tokenize::{Tokenizer, WordBoundary};
use crate::{Error, Result};

/// One input: a sentence or a sentence pair, with its class when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub text_a: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_b: Option<String>,
    pub label: Option<usize>,
}

impl Example {
    pub fn single(text: impl Into<String>, label: Option<usize>) -> Self {
        Example { text_a: text.into(), text_b: None, label }
    }
}

/// The classes of `examples` for scoring, `usize::MAX` where one has no label: it
/// matches no class, so an unlabelled example counts as a miss.
pub fn gold_labels(examples: &[Example]) -> Vec<usize> {
    examples.iter().map(|e| e.label.unwrap_or(usize::MAX)).collect()
}

/// Length limits. Sentences are first cut to their own limits (tail dropped), then,
/// while the whole input is longer than `max_len`, the longest sentence loses its last
/// token: with demonstrations appended and `demonstrations_first`, the longest sentence
/// of a demonstration while any demonstration has text left, and only then the query's
/// (LM-BFF keeps the query and cuts the tail, the demonstrations; cutting the longest
/// demonstration instead keeps every class's). Template tokens, the mask among them, are
/// never cut. Of a long sentence only as much is tokenized as can be kept
/// ([`Tokenizer::encode_head`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// Maximum tokens in the whole input, special tokens included.
    pub max_len: usize,
    /// Per-sentence limit for sentence 0, in tokens (LM-BFF's `first_sent_limit`).
    pub first_sent_limit: Option<usize>,
    /// Per-sentence limit for the other sentences (LM-BFF's `other_sent_limit`).
    pub other_sent_limit: Option<usize>,
    /// With demonstrations, cut theirs before the query's sentences (the default).
    /// Checkpoints and exports written before the field (export format 7 and earlier)
    /// read as false: the longest sentence first, the query's included, the rule their
    /// models were trained and exported with. A task file without it reads as true
    /// (`task::task_truncation`).
    #[serde(default)]
    pub demonstrations_first: bool,
}

impl Default for Truncation {
    fn default() -> Self {
        Truncation { max_len: 128, first_sent_limit: None, other_sent_limit: None, demonstrations_first: true }
    }
}

/// Token ids of one rendered input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub input_ids: Vec<u32>,
    /// Segment of each token: 0 up to the first `sep+`, then 1, 2, ...
    pub segment_ids: Vec<u32>,
    /// Index of the mask token in `input_ids`.
    pub mask_pos: usize,
}

/// A template bound to a tokenizer and a verbalizer.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub template: Template,
    pub verbalizer: Verbalizer,
    pub truncation: Truncation,
}

struct Piece {
    ids: Vec<u32>,
    segment: u32,
    /// Sentence pieces may be truncated; template pieces may not.
    sentence: bool,
}

impl Prompt {
    pub fn new(template: Template, verbalizer: Verbalizer, truncation: Truncation) -> Result<Self> {
        if let Some(l) = template.max_label_ref() {
            if l >= verbalizer.num_labels() {
                return Err(Error::Template {
                    template: template.source().to_string(),
                    at: template.source().find(&format!("label_{l}")),
                    message: format!("refers to label {l}, but the task has {} labels", verbalizer.num_labels()),
                });
            }
        }
        if template.parts().iter().any(|p| matches!(p, Part::OwnLabelWord { .. })) {
            return Err(Error::Template {
                template: template.source().to_string(),
                at: template.source().find("label"),
                message: "`{label}` / `*labelx_N*` show an example's own label word, which in a query would reveal \
                          the answer; demonstrations need no template of their own (they are rendered through this \
                          one, their label word in place of the mask)"
                    .into(),
            });
        }
        if truncation.max_len < 4 {
            return Err(Error::InvalidArgument(format!("max_len {} is too small", truncation.max_len)));
        }
        Ok(Prompt { template, verbalizer, truncation })
    }

    /// The same task read as plain fine-tuning does (no template, no mask).
    pub fn plain(&self) -> Prompt {
        Prompt { template: Template::plain(self.template.num_sentences()), verbalizer: self.verbalizer.clone(), truncation: self.truncation }
    }

    /// The plain reading of the input alone (`[CLS] text [SEP]`), with this prompt's
    /// classes and truncation: what a multi-label sentence-embedding model reads (the
    /// yes/no template's second sentence, the label's name, is replaced by one classifier
    /// head per label).
    pub fn input_reader(&self) -> Prompt {
        Prompt { template: Template::plain(1), verbalizer: self.verbalizer.clone(), truncation: self.truncation }
    }

    /// The label anchors of the sentence-embedding method: for each class and each of its
    /// words, the template's own text with the word in place of the mask and the input
    /// left out (`{text} It was {mask}.` gives "It was great." and "It was terrible."),
    /// as `(class, text)` in class order. None when the template reads two sentences:
    /// the text that joins them (`? {mask} ,`) says nothing alone.
    pub fn anchor_texts(&self) -> Option<Vec<(usize, String)>> {
        // One sentence, or none in an anchor template (`Template::parse_anchor`).
        if self.template.num_sentences() > 1 {
            return None;
        }
        let mut out = Vec::new();
        for (class, spec) in self.verbalizer.words().iter().enumerate() {
            for word in spec.split(verbalizer::WORD_SEPARATOR) {
                out.push((class, self.anchor_text(word)));
            }
        }
        Some(out)
    }

    /// The template's own text with `word` in place of the mask (see
    /// [`anchor_texts`](Self::anchor_texts)); with "" the frame every anchor shares
    /// ("It was."), from which an anchor's word is found.
    pub fn anchor_text(&self, word: &str) -> String {
        self.render_anchor(word, false)
    }

    /// The anchor text up to the mask (its word excluded): where the word starts.
    pub fn anchor_text_before_mask(&self) -> String {
        self.render_anchor("", true)
    }

    fn render_anchor(&self, word: &str, stop_at_mask: bool) -> String {
        let first_word = |label: usize| self.verbalizer.words().get(label).and_then(|w| w.split(verbalizer::WORD_SEPARATOR).next()).unwrap_or("");
        let mut text = String::new();
        for part in self.template.parts() {
            let chunk = match part {
                Part::Text(t) => t.trim(),
                Part::Mask if stop_at_mask => break,
                Part::Mask => word,
                Part::LabelWord { label, .. } => first_word(*label),
                _ => continue,
            };
            // Words are spaced; punctuation attaches to what precedes it.
            if chunk.starts_with(|c: char| c.is_alphanumeric() || "\"'([".contains(c)) && !text.is_empty() {
                text.push(' ');
            }
            text.push_str(chunk);
        }
        text
    }

    /// The label anchors of this prompt and of further single-sentence `templates` read
    /// with the same label words ("A truly {mask} movie." adds "A truly great movie."),
    /// in template order, each `(class, text)` once. None when this prompt reads two
    /// sentences and no further template is given.
    ///
    /// # Errors
    /// Any further template when this prompt reads two sentences; a further template
    /// that reads two sentences (one that reads none, from `Template::parse_anchor`,
    /// gives its text as it stands), or that does not fit the label words (`Prompt::new`).
    pub fn anchor_texts_with(&self, templates: &[Template]) -> Result<Option<Vec<(usize, String)>>> {
        let Some(mut out) = self.anchor_texts() else {
            return match templates.first() {
                None => Ok(None),
                Some(t) => Err(Error::InvalidArgument(format!(
                    "anchor template {:?}: label anchors need a single-sentence task, and this task's template {:?} reads two sentences",
                    t.source(),
                    self.template.source()
                ))),
            };
        };
        for t in templates {
            let texts = Prompt::new(t.clone(), self.verbalizer.clone(), self.truncation)?.anchor_texts().ok_or_else(|| {
                Error::InvalidArgument(format!("anchor template {:?} reads two sentences; an anchor template reads one ({{text}})", t.source()))
            })?;
            for a in texts {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        Ok(Some(out))
    }

    /// Parses further anchor templates given as text and checks that they give anchors
    /// with this prompt ([`Prompt::anchor_texts_with`]): what a caller does before any
    /// model loads.
    pub fn parse_anchor_templates(&self, sources: &[String]) -> Result<Vec<Template>> {
        // Given now, used for training only (never read back): the space around one (a
        // config file's newline) is no text of it, as for a new task's template.
        let templates = sources.iter().map(|t| Template::parse_anchor(t.trim())).collect::<Result<Vec<_>>>()?;
        self.anchor_texts_with(&templates)?;
        Ok(templates)
    }

    /// The plain reading (`[CLS] text [SEP]`, pairs `[CLS] a [SEP] b [SEP]`) of a sentence
    /// encoder that is not the task's model, such as the demonstration filter's: no
    /// classes, sentences cut only to fit `max_len`.
    pub fn sentence_reader(sentences: usize, max_len: usize) -> Result<Prompt> {
        let truncation = Truncation { max_len, ..Truncation::default() };
        if max_len < 4 {
            return Err(Error::InvalidArgument(format!("max_len {max_len} is too small")));
        }
        Ok(Prompt { template: Template::plain(sentences), verbalizer: Verbalizer::none(), truncation })
    }

    /// Renders an example into ids.
    pub fn encode(&self, tok: &Tokenizer, ex: &Example) -> Result<Encoded> {
        self.encode_with_demos(tok, ex, &[])
    }

    /// Renders an example followed by demonstrations (LM-BFF): each demonstration goes
    /// through the same template without `[CLS]`, its label word in place of the mask,
    /// its sentences cut to `other_sent_limit`; demonstrations take the segment of the
    /// query's last token (separators between them do not advance it, so a model with
    /// two token types never sees a third). Truncation then cuts the demonstrations'
    /// sentences first ([`Truncation`]).
    pub fn encode_with_demos(&self, tok: &Tokenizer, ex: &Example, demos: &[Example]) -> Result<Encoded> {
        let mut pieces: Vec<Piece> = Vec::with_capacity(self.template.parts().len() * (1 + demos.len()));
        // None for the plain [CLS] reading (no mask; mask_pos stays 0).
        let mask_piece = self.render(tok, ex, None, &mut pieces)?;
        let query_end = pieces.len();
        let segment = pieces.iter().rev().find(|p| !p.ids.is_empty()).map_or(0, |p| p.segment);
        for d in demos {
            self.render(tok, d, Some(segment), &mut pieces)?;
        }
        let fixed_len: usize = pieces.iter().filter(|p| !p.sentence).map(|p| p.ids.len()).sum();
        if fixed_len >= self.truncation.max_len {
            return Err(Error::Truncation(format!(
                "the template{} alone takes {fixed_len} tokens, max_len is {}",
                if demos.is_empty() { "" } else { " and the demonstrations' label words" },
                self.truncation.max_len
            )));
        }
        let mut total: usize = pieces.iter().map(|p| p.ids.len()).sum();
        // Where the sentences cut first start: the demonstrations', or all of them.
        let first = if self.truncation.demonstrations_first { query_end } else { 0 };
        while total > self.truncation.max_len {
            // Longest-first: the longest sentence loses its last token (first on ties).
            let longest = |from: usize| {
                (from..pieces.len()).filter(|&i| pieces[i].sentence && !pieces[i].ids.is_empty()).reduce(|a, b| if pieces[b].ids.len() > pieces[a].ids.len() { b } else { a })
            };
            let cut = longest(first).or_else(|| longest(0)).expect("fixed_len < max_len, so a sentence piece is over-long");
            pieces[cut].ids.pop();
            total -= 1;
        }
        let mut out = Encoded { input_ids: Vec::with_capacity(total), segment_ids: Vec::with_capacity(total), mask_pos: 0 };
        for (i, p) in pieces.iter().enumerate() {
            if Some(i) == mask_piece {
                out.mask_pos = out.input_ids.len();
            }
            out.input_ids.extend_from_slice(&p.ids);
            out.segment_ids.extend(std::iter::repeat_n(p.segment, p.ids.len()));
        }
        Ok(out)
    }

    /// What a user should hear before training with this prompt, nothing being wrong
    /// enough to refuse: template text this tokenizer reads as unknown
    /// ([`unknown_template_text`](Self::unknown_template_text)) and label words it
    /// splits into several tokens ([`Verbalizer::split_words`]).
    pub fn warnings(&self, tok: &Tokenizer) -> Result<Vec<String>> {
        Ok(self.unknown_template_text(tok)?.into_iter().chain(self.verbalizer.split_words(tok)).collect())
    }

    /// A warning naming the template's own text that this tokenizer reads as unknown
    /// (a cased vocabulary without "It" reads "It was" as [UNK] was): the model then sees
    /// the unknown token there, and nothing else says so. None when all is known.
    pub fn unknown_template_text(&self, tok: &Tokenizer) -> Result<Option<String>> {
        let unk = tok.special().unk;
        let mut unknown = Vec::new();
        for part in self.template.parts() {
            if let Part::Text(t) = part {
                if tok.encode_piece(t)?.contains(&unk) {
                    unknown.push(format!("{:?}", t.trim()));
                }
            }
        }
        Ok((!unknown.is_empty()).then(|| {
            format!(
                "the template's text {} holds words this tokenizer does not know: the model reads the unknown token there \
                 (a cased vocabulary? write the words as the vocabulary has them)",
                unknown.join(", ")
            )
        }))
    }

    /// Checks that each demonstration set renders with this prompt (every demonstration
    /// labelled with a class of the verbalizer, with the sentences the template reads).
    pub fn check_demo_sets(&self, tok: &Tokenizer, sets: &[Vec<Example>]) -> Result<()> {
        let query = Example { text_a: String::new(), text_b: (self.template.num_sentences() > 1).then(String::new), label: None };
        for (i, set) in sets.iter().enumerate() {
            self.encode_with_demos(tok, &query, set).map_err(|e| Error::InvalidArgument(format!("demonstration set {i}: {e}")))?;
        }
        Ok(())
    }

    /// Checks that every example of a demonstration pool (similarity-filtered
    /// demonstrations choose from it) renders as a demonstration with this prompt.
    pub fn check_demo_pool(&self, tok: &Tokenizer, pool: &[Example]) -> Result<()> {
        let each: Vec<Vec<Example>> = pool.iter().map(|e| vec![e.clone()]).collect();
        self.check_demo_sets(tok, &each)
    }

    /// Appends the pieces of `ex` rendered through the template: as the query
    /// (`demo_segment` None; returns the index of the mask's piece, if it has one) or as a
    /// demonstration in segment `demo_segment`.
    fn render(&self, tok: &Tokenizer, ex: &Example, demo_segment: Option<u32>, pieces: &mut Vec<Piece>) -> Result<Option<usize>> {
        let special = tok.special();
        let demo = demo_segment.is_some();
        let mut segment = demo_segment.unwrap_or(0);
        let mut mask_piece = None;
        let fixed = |ids: Vec<u32>, segment: u32| Piece { ids, segment, sentence: false };
        let own_word = |ex: &Example| -> Result<Vec<u32>> {
            let label = ex.label.ok_or_else(|| {
                Error::InvalidArgument(if demo {
                    "a demonstration has no label".into()
                } else {
                    "the template shows the example's label word, but the example has no label".into()
                })
            })?;
            self.verbalizer.word_tokens(label).map(<[u32]>::to_vec).ok_or_else(|| Error::InvalidArgument(format!("label index {label} is out of range")))
        };
        for part in self.template.parts() {
            match part {
                Part::Cls if demo => {}
                Part::Cls => pieces.push(fixed(vec![special.cls], segment)),
                Part::Mask if demo => pieces.push(fixed(own_word(ex)?, segment)),
                Part::Mask => {
                    mask_piece = Some(pieces.len());
                    pieces.push(fixed(vec![special.mask], segment));
                }
                Part::Sep { next_segment } => {
                    pieces.push(fixed(vec![special.sep], segment));
                    if *next_segment && !demo {
                        segment += 1;
                    }
                }
                Part::Text(t) => {
                    let ids = tok.encode_piece(t)?;
                    // The exported graph finds the mask by its id: the template's own text
                    // may not hold another. Nor a separator, [CLS] or padding token typed as
                    // text: the first would not start a segment, the others would be read as
                    // the start of a sequence, or shift RoBERTa's and MPNet's positions.
                    // (LM-BFF's syntax writes the text's spaces as `_`.)
                    let src = self.template.source();
                    let at = || src.find(t.trim()).or_else(|| src.find(&t.trim().replace(' ', "_")));
                    if ids.contains(&special.mask) {
                        return Err(Error::Template {
                            template: self.template.source().to_string(),
                            at: at(),
                            message: format!("its text {t:?} holds the mask token; the one mask goes where {{mask}} / *mask* is"),
                        });
                    }
                    if ids.iter().any(|i| [special.sep, special.cls, special.pad].contains(i)) {
                        return Err(Error::Template {
                            template: self.template.source().to_string(),
                            at: at(),
                            message: format!(
                                "its text {t:?} holds a separator, [CLS] or padding token typed as text; separators go where {{sep}} / *sep* / *sep+* are"
                            ),
                        });
                    }
                    pieces.push(fixed(ids, segment))
                }
                Part::LabelWord { label, .. } => {
                    let ids = self.verbalizer.word_tokens(*label).ok_or_else(|| Error::InvalidArgument(format!("label index {label} is out of range")))?;
                    pieces.push(fixed(ids.to_vec(), segment))
                }
                Part::OwnLabelWord { .. } => pieces.push(fixed(own_word(ex)?, segment)),
                Part::Sentence { index, space, case, drop_last } => {
                    let raw = match index {
                        0 => Some(ex.text_a.as_str()),
                        _ => ex.text_b.as_deref(),
                    }
                    .ok_or_else(|| Error::InvalidArgument(format!("the template needs sentence {index} (text_b), but the example has none")))?;
                    let text = shape_sentence(raw, *case, *drop_last, *space && tok.word_boundary() == WordBoundary::LeadingSpace);
                    // No sentence keeps more than max_len tokens, whatever the others hold
                    // (the longest is cut first), so a long text is tokenized no further.
                    let mut ids = tok.encode_head(&text, self.truncation.max_len)?;
                    // The template's mask is the only mask, and its separators the only
                    // ones: a mask, separator, [CLS] or padding token typed in the input
                    // text reads as unknown (a model finds the mask by its id, and a
                    // typed [SEP] would split the input into segments).
                    let controls = [special.mask, special.sep, special.cls, special.pad];
                    ids.iter_mut().filter(|i| controls.contains(i)).for_each(|i| *i = special.unk);
                    let limit = if *index == 0 && !demo { self.truncation.first_sent_limit } else { self.truncation.other_sent_limit };
                    if let Some(limit) = limit {
                        ids.truncate(limit);
                    }
                    pieces.push(Piece { ids, segment, sentence: true });
                }
            }
        }
        Ok(mask_piece)
    }
}

/// Applies a sentence part's modifiers (LM-BFF: `sent-_`, `sentl_`, `sentu_`, `+`).
fn shape_sentence(text: &str, case: Case, drop_last: bool, space: bool) -> String {
    let mut s = text.trim().to_string();
    if drop_last {
        s.pop();
    }
    let mut chars = s.chars();
    s = match (case, chars.next()) {
        (Case::LowerFirst, Some(c)) => c.to_lowercase().chain(chars).collect(),
        (Case::UpperFirst, Some(c)) => c.to_uppercase().chain(chars).collect(),
        _ => s,
    };
    // An empty sentence stays empty: a lone space would be a token of its own (`Ġ`)
    // under byte-level BPE.
    if space && !s.is_empty() {
        s.insert(0, ' ');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_sentences() {
        assert_eq!(shape_sentence("Hello world.", Case::Keep, true, false), "Hello world");
        assert_eq!(shape_sentence("Hello", Case::LowerFirst, false, true), " hello");
        assert_eq!(shape_sentence("élan", Case::UpperFirst, false, false), "Élan");
        assert_eq!(shape_sentence("", Case::UpperFirst, true, false), "");
    }
}
