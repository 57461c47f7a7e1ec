//! Shell completions and man pages of every bucky binary, generated from its clap definition so
//! they never drift from the flags: `<binary> completions <shell>` and `<binary> man --out-dir`.

use std::path::{Path, PathBuf};

/// The two subcommands every binary has.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DocsCommand {
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (the command and each subcommand) into a directory.
    Man {
        /// Where to write them, e.g. /usr/local/share/man/man1.
        #[arg(long)]
        out_dir: PathBuf,
    },
}

impl DocsCommand {
    /// Does it for `command` (the binary's full clap command).
    ///
    /// # Errors
    /// The pages cannot be written.
    pub fn run(&self, command: clap::Command, out: &mut impl std::io::Write) -> anyhow::Result<()> {
        match self {
            DocsCommand::Completions { shell } => {
                let mut command = command;
                let name = command.get_name().to_string();
                clap_complete::generate(*shell, &mut command, name, out);
                Ok(())
            }
            DocsCommand::Man { out_dir } => {
                let written = write_man_pages(command, out_dir)?;
                writeln!(out, "{written} man pages written to {}", out_dir.display())?;
                Ok(())
            }
        }
    }
}

/// Writes `command.1` and one page per subcommand (`command-sub.1`); returns how many.
///
/// # Errors
/// The directory cannot be written.
pub fn write_man_pages(command: clap::Command, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut written = 0;
    let mut pending = vec![(command.get_name().to_string(), command)];
    while let Some((name, command)) = pending.pop() {
        let command = command.name(name.clone()).bin_name(name.replace('-', " "));
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" {
                pending.push((format!("{name}-{}", sub.get_name()), sub.clone()));
            }
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    #[command(name = "demo-bin")]
    enum Cli {
        /// Does a.
        Alpha {
            /// A flag.
            #[arg(long)]
            flag: bool,
        },
        #[command(subcommand)]
        Docs(DocsCommand),
    }

    #[test]
    fn pages_and_completions_cover_every_subcommand() {
        use clap::CommandFactory;
        let dir = tempfile::tempdir().unwrap();
        let n = write_man_pages(Cli::command(), dir.path()).unwrap();
        assert!(n >= 4, "{n}");
        let alpha = std::fs::read_to_string(dir.path().join("demo-bin-alpha.1")).unwrap();
        assert!(alpha.contains("flag"), "{alpha}");
        let mut out = Vec::new();
        DocsCommand::Completions {
            shell: clap_complete::Shell::Bash,
        }
        .run(Cli::command(), &mut out)
        .unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(
            script.contains("alpha") && script.contains("--flag"),
            "{script}"
        );
    }
}
