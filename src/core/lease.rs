//! Soft invalidation and single-flight leases (`CACHE.INVALIDATE STRATEGY SOFT`, `CACHE.FETCH`):
//! the pure state machine that decides what a fetch answers and who recomputes, the node-local
//! lease table, the counters and their advice. Plain Rust: the shell (`crate::fetch`) opens keys
//! and replies.
//!
//! A fetch sees one of three things at a key: nothing (or an entry reads as missing), a fresh
//! entry, or a stale one (a SOFT invalidation covers it; it is removed when its grace ends).
//! With the lease of the key free, the caller gets it whenever something must be computed:
//!
//! | found                   | lease free (master) | lease held by another | replica  |
//! |-------------------------|---------------------|-----------------------|----------|
//! | nothing                 | `miss` + lease      | `wait`                | `miss`   |
//! | stale                   | `refresh` + lease   | `stale`               | `stale`  |
//! | fresh, refresh due      | `refresh` + lease   | `hit`                 | `hit`    |
//! | fresh                   | `hit`               | `hit`                 | `hit`    |
//!
//! A lease ends when the key is written (`CACHE.SET`) or when it expires; a replica never hands
//! one out (its callers write to the master, which holds the leases).

use std::collections::HashMap;

use crate::core::metrics::{Field, Recommendation, Severity};

/// The deadline of a stale mark made at `deadline` on an entry stale until `current` (0:
/// fresh): a soft invalidation never extends an entry's life.
pub fn stale_deadline(current: i64, deadline: i64) -> i64 {
    if current == 0 {
        deadline
    } else {
        current.min(deadline)
    }
}

/// The key deadline after a soft invalidation with stale deadline `stale`: the earlier of the
/// two (None: no deadline before).
pub fn key_deadline(current: Option<i64>, stale: i64) -> i64 {
    current.map_or(stale, |c| c.min(stale))
}

/// What a fetch found at the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No entry, or one that reads as missing (LAZY).
    Missing,
    /// A fresh entry; `refresh_due` when refresh-ahead wants it recomputed early.
    Fresh { refresh_due: bool },
    /// An entry a SOFT invalidation covers, within its grace.
    Stale,
}

/// The state `CACHE.FETCH` replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchState {
    Hit,
    Miss,
    Wait,
    Refresh,
    Stale,
}

impl FetchState {
    pub const ALL: [FetchState; 5] = [
        FetchState::Hit,
        FetchState::Miss,
        FetchState::Wait,
        FetchState::Refresh,
        FetchState::Stale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FetchState::Hit => "hit",
            FetchState::Miss => "miss",
            FetchState::Wait => "wait",
            FetchState::Refresh => "refresh",
            FetchState::Stale => "stale",
        }
    }
}

/// What a fetch answers: its state, whether the value is sent, whether the caller now holds
/// the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub state: FetchState,
    pub value: bool,
    pub grant: bool,
}

/// The state machine of the table above. `held`: another caller's lease on the key has not
/// expired; `may_grant`: this node hands out leases (a master).
pub fn decide(found: Found, held: bool, may_grant: bool) -> Decision {
    let grant = may_grant && !held;
    let d = |state, value, grant| Decision {
        state,
        value,
        grant,
    };
    match found {
        Found::Missing if grant => d(FetchState::Miss, false, true),
        Found::Missing if may_grant => d(FetchState::Wait, false, false),
        Found::Missing => d(FetchState::Miss, false, false),
        Found::Stale if grant => d(FetchState::Refresh, true, true),
        Found::Stale => d(FetchState::Stale, true, false),
        Found::Fresh { refresh_due: true } if grant => d(FetchState::Refresh, true, true),
        Found::Fresh { .. } => d(FetchState::Hit, true, false),
    }
}

/// Whether refresh-ahead wants a fresh entry recomputed now: it is on (`percent` > 0), the
/// entry was read at least `hot_threshold` times, and less than `percent` % of its original
/// TTL (`deadline - created_ms`) is left.
pub fn refresh_due(
    percent: i64,
    hot_threshold: u64,
    hits: u64,
    created_ms: i64,
    deadline: Option<i64>,
    now_ms: i64,
) -> bool {
    let Some(deadline) = deadline else {
        return false;
    };
    if percent <= 0 || hits < hot_threshold {
        return false;
    }
    let original = i128::from(deadline) - i128::from(created_ms);
    let left = i128::from(deadline) - i128::from(now_ms);
    original > 0 && left * 100 < i128::from(percent) * original
}

/// Counters of soft invalidation, fetches and leases (zeroed by `CACHE.RESET`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoftStats {
    /// SOFT invalidations and the entries they made (or kept) stale.
    pub invalidations: u64,
    pub entries_made_stale: u64,
    /// Fetches by state.
    pub fetches: [u64; 5],
    /// Stale values served (`stale`, and `refresh` of a stale entry).
    pub stale_serves: u64,
    pub leases_granted: u64,
    /// Leases ended by a write of their key before they expired.
    pub leases_completed: u64,
    /// Leases that expired without a write (counted when noticed: the next fetch or write of
    /// the key, or a sweep of the table).
    pub leases_expired: u64,
    /// `refresh` answers for fresh entries (refresh-ahead).
    pub refresh_ahead: u64,
}

impl SoftStats {
    pub fn count_fetch(&mut self, d: &Decision, found: Found) {
        let i = FetchState::ALL
            .iter()
            .position(|s| *s == d.state)
            .unwrap_or(0);
        self.fetches[i] = self.fetches[i].saturating_add(1);
        if d.value && found == Found::Stale {
            self.stale_serves = self.stale_serves.saturating_add(1);
        }
        if d.grant {
            self.leases_granted = self.leases_granted.saturating_add(1);
            if matches!(found, Found::Fresh { .. }) {
                self.refresh_ahead = self.refresh_ahead.saturating_add(1);
            }
        }
    }

    pub fn fetched(&self, s: FetchState) -> u64 {
        FetchState::ALL
            .iter()
            .position(|x| *x == s)
            .map_or(0, |i| self.fetches[i])
    }

    /// The `soft` section of `CACHE.STATS`.
    pub fn to_fields(&self, active_leases: usize) -> Vec<(&'static str, Field)> {
        vec![
            ("invalidations", Field::uint(self.invalidations)),
            ("entries_made_stale", Field::uint(self.entries_made_stale)),
            ("stale_serves", Field::uint(self.stale_serves)),
            (
                "fetches",
                Field::Map(
                    FetchState::ALL
                        .iter()
                        .map(|s| (s.name().to_owned(), Field::uint(self.fetched(*s))))
                        .collect(),
                ),
            ),
            ("leases_granted", Field::uint(self.leases_granted)),
            ("leases_completed", Field::uint(self.leases_completed)),
            ("leases_expired", Field::uint(self.leases_expired)),
            ("leases_active", Field::uint(active_leases as u64)),
            ("refresh_ahead", Field::uint(self.refresh_ahead)),
        ]
    }

    /// Advice on soft invalidation and leases:
    /// - "Stale serves dominate" (`warning`): at least 100 fetches served a value and more than
    ///   half of them were stale: recomputes lag behind soft invalidations.
    /// - "Leases often expire" (`warning`): at least 20 leases ended and at least 10 % of them
    ///   expired before their key was written: callers crash or compute longer than the lease.
    pub fn advice(&self) -> Vec<Recommendation> {
        let mut out = Vec::new();
        let served = self.stale_serves + self.fetched(FetchState::Hit);
        if served >= 100 && self.stale_serves * 2 > served {
            out.push(Recommendation {
                severity: Severity::Warning,
                issue: ISSUE_STALE_DOMINATE.into(),
                message: format!(
                    "{} of {} values served by CACHE.FETCH were stale ({:.1}%)",
                    self.stale_serves,
                    served,
                    100.0 * self.stale_serves as f64 / served as f64
                ),
                suggestions: vec![
                    "Make sure the caller that gets `refresh` or `miss` writes the new value with CACHE.SET".into(),
                    "Lower cache.soft-grace-seconds (or GRACE) so stale values leave sooner".into(),
                    "Invalidate less broadly: soft-invalidate the entries that really changed".into(),
                ],
            });
        }
        let ended = self.leases_completed + self.leases_expired;
        if ended >= 20 && self.leases_expired * 10 >= ended {
            out.push(Recommendation {
                severity: Severity::Warning,
                issue: ISSUE_LEASES_EXPIRE.into(),
                message: format!(
                    "{} of {} leases expired before their key was written ({:.1}%)",
                    self.leases_expired,
                    ended,
                    100.0 * self.leases_expired as f64 / ended as f64
                ),
                suggestions: vec![
                    "Raise cache.lease-ms (or LEASE) above the time a recompute takes".into(),
                    "Check that lease holders finish with CACHE.SET, also on errors".into(),
                ],
            });
        }
        out
    }
}

pub const ISSUE_STALE_DOMINATE: &str = "Stale serves dominate";
pub const ISSUE_LEASES_EXPIRE: &str = "Leases often expire";

/// The smallest table size at which granting sweeps expired leases.
const SWEEP_MIN: usize = 1024;

/// Leases by (database, key) -> expiry (Unix ms). Node-local, never persisted. Expired leases
/// are dropped when their key is looked at and by a sweep whenever the table doubles, so it
/// holds at most about twice the leases alive.
#[derive(Debug, Default)]
pub struct Leases {
    map: HashMap<(usize, Vec<u8>), i64>,
    /// The bytes of the keys in `map` (kept as it changes: STATS reads it in O(1)).
    key_bytes: usize,
    sweep_at: usize,
    pub stats: SoftStats,
}

impl Leases {
    pub fn new() -> Leases {
        Leases {
            map: HashMap::new(),
            key_bytes: 0,
            sweep_at: SWEEP_MIN,
            stats: SoftStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The heap the table takes (an estimate, O(1)): its slots, spare ones included, and keys.
    pub fn heap_bytes(&self) -> u64 {
        let slot = std::mem::size_of::<((usize, Vec<u8>), i64)>() + 1;
        (self.map.capacity() * slot + self.key_bytes) as u64
    }

    /// Whether an unexpired lease is held on the key (an expired one is dropped and counted).
    pub fn held(&mut self, db: usize, key: &[u8], now_ms: i64) -> bool {
        let k = (db, key.to_vec());
        match self.map.get(&k) {
            Some(&until) if until > now_ms => true,
            Some(_) => {
                self.map.remove(&k);
                self.key_bytes -= key.len();
                self.stats.leases_expired += 1;
                false
            }
            None => false,
        }
    }

    /// Hands the lease of the key out until `until`.
    pub fn grant(&mut self, db: usize, key: &[u8], until: i64, now_ms: i64) {
        if self.map.len() >= self.sweep_at {
            self.sweep(now_ms);
            self.sweep_at = (self.map.len() * 2).max(SWEEP_MIN);
        }
        if self.map.insert((db, key.to_vec()), until).is_none() {
            self.key_bytes += key.len();
        }
    }

    /// The key was written: its lease (if any) ends; counted completed, or expired if it had.
    pub fn end(&mut self, db: usize, key: &[u8], now_ms: i64) {
        if let Some(until) = self.map.remove(&(db, key.to_vec())) {
            self.key_bytes -= key.len();
            if until > now_ms {
                self.stats.leases_completed += 1;
            } else {
                self.stats.leases_expired += 1;
            }
        }
    }

    /// Drops the expired leases (counted).
    pub fn sweep(&mut self, now_ms: i64) {
        let before = self.map.len();
        let bytes = &mut self.key_bytes;
        self.map.retain(|(_, key), until| {
            let keep = *until > now_ms;
            if !keep {
                *bytes -= key.len();
            }
            keep
        });
        self.stats.leases_expired += (before - self.map.len()) as u64;
    }

    /// Drops the leases of one database (None: all), not counted: their keys went with it.
    pub fn forget(&mut self, db: Option<usize>) {
        match db {
            Some(d) => {
                let bytes = &mut self.key_bytes;
                self.map.retain(|(k, key), _| {
                    if *k == d {
                        *bytes -= key.len();
                    }
                    *k != d
                });
            }
            None => {
                self.map.clear();
                self.key_bytes = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_bytes_follow_the_leases() {
        let mut l = Leases::new();
        let key = |i: usize| format!("key:{i:04}:{}", "k".repeat(91)).into_bytes();
        for i in 0..1000 {
            l.grant(0, &key(i), 1_000 + i as i64, 0);
        }
        assert_eq!(l.key_bytes, 1000 * 100);
        let h = l.heap_bytes();
        assert!((1000 * (100 + 40)..=1000 * 300).contains(&h), "{h}");
        l.grant(0, &key(1), 5_000, 0);
        assert_eq!(
            l.key_bytes,
            1000 * 100,
            "a lease granted again is counted once"
        );
        l.end(0, &key(0), 0);
        assert!(!l.held(0, &key(1), 10_000));
        assert_eq!(l.key_bytes, 998 * 100);
        l.sweep(1_500);
        assert_eq!(l.key_bytes, l.len() * 100);
        l.grant(1, &key(0), 9_000, 0);
        l.forget(Some(0));
        assert_eq!((l.len(), l.key_bytes), (1, 100));
        l.forget(None);
        assert_eq!(l.key_bytes, 0);
    }

    const F: Found = Found::Fresh { refresh_due: false };
    const DUE: Found = Found::Fresh { refresh_due: true };

    fn st(found: Found, held: bool, may_grant: bool) -> (FetchState, bool, bool) {
        let d = decide(found, held, may_grant);
        (d.state, d.value, d.grant)
    }

    #[test]
    fn every_transition_of_the_table() {
        use FetchState::*;
        assert_eq!(st(Found::Missing, false, true), (Miss, false, true));
        assert_eq!(st(Found::Missing, true, true), (Wait, false, false));
        assert_eq!(st(Found::Missing, false, false), (Miss, false, false));
        assert_eq!(st(Found::Missing, true, false), (Miss, false, false));
        assert_eq!(st(Found::Stale, false, true), (Refresh, true, true));
        assert_eq!(st(Found::Stale, true, true), (Stale, true, false));
        assert_eq!(st(Found::Stale, false, false), (Stale, true, false));
        assert_eq!(st(DUE, false, true), (Refresh, true, true));
        assert_eq!(st(DUE, true, true), (Hit, true, false));
        assert_eq!(st(DUE, false, false), (Hit, true, false));
        for held in [false, true] {
            for grant in [false, true] {
                assert_eq!(st(F, held, grant), (Hit, true, false));
            }
        }
    }

    #[test]
    fn a_replica_never_grants_and_answers_stale_or_miss_without_a_value() {
        for found in [Found::Missing, Found::Stale, F, DUE] {
            for held in [false, true] {
                let d = decide(found, held, false);
                assert!(!d.grant);
                assert_ne!(d.state, FetchState::Wait);
                assert_ne!(d.state, FetchState::Refresh);
            }
        }
    }

    #[test]
    fn soft_never_extends() {
        assert_eq!(stale_deadline(0, 100), 100);
        assert_eq!(stale_deadline(100, 200), 100);
        assert_eq!(stale_deadline(100, 50), 50);
        assert_eq!(key_deadline(None, 100), 100);
        assert_eq!(key_deadline(Some(70), 100), 70);
        assert_eq!(key_deadline(Some(170), 100), 100);
    }

    #[test]
    fn refresh_ahead_needs_percent_heat_and_a_short_remaining_ttl() {
        // Original TTL 1000 ms (created 0, deadline 1000); 20 % -> due below 200 ms left.
        assert!(!refresh_due(20, 10, 10, 0, Some(1000), 800));
        assert!(refresh_due(20, 10, 10, 0, Some(1000), 801));
        assert!(!refresh_due(20, 10, 9, 0, Some(1000), 900), "not hot");
        assert!(!refresh_due(0, 10, 100, 0, Some(1000), 999), "off");
        assert!(!refresh_due(20, 10, 100, 0, None, 999), "no TTL");
        assert!(
            !refresh_due(20, 0, 0, 1000, Some(1000), 999),
            "no original TTL"
        );
        assert!(
            refresh_due(100, 0, 0, 0, Some(1000), 1),
            "100 %: any time left"
        );
        assert!(
            refresh_due(100, 0, 0, i64::MIN, Some(i64::MAX), 0),
            "no overflow"
        );
    }

    #[test]
    fn leases_expire_end_and_are_bounded() {
        let mut l = Leases::new();
        assert!(!l.held(0, b"k", 0));
        l.grant(0, b"k", 100, 0);
        assert!(l.held(0, b"k", 99));
        assert!(!l.held(1, b"k", 99), "per database");
        assert!(!l.held(0, b"k", 100), "expired at its deadline");
        assert_eq!(l.stats.leases_expired, 1);
        assert!(l.is_empty());
        l.grant(0, b"k", 100, 0);
        l.end(0, b"k", 50);
        assert_eq!(l.stats.leases_completed, 1);
        l.end(0, b"k", 50);
        assert_eq!(l.stats.leases_completed, 1, "ending twice counts once");
        l.grant(0, b"k", 100, 0);
        l.end(0, b"k", 150);
        assert_eq!(l.stats.leases_expired, 2, "written after expiry: expired");
        // Many short leases: the table never holds much more than twice the live ones.
        for i in 0..10_000u32 {
            let now = i64::from(i);
            l.grant(0, &i.to_be_bytes(), now + 10, now);
            assert!(l.len() <= 2 * SWEEP_MIN + 20, "{}", l.len());
        }
        l.forget(Some(1));
        assert!(!l.is_empty());
        l.forget(Some(0));
        assert!(l.is_empty());
    }

    #[test]
    fn counters_and_advice() {
        let mut s = SoftStats::default();
        let stale = decide(Found::Stale, true, true);
        for _ in 0..60 {
            s.count_fetch(&stale, Found::Stale);
        }
        let hit = decide(F, false, true);
        for _ in 0..40 {
            s.count_fetch(&hit, F);
        }
        assert_eq!(s.stale_serves, 60);
        assert_eq!(s.fetched(FetchState::Hit), 40);
        let issues: Vec<String> = s.advice().into_iter().map(|r| r.issue).collect();
        assert_eq!(issues, vec![ISSUE_STALE_DOMINATE.to_string()]);
        s.count_fetch(&decide(DUE, false, true), DUE);
        assert_eq!((s.refresh_ahead, s.leases_granted), (1, 1));
        s.leases_completed = 18;
        s.leases_expired = 1;
        assert_eq!(s.advice().len(), 1, "19 leases ended: too few to judge");
        s.leases_expired = 2;
        assert_eq!(s.advice().len(), 2);
        assert_eq!(s.advice()[1].issue, ISSUE_LEASES_EXPIRE);
    }
}
