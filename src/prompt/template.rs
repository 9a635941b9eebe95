//! Templates: parsed from LM-BFF's own syntax (`*cls**sent_0*_It_was*mask*.*sep+*`) or
//! from a readable syntax (`{text} It was {mask}.`) into one list of [`Part`]s.
//!
//! LM-BFF syntax (ref: princeton-nlp/LM-BFF `src/dataset.py`, `tokenize_multipart_input`):
//! parts are written between `*`; anything else between them is literal text with `_`
//! standing for a space. Special parts: `cls`, `mask`, `sep`, `sep+` (separator, then the
//! next segment), `sent_N` (input sentence N), `+sent_N` (with a leading space),
//! `sent-_N` (last character dropped), `sentl_N` / `sentu_N` (first letter lower/upper
//! case; combinable with `+`), `label_N` (the word of label N), `labelx_N` (the word of
//! the label of support instance N, used when demonstrations are rendered).
//!
//! Readable syntax: `{text}` (or `{text_a}`) and `{text_b}` for the inputs, `{mask}`,
//! `{label}` (the word of the example's own label: parsed, and refused by `Prompt::new`
//! in a query, which it would give away), `{sep}`, `{cls}`; literal text in
//! between, spaces kept (but at the template's end); `{{` and `}}` write a literal brace.
//! An input placeholder after a space gets the leading-space form; the label word at the
//! mask has it always (see the verbalizer). Input placeholders take modifiers:
//! `{text_b:lower}` / `{text_b:upper}` (first letter), `{text_a:nolast}` (drop the last
//! character). `[CLS]` is added unless the template opens with `{cls}`, and a final
//! `[SEP]` unless it ends with `{sep}`.

use crate::{Error, Result};

/// First-letter case change applied to an input sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Keep,
    LowerFirst,
    UpperFirst,
}

/// One element of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Cls,
    Mask,
    /// A separator token; `next_segment` also advances the segment (token type) id.
    Sep { next_segment: bool },
    /// Input sentence `index` (0 = text / text_a, 1 = text_b).
    Sentence { index: usize, space: bool, case: Case, drop_last: bool },
    /// The word of a fixed label (`*label_N*`).
    LabelWord { label: usize, space: bool },
    /// The word of the label of sentence `index` (`*labelx_N*`, readable `{label}`).
    OwnLabelWord { index: usize, space: bool },
    /// Literal text, spaces included.
    Text(String),
}

/// A parsed template with exactly one mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses either syntax: a template containing `{` is readable syntax, one
    /// containing `*` is LM-BFF syntax.
    pub fn parse(source: &str) -> Result<Self> {
        let t = Self::parse_unchecked(source)?;
        t.validate(true)?;
        Ok(t)
    }

    /// Parses a label-anchor template: one mask, and the input's place optional (an
    /// anchor is the template without its input: `A truly {mask} movie.` reads as
    /// `{text} A truly {mask} movie.`).
    pub fn parse_anchor(source: &str) -> Result<Self> {
        let t = Self::parse_unchecked(source)?;
        t.validate(false)?;
        Ok(t)
    }

    fn parse_unchecked(source: &str) -> Result<Self> {
        let parts = if source.contains('{') {
            parse_readable(source)?
        } else if source.contains('*') {
            parse_lmbff(source)?
        } else {
            return Err(whole(source, "no placeholders: write `{text} It was {mask}.` or LM-BFF's `*cls**sent_0*_It_was*mask*.*sep+*`"));
        };
        Ok(Template { source: source.to_string(), parts })
    }

    /// The input as plain [CLS] fine-tuning reads it: `[CLS] text_a [SEP] (text_b [SEP])`,
    /// with no mask (a classifier reads the first token).
    pub fn plain(sentences: usize) -> Self {
        let mut parts = vec![Part::Cls];
        for index in 0..sentences.max(1) {
            parts.push(Part::Sentence { index, space: index > 0, case: Case::Keep, drop_last: false });
            parts.push(Part::Sep { next_segment: true });
        }
        let source = if sentences > 1 { "[CLS] {text_a} [SEP] {text_b} [SEP]" } else { "[CLS] {text} [SEP]" };
        Template { source: source.to_string(), parts }
    }

    /// A template from parts already resolved (an export manifest's), checked as a parsed
    /// one is; `source` is kept for messages.
    pub fn from_parts(source: &str, parts: Vec<Part>) -> Result<Self> {
        let t = Template { source: source.to_string(), parts };
        t.validate(true)?;
        Ok(t)
    }

    /// The plain reading from an export manifest's parts, which must be exactly those of
    /// [`Template::plain`] for their sentence count.
    pub fn plain_from_parts(parts: Vec<Part>) -> Result<Self> {
        let sentences = parts.iter().filter(|p| matches!(p, Part::Sentence { .. })).count();
        let t = Template::plain(sentences);
        if sentences == 0 || t.parts != parts {
            return Err(whole(&t.source, "a sentence-embedding model reads `[CLS] text [SEP]` (pairs: `[CLS] a [SEP] b [SEP]`); the manifest has other parts"));
        }
        Ok(t)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// How many input sentences the template reads (1 for single sentence tasks).
    pub fn num_sentences(&self) -> usize {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Sentence { index, .. } => Some(index + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Highest fixed label index the template refers to (`*label_N*`), if any.
    pub fn max_label_ref(&self) -> Option<usize> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::LabelWord { label, .. } => Some(*label),
                _ => None,
            })
            .max()
    }

    fn validate(&self, needs_text: bool) -> Result<()> {
        let masks = self.parts.iter().filter(|p| matches!(p, Part::Mask)).count();
        if masks == 0 {
            return Err(whole(&self.source, "the template has no mask: add `{mask}` (or `*mask*`) where the label word goes"));
        }
        if masks > 1 {
            // The parsers refuse a second mask where it stands; parts given whole
            // (`from_parts`) have no positions.
            return Err(whole(&self.source, SECOND_MASK));
        }
        // Parts given whole (a manifest's) are held to what the parsers allow.
        if self.parts.iter().any(|p| matches!(p, Part::Sentence { index, .. } if *index > 1)) {
            return Err(whole(&self.source, "inputs have at most two sentences (sent_0, sent_1)"));
        }
        if needs_text && !self.parts.iter().any(|p| matches!(p, Part::Sentence { .. })) {
            return Err(whole(&self.source, "the template never places the input text: add `{text}` (or `*sent_0*`)"));
        }
        if let Some(i) = (0..self.num_sentences()).find(|i| {
            !self.parts.iter().any(|p| matches!(p, Part::Sentence { index, .. } if index == i))
        }) {
            return Err(whole(&self.source, &format!("the template uses sentence {} but skips sentence {i}", self.num_sentences() - 1)));
        }
        Ok(())
    }
}

fn err(source: &str, at: usize, message: &str) -> Error {
    Error::Template { template: source.to_string(), at: Some(at), message: message.to_string() }
}

/// An error of the template as a whole (a part it lacks), at no one byte.
fn whole(source: &str, message: &str) -> Error {
    Error::Template { template: source.to_string(), at: None, message: message.to_string() }
}

/// Appends a parsed part, refusing a second mask where it stands in `src` (text of the
/// template that says "mask" is no mask).
fn push_part(parts: &mut Vec<Part>, part: Part, src: &str, at: usize) -> Result<()> {
    if part == Part::Mask && parts.contains(&Part::Mask) {
        return Err(err(src, at, SECOND_MASK));
    }
    parts.push(part);
    Ok(())
}

const SECOND_MASK: &str = "the template has a second mask: exactly one is allowed";

fn parse_lmbff(src: &str) -> Result<Vec<Part>> {
    // LM-BFF reads each `*`-separated piece by what it says (a part's name, else text,
    // nothing when empty), so a few of its automatic templates pair their stars oddly
    // (`*cls*_**mask*:*+sent_0**sep+*`: an empty piece where a part would be). Read by
    // position first, whose errors name a misspelt part (`*blah*`); where stars pair
    // oddly, by content, as LM-BFF does.
    parse_lmbff_by_position(src).or_else(|e| {
        let pieces: Vec<&str> = src.split('*').collect();
        let odd_stars = pieces.len().is_multiple_of(2) || pieces.iter().skip(1).step_by(2).any(|p| p.is_empty());
        if odd_stars {
            parse_lmbff_by_content(src)
        } else {
            Err(e)
        }
    })
}

/// LM-BFF's own reading: every piece that names a part is that part, an empty piece is
/// nothing, any other is text. A piece that reads as a part's name but is not one
/// (`sent_7`, `snet_0`) is an error naming it.
fn parse_lmbff_by_content(src: &str) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut at = 0;
    for piece in src.split('*') {
        // `name_N` (sent_0, sentl_1, label_0, ...): a part, or a misspelt one.
        let numbered = piece.trim_start_matches('+').rsplit_once('_').is_some_and(|(name, n)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
        });
        let named = matches!(piece, "cls" | "mask" | "sep" | "sep+") || numbered;
        if named {
            push_part(&mut parts, lmbff_part(src, at, piece)?, src, at)?;
        } else if !piece.is_empty() {
            parts.push(Part::Text(piece.replace('_', " ")));
        }
        at += piece.len() + 1;
    }
    Ok(parts)
}

fn parse_lmbff_by_position(src: &str) -> Result<Vec<Part>> {
    // Splitting on `*` alternates literal text (even pieces) and parts (odd pieces):
    // `*cls**sent_0*_It_was*mask*.` -> "", cls, "", sent_0, "_It_was", mask, ".".
    let pieces: Vec<&str> = src.split('*').collect();
    if pieces.len().is_multiple_of(2) {
        return Err(err(src, src.rfind('*').unwrap_or(0), "unbalanced `*`: a part is opened but never closed"));
    }
    let mut parts = Vec::new();
    let mut at = 0;
    for (i, piece) in pieces.iter().enumerate() {
        if i % 2 == 1 {
            push_part(&mut parts, lmbff_part(src, at, piece)?, src, at)?;
        } else if !piece.is_empty() {
            parts.push(Part::Text(piece.replace('_', " ")));
        }
        at += piece.len() + 1;
    }
    Ok(parts)
}

fn lmbff_part(src: &str, at: usize, p: &str) -> Result<Part> {
    let simple = match p {
        "cls" => Some(Part::Cls),
        "mask" => Some(Part::Mask),
        "sep" => Some(Part::Sep { next_segment: false }),
        "sep+" => Some(Part::Sep { next_segment: true }),
        _ => None,
    };
    if let Some(s) = simple {
        return Ok(s);
    }
    let (space, body) = match p.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    let unknown = || err(src, at, &format!("unknown part `*{p}*`: expected cls, mask, sep, sep+, sent_N, +sent_N, sent-_N, sentl_N, sentu_N, label_N or labelx_N"));
    let (name, index) = body.rsplit_once('_').ok_or_else(unknown)?;
    // Digits only (`usize` parsing takes `+1` too).
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown());
    }
    let index: usize = index.parse().map_err(|_| unknown())?;
    if name == "label" {
        return Ok(Part::LabelWord { label: index, space });
    }
    if name == "labelx" {
        return Ok(Part::OwnLabelWord { index, space });
    }
    // sent, then an optional case letter (l / u), then an optional `-` (drop last char).
    let rest = name.strip_prefix("sent").ok_or_else(unknown)?;
    let (drop_last, rest) = match rest.strip_suffix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let case = match rest {
        "" => Case::Keep,
        "l" => Case::LowerFirst,
        "u" => Case::UpperFirst,
        _ => return Err(unknown()),
    };
    if index > 1 {
        return Err(err(src, at, &format!("`*{p}*`: inputs have at most two sentences (sent_0, sent_1)")));
    }
    Ok(Part::Sentence { index, space, case, drop_last })
}

/// Splits readable syntax into literal runs and placeholders: `{{` and `}}` are literal
/// braces, `{name}` a placeholder (with its byte offset), a lone `}` an error.
fn readable_pieces(src: &str) -> Result<Vec<(String, Option<(usize, &str)>)>> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut at = 0;
    while let Some(i) = src[at..].find(['{', '}']).map(|i| at + i) {
        literal.push_str(&src[at..i]);
        let brace = &src[i..i + 1];
        if src[i + 1..].starts_with(brace) {
            literal.push_str(brace);
            at = i + 2;
            continue;
        }
        if brace == "}" {
            return Err(err(src, i, "`}` without a matching `{` (write `}}` for a literal brace)"));
        }
        let close = src[i..].find('}').ok_or_else(|| err(src, i, "`{` is never closed (write `{{` for a literal brace)"))? + i;
        let name = &src[i + 1..close];
        if name.contains('{') {
            return Err(err(src, i, "`{` is never closed before the next `{` (write `{{` for a literal brace)"));
        }
        pieces.push((std::mem::take(&mut literal), Some((i, name.trim()))));
        at = close + 1;
    }
    literal.push_str(&src[at..]);
    pieces.push((literal, None));
    Ok(pieces)
}

fn parse_readable(src: &str) -> Result<Vec<Part>> {
    let mut parts: Vec<Part> = Vec::new();
    // Spaces around `{cls}` and `{sep}` mean nothing (a special token is no word), so
    // `{cls} {text} It was {mask}. {sep}` renders as `{text} It was {mask}.` does.
    let special = |p: Option<&Part>| matches!(p, Some(Part::Cls | Part::Sep { .. }));
    for (literal, placeholder) in readable_pieces(src)? {
        let literal = if special(parts.last()) { literal.trim_start() } else { &literal[..] };
        let Some((at, name)) = placeholder else {
            // Space at the template's end (a config file's newline) is no text: a
            // byte-level vocabulary would read it as a token of its own before [SEP].
            let literal = literal.trim_end();
            if !literal.is_empty() {
                parts.push(Part::Text(literal.to_string()));
            }
            break;
        };
        let space = literal.ends_with(' ') || (literal.is_empty() && matches!(parts.last(), Some(Part::Text(t)) if t.ends_with(' ')));
        let mut lit = literal.to_string();
        let part = readable_part(src, at, name, false)?;
        if part == Part::Cls && (!parts.is_empty() || !lit.trim().is_empty()) {
            return Err(err(src, at, "`{cls}` opens the template (nothing before it); leave it out to have it put there"));
        }
        if special(Some(&part)) {
            lit.truncate(lit.trim_end().len());
        }
        // A space before a text or label-word placeholder becomes its leading-space form;
        // a space before the mask is absorbed too (the label word in its place carries
        // the space, as `Ġgreat` does in BPE vocabularies; LM-BFF writes `_was*mask*`).
        let takes_space = matches!(part, Part::Sentence { .. } | Part::OwnLabelWord { .. } | Part::LabelWord { .. });
        if (takes_space || part == Part::Mask) && space && lit.ends_with(' ') {
            lit.pop();
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        push_part(&mut parts, if takes_space { readable_part(src, at, name, space)? } else { part }, src, at)?;
    }
    if !matches!(parts.first(), Some(Part::Cls)) {
        parts.insert(0, Part::Cls);
    }
    if !matches!(parts.last(), Some(Part::Sep { .. })) {
        parts.push(Part::Sep { next_segment: false });
    }
    Ok(parts)
}

fn readable_part(src: &str, at: usize, spec: &str, space: bool) -> Result<Part> {
    let (name, modifier) = match spec.split_once(':') {
        Some((n, m)) => (n.trim(), Some(m.trim())),
        None => (spec, None),
    };
    let index = match name {
        "text" | "text_a" => Some(0),
        "text_b" => Some(1),
        _ => None,
    };
    if let Some(index) = index {
        // Modifiers combine (`{text_b:lower:nolast}`, LM-BFF's `sentl-_1`); one case.
        let (mut case, mut drop_last) = (Case::Keep, false);
        for m in modifier.into_iter().flat_map(|m| m.split(':')).map(str::trim) {
            match (m, case) {
                ("lower", Case::Keep) => case = Case::LowerFirst,
                ("upper", Case::Keep) => case = Case::UpperFirst,
                ("nolast", _) if !drop_last => drop_last = true,
                ("lower" | "upper" | "nolast", _) => {
                    return Err(err(src, at, &format!("`{{{name}}}` has `:{m}` after another modifier that sets the same thing")))
                }
                _ => return Err(err(src, at, &format!("unknown modifier `:{m}` on `{{{name}}}`: expected lower, upper or nolast"))),
            }
        }
        return Ok(Part::Sentence { index, space, case, drop_last });
    }
    if let Some(m) = modifier {
        return Err(err(src, at, &format!("`{{{name}}}` takes no modifier (got `:{m}`)")));
    }
    match name {
        "mask" => Ok(Part::Mask),
        "cls" => Ok(Part::Cls),
        "sep" => Ok(Part::Sep { next_segment: true }),
        "label" => Ok(Part::OwnLabelWord { index: 0, space }),
        _ => Err(err(src, at, &format!("unknown placeholder `{{{name}}}`: expected text, text_a, text_b, mask, label, sep or cls"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(index: usize, space: bool) -> Part {
        Part::Sentence { index, space, case: Case::Keep, drop_last: false }
    }

    #[test]
    fn lmbff_sst2_template() {
        let t = Template::parse("*cls**sent_0*_It_was*mask*.*sep+*").unwrap();
        assert_eq!(
            t.parts(),
            &[Part::Cls, s(0, false), Part::Text(" It was".into()), Part::Mask, Part::Text(".".into()), Part::Sep { next_segment: true }]
        );
        // A sentence index is digits (`+1` parsed as 1); parts given whole hold at most two.
        let e = Template::parse("*cls**sent_+1*_It_was*mask*.*sep+*").unwrap_err().to_string();
        assert!(e.contains("unknown part `*sent_+1*`"), "{e}");
        let mut parts = t.parts().to_vec();
        parts[1] = s(2, false);
        let e = Template::from_parts("x", parts).unwrap_err().to_string();
        assert!(e.contains("at most two sentences"), "{e}");
    }

    #[test]
    fn lmbff_pair_template_with_modifiers() {
        let t = Template::parse("*cls**sent-_0*?*mask*,*+sentl_1**sep+*").unwrap();
        assert_eq!(t.num_sentences(), 2);
        assert_eq!(t.parts()[1], Part::Sentence { index: 0, space: false, case: Case::Keep, drop_last: true });
        assert_eq!(t.parts()[5], Part::Sentence { index: 1, space: true, case: Case::LowerFirst, drop_last: false });
        let t = Template::parse("*cls**sentl-_0*?*mask*.*sep+*").unwrap();
        assert_eq!(t.parts()[1], Part::Sentence { index: 0, space: false, case: Case::LowerFirst, drop_last: true });
    }

    #[test]
    fn lmbff_label_parts() {
        let t = Template::parse("*cls**sent_0*_It_was*mask*.*sep+**label_1**+labelx_0*").unwrap();
        assert_eq!(t.max_label_ref(), Some(1));
        assert!(t.parts().contains(&Part::OwnLabelWord { index: 0, space: true }));
    }

    #[test]
    fn readable_single_and_pair() {
        let t = Template::parse("{text} It was {mask}.").unwrap();
        assert_eq!(
            t.parts(),
            &[Part::Cls, s(0, false), Part::Text(" It was".into()), Part::Mask, Part::Text(".".into()), Part::Sep { next_segment: false }]
        );
        let p = Template::parse("{text_a} ? {mask} , {text_b}").unwrap();
        assert_eq!(p.num_sentences(), 2);
        assert!(p.parts().contains(&s(1, true)));
        // Space at the end (a config file's newline) is not a token before [SEP].
        assert_eq!(Template::parse("{text} It was {mask}. \n").unwrap().parts(), t.parts());
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = Template::parse("{text} {{set}} It was {mask}.}}").unwrap();
        assert_eq!(
            t.parts(),
            &[
                Part::Cls,
                s(0, false),
                Part::Text(" {set} It was".into()),
                Part::Mask,
                Part::Text(".}".into()),
                Part::Sep { next_segment: false }
            ]
        );
        // `{{{text}` is a brace, then the input (after no space: no leading-space form).
        let t = Template::parse("{{{text}}} {mask}").unwrap();
        assert_eq!(t.parts()[1..4], [Part::Text("{".into()), s(0, false), Part::Text("}".into())]);
        let e = Template::parse("{text} {mask} {{ a } b").unwrap_err();
        assert!(matches!(e, Error::Template { at: Some(19), .. }), "{e:?}");
    }

    /// The second mask is pointed at where it stands, not at the second "mask" of the
    /// template's text.
    #[test]
    fn a_second_mask_is_named_where_it_stands() {
        for src in ["{text} Unmask it: {mask} or {mask}.", "*cls**sent_0*_Unmask_it:*mask*_or*mask*.*sep+*"] {
            let e = Template::parse(src).unwrap_err();
            // Readable syntax points at the placeholder's brace, LM-BFF's at the part's name.
            let second = src.rfind("{mask}").unwrap_or_else(|| src.rfind("mask").unwrap());
            assert!(matches!(&e, Error::Template { at, message, .. } if *at == Some(second) && message.contains("second mask")), "{src}: {e:?}");
        }
    }

    #[test]
    fn rejects_bad_templates_with_position() {
        for (src, needle) in [
            ("{text} It was good.", "no mask"),
            ("{text} {mask} and {mask}", "second mask"),
            ("{text} It was {maks}.", "unknown placeholder `{maks}`"),
            ("*cls**sent_0**mask**blah*", "unknown part `*blah*`"),
            ("{text} It was {mask", "never closed"),
            ("It was {mask}.", "never places the input"),
            ("{text_b} {mask}", "skips sentence 0"),
            ("{text:shout} {mask}", "unknown modifier"),
            ("plain words", "no placeholders"),
            // A stray `}` is refused wherever it is (between placeholders it used to be
            // kept as text, after the last one refused).
            ("{text} a} {mask}.", "`}` without a matching `{`"),
            ("{text} {mask}.}", "`}` without a matching `{`"),
            ("{text} {mask} {", "never closed"),
            ("{text {mask}", "before the next `{`"),
            ("{{text}} {mask}", "never places the input"),
            ("{text} {mask}}", "`}` without a matching `{`"),
        ] {
            let e = Template::parse(src).unwrap_err().to_string();
            assert!(e.contains(needle), "{src:?} gave {e:?}, expected it to mention {needle:?}");
        }
        let e = Template::parse("{text} It was {maks}.").unwrap_err();
        assert!(matches!(e, Error::Template { at: Some(14), .. }), "{e:?}");
        let e = Template::parse("{text} a} {mask}.").unwrap_err();
        assert!(matches!(e, Error::Template { at: Some(8), .. }), "{e:?}");
    }
}
