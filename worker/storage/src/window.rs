//! The upload window that a peer's object must have been written in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::StorageError;

/// Accepted LastModified range `[start, start + length]` for one window's uploads.
///
/// S3 reports LastModified truncated to whole seconds, so the lower bound is the window start
/// rounded down to a whole second (an object written 0.3 s after a start of `t + 0.7` reads as
/// `t` and must be accepted). The upper bound is compared as is, which grants up to one second of
/// grace after the deadline for the same reason. Times come from the caller (chain block times),
/// so clock skew between the S3 server and the chain is the caller's concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadWindow {
    /// When the window opened (uploads for it may start).
    pub start: SystemTime,
    /// How long after `start` uploads are accepted (70 s in Templar).
    pub length: Duration,
}

impl UploadWindow {
    /// A window opening at `start` and accepting uploads for `length`.
    pub fn new(start: SystemTime, length: Duration) -> Self {
        Self { start, length }
    }

    /// The earliest accepted LastModified: `start` rounded down to a whole second.
    pub fn not_before(&self) -> SystemTime {
        floor_to_second(self.start)
    }

    /// The latest accepted LastModified: `start + length`.
    pub fn not_after(&self) -> SystemTime {
        self.start + self.length
    }

    /// Whether an object last modified at `last_modified` belongs to this window.
    pub fn contains(&self, last_modified: SystemTime) -> bool {
        last_modified >= self.not_before() && last_modified <= self.not_after()
    }

    /// Like [`UploadWindow::contains`] but returns the matching typed error.
    pub fn check(&self, key: &str, last_modified: SystemTime) -> Result<(), StorageError> {
        if last_modified < self.not_before() {
            return Err(StorageError::TooEarly {
                key: key.to_owned(),
                last_modified,
                not_before: self.not_before(),
            });
        }
        if last_modified > self.not_after() {
            return Err(StorageError::TooLate {
                key: key.to_owned(),
                last_modified,
                not_after: self.not_after(),
            });
        }
        Ok(())
    }
}

/// Rounds a time down to a whole second since the Unix epoch (times before the epoch are kept).
pub(crate) fn floor_to_second(time: SystemTime) -> SystemTime {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(_) => time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn lower_bound_tolerates_second_truncation() {
        let window = UploadWindow::new(at(1000, 700), Duration::from_secs(70));
        assert_eq!(window.not_before(), at(1000, 0));
        // Uploaded at 1000.9, reported as 1000: accepted.
        assert!(window.contains(at(1000, 0)));
        // Reported as 999: written before the window opened.
        assert!(matches!(
            window.check("k", at(999, 0)),
            Err(StorageError::TooEarly { .. })
        ));
    }

    #[test]
    fn upper_bound_is_start_plus_length() {
        let window = UploadWindow::new(at(1000, 700), Duration::from_secs(70));
        assert_eq!(window.not_after(), at(1070, 700));
        assert!(window.contains(at(1070, 0)));
        assert!(matches!(
            window.check("k", at(1071, 0)),
            Err(StorageError::TooLate { .. })
        ));
    }
}
