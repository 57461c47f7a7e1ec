//! The coordinator's own backup schedule: each node is backed up at its regular slots (every
//! `every`, from `at` UTC, each node offset within `splay` by a hash of its name, so 40 nodes do
//! not reach the store in the same second), retried after a failure with an exponential backoff
//! up to `retries` times, and given a verification slice every `verify_every`.
//!
//! The state is in memory; a restarted coordinator takes each node's last run from its bucket's
//! newest manifest, so a slot missed while it was down runs at once and nothing runs twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bucky_proto::v1 as pb;
use bucky_shared::manifests;
use bucky_shared::whisper::parse_duration;
use serde::Deserialize;

use crate::agents::AgentApi;
use crate::cluster::{self, Outcome};
use crate::config::Cluster;

/// `[schedule]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    /// Time between a node's backups: `24h`, `1h`.
    pub every: String,
    /// The day's first slot, `HH:MM` UTC; default `00:00`.
    #[serde(default)]
    pub at: Option<String>,
    /// Nodes spread over this span after each slot, each at a fixed offset; default 0.
    #[serde(default)]
    pub splay: Option<String>,
    /// First retry after a failed run; each next one waits twice as long. Default `5m`.
    #[serde(default)]
    pub retry_after: Option<String>,
    /// Longest wait between retries; default `4h`.
    #[serde(default)]
    pub retry_max: Option<String>,
    /// Failed runs in a row after which retries stop until the next regular slot; default 5.
    #[serde(default)]
    pub retries: Option<u32>,
    /// A verification slice (a `1/window_days` share of the bucket) this often, after a good
    /// backup; default `24h`; `0` for none.
    #[serde(default)]
    pub verify_every: Option<String>,
}

/// `[schedule]`, validated; times in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Between a node's regular runs.
    pub every: i64,
    /// Seconds after midnight UTC of the day's first slot.
    pub at: i64,
    /// Span the nodes' offsets fall in.
    pub splay: i64,
    /// First retry delay.
    pub retry_after: i64,
    /// Longest retry delay.
    pub retry_max: i64,
    /// Failed runs in a row before retries stop.
    pub retries: u32,
    /// Between verification slices (0: none).
    pub verify_every: i64,
}

impl ScheduleSection {
    /// Validates the section.
    ///
    /// # Errors
    /// A duration or time that does not parse, or an interval of 0.
    pub fn validate(&self) -> Result<Schedule, String> {
        let secs = |field: &str, text: Option<&str>, default: &str| -> Result<i64, String> {
            parse_duration(text.unwrap_or(default))
                .map(|s| s as i64)
                .map_err(|e| format!("[schedule] {field}: {e}"))
        };
        let every = secs("every", Some(&self.every), "")?;
        if every == 0 {
            return Err("[schedule] every: must be longer than 0".into());
        }
        let at = match &self.at {
            None => 0,
            Some(text) => parse_time_of_day(text)
                .ok_or_else(|| format!("[schedule] at: '{text}' is not HH:MM (UTC)"))?,
        };
        let retry_after = secs("retry_after", self.retry_after.as_deref(), "5m")?.max(1);
        Ok(Schedule {
            every,
            at,
            splay: secs("splay", self.splay.as_deref(), "0")?,
            retry_after,
            retry_max: secs("retry_max", self.retry_max.as_deref(), "4h")?.max(retry_after),
            retries: self.retries.unwrap_or(5).max(1),
            verify_every: secs("verify_every", self.verify_every.as_deref(), "24h")?,
        })
    }
}

fn parse_time_of_day(text: &str) -> Option<i64> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 3600 + m * 60)
}

impl Schedule {
    /// The node's fixed offset within the splay (FNV-1a of its name).
    pub fn offset(&self, host: &str) -> i64 {
        if self.splay <= 0 {
            return 0;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in host.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h % self.splay as u64) as i64
    }

    /// The node's first regular slot strictly after `after` (Unix seconds).
    pub fn next_slot(&self, host: &str, after: i64) -> i64 {
        let base = self.at + self.offset(host);
        base + ((after - base).div_euclid(self.every) + 1) * self.every
    }

    /// The wait before retry number `failures` (1 for the first).
    pub fn retry_delay(&self, failures: u32) -> i64 {
        let doublings = failures.saturating_sub(1).min(40);
        self.retry_after
            .saturating_mul(1i64 << doublings)
            .min(self.retry_max)
    }
}

/// One node's place in the schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    /// When the last scheduled run ended (0: none yet).
    pub last_run: i64,
    /// "ok", "partial", "failed" (empty: none yet).
    pub last_result: String,
    /// Why it was not ok.
    pub last_reason: String,
    /// When the next run is due.
    pub next_run: i64,
    /// Failed runs in a row.
    pub failures: u32,
    /// The next run is a retry.
    pub backing_off: bool,
    /// Retries stopped until the next regular slot.
    pub gave_up: bool,
    /// When the last verification slice ran (0: none known).
    pub last_verify: i64,
    /// A run is under way.
    pub running: bool,
}

impl NodeState {
    /// A node whose last backup started at `last_backup`: due at the slot after it (at once when
    /// that slot passed while nobody ran it), or, never backed up, at its next slot.
    pub fn start(schedule: &Schedule, host: &str, last_backup: Option<i64>, now: i64) -> Self {
        let next_run = match last_backup {
            Some(last) => schedule
                .next_slot(host, last)
                .min(schedule.next_slot(host, now)),
            None => schedule.next_slot(host, now),
        };
        NodeState {
            next_run,
            ..NodeState::default()
        }
    }

    /// Records a run that ended at `now` with `outcome`, and when the next one is due.
    pub fn ended(&mut self, schedule: &Schedule, host: &str, now: i64, outcome: &Outcome) {
        self.running = false;
        self.last_run = now;
        let regular = schedule.next_slot(host, now);
        let (result, reason) = match outcome {
            Outcome::Ok => ("ok", String::new()),
            Outcome::Partial(why) => ("partial", why.clone()),
            Outcome::Failed(why) => ("failed", why.clone()),
        };
        self.last_result = result.into();
        self.last_reason = reason;
        if matches!(outcome, Outcome::Failed(_)) {
            self.failures += 1;
            self.gave_up = self.failures >= schedule.retries;
            self.backing_off = !self.gave_up;
            self.next_run = match self.gave_up {
                true => regular,
                false => (now + schedule.retry_delay(self.failures)).min(regular),
            };
        } else {
            // A partial run committed: its failed files are retried by the next regular run.
            self.failures = 0;
            self.backing_off = false;
            self.gave_up = false;
            self.next_run = regular;
        }
    }

    /// The node's state as `status` shows it.
    pub fn to_pb(&self) -> pb::ScheduleStatus {
        pb::ScheduleStatus {
            last_run: self.last_run,
            last_result: self.last_result.clone(),
            last_reason: self.last_reason.clone(),
            next_run: self.next_run,
            failures: self.failures,
            backing_off: self.backing_off,
            gave_up: self.gave_up,
            last_verify: self.last_verify,
        }
    }
}

/// Every node's state, shared with `status`.
pub type States = Arc<Mutex<BTreeMap<String, NodeState>>>;

fn unix_now() -> i64 {
    bucky_shared::layout::Version::now().0
}

/// Runs the schedule for ever: each node's backup when due, `concurrency` at a time.
pub async fn run<A: AgentApi + Clone + 'static>(
    cluster: Arc<Cluster>,
    agents: Arc<Vec<A>>,
    schedule: Schedule,
    states: States,
) {
    let window_days = cluster.config.verify.window_days;
    for host in &cluster.hosts {
        let bucket = bucky_shared::bucket::Bucket::open(&host.bucket, &cluster.config.storage);
        let (last, verified) = match &bucket {
            Ok(bucket) => (
                manifests::latest_summary(bucket)
                    .await
                    .ok()
                    .flatten()
                    .map(|s| s.started.0),
                manifests::trust(bucket)
                    .await
                    .ok()
                    .and_then(|(t, _)| t.newest())
                    .map_or(0, |v| v.0),
            ),
            Err(_) => (None, 0),
        };
        let mut state = NodeState::start(&schedule, &host.name, last, unix_now());
        state.last_verify = verified;
        tracing::info!(host = host.name, next = %bucky_shared::layout::Version(state.next_run), "scheduled");
        states
            .lock()
            .expect("the schedule lock is never poisoned")
            .insert(host.name.clone(), state);
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(
        cluster.config.concurrency.max(1),
    ));
    loop {
        let now = unix_now();
        let due: Vec<String> = {
            let mut states = states.lock().expect("the schedule lock is never poisoned");
            states
                .iter_mut()
                .filter(|(_, s)| !s.running && s.next_run <= now)
                .map(|(host, s)| {
                    s.running = true;
                    host.clone()
                })
                .collect()
        };
        for host in due {
            let Some(agent) = agents.iter().find(|a| a.host() == host).cloned() else {
                continue;
            };
            let (cluster, states, permits) = (cluster.clone(), states.clone(), permits.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire().await.expect("the semaphore stays open");
                run_node(&cluster, agent, &schedule, &states, window_days).await;
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One node's scheduled backup, then its verification slice when one is due.
async fn run_node<A: AgentApi>(
    cluster: &Cluster,
    agent: A,
    schedule: &Schedule,
    states: &States,
    window_days: u32,
) {
    let host = agent.host().to_string();
    tracing::info!(host, "scheduled backup started");
    let agents = std::slice::from_ref(&agent);
    let outcome = match cluster::backup(
        cluster,
        agents,
        pb::BackupRequest::default(),
        1,
        Duration::ZERO,
        &|_, _, _| {},
    )
    .await
    {
        Ok(mut results) => results
            .pop()
            .map_or(Outcome::Failed("no result".into()), |r| r.outcome),
        Err(e) => Outcome::Failed(e.to_string()),
    };
    let now = unix_now();
    let verify_due = {
        let mut states = states.lock().expect("the schedule lock is never poisoned");
        let state = states.entry(host.clone()).or_default();
        state.ended(schedule, &host, now, &outcome);
        schedule.verify_every > 0
            && !matches!(outcome, Outcome::Failed(_))
            && now - state.last_verify >= schedule.verify_every
    };
    match &outcome {
        Outcome::Failed(why) => tracing::warn!(host, why, "scheduled backup failed"),
        _ => tracing::info!(host, "scheduled backup ended"),
    }
    if !verify_due {
        return;
    }
    let request = pb::VerifyRequest {
        all: false,
        share: 1.0 / f64::from(window_days.max(1)),
        window_days,
    };
    match agent.verify(request, |_| {}).await {
        Ok(result) => {
            if result.corrupt_count > 0 {
                tracing::warn!(
                    host,
                    corrupt = result.corrupt_count,
                    "scheduled verification found corrupt versions"
                );
            }
            states
                .lock()
                .expect("the schedule lock is never poisoned")
                .entry(host)
                .or_default()
                .last_verify = now;
        }
        Err(e) => tracing::warn!(host, error = %e, "scheduled verification failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(every: &str, splay: &str) -> Schedule {
        ScheduleSection {
            every: every.into(),
            at: Some("01:00".into()),
            splay: Some(splay.into()),
            retry_after: Some("5m".into()),
            retry_max: Some("1h".into()),
            retries: Some(4),
            verify_every: None,
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn nodes_keep_their_own_slot_within_the_splay() {
        let s = schedule("24h", "4h");
        let day = 20_000 * 86_400;
        let hosts: Vec<String> = (0..40).map(|i| format!("graphite{i:02}")).collect();
        let slots: Vec<i64> = hosts.iter().map(|h| s.next_slot(h, day)).collect();
        for (h, slot) in hosts.iter().zip(&slots) {
            assert!((day + 3600..day + 5 * 3600).contains(slot), "{h}");
            assert_eq!(s.next_slot(h, *slot), slot + 86_400, "daily");
            assert_eq!(s.next_slot(h, slot - 1), *slot);
        }
        let distinct: std::collections::BTreeSet<_> = slots.iter().collect();
        assert!(distinct.len() > 35, "spread: {}", distinct.len());
    }

    #[test]
    fn failures_back_off_doubling_then_give_up_until_the_next_slot() {
        let s = schedule("24h", "0");
        let host = "g1";
        let start = s.next_slot(host, 0);
        let mut state = NodeState::start(&s, host, Some(start - 86_400), start - 10);
        assert_eq!(state.next_run, start);
        let failed = Outcome::Failed("unreachable".into());
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..4 {
            state.ended(&s, host, now, &failed);
            waits.push(state.next_run - now);
            now = state.next_run;
        }
        assert_eq!(&waits[..3], [300, 600, 1200]);
        assert!(state.gave_up && !state.backing_off);
        assert_eq!(
            state.next_run,
            start + 86_400,
            "given up: the next regular slot"
        );
        state.ended(&s, host, now, &Outcome::Ok);
        assert_eq!((state.failures, state.gave_up), (0, false));
    }

    #[test]
    fn a_slot_missed_while_down_runs_at_once() {
        let s = schedule("1h", "0");
        let now = 50 * 86_400 + 600;
        let state = NodeState::start(&s, "g1", Some(now - 5 * 3600), now);
        assert!(state.next_run <= now);
        let fresh = NodeState::start(&s, "g1", Some(now - 60), now);
        assert!(fresh.next_run > now);
    }

    #[test]
    fn the_documented_schedule_parses_as_written() {
        #[derive(Deserialize)]
        struct File {
            schedule: ScheduleSection,
        }
        let docs = include_str!("../../docs/operations.md");
        let block = docs
            .split("```toml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap())
            .find(|b| b.starts_with("[schedule]"))
            .expect("operations.md shows a [schedule]");
        let file: File = toml::from_str(block).unwrap();
        let s = file.schedule.validate().unwrap();
        assert_eq!((s.every, s.at, s.splay), (86_400, 3600, 4 * 3600));
        assert_eq!((s.retry_after, s.retry_max, s.retries), (300, 4 * 3600, 5));
        let example = include_str!("../../deploy/config/coordinator-file.example.toml");
        let (head, tail) = example
            .split_once("# [schedule]")
            .expect("the example has it");
        let uncommented = format!("{head}[schedule]{}", tail.replace("\n# ", "\n"));
        let cluster = crate::config::parse(&uncommented, std::path::Path::new("/etc/bucky/c.toml"));
        assert_eq!(
            cluster.unwrap().schedule,
            Some(s),
            "the example's commented [schedule] is the documented one"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let bad = ScheduleSection {
            every: "daily".into(),
            at: None,
            splay: None,
            retry_after: None,
            retry_max: None,
            retries: None,
            verify_every: None,
        };
        assert!(bad.validate().unwrap_err().contains("[schedule] every"));
        let bad_at = ScheduleSection {
            every: "1h".into(),
            at: Some("25:00".into()),
            ..bad
        };
        assert!(bad_at.validate().unwrap_err().contains("HH:MM"));
    }
}
