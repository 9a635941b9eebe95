//! Serving: a predictor over an export directory through ONNX Runtime. Needs neither
//! libtorch nor Python; a serve-only build (`--no-default-features`) links neither.

mod predictor;
mod runtime;

pub use predictor::{Prediction, Predictor, PredictorOptions};

/// Predictions in Label Studio's prediction shape (one object per input): `score` is the
/// top probability, `result` one `choices` annotation with the labels that apply (the
/// predicted class; for a multi-label export every label over the threshold, possibly
/// none), between the labelling config's `from_name` and `to_name`; `model_version` as
/// given. Predictions made by a predictor with other labels are an `InvalidArgument` error.
pub fn label_studio_json(rows: &[Prediction], labels: &[String], from_name: &str, to_name: &str, model_version: &str) -> crate::Result<serde_json::Value> {
    if let Some(bad) = rows.iter().position(|r| r.probs.len() != labels.len() || r.label >= labels.len() || r.labels.iter().any(|&l| l >= labels.len())) {
        return Err(crate::Error::InvalidArgument(format!(
            "prediction {bad} has {} classes and the labels given are {}: pass the predictor that made the predictions",
            rows[bad].probs.len(),
            labels.len()
        )));
    }
    Ok(rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "model_version": model_version,
                "score": r.probs[r.label],
                "result": [{"from_name": from_name, "to_name": to_name, "type": "choices",
                            "value": {"choices": r.labels.iter().map(|&l| &labels[l]).collect::<Vec<_>>()}}],
            })
        })
        .collect())
}
pub use runtime::{environment, loaded_from};
