//! The C ABI (the only `extern "C"` code of the crate). `include/lmbff.h` is generated
//! from this module by cbindgen in build.rs. The full ABI (tasks, training, predictors)
//! grows here; for now it carries versioning and the thread-local error message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

/// Version of the C ABI; bumped on any incompatible change, never reused.
pub const LMBFF_ABI_VERSION: u32 = 1;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
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

/// The message of the last failed call on this thread ("" if none). Borrowed: valid
/// until the next lmbff call on this thread.
#[no_mangle]
pub extern "C" fn lmbff_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
