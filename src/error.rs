//! One error type for the whole crate, grouped by area. Sources are kept.

use std::path::PathBuf;

/// Crate-wide result.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- files and formats -------------------------------------------------
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid JSON for {what}: {source}")]
    Json { path: PathBuf, what: &'static str, source: serde_json::Error },
    #[error("directory {dir} has no {what} (looked for {looked_for})")]
    MissingFile { dir: PathBuf, what: &'static str, looked_for: String },
    /// A file lmbff wrote (a task, a manifest, an export) that is malformed, of an
    /// unsupported version, or inconsistent with its directory.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    // ---- models --------------------------------------------------------------
    #[error("unsupported model architecture {0:?}: lmbff loads BERT, RoBERTa and MPNet encoders (model_type \"bert\", \"roberta\" or \"mpnet\")")]
    UnsupportedArchitecture(String),
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("weight {name} is missing from {file}")]
    MissingWeight { name: String, file: PathBuf },
    #[error("weight {name} in {file} has shape {found:?}, but the config implies {expected:?}")]
    WeightShape { name: String, file: PathBuf, expected: Vec<i64>, found: Vec<i64> },
    #[error("weights file {file} is corrupt or unreadable: {message}")]
    CorruptWeights { file: PathBuf, message: String },
    #[cfg(feature = "train")]
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),

    // ---- tokenizer and prompts ---------------------------------------------
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// `at`: the byte the error is at, where it is at one place (not for a part missing).
    #[error("template {template:?}{}: {message}", at.map_or(String::new(), |b| format!(", at byte {b}")))]
    Template { template: String, at: Option<usize>, message: String },
    #[error("label word {word:?} for label {label:?}: {message}")]
    LabelWord { label: String, word: String, message: String },
    #[error("input does not fit: {0}")]
    Truncation(String),

    // ---- data and training ---------------------------------------------------
    #[error("{path}, line {line}: {message}")]
    Data { path: PathBuf, line: usize, message: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0} is not valid UTF-8")]
    Utf8(String),
    #[error("device {0:?} is not available: {1}")]
    Device(String, String),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("{0} needs training support: this is the serve-only build of lmbff")]
    NoTraining(&'static str),
    #[error("{0}")]
    Busy(&'static str),
    /// What is on disk changed under this handle (another writer saved since it read).
    #[error("{0}")]
    Conflict(String),
    #[error("cancelled by its caller (lmbff_run_cancel, lmbff_run_free, or the progress callback's answer)")]
    Cancelled,
    /// What went wrong with one input of a batch, by its index in the batch
    /// ([`Error::renumbered`] moves it for a caller that split a longer list).
    #[error("{}", input_message(.index, .source))]
    Input { index: usize, source: Box<Error> },
    /// A bug in lmbff, caught (the message says where).
    #[error("{0}")]
    Internal(String),
}

/// "invalid argument: input 3: ..." (the kind first, as the error alone would read), or
/// "input 3: ..." before any other error's message.
fn input_message(index: &usize, source: &Error) -> String {
    match source {
        Error::InvalidArgument(m) => format!("invalid argument: input {index}: {m}"),
        other => format!("input {index}: {other}"),
    }
}

impl Error {
    /// An [`Error::Input`] of a batch that starts at `first` in the caller's list, with
    /// the index the caller knows the input by; any other error as it is.
    pub fn renumbered(self, first: usize) -> Self {
        match self {
            Error::Input { index, source } => Error::Input { index: index + first, source },
            other => other,
        }
    }

    /// This error with the paths under `from` named under `to` instead (a folder read
    /// through another name for it, such as a handle's /proc/self/fd path).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn in_dir(self, from: &std::path::Path, to: &std::path::Path) -> Self {
        let moved = |p: PathBuf| match p.strip_prefix(from) {
            Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
            Ok(rest) => to.join(rest),
            Err(_) => p,
        };
        match self {
            Error::Io { path, source } => Error::Io { path: moved(path), source },
            Error::Json { path, what, source } => Error::Json { path: moved(path), what, source },
            Error::MissingFile { dir, what, looked_for } => Error::MissingFile { dir: moved(dir), what, looked_for },
            Error::Format { path, message } => {
                let (from, to) = (format!("{}/", from.display()), format!("{}/", to.display()));
                Error::Format { path: moved(path), message: message.replace(&from, &to) }
            }
            Error::Input { index, source } => Error::Input { index, source: Box::new(source.in_dir(from, to)) },
            // ONNX Runtime's messages name the file it was given (and quote it).
            Error::Runtime(message) => {
                let (from, to) = (format!("{}/", from.display()), format!("{}/", to.display()));
                Error::Runtime(message.replace(&from, &to))
            }
            other => other,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors met reading a folder through another name for it (its /proc/self/fd path)
    /// name the folder the host gave, ONNX Runtime's messages included.
    #[test]
    fn errors_read_through_another_name_name_the_hosts_folder() {
        let (via, shown) = (std::path::Path::new("/proc/self/fd/7"), std::path::Path::new("/srv/export"));
        let runtime = Error::Runtime("ONNX Runtime ran out of memory loading /proc/self/fd/7/model.onnx: bad_alloc".into()).in_dir(via, shown);
        assert_eq!(runtime.to_string(), "ONNX Runtime: ONNX Runtime ran out of memory loading /srv/export/model.onnx: bad_alloc");
        let io = Error::io(via.join("tokenizer.json"), std::io::Error::from(std::io::ErrorKind::NotFound)).in_dir(via, shown);
        assert!(io.to_string().starts_with("cannot read or write /srv/export/tokenizer.json"), "{io}");
        let input = Error::Input { index: 2, source: Box::new(Error::Runtime("/proc/self/fd/7/model.onnx failed".into())) }.in_dir(via, shown);
        assert_eq!(input.to_string(), "input 2: ONNX Runtime: /srv/export/model.onnx failed");
    }
}
