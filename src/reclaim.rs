//! The LAZY strategy in the server: making marks, telling readers which entries they cover, and
//! the reclaimer that deletes those entries in small timed steps (see `core::lazy`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis_module::{Context, RedisString};

use crate::config;
use crate::core::entry::Entry;
use crate::core::index::{self, PackedNames, Selector};
use crate::core::lazy::{self, encode_mark, LazyDb, Mark};
use crate::core::parse::Strategy;
use crate::error::Result;
use crate::server::{self, Access, Blocked, Held, Key};
use crate::state::{self, Leaving};

/// Keys an invalidation reached, each with the cascade hops left after it (see
/// `Reach::frontier`).
pub type Frontier = Vec<(Vec<u8>, u32)>;

/// The marks' users' permissions, asked once per user while one question or step runs.
struct Permissions<'a> {
    ctx: &'a Context,
    users: Vec<(Vec<u8>, Option<Access>)>,
    /// The server string of the name asked for last: the reclaimer opens a key and then checks
    /// the marks' users' permissions on the same name.
    last: Option<RedisString>,
}

impl<'a> Permissions<'a> {
    fn new(ctx: &'a Context) -> Self {
        Permissions {
            ctx,
            users: Vec::new(),
            last: None,
        }
    }

    /// `name` as a server string, made once while the same name is asked for again.
    fn string(&mut self, name: &[u8]) -> &RedisString {
        cached(self.ctx, &mut self.last, name)
    }

    /// Whether `user` (None: no restriction) may delete `name`.
    fn allowed(&mut self, user: Option<&[u8]>, name: &[u8]) -> bool {
        let Some(user) = user else {
            return true;
        };
        let i = match self.users.iter().position(|(u, _)| u == user) {
            Some(i) => i,
            None => {
                self.users
                    .push((user.to_vec(), Access::of_user(self.ctx, user)));
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

    /// The first of `marks` that covers the entry `e` under `name`.
    fn covering<'m>(&mut self, marks: &'m [Mark], name: &[u8], e: &Entry) -> Option<&'m Mark> {
        lazy::covering(marks, name, e, |m| self.allowed(m.user.as_deref(), name))
    }
}

fn cached<'s>(ctx: &Context, last: &'s mut Option<RedisString>, name: &[u8]) -> &'s RedisString {
    if last.as_ref().is_some_and(|s| s.as_slice() != name) {
        *last = None;
    }
    last.get_or_insert_with(|| server::string(ctx, name))
}

/// Whether a LAZY invalidation covers the entry `e` under `name` in the selected database: then
/// it reads as missing. Costs one flag check while no marks exist (the hot read path).
pub fn gone(ctx: &Context, name: &[u8], e: &Entry) -> bool {
    with_covering(ctx, server::selected_db(ctx), name, e, |_| ()).is_some()
}

/// The oldest mark of `db` that covers the entry `e` under `name` (what `f` makes of it), if any.
fn with_covering<R>(
    ctx: &Context,
    db: usize,
    name: &[u8],
    e: &Entry,
    f: impl FnOnce(&Mark) -> R,
) -> Option<R> {
    // Written after every mark (the usual case): nothing covers it, no lock taken.
    if e.born() >= state::newest_mark() {
        return None;
    }
    let marks = state::lock().lazy().marks(db)?;
    if marks.last().is_none_or(|newest| newest.gen <= e.born()) {
        return None;
    }
    Permissions::new(ctx).covering(&marks, name, e).map(f)
}

/// Whether a mark of `db` covers the entry `e` under `name`: what an alias under `to` would be.
pub fn alias_if_covered(
    ctx: &Context,
    db: usize,
    name: &[u8],
    e: &Entry,
    to: &[u8],
) -> Option<Mark> {
    with_covering(ctx, db, name, e, |m| m.alias(to))
}

/// The guard's question of a dependency `name` that still holds an entry, for a new entry
/// `key`: the history number of the mark covering it whose cascade goes on from it and whose
/// user may delete `key`, if any. The cascade goes on from an entry the mark's selector picks
/// when the mark cascades at all; from one its cascade reached, only with hops left, and those
/// were recorded when the mark was made (`add`): an entry reached at the last hop refuses
/// nothing.
pub fn covering_seq(ctx: &Context, db: usize, name: &[u8], e: &Entry, key: &[u8]) -> Option<u64> {
    if e.born() >= state::newest_mark() {
        return None;
    }
    let marks = state::lock().lazy().marks(db)?;
    let mut perms = Permissions::new(ctx);
    let m = perms.covering(&marks, name, e)?;
    let credited = lazy::credits(m, name, e, arrival(db, name));
    (credited && perms.allowed(m.user.as_deref(), key)).then_some(m.seq)
}

/// The newest mark's generation when a covered entry arrived under `name` in `db` (see
/// `LazyDb::arrival`).
fn arrival(db: usize, name: &[u8]) -> Option<u64> {
    state::lock().lazy().get(db).and_then(|l| l.arrival(name))
}

/// Whether cache commands see the entry: neither stale (SOFT) nor covered by LAZY.
pub fn live(ctx: &Context, name: &[u8], e: &Entry) -> bool {
    !e.is_stale() && !gone(ctx, name, e)
}

/// The cascade of `mark` (made now, not added yet) in `db`, resolved on the keyspace as it is:
/// the entries that IMMEDIATE would delete through dependencies beyond what the selector picks.
/// An entry that an older mark already covers is gone for this one: it neither counts nor
/// passes the cascade on, and neither does a key the mark's user may not delete.
///
/// Cost: the cascade can only start at a selected entry that another entry depends on, so the
/// seeds are found among the resources that may name an entry (or among the selected entries,
/// when they are fewer), never by visiting every selected entry; then each entry reached is
/// opened once. Refused past `limit` entries (`cache.max-cascade-entries`, 0: none).
fn resolve(ctx: &Context, db: usize, mark: &Mark, limit: usize) -> Result<Resolved> {
    if mark.depth == 0 || matches!(mark.selector, Selector::All) {
        return Ok(Resolved::default());
    }
    let older = state::lock().lazy().marks(db).unwrap_or_default();
    let (resources, seeds) = state::with_db(db, |idx| {
        let resources = idx.entry_resources();
        let few = match &mark.selector {
            Selector::Keys(k) => Some(k.clone()),
            Selector::Tags(_) | Selector::Dependents(_) | Selector::Namespace(_)
                if idx.count(&mark.selector) <= resources.len() as u64 =>
            {
                Some(idx.select(&mark.selector))
            }
            _ => None,
        };
        let seeds = few.map(|v| v.into_iter().filter(|k| idx.is_resource(k)).collect());
        (resources, seeds)
    });
    let mut perms = Permissions::new(ctx);
    // Whether `name` is an entry this mark can take (None: not), and whether its selector
    // picks it.
    let live = |perms: &mut Permissions, name: &[u8]| -> Option<bool> {
        if !perms.allowed(mark.user.as_deref(), name) {
            return None;
        }
        let rs = perms.string(name).safe_clone(ctx);
        let key = Key::probe(ctx, &rs);
        let Held::Entry(e) = key.held() else {
            return None;
        };
        if perms.covering(&older, name, e).is_some() {
            return None;
        }
        Some(mark.picks(name, e))
    };
    let seeds: Vec<Vec<u8>> = match seeds {
        Some(s) => s,
        None => resources
            .into_iter()
            .filter(|r| live(&mut perms, r) == Some(true))
            .collect(),
    };
    if seeds.is_empty() {
        return Ok(Resolved::default());
    }
    let allowed = if limit == 0 {
        usize::MAX
    } else {
        seeds.len().saturating_add(limit)
    };
    let mut seen = 0usize;
    // Entries the cascade reached that the selector picks too: the selector covers them.
    let mut picked = ahash::AHashSet::new();
    let reach = index::cascade(
        seeds,
        mark.depth,
        |keys| state::with_db(db, |idx| idx.dependents_of_all(keys)),
        |name| {
            seen += 1;
            match (seen <= allowed).then(|| live(&mut perms, name)).flatten() {
                Some(picks) => {
                    if picks {
                        picked.insert(name.to_vec());
                    }
                    true
                }
                None => false,
            }
        },
    );
    if seen > allowed {
        return Err(crate::core::limits::cascade_too_large(limit));
    }
    let cascade = reach.keys[reach.selected..]
        .iter()
        .filter(|k| !picked.contains(*k))
        .cloned()
        .collect();
    Ok(Resolved {
        cascade,
        frontier: reach.frontier(mark.depth),
    })
}

/// A mark's cascade as `resolve` found it.
#[derive(Default)]
struct Resolved {
    /// The keys reached beyond what the selector picks.
    cascade: Vec<Vec<u8>>,
    /// The keys reached (selected ones included) from which the cascade could go on, each with
    /// the hops left after it: the guard's history records them.
    frontier: Frontier,
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

/// `CACHE.INVALIDATE STRATEGY LAZY`: marks what the selector covers in `db` (no selected entry
/// is visited; the cascade is resolved now, see `resolve`), replicates the mark, and sets the
/// reclaimer going. Returns the number of entries the selector picks now (counted from the
/// index) plus those its cascade reached.
pub fn invalidate(
    ctx: &Context,
    db: usize,
    selector: Selector,
    depth: Option<u32>,
    context: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
    limited: bool,
) -> Result<u64> {
    let noted = Noted::of(&selector, context.as_deref(), user.as_deref());
    let picked = server::entries_only(ctx, &selector);
    let selected = state::with_db(db, |idx| idx.count(&picked));
    drop(picked);
    let mark = new_mark(db, selector, selected, depth, context, user);
    let (mark, frontier) = prepare(ctx, db, mark, limited)?;
    let n = selected + mark.cascade().len() as u64;
    add(ctx, db, (mark, &frontier));
    noted.record(ctx, n, Strategy::Lazy);
    Ok(n)
}

/// A mark for `selector` (which picks `selected` entries now), its cascade not resolved yet.
fn new_mark(
    db: usize,
    selector: Selector,
    selected: u64,
    depth: Option<u32>,
    context: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
) -> Mark {
    let any_dependency = state::with_db(db, |idx| idx.resource_count() > 0);
    let hops = depth.unwrap_or_else(config::max_cascade_depth);
    // Without any dependency there is no cascade to follow.
    let depth = if any_dependency { hops } else { 0 };
    let mut m = Mark::new(
        0,
        selector,
        depth,
        user,
        context,
        server::now_ms(),
        selected,
    );
    m.hops = if matches!(m.selector, Selector::All) {
        0
    } else {
        hops
    };
    m
}

/// The mark with its cascade resolved, not added yet: refused when `limited` and the cascade
/// is past `cache.max-cascade-entries`.
fn prepare(ctx: &Context, db: usize, mut mark: Mark, limited: bool) -> Result<(Mark, Frontier)> {
    // A user who may delete every key covers what the selector picks, whatever happens to the
    // user later (deleted, its rights changed): the mark keeps no user to ask.
    if mark
        .user
        .as_deref()
        .is_some_and(|u| server::writes_every_key(ctx, u))
    {
        mark.user = None;
    }
    let limit = if limited {
        crate::guard::limits(ctx).cascade_entries
    } else {
        0
    };
    let r = resolve(ctx, db, &mark, limit)?;
    Ok((mark.with_cascade(r.cascade), r.frontier))
}

/// Adds a prepared mark with a new generation, replicates it and arms the reclaimer; returns
/// its generation and its history number.
fn add(ctx: &Context, db: usize, (mut mark, frontier): (Mark, &Frontier)) -> (u64, u64) {
    let gen = state::next_generation();
    mark.gen = gen;
    // The guard's history: the selector now, the cascade's keys now, the selected entries as
    // the reclaimer deletes them (see `reclaim_one`).
    let user = mark.user.as_deref();
    mark.seq = crate::history::begin(db, &mark.selector, user);
    crate::history::removed(
        db,
        mark.seq,
        user,
        frontier.iter().map(|(k, _)| k.as_slice()),
    );
    let seq = mark.seq;
    let bytes = encode_mark(&mark);
    state::lock().lazy_mut(|l| l.db(db).add(mark));
    server::replicate(
        ctx,
        "CACHE.PENDING",
        &[b"MARK", db.to_string().as_bytes(), &bytes],
    );
    // WATCH and tracking see what the mark covers now, as they see IMMEDIATE's deletes.
    crate::watch::marked(ctx, db);
    arm(ctx);
    (gen, seq)
}

/// An IMMEDIATE invalidation running in the reclaimer's steps, answered when done.
struct Waiter {
    owner: Owner,
    db: usize,
    gen: u64,
    /// Entries the reclaimer deleted in `db` since the invalidation began.
    deleted: u64,
    noted: Noted,
    /// For another master's request (`Owner::Part`): the mark's history number, the hops its
    /// selected entries leave, and the keys it removed from which the cascade goes on across
    /// shards, as IMMEDIATE's would have (the cascade's keys when the mark was made, each
    /// selected entry as it leaves: wherever the guard's history learns it, see `removed`).
    seq: u64,
    hops: u32,
    frontier: Frontier,
    /// What `frontier` holds on the heap (counted in STATS `memory`).
    frontier_bytes: usize,
}

/// The heap a frontier entry takes: the key's bytes and its slot.
fn frontier_entry_bytes(key: &[u8]) -> usize {
    key.len() + std::mem::size_of::<(Vec<u8>, u32)>()
}

/// The heap the stepped invalidations waiting here take (their frontiers for other masters
/// included): STATS `memory` counts it with the cluster bookkeeping.
pub fn waiters_bytes() -> u64 {
    waiters()
        .iter()
        .map(|x| std::mem::size_of::<Waiter>() + x.frontier_bytes)
        .sum::<usize>() as u64
}

/// Who a stepped invalidation answers.
enum Owner {
    /// The client that sent it, blocked.
    Client(Blocked),
    /// A cluster-wide invalidation's part on this master (`cluster::stepping`): the part's
    /// token and the command's place in it.
    Part(u64, usize),
}

static WAITERS: Mutex<Vec<Waiter>> = Mutex::new(Vec::new());

fn waiters() -> std::sync::MutexGuard<'static, Vec<Waiter>> {
    WAITERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The guard's history learns that the mark `seq` of `db` removed `keys`; a cluster-wide part
/// stepping under that mark adds them to the frontier it answers with.
fn removed<'k>(db: usize, seq: u64, user: Option<&[u8]>, keys: impl IntoIterator<Item = &'k [u8]>) {
    let keys: Vec<&[u8]> = keys.into_iter().collect();
    crate::history::removed(db, seq, user, keys.iter().copied());
    let mut w = waiters();
    if let Some(x) = w
        .iter_mut()
        .find(|x| x.seq == seq && matches!(x.owner, Owner::Part(..)))
    {
        let hops = x.hops;
        x.frontier_bytes += keys.iter().map(|k| frontier_entry_bytes(k)).sum::<usize>();
        x.frontier.extend(keys.iter().map(|k| (k.to_vec(), hops)));
    }
}

/// Whether an IMMEDIATE invalidation of `selector` in `db` should run in bounded steps: it
/// selects (or its `cascade`, as measured on the index, reaches) at least
/// `cache.stepped-threshold` entries, and the client can wait. Some(entries it selects). The
/// reclaimer walks the whole database, so a small selection in a large database waits for the
/// walk; but deleting it at once would hold the server for as long as the selection is large
/// (about 0.8 µs an entry), which the 50 ms bound does not allow past the threshold.
/// A cluster-wide invalidation's part (`part`) waits in the same way, answering its sender
/// when done instead of a client.
pub fn steps_pay_off(
    ctx: &Context,
    db: usize,
    selector: &Selector,
    cascade: usize,
    part: bool,
) -> Option<u64> {
    let threshold = config::STEPPED_THRESHOLD.get();
    if threshold == 0 || server::is_replica(ctx) || !(part || server::can_block(ctx)) {
        return None;
    }
    let threshold = u64::try_from(threshold).unwrap_or(u64::MAX);
    // Counting a pattern visits names, and a KEY list opens keys: not where the database is
    // too small anyway, nor for a list shorter than the threshold.
    let entries = state::with_db(db, |idx| idx.len() as u64);
    let cascade = cascade as u64;
    if cascade >= threshold {
        // A cascade this large (as measured on the index) is deleted in steps too, whatever
        // the selector picks itself.
        let selector = server::entries_only(ctx, selector);
        return Some(state::with_db(db, |idx| idx.count(&selector)));
    }
    let few_keys = matches!(selector, Selector::Keys(k) if (k.len() as u64) < threshold);
    if entries < threshold || few_keys {
        return None;
    }
    let selector = server::entries_only(ctx, selector);
    let selected = state::with_db(db, |idx| idx.count(&selector));
    (selected >= threshold).then_some(selected)
}

/// An IMMEDIATE invalidation in steps: the entries read as missing at once (a mark, as LAZY);
/// the client is blocked until the reclaimer deleted them, then gets the number deleted. Part
/// of a cluster-wide invalidation (`cluster::stepping`), the master that sent it is answered
/// instead, with the frontier its cascade goes on from on the other masters.
pub fn invalidate_stepped(
    ctx: &Context,
    db: usize,
    selector: Selector,
    selected: u64,
    depth: Option<u32>,
    context: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
) -> Result<bool> {
    let noted = Noted::of(&selector, context.as_deref(), user.as_deref());
    let mark = new_mark(db, selector, selected, depth, context, user);
    let (mark, frontier) = prepare(ctx, db, mark, true)?;
    let hops = mark.hops;
    let owner = match crate::cluster::stepping() {
        Some((token, i)) => Owner::Part(token, i),
        None => match Blocked::block(ctx) {
            Some(client) => Owner::Client(client),
            None => return Ok(false),
        },
    };
    let (gen, seq) = add(ctx, db, (mark, &frontier));
    let frontier = match owner {
        Owner::Part(..) => frontier,
        Owner::Client(_) => Vec::new(),
    };
    let frontier_bytes = frontier.iter().map(|(k, _)| frontier_entry_bytes(k)).sum();
    waiters().push(Waiter {
        owner,
        db,
        gen,
        deleted: 0,
        noted,
        seq,
        hops,
        frontier,
        frontier_bytes,
    });
    Ok(true)
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
        match x.owner {
            Owner::Client(client) => client.answer(Ok(server::Reply::Int(n))),
            Owner::Part(token, i) => {
                crate::cluster::part_done(ctx, token, i, Ok(server::Reply::Int(n)), x.frontier)
            }
        }
    }
    // The senders of the parts still stepping learn that they go on (see
    // `cluster::part_going`).
    let going: Vec<u64> = waiters()
        .iter()
        .filter_map(|x| match x.owner {
            Owner::Part(token, _) => Some(token),
            Owner::Client(_) => None,
        })
        .collect();
    for token in going {
        crate::cluster::part_going(ctx, token);
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

/// FLUSHDB (`db`) or FLUSHALL (None) is about to delete every key: the entries LAZY marks cover
/// leave without the reclaimer, and the guard's history learns which marks removed them (see
/// `credit`, the users asked), as it does for one covered entry leaving its name. Visits the entries
/// the cascading marks' selectors pick (the flush itself visits every key).
pub fn flushing(ctx: &Context, db: Option<usize>) {
    let cascades = |m: &Mark| m.hops > 0 && m.seq > 0;
    let marked: Vec<(usize, LazyDb)> = state::lock()
        .lazy()
        .busy()
        .filter(|(d, l)| db.is_none_or(|x| x == *d) && l.marks().iter().any(cascades))
        .map(|(d, l)| (d, l.clone()))
        .collect();
    let original = server::selected_db(ctx);
    for (d, l) in marked {
        let marks = l.marks();
        let mut names: Vec<Vec<u8>> = state::with_db(d, |idx| {
            marks
                .iter()
                .filter(|m| cascades(m))
                .flat_map(|m| idx.select(&m.selector))
                .collect()
        });
        names.sort_unstable();
        names.dedup();
        if !server::select_db(ctx, d) {
            continue;
        }
        let mut perms = Permissions::new(ctx);
        for name in names {
            let key = Key::probe(ctx, &server::string(ctx, &name));
            let Held::Entry(e) = key.held() else {
                continue;
            };
            let candidates: Vec<(u64, Option<&[u8]>, bool)> =
                lazy::candidates(&marks, &name, e, l.arrival(&name))
                    .into_iter()
                    .map(|(m, credited)| (m.seq, m.user.as_deref(), credited))
                    .collect();
            credit(&mut perms, d, &name, candidates.into_iter());
        }
    }
    server::select_db(ctx, original);
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
    let mut perms = Permissions::new(ctx);
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
            if let Some(rs) = reclaim_one(ctx, db, name, &marks, &mut perms) {
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
    perms: &mut Permissions,
) -> Option<RedisString> {
    let rs = perms.string(name).safe_clone(ctx);
    let key = Key::write(ctx, &rs);
    // Whether a mark covers it, and which marks its history must learn removed the entry
    // (selected by the mark, which cascades: the cascade's own keys were recorded with it; not
    // when the entry arrived here covered, after the mark).
    let candidates: Vec<(u64, Option<Vec<u8>>, bool)> = match key.held() {
        Held::Entry(e) if marks.last().is_some_and(|m| m.gen > e.born()) => {
            perms.covering(marks, name, e)?;
            lazy::candidates(marks, name, e, arrival(db, name))
                .into_iter()
                .map(|(m, credited)| (m.seq, m.user.clone(), credited))
                .collect()
        }
        _ => return None,
    };
    credit(
        perms,
        db,
        name,
        candidates
            .iter()
            .map(|(seq, user, c)| (*seq, user.as_deref(), *c)),
    );
    // The history was told above: the unlink callback is not to credit the marks again (see
    // `reclaiming`).
    RECLAIMING.store(true, Ordering::Relaxed);
    crate::commands::delete_as_del(ctx, db, name, key, &rs);
    RECLAIMING.store(false, Ordering::Relaxed);
    Some(rs)
}

/// A covered entry left `key` of `db` by another way than the reclaimer (`leaving`, see
/// `State::covered_leaving`): the history learns which mark removed it under IMMEDIATE, as the
/// reclaimer would have told it (its cascade goes on from it; see `credit`). Without a context
/// to ask the users with, every credited mark up to an unrestricted one is recorded: that only
/// refuses more. Call without the state's lock.
pub fn credit_leaving(ctx: Option<&Context>, db: usize, key: &[u8], leaving: &[Leaving]) {
    if leaving.is_empty() {
        return;
    }
    let candidates = leaving
        .iter()
        .map(|(seq, user, credited)| (*seq, user.as_deref(), *credited));
    match ctx {
        Some(ctx) => credit(&mut Permissions::new(ctx), db, key, candidates),
        None => {
            for (seq, user, _) in candidates.filter(|(_, _, credited)| *credited) {
                removed(db, seq, user, [key]);
            }
        }
    }
}

/// Tells the history which of the marks that may have removed the entry `name` of `db`
/// (`candidates`, oldest first: sequence number, user, whether it is credited; see
/// `lazy::candidates`) removed it under IMMEDIATE: the first whose user may delete it. The
/// users' rights are asked now, so they tell what they were when the marks were made only if
/// no ACL change came since: when a restricted candidate is from before one, its user may have
/// been kept from the key then and allowed now (a wrong accept, were it credited alone), so
/// every credited candidate is recorded instead, which only refuses more.
fn credit<'u>(
    perms: &mut Permissions,
    db: usize,
    name: &[u8],
    candidates: impl Iterator<Item = (u64, Option<&'u [u8]>, bool)> + Clone,
) {
    let rights_changed = candidates
        .clone()
        .any(|(seq, user, _)| user.is_some() && !crate::history::trusted(seq));
    if rights_changed {
        for (seq, user, _) in candidates.filter(|(_, _, credited)| *credited) {
            removed(db, seq, user, [name]);
        }
        return;
    }
    let mut candidates = candidates;
    if let Some((seq, user, true)) = candidates.find(|(_, user, _)| perms.allowed(*user, name)) {
        removed(db, seq, user, [name]);
    }
}

/// The reclaimer is deleting an entry (main thread, within `reclaim_one`).
static RECLAIMING: AtomicBool = AtomicBool::new(false);

/// Whether the entry leaving now is the reclaimer's to record (see `reclaim_one`).
pub fn reclaiming() -> bool {
    RECLAIMING.load(Ordering::Relaxed)
}
