//! Metrics and advice against a real server (DESIGN.md §3 "Metrics and advice"): exact
//! CACHE.STATS figures after a scripted sequence, index counters going back to zero whatever
//! removes the entries, every CACHE.RECOMMEND rule on both sides of its threshold, the alert
//! level and its log line, RESP2/RESP3/JSON reply shapes, CACHE.EVENTS, CACHE.HOTKEYS,
//! CACHE.RESET, the module configs, INFO cache and the latency monitor event.

mod common;
use common::*;

use serde_json::Value as J;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `CACHE.SET key value [TAGS n ..] [DEPENDS n ..] [extra ..]` as command parts.
fn set_parts(key: &str, value: &str, tags: &[&str], deps: &[&str], extra: &[&str]) -> Vec<String> {
    let mut p: Vec<String> = vec!["CACHE.SET".into(), key.into(), value.into()];
    p.extend(extra.iter().map(|s| s.to_string()));
    if !tags.is_empty() {
        p.push("TAGS".into());
        p.push(tags.len().to_string());
        p.extend(tags.iter().map(|s| s.to_string()));
    }
    if !deps.is_empty() {
        p.push("DEPENDS".into());
        p.push(deps.len().to_string());
        p.extend(deps.iter().map(|s| s.to_string()));
    }
    p
}

/// One entry; must reply OK.
fn entry(c: &mut Connection, key: &str, value: &str, tags: &[&str], deps: &[&str]) {
    let p = set_parts(key, value, tags, deps, &[]);
    assert_eq!(ok(c, &p), Value::Okay, "{p:?}");
}

/// Runs many commands in pipelines; every reply is returned (an error reply fails the test).
fn run_all(c: &mut Connection, cmds: &[Vec<String>]) -> Vec<Value> {
    let mut out = Vec::with_capacity(cmds.len());
    for chunk in cmds.chunks(500) {
        let mut p = redis::pipe();
        for parts in chunk {
            let mut k = redis::cmd(&parts[0]);
            for a in &parts[1..] {
                k.arg(a);
            }
            p.add_command(k);
        }
        let v: Vec<Value> = p.query(c).expect("pipeline");
        out.extend(v);
    }
    out
}

/// Many entries with the same value, tags and dependencies; all must reply OK.
fn entries(c: &mut Connection, keys: &[String], value: &str, tags: &[&str], deps: &[&str]) {
    let cmds: Vec<Vec<String>> = keys
        .iter()
        .map(|k| set_parts(k, value, tags, deps, &[]))
        .collect();
    for (k, v) in keys.iter().zip(run_all(c, &cmds)) {
        assert_eq!(v, Value::Okay, "CACHE.SET {k}");
    }
}

/// `prefix0 .. prefix{n-1}`.
fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn inv(c: &mut Connection, args: &[&str]) -> i64 {
    let mut parts = vec!["CACHE.INVALIDATE"];
    parts.extend_from_slice(args);
    int(&ok(c, &parts))
}

/// A field of a JSON document by dotted path (`rates.last_hour`).
fn at<'a>(j: &'a J, path: &str) -> &'a J {
    path.split('.').fold(j, |v, k| {
        v.get(k)
            .unwrap_or_else(|| panic!("no {k} (of {path}) in {v}"))
    })
}

fn at_u(j: &J, path: &str) -> u64 {
    at(j, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not an unsigned integer: {}", at(j, path)))
}

fn at_f(j: &J, path: &str) -> f64 {
    at(j, path)
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {}", at(j, path)))
}

/// One STATS figure now.
fn stat(c: &mut Connection, path: &str) -> u64 {
    at_u(&stats(c), path)
}

/// Floats compare within a relative 1e-9 (text round trips), everything else exactly; object
/// key order is not compared here (see `field_names` for that).
fn json_close(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                (x - y).abs() <= 1e-9 * x.abs().max(1.0)
            } else {
                x == y
            }
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_close(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

fn assert_json(actual: &J, expected: &J, what: &str) {
    assert!(
        json_close(actual, expected),
        "{what}:\n actual   {actual:#}\n expected {expected:#}"
    );
}

/// A RESP3 reply as JSON: maps become objects, doubles numbers.
fn resp3_json(v: &Value) -> J {
    match v {
        Value::Nil => J::Null,
        Value::Int(n) => J::from(*n),
        Value::Double(x) => J::from(*x),
        Value::BulkString(_) | Value::SimpleString(_) => J::String(text(v)),
        Value::Array(a) => J::Array(a.iter().map(resp3_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (text(k), resp3_json(v))).collect()),
        other => panic!("unexpected RESP3 value {other:?}"),
    }
}

/// A RESP2 reply as JSON, read with the shape of `like` (the JSON form of the same reply): a flat
/// array where `like` has an object is a map, a bulk string where it has a float is a double.
fn resp2_json(v: &Value, like: &J) -> J {
    match (like, v) {
        (J::Object(shape), Value::Array(a)) => {
            assert!(a.len() % 2 == 0, "odd flat map {a:?}");
            J::Object(
                a.chunks(2)
                    .map(|p| {
                        let k = text(&p[0]);
                        let sub = shape.get(&k).cloned().unwrap_or(J::Null);
                        (k, resp2_json(&p[1], &sub))
                    })
                    .collect(),
            )
        }
        (J::Array(items), Value::Array(a)) => {
            let first = items.first().cloned().unwrap_or(J::Null);
            J::Array(a.iter().map(|x| resp2_json(x, &first)).collect())
        }
        (J::Number(n), Value::BulkString(_)) if n.is_f64() => {
            let t = text(v);
            J::from(
                t.parse::<f64>()
                    .unwrap_or_else(|_| panic!("not a double: {t}")),
            )
        }
        (_, Value::Map(_) | Value::Double(_)) => panic!("RESP3 value {v:?} on a RESP2 connection"),
        _ => resp3_json(v),
    }
}

/// The field names of a map reply, in reply order.
fn field_names(v: &Value) -> Vec<String> {
    map(v).into_iter().map(|(k, _)| k).collect()
}

/// A map reply's pairs as (name, integer), in reply order.
fn int_pairs(v: &Value) -> Vec<(String, i64)> {
    map(v).into_iter().map(|(k, v)| (k, int(&v))).collect()
}

/// Checks the figures that depend on timing (they cannot be exact) for consistency, and nulls
/// them so the rest of the document can be compared exactly.
fn take_timing(j: &mut J) {
    let invalidations = at_u(j, "total_invalidations");
    let avg = at_f(j, "efficiency.avg_duration_ms");
    let max = at_f(j, "efficiency.max_duration_ms");
    assert!(avg >= 0.0 && avg <= max + 1e-9, "avg {avg} max {max}");
    if invalidations == 0 {
        assert_eq!((avg, max), (0.0, 0.0));
    }
    for op in ["get", "set", "invalidate"] {
        let o = at(j, &format!("operations.{op}")).clone();
        let count = at_u(&o, "count");
        let (p50, p99, mx) = (at_u(&o, "p50_us"), at_u(&o, "p99_us"), at_u(&o, "max_us"));
        let avg = at_f(&o, "avg_us");
        assert!(p50 <= p99 && p99 <= mx, "{op}: {o}");
        assert!(avg <= mx as f64 + 1e-9, "{op}: {o}");
        assert!(at_u(&o, "slow") <= count, "{op}: {o}");
        if count == 0 {
            assert_eq!((p50, p99, mx, avg), (0, 0, 0, 0.0), "{op}: {o}");
        }
        for f in ["avg_us", "p50_us", "p99_us", "max_us", "slow"] {
            j["operations"][op][f] = J::Null;
        }
    }
    assert!(at_u(j, "metrics_since_ms") > 0);
    let _ = at_u(j, "memory.index_bytes");
    j["efficiency"]["avg_duration_ms"] = J::Null;
    j["efficiency"]["max_duration_ms"] = J::Null;
    // The structures' estimates vary with the build (tests/memory.rs checks them); the total
    // is their sum.
    let sum: u64 = j["memory"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "total_bytes")
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(at_u(j, "memory.total_bytes"), sum);
    for f in [
        "index_bytes",
        "metrics_bytes",
        "batch_bytes",
        "history_bytes",
        "total_bytes",
    ] {
        j["memory"][f] = J::Null;
    }
    j["metrics_since_ms"] = J::Null;
}

/// Operation figures with the timing parts nulled (see `take_timing`).
fn op(count: u64) -> J {
    serde_json::json!({"count": count, "avg_us": null, "p50_us": null, "p99_us": null, "max_us": null, "slow": null})
}

/// (entries, tags, tagged_entries, resources, dependency_edges, value_bytes) from CACHE.STATS.
fn counters(c: &mut Connection) -> [u64; 6] {
    let j = stats(c);
    [
        "entries",
        "tags",
        "tagged_entries",
        "resources",
        "dependency_edges",
        "memory.value_bytes",
    ]
    .map(|p| at_u(&j, p))
}

/// (expired, evicted, deleted) from CACHE.STATS.
fn removals(c: &mut Connection) -> [u64; 3] {
    let j = stats(c);
    ["removals.expired", "removals.evicted", "removals.deleted"].map(|p| at_u(&j, p))
}

/// The `INFO cache` fields, in order.
fn info_cache(c: &mut Connection) -> Vec<(String, String)> {
    let text: String = redis::cmd("INFO")
        .arg("cache")
        .query(c)
        .expect("INFO cache");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("INFO line {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn info_get(c: &mut Connection, name: &str) -> String {
    info_cache(c)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in INFO cache"))
}

/// One CACHE.RECOMMEND item.
#[derive(Debug, Clone)]
struct Rec {
    severity: String,
    issue: String,
    message: String,
    suggestions: Vec<String>,
}

fn recommend(c: &mut Connection) -> Vec<Rec> {
    list(&ok(c, &["CACHE.RECOMMEND"]))
        .iter()
        .map(|r| {
            assert_eq!(
                field_names(r),
                ["severity", "issue", "message", "suggestions"],
                "{r:?}"
            );
            Rec {
                severity: text(&field(r, "severity")),
                issue: text(&field(r, "issue")),
                message: text(&field(r, "message")),
                suggestions: strings(&field(r, "suggestions")),
            }
        })
        .collect()
}

/// The issue titles CACHE.RECOMMEND lists now, in reply order.
fn issues(c: &mut Connection) -> Vec<String> {
    recommend(c).into_iter().map(|r| r.issue).collect()
}

fn find_rec(c: &mut Connection, issue: &str) -> Option<Rec> {
    recommend(c).into_iter().find(|r| r.issue == issue)
}

fn has(c: &mut Connection, issue: &str) -> bool {
    find_rec(c, issue).is_some()
}

fn must_have(c: &mut Connection, issue: &str, why: &str) -> Rec {
    find_rec(c, issue).unwrap_or_else(|| panic!("{issue} missing ({why}): {:?}", issues(c)))
}

fn must_not_have(c: &mut Connection, issue: &str, why: &str) {
    let all = recommend(c);
    assert!(
        !all.iter().any(|r| r.issue == issue),
        "{issue} listed ({why}): {all:#?}"
    );
}

/// One CACHE.EVENTS item as JSON (any protocol).
fn events(c: &mut Connection, args: &[&str]) -> Vec<J> {
    let mut parts = vec!["CACHE.EVENTS"];
    parts.extend_from_slice(args);
    list(&ok(c, &parts))
        .iter()
        .map(|e| {
            assert_eq!(
                field_names(e),
                [
                    "timestamp_ms",
                    "type",
                    "pattern",
                    "keys_invalidated",
                    "duration_us",
                    "context",
                    "strategy"
                ],
                "{e:?}"
            );
            J::Object(
                map(e)
                    .into_iter()
                    .map(|(k, v)| {
                        let j = match &v {
                            Value::Int(n) => J::from(*n),
                            Value::Nil => J::Null,
                            _ => J::String(text(&v)),
                        };
                        (k, j)
                    })
                    .collect(),
            )
        })
        .collect()
}

/// (type, pattern, keys_invalidated, context, strategy) of events, in order.
fn event_summary(ev: &[J]) -> Vec<(String, String, u64, String, String)> {
    ev.iter()
        .map(|e| {
            (
                at(e, "type").as_str().unwrap_or_default().to_string(),
                at(e, "pattern").as_str().unwrap_or_default().to_string(),
                at_u(e, "keys_invalidated"),
                at(e, "context").as_str().unwrap_or_default().to_string(),
                at(e, "strategy").as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn ev(
    kind: &str,
    pattern: &str,
    keys: u64,
    context: &str,
) -> (String, String, u64, String, String) {
    (
        kind.into(),
        pattern.into(),
        keys,
        context.into(),
        "immediate".into(),
    )
}

/// CACHE.HOTKEYS [args] as (key, hits) pairs; each item must be a two-element array.
fn hotkeys(c: &mut Connection, args: &[&str]) -> Vec<(String, i64)> {
    let mut parts = vec!["CACHE.HOTKEYS"];
    parts.extend_from_slice(args);
    list(&ok(c, &parts))
        .iter()
        .map(|p| match p {
            Value::Array(a) if a.len() == 2 => (text(&a[0]), int(&a[1])),
            other => panic!("a CACHE.HOTKEYS item is [key, hits]: {other:?}"),
        })
        .collect()
}

/// Polls `done` every 10 ms for up to 5 s.
fn wait_for(c: &mut Connection, what: &str, mut done: impl FnMut(&mut Connection) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(c) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Gives each key a 100 ms TTL and waits until all of them have expired (EXISTS makes the server
/// expire them on access); the expired counter must grow by exactly their number.
///
/// The TTL is not 1 ms: PEXPIRE reads the clock twice, and a key whose deadline has passed by the
/// second read is deleted at once (a `del`, counted as deleted, not expired). A 1 ms TTL lost
/// that race on a loaded machine.
fn expire_all(c: &mut Connection, keys: &[String]) {
    let before = stat(c, "removals.expired");
    let cmds: Vec<Vec<String>> = keys
        .iter()
        .map(|k| vec!["PEXPIRE".into(), k.clone(), "100".into()])
        .collect();
    for (k, v) in keys.iter().zip(run_all(c, &cmds)) {
        assert_eq!(v, Value::Int(1), "PEXPIRE {k}");
    }
    wait_for(c, "the entries to expire", |c| {
        let mut parts = vec!["EXISTS".to_string()];
        parts.extend(keys.iter().cloned());
        int(&ok(c, &parts)) == 0
    });
    assert_eq!(
        stat(c, "removals.expired"),
        before + keys.len() as u64,
        "each expiry counts once"
    );
}

/// Reads every key once with one CACHE.MGET (all must be hits).
fn read_all(c: &mut Connection, keys: &[String]) {
    let mut parts = vec!["CACHE.MGET".to_string()];
    parts.extend(keys.iter().cloned());
    let got = list(&ok(c, &parts));
    assert!(got.iter().all(|v| *v != Value::Nil), "a read missed");
}

/// Evicts every key (maxmemory 1 with allkeys-lru), then lifts the limit.
fn evict_everything(c: &mut Connection) {
    config_set(c, "maxmemory-policy", "allkeys-lru");
    config_set(c, "maxmemory", "1");
    wait_for(c, "eviction", |c| int(&ok(c, &["DBSIZE"])) == 0);
    config_set(c, "maxmemory", "0");
}

// ---------------------------------------------------------------------------------------------
// 1. Exact figures after a scripted sequence
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_are_exact_after_a_scripted_sequence() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(ok(&mut c, &["SET", "user:9", "plain"]), Value::Okay);

    entry(
        &mut c,
        "user:1",
        "alice",
        &["user:1", "users"],
        &["db:users:1"],
    );
    entry(
        &mut c,
        "user:2",
        "bob",
        &["user:2", "users"],
        &["db:users:2"],
    );
    entry(&mut c, "user:3", "carol", &["users"], &[]);
    entry(
        &mut c,
        "page:home",
        "<html>",
        &["pages"],
        &["user:1", "user:2"],
    );
    entry(&mut c, "page:about", "about", &[], &["page:home"]);
    entry(&mut c, "post:1", "p1", &["posts"], &["db:posts"]);
    entry(&mut c, "post:2", "p2", &["posts"], &["db:posts"]);
    entry(&mut c, "misc", "m", &[], &[]);
    // 8 entries; tags user:1 user:2 users pages posts; 6 tagged entries; resources db:users:1
    // db:users:2 user:1 user:2 page:home db:posts; 7 dependency links; 29 value bytes.
    assert_eq!(counters(&mut c), [8, 5, 6, 6, 7, 29]);

    // Lookups: 5 hits, 3 misses (a plain string key read by MGET is a miss).
    assert_eq!(get(&mut c, "user:1").as_deref(), Some("alice"));
    assert_eq!(get(&mut c, "user:1").as_deref(), Some("alice"));
    assert_eq!(get(&mut c, "nope"), None);
    assert_eq!(get(&mut c, "misc").as_deref(), Some("m"));
    let got = list(&ok(
        &mut c,
        &["CACHE.MGET", "user:2", "post:1", "nope2", "user:9"],
    ));
    assert_eq!(
        got,
        vec![
            Value::BulkString(b"bob".to_vec()),
            Value::BulkString(b"p1".to_vec()),
            Value::Nil,
            Value::Nil
        ]
    );
    // A rejected lookup counts neither a miss nor an operation.
    let d = digest(&mut c);
    assert_eq!(
        err(&mut c, &["CACHE.GET", "user:9"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(
        err(&mut c, &["CACHE.GET", "a", "b"]),
        "ERR wrong number of arguments for 'cache.get' command"
    );
    assert_eq!(digest(&mut c), d);
    let j = stats(&mut c);
    assert_eq!((at_u(&j, "hits"), at_u(&j, "misses")), (5, 3));
    assert_eq!(at_f(&j, "hit_rate"), 62.5);
    assert_eq!(at_u(&j, "operations.get.count"), 5);
    assert_eq!(
        hotkeys(&mut c, &[]),
        pairs(&[("user:1", 2), ("misc", 1), ("post:1", 1), ("user:2", 1)])
    );

    // Invalidations: every selector, with and without CONTEXT, one cascade.
    assert_eq!(inv(&mut c, &["CONTEXT", "signup", "TAG", "user:1"]), 3); // + page:home, page:about
    assert_eq!(
        keys(&mut c, &["ALL"]),
        ["misc", "post:1", "post:2", "user:2", "user:3"]
    );
    assert_eq!(inv(&mut c, &["KEY", "user:2", "nope"]), 1);
    assert_eq!(
        inv(
            &mut c,
            &[
                "CONTEXT",
                "nightly",
                "STRATEGY",
                "IMMEDIATE",
                "PATTERN",
                "post:*"
            ]
        ),
        2
    );
    assert_eq!(inv(&mut c, &["NAMESPACE", "user"]), 1);
    assert_eq!(
        bytes(&ok(&mut c, &["GET", "user:9"])),
        Some(b"plain".to_vec())
    );
    assert_eq!(
        inv(&mut c, &["CONTEXT", "signup", "DEPENDENTS", "db:users:1"]),
        0
    );
    assert_eq!(inv(&mut c, &["TAG", "user:1"]), 0);
    // Rejected invalidations are not counted.
    let d = digest(&mut c);
    assert_eq!(
        err(&mut c, &["CACHE.INVALIDATE", "TAG"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["CACHE.INVALIDATE", "BOGUS", "x"]),
        "ERR unknown selector 'BOGUS', expected KEY, TAG, PATTERN, NAMESPACE, ALL or DEPENDENTS"
    );
    assert_eq!(digest(&mut c), d);
    entry(&mut c, "cfg:a", "x", &[], &["file:/etc/app.conf"]);
    entry(&mut c, "cfg:b", "yy", &[], &["cfg:a"]);
    assert_eq!(
        inv(&mut c, &["DEPTH", "0", "DEPENDENTS", "file:/etc/app.conf"]),
        1
    );
    assert_eq!(keys(&mut c, &["ALL"]), ["cfg:b", "misc"]);
    assert_eq!(inv(&mut c, &["ALL"]), 2);
    entry(&mut c, "keep", "12345", &["a", "b"], &["r"]);

    // The whole document, exactly (timing figures checked for consistency, then left out).
    let mut j = stats(&mut c);
    take_timing(&mut j);
    let expected = serde_json::json!({
        "entries": 1, "tags": 2, "tagged_entries": 1, "resources": 1, "dependency_edges": 1,
        "hits": 5, "misses": 3, "hit_rate": 62.5,
        "total_invalidations": 8, "total_keys_invalidated": 10,
        "rates": {"last_hour": 8, "last_24_hours": 8, "average_per_hour": 8.0},
        "thresholds": {"warning_per_hour": 50, "critical_per_hour": 100, "current_alert_level": "normal"},
        "patterns": {
            "most_common_patterns": {
                "tag user:1": 2, "all": 1, "dependents db:users:1": 1,
                "dependents file:/etc/app.conf": 1, "key user:2 nope": 1,
                "namespace user": 1, "pattern post:*": 1
            },
            "invalidation_types": {"dependents": 2, "tag": 2, "all": 1, "key": 1, "namespace": 1, "pattern": 1},
            "by_context": {"signup": 2, "nightly": 1},
            "by_strategy": {"immediate": 8}
        },
        "efficiency": {
            "avg_keys_per_invalidation": 1.25, "avg_duration_ms": null, "max_duration_ms": null,
            "empty_invalidations": 2, "cascaded_keys": 2, "max_cascaded_keys": 2,
            "max_cascade_depth": 2,
            // page:home, page:about, post:2, user:3, cfg:a, cfg:b had no hit
            "unread_keys_invalidated": 6
        },
        "removals": {"expired": 0, "evicted": 0, "deleted": 0, "expired_unread": 0, "expired_read_once": 0},
        "operations": {"get": op(5), "set": op(11), "invalidate": op(8)},
        "memory": {
            "index_bytes": null, "value_bytes": 5, "lease_bytes": 0, "batch_bytes": null,
            "lazy_bytes": 0, "metrics_bytes": null, "rules_bytes": 0, "watch_bytes": 0,
            "cluster_bytes": 0, "history_bytes": null, "total_bytes": null
        },
        "lazy": {"marks": 0, "cascaded": 0, "bytes": 0, "reclaimed": 0, "walks": 0, "steps": 0, "max_step_us": 0},
        "metrics_since_ms": null,
        "soft": SOFT_NONE.clone(),
        "guard": guard_none(&j)
    });
    assert_json(&j, &expected, "CACHE.STATS JSON");

    // Reply order of the top-N tables: count first, then name (RESP2 and RESP3 alike).
    let c3 = &mut s.conn3();
    for reply in [ok(&mut c, &["CACHE.STATS"]), ok(c3, &["CACHE.STATS"])] {
        let patterns = field(&reply, "patterns");
        assert_eq!(
            int_pairs(&field(&patterns, "most_common_patterns")),
            pairs(&[
                ("tag user:1", 2),
                ("all", 1),
                ("dependents db:users:1", 1),
                ("dependents file:/etc/app.conf", 1),
                ("key user:2 nope", 1),
                ("namespace user", 1),
                ("pattern post:*", 1),
            ])
        );
        assert_eq!(
            int_pairs(&field(&patterns, "invalidation_types")),
            pairs(&[
                ("dependents", 2),
                ("tag", 2),
                ("all", 1),
                ("key", 1),
                ("namespace", 1),
                ("pattern", 1)
            ])
        );
        assert_eq!(
            int_pairs(&field(&patterns, "by_context")),
            pairs(&[("signup", 2), ("nightly", 1)])
        );
    }

    // Durations agree with the events: the maximum and mean of their duration_us; the command
    // latency of an invalidation includes its own duration.
    let ev = events(&mut c, &[]);
    assert_eq!(ev.len(), 8);
    let durations: Vec<u64> = ev.iter().map(|e| at_u(e, "duration_us")).collect();
    let full = stats(&mut c);
    let max_us = *durations.iter().max().unwrap_or(&0);
    assert!((at_f(&full, "efficiency.max_duration_ms") - max_us as f64 / 1000.0).abs() < 1e-9);
    let mean_ms = durations.iter().sum::<u64>() as f64 / 8.0 / 1000.0;
    assert!((at_f(&full, "efficiency.avg_duration_ms") - mean_ms).abs() < 1e-9);
    assert!(at_u(&full, "operations.invalidate.max_us") >= max_us);
    assert!(at_u(&full, "memory.index_bytes") > 0);

    // Nothing to advise: 1.25 keys per invalidation, no pattern above half, rates low.
    assert_eq!(issues(&mut c), Vec::<String>::new());

    // INFO cache: exactly these fields, in this order.
    let info: Vec<(String, String)> = info_cache(&mut c);
    let want: Vec<(String, String)> = [
        ("cache_entries", "1"),
        ("cache_tags", "2"),
        ("cache_hits", "5"),
        ("cache_misses", "3"),
        ("cache_hit_rate", "62.5"),
        ("cache_invalidations", "8"),
        ("cache_keys_invalidated", "10"),
        ("cache_invalidations_last_hour", "8"),
        ("cache_alert_level", "normal"),
        ("cache_removed_expired", "0"),
        ("cache_removed_evicted", "0"),
        ("cache_removed_deleted", "0"),
        ("cache_guard_accepted", "0"),
        ("cache_guard_refused", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(info, want);

    // A plain DEL of an entry is a removal, not an invalidation.
    assert_eq!(int(&ok(&mut c, &["DEL", "keep"])), 1);
    assert_eq!(info_get(&mut c, "cache_removed_deleted"), "1");
    assert_eq!(info_get(&mut c, "cache_entries"), "0");
    assert_eq!(info_get(&mut c, "cache_invalidations"), "8");
    assert_eq!(counters(&mut c), [0; 6]);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 2. Index counters follow the keyspace
// ---------------------------------------------------------------------------------------------

/// Three entries: 3 entries, 2 tags, 2 tagged entries, 2 resources, 3 links, 6 value bytes.
fn populate(c: &mut Connection) -> Vec<String> {
    entry(c, "p:a", "aaa", &["t1", "t2"], &["r1"]);
    entry(c, "p:b", "bb", &["t1"], &["r1", "p:a"]);
    entry(c, "p:c", "c", &[], &[]);
    vec!["p:a".into(), "p:b".into(), "p:c".into()]
}

const POPULATED: [u64; 6] = [3, 2, 2, 2, 3, 6];

fn assert_empty_index(c: &mut Connection, how: &str) {
    assert_eq!(counters(c), [0; 6], "after {how}");
    assert_eq!(info_get(c, "cache_entries"), "0", "after {how}");
    assert_eq!(info_get(c, "cache_tags"), "0", "after {how}");
    assert_eq!(keys(c, &["ALL"]), Vec::<String>::new(), "after {how}");
    assert!(list(&ok(c, &["CACHE.TAGS"])).is_empty(), "after {how}");
    verify(c);
}

#[test]
fn index_counters_return_to_zero_whatever_removes_the_entries() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(counters(&mut c), [0; 6]);

    // DEL and UNLINK: deleted.
    let ks = populate(&mut c);
    assert_eq!(counters(&mut c), POPULATED);
    assert_eq!(int(&ok(&mut c, &["DEL", &ks[0], &ks[1], &ks[2]])), 3);
    assert_empty_index(&mut c, "DEL");
    assert_eq!(removals(&mut c), [0, 0, 3]);

    populate(&mut c);
    assert_eq!(counters(&mut c), POPULATED);
    assert_eq!(int(&ok(&mut c, &["UNLINK", &ks[0], &ks[1], &ks[2]])), 3);
    assert_empty_index(&mut c, "UNLINK");
    assert_eq!(removals(&mut c), [0, 0, 6]);

    // Expiry: expired.
    populate(&mut c);
    assert_eq!(counters(&mut c), POPULATED);
    expire_all(&mut c, &ks);
    assert_empty_index(&mut c, "expiry");
    assert_eq!(removals(&mut c), [3, 0, 6]);

    // Eviction: evicted.
    populate(&mut c);
    assert_eq!(counters(&mut c), POPULATED);
    evict_everything(&mut c);
    assert_empty_index(&mut c, "eviction");
    assert_eq!(removals(&mut c), [3, 3, 6]);
    assert_eq!(
        info_cache(&mut c)[9..12].to_vec(),
        vec![
            ("cache_removed_expired".to_string(), "3".to_string()),
            ("cache_removed_evicted".to_string(), "3".to_string()),
            ("cache_removed_deleted".to_string(), "6".to_string()),
        ]
    );

    // FLUSHDB empties one database's share; the counters sum over databases.
    populate(&mut c);
    assert_eq!(ok(&mut c, &["SELECT", "1"]), Value::Okay);
    populate(&mut c);
    assert_eq!(counters(&mut c), POPULATED.map(|n| 2 * n));
    assert_eq!(ok(&mut c, &["FLUSHDB"]), Value::Okay);
    assert_eq!(counters(&mut c), POPULATED);
    assert_eq!(ok(&mut c, &["SELECT", "0"]), Value::Okay);
    assert_eq!(ok(&mut c, &["FLUSHDB"]), Value::Okay);
    assert_empty_index(&mut c, "FLUSHDB");

    // FLUSHALL (and its ASYNC form) empties every database.
    for flush in [
        &["FLUSHALL"][..],
        &["FLUSHALL", "ASYNC"],
        &["FLUSHDB", "ASYNC"],
    ] {
        populate(&mut c);
        if flush[0] == "FLUSHALL" {
            assert_eq!(ok(&mut c, &["SELECT", "1"]), Value::Okay);
            populate(&mut c);
            assert_eq!(ok(&mut c, &["SELECT", "0"]), Value::Okay);
            assert_eq!(counters(&mut c), POPULATED.map(|n| 2 * n));
        }
        assert_eq!(ok(&mut c, flush), Value::Okay);
        assert_empty_index(&mut c, &flush.join(" "));
        assert_eq!(ok(&mut c, &["SELECT", "1"]), Value::Okay);
        assert_eq!(int(&ok(&mut c, &["DBSIZE"])), 0);
        verify(&mut c);
        assert_eq!(ok(&mut c, &["SELECT", "0"]), Value::Okay);
    }
    // Flushes are not per-entry removals (the module's choice: the contract names only
    // expired, evicted and deleted) and are not invalidations.
    assert_eq!(removals(&mut c), [3, 3, 6]);
    assert_eq!(stat(&mut c, "total_invalidations"), 0);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 3. Every recommendation rule, on both sides of its threshold
// ---------------------------------------------------------------------------------------------

const HIGH_FREQUENCY: &str = "High invalidation frequency";
const DOMINANT: &str = "Dominant invalidation pattern";
const LOW_EFFICIENCY: &str = "Low invalidation efficiency";
const HIGH_IMPACT: &str = "High invalidation impact";
const LOW_HIT_RATE: &str = "Low hit rate";
const OVERSIZED_TAG: &str = "Oversized tag";
const NEVER_READ: &str = "Entries never read";
const TTL_CHURN: &str = "TTL churn";
const CASCADES: &str = "Deep or wide dependency cascades";
const SLOW_OPS: &str = "Slow cache operations";

#[test]
fn a_fresh_server_has_no_advice_and_empty_metrics() {
    let s = Server::start();
    let mut c = s.conn();
    assert!(list(&ok(&mut c, &["CACHE.RECOMMEND"])).is_empty());
    assert_eq!(text(&ok(&mut c, &["CACHE.RECOMMEND", "JSON"])), "[]");
    assert!(list(&ok(&mut c, &["CACHE.EVENTS"])).is_empty());
    assert!(list(&ok(&mut c, &["CACHE.HOTKEYS"])).is_empty());
    let mut j = stats(&mut c);
    take_timing(&mut j);
    let expected = serde_json::json!({
        "entries": 0, "tags": 0, "tagged_entries": 0, "resources": 0, "dependency_edges": 0,
        "hits": 0, "misses": 0, "hit_rate": 0.0,
        "total_invalidations": 0, "total_keys_invalidated": 0,
        "rates": {"last_hour": 0, "last_24_hours": 0, "average_per_hour": 0.0},
        "thresholds": {"warning_per_hour": 50, "critical_per_hour": 100, "current_alert_level": "normal"},
        "patterns": {"most_common_patterns": {}, "invalidation_types": {}, "by_context": {}, "by_strategy": {}},
        "efficiency": {
            "avg_keys_per_invalidation": 0.0, "avg_duration_ms": null, "max_duration_ms": null,
            "empty_invalidations": 0, "cascaded_keys": 0, "max_cascaded_keys": 0,
            "max_cascade_depth": 0, "unread_keys_invalidated": 0
        },
        "removals": {"expired": 0, "evicted": 0, "deleted": 0, "expired_unread": 0, "expired_read_once": 0},
        "operations": {"get": op(0), "set": op(0), "invalidate": op(0)},
        "memory": {
            "index_bytes": null, "value_bytes": 0, "lease_bytes": 0, "batch_bytes": null,
            "lazy_bytes": 0, "metrics_bytes": null, "rules_bytes": 0, "watch_bytes": 0,
            "cluster_bytes": 0, "history_bytes": null, "total_bytes": null
        },
        "lazy": {"marks": 0, "cascaded": 0, "bytes": 0, "reclaimed": 0, "walks": 0, "steps": 0, "max_step_us": 0},
        "metrics_since_ms": null,
        "soft": SOFT_NONE.clone(),
        "guard": guard_none(&j)
    });
    assert_json(&j, &expected, "fresh CACHE.STATS");
    assert_eq!(info_get(&mut c, "cache_alert_level"), "normal");
    verify(&mut c);
}

#[test]
fn rule_high_invalidation_frequency() {
    let s = Server::start();
    let mut c = s.conn();
    // With the default thresholds (50/100) a few invalidations say nothing.
    inv(&mut c, &["KEY", "a"]);
    inv(&mut c, &["KEY", "b"]);
    must_not_have(&mut c, HIGH_FREQUENCY, "2 < 50 per hour");
    config_set(&mut c, "cache.warning-per-hour", "3");
    config_set(&mut c, "cache.critical-per-hour", "5");
    must_not_have(&mut c, HIGH_FREQUENCY, "2 < 3 per hour");
    inv(&mut c, &["KEY", "c"]);
    let r = must_have(&mut c, HIGH_FREQUENCY, "3 >= 3 per hour");
    assert_eq!(r.severity, "warning");
    assert_eq!(
        r.message,
        "Cache is being invalidated 3 times per hour (warning at 3, critical at 5; 3 in the last 24 hours)"
    );
    assert_eq!(
        r.suggestions[..4],
        [
            "Review invalidation triggers to reduce unnecessary clearing",
            "Consider using more specific patterns for selective invalidation",
            "Check if TTL values are set too low",
            "Analyze if cache warming strategy needs improvement",
        ]
    );
    inv(&mut c, &["KEY", "d"]);
    assert_eq!(must_have(&mut c, HIGH_FREQUENCY, "4").severity, "warning");
    inv(&mut c, &["KEY", "e"]);
    let r = must_have(&mut c, HIGH_FREQUENCY, "5 >= 5 per hour");
    assert_eq!(r.severity, "critical");
    // Critical advice comes first.
    assert_eq!(issues(&mut c)[0], HIGH_FREQUENCY);
    // Raising the thresholds takes effect at once.
    config_set(&mut c, "cache.warning-per-hour", "6");
    config_set(&mut c, "cache.critical-per-hour", "10");
    must_not_have(&mut c, HIGH_FREQUENCY, "5 < 6 per hour");
    verify(&mut c);
}

#[test]
fn rule_dominant_invalidation_pattern() {
    let s = Server::start();
    let mut c = s.conn();
    must_not_have(&mut c, DOMINANT, "no invalidation");
    inv(&mut c, &["KEY", "a"]);
    let r = must_have(&mut c, DOMINANT, "1 of 1");
    assert_eq!(r.severity, "info");
    assert_eq!(
        r.message,
        "Pattern 'key a' accounts for 1 of recent invalidations (100% of the 1 recorded)"
    );
    assert_eq!(
        r.suggestions,
        [
            "Consider optimizing operations that trigger 'key a' invalidations",
            "Evaluate if this pattern could be made more specific",
            "Check if related data could be cached with different strategies",
        ]
    );
    inv(&mut c, &["KEY", "b"]);
    must_not_have(&mut c, DOMINANT, "1 of 2 is not more than half");
    inv(&mut c, &["KEY", "a"]);
    let r = must_have(&mut c, DOMINANT, "2 of 3");
    assert_eq!(
        r.message,
        "Pattern 'key a' accounts for 2 of recent invalidations (67% of the 3 recorded)"
    );
    inv(&mut c, &["KEY", "c"]);
    must_not_have(&mut c, DOMINANT, "2 of 4 is not more than half");
    verify(&mut c);
}

#[test]
fn rule_low_invalidation_efficiency() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "e1", "v", &[], &[]);
    assert_eq!(inv(&mut c, &["KEY", "e1"]), 1);
    must_not_have(&mut c, LOW_EFFICIENCY, "1 key per invalidation");
    assert_eq!(inv(&mut c, &["KEY", "e1"]), 0);
    let r = must_have(&mut c, LOW_EFFICIENCY, "1 key over 2 invalidations");
    assert_eq!(r.severity, "info");
    assert_eq!(
        r.message,
        "Average of 0.5 keys invalidated per operation (1 of 2 invalidations found no entries)"
    );
    assert_eq!(
        r.suggestions,
        [
            "Many invalidation operations are not finding keys to clear",
            "Consider using more targeted patterns",
            "Review if cache keys are structured optimally for invalidation",
        ]
    );
    entry(&mut c, "e2", "v", &["t"], &[]);
    entry(&mut c, "e3", "v", &["t"], &[]);
    assert_eq!(inv(&mut c, &["TAG", "t"]), 2);
    must_not_have(&mut c, LOW_EFFICIENCY, "3 keys over 3 invalidations");
    verify(&mut c);
}

#[test]
fn rule_high_invalidation_impact() {
    let s = Server::start();
    let mut c = s.conn();
    entries(&mut c, &names("a:", 100), "v", &["ta"], &[]);
    assert_eq!(inv(&mut c, &["TAG", "ta"]), 100);
    must_not_have(
        &mut c,
        HIGH_IMPACT,
        "100 keys per invalidation is not more than 100",
    );
    entries(&mut c, &names("b:", 102), "v", &["tb"], &[]);
    assert_eq!(inv(&mut c, &["TAG", "tb"]), 102);
    let r = must_have(&mut c, HIGH_IMPACT, "202 keys over 2 invalidations");
    assert_eq!(r.severity, "warning");
    assert_eq!(
        r.message,
        "Average of 101 keys invalidated per operation (202 entries over 2 invalidations; the largest removed 102)"
    );
    assert_eq!(
        r.suggestions,
        [
            "Invalidation operations are clearing large numbers of entries",
            "Consider using more selective patterns to preserve valid cache entries",
            "Evaluate if smaller, more frequent invalidations would be better",
        ]
    );
    assert_eq!(inv(&mut c, &["KEY", "nothing"]), 0);
    must_not_have(&mut c, HIGH_IMPACT, "202 keys over 3 invalidations");
    verify(&mut c);
}

#[test]
fn rule_low_hit_rate() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "h", "v", &[], &[]);
    let mut mget = vec!["CACHE.MGET".to_string()];
    mget.extend(names("miss:", 99));
    ok(&mut c, &mget);
    must_not_have(&mut c, LOW_HIT_RATE, "only 99 lookups");
    assert_eq!(get(&mut c, "miss:x"), None);
    let r = must_have(&mut c, LOW_HIT_RATE, "0 % over 100 lookups");
    assert_eq!(r.severity, "warning");
    assert_eq!(
        r.message,
        "Hit rate is 0.0% (0 hits, 100 misses over 100 lookups), below 50%"
    );
    let mut hits = vec!["CACHE.MGET".to_string()];
    hits.extend(vec!["h".to_string(); 99]);
    ok(&mut c, &hits);
    assert_eq!(stat(&mut c, "hits"), 99);
    let r = must_have(&mut c, LOW_HIT_RATE, "99 hits of 199 lookups");
    assert_eq!(
        r.message,
        "Hit rate is 49.7% (99 hits, 100 misses over 199 lookups), below 50%"
    );
    assert_eq!(get(&mut c, "h").as_deref(), Some("v"));
    must_not_have(&mut c, LOW_HIT_RATE, "exactly 50 %");
    assert_eq!(at_f(&stats(&mut c), "hit_rate"), 50.0);
    verify(&mut c);
}

#[test]
fn rule_oversized_tag() {
    let s = Server::start();
    let mut c = s.conn();
    entries(&mut c, &names("big:", 99), "v", &["big", "other"], &[]);
    must_not_have(&mut c, OVERSIZED_TAG, "99 entries are too few");
    entry(&mut c, "plain:0", "v", &[], &[]);
    let r = must_have(&mut c, OVERSIZED_TAG, "99 of 100 entries");
    assert_eq!(r.severity, "warning");
    assert_eq!(
        r.message,
        "Tag 'big' covers 99 of 100 entries (99%): invalidating it drops 99% of the cache at once"
    );
    assert_eq!(r.suggestions.len(), 4);
    assert!(r.suggestions[0].starts_with("Split 'big' into narrower tags"));
    entries(&mut c, &names("plain:", 100)[1..], "v", &[], &[]);
    assert_eq!(stat(&mut c, "entries"), 199);
    must_not_have(&mut c, OVERSIZED_TAG, "99 of 199 is under half");
    assert_eq!(int(&ok(&mut c, &["CACHE.TAG", "plain:0", "big"])), 1);
    let r = must_have(&mut c, OVERSIZED_TAG, "100 of 199 entries");
    assert!(r
        .message
        .starts_with("Tag 'big' covers 100 of 199 entries (50%)"));
    verify(&mut c);
}

#[test]
fn rule_entries_never_read() {
    let s = Server::start();
    let mut c = s.conn();
    entries(&mut c, &names("u:", 99), "v", &["u"], &[]);
    assert_eq!(inv(&mut c, &["TAG", "u"]), 99);
    must_not_have(&mut c, NEVER_READ, "99 removals are too few");
    entry(&mut c, "x", "v", &[], &[]);
    assert_eq!(inv(&mut c, &["KEY", "x"]), 1);
    let r = must_have(&mut c, NEVER_READ, "100 of 100 unread");
    assert_eq!(r.severity, "info");
    assert_eq!(
        r.message,
        "100 of 100 entries that expired or were invalidated (100%) were never read: 0 expired and 100 invalidated without a single hit"
    );
    let read = names("r:", 100);
    entries(&mut c, &read, "v", &["r"], &[]);
    read_all(&mut c, &read);
    assert_eq!(inv(&mut c, &["TAG", "r"]), 100);
    must_have(&mut c, NEVER_READ, "100 of 200 unread is half");
    entry(&mut c, "y", "v", &[], &[]);
    assert_eq!(get(&mut c, "y").as_deref(), Some("v"));
    assert_eq!(inv(&mut c, &["KEY", "y"]), 1);
    must_not_have(&mut c, NEVER_READ, "100 of 201 unread is under half");
    assert_eq!(stat(&mut c, "efficiency.unread_keys_invalidated"), 100);
    verify(&mut c);
}

#[test]
fn rule_ttl_churn() {
    let s = Server::start();
    let mut c = s.conn();
    let first = names("e:", 100);
    entries(&mut c, &first, "v", &[], &[]);
    expire_all(&mut c, &first[..99]);
    must_not_have(&mut c, TTL_CHURN, "99 expiries are too few");
    expire_all(&mut c, &first[99..]);
    let r = must_have(&mut c, TTL_CHURN, "100 unread expiries");
    assert_eq!(r.severity, "info");
    assert_eq!(
        r.message,
        "100 of 100 removals (100%) were TTL expiries, and 100 of those entries (100%) had been read at most once (average 0.0 reads per expired entry)"
    );
    // As many deletions: expiries are no longer more than half of the removals.
    let del = names("d:", 100);
    entries(&mut c, &del, "v", &[], &[]);
    let mut parts = vec!["DEL".to_string()];
    parts.extend(del.iter().cloned());
    assert_eq!(int(&ok(&mut c, &parts)), 100);
    assert_eq!(removals(&mut c), [100, 0, 100]);
    must_not_have(&mut c, TTL_CHURN, "100 of 200 removals");
    entry(&mut c, "f", "v", &[], &[]);
    assert_eq!(get(&mut c, "f").as_deref(), Some("v"));
    assert_eq!(get(&mut c, "f").as_deref(), Some("v"));
    expire_all(&mut c, &["f".to_string()]);
    let r = must_have(&mut c, TTL_CHURN, "101 of 201 removals");
    assert!(
        r.message.starts_with(
            "101 of 201 removals (50%) were TTL expiries, and 100 of those entries (99%) had been read at most once"
        ),
        "{}",
        r.message
    );

    // Expired entries that were read twice are not churn.
    assert_eq!(ok(&mut c, &["CACHE.RESET"]), Value::Okay);
    let twice = names("t:", 100);
    entries(&mut c, &twice, "v", &[], &[]);
    read_all(&mut c, &twice);
    read_all(&mut c, &twice);
    expire_all(&mut c, &twice);
    must_not_have(&mut c, TTL_CHURN, "every expired entry was read twice");
    let unread = names("n:", 50);
    entries(&mut c, &unread, "v", &[], &[]);
    expire_all(&mut c, &unread);
    must_not_have(&mut c, TTL_CHURN, "50 of 150 read at most once");
    let once = names("o:", 50);
    entries(&mut c, &once, "v", &[], &[]);
    read_all(&mut c, &once);
    expire_all(&mut c, &once);
    let j = stats(&mut c);
    assert_eq!(
        [
            at_u(&j, "removals.expired"),
            at_u(&j, "removals.expired_unread"),
            at_u(&j, "removals.expired_read_once")
        ],
        [200, 50, 50]
    );
    must_have(&mut c, TTL_CHURN, "100 of 200 read at most once");
    verify(&mut c);
}

/// A chain `p0 <- p1 <- .. <- p{n-1}` (each depends on the previous one).
fn chain(c: &mut Connection, prefix: &str, n: usize) {
    entry(c, &format!("{prefix}0"), "v", &[], &[]);
    for i in 1..n {
        entry(
            c,
            &format!("{prefix}{i}"),
            "v",
            &[],
            &[&format!("{prefix}{}", i - 1)],
        );
    }
}

/// `root` and `n` entries that depend on it.
fn fan(c: &mut Connection, root: &str, n: usize) {
    entry(c, root, "v", &[], &[]);
    entries(c, &names(&format!("{root}:dep:"), n), "v", &[], &[root]);
}

#[test]
fn rule_deep_or_wide_cascades() {
    let s = Server::start();
    let mut c = s.conn();
    // Deep: 4 hops is not enough, 5 is.
    chain(&mut c, "a", 5);
    assert_eq!(inv(&mut c, &["KEY", "a0"]), 5);
    must_not_have(&mut c, CASCADES, "4 hops");
    chain(&mut c, "b", 6);
    assert_eq!(inv(&mut c, &["DEPTH", "4", "KEY", "b0"]), 5);
    must_not_have(&mut c, CASCADES, "4 hops (DEPTH 4)");
    assert_eq!(inv(&mut c, &["KEY", "b5"]), 1);
    chain(&mut c, "c", 6);
    assert_eq!(inv(&mut c, &["KEY", "c0"]), 6);
    let r = must_have(&mut c, CASCADES, "5 hops");
    assert_eq!(r.severity, "warning");
    assert_eq!(
        r.message,
        "13 of 17 invalidated entries (76%) were reached through dependencies; the deepest cascade went 5 hops and the largest reached 5 entries"
    );
    assert_eq!(stat(&mut c, "efficiency.max_cascade_depth"), 5);

    // Wide: 100 cascaded entries that are more than half of the invalidated ones.
    assert_eq!(ok(&mut c, &["CACHE.RESET"]), Value::Okay);
    fan(&mut c, "w1", 99);
    assert_eq!(inv(&mut c, &["KEY", "w1"]), 100);
    must_not_have(&mut c, CASCADES, "99 cascaded entries");
    fan(&mut c, "w2", 1);
    assert_eq!(inv(&mut c, &["KEY", "w2"]), 2);
    let r = must_have(&mut c, CASCADES, "100 of 102 cascaded");
    assert!(
        r.message
            .starts_with("100 of 102 invalidated entries (98%)"),
        "{}",
        r.message
    );

    // Large: one invalidation reaching 1000 entries through dependencies, even when cascades
    // are not more than half of the invalidated entries.
    for (n, listed) in [(999, false), (1000, true)] {
        assert_eq!(ok(&mut c, &["CACHE.RESET"]), Value::Okay);
        entries(&mut c, &names("direct:", 1001), "v", &["direct"], &[]);
        assert_eq!(inv(&mut c, &["TAG", "direct"]), 1001);
        fan(&mut c, "l", n);
        assert_eq!(inv(&mut c, &["KEY", "l"]), n as i64 + 1);
        assert_eq!(stat(&mut c, "efficiency.max_cascaded_keys"), n as u64);
        assert_eq!(has(&mut c, CASCADES), listed, "{n} entries in one cascade");
    }
    verify(&mut c);
}

#[test]
fn rule_slow_cache_operations() {
    let s = Server::start();
    let mut c = s.conn();
    // With a 1 us threshold, a CACHE.SET of 256 KB is slow.
    config_set(&mut c, "cache.slow-op-us", "1");
    let big = "x".repeat(256 * 1024);
    for i in 0..9 {
        entry(&mut c, &format!("big:{i}"), &big, &[], &[]);
    }
    assert_eq!(stat(&mut c, "operations.set.slow"), 9);
    must_not_have(&mut c, SLOW_OPS, "9 slow calls");
    entry(&mut c, "big:9", &big, &[], &[]);
    assert_eq!(stat(&mut c, "operations.set.slow"), 10);
    let r = must_have(&mut c, SLOW_OPS, "10 slow calls of 10");
    assert_eq!(r.severity, "warning");
    assert!(
        r.message
            .starts_with("10 of 10 CACHE.SET calls (100.0%) took 1 us or more (p99 "),
        "{}",
        r.message
    );
    assert_eq!(r.suggestions.len(), 4);
    assert_eq!(
        r.suggestions[3],
        "If the threshold is too strict for this workload, raise cache.slow-op-us (now 1 us)"
    );
    // cache.slow-op-us 0 turns the rule off.
    config_set(&mut c, "cache.slow-op-us", "0");
    must_not_have(&mut c, SLOW_OPS, "cache.slow-op-us 0");
    // With a threshold nothing reaches, the 10 slow calls stay: present while they are at
    // least 1 % of the calls.
    config_set(&mut c, "cache.slow-op-us", "2147483647");
    must_have(&mut c, SLOW_OPS, "10 slow calls of 10");
    let small: Vec<Vec<String>> = (0..990)
        .map(|i| set_parts(&format!("small:{i}"), "v", &[], &[], &[]))
        .collect();
    run_all(&mut c, &small);
    assert_eq!(stat(&mut c, "operations.set.count"), 1000);
    must_have(&mut c, SLOW_OPS, "10 slow calls of 1000");
    entry(&mut c, "small:last", "v", &[], &[]);
    must_not_have(&mut c, SLOW_OPS, "10 slow calls of 1001");
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 4. Alert level and its log line
// ---------------------------------------------------------------------------------------------

#[test]
fn alert_level_follows_the_thresholds_and_logs_once_per_level() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.warning-per-hour", "2");
    config_set(&mut c, "cache.critical-per-hour", "4");
    let level = |c: &mut Connection| -> (String, String) {
        let j = stats(c);
        let stats_level = at(&j, "thresholds.current_alert_level")
            .as_str()
            .unwrap_or_default()
            .to_string();
        (stats_level, info_get(c, "cache_alert_level"))
    };
    let lines =
        |s: &Server, what: &str| -> usize { s.log().lines().filter(|l| l.contains(what)).count() };
    let warn_line = "High invalidation rate: 2 invalidations in last hour (>=2 threshold)";
    let crit_line = "Critical invalidation rate: 4 invalidations in last hour (>=4 threshold)";

    assert_eq!(level(&mut c), ("normal".into(), "normal".into()));
    inv(&mut c, &["KEY", "k1"]);
    assert_eq!(level(&mut c), ("normal".into(), "normal".into()));
    assert_eq!(lines(&s, "invalidation rate:"), 0);
    inv(&mut c, &["KEY", "k2"]);
    assert_eq!(level(&mut c), ("warning".into(), "warning".into()));
    assert_eq!(lines(&s, warn_line), 1, "log:\n{}", s.log());
    inv(&mut c, &["KEY", "k3"]);
    assert_eq!(level(&mut c), ("warning".into(), "warning".into()));
    assert_eq!(lines(&s, "invalidation rate:"), 1, "rate-limited");
    inv(&mut c, &["KEY", "k4"]);
    assert_eq!(level(&mut c), ("critical".into(), "critical".into()));
    assert_eq!(lines(&s, crit_line), 1, "log:\n{}", s.log());
    inv(&mut c, &["KEY", "k5"]);
    inv(&mut c, &["KEY", "k6"]);
    assert_eq!(level(&mut c), ("critical".into(), "critical".into()));
    assert_eq!(lines(&s, "High invalidation rate:"), 1, "rate-limited");
    assert_eq!(lines(&s, "Critical invalidation rate:"), 1, "rate-limited");
    let j = stats(&mut c);
    assert_eq!(at_u(&j, "rates.last_hour"), 6);
    assert_eq!(at_u(&j, "thresholds.warning_per_hour"), 2);
    assert_eq!(at_u(&j, "thresholds.critical_per_hour"), 4);
    assert_eq!(info_get(&mut c, "cache_invalidations_last_hour"), "6");
    // The level is judged with the thresholds in effect now.
    config_set(&mut c, "cache.warning-per-hour", "50");
    config_set(&mut c, "cache.critical-per-hour", "100");
    assert_eq!(level(&mut c), ("normal".into(), "normal".into()));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 5. Reply shapes: RESP2, RESP3, JSON
// ---------------------------------------------------------------------------------------------

const STATS_FIELDS: [&str; 21] = [
    "entries",
    "tags",
    "tagged_entries",
    "resources",
    "dependency_edges",
    "hits",
    "misses",
    "hit_rate",
    "total_invalidations",
    "total_keys_invalidated",
    "rates",
    "thresholds",
    "patterns",
    "efficiency",
    "removals",
    "operations",
    "memory",
    "lazy",
    "metrics_since_ms",
    "soft",
    "guard",
];

/// The `guard` section of a server that had no guarded write, checked; returned as it is
/// (its history's size follows the invalidations made).
fn guard_none(j: &J) -> J {
    let g = j["guard"].clone();
    for f in ["accepted", "refused", "refused_unknown_token"] {
        assert_eq!(g[f], 0, "guard.{f} in {g}");
    }
    assert_eq!(g["top_refusal"], serde_json::json!({}), "{g}");
    assert!(
        g["history_facts"].is_u64() && g["history_bytes"].is_u64(),
        "{g}"
    );
    g
}

/// The `soft` section (issue 8) of a server that had no SOFT invalidation, fetch or lease.
static SOFT_NONE: std::sync::LazyLock<J> = std::sync::LazyLock::new(|| {
    serde_json::json!({
        "invalidations": 0, "entries_made_stale": 0, "stale_serves": 0,
        "fetches": {"hit": 0, "miss": 0, "wait": 0, "refresh": 0, "stale": 0},
        "leases_granted": 0, "leases_completed": 0, "leases_expired": 0, "leases_active": 0,
        "refresh_ahead": 0
    })
});

/// The nested field names of CACHE.STATS (the contract's, then the module's extras).
fn nested_fields() -> Vec<(&'static str, Vec<&'static str>)> {
    let op = vec!["count", "avg_us", "p50_us", "p99_us", "max_us", "slow"];
    vec![
        (
            "rates",
            vec!["last_hour", "last_24_hours", "average_per_hour"],
        ),
        (
            "thresholds",
            vec![
                "warning_per_hour",
                "critical_per_hour",
                "current_alert_level",
            ],
        ),
        (
            "patterns",
            vec![
                "most_common_patterns",
                "invalidation_types",
                "by_context",
                "by_strategy",
            ],
        ),
        (
            "efficiency",
            vec![
                "avg_keys_per_invalidation",
                "avg_duration_ms",
                "max_duration_ms",
                "empty_invalidations",
                "cascaded_keys",
                "max_cascaded_keys",
                "max_cascade_depth",
                "unread_keys_invalidated",
            ],
        ),
        (
            "removals",
            vec![
                "expired",
                "evicted",
                "deleted",
                "expired_unread",
                "expired_read_once",
            ],
        ),
        ("operations", vec!["get", "set", "invalidate"]),
        ("operations.get", op.clone()),
        ("operations.set", op.clone()),
        ("operations.invalidate", op),
        (
            "memory",
            vec![
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
                "total_bytes",
            ],
        ),
        (
            "lazy",
            vec![
                "marks",
                "cascaded",
                "bytes",
                "reclaimed",
                "walks",
                "steps",
                "max_step_us",
            ],
        ),
        (
            "soft",
            vec![
                "invalidations",
                "entries_made_stale",
                "stale_serves",
                "fetches",
                "leases_granted",
                "leases_completed",
                "leases_expired",
                "leases_active",
                "refresh_ahead",
            ],
        ),
        (
            "soft.fetches",
            vec!["hit", "miss", "wait", "refresh", "stale"],
        ),
        (
            "guard",
            vec![
                "accepted",
                "refused",
                "refused_unknown_token",
                "history_facts",
                "history_bytes",
                "top_refusal",
            ],
        ),
    ]
}

/// A sub-map of a map reply by dotted path.
fn sub(v: &Value, path: &str) -> Value {
    path.split('.').fold(v.clone(), |v, k| field(&v, k))
}

fn sorted_keys(j: &J) -> Vec<String> {
    let mut k: Vec<String> = j
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {j}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

fn sorted_strs(v: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

#[test]
fn reply_shapes_resp2_resp3_and_json() {
    let s = Server::start();
    let mut c2 = s.conn();
    let mut c3 = s.conn3();
    entry(&mut c2, "s:1", "one", &["t"], &["r"]);
    entry(&mut c2, "s:2", "two", &["t"], &["s:1"]);
    entry(&mut c2, "s:3", "three", &[], &[]);
    assert_eq!(get(&mut c2, "s:1").as_deref(), Some("one"));
    assert_eq!(get(&mut c2, "s:3").as_deref(), Some("three"));
    assert_eq!(get(&mut c2, "s:9"), None);
    assert_eq!(inv(&mut c2, &["CONTEXT", "shape", "TAG", "t"]), 2);
    assert_eq!(inv(&mut c2, &["KEY", "none"]), 0);

    // CACHE.STATS: the same document three ways.
    let j = stats(&mut c2);
    let r2 = ok(&mut c2, &["CACHE.STATS"]);
    let r3 = ok(&mut c3, &["CACHE.STATS"]);
    assert_eq!(stats(&mut c2), j, "no metric moved between the calls");
    match &r2 {
        Value::Array(a) => {
            assert_eq!(a.len(), 2 * STATS_FIELDS.len());
            assert!(matches!(a[1], Value::Int(1)), "entries: {:?}", a[1]);
            // hit_rate is a double: a bulk string under RESP2.
            assert_eq!(a[14], Value::BulkString(b"hit_rate".to_vec()));
            assert!(
                matches!(&a[15], Value::BulkString(b) if b.starts_with(b"66.66")),
                "{:?}",
                a[15]
            );
            assert!(matches!(a[21], Value::Array(_)), "rates is a flat array");
        }
        other => panic!("RESP2 CACHE.STATS is a flat array: {other:?}"),
    }
    match &r3 {
        Value::Map(m) => {
            assert_eq!(m.len(), STATS_FIELDS.len());
            assert!(
                matches!(field(&r3, "hit_rate"), Value::Double(x) if (x - 200.0 / 3.0).abs() < 1e-9)
            );
            assert!(matches!(field(&r3, "rates"), Value::Map(_)));
            assert!(matches!(
                sub(&r3, "rates.average_per_hour"),
                Value::Double(_)
            ));
            assert!(matches!(
                sub(&r3, "patterns.most_common_patterns"),
                Value::Map(_)
            ));
            assert!(matches!(
                sub(&r3, "thresholds.current_alert_level"),
                Value::BulkString(_)
            ));
        }
        other => panic!("RESP3 CACHE.STATS is a map: {other:?}"),
    }
    for r in [&r2, &r3] {
        assert_eq!(field_names(r), STATS_FIELDS);
        for (path, names) in nested_fields() {
            assert_eq!(field_names(&sub(r, path)), names, "{path}");
        }
    }
    assert_eq!(sorted_keys(&j), sorted_strs(&STATS_FIELDS));
    for (path, names) in nested_fields() {
        assert_eq!(sorted_keys(at(&j, path)), sorted_strs(&names), "{path}");
    }
    assert_json(&resp3_json(&r3), &j, "RESP3 CACHE.STATS vs JSON");
    assert_json(&resp2_json(&r2, &j), &j, "RESP2 CACHE.STATS vs JSON");
    assert!((at_f(&j, "hit_rate") - 200.0 / 3.0).abs() < 1e-9);
    assert_eq!(at_f(&j, "efficiency.avg_keys_per_invalidation"), 1.0);
    assert_eq!(
        at(&j, "patterns.most_common_patterns"),
        &serde_json::json!({"tag t": 1, "key none": 1})
    );

    // CACHE.RECOMMEND: an array of maps; JSON an array of objects with the same fields.
    config_set(&mut c2, "cache.warning-per-hour", "1");
    let rj: J = serde_json::from_str(&text(&ok(&mut c2, &["CACHE.RECOMMEND", "JSON"])))
        .expect("CACHE.RECOMMEND JSON parses");
    let rr2 = ok(&mut c2, &["CACHE.RECOMMEND"]);
    let rr3 = ok(&mut c3, &["CACHE.RECOMMEND"]);
    let items = rj.as_array().expect("a JSON array");
    assert_eq!(
        items
            .iter()
            .map(|i| at(i, "issue").as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        [HIGH_FREQUENCY],
        "{rj:#}"
    );
    for i in items {
        assert_eq!(
            sorted_keys(i),
            sorted_strs(&["severity", "issue", "message", "suggestions"])
        );
        assert!(at(i, "suggestions")
            .as_array()
            .is_some_and(|a| a.iter().all(J::is_string)));
    }
    assert!(list(&rr2).iter().all(|r| matches!(r, Value::Array(_))));
    assert!(list(&rr3).iter().all(|r| matches!(r, Value::Map(_))));
    for r in list(&rr2).iter().chain(list(&rr3).iter()) {
        assert_eq!(
            field_names(r),
            ["severity", "issue", "message", "suggestions"]
        );
        assert!(matches!(field(r, "suggestions"), Value::Array(_)));
    }
    assert_json(&resp3_json(&rr3), &rj, "RESP3 CACHE.RECOMMEND vs JSON");
    assert_json(&resp2_json(&rr2, &rj), &rj, "RESP2 CACHE.RECOMMEND vs JSON");

    // CACHE.EVENTS: an array of maps (flat arrays under RESP2).
    let e2 = ok(&mut c2, &["CACHE.EVENTS"]);
    let e3 = ok(&mut c3, &["CACHE.EVENTS"]);
    assert!(list(&e2)
        .iter()
        .all(|r| matches!(r, Value::Array(a) if a.len() == 14)));
    assert!(list(&e3)
        .iter()
        .all(|r| matches!(r, Value::Map(m) if m.len() == 7)));
    let ej = resp3_json(&e3);
    assert_json(&resp2_json(&e2, &ej), &ej, "RESP2 vs RESP3 CACHE.EVENTS");
    assert_eq!(
        event_summary(&events(&mut c3, &[])),
        [ev("key", "none", 0, ""), ev("tag", "t", 2, "shape")]
    );

    // CACHE.HOTKEYS: [key, hits] pairs under both protocols (s:1 was invalidated: not hot).
    for c in [&mut c2, &mut c3] {
        let h = ok(c, &["CACHE.HOTKEYS"]);
        assert_eq!(
            h,
            Value::Array(vec![Value::Array(vec![
                Value::BulkString(b"s:3".to_vec()),
                Value::Int(1)
            ]),])
        );
    }

    // Rejected forms change nothing.
    let d = digest(&mut c2);
    for cmd in ["CACHE.STATS", "CACHE.RECOMMEND"] {
        assert_eq!(err(&mut c2, &[cmd, "XML"]), "ERR syntax error");
        assert_eq!(
            err(&mut c2, &[cmd, "JSON", "x"]),
            format!(
                "ERR wrong number of arguments for '{}' command",
                cmd.to_lowercase()
            )
        );
    }
    // Lowercase option works.
    let lower: J =
        serde_json::from_str(&text(&ok(&mut c2, &["cache.stats", "json"]))).expect("json");
    assert_eq!(at_u(&lower, "entries"), 1);
    assert_eq!(digest(&mut c2), d);
    verify(&mut c2);
}

// ---------------------------------------------------------------------------------------------
// 6. CACHE.EVENTS
// ---------------------------------------------------------------------------------------------

#[test]
fn events_are_newest_first_counted_and_capped() {
    let s = Server::start();
    let mut c = s.conn();
    assert!(events(&mut c, &[]).is_empty());
    entry(&mut c, "p:1", "v", &["t1"], &[]);
    entry(&mut c, "p:2", "v", &["t1", "t2"], &[]);
    entry(&mut c, "p:3", "v", &[], &["p:2"]);
    entry(&mut c, "q:1", "v", &[], &[]);
    let t0 = server_ms(&mut c);
    assert_eq!(
        inv(&mut c, &["CONTEXT", "user update", "TAG", "t1", "t2"]),
        3
    );
    assert_eq!(inv(&mut c, &["KEY", "x", "y"]), 0);
    assert_eq!(inv(&mut c, &["STRATEGY", "immediate", "PATTERN", "q:*"]), 1);
    let t1 = server_ms(&mut c);

    let all = events(&mut c, &[]);
    assert_eq!(
        event_summary(&all),
        [
            ev("pattern", "q:*", 1, ""),
            ev("key", "x y", 0, ""),
            ev("tag", "t1 t2", 3, "user update"),
        ]
    );
    let ts: Vec<u64> = all.iter().map(|e| at_u(e, "timestamp_ms")).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first: {ts:?}");
    assert!(
        ts.iter().all(|&t| t as i64 >= t0 && t as i64 <= t1),
        "{ts:?} within [{t0}, {t1}]"
    );
    for e in &all {
        let _ = at_u(e, "duration_us");
    }
    assert_eq!(
        event_summary(&events(&mut c, &["COUNT", "2"]))[..],
        event_summary(&all)[..2]
    );
    assert_eq!(
        event_summary(&events(&mut c, &["count", "1"]))[..],
        event_summary(&all)[..1]
    );
    assert_eq!(events(&mut c, &["COUNT", "100"]), all);

    // Errors change nothing.
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
        (&["COUNT"], "ERR syntax error"),
        (&["FOO"], "ERR syntax error"),
        (&["FOO", "1"], "ERR syntax error"),
        (
            &["COUNT", "1", "2"],
            "ERR wrong number of arguments for 'cache.events' command",
        ),
    ] {
        let mut parts = vec!["CACHE.EVENTS"];
        parts.extend_from_slice(args);
        assert_eq!(err(&mut c, &parts), want, "{parts:?}");
    }
    assert_eq!(digest(&mut c), d);
    assert_eq!(events(&mut c, &[]), all);

    // Capped at cache.max-events: the newest are kept.
    config_set(&mut c, "cache.max-events", "5");
    for i in 1..=8 {
        inv(&mut c, &["KEY", &format!("k{i}")]);
    }
    let keys_of = |ev: &[J]| -> Vec<String> {
        ev.iter()
            .map(|e| at(e, "pattern").as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        keys_of(&events(&mut c, &[])),
        ["k8", "k7", "k6", "k5", "k4"]
    );
    assert_eq!(keys_of(&events(&mut c, &["COUNT", "100"])).len(), 5);
    assert_eq!(
        stat(&mut c, "total_invalidations"),
        11,
        "counters are not capped"
    );
    config_set(&mut c, "cache.max-events", "3");
    assert_eq!(keys_of(&events(&mut c, &[])), ["k8", "k7", "k6"]);
    inv(&mut c, &["KEY", "k9"]);
    assert_eq!(keys_of(&events(&mut c, &[])), ["k9", "k8", "k7"]);
    config_set(&mut c, "cache.max-events", "10");
    assert_eq!(keys_of(&events(&mut c, &[])), ["k9", "k8", "k7"]);
    inv(&mut c, &["KEY", "k10"]);
    assert_eq!(keys_of(&events(&mut c, &[])), ["k10", "k9", "k8", "k7"]);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 7. CACHE.HOTKEYS
// ---------------------------------------------------------------------------------------------

#[test]
fn hotkeys_are_hottest_first_with_count() {
    let s = Server::start();
    let mut c = s.conn();
    let ks = names("h", 13);
    entries(&mut c, &ks[1..], "v", &[], &[]);
    for _ in 0..5 {
        assert_eq!(get(&mut c, "h1").as_deref(), Some("v"));
    }
    ok(&mut c, &["CACHE.MGET", "h2", "h2", "h2", "nope", "h3"]);
    let mut rest = vec!["CACHE.MGET".to_string()];
    rest.extend(ks[4..].iter().cloned());
    ok(&mut c, &rest);
    assert_eq!(get(&mut c, "h0"), None, "a miss is not a hot key");
    assert_eq!(get(&mut c, "h3").as_deref(), Some("v"));

    // h1 5, h2 3, h3 2, then h4..h12 with 1 each, ties by key.
    let full = pairs(&[
        ("h1", 5),
        ("h2", 3),
        ("h3", 2),
        ("h10", 1),
        ("h11", 1),
        ("h12", 1),
        ("h4", 1),
        ("h5", 1),
        ("h6", 1),
        ("h7", 1),
        ("h8", 1),
        ("h9", 1),
    ]);
    assert_eq!(hotkeys(&mut c, &[]), full[..10], "10 by default");
    assert_eq!(hotkeys(&mut c, &["COUNT", "3"]), full[..3]);
    assert_eq!(hotkeys(&mut c, &["COUNT", "100"]), full);
    // The hit counts are those of CACHE.INSPECT.
    assert_eq!(
        int(&field(&ok(&mut c, &["CACHE.INSPECT", "h2"]), "hits")),
        3
    );
    // A key invalidated is not hot any more (its count stays in the table: written again and
    // read, it is listed with it).
    assert_eq!(inv(&mut c, &["KEY", "h1"]), 1);
    assert_eq!(hotkeys(&mut c, &["COUNT", "1"]), pairs(&[("h2", 3)]));
    ok(&mut c, &["CACHE.SET", "h1", "v"]);
    assert_eq!(hotkeys(&mut c, &["COUNT", "1"]), pairs(&[("h1", 5)]));

    let d = digest(&mut c);
    for (args, want) in [
        (
            &["COUNT", "0"][..],
            "ERR value is out of range, must be positive",
        ),
        (
            &["COUNT", "x"],
            "ERR value is not an integer or out of range",
        ),
        (&["TOP", "3"], "ERR syntax error"),
        (
            &["COUNT", "3", "x"],
            "ERR wrong number of arguments for 'cache.hotkeys' command",
        ),
    ] {
        let mut parts = vec!["CACHE.HOTKEYS"];
        parts.extend_from_slice(args);
        assert_eq!(err(&mut c, &parts), want, "{parts:?}");
    }
    assert_eq!(digest(&mut c), d);
    assert_eq!(hotkeys(&mut c, &["COUNT", "100"]), full);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 8. CACHE.RESET
// ---------------------------------------------------------------------------------------------

#[test]
fn reset_zeroes_metrics_but_not_the_index() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", "1234", &["t", "u"], &["r"]);
    entry(&mut c, "b", "56", &["t"], &["a"]);
    entry(&mut c, "gone", "x", &["g"], &[]);
    assert_eq!(get(&mut c, "a").as_deref(), Some("1234"));
    assert_eq!(get(&mut c, "zz"), None);
    assert_eq!(inv(&mut c, &["CONTEXT", "c", "TAG", "g"]), 1);
    entry(&mut c, "del", "x", &[], &[]);
    assert_eq!(int(&ok(&mut c, &["DEL", "del"])), 1);
    let before = stats(&mut c);
    assert_eq!(at_u(&before, "hits"), 1);
    assert_eq!(at_u(&before, "removals.deleted"), 1);
    let index = counters(&mut c);
    assert_eq!(index, [2, 2, 2, 2, 2, 6]);
    let keys_before = keys(&mut c, &["ALL"]);
    let d = digest(&mut c);

    assert_eq!(
        err(&mut c, &["CACHE.RESET", "now"]),
        "ERR wrong number of arguments for 'cache.reset' command"
    );
    assert_eq!(stats(&mut c)["hits"], 1, "a rejected RESET resets nothing");

    let t0 = server_ms(&mut c);
    assert_eq!(ok(&mut c, &["CACHE.RESET"]), Value::Okay);
    let mut j = stats(&mut c);
    assert!(at_u(&j, "metrics_since_ms") as i64 >= t0);
    take_timing(&mut j);
    let expected = serde_json::json!({
        "entries": 2, "tags": 2, "tagged_entries": 2, "resources": 2, "dependency_edges": 2,
        "hits": 0, "misses": 0, "hit_rate": 0.0,
        "total_invalidations": 0, "total_keys_invalidated": 0,
        "rates": {"last_hour": 0, "last_24_hours": 0, "average_per_hour": 0.0},
        "thresholds": {"warning_per_hour": 50, "critical_per_hour": 100, "current_alert_level": "normal"},
        "patterns": {"most_common_patterns": {}, "invalidation_types": {}, "by_context": {}, "by_strategy": {}},
        "efficiency": {
            "avg_keys_per_invalidation": 0.0, "avg_duration_ms": null, "max_duration_ms": null,
            "empty_invalidations": 0, "cascaded_keys": 0, "max_cascaded_keys": 0,
            "max_cascade_depth": 0, "unread_keys_invalidated": 0
        },
        "removals": {"expired": 0, "evicted": 0, "deleted": 0, "expired_unread": 0, "expired_read_once": 0},
        "operations": {"get": op(0), "set": op(0), "invalidate": op(0)},
        "memory": {
            "index_bytes": null, "value_bytes": 6, "lease_bytes": 0, "batch_bytes": null,
            "lazy_bytes": 0, "metrics_bytes": null, "rules_bytes": 0, "watch_bytes": 0,
            "cluster_bytes": 0, "history_bytes": null, "total_bytes": null
        },
        "lazy": {"marks": 0, "cascaded": 0, "bytes": 0, "reclaimed": 0, "walks": 0, "steps": 0, "max_step_us": 0},
        "metrics_since_ms": null,
        "soft": SOFT_NONE.clone(),
        "guard": guard_none(&j)
    });
    assert_json(&j, &expected, "CACHE.STATS after CACHE.RESET");
    assert!(events(&mut c, &[]).is_empty());
    assert!(hotkeys(&mut c, &[]).is_empty());
    assert!(issues(&mut c).is_empty());
    assert_eq!(info_get(&mut c, "cache_hits"), "0");
    assert_eq!(info_get(&mut c, "cache_invalidations"), "0");
    assert_eq!(info_get(&mut c, "cache_removed_deleted"), "0");
    assert_eq!(info_get(&mut c, "cache_entries"), "2");
    // The entries and their counters are untouched.
    assert_eq!(keys(&mut c, &["ALL"]), keys_before);
    assert_eq!(digest(&mut c), d);
    assert_eq!(int(&field(&ok(&mut c, &["CACHE.INSPECT", "a"]), "hits")), 1);
    // Counting starts again.
    assert_eq!(get(&mut c, "b").as_deref(), Some("56"));
    assert_eq!(inv(&mut c, &["KEY", "b"]), 1);
    let j = stats(&mut c);
    assert_eq!(
        [
            at_u(&j, "hits"),
            at_u(&j, "total_invalidations"),
            at_u(&j, "operations.get.count"),
            at_u(&j, "operations.invalidate.count")
        ],
        [1, 1, 1, 1]
    );
    // b is gone: not hot.
    assert_eq!(hotkeys(&mut c, &[]), pairs(&[]));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 9. Configs
// ---------------------------------------------------------------------------------------------

#[test]
fn configs_defaults_ranges_and_rejection() {
    let s = Server::start();
    let mut c = s.conn();
    let defaults = [
        ("cache.warning-per-hour", "50"),
        ("cache.critical-per-hour", "100"),
        ("cache.event-retention-seconds", "3600"),
        ("cache.max-events", "10000"),
        ("cache.batch-delay-ms", "100"),
        ("cache.slow-op-us", "10000"),
        ("cache.max-cascade-depth", "16"),
        ("cache.default-ttl-seconds", "0"),
    ];
    for (name, value) in defaults {
        assert_eq!(config_get(&mut c, name), value, "{name}");
    }

    let d = digest(&mut c);
    for (name, bad, range) in [
        ("cache.batch-delay-ms", "9", "between 10 and 5000 inclusive"),
        (
            "cache.batch-delay-ms",
            "5001",
            "between 10 and 5000 inclusive",
        ),
        ("cache.max-events", "0", "between 1 and 1000000 inclusive"),
        (
            "cache.warning-per-hour",
            "-1",
            "between 0 and 2147483647 inclusive",
        ),
        (
            "cache.critical-per-hour",
            "-1",
            "between 0 and 2147483647 inclusive",
        ),
        (
            "cache.slow-op-us",
            "-1",
            "between 0 and 2147483647 inclusive",
        ),
        (
            "cache.event-retention-seconds",
            "0",
            "between 1 and 2592000 inclusive",
        ),
    ] {
        let e = err(&mut c, &["CONFIG", "SET", name, bad]);
        assert!(
            e.starts_with("ERR CONFIG SET failed") && e.contains(name) && e.contains(range),
            "CONFIG SET {name} {bad}: {e}"
        );
        let old = defaults.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert_eq!(Some(config_get(&mut c, name).as_str()), old, "{name} kept");
    }
    let e = err(&mut c, &["CONFIG", "SET", "cache.warning-per-hour", "many"]);
    assert!(e.starts_with("ERR CONFIG SET failed"), "{e}");
    assert_eq!(config_get(&mut c, "cache.warning-per-hour"), "50");
    assert_eq!(digest(&mut c), d);

    // The bounds themselves are accepted.
    for (name, value) in [
        ("cache.batch-delay-ms", "10"),
        ("cache.batch-delay-ms", "5000"),
        ("cache.max-events", "1"),
        ("cache.warning-per-hour", "0"),
    ] {
        config_set(&mut c, name, value);
        assert_eq!(config_get(&mut c, name), value);
    }
    // Thresholds show in CACHE.STATS at once.
    config_set(&mut c, "cache.warning-per-hour", "7");
    config_set(&mut c, "cache.critical-per-hour", "9");
    let j = stats(&mut c);
    assert_eq!(at_u(&j, "thresholds.warning_per_hour"), 7);
    assert_eq!(at_u(&j, "thresholds.critical_per_hour"), 9);
    verify(&mut c);

    // loadmodule arguments set the configs too.
    let s2 = Server::with(&["warning-per-hour", "3", "max-events", "2"], &[]);
    let mut c2 = s2.conn();
    assert_eq!(config_get(&mut c2, "cache.warning-per-hour"), "3");
    assert_eq!(config_get(&mut c2, "cache.max-events"), "2");
    for k in ["a", "b", "c"] {
        inv(&mut c2, &["KEY", k]);
    }
    assert_eq!(
        event_summary(&events(&mut c2, &[])),
        [ev("key", "c", 0, ""), ev("key", "b", 0, "")]
    );
    assert_eq!(info_get(&mut c2, "cache_alert_level"), "warning");
    verify(&mut c2);
}

// ---------------------------------------------------------------------------------------------
// 10. Latency monitor
// ---------------------------------------------------------------------------------------------

/// LATENCY LATEST as (event, latest ms) pairs.
fn latency_latest(c: &mut Connection) -> Vec<(String, i64)> {
    list(&ok(c, &["LATENCY", "LATEST"]))
        .iter()
        .map(|e| {
            let a = list(e);
            (text(&a[0]), int(&a[2]))
        })
        .collect()
}

#[test]
fn a_slow_invalidation_reaches_the_latency_monitor() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "latency-monitor-threshold", "1");
    let ks = names("lat:", 20_000);
    entries(&mut c, &ks, "v", &["lat"], &[]);
    assert_eq!(inv(&mut c, &["TAG", "lat"]), 20_000);
    let e = events(&mut c, &["COUNT", "1"]);
    let duration_us = at_u(&e[0], "duration_us");
    let latest = latency_latest(&mut c);
    let found = latest.iter().find(|(name, _)| name == "cache-invalidate");
    if duration_us >= 1000 {
        let (_, ms) = found.unwrap_or_else(|| {
            panic!("a {duration_us} us invalidation is not in LATENCY LATEST: {latest:?}")
        });
        assert_eq!(*ms as u64, duration_us / 1000, "latest sample in ms");
    } else {
        eprintln!("the invalidation took {duration_us} us (< 1 ms): latency event not checked");
        assert!(
            found.is_none(),
            "a sub-millisecond sample was recorded: {latest:?}"
        );
    }
    verify(&mut c);
}

#[test]
fn the_latency_threshold_is_followed_through_config_changes() {
    // The module keeps the threshold it read and reads it again after a CONFIG SET.
    let s = Server::start();
    let mut c = s.conn();
    let slow = |c: &mut redis::Connection, round: usize| -> u64 {
        let ks = names(&format!("lat{round}:"), 20_000);
        entries(c, &ks, "v", &["lat"], &[]);
        assert_eq!(inv(c, &["TAG", "lat"]), 20_000);
        at_u(&events(c, &["COUNT", "1"])[0], "duration_us")
    };
    let recorded = |c: &mut redis::Connection| {
        latency_latest(c)
            .iter()
            .any(|(name, _)| name == "cache-invalidate")
    };
    // Off: read (as 0) and kept; nothing recorded.
    let us = slow(&mut c, 0);
    assert!(!recorded(&mut c), "monitor off, {us} us");
    // On: the next slow invalidation is recorded.
    config_set(&mut c, "latency-monitor-threshold", "1");
    let us = slow(&mut c, 1);
    if us >= 1000 {
        assert!(recorded(&mut c), "threshold 1 ms, a {us} us invalidation");
    } else {
        eprintln!("the invalidation took {us} us (< 1 ms): not checked");
    }
    // Off again: nothing more.
    config_set(&mut c, "latency-monitor-threshold", "0");
    ok(&mut c, &["LATENCY", "RESET"]);
    let us = slow(&mut c, 2);
    assert!(!recorded(&mut c), "monitor off again, {us} us");
    if us < 1000 {
        // Then a module still using the threshold of 1 ms would not have recorded it either.
        eprintln!("the last invalidation took {us} us (< 1 ms): the off check proves little");
    }
    verify(&mut c);
}

#[test]
fn the_latency_monitor_stays_empty_while_disabled() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(config_get(&mut c, "latency-monitor-threshold"), "0");
    entry(&mut c, "a", "v", &[], &[]);
    assert_eq!(inv(&mut c, &["KEY", "a"]), 1);
    assert_eq!(latency_latest(&mut c), vec![], "monitor is off");
    verify(&mut c);
}

/// Doubles read the same in every form: under RESP2 the shortest digits (Redis 7.0 alone would
/// write `2.6000000000000001`), as in the JSON form.
#[test]
fn doubles_are_written_with_the_shortest_digits() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["CACHE.SET", "k", "v"]);
    let mut p = redis::pipe();
    for i in 0..500 {
        p.cmd("CACHE.GET").arg(if i < 13 { "k" } else { "missing" });
    }
    p.query::<()>(&mut c).unwrap();
    let st = ok(&mut c, &["CACHE.STATS"]);
    assert_eq!(text(&field(&st, "hit_rate")), "2.6");
    let json = text(&ok(&mut c, &["CACHE.STATS", "JSON"]));
    assert!(json.contains("\"hit_rate\":2.6"), "{json}");
}

/// CACHE.WRITE runs invalidations: it is timed with them in `operations.invalidate`.
#[test]
fn cache_write_counts_as_an_invalidate_operation() {
    let s = Server::start();
    let mut c = s.conn();
    let count = |c: &mut Connection| {
        let st = ok(c, &["CACHE.STATS"]);
        int(&field(
            &field(&field(&st, "operations"), "invalidate"),
            "count",
        ))
    };
    assert_eq!(count(&mut c), 0);
    ok(&mut c, &["CACHE.INVALIDATE", "TAG", "nothing"]);
    assert_eq!(count(&mut c), 1);
    entry(&mut c, "u1", "v", &["user:1"], &[]);
    assert_eq!(int(&ok(&mut c, &["CACHE.WRITE", "user", "1"])), 1);
    assert_eq!(count(&mut c), 2);
    verify(&mut c);
}

/// A hot key that is gone (deleted, invalidated, expired) is not listed, nor one that is hot in
/// another database.
#[test]
fn hotkeys_leave_out_keys_that_are_gone() {
    let s = Server::start();
    let mut c = s.conn();
    for k in ["a", "b", "c", "d"] {
        ok(&mut c, &["CACHE.SET", k, "v", "TAGS", "1", k]);
        get(&mut c, k);
    }
    ok(&mut c, &["DEL", "a"]);
    ok(&mut c, &["CACHE.INVALIDATE", "TAG", "b"]);
    ok(&mut c, &["CACHE.SET", "c", "v", "PX", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(hotkeys(&mut c, &[]), pairs(&[("d", 1)]));
    ok(&mut c, &["SELECT", "1"]);
    assert_eq!(hotkeys(&mut c, &[]), pairs(&[]));
}
