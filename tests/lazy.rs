//! The LAZY invalidation strategy against a real server: `CACHE.INVALIDATE STRATEGY LAZY ...`
//! adds a mark (no walk over the entries) and replies the number of entries its selector picks
//! directly; the entries it covers (the cascade included) read as misses at once for every cache
//! command, an entry written again is fresh, and a reclaimer deletes the covered entries in
//! small timed steps on the master, replicating the deletes. Marks persist (RDB aux data, AOF),
//! replicate (`CACHE.PENDING MARK/RECLAIMED`), and are listed by `CACHE.PENDING LAZY`.
//!
//! No timing assertions. "At once" is checked inside one MULTI/EXEC (the reclaimer cannot run
//! in the middle of a transaction), or while the reclaimer is held on database 0: it works on
//! the lowest database with marks first, so with `cache.lazy-step-us 50` and many entries in
//! database 0 under a mark (see `stall`), it walks database 0 for a long while before it looks
//! at database 1. What a replica read was the unreclaimed state if the master still has every
//! entry of database 1 after it (checked); before a restart, `stalled` proves that nothing of
//! database 1 was reclaimed yet. The end state is checked once `CACHE.PENDING LAZY` is empty
//! (polled with a deadline).

mod common;
use common::*;

use redis::ConnectionLike;
use serde_json::Value as J;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Splits a command line on spaces.
fn a(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// `CACHE.INVALIDATE STRATEGY LAZY <args>` -> its integer reply.
fn lazy(c: &mut Connection, args: &str) -> i64 {
    let mut parts = a("CACHE.INVALIDATE STRATEGY LAZY");
    parts.extend(a(args));
    int(&ok(c, &parts))
}

/// Runs the commands in one MULTI/EXEC and returns their replies; an error reply stays in its
/// place as `Value::ServerError` (see `error_text`).
fn multi(c: &mut Connection, cmds: &[Vec<String>]) -> Vec<Value> {
    assert_eq!(ok(c, &["MULTI"]), Value::Okay);
    for q in cmds {
        assert_eq!(
            ok(c, q),
            Value::SimpleString("QUEUED".into()),
            "queue {q:?}"
        );
    }
    match c.req_command(&redis::cmd("EXEC")).expect("EXEC") {
        Value::Array(v) => {
            assert_eq!(v.len(), cmds.len(), "EXEC replies: {v:?}");
            v
        }
        other => panic!("EXEC: {other:?}"),
    }
}

/// The text of an error reply found inside an EXEC reply.
fn error_text(v: &Value) -> String {
    match v {
        Value::ServerError(e) => format!("{} {}", e.code(), e.details().unwrap_or("")),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Values of a CACHE.MGET reply (nil as None).
fn values(v: &Value) -> Vec<Option<String>> {
    list(v)
        .iter()
        .map(|x| bytes(x).map(|b| String::from_utf8(b).expect("utf-8")))
        .collect()
}

/// Pipelined `CACHE.SET <prefix><i> v-<prefix><i> [TAGS ...]` for each i.
fn fill(c: &mut Connection, prefix: &str, range: std::ops::Range<usize>, tags: &[&str]) {
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(2000) {
        let mut p = redis::pipe();
        for &i in chunk {
            let key = format!("{prefix}{i}");
            let mut cm = redis::cmd("CACHE.SET");
            cm.arg(&key).arg(format!("v-{key}"));
            if !tags.is_empty() {
                cm.arg("TAGS").arg(tags.len()).arg(tags);
            }
            p.add_command(cm).ignore();
        }
        p.query::<()>(c).expect("pipelined CACHE.SET");
    }
}

/// The fields of a CACHE.PENDING LAZY row, in reply order.
const MARK_FIELDS: [&str; 8] = [
    "db",
    "type",
    "pattern",
    "depth",
    "context",
    "created_ms",
    "selected",
    "generation",
];

/// One CACHE.PENDING LAZY row.
#[derive(Debug, Clone, PartialEq)]
struct Mark {
    db: i64,
    kind: String,
    pattern: String,
    depth: i64,
    context: Option<String>,
    created_ms: i64,
    selected: i64,
    generation: i64,
}

fn mark_rows(v: &Value) -> Vec<Mark> {
    list(v)
        .iter()
        .map(|r| {
            let names: Vec<String> = map(r).into_iter().map(|(k, _)| k).collect();
            assert_eq!(names, MARK_FIELDS, "CACHE.PENDING LAZY row fields: {r:?}");
            let g = |n: &str| field(r, n);
            Mark {
                db: int(&g("db")),
                kind: text(&g("type")),
                pattern: text(&g("pattern")),
                depth: int(&g("depth")),
                context: bytes(&g("context")).map(|b| String::from_utf8(b).expect("utf-8")),
                created_ms: int(&g("created_ms")),
                selected: int(&g("selected")),
                generation: int(&g("generation")),
            }
        })
        .collect()
}

/// CACHE.PENDING LAZY (on a master).
fn marks(c: &mut Connection) -> Vec<Mark> {
    mark_rows(&ok(c, &["CACHE.PENDING", "LAZY"]))
}

/// (db, type, pattern, depth, context, selected): what does not depend on time.
type Shape = (i64, String, String, i64, Option<String>, i64);

fn shape(rows: &[Mark]) -> Vec<Shape> {
    rows.iter()
        .map(|r| {
            (
                r.db,
                r.kind.clone(),
                r.pattern.clone(),
                r.depth,
                r.context.clone(),
                r.selected,
            )
        })
        .collect()
}

fn sh(db: i64, kind: &str, pattern: &str, depth: i64, ctx: Option<&str>, selected: i64) -> Shape {
    (
        db,
        kind.into(),
        pattern.into(),
        depth,
        ctx.map(String::from),
        selected,
    )
}

/// Waits (bounded) until the master reclaimed every mark.
fn drained(c: &mut Connection) {
    eventually("CACHE.PENDING LAZY empty", || marks(c).is_empty());
}

/// A number at a path of CACHE.STATS JSON, e.g. `["lazy", "reclaimed"]`.
fn num(j: &J, path: &[&str]) -> u64 {
    let mut v = j;
    for p in path {
        v = v.get(p).unwrap_or_else(|| panic!("no {path:?} in {j}"));
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a count: {v}"))
}

/// `lazy.<name>` of CACHE.STATS.
fn lazy_stat(c: &mut Connection, name: &str) -> u64 {
    num(&stats(c), &["lazy", name])
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

/// Entries in database 0 that hold the reclaimer there: `n` filler entries, and steps of
/// 50 µs. Call `stall_mark` (inside the MULTI that makes the marks under test in another
/// database) to start the long walk.
fn stall(c: &mut Connection, n: usize) {
    select(c, 0);
    fill(c, "filler:", 0..n, &[]);
    config_set(c, "cache.lazy-step-us", "50");
}

/// The commands that start the walk of database 0 (a mark over the last filler entry, so that
/// nothing is deleted before the walk ends), then select `db` again.
fn stall_mark(db: u32) -> Vec<Vec<String>> {
    vec![
        a("SELECT 0"),
        a(&format!(
            "CACHE.INVALIDATE STRATEGY LAZY KEY {}",
            stall_key()
        )),
        a(&format!("SELECT {db}")),
    ]
}

fn stall_key() -> String {
    format!("filler:{}", FILLER - 1)
}

/// Whether the reclaimer is still walking database 0 (the filler mark is pending): then it has
/// not looked at any other database yet.
fn stalled(c: &mut Connection) -> bool {
    let key = stall_key();
    marks(c).iter().any(|m| m.db == 0 && m.pattern == key)
}

/// Lets a stalled reclaimer finish quickly.
fn unstall(c: &mut Connection) {
    config_set(c, "cache.lazy-step-us", "100000");
}

/// How many filler entries hold the reclaimer: about 64 per step, one step per millisecond or
/// more, so the walk of database 0 takes well over half a second.
const FILLER: usize = 50_000;

// ---------------------------------------------------------------------------------------------
// 1. Every selector: the reply, misses at once, the drain
// ---------------------------------------------------------------------------------------------

/// The entries of `dataset`, sorted; plus a plain string key `p:plain`.
const DATASET: [&str; 13] = [
    "d:1", "d:2", "d:3", "keep", "ns", "ns:1", "ns:2", "nsx:1", "p:1", "p:2", "u:1", "u:2", "u:3",
];

fn dataset(c: &mut Connection) {
    entry(c, "u:1", &["t"], &[]);
    entry(c, "u:2", &["t", "x"], &[]);
    entry(c, "u:3", &["x"], &[]);
    entry(c, "p:1", &[], &[]);
    entry(c, "p:2", &["x"], &[]);
    entry(c, "ns", &[], &[]);
    entry(c, "ns:1", &[], &[]);
    entry(c, "ns:2", &[], &[]);
    entry(c, "nsx:1", &[], &[]);
    entry(c, "d:1", &[], &["row:1"]);
    entry(c, "d:2", &[], &["row:1", "row:2"]);
    entry(c, "d:3", &[], &["row:3"]);
    entry(c, "keep", &[], &[]);
    assert_eq!(ok(c, &["SET", "p:plain", "plain"]), Value::Okay);
}

#[test]
fn each_selector_covers_its_entries_at_once_and_the_keyspace_drains_to_the_rest() {
    let s = Server::start();
    let mut c = s.conn();
    // (selector, its type and arguments as listed, entries covered). Nothing depends on an
    // entry's key here, so nothing cascades; the database has dependencies (on rows), so the
    // default depth (16) is recorded, except for ALL, which never cascades.
    let cases: [(&str, &str, &str, &[&str]); 9] = [
        ("TAG t", "tag", "t", &["u:1", "u:2"]),
        ("TAG t x", "tag", "t x", &["p:2", "u:1", "u:2", "u:3"]),
        ("PATTERN p:*", "pattern", "p:*", &["p:1", "p:2"]),
        (
            "PATTERN *:1",
            "pattern",
            "*:1",
            &["d:1", "ns:1", "nsx:1", "p:1", "u:1"],
        ),
        ("NAMESPACE ns", "namespace", "ns", &["ns:1", "ns:2"]),
        (
            "KEY nothere p:1 u:1",
            "key",
            "nothere p:1 u:1",
            &["p:1", "u:1"],
        ),
        ("DEPENDENTS row:1", "dependents", "row:1", &["d:1", "d:2"]),
        (
            "DEPENDENTS row:2 row:3",
            "dependents",
            "row:2 row:3",
            &["d:2", "d:3"],
        ),
        ("ALL", "all", "", &DATASET),
    ];
    let mut expected_rest: Vec<Vec<String>> = Vec::new();
    for (i, (selector, kind, pattern, covered)) in cases.iter().enumerate() {
        let db = i as u32 + 1;
        select(&mut c, db);
        dataset(&mut c);
        assert_eq!(keys(&mut c, &["ALL"]), sv(&DATASET));
        let rest: Vec<String> = DATASET
            .iter()
            .filter(|k| !covered.contains(k))
            .map(|k| k.to_string())
            .collect();
        let mut mget = a("CACHE.MGET");
        mget.extend(sv(&DATASET));
        let mut keys_sel = a("CACHE.KEYS");
        keys_sel.extend(a(selector));
        let t0 = server_ms(&mut c);
        let r = multi(
            &mut c,
            &[
                a(&format!("CACHE.INVALIDATE STRATEGY LAZY {selector}")),
                mget,
                a("CACHE.KEYS ALL"),
                keys_sel,
                a("DBSIZE"),
                a(&format!("CACHE.INSPECT {}", covered[0])),
                a(&format!("CACHE.GET {}", covered[0])),
                a(&format!("EXISTS {}", covered[0])),
                a("GET p:plain"),
                a("CACHE.PENDING LAZY"),
            ],
        );
        let t1 = server_ms(&mut c);
        assert_eq!(int(&r[0]), covered.len() as i64, "{selector}: the reply");
        let want: Vec<Option<String>> = DATASET
            .iter()
            .map(|k| (!covered.contains(k)).then(|| format!("v-{k}")))
            .collect();
        assert_eq!(values(&r[1]), want, "{selector}: CACHE.MGET at once");
        assert_eq!(strings(&r[2]), rest, "{selector}: CACHE.KEYS ALL at once");
        assert!(
            strings(&r[3]).is_empty(),
            "{selector}: CACHE.KEYS {selector}"
        );
        assert_eq!(
            int(&r[4]),
            14,
            "{selector}: nothing is deleted by the command"
        );
        assert_eq!(r[5], Value::Nil, "{selector}: CACHE.INSPECT");
        assert_eq!(r[6], Value::Nil, "{selector}: CACHE.GET");
        assert_eq!(int(&r[7]), 1, "{selector}: EXISTS still sees it");
        assert_eq!(
            text(&r[8]),
            "plain",
            "{selector}: a plain key is never touched"
        );
        let rows: Vec<Mark> = mark_rows(&r[9])
            .into_iter()
            .filter(|m| m.db == db as i64)
            .collect();
        let depth = if *kind == "all" { 0 } else { 16 };
        assert_eq!(
            shape(&rows),
            vec![sh(
                db as i64,
                kind,
                pattern,
                depth,
                None,
                covered.len() as i64
            )],
            "{selector}: CACHE.PENDING LAZY"
        );
        assert!(
            (t0..=t1).contains(&rows[0].created_ms),
            "{selector}: created_ms {} not in [{t0}, {t1}]",
            rows[0].created_ms
        );
        expected_rest.push(rest);
    }

    drained(&mut c);
    for (i, rest) in expected_rest.iter().enumerate() {
        let db = i as u32 + 1;
        select(&mut c, db);
        assert_eq!(
            &keys(&mut c, &["ALL"]),
            rest,
            "db {db}: the untouched entries"
        );
        assert_eq!(dbsize(&mut c), rest.len() as i64 + 1, "db {db}: DBSIZE");
        for k in rest {
            assert_eq!(get(&mut c, k), Some(format!("v-{k}")), "db {db}: {k}");
        }
        assert_eq!(
            text(&ok(&mut c, &["GET", "p:plain"])),
            "plain",
            "db {db}: the plain key"
        );
        verify(&mut c);
    }
    let total: usize = cases.iter().map(|x| x.3.len()).sum();
    assert_eq!(lazy_stat(&mut c, "reclaimed"), total as u64);
    assert_eq!(lazy_stat(&mut c, "marks"), 0);
    assert_eq!(lazy_stat(&mut c, "cascaded"), 0);
    select(&mut c, 0);
    assert_eq!(dbsize(&mut c), 0);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 2. Covered entries are gone for every cache command; a rewrite is fresh
// ---------------------------------------------------------------------------------------------

#[test]
fn covered_entries_are_missing_to_every_cache_command_and_a_rewrite_is_fresh() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &["t"], &[]);
    entry(&mut c, "c", &["t"], &[]);
    entry(&mut c, "d", &["t"], &[]);
    entry(&mut c, "keep", &["k"], &[]);
    let r = multi(
        &mut c,
        &[
            a("CACHE.INVALIDATE STRATEGY LAZY TAG t"),
            a("CACHE.GET a"),
            a("CACHE.MGET a keep b"),
            a("CACHE.INSPECT a"),
            a("CACHE.TAG a x"),
            a("CACHE.DEPEND a r"),
            a("CACHE.SET b new-b XX"),
            a("CACHE.SET a new-a NX TAGS 1 t"),
            a("CACHE.SET c new-c"),
            a("CACHE.GET a"),
            a("CACHE.GET c"),
            // IMMEDIATE does not count (nor delete) what LAZY already invalidated.
            a("CACHE.INVALIDATE KEY b d"),
            a("EXISTS a b c d"),
            a("DBSIZE"),
            a("CACHE.KEYS TAG t"),
            a("CACHE.KEYS ALL"),
            a("CACHE.TAG c u"),
        ],
    );
    assert_eq!(int(&r[0]), 4);
    assert_eq!(r[1], Value::Nil);
    assert_eq!(values(&r[2]), vec![None, Some("v-keep".to_string()), None]);
    assert_eq!(r[3], Value::Nil);
    assert_eq!(error_text(&r[4]), "ERR no such key");
    assert_eq!(error_text(&r[5]), "ERR no such key");
    assert_eq!(r[6], Value::Nil, "XX on a covered entry");
    assert_eq!(r[7], Value::Okay, "NX on a covered entry");
    assert_eq!(r[8], Value::Okay);
    assert_eq!(text(&r[9]), "new-a");
    assert_eq!(text(&r[10]), "new-c");
    assert_eq!(int(&r[11]), 0, "IMMEDIATE KEY b d after LAZY");
    assert_eq!(
        int(&r[12]),
        4,
        "EXISTS sees covered entries until reclaimed"
    );
    assert_eq!(int(&r[13]), 5);
    assert_eq!(strings(&r[14]), sv(&["a"]));
    assert_eq!(strings(&r[15]), sv(&["a", "c", "keep"]));
    assert_eq!(int(&r[16]), 1, "CACHE.TAG on the rewritten entry");

    drained(&mut c);
    // b and d reclaimed; a and c, written again after the invalidation, stay.
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["a", "c", "keep"]));
    assert_eq!(dbsize(&mut c), 3);
    assert_eq!(get(&mut c, "a").as_deref(), Some("new-a"));
    assert_eq!(get(&mut c, "c").as_deref(), Some("new-c"));
    assert_eq!(
        strings(&field(&ok(&mut c, &["CACHE.INSPECT", "c"]), "tags")),
        sv(&["u"])
    );
    assert_eq!(exists(&mut c, "b") + exists(&mut c, "d"), 0);
    assert_eq!(lazy_stat(&mut c, "reclaimed"), 2);
    // A later invalidation takes the fresh entries as usual.
    assert_eq!(lazy(&mut c, "TAG t"), 1);
    drained(&mut c);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["c", "keep"]));
    verify(&mut c);
}

/// CACHE.PENDING LAZY under RESP2 and RESP3, the reclaimer's options rejected with exact
/// errors, and HELP.
fn check_pending_lazy(resp3: bool) {
    let s = Server::start();
    let mut c = if resp3 { s.conn3() } else { s.conn() };
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &[], &["a"]);
    entry(&mut c, "user:1", &[], &[]);
    select(&mut c, 3);
    entry(&mut c, "z", &[], &[]);
    select(&mut c, 0);
    assert!(marks(&mut c).is_empty());
    assert_eq!(ok(&mut c, &["CACHE.PENDING", "LAZY"]), Value::Array(vec![]));
    let d0 = digest(&mut c);

    // Rejected: exact errors, no mark, no change.
    for (parts, want) in [
        (a("CACHE.INVALIDATE STRATEGY LAZY"), "ERR syntax error"),
        (a("CACHE.INVALIDATE STRATEGY LAZY TAG"), "ERR syntax error"),
        (a("CACHE.INVALIDATE STRATEGY LAZY ALL x"), "ERR syntax error"),
        (a("CACHE.INVALIDATE STRATEGY LAZY STRATEGY LAZY ALL"), "ERR syntax error"),
        (
            a("CACHE.INVALIDATE STRATEGY LAZY DEPTH -1 ALL"),
            "ERR DEPTH can't be negative",
        ),
        (
            a("CACHE.INVALIDATE STRATEGY LAZY DEPTH x ALL"),
            "ERR value is not an integer or out of range",
        ),
        (
            a("CACHE.INVALIDATE STRATEGY LAZIER ALL"),
            "ERR unknown strategy 'LAZIER', expected IMMEDIATE, LAZY, BATCHED or SOFT",
        ),
        (
            a("CACHE.INVALIDATE STRATEGY LAZY EVERYTHING"),
            "ERR unknown selector 'EVERYTHING', expected KEY, TAG, PATTERN, NAMESPACE, ALL or DEPENDENTS",
        ),
        (
            a("CACHE.PENDING LAZY x"),
            "ERR wrong number of arguments for 'cache.pending' command",
        ),
    ] {
        assert_eq!(err(&mut c, &parts), want, "{parts:?}");
        assert_eq!(digest(&mut c), d0, "after {parts:?}");
        assert!(marks(&mut c).is_empty(), "after {parts:?}");
        assert_eq!(keys(&mut c, &["ALL"]), sv(&["a", "b", "user:1"]));
    }

    let t0 = server_ms(&mut c);
    let r = multi(
        &mut c,
        &[
            vec![
                "CACHE.INVALIDATE".into(),
                "DEPTH".into(),
                "1".into(),
                "CONTEXT".into(),
                "release 42".into(),
                "strategy".into(),
                "lazy".into(),
                "TAG".into(),
                "t".into(),
            ],
            a("CACHE.INVALIDATE STRATEGY LAZY PATTERN user:*"),
            a("SELECT 3"),
            // No dependency in database 3: there is no cascade to record.
            a("CACHE.INVALIDATE STRATEGY LAZY KEY z"),
            a("SELECT 0"),
            a("CACHE.INVALIDATE STRATEGY LAZY DEPENDENTS nothing"),
            a("CACHE.PENDING LAZY"),
        ],
    );
    let t1 = server_ms(&mut c);
    assert_eq!(
        r.iter()
            .filter(|v| matches!(v, Value::Int(_)))
            .map(int)
            .collect::<Vec<_>>(),
        vec![2, 1, 1, 0],
        "TAG t counts b through the cascade"
    );
    let raw = &r[6];
    let items = list(raw);
    assert_eq!(items.len(), 4);
    for row in &items {
        if resp3 {
            assert!(
                matches!(row, Value::Map(m) if m.len() == 8),
                "RESP3 map: {row:?}"
            );
        } else {
            assert!(
                matches!(row, Value::Array(v) if v.len() == 16),
                "RESP2 flat array: {row:?}"
            );
        }
    }
    // A mark without CONTEXT has a nil context. Listed by database, oldest first.
    assert_eq!(field(&items[1], "context"), Value::Nil);
    let rows = mark_rows(raw);
    assert_eq!(
        shape(&rows),
        vec![
            sh(0, "tag", "t", 1, Some("release 42"), 1),
            sh(0, "pattern", "user:*", 16, None, 1),
            sh(0, "dependents", "nothing", 16, None, 0),
            sh(3, "key", "z", 0, None, 1),
        ]
    );
    for m in &rows {
        assert!(
            (t0..=t1).contains(&m.created_ms),
            "{m:?} not in [{t0}, {t1}]"
        );
    }
    // Each mark has a generation of its own, in the order they were made.
    let g: Vec<i64> = rows.iter().map(|m| m.generation).collect();
    assert!(
        g[0] >= 1 && g[0] < g[1] && g[1] < g[3] && g[3] < g[2],
        "{g:?}"
    );

    drained(&mut c);
    assert_eq!(ok(&mut c, &["CACHE.PENDING", "LAZY"]), Value::Array(vec![]));
    assert!(keys(&mut c, &["ALL"]).is_empty());
    select(&mut c, 3);
    assert!(keys(&mut c, &["ALL"]).is_empty());
    verify(&mut c);
    select(&mut c, 0);

    assert_eq!(
        strings(&ok(&mut c, &["CACHE.PENDING", "HELP"])),
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
    verify(&mut c);
}

#[test]
fn pending_lazy_lists_every_field_as_a_flat_array_under_resp2() {
    check_pending_lazy(false);
}

#[test]
fn pending_lazy_lists_every_field_as_a_map_under_resp3() {
    check_pending_lazy(true);
}

// ---------------------------------------------------------------------------------------------
// 3. Cascade
// ---------------------------------------------------------------------------------------------

/// `prefix1 <- prefix2 <- ... <- prefix<n>` (each depends on the previous one); the first has
/// `tags`.
fn chain(c: &mut Connection, prefix: &str, n: usize, tags: &[&str]) -> Vec<String> {
    entry(c, &format!("{prefix}1"), tags, &[]);
    for i in 2..=n {
        entry(
            c,
            &format!("{prefix}{i}"),
            &[],
            &[&format!("{prefix}{}", i - 1)],
        );
    }
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn the_cascade_covers_dependents_up_to_the_depth_and_ends_on_cycles() {
    let s = Server::start();
    let mut c = s.conn();
    // The invalidation in each database, its reply, the depth recorded, the entries covered.
    struct Case {
        db: u32,
        inv: &'static str,
        reply: i64,
        depth: i64,
        covered: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            db: 1,
            inv: "DEPTH 0 TAG t",
            reply: 1,
            depth: 0,
            covered: vec!["a1"],
        },
        Case {
            db: 2,
            inv: "DEPTH 1 TAG t",
            reply: 2,
            depth: 1,
            covered: vec!["a1", "a2"],
        },
        Case {
            db: 3,
            inv: "TAG t",
            reply: 4,
            depth: 16,
            covered: vec!["a1", "a2", "a3", "a4"],
        },
        // cache.max-cascade-depth when the mark is made (set back to 16 right after).
        Case {
            db: 4,
            inv: "TAG t",
            reply: 3,
            depth: 2,
            covered: vec!["a1", "a2", "a3"],
        },
        // x <-> y is a cycle; z (tag cy) depends on x; w on z.
        Case {
            db: 5,
            inv: "TAG cy",
            reply: 2,
            depth: 16,
            covered: vec!["w", "z"],
        },
        Case {
            db: 6,
            inv: "KEY x",
            reply: 4,
            depth: 16,
            covered: vec!["w", "x", "y", "z"],
        },
        // e1 depends on the resource r, e2 on e1, e3 on e2.
        Case {
            db: 7,
            inv: "DEPTH 1 DEPENDENTS r",
            reply: 2,
            depth: 1,
            covered: vec!["e1", "e2"],
        },
        // A diamond: l and r depend on top, bottom on both.
        Case {
            db: 8,
            inv: "TAG top",
            reply: 4,
            depth: 16,
            covered: vec!["bottom", "l", "r", "top"],
        },
    ];
    let mut all: Vec<Vec<String>> = Vec::new();
    for case in &cases {
        select(&mut c, case.db);
        let mut names = match case.db {
            1..=4 => chain(&mut c, "a", 4, &["t"]),
            5 | 6 => {
                entry(&mut c, "x", &[], &["y"]);
                entry(&mut c, "y", &[], &["x"]);
                entry(&mut c, "z", &["cy"], &["x"]);
                entry(&mut c, "w", &[], &["z"]);
                sv(&["w", "x", "y", "z"])
            }
            7 => {
                entry(&mut c, "e1", &[], &["r"]);
                entry(&mut c, "e2", &[], &["e1"]);
                entry(&mut c, "e3", &[], &["e2"]);
                sv(&["e1", "e2", "e3"])
            }
            _ => {
                entry(&mut c, "top", &["top"], &[]);
                entry(&mut c, "l", &[], &["top"]);
                entry(&mut c, "r", &[], &["top"]);
                entry(&mut c, "bottom", &[], &["l", "r"]);
                sv(&["bottom", "l", "r", "top"])
            }
        };
        entry(&mut c, "other", &["o"], &[]);
        names.push("other".into());
        names.sort();
        let mut mget = a("CACHE.MGET");
        mget.extend(names.clone());
        let mut cmds = Vec::new();
        if case.db == 4 {
            cmds.push(a("CONFIG SET cache.max-cascade-depth 2"));
        }
        cmds.push(a(&format!("CACHE.INVALIDATE STRATEGY LAZY {}", case.inv)));
        if case.db == 4 {
            cmds.push(a("CONFIG SET cache.max-cascade-depth 16"));
        }
        cmds.extend([mget, a("CACHE.KEYS ALL"), a("CACHE.PENDING LAZY")]);
        let r = multi(&mut c, &cmds);
        // Without the CONFIG SET replies: the invalidation, MGET, KEYS, PENDING LAZY.
        let r: Vec<Value> = if case.db == 4 {
            vec![r[1].clone(), r[3].clone(), r[4].clone(), r[5].clone()]
        } else {
            r
        };
        assert_eq!(int(&r[0]), case.reply, "db {}: {}", case.db, case.inv);
        let rest: Vec<String> = names
            .iter()
            .filter(|k| !case.covered.contains(&k.as_str()))
            .cloned()
            .collect();
        let want: Vec<Option<String>> = names
            .iter()
            .map(|k| (!case.covered.contains(&k.as_str())).then(|| format!("v-{k}")))
            .collect();
        assert_eq!(values(&r[1]), want, "db {}: {}: reads", case.db, case.inv);
        assert_eq!(strings(&r[2]), rest, "db {}: CACHE.KEYS ALL", case.db);
        let depth: Vec<i64> = mark_rows(&r[3])
            .iter()
            .filter(|m| m.db == case.db as i64)
            .map(|m| m.depth)
            .collect();
        assert_eq!(
            depth,
            vec![case.depth],
            "db {}: the depth recorded",
            case.db
        );
        all.push(rest);
    }
    drained(&mut c);
    for (case, rest) in cases.iter().zip(&all) {
        select(&mut c, case.db);
        assert_eq!(
            &keys(&mut c, &["ALL"]),
            rest,
            "db {} after the reclaim",
            case.db
        );
        assert_eq!(dbsize(&mut c), rest.len() as i64, "db {}", case.db);
        verify(&mut c);
    }
    let covered: usize = cases.iter().map(|x| x.covered.len()).sum();
    assert_eq!(lazy_stat(&mut c, "reclaimed"), covered as u64);
    select(&mut c, 0);
    verify(&mut c);
}

/// A covered entry deleted or replaced before the reclaimer reaches it keeps its dependents
/// covered (the cascade was resolved when the mark was made); the replacement itself is fresh.
#[test]
fn a_dependency_gone_before_the_reclaim_keeps_its_dependents_covered() {
    let s = Server::start();
    let mut c = s.conn();
    chain(&mut c, "a", 3, &["t"]); // a1 <- a2 <- a3
    entry(&mut c, "k", &["t"], &[]);
    entry(&mut c, "m", &[], &["k"]);
    entry(&mut c, "s", &["t"], &[]);
    entry(&mut c, "q", &[], &["s"]);
    entry(&mut c, "keep", &[], &["elsewhere"]);
    let r = multi(
        &mut c,
        &[
            a("CACHE.INVALIDATE STRATEGY LAZY TAG t"),
            a("DEL a1"),
            a("CACHE.SET k new-k"),
            a("SET s plain"),
            a("CACHE.MGET a2 a3 m q keep"),
            a("CACHE.GET k"),
            // a2 written again after the invalidation is fresh; a3 was computed from the old a2.
            a("CACHE.SET a2 new-a2 DEPENDS 1 a1"),
            a("CACHE.MGET a2 a3"),
            a("CACHE.KEYS ALL"),
            a("CACHE.STATS JSON"),
        ],
    );
    // a1, k and s selected; a2, a3, m and q through the cascade.
    assert_eq!(int(&r[0]), 7);
    assert_eq!(int(&r[1]), 1);
    assert_eq!(r[2], Value::Okay);
    assert_eq!(r[3], Value::Okay);
    assert_eq!(
        values(&r[4]),
        vec![None, None, None, None, Some("v-keep".into())]
    );
    assert_eq!(text(&r[5]), "new-k");
    assert_eq!(r[6], Value::Okay);
    assert_eq!(values(&r[7]), vec![Some("new-a2".into()), None]);
    assert_eq!(strings(&r[8]), sv(&["a2", "k", "keep"]));
    let st = parse_stats(&r[9]);
    assert_eq!(num(&st, &["lazy", "marks"]), 1);
    // The cascade was resolved with the mark: a2, a3, m and q, whatever left since.
    assert_eq!(num(&st, &["lazy", "cascaded"]), 4);

    drained(&mut c);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["a2", "k", "keep"]));
    assert_eq!(dbsize(&mut c), 4, "the three entries and the plain key s");
    assert_eq!(text(&ok(&mut c, &["GET", "s"])), "plain");
    assert_eq!(get(&mut c, "a2").as_deref(), Some("new-a2"));
    assert_eq!(get(&mut c, "k").as_deref(), Some("new-k"));
    // Reclaimed: a3, m, q (the others left by themselves).
    assert_eq!(lazy_stat(&mut c, "reclaimed"), 3);
    assert_eq!(lazy_stat(&mut c, "cascaded"), 0);
    // A new entry depending on a1 is fresh.
    entry(&mut c, "late", &[], &["a1"]);
    assert_eq!(get(&mut c, "late").as_deref(), Some("v-late"));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 4. Many entries
// ---------------------------------------------------------------------------------------------

#[test]
fn a_tag_over_90_000_of_100_000_entries_misses_at_once_and_drains_to_the_rest() {
    let s = Server::start();
    let mut c = s.conn();
    // The listings below are over the default cache.max-reply-keys.
    config_set(&mut c, "cache.max-reply-keys", "0");
    fill(&mut c, "keep:", 0..10_000, &["keep"]);
    fill(&mut c, "big:", 0..90_000, &["big", "all"]);
    assert_eq!(dbsize(&mut c), 100_000);
    let r = multi(
        &mut c,
        &[
            a("CACHE.INVALIDATE STRATEGY LAZY TAG big"),
            a("CACHE.GET big:0"),
            a("CACHE.GET big:89999"),
            a("CACHE.MGET big:1 keep:1 big:2 keep:9999"),
            a("CACHE.INSPECT big:5"),
            a("CACHE.KEYS TAG big"),
            a("CACHE.KEYS TAG all"),
            a("DBSIZE"),
            a("CACHE.STATS JSON"),
        ],
    );
    assert_eq!(int(&r[0]), 90_000);
    assert_eq!(r[1], Value::Nil);
    assert_eq!(r[2], Value::Nil);
    assert_eq!(
        values(&r[3]),
        vec![
            None,
            Some("v-keep:1".into()),
            None,
            Some("v-keep:9999".into())
        ]
    );
    assert_eq!(r[4], Value::Nil);
    assert!(strings(&r[5]).is_empty());
    assert!(strings(&r[6]).is_empty());
    assert_eq!(int(&r[7]), 100_000, "the command deletes nothing itself");
    let st = parse_stats(&r[8]);
    assert_eq!(num(&st, &["lazy", "marks"]), 1);
    assert_eq!(num(&st, &["lazy", "reclaimed"]), 0);
    assert_eq!(
        num(&st, &["lazy", "steps"]),
        0,
        "no step ran inside the command"
    );

    let mut want: Vec<String> = (0..10_000).map(|i| format!("keep:{i}")).collect();
    want.sort();
    assert_eq!(keys(&mut c, &["TAG", "keep"]), want);
    drained(&mut c);
    assert_eq!(dbsize(&mut c), 10_000);
    assert_eq!(keys(&mut c, &["ALL"]), want);
    assert_eq!(get(&mut c, "keep:123").as_deref(), Some("v-keep:123"));
    assert_eq!(exists(&mut c, "big:0") + exists(&mut c, "big:89999"), 0);
    let st = stats(&mut c);
    assert_eq!(num(&st, &["lazy", "reclaimed"]), 90_000);
    assert_eq!(num(&st, &["lazy", "walks"]), 1);
    assert!(num(&st, &["lazy", "steps"]) >= 1);
    assert_eq!(num(&st, &["lazy", "marks"]), 0);
    assert_eq!(num(&st, &["lazy", "cascaded"]), 0);
    assert_eq!(num(&st, &["entries"]), 10_000);
    assert_eq!(num(&st, &["total_keys_invalidated"]), 90_000);
    assert_eq!(
        keys(&mut c, &["TAG", "big"]),
        Vec::<String>::new(),
        "the tag is gone from the index"
    );
    verify(&mut c);
}

/// The reclaimer deletes like DEL: one `del` keyspace event per covered entry, none from the
/// command itself.
#[test]
fn the_reclaimer_emits_a_del_event_per_entry() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "notify-keyspace-events", "Eg");
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &[], &["a"]);
    entry(&mut c, "keep", &[], &[]);
    let mut sub = s.conn();
    let mut ps = sub.as_pubsub();
    ps.subscribe("__keyevent@0__:del").expect("SUBSCRIBE");
    ps.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(lazy(&mut c, "TAG t"), 2);
    drained(&mut c);
    assert_eq!(ok(&mut c, &["SET", "marker", "x"]), Value::Okay);
    assert_eq!(int(&ok(&mut c, &["DEL", "marker"])), 1);
    let mut got: Vec<String> = Vec::new();
    loop {
        let msg = ps.get_message().expect("a del event within 5 s");
        let key: String = msg.get_payload().expect("payload");
        if key == "marker" {
            break;
        }
        got.push(key);
    }
    got.sort();
    assert_eq!(got, sv(&["a", "b"]));
    drop(ps);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 5. Replication
// ---------------------------------------------------------------------------------------------

/// In database 1: a (t) <- c, b (t), keep.
fn small_set(c: &mut Connection) {
    entry(c, "a", &["t"], &[]);
    entry(c, "b", &["t"], &[]);
    entry(c, "c", &[], &["a"]);
    entry(c, "keep", &["k"], &[]);
}

/// What a server reads in database 1 of `small_set` while TAG t is covered and not reclaimed.
fn assert_covered_not_reclaimed(c: &mut Connection, who: &str) {
    select(c, 1);
    assert_eq!(
        values(&ok(c, &a("CACHE.MGET a b c keep"))),
        vec![None, None, None, Some("v-keep".into())],
        "{who}: reads"
    );
    assert_eq!(get(c, "a"), None, "{who}");
    assert_eq!(ok(c, &["CACHE.INSPECT", "b"]), Value::Nil, "{who}");
    assert_eq!(keys(c, &["ALL"]), sv(&["keep"]), "{who}: CACHE.KEYS ALL");
    assert_eq!(keys(c, &["TAG", "t"]), Vec::<String>::new(), "{who}");
    assert_eq!(dbsize(c), 4, "{who}: nothing reclaimed in database 1 yet");
}

#[test]
fn a_replica_reads_the_same_misses_and_ends_with_the_same_keys() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    // The replica's own setting never matters: it reclaims nothing itself.
    config_set(&mut rc, "cache.lazy-step-us", "100000");
    stall(&mut mc, FILLER);
    select(&mut mc, 1);
    small_set(&mut mc);
    sync(&mut mc, &mut rc);

    let mut cmds = stall_mark(1);
    cmds.push(a("CACHE.INVALIDATE STRATEGY LAZY TAG t"));
    let out = multi(&mut mc, &cmds);
    assert_eq!((int(&out[1]), int(&out[3])), (1, 3));
    assert_eq!(int(&ok(&mut mc, &["WAIT", "1", "5000"])), 1);
    assert_covered_not_reclaimed(&mut rc, "replica");
    assert_eq!(num(&stats(&mut rc), &["lazy", "marks"]), 2, "replica marks");
    // Checked after the replica: the master had deleted nothing in database 1 yet, so the
    // replica's misses came from the mark, not from deletes.
    assert_covered_not_reclaimed(&mut mc, "master");
    // A replica refuses LAZY invalidations like any write.
    select(&mut rc, 1);
    let dr = digest(&mut rc);
    assert_eq!(
        err(&mut rc, &a("CACHE.INVALIDATE STRATEGY LAZY TAG k")),
        "READONLY You can't write against a read only replica."
    );
    assert_eq!(digest(&mut rc), dr);

    unstall(&mut mc);
    drained(&mut mc);
    sync(&mut mc, &mut rc);
    for (c, who) in [(&mut mc, "master"), (&mut rc, "replica")] {
        select(c, 1);
        assert_eq!(keys(c, &["ALL"]), sv(&["keep"]), "{who}");
        assert_eq!(dbsize(c), 1, "{who}");
        select(c, 0);
        assert_eq!(dbsize(c), FILLER as i64 - 1, "{who}");
        let st = stats(c);
        assert_eq!(num(&st, &["lazy", "marks"]), 0, "{who}: marks");
        assert_eq!(num(&st, &["lazy", "cascaded"]), 0, "{who}: tombstones");
    }
    assert_eq!(lazy_stat(&mut mc, "reclaimed"), 4);
    assert_eq!(
        lazy_stat(&mut rc, "reclaimed"),
        0,
        "the replica reclaims nothing"
    );
    assert_eq!(digest(&mut mc), digest(&mut rc));

    // Clients cannot send the replication forms.
    let d = digest(&mut mc);
    let sizes = |c: &mut Connection| -> Vec<i64> {
        let out = [0, 1]
            .into_iter()
            .map(|db| {
                select(c, db);
                dbsize(c)
            })
            .collect();
        select(c, 0);
        out
    };
    let before = sizes(&mut mc);
    for (parts, want) in [
        (
            a("CACHE.PENDING MARK 0 blob"),
            "ERR CACHE.PENDING MARK is internal: only the master and the AOF send it",
        ),
        (
            a("CACHE.PENDING MARK"),
            "ERR CACHE.PENDING MARK is internal: only the master and the AOF send it",
        ),
        (
            a("CACHE.PENDING RECLAIMED 1 99"),
            "ERR CACHE.PENDING RECLAIMED is internal: only the master and the AOF send it",
        ),
        (
            a("CACHE.PENDING reclaimed"),
            "ERR CACHE.PENDING RECLAIMED is internal: only the master and the AOF send it",
        ),
    ] {
        assert_eq!(err(&mut mc, &parts), want, "{parts:?}");
        assert_eq!(sizes(&mut mc), before, "after {parts:?}");
        assert!(marks(&mut mc).is_empty(), "after {parts:?}");
    }
    assert_eq!(digest(&mut mc), d);
    assert_eq!(
        err(&mut rc, &a("CACHE.PENDING MARK 0 blob")),
        "READONLY You can't write against a read only replica."
    );
    sync(&mut mc, &mut rc);
    assert_eq!(digest(&mut rc), d);
    for c in [&mut mc, &mut rc] {
        for db in [0, 1] {
            select(c, db);
            verify(c);
        }
    }
}

/// A replica promoted while marks wait reclaims them itself.
#[test]
fn a_promoted_replica_reclaims_the_marks_it_got() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    stall(&mut mc, FILLER);
    select(&mut mc, 1);
    small_set(&mut mc);
    sync(&mut mc, &mut rc);
    let mut cmds = stall_mark(1);
    cmds.push(a("CACHE.INVALIDATE STRATEGY LAZY TAG t"));
    multi(&mut mc, &cmds);
    assert_eq!(int(&ok(&mut mc, &["WAIT", "1", "5000"])), 1);
    assert_covered_not_reclaimed(&mut rc, "replica");
    assert_covered_not_reclaimed(&mut mc, "master");

    assert_eq!(ok(&mut rc, &a("REPLICAOF NO ONE")), Value::Okay);
    select(&mut rc, 1);
    // Its own marks: the same two (database 0's and database 1's).
    let mut got = shape(&marks(&mut rc));
    got.sort();
    assert!(
        got.len() <= 2
            && got.iter().all(|s| [
                sh(0, "key", &stall_key(), 0, None, 1),
                sh(1, "tag", "t", 16, None, 2)
            ]
            .contains(s)),
        "{got:?}"
    );
    drained(&mut rc);
    assert_eq!(keys(&mut rc, &["ALL"]), sv(&["keep"]));
    assert_eq!(dbsize(&mut rc), 1);
    select(&mut rc, 0);
    assert_eq!(dbsize(&mut rc), FILLER as i64 - 1);
    assert_eq!(lazy_stat(&mut rc, "reclaimed"), 4);
    verify(&mut rc);
    select(&mut rc, 1);
    verify(&mut rc);
    unstall(&mut mc);
    drained(&mut mc);
    select(&mut mc, 1);
    assert_eq!(keys(&mut mc, &["ALL"]), sv(&["keep"]));
    verify(&mut mc);
}

/// A replica that makes its full sync while marks wait gets them with the data (RDB aux data)
/// and reads the same misses; then it follows the master's reclaim.
#[test]
fn a_replica_attached_while_marks_wait_gets_them_with_the_data() {
    let m = master();
    let mut mc = m.conn();
    stall(&mut mc, FILLER);
    select(&mut mc, 1);
    small_set(&mut mc);
    let mut cmds = stall_mark(1);
    cmds.push(a("CACHE.INVALIDATE STRATEGY LAZY TAG t"));
    multi(&mut mc, &cmds);

    // While the replica starts and syncs, more marks in database 0 keep the reclaimer there:
    // each one makes another walk of database 0 (a walk takes the marks there were when it
    // started), and it only moves on to database 1 once database 0 has no mark left.
    let mut m0 = m.conn();
    let r = replica_of(&m);
    let mut rc = r.conn();
    eventually("replica link up", || {
        assert_eq!(lazy(&mut m0, "KEY nothing"), 0);
        info(&mut rc, "replication").contains("master_link_status:up")
    });
    assert_eq!(int(&ok(&mut mc, &["WAIT", "1", "5000"])), 1);
    assert_covered_not_reclaimed(&mut rc, "replica");
    assert_covered_not_reclaimed(&mut mc, "master");
    unstall(&mut mc);
    drained(&mut mc);
    sync(&mut mc, &mut rc);
    select(&mut rc, 1);
    assert_eq!(keys(&mut rc, &["ALL"]), sv(&["keep"]));
    assert_eq!(dbsize(&mut rc), 1);
    assert_eq!(num(&stats(&mut rc), &["lazy", "marks"]), 0);
    verify(&mut rc);
    select(&mut mc, 1);
    verify(&mut mc);
}

/// CLIENT PAUSE WRITE (and FAILOVER, which uses it) promises a fixed dataset: the reclaimer must
/// not delete while writes are paused (the server asserts that nothing is propagated then).
#[test]
fn the_reclaimer_waits_while_writes_are_paused() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    fill(&mut mc, "t:", 0..20_000, &["t"]);
    entry(&mut mc, "keep", &[], &[]);
    sync(&mut mc, &mut rc);
    config_set(&mut mc, "cache.lazy-step-us", "50");
    assert_eq!(lazy(&mut mc, "TAG t"), 20_000);
    assert_eq!(ok(&mut mc, &a("CLIENT PAUSE 5000 WRITE")), Value::Okay);
    let n = dbsize(&mut mc);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(10));
        match cmd(&mut mc, &["DBSIZE"]) {
            Ok(v) => assert_eq!(int(&v), n, "the dataset changed while writes were paused"),
            Err(e) => {
                let log = m.log();
                let why: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("ASSERTION") || l.contains("==>"))
                    .collect();
                panic!("the master went down while writes were paused ({e}): {why:#?}");
            }
        }
    }
    assert_eq!(ok(&mut mc, &a("CLIENT UNPAUSE")), Value::Okay);
    unstall(&mut mc);
    drained(&mut mc);
    sync(&mut mc, &mut rc);
    assert_eq!(keys(&mut mc, &["ALL"]), sv(&["keep"]));
    assert_eq!(keys(&mut rc, &["ALL"]), sv(&["keep"]));
    verify(&mut mc);
    verify(&mut rc);
}

// ---------------------------------------------------------------------------------------------
// 6. Persistence
// ---------------------------------------------------------------------------------------------

/// `CACHE.DEBUG REBUILD` gives every entry a new id; a walk under way starts again from the
/// first, so no covered entry is passed over (one that was would read again once the walk ends
/// and drops its mark).
#[test]
fn a_rebuild_during_a_walk_leaves_no_covered_entry_behind() {
    let s = Server::start();
    let mut c = s.conn();
    fill(&mut c, "w:", 0..20_000, &["t"]);
    fill(&mut c, "keep:", 0..50, &["k"]);
    config_set(&mut c, "cache.lazy-step-us", "50");
    assert_eq!(lazy(&mut c, "TAG t"), 20_000);
    eventually("the reclaimer deleted some entries", || {
        lazy_stat(&mut c, "reclaimed") > 0
    });
    let r = multi(
        &mut c,
        &[
            a("CACHE.PENDING LAZY"),
            a("CACHE.DEBUG REBUILD"),
            a("DBSIZE"),
        ],
    );
    assert_eq!(mark_rows(&r[0]).len(), 1, "the walk is still under way");
    assert_eq!(int(&r[1]), int(&r[2]), "every key is an entry");
    assert!(int(&r[2]) > 50, "entries are left to reclaim");
    unstall(&mut c);
    drained(&mut c);
    let keep: Vec<String> = (0..50).map(|i| format!("keep:{i}")).collect();
    let mut sorted = keep.clone();
    sorted.sort();
    assert_eq!(keys(&mut c, &["ALL"]), sorted);
    assert_eq!(dbsize(&mut c), 50);
    assert_eq!(lazy_stat(&mut c, "reclaimed"), 20_000);
    verify(&mut c);
}

#[test]
fn marks_and_their_cascades_survive_debug_reload() {
    let s = Server::start();
    let mut c = s.conn();
    chain(&mut c, "a", 3, &["t"]); // a1 <- a2 <- a3
    entry(&mut c, "d", &["t"], &[]);
    entry(&mut c, "keep", &["k"], &[]);
    select(&mut c, 2);
    entry(&mut c, "z:1", &[], &[]);
    entry(&mut c, "z:2", &[], &[]);
    entry(&mut c, "other", &[], &[]);
    select(&mut c, 0);
    let r = multi(
        &mut c,
        &[
            a("CACHE.INVALIDATE STRATEGY LAZY TAG t"),
            // a1 leaves before the reclaim: a2 and a3 stay covered (the cascade is resolved).
            a("DEL a1"),
            a("SELECT 2"),
            vec![
                "CACHE.INVALIDATE".into(),
                "CONTEXT".into(),
                "ctx \u{1}bin".into(),
                "STRATEGY".into(),
                "LAZY".into(),
                "NAMESPACE".into(),
                "z".into(),
            ],
            a("SELECT 0"),
            a("CACHE.PENDING LAZY"),
            a("DEBUG RELOAD"),
            a("CACHE.PENDING LAZY"),
            a("CACHE.MGET a2 a3 d keep"),
            a("EXISTS a2 a3 d"),
            a("CACHE.KEYS ALL"),
            a("CACHE.STATS JSON"),
            a("SELECT 2"),
            a("CACHE.MGET z:1 z:2 other"),
            a("DBSIZE"),
            a("SELECT 0"),
        ],
    );
    // a1 and d selected, a2 and a3 through the cascade.
    assert_eq!((int(&r[0]), int(&r[1]), int(&r[3])), (4, 1, 2));
    let before = mark_rows(&r[5]);
    assert_eq!(
        shape(&before),
        vec![
            sh(0, "tag", "t", 16, None, 2),
            sh(2, "namespace", "z", 0, Some("ctx \u{1}bin"), 2),
        ]
    );
    assert_eq!(r[6], Value::Okay);
    assert_eq!(
        mark_rows(&r[7]),
        before,
        "the same marks after DEBUG RELOAD"
    );
    assert_eq!(values(&r[8]), vec![None, None, None, Some("v-keep".into())]);
    assert_eq!(int(&r[9]), 3, "reloaded, not reclaimed yet");
    assert_eq!(strings(&r[10]), sv(&["keep"]));
    let st = parse_stats(&r[11]);
    assert_eq!(num(&st, &["lazy", "marks"]), 2);
    assert_eq!(num(&st, &["lazy", "cascaded"]), 2, "a2 and a3");
    assert_eq!(values(&r[13]), vec![None, None, Some("v-other".into())]);
    assert_eq!(int(&r[14]), 3);

    drained(&mut c);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    assert_eq!(dbsize(&mut c), 1);
    select(&mut c, 2);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["other"]));
    verify(&mut c);
    select(&mut c, 0);
    // Written again after the reload: fresh. Reloading now brings back no mark.
    entry(&mut c, "a2", &[], &["a1"]);
    assert_eq!(ok(&mut c, &["DEBUG", "RELOAD"]), Value::Okay);
    assert!(marks(&mut c).is_empty());
    assert_eq!(get(&mut c, "a2").as_deref(), Some("v-a2"));
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["a2", "keep"]));
    verify(&mut c);
}

/// Runs `small_set` in database 1 with a mark on TAG t while the reclaimer is stalled; the
/// caller restarts the server; then checks that the marks came back, still unreclaimed, and are
/// reclaimed after.
fn restart_keeps_marks(mut s: Server, save: bool) {
    let mut c = s.conn();
    stall(&mut c, FILLER);
    select(&mut c, 1);
    small_set(&mut c);
    let mut cmds = stall_mark(1);
    cmds.push(a("CACHE.INVALIDATE STRATEGY LAZY TAG t"));
    multi(&mut c, &cmds);
    if save {
        assert_eq!(ok(&mut c, &["SAVE"]), Value::Okay);
    }
    assert!(
        stalled(&mut c),
        "database 1 must not be reclaimed before the shutdown"
    );
    let before = marks(&mut c);
    assert_eq!(before.len(), 2);
    drop(c);
    s.restart("NOSAVE");

    let mut c = s.conn();
    assert_covered_not_reclaimed(&mut c, "after the restart");
    assert_eq!(
        shape(&marks(&mut c)),
        shape(&before),
        "the same marks after the restart"
    );
    // Written again after the restart: fresh (born after every loaded mark).
    select(&mut c, 1);
    entry(&mut c, "b", &["t"], &[]);
    assert_eq!(get(&mut c, "b").as_deref(), Some("v-b"));
    unstall(&mut c);
    drained(&mut c);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["b", "keep"]));
    assert_eq!(dbsize(&mut c), 2);
    verify(&mut c);
    select(&mut c, 0);
    assert_eq!(dbsize(&mut c), FILLER as i64 - 1);
    verify(&mut c);
}

#[test]
fn marks_survive_a_restart_from_the_rdb() {
    // The step setting comes back as a module argument (CONFIG SET is not saved).
    restart_keeps_marks(Server::with(&["lazy-step-us", "50"], &[]), true);
}

#[test]
fn marks_survive_a_restart_from_the_aof() {
    restart_keeps_marks(
        Server::with(&["lazy-step-us", "50"], &["--appendonly", "yes"]),
        false,
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Rules
// ---------------------------------------------------------------------------------------------

#[test]
fn a_lazy_rule_fired_by_cache_write_invalidates_lazily() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        ok(
            &mut c,
            &a("CACHE.RULE SET r ON user INVALIDATE 1 list:{id} STRATEGY LAZY")
        ),
        Value::Okay
    );
    entry(&mut c, "l1", &["list:1"], &[]);
    entry(&mut c, "l1b", &["list:1"], &[]);
    entry(&mut c, "l1dep", &[], &["l1"]);
    entry(&mut c, "l2", &["list:2"], &[]);
    entry(&mut c, "u1", &["user:1"], &[]);
    let r = multi(
        &mut c,
        &[
            a("CACHE.WRITE user 1"),
            a("CACHE.MGET l1 l1b l1dep l2 u1"),
            a("EXISTS l1 l1b l1dep u1"),
            a("CACHE.PENDING LAZY"),
        ],
    );
    // The type's own tag user:1 at once (IMMEDIATE, 1), the rule's list:1 lazily (2 selected,
    // l1dep through the cascade).
    assert_eq!(int(&r[0]), 4);
    assert_eq!(
        values(&r[1]),
        vec![None, None, None, Some("v-l2".into()), None]
    );
    assert_eq!(int(&r[2]), 3, "u1 deleted at once, the list entries wait");
    assert_eq!(
        shape(&mark_rows(&r[3])),
        vec![sh(0, "tag", "list:1", 16, Some("rule:r"), 2)]
    );
    assert_eq!(
        events(&mut c),
        vec![
            ev("tag", "list:1", 3, "rule:r", "lazy"),
            ev("tag", "user:1", 1, "", "immediate"),
        ]
    );
    let rules = list(&ok(&mut c, &a("CACHE.RULE LIST")));
    assert_eq!(rules.len(), 1);
    assert_eq!(text(&field(&rules[0], "strategy")), "lazy");
    assert_eq!(int(&field(&rules[0], "executions")), 1);
    assert_eq!(int(&field(&rules[0], "entries_invalidated")), 3);

    drained(&mut c);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["l2"]));
    assert_eq!(dbsize(&mut c), 1);
    assert_eq!(by_strategy(&mut c, "lazy"), 1);
    assert_eq!(by_strategy(&mut c, "immediate"), 1);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 8. Access control
// ---------------------------------------------------------------------------------------------

/// app:1, app:4 and other:1 carry tag t; app:2 depends on other:1, app:3 on app:1.
fn acl_setup(c: &mut Connection) {
    entry(c, "app:1", &["t"], &[]);
    entry(c, "app:4", &["t"], &[]);
    entry(c, "other:1", &["t"], &[]);
    entry(c, "app:2", &[], &["other:1"]);
    entry(c, "app:3", &[], &["app:1"]);
    ok(
        c,
        &["ACL", "SETUSER", "alice", "on", ">pw", "~app:*", "+@all"],
    );
}

#[test]
fn a_lazy_mark_covers_only_what_its_user_may_delete() {
    let s = Server::start();
    let mut admin = s.conn();
    acl_setup(&mut admin);
    let mut alice = as_user(&s, "alice");
    assert_eq!(
        keys(&mut alice, &["TAG", "t"]),
        sv(&["app:1", "app:3", "app:4"])
    );
    let r = multi(
        &mut alice,
        &[
            a("CACHE.INVALIDATE STRATEGY LAZY TAG t"),
            a("CACHE.MGET app:1 app:2 app:3 app:4"),
            a("CACHE.KEYS TAG t"),
        ],
    );
    assert_eq!(
        values(&r[1]),
        vec![None, Some("v-app:2".into()), None, None],
        "alice's reads"
    );
    assert!(strings(&r[2]).is_empty());
    // What others read: other:1 is not covered (alice may not delete it), nor app:2.
    assert_eq!(get(&mut admin, "other:1").as_deref(), Some("v-other:1"));
    assert_eq!(get(&mut admin, "app:2").as_deref(), Some("v-app:2"));
    assert_eq!(keys(&mut admin, &["ALL"]), sv(&["app:2", "other:1"]));
    drained(&mut admin);
    assert_eq!(keys(&mut admin, &["ALL"]), sv(&["app:2", "other:1"]));
    assert_eq!(dbsize(&mut admin), 2);
    assert_eq!(lazy_stat(&mut admin, "reclaimed"), 3);
    verify(&mut admin);
    // The reply counts what the selector picks in the index, without visiting the entries
    // (README: LAZY): other:1 is counted although alice's mark does not cover it; plus the
    // cascade, resolved with alice's rights (app:3 through app:1).
    assert_eq!(
        int(&r[0]),
        4,
        "reply of alice's CACHE.INVALIDATE STRATEGY LAZY TAG t"
    );
    assert_eq!(events(&mut admin)[0], ev("tag", "t", 4, "", "lazy"));
}

#[test]
fn the_reclaimer_deletes_what_the_marks_user_may_write() {
    // The reclaimer checks the mark's user's permission to delete each key: a user who may
    // write every key (however its patterns say so) has everything reclaimed; read access to
    // every key is not enough.
    let all = sv(&["app:1", "app:2", "app:3", "app:4", "other:1"]);
    for (acl, left) in [
        (vec!["%W~*"], vec![]),
        (vec!["allkeys"], vec![]),
        (vec!["%R~*", "~app:*"], sv(&["app:2", "other:1"])),
        (vec!["%R~*"], all.clone()),
    ] {
        let s = Server::start();
        let mut admin = s.conn();
        acl_setup(&mut admin);
        let mut args = vec!["ACL", "SETUSER", "bob", "on", ">pw", "+@all"];
        args.extend(&acl);
        ok(&mut admin, &args);
        let mut bob = as_user(&s, "bob");
        ok(
            &mut bob,
            &["CACHE.INVALIDATE", "STRATEGY", "LAZY", "TAG", "t"],
        );
        drained(&mut admin);
        assert_eq!(keys(&mut admin, &["ALL"]), left, "bob with {acl:?}");
        assert_eq!(dbsize(&mut admin), left.len() as i64, "bob with {acl:?}");
        verify(&mut admin);
    }
}

/// The module's own look at a key (is this name an entry? a dry run) is no client's read: it
/// counts no keyspace hit or miss. A name in a namespace without entries is never opened; elsewhere the
/// server must be able to open quietly (Redis 7.2+, Valkey).
#[test]
fn looking_names_up_counts_no_keyspace_hits_or_misses() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "user:1", &[], &[]);
    entry(&mut c, "bare", &[], &[]);
    entry(&mut c, "page:1", &["p"], &["res:1", "res:2", "user:1"]);
    let stats = |c: &mut Connection| {
        let f = |c: &mut Connection, n: &str| info_field(c, "stats", n).parse::<i64>().unwrap();
        (f(c, "keyspace_hits"), f(c, "keyspace_misses"))
    };
    let (flavour, major, minor) = server_version(&mut c);
    let quiet = flavour == "valkey" || (major, minor) >= (7, 2);

    // KEY names in namespaces without entries, then (where the server opens quietly) names in
    // namespaces with entries: nothing counted.
    let before = stats(&mut c);
    let n = int(&ok(&mut c, &["CACHE.INVALIDATE", "KEY", "nope:1", "res:9"]));
    assert_eq!(n, 0);
    assert_eq!(stats(&mut c), before, "KEY names without entries");
    if quiet {
        assert_eq!(
            int(&ok(&mut c, &["CACHE.INVALIDATE", "KEY", "user:9", "nope"])),
            0
        );
        assert_eq!(
            stats(&mut c),
            before,
            "KEY names in namespaces with entries"
        );
        // A dry run looks at what it would remove without reading it.
        assert_eq!(keys(&mut c, &["TAG", "p"]), vec!["page:1".to_string()]);
        assert_eq!(stats(&mut c), before, "a dry run");
    }

    // Reads while a LAZY mark exists look through page:1's dependencies: res:1 and res:2 (no
    // entry in their namespace) are not opened; user:1 is, quietly where the server can.
    let before = stats(&mut c);
    let r = multi(
        &mut c,
        &[
            a("CACHE.INVALIDATE STRATEGY LAZY TAG other"),
            a("CACHE.GET page:1"),
            a("CACHE.GET page:1"),
            a("CACHE.GET page:1"),
        ],
    );
    for v in &r[1..] {
        assert_eq!(bytes(v), Some(b"v-page:1".to_vec()));
    }
    let (hits, misses) = stats(&mut c);
    assert_eq!(misses, before.1, "no misses for dependencies");
    // The three reads themselves, and on Redis 7.0 one open of user:1 per read.
    // (Reads look at no dependency: the mark's cascade was resolved when it was made.)
    let _ = quiet;
    let expected_hits = 3;
    assert_eq!(hits - before.0, expected_hits, "hits");
    drained(&mut c);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 9. Metrics
// ---------------------------------------------------------------------------------------------

#[test]
fn lazy_invalidations_are_counted_once_under_their_strategy() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &["t"], &[]);
    entry(&mut c, "c", &[], &["a"]);
    entry(&mut c, "keep", &[], &[]);
    let r = multi(
        &mut c,
        &[
            a("CACHE.INVALIDATE CONTEXT deploy STRATEGY LAZY TAG t"),
            a("CACHE.GET a"),
            a("CACHE.MGET b c keep"),
            a("CACHE.GET keep"),
        ],
    );
    assert_eq!(int(&r[0]), 3);
    let check = |c: &mut Connection, when: &str| {
        let st = stats(c);
        assert_eq!(num(&st, &["total_invalidations"]), 1, "{when}");
        assert_eq!(num(&st, &["total_keys_invalidated"]), 3, "{when}");
        assert_eq!(num(&st, &["patterns", "by_strategy", "lazy"]), 1, "{when}");
        assert_eq!(
            num(&st, &["patterns", "invalidation_types", "tag"]),
            1,
            "{when}"
        );
        assert_eq!(
            num(&st, &["patterns", "most_common_patterns", "tag t"]),
            1,
            "{when}"
        );
        assert_eq!(num(&st, &["patterns", "by_context", "deploy"]), 1, "{when}");
        assert_eq!(num(&st, &["hits"]), 2, "{when}: keep twice");
        assert_eq!(num(&st, &["misses"]), 3, "{when}: a, b, c");
        assert_eq!(
            num(&st, &["removals", "deleted"]),
            0,
            "{when}: reclaims are not deletions"
        );
        assert_eq!(
            events(c),
            vec![ev("tag", "t", 3, "deploy", "lazy")],
            "{when}"
        );
        assert_eq!(info_cache(c, "cache_invalidations"), 1, "{when}");
        assert_eq!(info_cache(c, "cache_keys_invalidated"), 3, "{when}");
    };
    check(&mut c, "after the command");
    drained(&mut c);
    check(&mut c, "after the reclaim");
    let st = stats(&mut c);
    assert_eq!(num(&st, &["lazy", "reclaimed"]), 3);
    assert_eq!(num(&st, &["lazy", "walks"]), 1);
    assert!(num(&st, &["lazy", "steps"]) >= 1);
    assert_eq!(num(&st, &["lazy", "marks"]), 0);
    assert_eq!(num(&st, &["entries"]), 1);

    // Each strategy under its own name.
    assert_eq!(int(&ok(&mut c, &a("CACHE.INVALIDATE TAG none"))), 0);
    assert_eq!(lazy(&mut c, "ALL"), 1);
    assert_eq!(by_strategy(&mut c, "lazy"), 2);
    assert_eq!(by_strategy(&mut c, "immediate"), 1);
    assert_eq!(
        events(&mut c)[..2],
        [
            ev("all", "", 1, "", "lazy"),
            ev("tag", "none", 0, "", "immediate")
        ]
    );
    assert_eq!(num(&stats(&mut c), &["total_keys_invalidated"]), 4);
    drained(&mut c);
    assert!(keys(&mut c, &["ALL"]).is_empty());
    assert_eq!(lazy_stat(&mut c, "walks"), 2);
    verify(&mut c);
}

/// The reply (and the metrics) count what the selector picks in the index, without visiting the
/// entries (README: LAZY): an entry an earlier LAZY invalidation covers is counted again until it
/// is reclaimed, while IMMEDIATE, which visits, does not count it.
#[test]
fn a_second_lazy_invalidation_counts_from_the_index() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &["t"], &[]);
    entry(&mut c, "keep", &[], &[]);
    let r = multi(
        &mut c,
        &[
            a("CACHE.INVALIDATE STRATEGY LAZY TAG t"),
            a("CACHE.KEYS DEPTH 0 TAG t"),
            a("CACHE.INVALIDATE TAG t"),
            a("CACHE.INVALIDATE STRATEGY LAZY TAG t"),
        ],
    );
    assert_eq!(int(&r[0]), 2);
    assert!(strings(&r[1]).is_empty());
    assert_eq!(int(&r[2]), 0, "IMMEDIATE after LAZY");
    drained(&mut c);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    verify(&mut c);
    assert_eq!(int(&r[3]), 2, "a second LAZY TAG t right after the first");
    assert_eq!(num(&stats(&mut c), &["total_keys_invalidated"]), 4);
}

/// An entry past its deadline that the server has not removed yet is still in the index: a LAZY
/// invalidation, which visits no entry, counts it (README: LAZY); nothing of it is left after.
#[test]
fn a_lazy_invalidation_counts_expired_entries_the_index_still_has() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(ok(&mut c, &a("DEBUG SET-ACTIVE-EXPIRE 0")), Value::Okay);
    entry(&mut c, "live", &["t"], &[]);
    let deadline = server_ms(&mut c) + 50;
    ok(
        &mut c,
        &a(&format!("CACHE.SET gone v PXAT {deadline} TAGS 1 t")),
    );
    eventually("past the deadline", || server_ms(&mut c) > deadline + 5);
    // Nothing touched "gone" since it expired: it is still in the keyspace, expired.
    let n = lazy(&mut c, "TAG t");
    assert_eq!(exists(&mut c, "gone"), 0, "gone had expired");
    drained(&mut c);
    assert!(keys(&mut c, &["ALL"]).is_empty());
    assert_eq!(ok(&mut c, &a("DEBUG SET-ACTIVE-EXPIRE 1")), Value::Okay);
    verify(&mut c);
    assert_eq!(n, 2, "LAZY TAG t over one live and one expired entry");
}

// ---------------------------------------------------------------------------------------------
// 10. Keys moving while covered
// ---------------------------------------------------------------------------------------------

#[test]
fn a_covered_entry_stays_covered_under_a_new_name_or_database() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "dep", &[], &["a"]);
    entry(&mut c, "b", &["t"], &[]);
    entry(&mut c, "c", &["t"], &[]);
    entry(&mut c, "p:1", &[], &[]);
    entry(&mut c, "keep", &[], &[]);
    select(&mut c, 5);
    entry(&mut c, "s", &["t"], &[]);
    entry(&mut c, "s2", &[], &[]);
    select(&mut c, 7);
    entry(&mut c, "f", &["t"], &[]);
    select(&mut c, 0);
    let r = multi(
        &mut c,
        &[
            a("CACHE.INVALIDATE STRATEGY LAZY TAG t"),
            a("CACHE.INVALIDATE STRATEGY LAZY PATTERN p:*"),
            a("RENAME a a2"),
            a("RENAME p:1 q:1"),
            a("MOVE b 3"),
            a("COPY c c2"),
            a("CACHE.MGET a2 q:1 c2 dep keep"),
            a("EXISTS a2 q:1 c2 dep"),
            a("CACHE.KEYS ALL"),
            a("SELECT 3"),
            a("CACHE.GET b"),
            a("EXISTS b"),
            a("SELECT 5"),
            a("CACHE.INVALIDATE STRATEGY LAZY TAG t"),
            a("SWAPDB 5 6"),
            a("SELECT 6"),
            a("CACHE.MGET s s2"),
            a("SELECT 7"),
            a("CACHE.INVALIDATE STRATEGY LAZY TAG t"),
            a("FLUSHDB"),
            a("CACHE.PENDING LAZY"),
            a("CACHE.SET f new-f TAGS 1 t"),
            a("CACHE.GET f"),
            a("SELECT 0"),
        ],
    );
    // a, b and c selected in database 0, dep through the cascade.
    assert_eq!((int(&r[0]), int(&r[1])), (4, 1));
    assert_eq!(
        values(&r[6]),
        vec![None, None, None, None, Some("v-keep".into())],
        "a2, q:1, c2, dep"
    );
    assert_eq!(int(&r[7]), 4);
    assert_eq!(strings(&r[8]), sv(&["keep"]));
    assert_eq!(r[10], Value::Nil, "b moved to database 3");
    assert_eq!(int(&r[11]), 1);
    assert_eq!(int(&r[13]), 1);
    assert_eq!(
        values(&r[16]),
        vec![None, Some("v-s2".into())],
        "after SWAPDB"
    );
    assert_eq!(int(&r[18]), 1);
    assert!(
        mark_rows(&r[20]).iter().all(|m| m.db != 7),
        "FLUSHDB drops the database's marks"
    );
    assert_eq!(text(&r[22]), "new-f");

    drained(&mut c);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    assert_eq!(dbsize(&mut c), 1);
    for (db, rest) in [(3, vec![]), (5, vec![]), (6, sv(&["s2"])), (7, sv(&["f"]))] {
        select(&mut c, db);
        assert_eq!(keys(&mut c, &["ALL"]), rest, "db {db}");
        assert_eq!(dbsize(&mut c), rest.len() as i64, "db {db}");
        verify(&mut c);
    }
    select(&mut c, 0);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 11. Config
// ---------------------------------------------------------------------------------------------

#[test]
fn lazy_step_config_has_its_default_and_range() {
    let s = Server::start();
    let mut c = s.conn();
    // The reclaimer's step, and the step of a stepped IMMEDIATE invalidation.
    for (name, default) in [
        ("cache.lazy-step-us", "1000"),
        ("cache.stepped-step-us", "2000"),
    ] {
        assert_eq!(config_get(&mut c, name), default);
        let range = format!("ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be between 50 and 100000 inclusive");
        let unparsable = format!("ERR CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer");
        for (value, want) in [
            ("49", &range),
            ("0", &range),
            ("-1", &range),
            ("100001", &range),
            ("abc", &unparsable),
        ] {
            assert_eq!(
                &err(&mut c, &["CONFIG", "SET", name, value]),
                want,
                "CONFIG SET {name} {value}"
            );
            assert_eq!(config_get(&mut c, name), default);
        }
        for value in ["50", "100000"] {
            config_set(&mut c, name, value);
            assert_eq!(config_get(&mut c, name), value);
        }
    }
    let s2 = Server::with(&["lazy-step-us", "777"], &[]);
    let mut c2 = s2.conn();
    assert_eq!(config_get(&mut c2, "cache.lazy-step-us"), "777");
    entry(&mut c2, "a", &["t"], &[]);
    assert_eq!(lazy(&mut c2, "TAG t"), 1);
    drained(&mut c2);
    assert!(keys(&mut c2, &["ALL"]).is_empty());
    verify(&mut c2);
    verify(&mut c);
}

/// An AOF rewrite without an RDB preamble writes the entries as commands: the marks must come
/// with them, or the covered entries come back to life after a restart.
#[test]
fn marks_survive_an_aof_rewrite_without_rdb_preamble() {
    let mut s = Server::with(
        &["lazy-step-us", "50"],
        &["--appendonly", "yes", "--aof-use-rdb-preamble", "no"],
    );
    let mut c = s.conn();
    stall(&mut c, FILLER);
    select(&mut c, 1);
    small_set(&mut c);
    let mut cmds = stall_mark(1);
    cmds.push(a("CACHE.INVALIDATE STRATEGY LAZY TAG t"));
    multi(&mut c, &cmds);
    // The rules and relations are module-wide state too: the rewrite carries them as well.
    ok(
        &mut c,
        &a("CACHE.RULE SET r1 ON user INVALIDATE 1 list:{id} PRIORITY 3"),
    );
    ok(&mut c, &a("CACHE.RELATE user post"));
    let rules = ok(&mut c, &a("CACHE.RULE LIST"));
    let relations = ok(&mut c, &a("CACHE.RELATE LIST"));
    assert_eq!(list(&relations).len(), 1);
    ok(&mut c, &["BGREWRITEAOF"]);
    eventually("AOF rewrite done", || {
        info_field(&mut c, "persistence", "aof_rewrite_in_progress") == "0"
            && info_field(&mut c, "persistence", "aof_rewrite_scheduled") == "0"
    });
    assert!(
        stalled(&mut c),
        "database 1 must not be reclaimed before the shutdown"
    );
    drop(c);
    s.restart("NOSAVE");
    let mut c = s.conn();
    assert_eq!(ok(&mut c, &a("CACHE.RULE LIST")), rules);
    assert_eq!(ok(&mut c, &a("CACHE.RELATE LIST")), relations);
    select(&mut c, 1);
    assert_eq!(
        values(&ok(&mut c, &a("CACHE.MGET a b c keep"))),
        vec![None, None, None, Some("v-keep".into())],
        "after the restart from the rewritten AOF"
    );
    unstall(&mut c);
    drained(&mut c);
    assert_eq!(keys(&mut c, &["ALL"]), sv(&["keep"]));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Stepped IMMEDIATE invalidations (the reclaimer deletes, the client waits)
// ---------------------------------------------------------------------------------------------

/// A server where every IMMEDIATE invalidation of 10 entries or more runs in short steps.
fn stepped_server() -> Server {
    Server::with(&["stepped-threshold", "10", "stepped-step-us", "50"], &[])
}

/// `n` entries `e0`.. tagged `t`, written in one pipeline.
fn tagged_pipelined(c: &mut Connection, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("CACHE.SET")
            .arg(format!("e{i}"))
            .arg("v")
            .arg("TAGS")
            .arg(1)
            .arg("t")
            .ignore();
    }
    pipe.query::<()>(c).expect("pipeline");
}

/// `CACHE.INVALIDATE TAG t` from another connection (it blocks until done): its reply.
fn invalidate_in_background(s: &Server) -> std::thread::JoinHandle<i64> {
    let port = s.port;
    std::thread::spawn(move || {
        let mut w = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|cl| cl.get_connection())
            .expect("connect");
        int(&ok(&mut w, &["CACHE.INVALIDATE", "TAG", "t"]))
    })
}

/// `n` entries tagged `t` (`e0`..), a chain of dependents on `e0`, and a plain key.
fn stepped_data(c: &mut Connection, n: usize) {
    for i in 0..n {
        ok(c, &["CACHE.SET", &format!("e{i}"), "v", "TAGS", "1", "t"]);
    }
    ok(c, &["CACHE.SET", "d1", "v", "DEPENDS", "1", "e0"]);
    ok(c, &["CACHE.SET", "d2", "v", "DEPENDS", "1", "d1"]);
    ok(c, &["SET", "plain", "1"]);
}

#[test]
fn a_large_immediate_invalidation_runs_in_steps_and_replies_the_count() {
    let s = stepped_server();
    let mut c = s.conn();
    stepped_data(&mut c, 3000);
    let steps = lazy_stat(&mut c, "steps");
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "TAG", "t"])), 3002);
    // Done when it replied: every entry and its dependents deleted, nothing else.
    assert_eq!(dbsize(&mut c), 1);
    assert_eq!(get(&mut c, "e1"), None);
    assert!(lazy_stat(&mut c, "steps") > steps + 1, "not stepped");
    assert_eq!(lazy_stat(&mut c, "marks"), 0);
    // Recorded once, as IMMEDIATE, with what it deleted.
    let e = events(&mut c);
    assert_eq!(e[0], ev("tag", "t", 3002, "", "immediate"));
    assert_eq!(by_strategy(&mut c, "lazy"), 0);
    // Below the threshold: one command, no steps.
    stepped_data(&mut c, 5);
    let steps = lazy_stat(&mut c, "steps");
    assert_eq!(
        int(&ok(
            &mut c,
            &["CACHE.INVALIDATE", "DEPTH", "0", "KEY", "e1"]
        )),
        1
    );
    assert_eq!(lazy_stat(&mut c, "steps"), steps);
    verify(&mut c);
}

/// A selection over the threshold is stepped however small a part of the database it is: at
/// once it would hold the server for all of it (the 50 ms bound), so a tag of 500 entries among
/// 20 000 runs in steps too.
#[test]
fn a_selection_over_the_threshold_is_stepped_in_a_much_larger_database() {
    let s = Server::with(&["stepped-threshold", "500", "stepped-step-us", "50"], &[]);
    let mut c = s.conn();
    let mut p = redis::pipe();
    for i in 0..20_000 {
        p.cmd("CACHE.SET")
            .arg(format!("e{i}"))
            .arg("v")
            .arg("TAGS")
            .arg(1)
            .arg(if i % 40 == 0 { "few" } else { "rest" })
            .ignore();
    }
    p.query::<()>(&mut c).expect("pipeline");
    let steps = lazy_stat(&mut c, "steps");
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "TAG", "few"])), 500);
    assert!(lazy_stat(&mut c, "steps") > steps + 1, "not stepped");
    assert_eq!(dbsize(&mut c), 19_500);
    assert_eq!(get(&mut c, "e0"), None);
    assert_eq!(get(&mut c, "e1").as_deref(), Some("v"));
    assert_eq!(lazy_stat(&mut c, "marks"), 0);
    verify(&mut c);
}

/// The cascade decides too: one key with 3000 dependents (a chain of them behind) is deleted
/// in steps, and the reply counts every entry the cascade reached.
#[test]
fn a_large_cascade_from_one_key_runs_in_steps() {
    let s = stepped_server();
    let mut c = s.conn();
    ok(&mut c, &["CACHE.SET", "root", "v"]);
    let mut p = redis::pipe();
    for i in 0..3000 {
        p.cmd("CACHE.SET")
            .arg(format!("d{i}"))
            .arg("v")
            .arg("DEPENDS")
            .arg(1)
            .arg("root");
    }
    p.query::<()>(&mut c).unwrap();
    ok(&mut c, &["CACHE.SET", "deeper", "v", "DEPENDS", "1", "d7"]);
    ok(&mut c, &["CACHE.SET", "other", "v"]);
    ok(&mut c, &["SET", "plain", "1"]);
    let steps = lazy_stat(&mut c, "steps");
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "KEY", "root"])), 3002);
    assert!(lazy_stat(&mut c, "steps") > steps + 1, "not stepped");
    assert_eq!(dbsize(&mut c), 2);
    assert_eq!(get(&mut c, "other").as_deref(), Some("v"));
    assert_eq!(lazy_stat(&mut c, "marks"), 0);
    let e = events(&mut c);
    assert_eq!(e[0], ev("key", "root", 3002, "", "immediate"));
    // DEPTH 0 selects one key: no steps.
    ok(&mut c, &["CACHE.SET", "root", "v"]);
    let steps = lazy_stat(&mut c, "steps");
    assert_eq!(
        int(&ok(
            &mut c,
            &["CACHE.INVALIDATE", "DEPTH", "0", "KEY", "root"]
        )),
        1
    );
    assert_eq!(lazy_stat(&mut c, "steps"), steps);
    verify(&mut c);
}

#[test]
fn inside_multi_a_large_immediate_invalidation_runs_at_once() {
    let s = stepped_server();
    let mut c = s.conn();
    stepped_data(&mut c, 50);
    let steps = lazy_stat(&mut c, "steps");
    let replies = multi(&mut c, &[a("CACHE.INVALIDATE TAG t"), a("DBSIZE")]);
    assert_eq!(int(&replies[0]), 52);
    assert_eq!(int(&replies[1]), 1);
    assert_eq!(lazy_stat(&mut c, "steps"), steps);
    verify(&mut c);
}

#[test]
fn readers_see_misses_while_a_stepped_invalidation_runs() {
    let s = stepped_server();
    let mut c = s.conn();
    let n = 20_000;
    tagged_pipelined(&mut c, n);
    let waiter = invalidate_in_background(&s);
    // While it runs, the last entry (reclaimed last) is already a miss, yet still a key.
    let mut seen_midway = false;
    let last = format!("e{}", n - 1);
    for _ in 0..2000 {
        // In this order: the mark was there before the read, the key still after it.
        let marked = lazy_stat(&mut c, "marks") == 1;
        let value = get(&mut c, &last);
        if marked && exists(&mut c, &last) == 1 {
            assert_eq!(value, None, "a covered entry read as a hit");
            seen_midway = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(waiter.join().expect("waiter"), n as i64);
    assert!(seen_midway, "never caught the invalidation in progress");
    assert_eq!(dbsize(&mut c), 0);
    verify(&mut c);
}

#[test]
fn flushall_ends_a_stepped_invalidation() {
    let s = stepped_server();
    let mut c = s.conn();
    tagged_pipelined(&mut c, 20_000);
    let waiter = invalidate_in_background(&s);
    eventually("the invalidation to start", || {
        lazy_stat(&mut c, "marks") == 1
    });
    ok(&mut c, &["FLUSHALL"]);
    // The client gets what was deleted before the flush, and is not left blocked.
    let n = waiter.join().expect("waiter");
    assert!((0..20_000).contains(&n), "{n}");
    assert_eq!(lazy_stat(&mut c, "marks"), 0);
    assert_eq!(dbsize(&mut c), 0);
    verify(&mut c);
}

#[test]
fn a_replica_follows_a_stepped_invalidation() {
    let m = Server::with(
        &["stepped-threshold", "10", "stepped-step-us", "50"],
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-ping-replica-period",
            "3600",
        ],
    );
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    stepped_data(&mut mc, 500);
    assert_eq!(int(&ok(&mut mc, &["CACHE.INVALIDATE", "TAG", "t"])), 502);
    sync(&mut mc, &mut rc);
    assert_eq!(dbsize(&mut rc), 1);
    assert_eq!(lazy_stat(&mut rc, "marks"), 0);
    assert_eq!(digest(&mut mc), digest(&mut rc));
    verify(&mut mc);
    verify(&mut rc);
}

#[test]
fn reset_zeroes_the_reclaimer_counters_but_keeps_marks() {
    let s = Server::start();
    let mut c = s.conn();
    for i in 0..20 {
        ok(
            &mut c,
            &["CACHE.SET", &format!("e{i}"), "v", "TAGS", "1", "t"],
        );
    }
    assert_eq!(lazy(&mut c, "TAG t"), 20);
    eventually("the reclaimer", || dbsize(&mut c) == 0);
    assert!(lazy_stat(&mut c, "steps") > 0);
    assert_eq!(lazy_stat(&mut c, "reclaimed"), 20);
    assert_eq!(ok(&mut c, &["CACHE.RESET"]), Value::Okay);
    for name in ["reclaimed", "walks", "steps", "max_step_us"] {
        assert_eq!(lazy_stat(&mut c, name), 0, "{name}");
    }
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 12. The selection is fixed when the mark is made (issue 21: defects 1, 2, 7, 8, 9)
// ---------------------------------------------------------------------------------------------

/// Stops the timer-driven reclaimer: the test runs each step itself.
fn pause_reclaimer(c: &mut Connection) {
    assert_eq!(ok(c, &a("CACHE.DEBUG RECLAIM PAUSE")), Value::Okay);
}

/// Runs reclaimer steps of one entry each until no mark is left, calling `between` after each.
fn step_through(c: &mut Connection, mut between: impl FnMut(&mut Connection, usize)) {
    for i in 0..10_000 {
        if marks(c).is_empty() {
            return;
        }
        ok(c, &a("CACHE.DEBUG RECLAIM STEP 1"));
        between(c, i);
    }
    panic!("the marks were not reclaimed in 10 000 steps");
}

#[test]
fn a_cascade_through_an_entry_written_before_its_dependency_stays_covered_to_the_end() {
    let s = Server::start();
    let mut c = s.conn();
    pause_reclaimer(&mut c);
    // a is written before b, the entry it depends on; c depends on a.
    entry(&mut c, "a", &[], &["b"]);
    entry(&mut c, "b", &["t"], &[]);
    entry(&mut c, "c", &[], &["a"]);
    entry(&mut c, "keep", &[], &[]);
    let n = lazy(&mut c, "TAG t");
    let none = vec![None, None, None, Some("v-keep".into())];
    assert_eq!(values(&ok(&mut c, &a("CACHE.MGET a b c keep"))), none);
    step_through(&mut c, |c, i| {
        assert_eq!(
            values(&ok(c, &a("CACHE.MGET a b c keep"))),
            none,
            "after step {i}"
        );
        assert_eq!(keys(c, &["ALL"]), sv(&["keep"]), "after step {i}");
    });
    assert_eq!(values(&ok(&mut c, &a("CACHE.MGET a b c keep"))), none);
    assert_eq!(dbsize(&mut c), 1);
    assert_eq!(n, 3, "b, and a and c through the cascade");
    verify(&mut c);
}

#[test]
fn an_entry_renamed_or_copied_into_a_pending_marks_range_is_not_covered() {
    let s = Server::start();
    let mut c = s.conn();
    pause_reclaimer(&mut c);
    for k in ["b:1", "c:1", "c:2", "c:3", "k:src", "k:src2"] {
        entry(&mut c, k, &[], &[]);
    }
    let n = (lazy(&mut c, "PATTERN b:*"), lazy(&mut c, "KEY k:1 k:2"));
    let r = multi(
        &mut c,
        &[
            a("RENAME c:1 b:2"),
            a("COPY c:2 b:3"),
            a("RENAME k:src k:1"),
            a("COPY k:src2 k:2"),
            // Covered under its old name: stays covered under the new one.
            a("RENAME b:1 elsewhere"),
            a("CACHE.MGET b:2 b:3 k:1 k:2 elsewhere c:2 c:3"),
        ],
    );
    let want = vec![
        Some("v-c:1".into()),
        Some("v-c:2".into()),
        Some("v-k:src".into()),
        Some("v-k:src2".into()),
        None,
        Some("v-c:2".into()),
        Some("v-c:3".into()),
    ];
    assert_eq!(values(&r[5]), want);
    step_through(&mut c, |_, _| {});
    assert_eq!(
        values(&ok(
            &mut c,
            &a("CACHE.MGET b:2 b:3 k:1 k:2 elsewhere c:2 c:3")
        )),
        want
    );
    assert_eq!(exists(&mut c, "elsewhere"), 0, "the walk reclaimed it");
    assert_eq!(
        keys(&mut c, &["ALL"]),
        sv(&["b:2", "b:3", "c:2", "c:3", "k:1", "k:2", "k:src2"])
    );
    assert_eq!(n, (1, 0));
    verify(&mut c);
}

#[test]
fn a_later_mark_over_a_covered_entry_leaves_entries_written_since_alone() {
    let s = Server::start();
    let mut c = s.conn();
    pause_reclaimer(&mut c);
    entry(&mut c, "x", &[], &[]);
    let first = lazy(&mut c, "KEY x");
    // y is written after x was invalidated: as after IMMEDIATE, x is no entry for it.
    entry(&mut c, "y", &[], &["x"]);
    let second = lazy(&mut c, "KEY x");
    assert_eq!(get(&mut c, "y").as_deref(), Some("v-y"));
    step_through(&mut c, |c, i| {
        assert_eq!(get(c, "y").as_deref(), Some("v-y"), "after step {i}");
    });
    assert_eq!(get(&mut c, "y").as_deref(), Some("v-y"));
    assert_eq!(get(&mut c, "x"), None);
    assert_eq!((first, second), (1, 1), "the selector still counts x");
    verify(&mut c);
}

#[test]
fn a_covered_dependency_that_expires_keeps_its_dependents_covered() {
    let s = Server::start();
    let mut c = s.conn();
    pause_reclaimer(&mut c);
    ok(&mut c, &a("DEBUG SET-ACTIVE-EXPIRE 0"));
    // Defect 8: x expires while covered; y depends on x.
    ok(&mut c, &a("CACHE.SET x vx TAGS 1 t PX 200"));
    entry(&mut c, "y", &[], &["x"]);
    // Defect 9: the chain p <- q <- r, q expires while the mark waits.
    entry(&mut c, "p", &["u"], &[]);
    entry(&mut c, "q", &[], &["p"]);
    entry(&mut c, "r", &[], &["q"]);
    let n = (lazy(&mut c, "TAG t"), lazy(&mut c, "TAG u"));
    ok(&mut c, &a("PEXPIRE q 200"));
    std::thread::sleep(Duration::from_millis(300));
    // The reads find x and q expired on the way.
    assert_eq!(get(&mut c, "y"), None);
    assert_eq!(get(&mut c, "x"), None);
    assert_eq!(get(&mut c, "q"), None);
    assert_eq!(values(&ok(&mut c, &a("CACHE.MGET y r p"))), vec![None; 3]);
    step_through(&mut c, |c, i| {
        assert_eq!(
            values(&ok(c, &a("CACHE.MGET y r p"))),
            vec![None; 3],
            "after step {i}"
        );
    });
    assert_eq!(dbsize(&mut c), 0);
    assert_eq!(n, (2, 3));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Issue 21, defect 6: WATCH sees a mark
// ---------------------------------------------------------------------------------------------

/// `WATCH key`, then whatever `meanwhile` does on another connection, then `MULTI` /
/// `CACHE.SET key derived` / `EXEC` on the watching one: whether EXEC ran (false: aborted).
fn watched_exec(c: &mut Connection, key: &str, meanwhile: impl FnOnce()) -> bool {
    assert_eq!(ok(c, &["WATCH", key]), Value::Okay);
    // What the watcher read before deciding what to write.
    let _ = ok(c, &["CACHE.GET", key]);
    meanwhile();
    assert_eq!(ok(c, &["MULTI"]), Value::Okay);
    ok(c, &["CACHE.SET", key, "derived"]);
    match c.req_command(&redis::cmd("EXEC")).expect("EXEC") {
        Value::Nil => false,
        Value::Array(_) => true,
        other => panic!("EXEC: {other:?}"),
    }
}

#[test]
fn a_lazy_mark_covering_a_watched_key_aborts_exec() {
    let s = Server::start();
    let mut c = s.conn();
    let mut other = s.conn();
    ok(&mut other, &a("CACHE.DEBUG RECLAIM PAUSE"));
    for cmd in [
        "CACHE.SET w v TAGS 1 wt",
        "CACHE.SET x v TAGS 1 xt",
        "CACHE.SET d v DEPENDS 1 x",
        "CACHE.SET u v TAGS 1 ut",
        "CACHE.SET n:1 v",
    ] {
        ok(&mut other, &a(cmd));
    }
    // The reproduction: the selector picks the watched key.
    assert!(!watched_exec(&mut c, "w", || {
        assert_eq!(lazy(&mut other, "TAG wt"), 1);
    }));
    // The cascade covers the watched key.
    assert!(!watched_exec(&mut c, "d", || {
        assert_eq!(lazy(&mut other, "TAG xt"), 2, "x and d through the cascade");
    }));
    // A pattern.
    assert!(!watched_exec(&mut c, "n:1", || {
        assert_eq!(lazy(&mut other, "PATTERN n:*"), 1);
    }));
    // A change of the same name in another database leaves the watch (in database 0) to be
    // told by the mark.
    ok(&mut other, &a("CACHE.SET y v TAGS 1 yt"));
    assert!(!watched_exec(&mut c, "y", || {
        select(&mut other, 1);
        ok(&mut other, &a("CACHE.SET y v1"));
        ok(&mut other, &a("CACHE.SET y v2"));
        select(&mut other, 0);
        assert_eq!(lazy(&mut other, "TAG yt"), 1);
    }));
    // A mark that does not cover the watched key leaves the transaction alone.
    assert!(watched_exec(&mut c, "u", || {
        assert_eq!(lazy(&mut other, "TAG none"), 0);
    }));
    assert_eq!(get(&mut c, "u").as_deref(), Some("derived"));
    // What an aborted transaction would have written is not there: the watched keys read as
    // IMMEDIATE left them.
    assert_eq!(
        values(&ok(&mut c, &a("CACHE.MGET w d n:1 y"))),
        vec![None, None, None, None]
    );
    ok(&mut other, &a("CACHE.DEBUG RECLAIM RESUME"));
    drained(&mut other);
    verify(&mut c);
}

/// A stepped IMMEDIATE invalidation marks first (its client blocked until the steps deleted
/// everything): a transaction watching a key it covers fails even before the key is deleted.
#[test]
fn a_stepped_immediate_invalidation_aborts_exec_before_its_steps() {
    let s = Server::start();
    let mut c = s.conn();
    let mut other = s.conn();
    for k in ["s1", "s2", "s3"] {
        ok(&mut other, &["CACHE.SET", k, "v", "TAGS", "1", "st"]);
    }
    ok(&mut other, &a("CACHE.SET keep v"));
    config_set(&mut other, "cache.stepped-threshold", "2");
    ok(&mut other, &a("CACHE.DEBUG RECLAIM PAUSE"));
    let mut blocked = s.conn();
    let ran = watched_exec(&mut c, "s2", || {
        let cmd = redis::cmd("CACHE.INVALIDATE")
            .arg("TAG")
            .arg("st")
            .get_packed_command();
        blocked.send_packed_command(&cmd).expect("send");
        // The invalidation has made its mark once the entries read as missing.
        eventually("the stepped invalidation's mark", || {
            get(&mut other, "s1").is_none()
        });
        assert_eq!(exists(&mut other, "s2"), 1, "not deleted yet");
    });
    assert!(!ran, "EXEC ran over a key the stepped invalidation covers");
    ok(&mut other, &a("CACHE.DEBUG RECLAIM RESUME"));
    assert_eq!(int(&blocked.recv_response().expect("reply")), 3);
    assert_eq!(keys(&mut other, &["ALL"]), sv(&["keep"]));
    verify(&mut other);
}

/// A mark made by a user who may delete every key keeps covering its entries when the user is
/// deleted afterwards (review finding: the mark asked the user's rights at every read).
#[test]
fn a_mark_outlives_the_user_who_made_it() {
    let s = Server::start();
    let mut c = s.conn();
    pause_reclaimer(&mut c);
    ok(
        &mut c,
        &["ACL", "SETUSER", "bob", "on", "nopass", "~*", "+@all"],
    );
    entry(&mut c, "x", &["t"], &[]);
    let mut bob = as_user(&s, "bob");
    assert_eq!(lazy(&mut bob, "TAG t"), 1);
    assert_eq!(get(&mut c, "x"), None);
    ok(&mut c, &["ACL", "DELUSER", "bob"]);
    assert_eq!(get(&mut c, "x"), None, "after ACL DELUSER");
    step_through(&mut c, |c, i| {
        assert_eq!(get(c, "x"), None, "after step {i}")
    });
    assert_eq!(exists(&mut c, "x"), 0);
    verify(&mut c);
}

/// A replica whose generation is ahead of its new master's (it had marks of its own) takes the
/// master's after the full sync: what the master writes and then marks is covered there too
/// (review finding).
#[test]
fn a_replica_ahead_of_its_new_master_reads_the_masters_marks() {
    let m = master();
    let r = master();
    let mut rc = r.conn();
    for i in 0..20 {
        entry(&mut rc, &format!("old{i}"), &["o"], &[]);
        lazy(&mut rc, &format!("KEY old{i}"));
    }
    let port = m.port.to_string();
    ok(&mut rc, &["REPLICAOF", "127.0.0.1", &port]);
    wait_link(&mut rc);
    let mut mc = m.conn();
    pause_reclaimer(&mut mc);
    entry(&mut mc, "k2", &["t2"], &[]);
    assert_eq!(lazy(&mut mc, "TAG t2"), 1);
    sync(&mut mc, &mut rc);
    assert_eq!(get(&mut mc, "k2"), None);
    assert_eq!(
        get(&mut rc, "k2"),
        None,
        "the replica serves what its master invalidated"
    );
    ok(&mut rc, &["REPLICAOF", "NO", "ONE"]);
    assert_eq!(get(&mut rc, "k2"), None, "promoted");
}
