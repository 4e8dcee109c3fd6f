//! The per-instance hash chain.
//!
//! Canonical bytes of an event: `serde_json` of [`Event`] with keys in struct order, optional
//! fields left out when empty, no whitespace, and no `hash` key. An event's hash is the SHA-256 of
//! its canonical bytes; the next event's `prev_hash` is that hash in lowercase hex. The stored and
//! shipped line is the canonical bytes with `,"hash":"<hex>"` inserted before the closing brace,
//! so a reader can check a line without parsing it (see [`check_line`]).

use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::render::{Link, Record};

/// `prev_hash` of the first event of a chain.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Length of `,"hash":"<64 hex>"}` at the end of every line.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// Errors reading an event line.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not a JSON object of schema v1.
    #[error("not a v1 audit event: {0}")]
    Json(#[from] serde_json::Error),
    /// The line has no `hash` string field.
    #[error("no \"hash\" field")]
    NoHash,
    /// The stored hash does not match the event's content.
    #[error("hash mismatch: stored {stored}, content hashes to {computed}")]
    HashMismatch {
        /// The `hash` field of the line.
        stored: String,
        /// SHA-256 of the line's canonical bytes.
        computed: String,
    },
}

/// Stamps events of one instance with `id`, `seq` and `prev_hash`.
#[derive(Debug)]
pub struct Chain {
    instance: String,
    next_seq: u64,
    prev_hash: String,
}

impl Clone for Chain {
    fn clone(&self) -> Self {
        Chain {
            instance: self.instance.clone(),
            next_seq: self.next_seq,
            prev_hash: self.prev_hash.clone(),
        }
    }

    /// Reuses `self`'s strings: the recorder keeps a copy of the head per statement.
    fn clone_from(&mut self, source: &Self) {
        self.instance.clone_from(&source.instance);
        self.next_seq = source.next_seq;
        self.prev_hash.clone_from(&source.prev_hash);
    }
}

/// A stamped event, serialized as its line (without the trailing newline).
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The event id, `<instance>-<seq>`.
    pub id: String,
    /// The chain position.
    pub seq: u64,
    /// The event's own hash (hex).
    pub hash: String,
    /// Canonical bytes plus the `hash` field.
    pub line: Vec<u8>,
}

impl Chain {
    /// A new chain for `instance`, starting at seq 0.
    pub fn new(instance: impl Into<String>) -> Self {
        Chain {
            instance: instance.into(),
            next_seq: 0,
            prev_hash: ZERO_HASH.to_owned(),
        }
    }

    /// Continues a chain after the event `last_seq` whose hash was `last_hash`.
    pub fn resume(
        instance: impl Into<String>,
        last_seq: u64,
        last_hash: impl Into<String>,
    ) -> Self {
        Chain {
            instance: instance.into(),
            next_seq: last_seq + 1,
            prev_hash: last_hash.into(),
        }
    }

    /// The instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The seq the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Stamps `event` as the next link and seals it, advancing the chain.
    pub fn stamp(&mut self, event: Event) -> Result<Sealed, serde_json::Error> {
        let sealed = self.prepare(event)?;
        self.commit(&sealed);
        Ok(sealed)
    }

    /// Stamps and seals `event` as the next link without advancing the chain; [`Chain::commit`]
    /// it once it is stored, or drop it (the next event then takes the same seq).
    pub fn prepare(&self, mut event: Event) -> Result<Sealed, serde_json::Error> {
        let mut line = Vec::new();
        let at = self.write_line(&event, &mut line)?;
        self.link(&mut event);
        Ok(Sealed {
            id: event.id,
            seq: event.seq,
            hash: String::from_utf8_lossy(&line[at..at + 64]).into_owned(),
            line,
        })
    }

    /// Stamps `event` (an [`Event`] or a [`crate::Draft`]) as the next link and appends its
    /// line and a newline to `out`, advancing the chain; returns its seq. On `Err` neither
    /// `out` nor the chain changed.
    pub fn seal_into(
        &mut self,
        event: &impl Record,
        out: &mut Vec<u8>,
    ) -> Result<u64, serde_json::Error> {
        let start = out.len();
        let hash = match self.write_line(event, out) {
            Ok(hash) => hash,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        out.push(b'\n');
        // The hex digits `hash_suffix` wrote, so always ASCII.
        match std::str::from_utf8(&out[hash..hash + 64]) {
            Ok(hex) => {
                self.prev_hash.clear();
                self.prev_hash.push_str(hex);
            }
            Err(_) => {
                out.truncate(start);
                return Err(serde::ser::Error::custom("the hash is not hex"));
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Appends `event`'s line stamped as the next link (no newline) to `out`; returns where in
    /// `out` the 64 hex digits of its hash start.
    fn write_line(
        &self,
        event: &impl Record,
        out: &mut Vec<u8>,
    ) -> Result<usize, serde_json::Error> {
        let start = out.len();
        let link = Link {
            instance: &self.instance,
            seq: self.next_seq,
            prev_hash: &self.prev_hash,
        };
        event.render(&link, out)?;
        Ok(hash_suffix(out, start))
    }

    fn link(&self, event: &mut Event) {
        event.instance.clone_from(&self.instance);
        event.seq = self.next_seq;
        event.id = event_id(&self.instance, self.next_seq);
        event.prev_hash.clone_from(&self.prev_hash);
    }

    /// Advances the chain past `sealed`, which [`Chain::prepare`] returned.
    pub fn commit(&mut self, sealed: &Sealed) {
        self.prev_hash.clone_from(&sealed.hash);
        self.next_seq = sealed.seq + 1;
    }
}

/// The `id` of event `seq` of chain `instance`: `<instance>-<seq>`, built without the
/// formatting machinery (once per event).
pub fn event_id(instance: &str, seq: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let seq = digits.format(seq);
    let mut id = String::with_capacity(instance.len() + 1 + seq.len());
    id.push_str(instance);
    id.push('-');
    id.push_str(seq);
    id
}

/// Canonical bytes of `event` (see the module docs).
pub fn canonical(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(event)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

fn to_hex(digest: &[u8]) -> String {
    let mut out = String::with_capacity(digest.len() * 2);
    for &b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Seals an already stamped event: computes its hash and its line.
pub fn seal(event: &Event) -> Result<Sealed, serde_json::Error> {
    let mut line = Vec::new();
    let at = write_line(event, &mut line)?;
    let hash = String::from_utf8_lossy(&line[at..at + 64]).into_owned();
    Ok(Sealed {
        id: event.id.clone(),
        seq: event.seq,
        hash,
        line,
    })
}

/// Appends `event`'s line (canonical bytes plus the hash field, no newline) to `out`; returns
/// where in `out` the 64 hex digits of its hash start. The reference rendering: `serde_json`
/// of the event as it stands.
fn write_line(event: &Event, out: &mut Vec<u8>) -> Result<usize, serde_json::Error> {
    let start = out.len();
    serde_json::to_writer(&mut *out, event)?;
    Ok(hash_suffix(out, start))
}

/// Turns the canonical bytes from `start` into the stored line: `,"hash":"<hex>"` before the
/// closing brace. Returns where the hex digits start.
fn hash_suffix(out: &mut Vec<u8>, start: usize) -> usize {
    let digest = Sha256::digest(&out[start..]);
    out.pop(); // the closing brace of the object
    out.extend_from_slice(b",\"hash\":\"");
    let at = out.len();
    let mut hex = [0u8; 64];
    for (pair, &b) in hex.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\"}");
    at
}

/// Checks a line this crate wrote, without parsing it: the hash suffix is there and matches the
/// bytes before it. Returns the hash.
pub fn check_line(line: &[u8]) -> Result<&str, LineError> {
    if line.len() <= HASH_SUFFIX_LEN || !line.starts_with(b"{") {
        return Err(LineError::NoHash);
    }
    let split = line.len() - HASH_SUFFIX_LEN;
    let (body, suffix) = line.split_at(split);
    if !suffix.starts_with(b",\"hash\":\"") || !suffix.ends_with(b"\"}") {
        return Err(LineError::NoHash);
    }
    let stored = std::str::from_utf8(&suffix[9..73]).map_err(|_| LineError::NoHash)?;
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(b"}");
    let computed = to_hex(&hasher.finalize());
    if computed != stored {
        return Err(LineError::HashMismatch {
            stored: stored.to_owned(),
            computed,
        });
    }
    Ok(stored)
}

/// A line parsed by meaning (keys in any order, as a collector may have rewritten it).
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The event.
    pub event: Event,
    /// The `hash` field as stored.
    pub stored_hash: String,
    /// SHA-256 of the event's canonical bytes.
    pub computed_hash: String,
}

/// Parses any JSON rendering of an event line and recomputes its hash.
pub fn parse_line(line: &[u8]) -> Result<Parsed, LineError> {
    let mut value: serde_json::Value = serde_json::from_slice(line)?;
    let stored_hash = match value.as_object_mut().and_then(|o| o.remove("hash")) {
        Some(serde_json::Value::String(h)) => h,
        _ => return Err(LineError::NoHash),
    };
    let event: Event = serde_json::from_value(value)?;
    let computed_hash = sha256_hex(&canonical(&event)?);
    Ok(Parsed {
        event,
        stored_hash,
        computed_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Decision, Kind};

    fn ev(n: u64) -> Event {
        Event::at(Kind::Statement, "2026-01-01T00:00:00.000000Z".into())
            .database("shop")
            .decision(Decision::Allowed, Some(format!("rule-{n}")))
    }

    #[test]
    fn stamps_links_and_lines_check() {
        let mut chain = Chain::new("pod-a");
        let a = chain.stamp(ev(1)).unwrap();
        let b = chain.stamp(ev(2)).unwrap();
        assert_eq!((a.seq, b.seq), (0, 1));
        assert_eq!(check_line(&a.line).unwrap(), a.hash);
        let pb = parse_line(&b.line).unwrap();
        assert_eq!(pb.event.prev_hash, a.hash);
        assert_eq!(pb.event.id, "pod-a-1");
        assert_eq!(pb.stored_hash, pb.computed_hash);
        let pa = parse_line(&a.line).unwrap();
        assert_eq!(pa.event.prev_hash, ZERO_HASH);
    }

    #[test]
    fn an_edit_breaks_the_hash() {
        let mut chain = Chain::new("pod-a");
        let a = chain.stamp(ev(1)).unwrap();
        let edited = String::from_utf8(a.line)
            .unwrap()
            .replace("rule-1", "rule-9");
        assert!(matches!(
            check_line(edited.as_bytes()),
            Err(LineError::HashMismatch { .. })
        ));
        let p = parse_line(edited.as_bytes()).unwrap();
        assert_ne!(p.stored_hash, p.computed_hash);
    }

    #[test]
    fn key_order_does_not_matter_when_parsing() {
        let mut chain = Chain::new("pod-a");
        let a = chain.stamp(ev(1)).unwrap();
        // serde_json's Value sorts keys: a collector that rewrites the object still verifies.
        let v: serde_json::Value = serde_json::from_slice(&a.line).unwrap();
        let rewritten = serde_json::to_vec_pretty(&v).unwrap();
        let p = parse_line(&rewritten).unwrap();
        assert_eq!(p.stored_hash, p.computed_hash);
        assert!(check_line(b"{}").is_err());
    }
}
