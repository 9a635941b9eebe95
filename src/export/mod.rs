//! Export: a trained model as an ONNX graph written by lmbff itself (no Python, no
//! torch.onnx), with its tokenizer and a manifest that says how to render inputs, so a
//! host predicts without Rust, Python or libtorch. Optionally a Triton Inference Server
//! model repository next to it.
//!
//! Layout of an export directory:
//! - `model.onnx` (+ `model.onnx.data` with external data): opset 17, IR version 8;
//! - `tokenizer.json`: the model's Hugging Face tokenizer;
//! - `lmbff-export.json`: the [`ExportManifest`];
//! - `demo-encoder.onnx` and `demo-tokenizer.json` with similarity-filtered
//!   demonstrations (the sentence encoder that picks each input's demonstrations);
//! - `triton/<name>/{config.pbtxt, 1/model.onnx}` when asked for.

mod manifest;

pub use manifest::{
    CaseSpec, ExportManifest, ModelSpec, PartSpec, RegressionRange, SpecialSpec, TemplateSpec, TokenizerSpec, WeightType, EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION, EXPORT_MANIFEST, OUTPUT_LOGITS, OUTPUT_PROBS, OUTPUT_SCORE, Demonstrations,
    DemoFilter, MultiLabelSpec, DEMO_ENCODER_FILE, DEMO_TOKENIZER_FILE, OUTPUT_EMBEDDING,
};

#[cfg(feature = "train")]
mod encoder;
#[cfg(feature = "train")]
mod graph;
#[cfg(feature = "train")]
mod proto;
#[cfg(feature = "train")]
mod write;
#[cfg(feature = "train")]
pub use encoder::INT8_WEIGHT_MAX;
#[cfg(feature = "train")]
pub use write::{export, export_checkpoint, export_embedding, source_outside, stored_weight_bytes, ExportOptions};

/// Opset of the graphs written (LayerNormalization is a standard op from 17).
pub const OPSET: i64 = 17;
/// ONNX IR version that goes with opset 17.
pub const IR_VERSION: i64 = 8;
