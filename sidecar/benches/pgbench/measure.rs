//! One pgbench run against a target, and what it cost: TPS, latency, and CPU time per
//! transaction of the proxy process and of the whole machine.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dbwarden_testbed::APP;
use tokio::process::Command;

use crate::Plan;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) tps: f64,
    pub(crate) latency_ms: f64,
    /// CPU time (user and system) the proxy process spent per transaction, in µs: a
    /// steadier figure of a proxy's cost than TPS on a machine where TPS swings between runs.
    pub(crate) cpu_us: Option<f64>,
    /// CPU time the whole machine spent per transaction (every process and the kernel), in
    /// µs: a proxy also costs its neighbours (their wakeups and their loopback traffic).
    pub(crate) machine_us: Option<f64>,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// Busy CPU seconds of the whole machine so far (user, nice, system, irq and softirq time of
/// the first line of `/proc/stat`; idle, iowait and steal left out).
fn machine_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| ticks.get(i))
        .sum::<Option<f64>>()?;
    Some(busy / USER_HZ)
}

/// CPU seconds `pid` has used so far (all its threads, also those that ended).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `after` starts at field 3.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / USER_HZ)
}

fn pg_bin(name: &'static str) -> PathBuf {
    dbwarden_testbed::pg_tool(name).expect("PostgreSQL's programs (apt-get install postgresql)")
}

pub(crate) async fn pgbench(port: u16, password: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(pg_bin("pgbench"))
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", APP.name])
        .args(args)
        .arg("app")
        .output()
        .await
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "pgbench {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

fn field(out: &str, prefix: &str) -> Result<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no '{prefix}' in pgbench output:\n{out}"))
}

/// Where a pgbench run connects, and the proxy process in between (none: direct).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) port: u16,
    pub(crate) password: &'a str,
    pub(crate) proxy: Option<u32>,
}

pub(crate) async fn measure(
    target: Target<'_>,
    mode: &str,
    clients: u32,
    seconds: u64,
) -> Result<Run> {
    let (c, j) = (clients.to_string(), clients.min(4).to_string());
    let t = seconds.to_string();
    let cpu_before = target.proxy.and_then(cpu_seconds);
    let machine_before = machine_cpu_seconds();
    let out = pgbench(
        target.port,
        target.password,
        &["-S", "-n", "-T", &t, "-c", &c, "-j", &j, "-M", mode],
    )
    .await?;
    let transactions = field(&out, "number of transactions actually processed: ")?;
    let per_transaction = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(before), Some(after)) if transactions > 0.0 => {
            Some((after - before) * 1e6 / transactions)
        }
        _ => None,
    };
    let machine_us = per_transaction(machine_before, machine_cpu_seconds());
    let cpu_us = per_transaction(cpu_before, target.proxy.and_then(cpu_seconds));
    Ok(Run {
        tps: field(&out, "tps = ")?,
        latency_ms: field(&out, "latency average = ")?,
        cpu_us,
        machine_us,
    })
}

/// The middle value (the upper one of an even count); `None` when there is none.
fn middle(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The run of median TPS, with the median CPU figures of all the runs.
pub(crate) fn median(mut runs: Vec<Run>) -> Run {
    let of = |figure: fn(&Run) -> Option<f64>| middle(runs.iter().filter_map(figure).collect());
    let (cpu_us, machine_us) = (of(|r| r.cpu_us), of(|r| r.machine_us));
    runs.sort_by(|a, b| a.tps.total_cmp(&b.tps));
    Run {
        cpu_us,
        machine_us,
        ..runs[runs.len() / 2]
    }
}

/// The median of the per-round ratios `a[i] / b[i]`. Runs of one round follow each other, so
/// a slow spell of a shared machine weighs on both sides of a ratio alike: paired ratios swing
/// less than a ratio of medians.
pub(crate) fn paired_ratio(a: &[Run], b: &[Run]) -> f64 {
    middle(a.iter().zip(b).map(|(a, b)| a.tps / b.tps).collect()).unwrap_or(f64::NAN)
}

/// Runs pgbench against each target `rounds` times, round-robin (so a slow spell on a shared
/// machine hits every target alike), and returns each target's runs in round order.
pub(crate) async fn measure_all(
    targets: &[Target<'_>],
    mode: &str,
    clients: u32,
    plan: &Plan,
) -> Result<Vec<Vec<Run>>> {
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    for _ in 0..plan.rounds {
        for (i, target) in targets.iter().enumerate() {
            runs[i].push(measure(*target, mode, clients, plan.seconds).await?);
        }
    }
    Ok(runs)
}

/// A CPU figure for the tables (`-` when it could not be read).
pub(crate) fn us(figure: Option<f64>) -> String {
    figure.map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"))
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
