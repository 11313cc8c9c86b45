//! Rendezvous stores (c10d `TCPStore`, `FileStore`): where the ranks of a group find each other.

use std::ffi::{CString, c_char};
use std::path::Path;
use std::ptr::{NonNull, null_mut};
use std::time::Duration;

use crate::error::DistributedError;
use crate::ffi;
use crate::group::millis;

/// A c10d key-value store shared by the ranks of one group.
#[derive(Debug)]
pub struct Store {
    raw: NonNull<ffi::WdStore>,
}

// SAFETY: c10d stores are internally synchronised and not tied to a thread.
unsafe impl Send for Store {}
// SAFETY: as above; every method takes the store's own lock.
unsafe impl Sync for Store {}

impl Store {
    /// A TCP store: rank 0 (`is_server`) listens on `host:port`, the others connect. The
    /// server waits up to `timeout` for `world_size` clients; clients retry until then.
    pub fn tcp(
        host: &str,
        port: u16,
        is_server: bool,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Store, DistributedError> {
        let host = c_string("tcp store", host)?;
        let world = world_i32("tcp store", world_size)?;
        Self::create("tcp store", |out, error| {
            // SAFETY: valid C string and out-pointers for the duration of the call.
            unsafe {
                ffi::wd_tcp_store_new(
                    host.as_ptr(),
                    port,
                    is_server,
                    world,
                    millis(timeout),
                    out,
                    error,
                )
            }
        })
    }

    /// A file store at `path` (a fresh file per group on a file system all ranks share,
    /// e.g. the pod's `/dev/shm`); `timeout` bounds every wait on it.
    pub fn file(
        path: &Path,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Store, DistributedError> {
        let text = path.to_str().ok_or_else(|| DistributedError::Invalid {
            op: "file store",
            message: format!("path {} is not UTF-8", path.display()),
        })?;
        let path = c_string("file store", text)?;
        let world = world_i32("file store", world_size)?;
        Self::create("file store", |out, error| {
            // SAFETY: valid C string and out-pointers for the duration of the call.
            unsafe { ffi::wd_file_store_new(path.as_ptr(), world, millis(timeout), out, error) }
        })
    }

    fn create(
        what: &'static str,
        call: impl FnOnce(*mut *mut ffi::WdStore, *mut *mut c_char) -> i32,
    ) -> Result<Store, DistributedError> {
        let mut out = null_mut();
        let mut error = null_mut();
        let status = call(&mut out, &mut error);
        // SAFETY: the shim set `error` (or left it null); taken once.
        let message = unsafe { ffi::take_message(error) };
        match NonNull::new(out) {
            Some(raw) if status == ffi::STATUS_OK => Ok(Store { raw }),
            _ if status == ffi::STATUS_INVALID => {
                Err(DistributedError::Invalid { op: what, message })
            }
            _ => Err(DistributedError::Rendezvous { what, message }),
        }
    }

    pub(crate) fn raw(&self) -> *mut ffi::WdStore {
        self.raw.as_ptr()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by the shim, freed once; groups keep their own reference.
        unsafe { ffi::wd_store_free(self.raw.as_ptr()) }
    }
}

pub(crate) fn c_string(op: &'static str, text: &str) -> Result<CString, DistributedError> {
    CString::new(text).map_err(|_| DistributedError::Invalid {
        op,
        message: "string with a NUL byte".into(),
    })
}

pub(crate) fn world_i32(op: &'static str, world_size: usize) -> Result<i32, DistributedError> {
    i32::try_from(world_size)
        .ok()
        .filter(|&w| w >= 1)
        .ok_or_else(|| DistributedError::Invalid {
            op,
            message: format!("world size {world_size}"),
        })
}
