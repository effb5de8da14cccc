//! Thin safe wrappers over the server's module API: keys holding cache entries, replies,
//! replication, notifications, scans. The command handlers use these and nothing rawer.

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicPtr, Ordering};

use redis_module::{raw, Context, RedisString, RedisValue};

use crate::core::entry::Entry;
use crate::core::glob::Glob;
use crate::core::index::{Facts, KeyId, Selector};
pub use crate::core::reply::Reply;
use crate::error::{CacheError, Result};
use crate::ffi::CACHE_TYPE;

/// The server's clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; the
    // clock takes no arguments and may be read from any thread.
    unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) }
}

pub fn selected_db(ctx: &Context) -> usize {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the live context of the command, callback or timer that called.
    let db = unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |f| f(ctx.ctx)) };
    usize::try_from(db).unwrap_or(0)
}

/// Selects a database; false when it does not exist.
pub fn select_db(ctx: &Context, db: usize) -> bool {
    let Ok(id) = c_int::try_from(db) else {
        return false;
    };
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the live context of the caller, on the main thread.
    unsafe {
        raw::RedisModule_SelectDb.is_some_and(|f| f(ctx.ctx, id) == raw::REDISMODULE_OK as c_int)
    }
}

/// This server is a replica.
pub fn is_replica(ctx: &Context) -> bool {
    flags(ctx) & raw::REDISMODULE_CTX_FLAGS_SLAVE != 0
}

/// Writes are paused (`CLIENT PAUSE`, a failover): work the module starts by itself (timers)
/// must neither write nor propagate until the pause ends.
pub fn writes_paused() -> bool {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; it
    // takes no arguments and is called on the main thread.
    unsafe { raw::RedisModule_AvoidReplicaTraffic.is_some_and(|f| f() != 0) }
}

/// The server's own reply to a `deny-oom` command over `maxmemory`, word for word.
pub const OOM_ERROR: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// The server is over `maxmemory` now (the test the server makes before a `deny-oom`
/// command); false without `maxmemory`, and where the API is missing.
pub fn over_maxmemory() -> bool {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; it
    // takes no arguments and is called on the main thread.
    unsafe { raw::RedisModule_GetUsedMemoryRatio.is_some_and(|f| f() > 1.0) }
}

/// The command came from our master or from the AOF: its outcome was decided elsewhere, so
/// local defaults (such as the default TTL) must not apply.
pub fn replayed(ctx: &Context) -> bool {
    flags(ctx) & (raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING) != 0
}

/// What a key holds, as far as the cache is concerned.
pub enum Held<'a> {
    Nothing,
    Entry(&'a mut Entry),
    Other,
}

/// An open key, closed when dropped.
pub struct Key {
    ctx: *mut raw::RedisModuleCtx,
    key: *mut raw::RedisModuleKey,
}

impl Key {
    pub fn read(ctx: &Context, name: &RedisString) -> Key {
        Self::open(ctx, name, raw::REDISMODULE_READ)
    }

    /// Opens for reading on the module's own behalf (is this name an entry? dry runs, scans,
    /// arrivals): without touching the LRU/LFU clock and, where the server can (Redis 7.2+,
    /// Valkey), without counting a keyspace hit or miss or sending a `keymiss` event, which no
    /// client caused.
    pub fn probe(ctx: &Context, name: &RedisString) -> Key {
        Self::open(ctx, name, probe_mode())
    }

    pub fn write(ctx: &Context, name: &RedisString) -> Key {
        Self::open(ctx, name, raw::REDISMODULE_READ | raw::REDISMODULE_WRITE)
    }

    fn open(ctx: &Context, name: &RedisString, mode: u32) -> Key {
        // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs;
        // `ctx` is the caller's live context and `name` a live server string; the handle returned
        // (or null) is closed by `Drop`.
        let key = unsafe {
            raw::RedisModule_OpenKey
                .map_or(ptr::null_mut(), |f| f(ctx.ctx, name.inner, mode as c_int))
        };
        Key { ctx: ctx.ctx, key }
    }

    /// The database the key was opened in (which a keyspace callback may not report right: see
    /// README, Known server issues).
    pub fn db(&self) -> Option<usize> {
        if self.key.is_null() {
            return None;
        }
        // SAFETY: the handle is open (checked non-null above) for as long as `self` lives.
        let id = unsafe { raw::RedisModule_GetDbIdFromModuleKey.map(|f| f(self.key))? };
        usize::try_from(id).ok()
    }

    pub fn held(&self) -> Held<'_> {
        // SAFETY: the handle is open (or null) for as long as `self` lives.
        unsafe { held_by(self.key) }
    }

    /// The entry at this key; WRONGTYPE for any other kind of value.
    pub fn entry(&self) -> Result<Option<&mut Entry>> {
        match self.held() {
            Held::Nothing => Ok(None),
            Held::Entry(e) => Ok(Some(e)),
            Held::Other => Err(CacheError::WrongType),
        }
    }

    /// Stores an entry, replacing whatever cache entry was there (deadline included). Takes
    /// `&mut self` because the server frees the old entry: no reference into it can outlive
    /// the call.
    pub fn set_entry(&mut self, entry: Box<Entry>) -> Result<()> {
        let value = Entry::into_raw(entry).cast::<c_void>();
        // SAFETY: the handle is open for writing (or the server refuses a null one), and `value` is
        // a fresh entry from `into_raw` that the server owns from here on (or hands back, see
        // `stored`).
        let status = unsafe {
            raw::RedisModule_ModuleTypeSetValue.map_or(raw::REDISMODULE_ERR as c_int, |f| {
                f(self.key, *CACHE_TYPE.raw_type.borrow(), value)
            })
        };
        stored(status, value)
    }

    /// Puts `entry` in place of the cache entry at this key and frees the old one. The key, its
    /// deadline and everything else the server keeps stay as they were: no keyspace event, no
    /// unlink. For an entry whose size changed. Takes `&mut self` so that no reference into the
    /// old entry can outlive the call.
    pub fn replace_entry(&mut self, entry: Box<Entry>) -> Result<()> {
        let value = Entry::into_raw(entry).cast::<c_void>();
        let mut old: *mut c_void = ptr::null_mut();
        // SAFETY: as in `set_entry`; on success the server hands back the old value in `old`, which
        // is ours to free.
        let status = unsafe {
            raw::RedisModule_ModuleTypeReplaceValue.map_or(raw::REDISMODULE_ERR as c_int, |f| {
                f(self.key, *CACHE_TYPE.raw_type.borrow(), value, &mut old)
            })
        };
        if !old.is_null() {
            // SAFETY: `old` is the value the server just released: an entry of this module's type
            // (from `into_raw`), referenced by nothing else.
            drop(unsafe { Entry::box_from_raw(old.cast()) });
        }
        stored(status, value)
    }

    /// Deletes the key (the server frees its value: `&mut self`, as for `set_entry`).
    pub fn delete(&mut self) {
        // SAFETY: the handle is open for writing; the server frees the value, and `&mut self` keeps
        // every reference into it from living on.
        unsafe {
            if let Some(f) = raw::RedisModule_DeleteKey {
                f(self.key);
            }
        }
    }

    /// The absolute deadline in Unix ms, if the key has one (as the server stores it, so
    /// KEEPTTL keeps it to the millisecond).
    pub fn deadline(&self) -> Option<i64> {
        // SAFETY: the handle is open (or null, which these calls accept) for as long as `self`
        // lives.
        let at = unsafe {
            match raw::RedisModule_GetAbsExpire {
                Some(f) => f(self.key),
                None => raw::RedisModule_GetExpire.map_or(-1, |f| {
                    let ttl = f(self.key);
                    if ttl < 0 {
                        -1
                    } else {
                        now_ms() + ttl
                    }
                }),
            }
        };
        (at >= 0).then_some(at)
    }

    /// Remaining time to live in ms, -1 when none.
    pub fn ttl_ms(&self) -> i64 {
        // SAFETY: the handle is open (or null, which the call accepts) for as long as `self` lives.
        let ttl = unsafe { raw::RedisModule_GetExpire.map_or(-1, |f| f(self.key)) };
        if ttl < 0 {
            -1
        } else {
            ttl
        }
    }

    /// Drops the key's deadline (as PERSIST does).
    pub fn clear_deadline(&self) {
        // SAFETY: the handle is open for as long as `self` lives.
        unsafe {
            if let Some(f) = raw::RedisModule_SetExpire {
                f(self.key, raw::REDISMODULE_NO_EXPIRE.into());
            }
        }
    }

    pub fn set_deadline(&self, at_ms: i64) {
        // SAFETY: the handle is open for as long as `self` lives.
        unsafe {
            match raw::RedisModule_SetAbsExpire {
                Some(f) => f(self.key, at_ms),
                None => {
                    raw::RedisModule_SetExpire.map_or(0, |f| f(self.key, (at_ms - now_ms()).max(1)))
                }
            };
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if !self.key.is_null() {
            // SAFETY: the handle came from `RedisModule_OpenKey` and is closed once, here.
            unsafe {
                if let Some(f) = raw::RedisModule_CloseKey {
                    f(self.key);
                }
            }
        }
        let _ = self.ctx;
    }
}

/// The outcome of handing `value` (from [`Entry::into_raw`]) to the server: on refusal the
/// entry is still ours, and is freed.
fn stored(status: c_int, value: *mut c_void) -> Result<()> {
    if status == raw::REDISMODULE_OK as c_int {
        Ok(())
    } else {
        // SAFETY: the server refused `value`, so the entry from `into_raw` is still ours alone.
        drop(unsafe { Entry::box_from_raw(value.cast()) });
        Err(CacheError::Internal("could not store the entry".into()))
    }
}

/// Classifies what an open key handle holds.
///
/// # Safety
/// `key` is null or a key handle that stays open for `'a`.
unsafe fn held_by<'a>(key: *mut raw::RedisModuleKey) -> Held<'a> {
    if key.is_null() {
        return Held::Nothing;
    }
    // SAFETY: the caller guarantees `key` is an open handle for `'a`; a value of this module's type
    // is an entry from `into_raw` (the type check above), and the server leaves it in place while
    // the handle is open.
    unsafe {
        let kind = raw::RedisModule_KeyType.map_or(0, |f| f(key)) as isize;
        if kind == raw::REDISMODULE_KEYTYPE_EMPTY {
            return Held::Nothing;
        }
        if kind != raw::REDISMODULE_KEYTYPE_MODULE {
            return Held::Other;
        }
        let ty = raw::RedisModule_ModuleTypeGetType.map_or(ptr::null_mut(), |f| f(key));
        if ty != *CACHE_TYPE.raw_type.borrow() {
            return Held::Other;
        }
        let value = raw::RedisModule_ModuleTypeGetValue.map_or(ptr::null_mut(), |f| f(key));
        if value.is_null() {
            return Held::Nothing;
        }
        Held::Entry(Entry::from_raw(value.cast()))
    }
}

/// The open mode of [`Key::probe`], found once: NOSTATS and NONOTIFY where the server has them
/// (it lists the modes it knows through `RedisModule_GetOpenKeyModesAll`, Redis 7.2+), else a
/// plain no-touch read.
fn probe_mode() -> u32 {
    static MODE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| {
        let base = raw::REDISMODULE_READ | raw::REDISMODULE_OPEN_KEY_NOTOUCH;
        let quiet = raw::REDISMODULE_OPEN_KEY_NOSTATS | raw::REDISMODULE_OPEN_KEY_NONOTIFY;
        // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs;
        // it takes no arguments.
        let known = unsafe { raw::RedisModule_GetOpenKeyModesAll.map_or(0, |f| f()) } as u32;
        if known & quiet == quiet {
            base | quiet
        } else {
            base
        }
    })
}

/// A server string with these bytes (binary-safe).
pub fn string(ctx: &Context, bytes: &[u8]) -> RedisString {
    RedisString::create_from_slice(ctx.ctx, bytes)
}

/// Tells the server a key changed (WATCH, client-side caching). The module signals only real
/// changes: implicit signalling on closing a key opened for writing is turned off at load.
pub fn signal_modified(ctx: &Context, key: &RedisString) {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the caller's live context and `key` a live server string.
    unsafe {
        if let Some(f) = raw::RedisModule_SignalModifiedKey {
            f(ctx.ctx, key.inner);
        }
    }
    crate::watch::modified(key.as_slice());
}

/// Whether the client running the command has CLIENT TRACKING on (false without a client).
pub fn client_tracks(ctx: &Context) -> bool {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the caller's live context; `info` is a zeroed, versioned struct the server fills, alive
    // for the call.
    unsafe {
        let (Some(id_of), Some(info_of)) = (
            raw::RedisModule_GetClientId,
            raw::RedisModule_GetClientInfoById,
        ) else {
            return false;
        };
        let id = id_of(ctx.ctx);
        if id == 0 {
            return false;
        }
        let mut info: raw::RedisModuleClientInfo = std::mem::zeroed();
        info.version = 1;
        if info_of((&mut info as *mut raw::RedisModuleClientInfo).cast(), id)
            != raw::REDISMODULE_OK as c_int
        {
            return false;
        }
        info.flags & u64::from(raw::REDISMODULE_CLIENTINFO_FLAG_TRACKING) != 0
    }
}

/// Module options: no implicit "modified" signal on closing keys opened for writing (the module
/// signals real changes itself), and RDB read errors handled by the module (a corrupt RESTORE
/// payload is refused instead of stopping the server; replicas may load diskless).
pub fn set_module_options(ctx: &Context) {
    let mut options = raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED
        | raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS;
    if valkey_major(ctx) >= 9 {
        // Valkey's atomic slot migration (CLUSTER MIGRATESLOTS): entries arrive as the CACHE.SET
        // commands of the AOF format and are indexed like any write; keys trimmed after the
        // migration (or a cancelled import) leave through the unlink callback. Valkey's bit,
        // set only there (Redis gives bit 5 no meaning of its own yet).
        options |= VALKEY_HANDLE_ATOMIC_SLOT_MIGRATION;
    }
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the module's context during `OnLoad`.
    unsafe {
        if let Some(f) = raw::RedisModule_SetModuleOptions {
            f(ctx.ctx, options as c_int);
        }
    }
}

const VALKEY_HANDLE_ATOMIC_SLOT_MIGRATION: u32 = 1 << 5;

/// The major version of Valkey, or 0 on Redis (`INFO server` has `valkey_version`).
fn valkey_major(ctx: &Context) -> u32 {
    call_text(ctx, "INFO", &["server"])
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("valkey_version:"))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs a server command and gives its reply as text (None for an error or a reply that is not
/// a string).
pub fn call_text(ctx: &Context, cmd: &str, args: &[&str]) -> Option<String> {
    match ctx.call(cmd, args).ok()? {
        RedisValue::SimpleString(s) | RedisValue::BulkString(s) => Some(s),
        RedisValue::SimpleStringStatic(s) => Some(s.to_owned()),
        RedisValue::StringBuffer(b) | RedisValue::VerbatimString((_, b)) => {
            Some(String::from_utf8_lossy(&b).into_owned())
        }
        RedisValue::BulkRedisString(s) => Some(String::from_utf8_lossy(s.as_slice()).into_owned()),
        _ => None,
    }
}

/// The context flags (`REDISMODULE_CTX_FLAGS_*`).
pub fn flags(ctx: &Context) -> u32 {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the caller's live context.
    (unsafe { raw::RedisModule_GetContextFlags.map_or(0, |f| f(ctx.ctx)) }) as u32
}

/// A client blocked by a command, to be answered later (once) from the main thread.
pub struct Blocked(*mut raw::RedisModuleBlockedClient);

// SAFETY: only the main thread (commands, timers) blocks and answers clients: the handle is
// moved between the module's own structures, never used on another thread.
unsafe impl Send for Blocked {}

/// What a blocked client is answered (rendered by `ffi::blocked_reply`).
pub type Answer = std::result::Result<Reply, CacheError>;

impl Blocked {
    /// Blocks the client running `ctx`'s command, without a server timeout; None when the
    /// server refuses.
    pub fn block(ctx: &Context) -> Option<Blocked> {
        // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs;
        // `ctx` is a command's live context on the main thread; the callbacks are the module's own
        // and outlive the blocked client.
        let bc = unsafe {
            raw::RedisModule_BlockClient.map_or(ptr::null_mut(), |f| {
                f(
                    ctx.ctx,
                    Some(crate::ffi::blocked_reply),
                    None,
                    Some(crate::ffi::blocked_free),
                    0,
                )
            })
        };
        (!bc.is_null()).then_some(Blocked(bc))
    }

    /// Unblocks the client with its reply (a client that went away gets nothing; the server
    /// frees the reply).
    pub fn answer(self, answer: Answer) {
        let data = Box::into_raw(Box::new(answer)).cast::<c_void>();
        // SAFETY: the blocked client is answered once (`self` is consumed); `data` is a boxed
        // `Answer` that `blocked_reply` reads and `blocked_free` frees.
        unsafe {
            if let Some(f) = raw::RedisModule_UnblockClient {
                f(self.0, data);
            }
        }
    }
}

/// A context kept for work the event loop runs outside any command or timer (one-shot
/// callbacks), made once at load.
static DETACHED: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(ptr::null_mut());

pub fn keep_detached_context(ctx: &Context) {
    // SAFETY: the module API table is filled by `RedisModule_Init` before `OnLoad` goes on.
    if let Some(f) = unsafe { raw::RedisModule_GetDetachedThreadSafeContext } {
        // SAFETY: `ctx` is the module's context during `OnLoad`; the detached context lives
        // as long as the module, and is used only on the main thread.
        DETACHED.store(unsafe { f(ctx.ctx) }, Ordering::Relaxed);
    }
}

/// The context kept at load (main thread only: the event loop holds the server's lock).
pub fn detached() -> Option<Context> {
    let ctx = DETACHED.load(Ordering::Relaxed);
    (!ctx.is_null()).then(|| Context::new(ctx))
}

/// Has the event loop call `f` on its next iteration, once, on the main thread, after serving
/// the clients that are ready (Redis 7.0+ and Valkey). False when the server cannot.
pub fn soon(f: unsafe extern "C" fn(*mut c_void)) -> bool {
    if DETACHED.load(Ordering::Relaxed).is_null() {
        return false;
    }
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `f`
    // is a module function that stays valid for the server's lifetime; the event loop runs it on
    // the main thread.
    unsafe {
        raw::RedisModule_EventLoopAddOneShot
            .is_some_and(|add| add(Some(f), ptr::null_mut()) == raw::REDISMODULE_OK as c_int)
    }
}

/// The client may be blocked: not inside MULTI, a script or a module's call, and not a command
/// replayed from the master or the AOF.
pub fn can_block(ctx: &Context) -> bool {
    let no = raw::REDISMODULE_CTX_FLAGS_MULTI
        | raw::REDISMODULE_CTX_FLAGS_LUA
        | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING
        | raw::REDISMODULE_CTX_FLAGS_REPLICATED
        | raw::REDISMODULE_CTX_FLAGS_LOADING;
    flags(ctx) & no == 0
}

/// The server is loading (the AOF, an RDB): not a command from the master's stream.
pub fn loading(ctx: &Context) -> bool {
    flags(ctx) & raw::REDISMODULE_CTX_FLAGS_LOADING != 0
}

/// Propagates a command to replicas and the AOF (wrapped in MULTI/EXEC with the others this
/// command propagates).
pub fn replicate(ctx: &Context, cmd: &str, args: &[&[u8]]) {
    ctx.replicate(cmd, args);
}

/// Propagates `cmd` with server strings the module already holds as its arguments: the server
/// retains them instead of copying bytes into new strings (`replicate` makes one per argument).
pub fn replicate_strings(ctx: &Context, cmd: &CStr, args: &[RedisString]) {
    let mut argv: Vec<*mut raw::RedisModuleString> = args.iter().map(|s| s.inner).collect();
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the caller's live context, and `argv` holds live server strings for the length given.
    unsafe {
        if let Some(f) = raw::RedisModule_Replicate {
            f(
                ctx.ctx,
                cmd.as_ptr(),
                c"v".as_ptr(),
                argv.as_mut_ptr(),
                argv.len(),
            );
        }
    }
}

pub const NOTIFY_GENERIC: c_int = raw::REDISMODULE_NOTIFY_GENERIC;
pub const NOTIFY_MODULE: c_int = raw::REDISMODULE_NOTIFY_MODULE as c_int;

pub fn notify(ctx: &Context, class: c_int, event: &CStr, key: &RedisString) {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the caller's live context; the event name and key are alive for the call.
    unsafe {
        if let Some(f) = raw::RedisModule_NotifyKeyspaceEvent {
            f(ctx.ctx, class, event.as_ptr(), key.inner);
        }
    }
}

/// `REDISMODULE_CTX_FLAGS_RESP3`: the client speaks RESP3.
const REDISMODULE_CTX_FLAGS_RESP3: u32 = 1 << 22;

/// A double as RESP2 text: the shortest digits that read back as the same number; `inf`,
/// `-inf` and `nan` as the server writes them.
fn double_text(x: f64) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{x}")
    }
}

pub fn reply(ctx: &Context, r: &Reply) {
    let c = ctx.ctx;
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the context of the command (or blocked client) being answered, on the main thread; every
    // buffer handed over lives until its call returns (the server copies it).
    unsafe {
        match r {
            Reply::Ok => {
                if let Some(f) = raw::RedisModule_ReplyWithSimpleString {
                    f(c, c"OK".as_ptr());
                }
            }
            Reply::Nil => {
                if let Some(f) = raw::RedisModule_ReplyWithNull {
                    f(c);
                }
            }
            Reply::Int(n) => {
                if let Some(f) = raw::RedisModule_ReplyWithLongLong {
                    f(c, *n);
                }
            }
            Reply::Bulk(b) => reply_bulk(ctx, b),
            Reply::Double(x) if flags(ctx) & REDISMODULE_CTX_FLAGS_RESP3 == 0 => {
                // Under RESP2 a double is a bulk string, which Redis 7.0 writes with 17 digits
                // (0.025999999999999999): the shortest form that reads back as the same number
                // instead, as the JSON form and newer servers write it.
                reply_bulk(ctx, double_text(*x).as_bytes());
            }
            Reply::Double(x) => {
                if let Some(f) = raw::RedisModule_ReplyWithDouble {
                    f(c, *x);
                }
            }
            Reply::Array(items) => {
                reply_array_len(ctx, items.len());
                for i in items {
                    reply(ctx, i);
                }
            }
            Reply::Map(pairs) => {
                match raw::RedisModule_ReplyWithMap {
                    Some(f) => f(c, pairs.len() as _),
                    None => {
                        raw::RedisModule_ReplyWithArray.map_or(0, |f| f(c, (pairs.len() * 2) as _))
                    }
                };
                for (k, v) in pairs {
                    reply_bulk(ctx, k.as_bytes());
                    reply(ctx, v);
                }
            }
            Reply::Sent => {}
        }
    }
}

/// The header of an array reply of `n` items, which the caller then sends one by one.
pub fn reply_array_len(ctx: &Context, n: usize) {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the context of the command being answered.
    unsafe {
        if let Some(f) = raw::RedisModule_ReplyWithArray {
            f(ctx.ctx, n as _);
        }
    }
}

pub fn reply_bulk(ctx: &Context, b: &[u8]) {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the context of the command being answered; the bytes live for the call.
    unsafe {
        if let Some(f) = raw::RedisModule_ReplyWithStringBuffer {
            f(ctx.ctx, b.as_ptr().cast(), b.len());
        }
    }
}

pub fn reply_error(ctx: &Context, e: &CacheError) {
    // Error replies are one line.
    let text: String = e.to_string().replace(['\r', '\n'], " ");
    let Ok(text) = CString::new(text.replace('\0', " ")) else {
        return;
    };
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the context of the command being answered; `text` is a C string alive for the call.
    unsafe {
        if let Some(f) = raw::RedisModule_ReplyWithError {
            f(ctx.ctx, text.as_ptr());
        }
    }
}

/// A cache entry as a scan finds it: `(key, tags, deps)`, value bytes, the id it carries.
pub type Scanned = (Facts, u64, KeyId);

/// Every cache entry of the selected database.
pub fn scan_entries(ctx: &Context) -> Vec<Scanned> {
    let mut out: Vec<Scanned> = Vec::new();
    scan_with(ctx, &mut |name, e| {
        let names = |l: crate::core::entry::NameIter| l.map(<[u8]>::to_vec).collect();
        let facts = (name.to_vec(), names(e.tags()), names(e.deps()));
        out.push((facts, e.value().len() as u64, e.id()));
    });
    out
}

/// Calls `f` with every cache entry of the selected database (a key may come more than once,
/// as with SCAN). `f` may change the entry in place, not the keyspace.
pub fn scan_with(ctx: &Context, f: &mut dyn FnMut(&[u8], &mut Entry)) {
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the caller's live context on the main thread; the cursor is created, used and destroyed
    // here, and `f` outlives the scan that hands it to `scan_one`.
    unsafe {
        let (Some(create), Some(scan), Some(destroy)) = (
            raw::RedisModule_ScanCursorCreate,
            raw::RedisModule_Scan,
            raw::RedisModule_ScanCursorDestroy,
        ) else {
            return;
        };
        let cursor = create();
        let mut f = f;
        while scan(
            ctx.ctx,
            cursor,
            Some(scan_one),
            (&mut f as *mut &mut dyn FnMut(&[u8], &mut Entry)).cast(),
        ) != 0
        {}
        destroy(cursor);
    }
}

extern "C" fn scan_one(
    ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    key: *mut raw::RedisModuleKey,
    f: *mut c_void,
) {
    // SAFETY: `f` is the `&mut dyn FnMut` `scan_with` passed as private data, alive and unaliased
    // for the whole scan.
    let f = unsafe { &mut *f.cast::<&mut dyn FnMut(&[u8], &mut Entry)>() };
    let name_bytes = RedisString::string_as_slice(name);
    if !key.is_null() {
        // SAFETY: the server keeps the handle open for the duration of this callback.
        if let Held::Entry(e) = unsafe { held_by(key) } {
            f(name_bytes, e);
        }
        return;
    }
    let ctx = Context::new(ctx);
    let k = Key::probe(&ctx, &RedisString::create_from_slice(ctx.ctx, name_bytes));
    if let Held::Entry(e) = k.held() {
        f(name_bytes, e);
    }
}

/// `sel` with its KEY list, or a pattern without wildcards (which names one key), cut down to
/// the keys that hold a cache entry in the selected database: the index has no way from a name
/// to its entry, the keyspace has (see `DbIndex::select`). Opens each key, so never call it
/// while holding the state.
pub fn entries_only<'s>(ctx: &Context, sel: &'s Selector) -> Cow<'s, Selector> {
    let glob;
    let mut keys: Vec<&[u8]> = match sel {
        Selector::Keys(keys) => keys.iter().map(Vec::as_slice).collect(),
        Selector::Pattern(p) => {
            glob = Glob::new(p);
            if !glob.is_literal() {
                return Cow::Borrowed(sel);
            }
            vec![glob.literal_prefix()]
        }
        _ => return Cow::Borrowed(sel),
    };
    // A name whose namespace has no entry is none: not opened (on Redis 7.0 every open counts
    // as a keyspace hit or miss).
    crate::state::with_db(selected_db(ctx), |idx| keys.retain(|k| idx.may_hold(k)));
    keys.retain(|k| {
        let key = Key::probe(ctx, &string(ctx, k));
        matches!(key.held(), Held::Entry(_))
    });
    Cow::Owned(Selector::Keys(
        keys.into_iter().map(<[u8]>::to_vec).collect(),
    ))
}

/// Adds a latency-monitor sample as the server's own events are added: only when the monitor
/// is on (`latency-monitor-threshold` > 0) and the sample reaches the threshold. (Some servers'
/// module call adds every sample while the monitor is off.) The threshold is only looked up for
/// samples of 1 ms or more.
pub fn latency_sample(ctx: &Context, event: &str, ms: u64) {
    if ms == 0 {
        return;
    }
    let threshold = latency_threshold(ctx);
    if threshold == 0 || ms < threshold {
        return;
    }
    let Ok(event) = CString::new(event) else {
        return;
    };
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; the
    // event name lives for the call.
    unsafe {
        if let Some(f) = raw::RedisModule_LatencyAddSample {
            f(event.as_ptr(), i64::try_from(ms).unwrap_or(i64::MAX));
        }
    }
}

/// `latency-monitor-threshold` and `cluster-node-timeout` as last read; -1 when they must be
/// read again.
static LATENCY_THRESHOLD: AtomicI64 = AtomicI64::new(-1);
static NODE_TIMEOUT: AtomicI64 = AtomicI64::new(-1);

/// The server's configuration changed (the config-change server event): the server configs the
/// module uses are read again when next needed.
pub fn config_changed() {
    LATENCY_THRESHOLD.store(-1, Ordering::Relaxed);
    NODE_TIMEOUT.store(-1, Ordering::Relaxed);
}

/// An integer server config, read through `CONFIG GET` once and again after each configuration
/// change (a `CONFIG GET` through the server costs as much as tens of thousands of
/// instructions). 0 when it cannot be read.
fn server_config(ctx: &Context, cache: &AtomicI64, name: &str) -> u64 {
    if let Ok(t) = u64::try_from(cache.load(Ordering::Relaxed)) {
        return t;
    }
    let read = match ctx.call("CONFIG", &["GET", name]) {
        Ok(RedisValue::Array(v)) => match v.get(1) {
            Some(RedisValue::SimpleString(s)) => s.parse::<u64>().unwrap_or(0),
            Some(RedisValue::BulkString(s)) => s.parse::<u64>().unwrap_or(0),
            Some(RedisValue::BulkRedisString(s)) => s.to_string_lossy().parse::<u64>().unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    };
    cache.store(i64::try_from(read).unwrap_or(i64::MAX), Ordering::Relaxed);
    read
}

/// `latency-monitor-threshold` in ms (0: the monitor is off).
fn latency_threshold(ctx: &Context) -> u64 {
    server_config(ctx, &LATENCY_THRESHOLD, "latency-monitor-threshold")
}

/// `cluster-node-timeout` in ms (0: not read).
pub fn node_timeout_ms(ctx: &Context) -> u64 {
    server_config(ctx, &NODE_TIMEOUT, "cluster-node-timeout")
}

/// The key permissions of the user running the command. None when no client user runs it (a
/// timer, the master's stream, the AOF): then everything is allowed, as for the server itself.
pub struct Access {
    name: Vec<u8>,
    user: *mut raw::RedisModuleUser,
    ctx: *mut raw::RedisModuleCtx,
}

/// The name of the user running the command; None without a client user.
pub fn caller_name(ctx: &Context) -> Option<Vec<u8>> {
    // A request from another cluster master runs as the user who sent it there.
    if let Some(user) = crate::cluster::acting_user() {
        return user;
    }
    // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs; `ctx`
    // is the caller's live context; the name the server returns is ours, and freed here once read.
    unsafe {
        let (Some(name_of), Some(free_string)) = (
            raw::RedisModule_GetCurrentUserName,
            raw::RedisModule_FreeString,
        ) else {
            return None;
        };
        let name = name_of(ctx.ctx);
        if name.is_null() {
            return None;
        }
        let bytes = RedisString::string_as_slice(name).to_vec();
        free_string(ctx.ctx, name);
        Some(bytes)
    }
}

impl Access {
    /// The permissions of a user by name; None when there is no such user.
    pub fn of_user(ctx: &Context, name: &[u8]) -> Option<Access> {
        let name = string(ctx, name);
        // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs;
        // `name` is a live server string; the user returned (or null) is freed by `Drop`.
        let user = unsafe {
            raw::RedisModule_GetModuleUserFromUserName.map_or(ptr::null_mut(), |f| f(name.inner))
        };
        (!user.is_null()).then(|| Access {
            name: name.as_slice().to_vec(),
            user,
            ctx: ctx.ctx,
        })
    }

    pub fn of_caller(ctx: &Context) -> Option<Access> {
        Access::of_user(ctx, &caller_name(ctx)?)
    }

    /// The user's name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// Whether the user may read (`write` false) or delete (`write` true) this key.
    pub fn allows(&self, key: &RedisString, write: bool) -> bool {
        // The server takes the logical key-spec flags here: ACCESS (read), DELETE (write).
        let flags = if write {
            raw::REDISMODULE_CMD_KEY_DELETE
        } else {
            raw::REDISMODULE_CMD_KEY_ACCESS
        };
        // SAFETY: the user is live (freed only by `Drop`) and the key a live server string.
        unsafe {
            raw::RedisModule_ACLCheckKeyPermissions.is_none_or(|f| {
                f(self.user, key.inner, flags as c_int) == raw::REDISMODULE_OK as c_int
            })
        }
    }

    /// Adds an `ACL LOG` entry: the user was kept from this key.
    pub fn log_denied(&self, key: &RedisString) {
        // SAFETY: the module API table is filled by `RedisModule_Init` before anything here runs;
        // `self.ctx` is the context of the command checking access, and the user is live.
        unsafe {
            if let Some(f) = raw::RedisModule_ACLAddLogEntry {
                f(
                    self.ctx,
                    self.user,
                    key.inner,
                    raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY,
                );
            }
        }
    }
}

/// Who reads a listing of what other users did (events, stats patterns, pending requests):
/// a user who may read every key sees everything; a user restricted by ACL key patterns sees in
/// full only what it made itself, and other users' items without their names (the contract's
/// "Visibility" bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// No client user (a timer, the master, the AOF), or a user whose key patterns cover every
    /// key for reading.
    All,
    /// A user who may not read every key.
    Only(Vec<u8>),
}

impl Viewer {
    pub fn of_caller(ctx: &Context) -> Viewer {
        match caller_name(ctx) {
            None => Viewer::All,
            Some(name) if reads_every_key(ctx, &name) => Viewer::All,
            Some(name) => Viewer::Only(name),
        }
    }

    /// Whether an item made by `made_by` (None: no client user) may be shown with its names.
    pub fn sees(&self, made_by: Option<&[u8]>) -> bool {
        match self {
            Viewer::All => true,
            Viewer::Only(me) => made_by == Some(me.as_slice()),
        }
    }

    /// The user whose own items alone are shown in full; None for [`Viewer::All`].
    pub fn restricted_to(&self) -> Option<&[u8]> {
        match self {
            Viewer::All => None,
            Viewer::Only(me) => Some(me),
        }
    }
}

/// Whether the user's root key patterns let it read every key: one of them is `~*`, `%R~*`
/// or `%RW~*` (`allkeys` reads back as `~*`). Read from `ACL GETUSER`, the one place the module
/// API shows a user's patterns. Selectors are not looked at, so a user reaching every key only
/// through a selector counts as restricted: the safe side (it sees less, never more). A user
/// the server does not know (or a reply the module cannot read) is restricted too.
pub fn reads_every_key(ctx: &Context, name: &[u8]) -> bool {
    every_key(ctx, name, 'R')
}

/// Whether the user `name`'s root key patterns let it write (so delete) every key (`~*`,
/// `%W~*`, `%RW~*`, `allkeys`); selectors are not looked at (false then errs toward less).
pub fn writes_every_key(ctx: &Context, name: &[u8]) -> bool {
    every_key(ctx, name, 'W')
}

fn every_key(ctx: &Context, name: &[u8], access: char) -> bool {
    let args: [&[u8]; 2] = [b"GETUSER", name];
    let Ok(RedisValue::Array(items)) = ctx.call("ACL", &args[..]) else {
        return false;
    };
    let text = |v: &RedisValue| -> Option<String> {
        match v {
            RedisValue::SimpleString(s) | RedisValue::BulkString(s) => Some(s.clone()),
            RedisValue::BulkRedisString(s) => Some(s.to_string_lossy()),
            RedisValue::StringBuffer(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    };
    items.chunks(2).any(|pair| match pair {
        [k, v] if text(k).as_deref() == Some("keys") => text(v).is_some_and(|keys| {
            keys.split(' ').any(|p| {
                p.split_once('~').is_some_and(|(flags, pattern)| {
                    pattern == "*" && (flags.is_empty() || flags.contains(access))
                })
            })
        }),
        _ => false,
    })
}

impl Drop for Access {
    fn drop(&mut self) {
        // SAFETY: the user came from `RedisModule_GetModuleUserFromUserName` and is freed once,
        // here.
        unsafe {
            if let Some(f) = raw::RedisModule_FreeModuleUser {
                f(self.user);
            }
        }
    }
}
