//! Masked language models in tch, loaded from Hugging Face model directories.

mod config;
mod encoder;
mod head;
mod layers;
mod weights;

pub use config::{Activation, Arch, Config};
pub use head::{ClsHead, MlmHead};
pub use encoder::{relative_buckets, AttentionNames};
pub use weights::{read_checkpoint, weights_file, LoadReport};

use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind, Tensor};

use crate::prompt::Encoded;
use crate::{Error, Result};
use encoder::Encoder;

/// Files copied verbatim from the source model directory when a model is saved.
pub const TOKENIZER_FILES: &[&str] =
    &["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt"];

/// Parses a device name: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when present).
pub fn parse_device(name: &str) -> Result<Device> {
    let unavailable = |why: &str| Error::Device(name.to_string(), why.to_string());
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" => parse_device("cuda:0"),
        _ => {
            let n: usize = name
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| unavailable("expected cpu, cuda, cuda:N or auto"))?;
            let count = tch::Cuda::device_count() as usize;
            if n >= count {
                return Err(unavailable(&format!("this machine has {count} CUDA device(s)")));
            }
            Ok(Device::Cuda(n))
        }
    }
}

/// A padded batch on a device.
#[derive(Debug)]
pub struct Batch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub token_type_ids: Tensor,
    /// Mask position of each row [B].
    pub mask_pos: Tensor,
}

/// An encoder with its masked-LM head (BertForMaskedLM / RobertaForMaskedLM /
/// MPNetForMaskedLM).
pub struct MaskedLm {
    pub vs: nn::VarStore,
    pub config: Config,
    pub arch: Arch,
    raw_config: serde_json::Value,
    source_dir: PathBuf,
    /// The tokenizer files of `source_dir` as they were at load: a save writes these, so
    /// a source folder deleted or changed meanwhile (a warm start's version, deleted
    /// during the run) cannot leave the saved model without its tokenizer.
    tokenizer_files: Vec<(&'static str, Vec<u8>)>,
    encoder: Encoder,
    head: MlmHead,
    /// A BERT checkpoint's pooler (dense weight [H, H], bias [H], on the CPU): plain
    /// [CLS] fine-tuning starts its head's dense layer from it, as HF's
    /// BertForSequenceClassification (LM-BFF's baseline) does; for half a pooler, the
    /// missing weight's name, raised by [`MaskedLm::new_cls_head`] alone.
    pooler: Option<std::result::Result<(Tensor, Tensor), String>>,
    report: LoadReport,
    /// Whether the masked-LM head holds more than a new initialisation: it came with the
    /// checkpoint, or adaptation or prompt fine-tuning trained it. A save leaves an
    /// untrained one out, so that the saved model loads as headless again.
    head_trained: std::sync::atomic::AtomicBool,
}

impl MaskedLm {
    /// Loads `config.json` and the weights of an HF model directory. A checkpoint
    /// without a masked-LM head gets a new one (see [`LoadReport::head_initialised`]).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let (config, raw_config) = Config::from_dir(dir)?;
        let arch = config.arch()?;
        let (file, ckpt) = read_checkpoint(dir)?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let encoder = Encoder::new(&root / arch.prefix(), &config, arch)?;
        let head = MlmHead::new(&root, &config, arch)?;
        let pooler = weights::bert_pooler(&ckpt, arch)?;
        let report = weights::assign(&vs, ckpt, arch, &file)?;
        let tokenizer_files = TOKENIZER_FILES
            .iter()
            .filter_map(|&name| {
                let path = dir.join(name);
                match std::fs::read(&path) {
                    Ok(bytes) => Some(Ok((name, bytes))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => Some(Err(Error::io(&path, e))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let head_trained = std::sync::atomic::AtomicBool::new(!report.head_initialised);
        Ok(MaskedLm { vs, config, arch, raw_config, source_dir: dir.to_path_buf(), tokenizer_files, encoder, head, pooler, report, head_trained })
    }

    /// [`MaskedLm::load`] without drawing from libtorch's process-wide random generator
    /// (a training run on another thread keeps its dropout draws, and so its promise of
    /// the same model from the same seed): for a checkpoint read as it is, an export's or
    /// a demonstration filter's encoder. A masked-LM head the checkpoint lacks is zero
    /// here, not random: a caller that predicts with a new head loads with `load`.
    pub fn load_without_rng(dir: &Path, device: Device) -> Result<Self> {
        layers::without_random_init(|| Self::load(dir, device))
    }

    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// Records that training is moving the masked-LM head (adaptation, prompt
    /// fine-tuning): a save then writes it, and the saved model loads with it.
    pub fn mark_head_trained(&self) {
        self.head_trained.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The directory the model was loaded from (its tokenizer files live there).
    pub fn source_dir(&self) -> &Path {
        &self.source_dir
    }

    /// Tokenizer file `name` (one of [`TOKENIZER_FILES`]) as it was when the model was
    /// loaded; a missing one is an IO error naming it in the source directory.
    pub fn tokenizer_file(&self, name: &str) -> Result<&[u8]> {
        self.tokenizer_files.iter().find(|(n, _)| *n == name).map(|(_, b)| b.as_slice()).ok_or_else(|| {
            Error::io(self.source_dir.join(name), std::io::Error::new(std::io::ErrorKind::NotFound, "not in the model directory when it was loaded"))
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The word-embedding matrix, which is also the decoder (tied).
    pub fn word_embeddings(&self) -> &Tensor {
        &self.encoder.embeddings.word_embeddings.weight
    }

    pub fn head(&self) -> &MlmHead {
        &self.head
    }

    /// Adds a [CLS] classification head (weights under `classifier.`): its output layer
    /// new, its dense layer the checkpoint's pooler where a BERT checkpoint has one (as
    /// HF's BertForSequenceClassification), else new (as RobertaClassificationHead).
    pub fn new_cls_head(&self, num_labels: usize) -> Result<ClsHead> {
        let mut head = ClsHead::new(self.vs.root() / "classifier", &self.config, num_labels as i64)?;
        match &self.pooler {
            Some(Ok((weight, bias))) => head.start_from_pooler(weight, bias)?,
            Some(Err(name)) => return Err(Error::MissingWeight { name: name.clone(), file: self.report.file.clone() }),
            None => {}
        }
        Ok(head)
    }

    /// Pads encoded inputs into a batch on the model's device.
    pub fn batch(&self, items: &[&Encoded], pad_id: u32) -> Result<Batch> {
        let b = items.len();
        if b == 0 {
            return Err(Error::InvalidArgument("empty batch".into()));
        }
        let s = items.iter().map(|e| e.input_ids.len()).max().unwrap_or(0);
        let limit = self.config.max_input_len() as usize;
        if s > limit {
            return Err(Error::Truncation(format!("an input has {s} tokens; this model takes at most {limit}")));
        }
        // Segments past the last token type read the last one. A model whose graph
        // takes no token types (RoBERTa) reads type 0 throughout, as HF does when none
        // are given.
        let max_type = if self.arch.reads_token_types() { self.config.type_vocab_size.max(1) as u32 - 1 } else { 0 };
        let mut ids = vec![pad_id as i64; b * s];
        let mut mask = vec![0i64; b * s];
        let mut types = vec![0i64; b * s];
        let mut pos = Vec::with_capacity(b);
        for (r, e) in items.iter().enumerate() {
            for (c, (&id, &seg)) in e.input_ids.iter().zip(&e.segment_ids).enumerate() {
                ids[r * s + c] = id as i64;
                mask[r * s + c] = 1;
                types[r * s + c] = seg.min(max_type) as i64;
            }
            pos.push(e.mask_pos as i64);
        }
        let dev = self.device();
        let t = |v: Vec<i64>| -> Result<Tensor> { Ok(Tensor::from_slice(&v).f_view([b as i64, s as i64])?.f_to_device(dev)?) };
        Ok(Batch {
            input_ids: t(ids)?,
            attention_mask: t(mask)?,
            token_type_ids: t(types)?,
            mask_pos: Tensor::from_slice(&pos).f_to_device(dev)?,
        })
    }

    /// Last hidden states [B, S, H].
    pub fn encode(&self, input_ids: &Tensor, attention_mask: &Tensor, token_type_ids: &Tensor, train: bool) -> Result<Tensor> {
        self.encoder.forward(input_ids, attention_mask, token_type_ids, train)
    }

    /// Full masked-LM logits [B, S, V] (parity tests, adaptation).
    pub fn mlm_logits(&self, input_ids: &Tensor, attention_mask: &Tensor, token_type_ids: &Tensor) -> Result<Tensor> {
        let h = self.encode(input_ids, attention_mask, token_type_ids, false)?;
        self.head.logits(&self.head.transform(&h)?, self.word_embeddings())
    }

    /// Logits of the given label-word ids at each row's mask position [B, L].
    pub fn label_logits(&self, batch: &Batch, label_ids: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.encode(&batch.input_ids, &batch.attention_mask, &batch.token_type_ids, train)?;
        let rows = Tensor::f_arange(h.size()[0], (Kind::Int64, h.device()))?;
        let at_mask = h.f_index(&[Some(rows), Some(batch.mask_pos.shallow_clone())])?;
        self.head.logits_for(&self.head.transform(&at_mask)?, self.word_embeddings(), label_ids)
    }

    /// Writes an ordinary HF model directory: `model.safetensors` (the encoder and the
    /// masked-LM head; the decoder is tied, so it is not stored twice; a head initialised
    /// at load and never trained is left out, so the saved model again loads as one
    /// without a head, [`LoadReport::head_initialised`]), `config.json`
    /// naming the masked-LM class, and the tokenizer files of the source directory (as
    /// they were when the model was loaded).
    /// `dir` must exist; callers make the write atomic (see `checkpoint`).
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        let with_head = self.head_trained.load(std::sync::atomic::Ordering::Relaxed);
        weights::write_safetensors(&self.vs, &dir.join("model.safetensors"), |name| name.starts_with("classifier.") || (!with_head && weights::is_head(name)))?;
        let mut cfg = self.raw_config.clone();
        cfg["architectures"] = serde_json::json!([self.arch.mlm_class()]);
        // What is written: fp32 weights, the decoder tied (not stored), whatever the
        // source said (transformers would otherwise load the weights in half precision,
        // or look for a decoder that is not there).
        if let Some(obj) = cfg.as_object_mut() {
            for key in ["dtype", "torch_dtype"] {
                if obj.contains_key(key) {
                    obj.insert(key.into(), "float32".into());
                }
            }
            obj.insert("tie_word_embeddings".into(), true.into());
        }
        let path = dir.join("config.json");
        let text = serde_json::to_string_pretty(&cfg).expect("a JSON value serialises");
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        for (name, bytes) in &self.tokenizer_files {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// Snapshot of all weights (deep copies), for keeping the best model during training.
    pub fn snapshot(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        tch::no_grad(|| -> Result<()> {
            for (n, t) in self.vs.variables() {
                // (A copy that fails, out of GPU memory, is an error: `copy()` panicked.)
                out.push((n, t.f_detach_copy()?));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Restores a [`snapshot`](Self::snapshot).
    pub fn restore(&self, snap: &[(String, Tensor)]) -> Result<()> {
        let vars = self.vs.variables();
        tch::no_grad(|| -> Result<()> {
            for (n, t) in snap {
                if let Some(v) = vars.get(n) {
                    v.shallow_clone().f_copy_(t)?;
                }
            }
            Ok(())
        })
    }
}
