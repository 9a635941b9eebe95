//! Loading ONNX Runtime. lmbff does not link it: the shared library is opened once per
//! process from an explicit path, found in this order:
//! 1. the path a host passes (predictor options / the C ABI); one that is not a file is
//!    an error, not a reason to look further;
//! 2. `LMBFF_ORT_LIB`, then `ORT_DYLIB_PATH` (ort's own variable); one that is set to
//!    something other than a file is an error too (a typo would load another build);
//! 3. `libonnxruntime.so*` in the directory of the library holding lmbff (a host ships
//!    them side by side), the highest version first.
//!
//! A relative path is made absolute against the current directory first (ort would
//! resolve it against the host executable, and the loader would search its own path for
//! a bare file name).

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use once_cell::sync::OnceCell;
use ort::environment::Environment;

use crate::{Error, Result};

static ENV: OnceCell<(PathBuf, Environment)> = OnceCell::new();
static INIT: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
/// The library `ort::init_from` loaded, set once it has (see [`environment`]).
static LIBRARY: OnceCell<PathBuf> = OnceCell::new();

/// Directory of the shared object (or executable) that contains this code.
fn own_dir() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address and fills `info`.
    let found = unsafe { libc::dladdr(own_dir as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated path that lives as long as the mapping.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(name.to_string_lossy().into_owned());
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    path.parent().map(Path::to_path_buf)
}

/// The version numbers after `.so.` in a library's file name (none for a bare `.so`).
fn so_version(p: &Path) -> Vec<u32> {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.split_once(".so.").map(|(_, v)| v.split('.').map(|n| n.parse().unwrap_or(0)).collect()).unwrap_or_default()
}

fn candidates(explicit: Option<&Path>) -> Result<Vec<(String, PathBuf)>> {
    // The first place named wins: the path given (the caller checked it is a file), else
    // the first variable set, else the library's directory.
    if let Some(p) = explicit {
        return Ok(vec![("the path given".to_string(), crate::absolute(p))]);
    }
    for var in ["LMBFF_ORT_LIB", "ORT_DYLIB_PATH"] {
        if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = crate::absolute(Path::new(&p));
            if !p.is_file() {
                return Err(Error::Runtime(format!("{var} is set to {}, which is not a file: correct it or unset it", p.display())));
            }
            return Ok(vec![(var.to_string(), p)]);
        }
    }
    let mut out = Vec::new();
    if let Some(dir) = own_dir() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
            .collect();
        found.sort_by(|a, b| so_version(b).cmp(&so_version(a)).then_with(|| a.cmp(b)));
        out.extend(found.into_iter().map(|p| ("the library's directory".to_string(), p)));
    }
    Ok(out)
}

thread_local! {
    /// Set while this thread loads ONNX Runtime (holding INIT).
    static LOADING: Cell<bool> = const { Cell::new(false) };
    /// ONNX Runtime's messages from this thread while it loads, held back until INIT is
    /// released: the host's log callback may wait for another thread's
    /// `lmbff_predictor_open`, which waits for INIT.
    static HELD_BACK: RefCell<Vec<(crate::log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

/// Marks this thread as loading ONNX Runtime until dropped (also on unwinding).
struct Loading;

impl Loading {
    fn enter() -> Self {
        LOADING.with(|l| l.set(true));
        Loading
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        LOADING.with(|l| l.set(false));
    }
}

/// The process's ONNX Runtime environment, loading the library on first use. Later calls
/// return the same environment (a process holds one ONNX Runtime).
pub fn environment(explicit: Option<&Path>) -> Result<&'static Environment> {
    if let Some(p) = explicit.filter(|p| !p.is_file()) {
        return Err(Error::Runtime(format!("ONNX Runtime library {} (the path given) is not a file", p.display())));
    }
    if let Some((loaded, env)) = ENV.get() {
        warn_if_other(loaded, explicit);
        return Ok(env);
    }
    // ONNX Runtime logs while it starts, through the host's log callback, on this
    // thread: a callback that opens a predictor then would wait for itself.
    if LOADING.with(Cell::get) {
        return Err(Error::Runtime("ONNX Runtime is still being loaded on this thread (a call from the log callback while it loads): open the predictor after that call returns".into()));
    }
    let init = INIT.lock();
    if let Some((loaded, env)) = ENV.get() {
        warn_if_other(loaded, explicit);
        return Ok(env);
    }
    let loading = Loading::enter();
    // ort keeps the library its first `init_from` loaded, even where the environment then
    // failed to start: a later try starts from that library, and says so.
    if let Some(first) = LIBRARY.get() {
        let env = start(first, "loaded by an earlier try");
        // Messages go out with INIT released: a host's callback may wait for a thread
        // that is waiting for INIT.
        drop(init);
        drop(loading);
        send_held_back();
        warn_if_other(first, explicit);
        return env.map(|(env, message)| log_loaded(env, message));
    }
    let tried = candidates(explicit)?;
    let (from, path) = tried.iter().find(|(_, p)| p.is_file()).ok_or_else(|| {
        let mut looked: Vec<String> = tried.iter().map(|(w, p)| format!("{} ({w})", p.display())).collect();
        match own_dir() {
            Some(d) if !tried.iter().any(|(_, p)| p.parent() == Some(d.as_path())) => {
                looked.push(format!("no libonnxruntime.so* in {}, the library's directory", d.display()))
            }
            None => looked.push("not the library's directory, which could not be found".into()),
            _ => {}
        }
        Error::Runtime(format!(
            "ONNX Runtime library not found (looked at: {}); pass its path, set LMBFF_ORT_LIB, \
             or put ONNX Runtime 1.31's libonnxruntime.so.1.31.* (the C API this build uses) next to liblmbff.so",
            looked.join("; ")
        ))
    })?;
    let env = start(path, from);
    drop(init);
    drop(loading);
    send_held_back();
    env.map(|(env, message)| log_loaded(env, message))
}

/// Sends ONNX Runtime's messages held back while this thread loaded it ([`HELD_BACK`]);
/// called with `INIT` released.
fn send_held_back() {
    for (level, message) in HELD_BACK.with(|h| std::mem::take(&mut *h.borrow_mut())) {
        crate::log::log(level, || message);
    }
}

/// Says where ONNX Runtime was loaded from (called with `INIT` released).
fn log_loaded(env: &'static Environment, message: String) -> &'static Environment {
    crate::log::log(crate::log::Level::Info, || message);
    env
}

/// Loads ONNX Runtime from `path` (`from`: where that path came from, for messages) and
/// starts the process's environment, with the message that says so; called with `INIT`
/// held, and logs nothing itself (ONNX Runtime's own start-up messages excepted: this
/// thread is marked as loading, see [`Loading`]).
fn start(path: &Path, from: &str) -> Result<(&'static Environment, String)> {
    let builder = ort::init_from(path).map_err(|e| Error::Runtime(format!("cannot load ONNX Runtime from {} ({from}): {e}", path.display())))?;
    let _ = LIBRARY.set(path.to_path_buf());
    let env = builder
        .with_name("lmbff")
        .with_telemetry(false)
        // ONNX Runtime's own messages go to the host's log callback, never to stderr.
        .with_logger(std::sync::Arc::new(|level, _category, _id, _at, message: &str| {
            use ort::logging::LogLevel;
            if super::predictor::holding_a_session() {
                return;
            }
            let level = match level {
                LogLevel::Fatal | LogLevel::Error => crate::log::Level::Error,
                LogLevel::Warning => crate::log::Level::Warn,
                // Its INFO is a hundred lines of graph optimisation per session: debug here.
                LogLevel::Info | LogLevel::Verbose => crate::log::Level::Debug,
            };
            if LOADING.with(Cell::get) {
                if crate::log::enabled(level) {
                    HELD_BACK.with(|h| h.borrow_mut().push((level, format!("ONNX Runtime: {message}"))));
                }
                return;
            }
            crate::log::log(level, || format!("ONNX Runtime: {message}"));
        }))
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start ONNX Runtime from {}: {e}", path.display())))?;
    let _ = ENV.set((path.to_path_buf(), env));
    Ok((&ENV.get().expect("just set").1, format!("ONNX Runtime loaded from {} ({from})", path.display())))
}

/// A process holds one ONNX Runtime: a predictor that names another library than the
/// one loaded gets the loaded one, and the host hears about it.
fn warn_if_other(loaded: &Path, asked: Option<&Path>) {
    let same = |p: &Path| std::fs::canonicalize(p).ok() == std::fs::canonicalize(loaded).ok();
    if let Some(p) = asked.filter(|p| !same(p)) {
        crate::log::log(crate::log::Level::Warn, || {
            format!("ONNX Runtime is already loaded from {}; {} (given) is not loaded: a process holds one ONNX Runtime", loaded.display(), p.display())
        });
    }
}

/// Path of the loaded ONNX Runtime library, if loaded.
pub fn loaded_from() -> Option<&'static Path> {
    ENV.get().map(|(p, _)| p.as_path())
}
