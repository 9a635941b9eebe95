//! Logging at the C ABI: a callback with levels and user_data.

use std::ffi::{c_char, c_void, CString};

use super::{guard, lmbff_status};
use crate::log::{set_sink, Level, Sink};
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
/// lmbff calls made inside the callback are not delivered. Called from another thread,
/// it waits for callbacks running elsewhere to return (so the old `user_data` may be
/// freed when it returns): a callback must not wait on a thread that calls this.
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
        let max = match max_level {
            LMBFF_LOG_ERROR => Level::Error,
            LMBFF_LOG_WARN => Level::Warn,
            LMBFF_LOG_INFO => Level::Info,
            LMBFF_LOG_DEBUG => Level::Debug,
            other => return Err(Error::InvalidArgument(format!("max_level is {other}: use LMBFF_LOG_ERROR .. LMBFF_LOG_DEBUG"))),
        };
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
