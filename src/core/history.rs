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
//!
//! **Names as hashes.** Every name but a pattern is kept as its 64-bit hash, keyed at random per
//! node (`NameHash`): a fact then costs the same whatever its name's length, and no name is
//! copied. Two names with the same hash (about one chance in 2^64 per pair) count as one: a
//! guarded write may then be refused for the other name's invalidation, never accepted wrongly.
//!
//! **Users.** An invalidation by a user restricted by ACL key patterns selects only the keys that
//! user may delete, so each fact keeps its user (None: one who may delete every key, or no
//! user), and each name keeps its newest sequence number per user. A fact of a user refuses a
//! new entry only if that user may delete the entry's key (and, for a removed key, that key too):
//! the shell asks the server (`check`'s `may`). The user's rights are asked when the check runs,
//! so a change of rights since must not let it refuse less: `acl_changed` makes every fact
//! recorded before it count as anyone's (refusing whatever its selector picks).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use smallvec::SmallVec;

use super::glob::Glob;
use super::index::Selector;
use super::metrics::{PrehashedHasher, Recommendation, Severity};

pub const ISSUE_GUARD_REFUSED: &str = "Stale sets refused";

/// Bits of a token below the epoch.
const SEQ_BITS: u32 = 32;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Epochs are 31 bits: a token is a positive 63-bit integer.
const EPOCH_MASK: u64 = (1 << 31) - 1;
/// What a fact costs for the memory bound (a pattern adds its bytes), at the most its tables
/// hold for it: its map slot (and control byte) in a map just grown (7/16 full), and its FIFO
/// slot in a queue just grown (half full). So the history's heap (`heap_bytes`) stays under the
/// bound. 192 B on x86-64, where the copies of a name made it 240 B and twice its length.
const OVERHEAD: u64 =
    ((std::mem::size_of::<(Name, Slot)>() + 1) * 16 / 7 + 2 * std::mem::size_of::<Trace>()) as u64;
/// What a fact's user costs besides its name's bytes (its share of the name, a slot's entry
/// spilled out of line).
const USER_OVERHEAD: u64 = 24;

/// Who made an invalidation: None for a user who may delete every key (or no user); else the
/// user's name, shared by the facts of one invalidation.
pub type User = Option<Arc<[u8]>>;

/// The bytes a fact of `kind` (`name`: its pattern) by `user` counts for in the memory bound.
fn cost(kind: Kind, name: &[u8], user: &User) -> u64 {
    let text = if kind == Kind::Pattern {
        name.len() as u64
    } else {
        0
    };
    text + OVERHEAD + user.as_ref().map_or(0, |u| u.len() as u64 + USER_OVERHEAD)
}

/// A name's key in the history's maps: its hash, keyed at random per node.
type Name = u64;

/// The maps' keys are hashes already: the map uses them as they are.
type NameMap = HashMap<Name, Slot, BuildHasherDefault<PrehashedHasher>>;

/// The newest sequence numbers that selected one name, one per user (None: anyone's). One user
/// (the usual case) is kept in line.
#[derive(Debug, Default)]
struct Slot(SmallVec<[(User, u64); 1]>);

impl Slot {
    /// Records `seq` by `user`; a restricted user's fact from before `trust_from` (the last ACL
    /// change) counts as anyone's, and so does the one it replaces.
    fn record(&mut self, user: &User, seq: u64, trust_from: u64) {
        let user = if seq < trust_from { &None } else { user };
        match self.0.iter().position(|(u, _)| u == user) {
            Some(i) => {
                let old = self.0[i].1;
                if seq > old {
                    if user.is_some() && old < trust_from {
                        self.record(&None, old, trust_from);
                    }
                    // `record` above may have pushed an entry: `i` still names this one.
                    self.0[i].1 = seq;
                }
            }
            None => self.0.push((user.clone(), seq)),
        }
    }

    /// Whether a fact since `from` refuses: anyone's, from before the last ACL change, or of a
    /// user `may` allows.
    fn refuses(&self, from: u64, trust_from: u64, mut may: impl FnMut(&[u8]) -> bool) -> bool {
        self.0.iter().any(|(u, s)| {
            *s >= from
                && match u {
                    None => true,
                    Some(u) => *s < trust_from || may(u),
                }
        })
    }

    /// Drops the facts at or before `seq`; true when nothing is left.
    fn trim(&mut self, seq: u64) -> bool {
        self.0.retain(|(_, s)| *s > seq);
        self.0.is_empty()
    }
}

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
    /// The name's hash (nothing for ALL; a pattern is in `DbHistory::patterns`).
    name: Name,
    db: u32,
    kind: Kind,
    /// What it counts for in the memory bound.
    cost: u32,
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
    keys: NameMap,
    tags: NameMap,
    resources: NameMap,
    namespaces: NameMap,
    removed: NameMap,
    all: Slot,
    /// Oldest first.
    patterns: VecDeque<(u64, Vec<u8>, User)>,
    /// The newest sequence number recorded here: a token at or past it has seen everything.
    newest: u64,
}

impl DbHistory {
    fn map(&mut self, kind: Kind) -> Option<&mut NameMap> {
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
    /// Facts before this sequence number count as anyone's: the users' rights changed since.
    trust_from: u64,
    /// The user of the last fact recorded, shared with the next ones of the same user.
    last_user: User,
    dbs: Vec<DbHistory>,
    fifo: VecDeque<Trace>,
    bytes: u64,
    /// Hashes names (`Name`), keyed at random when the history is made.
    hasher: ahash::RandomState,
    pub stats: GuardStats,
}

impl History {
    /// A history of a new epoch (`seed` picks it: the caller mixes the time and the process).
    pub fn new(seed: u64) -> History {
        let mut h = History {
            epoch: 0,
            next: 1,
            floor: 1,
            trust_from: 0,
            last_user: None,
            dbs: Vec::new(),
            fifo: VecDeque::new(),
            bytes: 0,
            hasher: ahash::RandomState::new(),
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
        self.trust_from = 0;
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

    /// The user as the facts keep it: shared with the last one recorded when it is the same.
    fn user(&mut self, user: Option<&[u8]>) -> User {
        let u = user?;
        match &self.last_user {
            Some(last) if &last[..] == u => Some(Arc::clone(last)),
            _ => {
                let shared: Arc<[u8]> = Arc::from(u);
                self.last_user = Some(Arc::clone(&shared));
                Some(shared)
            }
        }
    }

    fn name(&self, name: &[u8]) -> Name {
        self.hasher.hash_one(name)
    }

    fn remember(&mut self, db: usize, seq: u64, kind: Kind, name: &[u8], user: &User, now_ms: i64) {
        let trust_from = self.trust_from;
        let hash = match kind {
            Kind::Pattern | Kind::All => 0,
            _ => self.name(name),
        };
        let d = self.db(db);
        d.newest = d.newest.max(seq);
        match kind {
            Kind::All => d.all.record(user, seq, trust_from),
            // Kept as text: a compiled glob of a long pattern is many times its size.
            Kind::Pattern => d.patterns.push_back((seq, name.to_vec(), user.clone())),
            _ => {
                if let Some(m) = d.map(kind) {
                    m.entry(hash).or_default().record(user, seq, trust_from);
                }
            }
        }
        let cost = cost(kind, name, user);
        self.bytes += cost;
        self.fifo.push_back(Trace {
            seq,
            at_ms: now_ms,
            name: hash,
            db: u32::try_from(db).unwrap_or(u32::MAX),
            kind,
            cost: u32::try_from(cost).unwrap_or(u32::MAX),
        });
    }

    /// What the invalidation `seq` in `db` by `user` (None: one who may delete every key)
    /// selects by its selector.
    pub fn selected(
        &mut self,
        db: usize,
        seq: u64,
        sel: &Selector,
        user: Option<&[u8]>,
        now_ms: i64,
    ) {
        let user = self.user(user);
        let (kind, names): (Kind, &[Vec<u8>]) = match sel {
            Selector::Keys(v) => (Kind::Key, v),
            Selector::Tags(v) => (Kind::Tag, v),
            Selector::Dependents(v) => (Kind::Resource, v),
            Selector::Namespace(n) => (Kind::Namespace, std::slice::from_ref(n)),
            Selector::Pattern(p) => (Kind::Pattern, std::slice::from_ref(p)),
            Selector::All => (Kind::All, &[]),
        };
        if kind == Kind::All {
            self.remember(db, seq, Kind::All, b"", &user, now_ms);
        }
        for n in names {
            self.remember(db, seq, kind, n, &user, now_ms);
        }
    }

    /// The invalidation `seq` by `user` removed the entry `key`, and its cascade could go on
    /// from it (it had hops left): an entry depending on `key` that the user may delete would
    /// have been reached.
    pub fn removed(&mut self, db: usize, seq: u64, key: &[u8], user: Option<&[u8]>, now_ms: i64) {
        let user = self.user(user);
        self.remember(db, seq, Kind::Removed, key, &user, now_ms);
    }

    /// Whether no ACL change was seen since invalidation `seq` (its user's rights now are
    /// those it had).
    pub fn trusted(&self, seq: u64) -> bool {
        seq >= self.trust_from
    }

    /// The users' rights may have changed (ACL SETUSER, DELUSER, LOAD): every fact recorded
    /// until now counts as anyone's from now on (its user is not asked: it refuses what its
    /// selector picks, more than the user may have deleted then, never less).
    pub fn acl_changed(&mut self) {
        self.trust_from = self.next;
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
            self.bytes = self.bytes.saturating_sub(u64::from(t.cost));
            self.floor = self.floor.max(t.seq + 1);
            // Tokens at or before `t.seq` are refused from now on: every fact of the name at or
            // before it can go.
            if let Some(d) = self.dbs.get_mut(t.db as usize) {
                match t.kind {
                    Kind::All => {
                        d.all.trim(t.seq);
                    }
                    Kind::Pattern => {
                        if d.patterns.front().is_some_and(|(s, _, _)| *s <= t.seq) {
                            d.patterns.pop_front();
                        }
                    }
                    kind => {
                        if let Some(m) = d.map(kind) {
                            if m.get_mut(&t.name).is_some_and(|slot| slot.trim(t.seq)) {
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
        fn map(m: &mut NameMap) {
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
        // The patterns and users as the bound counts them, without the per-fact estimate (a
        // name's second user spills its slot out of line: `USER_OVERHEAD` counts for that).
        let names = self.bytes.saturating_sub(OVERHEAD * self.fifo.len() as u64);
        let slot = std::mem::size_of::<(Name, Slot)>() + 1;
        let tables: usize = self
            .dbs
            .iter()
            .map(|d| {
                [&d.keys, &d.tags, &d.resources, &d.namespaces, &d.removed]
                    .iter()
                    .map(|m| m.capacity() * slot)
                    .sum::<usize>()
                    + d.patterns.capacity() * std::mem::size_of::<(u64, Vec<u8>, User)>()
            })
            .sum();
        names + (tables + self.fifo.capacity() * std::mem::size_of::<Trace>()) as u64
    }

    /// SWAPDB: each database's history follows its data.
    pub fn swap(&mut self, a: usize, b: usize) {
        self.db(a.max(b));
        self.dbs.swap(a, b);
        let (a, b) = (a as u32, b as u32);
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
    /// (a mark not reclaimed yet) whose cascade goes on from it and whose user may delete
    /// `key`, if any. `may(user, name)` tells whether a restricted user may delete `name`: a
    /// user's fact refuses only when the user may delete `key` (and, for a removed dependency,
    /// the dependency).
    #[allow(clippy::too_many_arguments)]
    pub fn check<'a, 's>(
        &'s self,
        db: usize,
        token: i64,
        key: &[u8],
        tags: impl IntoIterator<Item = &'a [u8]>,
        deps: impl IntoIterator<Item = &'a [u8]>,
        mut covered: impl FnMut(&[u8]) -> Option<u64>,
        mut may: impl FnMut(&[u8], &[u8]) -> bool,
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
        let trust = self.trust_from;
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
        // A name's slot in a map (its hash made only when the map holds any).
        let look = |m: &'s NameMap, name: &[u8]| {
            if m.is_empty() {
                None
            } else {
                m.get(&self.name(name))
            }
        };
        // A fact of a name since the token that selects `key`.
        let mut since = |slot: Option<&Slot>, also: Option<&[u8]>| {
            slot.is_some_and(|slot| {
                slot.refuses(from, trust, |u| {
                    // Both asked (no short cut): the shell's first pass learns whom to ask.
                    let of_key = may(u, key);
                    also.is_none_or(|other| may(u, other)) && of_key
                })
            })
        };
        if since(Some(&d.all), None) {
            return refuse("all", b"");
        }
        if since(look(&d.keys, key), None) {
            return refuse("key", key);
        }
        for tag in tags {
            if since(look(&d.tags, tag), None) {
                return refuse("tag", tag);
            }
        }
        for (i, _) in key.iter().enumerate().filter(|(_, &b)| b == b':') {
            if since(look(&d.namespaces, &key[..i]), None) {
                return refuse("namespace", &key[..i]);
            }
        }
        for dep in deps {
            if since(look(&d.resources, dep), None) {
                return refuse("dependents", dep);
            }
            if since(look(&d.removed, dep), Some(dep)) || covered(dep).is_some_and(|s| s >= from) {
                return refuse("cascade", dep);
            }
        }
        for (s, p, u) in d.patterns.iter().rev() {
            if *s < from {
                break;
            }
            let by = |may: &mut dyn FnMut(&[u8], &[u8]) -> bool| match u {
                None => true,
                Some(u) => *s < trust || may(u, key),
            };
            if Glob::new(p).matches(key) && by(&mut may) {
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

    /// `History::check` in db 0, no LAZY cover, every user allowed everything.
    fn check(
        h: &History,
        token: i64,
        key: &str,
        tags: &[&str],
        deps: &[&str],
    ) -> Result<(), Refusal> {
        check_as(h, token, key, tags, deps, None)
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
            h.selected(0, s, &sel, None, 1000);
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
        h.selected(1, s, &Selector::Tags(vec![b("t")]), None, 0);
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
        h.selected(0, s, &Selector::Tags(vec![b("t")]), None, 0);
        h.removed(0, s, b"parent", None, 0);
        assert!(matches!(
            check(&h, before, "child", &[], &["parent"]),
            Err(Refusal::Selected("cascade", _))
        ));
        // Its own key is not refused for that (a new entry without tag t was not selected).
        assert_eq!(check(&h, before, "parent", &[], &[]), Ok(()));
        // A covered dependency refuses through the shell's answer.
        let covered = h.check(0, before, b"x", [], [&b"d"[..]], |_| Some(s), |_, _| true);
        assert!(matches!(covered, Err(Refusal::Selected("cascade", _))));
        let older = h.check(
            0,
            h.token(),
            b"x",
            [],
            [&b"d"[..]],
            |_| Some(s),
            |_, _| true,
        );
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
        h.selected(0, s, &Selector::Tags(vec![b("t")]), None, 1_000);
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
            h.removed(0, s, format!("key:{i}").as_bytes(), None, 1_000);
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
            h.removed(0, s, format!("key:{i}").as_bytes(), None, 5_000);
        }
        let used = h.heap_bytes();
        h.shrink();
        assert_eq!(h.heap_bytes(), used);
    }

    #[test]
    fn a_fact_costs_the_same_whatever_its_names_length() {
        let mut h = History::new(3);
        let t = h.token();
        let s = h.begin(3);
        let long = vec![b'k'; 4096];
        h.removed(0, s, &long, None, 0);
        assert_eq!(h.bytes(), OVERHEAD);
        h.removed(0, s, b"k", None, 0);
        assert_eq!(h.bytes(), 2 * OVERHEAD);
        // A pattern keeps its text.
        h.selected(0, s, &Selector::Pattern(b("p:*")), None, 0);
        assert_eq!(h.bytes(), 3 * OVERHEAD + 3);
        assert!(
            h.heap_bytes() <= h.bytes() + 64 * OVERHEAD,
            "{}",
            h.heap_bytes()
        );
        // Kept by hash, found by name.
        let long = String::from_utf8(long).unwrap();
        assert!(matches!(
            check(&h, t, "x", &[], &[&long]),
            Err(Refusal::Selected("cascade", _))
        ));
        assert!(matches!(
            check(&h, t, "x", &[], &["k"]),
            Err(Refusal::Selected("cascade", _))
        ));
        assert_eq!(check(&h, t, "x", &[], &["kk"]), Ok(()));
        #[cfg(target_pointer_width = "64")]
        assert_eq!(OVERHEAD, 192);
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
                None,
                0,
            );
        }
        let mid = h.token();
        let s = h.begin(9);
        h.selected(0, s, &Selector::Tags(vec![b("last")]), None, 0);
        let one = OVERHEAD;
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
        h.selected(0, s, &Selector::Tags(vec![b("t")]), None, 0);
        h.swap(0, 1);
        assert_eq!(check(&h, t, "k", &["t"], &[]), Ok(()));
        let in1 = h.check(1, t, b"k", [&b"t"[..]], [], |_| None, |_, _| true);
        assert!(in1.is_err());
        h.trim(10_000, 1, u64::MAX, usize::MAX);
        assert!(h.is_empty());
    }

    /// `check` with users allowed only the (user, name) pairs in `allowed` (None: everything).
    fn check_as(
        h: &History,
        token: i64,
        key: &str,
        tags: &[&str],
        deps: &[&str],
        allowed: Option<&[(&str, &str)]>,
    ) -> Result<(), Refusal> {
        h.check(
            0,
            token,
            key.as_bytes(),
            tags.iter().map(|t| t.as_bytes()),
            deps.iter().map(|d| d.as_bytes()),
            |_| None,
            |u, n| {
                allowed.is_none_or(|a| {
                    a.iter()
                        .any(|(au, an)| au.as_bytes() == u && an.as_bytes() == n)
                })
            },
        )
    }

    #[test]
    fn a_users_facts_refuse_only_what_the_user_may_delete() {
        let sels = [
            Selector::Tags(vec![b("t")]),
            Selector::Keys(vec![b("app:2"), b("web:2")]),
            Selector::Pattern(b("*:2")),
            Selector::Namespace(b("app")),
            Selector::All,
        ];
        for sel in sels {
            let mut h = History::new(4);
            let t = h.token();
            let s = h.begin(4);
            h.selected(0, s, &sel, Some(b"narrow"), 0);
            let inside = [("narrow", "app:2")];
            let key = if matches!(sel, Selector::Namespace(_)) {
                "app:2"
            } else {
                "web:2"
            };
            // The user may not delete it: accepted; may: refused.
            assert_eq!(
                check_as(&h, t, key, &["t"], &[], Some(&[])),
                Ok(()),
                "{sel:?}"
            );
            assert!(
                check_as(&h, t, "app:2", &["t"], &[], Some(&inside)).is_err(),
                "{sel:?}"
            );
            // Another user's fact of the same name refuses by its own rights.
            let s = h.begin(4);
            h.selected(0, s, &sel, None, 0);
            assert!(
                check_as(&h, t, "app:2", &["t"], &[], Some(&[])).is_err(),
                "{sel:?}"
            );
        }
        // A removed key: the user is asked about the new entry's key and the dependency.
        let mut h = History::new(4);
        let t = h.token();
        let s = h.begin(4);
        h.removed(0, s, b"app:1", Some(b"narrow"), 0);
        assert_eq!(
            check_as(
                &h,
                t,
                "web:2",
                &[],
                &["app:1"],
                Some(&[("narrow", "app:1")])
            ),
            Ok(())
        );
        assert_eq!(
            check_as(
                &h,
                t,
                "app:2",
                &[],
                &["app:1"],
                Some(&[("narrow", "app:2")])
            ),
            Ok(())
        );
        let both = [("narrow", "app:1"), ("narrow", "app:2")];
        assert!(check_as(&h, t, "app:2", &[], &["app:1"], Some(&both)).is_err());
        // Every pair that decides is asked, even when the first one already says no.
        let mut asked = Vec::new();
        let r = h.check(
            0,
            t,
            b"app:2",
            [],
            [&b"app:1"[..]],
            |_| None,
            |u, n| {
                asked.push((u.to_vec(), n.to_vec()));
                false
            },
        );
        assert_eq!(r, Ok(()));
        assert_eq!(
            asked,
            vec![(b("narrow"), b("app:2")), (b("narrow"), b("app:1"))]
        );
        // The user's name is counted in the bound, and trimmed with its facts.
        assert_eq!(
            h.bytes(),
            cost(Kind::Key, b"app:1", &Some(Arc::from(&b"narrow"[..])))
        );
        h.trim(10, 1, 0, usize::MAX);
        assert_eq!((h.bytes(), h.len()), (0, 0));
    }

    #[test]
    fn after_an_acl_change_older_facts_refuse_whoever_made_them() {
        let mut h = History::new(8);
        let t = h.token();
        let s1 = h.begin(8);
        h.selected(0, s1, &Selector::Tags(vec![b("t")]), Some(b"narrow"), 0);
        assert_eq!(check_as(&h, t, "web:2", &["t"], &[], Some(&[])), Ok(()));
        h.acl_changed();
        assert!(check_as(&h, t, "web:2", &["t"], &[], Some(&[])).is_err());
        // A newer fact of the same user and name does not hide the older one.
        let s2 = h.begin(8);
        h.selected(0, s2, &Selector::Tags(vec![b("t")]), Some(b"narrow"), 0);
        assert!(check_as(&h, t, "web:2", &["t"], &[], Some(&[])).is_err());
        // A token after the older one: only the newer fact, by the user's rights.
        let mid = (((h.token() as u64 >> SEQ_BITS) << SEQ_BITS) | s2) as i64;
        assert_eq!(check_as(&h, mid, "web:2", &["t"], &[], Some(&[])), Ok(()));
        // A late fact with a number from before the change (a LAZY mark's reclaimer) too.
        h.removed(0, s1, b"app:1", Some(b"narrow"), 0);
        assert!(check_as(&h, t, "web:2", &[], &["app:1"], Some(&[])).is_err());
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
