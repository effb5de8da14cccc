//! tagcache: a Redis module for cache entries with tags, dependencies and metadata, and precise
//! invalidation. This file only registers; see `commands` (handlers), `core` (pure logic),
//! `ffi` (callbacks), `server` (module API wrappers).

pub mod commands;
pub mod config;
pub mod core;
pub mod error;
pub mod ffi;
pub mod server;
pub mod state;

#[cfg(not(test))]
mod module {
    use redis_module::configuration::ConfigurationFlags;
    use redis_module::{redis_module, Context, RedisString, Status};

    use crate::commands;
    use crate::config::{
        DEFAULT_TTL_SECONDS, DEFAULT_TTL_SECONDS_VALUE, MAX_CASCADE_DEPTH, MAX_CASCADE_DEPTH_VALUE,
    };
    use crate::ffi::{self, CACHE_TYPE};

    fn init(ctx: &Context, _args: &[RedisString]) -> Status {
        // Replaces the crate's default INFO handler (the last registration wins).
        redis_module::raw::register_info_function(ctx.ctx, Some(ffi::info));
        crate::server::set_module_options(ctx);
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
        commands: [
            ["cache.set", commands::set, "write deny-oom", 1, 1, 1, ""],
            ["cache.get", commands::get, "readonly fast", 1, 1, 1, ""],
            ["cache.mget", commands::mget, "readonly fast", 1, -1, 1, ""],
            ["cache.tag", commands::tag, "write deny-oom", 1, 1, 1, ""],
            ["cache.depend", commands::depend, "write deny-oom", 1, 1, 1, ""],
            ["cache.inspect", commands::inspect, "readonly fast", 1, 1, 1, ""],
            ["cache.invalidate", commands::invalidate, "write", 0, 0, 0, ""],
            ["cache.keys", commands::keys, "readonly", 0, 0, 0, ""],
            ["cache.tags", commands::tags, "readonly", 0, 0, 0, ""],
            ["cache.debug", commands::debug, "admin", 0, 0, 0, ""],
        ],
        configurations: [
            i64: [
                [MAX_CASCADE_DEPTH.name, &MAX_CASCADE_DEPTH_VALUE, MAX_CASCADE_DEPTH.default, MAX_CASCADE_DEPTH.min, MAX_CASCADE_DEPTH.max, ConfigurationFlags::DEFAULT, None],
                [DEFAULT_TTL_SECONDS.name, &DEFAULT_TTL_SECONDS_VALUE, DEFAULT_TTL_SECONDS.default, DEFAULT_TTL_SECONDS.min, DEFAULT_TTL_SECONDS.max, ConfigurationFlags::DEFAULT, None],
            ],
            string: [],
            bool: [],
            enum: [],
            module_args_as_configuration: true,
        ]
    }
}
