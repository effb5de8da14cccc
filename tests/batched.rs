//! The BATCHED invalidation strategy against a real server (issue 6, DESIGN.md §3 "Strategies"):
//! `CACHE.INVALIDATE STRATEGY BATCHED ...` replies 0 and queues the request; it is applied after
//! `cache.batch-delay-ms` (or at once by `CACHE.PENDING FLUSH`), identical requests (same
//! database, selector and depth) are coalesced, the queue survives DEBUG RELOAD and a restart
//! from an RDB, it is applied on the master only and replicated as its effects, and it is
//! counted (events, CACHE.STATS `by_strategy`, INFO) only when applied.
//!
//! No timing assertions: where the queue must stay, the delay is 5000 ms (the maximum); where it
//! must apply by itself, the delay is short and the test polls with a deadline.

mod common;
use common::*;

use serde_json::Value as J;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Splits a command line on spaces.
fn a(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// `CACHE.INVALIDATE <args>` (split on spaces) -> its integer reply.
fn inv(c: &mut Connection, args: &str) -> i64 {
    let mut parts = vec!["CACHE.INVALIDATE"];
    parts.extend(a(args));
    int(&ok(c, &parts))
}

/// `CACHE.INVALIDATE STRATEGY BATCHED <args>`, which must reply 0 (nothing invalidated now).
fn batched(c: &mut Connection, args: &str) {
    assert_eq!(
        inv(c, &format!("STRATEGY BATCHED {args}")),
        0,
        "STRATEGY BATCHED {args}"
    );
}

fn flush(c: &mut Connection) -> i64 {
    int(&ok(c, &["CACHE.PENDING", "FLUSH"]))
}

/// The fields of a CACHE.PENDING row, in reply order.
const ROW_FIELDS: [&str; 8] = [
    "db",
    "type",
    "pattern",
    "depth",
    "context",
    "queued_ms",
    "due_ms",
    "coalesced",
];

/// One CACHE.PENDING row.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    db: i64,
    kind: String,
    pattern: String,
    depth: i64,
    context: Option<String>,
    queued_ms: i64,
    due_ms: i64,
    coalesced: i64,
}

fn rows_of(v: &Value) -> Vec<Row> {
    list(v)
        .iter()
        .map(|r| {
            let m = map(r);
            let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names, ROW_FIELDS, "CACHE.PENDING row fields: {r:?}");
            let g = |n: &str| field(r, n);
            Row {
                db: int(&g("db")),
                kind: text(&g("type")),
                pattern: text(&g("pattern")),
                depth: int(&g("depth")),
                context: bytes(&g("context")).map(|b| String::from_utf8(b).expect("utf-8")),
                queued_ms: int(&g("queued_ms")),
                due_ms: int(&g("due_ms")),
                coalesced: int(&g("coalesced")),
            }
        })
        .collect()
}

fn pending(c: &mut Connection) -> Vec<Row> {
    rows_of(&ok(c, &["CACHE.PENDING"]))
}

/// (db, type, pattern, depth, context, coalesced) of each row: what does not depend on time.
type Shape = (i64, String, String, i64, Option<String>, i64);

fn shape(rows: &[Row]) -> Vec<Shape> {
    rows.iter()
        .map(|r| {
            (
                r.db,
                r.kind.clone(),
                r.pattern.clone(),
                r.depth,
                r.context.clone(),
                r.coalesced,
            )
        })
        .collect()
}

fn sh(db: i64, kind: &str, pattern: &str, depth: i64, ctx: Option<&str>, coalesced: i64) -> Shape {
    (
        db,
        kind.into(),
        pattern.into(),
        depth,
        ctx.map(String::from),
        coalesced,
    )
}

/// `patterns.by_strategy.<name>` of CACHE.STATS (0 when the strategy was never counted).
fn by_strategy(c: &mut Connection, name: &str) -> u64 {
    let j = stats(c);
    let m = j
        .get("patterns")
        .and_then(|p| p.get("by_strategy"))
        .unwrap_or_else(|| panic!("no patterns.by_strategy in {j}"));
    assert!(m.is_object(), "by_strategy is not a map: {m}");
    m.get(name).map_or(0, |v| v.as_u64().expect("a count"))
}

fn stat(c: &mut Connection, name: &str) -> u64 {
    let j = stats(c);
    j.get(name)
        .and_then(J::as_u64)
        .unwrap_or_else(|| panic!("no {name} in {j}"))
}

// ---------------------------------------------------------------------------------------------
// 1. Queue, then apply
// ---------------------------------------------------------------------------------------------

#[test]
fn a_batched_request_waits_for_its_delay_then_is_applied_and_counted() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &["t"], &[]);
    entry(&mut c, "d", &[], &["a"]);
    entry(&mut c, "cu", &["u"], &[]);
    entry(&mut c, "x", &["other"], &[]);

    // A short delay: the request applies by itself, and only then is it counted.
    config_set(&mut c, "cache.batch-delay-ms", "20");
    batched(&mut c, "TAG u");
    eventually("TAG u applied", || exists(&mut c, "cu") == 0);
    eventually("queue empty", || pending(&mut c).is_empty());
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["a", "b", "d", "x"]));
    assert_eq!(
        events(&mut c),
        vec![ev("tag", "u", 1, "", "batched")],
        "one event, when applied"
    );
    assert_eq!(stat(&mut c, "total_invalidations"), 1);
    assert_eq!(stat(&mut c, "total_keys_invalidated"), 1);
    assert_eq!(by_strategy(&mut c, "batched"), 1);
    assert_eq!(info_cache(&mut c, "cache_invalidations"), 1);
    assert_eq!(info_cache(&mut c, "cache_keys_invalidated"), 1);

    // A long delay: the request waits.
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    let d0 = digest(&mut c);
    assert_eq!(inv(&mut c, "STRATEGY BATCHED CONTEXT deploy TAG t"), 0);
    // Nothing happened yet: the entries read as before and would still be selected.
    assert_eq!(digest(&mut c), d0);
    assert_eq!(get(&mut c, "a").as_deref(), Some("v-a"));
    assert_eq!(get(&mut c, "b").as_deref(), Some("v-b"));
    assert_eq!(get(&mut c, "d").as_deref(), Some("v-d"));
    assert_eq!(keys(&mut c, &["TAG", "t"]), sv(&["a", "b", "d"]));
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["a", "b", "d", "x"]));
    assert_ne!(ok(&mut c, &["CACHE.INSPECT", "a"]), Value::Nil);
    assert_eq!(
        shape(&pending(&mut c)),
        vec![sh(0, "tag", "t", -1, Some("deploy"), 0)]
    );
    // ... and it is not counted anywhere yet.
    assert_eq!(events(&mut c).len(), 1);
    assert_eq!(stat(&mut c, "total_invalidations"), 1);
    assert_eq!(stat(&mut c, "total_keys_invalidated"), 1);
    assert_eq!(by_strategy(&mut c, "batched"), 1);
    assert_eq!(info_cache(&mut c, "cache_invalidations"), 1);
    assert_eq!(info_cache(&mut c, "cache_keys_invalidated"), 1);

    // FLUSH applies it now: a, b and d (cascade from a).
    assert_eq!(flush(&mut c), 3);
    assert!(pending(&mut c).is_empty());
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["x"]));
    assert_eq!(get(&mut c, "a"), None);
    assert_eq!(
        events(&mut c),
        vec![
            ev("tag", "t", 3, "deploy", "batched"),
            ev("tag", "u", 1, "", "batched"),
        ]
    );
    assert_eq!(stat(&mut c, "total_invalidations"), 2);
    assert_eq!(stat(&mut c, "total_keys_invalidated"), 4);
    assert_eq!(by_strategy(&mut c, "batched"), 2);
    assert_eq!(by_strategy(&mut c, "immediate"), 0);
    assert_eq!(info_cache(&mut c, "cache_invalidations"), 2);
    assert_eq!(info_cache(&mut c, "cache_keys_invalidated"), 4);

    // An IMMEDIATE invalidation is counted under its own strategy.
    assert_eq!(inv(&mut c, "TAG other"), 1);
    assert_eq!(by_strategy(&mut c, "immediate"), 1);
    assert_eq!(by_strategy(&mut c, "batched"), 2);
    assert_eq!(events(&mut c)[0], ev("tag", "other", 1, "", "immediate"));
    assert!(keys(&mut c, &["ALL"]).is_empty());
    verify(&mut c);
}

/// Each request is due `cache.batch-delay-ms` after it was queued, with the delay in force
/// then: one queued after the delay was lowered is due before an earlier one with a longer
/// delay, and must be applied at its own due time, not held back until the earlier one's.
#[test]
fn a_request_with_a_shorter_delay_is_not_held_back_by_an_earlier_one() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "cu", &["u"], &[]);
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    batched(&mut c, "TAG t");
    config_set(&mut c, "cache.batch-delay-ms", "20");
    batched(&mut c, "TAG u");
    let rows = pending(&mut c);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].due_ms - rows[1].queued_ms, 20);
    eventually("TAG u applied", || exists(&mut c, "cu") == 0);
    // TAG t is due 5000 ms after it was queued: it must still wait.
    assert_eq!(
        shape(&pending(&mut c)),
        vec![sh(0, "tag", "t", -1, None, 0)],
        "TAG t still waits"
    );
    assert_eq!(get(&mut c, "a").as_deref(), Some("v-a"));
    assert_eq!(events(&mut c), vec![ev("tag", "u", 1, "", "batched")]);
    assert_eq!(flush(&mut c), 1);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 2. Coalescing
// ---------------------------------------------------------------------------------------------

#[test]
fn identical_requests_coalesce_and_different_ones_do_not() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    for k in ["t1", "t2", "t3"] {
        entry(&mut c, k, &["t"], &[]);
    }
    entry(&mut c, "k", &["t", "u"], &[]);
    entry(&mut c, "keep", &["v"], &[]);
    select(&mut c, 1);
    entry(&mut c, "e1", &["t"], &[]);
    select(&mut c, 0);
    let d0 = digest(&mut c);

    batched(&mut c, "CONTEXT first TAG t");
    let first = pending(&mut c);
    assert_eq!(first.len(), 1);
    // Same database, selector and depth: folded into the first, whatever the context or the
    // option order; the first request's context and times are kept.
    batched(&mut c, "TAG t");
    batched(&mut c, "CONTEXT second TAG t");
    ok(
        &mut c,
        &a("CACHE.INVALIDATE CONTEXT third STRATEGY batched TAG t"),
    );
    batched(&mut c, "TAG t");
    let one = pending(&mut c);
    assert_eq!(shape(&one), vec![sh(0, "tag", "t", -1, Some("first"), 4)]);
    assert_eq!(
        (one[0].queued_ms, one[0].due_ms),
        (first[0].queued_ms, first[0].due_ms)
    );

    // Another depth, selector type, selector arguments or database: rows of their own.
    batched(&mut c, "DEPTH 0 TAG t");
    batched(&mut c, "TAG u");
    batched(&mut c, "TAG t u");
    batched(&mut c, "KEY t");
    select(&mut c, 1);
    batched(&mut c, "TAG t");
    select(&mut c, 0);
    batched(&mut c, "DEPTH 0 TAG t");
    assert_eq!(
        shape(&pending(&mut c)),
        vec![
            sh(0, "tag", "t", -1, Some("first"), 4),
            sh(0, "tag", "t", 0, None, 1),
            sh(0, "tag", "u", -1, None, 0),
            sh(0, "tag", "t u", -1, None, 0),
            sh(0, "key", "t", -1, None, 0),
            sh(1, "tag", "t", -1, None, 0),
        ]
    );
    assert_eq!(digest(&mut c), d0, "queueing changes no data");
    assert!(events(&mut c).is_empty());

    // Applied oldest first, each row once: TAG t takes t1..t3 and k, db 1 takes e1.
    assert_eq!(flush(&mut c), 5);
    assert!(pending(&mut c).is_empty());
    assert_eq!(
        events(&mut c),
        vec![
            ev("tag", "t", 1, "", "batched"),
            ev("key", "t", 0, "", "batched"),
            ev("tag", "t u", 0, "", "batched"),
            ev("tag", "u", 0, "", "batched"),
            ev("tag", "t", 0, "", "batched"),
            ev("tag", "t", 4, "first", "batched"),
        ]
    );
    assert_eq!(by_strategy(&mut c, "batched"), 6);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    select(&mut c, 1);
    assert!(keys(&mut c, &["ALL"]).is_empty());
    select(&mut c, 0);

    verify(&mut c);
}

#[test]
fn identical_requests_in_one_window_are_applied_once() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "50");
    entry(&mut c, "p1", &["p"], &[]);
    entry(&mut c, "p2", &["p"], &[]);
    entry(&mut c, "keep", &["v"], &[]);
    for i in 0..5 {
        batched(&mut c, &format!("CONTEXT c{i} TAG p"));
    }
    eventually("TAG p applied", || {
        exists(&mut c, "p1") + exists(&mut c, "p2") == 0
    });
    eventually("queue empty", || pending(&mut c).is_empty());
    // One event, with the first request's context.
    assert_eq!(events(&mut c), vec![ev("tag", "p", 2, "c0", "batched")]);
    assert_eq!(by_strategy(&mut c, "batched"), 1);
    assert_eq!(info_cache(&mut c, "cache_invalidations"), 1);
    assert_eq!(info_cache(&mut c, "cache_keys_invalidated"), 2);

    // After it was applied, the same request opens a new window.
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    batched(&mut c, "TAG p");
    assert_eq!(
        shape(&pending(&mut c)),
        vec![sh(0, "tag", "p", -1, None, 0)]
    );
    assert_eq!(flush(&mut c), 0);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    assert_eq!(by_strategy(&mut c, "batched"), 2);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 3. CACHE.PENDING
// ---------------------------------------------------------------------------------------------

fn check_pending(resp3: bool) {
    let s = Server::start();
    let mut c = if resp3 { s.conn3() } else { s.conn() };
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &[], &["a"]);
    entry(&mut c, "user:1", &[], &[]);
    entry(&mut c, "ns:1", &[], &[]);
    entry(&mut c, "dep", &[], &["r2"]);
    entry(&mut c, "keep", &["k"], &[]);
    select(&mut c, 3);
    entry(&mut c, "z", &[], &[]);
    select(&mut c, 0);
    let d0 = digest(&mut c);

    let t0 = server_ms(&mut c);
    assert_eq!(
        int(&ok(
            &mut c,
            &[
                "CACHE.INVALIDATE",
                "STRATEGY",
                "BATCHED",
                "DEPTH",
                "2",
                "CONTEXT",
                "release 42",
                "TAG",
                "t",
            ]
        )),
        0
    );
    config_set(&mut c, "cache.batch-delay-ms", "3000");
    batched(&mut c, "KEY a b");
    select(&mut c, 3);
    batched(&mut c, "ALL");
    select(&mut c, 0);
    batched(&mut c, "PATTERN user:*");
    batched(&mut c, "DEPENDENTS r1 r2");
    batched(&mut c, "NAMESPACE ns");
    let t1 = server_ms(&mut c);

    let raw = ok(&mut c, &["CACHE.PENDING"]);
    let items = list(&raw);
    assert_eq!(items.len(), 6);
    for r in &items {
        if resp3 {
            assert!(
                matches!(r, Value::Map(m) if m.len() == 8),
                "RESP3 map: {r:?}"
            );
        } else {
            assert!(
                matches!(r, Value::Array(v) if v.len() == 16),
                "RESP2 flat array: {r:?}"
            );
        }
    }
    // A request without CONTEXT has a nil context (not an empty string).
    assert_eq!(field(&items[1], "context"), Value::Nil);
    let rows = rows_of(&raw);
    assert_eq!(
        shape(&rows),
        vec![
            sh(0, "tag", "t", 2, Some("release 42"), 0),
            sh(0, "key", "a b", -1, None, 0),
            sh(3, "all", "", -1, None, 0),
            sh(0, "pattern", "user:*", -1, None, 0),
            sh(0, "dependents", "r1 r2", -1, None, 0),
            sh(0, "namespace", "ns", -1, None, 0),
        ]
    );
    // Queued at the server's clock; due after the delay in force when queued.
    let mut last = t0;
    for (i, r) in rows.iter().enumerate() {
        assert!(
            (last..=t1).contains(&r.queued_ms),
            "row {i}: queued_ms {} not in [{last}, {t1}]",
            r.queued_ms
        );
        last = r.queued_ms;
        let delay = if i == 0 { 5000 } else { 3000 };
        assert_eq!(r.due_ms, r.queued_ms + delay, "row {i}: due_ms");
    }
    assert_eq!(digest(&mut c), d0);

    // Rejected: exact errors, nothing queued, nothing applied.
    for (parts, want) in [
        (
            &["CACHE.PENDING", "NOPE"][..],
            "ERR unknown subcommand 'NOPE'. Try CACHE.PENDING HELP.",
        ),
        (
            &["CACHE.PENDING", "FLUSH", "x"],
            "ERR wrong number of arguments for 'cache.pending' command",
        ),
        (
            &["CACHE.PENDING", "FLUSH", "FLUSH"],
            "ERR wrong number of arguments for 'cache.pending' command",
        ),
        (&["CACHE.INVALIDATE", "STRATEGY", "BATCHED"], "ERR syntax error"),
        (
            &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "TAG"],
            "ERR syntax error",
        ),
        (
            &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "ALL", "x"],
            "ERR syntax error",
        ),
        (
            &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "STRATEGY", "BATCHED", "ALL"],
            "ERR syntax error",
        ),
        (
            &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "DEPTH", "-1", "ALL"],
            "ERR DEPTH can't be negative",
        ),
        (
            &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "DEPTH", "x", "ALL"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["CACHE.INVALIDATE", "STRATEGY", "BATCH", "ALL"],
            "ERR unknown strategy 'BATCH', expected IMMEDIATE, LAZY, BATCHED or SOFT",
        ),
        (
            &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "EVERYTHING"],
            "ERR unknown selector 'EVERYTHING', expected KEY, TAG, PATTERN, NAMESPACE, ALL or DEPENDENTS",
        ),
    ] {
        assert_eq!(err(&mut c, parts), want, "{parts:?}");
        assert_eq!(pending(&mut c), rows, "after {parts:?}");
        assert_eq!(digest(&mut c), d0, "after {parts:?}");
    }
    assert_eq!(
        keys(&mut c, &["ALL"]),
        sv(&["a", "b", "dep", "keep", "ns:1", "user:1"])
    );

    // FLUSH (any case) applies every row now and replies the total removed:
    // TAG t DEPTH 2 -> a, b; KEY a b -> none left; db 3 ALL -> z; user:1; dep; ns:1.
    assert_eq!(int(&ok(&mut c, &["cache.pending", "flush"])), 6);
    assert_eq!(ok(&mut c, &["CACHE.PENDING"]), Value::Array(vec![]));
    assert_eq!(flush(&mut c), 0, "FLUSH of an empty queue");
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    select(&mut c, 3);
    assert!(keys(&mut c, &["ALL"]).is_empty());
    select(&mut c, 0);
    assert_eq!(by_strategy(&mut c, "batched"), 6);
    verify(&mut c);
}

#[test]
fn pending_lists_every_field_as_a_flat_array_under_resp2() {
    check_pending(false);
}

#[test]
fn pending_lists_every_field_as_a_map_under_resp3() {
    check_pending(true);
}

/// The unknown-subcommand error says "Try CACHE.PENDING HELP.": HELP lists the subcommands.
#[test]
fn pending_help_lists_the_subcommands() {
    let s = Server::start();
    let mut c = s.conn();
    let d0 = digest(&mut c);
    assert_eq!(
        strings(&ok(&mut c, &["cache.pending", "help"])),
        sv(&[
            "CACHE.PENDING [<subcommand>]. Subcommands are:",
            "CACHE.PENDING",
            "    (no subcommand) List the queued BATCHED invalidations.",
            "FLUSH",
            "    Apply them all now; reply the number of entries invalidated.",
            "LAZY",
            "    List the LAZY invalidations whose entries are not all reclaimed yet.",
            "HELP",
            "    Print this help.",
        ])
    );
    assert_eq!(
        err(&mut c, &["CACHE.PENDING", "HELP", "x"]),
        "ERR wrong number of arguments for 'cache.pending' command"
    );
    assert_eq!(digest(&mut c), d0);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 4. Cascade, depth and databases when applied
// ---------------------------------------------------------------------------------------------

/// `prefix1 <- prefix2 <- ... <- prefix<n>` (each depends on the previous one).
fn chain(c: &mut Connection, prefix: &str, n: usize, tags: &[&str]) {
    entry(c, &format!("{prefix}1"), tags, &[]);
    for i in 2..=n {
        entry(
            c,
            &format!("{prefix}{i}"),
            &[],
            &[&format!("{prefix}{}", i - 1)],
        );
    }
}

#[test]
fn cascade_depth_and_database_are_honoured_when_applied() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    chain(&mut c, "a", 4, &[]); // a1 <- a2 <- a3 <- a4
    chain(&mut c, "x", 4, &[]); // x1 <- x2 <- x3 <- x4
    chain(&mut c, "y", 4, &[]);
    entry(&mut c, "r1", &[], &["row"]);
    entry(&mut c, "r2", &[], &["r1"]);
    entry(&mut c, "t0", &["t"], &[]);
    select(&mut c, 1);
    entry(&mut c, "t1", &["t"], &[]);
    entry(&mut c, "t1dep", &[], &["t1"]);
    entry(&mut c, "other1", &["o"], &[]);
    select(&mut c, 0);

    batched(&mut c, "DEPTH 10 KEY a1"); // the whole chain
    batched(&mut c, "DEPTH 1 KEY x1"); // x1 and x2
    batched(&mut c, "DEPTH 0 DEPENDENTS row"); // r1 only
    select(&mut c, 1);
    batched(&mut c, "TAG t"); // db 1: t1 and t1dep, not db 0's t0
    select(&mut c, 0);
    // The default depth is read when the request is applied: KEY y1 queued now, applied
    // with a depth of 1 (the module's choice: a request without DEPTH stores none).
    batched(&mut c, "KEY y1");
    config_set(&mut c, "cache.max-cascade-depth", "1");
    assert_eq!(
        keys(&mut c, &["ALL"]),
        sv(&[
            "a1", "a2", "a3", "a4", "r1", "r2", "t0", "x1", "x2", "x3", "x4", "y1", "y2", "y3",
            "y4"
        ])
    );

    // Applied from database 0: 4 + 2 + 1 + 2 + 2.
    assert_eq!(flush(&mut c), 11);
    assert_eq!(
        keys(&mut c, &["ALL"]),
        sv(&["r2", "t0", "x3", "x4", "y3", "y4"])
    );
    // The client is still on database 0.
    entry(&mut c, "here", &[], &[]);
    assert_eq!(exists(&mut c, "here"), 1);
    select(&mut c, 1);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["other1"]));
    assert_eq!(exists(&mut c, "here"), 0);
    select(&mut c, 0);
    assert_eq!(
        events(&mut c)
            .into_iter()
            .map(|e| (e.0, e.1, e.2))
            .collect::<Vec<_>>(),
        vec![
            ("key".to_string(), "y1".to_string(), 2),
            ("tag".into(), "t".into(), 2),
            ("dependents".into(), "row".into(), 1),
            ("key".into(), "x1".into(), 2),
            ("key".into(), "a1".into(), 4),
        ]
    );

    verify(&mut c);
}

/// The timer applies a request in the database it was queued in, whatever the client selected
/// since, with the cascade.
#[test]
fn the_timer_applies_a_request_in_its_own_database() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "20");
    select(&mut c, 1);
    entry(&mut c, "t2", &["t"], &[]);
    entry(&mut c, "t2dep", &[], &["t2"]);
    entry(&mut c, "t2dep2", &[], &["t2dep"]);
    entry(&mut c, "other1", &["o"], &[]);
    batched(&mut c, "TAG t");
    select(&mut c, 0);
    entry(&mut c, "t2", &["t"], &[]);
    entry(&mut c, "t2dep", &[], &["t2"]);
    select(&mut c, 1);
    eventually("db 1 TAG t applied", || {
        exists(&mut c, "t2") + exists(&mut c, "t2dep") + exists(&mut c, "t2dep2") == 0
    });
    eventually("queue empty", || pending(&mut c).is_empty());
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["other1"]));
    select(&mut c, 0);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["t2", "t2dep"]));
    assert_eq!(events(&mut c), vec![ev("tag", "t", 3, "", "batched")]);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 5. What happens between queueing and applying
// ---------------------------------------------------------------------------------------------

/// The module applies a request as of apply time, not as of queue time: the selector and the
/// cascade are evaluated when it is applied. So a BATCHED `TAG t` removes every entry carrying t
/// then, including one CACHE.SET with t after the request was queued; an entry that lost t in
/// between is kept; one deleted in between is not counted.
#[test]
fn a_request_is_evaluated_when_applied_not_when_queued() {
    let s = Server::start();
    let mut c = s.conn();
    // Through the timer: an entry tagged after queueing is removed when it applies.
    // (Only checked when w2 was written while the request still waited, which PENDING shows.)
    config_set(&mut c, "cache.batch-delay-ms", "300");
    entry(&mut c, "w1", &["w"], &[]);
    batched(&mut c, "TAG w");
    entry(&mut c, "w2", &["w"], &[]);
    let waited = !pending(&mut c).is_empty();
    eventually("TAG w applied", || {
        exists(&mut c, "w1") == 0 && pending(&mut c).is_empty()
    });
    if waited {
        assert_eq!(
            exists(&mut c, "w2"),
            0,
            "w2 was tagged before TAG w applied"
        );
    } else {
        assert_eq!(int(&ok(&mut c, &["DEL", "w2"])), 1);
    }
    assert!(keys(&mut c, &["ALL"]).is_empty());

    // Through FLUSH, with more kinds of change in between.
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    entry(&mut c, "old1", &["t"], &[]);
    entry(&mut c, "old2", &["t"], &[]);
    entry(&mut c, "gone", &["t"], &[]);
    entry(&mut c, "k1", &[], &[]);
    entry(&mut c, "k2", &[], &[]);
    batched(&mut c, "TAG t");
    batched(&mut c, "KEY k1 k2 k3");

    // In between: a new t-tagged entry, a t entry replaced without t, one deleted, k3 created
    // and k2 deleted.
    entry(&mut c, "new", &["t"], &[]);
    entry(&mut c, "newdep", &[], &["new"]);
    entry(&mut c, "old2", &["x"], &[]);
    assert_eq!(int(&ok(&mut c, &["DEL", "gone"])), 1);
    entry(&mut c, "k3", &[], &[]);
    assert_eq!(int(&ok(&mut c, &["DEL", "k2"])), 1);
    assert_eq!(keys(&mut c, &["TAG", "t"]), sv(&["new", "newdep", "old1"]));

    // TAG t as of now: old1, new, newdep; KEY k1 k2 k3 as of now: k1, k3.
    assert_eq!(flush(&mut c), 5);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["old2"]));
    assert_eq!(get(&mut c, "old2").as_deref(), Some("v-old2"));
    assert_eq!(
        events(&mut c)
            .into_iter()
            .map(|e| (e.0, e.1, e.2))
            .collect::<Vec<_>>(),
        vec![
            ("key".to_string(), "k1 k2 k3".to_string(), 2),
            ("tag".into(), "t".into(), 3),
            ("tag".into(), "w".into(), if waited { 2 } else { 1 }),
        ]
    );
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 6. Persistence
// ---------------------------------------------------------------------------------------------

#[test]
fn the_queue_survives_debug_reload() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &[], &["a"]);
    entry(&mut c, "keep", &["k"], &[]);
    select(&mut c, 2);
    entry(&mut c, "z1", &[], &[]);
    entry(&mut c, "z2", &[], &[]);
    batched(&mut c, "DEPTH 0 KEY z1 z2");
    select(&mut c, 0);
    ok(
        &mut c,
        &[
            "CACHE.INVALIDATE",
            "CONTEXT",
            "ctx \u{1}bin",
            "STRATEGY",
            "BATCHED",
            "TAG",
            "t",
        ],
    );
    batched(&mut c, "TAG t");
    let before = pending(&mut c);
    assert_eq!(
        shape(&before),
        vec![
            sh(2, "key", "z1 z2", 0, None, 0),
            sh(0, "tag", "t", -1, Some("ctx \u{1}bin"), 1),
        ]
    );
    let d0 = digest(&mut c);

    assert_eq!(ok(&mut c, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_eq!(pending(&mut c), before, "same rows, same times");
    assert_eq!(digest(&mut c), d0);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["a", "b", "keep"]));
    verify(&mut c);

    // Reloading twice neither duplicates nor drops it.
    assert_eq!(ok(&mut c, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_eq!(pending(&mut c), before);

    assert_eq!(flush(&mut c), 4);
    assert!(pending(&mut c).is_empty());
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    select(&mut c, 2);
    assert!(keys(&mut c, &["ALL"]).is_empty());
    select(&mut c, 0);
    // An empty queue reloads as empty.
    assert_eq!(ok(&mut c, &["DEBUG", "RELOAD"]), Value::Okay);
    assert!(pending(&mut c).is_empty());
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    verify(&mut c);
}

#[test]
fn the_queue_survives_a_restart_from_the_rdb_and_applies_when_due() {
    let mut s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "long", &["l"], &[]);
    entry(&mut c, "short", &["s"], &[]);
    entry(&mut c, "sdep", &[], &["short"]);
    entry(&mut c, "keep", &["k"], &[]);
    select(&mut c, 1);
    entry(&mut c, "s1", &["s"], &[]);
    select(&mut c, 0);
    // One request far off (stays pending across the restart), two due soon after it.
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    batched(&mut c, "CONTEXT far TAG l");
    config_set(&mut c, "cache.batch-delay-ms", "1500");
    batched(&mut c, "TAG s");
    select(&mut c, 1);
    batched(&mut c, "TAG s");
    select(&mut c, 0);
    let before = pending(&mut c);
    assert_eq!(before.len(), 3);
    assert_eq!(ok(&mut c, &["SAVE"]), Value::Okay);
    drop(c);

    s.restart("SAVE");
    let mut c = s.conn();
    let rows = pending(&mut c);
    let now = server_ms(&mut c);
    // The far one is there with its own absolute times; the others too unless already due.
    assert_eq!(rows[0], before[0]);
    if now < before[1].due_ms {
        assert_eq!(rows, before, "restored before they were due");
    }
    eventually("the 1500 ms requests applied after the restart", || {
        exists(&mut c, "short") + exists(&mut c, "sdep") == 0
    });
    eventually("only the far request left", || pending(&mut c).len() == 1);
    assert_eq!(pending(&mut c), vec![before[0].clone()]);
    select(&mut c, 1);
    eventually("db 1 TAG s applied", || exists(&mut c, "s1") == 0);
    select(&mut c, 0);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep", "long"]));
    let evs = events(&mut c);
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(evs.iter().all(|e| e.0 == "tag" && e.1 == "s"), "{evs:?}");
    assert_eq!(
        evs.iter().map(|e| e.2).sum::<i64>(),
        3,
        "short, sdep and db 1's s1"
    );
    assert_eq!(flush(&mut c), 1);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    assert_eq!(events(&mut c)[0], ev("tag", "l", 1, "far", "batched"));
    verify(&mut c);
}

/// With save points configured, a plain SHUTDOWN saves, and the queue with it.
#[test]
fn the_queue_survives_a_plain_shutdown_with_save_points() {
    let mut s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "save", "3600 1");
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "keep", &[], &[]);
    batched(&mut c, "TAG t");
    let before = pending(&mut c);
    drop(c);
    s.restart("NOW");
    let mut c = s.conn();
    assert_eq!(pending(&mut c), before);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["a", "keep"]));
    assert_eq!(flush(&mut c), 1);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    verify(&mut c);
}

/// With AOF persistence, a SHUTDOWN keeps every write; the issue says pending work is not lost
/// on SHUTDOWN (applied or persisted): after the restart the request must still be applied.
#[test]
fn pending_work_is_not_lost_on_shutdown_with_aof() {
    let mut s = Server::with(&[], &["--appendonly", "yes"]);
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "1500");
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &["t"], &[]);
    entry(&mut c, "keep", &[], &[]);
    batched(&mut c, "TAG t");
    drop(c);
    s.restart("NOW");
    let mut c = s.conn();
    assert_eq!(
        exists(&mut c, "keep"),
        1,
        "the AOF kept the data across the restart"
    );
    eventually("TAG t applied before or after the restart", || {
        exists(&mut c, "a") + exists(&mut c, "b") == 0
    });
    assert!(pending(&mut c).is_empty());
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 7. Replication
// ---------------------------------------------------------------------------------------------

/// Keys of every database 0..=2 (CACHE.KEYS ALL), leaving the client on database 0.
fn all_keys(c: &mut Connection) -> Vec<Vec<String>> {
    let out = (0..3)
        .map(|db| {
            select(c, db);
            keys(c, &["ALL"])
        })
        .collect();
    select(c, 0);
    out
}

#[test]
fn batched_requests_apply_on_the_master_and_replicate_as_deletes() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    // The replica's own settings never matter: it applies nothing itself.
    config_set(&mut rc, "cache.batch-delay-ms", "10");
    config_set(&mut rc, "cache.max-cascade-depth", "0");
    entry(&mut mc, "a", &["t"], &[]);
    entry(&mut mc, "b", &["t"], &[]);
    entry(&mut mc, "c", &[], &["a"]);
    entry(&mut mc, "keep", &["k"], &[]);
    entry(&mut mc, "p", &["p"], &[]);
    entry(&mut mc, "pdep", &[], &["p"]);
    select(&mut mc, 1);
    entry(&mut mc, "x", &["t"], &[]);
    entry(&mut mc, "y", &["u"], &[]);
    select(&mut mc, 0);
    sync(&mut mc, &mut rc);
    let start = all_keys(&mut mc);
    assert_eq!(start[0], sv(&["a", "b", "c", "keep", "p", "pdep"]));
    assert_eq!(all_keys(&mut rc), start);

    // Applied by the master's timer: its deletes reach the replica, in their databases.
    config_set(&mut mc, "cache.batch-delay-ms", "20");
    select(&mut mc, 1);
    batched(&mut mc, "TAG u");
    select(&mut mc, 0);
    batched(&mut mc, "TAG p");
    eventually("master applied both", || {
        exists(&mut mc, "p") + exists(&mut mc, "pdep") == 0 && pending(&mut mc).is_empty()
    });
    sync(&mut mc, &mut rc);
    let mid = vec![sv(&["a", "b", "c", "keep"]), sv(&["x"]), vec![]];
    assert_eq!(all_keys(&mut mc), mid);
    assert_eq!(all_keys(&mut rc), mid);
    verify(&mut mc);
    verify(&mut rc);

    // Queued on the master with a long delay: the queue entry replicates (the replica lists the
    // same queue) but no data changes: the replica keeps everything until the master applies it.
    config_set(&mut mc, "cache.batch-delay-ms", "5000");
    let off0 = repl_offset(&mut mc);
    let d0 = digest(&mut mc);
    batched(&mut mc, "TAG t");
    select(&mut mc, 1);
    batched(&mut mc, "TAG t");
    select(&mut mc, 0);
    assert_eq!(pending(&mut mc).len(), 2);
    assert!(repl_offset(&mut mc) > off0, "the queue entries replicate");
    assert_eq!(int(&ok(&mut mc, &["WAIT", "1", "5000"])), 1);
    assert_eq!(digest(&mut rc), d0);
    assert_eq!(all_keys(&mut rc), mid);
    assert_eq!(get(&mut rc, "a").as_deref(), Some("v-a"));
    verify(&mut rc);

    // Applied on the master (FLUSH): the same.
    assert_eq!(flush(&mut mc), 4);
    assert!(repl_offset(&mut mc) > off0);
    sync(&mut mc, &mut rc);
    let end = vec![sv(&["keep"]), vec![], vec![]];
    assert_eq!(all_keys(&mut mc), end);
    assert_eq!(all_keys(&mut rc), end);
    assert_eq!(digest(&mut mc), digest(&mut rc));
    // The replica records no invalidation of its own; the master recorded each request.
    assert!(events(&mut rc).is_empty());
    assert_eq!(events(&mut mc).len(), 4);
    assert_eq!(by_strategy(&mut mc, "batched"), 4);
    assert_eq!(by_strategy(&mut rc, "batched"), 0);
    verify(&mut mc);
    verify(&mut rc);
}

/// A replica keeps a copy of the master's queue (CACHE.PENDING ADD/COALESCE/DONE replicate) but
/// never applies it, and refuses CACHE.PENDING (a write-flagged command: FLUSH deletes keys).
/// Promoted, it lists the same queue and applies it.
#[test]
fn a_promoted_replica_takes_over_the_masters_queue() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    config_set(&mut mc, "cache.batch-delay-ms", "5000");
    entry(&mut mc, "a", &["t"], &[]);
    entry(&mut mc, "b", &["u"], &[]);
    sync(&mut mc, &mut rc);
    batched(&mut mc, "TAG t");
    batched(&mut mc, "TAG t");
    batched(&mut mc, "TAG u");
    assert_eq!(int(&ok(&mut mc, &["WAIT", "1", "5000"])), 1);
    assert_eq!(
        err(&mut rc, &["CACHE.PENDING"]),
        "READONLY You can't write against a read only replica."
    );
    let on_master = pending(&mut mc);
    assert_eq!(on_master.len(), 2);
    assert_eq!(on_master[0].coalesced, 1);
    assert_eq!(
        keys(&mut rc, &["ALL"]),
        sv(&["a", "b"]),
        "the replica applies nothing"
    );
    ok(&mut rc, &["REPLICAOF", "NO", "ONE"]);
    assert_eq!(
        pending(&mut rc),
        on_master,
        "the promoted replica has the master's queue"
    );
    assert_eq!(flush(&mut rc), 2);
    assert!(keys(&mut rc, &["ALL"]).is_empty());
    assert!(pending(&mut rc).is_empty());
    verify(&mut mc);
    verify(&mut rc);
}

#[test]
fn a_replica_refuses_batched_requests_and_flush() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    entry(&mut mc, "a", &["t"], &[]);
    entry(&mut mc, "b", &[], &["a"]);
    sync(&mut mc, &mut rc);
    let d0 = digest(&mut rc);
    let ro = "READONLY You can't write against a read only replica.";
    for parts in [
        &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "TAG", "t"][..],
        &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "ALL"],
        &["CACHE.PENDING", "FLUSH"],
    ] {
        assert_eq!(err(&mut rc, parts), ro, "{parts:?}");
        assert_eq!(digest(&mut rc), d0, "after {parts:?}");
    }
    assert_eq!(keys(&mut rc, &["ALL"]), sv(&["a", "b"]));
    assert_eq!(digest(&mut mc), d0);
    assert!(pending(&mut mc).is_empty());
    verify(&mut mc);
    verify(&mut rc);
}

/// A replica that syncs while the master has a queue: the master still applies it and the
/// replica follows; the replica applies nothing itself.
#[test]
fn a_replica_attached_while_requests_wait_follows_the_master() {
    let m = master();
    let mut mc = m.conn();
    config_set(&mut mc, "cache.batch-delay-ms", "5000");
    entry(&mut mc, "a", &["t"], &[]);
    entry(&mut mc, "keep", &[], &[]);
    batched(&mut mc, "TAG t");
    let queued = pending(&mut mc);

    let r = Server::start();
    let mut rc = r.conn();
    ok(
        &mut rc,
        &["REPLICAOF", "127.0.0.1", m.port.to_string().as_str()],
    );
    wait_link(&mut rc);
    sync(&mut mc, &mut rc);
    assert_eq!(keys(&mut rc, &["ALL"]), sv(&["a", "keep"]));
    assert_eq!(pending(&mut mc), queued);

    assert_eq!(flush(&mut mc), 1);
    sync(&mut mc, &mut rc);
    assert_eq!(keys(&mut mc, &["ALL"]), sv(&["keep"]));
    assert_eq!(keys(&mut rc, &["ALL"]), sv(&["keep"]));
    assert!(events(&mut rc).is_empty(), "the replica applied nothing");
    verify(&mut mc);
    verify(&mut rc);
}

// ---------------------------------------------------------------------------------------------
// 8. Config
// ---------------------------------------------------------------------------------------------

#[test]
fn batch_delay_config_has_its_default_and_range() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(config_get(&mut c, "cache.batch-delay-ms"), "100");
    let range = "ERR CONFIG SET failed (possibly related to argument 'cache.batch-delay-ms') - argument must be between 10 and 5000 inclusive";
    let unparsable = "ERR CONFIG SET failed (possibly related to argument 'cache.batch-delay-ms') - argument couldn't be parsed into an integer";
    for (value, want) in [
        ("9", range),
        ("0", range),
        ("-1", range),
        ("5001", range),
        ("abc", unparsable),
    ] {
        assert_eq!(
            err(&mut c, &["CONFIG", "SET", "cache.batch-delay-ms", value]),
            want,
            "CONFIG SET cache.batch-delay-ms {value}"
        );
        assert_eq!(config_get(&mut c, "cache.batch-delay-ms"), "100");
    }
    for value in ["10", "5000"] {
        config_set(&mut c, "cache.batch-delay-ms", value);
        assert_eq!(config_get(&mut c, "cache.batch-delay-ms"), value);
    }
    // The delay in force is the one a request gets.
    batched(&mut c, "ALL");
    let r = pending(&mut c);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].due_ms - r[0].queued_ms, 5000);
    assert_eq!(
        err(&mut c, &["CONFIG", "SET", "cache.batch-delay-ms", "5001"]),
        range
    );
    batched(&mut c, "TAG x");
    let r = pending(&mut c);
    assert_eq!(r[1].due_ms - r[1].queued_ms, 5000, "the old value acts");
    assert_eq!(flush(&mut c), 0);
    verify(&mut c);
}

#[test]
fn batch_delay_can_be_set_as_a_module_argument() {
    let s = Server::with(&["batch-delay-ms", "4321"], &[]);
    let mut c = s.conn();
    assert_eq!(config_get(&mut c, "cache.batch-delay-ms"), "4321");
    entry(&mut c, "a", &["t"], &[]);
    batched(&mut c, "TAG t");
    let r = pending(&mut c);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].due_ms - r[0].queued_ms, 4321);
    assert_eq!(get(&mut c, "a").as_deref(), Some("v-a"));
    assert_eq!(flush(&mut c), 1);
    assert!(keys(&mut c, &["ALL"]).is_empty());
    verify(&mut c);
}

/// Issue 21, defect 5: a queued request follows its data through SWAPDB, as LAZY marks do: on
/// the master, on the replica's copy of the queue (which replays the same SWAPDB; checked once
/// promoted, as a replica refuses CACHE.PENDING), and after a restart from the AOF (which
/// replays the queue and the SWAPDB in their order).
#[test]
fn a_request_follows_its_data_through_swapdb() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    config_set(&mut mc, "cache.batch-delay-ms", "5000");
    config_set(&mut rc, "cache.batch-delay-ms", "5000");
    entry(&mut mc, "a", &["t"], &[]);
    entry(&mut mc, "keep", &["k"], &[]);
    select(&mut mc, 1);
    entry(&mut mc, "b", &["t"], &[]);
    select(&mut mc, 0);
    // Queued for database 0's data (a); then the data sets trade places.
    batched(&mut mc, "TAG t");
    ok(&mut mc, &["SWAPDB", "0", "1"]);
    let dbs = |c: &mut Connection| pending(c).iter().map(|p| p.db).collect::<Vec<_>>();
    assert_eq!(dbs(&mut mc), vec![1], "the request went with its data");
    // Queued now for database 0 (b's data, by KEY): another request, in database 0.
    batched(&mut mc, "KEY nothing");
    ok(&mut mc, &["SWAPDB", "0", "1"]);
    ok(&mut mc, &["SWAPDB", "1", "0"]);
    assert_eq!(dbs(&mut mc), vec![1, 0]);
    sync(&mut mc, &mut rc);
    // The replica, promoted, holds the same queue.
    ok(&mut rc, &["REPLICAOF", "NO", "ONE"]);
    assert_eq!(dbs(&mut rc), vec![1, 0], "the replica's copy followed too");
    // Applied where the data went: a (now in database 1) goes, b (never targeted) stays.
    let end = vec![sv(&["b"]), sv(&["keep"]), vec![]];
    assert_eq!(flush(&mut mc), 1);
    assert_eq!(all_keys(&mut mc), end, "a went, b stayed");
    assert_eq!(flush(&mut rc), 1);
    assert_eq!(all_keys(&mut rc), end);
    verify(&mut mc);
    verify(&mut rc);
}

#[test]
fn a_request_follows_its_data_through_swapdb_across_an_aof_restart() {
    let mut s = Server::with(&[], &["--appendonly", "yes"]);
    {
        let mut c = s.conn();
        config_set(&mut c, "cache.batch-delay-ms", "5000");
        entry(&mut c, "a", &["t"], &[]);
        select(&mut c, 1);
        entry(&mut c, "b", &["t"], &[]);
        select(&mut c, 0);
        batched(&mut c, "TAG t");
        ok(&mut c, &["SWAPDB", "0", "1"]);
        assert_eq!(
            pending(&mut c).iter().map(|p| p.db).collect::<Vec<_>>(),
            vec![1]
        );
    }
    s.restart("NOSAVE");
    let mut c = s.conn();
    // Still queued unless its due time (5 s after it was queued) passed during the restart.
    let dbs: Vec<i64> = pending(&mut c).iter().map(|p| p.db).collect();
    assert!(
        dbs.is_empty() || dbs == vec![1],
        "replayed from the AOF: {dbs:?}"
    );
    flush(&mut c);
    assert_eq!(all_keys(&mut c), vec![sv(&["b"]), vec![], vec![]]);
    verify(&mut c);
}

/// A request selects when it is applied, in the data set it was queued for: an entry MOVEd out
/// of that database before is not selected (it left the data set, as with IMMEDIATE run then);
/// FLUSHDB empties the data set but leaves the request, which selects what was written since.
#[test]
fn a_request_selects_at_application_after_move_and_flushdb() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &["t"], &[]);
    batched(&mut c, "KEY a b");
    assert_eq!(int(&ok(&mut c, &["MOVE", "a", "1"])), 1);
    assert_eq!(flush(&mut c), 1);
    assert_eq!(all_keys(&mut c), vec![vec![], sv(&["a"]), vec![]]);
    batched(&mut c, "TAG t");
    ok(&mut c, &["FLUSHDB"]);
    assert_eq!(pending(&mut c).len(), 1, "FLUSHDB leaves the request");
    entry(&mut c, "c", &["t"], &[]);
    entry(&mut c, "d", &["u"], &[]);
    assert_eq!(flush(&mut c), 1);
    assert_eq!(all_keys(&mut c), vec![sv(&["d"]), sv(&["a"]), vec![]]);
    verify(&mut c);
}
