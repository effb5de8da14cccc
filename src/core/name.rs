//! A key name slot of the index's id table: vacant, a name of up to [`INLINE`] bytes held in
//! the slot itself, or a longer name in its own allocation. Sixteen bytes either way; an
//! `Option<Box<[u8]>>` is as large and adds an allocation (16 bytes or more) for every name.

use std::fmt;

/// The longest name held inline.
pub const INLINE: usize = 15;

/// The last byte of a slot: the length of an inline name (0..=15), or one of these.
const VACANT: u8 = 0xFE;
const BOXED: u8 = 0xFF;

/// A boxed name: its allocation, and its length in the first 7 bytes of `len` (little-endian);
/// the last byte of `len` is [`BOXED`].
#[repr(C)]
#[derive(Clone, Copy)]
struct Boxed {
    ptr: *mut u8,
    len: [u8; 8],
}

#[repr(C)]
union Repr {
    /// Inline: the name in the first bytes, its length in the last.
    inline: [u8; 16],
    boxed: Boxed,
}

pub struct KeyName {
    repr: Repr,
}

// SAFETY: a KeyName owns its allocation alone, like the `Box<[u8]>` it was made from, and
// never writes it after it is made: sending it moves that ownership.
unsafe impl Send for KeyName {}
// SAFETY: as above: shared, it is only read.
unsafe impl Sync for KeyName {}

const _: () = assert!(std::mem::size_of::<KeyName>() == 16);

impl KeyName {
    pub const fn vacant() -> KeyName {
        let mut inline = [0u8; 16];
        inline[15] = VACANT;
        KeyName {
            repr: Repr { inline },
        }
    }

    pub fn new(name: &[u8]) -> KeyName {
        if name.len() <= INLINE {
            let mut inline = [0u8; 16];
            inline[..name.len()].copy_from_slice(name);
            inline[15] = name.len() as u8;
            return KeyName {
                repr: Repr { inline },
            };
        }
        let len = name.len() as u64;
        // Names come from the server, which caps them at 512 MB: far below 2^56.
        assert!(len < 1 << 56, "key name too long");
        let mut bytes = len.to_le_bytes();
        bytes[7] = BOXED;
        let ptr = Box::into_raw(Box::<[u8]>::from(name)).cast::<u8>();
        KeyName {
            repr: Repr {
                boxed: Boxed { ptr, len: bytes },
            },
        }
    }

    fn tag(&self) -> u8 {
        // SAFETY: the last byte is initialized in every form (inline length, or `Boxed::len`'s
        // top byte), and any byte is a valid `u8`.
        unsafe { self.repr.inline[15] }
    }

    pub fn is_some(&self) -> bool {
        self.tag() != VACANT
    }

    pub fn as_deref(&self) -> Option<&[u8]> {
        match self.tag() {
            VACANT => None,
            // SAFETY: the tag says the boxed form is the one written: `ptr` is the live
            // allocation of `boxed_len` bytes this KeyName owns, borrowed as long as `self`.
            BOXED => Some(unsafe {
                let b = self.repr.boxed;
                std::slice::from_raw_parts(b.ptr, boxed_len(&b))
            }),
            // SAFETY: any other tag is the inline form's length (at most `INLINE`), and its
            // bytes are initialized.
            n => Some(unsafe { &self.repr.inline[..usize::from(n)] }),
        }
    }
}

fn boxed_len(b: &Boxed) -> usize {
    let mut bytes = b.len;
    bytes[7] = 0;
    u64::from_le_bytes(bytes) as usize
}

impl Drop for KeyName {
    fn drop(&mut self) {
        if self.tag() == BOXED {
            // SAFETY: the boxed form holds the `Box<[u8]>` `new` leaked, of `boxed_len` bytes;
            // it is freed once, here, by its only owner.
            unsafe {
                let b = self.repr.boxed;
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    b.ptr,
                    boxed_len(&b),
                )));
            }
        }
    }
}

impl Default for KeyName {
    fn default() -> KeyName {
        KeyName::vacant()
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_deref() {
            None => f.write_str("vacant"),
            Some(n) => write!(f, "{:?}", String::from_utf8_lossy(n)),
        }
    }
}

/// Heap bytes a name of these bytes takes beyond its slot ([`KeyName`] or [`GroupName`]).
pub fn heap_bytes(name: &[u8]) -> usize {
    if name.len() > INLINE {
        name.len()
    } else {
        0
    }
}

/// A tag, resource or namespace name as a key of the index's group tables: a [`KeyName`] that
/// is never vacant. Names of up to [`INLINE`] bytes (most tags: `user:42`, `post:1234`) live in
/// the table's slot, with no allocation of their own, and comparing them reads no other memory.
/// Hashes and compares as its bytes, so a table keyed by it is searched with a `&[u8]`.
pub struct GroupName(KeyName);

impl GroupName {
    pub fn as_bytes(&self) -> &[u8] {
        // Made only by `From<&[u8]>`, which never makes a vacant slot.
        self.0.as_deref().unwrap_or_default()
    }
}

impl From<&[u8]> for GroupName {
    fn from(name: &[u8]) -> GroupName {
        GroupName(KeyName::new(name))
    }
}

impl std::borrow::Borrow<[u8]> for GroupName {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::ops::Deref for GroupName {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::hash::Hash for GroupName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes, which `Borrow` requires.
        self.as_bytes().hash(state)
    }
}

impl PartialEq for GroupName {
    fn eq(&self, other: &GroupName) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for GroupName {}

impl fmt::Debug for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The index's id table: key names by id, in pages of [`PAGE`] slots. Growing adds a page
/// instead of moving every slot into an allocation twice as large, so at most one page is unused
/// (a `Vec` leaves up to half of its slots unused after doubling, a quarter on average). The first
/// page grows like a `Vec` up to its full size, so a database with few entries takes little.
#[derive(Default)]
pub struct NameTable {
    pages: Vec<Vec<KeyName>>,
    len: usize,
}

/// Slots per page: 16 KiB.
pub const PAGE: usize = 1024;
const _: () = assert!(PAGE.is_power_of_two());

impl NameTable {
    /// Slots in use or vacated (the next id is `len()`).
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots allocated.
    pub fn capacity(&self) -> usize {
        self.pages.iter().map(Vec::capacity).sum()
    }

    /// Appends a slot; returns its index.
    pub fn push(&mut self, name: KeyName) -> usize {
        match self.pages.last_mut() {
            Some(page) if page.len() < PAGE => page.push(name),
            _ => {
                let mut page = if self.pages.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(PAGE)
                };
                page.push(name);
                self.pages.push(page);
            }
        }
        self.len += 1;
        self.len - 1
    }

    pub fn get(&self, i: usize) -> Option<&KeyName> {
        self.pages.get(i / PAGE).and_then(|p| p.get(i % PAGE))
    }

    pub fn iter(&self) -> impl Iterator<Item = &KeyName> {
        self.pages.iter().flatten()
    }
}

impl std::ops::Index<usize> for NameTable {
    type Output = KeyName;
    fn index(&self, i: usize) -> &KeyName {
        &self.pages[i / PAGE][i % PAGE]
    }
}

impl std::ops::IndexMut<usize> for NameTable {
    fn index_mut(&mut self, i: usize) -> &mut KeyName {
        &mut self.pages[i / PAGE][i % PAGE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vacant_inline_and_boxed_at_the_boundary() {
        assert_eq!(KeyName::vacant().as_deref(), None);
        assert!(!KeyName::default().is_some());
        for len in [0, 1, 14, 15, 16, 17, 300] {
            let name: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let k = KeyName::new(&name);
            assert!(k.is_some());
            assert_eq!(k.as_deref(), Some(&name[..]), "length {len}");
        }
    }

    #[test]
    fn the_table_grows_by_pages_and_finds_every_slot() {
        let mut t = NameTable::default();
        assert!(t.is_empty() && t.get(0).is_none());
        let count = 3 * PAGE + 5;
        for i in 0..count {
            assert_eq!(t.push(KeyName::new(format!("k{i}").as_bytes())), i);
        }
        assert_eq!(t.len(), count);
        // Full pages, and the last one made at its full size: no more than one page unused.
        assert_eq!(t.capacity(), 4 * PAGE);
        for i in [0, 1, PAGE - 1, PAGE, 2 * PAGE + 7, count - 1] {
            assert_eq!(t[i].as_deref(), Some(format!("k{i}").as_bytes()));
            assert_eq!(t.get(i).and_then(KeyName::as_deref), t[i].as_deref());
        }
        assert!(t.get(count).is_none());
        t[PAGE] = KeyName::vacant();
        assert!(!t[PAGE].is_some());
        let listed: Vec<usize> = t
            .iter()
            .enumerate()
            .filter(|(_, k)| k.is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(listed.len(), count - 1);
        assert!(!listed.contains(&PAGE));
        // A small table stays small.
        let mut small = NameTable::default();
        small.push(KeyName::new(b"one"));
        assert!(small.capacity() < PAGE);
    }

    #[test]
    fn a_table_keyed_by_group_names_is_searched_with_bytes() {
        let mut t: hashbrown::HashMap<GroupName, u32, ahash::RandomState> = Default::default();
        // Inline and boxed, an empty name, and names that end in the slot's marker bytes.
        let names: [&[u8]; 6] = [
            b"",
            b"user:42",
            &[0xFE; 15],
            &[0xFF; 16],
            b"a-tag-of-16-byte",
            &[7; 300],
        ];
        for (i, n) in names.iter().enumerate() {
            t.insert(GroupName::from(*n), i as u32);
        }
        assert_eq!(t.len(), names.len());
        // Only the names longer than 15 bytes take heap of their own.
        let heap = [0, 0, 0, 16, 16, 300];
        for (i, n) in names.iter().enumerate() {
            assert_eq!(t.get(*n), Some(&(i as u32)), "{n:?}");
            let k = t.get_key_value(*n).map(|(k, _)| k);
            assert_eq!(k.map(|k| k.as_bytes()), Some(*n));
            assert_eq!(k.map(|k| heap_bytes(k)), Some(heap[i]), "{n:?}");
        }
        assert_eq!(t.get(&b"user:4"[..]), None);
        assert_eq!(t.get(&[0xFE; 14][..]), None);
    }

    proptest! {
        /// Any bytes come back as stored, whatever their length or content (0xFE and 0xFF
        /// bytes included), and every slot frees what it holds when replaced or dropped.
        #[test]
        fn names_come_back_as_stored(
            names in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20)
        ) {
            let mut slots: Vec<KeyName> = names.iter().map(|n| KeyName::new(n)).collect();
            for (slot, name) in slots.iter().zip(&names) {
                prop_assert_eq!(slot.as_deref(), Some(&name[..]));
            }
            for slot in slots.iter_mut().step_by(2) {
                *slot = KeyName::vacant();
            }
            for (i, (slot, name)) in slots.iter().zip(&names).enumerate() {
                let want = if i % 2 == 0 { None } else { Some(&name[..]) };
                prop_assert_eq!(slot.as_deref(), want);
            }
        }
    }
}
