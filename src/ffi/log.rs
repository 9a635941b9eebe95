//! Logging at the C ABI: a callback with levels and user_data.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};

use super::{guard, lmbff_status};
use crate::log::{next_queued, queue_sink, set_sink, Level, Sink};
use crate::Error;

pub const LMBFF_LOG_ERROR: i32 = 0;
pub const LMBFF_LOG_WARN: i32 = 1;
pub const LMBFF_LOG_INFO: i32 = 2;
pub const LMBFF_LOG_DEBUG: i32 = 3;

/// A log callback: `level` (LMBFF_LOG_*), a NUL-terminated message valid during the call,
/// and the host's user_data. It may be called from any thread, also from lmbff's
/// training thread.
pub type lmbff_log_fn = Option<unsafe extern "C" fn(level: i32, message: *const c_char, user_data: *mut c_void)>;

struct UserData(*mut c_void);
// SAFETY: the host promises (in the header) that user_data may be used from any thread.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

/// Sends the library's log messages up to `max_level` (LMBFF_LOG_ERROR .. _DEBUG) to
/// `callback`; NULL stops logging whatever `max_level` is (the default: nothing is
/// printed anywhere). Process-wide. The callback may call lmbff, this function included:
/// a callback set from inside the callback takes over when it returns, and messages of
/// lmbff calls made inside the callback are not delivered, nor are ONNX Runtime's own
/// messages logged on a thread while it runs a prediction's graph (a callback predicting
/// on the same predictor there would wait for the session it is called from). Messages
/// of ONNX Runtime's worker threads are delivered, and such a thread works for a
/// prediction under way: a callback must not predict from it (at LMBFF_LOG_DEBUG, where
/// they come) on a predictor that may be predicting then, or it may wait for the
/// session whose run it was called from. Called from another thread,
/// it waits for callbacks running elsewhere to return (so the old `user_data` may be
/// freed when it returns): a callback must not wait on a thread that calls this. It may
/// wait for threads that log (their messages go to the callback in use, and a change it
/// made takes over when it returns).
///
/// # Safety
/// `callback` and `user_data` stay usable, from any thread, until replaced.
#[no_mangle]
pub unsafe extern "C" fn lmbff_set_log_callback(callback: lmbff_log_fn, max_level: i32, user_data: *mut c_void) -> lmbff_status {
    guard(|| {
        let Some(f) = callback else {
            set_sink(None);
            return Ok(());
        };
        let max = level(max_level)?;
        let ud = UserData(user_data);
        set_sink(Some(Sink {
            max,
            write: Box::new(move |level, message| {
                let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
                let ud = &ud;
                // SAFETY: the host's callback with its own user_data.
                unsafe { f(level as i32, c.as_ptr(), ud.0) };
            }),
        }));
        Ok(())
    })
}

fn level(max_level: i32) -> crate::Result<Level> {
    Ok(match max_level {
        LMBFF_LOG_ERROR => Level::Error,
        LMBFF_LOG_WARN => Level::Warn,
        LMBFF_LOG_INFO => Level::Info,
        LMBFF_LOG_DEBUG => Level::Debug,
        other => return Err(Error::InvalidArgument(format!("max_level is {other}: use LMBFF_LOG_ERROR .. LMBFF_LOG_DEBUG"))),
    })
}

/// The most messages lmbff_set_log_queue keeps.
pub const LMBFF_LOG_QUEUE_MAX: usize = 1_048_576;

/// Keeps the library's log messages up to `max_level` in a process-wide queue of at
/// most `capacity` messages (1 to LMBFF_LOG_QUEUE_MAX), read with lmbff_log_next: for
/// hosts that cannot take a callback on whatever thread lmbff logs from (Node, whose
/// functions run only on the thread that made them). Replaces a callback set by
/// lmbff_set_log_callback, which in turn replaces the queue (with NULL: stops logging).
/// Messages already queued stay readable either way. When the queue is full the oldest
/// message is dropped; the next lmbff_log_next then gives a warning that counts them.
#[no_mangle]
pub extern "C" fn lmbff_set_log_queue(max_level: i32, capacity: usize) -> lmbff_status {
    guard(|| {
        let max = level(max_level)?;
        if capacity == 0 || capacity > LMBFF_LOG_QUEUE_MAX {
            return Err(Error::InvalidArgument(format!("capacity is {capacity}: give 1 to {LMBFF_LOG_QUEUE_MAX} messages")));
        }
        set_sink(Some(queue_sink(max, capacity)));
        Ok(())
    })
}

thread_local! {
    static NEXT: RefCell<CString> = RefCell::new(CString::default());
}

/// Takes the oldest message of lmbff_set_log_queue's queue and writes its level to
/// `*level`; NULL when the queue is empty (or `level` is NULL). Borrowed: valid until the
/// next lmbff_log_next call on this thread. Any thread may read the queue.
///
/// # Safety
/// `level` is NULL or points to an int32_t.
#[no_mangle]
pub unsafe extern "C" fn lmbff_log_next(level: *mut i32) -> *const c_char {
    if level.is_null() {
        return std::ptr::null();
    }
    // Caught quietly: nothing is printed (lmbff.h).
    let next = super::catch_quietly(next_queued).ok().flatten();
    let Some((l, message)) = next else {
        return std::ptr::null();
    };
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    match NEXT.try_with(|n| {
        *n.borrow_mut() = c;
        n.borrow().as_ptr()
    }) {
        Ok(ptr) => {
            // SAFETY: checked non-NULL above; the caller's int32_t.
            unsafe { *level = l as i32 };
            ptr
        }
        Err(_) => std::ptr::null(),
    }
}
