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
    use redis_module::{redis_module, Context, RedisString, Status};

    use crate::ffi::{self, CACHE_TYPE};
    use crate::registry::COMMANDS;

    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        if let Err(why) = ffi::register_configs(ctx, &crate::config::ALL, args) {
            ctx.log_warning(&why);
            return Status::Err;
        }
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
    }
}
