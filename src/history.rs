//! The stale-set guard in the server (see `core::history`): `CACHE.TOKEN`, the check of
//! `CACHE.SET ... GUARD`, and what every invalidation records.
//!
//! The history is node-local and never persisted nor replicated: a token is only good on the
//! node, in the epoch, that made it. A new epoch starts when the module loads, when data is
//! loaded (restart, `DEBUG RELOAD`, full sync) and when the node becomes a master, so a restarted
//! node or a promoted replica refuses every older token: more conservative, never wrong. Behind
//! its own lock, never held while calling into the server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use redis_module::{Context, RedisString};

use crate::config;
use crate::core::history::History;
use crate::core::index::Selector;
use crate::core::metrics::Field;
use crate::core::parse;
use crate::error::Result;
use crate::reclaim;
use crate::server::{self, Access, Held, Key, Reply};

static HISTORY: Mutex<Option<History>> = Mutex::new(None);

/// A seed for a new epoch: the clock and the process, mixed.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64's finaliser: neighbouring seeds give unrelated epochs.
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Guard(MutexGuard<'static, Option<History>>);

impl Guard {
    fn get(&mut self) -> &mut History {
        self.0.get_or_insert_with(|| History::new(seed()))
    }
}

fn history() -> Guard {
    Guard(HISTORY.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Facts past the window one call drops at most (about a millisecond): after a large
/// invalidation leaves the window, its facts go over several calls instead of in one stall.
/// Facts past the byte bound always go at once (as many as the call added).
const TRIM_BUDGET: usize = 20_000;

/// The history within its bounds at `now` (Unix ms, read before the lock is taken), facts past
/// the window at most `TRIM_BUDGET` of them.
fn trimmed(h: &mut History, now: i64) -> usize {
    let window = config::GUARD_WINDOW_MS.get();
    // Over maxmemory the history holds nothing: tokens from before are refused (safe), and
    // invalidations keep freeing memory instead of adding facts.
    let bytes = if server::over_maxmemory() {
        0
    } else {
        u64::try_from(config::GUARD_MAX_BYTES.get()).unwrap_or(0)
    };
    h.trim(now, window, bytes, TRIM_BUDGET)
}

/// On the server's cron (`hz` times a second): the facts past the window go even when no
/// invalidation or guarded write comes, and the tables give their room back once mostly
/// empty, so the memory of a large invalidation returns after the window.
pub fn tidy() {
    let now = server::now_ms();
    let mut g = history();
    let Some(h) = g.0.as_mut() else {
        return;
    };
    if h.is_empty() && h.heap_bytes() == 0 {
        return;
    }
    trimmed(h, now);
    h.shrink();
}

/// `CACHE.TOKEN [key]` -> the token now.
pub(crate) fn cache_token(_ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    parse::parse_token(argv)?;
    Ok(Reply::Int(token()))
}

pub fn token() -> i64 {
    history().get().token()
}

/// A new invalidation begins in `db` with `selector`, by `user` (the ACL user whose rights it
/// has; None: no user): its sequence number, the selector recorded.
pub fn begin(db: usize, selector: &Selector, user: Option<&[u8]>) -> u64 {
    let (now, seed) = (server::now_ms(), seed());
    let mut g = history();
    let h = g.get();
    trimmed(h, now);
    let seq = h.begin(seed);
    h.selected(db, seq, selector, user, now);
    seq
}

/// The invalidation `seq` (by `user`) removed these entries of `db`, each with cascade hops
/// left after it: an entry depending on one of them that the user may delete would have been
/// reached.
pub fn removed<'a>(
    db: usize,
    seq: u64,
    user: Option<&[u8]>,
    keys: impl IntoIterator<Item = &'a [u8]>,
) {
    let now = server::now_ms();
    let mut g = history();
    let h = g.get();
    for k in keys {
        h.removed(db, seq, k, user, now);
    }
    // Within the bounds after a large invalidation too.
    trimmed(h, now);
}

/// The users' rights may have changed (ACL SETUSER, DELUSER, LOAD, seen by the command
/// filter): the facts recorded so far refuse by their selectors alone from now on.
pub fn acl_changed() {
    history().get().acl_changed();
}

/// Transactions seen open (MULTI, until an EXEC or DISCARD): clients are not told apart, so the
/// count errs toward more, which only makes the guard refuse more.
static OPEN_MULTIS: AtomicU64 = AtomicU64::new(0);
/// An ACL change was seen while a transaction was open: from then on every EXEC may run one.
static ACL_QUEUED: AtomicBool = AtomicBool::new(false);
/// An EXEC that may have run an ACL change was seen: the next command counts it as done.
static AFTER_EXEC: AtomicBool = AtomicBool::new(false);

/// The command filter saw `ACL <sub>`: a change of users' rights (SETUSER, DELUSER, LOAD) counts
/// from now on, and, seen inside a transaction, again at every EXEC from then on (the filter
/// does not tell the clients apart).
pub fn acl_seen(sub: &[u8]) {
    const CHANGES: [&[u8]; 3] = [b"setuser", b"deluser", b"load"];
    if CHANGES.iter().any(|c| sub.eq_ignore_ascii_case(c)) {
        acl_changed();
        if OPEN_MULTIS.load(Ordering::Relaxed) > 0 {
            ACL_QUEUED.store(true, Ordering::Relaxed);
        }
    }
}

/// The command filter saw `MULTI` (`open`), or `EXEC` or `DISCARD`. An EXEC that may run an ACL
/// change counts as one, before and once it ran (at the next command).
pub fn multi_seen(open: bool) {
    if open {
        OPEN_MULTIS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if ACL_QUEUED.load(Ordering::Relaxed) {
        acl_changed();
        AFTER_EXEC.store(true, Ordering::Relaxed);
    }
    let _ = OPEN_MULTIS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        Some(n.saturating_sub(1))
    });
}

/// Any command the filter sees: one after an EXEC that may have changed users' rights.
pub fn command_seen() {
    if AFTER_EXEC.load(Ordering::Relaxed) && AFTER_EXEC.swap(false, Ordering::Relaxed) {
        acl_changed();
    }
}

/// Whether the users' rights now are what they were at invalidation `seq`: no ACL change was
/// seen since it.
pub fn trusted(seq: u64) -> bool {
    history().get().trusted(seq)
}

/// Every token made so far is refused from now on (loading, a new master).
pub fn new_epoch() {
    let seed = seed();
    history().get().new_epoch(seed);
}

/// SWAPDB: the histories follow their data.
pub fn swap(a: usize, b: usize) {
    history().get().swap(a, b);
}

/// `CACHE.SET key ... GUARD token` in `db`: whether the entry may be stored. A dependency that
/// still holds an entry covered by a LAZY mark made since the token refuses it too (the mark's
/// cascade goes on from it). A restricted user's invalidation refuses only what that user may
/// delete: the users are asked with the history unlocked (a first pass finds which), then the
/// check runs again with their answers. Counted.
pub fn check<'a>(
    ctx: &Context,
    db: usize,
    token: i64,
    key: &[u8],
    tags: &[&'a [u8]],
    deps: &[&'a [u8]],
) -> bool {
    {
        // The usual case: a fresh token, nothing recorded in this database since (no clock
        // read for it).
        let mut g = history();
        let h = g.get();
        if h.quiet_since(db, token) {
            h.stats.count(&Ok(()));
            return true;
        }
    }
    let now = server::now_ms();
    // Opening keys calls into the server: what the marks say is asked before the lock.
    let covered: Vec<Option<u64>> = if crate::state::lazy_active() {
        deps.iter()
            .map(|d| {
                let k = Key::probe(ctx, &server::string(ctx, d));
                match k.held() {
                    Held::Entry(e) => reclaim::covering_seq(ctx, db, d, e, key),
                    _ => None,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let covered_of = |d: &[u8]| {
        deps.iter()
            .position(|x| *x == d)
            .and_then(|i| covered.get(i).copied().flatten())
    };
    // One pass of the check over the history trimmed now; `may` answers for restricted users.
    let pass = |h: &mut History, may: &mut dyn FnMut(&[u8], &[u8]) -> bool| {
        trimmed(h, now);
        h.check(
            db,
            token,
            key,
            tags.iter().copied(),
            deps.iter().copied(),
            &covered_of,
            may,
        )
    };
    // First pass: every restricted user's fact counts as not selecting; the users that would
    // have to be asked are noted.
    let mut asked: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    {
        let mut g = history();
        let h = g.get();
        let verdict = pass(h, &mut |u, name| {
            if !asked.iter().any(|(au, an)| au == u && an == name) {
                asked.push((u.to_vec(), name.to_vec()));
            }
            false
        });
        if verdict.is_err() || asked.is_empty() {
            h.stats.count(&verdict);
            return verdict.is_ok();
        }
    }
    // The users' rights, asked with the history unlocked. A user this node does not know any
    // more (deleted) is taken to have deleted the key: refused.
    let answers: Vec<(Vec<u8>, Vec<u8>, bool)> = asked
        .into_iter()
        .map(|(u, name)| {
            let may = Access::of_user(ctx, &u)
                .is_none_or(|a| a.allows(&server::string(ctx, &name), true));
            (u, name, may)
        })
        .collect();
    let mut g = history();
    let verdict = pass(g.get(), &mut |u, name| {
        // A fact recorded meanwhile, of a user not asked: refused (never a wrong accept).
        answers
            .iter()
            .find(|(au, an, _)| au == u && an == name)
            .is_none_or(|(_, _, may)| *may)
    });
    let h = g.get();
    h.stats.count(&verdict);
    verdict.is_ok()
}

/// `CACHE.RESET`: zeroes the counters (the history stays).
pub fn reset() {
    history().get().stats = Default::default();
}

/// The heap the history takes, its tables' spare room included (STATS `memory`).
pub fn heap_bytes() -> u64 {
    history().get().heap_bytes()
}

/// The `guard` section of CACHE.STATS.
pub fn stats_section() -> (&'static str, Field) {
    let mut g = history();
    let h = g.get();
    let st = &h.stats;
    let top = match st.top() {
        Some((kind, name, n)) => Field::Map(vec![
            ("type".into(), Field::Str(kind.into())),
            (
                "name".into(),
                Field::Str(String::from_utf8_lossy(name).into_owned()),
            ),
            ("refused".into(), Field::uint(n)),
        ]),
        None => Field::Map(Vec::new()),
    };
    (
        "guard",
        Field::Map(vec![
            ("accepted".into(), Field::uint(st.accepted)),
            ("refused".into(), Field::uint(st.refused)),
            (
                "refused_unknown_token".into(),
                Field::uint(st.refused_unknown),
            ),
            ("history_facts".into(), Field::uint(h.len() as u64)),
            ("history_bytes".into(), Field::uint(h.bytes())),
            ("top_refusal".into(), top),
        ]),
    )
}

/// CACHE.RECOMMEND's advice on refused guarded writes.
pub fn advice() -> Vec<crate::core::metrics::Recommendation> {
    history().get().stats.advice()
}

/// The refusal counts, for INFO and advice: (accepted, refused, the top refusal).
pub fn figures() -> (u64, u64, Option<(&'static str, String, u64)>) {
    let mut g = history();
    let st = &g.get().stats;
    let top = st
        .top()
        .map(|(k, n, c)| (k, String::from_utf8_lossy(n).into_owned(), c));
    (st.accepted, st.refused, top)
}
