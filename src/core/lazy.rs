//! The LAZY strategy, without a walk over the entries it selects.
//!
//! Every entry carries the generation it was written at (`Entry::born`). A LAZY invalidation
//! adds a *mark* (its selector, cascade depth and user) with a new generation. A mark covers an
//! entry born before it that its selector picks, or whose key is in the mark's *cascade*: the
//! entries the cascade reached when the mark was made, resolved then on the dependency graph as
//! it was (see `reclaim::resolve`), so that nothing written, expired, renamed or reclaimed
//! afterwards can widen or narrow it. Covered entries read as misses at once. A reclaimer walks
//! the database in small steps and deletes what the marks cover; once a walk that started after
//! a mark ends, nothing is covered by it any more and the mark is dropped.
//!
//! Coverage never grows for existing marks: writing an entry again gives it a new generation,
//! CACHE.TAG/DEPEND renew it too (the entry was not covered, or they would have failed), and an
//! entry that arrives under a new name (RENAME, MOVE, COPY) is either still covered (an alias
//! mark names it) or born anew. So one walk finds everything its marks cover.

use std::sync::Arc;

use ahash::AHashMap;

use super::batch::{put_selector, read_selector};
use super::entry::{put_bytes, put_varint, DecodeError, Entry, Reader};
use super::glob::Glob;
use super::index::Selector;

/// One LAZY invalidation waiting for the reclaimer.
#[derive(Debug, Clone)]
pub struct Mark {
    /// The generation it was made at: it covers entries born before.
    pub gen: u64,
    pub selector: Selector,
    /// Cascade hops (already resolved from `cache.max-cascade-depth`); the cascade itself is
    /// `cascade`.
    pub depth: u32,
    /// The ACL user who made it: it only covers keys that user may delete.
    pub user: Option<Vec<u8>>,
    pub context: Option<Vec<u8>>,
    pub created_ms: i64,
    /// The entries its selector picked when it was made (the command's reply).
    pub selected: u64,
    /// The keys its cascade reached when it was made, beyond what the selector picks; sorted.
    cascade: Vec<Vec<u8>>,
    /// Its number in the stale-set guard's history on the node that made it (0: made before
    /// this process, or on another node; not persisted).
    pub seq: u64,
    /// The cascade depth the invalidation asked for (`depth` is 0 when nothing depended on
    /// anything then): an entry written later that depends on a key it covers would have been
    /// reached, which the guard asks. Not persisted.
    pub hops: u32,
    glob: Option<Glob>,
}

impl Mark {
    /// A mark; name lists are sorted for lookups, ALL never cascades (it covers everything).
    pub fn new(
        gen: u64,
        selector: Selector,
        depth: u32,
        user: Option<Vec<u8>>,
        context: Option<Vec<u8>>,
        created_ms: i64,
        selected: u64,
    ) -> Mark {
        let mut selector = selector;
        if let Selector::Keys(v) | Selector::Tags(v) | Selector::Dependents(v) = &mut selector {
            v.sort_unstable();
            v.dedup();
        }
        let glob = match &selector {
            Selector::Pattern(p) => Some(Glob::new(p)),
            _ => None,
        };
        let depth = if selector == Selector::All { 0 } else { depth };
        Mark {
            gen,
            selector,
            depth,
            user,
            context,
            created_ms,
            selected,
            cascade: Vec::new(),
            seq: 0,
            hops: depth,
            glob,
        }
    }

    /// The same mark with the keys its cascade reached when it was made.
    pub fn with_cascade(mut self, mut keys: Vec<Vec<u8>>) -> Mark {
        keys.sort_unstable();
        keys.dedup();
        self.cascade = keys;
        self
    }

    /// The keys the cascade reached (sorted).
    pub fn cascade(&self) -> &[Vec<u8>] {
        &self.cascade
    }

    /// Bytes the mark holds on the heap (its selector and cascade), for `CACHE.STATS` `memory`.
    pub fn heap_bytes(&self) -> u64 {
        let names = |v: &[Vec<u8>]| {
            v.iter()
                .map(|k| k.capacity() + std::mem::size_of::<Vec<u8>>())
                .sum::<usize>()
        };
        let selector = match &self.selector {
            Selector::Keys(v) | Selector::Tags(v) | Selector::Dependents(v) => names(v),
            Selector::Pattern(p) | Selector::Namespace(p) => p.capacity() * 2,
            Selector::All => 0,
        };
        let optional = |o: &Option<Vec<u8>>| o.as_ref().map_or(0, Vec::capacity);
        (selector
            + names(&self.cascade)
            + optional(&self.user)
            + optional(&self.context)
            + std::mem::size_of::<Mark>()) as u64
    }

    /// The same mark for one key: an entry it covered under another name (RENAME, MOVE, COPY)
    /// stays covered under its new one, whoever may delete that name (the mark's user could
    /// delete the old one: under IMMEDIATE the entry would be gone).
    pub fn alias(&self, name: &[u8]) -> Mark {
        let mut a = Mark::new(
            self.gen,
            Selector::Keys(vec![name.to_vec()]),
            0,
            None,
            self.context.clone(),
            self.created_ms,
            0,
        );
        a.seq = self.seq;
        // For the guard it removes nothing: under IMMEDIATE the entry was gone before it
        // arrived under the new name (the RENAME, MOVE or COPY found nothing), so nothing that
        // depends on the new name would have been reached.
        a.hops = 0;
        a
    }

    /// Whether the selector itself picks the entry `name`.
    pub fn picks(&self, name: &[u8], e: &Entry) -> bool {
        let has = |list: &[Vec<u8>], n: &[u8]| list.binary_search_by(|x| x[..].cmp(n)).is_ok();
        match &self.selector {
            Selector::All => true,
            Selector::Keys(keys) => has(keys, name),
            Selector::Tags(tags) => e.tags().any(|t| has(tags, t)),
            Selector::Dependents(res) => e.deps().any(|d| has(res, d)),
            Selector::Namespace(ns) => {
                name.len() > ns.len() && name.starts_with(ns) && name[ns.len()] == b':'
            }
            Selector::Pattern(_) => self.glob.as_ref().is_some_and(|g| g.matches(name)),
        }
    }

    /// Whether the mark covers the entry `e` under `name`, the user's permissions aside: it was
    /// born before the mark, and the selector picks it or the cascade reached it.
    pub fn covers(&self, name: &[u8], e: &Entry) -> bool {
        self.gen > e.born()
            && (self.picks(name, e) || self.cascade.binary_search_by(|x| x[..].cmp(name)).is_ok())
    }
}

/// The first mark (oldest first) that covers the entry `e` under `name` and whose user may
/// delete `name` (`allowed`), if any.
pub fn covering<'m>(
    marks: &'m [Mark],
    name: &[u8],
    e: &Entry,
    mut allowed: impl FnMut(&Mark) -> bool,
) -> Option<&'m Mark> {
    marks.iter().find(|m| m.covers(name, e) && allowed(m))
}

/// The marks that may have removed the entry `e` under `name` when it leaves by another way
/// than the reclaimer (DEL, expiry, an overwrite, RENAME, a flush): oldest first, the covering
/// marks up to the first whose user may delete every key, each with whether the guard's history
/// credits it (`credits`: it selects the entry and cascades; entries a mark's cascade reached
/// were recorded when it was made, those with hops left). Under IMMEDIATE the first of them whose
/// user may delete the entry removed it (the shell asks the users: `reclaim::credit`).
/// `arrived`: the newest mark's generation when the entry arrived under `name` covered
/// (`LazyDb::arrival`): the marks up to it removed nothing under this name.
pub fn candidates<'m>(
    marks: &'m [Mark],
    name: &[u8],
    e: &Entry,
    arrived: Option<u64>,
) -> Vec<(&'m Mark, bool)> {
    let mut out = Vec::new();
    for m in marks.iter().filter(|m| m.covers(name, e)) {
        out.push((m, credits(m, name, e, arrived)));
        if m.user.is_none() {
            break;
        }
    }
    out
}

/// Every credited one of the [`candidates`]: what the history is told when the users cannot be
/// asked (crediting more marks only makes the guard refuse more).
#[cfg(test)]
pub fn removers<'m>(
    marks: &'m [Mark],
    name: &[u8],
    e: &Entry,
    arrived: Option<u64>,
) -> Vec<&'m Mark> {
    candidates(marks, name, e, arrived)
        .into_iter()
        .filter(|(_, credited)| *credited)
        .map(|(m, _)| m)
        .collect()
}

/// Whether the guard's history credits the mark `m`, which covers the entry `e` under `name`,
/// with removing it there: its selector picks it, it cascades, and the entry did not arrive
/// under `name` after the mark (`arrived`, see `removers`).
pub fn credits(m: &Mark, name: &[u8], e: &Entry, arrived: Option<u64>) -> bool {
    m.hops > 0 && m.seq > 0 && arrived.is_none_or(|g| m.gen > g) && m.picks(name, e)
}

/// The LAZY state of one database.
#[derive(Debug, Default, Clone)]
pub struct LazyDb {
    /// Oldest first. Shared with readers, which check coverage without holding the state.
    marks: Arc<Vec<Mark>>,
    /// The reclaimer's walk, on a master.
    pub walk: Option<Walk>,
    /// Names a covered entry arrived under (RENAME, MOVE, COPY), with the newest mark's
    /// generation then: under IMMEDIATE the entry was gone before it arrived, so the marks up to
    /// that generation removed nothing under the new name (the guard asks; node-local, kept
    /// while such a mark is).
    arrivals: AHashMap<Vec<u8>, u64>,
}

/// A reclaimer's walk over one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// Marks up to this generation are done when the walk ends.
    pub upto: u64,
    /// The next entry id to look at; None once every id was seen.
    pub cursor: Option<u32>,
    /// Entries that arrived (RENAME, MOVE, COPY) with an old generation during the walk: looked
    /// at again before it ends.
    pub recheck: Vec<Vec<u8>>,
}

impl LazyDb {
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    pub fn marks(&self) -> Arc<Vec<Mark>> {
        Arc::clone(&self.marks)
    }

    /// The generation of the newest mark (0 without marks).
    pub fn newest(&self) -> u64 {
        self.marks.last().map_or(0, |m| m.gen)
    }

    /// Keys listed in the marks' cascades.
    pub fn cascade_count(&self) -> usize {
        self.marks.iter().map(|m| m.cascade.len()).sum()
    }

    /// Bytes the marks hold (and the names covered entries arrived under).
    pub fn heap_bytes(&self) -> u64 {
        let arrivals: usize = self
            .arrivals
            .keys()
            .map(|k| k.capacity() + std::mem::size_of::<(Vec<u8>, u64)>())
            .sum();
        self.marks.iter().map(Mark::heap_bytes).sum::<u64>() + arrivals as u64
    }

    /// The newest mark's generation when a covered entry arrived under `name`, if one did
    /// while a mark of then is still here.
    pub fn arrival(&self, name: &[u8]) -> Option<u64> {
        self.arrivals.get(name).copied()
    }

    pub fn add(&mut self, mark: Mark) {
        let marks = Arc::make_mut(&mut self.marks);
        let at = marks.partition_point(|m| m.gen <= mark.gen);
        marks.insert(at, mark);
    }

    /// An entry arrived under `name` keeping its generation (RENAME, MOVE, COPY): a walk under
    /// way looks at it again before it ends. `aliases` are the marks that picked it under its
    /// old name (see `Mark::alias`).
    pub fn arrived(&mut self, name: &[u8], born: u64, aliases: Vec<Mark>) {
        for m in aliases {
            // An entry renamed back and forth needs one alias per name and mark.
            let known = self
                .marks
                .iter()
                .any(|x| x.gen == m.gen && x.selector == m.selector && x.user == m.user);
            if !known {
                self.add(m);
            }
        }
        if born < self.newest() {
            self.arrivals.insert(name.to_vec(), self.newest());
            if let Some(w) = &mut self.walk {
                w.recheck.push(name.to_vec());
            }
        }
    }

    /// Starts a walk for the marks there are now, unless one is under way.
    pub fn walk(&mut self) -> &mut Walk {
        let upto = self.newest();
        self.walk.get_or_insert_with(|| Walk {
            upto,
            cursor: Some(0),
            recheck: Vec::new(),
        })
    }

    /// The marks up to `upto` are done: drop them. Returns how many marks were dropped.
    pub fn finish(&mut self, upto: u64) -> usize {
        let before = self.marks.len();
        Arc::make_mut(&mut self.marks).retain(|m| m.gen > upto);
        if self.walk.as_ref().is_some_and(|w| w.upto <= upto) {
            self.walk = None;
        }
        // An arrival matters while a mark up to its generation is here.
        match self.marks.first().map(|m| m.gen) {
            Some(oldest) => self.arrivals.retain(|_, g| *g >= oldest),
            None => self.arrivals.clear(),
        }
        before - self.marks.len()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.marks.len() as u64);
        for m in self.marks.iter() {
            put_mark(out, m);
        }
    }

    fn decode_from(r: &mut Reader, version: u8) -> Result<LazyDb, DecodeError> {
        let mut db = LazyDb::default();
        let marks = r.len()?;
        for _ in 0..marks {
            let m = read_mark(r, version)?;
            db.add(m);
        }
        if version == 1 {
            // Version 1 kept tombstones for a cascade judged at read time; its marks have no
            // cascade list (see `read_mark`). The tombstones are read past.
            let names = r.len()?;
            for _ in 0..names {
                r.bytes()?;
                let count = r.len()?;
                for _ in 0..count {
                    Entry::decode(r.bytes()?)?;
                    r.varint()?;
                }
            }
        }
        Ok(db)
    }
}

/// Serialises a mark (replication and the RDB aux data).
pub fn put_mark(out: &mut Vec<u8>, m: &Mark) {
    put_varint(out, m.gen);
    put_selector(out, &m.selector);
    put_varint(out, u64::from(m.depth));
    for field in [&m.user, &m.context] {
        match field {
            None => out.push(0),
            Some(b) => {
                out.push(1);
                put_bytes(out, b);
            }
        }
    }
    put_varint(out, m.created_ms as u64);
    put_varint(out, m.selected);
    put_varint(out, m.cascade.len() as u64);
    for k in &m.cascade {
        put_bytes(out, k);
    }
}

/// Reads a mark of encoding `version`. A version 1 mark has no cascade list: it covers what its
/// selector picks (the cascade of a mark saved by an older build is not known).
pub(crate) fn read_mark(r: &mut Reader, version: u8) -> Result<Mark, DecodeError> {
    let gen = r.varint()?;
    let selector = read_selector(r)?;
    let depth = u32::try_from(r.varint()?).map_err(|_| DecodeError::Corrupt("depth"))?;
    let mut optional = || -> Result<Option<Vec<u8>>, DecodeError> {
        match r.byte()? {
            0 => Ok(None),
            1 => Ok(Some(r.bytes()?.to_vec())),
            _ => Err(DecodeError::Corrupt("optional field flag")),
        }
    };
    let user = optional()?;
    let context = optional()?;
    let created_ms = r.varint()? as i64;
    let selected = r.varint()?;
    let mut cascade = Vec::new();
    if version >= 2 {
        let n = r.len()?;
        for _ in 0..n {
            cascade.push(r.bytes()?.to_vec());
        }
    }
    Ok(Mark::new(gen, selector, depth, user, context, created_ms, selected).with_cascade(cascade))
}

/// A mark as one buffer (`CACHE.PENDING MARK`).
pub fn encode_mark(m: &Mark) -> Vec<u8> {
    let mut out = vec![LAZY_VERSION];
    put_mark(&mut out, m);
    out
}

pub fn decode_mark(buf: &[u8]) -> Result<Mark, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let version = read_version(&mut r)?;
    let m = read_mark(&mut r, version)?;
    if r.pos != buf.len() {
        return Err(DecodeError::Corrupt("trailing bytes"));
    }
    Ok(m)
}

/// 2: marks carry their cascade, no tombstones. 1 (read only): tombstones, no cascade.
const LAZY_VERSION: u8 = 2;

fn read_version(r: &mut Reader) -> Result<u8, DecodeError> {
    match r.byte()? {
        v @ 1..=LAZY_VERSION => Ok(v),
        v if v > LAZY_VERSION => Err(DecodeError::NewerVersion(v)),
        _ => Err(DecodeError::Corrupt("version")),
    }
}

/// The LAZY state of the server: each database's marks, and the reclaimer's counters.
#[derive(Debug, Default, Clone)]
pub struct Lazy {
    dbs: Vec<LazyDb>,
    pub stats: LazyStats,
}

/// What the reclaimer did since the server started or the last CACHE.RESET (node-local, not
/// persisted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LazyStats {
    /// Entries it deleted.
    pub reclaimed: u64,
    /// Walks it finished.
    pub walks: u64,
    /// Steps it ran, and the longest one.
    pub steps: u64,
    pub max_step_us: u64,
}

impl Lazy {
    pub const fn new() -> Lazy {
        Lazy {
            dbs: Vec::new(),
            stats: LazyStats {
                reclaimed: 0,
                walks: 0,
                steps: 0,
                max_step_us: 0,
            },
        }
    }

    /// Marks, and keys in their cascades, over every database.
    pub fn totals(&self) -> (usize, usize) {
        self.dbs.iter().fold((0, 0), |(m, t), d| {
            (m + d.marks.len(), t + d.cascade_count())
        })
    }

    /// Bytes the marks hold over every database.
    pub fn heap_bytes(&self) -> u64 {
        self.dbs.iter().map(LazyDb::heap_bytes).sum()
    }

    pub fn db(&mut self, db: usize) -> &mut LazyDb {
        if self.dbs.len() <= db {
            self.dbs.resize_with(db + 1, LazyDb::default);
        }
        &mut self.dbs[db]
    }

    pub fn get(&self, db: usize) -> Option<&LazyDb> {
        self.dbs.get(db)
    }

    /// The database's marks, without creating its state.
    pub fn marks(&self, db: usize) -> Option<Arc<Vec<Mark>>> {
        self.dbs
            .get(db)
            .filter(|d| !d.is_empty())
            .map(LazyDb::marks)
    }

    /// Whether any database has marks.
    pub fn any(&self) -> bool {
        self.dbs.iter().any(|d| !d.is_empty())
    }

    /// Databases with marks, lowest first.
    pub fn busy(&self) -> impl Iterator<Item = (usize, &LazyDb)> {
        self.dbs.iter().enumerate().filter(|(_, d)| !d.is_empty())
    }

    pub fn clear(&mut self, db: Option<usize>) {
        match db {
            Some(d) => {
                if let Some(x) = self.dbs.get_mut(d) {
                    *x = LazyDb::default();
                }
            }
            None => self.dbs.clear(),
        }
    }

    /// Every walk under way starts again from the first id (the entries' ids were given anew).
    pub fn restart_walks(&mut self) {
        for w in self.dbs.iter_mut().filter_map(|d| d.walk.as_mut()) {
            w.cursor = Some(0);
        }
    }

    pub fn swap(&mut self, a: usize, b: usize) {
        self.db(a.max(b));
        self.dbs.swap(a, b);
    }

    pub fn is_empty(&self) -> bool {
        !self.any()
    }

    /// The aux-data form: the generation, then every database with marks.
    pub fn encode(&self, generation: u64) -> Vec<u8> {
        let mut out = vec![LAZY_VERSION];
        put_varint(&mut out, generation);
        let busy: Vec<(usize, &LazyDb)> = self.busy().collect();
        put_varint(&mut out, busy.len() as u64);
        for (db, d) in busy {
            put_varint(&mut out, db as u64);
            d.encode_into(&mut out);
        }
        out
    }

    /// Reads what `encode` wrote: the state and the generation.
    pub fn decode(buf: &[u8]) -> Result<(Lazy, u64), DecodeError> {
        let mut r = Reader { buf, pos: 0 };
        let version = read_version(&mut r)?;
        let generation = r.varint()?;
        let mut lazy = Lazy::new();
        let n = r.len()?;
        for _ in 0..n {
            let db = usize::try_from(r.varint()?)
                .ok()
                .filter(|&d| d < 1 << 20)
                .ok_or(DecodeError::Corrupt("db"))?;
            *lazy.db(db) = LazyDb::decode_from(&mut r, version)?;
        }
        if r.pos != buf.len() {
            return Err(DecodeError::Corrupt("trailing bytes"));
        }
        Ok((lazy, generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(tags: &[&str], deps: &[&str], born: u64) -> Box<Entry> {
        let mut e = Entry::new(
            b"v",
            tags.iter().map(|t| t.as_bytes()),
            deps.iter().map(|d| d.as_bytes()),
            None,
            0,
        )
        .unwrap();
        e.set_born(born);
        e
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn mark(gen: u64, sel: Selector, depth: u32) -> Mark {
        Mark::new(gen, sel, depth, None, None, 0, 0)
    }

    #[test]
    fn removers_are_the_covering_marks_that_select_and_cascade_up_to_an_unrestricted_one() {
        let e = entry(&["t"], &[], 1);
        let with = |gen: u64, sel: Selector, depth: u32, user: Option<&str>, cascade: &[&str]| {
            let mut m = Mark::new(gen, sel, depth, user.map(b), None, 0, 0)
                .with_cascade(cascade.iter().map(|k| b(k)).collect());
            m.seq = gen;
            m
        };
        let marks = vec![
            // Reached it through its cascade only: recorded when it was made.
            with(2, Selector::Keys(vec![b("other")]), 1, None, &["x"]),
            with(3, Selector::Tags(vec![b("t")]), 0, Some("narrow"), &[]),
            with(4, Selector::Tags(vec![b("t")]), 2, Some("narrow"), &[]),
            with(5, Selector::Keys(vec![b("x")]), 2, None, &[]),
            with(6, Selector::Tags(vec![b("t")]), 2, None, &[]),
        ];
        let seqs = |v: Vec<&Mark>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
        // Mark 2 covers x but has no user: nothing after it counts, and it selects nothing.
        assert_eq!(seqs(removers(&marks, b"x", &e, None)), Vec::<u64>::new());
        assert_eq!(seqs(removers(&marks[1..], b"x", &e, None)), vec![4, 5]);
        // Born after every mark: none.
        assert!(removers(&marks, b"x", &entry(&["t"], &[], 9), None).is_empty());
        // An alias (the entry renamed or copied while covered) removed nothing under its name.
        let alias = [marks[4].alias(b"y")];
        assert!(alias[0].covers(b"y", &e));
        assert!(removers(&alias, b"y", &e, None).is_empty());
        // Arrived under x when mark 4 was the newest: only the newer marks count there.
        assert_eq!(seqs(removers(&marks[1..], b"x", &e, Some(4))), vec![5]);
        // Every covering mark up to the unrestricted one, each with whether it is credited (3
        // selects without cascading: not).
        let c: Vec<(u64, bool)> = candidates(&marks[1..], b"x", &e, None)
            .iter()
            .map(|(m, credited)| (m.seq, *credited))
            .collect();
        assert_eq!(c, vec![(3, false), (4, true), (5, true)]);
    }

    #[test]
    fn arrivals_are_kept_while_a_mark_of_then_is() {
        let mut l = LazyDb::default();
        l.add(mark(3, Selector::Tags(vec![b("t")]), 1));
        l.arrived(b"new", 9, Vec::new());
        assert_eq!(l.arrival(b"new"), None, "born after every mark");
        l.arrived(b"new", 1, Vec::new());
        assert_eq!(l.arrival(b"new"), Some(3));
        l.add(mark(5, Selector::Tags(vec![b("u")]), 1));
        l.finish(3);
        assert_eq!(l.arrival(b"new"), None, "the marks of then are done");
    }

    #[test]
    fn selectors_cover_older_entries_only() {
        let entries = [
            ("user:1", entry(&["u"], &[], 1)),
            ("user:2", entry(&["u"], &[], 5)),
            ("post:1", entry(&["p"], &[], 1)),
            ("userx", entry(&[], &["db:users"], 1)),
        ];
        let cases: Vec<(Selector, Vec<&str>)> = vec![
            (Selector::Tags(vec![b("u")]), vec!["user:1"]),
            (Selector::Namespace(b("user")), vec!["user:1"]),
            (Selector::Pattern(b("user*")), vec!["user:1", "userx"]),
            (
                Selector::Keys(vec![b("post:1"), b("user:2")]),
                vec!["post:1"],
            ),
            (Selector::All, vec!["post:1", "user:1", "userx"]),
            (Selector::Dependents(vec![b("db:users")]), vec!["userx"]),
        ];
        for (sel, want) in cases {
            let marks = vec![mark(5, sel.clone(), 3)];
            let mut got: Vec<&str> = entries
                .iter()
                .filter(|(k, e)| covering(&marks, k.as_bytes(), e, |_| true).is_some())
                .map(|(k, _)| *k)
                .collect();
            got.sort();
            assert_eq!(got, want, "{sel:?}");
        }
    }

    #[test]
    fn the_cascade_is_the_list_made_with_the_mark() {
        let m = mark(5, Selector::Tags(vec![b("t")]), 3).with_cascade(vec![b("c"), b("a"), b("c")]);
        assert_eq!(m.cascade(), [b("a"), b("c")]);
        let old = entry(&[], &["x"], 4);
        assert!(m.covers(b"a", &old) && m.covers(b"c", &old));
        assert!(!m.covers(b"b", &old), "not reached, whatever it depends on");
        // Written again after the mark: fresh, even under a listed name.
        assert!(!m.covers(b"a", &entry(&[], &["x"], 5)));
    }

    #[test]
    fn permissions_limit_what_a_mark_covers() {
        let m = Mark::new(2, Selector::Tags(vec![b("t")]), 4, Some(b("u")), None, 0, 0);
        let marks = vec![m];
        let e = entry(&["t"], &[], 1);
        let allowed = |name: &'static [u8]| move |_: &Mark| !name.starts_with(b"other:");
        assert!(covering(&marks, b"app:1", &e, allowed(b"app:1")).is_some());
        assert!(covering(&marks, b"other:1", &e, allowed(b"other:1")).is_none());
    }

    #[test]
    fn an_alias_covers_the_new_name() {
        let e = entry(&[], &[], 1);
        let m = mark(2, Selector::Pattern(b("old:*")), 3);
        assert!(m.picks(b"old:1", &e) && !m.picks(b"new:1", &e));
        let a = m.alias(b"new:1");
        assert!(a.picks(b"new:1", &e) && !a.picks(b"new:2", &e));
        assert_eq!((a.gen, a.depth), (2, 0), "an alias covers its one key");
        let mut lazy = LazyDb::default();
        lazy.add(m);
        lazy.arrived(b"new:1", 1, vec![a.clone()]);
        assert_eq!(lazy.marks().len(), 2);
        // Renamed away and back: no second alias for the same name.
        lazy.arrived(b"new:1", 1, vec![a]);
        assert_eq!(lazy.marks().len(), 2);
    }

    #[test]
    fn walks_and_finish() {
        let mut lazy = LazyDb::default();
        lazy.add(mark(3, Selector::All, 0));
        lazy.add(mark(1, Selector::All, 0));
        assert_eq!(lazy.newest(), 3);
        assert_eq!(lazy.walk().upto, 3);
        lazy.add(mark(4, Selector::All, 0));
        lazy.arrived(b"k", 2, Vec::new());
        lazy.arrived(b"fresh", 4, Vec::new());
        assert_eq!(lazy.walk().recheck, vec![b("k")]);
        assert_eq!(lazy.walk().upto, 3, "a walk under way keeps its end");
        assert_eq!(lazy.finish(3), 2);
        assert!(lazy.walk.is_none());
        assert_eq!(lazy.walk().upto, 4);
        assert_eq!(lazy.finish(4), 1);
        assert!(lazy.is_empty());
    }

    #[test]
    fn encoding_round_trip() {
        let mut lazy = Lazy::new();
        let m = Mark::new(
            7,
            Selector::Tags(vec![b("b"), b("a")]),
            3,
            Some(b("alice")),
            Some(b("ctx")),
            1_700_000_000_000,
            12,
        )
        .with_cascade(vec![b("dep:2"), b("dep:1")]);
        let back = decode_mark(&encode_mark(&m)).unwrap();
        assert_eq!(back.selector, m.selector);
        assert_eq!(back.cascade(), m.cascade());
        lazy.db(2).add(m);
        let bytes = lazy.encode(9);
        let (back, generation) = Lazy::decode(&bytes).unwrap();
        assert_eq!(generation, 9);
        assert_eq!(back.encode(9), bytes);
        let marks = back.marks(2).unwrap();
        assert_eq!(
            (marks[0].gen, marks[0].depth, marks[0].selected),
            (7, 3, 12)
        );
        assert_eq!(marks[0].cascade(), [b("dep:1"), b("dep:2")]);
        assert_eq!(marks[0].user.as_deref(), Some(&b"alice"[..]));
        assert!(back.marks(0).is_none());
        assert_eq!(back.totals(), (1, 2));
        for cut in 0..bytes.len() {
            assert!(Lazy::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn version_1_state_still_loads() {
        // What the previous build saved: one mark in db 0 and one tombstone.
        let mut v1 = vec![1u8];
        put_varint(&mut v1, 9); // generation
        put_varint(&mut v1, 1); // databases
        put_varint(&mut v1, 0); // db 0
        put_varint(&mut v1, 1); // marks
        put_varint(&mut v1, 7);
        put_selector(&mut v1, &Selector::Tags(vec![b("t")]));
        put_varint(&mut v1, 2);
        v1.extend([0, 0]); // no user, no context
        put_varint(&mut v1, 0);
        put_varint(&mut v1, 1);
        put_varint(&mut v1, 1); // tombstone names
        put_bytes(&mut v1, b"gone");
        put_varint(&mut v1, 1);
        put_bytes(&mut v1, &entry(&["t"], &[], 3).encode());
        put_varint(&mut v1, 7);
        let (back, generation) = Lazy::decode(&v1).unwrap();
        assert_eq!(generation, 9);
        let marks = back.marks(0).unwrap();
        assert_eq!((marks[0].gen, marks[0].depth), (7, 2));
        assert!(marks[0].cascade().is_empty());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Lazy::decode(&bytes);
            let _ = decode_mark(&bytes);
        }
    }
}
