//! The hot path renders lines in parts (the chain's head, a connection's shared members, the
//! event's own fields); the canonical bytes are `serde_json` of the whole event. Every line
//! sealed either way must be exactly those bytes, whatever the strings hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbwarden_audit::chain::{Chain, parse_line, seal};
use dbwarden_audit::{
    Approval, ApprovalPhase, Decision, Draft, Durations, Event, Identity, Kind, Masked, Shared,
    Tail,
};
use proptest::prelude::*;

/// Strings a client, a token or a database could put in an event: quotes, backslashes,
/// control characters, non-ASCII, empty.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z_.]{1,12}",
        "\\PC{0,24}",
        "[\"\\\\\u{0}-\u{1f}\u{7f}é€😀 a]{0,16}",
    ]
}

fn maybe<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::ConnectionOpen),
        Just(Kind::ConnectionClose),
        Just(Kind::Statement),
        Just(Kind::StatementResult),
        Just(Kind::AuthFailure),
        Just(Kind::ApprovalRequested),
        Just(Kind::ApprovalDecided),
    ]
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        Just(Decision::Allowed),
        Just(Decision::Denied),
        Just(Decision::Masked),
        Just(Decision::ApprovalRequested),
        Just(Decision::Approved),
        Just(Decision::WouldDeny),
    ]
}

fn phase() -> impl Strategy<Value = ApprovalPhase> {
    prop_oneof![
        Just(ApprovalPhase::Pending),
        Just(ApprovalPhase::Approved),
        Just(ApprovalPhase::Rejected),
        Just(ApprovalPhase::Expired),
    ]
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        maybe(text()),
        prop::collection::vec(text(), 0..3),
        maybe(text()),
        maybe(text()),
        maybe(text()),
    )
        .prop_map(|(user, groups, service_account, pod, namespace)| Identity {
            user,
            groups,
            service_account,
            pod,
            namespace,
        })
}

prop_compose! {
    fn event()(
        (kind, time, identity, database, connection, statement_id, peer, reason) in
            (kind(), text(), identity(), maybe(text()), maybe(any::<u64>()), maybe(text()),
             maybe(text()), maybe(text())),
        (statement, fingerprint, operation, tables, decision, rule) in
            (maybe(text()), maybe(text()), maybe(text()), prop::collection::vec(text(), 0..3),
             maybe(decision()), maybe(text())),
        (masked, rows, durations, approval, sqlstate, error) in
            (maybe((prop::collection::vec(text(), 0..3), any::<u64>())), maybe(any::<u64>()),
             maybe((maybe(any::<u64>()), maybe(any::<u64>()), maybe(any::<u64>()))),
             maybe((text(), phase(), maybe(text()))), maybe(text()), maybe(text())),
    ) -> Event {
        let mut e = Event::at(kind, time).identity(identity);
        e.database = database;
        e.connection = connection;
        e.statement_id = statement_id;
        e.peer = peer;
        e.reason = reason;
        e.statement = statement;
        e.fingerprint = fingerprint;
        e.operation = operation;
        e.tables = tables;
        e.decision = decision;
        e.rule = rule;
        e.masked = masked.map(|(columns, values)| Masked { columns, values });
        e.rows = rows;
        e.durations = durations.map(|(upstream_us, proxy_us, session_us)| Durations {
            upstream_us,
            proxy_us,
            session_us,
        });
        e.approval = approval.map(|(request, phase, decided_by)| Approval {
            request,
            phase,
            decided_by,
        });
        e.sqlstate = sqlstate;
        e.error = error;
        e
    }
}

/// The draft of `e` the way the sidecar builds one: shared members once, the rest borrowed.
fn draft<'a>(e: &'a Event, shared: &'a Shared) -> Draft<'a> {
    Draft {
        kind: e.kind,
        time: &e.time,
        shared,
        tail: Tail {
            statement_id: e.statement_id.as_deref(),
            peer: e.peer.as_deref(),
            reason: e.reason.as_deref(),
            statement: e.statement.as_deref(),
            fingerprint: e.fingerprint.as_deref(),
            operation: e.operation.as_deref(),
            tables: &e.tables,
            decision: e.decision,
            rule: e.rule.as_deref(),
            masked: e.masked.as_ref(),
            rows: e.rows,
            durations: e.durations.as_ref(),
            approval: e.approval.as_ref(),
            sqlstate: e.sqlstate.as_deref(),
            error: e.error.as_deref(),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn drafts_and_events_seal_to_the_canonical_bytes(
        events in prop::collection::vec(event(), 1..4),
        instance in prop_oneof!["[A-Za-z0-9._:-]{1,20}", "[\"\\\\\u{0}-\u{1f}é a-z]{1,12}"],
    ) {
        let (mut by_event, mut by_draft) = (Chain::new(instance.clone()), Chain::new(instance));
        for e in events {
            // The line holds `e` itself with only the chain's fields added: a field the writer
            // dropped or mislabelled would parse to another valid event.
            let sealed = by_event.prepare(e.clone()).unwrap();
            let stamped = parse_line(&sealed.line).unwrap().event;
            let unstamped = Event {
                id: e.id.clone(),
                instance: e.instance.clone(),
                seq: e.seq,
                prev_hash: e.prev_hash.clone(),
                ..stamped.clone()
            };
            prop_assert_eq!(&unstamped, &e);
            // The reference bytes: serde_json of all of the stamped event.
            let reference = seal(&stamped).unwrap();
            let mut lines = Vec::new();
            by_event.seal_into(&e, &mut lines).unwrap();
            let shared = Shared::new(&e.identity, e.database.as_deref(), e.connection).unwrap();
            let mut drafted = Vec::new();
            by_draft.seal_into(&draft(&e, &shared), &mut drafted).unwrap();
            prop_assert_eq!(lines.pop(), Some(b'\n'));
            prop_assert_eq!(drafted.pop(), Some(b'\n'));
            prop_assert_eq!(
                String::from_utf8_lossy(&lines),
                String::from_utf8_lossy(&reference.line)
            );
            prop_assert_eq!(&drafted, &lines);
            let parsed = parse_line(&lines).unwrap();
            prop_assert_eq!(&parsed.stored_hash, &parsed.computed_hash);
        }
    }
}
