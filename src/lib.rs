//! lmbff: few-shot labelling with LM-BFF prompt-based fine-tuning of masked LMs.
//!
//! Data flows one way: text -> [`prompt`] -> token ids ([`tokenize`]) -> [`model`]
//! (tch) -> [`train`] -> [`checkpoint`] -> [`export`] (ONNX) -> [`serve`] (ONNX Runtime).
//! The C ABI lives in [`ffi`].

pub mod checkpoint;
pub mod data;
mod error;
pub mod export;
pub mod ffi;
pub mod log;
pub mod metrics;
pub mod prompt;
pub mod serve;
pub mod task;
pub mod tokenize;

#[cfg(feature = "train")]
pub mod model;
#[cfg(feature = "train")]
pub mod train;
#[cfg(feature = "train")]
pub mod cli;
#[cfg(feature = "train")]
pub mod harness;

pub use error::{Error, Result};

/// Library version (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The most libtorch intra-op threads lmbff sets (the C ABI's lmbff_set_torch_threads,
/// the CLI's `--threads`): 256, or the machine's hardware threads where it has more.
/// libtorch starts them at once, and tens of thousands take minutes to start.
pub fn max_torch_threads() -> u32 {
    let hardware = std::thread::available_parallelism().map_or(1, |n| n.get());
    256.max(u32::try_from(hardware).unwrap_or(u32::MAX))
}
