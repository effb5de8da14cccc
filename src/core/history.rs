//! The stale-set guard's history: what the invalidations since a token selected, known well
//! enough to answer "would any of them have selected this new entry?" without visiting entries.
//!
//! A *token* names a point in this node's sequence of invalidations: every invalidation takes
//! the next sequence number, and the token now is the number the next one will take. An
//! invalidation with number `s` happened since token `t` when `s >= t`. Tokens carry the
//! history's *epoch* (made anew when the module loads, when the node becomes a master and when
//! data is loaded): a token of another epoch (another node, before a restart or a failover) is
//! refused, as is one the history no longer reaches (trimmed by `cache.guard-window-ms` or by
//! its memory bound) and one from the future (made up).
//!
//! Per database, each name keeps only the newest sequence number that selected it: tags, the
//! keys named by `KEY`, the resources named by `DEPENDENTS`, namespaces, `ALL`; patterns are
//! kept as a list; and the keys an invalidation removed from which its cascade could go on
//! (hops left), for the cascade question: an entry that depends on one of them would have been
//! reached. A check costs a few lookups per name of the new entry, plus the patterns since the
//! token.

use std::collections::VecDeque;

use ahash::AHashMap;

use super::glob::Glob;
use super::index::Selector;
use super::metrics::{Recommendation, Severity};

pub const ISSUE_GUARD_REFUSED: &str = "Stale sets refused";

/// Bits of a token below the epoch.
const SEQ_BITS: u32 = 32;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Epochs are 31 bits: a token is a positive 63-bit integer.
const EPOCH_MASK: u64 = (1 << 31) - 1;
/// What a remembered name costs besides its bytes, for the memory bound: its FIFO slot (56 B)
/// and map slot (33 B), each in a table up to twice the room it uses, and the allocator's
/// rounding of the two copies of the name. Measured: 1 000 000 removed keys of 14 bytes take
/// about 190 B each in `heap_bytes` (`scripts/bench.sh return`).
const OVERHEAD: u64 = 160;

/// Why a guarded write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token is not one this history can vouch for (another epoch, trimmed, made up).
    Unknown,
    /// An invalidation since the token selects the entry: its selector type and the name that
    /// matched (empty for ALL).
    Selected(&'static str, Vec<u8>),
}

/// One remembered fact, in the order it was recorded: trimming drops the oldest.
#[derive(Debug)]
struct Trace {
    seq: u64,
    at_ms: i64,
    db: usize,
    kind: Kind,
    name: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    Tag,
    Resource,
    Namespace,
    Pattern,
    All,
    Removed,
}

#[derive(Debug, Default)]
struct DbHistory {
    keys: AHashMap<Vec<u8>, u64>,
    tags: AHashMap<Vec<u8>, u64>,
    resources: AHashMap<Vec<u8>, u64>,
    namespaces: AHashMap<Vec<u8>, u64>,
    removed: AHashMap<Vec<u8>, u64>,
    all: u64,
    /// Oldest first.
    patterns: VecDeque<(u64, Vec<u8>)>,
    /// The newest sequence number recorded here: a token at or past it has seen everything.
    newest: u64,
}

impl DbHistory {
    fn map(&mut self, kind: Kind) -> Option<&mut AHashMap<Vec<u8>, u64>> {
        match kind {
            Kind::Key => Some(&mut self.keys),
            Kind::Tag => Some(&mut self.tags),
            Kind::Resource => Some(&mut self.resources),
            Kind::Namespace => Some(&mut self.namespaces),
            Kind::Removed => Some(&mut self.removed),
            Kind::Pattern | Kind::All => None,
        }
    }
}

/// Guarded writes accepted and refused since the start or CACHE.RESET, and the names that
/// refused most (for advice).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GuardStats {
    pub accepted: u64,
    pub refused: u64,
    /// Refusals by the token alone (too old, another node, made up).
    pub refused_unknown: u64,
    /// `(selector type, name) -> refusals`, at most `TOP_REFUSALS` names.
    pub by_name: Vec<((&'static str, Vec<u8>), u64)>,
}

const TOP_REFUSALS: usize = 32;

impl GuardStats {
    pub fn count(&mut self, verdict: &Result<(), Refusal>) {
        match verdict {
            Ok(()) => self.accepted += 1,
            Err(Refusal::Unknown) => {
                self.refused += 1;
                self.refused_unknown += 1;
            }
            Err(Refusal::Selected(kind, name)) => {
                self.refused += 1;
                let found = self
                    .by_name
                    .iter()
                    .position(|((k, n), _)| k == kind && n == name);
                match found {
                    Some(i) => self.by_name[i].1 += 1,
                    None if self.by_name.len() < TOP_REFUSALS => {
                        self.by_name.push(((kind, name.clone()), 1));
                    }
                    // Full: the least counted name gives way (counts stay approximate).
                    None => {
                        if let Some(min) = self.by_name.iter_mut().min_by_key(|(_, c)| *c) {
                            *min = ((kind, name.clone()), min.1 + 1);
                        }
                    }
                }
            }
        }
    }

    /// Advice for CACHE.RECOMMEND: many guarded writes refused (at least 20, and a tenth of
    /// them).
    pub fn advice(&self) -> Vec<Recommendation> {
        let total = self.accepted + self.refused;
        if self.refused < 20 || self.refused * 10 < total {
            return Vec::new();
        }
        let share = 100.0 * self.refused as f64 / total as f64;
        let mut suggestions = Vec::new();
        let named = self.top().filter(|&(_, _, n)| n * 4 >= self.refused);
        let message = match named {
            Some((kind, name, n)) => {
                let name = String::from_utf8_lossy(name);
                suggestions.push(format!(
                    "Writers race invalidations of {kind} {name}: shorten the compute between \
                     CACHE.FETCH WITHTOKEN and CACHE.SET ... GUARD, or invalidate {name} with \
                     STRATEGY SOFT so readers keep a value meanwhile"
                ));
                format!(
                    "{} of {total} guarded sets were refused ({share:.1}%), {n} of them by {kind} {name}",
                    self.refused
                )
            }
            None => format!(
                "{} of {total} guarded sets were refused ({share:.1}%)",
                self.refused
            ),
        };
        if self.refused_unknown * 2 >= self.refused {
            suggestions.push(
                "Most refusals came from tokens the node could not vouch for: take the token \
                 from the node that stores the key (CACHE.FETCH ... WITHTOKEN, or CACHE.TOKEN \
                 key), and raise cache.guard-window-ms above the longest compute"
                    .into(),
            );
        }
        suggestions.push("A refused writer should fetch again and recompute".into());
        vec![Recommendation {
            severity: Severity::Warning,
            issue: ISSUE_GUARD_REFUSED.into(),
            message,
            suggestions,
        }]
    }

    /// The name that refused most, and how often.
    pub fn top(&self) -> Option<(&'static str, &[u8], u64)> {
        self.by_name
            .iter()
            .max_by_key(|(_, c)| *c)
            .map(|((k, n), c)| (*k, &n[..], *c))
    }
}

/// The history of one node.
#[derive(Debug)]
pub struct History {
    epoch: u64,
    /// The sequence number the next invalidation takes (the token now).
    next: u64,
    /// Tokens below this are refused: the history before them was dropped.
    floor: u64,
    dbs: Vec<DbHistory>,
    fifo: VecDeque<Trace>,
    bytes: u64,
    pub stats: GuardStats,
}

impl History {
    /// A history of a new epoch (`seed` picks it: the caller mixes the time and the process).
    pub fn new(seed: u64) -> History {
        let mut h = History {
            epoch: 0,
            next: 1,
            floor: 1,
            dbs: Vec::new(),
            fifo: VecDeque::new(),
            bytes: 0,
            stats: GuardStats::default(),
        };
        h.new_epoch(seed);
        h
    }

    /// Forgets everything: tokens made so far are refused from now on.
    pub fn new_epoch(&mut self, seed: u64) {
        let mut e = seed & EPOCH_MASK;
        if e == self.epoch {
            e = (e + 1) & EPOCH_MASK;
        }
        self.epoch = e;
        self.next = 1;
        self.floor = 1;
        self.dbs.clear();
        self.fifo.clear();
        self.bytes = 0;
    }

    /// The token now.
    pub fn token(&self) -> i64 {
        ((self.epoch << SEQ_BITS) | self.next) as i64
    }

    /// Bytes the history holds (an estimate: names and their slots).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Facts remembered (for tests and STATS).
    pub fn len(&self) -> usize {
        self.fifo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty()
    }

    /// A new invalidation begins: its sequence number.
    pub fn begin(&mut self, seed: u64) -> u64 {
        if self.next >= SEQ_MASK {
            // Four billion invalidations in one epoch: start another one.
            self.new_epoch(seed);
        }
        let s = self.next;
        self.next += 1;
        s
    }

    fn db(&mut self, db: usize) -> &mut DbHistory {
        if self.dbs.len() <= db {
            self.dbs.resize_with(db + 1, DbHistory::default);
        }
        &mut self.dbs[db]
    }

    fn remember(&mut self, db: usize, seq: u64, kind: Kind, name: &[u8], now_ms: i64) {
        let d = self.db(db);
        d.newest = d.newest.max(seq);
        match kind {
            Kind::All => d.all = d.all.max(seq),
            // Kept as text: a compiled glob of a long pattern is many times its size.
            Kind::Pattern => d.patterns.push_back((seq, name.to_vec())),
            _ => {
                if let Some(m) = d.map(kind) {
                    let slot = m.entry(name.to_vec()).or_insert(0);
                    *slot = (*slot).max(seq);
                }
            }
        }
        self.bytes += 2 * name.len() as u64 + OVERHEAD;
        self.fifo.push_back(Trace {
            seq,
            at_ms: now_ms,
            db,
            kind,
            name: name.to_vec(),
        });
    }

    /// What the invalidation `seq` in `db` selects by its selector.
    pub fn selected(&mut self, db: usize, seq: u64, sel: &Selector, now_ms: i64) {
        let (kind, names): (Kind, &[Vec<u8>]) = match sel {
            Selector::Keys(v) => (Kind::Key, v),
            Selector::Tags(v) => (Kind::Tag, v),
            Selector::Dependents(v) => (Kind::Resource, v),
            Selector::Namespace(n) => (Kind::Namespace, std::slice::from_ref(n)),
            Selector::Pattern(p) => (Kind::Pattern, std::slice::from_ref(p)),
            Selector::All => (Kind::All, &[]),
        };
        if kind == Kind::All {
            self.remember(db, seq, Kind::All, b"", now_ms);
        }
        for n in names {
            self.remember(db, seq, kind, n, now_ms);
        }
    }

    /// The invalidation `seq` removed the entry `key`, and its cascade could go on from it (it
    /// had hops left): an entry depending on `key` would have been reached.
    pub fn removed(&mut self, db: usize, seq: u64, key: &[u8], now_ms: i64) {
        self.remember(db, seq, Kind::Removed, key, now_ms);
    }

    /// Drops, oldest first, what is past `max_bytes`, and what is older than `window_ms` up to
    /// `budget` facts (the rest goes at the next call: a fact kept longer only keeps a token
    /// exact longer); tokens from before what was dropped are refused from then on. Returns the
    /// facts dropped.
    pub fn trim(&mut self, now_ms: i64, window_ms: i64, max_bytes: u64, budget: usize) -> usize {
        let mut dropped = 0;
        while let Some(t) = self.fifo.front() {
            let over = self.bytes > max_bytes;
            let old = now_ms.saturating_sub(t.at_ms) > window_ms;
            if !over && (!old || dropped >= budget) {
                break;
            }
            dropped += 1;
            let Some(t) = self.fifo.pop_front() else {
                break;
            };
            self.bytes = self
                .bytes
                .saturating_sub(2 * t.name.len() as u64 + OVERHEAD);
            self.floor = self.floor.max(t.seq + 1);
            if let Some(d) = self.dbs.get_mut(t.db) {
                match t.kind {
                    Kind::All => {
                        if d.all <= t.seq {
                            d.all = 0;
                        }
                    }
                    Kind::Pattern => {
                        if d.patterns.front().is_some_and(|(s, _)| *s <= t.seq) {
                            d.patterns.pop_front();
                        }
                    }
                    kind => {
                        if let Some(m) = d.map(kind) {
                            if m.get(&t.name).is_some_and(|&s| s <= t.seq) {
                                m.remove(&t.name);
                            }
                        }
                    }
                }
            }
        }
        // Nothing remembered: every token of this epoch up to now is exact again, but the
        // floor stays where the dropped facts left it.
        dropped
    }

    /// Gives back the tables' spare room once they are mostly empty (at most an eighth full:
    /// the rehash moves few names), so that memory returns after a large invalidation leaves
    /// the window.
    pub fn shrink(&mut self) {
        fn map(m: &mut AHashMap<Vec<u8>, u64>) {
            let len = m.len();
            if m.capacity() > 64 && len * 8 < m.capacity() {
                m.shrink_to(len * 2);
            }
        }
        fn deque<T>(q: &mut VecDeque<T>) {
            let len = q.len();
            if q.capacity() > 64 && len * 8 < q.capacity() {
                q.shrink_to(len * 2);
            }
        }
        for d in &mut self.dbs {
            for m in [
                &mut d.keys,
                &mut d.tags,
                &mut d.resources,
                &mut d.namespaces,
                &mut d.removed,
            ] {
                map(m);
            }
            deque(&mut d.patterns);
        }
        deque(&mut self.fifo);
    }

    /// The heap the history takes: its names and its tables by capacity (what `bytes` bounds,
    /// with the spare room the tables keep until `shrink`).
    pub fn heap_bytes(&self) -> u64 {
        let names = self.bytes.saturating_sub(OVERHEAD * self.fifo.len() as u64);
        let slot = std::mem::size_of::<(Vec<u8>, u64)>() + 1;
        let tables: usize = self
            .dbs
            .iter()
            .map(|d| {
                [&d.keys, &d.tags, &d.resources, &d.namespaces, &d.removed]
                    .iter()
                    .map(|m| m.capacity() * slot)
                    .sum::<usize>()
                    + d.patterns.capacity() * std::mem::size_of::<(u64, Vec<u8>)>()
            })
            .sum();
        names + (tables + self.fifo.capacity() * std::mem::size_of::<Trace>()) as u64
    }

    /// SWAPDB: each database's history follows its data.
    pub fn swap(&mut self, a: usize, b: usize) {
        self.db(a.max(b));
        self.dbs.swap(a, b);
        for t in self.fifo.iter_mut() {
            if t.db == a {
                t.db = b;
            } else if t.db == b {
                t.db = a;
            }
        }
    }

    /// Whether `token` is one this history vouches for and nothing was recorded in `db` since
    /// it: then any entry may be written (the usual case: a fresh token), with no lookup.
    pub fn quiet_since(&self, db: usize, token: i64) -> bool {
        let Ok(t) = u64::try_from(token) else {
            return false;
        };
        let (epoch, from) = (t >> SEQ_BITS, t & SEQ_MASK);
        epoch == self.epoch
            && from >= self.floor
            && from <= self.next
            && self.dbs.get(db).is_none_or(|d| d.newest < from)
    }

    /// Whether the entry `key` (with `tags` and `deps`) may be written in `db` under `token`:
    /// no invalidation since the token would have selected it. `covered` tells, for a
    /// dependency that still holds an entry, the sequence number of the LAZY mark covering it
    /// (a mark not reclaimed yet) whose cascade goes on from it, if any.
    pub fn check<'a>(
        &self,
        db: usize,
        token: i64,
        key: &[u8],
        tags: impl IntoIterator<Item = &'a [u8]>,
        deps: impl IntoIterator<Item = &'a [u8]>,
        mut covered: impl FnMut(&[u8]) -> Option<u64>,
    ) -> Result<(), Refusal> {
        let t = u64::try_from(token).map_err(|_| Refusal::Unknown)?;
        let (epoch, from) = (t >> SEQ_BITS, t & SEQ_MASK);
        if epoch != self.epoch || from < self.floor || from > self.next {
            return Err(Refusal::Unknown);
        }
        if self.dbs.get(db).is_some_and(|d| d.newest < from) {
            // Nothing recorded here since the token (a LAZY mark made since would have been).
            return Ok(());
        }
        let since = |s: Option<&u64>| s.is_some_and(|&s| s >= from);
        let refuse = |kind: &'static str, name: &[u8]| Err(Refusal::Selected(kind, name.to_vec()));
        let Some(d) = self.dbs.get(db) else {
            // Nothing was ever recorded here; a LAZY mark may still cover a dependency.
            for dep in deps {
                if covered(dep).is_some_and(|s| s >= from) {
                    return refuse("cascade", dep);
                }
            }
            return Ok(());
        };
        if d.all >= from {
            return refuse("all", b"");
        }
        if since(d.keys.get(key)) {
            return refuse("key", key);
        }
        for tag in tags {
            if since(d.tags.get(tag)) {
                return refuse("tag", tag);
            }
        }
        for (i, _) in key.iter().enumerate().filter(|(_, &b)| b == b':') {
            if since(d.namespaces.get(&key[..i])) {
                return refuse("namespace", &key[..i]);
            }
        }
        for dep in deps {
            if since(d.resources.get(dep)) {
                return refuse("dependents", dep);
            }
            if since(d.removed.get(dep)) || covered(dep).is_some_and(|s| s >= from) {
                return refuse("cascade", dep);
            }
        }
        for (s, p) in d.patterns.iter().rev() {
            if *s < from {
                break;
            }
            if Glob::new(p).matches(key) {
                return refuse("pattern", p);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn check(
        h: &History,
        token: i64,
        key: &str,
        tags: &[&str],
        deps: &[&str],
    ) -> Result<(), Refusal> {
        h.check(
            0,
            token,
            key.as_bytes(),
            tags.iter().map(|t| t.as_bytes()),
            deps.iter().map(|d| d.as_bytes()),
            |_| None,
        )
    }

    #[test]
    fn each_selector_refuses_what_it_would_select_since_the_token() {
        type Case = (
            Selector,
            &'static str,
            Vec<&'static str>,
            Vec<&'static str>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (Selector::Keys(vec![b("k")]), "k", vec![], vec![], "key"),
            (Selector::Tags(vec![b("t")]), "x", vec!["t"], vec![], "tag"),
            (
                Selector::Dependents(vec![b("row:1")]),
                "x",
                vec![],
                vec!["row:1"],
                "dependents",
            ),
            (
                Selector::Namespace(b("user")),
                "user:1",
                vec![],
                vec![],
                "namespace",
            ),
            (
                Selector::Namespace(b("a:b")),
                "a:b:c",
                vec![],
                vec![],
                "namespace",
            ),
            (
                Selector::Pattern(b("p:*")),
                "p:9",
                vec![],
                vec![],
                "pattern",
            ),
            (Selector::All, "anything", vec![], vec![], "all"),
        ];
        for (sel, key, tags, deps, kind) in cases {
            let mut h = History::new(7);
            let before = h.token();
            let s = h.begin(7);
            h.selected(0, s, &sel, 1000);
            let after = h.token();
            match check(&h, before, key, &tags, &deps) {
                Err(Refusal::Selected(k, _)) => assert_eq!(k, kind, "{sel:?}"),
                other => panic!("{sel:?}: {other:?}"),
            }
            assert_eq!(
                check(&h, after, key, &tags, &deps),
                Ok(()),
                "{sel:?} before the token"
            );
            // Something the selector does not pick is accepted.
            assert_eq!(
                check(&h, before, "zz", &["other"], &["elsewhere"]),
                if kind == "all" {
                    Err(Refusal::Selected("all", vec![]))
                } else {
                    Ok(())
                }
            );
        }
    }

    #[test]
    fn a_token_after_every_fact_of_its_database_is_quiet() {
        let mut h = History::new(2);
        let before = h.token();
        let s = h.begin(2);
        h.selected(1, s, &Selector::Tags(vec![b("t")]), 0);
        let after = h.token();
        assert!(h.quiet_since(0, before), "nothing in db 0");
        assert!(!h.quiet_since(1, before));
        assert!(h.quiet_since(1, after));
        assert!(!h.quiet_since(1, after + 1), "from the future");
        assert!(!h.quiet_since(1, -3));
        assert!(!h.quiet_since(0, History::new(3).token()), "another epoch");
    }

    #[test]
    fn removed_keys_refuse_their_dependents() {
        let mut h = History::new(1);
        let before = h.token();
        let s = h.begin(1);
        h.selected(0, s, &Selector::Tags(vec![b("t")]), 0);
        h.removed(0, s, b"parent", 0);
        assert!(matches!(
            check(&h, before, "child", &[], &["parent"]),
            Err(Refusal::Selected("cascade", _))
        ));
        // Its own key is not refused for that (a new entry without tag t was not selected).
        assert_eq!(check(&h, before, "parent", &[], &[]), Ok(()));
        // A covered dependency refuses through the shell's answer.
        let covered = h.check(0, before, b"x", [], [&b"d"[..]], |_| Some(s));
        assert!(matches!(covered, Err(Refusal::Selected("cascade", _))));
        let older = h.check(0, h.token(), b"x", [], [&b"d"[..]], |_| Some(s));
        assert_eq!(older, Ok(()));
    }

    #[test]
    fn tokens_of_other_epochs_the_future_or_past_the_window_are_refused() {
        let mut h = History::new(5);
        let t = h.token();
        assert!(t > 0);
        assert_eq!(check(&h, t, "k", &[], &[]), Ok(()));
        assert_eq!(
            check(&h, t + 1, "k", &[], &[]),
            Err(Refusal::Unknown),
            "the future"
        );
        assert_eq!(check(&h, -1, "k", &[], &[]), Err(Refusal::Unknown));
        assert_eq!(check(&h, 12345, "k", &[], &[]), Err(Refusal::Unknown));
        let other = History::new(6);
        assert_eq!(
            check(&h, other.token(), "k", &[], &[]),
            Err(Refusal::Unknown)
        );
        // Time passes: the facts go, and tokens from before them with them.
        let s = h.begin(5);
        h.selected(0, s, &Selector::Tags(vec![b("t")]), 1_000);
        let mid = h.token();
        h.trim(1_500, 1_000, u64::MAX, usize::MAX);
        assert_eq!(h.len(), 1);
        h.trim(2_001, 1_000, u64::MAX, usize::MAX);
        assert!(h.is_empty());
        assert_eq!(check(&h, t, "k", &["t"], &[]), Err(Refusal::Unknown));
        assert_eq!(check(&h, mid, "k", &["t"], &[]), Ok(()));
        // A new epoch refuses everything before it.
        h.new_epoch(5);
        assert_eq!(check(&h, mid, "k", &[], &[]), Err(Refusal::Unknown));
    }

    #[test]
    fn facts_past_the_window_go_in_budgets_and_the_room_comes_back() {
        let mut h = History::new(3);
        let empty = h.heap_bytes();
        let s = h.begin(3);
        for i in 0..50_000 {
            h.removed(0, s, format!("key:{i}").as_bytes(), 1_000);
        }
        let t = h.token();
        let full = h.heap_bytes();
        assert!(full > 50_000 * 40, "{full}");
        // Within the window nothing goes, whatever the budget.
        assert_eq!(h.trim(1_500, 1_000, u64::MAX, usize::MAX), 0);
        // Past it, at most the budget at a time; the byte bound is not held to it.
        assert_eq!(h.trim(3_000, 1_000, u64::MAX, 20_000), 20_000);
        assert_eq!(h.len(), 30_000);
        assert_eq!(
            h.trim(3_000, 1_000, 0, 10),
            30_000,
            "over the byte bound: all"
        );
        assert!(h.is_empty());
        assert_eq!(check(&h, t, "key:1", &[], &[]), Ok(()));
        assert!(h.heap_bytes() >= full / 2, "the room is kept until shrink");
        h.shrink();
        assert!(
            h.heap_bytes() <= empty + 64 * 64,
            "{} after shrink",
            h.heap_bytes()
        );
        // A table still well used keeps its room.
        let s = h.begin(3);
        for i in 0..1_000 {
            h.removed(0, s, format!("key:{i}").as_bytes(), 5_000);
        }
        let used = h.heap_bytes();
        h.shrink();
        assert_eq!(h.heap_bytes(), used);
    }

    #[test]
    fn the_memory_bound_drops_the_oldest_facts_first() {
        let mut h = History::new(9);
        let first = h.token();
        for i in 0..100 {
            let s = h.begin(9);
            h.selected(
                0,
                s,
                &Selector::Tags(vec![format!("tag{i}").into_bytes()]),
                0,
            );
        }
        let mid = h.token();
        let s = h.begin(9);
        h.selected(0, s, &Selector::Tags(vec![b("last")]), 0);
        let one = 2 * 4 + OVERHEAD;
        h.trim(0, 60_000, one, usize::MAX);
        assert_eq!(h.len(), 1);
        assert!(h.bytes() <= one);
        assert_eq!(check(&h, first, "k", &[], &[]), Err(Refusal::Unknown));
        assert!(matches!(
            check(&h, mid, "k", &["last"], &[]),
            Err(Refusal::Selected("tag", _))
        ));
        assert_eq!(check(&h, mid, "k", &["tag3"], &[]), Ok(()));
    }

    #[test]
    fn swapdb_moves_a_databases_history() {
        let mut h = History::new(3);
        let t = h.token();
        let s = h.begin(3);
        h.selected(0, s, &Selector::Tags(vec![b("t")]), 0);
        h.swap(0, 1);
        assert_eq!(check(&h, t, "k", &["t"], &[]), Ok(()));
        let in1 = h.check(1, t, b"k", [&b"t"[..]], [], |_| None);
        assert!(in1.is_err());
        h.trim(10_000, 1, u64::MAX, usize::MAX);
        assert!(h.is_empty());
    }

    #[test]
    fn stats_count_and_name_the_top_refusal() {
        let mut st = GuardStats::default();
        st.count(&Ok(()));
        st.count(&Err(Refusal::Unknown));
        for _ in 0..3 {
            st.count(&Err(Refusal::Selected("tag", b("hot"))));
        }
        st.count(&Err(Refusal::Selected("key", b("k"))));
        assert_eq!((st.accepted, st.refused, st.refused_unknown), (1, 5, 1));
        assert_eq!(st.top(), Some(("tag", &b"hot"[..], 3)));
        for i in 0..100 {
            st.count(&Err(Refusal::Selected("tag", format!("n{i}").into_bytes())));
        }
        assert_eq!(st.by_name.len(), TOP_REFUSALS);
    }
}
