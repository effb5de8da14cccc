//! Soft invalidation and single-flight leases in the server: `CACHE.INVALIDATE STRATEGY SOFT`
//! marks entries stale, `CACHE.FETCH` serves fresh or stale values and hands out one lease per
//! key (see `core::lease` for the state machine), `CACHE.SET` ends a lease.
//!
//! Leases are node-local state: a table behind its own lock (never held while calling into the
//! server), not persisted, not replicated, dropped with their database (FLUSH, SWAPDB, loading).
//! Stale marks live in the entries (encoding version 3) and replicate as
//! `CACHE.PENDING STALE <deadline> <key> ...`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use redis_module::{Context, RedisString};

use crate::commands::{self, DEL_CHUNK};
use crate::config;
use crate::core::index::Selector;
use crate::core::lease::{self, Found, Leases};
use crate::core::metrics::{Field, Op, Recommendation};
use crate::core::parse::{self, Strategy};
use crate::error::Result;
use crate::reclaim;
use crate::server::{self, Access, Held, Key, Reply, NOTIFY_MODULE};
use crate::state;

static LEASES: Mutex<Option<Leases>> = Mutex::new(None);
/// Some lease exists: CACHE.SET takes the lease lock only then.
static ANY_LEASE: AtomicBool = AtomicBool::new(false);

/// The lease table and counters; never call into the server while holding them.
fn leases() -> LeaseGuard {
    LeaseGuard(LEASES.lock().unwrap_or_else(|e| e.into_inner()))
}

struct LeaseGuard(MutexGuard<'static, Option<Leases>>);

impl LeaseGuard {
    fn get(&mut self) -> &mut Leases {
        self.0.get_or_insert_with(Leases::new)
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let any = self.0.as_ref().is_some_and(|l| !l.is_empty());
        ANY_LEASE.store(any, Ordering::Relaxed);
    }
}

/// `CACHE.FETCH key [LEASE ms]` -> `[value-or-nil, state]`.
pub(crate) fn cache_fetch(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let started = Instant::now();
    let a = parse::parse_fetch(argv)?;
    // Taken before the read: whatever the caller computes from here on is checked against
    // the invalidations after it.
    let token = a.with_token.then(crate::history::token);
    let now = server::now_ms();
    let lease_ms = a.lease_ms.unwrap_or_else(|| config::LEASE_MS.get());
    // Over maxmemory no lease is handed out (the table would grow): the caller gets what a
    // replica answers.
    let may_grant = !server::is_replica(ctx) && !server::over_maxmemory();
    let db = server::selected_db(ctx);
    let key = Key::read(ctx, &args[1]);
    let entry = key.entry()?.filter(|e| !reclaim::gone(ctx, a.key, e));
    let found = match &entry {
        None => Found::Missing,
        Some(e) if e.is_stale() => Found::Stale,
        Some(e) => Found::Fresh {
            refresh_due: lease::refresh_due(
                config::REFRESH_AHEAD_PERCENT.get(),
                u64::try_from(config::HOT_THRESHOLD.get()).unwrap_or(0),
                e.hits(),
                e.created_ms(),
                key.deadline(),
                now,
            ),
        },
    };
    let decision = {
        let mut g = leases();
        let l = g.get();
        // A lease of this key is only looked up when it could matter.
        let held = may_grant && found != (Found::Fresh { refresh_due: false }) && {
            l.held(db, a.key, now)
        };
        let d = lease::decide(found, held, may_grant);
        if d.grant {
            l.grant(db, a.key, now.saturating_add(lease_ms), now);
        }
        l.stats.count_fetch(&d, found);
        d
    };
    let state = Reply::Bulk(decision.state.name().as_bytes().to_vec());
    let value = match (&entry, decision.value) {
        (Some(e), true) => Reply::Bulk(e.value().to_vec()),
        _ => Reply::Nil,
    };
    // A fresh value counts as a hit (of the entry too), nothing served as a miss; a stale
    // value is neither (see the `soft` section of CACHE.STATS).
    let outcome = match (entry, found) {
        (Some(e), Found::Fresh { .. }) => {
            e.hit();
            Some(true)
        }
        (_, Found::Missing) => Some(false),
        _ => None,
    };
    drop(key);
    crate::watch::read(ctx, [a.key]);
    let th = config::thresholds();
    {
        let mut st = state::lock();
        let m = st.metrics_started();
        match outcome {
            Some(true) => m.record_hit(a.key),
            Some(false) => m.record_miss(),
            None => {}
        }
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        m.record_op(Op::Get, us, &th);
    }
    let mut reply = vec![value, state];
    if let Some(t) = token {
        reply.push(Reply::Int(t));
    }
    Ok(Reply::Array(reply))
}

/// `CACHE.SET` wrote (or deleted) the key: its lease ends. One flag check while no lease
/// exists.
pub fn end_lease(db: usize, key: &[u8], now: i64) {
    if !ANY_LEASE.load(Ordering::Relaxed) {
        return;
    }
    leases().get().end(db, key, now);
}

/// The heap the table of leases takes (an estimate, O(1)).
pub fn heap_bytes() -> u64 {
    leases().get().heap_bytes()
}

/// Drops the leases of a database (None: all), e.g. when it is flushed or swapped.
pub fn forget(db: Option<usize>) {
    leases().get().forget(db);
}

/// `CACHE.RESET`: zeroes the counters (the leases stay).
pub fn reset() {
    leases().get().stats = lease::SoftStats::default();
}

/// The `soft` section of CACHE.STATS.
pub fn stats_section() -> (&'static str, Field) {
    let mut g = leases();
    let l = g.get();
    let active = l.len();
    (
        "soft",
        Field::Map(
            l.stats
                .to_fields(active)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ),
    )
}

/// The advice on soft invalidation and leases, for CACHE.RECOMMEND.
pub fn advice() -> Vec<Recommendation> {
    leases().get().stats.advice()
}

/// `CACHE.INVALIDATE STRATEGY SOFT [GRACE s] <selector>` in the selected database: every
/// entry the selector reaches (with the cascade and the user's permissions, as IMMEDIATE)
/// becomes stale until now + grace, never later than it already was, and its key's deadline
/// is moved no later than that. Replicates the marks; records the invalidation. Returns how
/// many entries are stale by it.
pub fn soft(
    ctx: &Context,
    selector: &Selector,
    depth: Option<u32>,
    context: Option<&[u8]>,
    grace_s: Option<i64>,
    access: Option<&Access>,
) -> u64 {
    let started = Instant::now();
    let grace = grace_s.unwrap_or_else(|| config::SOFT_GRACE_SECONDS.get());
    let deadline = server::now_ms().saturating_add(grace.saturating_mul(1000));
    let mut unread = 0u64;
    let mut denied = 0u64;
    // Keys by the deadline their mark got (an earlier mark keeps its own).
    let mut marked: Vec<(i64, Vec<u8>)> = Vec::new();
    let db = server::selected_db(ctx);
    let seq = crate::history::begin(db, selector, access.map(Access::name));
    let reached = commands::reach(ctx, selector, depth, |name| {
        let rs = server::string(ctx, name);
        if !commands::may_delete(access, &rs, &mut denied) {
            return false;
        }
        let mut key = Key::write(ctx, &rs);
        let Held::Entry(e) = key.held() else {
            return false;
        };
        if reclaim::gone(ctx, name, e) {
            return false;
        }
        if e.hits() == 0 {
            unread += 1;
        }
        let until = mark(&mut key, deadline);
        drop(key);
        server::signal_modified(ctx, &rs);
        server::notify(ctx, NOTIFY_MODULE, c"cache.soft", &rs);
        marked.push((until, name.to_vec()));
        true
    });
    replicate_marks(ctx, marked);
    if !matches!(selector, Selector::All) {
        let hops = depth.unwrap_or_else(config::max_cascade_depth);
        crate::history::removed(
            db,
            seq,
            access.map(Access::name),
            reached.frontier_keys(hops).map(|(k, _)| k),
        );
    }
    if denied > 0 {
        ctx.log_notice(&format!(
            "tagcache: an invalidation skipped {denied} entries its user may not delete (see ACL LOG)"
        ));
    }
    let n = reached.keys.len() as u64;
    {
        let mut g = leases();
        let s = &mut g.get().stats;
        s.invalidations += 1;
        s.entries_made_stale += n;
    }
    let context = context.map(String::from_utf8_lossy).unwrap_or_default();
    commands::record(
        ctx,
        selector.kind(),
        &selector.arguments(),
        n,
        (reached.keys.len() - reached.selected) as u64,
        reached.depth,
        started,
        &context,
        Strategy::Soft(grace_s),
        unread,
        server::caller_name(ctx).as_deref(),
    );
    n
}

/// Marks an open entry stale until `deadline` (or its earlier mark) and brings the key's
/// deadline no later than that; returns the stale deadline in force.
fn mark(key: &mut Key, deadline: i64) -> i64 {
    let Some(e) = key.entry().ok().flatten() else {
        return deadline;
    };
    let (until, grown) = e.mark_stale(deadline);
    if let Some(grown) = grown {
        // A fresh entry grew by the deadline. The key is open for writing and holds an entry,
        // so this does not fail; if it did, the key's deadline below still ends the entry.
        let _ = key.replace_entry(grown);
    }
    let at = lease::key_deadline(key.deadline(), until);
    if key.deadline() != Some(at) {
        key.set_deadline(at);
    }
    until
}

/// Replicates stale marks as `CACHE.PENDING STALE <deadline> <key> ...`, one command per
/// deadline and chunk: the replica (and the AOF) applies the same absolute deadlines.
fn replicate_marks(ctx: &Context, mut marked: Vec<(i64, Vec<u8>)>) {
    marked.sort_unstable();
    for group in marked.chunk_by(|a, b| a.0 == b.0) {
        let at = group[0].0.to_string();
        for chunk in group.chunks(DEL_CHUNK) {
            let mut out: Vec<&[u8]> = vec![b"STALE", at.as_bytes()];
            out.extend(chunk.iter().map(|(_, k)| k.as_slice()));
            server::replicate(ctx, "CACHE.PENDING", &out);
        }
    }
}

/// `CACHE.PENDING STALE <deadline> <key> ...` from the master or the AOF: marks those entries
/// of the selected database. Replies how many entries it marked.
pub fn replay_stale(ctx: &Context, deadline: i64, keys: &[Vec<u8>]) -> i64 {
    let mut n = 0;
    for name in keys {
        let rs = server::string(ctx, name);
        let mut key = Key::write(ctx, &rs);
        if let Held::Entry(_) = key.held() {
            mark(&mut key, deadline);
            n += 1;
            drop(key);
            server::signal_modified(ctx, &rs);
        }
    }
    n
}
