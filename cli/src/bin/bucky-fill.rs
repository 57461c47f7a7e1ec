//! `bucky-fill`: `bucky fill` as a binary of its own, for scripts that run one process per pair
//! (as they ran carbonate's `whisper-fill` or buckytools' `bucky-fill`). Same arguments, same
//! output, same exit codes; it links only the fill code, so it starts in a fraction of the time
//! the full `bucky` binary takes to load, which is most of a one-pair fill's time.

use std::process::ExitCode;

use clap::Parser;

/// Fill the gaps of DST with data from SRC: replicas of one metric, two whisper trees (-r), or
/// a list of pairs (--pairs). The same as `bucky fill`.
#[derive(Debug, Parser)]
#[command(name = "bucky-fill", version = bucky_proto::VERSION)]
struct Cli {
    #[command(flatten)]
    fill: bucky_cli::commands::fill::FillArgs,
    #[command(flatten)]
    log: bucky_shared::logging::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init_at("warn");
    let mut out = std::io::stdout().lock();
    match bucky_cli::commands::fill::run(cli.fill, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("bucky-fill: {err:#}");
            ExitCode::FAILURE
        }
    }
}
