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

// A KeyName owns its allocation alone, like the `Box<[u8]>` it was made from.
unsafe impl Send for KeyName {}
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
        // The last byte is initialized in every form (inline length, or `Boxed::len`'s top byte).
        unsafe { self.repr.inline[15] }
    }

    pub fn is_some(&self) -> bool {
        self.tag() != VACANT
    }

    pub fn as_deref(&self) -> Option<&[u8]> {
        match self.tag() {
            VACANT => None,
            BOXED => Some(unsafe {
                let b = self.repr.boxed;
                std::slice::from_raw_parts(b.ptr, boxed_len(&b))
            }),
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
