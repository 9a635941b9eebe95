//! The ONNX graph of a trained model: BERT / RoBERTa / MPNet encoder and the prompt head, which
//! computes only what prediction needs (the masked-LM transform at the mask position and
//! the label words' rows of the tied decoder; never the full vocabulary).
//! Mirrors src/model/encoder.rs and src/model/head.rs operation for operation.

use std::collections::HashMap;

use tch::Tensor;

use super::graph::{Attr, Dim, Graph};
use super::{RegressionRange, WeightType, OUTPUT_EMBEDDING, OUTPUT_LOGITS, OUTPUT_PROBS, OUTPUT_SCORE};
use super::proto::dtype;
use crate::checkpoint::{LinearHead, WordAnchors};
use crate::model::{relative_buckets, Activation, Arch, AttentionNames, MaskedLm};
use crate::{Error, Result};

/// The largest int8 weight an `--int8` export stores: 7 bits. ONNX Runtime multiplies the
/// uint8 activations by the int8 weights on x86 CPUs without VNNI (AVX2, AVX-512F) with
/// an instruction that adds two products in 16 bits, saturating: 2 x 255 x 127 overflows
/// it, 2 x 255 x 63 does not. With full-range weights, on an AVX2 CPU, the export's int8
/// pattern was off the exact integer result by 3.55 on outputs of scale 7.9, and the tiny
/// BERT's int8 probabilities moved by 6.0e-3 against 5.1e-4 (docs/serve-bench.md).
pub const INT8_WEIGHT_MAX: f64 = 63.0;


struct Ctx<'a> {
    g: Graph,
    vars: HashMap<String, Tensor>,
    prefix: &'a str,
    eps: f64,
    act: Activation,
    names: AttentionNames,
}

impl Ctx<'_> {
    fn var(&self, name: &str) -> Result<&Tensor> {
        self.vars.get(name).ok_or_else(|| Error::InvalidArgument(format!("the model has no weight {name}")))
    }

    /// A weight by its HF name, stored under that name.
    fn weight(&mut self, name: &str) -> Result<String> {
        let t = self.var(name)?.shallow_clone();
        self.g.weight(name, &t)
    }

    /// `x W^T + b` for the HF linear layer `name` (weight stored transposed for MatMul).
    fn linear(&mut self, x: &str, name: &str) -> Result<String> {
        let w = self.var(&format!("{name}.weight"))?.f_tr()?.f_contiguous()?;
        let b = self.weight(&format!("{name}.bias"))?;
        let y = if self.g.weights() == WeightType::Int8 {
            self.int8_matmul(x, name, &w)?
        } else {
            let w = self.g.weight(&format!("{name}.weight_t"), &w)?;
            self.g.node("MatMul", &[x, &w], &[], "matmul")
        };
        Ok(self.g.node("Add", &[&y, &b], &[], "linear"))
    }

    /// Dynamic int8 quantisation of `x @ w` (w: [in, out]): weights int8, symmetric, one
    /// scale per output column; activations quantised to uint8 per call
    /// (DynamicQuantizeLinear), multiplied in integers (MatMulInteger) and rescaled. The
    /// standard-op form of ONNX Runtime's dynamic quantisation, which it fuses at load.
    /// The weights take 7 bits ([`INT8_WEIGHT_MAX`]), as ONNX Runtime's `reduce_range`.
    fn int8_matmul(&mut self, x: &str, name: &str, w: &Tensor) -> Result<String> {
        let scale = w.f_abs()?.f_amax([0i64].as_slice(), false)?.f_clamp_min(1e-12)?.f_div_scalar(INT8_WEIGHT_MAX)?;
        let q = w.f_div(&scale)?.f_round()?.f_clamp(-INT8_WEIGHT_MAX, INT8_WEIGHT_MAX)?.f_to_kind(tch::Kind::Int8)?;
        let wq = self.g.int8(&format!("{name}.weight_t.int8"), &q)?;
        let ws = self.g.weight(&format!("{name}.weight_t.scale"), &scale)?;
        let xq = self.g.fresh_name("xq");
        let xs = self.g.fresh_name("x_scale");
        let xz = self.g.fresh_name("x_zero");
        self.g.node_into("DynamicQuantizeLinear", &[x], &[], &[&xq, &xs, &xz]);
        let acc = self.g.node("MatMulInteger", &[&xq, &wq, &xz], &[], "matmul_int");
        let acc = self.g.node("Cast", &[&acc], &[("to", Attr::Int(dtype::FLOAT as i64))], "matmul_int");
        let s = self.g.node("Mul", &[&xs, &ws], &[], "rescale");
        Ok(self.g.node("Mul", &[&acc, &s], &[], "matmul"))
    }

    fn layer_norm(&mut self, x: &str, name: &str, eps: f64) -> Result<String> {
        let w = self.weight(&format!("{name}.weight"))?;
        let b = self.weight(&format!("{name}.bias"))?;
        Ok(self.g.node("LayerNormalization", &[x, &w, &b], &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps as f32))], "norm"))
    }

    fn activation(&mut self, x: &str, act: Activation) -> String {
        let g = &mut self.g;
        match act {
            // 0.5 x (1 + erf(x / sqrt 2)): the pattern ONNX Runtime fuses into Gelu.
            Activation::Gelu => {
                let sqrt2 = g.const_f32("sqrt2", &[std::f32::consts::SQRT_2], &[]);
                let one = g.const_f32("one", &[1.0], &[]);
                let half = g.const_f32("half", &[0.5], &[]);
                let d = g.node("Div", &[x, &sqrt2], &[], "gelu");
                let e = g.node("Erf", &[&d], &[], "gelu");
                let a = g.node("Add", &[&e, &one], &[], "gelu");
                let m = g.node("Mul", &[x, &a], &[], "gelu");
                g.node("Mul", &[&m, &half], &[], "gelu")
            }
            // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): fused into FastGelu.
            Activation::GeluNew => {
                let three = g.const_f32("three", &[3.0], &[]);
                let c = g.const_f32("c", &[0.044715], &[]);
                let k = g.const_f32("k", &[(2.0f32 / std::f32::consts::PI).sqrt()], &[]);
                let one = g.const_f32("one", &[1.0], &[]);
                let half = g.const_f32("half", &[0.5], &[]);
                let p = g.node("Pow", &[x, &three], &[], "gelu");
                let pc = g.node("Mul", &[&p, &c], &[], "gelu");
                let s = g.node("Add", &[x, &pc], &[], "gelu");
                let sk = g.node("Mul", &[&s, &k], &[], "gelu");
                let t = g.node("Tanh", &[&sk], &[], "gelu");
                let a = g.node("Add", &[&t, &one], &[], "gelu");
                let m = g.node("Mul", &[x, &a], &[], "gelu");
                g.node("Mul", &[&m, &half], &[], "gelu")
            }
            Activation::Relu => g.node("Relu", &[x], &[], "relu"),
            Activation::Silu => {
                let s = g.node("Sigmoid", &[x], &[], "silu");
                g.node("Mul", &[x, &s], &[], "silu")
            }
        }
    }
}

struct Shapes {
    split: String,
    merge: String,
    /// The hidden size, for the merge shape of a one-row layer (made there: an
    /// initializer no node reads makes ONNX Runtime warn at every open).
    hidden: i64,
    scale: String,
}

impl Ctx<'_> {
    /// Encoder layer `l` over `x` [B, S, H]. With `rows` [B, H] (each row's hidden state
    /// at the mask), queries come from those rows only and the result is [B, H].
    fn layer(&mut self, x: &str, bias: &str, l: i64, sh: &Shapes, rows: Option<&str>) -> Result<String> {
        let p = format!("{}.encoder.layer.{l}", self.prefix);
        let att = format!("{p}.attention");
        let eps = self.eps;
        let query_in = rows.unwrap_or(x);
        let (nq, nk, nv, no, nn) = (self.names.query, self.names.key, self.names.value, self.names.output, self.names.norm);
        let q = self.linear(query_in, &format!("{att}.{nq}"))?;
        let k = self.linear(x, &format!("{att}.{nk}"))?;
        let v = self.linear(x, &format!("{att}.{nv}"))?;
        let heads = |cx: &mut Ctx, t: &str, perm: &[i64]| {
            let r = cx.g.node("Reshape", &[t, &sh.split], &[], "split_heads");
            cx.g.node("Transpose", &[&r], &[("perm", Attr::Ints(perm.to_vec()))], "split_heads")
        };
        // A [B, H] query row reshapes to [B, 1, heads, dh] like a length-1 sequence.
        let q = heads(self, &q, &[0, 2, 1, 3]);
        let k = heads(self, &k, &[0, 2, 3, 1]);
        let v = heads(self, &v, &[0, 2, 1, 3]);
        let scores = self.g.node("MatMul", &[&q, &k], &[], "scores");
        let scores = self.g.node("Mul", &[&scores, &sh.scale], &[], "scores");
        let scores = self.g.node("Add", &[&scores, bias], &[], "scores");
        let probs = self.g.node("Softmax", &[&scores], &[("axis", Attr::Int(-1))], "attn");
        let ctx = self.g.node("MatMul", &[&probs, &v], &[], "context");
        let ctx = self.g.node("Transpose", &[&ctx], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))], "context");
        let merge = match rows {
            None => sh.merge.clone(),
            Some(_) => self.g.const_i64("merge_row", &[0, sh.hidden], &[2]),
        };
        let ctx = self.g.node("Reshape", &[&ctx, &merge], &[], "context");
        let a = self.linear(&ctx, &format!("{att}.{no}"))?;
        let a = self.g.node("Add", &[&a, query_in], &[], "residual");
        let a = self.layer_norm(&a, &format!("{att}.{nn}"), eps)?;
        let f = self.linear(&a, &format!("{p}.intermediate.dense"))?;
        let f = self.activation(&f, self.act);
        let f = self.linear(&f, &format!("{p}.output.dense"))?;
        let f = self.g.node("Add", &[&f, &a], &[], "residual");
        self.layer_norm(&f, &format!("{p}.output.LayerNorm"), eps)
    }
}

/// The part both heads share: inputs, embeddings and the attention bias.
struct Stem<'a> {
    cx: Ctx<'a>,
    /// Token ids [B, S] (int64).
    ids: String,
    /// The attention mask as float [B, S].
    mask_f: String,
    /// Embeddings after their LayerNorm [B, S, H].
    x: String,
    /// Additive attention bias [B, 1, 1, S].
    bias: String,
    shapes: Shapes,
}

/// Graph inputs (`input_ids`, `attention_mask` and, for BERT, `token_type_ids`: int64
/// [batch, sequence]), the embeddings and the attention bias.
fn stem(model: &MaskedLm, g: Graph) -> Result<Stem<'static>> {
    let c = &model.config;
    let arch = model.arch;
    let prefix = arch.prefix();
    // The graph is built from CPU copies, whatever device the model trained on (on the
    // CPU itself the copy is the same tensor).
    let vars = tch::no_grad(|| model.vs.variables().into_iter().map(|(k, v)| Ok((k, v.f_to_device(tch::Device::Cpu)?))).collect::<Result<_>>())?;
    let mut cx = Ctx { g, vars, prefix, eps: c.layer_norm_eps, act: c.hidden_act, names: AttentionNames::of(arch) };
    let batch_by_sequence = || [Dim::Named("batch"), Dim::Named("sequence")];
    let ids = cx.g.input("input_ids", dtype::INT64, &batch_by_sequence());
    let mask = cx.g.input("attention_mask", dtype::INT64, &batch_by_sequence());
    let types = arch.reads_token_types().then(|| cx.g.input("token_type_ids", dtype::INT64, &batch_by_sequence()));
    let emb = |n: &str| format!("{prefix}.embeddings.{n}");

    // ---- embeddings
    let word = cx.weight(&emb("word_embeddings.weight"))?;
    let x = cx.g.node("Gather", &[&word, &ids], &[], "word_emb");
    let pos_table = cx.weight(&emb("position_embeddings.weight"))?;
    let x = match arch {
        Arch::Bert => {
            let type_table = cx.var(&emb("token_type_embeddings.weight"))?.shallow_clone();
            // Positions 0..S: the first S rows of the table.
            let shape = cx.g.node("Shape", &[&ids], &[], "shape");
            let (one, two, zero) = (cx.g.const_i64("i1", &[1], &[1]), cx.g.const_i64("i2", &[2], &[1]), cx.g.const_i64("i0", &[0], &[1]));
            let seq = cx.g.node("Slice", &[&shape, &one, &two], &[], "seq_len");
            let pos = cx.g.node("Slice", &[&pos_table, &zero, &seq, &zero], &[], "pos_emb");
            let x = cx.g.node("Add", &[&x, &pos], &[], "emb");
            let table = cx.g.weight(&emb("token_type_embeddings.weight"), &type_table)?;
            // Segments past the table's last row read that row, as in training
            // (`MaskedLm::batch`): a template may hold more separators than the model has
            // token types.
            let last = cx.g.const_i64("last_type", &[c.type_vocab_size - 1], &[]);
            let capped = cx.g.node("Min", &[types.as_deref().expect("bert has token types"), &last], &[], "types");
            let t = cx.g.node("Gather", &[&table, &capped], &[], "type_emb");
            cx.g.node("Add", &[&x, &t], &[], "emb")
        }
        Arch::Roberta | Arch::Mpnet => {
            // HF's create_position_ids_from_input_ids: pad + cumulative count of non-pads.
            let pad = cx.g.const_i64("pad", &[c.pad_token_id], &[]);
            let is_pad = cx.g.node("Equal", &[&ids, &pad], &[], "is_pad");
            let not_pad = cx.g.node("Not", &[&is_pad], &[], "not_pad");
            let n = cx.g.node("Cast", &[&not_pad], &[("to", Attr::Int(dtype::INT64 as i64))], "not_pad");
            let axis = cx.g.const_i64("axis1", &[1], &[]);
            let cum = cx.g.node("CumSum", &[&n, &axis], &[], "cum");
            let cum = cx.g.node("Mul", &[&cum, &n], &[], "cum");
            let positions = cx.g.node("Add", &[&cum, &pad], &[], "positions");
            let p = cx.g.node("Gather", &[&pos_table, &positions], &[], "pos_emb");
            let x = cx.g.node("Add", &[&x, &p], &[], "emb");
            if arch == Arch::Mpnet {
                x
            } else {
                // RoBERTa has one token type: its row is a constant.
                let row = cx.var(&emb("token_type_embeddings.weight"))?.f_select(0, 0)?;
                let t = cx.g.weight(&emb("token_type_embeddings.row0"), &row)?;
                cx.g.node("Add", &[&x, &t], &[], "emb")
            }
        }
    };
    let x = cx.layer_norm(&x, &emb("LayerNorm"), c.layer_norm_eps)?;

    // ---- additive attention bias [B, 1, 1, S]: 0 for tokens, the float minimum for padding
    let m = cx.g.node("Cast", &[&mask], &[("to", Attr::Int(dtype::FLOAT as i64))], "mask_f");
    let one = cx.g.const_f32("one", &[1.0], &[]);
    let inv = cx.g.node("Sub", &[&one, &m], &[], "mask_inv");
    let big = cx.g.const_f32("fmin", &[f32::MIN], &[]);
    let bias = cx.g.node("Mul", &[&inv, &big], &[], "mask_bias");
    let axes = cx.g.const_i64("axes12", &[1, 2], &[2]);
    let mut bias = cx.g.node("Unsqueeze", &[&bias, &axes], &[], "mask_bias");
    if arch == Arch::Mpnet {
        // ---- MPNet's relative-position bias [1, heads, S, S] joins it: the bucket of every
        // (query, key) pair up to the position limit is a constant (computed as the model
        // computes it), sliced to the sequence and looked up in the learned table.
        let limit = c.max_input_len();
        let buckets = relative_buckets(limit, c.relative_attention_num_buckets)?.f_to_kind(tch::Kind::Int)?;
        let buckets = cx.g.int32("mpnet.relative_buckets", &buckets)?;
        let shape = cx.g.node("Shape", &[&ids], &[], "shape");
        let (one, two, zero) = (cx.g.const_i64("i1", &[1], &[1]), cx.g.const_i64("i2", &[2], &[1]), cx.g.const_i64("i0", &[0], &[1]));
        let seq = cx.g.node("Slice", &[&shape, &one, &two], &[], "seq_len");
        let axes01 = cx.g.const_i64("axes01", &[0, 1], &[2]);
        let zeros = cx.g.const_i64("i00", &[0, 0], &[2]);
        let ends = cx.g.node("Concat", &[&seq, &seq], &[("axis", Attr::Int(0))], "seq_seq");
        let b = cx.g.node("Slice", &[&buckets, &zeros, &ends, &axes01], &[], "rel_buckets");
        let table = cx.weight(&format!("{prefix}.encoder.relative_attention_bias.weight"))?;
        let rel = cx.g.node("Gather", &[&table, &b], &[], "rel_bias");
        let rel = cx.g.node("Transpose", &[&rel], &[("perm", Attr::Ints(vec![2, 0, 1]))], "rel_bias");
        let rel = cx.g.node("Unsqueeze", &[&rel, &zero], &[], "rel_bias");
        bias = cx.g.node("Add", &[&bias, &rel], &[], "attn_bias");
    }

    let shapes = Shapes {
        split: cx.g.const_i64("heads_shape", &[0, -1, c.num_attention_heads, c.hidden_size / c.num_attention_heads], &[4]),
        merge: cx.g.const_i64("merge_shape", &[0, -1, c.hidden_size], &[3]),
        hidden: c.hidden_size,
        scale: cx.g.const_f32("scale", &[1.0 / ((c.hidden_size / c.num_attention_heads) as f32).sqrt()], &[]),
    };
    Ok(Stem { cx, ids, mask_f: m, x, bias, shapes })
}

/// Builds the graph of `model` with a prompt head over the scored tokens `label_ids` (one
/// per class, or averaged into classes by `class_weights` [T][L]: see
/// `Verbalizer::class_weights`): the inputs of [`stem`]; outputs `probs` and
/// `label_logits` (float [batch, labels]). The mask position of each row is where
/// `input_ids` holds `mask_id`.
pub fn build(
    model: &MaskedLm,
    label_ids: &[u32],
    class_weights: Option<&[Vec<f32>]>,
    mask_id: u32,
    regression: Option<RegressionRange>,
    temperature: Option<f32>,
    g: Graph,
) -> Result<Graph> {
    let c = &model.config;
    let arch = model.arch;
    let emb = |n: &str| format!("{}.embeddings.{n}", arch.prefix());
    let Stem { mut cx, ids, mut x, bias, shapes, .. } = stem(model, g)?;

    // ---- mask position of each row [B, 1]
    let mask_tok = cx.g.const_i64("mask_id", &[mask_id as i64], &[]);
    let is_mask = cx.g.node("Equal", &[&ids, &mask_tok], &[], "is_mask");
    let is_mask = cx.g.node("Cast", &[&is_mask], &[("to", Attr::Int(dtype::FLOAT as i64))], "is_mask");
    let pos = cx.g.node("ArgMax", &[&is_mask], &[("axis", Attr::Int(1)), ("keepdims", Attr::Int(1))], "mask_pos");

    // ---- layers; the last one computes the mask row only (the head reads nothing else),
    // except for MPNet, whose position bias differs by query row: there every layer runs
    // over the whole sequence and the mask row is read after
    let full = if arch == Arch::Mpnet { c.num_hidden_layers } else { c.num_hidden_layers - 1 };
    for l in 0..full {
        x = cx.layer(&x, &bias, l, &shapes, None)?;
    }
    let at_mask = cx.g.node("GatherND", &[&x, &pos], &[("batch_dims", Attr::Int(1))], "at_mask");
    let at_mask = match full < c.num_hidden_layers {
        true => cx.layer(&x, &bias, c.num_hidden_layers - 1, &shapes, Some(&at_mask))?,
        false => at_mask,
    };

    // ---- prompt head on the mask row [B, H]
    let (dense, norm, bias_name, act) = match arch {
        Arch::Bert => ("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions.bias", c.hidden_act),
        Arch::Roberta | Arch::Mpnet => ("lm_head.dense", "lm_head.layer_norm", "lm_head.bias", Activation::Gelu),
    };
    let t = cx.linear(&at_mask, dense)?;
    let t = cx.activation(&t, act);
    let t = cx.layer_norm(&t, norm, c.layer_norm_eps)?;
    // The label words' rows of the tied decoder and of its bias.
    let idx = Tensor::from_slice(&label_ids.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let rows = cx.var(&emb("word_embeddings.weight"))?.f_index_select(0, &idx)?.f_tr()?.f_contiguous()?;
    let rows = cx.g.weight("label_words.decoder_t", &rows)?;
    let lbias = cx.var(bias_name)?.f_index_select(0, &idx)?;
    let lbias = cx.g.weight("label_words.bias", &lbias)?;
    let logits = cx.g.node("MatMul", &[&t, &rows], &[], "label_matmul");
    let labels = match class_weights {
        // Several words or multi-token words: token logits [B, T] x W [T, L].
        Some(w) => {
            let flat: Vec<f32> = w.iter().flatten().copied().collect();
            let l = w.first().map_or(0, Vec::len);
            let wt = cx.g.const_f32("class_weights", &flat, &[w.len() as i64, l as i64]);
            let token_logits = cx.g.node("Add", &[&logits, &lbias], &[], "token_logits");
            (cx.g.node("MatMul", &[&token_logits, &wt], &[], "class_logits"), l)
        }
        None => (cx.g.node("Add", &[&logits, &lbias], &[], "class_logits"), label_ids.len()),
    };
    class_outputs(&mut cx.g, &labels.0, labels.1, temperature);
    if let Some(r) = regression {
        // score = low + (high - low) * p(upper pole), shaped [batch, 1].
        let upper = cx.g.const_i64("upper_end", &[2], &[1]);
        let start = cx.g.const_i64("upper_start", &[1], &[1]);
        let axis = cx.g.const_i64("axis1", &[1], &[1]);
        let p = cx.g.node("Slice", &[OUTPUT_PROBS, &start, &upper, &axis], &[], "p_upper");
        let span = cx.g.const_f32("span", &[r.high - r.low], &[]);
        let low = cx.g.const_f32("low", &[r.low], &[]);
        let scaled = cx.g.node("Mul", &[&p, &span], &[], "score");
        cx.g.node_into("Add", &[&scaled, &low], &[], &[OUTPUT_SCORE]);
        cx.g.output(OUTPUT_SCORE, dtype::FLOAT, &[Dim::Named("batch"), Dim::Fixed(1)]);
    }
    Ok(cx.g)
}


/// The node `label_logits`: `logits` divided by `temperature` when calibrated.
fn label_logits(g: &mut Graph, logits: &str, temperature: Option<f32>) {
    match temperature {
        Some(t) => {
            let t = g.const_f32("temperature", &[t], &[]);
            g.node_into("Div", &[logits, &t], &[], &[OUTPUT_LOGITS]);
        }
        None => g.node_into("Identity", &[logits], &[], &[OUTPUT_LOGITS]),
    }
}

/// `label_logits` = `logits` / `temperature` (when calibrated), `probs` = its softmax, and
/// both graph outputs [batch, labels].
fn class_outputs(g: &mut Graph, logits: &str, labels: usize, temperature: Option<f32>) {
    label_logits(g, logits, temperature);
    g.node_into("Softmax", &[OUTPUT_LOGITS], &[("axis", Attr::Int(-1))], &[OUTPUT_PROBS]);
    let n = labels as i64;
    g.output(OUTPUT_PROBS, dtype::FLOAT, &[Dim::Named("batch"), Dim::Fixed(n)]);
    g.output(OUTPUT_LOGITS, dtype::FLOAT, &[Dim::Named("batch"), Dim::Fixed(n)]);
}

/// Builds the graph of a sentence-embedding model: every layer over the whole sequence,
/// the mean of the last hidden states over the real tokens, L2-normalised, and the linear
/// classifier `head` on it (logits divided by `temperature` when calibrated). Inputs of
/// [`stem`]; outputs as [`build`]'s, or with `multi_label` (the number of labels, `head`
/// a yes/no pair of rows per label) [`multi_label_outputs`]. Mirrors
/// src/train/embed.rs (`embed_batch`, `LinearHead::logits`).
pub fn build_embedding(model: &MaskedLm, head: &LinearHead, multi_label: Option<usize>, temperature: Option<f32>, g: Graph) -> Result<Graph> {
    let Pooled { mut g, embedding: mut e, hidden, mask_f } = pooled_embedding(model, g)?;
    if let Some(w) = &head.word_anchors {
        let f = word_anchor_graph(&mut g, &hidden, &mask_f, w)?;
        e = g.node("Concat", &[&e, &f], &[("axis", Attr::Int(1))], "classifier_input");
    }
    // ---- classifier: e W^T + b
    let (k, d) = (head.weight.len() as i64, head.features() as i64);
    let w: Vec<f32> = head.weight.iter().flatten().copied().collect();
    let w = Tensor::from_slice(&w).f_reshape([k, d])?.f_tr()?.f_contiguous()?;
    let w = g.weight("classifier.weight_t", &w)?;
    let b = g.weight("classifier.bias", &Tensor::from_slice(&head.bias))?;
    let logits = g.node("MatMul", &[&e, &w], &[], "classifier");
    let logits = g.node("Add", &[&logits, &b], &[], "class_logits");
    match multi_label {
        Some(labels) => multi_label_outputs(&mut g, &logits, labels, temperature),
        None => class_outputs(&mut g, &logits, head.weight.len(), temperature),
    }
    Ok(g)
}

/// The outputs of a yes/no head per label: `label_logits` = `logits` [batch, 2 labels]
/// (pairs no, yes side by side; divided by the temperature when calibrated) and `probs`
/// [batch, labels], each label's P(yes), the softmax of its pair.
fn multi_label_outputs(g: &mut Graph, logits: &str, labels: usize, temperature: Option<f32>) {
    label_logits(g, logits, temperature);
    let n = labels as i64;
    let shape = g.const_i64("pair_shape", &[-1, n, 2], &[3]);
    let pairs = g.node("Reshape", &[OUTPUT_LOGITS, &shape], &[], "label_pairs");
    let pair_probs = g.node("Softmax", &[&pairs], &[("axis", Attr::Int(-1))], "pair_probs");
    let yes = g.const_i64("yes", &[crate::prompt::YES as i64], &[]);
    g.node_into("Gather", &[&pair_probs, &yes], &[("axis", Attr::Int(2))], &[OUTPUT_PROBS]);
    g.output(OUTPUT_PROBS, dtype::FLOAT, &[Dim::Named("batch"), Dim::Fixed(n)]);
    g.output(OUTPUT_LOGITS, dtype::FLOAT, &[Dim::Named("batch"), Dim::Fixed(2 * n)]);
}

/// Builds the graph of a bare sentence encoder (the demonstration filter's): the inputs of
/// [`stem`], output `embedding`, the normalised mean-pooled states of
/// [`build_embedding`].
pub fn build_sentence_encoder(model: &MaskedLm, g: Graph) -> Result<Graph> {
    let Pooled { mut g, embedding: e, .. } = pooled_embedding(model, g)?;
    g.node_into("Identity", &[&e], &[], &[OUTPUT_EMBEDDING]);
    g.output(OUTPUT_EMBEDDING, dtype::FLOAT, &[Dim::Named("batch"), Dim::Fixed(model.config.hidden_size)]);
    Ok(g)
}

/// The graph after [`pooled_embedding`] and the names of what it computed.
struct Pooled {
    g: Graph,
    /// [B, H], normalised.
    embedding: String,
    /// The last hidden states [B, S, H].
    hidden: String,
    /// The attention mask as floats [B, S].
    mask_f: String,
}

/// The word anchors' features, scaled [B, 4C], from the last hidden states `x` and the
/// float attention mask: src/train/embed.rs `word_anchor_features` op for op (the
/// input's own tokens; cosines with the class vectors; max, top-3 mean, margin max and
/// min over the tokens).
fn word_anchor_graph(g: &mut Graph, x: &str, mask_f: &str, w: &WordAnchors) -> Result<String> {
    use crate::train::{WORD_ANCHOR_MASKED, WORD_ANCHOR_TOP};
    let (k, h) = (w.vectors.len() as i64, w.vectors.first().map_or(0, Vec::len) as i64);
    let flat: Vec<f32> = w.vectors.iter().flatten().copied().collect();
    let anchors_t = Tensor::from_slice(&flat).f_reshape([k, h])?.f_tr()?.f_contiguous()?;
    let anchors_t = g.weight("word_anchors.vectors_t", &anchors_t)?;
    let (i0, i1, i2, end) = (g.const_i64("wa_i0", &[0], &[1]), g.const_i64("wa_i1", &[1], &[1]), g.const_i64("wa_i2", &[2], &[1]), g.const_i64("wa_end", &[i64::MAX], &[1]));
    let (zero_f, one_f) = (g.const_f32("wa_zero", &[0.0], &[]), g.const_f32("wa_one", &[1.0], &[]));
    // ---- the input's own tokens [B, S]: token t when t >= 1 and token t + 1 is real
    let first = g.node("Slice", &[mask_f, &i0, &i1, &i1], &[], "wa_first");
    let zero = g.node("Mul", &[&first, &zero_f], &[], "wa_zero_col");
    let rest = g.node("Slice", &[mask_f, &i2, &end, &i1], &[], "wa_rest");
    let inner = g.node("Concat", &[&zero, &rest, &zero], &[("axis", Attr::Int(1))], "wa_inner");
    let has = g.node("ReduceMax", &[&inner], &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))], "wa_has");
    let none = g.node("Sub", &[&one_f, &has], &[], "wa_none");
    let all = g.node("Mul", &[mask_f, &none], &[], "wa_all");
    let inner = g.node("Add", &[&inner, &all], &[], "wa_inner");
    // ---- cosines with the class vectors [B, S, C] and margins over their mean
    let norm = g.node("ReduceL2", &[x], &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))], "wa_norm");
    let eps = g.const_f32("wa_norm_min", &[1e-12], &[]);
    let norm = g.node("Max", &[&norm, &eps], &[], "wa_norm");
    let xn = g.node("Div", &[x, &norm], &[], "wa_unit");
    let sim = g.node("MatMul", &[&xn, &anchors_t], &[], "wa_sim");
    let mean = g.node("ReduceMean", &[&sim], &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))], "wa_mean");
    let margin = g.node("Sub", &[&sim, &mean], &[], "wa_margin");
    // ---- 0 on the input's tokens, -MASKED elsewhere [B, S, 1]
    let axis2 = g.const_i64("wa_axis2", &[2], &[1]);
    let inner3 = g.node("Unsqueeze", &[&inner, &axis2], &[], "wa_inner3");
    let off = g.node("Sub", &[&inner3, &one_f], &[], "wa_off");
    let big = g.const_f32("wa_masked", &[WORD_ANCHOR_MASKED as f32], &[]);
    let pen = g.node("Mul", &[&off, &big], &[], "wa_pen");
    let masked = g.node("Add", &[&sim, &pen], &[], "wa_masked_sim");
    let max_over_tokens = |g: &mut Graph, op: &str, t: &str, hint: &str| g.node(op, &[t], &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))], hint);
    let best = max_over_tokens(g, "ReduceMax", &masked, "wa_best");
    // ---- mean of the top k, the tokens padded with masked rows so that k fits
    let first_row = g.node("Slice", &[&masked, &i0, &i1, &i1], &[], "wa_first_row");
    let filler = g.node("Mul", &[&first_row, &zero_f], &[], "wa_filler");
    let filler = g.node("Sub", &[&filler, &big], &[], "wa_filler");
    let mut parts = vec![masked.clone()];
    parts.extend(std::iter::repeat_n(filler, (WORD_ANCHOR_TOP - 1) as usize));
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let padded = g.node("Concat", &parts, &[("axis", Attr::Int(1))], "wa_padded");
    let kk = g.const_i64("wa_top", &[WORD_ANCHOR_TOP], &[1]);
    let (top, top_idx) = (g.fresh_name("wa_top_values"), g.fresh_name("wa_top_indices"));
    g.node_into("TopK", &[&padded, &kk], &[("axis", Attr::Int(1)), ("largest", Attr::Int(1)), ("sorted", Attr::Int(1))], &[&top, &top_idx]);
    let half = g.const_f32("wa_valid_min", &[-(WORD_ANCHOR_MASKED as f32) / 2.0], &[]);
    let valid = g.node("Greater", &[&top, &half], &[], "wa_valid");
    let valid = g.node("Cast", &[&valid], &[("to", Attr::Int(dtype::FLOAT as i64))], "wa_valid");
    let kept = g.node("Mul", &[&top, &valid], &[], "wa_kept");
    let sum = g.node("ReduceSum", &[&kept, &i1], &[("keepdims", Attr::Int(0))], "wa_top_sum");
    let count = g.node("ReduceSum", &[&valid, &i1], &[("keepdims", Attr::Int(0))], "wa_top_count");
    let count = g.node("Max", &[&count, &one_f], &[], "wa_top_count");
    let top_mean = g.node("Div", &[&sum, &count], &[], "wa_top_mean");
    // ---- the margin's highest and lowest over the tokens
    let high = g.node("Add", &[&margin, &pen], &[], "wa_margin_hi");
    let high = max_over_tokens(g, "ReduceMax", &high, "wa_high");
    let low = g.node("Sub", &[&margin, &pen], &[], "wa_margin_lo");
    let low = max_over_tokens(g, "ReduceMin", &low, "wa_low");
    let feats = g.node("Concat", &[&best, &top_mean, &high, &low], &[("axis", Attr::Int(1))], "wa_features");
    let scale = g.const_f32("wa_scale", &[w.scale], &[]);
    Ok(g.node("Mul", &[&feats, &scale], &[], "wa_scaled"))
}

/// Every layer, then the masked mean over the sequence, L2-normalised.
fn pooled_embedding(model: &MaskedLm, g: Graph) -> Result<Pooled> {
    let c = &model.config;
    let Stem { mut cx, mask_f, mut x, bias, shapes, .. } = stem(model, g)?;
    for l in 0..c.num_hidden_layers {
        x = cx.layer(&x, &bias, l, &shapes, None)?;
    }
    // ---- masked mean over the sequence [B, H]
    let axis2 = cx.g.const_i64("axis2", &[2], &[1]);
    let m3 = cx.g.node("Unsqueeze", &[&mask_f, &axis2], &[], "mask3");
    let masked = cx.g.node("Mul", &[&x, &m3], &[], "masked");
    let axis1 = cx.g.const_i64("axis1", &[1], &[1]);
    let summed = cx.g.node("ReduceSum", &[&masked, &axis1], &[("keepdims", Attr::Int(0))], "pool_sum");
    let count = cx.g.node("ReduceSum", &[&m3, &axis1], &[("keepdims", Attr::Int(0))], "pool_count");
    let tiny = cx.g.const_f32("count_min", &[1e-9], &[]);
    let count = cx.g.node("Max", &[&count, &tiny], &[], "pool_count");
    let mean = cx.g.node("Div", &[&summed, &count], &[], "pool_mean");
    // ---- L2 normalisation
    let norm = cx.g.node("ReduceL2", &[&mean], &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))], "norm");
    let eps = cx.g.const_f32("norm_min", &[1e-12], &[]);
    let norm = cx.g.node("Max", &[&norm, &eps], &[], "norm");
    let e = cx.g.node("Div", &[&mean, &norm], &[], "embedding_norm");
    Ok(Pooled { g: cx.g, embedding: e, hidden: x, mask_f })
}
