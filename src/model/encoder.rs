//! The BERT / RoBERTa encoder: embeddings, self-attention, feed-forward, post-layer-norm.
//! ref: transformers/models/bert/modeling_bert.py (BertEmbeddings, BertLayer) and
//! models/roberta/modeling_roberta.py (create_position_ids_from_input_ids).

use tch::{nn, Kind, Tensor};

use super::config::{Arch, Config};
use super::layers::{activate, dropout, Embedding, LayerNorm, Linear};
use crate::Result;

#[derive(Debug)]
pub struct Embeddings {
    pub word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
    arch: Arch,
    pad_id: i64,
    dropout: f64,
}

impl Embeddings {
    fn new(p: nn::Path, c: &Config, arch: Arch) -> Result<Self> {
        let std = c.initializer_range;
        Ok(Embeddings {
            word_embeddings: Embedding::new(&p / "word_embeddings", c.vocab_size, c.hidden_size, std)?,
            position_embeddings: Embedding::new(&p / "position_embeddings", c.max_position_embeddings, c.hidden_size, std)?,
            token_type_embeddings: Embedding::new(&p / "token_type_embeddings", c.type_vocab_size, c.hidden_size, std)?,
            layer_norm: LayerNorm::new(&p / "LayerNorm", c.hidden_size, c.layer_norm_eps)?,
            arch,
            pad_id: c.pad_token_id,
            dropout: c.hidden_dropout_prob,
        })
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, train: bool) -> Result<Tensor> {
        let (b, s) = input_ids.size2()?;
        let positions = match self.arch {
            Arch::Bert => Tensor::f_arange(s, (Kind::Int64, input_ids.device()))?.f_expand([b, s], false)?,
            // RoBERTa counts positions from pad_id + 1 over non-pad tokens; pads get pad_id.
            Arch::Roberta => {
                let not_pad = input_ids.f_ne(self.pad_id)?.f_to_kind(Kind::Int64)?;
                not_pad.f_cumsum(1, Kind::Int64)?.f_mul(&not_pad)?.f_add_scalar(self.pad_id)?
            }
        };
        let x = self
            .word_embeddings
            .forward(input_ids)?
            .f_add(&self.position_embeddings.forward(&positions)?)?
            .f_add(&self.token_type_embeddings.forward(token_type_ids)?)?;
        dropout(self.layer_norm.forward(&x)?, self.dropout, train)
    }
}

#[derive(Debug)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    heads: i64,
    cfg: Config,
}

impl Layer {
    fn new(p: nn::Path, c: &Config) -> Result<Self> {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let att = &p / "attention";
        Ok(Layer {
            query: Linear::new(&att / "self" / "query", h, h, std)?,
            key: Linear::new(&att / "self" / "key", h, h, std)?,
            value: Linear::new(&att / "self" / "value", h, h, std)?,
            attn_out: Linear::new(&att / "output" / "dense", h, h, std)?,
            attn_norm: LayerNorm::new(&att / "output" / "LayerNorm", h, c.layer_norm_eps)?,
            intermediate: Linear::new(&p / "intermediate" / "dense", h, c.intermediate_size, std)?,
            output: Linear::new(&p / "output" / "dense", c.intermediate_size, h, std)?,
            out_norm: LayerNorm::new(&p / "output" / "LayerNorm", h, c.layer_norm_eps)?,
            heads: c.num_attention_heads,
            cfg: c.clone(),
        })
    }

    /// `attn_mask`: bool [B, 1, 1, S], true where a key may be attended to.
    fn forward(&self, x: &Tensor, attn_mask: &Tensor, train: bool) -> Result<Tensor> {
        let (b, s, h) = x.size3()?;
        let split = |t: Tensor| t.f_view([b, s, self.heads, h / self.heads])?.f_transpose(1, 2);
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let p_drop = if train { self.cfg.attention_probs_dropout_prob } else { 0.0 };
        let ctx = Tensor::f_scaled_dot_product_attention(&q, &k, &v, Some(attn_mask), p_drop, false, None, false)?
            .f_transpose(1, 2)?
            .f_reshape([b, s, h])?;
        let a = dropout(self.attn_out.forward(&ctx)?, self.cfg.hidden_dropout_prob, train)?;
        let a = self.attn_norm.forward(&a.f_add(x)?)?;
        let f = activate(&self.intermediate.forward(&a)?, self.cfg.hidden_act)?;
        let f = dropout(self.output.forward(&f)?, self.cfg.hidden_dropout_prob, train)?;
        self.out_norm.forward(&f.f_add(&a)?)
    }
}

/// Embeddings plus the transformer layers; weight names under `bert.` / `roberta.`.
#[derive(Debug)]
pub struct Encoder {
    pub embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl Encoder {
    pub fn new(p: nn::Path, c: &Config, arch: Arch) -> Result<Self> {
        let embeddings = Embeddings::new(&p / "embeddings", c, arch)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::new(&p / "encoder" / "layer" / i, c))
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder { embeddings, layers })
    }

    /// Last hidden states [B, S, H]. `attention_mask` is 1 for tokens, 0 for padding.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, token_type_ids: &Tensor, train: bool) -> Result<Tensor> {
        let (b, s) = input_ids.size2()?;
        let keep = attention_mask.f_ne(0)?.f_view([b, 1, 1, s])?;
        let mut x = self.embeddings.forward(input_ids, token_type_ids, train)?;
        for layer in &self.layers {
            x = layer.forward(&x, &keep, train)?;
        }
        Ok(x)
    }
}
