//! Issue 3, "The index follows the keyspace everywhere": every path by which a key moves, leaves
//! or comes back without a CACHE command (RENAME, MOVE, COPY, SWAPDB, FLUSH*, DUMP/RESTORE,
//! lazy-free DEL, expiry, eviction, RDB/AOF persistence) keeps the per-database index exact.
//! Every test ends with CACHE.DEBUG VERIFY on every database it used.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers (private to this file).

type B = Vec<u8>;

/// A connection with database `db` selected.
fn conn_db(s: &Server, db: u32) -> Connection {
    let mut c = s.conn();
    assert_eq!(ok(&mut c, &["SELECT", &db.to_string()]), Value::Okay);
    c
}

/// Runs a command that acts on another database (MOVE, COPY ... DB), then selects `home` again:
/// Valkey 8.1 leaves the client on the destination database when a module subscribes to
/// keyspace events (valkey-io/valkey#4024, a server bug), which would hide what is tested here.
fn cross_db(c: &mut Connection, home: u32, parts: &[&str]) -> Value {
    let v = ok(c, parts);
    assert_eq!(ok(c, &["SELECT", &home.to_string()]), Value::Okay);
    v
}

fn b(s: &str) -> B {
    s.as_bytes().to_vec()
}

fn bl(v: &[&str]) -> Vec<B> {
    v.iter().map(|s| b(s)).collect()
}

fn sl(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// An array reply of bulk strings as raw bytes.
fn blist(v: &Value) -> Vec<B> {
    list(v)
        .iter()
        .map(|x| bytes(x).expect("nil in a list"))
        .collect()
}

/// CACHE.KEYS DEPTH 0 <selector>: what the index lists directly, without the cascade.
fn direct(c: &mut Connection, selector: &[&str]) -> Vec<String> {
    let mut parts = vec!["DEPTH", "0"];
    parts.extend_from_slice(selector);
    keys(c, &parts)
}

/// CACHE.KEYS with binary-safe arguments, raw byte keys.
fn bkeys(c: &mut Connection, selector: &[&[u8]]) -> Vec<B> {
    let mut parts: Vec<&[u8]> = vec![b"CACHE.KEYS"];
    parts.extend_from_slice(selector);
    blist(&ok(c, &parts))
}

/// CACHE.TAGS as (tag, entries) pairs.
fn tags(c: &mut Connection) -> Vec<(B, i64)> {
    list(&ok(c, &["CACHE.TAGS"]))
        .iter()
        .map(|p| {
            let p = list(p);
            assert_eq!(p.len(), 2, "CACHE.TAGS pair {p:?}");
            (bytes(&p[0]).expect("tag"), int(&p[1]))
        })
        .collect()
}

fn tag_pairs(v: &[(&str, i64)]) -> Vec<(B, i64)> {
    v.iter().map(|(t, n)| (b(t), *n)).collect()
}

/// CACHE.INSPECT, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Insp {
    tags: Vec<B>,
    depends: Vec<B>,
    dependents: Vec<B>,
    meta: Option<B>,
    ttl_ms: i64,
    created_ms: i64,
    hits: i64,
    size: i64,
}

fn inspect(c: &mut Connection, key: &[u8]) -> Option<Insp> {
    let v = ok(c, &[&b"CACHE.INSPECT"[..], key]);
    if v == Value::Nil {
        return None;
    }
    let m = map(&v);
    let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "tags",
            "depends",
            "dependents",
            "meta",
            "ttl_ms",
            "created_ms",
            "hits",
            "size"
        ],
        "CACHE.INSPECT fields"
    );
    Some(Insp {
        tags: blist(&m[0].1),
        depends: blist(&m[1].1),
        dependents: blist(&m[2].1),
        meta: bytes(&m[3].1),
        ttl_ms: int(&m[4].1),
        created_ms: int(&m[5].1),
        hits: int(&m[6].1),
        size: int(&m[7].1),
    })
}

fn must_inspect(c: &mut Connection, key: &str) -> Insp {
    inspect(c, key.as_bytes()).unwrap_or_else(|| panic!("no entry {key}"))
}

/// Asserts two INSPECT results describe the same entry facts: everything but `ttl_ms` and
/// `dependents` (which belong to the key name and database, not to the entry).
fn assert_same_entry(a: &Insp, b: &Insp) {
    assert_eq!(a.tags, b.tags, "tags");
    assert_eq!(a.depends, b.depends, "depends");
    assert_eq!(a.meta, b.meta, "meta");
    assert_eq!(a.size, b.size, "size");
    assert_eq!(a.created_ms, b.created_ms, "created_ms");
    assert_eq!(a.hits, b.hits, "hits");
}

/// Asserts an entry is unchanged: every INSPECT field equal, `ttl_ms` allowed to tick down.
fn assert_unchanged(now: &Insp, then: &Insp) {
    assert_eq!(
        Insp {
            ttl_ms: then.ttl_ms,
            ..now.clone()
        },
        *then
    );
    if then.ttl_ms < 0 {
        assert_eq!(now.ttl_ms, then.ttl_ms);
    } else {
        assert!(
            now.ttl_ms <= then.ttl_ms && now.ttl_ms > then.ttl_ms - 5_000,
            "ttl_ms {} then {}",
            then.ttl_ms,
            now.ttl_ms
        );
    }
}

fn get(c: &mut Connection, key: &str) -> Option<B> {
    bytes(&ok(c, &["CACHE.GET", key]))
}

/// INFO cache as name -> integer (non-integer fields are skipped).
fn info_cache(c: &mut Connection) -> HashMap<String, i64> {
    let text: String = redis::cmd("INFO")
        .arg("cache")
        .query(c)
        .expect("INFO cache");
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            Some((k.to_string(), v.parse::<i64>().ok()?))
        })
        .collect()
}

fn info_field(c: &mut Connection, name: &str) -> i64 {
    *info_cache(c)
        .get(name)
        .unwrap_or_else(|| panic!("INFO cache has no {name}"))
}

fn info_persistence(c: &mut Connection) -> HashMap<String, String> {
    let text: String = redis::cmd("INFO")
        .arg("persistence")
        .query(c)
        .expect("INFO persistence");
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Polls `cond` every 10 ms for up to 5 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. RENAME / RENAMENX

#[test]
fn rename_moves_tagged_entry_and_its_links_to_the_new_name() {
    let s = Server::start();
    let mut c = s.conn();
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "a",
            "va",
            "TAGS",
            "2",
            "t1",
            "t2",
            "DEPENDS",
            "1",
            "res",
            "META",
            r#"{"m":1}"#,
        ],
    );
    // An entry that depends on the *name* "a": the dependency stays with the name.
    ok(&mut c, &["CACHE.SET", "on_a", "x", "DEPENDS", "1", "a"]);
    assert_eq!(get(&mut c, "a"), Some(b("va")));
    let before = must_inspect(&mut c, "a");
    assert_eq!(before.dependents, bl(&["on_a"]));
    assert_eq!(before.hits, 1);

    assert_eq!(ok(&mut c, &["RENAME", "a", "b"]), Value::Okay);

    assert_eq!(inspect(&mut c, b"a"), None);
    let after = must_inspect(&mut c, "b");
    assert_same_entry(&before, &after);
    assert_eq!(after.tags, bl(&["t1", "t2"]));
    assert_eq!(after.depends, bl(&["res"]));
    assert_eq!(after.meta, Some(b(r#"{"m":1}"#)));
    assert_eq!(after.dependents, Vec::<B>::new());
    assert_eq!(direct(&mut c, &["TAG", "t1"]), sl(&["b"]));
    assert_eq!(direct(&mut c, &["TAG", "t2"]), sl(&["b"]));
    assert_eq!(direct(&mut c, &["DEPENDENTS", "res"]), sl(&["b"]));
    assert_eq!(direct(&mut c, &["DEPENDENTS", "a"]), sl(&["on_a"]));
    assert_eq!(keys(&mut c, &["PATTERN", "?"]), sl(&["b"]));
    assert_eq!(keys(&mut c, &["KEY", "a"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["KEY", "b"]), sl(&["b"]));
    assert_eq!(keys(&mut c, &["ALL"]), sl(&["b", "on_a"]));
    assert_eq!(tags(&mut c), tag_pairs(&[("t1", 1), ("t2", 1)]));
    assert_eq!(get(&mut c, "b"), Some(b("va")));
    verify(&mut c);

    // RENAME onto itself is a no-op.
    let d = digest(&mut c);
    assert_eq!(ok(&mut c, &["RENAME", "b", "b"]), Value::Okay);
    assert_eq!(digest(&mut c), d);
    assert_eq!(direct(&mut c, &["TAG", "t1"]), sl(&["b"]));

    // RENAME of a missing key is refused and changes nothing.
    assert_eq!(err(&mut c, &["RENAME", "a", "z"]), "ERR no such key");
    assert_eq!(digest(&mut c), d);
    assert_eq!(keys(&mut c, &["ALL"]), sl(&["b", "on_a"]));

    // Invalidating the new name removes it (and nothing depends on "b").
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "TAG", "t1"])), 1);
    assert_eq!(keys(&mut c, &["ALL"]), sl(&["on_a"]));
    assert_eq!(tags(&mut c), vec![]);
    verify(&mut c);
}

#[test]
fn rename_onto_existing_entry_drops_the_old_targets_tags_and_deps() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["CACHE.SET", "a", "va", "TAGS", "1", "ta"]);
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "b",
            "vb",
            "TAGS",
            "2",
            "tb",
            "tb2",
            "DEPENDS",
            "1",
            "rb",
            "META",
            r#"{"old":true}"#,
        ],
    );
    let a = must_inspect(&mut c, "a");

    assert_eq!(ok(&mut c, &["RENAME", "a", "b"]), Value::Okay);

    assert_eq!(inspect(&mut c, b"a"), None);
    let nb = must_inspect(&mut c, "b");
    assert_same_entry(&a, &nb);
    assert_eq!(nb.tags, bl(&["ta"]));
    assert_eq!(nb.depends, Vec::<B>::new());
    assert_eq!(nb.meta, None);
    assert_eq!(get(&mut c, "b"), Some(b("va")));
    assert_eq!(direct(&mut c, &["TAG", "ta"]), sl(&["b"]));
    assert_eq!(direct(&mut c, &["TAG", "tb"]), Vec::<String>::new());
    assert_eq!(direct(&mut c, &["TAG", "tb2"]), Vec::<String>::new());
    assert_eq!(direct(&mut c, &["DEPENDENTS", "rb"]), Vec::<String>::new());
    assert_eq!(tags(&mut c), tag_pairs(&[("ta", 1)]));
    assert_eq!(info_field(&mut c, "cache_entries"), 1);
    assert_eq!(info_field(&mut c, "cache_tags"), 1);
    verify(&mut c);

    // RENAME onto a plain string key: the entry arrives there.
    ok(&mut c, &["SET", "plain", "p"]);
    assert_eq!(ok(&mut c, &["RENAME", "b", "plain"]), Value::Okay);
    assert_eq!(must_inspect(&mut c, "plain").tags, bl(&["ta"]));
    assert_eq!(direct(&mut c, &["TAG", "ta"]), sl(&["plain"]));
    verify(&mut c);

    // A plain string renamed over an entry: the entry leaves the index.
    ok(&mut c, &["SET", "str", "s"]);
    assert_eq!(ok(&mut c, &["RENAME", "str", "plain"]), Value::Okay);
    assert_eq!(
        err(&mut c, &["CACHE.INSPECT", "plain"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(direct(&mut c, &["TAG", "ta"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["ALL"]), Vec::<String>::new());
    assert_eq!(tags(&mut c), vec![]);
    assert_eq!(info_field(&mut c, "cache_entries"), 0);
    verify(&mut c);
}

#[test]
fn rename_onto_a_name_others_depend_on_makes_them_its_dependents() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["CACHE.SET", "x1", "1", "DEPENDS", "1", "target"]);
    ok(
        &mut c,
        &["CACHE.SET", "x2", "2", "DEPENDS", "2", "target", "other"],
    );
    ok(&mut c, &["CACHE.SET", "y", "3", "DEPENDS", "1", "x1"]);
    ok(&mut c, &["CACHE.SET", "src", "v", "TAGS", "1", "ts"]);
    assert_eq!(must_inspect(&mut c, "src").dependents, Vec::<B>::new());
    assert_eq!(keys(&mut c, &["KEY", "target"]), Vec::<String>::new());

    assert_eq!(ok(&mut c, &["RENAME", "src", "target"]), Value::Okay);

    let t = must_inspect(&mut c, "target");
    assert_eq!(t.dependents, bl(&["x1", "x2"]));
    assert_eq!(t.tags, bl(&["ts"]));
    assert_eq!(direct(&mut c, &["DEPENDENTS", "target"]), sl(&["x1", "x2"]));
    assert_eq!(
        keys(&mut c, &["KEY", "target"]),
        sl(&["target", "x1", "x2", "y"])
    );
    assert_eq!(
        keys(&mut c, &["DEPTH", "1", "KEY", "target"]),
        sl(&["target", "x1", "x2"])
    );
    assert_eq!(direct(&mut c, &["TAG", "ts"]), sl(&["target"]));
    assert_eq!(direct(&mut c, &["TAG", "ts"]), sl(&["target"]));
    assert_eq!(keys(&mut c, &["KEY", "src"]), Vec::<String>::new());
    verify(&mut c);

    // The cascade now starts at the renamed entry.
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "KEY", "target"])), 4);
    assert_eq!(keys(&mut c, &["ALL"]), Vec::<String>::new());
    assert_eq!(tags(&mut c), vec![]);
    assert_eq!(dbsize(&mut c), 0);
    verify(&mut c);

    // Same through RENAMENX (target missing: accepted).
    ok(&mut c, &["CACHE.SET", "d1", "1", "DEPENDS", "1", "t2"]);
    ok(&mut c, &["CACHE.SET", "src2", "v", "TAGS", "1", "ts2"]);
    assert_eq!(int(&ok(&mut c, &["RENAMENX", "src2", "t2"])), 1);
    assert_eq!(must_inspect(&mut c, "t2").dependents, bl(&["d1"]));
    assert_eq!(direct(&mut c, &["TAG", "ts2"]), sl(&["t2"]));
    assert_eq!(keys(&mut c, &["KEY", "t2"]), sl(&["d1", "t2"]));
    verify(&mut c);

    // Renaming an entry away from a depended-on name leaves its dependents behind.
    assert_eq!(ok(&mut c, &["RENAME", "t2", "elsewhere"]), Value::Okay);
    assert_eq!(
        must_inspect(&mut c, "elsewhere").dependents,
        Vec::<B>::new()
    );
    assert_eq!(keys(&mut c, &["KEY", "elsewhere"]), sl(&["elsewhere"]));
    assert_eq!(direct(&mut c, &["DEPENDENTS", "t2"]), sl(&["d1"]));
    assert_eq!(
        int(&ok(&mut c, &["CACHE.INVALIDATE", "KEY", "elsewhere"])),
        1
    );
    assert_eq!(keys(&mut c, &["ALL"]), sl(&["d1"]));
    verify(&mut c);
}

#[test]
fn renamenx_onto_existing_target_is_refused_and_changes_nothing() {
    let s = Server::start();
    let mut c = s.conn();
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "a",
            "va",
            "TAGS",
            "1",
            "ta",
            "DEPENDS",
            "1",
            "ra",
        ],
    );
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "b",
            "vb",
            "TAGS",
            "1",
            "tb",
            "DEPENDS",
            "1",
            "a",
        ],
    );
    ok(&mut c, &["SET", "plain", "p"]);
    let (ia, ib) = (must_inspect(&mut c, "a"), must_inspect(&mut c, "b"));
    let d = digest(&mut c);

    assert_eq!(int(&ok(&mut c, &["RENAMENX", "a", "b"])), 0);
    assert_eq!(int(&ok(&mut c, &["RENAMENX", "a", "plain"])), 0);
    assert_eq!(int(&ok(&mut c, &["RENAMENX", "b", "a"])), 0);

    assert_eq!(digest(&mut c), d);
    assert_unchanged(&must_inspect(&mut c, "a"), &ia);
    assert_unchanged(&must_inspect(&mut c, "b"), &ib);
    assert_eq!(ia.dependents, bl(&["b"]));
    assert_eq!(direct(&mut c, &["TAG", "ta"]), sl(&["a"]));
    assert_eq!(direct(&mut c, &["TAG", "tb"]), sl(&["b"]));
    assert_eq!(direct(&mut c, &["DEPENDENTS", "ra"]), sl(&["a"]));
    assert_eq!(keys(&mut c, &["ALL"]), sl(&["a", "b"]));
    assert_eq!(bytes(&ok(&mut c, &["GET", "plain"])), Some(b("p")));
    verify(&mut c);

    // To a free name it moves.
    assert_eq!(int(&ok(&mut c, &["RENAMENX", "a", "c"])), 1);
    assert_eq!(direct(&mut c, &["TAG", "ta"]), sl(&["c"]));
    assert_eq!(direct(&mut c, &["DEPENDENTS", "ra"]), sl(&["c"]));
    assert_eq!(must_inspect(&mut c, "c").dependents, Vec::<B>::new());
    assert_eq!(inspect(&mut c, b"a"), None);
    verify(&mut c);
}

#[test]
fn rename_keeps_the_ttl_and_expiry_cleans_the_new_name() {
    let s = Server::start();
    let mut c = s.conn();
    ok(
        &mut c,
        &["CACHE.SET", "a", "v", "PX", "100000", "TAGS", "1", "t"],
    );
    ok(&mut c, &["CACHE.SET", "keep", "v", "TAGS", "1", "t"]);
    assert_eq!(ok(&mut c, &["RENAME", "a", "b"]), Value::Okay);
    let ttl = pttl(&mut c, "b");
    assert!((90_000..=100_000).contains(&ttl), "PTTL b = {ttl}");
    let ins = must_inspect(&mut c, "b");
    assert!(
        (90_000..=100_000).contains(&ins.ttl_ms),
        "ttl_ms = {}",
        ins.ttl_ms
    );
    assert_eq!(pttl(&mut c, "a"), -2);
    assert_eq!(direct(&mut c, &["TAG", "t"]), sl(&["b", "keep"]));
    verify(&mut c);

    // A short TTL carried over: when it fires, the entry leaves the index under its new name.
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "short",
            "v",
            "PX",
            "300",
            "TAGS",
            "2",
            "t",
            "s",
        ],
    );
    assert_eq!(ok(&mut c, &["RENAME", "short", "renamed"]), Value::Okay);
    let ttl = pttl(&mut c, "renamed");
    assert!((1..=300).contains(&ttl), "PTTL renamed = {ttl}");
    assert_eq!(direct(&mut c, &["TAG", "s"]), sl(&["renamed"]));
    wait_until("renamed to expire", || {
        int(&ok(&mut c, &["EXISTS", "renamed"])) == 0
    });
    assert_eq!(direct(&mut c, &["TAG", "s"]), Vec::<String>::new());
    assert_eq!(direct(&mut c, &["TAG", "t"]), sl(&["b", "keep"]));
    assert_eq!(tags(&mut c), tag_pairs(&[("t", 2)]));
    assert_eq!(info_field(&mut c, "cache_entries"), 2);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 2. MOVE

#[test]
fn move_to_another_database_and_back_moves_the_index_entry() {
    let s = Server::start();
    let mut c0 = conn_db(&s, 0);
    let mut c1 = conn_db(&s, 1);
    ok(
        &mut c0,
        &[
            "CACHE.SET",
            "a",
            "va",
            "PX",
            "100000",
            "TAGS",
            "2",
            "t1",
            "t2",
            "DEPENDS",
            "1",
            "r",
            "META",
            r#"{"x":"y"}"#,
        ],
    );
    ok(&mut c0, &["CACHE.SET", "d", "vd", "DEPENDS", "1", "a"]);
    let before = must_inspect(&mut c0, "a");
    assert_eq!(before.dependents, bl(&["d"]));

    assert_eq!(int(&cross_db(&mut c0, 0, &["MOVE", "a", "1"])), 1);

    assert_eq!(inspect(&mut c0, b"a"), None);
    assert_eq!(direct(&mut c0, &["TAG", "t1"]), Vec::<String>::new());
    assert_eq!(direct(&mut c0, &["DEPENDENTS", "r"]), Vec::<String>::new());
    assert_eq!(keys(&mut c0, &["ALL"]), sl(&["d"]));
    assert_eq!(tags(&mut c0), vec![]);
    let moved = must_inspect(&mut c1, "a");
    assert_same_entry(&before, &moved);
    assert_eq!(moved.dependents, Vec::<B>::new());
    assert!(
        (90_000..=100_000).contains(&moved.ttl_ms),
        "{}",
        moved.ttl_ms
    );
    assert_eq!(direct(&mut c1, &["TAG", "t1"]), sl(&["a"]));
    assert_eq!(direct(&mut c1, &["TAG", "t2"]), sl(&["a"]));
    assert_eq!(direct(&mut c1, &["DEPENDENTS", "r"]), sl(&["a"]));
    assert_eq!(keys(&mut c1, &["ALL"]), sl(&["a"]));
    assert_eq!(tags(&mut c1), tag_pairs(&[("t1", 1), ("t2", 1)]));
    assert_eq!(get(&mut c1, "a"), Some(b("va")));
    assert_eq!(get(&mut c0, "a"), None);
    verify(&mut c0);
    verify(&mut c1);

    // Back to db 0: it finds its dependent again.
    assert_eq!(int(&cross_db(&mut c1, 1, &["MOVE", "a", "0"])), 1);
    let back = must_inspect(&mut c0, "a");
    assert_eq!(back.dependents, bl(&["d"]));
    assert_eq!(back.tags, bl(&["t1", "t2"]));
    assert_eq!(back.hits, 1);
    assert_eq!(direct(&mut c0, &["TAG", "t1"]), sl(&["a"]));
    assert_eq!(keys(&mut c0, &["KEY", "a"]), sl(&["a", "d"]));
    assert_eq!(direct(&mut c1, &["TAG", "t1"]), Vec::<String>::new());
    assert_eq!(keys(&mut c1, &["ALL"]), Vec::<String>::new());
    assert_eq!(inspect(&mut c1, b"a"), None);
    verify(&mut c0);
    verify(&mut c1);

    // MOVE refused when the target database has the key: nothing changes in either.
    ok(&mut c1, &["CACHE.SET", "a", "other", "TAGS", "1", "t9"]);
    let d = digest(&mut c0);
    let (i0, i1) = (must_inspect(&mut c0, "a"), must_inspect(&mut c1, "a"));
    assert_eq!(int(&cross_db(&mut c0, 0, &["MOVE", "a", "1"])), 0);
    assert_eq!(digest(&mut c0), d);
    assert_unchanged(&must_inspect(&mut c0, "a"), &i0);
    assert_unchanged(&must_inspect(&mut c1, "a"), &i1);
    assert_eq!(direct(&mut c0, &["TAG", "t1"]), sl(&["a"]));
    assert_eq!(direct(&mut c1, &["TAG", "t9"]), sl(&["a"]));
    assert_eq!(direct(&mut c1, &["TAG", "t1"]), Vec::<String>::new());
    verify(&mut c0);
    verify(&mut c1);
}

/// With the module loaded (it follows MOVE/COPY through keyspace notifications), MOVE and
/// COPY ... DB must leave the client on its own database, for plain keys and entries alike.
/// (Valkey 8.1 fails this: valkey-io/valkey#4024, a server bug the module's subscription
/// triggers.)
#[test]
fn move_and_copy_to_another_db_leave_the_client_on_its_database() {
    let s = Server::start();
    let mut c = conn_db(&s, 2);
    let db_of = |c: &mut Connection| -> String {
        let info: String = redis::cmd("CLIENT")
            .arg("INFO")
            .query(c)
            .expect("CLIENT INFO");
        info.split_whitespace()
            .find_map(|f| f.strip_prefix("db="))
            .expect("db= in CLIENT INFO")
            .to_string()
    };
    ok(&mut c, &["SET", "plain", "p"]);
    ok(&mut c, &["CACHE.SET", "e", "v", "TAGS", "1", "t"]);
    ok(&mut c, &["CACHE.SET", "f", "v", "TAGS", "1", "t"]);
    assert_eq!(int(&ok(&mut c, &["MOVE", "plain", "3"])), 1);
    assert_eq!(db_of(&mut c), "2", "after MOVE of a plain key");
    assert_eq!(int(&ok(&mut c, &["MOVE", "e", "3"])), 1);
    assert_eq!(db_of(&mut c), "2", "after MOVE of an entry");
    assert_eq!(int(&ok(&mut c, &["COPY", "f", "f", "DB", "4"])), 1);
    assert_eq!(db_of(&mut c), "2", "after COPY ... DB of an entry");
    assert_eq!(keys(&mut c, &["ALL"]), sl(&["f"]));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 3. COPY

#[test]
fn copy_creates_a_full_independent_tagged_entry() {
    let s = Server::start();
    let mut c0 = conn_db(&s, 0);
    let mut c1 = conn_db(&s, 1);
    ok(
        &mut c0,
        &[
            "CACHE.SET",
            "a",
            "va",
            "PX",
            "100000",
            "TAGS",
            "2",
            "t1",
            "t2",
            "DEPENDS",
            "1",
            "r",
            "META",
            r#"{"k":[1,2]}"#,
        ],
    );
    assert_eq!(get(&mut c0, "a"), Some(b("va")));
    let ia = must_inspect(&mut c0, "a");

    // Same database.
    assert_eq!(int(&ok(&mut c0, &["COPY", "a", "b"])), 1);
    let ib = must_inspect(&mut c0, "b");
    assert_same_entry(&ia, &ib);
    assert!((90_000..=100_000).contains(&ib.ttl_ms), "{}", ib.ttl_ms);
    assert_eq!(get(&mut c0, "b"), Some(b("va")));
    assert_eq!(direct(&mut c0, &["TAG", "t1"]), sl(&["a", "b"]));
    assert_eq!(direct(&mut c0, &["TAG", "t2"]), sl(&["a", "b"]));
    assert_eq!(direct(&mut c0, &["DEPENDENTS", "r"]), sl(&["a", "b"]));
    assert_eq!(tags(&mut c0), tag_pairs(&[("t1", 2), ("t2", 2)]));
    verify(&mut c0);

    // The copy is independent: tagging or reading it leaves the source alone.
    assert_eq!(int(&ok(&mut c0, &["CACHE.TAG", "b", "t3"])), 1);
    assert_eq!(must_inspect(&mut c0, "a").tags, bl(&["t1", "t2"]));
    assert_eq!(must_inspect(&mut c0, "a").hits, 1);
    assert_eq!(must_inspect(&mut c0, "b").hits, 2);
    assert_eq!(direct(&mut c0, &["TAG", "t3"]), sl(&["b"]));
    verify(&mut c0);

    // Refused without REPLACE: nothing changes.
    let d = digest(&mut c0);
    let ib = must_inspect(&mut c0, "b");
    assert_eq!(int(&ok(&mut c0, &["COPY", "a", "b"])), 0);
    assert_eq!(digest(&mut c0), d);
    assert_unchanged(&must_inspect(&mut c0, "b"), &ib);
    assert_eq!(direct(&mut c0, &["TAG", "t3"]), sl(&["b"]));

    // To another database.
    assert_eq!(
        int(&cross_db(&mut c0, 0, &["COPY", "a", "b", "DB", "1"])),
        1
    );
    let i1 = must_inspect(&mut c1, "b");
    assert_same_entry(&ia, &i1);
    assert_eq!(direct(&mut c1, &["TAG", "t1"]), sl(&["b"]));
    assert_eq!(direct(&mut c1, &["TAG", "t3"]), Vec::<String>::new());
    assert_eq!(direct(&mut c1, &["DEPENDENTS", "r"]), sl(&["b"]));
    assert_eq!(direct(&mut c0, &["TAG", "t1"]), sl(&["a", "b"]));
    verify(&mut c0);
    verify(&mut c1);

    // REPLACE over an existing entry with other tags and deps.
    ok(
        &mut c0,
        &[
            "CACHE.SET",
            "x",
            "vx",
            "TAGS",
            "1",
            "tx",
            "DEPENDS",
            "1",
            "rx",
        ],
    );
    assert_eq!(int(&ok(&mut c0, &["COPY", "a", "x", "REPLACE"])), 1);
    let ix = must_inspect(&mut c0, "x");
    assert_eq!(ix.tags, bl(&["t1", "t2"]));
    assert_eq!(ix.depends, bl(&["r"]));
    assert_eq!(get(&mut c0, "x"), Some(b("va")));
    assert_eq!(direct(&mut c0, &["TAG", "tx"]), Vec::<String>::new());
    assert_eq!(direct(&mut c0, &["DEPENDENTS", "rx"]), Vec::<String>::new());
    assert_eq!(direct(&mut c0, &["TAG", "t1"]), sl(&["a", "b", "x"]));
    assert_eq!(tags(&mut c0), tag_pairs(&[("t1", 3), ("t2", 3), ("t3", 1)]));
    verify(&mut c0);

    // Invalidating the tag removes every copy of this database, not the other one's.
    assert_eq!(int(&ok(&mut c0, &["CACHE.INVALIDATE", "TAG", "t1"])), 3);
    assert_eq!(keys(&mut c0, &["ALL"]), Vec::<String>::new());
    assert_eq!(dbsize(&mut c0), 0);
    assert_eq!(tags(&mut c0), vec![]);
    assert_eq!(direct(&mut c1, &["TAG", "t1"]), sl(&["b"]));
    assert_eq!(int(&ok(&mut c1, &["CACHE.INVALIDATE", "TAG", "t1"])), 1);
    assert_eq!(dbsize(&mut c1), 0);
    verify(&mut c0);
    verify(&mut c1);
}

// ---------------------------------------------------------------------------------------------
// 4. SWAPDB

#[test]
fn swapdb_swaps_entries_and_tags_with_the_databases() {
    let s = Server::start();
    let mut c0 = conn_db(&s, 0);
    let mut c1 = conn_db(&s, 1);
    let mut c5 = conn_db(&s, 5);
    ok(
        &mut c0,
        &["CACHE.SET", "a", "va", "TAGS", "2", "t0", "shared"],
    );
    ok(&mut c0, &["CACHE.SET", "d0", "vd", "DEPENDS", "1", "a"]);
    ok(
        &mut c1,
        &["CACHE.SET", "b", "vb", "TAGS", "2", "t1", "shared"],
    );
    ok(&mut c1, &["CACHE.SET", "b2", "vb2", "TAGS", "1", "t1"]);

    assert_eq!(ok(&mut c0, &["SWAPDB", "0", "1"]), Value::Okay);

    assert_eq!(keys(&mut c0, &["ALL"]), sl(&["b", "b2"]));
    assert_eq!(direct(&mut c0, &["TAG", "t1"]), sl(&["b", "b2"]));
    assert_eq!(direct(&mut c0, &["TAG", "shared"]), sl(&["b"]));
    assert_eq!(direct(&mut c0, &["TAG", "t0"]), Vec::<String>::new());
    assert_eq!(tags(&mut c0), tag_pairs(&[("t1", 2), ("shared", 1)]));
    assert_eq!(must_inspect(&mut c0, "b").tags, bl(&["shared", "t1"]));
    assert_eq!(inspect(&mut c0, b"a"), None);
    assert_eq!(keys(&mut c1, &["ALL"]), sl(&["a", "d0"]));
    assert_eq!(direct(&mut c1, &["TAG", "t0"]), sl(&["a"]));
    assert_eq!(direct(&mut c1, &["TAG", "shared"]), sl(&["a"]));
    assert_eq!(direct(&mut c1, &["TAG", "t1"]), Vec::<String>::new());
    assert_eq!(must_inspect(&mut c1, "a").dependents, bl(&["d0"]));
    assert_eq!(keys(&mut c1, &["KEY", "a"]), sl(&["a", "d0"]));
    assert_eq!(inspect(&mut c1, b"b"), None);
    verify(&mut c0);
    verify(&mut c1);

    // Invalidations act on the swapped contents.
    assert_eq!(int(&ok(&mut c0, &["CACHE.INVALIDATE", "TAG", "shared"])), 1);
    assert_eq!(keys(&mut c0, &["ALL"]), sl(&["b2"]));
    assert_eq!(direct(&mut c1, &["TAG", "shared"]), sl(&["a"]));
    verify(&mut c0);

    // Swap with an empty database.
    assert_eq!(ok(&mut c0, &["SWAPDB", "1", "5"]), Value::Okay);
    assert_eq!(keys(&mut c1, &["ALL"]), Vec::<String>::new());
    assert_eq!(tags(&mut c1), vec![]);
    assert_eq!(keys(&mut c5, &["ALL"]), sl(&["a", "d0"]));
    assert_eq!(direct(&mut c5, &["TAG", "t0"]), sl(&["a"]));
    assert_eq!(must_inspect(&mut c5, "a").dependents, bl(&["d0"]));
    assert_eq!(int(&ok(&mut c5, &["CACHE.INVALIDATE", "KEY", "a"])), 2);
    assert_eq!(dbsize(&mut c5), 0);
    assert_eq!(info_field(&mut c0, "cache_entries"), 1);
    verify(&mut c0);
    verify(&mut c1);
    verify(&mut c5);
}

// ---------------------------------------------------------------------------------------------
// 5. FLUSHDB / FLUSHALL

fn fill_two_dbs(c0: &mut Connection, c1: &mut Connection) {
    ok(c0, &["CACHE.SET", "a", "1", "TAGS", "1", "t"]);
    ok(
        c0,
        &[
            "CACHE.SET",
            "b",
            "2",
            "TAGS",
            "2",
            "t",
            "u",
            "DEPENDS",
            "1",
            "a",
        ],
    );
    ok(
        c1,
        &["CACHE.SET", "c", "3", "TAGS", "1", "t", "DEPENDS", "1", "r"],
    );
}

#[test]
fn flushdb_sync_and_async_empty_only_that_databases_index() {
    let s = Server::start();
    let mut c0 = conn_db(&s, 0);
    let mut c1 = conn_db(&s, 1);
    for mode in [None, Some("ASYNC"), Some("SYNC")] {
        fill_two_dbs(&mut c0, &mut c1);
        let mut flush = vec!["FLUSHDB"];
        flush.extend(mode);
        assert_eq!(ok(&mut c0, &flush), Value::Okay, "{mode:?}");
        assert_eq!(keys(&mut c0, &["ALL"]), Vec::<String>::new());
        assert_eq!(direct(&mut c0, &["TAG", "t"]), Vec::<String>::new());
        assert_eq!(direct(&mut c0, &["DEPENDENTS", "a"]), Vec::<String>::new());
        assert_eq!(tags(&mut c0), vec![]);
        assert_eq!(direct(&mut c1, &["TAG", "t"]), sl(&["c"]));
        assert_eq!(direct(&mut c1, &["DEPENDENTS", "r"]), sl(&["c"]));
        assert_eq!(must_inspect(&mut c1, "c").tags, bl(&["t"]));
        assert_eq!(info_field(&mut c0, "cache_entries"), 1);
        assert_eq!(info_field(&mut c0, "cache_tags"), 1);
        verify(&mut c0);
        verify(&mut c1);

        // The other database, flushed from its own connection.
        fill_two_dbs(&mut c0, &mut c1);
        let mut flush = vec!["FLUSHDB"];
        flush.extend(mode);
        assert_eq!(ok(&mut c1, &flush), Value::Okay);
        assert_eq!(keys(&mut c1, &["ALL"]), Vec::<String>::new());
        assert_eq!(tags(&mut c1), vec![]);
        assert_eq!(direct(&mut c0, &["TAG", "t"]), sl(&["a", "b"]));
        assert_eq!(keys(&mut c0, &["KEY", "a"]), sl(&["a", "b"]));
        assert_eq!(tags(&mut c0), tag_pairs(&[("t", 2), ("u", 1)]));
        verify(&mut c0);
        verify(&mut c1);
        ok(&mut c0, &["FLUSHDB"]);
    }
    // Entries written after a flush are indexed normally.
    fill_two_dbs(&mut c0, &mut c1);
    assert_eq!(direct(&mut c0, &["TAG", "t"]), sl(&["a", "b"]));
    assert_eq!(direct(&mut c1, &["TAG", "t"]), sl(&["c"]));
    verify(&mut c0);
    verify(&mut c1);
}

#[test]
fn flushall_sync_and_async_empty_every_index() {
    let s = Server::start();
    let mut c0 = conn_db(&s, 0);
    let mut c1 = conn_db(&s, 1);
    for mode in [None, Some("ASYNC"), Some("SYNC")] {
        fill_two_dbs(&mut c0, &mut c1);
        ok(&mut c0, &["SET", "plain", "p"]);
        assert_eq!(info_field(&mut c0, "cache_entries"), 3);
        let mut flush = vec!["FLUSHALL"];
        flush.extend(mode);
        assert_eq!(ok(&mut c1, &flush), Value::Okay, "{mode:?}");
        for c in [&mut c0, &mut c1] {
            assert_eq!(keys(c, &["ALL"]), Vec::<String>::new());
            assert_eq!(direct(c, &["TAG", "t"]), Vec::<String>::new());
            assert_eq!(tags(c), vec![]);
            assert_eq!(dbsize(c), 0);
        }
        assert_eq!(info_field(&mut c0, "cache_entries"), 0);
        assert_eq!(info_field(&mut c0, "cache_tags"), 0);
        verify(&mut c0);
        verify(&mut c1);
    }
    fill_two_dbs(&mut c0, &mut c1);
    assert_eq!(direct(&mut c0, &["TAG", "t"]), sl(&["a", "b"]));
    assert_eq!(direct(&mut c1, &["TAG", "t"]), sl(&["c"]));
    verify(&mut c0);
    verify(&mut c1);
}

// ---------------------------------------------------------------------------------------------
// 6. DUMP / RESTORE

fn dump(c: &mut Connection, key: &str) -> B {
    let v: Option<B> = redis::cmd("DUMP").arg(key).query(c).expect("DUMP");
    v.expect("DUMP of a missing key")
}

fn restore(c: &mut Connection, key: &str, ttl: &str, payload: &[u8], extra: &[&str]) -> Value {
    let mut k = redis::cmd("RESTORE");
    k.arg(key).arg(ttl).arg(payload);
    for e in extra {
        k.arg(*e);
    }
    k.query(c).unwrap_or_else(|e| panic!("RESTORE failed: {e}"))
}

fn restore_err(c: &mut Connection, key: &str, payload: &[u8]) -> String {
    let r: redis::RedisResult<Value> = redis::cmd("RESTORE").arg(key).arg(0).arg(payload).query(c);
    match r {
        Ok(v) => panic!("RESTORE of a bad payload succeeded: {v:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
            .trim()
            .to_string(),
    }
}

#[test]
fn dump_restore_carries_tags_deps_and_meta() {
    let s = Server::start();
    let mut c = s.conn();
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "a",
            "VALUEMARK",
            "PX",
            "100000",
            "TAGS",
            "2",
            "t1",
            "t2",
            "DEPENDS",
            "1",
            "r",
            "META",
            r#"{"k":"v"}"#,
        ],
    );
    ok(&mut c, &["CACHE.SET", "d", "vd", "DEPENDS", "1", "named"]);
    assert_eq!(get(&mut c, "a"), Some(b("VALUEMARK")));
    let ia = must_inspect(&mut c, "a");
    let payload = dump(&mut c, "a");

    // Under a new name, no TTL.
    assert_eq!(restore(&mut c, "a2", "0", &payload, &[]), Value::Okay);
    let i2 = must_inspect(&mut c, "a2");
    assert_same_entry(&ia, &i2);
    assert_eq!(i2.ttl_ms, -1);
    assert_eq!(i2.dependents, Vec::<B>::new());
    assert_eq!(get(&mut c, "a2"), Some(b("VALUEMARK")));
    assert_eq!(direct(&mut c, &["TAG", "t1"]), sl(&["a", "a2"]));
    assert_eq!(direct(&mut c, &["DEPENDENTS", "r"]), sl(&["a", "a2"]));
    verify(&mut c);

    // Under a name another entry depends on, with a TTL.
    assert_eq!(
        restore(&mut c, "named", "50000", &payload, &[]),
        Value::Okay
    );
    let ttl = pttl(&mut c, "named");
    assert!((40_000..=50_000).contains(&ttl), "PTTL named = {ttl}");
    assert_eq!(must_inspect(&mut c, "named").dependents, bl(&["d"]));
    assert_eq!(keys(&mut c, &["KEY", "named"]), sl(&["d", "named"]));
    verify(&mut c);

    // Onto an existing key without REPLACE: refused, nothing changes.
    let dg = digest(&mut c);
    assert_eq!(
        restore_err(&mut c, "d", &payload),
        "BUSYKEY Target key name already exists."
    );
    assert_eq!(digest(&mut c), dg);
    assert_eq!(must_inspect(&mut c, "d").depends, bl(&["named"]));

    // REPLACE over an existing entry with other tags and deps.
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "x",
            "vx",
            "TAGS",
            "1",
            "tx",
            "DEPENDS",
            "1",
            "rx",
            "META",
            "{}",
        ],
    );
    assert_eq!(
        restore(&mut c, "x", "0", &payload, &["REPLACE"]),
        Value::Okay
    );
    let ix = must_inspect(&mut c, "x");
    assert_same_entry(&ia, &ix);
    assert_eq!(ix.tags, bl(&["t1", "t2"]));
    assert_eq!(ix.meta, Some(b(r#"{"k":"v"}"#)));
    assert_eq!(direct(&mut c, &["TAG", "tx"]), Vec::<String>::new());
    assert_eq!(direct(&mut c, &["DEPENDENTS", "rx"]), Vec::<String>::new());
    assert_eq!(
        direct(&mut c, &["TAG", "t1"]),
        sl(&["a", "a2", "named", "x"])
    );
    assert_eq!(tags(&mut c), tag_pairs(&[("t1", 4), ("t2", 4)]));
    verify(&mut c);

    // REPLACE over a plain string.
    ok(&mut c, &["SET", "plain", "p"]);
    assert_eq!(
        restore(&mut c, "plain", "0", &payload, &["REPLACE"]),
        Value::Okay
    );
    assert_eq!(
        direct(&mut c, &["TAG", "t2"]),
        sl(&["a", "a2", "named", "plain", "x"])
    );
    verify(&mut c);

    // Invalidating the tag removes every restored copy.
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "TAG", "t1"])), 6);
    assert_eq!(keys(&mut c, &["ALL"]), Vec::<String>::new());
    assert_eq!(dbsize(&mut c), 0);
    verify(&mut c);
}

/// A server with one entry whose DUMP payload shows the entry encoding uncompressed, and
/// where "VALUEMARK" (the value) sits in it.
fn corruptible_payload(c: &mut Connection) -> (B, usize) {
    assert_eq!(
        crc64(b"123456789"),
        0xe9c6_d914_c4b8_d9ca,
        "CRC-64 self-test"
    );
    // No LZF compression, so the entry's own encoding is visible inside the payload.
    ok(c, &["CONFIG", "SET", "rdbcompression", "no"]);
    ok(
        c,
        &[
            "CACHE.SET",
            "a",
            "VALUEMARK",
            "TAGS",
            "2",
            "t1",
            "t2",
            "DEPENDS",
            "1",
            "r",
            "META",
            r#"{"k":1}"#,
        ],
    );
    ok(c, &["CACHE.SET", "keep", "v", "TAGS", "1", "t1"]);
    let payload = dump(c, "a");
    assert_eq!(
        reseal(payload.clone()),
        payload,
        "the payload's own checksum"
    );
    let p = payload
        .windows(9)
        .position(|w| w == b"VALUEMARK")
        .expect("value inside the payload");
    // Layout: ... [module string length][encoding version][value length]VALUEMARK[tags]...
    assert_eq!(payload[p - 2], 3, "encoding version byte");
    assert_eq!(payload[p - 1], 9, "value length byte");
    (payload, p)
}

fn assert_restore_refused_and_nothing_changed(c: &mut Connection, what: &str, bad: &[u8], d: &str) {
    let e = restore_err(c, "bad", bad);
    assert_eq!(
        cmd(c, &["PING"]).map_err(|e| e.to_string()),
        Ok(Value::SimpleString("PONG".into())),
        "server down after RESTORE ({what})"
    );
    assert_eq!(e, "ERR Bad data format", "{what}");
    assert_eq!(digest(c), d, "{what}");
    assert_eq!(int(&ok(c, &["EXISTS", "bad"])), 0);
    assert_eq!(direct(c, &["TAG", "t1"]), sl(&["a", "keep"]));
    assert_eq!(keys(c, &["ALL"]), sl(&["a", "keep"]));
    assert_eq!(info_field(c, "cache_entries"), 2);
    verify(c);
}

#[test]
fn restore_of_corrupted_or_truncated_payload_fails_cleanly() {
    let s = Server::start();
    let mut c = s.conn();
    let (payload, p) = corruptible_payload(&mut c);
    let d = digest(&mut c);

    // The checksum catches plain corruption and truncation.
    let mut flipped = payload.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let truncated = payload[..payload.len() / 2].to_vec();
    for (what, bad) in [("flipped byte", flipped), ("truncated", truncated)] {
        assert_eq!(
            restore_err(&mut c, "bad", &bad),
            "ERR DUMP payload version or checksum are wrong",
            "{what}"
        );
        assert_eq!(ok(&mut c, &["PING"]), Value::SimpleString("PONG".into()));
        assert_eq!(digest(&mut c), d);
        assert_eq!(direct(&mut c, &["TAG", "t1"]), sl(&["a", "keep"]));
        verify(&mut c);
    }

    // With a valid checksum the bad bytes reach the module's loader, which must refuse them.
    let mut variants: Vec<(&str, B)> = Vec::new();
    let mut v = payload.clone();
    v[p - 2] = 0;
    variants.push(("encoding version 0", v));
    let mut v = payload.clone();
    v[p - 2] = 0x7f;
    variants.push(("newer encoding version", v));
    let mut v = payload.clone();
    v[p - 1] = 0x7e;
    variants.push(("value length past the end", v));
    let t = payload
        .windows(6)
        .position(|w| w == b"\x02t1\x02t2")
        .expect("tags inside the payload");
    let mut v = payload.clone();
    v[t + 2] = b'2';
    v[t + 5] = b'1';
    variants.push(("tags out of order", v));
    // The entry cut short inside, with the module string length adjusted to match.
    let mut v = payload.clone();
    let cut = 6;
    v.drain(p + 3..p + 3 + cut);
    v[p - 3] -= cut as u8;
    variants.push(("entry cut short inside its string", v));
    for (what, bad) in variants {
        assert_restore_refused_and_nothing_changed(&mut c, what, &reseal(bad), &d);
    }

    // The untouched payload still restores.
    assert_eq!(restore(&mut c, "good", "0", &payload, &[]), Value::Okay);
    assert_eq!(direct(&mut c, &["TAG", "t1"]), sl(&["a", "good", "keep"]));
    verify(&mut c);
}

/// A payload (with a valid checksum) whose module value is shorter than its declared length:
/// the server's short read inside the module's `rdb_load` must become an error reply, not a
/// crash (the module has to declare that it handles I/O errors).
#[test]
fn restore_of_payload_cut_inside_the_module_value_replies_an_error() {
    let s = Server::start();
    let mut c = s.conn();
    let (payload, p) = corruptible_payload(&mut c);
    let d = digest(&mut c);
    let mut v = payload.clone();
    v.drain(p..p + 12);
    assert_restore_refused_and_nothing_changed(&mut c, "bytes missing", &reseal(v), &d);
    let mut v = payload[..payload.len() / 2].to_vec();
    v.extend_from_slice(&payload[payload.len() - 10..]);
    assert_restore_refused_and_nothing_changed(&mut c, "first half", &reseal(v), &d);
}

// ---------------------------------------------------------------------------------------------
// 7. Lazy-free DEL / UNLINK

#[test]
fn lazyfree_del_and_unlink_of_entries_with_many_tags_clean_the_index() {
    // 2001 tags per entry: over the default cache.max-tags-per-entry (1024).
    let s = Server::with(
        &["max-tags-per-entry", "4096"],
        &["--lazyfree-lazy-user-del", "yes"],
    );
    let mut c = s.conn();
    let cfg = strings(&ok(&mut c, &["CONFIG", "GET", "lazyfree-lazy-user-del"]));
    assert_eq!(cfg, sl(&["lazyfree-lazy-user-del", "yes"]));
    const N: usize = 200;
    const T: usize = 2000;
    let tag_names: Vec<String> = (0..T).map(|i| format!("t{i}")).collect();
    let mut pipe = redis::pipe();
    for i in 0..N {
        let k = pipe
            .cmd("CACHE.SET")
            .arg(format!("e{i}"))
            .arg(format!("value {i}"))
            .arg("TAGS")
            .arg(T + 1)
            .arg(&tag_names)
            .arg(format!("own{i}"))
            .arg("DEPENDS")
            .arg(2)
            .arg(format!("r{i}"))
            .arg("shared-res");
        k.ignore();
    }
    pipe.query::<()>(&mut c).expect("fill");
    assert_eq!(info_field(&mut c, "cache_entries"), N as i64);
    assert_eq!(info_field(&mut c, "cache_tags"), (T + N) as i64);

    // One at a time, DEL and UNLINK alternating, for the first half.
    for i in 0..N / 2 {
        let verb = if i % 2 == 0 { "DEL" } else { "UNLINK" };
        assert_eq!(
            int(&ok(&mut c, &[verb, &format!("e{i}")])),
            1,
            "{verb} e{i}"
        );
    }
    assert_eq!(ok(&mut c, &["PING"]), Value::SimpleString("PONG".into()));
    let mut rest: Vec<String> = (N / 2..N).map(|i| format!("e{i}")).collect();
    rest.sort();
    assert_eq!(direct(&mut c, &["TAG", "t1999"]), rest);
    assert_eq!(direct(&mut c, &["DEPENDENTS", "shared-res"]), rest);
    assert_eq!(direct(&mut c, &["TAG", "own0"]), Vec::<String>::new());
    assert_eq!(
        direct(&mut c, &["TAG", &format!("own{}", N - 1)]),
        sl(&[&format!("e{}", N - 1)])
    );
    assert_eq!(info_field(&mut c, "cache_entries"), (N / 2) as i64);
    assert_eq!(info_field(&mut c, "cache_tags"), (T + N / 2) as i64);
    verify(&mut c);

    // The rest in two multi-key commands.
    let (first, second) = rest.split_at(rest.len() / 2);
    let mut del = vec!["DEL"];
    del.extend(first.iter().map(|s| s.as_str()));
    assert_eq!(int(&ok(&mut c, &del)), first.len() as i64);
    let mut unlink = vec!["UNLINK"];
    unlink.extend(second.iter().map(|s| s.as_str()));
    assert_eq!(int(&ok(&mut c, &unlink)), second.len() as i64);
    assert_eq!(ok(&mut c, &["PING"]), Value::SimpleString("PONG".into()));
    assert_eq!(direct(&mut c, &["TAG", "t0"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["ALL"]), Vec::<String>::new());
    assert_eq!(tags(&mut c), vec![]);
    assert_eq!(dbsize(&mut c), 0);
    let info = info_cache(&mut c);
    assert_eq!(info["cache_entries"], 0);
    assert_eq!(info["cache_tags"], 0);
    assert_eq!(info["cache_removed_deleted"], N as i64);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 8. Removal counters in INFO cache

#[test]
fn info_cache_counts_deletions_expiries_and_invalidations_apart() {
    let s = Server::start();
    let mut c = s.conn();
    let info = info_cache(&mut c);
    for f in [
        "cache_entries",
        "cache_tags",
        "cache_hits",
        "cache_misses",
        "cache_invalidations",
        "cache_keys_invalidated",
        "cache_removed_expired",
        "cache_removed_evicted",
        "cache_removed_deleted",
    ] {
        assert_eq!(info.get(f), Some(&0), "{f} in {info:?}");
    }

    ok(&mut c, &["CACHE.SET", "d1", "1", "TAGS", "2", "t", "u"]);
    ok(&mut c, &["CACHE.SET", "d2", "2", "TAGS", "1", "t"]);
    assert_eq!(get(&mut c, "d1"), Some(b("1")));
    assert_eq!(get(&mut c, "nope"), None);
    ok(&mut c, &["CACHE.MGET", "d2", "nope", "nope2"]);
    let i = info_cache(&mut c);
    assert_eq!(
        (
            i["cache_entries"],
            i["cache_tags"],
            i["cache_hits"],
            i["cache_misses"]
        ),
        (2, 2, 2, 3)
    );

    // DEL and UNLINK count as deleted.
    assert_eq!(int(&ok(&mut c, &["DEL", "d1"])), 1);
    assert_eq!(info_field(&mut c, "cache_removed_deleted"), 1);
    assert_eq!(int(&ok(&mut c, &["UNLINK", "d2"])), 1);
    let i = info_cache(&mut c);
    assert_eq!(i["cache_removed_deleted"], 2);
    assert_eq!((i["cache_entries"], i["cache_tags"]), (0, 0));

    // Deleting a plain string or a missing key is not a cache removal.
    ok(&mut c, &["SET", "plain", "p"]);
    assert_eq!(int(&ok(&mut c, &["DEL", "plain", "missing"])), 1);
    assert_eq!(info_field(&mut c, "cache_removed_deleted"), 2);

    // Expiry counts as expired.
    ok(
        &mut c,
        &["CACHE.SET", "e", "v", "PX", "30", "TAGS", "1", "t"],
    );
    wait_until("e to expire", || int(&ok(&mut c, &["EXISTS", "e"])) == 0);
    let i = info_cache(&mut c);
    assert_eq!(
        (
            i["cache_removed_expired"],
            i["cache_removed_deleted"],
            i["cache_removed_evicted"]
        ),
        (1, 2, 0)
    );
    assert_eq!((i["cache_entries"], i["cache_tags"]), (0, 0));

    // An invalidation counts as one, with its keys, and not as deletions.
    ok(&mut c, &["CACHE.SET", "i1", "1", "TAGS", "1", "ti"]);
    ok(&mut c, &["CACHE.SET", "i2", "2", "TAGS", "1", "ti"]);
    ok(&mut c, &["CACHE.SET", "i3", "3", "DEPENDS", "1", "i1"]);
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "TAG", "ti"])), 3);
    let i = info_cache(&mut c);
    assert_eq!(
        (
            i["cache_invalidations"],
            i["cache_keys_invalidated"],
            i["cache_removed_deleted"],
            i["cache_removed_expired"],
            i["cache_removed_evicted"],
            i["cache_entries"],
            i["cache_tags"]
        ),
        (1, 3, 2, 1, 0, 0, 0)
    );
    // An invalidation that finds nothing still counts as an invalidation.
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "TAG", "ti"])), 0);
    let i = info_cache(&mut c);
    assert_eq!(
        (i["cache_invalidations"], i["cache_keys_invalidated"]),
        (2, 3)
    );
    assert_eq!(i["cache_removed_deleted"], 2);
    verify(&mut c);
}

/// RENAME/MOVE/overwrites unlink an entry without a `del`: a later `del` of a plain key under
/// the old name must not be counted as a cache deletion.
#[test]
fn info_cache_does_not_count_plain_key_deletes_after_an_entry_left_by_rename() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["CACHE.SET", "r", "v", "TAGS", "1", "t"]);
    assert_eq!(ok(&mut c, &["RENAME", "r", "r2"]), Value::Okay);
    assert_eq!(info_field(&mut c, "cache_removed_deleted"), 0);
    ok(&mut c, &["SET", "r", "plain"]);
    assert_eq!(int(&ok(&mut c, &["DEL", "r"])), 1);
    assert_eq!(
        info_field(&mut c, "cache_removed_deleted"),
        0,
        "DEL of a plain string counted as a cache deletion"
    );
    assert_eq!(int(&ok(&mut c, &["DEL", "r2"])), 1);
    assert_eq!(info_field(&mut c, "cache_removed_deleted"), 1);
    verify(&mut c);
}

#[test]
fn info_cache_counts_evictions_under_maxmemory() {
    let s = Server::with(
        &[],
        &["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"],
    );
    let mut c = s.conn();
    const N: usize = 4000;
    let value = "x".repeat(1000);
    let mut pipe = redis::pipe();
    for i in 0..N {
        pipe.cmd("CACHE.SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .arg("TAGS")
            .arg(2)
            .arg("grp")
            .arg(format!("u{i}"))
            .ignore();
    }
    pipe.query::<()>(&mut c).expect("fill");
    assert_eq!(ok(&mut c, &["PING"]), Value::SimpleString("PONG".into()));
    // Every command evicts while memory is over the limit: lift it to read a stable state.
    assert_eq!(
        ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]),
        Value::Okay
    );
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut c).expect("INFO");
    let evicted_keys: i64 = stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("evicted_keys:"))
        .expect("evicted_keys")
        .parse()
        .expect("evicted_keys value");
    let i = info_cache(&mut c);
    let left = dbsize(&mut c);
    assert_eq!(evicted_keys, N as i64 - left);
    assert!(left > 0 && (left as usize) < N, "{left} keys left of {N}");
    assert_eq!(i["cache_entries"], left);
    assert_eq!(i["cache_removed_evicted"], N as i64 - left, "{i:?}");
    assert_eq!(i["cache_removed_deleted"], 0);
    assert_eq!(i["cache_removed_expired"], 0);
    assert_eq!(i["cache_invalidations"], 0);
    assert_eq!(i["cache_tags"], left + 1);
    let grp = direct(&mut c, &["TAG", "grp"]);
    assert_eq!(grp.len() as i64, left);
    let all = keys(&mut c, &["ALL"]);
    assert_eq!(grp, all);
    // Every listed key is really there, with its own tag.
    let first = &grp[0];
    let idx = &first[1..];
    assert_eq!(
        direct(&mut c, &["TAG", &format!("u{idx}")]),
        vec![first.clone()]
    );
    // Some evicted key is listed nowhere.
    let present: BTreeSet<&String> = grp.iter().collect();
    let gone = (0..N)
        .map(|i| format!("k{i}"))
        .find(|k| !present.contains(k))
        .expect("an evicted key");
    assert_eq!(inspect(&mut c, gone.as_bytes()), None);
    assert_eq!(
        direct(&mut c, &["TAG", &format!("u{}", &gone[1..])]),
        Vec::<String>::new()
    );
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 9. Persistence

/// Everything the index says about one database, plus each entry's INSPECT.
#[derive(Debug, Clone)]
struct DbSnap {
    entries: BTreeMap<B, Insp>,
    tags: Vec<(B, i64)>,
    by_tag: BTreeMap<B, Vec<B>>,
    by_resource: BTreeMap<B, Vec<B>>,
    dbsize: i64,
}

fn snapshot(c: &mut Connection) -> DbSnap {
    let all = bkeys(c, &[b"ALL"]);
    let mut entries = BTreeMap::new();
    let mut resources = BTreeSet::new();
    for k in &all {
        let i = inspect(c, k).expect("listed entry");
        resources.extend(i.depends.iter().cloned());
        entries.insert(k.clone(), i);
    }
    let tags = tags(c);
    let by_tag = tags
        .iter()
        .map(|(t, _)| (t.clone(), bkeys(c, &[b"DEPTH", b"0", b"TAG", t])))
        .collect();
    let by_resource = resources
        .iter()
        .map(|r| (r.clone(), bkeys(c, &[b"DEPTH", b"0", b"DEPENDENTS", r])))
        .collect();
    DbSnap {
        entries,
        tags,
        by_tag,
        by_resource,
        dbsize: dbsize(c),
    }
}

/// Compares snapshots; `counters(key)` says whether created_ms/hits must be kept for that key.
fn assert_same_snapshot(before: &DbSnap, after: &DbSnap, counters: &dyn Fn(&[u8]) -> bool) {
    assert_eq!(
        before.entries.keys().collect::<Vec<_>>(),
        after.entries.keys().collect::<Vec<_>>(),
        "entry keys"
    );
    for (k, x) in &before.entries {
        let y = &after.entries[k];
        let who = String::from_utf8_lossy(k);
        assert_eq!(x.tags, y.tags, "tags of {who}");
        assert_eq!(x.depends, y.depends, "depends of {who}");
        assert_eq!(x.dependents, y.dependents, "dependents of {who}");
        assert_eq!(x.meta, y.meta, "meta of {who}");
        assert_eq!(x.size, y.size, "size of {who}");
        if x.ttl_ms < 0 {
            assert_eq!(y.ttl_ms, -1, "ttl of {who}");
        } else {
            assert!(
                y.ttl_ms <= x.ttl_ms && y.ttl_ms > x.ttl_ms - 30_000,
                "ttl of {who}: {} then {}",
                x.ttl_ms,
                y.ttl_ms
            );
        }
        if counters(k) {
            assert_eq!(x.created_ms, y.created_ms, "created_ms of {who}");
            assert_eq!(x.hits, y.hits, "hits of {who}");
        }
    }
    assert_eq!(before.tags, after.tags, "CACHE.TAGS");
    assert_eq!(before.by_tag, after.by_tag, "CACHE.KEYS TAG");
    assert_eq!(
        before.by_resource, after.by_resource,
        "CACHE.KEYS DEPENDENTS"
    );
    assert_eq!(before.dbsize, after.dbsize, "DBSIZE");
}

const BIN_KEY: &[u8] = b"bin\x00key\r\n";

/// Entries with tags, dependencies, metadata, TTLs and binary names in db 0 and db 1.
fn populate(c0: &mut Connection, c1: &mut Connection) {
    ok(
        c0,
        &[
            "CACHE.SET",
            "user:1",
            "alice",
            "EX",
            "1000",
            "TAGS",
            "2",
            "users",
            "user:1",
            "META",
            r#"{"owner":"svc","n":[1,2,{"a":null}]}"#,
        ],
    );
    ok(
        c0,
        &[
            "CACHE.SET",
            "user:2",
            "bob",
            "PX",
            "900000",
            "TAGS",
            "1",
            "users",
            "DEPENDS",
            "1",
            "db:users",
        ],
    );
    ok(
        c0,
        &[
            "CACHE.SET",
            "page:home",
            "<html>",
            "TAGS",
            "1",
            "pages",
            "DEPENDS",
            "2",
            "user:1",
            "user:2",
            "META",
            r#"{"r":"x y"}"#,
        ],
    );
    ok(c0, &["CACHE.SET", "bare", ""]);
    let value: B = (0..=255u8).collect();
    ok(
        c0,
        &[
            &b"CACHE.SET"[..],
            BIN_KEY,
            &value,
            b"TAGS",
            b"3",
            b"tag with space",
            b"t\x00\xff",
            b"users",
            b"DEPENDS",
            b"2",
            b"r\r\n",
            b"user:1",
            b"META",
            "{\"\u{e9}\":\"\\n\"}".as_bytes(),
        ],
    );
    ok(c0, &["SET", "plain", "string value"]);
    ok(c0, &["HSET", "hash", "f", "v"]);
    for _ in 0..2 {
        assert_eq!(get(c0, "user:1"), Some(b("alice")));
    }
    ok(
        c1,
        &[
            "CACHE.SET",
            "user:1",
            "db1",
            "TAGS",
            "2",
            "users",
            "db1only",
            "DEPENDS",
            "1",
            "page:home",
            "PX",
            "700000",
        ],
    );
    ok(c1, &["CACHE.SET", "page:home", "p1", "TAGS", "1", "pages"]);
}

/// More writes of every kind (run after the AOF rewrite in the AOF tests).
fn more_writes(c0: &mut Connection, c1: &mut Connection) {
    assert_eq!(int(&ok(c0, &["CACHE.TAG", "user:2", "late", "users"])), 1);
    assert_eq!(int(&ok(c0, &["CACHE.DEPEND", "bare", "user:2"])), 1);
    ok(
        c0,
        &[
            "CACHE.SET",
            "after:1",
            "v",
            "EX",
            "500",
            "TAGS",
            "2",
            "users",
            "after",
            "META",
            r#"{"late":true}"#,
        ],
    );
    ok(c0, &["CACHE.SET", "gone", "v", "TAGS", "1", "doomed"]);
    ok(c0, &["CACHE.SET", "gone2", "v", "DEPENDS", "1", "gone"]);
    assert_eq!(int(&ok(c0, &["CACHE.INVALIDATE", "TAG", "doomed"])), 2);
    ok(c0, &["CACHE.SET", "deleted", "v", "TAGS", "1", "users"]);
    assert_eq!(int(&ok(c0, &["DEL", "deleted"])), 1);
    ok(c0, &["CACHE.SET", "old-name", "v", "TAGS", "1", "renamed"]);
    assert_eq!(ok(c0, &["RENAME", "old-name", "new-name"]), Value::Okay);
    ok(
        c1,
        &[
            "CACHE.SET",
            "after:db1",
            "v",
            "TAGS",
            "1",
            "db1only",
            "PX",
            "600000",
        ],
    );
    assert_eq!(int(&cross_db(c1, 1, &["MOVE", "after:db1", "0"])), 1);
    assert_eq!(
        int(&cross_db(
            c0,
            0,
            &["COPY", "after:db1", "after:db1", "DB", "1"]
        )),
        1
    );
}

struct Snap {
    digest: String,
    dbs: Vec<DbSnap>,
    entries: i64,
    tags: i64,
}

fn snap_all(c0: &mut Connection, c1: &mut Connection) -> Snap {
    verify(c0);
    verify(c1);
    let i = info_cache(c0);
    Snap {
        digest: digest(c0),
        dbs: vec![snapshot(c0), snapshot(c1)],
        entries: i["cache_entries"],
        tags: i["cache_tags"],
    }
}

fn assert_same_all(before: &Snap, after: &Snap, counters: &dyn Fn(&[u8]) -> bool) {
    assert_eq!(before.digest, after.digest, "DEBUG DIGEST");
    for (x, y) in before.dbs.iter().zip(&after.dbs) {
        assert_same_snapshot(x, y, counters);
    }
    assert_eq!(before.entries, after.entries, "cache_entries");
    assert_eq!(before.tags, after.tags, "cache_tags");
}

/// Sanity on what populate + more_writes produced, so the comparisons compare something.
fn check_expected_content(s: &Snap) {
    let db0 = &s.dbs[0];
    let names: Vec<&[u8]> = db0.entries.keys().map(|k| k.as_slice()).collect();
    assert_eq!(
        names,
        vec![
            &b"after:1"[..],
            b"after:db1",
            b"bare",
            BIN_KEY,
            b"new-name",
            b"page:home",
            b"user:1",
            b"user:2"
        ]
    );
    assert_eq!(
        db0.by_tag[&b("users")],
        vec![b("after:1"), BIN_KEY.to_vec(), b("user:1"), b("user:2")]
    );
    assert_eq!(
        db0.entries[&b("user:1")].dependents,
        vec![BIN_KEY.to_vec(), b("page:home")]
    );
    assert_eq!(db0.entries[&b("user:1")].hits, 2);
    assert_eq!(
        db0.entries[&b("user:2")].dependents,
        vec![b("bare"), b("page:home")]
    );
    assert_eq!(db0.entries[&b("user:2")].tags, bl(&["late", "users"]));
    assert!(db0.entries[&b("user:1")].ttl_ms > 900_000);
    assert_eq!(db0.entries[&b("bare")].ttl_ms, -1);
    assert_eq!(db0.dbsize, 10);
    let db1 = &s.dbs[1];
    assert_eq!(
        db1.entries.keys().cloned().collect::<Vec<_>>(),
        bl(&["after:db1", "page:home", "user:1"])
    );
    assert_eq!(db1.entries[&b("page:home")].dependents, bl(&["user:1"]));
    assert_eq!(db1.by_tag[&b("db1only")], bl(&["after:db1", "user:1"]));
    assert_eq!(s.entries, 11);
}

#[test]
fn persistence_debug_reload_keeps_every_entry_and_index() {
    let s = Server::start();
    let mut c0 = conn_db(&s, 0);
    let mut c1 = conn_db(&s, 1);
    populate(&mut c0, &mut c1);
    more_writes(&mut c0, &mut c1);
    let before = snap_all(&mut c0, &mut c1);
    check_expected_content(&before);

    assert_eq!(ok(&mut c0, &["DEBUG", "RELOAD"]), Value::Okay);

    let after = snap_all(&mut c0, &mut c1);
    assert_same_all(&before, &after, &|_| true);
    // The reloaded index works: a cascade over the reloaded graph.
    assert_eq!(
        keys(&mut c0, &["KEY", "user:2"]),
        sl(&["bare", "page:home", "user:2"])
    );
    assert_eq!(int(&ok(&mut c0, &["CACHE.INVALIDATE", "TAG", "users"])), 6);
    assert_eq!(keys(&mut c0, &["ALL"]), sl(&["after:db1", "new-name"]));
    verify(&mut c0);
    verify(&mut c1);
}

#[test]
fn persistence_save_and_restart_keeps_every_entry_and_index() {
    let mut s = Server::start();
    let before = {
        let mut c0 = conn_db(&s, 0);
        let mut c1 = conn_db(&s, 1);
        populate(&mut c0, &mut c1);
        more_writes(&mut c0, &mut c1);
        let snap = snap_all(&mut c0, &mut c1);
        check_expected_content(&snap);
        snap
    };

    s.restart("SAVE");
    assert!(s.dir.join("dump.rdb").exists(), "no dump.rdb written");

    let mut c0 = conn_db(&s, 0);
    let mut c1 = conn_db(&s, 1);
    assert_eq!(dbsize(&mut c0), 10, "the RDB was not loaded");
    let after = snap_all(&mut c0, &mut c1);
    assert_same_all(&before, &after, &|_| true);
    assert_eq!(
        int(&ok(&mut c1, &["CACHE.INVALIDATE", "KEY", "page:home"])),
        2
    );
    verify(&mut c0);
    verify(&mut c1);
}

fn wait_aof_rewrite_done(c: &mut Connection) {
    wait_until("the AOF rewrite", || {
        let p = info_persistence(c);
        p.get("aof_rewrite_in_progress").map(String::as_str) == Some("0")
            && p.get("aof_rewrite_scheduled").map(String::as_str) == Some("0")
    });
}

fn aof_base_files(s: &Server) -> Vec<String> {
    let dir = s.dir.join("appendonlydir");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".base."))
        .collect();
    v.sort();
    v
}

fn aof_round_trip(preamble: &str) {
    let mut s = Server::with(
        &[],
        &["--appendonly", "yes", "--aof-use-rdb-preamble", preamble],
    );
    let (before, pre_rewrite) = {
        let mut c0 = conn_db(&s, 0);
        let mut c1 = conn_db(&s, 1);
        let p = info_persistence(&mut c0);
        assert_eq!(p["aof_enabled"], "1");
        wait_aof_rewrite_done(&mut c0);
        populate(&mut c0, &mut c1);
        let pre: BTreeSet<B> = bkeys(&mut c0, &[b"ALL"]).into_iter().collect();
        let r = ok(&mut c0, &["BGREWRITEAOF"]);
        assert!(matches!(r, Value::SimpleString(_) | Value::Okay), "{r:?}");
        wait_aof_rewrite_done(&mut c0);
        let p = info_persistence(&mut c0);
        assert_eq!(p["aof_last_bgrewrite_status"], "ok");
        more_writes(&mut c0, &mut c1);
        let snap = snap_all(&mut c0, &mut c1);
        check_expected_content(&snap);
        (snap, pre)
    };
    let base = aof_base_files(&s);
    let ext = if preamble == "yes" { ".rdb" } else { ".aof" };
    assert!(
        base.len() == 1 && base[0].ends_with(ext),
        "AOF base files {base:?} (preamble {preamble})"
    );

    s.restart("NOSAVE");
    assert!(!s.dir.join("dump.rdb").exists(), "an RDB was written");

    let mut c0 = conn_db(&s, 0);
    let mut c1 = conn_db(&s, 1);
    assert_eq!(info_persistence(&mut c0)["aof_enabled"], "1");
    assert_eq!(dbsize(&mut c0), 10, "the AOF was not loaded");
    let after = snap_all(&mut c0, &mut c1);
    // Counters (created_ms, hits) live in the RDB preamble only; entries replayed from
    // commands are created anew (the module's documented choice).
    let with_counters = preamble == "yes";
    let pre = pre_rewrite.clone();
    assert_same_all(&before, &after, &move |k: &[u8]| {
        with_counters && pre.contains(k)
    });
    if !with_counters {
        for (k, i) in &after.dbs[0].entries {
            assert_eq!(i.hits, 0, "hits of {}", String::from_utf8_lossy(k));
        }
    }
    assert_eq!(int(&ok(&mut c0, &["CACHE.INVALIDATE", "TAG", "users"])), 6);
    verify(&mut c0);
    verify(&mut c1);
}

#[test]
fn persistence_aof_with_rdb_preamble_keeps_every_entry_and_index() {
    aof_round_trip("yes");
}

#[test]
fn persistence_aof_without_rdb_preamble_keeps_every_entry_and_index() {
    aof_round_trip("no");
}

// ---------------------------------------------------------------------------------------------
// 10. DEBUG DIGEST-VALUE

fn digest_value(c: &mut Connection, key: &str) -> String {
    let v = ok(c, &["DEBUG", "DIGEST-VALUE", key]);
    let l = strings(&v);
    assert_eq!(l.len(), 1, "{v:?}");
    l[0].clone()
}

#[test]
fn debug_digest_value_covers_value_tags_and_dependencies() {
    let s = Server::start();
    let mut c = s.conn();
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "a",
            "v",
            "TAGS",
            "2",
            "x",
            "y",
            "DEPENDS",
            "1",
            "r",
        ],
    );
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "b",
            "v",
            "TAGS",
            "3",
            "y",
            "x",
            "y",
            "DEPENDS",
            "1",
            "r",
        ],
    );
    let (da, db) = (digest_value(&mut c, "a"), digest_value(&mut c, "b"));
    assert_eq!(da, db, "same value/tags/deps under different keys");
    assert_ne!(da, "0".repeat(40));

    // Adding a tag changes it; adding the same tag to the other makes them equal again.
    assert_eq!(int(&ok(&mut c, &["CACHE.TAG", "a", "z"])), 1);
    let da2 = digest_value(&mut c, "a");
    assert_ne!(da2, da);
    assert_eq!(digest_value(&mut c, "b"), db);
    assert_eq!(int(&ok(&mut c, &["CACHE.TAG", "b", "z"])), 1);
    assert_eq!(digest_value(&mut c, "b"), da2);
    // Re-adding an existing tag changes nothing.
    assert_eq!(int(&ok(&mut c, &["CACHE.TAG", "a", "z"])), 0);
    assert_eq!(digest_value(&mut c, "a"), da2);

    // A dependency change changes it.
    assert_eq!(int(&ok(&mut c, &["CACHE.DEPEND", "a", "r2"])), 1);
    let da3 = digest_value(&mut c, "a");
    assert_ne!(da3, da2);
    assert_eq!(int(&ok(&mut c, &["CACHE.DEPEND", "b", "r2"])), 1);
    assert_eq!(digest_value(&mut c, "b"), da3);

    // The value matters, and so do the boundaries between names.
    ok(&mut c, &["CACHE.SET", "c", "w", "TAGS", "2", "x", "y"]);
    ok(&mut c, &["CACHE.SET", "d", "v", "TAGS", "2", "x", "y"]);
    assert_ne!(digest_value(&mut c, "c"), digest_value(&mut c, "d"));
    ok(&mut c, &["CACHE.SET", "g", "v", "TAGS", "2", "ab", "c"]);
    ok(&mut c, &["CACHE.SET", "h", "v", "TAGS", "2", "a", "bc"]);
    assert_ne!(digest_value(&mut c, "g"), digest_value(&mut c, "h"));
    // Removing a tag (by replacing the entry) changes it back.
    ok(&mut c, &["CACHE.SET", "c", "v", "TAGS", "1", "x"]);
    ok(&mut c, &["CACHE.SET", "d", "v", "TAGS", "2", "x", "y"]);
    assert_ne!(digest_value(&mut c, "c"), digest_value(&mut c, "d"));

    // Whole-dataset digest follows tag changes too.
    let before = digest(&mut c);
    assert_eq!(int(&ok(&mut c, &["CACHE.TAG", "g", "n2"])), 1);
    assert_ne!(digest(&mut c), before);
    verify(&mut c);
}

/// The digest must say which list a name is in: a name as a tag, as a dependency or as the
/// value are different entries (a replica that swapped them must not digest equal).
#[test]
fn debug_digest_value_tells_value_tags_and_dependencies_apart() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["CACHE.SET", "e", "v", "TAGS", "1", "n"]);
    ok(&mut c, &["CACHE.SET", "f", "v", "DEPENDS", "1", "n"]);
    ok(&mut c, &["CACHE.SET", "g", "n", "TAGS", "1", "v"]);
    let (de, df, dg) = (
        digest_value(&mut c, "e"),
        digest_value(&mut c, "f"),
        digest_value(&mut c, "g"),
    );
    verify(&mut c);
    assert_ne!(de, df, "TAGS 1 n vs DEPENDS 1 n");
    assert_ne!(de, dg, "value v TAGS 1 n vs value n TAGS 1 v");
}

/// MOVE and COPY ... DB inside MULTI/EXEC: the entries are indexed in their destination (Valkey
/// 9.1 reports the transaction's database to the callback; README, Known server issues).
#[test]
fn move_and_copy_to_another_database_inside_multi_keep_every_index_exact() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["CACHE.SET", "m", "vm", "TAGS", "1", "t"]);
    ok(&mut c, &["CACHE.SET", "k", "vk", "TAGS", "1", "t"]);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("MOVE")
        .arg("m")
        .arg(3)
        .cmd("COPY")
        .arg("k")
        .arg("k2")
        .arg("DB")
        .arg(4);
    let replies: Vec<i64> = pipe.query(&mut c).expect("MULTI");
    assert_eq!(replies, vec![1, 1]);
    assert_eq!(direct(&mut c, &["ALL"]), sl(&["k"]));
    verify(&mut c);
    for (db, key, value) in [(3, "m", "vm"), (4, "k2", "vk")] {
        let mut d = conn_db(&s, db);
        assert_eq!(direct(&mut d, &["TAG", "t"]), sl(&[key]), "db {db}");
        assert_eq!(get(&mut d, key), Some(b(value)));
        verify(&mut d);
    }
}
