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

/// A libtorch intra-op thread count lmbff sets (the C ABI's lmbff_set_torch_threads, the
/// CLI's `--threads`; `name` names the setting in the error), checked: 0 for the cores
/// this process may use (as a predictor's 0 means), else 1 to 256, or to the machine's
/// hardware threads where it has more. libtorch starts them at once, and tens of
/// thousands take minutes to start.
#[cfg(feature = "train")]
pub(crate) fn torch_threads(n: i64, name: &str) -> Result<i32> {
    let hardware = std::thread::available_parallelism().map_or(1, |n| n.get());
    let most = 256.max(i32::try_from(hardware).unwrap_or(i32::MAX));
    if n == 0 {
        return Ok(i32::try_from(hardware).unwrap_or(most));
    }
    match i32::try_from(n) {
        Ok(n) if (1..=most).contains(&n) => Ok(n),
        _ => Err(Error::InvalidArgument(format!("{name} is {n}: give 1 to {most}, or 0 for all cores"))),
    }
}

/// `p` against the current directory, as the caller meant it when it named it (links
/// not followed), or `p` as given where that fails. Paths kept for later (a training
/// run's folders, the ONNX Runtime library, a harness's data) are fixed so: the host
/// may change directory before they are read.
pub(crate) fn absolute(p: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A number for the calling thread, the same for its life and no other thread's
/// (`std::thread::current()` panics once a thread's locals are gone: a host freeing a run
/// from a static destructor or an atexit handler would abort).
pub(crate) fn thread_no() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local! {
        // Const and without a destructor: readable until the thread ends.
        static NO: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    NO.try_with(|n| {
        if n.get() == 0 {
            n.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        n.get()
    })
    .unwrap_or(0)
}

#[cfg(all(test, feature = "train"))]
mod tests {
    #[test]
    fn torch_threads_zero_is_all_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(super::torch_threads(0, "threads").unwrap() as usize, cores);
        assert_eq!(super::torch_threads(3, "threads").unwrap(), 3);
        for n in [-1, 1 << 20, 1 << 40] {
            let e = super::torch_threads(n, "--threads").unwrap_err().to_string();
            assert!(e.contains(&format!("--threads is {n}: give 1 to")) && e.ends_with("or 0 for all cores"), "{e}");
        }
    }
}
