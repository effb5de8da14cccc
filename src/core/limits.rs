//! Limits on what one command may ask for: tags and dependencies per entry, the length of a tag
//! or resource name, the size of META, the length of a glob pattern and the number of entries a
//! cascade may reach. Each comes from a module config (`src/config.rs`); an error names the
//! limit and its config, and is raised before anything changes.
//!
//! Cascade policy: **refuse**. Before an invalidation deletes anything, the cascade is walked on
//! the index (every reached entry counted as live and deletable, so the count is an upper
//! bound); if more than `cache.max-cascade-entries` entries come through dependencies (the
//! entries the selector picks itself do not count), the command is refused. The walk stops as
//! soon as the limit is passed, so the check costs at most the limit.

use crate::core::entry::{canonical, Entry};
use crate::core::index::{cascade, DbIndex, Selector};
use crate::core::parse::SetArgs;
use crate::error::{CacheError, Result};

/// The limits in force. `cascade_entries` 0 means no limit on cascades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub tags_per_entry: usize,
    pub depends_per_entry: usize,
    pub name_bytes: usize,
    pub meta_bytes: usize,
    pub pattern_bytes: usize,
    pub cascade_entries: usize,
    /// Tokens of a searched pattern piece with wildcards inside (not a config: the matcher's
    /// cost per key byte, see `glob::widest_search`).
    pub wildcard_piece: usize,
}

/// Config names, as the errors show them.
pub const TAGS_CONFIG: &str = "cache.max-tags-per-entry";
pub const DEPENDS_CONFIG: &str = "cache.max-depends-per-entry";
pub const NAME_CONFIG: &str = "cache.max-name-bytes";
pub const META_CONFIG: &str = "cache.max-meta-bytes";
pub const PATTERN_CONFIG: &str = "cache.max-pattern-bytes";
pub const CASCADE_CONFIG: &str = "cache.max-cascade-entries";

/// What one CACHE.MSET may carry (not configs: the 50 ms bound on one command): entries, and
/// tag and resource names over all its entries (as sent).
pub const MSET_ENTRIES: usize = 10_000;
pub const MSET_NAMES: usize = 50_000;

/// CACHE.MSET within [`MSET_ENTRIES`] and [`MSET_NAMES`] (commands from the master or the AOF
/// never carry CACHE.MSET: it propagates as CACHE.SET).
pub fn check_mset(entries: &[(usize, SetArgs)]) -> Result<()> {
    let names: usize = entries
        .iter()
        .map(|(_, e)| e.tags.len() + e.deps.len())
        .sum();
    let refuse = |what: &str, n: usize, limit: usize| {
        CacheError::Message(format!(
            "ERR CACHE.MSET too large: {n} {what}, the limit is {limit}; send several"
        ))
    };
    if entries.len() > MSET_ENTRIES {
        return Err(refuse("entries", entries.len(), MSET_ENTRIES));
    }
    if names > MSET_NAMES {
        return Err(refuse("tag and resource names", names, MSET_NAMES));
    }
    Ok(())
}

fn over(what: &str, size: String, limit: usize, config: &str) -> CacheError {
    CacheError::Message(format!(
        "ERR {what}: {size}, the limit is {limit} ({config})"
    ))
}

impl Limits {
    /// No limit at all (tests, and commands replayed from the master or the AOF).
    pub const NONE: Limits = Limits {
        tags_per_entry: usize::MAX,
        depends_per_entry: usize::MAX,
        name_bytes: usize::MAX,
        meta_bytes: usize::MAX,
        pattern_bytes: usize::MAX,
        cascade_entries: 0,
        wildcard_piece: usize::MAX,
    };

    fn names(&self, to_deps: bool, names: &[&[u8]], total: usize) -> Result<()> {
        let (what, limit, config, name) = if to_deps {
            (
                "too many dependencies for one entry",
                self.depends_per_entry,
                DEPENDS_CONFIG,
                "resource name too long",
            )
        } else {
            (
                "too many tags for one entry",
                self.tags_per_entry,
                TAGS_CONFIG,
                "tag too long",
            )
        };
        if let Some(long) = names.iter().find(|n| n.len() > self.name_bytes) {
            return Err(over(
                name,
                format!("{} bytes", long.len()),
                self.name_bytes,
                NAME_CONFIG,
            ));
        }
        if total > limit {
            return Err(over(what, total.to_string(), limit, config));
        }
        Ok(())
    }

    /// CACHE.SET: distinct tags and dependencies, each name's length, META's size.
    pub fn check_set(&self, a: &SetArgs) -> Result<()> {
        for (to_deps, list) in [(false, &a.tags), (true, &a.deps)] {
            // Counting distinct names costs a sort: only when the raw count is over.
            let limit = if to_deps {
                self.depends_per_entry
            } else {
                self.tags_per_entry
            };
            let total = if list.len() > limit {
                canonical(list.iter().copied()).len()
            } else {
                list.len()
            };
            self.names(to_deps, list, total)?;
        }
        if let Some(m) = a.meta {
            if m.len() > self.meta_bytes {
                return Err(over(
                    "META too large",
                    format!("{} bytes", m.len()),
                    self.meta_bytes,
                    META_CONFIG,
                ));
            }
        }
        Ok(())
    }

    /// CACHE.TAG / CACHE.DEPEND: the entry's list with the new names must stay within the limit.
    pub fn check_add(&self, entry: &Entry, to_deps: bool, names: &[Vec<u8>]) -> Result<()> {
        let new: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        let current = if to_deps { entry.deps() } else { entry.tags() };
        let limit = if to_deps {
            self.depends_per_entry
        } else {
            self.tags_per_entry
        };
        let now = current.clone().count();
        // At most `now + new.len()` names: only count exactly when that could be over.
        let total = if now.saturating_add(new.len()) > limit {
            let have: Vec<&[u8]> = current.collect();
            now + canonical(new.iter().copied())
                .into_iter()
                .filter(|n| have.binary_search(n).is_err())
                .count()
        } else {
            now + new.len()
        };
        self.names(to_deps, &new, total)
    }

    /// A glob pattern (PATTERN selector, CACHE.TAGS MATCH).
    pub fn check_pattern(&self, pattern: &[u8]) -> Result<()> {
        if pattern.len() > self.pattern_bytes {
            return Err(over(
                "pattern too long",
                format!("{} bytes", pattern.len()),
                self.pattern_bytes,
                PATTERN_CONFIG,
            ));
        }
        if self.wildcard_piece == usize::MAX {
            return Ok(());
        }
        let widest = crate::core::glob::widest_search(pattern);
        if widest > self.wildcard_piece {
            return Err(CacheError::Message(format!(
                "ERR pattern too complex: {widest} bytes between two stars with ? or [...] inside, the limit is {}",
                self.wildcard_piece
            )));
        }
        Ok(())
    }

    pub fn check_selector(&self, sel: &Selector) -> Result<()> {
        match sel {
            Selector::Pattern(p) => self.check_pattern(p),
            _ => Ok(()),
        }
    }

    /// Refuses a selector whose cascade (up to `depth` hops) would reach more than
    /// `cascade_entries` entries beyond the selected ones, on this index. Else the number of
    /// entries the walk reached, the selected ones included (0 when nothing was walked: no
    /// limit, no cascade).
    pub fn check_cascade(&self, idx: &DbIndex, sel: &Selector, depth: u32) -> Result<usize> {
        let limit = self.cascade_entries;
        if limit == 0 || depth == 0 || matches!(sel, Selector::All) || idx.resource_count() == 0 {
            return Ok(0);
        }
        let seeds = idx.select(sel);
        let allowed = seeds.len().saturating_add(limit);
        let mut seen = 0usize;
        cascade(
            seeds,
            depth,
            |keys| idx.dependents_of_all(keys),
            |_| {
                seen += 1;
                // Past the limit nothing more passes the cascade on: the walk ends.
                seen <= allowed
            },
        );
        if seen > allowed {
            return Err(cascade_too_large(limit));
        }
        Ok(seen)
    }
}

/// The refusal of a cascade past `limit` entries beyond the selected ones.
pub const REPLY_CONFIG: &str = "cache.max-reply-keys";

/// A listing (`command`, of `what`) that selects more than `limit` items (counted in the
/// index, before LAZY marks and ACL reach are applied).
pub fn reply_too_large(command: &str, what: &str, limit: usize, hint: &str) -> CacheError {
    CacheError::Message(format!(
        "ERR {command} selects more than {limit} {what}, the limit is {limit} ({REPLY_CONFIG}); \
         {hint} or raise the limit"
    ))
}

pub fn cascade_too_large(limit: usize) -> CacheError {
    CacheError::Message(format!(
        "ERR cascade too large: more than {limit} dependent entries, the limit is {limit} \
         ({CASCADE_CONFIG}); invalidate with a smaller DEPTH or raise the limit"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::parse::parse_set;

    fn limits() -> Limits {
        Limits {
            tags_per_entry: 3,
            depends_per_entry: 2,
            name_bytes: 4,
            meta_bytes: 10,
            pattern_bytes: 5,
            cascade_entries: 2,
            wildcard_piece: 128,
        }
    }

    fn set(s: &str) -> Result<()> {
        let args: Vec<&[u8]> = s.split(' ').map(str::as_bytes).collect();
        let a = parse_set(&args, 0).unwrap();
        limits().check_set(&a)
    }

    fn msg<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn set_limits_count_distinct_names() {
        assert!(set("s k v TAGS 3 a b c DEPENDS 2 r s META {\"a\":1}").is_ok());
        assert!(set("s k v TAGS 5 a b c a b").is_ok());
        assert_eq!(
            msg(set("s k v TAGS 4 a b c d")),
            "ERR too many tags for one entry: 4, the limit is 3 (cache.max-tags-per-entry)"
        );
        assert_eq!(
            msg(set("s k v DEPENDS 3 a b c")),
            "ERR too many dependencies for one entry: 3, the limit is 2 (cache.max-depends-per-entry)"
        );
        assert_eq!(
            msg(set("s k v TAGS 1 abcde")),
            "ERR tag too long: 5 bytes, the limit is 4 (cache.max-name-bytes)"
        );
        assert_eq!(
            msg(set("s k v DEPENDS 1 abcde")),
            "ERR resource name too long: 5 bytes, the limit is 4 (cache.max-name-bytes)"
        );
        assert_eq!(
            msg(set("s k v META {\"ab\":\"cd\"}")),
            "ERR META too large: 11 bytes, the limit is 10 (cache.max-meta-bytes)"
        );
        let args: Vec<&[u8]> = vec![b"s", b"k", b"v", b"TAGS", b"1", b"abcdefgh"];
        assert!(Limits::NONE
            .check_set(&parse_set(&args, 0).unwrap())
            .is_ok());
    }

    #[test]
    fn add_limits_count_the_entry_with_its_new_names() {
        let e = Entry::new(b"v", [&b"a"[..], b"b"], [&b"r"[..]], None, 0).unwrap();
        let v = |s: &[&str]| s.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
        let l = limits();
        assert!(l.check_add(&e, false, &v(&["c"])).is_ok());
        assert!(l.check_add(&e, false, &v(&["a", "b", "c", "c"])).is_ok());
        assert_eq!(
            msg(l.check_add(&e, false, &v(&["c", "d"]))),
            "ERR too many tags for one entry: 4, the limit is 3 (cache.max-tags-per-entry)"
        );
        assert!(l.check_add(&e, true, &v(&["s", "r"])).is_ok());
        assert!(l.check_add(&e, true, &v(&["s", "t"])).is_err());
        assert!(l.check_add(&e, true, &v(&["abcde"])).is_err());
    }

    #[test]
    fn patterns() {
        let l = limits();
        assert!(l.check_pattern(b"a*b*c").is_ok());
        assert_eq!(
            msg(l.check_pattern(b"a*b*c*")),
            "ERR pattern too long: 6 bytes, the limit is 5 (cache.max-pattern-bytes)"
        );
        assert!(l
            .check_selector(&Selector::Pattern(b"******".to_vec()))
            .is_err());
        let wide = Limits {
            pattern_bytes: 4096,
            ..limits()
        };
        let mut piece = b"*a".to_vec();
        piece.extend(std::iter::repeat_n(b'?', 127));
        piece.extend_from_slice(b"b*");
        assert_eq!(
            msg(wide.check_pattern(&piece)),
            "ERR pattern too complex: 129 bytes between two stars with ? or [...] inside, the limit is 128"
        );
        piece.remove(2);
        assert!(wide.check_pattern(&piece).is_ok());
        // Literal pieces and the ends are not searched with wildcards: no limit but the length.
        assert!(wide
            .check_pattern(&[b"*".to_vec(), b"x".repeat(4000), b"*".to_vec()].concat())
            .is_ok());
        let mut ends = b"*".to_vec();
        ends.extend(std::iter::repeat_n(b'?', 4094));
        ends.push(b'b');
        assert!(wide.check_pattern(&ends).is_ok());
        assert!(l
            .check_selector(&Selector::Tags(vec![b"******".to_vec()]))
            .is_ok());
    }

    #[test]
    fn cascades_are_refused_past_the_limit() {
        let mut idx = DbIndex::new();
        let none = || std::iter::empty::<&[u8]>();
        idx.insert(b"root", [&b"t"[..]], none(), 1);
        // Three entries depend on root, one more on the first of them.
        for k in ["a", "b", "c"] {
            idx.insert(k.as_bytes(), none(), [&b"root"[..]], 1);
        }
        idx.insert(b"d", none(), [&b"a"[..]], 1);
        let l = limits();
        let key = Selector::Keys(vec![b"root".to_vec()]);
        assert!(l.check_cascade(&idx, &key, 0).is_ok());
        let e = msg(l.check_cascade(&idx, &key, 1));
        assert!(e.contains("(cache.max-cascade-entries)"), "{e}");
        // Selected entries don't count: the three dependents selected directly pass at depth 0.
        let deps = Selector::Dependents(vec![b"root".to_vec()]);
        assert!(l.check_cascade(&idx, &deps, 0).is_ok());
        // ...and with one hop only d comes through the cascade.
        assert!(l.check_cascade(&idx, &deps, 5).is_ok());
        assert!(l.check_cascade(&idx, &Selector::All, 5).is_ok());
        let wide = Limits {
            cascade_entries: 4,
            ..l
        };
        assert!(wide.check_cascade(&idx, &key, 9).is_ok());
        let tight = Limits {
            cascade_entries: 3,
            ..l
        };
        assert!(tight.check_cascade(&idx, &key, 9).is_err());
        assert!(tight.check_cascade(&idx, &key, 1).is_ok());
        assert!(Limits::NONE.check_cascade(&idx, &key, 9).is_ok());
    }
}
