//! The LAZY strategy, without a walk over the entries it covers.
//!
//! Every entry carries the generation it was written at (`Entry::born`). A LAZY invalidation
//! adds a *mark* (its selector, cascade depth and user) with a new generation; a mark covers an
//! entry born before it that its selector picks, or that depends (up to the mark's depth, through
//! entries born before it) on a key the mark covers. Covered entries read as misses at once. A
//! reclaimer walks the database in small steps and deletes what the marks cover; once a walk
//! that started after a mark ends, nothing is covered by it any more and the mark is dropped.
//!
//! An entry that leaves while marks exist (DEL, expiry, overwrite, RENAME's source) keeps a
//! *tombstone* (its tags, dependencies and generations) when other entries depend on its key, so
//! that its dependents stay covered through it. A tombstone only counts for the marks that
//! existed when the entry left.
//!
//! Coverage never grows for existing marks: writing an entry again gives it a new generation,
//! CACHE.TAG/DEPEND renew it too (the entry was not covered, or they would have failed), and a
//! tombstone is frozen. So one walk finds everything its marks cover.

use std::rc::Rc;
use std::sync::Arc;

use ahash::AHashMap;
use smallvec::SmallVec;

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
    /// Cascade hops (already resolved from `cache.max-cascade-depth`).
    pub depth: u32,
    /// The ACL user who made it: it only covers keys that user may delete.
    pub user: Option<Vec<u8>>,
    pub context: Option<Vec<u8>>,
    pub created_ms: i64,
    /// The entries its selector picked when it was made (the command's reply).
    pub selected: u64,
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
            glob,
        }
    }

    /// The same mark for one key: an entry it picked under another name (RENAME, MOVE, COPY)
    /// stays covered under its new one.
    pub fn alias(&self, name: &[u8]) -> Mark {
        Mark::new(
            self.gen,
            Selector::Keys(vec![name.to_vec()]),
            self.depth,
            self.user.clone(),
            self.context.clone(),
            self.created_ms,
            0,
        )
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
}

/// Something under a key name that coverage looks at: the live entry, or a tombstone.
#[derive(Debug)]
pub struct Node {
    /// Tags and dependencies (the value is left out) and the generation it was born at.
    pub entry: Box<Entry>,
    /// Marks newer than this do not see it (a tombstone: the generation it left at).
    pub until: u64,
}

impl Clone for Node {
    fn clone(&self) -> Node {
        Node {
            entry: (*self.entry).to_owned(),
            until: self.until,
        }
    }
}

/// The world coverage looks into: what is under a name, and the users' permissions.
pub trait Graph {
    /// The live entry under `name` (if any) and its tombstones.
    fn nodes(&mut self, name: &[u8]) -> SmallVec<[Node; 2]>;
    /// Whether the mark's user may delete `name`.
    fn allowed(&mut self, mark: &Mark, name: &[u8]) -> bool;
}

/// The first mark (oldest first) that covers the entry `e` under `name`, if any.
pub fn covering<'m, G: Graph>(
    marks: &'m [Mark],
    name: &[u8],
    e: &Entry,
    graph: &mut G,
) -> Option<&'m Mark> {
    let mut memo = Memo {
        graph,
        nodes: AHashMap::new(),
    };
    marks.iter().find(|m| {
        m.gen > e.born() && {
            // Made when a dependency is first followed (most entries have none).
            let mut seen = None;
            within(m, name, e, m.depth, &mut memo, &mut seen) && memo.graph.allowed(m, name)
        }
    })
}

/// The graph as one coverage question sees it: every mark follows the same dependencies, so
/// each name's nodes are asked for once (the server opens a key for it) and then shared.
struct Memo<'g, G: Graph> {
    graph: &'g mut G,
    nodes: AHashMap<Vec<u8>, Rc<SmallVec<[Node; 2]>>>,
}

impl<G: Graph> Memo<'_, G> {
    fn nodes(&mut self, name: &[u8]) -> Rc<SmallVec<[Node; 2]>> {
        if let Some(n) = self.nodes.get(name) {
            return Rc::clone(n);
        }
        let n = Rc::new(self.graph.nodes(name));
        self.nodes.insert(name.to_vec(), Rc::clone(&n));
        n
    }
}

/// Whether `m` picks `e`, or `e` depends within `budget` hops on a key `m` covers. `seen` holds
/// the largest budget each name was explored with (cycles and diamonds end).
fn within<G: Graph>(
    m: &Mark,
    name: &[u8],
    e: &Entry,
    budget: u32,
    memo: &mut Memo<'_, G>,
    seen: &mut Option<AHashMap<Vec<u8>, u32>>,
) -> bool {
    if m.picks(name, e) {
        return true;
    }
    if budget == 0 {
        return false;
    }
    for dep in e.deps() {
        let seen_here = seen.get_or_insert_with(AHashMap::new);
        if seen_here.get(dep).is_some_and(|&b| b >= budget) {
            continue;
        }
        seen_here.insert(dep.to_vec(), budget);
        for n in memo.nodes(dep).iter() {
            let visible = n.entry.born() < m.gen && m.gen <= n.until;
            if visible
                && within(m, dep, &n.entry, budget - 1, memo, seen)
                && memo.graph.allowed(m, dep)
            {
                return true;
            }
        }
    }
    false
}

/// The LAZY state of one database.
#[derive(Debug, Default, Clone)]
pub struct LazyDb {
    /// Oldest first. Shared with readers, which check coverage without holding the state.
    marks: Arc<Vec<Mark>>,
    tombstones: AHashMap<Vec<u8>, SmallVec<[Node; 1]>>,
    /// The reclaimer's walk, on a master.
    pub walk: Option<Walk>,
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

    pub fn tombstone_count(&self) -> usize {
        self.tombstones.values().map(SmallVec::len).sum()
    }

    pub fn add(&mut self, mark: Mark) {
        let marks = Arc::make_mut(&mut self.marks);
        let at = marks.partition_point(|m| m.gen <= mark.gen);
        marks.insert(at, mark);
    }

    /// An entry left under `name` at generation `now`: keep what coverage needs of it when a
    /// mark may cover it and another entry depends on its key.
    pub fn retire(&mut self, name: &[u8], e: &Entry, depended_on: bool, now: u64) {
        if !depended_on || e.born() >= self.newest() {
            return;
        }
        if let Some(entry) = e.skeleton() {
            self.tombstones
                .entry(name.to_vec())
                .or_default()
                .push(Node { entry, until: now });
        }
    }

    pub fn tombstones(&self, name: &[u8]) -> impl Iterator<Item = &Node> {
        self.tombstones.get(name).into_iter().flatten()
    }

    /// An entry arrived under `name` keeping its generation (RENAME, MOVE, COPY): a walk under
    /// way looks at it again before it ends. `aliases` are the marks that picked it under its
    /// old name (see `Mark::alias`).
    pub fn arrived(&mut self, name: &[u8], born: u64, aliases: Vec<Mark>) {
        for m in aliases {
            self.add(m);
        }
        if born < self.newest() {
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

    /// The marks up to `upto` are done: drop them, and the tombstones no remaining mark sees.
    /// Returns how many marks were dropped.
    pub fn finish(&mut self, upto: u64) -> usize {
        let before = self.marks.len();
        Arc::make_mut(&mut self.marks).retain(|m| m.gen > upto);
        let marks = &self.marks;
        self.tombstones.retain(|_, nodes| {
            nodes.retain(|n| {
                marks
                    .iter()
                    .any(|m| n.entry.born() < m.gen && m.gen <= n.until)
            });
            !nodes.is_empty()
        });
        if self.walk.as_ref().is_some_and(|w| w.upto <= upto) {
            self.walk = None;
        }
        before - self.marks.len()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.marks.len() as u64);
        for m in self.marks.iter() {
            put_mark(out, m);
        }
        put_varint(out, self.tombstones.len() as u64);
        let mut names: Vec<&Vec<u8>> = self.tombstones.keys().collect();
        names.sort();
        for name in names {
            put_bytes(out, name);
            let nodes = &self.tombstones[name];
            put_varint(out, nodes.len() as u64);
            for n in nodes {
                put_bytes(out, &n.entry.encode());
                put_varint(out, n.until);
            }
        }
    }

    fn decode_from(r: &mut Reader) -> Result<LazyDb, DecodeError> {
        let mut db = LazyDb::default();
        let marks = r.len()?;
        for _ in 0..marks {
            let m = read_mark(r)?;
            db.add(m);
        }
        let names = r.len()?;
        for _ in 0..names {
            let name = r.bytes()?.to_vec();
            let count = r.len()?;
            let mut nodes = SmallVec::new();
            for _ in 0..count {
                let entry = Entry::decode(r.bytes()?)?;
                let until = r.varint()?;
                nodes.push(Node { entry, until });
            }
            db.tombstones.insert(name, nodes);
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
}

pub(crate) fn read_mark(r: &mut Reader) -> Result<Mark, DecodeError> {
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
    Ok(Mark::new(
        gen, selector, depth, user, context, created_ms, selected,
    ))
}

/// A mark as one buffer (`CACHE.PENDING MARK`).
pub fn encode_mark(m: &Mark) -> Vec<u8> {
    let mut out = vec![LAZY_VERSION];
    put_mark(&mut out, m);
    out
}

pub fn decode_mark(buf: &[u8]) -> Result<Mark, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    read_version(&mut r)?;
    let m = read_mark(&mut r)?;
    if r.pos != buf.len() {
        return Err(DecodeError::Corrupt("trailing bytes"));
    }
    Ok(m)
}

const LAZY_VERSION: u8 = 1;

fn read_version(r: &mut Reader) -> Result<(), DecodeError> {
    match r.byte()? {
        LAZY_VERSION => Ok(()),
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

    /// Marks and tombstones over every database.
    pub fn totals(&self) -> (usize, usize) {
        self.dbs.iter().fold((0, 0), |(m, t), d| {
            (m + d.marks.len(), t + d.tombstone_count())
        })
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
        read_version(&mut r)?;
        let generation = r.varint()?;
        let mut lazy = Lazy::new();
        let n = r.len()?;
        for _ in 0..n {
            let db = usize::try_from(r.varint()?)
                .ok()
                .filter(|&d| d < 1 << 20)
                .ok_or(DecodeError::Corrupt("db"))?;
            *lazy.db(db) = LazyDb::decode_from(&mut r)?;
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

    /// A database in memory: live entries by name, tombstones from a LazyDb, permissions by
    /// prefix.
    struct World<'a> {
        live: AHashMap<Vec<u8>, Box<Entry>>,
        lazy: &'a LazyDb,
        denied_prefix: Option<&'static [u8]>,
        /// Names asked for, in order.
        asked: Vec<Vec<u8>>,
    }

    impl Graph for World<'_> {
        fn nodes(&mut self, name: &[u8]) -> SmallVec<[Node; 2]> {
            self.asked.push(name.to_vec());
            let mut v: SmallVec<[Node; 2]> = self
                .live
                .get(name)
                .map(|e| Node {
                    entry: (**e).to_owned(),
                    until: u64::MAX,
                })
                .into_iter()
                .collect();
            v.extend(self.lazy.tombstones(name).cloned());
            v
        }

        fn allowed(&mut self, m: &Mark, name: &[u8]) -> bool {
            m.user.is_none() || self.denied_prefix.is_none_or(|p| !name.starts_with(p))
        }
    }

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

    fn world(entries: &[(&str, Box<Entry>)], lazy: &LazyDb) -> World<'static> {
        // The tests keep `lazy` alive for the world's lifetime.
        let lazy: &'static LazyDb = Box::leak(Box::new(lazy.clone()));
        World {
            live: entries
                .iter()
                .map(|(k, e)| (b(k), (**e).to_owned()))
                .collect(),
            lazy,
            denied_prefix: None,
            asked: Vec::new(),
        }
    }

    fn covered(marks: &[Mark], w: &mut World, name: &str) -> bool {
        let e = Entry::to_owned(w.live.get(name.as_bytes()).unwrap());
        covering(marks, name.as_bytes(), &e, w).is_some()
    }

    #[test]
    fn coverage_asks_for_each_dependency_once_whatever_the_marks() {
        let entries = [
            ("page", entry(&[], &["a", "b"], 1)),
            ("a", entry(&[], &["b"], 1)),
            ("b", entry(&["t"], &[], 1)),
        ];
        let lazy = LazyDb::default();
        let mut w = world(&entries, &lazy);
        // Three marks that cover nothing here, then one that covers b (and through it page).
        let mut marks: Vec<Mark> = (2..5)
            .map(|g| mark(g, Selector::Tags(vec![b("none")]), 16))
            .collect();
        assert!(!covered(&marks, &mut w, "page"));
        let mut asked = std::mem::take(&mut w.asked);
        asked.sort();
        assert_eq!(asked, [b("a"), b("b")], "each name once for three marks");
        marks.push(mark(5, Selector::Tags(vec![b("t")]), 16));
        assert!(covered(&marks, &mut w, "page"));
        assert_eq!(w.asked.len(), 2);
    }

    #[test]
    fn selectors_cover_older_entries_only() {
        let entries = [
            ("user:1", entry(&["u"], &[], 1)),
            ("user:2", entry(&["u"], &[], 5)),
            ("post:1", entry(&["p"], &[], 1)),
            ("userx", entry(&[], &["db:users"], 1)),
        ];
        let lazy = LazyDb::default();
        let mut w = world(&entries, &lazy);
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
                .map(|(k, _)| *k)
                .filter(|k| covered(&marks, &mut w, k))
                .collect();
            got.sort();
            assert_eq!(got, want, "{sel:?}");
        }
    }

    #[test]
    fn cascade_follows_dependencies_within_depth() {
        // a <- b <- c <- d (each depends on the previous key), e depends on a resource.
        let entries = [
            ("a", entry(&["t"], &[], 1)),
            ("b", entry(&[], &["a"], 1)),
            ("c", entry(&[], &["b"], 1)),
            ("d", entry(&[], &["c"], 1)),
            ("e", entry(&[], &["elsewhere"], 1)),
        ];
        let lazy = LazyDb::default();
        let mut w = world(&entries, &lazy);
        for (depth, want) in [(0, 1), (1, 2), (2, 3), (16, 4)] {
            let marks = vec![mark(2, Selector::Tags(vec![b("t")]), depth)];
            let n = ["a", "b", "c", "d", "e"]
                .iter()
                .filter(|k| covered(&marks, &mut w, k))
                .count();
            assert_eq!(n, want, "depth {depth}");
        }
        // An entry written again after the mark does not pass the cascade on.
        w.live.insert(b("b"), entry(&[], &["a"], 2));
        let marks = vec![mark(2, Selector::Tags(vec![b("t")]), 16)];
        assert!(covered(&marks, &mut w, "a"));
        assert!(!covered(&marks, &mut w, "b"));
        assert!(!covered(&marks, &mut w, "c"));
    }

    #[test]
    fn cycles_terminate() {
        let entries = [
            ("x", entry(&[], &["y"], 1)),
            ("y", entry(&[], &["x"], 1)),
            ("z", entry(&["t"], &["x"], 1)),
        ];
        let lazy = LazyDb::default();
        let mut w = world(&entries, &lazy);
        let marks = vec![mark(2, Selector::Tags(vec![b("t")]), 16)];
        assert!(!covered(&marks, &mut w, "x"));
        assert!(!covered(&marks, &mut w, "y"));
        assert!(covered(&marks, &mut w, "z"));
        let marks = vec![mark(2, Selector::Keys(vec![b("x")]), 16)];
        assert!(covered(&marks, &mut w, "y"));
        assert!(covered(&marks, &mut w, "z"));
    }

    #[test]
    fn tombstones_keep_dependents_covered_for_older_marks_only() {
        let a = entry(&["t"], &[], 1);
        let mut lazy = LazyDb::default();
        lazy.add(mark(2, Selector::Tags(vec![b("t")]), 4));
        // `a` is deleted (generation 2) before the reclaimer gets to it.
        lazy.retire(b"a", &a, true, 2);
        assert_eq!(lazy.tombstone_count(), 1);
        let entries = [("b", entry(&[], &["a"], 1))];
        let mut w = world(&entries, &lazy);
        let marks = lazy.marks();
        assert!(covered(&marks, &mut w, "b"));
        // A later mark on the same tag does not see the tombstone.
        let later = vec![mark(3, Selector::Tags(vec![b("t")]), 4)];
        assert!(!covered(&later, &mut w, "b"));
        // Nothing is kept for an entry nobody depends on, or born after every mark.
        lazy.retire(b"q", &a, false, 2);
        lazy.retire(b"r", &entry(&["t"], &[], 2), true, 2);
        assert_eq!(lazy.tombstone_count(), 1);
        // Once the marks are done, the tombstones go.
        assert_eq!(lazy.finish(2), 1);
        assert!(lazy.is_empty());
        assert_eq!(lazy.tombstone_count(), 0);
    }

    #[test]
    fn permissions_limit_what_a_mark_covers() {
        let entries = [
            ("app:1", entry(&["t"], &[], 1)),
            ("other:1", entry(&["t"], &[], 1)),
            ("app:2", entry(&[], &["other:1"], 1)),
        ];
        let lazy = LazyDb::default();
        let mut w = world(&entries, &lazy);
        w.denied_prefix = Some(b"other:");
        let m = Mark::new(2, Selector::Tags(vec![b("t")]), 4, Some(b("u")), None, 0, 0);
        let marks = vec![m];
        assert!(covered(&marks, &mut w, "app:1"));
        assert!(!covered(&marks, &mut w, "other:1"));
        // The cascade does not pass through a key the user may not delete.
        assert!(!covered(&marks, &mut w, "app:2"));
    }

    #[test]
    fn an_alias_covers_the_new_name() {
        let e = entry(&[], &[], 1);
        let m = mark(2, Selector::Pattern(b("old:*")), 3);
        assert!(m.picks(b"old:1", &e) && !m.picks(b"new:1", &e));
        let a = m.alias(b"new:1");
        assert!(a.picks(b"new:1", &e) && !a.picks(b"new:2", &e));
        assert_eq!((a.gen, a.depth), (2, 3));
        let mut lazy = LazyDb::default();
        lazy.add(m);
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
        );
        assert_eq!(decode_mark(&encode_mark(&m)).unwrap().selector, m.selector);
        lazy.db(2).add(m);
        lazy.db(2)
            .retire(b"gone", &entry(&["a"], &["r"], 3), true, 7);
        let bytes = lazy.encode(9);
        let (back, generation) = Lazy::decode(&bytes).unwrap();
        assert_eq!(generation, 9);
        assert_eq!(back.encode(9), bytes);
        let marks = back.marks(2).unwrap();
        assert_eq!(
            (marks[0].gen, marks[0].depth, marks[0].selected),
            (7, 3, 12)
        );
        assert_eq!(marks[0].user.as_deref(), Some(&b"alice"[..]));
        assert!(back.marks(0).is_none());
        for cut in 0..bytes.len() {
            assert!(Lazy::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Lazy::decode(&bytes);
            let _ = decode_mark(&bytes);
        }
    }
}
