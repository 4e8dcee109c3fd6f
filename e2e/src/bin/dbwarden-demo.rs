//! `dbwarden-demo` (`make demo`): the end-to-end story of `tests/story.rs`, the same eight steps
//! with the same checks, narrated for a newcomer; then the environment stays up with the commands
//! to try it, until Ctrl-C or SIGTERM stops every process and removes every file.

// The demo talks to a person on its standard output: that is the program's job.
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::Context;
use dbwarden_e2e::story::{self, AGENT_USER, NAMESPACE, Progress, Story};
use dbwarden_e2e::support::binaries;
use dbwarden_testbed::{ADMIN, ALICE, pg_tool, tools_bin_dir, workspace_root};
use tokio::signal::unix::{SignalKind, signal};

/// How long the tokens printed for people stay valid: a working day of trying things.
const TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The DBA who asks for a DELETE in the try-it block; alice (kubectl) approves it.
const DBA_USER: &str = "dave@acme.example";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr, warnings only by default, so stdout stays the narration.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let begun = Instant::now();
    let mut stop = Stop::new()?;

    println!(
        "dbwarden demo: an AI agent queries a production database through dbwarden.\n\
         Everything runs here as local processes: etcd and kube-apiserver (no nodes), PostgreSQL,\n\
         the dbwarden operator and the sidecar of one pod. These are the eight steps of the\n\
         end-to-end test (e2e/), with the same checks. Ctrl-C stops everything at any time."
    );
    println!("\nBuilding dbwarden-operator and dbwarden-sidecar (cargo; quick when up to date)...");
    // Dropping an unfinished future drops what it has started: the test bed stops its
    // servers and removes their folders, so Ctrl-C mid-story also leaves nothing behind.
    let bins = tokio::select! {
        bins = binaries::fresh() => bins.context("building the binaries")?,
        signal = stop.wait() => {
            println!("\n{signal}: stopped before the story began.");
            return Ok(());
        }
    };
    let story = tokio::select! {
        story = story::run(bins, narrate) => story,
        signal = stop.wait() => {
            println!("\n{signal}: stopping; every process is killed and its files removed.");
            return Ok(());
        }
    };
    let story = match story {
        Ok(story) => story,
        Err(error) => {
            // Ctrl-C in a terminal also reaches helm, kubectl and the servers (one process
            // group), so their failure can come before our own signal: not the story's fault.
            if let Ok(signal) = tokio::time::timeout(Duration::from_millis(500), stop.wait()).await
            {
                println!("\n{signal}: stopped; every process is killed and its files removed.");
                return Ok(());
            }
            return Err(error.context("the demo's story failed"));
        }
    };
    println!(
        "\nAll eight steps passed in {:.0?} (since `make demo` reached this program).",
        begun.elapsed()
    );
    try_it(&story)?;

    let signal = stop.wait().await;
    println!(
        "\n{signal}: stopping the sidecar, the operator, kube-apiserver, etcd and PostgreSQL..."
    );
    let folders = story.shutdown().await?;
    println!("Stopped: every process is gone and these folders are removed:");
    for folder in folders {
        println!("  {}", folder.display());
    }
    Ok(())
}

/// Prints a step as it begins (what and why) and when it passed.
fn narrate(progress: Progress) {
    match progress {
        Progress::Begin(step) => {
            println!("\n[{}/8] {}", step.number, step.title);
            println!("{}", wrap(step.why, 92, "      "));
        }
        Progress::Done(step, took) => {
            println!("      -> step {} passed ({took:.1?})", step.number);
        }
    }
}

/// The commands to try, with this run's ports, kubeconfigs and tokens.
fn try_it(story: &Story) -> anyhow::Result<()> {
    let cp = story.control_plane();
    let psql = pg_tool("psql").map_or_else(|_| "psql".into(), |p| p.display().to_string());
    let agent_token = story.token(AGENT_USER, &["on-call"], TOKEN_LIFETIME)?;
    let dba_token = story.token(DBA_USER, &["dba"], TOKEN_LIFETIME)?;
    let sidecar = |user: &str| {
        format!(
            "host=127.0.0.1 port={} dbname=orders user={user} sslmode=disable",
            story.listen_port()
        )
    };
    let pending = r#"{.items[?(@.status.phase=="Pending")].metadata.name}"#;
    println!(
        r#"
================================================================================================
The environment is up. Try it yourself in another terminal (paste the exports first):

  cd {root}
  export PATH={tools}:$PATH
  export KUBECONFIG={admin}        # the cluster administrator
  export AGENT_TOKEN='{agent_token}'
  export DBA_TOKEN='{dba_token}'

The AI agent ({AGENT_USER}, group on-call), through the sidecar; its JWT is the password:
  PGPASSWORD=$AGENT_TOKEN {psql} "{agent}"
    SELECT * FROM public.payments;                          -- card numbers masked but the last 4
    DROP TABLE public.orders;                               -- refused: guardrails.blockDrop
    DELETE FROM public.orders;                              -- refused: no WHERE
    UPDATE public.orders SET status = 'x' WHERE id = 1;     -- refused: on-call may only read

A DBA ({DBA_USER}, group dba) deletes a payment; the statement waits for another DBA:
  PGPASSWORD=$DBA_TOKEN {psql} "{dba}" -c "DELETE FROM public.payments WHERE id = 2"
  # meanwhile, in a third terminal (same exports), alice (group dba) approves it:
  AR=$(kubectl get ar -n {NAMESPACE} -o jsonpath='{pending}')
  kubectl --kubeconfig {alice} -n {NAMESPACE} patch ar $AR --subresource=status --type=merge \
    -p '{{"status":{{"phase":"Approved"}}}}'
  kubectl describe ar -n {NAMESPACE} $AR          # who decided, and an Event per step

Kubernetes:
  kubectl get dap,ar -n {NAMESPACE}              # the policy (READY) and the approval requests
  kubectl get pods -n {NAMESPACE} -o jsonpath='{{.items[0].spec.initContainers[*].name}}'   # injected
  kubectl edit dap {policy} -n {NAMESPACE}       # the policy the sidecar watches: edit a rule, query again
  Other people: {kubeconfigs}/{{alice,dave}}.kubeconfig (dba), bob.kubeconfig, carol.kubeconfig

Metrics and logs:
  curl -s http://127.0.0.1:{health}/metrics | grep ^dbwarden_     # the sidecar
  curl -s http://127.0.0.1:{operator}/metrics | grep ^dbwarden_   # the operator
  tail -f {dir}/sidecar.log {dir}/operator.log

PostgreSQL itself, bypassing dbwarden, with the login only the sidecar holds:
  {psql} "{database}"

Press Ctrl-C (or send SIGTERM) to stop: every process is killed and its files removed.
================================================================================================"#,
        root = workspace_root().display(),
        tools = tools_bin_dir().display(),
        admin = story.kubeconfig(&ADMIN).display(),
        alice = story.kubeconfig(&ALICE).display(),
        kubeconfigs = cp.dir().display(),
        agent = sidecar(AGENT_USER),
        dba = sidecar(DBA_USER),
        policy = story::POLICY,
        health = story.sidecar_health_port(),
        operator = story.operator_metrics_port(),
        dir = story.dir().display(),
        database = story.database_conninfo(),
    );
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM, whichever comes first.
struct Stop {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    /// Installs the handlers at once, so a signal during the story is not the default death.
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("handling SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("handling SIGTERM")?,
        })
    }

    /// Waits for the next signal and names it.
    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// `text` in lines of at most `width` characters, each starting with `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut lines = Vec::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::replace(&mut line, String::from(indent)));
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines.join("\n")
}
