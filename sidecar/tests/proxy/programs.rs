//! psql and pgbench, the real binaries, through the sidecar.

use std::time::Duration;

use tokio::process::Command;

use crate::common::{Proxy, Setup, TestResult, pg_bin, proxy, run, start_pg};

fn psql(p: &Proxy) -> Command {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.args(["-X", "-A", "-t", "-d"]).arg(p.conninfo());
    cmd
}

#[tokio::test]
async fn psql_over_client_tls_with_scripts_copy_and_errors() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(
        &pg,
        Setup {
            client_tls: true,
            ..Setup::default()
        },
    )
    .await?;

    // Multi-statement string: one simple Query, several results.
    let mut cmd = psql(&p);
    cmd.args(["-v", "ON_ERROR_STOP=1", "-c"])
        .arg("CREATE TABLE people (id int, name text); INSERT INTO people VALUES (1, 'ada'), (2, 'bob'); SELECT count(*) FROM people; SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    let (ok, out, err) = run(cmd, Duration::from_secs(30)).await?;
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["CREATE TABLE", "INSERT 0 2", "2", "t"],
        "{out}"
    );

    // A script with \copy both ways, an error in the middle, and statements after it.
    let csv = p.dir.path().join("in.csv");
    let dump = p.dir.path().join("out.csv");
    std::fs::write(
        &csv,
        (3..=1002)
            .map(|i| format!("{i},name {i}\n"))
            .collect::<String>(),
    )?;
    let script = p.dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "\\copy people FROM '{}' WITH (FORMAT csv)\n\
             SELECT count(*) FROM people;\n\
             SELECT * FROM missing_table;\n\
             \\copy (SELECT * FROM people ORDER BY id) TO '{}' WITH (FORMAT csv)\n\
             SELECT 'after error';\n",
            csv.display(),
            dump.display()
        ),
    )?;
    let mut cmd = psql(&p);
    cmd.arg("-f").arg(&script);
    let (ok, out, err) = run(cmd, Duration::from_secs(30)).await?;
    assert!(ok, "psql without ON_ERROR_STOP should finish: {err}");
    assert!(out.contains("COPY 1000") || out.contains("1002"), "{out}");
    assert!(out.contains("1002"), "{out}");
    assert!(out.contains("after error"), "{out}");
    assert!(
        err.contains("relation \"missing_table\" does not exist"),
        "{err}"
    );
    let dumped = std::fs::read_to_string(&dump)?;
    assert_eq!(dumped.lines().count(), 1002);
    assert!(dumped.starts_with("1,ada\n2,bob\n3,name 3\n"));

    // ON_ERROR_STOP turns the error into psql's exit status 3.
    let mut cmd = psql(&p);
    cmd.args(["-v", "ON_ERROR_STOP=1", "-c", "SELECT 1/0"]);
    let (ok, _, err) = run(cmd, Duration::from_secs(30)).await?;
    assert!(!ok && err.contains("division by zero"), "{err}");
    Ok(())
}

#[tokio::test]
async fn pgbench_init_and_runs_in_every_query_mode() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, Setup::default()).await?;
    let pgbench = |args: &[&str]| {
        let mut cmd = Command::new(pg_bin("pgbench"));
        cmd.env("PGPASSWORD", "no-token")
            .env("PGSSLMODE", "disable")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &p.addr.port().to_string(),
                "-U",
                "app",
            ])
            .args(args)
            .arg("app");
        cmd
    };
    let (ok, _, err) = run(pgbench(&["-i", "-s", "2", "-q"]), Duration::from_secs(120)).await?;
    assert!(ok, "pgbench -i failed: {err}");
    for mode in ["simple", "extended", "prepared"] {
        let (ok, out, err) = run(
            pgbench(&["-T", "3", "-c", "4", "-j", "2", "-M", mode]),
            Duration::from_secs(60),
        )
        .await?;
        assert!(ok, "pgbench -M {mode} failed: {out}\n{err}");
        assert!(out.contains(&format!("query mode: {mode}")), "{out}");
        assert!(out.contains("number of failed transactions: 0"), "{out}");
        let processed = out
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("no transaction count in {out}"))?;
        assert!(processed > 10, "-M {mode}: only {processed} transactions");
    }
    Ok(())
}
