//! Module configs: names, defaults and ranges in one place. Registered as `cache.<name>` (the
//! module is named `cache`), settable with CONFIG SET, in redis.conf, or as `loadmodule`
//! arguments (`loadmodule libtagcache.so max-cascade-depth 20`).

use std::sync::atomic::{AtomicI64, Ordering};

pub struct IntConfig {
    pub name: &'static str,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

pub const MAX_CASCADE_DEPTH: IntConfig = IntConfig {
    name: "max-cascade-depth",
    default: 16,
    min: 0,
    max: 1_000_000,
};

pub const DEFAULT_TTL_SECONDS: IntConfig = IntConfig {
    name: "default-ttl-seconds",
    default: 0,
    min: 0,
    max: i32::MAX as i64,
};

pub static MAX_CASCADE_DEPTH_VALUE: AtomicI64 = AtomicI64::new(MAX_CASCADE_DEPTH.default);
pub static DEFAULT_TTL_SECONDS_VALUE: AtomicI64 = AtomicI64::new(DEFAULT_TTL_SECONDS.default);

pub fn max_cascade_depth() -> u32 {
    u32::try_from(MAX_CASCADE_DEPTH_VALUE.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
}

pub fn default_ttl_ms() -> Option<i64> {
    let s = DEFAULT_TTL_SECONDS_VALUE.load(Ordering::Relaxed);
    (s > 0).then(|| s * 1000)
}
