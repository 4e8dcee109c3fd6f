//! File-level helpers of the spool: segment names, torn-tail repair, the acknowledgement cursor.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::chain;

/// A position in the spool: a segment id and a byte offset inside it. Orders like the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    /// Segment id.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// The last valid event found in the spool: where the chain goes on after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Instance id of the event.
    pub instance: String,
    /// Its seq.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

const SUFFIX: &str = ".ndjson";
const CURSOR_FILE: &str = "acked";

pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SUFFIX}"))
}

/// Segment ids in `dir`, ascending. Files with other names are left alone.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if let Ok(id) = stem.parse::<u64>() {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Cuts a torn last line (a write interrupted by a crash) off the file. Returns the file's length
/// afterwards and how many bytes were cut.
pub(crate) fn repair_tail(path: &Path) -> io::Result<(u64, u64)> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut keep = len;
    let mut buf = vec![0u8; 64 * 1024];
    // Scan backwards for the last newline.
    while keep > 0 {
        let chunk = keep.min(buf.len() as u64);
        file.seek(SeekFrom::Start(keep - chunk))?;
        let part = &mut buf[..chunk as usize];
        file.read_exact(part)?;
        if let Some(pos) = part.iter().rposition(|&b| b == b'\n') {
            keep = keep - chunk + pos as u64 + 1;
            break;
        }
        keep -= chunk;
    }
    if keep != len {
        file.set_len(keep)?;
        file.sync_all()?;
    }
    Ok((keep, len - keep))
}

/// Number of records (lines) in a segment.
pub(crate) fn count_records(path: &Path) -> io::Result<u64> {
    let bytes = fs::read(path)?;
    Ok(bytes.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// The last record of the segment that passes its hash check and parses.
pub(crate) fn last_valid(path: &Path) -> io::Result<Option<Head>> {
    let bytes = fs::read(path)?;
    for line in bytes.split(|&b| b == b'\n').rev() {
        if line.is_empty() || chain::check_line(line).is_err() {
            continue;
        }
        if let Ok(parsed) = chain::parse_line(line) {
            return Ok(Some(Head {
                instance: parsed.event.instance,
                seq: parsed.event.seq,
                hash: parsed.stored_hash,
            }));
        }
    }
    Ok(None)
}

/// Reads the acknowledgement cursor; `None` when absent or unreadable.
pub(crate) fn read_cursor(dir: &Path) -> Option<Cursor> {
    let text = fs::read_to_string(dir.join(CURSOR_FILE)).ok()?;
    let mut parts = text.split_whitespace();
    let segment = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some(Cursor { segment, offset })
}

/// Overwrites the acknowledgement cursor in place: one fixed-width line written at offset 0 of
/// the same file (a single small write within one page: a crash leaves the old or the new
/// line). Not renamed into place, which on every acknowledgement would free an inode and
/// discard its block; not fsynced: losing it, or reading a damaged one, only means sending
/// again, which at-least-once allows.
pub(crate) fn write_cursor(dir: &Path, cursor: Cursor) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(CURSOR_FILE))?;
    let line = format!("{:020} {:020}\n", cursor.segment, cursor.offset);
    file.write_all_at(line.as_bytes(), 0)
}

/// Reads bytes `[from, to)` of a segment, extended to end on a newline.
pub(crate) fn read_range(path: &Path, from: u64, to: u64, want: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut out = Vec::new();
    let mut limit = want.min(to - from);
    loop {
        let start = out.len() as u64;
        // Sized up front: `read_to_end` would otherwise start with small probing reads and
        // grow the buffer by doubling, copying it each time.
        out.reserve_exact(usize::try_from(limit - start).unwrap_or(0));
        (&mut file).take(limit - start).read_to_end(&mut out)?;
        if out.last() == Some(&b'\n') || out.len() as u64 >= to - from || out.len() as u64 == start
        {
            break;
        }
        // The chunk ended inside a record: read on to its end.
        limit = (limit * 2).min(to - from);
    }
    if let Some(pos) = memchr::memrchr(b'\n', &out) {
        out.truncate(pos + 1);
    } else {
        out.clear();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_cuts_only_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, b"a\nbb\ntor").unwrap();
        assert_eq!(repair_tail(&p).unwrap(), (5, 3));
        assert_eq!(fs::read(&p).unwrap(), b"a\nbb\n");
        assert_eq!(repair_tail(&p).unwrap(), (5, 0));
        fs::write(&p, b"no newline at all").unwrap();
        assert_eq!(repair_tail(&p).unwrap(), (0, 17));
    }

    #[test]
    fn the_cursor_is_overwritten_in_place_and_reads_the_older_format() {
        let dir = tempfile::tempdir().unwrap();
        // Written by an earlier version: variable width.
        fs::write(dir.path().join(CURSOR_FILE), b"3 1234\n").unwrap();
        assert_eq!(
            read_cursor(dir.path()),
            Some(Cursor {
                segment: 3,
                offset: 1234
            })
        );
        for (segment, offset) in [(u64::MAX, u64::MAX), (4, 7), (0, 0)] {
            write_cursor(dir.path(), Cursor { segment, offset }).unwrap();
            assert_eq!(read_cursor(dir.path()), Some(Cursor { segment, offset }));
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    #[test]
    fn read_range_ends_on_a_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, b"aaaa\nbbbbbbbb\ncc\n").unwrap();
        assert_eq!(read_range(&p, 0, 17, 7).unwrap(), b"aaaa\nbbbbbbbb\n");
        assert_eq!(read_range(&p, 5, 17, 2).unwrap(), b"bbbbbbbb\ncc\n");
        assert_eq!(read_range(&p, 14, 17, 100).unwrap(), b"cc\n");
    }
}
