//! The derived per-database index: tag -> entries, resource -> dependent entries, and the ordered
//! set of entry keys for prefix and pattern lookups. Names are interned; entries are linked by
//! small integer ids. Everything here can be rebuilt from the entries themselves.

use std::collections::BTreeMap;
use std::ops::Bound;

use ahash::{AHashMap, AHashSet};
use smallvec::SmallVec;

use super::glob::Glob;
use super::show;

pub type KeyId = u32;
type NameId = u32;
type Links = SmallVec<[NameId; 4]>;

/// What an invalidation (or its dry run) selects before the cascade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Keys(Vec<Vec<u8>>),
    Tags(Vec<Vec<u8>>),
    Pattern(Vec<u8>),
    Namespace(Vec<u8>),
    All,
    Dependents(Vec<Vec<u8>>),
}

impl Selector {
    /// Lowercase selector type, as events and statistics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Selector::Keys(_) => "key",
            Selector::Tags(_) => "tag",
            Selector::Pattern(_) => "pattern",
            Selector::Namespace(_) => "namespace",
            Selector::All => "all",
            Selector::Dependents(_) => "dependents",
        }
    }
}

/// Interned names (tags or resources), each with the set of entries linked to it. A name lives
/// exactly as long as at least one entry links to it.
#[derive(Default, Debug)]
struct Groups {
    ids: AHashMap<Box<[u8]>, NameId>,
    slots: Vec<Option<Group>>,
    free: Vec<NameId>,
}

#[derive(Debug)]
struct Group {
    name: Box<[u8]>,
    members: AHashSet<KeyId>,
}

impl Groups {
    fn link(&mut self, name: &[u8], key: KeyId) -> NameId {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let group = Group {
                    name: name.into(),
                    members: AHashSet::new(),
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.slots[id as usize] = Some(group);
                        id
                    }
                    None => {
                        self.slots.push(Some(group));
                        (self.slots.len() - 1) as NameId
                    }
                };
                self.ids.insert(name.into(), id);
                id
            }
        };
        if let Some(g) = self.slots[id as usize].as_mut() {
            g.members.insert(key);
        }
        id
    }

    fn unlink(&mut self, id: NameId, key: KeyId) {
        let Some(g) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        g.members.remove(&key);
        if g.members.is_empty() {
            self.ids.remove(&g.name);
            self.slots[id as usize] = None;
            self.free.push(id);
        }
    }

    fn members(&self, name: &[u8]) -> Option<&AHashSet<KeyId>> {
        let id = *self.ids.get(name)?;
        self.slots[id as usize].as_ref().map(|g| &g.members)
    }

    fn name(&self, id: NameId) -> &[u8] {
        self.slots[id as usize].as_ref().map_or(&[], |g| &g.name)
    }

    fn iter(&self) -> impl Iterator<Item = &Group> {
        self.slots.iter().flatten()
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

#[derive(Debug)]
struct KeySlot {
    name: Box<[u8]>,
    tags: Links,
    deps: Links,
}

/// The index of one database.
#[derive(Default, Debug)]
pub struct DbIndex {
    keys: BTreeMap<Box<[u8]>, KeyId>,
    slots: Vec<Option<KeySlot>>,
    free: Vec<KeyId>,
    tags: Groups,
    resources: Groups,
}

/// Sorted names (tags or resources).
pub type NameList = Vec<Vec<u8>>;

/// An entry as the index sees it: its key, tags and dependencies (sorted).
pub type Facts = (Vec<u8>, NameList, NameList);

impl DbIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of distinct tags in use.
    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// Number of distinct resources some entry depends on.
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.keys.contains_key(key)
    }

    /// Adds (or replaces) an entry with its tags and dependencies.
    pub fn insert<T: AsRef<[u8]>, D: AsRef<[u8]>>(&mut self, key: &[u8], tags: &[T], deps: &[D]) {
        self.remove(key);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as KeyId
            }
        };
        let mut slot = KeySlot {
            name: key.into(),
            tags: Links::new(),
            deps: Links::new(),
        };
        for t in tags {
            let tid = self.tags.link(t.as_ref(), id);
            if !slot.tags.contains(&tid) {
                slot.tags.push(tid);
            }
        }
        for d in deps {
            let rid = self.resources.link(d.as_ref(), id);
            if !slot.deps.contains(&rid) {
                slot.deps.push(rid);
            }
        }
        self.slots[id as usize] = Some(slot);
        self.keys.insert(key.into(), id);
    }

    /// Drops an entry and every link it had. Returns whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let Some(id) = self.keys.remove(key) else {
            return false;
        };
        if let Some(slot) = self.slots[id as usize].take() {
            for t in slot.tags {
                self.tags.unlink(t, id);
            }
            for d in slot.deps {
                self.resources.unlink(d, id);
            }
        }
        self.free.push(id);
        true
    }

    /// Moves an entry's links to a new key name (replacing whatever the new name had).
    pub fn rename(&mut self, from: &[u8], to: &[u8]) -> bool {
        let Some((tags, deps)) = self.links_of(from) else {
            return false;
        };
        self.remove(from);
        self.insert(to, &tags, &deps);
        true
    }

    pub fn clear(&mut self) {
        *self = DbIndex::default();
    }

    fn slot(&self, id: KeyId) -> Option<&KeySlot> {
        self.slots.get(id as usize).and_then(Option::as_ref)
    }

    /// Tags and dependencies of an indexed entry, sorted.
    pub fn links_of(&self, key: &[u8]) -> Option<(NameList, NameList)> {
        let slot = self.slot(*self.keys.get(key)?)?;
        let names = |g: &Groups, l: &Links| {
            let mut v: Vec<Vec<u8>> = l.iter().map(|&i| g.name(i).to_vec()).collect();
            v.sort();
            v
        };
        Some((
            names(&self.tags, &slot.tags),
            names(&self.resources, &slot.deps),
        ))
    }

    /// Keys of the entries that depend on `resource`, sorted.
    pub fn dependents_of(&self, resource: &[u8]) -> Vec<Vec<u8>> {
        let mut v = self.names_of(
            self.resources
                .members(resource)
                .into_iter()
                .flatten()
                .copied(),
        );
        v.sort();
        v
    }

    fn names_of(&self, ids: impl Iterator<Item = KeyId>) -> Vec<Vec<u8>> {
        ids.filter_map(|id| self.slot(id).map(|s| s.name.to_vec()))
            .collect()
    }

    fn prefix_ids<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = (&'a [u8], KeyId)> + 'a {
        self.keys
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, &id)| (&k[..], id))
    }

    /// The keys of the entries a selector picks, before any cascade (each once).
    pub fn select(&self, sel: &Selector) -> Vec<Vec<u8>> {
        let ids: Vec<KeyId> = match sel {
            Selector::Keys(keys) => {
                let mut seen = AHashSet::new();
                keys.iter()
                    .filter_map(|k| self.keys.get(&k[..]).copied())
                    .filter(|id| seen.insert(*id))
                    .collect()
            }
            Selector::Tags(names) => self.union(&self.tags, names),
            Selector::Dependents(names) => self.union(&self.resources, names),
            Selector::All => self.keys.values().copied().collect(),
            Selector::Namespace(ns) => {
                let mut prefix = ns.clone();
                prefix.push(b':');
                self.prefix_ids(&prefix).map(|(_, id)| id).collect()
            }
            Selector::Pattern(p) => {
                let glob = Glob::new(p);
                if glob.is_literal() {
                    self.keys
                        .get(glob.literal_prefix())
                        .copied()
                        .into_iter()
                        .collect()
                } else {
                    self.prefix_ids(glob.literal_prefix())
                        .filter(|(k, _)| glob.matches(k))
                        .map(|(_, id)| id)
                        .collect()
                }
            }
        };
        self.names_of(ids.into_iter())
    }

    fn union(&self, groups: &Groups, names: &[Vec<u8>]) -> Vec<KeyId> {
        let mut seen = AHashSet::new();
        let mut out = Vec::new();
        for n in names {
            for &id in groups.members(n).into_iter().flatten() {
                if seen.insert(id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Keys of the entries that depend on any of `resources` (each once).
    pub fn dependents_of_all(&self, resources: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let ids = self.union(&self.resources, resources);
        self.names_of(ids.into_iter())
    }

    /// Every entry the selector reaches with the cascade, when every entry counts as live.
    pub fn resolve(&self, sel: &Selector, depth: u32) -> Vec<Vec<u8>> {
        let depth = if matches!(sel, Selector::All) {
            0
        } else {
            depth
        };
        cascade(
            self.select(sel),
            depth,
            |keys| self.dependents_of_all(keys),
            |_| true,
        )
    }

    /// `(tag, entries)` for tags matching the glob, largest first, then by name.
    pub fn tag_sizes(&self, pattern: Option<&Glob>) -> Vec<(Vec<u8>, usize)> {
        let mut v: Vec<(Vec<u8>, usize)> = self
            .tags
            .iter()
            .filter(|g| pattern.is_none_or(|p| p.matches(&g.name)))
            .map(|g| (g.name.to_vec(), g.members.len()))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Number of entries with at least one tag.
    pub fn tagged_entries(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| !s.tags.is_empty())
            .count()
    }

    /// Number of (entry, resource) dependency links.
    pub fn dependency_edges(&self) -> usize {
        self.slots.iter().flatten().map(|s| s.deps.len()).sum()
    }

    /// All entries with their sorted tags and dependencies, sorted by key.
    pub fn facts(&self) -> Vec<Facts> {
        self.keys
            .keys()
            .filter_map(|k| self.links_of(k).map(|(t, d)| (k.to_vec(), t, d)))
            .collect()
    }

    /// Checks the index against itself: every link is mirrored both ways, no name outlives its
    /// last entry, and the key map agrees with the slots.
    pub fn check_internal(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, &id) in &self.keys {
            match self.slot(id) {
                Some(s) if s.name == *k => {}
                _ => out.push(format!("key {} points to a wrong slot", show(k))),
            }
        }
        let live = self.slots.iter().flatten().count();
        if live != self.keys.len() {
            out.push(format!("{live} key slots but {} keys", self.keys.len()));
        }
        for (what, groups, pick) in [
            (
                "tag",
                &self.tags,
                (|s: &KeySlot| &s.tags) as fn(&KeySlot) -> &Links,
            ),
            ("resource", &self.resources, |s: &KeySlot| &s.deps),
        ] {
            for (gid, g) in groups.slots.iter().enumerate() {
                let Some(g) = g else { continue };
                if g.members.is_empty() {
                    out.push(format!("{what} {} has no entries", show(&g.name)));
                }
                if groups.ids.get(&g.name) != Some(&(gid as NameId)) {
                    out.push(format!("{what} {} is not interned", show(&g.name)));
                }
                for &m in &g.members {
                    match self.slot(m) {
                        Some(s) if pick(s).contains(&(gid as NameId)) => {}
                        Some(s) => out.push(format!(
                            "{what} {} lists {}, which does not carry it",
                            show(&g.name),
                            show(&s.name)
                        )),
                        None => out.push(format!("{what} {} lists a missing entry", show(&g.name))),
                    }
                }
            }
            for s in self.slots.iter().flatten() {
                for &gid in pick(s) {
                    let listed = groups.slots.get(gid as usize).and_then(Option::as_ref);
                    if !listed.is_some_and(|g| g.members.contains(&self.keys[&s.name])) {
                        out.push(format!("{} is not listed under its {what}", show(&s.name)));
                    }
                }
            }
        }
        out
    }
}

/// The cascade, breadth first: the seeds, then up to `depth` hops of dependents (`expand` gives
/// the entries that depend on a batch of keys). `visit` is asked once per candidate, in order,
/// and says whether it is a live entry: only live entries count and pass the cascade on (an
/// entry that expired on the way neither counts nor takes its dependents along). Each key is
/// considered once, whatever cycles or diamonds the graph has.
pub fn cascade(
    seeds: Vec<Vec<u8>>,
    depth: u32,
    mut expand: impl FnMut(&[Vec<u8>]) -> Vec<Vec<u8>>,
    mut visit: impl FnMut(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut seen: AHashSet<Vec<u8>> = AHashSet::with_capacity(seeds.len());
    let mut take = |candidates: Vec<Vec<u8>>, out: &mut Vec<Vec<u8>>| -> usize {
        let before = out.len();
        for k in candidates {
            if !seen.contains(&k) {
                seen.insert(k.clone());
                if visit(&k) {
                    out.push(k);
                }
            }
        }
        out.len() - before
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut added = take(seeds, &mut out);
    for _ in 0..depth {
        if added == 0 {
            break;
        }
        let next = expand(&out[start..]);
        start = out.len();
        added = take(next, &mut out);
    }
    out
}

/// Differences between the live index and one rebuilt from the entries (`expected`).
pub fn diff(db: usize, live: &DbIndex, expected: &DbIndex) -> Vec<String> {
    let mut out: Vec<String> = live
        .check_internal()
        .into_iter()
        .map(|s| format!("db{db}: {s}"))
        .collect();
    let a = live.facts();
    let b = expected.facts();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                if x.1 != y.1 {
                    out.push(format!(
                        "db{db}: {} has tags {} in the index but {} in the entry",
                        show(&x.0),
                        show_list(&x.1),
                        show_list(&y.1)
                    ));
                }
                if x.2 != y.2 {
                    out.push(format!(
                        "db{db}: {} has dependencies {} in the index but {} in the entry",
                        show(&x.0),
                        show_list(&x.2),
                        show_list(&y.2)
                    ));
                }
                i += 1;
                j += 1;
            }
            (Some(x), y) if y.is_none_or(|y| x.0 < y.0) => {
                out.push(format!(
                    "db{db}: the index lists {}, which is not a cache entry",
                    show(&x.0)
                ));
                i += 1;
            }
            (_, Some(y)) => {
                out.push(format!(
                    "db{db}: cache entry {} is missing from the index",
                    show(&y.0)
                ));
                j += 1;
            }
            (_, None) => break,
        }
    }
    out
}

fn show_list(l: &[Vec<u8>]) -> String {
    let parts: Vec<String> = l.iter().map(|n| show(n)).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        v.sort();
        v
    }

    fn keys(idx: &DbIndex, sel: Selector, depth: u32) -> Vec<String> {
        sorted(idx.resolve(&sel, depth))
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect()
    }

    const NONE: [&str; 0] = [];

    #[test]
    fn insert_remove_leaves_nothing_behind() {
        let mut idx = DbIndex::new();
        idx.insert(b"k1", &["t1", "t2"], &["r1"]);
        idx.insert(b"k2", &["t2"], &NONE);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.tag_count(), 2);
        assert_eq!(idx.resource_count(), 1);
        assert!(idx.remove(b"k1"));
        assert!(!idx.remove(b"k1"));
        assert_eq!(idx.tag_count(), 1);
        assert_eq!(idx.resource_count(), 0);
        assert!(idx.remove(b"k2"));
        assert_eq!(idx.tag_count(), 0);
        assert!(idx.is_empty());
        assert!(idx.check_internal().is_empty());
    }

    #[test]
    fn insert_replaces_links() {
        let mut idx = DbIndex::new();
        idx.insert(b"k", &["old"], &["r"]);
        idx.insert(b"k", &["new"], &NONE);
        assert_eq!(
            keys(&idx, Selector::Tags(vec![b("old")]), 0),
            Vec::<String>::new()
        );
        assert_eq!(keys(&idx, Selector::Tags(vec![b("new")]), 0), vec!["k"]);
        assert_eq!(idx.resource_count(), 0);
        assert!(idx.check_internal().is_empty());
    }

    #[test]
    fn rename_moves_links() {
        let mut idx = DbIndex::new();
        idx.insert(b"a", &["t"], &["r"]);
        idx.insert(b"b", &["u"], &NONE);
        assert!(idx.rename(b"a", b"b"));
        assert!(!idx.contains(b"a"));
        assert_eq!(idx.links_of(b"b"), Some((vec![b("t")], vec![b("r")])));
        assert_eq!(idx.tag_count(), 1);
        assert!(!idx.rename(b"missing", b"x"));
        assert!(idx.check_internal().is_empty());
    }

    #[test]
    fn tags_are_exact_and_union_counts_once() {
        let mut idx = DbIndex::new();
        idx.insert(b"1", &["get_track"], &NONE);
        idx.insert(b"2", &["get_all_tracks"], &NONE);
        idx.insert(b"3", &["get_track", "get_all_tracks"], &NONE);
        assert_eq!(
            keys(&idx, Selector::Tags(vec![b("get_track")]), 0),
            vec!["1", "3"]
        );
        assert_eq!(
            keys(
                &idx,
                Selector::Tags(vec![b("get_track"), b("get_all_tracks")]),
                0
            ),
            vec!["1", "2", "3"]
        );
    }

    #[test]
    fn pattern_namespace_and_all() {
        let mut idx = DbIndex::new();
        for k in ["user:1", "user:2", "user:10", "users", "post:1", "a*b"] {
            idx.insert(k.as_bytes(), &NONE, &NONE);
        }
        assert_eq!(
            keys(&idx, Selector::Pattern(b("user:?")), 0),
            vec!["user:1", "user:2"]
        );
        assert_eq!(
            keys(&idx, Selector::Pattern(b("*:1*")), 0),
            vec!["post:1", "user:1", "user:10"]
        );
        assert_eq!(keys(&idx, Selector::Pattern(b("a\\*b")), 0), vec!["a*b"]);
        assert_eq!(
            keys(&idx, Selector::Pattern(b("user:[^1]")), 0),
            vec!["user:2"]
        );
        assert_eq!(
            keys(&idx, Selector::Namespace(b("user")), 0),
            vec!["user:1", "user:10", "user:2"]
        );
        assert_eq!(idx.resolve(&Selector::All, 0).len(), 6);
    }

    fn chain(n: usize) -> DbIndex {
        // c0 <- c1 <- c2 ...: c(i+1) depends on c(i)
        let mut idx = DbIndex::new();
        idx.insert(b"c0", &NONE, &NONE);
        for i in 1..n {
            idx.insert(format!("c{i}").as_bytes(), &NONE, &[format!("c{}", i - 1)]);
        }
        idx
    }

    #[test]
    fn cascade_respects_depth() {
        let idx = chain(40);
        assert_eq!(idx.resolve(&Selector::Keys(vec![b("c0")]), 0).len(), 1);
        assert_eq!(idx.resolve(&Selector::Keys(vec![b("c0")]), 1).len(), 2);
        assert_eq!(idx.resolve(&Selector::Keys(vec![b("c0")]), 16).len(), 17);
        assert_eq!(idx.resolve(&Selector::Keys(vec![b("c0")]), 100).len(), 40);
        // DEPENDENTS: direct dependents are depth 0.
        assert_eq!(
            keys(&idx, Selector::Dependents(vec![b("c0")]), 0),
            vec!["c1"]
        );
        assert_eq!(
            keys(&idx, Selector::Dependents(vec![b("c0")]), 1),
            vec!["c1", "c2"]
        );
    }

    #[test]
    fn cycles_and_diamonds_terminate_and_count_once() {
        let mut idx = DbIndex::new();
        idx.insert(b"a", &NONE, &["c"]);
        idx.insert(b"b", &NONE, &["a"]);
        idx.insert(b"c", &NONE, &["b"]);
        assert_eq!(
            keys(&idx, Selector::Keys(vec![b("a")]), 100),
            vec!["a", "b", "c"]
        );
        let mut d = DbIndex::new();
        d.insert(b"top", &NONE, &NONE);
        d.insert(b"l", &NONE, &["top"]);
        d.insert(b"r", &NONE, &["top"]);
        d.insert(b"bottom", &NONE, &["l", "r"]);
        assert_eq!(d.resolve(&Selector::Keys(vec![b("top")]), 16).len(), 4);
        // A self-dependency is harmless.
        d.insert(b"self", &NONE, &["self"]);
        assert_eq!(d.resolve(&Selector::Keys(vec![b("self")]), 16).len(), 1);
    }

    #[test]
    fn dependents_and_tag_sizes() {
        let mut idx = DbIndex::new();
        idx.insert(b"x", &["big", "small"], &["r"]);
        idx.insert(b"y", &["big"], &["r"]);
        assert_eq!(idx.dependents_of(b"r"), vec![b("x"), b("y")]);
        let g = Glob::new(b"b*");
        assert_eq!(idx.tag_sizes(None), vec![(b("big"), 2), (b("small"), 1)]);
        assert_eq!(idx.tag_sizes(Some(&g)), vec![(b("big"), 2)]);
        assert_eq!(idx.tagged_entries(), 2);
        assert_eq!(idx.dependency_edges(), 2);
    }

    #[test]
    fn diff_reports_both_directions() {
        let mut live = DbIndex::new();
        live.insert(b"a", &["t"], &NONE);
        live.insert(b"ghost", &NONE, &NONE);
        let mut exp = DbIndex::new();
        exp.insert(b"a", &["u"], &NONE);
        exp.insert(b"missing", &NONE, &NONE);
        let d = diff(0, &live, &exp);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(diff(0, &exp, &exp).is_empty());
    }

    proptest! {
        /// Random inserts and removes keep the index consistent with a simple model.
        #[test]
        fn index_matches_model(ops in proptest::collection::vec(
            (0u8..3, 0u8..12, proptest::collection::vec(0u8..5, 0..4), proptest::collection::vec(0u8..12, 0..3)),
            0..200)) {
            let mut idx = DbIndex::new();
            let mut model: BTreeMap<Vec<u8>, (NameList, NameList)> = BTreeMap::new();
            for (op, k, tags, deps) in ops {
                let key = format!("k{k}").into_bytes();
                let tags: Vec<Vec<u8>> = sorted(tags.iter().map(|t| format!("t{t}").into_bytes()).collect());
                let deps: Vec<Vec<u8>> = sorted(deps.iter().map(|d| format!("k{d}").into_bytes()).collect());
                let (mut tags, mut deps) = (tags, deps);
                tags.dedup();
                deps.dedup();
                match op {
                    0 | 1 => { idx.insert(&key, &tags, &deps); model.insert(key, (tags, deps)); }
                    _ => { prop_assert_eq!(idx.remove(&key), model.remove(&key).is_some()); }
                }
            }
            prop_assert!(idx.check_internal().is_empty());
            let facts: Vec<Facts> = model.into_iter().map(|(k, (t, d))| (k, t, d)).collect();
            prop_assert_eq!(idx.facts(), facts.clone());
            // Cascade from every key with unlimited depth equals graph reachability in the model.
            for (k, _, _) in &facts {
                let mut reach = vec![k.clone()];
                let mut i = 0;
                while i < reach.len() {
                    let cur = reach[i].clone();
                    for (k2, _, d2) in &facts {
                        if d2.contains(&cur) && !reach.contains(k2) { reach.push(k2.clone()); }
                    }
                    i += 1;
                }
                prop_assert_eq!(sorted(idx.resolve(&Selector::Keys(vec![k.clone()]), u32::MAX)), sorted(reach));
            }
        }
    }
}
