//! Heads on top of the encoder.
//! - The masked-LM head (ref: BertLMPredictionHead / RobertaLMHead / MPNetLMHead): transform (dense,
//!   activation, layer norm), then a decoder tied to the word embeddings plus a bias.
//!   Prompt-based fine-tuning only needs the label words' rows of the decoder.
//! - A [CLS] classification head for plain fine-tuning: RobertaClassificationHead's shape,
//!   or BertForSequenceClassification's (its dense layer the pretrained pooler).

use tch::{nn, Tensor};

use super::config::{Activation, Arch, Config};
use super::layers::{activate, dropout, LayerNorm, Linear};
use crate::Result;

#[derive(Debug)]
pub struct MlmHead {
    dense: Linear,
    norm: LayerNorm,
    pub bias: Tensor,
    act: Activation,
}

impl MlmHead {
    /// `p` is the root path; the head picks its HF names from the architecture.
    pub fn new(p: &nn::Path, c: &Config, arch: Arch) -> Result<Self> {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let (dense, norm, bias, act) = match arch {
            Arch::Bert => {
                let t = p / "cls" / "predictions" / "transform";
                (
                    Linear::new(&t / "dense", h, h, std)?,
                    LayerNorm::new(&t / "LayerNorm", h, c.layer_norm_eps)?,
                    (p / "cls" / "predictions").f_zeros("bias", &[c.vocab_size])?,
                    c.hidden_act,
                )
            }
            Arch::Roberta | Arch::Mpnet => {
                let t = p / "lm_head";
                (
                    Linear::new(&t / "dense", h, h, std)?,
                    LayerNorm::new(&t / "layer_norm", h, c.layer_norm_eps)?,
                    t.f_zeros("bias", &[c.vocab_size])?,
                    Activation::Gelu,
                )
            }
        };
        Ok(MlmHead { dense, norm, bias, act })
    }

    /// The transform applied to hidden states [.., H].
    pub fn transform(&self, hidden: &Tensor) -> Result<Tensor> {
        self.norm.forward(&activate(&self.dense.forward(hidden)?, self.act)?)
    }

    /// Logits over the whole vocabulary; `decoder` is the word-embedding matrix [V, H].
    pub fn logits(&self, transformed: &Tensor, decoder: &Tensor) -> Result<Tensor> {
        Ok(transformed.f_linear(decoder, Some(&self.bias))?)
    }

    /// Logits over a few tokens only (`ids`: int64 [L]): [.., L].
    pub fn logits_for(&self, transformed: &Tensor, decoder: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let w = decoder.f_index_select(0, ids)?;
        let b = self.bias.f_index_select(0, ids)?;
        Ok(transformed.f_linear(&w, Some(&b))?)
    }
}

/// dense -> tanh -> out_proj on the first token, with dropout before each (as HF's
/// RobertaClassificationHead), freshly initialised; or, started from a BERT checkpoint's
/// pooler ([`ClsHead::start_from_pooler`]), the pooler -> dropout -> out_proj of
/// BertForSequenceClassification. Weights under `classifier.`.
#[derive(Debug)]
pub struct ClsHead {
    dense: Linear,
    out_proj: Linear,
    dropout: f64,
    /// The dense layer is the pretrained pooler: no dropout before it (BERT has none).
    pooler: bool,
}

impl ClsHead {
    pub fn new(p: nn::Path, c: &Config, num_labels: i64) -> Result<Self> {
        Ok(ClsHead {
            dense: Linear::new(&p / "dense", c.hidden_size, c.hidden_size, c.initializer_range)?,
            out_proj: Linear::new(&p / "out_proj", c.hidden_size, num_labels, c.initializer_range)?,
            dropout: c.classifier_dropout.unwrap_or(c.hidden_dropout_prob),
            pooler: false,
        })
    }

    /// Copies a BERT checkpoint's pooler (weight [H, H], bias [H]) into the dense layer,
    /// which then reads the first token without dropout before it.
    pub fn start_from_pooler(&mut self, weight: &Tensor, bias: &Tensor) -> Result<()> {
        if weight.size() != self.dense.weight.size() || bias.size() != self.dense.bias.size() {
            return Err(crate::Error::Config(format!(
                "the checkpoint's pooler is {:?} and {:?}, the model's hidden size needs {:?} and {:?}",
                weight.size(),
                bias.size(),
                self.dense.weight.size(),
                self.dense.bias.size()
            )));
        }
        tch::no_grad(|| -> Result<()> {
            self.dense.weight.f_copy_(weight)?;
            self.dense.bias.f_copy_(bias)?;
            Ok(())
        })?;
        self.pooler = true;
        Ok(())
    }

    /// `hidden` [B, S, H] -> logits [B, num_labels].
    pub fn forward(&self, hidden: &Tensor, train: bool) -> Result<Tensor> {
        let first = hidden.f_select(1, 0)?;
        let x = if self.pooler { first } else { dropout(first, self.dropout, train)? };
        let x = dropout(self.dense.forward(&x)?.f_tanh()?, self.dropout, train)?;
        self.out_proj.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cls_head_takes_classifier_dropout_when_the_config_gives_one() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let head = |json: &str| {
            let c: Config = serde_json::from_str(json).unwrap();
            ClsHead::new(vs.root() / json.len().to_string(), &c, 2).unwrap().dropout
        };
        assert_eq!(head(r#"{"hidden_size": 8, "hidden_dropout_prob": 0.2, "classifier_dropout": 0.4}"#), 0.4);
        // HF writes null where the model has none: the hidden layers' rate.
        assert_eq!(head(r#"{"hidden_size": 8, "hidden_dropout_prob": 0.2, "classifier_dropout": null}"#), 0.2);
        assert_eq!(head(r#"{"hidden_size": 8, "hidden_dropout_prob": 0.2}"#), 0.2);
    }
}
