//! Serving: a predictor over an export directory through ONNX Runtime. Needs neither
//! libtorch nor Python; a serve-only build (`--no-default-features`) links neither.

mod predictor;
mod runtime;

pub use predictor::{Prediction, Predictor, PredictorOptions, MAX_BATCH, MAX_SESSIONS};
pub use runtime::{environment, loaded_from};

/// Predictions in Label Studio's prediction shape (one object per input): `score` is the
/// top probability, `result` one `choices` annotation with the labels that apply (the
/// predicted class; for a multi-label export every label over the threshold, possibly
/// none), between the labelling config's `from_name` and `to_name`; `model_version` as
/// given. A regression export's result is a `number` annotation holding its score (for
/// Label Studio's `<Number>` tag), and there is no `score` (a top probability of the two
/// poles says nothing about it). Predictions of another number of classes than `labels`
/// are an `InvalidArgument` error (a prediction does not hold its labels' names: the C
/// ABI's writer checks them against the predictor that made it).
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
        .map(|r| match r.score {
            Some(score) => serde_json::json!({
                "model_version": model_version,
                "result": [{"from_name": from_name, "to_name": to_name, "type": "number", "value": {"number": score}}],
            }),
            None => serde_json::json!({
                "model_version": model_version,
                "score": r.probs[r.label],
                "result": [{"from_name": from_name, "to_name": to_name, "type": "choices",
                            "value": {"choices": r.labels.iter().map(|&l| &labels[l]).collect::<Vec<_>>()}}],
            }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A class is a `choices` annotation with its top probability as the score; a
    /// regression score is a `number` annotation, without a score.
    #[test]
    fn label_studio_choices_and_numbers() {
        let labels = ["low".to_string(), "high".to_string()];
        let class = Prediction { probs: vec![0.25, 0.75], label: 1, margin: 0.5, entropy: 0.56, score: None, labels: vec![1] };
        let scored = Prediction { score: Some(4.0), ..class.clone() };
        let json = label_studio_json(&[class, scored], &labels, "f", "t", "v1").unwrap();
        assert_eq!(json[0], serde_json::json!({"model_version": "v1", "score": 0.75,
            "result": [{"from_name": "f", "to_name": "t", "type": "choices", "value": {"choices": ["high"]}}]}));
        assert_eq!(json[1], serde_json::json!({"model_version": "v1",
            "result": [{"from_name": "f", "to_name": "t", "type": "number", "value": {"number": 4.0}}]}));
    }
}
