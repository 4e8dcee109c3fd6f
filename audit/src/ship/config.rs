//! Shipper settings.

use std::fmt;
use std::time::Duration;

/// Body encoding of shipped batches (the policy's `audit.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-ndjson`, one event line per line, byte for byte as chained.
    Ndjson,
    /// OTLP/HTTP logs, JSON encoding (`application/json`), one log record per event.
    Otlp,
}

/// A bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where and how batches go.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// `http://` or `https://` URL batches are POSTed to (for OTLP, usually ending in `/v1/logs`).
    pub url: String,
    /// Body encoding.
    pub format: Format,
    /// Compress bodies with gzip (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<Token>,
    /// Extra PEM CA certificates trusted for `https://` besides the public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Most events in one batch.
    pub batch_max_events: usize,
    /// About the most bytes of event lines in one batch (a single larger event still goes).
    pub batch_max_bytes: u64,
    /// How long to wait for more events before sending a batch that is not full.
    pub linger: Duration,
    /// First retry delay; doubles up to `backoff_max`, with jitter.
    pub backoff_initial: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Deadline of one POST, response included.
    pub request_timeout: Duration,
}

impl ShipperConfig {
    /// Defaults: NDJSON, no gzip, 1000 events or 1 MiB per batch, 200 ms linger, backoff
    /// 100 ms doubling to 30 s, 10 s request timeout.
    pub fn new(url: impl Into<String>) -> Self {
        ShipperConfig {
            url: url.into(),
            format: Format::Ndjson,
            gzip: false,
            bearer_token: None,
            ca_pem: None,
            batch_max_events: 1000,
            batch_max_bytes: 1 << 20,
            linger: Duration::from_millis(200),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Exponential backoff with jitter: attempt n waits a random time in
/// `[d/2, d]` where `d = min(initial * 2^n, max)`, so many sidecars do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff at its first attempt.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << self.attempt.min(20));
        let cap = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = cap / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for n in 0..8u32 {
            let d = b.next_delay();
            let cap = Duration::from_millis(100 * 2u64.pow(n)).min(Duration::from_secs(1));
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {n}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn token_is_not_printed() {
        let c = ShipperConfig {
            bearer_token: Some(Token("s3cret".into())),
            ..ShipperConfig::new("http://x")
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
