//! `bucky`: parses the command line, runs it, prints errors with their causes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bucky_cli::Cli::parse();
    let mut out = std::io::stdout().lock();
    match bucky_cli::run(cli, &mut out) {
        Ok(code) => ExitCode::from(code),
        // `bucky whisper fetch ... | head` is a success, not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bucky: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
