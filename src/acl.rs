//! The ACL category `cache` (`ACL SETUSER u +@cache`, `ACL CAT cache`), on servers that let
//! modules add categories (Redis 7.2+, Valkey 8+). Redis 7.0 has neither call: the module loads
//! without the category there. Raw calls, made only when the server provides them.

use std::ffi::CStr;
use std::os::raw::c_int;

use redis_module::{raw, Context};

/// The category's name.
pub const CATEGORY: &CStr = c"cache";

/// Every command of the module, subcommands as `parent|sub`.
pub const COMMANDS: [&CStr; 23] = [
    c"cache.set",
    c"cache.get",
    c"cache.mget",
    c"cache.tag",
    c"cache.depend",
    c"cache.inspect",
    c"cache.invalidate",
    c"cache.keys",
    c"cache.pending",
    c"cache.rule",
    c"cache.rule|set",
    c"cache.rule|del",
    c"cache.rule|list",
    c"cache.rule|help",
    c"cache.relate",
    c"cache.write",
    c"cache.tags",
    c"cache.stats",
    c"cache.recommend",
    c"cache.events",
    c"cache.hotkeys",
    c"cache.reset",
    c"cache.debug",
];

/// Adds the category and puts every command in it (at load, after the commands exist).
/// Returns what went wrong, if anything; a server without the calls is no error.
pub fn register(ctx: &Context) -> Result<(), String> {
    let ok = raw::REDISMODULE_OK as c_int;
    unsafe {
        let (Some(add), Some(set), Some(get)) = (
            raw::RedisModule_AddACLCategory,
            raw::RedisModule_SetCommandACLCategories,
            raw::RedisModule_GetCommand,
        ) else {
            return Ok(());
        };
        if add(ctx.ctx, CATEGORY.as_ptr()) != ok {
            return Err("could not add the ACL category 'cache'".into());
        }
        for name in COMMANDS {
            let cmd = get(ctx.ctx, name.as_ptr());
            if cmd.is_null() {
                return Err(format!("no command {}", name.to_string_lossy()));
            }
            if set(cmd, CATEGORY.as_ptr()) != ok {
                return Err(format!(
                    "could not put {} in the ACL category 'cache'",
                    name.to_string_lossy()
                ));
            }
        }
    }
    Ok(())
}
