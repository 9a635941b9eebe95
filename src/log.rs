//! Library log messages, delivered to a host's callback (set through the C ABI). Nothing
//! is printed by default: with no callback set, messages are dropped.
//!
//! The callback may call back into lmbff. Messages of such calls are dropped (they would
//! re-enter the callback), and a sink set from inside the callback replaces the current
//! one when the callback returns (the current one is in use until then).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

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
/// A sink set from inside the callback, waiting for it to return: its number among the
/// set_sink calls, the sink, and the thread whose callback set it (which applies it).
type Pending = (u64, Option<Sink>, u64);
static PENDING: Mutex<Option<Pending>> = Mutex::new(None);
/// Counts set_sink calls, in their order: a sink set from inside a callback is applied
/// after it returns only if no set_sink came after it meanwhile (from another thread).
static SETS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside the sink until dropped (also on unwinding).
pub(crate) struct InCallback;

impl InCallback {
    pub(crate) fn enter() -> Self {
        IN_CALLBACK.with(|c| c.set(true));
        InCallback
    }
}

impl Drop for InCallback {
    fn drop(&mut self) {
        IN_CALLBACK.with(|c| c.set(false));
    }
}

/// Whether this thread is inside the sink (a log callback and the lmbff calls it makes).
pub(crate) fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get)
}

/// Sets (or with None removes) the process's log sink.
pub fn set_sink(sink: Option<Sink>) {
    if in_callback() {
        // This thread holds SINK's read lock: count the call now, apply it after.
        let n = SETS.fetch_add(1, Ordering::SeqCst) + 1;
        *PENDING.lock() = Some((n, sink, crate::thread_no()));
        return;
    }
    let mut current = SINK.write();
    SETS.fetch_add(1, Ordering::SeqCst);
    *current = sink;
}

/// Whether a sink wants messages at `level`.
pub fn enabled(level: Level) -> bool {
    SINK.read_recursive().as_ref().is_some_and(|s| level <= s.max)
}

/// Logs `message` at `level` if a sink wants it.
pub fn log(level: Level, message: impl FnOnce() -> String) {
    if in_callback() {
        return;
    }
    // Not blocked by a set_sink waiting for the lock: a callback running on another
    // thread may be waiting for this one (a worker it joined), and the setter for it.
    if let Some(s) = SINK.read_recursive().as_ref() {
        if level <= s.max {
            let text = message();
            let _inside = InCallback::enter();
            (s.write)(level, &text);
        }
    }
    // A change this thread's callback made, applied now that it has returned; another
    // thread's is its own to apply (that callback may still run, holding the read lock,
    // and waiting for this thread). Taken first, the lock released before waiting for the
    // sink's: a callback on another thread may be queueing its own change.
    let me = crate::thread_no();
    let pending = {
        let mut p = PENDING.lock();
        if p.as_ref().is_some_and(|(_, _, owner)| *owner == me) { p.take() } else { None }
    };
    if let Some((n, next, _)) = pending {
        let mut current = SINK.write();
        // A later set_sink, made while the callback ran, stands.
        if SETS.load(Ordering::SeqCst) == n {
            *current = next;
        }
    }
}

/// Messages kept for a host that reads them (`queue_sink`, `next_queued`) instead of
/// taking a callback on whatever thread logs.
struct Queue {
    messages: VecDeque<(Level, String)>,
    capacity: usize,
    /// Dropped since the last read, the queue being full.
    dropped: u64,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue { messages: VecDeque::new(), capacity: 0, dropped: 0 });

/// A sink that keeps messages up to `max` in the process's queue, at most `capacity` of
/// them (the oldest dropped first, and counted). Messages already queued stay; a smaller
/// capacity drops the oldest of them.
pub fn queue_sink(max: Level, capacity: usize) -> Sink {
    {
        let mut q = QUEUE.lock();
        q.capacity = capacity;
        while q.messages.len() > capacity {
            q.messages.pop_front();
            q.dropped += 1;
        }
    }
    Sink {
        max,
        write: Box::new(|level, message| {
            let mut q = QUEUE.lock();
            if q.capacity == 0 {
                return;
            }
            if q.messages.len() == q.capacity {
                q.messages.pop_front();
                q.dropped += 1;
            }
            q.messages.push_back((level, message.to_owned()));
        }),
    }
}

/// The oldest queued message, taken from the queue; first, if the queue was full since
/// the last read, a warning saying how many messages it dropped.
pub fn next_queued() -> Option<(Level, String)> {
    let mut q = QUEUE.lock();
    if q.dropped > 0 {
        let n = std::mem::take(&mut q.dropped);
        let capacity = q.capacity;
        return Some((Level::Warn, format!("{n} log messages were dropped: the log queue was full (capacity {capacity}); read it more often or give it more room")));
    }
    q.messages.pop_front()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    type Seen = Arc<StdMutex<Vec<String>>>;

    /// The tests here replace the process's one sink: one at a time.
    static SERIAL: StdMutex<()> = StdMutex::new(());

    fn recorder(seen: Seen, name: &'static str) -> Sink {
        Sink { max: Level::Debug, write: Box::new(move |_, m| seen.lock().unwrap().push(format!("{name}: {m}"))) }
    }

    /// A callback sets sink X, then another thread sets Y while the callback still runs:
    /// Y came later and stands (X, applied when the callback returns, must not undo it).
    #[test]
    fn a_later_sink_from_another_thread_outlasts_one_set_inside_a_callback() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let seen: Seen = Arc::default();
        let other: Arc<StdMutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
        let (x, y, handle) = (seen.clone(), seen.clone(), other.clone());
        set_sink(Some(Sink {
            max: Level::Debug,
            write: Box::new(move |_, m| {
                if m != "sink-order: first" {
                    return;
                }
                set_sink(Some(recorder(x.clone(), "X")));
                let y = y.clone();
                *handle.lock().unwrap() = Some(std::thread::spawn(move || set_sink(Some(recorder(y, "Y")))));
                // Long enough for that thread to be waiting on the sink's lock.
                std::thread::sleep(std::time::Duration::from_millis(100));
            }),
        }));
        log(Level::Info, || "sink-order: first".into());
        other.lock().unwrap().take().expect("the callback ran").join().unwrap();
        log(Level::Info, || "sink-order: second".into());
        set_sink(None);
        let ours: Vec<String> = seen.lock().unwrap().iter().filter(|m| m.contains("sink-order")).cloned().collect();
        assert_eq!(ours, ["Y: sink-order: second"]);
    }

    /// Callbacks on two threads each turn logging off. The first to return applies its
    /// change while the second, still inside its callback, queues its own: that used to
    /// wait forever (the first held the queue's lock while waiting for the sink's).
    #[test]
    fn callbacks_on_two_threads_may_both_set_the_sink() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let inside = Arc::new(std::sync::Barrier::new(2));
        let b = inside.clone();
        set_sink(Some(Sink {
            max: Level::Debug,
            write: Box::new(move |_, m| {
                if !m.starts_with("two-setters") {
                    return;
                }
                b.wait();
                if m == "two-setters: late" {
                    // The other thread returns and takes its queued change meanwhile.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                set_sink(None);
            }),
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        for m in ["two-setters: early", "two-setters: late"] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                log(Level::Info, || m.into());
                tx.send(()).unwrap();
            });
        }
        for _ in 0..2 {
            rx.recv_timeout(std::time::Duration::from_secs(10)).expect("both loggers return");
        }
        assert!(SINK.read().is_none(), "logging is off");
    }

    /// A callback turns logging off, then waits for a worker that logs: the worker's
    /// message goes to the sink still in use and returns (it used to apply the callback's
    /// change, waiting for the lock the callback held while waiting for it).
    #[test]
    fn a_worker_logging_while_its_callback_waits_returns() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let seen: Seen = Arc::default();
        let s = seen.clone();
        set_sink(Some(Sink {
            max: Level::Debug,
            write: Box::new(move |_, m| {
                s.lock().unwrap().push(m.to_string());
                if m == "joined-worker: first" {
                    set_sink(None);
                    std::thread::spawn(|| log(Level::Info, || "joined-worker: worker".into())).join().unwrap();
                }
            }),
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            log(Level::Info, || "joined-worker: first".into());
            tx.send(()).unwrap();
        });
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the callback's worker returned");
        assert!(SINK.read().is_none(), "logging is off once the callback returned");
        let ours: Vec<String> = seen.lock().unwrap().iter().filter(|m| m.starts_with("joined-worker")).cloned().collect();
        assert_eq!(ours, ["joined-worker: first", "joined-worker: worker"]);
    }

    /// A callback waits for a worker that logs while a third thread waits to set the sink:
    /// the worker's message is not held behind the waiting setter (a fair lock held it, and
    /// the three waited on each other), and the setter goes on once the callback returns.
    #[test]
    fn a_waiting_setter_does_not_hold_up_a_worker_its_callback_waits_for() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let setter: Arc<StdMutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
        let handle = setter.clone();
        set_sink(Some(Sink {
            max: Level::Debug,
            write: Box::new(move |_, m| {
                if m != "waiting-setter: first" {
                    return;
                }
                *handle.lock().unwrap() = Some(std::thread::spawn(|| set_sink(None)));
                // Long enough for the setter to be waiting on the sink's lock.
                std::thread::sleep(std::time::Duration::from_millis(100));
                std::thread::spawn(|| log(Level::Info, || "waiting-setter: worker".into())).join().unwrap();
            }),
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            log(Level::Info, || "waiting-setter: first".into());
            tx.send(()).unwrap();
        });
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the callback's worker returned");
        setter.lock().unwrap().take().expect("the callback ran").join().unwrap();
        assert!(SINK.read().is_none(), "the setter's change stands");
    }

    /// A queue of 2 given 3 messages keeps the last 2, in order, after a warning that
    /// counts the dropped one. The sink is written to directly, not installed: another
    /// test's message, logged meanwhile, would take a place in so small a queue.
    #[test]
    fn a_full_queue_drops_the_oldest_and_says_so() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        while next_queued().is_some() {}
        let sink = queue_sink(Level::Info, 2);
        assert_eq!(sink.max, Level::Info);
        for i in 1..=3 {
            (sink.write)(Level::Info, &format!("queue-test {i}"));
        }
        let read: Vec<(Level, String)> = std::iter::from_fn(next_queued).collect();
        assert!(read[0].0 == Level::Warn && read[0].1.contains("1 log messages were dropped: the log queue was full (capacity 2)"), "{read:?}");
        let rest: Vec<(Level, &str)> = read[1..].iter().map(|(l, m)| (*l, m.as_str())).collect();
        assert_eq!(rest, [(Level::Info, "queue-test 2"), (Level::Info, "queue-test 3")]);
        assert!(next_queued().is_none(), "read empty");
    }
}
