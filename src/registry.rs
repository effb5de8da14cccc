//! The command table: every command and subcommand is one row here, and everything the server
//! is told about a command comes from its row: the registration (`lib.rs` iterates the table),
//! the callback the server calls (one `extern "C"` trampoline per row, generated with the
//! table), the key positions and key specs, the ACL categories, `COMMAND DOCS` (the row's
//! `core::docs` entry), whether the command's latency is recorded as an operation, and whether
//! another master may run it as a cluster-wide command (`cluster_command`).
//!
//! Adding a command is one row below and its handler (in `commands`, `fetch` or `history`),
//! plus its docs in `core::docs`.

use std::ffi::CStr;
use std::os::raw::c_int;

use redis_module::raw;

use crate::commands::Handler;
use crate::core::docs::{self, Doc};
use crate::ffi::{self, CommandFn};

/// How a row is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A command with its own callback.
    Command,
    /// A container of subcommands: no callback of its own (its subcommands follow it).
    Container,
    /// A subcommand, named `container|name`, registered under its container.
    Subcommand,
}

/// Whether another master may run the command here as part of a cluster-wide command (its
/// `LOCAL`-less form), and whether that changes anything (a write pause holds those back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// Never sent to other masters.
    Local,
    /// Cluster-wide, and it only reads.
    Reads,
    /// Cluster-wide, and it writes.
    Writes,
}

/// One command or subcommand.
pub struct Command {
    /// As registered: `cache.set`, or `cache.rule|set` for a subcommand.
    pub name: &'static CStr,
    pub form: Form,
    /// The server's callback (none for a container).
    pub callback: Option<CommandFn>,
    /// What the callback runs (a container's is what runs its cluster-wide form; every
    /// subcommand's reads which one from the arguments).
    pub handler: Handler,
    /// The server's command flags.
    pub flags: &'static CStr,
    /// First key, last key (-1: to the end), key step; `(0, 0, 0)` for no keys.
    pub keys: (c_int, c_int, c_int),
    /// The ACL categories. The server derives none from a module command's flags (`ACL CAT
    /// admin` would not list CACHE.RESET otherwise), so they follow the flags: `write` or
    /// `read`, `fast` or `slow`, `admin dangerous` for the admin commands, and the module's
    /// own `cache` for all.
    pub acl: &'static CStr,
    pub cluster: Cluster,
    pub docs: &'static Doc,
}

impl Command {
    /// Whether the command only reads (its flags say `readonly`).
    pub fn readonly(&self) -> bool {
        self.flags
            .to_bytes()
            .split(|&b| b == b' ')
            .any(|f| f == b"readonly")
    }

    /// A subcommand's container and its own name (`None` for a command).
    pub fn parent_and_sub(&self) -> Option<(&'static [u8], &'static CStr)> {
        let whole: &'static [u8] = self.name.to_bytes_with_nul();
        let bar = whole.iter().position(|&b| b == b'|')?;
        let sub = CStr::from_bytes_with_nul(&whole[bar + 1..]).ok()?;
        Some((&whole[..bar], sub))
    }
}

/// The table and its trampolines. Each row: form, trampoline name (and, in parentheses, what
/// answers a key-position request for a `getkeys-api` command), the name, handler, flags, key
/// positions, ACL categories, the operation its latency is recorded as when it succeeds
/// (`timed`: compiled into its trampoline, so nothing is looked up per call; CACHE.GET and
/// CACHE.MGET record theirs themselves, with their hits and misses), cluster-wide form and
/// docs.
macro_rules! registry {
    ($(
        $form:ident $tramp:ident $(($keys_by:path))? = $name:literal => $handler:path,
        $flags:literal, $keys:expr, $acl:literal,
        timed: $op:expr, cluster: $cluster:ident, docs: $doc:ident;
    )*) => {
        $( registry!(@trampoline $form $tramp [$($keys_by)?] $handler, $op); )*

        /// Every command and subcommand, in the order they are registered (a container before
        /// its subcommands).
        pub static COMMANDS: &[Command] = &[$(
            Command {
                name: $name,
                form: Form::$form,
                callback: registry!(@callback $form $tramp),
                handler: $handler,
                flags: $flags,
                keys: $keys,
                acl: $acl,
                cluster: Cluster::$cluster,
                docs: &docs::$doc,
            },
        )*];
    };
    (@trampoline Container $($rest:tt)*) => {};
    (@trampoline $form:ident $tramp:ident [$($keys_by:path)?] $handler:path, $op:expr) => {
        /// The server's callback: runs the handler through `commands::run` on borrowed
        /// arguments.
        ///
        /// # Safety
        /// Called by the server with a command's arguments.
        unsafe extern "C" fn $tramp(
            ctx: *mut raw::RedisModuleCtx,
            argv: *mut *mut raw::RedisModuleString,
            argc: c_int,
        ) -> c_int {
            $(
            // SAFETY: the server's context and arguments, passed on unchanged.
            if unsafe { ffi::keys_position_request(ctx) } {
                // SAFETY: as above.
                return unsafe { $keys_by(ctx, argv, argc) };
            }
            )?
            // SAFETY: the server's context and arguments, passed on unchanged.
            unsafe {
                ffi::call_command(ctx, argv, argc, |ctx, args| {
                    crate::commands::run(ctx, args, $handler, $op)
                })
            }
        }
    };
    (@callback Container $tramp:ident) => { None };
    (@callback $form:ident $tramp:ident) => { Some($tramp as CommandFn) };
}

use crate::commands as c;
use crate::core::metrics::Op::{Invalidate, Set};

const NONE: (c_int, c_int, c_int) = (0, 0, 0);
const ONE: (c_int, c_int, c_int) = (1, 1, 1);

#[rustfmt::skip]
registry! {
    Command set = c"cache.set" => c::cache_set,
        c"write deny-oom", ONE, c"cache write slow", timed: Some(Set), cluster: Local, docs: CACHE_SET;
    Command mset(ffi::mset_key_positions) = c"cache.mset" => c::cache_mset,
        c"write deny-oom getkeys-api", NONE, c"cache write slow", timed: Some(Set), cluster: Local, docs: CACHE_MSET;
    Command get = c"cache.get" => c::cache_get,
        c"readonly fast", ONE, c"cache read fast", timed: None, cluster: Local, docs: CACHE_GET;
    Command fetch = c"cache.fetch" => crate::fetch::cache_fetch,
        c"readonly fast", ONE, c"cache read fast", timed: None, cluster: Local, docs: CACHE_FETCH;
    Command token = c"cache.token" => crate::history::cache_token,
        c"readonly fast", ONE, c"cache read fast", timed: None, cluster: Local, docs: CACHE_TOKEN;
    Command mget = c"cache.mget" => c::cache_mget,
        c"readonly fast", (1, -1, 1), c"cache read fast", timed: None, cluster: Local, docs: CACHE_MGET;
    Command tag = c"cache.tag" => c::cache_tag,
        c"write deny-oom", ONE, c"cache write slow", timed: None, cluster: Local, docs: CACHE_TAG;
    Command depend = c"cache.depend" => c::cache_depend,
        c"write deny-oom", ONE, c"cache write slow", timed: None, cluster: Local, docs: CACHE_DEPEND;
    Command inspect = c"cache.inspect" => c::cache_inspect,
        c"readonly fast", ONE, c"cache read fast", timed: None, cluster: Local, docs: CACHE_INSPECT;
    Command invalidate = c"cache.invalidate" => c::cache_invalidate,
        c"write", NONE, c"cache write slow", timed: Some(Invalidate), cluster: Writes, docs: CACHE_INVALIDATE;
    Command keys = c"cache.keys" => c::cache_keys,
        c"readonly", NONE, c"cache read slow", timed: None, cluster: Reads, docs: CACHE_KEYS;
    Command pending = c"cache.pending" => c::cache_pending,
        c"write", NONE, c"cache write slow", timed: None, cluster: Local, docs: CACHE_PENDING;
    // Each CACHE.RULE subcommand has its own flags (LIST is a read a replica answers; SET is a
    // write it refuses); the one handler reads which one from the arguments.
    Container rule = c"cache.rule" => c::cache_rule,
        c"", NONE, c"cache slow", timed: None, cluster: Writes, docs: CACHE_RULE;
    Subcommand rule_set = c"cache.rule|set" => c::cache_rule,
        c"write deny-oom", NONE, c"cache write slow", timed: None, cluster: Local, docs: CACHE_RULE_SET;
    Subcommand rule_del = c"cache.rule|del" => c::cache_rule,
        c"write", NONE, c"cache write slow", timed: None, cluster: Local, docs: CACHE_RULE_DEL;
    Subcommand rule_list = c"cache.rule|list" => c::cache_rule,
        c"readonly", NONE, c"cache read slow", timed: None, cluster: Local, docs: CACHE_RULE_LIST;
    Subcommand rule_help = c"cache.rule|help" => c::cache_rule,
        c"readonly", NONE, c"cache slow", timed: None, cluster: Local, docs: CACHE_RULE_HELP;
    Command relate = c"cache.relate" => c::cache_relate,
        c"write", NONE, c"cache write slow", timed: None, cluster: Writes, docs: CACHE_RELATE;
    Command write = c"cache.write" => c::cache_write,
        c"write", NONE, c"cache write slow", timed: Some(Invalidate), cluster: Writes, docs: CACHE_WRITE;
    Command tags = c"cache.tags" => c::cache_tags,
        c"readonly", NONE, c"cache read slow", timed: None, cluster: Reads, docs: CACHE_TAGS;
    Command stats = c"cache.stats" => c::cache_stats,
        c"readonly", NONE, c"cache read slow", timed: None, cluster: Reads, docs: CACHE_STATS;
    Command recommend = c"cache.recommend" => c::cache_recommend,
        c"readonly", NONE, c"cache read slow", timed: None, cluster: Local, docs: CACHE_RECOMMEND;
    Command events = c"cache.events" => c::cache_events,
        c"readonly", NONE, c"cache read slow", timed: None, cluster: Local, docs: CACHE_EVENTS;
    Command hotkeys = c"cache.hotkeys" => c::cache_hotkeys,
        c"readonly", NONE, c"cache read slow", timed: None, cluster: Local, docs: CACHE_HOTKEYS;
    Command reset = c"cache.reset" => c::cache_reset,
        c"admin", NONE, c"cache admin dangerous slow", timed: None, cluster: Local, docs: CACHE_RESET;
    Command debug = c"cache.debug" => c::cache_debug,
        c"admin", NONE, c"cache admin dangerous slow", timed: None, cluster: Local, docs: CACHE_DEBUG;
}

/// The handler of a cluster-wide command, and whether it writes.
pub fn cluster_command(name: &[u8]) -> Option<(Handler, bool)> {
    COMMANDS
        .iter()
        .filter(|c| c.cluster != Cluster::Local)
        .find(|c| name.eq_ignore_ascii_case(c.name.to_bytes()))
        .map(|c| (c.handler, c.cluster == Cluster::Writes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_complete_docs_of_its_own() {
        for c in COMMANDS {
            docs::complete(&c.name.to_string_lossy(), c.docs);
        }
        let mut names: Vec<&CStr> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len(), "a command registered twice");
        let mut docs: Vec<*const Doc> = COMMANDS
            .iter()
            .map(|c| std::ptr::from_ref(c.docs))
            .collect();
        docs.sort_unstable();
        docs.dedup();
        assert_eq!(docs.len(), COMMANDS.len(), "a command documented twice");
    }

    #[test]
    fn the_table_is_consistent() {
        let mut container: Option<&[u8]> = None;
        for c in COMMANDS {
            match c.form {
                Form::Container => {
                    assert!(c.callback.is_none());
                    container = Some(c.name.to_bytes());
                }
                Form::Command => {
                    assert!(c.callback.is_some() && c.parent_and_sub().is_none());
                }
                Form::Subcommand => {
                    // Under the container registered just before it, never cluster-wide itself.
                    let (parent, _) = c.parent_and_sub().expect("container|name");
                    assert_eq!(Some(parent), container, "{:?}", c.name);
                    assert!(c.callback.is_some() && c.cluster == Cluster::Local);
                }
            }
        }
        let cluster: Vec<(&str, bool)> = COMMANDS
            .iter()
            .filter_map(|c| {
                let (_, writes) = cluster_command(c.name.to_bytes())?;
                Some((c.name.to_str().unwrap(), writes))
            })
            .collect();
        assert_eq!(
            cluster,
            [
                ("cache.invalidate", true),
                ("cache.keys", false),
                ("cache.rule", true),
                ("cache.relate", true),
                ("cache.write", true),
                ("cache.tags", false),
                ("cache.stats", false),
            ]
        );
        assert!(cluster_command(b"CACHE.Keys").is_some());
        assert!(cluster_command(b"cache.get").is_none());
    }
}
