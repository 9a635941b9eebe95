//! The C ABI (the only `extern "C"` code of the crate). `include/lmbff.h` is generated
//! from this module by cbindgen in build.rs.
//!
//! Conventions: every fallible call returns an `lmbff_status` (0 is success) and leaves a
//! message for `lmbff_last_error()` on failure; objects come in create/free pairs and
//! `free(NULL)` is a no-op; no panic crosses the boundary (each call catches them and
//! reports LMBFF_ERR_INTERNAL). Status values are only ever added, never renumbered.

#![allow(non_camel_case_types)]

mod log;
mod predict;
mod task;
mod train;

pub use log::*;
pub use predict::*;
pub use task::*;
pub use train::*;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

use crate::Error;

/// Version of the C ABI; bumped on any incompatible change, never reused.
pub const LMBFF_ABI_VERSION: u32 = 1;

/// Status codes returned by every fallible call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lmbff_status {
    LMBFF_OK = 0,
    /// A null pointer, an out-of-range value or an unknown enum value.
    LMBFF_ERR_INVALID_ARGUMENT = 1,
    /// A string argument is not valid UTF-8.
    LMBFF_ERR_UTF8 = 2,
    /// A file or directory could not be read or written.
    LMBFF_ERR_IO = 3,
    /// A file is malformed, of an unsupported version, or inconsistent with its directory
    /// (data files, task files, exports).
    LMBFF_ERR_FORMAT = 4,
    /// A model cannot be loaded (its folder lacks or has a malformed config.json,
    /// tokenizer.json or weights; architecture, weights, tokenizer, template, label words).
    LMBFF_ERR_MODEL = 5,
    /// ONNX Runtime could not be loaded or failed, libtorch failed, or the device asked
    /// for (a CUDA index) is not available.
    LMBFF_ERR_RUNTIME = 6,
    /// The call needs training support, and this build is serve-only.
    LMBFF_ERR_NO_TRAINING = 7,
    /// The work was cancelled.
    LMBFF_ERR_CANCELLED = 8,
    /// A bug in lmbff (a caught panic); the handle involved is no longer usable.
    LMBFF_ERR_INTERNAL = 9,
    /// An object that is used by one thread at a time (a task) is in use by another.
    LMBFF_ERR_BUSY = 10,
    /// The task's folder was saved by another handle or process since this handle opened
    /// or last saved it: nothing was written (reopen the task and apply the change again).
    LMBFF_ERR_CONFLICT = 11,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub fn set_last_error(message: &str) {
    // A message that echoes a huge input (a 1 MB label word) keeps its first 4 KiB.
    const MOST: usize = 4096;
    if message.len() > MOST {
        let cut = cut_at(message, MOST);
        carry_last_error(&format!("{} [... cut: the message had {} bytes]", &message[..cut], message.len()));
    } else {
        carry_last_error(message);
    }
}

/// Sets this thread's message as it is: one `set_last_error` already made (and cut) on
/// another thread.
pub(crate) fn carry_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // try_with: a call from a thread-exit destructor, after this thread's storage is
    // gone, loses its message rather than abort the process.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

/// The length of the longest start of `message` of at most `most` bytes that ends at a
/// character boundary.
pub(crate) fn cut_at(message: &str, most: usize) -> usize {
    (0..=message.len().min(most)).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0)
}

/// The status a crate error maps to.
pub(crate) fn status_of(e: &Error) -> lmbff_status {
    use lmbff_status::*;
    match e {
        Error::Io { .. } => LMBFF_ERR_IO,
        // A model folder's own files (config.json, tokenizer.json, weights) are the model's.
        Error::MissingFile { what: "model config" | "tokenizer" | "weights", .. }
        | Error::Json { what: "a model config" | "a BERT/RoBERTa/MPNet config" | "a safetensors index", .. } => LMBFF_ERR_MODEL,
        Error::Json { .. } | Error::Data { .. } | Error::MissingFile { .. } | Error::Format { .. } => LMBFF_ERR_FORMAT,
        Error::UnsupportedArchitecture(_)
        | Error::Config(_)
        | Error::MissingWeight { .. }
        | Error::WeightShape { .. }
        | Error::CorruptWeights { .. }
        | Error::Tokenizer(_)
        | Error::Template { .. }
        | Error::LabelWord { .. } => LMBFF_ERR_MODEL,
        #[cfg(feature = "train")]
        Error::Torch(_) => LMBFF_ERR_RUNTIME,
        Error::Runtime(_) | Error::Device(..) => LMBFF_ERR_RUNTIME,
        Error::Truncation(_) | Error::InvalidArgument(_) => LMBFF_ERR_INVALID_ARGUMENT,
        Error::Utf8(_) => LMBFF_ERR_UTF8,
        Error::NoTraining(_) => LMBFF_ERR_NO_TRAINING,
        Error::Busy(_) => LMBFF_ERR_BUSY,
        Error::Conflict(_) => LMBFF_ERR_CONFLICT,
        Error::Cancelled => LMBFF_ERR_CANCELLED,
        Error::Internal(_) => LMBFF_ERR_INTERNAL,
        // An input's own problem is an argument's; the model's answer to it is the model's
        // (a probability that is not a number: a file that is not sound).
        Error::Input { source, .. } => match **source {
            Error::Format { .. } => LMBFF_ERR_FORMAT,
            _ => LMBFF_ERR_INVALID_ARGUMENT,
        },
    }
}

/// Runs `f`, turning errors and panics into a status and a last-error message.
pub(crate) fn guard(f: impl FnOnce() -> crate::Result<()>) -> lmbff_status {
    match catch_quietly(f) {
        Ok(Ok(())) => lmbff_status::LMBFF_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            status_of(&e)
        }
        Err(what) => {
            set_last_error(&what);
            lmbff_status::LMBFF_ERR_INTERNAL
        }
    }
}

thread_local! {
    /// Depth of `catch_quietly` calls on this thread.
    static CATCHING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// Where the last panic caught on this thread was raised.
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, catching a panic without printing it (the header promises that nothing is
/// printed): a panic hook, installed once, keeps quiet about panics inside this call and
/// notes where they were raised; every other panic goes to the hook that was there
/// before. The error is the message for `lmbff_last_error()`.
pub(crate) fn catch_quietly<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(|c| c.get()) > 0 {
                PANIC_AT.with(|p| *p.borrow_mut() = info.location().map(|l| format!("{}:{}", l.file(), l.line())));
            } else {
                previous(info)
            }
        }));
    });
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    result.map_err(|payload| {
        let what = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        let at = PANIC_AT.with(|p| p.borrow_mut().take()).map(|l| format!(" at {l}")).unwrap_or_default();
        format!("internal error (please report): {what}{at}")
    })
}

/// Copies `s` and a NUL into the caller's buffer `buf` of `capacity` bytes; *needed (if
/// not NULL) gets the size required. A NULL or too small buffer is an error naming
/// `what` (after *needed is set, so a host can size its buffer and call again).
pub(crate) unsafe fn write_c_string(s: &str, buf: *mut c_char, capacity: usize, needed: *mut usize, what: &str) -> crate::Result<()> {
    let need = s.len() + 1;
    if !needed.is_null() {
        *needed = need;
    }
    if buf.is_null() || capacity < need {
        return Err(Error::InvalidArgument(format!("the buffer holds {capacity} bytes; {what} needs {need}")));
    }
    std::ptr::copy_nonoverlapping(s.as_ptr().cast(), buf, s.len());
    *buf.add(s.len()) = 0;
    Ok(())
}

/// An earlier layout of a parameter struct: the size its hosts put in `struct_size`, and
/// where its last field ends (a later field may sit in its trailing padding).
pub(crate) struct EarlierLayout {
    pub size: usize,
    pub fields_end: usize,
}

/// Reads a parameter struct a host filled in. A host built against an earlier header
/// passes that version's size (one of `earlier`): its fields are read and the later
/// ones keep their `defaults`. Other sizes are refused: smaller than `T` (not
/// initialised), or larger (a newer header, whose newer fields this library cannot read).
///
/// # Safety
/// `p` is NULL or points to at least the `struct_size` bytes it declares.
/// `bools` are the offsets of `T`'s `bool` fields: a byte there other than 0 or 1 (an
/// earlier layout's padding holds anything) is read as true, not copied into a `bool`.
pub(crate) unsafe fn read_params<T: Copy>(p: *const T, defaults: T, earlier: &[EarlierLayout], bools: &[usize], defaults_fn: &str) -> crate::Result<T> {
    if p.is_null() {
        return Err(Error::InvalidArgument("params is NULL".into()));
    }
    // struct_size is every params struct's first field.
    let size = std::ptr::read_unaligned(p.cast::<usize>());
    let n = match earlier.iter().find(|l| l.size == size) {
        Some(l) => l.fields_end,
        None => {
            check_struct_size::<T>(size, defaults_fn)?;
            std::mem::size_of::<T>()
        }
    };
    // The defaults written as a value (their padding is never read as bytes), the host's
    // bytes over them.
    let mut out = std::mem::MaybeUninit::new(defaults);
    let bytes = out.as_mut_ptr().cast::<u8>();
    std::ptr::copy_nonoverlapping(p.cast::<u8>(), bytes, n);
    for &at in bools {
        let b = bytes.add(at);
        *b = u8::from(*b != 0);
    }
    Ok(out.assume_init())
}

/// Fills the `size` bytes at `p` with `defaults` and sets `struct_size` to `size`: the
/// `*_params_init` functions. `size` is `T`'s own size, or an earlier layout's (a host
/// built against an earlier header passes its sizeof): only that many bytes are
/// written, so the host's struct is never overrun.
///
/// # Safety
/// `p` is NULL or points to at least `size` writable bytes.
pub(crate) unsafe fn init_params<T: Copy>(p: *mut T, size: usize, defaults: T, earlier: &[EarlierLayout], name: &str) -> crate::Result<()> {
    if p.is_null() {
        return Err(Error::InvalidArgument(format!("{name}: params is NULL")));
    }
    let own = std::mem::size_of::<T>();
    if size != own && !earlier.iter().any(|l| l.size == size) {
        let known: Vec<String> = std::iter::once(own).chain(earlier.iter().map(|l| l.size)).map(|n| n.to_string()).collect();
        return Err(Error::InvalidArgument(format!(
            "{name}: size {size} is no layout this library knows ({}; pass sizeof the struct{})",
            known.join(", "),
            if size > own { ": the host's header is newer than this library" } else { "" }
        )));
    }
    std::ptr::copy_nonoverlapping((&defaults as *const T).cast::<u8>(), p.cast::<u8>(), size);
    // struct_size is every params struct's first field.
    std::ptr::write_unaligned(p.cast::<usize>(), size);
    Ok(())
}

/// Checks a parameter struct's `struct_size` against this version's `T`: a smaller one
/// came from an older header or was not initialised by `defaults` (its *_default_params(),
/// or the matching *_params_init); a larger one, from a newer header.
pub(crate) fn check_struct_size<T>(struct_size: usize, defaults: &str) -> crate::Result<()> {
    let want = std::mem::size_of::<T>();
    // A larger one came from a newer header: its newer fields would be ignored unseen.
    if struct_size > want {
        return Err(Error::InvalidArgument(format!(
            "params.struct_size is {struct_size}, larger than this library's {want}: the host was built against a newer lmbff.h \
             than this library ({}), which cannot read the newer fields",
            crate::VERSION
        )));
    }
    if struct_size < want {
        let init = defaults.replace("_default_params", "_params_init");
        return Err(Error::InvalidArgument(format!(
            "params.struct_size is {struct_size} (expected {want}): initialise params with {init}(&params, sizeof params) or {defaults}()"
        )));
    }
    Ok(())
}

/// A required UTF-8 string argument.
pub(crate) fn str_arg<'a>(p: *const c_char, name: &str) -> crate::Result<&'a str> {
    if p.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string that outlives the call.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|e| Error::Utf8(format!("{name} ({e})")))
}

/// The ABI version the library was built with (compare with LMBFF_ABI_VERSION).
#[no_mangle]
pub extern "C" fn lmbff_abi_version() -> u32 {
    LMBFF_ABI_VERSION
}

/// The library version as a NUL-terminated string. Borrowed: static, never freed.
#[no_mangle]
pub extern "C" fn lmbff_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Whether this build can train and export (false for the serve-only build, whose
/// training and export calls return LMBFF_ERR_NO_TRAINING).
#[no_mangle]
pub extern "C" fn lmbff_has_training() -> bool {
    cfg!(feature = "train")
}

/// The message of the last failed call on this thread ("" if none). Borrowed: valid
/// until the next lmbff call on this thread.
#[no_mangle]
pub extern "C" fn lmbff_last_error() -> *const c_char {
    LAST_ERROR.try_with(|e| e.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_is_cut_at_a_character_boundary() {
        let message = "texts[0]: «é»";
        for most in 0..=message.len() + 2 {
            let cut = super::cut_at(message, most);
            assert!(cut <= most && message.is_char_boundary(cut), "{most}: {cut}");
            // The longest start that fits: the next character would not.
            let next = message[cut..].chars().next().map_or(0, char::len_utf8);
            assert!(cut == message.len() || cut + next > most, "{most}: {cut}");
        }
    }
}
