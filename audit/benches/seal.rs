//! Nanoseconds per event to render and seal the events the sidecar writes per statement: a
//! `statement` and its `statement.result`, as pgbench's select through a masking policy makes
//! them. Single-threaded, no I/O: the CPU the chain costs each statement before any write.
//!
//! `cargo bench -p dbwarden-audit --bench seal` (EVENTS=n to change the count).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use dbwarden_audit::{Chain, Decision, Draft, Durations, Identity, Kind, Masked, Shared, Tail};

fn main() {
    let pairs: u64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
        / 2;
    let identity = Identity {
        service_account: Some("reporting".into()),
        pod: Some("reporting-7d9f5c6b8-x2x9q".into()),
        namespace: Some("shop".into()),
        ..Identity::default()
    };
    let shared = Shared::new(&identity, Some("shop"), Some(17)).unwrap();
    let tables = ["public.pgbench_accounts".to_owned()];
    let masked = Masked {
        columns: vec!["public.pgbench_accounts.abalance".into()],
        values: 1,
    };
    let time = "2026-12-06T18:40:07.518230Z";
    let mut chain = Chain::new("reporting-7d9f5c6b8-x2x9q.4c1f2a9e-0b7d-4c1e-9a51-6f0e2d3c4b5a");
    let mut out = Vec::with_capacity(64 << 10);
    let (mut bytes, start) = (0usize, Instant::now());
    for i in 0..pairs {
        let proxy = Durations {
            proxy_us: Some(30 + i % 7),
            ..Durations::default()
        };
        let statement = Draft {
            kind: Kind::Statement,
            time,
            shared: &shared,
            tail: Tail {
                statement: Some("SELECT abalance FROM pgbench_accounts WHERE aid = $1;"),
                fingerprint: Some("fp1b3c9e0d4a7f2e61"),
                operation: Some("select"),
                tables: &tables,
                decision: Some(Decision::Allowed),
                rule: Some("bench-read"),
                durations: Some(&proxy),
                ..Tail::default()
            },
        };
        let seq = chain.seal_into(black_box(&statement), &mut out).unwrap();
        let id = dbwarden_audit::chain::event_id(chain.instance(), seq);
        let upstream = Durations {
            upstream_us: Some(400 + i % 13),
            ..Durations::default()
        };
        let result = Draft {
            kind: Kind::StatementResult,
            time,
            shared: &shared,
            tail: Tail {
                statement_id: Some(&id),
                decision: Some(Decision::Masked),
                masked: Some(&masked),
                rows: Some(1),
                durations: Some(&upstream),
                ..Tail::default()
            },
        };
        chain.seal_into(black_box(&result), &mut out).unwrap();
        if out.len() > 60 << 10 {
            bytes += out.len();
            out.clear();
        }
    }
    bytes += out.len();
    let elapsed = start.elapsed();
    let events = pairs * 2;
    println!(
        "seal: {events} events ({} B per line on average) in {elapsed:.2?}: {:.0} ns per event",
        bytes as u64 / events,
        elapsed.as_nanos() as f64 / events as f64
    );
}
