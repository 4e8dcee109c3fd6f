//! COPY FROM STDIN as the client pump follows it: which copy messages belong to a COPY, the
//! Syncs the database ignores while it waits for data, and the COPYs a refused result
//! withheld from the client.
//!
//! When the row hook refuses a result, the server pump drops the rest of the exchange, and
//! with it the CopyInResponse of a COPY FROM STDIN sent behind the refused statement. The
//! client never learns that the COPY started and sends no data, so the client pump ends it
//! with a CopyFail. While the database waits for data it ignores Syncs and Flushes; any other
//! message makes it end the connection (FATAL "protocol synchronization was lost", which the
//! server pump relays), so a CopyFail that finds the database still waiting has only Syncs and
//! Flushes in front of it.

/// The client pump's view of COPY FROM STDIN.
#[derive(Debug, Default)]
pub(super) struct CopyTracking {
    /// Copy data is flowing (between the first CopyData and CopyDone/CopyFail).
    active: bool,
    /// The CopyInResponses whose COPY the client has begun (compared with the server pump's
    /// count: a copy message with none outstanding is stray).
    begun: u64,
    /// Syncs forwarded since the last Query or Execute: ignored by the server if that
    /// message started a COPY.
    syncs_since_start: u64,
    /// COPYs the server pump withheld that this pump has failed.
    pub withheld_failed: u64,
}

impl CopyTracking {
    /// Follows a message forwarded when `copy_ins` CopyInResponses have been received;
    /// returns how many more (or fewer) ReadyForQuery messages the database owes because of
    /// it.
    ///
    /// Query, Sync and FunctionCall each produce one, except that a server in COPY FROM STDIN
    /// mode ignores Sync. Clients pipeline a Sync right behind the Execute that starts a COPY
    /// (tokio-postgres does), before anyone can know it is a COPY; so when the first copy
    /// message shows up, the Syncs sent since the last Query or Execute are taken back.
    pub fn forwarded(&mut self, tag: u8, copy_ins: u64) -> i64 {
        match tag {
            // Outside a COPY the server drops copy messages: so does the count (a client could
            // otherwise shift every later result onto the wrong statement).
            b'd' | b'c' | b'f' if !self.active && copy_ins <= self.begun => 0,
            b'd' | b'c' | b'f' => {
                let taken_back = if self.active {
                    0
                } else {
                    self.begun += 1;
                    self.syncs_since_start
                };
                self.active = tag == b'd';
                self.syncs_since_start = 0;
                -(taken_back as i64)
            }
            _ if self.active => 0,
            b'Q' | b'E' => {
                self.syncs_since_start = 0;
                i64::from(tag == b'Q')
            }
            b'S' => {
                self.syncs_since_start += 1;
                1
            }
            b'F' => 1,
            _ => 0,
        }
    }

    /// The sidecar's CopyFail for a COPY the server pump withheld (`copy_ins` counts its
    /// CopyInResponse): counted as the client's own would be, it returns the Syncs to send
    /// again behind it. The database ignored them while it waited for data, and the client is
    /// owed their ReadyForQuery (in the extended protocol the database also skips to the next
    /// Sync after the failure).
    pub fn fail_withheld(&mut self, copy_ins: u64) -> u64 {
        self.withheld_failed += 1;
        self.forwarded(b'f', copy_ins).unsigned_abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forwards `tags` in order; returns the ReadyForQuery messages owed.
    fn send(copy: &mut CopyTracking, tags: &[u8], copy_ins: u64) -> i64 {
        tags.iter().map(|&tag| copy.forwarded(tag, copy_ins)).sum()
    }

    #[test]
    fn syncs_behind_a_copy_are_taken_back_at_its_first_copy_message() {
        let mut copy = CopyTracking::default();
        assert_eq!(send(&mut copy, b"PBES", 0), 1);
        // The CopyInResponse came: the Sync was ignored.
        assert_eq!(send(&mut copy, b"dd", 1), -1);
        assert_eq!(send(&mut copy, b"cS", 1), 1);
        // Copy messages with no COPY outstanding are dropped by the database.
        assert_eq!(send(&mut copy, b"dcf", 1), 0);
    }

    #[test]
    fn a_withheld_copy_is_failed_and_the_syncs_behind_it_sent_again() {
        let mut copy = CopyTracking::default();
        assert_eq!(send(&mut copy, b"PBEPBES", 0), 1);
        assert_eq!(copy.fail_withheld(1), 1);
        assert_eq!(copy.withheld_failed, 1);
        // The client's own copy messages are stray now, as at the database.
        assert_eq!(send(&mut copy, b"dc", 1), 0);
        // A COPY started by a Query, with a Flush behind it: nothing to send again.
        assert_eq!(send(&mut copy, b"QH", 1), 1);
        assert_eq!(copy.fail_withheld(2), 0);
    }
}
