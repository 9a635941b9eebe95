//! Checkpoint directories: atomic writes and the lmbff manifest stored next to an HF
//! model directory (template, label words, labels, truncation).

mod atomic;

pub use atomic::{check_dest, write_dir_atomic};
#[cfg(feature = "train")]
pub(crate) use atomic::write_new_dir;
#[cfg(any(test, feature = "train"))]
pub(crate) use atomic::tmp_suffix;
pub(crate) use atomic::{create_dir_all_synced, sync_dir, write_file_atomic, DirLock};
#[cfg(feature = "train")]
pub(crate) use atomic::holds_task;
#[cfg(feature = "train")]
pub(crate) use atomic::LOCK_FILE;
pub(crate) use atomic::{remove_stale_temps_in, Owner};
#[cfg(feature = "train")]
pub(crate) use atomic::{is_temp_of, temp_name};
#[cfg(feature = "train")]
pub(crate) use atomic::{can_make_folder_in, existing_above, restore_moved_aside};
#[cfg(feature = "train")]
pub(crate) use atomic::{lists_its_output, try_lock_file, STALE_AFTER};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::prompt::{Example, Prompt, Template, Truncation, Verbalizer};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

/// File name of the manifest inside a checkpoint directory.
pub const MANIFEST_FILE: &str = "lmbff.json";

/// The summary file of an adapted model written by `lmbff adapt` or the demo's cache;
/// its folder is such an output.
pub const ADAPTATION_FILE: &str = "adaptation.json";

/// Version of the manifest format; readers accept this and older versions. Version 2
/// added `demonstrations`, version 3 `classifier` (the sentence-embedding method),
/// version 4 `temperature`, version 5 `demo_filter`, version 6 `multi_label` and
/// `regression`, version 7 a multi-label `classifier` (a yes/no head per label), version
/// 8 a classifier's `word_anchors`, version 9 `truncation.demonstrations_first` with
/// demonstrations (an older reader would cut the query where training did not); a
/// manifest is written with the lowest version that holds what it has.
pub const MANIFEST_VERSION: u32 = 9;

/// The method of a prompt model (LM-BFF: label words at the template's mask).
pub const METHOD_PROMPT: &str = "prompt";
/// The method of a sentence-embedding model (mean-pooled, normalised embeddings and a
/// linear classifier on them).
pub const METHOD_EMBEDDING: &str = "sentence-embedding";

/// What a trained lmbff model needs beyond the HF files to predict as it was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub lmbff_version: String,
    /// "prompt" (LM-BFF), "sentence-embedding" or "adapted" (masked-LM adaptation only).
    pub method: String,
    /// Template source, in the syntax it was given.
    pub template: Option<String>,
    /// Class names, in class-index order.
    pub labels: Vec<String>,
    /// Label word of each class, in class-index order.
    pub label_words: Vec<String>,
    pub truncation: Truncation,
    /// Fixed demonstration sets the model was evaluated with and predicts with (label
    /// logits averaged over the sets); absent when it was trained without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demonstrations: Option<Vec<Vec<Example>>>,
    /// Similarity-filtered demonstrations: each input's own sets, chosen from a pool by a
    /// sentence encoder (then `demonstrations` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo_filter: Option<DemoFilterSpec>,
    /// A multi-label model: these labels' names, each read as sentence 1 of a yes/no
    /// prompt (`labels` are then the prompt's two classes, no and yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<Vec<String>>,
    /// A regression model's range: its score is `low + (high - low) * p(upper pole)`
    /// (exports then output `score`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<(f32, f32)>,
    /// The sentence-embedding method's classifier over the embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<LinearHead>,
    /// Temperature scaling fitted on dev (`lmbff train --calibrate`): exports divide the
    /// class logits by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Free-form facts about the run (steps, seed, dev accuracy, ...).
    #[serde(default)]
    pub notes: serde_json::Map<String, serde_json::Value>,
    /// [`rendering_fingerprint`] of the prompt the model was trained with: a later lmbff
    /// whose template or tokenizer rules render it otherwise refuses to export it (or
    /// read it through its saved prompt) instead of feeding it ids it never saw. Absent
    /// from versions saved before 2026-12-08 (read unchecked); older readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendering: Option<String>,
}

/// A fingerprint of how `prompt` renders with `tok` (FNV-1a of the ids of a fixed probe
/// input, alone and with one demonstration per class, and of the label words' ids), as
/// "fnv1a:<16 hex digits>". It changes when a template, tokenizer or label-word rule of
/// lmbff changes what a model reads. A rendering that fails (demonstrations that do not
/// fit a short `max_len`) counts as that failure, so a fingerprint is always made.
pub fn rendering_fingerprint(prompt: &Prompt, tok: &Tokenizer) -> String {
    let pair = prompt.template.num_sentences() > 1;
    let probe = |text: &str, label| Example { text_a: text.into(), text_b: pair.then(|| "And a second one, B.".into()), label };
    let demos: Vec<Example> = (0..prompt.verbalizer.num_labels()).map(|c| probe("A demonstration's text.", Some(c))).collect();
    let bytes = |ids: &[u32]| ids.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>();
    let mut h = FNV_OFFSET;
    for e in [prompt.encode(tok, &probe("A probe: it reads Text, once.", None)), prompt.encode_with_demos(tok, &probe("Short.", None), &demos)] {
        match e {
            Ok(e) => {
                h = fnv1a(&bytes(&e.input_ids), h);
                h = fnv1a(&bytes(&e.segment_ids), h);
                h = fnv1a(&(e.mask_pos as u64).to_le_bytes(), h);
            }
            Err(_) => h = fnv1a(b"not rendered", h),
        }
    }
    h = fnv1a(&bytes(prompt.verbalizer.token_ids()), h);
    format!("fnv1a:{h:016x}")
}

impl Manifest {
    /// The manifest of a model fine-tuned with `prompt` (and, if any, the demonstration
    /// sets it predicts with); `notes` is a JSON object of facts about the run.
    pub fn for_prompt(prompt: &Prompt, demo_sets: &[Vec<Example>], notes: serde_json::Value) -> Self {
        let mut m = Manifest {
            format_version: 1,
            lmbff_version: crate::VERSION.into(),
            method: METHOD_PROMPT.into(),
            template: Some(prompt.template.source().into()),
            labels: prompt.verbalizer.labels().to_vec(),
            label_words: prompt.verbalizer.words().to_vec(),
            truncation: prompt.truncation,
            demonstrations: (!demo_sets.is_empty()).then(|| demo_sets.to_vec()),
            demo_filter: None,
            multi_label: None,
            regression: None,
            classifier: None,
            temperature: None,
            notes: notes.as_object().cloned().unwrap_or_default(),
            rendering: None,
        };
        m.format_version = m.needed_version();
        m
    }

    /// The manifest of a sentence-embedding model: the task's prompt (kept for its labels,
    /// truncation and sentence count) and the classifier over the embeddings.
    /// A multi-label model has `multi_label`'s names, the task's yes/no prompt (its input
    /// is read alone: `Prompt::input_reader`) and a yes/no head per label.
    pub fn for_embedding(prompt: &Prompt, classifier: LinearHead, multi_label: Option<&[String]>, notes: serde_json::Value) -> Self {
        let mut m = Manifest {
            method: METHOD_EMBEDDING.into(),
            classifier: Some(classifier),
            multi_label: multi_label.map(<[String]>::to_vec),
            ..Manifest::for_prompt(prompt, &[], notes)
        };
        m.format_version = m.needed_version();
        m
    }

    /// The classifier of a sentence-embedding checkpoint, checked against its labels.
    pub fn embedding_classifier(&self, dir: &Path) -> Result<&LinearHead> {
        let bad = |what: String| Error::Format { path: dir.join(MANIFEST_FILE), message: what };
        if self.method != METHOD_EMBEDDING {
            return Err(bad(format!("method {:?} has no sentence-embedding classifier", self.method)));
        }
        let c = self.classifier.as_ref().ok_or_else(|| bad("method sentence-embedding without a classifier".into()))?;
        // Multi-label: a yes/no head per label, side by side (train::train_embedding_multi).
        let rows = self.multi_label.as_ref().map_or(self.labels.len(), |names| 2 * names.len());
        c.check(rows).map_err(bad)?;
        Ok(c)
    }

    /// The label words as a verbalizer over `tok`.
    pub fn verbalizer(&self, tok: &Tokenizer) -> Result<Verbalizer> {
        let pairs: Vec<(String, String)> = self.labels.iter().cloned().zip(self.label_words.iter().cloned()).collect();
        Verbalizer::new(tok, &pairs)
    }

    /// The prompt the checkpoint in `dir` was trained with (checked: [`Self::check_rendering`]).
    pub fn prompt(&self, tok: &Tokenizer, dir: &Path) -> Result<Prompt> {
        let template = self
            .template
            .as_deref()
            .ok_or_else(|| Error::InvalidArgument(format!("{}: {MANIFEST_FILE} has no template", dir.display())))?;
        let prompt = Prompt::new(Template::parse(template)?, self.verbalizer(tok)?, self.truncation)?;
        self.check_rendering(&prompt, tok, dir)?;
        Ok(prompt)
    }

    /// The manifest with the fingerprint of `prompt` as `tok` renders it, the prompt the
    /// model is saved with.
    pub fn with_rendering(mut self, prompt: &Prompt, tok: &Tokenizer) -> Self {
        self.rendering = Some(rendering_fingerprint(prompt, tok));
        self
    }

    /// Checks that this lmbff renders `prompt` (the saved one, read back) as the lmbff
    /// that trained the model in `dir` did: a `Format` error otherwise.
    pub fn check_rendering(&self, prompt: &Prompt, tok: &Tokenizer, dir: &Path) -> Result<()> {
        let Some(saved) = &self.rendering else { return Ok(()) };
        let now = rendering_fingerprint(prompt, tok);
        if &now != saved {
            return Err(Error::Format {
                path: dir.join(MANIFEST_FILE),
                message: format!(
                    "this lmbff ({}) renders the saved prompt otherwise than the lmbff that trained the model did (rendering {now}, \
                     saved {saved}: a template or tokenizer rule changed since): its predictions would read ids it was not trained on; \
                     train it again, or use the lmbff that trained it (its lmbff_version: {})",
                    crate::VERSION,
                    self.lmbff_version
                ),
            });
        }
        Ok(())
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = read_utf8(&path)?;
        let m: Manifest =
            serde_json::from_str(&text).map_err(|source| Error::Json { path: path.clone(), what: "an lmbff manifest", source })?;
        if m.format_version > MANIFEST_VERSION {
            return Err(Error::Format {
                path,
                message: format!(
                    "manifest format version {}; this lmbff ({}) reads versions up to {MANIFEST_VERSION}: open it with a later lmbff",
                    m.format_version,
                    crate::VERSION
                ),
            });
        }
        // One word per label: the verbalizer pairs them, and a class without its word
        // would be dropped from the model's answers without a word said.
        if m.label_words.len() != m.labels.len() {
            return Err(Error::Format {
                path,
                message: format!("{} labels and {} label words: a hand-edited manifest? each label needs its word", m.labels.len(), m.label_words.len()),
            });
        }
        Ok(m)
    }

    /// The lowest format version that holds everything in this manifest.
    pub fn needed_version(&self) -> u32 {
        if (self.demonstrations.is_some() || self.demo_filter.is_some()) && self.truncation.demonstrations_first {
            9
        } else if self.classifier.as_ref().is_some_and(|c| c.word_anchors.is_some()) {
            8
        } else if self.multi_label.is_some() && self.classifier.is_some() {
            7
        } else if self.multi_label.is_some() || self.regression.is_some() {
            6
        } else if self.demo_filter.is_some() {
            5
        } else if self.temperature.is_some() {
            4
        } else if self.classifier.is_some() {
            3
        } else if self.demonstrations.is_some() {
            2
        } else {
            1
        }
    }

    pub fn write_into(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        // What the reader refuses is not written (JSON holds a NaN weight as null).
        if let Some(c) = &self.classifier {
            let rows = self.multi_label.as_ref().map_or(self.labels.len(), |names| 2 * names.len());
            c.check(rows).map_err(|e| Error::InvalidArgument(format!("the model was not saved: {e} (training diverged: lower the learning rate)")))?;
        }
        let m = Manifest { format_version: self.needed_version(), ..self.clone() };
        let text = serde_json::to_string_pretty(&m).map_err(|e| Error::InvalidArgument(format!("the model's manifest cannot be written: {e}")))?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }
}

/// Similarity-filtered demonstrations of a checkpoint (LM-BFF's `demo_filter`): the
/// sentence encoder `encoder` (an HF model directory, not copied) embeds the pool and each
/// input, and each input is read with `sets` sets of its most similar examples
/// (`DemoPool::similar_sets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoFilterSpec {
    pub encoder: PathBuf,
    /// The labelled examples demonstrations are chosen from.
    pub pool: Vec<Example>,
    pub sets: usize,
}

/// A linear classifier over features: `logits = weight x + bias`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearHead {
    /// [labels][features]
    pub weight: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
    /// The sentence-embedding method's word anchors: when present the features are the
    /// embedding followed by the per-token label-word features
    /// (`train::word_anchor_features`), `hidden + WORD_ANCHOR_GROUPS * labels` in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_anchors: Option<WordAnchors>,
}

/// Each class's label-word vector in the tuned encoder (unit rows, [labels][hidden]) and
/// the factor the per-token features are scaled by before the classifier reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordAnchors {
    pub vectors: Vec<Vec<f32>>,
    pub scale: f32,
}

/// Feature groups per class that word anchors add (max, mean of the top 3, and the max
/// and min of the margin over the classes' mean).
pub const WORD_ANCHOR_GROUPS: usize = 4;

impl LinearHead {
    /// Class logits of one feature row.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        self.weight.iter().zip(&self.bias).map(|(w, b)| w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + b).collect()
    }

    /// Features the head reads.
    pub fn features(&self) -> usize {
        self.weight.first().map_or(0, Vec::len)
    }

    /// The width of the embedding the features start with: every feature, less those of
    /// the word anchors.
    pub fn embedding_width(&self) -> usize {
        self.features().saturating_sub(self.word_anchors.as_ref().map_or(0, |w| WORD_ANCHOR_GROUPS * w.vectors.len()))
    }

    /// Checks the shape (one row and one bias per label, rows of one length, finite).
    pub fn check(&self, labels: usize) -> std::result::Result<(), String> {
        let d = self.features();
        if self.weight.len() != labels || self.bias.len() != labels || d == 0 || self.weight.iter().any(|r| r.len() != d) {
            return Err(format!("the classifier has {} rows and {} biases for {labels} labels", self.weight.len(), self.bias.len()));
        }
        if self.weight.iter().flatten().chain(&self.bias).any(|v| !v.is_finite()) {
            return Err("the classifier holds a non-finite weight".into());
        }
        if let Some(w) = &self.word_anchors {
            let hidden = d.checked_sub(WORD_ANCHOR_GROUPS * labels).filter(|&h| h > 0);
            let Some(hidden) = hidden else {
                return Err(format!("the classifier reads {d} features, too few for word anchors over {labels} labels"));
            };
            if w.vectors.len() != labels || w.vectors.iter().any(|v| v.len() != hidden) {
                return Err(format!("the word anchors need {labels} vectors of {hidden} values"));
            }
            if !(w.scale.is_finite() && w.scale > 0.0) || w.vectors.iter().flatten().any(|v| !v.is_finite()) {
                return Err("the word anchors hold a non-finite value or a scale that is not positive".into());
            }
        }
        Ok(())
    }
}

/// Reads `file` in `dir`: a JSON document tagged `"format": format` with a
/// `"format_version"` from 1 to `max_version` (readers accept older versions; fields are
/// only ever added). `what` names the document in errors ("export manifest", "task").
pub(crate) fn read_versioned<T: serde::de::DeserializeOwned>(dir: &Path, file: &str, format: &str, max_version: u32, what: &'static str) -> Result<T> {
    read_versioned_text(dir, file, format, max_version, what).map(|(value, _)| value)
}

/// Whether `path` is a file: false where nothing is there (or something other than a
/// file), an `Io` error where the file system will not say (no permission to search
/// its folder), so that an unreadable model is not reported as an incomplete one.
pub(crate) fn is_file(path: &Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Whether `inner`, which exists, is `outer` or inside it, as the file system resolves
/// them (links followed; an `outer` not there yet as written, made absolute): an output
/// written to `outer` replaces that folder, so a model read from `inner` must not be
/// there. False for an `inner` that is not there (its own error names it) or an empty
/// `outer`.
#[cfg(feature = "train")]
pub(crate) fn is_within(inner: &Path, outer: &Path) -> bool {
    let Ok(inner) = std::fs::canonicalize(inner) else { return false };
    !outer.as_os_str().is_empty() && inner.starts_with(std::fs::canonicalize(outer).unwrap_or_else(|_| crate::absolute(outer)))
}

/// Checks that `dir`, the `what` ("export directory") a call reads, is a directory: an
/// empty path is an `InvalidArgument` error; a path that is missing, or is a file, an
/// `Io` error that says which.
pub(crate) fn require_dir(dir: &Path, what: &str) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Err(Error::InvalidArgument(format!("the {what}'s path is empty")));
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::io(dir, std::io::Error::other(format!("this is a file, not the {what}")))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, format!("the {what} does not exist"))))
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// [`read_versioned`], also returning the file's text as read.
pub(crate) fn read_versioned_text<T: serde::de::DeserializeOwned>(dir: &Path, file: &str, format: &str, max_version: u32, what: &'static str) -> Result<(T, String)> {
    // A folder that is not there is an IO error; one without the file, a format error.
    require_dir(dir, "directory")?;
    let path = dir.join(file);
    if !is_file(&path)? {
        return Err(Error::MissingFile { dir: dir.to_path_buf(), what, looked_for: file.into() });
    }
    let text = read_utf8(&path)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json { path: path.clone(), what, source })?;
    if value["format"] != format {
        return Err(Error::Format { path, message: format!("not an lmbff {what} (format {})", value["format"]) });
    }
    let version = value["format_version"].as_u64().unwrap_or(0);
    if version == 0 || version > max_version as u64 {
        return Err(Error::Format { path, message: format!("{what} format version {version}; this lmbff ({}) reads versions 1 to {max_version}", crate::VERSION) });
    }
    serde_json::from_value(value).map(|v| (v, text)).map_err(|source| Error::Json { path, what, source })
}

/// The text of the file at `path`: one that is not UTF-8 is a malformed file (`Format`),
/// as malformed JSON is, not a failed read.
fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::Format { path: path.to_path_buf(), message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()) })
}

/// FNV-1a 64-bit, a stable content hash (cache keys, model versions, resume checks).
/// Chain calls by passing the previous result as `h`; start from [`FNV_OFFSET`].
pub fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The fields of the JSON object `stored` whose values `now` does not share, as
/// "field: X there, Y here" (a stored run's settings against this command's).
#[cfg(feature = "train")]
pub(crate) fn fields_differing(stored: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    stored
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| now.get(k.as_str()) != Some(v))
        .map(|(k, v)| format!("{k}: {v} there, {} here", now.get(k.as_str()).cloned().unwrap_or_default()))
        .collect()
}

/// FNV-1a's offset basis: the hash of nothing.
pub const FNV_OFFSET: u64 = 0xcbf29ce484222325;

/// [`fnv1a`] over a file's bytes, read in 1 MiB pieces (a model's weights may not fit
/// in memory twice).
#[cfg(feature = "train")]
pub(crate) fn fnv1a_file(path: &Path, mut h: u64) -> Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(h);
        }
        h = fnv1a(&buf[..n], h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a live writer does to its temporary file or folder: holds the lock on it.
    fn held(path: &Path) -> atomic::TempLock {
        atomic::TempLock::open(path).expect("the folder locks")
    }

    /// A folder moved aside by a write that died between its two renames (where the file
    /// system cannot swap folders) is put back by the next write, not left hidden until
    /// the stale-folder sweep deletes it, whatever the pid in its name (this process's
    /// own: a container's pid 1 meets its earlier run's). While a running writer holds
    /// the latest one locked (its replace is under way), nothing moves.
    #[test]
    fn a_folder_moved_aside_by_a_crash_is_put_back() {
        let root = std::env::temp_dir().join(format!("lmbff-aside-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dest = root.join("model");
        write_dir_atomic(&dest, "a", |d| std::fs::write(d.join("a"), "kept").map_err(|e| Error::io(d, e))).unwrap();
        let crashed = root.join(format!(".model.lmbff-old-{}-4", std::process::id()));
        std::fs::rename(&dest, &crashed).unwrap();
        let live = root.join(".model.lmbff-old-999999999-0");
        std::fs::create_dir(&live).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::open(&live).unwrap().set_modified(later).unwrap();
        let writer = held(&live);
        check_dest(&dest, "a").unwrap();
        assert!(!dest.exists() && live.is_dir() && crashed.is_dir(), "a writer's replace is under way");
        // The writer is done (it removes its folder): the crashed one goes back.
        drop(writer);
        std::fs::remove_dir(&live).unwrap();
        check_dest(&dest, "a").unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "kept");
        assert!(!crashed.exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    /// The sweep of a folder takes lmbff's marked temporary names; an earlier version's
    /// unmarked ones (`<name>.tmp-<pid>-<n>`, a name a user's file can have) only in a
    /// folder lmbff owns whole, or for the files lmbff writes there. An earlier version's
    /// moved-aside folder is still put back, where it holds the output's marker.
    #[test]
    fn the_sweep_takes_only_lmbffs_names_from_a_shared_folder() {
        let root = std::env::temp_dir().join(format!("lmbff-sweep-owner-{}", tmp_suffix()));
        std::fs::create_dir_all(&root).unwrap();
        let marked = root.join(".task.json.lmbff-tmp-999999999-1");
        let legacy = root.join("task.json.tmp-999999999-2");
        let users = root.join("draft.tmp-2024-05");
        let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
        let make = || {
            for f in [&marked, &legacy, &users] {
                std::fs::write(f, "x").unwrap();
                std::fs::File::options().write(true).open(f).unwrap().set_modified(hours_ago).unwrap();
            }
        };
        make();
        remove_stale_temps_in(&root, Owner::Shared(&[]));
        assert!(!marked.exists() && legacy.exists() && users.exists());
        make();
        remove_stale_temps_in(&root, Owner::Shared(&["task.json"]));
        assert!(!marked.exists() && !legacy.exists() && users.exists());
        make();
        std::fs::remove_file(&users).unwrap();
        remove_stale_temps_in(&root, Owner::Lmbff);
        assert!(!marked.exists() && !legacy.exists());
        let dest = root.join("model");
        let aside = root.join(".model.old-999999999-5");
        std::fs::create_dir(&aside).unwrap();
        std::fs::write(aside.join("a"), "earlier").unwrap();
        restore_moved_aside(&dest, "a").unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "earlier");
        // Named so, without the output's marker: a user's folder, left where it is.
        let users_dir = root.join(".notes.old-2024-5");
        std::fs::create_dir(&users_dir).unwrap();
        restore_moved_aside(&root.join("notes"), "a").unwrap();
        assert!(users_dir.is_dir() && !root.join("notes").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Where the file system cannot lock, no writer can show it is alive: what was left
    /// two hours stays (a live writer's, perhaps), what was left two days goes, and a
    /// moved-aside output goes back only after a day.
    #[test]
    fn without_locks_leftovers_go_after_a_day() {
        let root = std::env::temp_dir().join(format!("lmbff-no-flock-{}", tmp_suffix()));
        std::fs::create_dir_all(&root).unwrap();
        let ago = |h: u64| std::time::SystemTime::now() - std::time::Duration::from_secs(h * 3600);
        let recent = root.join(".task.json.lmbff-tmp-999999999-1");
        let old = root.join(".task.json.lmbff-tmp-999999999-2");
        for (f, hours) in [(&recent, 2), (&old, 48)] {
            std::fs::write(f, "x").unwrap();
            std::fs::File::options().write(true).open(f).unwrap().set_modified(ago(hours)).unwrap();
        }
        let dest = root.join("model");
        let aside = root.join(".model.lmbff-old-999999999-3");
        std::fs::create_dir(&aside).unwrap();
        std::fs::write(aside.join("a"), "earlier").unwrap();
        std::fs::File::open(&aside).unwrap().set_modified(ago(2)).unwrap();
        atomic::NO_FLOCK.with(|n| n.set(true));
        remove_stale_temps_in(&root, Owner::Shared(&[]));
        restore_moved_aside(&dest, "a").unwrap();
        assert!(recent.exists() && !old.exists() && !dest.exists() && aside.is_dir());
        std::fs::File::open(&aside).unwrap().set_modified(ago(48)).unwrap();
        restore_moved_aside(&dest, "a").unwrap();
        atomic::NO_FLOCK.with(|n| n.set(false));
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "earlier");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A write that swapped its output in and found a user's folder it may not take out,
    /// and cannot swap it back, keeps that folder under the moved-aside name and names
    /// it (it was removed with the write's temporary folder); the next write there, once
    /// the path is free, puts it back.
    #[test]
    fn what_a_write_cannot_put_back_is_kept_and_named() {
        let root = std::env::temp_dir().join(format!("lmbff-swap-back-{}", tmp_suffix()));
        let dest = root.join("out");
        std::fs::create_dir_all(&dest).unwrap();
        let (tmp, _held) = atomic::filled_temp(&dest, |d| std::fs::write(d.join("a"), "new").map_err(|e| Error::io(d, e))).unwrap();
        // The user's folder appeared at `dest` after the write's checks.
        std::fs::write(dest.join("NOTES.md"), "mine").unwrap();
        atomic::FAIL_SWAP_BACK.with(|f| f.set(true));
        let err = atomic::replace(&tmp, &dest, "a");
        atomic::FAIL_SWAP_BACK.with(|f| f.set(false));
        let err = err.unwrap_err().to_string();
        if err.contains("it was left as it is") {
            // No RENAME_EXCHANGE here: the write moved the folder aside and back instead.
            println!("SKIPPED: this file system cannot swap two folders in one step");
            std::fs::remove_dir_all(&root).unwrap();
            return;
        }
        let parked: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("NOTES.md").is_file()).collect();
        assert_eq!(parked.len(), 1, "{err}");
        let name = parked[0].file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with(".out.lmbff-old-") && err.contains(&name) && err.contains("could not be put back"), "{name}: {err}");
        // `dest` holds the write's output now; once it is gone, the next write puts the
        // user's folder back and refuses to replace it.
        std::fs::remove_dir_all(&dest).unwrap();
        let e = write_dir_atomic(&dest, "a", |d| std::fs::write(d.join("a"), "newer").map_err(|e| Error::io(d, e))).unwrap_err();
        assert!(e.to_string().contains("not an earlier output"), "{e}");
        assert_eq!(std::fs::read_to_string(dest.join("NOTES.md")).unwrap(), "mine");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The sweep after a write takes a stale moved-aside earlier output, and keeps a
    /// user's folder under that name (one a write could not put back) or a folder
    /// holding a task under a temporary name: they went after an hour.
    #[test]
    fn a_parked_folder_of_a_user_is_not_swept() {
        let root = std::env::temp_dir().join(format!("lmbff-parked-{}", tmp_suffix()));
        std::fs::create_dir_all(&root).unwrap();
        let write = || write_dir_atomic(&root.join("model"), "a", |d| std::fs::write(d.join("a"), "new").map_err(|e| Error::io(d, e)));
        // (The folder is there: a moved-aside one is put back only where it is not.)
        write().unwrap();
        let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
        let make = |name: &str, file: &str| {
            let d = root.join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join(file), "x").unwrap();
            std::fs::File::open(&d).unwrap().set_modified(hours_ago).unwrap();
            d
        };
        let earlier = make(".model.lmbff-old-999999999-1", "a");
        let users = make(".model.lmbff-old-999999999-2", "NOTES.md");
        let task = make(".model.lmbff-tmp-999999999-3", crate::task::TASK_FILE);
        let half = make(".model.lmbff-tmp-999999999-4", "half-written");
        write().unwrap();
        assert!(!earlier.exists() && !half.exists(), "an earlier output and a killed writer's folder go");
        assert!(users.join("NOTES.md").is_file() && task.join(crate::task::TASK_FILE).is_file(), "a user's folders stay");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A writer holds its temporary folder while it fills it: a sweep meanwhile (another
    /// command in the same folder), with the folder two hours idle by its clock, leaves it.
    #[test]
    fn a_temporary_folder_in_use_is_not_swept() {
        let root = std::env::temp_dir().join(format!("lmbff-in-use-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dest = root.join("model");
        write_dir_atomic(&dest, "a", |d| {
            let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
            std::fs::File::open(d).unwrap().set_modified(hours_ago).unwrap();
            remove_stale_temps_in(&root, Owner::Lmbff);
            assert!(d.is_dir(), "swept while in use");
            std::fs::write(d.join("a"), "whole").map_err(|e| Error::io(d, e))
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "whole");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// An earlier output is replaced whole only while it holds what its write made: a
    /// file put there since (a user's notes, the inputs of the command) is named and
    /// kept. A folder where the write cannot make its own is named before the work.
    #[test]
    fn an_earlier_output_holding_other_files_is_kept() {
        let root = std::env::temp_dir().join(format!("lmbff-foreign-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dest = root.join("model");
        let write = |text: &str| write_dir_atomic(&dest, "a", |d| std::fs::write(d.join("a"), text).map_err(|e| Error::io(d, e)));
        write("one").unwrap();
        write("two").unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "two");
        std::fs::write(dest.join("NOTES.md"), "mine").unwrap();
        std::fs::write(dest.join("train.tsv"), "mine too").unwrap();
        let err = write("three").unwrap_err().to_string();
        assert!(err.contains("also holds what lmbff did not write there (NOTES.md, train.tsv)"), "{err}");
        assert_eq!(std::fs::read_to_string(dest.join("NOTES.md")).unwrap(), "mine");
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "two");
        // Inside the output's own folders too (a version added beside an export's
        // Triton model, `triton/NAME/2/`, went with the folder); an output listed before
        // lists were nested is checked at its top level, as it was.
        let nested = root.join("export");
        let write = |text: &str| {
            write_dir_atomic(&nested, "a", |d| {
                std::fs::create_dir_all(d.join("triton/m/1")).map_err(|e| Error::io(d, e))?;
                std::fs::write(d.join("triton/m/1/model.onnx"), text).map_err(|e| Error::io(d, e))?;
                std::fs::write(d.join("a"), text).map_err(|e| Error::io(d, e))
            })
        };
        write("one").unwrap();
        write("two").unwrap();
        std::fs::create_dir_all(nested.join("triton/m/2")).unwrap();
        let err = write("three").unwrap_err().to_string();
        assert!(err.contains("did not write there (triton/m/2)"), "{err}");
        assert!(nested.join("triton/m/2").is_dir());
        std::fs::write(nested.join(".lmbff-output"), "a\ntriton\n").unwrap();
        write("four").unwrap();
        assert!(!nested.join("triton/m/2").exists(), "a top-level list: the folder is ours whole");
        // A file where a folder goes, named before any work.
        std::fs::write(root.join("file"), "keep").unwrap();
        let err = check_dest(&root.join("file/inside/out"), "a").unwrap_err().to_string();
        assert!(err.contains("is a file, not a folder"), "{err}");
        assert!(check_dest(&root.join("new/deeper/out"), "a").is_ok());
        // A name that fits alone but not with the temporary folder's mark, named before
        // any work (it failed at the end, naming the hidden folder).
        let err = check_dest(Path::new(".."), "a").unwrap_err().to_string();
        assert!(err.contains("give the folder by its name"), "{err}");
        let err = check_dest(&root.join("x".repeat(230)), "a").unwrap_err().to_string();
        assert!(err.contains("its name is 230 bytes") && err.contains("give a shorter name"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn atomic_write_replaces_and_survives_failure() {
        let root = std::env::temp_dir().join(format!("lmbff-atomic-{}", std::process::id()));
        let dest = root.join("model");
        write_dir_atomic(&dest, "a", |d| std::fs::write(d.join("a"), "one").map_err(|e| Error::io(d, e))).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "one");
        // A failing writer leaves the old version in place and no temp dir behind.
        let err = write_dir_atomic(&dest, "a", |d| {
            std::fs::write(d.join("a"), "half").unwrap();
            Err(Error::Cancelled)
        });
        assert!(matches!(err, Err(Error::Cancelled)));
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
        write_dir_atomic(&dest, "a", |d| std::fs::write(d.join("b"), "two").map_err(|e| Error::io(d, e))).unwrap();
        assert!(!dest.join("a").exists());
        assert_eq!(std::fs::read_to_string(dest.join("b")).unwrap(), "two");
        // A folder that is not an earlier output (no marker) is refused and kept as it is;
        // so is a file; an empty folder is filled.
        let refused = write_dir_atomic(&dest, "a", |d| std::fs::write(d.join("a"), "three").map_err(|e| Error::io(d, e)));
        assert!(matches!(&refused, Err(Error::InvalidArgument(m)) if m.contains("holds no a")), "{refused:?}");
        assert_eq!(std::fs::read_to_string(dest.join("b")).unwrap(), "two");
        let file = root.join("file");
        std::fs::write(&file, "keep").unwrap();
        assert!(write_dir_atomic(&file, "a", |_| Ok(())).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
        let empty = root.join("empty");
        std::fs::create_dir(&empty).unwrap();
        write_dir_atomic(&empty, "a", |d| std::fs::write(d.join("a"), "four").map_err(|e| Error::io(d, e))).unwrap();
        assert_eq!(std::fs::read_to_string(empty.join("a")).unwrap(), "four");
        // What writers killed half-way left beside it, untouched for over an hour, goes
        // with the next write, whatever its pid (this process's own: a container's pid 1
        // meets its earlier run's); a running writer's temporary folder (one it holds
        // locked), a recent one, another output's and a user's name stay.
        let dead = root.join(".model.lmbff-tmp-999999999-0");
        let same_pid = root.join(format!(".model.lmbff-tmp-{}-0", std::process::id()));
        let dead_old = root.join(".model.lmbff-old-999999999-3");
        let recent = root.join(".model.lmbff-tmp-999999998-0");
        let live = root.join(format!(".model.lmbff-tmp-{}-0", std::os::unix::process::parent_id()));
        let other = root.join(".modelx.lmbff-tmp-999999999-0");
        let users = root.join(".model.lmbff-old-2024-05-01");
        let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
        for d in [&dead, &same_pid, &dead_old, &recent, &live, &other, &users] {
            std::fs::create_dir(d).unwrap();
            if d != &recent {
                std::fs::File::open(d).unwrap().set_modified(hours_ago).unwrap();
            }
        }
        let _writer = held(&live);
        write_dir_atomic(&dest, "b", |d| std::fs::write(d.join("b"), "five").map_err(|e| Error::io(d, e))).unwrap();
        assert!(!dead.exists() && !same_pid.exists() && !dead_old.exists(), "the dead writers' folders go");
        assert!(recent.exists() && live.exists() && other.exists() && users.exists(), "the rest stays");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Writers of one folder in one process (two exports to one place, say) each fill
    /// their own temporary folder: whoever lands last, the folder is one writer's, whole,
    /// and nothing is left beside it.
    #[test]
    fn concurrent_atomic_writes_leave_one_whole_output() {
        let root = std::env::temp_dir().join(format!("lmbff-atomic-race-{}", tmp_suffix()));
        let dest = root.join("export");
        std::thread::scope(|s| {
            for k in 0..8 {
                let dest = &dest;
                s.spawn(move || {
                    for round in 0..5 {
                        write_dir_atomic(dest, "a", |d| {
                            for f in ["a", "b", "c"] {
                                std::fs::write(d.join(f), format!("{k}-{round}")).map_err(|e| Error::io(d, e))?;
                            }
                            Ok(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let read = |f: &str| std::fs::read_to_string(dest.join(f)).unwrap();
        assert_eq!((read("b"), read("c")), (read("a"), read("a")), "the files of one writer");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1, "no temporary or old folder left");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
