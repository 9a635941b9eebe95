//! Batched inference for evaluation: label logits for many examples, sorted by length
//! to cut padding.

use tch::Kind;

use super::demos::Demos;
use super::finetune::{encode_all, Head, Method};
use crate::metrics::mean_rows;
use crate::model::MaskedLm;
use crate::prompt::{Encoded, Example, Prompt};
use crate::tokenize::Tokenizer;
use crate::{Error, Result};

/// What a long evaluation calls before each batch: an error (a cancel) stops it.
pub type Beat<'a> = &'a mut dyn FnMut() -> Result<()>;

/// Logits [n][labels] for pre-encoded inputs, in input order.
pub fn predict_logits(model: &MaskedLm, head: &Head, encoded: &[Encoded], pad_id: u32, batch_size: usize) -> Result<Vec<Vec<f32>>> {
    predict_logits_with(model, head, encoded, pad_id, batch_size, &mut || Ok(()))
}

/// [`predict_logits`], calling `beat` before each batch.
fn predict_logits_with(model: &MaskedLm, head: &Head, encoded: &[Encoded], pad_id: u32, batch_size: usize, beat: Beat) -> Result<Vec<Vec<f32>>> {
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| encoded[i].input_ids.len());
    let mut out = vec![Vec::new(); encoded.len()];
    tch::no_grad(|| -> Result<()> {
        for chunk in order.chunks(batch_size.max(1)) {
            beat()?;
            let items: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            let batch = model.batch(&items, pad_id)?;
            let logits = head.logits(model, &batch, false)?.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)?;
            let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&logits)?;
            for (&i, row) in chunk.iter().zip(rows) {
                out[i] = row;
            }
        }
        Ok(())
    })?;
    Ok(out)
}


/// Label logits [n][labels] for examples read as `method` reads them. With
/// demonstrations (prompt method only), each example is rendered once per set (its own
/// sets when they are similarity-filtered) and the logits averaged over the sets, as
/// LM-BFF does at inference.
#[allow(clippy::too_many_arguments)]
pub fn predict_examples(model: &MaskedLm, tok: &Tokenizer, prompt: &Prompt, method: Method, head: &Head, examples: &[Example], demos: &Demos, batch_size: usize) -> Result<Vec<Vec<f32>>> {
    predict_examples_with(model, tok, prompt, method, head, examples, demos, batch_size, &mut || Ok(()))
}

/// [`predict_examples`], calling `beat` before each batch (a training run's dev
/// evaluation asks there whether to go on).
#[allow(clippy::too_many_arguments)]
pub fn predict_examples_with(
    model: &MaskedLm,
    tok: &Tokenizer,
    prompt: &Prompt,
    method: Method,
    head: &Head,
    examples: &[Example],
    demos: &Demos,
    batch_size: usize,
    beat: Beat,
) -> Result<Vec<Vec<f32>>> {
    let pad = tok.special().pad;
    match method {
        Method::Prompt => prompt_logits(tok, prompt, examples, demos, |enc| predict_logits_with(model, head, enc, pad, batch_size, &mut *beat)),
        Method::Cls if demos.sets_per_input() == 0 => predict_logits_with(model, head, &encode_all(tok, prompt, method, examples)?, pad, batch_size, beat),
        Method::Cls => Err(Error::InvalidArgument(format!("demonstrations need the prompt method, not {}", method.name()))),
    }
}

/// Label logits [n][labels] of `examples` read through `prompt` with `demos`, each batch
/// of renderings scored by `score` (libtorch here, the exported graph in the harness):
/// one rendering per input without demonstrations, else one per set (each input's own
/// when filtered), the logits averaged over the sets.
pub fn prompt_logits(
    tok: &Tokenizer,
    prompt: &Prompt,
    examples: &[Example],
    demos: &Demos,
    mut score: impl FnMut(&[Encoded]) -> Result<Vec<Vec<f32>>>,
) -> Result<Vec<Vec<f32>>> {
    let Some(per_input) = demos.sets_for(examples)? else {
        return score(&encode_all(tok, prompt, Method::Prompt, examples)?);
    };
    let tables = (0..demos.sets_per_input())
        .map(|k| {
            let enc: Vec<Encoded> = examples.iter().zip(&per_input).map(|(e, sets)| prompt.encode_with_demos(tok, e, &sets[k])).collect::<Result<_>>()?;
            score(&enc)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(mean_rows(&tables))
}
