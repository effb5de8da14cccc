//! CACHE.INVALIDATE and its dry run CACHE.KEYS against a real server: every selector, the
//! dependency cascade (depth, cycles, diamonds, the default depth limit), CACHE.TAGS, index
//! cleanup when entries leave without an invalidation (DEL, UNLINK, expiry, eviction,
//! overwrite) and the `del` keyspace notifications an invalidation emits.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The value every test stores under an entry key: `v-<key>`.
fn val(key: &str) -> String {
    format!("v-{key}")
}

/// CACHE.SET key v-<key> [TAGS ..] [DEPENDS ..] [extra ..], which must reply OK.
fn set_with(c: &mut Connection, key: &str, tags: &[&str], deps: &[&str], extra: &[&str]) {
    let mut parts: Vec<String> = vec!["CACHE.SET".into(), key.into(), val(key)];
    parts.extend(extra.iter().map(|s| s.to_string()));
    if !tags.is_empty() {
        parts.push("TAGS".into());
        parts.push(tags.len().to_string());
        parts.extend(tags.iter().map(|s| s.to_string()));
    }
    if !deps.is_empty() {
        parts.push("DEPENDS".into());
        parts.push(deps.len().to_string());
        parts.extend(deps.iter().map(|s| s.to_string()));
    }
    assert_eq!(ok(c, &parts), Value::Okay, "{parts:?}");
}

/// An entry with tags and dependencies, value `v-<key>`.
fn entry(c: &mut Connection, key: &str, tags: &[&str], deps: &[&str]) {
    set_with(c, key, tags, deps, &[]);
}

/// A plain string key (user data the cache must never delete).
fn plain(c: &mut Connection, key: &str, value: &str) {
    assert_eq!(ok(c, &["SET", key, value]), Value::Okay);
}

fn cache_get(c: &mut Connection, key: &str) -> Option<String> {
    bytes(&ok(c, &["CACHE.GET", key])).map(|b| String::from_utf8(b).expect("utf-8 value"))
}

fn plain_get(c: &mut Connection, key: &str) -> Option<String> {
    bytes(&ok(c, &["GET", key])).map(|b| String::from_utf8(b).expect("utf-8 value"))
}

fn invalidate(c: &mut Connection, args: &[&str]) -> i64 {
    let mut parts = vec!["CACHE.INVALIDATE"];
    parts.extend_from_slice(args);
    int(&ok(c, &parts))
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

/// CACHE.TAGS [args..] as (tag, entries) pairs in reply order.
fn tag_sizes(c: &mut Connection, args: &[&str]) -> Vec<(String, i64)> {
    let mut parts = vec!["CACHE.TAGS"];
    parts.extend_from_slice(args);
    list(&ok(c, &parts))
        .iter()
        .map(|pair| {
            let p = list(pair);
            assert_eq!(p.len(), 2, "a CACHE.TAGS item is [tag, entries]: {pair:?}");
            let tag = String::from_utf8(bytes(&p[0]).expect("tag name")).expect("utf-8 tag");
            (tag, int(&p[1]))
        })
        .collect()
}

fn inspect_list(c: &mut Connection, key: &str, name: &str) -> Vec<String> {
    let reply = ok(c, &["CACHE.INSPECT", key]);
    assert_ne!(reply, Value::Nil, "CACHE.INSPECT {key}: no entry");
    strings(&field(&reply, name))
}

/// The `dependents` of CACHE.INSPECT key.
fn dependents(c: &mut Connection, key: &str) -> Vec<String> {
    inspect_list(c, key, "dependents")
}

/// The `depends` of CACHE.INSPECT key.
fn depends(c: &mut Connection, key: &str) -> Vec<String> {
    inspect_list(c, key, "depends")
}

/// One numeric field of an INFO section.
fn info_field(c: &mut Connection, section: &str, name: &str) -> i64 {
    let text: String = redis::cmd("INFO").arg(section).query(c).expect("INFO");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in INFO {section}"))
        .trim()
        .parse()
        .expect("numeric INFO field")
}

/// Every key of the current database: its type and its value (string or cache entry).
type Snapshot = BTreeMap<String, (String, Option<String>)>;

fn snapshot(c: &mut Connection) -> Snapshot {
    let mut out = Snapshot::new();
    for k in strings(&ok(c, &["KEYS", "*"])) {
        let ty: String = redis::cmd("TYPE").arg(&k).query(c).expect("TYPE");
        let v = match ty.as_str() {
            "string" => plain_get(c, &k),
            "tagcache0" => cache_get(c, &k),
            _ => None,
        };
        out.insert(k, (ty, v));
    }
    out
}

/// The core check of this file: `CACHE.KEYS [DEPTH d] <selector>` lists exactly `expected`
/// (sorted) and changes nothing; `CACHE.INVALIDATE [DEPTH d] <selector>` then replies
/// `expected.len()`, the expected keys are gone (CACHE.GET nil, EXISTS 0) and every other key,
/// entry or plain string, keeps its type and value. A repeat finds nothing more.
fn expect_invalidation(
    c: &mut Connection,
    depth: Option<&str>,
    selector: &[&str],
    expected: &[&str],
) {
    let want = sorted(expected);
    let mut dedup = want.clone();
    dedup.dedup();
    assert_eq!(dedup, want, "test bug: duplicate expected keys");

    let mut args: Vec<&str> = Vec::new();
    if let Some(d) = depth {
        args.extend(["DEPTH", d]);
    }
    args.extend_from_slice(selector);

    let before = snapshot(c);
    for k in &want {
        assert_eq!(
            before.get(k).map(|(t, _)| t.as_str()),
            Some("tagcache0"),
            "test bug: {k} is not an entry"
        );
    }
    let digest_before = digest(c);

    // Dry run: the exact sorted list, nothing removed.
    assert_eq!(keys(c, &args), want, "CACHE.KEYS {args:?}");
    assert_eq!(
        digest(c),
        digest_before,
        "CACHE.KEYS {args:?} changed the dataset"
    );
    assert_eq!(dbsize(c), before.len() as i64);

    // The invalidation itself.
    assert_eq!(
        invalidate(c, &args),
        want.len() as i64,
        "CACHE.INVALIDATE {args:?}"
    );
    for k in &want {
        assert_eq!(
            cache_get(c, k),
            None,
            "{k} should be invalidated by {args:?}"
        );
        assert_eq!(exists(c, k), 0, "{k} should be deleted by {args:?}");
    }
    let after = snapshot(c);
    let mut survivors = before.clone();
    for k in &want {
        survivors.remove(k);
    }
    assert_eq!(
        after, survivors,
        "keys other than {want:?} changed after {args:?}"
    );

    // Everything the selector reached is gone: the same selector reaches nothing now.
    assert_eq!(
        keys(c, &args),
        Vec::<String>::new(),
        "CACHE.KEYS {args:?} after the invalidation"
    );
    let digest_after = digest(c);
    assert_eq!(
        invalidate(c, &args),
        0,
        "repeated CACHE.INVALIDATE {args:?}"
    );
    assert_eq!(digest(c), digest_after);
    verify(c);
}

// ---------------------------------------------------------------------------------------------
// 1, 2. Selectors, each with its dry run
// ---------------------------------------------------------------------------------------------

#[test]
fn key_selector_removes_listed_entries_and_ignores_missing_and_plain_keys() {
    let s = Server::start();
    let mut c = s.conn();
    for k in ["a", "b", "c", "d"] {
        entry(&mut c, k, &["t"], &[]);
    }
    plain(&mut c, "p", "plain-p");

    expect_invalidation(
        &mut c,
        None,
        &["KEY", "a", "c", "missing", "p"],
        &["a", "c"],
    );
    // Only non-entries: nothing, and the plain key keeps its value.
    expect_invalidation(&mut c, None, &["KEY", "p", "missing"], &[]);
    assert_eq!(plain_get(&mut c, "p").as_deref(), Some("plain-p"));
    assert_eq!(cache_get(&mut c, "d"), Some(val("d")));
    verify(&mut c);
}

#[test]
fn key_selector_lists_and_counts_a_key_named_twice_once() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &[], &[]);
    entry(&mut c, "b", &[], &["a"]);
    entry(&mut c, "c", &[], &[]);
    expect_invalidation(&mut c, None, &["KEY", "c", "c"], &["c"]);
    // Named twice, and also reached by the cascade from a.
    expect_invalidation(&mut c, None, &["KEY", "b", "a", "b"], &["a", "b"]);
    verify(&mut c);
}

#[test]
fn tag_selector_single_tag_and_union_counts_shared_entry_once() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t1"], &[]);
    entry(&mut c, "b", &["t1", "other"], &[]);
    entry(&mut c, "both", &["t1", "t2"], &[]);
    entry(&mut c, "c", &["t2"], &[]);
    entry(&mut c, "d", &["t3"], &[]);
    entry(&mut c, "e", &["t3"], &[]);
    entry(&mut c, "untagged", &[], &[]);
    plain(&mut c, "t1", "a plain key named like a tag");

    // Union of two tags: the entry carrying both is counted once.
    expect_invalidation(&mut c, None, &["TAG", "t1", "t2"], &["a", "b", "both", "c"]);
    // A tag with no entries, and a tag given twice.
    expect_invalidation(&mut c, None, &["TAG", "nope"], &[]);
    expect_invalidation(&mut c, None, &["TAG", "t3", "t3", "nope"], &["d", "e"]);
    // Tag names are not keys: the plain key `t1` and the untagged entry stay.
    assert_eq!(
        plain_get(&mut c, "t1").as_deref(),
        Some("a plain key named like a tag")
    );
    assert_eq!(cache_get(&mut c, "untagged"), Some(val("untagged")));
    assert_eq!(tag_sizes(&mut c, &[]), Vec::<(String, i64)>::new());
    verify(&mut c);
}

#[test]
fn tags_match_exactly_get_track_does_not_touch_get_all_tracks() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "track:1", &["get_track"], &[]);
    entry(&mut c, "track:2", &["get_track"], &[]);
    entry(&mut c, "tracks", &["get_all_tracks"], &[]);
    entry(&mut c, "track:1:meta", &["get_track:1"], &[]);
    entry(&mut c, "upper", &["GET_TRACK"], &[]);
    entry(&mut c, "prefixed", &["xget_track"], &[]);

    // A tag is a name, not a glob.
    expect_invalidation(&mut c, None, &["TAG", "get_*"], &[]);
    expect_invalidation(&mut c, None, &["TAG", "get_track"], &["track:1", "track:2"]);
    assert_eq!(keys(&mut c, &["TAG", "get_all_tracks"]), vec!["tracks"]);
    assert_eq!(
        tag_sizes(&mut c, &[]),
        pairs(&[
            ("GET_TRACK", 1),
            ("get_all_tracks", 1),
            ("get_track:1", 1),
            ("xget_track", 1)
        ])
    );
    expect_invalidation(&mut c, None, &["TAG", "get_all_tracks"], &["tracks"]);
    verify(&mut c);
}

/// Entries and plain keys shared by the PATTERN tests; (re)creating them restores the set.
const PATTERN_ENTRIES: [&str; 9] = [
    "user:", "user:1", "user:2", "user:10", "user:a", "user:b", "user:c", "user:d", "usr:1",
];

fn pattern_fixture(c: &mut Connection) {
    for k in PATTERN_ENTRIES {
        entry(c, k, &["users"], &[]);
    }
    plain(c, "user:plain", "plain value");
    plain(c, "user:x", "x value");
}

#[test]
fn pattern_star_matches_entries_only() {
    let s = Server::start();
    let mut c = s.conn();
    pattern_fixture(&mut c);
    expect_invalidation(
        &mut c,
        None,
        &["PATTERN", "user:*"],
        &[
            "user:", "user:1", "user:10", "user:2", "user:a", "user:b", "user:c", "user:d",
        ],
    );
    pattern_fixture(&mut c);
    expect_invalidation(&mut c, None, &["PATTERN", "*:1"], &["user:1", "usr:1"]);
    pattern_fixture(&mut c);
    expect_invalidation(
        &mut c,
        None,
        &["PATTERN", "user:1*"],
        &["user:1", "user:10"],
    );
    pattern_fixture(&mut c);
    // A pattern without glob characters is one exact key.
    expect_invalidation(&mut c, None, &["PATTERN", "user:1"], &["user:1"]);
    expect_invalidation(&mut c, None, &["PATTERN", "nothing:*"], &[]);
    pattern_fixture(&mut c);
    expect_invalidation(&mut c, None, &["PATTERN", "*"], &PATTERN_ENTRIES);
    // `*` reached every entry, and no plain key.
    assert_eq!(dbsize(&mut c), 2);
    assert_eq!(
        plain_get(&mut c, "user:plain").as_deref(),
        Some("plain value")
    );
    assert_eq!(plain_get(&mut c, "user:x").as_deref(), Some("x value"));
    verify(&mut c);
}

#[test]
fn pattern_question_mark_matches_exactly_one_byte() {
    let s = Server::start();
    let mut c = s.conn();
    pattern_fixture(&mut c);
    // `user:x` (plain) matches too and must survive.
    expect_invalidation(
        &mut c,
        None,
        &["PATTERN", "user:?"],
        &["user:1", "user:2", "user:a", "user:b", "user:c", "user:d"],
    );
    pattern_fixture(&mut c);
    expect_invalidation(&mut c, None, &["PATTERN", "u?r:?"], &["usr:1"]);
    pattern_fixture(&mut c);
    expect_invalidation(&mut c, None, &["PATTERN", "user:??"], &["user:10"]);
    assert_eq!(plain_get(&mut c, "user:x").as_deref(), Some("x value"));
    verify(&mut c);
}

#[test]
fn pattern_character_classes_sets_negation_and_ranges() {
    let s = Server::start();
    let mut c = s.conn();
    pattern_fixture(&mut c);
    expect_invalidation(
        &mut c,
        None,
        &["PATTERN", "user:[abc]"],
        &["user:a", "user:b", "user:c"],
    );
    pattern_fixture(&mut c);
    expect_invalidation(
        &mut c,
        None,
        &["PATTERN", "user:[^a]"],
        &["user:1", "user:2", "user:b", "user:c", "user:d"],
    );
    pattern_fixture(&mut c);
    expect_invalidation(
        &mut c,
        None,
        &["PATTERN", "user:[a-c]"],
        &["user:a", "user:b", "user:c"],
    );
    pattern_fixture(&mut c);
    expect_invalidation(
        &mut c,
        None,
        &["PATTERN", "user:[0-9]*"],
        &["user:1", "user:10", "user:2"],
    );
    pattern_fixture(&mut c);
    // `!` does not negate a class in Redis globs: `[!1]` is the class of `!` and `1`.
    expect_invalidation(&mut c, None, &["PATTERN", "us[a-z]r:[!1]"], &["user:1"]);
    assert_eq!(plain_get(&mut c, "user:x").as_deref(), Some("x value"));
    verify(&mut c);
}

#[test]
fn pattern_backslash_escapes_glob_characters() {
    let s = Server::start();
    let mut c = s.conn();
    for k in ["a*b", "a?b", "axb", "a[b", "a\\b"] {
        entry(&mut c, k, &[], &[]);
    }
    expect_invalidation(&mut c, None, &["PATTERN", "a\\*b"], &["a*b"]);
    expect_invalidation(&mut c, None, &["PATTERN", "a\\?b"], &["a?b"]);
    expect_invalidation(&mut c, None, &["PATTERN", "a\\[b"], &["a[b"]);
    expect_invalidation(&mut c, None, &["PATTERN", "a\\\\b"], &["a\\b"]);
    expect_invalidation(&mut c, None, &["PATTERN", "a?b"], &["axb"]);
    verify(&mut c);
}

#[test]
fn pattern_matching_plain_string_keys_spares_them_with_their_values() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "page:1", &[], &[]);
    entry(&mut c, "page:2", &[], &[]);
    plain(&mut c, "page:3", "user data 3");
    plain(&mut c, "page:home", "user data home");
    ok(&mut c, &["RPUSH", "page:list", "x", "y"]);
    expect_invalidation(&mut c, None, &["PATTERN", "page:*"], &["page:1", "page:2"]);
    assert_eq!(plain_get(&mut c, "page:3").as_deref(), Some("user data 3"));
    assert_eq!(
        plain_get(&mut c, "page:home").as_deref(),
        Some("user data home")
    );
    assert_eq!(int(&ok(&mut c, &["LLEN", "page:list"])), 2);
    // Only plain keys left: nothing to do, and they still stand.
    expect_invalidation(&mut c, None, &["PATTERN", "page:*"], &[]);
    expect_invalidation(&mut c, None, &["ALL"], &[]);
    assert_eq!(dbsize(&mut c), 3);
    verify(&mut c);
}

#[test]
fn namespace_selects_keys_prefixed_with_namespace_and_colon() {
    let s = Server::start();
    let mut c = s.conn();
    for k in [
        "user:1", "user:2", "user:x:y", "user:", "users:1", "user", "userx", "u*:1", "us:1",
    ] {
        entry(&mut c, k, &[], &[]);
    }
    plain(&mut c, "user:plain", "plain");
    expect_invalidation(
        &mut c,
        None,
        &["NAMESPACE", "user"],
        &["user:", "user:1", "user:2", "user:x:y"],
    );
    assert_eq!(plain_get(&mut c, "user:plain").as_deref(), Some("plain"));
    // The namespace is literal, not a glob.
    expect_invalidation(&mut c, None, &["NAMESPACE", "u*"], &["u*:1"]);
    expect_invalidation(&mut c, None, &["NAMESPACE", "nobody"], &[]);
    expect_invalidation(&mut c, None, &["NAMESPACE", "users"], &["users:1"]);
    assert_eq!(keys(&mut c, &["ALL"]), vec!["us:1", "user", "userx"]);
    verify(&mut c);
}

#[test]
fn all_removes_only_entries_of_the_current_database() {
    let s = Server::start();
    let mut c = s.conn();
    select(&mut c, 1);
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "one:1", &["t"], &["x"]);
    // Depends on a key that is an entry in db 0 only.
    entry(&mut c, "one:2", &[], &["x"]);
    plain(&mut c, "plain1", "db1 plain");
    select(&mut c, 0);
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "x", &["t"], &[]);
    entry(&mut c, "y", &[], &["x"]);
    plain(&mut c, "plain0", "db0 plain");

    // Key, tag, pattern and dependents selectors stay in db 0.
    expect_invalidation(&mut c, None, &["KEY", "x"], &["x", "y"]);
    expect_invalidation(&mut c, None, &["TAG", "t"], &["a"]);
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &[], &[]);
    expect_invalidation(&mut c, None, &["KEY", "one:1"], &[]);
    expect_invalidation(&mut c, None, &["PATTERN", "one:*"], &[]);
    expect_invalidation(&mut c, None, &["NAMESPACE", "one"], &[]);
    expect_invalidation(&mut c, None, &["DEPENDENTS", "x"], &[]);
    expect_invalidation(&mut c, None, &["ALL"], &["a", "b"]);
    assert_eq!(plain_get(&mut c, "plain0").as_deref(), Some("db0 plain"));
    expect_invalidation(&mut c, None, &["ALL"], &[]);
    verify(&mut c);

    select(&mut c, 1);
    assert_eq!(keys(&mut c, &["ALL"]), vec!["a", "one:1", "one:2"]);
    for k in ["a", "one:1", "one:2"] {
        assert_eq!(cache_get(&mut c, k), Some(val(k)));
    }
    assert_eq!(keys(&mut c, &["TAG", "t"]), vec!["a", "one:1"]);
    assert_eq!(keys(&mut c, &["DEPENDENTS", "x"]), vec!["one:1", "one:2"]);
    expect_invalidation(&mut c, None, &["ALL"], &["a", "one:1", "one:2"]);
    assert_eq!(plain_get(&mut c, "plain1").as_deref(), Some("db1 plain"));
    verify(&mut c);
}

#[test]
fn dependents_selector_with_depth_zero_one_and_default() {
    let s = Server::start();
    let mut c = s.conn();
    // r (not an entry) <- d1 <- d2 <- d3; r2 <- e1.
    let chain = |c: &mut Connection| {
        entry(c, "d1", &[], &["r"]);
        entry(c, "d2", &[], &["d1"]);
        entry(c, "d3", &[], &["d2"]);
    };
    chain(&mut c);
    entry(&mut c, "e1", &[], &["r2"]);

    expect_invalidation(&mut c, Some("0"), &["DEPENDENTS", "r"], &["d1"]);
    assert_eq!(depends(&mut c, "d2"), vec!["d1"]);
    chain(&mut c);
    expect_invalidation(&mut c, Some("1"), &["DEPENDENTS", "r"], &["d1", "d2"]);
    chain(&mut c);
    expect_invalidation(&mut c, None, &["DEPENDENTS", "r"], &["d1", "d2", "d3"]);
    // Several resources: union; a resource nobody depends on adds nothing.
    chain(&mut c);
    expect_invalidation(
        &mut c,
        Some("0"),
        &["DEPENDENTS", "r2", "d2", "nobody"],
        &["d3", "e1"],
    );
    // DEPENDENTS of an entry's key: its dependents, not the entry itself.
    entry(&mut c, "d3", &[], &["d2"]);
    expect_invalidation(&mut c, None, &["DEPENDENTS", "d1"], &["d2", "d3"]);
    assert_eq!(cache_get(&mut c, "d1"), Some(val("d1")));
    verify(&mut c);
}

#[test]
fn dependents_of_a_non_entry_resource_cascade_to_their_dependents() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "user:1:profile", &[], &["db:users:1"]);
    entry(&mut c, "user:1:card", &[], &["db:users:1", "db:users:2"]);
    entry(&mut c, "page:team", &[], &["user:1:card"]);
    entry(&mut c, "page:home", &[], &["page:team"]);
    entry(&mut c, "user:2:profile", &[], &["db:users:2"]);
    entry(&mut c, "user:3:profile", &[], &["db:users:3"]);
    plain(&mut c, "db:users:1", "row");

    // KEY on the resource: it is no entry, so nothing is removed and nothing cascades.
    expect_invalidation(&mut c, None, &["KEY", "db:users:1"], &[]);
    assert_eq!(dependents(&mut c, "user:1:card"), vec!["page:team"]);
    expect_invalidation(
        &mut c,
        None,
        &["DEPENDENTS", "db:users:1"],
        &["page:home", "page:team", "user:1:card", "user:1:profile"],
    );
    assert_eq!(plain_get(&mut c, "db:users:1").as_deref(), Some("row"));
    assert_eq!(
        keys(&mut c, &["DEPENDENTS", "db:users:2"]),
        vec!["user:2:profile"]
    );
    expect_invalidation(
        &mut c,
        None,
        &["DEPENDENTS", "db:users:2", "db:users:3"],
        &["user:2:profile", "user:3:profile"],
    );
    assert_eq!(dbsize(&mut c), 1);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 4, 5. Cascades
// ---------------------------------------------------------------------------------------------

#[test]
fn key_cascades_down_a_chain_with_depth_limits() {
    let s = Server::start();
    let mut c = s.conn();
    // a <- b <- c
    let chain = |c: &mut Connection| {
        entry(c, "a", &[], &[]);
        entry(c, "b", &[], &["a"]);
        entry(c, "c", &[], &["b"]);
    };
    chain(&mut c);
    entry(&mut c, "other", &[], &["unrelated"]);
    assert_eq!(dependents(&mut c, "a"), vec!["b"]);
    assert_eq!(dependents(&mut c, "b"), vec!["c"]);

    expect_invalidation(&mut c, None, &["KEY", "a"], &["a", "b", "c"]);
    chain(&mut c);
    expect_invalidation(&mut c, Some("0"), &["KEY", "a"], &["a"]);
    // b still depends on a, which is gone; recreating a links it again.
    assert_eq!(depends(&mut c, "b"), vec!["a"]);
    assert_eq!(keys(&mut c, &["DEPENDENTS", "a"]), vec!["b", "c"]);
    entry(&mut c, "a", &[], &[]);
    assert_eq!(dependents(&mut c, "a"), vec!["b"]);
    expect_invalidation(&mut c, Some("1"), &["KEY", "a"], &["a", "b"]);
    assert_eq!(cache_get(&mut c, "c"), Some(val("c")));
    chain(&mut c);
    // Starting in the middle only goes down.
    expect_invalidation(&mut c, None, &["KEY", "b"], &["b", "c"]);
    expect_invalidation(&mut c, None, &["KEY", "a", "other"], &["a", "other"]);
    verify(&mut c);
}

#[test]
fn diamond_counts_each_entry_once() {
    let s = Server::start();
    let mut c = s.conn();
    let diamond = |c: &mut Connection| {
        entry(c, "top", &["shape"], &[]);
        entry(c, "left", &["shape"], &["top"]);
        entry(c, "right", &["shape"], &["top"]);
        entry(c, "bottom", &["shape"], &["left", "right"]);
    };
    diamond(&mut c);
    expect_invalidation(
        &mut c,
        None,
        &["KEY", "top"],
        &["bottom", "left", "right", "top"],
    );
    diamond(&mut c);
    expect_invalidation(
        &mut c,
        Some("1"),
        &["KEY", "top"],
        &["left", "right", "top"],
    );
    diamond(&mut c);
    expect_invalidation(
        &mut c,
        Some("0"),
        &["DEPENDENTS", "top"],
        &["left", "right"],
    );
    diamond(&mut c);
    expect_invalidation(
        &mut c,
        None,
        &["DEPENDENTS", "top"],
        &["bottom", "left", "right"],
    );
    diamond(&mut c);
    // Both arms selected: bottom still counted once.
    expect_invalidation(
        &mut c,
        None,
        &["KEY", "left", "right"],
        &["bottom", "left", "right"],
    );
    diamond(&mut c);
    expect_invalidation(
        &mut c,
        None,
        &["TAG", "shape"],
        &["bottom", "left", "right", "top"],
    );
    verify(&mut c);
}

#[test]
fn dependency_cycles_terminate_and_count_each_entry_once() {
    let s = Server::start();
    let mut c = s.conn();
    // a depends on c, b on a, c on b: a -> b -> c -> a.
    let cycle = |c: &mut Connection| {
        entry(c, "a", &[], &["c"]);
        entry(c, "b", &[], &["a"]);
        entry(c, "c", &[], &["b"]);
    };
    cycle(&mut c);
    expect_invalidation(&mut c, None, &["KEY", "a"], &["a", "b", "c"]);
    cycle(&mut c);
    expect_invalidation(&mut c, Some("1"), &["KEY", "a"], &["a", "b"]);
    cycle(&mut c);
    expect_invalidation(&mut c, Some("1000"), &["KEY", "b"], &["a", "b", "c"]);
    cycle(&mut c);
    expect_invalidation(&mut c, Some("0"), &["DEPENDENTS", "a"], &["b"]);
    cycle(&mut c);
    expect_invalidation(&mut c, Some("1"), &["DEPENDENTS", "a"], &["b", "c"]);
    cycle(&mut c);
    // The cascade comes back round to the resource itself.
    expect_invalidation(&mut c, None, &["DEPENDENTS", "a"], &["a", "b", "c"]);
    verify(&mut c);
}

#[test]
fn self_dependency_terminates() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "s", &[], &["s"]);
    assert_eq!(dependents(&mut c, "s"), vec!["s"]);
    expect_invalidation(&mut c, None, &["KEY", "s"], &["s"]);
    entry(&mut c, "s", &[], &["s"]);
    entry(&mut c, "t", &[], &["s"]);
    assert_eq!(dependents(&mut c, "s"), vec!["s", "t"]);
    expect_invalidation(&mut c, Some("0"), &["DEPENDENTS", "s"], &["s", "t"]);
    entry(&mut c, "s", &[], &["s"]);
    entry(&mut c, "t", &[], &["s"]);
    expect_invalidation(&mut c, None, &["KEY", "s"], &["s", "t"]);
    verify(&mut c);
}

/// p0 <- p1 <- ... <- p{n-1}: each link depends on the previous one.
fn chain_of(c: &mut Connection, prefix: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for i in 0..n {
        let deps: Vec<&str> = if i == 0 {
            vec![]
        } else {
            vec![names[i - 1].as_str()]
        };
        entry(c, &names[i], &[], &deps);
    }
    names
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn default_cascade_depth_limits_a_forty_long_chain() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        strings(&ok(&mut c, &["CONFIG", "GET", "cache.max-cascade-depth"])),
        vec!["cache.max-cascade-depth", "16"]
    );
    let chain = chain_of(&mut c, "c", 40);
    // c0 plus 16 hops.
    expect_invalidation(&mut c, None, &["KEY", "c0"], &as_strs(&chain[..17]));
    assert_eq!(keys(&mut c, &["ALL"]), sorted(&as_strs(&chain[17..])));
    assert_eq!(depends(&mut c, "c17"), vec!["c16"]);

    // An explicit DEPTH overrides the default.
    let d = chain_of(&mut c, "d", 40);
    expect_invalidation(&mut c, Some("3"), &["KEY", "d0"], &as_strs(&d[..4]));
    expect_invalidation(&mut c, Some("50"), &["KEY", "d4"], &as_strs(&d[4..]));

    // A larger configured limit takes the whole of a new chain.
    assert_eq!(
        ok(&mut c, &["CONFIG", "SET", "cache.max-cascade-depth", "100"]),
        Value::Okay
    );
    let e = chain_of(&mut c, "e", 40);
    expect_invalidation(&mut c, None, &["KEY", "e0"], &as_strs(&e));
    // The remainder of the first chain goes whole as well now.
    expect_invalidation(&mut c, None, &["KEY", "c17"], &as_strs(&chain[17..]));
    assert_eq!(dbsize(&mut c), 0);

    // And a configured limit of 0 means no cascade.
    assert_eq!(
        ok(&mut c, &["CONFIG", "SET", "cache.max-cascade-depth", "0"]),
        Value::Okay
    );
    let f = chain_of(&mut c, "f", 3);
    expect_invalidation(&mut c, None, &["KEY", "f0"], &["f0"]);
    expect_invalidation(&mut c, None, &["DEPENDENTS", "f0"], &as_strs(&f[1..2]));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 7. Options
// ---------------------------------------------------------------------------------------------

#[test]
fn context_and_immediate_strategy_are_accepted() {
    let s = Server::start();
    let mut c = s.conn();
    let fill = |c: &mut Connection| {
        entry(c, "a", &["t"], &[]);
        entry(c, "b", &["t"], &["a"]);
        entry(c, "c", &["u"], &["b"]);
    };
    fill(&mut c);
    assert_eq!(
        invalidate(
            &mut c,
            &[
                "CONTEXT",
                "user 1 updated",
                "STRATEGY",
                "IMMEDIATE",
                "TAG",
                "u"
            ]
        ),
        1
    );
    assert_eq!(keys(&mut c, &["ALL"]), vec!["a", "b"]);
    fill(&mut c);
    // Options in any order, any case; a CONTEXT text that reads like a selector is just text.
    assert_eq!(
        invalidate(
            &mut c,
            &[
                "strategy",
                "immediate",
                "context",
                "ALL",
                "depth",
                "1",
                "key",
                "a"
            ]
        ),
        2
    );
    assert_eq!(keys(&mut c, &["ALL"]), vec!["c"]);
    assert_eq!(cache_get(&mut c, "c"), Some(val("c")));
    fill(&mut c);
    assert_eq!(
        invalidate(&mut c, &["DEPTH", "0", "CONTEXT", "", "TAG", "t"]),
        2
    );
    assert_eq!(keys(&mut c, &["ALL"]), vec!["c"]);
    verify(&mut c);
}

#[test]
fn malformed_invalidate_and_keys_are_rejected_and_change_nothing() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &["t"], &["a"]);
    let d = digest(&mut c);
    let unknown = |w: &str| {
        format!(
            "ERR unknown selector '{w}', expected KEY, TAG, PATTERN, NAMESPACE, ALL or DEPENDENTS"
        )
    };
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["CACHE.INVALIDATE"],
            "ERR wrong number of arguments for 'cache.invalidate' command".into(),
        ),
        (
            vec!["CACHE.KEYS"],
            "ERR wrong number of arguments for 'cache.keys' command".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "EVERYTHING"],
            unknown("EVERYTHING"),
        ),
        (vec!["CACHE.INVALIDATE", "TAG"], "ERR syntax error".into()),
        (vec!["CACHE.INVALIDATE", "KEY"], "ERR syntax error".into()),
        (
            vec!["CACHE.INVALIDATE", "DEPENDENTS"],
            "ERR syntax error".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "ALL", "extra"],
            "ERR syntax error".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "PATTERN", "a", "b"],
            "ERR syntax error".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "PATTERN"],
            "ERR syntax error".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "NAMESPACE", "a", "b"],
            "ERR syntax error".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "DEPTH", "1"],
            "ERR syntax error".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "DEPTH", "1", "DEPTH", "2", "ALL"],
            "ERR syntax error".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "CONTEXT", "a", "CONTEXT", "b", "ALL"],
            "ERR syntax error".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "DEPTH", "-1", "KEY", "a"],
            "ERR DEPTH can't be negative".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "DEPTH", "x", "KEY", "a"],
            "ERR value is not an integer or out of range".into(),
        ),
        (
            vec!["CACHE.INVALIDATE", "STRATEGY", "soon", "ALL"],
            "ERR unknown strategy 'soon', expected IMMEDIATE, LAZY, BATCHED or SOFT".into(),
        ),
        (
            vec!["CACHE.KEYS", "CONTEXT", "c", "ALL"],
            unknown("CONTEXT"),
        ),
        (
            vec!["CACHE.KEYS", "STRATEGY", "IMMEDIATE", "ALL"],
            unknown("STRATEGY"),
        ),
        (
            vec!["CACHE.KEYS", "DEPTH", "-2", "ALL"],
            "ERR DEPTH can't be negative".into(),
        ),
        (vec!["CACHE.KEYS", "TAG"], "ERR syntax error".into()),
    ];
    for (parts, want) in cases {
        assert_eq!(err(&mut c, &parts), want, "{parts:?}");
        assert_eq!(digest(&mut c), d, "{parts:?} changed the dataset");
        assert_eq!(keys(&mut c, &["ALL"]), vec!["a", "b"]);
        assert_eq!(dependents(&mut c, "a"), vec!["b"]);
    }
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 8. CACHE.TAGS
// ---------------------------------------------------------------------------------------------

#[test]
fn tags_lists_largest_first_filters_limits_and_forgets_empty_tags() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(tag_sizes(&mut c, &[]), Vec::<(String, i64)>::new());
    entry(&mut c, "e1", &["big", "mid", "a-tie"], &[]);
    entry(&mut c, "e2", &["big", "mid"], &[]);
    entry(&mut c, "e3", &["big", "b-tie"], &[]);
    entry(&mut c, "e4", &["z-solo"], &[]);
    plain(&mut c, "big", "a plain key named like a tag");

    let all = pairs(&[
        ("big", 3),
        ("mid", 2),
        ("a-tie", 1),
        ("b-tie", 1),
        ("z-solo", 1),
    ]);
    assert_eq!(tag_sizes(&mut c, &[]), all);
    assert_eq!(
        tag_sizes(&mut c, &["COUNT", "2"]),
        pairs(&[("big", 3), ("mid", 2)])
    );
    assert_eq!(tag_sizes(&mut c, &["count", "100"]), all);
    assert_eq!(
        tag_sizes(&mut c, &["MATCH", "*-tie"]),
        pairs(&[("a-tie", 1), ("b-tie", 1)])
    );
    assert_eq!(
        tag_sizes(&mut c, &["MATCH", "?i?"]),
        pairs(&[("big", 3), ("mid", 2)])
    );
    assert_eq!(
        tag_sizes(&mut c, &["MATCH", "[ab]-*", "COUNT", "1"]),
        pairs(&[("a-tie", 1)])
    );
    assert_eq!(
        tag_sizes(&mut c, &["COUNT", "1", "MATCH", "z*"]),
        pairs(&[("z-solo", 1)])
    );
    assert_eq!(
        tag_sizes(&mut c, &["MATCH", "nothing*"]),
        Vec::<(String, i64)>::new()
    );

    // Rejected options change nothing.
    let d = digest(&mut c);
    for (args, want) in [
        (
            &["COUNT", "0"][..],
            "ERR value is out of range, must be positive",
        ),
        (
            &["COUNT", "-1"],
            "ERR value is out of range, must be positive",
        ),
        (
            &["COUNT", "x"],
            "ERR value is not an integer or out of range",
        ),
        (&["MATCH"], "ERR syntax error"),
        (&["MATCH", "a", "MATCH", "b"], "ERR syntax error"),
        (&["BOGUS", "1"], "ERR syntax error"),
    ] {
        let mut parts = vec!["CACHE.TAGS"];
        parts.extend_from_slice(args);
        assert_eq!(err(&mut c, &parts), want, "{parts:?}");
        assert_eq!(digest(&mut c), d);
    }
    assert_eq!(tag_sizes(&mut c, &[]), all);

    // The last entry of a tag goes: the tag goes.
    assert_eq!(invalidate(&mut c, &["KEY", "e1"]), 1);
    assert_eq!(
        tag_sizes(&mut c, &[]),
        pairs(&[("big", 2), ("b-tie", 1), ("mid", 1), ("z-solo", 1)])
    );
    assert_eq!(invalidate(&mut c, &["TAG", "big"]), 2);
    assert_eq!(tag_sizes(&mut c, &[]), pairs(&[("z-solo", 1)]));
    // Re-tagging brings a tag back; replacing an entry without it drops it again.
    assert_eq!(int(&ok(&mut c, &["CACHE.TAG", "e4", "big", "mid"])), 2);
    assert_eq!(
        tag_sizes(&mut c, &[]),
        pairs(&[("big", 1), ("mid", 1), ("z-solo", 1)])
    );
    entry(&mut c, "e4", &["other"], &[]);
    assert_eq!(tag_sizes(&mut c, &[]), pairs(&[("other", 1)]));
    assert_eq!(invalidate(&mut c, &["ALL"]), 1);
    assert_eq!(tag_sizes(&mut c, &[]), Vec::<(String, i64)>::new());
    assert_eq!(
        plain_get(&mut c, "big").as_deref(),
        Some("a plain key named like a tag")
    );
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 9. Index cleanup without cascade
// ---------------------------------------------------------------------------------------------

/// r (entry) <- x <- d, and y beside x under tag t; x alone carries `only-x`. `x_opts` are extra
/// CACHE.SET options for x (a TTL).
fn cleanup_fixture(c: &mut Connection, x_opts: &[&str]) {
    entry(c, "r", &[], &[]);
    set_with(c, "x", &["t", "only-x"], &["r"], x_opts);
    entry(c, "y", &["t"], &["r"]);
    entry(c, "d", &["dep"], &["x"]);
    assert_eq!(keys(c, &["DEPTH", "0", "TAG", "t"]), vec!["x", "y"]);
    assert_eq!(dependents(c, "r"), vec!["x", "y"]);
    assert_eq!(dependents(c, "x"), vec!["d"]);
    assert_eq!(
        tag_sizes(c, &[]),
        pairs(&[("t", 2), ("dep", 1), ("only-x", 1)])
    );
    verify(c);
}

/// After x left by a way other than CACHE.INVALIDATE: its tags and links are gone from the index,
/// its dependent d is still there with its value. `x_left_as` is what stands at x now, if
/// anything (a plain string after a SET overwrite).
fn check_x_left_without_cascade(c: &mut Connection, x_left_as: Option<&str>) {
    assert_eq!(cache_get_or_wrongtype(c, "x"), None);
    match x_left_as {
        None => assert_eq!(exists(c, "x"), 0),
        Some(v) => assert_eq!(plain_get(c, "x").as_deref(), Some(v)),
    }
    assert_eq!(keys(c, &["DEPTH", "0", "TAG", "t"]), vec!["y"]);
    assert_eq!(
        keys(c, &["DEPTH", "0", "TAG", "only-x"]),
        Vec::<String>::new()
    );
    assert_eq!(keys(c, &["KEY", "x"]), Vec::<String>::new());
    assert_eq!(keys(c, &["PATTERN", "x*"]), Vec::<String>::new());
    assert_eq!(tag_sizes(c, &[]), pairs(&[("dep", 1), ("t", 1)]));
    assert_eq!(dependents(c, "r"), vec!["y"]);
    // No cascade: d keeps its value and still depends on x.
    for k in ["r", "y", "d"] {
        assert_eq!(cache_get(c, k), Some(val(k)), "{k}");
    }
    assert_eq!(depends(c, "d"), vec!["x"]);
    assert_eq!(keys(c, &["DEPENDENTS", "x"]), vec!["d"]);
    assert_eq!(keys(c, &["ALL"]), vec!["d", "r", "y"]);
    verify(c);

    // Invalidating the key x now reaches no entry, so nothing cascades to d.
    let before = digest(c);
    assert_eq!(invalidate(c, &["KEY", "x"]), 0);
    assert_eq!(digest(c), before);
    if x_left_as.is_some() {
        assert_eq!(ok(c, &["DEL", "x"]), Value::Int(1));
    }

    // A new x is linked to d again, under the tags it now has.
    entry(c, "x", &["t"], &["r"]);
    assert_eq!(dependents(c, "x"), vec!["d"]);
    assert_eq!(dependents(c, "r"), vec!["x", "y"]);
    assert_eq!(keys(c, &["DEPTH", "0", "TAG", "t"]), vec!["x", "y"]);
    assert_eq!(keys(c, &["KEY", "x"]), vec!["d", "x"]);
    verify(c);
}

/// CACHE.GET that reads a non-entry (WRONGTYPE) as None.
fn cache_get_or_wrongtype(c: &mut Connection, key: &str) -> Option<String> {
    match cmd(c, &["CACHE.GET", key]) {
        Ok(v) => bytes(&v).map(|b| String::from_utf8_lossy(&b).into_owned()),
        Err(e) => {
            assert_eq!(e.code(), Some("WRONGTYPE"), "{e}");
            None
        }
    }
}

#[test]
fn del_cleans_the_index_without_cascading() {
    let s = Server::start();
    let mut c = s.conn();
    cleanup_fixture(&mut c, &[]);
    assert_eq!(ok(&mut c, &["DEL", "x"]), Value::Int(1));
    check_x_left_without_cascade(&mut c, None);
    // DEL of several entries at once, one of them with a dependent.
    assert_eq!(ok(&mut c, &["DEL", "x", "y", "nope"]), Value::Int(2));
    assert_eq!(keys(&mut c, &["TAG", "t"]), Vec::<String>::new());
    assert_eq!(dependents(&mut c, "r"), Vec::<String>::new());
    assert_eq!(cache_get(&mut c, "d"), Some(val("d")));
    verify(&mut c);
}

#[test]
fn unlink_cleans_the_index_without_cascading() {
    let s = Server::start();
    let mut c = s.conn();
    cleanup_fixture(&mut c, &[]);
    assert_eq!(ok(&mut c, &["UNLINK", "x"]), Value::Int(1));
    check_x_left_without_cascade(&mut c, None);
    // A large entry, freed in the background.
    let tags: Vec<String> = (0..200).map(|i| format!("many:{i}")).collect();
    entry(&mut c, "wide", &as_strs(&tags), &["r"]);
    assert_eq!(tag_sizes(&mut c, &["MATCH", "many:*"]).len(), 200);
    assert_eq!(ok(&mut c, &["UNLINK", "wide"]), Value::Int(1));
    assert_eq!(
        tag_sizes(&mut c, &["MATCH", "many:*"]),
        Vec::<(String, i64)>::new()
    );
    assert_eq!(dependents(&mut c, "r"), vec!["x", "y"]);
    verify(&mut c);
}

#[test]
fn active_expiry_cleans_the_index_without_cascading() {
    let s = Server::start();
    let mut c = s.conn();
    cleanup_fixture(&mut c, &["PX", "300"]);
    assert_eq!(dbsize(&mut c), 4);
    // Wait for the server's expiry cycle, without touching x (DBSIZE does not expire keys).
    let deadline = Instant::now() + Duration::from_secs(5);
    while dbsize(&mut c) != 3 {
        assert!(
            Instant::now() < deadline,
            "x was not actively expired within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(info_field(&mut c, "stats", "expired_keys"), 1);
    check_x_left_without_cascade(&mut c, None);
}

#[test]
fn lazy_expiry_on_access_cleans_the_index_without_cascading() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        ok(&mut c, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]),
        Value::Okay
    );
    let start = Instant::now();
    cleanup_fixture(&mut c, &["PX", "100"]);
    // Past the deadline (by the local clock, which the server's cannot be behind of).
    let until = start + Duration::from_millis(250);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still physically there: no active expiry.
    assert_eq!(dbsize(&mut c), 4);
    assert_eq!(info_field(&mut c, "stats", "expired_keys"), 0);
    // The access expires it.
    assert_eq!(cache_get(&mut c, "x"), None);
    assert_eq!(dbsize(&mut c), 3);
    assert_eq!(info_field(&mut c, "stats", "expired_keys"), 1);
    check_x_left_without_cascade(&mut c, None);
}

/// `gone` (tag t, PX 50) <- `child`, and `kept` (tag t); active expiry off, then waits until
/// `gone` has expired without anything touching it.
fn expired_but_not_reclaimed_fixture(c: &mut Connection) {
    assert_eq!(ok(c, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), Value::Okay);
    let start = Instant::now();
    set_with(c, "gone", &["t"], &[], &["PX", "50"]);
    entry(c, "kept", &["t"], &[]);
    entry(c, "child", &[], &["gone"]);
    let until = start + Duration::from_millis(200);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still physically there.
    assert_eq!(dbsize(c), 3);
}

#[test]
fn invalidate_neither_counts_nor_cascades_through_an_expired_entry() {
    let s = Server::start();
    let mut c = s.conn();
    expired_but_not_reclaimed_fixture(&mut c);
    // `gone` has expired: it is not invalidated, and like any expiry it takes no dependent
    // along, whether or not the server has reclaimed it yet.
    assert_eq!(invalidate(&mut c, &["TAG", "t"]), 1);
    assert_eq!(exists(&mut c, "gone"), 0);
    assert_eq!(exists(&mut c, "kept"), 0);
    assert_eq!(cache_get(&mut c, "child"), Some(val("child")));
    assert_eq!(depends(&mut c, "child"), vec!["gone"]);
    assert_eq!(keys(&mut c, &["TAG", "t"]), Vec::<String>::new());
    verify(&mut c);
}

#[test]
fn keys_dry_run_does_not_list_an_expired_entry_or_its_dependents() {
    let s = Server::start();
    let mut c = s.conn();
    expired_but_not_reclaimed_fixture(&mut c);
    assert_eq!(keys(&mut c, &["TAG", "t"]), vec!["kept"]);
    // The dry run agrees with the invalidation that follows.
    assert_eq!(invalidate(&mut c, &["TAG", "t"]), 1);
    assert_eq!(exists(&mut c, "kept"), 0);
    assert_eq!(cache_get(&mut c, "child"), Some(val("child")));
    verify(&mut c);
}

#[test]
fn plain_set_overwrite_cleans_the_index_without_cascading() {
    let s = Server::start();
    let mut c = s.conn();
    cleanup_fixture(&mut c, &[]);
    plain(&mut c, "x", "user data");
    assert_eq!(
        err(&mut c, &["CACHE.GET", "x"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    check_x_left_without_cascade(&mut c, Some("user data"));
}

#[test]
fn eviction_cleans_the_index_without_cascading() {
    let s = Server::with(
        &[],
        &["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"],
    );
    let mut c = s.conn();
    let value = "v".repeat(1000);
    let n = 4000;
    let mut written: Vec<String> = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let mut p = redis::pipe();
        for &i in chunk {
            let key = format!("ev:{i}");
            let group = format!("grp:{}", i % 7);
            let mut cm = redis::cmd("CACHE.SET");
            cm.arg(&key)
                .arg(&value)
                .arg("TAGS")
                .arg(2)
                .arg("ev")
                .arg(&group);
            if i > 0 {
                cm.arg("DEPENDS")
                    .arg(2)
                    .arg(format!("ev:{}", i - 1))
                    .arg("src");
            } else {
                cm.arg("DEPENDS").arg(1).arg("src");
            }
            p.add_command(cm).ignore();
            written.push(key);
        }
        let () = p.query(&mut c).expect("CACHE.SET pipeline");
    }
    // The dataset sits at the memory limit, so any command (a large reply) could evict more:
    // lift the limit to check a stable state.
    assert_eq!(
        ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]),
        Value::Okay
    );
    let evicted = info_field(&mut c, "stats", "evicted_keys");
    assert!(evicted > 0, "nothing was evicted");

    // The index lists exactly the entries that exist.
    let mut present = strings(&ok(&mut c, &["KEYS", "*"]));
    present.sort();
    assert_eq!(present.len() as i64, dbsize(&mut c));
    assert!(
        present.len() < n,
        "{} of {n} entries present after {evicted} evictions",
        present.len()
    );
    let tagged = keys(&mut c, &["DEPTH", "0", "TAG", "ev"]);
    assert_eq!(tagged, present);
    for k in &tagged {
        assert_eq!(exists(&mut c, k), 1, "{k} listed under tag ev but missing");
    }
    assert_eq!(keys(&mut c, &["ALL"]), present);
    assert_eq!(keys(&mut c, &["DEPTH", "0", "DEPENDENTS", "src"]), present);
    let groups: i64 = tag_sizes(&mut c, &["MATCH", "grp:*"])
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(groups, present.len() as i64);
    assert_eq!(
        tag_sizes(&mut c, &["MATCH", "ev"]),
        vec![("ev".to_string(), present.len() as i64)]
    );
    // Evicting ev:{i-1} did not remove ev:{i}: the newest entry survives with its dependency.
    let last = format!("ev:{}", n - 1);
    assert_eq!(cache_get(&mut c, &last).as_deref(), Some(value.as_str()));
    assert_eq!(
        depends(&mut c, &last),
        vec![format!("ev:{}", n - 2), "src".to_string()]
    );
    // Some survivor lost its predecessor to eviction and was not taken along (with a cascade,
    // evicting ev:i would have removed every later entry).
    let orphans: Vec<&String> = present
        .iter()
        .filter(|k| {
            let i: usize = k["ev:".len()..].parse().expect("index");
            i > 0 && present.binary_search(&format!("ev:{}", i - 1)).is_err()
        })
        .collect();
    assert!(
        !orphans.is_empty(),
        "no survivor whose predecessor was evicted"
    );
    for k in orphans.iter().take(20) {
        let i: usize = k["ev:".len()..].parse().expect("index");
        assert_eq!(cache_get(&mut c, k).as_deref(), Some(value.as_str()));
        assert_eq!(
            depends(&mut c, k),
            vec![format!("ev:{}", i - 1), "src".to_string()]
        );
    }
    // Each survivor is listed as a dependent of its predecessor only when the predecessor is an
    // entry; the index agrees with the entries either way.
    for k in present.iter().take(50) {
        let i: usize = k["ev:".len()..].parse().expect("index");
        if i + 1 < n {
            let next = format!("ev:{}", i + 1);
            let want: Vec<String> = if present.binary_search(&next).is_ok() {
                vec![next]
            } else {
                vec![]
            };
            assert_eq!(dependents(&mut c, k), want, "dependents of {k}");
        }
    }
    assert_eq!(info_field(&mut c, "stats", "evicted_keys"), evicted);
    assert_eq!(dbsize(&mut c), present.len() as i64);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 10. Keyspace notifications
// ---------------------------------------------------------------------------------------------

/// Reads `del` messages up to a sentinel key, which a plain SET + DEL then announces: the keys
/// deleted since the previous call, in the order they were announced.
fn dels_until_sentinel(
    c: &mut Connection,
    ps: &mut redis::PubSub<'_>,
    round: &mut u32,
) -> Vec<String> {
    *round += 1;
    let sentinel = format!("sentinel:{round}");
    plain(c, &sentinel, "x");
    assert_eq!(ok(c, &["DEL", &sentinel]), Value::Int(1));
    let mut got = Vec::new();
    loop {
        let msg = ps.get_message().expect("a del notification within 5 s");
        assert_eq!(msg.get_channel_name(), "__keyevent@0__:del");
        let key: String = msg.get_payload().expect("key name");
        if key == sentinel {
            break;
        }
        got.push(key);
    }
    got
}

#[test]
fn invalidated_keys_emit_one_del_notification_each() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        ok(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
        Value::Okay
    );
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &["t"], &[]);
    entry(&mut c, "c", &[], &["a"]);
    entry(&mut c, "d", &[], &["c"]);
    entry(&mut c, "both", &["t"], &["b"]);
    entry(&mut c, "kept", &["u"], &[]);
    plain(&mut c, "plain", "p");

    let mut sub_conn = s.conn();
    let mut ps = sub_conn.as_pubsub();
    ps.subscribe("__keyevent@0__:del").expect("SUBSCRIBE");
    ps.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut round = 0;

    // A dry run notifies nothing.
    assert_eq!(
        keys(&mut c, &["TAG", "t"]),
        vec!["a", "b", "both", "c", "d"]
    );
    assert_eq!(
        dels_until_sentinel(&mut c, &mut ps, &mut round),
        Vec::<String>::new()
    );

    // Tag union plus cascade: one del per removed key, no duplicates (both is tagged and a
    // dependent of b).
    assert_eq!(invalidate(&mut c, &["TAG", "t"]), 5);
    let mut got = dels_until_sentinel(&mut c, &mut ps, &mut round);
    got.sort();
    assert_eq!(got, vec!["a", "b", "both", "c", "d"]);

    // Plain keys matched by the pattern are neither deleted nor announced.
    assert_eq!(invalidate(&mut c, &["PATTERN", "*"]), 1);
    assert_eq!(
        dels_until_sentinel(&mut c, &mut ps, &mut round),
        vec!["kept"]
    );
    assert_eq!(invalidate(&mut c, &["ALL"]), 0);
    assert_eq!(
        dels_until_sentinel(&mut c, &mut ps, &mut round),
        Vec::<String>::new()
    );
    assert_eq!(plain_get(&mut c, "plain").as_deref(), Some("p"));
    drop(ps);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// LOCAL outside a cluster
// ---------------------------------------------------------------------------------------------

#[test]
fn local_is_accepted_and_changes_nothing_outside_a_cluster() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &["t"], &["a"]);
    entry(&mut c, "x", &["u"], &[]);
    assert_eq!(keys(&mut c, &["LOCAL", "TAG", "t"]), sv(&["a", "b"]));
    assert_eq!(
        tag_sizes(&mut c, &["LOCAL", "COUNT", "1"]),
        vec![("t".into(), 2)]
    );
    let stats = ok(&mut c, &["CACHE.STATS", "LOCAL"]);
    assert_eq!(int(&field(&stats, "entries")), 3);
    // Outside a cluster nothing is merged: no `masters` field.
    assert!(map(&stats).iter().all(|(k, _)| k != "masters"));
    let json = text(&ok(&mut c, &["CACHE.STATS", "LOCAL", "JSON"]));
    assert!(json.starts_with("{\"entries\":3,"), "{json}");
    assert_eq!(invalidate(&mut c, &["LOCAL", "DEPTH", "0", "KEY", "a"]), 1);
    assert_eq!(invalidate(&mut c, &["LOCAL", "TAG", "t"]), 1);
    ok(
        &mut c,
        &[
            "CACHE.RULE",
            "SET",
            "r",
            "ON",
            "user",
            "INVALIDATE",
            "1",
            "u",
        ],
    );
    assert_eq!(int(&ok(&mut c, &["CACHE.WRITE", "LOCAL", "user", "1"])), 1);
    assert_eq!(dbsize(&mut c), 0);
    // A type named `local` is a type: CACHE.WRITE's arguments come in pairs, LOCAL makes them odd.
    entry(&mut c, "l", &["local:42"], &[]);
    entry(&mut c, "m", &["local:43"], &[]);
    assert_eq!(int(&ok(&mut c, &["CACHE.WRITE", "local", "42"])), 1);
    assert_eq!(
        int(&ok(&mut c, &["CACHE.WRITE", "local", "43", "OP", "delete"])),
        1
    );
    assert_eq!(
        int(&ok(&mut c, &["CACHE.WRITE", "LOCAL", "local", "44"])),
        0
    );
    assert_eq!(dbsize(&mut c), 0);
    // LOCAL is an option, not a selector: alone it is still a syntax error of the command.
    assert!(err(&mut c, &["CACHE.INVALIDATE", "LOCAL"]).starts_with("ERR"));
    assert!(err(&mut c, &["CACHE.INVALIDATE", "LOCAL", "LOCAL", "ALL"]).starts_with("ERR"));
    verify(&mut c);
}
