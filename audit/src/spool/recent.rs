//! The newest appends, kept in memory for the shipper.
//!
//! A busy sidecar writes tens of megabytes of events a second, and a shipper that keeps up
//! would read every byte straight back from the file it was just written to: a copy out of the
//! page cache per batch, on the same machine as the workload. The lines of each append are
//! kept here instead (the recorder hands its buffer over, so keeping them copies nothing),
//! until they are acknowledged or pushed out by newer ones. The file stays the record: a
//! batch that starts before what memory holds (after a restart, or an outage longer than
//! [`RECENT_MAX_BYTES`]) is read from it as before, until the reader reaches what is kept.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::Cursor;

/// At most this many bytes of appends are kept in memory: several batches' worth (a batch is
/// at most about 1 MiB), small beside the spool's own limit.
pub(crate) const RECENT_MAX_BYTES: usize = 2 << 20;

/// One append's lines and where they start in the spool.
#[derive(Debug)]
struct Chunk {
    at: Cursor,
    lines: Bytes,
    records: u64,
    /// The memory it holds (the buffer's capacity, at least its length).
    held: usize,
}

impl Chunk {
    fn end(&self) -> Cursor {
        Cursor {
            segment: self.at.segment,
            offset: self.at.offset + self.lines.len() as u64,
        }
    }
}

/// What [`Recent::take`] found: whole lines from the read cursor on, as slices of the appends
/// that hold them (taking copies nothing; [`Taken::lines`] joins them).
#[derive(Debug)]
#[cfg_attr(test, derive(Clone))]
pub(crate) struct Taken {
    parts: Vec<Bytes>,
    bytes: usize,
    pub(crate) count: usize,
    pub(crate) end: Cursor,
}

impl Taken {
    /// The lines as one buffer. Joining copies up to a batch, so the shipper calls this after
    /// letting go of the spool's lock, which the sessions' appends wait for.
    pub(crate) fn lines(mut self) -> Bytes {
        if self.parts.len() == 1
            && let Some(only) = self.parts.pop()
        {
            return only;
        }
        let mut joined = BytesMut::with_capacity(self.bytes);
        for p in &self.parts {
            joined.extend_from_slice(p);
        }
        joined.freeze()
    }
}

/// Appends in spool order, contiguous within a segment.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    chunks: VecDeque<Chunk>,
    bytes: usize,
}

impl Recent {
    /// Keeps the lines of an append that started at `at`; forgets the oldest beyond the limit
    /// (counted in the memory the buffers hold, not only their lines).
    pub(crate) fn push(&mut self, at: Cursor, lines: Vec<u8>, records: u64) {
        let held = lines.capacity();
        self.bytes += held;
        self.chunks.push_back(Chunk {
            at,
            lines: Bytes::from(lines),
            records,
            held,
        });
        while self.bytes > RECENT_MAX_BYTES {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(c) = self.chunks.pop_front() {
            self.bytes -= c.held;
        }
    }

    /// Forgets every append that ends at or before `acked` (delivered), or lies in a segment
    /// before `first_segment` (deleted or dropped).
    pub(crate) fn forget_before(&mut self, acked: Cursor, first_segment: u64) {
        while let Some(c) = self.chunks.front() {
            if c.end() <= acked || c.at.segment < first_segment {
                self.pop_front();
            } else {
                break;
            }
        }
    }

    /// The lines from `read` on, if they are kept here: at most `max_records` lines and
    /// `max_bytes` bytes (a first line longer than that goes alone, as from the file). Stops
    /// where a segment ends. `None` when what
    /// `read` points at is not kept (it is read from the file).
    pub(crate) fn take(&self, read: Cursor, max_records: usize, max_bytes: u64) -> Option<Taken> {
        // The append holding `read`, if kept (a cursor is always at the start of a line); one
        // that starts after it is a gap, which the loop stops at before taking anything.
        let first = self.chunks.partition_point(|c| c.end() <= read);
        let max_records = max_records.max(1);
        let mut parts: Vec<Bytes> = Vec::new();
        let (mut count, mut bytes, mut end) = (0usize, 0u64, read);
        for c in self.chunks.range(first..) {
            // Only what follows on without a gap (appends are contiguous within a segment; if
            // one were not kept, what is missing would be read from the file).
            if c.at.segment != end.segment || c.at > end || c.end() <= end {
                break;
            }
            let (room, left) = (max_records - count, max_bytes.saturating_sub(bytes));
            if room == 0 || left == 0 {
                break;
            }
            let skip = usize::try_from(end.offset - c.at.offset).ok()?;
            let lines = c.lines.slice(skip..);
            let whole = usize::try_from(c.records).unwrap_or(usize::MAX);
            let (len, records) = if skip == 0 && whole <= room && lines.len() as u64 <= left {
                (lines.len(), whole)
            } else {
                fitting(&lines, room, left, count == 0)
            };
            if records == 0 {
                break;
            }
            count += records;
            bytes += len as u64;
            end.offset += len as u64;
            parts.push(lines.slice(..len));
            if len < lines.len() {
                break;
            }
        }
        if count == 0 {
            return None;
        }
        Some(Taken {
            parts,
            bytes: usize::try_from(bytes).ok()?,
            count,
            end,
        })
    }
}

/// The bytes and the number of the first whole lines of `lines` within `room` lines and `left`
/// bytes; the first line even when longer, if `first` (a batch is never empty for it).
fn fitting(lines: &[u8], room: usize, left: u64, first: bool) -> (usize, usize) {
    let (mut len, mut records) = (0, 0);
    for newline in memchr::memchr_iter(b'\n', lines) {
        let through = newline + 1;
        if through as u64 > left && !(first && records == 0) {
            break;
        }
        (len, records) = (through, records + 1);
        if records == room || through as u64 >= left {
            break;
        }
    }
    (len, records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment: u64, offset: u64) -> Cursor {
        Cursor { segment, offset }
    }

    fn recent() -> Recent {
        let mut r = Recent::default();
        r.push(at(0, 0), b"a\nbb\n".to_vec(), 2);
        r.push(at(0, 5), b"ccc\n".to_vec(), 1);
        r.push(at(1, 0), b"d\n".to_vec(), 1);
        r
    }

    #[test]
    fn takes_whole_lines_within_a_segment_and_the_limits() {
        let r = recent();
        let t = r.take(at(0, 0), 10, 1 << 20).unwrap();
        assert_eq!(
            (&t.clone().lines()[..], t.count, t.end),
            (&b"a\nbb\nccc\n"[..], 3, at(0, 9))
        );
        let t = r.take(at(0, 0), 1, 1 << 20).unwrap();
        assert_eq!(
            (&t.clone().lines()[..], t.count, t.end),
            (&b"a\n"[..], 1, at(0, 2))
        );
        let t = r.take(at(0, 0), 10, 5).unwrap();
        assert_eq!(
            (&t.clone().lines()[..], t.count, t.end),
            (&b"a\nbb\n"[..], 2, at(0, 5))
        );
        // No more than the byte limit, even within an append.
        let t = r.take(at(0, 0), 10, 4).unwrap();
        assert_eq!(
            (&t.clone().lines()[..], t.count, t.end),
            (&b"a\n"[..], 1, at(0, 2))
        );
        let t = r.take(at(0, 0), 10, 8).unwrap();
        assert_eq!(
            (&t.clone().lines()[..], t.count, t.end),
            (&b"a\nbb\n"[..], 2, at(0, 5))
        );
        let t = r.take(at(1, 0), 10, 1 << 20).unwrap();
        assert_eq!((&t.clone().lines()[..], t.end), (&b"d\n"[..], at(1, 2)));
    }

    #[test]
    fn a_line_longer_than_the_byte_limit_goes_alone() {
        let r = recent();
        let t = r.take(at(0, 2), 10, 1).unwrap();
        assert_eq!(
            (&t.clone().lines()[..], t.count, t.end),
            (&b"bb\n"[..], 1, at(0, 5))
        );
    }

    #[test]
    fn two_large_appends_make_two_batches() {
        // Each about half the limit plus a little: together they exceed it.
        let line = |c: u8| {
            let mut v = vec![c; 599];
            v.push(b'\n');
            v
        };
        let mut r = Recent::default();
        r.push(at(0, 0), line(b'a').repeat(2), 2);
        r.push(at(0, 1200), line(b'b').repeat(2), 2);
        let t = r.take(at(0, 0), 100, 2000).unwrap();
        assert_eq!(
            (t.clone().lines().len(), t.count, t.end),
            (1800, 3, at(0, 1800))
        );
        let t = r.take(t.end, 100, 2000).unwrap();
        assert_eq!(
            (t.clone().lines().len(), t.count, t.end),
            (600, 1, at(0, 2400))
        );
    }

    #[test]
    fn a_cursor_inside_an_append_takes_the_rest_of_it() {
        let r = recent();
        let t = r.take(at(0, 2), 10, 1 << 20).unwrap();
        assert_eq!(
            (&t.clone().lines()[..], t.count, t.end),
            (&b"bb\nccc\n"[..], 2, at(0, 9))
        );
    }

    #[test]
    fn a_gap_between_appends_ends_what_is_taken() {
        let mut r = Recent::default();
        r.push(at(0, 0), b"a\n".to_vec(), 1);
        // Bytes 2..5 were written but not kept.
        r.push(at(0, 5), b"ccc\n".to_vec(), 1);
        let t = r.take(at(0, 0), 10, 1 << 20).unwrap();
        assert_eq!((&t.clone().lines()[..], t.end), (&b"a\n"[..], at(0, 2)));
        assert!(r.take(at(0, 2), 10, 1 << 20).is_none());
        assert_eq!(r.take(at(0, 5), 10, 1 << 20).unwrap().count, 1);
    }

    #[test]
    fn a_cursor_outside_what_is_kept_is_read_from_the_file() {
        let mut r = recent();
        // At the end of a segment (the reader moves on to the next one), after everything.
        assert!(r.take(at(0, 9), 10, 1 << 20).is_none());
        assert!(r.take(at(1, 2), 10, 1 << 20).is_none());
        assert!(r.take(at(2, 0), 10, 1 << 20).is_none());
        // Before what is kept.
        r.forget_before(at(0, 5), 0);
        assert!(r.take(at(0, 0), 10, 1 << 20).is_none());
        assert!(r.take(at(0, 2), 10, 1 << 20).is_none());
    }

    #[test]
    fn forgets_what_was_delivered_and_what_exceeds_the_limit() {
        let mut r = recent();
        r.forget_before(at(0, 5), 0);
        assert!(r.take(at(0, 0), 10, 1 << 20).is_none());
        assert_eq!(r.take(at(0, 5), 10, 1 << 20).unwrap().count, 1);
        r.forget_before(at(0, 5), 1);
        assert!(r.take(at(0, 5), 10, 1 << 20).is_none());
        assert_eq!(r.bytes, 2);

        let mut r = Recent::default();
        let big = vec![b'\n'; RECENT_MAX_BYTES / 2 + 1];
        let n = big.len() as u64;
        r.push(at(0, 0), big.clone(), n);
        r.push(at(0, n), big, n);
        assert!(r.take(at(0, 0), usize::MAX, u64::MAX).is_none());
        assert!(r.bytes <= RECENT_MAX_BYTES);

        // A short line in a large buffer counts as the buffer.
        let mut r = Recent::default();
        let roomy = || {
            let mut v = Vec::with_capacity(RECENT_MAX_BYTES / 2 + 1);
            v.extend_from_slice(b"e\n");
            v
        };
        r.push(at(0, 0), roomy(), 1);
        r.push(at(0, 2), roomy(), 1);
        assert!(r.take(at(0, 0), usize::MAX, u64::MAX).is_none());
        assert!(r.bytes <= RECENT_MAX_BYTES);
    }
}
