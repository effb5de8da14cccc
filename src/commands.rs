//! Command handlers: parse into typed arguments, validate everything, then act on the keyspace,
//! update the index, notify and replicate.

use std::time::{Duration, Instant};

use redis_module::{Context, RedisString};
use smallvec::SmallVec;

use crate::cluster::{self, Cascade, Job};
use crate::config;
use crate::core::batch::{decode_item, encode_item, Queued};
use crate::core::entry::{Entry, LinkChange, NameIter};
use crate::core::glob::Glob;
use crate::core::index::hash_key;
use crate::core::index::{self, DbIndex, Reach, Selector};
use crate::core::lazy::decode_mark;
use crate::core::limits;
use crate::core::metrics::{Field, InvalidationRecord, Op};
use crate::core::parse::{self, Condition, DebugArgs, Expiry, PendingArgs, Strategy};
use crate::core::rules::{RelateCommand, RowValue, RuleCommand, RuleReply, RuleStrategy, Rules};
use crate::core::wire::{self, Merge};
use crate::error::{self, CacheError, Result};
use crate::guard;
use crate::reclaim;
use crate::server::{self, Access, Key, Reply, Viewer, NOTIFY_GENERIC, NOTIFY_MODULE};
use crate::state::{self, Quiet};

/// A command handler: the context, the arguments as the server gave them and as bytes.
pub(crate) type Handler = fn(&Context, &[RedisString], &[&[u8]]) -> Result<Reply>;

/// The command boundary: runs a handler, turns its error or any panic into an error reply, and
/// records the latency of `op` when the command succeeds (CACHE.GET and CACHE.MGET record
/// theirs with their hits and misses).
pub fn run(ctx: &Context, args: &[RedisString], handler: Handler, op: Option<Op>) {
    // The clock is read only for the commands timed here.
    let started = op.map(|_| Instant::now());
    let outcome = error::catch(|| {
        let argv: SmallVec<[&[u8]; 16]> = args.iter().map(|a| a.as_slice()).collect();
        handler(ctx, args, &argv)
    });
    if let (Some(op), Some(started), Ok(Ok(_))) = (op, started, &outcome) {
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let th = config::thresholds();
        state::lock().metrics_started().record_op(op, us, &th);
    }
    match outcome {
        Ok(Ok(reply)) => server::reply(ctx, &reply),
        Ok(Err(e)) => server::reply_error(ctx, &e),
        Err(why) => {
            ctx.log_warning(&format!("tagcache: command failed: {why}"));
            server::reply_error(ctx, &CacheError::Internal(why));
        }
    }
}

pub(crate) fn cache_set(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let now = server::now_ms();
    let a = parse::parse_set(argv, now)?;
    let replayed = server::replayed(ctx);
    guard::limits_for(replayed).check_set(&a)?;
    store(ctx, &args[1], &a, now, replayed, true)
}

/// `CACHE.MSET [options] ENTRY key value [options] ...`: every entry is parsed and checked
/// against the limits, and every key is checked to hold a cache entry or nothing, before the
/// first is stored; then each is stored as CACHE.SET stores it. The server wraps what they
/// propagate (one canonical CACHE.SET each) in one MULTI/EXEC, so replicas and the AOF apply
/// the batch at once too.
pub(crate) fn cache_mset(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let now = server::now_ms();
    let entries = parse::parse_mset(argv, now)?;
    crate::core::limits::check_mset(&entries)?;
    let replayed = server::replayed(ctx);
    let limits = guard::limits_for(replayed);
    for (_, e) in &entries {
        limits.check_set(e)?;
        if !Entry::fits(e.value, e.tags, e.deps, e.meta) {
            return Err(CacheError::TooLarge);
        }
    }
    for (at, _) in &entries {
        Key::write(ctx, &args[*at]).entry()?;
    }
    for (at, e) in &entries {
        store(ctx, &args[*at], e, now, replayed, false)?;
    }
    Ok(Reply::Ok)
}

/// Key positions of a CACHE.MSET, for the server's getkeys (cluster slots, ACL): none when
/// the command does not parse (it is refused when it runs).
pub fn mset_keys(argv: &[&[u8]]) -> Vec<usize> {
    parse::parse_mset(argv, 0).map_or_else(
        |_| Vec::new(),
        |v| v.into_iter().map(|(at, _)| at).collect(),
    )
}

/// Stores one parsed CACHE.SET at `key_name` (CACHE.SET, or one entry of CACHE.MSET).
/// `verbatim`: the command is this CACHE.SET alone, which propagates as sent when it is
/// deterministic; else the canonical CACHE.SET propagates.
fn store(
    ctx: &Context,
    key_name: &RedisString,
    a: &parse::SetArgs,
    now: i64,
    replayed: bool,
    verbatim: bool,
) -> Result<Reply> {
    let name = a.key;
    let mut key = Key::write(ctx, key_name);
    let db = server::selected_db(ctx);
    // An entry a LAZY invalidation covers is gone as far as the command can tell, and so is a
    // stale one (SOFT): NX fills it, XX and KEEPTTL find nothing.
    let held = key.entry()?.is_some();
    let existing = held && key.entry()?.is_some_and(|e| reclaim::live(ctx, name, e));
    match (a.condition, existing) {
        (Condition::IfMissing, true) | (Condition::IfExists, false) => return Ok(Reply::Nil),
        _ => {}
    }
    // GUARD: nothing is stored when an invalidation since the token would select the entry
    // (checked where the command is decided, not again on replicas or AOF replay). Refused or
    // not, the caller's lease ends: a refused holder fetches again.
    if let Some(token) = a.guard.filter(|_| !replayed) {
        if !crate::history::check(ctx, db, token, name, a.tags, a.deps) {
            crate::fetch::end_lease(db, name, now);
            return Ok(Reply::Nil);
        }
    }
    let deadline = match a.expiry {
        Expiry::At(t) => Some(t),
        Expiry::Keep if existing => key.deadline(),
        Expiry::Keep => None,
        Expiry::Default if replayed => None,
        Expiry::Default => config::default_ttl_ms().map(|ms| now.saturating_add(ms)),
    };
    if deadline.is_some_and(|t| t <= now) && !replayed {
        // Like SET with a past EXAT: the new value is gone at once, and so is the old one,
        // whatever state it is in (fresh, stale, covered by LAZY): the DEL reaches the replicas
        // and the AOF, so a stale or covered entry cannot come back from either.
        crate::fetch::end_lease(db, name, now);
        if held {
            delete_as_del(ctx, db, name, key, key_name);
            server::replicate_strings(ctx, c"DEL", std::slice::from_ref(key_name));
        }
        return Ok(Reply::Ok);
    }
    let mut entry = Entry::new(
        a.value,
        a.tags.iter().copied(),
        a.deps.iter().copied(),
        a.meta,
        now,
    )
    .ok_or(CacheError::TooLarge)?;
    entry.set_born(state::generation());
    // An entry replaced in place: the key stays where it is in the keyspace (no delete and
    // add, no unlink callback), only the index links that differ change, and the new entry
    // takes the old one's id. What the unlink callback would have done for a covered entry
    // leaving is done here.
    let change = key.entry()?.map(|old| {
        (
            LinkChange::between(old, &entry),
            old.value().len() as u64,
            old.id(),
            if old.born() < state::newest_mark() {
                state::lock().covered_leaving(db, name, old)
            } else {
                Vec::new()
            },
        )
    });
    let had_deadline = change.is_some() && key.deadline().is_some();
    match change {
        Some((_, _, id, ref leaving)) => {
            entry.set_id(id);
            crate::reclaim::credit_leaving(Some(ctx), db, name, leaving);
            key.replace_entry(entry)?;
        }
        None => key.set_entry(entry)?,
    }
    // Written: whoever held the lease to compute it is done (a rejected SET ends nothing).
    crate::fetch::end_lease(db, name, now);
    match deadline {
        Some(t) => key.set_deadline(t),
        // The replaced entry's TTL goes with it, as SET without KEEPTTL drops it.
        None if had_deadline => key.clear_deadline(),
        None => {}
    }
    let stored = key
        .entry()?
        .ok_or_else(|| CacheError::Internal("entry vanished".into()))?;
    state::with_db(db, |idx| {
        let size = stored.value().len() as u64;
        if !change.is_some_and(|(c, old, id, _)| idx.relink(name, id, &c, old, size)) {
            let id = idx.insert(name, stored.tags(), stored.deps(), size);
            stored.set_id(id);
        }
    });
    // The command as sent is deterministic unless it had a relative TTL or took the default:
    // then it propagates with the absolute deadline it resolved to.
    if verbatim && !a.relative_ttl && !(a.expiry == Expiry::Default && deadline.is_some()) {
        ctx.replicate_verbatim();
    } else {
        replicate_set(ctx, a, deadline, stored);
    }
    drop(key);
    server::signal_modified(ctx, key_name);
    server::notify(ctx, NOTIFY_MODULE, c"cache.set", key_name);
    Ok(Reply::Ok)
}

/// Propagates CACHE.SET with an absolute deadline (or none), no condition, canonical tags and
/// dependencies: its outcome cannot differ on a replica or on AOF replay.
fn replicate_set(ctx: &Context, a: &parse::SetArgs, deadline: Option<i64>, entry: &Entry) {
    let mut owned: Vec<Vec<u8>> = Vec::new();
    if let Some(t) = deadline {
        owned.push(b"PXAT".to_vec());
        owned.push(t.to_string().into_bytes());
    }
    for (word, list) in [(&b"TAGS"[..], entry.tags()), (b"DEPENDS", entry.deps())] {
        let names: Vec<&[u8]> = list.collect();
        if !names.is_empty() {
            owned.push(word.to_vec());
            owned.push(names.len().to_string().into_bytes());
            owned.extend(names.iter().map(|n| n.to_vec()));
        }
    }
    if let Some(m) = entry.meta() {
        owned.push(b"META".to_vec());
        owned.push(m.as_bytes().to_vec());
    }
    let mut out: Vec<&[u8]> = vec![a.key, a.value];
    out.extend(owned.iter().map(|v| v.as_slice()));
    server::replicate(ctx, "CACHE.SET", &out);
}

pub(crate) fn cache_get(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let started = Instant::now();
    parse::exact(argv, 1, "cache.get")?;
    let key = Key::read(ctx, &args[1]);
    let found = key.entry()?.filter(|e| reclaim::live(ctx, argv[1], e));
    match &found {
        Some(e) => server::reply_bulk(ctx, e.value()),
        None => server::reply(ctx, &Reply::Nil),
    }
    let hit = found.map(|e| e.hit()).is_some();
    drop(key);
    crate::watch::read(ctx, argv[1..].iter().copied());
    record_lookups(argv, &[hit], started);
    Ok(Reply::Sent)
}

pub(crate) fn cache_mget(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let started = Instant::now();
    parse::at_least(argv, 1, "cache.mget")?;
    // Each value is sent while its key is open: no copy of it. Nothing after the array's
    // header may fail (an error now would land inside the half-sent array): every step below
    // replies, whatever it finds.
    server::reply_array_len(ctx, args.len() - 1);
    let mut hits = Vec::with_capacity(args.len() - 1);
    for (name, raw) in args[1..].iter().zip(&argv[1..]) {
        let key = Key::read(ctx, name);
        let hit = match key.held() {
            server::Held::Entry(e) if reclaim::live(ctx, raw, e) => {
                e.hit();
                server::reply_bulk(ctx, e.value());
                true
            }
            _ => {
                server::reply(ctx, &Reply::Nil);
                false
            }
        };
        hits.push(hit);
    }
    crate::watch::read(ctx, argv[1..].iter().copied());
    record_lookups(argv, &hits, started);
    Ok(Reply::Sent)
}

/// Records the hits and misses of CACHE.GET/MGET (`hits[i]` for key `argv[i + 1]`) and the
/// command's latency, under one lock.
fn record_lookups(argv: &[&[u8]], hits: &[bool], started: Instant) {
    let th = config::thresholds();
    let mut st = state::lock();
    let m = st.metrics_started();
    for (name, &hit) in argv[1..].iter().zip(hits) {
        if hit {
            m.record_hit(name);
        } else {
            m.record_miss();
        }
    }
    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    m.record_op(Op::Get, us, &th);
}

pub(crate) fn cache_tag(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    add_links(ctx, args, argv, "cache.tag")
}

pub(crate) fn cache_depend(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    add_links(ctx, args, argv, "cache.depend")
}

/// CACHE.TAG / CACHE.DEPEND: adds names to an existing entry; replies how many were new.
fn add_links(
    ctx: &Context,
    args: &[RedisString],
    argv: &[&[u8]],
    cmd: &'static str,
) -> Result<Reply> {
    let (_, names) = parse::parse_key_names(argv, cmd)?;
    let mut key = Key::write(ctx, &args[1]);
    let db = server::selected_db(ctx);
    let entry = key
        .entry()?
        .filter(|e| reclaim::live(ctx, argv[1], e))
        .ok_or(CacheError::NoSuchKey)?;
    let to_deps = cmd == "cache.depend";
    guard::limits(ctx).check_add(entry, to_deps, &names)?;
    let grown = entry
        .with_added(to_deps, names.iter().map(Vec::as_slice))
        .map_err(|_| CacheError::TooLarge)?;
    let Some((mut grown, added)) = grown else {
        return Ok(Reply::Int(0));
    };
    let had_tags = entry.tags().next().is_some();
    // Not covered by any LAZY invalidation now, and new names must not make it covered by
    // one made before: it counts as written now.
    grown.set_born(state::generation());
    let id = grown.id();
    key.replace_entry(grown)?;
    let new = added.iter().map(Vec::as_slice);
    let none = std::iter::empty();
    state::with_db(db, |idx| {
        if to_deps {
            idx.add_links(argv[1], id, had_tags, none, new)
        } else {
            idx.add_links(argv[1], id, had_tags, new, none)
        }
    });
    drop(key);
    server::signal_modified(ctx, &args[1]);
    server::notify(
        ctx,
        NOTIFY_MODULE,
        if to_deps {
            c"cache.depend"
        } else {
            c"cache.tag"
        },
        &args[1],
    );
    ctx.replicate_verbatim();
    Ok(Reply::Int(added.len() as i64))
}

/// How many dependents CACHE.INSPECT lists at most, and how many it looks at to find them.
pub const INSPECT_DEPENDENTS: usize = 1000;
const INSPECT_LOOKS: usize = 4 * INSPECT_DEPENDENTS;

pub(crate) fn cache_inspect(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    parse::exact(argv, 1, "cache.inspect")?;
    let key = Key::read(ctx, &args[1]);
    let db = server::selected_db(ctx);
    crate::watch::read(ctx, argv[1..2].iter().copied());
    let Some(e) = key.entry()?.filter(|e| !reclaim::gone(ctx, argv[1], e)) else {
        return Ok(Reply::Nil);
    };
    let names = |l: NameIter| Reply::Array(l.map(|n| Reply::Bulk(n.to_vec())).collect());
    // The first INSPECT_DEPENDENTS of them: a resource with a million dependents must not
    // stall the server. Entries a LAZY mark covers are gone, as after IMMEDIATE, and a key the
    // user may not read is never shown. Looking at a candidate opens its key, so it is done
    // with the index unlocked: the ids are taken first, a bounded number of them.
    let lazy = state::lazy_active();
    let access = Access::of_caller(ctx);
    let (candidates, unseen) =
        state::with_db(db, |idx| idx.some_dependents(argv[1], INSPECT_LOOKS));
    let looked = candidates.len();
    let mut dependents: Vec<Vec<u8>> = Vec::new();
    let mut stopped_at = looked;
    for (i, k) in candidates.into_iter().enumerate() {
        if dependents.len() == INSPECT_DEPENDENTS {
            stopped_at = i;
            break;
        }
        let rs = server::string(ctx, &k);
        if access.as_ref().is_some_and(|a| !a.allows(&rs, false)) {
            continue;
        }
        if lazy {
            let key = Key::probe(ctx, &rs);
            if !matches!(key.held(), server::Held::Entry(e) if !reclaim::gone(ctx, &k, e)) {
                continue;
            }
        }
        dependents.push(k);
    }
    let more = unseen + (looked - stopped_at);
    // A user restricted by key patterns sees no dependency named like a key it may not read
    // (a dependency is often another entry's key; the module cannot tell which are).
    let depends = match Viewer::of_caller(ctx) {
        Viewer::All => names(e.deps()),
        Viewer::Only(_) => match Access::of_caller(ctx) {
            Some(a) => Reply::Array(
                e.deps()
                    .filter(|d| a.allows(&server::string(ctx, d), false))
                    .map(|d| Reply::Bulk(d.to_vec()))
                    .collect(),
            ),
            None => Reply::Array(Vec::new()),
        },
    };
    let mut fields = vec![
        ("tags", names(e.tags())),
        ("depends", depends),
        (
            "dependents",
            Reply::Array(dependents.into_iter().map(Reply::Bulk).collect()),
        ),
        (
            "meta",
            e.meta()
                .map_or(Reply::Nil, |m| Reply::Bulk(m.as_bytes().to_vec())),
        ),
        ("ttl_ms", Reply::Int(key.ttl_ms())),
        ("created_ms", Reply::Int(e.created_ms())),
        (
            "hits",
            Reply::Int(i64::try_from(e.hits()).unwrap_or(i64::MAX)),
        ),
        ("size", Reply::Int(e.value().len() as i64)),
    ];
    if more > 0 {
        // Ours, only when `dependents` was cut: how many more entries the index files as
        // depending on this key (neither opened nor filtered).
        fields.push(("dependents_more", Reply::Int(more as i64)));
    }
    if e.is_stale() {
        // Ours, only while a SOFT invalidation covers the entry: the ms left of its grace.
        let left = e.stale_until().saturating_sub(server::now_ms()).max(0);
        fields.push(("stale_ms", Reply::Int(left)));
    }
    Ok(Reply::fields(fields))
}

/// Tells the unlink callback that the module itself removes this entry next.
pub fn quiet(db: usize, key: &[u8], why: Quiet) {
    state::lock().quiet = Some((db, hash_key(key), why));
}

/// Deletes the entry open in `key` (named `name`, `rs` as a server string, in `db`) the way DEL
/// would: an invalidation, not counted as a removal; WATCH and client tracking see the change;
/// a `del` event goes out. The caller propagates the DEL.
pub fn delete_as_del(ctx: &Context, db: usize, name: &[u8], mut key: Key, rs: &RedisString) {
    quiet(db, name, Quiet::Delete);
    key.delete();
    drop(key);
    server::signal_modified(ctx, rs);
    server::notify(ctx, NOTIFY_GENERIC, c"del", rs);
}

/// Walks what a selector reaches in the selected database: the selected entries, then the
/// cascade. `visit` opens each candidate and says whether it is a live entry (it may act on it);
/// the index is only locked between visits, never while the server runs a callback.
pub(crate) fn reach(
    ctx: &Context,
    selector: &Selector,
    depth: Option<u32>,
    visit: impl FnMut(&[u8]) -> bool,
) -> Reach {
    reach_up_to(ctx, selector, depth, usize::MAX, visit)
}

/// [`reach`], stopped past `limit` live entries (`Reach::cut`). A selector the index counts
/// at more than `limit` entries is not walked at all.
pub(crate) fn reach_up_to(
    ctx: &Context,
    selector: &Selector,
    depth: Option<u32>,
    limit: usize,
    visit: impl FnMut(&[u8]) -> bool,
) -> Reach {
    let db = server::selected_db(ctx);
    let picked = server::entries_only(ctx, selector);
    if limit != usize::MAX
        && !matches!(*picked, Selector::Keys(_))
        && state::with_db(db, |idx| idx.count(&picked)) > limit as u64
    {
        return Reach {
            cut: true,
            ..Reach::default()
        };
    }
    let (seeds, any_dependency) =
        state::with_db(db, |idx| (idx.select(&picked), idx.resource_count() > 0));
    // Nothing depends on anything in this database: no cascade to follow (and no need to
    // remember which keys were seen).
    let depth = match selector {
        Selector::All => 0,
        _ if !any_dependency => 0,
        _ => depth.unwrap_or_else(config::max_cascade_depth),
    };
    index::cascade_up_to(
        seeds,
        depth,
        limit,
        |keys| state::with_db(db, |idx| idx.dependents_of_all(keys)),
        visit,
    )
}

/// How many DEL arguments go into one replicated command.
pub const DEL_CHUNK: usize = 1024;

pub(crate) fn cache_invalidate(
    ctx: &Context,
    _args: &[RedisString],
    argv: &[&[u8]],
) -> Result<Reply> {
    let (local, argv) = cluster::strip_local(argv);
    let a = parse::parse_invalidate(&argv, "cache.invalidate", false)?;
    // The cascade's size on the index, when it was measured (0: not).
    let mut cascade = 0;
    if a.strategy == Strategy::Lazy {
        // LAZY visits nothing now and its reclaimer works in bounded steps: only the selector
        // itself is limited (measuring the cascade would be the walk LAZY avoids).
        guard::limits(ctx).check_selector(&a.selector)?;
    } else {
        cascade = guard::check_reach(ctx, &a.selector, a.depth)?;
    }
    let fan = cluster::fans_out(ctx, local, "cache.invalidate")?;
    let immediate = a.strategy == Strategy::Immediate;
    if fan && immediate {
        cluster::start_capture();
    }
    let context = a.context.clone();
    let depth = a.depth;
    // The stepped form blocks the client; for another master's request (no client here), and
    // for this node's part of a cluster-wide one, the master waiting for it is answered when
    // the steps are done (see `cluster::stepping`).
    let own = (fan && immediate).then(cluster::offer_own);
    let may_step = (!cluster::remote() || cluster::can_step()).then_some(cascade);
    let reply = invalidate_here(ctx, a, may_step);
    let pending = own.and_then(|token| cluster::own_part(ctx, token));
    if !fan || reply.is_err() {
        return reply;
    }
    // Every master runs the same command with the same depth (this node's default).
    let mut others = cluster::owned(&argv);
    if depth.is_none() {
        let d = config::max_cascade_depth().to_string().into_bytes();
        others.splice(1..1, [b"DEPTH".to_vec(), d]);
    }
    let job = Job {
        name: "CACHE.INVALIDATE",
        argv: others,
        merge: Merge::Sum,
        json: false,
        cascade: immediate.then_some(Cascade {
            dry_run: false,
            context,
        }),
    };
    cluster::fan_out_part(ctx, job, cluster::outcome(reply), pending)
}

/// CACHE.INVALIDATE on this node only (`may_step`: a large IMMEDIATE one may run in steps,
/// with the size of its cascade on the index when that was measured, else 0).
fn invalidate_here(
    ctx: &Context,
    mut a: parse::InvalidateArgs,
    may_step: Option<usize>,
) -> Result<Reply> {
    let db = server::selected_db(ctx);
    // Over maxmemory a BATCHED request is not queued and a LAZY mark not kept: both run as
    // IMMEDIATE now (stepped when large), which frees memory instead of holding more.
    if matches!(a.strategy, Strategy::Batched | Strategy::Lazy)
        && !server::replayed(ctx)
        && server::over_maxmemory()
    {
        a.strategy = Strategy::Immediate;
    }
    let stepped = may_step
        .filter(|_| a.strategy == Strategy::Immediate)
        .and_then(|cascade| {
            reclaim::steps_pay_off(ctx, db, &a.selector, cascade, cluster::can_step())
        });
    if let Some(selected) = stepped {
        // A large invalidation in bounded steps: the reclaimer replies when it is done.
        let user = server::caller_name(ctx);
        let (sel, depth, context) = (a.selector, a.depth, a.context);
        if reclaim::invalidate_stepped(ctx, db, sel, selected, depth, context, user)? {
            return Ok(Reply::Sent);
        }
        return Err(CacheError::Message(
            "ERR could not block the client for a stepped invalidation".into(),
        ));
    }
    match a.strategy {
        Strategy::Immediate => {
            let access = Access::of_caller(ctx);
            let n = apply(
                ctx,
                db,
                &a.selector,
                a.depth,
                a.context.as_deref(),
                Strategy::Immediate,
                access.as_ref(),
            );
            Ok(Reply::Int(n as i64))
        }
        Strategy::Lazy => {
            let user = server::caller_name(ctx);
            let n = reclaim::invalidate(ctx, db, a.selector, a.depth, a.context, user, true)?;
            Ok(Reply::Int(n as i64))
        }
        Strategy::Batched => {
            enqueue(ctx, db, a.selector, a.depth, a.context, None);
            Ok(Reply::Int(0))
        }
        Strategy::Soft(grace) => {
            let access = Access::of_caller(ctx);
            let (sel, ctx_text) = (&a.selector, a.context.as_deref());
            let n = crate::fetch::soft(ctx, sel, a.depth, ctx_text, grace, access.as_ref());
            Ok(Reply::Int(n as i64))
        }
    }
}

/// Whether the user (if any) may delete `key`; a refusal is counted in `denied`, and the first
/// one goes to ACL LOG.
pub fn may_delete(access: Option<&Access>, key: &RedisString, denied: &mut u64) -> bool {
    match access {
        Some(a) if !a.allows(key, true) => {
            if *denied == 0 {
                a.log_denied(key);
            }
            *denied += 1;
            false
        }
        _ => true,
    }
}

/// Invalidates what a selector reaches in database `db`, now: deletes the entries like DEL,
/// replicates the deletes, records the invalidation. Returns how many entries it removed.
fn apply(
    ctx: &Context,
    db: usize,
    selector: &Selector,
    depth: Option<u32>,
    context: Option<&[u8]>,
    strategy: Strategy,
    access: Option<&Access>,
) -> u64 {
    let original = server::selected_db(ctx);
    if db != original && !server::select_db(ctx, db) {
        // A request for a database this server does not have (queued with other settings).
        ctx.log_warning(&format!(
            "tagcache: skipped an invalidation for database {db}, which does not exist"
        ));
        return 0;
    }
    let started = Instant::now();
    let seq = crate::history::begin(db, selector, access.map(Access::name));
    let mut unread = 0u64;
    let mut denied = 0u64;
    // The deleted keys' strings, kept for the DEL that propagates them.
    let mut strings: Vec<RedisString> = Vec::new();
    let reached = reach(ctx, selector, depth, |name| {
        let rs = server::string(ctx, name);
        // A key the user may not delete is skipped: not removed, not counted, and the cascade
        // does not pass through it (ACL LOG records the first one).
        if !may_delete(access, &rs, &mut denied) {
            return false;
        }
        let key = Key::write(ctx, &rs);
        // Opening it may have found it expired (and removed it): then it is not invalidated.
        let server::Held::Entry(e) = key.held() else {
            return false;
        };
        // Already invalidated by LAZY: the reclaimer removes it.
        if reclaim::gone(ctx, name, e) {
            return false;
        }
        if e.hits() == 0 {
            unread += 1;
        }
        delete_as_del(ctx, db, name, key, &rs);
        strings.push(rs);
        true
    });
    if !matches!(selector, Selector::All) {
        let hops = depth.unwrap_or_else(config::max_cascade_depth);
        cluster::capture(&reached, hops);
        // An entry written later that depends on a removed key (with hops left) would have
        // been reached: the guard refuses it.
        crate::history::removed(
            db,
            seq,
            access.map(Access::name),
            reached.frontier_keys(hops).map(|(k, _)| k),
        );
    }
    let deleted = &reached.keys;
    for chunk in strings.chunks(DEL_CHUNK) {
        server::replicate_strings(ctx, c"DEL", chunk);
    }
    if db != original {
        server::select_db(ctx, original);
    }
    if denied > 0 {
        ctx.log_notice(&format!(
            "tagcache: an invalidation skipped {denied} entries its user may not delete (see ACL LOG)"
        ));
    }
    let context = context.map(String::from_utf8_lossy).unwrap_or_default();
    record(
        ctx,
        selector.kind(),
        &selector.arguments(),
        deleted.len() as u64,
        (deleted.len() - reached.selected) as u64,
        reached.depth,
        started,
        &context,
        strategy,
        unread,
        access.map(Access::name),
    );
    deleted.len() as u64
}

/// Records an invalidation in the metrics (and the latency monitor); logs a crossed alert level.
#[allow(clippy::too_many_arguments)]
pub fn record(
    ctx: &Context,
    kind: &'static str,
    pattern: &str,
    keys: u64,
    cascaded: u64,
    depth_reached: u32,
    started: Instant,
    context: &str,
    strategy: Strategy,
    unread: u64,
    user: Option<&[u8]>,
) {
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let record = InvalidationRecord {
        kind,
        pattern,
        keys,
        cascaded,
        depth_reached,
        duration_us,
        context,
        strategy: strategy.name(),
        user,
    };
    let now = server::now_ms();
    let th = config::thresholds();
    let alert = state::lock()
        .metrics(now)
        .record_invalidation(&record, unread, &th, now);
    if let Some(line) = alert {
        ctx.log_warning(&line);
    }
    server::latency_sample(ctx, "cache-invalidate", duration_us / 1000);
}

/// Queues a BATCHED request. The queue itself replicates (to replicas and the AOF) as
/// `CACHE.PENDING ADD`/`COALESCE`, and each applied request as its deletes plus
/// `CACHE.PENDING DONE`: replicas list the same queue, and a restart from the AOF finds the
/// requests that were still waiting.
fn enqueue(
    ctx: &Context,
    db: usize,
    selector: Selector,
    depth: Option<u32>,
    context: Option<Vec<u8>>,
    rule: Option<&[u8]>,
) {
    let now = server::now_ms();
    let delay = config::BATCH_DELAY_MS.get();
    // Applied later with this user's key permissions.
    let user = server::caller_name(ctx);
    let (queued, item) = {
        let mut st = state::lock();
        // Requests of different users are never folded into one.
        let queued = st
            .batch
            .push(db, selector, depth, context, user.as_deref(), now, delay);
        if let Queued::New(id) = queued {
            st.batch.attribute(id, rule);
        }
        let item = match queued {
            Queued::New(id) => st.batch.get(id).map(encode_item),
            Queued::Coalesced(_) => None,
        };
        (queued, item)
    };
    match (queued, item) {
        (Queued::New(_), Some(bytes)) => server::replicate(ctx, "CACHE.PENDING", &[b"ADD", &bytes]),
        (Queued::Coalesced(id), _) => server::replicate(
            ctx,
            "CACHE.PENDING",
            &[b"COALESCE", id.to_string().as_bytes()],
        ),
        _ => {}
    }
    arm_batch_timer(ctx);
}

/// Sets the timer for the next BATCHED request: none when nothing waits, and a timer set for a
/// later request is replaced when an earlier one arrives (the delay may have been lowered).
pub fn arm_batch_timer(ctx: &Context) {
    if server::is_replica(ctx) {
        return;
    }
    let (delay, stale) = {
        let mut st = state::lock();
        let Some(due) = st.batch.next_due() else {
            return;
        };
        match st.batch_timer {
            Some((_, armed)) if armed <= due => return,
            previous => (
                due.saturating_sub(server::now_ms()).max(0),
                previous
                    .map(|(id, _)| id)
                    .inspect(|_| st.batch_timer = None),
            ),
        }
    };
    if let Some(id) = stale {
        // It may have fired already (then it is gone): nothing to stop.
        let _ = ctx.stop_timer::<()>(id);
    }
    let id = ctx.create_timer(Duration::from_millis(delay as u64), on_batch_timer, ());
    let due = server::now_ms() + delay;
    state::lock().batch_timer = Some((id, due));
}

fn on_batch_timer(ctx: &Context, _: ()) {
    let outcome = error::catch(|| {
        state::lock().batch_timer = None;
        if server::writes_paused() {
            // Nothing may be written or propagated now: look again shortly.
            let id = ctx.create_timer(Duration::from_millis(10), on_batch_timer, ());
            state::lock().batch_timer = Some((id, server::now_ms() + 10));
            return;
        }
        apply_batch(ctx, false);
        arm_batch_timer(ctx);
    });
    if let Err(why) = outcome {
        ctx.log_warning(&format!(
            "tagcache: applying the BATCHED queue failed: {why}"
        ));
    }
}

/// Applies the due BATCHED requests (all of them with `everything`), on a master: each
/// replicates as its deletes and `CACHE.PENDING DONE`. A replica keeps its copy of the queue
/// and applies nothing (its master sends the effects).
fn apply_batch(ctx: &Context, everything: bool) -> u64 {
    if server::is_replica(ctx) {
        return 0;
    }
    let now = server::now_ms();
    let due = {
        let mut st = state::lock();
        if everything {
            st.batch.take_all()
        } else {
            st.batch.take_due(now)
        }
    };
    let mut total = 0;
    for p in due {
        let strategy = Strategy::Batched;
        // Applied with the permissions of the user who queued it.
        let access = match &p.user {
            None => None,
            Some(name) => match Access::of_user(ctx, name) {
                Some(a) => Some(a),
                None => {
                    ctx.log_warning(
                        "tagcache: dropped a BATCHED invalidation whose user no longer exists",
                    );
                    server::replicate(
                        ctx,
                        "CACHE.PENDING",
                        &[b"DONE", p.id.to_string().as_bytes()],
                    );
                    continue;
                }
            },
        };
        let n = apply(
            ctx,
            p.db,
            &p.selector,
            p.depth,
            p.context.as_deref(),
            strategy,
            access.as_ref(),
        );
        total += n;
        if let Some(rule) = &p.rule {
            // The rule's execution was counted when CACHE.WRITE queued it; its entries now.
            state::lock().rules().record_entries(rule, n);
        }
        server::replicate(
            ctx,
            "CACHE.PENDING",
            &[b"DONE", p.id.to_string().as_bytes()],
        );
    }
    total
}

/// `CACHE.PENDING [FLUSH]`: the queued BATCHED requests, or apply them now.
pub(crate) fn cache_pending(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    match parse::parse_pending(argv, server::replayed(ctx))? {
        PendingArgs::Add(bytes) => {
            let item = decode_item(&bytes).map_err(|e| CacheError::Message(format!("ERR {e}")))?;
            state::lock().batch.insert(item);
            return Ok(Reply::Ok);
        }
        PendingArgs::Coalesce(id) => {
            state::lock().batch.coalesce(id);
            return Ok(Reply::Ok);
        }
        PendingArgs::Done(id) => {
            let removed = state::lock().batch.remove(id);
            return Ok(Reply::Int(i64::from(removed)));
        }
        PendingArgs::Mark(db, bytes) => {
            let mark = decode_mark(&bytes).map_err(|e| CacheError::Message(format!("ERR {e}")))?;
            reclaim::add_replayed(db, mark);
            // A replica's watching and tracking clients see the master's mark at once.
            crate::watch::marked(ctx, db);
            reclaim::arm(ctx);
            return Ok(Reply::Ok);
        }
        PendingArgs::Reclaimed(db, upto) => {
            return Ok(Reply::Int(reclaim::finish_replayed(db, upto) as i64));
        }
        PendingArgs::Stale(deadline, keys) => {
            return Ok(Reply::Int(crate::fetch::replay_stale(ctx, deadline, &keys)));
        }
        PendingArgs::Lazy => return Ok(lazy_marks(&Viewer::of_caller(ctx))),
        // Both come only from an AOF rewrite: applied when the AOF loads, ignored when the same
        // format arrives otherwise (Valkey's atomic slot migration sends a slot snapshot this
        // way: the source's generations and module state are not the target's).
        PendingArgs::Born(..) | PendingArgs::State(..) if !server::loading(ctx) => {
            return Ok(Reply::Ok);
        }
        PendingArgs::Born(key, gen) => {
            let key = Key::write(ctx, &server::string(ctx, &key));
            if let Some(e) = key.entry()? {
                e.set_born(gen);
            }
            return Ok(Reply::Ok);
        }
        PendingArgs::State(batch, rules, lazy) => {
            state::lock()
                .restore_state(&batch, &rules, Some(&lazy))
                .map_err(|e| CacheError::Message(format!("ERR {e}")))?;
            return Ok(Reply::Ok);
        }
        PendingArgs::Flush => return Ok(Reply::Int(apply_batch(ctx, true) as i64)),
        PendingArgs::Help => {
            return Ok(help(&[
                "CACHE.PENDING [<subcommand>]. Subcommands are:",
                "CACHE.PENDING",
                "    (no subcommand) List the queued BATCHED invalidations.",
                "FLUSH",
                "    Apply them all now; reply the number of entries invalidated.",
                "LAZY",
                "    List the LAZY invalidations whose entries are not all reclaimed yet.",
                "HELP",
                "    Print this help.",
            ]))
        }
        PendingArgs::List => {}
    }
    let viewer = Viewer::of_caller(ctx);
    let st = state::lock();
    let rows = st
        .batch
        .items()
        .map(|p| {
            let mut row = Reply::fields(vec![
                ("db", Reply::Int(p.db as i64)),
                ("type", Reply::Bulk(p.selector.kind().as_bytes().to_vec())),
                ("pattern", Reply::Bulk(p.selector.arguments().into_bytes())),
                ("depth", Reply::Int(p.depth.map_or(-1, i64::from))),
                ("context", p.context.clone().map_or(Reply::Nil, Reply::Bulk)),
                ("queued_ms", Reply::Int(p.queued_ms)),
                ("due_ms", Reply::Int(p.due_ms)),
                (
                    "coalesced",
                    Reply::Int(i64::try_from(p.coalesced).unwrap_or(i64::MAX)),
                ),
            ]);
            if !viewer.sees(p.user.as_deref()) {
                hide_names(&mut row);
            }
            row
        })
        .collect();
    Ok(Reply::Array(rows))
}

/// `CACHE.PENDING LAZY`: the LAZY marks of every database, oldest first.
fn lazy_marks(viewer: &Viewer) -> Reply {
    let st = state::lock();
    let rows = st
        .lazy()
        .busy()
        .flat_map(|(db, d)| {
            d.marks()
                .iter()
                .map(|m| {
                    let mut row = Reply::fields(vec![
                        ("db", Reply::Int(db as i64)),
                        ("type", Reply::Bulk(m.selector.kind().as_bytes().to_vec())),
                        ("pattern", Reply::Bulk(m.selector.arguments().into_bytes())),
                        ("depth", Reply::Int(i64::from(m.depth))),
                        ("context", m.context.clone().map_or(Reply::Nil, Reply::Bulk)),
                        ("created_ms", Reply::Int(m.created_ms)),
                        (
                            "selected",
                            Reply::Int(i64::try_from(m.selected).unwrap_or(i64::MAX)),
                        ),
                        (
                            "generation",
                            Reply::Int(i64::try_from(m.gen).unwrap_or(i64::MAX)),
                        ),
                    ]);
                    if !viewer.sees(m.user.as_deref()) {
                        hide_names(&mut row);
                    }
                    row
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Reply::Array(rows)
}

pub(crate) fn cache_keys(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let (local, argv) = cluster::strip_local(argv);
    let a = parse::parse_invalidate(&argv, "cache.keys", true)?;
    let limit = if server::replayed(ctx) {
        usize::MAX
    } else {
        config::max_reply_keys()
    };
    // A walk cut at the reply limit never reaches a larger cascade limit: the cascade is
    // measured beforehand only when the reply may be larger than it.
    let l = guard::limits(ctx);
    if l.cascade_entries == 0 || limit > l.cascade_entries {
        guard::check_reach(ctx, &a.selector, a.depth)?;
    } else {
        l.check_selector(&a.selector)?;
    }
    let fan = cluster::fans_out(ctx, local, "cache.keys")?;
    // Exactly what CACHE.INVALIDATE would remove: live entries (one that expired would not be
    // invalidated, nor cascade) that the user may delete.
    let access = Access::of_caller(ctx);
    let reached = reach_up_to(ctx, &a.selector, a.depth, limit, |name| {
        let rs = server::string(ctx, name);
        if access.as_ref().is_some_and(|a| !a.allows(&rs, true)) {
            return false;
        }
        let key = Key::probe(ctx, &rs);
        matches!(key.held(), server::Held::Entry(e) if !reclaim::gone(ctx, name, e))
    });
    if reached.cut {
        return Err(limits::reply_too_large(
            "CACHE.KEYS",
            "keys",
            limit,
            "narrow the selector or lower DEPTH",
        ));
    }
    let depth = a.depth.unwrap_or_else(config::max_cascade_depth);
    if fan {
        cluster::start_capture();
    }
    if !matches!(a.selector, Selector::All) {
        cluster::capture(&reached, depth);
    }
    let mut keys = reached.keys;
    keys.sort_unstable();
    let reply = Reply::Array(keys.into_iter().map(Reply::Bulk).collect());
    if !fan {
        return Ok(reply);
    }
    let mut others = cluster::owned(&argv);
    if a.depth.is_none() {
        others.splice(1..1, [b"DEPTH".to_vec(), depth.to_string().into_bytes()]);
    }
    let job = Job {
        name: "CACHE.KEYS",
        argv: others,
        merge: Merge::Keys,
        json: false,
        cascade: Some(Cascade {
            dry_run: true,
            context: None,
        }),
    };
    cluster::fan_out(ctx, job, cluster::outcome(Ok(reply)))
}

/// Tag sizes while LAZY marks wait in `db`: the entries they cover are gone, as after
/// IMMEDIATE, so each tag's entries are looked at (cost proportional to the tag links, only
/// until the reclaimer is done); a tag left with none is not listed.
fn covered_out(ctx: &Context, db: usize, glob: Option<&Glob>) -> Result<Vec<(Vec<u8>, usize)>> {
    // Each link costs a key opened: past the budget, the answer waits for the reclaimer.
    let budget = config::max_reply_keys().saturating_mul(2);
    let links = state::with_db(db, |idx| idx.tag_links_up_to(glob, budget));
    if links > budget {
        return Err(CacheError::Message(format!(
            "TRYAGAIN CACHE.TAGS would open more than {budget} entries while LAZY invalidations \
             are reclaimed in this database; retry when CACHE.PENDING lists no LAZY mark"
        )));
    }
    let members = state::with_db(db, |idx| idx.tag_members(glob));
    let mut live: ahash::AHashMap<Vec<u8>, bool> = ahash::AHashMap::new();
    let mut sizes: Vec<(Vec<u8>, usize)> = members
        .into_iter()
        .map(|(tag, keys)| {
            let n = keys
                .into_iter()
                .filter(|k| {
                    if let Some(&l) = live.get(k) {
                        return l;
                    }
                    let key = Key::probe(ctx, &server::string(ctx, k));
                    let l =
                        matches!(key.held(), server::Held::Entry(e) if !reclaim::gone(ctx, k, e));
                    live.insert(k.clone(), l);
                    l
                })
                .count();
            (tag, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(sizes)
}

pub(crate) fn cache_tags(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let (local, argv) = cluster::strip_local(argv);
    let a = parse::parse_tags(&argv)?;
    guard::limits(ctx).check_pattern(a.pattern.as_deref().unwrap_or_default())?;
    if let Viewer::Only(_) = Viewer::of_caller(ctx) {
        // A tag's count covers every entry that carries it, whoever may read them; counting
        // only the reachable ones would cost an ACL check per (tag, entry) link.
        return Err(CacheError::Message(
            "NOPERM CACHE.TAGS needs read access to every key (~* or %R~*): its counts cover entries of any key".into(),
        ));
    }
    let fan = cluster::fans_out(ctx, local, "cache.tags")?;
    let glob = a.pattern.as_deref().map(Glob::new);
    let db = server::selected_db(ctx);
    // The others list every matching tag when fanning out (see below).
    let count = a.count.filter(|_| !fan);
    // Every tag is listed without COUNT: not past the limit, as for CACHE.KEYS. (With COUNT
    // and fanning out, this node and the others list every matching tag for the merge: not
    // refused, nor bounded.)
    let limit = if server::replayed(ctx) || a.count.is_some() || cluster::remote() {
        usize::MAX
    } else {
        config::max_reply_keys()
    };
    if limit != usize::MAX {
        let listed = state::with_db(db, |idx| idx.tag_count_up_to(glob.as_ref(), limit));
        if listed > limit {
            return Err(limits::reply_too_large(
                "CACHE.TAGS",
                "tags",
                limit,
                "use COUNT or MATCH",
            ));
        }
    }
    let marked = state::lock().lazy().marks(db).is_some();
    let sizes = if marked {
        let mut sizes = covered_out(ctx, db, glob.as_ref())?;
        if let Some(n) = count {
            sizes.truncate(n);
        }
        sizes
    } else {
        state::with_db(db, |idx| idx.tag_sizes(glob.as_ref(), count))
    };
    let reply = Reply::Array(
        sizes
            .into_iter()
            .map(|(t, n)| Reply::Array(vec![Reply::Bulk(t), Reply::Int(n as i64)]))
            .collect(),
    );
    if !fan {
        return Ok(reply);
    }
    // The others list every matching tag: the largest over the cluster may be small on each.
    let mut others = vec![b"CACHE.TAGS".to_vec()];
    if let Some(p) = &a.pattern {
        others.extend([b"MATCH".to_vec(), p.to_vec()]);
    }
    let job = Job {
        name: "CACHE.TAGS",
        argv: others,
        merge: Merge::Tags(a.count),
        json: false,
        cascade: None,
    };
    cluster::fan_out(ctx, job, cluster::outcome(Ok(reply)))
}

pub(crate) fn cache_stats(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let (local, argv) = cluster::strip_local(argv);
    let json = parse::parse_json_flag(&argv, "cache.stats")?;
    let fan = cluster::fans_out(ctx, local, "cache.stats")?;
    let viewer = Viewer::of_caller(ctx);
    let now = server::now_ms();
    let th = config::thresholds();
    // Taken before the state's lock (each structure has its own).
    let (lease_bytes, watch_bytes) = (crate::fetch::heap_bytes(), crate::watch::heap_bytes());
    let (cluster_bytes, history_bytes) = (cluster::heap_bytes(), crate::history::heap_bytes());
    let mut st = state::lock();
    st.settle_removal();
    let mut figures = st.figures(true);
    figures.module.lease_bytes = lease_bytes;
    figures.module.watch_bytes = watch_bytes;
    figures.module.cluster_bytes = cluster_bytes;
    figures.module.history_bytes = history_bytes;
    let metrics = st.metrics(now);
    let mut stats = metrics.stats(&figures, &th, now);
    if let Some(user) = viewer.restricted_to() {
        metrics.restrict(&mut stats, user);
    }
    drop(st);
    let mut f = stats.to_fields();
    f.push(crate::fetch::stats_section());
    f.push(crate::history::stats_section());
    let reply = fields(f);
    if !fan {
        return Ok(if json { wire::as_json(&reply) } else { reply });
    }
    let job = Job {
        name: "CACHE.STATS",
        argv: vec![b"CACHE.STATS".to_vec()],
        merge: Merge::Stats,
        json,
        cascade: None,
    };
    cluster::fan_out(ctx, job, cluster::outcome(Ok(reply)))
}

pub(crate) fn cache_recommend(
    ctx: &Context,
    _args: &[RedisString],
    argv: &[&[u8]],
) -> Result<Reply> {
    let json = parse::parse_json_flag(argv, "cache.recommend")?;
    let viewer = Viewer::of_caller(ctx);
    let now = server::now_ms();
    let th = config::thresholds();
    let mut st = state::lock();
    st.settle_removal();
    let mut figures = st.figures(true);
    if viewer.restricted_to().is_some() {
        // "Oversized tag" counts entries of any key (as CACHE.TAGS, refused to such a user).
        figures.largest_tag = None;
    }
    let mut advice = st
        .metrics(now)
        .recommend_for(&figures, &th, now, viewer.restricted_to());
    drop(st);
    advice.extend(crate::fetch::advice());
    advice.extend(crate::history::advice());
    advice.sort_by_key(|r| std::cmp::Reverse(r.severity));
    let reply = Reply::Array(advice.iter().map(|r| fields(r.to_fields())).collect());
    Ok(if json { wire::as_json(&reply) } else { reply })
}

pub(crate) fn cache_events(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let count = parse::parse_count(argv, "cache.events")?;
    let viewer = Viewer::of_caller(ctx);
    let now = server::now_ms();
    let th = config::thresholds();
    let events = state::lock()
        .metrics(now)
        .events(count.unwrap_or(usize::MAX), &th, now);
    Ok(Reply::Array(
        events
            .iter()
            .map(|e| {
                let mut reply = fields(e.to_fields());
                if !viewer.sees(e.user.as_deref()) {
                    hide_names(&mut reply);
                }
                reply
            })
            .collect(),
    ))
}

/// Another user's event or request shown to a user restricted by key patterns: its `pattern`
/// and `context` (which may name keys out of the viewer's reach) read as nil; its type, counts
/// and times stay.
fn hide_names(reply: &mut Reply) {
    if let Reply::Map(pairs) = reply {
        for (k, v) in pairs.iter_mut() {
            if k == "pattern" || k == "context" {
                *v = Reply::Nil;
            }
        }
    }
}

pub(crate) fn cache_hotkeys(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let count = parse::parse_count(argv, "cache.hotkeys")?.unwrap_or(10);
    let now = server::now_ms();
    let mut hot = state::lock().metrics(now).hotkeys(usize::MAX);
    let access = Access::of_caller(ctx);
    hot.retain(|(k, _)| {
        let rs = server::string(ctx, k);
        // Never reveal a key the user may not read; a key that is no longer a cache entry here
        // (deleted, expired, invalidated) is not hot any more (at most 256 keys are opened).
        if access.as_ref().is_some_and(|a| !a.allows(&rs, false)) {
            return false;
        }
        let key = Key::probe(ctx, &rs);
        matches!(key.held(), server::Held::Entry(e) if !reclaim::gone(ctx, k, e))
    });
    hot.truncate(count);
    Ok(Reply::Array(
        hot.into_iter()
            .map(|(k, n)| {
                Reply::Array(vec![
                    Reply::Bulk(k),
                    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX)),
                ])
            })
            .collect(),
    ))
}

pub(crate) fn cache_reset(_ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    parse::exact(argv, 0, "cache.reset")?;
    let now = server::now_ms();
    let mut st = state::lock();
    st.metrics(now).reset(now);
    // The reclaimer's counters are metrics too (its marks are not).
    st.lazy_mut(|l| l.stats = Default::default());
    drop(st);
    crate::fetch::reset();
    crate::history::reset();
    Ok(Reply::Ok)
}

/// `CACHE.RULE SET|DEL|LIST|HELP` (registered as subcommands: SET and DEL write, LIST and
/// HELP read). Definitions replicate as sent; the counters are this node's.
pub(crate) fn cache_rule(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let cmd = Rules::parse_rule_command(argv)?;
    let writes = matches!(cmd, RuleCommand::Set(_) | RuleCommand::Del(_));
    let fan = writes && cluster::fans_out(ctx, false, "cache.rule")?;
    let reply = state::lock().rules().apply_rule(cmd);
    everywhere(
        ctx,
        rule_reply(ctx, reply, writes, argv),
        fan,
        "CACHE.RULE",
        argv,
    )
}

/// `CACHE.RELATE source target [target ...] [DEPTH n] [BIDIRECTIONAL]`, `DEL`, `LIST`, `HELP`.
pub(crate) fn cache_relate(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let cmd = Rules::parse_relate_command(argv)?;
    let writes = matches!(cmd, RelateCommand::Set(_) | RelateCommand::Del { .. });
    // Adding relations grows the rules' tables: refused over maxmemory as a `deny-oom` command
    // would be (the command also deletes and lists, which must keep working, so it is not
    // flagged). What the master sent is applied.
    if matches!(cmd, RelateCommand::Set(_)) && !server::replayed(ctx) && server::over_maxmemory() {
        return Err(CacheError::Message(server::OOM_ERROR.to_string()));
    }
    let fan = writes && cluster::fans_out(ctx, false, "cache.relate")?;
    let reply = state::lock().rules().apply_relate(cmd);
    everywhere(
        ctx,
        rule_reply(ctx, reply, writes, argv),
        fan,
        "CACHE.RELATE",
        argv,
    )
}

/// A rules change made here goes to every other master too (rules are the cluster's).
fn everywhere(
    ctx: &Context,
    reply: Result<Reply>,
    fan: bool,
    name: &'static str,
    argv: &[&[u8]],
) -> Result<Reply> {
    if !fan || reply.is_err() {
        return reply;
    }
    let job = Job {
        name,
        argv: cluster::owned(argv),
        merge: Merge::First,
        json: false,
        cascade: None,
    };
    cluster::fan_out(ctx, job, cluster::outcome(reply))
}

/// Renders a rules reply; a change that succeeded replicates as sent.
fn rule_reply(ctx: &Context, reply: RuleReply, writes: bool, argv: &[&[u8]]) -> Result<Reply> {
    let out = match reply {
        RuleReply::Error(e) => return Err(e.into()),
        RuleReply::Ok => Reply::Ok,
        RuleReply::Int(n) => Reply::Int(n),
        RuleReply::Help(lines) => help(lines),
        RuleReply::Rows(rows) => Reply::Array(
            rows.into_iter()
                .map(|row| {
                    Reply::fields(
                        row.into_iter()
                            .map(|(k, v)| {
                                let v = match v {
                                    RowValue::Bytes(b) => Reply::Bulk(b),
                                    RowValue::Int(n) => Reply::Int(n),
                                    RowValue::Nil => Reply::Nil,
                                    RowValue::List(l) => {
                                        Reply::Array(l.into_iter().map(Reply::Bulk).collect())
                                    }
                                };
                                (k, v)
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
    };
    if writes && !matches!(out, Reply::Int(0)) {
        // Not verbatim: another master's request runs from a timer, which has no command.
        let name = String::from_utf8_lossy(argv[0]).to_ascii_uppercase();
        server::replicate(ctx, &name, &argv[1..]);
    }
    Ok(out)
}

/// `CACHE.WRITE type id [OP op] [CONTEXT text]`: a write on `type` id `id` was made; invalidate
/// the tag `type:id` (and that of every related type), then what the matching rules name, by
/// priority. Replies the number of entries invalidated now (BATCHED steps count when applied).
pub(crate) fn cache_write(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    // `type id` and the option pairs make an odd argument count with the command name, so
    // LOCAL is there only when the count is even: a type named `local` stays a type.
    let (local, argv) = if argv.len().is_multiple_of(2) {
        cluster::strip_local(argv)
    } else {
        (false, std::borrow::Cow::Borrowed(argv))
    };
    let w = Rules::parse_write(&argv)?;
    let plan = state::lock().rules().plan(&w);
    for step in &plan {
        let tags = Selector::Tags(step.tags.clone());
        if step.strategy == RuleStrategy::Lazy {
            guard::limits(ctx).check_selector(&tags)?;
        } else {
            guard::check_reach(ctx, &tags, None)?;
        }
    }
    let fan = cluster::fans_out(ctx, local, "cache.write")?;
    if fan {
        cluster::start_capture();
    }
    let db = server::selected_db(ctx);
    let access = Access::of_caller(ctx);
    let user = server::caller_name(ctx);
    let mut total = 0u64;
    for step in plan {
        let context = match (&w.context, &step.rule) {
            (Some(c), Some(r)) => Some([&c[..], b" rule:", r].concat()),
            (None, Some(r)) => Some([&b"rule:"[..], r].concat()),
            (c, None) => c.clone(),
        };
        let selector = Selector::Tags(step.tags);
        let n = match step.strategy {
            RuleStrategy::Batched => {
                enqueue(ctx, db, selector, None, context, step.rule.as_deref());
                0
            }
            // A rule's steps are not refused one by one (the write they follow happened): its
            // cascade is not limited.
            RuleStrategy::Lazy => {
                reclaim::invalidate(ctx, db, selector, None, context, user.clone(), false)?
            }
            RuleStrategy::Immediate => apply(
                ctx,
                db,
                &selector,
                None,
                context.as_deref(),
                Strategy::Immediate,
                access.as_ref(),
            ),
        };
        total += n;
        if let Some(rule) = &step.rule {
            let now = server::now_ms();
            state::lock().rules().record(rule, n, now);
        }
    }
    let reply = Reply::Int(i64::try_from(total).unwrap_or(i64::MAX));
    if !fan {
        return Ok(reply);
    }
    let job = Job {
        name: "CACHE.WRITE",
        argv: cluster::owned(&argv),
        merge: Merge::Sum,
        json: false,
        cascade: Some(Cascade {
            dry_run: false,
            context: w.context.clone(),
        }),
    };
    cluster::fan_out(ctx, job, cluster::outcome(Ok(reply)))
}

/// A HELP reply: one bulk string per line.
fn help(lines: &[&str]) -> Reply {
    Reply::Array(
        lines
            .iter()
            .map(|s| Reply::Bulk(s.as_bytes().to_vec()))
            .collect(),
    )
}

/// A map reply from metric fields.
fn fields(pairs: Vec<(&'static str, Field)>) -> Reply {
    Reply::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect(),
    )
}

pub(crate) fn cache_debug(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    match parse::parse_debug(argv)? {
        DebugArgs::Help => Ok(help(&[
            "CACHE.DEBUG <subcommand>. Subcommands are:",
            "VERIFY",
            "    Rebuild every index from the entries and list the differences (empty: consistent).",
            "REBUILD",
            "    Replace every index with one rebuilt from the entries; reply the number of entries.",
            "RECLAIM STEP [<keys>]",
            "    Run one LAZY reclaimer step now (looking at up to <keys> entries); reply the",
            "    number of entries it deleted.",
            "RECLAIM PAUSE|RESUME",
            "    Stop or restart the timer-driven LAZY reclaimer (for tests).",
            "HELP",
            "    Print this help.",
        ])),
        DebugArgs::Verify => Ok(Reply::Array(
            verify(ctx).into_iter().map(|s| Reply::Bulk(s.into_bytes())).collect(),
        )),
        DebugArgs::Rebuild => {
            rebuild_all(ctx);
            // The entries have new ids: a LAZY walk under way starts again from the first.
            let mut st = state::lock();
            st.lazy_mut(|l| l.restart_walks());
            let entries = st.figures(false).entries;
            Ok(Reply::Int(i64::try_from(entries).unwrap_or(i64::MAX)))
        }
        DebugArgs::ReclaimStep(keys) => {
            let n = reclaim::step_now(ctx, keys);
            Ok(Reply::Int(i64::try_from(n).unwrap_or(i64::MAX)))
        }
        DebugArgs::ReclaimPause(paused) => {
            reclaim::pause(ctx, paused);
            Ok(Reply::Ok)
        }
    }
}

/// Runs `f` with each database selected in turn, then restores the selection.
fn for_each_db(ctx: &Context, mut f: impl FnMut(usize)) {
    let original = server::selected_db(ctx);
    let mut db = 0;
    while server::select_db(ctx, db) {
        f(db);
        db += 1;
    }
    server::select_db(ctx, original);
}

/// An index of scanned entries, which it sorts and keeps each key of once (a scan can find a
/// key twice).
fn index_of(entries: &mut Vec<server::Scanned>) -> DbIndex {
    entries.sort_unstable_by(|a, b| a.0 .0.cmp(&b.0 .0));
    entries.dedup_by(|a, b| a.0 .0 == b.0 .0);
    let mut idx = DbIndex::new();
    for ((k, t, d), size, _) in entries.iter() {
        idx.insert(
            k,
            t.iter().map(Vec::as_slice),
            d.iter().map(Vec::as_slice),
            *size,
        );
    }
    idx
}

/// CACHE.DEBUG VERIFY: every database's index against one rebuilt from its entries.
fn verify(ctx: &Context) -> Vec<String> {
    let mut out = Vec::new();
    for_each_db(ctx, |db| {
        let mut scanned = server::scan_entries(ctx);
        let expected = index_of(&mut scanned);
        let mut st = state::lock();
        out.extend(index::diff(db, st.db(db), &expected));
        out.extend(index::misfiled(
            db,
            st.db(db),
            scanned.iter().map(|s| (&s.0 .0[..], s.2)),
        ));
        let (live, entries) = (st.db(db).value_bytes(), expected.value_bytes());
        if live != entries {
            out.push(format!(
                "db{db}: the index counts {live} value bytes, the entries hold {entries}"
            ));
        }
    });
    out
}

/// Rebuilds every index from the entries (after loading).
pub fn rebuild_all(ctx: &Context) {
    let mut rebuilt = Vec::new();
    let mut newest = 0;
    for_each_db(ctx, |db| {
        let mut idx = DbIndex::new();
        server::scan_with(ctx, &mut |name, e| {
            newest = newest.max(e.born());
            // A scan can find a key twice: then it carries the id it was given the first time.
            if !idx.holds(name, e.id()) {
                let id = idx.insert(name, e.tags(), e.deps(), e.value().len() as u64);
                e.set_id(id);
            }
        });
        rebuilt.push((db, idx));
    });
    // Entries written later must be born after every loaded one (an RDB saved without LAZY
    // marks has no generation in it).
    state::raise_generation(newest);
    let mut st = state::lock();
    st.clear_all();
    for (db, idx) in rebuilt {
        *st.db(db) = idx;
    }
}
