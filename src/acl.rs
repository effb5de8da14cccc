//! ACL categories, on servers that let modules set them (Redis 7.2+, Valkey 8+): the module's
//! own category `cache` (`ACL SETUSER u +@cache`, `ACL CAT cache`) and the standard ones its
//! flags imply (`@write`, `@read`, `@admin`, ...). Redis 7.0 has neither call: there the
//! commands are in no category. Raw calls, made only when the server provides them.

use std::ffi::CStr;
use std::os::raw::c_int;

use redis_module::{raw, Context};

/// The category's name.
pub const CATEGORY: &CStr = c"cache";

/// Every command of the module (subcommands as `parent|sub`) with its categories besides
/// `cache`. The server derives no category from a module command's flags (`ACL CAT admin` would
/// not list CACHE.RESET otherwise), so they are given here, following the flags: `write` and
/// `read`, `fast` or `slow`, `admin dangerous` for the admin commands.
pub const COMMANDS: [(&CStr, &CStr); 24] = [
    (c"cache.set", c"cache write slow"),
    (c"cache.get", c"cache read fast"),
    (c"cache.fetch", c"cache read fast"),
    (c"cache.mget", c"cache read fast"),
    (c"cache.tag", c"cache write slow"),
    (c"cache.depend", c"cache write slow"),
    (c"cache.inspect", c"cache read fast"),
    (c"cache.invalidate", c"cache write slow"),
    (c"cache.keys", c"cache read slow"),
    (c"cache.pending", c"cache write slow"),
    (c"cache.rule", c"cache slow"),
    (c"cache.rule|set", c"cache write slow"),
    (c"cache.rule|del", c"cache write slow"),
    (c"cache.rule|list", c"cache read slow"),
    (c"cache.rule|help", c"cache slow"),
    (c"cache.relate", c"cache write slow"),
    (c"cache.write", c"cache write slow"),
    (c"cache.tags", c"cache read slow"),
    (c"cache.stats", c"cache read slow"),
    (c"cache.recommend", c"cache read slow"),
    (c"cache.events", c"cache read slow"),
    (c"cache.hotkeys", c"cache read slow"),
    (c"cache.reset", c"cache admin dangerous slow"),
    (c"cache.debug", c"cache admin dangerous slow"),
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
        for (name, categories) in COMMANDS {
            let cmd = get(ctx.ctx, name.as_ptr());
            if cmd.is_null() {
                return Err(format!("no command {}", name.to_string_lossy()));
            }
            if set(cmd, categories.as_ptr()) != ok {
                return Err(format!(
                    "could not put {} in the ACL categories '{}'",
                    name.to_string_lossy(),
                    categories.to_string_lossy()
                ));
            }
        }
    }
    Ok(())
}
