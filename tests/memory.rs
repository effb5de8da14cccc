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
        [
            "CACHE.RULE",
            "SET",
            name,
            "ON",
            "user",
            "INVALIDATE",
            "1",
            "user:{id}",
        ]
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
    assert_eq!(
        int(&ok(&mut c, &["CACHE.RELATE", "DEL", "user", "post"])),
        1
    );
    assert!(list(&ok(&mut c, &["CACHE.RULE", "LIST"])).is_empty());
    assert!(list(&ok(&mut c, &["CACHE.RELATE", "LIST"])).is_empty());
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
    ok(&mut c, &rule("new"));
    ok(&mut c, &["CACHE.RELATE", "user", "order"]);
}

/// CACHE.STATS `memory`, field by field.
fn memory(c: &mut Connection) -> std::collections::HashMap<String, i64> {
    map(&field(&ok(c, &["CACHE.STATS"]), "memory"))
        .into_iter()
        .map(|(k, v)| (k, int(&v)))
        .collect()
}

#[test]
fn stats_memory_shows_each_structure_grow_and_fall_back() {
    let s = Server::start();
    let mut c = s.conn();
    let m0 = memory(&mut c);
    for f in [
        "index_bytes",
        "value_bytes",
        "lease_bytes",
        "batch_bytes",
        "lazy_bytes",
        "metrics_bytes",
        "rules_bytes",
        "watch_bytes",
        "cluster_bytes",
        "history_bytes",
    ] {
        assert!(m0.contains_key(f), "{f} in {m0:?}");
    }
    let sum: i64 = m0
        .iter()
        .filter(|(k, _)| *k != "total_bytes")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(m0["total_bytes"], sum);

    // 1000 leases on keys of 100 bytes: at least their keys and slots, not wildly more.
    let key = |i: i32| format!("lease:{i:04}:{}", "k".repeat(89));
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.cmd("CACHE.FETCH")
            .arg(key(i))
            .arg("LEASE")
            .arg(60_000)
            .ignore();
    }
    p.query::<()>(&mut c).unwrap();
    let grown = memory(&mut c)["lease_bytes"] - m0["lease_bytes"];
    assert!(
        (140_000..400_000).contains(&grown),
        "1000 leases: {grown} bytes"
    );
    // They end when their keys are written.
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.cmd("CACHE.SET").arg(key(i)).arg("v").ignore();
    }
    p.query::<()>(&mut c).unwrap();
    let after = memory(&mut c)["lease_bytes"] - m0["lease_bytes"];
    assert!(
        after < grown / 2,
        "the leases ended: {after} bytes of {grown}"
    );

    // 100 BATCHED requests of 4 KB patterns: at least the patterns, twice each.
    ok(&mut c, &["CONFIG", "SET", "cache.batch-delay-ms", "5000"]);
    for i in 0..100 {
        let pattern = format!("{i:03}{}*", "p".repeat(4000));
        ok(
            &mut c,
            &[
                "CACHE.INVALIDATE",
                "STRATEGY",
                "BATCHED",
                "PATTERN",
                &pattern,
            ],
        );
    }
    let grown = memory(&mut c)["batch_bytes"] - m0["batch_bytes"];
    assert!(
        (800_000..2_000_000).contains(&grown),
        "100 requests: {grown} bytes"
    );
    ok(&mut c, &["CACHE.PENDING", "FLUSH"]);
    assert!(
        memory(&mut c)["batch_bytes"] < grown / 10,
        "the queue drained"
    );

    // Rules and relations.
    let m1 = memory(&mut c);
    for i in 0..100 {
        let name = format!("rule{i}");
        let template = format!("{}:{{id}}", "t".repeat(1000));
        ok(
            &mut c,
            &[
                "CACHE.RULE",
                "SET",
                &name,
                "ON",
                "user",
                "INVALIDATE",
                "1",
                &template,
            ],
        );
    }
    let grown = memory(&mut c)["rules_bytes"] - m1["rules_bytes"];
    assert!(
        (200_000..1_000_000).contains(&grown),
        "100 rules: {grown} bytes"
    );

    // WATCH of 4 KB names: the list is bounded at 1 MiB however many are watched.
    let mut w = s.conn();
    for i in 0..1000 {
        let name = format!("w:{i:04}:{}", "n".repeat(4090));
        ok(&mut w, &["WATCH", &name]);
    }
    let watch = memory(&mut c)["watch_bytes"];
    assert!(
        (500_000..1_200_000).contains(&watch),
        "1000 watched names of 4 KB: {watch} bytes"
    );

    // Events: the log of 100 invalidations with 1 KB contexts.
    let m2 = memory(&mut c);
    for i in 0..100 {
        let context = format!("{i:03}{}", "c".repeat(1000));
        ok(
            &mut c,
            &["CACHE.INVALIDATE", "CONTEXT", &context, "TAG", "none"],
        );
    }
    let grown = memory(&mut c)["metrics_bytes"] - m2["metrics_bytes"];
    // (Contexts are kept shortened in the log.)
    assert!(
        grown >= 40_000,
        "100 events with 1 KB contexts: {grown} bytes"
    );
    let m = memory(&mut c);
    let sum: i64 = m
        .iter()
        .filter(|(k, _)| *k != "total_bytes")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(m["total_bytes"], sum);
}

#[test]
fn memory_returns_after_a_large_invalidation_leaves_the_guard_window() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["CONFIG", "SET", "cache.guard-window-ms", "1000"]);
    let before = used(&mut c);
    let mut p = redis::pipe();
    for i in 0..50_000 {
        p.cmd("CACHE.SET")
            .arg(format!("k:{i:08}"))
            .arg("v")
            .arg("TAGS")
            .arg(1)
            .arg("all");
    }
    let _: Vec<redis::Value> = p.query(&mut c).unwrap();
    assert_eq!(
        int(&ok(&mut c, &["CACHE.INVALIDATE", "TAG", "all"])),
        50_000
    );
    // The guard remembers the 50 000 removed keys for the window.
    let held = memory(&mut c)["history_bytes"];
    assert!(held > 50_000 * 100, "history_bytes {held}");
    // No other command comes: the server's cron drops the facts and gives the room back.
    eventually("the guard history to empty", || {
        memory(&mut c)["history_bytes"] < 8_192
    });
    let kept = used(&mut c) - before;
    // What stays is the index's id table (20 B per peak entry, reused by the next entries),
    // with slack for the server's own tables.
    assert!(kept < 50_000 * 40, "used_memory kept {kept} bytes");
    ok(&mut c, &["CONFIG", "SET", "cache.guard-window-ms", "60000"]);
    verify(&mut c);
}
