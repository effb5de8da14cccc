//! ACL categories, on servers that let modules set them (Redis 7.2+, Valkey 8+): the module's
//! own category `cache` (`ACL SETUSER u +@cache`, `ACL CAT cache`) and the standard ones its
//! flags imply (`@write`, `@read`, `@admin`, ...). Redis 7.0 has neither call: there the
//! commands are in no category. Raw calls, made only when the server provides them.

use std::ffi::CStr;
use std::os::raw::c_int;

use redis_module::{raw, Context};

use crate::registry::Command;

/// The category's name.
pub const CATEGORY: &CStr = c"cache";

/// Adds the category and puts every command and subcommand in the categories its row gives (at
/// load, after the commands exist). Returns what went wrong, if anything; a server without the
/// calls is no error.
pub fn register(ctx: &Context, table: &[Command]) -> Result<(), String> {
    let ok = raw::REDISMODULE_OK as c_int;
    // SAFETY: the module's context during `OnLoad` (main thread); the names and categories are
    // static C strings, and a command handle is used only once the server returned it non-null.
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
        for &Command {
            name,
            acl: categories,
            ..
        } in table
        {
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
