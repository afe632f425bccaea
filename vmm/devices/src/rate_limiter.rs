//! Token-bucket rate limiter with a bandwidth (bytes) bucket and an ops bucket, configured
//! like Firecracker's `rate_limiter` JSON object:
//!
//! ```json
//! { "bandwidth": { "size": 1048576, "one_time_burst": 0, "refill_time": 100 },
//!   "ops":       { "size": 100, "refill_time": 1000 } }
//! ```
//!
//! A bucket holds at most `size` tokens and refills completely in `refill_time` ms;
//! `one_time_burst` extra tokens are available once, at the start, and are spent first.
//! A bucket whose `size` or `refill_time` is 0 does not limit. When a request does not fit,
//! the limiter arms its timerfd for the moment it will; the device stops processing that
//! queue until the timer fires (register [`RateLimiter::timer_fd`] as readable, call
//! [`RateLimiter::on_timer`]).

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vmm_sys_util::timerfd::TimerFd;

/// One bucket's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucketConfig {
    /// Bucket capacity in tokens (bytes or operations).
    pub size: u64,
    /// Extra tokens usable once, on top of `size`.
    #[serde(default)]
    pub one_time_burst: u64,
    /// Milliseconds to refill an empty bucket to `size`.
    pub refill_time: u64,
}

/// A rate limiter's configuration; a missing bucket means no limit on that dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiterConfig {
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<TokenBucketConfig>,
    /// Operations (requests, frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<TokenBucketConfig>,
}

/// A single token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    size: u64,
    burst: u64,
    refill_ns: u128,
    budget: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket, or `None` when the config does not limit (size or refill time 0).
    pub fn new(cfg: &TokenBucketConfig, now: Instant) -> Option<Self> {
        if cfg.size == 0 || cfg.refill_time == 0 {
            return None;
        }
        Some(TokenBucket {
            size: cfg.size,
            burst: cfg.one_time_burst,
            refill_ns: u128::from(cfg.refill_time) * 1_000_000,
            budget: cfg.size,
            last: now,
        })
    }

    /// Tokens available now (budget plus what is left of the one-time burst).
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.budget.saturating_add(self.burst)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        let add = elapsed.saturating_mul(u128::from(self.size)) / self.refill_ns;
        if add > 0 {
            let add = u64::try_from(add).unwrap_or(u64::MAX);
            self.budget = self.budget.saturating_add(add).min(self.size);
            self.last = now;
        }
    }

    /// How long until `tokens` can be taken; zero if they can be now.
    fn wait_for(&mut self, tokens: u64, now: Instant) -> Duration {
        self.refill(now);
        // A request larger than the bucket passes once the bucket is full.
        let need = tokens.saturating_sub(self.burst).min(self.size);
        if self.budget >= need {
            return Duration::ZERO;
        }
        let missing = u128::from(need - self.budget);
        let ns = missing
            .saturating_mul(self.refill_ns)
            .div_ceil(u128::from(self.size));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)).max(Duration::from_micros(1))
    }

    fn take(&mut self, tokens: u64) {
        let from_burst = tokens.min(self.burst);
        self.burst -= from_burst;
        self.budget = self.budget.saturating_sub(tokens - from_burst);
    }
}

/// Bandwidth and ops buckets plus the timer that wakes the device when throttled.
#[derive(Debug)]
pub struct RateLimiter {
    bandwidth: Option<TokenBucket>,
    ops: Option<TokenBucket>,
    timer: TimerFd,
    blocked: bool,
}

impl RateLimiter {
    /// A limiter with full buckets.
    pub fn new(cfg: &RateLimiterConfig) -> std::io::Result<Self> {
        let now = Instant::now();
        Ok(RateLimiter {
            bandwidth: cfg
                .bandwidth
                .as_ref()
                .and_then(|c| TokenBucket::new(c, now)),
            ops: cfg.ops.as_ref().and_then(|c| TokenBucket::new(c, now)),
            timer: TimerFd::new()?,
            blocked: false,
        })
    }

    /// Whether this limiter limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.bandwidth.is_none() && self.ops.is_none()
    }

    /// Takes `bytes` bandwidth tokens and `ops` op tokens, all or nothing. On `false` the
    /// timer is armed and the limiter is blocked until [`RateLimiter::on_timer`].
    pub fn consume(&mut self, bytes: u64, ops: u64) -> bool {
        self.consume_at(bytes, ops, Instant::now())
    }

    /// [`RateLimiter::consume`] at a given instant (for tests).
    pub fn consume_at(&mut self, bytes: u64, ops: u64, now: Instant) -> bool {
        if self.blocked {
            return false;
        }
        let wait_bw = self
            .bandwidth
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(bytes, now));
        let wait_ops = self
            .ops
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(ops, now));
        let wait = wait_bw.max(wait_ops);
        if !wait.is_zero() {
            self.blocked = true;
            if let Err(e) = self.timer.reset(wait, None) {
                tracing::error!("rate limiter: cannot arm timer: {e}");
                self.blocked = false;
            }
            return false;
        }
        if let Some(b) = self.bandwidth.as_mut() {
            b.take(bytes);
        }
        if let Some(b) = self.ops.as_mut() {
            b.take(ops);
        }
        true
    }

    /// Whether a consume failed and the timer has not fired yet.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Call when [`RateLimiter::timer_fd`] is readable: clears the timer and unblocks.
    pub fn on_timer(&mut self) {
        // The fd is readable when we are called, so this read does not block.
        if let Err(e) = self.timer.wait() {
            tracing::warn!("rate limiter: timer read failed: {e}");
        }
        self.blocked = false;
    }

    /// Replaces the configuration live (PATCH): buckets restart full, a pending block ends
    /// (the caller should then retry its queue).
    pub fn update(&mut self, cfg: &RateLimiterConfig) {
        let now = Instant::now();
        self.bandwidth = cfg
            .bandwidth
            .as_ref()
            .and_then(|c| TokenBucket::new(c, now));
        self.ops = cfg.ops.as_ref().and_then(|c| TokenBucket::new(c, now));
        if let Err(e) = self.timer.clear() {
            tracing::warn!("rate limiter: cannot disarm timer: {e}");
        }
        self.blocked = false;
    }

    /// The timerfd to watch for readability while blocked.
    pub fn timer_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }

    /// Tokens available in the (bandwidth, ops) buckets; `None` where unlimited.
    pub fn available(&mut self) -> (Option<u64>, Option<u64>) {
        let now = Instant::now();
        (
            self.bandwidth.as_mut().map(|b| b.available(now)),
            self.ops.as_mut().map(|b| b.available(now)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(size: u64, burst: u64, refill: u64) -> TokenBucketConfig {
        TokenBucketConfig {
            size,
            one_time_burst: burst,
            refill_time: refill,
        }
    }

    #[test]
    fn bucket_refills_proportionally() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(&cfg(1000, 0, 100), t0).unwrap();
        assert_eq!(b.wait_for(1000, t0), Duration::ZERO);
        b.take(1000);
        assert_eq!(b.available(t0), 0);
        // Half the refill time gives half the bucket.
        assert_eq!(b.available(t0 + Duration::from_millis(50)), 500);
        // Never more than size.
        assert_eq!(b.available(t0 + Duration::from_secs(10)), 1000);
    }

    #[test]
    fn wait_time_matches_missing_tokens() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(&cfg(1000, 0, 1000), t0).unwrap();
        b.take(1000);
        // 250 tokens at 1 token/ms: 250 ms.
        assert_eq!(b.wait_for(250, t0), Duration::from_millis(250));
        // Larger than the bucket: wait for a full bucket.
        assert_eq!(b.wait_for(5000, t0), Duration::from_millis(1000));
    }

    #[test]
    fn absurd_configs_do_not_overflow() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(&cfg(u64::MAX, u64::MAX, u64::MAX), t0).unwrap();
        b.take(u64::MAX);
        b.take(u64::MAX);
        assert!(b.wait_for(u64::MAX, t0) > Duration::from_secs(1));
        // About one token per millisecond.
        assert_eq!(b.available(t0 + Duration::from_secs(3600)), 3_600_000);
    }

    #[test]
    fn one_time_burst_spent_first_and_not_refilled() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(&cfg(100, 50, 100), t0).unwrap();
        assert_eq!(b.available(t0), 150);
        b.take(120);
        assert_eq!(b.available(t0), 30);
        assert_eq!(b.available(t0 + Duration::from_secs(1)), 100);
    }

    #[test]
    fn zero_size_or_refill_is_unlimited() {
        let t0 = Instant::now();
        assert!(TokenBucket::new(&cfg(0, 0, 100), t0).is_none());
        assert!(TokenBucket::new(&cfg(10, 0, 0), t0).is_none());
        let mut rl = RateLimiter::new(&RateLimiterConfig::default()).unwrap();
        assert!(rl.is_unlimited());
        assert!(rl.consume(u64::MAX, u64::MAX));
    }

    #[test]
    fn limiter_blocks_then_timer_unblocks() {
        let mut rl = RateLimiter::new(&RateLimiterConfig {
            bandwidth: Some(cfg(1000, 0, 20)),
            ops: Some(cfg(2, 0, 1000)),
        })
        .unwrap();
        assert!(rl.consume(600, 1));
        // Bandwidth does not fit: nothing is taken from the ops bucket.
        assert!(!rl.consume(600, 1));
        assert!(rl.is_blocked());
        assert!(!rl.consume(1, 0));
        // The timer fires after the refill (about 4 ms here).
        rl.on_timer();
        assert!(!rl.is_blocked());
        assert_eq!(rl.available().1, Some(1));
        assert!(rl.consume(600, 1));
        // Ops exhausted now.
        assert!(!rl.consume(0, 1));
    }

    #[test]
    fn live_update_replaces_buckets() {
        let mut rl = RateLimiter::new(&RateLimiterConfig {
            bandwidth: Some(cfg(10, 0, 1000)),
            ops: None,
        })
        .unwrap();
        assert!(rl.consume(10, 0));
        assert!(!rl.consume(10, 0));
        rl.update(&RateLimiterConfig {
            bandwidth: Some(cfg(100, 0, 1000)),
            ops: None,
        });
        assert!(!rl.is_blocked());
        assert!(rl.consume(100, 5));
        assert_eq!(rl.available(), (Some(0), None));
    }

    #[test]
    fn config_parses_firecracker_json() {
        let c: RateLimiterConfig = serde_json_like(
            r#"{"bandwidth":{"size":1048576,"one_time_burst":0,"refill_time":100},"ops":{"size":10,"refill_time":1}}"#,
        );
        assert_eq!(c.bandwidth.unwrap().size, 1_048_576);
        assert_eq!(c.ops.unwrap().one_time_burst, 0);
    }

    fn serde_json_like(s: &str) -> RateLimiterConfig {
        serde_json::from_str(s).unwrap()
    }
}
