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
#[command(name = "bucky", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fill the gaps of DST with the data of SRC (drop-in for whisper-fill).
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
}

/// Runs one parsed command, writing its results to `out`.
///
/// # Errors
/// Whatever the command reports: bad input, an unreadable or corrupt file, a lock timeout.
pub fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Fill(args) => commands::fill::run(args, out),
        Command::Locate(args) => commands::locate::run(args, &mut std::io::stdin().lock(), out),
        Command::Ring(command) => commands::ring::run(command, out),
        Command::Whisper(command) => commands::whisper::run(command, out),
    }
}
