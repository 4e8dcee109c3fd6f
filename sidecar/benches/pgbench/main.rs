//! pgbench select-only, directly, through pgbouncer (session mode) and through the sidecar,
//! in one run: TPS, average latency, the ratios, and the sidecar's RSS; plus the sidecar
//! enforcing a realistic policy (rules, guardrails, masking) against the pass-through one. A
//! second table puts the enforcing sidecar with audit on (events shipped to a local collector
//! that discards them) against the same sidecar without audit: the audit's TPS cost and events/s.
//! CPU time per transaction, of each proxy process and of the whole machine, is reported too:
//! it shows where a cost lands, and swings less than TPS on a shared machine.
//! Measuring helpers are in `measure.rs`. `BENCH_FLOOR=1` adds a table that puts the sidecar
//! against a proxy that only copies bytes (`floor.rs`): what the extra hop alone costs here.
//!
//! `cargo bench -p dbwarden-sidecar --bench pgbench` (BENCH_SECONDS, default 10, per run).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dbwarden_testbed::{APP, Collector, PgBouncer, Postgres, free_port, http_get};
use tokio::process::Command;

mod floor;
mod measure;

use measure::{Run, Target, measure, measure_all, median, paired_ratio, pgbench, rss_kib, us};

/// The enforcing row's policy: what a real deployment would run in front of pgbench's tables.
const POLICY: &str = "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {name: bench, namespace: bench}
spec:
  database: {host: db, name: app, environment: dev, credentialsSecretRef: {name: app-db}}
  workloadSelector: {matchLabels: {app: pgbench}}
  rules:
    - name: pgbench-rw
      subjects: {serviceAccounts: [pgbench]}
      operations: [select, insert, update, delete]
      tables: ['*']
  guardrails: {maxRows: 100000}
  masking:
    columns:
      - {columns: [public.pgbench_accounts.abalance], strategy: 'null'}
";

/// Starts the sidecar binary with `extra` appended to a one-listener configuration; returns
/// the process and its port once it accepts connections.
async fn spawn_sidecar(
    dir: &std::path::Path,
    name: &str,
    pg: &Postgres,
    extra: &str,
) -> Result<(tokio::process::Child, u16)> {
    let port = free_port()?;
    let config = dir.join(format!("sidecar-{name}.yaml"));
    let password = dir.join("password");
    std::fs::write(&password, APP.password)?;
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - name: app\n    listen: 127.0.0.1:{port}\n    upstream:\n      host: 127.0.0.1\n      \
             port: {}\n      database: app\n      tls: {{mode: disable}}\n      credentials: {{username: app, \
             password_file: {}}}\n{extra}",
            pg.port(),
            password.display()
        ),
    )?;
    let child = Command::new(env!("CARGO_BIN_EXE_dbwarden-sidecar"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, port))
}

/// Fails unless the enforcing sidecar on `port` masks what pgbench reads, so its figures are
/// those of a masking proxy.
async fn check_masked(port: u16) -> Result<()> {
    let conninfo = format!(
        "host=127.0.0.1 port={port} user={} password=no-token dbname=app",
        APP.name
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            &[&1_i32],
        )
        .await?;
    let abalance: Option<i32> = row.get(0);
    drop(client);
    connection.await.ok();
    if abalance.is_some() {
        bail!("the enforcing sidecar sent abalance unmasked: {abalance:?}");
    }
    Ok(())
}

/// Events the collector has once no more arrived for a second (shipping lags recording).
async fn settled(collector: &Collector) -> u64 {
    let (mut last, mut quiet) = (collector.events(), 0);
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = collector.events();
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
        if quiet == 5 {
            break;
        }
    }
    last
}

/// The policy-enforcing sidecar with and without audit, same pgbench runs.
async fn audit_table(pg: &Postgres, dir: &std::path::Path, plan: &Plan) -> Result<()> {
    let seconds = plan.seconds;
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let enforce = format!(
        "policies: [{}]\nidentity: {{service_account: bench/pgbench, pod: bench-0}}\n",
        policy.display()
    );
    let collector = Collector::discarding().await?;
    let health = free_port()?;
    let audit = format!(
        "{enforce}health: {{listen: 127.0.0.1:{health}}}\naudit:\n  collector_url: {}\n  \
         spool_dir: {}\n  instance: bench-0\n",
        collector.url(),
        dir.join("spool").display()
    );
    let (mut plain, plain_port) = spawn_sidecar(dir, "policy", pg, &enforce).await?;
    let (mut audited, audit_port) = spawn_sidecar(dir, "audit", pg, &audit).await?;
    println!();
    println!(
        "sidecar enforcing a policy, without and with audit (ndjson to a local collector, fsync 1 s)"
    );
    println!(
        "{:<9} {:>7} | {:>10} {:>8} {:>7} {:>7} | {:>10} {:>8} {:>7} {:>7} | {:>8} {:>10} {:>6} {:>9} {:>9}",
        "mode",
        "clients",
        "policy",
        "ms",
        "cpu us",
        "machine",
        "+audit",
        "ms",
        "cpu us",
        "machine",
        "cost",
        "events/s",
        "ev/tx",
        "us/tx",
        "machine"
    );
    let plain_target = Target {
        port: plain_port,
        password: "no-token",
        proxy: plain.id(),
    };
    let audit_target = Target {
        port: audit_port,
        proxy: audited.id(),
        ..plain_target
    };
    for &mode in &plan.modes {
        for &clients in &plan.clients {
            let (mut with_runs, mut without_runs, mut events) = (Vec::new(), Vec::new(), 0);
            for _ in 0..plan.rounds {
                without_runs.push(measure(plain_target, mode, clients, seconds).await?);
                let before = settled(&collector).await;
                with_runs.push(measure(audit_target, mode, clients, seconds).await?);
                events += settled(&collector).await - before;
            }
            let cost = 1.0 - paired_ratio(&with_runs, &without_runs);
            // Select-only: one statement per transaction, so a statement and a
            // statement.result event each.
            let transactions: f64 = with_runs.iter().map(|r| r.tps * seconds as f64).sum();
            let (without, with) = (median(without_runs), median(with_runs));
            let added = |figure: fn(&Run) -> Option<f64>| match (figure(&with), figure(&without)) {
                (Some(w), Some(wo)) => Some(w - wo),
                _ => None,
            };
            println!(
                "{mode:<9} {clients:>7} | {:>10.0} {:>8.3} {:>7} {:>7} | {:>10.0} {:>8.3} {:>7} {:>7} | {:>7.1}% {:>10.0} {:>6.2} {:>9} {:>9}",
                without.tps,
                without.latency_ms,
                us(without.cpu_us),
                us(without.machine_us),
                with.tps,
                with.latency_ms,
                us(with.cpu_us),
                us(with.machine_us),
                cost * 100.0,
                events as f64 / (seconds * plan.rounds as u64) as f64,
                events as f64 / transactions,
                us(added(|r| r.cpu_us)),
                us(added(|r| r.machine_us)),
            );
        }
    }
    println!(
        "target: audit costs <= 5% TPS (per statement run, prepared: per Execute, a statement and \
         a statement.result event)"
    );
    println!(
        "cpu us / machine: CPU time per transaction of the sidecar process / of the whole machine \
         (median); ev/tx: events delivered per transaction; us/tx: what audit adds to each"
    );
    let metrics = http_get(health, "/metrics").await?;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    println!(
        "events per spool write (sessions busy at once share one): {:.1}",
        value("dbwarden_audit_events_spooled_total ") / value("dbwarden_audit_spool_writes_total ")
    );
    plain.kill().await.ok();
    audited.kill().await.ok();
    Ok(())
}

/// Which runs to make: everything by default; `BENCH_SECONDS` (per run), `BENCH_ROUNDS` (runs
/// per figure, the median is reported), `BENCH_MODES` (comma-separated `simple,prepared`),
/// `BENCH_CLIENTS` (`1,16`) and `BENCH_AUDIT` (`0`: no audit table, `only`: nothing else) narrow
/// it down while working on one figure; `BENCH_FLOOR` (`1`: add the floor table, `only`: nothing
/// else) measures the sidecar against a byte-copying proxy.
struct Plan {
    seconds: u64,
    rounds: usize,
    modes: Vec<&'static str>,
    clients: Vec<u32>,
    /// The first table (direct, pgbouncer, sidecar, enforcing).
    main: bool,
    /// The audit table.
    audit: bool,
    /// The floor table (direct, a byte-copying proxy, the sidecar).
    floor: bool,
}

impl Plan {
    fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let seconds = match var("BENCH_SECONDS") {
            Some(s) => s.parse().with_context(|| format!("BENCH_SECONDS={s:?}"))?,
            None => 10,
        };
        let rounds = match var("BENCH_ROUNDS") {
            Some(s) => s.parse().with_context(|| format!("BENCH_ROUNDS={s:?}"))?,
            None => 3,
        };
        if rounds == 0 || seconds == 0 {
            bail!("BENCH_ROUNDS and BENCH_SECONDS must be at least 1");
        }
        let modes = match var("BENCH_MODES") {
            Some(list) => list
                .split(',')
                .map(|m| match m.trim() {
                    "simple" => Ok("simple"),
                    "prepared" => Ok("prepared"),
                    other => bail!("BENCH_MODES: unknown mode {other:?} (simple, prepared)"),
                })
                .collect::<Result<_>>()?,
            None => vec!["simple", "prepared"],
        };
        let clients = match var("BENCH_CLIENTS") {
            Some(list) => list
                .split(',')
                .map(|c| {
                    c.trim()
                        .parse()
                        .with_context(|| format!("BENCH_CLIENTS: {c:?}"))
                })
                .collect::<Result<_>>()?,
            None => vec![1, 16],
        };
        let (mut main, mut audit) = match var("BENCH_AUDIT").as_deref() {
            None | Some("1") => (true, true),
            Some("0") => (true, false),
            Some("only") => (false, true),
            Some(other) => bail!("BENCH_AUDIT: {other:?} is not 0, 1 or only"),
        };
        let floor = match var("BENCH_FLOOR").as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some("only") => {
                (main, audit) = (false, false);
                true
            }
            Some(other) => bail!("BENCH_FLOOR: {other:?} is not 0, 1 or only"),
        };
        Ok(Self {
            seconds,
            rounds,
            modes,
            clients,
            main,
            audit,
            floor,
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let plan = Plan::from_env()?;
    let pg = Postgres::start().await?;
    pgbench(pg.port(), APP.password, &["-i", "-q", "-s", "10"]).await?;
    let dir = tempfile::tempdir()?;
    if plan.main {
        let bouncer = PgBouncer::start(&pg, &APP, 64).await?;
        main_table(&pg, &bouncer, dir.path(), &plan).await?;
    }
    if plan.audit {
        audit_table(&pg, dir.path(), &plan).await?;
    }
    if plan.floor {
        floor_table(&pg, dir.path(), &plan).await?;
    }
    Ok(())
}

/// Direct, the byte-copying proxy and the pass-through sidecar: how far the sidecar is from
/// the floor any proxy stands on here.
async fn floor_table(pg: &Postgres, dir: &std::path::Path, plan: &Plan) -> Result<()> {
    let copy_port = floor::start(pg.port())?;
    let (mut sidecar, port) = spawn_sidecar(dir, "floor", pg, "").await?;
    println!();
    println!(
        "the floor: a proxy that only copies bytes (single-threaded tokio, no protocol) against \
         direct, and the pass-through sidecar against it"
    );
    println!(
        "{:<9} {:>7} | {:>10} | {:>10} {:>8} | {:>10} {:>8} | {:>10}",
        "mode", "clients", "direct", "copy", "/direct", "sidecar", "/direct", "/copy"
    );
    for &mode in &plan.modes {
        for &clients in &plan.clients {
            let targets = [
                Target {
                    port: pg.port(),
                    password: APP.password,
                    proxy: None,
                },
                Target {
                    port: copy_port,
                    password: APP.password,
                    proxy: None,
                },
                Target {
                    port,
                    password: "no-token",
                    proxy: sidecar.id(),
                },
            ];
            let runs = measure_all(&targets, mode, clients, plan).await?;
            let [direct, copy, ours] = [0, 1, 2].map(|i| median(runs[i].clone()));
            println!(
                "{mode:<9} {clients:>7} | {:>10.0} | {:>10.0} {:>7.2}x | {:>10.0} {:>7.2}x | {:>9.2}x",
                direct.tps,
                copy.tps,
                paired_ratio(&runs[1], &runs[0]),
                ours.tps,
                paired_ratio(&runs[2], &runs[0]),
                paired_ratio(&runs[2], &runs[1]),
            );
        }
    }
    sidecar.kill().await.ok();
    Ok(())
}

/// Direct, pgbouncer, the pass-through sidecar and the enforcing one, and their CPU per
/// transaction.
async fn main_table(
    pg: &Postgres,
    bouncer: &PgBouncer,
    dir: &std::path::Path,
    plan: &Plan,
) -> Result<()> {
    let seconds = plan.seconds;
    let (mut sidecar, port) = spawn_sidecar(dir, "sidecar", pg, "").await?;
    let pid = sidecar.id().context("sidecar pid")?;
    // The same sidecar enforcing a realistic policy: rules, guardrails with maxRows, and
    // masking of the one column `pgbench -S` reads (`abalance`, an integer, so `null`): every
    // row is rewritten by the row hook.
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let (mut enforcing, enforcing_port) = spawn_sidecar(
        dir,
        "enforcing",
        pg,
        &format!(
            "policies: [{}]\nidentity: {{service_account: bench/pgbench}}\n",
            policy.display()
        ),
    )
    .await?;
    check_masked(enforcing_port).await?;

    eprintln!(
        "pids: sidecar {pid}, enforcing {}",
        enforcing.id().unwrap_or_default()
    );
    println!(
        "pgbench -S (select-only), median of {} runs of {seconds} s each (taken round-robin; \
         ratios and costs: median of the ratios within each round), PostgreSQL on 127.0.0.1, \
         no TLS anywhere",
        plan.rounds
    );
    println!(
        "{:<9} {:>7} | {:>10} {:>8} | {:>10} {:>8} | {:>10} {:>8} | {:>10} {:>12} | {:>10} {:>8} {:>8}",
        "mode",
        "clients",
        "direct",
        "ms",
        "pgbouncer",
        "ms",
        "sidecar",
        "ms",
        "/direct",
        "/pgbouncer",
        "enforcing",
        "ms",
        "/sidecar"
    );
    let mut peak_rss = 0;
    let mut cpu_rows = Vec::new();
    for &mode in &plan.modes {
        for &clients in &plan.clients {
            let peak = Arc::new(AtomicU64::new(0));
            let sampled = peak.clone();
            let sampler = tokio::spawn(async move {
                loop {
                    sampled.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let target = |port, password, proxy| Target {
                port,
                password,
                proxy,
            };
            let targets = [
                target(pg.port(), APP.password, None),
                target(bouncer.port(), APP.password, Some(bouncer.pid())),
                target(port, "no-token", Some(pid)),
                target(enforcing_port, "no-token", enforcing.id()),
            ];
            let runs = measure_all(&targets, mode, clients, plan).await?;
            sampler.abort();
            let [of_direct, of_pool, of_policed] = [
                paired_ratio(&runs[2], &runs[0]),
                paired_ratio(&runs[2], &runs[1]),
                paired_ratio(&runs[3], &runs[2]),
            ];
            let [direct, pool, ours, policed] = [0, 1, 2, 3].map(|i| median(runs[i].clone()));
            if clients == 16 {
                peak_rss = peak_rss.max(peak.load(Ordering::Relaxed));
            }
            cpu_rows.push(format!(
                "{mode:<9} {clients:>7} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>11}",
                us(direct.machine_us),
                us(pool.machine_us),
                us(ours.machine_us),
                us(policed.machine_us),
                us(pool.cpu_us),
                us(ours.cpu_us),
                us(policed.cpu_us),
                match (ours.cpu_us, pool.cpu_us) {
                    (Some(a), Some(b)) => format!("{:.2}x", a / b),
                    _ => "-".to_owned(),
                }
            ));
            println!(
                "{mode:<9} {clients:>7} | {:>10.0} {:>8.3} | {:>10.0} {:>8.3} | {:>10.0} {:>8.3} | {:>9.2}x {:>11.2}x | {:>10.0} {:>8.3} {:>7.2}x",
                direct.tps,
                direct.latency_ms,
                pool.tps,
                pool.latency_ms,
                ours.tps,
                ours.latency_ms,
                of_direct,
                of_pool,
                policed.tps,
                policed.latency_ms,
                of_policed
            );
        }
    }
    println!(
        "sidecar peak RSS during the 16-client runs: {:.1} MiB (target <= 20 MiB)",
        peak_rss as f64 / 1024.0
    );
    println!("targets with 16 clients: sidecar >= 0.75x direct and >= 1.0x pgbouncer");
    println!("target: enforcing (rules, guardrails, masking) >= 0.9x the pass-through sidecar");
    println!();
    println!(
        "CPU time per transaction, us (median of the runs above): the whole machine, then the \
         proxy process alone"
    );
    println!(
        "{:<9} {:>7} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>11}",
        "mode",
        "clients",
        "direct",
        "pgbouncer",
        "sidecar",
        "enforcing",
        "pgbouncer",
        "sidecar",
        "enforcing",
        "sidecar/pgb"
    );
    for row in cpu_rows {
        println!("{row}");
    }
    sidecar.kill().await.ok();
    enforcing.kill().await.ok();
    Ok(())
}
