//! Time as the index records it (milliseconds since the Unix epoch), where the cache reads
//! it, and ages for people to read.
//!
//! The cache asks a [`Clock`] rather than the system: tag TTLs, stale-if-error, the
//! negative cache and retention then run in tests on a [`ManualClock`] moved forward at
//! will, instead of tests sleeping until a TTL passes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds as a human duration, to the second ("2h 5m 3s"), for log lines, `Warning`
/// headers and reports.
pub fn age(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// A clock that moves only when told to: it starts at the system's time.
pub struct ManualClock(AtomicU64);

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock(AtomicU64::new(now_ms()))
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::default();
        let t = c.now_ms();
        assert_eq!(c.now_ms(), t);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now_ms(), t + 2000);
        assert_eq!(age(3_723_000), "1h 2m 3s");
    }
}
