//! The derived per-database index: tag -> entries, resource -> dependent entries, and namespace
//! (the key up to its first `:`) -> entries for prefix and pattern lookups. Entries are linked
//! by small integer ids, which each entry carries (the index has no table from name to id). The
//! index keeps no per-entry copy of the links: removing an entry takes its id and names from the
//! entry itself (the server hands the value to the unlink callback). Everything here can be
//! rebuilt from the entries.

use std::hash::Hasher;

use ahash::{AHashMap, AHashSet, AHasher};
use roaring::RoaringBitmap;
use smallvec::SmallVec;

use super::entry::{Link, LinkChange};
use super::glob::Glob;
use super::name::{self, GroupName, KeyName, NameTable};
use super::show;

pub type KeyId = u32;

/// What an invalidation (or its dry run) selects before the cascade.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

    /// The selector's arguments joined by spaces (lossy UTF-8), as events and statistics show
    /// them: `user:1`, `user:*`, `""` for ALL.
    pub fn arguments(&self) -> String {
        let parts: &[Vec<u8>] = match self {
            Selector::Keys(v) | Selector::Tags(v) | Selector::Dependents(v) => v,
            Selector::Pattern(p) | Selector::Namespace(p) => std::slice::from_ref(p),
            Selector::All => &[],
        };
        let words: Vec<String> = parts
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        words.join(" ")
    }
}

/// The entries linked to one name: inline while few, a compressed bitmap of ids when many
/// (ids are small and dense: about 2 bytes per member, and adding or removing one touches one
/// container instead of a random slot of a large hash table).
#[derive(Debug, Clone)]
enum Members {
    Few(SmallVec<[KeyId; 4]>),
    Many(RoaringBitmap),
}

const FEW: usize = 8;

impl Members {
    fn one(id: KeyId) -> Members {
        let mut v = SmallVec::new();
        v.push(id);
        Members::Few(v)
    }

    /// Adds `id`; false when it was a member already.
    fn insert(&mut self, id: KeyId) -> bool {
        match self {
            Members::Few(v) => {
                if v.contains(&id) {
                    return false;
                }
                if v.len() < FEW {
                    v.push(id);
                } else {
                    let mut set: RoaringBitmap = v.iter().copied().collect();
                    set.insert(id);
                    *self = Members::Many(set);
                }
                true
            }
            Members::Many(s) => s.insert(id),
        }
    }

    /// Heap bytes of the set (none while it is inline). A bitmap is counted at 2 bytes a
    /// member, what its array containers take (a dense one takes less): asked at every change,
    /// so it must not look at the containers.
    fn heap(&self) -> usize {
        match self {
            Members::Few(v) if v.spilled() => v.capacity() * 4,
            Members::Few(_) => 0,
            Members::Many(s) => 2 * s.len() as usize + 32,
        }
    }

    /// Removes `id`; whether it was a member.
    fn remove(&mut self, id: KeyId) -> bool {
        match self {
            Members::Few(v) => match v.iter().position(|&x| x == id) {
                Some(i) => {
                    v.swap_remove(i);
                    true
                }
                None => false,
            },
            Members::Many(s) => {
                let was = s.remove(id);
                if s.len() <= (FEW / 2) as u64 {
                    *self = Members::Few(s.iter().collect());
                }
                was
            }
        }
    }

    fn contains(&self, id: KeyId) -> bool {
        match self {
            Members::Few(v) => v.contains(&id),
            Members::Many(s) => s.contains(id),
        }
    }

    fn len(&self) -> usize {
        match self {
            Members::Few(v) => v.len(),
            Members::Many(s) => s.len() as usize,
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = KeyId> + '_> {
        match self {
            Members::Few(v) => Box::new(v.iter().copied()),
            Members::Many(s) => Box::new(s.iter()),
        }
    }
}

/// Names (tags or resources) with the entries linked to each. A name lives exactly as long as
/// at least one entry links to it.
type Groups = hashbrown::HashMap<GroupName, Members, ahash::RandomState>;

/// What linking or unlinking one member did to its group: whether the member was added (or
/// removed), the change in heap bytes, and the group's size after.
struct Linked {
    changed: bool,
    bytes: i64,
    len: usize,
}

/// The heap change of one member added to (or removed from, `sign` -1) `m`, whose heap was
/// `before` when it was a bitmap too: a bitmap counts 2 bytes a member (see `Members::heap`), so
/// its size need not be read again on this path (every CACHE.SET's).
fn heap_change(m: &Members, was_many: bool, before: usize, changed: bool, sign: i64) -> i64 {
    match m {
        Members::Many(_) if was_many => sign * 2 * i64::from(changed),
        _ => m.heap() as i64 - before as i64,
    }
}

fn link(groups: &mut Groups, name: &[u8], id: KeyId) -> Linked {
    match groups.entry_ref(name) {
        hashbrown::hash_map::EntryRef::Occupied(mut m) => {
            let m = m.get_mut();
            let was_many = matches!(m, Members::Many(_));
            let before = if was_many { 0 } else { m.heap() };
            let changed = m.insert(id);
            Linked {
                changed,
                bytes: heap_change(m, was_many, before, changed, 1),
                len: m.len(),
            }
        }
        hashbrown::hash_map::EntryRef::Vacant(v) => {
            v.insert(Members::one(id));
            Linked {
                changed: true,
                bytes: name::heap_bytes(name) as i64,
                len: 1,
            }
        }
    }
}

/// How many entries are linked to any of `names`: the largest group by its size, each smaller
/// one by the members no group counted before has (ids only, no names copied).
fn union_count(groups: &Groups, names: &[Vec<u8>]) -> usize {
    let mut found: Vec<&Members> = names.iter().filter_map(|n| groups.get(&n[..])).collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.len()));
    found.dedup_by(|a, b| std::ptr::eq(*a, *b));
    let Some(largest) = found.first() else {
        return 0;
    };
    let mut total = largest.len();
    for (i, m) in found.iter().enumerate().skip(1) {
        total += m
            .iter()
            .filter(|&id| !found[..i].iter().any(|earlier| earlier.contains(id)))
            .count();
    }
    total
}

fn unlink(groups: &mut Groups, name: &[u8], id: KeyId) -> Linked {
    // One probe: the entry found is the one removed when its last member goes.
    let hashbrown::hash_map::EntryRef::Occupied(mut m) = groups.entry_ref(name) else {
        return Linked {
            changed: false,
            bytes: 0,
            len: 0,
        };
    };
    let set = m.get_mut();
    let was_many = matches!(set, Members::Many(_));
    let before = if was_many { 0 } else { set.heap() };
    let changed = set.remove(id);
    let len = set.len();
    let mut bytes = match set {
        // A bitmap that went back to a list: it held one member more than the list now does.
        Members::Few(_) if was_many => {
            set.heap() as i64 - (2 * (len + usize::from(changed)) + 32) as i64
        }
        _ => heap_change(set, was_many, before, changed, -1),
    };
    if len == 0 {
        // The group goes, with its set and its name.
        bytes = -(before as i64) - name::heap_bytes(name) as i64;
        m.remove();
    }
    Linked {
        changed,
        bytes,
        len,
    }
}

/// The `n` largest of `sizes` that `keep` keeps (ties: the smaller name), in no order: one pass
/// holding `n` of them, not a list of them all.
fn top<'a>(
    sizes: impl Iterator<Item = (&'a [u8], usize)>,
    n: usize,
    keep: impl Fn(&[u8]) -> bool,
) -> Vec<(&'a [u8], usize)> {
    use std::cmp::Reverse;
    /// A tag's rank: larger first, then the smaller name.
    type Rank<'n> = (usize, Reverse<&'n [u8]>);
    // A min-heap of the best so far: the worst kept on top.
    let mut heap: std::collections::BinaryHeap<Reverse<Rank<'a>>> =
        std::collections::BinaryHeap::with_capacity(n.min(1 << 16) + 1);
    for (name, len) in sizes {
        let rank = (len, Reverse(name));
        if heap.len() == n && heap.peek().is_some_and(|Reverse(worst)| rank <= *worst) {
            continue;
        }
        if !keep(name) {
            continue;
        }
        heap.push(Reverse(rank));
        if heap.len() > n {
            heap.pop();
        }
    }
    heap.into_iter()
        .map(|Reverse((len, Reverse(name)))| (name, len))
        .collect()
}

/// A tag joins the large tags at this many entries, and leaves them below [`BIG_LEAVE`] (so a
/// tag near the line does not come and go).
pub const BIG_ENTER: usize = 32;
const BIG_LEAVE: usize = 16;

/// Where a key is filed for prefix lookups: its namespace, the part before the first `:`.
/// Keys without `:` are filed under `:`, which no namespace can be.
fn namespace_of(key: &[u8]) -> &[u8] {
    match key.iter().position(|&b| b == b':') {
        Some(i) => &key[..i],
        None => b":",
    }
}

/// A 64-bit hash of a key name (fixed keys: stable within the process).
pub fn hash_key(key: &[u8]) -> u64 {
    let mut h = AHasher::default();
    h.write(key);
    h.finish()
}

/// The index of one database. Every key name is stored once (`names`, by id). There is no table
/// from name to id: every entry carries its id ([`Entry::id`](crate::core::entry::Header::id)),
/// and whoever holds the entry (the server's keyspace finds it by name) passes that id with
/// the key; the index checks that the id names that key.
#[derive(Default)]
pub struct DbIndex {
    names: NameTable,
    /// Bytes of the values of every entry: added by `insert`, taken off by `remove` with the
    /// size of the entry removed (the callers hold it), so no size is kept per id.
    value_bytes: u64,
    /// Bytes of the key names too long to be held in their id slot.
    key_bytes: u64,
    free: Vec<KeyId>,
    namespaces: Groups,
    tags: Groups,
    resources: Groups,
    tally: Tally,
}

/// Figures kept as the links change, so that statistics read them without a walk over the
/// tables (`check_internal`, hence CACHE.DEBUG VERIFY, counts them again).
#[derive(Default, Debug)]
struct Tally {
    /// Entries with at least one tag.
    tagged: u64,
    /// (entry, resource) links.
    dep_edges: u64,
    /// Heap bytes of the group names and member sets of the three tables.
    group_bytes: u64,
    /// Every tag with at least [`BIG_ENTER`] entries, and some with fewer (down to
    /// [`BIG_LEAVE`]): where the largest tags are found without a walk over all of them.
    big: AHashSet<Box<[u8]>>,
    /// Bytes of the names in `big`.
    big_bytes: u64,
}

impl Tally {
    fn add_bytes(&mut self, delta: i64) {
        self.group_bytes = self.group_bytes.saturating_add_signed(delta);
    }
}

impl std::fmt::Debug for DbIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbIndex")
            .field("entries", &self.len())
            .field("tags", &self.tags.len())
            .finish()
    }
}

/// Sorted names (tags or resources).
pub type NameList = Vec<Vec<u8>>;

/// Names packed into one buffer, for a caller that fills it again and again without an
/// allocation per name.
#[derive(Debug, Default)]
pub struct PackedNames {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl PackedNames {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    pub fn push(&mut self, name: &[u8]) {
        self.bytes.extend_from_slice(name);
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter())
            .map(|(a, &b)| &self.bytes[a..b])
    }
}

/// An entry as the index sees it: its key, tags and dependencies (sorted).
pub type Facts = (Vec<u8>, NameList, NameList);

impl DbIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.names.len() - self.free.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of distinct tags in use.
    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// Number of distinct resources some entry depends on.
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Bytes of the values of every entry.
    pub fn value_bytes(&self) -> u64 {
        self.value_bytes
    }

    /// An estimate of the heap the index takes: tables by capacity, names by length, member
    /// sets by size (allocator rounding left out). Kept as the links change: no walk.
    pub fn heap_bytes(&self) -> u64 {
        let table = |len: usize, per: usize| (len * per) as u64;
        let group = std::mem::size_of::<(GroupName, Members)>() + 1;
        table(self.names.capacity(), 16)
            + table(self.free.capacity(), 4)
            + self.key_bytes
            + self.tally.group_bytes
            + table(self.namespaces.capacity(), group)
            + table(self.tags.capacity(), group)
            + table(self.resources.capacity(), group)
            + self.tally.big_bytes
            + table(
                self.tally.big.capacity(),
                std::mem::size_of::<Box<[u8]>>() + 1,
            )
    }

    /// What `tally.group_bytes` counts, counted again.
    fn count_group_bytes(&self) -> u64 {
        [&self.namespaces, &self.tags, &self.resources]
            .into_iter()
            .flat_map(|g| g.iter())
            .map(|(name, m)| (name::heap_bytes(name) + m.heap()) as u64)
            .sum()
    }

    /// Figures for statistics: (entries with at least one tag, dependency links, the largest
    /// tag and its size). The largest is looked for among the tags with at least
    /// [`BIG_ENTER`] entries only (none when no tag has as many); nothing else is visited.
    pub fn link_figures(&self) -> (u64, u64, Option<(Vec<u8>, u64)>) {
        let largest = self
            .tally
            .big
            .iter()
            .filter_map(|t| Some((t, self.tags.get(&t[..])?.len())))
            .filter(|&(_, n)| n >= BIG_ENTER)
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(name, n)| (name.to_vec(), n as u64));
        (self.tally.tagged, self.tally.dep_edges, largest)
    }

    /// Whether `id` is the id of `key` here: what every call that names an entry checks first
    /// (an entry not taken in yet, or a copy, carries an id that names another key or none).
    pub fn holds(&self, key: &[u8], id: KeyId) -> bool {
        self.name(id) == Some(key)
    }

    /// Whether `key` can be an entry here: some entry is filed under its namespace. A cheap
    /// test before the keyspace is asked (the index cannot tell a name's id).
    pub fn may_hold(&self, key: &[u8]) -> bool {
        self.namespaces.contains_key(namespace_of(key))
    }

    /// Adds an entry with its tags and dependencies; returns the id the entry is to carry. The
    /// key must not be indexed already (its old entry left first).
    pub fn insert<'a>(
        &mut self,
        key: &[u8],
        tags: impl IntoIterator<Item = &'a [u8]>,
        deps: impl IntoIterator<Item = &'a [u8]>,
        value_size: u64,
    ) -> KeyId {
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = KeyName::new(key);
                id
            }
            None => self.names.push(KeyName::new(key)) as KeyId,
        };
        self.value_bytes += value_size;
        self.key_bytes += name::heap_bytes(key) as u64;
        let filed = link(&mut self.namespaces, namespace_of(key), id);
        self.tally.add_bytes(filed.bytes);
        if self.add(id, tags, deps) {
            self.tally.tagged += 1;
        }
        id
    }

    /// Links tags and dependencies to `id`; whether some tag was linked.
    fn add<'a>(
        &mut self,
        id: KeyId,
        tags: impl IntoIterator<Item = &'a [u8]>,
        deps: impl IntoIterator<Item = &'a [u8]>,
    ) -> bool {
        let mut tagged = false;
        for t in tags {
            let l = link(&mut self.tags, t, id);
            self.tally.add_bytes(l.bytes);
            if l.changed && l.len == BIG_ENTER && self.tally.big.insert(t.into()) {
                self.tally.big_bytes += t.len() as u64;
            }
            tagged |= l.changed;
        }
        for d in deps {
            let l = link(&mut self.resources, d, id);
            self.tally.add_bytes(l.bytes);
            self.tally.dep_edges += u64::from(l.changed);
        }
        tagged
    }

    /// Unlinks tags and dependencies from `id`.
    fn drop_links<'a>(
        &mut self,
        id: KeyId,
        tags: impl IntoIterator<Item = &'a [u8]>,
        deps: impl IntoIterator<Item = &'a [u8]>,
    ) {
        for t in tags {
            let l = unlink(&mut self.tags, t, id);
            self.tally.add_bytes(l.bytes);
            if l.changed && l.len == BIG_LEAVE - 1 && self.tally.big.remove(t) {
                self.tally.big_bytes -= t.len() as u64;
            }
        }
        for d in deps {
            let l = unlink(&mut self.resources, d, id);
            self.tally.add_bytes(l.bytes);
            self.tally.dep_edges -= u64::from(l.changed);
        }
    }

    /// Links more names to the entry `id` under `key` (CACHE.TAG, CACHE.DEPEND; `had_tags`:
    /// whether the entry had a tag before); false (and nothing changed) when that is not an
    /// indexed entry.
    pub fn add_links<'a>(
        &mut self,
        key: &[u8],
        id: KeyId,
        had_tags: bool,
        tags: impl IntoIterator<Item = &'a [u8]>,
        deps: impl IntoIterator<Item = &'a [u8]>,
    ) -> bool {
        if !self.holds(key, id) {
            return false;
        }
        if self.add(id, tags, deps) && !had_tags {
            self.tally.tagged += 1;
        }
        true
    }

    /// Applies the link changes of the entry `id` replaced under the same key (its value had
    /// `old` bytes, the new one has `new`; the new entry is to carry the same id); false (and
    /// nothing changed) when that is not an indexed entry.
    pub fn relink(
        &mut self,
        key: &[u8],
        id: KeyId,
        change: &LinkChange,
        old: u64,
        new: u64,
    ) -> bool {
        if !self.holds(key, id) {
            return false;
        }
        self.value_bytes = self.value_bytes.saturating_sub(old) + new;
        self.drop_links(id, change.names(Link::TagGone), change.names(Link::DepGone));
        self.add(id, change.names(Link::TagNew), change.names(Link::DepNew));
        match change.tagged() {
            (false, true) => self.tally.tagged += 1,
            (true, false) => self.tally.tagged -= 1,
            _ => {}
        }
        true
    }

    /// Drops the entry `id` under `key` and the links it has (its tags, dependencies and value
    /// size, from the entry). Returns whether it was indexed (nothing changes when not).
    pub fn remove<'a>(
        &mut self,
        key: &[u8],
        id: KeyId,
        tags: impl IntoIterator<Item = &'a [u8]>,
        deps: impl IntoIterator<Item = &'a [u8]>,
        value_size: u64,
    ) -> bool {
        if !self.holds(key, id) {
            return false;
        }
        let filed = unlink(&mut self.namespaces, namespace_of(key), id);
        self.tally.add_bytes(filed.bytes);
        self.names[id as usize] = KeyName::vacant();
        self.value_bytes = self.value_bytes.saturating_sub(value_size);
        self.key_bytes -= name::heap_bytes(key) as u64;
        self.free.push(id);
        let mut tags = tags.into_iter().peekable();
        if tags.peek().is_some() {
            self.tally.tagged -= 1;
        }
        self.drop_links(id, tags, deps);
        true
    }

    pub fn clear(&mut self) {
        *self = DbIndex::default();
    }

    fn name(&self, id: KeyId) -> Option<&[u8]> {
        self.names.get(id as usize).and_then(KeyName::as_deref)
    }

    fn names_of(&self, ids: impl Iterator<Item = KeyId>) -> Vec<Vec<u8>> {
        ids.filter_map(|id| self.name(id).map(<[u8]>::to_vec))
            .collect()
    }

    fn all_names(&self) -> impl Iterator<Item = &[u8]> {
        self.names.iter().filter_map(KeyName::as_deref)
    }

    /// Keys of the first `limit` entries (by id) that depend on `resource`, sorted, with the
    /// number of its dependents left out (a resource with a million dependents costs `limit`).
    pub fn some_dependents(&self, resource: &[u8], limit: usize) -> (Vec<Vec<u8>>, usize) {
        let Some(m) = self.resources.get(resource) else {
            return (Vec::new(), 0);
        };
        let mut out: Vec<Vec<u8>> = m
            .iter()
            .filter_map(|id| self.name(id))
            .take(limit)
            .map(<[u8]>::to_vec)
            .collect();
        out.sort();
        let left = m.len() - out.len();
        (out, left)
    }

    /// Keys starting with `prefix`, from its namespace when it has one (cost proportional to
    /// that namespace), else from every key.
    fn with_prefix<'a>(&'a self, prefix: &'a [u8]) -> Box<dyn Iterator<Item = &'a [u8]> + 'a> {
        if prefix.contains(&b':') {
            match self.namespaces.get(namespace_of(prefix)) {
                Some(m) => Box::new(
                    m.iter()
                        .filter_map(|id| self.name(id))
                        .filter(move |k| k.starts_with(prefix)),
                ),
                None => Box::new(std::iter::empty()),
            }
        } else {
            Box::new(self.all_names().filter(move |k| k.starts_with(prefix)))
        }
    }

    /// The keys of the entries a selector picks, before any cascade (each once). The index
    /// has no way from a name to its id: `Keys` are taken as entries (the caller keeps only the
    /// keys that hold one: see `server::entries_only`), and a pattern without wildcards is
    /// looked for in its namespace.
    pub fn select(&self, sel: &Selector) -> Vec<Vec<u8>> {
        match sel {
            Selector::Keys(keys) => {
                let mut out = keys.clone();
                out.sort_unstable();
                out.dedup();
                out
            }
            Selector::Tags(names) => self.union(&self.tags, names),
            Selector::Dependents(names) => self.union(&self.resources, names),
            Selector::All => self.all_names().map(<[u8]>::to_vec).collect(),
            Selector::Namespace(ns) => {
                let mut prefix = ns.clone();
                prefix.push(b':');
                self.with_prefix(&prefix).map(<[u8]>::to_vec).collect()
            }
            Selector::Pattern(p) => {
                let glob = Glob::new(p);
                self.with_prefix(glob.literal_prefix())
                    .filter(|k| glob.matches(k))
                    .map(<[u8]>::to_vec)
                    .collect()
            }
        }
    }

    fn union(&self, groups: &Groups, names: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut found: Vec<&Members> = names.iter().filter_map(|n| groups.get(&n[..])).collect();
        if found.len() == 1 {
            return self.names_of(found[0].iter());
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.len()));
        let mut seen = RoaringBitmap::new();
        let mut ids = Vec::new();
        for m in found {
            for id in m.iter() {
                if seen.insert(id) {
                    ids.push(id);
                }
            }
        }
        self.names_of(ids.into_iter())
    }

    /// How many entries a selector picks (before any cascade), from the index: without a walk
    /// for ALL, one TAG, one DEPENDENTS resource and a NAMESPACE (their groups keep sizes);
    /// the other selectors count what `select` finds.
    pub fn count(&self, sel: &Selector) -> u64 {
        let n = match sel {
            Selector::All => self.len(),
            Selector::Tags(names) => union_count(&self.tags, names),
            Selector::Dependents(names) => union_count(&self.resources, names),
            // Keys starting with `ns:` are exactly those filed under namespace `ns`.
            Selector::Namespace(ns) if !ns.contains(&b':') => {
                self.namespaces.get(&ns[..]).map_or(0, Members::len)
            }
            Selector::Namespace(ns) => {
                let mut prefix = ns.clone();
                prefix.push(b':');
                self.with_prefix(&prefix).count()
            }
            Selector::Pattern(p) => {
                let glob = Glob::new(p);
                self.with_prefix(glob.literal_prefix())
                    .filter(|k| glob.matches(k))
                    .count()
            }
            Selector::Keys(_) => self.select(sel).len(),
        };
        n as u64
    }

    /// Whether some entry depends on `name`.
    pub fn is_resource(&self, name: &[u8]) -> bool {
        self.resources.contains_key(name)
    }

    /// The resources that may name an entry here (some entry is filed under their namespace):
    /// where a cascade can pass from one entry to another. Sorted.
    pub fn entry_resources(&self) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = self
            .resources
            .keys()
            .filter(|r| self.may_hold(r))
            .map(|r| r.as_bytes().to_vec())
            .collect();
        v.sort_unstable();
        v
    }

    /// Up to `n` keys in id order from id `from` into `out` (emptied first), and the id to go on
    /// from (None at the end). Ids are stable while an entry lives, so a walk in steps sees
    /// every entry that stays.
    pub fn keys_from(&self, from: KeyId, n: usize, out: &mut PackedNames) -> Option<KeyId> {
        out.clear();
        let mut id = from as usize;
        while id < self.names.len() {
            if out.len() == n {
                return Some(id as KeyId);
            }
            if let Some(k) = self.names[id].as_deref() {
                out.push(k);
            }
            id += 1;
        }
        None
    }

    /// Keys of the entries that depend on any of `resources` (each once).
    pub fn dependents_of_all(&self, resources: &[Vec<u8>]) -> Vec<Vec<u8>> {
        self.union(&self.resources, resources)
    }

    /// Every entry the selector reaches with the cascade, when every entry counts as live.
    #[cfg(any(test, fuzzing))]
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
        .keys
    }

    /// `(tag, entries)` for tags matching the glob, largest first, then by name; the first
    /// `count` only when given: from the large tags alone when enough of them are large, else
    /// in one pass that holds `count` of them (only those names copied: `COUNT 10` over a
    /// million tags neither lists nor sorts them all).
    pub fn tag_sizes(&self, pattern: Option<&Glob>, count: Option<usize>) -> Vec<(Vec<u8>, usize)> {
        let keep = |name: &[u8]| pattern.is_none_or(|p| p.matches(name));
        let order =
            |a: &(&[u8], usize), b: &(&[u8], usize)| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0));
        let mut v: Vec<(&[u8], usize)> = match count {
            Some(0) => Vec::new(),
            Some(n) => {
                // Every tag outside the large ones has fewer than BIG_ENTER entries: when n
                // large ones have at least that many, they are the answer.
                let mut big: Vec<(&[u8], usize)> = self
                    .tally
                    .big
                    .iter()
                    .filter(|t| keep(t))
                    .filter_map(|t| Some((&t[..], self.tags.get(&t[..])?.len())))
                    .filter(|&(_, len)| len >= BIG_ENTER)
                    .collect();
                if big.len() >= n {
                    big.sort_unstable_by(order);
                    big.truncate(n);
                    big
                } else {
                    top(
                        self.tags.iter().map(|(name, m)| (&name[..], m.len())),
                        n,
                        keep,
                    )
                }
            }
            None => self
                .tags
                .iter()
                .filter(|(name, _)| keep(name))
                .map(|(name, m)| (&name[..], m.len()))
                .collect(),
        };
        v.sort_unstable_by(order);
        v.into_iter().map(|(name, n)| (name.to_vec(), n)).collect()
    }

    /// How many tags match the glob, counted up to `limit + 1` (no walk without a glob).
    pub fn tag_count_up_to(&self, pattern: Option<&Glob>, limit: usize) -> usize {
        match pattern {
            None => self.tags.len(),
            Some(p) => self
                .tags
                .keys()
                .filter(|t| p.matches(t))
                .take(limit.saturating_add(1))
                .count(),
        }
    }

    /// The (tag, entry) links of the tags matching the glob, counted up to past `limit`.
    pub fn tag_links_up_to(&self, pattern: Option<&Glob>, limit: usize) -> usize {
        let mut n = 0usize;
        for (t, m) in &self.tags {
            if pattern.is_none_or(|p| p.matches(t)) {
                n += m.len();
                if n > limit {
                    break;
                }
            }
        }
        n
    }

    /// The tags matching the glob with the keys of their entries (what `tag_sizes` counts, for a
    /// caller that must look at each entry).
    pub fn tag_members(&self, pattern: Option<&Glob>) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        self.tags
            .iter()
            .filter(|(name, _)| pattern.is_none_or(|p| p.matches(name)))
            .map(|(name, m)| (name.to_vec(), self.names_of(m.iter())))
            .collect()
    }

    /// Number of entries with at least one tag.
    #[cfg(test)]
    pub fn tagged_entries(&self) -> usize {
        self.tally.tagged as usize
    }

    /// Number of (entry, resource) dependency links.
    #[cfg(test)]
    pub fn dependency_edges(&self) -> usize {
        self.tally.dep_edges as usize
    }

    /// The figures of [`Tally`] counted again from the tables, with what disagrees.
    fn check_tally(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = RoaringBitmap::new();
        for m in self.tags.values() {
            seen.extend(m.iter());
        }
        let edges: u64 = self.resources.values().map(|m| m.len() as u64).sum();
        let bytes = self.count_group_bytes();
        for (what, kept, counted) in [
            ("tagged entries", self.tally.tagged, seen.len()),
            ("dependency links", self.tally.dep_edges, edges),
            ("group bytes", self.tally.group_bytes, bytes),
            (
                "large-tag name bytes",
                self.tally.big_bytes,
                self.tally.big.iter().map(|t| t.len() as u64).sum(),
            ),
        ] {
            if kept != counted {
                out.push(format!("{kept} {what} kept but {counted} counted"));
            }
        }
        for (name, m) in &self.tags {
            if m.len() >= BIG_ENTER && !self.tally.big.contains(&name[..]) {
                out.push(format!("tag {} is large but not listed so", show(name)));
            }
        }
        for t in &self.tally.big {
            if self.tags.get(&t[..]).is_none_or(|m| m.len() < BIG_LEAVE) {
                out.push(format!("tag {} is listed as large but is not", show(t)));
            }
        }
        out
    }

    /// All entries with their sorted tags and dependencies, sorted by key.
    pub fn facts(&self) -> Vec<Facts> {
        let mut per_id: AHashMap<KeyId, (NameList, NameList)> = AHashMap::new();
        for (name, m) in &self.tags {
            for id in m.iter() {
                per_id.entry(id).or_default().0.push(name.to_vec());
            }
        }
        for (name, m) in &self.resources {
            for id in m.iter() {
                per_id.entry(id).or_default().1.push(name.to_vec());
            }
        }
        let mut out: Vec<Facts> = self
            .names
            .iter()
            .enumerate()
            .filter_map(|(id, k)| {
                let k = k.as_deref()?;
                let (mut t, mut d) = per_id.remove(&(id as KeyId)).unwrap_or_default();
                t.sort();
                d.sort();
                Some((k.to_vec(), t, d))
            })
            .collect();
        out.sort();
        out
    }

    /// Checks the index against itself: the count of entries is right, no key has two ids,
    /// every key is filed under its namespace, every linked id is a live entry, no name outlives its last
    /// entry.
    pub fn check_internal(&self) -> Vec<String> {
        let mut out = self.check_tally();
        let live = self.names.iter().filter(|k| k.is_some()).count();
        if live != self.len() {
            out.push(format!(
                "{live} key slots but {} free of {}",
                self.free.len(),
                self.names.len()
            ));
        }
        let mut seen: AHashSet<&[u8]> = AHashSet::with_capacity(live);
        for (id, k) in self.names.iter().enumerate() {
            let Some(k) = k.as_deref() else { continue };
            if !seen.insert(k) {
                out.push(format!("key {} has more than one id", show(k)));
            }
            if !self
                .namespaces
                .get(namespace_of(k))
                .is_some_and(|m| m.contains(id as KeyId))
            {
                out.push(format!("key {} is not filed under its namespace", show(k)));
            }
        }
        let filed: usize = self.namespaces.values().map(Members::len).sum();
        if filed != live {
            out.push(format!(
                "{filed} keys filed under namespaces but {live} keys"
            ));
        }
        for (what, groups) in [
            ("tag", &self.tags),
            ("resource", &self.resources),
            ("namespace", &self.namespaces),
        ] {
            for (name, m) in groups {
                if m.len() == 0 {
                    out.push(format!("{what} {} has no entries", show(name)));
                }
                for id in m.iter() {
                    if self.name(id).is_none() {
                        out.push(format!("{what} {} lists a missing entry", show(name)));
                    }
                }
                if let Members::Many(s) = m {
                    if s.len() <= (FEW / 2) as u64 {
                        out.push(format!(
                            "{what} {} kept a bitmap for {} entries",
                            show(name),
                            s.len()
                        ));
                    }
                }
            }
        }
        out
    }
}

/// What a cascade reached: the live entries in visiting order, how many of them the selector
/// picked (the rest came through dependencies) and the deepest hop that found one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reach {
    pub keys: Vec<Vec<u8>>,
    pub selected: usize,
    pub depth: u32,
    /// Where each hop starts in `keys` (hop 0, the selected entries, starts at 0).
    pub hops: Vec<usize>,
    /// The walk stopped at its limit (see [`cascade_up_to`]): `keys` is not all it reaches.
    pub cut: bool,
}

impl Reach {
    /// The keys reached with fewer than `depth` hops, each with the hops left after it: the
    /// resources whose dependents elsewhere (on another shard) the cascade still reaches.
    pub fn frontier(&self, depth: u32) -> Vec<(Vec<u8>, u32)> {
        self.frontier_keys(depth)
            .map(|(k, left)| (k.to_vec(), left))
            .collect()
    }

    /// [`Reach::frontier`] without copying the keys.
    pub fn frontier_keys(&self, depth: u32) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        self.hops
            .iter()
            .enumerate()
            .map_while(move |(hop, &start)| {
                let end = self.hops.get(hop + 1).copied().unwrap_or(self.keys.len());
                let left = depth.checked_sub(hop as u32).filter(|&l| l > 0)?;
                Some(
                    self.keys[start..end]
                        .iter()
                        .map(move |k| (k.as_slice(), left)),
                )
            })
            .flatten()
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
    expand: impl FnMut(&[Vec<u8>]) -> Vec<Vec<u8>>,
    visit: impl FnMut(&[u8]) -> bool,
) -> Reach {
    cascade_up_to(seeds, depth, usize::MAX, expand, visit)
}

/// [`cascade`], stopped as soon as more than `limit` live entries are reached (`Reach::cut`
/// then says so, and `keys` holds `limit + 1` of them): a walk whose answer would be too large
/// costs no more than the limit.
pub fn cascade_up_to(
    seeds: Vec<Vec<u8>>,
    depth: u32,
    limit: usize,
    mut expand: impl FnMut(&[Vec<u8>]) -> Vec<Vec<u8>>,
    mut visit: impl FnMut(&[u8]) -> bool,
) -> Reach {
    let mut out = Vec::new();
    let mut cut = false;
    if depth == 0 {
        // Seeds are distinct (selectors deduplicate): no need to remember what was seen.
        for k in seeds {
            if out.len() > limit {
                cut = true;
                break;
            }
            if visit(&k) {
                out.push(k);
            }
        }
        cut |= out.len() > limit;
        let selected = out.len();
        return Reach {
            keys: out,
            selected,
            depth: 0,
            hops: vec![0],
            cut,
        };
    }
    let mut seen: AHashSet<Vec<u8>> = AHashSet::with_capacity(seeds.len().min(limit));
    let mut take = |candidates: Vec<Vec<u8>>, out: &mut Vec<Vec<u8>>, cut: &mut bool| -> usize {
        let before = out.len();
        for k in candidates {
            if out.len() > limit {
                *cut = true;
                break;
            }
            if !seen.contains(&k) {
                seen.insert(k.clone());
                if visit(&k) {
                    out.push(k);
                }
            }
        }
        *cut |= out.len() > limit;
        out.len() - before
    };
    let mut start = 0;
    let mut added = take(seeds, &mut out, &mut cut);
    let selected = added;
    let mut reached = 0;
    let mut hops = vec![0];
    for hop in 1..=depth {
        if added == 0 || cut {
            break;
        }
        let next = expand(&out[start..]);
        start = out.len();
        added = take(next, &mut out, &mut cut);
        if added > 0 {
            reached = hop;
            hops.push(start);
        }
    }
    Reach {
        keys: out,
        selected,
        depth: reached,
        hops,
        cut,
    }
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

/// The entries whose id is not the one the live index gives their key (`carried`: each entry's
/// key and the id it carries): the index could not drop or change them.
pub fn misfiled<'a>(
    db: usize,
    live: &DbIndex,
    carried: impl IntoIterator<Item = (&'a [u8], KeyId)>,
) -> Vec<String> {
    carried
        .into_iter()
        .filter(|&(k, id)| !live.holds(k, id))
        .map(|(k, id)| {
            let owner = live.name(id).map_or_else(|| "no key".to_string(), show);
            format!(
                "db{db}: cache entry {} carries id {id}, which the index gives to {owner}",
                show(k)
            )
        })
        .collect()
}

fn show_list(l: &[Vec<u8>]) -> String {
    let parts: Vec<String> = l.iter().map(|n| show(n)).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn bs<'a>(v: &'a [&'a str]) -> impl Iterator<Item = &'a [u8]> + Clone {
        v.iter().map(|s| s.as_bytes())
    }

    fn ins(idx: &mut DbIndex, key: &str, tags: &[&str], deps: &[&str]) -> KeyId {
        idx.insert(key.as_bytes(), bs(tags), bs(deps), key.len() as u64)
    }

    /// The id of `key` (as its entry would carry it), found the slow way; an id no key has
    /// when it is not indexed.
    fn id(idx: &DbIndex, key: &[u8]) -> KeyId {
        idx.names
            .iter()
            .position(|n| n.as_deref() == Some(key))
            .map_or(KeyId::MAX, |i| i as KeyId)
    }

    fn rm(idx: &mut DbIndex, key: &str, tags: &[&str], deps: &[&str]) -> bool {
        let id = id(idx, key.as_bytes());
        idx.remove(key.as_bytes(), id, bs(tags), bs(deps), key.len() as u64)
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

    #[test]
    fn insert_remove_leaves_nothing_behind() {
        let mut idx = DbIndex::new();
        ins(&mut idx, "k1", &["t1", "t2"], &["r1"]);
        ins(&mut idx, "k2", &["t2"], &[]);
        assert_eq!(
            (idx.len(), idx.tag_count(), idx.resource_count()),
            (2, 2, 1)
        );
        assert!(rm(&mut idx, "k1", &["t1", "t2"], &["r1"]));
        assert!(!rm(&mut idx, "k1", &["t1", "t2"], &["r1"]));
        assert_eq!((idx.tag_count(), idx.resource_count()), (1, 0));
        assert!(rm(&mut idx, "k2", &["t2"], &[]));
        assert_eq!(idx.tag_count(), 0);
        assert!(idx.is_empty());
        assert!(idx.check_internal().is_empty());
    }

    #[test]
    fn a_large_group_spans_bitmap_containers_and_shrinks_back() {
        // 70 000 ids cross the 65 536 boundary of the bitmap's containers.
        let mut idx = DbIndex::new();
        let n = 70_000;
        for i in 0..n {
            ins(&mut idx, &format!("ns:{i}"), &["big"], &["r"]);
        }
        assert_eq!(idx.count(&Selector::Tags(vec![b"big".to_vec()])), n as u64);
        for i in (0..n).filter(|i| i % 2 == 1) {
            assert!(rm(&mut idx, &format!("ns:{i}"), &["big"], &["r"]));
        }
        let mut want: Vec<String> = (0..n).step_by(2).map(|i| format!("ns:{i}")).collect();
        want.sort();
        assert_eq!(keys(&idx, Selector::Tags(vec![b"big".to_vec()]), 0), want);
        assert_eq!(keys(&idx, Selector::Namespace(b"ns".to_vec()), 0), want);
        assert_eq!(
            keys(&idx, Selector::Dependents(vec![b"r".to_vec()]), 0),
            want
        );
        // Down to a few members: back to the inline list (check_internal reports a bitmap kept
        // for so few).
        for i in (0..n).step_by(2).skip(3) {
            assert!(rm(&mut idx, &format!("ns:{i}"), &["big"], &["r"]));
        }
        assert_eq!(
            keys(&idx, Selector::Tags(vec![b"big".to_vec()]), 0),
            ["ns:0", "ns:2", "ns:4"]
        );
        assert!(
            idx.check_internal().is_empty(),
            "{:?}",
            idx.check_internal()
        );
        for i in [0, 2, 4] {
            assert!(rm(&mut idx, &format!("ns:{i}"), &["big"], &["r"]));
        }
        assert!(idx.is_empty());
        assert_eq!((idx.tag_count(), idx.resource_count()), (0, 0));
    }

    #[test]
    fn a_walk_in_chunks_sees_every_entry_that_stays() {
        let mut idx = DbIndex::new();
        for i in 0..10 {
            ins(&mut idx, &format!("k{i}"), &[], &[]);
        }
        let mut out = PackedNames::default();
        let mut seen = Vec::new();
        let mut cursor = Some(0);
        while let Some(c) = cursor {
            cursor = idx.keys_from(c, 3, &mut out);
            assert!(out.len() <= 3);
            let chunk: Vec<String> = out
                .iter()
                .map(|k| String::from_utf8(k.to_vec()).unwrap())
                .collect();
            // Between chunks entries come and go. One removed ahead of the cursor is not seen;
            // a new one whose id (a freed one) lies ahead is seen, one behind is not.
            if chunk.iter().any(|k| k == "k4") {
                assert!(rm(&mut idx, "k7", &[], &[]));
                ins(&mut idx, "ahead", &[], &[]);
                assert!(rm(&mut idx, "k1", &[], &[]));
                ins(&mut idx, "behind", &[], &[]);
            }
            seen.extend(chunk);
        }
        let want: Vec<String> = [
            "k0", "k1", "k2", "k3", "k4", "k5", "k6", "ahead", "k8", "k9",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(seen, want);
        // Names of every length, the empty one included, come back as pushed.
        out.clear();
        for name in [&b""[..], b"a", b"", b"longer name"] {
            out.push(name);
        }
        let back: Vec<&[u8]> = out.iter().collect();
        assert_eq!(back, [&b""[..], b"a", b"", b"longer name"]);
    }

    #[test]
    fn an_id_that_names_another_key_changes_nothing() {
        let mut idx = DbIndex::new();
        let a = ins(&mut idx, "a", &["t"], &["r"]);
        let b = ins(&mut idx, "b", &["t"], &[]);
        assert_ne!(a, b);
        assert!(idx.holds(b"a", a) && !idx.holds(b"a", b) && !idx.holds(b"a", 99));
        let before = idx.facts();
        let mut change = LinkChange::default();
        change.push(Link::TagGone, b"t");
        // A copy of `a` under a new name still carries `a`'s id; a stale id names nothing.
        for (key, id) in [(&b"copy"[..], a), (b"b", a), (b"a", 99)] {
            assert!(!idx.remove(key, id, bs(&["t"]), bs(&["r"]), 1));
            assert!(!idx.relink(key, id, &change, 1, 1));
            assert!(!idx.add_links(key, id, true, bs(&["new"]), bs(&[])));
        }
        assert_eq!(idx.facts(), before);
        assert_eq!((idx.len(), idx.value_bytes()), (2, 2));
        assert!(idx.check_internal().is_empty());
        // What the server never lets happen, a key taken in twice, is reported.
        ins(&mut idx, "a", &[], &[]);
        assert_eq!(idx.check_internal(), ["key \"a\" has more than one id"]);
    }

    #[test]
    fn may_hold_goes_by_the_namespace() {
        let mut idx = DbIndex::new();
        assert!(!idx.may_hold(b"user:1") && !idx.may_hold(b"bare"));
        ins(&mut idx, "user:1", &[], &[]);
        ins(&mut idx, "bare", &[], &[]);
        for (name, may) in [
            ("user:1", true),
            ("user:2", true),
            ("users", true),
            ("res:1", false),
            (":x", false),
        ] {
            assert_eq!(idx.may_hold(name.as_bytes()), may, "{name}");
        }
        assert!(rm(&mut idx, "user:1", &[], &[]));
        assert!(!idx.may_hold(b"user:2"));
    }

    #[test]
    fn misfiled_lists_entries_whose_id_is_not_their_keys() {
        let mut idx = DbIndex::new();
        let a = ins(&mut idx, "a", &[], &[]);
        let b = ins(&mut idx, "b", &[], &[]);
        assert!(misfiled(0, &idx, [(&b"a"[..], a), (b"b", b)]).is_empty());
        assert_eq!(
            misfiled(3, &idx, [(&b"a"[..], b), (b"c", 7)]),
            [
                "db3: cache entry \"a\" carries id 1, which the index gives to \"b\"",
                "db3: cache entry \"c\" carries id 7, which the index gives to no key",
            ]
        );
    }

    #[test]
    fn add_links() {
        let mut idx = DbIndex::new();
        let a = ins(&mut idx, "a", &["t"], &["r"]);
        ins(&mut idx, "b", &["u"], &[]);
        assert!(idx.add_links(b"a", a, true, bs(&["t2"]), bs(&[])));
        assert!(!idx.add_links(b"missing", a, true, bs(&["t2"]), bs(&[])));
        assert_eq!(
            idx.facts(),
            vec![
                (b("a"), vec![b("t"), b("t2")], vec![b("r")]),
                (b("b"), vec![b("u")], vec![]),
            ]
        );
        assert!(idx.check_internal().is_empty());
    }

    #[test]
    fn relink_applies_a_change() {
        let mut idx = DbIndex::new();
        let k = ins(&mut idx, "k", &["a", "b"], &["r"]);
        let mut change = LinkChange::default();
        change.push(Link::TagGone, b"a");
        change.push(Link::TagNew, b"c");
        change.push(Link::DepGone, b"r");
        change.push(Link::DepNew, b"s");
        assert_eq!(idx.value_bytes(), 1);
        assert!(idx.relink(b"k", k, &change, 1, 7));
        assert_eq!(idx.value_bytes(), 7);
        assert_eq!(
            idx.facts(),
            vec![(b("k"), vec![b("b"), b("c")], vec![b("s")])]
        );
        assert!(!idx.relink(b"other", k, &change, 7, 1));
        assert_eq!(idx.value_bytes(), 7);
        assert!(idx.check_internal().is_empty());
    }

    #[test]
    fn members_grow_into_a_set_and_shrink_back() {
        let mut idx = DbIndex::new();
        let names: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        for n in &names {
            ins(&mut idx, n, &["big"], &[]);
        }
        assert_eq!(idx.tag_sizes(None, None), vec![(b("big"), 50)]);
        for n in &names[..48] {
            assert!(rm(&mut idx, n, &["big"], &[]));
        }
        assert_eq!(
            keys(&idx, Selector::Tags(vec![b("big")]), 0),
            vec!["k48", "k49"]
        );
        assert!(idx.check_internal().is_empty());
    }

    #[test]
    fn tags_are_exact_and_union_counts_once() {
        let mut idx = DbIndex::new();
        ins(&mut idx, "1", &["get_track"], &[]);
        ins(&mut idx, "2", &["get_all_tracks"], &[]);
        ins(&mut idx, "3", &["get_track", "get_all_tracks"], &[]);
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
        assert_eq!(
            idx.resolve(
                &Selector::Tags(vec![b("get_track"), b("get_all_tracks")]),
                0
            )
            .len(),
            3
        );
    }

    #[test]
    fn pattern_namespace_and_all() {
        let mut idx = DbIndex::new();
        for k in ["user:1", "user:2", "user:10", "users", "post:1", "a*b"] {
            ins(&mut idx, k, &[], &[]);
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
        // KEY lists are taken as entries (the caller checks them against the keyspace); a
        // pattern without wildcards is looked for.
        assert_eq!(
            keys(
                &idx,
                Selector::Keys(vec![b("users"), b("users"), b("a")]),
                0
            ),
            vec!["a", "users"]
        );
        for (lit, found) in [
            ("users", true),
            ("user:1", true),
            ("user", false),
            ("user:3", false),
        ] {
            let want: Vec<&str> = if found { vec![lit] } else { vec![] };
            assert_eq!(keys(&idx, Selector::Pattern(b(lit)), 0), want);
            assert_eq!(idx.count(&Selector::Pattern(b(lit))), u64::from(found));
        }
    }

    #[test]
    fn prefixes_inside_and_across_namespaces() {
        let mut idx = DbIndex::new();
        for k in ["a:b:c", "a:bc", "a:b", "ab", "a", ":x", "b:1"] {
            ins(&mut idx, k, &[], &[]);
        }
        assert_eq!(keys(&idx, Selector::Namespace(b("a:b")), 0), vec!["a:b:c"]);
        assert_eq!(
            keys(&idx, Selector::Namespace(b("a")), 0),
            vec!["a:b", "a:b:c", "a:bc"]
        );
        assert_eq!(keys(&idx, Selector::Namespace(b("")), 0), vec![":x"]);
        assert_eq!(
            keys(&idx, Selector::Pattern(b("a*")), 0),
            vec!["a", "a:b", "a:b:c", "a:bc", "ab"]
        );
        assert_eq!(
            keys(&idx, Selector::Pattern(b("a:b*")), 0),
            vec!["a:b", "a:b:c", "a:bc"]
        );
        assert_eq!(
            keys(&idx, Selector::Pattern(b("?:*")), 0),
            vec!["a:b", "a:b:c", "a:bc", "b:1"]
        );
        assert!(idx.check_internal().is_empty());
    }

    fn chain(n: usize) -> DbIndex {
        // c0 <- c1 <- c2 ...: c(i+1) depends on c(i)
        let mut idx = DbIndex::new();
        ins(&mut idx, "c0", &[], &[]);
        for i in 1..n {
            let dep = format!("c{}", i - 1);
            ins(&mut idx, &format!("c{i}"), &[], &[&dep]);
        }
        idx
    }

    #[test]
    fn a_cascade_up_to_a_limit_stops_past_it() {
        let idx = chain(40);
        let walk = |depth, limit| {
            cascade_up_to(
                vec![b("c0")],
                depth,
                limit,
                |k| idx.dependents_of_all(k),
                |_| true,
            )
        };
        let whole = walk(100, 40);
        assert_eq!((whole.keys.len(), whole.cut), (40, false));
        let cut = walk(100, 39);
        assert_eq!((cut.keys.len(), cut.cut), (40, true));
        let cut = walk(100, 5);
        assert_eq!((cut.keys.len(), cut.cut), (6, true));
        assert_eq!(&cut.keys[..], &whole.keys[..6]);
        // The seeds alone (no cascade) are cut the same way.
        let seeds: Vec<Vec<u8>> = (0..10).map(|i| b(&format!("c{i}"))).collect();
        let flat = cascade_up_to(seeds.clone(), 0, 3, |_| Vec::new(), |_| true);
        assert_eq!((flat.keys.len(), flat.cut), (4, true));
        let flat = cascade_up_to(seeds, 0, 10, |_| Vec::new(), |_| true);
        assert_eq!((flat.keys.len(), flat.cut), (10, false));
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
    fn cascade_skips_dead_entries_and_their_dependents() {
        let idx = chain(5);
        let got = cascade(
            vec![b("c0")],
            16,
            |k| idx.dependents_of_all(k),
            |k| k != b"c2",
        );
        assert_eq!(
            got,
            Reach {
                keys: vec![b("c0"), b("c1")],
                selected: 1,
                depth: 1,
                hops: vec![0, 1],
                cut: false,
            }
        );
        let all = cascade(
            vec![b("c0"), b("c1")],
            16,
            |k| idx.dependents_of_all(k),
            |_| true,
        );
        assert_eq!((all.keys.len(), all.selected, all.depth), (5, 2, 3));
        let flat = cascade(vec![b("c3")], 0, |k| idx.dependents_of_all(k), |_| true);
        assert_eq!((flat.keys.len(), flat.selected, flat.depth), (1, 1, 0));
    }

    #[test]
    fn frontier_gives_the_hops_left_after_each_key() {
        let idx = chain(5);
        let got = cascade(vec![b("c0")], 3, |k| idx.dependents_of_all(k), |_| true);
        assert_eq!(got.hops, vec![0, 1, 2, 3]);
        // c3 is at the last allowed hop: its dependents are out of reach anywhere.
        assert_eq!(
            got.frontier(3),
            vec![(b("c0"), 3), (b("c1"), 2), (b("c2"), 1)]
        );
        assert!(got.frontier(0).is_empty());
        // Without a local cascade every selected key keeps the whole depth.
        let flat = cascade(
            vec![b("c3"), b("c4")],
            0,
            |k| idx.dependents_of_all(k),
            |_| true,
        );
        assert_eq!(flat.frontier(2), vec![(b("c3"), 2), (b("c4"), 2)]);
    }

    #[test]
    fn cycles_and_diamonds_terminate_and_count_once() {
        let mut idx = DbIndex::new();
        ins(&mut idx, "a", &[], &["c"]);
        ins(&mut idx, "b", &[], &["a"]);
        ins(&mut idx, "c", &[], &["b"]);
        assert_eq!(
            keys(&idx, Selector::Keys(vec![b("a")]), 100),
            vec!["a", "b", "c"]
        );
        let mut d = DbIndex::new();
        ins(&mut d, "top", &[], &[]);
        ins(&mut d, "l", &[], &["top"]);
        ins(&mut d, "r", &[], &["top"]);
        ins(&mut d, "bottom", &[], &["l", "r"]);
        assert_eq!(d.resolve(&Selector::Keys(vec![b("top")]), 16).len(), 4);
        // A self-dependency is harmless.
        ins(&mut d, "self", &[], &["self"]);
        assert_eq!(d.resolve(&Selector::Keys(vec![b("self")]), 16).len(), 1);
    }

    #[test]
    fn tag_sizes_with_a_count_are_the_first_of_the_full_order() {
        let mut idx = DbIndex::new();
        // Tag t<j> is on the entries i with i % (j + 1) == 0: sizes with many ties.
        for i in 0..60 {
            let tags: Vec<String> = (0..12)
                .filter(|j| i % (j + 1) == 0)
                .map(|j| format!("t{j}"))
                .collect();
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            ins(&mut idx, &format!("k{i}"), &tags, &[]);
        }
        let full = idx.tag_sizes(None, None);
        assert_eq!(full.len(), 12);
        for n in 0..=13 {
            let want: Vec<_> = full.iter().take(n).cloned().collect();
            assert_eq!(idx.tag_sizes(None, Some(n)), want, "COUNT {n}");
        }
    }

    #[test]
    fn dependents_and_tag_sizes() {
        let mut idx = DbIndex::new();
        ins(&mut idx, "x", &["big", "small"], &["r"]);
        ins(&mut idx, "y", &["big"], &["r"]);
        ins(&mut idx, "z", &[], &[]);
        assert_eq!(idx.some_dependents(b"r", 9), (vec![b("x"), b("y")], 0));
        assert_eq!(idx.some_dependents(b"r", 1).1, 1);
        let g = Glob::new(b"b*");
        assert_eq!(
            idx.tag_sizes(None, None),
            vec![(b("big"), 2), (b("small"), 1)]
        );
        assert_eq!(idx.tag_sizes(Some(&g), None), vec![(b("big"), 2)]);
        assert_eq!(idx.tag_sizes(None, Some(1)), vec![(b("big"), 2)]);
        assert_eq!(idx.tag_sizes(None, Some(5)).len(), 2);
        assert_eq!(idx.tagged_entries(), 2);
        assert_eq!(idx.dependency_edges(), 2);
    }

    #[test]
    fn diff_reports_both_directions() {
        let mut live = DbIndex::new();
        ins(&mut live, "a", &["t"], &[]);
        ins(&mut live, "ghost", &[], &[]);
        let mut exp = DbIndex::new();
        ins(&mut exp, "a", &["u"], &[]);
        ins(&mut exp, "missing", &[], &[]);
        let d = diff(0, &live, &exp);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(diff(0, &exp, &exp).is_empty());
    }

    fn slices(l: &NameList) -> Vec<&[u8]> {
        l.iter().map(Vec::as_slice).collect()
    }

    proptest! {
        /// The figures kept as links change (tagged entries, dependency links, bytes, the large
        /// tags) agree with a count after any mix of inserts, replacements, added links and
        /// removals; the largest tags found through them are those of a full sort.
        #[test]
        fn tally_follows_every_change(ops in proptest::collection::vec(
            (0u8..4, 0u8..90, proptest::collection::vec(0u8..4, 0..3), proptest::collection::vec(0u8..6, 0..2)),
            0..600)) {
            let mut idx = DbIndex::new();
            let mut model: BTreeMap<Vec<u8>, (NameList, NameList)> = BTreeMap::new();
            for (op, k, tags, deps) in ops {
                let key = format!("k{k}").into_bytes();
                let mut tags: NameList = sorted(tags.iter().map(|t| format!("t{t}").into_bytes()).collect());
                let mut deps: NameList = sorted(deps.iter().map(|d| format!("r{d}").into_bytes()).collect());
                tags.dedup();
                deps.dedup();
                match (op, model.get(&key).cloned()) {
                    (0, None) | (1, None) | (2, None) => {
                        idx.insert(&key, slices(&tags), slices(&deps), 1);
                        model.insert(key, (tags, deps));
                    }
                    (0, Some((ot, od))) => {
                        // Replaced whole: the change between the old links and the new.
                        let mut c = LinkChange::default();
                        c.set_tagged(!ot.is_empty(), !tags.is_empty());
                        for t in ot.iter().filter(|t| !tags.contains(t)) { c.push(Link::TagGone, t); }
                        for t in tags.iter().filter(|t| !ot.contains(t)) { c.push(Link::TagNew, t); }
                        for d in od.iter().filter(|d| !deps.contains(d)) { c.push(Link::DepGone, d); }
                        for d in deps.iter().filter(|d| !od.contains(d)) { c.push(Link::DepNew, d); }
                        prop_assert!(idx.relink(&key, id(&idx, &key), &c, 1, 1));
                        model.insert(key, (tags, deps));
                    }
                    (1, Some((mut ot, mut od))) => {
                        let new_t: NameList = tags.into_iter().filter(|t| !ot.contains(t)).collect();
                        let new_d: NameList = deps.into_iter().filter(|d| !od.contains(d)).collect();
                        prop_assert!(idx.add_links(&key, id(&idx, &key), !ot.is_empty(), slices(&new_t), slices(&new_d)));
                        ot.extend(new_t);
                        od.extend(new_d);
                        model.insert(key, (sorted(ot), sorted(od)));
                    }
                    (_, Some((ot, od))) => {
                        prop_assert!(idx.remove(&key, id(&idx, &key), slices(&ot), slices(&od), 1));
                        model.remove(&key);
                    }
                    (_, None) => {}
                }
                prop_assert_eq!(idx.check_internal(), Vec::<String>::new());
            }
            let all = idx.tag_sizes(None, None);
            for n in 0..6 {
                prop_assert_eq!(idx.tag_sizes(None, Some(n)), all[..n.min(all.len())].to_vec());
            }
            let glob = Glob::new(b"t[12]");
            let matching: Vec<_> = all.iter().filter(|(t, _)| glob.matches(t)).cloned().collect();
            prop_assert_eq!(idx.tag_sizes(Some(&glob), Some(1)), matching[..matching.len().min(1)].to_vec());
            let largest = all.first().filter(|(_, n)| *n >= BIG_ENTER).map(|(t, n)| (t.clone(), *n as u64));
            prop_assert_eq!(idx.link_figures().2, largest);
        }

        /// Random inserts and removes keep the index consistent with a simple model.
        #[test]
        fn index_matches_model(ops in proptest::collection::vec(
            (0u8..3, 0u8..12, proptest::collection::vec(0u8..5, 0..4), proptest::collection::vec(0u8..12, 0..3)),
            0..200)) {
            let mut idx = DbIndex::new();
            let mut model: BTreeMap<Vec<u8>, (NameList, NameList)> = BTreeMap::new();
            // Half the keys are too long to be held in their id slot.
            let name = |k: u8| if k < 6 { format!("k{k}") } else { format!("a-longer-key-name-{k}") }.into_bytes();
            for (op, k, tags, deps) in ops {
                let key = name(k);
                let mut tags: NameList = sorted(tags.iter().map(|t| format!("t{t}").into_bytes()).collect());
                let mut deps: NameList = sorted(deps.iter().map(|&d| name(d)).collect());
                tags.dedup();
                deps.dedup();
                match op {
                    0 | 1 => {
                        if let Some((t, d)) = model.remove(&key) {
                            let id = id(&idx, &key);
                            prop_assert!(idx.remove(&key, id, t.iter().map(Vec::as_slice), d.iter().map(Vec::as_slice), t.len() as u64));
                        }
                        idx.insert(&key, tags.iter().map(Vec::as_slice), deps.iter().map(Vec::as_slice), tags.len() as u64);
                        model.insert(key, (tags, deps));
                    }
                    _ => {
                        let had = model.remove(&key);
                        let removed = match &had {
                            Some((t, d)) => idx.remove(&key, id(&idx, &key), t.iter().map(Vec::as_slice), d.iter().map(Vec::as_slice), t.len() as u64),
                            // Not indexed: no id names it, whichever is tried.
                            None => (0..=idx.names.len() as KeyId)
                                .any(|i| idx.remove(&key, i, std::iter::empty(), std::iter::empty(), 0)),
                        };
                        prop_assert_eq!(removed, had.is_some());
                    }
                }
            }
            prop_assert!(idx.check_internal().is_empty());
            // Each entry's value size counted once (the model's sizes: its tag counts).
            let sized: u64 = model.values().map(|(t, _)| t.len() as u64).sum();
            prop_assert_eq!(idx.value_bytes(), sized);
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
            // The LAZY count agrees with what the selector selects.
            let t = |i: u8| format!("t{i}").into_bytes();
            for sel in [
                Selector::All,
                Selector::Tags(vec![t(0)]),
                Selector::Tags(vec![t(0), t(1), t(1), t(4), b"none".to_vec()]),
                Selector::Dependents(vec![name(1), name(2), name(7)]),
                Selector::Pattern(b"a-longer-*-1?".to_vec()),
                Selector::Namespace(b"k1".to_vec()),
                Selector::Pattern(b"k1*".to_vec()),
                Selector::Pattern(b"k1".to_vec()),
                Selector::Keys(vec![name(1), name(1), name(8)]),
            ] {
                prop_assert_eq!(idx.count(&sel), idx.select(&sel).len() as u64, "{:?}", sel);
            }
        }
    }
}
