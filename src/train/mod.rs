//! Training: prompt-based fine-tuning (LM-BFF), plain [CLS] fine-tuning for comparison,
//! masked-LM adaptation on unlabeled text, evaluation and the optimiser schedule.

mod adapt;
mod demos;
mod embed;
mod eval;
mod finetune;
mod optim;

pub use adapt::{adapt, state_dir_beside, AdaptParams, AdaptReport, Resume, Trainable, STATE_JSON};
pub use crate::metrics::{accuracy, argmax, centered_accuracy, softmax_rows};
pub use embed::{
    contrastive_finetune, contrastive_pairs, embed_batch, embed_examples, embedding_logits, fit_logistic, multi_label_pairs, train_embedding, train_embedding_multi, word_anchor_features, word_anchor_vectors, word_anchor_zero_shot, EmbedParams, WORD_ANCHOR_MASKED, WORD_ANCHOR_TOP,
    EmbedReport, ZERO_SHOT_WORDS_LOGIT_SCALE,
};
pub use demos::{DemoEncoder, Demos, DEMO_FILTER_MAX_LEN};
pub use eval::{predict_examples, predict_examples_with, predict_logits, prompt_logits};
pub use optim::Optimiser;
pub use finetune::{encode_all, finetune, DevMetric, FinetuneReport, Head, Method, RegressionTargets, TrainParams, MAX_DEMO_SETS};

/// Progress of long work, reported to a callback that returns `false` to stop.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub stage: Stage,
    pub step: usize,
    pub total: usize,
    /// Training loss of the last step (NaN when not known).
    pub loss: f64,
    /// Last dev metric (NaN when none yet).
    pub metric: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Adapt,
    Train,
    Evaluate,
}

/// A progress callback: return `false` to cancel.
pub type ProgressFn<'a> = &'a mut dyn FnMut(Progress) -> bool;
