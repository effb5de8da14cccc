//! Every strategy means what IMMEDIATE means (issue 21, DESIGN.md "What every strategy
//! promises"): a seeded differential test, sibling of `tests/workload.rs`.
//!
//! Random steps over a small name pool (8 keys in 3 namespaces, 8 tags, 2 rows, 2 databases):
//! CACHE.SET with tags and dependencies on rows and on other entries' keys (written in any order,
//! NX/XX, KEEPTTL, long TTLs, `PX 1` that runs out at once, `PXAT` in the past), CACHE.TAG/DEPEND,
//! DEL/UNLINK, RENAME, COPY (also `DB`), MOVE, SWAPDB, FLUSHDB/FLUSHALL, PEXPIRE 1 / PEXPIREAT in
//! the past / long PEXPIRE, plain SET, DEBUG RELOAD; CACHE.INVALIDATE with every selector and
//! DEPTH under IMMEDIATE, LAZY, SOFT, BATCHED (`CACHE.PENDING FLUSH` at random points) and a
//! stepped IMMEDIATE (`cache.stepped-threshold 1`, its client blocked on another thread while
//! other steps run); CACHE.WRITE through three rules (IMMEDIATE, LAZY, BATCHED); two users
//! (`default` and `app`, restricted to `~a:*`); WATCH/MULTI/EXEC probes; and the LAZY reclaimer
//! driven by `CACHE.DEBUG RECLAIM STEP [k]` (paused otherwise) at random points, sometimes a few
//! keys of a walk, sometimes until every mark is done. Besides single steps, nine short
//! scenarios (`SCENARIOS`: the shape of each of issue 21's defects, with random names) each start
//! at any step with probability 1/400.
//!
//! **The model** applies every invalidation as IMMEDIATE at the moment it is sent (BATCHED when
//! `CACHE.PENDING FLUSH` applies it, with its user's rights, on the database it was queued for,
//! following SWAPDB). The cascade is DESIGN.md's: the selected entries, then up to DEPTH hops the
//! entries depending on an invalidated key; an entry the user may not delete is skipped and the
//! cascade does not pass through it. Expiry, DEL and overwrites are not invalidations. What the
//! model keeps of an entry the server still holds but IMMEDIATE would have deleted:
//! - *covered* (LAZY, stepped IMMEDIATE): gone for every cache command; plain commands (EXISTS,
//!   DEL, RENAME, COPY, MOVE, PEXPIRE) still see the key until the reclaimer deletes it, and a
//!   copy or a new name stays covered. After every reclaimer step the model asks EXISTS which
//!   covered keys are gone (and checks they add up to the step's reply); once no mark is left,
//!   a covered key still there is a divergence.
//! - *stale* (SOFT): a miss for CACHE.GET/MGET/TAG/DEPEND and the NX/XX conditions, served by
//!   CACHE.FETCH as `refresh`/`stale`; as README says, CACHE.KEYS lists it and invalidations
//!   select it (and cascade through it).
//!
//! Expiry is kept deterministic: `DEBUG SET-ACTIVE-EXPIRE 0`, and every deadline is either long
//! (a day), in the past, or 1 ms followed by a 4 ms sleep (the key is then expired for the model,
//! and for the server at its next access). The BATCHED timer never fires on its own: the delay is
//! 5000 ms and the generator flushes the queue within 60 steps of the oldest request.
//!
//! **Checked after every step**, in both databases, in a random order: CACHE.MGET of every key
//! (in a random order) against the model's fresh entries; `CACHE.KEYS DEPTH 0 ALL`; CACHE.FETCH
//! of every key (fresh: `hit`; stale: the value with `refresh`/`stale`; else `miss`/`wait`); the
//! BATCHED queue (`CACHE.PENDING`: database, selector, depth); one random CACHE.KEYS selector as
//! a random user. Every reply is checked as it comes (INVALIDATE counts exactly for IMMEDIATE,
//! SOFT, FLUSH and a stepped IMMEDIATE; within the documented bounds for LAZY). Every 40 steps
//! and at the end: `CACHE.DEBUG VERIFY` empty, CACHE.TAGS, CACHE.KEYS of every tag at DEPTH 0
//! and the default depth for both users, CACHE.INSPECT of every key.
//!
//! **The stale-set guard** (issue 25): CACHE.TOKEN and CACHE.FETCH key WITHTOKEN take tokens;
//! a fifth of CACHE.SETs carry `GUARD` with the last token, an older one, or a made-up one, and
//! a scenario (`stale-set`) lines up the race. The model logs every invalidation as IMMEDIATE
//! applied it (selector, user, the keys removed with their hop; BATCHED when applied, SOFT,
//! LAZY and stepped at the command, rule steps) and refuses (nil, check `guard`) exactly when
//! one since the token would select the new entry: the selector picks it, or it depends on a
//! key removed at a hop below the depth; only if the user may delete the key. NX/XX first;
//! tokens from before DEBUG RELOAD and made-up ones are refused.
//!
//! **Runs.** CI: `TAGCACHE_STRATEGY_SEEDS` seeds (default 16) × `TAGCACHE_STRATEGY_STEPS` steps
//! (default 700) per test, two tests (default depth, and `max-cascade-depth 2`), about 2.5 ms a
//! step on a debug build. Long mode: `TAGCACHE_STRATEGY_SECONDS=n` runs seeds until n seconds
//! passed; `TAGCACHE_SEED=n` replays one seed; `TAGCACHE_STRATEGY_FIRST_SEED` moves the seed
//! range; `TAGCACHE_STRATEGY_KEEP_GOING=1` reports every diverging seed instead of stopping at
//! the first; `TAGCACHE_STRATEGY_SHRINK=s` bounds the time spent shrinking a divergence to a
//! minimal reproduction (default 30 s, 0: none); `TAGCACHE_STRATEGY_SKIP=tags,inspect,fetch,
//! pending,watch,keys` turns checks off; `TAGCACHE_STRATEGY_FOCUS=<scenario>|all` raises the
//! weight of the scenarios (`SCENARIOS`); `TAGCACHE_STRATEGY_WITHOUT=<kind>,...` never draws
//! those kinds of steps (`Op::kind`, e.g. `SWAPDB,INVALIDATE BATCHED`);
//! `TAGCACHE_STRATEGY_STRICT_SOFT=1` takes a SOFT-stale entry out of CACHE.KEYS and the
//! selections too. `scripts/model.sh` runs the long mode on chosen servers. A divergence reports
//! the seed, the step, the step's commands, the keys that differ with the model's account of each
//! ("covered, was "v3" (s4 STRATEGY LAZY TAG t2)"), the commands before it, and a shrunk
//! reproduction (steps removed while the replay still fails the same check).
//!
//! **What it finds on main at 3c4000b** (before any fix), the default-depth test with the default
//! weights (seeds 1..40, every one diverges by step 143; the same seeds and steps on redis-7.0,
//! redis-8.2, valkey-8.1 and valkey-9.1), and with `TAGCACHE_STRATEGY_FOCUS=<scenario>`. The
//! shrunk reproductions are in docs/MODEL.md.
//!
//! | issue 21 defect | default: seed, step, check | FOCUS=scenario: seed, step |
//! | --- | --- | --- |
//! | 1 LAZY cascade brings an entry back | 1, 27, covered (also 40, 12) | cascade-order: 1, 22 |
//! | 2 RENAME/COPY into a pending mark | 8, 3, keys (RENAME; COPY: 20, 5, fetch) | into-a-mark: 1, 9 |
//! | 3 past deadline over a SOFT-stale entry | 14, 29, keys | past-over-stale: 1, 6 |
//! | 4 BATCHED folds users | 2, 10, reply (FLUSH count) | batched-users: 1, 12 |
//! | 5 BATCHED stays on its db across SWAPDB | 3, 2, pending | batched-swapdb: 1, 13 |
//! | 6 LAZY does not trigger WATCH | 21, 80, watch (stepped IMMEDIATE: 1027, 27) | watch-lazy: 1, 9 |
//! | 7 a later LAZY mark over-invalidates | 4, 23, mget | second-mark: 1, 6 |
//! | 8 a covered dependent reads as a hit | 9, 23, fetch (also 27, 12) | expire-covered: 4, 9 |
//! | 9 defect 1 through an expiry | 22, 84, covered | expire-chain: 1, 24 |
//!
//! Beyond the nine (docs/MODEL.md): a covered entry renamed or copied onto a name other entries
//! depend on takes them with it (`TAGCACHE_STRATEGY_WITHOUT=SWAPDB`, seed 24, step 127);
//! CACHE.TAGS counts covered entries and CACHE.INSPECT lists them as `dependents` (seed 1072,
//! step 40); `CACHE.SET ... PXAT <past>` over a LAZY-covered entry leaves the key (seed 1020,
//! step 165, the reclaimer deletes it later).

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

const KEYS: [&str; 8] = ["a:1", "a:2", "a:3", "b:1", "b:2", "b:3", "c:1", "c:2"];
const TAGS: [&str; 8] = [
    "t1",
    "t2",
    "t3",
    "user:1",
    "user:2",
    "listing",
    "profile:1",
    "feed",
];
const ROWS: [&str; 2] = ["row:1", "row:2"];
const PATTERNS: [&str; 10] = [
    "a:*", "b:*", "*:1", "?:2", "[ab]:1", "*", "c:?", "*:[23]", "b:[^1]", "*3",
];
const NAMESPACES: [&str; 4] = ["a", "b", "c", "row"];
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
/// Steps the oldest BATCHED request may wait before the generator flushes the queue: well inside
/// `cache.batch-delay-ms` 5000, so the server's timer never applies a request on its own.
const FLUSH_WITHIN: usize = 60;
const CHECKPOINT_EVERY: usize = 40;
/// The restricted user: may touch `a:*` only.
const APP: &str = "app";
const APP_PATTERN: &str = "~a:*";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum User {
    Default,
    App,
}

impl User {
    fn may_delete(self, key: &str) -> bool {
        self == User::Default || key.starts_with("a:")
    }

    fn who(self) -> Who {
        match self {
            User::Default => Who::Main,
            User::App => Who::App,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            User::Default => "",
            User::App => "[app] ",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Selector {
    Keys(Vec<String>),
    Tags(Vec<String>),
    Pattern(String),
    Namespace(String),
    All,
    Dependents(Vec<String>),
}

impl Selector {
    fn args(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        match self {
            Selector::Keys(k) => {
                v.push("KEY".into());
                v.extend(k.iter().cloned());
            }
            Selector::Tags(t) => {
                v.push("TAG".into());
                v.extend(t.iter().cloned());
            }
            Selector::Pattern(p) => v.extend(["PATTERN".into(), p.clone()]),
            Selector::Namespace(n) => v.extend(["NAMESPACE".into(), n.clone()]),
            Selector::All => v.push("ALL".into()),
            Selector::Dependents(r) => {
                v.push("DEPENDENTS".into());
                v.extend(r.iter().cloned());
            }
        }
        v
    }

    /// As CACHE.PENDING lists it: the type and the sorted arguments.
    fn listed(&self) -> (String, Vec<String>) {
        let (kind, mut words) = match self {
            Selector::Keys(k) => ("key", k.clone()),
            Selector::Tags(t) => ("tag", t.clone()),
            Selector::Pattern(p) => ("pattern", vec![p.clone()]),
            Selector::Namespace(n) => ("namespace", vec![n.clone()]),
            Selector::All => ("all", vec![]),
            Selector::Dependents(r) => ("dependents", r.clone()),
        };
        words.sort();
        words.dedup();
        (kind.to_string(), words)
    }

    fn picks(&self, key: &str, e: &Entry) -> bool {
        match self {
            Selector::Keys(keys) => keys.iter().any(|k| k == key),
            Selector::Tags(t) => t.iter().any(|t| e.tags.contains(t)),
            Selector::Pattern(p) => glob(p.as_bytes(), key.as_bytes()),
            Selector::Namespace(ns) => key.starts_with(&format!("{ns}:")),
            Selector::All => true,
            Selector::Dependents(r) => r.iter().any(|r| e.deps.contains(r)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    /// No STRATEGY option: IMMEDIATE.
    Unnamed,
    Immediate,
    Lazy,
    /// GRACE seconds, or the configured default (a run never outlives either).
    Soft(Option<u64>),
    Batched,
}

impl Strategy {
    fn args(self) -> Vec<String> {
        let v: Vec<&str> = match self {
            Strategy::Unnamed => vec![],
            Strategy::Immediate => vec!["STRATEGY", "IMMEDIATE"],
            Strategy::Lazy => vec!["STRATEGY", "LAZY"],
            Strategy::Soft(None) => vec!["STRATEGY", "SOFT"],
            Strategy::Soft(Some(_)) => vec!["STRATEGY", "SOFT", "GRACE"],
            Strategy::Batched => vec!["STRATEGY", "BATCHED"],
        };
        let mut v: Vec<String> = v.into_iter().map(String::from).collect();
        if let Strategy::Soft(Some(g)) = self {
            v.push(g.to_string());
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Fresh,
    /// SOFT: a miss for plain reads, served stale by CACHE.FETCH, still selected.
    Stale,
    /// LAZY or a stepped IMMEDIATE: deleted for IMMEDIATE; the server still holds the key until
    /// its reclaimer deletes it.
    Covered,
}

#[derive(Clone, Debug)]
struct Entry {
    value: String,
    tags: BTreeSet<String>,
    deps: BTreeSet<String>,
    life: Life,
    /// What made it what it is (for failure messages): "s12 CACHE.SET", "s40 LAZY TAG t1".
    why: String,
}

#[derive(Clone, Debug)]
enum Val {
    Entry(Entry),
    Plain(String),
}

#[derive(Clone, Debug, Default)]
struct Db {
    keys: BTreeMap<String, Val>,
    /// Entries whose 1 ms TTL ran out since the last reads: the server may still hold them
    /// (it removes them at their next access), so a LAZY count may include them.
    limbo: BTreeMap<String, Entry>,
    /// Why each absent key left (failure messages).
    gone: BTreeMap<String, String>,
}

impl Db {
    fn put(&mut self, k: &str, v: Val) {
        self.keys.insert(k.to_string(), v);
        self.gone.remove(k);
        self.limbo.remove(k);
    }

    fn take(&mut self, k: &str, why: &str) -> Option<Val> {
        self.limbo.remove(k);
        let v = self.keys.remove(k);
        if v.is_some() {
            self.gone.insert(k.to_string(), why.to_string());
        }
        v
    }

    /// The key's TTL ran out: gone, but possibly still held by the server until touched.
    fn expire(&mut self, k: &str, why: &str) {
        if let Some(Val::Entry(e)) = self.take(k, why) {
            self.limbo.insert(k.to_string(), e);
        }
    }

    fn entry(&self, k: &str) -> Option<&Entry> {
        match self.keys.get(k) {
            Some(Val::Entry(e)) => Some(e),
            _ => None,
        }
    }

    fn entry_mut(&mut self, k: &str) -> Option<&mut Entry> {
        match self.keys.get_mut(k) {
            Some(Val::Entry(e)) => Some(e),
            _ => None,
        }
    }

    fn fresh(&self, k: &str) -> Option<&Entry> {
        self.entry(k).filter(|e| e.life == Life::Fresh)
    }

    /// The entries invalidations select from: fresh and stale ones (README: CACHE.KEYS lists
    /// a stale entry, IMMEDIATE and LAZY remove it); fresh ones only with
    /// TAGCACHE_STRATEGY_STRICT_SOFT=1 (a SOFT-invalidated entry gone for every command but
    /// CACHE.FETCH, as DESIGN.md's "Reads after the reply are IMMEDIATE's reads" reads).
    fn world(&self) -> impl Iterator<Item = (&String, &Entry)> {
        let strict = strict_soft();
        self.keys.iter().filter_map(move |(k, v)| match v {
            Val::Entry(e) if e.life == Life::Fresh || (e.life == Life::Stale && !strict) => {
                Some((k, e))
            }
            _ => None,
        })
    }

    fn covered(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|(_, v)| matches!(v, Val::Entry(e) if e.life == Life::Covered))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn describe(&self, k: &str) -> String {
        match self.keys.get(k) {
            Some(Val::Plain(v)) => format!("a plain string {v:?}"),
            Some(Val::Entry(e)) => match e.life {
                Life::Fresh => format!("fresh {:?} ({})", e.value, e.why),
                Life::Stale => format!("stale {:?} ({})", e.value, e.why),
                Life::Covered => format!("covered, was {:?} ({})", e.value, e.why),
            },
            None => match self.gone.get(k) {
                Some(why) => format!("absent ({why})"),
                None => "absent (never written)".to_string(),
            },
        }
    }
}

fn strict_soft() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| env_u64("TAGCACHE_STRATEGY_STRICT_SOFT").unwrap_or(0) != 0)
}

/// What an invalidation removes under IMMEDIATE: the selected entries the user may delete, then,
/// up to `depth` hops, every entry the user may delete depending on a key removed in the
/// previous hop. ALL never cascades (it selects every entry).
fn resolve(db: &Db, sel: &Selector, depth: u32, user: User) -> BTreeSet<String> {
    resolve_hops(db, sel, depth, user).into_keys().collect()
}

/// `resolve`, with the hop at which each key is reached (0: the selector picks it).
fn resolve_hops(db: &Db, sel: &Selector, depth: u32, user: User) -> BTreeMap<String, u32> {
    let world: Vec<(&String, &Entry)> = db.world().filter(|(k, _)| user.may_delete(k)).collect();
    let seeds: BTreeSet<String> = world
        .iter()
        .filter(|(k, e)| sel.picks(k, e))
        .map(|(k, _)| (*k).clone())
        .collect();
    let depth = if *sel == Selector::All { 0 } else { depth };
    let mut seen: BTreeMap<String, u32> = seeds.iter().map(|k| (k.clone(), 0)).collect();
    let mut frontier = seeds;
    for hop in 1..=depth {
        if frontier.is_empty() {
            break;
        }
        let next: BTreeSet<String> = world
            .iter()
            .filter(|(k, e)| !seen.contains_key(*k) && e.deps.iter().any(|d| frontier.contains(d)))
            .map(|(k, _)| (*k).clone())
            .collect();
        seen.extend(next.iter().map(|k| (k.clone(), hop)));
        frontier = next;
    }
    seen
}

/// A token taken (CACHE.TOKEN or FETCH WITHTOKEN), as the model knows it.
#[derive(Clone, Debug)]
struct Tok {
    value: i64,
    /// The model's invalidation count when it was taken: later ones are since it.
    seq: u64,
    /// The model's epoch (DEBUG RELOAD starts a new one).
    epoch: u64,
    step: usize,
}

/// An invalidation as IMMEDIATE applied it, for the guard: what it selected and the keys it
/// removed, each with the hop it was reached at (its cascade goes on from it when `hop < depth`).
#[derive(Clone, Debug)]
struct Applied {
    seq: u64,
    /// Follows SWAPDB.
    db: usize,
    sel: Selector,
    user: User,
    depth: u32,
    removed: BTreeMap<String, u32>,
    label: String,
}

impl Applied {
    /// Why it would have selected a new entry `key` with `tags` and `deps`, if it would.
    fn selects(&self, key: &str, tags: &[String], deps: &[String]) -> Option<String> {
        // A restricted user's invalidation selects only what the user may delete (the cascade
        // too: the new entry is the one it would have reached).
        if !self.user.may_delete(key) {
            return None;
        }
        let e = Entry {
            value: String::new(),
            tags: tags.iter().cloned().collect(),
            deps: deps.iter().cloned().collect(),
            life: Life::Fresh,
            why: String::new(),
        };
        if self.sel.picks(key, &e) {
            return Some(format!("{} selects it", self.label));
        }
        deps.iter()
            .find(|d| self.removed.get(*d).is_some_and(|h| *h < self.depth))
            .map(|d| {
                format!(
                    "{} removed its dependency {d} at hop {} of {}",
                    self.label, self.removed[d], self.depth
                )
            })
    }
}

/// A queued BATCHED request, as the model applies it at the flush.
#[derive(Clone, Debug)]
struct Req {
    db: usize,
    sel: Selector,
    depth: Option<u32>,
    user: User,
    step: usize,
    /// When it was queued: the server's timer applies it after 5 s on its own.
    at: Instant,
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Ttl {
    None,
    Long,
    Keep,
    /// `PXAT 1000`: replies OK, removes the previous entry, stores nothing.
    Past,
    /// `PX 1`, then a 4 ms sleep: expired for the model at once.
    Short,
}

/// The token of a guarded CACHE.SET.
#[derive(Clone, Copy, Debug)]
enum Guard {
    /// The n-th newest token taken (0: the last one); made up (12345) when there are fewer.
    Taken(usize),
    /// A token no server made.
    MadeUp(i64),
}

#[derive(Clone, Copy, Debug)]
enum Cond {
    None,
    Nx,
    Xx,
}

#[derive(Clone, Copy, Debug)]
enum Exp {
    /// PEXPIRE 1, then a 4 ms sleep.
    Short,
    /// PEXPIREAT 1000.
    Past,
    /// PEXPIRE of a day.
    Long,
}

#[derive(Clone, Debug)]
struct MSetEntry {
    key: String,
    tags: Option<Vec<String>>,
    deps: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
enum Op {
    Select(usize),
    Set {
        key: String,
        ttl: Ttl,
        cond: Cond,
        tags: Option<Vec<String>>,
        deps: Option<Vec<String>>,
        /// `GUARD token`: one of the tokens taken, or one made up.
        guard: Option<Guard>,
    },
    /// CACHE.MSET with shared TAGS (or none) and entries with their own TAGS and DEPENDS
    /// (None: the shared tags, no dependencies).
    MSet {
        shared: Option<Vec<String>>,
        entries: Vec<MSetEntry>,
    },
    /// CACHE.TOKEN, or CACHE.FETCH key WITHTOKEN: a token for later guarded sets.
    Token {
        fetch: Option<String>,
    },
    Tag {
        key: String,
        tags: Vec<String>,
    },
    Depend {
        key: String,
        res: Vec<String>,
    },
    Del {
        keys: Vec<String>,
        unlink: bool,
    },
    Rename {
        from: String,
        to: String,
    },
    Copy {
        from: String,
        to: String,
        other_db: bool,
        replace: bool,
    },
    Move {
        key: String,
    },
    SwapDb,
    FlushDb,
    FlushAll,
    Expire {
        key: String,
        how: Exp,
    },
    PlainSet {
        key: String,
    },
    Reload,
    Invalidate {
        user: User,
        strategy: Strategy,
        depth: Option<u32>,
        sel: Selector,
        /// CACHE.KEYS with the same arguments first.
        dry: bool,
    },
    /// An IMMEDIATE invalidation run in steps (`cache.stepped-threshold 1`): its client blocks
    /// on another thread while `sub` runs (reads after each), then the reclaimer finishes it.
    Stepped {
        user: User,
        depth: Option<u32>,
        sel: Selector,
        sub: Vec<Op>,
        obs: u64,
    },
    Flush,
    Write {
        user: User,
        id: u32,
        op: Option<&'static str>,
    },
    Reclaim {
        steps: Vec<Option<usize>>,
    },
    ReclaimAll,
    /// WATCH key on another connection, `inner` (an invalidation), then MULTI/EXEC: it must
    /// fail iff IMMEDIATE deleted the key.
    Probe {
        key: String,
        inner: Box<Op>,
    },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Select(_) => "SELECT",
            Op::Set { guard: None, .. } => "CACHE.SET",
            Op::Set { .. } => "CACHE.SET GUARD",
            Op::MSet { .. } => "CACHE.MSET",
            Op::Token { fetch: None } => "CACHE.TOKEN",
            Op::Token { .. } => "CACHE.FETCH WITHTOKEN",
            Op::Tag { .. } => "CACHE.TAG",
            Op::Depend { .. } => "CACHE.DEPEND",
            Op::Del { .. } => "DEL",
            Op::Rename { .. } => "RENAME",
            Op::Copy { .. } => "COPY",
            Op::Move { .. } => "MOVE",
            Op::SwapDb => "SWAPDB",
            Op::FlushDb => "FLUSHDB",
            Op::FlushAll => "FLUSHALL",
            Op::Expire { .. } => "PEXPIRE",
            Op::PlainSet { .. } => "SET",
            Op::Reload => "DEBUG RELOAD",
            Op::Invalidate { strategy, .. } => match strategy {
                Strategy::Unnamed | Strategy::Immediate => "INVALIDATE IMMEDIATE",
                Strategy::Lazy => "INVALIDATE LAZY",
                Strategy::Soft(_) => "INVALIDATE SOFT",
                Strategy::Batched => "INVALIDATE BATCHED",
            },
            Op::Stepped { .. } => "INVALIDATE stepped",
            Op::Flush => "CACHE.PENDING FLUSH",
            Op::Write { .. } => "CACHE.WRITE",
            Op::Reclaim { .. } => "RECLAIM STEP",
            Op::ReclaimAll => "RECLAIM until done",
            Op::Probe { .. } => "WATCH probe",
        }
    }

    /// Whether it may run while a stepped invalidation's client is blocked.
    fn nests(&self) -> bool {
        !matches!(
            self,
            Op::SwapDb
                | Op::FlushDb
                | Op::FlushAll
                | Op::Reload
                | Op::Stepped { .. }
                | Op::Probe { .. }
        )
    }
}

/// A stepped invalidation's blocked client (see `H::waiter`).
#[derive(Clone, Debug)]
struct Waiter {
    db: usize,
    deleted: usize,
    answered: bool,
}

#[derive(Clone, Debug)]
struct Recorded {
    op: Op,
    /// Seeds the order of the reads after the step.
    obs: u64,
    /// A checkpoint after it whatever the step number (the run's last step).
    checkpoint: bool,
}

// ---------------------------------------------------------------------------------------------
// The harness: a server, three connections, the model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Fail {
    kind: &'static str,
    what: String,
}

type R<T = ()> = Result<T, Fail>;

fn fail<T>(kind: &'static str, what: impl Into<String>) -> R<T> {
    Err(Fail {
        kind,
        what: what.into(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Main = 0,
    App = 1,
    Watcher = 2,
}

impl Who {
    fn prefix(self) -> &'static str {
        match self {
            Who::Main => "",
            Who::App => "[app] ",
            Who::Watcher => "[watcher] ",
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Checks {
    tags: bool,
    inspect: bool,
    fetch: bool,
    pending: bool,
    watch: bool,
    keys: bool,
}

impl Checks {
    fn from_env() -> Checks {
        let skip = std::env::var("TAGCACHE_STRATEGY_SKIP").unwrap_or_default();
        let on = |name: &str| !skip.split(',').any(|s| s.trim() == name);
        Checks {
            tags: on("tags"),
            inspect: on("inspect"),
            fetch: on("fetch"),
            pending: on("pending"),
            watch: on("watch"),
            keys: on("keys"),
        }
    }
}

/// A WATCH under way.
#[derive(Clone, Debug)]
struct Watching {
    key: String,
    db: usize,
    prior: Prior,
}

#[derive(Clone, Debug, PartialEq)]
enum Prior {
    Fresh(String),
    Absent,
    Plain,
    /// Stale or covered: the server holds a key IMMEDIATE deleted; an abort is allowed.
    Other,
}

struct H {
    server: Server,
    conns: Vec<Connection>,
    /// The database each connection has selected.
    dbsel: [usize; 3],
    /// The database the steps run in (the main connection's).
    cur: usize,
    dbs: [Db; 2],
    queue: Vec<Req>,
    default_depth: u32,
    step: usize,
    log: Vec<String>,
    writes: u64,
    /// The stepped invalidation whose client is blocked: the covered keys the reclaimer deleted
    /// in its database until it was answered (its count).
    waiter: Option<Waiter>,
    watching: Option<Watching>,
    checks: Checks,
    /// Tokens taken, oldest first (the last `TOKENS_KEPT`).
    tokens: Vec<Tok>,
    /// The invalidations applied in this epoch, oldest first.
    applied: Vec<Applied>,
    /// Invalidations applied so far (the next one's number).
    gseq: u64,
    epoch: u64,
}

const TOKENS_KEPT: usize = 8;

impl H {
    fn new(cfg: &Cfg) -> R<H> {
        let args: Vec<&str> = cfg.module_args.iter().map(String::as_str).collect();
        let server = Server::with(&args, &[]);
        let conns = vec![server.conn(), server.conn(), server.conn()];
        let mut h = H {
            server,
            conns,
            dbsel: [0; 3],
            cur: 0,
            dbs: [Db::default(), Db::default()],
            queue: Vec::new(),
            default_depth: cfg.default_depth,
            step: 0,
            log: Vec::new(),
            writes: 0,
            waiter: None,
            watching: None,
            checks: cfg.checks.clone(),
            tokens: Vec::new(),
            applied: Vec::new(),
            gseq: 0,
            epoch: 0,
        };
        let setup = [
            "DEBUG SET-ACTIVE-EXPIRE 0",
            "CACHE.DEBUG RECLAIM PAUSE",
            "CONFIG SET cache.batch-delay-ms 5000",
            "CONFIG SET cache.stepped-threshold 0",
            "CONFIG SET cache.soft-grace-seconds 1000000",
            "CACHE.RULE SET listing ON user INVALIDATE 1 listing PRIORITY 3",
            "CACHE.RULE SET prof ON user MATCH 1 INVALIDATE 1 profile:{id} STRATEGY LAZY PRIORITY 2",
            "CACHE.RULE SET feed ON user OPS create,delete INVALIDATE 1 feed STRATEGY BATCHED PRIORITY 1",
        ];
        for line in setup {
            h.ok(Who::Main, &words(line))?;
        }
        h.ok(
            Who::Main,
            &words(&format!("ACL SETUSER {APP} on >pw {APP_PATTERN} +@all")),
        )?;
        h.ok(Who::App, &words(&format!("AUTH {APP} pw")))?;
        Ok(h)
    }

    fn call(&mut self, who: Who, parts: &[String]) -> redis::RedisResult<Value> {
        self.log.push(format!(
            "s{} {}{}",
            self.step,
            who.prefix(),
            parts.join(" ")
        ));
        cmd(&mut self.conns[who as usize], parts)
    }

    fn quiet(&mut self, who: Who, parts: &[String]) -> R<Value> {
        cmd(&mut self.conns[who as usize], parts)
            .or_else(|e| fail("error", format!("{} failed: {e}", parts.join(" "))))
    }

    fn ok(&mut self, who: Who, parts: &[String]) -> R<Value> {
        self.call(who, parts).or_else(|e| {
            fail(
                "error",
                format!("{}{} failed: {e}", who.prefix(), parts.join(" ")),
            )
        })
    }

    fn refused(&mut self, who: Who, parts: &[String]) -> R<String> {
        match self.call(who, parts) {
            Ok(v) => fail(
                "reply",
                format!("{} should fail, got {v:?}", parts.join(" ")),
            ),
            Err(e) => Ok(
                format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
                    .trim()
                    .to_string(),
            ),
        }
    }

    fn expect<T: PartialEq + std::fmt::Debug>(&self, got: T, want: T, what: &str) -> R {
        if got != want {
            return fail("reply", format!("{what}: got {got:?}, want {want:?}"));
        }
        Ok(())
    }

    /// The connection `who` on the steps' database.
    fn at(&mut self, who: Who) -> R {
        if self.dbsel[who as usize] != self.cur {
            let cur = self.cur.to_string();
            self.ok(who, &words(&format!("SELECT {cur}")))?;
            self.dbsel[who as usize] = self.cur;
        }
        Ok(())
    }

    fn why(&self, what: impl std::fmt::Display) -> String {
        format!("s{} {what}", self.step)
    }

    fn db(&mut self) -> &mut Db {
        &mut self.dbs[self.cur]
    }

    // -------------------------------------------------------------------- one step

    fn run_step(&mut self, n: usize, rec: &Recorded) -> R {
        self.step = n;
        self.exec(&rec.op)?;
        self.observe(rec.obs)?;
        if n.is_multiple_of(CHECKPOINT_EVERY) || rec.checkpoint {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn exec(&mut self, op: &Op) -> R {
        match op {
            Op::Select(d) => {
                let r = self.ok(Who::Main, &words(&format!("SELECT {d}")))?;
                self.expect(r, Value::Okay, "SELECT")?;
                self.cur = *d;
                self.dbsel[0] = *d;
            }
            Op::Set {
                key,
                ttl,
                cond,
                tags,
                deps,
                guard,
            } => self.cache_set(key, *ttl, *cond, tags.as_deref(), deps.as_deref(), *guard)?,
            Op::MSet { shared, entries } => self.cache_mset(shared.as_deref(), entries)?,
            Op::Token { fetch } => self.take_token(fetch.as_deref())?,
            Op::Tag { key, tags } => self.add_links(key, tags, true)?,
            Op::Depend { key, res } => self.add_links(key, res, false)?,
            Op::Del { keys, unlink } => {
                self.at(Who::Main)?;
                let n = keys
                    .iter()
                    .filter(|k| self.dbs[self.cur].keys.contains_key(*k))
                    .count();
                let mut parts = vec![if *unlink { "UNLINK" } else { "DEL" }.to_string()];
                parts.extend(keys.iter().cloned());
                let r = self.ok(Who::Main, &parts)?;
                self.expect(r, Value::Int(n as i64), "DEL count")?;
                let why = self.why(&parts[0]);
                for k in keys {
                    self.db().take(k, &why);
                }
            }
            Op::Rename { from, to } => {
                let parts = words(&format!("RENAME {from} {to}"));
                let why = self.why(format!("RENAME {from} {to}"));
                match self.db().take(from, &why) {
                    None => {
                        let e = self.refused(Who::Main, &parts)?;
                        self.expect(e.as_str(), "ERR no such key", "RENAME of a missing key")?;
                    }
                    Some(v) => {
                        let r = self.ok(Who::Main, &parts)?;
                        self.expect(r, Value::Okay, "RENAME")?;
                        self.db().put(to, v);
                    }
                }
            }
            Op::Copy {
                from,
                to,
                other_db,
                replace,
            } => {
                let target = if *other_db { 1 - self.cur } else { self.cur };
                let mut parts = words(&format!("COPY {from} {to}"));
                if *other_db {
                    parts.extend(words(&format!("DB {target}")));
                }
                if *replace {
                    parts.push("REPLACE".into());
                }
                let src = self.dbs[self.cur].keys.get(from).cloned();
                let exists = self.dbs[target].keys.contains_key(to);
                let done = src.is_some() && (*replace || !exists);
                let r = self.ok(Who::Main, &parts)?;
                self.expect(r, Value::Int(done as i64), "COPY")?;
                if let (true, Some(v)) = (done, src) {
                    self.dbs[target].put(to, v);
                }
                if *other_db {
                    // Valkey 8.1 may leave the client on the destination (README, "Known
                    // server issues"): select ours again.
                    self.reselect()?;
                }
            }
            Op::Move { key } => {
                let other = 1 - self.cur;
                let moved = self.dbs[self.cur].keys.contains_key(key)
                    && !self.dbs[other].keys.contains_key(key);
                let r = self.ok(Who::Main, &words(&format!("MOVE {key} {other}")))?;
                self.expect(r, Value::Int(moved as i64), "MOVE")?;
                if moved {
                    let why = self.why(format!("MOVE {key} {other}"));
                    let v = self.db().take(key, &why).expect("moved");
                    self.dbs[other].put(key, v);
                }
                self.reselect()?;
            }
            Op::SwapDb => {
                let r = self.ok(Who::Main, &words("SWAPDB 0 1"))?;
                self.expect(r, Value::Okay, "SWAPDB")?;
                self.dbs.swap(0, 1);
                for q in &mut self.queue {
                    q.db = 1 - q.db;
                }
                for a in &mut self.applied {
                    a.db = 1 - a.db;
                }
            }
            Op::FlushDb => {
                let r = self.ok(Who::Main, &words("FLUSHDB"))?;
                self.expect(r, Value::Okay, "FLUSHDB")?;
                let why = self.why("FLUSHDB");
                let cur = self.cur;
                flush(&mut self.dbs[cur], &why);
            }
            Op::FlushAll => {
                let r = self.ok(Who::Main, &words("FLUSHALL"))?;
                self.expect(r, Value::Okay, "FLUSHALL")?;
                let why = self.why("FLUSHALL");
                for db in &mut self.dbs {
                    flush(db, &why);
                }
            }
            Op::Expire { key, how } => {
                let exists = self.dbs[self.cur].keys.contains_key(key);
                let (parts, label) = match how {
                    Exp::Short => (format!("PEXPIRE {key} 1"), "expired (PEXPIRE 1)"),
                    Exp::Past => (format!("PEXPIREAT {key} 1000"), "PEXPIREAT in the past"),
                    Exp::Long => (format!("PEXPIRE {key} 86400000"), ""),
                };
                let r = self.ok(Who::Main, &words(&parts))?;
                self.expect(r, Value::Int(exists as i64), "PEXPIRE")?;
                if exists {
                    let why = self.why(label);
                    match how {
                        Exp::Short => {
                            std::thread::sleep(Duration::from_millis(4));
                            self.db().expire(key, &why);
                        }
                        Exp::Past => {
                            self.db().take(key, &why);
                        }
                        Exp::Long => {}
                    }
                }
            }
            Op::PlainSet { key } => {
                self.writes += 1;
                let v = format!("plain{}", self.writes);
                let r = self.ok(Who::Main, &words(&format!("SET {key} {v}")))?;
                self.expect(r, Value::Okay, "SET")?;
                self.db().put(key, Val::Plain(v));
            }
            Op::Reload => {
                let r = self.ok(Who::Main, &words("DEBUG RELOAD"))?;
                self.expect(r, Value::Okay, "DEBUG RELOAD")?;
                // A new epoch: every token taken so far is refused.
                self.epoch += 1;
                self.applied.clear();
                for db in &mut self.dbs {
                    db.limbo.clear();
                }
                self.sync_covered()?;
            }
            Op::Invalidate {
                user,
                strategy,
                depth,
                sel,
                dry,
            } => self.invalidate(*user, *strategy, *depth, sel, *dry)?,
            Op::Stepped {
                user,
                depth,
                sel,
                sub,
                obs,
            } => self.stepped(*user, *depth, sel, sub, *obs)?,
            Op::Flush => {
                let r = self.ok(Who::Main, &words("CACHE.PENDING FLUSH"))?;
                let mut total = 0;
                let mut applied = Vec::new();
                for q in std::mem::take(&mut self.queue) {
                    let label = format!(
                        "s{} BATCHED {}{} of s{} (applied)",
                        self.step,
                        q.user.prefix(),
                        q.sel.args().join(" "),
                        q.step
                    );
                    self.applied(q.db, &q.sel, q.user, q.depth, label);
                    let want = resolve(
                        &self.dbs[q.db],
                        &q.sel,
                        q.depth.unwrap_or(self.default_depth),
                        q.user,
                    );
                    let why = self.why(format!(
                        "BATCHED {}{} of s{} applied by CACHE.PENDING FLUSH",
                        q.user.prefix(),
                        q.sel.args().join(" "),
                        q.step
                    ));
                    for k in &want {
                        self.dbs[q.db].take(k, &why);
                    }
                    total += want.len();
                    applied.push(format!(
                        "{}db{} {} -> {want:?}",
                        q.user.prefix(),
                        q.db,
                        q.sel.args().join(" ")
                    ));
                }
                self.expect(
                    r,
                    Value::Int(total as i64),
                    &format!("CACHE.PENDING FLUSH count (the model applied {applied:?})"),
                )?;
            }
            Op::Write { user, id, op } => self.write(*user, *id, *op)?,
            Op::Reclaim { steps } => {
                for k in steps {
                    self.reclaim_step(*k)?;
                }
            }
            Op::ReclaimAll => self.reclaim_all()?,
            Op::Probe { key, inner } => self.probe(key, inner)?,
        }
        Ok(())
    }

    fn reselect(&mut self) -> R {
        let cur = self.cur.to_string();
        self.ok(Who::Main, &words(&format!("SELECT {cur}")))?;
        self.dbsel[0] = self.cur;
        Ok(())
    }

    /// CACHE.MSET: refused whole (WRONGTYPE) when a key holds a plain string, else every entry
    /// stored in order as CACHE.SET without options stores it, with the shared tags where it
    /// gives none.
    fn cache_mset(&mut self, shared: Option<&[String]>, entries: &[MSetEntry]) -> R {
        self.at(Who::Main)?;
        let mut parts = vec!["CACHE.MSET".to_string()];
        if let Some(t) = shared {
            parts.extend(["TAGS".to_string(), t.len().to_string()]);
            parts.extend(t.iter().cloned());
        }
        let mut values = Vec::new();
        for e in entries {
            self.writes += 1;
            let value = format!("v{}", self.writes);
            parts.extend(["ENTRY".to_string(), e.key.clone(), value.clone()]);
            for (word, names) in [("TAGS", &e.tags), ("DEPENDS", &e.deps)] {
                if let Some(names) = names {
                    parts.extend([word.to_string(), names.len().to_string()]);
                    parts.extend(names.iter().cloned());
                }
            }
            values.push(value);
        }
        let plain = entries
            .iter()
            .any(|e| matches!(self.dbs[self.cur].keys.get(&e.key), Some(Val::Plain(_))));
        if plain {
            let e = self.refused(Who::Main, &parts)?;
            return self.expect(e.as_str(), WRONGTYPE, "CACHE.MSET over a string");
        }
        let r = self.ok(Who::Main, &parts)?;
        self.expect(r, Value::Okay, "CACHE.MSET")?;
        for (e, value) in entries.iter().zip(values) {
            let tags = e.tags.as_deref().or(shared).unwrap_or_default();
            let entry = Entry {
                value,
                tags: tags.iter().cloned().collect(),
                deps: e
                    .deps
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .cloned()
                    .collect(),
                life: Life::Fresh,
                why: self.why("CACHE.MSET"),
            };
            self.db().put(&e.key, Val::Entry(entry));
        }
        Ok(())
    }

    fn cache_set(
        &mut self,
        key: &str,
        ttl: Ttl,
        cond: Cond,
        tags: Option<&[String]>,
        deps: Option<&[String]>,
        guard: Option<Guard>,
    ) -> R {
        self.at(Who::Main)?;
        self.writes += 1;
        let value = format!("v{}", self.writes);
        let mut parts = words(&format!("CACHE.SET {key} {value}"));
        match ttl {
            Ttl::None => {}
            Ttl::Long => parts.extend(words("PX 86400000")),
            Ttl::Keep => parts.push("KEEPTTL".into()),
            Ttl::Past => parts.extend(words("PXAT 1000")),
            Ttl::Short => parts.extend(words("PX 1")),
        }
        match cond {
            Cond::None => {}
            Cond::Nx => parts.push("NX".into()),
            Cond::Xx => parts.push("XX".into()),
        }
        for (word, names) in [("TAGS", tags), ("DEPENDS", deps)] {
            if let Some(names) = names {
                parts.push(word.into());
                parts.push(names.len().to_string());
                parts.extend(names.iter().cloned());
            }
        }
        let token = guard.map(|g| match g {
            Guard::Taken(back) => self.tokens.iter().rev().nth(back).cloned(),
            Guard::MadeUp(_) => None,
        });
        if let Some(t) = &token {
            let value = match (t, guard) {
                (Some(t), _) => t.value,
                (None, Some(Guard::MadeUp(v))) => v,
                (None, _) => 12345,
            };
            parts.extend(["GUARD".into(), value.to_string()]);
        }
        let existing = self.dbs[self.cur].keys.get(key).cloned();
        if let Some(Val::Plain(_)) = existing {
            let e = self.refused(Who::Main, &parts)?;
            return self.expect(e.as_str(), WRONGTYPE, "CACHE.SET over a string");
        }
        let fresh = self.dbs[self.cur].fresh(key).is_some();
        let writes = match cond {
            Cond::None => true,
            Cond::Nx => !fresh,
            Cond::Xx => fresh,
        };
        let r = self.ok(Who::Main, &parts)?;
        if !writes {
            return self.expect(r, Value::Nil, "CACHE.SET NX/XX not met");
        }
        if let Some(t) = &token {
            let tags = tags.unwrap_or_default();
            let deps = deps.unwrap_or_default();
            let refusal = self.guard_refusal(t.as_ref(), key, tags, deps);
            let want = if refusal.is_some() {
                Value::Nil
            } else {
                Value::Okay
            };
            let since: Vec<&str> = match t {
                Some(t) => self
                    .applied
                    .iter()
                    .filter(|a| a.seq >= t.seq && a.db == self.cur)
                    .map(|a| a.label.as_str())
                    .collect(),
                None => Vec::new(),
            };
            let what = format!(
                "CACHE.SET ... GUARD: the model {} ({}; token {}; invalidations of db{} since it: {since:?})",
                if refusal.is_some() { "refuses" } else { "stores" },
                refusal.as_deref().unwrap_or("nothing since the token selects it"),
                match t {
                    Some(t) => format!("taken at s{}", t.step),
                    None => "made up".into(),
                },
                self.cur
            );
            if r != want {
                return fail("guard", format!("{what}: server replied {r:?}"));
            }
            if refusal.is_some() {
                return Ok(());
            }
        }
        self.expect(r, Value::Okay, "CACHE.SET")?;
        let entry = Entry {
            value,
            tags: tags.unwrap_or_default().iter().cloned().collect(),
            deps: deps.unwrap_or_default().iter().cloned().collect(),
            life: Life::Fresh,
            why: self.why("CACHE.SET"),
        };
        match ttl {
            Ttl::Past => {
                let why = self.why("CACHE.SET PXAT in the past");
                self.db().take(key, &why);
            }
            Ttl::Short => {
                self.db().put(key, Val::Entry(entry));
                std::thread::sleep(Duration::from_millis(4));
                let why = self.why("CACHE.SET PX 1, expired");
                self.db().expire(key, &why);
            }
            _ => self.db().put(key, Val::Entry(entry)),
        }
        Ok(())
    }

    /// Records an invalidation as IMMEDIATE applies it now in `db` (before the model removes
    /// what it selects): the guard refuses from here on what it would have selected.
    fn applied(
        &mut self,
        db: usize,
        sel: &Selector,
        user: User,
        depth: Option<u32>,
        label: String,
    ) {
        let depth = depth.unwrap_or(self.default_depth);
        let removed = resolve_hops(&self.dbs[db], sel, depth, user);
        let depth = if *sel == Selector::All { 0 } else { depth };
        self.applied.push(Applied {
            seq: self.gseq,
            db,
            sel: sel.clone(),
            user,
            depth,
            removed,
            label,
        });
        self.gseq += 1;
    }

    /// Why the contract refuses `CACHE.SET key ... GUARD token` in the steps' database now, if
    /// it does (`None` token: made up).
    fn guard_refusal(
        &self,
        t: Option<&Tok>,
        key: &str,
        tags: &[String],
        deps: &[String],
    ) -> Option<String> {
        let Some(t) = t else {
            return Some("a made-up token".into());
        };
        if t.epoch != self.epoch {
            return Some("a token from before DEBUG RELOAD".into());
        }
        self.applied
            .iter()
            .filter(|a| a.seq >= t.seq && a.db == self.cur)
            .find_map(|a| a.selects(key, tags, deps))
    }

    /// CACHE.TOKEN, or CACHE.FETCH key WITHTOKEN (its third element).
    fn take_token(&mut self, fetch: Option<&str>) -> R {
        let value = match fetch {
            None => {
                let r = self.ok(Who::Main, &words("CACHE.TOKEN"))?;
                as_int(&r)
            }
            Some(key) => {
                self.at(Who::Main)?;
                let parts = words(&format!("CACHE.FETCH {key} WITHTOKEN"));
                if let Some(Val::Plain(_)) = self.dbs[self.cur].keys.get(key) {
                    let e = self.refused(Who::Main, &parts)?;
                    return self.expect(e.as_str(), WRONGTYPE, "CACHE.FETCH of a string");
                }
                let r = self.ok(Who::Main, &parts)?;
                list(&r).get(2).and_then(as_int)
            }
        };
        let Some(value) = value.filter(|v| *v > 0) else {
            return fail("reply", "the token is not a positive integer");
        };
        self.tokens.push(Tok {
            value,
            seq: self.gseq,
            epoch: self.epoch,
            step: self.step,
        });
        if self.tokens.len() > TOKENS_KEPT {
            self.tokens.remove(0);
        }
        Ok(())
    }

    fn add_links(&mut self, key: &str, names: &[String], tag: bool) -> R {
        let mut parts = vec![
            if tag { "CACHE.TAG" } else { "CACHE.DEPEND" }.to_string(),
            key.to_string(),
        ];
        parts.extend(names.iter().cloned());
        match self.dbs[self.cur].keys.get(key).cloned() {
            Some(Val::Plain(_)) => {
                let e = self.refused(Who::Main, &parts)?;
                self.expect(e.as_str(), WRONGTYPE, "link on a string")
            }
            Some(Val::Entry(e)) if e.life == Life::Fresh => {
                let mut e = e;
                let list = if tag { &mut e.tags } else { &mut e.deps };
                let before = list.len();
                list.extend(names.iter().cloned());
                let added = (list.len() - before) as i64;
                let r = self.ok(Who::Main, &parts)?;
                self.expect(r, Value::Int(added), "links added")?;
                self.db().put(key, Val::Entry(e));
                Ok(())
            }
            _ => {
                let e = self.refused(Who::Main, &parts)?;
                self.expect(
                    e.as_str(),
                    "ERR no such key",
                    &format!("link on {}", self.dbs[self.cur].describe(key)),
                )
            }
        }
    }

    /// The count a LAZY selection may reply: the entries the selector picks among those the
    /// server holds (covered and stale ones, and those the user may not delete, included), and
    /// at most also the expired ones it may not have removed yet.
    fn lazy_bounds(&self, sel: &Selector) -> (usize, usize) {
        let db = &self.dbs[self.cur];
        let lo = db
            .keys
            .iter()
            .filter(|(k, v)| matches!(v, Val::Entry(e) if sel.picks(k, e)))
            .count();
        let limbo = db.limbo.iter().filter(|(k, e)| sel.picks(k, e)).count();
        (lo, lo + limbo)
    }

    /// The count a LAZY reply may give (README): the selector's count from the index (see
    /// `lazy_bounds`), plus the entries IMMEDIATE would take (`want`) beyond those the
    /// selector picks: the cascade, resolved exactly when the mark is made.
    fn lazy_reply_bounds(&self, sel: &Selector, want: &BTreeSet<String>) -> (usize, usize) {
        let (lo, hi) = self.lazy_bounds(sel);
        let db = &self.dbs[self.cur];
        let cascaded = want
            .iter()
            .filter(|k| !matches!(db.keys.get(*k), Some(Val::Entry(e)) if sel.picks(k, e)))
            .count();
        (lo + cascaded, hi + cascaded)
    }

    fn cover(&mut self, db: usize, keys: &BTreeSet<String>, why: &str) {
        for k in keys {
            if let Some(e) = self.dbs[db].entry_mut(k) {
                e.life = Life::Covered;
                e.why = why.to_string();
            }
        }
    }

    fn invalidate(
        &mut self,
        user: User,
        strategy: Strategy,
        depth: Option<u32>,
        sel: &Selector,
        dry: bool,
    ) -> R {
        let who = user.who();
        self.at(who)?;
        let want = resolve(
            &self.dbs[self.cur],
            sel,
            depth.unwrap_or(self.default_depth),
            user,
        );
        let mut opts: Vec<String> = Vec::new();
        if let Some(d) = depth {
            opts.extend(["DEPTH".into(), d.to_string()]);
        }
        if dry {
            let mut parts = vec!["CACHE.KEYS".to_string()];
            parts.extend(opts.iter().cloned());
            parts.extend(sel.args());
            let r = self.ok(who, &parts)?;
            self.keys_match(&r, &want, &parts.join(" "))?;
        }
        let mut parts = vec!["CACHE.INVALIDATE".to_string()];
        parts.extend(opts);
        parts.extend(strategy.args());
        parts.extend(sel.args());
        let label = format!("{}{}", user.prefix(), parts[1..].join(" "));
        let why = self.why(&label);
        let r = self.ok(who, &parts)?;
        if strategy != Strategy::Batched {
            let (cur, why) = (self.cur, why.clone());
            self.applied(cur, sel, user, depth, why);
        }
        let what = format!("{label}: count (the model selects {want:?})");
        match strategy {
            Strategy::Unnamed | Strategy::Immediate => {
                self.expect(r, Value::Int(want.len() as i64), &what)?;
                for k in &want {
                    self.db().take(k, &why);
                }
            }
            Strategy::Lazy => {
                // README: the entries the selector picks in the index, plus those its cascade
                // reached beyond them (resolved when the mark is made: exact); IMMEDIATE's
                // count would do too.
                let (lo, hi) = self.lazy_reply_bounds(sel, &want);
                let n = as_int(&r).unwrap_or(-1);
                if (n < lo as i64 || n > hi as i64) && n != want.len() as i64 {
                    return fail(
                        "reply",
                        format!("{label}: count {r:?}, want {lo}..={hi} (the entries the selector picks, plus the cascade) or {} (IMMEDIATE's: {want:?})", want.len()),
                    );
                }
                let cur = self.cur;
                self.cover(cur, &want, &why);
            }
            Strategy::Soft(_) => {
                self.expect(r, Value::Int(want.len() as i64), &what)?;
                for k in &want {
                    if let Some(e) = self.db().entry_mut(k) {
                        if e.life == Life::Fresh {
                            e.life = Life::Stale;
                            e.why = why.clone();
                        }
                    }
                }
            }
            Strategy::Batched => {
                self.expect(r, Value::Int(0), &format!("{label}: count"))?;
                self.queue.push(Req {
                    db: self.cur,
                    sel: sel.clone(),
                    depth,
                    user,
                    step: self.step,
                    at: Instant::now(),
                });
            }
        }
        Ok(())
    }

    fn keys_match(&self, r: &Value, want: &BTreeSet<String>, what: &str) -> R {
        let got: BTreeSet<String> = texts(r).into_iter().collect();
        if &got == want {
            return Ok(());
        }
        let db = &self.dbs[self.cur];
        let extra: Vec<String> = got
            .difference(want)
            .map(|k| format!("{k} (model: {})", db.describe(k)))
            .collect();
        let missing: Vec<String> = want
            .difference(&got)
            .map(|k| format!("{k} (model: {})", db.describe(k)))
            .collect();
        fail(
            "keys",
            format!(
                "db{} {what}: server lists {got:?}, model {want:?}; extra {extra:?}; missing {missing:?}",
                self.cur
            ),
        )
    }

    fn write(&mut self, user: User, id: u32, op: Option<&'static str>) -> R {
        let who = user.who();
        self.at(who)?;
        let mut parts = words(&format!("CACHE.WRITE user {id}"));
        if let Some(op) = op {
            parts.extend(words(&format!("OP {op}")));
        }
        let label = format!("{}{}", user.prefix(), parts.join(" "));
        let r = self.ok(who, &parts)?;
        let d = self.default_depth;
        let mut lo = 0;
        let mut hi = 0;
        // The same with IMMEDIATE's count for the LAZY step.
        let mut exact = 0;
        let mut plan = Vec::new();
        // The plan (README, CACHE.WRITE): the implicit tag, then the rules by priority.
        for (tag, strategy) in [
            (format!("user:{id}"), Strategy::Immediate),
            ("listing".to_string(), Strategy::Immediate),
            ("profile:1".to_string(), Strategy::Lazy),
            ("feed".to_string(), Strategy::Batched),
        ] {
            if tag == "profile:1" && id != 1 {
                continue;
            }
            if tag == "feed" && !matches!(op, Some("create") | Some("delete")) {
                continue;
            }
            let sel = Selector::Tags(vec![tag.clone()]);
            let want = resolve(&self.dbs[self.cur], &sel, d, user);
            let why = self.why(format!("{label} (rule step TAG {tag}, {strategy:?})"));
            if strategy != Strategy::Batched {
                let cur = self.cur;
                self.applied(cur, &sel, user, None, why.clone());
            }
            match strategy {
                Strategy::Lazy => {
                    let (l, h) = self.lazy_reply_bounds(&sel, &want);
                    lo += l;
                    hi += h;
                    exact += want.len();
                    let cur = self.cur;
                    self.cover(cur, &want, &why);
                }
                Strategy::Batched => self.queue.push(Req {
                    db: self.cur,
                    sel,
                    depth: None,
                    user,
                    step: self.step,
                    at: Instant::now(),
                }),
                _ => {
                    lo += want.len();
                    hi += want.len();
                    exact += want.len();
                    for k in &want {
                        self.db().take(k, &why);
                    }
                }
            }
            plan.push(format!("{strategy:?} TAG {tag} -> {want:?}"));
        }
        let n = as_int(&r).unwrap_or(-1);
        if (n < lo as i64 || n > hi as i64) && n != exact as i64 {
            return fail(
                "reply",
                format!("{label}: count {r:?}, want {lo}..={hi} or {exact} (the model's plan: {plan:?})"),
            );
        }
        Ok(())
    }

    /// An IMMEDIATE invalidation the server runs in steps: its client blocks (on a thread) with
    /// the selection reading as missing at once; `sub` runs meanwhile; the reclaimer finishes it
    /// and the count is what it deleted in that database from then until the step that answered
    /// it (the steps after, for marks made meanwhile, are not counted).
    fn stepped(
        &mut self,
        user: User,
        depth: Option<u32>,
        sel: &Selector,
        sub: &[Op],
        obs: u64,
    ) -> R {
        let db = self.cur;
        let want = resolve(
            &self.dbs[db],
            sel,
            depth.unwrap_or(self.default_depth),
            user,
        );
        let mut parts = vec!["CACHE.INVALIDATE".to_string()];
        if let Some(d) = depth {
            parts.extend(["DEPTH".into(), d.to_string()]);
        }
        parts.extend(sel.args());
        self.ok(Who::Main, &words("CONFIG SET cache.stepped-threshold 1"))?;
        let mut conn = self.server.conn();
        if user == User::App {
            cmd(&mut conn, &["AUTH", APP, "pw"])
                .or_else(|e| fail("error", format!("AUTH for the stepped client: {e}")))?;
        }
        cmd(&mut conn, &["SELECT", &db.to_string()])
            .or_else(|e| fail("error", format!("SELECT for the stepped client: {e}")))?;
        let label = format!("[stepped] {}{}", user.prefix(), parts.join(" "));
        self.log.push(format!("s{} {label}", self.step));
        let sent = parts.clone();
        self.applied(db, sel, user, depth, format!("s{} {label}", self.step));
        let handle = std::thread::spawn(move || {
            let r = cmd(&mut conn, &sent);
            (r, conn)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let blocked = loop {
            if handle.is_finished() {
                break false;
            }
            if self.blocked_clients()? > 0 {
                break true;
            }
            if Instant::now() > deadline {
                return fail(
                    "error",
                    format!("{label}: neither answered nor blocked in 10 s"),
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        self.ok(Who::Main, &words("CONFIG SET cache.stepped-threshold 0"))?;
        let why = self.why(&label);
        if !blocked {
            // Too small a part of the database to pay off: it ran at once.
            let (r, _) = handle.join().expect("stepped client thread");
            let r = r.or_else(|e| fail("error", format!("{label}: {e}")))?;
            self.expect(
                r,
                Value::Int(want.len() as i64),
                &format!("{label} (ran at once): count (the model selects {want:?})"),
            )?;
            for k in &want {
                self.dbs[db].take(k, &why);
            }
            return Ok(());
        }
        self.log.push(format!("s{} ({label} blocked)", self.step));
        self.cover(db, &want, &why);
        self.waiter = Some(Waiter {
            db,
            deleted: 0,
            answered: false,
        });
        if self.watching.is_some() {
            self.probe_end()?;
        }
        let mut rng = Rng(mix(obs));
        self.observe(rng.next_u64())?;
        for op in sub {
            self.exec(op)?;
            self.observe(rng.next_u64())?;
        }
        for i in 0.. {
            if self.blocked_clients()? == 0 {
                break;
            }
            if i == 5000 {
                return fail(
                    "error",
                    format!("{label}: still blocked after 5000 reclaimer steps"),
                );
            }
            self.reclaim_step(None)?;
        }
        let (r, _) = handle.join().expect("stepped client thread");
        let r = r.or_else(|e| fail("error", format!("{label}: {e}")))?;
        let deleted = self.waiter.take().map_or(0, |w| w.deleted);
        self.expect(
            r,
            Value::Int(deleted as i64),
            &format!(
                "{label}: count (the reclaimer deleted {deleted} covered entries in db{db} until it answered; the model selected {want:?})"
            ),
        )
    }

    fn blocked_clients(&mut self) -> R<i64> {
        let text: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut self.conns[0])
            .or_else(|e| fail("error", format!("INFO clients: {e}")))?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Asks which covered keys the server no longer holds (the reclaimer deleted them) and
    /// forgets them; returns them.
    fn sync_covered(&mut self) -> R<Vec<(usize, String)>> {
        let mut gone = Vec::new();
        for d in 0..2 {
            let covered = self.dbs[d].covered();
            if covered.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            pipe.cmd("SELECT").arg(d);
            for k in &covered {
                pipe.cmd("EXISTS").arg(k);
            }
            let got: Vec<Value> = pipe
                .query(&mut self.conns[0])
                .or_else(|e| fail("error", format!("EXISTS of the covered keys: {e}")))?;
            self.dbsel[0] = d;
            let why = self.why("deleted by the server (EXISTS 0)");
            for (k, v) in covered.iter().zip(&got[1..]) {
                if as_int(v) == Some(0) {
                    self.dbs[d].take(k, &why);
                    gone.push((d, k.clone()));
                }
            }
        }
        if self.dbsel[0] != self.cur {
            let cur = self.cur.to_string();
            self.quiet(Who::Main, &words(&format!("SELECT {cur}")))?;
            self.dbsel[0] = self.cur;
        }
        Ok(gone)
    }

    fn reclaim_step(&mut self, keys: Option<usize>) -> R<i64> {
        let mut parts = words("CACHE.DEBUG RECLAIM STEP");
        if let Some(k) = keys {
            parts.push(k.to_string());
        }
        // Covered keys that left otherwise (none today) are not the step's.
        self.sync_covered()?;
        let r = self.ok(Who::Main, &parts)?;
        let n = as_int(&r).unwrap_or(-1);
        let gone = self.sync_covered()?;
        // A blocked stepped invalidation counts what the steps delete in its database until the
        // step that answers it (a step after, within a nested step such as RECLAIM until done,
        // is not its).
        if let Some(w) = self.waiter.as_mut().filter(|w| !w.answered) {
            w.deleted += gone.iter().filter(|(d, _)| *d == w.db).count();
            let db = w.db;
            let answered = self.blocked_clients()? == 0;
            if let Some(w) = self.waiter.as_mut().filter(|w| w.db == db) {
                w.answered = answered;
            }
        }
        if gone.len() as i64 != n {
            return fail(
                "reclaim",
                format!(
                    "{} deleted {n} entries, but of the keys the model holds covered these left: {gone:?} (it deleted an entry IMMEDIATE would not have, or a covered entry is still there)",
                    parts.join(" ")
                ),
            );
        }
        Ok(n)
    }

    /// Reclaimer steps until no LAZY mark is left; then no covered key may be left either.
    fn reclaim_all(&mut self) -> R {
        for i in 0.. {
            if i == 5000 {
                return fail("error", "marks left after 5000 reclaimer steps");
            }
            self.reclaim_step(None)?;
            let marks = self.quiet(Who::Main, &words("CACHE.PENDING LAZY"))?;
            if list(&marks).is_empty() {
                break;
            }
        }
        let left: Vec<String> = (0..2)
            .flat_map(|d| {
                let db = &self.dbs[d];
                db.covered()
                    .into_iter()
                    .map(move |k| format!("db{d} {k}: {}", db.describe(&k)))
            })
            .collect();
        if !left.is_empty() {
            return fail(
                "covered",
                format!(
                    "every LAZY mark is done, but the server still holds covered entries: {left:?}"
                ),
            );
        }
        Ok(())
    }

    fn prior(&self, key: &str) -> Prior {
        match self.dbs[self.cur].keys.get(key) {
            None => Prior::Absent,
            Some(Val::Plain(_)) => Prior::Plain,
            Some(Val::Entry(e)) if e.life == Life::Fresh => Prior::Fresh(e.value.clone()),
            Some(Val::Entry(_)) => Prior::Other,
        }
    }

    fn probe(&mut self, key: &str, inner: &Op) -> R {
        self.at(Who::Watcher)?;
        let prior = self.prior(key);
        self.ok(Who::Watcher, &words(&format!("WATCH {key}")))?;
        if prior != Prior::Plain {
            let r = self.ok(Who::Watcher, &words(&format!("CACHE.GET {key}")))?;
            let want = match &prior {
                Prior::Fresh(v) => Some(v.clone()),
                _ => None,
            };
            if as_text(&r) != Ok(want.clone()) {
                return fail(
                    "mget",
                    format!(
                        "[watcher] CACHE.GET {key}: got {r:?}, model {}",
                        self.dbs[self.cur].describe(key)
                    ),
                );
            }
        }
        self.watching = Some(Watching {
            key: key.to_string(),
            db: self.cur,
            prior,
        });
        self.exec(inner)?;
        if self.watching.is_some() {
            self.probe_end()?;
        }
        Ok(())
    }

    /// MULTI / PING / EXEC on the watching connection: aborted iff IMMEDIATE deleted the
    /// watched key.
    fn probe_end(&mut self) -> R {
        let w = self.watching.take().expect("a WATCH under way");
        self.ok(Who::Watcher, &words("MULTI"))?;
        self.ok(Who::Watcher, &words("PING"))?;
        let r = self.ok(Who::Watcher, &words("EXEC"))?;
        let aborted = r == Value::Nil;
        let untouched = match (&w.prior, self.dbs[w.db].fresh(&w.key)) {
            (Prior::Fresh(v), Some(e)) => &e.value == v,
            _ => false,
        };
        let want = match &w.prior {
            Prior::Fresh(_) => Some(!untouched),
            Prior::Absent | Prior::Plain => Some(false),
            Prior::Other => None,
        };
        if let (true, Some(want)) = (self.checks.watch, want) {
            if aborted != want {
                return fail(
                    "watch",
                    format!(
                        "WATCH {} then EXEC: {}, but IMMEDIATE {} it (model: {})",
                        w.key,
                        if aborted { "aborted" } else { "ran" },
                        if want { "deleted" } else { "did not delete" },
                        self.dbs[w.db].describe(&w.key)
                    ),
                );
            }
        }
        Ok(())
    }

    // -------------------------------------------------------------------- reads

    /// The reads after every step, in both databases, in an order drawn from `seed`.
    fn observe(&mut self, seed: u64) -> R {
        let mut rng = Rng(mix(seed));
        let first = rng.below(2);
        for d in [first, 1 - first] {
            self.observe_db(d, &mut rng)?;
        }
        // Back on the steps' database (not logged: the reads' own SELECTs are not either).
        if self.dbsel[0] != self.cur {
            let cur = self.cur.to_string();
            self.quiet(Who::Main, &words(&format!("SELECT {cur}")))?;
            self.dbsel[0] = self.cur;
        }
        if self.checks.pending {
            self.check_pending()?;
        }
        if self.checks.keys {
            self.random_keys(&mut rng)?;
        }
        Ok(())
    }

    fn observe_db(&mut self, d: usize, rng: &mut Rng) -> R {
        let mut mget: Vec<&str> = KEYS.to_vec();
        shuffle(rng, &mut mget);
        let mut fetch: Vec<&str> = KEYS
            .iter()
            .filter(|k| !matches!(self.dbs[d].keys.get(**k), Some(Val::Plain(_))))
            .copied()
            .collect();
        shuffle(rng, &mut fetch);
        if !self.checks.fetch {
            fetch.clear();
        }
        let mut order = [0, 1, 2];
        shuffle(rng, &mut order);
        let mut pipe = redis::pipe();
        pipe.cmd("SELECT").arg(d);
        let mut desc = Vec::new();
        for part in order {
            match part {
                0 => {
                    pipe.cmd("CACHE.MGET").arg(&mget);
                    desc.push(format!("CACHE.MGET {}", mget.join(" ")));
                }
                1 => {
                    pipe.cmd("CACHE.KEYS").arg("DEPTH").arg(0).arg("ALL");
                    desc.push("CACHE.KEYS DEPTH 0 ALL".to_string());
                }
                _ if !fetch.is_empty() => {
                    for k in &fetch {
                        pipe.cmd("CACHE.FETCH").arg(*k);
                    }
                    desc.push(format!("CACHE.FETCH of {}", fetch.join(" ")));
                }
                _ => {}
            }
        }
        self.log
            .push(format!("s{} [reads db{d}] {}", self.step, desc.join("; ")));
        let got: Vec<Value> = pipe
            .query(&mut self.conns[0])
            .or_else(|e| fail("error", format!("the reads of db{d}: {e}")))?;
        self.dbsel[0] = d;
        let db = &self.dbs[d];
        let mut i = 1;
        for part in order {
            match part {
                0 => {
                    let vals = list(&got[i]);
                    i += 1;
                    let mut diffs = Vec::new();
                    for (k, v) in mget.iter().zip(&vals) {
                        let want = db.fresh(k).map(|e| e.value.clone());
                        let got = as_text(v);
                        if got != Ok(want) {
                            diffs.push(format!("{k}: server {v:?}, model {}", db.describe(k)));
                        }
                    }
                    if !diffs.is_empty() {
                        return fail("mget", format!("db{d} CACHE.MGET: {}", diffs.join("; ")));
                    }
                }
                1 => {
                    let got_keys: BTreeSet<String> = texts(&got[i]).into_iter().collect();
                    i += 1;
                    let want: BTreeSet<String> = db.world().map(|(k, _)| k.clone()).collect();
                    if got_keys != want {
                        let extra: Vec<String> = got_keys
                            .difference(&want)
                            .map(|k| format!("{k} (model: {})", db.describe(k)))
                            .collect();
                        let missing: Vec<String> = want
                            .difference(&got_keys)
                            .map(|k| format!("{k} (model: {})", db.describe(k)))
                            .collect();
                        return fail(
                            "keys",
                            format!("db{d} CACHE.KEYS DEPTH 0 ALL: extra {extra:?}; missing {missing:?}"),
                        );
                    }
                }
                _ => {
                    for k in &fetch {
                        let r = list(&got[i]);
                        i += 1;
                        let value = r.first().map(as_text);
                        let state = r.get(1).and_then(|s| as_text(s).ok().flatten());
                        let ok = match db.entry(k) {
                            Some(e) if e.life == Life::Fresh => {
                                value == Some(Ok(Some(e.value.clone())))
                                    && state.as_deref() == Some("hit")
                            }
                            Some(e) if e.life == Life::Stale => {
                                value == Some(Ok(Some(e.value.clone())))
                                    && matches!(state.as_deref(), Some("refresh" | "stale"))
                            }
                            _ => {
                                value == Some(Ok(None))
                                    && matches!(state.as_deref(), Some("miss" | "wait"))
                            }
                        };
                        if !ok {
                            return fail(
                                "fetch",
                                format!(
                                    "db{d} CACHE.FETCH {k}: server {r:?}, model {}",
                                    db.describe(k)
                                ),
                            );
                        }
                    }
                }
            }
        }
        self.dbs[d].limbo.clear();
        Ok(())
    }

    fn check_pending(&mut self) -> R {
        let r = self.quiet(Who::Main, &words("CACHE.PENDING"))?;
        let got: BTreeSet<(i64, String, Vec<String>, i64)> = list(&r)
            .iter()
            .map(|row| {
                let f = |name: &str| {
                    pairs_of(row)
                        .into_iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v)
                };
                let db = f("db").and_then(|v| as_int(&v)).unwrap_or(-1);
                let kind = f("type")
                    .and_then(|v| as_text(&v).ok().flatten())
                    .unwrap_or_default();
                let mut words: Vec<String> = f("pattern")
                    .and_then(|v| as_text(&v).ok().flatten())
                    .unwrap_or_default()
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .map(String::from)
                    .collect();
                words.sort();
                words.dedup();
                let depth = f("depth").and_then(|v| as_int(&v)).unwrap_or(-2);
                (db, kind, words, depth)
            })
            .collect();
        let want: BTreeSet<(i64, String, Vec<String>, i64)> = self
            .queue
            .iter()
            .map(|q| {
                let (kind, words) = q.sel.listed();
                (q.db as i64, kind, words, q.depth.map_or(-1, i64::from))
            })
            .collect();
        if got != want {
            let model: Vec<String> = self
                .queue
                .iter()
                .map(|q| {
                    format!(
                        "s{} {}db{} {}",
                        q.step,
                        q.user.prefix(),
                        q.db,
                        q.sel.args().join(" ")
                    )
                })
                .collect();
            let waited = self
                .queue
                .first()
                .map_or(0.0, |q| q.at.elapsed().as_secs_f64());
            let slow = if waited > 4.0 {
                format!(" (the oldest request waited {waited:.1} s: the server's 5 s timer may have applied it, this run is too slow for the test)")
            } else {
                String::new()
            };
            return fail(
                "pending",
                format!("CACHE.PENDING lists (db, type, args, depth) {got:?}, the model queued {model:?}{slow}"),
            );
        }
        Ok(())
    }

    /// One CACHE.KEYS of a random selector, depth and user in the steps' database.
    fn random_keys(&mut self, rng: &mut Rng) -> R {
        let user = if rng.chance(30) {
            User::App
        } else {
            User::Default
        };
        let sel = gen_selector(rng);
        let depth = gen_depth(rng);
        let who = user.who();
        self.at(who)?;
        let want = resolve(
            &self.dbs[self.cur],
            &sel,
            depth.unwrap_or(self.default_depth),
            user,
        );
        let mut parts = vec!["CACHE.KEYS".to_string()];
        if let Some(d) = depth {
            parts.extend(["DEPTH".into(), d.to_string()]);
        }
        parts.extend(sel.args());
        let r = self.ok(who, &parts)?;
        self.keys_match(&r, &want, &format!("{}{}", user.prefix(), parts.join(" ")))
    }

    /// Everything visible about both databases; VERIFY must be empty.
    fn checkpoint(&mut self) -> R {
        self.log.push(format!("s{} [checkpoint]", self.step));
        let diffs = texts(&self.quiet(Who::Main, &words("CACHE.DEBUG VERIFY"))?);
        if !diffs.is_empty() {
            return fail("verify", format!("CACHE.DEBUG VERIFY: {diffs:?}"));
        }
        let back = self.cur;
        for d in 0..2 {
            self.cur = d;
            self.at(Who::Main)?;
            if self.checks.tags {
                let mut want: Vec<(String, i64)> = TAGS
                    .iter()
                    .map(|t| {
                        let n = self.dbs[d]
                            .world()
                            .filter(|(_, e)| e.tags.contains(*t))
                            .count();
                        (t.to_string(), n as i64)
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect();
                want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let r = self.quiet(Who::Main, &words("CACHE.TAGS"))?;
                let got: Vec<(String, i64)> = list(&r)
                    .iter()
                    .map(|p| {
                        let p = list(p);
                        (
                            as_text(&p[0]).ok().flatten().unwrap_or_default(),
                            as_int(&p[1]).unwrap_or(-1),
                        )
                    })
                    .collect();
                if got != want {
                    let covered: Vec<String> = self.dbs[d]
                        .covered()
                        .iter()
                        .map(|k| format!("{k}: {}", self.dbs[d].describe(k)))
                        .collect();
                    self.cur = back;
                    return fail(
                        "tags",
                        format!(
                            "db{d} CACHE.TAGS: got {got:?}, model {want:?} (covered: {covered:?})"
                        ),
                    );
                }
            }
            for user in [User::Default, User::App] {
                let who = user.who();
                self.at(who)?;
                for t in TAGS {
                    for depth in [Some(0), None] {
                        let sel = Selector::Tags(vec![t.to_string()]);
                        let want = resolve(
                            &self.dbs[d],
                            &sel,
                            depth.unwrap_or(self.default_depth),
                            user,
                        );
                        let mut parts = vec!["CACHE.KEYS".to_string()];
                        if let Some(n) = depth {
                            parts.extend(["DEPTH".into(), n.to_string()]);
                        }
                        parts.extend(["TAG".into(), t.into()]);
                        let r = self.quiet(who, &parts)?;
                        if let Err(f) = self.keys_match(
                            &r,
                            &want,
                            &format!("{}{}", user.prefix(), parts.join(" ")),
                        ) {
                            self.cur = back;
                            return Err(f);
                        }
                    }
                }
            }
            if self.checks.inspect {
                for k in KEYS {
                    let db = &self.dbs[d];
                    if matches!(db.keys.get(k), Some(Val::Plain(_))) {
                        continue;
                    }
                    let want = db.world().find(|(n, _)| *n == k).map(|(_, e)| {
                        let dependents: Vec<String> = db
                            .world()
                            .filter(|(_, x)| x.deps.contains(k))
                            .map(|(n, _)| n.clone())
                            .collect();
                        (
                            e.tags.iter().cloned().collect::<Vec<_>>(),
                            e.deps.iter().cloned().collect::<Vec<_>>(),
                            dependents,
                            e.life == Life::Stale,
                        )
                    });
                    let r = self.quiet(Who::Main, &words(&format!("CACHE.INSPECT {k}")))?;
                    let got = if r == Value::Nil {
                        None
                    } else {
                        let m = pairs_of(&r);
                        let get = |name: &str| {
                            m.iter()
                                .find(|(n, _)| n == name)
                                .map(|(_, v)| texts(v))
                                .unwrap_or_default()
                        };
                        Some((
                            get("tags"),
                            get("depends"),
                            get("dependents"),
                            m.iter().any(|(n, _)| n == "stale_ms"),
                        ))
                    };
                    if got != want {
                        let what = format!(
                            "db{d} CACHE.INSPECT {k} (tags, depends, dependents, stale): got {got:?}, model {want:?} ({})",
                            self.dbs[d].describe(k)
                        );
                        self.cur = back;
                        return fail("inspect", what);
                    }
                }
            }
        }
        self.cur = back;
        self.at(Who::Main)
    }
}

fn flush(db: &mut Db, why: &str) {
    let keys: Vec<String> = db.keys.keys().cloned().collect();
    for k in keys {
        db.take(&k, why);
    }
    db.limbo.clear();
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// A bulk string or nil as text; Err for anything else.
fn as_text(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(String::from_utf8_lossy(b).into_owned())),
        Value::SimpleString(s) => Ok(Some(s.clone())),
        Value::Okay => Ok(Some("OK".into())),
        other => Err(format!("{other:?}")),
    }
}

fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) | Value::Set(a) => a
            .iter()
            .map(|x| as_text(x).ok().flatten().unwrap_or_default())
            .collect(),
        _ => Vec::new(),
    }
}

/// A map reply (RESP2 flat array or RESP3 map) as pairs.
fn pairs_of(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| (as_text(k).ok().flatten().unwrap_or_default(), v.clone()))
            .collect(),
        Value::Array(a) => a
            .chunks(2)
            .filter(|p| p.len() == 2)
            .map(|p| {
                (
                    as_text(&p[0]).ok().flatten().unwrap_or_default(),
                    p[1].clone(),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

fn gen_key(rng: &mut Rng) -> String {
    rng.pick(&KEYS).to_string()
}

fn gen_keys(rng: &mut Rng, min: usize, max: usize) -> Vec<String> {
    let n = min + rng.below(max - min + 1);
    let mut v: Vec<String> = Vec::new();
    while v.len() < n {
        let k = gen_key(rng);
        if !v.contains(&k) {
            v.push(k);
        }
    }
    v
}

fn gen_tags(rng: &mut Rng, min: usize, max: usize) -> Vec<String> {
    let n = min + rng.below(max - min + 1);
    let mut v: Vec<String> = Vec::new();
    while v.len() < n {
        let t = rng.pick(&TAGS).to_string();
        if !v.contains(&t) {
            v.push(t);
        }
    }
    v
}

/// Dependencies: mostly other entries' keys, sometimes rows.
fn gen_resources(rng: &mut Rng, min: usize, max: usize) -> Vec<String> {
    let n = min + rng.below(max - min + 1);
    let mut v: Vec<String> = Vec::new();
    while v.len() < n {
        let r = if rng.chance(75) {
            gen_key(rng)
        } else {
            rng.pick(&ROWS).to_string()
        };
        if !v.contains(&r) {
            v.push(r);
        }
    }
    v
}

fn gen_selector(rng: &mut Rng) -> Selector {
    match rng.below(100) {
        0..=29 => Selector::Tags(gen_tags(rng, 1, 2)),
        30..=54 => Selector::Keys(gen_keys(rng, 1, 2)),
        55..=69 => Selector::Pattern(rng.pick(&PATTERNS).to_string()),
        70..=79 => Selector::Namespace(rng.pick(&NAMESPACES).to_string()),
        80..=94 => Selector::Dependents(gen_resources(rng, 1, 2)),
        _ => Selector::All,
    }
}

fn gen_depth(rng: &mut Rng) -> Option<u32> {
    if rng.chance(50) {
        None
    } else {
        Some(rng.below(4) as u32)
    }
}

fn gen_user(rng: &mut Rng) -> User {
    if rng.chance(25) {
        User::App
    } else {
        User::Default
    }
}

fn gen_strategy(rng: &mut Rng) -> Strategy {
    match rng.below(100) {
        0..=9 => Strategy::Unnamed,
        10..=24 => Strategy::Immediate,
        25..=59 => Strategy::Lazy,
        60..=69 => Strategy::Soft(None),
        70..=79 => Strategy::Soft(Some(100_000 + rng.below(1000) as u64)),
        _ => Strategy::Batched,
    }
}

struct Gen {
    rng: Rng,
    /// A scenario whose weight is raised (TAGCACHE_STRATEGY_FOCUS), or "all".
    focus: Option<String>,
    /// The rest of a scenario under way, one step each.
    script: std::collections::VecDeque<Op>,
    /// Kinds of steps never drawn (TAGCACHE_STRATEGY_WITHOUT, `Op::kind` names).
    without: Vec<String>,
}

/// Short sequences the random steps rarely line up by chance, each the shape of one of issue
/// 21's defects, with random names (`Gen::scenario`). Without TAGCACHE_STRATEGY_FOCUS each starts
/// at a step with probability 1/400; with FOCUS=<name> that one with 1/12 (FOCUS=all: each 1/60).
const SCENARIOS: [&str; 11] = [
    "cascade-order",
    "into-a-mark",
    "past-over-stale",
    "batched-users",
    "batched-swapdb",
    "watch-lazy",
    "second-mark",
    "expire-covered",
    "expire-chain",
    "stale-set",
    "stepped-count",
];

fn set(key: &str, tags: &[&str], deps: &[&str]) -> Op {
    Op::Set {
        key: key.to_string(),
        ttl: Ttl::None,
        cond: Cond::None,
        tags: Some(tags.iter().map(|s| s.to_string()).collect()),
        deps: Some(deps.iter().map(|s| s.to_string()).collect()),
        guard: None,
    }
}

fn inv(user: User, strategy: Strategy, sel: Selector) -> Op {
    Op::Invalidate {
        user,
        strategy,
        depth: None,
        sel,
        dry: false,
    }
}

fn tag_sel(t: &str) -> Selector {
    Selector::Tags(vec![t.to_string()])
}

impl Gen {
    fn op(&mut self, h: &H, step: usize) -> Op {
        if let Some(q) = h.queue.first() {
            if step.saturating_sub(q.step) >= FLUSH_WITHIN {
                return Op::Flush;
            }
        }
        if let Some(op) = self.script.pop_front() {
            return op;
        }
        for name in SCENARIOS {
            let odds = match self.focus.as_deref() {
                Some(f) if f == name => 12,
                Some("all") => 60,
                _ => 400,
            };
            if self.rng.below(odds) == 0 {
                let script = self.scenario(name, h);
                if script.iter().any(|op| self.excluded(op)) {
                    continue;
                }
                self.script = script.into();
                if let Some(op) = self.script.pop_front() {
                    return op;
                }
            }
        }
        self.any(h, false)
    }

    /// Distinct keys of the pool.
    fn distinct(&mut self, n: usize) -> Vec<String> {
        let mut keys: Vec<&str> = KEYS.to_vec();
        shuffle(&mut self.rng, &mut keys);
        keys[..n].iter().map(|k| k.to_string()).collect()
    }

    fn scenario(&mut self, name: &str, h: &H) -> Vec<Op> {
        let k = self.distinct(3);
        let (x, y, z) = (k[0].as_str(), k[1].as_str(), k[2].as_str());
        let t = self.rng.pick(&TAGS[..3]).to_string();
        let t = t.as_str();
        let user = gen_user(&mut self.rng);
        match name {
            // 1: the middle entry written before the entry it depends on; the walk finishes.
            "cascade-order" => vec![
                set(x, &[], &[y]),
                set(y, &[t], &[]),
                set(z, &[], &[x]),
                inv(user, Strategy::Lazy, tag_sel(t)),
                Op::ReclaimAll,
            ],
            // 2: RENAME or COPY of a fresh entry to a name a pending mark's selector picks.
            "into-a-mark" => {
                let sel = match self.rng.below(3) {
                    0 => Selector::Pattern(self.rng.pick(&PATTERNS).to_string()),
                    1 => Selector::Namespace(self.rng.pick(&NAMESPACES[..3]).to_string()),
                    _ => Selector::Keys(vec![y.to_string()]),
                };
                let by_name = |k: &str| match &sel {
                    Selector::Pattern(p) => glob(p.as_bytes(), k.as_bytes()),
                    Selector::Namespace(ns) => k.starts_with(&format!("{ns}:")),
                    Selector::Keys(v) => v.iter().any(|n| n == k),
                    _ => false,
                };
                let Some(to) = KEYS.iter().find(|k| by_name(k)).map(|k| k.to_string()) else {
                    return Vec::new();
                };
                let Some(from) = KEYS.iter().find(|k| !by_name(k)).map(|k| k.to_string()) else {
                    return Vec::new();
                };
                let mv = if self.rng.chance(50) {
                    Op::Rename {
                        from: from.clone(),
                        to,
                    }
                } else {
                    Op::Copy {
                        from: from.clone(),
                        to,
                        other_db: false,
                        replace: true,
                    }
                };
                vec![set(&from, &[], &[]), inv(user, Strategy::Lazy, sel), mv]
            }
            // 3: a deadline in the past over a SOFT-stale entry.
            "past-over-stale" => vec![
                set(x, &[t], &[]),
                inv(user, Strategy::Soft(Some(100_000)), tag_sel(t)),
                Op::Set {
                    key: x.to_string(),
                    ttl: Ttl::Past,
                    cond: Cond::None,
                    tags: None,
                    deps: None,
                    guard: None,
                },
            ],
            // 4: the same BATCHED request from both users, one of them restricted.
            "batched-users" => {
                let b = *self.rng.pick(&["b:1", "b:2", "c:1"]);
                let a = *self.rng.pick(&["a:1", "a:2"]);
                vec![
                    set(a, &[t], &[]),
                    set(b, &[t], &[]),
                    inv(User::App, Strategy::Batched, tag_sel(t)),
                    inv(User::Default, Strategy::Batched, tag_sel(t)),
                    Op::Flush,
                ]
            }
            // 5: a queued BATCHED request, then SWAPDB.
            "batched-swapdb" => vec![
                set(x, &[t], &[]),
                inv(user, Strategy::Batched, tag_sel(t)),
                Op::Select(1 - h.cur),
                set(y, &[t], &[]),
                Op::SwapDb,
                Op::Flush,
            ],
            // 6: WATCH, then a LAZY invalidation of the watched entry from another client.
            "watch-lazy" => vec![
                set(x, &[t], &[]),
                Op::Probe {
                    key: x.to_string(),
                    inner: Box::new(inv(user, Strategy::Lazy, tag_sel(t))),
                },
            ],
            // 7: a second mark over an entry an earlier pending mark covers, with a dependent
            // written in between.
            "second-mark" => {
                let second = if self.rng.chance(50) {
                    Selector::Keys(vec![x.to_string()])
                } else {
                    tag_sel(t)
                };
                vec![
                    set(x, &[t], &[]),
                    inv(
                        User::Default,
                        Strategy::Lazy,
                        Selector::Keys(vec![x.to_string()]),
                    ),
                    set(y, &[], &[x]),
                    inv(User::Default, Strategy::Lazy, second),
                ]
            }
            // 8: a covered entry's TTL runs out; its dependent is read.
            "expire-covered" => vec![
                set(x, &[t], &[]),
                set(y, &[], &[x]),
                inv(user, Strategy::Lazy, tag_sel(t)),
                Op::Expire {
                    key: x.to_string(),
                    how: Exp::Short,
                },
            ],
            // 9: x <- y <- z under a pending mark, y expires, the walk finishes.
            "expire-chain" => vec![
                set(x, &[t], &[]),
                set(y, &[], &[x]),
                set(z, &[], &[y]),
                inv(user, Strategy::Lazy, tag_sel(t)),
                Op::Expire {
                    key: y.to_string(),
                    how: Exp::Short,
                },
                Op::ReclaimAll,
            ],
            // A stepped IMMEDIATE's count: a mark made while it waits covers an entry its walk
            // already passed, which the next walk deletes after the stepped one was answered
            // (not its count).
            "stepped-count" => vec![
                set(x, &[t], &[]),
                set(y, &[], &[]),
                set(z, &[], &[]),
                Op::Stepped {
                    user,
                    depth: None,
                    sel: Selector::Keys(vec![x.to_string()]),
                    sub: vec![
                        Op::Reclaim {
                            steps: vec![Some(1)],
                        },
                        inv(User::Default, Strategy::Lazy, Selector::All),
                        Op::ReclaimAll,
                    ],
                    obs: self.rng.next_u64(),
                },
            ],
            // Issue 25's race: a token, an invalidation that selects the entry (or its
            // dependency) in some way, then the guarded write of the old value.
            "stale-set" => {
                let depth = gen_depth(&mut self.rng);
                let sel = match self.rng.below(6) {
                    0 => tag_sel(t),
                    1 => Selector::Keys(vec![x.to_string()]),
                    2 => Selector::Keys(vec![y.to_string()]),
                    3 => Selector::Dependents(vec![y.to_string()]),
                    4 => Selector::Namespace(x[..1].to_string()),
                    _ => Selector::Pattern(self.rng.pick(&PATTERNS).to_string()),
                };
                let strategy = gen_strategy(&mut self.rng);
                let fetch = self.rng.chance(50).then(|| x.to_string());
                let mut ops = vec![
                    set(y, &[t], &[]),
                    set(z, &[], &[y]),
                    Op::Token { fetch },
                    Op::Invalidate {
                        user,
                        strategy,
                        depth,
                        sel,
                        dry: false,
                    },
                    Op::Set {
                        key: x.to_string(),
                        ttl: Ttl::None,
                        cond: Cond::None,
                        tags: Some(vec![t.to_string()]),
                        deps: Some(vec![if self.rng.chance(50) { y } else { z }.to_string()]),
                        guard: Some(Guard::Taken(0)),
                    },
                ];
                if self.rng.chance(50) {
                    ops.push(Op::Flush);
                }
                ops
            }
            _ => Vec::new(),
        }
    }

    fn any(&mut self, h: &H, nested: bool) -> Op {
        loop {
            let op = self.draw(h);
            if (!nested || op.nests()) && !self.excluded(&op) {
                return op;
            }
        }
    }

    fn excluded(&self, op: &Op) -> bool {
        let out = |k: &str| self.without.iter().any(|w| w == k);
        match op {
            Op::Probe { inner, .. } => out(op.kind()) || out(inner.kind()),
            _ => out(op.kind()),
        }
    }

    fn draw(&mut self, h: &H) -> Op {
        let rng = &mut self.rng;
        match rng.below(1000) {
            0..=199 => {
                let key = gen_key(rng);
                let ttl = match rng.below(100) {
                    0..=69 => Ttl::None,
                    70..=79 => Ttl::Long,
                    80..=84 => Ttl::Keep,
                    85..=91 => Ttl::Past,
                    _ => Ttl::Short,
                };
                let cond = match rng.below(100) {
                    0..=79 => Cond::None,
                    80..=89 => Cond::Nx,
                    _ => Cond::Xx,
                };
                let tags = gen_tags(rng, 0, 2);
                let tags = (!tags.is_empty() || rng.chance(10)).then_some(tags);
                let deps = if rng.chance(45) {
                    Vec::new()
                } else {
                    gen_resources(rng, 1, 2)
                };
                let deps = (!deps.is_empty() || rng.chance(10)).then_some(deps);
                let guard = rng.chance(30).then(|| gen_guard(rng));
                if matches!((ttl, cond), (Ttl::None, Cond::None))
                    && guard.is_none()
                    && rng.chance(25)
                {
                    // The same entry, with one or two more, in one CACHE.MSET.
                    let shared = rng.chance(50).then(|| gen_tags(rng, 1, 2));
                    let mut entries = vec![MSetEntry { key, tags, deps }];
                    for _ in 0..1 + rng.below(2) {
                        let own = rng.chance(50).then(|| gen_tags(rng, 0, 2));
                        let deps = rng.chance(40).then(|| gen_resources(rng, 1, 2));
                        entries.push(MSetEntry {
                            key: gen_key(rng),
                            tags: own,
                            deps,
                        });
                    }
                    return Op::MSet { shared, entries };
                }
                Op::Set {
                    key,
                    ttl,
                    cond,
                    tags,
                    deps,
                    guard,
                }
            }
            200..=224 => Op::Tag {
                key: gen_key(rng),
                tags: gen_tags(rng, 1, 2),
            },
            225..=259 => Op::Depend {
                key: gen_key(rng),
                res: gen_resources(rng, 1, 2),
            },
            260..=289 => Op::Del {
                keys: gen_keys(rng, 1, 2),
                unlink: rng.chance(30),
            },
            290..=329 => {
                let (from, to) = (gen_key(rng), gen_key(rng));
                if from == to {
                    return Op::Select(1 - h.cur);
                }
                Op::Rename { from, to }
            }
            330..=369 => {
                let (from, to) = (gen_key(rng), gen_key(rng));
                let other_db = rng.chance(30);
                if from == to && !other_db {
                    return Op::Select(1 - h.cur);
                }
                Op::Copy {
                    from,
                    to,
                    other_db,
                    replace: rng.chance(50),
                }
            }
            370..=394 => Op::Move { key: gen_key(rng) },
            395..=409 => Op::SwapDb,
            410..=413 => Op::FlushDb,
            414..=415 => Op::FlushAll,
            416..=465 => Op::Expire {
                key: gen_key(rng),
                how: match rng.below(100) {
                    0..=59 => Exp::Short,
                    60..=79 => Exp::Past,
                    _ => Exp::Long,
                },
            },
            466..=477 => Op::PlainSet { key: gen_key(rng) },
            478..=485 => Op::Reload,
            486..=685 => Op::Invalidate {
                user: gen_user(rng),
                strategy: gen_strategy(rng),
                depth: gen_depth(rng),
                sel: gen_selector(rng),
                dry: rng.chance(40),
            },
            686..=710 => {
                let user = gen_user(rng);
                let depth = gen_depth(rng);
                let sel = gen_selector(rng);
                let n = self.rng.below(5);
                let sub = (0..n).map(|_| self.any(h, true)).collect();
                Op::Stepped {
                    user,
                    depth,
                    sel,
                    sub,
                    obs: self.rng.next_u64(),
                }
            }
            711..=740 => Op::Flush,
            741..=775 => Op::Write {
                user: gen_user(rng),
                id: 1 + rng.below(2) as u32,
                op: *rng.pick(&[None, Some("create"), Some("update"), Some("delete")]),
            },
            776..=855 => {
                let n = 1 + rng.below(3);
                Op::Reclaim {
                    steps: (0..n)
                        .map(|_| {
                            if rng.chance(20) {
                                None
                            } else {
                                Some(1 + rng.below(4))
                            }
                        })
                        .collect(),
                }
            }
            856..=885 => Op::ReclaimAll,
            886..=935 => {
                let key = gen_key(rng);
                let inner = match self.rng.below(100) {
                    0..=69 => Op::Invalidate {
                        user: gen_user(&mut self.rng),
                        strategy: gen_strategy(&mut self.rng),
                        depth: gen_depth(&mut self.rng),
                        sel: gen_selector(&mut self.rng),
                        dry: false,
                    },
                    70..=79 => Op::Stepped {
                        user: gen_user(&mut self.rng),
                        depth: gen_depth(&mut self.rng),
                        sel: gen_selector(&mut self.rng),
                        sub: Vec::new(),
                        obs: self.rng.next_u64(),
                    },
                    80..=89 => Op::Write {
                        user: gen_user(&mut self.rng),
                        id: 1 + self.rng.below(2) as u32,
                        op: None,
                    },
                    _ => Op::Flush,
                };
                Op::Probe {
                    key,
                    inner: Box::new(inner),
                }
            }
            936..=965 => Op::Token {
                fetch: rng.chance(40).then(|| gen_key(rng)),
            },
            _ => Op::Select(1 - h.cur),
        }
    }
}

/// A guarded set's token: mostly the last one taken, sometimes an older one, rarely made up.
fn gen_guard(rng: &mut Rng) -> Guard {
    match rng.below(100) {
        0..=54 => Guard::Taken(0),
        55..=89 => Guard::Taken(1 + rng.below(TOKENS_KEPT - 1)),
        _ => Guard::MadeUp(*rng.pick(&[0, -7, 12345, i64::MAX, 1 << 40])),
    }
}

// ---------------------------------------------------------------------------------------------
// Runs, failures, shrinking
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Cfg {
    label: String,
    /// The test function, for the replay line.
    test: &'static str,
    module_args: Vec<String>,
    default_depth: u32,
    steps: usize,
    checks: Checks,
    focus: Option<String>,
    without: Vec<String>,
}

struct Failure {
    seed: u64,
    step: usize,
    fail: Fail,
    step_log: Vec<String>,
    recent: Vec<String>,
    ops: Vec<Recorded>,
}

/// Runs `ops` on a fresh server; the first failure, if any: (its step, the failure, the log).
fn replay(cfg: &Cfg, ops: &[Recorded]) -> Option<(usize, Fail, Vec<String>, usize)> {
    let mut h = match H::new(cfg) {
        Ok(h) => h,
        Err(f) => return Some((0, f, Vec::new(), 0)),
    };
    for (i, rec) in ops.iter().enumerate() {
        let before = h.log.len();
        // The step where a divergence showed may have been a checkpoint's: check there too.
        let mut rec = rec.clone();
        rec.checkpoint |= i + 1 == ops.len();
        if let Err(f) = h.run_step(i + 1, &rec) {
            return Some((i + 1, f, std::mem::take(&mut h.log), before));
        }
    }
    None
}

fn run_seed(cfg: &Cfg, seed: u64) -> Result<BTreeMap<&'static str, usize>, Box<Failure>> {
    let mut h = H::new(cfg).map_err(|fail| {
        Box::new(Failure {
            seed,
            step: 0,
            fail,
            step_log: Vec::new(),
            recent: Vec::new(),
            ops: Vec::new(),
        })
    })?;
    let mut gen = Gen {
        rng: Rng(mix(seed)),
        focus: cfg.focus.clone(),
        script: Default::default(),
        without: cfg.without.clone(),
    };
    let mut ops: Vec<Recorded> = Vec::new();
    let mut counts = BTreeMap::new();
    for step in 1..=cfg.steps + 2 {
        let op = if step == cfg.steps + 1 {
            Op::Flush
        } else if step == cfg.steps + 2 {
            Op::ReclaimAll
        } else {
            gen.op(&h, step)
        };
        *counts.entry(op.kind()).or_insert(0) += 1;
        ops.push(Recorded {
            op,
            obs: gen.rng.next_u64(),
            checkpoint: step == cfg.steps + 2,
        });
        let before = h.log.len();
        if let Err(fail) = h.run_step(step, ops.last().expect("pushed")) {
            let from = h.log.len().saturating_sub(200);
            return Err(Box::new(Failure {
                seed,
                step,
                fail,
                step_log: h.log[before..].to_vec(),
                recent: h.log[from..].to_vec(),
                ops,
            }));
        }
    }
    Ok(counts)
}

/// Removes steps while the replay still fails the same way (the same kind of check), for up
/// to `budget`. Returns the steps left, the failure, its log, and the replays made.
fn shrink(
    cfg: &Cfg,
    f: &Failure,
    budget: Duration,
) -> Option<(Vec<Recorded>, Fail, Vec<String>, usize)> {
    let started = Instant::now();
    let mut ops: Vec<Recorded> = f.ops[..f.step].to_vec();
    // The last step is where it showed: keep its checkpoint, if it had one, by forcing one.
    let mut best: Option<(Fail, Vec<String>)> = None;
    let mut replays = 0;
    let mut chunk = (ops.len() / 2).max(1);
    loop {
        let mut progressed = false;
        let mut i = 0;
        while i < ops.len() {
            if started.elapsed() > budget {
                return best.map(|(fl, log)| (ops, fl, log, replays));
            }
            let end = (i + chunk).min(ops.len());
            let mut candidate: Vec<Recorded> = ops[..i].to_vec();
            candidate.extend_from_slice(&ops[end..]);
            if candidate.is_empty() {
                i = end;
                continue;
            }
            replays += 1;
            match replay(cfg, &candidate) {
                Some((step, fl, log, _)) if fl.kind == f.fail.kind && step > 0 => {
                    candidate.truncate(step);
                    ops = candidate;
                    best = Some((fl, log));
                    progressed = true;
                }
                _ => i = end,
            }
        }
        if !progressed {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    if best.is_none() {
        // Nothing could go: replay the whole prefix for its log.
        replays += 1;
        if let Some((_, fl, log, _)) = replay(cfg, &ops) {
            best = Some((fl, log));
        }
    }
    best.map(|(fl, log)| (ops, fl, log, replays))
}

fn report(cfg: &Cfg, f: &Failure, shrink_budget: Duration) -> String {
    let mut knobs = String::new();
    for name in [
        "TAGCACHE_STRATEGY_FOCUS",
        "TAGCACHE_STRATEGY_WITHOUT",
        "TAGCACHE_STRATEGY_SKIP",
    ] {
        if let Ok(v) = std::env::var(name) {
            knobs.push_str(&format!(" {name}={v:?}"));
        }
    }
    let mut out = format!(
        "{}: seed {} diverged at step {} of {} ({})\n  replay: TAGCACHE_SEED={} TAGCACHE_STRATEGY_STEPS={}{knobs} TAGCACHE_SERVER={} cargo test --test strategies {}\n  [{}] {}\n  the step:\n",
        cfg.label,
        f.seed,
        f.step,
        cfg.steps,
        server_binary(),
        f.seed,
        cfg.steps,
        server_binary(),
        cfg.test,
        f.fail.kind,
        f.fail.what
    );
    for l in &f.step_log {
        out.push_str(&format!("    {l}\n"));
    }
    out.push_str("  the last commands before it (without the reads after each step):\n");
    let recent: Vec<&String> = f
        .recent
        .iter()
        .filter(|l| !l.contains("[reads db"))
        .collect();
    for l in &recent[recent.len().saturating_sub(30)..] {
        out.push_str(&format!("    {l}\n"));
    }
    if shrink_budget > Duration::ZERO && f.step > 0 {
        let started = Instant::now();
        match shrink(cfg, f, shrink_budget) {
            Some((ops, fl, log, replays)) => {
                out.push_str(&format!(
                    "  shrunk to {} of {} steps ({replays} replays, {:.1} s); every command of it (\"[reads]\" lines are the checks after each step):\n",
                    ops.len(),
                    f.step,
                    started.elapsed().as_secs_f64()
                ));
                out.push_str("    (the set-up: H::new)\n");
                for l in log.iter().filter(|l| !l.starts_with("s0 ")) {
                    out.push_str(&format!("    {l}\n"));
                }
                out.push_str(&format!("    -> [{}] {}\n", fl.kind, fl.what));
                let kinds: Vec<&str> = ops.iter().map(|r| r.op.kind()).collect();
                out.push_str(&format!("  the shrunk steps: {kinds:?}\n"));
            }
            None => out.push_str("  (the divergence did not show again on a replay)\n"),
        }
    }
    out
}

fn run(test: &'static str, label: &str, module_args: &[&str], default_depth: u32, first_seed: u64) {
    let steps = env_u64("TAGCACHE_STRATEGY_STEPS").unwrap_or(700) as usize;
    let cfg = Cfg {
        label: label.to_string(),
        test,
        module_args: module_args.iter().map(|s| s.to_string()).collect(),
        default_depth,
        steps,
        checks: Checks::from_env(),
        focus: std::env::var("TAGCACHE_STRATEGY_FOCUS").ok(),
        without: std::env::var("TAGCACHE_STRATEGY_WITHOUT")
            .unwrap_or_default()
            .split(',')
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty())
            .collect(),
    };
    let shrink_budget = Duration::from_secs(env_u64("TAGCACHE_STRATEGY_SHRINK").unwrap_or(30));
    let keep_going = env_u64("TAGCACHE_STRATEGY_KEEP_GOING").unwrap_or(0) != 0;
    let first = env_u64("TAGCACHE_STRATEGY_FIRST_SEED").unwrap_or(first_seed);
    let seconds = env_u64("TAGCACHE_STRATEGY_SECONDS");
    let seeds: Box<dyn Iterator<Item = u64>> = match (env_u64("TAGCACHE_SEED"), seconds) {
        (Some(s), _) => Box::new(std::iter::once(s)),
        (None, Some(_)) => Box::new(first..),
        (None, None) => {
            let n = env_u64("TAGCACHE_STRATEGY_SEEDS").unwrap_or(16);
            Box::new(first..first + n)
        }
    };
    let started = Instant::now();
    let mut ran = 0;
    let mut failed: Vec<String> = Vec::new();
    let mut totals: BTreeMap<&'static str, usize> = BTreeMap::new();
    // Steps run and the time they took (shrinking left out).
    let mut stepped = 0;
    let mut busy = Duration::ZERO;
    for seed in seeds {
        if seconds.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        ran += 1;
        let t = Instant::now();
        let outcome = run_seed(&cfg, seed);
        busy += t.elapsed();
        match outcome {
            Ok(counts) => {
                stepped += steps + 2;
                for (k, n) in counts {
                    *totals.entry(k).or_insert(0) += n;
                }
            }
            Err(f) => {
                stepped += f.step;
                let text = report(&cfg, &f, shrink_budget);
                failed.push(format!(
                    "seed {} step {} [{}] {}",
                    f.seed, f.step, f.fail.kind, f.fail.what
                ));
                if !keep_going {
                    panic!("{text}");
                }
                eprintln!("{text}");
            }
        }
    }
    eprintln!(
        "{label}: {ran} seeds x {steps} steps in {:.1} s on {}: {} diverged ({stepped} steps run, {:.2} ms each)\n  operations of the seeds that did not diverge: {totals:?}",
        started.elapsed().as_secs_f64(),
        server_binary(),
        failed.len(),
        busy.as_secs_f64() * 1000.0 / stepped.max(1) as f64
    );
    for f in &failed {
        eprintln!("  {f}");
    }
    assert!(
        failed.is_empty(),
        "{} of {ran} seeds diverged:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn every_strategy_reads_as_immediate() {
    run(
        "every_strategy_reads_as_immediate",
        "strategies",
        &[],
        16,
        1,
    );
}

#[test]
fn every_strategy_reads_as_immediate_with_a_shallow_default_cascade() {
    run(
        "every_strategy_reads_as_immediate_with_a_shallow_default_cascade",
        "strategies (max-cascade-depth 2)",
        &["max-cascade-depth", "2"],
        2,
        1_000_001,
    );
}

#[test]
fn the_model_cascade_skips_what_the_user_may_not_delete() {
    let mut db = Db::default();
    let e = |tags: &[&str], deps: &[&str]| {
        Val::Entry(Entry {
            value: "v".into(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            deps: deps.iter().map(|s| s.to_string()).collect(),
            life: Life::Fresh,
            why: String::new(),
        })
    };
    db.put("a:1", e(&["t1"], &[]));
    db.put("b:1", e(&[], &["a:1"]));
    db.put("a:2", e(&[], &["b:1"]));
    db.put("a:3", e(&[], &["a:1"]));
    let sel = Selector::Tags(vec!["t1".into()]);
    let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        resolve(&db, &sel, 16, User::Default),
        all(&["a:1", "a:2", "a:3", "b:1"])
    );
    assert_eq!(
        resolve(&db, &sel, 1, User::Default),
        all(&["a:1", "a:3", "b:1"])
    );
    assert_eq!(resolve(&db, &sel, 16, User::App), all(&["a:1", "a:3"]));
    assert_eq!(resolve(&db, &sel, 0, User::App), all(&["a:1"]));
    // A covered entry is out of the world: no selection, no cascade through it.
    if let Some(Val::Entry(x)) = db.keys.get_mut("a:1") {
        x.life = Life::Covered;
    }
    assert!(resolve(&db, &sel, 16, User::Default).is_empty());
    assert_eq!(
        resolve(&db, &Selector::Keys(vec!["b:1".into()]), 16, User::Default),
        all(&["a:2", "b:1"])
    );
    assert!(glob(b"b:[^1]", b"b:2") && !glob(b"b:[^1]", b"b:1"));
    assert!(glob(b"*:[23]", b"c:2") && glob(b"[ab]:1", b"a:1") && !glob(b"?:2", b"a:1"));
}
