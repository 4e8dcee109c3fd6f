//! The database is a real PostgreSQL that authenticates with SCRAM over verified TLS.

use dbwarden_testbed::{APP, APP_MD5, PgBouncer, PgUser, Postgres, psql};

#[tokio::test]
async fn psql_runs_select_1_with_scram_over_tls() {
    dbwarden_testbed::init_tracing();
    let pg = Postgres::start().await.unwrap();
    eprintln!("postgres ready in {:?}", pg.started_in());

    let out = pg
        .psql(
            &APP,
            "SELECT 1, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .await
        .unwrap()
        .ok("psql")
        .unwrap();
    assert_eq!(out.trim(), "1|t", "SELECT 1 over TLS");

    // The server logged that this connection authenticated with SCRAM.
    let log = std::fs::read_to_string(pg.log_path()).unwrap();
    assert!(
        log.contains(r#"connection authenticated: identity="app" method=scram-sha-256"#),
        "{log}"
    );

    // A wrong password is refused: authentication is really on.
    let wrong = PgUser {
        password: "not-the-password",
        ..APP
    };
    let refused = pg.psql(&wrong, "SELECT 1").await.unwrap();
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr
            .contains(r#"password authentication failed for user "app""#),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn md5_role_authenticates_with_md5() {
    let pg = Postgres::start().await.unwrap();
    let out = pg
        .psql(&APP_MD5, "SELECT current_user")
        .await
        .unwrap()
        .ok("psql")
        .unwrap();
    assert_eq!(out.trim(), "app_md5");
    let log = std::fs::read_to_string(pg.log_path()).unwrap();
    assert!(log.contains(r#"identity="app_md5" method=md5"#), "{log}");
}

#[tokio::test]
async fn stopping_removes_the_cluster() {
    let pg = Postgres::start().await.unwrap();
    let log = pg.log_path();
    let dir = log.parent().unwrap().to_path_buf();
    drop(pg);
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[tokio::test]
async fn pgbouncer_pools_in_front_of_postgres() {
    let pg = Postgres::start().await.unwrap();
    let bouncer = PgBouncer::start(&pg, &APP, 20).await.unwrap();
    let out = psql(
        &bouncer.conninfo(&APP),
        "SELECT current_user, inet_server_port()",
    )
    .await
    .unwrap()
    .ok("psql via pgbouncer")
    .unwrap();
    // The session reached the real server as app, on the server's own port.
    assert_eq!(out.trim(), format!("app|{}", pg.port()));
}
