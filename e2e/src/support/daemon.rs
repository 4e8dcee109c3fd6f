//! A long-running process of the story (the operator, the sidecar), its output in a log file
//! that is shown when the story fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dbwarden_testbed::{http_status, log_tail};

/// A process killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    /// What it is, for messages.
    pub name: &'static str,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` with stdout and stderr in `log`.
    pub fn spawn(
        name: &'static str,
        mut command: tokio::process::Command,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    /// Kills the process and waits until it is gone (dropping it only sends the signal).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child
                .kill()
                .await
                .with_context(|| format!("stopping {}", self.name))?;
        }
        Ok(())
    }

    /// The last `lines` lines of its log.
    pub fn tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Waits until `GET path` on 127.0.0.1:`port` answers 200, failing early (with the log)
    /// when the process ends.
    pub async fn wait_http_ok(
        &mut self,
        port: u16,
        path: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}); end of its log:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            if matches!(http_status(port, path).await, Ok(200)) {
                tracing::info!(process = self.name, path, took = ?start.elapsed(), "ready");
                return Ok(());
            }
            if start.elapsed() > within {
                bail!(
                    "{}: {path} did not answer 200 within {within:?}; end of its log:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
