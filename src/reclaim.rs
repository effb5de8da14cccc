//! The LAZY strategy in the server: making marks, telling readers which entries they cover, and
//! the reclaimer that deletes those entries in small timed steps (see `core::lazy`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis_module::{Context, RedisString};
use smallvec::SmallVec;

use crate::config;
use crate::core::entry::Entry;
use crate::core::index::{PackedNames, Selector};
use crate::core::lazy::{self, encode_mark, Graph, Mark, Node};
use crate::core::parse::Strategy;
use crate::server::{self, Access, Blocked, Held, Key};
use crate::state;

/// The keyspace of one database as coverage sees it: entries opened read-only (without touching
/// their LRU clock), tombstones from the state, and the marks' users' permissions.
struct ServerGraph<'a> {
    ctx: &'a Context,
    db: usize,
    users: Vec<(Vec<u8>, Option<Access>)>,
    /// The server string of the name asked for last: the reclaimer opens a key and then checks
    /// the marks' users' permissions on the same name.
    last: Option<RedisString>,
}

impl<'a> ServerGraph<'a> {
    fn new(ctx: &'a Context, db: usize) -> Self {
        ServerGraph {
            ctx,
            db,
            users: Vec::new(),
            last: None,
        }
    }

    /// `name` as a server string, made once while the same name is asked for again.
    fn string(&mut self, name: &[u8]) -> &RedisString {
        cached(self.ctx, &mut self.last, name)
    }
}

fn cached<'s>(ctx: &Context, last: &'s mut Option<RedisString>, name: &[u8]) -> &'s RedisString {
    if last.as_ref().is_some_and(|s| s.as_slice() != name) {
        *last = None;
    }
    last.get_or_insert_with(|| server::string(ctx, name))
}

impl Graph for ServerGraph<'_> {
    fn nodes(&mut self, name: &[u8]) -> SmallVec<[Node; 2]> {
        let (may_hold, tombstones): (bool, SmallVec<[Node; 2]>) = {
            let mut st = state::lock();
            // Most dependencies name no entry (often not even a key): a name whose namespace
            // has no entry is not opened.
            let may_hold = st.db(self.db).may_hold(name);
            let t = st
                .lazy()
                .get(self.db)
                .map(|d| d.tombstones(name).cloned().collect())
                .unwrap_or_default();
            (may_hold, t)
        };
        let mut out = SmallVec::new();
        if may_hold {
            // The state is not held here: opening may expire the key, which calls back.
            let key = Key::probe(self.ctx, &server::string(self.ctx, name));
            if let Held::Entry(e) = key.held() {
                if let Some(entry) = e.skeleton() {
                    out.push(Node {
                        entry,
                        until: u64::MAX,
                    });
                }
            }
        }
        out.extend(tombstones);
        out
    }

    fn allowed(&mut self, mark: &Mark, name: &[u8]) -> bool {
        let Some(user) = &mark.user else {
            return true;
        };
        let i = match self.users.iter().position(|(u, _)| u == user) {
            Some(i) => i,
            None => {
                self.users
                    .push((user.clone(), Access::of_user(self.ctx, user)));
                self.users.len() - 1
            }
        };
        let key = cached(self.ctx, &mut self.last, name);
        match &self.users[i].1 {
            Some(a) => a.allows(key, true),
            // A user this node does not know (deleted since, or not defined on this replica):
            // a master deletes nothing for it; a replica, which deletes nothing itself, reads
            // the entry as a miss rather than serve what its master may have invalidated.
            None => server::is_replica(self.ctx),
        }
    }
}

/// Whether a LAZY invalidation covers the entry `e` under `name` in the selected database: then
/// it reads as missing. Costs one flag check while no marks exist (the hot read path).
pub fn gone(ctx: &Context, name: &[u8], e: &Entry) -> bool {
    // Written after every mark (the usual case): nothing covers it, no lock taken.
    if e.born() >= state::newest_mark() {
        return false;
    }
    let db = server::selected_db(ctx);
    let marks = state::lock().lazy().marks(db);
    match marks {
        Some(m) if m.last().is_some_and(|newest| newest.gen > e.born()) => {
            lazy::covering(&m, name, e, &mut ServerGraph::new(ctx, db)).is_some()
        }
        _ => false,
    }
}

/// Whether cache commands see the entry: neither stale (SOFT) nor covered by LAZY.
pub fn live(ctx: &Context, name: &[u8], e: &Entry) -> bool {
    !e.is_stale() && !gone(ctx, name, e)
}

/// An entry under `name` in `db` is removed or replaced: keep a tombstone if marks may need it.
/// Called with the state held (the unlink callback, CACHE.SET replacing).
pub fn retire(st: &mut state::State, db: usize, name: &[u8], e: &Entry) {
    // No mark can cover it (none, or all older than the entry): nothing to keep.
    if e.born() >= state::newest_mark() {
        return;
    }
    let depended_on = st.db(db).is_resource(name);
    let now = state::generation();
    st.lazy_mut(|l| l.db(db).retire(name, e, depended_on, now));
}

/// What an invalidation's event records, taken before its selector moves into a mark.
struct Noted {
    kind: &'static str,
    pattern: String,
    context: String,
    started: Instant,
    /// The ACL user it runs for (the metrics show its names to that user only).
    user: Option<Vec<u8>>,
}

impl Noted {
    fn of(selector: &Selector, context: Option<&[u8]>, user: Option<&[u8]>) -> Noted {
        Noted {
            user: user.map(<[u8]>::to_vec),
            kind: selector.kind(),
            pattern: selector.arguments(),
            context: context
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned(),
            started: Instant::now(),
        }
    }

    fn record(&self, ctx: &Context, keys: u64, strategy: Strategy) {
        let (kind, pattern, context) = (self.kind, &self.pattern, &self.context);
        crate::commands::record(
            ctx,
            kind,
            pattern,
            keys,
            0,
            0,
            self.started,
            context,
            strategy,
            0,
            self.user.as_deref(),
        );
    }
}

/// `CACHE.INVALIDATE STRATEGY LAZY`: marks what the selector covers in `db` (no entry is
/// visited), replicates the mark, and sets the reclaimer going. Returns the number of entries
/// the selector picks now (counted from the index; the cascade is found by the reclaimer).
pub fn invalidate(
    ctx: &Context,
    db: usize,
    selector: Selector,
    depth: Option<u32>,
    context: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
) -> u64 {
    let noted = Noted::of(&selector, context.as_deref(), user.as_deref());
    let picked = server::entries_only(ctx, &selector);
    let selected = state::with_db(db, |idx| idx.count(&picked));
    drop(picked);
    mark(ctx, db, selector, selected, depth, context, user);
    noted.record(ctx, selected, Strategy::Lazy);
    selected
}

/// Adds a mark for `selector` (which picks `selected` entries now); returns its generation.
fn mark(
    ctx: &Context,
    db: usize,
    selector: Selector,
    selected: u64,
    depth: Option<u32>,
    context: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
) -> u64 {
    let now = server::now_ms();
    let any_dependency = state::with_db(db, |idx| idx.resource_count() > 0);
    // Entries that depend on nothing now can only gain dependencies by being written again
    // (a new generation): without any, there is no cascade to follow.
    let depth = if any_dependency {
        depth.unwrap_or_else(config::max_cascade_depth)
    } else {
        0
    };
    let gen = state::next_generation();
    let mark = Mark::new(gen, selector, depth, user, context, now, selected);
    let bytes = encode_mark(&mark);
    state::lock().lazy_mut(|l| l.db(db).add(mark));
    server::replicate(
        ctx,
        "CACHE.PENDING",
        &[b"MARK", db.to_string().as_bytes(), &bytes],
    );
    arm(ctx);
    gen
}

/// An IMMEDIATE invalidation running in the reclaimer's steps, its client blocked until done.
struct Waiter {
    client: Blocked,
    db: usize,
    gen: u64,
    /// Entries the reclaimer deleted in `db` since the invalidation began.
    deleted: u64,
    noted: Noted,
}

static WAITERS: Mutex<Vec<Waiter>> = Mutex::new(Vec::new());

fn waiters() -> std::sync::MutexGuard<'static, Vec<Waiter>> {
    WAITERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether an IMMEDIATE invalidation of `selector` in `db` should run in bounded steps: it
/// selects at least `cache.stepped-threshold` entries and a good part of the database (the
/// reclaimer walks the whole database), and the client can wait. Some(entries it selects).
pub fn steps_pay_off(ctx: &Context, db: usize, selector: &Selector) -> Option<u64> {
    let threshold = config::STEPPED_THRESHOLD.get();
    if threshold == 0 || server::is_replica(ctx) || !server::can_block(ctx) {
        return None;
    }
    let threshold = u64::try_from(threshold).unwrap_or(u64::MAX);
    // Counting a pattern visits names, and a KEY list opens keys: not where the database is
    // too small anyway, nor for a list shorter than the threshold.
    let entries = state::with_db(db, |idx| idx.len() as u64);
    let few_keys = matches!(selector, Selector::Keys(k) if (k.len() as u64) < threshold);
    if entries < threshold || few_keys {
        return None;
    }
    let selector = server::entries_only(ctx, selector);
    let selected = state::with_db(db, |idx| idx.count(&selector));
    (selected >= threshold && selected * 4 >= entries).then_some(selected)
}

/// An IMMEDIATE invalidation in steps: the entries read as missing at once (a mark, as LAZY);
/// the client is blocked until the reclaimer deleted them, then gets the number deleted.
pub fn invalidate_stepped(
    ctx: &Context,
    db: usize,
    selector: Selector,
    selected: u64,
    depth: Option<u32>,
    context: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
) -> bool {
    let Some(client) = Blocked::block(ctx) else {
        return false;
    };
    let noted = Noted::of(&selector, context.as_deref(), user.as_deref());
    let gen = mark(ctx, db, selector, selected, depth, context, user);
    waiters().push(Waiter {
        client,
        db,
        gen,
        deleted: 0,
        noted,
    });
    true
}

/// The reclaimer deleted `n` entries in `db`; a walk that covered marks up to `upto` ended
/// (`None`: the walk goes on). Replies to the invalidations it finished.
fn progress(ctx: &Context, db: usize, n: u64, done_upto: Option<u64>) {
    let finished: Vec<Waiter> = {
        let mut w = waiters();
        for x in w.iter_mut().filter(|x| x.db == db) {
            x.deleted += n;
        }
        match done_upto {
            Some(upto) => {
                let (done, rest): (Vec<Waiter>, Vec<Waiter>) =
                    w.drain(..).partition(|x| x.db == db && x.gen <= upto);
                *w = rest;
                done
            }
            None => Vec::new(),
        }
    };
    for x in finished {
        x.noted.record(ctx, x.deleted, Strategy::Immediate);
        let n = i64::try_from(x.deleted).unwrap_or(i64::MAX);
        x.client.answer(Ok(server::Reply::Int(n)));
    }
}

/// SWAPDB: the waiters follow their marks.
pub fn swap_waiters(a: usize, b: usize) {
    for x in waiters().iter_mut() {
        if x.db == a {
            x.db = b;
        } else if x.db == b {
            x.db = a;
        }
    }
}

/// Marks are gone without a walk (FLUSHALL, a database dropped), or this server became a
/// replica: the waiters there get what was deleted so far.
pub fn release_waiters(ctx: &Context, db: Option<usize>) {
    let mut gone: Vec<usize> = waiters()
        .iter()
        .filter(|x| db.is_none_or(|d| d == x.db))
        .map(|x| x.db)
        .collect();
    // Each database once: one pass releases every waiter there.
    gone.sort_unstable();
    gone.dedup();
    for d in gone {
        progress(ctx, d, 0, Some(u64::MAX));
    }
}

/// A mark from the master or the AOF (`CACHE.PENDING MARK`).
pub fn add_replayed(db: usize, mark: Mark) {
    state::raise_generation(mark.gen);
    state::lock().lazy_mut(|l| l.db(db).add(mark));
}

/// The master finished the marks of `db` up to `upto` (`CACHE.PENDING RECLAIMED`).
pub fn finish_replayed(db: usize, upto: u64) -> usize {
    state::lock().lazy_mut(|l| l.db(db).finish(upto))
}

/// `CACHE.DEBUG RECLAIM PAUSE`: the timer-driven reclaimer takes no step until resumed (tests
/// drive it with `CACHE.DEBUG RECLAIM STEP`). Node-local, not persisted.
static PAUSED: AtomicBool = AtomicBool::new(false);

/// `CACHE.DEBUG RECLAIM PAUSE|RESUME`.
pub fn pause(ctx: &Context, paused: bool) {
    PAUSED.store(paused, Ordering::Relaxed);
    if !paused {
        arm(ctx);
    }
}

/// `CACHE.DEBUG RECLAIM STEP [keys]`: one step now (at most `keys` entries looked at); returns
/// the entries it deleted.
pub fn step_now(ctx: &Context, keys: Option<usize>) -> u64 {
    step(ctx, keys.unwrap_or(usize::MAX))
}

/// Sets the reclaimer's timer when there is work, on a master.
pub fn arm(ctx: &Context) {
    if !state::lazy_active() || server::is_replica(ctx) || PAUSED.load(Ordering::Relaxed) {
        return;
    }
    {
        let mut st = state::lock();
        if st.reclaim_timer {
            return;
        }
        st.reclaim_timer = true;
    }
    // While writes are paused the step does nothing: look again less often. A client waiting
    // for a stepped invalidation: the next step as soon as the event loop served the others.
    let ms = if server::writes_paused() {
        10
    } else if waiters().is_empty() {
        1
    } else {
        0
    };
    ctx.create_timer(Duration::from_millis(ms), on_timer, ());
}

fn on_timer(ctx: &Context, _: ()) {
    let outcome = crate::error::catch(|| {
        state::lock().reclaim_timer = false;
        if !PAUSED.load(Ordering::Relaxed) {
            step(ctx, usize::MAX);
        }
        rearm(ctx);
    });
    if let Err(why) = outcome {
        state::lock().reclaim_timer = false;
        ctx.log_warning(&format!("tagcache: a LAZY reclaimer step failed: {why}"));
    }
}

/// After a step. A client waiting for a stepped invalidation gets the next step as soon as the
/// event loop has served the other clients: a timer armed from inside a timer callback waits at
/// least a millisecond (half of a default 2 ms step), so it is armed from a one-shot event of the
/// event loop instead, where a 0 ms timer runs in the next iteration.
fn rearm(ctx: &Context) {
    if !waiters().is_empty() && !server::writes_paused() && !server::is_replica(ctx) {
        {
            let mut st = state::lock();
            if st.reclaim_timer {
                return;
            }
            st.reclaim_timer = true;
        }
        if server::soon(crate::ffi::reclaim_soon) {
            return;
        }
        state::lock().reclaim_timer = false;
    }
    arm(ctx);
}

/// The one-shot event `rearm` asked for.
pub fn armed_soon(ctx: &Context) {
    state::lock().reclaim_timer = false;
    arm(ctx);
}

/// How many keys a step takes from the index at a time.
const CHUNK: usize = 4;

/// One reclaimer step: goes on with the walk of the first database that has marks for about
/// `cache.lazy-step-us` (and at most `limit` entries), deleting what the marks cover like DEL
/// would; at the end of a walk its marks are done. Returns the entries it deleted.
fn step(ctx: &Context, limit: usize) -> u64 {
    if server::is_replica(ctx) {
        release_waiters(ctx, None);
        return 0;
    }
    if server::writes_paused() {
        return 0;
    }
    let started = Instant::now();
    // A client waiting for a stepped invalidation: longer steps (less overhead per key).
    let us = if waiters().is_empty() {
        config::LAZY_STEP_US.get()
    } else {
        config::STEPPED_STEP_US.get()
    };
    let budget = Duration::from_micros(us.max(1) as u64);
    let Some((db, upto, mut cursor)) = ({
        let mut st = state::lock();
        let db = st.lazy().busy().map(|(db, _)| db).next();
        db.map(|db| {
            st.lazy_mut(|l| {
                let w = l.db(db).walk();
                (db, w.upto, w.cursor)
            })
        })
    }) else {
        return 0;
    };
    let original = server::selected_db(ctx);
    if !server::select_db(ctx, db) {
        // A database this server does not have (marks loaded with other settings).
        state::lock().lazy_mut(|l| l.clear(Some(db)));
        release_waiters(ctx, Some(db));
        return 0;
    }
    let marks = state::lock().lazy().marks(db).unwrap_or_default();
    let mut graph = ServerGraph::new(ctx, db);
    // The deleted keys' strings, kept for the DEL that propagates them.
    let mut deleted: Vec<RedisString> = Vec::new();
    let mut chunk = PackedNames::default();
    let mut done = false;
    let mut looked = 0usize;
    while started.elapsed() < budget && looked < limit {
        match cursor {
            Some(c) => {
                let n = CHUNK.min(limit - looked);
                cursor = state::with_db(db, |idx| idx.keys_from(c, n, &mut chunk));
            }
            None => {
                let recheck = state::lock().lazy_mut(|l| {
                    l.db(db)
                        .walk
                        .as_mut()
                        .map(|w| std::mem::take(&mut w.recheck))
                        .unwrap_or_default()
                });
                if recheck.is_empty() {
                    done = true;
                    break;
                }
                chunk.clear();
                for name in &recheck {
                    chunk.push(name);
                }
            }
        }
        looked += chunk.len().max(1);
        for name in chunk.iter() {
            if let Some(rs) = reclaim_one(ctx, db, name, &marks, &mut graph) {
                deleted.push(rs);
            }
        }
    }
    for part in deleted.chunks(crate::commands::DEL_CHUNK) {
        server::replicate_strings(ctx, c"DEL", part);
    }
    progress(ctx, db, deleted.len() as u64, done.then_some(upto));
    if done {
        state::lock().lazy_mut(|l| l.db(db).finish(upto));
        server::replicate(
            ctx,
            "CACHE.PENDING",
            &[
                b"RECLAIMED",
                db.to_string().as_bytes(),
                upto.to_string().as_bytes(),
            ],
        );
    }
    server::select_db(ctx, original);
    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    state::lock().lazy_mut(|l| {
        if !done {
            if let Some(w) = &mut l.db(db).walk {
                w.cursor = cursor;
            }
        }
        l.stats.reclaimed += deleted.len() as u64;
        l.stats.steps += 1;
        l.stats.walks += u64::from(done);
        l.stats.max_step_us = l.stats.max_step_us.max(us);
    });
    server::latency_sample(ctx, "cache-reclaim", us / 1000);
    deleted.len() as u64
}

/// Deletes the entry `name` if a mark covers it; returns its string when it did.
fn reclaim_one(
    ctx: &Context,
    db: usize,
    name: &[u8],
    marks: &[Mark],
    graph: &mut ServerGraph,
) -> Option<RedisString> {
    let rs = graph.string(name).safe_clone(ctx);
    let key = Key::write(ctx, &rs);
    let covered = match key.held() {
        Held::Entry(e) => {
            marks.last().is_some_and(|m| m.gen > e.born())
                && lazy::covering(marks, name, e, graph).is_some()
        }
        _ => false,
    };
    if !covered {
        return None;
    }
    crate::commands::delete_as_del(ctx, db, name, key, &rs);
    Some(rs)
}
