//! The `dbwarden-sidecar` binary in standalone mode, from a config file.

use std::time::Duration;

use dbwarden_testbed::free_port;
use tokio::process::Command;

use crate::common::{TestResult, start_pg};

#[tokio::test]
async fn binary_serves_from_a_config_file_and_stops_on_sigterm() -> TestResult {
    let pg = start_pg().await?;
    let dir = tempfile::tempdir()?;
    let (port, health) = (free_port()?, free_port()?);
    let config = dir.path().join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:
  - name: app
    listen: 127.0.0.1:{port}
    upstream:
      host: 127.0.0.1
      port: {pg_port}
      database: app
      tls: {{mode: verify-full, ca_file: {ca}}}
      credentials: {{username: app, password_env: DBWARDEN_TEST_PASSWORD}}
health: {{listen: 127.0.0.1:{health}}}
",
            pg_port = pg.port(),
            ca = pg.ca_cert_path().display(),
        ),
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbwarden-sidecar"))
        .arg("--config")
        .arg(&config)
        .env("DBWARDEN_TEST_PASSWORD", dbwarden_testbed::APP.password)
        .kill_on_drop(true)
        .spawn()?;
    let conninfo =
        format!("host=127.0.0.1 port={port} user=app dbname=app password=t sslmode=disable");
    let mut client = None;
    for _ in 0..100 {
        if let Ok((c, conn)) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = client.ok_or("the binary never accepted a connection")?;
    assert_eq!(
        client
            .query_one("SELECT 40 + 2", &[])
            .await?
            .get::<_, i32>(0),
        42
    );
    drop(client);

    let pid = child.id().ok_or("no pid")?;
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await?;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
    assert!(status.success(), "exit status {status}");

    // A bad file: the error names the field and the value.
    std::fs::write(&config, "listeners: []\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_dbwarden-sidecar"))
        .arg("--config")
        .arg(&config)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("invalid listeners = \"[]\""), "{stderr}");
    Ok(())
}
