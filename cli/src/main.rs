//! `bucky`: parses the command line, runs it, prints errors with their causes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match bucky_cli::Cli::try_parse() {
        Ok(cli) => cli,
        // A Nagios plugin's usage error is UNKNOWN (3), not clap's 2 (which reads as CRITICAL).
        Err(e) if e.use_stderr() && std::env::args().nth(1).as_deref() == Some("check") => {
            eprint!("BUCKY UNKNOWN - {e}");
            return ExitCode::from(3);
        }
        Err(e) => e.exit(),
    };
    cli.log.init_at("warn");
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
