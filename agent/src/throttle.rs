//! Pacing moves between nodes so a rebalance or heal does not starve carbon: at most so many
//! metrics and so many bytes per second, shared by every worker of a job.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A pace of metrics and bytes per second; a limit of 0 is none.
#[derive(Debug)]
pub struct Throttle {
    per_metric: Duration,
    /// Seconds per byte.
    per_byte: f64,
    /// When the next metric may start.
    next: Mutex<Instant>,
}

impl Throttle {
    /// At most `metrics_per_sec` metrics and `bytes_per_sec` bytes a second; `None` when both
    /// are 0 (or not positive).
    pub fn new(metrics_per_sec: f64, bytes_per_sec: f64) -> Option<Throttle> {
        let per = |rate: f64| if rate > 0.0 { 1.0 / rate } else { 0.0 };
        if per(metrics_per_sec) == 0.0 && per(bytes_per_sec) == 0.0 {
            return None;
        }
        Some(Throttle {
            per_metric: Duration::from_secs_f64(per(metrics_per_sec)),
            per_byte: per(bytes_per_sec),
            next: Mutex::new(Instant::now()),
        })
    }

    /// How long the caller must wait before starting the next metric; the slot is taken.
    pub fn reserve(&self) -> Duration {
        self.reserve_at(Instant::now())
    }

    fn reserve_at(&self, now: Instant) -> Duration {
        let mut next = self.next.lock().expect("never poisoned");
        let start = (*next).max(now);
        *next = start + self.per_metric;
        start - now
    }

    /// Waits for the next metric's turn.
    pub async fn admit(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Counts `bytes` just read: later metrics start that much later.
    pub fn charge(&self, bytes: u64) {
        self.charge_at(bytes, Instant::now());
    }

    fn charge_at(&self, bytes: u64, now: Instant) {
        if self.per_byte > 0.0 {
            let mut next = self.next.lock().expect("never poisoned");
            *next = (*next).max(now) + Duration::from_secs_f64(bytes as f64 * self.per_byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_and_bytes_space_the_starts_out() {
        assert!(Throttle::new(0.0, 0.0).is_none());
        let t = Throttle::new(10.0, 0.0).unwrap();
        let now = *t.next.lock().unwrap();
        // 10 a second: each start 100 ms after the one before, however fast they are asked.
        let waits: Vec<Duration> = (0..4).map(|_| t.reserve_at(now)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, [ms(0), ms(100), ms(200), ms(300)]);
        // Asked later than its slot: no wait.
        assert_eq!(t.reserve_at(now + ms(1000)), ms(0));

        let t = Throttle::new(0.0, 1_000_000.0).unwrap();
        let now = *t.next.lock().unwrap();
        assert_eq!(t.reserve_at(now), ms(0));
        t.charge_at(500_000, now);
        assert_eq!(
            t.reserve_at(now),
            ms(500),
            "half a second for half a megabyte"
        );
    }
}
