//! Per-account, per-operation token buckets. Each account has its own lock, so one
//! tenant's flood only contends with itself.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// A bucket's refill rate (tokens per second) and capacity.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    /// Sustained calls per second.
    pub rate: f64,
    /// Burst size.
    pub burst: f64,
}

/// Throttle configuration: a default and per-operation overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleConfig {
    /// Limit of operations not listed in `operations`.
    #[serde(default = "default_limit")]
    pub default: Limit,
    /// Per-operation limits (`"RunTask": {"rate": 20, "burst": 100}`).
    #[serde(default)]
    pub operations: HashMap<String, Limit>,
    /// Per-account overrides: account id -> operation -> limit (`"*"`: all of them).
    #[serde(default)]
    pub accounts: HashMap<String, HashMap<String, Limit>>,
}

fn default_limit() -> Limit {
    Limit {
        rate: 100.0,
        burst: 200.0,
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            default: default_limit(),
            operations: HashMap::new(),
            accounts: HashMap::new(),
        }
    }
}

impl ThrottleConfig {
    fn limit(&self, account: &str, op: &str) -> Limit {
        if let Some(a) = self.accounts.get(account) {
            if let Some(l) = a.get(op).or_else(|| a.get("*")) {
                return *l;
            }
        }
        self.operations.get(op).copied().unwrap_or(self.default)
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of one account, behind that account's own lock.
type AccountBuckets = Arc<Mutex<HashMap<String, Bucket>>>;

/// The throttle of the front end.
pub struct Throttle {
    config: ThrottleConfig,
    accounts: RwLock<HashMap<String, AccountBuckets>>,
}

impl Throttle {
    /// A throttle with this configuration.
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            accounts: RwLock::new(HashMap::new()),
        }
    }

    fn account(&self, account: &str) -> AccountBuckets {
        if let Some(a) = crate::sync::read(&self.accounts).get(account) {
            return a.clone();
        }
        crate::sync::write(&self.accounts)
            .entry(account.to_string())
            .or_default()
            .clone()
    }

    /// Takes one token for `(account, op)` at time `now`; false: throttled.
    pub fn allow_at(&self, account: &str, op: &str, now: Instant) -> bool {
        let limit = self.config.limit(account, op);
        let acct = self.account(account);
        let mut buckets = crate::sync::lock(&acct);
        let b = buckets.entry(op.to_string()).or_insert(Bucket {
            tokens: limit.burst,
            last: now,
        });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * limit.rate).min(limit.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes one token now.
    pub fn allow(&self, account: &str, op: &str) -> bool {
        self.allow_at(account, op, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_are_per_account_and_refill() {
        let mut cfg = ThrottleConfig::default();
        cfg.operations.insert(
            "RunTask".into(),
            Limit {
                rate: 2.0,
                burst: 3.0,
            },
        );
        let t = Throttle::new(cfg);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.allow_at("a", "RunTask", now));
        }
        assert!(!t.allow_at("a", "RunTask", now));
        // Another account and another operation are unaffected.
        assert!(t.allow_at("b", "RunTask", now));
        assert!(t.allow_at("a", "ListTasks", now));
        // Half a second refills one token at 2/s.
        assert!(t.allow_at("a", "RunTask", now + Duration::from_millis(500)));
        assert!(!t.allow_at("a", "RunTask", now + Duration::from_millis(500)));
    }
}
