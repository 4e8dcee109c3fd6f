//! Server processes that stop when dropped, and commands run to completion.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::{Error, Result};

/// A long-running server started by the test bed; stopped (signal, then kill) on drop.
#[derive(Debug)]
pub(crate) struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
    stop_signal: Signal,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(
        name: &'static str,
        command: &mut Command,
        log: &Path,
        stop_signal: Signal,
    ) -> Result<Self> {
        let out = File::create(log).map_err(Error::io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(Error::io(format!("opening {}", log.display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(Error::io(format!(
                "starting {name} ({:?})",
                command.get_program()
            )))?;
        Ok(Self {
            name,
            child,
            log: log.to_path_buf(),
            stop_signal,
        })
    }

    /// The process id, for signals.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of the log when the process has already exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name,
                status,
                log: self.log.clone(),
                tail: log_tail(&self.log, 40),
            }),
            Err(e) => Err(Error::Io {
                what: format!("waiting for {}", self.name),
                source: e,
            }),
        }
    }

    /// Polls `ready` every 50 ms until it is true, the process exits, or `timeout` passes.
    pub(crate) async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut ready: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            self.check_running()?;
            if ready().await {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(Error::NotReady {
                    name: self.name,
                    waited: timeout,
                    log: self.log.clone(),
                    tail: log_tail(&self.log, 40),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        if signal::kill(pid, self.stop_signal).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            tracing::warn!(
                process = self.name,
                "did not stop within 10s of {}; killing it",
                self.stop_signal
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a log file, for error messages; empty when it cannot be read.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a command printed, and how it ended.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// How the command ended.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CommandOutput {
    /// Standard output when the command succeeded, otherwise [`Error::Command`] with its stderr.
    pub fn ok(self, command: impl Into<String>) -> Result<String> {
        if self.status.success() {
            Ok(self.stdout)
        } else {
            Err(Error::Command {
                command: command.into(),
                status: self.status,
                stderr: self.stderr,
            })
        }
    }
}

/// Runs `command` to completion, feeding it `stdin`, and captures its output.
pub(crate) async fn run(
    mut command: tokio::process::Command,
    stdin: Option<&str>,
) -> Result<CommandOutput> {
    use tokio::io::AsyncWriteExt;

    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(Error::io(format!("starting {program}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(Error::io(format!("writing to {program}")))?;
        // Dropping the pipe closes it, so the command sees the end of its input.
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(Error::io(format!("running {program}")))?;
    Ok(CommandOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
