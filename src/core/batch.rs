//! The BATCHED strategy's queue: invalidation requests wait `cache.batch-delay-ms`, identical
//! requests queued in the same window are coalesced, and the queue survives a save and reload
//! (it is written into the RDB's module aux data).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;

use ahash::AHasher;

use super::entry::{put_bytes, put_varint, DecodeError, Reader};
use super::index::Selector;

/// One queued invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Given by the master; replicas and the AOF name it in `CACHE.PENDING DONE`.
    pub id: u64,
    pub db: usize,
    pub selector: Selector,
    /// None: `cache.max-cascade-depth` when it is applied.
    pub depth: Option<u32>,
    pub context: Option<Vec<u8>>,
    /// The CACHE.RULE whose step queued it, credited with its entries when applied.
    pub rule: Option<Vec<u8>>,
    /// The ACL user who queued it: applied with that user's key permissions.
    pub user: Option<Vec<u8>>,
    pub queued_ms: i64,
    pub due_ms: i64,
    /// How many identical requests were folded into this one.
    pub coalesced: u64,
}

/// Identical requests (same database, selector, depth and user) are one: requests of
/// different users are never folded, each is applied with its own user's rights.
type RequestKey = (usize, Selector, Option<u32>, Option<Vec<u8>>);

/// The queue, oldest first (by id), with indexes by request (coalescing) and by due time: every
/// operation is O(log n).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    items: BTreeMap<u64, Pending>,
    by_request: HashMap<RequestKey, u64, BuildHasherDefault<AHasher>>,
    due: BTreeSet<(i64, u64)>,
    next_id: u64,
    /// The sum of `pending_heap` over the queue (kept as it changes: STATS reads it in O(1)).
    heap: u64,
}

fn selector_heap(s: &Selector) -> usize {
    let list = |v: &Vec<Vec<u8>>| {
        v.capacity() * std::mem::size_of::<Vec<u8>>() + v.iter().map(Vec::capacity).sum::<usize>()
    };
    match s {
        Selector::Keys(v) | Selector::Tags(v) | Selector::Dependents(v) => list(v),
        Selector::Pattern(p) | Selector::Namespace(p) => p.capacity(),
        Selector::All => 0,
    }
}

/// The heap one queued request takes: its strings, the copy of its selector and user in the
/// request index, and its share of the three tables (B-tree nodes about two thirds full).
fn pending_heap(p: &Pending) -> u64 {
    let opt = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, Vec::capacity);
    let strings = 2 * (selector_heap(&p.selector) + opt(&p.user)) + opt(&p.context) + opt(&p.rule);
    let item = (8 + std::mem::size_of::<Pending>()) * 3 / 2;
    let request = std::mem::size_of::<RequestKey>() + 8 + 1;
    let due = 16 * 3 / 2;
    (strings + item + request + due) as u64
}

/// What `push` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    New(u64),
    Coalesced(u64),
}

/// Encoding version of the queue in aux data and `CACHE.PENDING ADD`. Versions 2 (no rule) and
/// 3 (no user) are still read.
const BATCH_VERSION: u8 = 4;

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}

fn request_key(p: &Pending) -> RequestKey {
    (p.db, p.selector.clone(), p.depth, p.user.clone())
}

impl Batch {
    pub const fn new() -> Batch {
        Batch {
            items: BTreeMap::new(),
            by_request: HashMap::with_hasher(BuildHasherDefault::new()),
            due: BTreeSet::new(),
            next_id: 1,
            heap: 0,
        }
    }

    /// Queues a request of `user` due at `now_ms + delay_ms`; an identical request (same
    /// database, selector, depth and user) already waiting absorbs it.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        db: usize,
        selector: Selector,
        depth: Option<u32>,
        context: Option<Vec<u8>>,
        user: Option<&[u8]>,
        now_ms: i64,
        delay_ms: i64,
    ) -> Queued {
        let key = (db, selector, depth, user.map(<[u8]>::to_vec));
        if let Some(&id) = self.by_request.get(&key) {
            if let Some(p) = self.items.get_mut(&id) {
                p.coalesced += 1;
            }
            return Queued::Coalesced(id);
        }
        let id = self.next_id.max(1);
        let (db, selector, depth, user) = key;
        self.add(Pending {
            id,
            db,
            selector,
            depth,
            context,
            rule: None,
            user,
            queued_ms: now_ms,
            due_ms: now_ms.saturating_add(delay_ms),
            coalesced: 0,
        });
        Queued::New(id)
    }

    fn add(&mut self, item: Pending) {
        self.next_id = self.next_id.max(item.id.saturating_add(1));
        self.heap += pending_heap(&item);
        self.by_request.insert(request_key(&item), item.id);
        self.due.insert((item.due_ms, item.id));
        self.items.insert(item.id, item);
    }

    /// Records the rule a new request is credited to.
    pub fn attribute(&mut self, id: u64, rule: Option<&[u8]>) {
        if let Some(p) = self.items.get_mut(&id) {
            self.heap -= pending_heap(p);
            p.rule = rule.map(<[u8]>::to_vec);
            self.heap += pending_heap(p);
        }
    }

    /// SWAPDB: the requests for either database follow their data to the other one.
    pub fn swap(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let mut moved = false;
        for p in self.items.values_mut() {
            if p.db == a {
                p.db = b;
                moved = true;
            } else if p.db == b {
                p.db = a;
                moved = true;
            }
        }
        if moved {
            self.by_request = self
                .items
                .values()
                .map(|p| (request_key(p), p.id))
                .collect();
        }
    }

    /// Adds a request exactly as the master queued it (replication, AOF replay).
    pub fn insert(&mut self, item: Pending) {
        self.remove(item.id);
        self.add(item);
    }

    /// Counts one more identical request folded into `id`.
    pub fn coalesce(&mut self, id: u64) {
        if let Some(p) = self.items.get_mut(&id) {
            p.coalesced += 1;
        }
    }

    /// Drops a request (applied by the master); whether it was there.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(p) = self.items.remove(&id) else {
            return false;
        };
        self.heap -= pending_heap(&p);
        let key = request_key(&p);
        if self.by_request.get(&key) == Some(&id) {
            self.by_request.remove(&key);
        }
        self.due.remove(&(p.due_ms, id));
        true
    }

    /// Removes and returns the requests due at `now_ms`, oldest first.
    pub fn take_due(&mut self, now_ms: i64) -> Vec<Pending> {
        let mut ids: Vec<u64> = self
            .due
            .range(..=(now_ms, u64::MAX))
            .map(|&(_, id)| id)
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| {
                let p = self.items.get(&id).cloned();
                self.remove(id);
                p
            })
            .collect()
    }

    /// Removes and returns every request.
    pub fn take_all(&mut self) -> Vec<Pending> {
        self.by_request.clear();
        self.due.clear();
        self.heap = 0;
        std::mem::take(&mut self.items).into_values().collect()
    }

    /// When the next request is due.
    pub fn next_due(&self) -> Option<i64> {
        self.due.first().map(|&(due, _)| due)
    }

    /// The requests, oldest first.
    pub fn items(&self) -> impl Iterator<Item = &Pending> {
        self.items.values()
    }

    pub fn get(&self, id: u64) -> Option<&Pending> {
        self.items.get(&id)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The heap the queue takes (an estimate, O(1)): its requests and the request index's
    /// spare slots.
    pub fn heap_bytes(&self) -> u64 {
        let spare = self.by_request.capacity() - self.by_request.len();
        self.heap + (spare * (std::mem::size_of::<RequestKey>() + 8 + 1)) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![BATCH_VERSION];
        put_varint(&mut out, self.next_id);
        put_varint(&mut out, self.items.len() as u64);
        for p in self.items.values() {
            put_item(&mut out, p);
        }
        out
    }

    /// Parses what `encode` wrote; never panics, checks lengths before allocating.
    pub fn decode(buf: &[u8]) -> Result<Batch, DecodeError> {
        let mut r = Reader { buf, pos: 0 };
        let version = read_version(&mut r)?;
        let next_id = r.varint()?;
        let n = r.len()?;
        // Each item takes at least 9 bytes: never reserve more than the input can hold.
        let mut batch = Batch::new();
        for _ in 0..n {
            batch.insert(read_item(&mut r, version)?);
        }
        if r.pos != buf.len() {
            return Err(DecodeError::Corrupt("trailing bytes"));
        }
        batch.next_id = batch.next_id.max(next_id);
        Ok(batch)
    }
}

/// One request on its own (the argument of `CACHE.PENDING ADD`).
pub fn encode_item(p: &Pending) -> Vec<u8> {
    let mut out = vec![BATCH_VERSION];
    put_item(&mut out, p);
    out
}

pub fn decode_item(buf: &[u8]) -> Result<Pending, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let version = read_version(&mut r)?;
    let p = read_item(&mut r, version)?;
    if r.pos != buf.len() {
        return Err(DecodeError::Corrupt("trailing bytes"));
    }
    Ok(p)
}

fn put_item(out: &mut Vec<u8>, p: &Pending) {
    put_varint(out, p.id);
    put_varint(out, p.db as u64);
    put_selector(out, &p.selector);
    put_varint(out, p.depth.map_or(0, |d| u64::from(d) + 1));
    for field in [&p.context, &p.rule, &p.user] {
        match field {
            None => out.push(0),
            Some(c) => {
                out.push(1);
                put_bytes(out, c);
            }
        }
    }
    put_varint(out, p.queued_ms as u64);
    put_varint(out, p.due_ms as u64);
    put_varint(out, p.coalesced);
}

/// Writes a selector: its kind, then its arguments (shared with the LAZY marks).
pub(crate) fn put_selector(out: &mut Vec<u8>, selector: &Selector) {
    let (kind, args): (u8, Vec<&[u8]>) = match selector {
        Selector::Keys(v) => (0, v.iter().map(Vec::as_slice).collect()),
        Selector::Tags(v) => (1, v.iter().map(Vec::as_slice).collect()),
        Selector::Pattern(x) => (2, vec![x.as_slice()]),
        Selector::Namespace(x) => (3, vec![x.as_slice()]),
        Selector::All => (4, vec![]),
        Selector::Dependents(v) => (5, v.iter().map(Vec::as_slice).collect()),
    };
    out.push(kind);
    put_varint(out, args.len() as u64);
    for a in args {
        put_bytes(out, a);
    }
}

/// Reads what `put_selector` wrote.
pub(crate) fn read_selector(r: &mut Reader) -> Result<Selector, DecodeError> {
    let kind = r.byte()?;
    let count = r.len()?;
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        args.push(r.bytes()?.to_vec());
    }
    let one = |mut args: Vec<Vec<u8>>| args.pop().ok_or(DecodeError::Corrupt("selector"));
    Ok(match kind {
        0 => Selector::Keys(args),
        1 => Selector::Tags(args),
        2 => Selector::Pattern(one(args)?),
        3 => Selector::Namespace(one(args)?),
        4 => Selector::All,
        5 => Selector::Dependents(args),
        _ => return Err(DecodeError::Corrupt("selector kind")),
    })
}

fn read_version(r: &mut Reader) -> Result<u8, DecodeError> {
    match r.byte()? {
        v @ 2..=BATCH_VERSION => Ok(v),
        v if v > BATCH_VERSION => Err(DecodeError::NewerVersion(v)),
        _ => Err(DecodeError::Corrupt("version")),
    }
}

fn read_item(r: &mut Reader, version: u8) -> Result<Pending, DecodeError> {
    let id = r.varint()?;
    let db = usize::try_from(r.varint()?).map_err(|_| DecodeError::Corrupt("db"))?;
    let selector = read_selector(r)?;
    let depth = match r.varint()? {
        0 => None,
        d => Some(u32::try_from(d - 1).map_err(|_| DecodeError::Corrupt("depth"))?),
    };
    let mut optional = || -> Result<Option<Vec<u8>>, DecodeError> {
        match r.byte()? {
            0 => Ok(None),
            1 => Ok(Some(r.bytes()?.to_vec())),
            _ => Err(DecodeError::Corrupt("optional field flag")),
        }
    };
    let context = optional()?;
    let rule = if version >= 3 { optional()? } else { None };
    let user = if version >= 4 { optional()? } else { None };
    let queued_ms = r.varint()? as i64;
    let due_ms = r.varint()? as i64;
    let coalesced = r.varint()?;
    Ok(Pending {
        id,
        db,
        selector,
        depth,
        context,
        rule,
        user,
        queued_ms,
        due_ms,
        coalesced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_bytes_follow_the_queue() {
        let mut b = Batch::new();
        let empty = b.heap_bytes();
        let pattern = vec![b'p'; 4000];
        for i in 0..100u8 {
            let mut p = Vec::with_capacity(4001);
            p.extend_from_slice(&pattern);
            p.push(i);
            b.push(
                0,
                Selector::Pattern(p),
                None,
                Some(b"ctx".to_vec()),
                Some(b"u"),
                0,
                100,
            );
        }
        let grown = b.heap_bytes() - empty;
        // Each request holds its pattern twice (the request and the request index).
        assert!(grown >= 100 * 2 * 4001, "{grown}");
        assert!(grown <= 100 * (2 * 4001 + 1024), "{grown}");
        // Coalescing adds nothing; attributing adds the rule's name.
        let before = b.heap;
        let mut p = pattern.clone();
        p.push(0);
        let Queued::Coalesced(id) = b.push(0, Selector::Pattern(p), None, None, Some(b"u"), 0, 100)
        else {
            panic!("coalesced")
        };
        assert_eq!(b.heap, before);
        b.attribute(id, Some(b"rule"));
        assert_eq!(b.heap, before + 4);
        let half = b.take_due(100).len();
        assert_eq!(half, 100);
        assert_eq!(b.heap, 0, "every request taken");
        b.push(0, Selector::All, None, None, None, 0, 100);
        assert!(b.heap > 0);
        b.take_all();
        assert_eq!(b.heap, 0);
    }
    use proptest::prelude::*;

    fn tag(t: &str) -> Selector {
        Selector::Tags(vec![t.as_bytes().to_vec()])
    }

    #[test]
    fn identical_requests_coalesce_until_applied() {
        let mut b = Batch::new();
        assert_eq!(
            b.push(0, tag("a"), None, None, None, 1000, 100),
            Queued::New(1)
        );
        let again = b.push(0, tag("a"), None, Some(b"later".to_vec()), None, 1050, 100);
        assert_eq!(again, Queued::Coalesced(1));
        let other_db = b.push(1, tag("a"), None, None, None, 1050, 100);
        assert_eq!(other_db, Queued::New(2));
        let other_depth = b.push(0, tag("a"), Some(0), None, None, 1050, 100);
        assert_eq!(other_depth, Queued::New(3));
        assert_eq!(
            b.push(0, tag("b"), None, None, None, 1060, 100),
            Queued::New(4)
        );
        assert_eq!(b.len(), 4);
        assert_eq!(b.get(1).map(|p| p.coalesced), Some(1));
        assert_eq!(b.next_due(), Some(1100));
        assert!(b.take_due(1099).is_empty());
        let due = b.take_due(1150);
        assert_eq!(due.len(), 3);
        assert_eq!(due[0].context, None, "the first request's context is kept");
        assert_eq!(b.next_due(), Some(1160));
        let new_window = b.push(0, tag("a"), None, None, None, 1200, 100);
        assert_eq!(new_window, Queued::New(5), "a new window after applying");
        assert_eq!(b.take_all().len(), 2);
        assert!(b.is_empty());
    }

    #[test]
    fn requests_of_different_users_never_fold() {
        let mut b = Batch::new();
        let app = Some(&b"app"[..]);
        assert_eq!(b.push(0, tag("a"), None, None, app, 10, 5), Queued::New(1));
        assert_eq!(b.push(0, tag("a"), None, None, None, 10, 5), Queued::New(2));
        let other = b.push(0, tag("a"), None, None, Some(b"other"), 10, 5);
        assert_eq!(other, Queued::New(3));
        assert_eq!(
            b.push(0, tag("a"), None, None, app, 11, 5),
            Queued::Coalesced(1)
        );
        assert_eq!(
            b.push(0, tag("a"), None, None, None, 11, 5),
            Queued::Coalesced(2)
        );
        let users: Vec<_> = b.items().map(|p| p.user.clone()).collect();
        assert_eq!(
            users,
            vec![Some(b"app".to_vec()), None, Some(b"other".to_vec())]
        );
        // A mirror (replica, AOF replay) folds the same way.
        let mirror = Batch::decode(&b.encode()).unwrap();
        assert_eq!(mirror, b);
    }

    #[test]
    fn requests_follow_their_data_through_swapdb() {
        let mut b = Batch::new();
        b.push(0, tag("a"), None, None, None, 10, 5);
        b.push(1, tag("b"), None, None, None, 10, 5);
        b.push(2, tag("c"), None, None, None, 10, 5);
        b.swap(0, 1);
        let dbs: Vec<usize> = b.items().map(|p| p.db).collect();
        assert_eq!(dbs, vec![1, 0, 2]);
        // Coalescing follows too: the request for tag a is database 1's now.
        assert_eq!(
            b.push(1, tag("a"), None, None, None, 11, 5),
            Queued::Coalesced(1)
        );
        assert_eq!(b.push(0, tag("a"), None, None, None, 11, 5), Queued::New(4));
        b.swap(2, 2);
        b.swap(5, 6);
        assert_eq!(
            b.items().map(|p| p.db).collect::<Vec<_>>(),
            vec![1, 0, 2, 0]
        );
        assert!(b.remove(1));
        assert_eq!(b.push(1, tag("a"), None, None, None, 12, 5), Queued::New(5));
    }

    #[test]
    fn a_mirror_follows_the_master() {
        let mut master = Batch::new();
        let mut mirror = Batch::new();
        let Queued::New(id) = master.push(0, tag("a"), None, None, None, 10, 5) else {
            panic!()
        };
        mirror.insert(decode_item(&encode_item(master.get(id).unwrap())).unwrap());
        master.push(0, tag("a"), None, None, None, 11, 5);
        mirror.coalesce(id);
        assert_eq!(
            mirror.items().collect::<Vec<_>>(),
            master.items().collect::<Vec<_>>()
        );
        assert!(mirror.remove(id));
        assert!(!mirror.remove(id));
        assert!(mirror.is_empty());
        // Ids given after a replayed one do not collide with it.
        let mut replayed = Batch::new();
        replayed.insert(master.get(id).unwrap().clone());
        assert_eq!(
            replayed.push(0, tag("z"), None, None, None, 12, 5),
            Queued::New(id + 1)
        );
        assert!(decode_item(&[BATCH_VERSION]).is_err());
    }

    #[test]
    fn version_2_queues_still_load() {
        // A version-2 queue (written before requests carried their rule): one TAG request.
        let mut v2 = vec![2u8];
        put_varint(&mut v2, 8); // next id
        put_varint(&mut v2, 1); // one item
        put_varint(&mut v2, 7); // id
        put_varint(&mut v2, 0); // db
        v2.push(1); // TAG
        put_varint(&mut v2, 1);
        put_bytes(&mut v2, b"t");
        put_varint(&mut v2, 0); // default depth
        v2.push(1); // context
        put_bytes(&mut v2, b"ctx");
        put_varint(&mut v2, 100);
        put_varint(&mut v2, 200);
        put_varint(&mut v2, 0);
        let b = Batch::decode(&v2).unwrap();
        assert_eq!(b.len(), 1);
        let p = b.get(7).unwrap();
        assert_eq!(
            (p.id, p.rule.clone(), p.context.clone()),
            (7, None, Some(b"ctx".to_vec()))
        );
        assert_eq!((p.queued_ms, p.due_ms), (100, 200));
        assert_eq!(Batch::decode(&b.encode()).unwrap(), b);
        assert_eq!(Batch::decode(&[9]), Err(DecodeError::NewerVersion(9)));
    }

    #[test]
    fn encode_round_trip_and_truncation() {
        let mut b = Batch::new();
        b.push(0, Selector::All, None, None, None, 5, 10);
        b.push(
            3,
            Selector::Pattern(b"u:*".to_vec()),
            Some(2),
            Some(b"ctx".to_vec()),
            None,
            6,
            10,
        );
        b.push(
            1,
            Selector::Keys(vec![b"\x00k".to_vec(), b"k2".to_vec()]),
            Some(0),
            None,
            None,
            7,
            10,
        );
        b.push(
            1,
            Selector::Dependents(vec![b"r".to_vec()]),
            None,
            None,
            None,
            7,
            10,
        );
        b.push(
            1,
            Selector::Namespace(b"n".to_vec()),
            None,
            None,
            None,
            7,
            10,
        );
        b.push(1, tag("t"), None, None, Some(b"alice"), 7, 10);
        let last = b.items().last().map(|p| p.id).unwrap();
        b.attribute(last, Some(b"rule-1"));
        let bytes = b.encode();
        assert_eq!(Batch::decode(&bytes), Ok(b.clone()));
        for cut in 0..bytes.len() {
            assert!(Batch::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        assert_eq!(
            Batch::decode(&Batch::default().encode()),
            Ok(Batch::default())
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Batch::decode(&bytes);
            let _ = decode_item(&bytes);
        }
    }
}
