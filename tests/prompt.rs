//! Prompt rendering against real tokenizers: the default MiniLM (WordPiece, uncased)
//! and the tiny RoBERTa fixture (byte-level BPE).

mod common;

use lmbff::prompt::{Example, Prompt, Template, Truncation, Verbalizer};
use lmbff::tokenize::{Tokenizer, WordBoundary};
use lmbff::Error;

fn minilm() -> Tokenizer {
    Tokenizer::from_dir(&common::default_model()).unwrap()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn sst2(tok: &Tokenizer, template: &str, max_len: usize) -> Prompt {
    let v = Verbalizer::new(tok, &pairs(&[("0", "terrible"), ("1", "great")])).unwrap();
    Prompt::new(Template::parse(template).unwrap(), v, Truncation { max_len, ..Truncation::default() }).unwrap()
}

#[test]
fn both_syntaxes_render_what_the_tokenizer_renders() {
    let tok = minilm();
    let ex = Example::single("A gripping, beautifully acted film.", Some(1));
    let a = sst2(&tok, "*cls**sent_0*_It_was*mask*.*sep+*", 128).encode(&tok, &ex).unwrap();
    let b = sst2(&tok, "{text} It was {mask}.", 128).encode(&tok, &ex).unwrap();
    assert_eq!(a.input_ids, b.input_ids);
    // Same ids as the HF tokenizer on the filled-in string with its own special tokens.
    let inner = tokenizers::Tokenizer::from_file(common::default_model().join("tokenizer.json")).unwrap();
    let reference = inner.encode("A gripping, beautifully acted film. It was [MASK].", true).unwrap();
    let want: Vec<u32> = reference.get_ids().iter().copied().filter(|&i| i != tok.special().pad).collect();
    assert_eq!(a.input_ids, want);
    assert_eq!(a.input_ids[a.mask_pos], tok.special().mask);
    assert_eq!(tok.word_boundary(), WordBoundary::Ignored);
}

#[test]
fn pair_template_segments_and_modifiers() {
    let tok = minilm();
    let v = Verbalizer::new(&tok, &pairs(&[("not_entailment", "no"), ("entailment", "yes")])).unwrap();
    let p = Prompt::new(Template::parse("*cls**sent-_0*?*mask*,*+sentl_1**sep+*").unwrap(), v, Truncation::default()).unwrap();
    let ex = Example { text_a: "The cat sat.".into(), text_b: Some("A cat was sitting.".into()), label: None };
    let e = p.encode(&tok, &ex).unwrap();
    let text = tok.decode(&e.input_ids);
    assert_eq!(text, "[CLS] the cat sat? [MASK], a cat was sitting. [SEP]");
    assert!(e.segment_ids.iter().all(|&s| s == 0), "one segment until sep+");
    let readable = Prompt::new(Template::parse("{text_a:nolast} ? {mask} , {text_b:lower}{sep}").unwrap(), p.verbalizer.clone(), Truncation::default()).unwrap();
    assert_eq!(tok.decode(&readable.encode(&tok, &ex).unwrap().input_ids), text);
    let two = Prompt::new(Template::parse("*cls**sent_0**sep+**sent_1*_?*mask*.*sep+*").unwrap(), p.verbalizer.clone(), Truncation::default()).unwrap();
    let e = two.encode(&tok, &ex).unwrap();
    let first_b = e.input_ids.iter().position(|&i| i == tok.special().sep).unwrap() + 1;
    assert!(e.segment_ids[..first_b].iter().all(|&s| s == 0) && e.segment_ids[first_b..].iter().all(|&s| s == 1));
}

#[test]
fn truncation_never_cuts_the_mask() {
    let tok = minilm();
    let long = "the plot wanders and wanders ".repeat(40);
    for template in ["{text} It was {mask}.", "{mask} : {text}"] {
        let p = sst2(&tok, template, 24);
        let e = p.encode(&tok, &Example::single(long.clone(), None)).unwrap();
        assert_eq!(e.input_ids.len(), 24, "{template}");
        assert_eq!(e.input_ids[e.mask_pos], tok.special().mask, "{template}");
        assert_eq!(*e.input_ids.last().unwrap(), tok.special().sep);
    }
    // Per-sentence limits apply first.
    let mut p = sst2(&tok, "{text} It was {mask}.", 128);
    p.truncation.first_sent_limit = Some(5);
    let e = p.encode(&tok, &Example::single(long, None)).unwrap();
    assert_eq!(e.input_ids.len(), 1 + 5 + 2 + 1 + 1 + 1, "[CLS] 5 tokens it was [MASK] . [SEP]");
    // A template that cannot fit is an error, not a silent cut.
    let p = sst2(&tok, "{text} It was really and truly, without a doubt, {mask}.", 8);
    assert!(matches!(p.encode(&tok, &Example::single("x", None)), Err(Error::Truncation(_))));
}

/// Texts that stress where `encode_head` may cut: plain prose, a whitespace run far
/// longer than the first cut (the cut doubles past it), Unicode with no-break spaces and
/// accents, CJK without spaces, and no whitespace at all (cut where two cuts agree):
/// words and commas, a run of one punctuation mark, of one letter, of a letter and a
/// combining accent, and a base64-like blob.
fn long_texts() -> Vec<(&'static str, String)> {
    let prose = "The film's pacing drags, yet the cast (mostly newcomers) is superb; 9/10! ".repeat(2_000);
    let gap = format!("{}{}{}", "short opening words ".repeat(5), " \n\t ".repeat(50_000), "then more words at last ".repeat(500));
    let unicode = "Café crème\u{a0}brûlée — déjà vu\u{3000}naïve Ωmega ".repeat(2_000);
    let cjk = format!("{} tail", "这部电影非常好看。".repeat(3_000));
    let unbroken = "word,".repeat(20_000);
    let dots = ".".repeat(200_000);
    let letters = "a".repeat(200_000);
    let accents = "e\u{301}".repeat(100_000);
    let blob = "aB3+/x9Q=Zk".repeat(20_000);
    // A form feed where the first cut falls (past 4 KB of control characters, which
    // BERT's normaliser deletes as it deletes the form feed: "cat\fsat" reads "catsat").
    let form_feed = format!("{}cat\x0csat dog and more words", "\x01".repeat(4093));
    vec![("prose", prose), ("gap", gap), ("unicode", unicode), ("cjk", cjk), ("unbroken", unbroken), ("dots", dots), ("letters", letters), ("accents", accents), ("blob", blob), ("form feed", form_feed)]
}

#[test]
fn long_inputs_are_tokenized_only_as_far_as_truncation_reads() {
    let tokenizers = [("minilm", minilm()), ("roberta", Tokenizer::from_dir(&common::fixtures().join("roberta")).unwrap())];
    for (name, tok) in &tokenizers {
        for (kind, text) in long_texts() {
            let whole = tok.encode_piece(&text).unwrap();
            let (_, words) = tok.encode_words(&text).unwrap();
            for n in [1, 7, 128, 512, whole.len() + 5] {
                let head = tok.encode_head(&text, n).unwrap();
                assert_eq!(head, whole[..n.min(whole.len())], "{name} {kind} {n}");
                // And with each token's word, as masked-LM adaptation reads its texts.
                let (ids, w) = tok.encode_words_head(&text, n).unwrap();
                assert_eq!((ids, &w[..]), (head, &words[..n.min(words.len())]), "{name} {kind} {n}");
            }
        }
    }
    // Through a prompt: a document of 20 MB renders as its first few kilobytes do, and
    // no faster way exists to tell that only its head was tokenized than the time it
    // takes (the whole text takes seconds and gigabytes; its head, milliseconds).
    let tok = minilm();
    let p = sst2(&tok, "{text} It was {mask}.", 128);
    let head = "A gripping, beautifully acted film that never lets go. ".repeat(100);
    // The limits are 10 s (the whole took 20 to 47 s); the inputs are made before the
    // clock starts (copies of 20 MB), so a busy machine's stalls stay well inside them.
    let limit = std::time::Duration::from_secs(10);
    let doc = head.repeat(4_000);
    let mb = doc.len() >> 20;
    let input = Example::single(doc, None);
    let started = std::time::Instant::now();
    let e = p.encode(&tok, &input).unwrap();
    let took = started.elapsed();
    assert_eq!(e, p.encode(&tok, &Example::single(head, None)).unwrap());
    assert!(took < limit, "a {mb} MB input took {took:?} to render");
    // The same without whitespace: 20 MB of dots (each its own token) used to take 20 s.
    let dots = Example::single(".".repeat(20 << 20), None);
    let started = std::time::Instant::now();
    let e = p.encode(&tok, &dots).unwrap();
    let took = started.elapsed();
    assert_eq!(e, p.encode(&tok, &Example::single(".".repeat(4096), None)).unwrap());
    assert!(took < limit, "20 MB of dots took {took:?} to render");
    // 20 MB of one letter is one [UNK] word however long (it took 47 s at the C ABI), and
    // so is a letter joined by form feeds (BERT's normaliser deletes them): an unbroken
    // stretch is read to 64 KiB (16 times the first cut), and the text taken to end
    // there; a text after such a stretch is not read.
    for (kind, unit) in [("letters", "a"), ("form feeds", "a\x0c"), ("zero-width spaces", "a\u{200b}")] {
        let input = Example::single(format!("{} then words", unit.repeat((20 << 20) / unit.len())), None);
        let started = std::time::Instant::now();
        let e = p.encode(&tok, &input).unwrap();
        let took = started.elapsed();
        assert_eq!(e, p.encode(&tok, &Example::single(unit.repeat(4096), None)).unwrap(), "{kind}");
        assert!(took < limit, "20 MB of {kind} took {took:?} to render");
    }
    // A break within the last 64 KiB keeps the reading going: words after 40 KiB of a
    // letter are read.
    let text = format!("{} then words", "a".repeat(40 << 10));
    assert_eq!(tok.encode_head(&text, 128).unwrap(), tok.encode_piece(&text).unwrap());
}

/// `{cls}` and `{sep}` written out render as the template without them: spaces beside a
/// special token are no part of a word (with byte-level BPE a stray space used to become
/// a token of its own); `{cls}` anywhere but first is refused (it used to give two).
#[test]
fn explicit_special_placeholders_render_as_implicit_ones() {
    let roberta = Tokenizer::from_dir(&common::fixtures().join("roberta")).unwrap();
    for (name, tok) in [("minilm", &minilm()), ("roberta", &roberta)] {
        let ex = Example::single("A gripping film.", None);
        let implicit = sst2(tok, "{text} It was {mask}.", 64).encode(tok, &ex).unwrap();
        for t in ["{cls} {text} It was {mask}. {sep}", "{cls}{text} It was {mask}.{sep}", " {cls}  {text} It was {mask}.  {sep} "] {
            assert_eq!(sst2(tok, t, 64).encode(tok, &ex).unwrap(), implicit, "{name}: {t:?}");
        }
    }
    let e = Template::parse("Review: {cls}{text} It was {mask}.").unwrap_err().to_string();
    assert!(e.contains("`{cls}` opens the template"), "{e}");
}

/// Control tokens typed in the input read as unknown: the template's mask and separators
/// stay the only ones (a typed [SEP] used to split the input into another segment).
#[test]
fn typed_control_tokens_read_as_unknown() {
    let tok = minilm();
    let p = sst2(&tok, "*cls**sent_0**sep+*It_was*mask*.*sep+*", 64);
    let e = p.encode(&tok, &Example::single("good [SEP] bad [CLS] [MASK] [PAD]", None)).unwrap();
    let s = tok.special();
    assert_eq!(e.input_ids.iter().filter(|&&i| i == s.sep).count(), 2, "{}", tok.decode(&e.input_ids));
    assert_eq!(e.input_ids.iter().filter(|&&i| i == s.cls).count(), 1);
    assert_eq!(e.input_ids.iter().filter(|&&i| i == s.mask).count(), 1);
    assert_eq!(e.input_ids.iter().filter(|&&i| i == s.unk).count(), 4);
    let first_sep = e.input_ids.iter().position(|&i| i == s.sep).unwrap();
    assert!(e.segment_ids[..=first_sep].iter().all(|&g| g == 0), "the typed [SEP] starts no segment");
}

#[test]
fn label_words_are_checked_against_the_vocabulary() {
    let tok = minilm();
    let e = Verbalizer::new(&tok, &pairs(&[("0", "great"), ("1", "Great")])).unwrap_err();
    assert!(e.to_string().contains("also a word of label \"0\""), "{e}");
    let e = Verbalizer::new(&tok, &pairs(&[("0", "bad|awful|bad"), ("1", "great")])).unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
    for empty in ["bad|", "", "|bad"] {
        let e = Verbalizer::new(&tok, &pairs(&[("0", empty), ("1", "great")])).unwrap_err();
        assert!(e.to_string().contains("a label word is empty"), "{e}");
    }
    // A word the normalizer drops whole (a zero-width space) was "not in the vocabulary".
    let e = Verbalizer::new(&tok, &pairs(&[("0", "\u{200b}"), ("1", "great")])).unwrap_err();
    assert!(e.to_string().contains("encodes to no token at all"), "{e}");
    let e = Verbalizer::new(&tok, &pairs(&[("0", "very bad"), ("1", "great")])).unwrap_err();
    assert!(e.to_string().contains("no spaces"), "{e}");
    assert!(Verbalizer::new(&tok, &pairs(&[("0", "great")])).is_err());
    // A class without a name (hosts and exports name their answers by it).
    for empty in ["", "  "] {
        let e = Verbalizer::new(&tok, &pairs(&[("0", "bad"), (empty, "great")])).unwrap_err();
        assert!(e.to_string().contains("label 1 has an empty name"), "{e}");
    }
    let v = Verbalizer::parse_mapping(&tok, "{'0':'terrible','1':'great'}").unwrap();
    assert_eq!(v.words(), ["terrible", "great"]);
    assert_eq!(v.token_ids()[1], tok.token_to_id("great").unwrap());
    assert!(v.is_simple() && v.class_weights().is_none() && v.shown_tokens().is_none());
    // JSON with an apostrophe in a word is read as it is (it used to be broken by the
    // single-quote rewrite).
    let v = Verbalizer::parse_mapping(&tok, r#"{"0":"don't","1":"great"}"#).unwrap();
    assert_eq!(v.words(), ["don't", "great"]);
    // LM-BFF's scripts write bare number keys for six tasks (run_experiment.sh's
    // `{0:'terrible',1:'great'}`): read, in their order; numbers inside words stay.
    let v = Verbalizer::parse_mapping(&tok, "{0:'terrible', 1 : 'great'}").unwrap();
    assert_eq!((v.labels(), v.words()), (&["0".to_string(), "1".to_string()][..], &["terrible".to_string(), "great".to_string()][..]));
    let v = Verbalizer::parse_mapping(&tok, "{'0':'1',1:'great'}").unwrap();
    assert_eq!(v.words(), ["1", "great"]);
    // A label given twice is refused (the last one was kept, silently).
    let e = Verbalizer::parse_mapping(&tok, "{'0':'terrible','1':'great','0':'bad'}").unwrap_err();
    assert!(e.to_string().contains("label \"0\" is listed twice"), "{e}");
    // A control token is no label word.
    let e = Verbalizer::new(&tok, &pairs(&[("0", "[MASK]"), ("1", "great")])).unwrap_err();
    assert!(e.to_string().contains("control token"), "{e}");
}

/// Several words per class and multi-token words: the scored tokens are every sub-token
/// of every word, class by class; each class averages over its words, each word over its
/// sub-tokens; a class is shown by its first word.
#[test]
fn several_and_multi_token_label_words() {
    let tok = minilm();
    // "lackluster" is lack ##lus ##ter in this vocabulary.
    let v = Verbalizer::new(&tok, &pairs(&[("neg", "lackluster|bad"), ("pos", " great | superb ")])).unwrap();
    assert!(!v.is_simple());
    assert_eq!(v.words(), ["lackluster|bad", "great|superb"]);
    let id = |t: &str| tok.token_to_id(t).unwrap();
    assert_eq!(v.token_ids(), [id("lack"), id("##lus"), id("##ter"), id("bad"), id("great"), id("superb")]);
    assert_eq!(v.word_tokens(0).unwrap(), [id("lack"), id("##lus"), id("##ter")]);
    assert_eq!(v.shown_tokens().unwrap(), [vec![id("lack"), id("##lus"), id("##ter")], vec![id("great")]]);
    let w = v.class_weights().unwrap();
    let col = |c: usize| w.iter().map(|r| r[c]).collect::<Vec<f32>>();
    let third = 1.0 / 6.0;
    assert_eq!(col(0), [third, third, third, 0.5, 0.0, 0.0]);
    assert_eq!(col(1), [0.0, 0.0, 0.0, 0.0, 0.5, 0.5]);
    // A demonstration shows its class's first word, all of its tokens.
    let p = Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v, Truncation::default()).unwrap();
    let e = p.encode_with_demos(&tok, &Example::single("fine", None), &[Example::single("dull", Some(0))]).unwrap();
    let lack = e.input_ids.iter().position(|&t| t == id("lack")).unwrap();
    assert_eq!(e.input_ids[lack..lack + 3], [id("lack"), id("##lus"), id("##ter")]);
}

#[test]
fn bpe_label_words_use_the_leading_space_form() {
    let tok = Tokenizer::from_dir(&common::fixtures().join("roberta")).unwrap();
    assert_eq!(tok.word_boundary(), WordBoundary::LeadingSpace);
    let v = Verbalizer::new(&tok, &pairs(&[("0", "terrible"), ("1", "great")])).unwrap();
    assert_eq!(v.token_ids()[1], tok.token_to_id("Ġgreat").unwrap());
    let p = Prompt::new(Template::parse("*cls**sent_0*_It_was*mask*.*sep+*").unwrap(), v, Truncation::default()).unwrap();
    let e = p.encode(&tok, &Example::single("the movie was fun", None)).unwrap();
    assert_eq!(e.input_ids[0], tok.special().cls);
    assert_eq!(e.input_ids[e.mask_pos], tok.special().mask);
    // `*+sent_1*`-style space handling: a leading-space sentence gets `Ġ` on its first word.
    let spaced = tok.encode_piece(" great").unwrap();
    assert_eq!(spaced, vec![tok.token_to_id("Ġgreat").unwrap()]);
}

#[test]
fn template_refers_to_unknown_label() {
    let tok = minilm();
    let v = Verbalizer::new(&tok, &pairs(&[("0", "terrible"), ("1", "great")])).unwrap();
    let e = Prompt::new(Template::parse("*cls**sent_0*_It_was*mask*.*sep+**label_5*").unwrap(), v, Truncation::default()).unwrap_err();
    assert!(matches!(&e, Error::Template { message, .. } if message.contains("label 5")), "{e}");
}

#[test]
fn own_label_word_is_refused_in_a_query_template() {
    let tok = minilm();
    let v = Verbalizer::new(&tok, &pairs(&[("0", "terrible"), ("1", "great")])).unwrap();
    for t in ["{text} It was {label}, {mask}.", "*cls**sent_0*_It_was*mask*.*labelx_0**sep+*"] {
        let e = Prompt::new(Template::parse(t).unwrap(), v.clone(), Truncation::default()).unwrap_err();
        assert!(e.to_string().contains("demonstration"), "{t}: {e}");
    }
}

#[test]
fn bpe_pair_rendering_matches_lmbff_semantics() {
    let tok = Tokenizer::from_dir(&common::fixtures().join("roberta")).unwrap();
    let v = Verbalizer::new(&tok, &pairs(&[("0", "terrible"), ("1", "great")])).unwrap();
    let lmbff = Prompt::new(Template::parse("*cls**sent-_0*?*mask*,*+sentl_1**sep+*").unwrap(), v.clone(), Truncation::default()).unwrap();
    let readable = Prompt::new(Template::parse("{text_a:nolast}?{mask}, {text_b:lower}{sep}").unwrap(), v, Truncation::default()).unwrap();
    let ex = Example { text_a: "The movie was fun.".into(), text_b: Some("It was great".into()), label: None };
    let a = lmbff.encode(&tok, &ex).unwrap();
    assert_eq!(tok.decode(&a.input_ids), "<s>The movie was fun?<mask>, it was great</s>");
    assert_eq!(a.input_ids, readable.encode(&tok, &ex).unwrap().input_ids);
    // `+` gives the second sentence's first word its leading-space token.
    let it = tok.encode_piece(" it").unwrap();
    let after_comma = a.input_ids.iter().position(|&i| i == tok.token_to_id(",").unwrap()).unwrap() + 1;
    assert_eq!(a.input_ids[after_comma], it[0]);
}

/// Demonstrations follow the query through the same template: no [CLS], their label
/// word in place of the mask, the query's last segment, sentences cut to
/// other_sent_limit; truncation keeps the query's mask.
#[test]
fn demonstrations_render_as_lmbff_appends_them() {
    let tok = minilm();
    let p = sst2(&tok, "*cls**sent_0*_It_was*mask*.*sep+*", 128);
    let q = Example::single("No reason to watch.", None);
    let demos = [Example::single("The drama discloses nothing.", Some(0)), Example::single("A fun ride.", Some(1))];
    let e = p.encode_with_demos(&tok, &q, &demos).unwrap();
    assert_eq!(
        tok.decode(&e.input_ids),
        "[CLS] no reason to watch. it was [MASK]. [SEP] the drama discloses nothing. it was terrible. [SEP] a fun ride. it was great. [SEP]"
    );
    assert_eq!(e.input_ids[e.mask_pos], tok.special().mask);
    assert!(e.segment_ids.iter().all(|&s| s == 0), "demonstrations stay in the query's last segment");
    assert_eq!(p.encode_with_demos(&tok, &q, &[]).unwrap(), p.encode(&tok, &q).unwrap());
    // A pair template: the query spans two segments; demonstrations take the second.
    let v = Verbalizer::new(&tok, &pairs(&[("no", "no"), ("yes", "yes")])).unwrap();
    let pair = Prompt::new(Template::parse("*cls**sent_0**sep+**sent_1*_?*mask*.*sep+*").unwrap(), v, Truncation::default()).unwrap();
    let pq = Example { text_a: "A man sleeps.".into(), text_b: Some("Someone rests.".into()), label: None };
    let pd = [Example { label: Some(1), ..pq.clone() }, Example { text_b: Some("He runs.".into()), label: Some(0), ..pq.clone() }];
    let e = pair.encode_with_demos(&tok, &pq, &pd).unwrap();
    assert_eq!(
        tok.decode(&e.input_ids),
        "[CLS] a man sleeps. [SEP] someone rests.? [MASK]. [SEP] a man sleeps. [SEP] someone rests.? yes. [SEP] a man sleeps. [SEP] he runs.? no. [SEP]"
    );
    let first_sep = e.input_ids.iter().position(|&i| i == tok.special().sep).unwrap();
    assert!(e.segment_ids[..=first_sep].iter().all(|&s| s == 0) && e.segment_ids[first_sep + 1..].iter().all(|&s| s == 1));
    // Demonstration sentences are cut to other_sent_limit, the query's to first_sent_limit;
    // then longest-first truncation, which never touches the mask.
    let mut limited = sst2(&tok, "{text} It was {mask}.", 128);
    limited.truncation.first_sent_limit = Some(3);
    limited.truncation.other_sent_limit = Some(2);
    let e = limited.encode_with_demos(&tok, &q, &demos).unwrap();
    assert_eq!(tok.decode(&e.input_ids), "[CLS] no reason to it was [MASK]. [SEP] the drama it was terrible. [SEP] a fun it was great. [SEP]");
    let long = Example::single("the plot wanders and wanders ".repeat(30), Some(1));
    let short = sst2(&tok, "{text} It was {mask}.", 40);
    let e = short.encode_with_demos(&tok, &long, &[long.clone(), long.clone()]).unwrap();
    assert_eq!(e.input_ids.len(), 40);
    assert_eq!(e.input_ids[e.mask_pos], tok.special().mask);
    // Demonstrations are cut before the query: a query that fits stays whole; the
    // longest demonstration is cut first, so each class keeps one. Once theirs are
    // gone, the query's sentence is cut.
    let query = Example::single("the plot wanders and wanders but the cast holds it together", None);
    let d = [Example::single("a dull and joyless trudge through clichés that never ends at all", Some(0)), Example::single("a joy", Some(1))];
    let e = sst2(&tok, "{text} It was {mask}.", 32).encode_with_demos(&tok, &query, &d).unwrap();
    assert_eq!(
        tok.decode(&e.input_ids),
        "[CLS] the plot wanders and wanders but the cast holds it together it was [MASK]. [SEP] a it was terrible. [SEP] a joy it was great. [SEP]"
    );
    let e = sst2(&tok, "{text} It was {mask}.", 22).encode_with_demos(&tok, &query, &d).unwrap();
    assert_eq!(tok.decode(&e.input_ids), "[CLS] the plot wanders and wander it was [MASK]. [SEP] it was terrible. [SEP] it was great. [SEP]");
    // Models saved before the rule (no `demonstrations_first`) keep theirs: longest
    // first, the query's sentence included.
    let mut legacy = sst2(&tok, "{text} It was {mask}.", 32);
    legacy.truncation.demonstrations_first = false;
    let e = legacy.encode_with_demos(&tok, &query, &d).unwrap();
    assert_eq!(
        tok.decode(&e.input_ids),
        "[CLS] the plot wanders and wanders it was [MASK]. [SEP] a dull and joyless trudge it was terrible. [SEP] a joy it was great. [SEP]"
    );
    let old: Truncation = serde_json::from_str(r#"{"max_len": 32, "first_sent_limit": null, "other_sent_limit": null}"#).unwrap();
    assert!(!old.demonstrations_first && Truncation::default().demonstrations_first);
    // Demonstrations must be labelled.
    let err = p.encode_with_demos(&tok, &q, &[Example::single("unlabelled", None)]).unwrap_err();
    assert!(err.to_string().contains("demonstration has no label"), "{err}");
}

/// The sentence-embedding method's label anchors: the template's own text with each
/// word of each class at the mask, in both syntaxes; none for a pair template.
#[test]
fn label_anchors_are_the_template_text_with_each_word() {
    let tok = minilm();
    let want = [(0, "It was terrible.".to_string()), (1, "It was great.".to_string())];
    assert_eq!(sst2(&tok, "{text} It was {mask}.", 128).anchor_texts().unwrap(), want);
    assert_eq!(sst2(&tok, "*cls**sent_0*_It_was*mask*.*sep+*", 128).anchor_texts().unwrap(), want);
    // TREC's manual template puts the mask first; several words per class give one
    // anchor each; a fixed label word (`*label_N*`) shows that class's first word.
    let v = Verbalizer::new(&tok, &pairs(&[("DESC", "Description|Meaning"), ("NUM", "Number")])).unwrap();
    let p = Prompt::new(Template::parse("*cls**mask*:*+sent_0**sep+*").unwrap(), v.clone(), Truncation::default()).unwrap();
    assert_eq!(p.anchor_texts().unwrap(), [(0, "Description:".to_string()), (0, "Meaning:".to_string()), (1, "Number:".to_string())]);
    let p = Prompt::new(Template::parse("*cls**sent_0*_Not*label_1*_but*mask*!*sep+*").unwrap(), v.clone(), Truncation::default()).unwrap();
    assert_eq!(p.anchor_texts().unwrap()[2], (1, "Not Number but Number!".to_string()));
    let pair = Prompt::new(Template::parse("*cls**sent-_0*?*mask*,*+sentl_1**sep+*").unwrap(), v, Truncation::default()).unwrap();
    assert_eq!(pair.anchor_texts(), None);
}

/// Further anchor templates add their texts after the task template's, each once; a
/// pair template, or any further template on a pair task, is refused by name.
#[test]
fn anchor_templates_add_their_texts_once() {
    let tok = minilm();
    let p = sst2(&tok, "{text} It was {mask}.", 128);
    let extra = [
        Template::parse("*cls**sent_0*_A_truly*mask*_movie.*sep+*").unwrap(),
        Template::parse("{text} It was {mask}.").unwrap(),
        Template::parse("{text} {mask}!").unwrap(),
    ];
    let got = p.anchor_texts_with(&extra).unwrap().unwrap();
    let want = [
        (0, "It was terrible."),
        (1, "It was great."),
        (0, "A truly terrible movie."),
        (1, "A truly great movie."),
        (0, "terrible!"),
        (1, "great!"),
    ];
    assert_eq!(got, want.map(|(c, t)| (c, t.to_string())));
    assert_eq!(p.anchor_texts_with(&[]).unwrap(), p.anchor_texts());
    let pair_template = Template::parse("{text_a} ? {mask} , {text_b}").unwrap();
    let err = p.anchor_texts_with(std::slice::from_ref(&pair_template)).unwrap_err().to_string();
    assert!(err.contains("reads two sentences") && err.contains("{text_a} ? {mask} , {text_b}"), "{err}");
    // A task template must place the input; an anchor template need not (the header's
    // example, `A truly {mask} movie.`, in either syntax), and reads as if it did.
    assert!(Template::parse("It was {mask}.").unwrap_err().to_string().contains("never places the input text"));
    let bare = p.parse_anchor_templates(&["A truly {mask} movie.".into(), "*cls*A_truly*mask*_movie.*sep+*".into()]).unwrap();
    let bare_texts: Vec<(usize, String)> = want[2..4].iter().map(|&(c, t)| (c, t.to_string())).collect();
    assert_eq!(p.anchor_texts_with(&bare).unwrap().unwrap()[2..], bare_texts[..]);
    assert!(p.parse_anchor_templates(&["{text} A truly movie.".into()]).unwrap_err().to_string().contains("has no mask"));
    let v = Verbalizer::new(&tok, &pairs(&[("0", "No"), ("1", "Yes")])).unwrap();
    let pair = Prompt::new(pair_template, v, Truncation::default()).unwrap();
    assert_eq!(pair.anchor_texts_with(&[]).unwrap(), None);
    let err = pair.anchor_texts_with(&extra[..1]).unwrap_err().to_string();
    assert!(err.contains("need a single-sentence task"), "{err}");
}

/// The special tokens are the ones transformers uses, on every fixture and the default
/// model: MPNet's vocabulary holds BERT's names (`[CLS]`, `[MASK]`, ...) as ordinary
/// entries beside the RoBERTa-style tokens it uses, and picking by name took the former.
#[test]
fn special_tokens_are_the_ones_transformers_uses() {
    let fx = common::fixtures();
    let mut cases: Vec<(std::path::PathBuf, std::path::PathBuf)> =
        ["bert", "bert-bin", "roberta", "mpnet"].iter().map(|n| (fx.join(n), fx.join(n).join("special.json"))).collect();
    cases.push((common::default_model(), fx.join("minilm-special.json")));
    if let Some(mpnet) = std::env::var_os("LMBFF_MPNET_MODEL").filter(|_| fx.join("mpnet-real-special.json").is_file()) {
        cases.push((mpnet.into(), fx.join("mpnet-real-special.json")));
    } else {
        println!("SKIPPED: the real MPNet's special tokens (scripts/get-mpnet, LMBFF_MPNET_MODEL)");
    }
    for (dir, want) in cases {
        let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&want).unwrap()).unwrap();
        let s = Tokenizer::from_dir(&dir).unwrap().special();
        let got = serde_json::json!({"cls": s.cls, "sep": s.sep, "mask": s.mask, "pad": s.pad, "unk": s.unk});
        assert_eq!(got, want, "{}", dir.display());
    }
}

/// Review fixes of the prompt engine: readable modifiers combine (LM-BFF's `sentl-_`, and
/// ours beyond it: `+sent-_`, `+sentl-_`, `sentu-_`); an empty
/// sentence after a space adds no lone-space token under byte-level BPE; label words
/// that start with punctuation or markup are taken without the leading space, as
/// LM-BFF takes them.
#[test]
fn modifiers_combine_empty_sentences_add_nothing_and_punctuation_words_take_no_space() {
    let tok = Tokenizer::from_dir(&common::fixtures().join("roberta")).unwrap();
    let v = Verbalizer::new(&tok, &pairs(&[("0", "terrible"), ("1", "great")])).unwrap();
    let prompt = |t: &str| Prompt::new(Template::parse(t).unwrap(), v.clone(), Truncation::default()).unwrap();
    let ex = Example { text_a: "The movie was fun.".into(), text_b: Some("It was Great.".into()), label: None };
    let lmbff = prompt("*cls**sent-_0*?*mask*,*+sentl-_1**sep+*").encode(&tok, &ex).unwrap();
    let readable = prompt("{text_a:nolast}?{mask}, {text_b:lower:nolast}{sep}").encode(&tok, &ex).unwrap();
    assert_eq!(tok.decode(&lmbff.input_ids), "<s>The movie was fun?<mask>, it was Great</s>");
    assert_eq!(readable.input_ids, lmbff.input_ids);
    for bad in ["{text:lower:upper}", "{text:nolast:nolast}", "{text:lower:loud}"] {
        assert!(Template::parse(&format!("{bad} It was {{mask}}.")).is_err(), "{bad}");
    }

    let p = prompt("{text_a} ? {mask} , {text_b}");
    let e = p.encode(&tok, &Example { text_a: "A man sleeps.".into(), text_b: Some("   ".into()), label: None }).unwrap();
    let lone = tok.encode_piece(" ").unwrap();
    assert!(!lone.is_empty() && !e.input_ids.ends_with(&[lone[0], tok.special().sep]), "{}", tok.decode(&e.input_ids));
    assert!(tok.decode(&e.input_ids).ends_with(",</s>"), "{}", tok.decode(&e.input_ids));

    let punct = Verbalizer::new(&tok, &pairs(&[("0", "terrible"), ("1", ".")])).unwrap();
    assert_eq!(punct.token_ids(), [tok.token_to_id("Ġterrible").unwrap(), tok.token_to_id(".").unwrap()]);
}

/// Template text the tokenizer reads as unknown is named (it was rendered as [UNK] and
/// nothing said so); known text gives no warning.
#[test]
fn unknown_template_text_is_named() {
    let tok = minilm();
    assert_eq!(sst2(&tok, "{text} It was {mask}.", 128).unknown_template_text(&tok).unwrap(), None);
    let w = sst2(&tok, "{text} ☃ was {mask}.", 128).unknown_template_text(&tok).unwrap().expect("a warning");
    assert!(w.contains("\"☃ was\"") && w.contains("does not know"), "{w}");
    // A label word the vocabulary splits is named with its pieces (a misspelling is
    // scored as quietly as a real multi-token word); one-token words give no warning.
    assert!(sst2(&tok, "{text} It was {mask}.", 128).warnings(&tok).unwrap().is_empty());
    let v = Verbalizer::new(&tok, &pairs(&[("0", "terible"), ("1", "great|lackluster")])).unwrap();
    let p = Prompt::new(Template::parse("{text} It was {mask}.").unwrap(), v, Truncation::default()).unwrap();
    let w = p.warnings(&tok).unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("\"terible\" = ter ##ible") && w[0].contains("\"lackluster\" = lack ##lus ##ter") && !w[0].contains("\"great\""), "{}", w[0]);
}

/// A byte-level tokenizer saved with `add_prefix_space: true` renders as RoBERTa's own
/// (no prefix space): prompts encode their pieces one by one and place spaces
/// themselves, and read as it comes, "." after the mask would be " .".
#[test]
fn a_prefix_space_tokenizer_renders_as_without_it() {
    let plain = Tokenizer::from_dir(&common::fixtures().join("roberta")).unwrap();
    let dir = common::prefix_space_roberta();
    let spaced = Tokenizer::from_dir(&dir).unwrap();
    let ex = Example::single("A gripping film.", Some(1));
    let render = |tok: &Tokenizer| sst2(tok, "*cls**sent_0*_It_was*mask*.*sep+*", 64).encode(tok, &ex).unwrap().input_ids;
    assert_eq!(render(&spaced), render(&plain));
    // The file as it is would have read the pieces with a space each.
    let raw = Tokenizer::from_bytes(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
    assert_ne!(render(&raw), render(&plain), "the fixture's vocabulary does not show the prefix space");
    assert!(lmbff::tokenize::without_prefix_space(&std::fs::read(common::fixtures().join("roberta/tokenizer.json")).unwrap()).is_none());
}

/// A few of LM-BFF's automatic templates pair their stars oddly (an empty piece where a
/// part would be); LM-BFF reads each piece by what it says, and so do we. A misspelt
/// part is still named.
#[test]
fn automatic_templates_with_odd_stars_read_as_lmbff_reads_them() {
    let tok = minilm();
    let v = Verbalizer::new(&tok, &pairs(&[("DESC", "Description"), ("NUM", "Number")])).unwrap();
    let ex = Example::single("How far is it?", None);
    let render = |t: &str| Prompt::new(Template::parse(t).unwrap(), v.clone(), Truncation::default()).unwrap().encode(&tok, &ex).unwrap();
    // trec's, seeds 21, 42 and 87: `_` is a space, nothing to WordPiece (LM-BFF's code looks
    // a one-character piece up in the vocabulary, and renders this one as the unknown
    // token; the space it stands for is read instead).
    assert_eq!(render("*cls*_**mask*:*+sent_0**sep+*"), render("*cls**mask*:*+sent_0**sep+*"));
    assert_eq!(tok.decode(&render("*cls**sent_0*_**mask*.*sep+*").input_ids), "[CLS] how far is it? [MASK]. [SEP]");
    // RTE's, seed 13.
    let rte = Template::parse("*cls**sent-_0*._**mask*,*+sentl_1**sep+*").unwrap();
    assert_eq!(rte.num_sentences(), 2);
    for (bad, names) in [("*cls**snet_0*_It_was*mask*.*sep+*", "snet_0"), ("*cls*_**mask*:*+sent_7**sep+*", "sent_7")] {
        let e = Template::parse(bad).unwrap_err().to_string();
        assert!(e.contains(names), "{bad}: {e}");
    }
}
