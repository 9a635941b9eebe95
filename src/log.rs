//! Library log messages, delivered to a host's callback (set through the C ABI). Nothing
//! is printed by default: with no callback set, messages are dropped.
//!
//! The callback may call back into lmbff. Messages of such calls are dropped (they would
//! re-enter the callback), and a sink set from inside the callback replaces the current
//! one when the callback returns (the current one is in use until then).

use std::cell::Cell;

use parking_lot::{Mutex, RwLock};

/// Severity, most severe first (the C ABI's LMBFF_LOG_* values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

/// A sink: gets every message at or above `max` severity.
pub struct Sink {
    pub max: Level,
    pub write: Box<dyn Fn(Level, &str) + Send + Sync>,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
/// A sink set from inside the callback, waiting for it to return.
static PENDING: Mutex<Option<Option<Sink>>> = Mutex::new(None);

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside the sink until dropped (also on unwinding).
struct InCallback;

impl InCallback {
    fn enter() -> Self {
        IN_CALLBACK.with(|c| c.set(true));
        InCallback
    }
}

impl Drop for InCallback {
    fn drop(&mut self) {
        IN_CALLBACK.with(|c| c.set(false));
    }
}

fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get)
}

/// Sets (or with None removes) the process's log sink.
pub fn set_sink(sink: Option<Sink>) {
    if in_callback() {
        *PENDING.lock() = Some(sink);
        return;
    }
    *SINK.write() = sink;
}

/// Logs `message` at `level` if a sink wants it.
pub fn log(level: Level, message: impl FnOnce() -> String) {
    if in_callback() {
        return;
    }
    if let Some(s) = SINK.read().as_ref() {
        if level <= s.max {
            let text = message();
            let _inside = InCallback::enter();
            (s.write)(level, &text);
        }
    }
    if let Some(next) = PENDING.lock().take() {
        *SINK.write() = next;
    }
}
