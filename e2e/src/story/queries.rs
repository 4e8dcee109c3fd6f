//! Steps 4-6: what the AI agent and the service run through the sidecar: guardrails, masking,
//! an approval.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use dbwarden_testbed::{ADMIN, ALICE};
use serde_json::json;

use super::*;

/// The AI agent's connection: the end user's token as its password.
async fn agent(story: &Story) -> anyhow::Result<tokio_postgres::Client> {
    let token = story.issuer.token(json!({
        "iss": TOKEN_ISSUER,
        "aud": "dbwarden",
        "sub": "5b1f0c6e-agent",
        "preferred_username": AGENT_USER,
        "groups": [AGENT_GROUP],
    }))?;
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=orders user={AGENT_USER} password={token} sslmode=disable \
         application_name=ops-copilot",
        story.listen_port
    );
    let (agent, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .context("the agent could not connect through the sidecar")?;
    tokio::spawn(connection);
    Ok(agent)
}

/// The orders service's own connection: no token (an empty password), so it is the pod's
/// ServiceAccount.
async fn service(story: &Story) -> anyhow::Result<tokio_postgres::Client> {
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=orders user=orders-api password='' sslmode=disable",
        story.listen_port
    );
    let (service, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .context("the service could not connect through the sidecar")?;
    tokio::spawn(connection);
    Ok(service)
}

/// Step 4: the agent connects with the end user's token as its password.
pub async fn agent_queries(story: &Story) -> anyhow::Result<()> {
    let agent = agent(story).await?;

    let rows = agent
        .query(
            "SELECT id, customer, status FROM public.orders ORDER BY id",
            &[],
        )
        .await
        .context("the agent's SELECT was refused")?;
    let seen: Vec<(i32, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    tracing::info!(?seen, "SELECT through the sidecar");
    ensure!(
        seen == [
            (1, "ada".into(), "paid".into()),
            (2, "grace".into(), "shipped".into()),
            (3, "alan".into(), "pending".into())
        ],
        "unexpected rows: {seen:?}"
    );

    refused(&agent, "DROP TABLE public.orders", "guardrails.blockDrop").await?;
    refused(
        &agent,
        "DELETE FROM public.orders",
        "guardrails.requireWhereForUpdateDelete",
    )
    .await?;

    // And nothing happened to the data.
    let count: i64 = agent
        .query_one("SELECT count(*) FROM public.orders", &[])
        .await?
        .get(0);
    ensure!(
        count == 3,
        "public.orders has {count} rows after the refusals"
    );

    // The identity is the token's: a token for someone no rule names reads nothing.
    let outsider = story.issuer.token(json!({
        "iss": TOKEN_ISSUER,
        "aud": "dbwarden",
        "sub": "9d2e-contractor",
        "preferred_username": OUTSIDER,
        "groups": ["contractors"],
    }))?;
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} dbname=orders user={OUTSIDER} password={outsider} \
             sslmode=disable",
            story.listen_port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .context("a well-signed token was refused at login")?;
    tokio::spawn(connection);
    refused(&client, "SELECT id FROM public.orders", OUTSIDER).await?;
    Ok(())
}

/// `sql` fails with SQLSTATE 42501 and a message naming the policy and `why` (the guardrail,
/// or the identity no rule allows).
async fn refused(client: &tokio_postgres::Client, sql: &str, why: &str) -> anyhow::Result<()> {
    let error = match client.batch_execute(sql).await {
        Ok(()) => bail!("{sql:?} ran; it should have been refused ({why})"),
        Err(error) => error,
    };
    let db = error
        .as_db_error()
        .with_context(|| format!("{sql:?} failed without a database error: {error}"))?;
    tracing::info!(
        sql,
        code = db.code().code(),
        message = db.message(),
        "refused"
    );
    ensure!(
        db.code().code() == "42501",
        "{sql:?}: SQLSTATE {} ({}), expected 42501",
        db.code().code(),
        db.message()
    );
    ensure!(
        db.message().contains(POLICY) && db.message().contains(why),
        "{sql:?}: the message does not name {POLICY} and {why}: {}",
        db.message()
    );
    Ok(())
}

/// Step 5: `masking.columns` keeps the last 4 digits of card numbers for everyone the policy
/// does not exempt; the orders-api ServiceAccount is exempt.
pub async fn masked_reads(story: &Story) -> anyhow::Result<()> {
    let sql = "SELECT card_number FROM public.payments ORDER BY id";
    let cards = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    };
    let seen = cards(agent(story).await?.query(sql, &[]).await?);
    tracing::info!(?seen, "the agent's SELECT of card numbers");
    ensure!(seen.len() == 2, "expected two payments, got {seen:?}");
    for (card, last4) in seen.iter().zip(["1111", "5559"]) {
        ensure!(
            card.ends_with(last4) && !card.contains("41111111") && !card.contains("55000055"),
            "card number not masked to its last 4 digits: {card:?}"
        );
    }
    let whole = cards(service(story).await?.query(sql, &[]).await?);
    tracing::info!(?whole, "the exempt service's SELECT of card numbers");
    ensure!(
        whole == ["4111111111111111", "5500005555555559"],
        "the exempt service saw {whole:?}"
    );
    Ok(())
}

/// Step 6: the example's `deletes` rule (hold mode, one DBA) on the service's own DELETE.
pub async fn approved_delete(story: &Story) -> anyhow::Result<()> {
    let service = service(story).await?;
    let held = tokio::spawn(async move {
        service
            .execute("DELETE FROM public.orders WHERE id = 3", &[])
            .await
    });
    let cp = &story.cp;
    let pending = "jsonpath={.items[?(@.status.phase==\"Pending\")].metadata.name}";
    let deadline = Instant::now() + Duration::from_secs(30);
    let name = loop {
        let names = cp
            .kubectl_ok(&ADMIN, &["get", "ar", "-n", NAMESPACE, "-o", pending])
            .await?;
        if let Some(name) = names.split_whitespace().next() {
            break name.to_string();
        }
        ensure!(
            Instant::now() < deadline,
            "no Pending ApprovalRequest appeared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let listing = cp
        .kubectl_ok(&ADMIN, &["get", "ar", "-n", NAMESPACE, "-o", "wide"])
        .await?;
    tracing::info!("kubectl get ar -n {NAMESPACE} -o wide\n{listing}");
    ensure!(
        !held.is_finished(),
        "the DELETE did not wait for its approval"
    );

    let approve = [
        "patch",
        "ar",
        name.as_str(),
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Approved"}}"#,
    ];
    let out = cp.kubectl_ok(&ALICE, &approve).await?;
    tracing::info!("alice: kubectl patch ar {name} ...: {}", out.trim());
    let deleted = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .context("the approved DELETE never finished")??
        .context("the approved DELETE failed")?;
    ensure!(deleted == 1, "the approved DELETE removed {deleted} rows");
    let phase = cp
        .kubectl_ok(
            &ADMIN,
            &[
                "get",
                "ar",
                &name,
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.status.phase} {.status.decisions[0].by}",
            ],
        )
        .await?;
    tracing::info!(request = %name, status = %phase, "after the statement ran");
    ensure!(
        phase.trim() == "Executed alice",
        "the request shows {phase:?}"
    );
    let left: i64 = agent(story)
        .await?
        .query_one("SELECT count(*) FROM public.orders", &[])
        .await?
        .get(0);
    ensure!(
        left == 2,
        "public.orders has {left} rows after the approved DELETE"
    );
    Ok(())
}
