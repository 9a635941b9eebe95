//! Serving: a predictor over an export directory through ONNX Runtime. Needs neither
//! libtorch nor Python; a serve-only build (`--no-default-features`) links neither.

mod predictor;
mod runtime;

pub use predictor::{Prediction, Predictor, PredictorOptions};
pub use runtime::{environment, loaded_from};
