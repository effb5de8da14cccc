//! tagcache: a Redis module for cache entries with tags, dependencies and metadata, and precise
//! invalidation. This file only registers, from the tables: `registry` (the commands) and
//! `config`; see `commands` (handlers), `core` (pure logic), `ffi` (callbacks), `server`
//! (module API wrappers).

// The unit tests build without the registration (`module`, below), which is what reaches the
// shell: only the non-test build can tell dead code.
#![cfg_attr(test, allow(dead_code))]

mod acl;
mod cluster;
mod commands;
mod config;
mod core;
mod error;
mod fetch;
mod ffi;
mod guard;
mod history;
mod reclaim;
mod registry;
mod server;
mod state;
mod watch;

#[cfg(not(test))]
mod module {
    use redis_module::configuration::ConfigurationFlags;
    use redis_module::{redis_module, Context, RedisString, Status};

    use crate::config::{
        BATCH_DELAY_MS, CLUSTER_TIMEOUT_MS, CRITICAL_PER_HOUR, DEFAULT_TTL_SECONDS,
        EVENT_RETENTION_SECONDS, LAZY_STEP_US, MAX_CASCADE_DEPTH, MAX_EVENTS, SLOW_OP_US,
        STEPPED_STEP_US, STEPPED_THRESHOLD, WARNING_PER_HOUR,
    };
    use crate::config::{GUARD_MAX_BYTES, GUARD_WINDOW_MS};
    use crate::config::{HOT_THRESHOLD, LEASE_MS, REFRESH_AHEAD_PERCENT, SOFT_GRACE_SECONDS};
    use crate::config::{
        MAX_CASCADE_ENTRIES, MAX_DEPENDS_PER_ENTRY, MAX_META_BYTES, MAX_NAME_BYTES,
        MAX_PATTERN_BYTES, MAX_REPLY_KEYS, MAX_TAGS_PER_ENTRY,
    };
    use crate::ffi::{self, CACHE_TYPE};
    use crate::registry::COMMANDS;

    fn init(ctx: &Context, _args: &[RedisString]) -> Status {
        if !ffi::create_commands(ctx, COMMANDS) {
            return Status::Err;
        }
        // Replaces the crate's default INFO handler (the last registration wins).
        redis_module::raw::register_info_function(ctx.ctx, Some(ffi::info));
        crate::server::set_module_options(ctx);
        crate::server::keep_detached_context(ctx);
        if !ffi::create_subcommands(ctx, COMMANDS) {
            ctx.log_warning("tagcache: could not register CACHE.RULE");
            return Status::Err;
        }
        if let Err(why) = ffi::set_command_info(ctx, COMMANDS) {
            ctx.log_warning(&format!("tagcache: could not set the command info: {why}"));
            return Status::Err;
        }
        crate::cluster::register(ctx);
        if let Err(why) = crate::acl::register(ctx, COMMANDS) {
            // The commands work without their category: load anyway, and say so.
            ctx.log_warning(&format!("tagcache: {why}"));
        }
        if !ffi::register_command_filter(ctx) {
            ctx.log_warning("tagcache: could not register the command filter (WATCH)");
            return Status::Err;
        }
        if ffi::subscribe(ctx) {
            Status::Ok
        } else {
            ctx.log_warning("tagcache: could not subscribe to server events");
            Status::Err
        }
    }

    redis_module! {
        name: "cache",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [CACHE_TYPE],
        init: init,
        configurations: [
            i64: [
                [MAX_CASCADE_DEPTH.name, &MAX_CASCADE_DEPTH.value, MAX_CASCADE_DEPTH.default, MAX_CASCADE_DEPTH.min, MAX_CASCADE_DEPTH.max, ConfigurationFlags::DEFAULT, None],
                [DEFAULT_TTL_SECONDS.name, &DEFAULT_TTL_SECONDS.value, DEFAULT_TTL_SECONDS.default, DEFAULT_TTL_SECONDS.min, DEFAULT_TTL_SECONDS.max, ConfigurationFlags::DEFAULT, None],
                [WARNING_PER_HOUR.name, &WARNING_PER_HOUR.value, WARNING_PER_HOUR.default, WARNING_PER_HOUR.min, WARNING_PER_HOUR.max, ConfigurationFlags::DEFAULT, None],
                [CRITICAL_PER_HOUR.name, &CRITICAL_PER_HOUR.value, CRITICAL_PER_HOUR.default, CRITICAL_PER_HOUR.min, CRITICAL_PER_HOUR.max, ConfigurationFlags::DEFAULT, None],
                [EVENT_RETENTION_SECONDS.name, &EVENT_RETENTION_SECONDS.value, EVENT_RETENTION_SECONDS.default, EVENT_RETENTION_SECONDS.min, EVENT_RETENTION_SECONDS.max, ConfigurationFlags::DEFAULT, None],
                [MAX_EVENTS.name, &MAX_EVENTS.value, MAX_EVENTS.default, MAX_EVENTS.min, MAX_EVENTS.max, ConfigurationFlags::DEFAULT, None],
                [BATCH_DELAY_MS.name, &BATCH_DELAY_MS.value, BATCH_DELAY_MS.default, BATCH_DELAY_MS.min, BATCH_DELAY_MS.max, ConfigurationFlags::DEFAULT, None],
                [SLOW_OP_US.name, &SLOW_OP_US.value, SLOW_OP_US.default, SLOW_OP_US.min, SLOW_OP_US.max, ConfigurationFlags::DEFAULT, None],
                [LAZY_STEP_US.name, &LAZY_STEP_US.value, LAZY_STEP_US.default, LAZY_STEP_US.min, LAZY_STEP_US.max, ConfigurationFlags::DEFAULT, None],
                [SOFT_GRACE_SECONDS.name, &SOFT_GRACE_SECONDS.value, SOFT_GRACE_SECONDS.default, SOFT_GRACE_SECONDS.min, SOFT_GRACE_SECONDS.max, ConfigurationFlags::DEFAULT, None],
                [LEASE_MS.name, &LEASE_MS.value, LEASE_MS.default, LEASE_MS.min, LEASE_MS.max, ConfigurationFlags::DEFAULT, None],
                [REFRESH_AHEAD_PERCENT.name, &REFRESH_AHEAD_PERCENT.value, REFRESH_AHEAD_PERCENT.default, REFRESH_AHEAD_PERCENT.min, REFRESH_AHEAD_PERCENT.max, ConfigurationFlags::DEFAULT, None],
                [HOT_THRESHOLD.name, &HOT_THRESHOLD.value, HOT_THRESHOLD.default, HOT_THRESHOLD.min, HOT_THRESHOLD.max, ConfigurationFlags::DEFAULT, None],
                [MAX_TAGS_PER_ENTRY.name, &MAX_TAGS_PER_ENTRY.value, MAX_TAGS_PER_ENTRY.default, MAX_TAGS_PER_ENTRY.min, MAX_TAGS_PER_ENTRY.max, ConfigurationFlags::DEFAULT, None],
                [MAX_DEPENDS_PER_ENTRY.name, &MAX_DEPENDS_PER_ENTRY.value, MAX_DEPENDS_PER_ENTRY.default, MAX_DEPENDS_PER_ENTRY.min, MAX_DEPENDS_PER_ENTRY.max, ConfigurationFlags::DEFAULT, None],
                [MAX_NAME_BYTES.name, &MAX_NAME_BYTES.value, MAX_NAME_BYTES.default, MAX_NAME_BYTES.min, MAX_NAME_BYTES.max, ConfigurationFlags::DEFAULT, None],
                [MAX_META_BYTES.name, &MAX_META_BYTES.value, MAX_META_BYTES.default, MAX_META_BYTES.min, MAX_META_BYTES.max, ConfigurationFlags::DEFAULT, None],
                [MAX_PATTERN_BYTES.name, &MAX_PATTERN_BYTES.value, MAX_PATTERN_BYTES.default, MAX_PATTERN_BYTES.min, MAX_PATTERN_BYTES.max, ConfigurationFlags::DEFAULT, None],
                [STEPPED_STEP_US.name, &STEPPED_STEP_US.value, STEPPED_STEP_US.default, STEPPED_STEP_US.min, STEPPED_STEP_US.max, ConfigurationFlags::DEFAULT, None],
                [STEPPED_THRESHOLD.name, &STEPPED_THRESHOLD.value, STEPPED_THRESHOLD.default, STEPPED_THRESHOLD.min, STEPPED_THRESHOLD.max, ConfigurationFlags::DEFAULT, None],
                [CLUSTER_TIMEOUT_MS.name, &CLUSTER_TIMEOUT_MS.value, CLUSTER_TIMEOUT_MS.default, CLUSTER_TIMEOUT_MS.min, CLUSTER_TIMEOUT_MS.max, ConfigurationFlags::DEFAULT, None],
                [MAX_REPLY_KEYS.name, &MAX_REPLY_KEYS.value, MAX_REPLY_KEYS.default, MAX_REPLY_KEYS.min, MAX_REPLY_KEYS.max, ConfigurationFlags::DEFAULT, None],
                [MAX_CASCADE_ENTRIES.name, &MAX_CASCADE_ENTRIES.value, MAX_CASCADE_ENTRIES.default, MAX_CASCADE_ENTRIES.min, MAX_CASCADE_ENTRIES.max, ConfigurationFlags::DEFAULT, None],
                [GUARD_WINDOW_MS.name, &GUARD_WINDOW_MS.value, GUARD_WINDOW_MS.default, GUARD_WINDOW_MS.min, GUARD_WINDOW_MS.max, ConfigurationFlags::DEFAULT, None],
                [GUARD_MAX_BYTES.name, &GUARD_MAX_BYTES.value, GUARD_MAX_BYTES.default, GUARD_MAX_BYTES.min, GUARD_MAX_BYTES.max, ConfigurationFlags::DEFAULT, None],
            ],
            string: [],
            bool: [],
            enum: [],
            module_args_as_configuration: true,
        ]
    }
}
