//! Metrics and advice: the pure core behind `CACHE.STATS`, `CACHE.RECOMMEND`, `CACHE.EVENTS`,
//! `CACHE.HOTKEYS`, `CACHE.RESET`, the `INFO cache` section and the invalidation-rate alert.
//!
//! No clock reads and no `redis_module` imports: every function that depends on time takes
//! `now_ms` (Unix milliseconds) from the caller, so tests are deterministic. Everything is
//! measured since the metrics started (module load) or since the last [`Metrics::reset`],
//! except the two sliding windows in [`Rates`] and the event log, which is bounded by
//! `cache.max-events` and `cache.event-retention-seconds`.
//!
//! # Wiring (the shell's side)
//!
//! - `CACHE.GET`/`MGET`: [`Metrics::record_hit`] (with the key) or [`Metrics::record_miss`]
//!   per key; [`Metrics::record_op`] with [`Op::Get`] per command.
//! - `CACHE.SET`: [`Metrics::record_op`] with [`Op::Set`].
//! - `CACHE.INVALIDATE`: [`Metrics::record_op`] with [`Op::Invalidate`] for the command's
//!   latency, and [`Metrics::record_invalidation`] when the invalidation is applied (for
//!   BATCHED, when the batch runs); log the returned line, if any, at `warning` level.
//! - Expiry, eviction, plain `DEL`: [`Metrics::record_removal`] with the entry's hit count.
//! - `CACHE.STATS`, `CACHE.RECOMMEND`, `CACHE.EVENTS`, `CACHE.HOTKEYS`, `CACHE.RESET`,
//!   `INFO cache`: [`Metrics::stats`], [`Metrics::recommend`], [`Metrics::events`],
//!   [`Metrics::hotkeys`], [`Metrics::reset`], [`Metrics::info`]; render with `to_fields`
//!   (one form for RESP and JSON: `wire::to_json` writes the reply as JSON).
//! - [`Metrics::new`] allocates, so it is not `const`: keep `Option<Metrics>` in the static
//!   state and create it on first use (or at module load).
//!
//! # Bounded cost
//!
//! Recording is O(1) amortised, the space-saving top-N tables (patterns, contexts, hot keys)
//! included: a key not tracked yet takes a slot at the smallest count, and only when no slot is
//! left at that count are the table's counts scanned again. [`Metrics::stats`], [`Metrics::recommend`] and
//! [`Metrics::info`] scan fixed-size structures only: their cost does not depend on the number
//! of invalidations, lookups or events recorded (a few microseconds). [`Metrics::events`] walks
//! at most the event ring.
//!
//! # Bounded memory
//!
//! Fixed part, allocated by [`Metrics::new`] (about 90 KiB):
//! - last-hour window: [`HOUR_BUCKETS`] one-second buckets of 16 bytes (56 KiB);
//! - last-24-hours window: [`DAY_BUCKETS`] one-minute buckets of 16 bytes (22.5 KiB);
//! - three latency histograms of [`HISTOGRAM_BUCKETS`] `u64` counters (11.6 KiB).
//!
//! Variable part, with hard caps (names are truncated, see [`MAX_PATTERN_LEN`] etc.; each
//! top-N slot costs its key buffer plus about 60 bytes):
//! - invalidation patterns: [`PATTERN_SLOTS`] slots of at most `MAX_PATTERN_LEN + 3` bytes
//!   (under 40 KiB);
//! - contexts: [`CONTEXT_SLOTS`] slots of at most `MAX_CONTEXT_LEN + 3` bytes (under 6 KiB);
//! - the same two tables keyed by user (names of at most [`MAX_TRACKED_USER_LEN`] bytes), for
//!   the users restricted by key patterns (under 64 KiB);
//! - selector types and strategies: [`LABEL_SLOTS`] names each, of at most
//!   `MAX_LABEL_LEN + 3` bytes;
//! - hot keys: [`HOTKEY_SLOTS`] slots of at most [`MAX_TRACKED_KEY_LEN`] bytes (longer keys
//!   are not tracked), under 280 KiB;
//! - event ring: at most `max_events` events (the largest `cache.max-events` in effect since
//!   the ring was last trimmed), each 120 bytes plus its pattern (at most `MAX_PATTERN_LEN + 3`
//!   bytes), context (`MAX_CONTEXT_LEN + 3`), type and strategy (`MAX_LABEL_LEN + 3` each)
//!   and the name of its user (at most [`MAX_TRACKED_USER_LEN`] bytes; a longer name is not
//!   kept, and that user then sees its own events without names):
//!   at most about 600 bytes per event, 6 MB for the default 10 000 events (typically a
//!   tenth of that).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Buckets of the last-hour window (one second each).
pub const HOUR_BUCKETS: usize = 3_600;
/// Buckets of the last-24-hours window (one minute each).
pub const DAY_BUCKETS: usize = 1_440;
/// Buckets of each latency histogram: 0..=15 µs exactly, then 8 buckets per power of two.
pub const HISTOGRAM_BUCKETS: usize = 16 + 60 * 8;
/// How many patterns `most_common_patterns` lists (and how many contexts `by_context` lists).
pub const MOST_COMMON: usize = 10;
/// Patterns tracked by the space-saving top-N behind `most_common_patterns`.
pub const PATTERN_SLOTS: usize = 128;
/// Contexts tracked by the space-saving top-N behind `by_context`.
pub const CONTEXT_SLOTS: usize = 32;
/// Distinct selector types and strategies counted each; later newcomers count as `other`.
pub const LABEL_SLOTS: usize = 16;
/// Keys tracked by the space-saving top-N behind `CACHE.HOTKEYS`.
pub const HOTKEY_SLOTS: usize = 256;
/// Keys longer than this are not tracked as hot keys (they still count as hits).
pub const MAX_TRACKED_KEY_LEN: usize = 1_024;
/// Patterns (selector type plus arguments) are truncated to this many bytes, plus `...`.
pub const MAX_PATTERN_LEN: usize = 256;
/// Users with longer names are not tracked in the per-user pattern and context tables.
pub const MAX_TRACKED_USER_LEN: usize = 128;
/// Contexts are truncated to this many bytes, plus `...`.
pub const MAX_CONTEXT_LEN: usize = 128;
/// Selector types and strategies are truncated to this many bytes, plus `...`.
pub const MAX_LABEL_LEN: usize = 32;
/// At most one alert log line per level within this interval.
pub const ALERT_LOG_INTERVAL_MS: i64 = MINUTE_MS;

// Seed rules (seed 000), thresholds as there.
/// "Dominant invalidation pattern": the top pattern has more than this share of invalidations.
pub const DOMINANT_PATTERN_SHARE: f64 = 0.5;
/// "Low invalidation efficiency": fewer keys than this per invalidation on average.
pub const LOW_EFFICIENCY_AVG_KEYS: f64 = 1.0;
/// "High invalidation impact": more keys than this per invalidation on average.
pub const HIGH_IMPACT_AVG_KEYS: f64 = 100.0;

// Our rules.
/// "Low hit rate": below this percentage ...
pub const LOW_HIT_RATE_PCT: f64 = 50.0;
/// ... once at least this many lookups were counted.
pub const LOW_HIT_RATE_MIN_LOOKUPS: u64 = 100;
/// "Oversized tag": one tag on at least this share of the entries ...
/// `n` with the noun in its number: "1 entry", "2 entries".
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// [`counted`] entries.
fn entries(n: u64) -> String {
    counted(n, "entry", "entries")
}

pub const OVERSIZED_TAG_SHARE: f64 = 0.5;
/// ... when the cache holds at least this many entries.
pub const OVERSIZED_TAG_MIN_ENTRIES: u64 = 100;
/// "Entries never read": at least this share of expired or invalidated entries had no hit ...
pub const NEVER_READ_SHARE: f64 = 0.5;
/// ... once at least this many entries expired or were invalidated.
pub const NEVER_READ_MIN_REMOVALS: u64 = 100;
/// "TTL churn": expiries are more than this share of all removals ...
pub const TTL_CHURN_EXPIRED_SHARE: f64 = 0.5;
/// ... and at least this share of the expired entries were read at most once ...
pub const TTL_CHURN_LOW_READ_SHARE: f64 = 0.5;
/// ... once at least this many entries expired.
pub const TTL_CHURN_MIN_EXPIRIES: u64 = 100;
/// "Deep or wide dependency cascades": a cascade went at least this many hops, or ...
pub const DEEP_CASCADE_DEPTH: u32 = 5;
/// ... one invalidation reached at least this many entries through dependencies, or ...
pub const LARGE_CASCADE_KEYS: u64 = 1_000;
/// ... cascades account for more than this share of the invalidated entries ...
pub const WIDE_CASCADE_SHARE: f64 = 0.5;
/// ... once at least this many entries were reached through dependencies.
pub const WIDE_CASCADE_MIN_KEYS: u64 = 100;
/// "Slow cache operations": at least this many slow calls of one operation ...
pub const SLOW_OPS_MIN: u64 = 10;
/// ... making up at least this share of its calls.
pub const SLOW_OPS_SHARE: f64 = 0.01;

/// Issue titles, as `CACHE.RECOMMEND` reports them. The first four are seed 000's.
pub const ISSUE_HIGH_FREQUENCY: &str = "High invalidation frequency";
pub const ISSUE_DOMINANT_PATTERN: &str = "Dominant invalidation pattern";
pub const ISSUE_LOW_EFFICIENCY: &str = "Low invalidation efficiency";
pub const ISSUE_HIGH_IMPACT: &str = "High invalidation impact";
pub const ISSUE_LOW_HIT_RATE: &str = "Low hit rate";
pub const ISSUE_OVERSIZED_TAG: &str = "Oversized tag";
pub const ISSUE_NEVER_READ: &str = "Entries never read";
pub const ISSUE_TTL_CHURN: &str = "TTL churn";
pub const ISSUE_CASCADES: &str = "Deep or wide dependency cascades";
pub const ISSUE_SLOW_OPS: &str = "Slow cache operations";

/// The configuration the metrics depend on (module configs `cache.*`), passed in on each call so
/// that `CONFIG SET` takes effect at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// `cache.warning-per-hour`: alert level `warning` from this many invalidations in the last hour.
    pub warning_per_hour: u64,
    /// `cache.critical-per-hour`: alert level `critical` from this many invalidations in the last hour.
    pub critical_per_hour: u64,
    /// `cache.slow-op-us`: an operation taking this many microseconds or more is slow (the
    /// comparison of Redis's `slowlog-log-slower-than`). 0 counts every operation as slow.
    pub slow_op_us: u64,
    /// `cache.max-events`: the event ring holds at most this many events.
    pub max_events: usize,
    /// `cache.event-retention-seconds`: events older than this are dropped.
    pub event_retention_seconds: i64,
}

impl Default for Thresholds {
    /// The configs' defaults.
    fn default() -> Thresholds {
        Thresholds {
            warning_per_hour: 50,
            critical_per_hour: 100,
            slow_op_us: 10_000,
            max_events: 10_000,
            event_retention_seconds: 3_600,
        }
    }
}

/// A timed command, for the `operations` latency figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
    Invalidate,
}

impl Op {
    fn slot(self) -> usize {
        match self {
            Op::Get => 0,
            Op::Set => 1,
            Op::Invalidate => 2,
        }
    }

    fn command(self) -> &'static str {
        match self {
            Op::Get => "CACHE.GET",
            Op::Set => "CACHE.SET",
            Op::Invalidate => "CACHE.INVALIDATE",
        }
    }
}

/// Why an entry left the keyspace without an invalidation, with the hits it had received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Expired { hits: u64 },
    Evicted { hits: u64 },
    Deleted { hits: u64 },
}

/// One invalidation (one `CACHE.INVALIDATE`, or one applied batch), as the shell saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvalidationRecord<'a> {
    /// Selector type: `key`, `tag`, `pattern`, `namespace`, `all` or `dependents`
    /// (lowercased and truncated to [`MAX_LABEL_LEN`] here).
    pub kind: &'a str,
    /// The selector arguments joined by spaces (`user:1`, `user:*`, `""` for `all`).
    pub pattern: &'a str,
    /// Every entry invalidated, cascaded ones included: the command's reply.
    pub keys: u64,
    /// How many of `keys` were reached only through the dependency cascade (clamped to `keys`).
    pub cascaded: u64,
    /// The deepest cascade hop reached (0 = no cascade).
    pub depth_reached: u32,
    /// Time spent invalidating, in microseconds.
    pub duration_us: u64,
    /// `CONTEXT` text, `""` when none was given.
    pub context: &'a str,
    /// `immediate`, `lazy` or `batched` (lowercased here), `""` if unknown.
    pub strategy: &'a str,
    /// The ACL user it ran for (None: no client user, e.g. a replica applying its master's
    /// stream). Users restricted by key patterns see the names of their own invalidations only.
    pub user: Option<&'a [u8]>,
}

/// Figures that come from the index and the keyspace, passed in by the shell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFigures {
    pub entries: u64,
    pub tags: u64,
    pub tagged_entries: u64,
    pub resources: u64,
    pub dependency_edges: u64,
    pub index_bytes: u64,
    pub value_bytes: u64,
    /// The tag with the most entries, and that number (for the "Oversized tag" rule).
    pub largest_tag: Option<(String, u64)>,
    pub lazy: LazyFigures,
    pub module: ModuleBytes,
}

/// The LAZY strategy's state: marks waiting for the reclaimer and what it did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LazyFigures {
    /// LAZY invalidations whose entries are not all reclaimed yet.
    pub marks: u64,
    /// Keys listed in the marks' cascades (resolved when each mark was made).
    pub cascaded: u64,
    /// Bytes the marks hold (selectors and cascades).
    pub bytes: u64,
    /// Entries the reclaimer deleted, walks and steps it finished, its longest step.
    pub reclaimed: u64,
    pub walks: u64,
    pub steps: u64,
    pub max_step_us: u64,
}

impl LazyFigures {
    fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("marks", Field::uint(self.marks)),
            ("cascaded", Field::uint(self.cascaded)),
            ("bytes", Field::uint(self.bytes)),
            ("reclaimed", Field::uint(self.reclaimed)),
            ("walks", Field::uint(self.walks)),
            ("steps", Field::uint(self.steps)),
            ("max_step_us", Field::uint(self.max_step_us)),
        ]
    }
}

/// The invalidation-rate alert level, from the number of invalidations in the last hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertLevel {
    Normal,
    Warning,
    Critical,
}

impl AlertLevel {
    /// `critical` from `critical_per_hour`, else `warning` from `warning_per_hour`, else
    /// `normal` (seed 000's comparisons, `>=`). No invalidation in the last hour is `normal`
    /// whatever the thresholds.
    pub fn for_rate(last_hour: u64, th: &Thresholds) -> AlertLevel {
        if last_hour == 0 {
            AlertLevel::Normal
        } else if last_hour >= th.critical_per_hour {
            AlertLevel::Critical
        } else if last_hour >= th.warning_per_hour {
            AlertLevel::Warning
        } else {
            AlertLevel::Normal
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::Normal => "normal",
            AlertLevel::Warning => "warning",
            AlertLevel::Critical => "critical",
        }
    }
}

/// A recommendation's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reply values
// ---------------------------------------------------------------------------------------------

/// A reply value for the shell to render as RESP (maps are RESP3 maps, flat arrays under RESP2).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Nothing (nil; `null` in JSON).
    Nil,
    Int(i64),
    Float(f64),
    Str(String),
    Map(Vec<(String, Field)>),
    List(Vec<Field>),
}

impl Field {
    /// A counter; saturates at `i64::MAX`.
    pub fn uint(v: u64) -> Field {
        Field::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }

    fn map(fields: Vec<(&'static str, Field)>) -> Field {
        Field::Map(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn strs(items: &[String]) -> Field {
        Field::List(items.iter().map(|s| Field::Str(s.clone())).collect())
    }
}

/// Name -> count pairs in reply order (largest first); a JSON object and a RESP map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub Vec<(String, u64)>);

impl Counts {
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == name).map(|&(_, v)| v)
    }

    pub fn to_field(&self) -> Field {
        Field::Map(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), Field::uint(*v)))
                .collect(),
        )
    }
}

/// `CACHE.STATS`. Field names and nesting are the contract's (DESIGN.md §3); fields marked
/// *extra* are ours.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub entries: u64,
    pub tags: u64,
    pub tagged_entries: u64,
    pub resources: u64,
    pub dependency_edges: u64,
    /// `CACHE.GET`/`MGET` lookups that found an entry, since the metrics started.
    pub hits: u64,
    /// Lookups that found nothing (or a lazily invalidated entry).
    pub misses: u64,
    /// `100 * hits / (hits + misses)`, a percent in 0..=100; 0 before any lookup.
    pub hit_rate: f64,
    /// Invalidations recorded since the metrics started.
    pub total_invalidations: u64,
    /// Entries they removed, cascaded ones included.
    pub total_keys_invalidated: u64,
    pub rates: Rates,
    pub thresholds: ThresholdStats,
    pub patterns: PatternStats,
    pub efficiency: Efficiency,
    pub removals: RemovalStats,
    pub operations: Operations,
    pub memory: MemoryStats,
    /// *Extra*: the LAZY strategy's marks and reclaimer.
    pub lazy: LazyFigures,
    /// *Extra*: when the metrics started (module load or the last `CACHE.RESET`), Unix ms.
    pub metrics_since_ms: i64,
}

/// Invalidation rates. These are true sliding windows over fixed-size time buckets, independent
/// of the event log and its retention.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    /// Invalidations recorded in the last hour, counted in one-second buckets: the current
    /// second and the 3599 before it, i.e. timestamps `t` with
    /// `floor(t / 1000) > floor(now / 1000) - 3600`.
    pub last_hour: u64,
    /// Invalidations recorded in the last 24 hours, counted in one-minute buckets: the current
    /// minute and the 1439 before it, i.e. `floor(t / 60000) > floor(now / 60000) - 1440`.
    pub last_24_hours: u64,
    /// Average invalidations per hour over the metrics' age (time since module load or the last
    /// `CACHE.RESET`), capped to the 24-hour window and counted as at least one hour:
    /// `last_24_hours / clamp(age_hours, 1, 24)`. The floor of one hour keeps a young
    /// instance from extrapolating a few invalidations into a huge hourly rate; the cap
    /// keeps it a true average over data the window still holds.
    pub average_per_hour: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdStats {
    pub warning_per_hour: u64,
    pub critical_per_hour: u64,
    /// From `rates.last_hour`, see [`AlertLevel::for_rate`].
    pub current_alert_level: AlertLevel,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatternStats {
    /// The [`MOST_COMMON`] most frequent patterns since the metrics started, largest first,
    /// each `"<type> <arguments>"` (`tag user:1`, `pattern user:*`, `all`). Counted with a
    /// space-saving top-N of [`PATTERN_SLOTS`] slots: exact while fewer distinct patterns have
    /// been seen; beyond that each count is a lower bound (the hits since the pattern last
    /// entered the table) and every pattern with more than 1/[`PATTERN_SLOTS`] of all
    /// invalidations is guaranteed to be tracked.
    pub most_common_patterns: Counts,
    /// Selector type -> invalidations (only types seen).
    pub invalidation_types: Counts,
    /// *Extra*: `CONTEXT` text -> invalidations, for invalidations that carried a context; the
    /// [`MOST_COMMON`] largest, counted like `most_common_patterns` ([`CONTEXT_SLOTS`] slots).
    pub by_context: Counts,
    /// *Extra*: strategy (`immediate`, `lazy`, `batched`) -> invalidations.
    pub by_strategy: Counts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Efficiency {
    /// `total_keys_invalidated / total_invalidations` (0 before any invalidation).
    pub avg_keys_per_invalidation: f64,
    /// Mean invalidation duration since the metrics started, in milliseconds.
    pub avg_duration_ms: f64,
    /// Longest invalidation since the metrics started, in milliseconds.
    pub max_duration_ms: f64,
    /// *Extra*: invalidations that found no entry.
    pub empty_invalidations: u64,
    /// *Extra*: entries invalidated only through the dependency cascade.
    pub cascaded_keys: u64,
    /// *Extra*: the most entries one invalidation reached through the cascade.
    pub max_cascaded_keys: u64,
    /// *Extra*: the deepest cascade hop reached.
    pub max_cascade_depth: u64,
    /// *Extra*: invalidated entries that had never been read.
    pub unread_keys_invalidated: u64,
}

/// Entries that left without an invalidation.
#[derive(Debug, Clone, PartialEq)]
pub struct RemovalStats {
    pub expired: u64,
    pub evicted: u64,
    pub deleted: u64,
    /// *Extra*: expired entries that had never been read.
    pub expired_unread: u64,
    /// *Extra*: expired entries that had been read exactly once.
    pub expired_read_once: u64,
}

/// Latency of one operation since the metrics started, from a log-scale histogram (exact up to
/// 15 µs, then 8 buckets per power of two: percentiles are within 12.5 % above the true value,
/// and never above `max_us`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpStats {
    pub count: u64,
    pub avg_us: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Calls that took `cache.slow-op-us` or more (judged when recorded).
    pub slow: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operations {
    pub get: OpStats,
    pub set: OpStats,
    pub invalidate: OpStats,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryStats {
    pub index_bytes: u64,
    pub value_bytes: u64,
    /// The structures besides the index, each an estimate of its heap.
    pub lease_bytes: u64,
    pub batch_bytes: u64,
    pub lazy_bytes: u64,
    pub metrics_bytes: u64,
    pub rules_bytes: u64,
    pub watch_bytes: u64,
    pub cluster_bytes: u64,
    pub history_bytes: u64,
}

/// The heap of the structures the shell holds besides the index (see [`MemoryStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleBytes {
    pub lease_bytes: u64,
    pub batch_bytes: u64,
    pub lazy_bytes: u64,
    pub rules_bytes: u64,
    pub watch_bytes: u64,
    pub cluster_bytes: u64,
    pub history_bytes: u64,
}

impl Stats {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("entries", Field::uint(self.entries)),
            ("tags", Field::uint(self.tags)),
            ("tagged_entries", Field::uint(self.tagged_entries)),
            ("resources", Field::uint(self.resources)),
            ("dependency_edges", Field::uint(self.dependency_edges)),
            ("hits", Field::uint(self.hits)),
            ("misses", Field::uint(self.misses)),
            ("hit_rate", Field::Float(self.hit_rate)),
            ("total_invalidations", Field::uint(self.total_invalidations)),
            (
                "total_keys_invalidated",
                Field::uint(self.total_keys_invalidated),
            ),
            ("rates", Field::map(self.rates.to_fields())),
            ("thresholds", Field::map(self.thresholds.to_fields())),
            ("patterns", Field::map(self.patterns.to_fields())),
            ("efficiency", Field::map(self.efficiency.to_fields())),
            ("removals", Field::map(self.removals.to_fields())),
            ("operations", Field::map(self.operations.to_fields())),
            ("memory", Field::map(self.memory.to_fields())),
            ("lazy", Field::map(self.lazy.to_fields())),
            ("metrics_since_ms", Field::Int(self.metrics_since_ms)),
        ]
    }
}

impl Rates {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("last_hour", Field::uint(self.last_hour)),
            ("last_24_hours", Field::uint(self.last_24_hours)),
            ("average_per_hour", Field::Float(self.average_per_hour)),
        ]
    }
}

impl ThresholdStats {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("warning_per_hour", Field::uint(self.warning_per_hour)),
            ("critical_per_hour", Field::uint(self.critical_per_hour)),
            (
                "current_alert_level",
                Field::Str(self.current_alert_level.as_str().to_owned()),
            ),
        ]
    }
}

impl PatternStats {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("most_common_patterns", self.most_common_patterns.to_field()),
            ("invalidation_types", self.invalidation_types.to_field()),
            ("by_context", self.by_context.to_field()),
            ("by_strategy", self.by_strategy.to_field()),
        ]
    }
}

impl Efficiency {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            (
                "avg_keys_per_invalidation",
                Field::Float(self.avg_keys_per_invalidation),
            ),
            ("avg_duration_ms", Field::Float(self.avg_duration_ms)),
            ("max_duration_ms", Field::Float(self.max_duration_ms)),
            ("empty_invalidations", Field::uint(self.empty_invalidations)),
            ("cascaded_keys", Field::uint(self.cascaded_keys)),
            ("max_cascaded_keys", Field::uint(self.max_cascaded_keys)),
            ("max_cascade_depth", Field::uint(self.max_cascade_depth)),
            (
                "unread_keys_invalidated",
                Field::uint(self.unread_keys_invalidated),
            ),
        ]
    }
}

impl RemovalStats {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("expired", Field::uint(self.expired)),
            ("evicted", Field::uint(self.evicted)),
            ("deleted", Field::uint(self.deleted)),
            ("expired_unread", Field::uint(self.expired_unread)),
            ("expired_read_once", Field::uint(self.expired_read_once)),
        ]
    }
}

impl OpStats {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("count", Field::uint(self.count)),
            ("avg_us", Field::Float(self.avg_us)),
            ("p50_us", Field::uint(self.p50_us)),
            ("p99_us", Field::uint(self.p99_us)),
            ("max_us", Field::uint(self.max_us)),
            ("slow", Field::uint(self.slow)),
        ]
    }
}

impl Operations {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("get", Field::map(self.get.to_fields())),
            ("set", Field::map(self.set.to_fields())),
            ("invalidate", Field::map(self.invalidate.to_fields())),
        ]
    }
}

impl MemoryStats {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("index_bytes", Field::uint(self.index_bytes)),
            ("value_bytes", Field::uint(self.value_bytes)),
            ("lease_bytes", Field::uint(self.lease_bytes)),
            ("batch_bytes", Field::uint(self.batch_bytes)),
            ("lazy_bytes", Field::uint(self.lazy_bytes)),
            ("metrics_bytes", Field::uint(self.metrics_bytes)),
            ("rules_bytes", Field::uint(self.rules_bytes)),
            ("watch_bytes", Field::uint(self.watch_bytes)),
            ("cluster_bytes", Field::uint(self.cluster_bytes)),
            ("history_bytes", Field::uint(self.history_bytes)),
            ("total_bytes", Field::uint(self.total_bytes())),
        ]
    }

    /// Everything the module holds: the sum of the fields.
    pub fn total_bytes(&self) -> u64 {
        self.index_bytes
            + self.value_bytes
            + self.lease_bytes
            + self.batch_bytes
            + self.lazy_bytes
            + self.metrics_bytes
            + self.rules_bytes
            + self.watch_bytes
            + self.cluster_bytes
            + self.history_bytes
    }
}

/// One `CACHE.RECOMMEND` item.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub severity: Severity,
    pub issue: String,
    pub message: String,
    pub suggestions: Vec<String>,
}

impl Recommendation {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("severity", Field::Str(self.severity.as_str().to_owned())),
            ("issue", Field::Str(self.issue.clone())),
            ("message", Field::Str(self.message.clone())),
            ("suggestions", Field::strs(&self.suggestions)),
        ]
    }
}

/// One `CACHE.EVENTS` item: one recorded invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub timestamp_ms: i64,
    /// Selector type (`type` in replies).
    pub kind: String,
    /// Selector arguments joined by spaces (truncated to [`MAX_PATTERN_LEN`] bytes plus `...`).
    pub pattern: String,
    pub keys_invalidated: u64,
    pub duration_us: u64,
    pub context: String,
    pub strategy: String,
    /// Who made it (see [`InvalidationRecord::user`]); not part of the reply.
    pub user: Option<Vec<u8>>,
}

impl Event {
    pub fn to_fields(&self) -> Vec<(&'static str, Field)> {
        vec![
            ("timestamp_ms", Field::Int(self.timestamp_ms)),
            ("type", Field::Str(self.kind.clone())),
            ("pattern", Field::Str(self.pattern.clone())),
            ("keys_invalidated", Field::uint(self.keys_invalidated)),
            ("duration_us", Field::uint(self.duration_us)),
            // No CONTEXT (or an empty one): nil, as CACHE.PENDING shows it.
            (
                "context",
                if self.context.is_empty() {
                    Field::Nil
                } else {
                    Field::Str(self.context.clone())
                },
            ),
            ("strategy", Field::Str(self.strategy.clone())),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Bounded building blocks
// ---------------------------------------------------------------------------------------------

/// A sliding window of fixed-width time buckets in a ring, with a running total for the
/// window that ends at the newest bucket seen (`head`).
///
/// Invariant: a slot whose count is non-zero holds a bucket in `(head - len, head]`, and
/// `total` is the sum of all counts.
#[derive(Clone)]
struct Ring {
    width_ms: i64,
    bucket: Box<[i64]>,
    count: Box<[u64]>,
    head: i64,
    total: u64,
}

impl Ring {
    fn new(width_ms: i64, len: usize) -> Ring {
        Ring {
            width_ms,
            bucket: vec![i64::MIN; len].into_boxed_slice(),
            count: vec![0; len].into_boxed_slice(),
            head: i64::MIN,
            total: 0,
        }
    }

    fn len(&self) -> i64 {
        i64::try_from(self.count.len()).unwrap_or(i64::MAX)
    }

    fn slot(&self, bucket: i64) -> usize {
        // rem_euclid of a positive length is in 0..len.
        usize::try_from(bucket.rem_euclid(self.len())).unwrap_or(0)
    }

    fn advance(&mut self, cur: i64) {
        if cur <= self.head {
            return;
        }
        if cur.saturating_sub(self.head) >= self.len() {
            self.count.iter_mut().for_each(|c| *c = 0);
            self.total = 0;
        } else {
            for b in self.head + 1..=cur {
                let s = self.slot(b);
                self.total = self.total.saturating_sub(self.count[s]);
                self.count[s] = 0;
                self.bucket[s] = b;
            }
        }
        self.head = cur;
    }

    fn add(&mut self, now_ms: i64, n: u64) {
        let cur = now_ms.div_euclid(self.width_ms);
        self.advance(cur);
        if cur <= self.head.saturating_sub(self.len()) {
            return; // older than the window (the clock went back a long way)
        }
        let s = self.slot(cur);
        if self.bucket[s] != cur {
            self.total = self.total.saturating_sub(self.count[s]);
            self.bucket[s] = cur;
            self.count[s] = 0;
        }
        self.count[s] = self.count[s].saturating_add(n);
        self.total = self.total.saturating_add(n);
    }

    /// The sum over the window that ends with the bucket of `now_ms`: O(1) when `now_ms` falls in
    /// the newest bucket, else one scan of the ring.
    fn sum(&self, now_ms: i64) -> u64 {
        let cur = now_ms.div_euclid(self.width_ms);
        if cur == self.head {
            return self.total;
        }
        let lo = cur.saturating_sub(self.len());
        self.bucket
            .iter()
            .zip(self.count.iter())
            .filter(|&(&b, _)| b > lo && b <= cur)
            .fold(0u64, |acc, (_, &c)| acc.saturating_add(c))
    }
}

/// Bucket of a value in microseconds: 0..=15 exactly, then 8 buckets per power of two.
fn histogram_bucket(v: u64) -> usize {
    if v < 16 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // 4..=63
    let sub = (v >> (e - 3)) & 7;
    16 + (e as usize - 4) * 8 + sub as usize
}

/// Inclusive value range of a bucket.
fn histogram_range(i: usize) -> (u64, u64) {
    if i < 16 {
        return (i as u64, i as u64);
    }
    let e = (i - 16) / 8 + 4;
    let sub = ((i - 16) % 8) as u64;
    let shift = e - 3;
    let low = (8 + sub) << shift;
    (low, low + ((1u64 << shift) - 1))
}

#[derive(Clone)]
struct Histogram {
    buckets: Box<[u64]>,
    count: u64,
    sum: u64,
    max: u64,
    slow: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: vec![0; HISTOGRAM_BUCKETS].into_boxed_slice(),
            count: 0,
            sum: 0,
            max: 0,
            slow: 0,
        }
    }

    fn record(&mut self, v: u64, slow_us: u64) {
        if let Some(b) = self.buckets.get_mut(histogram_bucket(v)) {
            *b = b.saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
        if v >= slow_us {
            self.slow = self.slow.saturating_add(1);
        }
    }

    /// The value at rank `ceil(count * pct / 100)`: the top of its bucket, capped at the maximum.
    fn percentile(&self, pct: u32) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = (u128::from(self.count) * u128::from(pct))
            .div_ceil(100)
            .max(1);
        let mut seen = 0u128;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += u128::from(c);
            if seen >= rank {
                return histogram_range(i).1.min(self.max);
            }
        }
        self.max
    }

    fn stats(&self) -> OpStats {
        OpStats {
            count: self.count,
            avg_us: ratio(self.sum, self.count),
            p50_us: self.percentile(50),
            p99_us: self.percentile(99),
            max_us: self.max,
            slow: self.slow,
        }
    }
}

/// A hasher for keys that already are 64-bit hashes (the hot keys here, the guard history's
/// names).
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

struct Slot {
    /// The key's bytes; the buffer is reused when another key takes the slot.
    key: Vec<u8>,
    hash: u64,
    err: u64,
}

/// Space-saving top-N (Metwally et al.) over at most `cap` byte-string keys.
///
/// Slots hold the keys and `counts` their counts; a map from the key's 64-bit hash finds the
/// slot. A tracked key's hit costs one hash, one lookup and one addition. An untracked key
/// replaces a slot with the smallest count (reusing its buffer, so no allocation once the
/// buffers are large enough), inheriting that count as error. The smallest slots are found
/// from `at_floor`: the slots whose count was `floor`, the smallest, when the counts were last
/// scanned. Counts only grow, so one of them that still counts `floor` is still a smallest;
/// one counted since is skipped, and when none is left the counts are scanned again (one
/// pass over `cap` integers, shared by every slot found at the new floor).
/// `count - err` is exactly the number of additions since the key (last) entered the table, a
/// lower bound of its true total; any key whose true total exceeds `total / cap` is tracked.
/// A key whose 64-bit hash equals a tracked key's (odds about `cap / 2^64` per key) is not
/// counted while that key is tracked.
struct TopN {
    cap: usize,
    hasher: ahash::RandomState,
    pos: HashMap<u64, usize, BuildHasherDefault<PrehashedHasher>>,
    slots: Vec<Slot>,
    counts: Vec<u64>,
    floor: u64,
    at_floor: Vec<usize>,
}

impl TopN {
    fn new(cap: usize) -> TopN {
        TopN {
            cap,
            hasher: ahash::RandomState::new(),
            pos: HashMap::default(),
            slots: Vec::new(),
            counts: Vec::new(),
            floor: 0,
            at_floor: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn heap_bytes(&self) -> usize {
        self.pos.capacity() * (8 + 8 + 1)
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.slots.iter().map(|s| s.key.capacity()).sum::<usize>()
            + self.counts.capacity() * 8
            + self.at_floor.capacity() * 8
    }

    fn add(&mut self, key: &[u8], n: u64) {
        let hash = self.hasher.hash_one(key);
        if let Some(&s) = self.pos.get(&hash) {
            let (Some(slot), Some(count)) = (self.slots.get(s), self.counts.get_mut(s)) else {
                return;
            };
            if slot.key == key {
                *count = count.saturating_add(n);
            } // else a hash collision with another tracked key
            return;
        }
        if self.cap == 0 {
            return;
        }
        if self.slots.len() < self.cap {
            self.pos.insert(hash, self.slots.len());
            self.slots.push(Slot {
                key: key.to_vec(),
                hash,
                err: 0,
            });
            self.counts.push(n);
            return;
        }
        let Some(s) = self.smallest() else {
            return;
        };
        let (Some(slot), Some(count)) = (self.slots.get_mut(s), self.counts.get_mut(s)) else {
            return;
        };
        let min = *count;
        *count = min.saturating_add(n);
        self.pos.remove(&slot.hash);
        slot.key.clear();
        slot.key.extend_from_slice(key);
        slot.hash = hash;
        slot.err = min;
        self.pos.insert(hash, s);
    }

    /// A slot with the smallest count (None only when there are no slots).
    fn smallest(&mut self) -> Option<usize> {
        loop {
            while let Some(s) = self.at_floor.pop() {
                if self.counts.get(s) == Some(&self.floor) {
                    return Some(s);
                }
            }
            self.floor = *self.counts.iter().min()?;
            let floor = self.floor;
            // Reversed, so that the lowest slot is taken first.
            self.at_floor.extend(
                self.counts
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|&(_, &c)| c == floor)
                    .map(|(s, _)| s),
            );
        }
    }

    /// The `n` keys with the largest guaranteed counts (`count - err`), largest first, ties by key.
    fn top(&self, n: usize) -> Vec<(&[u8], u64)> {
        let mut v: Vec<(&[u8], u64)> = self
            .slots
            .iter()
            .zip(&self.counts)
            .map(|(slot, &count)| (slot.key.as_slice(), count.saturating_sub(slot.err)))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    /// [`TopN::top`] for keys that were added as `str`.
    fn top_names(&self, n: usize) -> Counts {
        Counts(
            self.top(n)
                .into_iter()
                .map(|(k, c)| (String::from_utf8_lossy(k).into_owned(), c))
                .collect(),
        )
    }
}

/// Exact counts for a few labels (selector types, strategies); once `cap - 1` labels are
/// known, newcomers count under `other`.
struct Labels {
    cap: usize,
    items: Vec<(Box<str>, u64)>,
}

impl Labels {
    fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<(Box<str>, u64)>()
            + self.items.iter().map(|(n, _)| n.len()).sum::<usize>()
    }

    fn new(cap: usize) -> Labels {
        Labels {
            cap,
            items: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, n: u64) {
        let name =
            if self.items.iter().any(|(k, _)| &**k == name) || self.items.len() + 1 < self.cap {
                name
            } else {
                "other"
            };
        if let Some(item) = self.items.iter_mut().find(|(k, _)| &**k == name) {
            item.1 = item.1.saturating_add(n);
        } else if self.items.len() < self.cap {
            self.items.push((name.into(), n));
        }
    }

    fn counts(&self) -> Counts {
        let mut v: Vec<(String, u64)> = self
            .items
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Counts(v)
    }
}

fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...", s.get(..end).unwrap_or_default()))
}

fn label(s: &str) -> String {
    truncate(s, MAX_LABEL_LEN).to_ascii_lowercase()
}

/// `"<type> <arguments>"`, or just the type when there are no arguments (`all`).
fn pattern_key(kind: &str, pattern: &str) -> String {
    let full = if pattern.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} {pattern}")
    };
    truncate(&full, MAX_PATTERN_LEN).into_owned()
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn pct(num: u64, den: u64) -> f64 {
    100.0 * ratio(num, den)
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct RemovalCounts {
    expired: u64,
    evicted: u64,
    deleted: u64,
    expired_unread: u64,
    expired_read_once: u64,
    expired_hits: u64,
}

/// Module-wide metrics. One instance; the shell keeps it behind its lock (it is `Send`).
pub struct Metrics {
    since_ms: i64,
    hits: u64,
    misses: u64,
    invalidations: u64,
    keys_invalidated: u64,
    cascaded_keys: u64,
    unread_invalidated: u64,
    empty_invalidations: u64,
    max_keys: u64,
    max_cascaded: u64,
    max_depth: u32,
    duration_sum_us: u64,
    duration_max_us: u64,
    removals: RemovalCounts,
    hour: Ring,
    day: Ring,
    ops: [Histogram; 3],
    patterns: TopN,
    contexts: TopN,
    /// The same two tables keyed by `user NUL name`, for the users who may not see the others'
    /// names ([`Metrics::restrict`]).
    own_patterns: TopN,
    own_contexts: TopN,
    kinds: Labels,
    strategies: Labels,
    hot: TopN,
    events: VecDeque<Event>,
    /// When the last alert line was returned, per level (warning, critical).
    last_alert: [Option<i64>; 2],
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("since_ms", &self.since_ms)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .field("invalidations", &self.invalidations)
            .field("keys_invalidated", &self.keys_invalidated)
            .field("events", &self.events.len())
            .field("hot_keys", &self.hot.len())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// The heap the metrics take (windows, histograms, pattern and context counters, hot keys,
    /// the event log): an estimate, walking the bounded tables (`cache.max-events` events and
    /// the top-N tables' slots).
    pub fn heap_bytes(&self) -> u64 {
        let ring = |r: &Ring| (r.bucket.len() + r.count.len()) * 8;
        let histograms: usize = self.ops.iter().map(|h| h.buckets.len() * 8).sum();
        let tops = [
            &self.patterns,
            &self.contexts,
            &self.own_patterns,
            &self.own_contexts,
            &self.hot,
        ];
        let events: usize = self.events.capacity() * std::mem::size_of::<Event>()
            + self
                .events
                .iter()
                .map(|e| {
                    e.kind.capacity()
                        + e.pattern.capacity()
                        + e.context.capacity()
                        + e.strategy.capacity()
                        + e.user.as_ref().map_or(0, Vec::capacity)
                })
                .sum::<usize>();
        (ring(&self.hour)
            + ring(&self.day)
            + histograms
            + tops.iter().map(|t| t.heap_bytes()).sum::<usize>()
            + self.kinds.heap_bytes()
            + self.strategies.heap_bytes()
            + events) as u64
    }

    /// Empty metrics, started at `now_ms` (the origin of `average_per_hour`).
    pub fn new(now_ms: i64) -> Metrics {
        Metrics {
            since_ms: now_ms,
            hits: 0,
            misses: 0,
            invalidations: 0,
            keys_invalidated: 0,
            cascaded_keys: 0,
            unread_invalidated: 0,
            empty_invalidations: 0,
            max_keys: 0,
            max_cascaded: 0,
            max_depth: 0,
            duration_sum_us: 0,
            duration_max_us: 0,
            removals: RemovalCounts::default(),
            hour: Ring::new(SECOND_MS, HOUR_BUCKETS),
            day: Ring::new(MINUTE_MS, DAY_BUCKETS),
            ops: [Histogram::new(), Histogram::new(), Histogram::new()],
            patterns: TopN::new(PATTERN_SLOTS),
            contexts: TopN::new(CONTEXT_SLOTS),
            own_patterns: TopN::new(PATTERN_SLOTS),
            own_contexts: TopN::new(CONTEXT_SLOTS),
            kinds: Labels::new(LABEL_SLOTS),
            strategies: Labels::new(LABEL_SLOTS),
            hot: TopN::new(HOTKEY_SLOTS),
            events: VecDeque::new(),
            last_alert: [None, None],
        }
    }

    /// `CACHE.RESET`: zeroes every metric (counters, windows, histograms, top-N tables, events,
    /// alert log limiter) and restarts the clock of `average_per_hour` at `now_ms`.
    pub fn reset(&mut self, now_ms: i64) {
        *self = Metrics::new(now_ms);
    }

    /// A lookup that found an entry; hits are counted since the metrics started. Keys longer than [`MAX_TRACKED_KEY_LEN`] are not tracked as
    /// hot keys.
    pub fn record_hit(&mut self, key: &[u8]) {
        self.hits = self.hits.saturating_add(1);
        if key.len() <= MAX_TRACKED_KEY_LEN {
            self.hot.add(key, 1);
        }
    }

    /// A lookup that found nothing.
    pub fn record_miss(&mut self) {
        self.misses = self.misses.saturating_add(1);
    }

    /// The latency of one command (`operations`); `slow` is judged now against
    /// `th.slow_op_us`. [`Metrics::record_invalidation`] does not feed `operations.invalidate`:
    /// the shell times the `CACHE.INVALIDATE` command and records it here.
    pub fn record_op(&mut self, op: Op, duration_us: u64, th: &Thresholds) {
        if let Some(h) = self.ops.get_mut(op.slot()) {
            h.record(duration_us, th.slow_op_us);
        }
    }

    /// An entry that left without an invalidation, with the hits it had received.
    pub fn record_removal(&mut self, kind: Removal) {
        let r = &mut self.removals;
        match kind {
            Removal::Expired { hits } => {
                r.expired = r.expired.saturating_add(1);
                r.expired_hits = r.expired_hits.saturating_add(hits);
                match hits {
                    0 => r.expired_unread = r.expired_unread.saturating_add(1),
                    1 => r.expired_read_once = r.expired_read_once.saturating_add(1),
                    _ => {}
                }
            }
            Removal::Evicted { .. } => r.evicted = r.evicted.saturating_add(1),
            Removal::Deleted { .. } => r.deleted = r.deleted.saturating_add(1),
        }
    }

    /// One invalidation; `unread` of its entries had never been read (clamped to `r.keys`).
    /// Counts it, adds it to the windows, the pattern/type/context/strategy tables and the event
    /// ring (dropping events beyond `th.max_events` and older than `th.event_retention_seconds`).
    ///
    /// Returns a line for the server log when the last-hour rate is at or above a threshold,
    /// at most once per [`ALERT_LOG_INTERVAL_MS`] per level, in seed 000's wording:
    /// `Critical invalidation rate: N invalidations in last hour (>=C threshold)` or
    /// `High invalidation rate: N invalidations in last hour (>=W threshold)`.
    pub fn record_invalidation(
        &mut self,
        r: &InvalidationRecord<'_>,
        unread: u64,
        th: &Thresholds,
        now_ms: i64,
    ) -> Option<String> {
        let kind = label(r.kind);
        let cascaded = r.cascaded.min(r.keys);
        self.invalidations = self.invalidations.saturating_add(1);
        self.keys_invalidated = self.keys_invalidated.saturating_add(r.keys);
        self.cascaded_keys = self.cascaded_keys.saturating_add(cascaded);
        self.unread_invalidated = self.unread_invalidated.saturating_add(unread.min(r.keys));
        if r.keys == 0 {
            self.empty_invalidations = self.empty_invalidations.saturating_add(1);
        }
        self.max_keys = self.max_keys.max(r.keys);
        self.max_cascaded = self.max_cascaded.max(cascaded);
        self.max_depth = self.max_depth.max(r.depth_reached);
        self.duration_sum_us = self.duration_sum_us.saturating_add(r.duration_us);
        self.duration_max_us = self.duration_max_us.max(r.duration_us);

        self.hour.add(now_ms, 1);
        self.day.add(now_ms, 1);

        let pattern = pattern_key(&kind, r.pattern);
        self.patterns.add(pattern.as_bytes(), 1);
        let own = |user: &[u8], name: &str| [user, b"\0", name.as_bytes()].concat();
        let user = r.user.filter(|u| u.len() <= MAX_TRACKED_USER_LEN);
        if let Some(u) = user {
            self.own_patterns.add(&own(u, &pattern), 1);
        }
        self.kinds.add(&kind, 1);
        if !r.context.is_empty() {
            let context = truncate(r.context, MAX_CONTEXT_LEN);
            self.contexts.add(context.as_bytes(), 1);
            if let Some(u) = user {
                self.own_contexts.add(&own(u, &context), 1);
            }
        }
        let strategy = label(r.strategy);
        if !strategy.is_empty() {
            self.strategies.add(&strategy, 1);
        }

        self.push_event(
            Event {
                timestamp_ms: now_ms,
                kind,
                pattern: truncate(r.pattern, MAX_PATTERN_LEN).into_owned(),
                keys_invalidated: r.keys,
                duration_us: r.duration_us,
                context: truncate(r.context, MAX_CONTEXT_LEN).into_owned(),
                strategy,
                user: user.map(<[u8]>::to_vec),
            },
            th,
            now_ms,
        );

        self.alert_line(th, now_ms)
    }

    fn push_event(&mut self, event: Event, th: &Thresholds, now_ms: i64) {
        let retention_ms = th.event_retention_seconds.saturating_mul(1000);
        while self
            .events
            .front()
            .is_some_and(|e| !retained(e, retention_ms, now_ms))
        {
            self.events.pop_front();
        }
        if th.max_events == 0 {
            self.events.clear();
            return;
        }
        while self.events.len() >= th.max_events {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn alert_line(&mut self, th: &Thresholds, now_ms: i64) -> Option<String> {
        let n = self.hour.sum(now_ms);
        let (slot, line) = match AlertLevel::for_rate(n, th) {
            AlertLevel::Normal => return None,
            AlertLevel::Warning => (
                0,
                format!(
                    "High invalidation rate: {n} invalidations in last hour (>={} threshold)",
                    th.warning_per_hour
                ),
            ),
            AlertLevel::Critical => (
                1,
                format!(
                    "Critical invalidation rate: {n} invalidations in last hour (>={} threshold)",
                    th.critical_per_hour
                ),
            ),
        };
        let last = self.last_alert.get_mut(slot)?;
        if let Some(t) = *last {
            // A clock that went back does not silence the alert.
            if now_ms >= t && now_ms - t < ALERT_LOG_INTERVAL_MS {
                return None;
            }
        }
        *last = Some(now_ms);
        Some(line)
    }

    /// Invalidations in the last hour (see [`Rates::last_hour`]).
    #[cfg(test)]
    pub fn last_hour(&self, now_ms: i64) -> u64 {
        self.hour.sum(now_ms)
    }

    /// The current alert level (for `INFO cache`).
    #[cfg(test)]
    pub fn alert_level(&self, th: &Thresholds, now_ms: i64) -> AlertLevel {
        AlertLevel::for_rate(self.hour.sum(now_ms), th)
    }

    /// Removals that were not invalidations: (expired, evicted, deleted).
    pub fn removal_counts(&self) -> (u64, u64, u64) {
        (
            self.removals.expired,
            self.removals.evicted,
            self.removals.deleted,
        )
    }

    #[cfg(test)]
    pub fn hits(&self) -> u64 {
        self.hits
    }

    #[cfg(test)]
    pub fn misses(&self) -> u64 {
        self.misses
    }

    #[cfg(test)]
    pub fn total_invalidations(&self) -> u64 {
        self.invalidations
    }

    #[cfg(test)]
    pub fn total_keys_invalidated(&self) -> u64 {
        self.keys_invalidated
    }

    /// The `INFO cache` section: the contract's fields plus `cache_hit_rate` and
    /// `cache_invalidations_last_hour`.
    pub fn info(
        &self,
        idx: &IndexFigures,
        th: &Thresholds,
        now_ms: i64,
    ) -> Vec<(&'static str, Field)> {
        let last_hour = self.hour.sum(now_ms);
        vec![
            ("cache_entries", Field::uint(idx.entries)),
            ("cache_tags", Field::uint(idx.tags)),
            ("cache_hits", Field::uint(self.hits)),
            ("cache_misses", Field::uint(self.misses)),
            (
                "cache_hit_rate",
                Field::Float(pct(self.hits, self.hits.saturating_add(self.misses))),
            ),
            ("cache_invalidations", Field::uint(self.invalidations)),
            ("cache_keys_invalidated", Field::uint(self.keys_invalidated)),
            ("cache_invalidations_last_hour", Field::uint(last_hour)),
            (
                "cache_alert_level",
                Field::Str(AlertLevel::for_rate(last_hour, th).as_str().to_owned()),
            ),
        ]
    }

    /// `CACHE.STATS`.
    pub fn stats(&self, idx: &IndexFigures, th: &Thresholds, now_ms: i64) -> Stats {
        let last_hour = self.hour.sum(now_ms);
        let last_24_hours = self.day.sum(now_ms);
        let age_ms = now_ms.saturating_sub(self.since_ms).clamp(HOUR_MS, DAY_MS);
        let average_per_hour = last_24_hours as f64 * HOUR_MS as f64 / age_ms as f64;
        let [get, set, invalidate] = &self.ops;
        Stats {
            entries: idx.entries,
            tags: idx.tags,
            tagged_entries: idx.tagged_entries,
            resources: idx.resources,
            dependency_edges: idx.dependency_edges,
            hits: self.hits,
            misses: self.misses,
            hit_rate: pct(self.hits, self.hits.saturating_add(self.misses)),
            total_invalidations: self.invalidations,
            total_keys_invalidated: self.keys_invalidated,
            rates: Rates {
                last_hour,
                last_24_hours,
                average_per_hour,
            },
            thresholds: ThresholdStats {
                warning_per_hour: th.warning_per_hour,
                critical_per_hour: th.critical_per_hour,
                current_alert_level: AlertLevel::for_rate(last_hour, th),
            },
            patterns: PatternStats {
                most_common_patterns: self.patterns.top_names(MOST_COMMON),
                invalidation_types: self.kinds.counts(),
                by_context: self.contexts.top_names(MOST_COMMON),
                by_strategy: self.strategies.counts(),
            },
            efficiency: Efficiency {
                avg_keys_per_invalidation: ratio(self.keys_invalidated, self.invalidations),
                avg_duration_ms: ratio(self.duration_sum_us, self.invalidations) / 1000.0,
                max_duration_ms: self.duration_max_us as f64 / 1000.0,
                empty_invalidations: self.empty_invalidations,
                cascaded_keys: self.cascaded_keys,
                max_cascaded_keys: self.max_cascaded,
                max_cascade_depth: u64::from(self.max_depth),
                unread_keys_invalidated: self.unread_invalidated,
            },
            removals: RemovalStats {
                expired: self.removals.expired,
                evicted: self.removals.evicted,
                deleted: self.removals.deleted,
                expired_unread: self.removals.expired_unread,
                expired_read_once: self.removals.expired_read_once,
            },
            operations: Operations {
                get: get.stats(),
                set: set.stats(),
                invalidate: invalidate.stats(),
            },
            memory: MemoryStats {
                index_bytes: idx.index_bytes,
                value_bytes: idx.value_bytes,
                lease_bytes: idx.module.lease_bytes,
                batch_bytes: idx.module.batch_bytes,
                lazy_bytes: idx.module.lazy_bytes,
                metrics_bytes: self.heap_bytes(),
                rules_bytes: idx.module.rules_bytes,
                watch_bytes: idx.module.watch_bytes,
                cluster_bytes: idx.module.cluster_bytes,
                history_bytes: idx.module.history_bytes,
            },
            lazy: idx.lazy.clone(),
            metrics_since_ms: self.since_ms,
        }
    }

    /// What a user restricted by key patterns may see of `stats`: `most_common_patterns` and
    /// `by_context` list only its own invalidations (counted in tables of the same size keyed by
    /// user, so the counts are lower bounds in the same way). Every other figure is a count and
    /// names nothing.
    pub fn restrict(&self, stats: &mut Stats, user: &[u8]) {
        let own = |table: &TopN| {
            let mut prefix = user.to_vec();
            prefix.push(0);
            Counts(
                table
                    .top(usize::MAX)
                    .into_iter()
                    .filter_map(|(k, c)| {
                        let name = k.strip_prefix(prefix.as_slice())?;
                        Some((String::from_utf8_lossy(name).into_owned(), c))
                    })
                    .take(MOST_COMMON)
                    .collect(),
            )
        };
        stats.patterns.most_common_patterns = own(&self.own_patterns);
        stats.patterns.by_context = own(&self.own_contexts);
    }

    /// `CACHE.EVENTS [COUNT n]`: at most `count` (and `th.max_events`) events, newest first,
    /// leaving out those older than `th.event_retention_seconds`.
    pub fn events(&self, count: usize, th: &Thresholds, now_ms: i64) -> Vec<Event> {
        let retention_ms = th.event_retention_seconds.saturating_mul(1000);
        self.events
            .iter()
            .rev()
            .filter(|e| retained(e, retention_ms, now_ms))
            .take(count.min(th.max_events))
            .cloned()
            .collect()
    }

    /// `CACHE.HOTKEYS [COUNT n]`: up to `count` keys with their hits since they (last) entered
    /// the [`HOTKEY_SLOTS`]-slot space-saving table, most hit first. Exact while fewer distinct
    /// keys were hit; otherwise lower bounds, and any key with more than 1/[`HOTKEY_SLOTS`] of
    /// all tracked hits is listed.
    pub fn hotkeys(&self, count: usize) -> Vec<(Vec<u8>, u64)> {
        self.hot
            .top(count)
            .into_iter()
            .map(|(k, n)| (k.to_vec(), n))
            .collect()
    }

    /// `CACHE.RECOMMEND`: the rules below, most severe first (rule order within a severity).
    /// Empty when there is nothing to say.
    ///
    /// Seed 000's rules (thresholds, titles, severities, message and suggestion wording as
    /// there; our messages append a parenthesis with more numbers):
    /// 1. "High invalidation frequency": `rates.last_hour >= warning_per_hour`; `warning`, or
    ///    `critical` when the alert level is critical.
    /// 2. "Dominant invalidation pattern" (`info`): the most common pattern has more than half of
    ///    the invalidations.
    /// 3. "Low invalidation efficiency" (`info`): fewer than 1 key per invalidation on average.
    /// 4. "High invalidation impact" (`warning`): more than 100 keys per invalidation on average.
    ///
    /// Ours:
    /// 5. "Low hit rate" (`warning`): below 50 % over at least 100 lookups.
    /// 6. "Oversized tag" (`warning`): the largest tag is on at least half of at least 100
    ///    entries.
    /// 7. "Entries never read" (`info`): at least half of the entries that expired or were
    ///    invalidated (at least 100) never had a hit.
    /// 8. "TTL churn" (`info`): of at least 100 expiries, expiries are more than half of all
    ///    removals (expired, evicted, deleted, invalidated) and at least half of them had been
    ///    read at most once.
    /// 9. "Deep or wide dependency cascades" (`warning`): a cascade reached depth 5, or one
    ///    invalidation reached 1000 entries through dependencies, or at least 100 entries were
    ///    reached through dependencies and they are more than half of all invalidated entries.
    /// 10. "Slow cache operations" (`warning`): an operation had at least 10 slow calls and they
    ///     are at least 1 % of its calls (skipped when `cache.slow-op-us` is 0).
    #[cfg(test)]
    pub fn recommend(
        &self,
        idx: &IndexFigures,
        th: &Thresholds,
        now_ms: i64,
    ) -> Vec<Recommendation> {
        self.recommend_for(idx, th, now_ms, None)
    }

    /// [`Metrics::recommend`] as a user restricted by key patterns sees it (`Some(user)`): the
    /// rules that name a pattern judge the user's own ([`Metrics::restrict`]).
    pub fn recommend_for(
        &self,
        idx: &IndexFigures,
        th: &Thresholds,
        now_ms: i64,
        restricted_to: Option<&[u8]>,
    ) -> Vec<Recommendation> {
        let mut s = self.stats(idx, th, now_ms);
        if let Some(user) = restricted_to {
            self.restrict(&mut s, user);
        }
        let mut out: Vec<Recommendation> = [
            self.rule_high_frequency(&s),
            self.rule_dominant_pattern(&s),
            self.rule_low_efficiency(&s),
            self.rule_high_impact(&s),
            self.rule_low_hit_rate(&s),
            self.rule_oversized_tag(idx),
            self.rule_never_read(),
            self.rule_ttl_churn(),
            self.rule_cascades(),
            self.rule_slow_ops(&s, th),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.severity));
        out
    }

    fn rule_high_frequency(&self, s: &Stats) -> Option<Recommendation> {
        let n = s.rates.last_hour;
        if n == 0 || n < s.thresholds.warning_per_hour {
            return None;
        }
        let severity = if s.thresholds.current_alert_level == AlertLevel::Warning {
            Severity::Warning
        } else {
            Severity::Critical
        };
        Some(Recommendation {
            severity,
            issue: ISSUE_HIGH_FREQUENCY.into(),
            message: format!(
                "Cache is being invalidated {n} times per hour (warning at {}, critical at {}; {} in the last 24 hours)",
                s.thresholds.warning_per_hour, s.thresholds.critical_per_hour, s.rates.last_24_hours
            ),
            suggestions: vec![
                "Review invalidation triggers to reduce unnecessary clearing".into(),
                "Consider using more specific patterns for selective invalidation".into(),
                "Check if TTL values are set too low".into(),
                "Analyze if cache warming strategy needs improvement".into(),
                "Coalesce repeated invalidations with STRATEGY BATCHED (cache.batch-delay-ms), and find their sources with CACHE.EVENTS".into(),
            ],
        })
    }

    fn rule_dominant_pattern(&self, s: &Stats) -> Option<Recommendation> {
        let total = s.total_invalidations;
        let (pattern, count) = s.patterns.most_common_patterns.0.first()?;
        if total == 0 || (*count as f64) <= total as f64 * DOMINANT_PATTERN_SHARE {
            return None;
        }
        Some(Recommendation {
            severity: Severity::Info,
            issue: ISSUE_DOMINANT_PATTERN.into(),
            message: format!(
                "Pattern '{pattern}' accounts for {count} of recent invalidations ({:.0}% of the {total} recorded)",
                pct(*count, total)
            ),
            suggestions: vec![
                format!("Consider optimizing operations that trigger '{pattern}' invalidations"),
                "Evaluate if this pattern could be made more specific".into(),
                "Check if related data could be cached with different strategies".into(),
            ],
        })
    }

    fn rule_low_efficiency(&self, s: &Stats) -> Option<Recommendation> {
        let avg = s.efficiency.avg_keys_per_invalidation;
        if s.total_invalidations == 0 || avg >= LOW_EFFICIENCY_AVG_KEYS {
            return None;
        }
        Some(Recommendation {
            severity: Severity::Info,
            issue: ISSUE_LOW_EFFICIENCY.into(),
            message: format!(
                "Average of {avg:.1} keys invalidated per operation ({} of {} invalidations found no entries)",
                self.empty_invalidations, s.total_invalidations
            ),
            suggestions: vec![
                "Many invalidation operations are not finding keys to clear".into(),
                "Consider using more targeted patterns".into(),
                "Review if cache keys are structured optimally for invalidation".into(),
            ],
        })
    }

    fn rule_high_impact(&self, s: &Stats) -> Option<Recommendation> {
        let avg = s.efficiency.avg_keys_per_invalidation;
        if s.total_invalidations == 0 || avg <= HIGH_IMPACT_AVG_KEYS {
            return None;
        }
        Some(Recommendation {
            severity: Severity::Warning,
            issue: ISSUE_HIGH_IMPACT.into(),
            message: format!(
                "Average of {avg:.0} keys invalidated per operation ({} over {}; the largest removed {})",
                entries(s.total_keys_invalidated), counted(s.total_invalidations, "invalidation", "invalidations"), self.max_keys
            ),
            suggestions: vec![
                "Invalidation operations are clearing large numbers of entries".into(),
                "Consider using more selective patterns to preserve valid cache entries".into(),
                "Evaluate if smaller, more frequent invalidations would be better".into(),
            ],
        })
    }

    fn rule_low_hit_rate(&self, s: &Stats) -> Option<Recommendation> {
        let lookups = s.hits.saturating_add(s.misses);
        if lookups < LOW_HIT_RATE_MIN_LOOKUPS || s.hit_rate >= LOW_HIT_RATE_PCT {
            return None;
        }
        let mut suggestions = vec![
            "Check that readers build exactly the keys writers set: a key that is never written is a permanent miss (CACHE.HOTKEYS lists the keys that do hit)".to_owned(),
        ];
        if s.removals.expired > 0 {
            suggestions.push(format!(
                "Raise TTLs where the data stays valid longer: {} expired so far",
                entries(s.removals.expired)
            ));
        }
        if s.total_keys_invalidated > 0 {
            suggestions.push(format!(
                "Invalidate more narrowly (a TAG or KEY rather than a PATTERN or NAMESPACE): {} invalidated so far, {:.1} per invalidation",
                entries(s.total_keys_invalidated), s.efficiency.avg_keys_per_invalidation
            ));
        }
        if s.removals.evicted > 0 {
            suggestions.push(format!(
                "Give the server more memory or review maxmemory-policy: {} evicted, and each later read misses",
                entries(s.removals.evicted)
            ));
        }
        suggestions.push(
            "Rewrite hot entries right after invalidating them instead of letting every reader miss"
                .to_owned(),
        );
        Some(Recommendation {
            severity: Severity::Warning,
            issue: ISSUE_LOW_HIT_RATE.into(),
            message: format!(
                "Hit rate is {:.1}% ({} hits, {} misses over {lookups} lookups), below {LOW_HIT_RATE_PCT:.0}%",
                s.hit_rate, s.hits, s.misses
            ),
            suggestions,
        })
    }

    fn rule_oversized_tag(&self, idx: &IndexFigures) -> Option<Recommendation> {
        let (tag, n) = idx.largest_tag.as_ref()?;
        let n = (*n).min(idx.entries);
        if idx.entries < OVERSIZED_TAG_MIN_ENTRIES
            || (n as f64) < idx.entries as f64 * OVERSIZED_TAG_SHARE
        {
            return None;
        }
        let share = pct(n, idx.entries);
        Some(Recommendation {
            severity: Severity::Warning,
            issue: ISSUE_OVERSIZED_TAG.into(),
            message: format!(
                "Tag '{tag}' covers {n} of {} entries ({share:.0}%): invalidating it drops {share:.0}% of the cache at once",
                idx.entries
            ),
            suggestions: vec![
                format!("Split '{tag}' into narrower tags (per tenant, per record, per page) and invalidate only the part that changed"),
                "If the tag marks a whole data set or version, invalidate that set with NAMESPACE or PATTERN over its keys, or drop the tag".into(),
                format!("When '{tag}' must be invalidated, use STRATEGY LAZY so its {} are reclaimed in the background", entries(n)),
                "CACHE.TAGS COUNT 10 lists the next largest tags".into(),
            ],
        })
    }

    fn rule_never_read(&self) -> Option<Recommendation> {
        let expired_unread = self.removals.expired_unread;
        let invalidated_unread = self.unread_invalidated;
        let population = self.removals.expired.saturating_add(self.keys_invalidated);
        let unread = expired_unread.saturating_add(invalidated_unread);
        if population < NEVER_READ_MIN_REMOVALS
            || (unread as f64) < population as f64 * NEVER_READ_SHARE
        {
            return None;
        }
        let mut suggestions = vec![
            "Cache on read (cache-aside) rather than writing ahead: entries nobody reads cost memory and write time".to_owned(),
        ];
        if expired_unread > 0 {
            suggestions.push(format!(
                "{} expired unread: give write-ahead entries a shorter TTL, or stop writing them",
                entries(expired_unread)
            ));
        }
        if invalidated_unread > 0 {
            suggestions.push(format!(
                "{} invalidated before any read: the data changes faster than it is read, so write it on first read instead of on every change",
                entries(invalidated_unread)
            ));
        }
        suggestions.push(
            "Check that readers use the same keys as writers (CACHE.HOTKEYS lists the keys that are read)"
                .to_owned(),
        );
        Some(Recommendation {
            severity: Severity::Info,
            issue: ISSUE_NEVER_READ.into(),
            message: format!(
                "{unread} of {population} entries that expired or were invalidated ({:.0}%) were never read: {expired_unread} expired and {invalidated_unread} invalidated without a single hit",
                pct(unread, population)
            ),
            suggestions,
        })
    }

    fn rule_ttl_churn(&self) -> Option<Recommendation> {
        let r = &self.removals;
        let removals = r
            .expired
            .saturating_add(r.evicted)
            .saturating_add(r.deleted)
            .saturating_add(self.keys_invalidated);
        let low = r.expired_unread.saturating_add(r.expired_read_once);
        if r.expired < TTL_CHURN_MIN_EXPIRIES
            || (r.expired as f64) <= removals as f64 * TTL_CHURN_EXPIRED_SHARE
            || (low as f64) < r.expired as f64 * TTL_CHURN_LOW_READ_SHARE
        {
            return None;
        }
        Some(Recommendation {
            severity: Severity::Info,
            issue: ISSUE_TTL_CHURN.into(),
            message: format!(
                "{} of {removals} removals ({:.0}%) were TTL expiries, and {low} of those entries ({:.0}%) had been read at most once (average {:.1} reads per expired entry)",
                r.expired,
                pct(r.expired, removals),
                pct(low, r.expired),
                ratio(r.expired_hits, r.expired)
            ),
            suggestions: vec![
                "Raise the TTL (EX/PX, or cache.default-ttl-seconds) where the data stays valid longer: entries that expire after at most one read are recomputed on almost every read".into(),
                "Keep entries fresh with TAGS or DEPENDS and CACHE.INVALIDATE instead of short TTLs".into(),
                "Results that are read only once are not worth caching: skip the write for them".into(),
            ],
        })
    }

    fn rule_cascades(&self) -> Option<Recommendation> {
        let deep = self.max_depth >= DEEP_CASCADE_DEPTH;
        let large = self.max_cascaded >= LARGE_CASCADE_KEYS;
        let wide = self.cascaded_keys >= WIDE_CASCADE_MIN_KEYS
            && self.cascaded_keys as f64 > self.keys_invalidated as f64 * WIDE_CASCADE_SHARE;
        if !(deep || large || wide) {
            return None;
        }
        Some(Recommendation {
            severity: Severity::Warning,
            issue: ISSUE_CASCADES.into(),
            message: format!(
                "{} of {} invalidated entries ({:.0}%) were reached through dependencies; the deepest cascade went {} hops and the largest reached {} entries",
                self.cascaded_keys,
                self.keys_invalidated,
                pct(self.cascaded_keys, self.keys_invalidated),
                self.max_depth,
                self.max_cascaded
            ),
            suggestions: vec![
                "Depend on the narrowest resource (one row or file, not a whole table or directory)".into(),
                "Depend on source resources directly rather than on other entries: shorter chains cascade less".into(),
                format!(
                    "Bound cascades with DEPTH n on CACHE.INVALIDATE or with cache.max-cascade-depth (deepest seen: {} hops)",
                    self.max_depth
                ),
                "Run widely cascading invalidations with STRATEGY LAZY so they do not block the server".into(),
                "CACHE.KEYS DEPTH n <selector> lists what a cascade would remove without removing it".into(),
            ],
        })
    }

    fn rule_slow_ops(&self, s: &Stats, th: &Thresholds) -> Option<Recommendation> {
        if th.slow_op_us == 0 {
            return None;
        }
        let ops = [
            (Op::Get, &s.operations.get),
            (Op::Set, &s.operations.set),
            (Op::Invalidate, &s.operations.invalidate),
        ];
        let parts: Vec<String> = ops
            .iter()
            .filter(|(_, o)| {
                o.slow >= SLOW_OPS_MIN && o.slow as f64 >= o.count as f64 * SLOW_OPS_SHARE
            })
            .map(|(op, o)| {
                format!(
                    "{} of {} {} calls ({:.1}%) took {} us or more (p99 {} us, max {} us)",
                    o.slow,
                    o.count,
                    op.command(),
                    pct(o.slow, o.count),
                    th.slow_op_us,
                    o.p99_us,
                    o.max_us
                )
            })
            .collect();
        if parts.is_empty() {
            return None;
        }
        Some(Recommendation {
            severity: Severity::Warning,
            issue: ISSUE_SLOW_OPS.into(),
            message: parts.join("; "),
            suggestions: vec![
                "Look for large values with CACHE.INSPECT (size): copying big payloads dominates GET and SET time".into(),
                "Run invalidations that remove many entries with STRATEGY LAZY or BATCHED".into(),
                "Check the server as a whole with LATENCY DOCTOR and SLOWLOG GET".into(),
                format!(
                    "If the threshold is too strict for this workload, raise cache.slow-op-us (now {} us)",
                    th.slow_op_us
                ),
            ],
        })
    }
}

fn retained(e: &Event, retention_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(e.timestamp_ms) < retention_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const T0: i64 = 1_700_000_000_000;
    const MIN: i64 = MINUTE_MS;
    const HOUR: i64 = HOUR_MS;

    fn th() -> Thresholds {
        Thresholds::default()
    }

    fn inv<'a>(kind: &'a str, pattern: &'a str, keys: u64) -> InvalidationRecord<'a> {
        InvalidationRecord {
            kind,
            pattern,
            keys,
            strategy: "immediate",
            ..Default::default()
        }
    }

    fn idx() -> IndexFigures {
        IndexFigures::default()
    }

    fn issues(recs: &[Recommendation]) -> Vec<&str> {
        recs.iter().map(|r| r.issue.as_str()).collect()
    }

    fn find<'a>(recs: &'a [Recommendation], issue: &str) -> Option<&'a Recommendation> {
        recs.iter().find(|r| r.issue == issue)
    }

    fn field_to_json(f: &Field) -> Value {
        match f {
            Field::Nil => Value::Null,
            Field::Int(i) => Value::from(*i),
            Field::Float(x) => Value::from(*x),
            Field::Str(s) => Value::from(s.clone()),
            Field::Map(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), field_to_json(v)))
                    .collect(),
            ),
            Field::List(l) => Value::Array(l.iter().map(field_to_json).collect()),
        }
    }

    fn fields_to_json(fields: &[(&'static str, Field)]) -> Value {
        Value::Object(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), field_to_json(v)))
                .collect(),
        )
    }

    fn keys_of(v: &Value) -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn metrics_is_send() {
        fn send<T: Send>() {}
        send::<Metrics>();
    }

    #[test]
    fn scripted_counters_are_exact() {
        let th = th();
        let mut m = Metrics::new(T0);
        for k in [&b"a"[..], b"a", b"b", b"a"] {
            m.record_hit(k);
        }
        m.record_miss();
        m.record_miss();
        m.record_op(Op::Get, 100, &th);
        m.record_op(Op::Get, 200, &th);
        m.record_op(Op::Set, 50, &th);
        m.record_op(Op::Invalidate, 20_000, &th);
        m.record_removal(Removal::Expired { hits: 0 });
        m.record_removal(Removal::Expired { hits: 1 });
        m.record_removal(Removal::Expired { hits: 5 });
        m.record_removal(Removal::Evicted { hits: 0 });
        m.record_removal(Removal::Deleted { hits: 2 });

        let r1 = InvalidationRecord {
            kind: "tag",
            pattern: "user:1",
            keys: 3,
            cascaded: 1,
            depth_reached: 1,
            duration_us: 1_500,
            context: "login",
            strategy: "IMMEDIATE",
            user: None,
        };
        assert_eq!(m.record_invalidation(&r1, 0, &th, T0 + 1_000), None);
        let r2 = InvalidationRecord {
            kind: "PATTERN",
            pattern: "user:*",
            keys: 0,
            duration_us: 500,
            strategy: "lazy",
            ..Default::default()
        };
        m.record_invalidation(&r2, 0, &th, T0 + 2_000);
        let r3 = InvalidationRecord {
            kind: "all",
            pattern: "",
            keys: 10,
            cascaded: 4,
            depth_reached: 3,
            duration_us: 4_000,
            context: "deploy",
            strategy: "batched",
            user: None,
        };
        m.record_invalidation(&r3, 6, &th, T0 + 3_000);
        let r4 = InvalidationRecord {
            duration_us: 2_000,
            context: "login",
            ..r1
        };
        m.record_invalidation(
            &InvalidationRecord {
                keys: 2,
                cascaded: 0,
                ..r4
            },
            1,
            &th,
            T0 + 4_000,
        );

        let figures = IndexFigures {
            entries: 7,
            tags: 3,
            tagged_entries: 5,
            resources: 2,
            dependency_edges: 4,
            index_bytes: 1_000,
            value_bytes: 2_000,
            largest_tag: Some(("user:1".into(), 2)),
            ..IndexFigures::default()
        };
        let s = m.stats(&figures, &th, T0 + 5_000);
        assert_eq!(
            (
                s.entries,
                s.tags,
                s.tagged_entries,
                s.resources,
                s.dependency_edges
            ),
            (7, 3, 5, 2, 4)
        );
        assert_eq!((s.hits, s.misses), (4, 2));
        assert!((s.hit_rate - 400.0 / 6.0).abs() < 1e-9);
        assert_eq!(s.total_invalidations, 4);
        assert_eq!(s.total_keys_invalidated, 15);
        assert_eq!(s.rates.last_hour, 4);
        assert_eq!(s.rates.last_24_hours, 4);
        assert_eq!(s.rates.average_per_hour, 4.0); // younger than an hour: counted as one hour
        assert_eq!(s.thresholds.warning_per_hour, 50);
        assert_eq!(s.thresholds.critical_per_hour, 100);
        assert_eq!(s.thresholds.current_alert_level, AlertLevel::Normal);
        assert_eq!(
            s.patterns.most_common_patterns.0,
            vec![
                ("tag user:1".to_owned(), 2),
                ("all".to_owned(), 1),
                ("pattern user:*".to_owned(), 1),
            ]
        );
        assert_eq!(
            s.patterns.invalidation_types.0,
            vec![
                ("tag".to_owned(), 2),
                ("all".to_owned(), 1),
                ("pattern".to_owned(), 1)
            ]
        );
        assert_eq!(
            s.patterns.by_context.0,
            vec![("login".to_owned(), 2), ("deploy".to_owned(), 1)]
        );
        assert_eq!(
            s.patterns.by_strategy.0,
            vec![
                ("immediate".to_owned(), 2),
                ("batched".to_owned(), 1),
                ("lazy".to_owned(), 1)
            ]
        );
        assert_eq!(s.efficiency.avg_keys_per_invalidation, 3.75);
        assert_eq!(s.efficiency.avg_duration_ms, 2.0); // (1500+500+4000+2000)/4 us
        assert_eq!(s.efficiency.max_duration_ms, 4.0);
        assert_eq!(s.efficiency.empty_invalidations, 1);
        assert_eq!(s.efficiency.cascaded_keys, 5);
        assert_eq!(s.efficiency.max_cascaded_keys, 4);
        assert_eq!(s.efficiency.max_cascade_depth, 3);
        assert_eq!(s.efficiency.unread_keys_invalidated, 7);
        assert_eq!(
            s.removals,
            RemovalStats {
                expired: 3,
                evicted: 1,
                deleted: 1,
                expired_unread: 1,
                expired_read_once: 1
            }
        );
        assert_eq!(
            s.operations.get,
            OpStats {
                count: 2,
                avg_us: 150.0,
                p50_us: 103, // bucket [96, 103]
                p99_us: 200,
                max_us: 200,
                slow: 0
            }
        );
        assert_eq!(s.operations.set.count, 1);
        assert_eq!(s.operations.set.p50_us, 50);
        assert_eq!(s.operations.invalidate.slow, 1);
        assert_eq!(s.operations.invalidate.max_us, 20_000);
        assert_eq!((s.memory.index_bytes, s.memory.value_bytes), (1_000, 2_000));
        // The metrics' own tables: the two windows and the histograms at least, and the event
        // log's slots; the shell's structures were given as none.
        assert!(s.memory.metrics_bytes > 8 * 60, "{:?}", s.memory);
        assert_eq!(
            s.memory.lease_bytes + s.memory.batch_bytes + s.memory.rules_bytes,
            0
        );
        assert_eq!(s.memory.total_bytes(), 3_000 + s.memory.metrics_bytes);
        assert_eq!(s.metrics_since_ms, T0);
        assert_eq!(m.hotkeys(10), vec![(b"a".to_vec(), 3), (b"b".to_vec(), 1)]);

        let info = fields_to_json(&m.info(&figures, &th, T0 + 5_000));
        assert_eq!(info["cache_entries"], 7);
        assert_eq!(info["cache_tags"], 3);
        assert_eq!(info["cache_hits"], 4);
        assert_eq!(info["cache_misses"], 2);
        assert_eq!(info["cache_invalidations"], 4);
        assert_eq!(info["cache_keys_invalidated"], 15);
        assert_eq!(info["cache_alert_level"], "normal");
    }

    #[test]
    fn sliding_windows() {
        let th = th();
        let mut m = Metrics::new(T0 - 30 * HOUR);
        let now = T0;
        m.record_invalidation(&inv("key", "old", 1), 0, &th, now - 25 * HOUR);
        m.record_invalidation(&inv("key", "a", 1), 0, &th, now - 61 * MIN);
        m.record_invalidation(&inv("key", "b", 1), 0, &th, now - 59 * MIN);
        m.record_invalidation(&inv("key", "c", 1), 0, &th, now - 10);
        let s = m.stats(&idx(), &th, now);
        assert_eq!(s.rates.last_hour, 2);
        assert_eq!(s.rates.last_24_hours, 3);
        // 30 h old: the average is over the 24-hour window.
        assert!((s.rates.average_per_hour - 3.0 / 24.0).abs() < 1e-12);
        assert_eq!(s.total_invalidations, 4);
        // Windows are independent of event retention (one hour by default).
        assert_eq!(m.events(100, &th, now).len(), 2);
        // One hour later: only the last-24-hours window still has them.
        let s = m.stats(&idx(), &th, now + HOUR);
        assert_eq!(s.rates.last_hour, 0);
        assert_eq!(s.rates.last_24_hours, 3);
        // A day later: nothing.
        let s = m.stats(&idx(), &th, now + 24 * HOUR);
        assert_eq!((s.rates.last_hour, s.rates.last_24_hours), (0, 0));
        // Window edges: the current second and the 3599 before it.
        let mut m = Metrics::new(T0);
        m.record_invalidation(&inv("key", "x", 1), 0, &th, T0);
        assert_eq!(m.last_hour(T0 + 3_599_999), 1);
        assert_eq!(m.last_hour(T0 + 3_600_000), 0);
        // A clock that goes back does not break the windows.
        m.record_invalidation(&inv("key", "y", 1), 0, &th, T0 - 5_000);
        assert_eq!(m.last_hour(T0), 2);
        assert_eq!(m.last_hour(T0 - 5_000), 1);
    }

    #[test]
    fn average_per_hour_uses_the_metrics_age() {
        let th = th();
        let mut m = Metrics::new(T0);
        for i in 0..6 {
            m.record_invalidation(&inv("key", "k", 1), 0, &th, T0 + i * MIN);
        }
        assert_eq!(
            m.stats(&idx(), &th, T0 + 10 * MIN).rates.average_per_hour,
            6.0
        );
        assert_eq!(
            m.stats(&idx(), &th, T0 + 2 * HOUR).rates.average_per_hour,
            3.0
        );
        assert_eq!(
            m.stats(&idx(), &th, T0 + 3 * HOUR).rates.average_per_hour,
            2.0
        );
    }

    #[test]
    fn alert_levels_and_rate_limited_log_lines() {
        let th = Thresholds {
            warning_per_hour: 2,
            critical_per_hour: 4,
            ..th()
        };
        let mut m = Metrics::new(T0);
        let r = inv("tag", "t", 1);
        assert_eq!(m.alert_level(&th, T0), AlertLevel::Normal);
        assert_eq!(m.record_invalidation(&r, 0, &th, T0), None);
        assert_eq!(
            m.stats(&idx(), &th, T0).thresholds.current_alert_level,
            AlertLevel::Normal
        );
        assert_eq!(
            m.record_invalidation(&r, 0, &th, T0 + 1_000).as_deref(),
            Some("High invalidation rate: 2 invalidations in last hour (>=2 threshold)")
        );
        assert_eq!(m.alert_level(&th, T0 + 1_000), AlertLevel::Warning);
        // Still warning, within the minute: silent.
        assert_eq!(m.record_invalidation(&r, 0, &th, T0 + 2_000), None);
        // Critical is a separate level: logged at once.
        assert_eq!(
            m.record_invalidation(&r, 0, &th, T0 + 3_000).as_deref(),
            Some("Critical invalidation rate: 4 invalidations in last hour (>=4 threshold)")
        );
        assert_eq!(m.alert_level(&th, T0 + 3_000), AlertLevel::Critical);
        assert_eq!(
            m.stats(&idx(), &th, T0 + 3_000)
                .thresholds
                .current_alert_level,
            AlertLevel::Critical
        );
        assert_eq!(m.record_invalidation(&r, 0, &th, T0 + 30_000), None);
        assert_eq!(m.record_invalidation(&r, 0, &th, T0 + 62_999), None);
        assert_eq!(
            m.record_invalidation(&r, 0, &th, T0 + 63_000).as_deref(),
            Some("Critical invalidation rate: 7 invalidations in last hour (>=4 threshold)")
        );
        // An hour later the rate is back to normal.
        assert_eq!(m.record_invalidation(&r, 0, &th, T0 + 2 * HOUR), None);
        assert_eq!(m.alert_level(&th, T0 + 2 * HOUR), AlertLevel::Normal);
        assert_eq!(
            m.info(&idx(), &th, T0 + 2 * HOUR)[8].1,
            Field::Str("normal".into())
        );
    }

    #[test]
    fn no_recommendations_without_data() {
        let m = Metrics::new(T0);
        assert!(m.recommend(&idx(), &th(), T0).is_empty());
    }

    #[test]
    fn rule_high_invalidation_frequency() {
        let th = Thresholds {
            warning_per_hour: 2,
            critical_per_hour: 4,
            ..th()
        };
        let mut m = Metrics::new(T0);
        for i in 0..3 {
            let name = format!("p{i}");
            m.record_invalidation(&inv("key", &name, 1), 0, &th, T0 + i);
        }
        let recs = m.recommend(&idx(), &th, T0 + 10);
        let r = find(&recs, ISSUE_HIGH_FREQUENCY).expect("rule fires");
        assert_eq!(r.severity, Severity::Warning);
        assert!(r
            .message
            .starts_with("Cache is being invalidated 3 times per hour"));
        assert_eq!(
            r.suggestions[0],
            "Review invalidation triggers to reduce unnecessary clearing"
        );
        assert_eq!(r.suggestions.len(), 5);
        m.record_invalidation(&inv("key", "p3", 1), 0, &th, T0 + 20);
        let recs = m.recommend(&idx(), &th, T0 + 30);
        assert_eq!(recs[0].issue, ISSUE_HIGH_FREQUENCY);
        assert_eq!(recs[0].severity, Severity::Critical);
        // Below the warning threshold: absent.
        let recs = m.recommend(&idx(), &th, T0 + 2 * HOUR);
        assert!(find(&recs, ISSUE_HIGH_FREQUENCY).is_none());
        let recs = m.recommend(
            &idx(),
            &Thresholds {
                warning_per_hour: 5,
                critical_per_hour: 9,
                ..th
            },
            T0 + 30,
        );
        assert!(find(&recs, ISSUE_HIGH_FREQUENCY).is_none());
    }

    #[test]
    fn rule_dominant_invalidation_pattern() {
        let th = th();
        let mut m = Metrics::new(T0);
        for _ in 0..10 {
            m.record_invalidation(&inv("tag", "dominant_pattern", 1), 0, &th, T0);
        }
        m.record_invalidation(&inv("tag", "other_pattern", 1), 0, &th, T0);
        let recs = m.recommend(&idx(), &th, T0);
        let r = find(&recs, ISSUE_DOMINANT_PATTERN).expect("rule fires");
        assert_eq!(r.severity, Severity::Info);
        assert_eq!(
            r.message,
            "Pattern 'tag dominant_pattern' accounts for 10 of recent invalidations (91% of the 11 recorded)"
        );
        assert_eq!(
            r.suggestions,
            vec![
                "Consider optimizing operations that trigger 'tag dominant_pattern' invalidations",
                "Evaluate if this pattern could be made more specific",
                "Check if related data could be cached with different strategies",
            ]
        );
        // Exactly half is not "more than half".
        let mut m = Metrics::new(T0);
        for name in ["a", "a", "b", "c"] {
            m.record_invalidation(&inv("tag", name, 1), 0, &th, T0);
        }
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_DOMINANT_PATTERN).is_none());
    }

    #[test]
    fn rule_low_invalidation_efficiency() {
        let th = th();
        let mut m = Metrics::new(T0);
        for i in 0..5 {
            let name = format!("pattern_{i}");
            m.record_invalidation(&inv("pattern", &name, 0), 0, &th, T0);
        }
        let recs = m.recommend(&idx(), &th, T0);
        let r = find(&recs, ISSUE_LOW_EFFICIENCY).expect("rule fires");
        assert_eq!(r.severity, Severity::Info);
        assert_eq!(
            r.message,
            "Average of 0.0 keys invalidated per operation (5 of 5 invalidations found no entries)"
        );
        assert_eq!(
            r.suggestions,
            vec![
                "Many invalidation operations are not finding keys to clear",
                "Consider using more targeted patterns",
                "Review if cache keys are structured optimally for invalidation",
            ]
        );
        // One key per invalidation on average: absent.
        m.record_invalidation(&inv("pattern", "x", 6), 0, &th, T0);
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_LOW_EFFICIENCY).is_none());
    }

    #[test]
    fn rule_high_invalidation_impact() {
        let th = th();
        let mut m = Metrics::new(T0);
        for i in 0..3 {
            let name = format!("pattern_{i}");
            m.record_invalidation(&inv("pattern", &name, 150), 0, &th, T0);
        }
        let recs = m.recommend(&idx(), &th, T0);
        let r = find(&recs, ISSUE_HIGH_IMPACT).expect("rule fires");
        assert_eq!(r.severity, Severity::Warning);
        assert!(r.message.contains("150 keys invalidated"));
        assert!(r
            .message
            .starts_with("Average of 150 keys invalidated per operation"));
        assert_eq!(
            r.suggestions,
            vec![
                "Invalidation operations are clearing large numbers of entries",
                "Consider using more selective patterns to preserve valid cache entries",
                "Evaluate if smaller, more frequent invalidations would be better",
            ]
        );
        let mut m = Metrics::new(T0);
        m.record_invalidation(&inv("pattern", "p", 100), 0, &th, T0);
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_HIGH_IMPACT).is_none());
    }

    #[test]
    fn rule_low_hit_rate() {
        let th = th();
        let mut m = Metrics::new(T0);
        for _ in 0..30 {
            m.record_hit(b"k");
        }
        for _ in 0..70 {
            m.record_miss();
        }
        m.record_removal(Removal::Evicted { hits: 0 });
        let recs = m.recommend(&idx(), &th, T0);
        assert_eq!(issues(&recs), vec![ISSUE_LOW_HIT_RATE]);
        let r = &recs[0];
        assert_eq!(r.severity, Severity::Warning);
        assert_eq!(
            r.message,
            "Hit rate is 30.0% (30 hits, 70 misses over 100 lookups), below 50%"
        );
        assert!(r
            .suggestions
            .iter()
            .any(|s| s.contains("1 entry evicted, and")));
        // Too few lookups, or a good hit rate: absent.
        let mut few = Metrics::new(T0);
        few.record_miss();
        assert!(few.recommend(&idx(), &th, T0).is_empty());
        for _ in 0..50 {
            m.record_hit(b"k");
        }
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_LOW_HIT_RATE).is_none());
    }

    #[test]
    fn rule_oversized_tag() {
        let th = th();
        let m = Metrics::new(T0);
        let mut figures = IndexFigures {
            entries: 200,
            largest_tag: Some(("tenant:all".into(), 150)),
            ..idx()
        };
        let recs = m.recommend(&figures, &th, T0);
        assert_eq!(issues(&recs), vec![ISSUE_OVERSIZED_TAG]);
        assert_eq!(
            recs[0].message,
            "Tag 'tenant:all' covers 150 of 200 entries (75%): invalidating it drops 75% of the cache at once"
        );
        assert!(recs[0].suggestions[0].contains("Split 'tenant:all'"));
        figures.largest_tag = Some(("tenant:all".into(), 99));
        assert!(m.recommend(&figures, &th, T0).is_empty());
        let small = IndexFigures {
            entries: 10,
            largest_tag: Some(("t".into(), 10)),
            ..idx()
        };
        assert!(m.recommend(&small, &th, T0).is_empty());
    }

    #[test]
    fn rule_entries_never_read() {
        let th = th();
        let mut m = Metrics::new(T0);
        // 60 expired unread, 40 expired read often, 1 invalidation of 10 entries, 8 unread.
        for _ in 0..60 {
            m.record_removal(Removal::Expired { hits: 0 });
        }
        for _ in 0..40 {
            m.record_removal(Removal::Expired { hits: 9 });
        }
        m.record_invalidation(&inv("tag", "t", 10), 8, &th, T0);
        let recs = m.recommend(&idx(), &th, T0);
        let r = find(&recs, ISSUE_NEVER_READ).expect("rule fires");
        assert_eq!(r.severity, Severity::Info);
        assert_eq!(
            r.message,
            "68 of 110 entries that expired or were invalidated (62%) were never read: 60 expired and 8 invalidated without a single hit"
        );
        assert!(find(&recs, ISSUE_TTL_CHURN).is_some());
        // Mostly read entries: absent.
        let mut m = Metrics::new(T0);
        for _ in 0..100 {
            m.record_removal(Removal::Expired { hits: 3 });
        }
        m.record_invalidation(&inv("tag", "t", 10), 8, &th, T0);
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_NEVER_READ).is_none());
    }

    #[test]
    fn rule_ttl_churn() {
        let th = th();
        let mut m = Metrics::new(T0);
        // Read once before expiring: churn, but not "never read".
        for _ in 0..100 {
            m.record_removal(Removal::Expired { hits: 1 });
        }
        for _ in 0..20 {
            m.record_removal(Removal::Deleted { hits: 4 });
        }
        let recs = m.recommend(&idx(), &th, T0);
        assert_eq!(issues(&recs), vec![ISSUE_TTL_CHURN]);
        assert_eq!(
            recs[0].message,
            "100 of 120 removals (83%) were TTL expiries, and 100 of those entries (100%) had been read at most once (average 1.0 reads per expired entry)"
        );
        // When invalidations dominate the removals: absent.
        m.record_invalidation(&inv("all", "", 200), 0, &th, T0);
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_TTL_CHURN).is_none());
        // Entries read several times before expiring: absent.
        let mut m = Metrics::new(T0);
        for _ in 0..100 {
            m.record_removal(Removal::Expired { hits: 2 });
        }
        assert!(m.recommend(&idx(), &th, T0).is_empty());
    }

    #[test]
    fn rule_deep_or_wide_cascades() {
        let th = th();
        let deep = InvalidationRecord {
            kind: "dependents",
            pattern: "file:/a",
            keys: 6,
            cascaded: 5,
            depth_reached: 5,
            ..Default::default()
        };
        let mut m = Metrics::new(T0);
        m.record_invalidation(&deep, 0, &th, T0);
        let recs = m.recommend(&idx(), &th, T0);
        let r = find(&recs, ISSUE_CASCADES).expect("deep cascade");
        assert_eq!(r.severity, Severity::Warning);
        assert_eq!(
            r.message,
            "5 of 6 invalidated entries (83%) were reached through dependencies; the deepest cascade went 5 hops and the largest reached 5 entries"
        );
        // Wide: many entries reached through shallow cascades.
        let wide = InvalidationRecord {
            keys: 60,
            cascaded: 55,
            depth_reached: 1,
            ..deep
        };
        let mut m = Metrics::new(T0);
        m.record_invalidation(&wide, 0, &th, T0);
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_CASCADES).is_none());
        m.record_invalidation(&wide, 0, &th, T0);
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_CASCADES).is_some());
        // Shallow, small cascades: absent.
        let mut m = Metrics::new(T0);
        let shallow = InvalidationRecord {
            keys: 20,
            cascaded: 2,
            depth_reached: 4,
            ..deep
        };
        for _ in 0..10 {
            m.record_invalidation(&shallow, 0, &th, T0);
        }
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_CASCADES).is_none());
        // One huge cascade.
        m.record_invalidation(
            &InvalidationRecord {
                keys: 1_001,
                cascaded: 1_000,
                depth_reached: 1,
                ..deep
            },
            0,
            &th,
            T0,
        );
        assert!(find(&m.recommend(&idx(), &th, T0), ISSUE_CASCADES).is_some());
    }

    #[test]
    fn rule_slow_operations() {
        let th = th();
        let mut m = Metrics::new(T0);
        for _ in 0..990 {
            m.record_op(Op::Get, 100, &th);
        }
        for _ in 0..9 {
            m.record_op(Op::Get, 10_000, &th);
        }
        assert!(m.recommend(&idx(), &th, T0).is_empty());
        m.record_op(Op::Get, 50_000, &th);
        let recs = m.recommend(&idx(), &th, T0);
        assert_eq!(issues(&recs), vec![ISSUE_SLOW_OPS]);
        assert_eq!(
            recs[0].message,
            "10 of 1000 CACHE.GET calls (1.0%) took 10000 us or more (p99 103 us, max 50000 us)"
        );
        // Many slow calls but under 1 %: absent.
        for _ in 0..1_000 {
            m.record_op(Op::Get, 100, &th);
        }
        assert!(m.recommend(&idx(), &th, T0).is_empty());
        // slow-op-us 0 counts everything slow, but says nothing.
        let zero = Thresholds {
            slow_op_us: 0,
            ..th
        };
        let mut m = Metrics::new(T0);
        for _ in 0..20 {
            m.record_op(Op::Set, 5, &zero);
        }
        assert_eq!(m.stats(&idx(), &zero, T0).operations.set.slow, 20);
        assert!(m.recommend(&idx(), &zero, T0).is_empty());
    }

    #[test]
    fn recommendations_most_severe_first() {
        let th = Thresholds {
            warning_per_hour: 1,
            critical_per_hour: 2,
            ..th()
        };
        let mut m = Metrics::new(T0);
        m.record_invalidation(&inv("tag", "a", 0), 0, &th, T0);
        m.record_invalidation(&inv("tag", "a", 0), 0, &th, T0);
        let recs = m.recommend(&idx(), &th, T0);
        assert_eq!(
            issues(&recs),
            vec![
                ISSUE_HIGH_FREQUENCY,
                ISSUE_DOMINANT_PATTERN,
                ISSUE_LOW_EFFICIENCY
            ]
        );
        assert_eq!(recs[0].severity, Severity::Critical);
    }

    #[test]
    fn events_capped_newest_first_and_retained() {
        let th = Thresholds {
            max_events: 3,
            event_retention_seconds: 60,
            ..th()
        };
        let mut m = Metrics::new(T0);
        for i in 0..5u64 {
            let r = InvalidationRecord {
                kind: "KEY",
                pattern: "k",
                keys: i,
                duration_us: 10 * i,
                context: "ctx",
                strategy: "LAZY",
                ..Default::default()
            };
            m.record_invalidation(&r, 0, &th, T0 + 1_000 * i as i64);
        }
        let ev = m.events(10, &th, T0 + 5_000);
        assert_eq!(ev.len(), 3);
        assert_eq!(
            ev.iter().map(|e| e.keys_invalidated).collect::<Vec<_>>(),
            vec![4, 3, 2]
        );
        assert_eq!(
            ev[0],
            Event {
                timestamp_ms: T0 + 4_000,
                kind: "key".into(),
                pattern: "k".into(),
                keys_invalidated: 4,
                duration_us: 40,
                context: "ctx".into(),
                strategy: "lazy".into(),
                user: None,
            }
        );
        assert_eq!(m.events(2, &th, T0 + 5_000).len(), 2);
        // Retention: events at +2 s and +3 s are 60 s old at +63 s.
        assert_eq!(m.events(10, &th, T0 + 62_999).len(), 2);
        let ev = m.events(10, &th, T0 + 63_000);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].keys_invalidated, 4);
        assert!(m.events(10, &th, T0 + 64_000).is_empty());
        // Recording drops expired events from the ring.
        m.record_invalidation(&inv("key", "new", 1), 0, &th, T0 + 100_000);
        assert_eq!(m.events.len(), 1);
        // Totals are not limited by the ring.
        assert_eq!(m.total_invalidations(), 6);
        // A lower max-events applies to queries at once and to the ring on the next record.
        let one = Thresholds {
            max_events: 1,
            ..th
        };
        for i in 0..4 {
            m.record_invalidation(&inv("key", "k", 1), 0, &th, T0 + 100_001 + i);
        }
        assert_eq!(m.events(10, &one, T0 + 100_010).len(), 1);
        m.record_invalidation(&inv("key", "k", 1), 0, &one, T0 + 100_010);
        assert_eq!(m.events.len(), 1);
        let none = Thresholds {
            max_events: 0,
            ..th
        };
        m.record_invalidation(&inv("key", "k", 1), 0, &none, T0 + 100_011);
        assert!(m.events.is_empty());
        // Long strings are truncated.
        let long = "x".repeat(1_000);
        m.record_invalidation(&inv("pattern", &long, 1), 0, &th, T0 + 100_012);
        let ev = m.events(1, &th, T0 + 100_012);
        assert_eq!(ev[0].pattern.len(), MAX_PATTERN_LEN + 3);
        assert!(ev[0].pattern.ends_with("..."));
        let fields = fields_to_json(&ev[0].to_fields());
        assert_eq!(
            keys_of(&fields),
            [
                "context",
                "duration_us",
                "keys_invalidated",
                "pattern",
                "strategy",
                "timestamp_ms",
                "type"
            ]
        );
    }

    #[test]
    fn hotkeys_are_bounded_and_ordered() {
        let mut m = Metrics::new(T0);
        for _ in 0..200 {
            m.record_hit(b"hot");
        }
        for _ in 0..100 {
            m.record_hit(b"warm");
        }
        for i in 0..10_000u32 {
            m.record_hit(format!("cold:{i}").as_bytes());
        }
        assert_eq!(m.hot.len(), HOTKEY_SLOTS);
        assert_eq!(m.hot.pos.len(), HOTKEY_SLOTS);
        let top = m.hotkeys(2);
        // Both are above total / HOTKEY_SLOTS (about 40): tracked, with exact counts.
        assert_eq!(top, vec![(b"hot".to_vec(), 200), (b"warm".to_vec(), 100)]);
        assert_eq!(m.hotkeys(10_000).len(), HOTKEY_SLOTS);
        assert_eq!(m.hits(), 10_300);
        // Over-long keys count as hits but are not tracked.
        m.record_hit(&vec![b'k'; MAX_TRACKED_KEY_LEN + 1]);
        assert_eq!(m.hits(), 10_301);
        assert!(m
            .hotkeys(10_000)
            .iter()
            .all(|(k, _)| k.len() <= MAX_TRACKED_KEY_LEN));
    }

    #[test]
    fn labels_and_contexts_are_bounded() {
        let th = th();
        let mut m = Metrics::new(T0);
        for i in 0..100 {
            let kind = format!("kind{i}");
            let ctx = format!("ctx{i}");
            let strategy = format!("s{i}");
            let r = InvalidationRecord {
                kind: &kind,
                pattern: "p",
                keys: 1,
                context: &ctx,
                strategy: &strategy,
                ..Default::default()
            };
            m.record_invalidation(&r, 0, &th, T0);
        }
        let s = m.stats(&idx(), &th, T0);
        assert_eq!(s.patterns.invalidation_types.0.len(), LABEL_SLOTS);
        assert_eq!(s.patterns.invalidation_types.get("other"), Some(85));
        assert_eq!(s.patterns.by_strategy.0.len(), LABEL_SLOTS);
        assert_eq!(s.patterns.by_context.0.len(), MOST_COMMON);
        assert_eq!(m.contexts.len(), CONTEXT_SLOTS);
        assert_eq!(s.patterns.most_common_patterns.0.len(), MOST_COMMON);
        assert!(m.patterns.len() <= PATTERN_SLOTS);
    }

    #[test]
    fn histogram_buckets_cover_u64() {
        assert_eq!(histogram_bucket(0), 0);
        assert_eq!(histogram_bucket(15), 15);
        assert_eq!(histogram_bucket(16), 16);
        assert_eq!(histogram_bucket(u64::MAX), HISTOGRAM_BUCKETS - 1);
        assert_eq!(histogram_range(HISTOGRAM_BUCKETS - 1).1, u64::MAX);
        for i in 1..HISTOGRAM_BUCKETS {
            assert_eq!(histogram_range(i).0, histogram_range(i - 1).1 + 1);
            assert_eq!(histogram_bucket(histogram_range(i).0), i);
            assert_eq!(histogram_bucket(histogram_range(i).1), i);
        }
        let mut h = Histogram::new();
        h.record(u64::MAX, 10);
        assert_eq!(h.percentile(99), u64::MAX);
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = Histogram::new();
        assert_eq!(h.stats().p50_us, 0);
        for v in 1..=1000u64 {
            h.record(v, 900);
        }
        let s = h.stats();
        assert_eq!(s.count, 1000);
        assert_eq!(s.avg_us, 500.5);
        assert_eq!(s.max_us, 1000);
        assert_eq!(s.slow, 101);
        // Exact p50 = 500, p99 = 990: the reported values are the tops of their buckets.
        assert!((500..=500 + 500 / 8).contains(&s.p50_us), "{}", s.p50_us);
        assert!((990..=1000).contains(&s.p99_us), "{}", s.p99_us);
    }

    proptest! {
        #[test]
        fn percentiles_within_bucket_precision(values in prop::collection::vec(0u64..10_000_000, 1..400)) {
            let mut h = Histogram::new();
            for &v in &values {
                h.record(v, u64::MAX);
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            for p in [50u32, 99] {
                let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
                let exact = sorted[rank - 1];
                let got = h.percentile(p);
                prop_assert!(got >= exact, "p{} {} < {}", p, got, exact);
                prop_assert!(got <= exact + exact / 8, "p{} {} >> {}", p, got, exact);
                prop_assert!(got <= *sorted.last().unwrap_or(&0));
            }
        }

        #[test]
        fn top_n_is_exact_within_capacity(keys in prop::collection::vec(0u8..20, 0..300)) {
            let mut t = TopN::new(32);
            let mut exact: HashMap<u8, u64> = HashMap::new();
            for &k in &keys {
                t.add(&[k], 1);
                *exact.entry(k).or_default() += 1;
            }
            let mut want: Vec<(Vec<u8>, u64)> = exact.into_iter().map(|(k, n)| (vec![k], n)).collect();
            want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let got: Vec<(Vec<u8>, u64)> = t.top(100).into_iter().map(|(k, n)| (k.to_vec(), n)).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn top_n_counts_match_a_scan_for_the_minimum(
            adds in prop::collection::vec((0u16..60, 1u64..4), 0..1_500),
        ) {
            // Which smallest slot a newcomer takes does not change the counts held: after every
            // addition they must equal those of a table that scans for its minimum each time.
            let cap = 8;
            let mut t = TopN::new(cap);
            let mut naive: Vec<(u16, u64)> = Vec::new();
            for &(k, n) in &adds {
                t.add(&k.to_be_bytes(), n);
                if let Some(e) = naive.iter_mut().find(|e| e.0 == k) {
                    e.1 += n;
                } else if naive.len() < cap {
                    naive.push((k, n));
                } else if let Some(e) = naive.iter_mut().min_by_key(|e| e.1) {
                    *e = (k, e.1 + n);
                }
                let mut ours = t.counts.clone();
                let mut theirs: Vec<u64> = naive.iter().map(|e| e.1).collect();
                ours.sort_unstable();
                theirs.sort_unstable();
                prop_assert_eq!(ours, theirs);
            }
        }

        #[test]
        fn top_n_lower_bounds_and_heavy_hitters(keys in prop::collection::vec(0u16..200, 0..2_000)) {
            let cap = 16;
            let mut t = TopN::new(cap);
            let mut exact: HashMap<u16, u64> = HashMap::new();
            for &k in &keys {
                t.add(&k.to_be_bytes(), 1);
                *exact.entry(k).or_default() += 1;
            }
            prop_assert!(t.len() <= cap);
            let top = t.top(cap);
            for (k, n) in &top {
                let key = u16::from_be_bytes([k[0], k[1]]);
                prop_assert!(*n <= exact.get(&key).copied().unwrap_or(0));
                prop_assert_eq!(t.pos.get(&t.hasher.hash_one(*k)).map(|&s| t.slots[s].key.as_slice()), Some(*k));
            }
            let total = keys.len() as u64;
            for (k, n) in &exact {
                if *n > total / cap as u64 {
                    prop_assert!(top.iter().any(|(tk, _)| **tk == k.to_be_bytes()[..]), "heavy hitter {} missing", k);
                }
            }
            // Every slot has a count and is found by its hash; the floor is never above the
            // smallest count, and a candidate still at the floor is a smallest slot.
            prop_assert_eq!(t.counts.len(), t.slots.len());
            prop_assert_eq!(t.pos.len(), t.slots.len());
            for (s, slot) in t.slots.iter().enumerate() {
                prop_assert_eq!(t.pos.get(&slot.hash), Some(&s));
            }
            let min = t.counts.iter().min().copied().unwrap_or(0);
            prop_assert!(t.floor <= min);
            if t.at_floor.iter().any(|&s| t.counts[s] == t.floor) {
                prop_assert_eq!(t.floor, min);
            }
        }

        #[test]
        fn ring_matches_a_naive_window(steps in prop::collection::vec((0i64..400_000, 1u64..3), 0..200), probe in 0i64..800_000) {
            // Mostly forward time with occasional jumps back; window of 60 one-second buckets.
            let mut ring = Ring::new(1_000, 60);
            let mut seen: Vec<(i64, u64)> = Vec::new();
            let mut now = T0;
            let mut head = i64::MIN;
            for (i, &(dt, n)) in steps.iter().enumerate() {
                now = if i % 7 == 6 { now - dt / 10 } else { now + dt / 4 };
                ring.add(now, n);
                let b = now.div_euclid(1_000);
                head = head.max(b);
                // The ring keeps what lies within the window of its newest bucket.
                if b > head - 60 {
                    seen.push((b, n));
                }
                let naive: u64 = seen.iter().filter(|&&(sb, _)| sb > head - 60 && sb <= head).map(|&(_, c)| c).sum();
                prop_assert_eq!(ring.total, naive);
            }
            let at = T0 + probe;
            let cur = at.div_euclid(1_000);
            let naive: u64 = seen.iter().filter(|&&(sb, _)| sb > cur - 60 && sb <= cur && sb > head - 60).map(|&(_, c)| c).sum();
            prop_assert_eq!(ring.sum(at), naive);
        }
    }

    #[test]
    fn reset_zeroes_metrics() {
        let th = th();
        let mut m = Metrics::new(T0);
        m.record_hit(b"a");
        m.record_miss();
        m.record_op(Op::Get, 10, &th);
        m.record_removal(Removal::Expired { hits: 0 });
        m.record_invalidation(&inv("tag", "t", 3), 1, &th, T0);
        m.reset(T0 + HOUR);
        let s = m.stats(&idx(), &th, T0 + HOUR);
        assert_eq!(s, Metrics::new(T0 + HOUR).stats(&idx(), &th, T0 + HOUR));
        assert_eq!((s.hits, s.misses, s.total_invalidations), (0, 0, 0));
        assert_eq!(s.rates.last_24_hours, 0);
        assert_eq!(s.operations.get.count, 0);
        assert_eq!(s.removals.expired, 0);
        assert!(s.patterns.most_common_patterns.0.is_empty());
        assert!(m.hotkeys(10).is_empty());
        assert!(m.events(10, &th, T0 + HOUR).is_empty());
        assert_eq!(s.metrics_since_ms, T0 + HOUR);
        // Index figures are not metrics: they are passed through.
        let figures = IndexFigures {
            entries: 5,
            ..idx()
        };
        assert_eq!(m.stats(&figures, &th, T0 + HOUR).entries, 5);
    }

    #[test]
    fn stats_fields_have_the_contract_names() {
        let th = th();
        let mut m = Metrics::new(T0);
        m.record_hit(b"a");
        m.record_invalidation(
            &InvalidationRecord {
                context: "deploy",
                ..inv("tag", "user:1", 2)
            },
            0,
            &th,
            T0,
        );
        m.record_invalidation(&inv("all", "", 0), 0, &th, T0);
        let s = m.stats(&idx(), &th, T0);
        let v = fields_to_json(&s.to_fields());
        for k in [
            "entries",
            "tags",
            "tagged_entries",
            "resources",
            "dependency_edges",
            "hits",
            "misses",
            "hit_rate",
            "total_invalidations",
            "total_keys_invalidated",
            "rates",
            "thresholds",
            "patterns",
            "efficiency",
            "removals",
            "operations",
            "memory",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        for (section, names) in [
            (
                "rates",
                &["last_hour", "last_24_hours", "average_per_hour"][..],
            ),
            (
                "thresholds",
                &[
                    "warning_per_hour",
                    "critical_per_hour",
                    "current_alert_level",
                ],
            ),
            ("patterns", &["most_common_patterns", "invalidation_types"]),
            (
                "efficiency",
                &[
                    "avg_keys_per_invalidation",
                    "avg_duration_ms",
                    "max_duration_ms",
                ],
            ),
            ("removals", &["expired", "evicted", "deleted"]),
            (
                "memory",
                &[
                    "index_bytes",
                    "value_bytes",
                    "lease_bytes",
                    "batch_bytes",
                    "lazy_bytes",
                    "metrics_bytes",
                    "rules_bytes",
                    "watch_bytes",
                    "cluster_bytes",
                    "history_bytes",
                    "total_bytes",
                ],
            ),
        ] {
            for n in names {
                assert!(v[section].get(n).is_some(), "missing {section}.{n}");
            }
        }
        for op in ["get", "set", "invalidate"] {
            for n in ["count", "avg_us", "p50_us", "p99_us", "max_us", "slow"] {
                assert!(
                    v["operations"][op].get(n).is_some(),
                    "missing operations.{op}.{n}"
                );
            }
        }
        assert_eq!(v["thresholds"]["current_alert_level"], "normal");
        assert_eq!(v["patterns"]["most_common_patterns"]["tag user:1"], 1);
        assert_eq!(v["patterns"]["most_common_patterns"]["all"], 1);
        assert_eq!(v["patterns"]["invalidation_types"]["tag"], 1);
        assert_eq!(v["patterns"]["by_context"]["deploy"], 1);
        assert_eq!(v["hit_rate"], 100.0);
        // Pattern maps keep reply order (largest first) in the JSON text.
        let mut m2 = Metrics::new(T0);
        m2.record_invalidation(&inv("tag", "b", 1), 0, &th, T0);
        m2.record_invalidation(&inv("tag", "b", 1), 0, &th, T0);
        m2.record_invalidation(&inv("tag", "a", 1), 0, &th, T0);
        let counts = m2.stats(&idx(), &th, T0).patterns.most_common_patterns;
        let j = crate::core::wire::to_json(&crate::core::reply::Reply::from(counts.to_field()));
        assert_eq!(j, r#"{"tag b":2,"tag a":1}"#);
        let names: Vec<&str> = s.to_fields().iter().map(|(k, _)| *k).collect();
        assert_eq!(&names[..3], &["entries", "tags", "tagged_entries"]);
    }

    #[test]
    fn recommendation_fields_have_the_contract_names() {
        let th = th();
        let mut m = Metrics::new(T0);
        m.record_invalidation(&inv("tag", "t", 0), 0, &th, T0);
        let recs = m.recommend(&idx(), &th, T0);
        let first = &fields_to_json(&recs[0].to_fields());
        assert_eq!(
            keys_of(first),
            ["issue", "message", "severity", "suggestions"]
        );
        assert!(["info", "warning", "critical"].contains(&first["severity"].as_str().unwrap_or("")));
    }

    #[test]
    fn restricted_users_see_their_own_patterns_and_contexts_only() {
        let th = th();
        let mut m = Metrics::new(T0);
        let mut add =
            |pattern: &'static str, context: &'static str, user: Option<&'static [u8]>| {
                let r = InvalidationRecord {
                    kind: "key",
                    pattern,
                    context,
                    user,
                    ..Default::default()
                };
                m.record_invalidation(&r, 0, &th, T0);
            };
        for _ in 0..4 {
            add("other:1", "theirs", Some(b"wide"));
        }
        add("other:2", "", None);
        add("app:1", "mine", Some(b"app"));
        // A user whose name has the other's as a prefix sees nothing of it.
        add("other:3", "x", Some(b"ap"));
        let all = m.stats(&idx(), &th, T0);
        assert_eq!(all.patterns.most_common_patterns.0.len(), 4);
        let mut s = all.clone();
        m.restrict(&mut s, b"app");
        assert_eq!(
            s.patterns.most_common_patterns.0,
            vec![("key app:1".to_owned(), 1)]
        );
        assert_eq!(s.patterns.by_context.0, vec![("mine".to_owned(), 1)]);
        assert_eq!(s.total_invalidations, 7, "counts stay");
        m.restrict(&mut s, b"nobody");
        assert!(s.patterns.most_common_patterns.0.is_empty());
        assert!(s.patterns.by_context.0.is_empty());
        let events = m.events(10, &th, T0);
        assert_eq!(events[1].user.as_deref(), Some(&b"app"[..]));
        assert_eq!(events[2].user, None);
        // The dominant pattern (the wide user's) is not named to the app user.
        let named = |recs: &[Recommendation]| {
            recs.iter().any(|r| {
                r.message.contains("other") || r.suggestions.iter().any(|x| x.contains("other"))
            })
        };
        assert!(named(&m.recommend(&idx(), &th, T0)));
        assert!(!named(&m.recommend_for(&idx(), &th, T0, Some(b"app"))));
    }
}
