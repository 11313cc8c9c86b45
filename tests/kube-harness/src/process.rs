//! One child process of the control plane: logs to a file, dies with the harness thread.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::error::HarnessError;

/// A running component.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `program args` with stdout and stderr in `<dir>/<name>.log`. The child gets
    /// SIGKILL when the thread that started it ends (`PR_SET_PDEATHSIG`), so nothing outlives
    /// the test binary, even when it aborts.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        dir: &Path,
    ) -> Result<Self, HarnessError> {
        let log = dir.join(format!("{name}.log"));
        let out =
            File::create(&log).map_err(HarnessError::io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(HarnessError::io("duplicating a log handle"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| HarnessError::Start {
            name: name.to_owned(),
            reason: format!("spawning {}: {e}", program.display()),
            log: log.clone(),
            tail: String::new(),
        })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Some(reason)` when the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("exited with {status}")),
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// A start-up failure of this process, with its log tail.
    pub fn failure(&self, reason: impl Into<String>) -> HarnessError {
        HarnessError::Start {
            name: self.name.clone(),
            reason: reason.into(),
            log: self.log.clone(),
            tail: self.log_tail(40),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a text file (at most its last 64 KiB are read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
