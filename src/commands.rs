//! Command handlers: parse into typed arguments, validate everything, then act on the keyspace,
//! update the index, notify and replicate.

use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{Context, RedisResult, RedisString, RedisValue};

use crate::config;
use crate::core::entry::{Entry, LinkChange, NameIter};
use crate::core::glob::Glob;
use crate::core::index::hash_key;
use crate::core::index::{self, DbIndex, Selector};
use crate::core::parse::{self, Condition, DebugArgs, Expiry, Strategy};
use crate::error::{CacheError, Result};
use crate::ffi;
use crate::server::{self, Key, Reply, NOTIFY_GENERIC, NOTIFY_MODULE};
use crate::state;

type Handler = fn(&Context, &[RedisString], &[&[u8]]) -> Result<Reply>;

/// The command boundary: runs a handler, turns its error or any panic into an error reply.
pub fn run(ctx: &Context, args: Vec<RedisString>, handler: Handler) -> RedisResult {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        handler(ctx, &args, &argv)
    }));
    match outcome {
        Ok(Ok(reply)) => server::reply(ctx, &reply),
        Ok(Err(e)) => server::reply_error(ctx, &e),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            ctx.log_warning(&format!("tagcache: command failed: {why}"));
            server::reply_error(ctx, &CacheError::Internal(why));
        }
    }
    Ok(RedisValue::NoReply)
}

macro_rules! commands {
    ($($name:ident => $handler:ident),* $(,)?) => {
        $(pub fn $name(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
            run(ctx, args, $handler)
        })*
    };
}

commands! {
    set => cache_set,
    get => cache_get,
    mget => cache_mget,
    tag => cache_tag,
    depend => cache_depend,
    inspect => cache_inspect,
    invalidate => cache_invalidate,
    keys => cache_keys,
    tags => cache_tags,
    debug => cache_debug,
}

fn cache_set(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let now = server::now_ms();
    let a = parse::parse_set(argv, now)?;
    let key = Key::write(ctx, &args[1]);
    let existing = key.entry()?.is_some();
    match (a.condition, existing) {
        (Condition::IfMissing, true) | (Condition::IfExists, false) => return Ok(Reply::Nil),
        _ => {}
    }
    let replayed = server::replayed(ctx);
    let deadline = match a.expiry {
        Expiry::At(t) => Some(t),
        Expiry::Keep if existing => key.deadline(),
        Expiry::Keep => None,
        Expiry::Default if replayed => None,
        Expiry::Default => config::default_ttl_ms().map(|ms| now.saturating_add(ms)),
    };
    let db = server::selected_db(ctx);
    if deadline.is_some_and(|t| t <= now) && !replayed {
        // Like SET with a past EXAT: the new value is gone at once, and so is the old one.
        if existing {
            key.delete();
            drop(key);
            ffi::forget_unlinked();
            server::signal_modified(ctx, &args[1]);
            server::notify(ctx, NOTIFY_GENERIC, "del", &args[1]);
            server::replicate(ctx, "DEL", &[argv[1]]);
        }
        return Ok(Reply::Ok);
    }
    let entry = Entry::new(
        a.value,
        a.tags.iter().copied(),
        a.deps.iter().copied(),
        a.meta,
        now,
    )
    .ok_or(CacheError::TooLarge)?;
    // Replacing a value runs the type's unlink callback for the old entry. When an entry is
    // replaced, only the links that differ change: the callback is told to leave the index
    // alone and the difference is applied after.
    let change = key.entry()?.map(|old| LinkChange::between(old, &entry));
    if change.is_some() {
        state::lock().replacing = Some((db, hash_key(argv[1])));
    }
    let stored = key.set_entry(entry);
    state::lock().replacing = None;
    stored?;
    if let Some(t) = deadline {
        key.set_deadline(t);
    }
    let stored = key
        .entry()?
        .ok_or_else(|| CacheError::Internal("entry vanished".into()))?;
    state::with_db(db, |idx| {
        if !change.is_some_and(|c| idx.relink(argv[1], &c)) {
            idx.insert(argv[1], stored.tags(), stored.deps());
        }
    });
    // The command as sent is deterministic unless it had a relative TTL or took the default:
    // then it propagates with the absolute deadline it resolved to.
    if a.relative_ttl || (a.expiry == Expiry::Default && deadline.is_some()) {
        replicate_set(ctx, argv, deadline, stored);
    } else {
        ctx.replicate_verbatim();
    }
    drop(key);
    server::signal_modified(ctx, &args[1]);
    server::notify(ctx, NOTIFY_MODULE, "cache.set", &args[1]);
    Ok(Reply::Ok)
}

/// Propagates CACHE.SET with an absolute deadline (or none), no condition, canonical tags and
/// dependencies: its outcome cannot differ on a replica or on AOF replay.
fn replicate_set(ctx: &Context, argv: &[&[u8]], deadline: Option<i64>, entry: &Entry) {
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
    let mut out: Vec<&[u8]> = vec![argv[1], argv[2]];
    out.extend(owned.iter().map(|v| v.as_slice()));
    server::replicate(ctx, "CACHE.SET", &out);
}

fn cache_get(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    parse::exact(argv, 1, "cache.get")?;
    let key = Key::read(ctx, &args[1]);
    match key.entry()? {
        Some(e) => {
            e.hits += 1;
            state::lock().counters.hits += 1;
            server::reply_bulk(ctx, e.value());
            Ok(Reply::Sent)
        }
        None => {
            state::lock().counters.misses += 1;
            Ok(Reply::Nil)
        }
    }
}

fn cache_mget(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    parse::at_least(argv, 1, "cache.mget")?;
    let mut out = Vec::with_capacity(args.len() - 1);
    let (mut hits, mut misses) = (0, 0);
    for name in &args[1..] {
        let key = Key::read(ctx, name);
        out.push(match key.held() {
            server::Held::Entry(e) => {
                e.hits += 1;
                hits += 1;
                Reply::Bulk(e.value().to_vec())
            }
            _ => {
                misses += 1;
                Reply::Nil
            }
        });
    }
    let mut st = state::lock();
    st.counters.hits += hits;
    st.counters.misses += misses;
    Ok(Reply::Array(out))
}

fn cache_tag(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    add_links(ctx, args, argv, "cache.tag")
}

fn cache_depend(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
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
    let key = Key::write(ctx, &args[1]);
    let entry = key.entry()?.ok_or(CacheError::NoSuchKey)?;
    let to_deps = cmd == "cache.depend";
    let added = entry.add(to_deps, names.iter().map(Vec::as_slice));
    if added.is_empty() {
        return Ok(Reply::Int(0));
    }
    let db = server::selected_db(ctx);
    let new = added.iter().map(Vec::as_slice);
    let none = std::iter::empty();
    state::with_db(db, |idx| {
        if to_deps {
            idx.add_links(argv[1], none, new)
        } else {
            idx.add_links(argv[1], new, none)
        }
    });
    drop(key);
    server::signal_modified(ctx, &args[1]);
    server::notify(ctx, NOTIFY_MODULE, cmd, &args[1]);
    ctx.replicate_verbatim();
    Ok(Reply::Int(added.len() as i64))
}

fn cache_inspect(ctx: &Context, args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    parse::exact(argv, 1, "cache.inspect")?;
    let key = Key::read(ctx, &args[1]);
    let Some(e) = key.entry()? else {
        return Ok(Reply::Nil);
    };
    let names = |l: NameIter| Reply::Array(l.map(|n| Reply::Bulk(n.to_vec())).collect());
    let db = server::selected_db(ctx);
    let dependents = state::with_db(db, |idx| idx.dependents_of(argv[1]));
    Ok(Reply::Map(vec![
        ("tags", names(e.tags())),
        ("depends", names(e.deps())),
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
        ("created_ms", Reply::Int(e.created_ms)),
        (
            "hits",
            Reply::Int(i64::try_from(e.hits).unwrap_or(i64::MAX)),
        ),
        ("size", Reply::Int(e.value().len() as i64)),
    ]))
}

/// Walks what a selector reaches in the selected database: the selected entries, then the
/// cascade. `visit` opens each candidate and says whether it is a live entry (it may act on it);
/// the index is only locked between visits, never while the server runs a callback.
fn reach(
    ctx: &Context,
    selector: &Selector,
    depth: Option<u32>,
    visit: impl FnMut(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let db = server::selected_db(ctx);
    let depth = match selector {
        Selector::All => 0,
        _ => depth.unwrap_or_else(config::max_cascade_depth),
    };
    let seeds = state::with_db(db, |idx| idx.select(selector));
    index::cascade(
        seeds,
        depth,
        |keys| state::with_db(db, |idx| idx.dependents_of_all(keys)),
        visit,
    )
}

/// How many DEL arguments go into one replicated command.
const DEL_CHUNK: usize = 1024;

fn cache_invalidate(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let a = parse::parse_invalidate(argv, "cache.invalidate", false)?;
    match a.strategy {
        Strategy::Immediate => {}
        Strategy::Lazy => return Err(CacheError::StrategyNotAvailable("LAZY")),
        Strategy::Batched => return Err(CacheError::StrategyNotAvailable("BATCHED")),
    }
    let deleted = reach(ctx, &a.selector, a.depth, |name| {
        let rs = server::string(ctx, name);
        let key = Key::write(ctx, &rs);
        // Opening it may have found it expired (and removed it): then it is not invalidated.
        if !matches!(key.held(), server::Held::Entry(_)) {
            return false;
        }
        key.delete();
        drop(key);
        // An invalidation, not a removal: the `del` notified below is not counted as one.
        ffi::forget_unlinked();
        server::signal_modified(ctx, &rs);
        server::notify(ctx, NOTIFY_GENERIC, "del", &rs);
        true
    });
    {
        let mut st = state::lock();
        st.counters.invalidations += 1;
        st.counters.keys_invalidated += deleted.len() as u64;
    }
    for chunk in deleted.chunks(DEL_CHUNK) {
        let refs: Vec<&[u8]> = chunk.iter().map(|k| k.as_slice()).collect();
        server::replicate(ctx, "DEL", &refs);
    }
    Ok(Reply::Int(deleted.len() as i64))
}

fn cache_keys(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let a = parse::parse_invalidate(argv, "cache.keys", true)?;
    // Only live entries (one that expired would not be invalidated, nor cascade).
    let mut keys = reach(ctx, &a.selector, a.depth, |name| {
        let key = Key::peek(ctx, &server::string(ctx, name));
        matches!(key.held(), server::Held::Entry(_))
    });
    keys.sort_unstable();
    Ok(Reply::Array(keys.into_iter().map(Reply::Bulk).collect()))
}

fn cache_tags(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    let a = parse::parse_tags(argv)?;
    let glob = a.pattern.as_deref().map(Glob::new);
    let db = server::selected_db(ctx);
    let mut sizes = state::with_db(db, |idx| idx.tag_sizes(glob.as_ref()));
    if let Some(n) = a.count {
        sizes.truncate(n);
    }
    Ok(Reply::Array(
        sizes
            .into_iter()
            .map(|(t, n)| Reply::Array(vec![Reply::Bulk(t), Reply::Int(n as i64)]))
            .collect(),
    ))
}

fn cache_debug(ctx: &Context, _args: &[RedisString], argv: &[&[u8]]) -> Result<Reply> {
    match parse::parse_debug(argv)? {
        DebugArgs::Help => Ok(Reply::Array(
            [
                "CACHE.DEBUG <subcommand>. Subcommands are:",
                "VERIFY",
                "    Rebuild every index from the entries and list the differences (empty: consistent).",
                "HELP",
                "    Print this help.",
            ]
            .iter()
            .map(|s| Reply::Bulk(s.as_bytes().to_vec()))
            .collect(),
        )),
        DebugArgs::Verify => Ok(Reply::Array(
            verify(ctx).into_iter().map(|s| Reply::Bulk(s.into_bytes())).collect(),
        )),
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

fn index_of(entries: Vec<index::Facts>) -> DbIndex {
    let mut idx = DbIndex::new();
    for (k, t, d) in entries {
        idx.insert(&k, t.iter().map(Vec::as_slice), d.iter().map(Vec::as_slice));
    }
    idx
}

/// CACHE.DEBUG VERIFY: every database's index against one rebuilt from its entries.
fn verify(ctx: &Context) -> Vec<String> {
    let mut out = Vec::new();
    for_each_db(ctx, |db| {
        let expected = index_of(server::scan_entries(ctx));
        let mut st = state::lock();
        out.extend(index::diff(db, st.db(db), &expected));
    });
    out
}

/// Rebuilds every index from the entries (after loading).
pub fn rebuild_all(ctx: &Context) {
    let mut rebuilt = Vec::new();
    for_each_db(ctx, |db| {
        rebuilt.push((db, index_of(server::scan_entries(ctx))))
    });
    let mut st = state::lock();
    st.clear_all();
    for (db, idx) in rebuilt {
        *st.db(db) = idx;
    }
}
