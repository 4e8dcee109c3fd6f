//! A bounded on-disk queue of event lines: a directory of append-only segment files
//! (`<id>.ndjson`), an acknowledgement cursor (`acked`) and a lock file.
//!
//! Appends go straight to the file (no user-space buffer), so a process crash loses nothing the
//! spool accepted; [`FsyncPolicy`] decides what a machine crash may lose. Records are replayed
//! in order from the cursor, also after a restart; a torn last line is cut at open and a record
//! failing its hash check is skipped, counted and logged.

mod config;
mod files;
mod reader;
mod recent;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::mem;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

pub use config::{FailurePolicy, FsyncPolicy, SpoolConfig, SpoolError};
pub use files::{Cursor, Head};
pub use reader::Batch;

use crate::stats::Stats;
use recent::Recent;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) id: u64,
    pub(crate) len: u64,
    pub(crate) records: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) segments: VecDeque<Segment>,
    active: Option<File>,
    pub(crate) acked: Cursor,
    pub(crate) read: Cursor,
    /// Where this process's appends begin: records before it were found at open and are
    /// hash-checked when read; later ones were sealed here and are not hashed twice.
    pub(crate) appended_from: Cursor,
    dirty_since: Option<Instant>,
    /// Closed segments with appends not yet forced to disk: the interval fsync takes them, so
    /// a rotation on the statement path never waits for the disk.
    unsynced: Vec<(u64, File)>,
    /// Delivered segments to delete, outside the lock and off the statement path (deleting
    /// can wait for the device: ext4 discards the freed blocks).
    pub(crate) doomed: Vec<u64>,
    /// The newest appends, so the shipper need not read them back from the file.
    pub(crate) recent: Recent,
}

/// The spool. Shared by the recorder (appends) and the shipper (reads, acknowledgements).
#[derive(Debug)]
pub struct Spool {
    cfg: SpoolConfig,
    pub(crate) inner: Mutex<Inner>,
    /// Undelivered bytes as of the last change, for [`Spool::check_room`] to read without
    /// taking the lock (on the statement path, while the shipper may hold it).
    undelivered: AtomicU64,
    pub(crate) stats: Arc<Stats>,
    _lock: File,
}

impl Spool {
    /// Opens (or creates) the spool, repairs a torn tail and returns the last valid event, from
    /// which the chain goes on.
    pub fn open(
        mut cfg: SpoolConfig,
        stats: Arc<Stats>,
    ) -> Result<(Spool, Option<Head>), SpoolError> {
        if cfg.max_bytes < 4096 {
            return Err(SpoolError::Config(format!(
                "maxBytes {} is below 4096",
                cfg.max_bytes
            )));
        }
        cfg.segment_bytes = cfg.segment_bytes.clamp(1024, cfg.max_bytes / 4);
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("opening", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked { dir }),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("locking", &lock_path)(e)),
        }
        let ids = files::list_segments(&dir).map_err(io_err("listing", &dir))?;
        let mut segments = VecDeque::new();
        for (i, &id) in ids.iter().enumerate() {
            let path = files::segment_path(&dir, id);
            let len = if i + 1 == ids.len() {
                let (len, cut) = files::repair_tail(&path).map_err(io_err("repairing", &path))?;
                if cut > 0 {
                    tracing::warn!(path = %path.display(), bytes = cut, "audit spool: cut a torn last record");
                }
                len
            } else {
                fs::metadata(&path).map_err(io_err("reading", &path))?.len()
            };
            let records = files::count_records(&path).map_err(io_err("reading", &path))?;
            segments.push_back(Segment { id, len, records });
        }
        let mut head = None;
        for seg in segments.iter().rev() {
            let path = files::segment_path(&dir, seg.id);
            head = files::last_valid(&path).map_err(io_err("reading", &path))?;
            if head.is_some() {
                break;
            }
        }
        let first = segments
            .front()
            .map(|s| Cursor {
                segment: s.id,
                offset: 0,
            })
            .unwrap_or_default();
        let mut acked = files::read_cursor(&dir).unwrap_or(first).max(first);
        match segments.iter().find(|s| s.id >= acked.segment) {
            Some(seg) if seg.id == acked.segment => acked.offset = acked.offset.min(seg.len),
            Some(seg) => {
                acked = Cursor {
                    segment: seg.id,
                    offset: 0,
                }
            }
            // A cursor past every segment does not match this spool: send everything again
            // (a duplicate is better than a loss).
            None => acked = first,
        }
        let active = match segments.back() {
            Some(seg) => {
                let path = files::segment_path(&dir, seg.id);
                Some(
                    OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .map_err(io_err("opening", &path))?,
                )
            }
            None => None,
        };
        let appended_from = segments
            .back()
            .map(|s| Cursor {
                segment: s.id,
                offset: s.len,
            })
            .unwrap_or_default();
        let spool = Spool {
            cfg,
            inner: Mutex::new(Inner {
                segments,
                active,
                acked,
                read: acked,
                appended_from,
                dirty_since: None,
                unsynced: Vec::new(),
                doomed: Vec::new(),
                recent: Recent::default(),
            }),
            undelivered: AtomicU64::new(0),
            stats,
            _lock: lock,
        };
        spool.update_gauges(&spool.lock());
        Ok((spool, head))
    }

    /// The settings in force (with `segment_bytes` clamped).
    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough state: counters and cursors
        // are only advanced after the file operation they describe succeeded.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Undelivered bytes.
    fn pending(&self, inner: &Inner) -> u64 {
        bytes_from(inner, inner.acked)
    }

    /// True when the shipper should read now rather than linger for more: a batch of
    /// `batch_max_bytes` is waiting, or enough that more would push it out of memory (see
    /// [`recent::RECENT_MAX_BYTES`]) and it would have to be read back from the file.
    pub fn should_read(&self, batch_max_bytes: u64) -> bool {
        let inner = self.lock();
        let enough = batch_max_bytes.min(recent::RECENT_MAX_BYTES as u64 / 2);
        bytes_from(&inner, inner.read) >= enough
    }

    /// Publishes the sizes after a change: the gauges, and the undelivered bytes
    /// [`Spool::check_room`] reads. Called under the lock after every append, acknowledgement
    /// and drop.
    pub(crate) fn update_gauges(&self, inner: &Inner) {
        let pending = self.pending(inner);
        self.undelivered.store(pending, Relaxed);
        self.stats.spool_bytes.store(pending, Relaxed);
        self.stats
            .spool_segments
            .store(inner.segments.len() as u64, Relaxed);
    }

    /// `Ok` when `bytes` more would fit under the limit, else [`SpoolError::Full`]. Does not
    /// wait for the lock, so the answer may be a moment old: [`Spool::append_lines`] checks
    /// again under the lock, and under policy `closed` refuses what no longer fits.
    pub fn check_room(&self, bytes: u64) -> Result<(), SpoolError> {
        let pending = self.undelivered.load(Relaxed);
        match pending.saturating_add(bytes) <= self.cfg.max_bytes {
            true => Ok(()),
            false => Err(SpoolError::Full {
                pending,
                max: self.cfg.max_bytes,
            }),
        }
    }

    /// Appends records (event lines without newline) in one write. Under policy `closed` a full
    /// spool returns [`SpoolError::Full`] and writes nothing; under `open` the oldest segments
    /// are dropped to make room.
    pub fn append(&self, records: &[&[u8]]) -> Result<(), SpoolError> {
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for r in records {
            buf.extend_from_slice(r);
            buf.push(b'\n');
        }
        self.append_lines(buf, records.len() as u64)
    }

    /// Like [`Spool::append`], for `records` lines already joined, each ending in a newline.
    /// The spool keeps `buf` in memory for the shipper until it is delivered (or pushed out by
    /// newer appends), so the shipper need not read it back from the file.
    pub fn append_lines(&self, buf: Vec<u8>, records: u64) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        let result = self.append_locked(&mut inner, buf, records);
        // Also after a failure: a drop or rotation before it may have changed the sizes.
        self.update_gauges(&inner);
        result
    }

    fn append_locked(
        &self,
        inner: &mut Inner,
        buf: Vec<u8>,
        records: u64,
    ) -> Result<(), SpoolError> {
        let size = buf.len() as u64;
        let pending = self.pending(inner);
        if pending + size > self.cfg.max_bytes {
            match self.cfg.failure_policy {
                FailurePolicy::Closed => {
                    return Err(SpoolError::Full {
                        pending,
                        max: self.cfg.max_bytes,
                    });
                }
                FailurePolicy::Open => self.drop_oldest(inner, size),
            }
        }
        // Also when there is no open segment: the last rotation (or a cut) failed.
        let rotate = match (inner.segments.back(), &inner.active) {
            (None, _) | (_, None) => true,
            (Some(last), Some(_)) => last.len > 0 && last.len + size > self.cfg.segment_bytes,
        };
        if rotate {
            self.rotate(inner)?;
        }
        let Inner {
            segments, active, ..
        } = &mut *inner;
        let (Some(seg), Some(file)) = (segments.back_mut(), active.as_mut()) else {
            return Err(SpoolError::Config("no active segment".into()));
        };
        // The path is only named in errors: not formatted on the statement path.
        let path = |id| files::segment_path(&self.cfg.dir, id);
        let failed = match file.write_all(&buf) {
            Err(e) => Some(io_err("writing", &path(seg.id))(e)),
            // Not known to be on disk, so not stored: the recorder counts its events as refused
            // or dropped, and they must not be delivered as well.
            Ok(()) if self.cfg.fsync == FsyncPolicy::EveryBatch => sync_append(file)
                .err()
                .map(|e| io_err("syncing", &path(seg.id))(e)),
            Ok(()) => None,
        };
        if let Some(error) = failed {
            // Cut what was written so the file holds whole, stored records only. Appends go to
            // the end of the file: if it cannot be cut, the next append starts a new segment.
            if let Err(e) = file.set_len(seg.len) {
                tracing::error!(segment = seg.id, error = %e, "audit spool: cutting a failed append failed; starting a new segment");
                *active = None;
            }
            return Err(error);
        }
        let at = Cursor {
            segment: seg.id,
            offset: seg.len,
        };
        seg.len += size;
        seg.records += records;
        // The auditor's timer calls `sync_if_due`, off the statement path.
        if matches!(self.cfg.fsync, FsyncPolicy::Interval(_)) && inner.dirty_since.is_none() {
            inner.dirty_since = Some(Instant::now());
        }
        inner.recent.push(at, buf, records);
        Ok(())
    }

    /// Forces appended records to disk if an interval fsync is due (the shipper calls this).
    /// The fsync runs on a duplicate of the file handle outside the lock, so appends do not
    /// wait for the disk.
    pub fn sync_if_due(&self) -> Result<(), SpoolError> {
        let files = {
            let mut inner = self.lock();
            let due = match (self.cfg.fsync, inner.dirty_since) {
                (FsyncPolicy::Interval(every), Some(since)) => since.elapsed() >= every,
                _ => false,
            };
            if !due {
                return Ok(());
            }
            let mut files = mem::take(&mut inner.unsynced);
            if let (Some(file), Some(seg)) = (inner.active.as_ref(), inner.segments.back()) {
                let path = files::segment_path(&self.cfg.dir, seg.id);
                let file = file
                    .try_clone()
                    .map_err(io_err("duplicating the handle of", &path))?;
                files.push((seg.id, file));
            }
            inner.dirty_since = None;
            files
        };
        self.sync_files(files)
    }

    /// Syncs every file (a failure does not skip the others); the first error is returned.
    fn sync_files(&self, files: Vec<(u64, File)>) -> Result<(), SpoolError> {
        let mut first = Ok(());
        for (id, file) in files {
            let path = files::segment_path(&self.cfg.dir, id);
            if let Err(e) = file.sync_data()
                && first.is_ok()
            {
                first = Err(io_err("syncing", &path)(e));
            }
        }
        first
    }

    /// Deletes the delivered segments [`Self::delete_acked`] set aside (call without the lock).
    pub(crate) fn remove_doomed(&self) {
        let doomed = mem::take(&mut self.lock().doomed);
        for id in doomed {
            let path = files::segment_path(&self.cfg.dir, id);
            if let Err(e) = fs::remove_file(&path) {
                tracing::error!(path = %path.display(), error = %e, "audit spool: removing a delivered segment failed");
            }
        }
    }

    /// Forces appended records to disk now.
    pub fn sync(&self) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        self.sync_locked(&mut inner)
    }

    fn sync_locked(&self, inner: &mut Inner) -> Result<(), SpoolError> {
        self.sync_files(mem::take(&mut inner.unsynced))?;
        if let (Some(file), Some(seg)) = (inner.active.as_ref(), inner.segments.back()) {
            let path = files::segment_path(&self.cfg.dir, seg.id);
            file.sync_data().map_err(io_err("syncing", &path))?;
        }
        inner.dirty_since = None;
        Ok(())
    }

    fn rotate(&self, inner: &mut Inner) -> Result<(), SpoolError> {
        let old = inner.active.take();
        if let (Some(_), Some(old), Some(seg)) = (inner.dirty_since, old, inner.segments.back()) {
            // Left for the interval fsync, which also covers the new segment from now on.
            inner.unsynced.push((seg.id, old));
        }
        let id = inner.segments.back().map_or(0, |s| s.id + 1);
        let path = files::segment_path(&self.cfg.dir, id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err("creating", &path))?;
        inner.active = Some(file);
        inner.segments.push_back(Segment {
            id,
            len: 0,
            records: 0,
        });
        if inner.segments.len() == 1 {
            inner.acked = Cursor {
                segment: id,
                offset: 0,
            };
            inner.read = inner.acked;
        }
        self.delete_acked(inner);
        Ok(())
    }

    /// Policy `open`: drops closed segments, oldest first, until `size` fits.
    fn drop_oldest(&self, inner: &mut Inner, size: u64) {
        while self.pending(inner) + size > self.cfg.max_bytes && inner.segments.len() > 1 {
            let Some(seg) = inner.segments.pop_front() else {
                break;
            };
            // Its events are gone: forcing them to disk would only cost the device a write.
            Self::forget_unsynced(inner, seg.id);
            let path = files::segment_path(&self.cfg.dir, seg.id);
            // Records the shipper has read are in its hands and still retried (if it gives up
            // on them, `abandon` counts them); the rest is lost.
            let lost = if inner.read.segment > seg.id {
                0
            } else {
                let read_before = if inner.read.segment == seg.id {
                    inner.read.offset
                } else {
                    0
                };
                lost_records(&path, read_before, seg.records)
            };
            if let Err(e) = fs::remove_file(&path) {
                tracing::error!(path = %path.display(), error = %e, "audit spool: removing a dropped segment failed");
            }
            Stats::add(&self.stats.dropped, lost);
            tracing::error!(
                segment = seg.id,
                events = lost,
                max_bytes = self.cfg.max_bytes,
                "audit spool full (failure policy open): dropped the oldest segment's undelivered events"
            );
            let next = Cursor {
                segment: seg.id + 1,
                offset: 0,
            };
            inner.acked = inner.acked.max(next);
            inner.read = inner.read.max(next);
        }
        Self::forget_delivered(inner);
    }

    /// Closes the handle the interval fsync kept for segment `id`, if any.
    fn forget_unsynced(inner: &mut Inner, id: u64) {
        inner.unsynced.retain(|(unsynced, _)| *unsynced != id);
    }

    /// Lets go of the in-memory copies of what was delivered, deleted or dropped.
    fn forget_delivered(inner: &mut Inner) {
        let first = inner.segments.front().map_or(0, |s| s.id);
        inner.recent.forget_before(inner.acked, first);
    }

    /// Removes segments wholly before the acknowledgement cursor (never the active one).
    pub(crate) fn delete_acked(&self, inner: &mut Inner) {
        while inner.segments.len() > 1 {
            let Some(&first) = inner.segments.front() else {
                break;
            };
            let done = first.id < inner.acked.segment
                || (first.id == inner.acked.segment && inner.acked.offset >= first.len);
            if !done {
                break;
            }
            inner.segments.pop_front();
            // Delivered: no need to force it to disk any more (the interval fsync would write
            // out a segment about to be deleted).
            Self::forget_unsynced(inner, first.id);
            inner.doomed.push(first.id);
            let next = Cursor {
                segment: first.id + 1,
                offset: 0,
            };
            inner.acked = inner.acked.max(next);
            inner.read = inner.read.max(next);
        }
        Self::forget_delivered(inner);
    }
}

/// Forces an append to disk (`EveryBatch`).
fn sync_append(file: &File) -> io::Result<()> {
    #[cfg(test)]
    if tests::FAIL_SYNC.with(|fail| fail.replace(false)) {
        return Err(io::Error::other("injected fsync failure"));
    }
    file.sync_data()
}

/// Bytes in the spool from `from` on.
fn bytes_from(inner: &Inner, from: Cursor) -> u64 {
    inner
        .segments
        .iter()
        .map(|s| match s.id.cmp(&from.segment) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Equal => s.len.saturating_sub(from.offset),
            std::cmp::Ordering::Greater => s.len,
        })
        .sum()
}

/// Records at or after byte `from` of a segment (best effort: the segment's count if unreadable).
fn lost_records(path: &Path, from: u64, all: u64) -> u64 {
    if from == 0 {
        return all;
    }
    match fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
            bytes[start..].iter().filter(|&&b| b == b'\n').count() as u64
        }
        Err(_) => all,
    }
}

#[cfg(test)]
mod tests;
