//! Progress of long cluster jobs: on a terminal a bar per node (done, total, rate, ETA); without
//! one (systemd, cron) a line on stderr every [`LINE_EVERY`], for the job's log.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is written without a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(30);

/// Progress of one job over one or more nodes.
pub struct Progress {
    what: &'static str,
    bars: Option<(MultiProgress, BTreeMap<String, ProgressBar>)>,
    latest: BTreeMap<String, (u64, u64)>,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Progress of `what` ("files", "versions"), drawn as bars when stderr is a terminal.
    pub fn new(what: &'static str) -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                BTreeMap::new(),
            )
        });
        Progress {
            what,
            bars,
            latest: BTreeMap::new(),
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// `host` has done `done` of `total`.
    pub fn update(&mut self, host: &str, done: u64, total: u64) {
        self.latest.insert(host.to_string(), (done, total));
        match &mut self.bars {
            Some((multi, bars)) => {
                let what = self.what;
                let bar = bars.entry(host.to_string()).or_insert_with(|| {
                    let style = ProgressStyle::with_template(&format!(
                        "{{prefix:<16}} [{{bar:30}}] {{pos}}/{{len}} {what} {{per_sec}} ETA {{eta}}"
                    ))
                    .expect("a valid template")
                    .progress_chars("=> ");
                    multi.add(
                        ProgressBar::new(total)
                            .with_style(style)
                            .with_prefix(host.to_string()),
                    )
                });
                bar.set_length(total.max(done));
                bar.set_position(done);
            }
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// The progress line written without a terminal.
    pub fn line(&self) -> String {
        let nodes: Vec<String> = self
            .latest
            .iter()
            .map(|(host, (done, total))| format!("{host} {done}/{total}"))
            .collect();
        format!(
            "progress after {}s ({}): {}",
            self.started.elapsed().as_secs(),
            self.what,
            nodes.join(", ")
        )
    }

    /// Clears the bars.
    pub fn finish(&mut self) {
        if let Some((multi, bars)) = &mut self.bars {
            for bar in bars.values() {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_node() {
        let mut p = Progress {
            what: "files",
            bars: None,
            latest: BTreeMap::new(),
            started: Instant::now(),
            last_line: Instant::now(),
        };
        p.update("g1", 5, 10);
        p.update("g2", 0, 7);
        p.update("g1", 6, 10);
        assert!(
            p.line().ends_with("(files): g1 6/10, g2 0/7"),
            "{}",
            p.line()
        );
    }
}
