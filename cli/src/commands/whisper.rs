//! `bucky whisper`: the single-file toolbox, mirroring whisper-create, whisper-info,
//! whisper-fetch and whisper-update.

pub mod create;
pub mod fetch;
pub mod info;
pub mod update;

use std::io::Write;

use clap::Subcommand;

/// The `bucky whisper` subcommands.
#[derive(Debug, Subcommand)]
pub enum WhisperCommand {
    /// Create a whisper file (whisper-create).
    Create(create::CreateArgs),
    /// Print a file's header and archives (whisper-info).
    Info(info::InfoArgs),
    /// Print the points of a time range (whisper-fetch).
    Fetch(fetch::FetchArgs),
    /// Write points with one update_many call (whisper-update).
    Update(update::UpdateArgs),
}

/// Runs one `bucky whisper` subcommand.
///
/// # Errors
/// As the subcommand.
pub fn run(command: WhisperCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        WhisperCommand::Create(args) => create::run(args, out),
        WhisperCommand::Info(args) => info::run(args, out),
        WhisperCommand::Fetch(args) => fetch::run(args, out),
        WhisperCommand::Update(args) => update::run(args, out),
    }
}
