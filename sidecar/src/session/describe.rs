//! Which result each RowDescription answers, for the row hook: portals are numbered, and an
//! Execute gets a Describe of the sidecar's own unless the client described that portal just
//! before (libpq always does).

use bytes::BytesMut;

use crate::protocol::codec::{put_cstr, put_message};
use crate::protocol::frontend::{FrontendMessage, Target};

/// Most portal names remembered (a client holding more open portals gets new numbers for the
/// oldest again, which the row hook may refuse).
const MAX_PORTALS: usize = 1024;

/// Portals seen since their Bind (name -> number, executed yet), so an Execute resuming one can
/// be told apart; and the portal the client's previous message described, if any.
#[derive(Debug, Default)]
pub(super) struct Executed {
    portals: std::collections::HashMap<Vec<u8>, (u64, bool)>,
    next: u64,
    /// Set by a forwarded Describe of a portal, taken by the message after it: an Execute of
    /// that portal right behind its Describe needs no Describe of the sidecar's own.
    pub(super) described: Option<u64>,
}

impl Executed {
    /// The portal's number, and whether it was executed since its Bind.
    fn number(&mut self, portal: &[u8]) -> (u64, bool) {
        if let Some(&(number, executed)) = self.portals.get(portal) {
            return (number, executed);
        }
        if self.portals.len() >= MAX_PORTALS {
            self.portals.clear();
        }
        self.next += 1;
        self.portals.insert(portal.to_vec(), (self.next, false));
        (self.next, false)
    }
}

/// What the server pump must know about a Describe's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Note {
    /// The sidecar added the Describe: its answer is not the client's.
    pub(super) injected: bool,
    /// The portal described (number, executed before), for a Describe of a portal.
    pub(super) portal: Option<(u64, bool)>,
}

/// For a row hook, the rows of every result must follow a RowDescription with their real
/// formats, whichever prepared statement they come from. libpq describes each portal right
/// before executing it; for other clients the sidecar adds that Describe itself (its answer is
/// for the hook only). Returns the note for messages whose RowDescription/NoData answer must be
/// matched: the client's own Describe, and an Execute that needs a Describe (written to
/// `describe`).
pub(super) fn describe_before(
    message: &FrontendMessage<'_>,
    describe: &mut BytesMut,
    executed: &mut Executed,
) -> Option<Note> {
    let described = executed.described.take();
    match message {
        FrontendMessage::Describe {
            target: Target::Portal,
            name,
        } => {
            let (number, was_executed) = executed.number(name);
            executed.described = Some(number);
            Some(Note {
                injected: false,
                portal: Some((number, was_executed)),
            })
        }
        FrontendMessage::Describe { .. } => Some(Note {
            injected: false,
            portal: None,
        }),
        FrontendMessage::Bind { portal: name, .. }
        | FrontendMessage::Close {
            target: Target::Portal,
            name,
        } => {
            executed.portals.remove(*name);
            None
        }
        FrontendMessage::Execute { portal, .. } => {
            let (number, was_executed) = executed.number(portal);
            if let Some(entry) = executed.portals.get_mut(*portal) {
                entry.1 = true;
            }
            if described == Some(number) {
                // The client's own Describe, just before, already told the hook.
                return None;
            }
            describe.clear();
            put_message(describe, b'D', |b| {
                b.extend_from_slice(b"P");
                put_cstr(b, portal);
            });
            Some(Note {
                injected: true,
                portal: Some((number, was_executed)),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn execute(portal: &'static [u8]) -> FrontendMessage<'static> {
        FrontendMessage::Execute {
            portal,
            max_rows: 0,
        }
    }

    fn injected(number: u64, was_executed: bool) -> Option<Note> {
        Some(Note {
            injected: true,
            portal: Some((number, was_executed)),
        })
    }

    #[test]
    fn executes_get_a_describe_and_portals_are_numbered_until_rebound() {
        let mut describe = BytesMut::new();
        let mut executed = Executed::default();
        assert_eq!(
            describe_before(&execute(b"c"), &mut describe, &mut executed),
            injected(1, false)
        );
        assert_eq!(&describe[..], b"D\0\0\0\x07Pc\0");
        // Resumed until the next Bind of that name; other portals get their own numbers.
        assert_eq!(
            describe_before(&execute(b""), &mut describe, &mut executed),
            injected(2, false)
        );
        assert_eq!(
            describe_before(&execute(b"c"), &mut describe, &mut executed),
            injected(1, true)
        );
        let bind = FrontendMessage::decode(b'B', b"c\0s\0\0\0\0\0\0\0").unwrap();
        assert_eq!(describe_before(&bind, &mut describe, &mut executed), None);
        assert_eq!(
            describe_before(&execute(b"c"), &mut describe, &mut executed),
            injected(3, false)
        );
        // The client's Describe of a statement is matched but not injected, and describes no portal.
        let own = FrontendMessage::decode(b'D', b"Sx\0").unwrap();
        assert_eq!(
            describe_before(&own, &mut describe, &mut executed),
            Some(Note {
                injected: false,
                portal: None
            })
        );
        assert_eq!(
            describe_before(&execute(b"c"), &mut describe, &mut executed),
            injected(3, true)
        );
    }

    #[test]
    fn a_portal_described_by_the_client_right_before_its_execute_needs_no_describe() {
        let mut describe = BytesMut::new();
        let mut executed = Executed::default();
        let describe_portal = |name: &'static [u8]| FrontendMessage::Describe {
            target: Target::Portal,
            name,
        };
        // libpq: Bind, Describe portal, Execute, Sync.
        let bind = FrontendMessage::decode(b'B', b"\0s\0\0\0\0\0\0\0").unwrap();
        assert_eq!(describe_before(&bind, &mut describe, &mut executed), None);
        assert_eq!(
            describe_before(&describe_portal(b""), &mut describe, &mut executed),
            Some(Note {
                injected: false,
                portal: Some((1, false))
            })
        );
        assert_eq!(
            describe_before(&execute(b""), &mut describe, &mut executed),
            None
        );
        // Executing it again (after PortalSuspended) without a new Describe: the sidecar's own.
        assert_eq!(
            describe_before(&execute(b""), &mut describe, &mut executed),
            injected(1, true)
        );
        // A Describe of one portal does not stand for another's Execute...
        assert_eq!(
            describe_before(&describe_portal(b"a"), &mut describe, &mut executed),
            Some(Note {
                injected: false,
                portal: Some((2, false))
            })
        );
        assert_eq!(
            describe_before(&execute(b""), &mut describe, &mut executed),
            injected(1, true)
        );
        // ...nor for an Execute that does not follow it directly.
        describe_before(&describe_portal(b"a"), &mut describe, &mut executed);
        describe_before(&FrontendMessage::Flush, &mut describe, &mut executed);
        assert_eq!(
            describe_before(&execute(b"a"), &mut describe, &mut executed),
            injected(2, false)
        );
    }
}
