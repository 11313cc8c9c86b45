//! Raw declarations of the C++ shim (`shim/c10d_shim.cpp`). Every function returns a
//! status code (0 = ok) and, on failure, a `malloc`ed message freed by `wd_string_free`.

use std::ffi::c_char;

use torch_sys::C_tensor;

/// Opaque `c10d::Store` handle.
#[repr(C)]
pub(crate) struct WdStore {
    _private: [u8; 0],
}

/// Opaque `c10d::Backend` handle.
#[repr(C)]
pub(crate) struct WdGroup {
    _private: [u8; 0],
}

pub(crate) const STATUS_OK: i32 = 0;
pub(crate) const STATUS_TIMEOUT: i32 = 1;
pub(crate) const STATUS_INVALID: i32 = 3;

pub(crate) const OP_SUM: i32 = 0;
pub(crate) const OP_AVG: i32 = 1;
pub(crate) const OP_MAX: i32 = 2;
pub(crate) const OP_MIN: i32 = 3;

unsafe extern "C" {
    pub(crate) fn wd_string_free(text: *mut c_char);
    pub(crate) fn wd_tcp_store_new(
        host: *const c_char,
        port: u16,
        is_server: bool,
        world_size: i32,
        timeout_ms: i64,
        out: *mut *mut WdStore,
        error: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn wd_file_store_new(
        path: *const c_char,
        world_size: i32,
        timeout_ms: i64,
        out: *mut *mut WdStore,
        error: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn wd_store_free(store: *mut WdStore);
    pub(crate) fn wd_gloo_new(
        store: *mut WdStore,
        rank: i32,
        world_size: i32,
        timeout_ms: i64,
        hostname: *const c_char,
        out: *mut *mut WdGroup,
        error: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn wd_nccl_new(
        store: *mut WdStore,
        rank: i32,
        world_size: i32,
        timeout_ms: i64,
        out: *mut *mut WdGroup,
        error: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn wd_group_free(group: *mut WdGroup);
    pub(crate) fn wd_all_reduce(
        group: *mut WdGroup,
        tensor: *mut C_tensor,
        op: i32,
        timeout_ms: i64,
        error: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn wd_reduce_scatter(
        group: *mut WdGroup,
        input: *mut C_tensor,
        output: *mut C_tensor,
        op: i32,
        timeout_ms: i64,
        error: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn wd_all_gather(
        group: *mut WdGroup,
        input: *mut C_tensor,
        output: *mut C_tensor,
        timeout_ms: i64,
        error: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn wd_broadcast(
        group: *mut WdGroup,
        tensor: *mut C_tensor,
        root: i32,
        timeout_ms: i64,
        error: *mut *mut c_char,
    ) -> i32;
    pub(crate) fn wd_barrier(group: *mut WdGroup, timeout_ms: i64, error: *mut *mut c_char) -> i32;
}

/// Takes ownership of a shim message (may be null) and returns it as a `String`.
///
/// # Safety
/// `text` is null or a pointer returned by the shim that has not been freed.
pub(crate) unsafe fn take_message(text: *mut c_char) -> String {
    if text.is_null() {
        return "no message".to_string();
    }
    // SAFETY: the shim returns NUL-terminated malloc'ed strings.
    let message = unsafe { std::ffi::CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: allocated by the shim with malloc, freed exactly once here.
    unsafe { wd_string_free(text) };
    message
}
