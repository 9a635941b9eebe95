//! Library log messages, delivered to a host's callback (set through the C ABI). Nothing
//! is printed by default: with no callback set, messages are dropped.

use parking_lot::RwLock;

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

/// Sets (or with None removes) the process's log sink.
pub fn set_sink(sink: Option<Sink>) {
    *SINK.write() = sink;
}

/// Logs `message` at `level` if a sink wants it.
pub fn log(level: Level, message: impl FnOnce() -> String) {
    if let Some(s) = SINK.read().as_ref() {
        if level <= s.max {
            (s.write)(level, &message());
        }
    }
}
