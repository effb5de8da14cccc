//! Module-wide state: the per-database indexes and the metrics. Touched on the main thread only
//! (commands, keyspace callbacks, server events, INFO), never from the type's `free` callback.
//!
//! Rule: never call into the server while holding the lock, since the server may call back
//! (a key deletion runs the type's `unlink` callback, which takes the lock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::core::batch::Batch;
use crate::core::entry::Entry;
use crate::core::index::DbIndex;
use crate::core::lazy::Lazy;
use crate::core::metrics::{IndexFigures, LazyFigures, Metrics, Removal};
use crate::core::rules::Rules;

/// Why the module removes an entry itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// An invalidation (or a past deadline) deletes it: the index drops it as usual.
    Delete,
}

#[derive(Default)]
pub struct State {
    dbs: Vec<DbIndex>,
    metrics: Option<Metrics>,
    /// The entry the server unlinked last (database, key hash, its hits) whose removal is not
    /// classified yet: the notification that follows says expired or evicted, RENAME/MOVE say
    /// it was no removal, anything else makes it a deletion.
    pub last_unlinked: Option<(usize, u64, u64)>,
    /// The module itself is about to remove this entry (database, key hash): its unlink is not
    /// a removal to count, and for a replacing CACHE.SET the index is left to the command.
    pub quiet: Option<(usize, u64, Quiet)>,
    /// BATCHED invalidations waiting for their delay.
    pub batch: Batch,
    /// The timer set to apply the batch, and when it fires.
    pub batch_timer: Option<(u64, i64)>,
    rules: Option<Rules>,
    /// LAZY marks per database. Change them through `lazy_mut`, which keeps
    /// `lazy_active` in step.
    lazy: Lazy,
    /// The reclaimer's timer is set.
    pub reclaim_timer: bool,
    /// Where the entry of a RENAME, MOVE or COPY under way came from (database, key), while
    /// LAZY marks exist: its arrival keeps what picked it under the old name.
    pub departed: Option<(usize, Vec<u8>)>,
}

/// The generation new entries are born at; each LAZY invalidation advances it. Read without
/// the lock on every CACHE.SET; written on the main thread only.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The newest LAZY mark's generation over every database (0: no marks). Only entries born
/// before it can be covered: reads look at the marks only then (read without the lock).
static NEWEST_MARK: AtomicU64 = AtomicU64::new(0);

pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Moves the generation forward to at least `g` (at most to what an entry holds: a loaded
/// generation beyond that would cover every entry written after).
pub fn raise_generation(g: u64) {
    GENERATION.fetch_max(g.min(crate::core::entry::STAMP_MAX), Ordering::Relaxed);
}

/// Loading starts: the generation comes from what is loaded (see `raise_generation`).
pub fn reset_generation() {
    GENERATION.store(0, Ordering::Relaxed);
}

/// The next generation (a new LAZY mark's).
pub fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed) + 1
}

pub fn lazy_active() -> bool {
    newest_mark() > 0
}

/// See `NEWEST_MARK`.
pub fn newest_mark() -> u64 {
    NEWEST_MARK.load(Ordering::Relaxed)
}

/// A mark that may have removed a covered entry leaving its name: its sequence number, its
/// user, and whether the guard's history credits it (see `State::covered_leaving`).
pub type Leaving = (u64, Option<Vec<u8>>, bool);

impl State {
    /// An entry `e` at `key` of `db` is leaving its name by another way than the reclaimer (DEL,
    /// expiry, an overwrite, RENAME's source): the LAZY marks that may have removed it
    /// (`lazy::candidates`: sequence number, user, whether the guard's history credits it),
    /// for `reclaim::credit_leaving` to ask their users about.
    pub fn covered_leaving(&self, db: usize, key: &[u8], e: &Entry) -> Vec<Leaving> {
        if e.born() >= newest_mark() {
            return Vec::new();
        }
        self.lazy().get(db).map_or(Vec::new(), |l| {
            crate::core::lazy::candidates(&l.marks(), key, e, l.arrival(key))
                .into_iter()
                .map(|(m, credited)| (m.seq, m.user.clone(), credited))
                .collect()
        })
    }

    pub fn db(&mut self, db: usize) -> &mut DbIndex {
        if self.dbs.len() <= db {
            self.dbs.resize_with(db + 1, DbIndex::new);
        }
        &mut self.dbs[db]
    }

    pub fn clear_all(&mut self) {
        self.dbs.clear();
    }

    pub fn swap(&mut self, a: usize, b: usize) {
        let n = a.max(b);
        self.db(n);
        self.dbs.swap(a, b);
    }

    /// The invalidation rules and type relationships (server-wide, not per database).
    pub fn rules(&mut self) -> &mut Rules {
        self.rules.get_or_insert_with(Rules::default)
    }

    pub fn lazy(&self) -> &Lazy {
        &self.lazy
    }

    /// Changes the LAZY state; afterwards `newest_mark` is the newest mark's generation.
    pub fn lazy_mut<R>(&mut self, f: impl FnOnce(&mut Lazy) -> R) -> R {
        let r = f(&mut self.lazy);
        let newest = self.lazy.busy().map(|(_, d)| d.newest()).max().unwrap_or(0);
        NEWEST_MARK.store(newest, Ordering::Relaxed);
        r
    }

    /// The module-wide state as it is saved (RDB aux data, an AOF rewrite): the BATCHED queue,
    /// the rules and the LAZY marks with the generation.
    pub fn saved_state(&mut self) -> [Vec<u8>; 3] {
        let lazy = self.lazy.encode(generation());
        [self.batch.encode(), self.rules().encode(), lazy]
    }

    /// Whether there is any module-wide state to save.
    pub fn has_saved_state(&mut self) -> bool {
        !(self.batch.is_empty() && self.rules().is_empty() && self.lazy.is_empty())
    }

    /// Puts back what `saved_state` wrote (`lazy` None: data from before LAZY existed). All of
    /// it is decoded before anything changes; the error names the part that is corrupt.
    pub fn restore_state(
        &mut self,
        batch: &[u8],
        rules: &[u8],
        lazy: Option<&[u8]>,
    ) -> Result<(), String> {
        let batch = Batch::decode(batch).map_err(|e| format!("BATCHED queue: {e}"))?;
        let rules = Rules::decode(rules).map_err(|e| format!("rules: {e}"))?;
        let lazy = lazy
            .map(Lazy::decode)
            .transpose()
            .map_err(|e| format!("LAZY marks: {e}"))?;
        self.batch = batch;
        *self.rules() = rules;
        if let Some((lazy, g)) = lazy {
            raise_generation(g);
            self.lazy_mut(|l| *l = lazy);
        }
        Ok(())
    }

    /// Records the pending unlinked entry (if any) as a deletion.
    pub fn settle_removal(&mut self) {
        if let Some((_, _, hits)) = self.last_unlinked.take() {
            self.metrics_started()
                .record_removal(Removal::Deleted { hits });
        }
    }

    /// The metrics, started at `now_ms` on first use.
    pub fn metrics(&mut self, now_ms: i64) -> &mut Metrics {
        self.metrics.get_or_insert_with(|| Metrics::new(now_ms))
    }

    /// The metrics, reading the clock only if they start now (the hot read path).
    pub fn metrics_started(&mut self) -> &mut Metrics {
        self.metrics
            .get_or_insert_with(|| Metrics::new(crate::server::now_ms()))
    }

    /// Index figures over every database. `full` adds those that visit every tag and resource
    /// (tagged entries, dependency links, the largest tag, the index size estimate).
    pub fn figures(&self, full: bool) -> IndexFigures {
        let mut f = IndexFigures::default();
        let mut largest: Option<(Vec<u8>, u64)> = None;
        for d in &self.dbs {
            f.entries += d.len() as u64;
            f.tags += d.tag_count() as u64;
            f.resources += d.resource_count() as u64;
            f.value_bytes += d.value_bytes();
            if full {
                let (tagged, edges, big) = d.link_figures();
                f.tagged_entries += tagged;
                f.dependency_edges += edges;
                f.index_bytes += d.heap_bytes();
                if big.as_ref().map(|b| b.1) > largest.as_ref().map(|l| l.1) {
                    largest = big;
                }
            }
        }
        let (marks, cascaded) = self.lazy.totals();
        let st = self.lazy.stats;
        f.lazy = LazyFigures {
            marks: marks as u64,
            cascaded: cascaded as u64,
            bytes: self.lazy.heap_bytes(),
            reclaimed: st.reclaimed,
            walks: st.walks,
            steps: st.steps,
            max_step_us: st.max_step_us,
        };
        f.largest_tag = largest.map(|(name, n)| (String::from_utf8_lossy(&name).into_owned(), n));
        if full {
            f.module.batch_bytes = self.batch.heap_bytes();
            f.module.lazy_bytes = f.lazy.bytes;
            f.module.rules_bytes = self.rules.as_ref().map_or(0, Rules::heap_bytes);
        }
        f
    }
}

static STATE: Mutex<State> = Mutex::new(State {
    dbs: Vec::new(),
    metrics: None,
    last_unlinked: None,
    quiet: None,
    batch: Batch::new(),
    batch_timer: None,
    rules: None,
    lazy: Lazy::new(),
    reclaim_timer: false,
    departed: None,
});

pub fn lock() -> MutexGuard<'static, State> {
    // A panic caught at the command boundary may have poisoned the lock; the index is still
    // structurally sound (every mutation completes or panics before touching it).
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The state if it is free now (crash reports).
pub fn try_lock() -> Option<MutexGuard<'static, State>> {
    match STATE.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

pub fn with_db<R>(db: usize, f: impl FnOnce(&mut DbIndex) -> R) -> R {
    f(lock().db(db))
}
