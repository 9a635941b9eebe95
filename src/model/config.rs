//! `config.json` of a Hugging Face BERT, RoBERTa or MPNet checkpoint.

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// Which encoder family the checkpoint is; decides weight names, position ids and head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Bert,
    Roberta,
    /// MPNet (all-mpnet-base-v2): RoBERTa's positions and head, no token types, and a
    /// relative-position bias added to every layer's attention scores.
    Mpnet,
}

impl Arch {
    /// Prefix of the encoder's weights in HF `*ForMaskedLM` checkpoints.
    pub fn prefix(self) -> &'static str {
        match self {
            Arch::Bert => "bert",
            Arch::Roberta => "roberta",
            Arch::Mpnet => "mpnet",
        }
    }

    /// Name of the masked-LM class in HF transformers (for `architectures`).
    pub fn mlm_class(self) -> &'static str {
        match self {
            Arch::Bert => "BertForMaskedLM",
            Arch::Roberta => "RobertaForMaskedLM",
            Arch::Mpnet => "MPNetForMaskedLM",
        }
    }

    /// Whether the encoder has token-type (segment) embeddings.
    pub fn has_token_types(self) -> bool {
        self != Arch::Mpnet
    }

    /// Whether an exported graph takes `token_type_ids`: only BERT's segments vary; RoBERTa
    /// has one type row, folded into the graph as a constant.
    pub fn reads_token_types(self) -> bool {
        self == Arch::Bert
    }

    /// Whether positions count from `pad_token_id + 1` over the non-pad tokens
    /// (HF's `create_position_ids_from_input_ids`) rather than from 0.
    pub fn offset_positions(self) -> bool {
        self != Arch::Bert
    }
}

/// Activation named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact (erf) GELU.
    Gelu,
    /// tanh approximation of GELU.
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    Relu,
    #[serde(alias = "swish")]
    Silu,
}

/// Encoder hyper-parameters; defaults are those of HF's `BertConfig`, except that
/// [`Config::from_dir`] gives RoBERTa and MPNet their own `pad_token_id` and `vocab_size`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// "bert", "roberta" or "mpnet".
    pub model_type: String,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub hidden_act: Activation,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    pub initializer_range: f64,
    pub pad_token_id: i64,
    /// Only "absolute" is supported.
    pub position_embedding_type: String,
    /// MPNet: buckets of the relative-position attention bias.
    pub relative_attention_num_buckets: i64,
    /// A decoder (causal attention) config: refused.
    pub is_decoder: bool,
    /// Dropout of the [CLS] classification head (plain fine-tuning); none given (or null,
    /// as HF writes it): `hidden_dropout_prob`.
    pub classifier_dropout: Option<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model_type: "bert".into(),
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            initializer_range: 0.02,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
            relative_attention_num_buckets: 32,
            is_decoder: false,
            classifier_dropout: None,
        }
    }
}

impl Config {
    /// Reads and validates `config.json` from a model directory.
    pub fn from_dir(dir: &Path) -> Result<(Self, serde_json::Value)> {
        let path = dir.join("config.json");
        if !crate::checkpoint::is_file(&path)? {
            return Err(Error::MissingFile { dir: dir.to_path_buf(), what: "model config", looked_for: "config.json".into() });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json { path: path.clone(), what: "a model config", source })?;
        // Configs older than transformers' model_type key name the model class instead
        // ("BertForMaskedLM"): the type is read from it.
        if let (None, Some(class)) = (raw.get("model_type"), raw.get("architectures").and_then(|a| a.get(0)).and_then(|c| c.as_str())) {
            let inferred = [("Bert", "bert"), ("Roberta", "roberta"), ("MPNet", "mpnet")].iter().find(|(prefix, _)| class.starts_with(prefix));
            if let (Some((_, t)), Some(obj)) = (inferred, raw.as_object_mut()) {
                obj.insert("model_type".into(), (*t).into());
            }
        }
        // An untied decoder is refused where the weights are read (weights::assign): it
        // is there or not whatever the config says.
        match raw.get("model_type") {
            None => {
                return Err(Error::Config(format!(
                    "{}: no model_type, and no architectures naming a BERT, RoBERTa or MPNet class (lmbff reads \"bert\", \"roberta\" and \"mpnet\" models; HF's save_pretrained writes model_type)",
                    path.display()
                )))
            }
            Some(v) if !v.is_string() => return Err(Error::Config(format!("{}: model_type is {v}, not a string", path.display()))),
            Some(_) => {}
        }
        if let Some(act) = raw.get("hidden_act").and_then(|v| v.as_str()) {
            const KNOWN: [&str; 7] = ["gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish"];
            if !KNOWN.contains(&act) {
                return Err(Error::Config(format!("hidden_act {act:?} is not supported (supported: {})", KNOWN.join(", "))));
            }
        }
        // Keys the file leaves out take the defaults of its own architecture's HF config
        // (RoBERTa and MPNet pad with id 1, BERT with 0), not BertConfig's.
        let mut filled = raw.clone();
        // Keys HF's configs take as unset when null ("pad_token_id": null) take their default.
        if let Some(obj) = filled.as_object_mut() {
            obj.retain(|k, v| !(v.is_null() && ["pad_token_id", "position_embedding_type"].contains(&k.as_str())));
        }
        let arch_defaults: &[(&str, i64)] = match raw.get("model_type").and_then(|v| v.as_str()) {
            Some("roberta") => &[("pad_token_id", 1), ("vocab_size", 50265)],
            Some("mpnet") => &[("pad_token_id", 1), ("vocab_size", 30527)],
            _ => &[],
        };
        if let Some(obj) = filled.as_object_mut() {
            for (key, value) in arch_defaults {
                obj.entry(*key).or_insert((*value).into());
            }
        }
        let cfg: Config = serde_json::from_value(filled.clone()).map_err(|source| {
            // serde names the type it wanted, not the key: find the key that fails alone.
            let alone = |(k, v): &(&String, &serde_json::Value)| serde_json::from_value::<Config>(serde_json::json!({ k.as_str(): v })).is_err();
            match filled.as_object().and_then(|o| o.iter().find(alone)) {
                Some((key, _)) => Error::Config(format!("{}: {key}: {source}", path.display())),
                None => Error::Json { path, what: "a BERT/RoBERTa/MPNet config", source },
            }
        })?;
        cfg.validate()?;
        Ok((cfg, raw))
    }

    pub fn arch(&self) -> Result<Arch> {
        match self.model_type.as_str() {
            "bert" => Ok(Arch::Bert),
            "roberta" => Ok(Arch::Roberta),
            "mpnet" => Ok(Arch::Mpnet),
            other => Err(Error::UnsupportedArchitecture(other.to_string())),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.arch()?;
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("relative_attention_num_buckets", self.relative_attention_num_buckets),
        ];
        if let Some((name, v)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(Error::Config(format!("{name} must be positive, got {v}")));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(Error::Config(format!("layer_norm_eps must be positive, got {}", self.layer_norm_eps)));
        }
        let probabilities = [
            ("hidden_dropout_prob", Some(self.hidden_dropout_prob)),
            ("attention_probs_dropout_prob", Some(self.attention_probs_dropout_prob)),
            ("classifier_dropout", self.classifier_dropout),
        ];
        if let Some((name, Some(p))) = probabilities.iter().find(|(_, p)| p.is_some_and(|p| !(0.0..1.0).contains(&p))) {
            return Err(Error::Config(format!("{name} is a dropout probability, from 0 to below 1, got {p}")));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::Config(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.arch()? == Arch::Mpnet && self.pad_token_id != 1 {
            // HF's MPNet counts positions from its fixed padding index 1, whatever the config says.
            return Err(Error::Config(format!("an MPNet config must have pad_token_id 1 (HF's MPNet fixes it), got {}", self.pad_token_id)));
        }
        if self.arch()? == Arch::Mpnet && self.relative_attention_num_buckets != 32 {
            // HF's MPNet sizes its bias table by the config but always buckets positions
            // into 32 (compute_position_bias's default): another value is not the model
            // transformers runs (16 fails there; 64 leaves half the table unused).
            return Err(Error::Config(format!(
                "an MPNet config must have relative_attention_num_buckets 32 (HF's MPNet buckets positions into 32 whatever the config says), got {}",
                self.relative_attention_num_buckets
            )));
        }
        if self.arch()?.offset_positions() && (self.pad_token_id < 0 || self.max_input_len() < 1) {
            // RoBERTa and MPNet count positions from pad_token_id + 1.
            return Err(Error::Config(format!(
                "pad_token_id {} leaves no position of the {} max_position_embeddings ({} counts positions from pad_token_id + 1)",
                self.pad_token_id, self.max_position_embeddings, self.model_type
            )));
        }
        if self.is_decoder {
            return Err(Error::Config(
                "is_decoder is true: transformers then runs the encoder with a causal mask, which lmbff does not (it reads every token both ways)".into(),
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(Error::Config(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            )));
        }
        Ok(())
    }

    /// Longest input the position table allows (RoBERTa and MPNet reserve
    /// `pad_token_id + 1`).
    pub fn max_input_len(&self) -> i64 {
        match self.arch() {
            Ok(a) if a.offset_positions() => self.max_position_embeddings - self.pad_token_id - 1,
            _ => self.max_position_embeddings,
        }
    }
}
