//! A cache entry as the keyspace stores it: payload, tags, dependencies, metadata and counters.
//! Plain Rust: the server shell wraps it in the module data type.

use smallvec::SmallVec;

/// Encoding version written in front of every serialised entry (RDB, DUMP).
pub const ENCODING_VERSION: u8 = 3;

/// The fixed part of an entry: counters, its id in the index and where each section of `data`
/// ends. 36 bytes, 4-aligned, so that with a 124-byte payload (a 100-byte value and three short
/// tags) an entry fills a 160-byte allocation; the stale deadline, which few entries have, lives
/// in `data`. The generation and the creation time take 48 bits each ([`STAMP_MAX`]), which
/// leaves room for the id. Such allocations start on a cache line or half-way into one: what
/// every read and write looks at comes first, the creation time, read by `CACHE.INSPECT` and
/// persistence only, last.
#[repr(C, packed(4))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Length of `data`: what turns a thin pointer to the entry back into the entry.
    len: u32,
    value_end: u32,
    tags_end: u32,
    /// Where the dependencies end; [`STALE`] set when a stale deadline follows them.
    deps_end: u32,
    /// Reads that found the entry, saturating at `u32::MAX` (see [`Entry::hits`]).
    hits: u32,
    /// The entry's id in its database's index (`core::index`), written when the index takes
    /// the entry in. Until then (a copy, an entry being loaded) it means nothing, and the index
    /// checks that the id it is given names the key it is asked about.
    id: u32,
    /// The module's generation when the entry was written, low 32 and high 16 bits: LAZY
    /// invalidations newer than this cover it (see `core::lazy`). Version 1 encodings load as 0.
    born_lo: u32,
    born_hi: u16,
    created_hi: u16,
    /// Creation time (Unix ms), low 32 bits (the high 16 are in `created_hi`).
    created_lo: u32,
}

/// The largest generation and creation time an entry holds (48 bits: the year 10889 in ms, and
/// more LAZY invalidations than any server makes); larger ones are held as this.
pub const STAMP_MAX: u64 = (1 << 48) - 1;

impl Header {
    /// The generation the entry was written at.
    pub fn born(&self) -> u64 {
        u64::from(self.born_lo) | (u64::from(self.born_hi) << 32)
    }

    pub fn set_born(&mut self, generation: u64) {
        let g = generation.min(STAMP_MAX);
        self.born_lo = g as u32;
        self.born_hi = (g >> 32) as u16;
    }

    /// Creation time, Unix ms.
    pub fn created_ms(&self) -> i64 {
        (u64::from(self.created_lo) | (u64::from(self.created_hi) << 32)) as i64
    }

    /// Sets the creation time, clamped to 0..=[`STAMP_MAX`].
    fn set_created_ms(&mut self, ms: i64) {
        let t = u64::try_from(ms).unwrap_or(0).min(STAMP_MAX);
        self.created_lo = t as u32;
        self.created_hi = (t >> 32) as u16;
    }

    /// The id the index gave the entry (see the field).
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn set_id(&mut self, id: u32) {
        self.id = id;
    }

    fn created_at(ms: i64) -> Header {
        let mut h = Header::default();
        h.set_created_ms(ms);
        h
    }
}

/// An entry with names added, and the names that were new (sorted).
pub type Grown = (Box<Entry>, Vec<Vec<u8>>);

/// An entry would exceed [`MAX_ENTRY_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// In `deps_end`: a SOFT invalidation's deadline (8 bytes, little-endian Unix ms) follows the
/// dependencies, before the meta.
const STALE: u32 = 1 << 31;

/// A cache entry in one allocation: the header, then `data`: the value, the tags and the
/// dependencies (each sorted, without duplicates, as varint-prefixed names), then the meta JSON.
/// A read follows one pointer from the server's module value to the header and finds the value
/// right after it. Unsized: it lives in a `Box<Entry>` (or the server's value slot, through
/// [`Entry::into_raw`]); the header's public fields read and write through `Deref`.
#[repr(C)]
#[derive(PartialEq, Eq)]
pub struct Entry {
    head: Header,
    data: [u8],
}

impl std::ops::Deref for Entry {
    type Target = Header;
    fn deref(&self) -> &Header {
        &self.head
    }
}

impl std::ops::DerefMut for Entry {
    fn deref_mut(&mut self) -> &mut Header {
        &mut self.head
    }
}

impl ToOwned for Entry {
    type Owned = Box<Entry>;
    fn to_owned(&self) -> Box<Entry> {
        Entry::assemble(self.head, &[&self.data])
    }
}

/// The allocation of an entry with `len` bytes of data (what `Box<Entry>` frees it with: the
/// header, the data, padded to the header's alignment).
fn layout(len: usize) -> std::alloc::Layout {
    let size = std::mem::size_of::<Header>() + len;
    match std::alloc::Layout::from_size_align(size, std::mem::align_of::<Header>()) {
        Ok(l) => l.pad_to_align(),
        // Only for sizes near isize::MAX, which MAX_ENTRY_BYTES rules out.
        Err(_) => std::alloc::handle_alloc_error(std::alloc::Layout::new::<Header>()),
    }
}

/// The largest entry (value, names, stale deadline and meta together) one key can hold: the
/// offsets keep their top bit for [`STALE`].
pub const MAX_ENTRY_BYTES: usize = (u32::MAX >> 1) as usize;

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("value", &self.value())
            .field("tags", &self.tags().collect::<Vec<_>>())
            .field("deps", &self.deps().collect::<Vec<_>>())
            .field("meta", &self.meta())
            .field("created_ms", &self.created_ms())
            .field("hits", &self.hits())
            .field("born", &self.born())
            .field("id", &self.id())
            .field("stale_until", &self.stale_until())
            .finish()
    }
}

/// Iterates the names of a packed list.
#[derive(Clone)]
pub struct NameIter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for NameIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.buf.is_empty() {
            return None;
        }
        let mut r = Reader {
            buf: self.buf,
            pos: 0,
        };
        // Packed by this module, so well formed; a malformed tail just ends the iteration.
        let name = r.bytes().ok()?;
        self.buf = &self.buf[r.pos..];
        Some(name)
    }
}

/// What changes between two sorted name lists: calls `each(false, name)` for every name only in
/// `old` and `each(true, name)` for every name only in `new`, in order.
pub fn diff_names<'a, 'b>(
    old: impl Iterator<Item = &'a [u8]>,
    new: impl Iterator<Item = &'b [u8]>,
    mut each: impl FnMut(bool, &[u8]),
) {
    let mut old = old.peekable();
    let mut new = new.peekable();
    loop {
        match (old.peek(), new.peek()) {
            (Some(a), Some(b)) if a == b => {
                old.next();
                new.next();
            }
            (Some(a), Some(b)) if a < b => {
                each(false, a);
                old.next();
            }
            (Some(_), Some(b)) => {
                each(true, b);
                new.next();
            }
            (Some(a), None) => {
                each(false, a);
                old.next();
            }
            (None, Some(b)) => {
                each(true, b);
                new.next();
            }
            (None, None) => return,
        }
    }
}

/// Which list of a [`LinkChange`] a name is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    TagGone,
    TagNew,
    DepGone,
    DepNew,
}

/// How the links of an entry change when it is replaced: the names back to back in one buffer,
/// each with its list. A few short names (the usual replacement) take no allocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkChange {
    bytes: SmallVec<[u8; 64]>,
    ends: SmallVec<[(Link, usize); 4]>,
    /// Whether the old entry had a tag, and the new one has.
    tagged: (bool, bool),
}

impl LinkChange {
    pub fn between(old: &Entry, new: &Entry) -> LinkChange {
        let mut c = LinkChange {
            tagged: (old.tags().next().is_some(), new.tags().next().is_some()),
            ..LinkChange::default()
        };
        diff_names(old.tags(), new.tags(), |came, n| {
            c.push(if came { Link::TagNew } else { Link::TagGone }, n)
        });
        diff_names(old.deps(), new.deps(), |came, n| {
            c.push(if came { Link::DepNew } else { Link::DepGone }, n)
        });
        c
    }

    /// Whether the old entry had a tag, and whether the new one has.
    pub fn tagged(&self) -> (bool, bool) {
        self.tagged
    }

    /// Says whether the old entry had a tag and the new one has (a change made by hand).
    #[cfg(test)]
    pub fn set_tagged(&mut self, old: bool, new: bool) {
        self.tagged = (old, new);
    }

    pub fn push(&mut self, link: Link, name: &[u8]) {
        self.bytes.extend_from_slice(name);
        self.ends.push((link, self.bytes.len()));
    }

    /// The names in one list, in the order they were pushed (sorted, from `between`).
    pub fn names(&self, link: Link) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().filter_map(move |&(l, end)| {
            let name = self.bytes.get(start..end);
            start = end;
            name.filter(|_| l == link)
        })
    }
}

/// Names borrowed from an entry or a command; a few take no allocation.
pub type Names<'a> = SmallVec<[&'a [u8]; 8]>;

/// Sorts and deduplicates names.
pub fn canonical<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Names<'a> {
    let mut v: Names = names.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `v` as a varint (7 bits per byte, low first, the top bit set on all but the last): its
/// bytes and how many there are.
fn varint(mut v: u64) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    (out, n + 1)
}

fn varint_len(v: u64) -> usize {
    varint(v).1
}

fn packed_len(names: &[&[u8]]) -> usize {
    names
        .iter()
        .map(|n| varint_len(n.len() as u64) + n.len())
        .sum()
}

/// Writes into a slice that has exactly the room needed.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    fn put(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    fn put_varint(&mut self, v: u64) {
        let (bytes, n) = varint(v);
        self.put(&bytes[..n]);
    }

    fn pack(&mut self, names: &[&[u8]]) {
        for n in names {
            self.put_varint(n.len() as u64);
            self.put(n);
        }
    }
}

impl Entry {
    /// Builds an entry; names are sorted and deduplicated. None when it would exceed
    /// `MAX_ENTRY_BYTES`.
    pub fn new<'a>(
        value: &[u8],
        tags: impl IntoIterator<Item = &'a [u8]>,
        deps: impl IntoIterator<Item = &'a [u8]>,
        meta: Option<&str>,
        created_ms: i64,
    ) -> Option<Box<Entry>> {
        let tags = canonical(tags);
        let deps = canonical(deps);
        Self::build(Header::created_at(created_ms), value, &tags, &deps, 0, meta)
    }

    /// Whether [`Entry::new`] can lay out an entry of these parts (within [`MAX_ENTRY_BYTES`]):
    /// names are counted as sent, before duplicates are dropped, so a true answer is certain.
    pub fn fits(value: &[u8], tags: &[&[u8]], deps: &[&[u8]], meta: Option<&str>) -> bool {
        let len = value.len() as u128
            + packed_len(tags) as u128
            + packed_len(deps) as u128
            + meta.map_or(0, str::len) as u128
            + 8;
        len <= MAX_ENTRY_BYTES as u128
    }

    /// Lays out `value`, the names (sorted, unique), the stale deadline (when not 0) and `meta`
    /// after `head`'s counters.
    fn build(
        head: Header,
        value: &[u8],
        tags: &[&[u8]],
        deps: &[&[u8]],
        stale_until: i64,
        meta: Option<&str>,
    ) -> Option<Box<Entry>> {
        let value_end = value.len();
        let tags_end = value_end + packed_len(tags);
        let deps_end = tags_end + packed_len(deps);
        let stale = stale_until != 0;
        let len = deps_end + if stale { 8 } else { 0 } + meta.map_or(0, str::len);
        // A fresh entry leaves room for a stale deadline: marking it stale never fails.
        if len + if stale { 0 } else { 8 } > MAX_ENTRY_BYTES {
            return None;
        }
        let head = Header {
            len: len as u32,
            value_end: value_end as u32,
            tags_end: tags_end as u32,
            deps_end: deps_end as u32 | if stale { STALE } else { 0 },
            ..head
        };
        let mut e = Self::allocate(head);
        let mut w = Cursor {
            buf: &mut e.data,
            at: 0,
        };
        w.put(value);
        w.pack(tags);
        w.pack(deps);
        if stale {
            w.put(&stale_until.to_le_bytes());
        }
        if let Some(m) = meta {
            w.put(m.as_bytes());
        }
        Some(e)
    }

    /// An entry with `head` and `data` made of `parts` (whose lengths add up to `head.len`).
    fn assemble(head: Header, parts: &[&[u8]]) -> Box<Entry> {
        let mut e = Self::allocate(head);
        let mut w = Cursor {
            buf: &mut e.data,
            at: 0,
        };
        for p in parts {
            w.put(p);
        }
        e
    }

    /// One zeroed allocation for `head` and `head.len` bytes of data.
    fn allocate(head: Header) -> Box<Entry> {
        let len = head.len as usize;
        let layout = layout(len);
        // SAFETY: `layout` has a non-zero size (the header). The memory is zeroed, so every
        // byte of `data` is initialised; the header is written before the box exists. The fat
        // pointer's length is `len`, so the box's size (header + len, padded to the header's
        // alignment) and alignment are exactly `layout`'s, which is what dropping it frees.
        unsafe {
            let p = std::alloc::alloc_zeroed(layout);
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            p.cast::<Header>().write(head);
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len) as *mut Entry)
        }
    }

    /// A thin pointer to the entry, for the server's value slot; [`Entry::from_raw`] and
    /// [`Entry::box_from_raw`] take it back.
    pub fn into_raw(e: Box<Entry>) -> *mut u8 {
        Box::into_raw(e).cast::<u8>()
    }

    /// The entry behind a pointer from [`Entry::into_raw`].
    ///
    /// # Safety
    /// `p` came from `into_raw`, the entry was not freed, and no other reference to it is used
    /// while the returned one lives.
    pub unsafe fn from_raw<'a>(p: *mut u8) -> &'a mut Entry {
        // SAFETY: `p` points at a live entry (the caller's promise), which starts with its
        // header; the header's length is the whole allocation's, so the fat pointer covers
        // exactly the entry, and the caller guarantees the reference is the only one used.
        unsafe {
            let len = (*p.cast::<Header>()).len as usize;
            &mut *(std::ptr::slice_from_raw_parts_mut(p, len) as *mut Entry)
        }
    }

    /// The entry behind a pointer from [`Entry::into_raw`], to read.
    ///
    /// # Safety
    /// `p` came from `into_raw`, the entry was not freed, and it is not written while the
    /// returned reference lives.
    pub unsafe fn from_raw_ref<'a>(p: *const u8) -> &'a Entry {
        // SAFETY: as in `from_raw`; the caller guarantees nothing writes the entry meanwhile.
        unsafe {
            let len = (*p.cast::<Header>()).len as usize;
            &*(std::ptr::slice_from_raw_parts(p, len) as *const Entry)
        }
    }

    /// Takes back ownership of the entry behind a pointer from [`Entry::into_raw`].
    ///
    /// # Safety
    /// As for [`Entry::from_raw`], and the pointer is not used again.
    pub unsafe fn box_from_raw(p: *mut u8) -> Box<Entry> {
        // SAFETY: `p` is `into_raw`'s pointer of a live entry, its header gives the length the
        // box was allocated with, and the caller gives up the pointer: the box owns it alone.
        unsafe {
            let len = (*p.cast::<Header>()).len as usize;
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len) as *mut Entry)
        }
    }

    /// A SOFT invalidation covers it: plain reads see it as missing, CACHE.FETCH serves it as
    /// stale.
    pub fn is_stale(&self) -> bool {
        self.stale_until() != 0
    }

    /// Reads that found the entry (they saturate at `u32::MAX`).
    pub fn hits(&self) -> u64 {
        u64::from(self.head.hits)
    }

    /// One more read found the entry.
    pub fn hit(&mut self) {
        self.head.hits = self.head.hits.saturating_add(1);
    }

    /// Where the dependencies end (without the [`STALE`] bit).
    fn deps_end(&self) -> usize {
        (self.head.deps_end & !STALE) as usize
    }

    /// Where the stale deadline is, if the entry has one.
    fn stale_at(&self) -> Option<std::ops::Range<usize>> {
        let at = self.deps_end();
        (self.head.deps_end & STALE != 0).then_some(at..at + 8)
    }

    /// A SOFT invalidation made the entry stale until this Unix ms (0: fresh). The key's own
    /// deadline is never later, so a stale entry that still exists is within its grace.
    /// Versions 1 and 2 of the encoding load as 0.
    pub fn stale_until(&self) -> i64 {
        self.stale_at()
            .and_then(|r| self.data.get(r))
            .and_then(|b| b.try_into().ok())
            .map_or(0, i64::from_le_bytes)
    }

    /// Marks the entry stale until `deadline`, never later than an earlier mark, and returns
    /// the deadline in force. An entry stale already is written in place; a fresh one has no
    /// room for the deadline and comes back as a copy 8 bytes longer (every entry has room for
    /// that under the size limit), to put in its place.
    pub fn mark_stale(&mut self, deadline: i64) -> (i64, Option<Box<Entry>>) {
        let until = crate::core::lease::stale_deadline(self.stale_until(), deadline);
        let bytes = until.to_le_bytes();
        if let Some(at) = self.stale_at() {
            if let Some(slot) = self.data.get_mut(at) {
                slot.copy_from_slice(&bytes);
            }
            return (until, None);
        }
        let at = self.deps_end();
        let head = Header {
            len: self.head.len + 8,
            deps_end: self.head.deps_end | STALE,
            ..self.head
        };
        let grown = Self::assemble(head, &[&self.data[..at], &bytes, &self.data[at..]]);
        (until, Some(grown))
    }

    pub fn value(&self) -> &[u8] {
        &self.data[..self.value_end as usize]
    }

    pub fn tags(&self) -> NameIter<'_> {
        NameIter {
            buf: &self.data[self.value_end as usize..self.tags_end as usize],
        }
    }

    pub fn deps(&self) -> NameIter<'_> {
        NameIter {
            buf: &self.data[self.tags_end as usize..self.deps_end()],
        }
    }

    /// The meta JSON: whatever follows the names and the stale deadline (a JSON object is never
    /// empty, so an empty rest is no meta).
    pub fn meta(&self) -> Option<&str> {
        let start = self.stale_at().map_or(self.deps_end(), |r| r.end);
        let rest = self.data.get(start..).filter(|m| !m.is_empty())?;
        std::str::from_utf8(rest).ok()
    }

    /// The entry with tags (or dependencies) added, and the names that were new (sorted). None
    /// when nothing is new; [`TooLarge`] when the result would exceed [`MAX_ENTRY_BYTES`]. The
    /// header (counters, generation, stale deadline, id) carries over.
    pub fn with_added<'a>(
        &self,
        to_deps: bool,
        names: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<Grown>, TooLarge> {
        let current: Vec<&[u8]> = if to_deps {
            self.deps().collect()
        } else {
            self.tags().collect()
        };
        let added: Vec<Vec<u8>> = canonical(names)
            .into_iter()
            .filter(|n| current.binary_search(n).is_err())
            .map(<[u8]>::to_vec)
            .collect();
        if added.is_empty() {
            return Ok(None);
        }
        let rebuilt = {
            let merged = canonical(current.into_iter().chain(added.iter().map(Vec::as_slice)));
            let (tags, deps): (Names, Names) = if to_deps {
                (self.tags().collect(), merged)
            } else {
                (merged, self.deps().collect())
            };
            let stale = self.stale_until();
            Self::build(self.head, self.value(), &tags, &deps, stale, self.meta())
                .ok_or(TooLarge)?
        };
        Ok(Some((rebuilt, added)))
    }

    /// Bytes this entry holds on the heap (an estimate for MEMORY USAGE).
    pub fn heap_size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    /// Serialises the entry (version byte, then length-prefixed fields).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 32);
        out.push(ENCODING_VERSION);
        put_bytes(&mut out, self.value());
        for list in [self.tags(), self.deps()] {
            put_varint(&mut out, list.clone().count() as u64);
            for n in list {
                put_bytes(&mut out, n);
            }
        }
        match self.meta() {
            None => out.push(0),
            Some(m) => {
                out.push(1);
                put_bytes(&mut out, m.as_bytes());
            }
        }
        put_varint(&mut out, self.created_ms() as u64);
        put_varint(&mut out, self.hits());
        put_varint(&mut out, self.born());
        put_varint(&mut out, self.stale_until().max(0) as u64);
        out
    }

    /// Parses what `encode` wrote. Never panics; every declared length is checked against the
    /// input before anything is reserved.
    pub fn decode(buf: &[u8]) -> Result<Box<Entry>, DecodeError> {
        let mut r = Reader { buf, pos: 0 };
        let version = r.byte()?;
        if version > ENCODING_VERSION {
            return Err(DecodeError::NewerVersion(version));
        }
        if version == 0 {
            return Err(DecodeError::Corrupt("version 0"));
        }
        let value = r.bytes()?;
        let tags = r.names()?;
        let deps = r.names()?;
        let meta = match r.byte()? {
            0 => None,
            1 => Some(
                std::str::from_utf8(r.bytes()?)
                    .map_err(|_| DecodeError::Corrupt("meta is not UTF-8"))?,
            ),
            _ => return Err(DecodeError::Corrupt("meta flag")),
        };
        let created_ms = r.varint()? as i64;
        let hits = r.varint()?;
        let born = if version >= 2 { r.varint()? } else { 0 };
        let stale_until = if version >= 3 {
            i64::try_from(r.varint()?).map_err(|_| DecodeError::Corrupt("stale deadline"))?
        } else {
            0
        };
        if r.pos != buf.len() {
            return Err(DecodeError::Corrupt("trailing bytes"));
        }
        let mut head = Header {
            hits: u32::try_from(hits).unwrap_or(u32::MAX),
            ..Header::created_at(created_ms)
        };
        head.set_born(born);
        Entry::build(head, value, &tags, &deps, stale_until, meta)
            .ok_or(DecodeError::Corrupt("too large"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    Corrupt(&'static str),
    NewerVersion(u8),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "truncated cache entry"),
            DecodeError::Corrupt(what) => write!(f, "corrupt cache entry ({what})"),
            DecodeError::NewerVersion(v) => write!(
                f,
                "cache entry encoding version {v} is newer than this module supports ({ENCODING_VERSION})"
            ),
        }
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, v: u64) {
    let (bytes, n) = varint(v);
    out.extend_from_slice(&bytes[..n]);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads what `put_varint`/`put_bytes` wrote, checking every length against the input.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Corrupt("varint too long"))
    }

    pub(crate) fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        // A length can never exceed what is left: check before anything is allocated.
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn names(&mut self) -> Result<Vec<&'a [u8]>, DecodeError> {
        // Each name takes at least one byte, so the count is bounded by the remaining input.
        let n = self.len()?;
        // A name slice takes 16 bytes here for at least 1 byte of input: reserve modestly.
        let mut v: Vec<&'a [u8]> = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let name = self.bytes()?;
            if v.last().is_some_and(|last| *last >= name) {
                return Err(DecodeError::Corrupt("names not sorted"));
            }
            v.push(name);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Box<Entry> {
        let mut e = Entry::new(
            &[0, 255, 1],
            [&b"b"[..], b"a", b"b"],
            [&b"\x00r"[..]],
            Some("{\"x\":1}"),
            1_700_000_000_000,
        )
        .unwrap();
        for _ in 0..7 {
            e.hit();
        }
        e.set_born(42);
        mark(&mut e, 1_700_000_060_000);
        e
    }

    /// Marks stale as SOFT does: in place, or by putting the grown entry in its place.
    fn mark(e: &mut Box<Entry>, deadline: i64) -> i64 {
        let (until, grown) = e.mark_stale(deadline);
        if let Some(g) = grown {
            *e = g;
        }
        until
    }

    /// An entry with no value, names or meta (what an empty encoding decodes to).
    fn empty() -> Box<Entry> {
        Entry::assemble(Header::default(), &[])
    }

    /// Adds names in place, as CACHE.TAG and CACHE.DEPEND do through the server's value slot.
    fn add<'a>(
        e: &mut Box<Entry>,
        to_deps: bool,
        names: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<Vec<u8>> {
        match e.with_added(to_deps, names).expect("small test entries") {
            Some((grown, added)) => {
                *e = grown;
                added
            }
            None => Vec::new(),
        }
    }

    #[test]
    fn one_allocation_holds_the_header_and_the_data() {
        let e = sample();
        // Value, two tags, one dependency, the stale deadline, the meta.
        let data = 3 + 2 * 2 + 3 + 8 + 7;
        assert_eq!(std::mem::size_of::<Header>(), 36);
        let expected = (std::mem::size_of::<Header>() + data).next_multiple_of(4);
        assert_eq!(e.heap_size(), expected);
        let header = std::ptr::from_ref::<Entry>(&e).cast::<u8>() as usize;
        let value = e.value().as_ptr() as usize;
        assert_eq!(value - header, std::mem::size_of::<Header>());
        let copy = Entry::to_owned(&e);
        assert_eq!(copy, e);
        let raw = Entry::into_raw(e);
        // SAFETY: `raw` came from into_raw and nothing else refers to the entry.
        let back = unsafe {
            Entry::from_raw(raw).hit();
            assert_eq!(Entry::from_raw_ref(raw).hits(), 8);
            Entry::box_from_raw(raw)
        };
        assert_eq!((back.value(), back.hits()), (copy.value(), 8));
        assert_eq!(empty().heap_size(), std::mem::size_of::<Header>());
    }

    #[test]
    fn accessors_give_canonical_names() {
        let e = sample();
        assert_eq!(e.value(), &[0, 255, 1]);
        assert_eq!(e.tags().collect::<Vec<_>>(), vec![&b"a"[..], b"b"]);
        assert_eq!(e.deps().collect::<Vec<_>>(), vec![&b"\x00r"[..]]);
        assert_eq!(e.meta(), Some("{\"x\":1}"));
        let bare = Entry::new(b"v", [], [], None, 0).unwrap();
        assert_eq!(bare.tags().count(), 0);
        assert_eq!(bare.meta(), None);
    }

    #[test]
    fn add_counts_new_names_only() {
        let mut e = sample();
        let added = add(&mut e, false, [&b"c"[..], b"a", b"c", b"0"]);
        assert_eq!(added, vec![b"0".to_vec(), b"c".to_vec()]);
        assert_eq!(
            e.tags().collect::<Vec<_>>(),
            vec![&b"0"[..], b"a", b"b", b"c"]
        );
        assert_eq!(e.deps().count(), 1);
        assert_eq!(add(&mut e, true, [&b"r2"[..]]), vec![b"r2".to_vec()]);
        assert_eq!(e.deps().count(), 2);
        assert_eq!(
            (e.value(), e.hits, e.born(), e.meta()),
            (&[0u8, 255, 1][..], 7, 42, Some("{\"x\":1}"))
        );
        assert_eq!(e.with_added(true, [&b"r2"[..]]), Ok(None));
    }

    #[test]
    fn diff_of_sorted_lists() {
        let v = |x: &[&'static str]| x.iter().map(|s| s.as_bytes()).collect::<Vec<&[u8]>>();
        let diff = |old: &[&'static str], new: &[&'static str]| {
            let (mut gone, mut came) = (Vec::new(), Vec::new());
            diff_names(v(old).into_iter(), v(new).into_iter(), |c, n| {
                if c { &mut came } else { &mut gone }.push(n.to_vec())
            });
            (gone, came)
        };
        let (gone, came) = diff(&["a", "c", "d"], &["b", "c", "e"]);
        assert_eq!(gone, vec![b"a".to_vec(), b"d".to_vec()]);
        assert_eq!(came, vec![b"b".to_vec(), b"e".to_vec()]);
        let (gone, came) = diff(&["x"], &["x"]);
        assert!(gone.is_empty() && came.is_empty());
        let old = sample();
        let new = Entry::new(b"v", [&b"a"[..], b"z"], [], None, 0).unwrap();
        let c = LinkChange::between(&old, &new);
        let list = |l| c.names(l).collect::<Vec<_>>();
        assert_eq!(list(Link::TagGone), vec![&b"b"[..]]);
        assert_eq!(list(Link::TagNew), vec![&b"z"[..]]);
        assert_eq!(list(Link::DepGone), vec![&b"\x00r"[..]]);
        assert!(list(Link::DepNew).is_empty());
        // Longer than the inline buffer: the same lists.
        let long: Vec<Vec<u8>> = (0..40)
            .map(|i| format!("tag:{i:04}").into_bytes())
            .collect();
        let wide = Entry::new(b"v", long.iter().map(Vec::as_slice), [], None, 0).unwrap();
        let c = LinkChange::between(&new, &wide);
        assert_eq!(
            c.names(Link::TagNew).collect::<Vec<_>>(),
            long.iter().map(Vec::as_slice).collect::<Vec<_>>()
        );
        assert_eq!(
            c.names(Link::TagGone).collect::<Vec<_>>(),
            vec![&b"a"[..], b"z"]
        );
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        let empty = empty();
        assert_eq!(Entry::decode(&empty.encode()).unwrap(), empty);
    }

    /// The encoding of `e` as `version` wrote it: version 2 had no stale deadline, version 1
    /// no generation either.
    fn older(e: &Entry, version: u8) -> Vec<u8> {
        let tags: Vec<&[u8]> = e.tags().collect();
        let deps: Vec<&[u8]> = e.deps().collect();
        let trimmed = Entry::build(e.head, e.value(), &tags, &deps, 0, e.meta()).unwrap();
        assert!(!trimmed.is_stale());
        let mut b = trimmed.encode();
        // A stale deadline of 0 is one varint byte, a generation of 42 too.
        b.pop();
        if version == 1 {
            b.pop();
        }
        b[0] = version;
        b
    }

    #[test]
    fn stamps_hold_48_bits_and_the_id_stays_with_the_entry() {
        let mut e = Entry::new(b"v", [&b"t"[..]], [], None, STAMP_MAX as i64).unwrap();
        assert_eq!(std::mem::size_of::<Header>(), 36);
        assert_eq!(e.created_ms(), STAMP_MAX as i64);
        for (g, held) in [
            (0, 0),
            (1 << 40 | 7, 1 << 40 | 7),
            (STAMP_MAX, STAMP_MAX),
            (u64::MAX, STAMP_MAX),
        ] {
            e.set_born(g);
            assert_eq!(e.born(), held);
        }
        for (ms, held) in [
            (-5, 0),
            (i64::MAX, STAMP_MAX as i64),
            (1_700_000_000_123, 1_700_000_000_123),
        ] {
            assert_eq!(
                Entry::new(b"", [], [], None, ms).unwrap().created_ms(),
                held
            );
        }
        e.set_id(0xdead_beef);
        // What replaces the entry in place keeps its id; an encoding does not carry it.
        let (grown, _) = e.with_added(false, [&b"u"[..]]).unwrap().unwrap();
        assert_eq!(
            (grown.id(), grown.born(), grown.created_ms()),
            (0xdead_beef, STAMP_MAX, STAMP_MAX as i64)
        );
        let (_, stale) = e.mark_stale(STAMP_MAX as i64);
        assert_eq!(stale.map(|s| s.id()), Some(0xdead_beef));
        assert_eq!(Entry::to_owned(&e).id(), 0xdead_beef);
        let back = Entry::decode(&e.encode()).unwrap();
        assert_eq!(
            (back.id(), back.born(), back.created_ms()),
            (0, STAMP_MAX, STAMP_MAX as i64)
        );
    }

    #[test]
    fn hits_saturate_at_u32_max() {
        let mut e = sample();
        e.head.hits = u32::MAX - 1;
        e.hit();
        e.hit();
        assert_eq!(e.hits(), u64::from(u32::MAX));
        // An encoding from a build that counted in 64 bits loads clamped.
        let mut b = vec![ENCODING_VERSION];
        put_bytes(&mut b, b"v");
        b.extend([0, 0, 0]); // no tags, no dependencies, no meta
        put_varint(&mut b, 5); // created
        put_varint(&mut b, u64::MAX); // hits
        put_varint(&mut b, 0); // born
        put_varint(&mut b, 0); // stale
        assert_eq!(Entry::decode(&b).unwrap().hits(), u64::from(u32::MAX));
    }

    #[test]
    fn version_2_loads_fresh() {
        let e = sample();
        let old = Entry::decode(&older(&e, 2)).unwrap();
        assert_eq!((old.born(), old.stale_until(), old.hits()), (42, 0, 7));
        assert!(!old.is_stale());
        assert!(e.is_stale());
    }

    #[test]
    fn stale_marks_keep_the_earlier_deadline_and_survive_adding_names() {
        let mut e = Entry::new(b"v", [], [], Some("{}"), 0).unwrap();
        let fresh = e.heap_size();
        let (until, grown) = e.mark_stale(500);
        assert_eq!(until, 500);
        assert!(!e.is_stale(), "a fresh entry has no room for the deadline");
        e = grown.expect("a fresh entry comes back grown");
        assert_eq!(e.stale_until(), 500);
        assert_eq!(e.heap_size(), (fresh + 8).next_multiple_of(4));
        assert_eq!(
            e.mark_stale(900),
            (500, None),
            "a later deadline never extends"
        );
        assert_eq!(e.mark_stale(300), (300, None));
        add(&mut e, false, [&b"t"[..]]);
        assert_eq!(e.stale_until(), 300);
        assert_eq!((e.value(), e.meta()), (&b"v"[..], Some("{}")));
        assert_eq!(e.tags().collect::<Vec<_>>(), vec![&b"t"[..]]);
        assert_eq!(Entry::decode(&e.encode()).unwrap().stale_until(), 300);
    }

    #[test]
    fn version_1_loads_with_generation_0() {
        let e = sample();
        let b = older(&e, 1);
        let old = Entry::decode(&b).unwrap();
        assert_eq!((old.born(), old.value(), old.hits()), (0, e.value(), 7));
        assert_eq!(old.stale_until(), 0);
        let mut e2 = Entry::to_owned(&e);
        add(&mut e2, false, [&b"new"[..]]);
        assert_eq!(e2.born(), 42, "adding names keeps the generation");
    }

    #[test]
    fn rejects_newer_version_and_truncation() {
        let mut b = sample().encode();
        b[0] = ENCODING_VERSION + 1;
        assert_eq!(
            Entry::decode(&b),
            Err(DecodeError::NewerVersion(ENCODING_VERSION + 1))
        );
        let b = sample().encode();
        for cut in 0..b.len() {
            assert!(Entry::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Entry::decode(&long).is_err());
    }

    #[test]
    fn huge_declared_length_fails_fast() {
        let mut b = vec![ENCODING_VERSION];
        put_varint(&mut b, u64::MAX >> 1);
        assert_eq!(Entry::decode(&b), Err(DecodeError::Truncated));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Entry::decode(&bytes);
        }

        #[test]
        fn encode_decode_identity(
            value in proptest::collection::vec(any::<u8>(), 0..32),
            tags in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 0..5),
            deps in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 0..5),
            meta in proptest::option::of("[a-z]{0,8}"),
            created in 0i64..=STAMP_MAX as i64,
            hits in any::<u32>(),
            stale in proptest::option::of(1i64..i64::MAX),
        ) {
            let meta = meta.map(|m| format!("{{\"k\":\"{m}\"}}"));
            let mut e = Entry::new(&value, tags.iter().map(Vec::as_slice), deps.iter().map(Vec::as_slice), meta.as_deref(), created).unwrap();
            e.head.hits = hits;
            if let Some(at) = stale {
                prop_assert_eq!(mark(&mut e, at), at);
                prop_assert_eq!(e.stale_until(), at);
            }
            prop_assert_eq!(e.meta(), meta.as_deref());
            prop_assert_eq!(e.value(), &value[..]);
            let mut sorted_tags: Vec<&[u8]> = tags.iter().map(Vec::as_slice).collect();
            sorted_tags.sort();
            sorted_tags.dedup();
            prop_assert_eq!(e.tags().collect::<Vec<_>>(), sorted_tags);
            prop_assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        }
    }
}
