//! One write per batch. A pump forwards runs of complete frames straight from its read buffer;
//! only when it must splice (drop, replace or add a message) does it copy into [`Output`], so a
//! batch with a splice still leaves in one `write(2)` instead of one per piece.

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::OUT_FLUSH_BYTES;

/// Bytes queued for one side of the session.
#[derive(Debug, Default)]
pub(super) struct Output {
    queued: BytesMut,
}

impl Output {
    /// Queues `bytes` behind what is already queued.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.queued.extend_from_slice(bytes);
    }

    /// True when enough is queued to be written before the batch ends.
    pub(super) fn is_large(&self) -> bool {
        self.queued.len() >= OUT_FLUSH_BYTES
    }

    /// Writes what is queued.
    pub(super) async fn flush<W: AsyncWrite + Unpin>(&mut self, to: &mut W) -> std::io::Result<()> {
        to.write_all(&self.queued).await?;
        self.queued.clear();
        Ok(())
    }

    /// Writes what is queued followed by `tail`, in one write; with nothing queued `tail` is
    /// written straight from where it is (the pass-through path copies nothing).
    pub(super) async fn finish<W: AsyncWrite + Unpin>(
        &mut self,
        to: &mut W,
        tail: &[u8],
    ) -> std::io::Result<()> {
        if self.queued.is_empty() {
            if !tail.is_empty() {
                to.write_all(tail).await?;
            }
            return Ok(());
        }
        self.queued.extend_from_slice(tail);
        to.write_all(&self.queued).await?;
        self.queued.clear();
        crate::net::reclaim(&mut self.queued);
        Ok(())
    }
}
