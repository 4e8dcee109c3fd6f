//! Rendering events to their canonical bytes on the hot path.
//!
//! An event's canonical bytes are `serde_json` of [`Event`] (see [`crate::chain`]). Every event
//! of a connection repeats the same `identity`, `database` and `connection`, and the chain's
//! fields (`id`, `instance`, `seq`, `prev_hash`) are only known when it is sealed. So a line is
//! written in three parts, in canonical order: the head the chain stamps, the connection's
//! [`Shared`] members rendered once, and the event's own [`Tail`], written from borrowed
//! fields by hand (the bytes `serde_json` writes, at a fraction of its cost per string). A
//! [`Draft`] is those parts without an owned [`Event`]: no copy of the identity, the
//! statement text or the tables per event. The bytes are the same either way; the chain's
//! tests check them against `serde_json` of the equivalent [`Event`].

use serde::Serialize;

use crate::event::{Approval, Decision, Durations, Event, Identity, Kind, Masked, SCHEMA_V1};
use crate::json;

/// The members every event of one connection shares (`identity`, `database`, `connection`),
/// rendered once as canonical JSON without the braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    members: Box<[u8]>,
}

#[derive(Serialize)]
struct SharedFields<'a> {
    identity: &'a Identity,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<u64>,
}

impl Shared {
    /// The shared members of events about `identity` on `database`, connection `connection`.
    pub fn new(
        identity: &Identity,
        database: Option<&str>,
        connection: Option<u64>,
    ) -> Result<Self, serde_json::Error> {
        let object = serde_json::to_vec(&SharedFields {
            identity,
            database,
            connection,
        })?;
        // `{"identity":{...},...}`: never empty, `identity` is always there.
        let members = object
            .get(1..object.len().saturating_sub(1))
            .unwrap_or_default();
        Ok(Self {
            members: members.into(),
        })
    }
}

/// What an event holds after `connection`, in canonical order, borrowed. Absent (`None`,
/// empty `tables`) fields are left out, as `serde_json` of [`Event`] leaves them out.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tail<'a> {
    /// See [`Event::statement_id`].
    pub statement_id: Option<&'a str>,
    /// See [`Event::peer`].
    pub peer: Option<&'a str>,
    /// See [`Event::reason`].
    pub reason: Option<&'a str>,
    /// See [`Event::statement`].
    pub statement: Option<&'a str>,
    /// See [`Event::fingerprint`].
    pub fingerprint: Option<&'a str>,
    /// See [`Event::operation`].
    pub operation: Option<&'a str>,
    /// See [`Event::tables`].
    pub tables: &'a [String],
    /// See [`Event::decision`].
    pub decision: Option<Decision>,
    /// See [`Event::rule`].
    pub rule: Option<&'a str>,
    /// See [`Event::masked`].
    pub masked: Option<&'a Masked>,
    /// See [`Event::rows`].
    pub rows: Option<u64>,
    /// See [`Event::durations`].
    pub durations: Option<&'a Durations>,
    /// See [`Event::approval`].
    pub approval: Option<&'a Approval>,
    /// See [`Event::sqlstate`].
    pub sqlstate: Option<&'a str>,
    /// See [`Event::error`].
    pub error: Option<&'a str>,
}

/// An event of a connection whose [`Shared`] members are rendered already: what the sidecar
/// records per statement. It seals to the same bytes as the equivalent [`Event`].
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    /// What happened.
    pub kind: Kind,
    /// When, RFC 3339 UTC (see [`crate::clock::Timestamp`]).
    pub time: &'a str,
    /// The connection's members.
    pub shared: &'a Shared,
    /// The event's own fields.
    pub tail: Tail<'a>,
}

/// What the chain stamps on a line (made only by [`crate::Chain`]).
#[derive(Debug)]
pub struct Link<'a> {
    pub(crate) instance: &'a str,
    pub(crate) seq: u64,
    pub(crate) prev_hash: &'a str,
}

mod sealed {
    /// Only this crate's event types render lines.
    pub trait Sealed {}
    impl Sealed for crate::event::Event {}
    impl Sealed for super::Draft<'_> {}
}

/// Something the recorder can seal into the chain: an [`Event`] or a [`Draft`].
pub trait Record: sealed::Sealed {
    /// What the event records (for counters).
    fn kind(&self) -> Kind;
    /// Appends the canonical bytes of the event stamped with `link` to `out`.
    #[doc(hidden)]
    fn render(&self, link: &Link<'_>, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
}

impl Record for Draft<'_> {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn render(&self, link: &Link<'_>, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        write(
            SCHEMA_V1,
            self.time,
            self.kind,
            link,
            self.shared,
            &self.tail,
            out,
        );
        Ok(())
    }
}

impl Record for Event {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn render(&self, link: &Link<'_>, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        // Every field named, so a field added to `Event` must be placed here too.
        let Event {
            schema,
            id: _,
            time,
            kind,
            instance: _,
            seq: _,
            prev_hash: _,
            identity,
            database,
            connection,
            statement_id,
            peer,
            reason,
            statement,
            fingerprint,
            operation,
            tables,
            decision,
            rule,
            masked,
            rows,
            durations,
            approval,
            sqlstate,
            error,
        } = self;
        let shared = Shared::new(identity, database.as_deref(), *connection)?;
        let tail = Tail {
            statement_id: statement_id.as_deref(),
            peer: peer.as_deref(),
            reason: reason.as_deref(),
            statement: statement.as_deref(),
            fingerprint: fingerprint.as_deref(),
            operation: operation.as_deref(),
            tables,
            decision: *decision,
            rule: rule.as_deref(),
            masked: masked.as_ref(),
            rows: *rows,
            durations: durations.as_ref(),
            approval: approval.as_ref(),
            sqlstate: sqlstate.as_deref(),
            error: error.as_deref(),
        };
        write(schema, time, *kind, link, &shared, &tail, out);
        Ok(())
    }
}

/// `{"schema":..,"id":..,"time":..,"kind":..,"instance":..,"seq":..,"prev_hash":..,<shared>,<tail>}`
fn write(
    schema: &str,
    time: &str,
    kind: Kind,
    link: &Link<'_>,
    shared: &Shared,
    tail: &Tail<'_>,
    out: &mut Vec<u8>,
) {
    let mut seq = itoa::Buffer::new();
    let seq = seq.format(link.seq);
    out.extend_from_slice(b"{\"schema\":");
    json::string(out, schema);
    // The id is `<instance>-<seq>`, escaped as one string.
    out.extend_from_slice(b",\"id\":");
    json::string(out, link.instance);
    out.pop(); // its closing quote
    out.push(b'-');
    out.extend_from_slice(seq.as_bytes());
    out.push(b'"');
    out.extend_from_slice(b",\"time\":");
    json::string(out, time);
    out.extend_from_slice(b",\"kind\":");
    json::string(out, kind.label());
    out.extend_from_slice(b",\"instance\":");
    json::string(out, link.instance);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(seq.as_bytes());
    out.extend_from_slice(b",\"prev_hash\":");
    json::string(out, link.prev_hash);
    out.push(b',');
    out.extend_from_slice(&shared.members);
    tail.write(out);
    out.push(b'}');
}

impl Tail<'_> {
    /// Appends `,"<name>":<value>` for every field present, in canonical order.
    fn write(&self, out: &mut Vec<u8>) {
        // Every field named, so a field added to `Tail` must be written here too.
        let Tail {
            statement_id,
            peer,
            reason,
            statement,
            fingerprint,
            operation,
            tables,
            decision,
            rule,
            masked,
            rows,
            durations,
            approval,
            sqlstate,
            error,
        } = self;
        let text = |out: &mut Vec<u8>, name: &str, value: Option<&str>| {
            if let Some(value) = value {
                json::key(out, name);
                json::string(out, value);
            }
        };
        text(out, "statement_id", *statement_id);
        text(out, "peer", *peer);
        text(out, "reason", *reason);
        text(out, "statement", *statement);
        text(out, "fingerprint", *fingerprint);
        text(out, "operation", *operation);
        if !tables.is_empty() {
            json::key(out, "tables");
            json::strings(out, tables);
        }
        text(out, "decision", decision.as_ref().map(Decision::label));
        text(out, "rule", *rule);
        if let Some(Masked { columns, values }) = masked {
            json::key(out, "masked");
            out.extend_from_slice(b"{\"columns\":");
            json::strings(out, columns);
            json::key(out, "values");
            json::number(out, *values);
            out.push(b'}');
        }
        if let Some(rows) = rows {
            json::key(out, "rows");
            json::number(out, *rows);
        }
        if let Some(Durations {
            upstream_us,
            proxy_us,
            session_us,
        }) = durations
        {
            json::key(out, "durations");
            let open = out.len();
            for (name, value) in [
                ("upstream_us", upstream_us),
                ("proxy_us", proxy_us),
                ("session_us", session_us),
            ] {
                if let Some(value) = value {
                    json::key(out, name);
                    json::number(out, *value);
                }
            }
            // The first member's comma becomes the opening brace (`{}` when there is none).
            if out.len() == open {
                out.push(b'{');
            } else {
                out[open] = b'{';
            }
            out.push(b'}');
        }
        if let Some(Approval {
            request,
            phase,
            decided_by,
        }) = approval
        {
            json::key(out, "approval");
            out.extend_from_slice(b"{\"request\":");
            json::string(out, request);
            json::key(out, "phase");
            json::string(out, phase.label());
            text(out, "decided_by", decided_by.as_deref());
            out.push(b'}');
        }
        text(out, "sqlstate", *sqlstate);
        text(out, "error", *error);
    }
}
