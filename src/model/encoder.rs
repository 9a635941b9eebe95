//! The BERT / RoBERTa / MPNet encoder: embeddings, self-attention, feed-forward,
//! post-layer-norm.
//! ref: transformers/models/bert/modeling_bert.py (BertEmbeddings, BertLayer),
//! models/roberta/modeling_roberta.py (create_position_ids_from_input_ids) and
//! models/mpnet/modeling_mpnet.py (MPNetEncoder.compute_position_bias,
//! relative_position_bucket).

use tch::{nn, Kind, Tensor};

use super::config::{Arch, Config};
use super::layers::{activate, dropout, Embedding, LayerNorm, Linear};
use crate::Result;

#[derive(Debug)]
pub struct Embeddings {
    pub word_embeddings: Embedding,
    position_embeddings: Embedding,
    /// None for MPNet, which has no segments.
    token_type_embeddings: Option<Embedding>,
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
            token_type_embeddings: match arch.has_token_types() {
                true => Some(Embedding::new(&p / "token_type_embeddings", c.type_vocab_size, c.hidden_size, std)?),
                false => None,
            },
            layer_norm: LayerNorm::new(&p / "LayerNorm", c.hidden_size, c.layer_norm_eps)?,
            arch,
            pad_id: c.pad_token_id,
            dropout: c.hidden_dropout_prob,
        })
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, train: bool) -> Result<Tensor> {
        let (b, s) = input_ids.size2()?;
        let positions = if self.arch.offset_positions() {
            // RoBERTa and MPNet count positions from pad_id + 1 over non-pad tokens; pads get pad_id.
            let not_pad = input_ids.f_ne(self.pad_id)?.f_to_kind(Kind::Int64)?;
            not_pad.f_cumsum(1, Kind::Int64)?.f_mul(&not_pad)?.f_add_scalar(self.pad_id)?
        } else {
            Tensor::f_arange(s, (Kind::Int64, input_ids.device()))?.f_expand([b, s], false)?
        };
        let mut x = self.word_embeddings.forward(input_ids)?.f_add(&self.position_embeddings.forward(&positions)?)?;
        if let Some(types) = &self.token_type_embeddings {
            x = x.f_add(&types.forward(token_type_ids)?)?;
        }
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
    fn new(p: nn::Path, c: &Config, arch: Arch) -> Result<Self> {
        let (h, std) = (c.hidden_size, c.initializer_range);
        let n = AttentionNames::of(arch);
        let att = &p / "attention";
        // A var-store path takes one name per level.
        let at = |dotted: &str| dotted.split('.').fold(att.clone(), |q, part| &q / part);
        Ok(Layer {
            query: Linear::new(at(n.query), h, h, std)?,
            key: Linear::new(at(n.key), h, h, std)?,
            value: Linear::new(at(n.value), h, h, std)?,
            attn_out: Linear::new(at(n.output), h, h, std)?,
            attn_norm: LayerNorm::new(at(n.norm), h, c.layer_norm_eps)?,
            intermediate: Linear::new(&p / "intermediate" / "dense", h, c.intermediate_size, std)?,
            output: Linear::new(&p / "output" / "dense", c.intermediate_size, h, std)?,
            out_norm: LayerNorm::new(&p / "output" / "LayerNorm", h, c.layer_norm_eps)?,
            heads: c.num_attention_heads,
            cfg: c.clone(),
        })
    }

    /// `attn_mask`: bool [B, 1, 1, S], true where a key may be attended to, or a float
    /// bias added to the scores (broadcast to [B, heads, S, S]).
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

/// The attention weights' names under `attention.` (HF's BertAttention / MPNetAttention).
pub struct AttentionNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub output: &'static str,
    pub norm: &'static str,
}

impl AttentionNames {
    pub fn of(arch: Arch) -> Self {
        match arch {
            Arch::Bert | Arch::Roberta => AttentionNames {
                query: "self.query",
                key: "self.key",
                value: "self.value",
                output: "output.dense",
                norm: "output.LayerNorm",
            },
            Arch::Mpnet => AttentionNames { query: "attn.q", key: "attn.k", value: "attn.v", output: "attn.o", norm: "LayerNorm" },
        }
    }
}

/// MPNet's relative-position bucket of every (query, key) pair of a length-`s` sequence
/// (int64 [s, s], on the CPU): HF's `relative_position_bucket` (bidirectional,
/// max_distance 128) computed with the same libtorch operations, so the float logarithm
/// rounds as it does in transformers.
pub fn relative_buckets(s: i64, num_buckets: i64) -> Result<Tensor> {
    let opts = (Kind::Int64, tch::Device::Cpu);
    let pos = Tensor::f_arange(s, opts)?;
    // relative = key - query; HF's n = -relative.
    let n = pos.f_unsqueeze(1)?.f_sub(&pos.f_unsqueeze(0)?)?;
    let half = num_buckets / 2;
    let ret = n.f_lt(0)?.f_to_kind(Kind::Int64)?.f_mul_scalar(half)?;
    let n = n.f_abs()?;
    let max_exact = half / 2;
    let large = n
        .f_to_kind(Kind::Float)?
        .f_div_scalar(max_exact as f64)?
        .f_log()?
        .f_div_scalar((128.0 / max_exact as f64).ln())?
        .f_mul_scalar((half - max_exact) as f64)?
        .f_to_kind(Kind::Int64)?
        .f_add_scalar(max_exact)?
        .f_clamp_max(half - 1)?;
    Ok(ret.f_add(&n.f_where_self(&n.f_lt(max_exact)?, &large)?)?)
}

/// Embeddings plus the transformer layers; weight names under `bert.` / `roberta.` /
/// `mpnet.`.
#[derive(Debug)]
pub struct Encoder {
    pub embeddings: Embeddings,
    layers: Vec<Layer>,
    /// MPNet's relative-position bias table [buckets, heads], shared by every layer.
    relative_bias: Option<Embedding>,
    num_buckets: i64,
}

impl Encoder {
    pub fn new(p: nn::Path, c: &Config, arch: Arch) -> Result<Self> {
        let embeddings = Embeddings::new(&p / "embeddings", c, arch)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::new(&p / "encoder" / "layer" / i, c, arch))
            .collect::<Result<Vec<_>>>()?;
        let relative_bias = match arch {
            Arch::Mpnet => Some(Embedding::new(
                &p / "encoder" / "relative_attention_bias",
                c.relative_attention_num_buckets,
                c.num_attention_heads,
                c.initializer_range,
            )?),
            _ => None,
        };
        Ok(Encoder { embeddings, layers, relative_bias, num_buckets: c.relative_attention_num_buckets })
    }

    /// Last hidden states [B, S, H]. `attention_mask` is 1 for tokens, 0 for padding.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, token_type_ids: &Tensor, train: bool) -> Result<Tensor> {
        let (b, s) = input_ids.size2()?;
        let mut keep = attention_mask.f_ne(0)?.f_view([b, 1, 1, s])?;
        if let Some(table) = &self.relative_bias {
            // [1, heads, S, S] position bias, -inf at padded keys.
            let buckets = relative_buckets(s, self.num_buckets)?.f_to_device(input_ids.device())?;
            let bias = table.forward(&buckets)?.f_permute([2, 0, 1])?.f_unsqueeze(0)?.f_expand([b, -1, s, s], false)?;
            keep = bias.f_masked_fill(&keep.f_logical_not()?, f64::NEG_INFINITY)?;
        }
        let mut x = self.embeddings.forward(input_ids, token_type_ids, train)?;
        for layer in &self.layers {
            x = layer.forward(&x, &keep, train)?;
        }
        Ok(x)
    }
}
