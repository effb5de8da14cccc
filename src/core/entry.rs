//! A cache entry as the keyspace stores it: payload, tags, dependencies, metadata and counters.
//! Plain Rust: the server shell wraps it in the module data type.

/// Encoding version written in front of every serialised entry (RDB, DUMP).
pub const ENCODING_VERSION: u8 = 1;

/// Names (tags or resources) of one entry: sorted, without duplicates.
pub type Names = Vec<Box<[u8]>>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub value: Vec<u8>,
    pub tags: Names,
    pub deps: Names,
    /// A JSON object, validated when it was set.
    pub meta: Option<String>,
    pub created_ms: i64,
    pub hits: u64,
}

/// Turns a list of names into the canonical form: sorted, deduplicated.
pub fn canonical_names<I, T>(names: I) -> Names
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut v: Names = names.into_iter().map(|n| n.as_ref().into()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Adds names to a canonical list; returns how many were new.
pub fn add_names<T: AsRef<[u8]>>(list: &mut Names, names: &[T]) -> usize {
    let mut added = 0;
    for n in names {
        let n = n.as_ref();
        if let Err(pos) = list.binary_search_by(|x| x.as_ref().cmp(n)) {
            list.insert(pos, n.into());
            added += 1;
        }
    }
    added
}

impl Entry {
    /// Bytes this entry holds on the heap (an estimate for MEMORY USAGE).
    pub fn heap_size(&self) -> usize {
        let names = |l: &Names| l.iter().map(|n| n.len() + 16).sum::<usize>();
        std::mem::size_of::<Self>()
            + self.value.capacity()
            + names(&self.tags)
            + names(&self.deps)
            + self.meta.as_ref().map_or(0, |m| m.capacity())
    }

    /// Serialises the entry (version byte, then length-prefixed fields).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.value.len() + 32);
        out.push(ENCODING_VERSION);
        put_bytes(&mut out, &self.value);
        put_names(&mut out, &self.tags);
        put_names(&mut out, &self.deps);
        match &self.meta {
            None => out.push(0),
            Some(m) => {
                out.push(1);
                put_bytes(&mut out, m.as_bytes());
            }
        }
        put_varint(&mut out, self.created_ms as u64);
        put_varint(&mut out, self.hits);
        out
    }

    /// Parses what `encode` wrote. Never panics and never allocates more than the input holds.
    pub fn decode(buf: &[u8]) -> Result<Entry, DecodeError> {
        let mut r = Reader { buf, pos: 0 };
        let version = r.byte()?;
        if version > ENCODING_VERSION {
            return Err(DecodeError::NewerVersion(version));
        }
        if version == 0 {
            return Err(DecodeError::Corrupt("version 0"));
        }
        let value = r.bytes()?.to_vec();
        let tags = r.names()?;
        let deps = r.names()?;
        let meta = match r.byte()? {
            0 => None,
            1 => Some(
                String::from_utf8(r.bytes()?.to_vec())
                    .map_err(|_| DecodeError::Corrupt("meta is not UTF-8"))?,
            ),
            _ => return Err(DecodeError::Corrupt("meta flag")),
        };
        let created_ms = r.varint()? as i64;
        let hits = r.varint()?;
        if r.pos != buf.len() {
            return Err(DecodeError::Corrupt("trailing bytes"));
        }
        Ok(Entry {
            value,
            tags,
            deps,
            meta,
            created_ms,
            hits,
        })
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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_names(out: &mut Vec<u8>, names: &Names) {
    put_varint(out, names.len() as u64);
    for n in names {
        put_bytes(out, n);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
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

    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        // A length can never exceed what is left: check before anything is allocated.
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn names(&mut self) -> Result<Names, DecodeError> {
        // Each name takes at least one byte, so the count is bounded by the remaining input.
        let n = self.len()?;
        let mut v: Names = Vec::with_capacity(n);
        for _ in 0..n {
            let name: Box<[u8]> = self.bytes()?.into();
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

    fn sample() -> Entry {
        Entry {
            value: vec![0, 255, 1],
            tags: canonical_names([&b"b"[..], b"a", b"b"]),
            deps: canonical_names([b"\x00r"]),
            meta: Some("{\"x\":1}".into()),
            created_ms: 1_700_000_000_000,
            hits: 7,
        }
    }

    #[test]
    fn canonical_names_sorts_and_dedups() {
        let n = canonical_names(["z", "a", "z"]);
        assert_eq!(n, vec![b"a"[..].into(), b"z"[..].into()] as Names);
    }

    #[test]
    fn add_names_counts_new_only() {
        let mut n = canonical_names(["b"]);
        assert_eq!(add_names(&mut n, &["a", "b", "c", "a"]), 2);
        assert_eq!(n, canonical_names(["a", "b", "c"]));
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        let empty = Entry::default();
        assert_eq!(Entry::decode(&empty.encode()).unwrap(), empty);
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
            created in 0i64..i64::MAX,
            hits in any::<u64>(),
        ) {
            let e = Entry { value, tags: canonical_names(tags), deps: canonical_names(deps),
                meta: meta.map(|m| format!("{{\"k\":\"{m}\"}}")), created_ms: created, hits };
            prop_assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        }
    }
}
