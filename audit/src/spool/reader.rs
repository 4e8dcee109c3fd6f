//! The shipper's side of the spool: read batches in order, acknowledge what was delivered.

use bytes::Bytes;

use super::{Cursor, Spool, SpoolError, files, io_err};
use crate::chain;
use crate::stats::Stats;

/// Records read from the spool, to be delivered and then acknowledged with [`Spool::ack`].
#[derive(Debug, Clone)]
pub struct Batch {
    /// The event lines in spool order, each ending in a newline: already an NDJSON body.
    pub lines: Bytes,
    /// How many lines.
    pub count: usize,
    /// Records were left unread when this batch was taken (it is full, or it ended where a
    /// segment does): the next one can be read at once.
    pub more: bool,
    /// Where the batch ends: acknowledge this once the collector accepted it.
    pub end: Cursor,
}

impl Batch {
    /// The event lines, without their newlines.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.lines
            .split_inclusive(|&b| b == b'\n')
            .map(|line| &line[..line.len() - 1])
    }
}

impl Spool {
    /// Reads the next records after the last batch read (at most `max_records` and about
    /// `max_bytes`), skipping and counting records that fail their hash check. `None` when
    /// everything appended has been read.
    ///
    /// Records this process appended were hashed when sealed and are not hashed again; those
    /// found in the spool at open (written before a crash or restart) are checked.
    pub fn read_batch(
        &self,
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Option<Batch>, SpoolError> {
        loop {
            let (start, seg_len, trusted, last_segment) = {
                let mut inner = self.lock();
                let first = inner.segments.front().map(|s| s.id);
                if let Some(first) = first
                    && inner.read.segment < first
                {
                    inner.read = Cursor {
                        segment: first,
                        offset: 0,
                    };
                }
                let Some(pos) = inner
                    .segments
                    .iter()
                    .position(|s| s.id == inner.read.segment)
                else {
                    return Ok(None);
                };
                let seg = inner.segments[pos];
                if inner.read.offset >= seg.len {
                    match inner.segments.get(pos + 1) {
                        Some(next) => {
                            inner.read = Cursor {
                                segment: next.id,
                                offset: 0,
                            };
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                let last = pos + 1 == inner.segments.len();
                // What this process appended lately is still in memory: no read-back.
                if let Some(t) = inner.recent.take(inner.read, max_records, max_bytes.max(1)) {
                    inner.read = t.end;
                    drop(inner);
                    return Ok(Some(Batch {
                        count: t.count,
                        more: t.end.offset < seg.len || !last,
                        end: t.end,
                        lines: t.lines(),
                    }));
                }
                (inner.read, seg.len, inner.read >= inner.appended_from, last)
            };
            let path = files::segment_path(&self.config().dir, start.segment);
            let bytes = match files::read_range(&path, start.offset, seg_len, max_bytes.max(1)) {
                Ok(b) => b,
                // Dropped under policy `open` while we read: start again from the cursor.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("reading", &path)(e)),
            };
            let mut count = 0;
            let mut corrupt = Vec::new();
            let mut consumed = 0u64;
            let short = bytes.is_empty();
            if short {
                // The file is shorter than what was appended to it (truncated behind our back):
                // skip to its recorded end rather than wait forever.
                consumed = seg_len - start.offset;
            }
            // The lines kept when some are skipped; with none skipped the read buffer is the
            // batch, and `taken` says how much of it.
            let mut kept: Option<Vec<u8>> = None;
            let mut taken = 0;
            let mut line_start = 0;
            for newline in memchr::memchr_iter(b'\n', &bytes) {
                if count >= max_records.max(1) {
                    break;
                }
                let line = &bytes[line_start..=newline];
                line_start = newline + 1;
                let at = start.offset + consumed;
                consumed += line.len() as u64;
                let checked = match trusted {
                    true => Ok(()),
                    false => chain::check_line(&line[..line.len() - 1]).map(drop),
                };
                match (checked, kept.as_mut()) {
                    (Ok(()), None) => {
                        count += 1;
                        taken += line.len();
                    }
                    (Ok(()), Some(kept)) => {
                        count += 1;
                        kept.extend_from_slice(line);
                    }
                    (Err(e), _) => {
                        corrupt.push((at, e));
                        kept.get_or_insert_with(|| bytes[..taken].to_vec());
                    }
                }
            }
            let lines = match kept {
                Some(kept) => Bytes::from(kept),
                None => Bytes::from(bytes).slice(..taken),
            };
            let end = Cursor {
                segment: start.segment,
                offset: start.offset + consumed,
            };
            {
                let mut inner = self.lock();
                if !inner.segments.iter().any(|s| s.id == start.segment) {
                    // Policy `open` dropped the segment while we read it, and counted every
                    // record from `start` on as dropped (the read cursor was still there). The
                    // bytes we hold are the unlinked file's: delivering them would count those
                    // events twice. Forget them and read on from where the drop left the cursor.
                    continue;
                }
                inner.read = end;
            }
            if short {
                Stats::add(&self.stats.corrupt, 1);
                tracing::error!(
                    segment = start.segment,
                    offset = start.offset,
                    expected_len = seg_len,
                    "audit spool: segment shorter than written; skipping its rest"
                );
            }
            for (offset, e) in corrupt {
                Stats::add(&self.stats.corrupt, 1);
                tracing::error!(
                    segment = start.segment,
                    offset,
                    error = %e,
                    "audit spool: skipped a corrupt record"
                );
            }
            if count == 0 {
                // Only corrupt records: acknowledge them away and read on.
                self.ack(end)?;
                continue;
            }
            let more = end.offset < seg_len || !last_segment;
            return Ok(Some(Batch {
                lines,
                count,
                more,
                end,
            }));
        }
    }

    /// Marks everything before `end` delivered, persists the cursor and removes delivered
    /// segments.
    pub fn ack(&self, end: Cursor) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        if end <= inner.acked {
            return Ok(());
        }
        inner.acked = end;
        self.delete_acked(&mut inner);
        let acked = inner.acked;
        self.update_gauges(&inner);
        drop(inner);
        self.remove_doomed();
        let dir = &self.config().dir;
        files::write_cursor(dir, acked).map_err(io_err("writing the cursor in", dir))
    }

    /// Reads again from the acknowledgement cursor (after a failed batch was abandoned).
    /// Prefer [`Spool::abandon`], which also accounts for a batch whose segment was dropped.
    pub fn rewind(&self) {
        let mut inner = self.lock();
        inner.read = inner.acked;
    }

    /// Gives up on a batch that was read but not acknowledged (the shipper is stopping, or the
    /// batch could not be encoded) and reads again from the acknowledgement cursor. A drop under
    /// policy `open` leaves out the records the shipper holds, as they are still retried; if
    /// the batch's segment was dropped, nothing will send them again, so they are counted as
    /// dropped now.
    pub fn abandon(&self, batch: &Batch) {
        let mut inner = self.lock();
        inner.read = inner.acked;
        // Only a drop removes a segment the shipper has not acknowledged past.
        if inner.segments.iter().any(|s| s.id == batch.end.segment) {
            return;
        }
        drop(inner);
        let lost = batch.count as u64;
        Stats::add(&self.stats.dropped, lost);
        tracing::error!(
            segment = batch.end.segment,
            events = lost,
            max_bytes = self.config().max_bytes,
            "audit spool full (failure policy open): gave up on undelivered events whose segment was dropped"
        );
    }

    /// True when every appended record has been acknowledged.
    pub fn is_drained(&self) -> bool {
        let inner = self.lock();
        inner
            .segments
            .iter()
            .all(|s| match s.id.cmp(&inner.acked.segment) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Equal => inner.acked.offset >= s.len,
                std::cmp::Ordering::Greater => s.len == 0,
            })
    }
}
