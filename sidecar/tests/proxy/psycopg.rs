//! psycopg 3 (Python, from PyPI) through the sidecar: a driver of another ecosystem.
//!
//! Needs `pip install 'psycopg[binary]'`; the test fails (never skips) when it is missing.

use std::time::Duration;

use crate::common::{Setup, TestResult, proxy, run, start_pg};

const PSYCOPG_SCRIPT: &str = r#"
import sys, psycopg
conninfo = sys.argv[1]
with psycopg.connect(conninfo) as conn:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE py (id int primary key, name text, tags text[], doc jsonb)")
        cur.executemany("INSERT INTO py VALUES (%s, %s, %s, %s)",
                        [(i, f"name {i}", ["a", "b"], psycopg.types.json.Jsonb({"i": i})) for i in range(50)])
        cur.execute("SELECT count(*), max(id) FROM py WHERE name LIKE %s", ("name%",))
        assert cur.fetchone() == (50, 49)
        cur.execute("SELECT tags, doc FROM py WHERE id = %s", (7,), prepare=True)
        assert cur.fetchone() == (["a", "b"], {"i": 7})
        with cur.copy("COPY py (id, name) FROM STDIN") as copy:
            for i in range(100, 200):
                copy.write_row((i, f"copied {i}"))
        cur.execute("SELECT count(*) FROM py")
        assert cur.fetchone()[0] == 150
        with conn.transaction():
            cur.execute("DELETE FROM py WHERE id >= 100")
        try:
            cur.execute("SELECT * FROM no_such_table")
        except psycopg.errors.UndefinedTable:
            conn.rollback()
        else:
            raise SystemExit("expected UndefinedTable")
    with conn.pipeline():
        results = [conn.execute("SELECT %s::int * 3", (i,)) for i in range(20)]
    assert [r.fetchone()[0] for r in results] == [i * 3 for i in range(20)]
print("psycopg ok", psycopg.__version__)
"#;

#[tokio::test]
async fn psycopg3_runs_a_script() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, Setup::default()).await?;
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg("-c").arg(PSYCOPG_SCRIPT).arg(p.conninfo());
    let (ok, stdout, stderr) = run(cmd, Duration::from_secs(60)).await?;
    assert!(
        ok && stdout.contains("psycopg ok"),
        "psycopg script failed (psycopg 3 must be installed: pip install 'psycopg[binary]')\n{stdout}\n{stderr}"
    );
    Ok(())
}
