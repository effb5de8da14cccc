//! WATCH and CLIENT TRACKING over marks (issue 21, defect 6). A LAZY mark, or the mark of a
//! stepped IMMEDIATE invalidation, deletes nothing when it is made: without more, a transaction
//! watching a key it covers would still run, and a tracking client would keep serving the
//! value until the reclaimer deletes the key. IMMEDIATE tells both at once (its DEL), so the
//! marks must too.
//!
//! The module cannot ask the server which keys are watched or tracked. It remembers instead:
//! - the keys named by `WATCH` (seen through a command filter, `ffi::command_filter`, on every
//!   server: the filter needs no client id);
//! - the keys read by cache commands (CACHE.GET, MGET, FETCH, INSPECT) of a client with
//!   tracking on (asked only once the filter has seen a `CLIENT TRACKING ON`).
//!
//! When a mark is made (`reclaim::mark`, and a mark from the master), each remembered key that
//! holds an entry the mark covers (`reclaim::gone`) is signalled as modified, as a DEL would
//! signal it: EXEC of a transaction watching it fails, and tracking clients get an invalidation
//! message. A key the module signals as modified, for a mark or for any change it makes, is
//! forgotten as tracked (the server forgets a tracked key once it told its clients) until it
//! is read again; watched names are only forgotten by the bound (a name holds no database:
//! the watch may be in another one than the change).
//!
//! Bounded: the most recent `REMEMBERED` names of each kind, and at most `REMEMBERED_BYTES` of
//! heap for each kind (names are any key names, up to the server's 512 MB); an older name is
//! forgotten first, a key watched again or read again counts as recent, and a name that alone
//! would take more than `REMEMBERED_BYTES` is not remembered (as if it were pushed out at once). Over-approximating is harmless: a
//! name remembered for a watch that already ended, or in another database, costs one look-up
//! at the next mark (a signal where nobody watches does nothing). Under-approximating is the
//! limit: a transaction watching a key through more than `REMEMBERED` other watched names (or
//! more than `REMEMBERED_BYTES` of them) is not told by a mark (it is told by the reclaimer's
//! DEL later, as before). An entry's name is at most `cache.max-name-bytes` (4 KiB by default),
//! so only a limit raised past 512 KiB lets a single entry name be too large to remember.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use ahash::AHasher;
use redis_module::Context;

use crate::server::{self, Held, Key};

/// How many names of each kind (watched, tracked) are remembered at most.
pub const REMEMBERED: usize = 4096;
/// How many heap bytes (see `Recent::cost`) the names of each kind take at most: 1 MiB.
pub const REMEMBERED_BYTES: usize = 1 << 20;

/// Names in the order they were last seen, each once.
struct Recent {
    by_name: HashMap<Vec<u8>, u64, BuildHasherDefault<AHasher>>,
    by_seq: BTreeMap<u64, Vec<u8>>,
    next: u64,
    /// The sum of `cost` over the names remembered.
    bytes: usize,
}

impl Recent {
    const fn new() -> Recent {
        Recent {
            by_name: HashMap::with_hasher(BuildHasherDefault::new()),
            by_seq: BTreeMap::new(),
            next: 0,
            bytes: 0,
        }
    }

    /// The heap one remembered name takes: its two copies (the map's key and the order's
    /// value) plus the map's slot (key, sequence, control byte) and the B-tree's share of a
    /// node (sequence and value, nodes about two thirds full).
    const fn cost(len: usize) -> usize {
        2 * len + (24 + 8 + 1) + (8 + 24) * 3 / 2
    }

    /// The heap the names take, with the tables' spare capacity (an estimate, O(1)).
    fn heap_bytes(&self) -> usize {
        let spare = self.by_name.capacity().saturating_sub(self.by_name.len());
        self.bytes + spare * (24 + 8 + 1)
    }

    fn note(&mut self, name: &[u8]) {
        if Self::cost(name.len()) > REMEMBERED_BYTES {
            self.forget(name);
            return;
        }
        let seq = self.next;
        self.next += 1;
        match self.by_name.get_mut(name) {
            Some(old) => {
                self.by_seq.remove(old);
                *old = seq;
                self.by_seq.insert(seq, name.to_vec());
            }
            None => {
                self.by_name.insert(name.to_vec(), seq);
                self.by_seq.insert(seq, name.to_vec());
                self.bytes += Self::cost(name.len());
            }
        }
        while self.by_seq.len() > REMEMBERED || self.bytes > REMEMBERED_BYTES {
            let Some((_, oldest)) = self.by_seq.pop_first() else {
                break;
            };
            self.by_name.remove(&oldest);
            self.bytes -= Self::cost(oldest.len());
        }
    }

    fn forget(&mut self, name: &[u8]) {
        if let Some(seq) = self.by_name.remove(name) {
            self.by_seq.remove(&seq);
            self.bytes -= Self::cost(name.len());
        }
    }

    fn names(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.by_seq.values()
    }

    fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }
}

struct Remembered {
    watched: Recent,
    tracked: Recent,
}

static REMEMBERED_NAMES: Mutex<Remembered> = Mutex::new(Remembered {
    watched: Recent::new(),
    tracked: Recent::new(),
});
/// Some name is remembered: a mark looks only then (one flag check otherwise).
static ANY: AtomicBool = AtomicBool::new(false);
/// The filter has seen `CLIENT TRACKING ON`: reads ask whether their client tracks only then.
static TRACKING_SEEN: AtomicBool = AtomicBool::new(false);

/// The heap the remembered names (watched and tracked) take: an estimate, O(1).
pub fn heap_bytes() -> u64 {
    let r = lock();
    (r.watched.heap_bytes() + r.tracked.heap_bytes()) as u64
}

fn lock() -> MutexGuard<'static, Remembered> {
    REMEMBERED_NAMES.lock().unwrap_or_else(|e| e.into_inner())
}

fn settle(r: &Remembered) {
    ANY.store(
        !(r.watched.is_empty() && r.tracked.is_empty()),
        Ordering::Relaxed,
    );
}

/// `WATCH key [key ...]` is about to run (the command filter): remember the keys.
pub fn watching<'a>(names: impl Iterator<Item = &'a [u8]>) {
    let mut r = lock();
    for n in names {
        r.watched.note(n);
    }
    settle(&r);
}

/// `CLIENT TRACKING ON` is about to run (the command filter).
pub fn tracking_seen() {
    TRACKING_SEEN.store(true, Ordering::Relaxed);
}

/// A cache command read these keys: remembered if its client has tracking on. One flag check
/// while no client ever turned tracking on.
pub fn read<'a>(ctx: &Context, names: impl IntoIterator<Item = &'a [u8]>) {
    if !TRACKING_SEEN.load(Ordering::Relaxed) || !server::client_tracks(ctx) {
        return;
    }
    let mut r = lock();
    for n in names {
        r.tracked.note(n);
    }
    settle(&r);
}

/// The module signalled `name` as modified (a write, a delete, a stale mark, a mark covering
/// it): tracking clients were told and the server forgot the key for them (tracking ignores
/// the database), so it need not be remembered as tracked until it is read again. A watched
/// name stays: the watch may be in another database than the change. One flag check while
/// nothing is remembered.
pub fn modified(name: &[u8]) {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    let mut r = lock();
    r.tracked.forget(name);
    settle(&r);
}

/// A mark was just made in `db` (a LAZY invalidation, a stepped IMMEDIATE one, or a mark from
/// the master): signal every remembered key it covers there, as its DEL would.
pub fn marked(ctx: &Context, db: usize) {
    if !ANY.load(Ordering::Relaxed) || server::loading(ctx) {
        return;
    }
    let names: Vec<Vec<u8>> = {
        let r = lock();
        let mut v: Vec<Vec<u8>> = r
            .watched
            .names()
            .chain(r.tracked.names())
            .cloned()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let original = server::selected_db(ctx);
    if db != original && !server::select_db(ctx, db) {
        return;
    }
    // A name whose namespace holds no entry is none: not opened.
    let names: Vec<Vec<u8>> = crate::state::with_db(db, |idx| {
        names.into_iter().filter(|n| idx.may_hold(n)).collect()
    });
    for name in names {
        let rs = server::string(ctx, &name);
        let covered = {
            let key = Key::probe(ctx, &rs);
            matches!(key.held(), Held::Entry(e) if crate::reclaim::gone(ctx, &name, e))
        };
        if covered {
            // Forgotten as tracked (see `modified`).
            server::signal_modified(ctx, &rs);
        }
    }
    if db != original {
        server::select_db(ctx, original);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_names_are_bounded_and_renewed() {
        let mut r = Recent::new();
        for i in 0..REMEMBERED + 10 {
            r.note(format!("k{i}").as_bytes());
        }
        assert_eq!(r.by_seq.len(), REMEMBERED);
        assert_eq!(r.by_name.len(), REMEMBERED);
        assert!(!r.by_name.contains_key(&b"k9"[..]), "the oldest go first");
        assert!(r.by_name.contains_key(&b"k10"[..]));
        // Seen again: recent, so it outlives the names seen after it the first time.
        r.note(b"k10");
        r.note(b"new");
        assert!(r.by_name.contains_key(&b"k10"[..]));
        assert!(!r.by_name.contains_key(&b"k11"[..]));
        assert_eq!(r.by_seq.len(), REMEMBERED);
        r.forget(b"k10");
        r.forget(b"never");
        assert!(!r.by_name.contains_key(&b"k10"[..]));
        assert_eq!(r.by_seq.len(), REMEMBERED - 1);
        assert_eq!(r.names().last().map(Vec::as_slice), Some(&b"new"[..]));
        let sum: usize = r.names().map(|n| Recent::cost(n.len())).sum();
        assert_eq!(r.bytes, sum, "the byte count follows notes and forgets");
    }

    #[test]
    fn recent_names_are_bounded_in_bytes() {
        let mut r = Recent::new();
        // 4 KB names: 4096 of them would be 32 MB; the byte bound keeps about 127.
        let name = |i: usize| format!("{i:06}{}", "x".repeat(4090)).into_bytes();
        for i in 0..REMEMBERED {
            r.note(&name(i));
        }
        assert!(r.bytes <= REMEMBERED_BYTES, "{} bytes", r.bytes);
        let kept = r.by_seq.len();
        assert_eq!(
            kept,
            REMEMBERED_BYTES / Recent::cost(4096),
            "as many as fit"
        );
        assert_eq!(r.by_name.len(), kept);
        // The newest are the ones kept.
        assert!(r.by_name.contains_key(&name(REMEMBERED - 1)));
        assert!(r.by_name.contains_key(&name(REMEMBERED - kept)));
        assert!(!r.by_name.contains_key(&name(REMEMBERED - kept - 1)));
        let sum: usize = r.names().map(|n| Recent::cost(n.len())).sum();
        assert_eq!(r.bytes, sum);
        assert!(r.heap_bytes() >= r.bytes);
        // A name larger than the bound alone is not remembered, and pushes nothing out.
        r.note(&vec![b'y'; REMEMBERED_BYTES]);
        assert_eq!(r.by_seq.len(), kept);
        assert!(!r.by_name.contains_key(&vec![b'y'; REMEMBERED_BYTES]));
        // Short names fill back up to the count bound once the long ones are pushed out.
        for i in 0..REMEMBERED {
            r.note(format!("k{i}").as_bytes());
        }
        assert_eq!(r.by_seq.len(), REMEMBERED);
        assert!(r.bytes <= REMEMBERED_BYTES);
    }
}
