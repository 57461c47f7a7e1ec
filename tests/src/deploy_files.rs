//! deploy/'s systemd units and cron.d entries, read the way systemd and cron read them, for the
//! tests that check them (deploy) and the one that runs them (docs).

/// A systemd unit file: `(section, key, value)` in file order; repeated keys stay repeated.
#[derive(Debug)]
pub struct Unit {
    entries: Vec<(String, String, String)>,
}

impl Unit {
    /// Parses unit-file text (comments `#`/`;`, `[Section]` headers, `Key=Value` lines).
    pub fn parse(text: &str) -> Unit {
        let mut section = String::new();
        let mut entries = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
            } else if let Some((k, v)) = line.split_once('=') {
                entries.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
            }
        }
        Unit { entries }
    }

    /// Whether `[name]` has any setting.
    pub fn has_section(&self, name: &str) -> bool {
        self.entries.iter().any(|(s, _, _)| s == name)
    }

    /// Every value of `key` in `[section]`, in order.
    pub fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }
}

/// A cron.d file: its variable assignments and its jobs.
#[derive(Debug)]
pub struct Cron {
    /// `NAME=value` lines, in order.
    pub env: Vec<(String, String)>,
    /// Job lines.
    pub jobs: Vec<CronJob>,
}

/// One cron.d job line (after its five time fields): a user and a command.
#[derive(Debug)]
pub struct CronJob {
    /// The user it runs as.
    pub user: String,
    /// The rest of the line, run by `SHELL -c`.
    pub command: String,
}

impl Cron {
    /// Parses cron.d text.
    ///
    /// # Panics
    /// On a job line with fewer than seven fields.
    pub fn parse(text: &str) -> Cron {
        let mut env = Vec::new();
        let mut jobs = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((k, v)) if !k.contains(' ') => env.push((k.to_string(), v.to_string())),
                _ => {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    assert!(
                        fields.len() > 6,
                        "minute hour day month weekday user command: {line}"
                    );
                    jobs.push(CronJob {
                        user: fields[5].to_string(),
                        command: fields[6..].join(" "),
                    });
                }
            }
        }
        Cron { env, jobs }
    }

    /// The shell cron runs jobs with (`SHELL=`, default `/bin/sh`).
    pub fn shell(&self) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == "SHELL")
            .map_or("/bin/sh", |(_, v)| v.as_str())
    }
}
