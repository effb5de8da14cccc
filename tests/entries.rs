//! Entries: CACHE.SET / GET / MGET / TAG / DEPEND / INSPECT against a real server. Happy paths,
//! binary safety, TTL options, NX/XX, WRONGTYPE both ways, every bad-input case (exact error,
//! nothing changed), module configs, MULTI/EXEC and Lua, and database independence.
mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------------

/// Splits a command written with single spaces into its parts.
fn a(s: &str) -> Vec<&str> {
    s.split(' ').collect()
}

/// Runs a binary-safe command.
fn bin(c: &mut Connection, parts: &[&[u8]]) -> Value {
    cmd(c, parts).unwrap_or_else(|e| panic!("command failed: {e}"))
}

/// An array of bulk strings as raw bytes.
fn raw_list(v: &Value) -> Vec<Vec<u8>> {
    list(v)
        .iter()
        .map(|x| bytes(x).expect("bulk string"))
        .collect()
}

fn get(c: &mut Connection, key: &str) -> Option<Vec<u8>> {
    bytes(&ok(c, &["CACHE.GET", key]))
}

fn inspect(c: &mut Connection, key: &str) -> Value {
    ok(c, &["CACHE.INSPECT", key])
}

/// One list field of an INSPECT reply, as UTF-8 strings.
fn names(v: &Value, name: &str) -> Vec<String> {
    strings(&field(v, name))
}

/// `CACHE.TAGS ...` as (tag, entries) pairs.
fn tag_sizes(c: &mut Connection, args: &[&str]) -> Vec<(String, i64)> {
    let mut parts = vec!["CACHE.TAGS"];
    parts.extend_from_slice(args);
    list(&ok(c, &parts))
        .iter()
        .map(|p| {
            let p = list(p);
            assert_eq!(p.len(), 2, "pair {p:?}");
            (
                String::from_utf8_lossy(&bytes(&p[0]).expect("tag")).into_owned(),
                int(&p[1]),
            )
        })
        .collect()
}

/// Entry keys, tag sizes, every entry's INSPECT, DBSIZE.
type CacheState = (Vec<String>, Vec<(String, i64)>, Vec<Value>, i64);

/// Everything observable about the cache of the selected database: the entry keys, the tags with
/// their sizes, every entry's INSPECT (entries without a TTL only, so the reply is stable) and
/// the number of keys.
fn cache_state(c: &mut Connection) -> CacheState {
    let all = keys(c, &["ALL"]);
    let tags = tag_sizes(c, &[]);
    let inspects = all.iter().map(|k| inspect(c, k)).collect();
    let dbsize = int(&ok(c, &["DBSIZE"]));
    (all, tags, inspects, dbsize)
}

/// Asserts that a command fails with exactly `expected` and changes nothing.
fn rejected(c: &mut Connection, parts: &[&str], expected: &str) {
    let digest_before = digest(c);
    let before = cache_state(c);
    assert_eq!(err(c, parts), expected, "{parts:?}");
    assert_eq!(digest(c), digest_before, "{parts:?} changed the dataset");
    assert_eq!(cache_state(c), before, "{parts:?} changed the cache");
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const FIELDS: [&str; 8] = [
    "tags",
    "depends",
    "dependents",
    "meta",
    "ttl_ms",
    "created_ms",
    "hits",
    "size",
];

// ---------------------------------------------------------------------------------------------
// Happy paths
// ---------------------------------------------------------------------------------------------

#[test]
fn set_then_get_round_trips_and_command_names_are_case_insensitive() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(ok(&mut c, &a("CACHE.SET k v")), Value::Okay);
    assert_eq!(get(&mut c, "k"), Some(b"v".to_vec()));
    assert_eq!(get(&mut c, "missing"), None);
    assert_eq!(exists(&mut c, "missing"), 0);
    assert_eq!(
        ok(
            &mut c,
            &a("cache.set lower value ex 100 nx tags 2 t1 t2 depends 1 r meta {}")
        ),
        Value::Okay
    );
    assert_eq!(
        bytes(&ok(&mut c, &["cache.get", "lower"])),
        Some(b"value".to_vec())
    );
    let i = inspect(&mut c, "lower");
    assert_eq!(names(&i, "tags"), ["t1", "t2"]);
    assert_eq!(names(&i, "depends"), ["r"]);
    assert_eq!(bytes(&field(&i, "meta")), Some(b"{}".to_vec()));
    assert!((95_000..=100_000).contains(&int(&field(&i, "ttl_ms"))));
    assert_eq!(keys(&mut c, &["TAG", "t1"]), ["lower"]);
    assert_eq!(keys(&mut c, &["DEPENDENTS", "r"]), ["lower"]);
    // An empty value is a value.
    assert_eq!(ok(&mut c, &["CACHE.SET", "empty", ""]), Value::Okay);
    assert_eq!(get(&mut c, "empty"), Some(vec![]));
    assert_eq!(int(&field(&inspect(&mut c, "empty"), "size")), 0);
    assert_eq!(keys(&mut c, &["ALL"]), ["empty", "k", "lower"]);
    verify(&mut c);
}

#[test]
fn set_replaces_an_entry_whole() {
    let s = Server::start();
    let mut c = s.conn();
    ok(
        &mut c,
        &a(r#"CACHE.SET k first EX 100 TAGS 2 old shared DEPENDS 1 r1 META {"v":1}"#),
    );
    ok(&mut c, &a("CACHE.SET other x TAGS 1 shared"));
    ok(&mut c, &a("CACHE.GET k"));
    assert_eq!(int(&field(&inspect(&mut c, "k"), "hits")), 1);

    assert_eq!(ok(&mut c, &a("CACHE.SET k second TAGS 1 new")), Value::Okay);
    assert_eq!(get(&mut c, "k"), Some(b"second".to_vec()));
    let i = inspect(&mut c, "k");
    assert_eq!(names(&i, "tags"), ["new"]);
    assert_eq!(names(&i, "depends"), Vec::<String>::new());
    assert_eq!(field(&i, "meta"), Value::Nil);
    assert_eq!(int(&field(&i, "ttl_ms")), -1);
    assert_eq!(pttl(&mut c, "k"), -1);
    assert_eq!(int(&field(&i, "size")), 6);
    // The counters belong to the old entry: one read since the replacement.
    assert_eq!(int(&field(&i, "hits")), 1);

    assert_eq!(keys(&mut c, &["TAG", "old"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["TAG", "shared"]), ["other"]);
    assert_eq!(keys(&mut c, &["TAG", "new"]), ["k"]);
    assert_eq!(keys(&mut c, &["DEPENDENTS", "r1"]), Vec::<String>::new());
    assert_eq!(
        tag_sizes(&mut c, &[]),
        [("new".to_string(), 1), ("shared".to_string(), 1)]
    );
    verify(&mut c);
}

#[test]
fn mget_returns_values_for_entries_and_nil_for_missing_and_plain_keys() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET e1 one"));
    ok(&mut c, &a("CACHE.SET e2 two"));
    ok(&mut c, &a("SET plain p"));
    ok(&mut c, &a("LPUSH alist x"));
    let v = ok(&mut c, &a("CACHE.MGET e1 missing plain e2 alist e1"));
    assert_eq!(
        v,
        Value::Array(vec![
            Value::BulkString(b"one".to_vec()),
            Value::Nil,
            Value::Nil,
            Value::BulkString(b"two".to_vec()),
            Value::Nil,
            Value::BulkString(b"one".to_vec()),
        ])
    );
    // Each read counts a hit on the entry read.
    assert_eq!(int(&field(&inspect(&mut c, "e1"), "hits")), 2);
    assert_eq!(int(&field(&inspect(&mut c, "e2"), "hits")), 1);
    // Plain keys are untouched; no key was created.
    assert_eq!(
        ok(&mut c, &a("GET plain")),
        Value::BulkString(b"p".to_vec())
    );
    assert_eq!(exists(&mut c, "missing"), 0);
    assert_eq!(int(&ok(&mut c, &a("DBSIZE"))), 4);
    // One key is an array of one.
    assert_eq!(
        ok(&mut c, &a("CACHE.MGET nothing")),
        Value::Array(vec![Value::Nil])
    );
    verify(&mut c);
}

#[test]
fn tag_adds_only_new_tags_and_fails_on_a_missing_key() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET k v TAGS 1 a"));
    assert_eq!(int(&ok(&mut c, &a("CACHE.TAG k a b c b"))), 2);
    assert_eq!(int(&ok(&mut c, &a("CACHE.TAG k a"))), 0);
    assert_eq!(int(&ok(&mut c, &a("cache.tag k d"))), 1);
    assert_eq!(names(&inspect(&mut c, "k"), "tags"), ["a", "b", "c", "d"]);
    for t in ["a", "b", "c", "d"] {
        assert_eq!(keys(&mut c, &["TAG", t]), ["k"], "tag {t}");
    }
    // The value, TTL and other facts stay.
    assert_eq!(get(&mut c, "k"), Some(b"v".to_vec()));

    ok(&mut c, &a("SET plain p"));
    rejected(&mut c, &a("CACHE.TAG missing t"), "ERR no such key");
    assert_eq!(exists(&mut c, "missing"), 0);
    assert_eq!(keys(&mut c, &["TAG", "t"]), Vec::<String>::new());
    verify(&mut c);
}

#[test]
fn depend_adds_only_new_resources_and_fails_on_a_missing_key() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET parent p"));
    ok(&mut c, &a("CACHE.SET k v DEPENDS 1 r1"));
    assert_eq!(int(&ok(&mut c, &a("CACHE.DEPEND k r1 r2 parent r2"))), 2);
    assert_eq!(int(&ok(&mut c, &a("CACHE.DEPEND k r2"))), 0);
    assert_eq!(
        names(&inspect(&mut c, "k"), "depends"),
        ["parent", "r1", "r2"]
    );
    assert_eq!(names(&inspect(&mut c, "parent"), "dependents"), ["k"]);
    assert_eq!(keys(&mut c, &["DEPENDENTS", "r2"]), ["k"]);
    // The new dependency cascades.
    assert_eq!(keys(&mut c, &["KEY", "parent"]), ["k", "parent"]);

    rejected(&mut c, &a("CACHE.DEPEND missing r"), "ERR no such key");
    assert_eq!(exists(&mut c, "missing"), 0);
    assert_eq!(keys(&mut c, &["DEPENDENTS", "r"]), Vec::<String>::new());
    verify(&mut c);
}

#[test]
fn duplicate_tag_and_resource_names_in_set_are_stored_once() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET k v TAGS 3 b a b DEPENDS 3 r r q"));
    let i = inspect(&mut c, "k");
    // Module's choice: names are kept sorted and deduplicated.
    assert_eq!(names(&i, "tags"), ["a", "b"]);
    assert_eq!(names(&i, "depends"), ["q", "r"]);
    assert_eq!(
        tag_sizes(&mut c, &[]),
        [("a".to_string(), 1), ("b".to_string(), 1)]
    );
    assert_eq!(int(&ok(&mut c, &a("CACHE.INVALIDATE TAG b"))), 1);
    assert_eq!(int(&ok(&mut c, &a("DBSIZE"))), 0);
    verify(&mut c);
}

fn check_inspect(c: &mut Connection, resp3: bool) {
    let before = server_ms(c);
    let mut set = a("CACHE.SET k hello EX 100 TAGS 3 t2 t1 t3 DEPENDS 2 res:b res:a META");
    set[2] = "hello world";
    set.push(r#"{"model": "x", "n": [1, 2]}"#);
    ok(c, &set);
    let after = server_ms(c);
    ok(c, &a("CACHE.SET child1 x DEPENDS 1 k"));
    ok(c, &a("CACHE.SET child0 x DEPENDS 2 other k"));
    ok(c, &a("CACHE.SET plainentry y"));
    // Reads: CACHE.GET twice, CACHE.MGET once; INSPECT, KEYS and misses do not count.
    ok(c, &a("CACHE.GET k"));
    ok(c, &a("CACHE.GET k"));
    ok(c, &a("CACHE.MGET k missing"));
    ok(c, &a("CACHE.GET missing"));
    inspect(c, "k");
    keys(c, &["ALL"]);

    let v = inspect(c, "k");
    if resp3 {
        assert!(matches!(v, Value::Map(_)), "RESP3 reply is a map: {v:?}");
    } else {
        assert!(
            matches!(&v, Value::Array(x) if x.len() == 16),
            "RESP2 flat array: {v:?}"
        );
    }
    let got: Vec<String> = map(&v).into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, FIELDS);
    assert_eq!(names(&v, "tags"), ["t1", "t2", "t3"]);
    assert_eq!(names(&v, "depends"), ["res:a", "res:b"]);
    assert_eq!(names(&v, "dependents"), ["child0", "child1"]);
    assert_eq!(
        bytes(&field(&v, "meta")),
        Some(br#"{"model": "x", "n": [1, 2]}"#.to_vec())
    );
    let ttl = int(&field(&v, "ttl_ms"));
    assert!((95_000..=100_000).contains(&ttl), "ttl_ms {ttl}");
    let created = int(&field(&v, "created_ms"));
    assert!(
        (before - 1..=after + 1).contains(&created),
        "created_ms {created} not in [{before}, {after}]"
    );
    assert_eq!(int(&field(&v, "hits")), 3);
    assert_eq!(int(&field(&v, "size")), 11);

    // An entry without TTL, META or links.
    let p = inspect(c, "plainentry");
    assert_eq!(names(&p, "tags"), Vec::<String>::new());
    assert_eq!(names(&p, "depends"), Vec::<String>::new());
    assert_eq!(names(&p, "dependents"), Vec::<String>::new());
    assert_eq!(field(&p, "meta"), Value::Nil);
    assert_eq!(int(&field(&p, "ttl_ms")), -1);
    assert_eq!(int(&field(&p, "hits")), 0);
    assert_eq!(int(&field(&p, "size")), 1);
    // A child lists what it depends on, and nothing depends on it.
    let ch = inspect(c, "child0");
    assert_eq!(names(&ch, "depends"), ["k", "other"]);
    assert_eq!(names(&ch, "dependents"), Vec::<String>::new());

    assert_eq!(inspect(c, "missing"), Value::Nil);
    verify(c);
}

#[test]
fn inspect_reports_every_field_as_a_flat_array_under_resp2() {
    let s = Server::start();
    let mut c = s.conn();
    check_inspect(&mut c, false);
}

#[test]
fn inspect_reports_every_field_as_a_map_under_resp3() {
    let s = Server::start();
    let mut c = s.conn3();
    check_inspect(&mut c, true);
}

#[test]
fn cache_tags_orders_by_size_then_name_and_filters() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET k1 v TAGS 3 user:1 user:2 post:1"));
    ok(&mut c, &a("CACHE.SET k2 v TAGS 2 user:2 post:1"));
    ok(&mut c, &a("CACHE.SET k3 v TAGS 1 user:2"));
    let pairs = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    };
    assert_eq!(
        tag_sizes(&mut c, &[]),
        pairs(&[("user:2", 3), ("post:1", 2), ("user:1", 1)])
    );
    assert_eq!(
        tag_sizes(&mut c, &a("MATCH user:*")),
        pairs(&[("user:2", 3), ("user:1", 1)])
    );
    assert_eq!(tag_sizes(&mut c, &a("COUNT 1")), pairs(&[("user:2", 3)]));
    assert_eq!(
        tag_sizes(&mut c, &a("match u* count 5")),
        pairs(&[("user:2", 3), ("user:1", 1)])
    );
    assert_eq!(tag_sizes(&mut c, &a("MATCH nothing*")), pairs(&[]));
    verify(&mut c);
}

#[test]
fn debug_help_lists_the_subcommands() {
    let s = Server::start();
    let mut c = s.conn();
    let help = strings(&ok(&mut c, &a("CACHE.DEBUG HELP")));
    assert!(help[0].starts_with("CACHE.DEBUG"), "{help:?}");
    assert!(help.iter().any(|l| l == "VERIFY"), "{help:?}");
    assert!(help.iter().any(|l| l == "REBUILD"), "{help:?}");
    assert!(help.iter().any(|l| l == "HELP"), "{help:?}");
    assert_eq!(ok(&mut c, &a("cache.debug verify")), Value::Array(vec![]));
    verify(&mut c);
}

#[test]
fn debug_rebuild_replaces_the_indexes_with_the_same_content() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t", "u"], &["r"]);
    entry(&mut c, "b", &["t"], &["a"]);
    assert_eq!(ok(&mut c, &a("SET plain p")), Value::Okay);
    select(&mut c, 3);
    entry(&mut c, "c", &["t"], &[]);
    select(&mut c, 0);
    let before = (
        strings(&ok(&mut c, &a("CACHE.KEYS DEPTH 2 DEPENDENTS r"))),
        ok(&mut c, &a("CACHE.TAGS")),
    );
    assert_eq!(before.0, sv(&["a", "b"]));
    // Every entry of every database, not the plain key.
    assert_eq!(int(&ok(&mut c, &a("CACHE.DEBUG REBUILD"))), 3);
    let after = (
        strings(&ok(&mut c, &a("CACHE.KEYS DEPTH 2 DEPENDENTS r"))),
        ok(&mut c, &a("CACHE.TAGS")),
    );
    assert_eq!(after, before);
    assert_eq!(int(&ok(&mut c, &a("CACHE.INVALIDATE TAG t"))), 2);
    assert_eq!(
        ok(&mut c, &a("GET plain")),
        Value::BulkString(b"p".to_vec())
    );
    select(&mut c, 3);
    assert_eq!(strings(&ok(&mut c, &a("CACHE.KEYS TAG t"))), sv(&["c"]));
    rejected(
        &mut c,
        &a("CACHE.DEBUG REBUILD now"),
        "ERR wrong number of arguments for 'cache.debug' command",
    );
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Binary safety
// ---------------------------------------------------------------------------------------------

#[test]
fn binary_keys_values_tags_and_resources_round_trip() {
    let s = Server::start();
    let mut c = s.conn();
    let key: &[u8] = b"k\x00\xffey";
    let value: &[u8] = b"\x00v\xff\x00\r\n";
    let tag: &[u8] = b"t\x00\xff";
    let res: &[u8] = b"\xffr\x00";
    let child: &[u8] = b"\xffchild";
    assert_eq!(
        bin(
            &mut c,
            &[
                b"CACHE.SET",
                key,
                value,
                b"TAGS",
                b"1",
                tag,
                b"DEPENDS",
                b"1",
                res
            ],
        ),
        Value::Okay
    );
    assert_eq!(
        bin(
            &mut c,
            &[
                b"CACHE.SET",
                child,
                b"c",
                b"TAGS",
                b"1",
                tag,
                b"DEPENDS",
                b"1",
                key
            ]
        ),
        Value::Okay
    );
    // Prefixes of the binary names are other names.
    assert_eq!(
        bin(&mut c, &[b"CACHE.SET", b"k", b"x", b"TAGS", b"1", b"t"]),
        Value::Okay
    );

    assert_eq!(
        bytes(&bin(&mut c, &[b"CACHE.GET", key])),
        Some(value.to_vec())
    );
    assert_eq!(bytes(&bin(&mut c, &[b"CACHE.GET", b"k\x00"])), None);
    assert_eq!(
        list(&bin(&mut c, &[b"CACHE.MGET", key, b"k", b"k\x00"])),
        [
            Value::BulkString(value.to_vec()),
            Value::BulkString(b"x".to_vec()),
            Value::Nil
        ]
    );
    let i = bin(&mut c, &[b"CACHE.INSPECT", key]);
    assert_eq!(raw_list(&field(&i, "tags")), [tag.to_vec()]);
    assert_eq!(raw_list(&field(&i, "depends")), [res.to_vec()]);
    assert_eq!(raw_list(&field(&i, "dependents")), [child.to_vec()]);
    assert_eq!(int(&field(&i, "size")), value.len() as i64);
    assert_eq!(int(&field(&i, "hits")), 2);
    let i = bin(&mut c, &[b"CACHE.INSPECT", child]);
    assert_eq!(raw_list(&field(&i, "depends")), [key.to_vec()]);

    let tags: Vec<Vec<Value>> = list(&bin(&mut c, &[b"CACHE.TAGS"]))
        .iter()
        .map(list)
        .collect();
    assert_eq!(
        tags,
        [
            vec![Value::BulkString(tag.to_vec()), Value::Int(2)],
            vec![Value::BulkString(b"t".to_vec()), Value::Int(1)],
        ]
    );
    let tags: Vec<Vec<Value>> = list(&bin(&mut c, &[b"CACHE.TAGS", b"MATCH", b"t\x00*"]))
        .iter()
        .map(list)
        .collect();
    assert_eq!(tags, [vec![Value::BulkString(tag.to_vec()), Value::Int(2)]]);
    // CACHE.TAG / CACHE.DEPEND with binary names.
    assert_eq!(int(&bin(&mut c, &[b"CACHE.TAG", key, b"\xff", tag])), 1);
    assert_eq!(int(&bin(&mut c, &[b"CACHE.DEPEND", key, b"\x00"])), 1);
    let i = bin(&mut c, &[b"CACHE.INSPECT", key]);
    assert_eq!(
        raw_list(&field(&i, "tags")),
        [tag.to_vec(), b"\xff".to_vec()]
    );
    assert_eq!(
        raw_list(&field(&i, "depends")),
        [b"\x00".to_vec(), res.to_vec()]
    );
    verify(&mut c);

    // Selecting by binary tags and resources, over keys without a 0x00 byte.
    assert_eq!(
        raw_list(&bin(&mut c, &[b"CACHE.KEYS", b"DEPENDENTS", key])),
        [child.to_vec()]
    );
    assert_eq!(
        raw_list(&bin(&mut c, &[b"CACHE.KEYS", b"TAG", b"t"])),
        [b"k".to_vec()]
    );
    assert_eq!(
        raw_list(&bin(&mut c, &[b"CACHE.KEYS", b"PATTERN", b"\xff*"])),
        [child.to_vec()]
    );
    assert_eq!(
        int(&bin(&mut c, &[b"CACHE.INVALIDATE", b"DEPENDENTS", key])),
        1
    );
    assert_eq!(bytes(&bin(&mut c, &[b"CACHE.GET", child])), None);
    // The entry whose key holds 0x00 leaves through DEL; the index follows.
    assert_eq!(int(&bin(&mut c, &[b"DEL", key])), 1);
    assert_eq!(
        list(&bin(&mut c, &[b"CACHE.TAGS", b"MATCH", b"t\x00*"])),
        []
    );
    assert_eq!(
        raw_list(&bin(&mut c, &[b"CACHE.KEYS", b"DEPENDENTS", res])),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        raw_list(&bin(&mut c, &[b"CACHE.KEYS", b"ALL"])),
        [b"k".to_vec()]
    );
    verify(&mut c);
}

#[test]
fn keys_and_invalidate_select_keys_containing_a_zero_byte() {
    let s = Server::start();
    let mut c = s.conn();
    let key: &[u8] = b"k\x00\xffey";
    let child: &[u8] = b"\x00child";
    for i in 0..6 {
        let k = format!("plain{i}");
        ok(&mut c, &["CACHE.SET", &k, "v", "TAGS", "1", "t"]);
    }
    bin(&mut c, &[b"CACHE.SET", key, b"v", b"TAGS", b"1", b"t"]);
    bin(&mut c, &[b"CACHE.SET", child, b"c", b"DEPENDS", b"1", key]);
    assert_eq!(
        raw_list(&bin(&mut c, &[b"CACHE.KEYS", b"DEPTH", b"0", b"TAG", b"t"])).len(),
        7
    );
    assert_eq!(
        raw_list(&bin(&mut c, &[b"CACHE.KEYS", b"KEY", key])),
        [child.to_vec(), key.to_vec()]
    );
    let d = digest(&mut c);
    let got = cmd(
        &mut c,
        &[b"CACHE.INVALIDATE".as_slice(), b"DEPTH", b"0", b"TAG", b"t"],
    );
    if got.is_err() {
        // A failed invalidation must not have removed anything.
        assert_eq!(
            digest(&mut c),
            d,
            "failed CACHE.INVALIDATE removed some keys"
        );
    }
    assert_eq!(got.map(|v| int(&v)).ok(), Some(7));
    assert_eq!(int(&bin(&mut c, &[b"CACHE.INVALIDATE", b"KEY", child])), 1);
    assert_eq!(int(&ok(&mut c, &a("DBSIZE"))), 0);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// TTL options
// ---------------------------------------------------------------------------------------------

#[test]
fn ex_px_exat_pxat_set_the_expected_ttl() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET ex v EX 100"));
    let t = pttl(&mut c, "ex");
    assert!((95_000..=100_000).contains(&t), "EX 100: PTTL {t}");

    ok(&mut c, &a("CACHE.SET px v px 50000"));
    let t = pttl(&mut c, "px");
    assert!((45_000..=50_000).contains(&t), "PX 50000: PTTL {t}");

    let now = server_ms(&mut c);
    let at_s = now / 1000 + 200;
    ok(
        &mut c,
        &["CACHE.SET", "exat", "v", "EXAT", &at_s.to_string()],
    );
    let t = pttl(&mut c, "exat");
    let expected = at_s * 1000 - now;
    assert!(
        (expected - 5_000..=expected).contains(&t),
        "EXAT: PTTL {t}, expected about {expected}"
    );

    let at_ms = server_ms(&mut c) + 300_000;
    ok(
        &mut c,
        &["CACHE.SET", "pxat", "v", "PXAT", &at_ms.to_string()],
    );
    let t = pttl(&mut c, "pxat");
    assert!((295_000..=300_000).contains(&t), "PXAT: PTTL {t}");
    // INSPECT's ttl_ms is the same clock.
    let ttl = int(&field(&inspect(&mut c, "pxat"), "ttl_ms"));
    assert!(ttl <= t && ttl >= t - 5_000, "ttl_ms {ttl} vs PTTL {t}");

    ok(&mut c, &a("CACHE.SET none v"));
    assert_eq!(pttl(&mut c, "none"), -1);
    verify(&mut c);
}

#[test]
fn keepttl_keeps_the_replaced_entrys_ttl_and_gives_a_new_key_none() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET k v1 PX 100000 TAGS 1 old"));
    assert_eq!(
        ok(&mut c, &a("CACHE.SET k v2 KEEPTTL TAGS 1 new")),
        Value::Okay
    );
    assert_eq!(get(&mut c, "k"), Some(b"v2".to_vec()));
    let t = pttl(&mut c, "k");
    assert!((95_000..=100_000).contains(&t), "KEEPTTL: PTTL {t}");
    assert_eq!(names(&inspect(&mut c, "k"), "tags"), ["new"]);
    assert_eq!(keys(&mut c, &["TAG", "old"]), Vec::<String>::new());
    // KEEPTTL with XX, on an entry that has none: still none.
    ok(&mut c, &a("CACHE.SET nottl v"));
    assert_eq!(ok(&mut c, &a("CACHE.SET nottl v2 KEEPTTL XX")), Value::Okay);
    assert_eq!(pttl(&mut c, "nottl"), -1);
    // Without KEEPTTL the TTL goes.
    ok(&mut c, &a("CACHE.SET k v3"));
    assert_eq!(pttl(&mut c, "k"), -1);
    verify(&mut c);
}

#[test]
fn keepttl_on_a_new_key_gives_no_ttl_even_with_a_default_ttl() {
    // Redis 8.2 crashes here when the module asks an empty key for its TTL.
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        ok(&mut c, &a("CACHE.SET fresh v keepttl TAGS 1 t")),
        Value::Okay
    );
    assert_eq!(pttl(&mut c, "fresh"), -1);
    assert_eq!(get(&mut c, "fresh"), Some(b"v".to_vec()));
    ok(&mut c, &a("CONFIG SET cache.default-ttl-seconds 100"));
    assert_eq!(ok(&mut c, &a("CACHE.SET keep v KEEPTTL")), Value::Okay);
    assert_eq!(pttl(&mut c, "keep"), -1, "KEEPTTL on a new key: no TTL");
    assert_eq!(ok(&mut c, &a("CACHE.SET nx v KEEPTTL NX")), Value::Okay);
    assert_eq!(pttl(&mut c, "nx"), -1);
    assert_eq!(keys(&mut c, &["ALL"]), ["fresh", "keep", "nx"]);
    verify(&mut c);
}

#[test]
fn default_ttl_applies_only_when_no_ttl_option_is_given() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET before v"));
    assert_eq!(
        ok(&mut c, &a("CONFIG SET cache.default-ttl-seconds 100")),
        Value::Okay
    );
    assert_eq!(config_get(&mut c, "cache.default-ttl-seconds"), "100");
    // Existing entries keep what they had.
    assert_eq!(pttl(&mut c, "before"), -1);

    ok(&mut c, &a("CACHE.SET d v TAGS 1 t"));
    let t = pttl(&mut c, "d");
    assert!((95_000..=100_000).contains(&t), "default TTL: PTTL {t}");
    ok(&mut c, &a("CACHE.SET explicit v EX 1000"));
    let t = pttl(&mut c, "explicit");
    assert!(
        (995_000..=1_000_000).contains(&t),
        "EX over default: PTTL {t}"
    );
    ok(&mut c, &a("CACHE.SET explicit v2 KEEPTTL"));
    let t = pttl(&mut c, "explicit");
    assert!(
        (995_000..=1_000_000).contains(&t),
        "KEEPTTL keeps EX: PTTL {t}"
    );
    // Replacing without an option applies the default again.
    ok(&mut c, &a("CACHE.SET explicit v3"));
    let t = pttl(&mut c, "explicit");
    assert!((95_000..=100_000).contains(&t), "replaced: PTTL {t}");

    ok(&mut c, &a("CONFIG SET cache.default-ttl-seconds 0"));
    ok(&mut c, &a("CACHE.SET after v"));
    assert_eq!(pttl(&mut c, "after"), -1);
    verify(&mut c);
}

#[test]
fn exat_or_pxat_in_the_past_replies_ok_and_leaves_no_entry() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        ok(&mut c, &a("CACHE.SET new1 v EXAT 1 TAGS 1 t")),
        Value::Okay
    );
    assert_eq!(ok(&mut c, &a("CACHE.SET new2 v PXAT 1")), Value::Okay);
    assert_eq!(exists(&mut c, "new1"), 0);
    assert_eq!(exists(&mut c, "new2"), 0);
    assert_eq!(tag_sizes(&mut c, &[]), Vec::<(String, i64)>::new());

    // An existing entry is removed; only that entry (no cascade, like expiry).
    ok(&mut c, &a("CACHE.SET k v TAGS 1 t DEPENDS 1 r"));
    ok(&mut c, &a("CACHE.SET child c DEPENDS 1 k"));
    let past = (server_ms(&mut c) - 1_000).to_string();
    assert_eq!(
        ok(&mut c, &["CACHE.SET", "k", "v2", "PXAT", &past]),
        Value::Okay
    );
    assert_eq!(exists(&mut c, "k"), 0);
    assert_eq!(get(&mut c, "k"), None);
    assert_eq!(keys(&mut c, &["TAG", "t"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["DEPENDENTS", "r"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["ALL"]), ["child"]);

    ok(&mut c, &a("CACHE.SET k2 v TAGS 1 t2"));
    assert_eq!(ok(&mut c, &a("CACHE.SET k2 v2 EXAT 1 XX")), Value::Okay);
    assert_eq!(exists(&mut c, "k2"), 0);
    assert_eq!(tag_sizes(&mut c, &[]), Vec::<(String, i64)>::new());
    verify(&mut c);
}

#[test]
fn an_expired_entry_reads_as_missing_and_leaves_the_index_clean() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET parent p"));
    ok(
        &mut c,
        &a("CACHE.SET k v PX 50 TAGS 2 t1 t2 DEPENDS 2 r parent"),
    );
    ok(&mut c, &a("CACHE.SET keeper v TAGS 1 t2"));
    eventually("the entry expires", || {
        ok(&mut c, &a("CACHE.GET k")) == Value::Nil
    });
    assert_eq!(exists(&mut c, "k"), 0);
    assert_eq!(inspect(&mut c, "k"), Value::Nil);
    assert_eq!(keys(&mut c, &["TAG", "t1"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["TAG", "t2"]), ["keeper"]);
    assert_eq!(keys(&mut c, &["DEPENDENTS", "r"]), Vec::<String>::new());
    assert_eq!(
        names(&inspect(&mut c, "parent"), "dependents"),
        Vec::<String>::new()
    );
    assert_eq!(tag_sizes(&mut c, &[]), [("t2".to_string(), 1)]);
    verify(&mut c);
}

#[test]
fn an_entry_expired_without_being_read_leaves_the_index_clean() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET k v PX 30 TAGS 1 t DEPENDS 1 r"));
    // Neither DBSIZE nor CACHE.TAGS opens the key: only active expiry can remove it.
    eventually("active expiry removes the entry", || {
        int(&ok(&mut c, &a("DBSIZE"))) == 0
    });
    assert_eq!(tag_sizes(&mut c, &[]), Vec::<(String, i64)>::new());
    assert_eq!(keys(&mut c, &["DEPENDENTS", "r"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["ALL"]), Vec::<String>::new());
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// NX / XX
// ---------------------------------------------------------------------------------------------

#[test]
fn nx_sets_only_a_missing_key() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(ok(&mut c, &a("CACHE.SET k v1 NX TAGS 1 a")), Value::Okay);
    ok(&mut c, &a("CACHE.GET k"));
    let before = inspect(&mut c, "k");
    let d = digest(&mut c);
    assert_eq!(
        ok(&mut c, &a("CACHE.SET k v2 NX EX 100 TAGS 1 b META {}")),
        Value::Nil
    );
    assert_eq!(digest(&mut c), d);
    assert_eq!(inspect(&mut c, "k"), before);
    assert_eq!(get(&mut c, "k"), Some(b"v1".to_vec()));
    assert_eq!(pttl(&mut c, "k"), -1);
    assert_eq!(keys(&mut c, &["TAG", "b"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["TAG", "a"]), ["k"]);
    verify(&mut c);
}

#[test]
fn xx_replaces_only_an_existing_entry() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET other o"));
    let d = digest(&mut c);
    assert_eq!(ok(&mut c, &a("CACHE.SET k v XX TAGS 1 a")), Value::Nil);
    assert_eq!(exists(&mut c, "k"), 0);
    assert_eq!(digest(&mut c), d);
    assert_eq!(tag_sizes(&mut c, &[]), Vec::<(String, i64)>::new());

    ok(&mut c, &a("CACHE.SET k v1 TAGS 1 a"));
    assert_eq!(ok(&mut c, &a("cache.set k v2 xx tags 1 b")), Value::Okay);
    assert_eq!(get(&mut c, "k"), Some(b"v2".to_vec()));
    assert_eq!(names(&inspect(&mut c, "k"), "tags"), ["b"]);
    assert_eq!(keys(&mut c, &["TAG", "a"]), Vec::<String>::new());
    verify(&mut c);
}

#[test]
fn commands_that_change_nothing_do_not_abort_a_watching_transaction() {
    // Like SET NX or SADD of a present member: a command that was not applied does not count as
    // a write of the key (WATCH, client-side caching).
    let s = Server::start();
    let mut c = s.conn();
    let mut other = s.conn();
    ok(&mut c, &a("CACHE.SET k v1 TAGS 1 t DEPENDS 1 r"));
    ok(&mut c, &a("SET plain p"));
    let mut aborted = Vec::new();
    for (watched, q) in [
        ("k", "CACHE.SET k v2 NX"),
        ("missing", "CACHE.SET missing v2 XX"),
        ("k", "CACHE.TAG k t"),
        ("k", "CACHE.DEPEND k r"),
        ("plain", "CACHE.SET plain v"),
        ("plain", "CACHE.TAG plain t"),
        ("missing", "CACHE.TAG missing t"),
    ] {
        ok(&mut c, &["WATCH", watched]);
        let _ = cmd(&mut other, &a(q));
        ok(&mut c, &a("MULTI"));
        ok(&mut c, &a("PING"));
        if ok(&mut c, &a("EXEC")) == Value::Nil {
            aborted.push(q);
        }
    }
    assert_eq!(
        aborted,
        Vec::<&str>::new(),
        "these aborted a WATCH without changing anything"
    );
    assert_eq!(get(&mut c, "k"), Some(b"v1".to_vec()));
    verify(&mut c);
}

#[test]
fn reads_do_not_abort_a_watching_transaction() {
    // The control for the test above: reads and a plain SET NX that is not met leave WATCH alone.
    let s = Server::start();
    let mut c = s.conn();
    let mut other = s.conn();
    ok(&mut c, &a("CACHE.SET k v1 TAGS 1 t"));
    ok(&mut c, &a("SET plain p"));
    for (watched, q) in [
        ("k", "CACHE.GET k"),
        ("k", "CACHE.MGET k missing"),
        ("k", "CACHE.INSPECT k"),
        ("k", "CACHE.KEYS TAG t"),
        ("missing", "CACHE.GET missing"),
        ("plain", "SET plain x NX"),
    ] {
        ok(&mut c, &["WATCH", watched]);
        ok(&mut other, &a(q));
        ok(&mut c, &a("MULTI"));
        ok(&mut c, &a("PING"));
        assert_eq!(
            ok(&mut c, &a("EXEC")),
            Value::Array(vec![Value::SimpleString("PONG".into())]),
            "{q} aborted the transaction"
        );
    }
    verify(&mut c);
}

#[test]
fn an_applied_cache_set_aborts_a_watching_transaction() {
    let s = Server::start();
    let mut c = s.conn();
    let mut other = s.conn();
    ok(&mut c, &a("CACHE.SET k v1"));
    ok(&mut c, &a("WATCH k"));
    ok(&mut other, &a("CACHE.SET k v2"));
    ok(&mut c, &a("MULTI"));
    ok(&mut c, &a("CACHE.GET k"));
    assert_eq!(ok(&mut c, &a("EXEC")), Value::Nil);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// WRONGTYPE
// ---------------------------------------------------------------------------------------------

#[test]
fn cache_commands_on_plain_keys_reply_wrongtype_and_leave_them_alone() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("SET str plain"));
    ok(&mut c, &a("PEXPIRE str 100000"));
    ok(&mut c, &a("RPUSH lst a b"));
    for key in ["str", "lst"] {
        rejected(&mut c, &["CACHE.SET", key, "v"], WRONGTYPE);
        rejected(
            &mut c,
            &["CACHE.SET", key, "v", "XX", "TAGS", "1", "t"],
            WRONGTYPE,
        );
        rejected(&mut c, &["CACHE.SET", key, "v", "NX"], WRONGTYPE);
        rejected(&mut c, &["CACHE.SET", key, "v", "KEEPTTL"], WRONGTYPE);
        rejected(&mut c, &["CACHE.GET", key], WRONGTYPE);
        rejected(&mut c, &["CACHE.TAG", key, "t"], WRONGTYPE);
        rejected(&mut c, &["CACHE.DEPEND", key, "r"], WRONGTYPE);
        rejected(&mut c, &["CACHE.INSPECT", key], WRONGTYPE);
    }
    // A past deadline must not delete user data either.
    rejected(&mut c, &a("CACHE.SET str v PXAT 1"), WRONGTYPE);
    assert_eq!(
        ok(&mut c, &a("GET str")),
        Value::BulkString(b"plain".to_vec())
    );
    let t = pttl(&mut c, "str");
    assert!((95_000..=100_000).contains(&t), "plain key's TTL kept: {t}");
    assert_eq!(strings(&ok(&mut c, &a("LRANGE lst 0 -1"))), ["a", "b"]);
    assert_eq!(keys(&mut c, &["ALL"]), Vec::<String>::new());
    assert_eq!(tag_sizes(&mut c, &[]), Vec::<(String, i64)>::new());
    verify(&mut c);
}

#[test]
fn plain_commands_on_cache_entries_reply_wrongtype() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET k v TAGS 1 t"));
    assert_eq!(
        ok(&mut c, &a("TYPE k")),
        Value::SimpleString("tagcache0".into())
    );
    rejected(&mut c, &a("GET k"), WRONGTYPE);
    rejected(&mut c, &a("LPUSH k x"), WRONGTYPE);
    rejected(&mut c, &a("APPEND k x"), WRONGTYPE);
    rejected(&mut c, &a("HSET k f v"), WRONGTYPE);
    rejected(&mut c, &a("INCR k"), WRONGTYPE);
    assert_eq!(get(&mut c, "k"), Some(b"v".to_vec()));
    assert_eq!(keys(&mut c, &["TAG", "t"]), ["k"]);
    verify(&mut c);
}

#[test]
fn invalidate_never_touches_plain_keys() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("SET user:1 plain"));
    ok(&mut c, &a("SADD user:set m"));
    ok(&mut c, &a("CACHE.SET user:2 v TAGS 1 t"));
    ok(&mut c, &a("CACHE.SET dep v DEPENDS 1 user:1"));
    assert_eq!(
        int(&ok(&mut c, &a("CACHE.INVALIDATE KEY user:1 user:set"))),
        0
    );
    assert_eq!(keys(&mut c, &["PATTERN", "user:*"]), ["user:2"]);
    assert_eq!(keys(&mut c, &["NAMESPACE", "user"]), ["user:2"]);
    assert_eq!(int(&ok(&mut c, &a("CACHE.INVALIDATE PATTERN user:*"))), 1);
    assert_eq!(int(&ok(&mut c, &a("CACHE.INVALIDATE NAMESPACE user"))), 0);
    // "dep" depends on the name user:1: the plain key is no entry, so KEY user:1 selected
    // nothing to cascade from; DEPENDENTS selects by resource name and takes "dep" alone.
    assert_eq!(keys(&mut c, &["ALL"]), ["dep"]);
    assert_eq!(keys(&mut c, &["DEPENDENTS", "user:1"]), ["dep"]);
    assert_eq!(
        int(&ok(&mut c, &a("CACHE.INVALIDATE DEPENDENTS user:1"))),
        1
    );
    ok(&mut c, &a("CACHE.SET dep v DEPENDS 1 user:1"));
    assert_eq!(int(&ok(&mut c, &a("CACHE.INVALIDATE ALL"))), 1);
    assert_eq!(
        ok(&mut c, &a("GET user:1")),
        Value::BulkString(b"plain".to_vec())
    );
    assert_eq!(int(&ok(&mut c, &a("SCARD user:set"))), 1);
    assert_eq!(int(&ok(&mut c, &a("DBSIZE"))), 2);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Bad input: exact error, nothing changed
// ---------------------------------------------------------------------------------------------

/// A dataset with entries (no TTL), links, META and a plain key.
fn populate(c: &mut Connection) {
    ok(
        c,
        &a(r#"CACHE.SET k v TAGS 2 a b DEPENDS 1 r META {"x":1}"#),
    );
    ok(c, &a("CACHE.SET child c DEPENDS 1 k TAGS 1 a"));
    ok(c, &a("CACHE.GET k"));
    ok(c, &a("SET plain p"));
}

#[test]
fn wrong_arity_is_rejected_for_every_command() {
    let s = Server::start();
    let mut c = s.conn();
    populate(&mut c);
    let arity = |cmd: &str| format!("ERR wrong number of arguments for '{cmd}' command");
    for (parts, name) in [
        (vec!["CACHE.SET"], "cache.set"),
        (vec!["CACHE.SET", "k"], "cache.set"),
        (vec!["CACHE.SET", "new"], "cache.set"),
        (vec!["CACHE.GET"], "cache.get"),
        (vec!["CACHE.GET", "k", "child"], "cache.get"),
        (vec!["CACHE.MGET"], "cache.mget"),
        (vec!["CACHE.TAG"], "cache.tag"),
        (vec!["CACHE.TAG", "k"], "cache.tag"),
        (vec!["CACHE.DEPEND"], "cache.depend"),
        (vec!["CACHE.DEPEND", "k"], "cache.depend"),
        (vec!["CACHE.INSPECT"], "cache.inspect"),
        (vec!["CACHE.INSPECT", "k", "child"], "cache.inspect"),
        (vec!["CACHE.INVALIDATE"], "cache.invalidate"),
        (vec!["CACHE.KEYS"], "cache.keys"),
        (vec!["CACHE.DEBUG"], "cache.debug"),
        (vec!["CACHE.DEBUG", "VERIFY", "extra"], "cache.debug"),
    ] {
        rejected(&mut c, &parts, &arity(name));
    }
    // The hit counter was not touched by the rejected reads.
    assert_eq!(int(&field(&inspect(&mut c, "k"), "hits")), 1);
    verify(&mut c);
}

#[test]
fn cache_set_rejects_bad_options_and_changes_nothing() {
    let s = Server::start();
    let mut c = s.conn();
    populate(&mut c);
    const SYNTAX: &str = "ERR syntax error";
    const NOT_INT: &str = "ERR value is not an integer or out of range";
    const EXPIRE: &str = "ERR invalid expire time in 'cache.set' command";
    const NOT_OBJECT: &str = "ERR META must be a JSON object";
    // Each case once on the existing entry and once on a new key.
    for key in ["k", "new"] {
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["BOGUS"], SYNTAX),
            (vec!["EX", "10", "BOGUS"], SYNTAX),
            (vec!["TAGS", "3", "a", "b"], SYNTAX),
            (vec!["TAGS"], SYNTAX),
            (vec!["TAGS", "-1"], SYNTAX),
            (vec!["DEPENDS", "2", "r"], SYNTAX),
            (vec!["TAGS", "1", "a", "TAGS", "1", "b"], SYNTAX),
            (vec!["DEPENDS", "1", "a", "DEPENDS", "1", "b"], SYNTAX),
            (vec!["META", "{}", "META", "{}"], SYNTAX),
            (vec!["EX"], SYNTAX),
            (vec!["META"], SYNTAX),
            (vec!["EX", "10", "PX", "10"], SYNTAX),
            (vec!["EX", "10", "EX", "10"], SYNTAX),
            (
                vec!["EXAT", "99999999999", "PXAT", "99999999999999"],
                SYNTAX,
            ),
            (vec!["EX", "10", "KEEPTTL"], SYNTAX),
            (vec!["KEEPTTL", "PX", "10"], SYNTAX),
            (vec!["NX", "XX"], SYNTAX),
            (vec!["XX", "XX"], SYNTAX),
            (vec!["EX", "ten"], NOT_INT),
            (vec!["PX", "1.5"], NOT_INT),
            (vec!["EX", "+1"], NOT_INT),
            (vec!["EX", "99999999999999999999"], NOT_INT),
            (vec!["TAGS", "x", "a"], NOT_INT),
            (vec!["DEPENDS", "1.0", "a"], NOT_INT),
            (vec!["EX", "0"], EXPIRE),
            (vec!["EX", "-1"], EXPIRE),
            (vec!["PX", "0"], EXPIRE),
            (vec!["PX", "-5"], EXPIRE),
            (vec!["EXAT", "0"], EXPIRE),
            (vec!["PXAT", "-1"], EXPIRE),
            (vec!["EX", "9223372036854775807"], EXPIRE),
            (vec!["META", "[1]"], NOT_OBJECT),
            (vec!["META", r#""s""#], NOT_OBJECT),
            (vec!["META", "3"], NOT_OBJECT),
            (vec!["META", "null"], NOT_OBJECT),
            (
                vec!["META", "{"],
                "ERR META is not valid JSON: EOF while parsing an object at line 1 column 1",
            ),
            (
                vec!["META", "nope"],
                "ERR META is not valid JSON: expected ident at line 1 column 2",
            ),
            (
                vec!["META", r#"{"a":1}x"#],
                "ERR META is not valid JSON: trailing characters at line 1 column 8",
            ),
            // A valid TTL and tags do not make the rest acceptable.
            (
                vec!["EX", "100", "TAGS", "1", "z", "META", "[]"],
                NOT_OBJECT,
            ),
            (vec!["NX", "TAGS", "1", "z", "BOGUS"], SYNTAX),
        ];
        for (opts, expected) in cases {
            let mut parts = vec!["CACHE.SET", key, "changed"];
            parts.extend(opts);
            rejected(&mut c, &parts, expected);
        }
    }
    assert_eq!(exists(&mut c, "new"), 0);
    verify(&mut c);
}

#[test]
fn a_rejected_set_leaves_the_existing_entry_exactly_as_it_was() {
    let s = Server::start();
    let mut c = s.conn();
    ok(
        &mut c,
        &a("CACHE.SET k v PX 100000 TAGS 2 a b DEPENDS 1 r META {\"x\":1}"),
    );
    ok(&mut c, &a("CACHE.SET child c DEPENDS 1 k"));
    ok(&mut c, &a("CACHE.GET k"));
    let d = digest(&mut c);
    let before = inspect(&mut c, "k");
    for parts in [
        "CACHE.SET k changed EX 0 TAGS 1 z",
        "CACHE.SET k changed TAGS 1 z META [1]",
        "CACHE.SET k changed KEEPTTL EX 5",
        "CACHE.SET k changed XX NX",
        "CACHE.SET k changed PXAT 1 DEPENDS 2 z",
    ] {
        let e = err(&mut c, &a(parts));
        assert!(e.starts_with("ERR "), "{parts}: {e}");
        assert_eq!(digest(&mut c), d, "{parts}");
        let after = inspect(&mut c, "k");
        for f in FIELDS {
            if f == "ttl_ms" {
                let (b, n) = (int(&field(&before, f)), int(&field(&after, f)));
                assert!(n <= b && n > b - 5_000, "{parts}: ttl_ms {b} -> {n}");
            } else {
                assert_eq!(field(&after, f), field(&before, f), "{parts}: field {f}");
            }
        }
    }
    assert_eq!(get(&mut c, "k"), Some(b"v".to_vec()));
    assert_eq!(keys(&mut c, &["TAG", "z"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["DEPTH", "0", "TAG", "a"]), ["k"]);
    verify(&mut c);
}

#[test]
fn invalidate_and_keys_reject_bad_options_and_change_nothing() {
    let s = Server::start();
    let mut c = s.conn();
    populate(&mut c);
    const SYNTAX: &str = "ERR syntax error";
    let selector = |s: &str| {
        format!(
            "ERR unknown selector '{s}', expected KEY, TAG, PATTERN, NAMESPACE, ALL or DEPENDENTS"
        )
    };
    for cmd in ["CACHE.INVALIDATE", "CACHE.KEYS"] {
        for (rest, expected) in [
            ("DEPTH -1 ALL", "ERR DEPTH can't be negative".to_string()),
            ("DEPTH -1 TAG a", "ERR DEPTH can't be negative".to_string()),
            (
                "DEPTH one ALL",
                "ERR value is not an integer or out of range".to_string(),
            ),
            ("DEPTH 1", SYNTAX.to_string()),
            ("DEPTH 1 DEPTH 2 ALL", SYNTAX.to_string()),
            ("TAG", SYNTAX.to_string()),
            ("KEY", SYNTAX.to_string()),
            ("DEPENDENTS", SYNTAX.to_string()),
            ("ALL extra", SYNTAX.to_string()),
            ("PATTERN a b", SYNTAX.to_string()),
            ("PATTERN", SYNTAX.to_string()),
            ("NAMESPACE", SYNTAX.to_string()),
            ("EVERYTHING", selector("EVERYTHING")),
            ("DEPTH 1 k", selector("k")),
        ] {
            let mut parts = vec![cmd];
            parts.extend(a(rest));
            rejected(&mut c, &parts, &expected);
        }
    }
    let strategy = "ERR unknown strategy 'soon', expected IMMEDIATE, LAZY, BATCHED or SOFT";
    rejected(&mut c, &a("CACHE.INVALIDATE STRATEGY soon ALL"), strategy);
    rejected(&mut c, &a("CACHE.INVALIDATE STRATEGY soon TAG a"), strategy);
    rejected(
        &mut c,
        &a("CACHE.INVALIDATE STRATEGY IMMEDIATE STRATEGY IMMEDIATE ALL"),
        SYNTAX,
    );
    rejected(
        &mut c,
        &a("CACHE.INVALIDATE CONTEXT a CONTEXT b ALL"),
        SYNTAX,
    );
    rejected(&mut c, &a("CACHE.INVALIDATE CONTEXT"), SYNTAX);
    // CACHE.KEYS takes no CONTEXT or STRATEGY: they read as a selector.
    rejected(&mut c, &a("CACHE.KEYS CONTEXT c ALL"), &selector("CONTEXT"));
    rejected(
        &mut c,
        &a("CACHE.KEYS STRATEGY IMMEDIATE ALL"),
        &selector("STRATEGY"),
    );
    verify(&mut c);
}

#[test]
fn tags_and_debug_reject_bad_options_and_change_nothing() {
    let s = Server::start();
    let mut c = s.conn();
    populate(&mut c);
    let positive = "ERR value is out of range, must be positive";
    rejected(&mut c, &a("CACHE.TAGS COUNT 0"), positive);
    rejected(&mut c, &a("CACHE.TAGS COUNT -3"), positive);
    rejected(
        &mut c,
        &a("CACHE.TAGS COUNT x"),
        "ERR value is not an integer or out of range",
    );
    rejected(&mut c, &a("CACHE.TAGS COUNT"), "ERR syntax error");
    rejected(&mut c, &a("CACHE.TAGS MATCH a MATCH b"), "ERR syntax error");
    rejected(&mut c, &a("CACHE.TAGS BOGUS 1"), "ERR syntax error");
    rejected(
        &mut c,
        &a("CACHE.DEBUG nope"),
        "ERR unknown subcommand 'nope'. Try CACHE.DEBUG HELP.",
    );
    rejected(
        &mut c,
        &a("CACHE.DEBUG RELOAD now"),
        "ERR unknown subcommand 'RELOAD'. Try CACHE.DEBUG HELP.",
    );
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

/// A chain n0 <- n1 <- ... <- n{len-1}: each entry depends on the previous one's key.
fn chain(c: &mut Connection, len: usize) {
    ok(c, &a("CACHE.SET n0 v"));
    for i in 1..len {
        ok(
            c,
            &[
                "CACHE.SET",
                &format!("n{i}"),
                "v",
                "DEPENDS",
                "1",
                &format!("n{}", i - 1),
            ],
        );
    }
}

fn first_n(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    v.sort();
    v
}

#[test]
fn configs_have_their_defaults_and_config_set_changes_behaviour() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(config_get(&mut c, "cache.max-cascade-depth"), "16");
    assert_eq!(config_get(&mut c, "cache.default-ttl-seconds"), "0");
    chain(&mut c, 20);
    // Default depth 16: the seed and 16 hops.
    assert_eq!(keys(&mut c, &["KEY", "n0"]), first_n(17));
    assert_eq!(
        ok(&mut c, &a("CONFIG SET cache.max-cascade-depth 2")),
        Value::Okay
    );
    assert_eq!(config_get(&mut c, "cache.max-cascade-depth"), "2");
    assert_eq!(keys(&mut c, &["KEY", "n0"]), first_n(3));
    // An explicit DEPTH still wins.
    assert_eq!(keys(&mut c, &["DEPTH", "4", "KEY", "n0"]), first_n(5));
    assert_eq!(int(&ok(&mut c, &a("CACHE.INVALIDATE KEY n0"))), 3);
    assert_eq!(keys(&mut c, &["ALL"]).len(), 17);
    assert_eq!(exists(&mut c, "n3"), 1);
    ok(&mut c, &a("CONFIG SET cache.max-cascade-depth 0"));
    assert_eq!(keys(&mut c, &["KEY", "n3"]), ["n3"]);
    verify(&mut c);
}

#[test]
fn out_of_range_config_set_fails_and_keeps_the_old_value() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CONFIG SET cache.max-cascade-depth 5"));
    ok(&mut c, &a("CONFIG SET cache.default-ttl-seconds 7"));
    let range = |name: &str, max: &str| {
        format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be between 0 and {max} inclusive"
        )
    };
    let unparsable = |name: &str| {
        format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer"
        )
    };
    for (value, expected) in [
        ("-1", range("cache.max-cascade-depth", "1000000")),
        ("1000001", range("cache.max-cascade-depth", "1000000")),
        ("abc", unparsable("cache.max-cascade-depth")),
    ] {
        assert_eq!(
            err(&mut c, &["CONFIG", "SET", "cache.max-cascade-depth", value]),
            expected
        );
        assert_eq!(config_get(&mut c, "cache.max-cascade-depth"), "5");
    }
    for (value, expected) in [
        ("-1", range("cache.default-ttl-seconds", "2147483647")),
        (
            "2147483648",
            range("cache.default-ttl-seconds", "2147483647"),
        ),
        ("abc", unparsable("cache.default-ttl-seconds")),
    ] {
        assert_eq!(
            err(
                &mut c,
                &["CONFIG", "SET", "cache.default-ttl-seconds", value]
            ),
            expected
        );
        assert_eq!(config_get(&mut c, "cache.default-ttl-seconds"), "7");
    }
    // The old values still act.
    ok(&mut c, &a("CACHE.SET k v"));
    let t = pttl(&mut c, "k");
    assert!((2_000..=7_000).contains(&t), "default TTL 7 s: PTTL {t}");
    verify(&mut c);
}

#[test]
fn module_arguments_set_configs_at_load_time() {
    let s = Server::with(
        &["max-cascade-depth", "3", "default-ttl-seconds", "50"],
        &[],
    );
    let mut c = s.conn();
    assert_eq!(config_get(&mut c, "cache.max-cascade-depth"), "3");
    assert_eq!(config_get(&mut c, "cache.default-ttl-seconds"), "50");
    ok(&mut c, &a("CONFIG SET cache.default-ttl-seconds 0"));
    chain(&mut c, 6);
    assert_eq!(keys(&mut c, &["KEY", "n0"]), first_n(4));
    assert_eq!(int(&ok(&mut c, &a("CACHE.INVALIDATE KEY n0"))), 4);
    assert_eq!(keys(&mut c, &["ALL"]), ["n4", "n5"]);
    verify(&mut c);
}

#[test]
fn module_argument_default_ttl_applies_from_the_start() {
    let s = Server::with(&["default-ttl-seconds", "50"], &[]);
    let mut c = s.conn();
    assert_eq!(config_get(&mut c, "cache.max-cascade-depth"), "16");
    ok(&mut c, &a("CACHE.SET k v"));
    let t = pttl(&mut c, "k");
    assert!((45_000..=50_000).contains(&t), "PTTL {t}");
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// MULTI/EXEC and Lua
// ---------------------------------------------------------------------------------------------

#[test]
fn multi_exec_runs_cache_commands_in_order() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET old o TAGS 1 t"));
    assert_eq!(ok(&mut c, &a("MULTI")), Value::Okay);
    for q in [
        "CACHE.SET a 1 TAGS 1 t",
        "CACHE.SET b 2 TAGS 1 t DEPENDS 1 a",
        "CACHE.GET a",
        "CACHE.TAG b u",
        "CACHE.INVALIDATE TAG t",
        "CACHE.GET a",
        "CACHE.SET c 3",
        "CACHE.MGET b c",
    ] {
        assert_eq!(
            ok(&mut c, &a(q)),
            Value::SimpleString("QUEUED".into()),
            "{q}"
        );
    }
    assert_eq!(
        ok(&mut c, &a("EXEC")),
        Value::Array(vec![
            Value::Okay,
            Value::Okay,
            Value::BulkString(b"1".to_vec()),
            Value::Int(1),
            Value::Int(3),
            Value::Nil,
            Value::Okay,
            Value::Array(vec![Value::Nil, Value::BulkString(b"3".to_vec())]),
        ])
    );
    assert_eq!(keys(&mut c, &["ALL"]), ["c"]);
    assert_eq!(tag_sizes(&mut c, &[]), Vec::<(String, i64)>::new());

    // DISCARD: nothing queued runs.
    ok(&mut c, &a("MULTI"));
    ok(&mut c, &a("CACHE.SET d 4 TAGS 1 t"));
    ok(&mut c, &a("CACHE.INVALIDATE ALL"));
    assert_eq!(ok(&mut c, &a("DISCARD")), Value::Okay);
    assert_eq!(keys(&mut c, &["ALL"]), ["c"]);
    verify(&mut c);
}

#[test]
fn lua_scripts_call_cache_commands() {
    let s = Server::start();
    let mut c = s.conn();
    let set_get = "redis.call('CACHE.SET', KEYS[1], ARGV[1], 'TAGS', '2', ARGV[2], 'shared') \
                   return redis.call('CACHE.GET', KEYS[1])";
    assert_eq!(
        ok(&mut c, &["EVAL", set_get, "1", "k1", "v1", "t1"]),
        Value::BulkString(b"v1".to_vec())
    );
    assert_eq!(
        ok(&mut c, &["EVAL", set_get, "1", "k2", "v2", "t2"]),
        Value::BulkString(b"v2".to_vec())
    );
    assert_eq!(keys(&mut c, &["TAG", "shared"]), ["k1", "k2"]);
    assert_eq!(
        ok(
            &mut c,
            &[
                "EVAL",
                "return redis.call('CACHE.GET', KEYS[1]) == false",
                "1",
                "nope"
            ]
        ),
        Value::Int(1)
    );
    assert_eq!(
        ok(
            &mut c,
            &[
                "EVAL",
                "return redis.call('CACHE.MGET', KEYS[1], KEYS[2])",
                "2",
                "k1",
                "nope"
            ]
        ),
        Value::Array(vec![Value::BulkString(b"v1".to_vec()), Value::Nil])
    );
    // A map reply reaches a RESP2 script as a flat array.
    let fields = ok(
        &mut c,
        &[
            "EVAL",
            "local r = redis.call('CACHE.INSPECT', KEYS[1]) local out = {} \
             for i = 1, #r, 2 do out[#out + 1] = r[i] end return out",
            "1",
            "k1",
        ],
    );
    assert_eq!(strings(&fields), FIELDS);
    assert_eq!(
        ok(
            &mut c,
            &[
                "EVAL",
                "return redis.call('CACHE.INVALIDATE', 'TAG', ARGV[1])",
                "0",
                "t1"
            ]
        ),
        Value::Int(1)
    );
    assert_eq!(keys(&mut c, &["ALL"]), ["k2"]);
    // The read-only variant can read entries.
    assert_eq!(
        ok(
            &mut c,
            &[
                "EVAL_RO",
                "return redis.call('CACHE.GET', KEYS[1])",
                "1",
                "k2"
            ]
        ),
        Value::BulkString(b"v2".to_vec())
    );
    // Script errors come back with the module's wording.
    let e = err(
        &mut c,
        &["EVAL", "return redis.call('CACHE.SET', KEYS[1])", "1", "k3"],
    );
    assert!(
        e.contains("wrong number of arguments for 'cache.set' command"),
        "{e}"
    );
    assert_eq!(exists(&mut c, "k3"), 0);
    assert_eq!(
        ok(
            &mut c,
            &[
                "EVAL",
                "return redis.call('CACHE.INVALIDATE', 'TAG', 'shared')",
                "0"
            ]
        ),
        Value::Int(1)
    );
    assert_eq!(int(&ok(&mut c, &a("DBSIZE"))), 0);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

#[test]
fn databases_are_independent() {
    let s = Server::start();
    let mut c0 = s.conn();
    let mut c1 = s.conn();
    assert_eq!(ok(&mut c1, &a("SELECT 1")), Value::Okay);
    ok(&mut c0, &a("CACHE.SET k zero TAGS 1 t DEPENDS 1 r"));
    ok(&mut c0, &a("CACHE.SET child0 x DEPENDS 1 k"));
    ok(&mut c0, &a("SET plain1 p"));

    assert_eq!(get(&mut c1, "k"), None);
    assert_eq!(inspect(&mut c1, "k"), Value::Nil);
    assert_eq!(keys(&mut c1, &["TAG", "t"]), Vec::<String>::new());
    assert_eq!(keys(&mut c1, &["ALL"]), Vec::<String>::new());
    assert_eq!(tag_sizes(&mut c1, &[]), Vec::<(String, i64)>::new());
    assert_eq!(err(&mut c1, &a("CACHE.TAG k x")), "ERR no such key");

    ok(&mut c1, &a("CACHE.SET k one TAGS 2 t only1"));
    // A plain key of the same name in db 1 as a cache entry in db 0.
    ok(&mut c1, &a("SET child0 plain"));
    assert_eq!(get(&mut c1, "k"), Some(b"one".to_vec()));
    assert_eq!(get(&mut c0, "k"), Some(b"zero".to_vec()));
    assert_eq!(names(&inspect(&mut c0, "k"), "tags"), ["t"]);
    assert_eq!(names(&inspect(&mut c0, "k"), "dependents"), ["child0"]);
    assert_eq!(names(&inspect(&mut c1, "k"), "tags"), ["only1", "t"]);
    assert_eq!(
        names(&inspect(&mut c1, "k"), "dependents"),
        Vec::<String>::new()
    );
    assert_eq!(err(&mut c1, &a("CACHE.GET child0")), WRONGTYPE);
    assert_eq!(
        tag_sizes(&mut c1, &[]),
        [("only1".to_string(), 1), ("t".to_string(), 1)]
    );
    assert_eq!(tag_sizes(&mut c0, &[]), [("t".to_string(), 1)]);

    // Invalidation in db 1 leaves db 0 alone, and the reverse.
    assert_eq!(int(&ok(&mut c1, &a("CACHE.INVALIDATE TAG t"))), 1);
    assert_eq!(get(&mut c1, "k"), None);
    assert_eq!(get(&mut c0, "k"), Some(b"zero".to_vec()));
    assert_eq!(keys(&mut c0, &["ALL"]), ["child0", "k"]);
    ok(&mut c1, &a("CACHE.SET again v TAGS 1 t"));
    assert_eq!(int(&ok(&mut c0, &a("CACHE.INVALIDATE ALL"))), 2);
    assert_eq!(keys(&mut c1, &["ALL"]), ["again"]);
    assert_eq!(
        ok(&mut c1, &a("GET child0")),
        Value::BulkString(b"plain".to_vec())
    );
    assert_eq!(
        ok(&mut c0, &a("GET plain1")),
        Value::BulkString(b"p".to_vec())
    );
    verify(&mut c0);
    verify(&mut c1);
}
