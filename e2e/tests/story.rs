//! The end-to-end story (see `dbwarden_e2e::story` for its eight steps), run as a test: every
//! step's checks must hold. `cargo test -p dbwarden-e2e -- --nocapture` shows the narration;
//! `make demo` runs the same steps for people.

use anyhow::Context;
use dbwarden_e2e::story;
use dbwarden_e2e::support::binaries;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_agent_queries_production_through_dbwarden() -> anyhow::Result<()> {
    dbwarden_testbed::init_tracing();
    let bins = binaries::fresh().await.context("building the binaries")?;
    let story = story::run(bins, |_| {}).await?;
    // The demo keeps the environment up; the test stops it and checks nothing is left behind.
    let removed = story.shutdown().await?;
    tracing::info!(?removed, "environment stopped");
    Ok(())
}
