//! How every bucky binary logs: to stderr, as text (coloured on a terminal) or as JSON lines for
//! journald and log shippers, at a level set by `-v`/`-q` unless `RUST_LOG` says otherwise.

/// The logging flags every binary takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// More log output (-v debug, -vv trace). `RUST_LOG`, when set, wins.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: warnings and errors only, and no summary when all went well.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log lines as text or as JSON objects, one per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogArgs {
    /// The level filter these flags ask for, `usual` without any.
    pub fn level(&self, usual: &'static str) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => usual,
            (false, 1) => "debug",
            (false, _) => "trace",
        }
    }

    /// Installs the global subscriber: `info` and above unless told otherwise (servers, jobs).
    pub fn init(&self) {
        self.init_at("info");
    }

    /// Installs the global subscriber, at `usual` without flags (an interactive command, whose
    /// output is its report, logs only warnings).
    pub fn init_at(&self, usual: &'static str) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(self.level(usual)));
        let builder = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter);
        match self.log_format {
            LogFormat::Text => builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init(),
            LogFormat::Json => builder.json().flatten_event(true).init(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    #[test]
    fn flags_set_the_level() {
        let level = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["x"], args].concat()).unwrap();
            (cli.log.level("info"), cli.log.log_format)
        };
        assert_eq!(level(&[]), ("info", LogFormat::Text));
        assert_eq!(level(&["-q"]).0, "warn");
        assert_eq!(level(&["-vv"]).0, "trace");
        assert_eq!(level(&["--log-format", "json"]).1, LogFormat::Json);
        assert!(Cli::try_parse_from(["x", "-q", "-v"]).is_err());
    }
}
