//! The demonstrations a prompt model reads at evaluation and inference: none, fixed sets
//! shared by every input, or similarity-filtered sets chosen for each input by a
//! separate sentence encoder (LM-BFF's `demo_filter`; the default MiniLM with mean
//! pooling is one such encoder).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use tch::Device;

use super::embed::embed_examples;
use crate::checkpoint::{DemoFilterSpec, Manifest};
use crate::model::MaskedLm;
use crate::prompt::{DemoPool, Example, Prompt};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

/// Longest input of the demonstration filter's encoder, in tokens.
pub const DEMO_FILTER_MAX_LEN: usize = 128;

/// The sentence encoder of similarity-filtered demonstrations: a frozen HF encoder whose
/// mean-pooled, L2-normalised last hidden states embed `[CLS] text [SEP]`.
pub struct DemoEncoder {
    model: MaskedLm,
    tok: Tokenizer,
    reader: Prompt,
}

impl std::fmt::Debug for DemoEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DemoEncoder({})", self.model.source_dir().display())
    }
}

impl DemoEncoder {
    /// Loads the encoder in HF model directory `dir` for inputs of `sentences` sentences.
    pub fn load(dir: &Path, device: Device, sentences: usize) -> Result<Self> {
        let model = MaskedLm::load_without_rng(dir, device).map_err(|e| Error::InvalidArgument(format!("demonstration filter encoder {}: {e}", dir.display())))?;
        let tok = Tokenizer::from_dir(dir)?;
        let max_len = DEMO_FILTER_MAX_LEN.min(model.config.max_input_len().max(0) as usize);
        let reader = Prompt::sentence_reader(sentences, max_len)?;
        Ok(DemoEncoder { model, tok, reader })
    }

    /// Normalised embeddings of `examples`, in order.
    pub fn embed(&self, examples: &[Example]) -> Result<Vec<Vec<f32>>> {
        embed_examples(&self.model, &self.tok, &self.reader, examples, 32)
    }

    pub fn dir(&self) -> &Path {
        self.model.source_dir()
    }

    pub fn model(&self) -> &MaskedLm {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }

    /// How the encoder reads an input (its template and truncation).
    pub fn reader(&self) -> &Prompt {
        &self.reader
    }
}

/// The demonstrations a prompt model predicts with.
#[derive(Debug, Clone, Default)]
pub enum Demos {
    #[default]
    None,
    /// The same sets for every input (LM-BFF without filtering).
    Fixed(Vec<Vec<Example>>),
    /// `sets` sets per input from `pool` (which holds the encoder's embeddings of its
    /// examples), ranked by `encoder` (see `DemoPool::similar_sets`).
    Similar { pool: DemoPool, encoder: Rc<DemoEncoder>, sets: usize },
}

impl Demos {
    /// Similarity-filtered demonstrations from `pool`, embedded by the encoder in `dir`.
    pub fn similar(pool: DemoPool, dir: &Path, device: Device, sentences: usize, sets: usize) -> Result<Self> {
        let encoder = DemoEncoder::load(dir, device, sentences)?;
        let embeddings = encoder.embed(pool.examples())?;
        let pool = pool.with_embeddings(embeddings)?;
        Ok(Demos::Similar { pool, encoder: Rc::new(encoder), sets })
    }

    /// The pool of similarity-filtered demonstrations, with its embeddings.
    pub fn filtered_pool(&self) -> Option<&DemoPool> {
        match self {
            Demos::Similar { pool, .. } => Some(pool),
            _ => None,
        }
    }

    /// Records these demonstrations in a checkpoint's manifest.
    pub fn record(&self, m: &mut Manifest) {
        m.demonstrations = None;
        m.demo_filter = None;
        match self {
            Demos::None => {}
            Demos::Fixed(sets) => m.demonstrations = Some(sets.clone()),
            Demos::Similar { pool, encoder, sets } => {
                m.demo_filter = Some(DemoFilterSpec { encoder: crate::absolute(encoder.dir()), pool: pool.examples().to_vec(), sets: *sets })
            }
        }
    }

    /// The demonstrations a checkpoint's manifest records, for inputs read by `prompt`
    /// (a filter's encoder is loaded on `device`).
    pub fn of_checkpoint(m: &Manifest, prompt: &Prompt, device: Device) -> Result<Self> {
        Ok(match (&m.demonstrations, &m.demo_filter) {
            (_, Some(f)) => {
                Demos::similar(DemoPool::new(&f.pool, prompt.verbalizer.num_labels())?, &f.encoder, device, prompt.template.num_sentences(), f.sets)?
            }
            (Some(sets), None) => Demos::Fixed(sets.clone()),
            (None, None) => Demos::None,
        })
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Demos::None)
    }

    /// Sets each input is read with (0: no demonstrations).
    pub fn sets_per_input(&self) -> usize {
        match self {
            Demos::None => 0,
            Demos::Fixed(s) => s.len(),
            Demos::Similar { sets, .. } => *sets,
        }
    }

    /// The fixed sets (empty for none and for filtered ones).
    pub fn fixed(&self) -> &[Vec<Example>] {
        match self {
            Demos::Fixed(s) => s,
            _ => &[],
        }
    }

    /// The filter's encoder directory, when filtered.
    pub fn filter_dir(&self) -> Option<PathBuf> {
        match self {
            Demos::Similar { encoder, .. } => Some(encoder.dir().to_path_buf()),
            _ => None,
        }
    }

    /// The sets of each input, `[input][set]` (None without demonstrations).
    pub fn sets_for(&self, inputs: &[Example]) -> Result<Option<Vec<Vec<Vec<Example>>>>> {
        Ok(match self {
            Demos::None => None,
            Demos::Fixed(sets) if sets.is_empty() => None,
            Demos::Fixed(sets) => Some(vec![sets.clone(); inputs.len()]),
            Demos::Similar { pool, encoder, sets } => {
                Some(encoder.embed(inputs)?.iter().map(|q| pool.similar_sets(q, *sets)).collect::<Result<_>>()?)
            }
        })
    }
}
