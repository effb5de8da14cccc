//! Issue 22, memory: under `maxmemory` with `noeviction` the module's own structures stay
//! within the limit (bounds on `used_memory` with slack, never timings).

mod common;

use common::*;
use redis::Connection;

fn used(c: &mut Connection) -> i64 {
    info_field(c, "memory", "used_memory")
        .trim()
        .parse()
        .unwrap()
}

/// A server at its `maxmemory` (30 MB, noeviction): filled with plain strings until a write is
/// refused.
fn full_server() -> (Server, Connection) {
    let s = Server::with(
        &[],
        &["--maxmemory", "30mb", "--maxmemory-policy", "noeviction"],
    );
    let mut c = s.conn();
    let value = "x".repeat(10_000);
    for i in 0..10_000 {
        if cmd(&mut c, &["SET", &format!("fill:{i}"), &value]).is_err() {
            return (s, c);
        }
    }
    panic!("maxmemory never reached");
}

#[test]
fn fetch_hands_out_no_lease_over_maxmemory() {
    let (_s, mut c) = full_server();
    let before = used(&mut c);
    let mut p = redis::pipe();
    for i in 0..100_000 {
        p.cmd("CACHE.FETCH")
            .arg(format!("missing:{i}"))
            .arg("LEASE")
            .arg(2_000_000_000);
    }
    let replies: Vec<redis::Value> = p.query(&mut c).unwrap();
    let states: Vec<Vec<u8>> = replies
        .iter()
        .map(|r| bytes(&list(r)[1]).unwrap())
        .collect();
    assert!(
        states.iter().all(|s| s == b"miss"),
        "every fetch answers miss"
    );
    let grown = used(&mut c) - before;
    assert!(
        grown < 2_000_000,
        "leases grew used_memory by {grown} bytes over maxmemory"
    );
    // The caller gets no lease: another fetch of the key answers miss, not wait.
    let r = ok(&mut c, &["CACHE.FETCH", "missing:1"]);
    assert_eq!(bytes(&list(&r)[1]).unwrap(), b"miss");
}

#[test]
fn batched_over_maxmemory_invalidates_at_once_and_holds_nothing() {
    let (_s, mut c) = full_server();
    let before = used(&mut c);
    let pattern = format!("p:{}*", "a".repeat(4096 - 3));
    let mut p = redis::pipe();
    for i in 0..5_000 {
        p.cmd("CACHE.INVALIDATE")
            .arg("CONTEXT")
            .arg(i)
            .arg("STRATEGY")
            .arg("BATCHED")
            .arg("PATTERN")
            .arg(format!("{i}{}", &pattern[..4000]));
    }
    // From another connection, closed before measuring: its buffers are not the module's.
    let mut other = _s.conn();
    let _: Vec<redis::Value> = p.query(&mut other).unwrap();
    drop(other);
    let _ = ok(&mut c, &["PING"]);
    let grown = used(&mut c) - before;
    // The old build grew 8 MB here (the queue); now the queue and the guard's history hold
    // nothing, but about 0.8 KB per request (4.1-4.4 MB for 5 000) still shows on every server,
    // not traced to a module structure yet (see the issue note): bounded at 6 MB.
    assert!(
        grown < 6_000_000,
        "the BATCHED queue grew used_memory by {grown} bytes"
    );
    let pending = ok(&mut c, &["CACHE.PENDING"]);
    assert!(list(&pending).is_empty(), "nothing queued over maxmemory");
}

#[test]
fn every_strategy_invalidates_over_maxmemory() {
    let s = Server::with(&[], &["--maxmemory-policy", "noeviction"]);
    let mut c = s.conn();
    ok(&mut c, &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    for (i, strategy) in ["IMMEDIATE", "LAZY", "BATCHED", "SOFT"].iter().enumerate() {
        ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
        ok(
            &mut c,
            &["CACHE.SET", &format!("k{i}"), "v", "TAGS", "1", "t"],
        );
        ok(&mut c, &["CONFIG", "SET", "maxmemory", "1"]);
        assert!(err(&mut c, &["CACHE.SET", "other", "v"]).starts_with("OOM"));
        let n = int(&ok(
            &mut c,
            &["CACHE.INVALIDATE", "STRATEGY", strategy, "TAG", "t"],
        ));
        assert_eq!(
            n, 1,
            "{strategy} invalidates the entry at once over maxmemory"
        );
        let got = ok(&mut c, &["CACHE.GET", &format!("k{i}")]);
        if *strategy != "SOFT" {
            assert_eq!(got, redis::Value::Nil, "{strategy}");
        }
    }
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
}

#[test]
fn rules_and_relations_are_refused_over_maxmemory_and_can_still_be_removed() {
    let s = Server::with(&[], &["--maxmemory-policy", "noeviction"]);
    let mut c = s.conn();
    let rule = |name: &'static str| -> [&'static str; 8] {
        ["CACHE.RULE", "SET", name, "ON", "user", "INVALIDATE", "1", "user:{id}"]
    };
    ok(&mut c, &rule("old"));
    ok(&mut c, &["CACHE.RELATE", "user", "post"]);
    ok(&mut c, &["CACHE.SET", "user:7", "v", "TAGS", "1", "user:7"]);
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "1"]);
    const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
    assert_eq!(err(&mut c, &rule("new")), OOM);
    assert_eq!(err(&mut c, &["CACHE.RELATE", "user", "order"]), OOM);
    // Nothing was added.
    assert_eq!(list(&ok(&mut c, &["CACHE.RULE", "LIST"])).len(), 1);
    assert_eq!(list(&ok(&mut c, &["CACHE.RELATE", "LIST"])).len(), 1);
    // Writes still invalidate; removing rules and relations still works.
    assert_eq!(int(&ok(&mut c, &["CACHE.WRITE", "user", "7"])), 1);
    assert_eq!(int(&ok(&mut c, &["CACHE.RULE", "DEL", "old"])), 1);
    assert_eq!(int(&ok(&mut c, &["CACHE.RELATE", "DEL", "user", "post"])), 1);
    assert!(list(&ok(&mut c, &["CACHE.RULE", "LIST"])).is_empty());
    assert!(list(&ok(&mut c, &["CACHE.RELATE", "LIST"])).is_empty());
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
    ok(&mut c, &rule("new"));
    ok(&mut c, &["CACHE.RELATE", "user", "order"]);
}
