//! Replication: a replica attached before or after the writes ends with the same entries and
//! indexes as its master; invalidations replicate as their effects; reads and rejected writes
//! are never propagated; the replica's own configs never change what the master decided.

mod common;
use common::*;

use std::time::{Duration, Instant};

/// Everything the cache exposes about a database that master and replica must agree on:
/// entry keys, tag sizes, keys per tag, and per entry its tags, dependencies, dependents,
/// metadata and absolute deadline.
#[derive(Debug, PartialEq)]
struct DbView {
    db: u32,
    all: Vec<String>,
    tags: Vec<(String, i64)>,
    per_tag: Vec<(String, Vec<String>, Vec<String>)>,
    per_key: Vec<KeyView>,
}

/// One entry: key, tags, dependencies, dependents, metadata, absolute deadline (PEXPIRETIME).
#[derive(Debug, PartialEq)]
struct KeyView {
    key: String,
    tags: Vec<String>,
    deps: Vec<String>,
    dependents: Vec<String>,
    meta: Value,
    deadline: i64,
}

fn tag_sizes(c: &mut Connection) -> Vec<(String, i64)> {
    list(&ok(c, &["CACHE.TAGS"]))
        .iter()
        .map(|p| {
            let p = list(p);
            (
                String::from_utf8_lossy(&bytes(&p[0]).unwrap_or_default()).into_owned(),
                int(&p[1]),
            )
        })
        .collect()
}

fn view(c: &mut Connection, db: u32) -> DbView {
    select(c, db);
    let all = keys(c, &["ALL"]);
    let tags = tag_sizes(c);
    let per_tag = tags
        .iter()
        .map(|(t, _)| {
            // Membership (no cascade) and the cascade at an explicit depth: the configured
            // default depth may differ between master and replica.
            let own = keys(c, &["DEPTH", "0", "TAG", t]);
            let reach = keys(c, &["DEPTH", "16", "TAG", t]);
            (t.clone(), own, reach)
        })
        .collect();
    let per_key = all
        .iter()
        .map(|k| {
            let ins = ok(c, &["CACHE.INSPECT", k]);
            let at = int(&ok(c, &["PEXPIRETIME", k]));
            KeyView {
                key: k.clone(),
                tags: strings(&field(&ins, "tags")),
                deps: strings(&field(&ins, "depends")),
                dependents: strings(&field(&ins, "dependents")),
                meta: field(&ins, "meta"),
                deadline: at,
            }
        })
        .collect();
    select(c, 0);
    DbView {
        db,
        all,
        tags,
        per_tag,
        per_key,
    }
}

/// Master and replica agree on the digest and on every database's view; both indexes verify.
fn assert_same(m: &mut Connection, r: &mut Connection, dbs: &[u32]) -> Vec<DbView> {
    assert_eq!(digest(m), digest(r), "DEBUG DIGEST differs");
    let mut out = Vec::new();
    for &db in dbs {
        let mv = view(m, db);
        let rv = view(r, db);
        assert_eq!(mv, rv, "db {db}: master and replica differ");
        out.push(mv);
    }
    verify(m);
    verify(r);
    out
}

/// Polls (bounded) until `key` is gone from the master; EXISTS expires it lazily if the active
/// cycle has not, and the expiry propagates a DEL.
fn wait_gone(c: &mut Connection, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while int(&ok(c, &["EXISTS", key])) != 0 {
        assert!(Instant::now() < deadline, "{key} never expired");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn replica_attached_before_writes_converges() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    // The replica's own cascade depth must not matter: invalidations arrive as their effects.
    ok(&mut rc, &["CONFIG", "SET", "cache.max-cascade-depth", "0"]);

    let set = |c: &mut Connection, parts: &[&str]| {
        let mut v = vec!["CACHE.SET"];
        v.extend_from_slice(parts);
        assert_eq!(ok(c, &v), Value::Okay, "{v:?}");
    };
    set(
        &mut mc,
        &[
            "u:1",
            "a",
            "TAGS",
            "2",
            "users",
            "t1",
            "DEPENDS",
            "1",
            "row:1",
            "META",
            "{\"v\":1}",
        ],
    );
    set(&mut mc, &["u:2", "b", "EX", "1000", "TAGS", "1", "users"]);
    set(
        &mut mc,
        &["u:3", "c", "DEPENDS", "1", "u:1", "TAGS", "1", "derived"],
    );
    set(&mut mc, &["u:4", "d", "DEPENDS", "1", "u:3"]);
    set(
        &mut mc,
        &["u:5", "e", "DEPENDS", "1", "u:4", "PX", "900000"],
    );
    set(&mut mc, &["u:2", "b2", "KEEPTTL", "TAGS", "1", "users2"]);
    assert_eq!(int(&ok(&mut mc, &["CACHE.TAG", "u:1", "extra", "t1"])), 1);
    assert_eq!(int(&ok(&mut mc, &["CACHE.DEPEND", "u:2", "row:2"])), 1);
    for k in ["p:1", "p:2", "p:3"] {
        set(&mut mc, &[k, "page", "TAGS", "1", "pages"]);
    }
    for k in ["n:1", "n:2", "n:3", "n:10"] {
        set(&mut mc, &[k, "n", "TAGS", "1", "ns"]);
    }
    for k in ["x:1", "x:2", "xy"] {
        set(&mut mc, &[k, "x", "TAGS", "1", "xs"]);
    }
    for k in ["d:1", "d:2"] {
        set(&mut mc, &[k, "d", "DEPENDS", "1", "row:9"]);
    }
    set(&mut mc, &["d:3", "d", "DEPENDS", "1", "d:1"]);
    ok(&mut mc, &["SET", "plain", "string"]);
    sync(&mut mc, &mut rc);
    let before = assert_same(&mut mc, &mut rc, &[0]);
    assert_eq!(
        before[0]
            .per_key
            .iter()
            .find(|k| k.key == "u:2")
            .unwrap()
            .deps,
        s(&["row:2"])
    );
    // Expires before the next comparison (which waits until the master removed it).
    set(&mut mc, &["e:1", "soon", "PX", "30", "TAGS", "1", "users"]);

    let inv = |c: &mut Connection, parts: &[&str]| {
        let mut v = vec!["CACHE.INVALIDATE"];
        v.extend_from_slice(parts);
        int(&ok(c, &v))
    };
    assert_eq!(inv(&mut mc, &["TAG", "pages"]), 3);
    assert_eq!(inv(&mut mc, &["PATTERN", "n:?"]), 3);
    assert_eq!(inv(&mut mc, &["NAMESPACE", "x"]), 2);
    assert_eq!(inv(&mut mc, &["DEPENDENTS", "row:9"]), 3);
    // u:1 takes u:3, u:4 and u:5 along (depth 16 on the master, 0 on the replica).
    assert_eq!(inv(&mut mc, &["KEY", "u:1"]), 4);
    assert_eq!(int(&ok(&mut mc, &["WAIT", "1", "1000"])), 1);
    assert_eq!(int(&ok(&mut mc, &["DEL", "u:2"])), 1);
    wait_gone(&mut mc, "e:1");

    select(&mut mc, 1);
    set(&mut mc, &["a", "1", "TAGS", "2", "t1", "t2"]);
    set(&mut mc, &["b", "2", "TAGS", "1", "t2", "DEPENDS", "1", "a"]);
    set(&mut mc, &["c", "3", "TAGS", "1", "t3", "EX", "500"]);
    // A deadline in the past removes the entry there: the replica gets the DEL.
    set(&mut mc, &["gone", "4", "TAGS", "1", "t3"]);
    set(&mut mc, &["gone", "5", "PXAT", "1"]);
    assert_eq!(inv(&mut mc, &["DEPTH", "0", "KEY", "a"]), 1);
    select(&mut mc, 0);

    sync(&mut mc, &mut rc);
    let after = assert_same(&mut mc, &mut rc, &[0, 1]);
    assert_eq!(after[0].all, s(&["n:10", "xy"]));
    assert_eq!(
        after[0].tags,
        vec![("ns".to_string(), 1), ("xs".to_string(), 1)]
    );
    assert_eq!(after[1].all, s(&["b", "c"]));
    assert_eq!(
        after[1].tags,
        vec![("t2".to_string(), 1), ("t3".to_string(), 1)]
    );
    assert!(after[1].per_key[1].deadline > 0, "c keeps its deadline");
    // The replica answers reads with the replicated values.
    select(&mut rc, 1);
    assert_eq!(
        bytes(&ok(&mut rc, &["CACHE.GET", "b"])),
        Some(b"2".to_vec())
    );
    assert_eq!(bytes(&ok(&mut rc, &["CACHE.GET", "a"])), None);
    select(&mut rc, 0);

    assert_eq!(inv(&mut mc, &["ALL"]), 2);
    assert_eq!(int(&ok(&mut mc, &["WAIT", "1", "1000"])), 1);
    sync(&mut mc, &mut rc);
    let end = assert_same(&mut mc, &mut rc, &[0, 1]);
    assert!(end[0].all.is_empty());
    assert_eq!(end[1].all, s(&["b", "c"]));
    verify(&mut mc);
    verify(&mut rc);
}

#[test]
fn replica_attached_after_writes_full_sync() {
    let m = master();
    let mut mc = m.conn();
    for i in 0..40 {
        let k = format!("k:{i}");
        let tag = format!("t{}", i % 4);
        let mut parts = vec![
            "CACHE.SET".to_string(),
            k,
            format!("v{i}"),
            "TAGS".into(),
            "2".into(),
            tag,
            "all".into(),
        ];
        if i > 0 {
            parts.extend(["DEPENDS".into(), "1".into(), format!("k:{}", i - 1)]);
        }
        if i % 5 == 0 {
            parts.extend(["EX".into(), "1000".into()]);
        }
        if i % 7 == 0 {
            parts.extend(["META".into(), format!("{{\"i\":{i}}}")]);
        }
        assert_eq!(ok(&mut mc, &parts), Value::Okay);
    }
    select(&mut mc, 2);
    for k in ["a", "b"] {
        ok(&mut mc, &["CACHE.SET", k, "x", "TAGS", "1", "db2"]);
    }
    select(&mut mc, 0);

    // A replica that holds data of its own before it attaches: the full sync replaces it all.
    let r = Server::start();
    let mut rc = r.conn();
    ok(&mut rc, &["CACHE.SET", "k:1", "mine", "TAGS", "1", "mine"]);
    ok(&mut rc, &["CACHE.SET", "own", "mine", "TAGS", "1", "mine"]);
    select(&mut rc, 3);
    ok(&mut rc, &["CACHE.SET", "own3", "mine", "TAGS", "1", "mine"]);
    select(&mut rc, 0);
    ok(
        &mut rc,
        &["REPLICAOF", "127.0.0.1", m.port.to_string().as_str()],
    );
    wait_link(&mut rc);
    sync(&mut mc, &mut rc);
    let v = assert_same(&mut mc, &mut rc, &[0, 2, 3]);
    assert_eq!(v[0].all.len(), 40);
    assert!(v[0].tags.iter().all(|(t, _)| t != "mine"));
    assert_eq!(
        v[0].per_tag.iter().find(|t| t.0 == "all").unwrap().1.len(),
        40
    );
    assert_eq!(v[1].all, s(&["a", "b"]));
    assert!(v[2].all.is_empty(), "the replica's own db 3 is gone");

    // Then the stream: the chain cascades from k:30 onwards.
    assert_eq!(
        int(&ok(
            &mut mc,
            &["CACHE.INVALIDATE", "DEPTH", "3", "KEY", "k:30"]
        )),
        4
    );
    // t0 seeds k:0, k:4, .. k:28 and k:36; every k:0..k:29 is within 3 hops of a seed and k:36
    // takes k:37..k:39; k:34 and k:35 hang off k:33, which is gone.
    let mut expected: Vec<String> = (0..30).chain(36..40).map(|i| format!("k:{i}")).collect();
    expected.sort();
    assert_eq!(keys(&mut mc, &["TAG", "t0"]), expected);
    assert_eq!(int(&ok(&mut mc, &["CACHE.INVALIDATE", "TAG", "t0"])), 34);
    ok(&mut mc, &["CACHE.SET", "new", "n", "TAGS", "1", "fresh"]);
    sync(&mut mc, &mut rc);
    let v = assert_same(&mut mc, &mut rc, &[0, 2, 3]);
    assert_eq!(v[0].all, s(&["k:34", "k:35", "new"]));
    verify(&mut mc);
    verify(&mut rc);
}

#[test]
fn default_ttl_is_decided_by_the_master() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    ok(
        &mut mc,
        &["CONFIG", "SET", "cache.default-ttl-seconds", "100"],
    );
    ok(
        &mut rc,
        &["CONFIG", "SET", "cache.default-ttl-seconds", "5"],
    );

    ok(&mut mc, &["CACHE.SET", "d1", "v", "TAGS", "1", "t"]);
    ok(&mut mc, &["CACHE.SET", "d2", "v", "EX", "50"]);
    sync(&mut mc, &mut rc);
    for c in [&mut mc, &mut rc] {
        let p = int(&ok(c, &["PTTL", "d1"]));
        assert!((90_000..=100_000).contains(&p), "PTTL d1 = {p}");
        let p = int(&ok(c, &["PTTL", "d2"]));
        assert!((40_000..=50_000).contains(&p), "PTTL d2 = {p}");
    }
    assert_eq!(
        ok(&mut mc, &["PEXPIRETIME", "d1"]),
        ok(&mut rc, &["PEXPIRETIME", "d1"])
    );

    // No default on the master: no TTL anywhere, whatever the replica's own default.
    ok(
        &mut mc,
        &["CONFIG", "SET", "cache.default-ttl-seconds", "0"],
    );
    ok(&mut mc, &["CACHE.SET", "n1", "v", "TAGS", "1", "t"]);
    // Replacing d1 without a TTL option drops its deadline on both.
    ok(&mut mc, &["CACHE.SET", "d1", "v2"]);
    sync(&mut mc, &mut rc);
    for c in [&mut mc, &mut rc] {
        for k in ["n1", "d1"] {
            assert_eq!(int(&ok(c, &["PTTL", k])), -1, "PTTL {k}");
        }
    }
    assert_same(&mut mc, &mut rc, &[0]);
    verify(&mut mc);
    verify(&mut rc);
}

#[test]
fn keepttl_keeps_the_exact_deadline_on_master_and_replica() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    ok(
        &mut rc,
        &["CONFIG", "SET", "cache.default-ttl-seconds", "5"],
    );
    // KEEPTTL on a key that does not exist: no deadline (not the master's nor the replica's
    // default).
    ok(
        &mut mc,
        &["CONFIG", "SET", "cache.default-ttl-seconds", "100"],
    );
    assert_eq!(
        ok(
            &mut mc,
            &["CACHE.SET", "n2", "v", "KEEPTTL", "TAGS", "1", "t"]
        ),
        Value::Okay
    );
    // KEEPTTL on an existing entry keeps its deadline exactly, however often it is repeated,
    // on the master and on the replica.
    ok(&mut mc, &["CACHE.SET", "k", "v", "PX", "800000"]);
    let at = int(&ok(&mut mc, &["PEXPIRETIME", "k"]));
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.cmd("CACHE.SET")
            .arg("k")
            .arg(format!("v{i}"))
            .arg("KEEPTTL");
    }
    let replies: Vec<Value> = p.query(&mut mc).expect("pipeline");
    assert!(replies.iter().all(|r| *r == Value::Okay));
    sync(&mut mc, &mut rc);
    for (who, c) in [("master", &mut mc), ("replica", &mut rc)] {
        assert_eq!(int(&ok(c, &["PTTL", "n2"])), -1, "{who}: PTTL n2");
        let got = int(&ok(c, &["PEXPIRETIME", "k"]));
        assert_eq!(got, at, "{who}: PEXPIRETIME k after 1000 KEEPTTL");
    }
    assert_same(&mut mc, &mut rc, &[0]);
    verify(&mut mc);
    verify(&mut rc);
}

#[test]
fn reads_and_rejected_writes_are_not_propagated() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    ok(
        &mut mc,
        &["CACHE.SET", "a", "1", "TAGS", "2", "t1", "t2", "META", "{}"],
    );
    ok(&mut mc, &["CACHE.SET", "b", "2", "DEPENDS", "1", "a"]);
    ok(&mut mc, &["SET", "plain", "x"]);
    sync(&mut mc, &mut rc);
    let start = assert_same(&mut mc, &mut rc, &[0]);
    let d0 = digest(&mut mc);
    let off0 = repl_offset(&mut mc);

    // Reads.
    assert_eq!(
        bytes(&ok(&mut mc, &["CACHE.GET", "a"])),
        Some(b"1".to_vec())
    );
    assert_eq!(bytes(&ok(&mut mc, &["CACHE.GET", "nope"])), None);
    assert_eq!(
        list(&ok(&mut mc, &["CACHE.MGET", "a", "b", "nope"])).len(),
        3
    );
    assert_eq!(
        strings(&field(&ok(&mut mc, &["CACHE.INSPECT", "a"]), "dependents")),
        s(&["b"])
    );
    assert_eq!(keys(&mut mc, &["TAG", "t1"]), s(&["a", "b"]));
    assert_eq!(keys(&mut mc, &["ALL"]), s(&["a", "b"]));
    assert_eq!(list(&ok(&mut mc, &["CACHE.TAGS"])).len(), 2);
    assert!(strings(&ok(&mut mc, &["CACHE.DEBUG", "VERIFY"])).is_empty());
    assert_eq!(repl_offset(&mut mc), off0, "reads moved the offset");

    // Rejected writes, each with its exact error.
    let rejected: &[(&[&str], &str)] = &[
        (&["CACHE.SET", "a"], "ERR wrong number of arguments for 'cache.set' command"),
        (&["CACHE.SET", "a", "v", "BOGUS"], "ERR syntax error"),
        (&["CACHE.SET", "a", "v", "EX", "0"], "ERR invalid expire time in 'cache.set' command"),
        (&["CACHE.SET", "a", "v", "EX", "x"], "ERR value is not an integer or out of range"),
        (&["CACHE.SET", "a", "v", "META", "[1]"], "ERR META must be a JSON object"),
        (&["CACHE.SET", "plain", "v"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        (&["CACHE.TAG", "nope", "t"], "ERR no such key"),
        (&["CACHE.TAG", "plain", "t"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        (&["CACHE.DEPEND", "nope", "r"], "ERR no such key"),
        (&["CACHE.INVALIDATE", "STRATEGY", "SOON", "TAG", "t1"], "ERR unknown strategy 'SOON', expected IMMEDIATE, LAZY, BATCHED or SOFT"),
        (&["CACHE.INVALIDATE", "DEPTH", "-1", "ALL"], "ERR DEPTH can't be negative"),
        (&["CACHE.INVALIDATE", "EVERYTHING"], "ERR unknown selector 'EVERYTHING', expected KEY, TAG, PATTERN, NAMESPACE, ALL or DEPENDENTS"),
        (&["CACHE.INVALIDATE", "TAG"], "ERR syntax error"),
    ];
    for (parts, want) in rejected {
        assert_eq!(err(&mut mc, parts), *want, "{parts:?}");
    }
    // Writes that change nothing propagate nothing either (the module's choice).
    assert_eq!(ok(&mut mc, &["CACHE.SET", "a", "v", "NX"]), Value::Nil);
    assert_eq!(ok(&mut mc, &["CACHE.SET", "zz", "v", "XX"]), Value::Nil);
    assert_eq!(int(&ok(&mut mc, &["CACHE.TAG", "a", "t1"])), 0);
    assert_eq!(int(&ok(&mut mc, &["CACHE.DEPEND", "b", "a"])), 0);
    assert_eq!(int(&ok(&mut mc, &["CACHE.INVALIDATE", "TAG", "none"])), 0);
    assert_eq!(
        repl_offset(&mut mc),
        off0,
        "rejected writes moved the offset"
    );
    assert_eq!(digest(&mut mc), d0);
    assert_eq!(view(&mut mc, 0), start[0]);

    // The offset does move for a real write (the check above can fail).
    ok(&mut mc, &["CACHE.SET", "c", "3"]);
    assert!(repl_offset(&mut mc) > off0);
    sync(&mut mc, &mut rc);
    assert_same(&mut mc, &mut rc, &[0]);
    verify(&mut mc);
    verify(&mut rc);
}

#[test]
fn replica_rejects_writes_and_answers_reads() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    ok(&mut mc, &["CACHE.SET", "a", "1", "TAGS", "1", "t"]);
    ok(&mut mc, &["CACHE.SET", "b", "2", "DEPENDS", "1", "a"]);
    sync(&mut mc, &mut rc);
    let d0 = digest(&mut rc);
    let ro = "READONLY You can't write against a read only replica.";
    for parts in [
        &["CACHE.SET", "a", "x"][..],
        &["CACHE.SET", "new", "x"],
        &["CACHE.INVALIDATE", "ALL"],
        &["CACHE.INVALIDATE", "KEY", "a"],
        &["CACHE.TAG", "a", "t2"],
        &["CACHE.DEPEND", "a", "r"],
    ] {
        assert_eq!(err(&mut rc, parts), ro, "{parts:?}");
    }
    assert_eq!(digest(&mut rc), d0);
    assert_eq!(
        bytes(&ok(&mut rc, &["CACHE.GET", "a"])),
        Some(b"1".to_vec())
    );
    assert_eq!(
        list(&ok(&mut rc, &["CACHE.MGET", "a", "b", "c"])),
        vec![
            Value::BulkString(b"1".to_vec()),
            Value::BulkString(b"2".to_vec()),
            Value::Nil
        ]
    );
    assert_eq!(keys(&mut rc, &["TAG", "t"]), s(&["a", "b"]));
    assert_eq!(keys(&mut rc, &["DEPTH", "0", "TAG", "t"]), s(&["a"]));
    assert_eq!(
        strings(&field(&ok(&mut rc, &["CACHE.INSPECT", "a"]), "dependents")),
        s(&["b"])
    );
    assert_same(&mut mc, &mut rc, &[0]);
    verify(&mut mc);
    verify(&mut rc);
}
