//! `bucky-fill`: `bucky fill` as a binary of its own, for scripts that run one process per pair
//! (as they ran carbonate's `whisper-fill` or buckytools' `bucky-fill`). Same arguments, same
//! output, same exit codes; it links only the fill code, so it starts in a fraction of the time
//! the full `bucky` binary takes to load, which is most of a one-pair fill's time.
//!
//! For the same reason it is entered as C's `main`, not through Rust's runtime start-up, which
//! reads `/proc/self/maps` to place a stack guard and maps a signal stack: 0.2-0.4 ms of the
//! 1.2-1.6 ms a process takes to start here (`perf stat -r 500` on a program that prints its
//! arguments, built both ways). What that start-up would give, and is given up: a message on
//! stack overflow (it is still a crash), and SIGPIPE ignored (a closed pipe on stdout ends the
//! process as it does any C tool). Arguments still come from glibc (Rust reads them at load).

#![no_main]

use std::io::Write;

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

/// The process's entry, called by the C runtime. `no_mangle` is unsafe only in that two symbols
/// of one name would clash at link time; this is the program's one `main`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    std::ffi::c_int::from(run())
}

fn run() -> u8 {
    let cli = Cli::parse();
    cli.log.init_at("warn");
    let mut out = std::io::stdout().lock();
    let code = match bucky_cli::commands::fill::run(cli.fill, &mut out) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bucky-fill: {err:#}");
            1
        }
    };
    // Nothing flushes stdout at exit without Rust's runtime.
    match out.flush() {
        Ok(()) => code,
        Err(_) => 1,
    }
}
