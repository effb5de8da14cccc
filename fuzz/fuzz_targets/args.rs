//! Every command's argument parser on arbitrary argument lists (NUL-separated), and what the
//! handlers do next with a parse that succeeded: limits, building and encoding the entry,
//! selecting on an index, applying a rule. Oracles: nothing panics, every error is one
//! Redis-style `ERR ...` line, an entry survives encode/decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tagcache_fuzz::core::entry::Entry;
use tagcache_fuzz::core::index::DbIndex;
use tagcache_fuzz::core::limits::Limits;
use tagcache_fuzz::core::parse;
use tagcache_fuzz::core::rules::Rules;
use tagcache_fuzz::split_args;

const LIMITS: Limits = Limits {
    tags_per_entry: 8,
    depends_per_entry: 8,
    name_bytes: 16,
    meta_bytes: 64,
    pattern_bytes: 32,
    cascade_entries: 3,
    wildcard_piece: 8,
};

fn redis_style(e: &str) {
    assert!(
        e.starts_with("ERR ") || e.starts_with("WRONGTYPE "),
        "not a Redis-style error: {e:?}"
    );
}

fn check<T>(r: Result<T, tagcache_fuzz::error::CacheError>) -> Option<T> {
    r.map_err(|e| redis_style(&e.to_string())).ok()
}

fn check_rule<T>(r: Result<T, tagcache_fuzz::core::rules::RuleError>) -> Option<T> {
    r.map_err(|e| redis_style(&e.to_string())).ok()
}

/// A small index: a chain a <- b <- c <- d, tags on some, a namespace.
fn index() -> DbIndex {
    let mut idx = DbIndex::new();
    let e = || std::iter::empty::<&[u8]>();
    idx.insert(b"a", [&b"t"[..], b"u"], e(), 1);
    idx.insert(b"n:b", [&b"t"[..]], [&b"a"[..]], 1);
    idx.insert(b"n:c", e(), [&b"n:b"[..], b"r"], 1);
    idx.insert(b"d", [&b"u"[..]], [&b"n:c"[..]], 1);
    idx
}

fuzz_target!(|data: &[u8]| {
    let args = split_args(data);
    let now = 1_700_000_000_000;

    if let Some(a) = check(parse::parse_set(&args, now)) {
        let _ = LIMITS
            .check_set(&a)
            .map_err(|e| redis_style(&e.to_string()));
        if let Some(e) = Entry::new(
            a.value,
            a.tags.iter().copied(),
            a.deps.iter().copied(),
            a.meta,
            now,
        ) {
            assert_eq!(Entry::decode(&e.encode()).as_ref(), Ok(&e));
            // The limits count exactly what the entry ends up with: distinct names on SET...
            let exact = |tags: usize, deps: usize| Limits {
                tags_per_entry: tags,
                depends_per_entry: deps,
                ..Limits::NONE
            };
            let (nt, nd) = (e.tags().count(), e.deps().count());
            assert!(exact(nt, nd).check_set(&a).is_ok());
            if nt > 0 {
                assert!(exact(nt - 1, nd).check_set(&a).is_err());
            }
            if nd > 0 {
                assert!(exact(nt, nd - 1).check_set(&a).is_err());
            }
            // ...and the entry's list with the new names on CACHE.TAG / CACHE.DEPEND (here the
            // SET's tags added as dependencies).
            let names: Vec<Vec<u8>> = a.tags.iter().map(|n| n.to_vec()).collect();
            let grown = e.with_added(true, a.tags.iter().copied());
            let total = match grown.expect("fuzz-sized entries stay below the size limit") {
                Some((grown, added)) => {
                    assert_eq!(grown.deps().count(), nd + added.len());
                    grown.deps().count()
                }
                // Nothing new: every tag is a dependency already.
                None => {
                    assert!(a.tags.iter().all(|t| e.deps().any(|d| d == *t)));
                    nd
                }
            };
            assert!(exact(0, total).check_add(&e, true, &names).is_ok());
            if total > 0 {
                assert!(exact(0, total - 1).check_add(&e, true, &names).is_err());
            }
        }
    }
    for (cmd, dry) in [("cache.invalidate", false), ("cache.keys", true)] {
        if let Some(a) = check(parse::parse_invalidate(&args, cmd, dry)) {
            let _ = LIMITS.check_selector(&a.selector);
            let idx = index();
            let depth = a.depth.unwrap_or(16).min(8);
            let selected = idx.select(&a.selector);
            let reached = idx.resolve(&a.selector, depth);
            assert!(selected.iter().all(|k| reached.contains(k)));
            let refused = LIMITS.check_cascade(&idx, &a.selector, depth).is_err();
            assert_eq!(
                refused,
                reached.len() - selected.len() > LIMITS.cascade_entries
            );
            let _ = a.selector.arguments();
        }
    }
    if let Some(t) = check(parse::parse_tags(&args)) {
        if let Some(p) = &t.pattern {
            let _ = LIMITS.check_pattern(p);
            let _ = index().tag_sizes(Some(&tagcache_fuzz::core::glob::Glob::new(p)), Some(2));
        }
    }
    for cmd in ["cache.events", "cache.hotkeys"] {
        let _ = check(parse::parse_count(&args, cmd));
    }
    let _ = check(parse::parse_json_flag(&args, "cache.stats"));
    let _ = check(parse::parse_pending(&args, false));
    let _ = check(parse::parse_pending(&args, true));
    let _ = check(parse::parse_debug(&args));
    let _ = check(parse::parse_key_names(&args, "cache.tag"));
    let _ = check(parse::exact(&args, 1, "cache.get"));
    let _ = check(parse::at_least(&args, 1, "cache.mget"));
    if let Some(last) = args.last() {
        let _ = check(parse::parse_meta(last));
    }

    let mut rules = Rules::default();
    if let Some(cmd) = check_rule(Rules::parse_rule_command(&args)) {
        let _ = rules.apply_rule(cmd);
    }
    if let Some(cmd) = check_rule(Rules::parse_relate_command(&args)) {
        let _ = rules.apply_relate(cmd);
    }
    if let Some(w) = check_rule(Rules::parse_write(&args)) {
        let _ = rules.plan(&w);
    }
    let round = Rules::decode(&rules.encode()).expect("rules decode what they encode");
    assert_eq!(round.encode(), rules.encode());
});
