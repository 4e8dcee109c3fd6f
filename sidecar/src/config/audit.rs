//! The standalone configuration of auditing: the `audit:` section.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Where audit events go and what happens when they cannot (see `docs/audit.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFileConfig {
    /// `http://` or `https://` URL the collector takes batches at.
    pub collector_url: String,
    /// Body encoding: `ndjson` or `otlp` (OTLP/HTTP logs, JSON).
    #[serde(default)]
    pub format: AuditFormat,
    /// Spool directory (created if missing); one process at a time.
    pub spool_dir: PathBuf,
    /// Most undelivered bytes the spool keeps (at least 4096).
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// When spool writes are forced to disk: `every-batch`, `interval` or `never`.
    #[serde(default)]
    pub fsync: FsyncMode,
    /// The fsync interval for `fsync: interval`, in milliseconds.
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// `open`: a full spool drops its oldest events; `closed`: statements are refused.
    #[serde(default)]
    pub failure_policy: FailureMode,
    /// Statement text in events: `full`, `redacted` (literals removed) or `none`.
    #[serde(default)]
    pub statement_text: TextMode,
    /// File holding the collector's bearer token (a mounted Secret); never logged.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM file of extra CA certificates for an `https://` collector.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// This sidecar's chain id; default `identity.pod`, else the host name. Keep it stable for
    /// the life of the spool directory.
    #[serde(default)]
    pub instance: Option<String>,
    /// Longest wait between delivery retries, in milliseconds.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Seconds spent delivering what is left at shutdown (the rest waits in the spool).
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
}

impl AuditFileConfig {
    /// Settings for `collector_url` with the spool in `spool_dir` and every other field at its
    /// default (as in a file that names only these two).
    pub fn new(collector_url: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            collector_url: collector_url.into(),
            format: AuditFormat::default(),
            spool_dir: spool_dir.into(),
            spool_max_bytes: default_spool_max_bytes(),
            fsync: FsyncMode::default(),
            fsync_interval_ms: default_fsync_interval_ms(),
            failure_policy: FailureMode::default(),
            statement_text: TextMode::default(),
            bearer_token_file: None,
            ca_file: None,
            instance: None,
            retry_max_ms: default_retry_max_ms(),
            drain_secs: default_drain_secs(),
        }
    }
}

fn default_spool_max_bytes() -> u64 {
    256 << 20
}
fn default_fsync_interval_ms() -> u64 {
    1000
}
fn default_retry_max_ms() -> u64 {
    30_000
}
fn default_drain_secs() -> u64 {
    5
}

/// `audit.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditFormat {
    /// One event line per line.
    #[default]
    Ndjson,
    /// OTLP/HTTP logs, JSON encoding.
    Otlp,
}

/// `audit.fsync`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncMode {
    /// After every write.
    EveryBatch,
    /// At most `fsync_interval_ms` after a write.
    #[default]
    Interval,
    /// Left to the operating system.
    Never,
}

/// `audit.failure_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Keep serving; a full spool drops its oldest events (counted, logged).
    Open,
    /// Refuse statements while no event can be stored.
    #[default]
    Closed,
}

/// `audit.statement_text`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextMode {
    /// As sent.
    Full,
    /// Literals replaced by `?`.
    #[default]
    Redacted,
    /// No text.
    None,
}

/// Checks what the types alone cannot.
pub(super) fn validate(audit: Option<&AuditFileConfig>) -> Result<(), ConfigError> {
    let Some(a) = audit else { return Ok(()) };
    if !(a.collector_url.starts_with("http://") || a.collector_url.starts_with("https://")) {
        return Err(invalid(
            "audit.collector_url",
            dbwarden_audit::ship::without_userinfo(&a.collector_url),
            "must be an http:// or https:// URL",
        ));
    }
    if a.spool_dir.as_os_str().is_empty() {
        return Err(invalid("audit.spool_dir", "", "must not be empty"));
    }
    if a.spool_max_bytes < 4096 {
        return Err(invalid(
            "audit.spool_max_bytes",
            a.spool_max_bytes,
            "must be at least 4096",
        ));
    }
    if a.fsync == FsyncMode::Interval && a.fsync_interval_ms == 0 {
        return Err(invalid(
            "audit.fsync_interval_ms",
            0,
            "must be at least 1 with fsync: interval",
        ));
    }
    if a.retry_max_ms < 100 {
        return Err(invalid(
            "audit.retry_max_ms",
            a.retry_max_ms,
            "must be at least 100",
        ));
    }
    for (field, path) in [
        ("audit.bearer_token_file", &a.bearer_token_file),
        ("audit.ca_file", &a.ca_file),
    ] {
        if let Some(path) = path
            && !path.is_file()
        {
            return Err(invalid(field, path.display(), "no such file"));
        }
    }
    if let Some(instance) = &a.instance
        && !valid_instance(instance)
    {
        return Err(invalid(
            "audit.instance",
            instance,
            "want 1-253 characters of [A-Za-z0-9._:-]",
        ));
    }
    Ok(())
}

/// The characters the audit crate accepts in an instance id.
pub(crate) fn valid_instance(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}
