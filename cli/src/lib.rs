//! `bucky`, the operator's command. This library holds the argument definitions and one module
//! per subcommand; [`run`] executes a parsed command line and writes results to `out`, so tests
//! drive the CLI in-process.
//!
//! ```no_run
//! use clap::Parser;
//! let cli = bucky_cli::Cli::parse_from(["bucky", "whisper", "info", "cpu.wsp"]);
//! bucky_cli::run(cli, &mut std::io::stdout()).unwrap();
//! ```

pub mod commands;
mod format;
mod time;

use std::io::Write;

use clap::{Parser, Subcommand};

/// Back up, restore and heal the whisper files of Graphite clusters.
#[derive(Debug, Parser)]
#[command(name = "bucky", version = bucky_proto::VERSION, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Logging (warnings only unless -v).
    #[command(flatten)]
    pub log: bucky_shared::logging::LogArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back the whole cluster up, each node into its own bucket.
    Backup(commands::backup::BackupArgs),
    /// Restore one host from its own and its peers' buckets (rebalance-aware).
    Restore(commands::restore::RestoreArgs),
    /// Fleet overview: reachability, ring agreement, last backups, running jobs.
    Status(commands::status::StatusArgs),
    /// Nagios check of the last backups (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Check(commands::check::CheckArgs),
    /// Read back a share of each bucket (gunzip, SHA-1, whisper header) and record the result.
    Verify(commands::verify::VerifyArgs),
    /// The stored versions of a metric in every bucket.
    List(commands::list::ListArgs),
    /// Metrics each node holds that the ring places elsewhere, and lacks that it places there.
    Inconsistent(commands::inconsistent::InconsistentArgs),
    /// Copy misplaced metrics to the nodes the ring places them on, agent to agent.
    Rebalance(commands::rebalance::RebalanceArgs),
    /// Fill each replica's gaps from the other replicas, agent to agent (--since 6h).
    Heal(commands::rebalance::HealArgs),
    /// Run a whole cluster locally: backup, lose a node, restore it, verify (no config needed).
    Demo(commands::demo::DemoArgs),
    /// Fill the gaps of DST with the data of SRC (drop-in for whisper-fill); -r for two trees.
    Fill(commands::fill::FillArgs),
    /// Print which destinations own each metric under a carbon or carbon-c-relay ring.
    Locate(commands::locate::LocateArgs),
    /// Inspect a ring: destinations, fingerprint, balance.
    #[command(subcommand)]
    Ring(commands::ring::RingCommand),
    /// Create, inspect, read and write single whisper files (whisper-create, -info, -fetch,
    /// -update).
    #[command(subcommand)]
    Whisper(commands::whisper::WhisperCommand),
    /// Completions and man pages.
    #[command(flatten)]
    Docs(bucky_shared::command_docs::DocsCommand),
}

/// Runs one parsed command, writing its results to `out`; returns the exit code (0, or the
/// Nagios state for `check`).
///
/// # Errors
/// Whatever the command reports: bad input, an unreadable or corrupt file, a lock timeout, an
/// unreachable coordinator.
pub fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<u8> {
    let done = |r: anyhow::Result<()>| r.map(|()| 0);
    match cli.command {
        Command::Backup(args) => done(commands::backup::run(args, out)),
        Command::Restore(args) => done(commands::restore::run(args, out)),
        Command::Status(args) => commands::status::run(args, out),
        Command::Check(args) => commands::check::run(args, out).map(commands::check::State::code),
        Command::List(args) => done(commands::list::run(args, out)),
        Command::Verify(args) => commands::verify::run(args, out),
        Command::Inconsistent(args) => commands::inconsistent::run(args, out),
        Command::Rebalance(args) => commands::rebalance::run(args, out),
        Command::Heal(args) => commands::rebalance::heal(args, out),
        Command::Demo(args) => done(commands::demo::run(args, out)),
        Command::Fill(args) => commands::fill::run(args, out),
        Command::Locate(args) => done(commands::locate::run(
            args,
            &mut std::io::stdin().lock(),
            out,
        )),
        Command::Ring(command) => done(commands::ring::run(command, out)),
        Command::Whisper(command) => done(commands::whisper::run(command, out)),
        Command::Docs(command) => done(command.run(<Cli as clap::CommandFactory>::command(), out)),
    }
}
