//! Exponential reconnect backoff with jitter, capped.

use std::time::Duration;

/// Delay before reconnect attempt `n`: `base * 2^n` capped at `cap`, then a random
/// point in the upper half of that window ("equal jitter"), so many hosts that lost
/// the control plane together do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base`, never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The window (before jitter) of the next attempt.
    pub fn window(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let w = self.window();
        self.attempt = self.attempt.saturating_add(1);
        let half = w / 2;
        let jitter_ms = (half.as_millis() as u64).max(1);
        half + Duration::from_millis(rand::random_range(0..=jitter_ms))
    }

    /// After a connection that worked: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut windows = vec![];
        for _ in 0..12 {
            let w = b.window();
            let d = b.next_delay();
            assert!(
                d >= w / 2 && d <= w + Duration::from_millis(1),
                "{d:?} vs {w:?}"
            );
            windows.push(w.as_millis());
        }
        assert_eq!(&windows[..7], &[100, 200, 400, 800, 1600, 3200, 5000]);
        assert!(windows.iter().all(|&w| w <= 5000));
        // jitter: 50 draws in the 5 s window are not all equal
        let draws: std::collections::BTreeSet<_> = (0..50).map(|_| b.next_delay()).collect();
        assert!(draws.len() > 1);
        b.reset();
        assert_eq!(b.window(), Duration::from_millis(100));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..200 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
    }
}
