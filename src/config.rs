//! Module configs: names, defaults and ranges in one place. Registered as `cache.<name>` (the
//! module is named `cache`), settable with CONFIG SET, in redis.conf, or as `loadmodule`
//! arguments (`loadmodule libtagcache.so max-cascade-depth 20`). The server refuses a value out
//! of range and keeps the old one.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::core::limits::Limits;
use crate::core::metrics::Thresholds;

/// One integer config: its name (without the `cache.` prefix), default, range and value. Every
/// one is in [`ALL`], which the registration iterates.
pub struct IntConfig {
    pub name: &'static str,
    pub default: i64,
    pub min: i64,
    pub max: i64,
    pub value: AtomicI64,
}

impl IntConfig {
    const fn new(name: &'static str, default: i64, min: i64, max: i64) -> IntConfig {
        IntConfig {
            name,
            default,
            min,
            max,
            value: AtomicI64::new(default),
        }
    }

    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Sets the value (the server checked the range).
    pub fn set(&self, value: i64) {
        self.value.store(value, Ordering::Relaxed);
    }
}

/// Cascade hops when CACHE.INVALIDATE has no DEPTH.
pub static MAX_CASCADE_DEPTH: IntConfig = IntConfig::new("max-cascade-depth", 16, 0, 1_000_000);
/// TTL of entries set without a TTL option (0: none).
pub static DEFAULT_TTL_SECONDS: IntConfig =
    IntConfig::new("default-ttl-seconds", 0, 0, i32::MAX as i64);
/// Invalidations in the last hour from which the alert level is `warning`.
pub static WARNING_PER_HOUR: IntConfig = IntConfig::new("warning-per-hour", 50, 0, i32::MAX as i64);
/// Invalidations in the last hour from which the alert level is `critical`.
pub static CRITICAL_PER_HOUR: IntConfig =
    IntConfig::new("critical-per-hour", 100, 0, i32::MAX as i64);
/// Events older than this are dropped from CACHE.EVENTS.
pub static EVENT_RETENTION_SECONDS: IntConfig =
    IntConfig::new("event-retention-seconds", 3600, 1, 30 * 86_400);
/// CACHE.EVENTS keeps at most this many events.
pub static MAX_EVENTS: IntConfig = IntConfig::new("max-events", 10_000, 1, 1_000_000);
/// The delay of the BATCHED strategy (used once BATCHED exists).
pub static BATCH_DELAY_MS: IntConfig = IntConfig::new("batch-delay-ms", 100, 10, 5_000);
/// An operation taking this many microseconds or more counts as slow (0: every one).
pub static SLOW_OP_US: IntConfig = IntConfig::new("slow-op-us", 10_000, 0, i32::MAX as i64);

/// How long one step of the LAZY reclaimer may work, in microseconds.
pub static LAZY_STEP_US: IntConfig = IntConfig::new("lazy-step-us", 1_000, 50, 100_000);

/// How long entries stay stale after `CACHE.INVALIDATE STRATEGY SOFT` without GRACE.
pub static SOFT_GRACE_SECONDS: IntConfig =
    IntConfig::new("soft-grace-seconds", 60, 1, i32::MAX as i64);
/// How long a `CACHE.FETCH` lease lasts without LEASE.
pub static LEASE_MS: IntConfig = IntConfig::new("lease-ms", 5_000, 1, i32::MAX as i64);
/// Refresh-ahead: a hot entry with less than this percent of its original TTL left is handed
/// to one fetching caller to recompute (0: off).
pub static REFRESH_AHEAD_PERCENT: IntConfig = IntConfig::new("refresh-ahead-percent", 0, 0, 100);
/// Reads from which an entry counts as hot for refresh-ahead.
pub static HOT_THRESHOLD: IntConfig = IntConfig::new("hot-threshold", 10, 0, i32::MAX as i64);
/// Distinct tags one entry may carry (CACHE.SET, CACHE.TAG).
pub static MAX_TAGS_PER_ENTRY: IntConfig = IntConfig::new("max-tags-per-entry", 1024, 0, 1_000_000);
/// Distinct dependencies one entry may carry (CACHE.SET, CACHE.DEPEND).
pub static MAX_DEPENDS_PER_ENTRY: IntConfig =
    IntConfig::new("max-depends-per-entry", 1024, 0, 1_000_000);
/// Bytes of one tag or resource name.
pub static MAX_NAME_BYTES: IntConfig = IntConfig::new("max-name-bytes", 4096, 1, 512 << 20);
/// Bytes of an entry's META.
pub static MAX_META_BYTES: IntConfig = IntConfig::new("max-meta-bytes", 65_536, 0, 512 << 20);
/// Bytes of a glob pattern (PATTERN selector, CACHE.TAGS MATCH).
pub static MAX_PATTERN_BYTES: IntConfig = IntConfig::new("max-pattern-bytes", 4096, 1, 512 << 20);
/// Entries one invalidation may reach through its cascade (beyond those it selects); more is
/// refused before anything is deleted. 0: no limit.
pub static MAX_CASCADE_ENTRIES: IntConfig =
    IntConfig::new("max-cascade-entries", 1_000_000, 0, i32::MAX as i64);

/// Keys one CACHE.KEYS may list, and tags one CACHE.TAGS without COUNT: a larger answer is
/// refused (its walk stops there), so that no listing keeps the server busy long. 0: no limit.
pub static MAX_REPLY_KEYS: IntConfig = IntConfig::new("max-reply-keys", 20_000, 0, i32::MAX as i64);

/// IMMEDIATE invalidations selecting (or cascading to) at least this many entries run in the
/// reclaimer's bounded steps, the client blocked until done (0: never). At once, an entry costs
/// the server about 1.2 µs by tag and 1.8 µs through a cascade (measured on Redis 7.0 with the
/// cores shared: 49 000 took 60 and 90 ms), so 20 000 keeps an invalidation run at once within
/// the 50 ms bound.
pub static STEPPED_THRESHOLD: IntConfig =
    IntConfig::new("stepped-threshold", 20_000, 0, i32::MAX as i64);

/// How long one step works while a client waits for a stepped IMMEDIATE invalidation.
pub static STEPPED_STEP_US: IntConfig = IntConfig::new("stepped-step-us", 2_000, 50, 100_000);

/// How long a cluster-wide command waits for the other masters' answers.
pub static CLUSTER_TIMEOUT_MS: IntConfig = IntConfig::new("cluster-timeout-ms", 5_000, 10, 600_000);

/// The stale-set guard's history covers at least this much time: a GUARD token older than what
/// it still holds is refused.
pub static GUARD_WINDOW_MS: IntConfig = IntConfig::new("guard-window-ms", 60_000, 1, 86_400_000);
/// The stale-set guard's history holds at most about this many bytes (the oldest facts go
/// first, and tokens from before them are refused).
pub static GUARD_MAX_BYTES: IntConfig = IntConfig::new("guard-max-bytes", 64 << 20, 0, i64::MAX);

/// Every config, in the order they are registered (`ffi::register_configs`).
pub static ALL: [&IntConfig; 25] = [
    &MAX_CASCADE_DEPTH,
    &DEFAULT_TTL_SECONDS,
    &WARNING_PER_HOUR,
    &CRITICAL_PER_HOUR,
    &EVENT_RETENTION_SECONDS,
    &MAX_EVENTS,
    &BATCH_DELAY_MS,
    &SLOW_OP_US,
    &LAZY_STEP_US,
    &SOFT_GRACE_SECONDS,
    &LEASE_MS,
    &REFRESH_AHEAD_PERCENT,
    &HOT_THRESHOLD,
    &MAX_TAGS_PER_ENTRY,
    &MAX_DEPENDS_PER_ENTRY,
    &MAX_NAME_BYTES,
    &MAX_META_BYTES,
    &MAX_PATTERN_BYTES,
    &STEPPED_STEP_US,
    &STEPPED_THRESHOLD,
    &CLUSTER_TIMEOUT_MS,
    &MAX_REPLY_KEYS,
    &MAX_CASCADE_ENTRIES,
    &GUARD_WINDOW_MS,
    &GUARD_MAX_BYTES,
];

/// The limits in force for commands from clients.
pub fn limits() -> Limits {
    let u = |c: &IntConfig| usize::try_from(c.get()).unwrap_or(0);
    Limits {
        tags_per_entry: u(&MAX_TAGS_PER_ENTRY),
        depends_per_entry: u(&MAX_DEPENDS_PER_ENTRY),
        name_bytes: u(&MAX_NAME_BYTES),
        meta_bytes: u(&MAX_META_BYTES),
        pattern_bytes: u(&MAX_PATTERN_BYTES),
        cascade_entries: u(&MAX_CASCADE_ENTRIES),
        wildcard_piece: crate::core::glob::MAX_SEARCHED_WILDCARD_PIECE,
    }
}

/// The most keys (or tags) one listing may answer with (`usize::MAX`: no limit).
pub fn max_reply_keys() -> usize {
    match usize::try_from(MAX_REPLY_KEYS.get()) {
        Ok(0) | Err(_) => usize::MAX,
        Ok(n) => n,
    }
}

pub fn max_cascade_depth() -> u32 {
    u32::try_from(MAX_CASCADE_DEPTH.get()).unwrap_or(u32::MAX)
}

pub fn default_ttl_ms() -> Option<i64> {
    let s = DEFAULT_TTL_SECONDS.get();
    (s > 0).then(|| s * 1000)
}

pub fn thresholds() -> Thresholds {
    let u = |c: &IntConfig| u64::try_from(c.get()).unwrap_or(0);
    Thresholds {
        warning_per_hour: u(&WARNING_PER_HOUR),
        critical_per_hour: u(&CRITICAL_PER_HOUR),
        slow_op_us: u(&SLOW_OP_US),
        max_events: usize::try_from(MAX_EVENTS.get()).unwrap_or(1),
        event_retention_seconds: EVENT_RETENTION_SECONDS.get(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_is_registered_once_with_a_default_in_its_range() {
        let mut names: Vec<&str> = ALL.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a config registered twice");
        for c in ALL {
            assert!(c.min <= c.default && c.default <= c.max, "{}", c.name);
            assert!(!c.name.starts_with("cache."), "{}", c.name);
        }
    }
}
