//! `dbwarden-audit`: tools for dbwarden audit exports.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Tools for dbwarden audit event exports.
#[derive(Debug, Parser)]
#[command(name = "dbwarden-audit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check an NDJSON export: reports edits, gaps (deletions), reordering and conflicting
    /// duplicates per instance with line numbers; exits 1 on any problem. Identical duplicates
    /// (at-least-once delivery) are tolerated.
    Verify {
        /// The export, one event per line; `-` reads standard input.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "dbwarden-audit: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let Cli {
        command: Command::Verify { file },
    } = Cli::parse();
    let report = if file.as_os_str() == "-" {
        dbwarden_audit::verify(std::io::stdin().lock())?
    } else {
        let f = File::open(&file).with_context(|| format!("opening {}", file.display()))?;
        dbwarden_audit::verify(BufReader::new(f))
            .with_context(|| format!("reading {}", file.display()))?
    };
    let mut out = std::io::stdout().lock();
    for (instance, s) in &report.instances {
        writeln!(
            out,
            "{instance}: {} events, seq {}..={}, {} duplicates",
            s.events, s.first_seq, s.last_seq, s.duplicates
        )?;
    }
    for problem in &report.problems {
        writeln!(out, "PROBLEM {problem}")?;
    }
    if report.is_ok() {
        writeln!(out, "ok: {} instances, no problems", report.instances.len())?;
    } else {
        writeln!(out, "FAILED: {} problems", report.problems.len())?;
    }
    Ok(report.is_ok())
}
