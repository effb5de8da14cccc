//! The limits (`core::limits`) as the command handlers apply them: to commands from clients
//! only. What the master or the AOF replays was accepted where it was decided (an entry accepted
//! once is never lost because a limit was lowered later, and a replica with other limits never
//! diverges).

use redis_module::Context;

use crate::config;
use crate::core::index::Selector;
use crate::core::limits::Limits;
use crate::error::Result;
use crate::server;
use crate::state;

/// The limits for the command running: none when it is replayed.
pub fn limits(ctx: &Context) -> Limits {
    limits_for(server::replayed(ctx))
}

/// [`limits`] when the caller has already asked whether the command is `replayed`.
pub fn limits_for(replayed: bool) -> Limits {
    if replayed {
        Limits::NONE
    } else {
        config::limits()
    }
}

/// An invalidation (or its dry run) of `selector` in the selected database: its pattern's
/// length, and the size of its cascade (refused past `cache.max-cascade-entries`). Gives the
/// entries the cascade's walk on the index reached, the selected ones included (0 when there
/// was no walk).
pub fn check_reach(ctx: &Context, selector: &Selector, depth: Option<u32>) -> Result<usize> {
    let l = limits(ctx);
    l.check_selector(selector)?;
    if l.cascade_entries == 0 {
        return Ok(0);
    }
    let depth = depth.unwrap_or_else(config::max_cascade_depth);
    let db = server::selected_db(ctx);
    if depth == 0 || state::with_db(db, |idx| idx.resource_count() == 0) {
        // Nothing to cascade to.
        return Ok(0);
    }
    let picked = server::entries_only(ctx, selector);
    state::with_db(db, |idx| l.check_cascade(idx, &picked, depth))
}
