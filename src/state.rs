//! Module-wide state: the per-database indexes. Touched on the main thread only (commands,
//! keyspace callbacks, server events), never from the type's `free` callback.
//!
//! Rule: never call into the server while holding the lock, since the server may call back
//! (a key deletion runs the type's `unlink` callback, which takes the lock).

use std::sync::{Mutex, MutexGuard};

use crate::core::index::DbIndex;

/// Why entries left the keyspace without an invalidation.
#[derive(Default, Debug, Clone, Copy)]
pub struct Removals {
    pub expired: u64,
    pub evicted: u64,
    pub deleted: u64,
}

/// Module-wide counters.
#[derive(Default, Debug, Clone, Copy)]
pub struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
    pub keys_invalidated: u64,
    pub removals: Removals,
}

#[derive(Default)]
pub struct State {
    dbs: Vec<DbIndex>,
    pub counters: Counters,
    /// The entry the server unlinked last (database, key hash), until the notification that
    /// says why arrives.
    pub last_unlinked: Option<(usize, u64)>,
    /// A CACHE.SET replacing this entry (database, key hash) updates the index itself: the
    /// unlink callback of the old value leaves the index alone.
    pub replacing: Option<(usize, u64)>,
}

impl State {
    pub fn db(&mut self, db: usize) -> &mut DbIndex {
        if self.dbs.len() <= db {
            self.dbs.resize_with(db + 1, DbIndex::new);
        }
        &mut self.dbs[db]
    }

    pub fn clear_all(&mut self) {
        self.dbs.clear();
    }

    /// Totals over every database: (entries, tags).
    pub fn totals(&self) -> (usize, usize) {
        self.dbs
            .iter()
            .fold((0, 0), |(e, t), d| (e + d.len(), t + d.tag_count()))
    }

    pub fn swap(&mut self, a: usize, b: usize) {
        let n = a.max(b);
        self.db(n);
        self.dbs.swap(a, b);
    }
}

static STATE: Mutex<State> = Mutex::new(State {
    dbs: Vec::new(),
    counters: Counters {
        hits: 0,
        misses: 0,
        invalidations: 0,
        keys_invalidated: 0,
        removals: Removals {
            expired: 0,
            evicted: 0,
            deleted: 0,
        },
    },
    last_unlinked: None,
    replacing: None,
});

pub fn lock() -> MutexGuard<'static, State> {
    // A panic caught at the command boundary may have poisoned the lock; the index is still
    // structurally sound (every mutation completes or panics before touching it).
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn with_db<R>(db: usize, f: impl FnOnce(&mut DbIndex) -> R) -> R {
    f(lock().db(db))
}
