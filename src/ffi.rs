//! Every callback the server calls into: the data type's methods, server events and keyspace
//! notifications. Nothing here may panic across the boundary or touch shared state from a
//! background thread (`free` may run on the lazy-free thread).

use std::ffi::CString;
use std::mem::ManuallyDrop;
use std::os::raw::{c_char, c_int, c_longlong, c_void};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use redis_module::{raw, Context, RedisString};
use smallvec::SmallVec;

use crate::config::IntConfig;
use crate::core::batch::Batch;
use crate::core::entry::{Entry, ENCODING_VERSION};
use crate::core::index::hash_key;
use crate::core::lazy::Lazy;
use crate::core::metrics::{Field, Removal};
use crate::core::rules::Rules;
use crate::registry::{Command, Form};
use crate::server;
use crate::state;

/// The module data type of cache entries. The name is 9 characters, as the server requires.
pub static CACHE_TYPE: redis_module::native_types::RedisType =
    redis_module::native_types::RedisType::new(
        "tagcache0",
        ENCODING_VERSION as i32,
        raw::RedisModuleTypeMethods {
            version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
            rdb_load: Some(rdb_load),
            rdb_save: Some(rdb_save),
            aof_rewrite: Some(aof_rewrite),
            mem_usage: Some(mem_usage),
            digest: Some(digest),
            free: Some(free),
            aux_load: Some(aux_load),
            aux_save: Some(aux_save),
            aux_save2: Some(aux_save2),
            aux_save_triggers: raw::REDISMODULE_AUX_AFTER_RDB as i32,
            free_effort: Some(free_effort),
            unlink: None,
            copy: None,
            defrag: None,
            mem_usage2: None,
            free_effort2: None,
            unlink2: Some(unlink2),
            copy2: Some(copy2),
        },
    );

/// The panic boundary of every callback the server calls: a panic never crosses into the
/// server; it is logged (with where the callback is) and the callback does `default`.
#[track_caller]
fn guard<R>(default: R, f: impl FnOnce() -> R) -> R {
    let at = std::panic::Location::caller();
    crate::error::catch(f).unwrap_or_else(|why| {
        redis_module::logging::log_warning(format!("tagcache: the callback at {at} failed: {why}"));
        default
    })
}

unsafe extern "C" fn rdb_load(io: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        if encver > ENCODING_VERSION as c_int {
            log_io(
                io,
                &format!(
                    "tagcache: cache entry encoding version {encver} is newer than this module supports ({ENCODING_VERSION}); upgrade the module"
                ),
            );
            return std::ptr::null_mut();
        }
        let Ok(buf) = raw::load_string_buffer(io) else {
            return std::ptr::null_mut();
        };
        match Entry::decode(buf.as_ref()) {
            Ok(e) => Entry::into_raw(e).cast(),
            Err(e) => {
                log_io(io, &format!("tagcache: {e}"));
                std::ptr::null_mut()
            }
        }
    })
}

fn log_io(io: *mut raw::RedisModuleIO, msg: &str) {
    let Ok(msg) = std::ffi::CString::new(msg) else {
        return;
    };
    // SAFETY: `io` is the live IO handle of the callback that logs, and the strings are C
    // strings alive for the call. The module API table is filled by `RedisModule_Init` first.
    unsafe {
        if let Some(f) = raw::RedisModule_LogIOError {
            f(io, c"warning".as_ptr(), c"%s".as_ptr(), msg.as_ptr());
        }
    }
}

unsafe extern "C" fn rdb_save(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard((), || {
        // SAFETY: the server calls with a live RDB handle and a value of this type: an entry from
        // `into_raw`, which nothing writes while it is saved. The module API table is filled by
        // `RedisModule_Init` before the server calls back.
        unsafe {
            let e = Entry::from_raw_ref(value.cast());
            raw::save_slice(io, &e.encode());
        }
    })
}

/// Rewrites an entry as one CACHE.SET; the server appends the key's PEXPIREAT itself.
/// Counters (created time, hits) are not carried by the AOF without an RDB preamble.
unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    guard((), || {
        // SAFETY: the server calls with a live AOF handle, the key's live name and its value, an
        // entry from `into_raw` that nothing writes meanwhile; the strings made here live until
        // freed at the end, after the emits that read them. The module API table is filled by
        // `RedisModule_Init` before the server calls back.
        unsafe {
            let e = Entry::from_raw_ref(value.cast());
            let mut args: Vec<*mut raw::RedisModuleString> = Vec::new();
            let mut push = |b: &[u8]| {
                if let Some(f) = raw::RedisModule_CreateString {
                    args.push(f(std::ptr::null_mut(), b.as_ptr().cast(), b.len()));
                }
            };
            push(RedisString::string_as_slice(key));
            push(e.value());
            for (word, list) in [("TAGS", e.tags()), ("DEPENDS", e.deps())] {
                let names: Vec<&[u8]> = list.collect();
                if !names.is_empty() {
                    push(word.as_bytes());
                    push(names.len().to_string().as_bytes());
                    for n in names {
                        push(n);
                    }
                }
            }
            if let Some(m) = e.meta() {
                push(b"META");
                push(m.as_bytes());
            }
            let at = e.stale_until().to_string();
            if e.is_stale() {
                // The stale mark follows as its own command (replay only).
                push(b"STALE");
                push(at.as_bytes());
                push(RedisString::string_as_slice(key));
            }
            let marks = if e.is_stale() { 3 } else { 0 };
            let set = args.len() - marks;
            if let Some(emit) = raw::RedisModule_EmitAOF {
                let newest = emit_state_once(aof);
                emit(
                    aof,
                    c"CACHE.SET".as_ptr(),
                    c"v".as_ptr(),
                    args.as_mut_ptr(),
                    set,
                );
                if marks > 0 {
                    emit(
                        aof,
                        c"CACHE.PENDING".as_ptr(),
                        c"v".as_ptr(),
                        args[set..].as_mut_ptr(),
                        marks,
                    );
                }
                if e.born() < newest {
                    // A LAZY mark may cover it: it keeps its generation (CACHE.SET gives a new one).
                    let born = e.born().to_string();
                    emit(
                        aof,
                        c"CACHE.PENDING".as_ptr(),
                        c"csb".as_ptr(),
                        c"BORN".as_ptr(),
                        args[0],
                        born.as_ptr(),
                        born.len(),
                    );
                }
            }
            if let Some(free) = raw::RedisModule_FreeString {
                for s in args {
                    free(std::ptr::null_mut(), s);
                }
            }
        }
    })
}

/// Whether this process emitted the module-wide state into the AOF it rewrites. The rewrite
/// runs in a forked child, which starts from the parent's `false` (the parent never rewrites).
static AOF_STATE_EMITTED: AtomicBool = AtomicBool::new(false);
/// The newest LAZY generation of the state emitted (entries born before it keep theirs).
static AOF_NEWEST: AtomicU64 = AtomicU64::new(0);

/// An AOF rewritten without an RDB preamble has no aux data: the first entry written carries the
/// BATCHED queue, the rules and the LAZY marks as one `CACHE.PENDING STATE` (replayed only).
/// Returns the newest LAZY generation.
unsafe fn emit_state_once(aof: *mut raw::RedisModuleIO) -> u64 {
    if AOF_STATE_EMITTED.swap(true, Ordering::Relaxed) {
        return AOF_NEWEST.load(Ordering::Relaxed);
    }
    let (saved, newest, any) = {
        let mut st = state::lock();
        let newest = st.lazy().busy().map(|(_, d)| d.newest()).max().unwrap_or(0);
        (st.saved_state(), newest, st.has_saved_state())
    };
    AOF_NEWEST.store(newest, Ordering::Relaxed);
    if any {
        // SAFETY: `aof` is the live AOF handle of the rewrite that called (the caller's
        // promise); every buffer lives until the emit returns. The module API table is filled
        // by `RedisModule_Init` first.
        unsafe {
            let Some(emit) = raw::RedisModule_EmitAOF else {
                return newest;
            };
            let [batch, rules, lazy] = &saved;
            emit(
                aof,
                c"CACHE.PENDING".as_ptr(),
                c"cbbb".as_ptr(),
                c"STATE".as_ptr(),
                batch.as_ptr(),
                batch.len(),
                rules.as_ptr(),
                rules.len(),
                lazy.as_ptr(),
                lazy.len(),
            );
        }
    }
    newest
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    guard(0, || {
        // SAFETY: the server asks about a value of this type: an entry from `into_raw`, which
        // nothing writes meanwhile.
        unsafe { Entry::from_raw_ref(value.cast()) }.heap_size()
    })
}

/// Module-wide state saved after the keys of an RDB (and DUMP-free): the BATCHED queue.
unsafe extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, when: c_int) {
    guard((), || {
        if when != raw::REDISMODULE_AUX_AFTER_RDB as c_int {
            return;
        }
        let saved = state::lock().saved_state();
        for part in &saved {
            raw::save_slice(rdb, part);
        }
    })
}

/// As `aux_save`, for servers that skip the aux field when nothing is saved: saves only when
/// there is a queue, so an RDB without cache state loads without the module.
unsafe extern "C" fn aux_save2(rdb: *mut raw::RedisModuleIO, when: c_int) {
    if state::lock().has_saved_state() {
        // SAFETY: the server's arguments of this same callback, passed on unchanged.
        unsafe { aux_save(rdb, when) };
    }
}

unsafe extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, encver: c_int, when: c_int) -> c_int {
    guard(raw::REDISMODULE_ERR as c_int, || {
        if when != raw::REDISMODULE_AUX_AFTER_RDB as c_int {
            return raw::REDISMODULE_OK as c_int;
        }
        if encver > ENCODING_VERSION as c_int {
            log_io(
                rdb,
                &format!("tagcache: aux data version {encver} is newer than this module supports"),
            );
            return raw::REDISMODULE_ERR as c_int;
        }
        let (Ok(batch), Ok(rules)) = (raw::load_string_buffer(rdb), raw::load_string_buffer(rdb))
        else {
            return raw::REDISMODULE_ERR as c_int;
        };
        // Version 1 aux data had no LAZY state.
        let lazy = if encver >= 2 {
            match raw::load_string_buffer(rdb) {
                Ok(b) => Some(b),
                Err(_) => return raw::REDISMODULE_ERR as c_int,
            }
        } else {
            None
        };
        let restored = state::lock().restore_state(
            batch.as_ref(),
            rules.as_ref(),
            lazy.as_ref().map(|b| b.as_ref()),
        );
        if let Err(e) = restored {
            log_io(rdb, &format!("tagcache: aux data: {e}"));
            return raw::REDISMODULE_ERR as c_int;
        }
        raw::REDISMODULE_OK as c_int
    })
}

/// DEBUG DIGEST: value, tags and dependencies in canonical (sorted) order, as one ordered
/// sequence with the list sizes in it, so a name as a tag, as a dependency or as the value
/// digests differently (the server XORs separate sequences, which would lose that). Counters and
/// meta are not part of it.
unsafe extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard((), || {
        // SAFETY: the server calls with a live digest and a value of this type, an entry from
        // `into_raw` that nothing writes meanwhile. The module API table is filled by
        // `RedisModule_Init` before the server calls back.
        unsafe {
            let e = Entry::from_raw_ref(value.cast());
            let (Some(add), Some(end)) = (
                raw::RedisModule_DigestAddStringBuffer,
                raw::RedisModule_DigestEndSequence,
            ) else {
                return;
            };
            let put = |b: &[u8]| add(md, b.as_ptr() as *const c_char, b.len());
            put(e.value());
            for list in [e.tags(), e.deps()] {
                put(list.clone().count().to_string().as_bytes());
                for n in list {
                    put(n);
                }
            }
            if e.is_stale() {
                // Fresh entries digest as before; a stale mark and its deadline are part of it.
                put(b"stale");
                put(e.stale_until().to_string().as_bytes());
            }
            end(md);
        }
    })
}

/// May run on the lazy-free thread: frees the entry's own memory and nothing else.
unsafe extern "C" fn free(value: *mut c_void) {
    if !value.is_null() {
        // SAFETY: the server frees a value of this type once, when nothing uses it any more:
        // an entry from `into_raw`, which this takes back.
        drop(unsafe { Entry::box_from_raw(value.cast()) });
    }
}

/// How much work freeing takes: an entry is one allocation, whatever its size.
unsafe extern "C" fn free_effort(
    _key: *mut raw::RedisModuleString,
    _value: *const c_void,
) -> usize {
    1
}

/// COPY: a full copy of the entry; the `copy_to` notification indexes the new key. Records the
/// source database (see `restore_client_db`).
unsafe extern "C" fn copy2(
    ctx: *mut raw::RedisModuleKeyOptCtx,
    value: *const c_void,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        // SAFETY: the server calls on the main thread with a live key-operation context and the
        // source value, an entry from `into_raw` that nothing writes while it is copied. The module
        // API table is filled by `RedisModule_Init` before the server calls back.
        unsafe {
            if let Some(f) = raw::RedisModule_GetDbIdFromOptCtx {
                SOURCE_DB.store(i64::from(f(ctx)), Ordering::Relaxed);
                if let (true, Some(name)) =
                    (state::lazy_active(), raw::RedisModule_GetKeyNameFromOptCtx)
                {
                    let from = RedisString::string_as_slice(name(ctx) as *mut _).to_vec();
                    if let Ok(db) = usize::try_from(f(ctx)) {
                        state::lock().departed = Some((db, from));
                    }
                }
            }
            let e = Entry::from_raw_ref(value.cast()).to_owned();
            Entry::into_raw(e).cast()
        }
    })
}

/// The database a MOVE or COPY started from, until its `move_to`/`copy_to` notification.
static SOURCE_DB: AtomicI64 = AtomicI64::new(-1);

/// Valkey 8.1 runs keyspace callbacks on the executing client and leaves it on the database of
/// the notification (valkey-io/valkey#4024): after MOVE or COPY ... DB the client would stay on
/// the destination database, and the command would propagate under it. Selecting the source
/// database again at the end of `move_to`/`copy_to` undoes that; elsewhere the callback runs on
/// a temporary client and this changes nothing.
fn restore_client_db(ctx: &Context) {
    let db = SOURCE_DB.swap(-1, Ordering::Relaxed);
    if let Ok(db) = usize::try_from(db) {
        server::select_db(ctx, db);
    }
}

/// The server removed the key from its database (DEL, UNLINK, expiry, eviction, overwrite,
/// RENAME's source, MOVE's source...): drop it from that database's index, and hold it as the
/// removal to classify. Main thread.
unsafe extern "C" fn unlink2(ctx: *mut raw::RedisModuleKeyOptCtx, value: *const c_void) {
    guard((), || {
        // SAFETY: the server calls on the main thread with a live key-operation context and the
        // value leaving (null-checked), an entry from `into_raw` not freed before this returns. The
        // module API table is filled by `RedisModule_Init` before the server calls back.
        unsafe {
            let (Some(name), Some(dbid)) = (
                raw::RedisModule_GetKeyNameFromOptCtx,
                raw::RedisModule_GetDbIdFromOptCtx,
            ) else {
                return;
            };
            let key = RedisString::string_as_slice(name(ctx) as *mut _);
            let Ok(db) = usize::try_from(dbid(ctx)) else {
                return;
            };
            if value.is_null() {
                return;
            }
            let e = Entry::from_raw_ref(value.cast());
            let hash = hash_key(key);
            let mut st = state::lock();
            let quiet = match st.quiet {
                Some((d, h, q)) if (d, h) == (db, hash) => {
                    st.quiet = None;
                    Some(q)
                }
                _ => None,
            };
            // An entry a LAZY mark covers that leaves its name by another way than the reclaimer
            // (DEL, expiry, RENAME's source): the guard's history learns which mark removed it,
            // as the reclaimer would have told it (its cascade goes on from it). The marks' users
            // are asked once the state's lock is released.
            let leaving = if crate::reclaim::reclaiming() {
                Vec::new()
            } else {
                st.covered_leaving(db, key, e)
            };
            if st
                .db(db)
                .remove(key, e.id(), e.tags(), e.deps(), e.value().len() as u64)
                && quiet.is_none()
            {
                st.settle_removal();
                st.last_unlinked = Some((db, hash, e.hits()));
            }
            drop(st);
            if !leaving.is_empty() {
                crate::reclaim::credit_leaving(server::detached().as_ref(), db, key, &leaving);
            }
        }
    })
}

/// The command filter (every command a client sends, before it runs; not the module's own
/// calls): `WATCH`'s keys and `CLIENT TRACKING ON` go to `watch`, which tells them when a mark
/// covers them; `ACL` changes of users (and `MULTI`/`EXEC` around them) go to the guard's
/// history (`history::acl_seen`). Reads the arguments only, changes nothing.
unsafe extern "C" fn command_filter(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    guard((), || {
        // SAFETY: the server calls on the main thread with a live filter context; its arguments
        // stay alive for the call and are only read. The module API table is filled by
        // `RedisModule_Init` before the server calls back.
        unsafe {
            let (Some(count), Some(arg)) = (
                raw::RedisModule_CommandFilterArgsCount,
                raw::RedisModule_CommandFilterArgGet,
            ) else {
                return;
            };
            crate::history::command_seen();
            let n = count(fctx);
            if n < 1 {
                return;
            }
            let word = |i: c_int| {
                let s = arg(fctx, i);
                if s.is_null() {
                    &[][..]
                } else {
                    RedisString::string_as_slice(s)
                }
            };
            let name = word(0);
            if n >= 2 && name.eq_ignore_ascii_case(b"acl") {
                crate::history::acl_seen(word(1));
            } else if name.eq_ignore_ascii_case(b"multi") {
                crate::history::multi_seen(true);
            } else if name.eq_ignore_ascii_case(b"exec") || name.eq_ignore_ascii_case(b"discard") {
                crate::history::multi_seen(false);
            } else if n >= 2 && name.eq_ignore_ascii_case(b"watch") {
                crate::watch::watching((1..n).map(word));
            } else if n >= 3
                && name.eq_ignore_ascii_case(b"client")
                && word(1).eq_ignore_ascii_case(b"tracking")
                && word(2).eq_ignore_ascii_case(b"on")
            {
                crate::watch::tracking_seen();
            }
        }
    })
}

/// Registers the command filter (see `command_filter`); false when the server refuses it.
pub fn register_command_filter(ctx: &Context) -> bool {
    // SAFETY: The module API table is filled by `RedisModule_Init` before `OnLoad` goes on.
    let Some(register) = (unsafe { raw::RedisModule_RegisterCommandFilter }) else {
        return false;
    };
    let flags = raw::REDISMODULE_CMDFILTER_NOSELF as c_int;
    // SAFETY: the module's context during `OnLoad`; the filter is a function of the module,
    // which outlives it.
    !unsafe { register(ctx.ctx, Some(command_filter), flags) }.is_null()
}

/// Subscribes to the server events and keyspace notifications the index follows.
pub fn subscribe(ctx: &Context) -> bool {
    let events: [(u64, raw::RedisModuleEventCallback); 6] = [
        (
            raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
            Some(on_role_change),
        ),
        (raw::REDISMODULE_EVENT_FLUSHDB, Some(on_flush)),
        (raw::REDISMODULE_EVENT_SWAPDB, Some(on_swapdb)),
        (raw::REDISMODULE_EVENT_LOADING, Some(on_loading)),
        (raw::REDISMODULE_EVENT_CONFIG, Some(on_config_change)),
        (raw::REDISMODULE_EVENT_CRON_LOOP, Some(on_cron)),
    ];
    for (id, cb) in events {
        let ev = raw::RedisModuleEvent { id, dataver: 1 };
        if raw::subscribe_to_server_event(ctx.ctx, ev, cb) != raw::Status::Ok {
            return false;
        }
    }
    // SAFETY: The module API table is filled by `RedisModule_Init` before `OnLoad` goes on.
    let Some(sub) = (unsafe { raw::RedisModule_SubscribeToKeyspaceEvents }) else {
        return false;
    };
    // Only generic, expiry and eviction events: subscribing to a class makes every command of
    // that class on the server call the module.
    let classes = raw::REDISMODULE_NOTIFY_GENERIC
        | raw::REDISMODULE_NOTIFY_EXPIRED as c_int
        | raw::REDISMODULE_NOTIFY_EVICTED as c_int;
    // SAFETY: the module's context during `OnLoad`; the callback is a function of the module.
    unsafe { sub(ctx.ctx, classes, Some(on_keyspace)) == raw::REDISMODULE_OK as c_int }
}

/// `CONFIG SET` changed something: forget the configuration the module keeps.
unsafe extern "C" fn on_config_change(
    _ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    _sub: u64,
    _data: *mut c_void,
) {
    guard((), server::config_changed);
}

/// The server's cron (`hz` times a second): housekeeping that must not wait for a command.
unsafe extern "C" fn on_cron(
    _ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    _sub: u64,
    _data: *mut c_void,
) {
    guard((), crate::history::tidy);
}

unsafe extern "C" fn on_flush(
    ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    sub: u64,
    data: *mut c_void,
) {
    guard((), || {
        // SAFETY: the server calls with the FLUSHDB event's data, a live `RedisModuleFlushInfoV1`
        // (the subscription asked for version 1), on the main thread. The module API table is
        // filled by `RedisModule_Init` before the server calls back.
        unsafe {
            let info = &*data.cast::<raw::RedisModuleFlushInfoV1>();
            if sub == raw::REDISMODULE_SUBEVENT_FLUSHDB_START {
                // The entries LAZY marks cover leave without the reclaimer: the guard learns it.
                let db = usize::try_from(info.dbnum).ok();
                crate::reclaim::flushing(&Context::new(ctx), db);
                return;
            }
            if sub != raw::REDISMODULE_SUBEVENT_FLUSHDB_END {
                return;
            }
            let mut st = state::lock();
            let db = usize::try_from(info.dbnum).ok();
            match db {
                Some(db) => st.db(db).clear(),
                None => st.clear_all(),
            }
            st.lazy_mut(|l| l.clear(db));
            drop(st);
            crate::reclaim::release_waiters(&Context::new(ctx), db);
            crate::fetch::forget(db);
        }
    })
}

unsafe extern "C" fn on_swapdb(
    _ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    _sub: u64,
    data: *mut c_void,
) {
    guard((), || {
        // SAFETY: the server calls with the SWAPDB event's data, a live `RedisModuleSwapDbInfoV1`,
        // on the main thread. The module API table is filled by `RedisModule_Init` before the
        // server calls back.
        unsafe {
            let info = &*data.cast::<raw::RedisModuleSwapDbInfoV1>();
            if let (Ok(a), Ok(b)) = (
                usize::try_from(info.dbnum_first),
                usize::try_from(info.dbnum_second),
            ) {
                let mut st = state::lock();
                st.swap(a, b);
                st.lazy_mut(|l| l.swap(a, b));
                // A BATCHED request is for the data it was queued for: it follows it, as the
                // marks do (replicas and the AOF replay the same SWAPDB over the same queue).
                st.batch.swap(a, b);
                drop(st);
                crate::reclaim::swap_waiters(a, b);
                crate::history::swap(a, b);
                // A lease is for the value its holder is computing for this database's key.
                crate::fetch::forget(Some(a));
                crate::fetch::forget(Some(b));
            }
        }
    })
}

/// A replica promoted to master starts applying the BATCHED queue it mirrored.
unsafe extern "C" fn on_role_change(
    ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    _sub: u64,
    _data: *mut c_void,
) {
    guard((), || {
        let ctx = Context::new(ctx);
        crate::commands::arm_batch_timer(&ctx);
        crate::reclaim::arm(&ctx);
        // A master that became a replica takes no step any more: the invalidations waiting for
        // its steps (clients, other masters' requests) get what was deleted so far.
        if crate::server::is_replica(&ctx) {
            crate::reclaim::release_waiters(&ctx, None);
        }
        // A replica hands out no leases; a new master starts with none.
        crate::fetch::forget(None);
        // A replica does not know what its master invalidated (it replays deletes): a new
        // master vouches for no token of before.
        crate::history::new_epoch();
    })
}

/// Loading (restart, DEBUG RELOAD, replica full sync) puts keys in place without any callback
/// that names them: rebuild every index from the entries once it ends.
unsafe extern "C" fn on_loading(
    ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    sub: u64,
    _data: *mut c_void,
) {
    guard((), || {
        let ctx = Context::new(ctx);
        if sub != raw::REDISMODULE_SUBEVENT_LOADING_ENDED
            && sub != raw::REDISMODULE_SUBEVENT_LOADING_FAILED
        {
            // The generation is what the loaded data says (its aux field, its entries): a
            // replica ahead of its new master must not keep its own, or everything the master
            // writes after would be born after the master's marks.
            state::reset_generation();
        }
        if sub == raw::REDISMODULE_SUBEVENT_LOADING_ENDED {
            crate::commands::rebuild_all(&ctx);
            crate::commands::arm_batch_timer(&ctx);
            crate::reclaim::arm(&ctx);
        } else if sub == raw::REDISMODULE_SUBEVENT_LOADING_FAILED {
            // What was loaded before the failure stays in the keyspace: index it.
            crate::commands::rebuild_all(&ctx);
        } else {
            // What is loaded replaces the module's state: an RDB without aux data (no rules,
            // no queue) leaves none.
            let mut st = state::lock();
            st.clear_all();
            st.batch = Batch::new();
            *st.rules() = Rules::default();
            st.lazy_mut(|l| *l = Lazy::new());
            drop(st);
            crate::fetch::forget(None);
            // What was invalidated before the data came is not known: no older token holds.
            crate::history::new_epoch();
        }
    })
}

/// Keys that arrive under a new name or in a new database carry their facts with them: index
/// them from the entry (their old name left through `unlink2`). The other events classify the
/// removal `unlink2` just held. Never writes keys: an arriving entry gets its id (and a restored
/// one its generation) written in place.
unsafe extern "C" fn on_keyspace(
    ctx: *mut raw::RedisModuleCtx,
    _ty: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    guard((), || {
        // SAFETY: the server calls on the main thread with a live context, a C string event name
        // and the key's live name, for the duration of the call. The module API table is filled by
        // `RedisModule_Init` before the server calls back.
        unsafe {
            let event = std::ffi::CStr::from_ptr(event).to_bytes();
            let arrives = matches!(event, b"rename_to" | b"move_to" | b"copy_to" | b"restore");
            let classifies = matches!(
                event,
                b"expired" | b"evicted" | b"rename_from" | b"move_from"
            );
            if !arrives && !classifies && event != b"del" {
                // Whatever happened, the entry held (if any) was removed for good.
                let mut st = state::lock();
                if st.last_unlinked.is_some() {
                    st.settle_removal();
                }
                return;
            }
            let ctx = Context::new(ctx);
            let db = server::selected_db(&ctx);
            let name = RedisString::string_as_slice(key);
            classify_removal(db, name, event);
            if event == b"move_from" {
                SOURCE_DB.store(db as i64, Ordering::Relaxed);
            }
            if matches!(event, b"rename_from" | b"move_from") && state::lazy_active() {
                state::lock().departed = Some((db, name.to_vec()));
            }
            if !arrives {
                return;
            }
            let name = name.to_vec();
            let handle = server::Key::probe(&ctx, &RedisString::create_from_slice(ctx.ctx, &name));
            // The database the key is in: Valkey 9.1 reports the transaction's database as the
            // selected one for a MOVE inside MULTI/EXEC, while the key opens in the destination.
            let db = handle.db().unwrap_or(db);
            if let server::Held::Entry(e) = handle.held() {
                if event == b"restore" {
                    // Its generation where it was dumped means nothing here: it is born here as
                    // of when it was written (its `created_ms`), so the marks made here since then
                    // that pick it cover it, as they would have had it been here (a reshard moves
                    // an entry a cluster-wide LAZY mark covers: it stays gone).
                    let born = restored_born(db, e.created_ms());
                    e.set_born(born);
                }
                let size = e.value().len() as u64;
                let departed = {
                    let mut st = state::lock();
                    // The id it carries is its source's (or none): a new one here, unless this
                    // entry is in this index already.
                    let idx = st.db(db);
                    if !idx.holds(&name, e.id()) {
                        let id = idx.insert(&name, e.tags(), e.deps(), size);
                        e.set_id(id);
                    }
                    st.departed.take()
                };
                if event == b"restore" && e.born() < state::newest_mark() {
                    // A walk under way may have passed its name: it looks again.
                    state::lock().lazy_mut(|l| l.db(db).arrived(&name, e.born(), Vec::new()));
                }
                if event != b"restore" && e.born() < state::newest_mark() {
                    // A mark's selection was fixed when it was made. Covered under its old name:
                    // an alias keeps it covered under the new one. Otherwise no mark selected it,
                    // whatever range it arrives in: it is born anew, after every mark.
                    let alias = departed.and_then(|(from, old)| {
                        crate::reclaim::alias_if_covered(&ctx, from, &old, e, &name)
                    });
                    match alias {
                        Some(alias) => {
                            state::lock()
                                .lazy_mut(|l| l.db(db).arrived(&name, e.born(), vec![alias]));
                        }
                        None => e.set_born(state::generation()),
                    }
                }
            }
            drop(handle);
            if matches!(event, b"move_to" | b"copy_to") {
                restore_client_db(&ctx);
            }
        }
    });
    raw::REDISMODULE_OK as c_int
}

/// The generation a restored entry written at `created_ms` is born at in `db`: just before the
/// oldest mark made after that (marks cover entries born before them), or now when there is
/// none.
fn restored_born(db: usize, created_ms: i64) -> u64 {
    let marks = state::lock().lazy().marks(db);
    marks
        .and_then(|m| {
            m.iter()
                .find(|m| m.created_ms > created_ms)
                .map(|m| m.gen.saturating_sub(1))
        })
        .unwrap_or_else(state::generation)
}

/// Classifies the entry `unlink2` held by the notification that follows: expired, evicted, not
/// a removal at all (RENAME/MOVE moved it), or deleted.
fn classify_removal(db: usize, name: &[u8], event: &[u8]) {
    let mut st = state::lock();
    let Some((d, h, hits)) = st.last_unlinked else {
        return;
    };
    if (d, h) != (db, hash_key(name)) {
        st.settle_removal();
        return;
    }
    st.last_unlinked = None;
    let kind = match event {
        b"expired" => Removal::Expired { hits },
        b"evicted" => Removal::Evicted { hits },
        b"rename_from" | b"move_from" => return,
        _ => Removal::Deleted { hits },
    };
    st.metrics_started().record_removal(kind);
}

/// INFO cache: the metrics' fields (the server prefixes each with the module name, `cache_`)
/// and the removals that were not invalidations.
///
/// # Safety
/// Called by the server with a valid info context.
pub unsafe extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, for_crash_report: c_int) {
    guard((), || {
        // SAFETY: the server calls with a live INFO context for the call; every name and value
        // handed over is a C string alive until its call returns (the server copies it). The module
        // API table is filled by `RedisModule_Init` before the server calls back.
        unsafe {
            let now = server::now_ms();
            let th = crate::config::thresholds();
            let (fields, (expired, evicted, deleted)) = {
                // A crash report must not wait for a lock the crashing code may hold.
                let mut st = if for_crash_report != 0 {
                    match state::try_lock() {
                        Some(st) => st,
                        None => return,
                    }
                } else {
                    state::lock()
                };
                st.settle_removal();
                let figures = st.figures(false);
                let m = st.metrics(now);
                (m.info(&figures, &th, now), m.removal_counts())
            };
            let (Some(section), Some(add_u), Some(add_s), Some(add_d)) = (
                raw::RedisModule_InfoAddSection,
                raw::RedisModule_InfoAddFieldULongLong,
                raw::RedisModule_InfoAddFieldCString,
                raw::RedisModule_InfoAddFieldDouble,
            ) else {
                return;
            };
            section(ctx, c"".as_ptr() as *mut c_char);
            let name = |n: &str| std::ffi::CString::new(n.strip_prefix("cache_").unwrap_or(n)).ok();
            for (n, v) in fields {
                let Some(n) = name(n) else { continue };
                let n = n.as_ptr() as *mut c_char;
                match v {
                    Field::Int(i) => {
                        add_u(ctx, n, u64::try_from(i).unwrap_or(0));
                    }
                    Field::Float(x) => {
                        add_d(ctx, n, x);
                    }
                    Field::Str(s) => {
                        if let Ok(s) = std::ffi::CString::new(s) {
                            add_s(ctx, n, s.as_ptr() as *mut c_char);
                        }
                    }
                    Field::Nil | Field::Map(_) | Field::List(_) => {}
                }
            }
            for (n, v) in [
                (c"removed_expired", expired),
                (c"removed_evicted", evicted),
                (c"removed_deleted", deleted),
            ] {
                add_u(ctx, n.as_ptr() as *mut c_char, v);
            }
            if for_crash_report == 0 {
                let (accepted, refused, _) = crate::history::figures();
                add_u(ctx, c"guard_accepted".as_ptr() as *mut c_char, accepted);
                add_u(ctx, c"guard_refused".as_ptr() as *mut c_char, refused);
            }
        }
    })
}

/// A command's callback as the server calls it.
pub type CommandFn = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *mut *mut raw::RedisModuleString,
    c_int,
) -> c_int;

/// Runs a command on its arguments, borrowed: the server holds them for the whole call, so they
/// are neither retained nor freed, and up to 16 of them take no allocation. (`redis_module`'s
/// own wrapper collects them into a new `Vec`, retaining each one, on every call.)
///
/// # Safety
/// The server's command callback arguments, passed on unchanged.
pub unsafe fn call_command(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    run: impl FnOnce(&Context, &[RedisString]),
) -> c_int {
    let context = Context::new(ctx);
    let given: &[*mut raw::RedisModuleString] = match usize::try_from(argc) {
        // SAFETY: the server passes `argc` live strings at `argv` (non-null here), which it
        // holds until the command returns.
        Ok(n) if !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
        _ => &[],
    };
    let held: SmallVec<[ManuallyDrop<RedisString>; 16]> = given
        .iter()
        .map(|&a| ManuallyDrop::new(RedisString::from_redis_module_string(ctx, a)))
        .collect();
    // SAFETY: `ManuallyDrop<T>` is `repr(transparent)` over `T`; the strings are never dropped
    // through this view, so the server's references stay as they were.
    let args = unsafe {
        &*(std::ptr::from_ref::<[ManuallyDrop<RedisString>]>(held.as_slice())
            as *const [RedisString])
    };
    run(&context, args);
    raw::REDISMODULE_OK as c_int
}

/// Whether the server calls a `getkeys-api` command only to learn its key positions.
///
/// # Safety
/// The server's context of a command call.
pub unsafe fn keys_position_request(ctx: *mut raw::RedisModuleCtx) -> bool {
    // SAFETY: the module API table is filled by `RedisModule_Init` before any command runs, and
    // `ctx` is the server's context of the current command call (the caller's promise).
    unsafe { raw::RedisModule_IsKeysPositionRequest.is_some_and(|f| f(ctx) != 0) }
}

/// CACHE.MSET's key positions (its keys are found by parsing, `getkeys-api`): names each
/// entry's key as read-write, as CACHE.SET's key spec does.
///
/// # Safety
/// Called with the server's arguments of a key-position request.
pub unsafe fn mset_key_positions(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    guard((), || {
        let given: &[*mut raw::RedisModuleString] = match usize::try_from(argc) {
            // SAFETY: the server passes `argc` live strings at `argv` (non-null here), held
            // until the call returns.
            Ok(n) if !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
            _ => &[],
        };
        let words: SmallVec<[&[u8]; 16]> = given
            .iter()
            .map(|&s| RedisString::string_as_slice(s))
            .collect();
        let write = (raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE) as c_int;
        for at in crate::commands::mset_keys(&words) {
            let at = c_int::try_from(at).unwrap_or(c_int::MAX);
            // SAFETY: `ctx` is the context of the key-position request (the caller's
            // promise); the module API table is filled by `RedisModule_Init` first.
            unsafe {
                match (
                    raw::RedisModule_KeyAtPosWithFlags,
                    raw::RedisModule_KeyAtPos,
                ) {
                    (Some(with_flags), _) => with_flags(ctx, at, write),
                    (None, Some(plain)) => plain(ctx, at),
                    (None, None) => {}
                }
            }
        }
    });
    raw::REDISMODULE_OK as c_int
}

/// Registers the commands and containers of the table (from `OnLoad`); false when the server
/// refuses one.
pub fn create_commands(ctx: &Context, table: &[Command]) -> bool {
    // SAFETY: The module API table is filled by `RedisModule_Init` before `OnLoad` goes on.
    let Some(create) = (unsafe { raw::RedisModule_CreateCommand }) else {
        return false;
    };
    let mut rows = table.iter().filter(|c| c.form != Form::Subcommand);
    rows.all(|c| {
        let (first, last, step) = c.keys;
        // SAFETY: the module's context during `OnLoad`; the name and flags are static C
        // strings, and the callback a function of the module, which outlives the command.
        let ok = unsafe {
            create(
                ctx.ctx,
                c.name.as_ptr(),
                c.callback,
                c.flags.as_ptr(),
                first,
                last,
                step,
            )
        } == raw::REDISMODULE_OK as c_int;
        if !ok {
            ctx.log_warning(&format!(
                "tagcache: could not create {}",
                c.name.to_string_lossy()
            ));
        }
        ok
    })
}

/// Registers the table's subcommands under their containers (created by `create_commands`).
/// Redis 7.0 subcommands.
pub fn create_subcommands(ctx: &Context, table: &[Command]) -> bool {
    // SAFETY: the module's context during `OnLoad`; the names and flags are C strings alive for
    // each call (the server copies them), the callbacks functions of the module, and a
    // container handle is used only once the server returned it non-null.
    unsafe {
        let (Some(get), Some(sub)) = (
            raw::RedisModule_GetCommand,
            raw::RedisModule_CreateSubcommand,
        ) else {
            return false;
        };
        let mut rows = table.iter().filter(|c| c.form == Form::Subcommand);
        rows.all(|c| {
            let Some((parent, name)) = c.parent_and_sub() else {
                return false;
            };
            let Ok(parent) = CString::new(parent) else {
                return false;
            };
            let cmd = get(ctx.ctx, parent.as_ptr());
            !cmd.is_null()
                && sub(cmd, name.as_ptr(), c.callback, c.flags.as_ptr(), 0, 0, 0)
                    == raw::REDISMODULE_OK as c_int
        })
    }
}

/// Registers the integer configs as `cache.<name>` and loads their values from the server's
/// configuration (`RedisModule_LoadConfigs`; from `OnLoad`, before anything reads them). A
/// `loadmodule` argument pair `<name> <value>` is the config's default, as `redis_module`'s
/// `module_args_as_configuration` makes it: an unparsable one fails the load, one out of range
/// is the server's to refuse. Err says what went wrong.
pub fn register_configs(
    ctx: &Context,
    configs: &[&'static IntConfig],
    args: &[RedisString],
) -> Result<(), String> {
    use redis_module::configuration::get_i64_default_config_value;
    // SAFETY: reads the server's API table, filled in by `RedisModule_Init` before `OnLoad`
    // goes on.
    let (Some(register), load) = (unsafe { raw::RedisModule_RegisterNumericConfig }, unsafe {
        raw::RedisModule_LoadConfigs
    }) else {
        return Err("the server has no module configs".into());
    };
    for &config in configs {
        let default = get_i64_default_config_value(args, config.name, config.default)
            .map_err(|e| e.to_string())?;
        let name = CString::new(config.name).map_err(|_| config.name.to_owned())?;
        // SAFETY: the module's context during `OnLoad`; the server copies the name, and the
        // private data is the config, a static that outlives the module.
        let registered = unsafe {
            register(
                ctx.ctx,
                name.as_ptr(),
                default,
                raw::REDISMODULE_CONFIG_DEFAULT,
                config.min,
                config.max,
                Some(config_get),
                Some(config_set),
                None,
                std::ptr::from_ref::<IntConfig>(config).cast_mut().cast(),
            )
        };
        if registered != raw::REDISMODULE_OK as c_int {
            return Err(format!(
                "could not register the config cache.{}",
                config.name
            ));
        }
    }
    if let Some(load) = load {
        // Its result is the server's to act on: a config it could not apply leaves the module
        // unloaded, and says so.
        // SAFETY: the module's context during `OnLoad`, after its configs are registered.
        unsafe { load(ctx.ctx) };
    }
    Ok(())
}

/// `CONFIG GET` of a config `register_configs` registered (`privdata` is its `IntConfig`).
unsafe extern "C" fn config_get(_name: *const c_char, privdata: *mut c_void) -> c_longlong {
    // SAFETY: the private data registered with the config: a `&'static IntConfig`.
    let config = unsafe { &*privdata.cast::<IntConfig>() };
    guard(config.default, || config.get())
}

/// `CONFIG SET` (or the configuration at load) of a config `register_configs` registered, with
/// a value the server checked against its range.
unsafe extern "C" fn config_set(
    _name: *const c_char,
    value: c_longlong,
    privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: the private data registered with the config: a `&'static IntConfig`.
    let config = unsafe { &*privdata.cast::<IntConfig>() };
    guard(raw::REDISMODULE_ERR as c_int, || {
        config.set(value);
        raw::REDISMODULE_OK as c_int
    })
}

/// The command info of every command and subcommand (Redis 7.0): its row's docs from
/// `core::docs` (summary, since, complexity, arguments, for `COMMAND DOCS` and redis-cli's
/// hints), and key specs for the keyed commands: reads are read-only access, so an ACL user
/// with `%R~` patterns may CACHE.GET what it may read, and writes need write access. Without
/// key specs the server treats the legacy key positions as read-write. Err names a command
/// that the server refused; on a server without the API nothing is set.
pub fn set_command_info(ctx: &Context, table: &[Command]) -> Result<(), String> {
    use raw::{
        RedisModuleCommandKeySpec as Spec, RedisModuleCommandKeySpec__bindgen_ty_1 as Begin,
        RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 as Index,
        RedisModuleCommandKeySpec__bindgen_ty_2 as Find,
        RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 as Range,
    };
    let read = u64::from(raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS);
    let write = u64::from(raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE);
    let spec = |flags: u64, first: c_int, lastkey: c_int| Spec {
        notes: std::ptr::null(),
        flags,
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: Begin {
            index: Index { pos: first },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
        fk: Find {
            range: Range {
                lastkey,
                keystep: 1,
                limit: 0,
            },
        },
    };
    // The array ends with a zeroed spec (begin search type INVALID).
    let end = Spec {
        notes: std::ptr::null(),
        flags: 0,
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INVALID,
        bs: Begin {
            index: Index { pos: 0 },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_OMITTED,
        fk: Find {
            range: Range {
                lastkey: 0,
                keystep: 0,
                limit: 0,
            },
        },
    };
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<Spec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    // Every command and subcommand; the keyed ones with their spec (read-only ones by their
    // flags, a range to the end for a last key -1).
    let key = |c: &Command| {
        let (first, last, _) = c.keys;
        let lastkey = if last < 0 { last } else { last - first };
        (first > 0).then_some((if c.readonly() { read } else { write }, first, lastkey))
    };
    // SAFETY: the server's API, called at load time from the main thread with the module's
    // context; every pointer handed over stays alive until SetCommandInfo returns (it copies).
    unsafe {
        let (Some(get), Some(set_info)) =
            (raw::RedisModule_GetCommand, raw::RedisModule_SetCommandInfo)
        else {
            // An older server: the legacy key positions stay, and no docs.
            return Ok(());
        };
        for c in table {
            let (name, doc, key) = (c.name.to_string_lossy(), c.docs, key(c));
            let cmd = get(ctx.ctx, c.name.as_ptr());
            if cmd.is_null() {
                return Err(format!("{name} is not registered"));
            }
            let mut raw_doc = RawDoc::default();
            let args = raw_doc.args(doc.args, key.is_some());
            let (summary, complexity, since) = (
                raw_doc.text(doc.summary),
                raw_doc.text(doc.complexity),
                raw_doc.text(doc.since),
            );
            let mut specs = key.map(|(flags, first, lastkey)| [spec(flags, first, lastkey), end]);
            let mut info: raw::RedisModuleCommandInfo = std::mem::zeroed();
            info.version = &version;
            info.summary = summary;
            info.complexity = complexity;
            info.since = since;
            info.args = args;
            if let Some(specs) = &mut specs {
                info.key_specs = specs.as_mut_ptr();
            }
            if set_info(cmd, &info) != raw::REDISMODULE_OK as c_int {
                return Err(format!("the server refused the command info of {name}"));
            }
        }
    }
    Ok(())
}

/// A command's docs in the server's structures: the strings and argument arrays they point to
/// live as long as this value.
#[derive(Default)]
struct RawDoc {
    strings: Vec<CString>,
    arrays: Vec<Box<[raw::RedisModuleCommandArg]>>,
}

impl RawDoc {
    fn text(&mut self, s: &str) -> *const c_char {
        let c = CString::new(s).unwrap_or_default();
        let p = c.as_ptr();
        self.strings.push(c);
        p
    }

    /// The arguments as an array ended by a zeroed one (null when there are none). A key
    /// argument points at the command's one key spec (`keyed`), else it is a plain string.
    fn args(
        &mut self,
        args: &[crate::core::docs::Arg],
        keyed: bool,
    ) -> *mut raw::RedisModuleCommandArg {
        use crate::core::docs::Kind;
        if args.is_empty() {
            return std::ptr::null_mut();
        }
        let mut out: Vec<raw::RedisModuleCommandArg> = Vec::with_capacity(args.len() + 1);
        for a in args {
            let kind = match a.kind {
                Kind::Text => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                Kind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
                Kind::Key if keyed => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
                Kind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                Kind::Pattern => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PATTERN,
                Kind::UnixTime => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_UNIX_TIME,
                Kind::Token => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
                Kind::OneOf => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
                Kind::Block => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
            };
            let mut flags = 0;
            if a.optional {
                flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int;
            }
            if a.multiple {
                flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE as c_int;
            }
            let subargs = self.args(a.sub, keyed);
            out.push(raw::RedisModuleCommandArg {
                name: self.text(a.name),
                type_: kind,
                key_spec_index: if a.kind == Kind::Key && keyed { 0 } else { -1 },
                token: a.token.map_or(std::ptr::null(), |t| self.text(t)),
                summary: std::ptr::null(),
                since: std::ptr::null(),
                flags,
                deprecated_since: std::ptr::null(),
                subargs,
                display_text: std::ptr::null(),
            });
        }
        // SAFETY: an all-zero argument (null pointers, type 0) is the array's end marker.
        out.push(unsafe { std::mem::zeroed() });
        let mut boxed = out.into_boxed_slice();
        let p = boxed.as_mut_ptr();
        self.arrays.push(boxed);
        p
    }
}

/// The reply callback of every client the module blocks: renders its `server::Answer`.
pub(crate) unsafe extern "C" fn blocked_reply(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    guard(raw::REDISMODULE_OK as c_int, || {
        // SAFETY: the server calls with the reply context of a client the module blocked; its
        // private data is null or the boxed `Answer` `Blocked::answer` gave, freed only by
        // `blocked_free` after this. The module API table is filled by `RedisModule_Init` before
        // the server calls back.
        unsafe {
            let data = raw::RedisModule_GetBlockedClientPrivateData
                .map_or(std::ptr::null_mut(), |f| f(ctx));
            if !data.is_null() {
                let c = Context::new(ctx);
                match &*data.cast::<server::Answer>() {
                    Ok(r) => server::reply(&c, r),
                    Err(e) => server::reply_error(&c, e),
                }
            }
            raw::REDISMODULE_OK as c_int
        }
    })
}

/// Frees a blocked client's answer.
pub(crate) unsafe extern "C" fn blocked_free(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: a blocked client's private data is the boxed `Answer` `Blocked::answer`
        // gave, freed once, here, after `blocked_reply` read it.
        drop(unsafe { Box::from_raw(data.cast::<server::Answer>()) });
    }
}

/// The cluster bus receiver: hands the message to `cluster::received` (which queues it for a
/// timer: nothing runs inside the bus callback).
pub(crate) unsafe extern "C" fn cluster_message(
    ctx: *mut raw::RedisModuleCtx,
    sender: *const c_char,
    kind: u8,
    payload: *const std::os::raw::c_uchar,
    len: u32,
) {
    if sender.is_null() || (payload.is_null() && len > 0) {
        return;
    }
    guard((), || {
        // SAFETY: the server calls with a live context; `sender` points at a node id of
        // `REDISMODULE_NODE_ID_LEN` bytes and `payload` at `len` bytes (both checked non-null
        // above), alive for the call and copied here. The module API table is filled by
        // `RedisModule_Init` before the server calls back.
        unsafe {
            let sender = std::slice::from_raw_parts(
                sender.cast::<u8>(),
                raw::REDISMODULE_NODE_ID_LEN as usize,
            );
            let payload = if len == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(payload, len as usize).to_vec()
            };
            crate::cluster::received(
                &Context::new(ctx),
                kind,
                String::from_utf8_lossy(sender).into_owned(),
                payload,
            );
        }
    })
}

/// The event loop's one-shot callback that arms the reclaimer's next step for a client waiting
/// on a stepped invalidation (see `reclaim::rearm`).
pub(crate) unsafe extern "C" fn reclaim_soon(_data: *mut c_void) {
    guard((), || {
        if let Some(ctx) = server::detached() {
            crate::reclaim::armed_soon(&ctx);
        }
    })
}
