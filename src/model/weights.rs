//! Reading HF checkpoints into a var store (names matched exactly, shapes checked) and
//! writing them back as `model.safetensors`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{nn, Tensor};

use super::config::Arch;
use crate::{Error, Result};

/// What loading found.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The weights file read.
    pub file: PathBuf,
    /// True when the checkpoint had no masked-LM head and a new one was initialised
    /// (decoder tied to the word embeddings, transform random, bias zero).
    pub head_initialised: bool,
    /// Checkpoint tensors the model's encoder and masked-LM head do not use (a pooler,
    /// which only plain fine-tuning of a BERT checkpoint reads, or another head).
    pub unused: Vec<String>,
}

const WEIGHT_FILES: [&str; 3] = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"];

/// The weights file of a model directory: `model.safetensors`, a sharded
/// `model.safetensors.index.json`, or `pytorch_model.bin`, in that order of preference.
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    if let Some(file) = WEIGHT_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file()) {
        return Ok(file);
    }
    // transformers' sharded torch.save layout: named, with the conversion to safetensors.
    let sharded = "pytorch_model.bin.index.json";
    if dir.join(sharded).is_file() {
        return Err(Error::CorruptWeights {
            file: dir.join(sharded),
            message: format!(
                "sharded pytorch_model-*.bin files, which libtorch cannot read: convert them once to safetensors with \
                 `python -c \"from transformers import AutoModelForMaskedLM as M; M.from_pretrained('.').save_pretrained('.', \
                 safe_serialization=True)\"` in the model folder (it writes {} or {})",
                WEIGHT_FILES[0], WEIGHT_FILES[1]
            ),
        });
    }
    Err(Error::MissingFile { dir: dir.to_path_buf(), what: "weights", looked_for: WEIGHT_FILES.join(", ") })
}

/// Reads every tensor of a model directory's weights (see [`weights_file`]).
pub fn read_checkpoint(dir: &Path) -> Result<(PathBuf, HashMap<String, Tensor>)> {
    let file = weights_file(dir)?;
    let corrupt = |file: &Path, e: tch::TchError| Error::CorruptWeights { file: file.to_path_buf(), message: e.to_string() };
    let tensors: HashMap<String, Tensor> = if file.ends_with(WEIGHT_FILES[0]) {
        Tensor::read_safetensors(&file).map_err(|e| corrupt(&file, e))?.into_iter().collect()
    } else if file.ends_with(WEIGHT_FILES[1]) {
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|source| Error::Json { path: file.clone(), what: "a safetensors index", source })?;
        let mut shards: Vec<String> = json["weight_map"]
            .as_object()
            .ok_or_else(|| Error::CorruptWeights { file: file.clone(), message: "no weight_map".into() })?
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        shards.sort();
        shards.dedup();
        let mut all = HashMap::new();
        for shard in shards {
            let f = dir.join(&shard);
            all.extend(Tensor::read_safetensors(&f).map_err(|e| corrupt(&f, e))?);
        }
        all
    } else {
        Tensor::loadz_multi(&file).map_err(|e| pickle_error(&file, e))?.into_iter().collect()
    };
    Ok((file, tensors))
}

/// libtorch reads a torch.save file only when it holds a plain dict of tensors; HF's
/// pytorch_model.bin files hold an OrderedDict, which libtorch refuses with a long C++
/// assertion and backtrace. That case is named, with the one-line conversion.
fn pickle_error(file: &Path, e: tch::TchError) -> Error {
    let convert = "convert it once with `python -c \"import torch, safetensors.torch as s; s.save_file({k: v.clone().contiguous() \
                   for k, v in torch.load('pytorch_model.bin').items()}, 'model.safetensors')\"` in the model folder";
    let text = e.to_string();
    if text.contains("isGenericDict") {
        return Error::CorruptWeights {
            file: file.to_path_buf(),
            message: format!("it holds a Python OrderedDict (as transformers saves a state_dict), which libtorch cannot read: {convert}"),
        };
    }
    // libtorch's own message, without the C++ backtrace that follows it.
    let first = text.lines().next().unwrap_or_default();
    Error::CorruptWeights {
        file: file.to_path_buf(),
        message: format!("libtorch cannot read it ({first}); libtorch reads torch.save files holding a plain dict of tensors: otherwise {convert}"),
    }
}

pub(crate) fn is_head(name: &str) -> bool {
    name.starts_with("cls.") || name.starts_with("lm_head.")
}

/// Maps checkpoint names onto ours: adds the encoder prefix to bare `BertModel` /
/// `RobertaModel` names, renames old `gamma`/`beta`, and aliases the decoder bias.
fn canonical(name: &str, arch: Arch) -> String {
    let mut n = name.to_string();
    if !is_head(&n) && !n.starts_with(&format!("{}.", arch.prefix())) {
        n = format!("{}.{n}", arch.prefix());
    }
    if let Some(s) = n.strip_suffix(".gamma") {
        n = format!("{s}.weight");
    } else if let Some(s) = n.strip_suffix(".beta") {
        n = format!("{s}.bias");
    }
    match n.as_str() {
        "cls.predictions.decoder.bias" => "cls.predictions.bias".into(),
        "lm_head.decoder.bias" => "lm_head.bias".into(),
        _ => n,
    }
}

/// A BERT checkpoint's pooler, `pooler.dense` (with or without the `bert.` prefix), as
/// CPU float tensors: weight [H, H], bias [H]; None for other architectures (RoBERTa's
/// and MPNet's sequence classifiers do not read theirs) or a checkpoint without one. A
/// pooler with only one of the two is an `Err` holding the missing one's name, for plain
/// fine-tuning to raise (the model loads: nothing else reads the pooler).
pub fn bert_pooler(ckpt: &HashMap<String, Tensor>, arch: Arch) -> Result<Option<std::result::Result<(Tensor, Tensor), String>>> {
    if arch != Arch::Bert {
        return Ok(None);
    }
    let find = |part: &str| -> Result<Option<Tensor>> {
        let want = format!("bert.pooler.dense.{part}");
        match ckpt.iter().find(|(n, _)| canonical(n, arch) == want) {
            Some((_, t)) => Ok(Some(t.f_to_device(tch::Device::Cpu)?.f_to_kind(tch::Kind::Float)?)),
            None => Ok(None),
        }
    };
    match (find("weight")?, find("bias")?) {
        (Some(w), Some(b)) => Ok(Some(Ok((w, b)))),
        (None, None) => Ok(None),
        (w, _) => Ok(Some(Err(format!("bert.pooler.dense.{}", if w.is_some() { "bias" } else { "weight" })))),
    }
}

/// Copies checkpoint tensors into the var store. Encoder weights must all be present;
/// the masked-LM head is either complete or absent (then it keeps its fresh init).
pub fn assign(vs: &nn::VarStore, ckpt: HashMap<String, Tensor>, arch: Arch, file: &Path) -> Result<LoadReport> {
    let mut by_name: HashMap<String, (String, Tensor)> = HashMap::new();
    for (orig, t) in ckpt {
        let name = canonical(&orig, arch);
        // Two stored names of one weight (the decoder bias is saved under both by some
        // transformers versions): the same values are one weight, others are named.
        if let Some((other, kept)) = by_name.get(&name) {
            if kept.size() != t.size() || kept.kind() != t.kind() || !kept.f_equal(&t).unwrap_or(false) {
                return Err(Error::CorruptWeights {
                    file: file.to_path_buf(),
                    message: format!("`{other}` and `{orig}` are both the model's `{name}`, with different values"),
                });
            }
            continue;
        }
        by_name.insert(name, (orig, t));
    }
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let head_names: Vec<&&String> = names.iter().filter(|n| is_head(n)).collect();
    let head_present = head_names.iter().filter(|n| by_name.contains_key(n.as_str())).count();
    if head_present > 0 && head_present < head_names.len() {
        let missing = head_names.iter().find(|n| !by_name.contains_key(n.as_str())).unwrap();
        return Err(Error::MissingWeight { name: missing.to_string(), file: file.to_path_buf() });
    }
    let head_initialised = head_present == 0;
    tch::no_grad(|| -> Result<()> {
        for name in &names {
            let var = &vars[*name];
            let Some((_, src)) = by_name.get(name.as_str()) else {
                if is_head(name) && head_initialised {
                    continue;
                }
                return Err(Error::MissingWeight { name: name.to_string(), file: file.to_path_buf() });
            };
            if src.size() != var.size() {
                return Err(Error::WeightShape {
                    name: name.to_string(),
                    file: file.to_path_buf(),
                    expected: var.size(),
                    found: src.size(),
                });
            }
            let mut dst = var.shallow_clone();
            dst.f_copy_(&src.f_to_kind(var.kind())?)?;
        }
        Ok(())
    })?;
    let tied = ["cls.predictions.decoder.weight", "lm_head.decoder.weight"];
    // lmbff's decoder is the word embeddings: a stored decoder must be a copy of them (a
    // tied model saved with both), or it would be silently replaced.
    let embeddings = format!("{}.embeddings.word_embeddings.weight", arch.prefix());
    for name in tied {
        if let (Some((orig, decoder)), Some(words)) = (by_name.get(name), vars.get(&embeddings)) {
            let words = words.f_detach()?.f_to_device(tch::Device::Cpu)?.f_to_kind(tch::Kind::Float)?;
            let decoder = decoder.f_to_kind(tch::Kind::Float)?;
            let differs = if decoder.size() != words.size() {
                Some(format!("its shape is {:?}, the word embeddings' {:?}", decoder.size(), words.size()))
            } else {
                let diff = decoder.f_sub(&words)?.f_abs()?.f_max()?.double_value(&[]);
                let scale = words.f_abs()?.f_max()?.double_value(&[]).max(1e-12);
                (diff > 1e-6 * scale).then(|| format!("it differs from them by up to {diff:.3e}"))
            };
            if let Some(how) = differs {
                return Err(Error::Config(format!(
                    "{}: the masked-LM decoder {orig} is not tied to the word embeddings ({how}): lmbff ties the decoder to \
                     the word embeddings and cannot load an untied one",
                    file.display()
                )));
            }
        }
    }
    let mut unused: Vec<(String, String)> = by_name
        .into_iter()
        .filter(|(n, _)| !vars.contains_key(n) && !tied.contains(&n.as_str()) && !n.ends_with("position_ids"))
        .map(|(n, (orig, _))| (n, orig))
        .collect();
    unused.sort();
    // An encoder weight nothing reads is a model the config does not describe: more
    // layers than num_hidden_layers (they would be dropped without a word), or
    // cross-attention. The pooler and other heads may go unread.
    if let Some((_, orig)) = unused.iter().find(|(n, _)| n.starts_with(&format!("{}.encoder.", arch.prefix()))) {
        return Err(Error::Config(format!(
            "{}: the checkpoint holds {orig}, which the model its config.json describes does not have (more layers than \
             num_hidden_layers, or cross-attention, which lmbff does not run): the config and the weights disagree",
            file.display()
        )));
    }
    let unused = unused.into_iter().map(|(_, orig)| orig).collect();
    Ok(LoadReport { file: file.to_path_buf(), head_initialised, unused })
}

/// Writes every variable of the store that `skip` does not name (HF names, on CPU,
/// contiguous) as safetensors.
pub fn write_safetensors(vs: &nn::VarStore, file: &Path, skip: impl Fn(&str) -> bool) -> Result<()> {
    let vars = vs.variables();
    let mut named: Vec<(String, Tensor)> = Vec::with_capacity(vars.len());
    for (name, t) in vars {
        if skip(&name) {
            continue;
        }
        named.push((name, t.f_detach()?.f_to_device(tch::Device::Cpu)?.f_contiguous()?));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, file)?;
    Ok(())
}
