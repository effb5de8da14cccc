//! Write-driven rules against real servers (issue 6): `CACHE.RULE SET|DEL|LIST|HELP`,
//! `CACHE.RELATE ...` and `CACHE.WRITE type id [OP op] [CONTEXT text]`.
//!
//! * Every form of the three commands with its exact reply; `CACHE.RULE LIST` fields and order
//!   under RESP2 (flat arrays) and RESP3 (maps).
//! * `CACHE.WRITE` end to end: the implicit tag `type:id`, the matching rules (OPS, MATCH),
//!   related types (DEPTH, cycles, BIDIRECTIONAL), the order of the steps (seen in CACHE.EVENTS
//!   and in the per-rule counters), event contexts, a BATCHED rule.
//! * Every bad input with its exact error, and nothing changed (DEBUG DIGEST, the keys, both
//!   LISTs, the events).
//! * Persistence (DEBUG RELOAD, SAVE + restart, AOF with and without an RDB preamble) and
//!   replication (as sent, full sync, READONLY on a replica).
//!
//! Module choices tested as such (see the comments where they are asserted):
//! * the per-rule counters are node-local: a master's CACHE.WRITE replicates its deletes, not
//!   itself, so a replica's counters do not move; a full sync (RDB aux data) carries the
//!   master's counters as they were at that moment; an AOF replay of `CACHE.RULE SET` starts
//!   them at zero;
//! * `CACHE.RELATE` is one write-flagged command, so a replica refuses even `CACHE.RELATE LIST`
//!   and `HELP`;
//! * rules live in RDB aux data; an AOF rewrite without an RDB preamble carries them in
//!   `CACHE.PENDING STATE` with the first cache entry (with no entry they are lost);
//! * `CACHE.WRITE` without OP is an `update`; without CONTEXT its implicit step's event has an
//!   empty context; every step records an event, even when it invalidates nothing.
//!
//! Two tests guard fixed module bugs: a BATCHED rule's `entries_invalidated` counts what its
//! queued step removes when applied, and a replica drops rules of its own on a full sync from a
//! master that has none (servers that call `aux_save2` write no aux field then).

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Splits a command line on spaces (no argument may contain one).
fn a(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Runs a command line that must succeed.
fn run(c: &mut Connection, line: &str) -> Value {
    ok(c, &a(line))
}

/// Runs a command line that must reply an integer.
fn num(c: &mut Connection, line: &str) -> i64 {
    int(&run(c, line))
}

/// `CACHE.WRITE <args>` -> its reply.
fn write(c: &mut Connection, args: &str) -> i64 {
    num(c, &format!("CACHE.WRITE {args}"))
}

fn all(c: &mut Connection) -> Vec<String> {
    keys(c, &["ALL"])
}

/// The fields of a `CACHE.RULE LIST` row, in reply order.
const RULE_FIELDS: [&str; 10] = [
    "name",
    "on",
    "ops",
    "match",
    "invalidate",
    "strategy",
    "priority",
    "executions",
    "entries_invalidated",
    "last_run_ms",
];

/// The fields of a `CACHE.RELATE LIST` row, in reply order.
const RELATION_FIELDS: [&str; 4] = ["source", "target", "depth", "bidirectional"];

/// A rule's definition as LIST shows it.
#[derive(Debug, Clone, PartialEq)]
struct RuleDef {
    name: String,
    on: String,
    ops: Vec<String>,
    pattern: Option<String>,
    invalidate: Vec<String>,
    strategy: String,
    priority: i64,
}

/// A LIST row: the definition and this node's counters.
#[derive(Debug, Clone, PartialEq)]
struct RuleRow {
    def: RuleDef,
    executions: i64,
    entries: i64,
    last_run_ms: i64,
}

fn def(
    name: &str,
    on: &str,
    ops: &[&str],
    pattern: Option<&str>,
    invalidate: &[&str],
    strategy: &str,
    priority: i64,
) -> RuleDef {
    RuleDef {
        name: name.into(),
        on: on.into(),
        ops: sv(ops),
        pattern: pattern.map(String::from),
        invalidate: sv(invalidate),
        strategy: strategy.into(),
        priority,
    }
}

/// A LIST reply as rows; checks the field names and their order, and the reply shape: RESP3
/// maps (`resp3`) or RESP2 flat arrays.
fn rule_rows(v: &Value, resp3: bool) -> Vec<RuleRow> {
    list(v)
        .iter()
        .map(|row| {
            assert_eq!(
                matches!(row, Value::Map(_)),
                resp3,
                "row shape under {}: {row:?}",
                if resp3 { "RESP3" } else { "RESP2" }
            );
            let m = map(row);
            let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names, RULE_FIELDS, "{row:?}");
            RuleRow {
                def: RuleDef {
                    name: text(&m[0].1),
                    on: text(&m[1].1),
                    ops: strings(&m[2].1),
                    pattern: bytes(&m[3].1).map(|b| String::from_utf8(b).expect("utf-8")),
                    invalidate: strings(&m[4].1),
                    strategy: text(&m[5].1),
                    priority: int(&m[6].1),
                },
                executions: int(&m[7].1),
                entries: int(&m[8].1),
                last_run_ms: int(&m[9].1),
            }
        })
        .collect()
}

/// `CACHE.RULE LIST` on a RESP2 connection.
fn rules(c: &mut Connection) -> Vec<RuleRow> {
    rule_rows(&run(c, "CACHE.RULE LIST"), false)
}

fn defs(c: &mut Connection) -> Vec<RuleDef> {
    rules(c).into_iter().map(|r| r.def).collect()
}

/// (name, executions, entries_invalidated, last_run_ms) of every rule, in LIST order.
fn counters(c: &mut Connection) -> Vec<(String, i64, i64, i64)> {
    rules(c)
        .into_iter()
        .map(|r| (r.def.name, r.executions, r.entries, r.last_run_ms))
        .collect()
}

/// One rule's (executions, entries_invalidated).
fn stat(c: &mut Connection, name: &str) -> (i64, i64) {
    rules(c)
        .into_iter()
        .find(|r| r.def.name == name)
        .map(|r| (r.executions, r.entries))
        .unwrap_or_else(|| panic!("no rule {name}"))
}

type Rel = (String, String, i64, i64);

fn rl(source: &str, target: &str, depth: i64, bidirectional: i64) -> Rel {
    (source.into(), target.into(), depth, bidirectional)
}

/// A `CACHE.RELATE LIST` reply, checking field names, order and shape.
fn relation_rows(v: &Value, resp3: bool) -> Vec<Rel> {
    list(v)
        .iter()
        .map(|row| {
            assert_eq!(matches!(row, Value::Map(_)), resp3, "{row:?}");
            let m = map(row);
            let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names, RELATION_FIELDS, "{row:?}");
            (text(&m[0].1), text(&m[1].1), int(&m[2].1), int(&m[3].1))
        })
        .collect()
}

fn relations(c: &mut Connection) -> Vec<Rel> {
    relation_rows(&run(c, "CACHE.RELATE LIST"), false)
}

/// One CACHE.EVENTS row: (pattern, keys_invalidated, context, strategy).
type Ev = (String, i64, String, String);

fn ev(pattern: &str, keys: i64, context: &str, strategy: &str) -> Ev {
    (pattern.into(), keys, context.into(), strategy.into())
}

/// The newest `n` events, newest first; every one must be a tag invalidation.
fn events(c: &mut Connection, n: usize) -> Vec<Ev> {
    list(&ok(c, &["CACHE.EVENTS", "COUNT", &n.to_string()]))
        .iter()
        .map(|e| {
            assert_eq!(text(&field(e, "type")), "tag", "{e:?}");
            (
                text(&field(e, "pattern")),
                int(&field(e, "keys_invalidated")),
                bytes(&field(e, "context"))
                    .map(|b| String::from_utf8(b).expect("utf-8"))
                    .unwrap_or_default(),
                text(&field(e, "strategy")),
            )
        })
        .collect()
}

fn event_count(c: &mut Connection) -> usize {
    list(&ok(c, &["CACHE.EVENTS"])).len()
}

/// Everything a rejected command must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    digest: String,
    keys: Vec<String>,
    rules: Value,
    relations: Value,
    events: Value,
    pending: Value,
}

fn snapshot(c: &mut Connection) -> Snapshot {
    Snapshot {
        digest: digest(c),
        keys: all(c),
        rules: run(c, "CACHE.RULE LIST"),
        relations: run(c, "CACHE.RELATE LIST"),
        events: run(c, "CACHE.EVENTS"),
        pending: run(c, "CACHE.PENDING"),
    }
}

/// `parts` must fail with exactly `expected` and change nothing.
fn rejected(c: &mut Connection, parts: &[&str], expected: &str) {
    let before = snapshot(c);
    assert_eq!(err(c, parts), expected, "{parts:?}");
    assert_eq!(snapshot(c), before, "{parts:?} changed something");
}

/// As `rejected`, for a command line without empty or spaced arguments.
fn rejected_line(c: &mut Connection, line: &str, expected: &str) {
    rejected(c, &a(line), expected);
}

const READONLY: &str = "READONLY You can't write against a read only replica.";

// ---------------------------------------------------------------------------------------------
// CACHE.RULE forms and LIST
// ---------------------------------------------------------------------------------------------

fn check_rule_commands(resp3: bool) {
    let s = Server::start();
    let mut c = if resp3 { s.conn3() } else { s.conn() };
    let list_rules = |c: &mut Connection| rule_rows(&run(c, "CACHE.RULE LIST"), resp3);

    assert_eq!(run(&mut c, "CACHE.RULE LIST"), Value::Array(vec![]));
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET sessions ON user INVALIDATE 2 sessions:{id} listing"
        ),
        Value::Okay
    );
    // Lowercase words, OPS duplicates and case collapse, escapes kept as written.
    assert_eq!(
        ok(
            &mut c,
            &[
                "cache.rule",
                "set",
                "feed",
                "on",
                "post",
                "ops",
                "update,DELETE,update",
                "match",
                "1*",
                "invalidate",
                "1",
                "{{{type}}}:{id}:{op}",
                "strategy",
                "batched",
                "priority",
                "7",
            ]
        ),
        Value::Okay
    );
    // Options in any order, even before ON; OPS listed in canonical order.
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET C PRIORITY 7 INVALIDATE 1 c:{id} OPS delete,create ON user STRATEGY IMMEDIATE"
        ),
        Value::Okay
    );
    assert_eq!(
        run(&mut c, "CACHE.RULE SET a ON user INVALIDATE 1 a PRIORITY 7"),
        Value::Okay
    );
    // Template words that look like options are counted, not parsed.
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET opt ON user INVALIDATE 2 PRIORITY ON"
        ),
        Value::Okay
    );
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET max ON user INVALIDATE 1 m PRIORITY 2147483647"
        ),
        Value::Okay
    );

    // Highest priority first, ties by name in byte order ("C" < "a" < "feed").
    let expected = vec![
        def("max", "user", &["*"], None, &["m"], "immediate", 2147483647),
        def(
            "C",
            "user",
            &["create", "delete"],
            None,
            &["c:{id}"],
            "immediate",
            7,
        ),
        def("a", "user", &["*"], None, &["a"], "immediate", 7),
        def(
            "feed",
            "post",
            &["update", "delete"],
            Some("1*"),
            &["{{{type}}}:{id}:{op}"],
            "batched",
            7,
        ),
        def(
            "opt",
            "user",
            &["*"],
            None,
            &["PRIORITY", "ON"],
            "immediate",
            0,
        ),
        def(
            "sessions",
            "user",
            &["*"],
            None,
            &["sessions:{id}", "listing"],
            "immediate",
            0,
        ),
    ];
    let rows = list_rules(&mut c);
    assert_eq!(
        rows.iter().map(|r| r.def.clone()).collect::<Vec<_>>(),
        expected
    );
    // Nothing ran yet: no executions, no entries, no last run (-1).
    for r in &rows {
        assert_eq!(
            (r.executions, r.entries, r.last_run_ms),
            (0, 0, -1),
            "{r:?}"
        );
    }
    // The raw `match` of a rule without MATCH is nil; `ops` without OPS is ["*"].
    let raw = list(&run(&mut c, "CACHE.RULE LIST"));
    assert_eq!(field(&raw[0], "match"), Value::Nil);
    assert_eq!(strings(&field(&raw[0], "ops")), sv(&["*"]));
    assert_eq!(field(&raw[0], "priority"), Value::Int(2147483647));

    // DEL: 1 when it existed, then 0; names are case-sensitive.
    assert_eq!(num(&mut c, "CACHE.RULE DEL feed"), 1);
    assert_eq!(num(&mut c, "cache.rule del feed"), 0);
    assert_eq!(num(&mut c, "CACHE.RULE DEL c"), 0);
    assert_eq!(num(&mut c, "CACHE.RULE DEL missing"), 0);
    let names: Vec<String> = list_rules(&mut c).into_iter().map(|r| r.def.name).collect();
    assert_eq!(names, sv(&["max", "C", "a", "opt", "sessions"]));
    for n in ["max", "C", "a", "opt", "sessions"] {
        assert_eq!(num(&mut c, &format!("CACHE.RULE DEL {n}")), 1);
    }
    assert_eq!(run(&mut c, "CACHE.RULE LIST"), Value::Array(vec![]));

    // HELP: one bulk string per line.
    let help = strings(&run(&mut c, "CACHE.RULE HELP"));
    assert_eq!(help.len(), 11, "{help:#?}");
    assert_eq!(
        help[0],
        "CACHE.RULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    );
    assert!(help[1].starts_with("SET <name> ON <type> [OPS <op>[,<op>...]]"));
    assert_eq!(help[5], "DEL <name>");
    assert_eq!(help[7], "LIST");
    assert_eq!(help[9], "HELP");
    let help = strings(&run(&mut c, "cache.rule help"));
    assert_eq!(help.len(), 11);
    verify(&mut c);
}

#[test]
fn rule_set_list_del_help_under_resp2() {
    check_rule_commands(false);
}

#[test]
fn rule_set_list_del_help_under_resp3() {
    check_rule_commands(true);
}

#[test]
fn rule_set_replaces_a_rule_whole_and_restarts_its_counters() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET r ON user OPS delete MATCH 1* INVALIDATE 2 x:{id} y PRIORITY 9"
        ),
        Value::Okay
    );
    entry(&mut c, "x1", &["x:1"], &[]);
    entry(&mut c, "y", &["y"], &[]);
    assert_eq!(write(&mut c, "user 1 OP delete"), 2);
    assert_eq!(stat(&mut c, "r"), (1, 2));
    assert!(all(&mut c).is_empty());

    // Same name: replaced whole (type, ops, match, templates, strategy, priority), counters reset.
    assert_eq!(
        run(&mut c, "CACHE.RULE SET r ON post INVALIDATE 1 z:{id}"),
        Value::Okay
    );
    let rows = rules(&mut c);
    assert_eq!(
        rows,
        vec![RuleRow {
            def: def("r", "post", &["*"], None, &["z:{id}"], "immediate", 0),
            executions: 0,
            entries: 0,
            last_run_ms: -1,
        }]
    );
    // The old definition no longer fires; the new one does.
    entry(&mut c, "x1", &["x:1"], &[]);
    entry(&mut c, "z1", &["z:1"], &[]);
    assert_eq!(write(&mut c, "user 1 OP delete"), 0);
    assert_eq!(all(&mut c), sv(&["x1", "z1"]));
    assert_eq!(stat(&mut c, "r"), (0, 0));
    assert_eq!(write(&mut c, "post 1"), 1);
    assert_eq!(all(&mut c), sv(&["x1"]));
    assert_eq!(stat(&mut c, "r"), (1, 1));
    // Setting the identical rule again is still a replace: counters start over.
    assert_eq!(
        run(&mut c, "CACHE.RULE SET r ON post INVALIDATE 1 z:{id}"),
        Value::Okay
    );
    assert_eq!(stat(&mut c, "r"), (0, 0));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// CACHE.RELATE forms and LIST
// ---------------------------------------------------------------------------------------------

fn check_relate_commands(resp3: bool) {
    let s = Server::start();
    let mut c = if resp3 { s.conn3() } else { s.conn() };
    let list_rel = |c: &mut Connection| relation_rows(&run(c, "CACHE.RELATE LIST"), resp3);

    assert_eq!(run(&mut c, "CACHE.RELATE LIST"), Value::Array(vec![]));
    assert_eq!(
        run(&mut c, "CACHE.RELATE user profile feed DEPTH 2"),
        Value::Okay
    );
    // Duplicate targets collapse; options in any order, any case.
    assert_eq!(
        run(&mut c, "cache.relate x y y bidirectional depth 3"),
        Value::Okay
    );
    assert_eq!(run(&mut c, "CACHE.RELATE X y"), Value::Okay);
    assert_eq!(
        run(&mut c, "CACHE.RELATE m n DEPTH 4294967295"),
        Value::Okay
    );
    // By source, then target (byte order).
    assert_eq!(
        list_rel(&mut c),
        vec![
            rl("X", "y", 1, 0),
            rl("m", "n", 4294967295, 0),
            rl("user", "feed", 2, 0),
            rl("user", "profile", 2, 0),
            rl("x", "y", 3, 1),
        ]
    );
    // An existing pair is replaced (depth and direction), the others are kept.
    assert_eq!(
        run(&mut c, "CACHE.RELATE user profile BIDIRECTIONAL"),
        Value::Okay
    );
    assert_eq!(run(&mut c, "CACHE.RELATE x y DEPTH 5"), Value::Okay);
    assert_eq!(
        list_rel(&mut c),
        vec![
            rl("X", "y", 1, 0),
            rl("m", "n", 4294967295, 0),
            rl("user", "feed", 2, 0),
            rl("user", "profile", 1, 1),
            rl("x", "y", 5, 0),
        ]
    );
    // DEL source target: 1 then 0; the reverse of a bidirectional relation is not a relation.
    assert_eq!(num(&mut c, "CACHE.RELATE DEL profile user"), 0);
    assert_eq!(num(&mut c, "CACHE.RELATE DEL user feed"), 1);
    assert_eq!(num(&mut c, "cache.relate del user feed"), 0);
    assert_eq!(num(&mut c, "CACHE.RELATE DEL x Y"), 0);
    assert_eq!(num(&mut c, "CACHE.RELATE DEL m n"), 1);
    assert_eq!(
        list_rel(&mut c),
        vec![
            rl("X", "y", 1, 0),
            rl("user", "profile", 1, 1),
            rl("x", "y", 5, 0)
        ]
    );

    let help = strings(&run(&mut c, "CACHE.RELATE HELP"));
    assert_eq!(help.len(), 9, "{help:#?}");
    assert_eq!(
        help[0],
        "CACHE.RELATE <source> <target> [<target> ...] [DEPTH <n>] [BIDIRECTIONAL]"
    );
    assert_eq!(help[3], "CACHE.RELATE DEL <source> <target>");
    assert_eq!(help[5], "CACHE.RELATE LIST");
    assert_eq!(help[7], "CACHE.RELATE HELP");
    verify(&mut c);
}

#[test]
fn relate_set_list_del_help_under_resp2() {
    check_relate_commands(false);
}

#[test]
fn relate_set_list_del_help_under_resp3() {
    check_relate_commands(true);
}

// ---------------------------------------------------------------------------------------------
// CACHE.WRITE
// ---------------------------------------------------------------------------------------------

#[test]
fn write_invalidates_the_type_id_tag_the_rules_and_the_related_types() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET sessions ON user INVALIDATE 2 sessions:{id} listing"
        ),
        Value::Okay
    );
    // `{type}` renders the rule's own type (profile), even when reached through a relation.
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET avatar ON profile INVALIDATE 1 avatar:{type}:{id}"
        ),
        Value::Okay
    );
    // `{{` and `}}` are literal braces; `{op}` is the operation (default update).
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET esc ON user INVALIDATE 1 {{{type}}}:{id}:{op}"
        ),
        Value::Okay
    );
    assert_eq!(run(&mut c, "CACHE.RELATE user profile"), Value::Okay);

    entry(&mut c, "u7", &["user:7"], &[]);
    entry(&mut c, "u8", &["user:8"], &[]);
    entry(&mut c, "s7", &["sessions:7"], &[]);
    entry(&mut c, "s8", &["sessions:8"], &[]);
    entry(&mut c, "l1", &["listing"], &[]);
    entry(&mut c, "l2", &["listing", "other"], &[]);
    entry(&mut c, "p7", &["profile:7"], &[]);
    entry(&mut c, "p8", &["profile:8"], &[]);
    entry(&mut c, "av7", &["avatar:profile:7"], &[]);
    entry(&mut c, "avu7", &["avatar:user:7"], &[]);
    entry(&mut c, "br", &["{user}:7:update"], &[]);
    entry(&mut c, "brd", &["{user}:7:delete"], &[]);
    // Depends on u7: the invalidation cascades to it.
    entry(&mut c, "dep7", &[], &["u7"]);
    entry(&mut c, "free", &["unrelated"], &[]);
    entry(&mut c, "empty", &["user:"], &[]);
    // The same tag in another database is not touched.
    select(&mut c, 1);
    entry(&mut c, "db1u7", &["user:7"], &[]);
    select(&mut c, 0);

    // u7, dep7 (cascade), p7 (related type), s7, l1, l2 (rule sessions), av7 (rule avatar of
    // the related type), br (rule esc).
    assert_eq!(write(&mut c, "user 7"), 8);
    assert_eq!(
        all(&mut c),
        sv(&["avu7", "brd", "empty", "free", "p8", "s8", "u8"])
    );
    // Nothing left to invalidate for id 7.
    assert_eq!(write(&mut c, "user 7"), 0);
    // A write on the target type does not go back to the source (one-way relation); `{op}`.
    entry(&mut c, "brd8", &["{user}:8:delete"], &[]);
    assert_eq!(write(&mut c, "profile 8 OP delete"), 1);
    assert_eq!(
        all(&mut c),
        sv(&["avu7", "brd", "brd8", "empty", "free", "s8", "u8"])
    );
    assert_eq!(write(&mut c, "user 8 OP DELETE"), 3);
    assert_eq!(all(&mut c), sv(&["avu7", "brd", "empty", "free"]));
    // An empty id is an id: the tag is `user:`.
    assert_eq!(ok(&mut c, &["CACHE.WRITE", "user", ""]), Value::Int(1));
    assert_eq!(all(&mut c), sv(&["avu7", "brd", "free"]));
    // The same write in database 1 acts there.
    select(&mut c, 1);
    assert_eq!(all(&mut c), sv(&["db1u7"]));
    assert_eq!(write(&mut c, "user 7 CONTEXT db1"), 1);
    assert!(all(&mut c).is_empty());
    select(&mut c, 0);
    assert_eq!(all(&mut c), sv(&["avu7", "brd", "free"]));

    // Per-rule counters: every write on user fired sessions and esc, and reached profile.
    assert_eq!(
        counters(&mut c)
            .into_iter()
            .map(|(n, e, i, _)| (n, e, i))
            .collect::<Vec<_>>(),
        vec![
            ("avatar".to_string(), 6, 1),
            ("esc".to_string(), 5, 2),
            ("sessions".to_string(), 5, 4),
        ]
    );
    verify(&mut c);
    select(&mut c, 1);
    verify(&mut c);
}

#[test]
fn ops_limit_a_rule_to_some_operations() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET od ON item OPS create,delete INVALIDATE 1 list:{op}"
        ),
        Value::Okay
    );
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET up ON item OPS update INVALIDATE 1 upd:{id}"
        ),
        Value::Okay
    );
    entry(&mut c, "lc", &["list:create"], &[]);
    entry(&mut c, "ld", &["list:delete"], &[]);
    entry(&mut c, "lu", &["list:update"], &[]);
    entry(&mut c, "u1", &["upd:1"], &[]);

    // Without OP the operation is update.
    assert_eq!(write(&mut c, "item 1"), 1);
    assert_eq!(all(&mut c), sv(&["lc", "ld", "lu"]));
    assert_eq!(stat(&mut c, "od"), (0, 0));
    assert_eq!(stat(&mut c, "up"), (1, 1));
    assert_eq!(write(&mut c, "item 1 OP CREATE"), 1);
    assert_eq!(all(&mut c), sv(&["ld", "lu"]));
    assert_eq!(write(&mut c, "item 1 op delete"), 1);
    assert_eq!(all(&mut c), sv(&["lu"]));
    assert_eq!(write(&mut c, "item 2 OP update"), 0);
    // od never renders list:update: only create and delete fire it.
    assert_eq!(all(&mut c), sv(&["lu"]));
    assert_eq!(stat(&mut c, "od"), (2, 2));
    assert_eq!(stat(&mut c, "up"), (2, 1));
    verify(&mut c);
}

#[test]
fn match_limits_a_rule_to_ids_matching_a_glob() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET m ON user MATCH 1? INVALIDATE 1 hit:{id}"
        ),
        Value::Okay
    );
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET br ON user MATCH [ab]* INVALIDATE 1 hit:{id}"
        ),
        Value::Okay
    );
    for id in ["1", "12", "123", "a9", "b", "c9"] {
        entry(&mut c, &format!("h{id}"), &[&format!("hit:{id}")], &[]);
    }
    assert_eq!(write(&mut c, "user 1"), 0);
    assert_eq!(write(&mut c, "user 123"), 0);
    assert_eq!(write(&mut c, "user c9"), 0);
    assert_eq!(write(&mut c, "user 12"), 1);
    assert_eq!(write(&mut c, "user a9"), 1);
    assert_eq!(write(&mut c, "user b"), 1);
    assert_eq!(all(&mut c), sv(&["h1", "h123", "hc9"]));
    // A rule that did not match did not run.
    assert_eq!(stat(&mut c, "m"), (1, 1));
    assert_eq!(stat(&mut c, "br"), (2, 2));
    verify(&mut c);
}

/// Entries `k<type>` tagged `<type>:1` for each type (re-created when missing).
fn fill(c: &mut Connection, types: &[&str]) {
    for t in types {
        entry(c, &format!("k{t}"), &[&format!("{t}:1")], &[]);
    }
}

#[test]
fn relation_depth_bounds_how_far_a_write_is_carried() {
    let s = Server::start();
    let mut c = s.conn();
    let types = ["a", "b", "c", "d"];
    assert_eq!(run(&mut c, "CACHE.RELATE a b"), Value::Okay);
    assert_eq!(run(&mut c, "CACHE.RELATE b c"), Value::Okay);
    assert_eq!(run(&mut c, "CACHE.RELATE c d DEPTH 5"), Value::Okay);
    // A rule of the last type reached fires too.
    assert_eq!(
        run(&mut c, "CACHE.RULE SET onc ON c INVALIDATE 1 cx:{id}"),
        Value::Okay
    );

    // DEPTH 1 (default): a reaches b, not c.
    fill(&mut c, &types);
    entry(&mut c, "cx", &["cx:1"], &[]);
    assert_eq!(write(&mut c, "a 1"), 2);
    assert_eq!(all(&mut c), sv(&["cx", "kc", "kd"]));
    assert_eq!(stat(&mut c, "onc"), (0, 0));
    // b -> c (DEPTH 1): b reaches c only.
    fill(&mut c, &types);
    assert_eq!(write(&mut c, "b 1"), 3);
    assert_eq!(all(&mut c), sv(&["ka", "kd"]));
    assert_eq!(stat(&mut c, "onc"), (1, 1));

    // a -> b DEPTH 2: b with one hop left, so c is reached (and its rule fires), but the
    // relation c -> d (DEPTH 5) is not followed: no budget left.
    assert_eq!(run(&mut c, "CACHE.RELATE a b DEPTH 2"), Value::Okay);
    fill(&mut c, &types);
    entry(&mut c, "cx", &["cx:1"], &[]);
    assert_eq!(write(&mut c, "a 1"), 4);
    assert_eq!(all(&mut c), sv(&["kd"]));
    assert_eq!(stat(&mut c, "onc"), (2, 2));
    // A later relation also bounds the budget: b -> c DEPTH 3 does not extend a -> b DEPTH 2.
    assert_eq!(run(&mut c, "CACHE.RELATE b c DEPTH 3"), Value::Okay);
    fill(&mut c, &types);
    assert_eq!(write(&mut c, "a 1"), 3);
    assert_eq!(all(&mut c), sv(&["kd"]));
    // a -> b DEPTH 3 and b -> c DEPTH 3: c keeps one hop, d is reached.
    assert_eq!(run(&mut c, "CACHE.RELATE a b DEPTH 3"), Value::Okay);
    fill(&mut c, &types);
    assert_eq!(write(&mut c, "a 1"), 4);
    assert!(all(&mut c).is_empty());
    // The implicit step names every type reached: the written one first, then byte order.
    assert_eq!(
        events(&mut c, 2),
        vec![
            ev("cx:1", 0, "rule:onc", "immediate"),
            ev("a:1 b:1 c:1 d:1", 4, "", "immediate"),
        ]
    );
    // Only the same id is carried.
    fill(&mut c, &types);
    assert_eq!(write(&mut c, "a 2"), 0);
    assert_eq!(all(&mut c), sv(&["ka", "kb", "kc", "kd"]));
    verify(&mut c);
}

#[test]
fn relation_cycles_terminate_and_bidirectional_relations_work_both_ways() {
    let s = Server::start();
    let mut c = s.conn();
    for r in ["a b", "b c", "c a"] {
        assert_eq!(
            run(&mut c, &format!("CACHE.RELATE {r} DEPTH 100")),
            Value::Okay
        );
    }
    assert_eq!(
        run(&mut c, "CACHE.RULE SET ra ON a INVALIDATE 1 ra:{id}"),
        Value::Okay
    );
    fill(&mut c, &["a", "b", "c"]);
    entry(&mut c, "multi", &["a:1", "b:1", "c:1"], &[]);
    entry(&mut c, "ra", &["ra:1"], &[]);
    // Each type once, each entry counted once; the rule of `a` fires once.
    assert_eq!(write(&mut c, "c 1"), 5);
    assert!(all(&mut c).is_empty());
    // Two events in all: the implicit step (the written type first, then byte order) and ra.
    assert_eq!(
        events(&mut c, 10),
        vec![
            ev("ra:1", 1, "rule:ra", "immediate"),
            ev("c:1 a:1 b:1", 4, "", "immediate"),
        ]
    );
    assert_eq!(event_count(&mut c), 2);
    assert_eq!(stat(&mut c, "ra"), (1, 1));

    // BIDIRECTIONAL: a write on the target reaches the source too.
    assert_eq!(run(&mut c, "CACHE.RELATE x y BIDIRECTIONAL"), Value::Okay);
    assert_eq!(run(&mut c, "CACHE.RELATE p q"), Value::Okay);
    fill(&mut c, &["x", "y", "p", "q"]);
    assert_eq!(write(&mut c, "y 1"), 2);
    assert_eq!(all(&mut c), sv(&["kp", "kq"]));
    assert_eq!(write(&mut c, "q 1"), 1);
    assert_eq!(all(&mut c), sv(&["kp"]));
    fill(&mut c, &["x", "y"]);
    assert_eq!(write(&mut c, "x 1"), 2);
    // RELATE DEL with source and target swapped removes nothing and keeps both directions.
    assert_eq!(num(&mut c, "CACHE.RELATE DEL y x"), 0);
    fill(&mut c, &["x", "y"]);
    assert_eq!(write(&mut c, "y 1"), 2);
    // Relating again without BIDIRECTIONAL makes it one-way.
    assert_eq!(run(&mut c, "CACHE.RELATE x y"), Value::Okay);
    fill(&mut c, &["x", "y"]);
    assert_eq!(write(&mut c, "y 1"), 1);
    assert_eq!(all(&mut c), sv(&["kp", "kx"]));
    // Bidirectional with a depth: n reaches m backwards and o forwards.
    assert_eq!(
        run(&mut c, "CACHE.RELATE m n DEPTH 2 BIDIRECTIONAL"),
        Value::Okay
    );
    assert_eq!(run(&mut c, "CACHE.RELATE n o"), Value::Okay);
    fill(&mut c, &["m", "n", "o"]);
    assert_eq!(write(&mut c, "n 1"), 3);
    fill(&mut c, &["m", "n", "o"]);
    // From o: no relation leaves o.
    assert_eq!(write(&mut c, "o 1"), 1);
    // From m: n with one hop left, then o.
    assert_eq!(write(&mut c, "m 1"), 2);
    assert_eq!(all(&mut c), sv(&["kp", "kx"]));
    verify(&mut c);
}

#[test]
fn rules_run_by_priority_then_name_and_events_record_context_and_rule() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(run(&mut c, "CACHE.RELATE user profile"), Value::Okay);
    for line in [
        "CACHE.RULE SET z ON user INVALIDATE 1 shared",
        "CACHE.RULE SET b ON user PRIORITY 5 INVALIDATE 1 b:{id}",
        // A rule of the related type, same priority: ordered by name with the others.
        "CACHE.RULE SET a ON profile PRIORITY 5 INVALIDATE 1 {type}-{id}",
        "CACHE.RULE SET p10 ON user PRIORITY 10 INVALIDATE 2 shared p10:{id}",
        "CACHE.RULE SET nomatch ON user PRIORITY 50 OPS delete INVALIDATE 1 shared",
    ] {
        assert_eq!(run(&mut c, line), Value::Okay, "{line}");
    }
    entry(&mut c, "shared", &["shared"], &[]);
    entry(&mut c, "b7", &["b:7"], &[]);
    entry(&mut c, "pf7", &["profile-7"], &[]);
    entry(&mut c, "u7", &["user:7"], &[]);
    entry(&mut c, "pr7", &["profile:7"], &[]);

    let t0 = server_ms(&mut c);
    assert_eq!(write(&mut c, "user 7 CONTEXT order-42"), 5);
    let t1 = server_ms(&mut c);
    // Newest first: z, b, a, p10 (descending priority, ties by name), then the implicit step.
    assert_eq!(
        events(&mut c, 10),
        vec![
            ev("shared", 0, "order-42 rule:z", "immediate"),
            ev("b:7", 1, "order-42 rule:b", "immediate"),
            ev("profile-7", 1, "order-42 rule:a", "immediate"),
            ev("shared p10:7", 1, "order-42 rule:p10", "immediate"),
            ev("user:7 profile:7", 2, "order-42", "immediate"),
        ]
    );
    // p10 ran before z: it took the shared entry. nomatch (OPS delete) did not run.
    let rows = rules(&mut c);
    let got: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.def.name.clone(), r.executions, r.entries))
        .collect();
    assert_eq!(
        got,
        vec![
            ("nomatch".to_string(), 0, 0),
            ("p10".to_string(), 1, 1),
            ("a".to_string(), 1, 1),
            ("b".to_string(), 1, 1),
            ("z".to_string(), 1, 0),
        ]
    );
    for r in &rows {
        if r.def.name == "nomatch" {
            assert_eq!(r.last_run_ms, -1);
        } else {
            assert!(
                (t0..=t1).contains(&r.last_run_ms),
                "{r:?} not in {t0}..={t1}"
            );
        }
    }

    // Without CONTEXT: the implicit step has an empty context, rules "rule:<name>".
    assert_eq!(write(&mut c, "profile 9 OP delete"), 0);
    assert_eq!(
        events(&mut c, 2),
        vec![
            ev("profile-9", 0, "rule:a", "immediate"),
            ev("profile:9", 0, "", "immediate"),
        ]
    );
    // A context with a space is kept whole.
    entry(&mut c, "u8", &["user:8"], &[]);
    assert_eq!(
        ok(
            &mut c,
            &[
                "CACHE.WRITE",
                "user",
                "8",
                "OP",
                "delete",
                "CONTEXT",
                "bulk import"
            ]
        ),
        Value::Int(1)
    );
    let evs = events(&mut c, 6);
    assert_eq!(
        evs.iter().map(|e| e.2.as_str()).collect::<Vec<_>>(),
        vec![
            "bulk import rule:z",
            "bulk import rule:b",
            "bulk import rule:a",
            "bulk import rule:p10",
            "bulk import rule:nomatch",
            "bulk import",
        ]
    );
    assert_eq!(stat(&mut c, "nomatch"), (1, 0));
    assert_eq!(stat(&mut c, "a"), (3, 1));
    // The metrics count every step as an invalidation.
    assert_eq!(
        info_field(&mut c, "cache", "cache_invalidations"),
        (5 + 2 + 6).to_string()
    );
    assert_eq!(info_field(&mut c, "cache", "cache_keys_invalidated"), "6");
    verify(&mut c);
}

#[test]
fn per_rule_counters_accumulate_over_writes() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        run(&mut c, "CACHE.RULE SET r ON t INVALIDATE 2 x:{id} all"),
        Value::Okay
    );
    assert_eq!(
        run(&mut c, "CACHE.RULE SET idle ON other INVALIDATE 1 all"),
        Value::Okay
    );
    for i in 0..3 {
        entry(&mut c, &format!("all{i}"), &["all"], &[]);
    }
    entry(&mut c, "x1", &["x:1"], &[]);
    entry(&mut c, "x2", &["x:2"], &[]);
    let t0 = server_ms(&mut c);
    assert_eq!(write(&mut c, "t 1"), 4);
    assert_eq!(write(&mut c, "t 2"), 1);
    assert_eq!(write(&mut c, "t 3"), 0);
    let t1 = server_ms(&mut c);
    let rows = counters(&mut c);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], ("idle".to_string(), 0, 0, -1));
    assert_eq!((rows[1].0.as_str(), rows[1].1, rows[1].2), ("r", 3, 5));
    assert!((t0..=t1).contains(&rows[1].3), "{rows:?}");
    // CACHE.RESET zeroes the metrics only, not the rules or their counters.
    assert_eq!(run(&mut c, "CACHE.RESET"), Value::Okay);
    assert_eq!(counters(&mut c), rows);
    // RULE DEL then SET starts from zero.
    assert_eq!(num(&mut c, "CACHE.RULE DEL r"), 1);
    assert_eq!(
        run(&mut c, "CACHE.RULE SET r ON t INVALIDATE 2 x:{id} all"),
        Value::Okay
    );
    assert_eq!(stat(&mut c, "r"), (0, 0));
    verify(&mut c);
}

/// A CACHE.PENDING row: (db, type, pattern, depth, context, due_ms - queued_ms, coalesced).
type PendingRow = (i64, String, String, i64, Option<String>, i64, i64);

fn pending(c: &mut Connection) -> Vec<PendingRow> {
    list(&run(c, "CACHE.PENDING"))
        .iter()
        .map(|row| {
            let d = |n: &str| field(row, n);
            let queued = int(&d("queued_ms"));
            (
                int(&d("db")),
                text(&d("type")),
                text(&d("pattern")),
                int(&d("depth")),
                bytes(&d("context")).map(|b| String::from_utf8(b).expect("utf-8")),
                int(&d("due_ms")) - queued,
                int(&d("coalesced")),
            )
        })
        .collect()
}

#[test]
fn a_batched_rule_is_queued_then_applied_after_the_delay() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "1000");
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET lb ON user INVALIDATE 1 listing STRATEGY BATCHED"
        ),
        Value::Okay
    );
    assert_eq!(
        run(&mut c, "CACHE.RULE SET now ON user INVALIDATE 1 s:{id}"),
        Value::Okay
    );
    for k in ["l1", "l2", "l3"] {
        entry(&mut c, k, &["listing"], &[]);
    }
    entry(&mut c, "u7", &["user:7"], &[]);
    entry(&mut c, "u8", &["user:8"], &[]);
    entry(&mut c, "s7", &["s:7"], &[]);
    let before = int_info(&mut c, "cache_keys_invalidated");

    // The reply counts what was invalidated now (u7, s7), not the queued listing.
    assert_eq!(write(&mut c, "user 7"), 2);
    assert_eq!(all(&mut c), sv(&["l1", "l2", "l3", "u8"]));
    assert_eq!(
        pending(&mut c),
        vec![(
            0,
            "tag".to_string(),
            "listing".to_string(),
            -1,
            Some("rule:lb".to_string()),
            1000,
            0
        )]
    );
    // A second write queues the same request: it is coalesced (the first context is kept).
    assert_eq!(write(&mut c, "user 8 CONTEXT second"), 1);
    assert_eq!(
        pending(&mut c),
        vec![(
            0,
            "tag".to_string(),
            "listing".to_string(),
            -1,
            Some("rule:lb".to_string()),
            1000,
            1
        )]
    );
    assert_eq!(all(&mut c), sv(&["l1", "l2", "l3"]));
    assert_eq!(int_info(&mut c, "cache_keys_invalidated"), before + 3);
    // Queued: the rule ran (executions, last run) but invalidated nothing yet.
    assert_eq!(stat(&mut c, "lb"), (2, 0));
    assert_eq!(stat(&mut c, "now"), (2, 1));

    eventually("the BATCHED rule applied", || all(&mut c).is_empty());
    assert!(pending(&mut c).is_empty());
    // Counted when applied: the metrics and one event, with the rule's context.
    assert_eq!(int_info(&mut c, "cache_keys_invalidated"), before + 6);
    assert_eq!(
        events(&mut c, 1),
        vec![ev("listing", 3, "rule:lb", "batched")]
    );
    verify(&mut c);
}

fn int_info(c: &mut Connection, name: &str) -> i64 {
    info_field(c, "cache", name).parse().expect("integer")
}

/// A BATCHED rule's `entries_invalidated` should count the entries its queued step removed
/// when it is applied (the issue: "BATCHED work counted when applied"; LIST shows "entries
/// invalidated" per rule). The module records 0 when it queues the step and never adds what
/// the step removes later.
#[test]
fn a_batched_rule_counts_its_entries_when_applied() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET lb ON user INVALIDATE 1 listing STRATEGY BATCHED"
        ),
        Value::Okay
    );
    for k in ["l1", "l2", "l3"] {
        entry(&mut c, k, &["listing"], &[]);
    }
    assert_eq!(write(&mut c, "user 7"), 0);
    assert_eq!(stat(&mut c, "lb"), (1, 0));
    assert_eq!(num(&mut c, "CACHE.PENDING FLUSH"), 3);
    assert!(all(&mut c).is_empty());
    assert_eq!(stat(&mut c, "lb"), (1, 3));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// A server with a rule `keep`, a relation and entries, so that a rejected command has
/// something to change.
fn with_state() -> (Server, Connection) {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET keep ON user OPS update MATCH * INVALIDATE 1 k:{id} PRIORITY 3"
        ),
        Value::Okay
    );
    assert_eq!(
        run(&mut c, "CACHE.RELATE user profile DEPTH 2"),
        Value::Okay
    );
    entry(&mut c, "u1", &["user:1"], &[]);
    entry(&mut c, "p1", &["profile:1"], &[]);
    entry(&mut c, "k1", &["k:1"], &[]);
    entry(&mut c, "a", &["a", "b"], &["u1"]);
    (s, c)
}

#[test]
fn rule_set_bad_input_is_rejected_and_changes_nothing() {
    let (_s, mut c) = with_state();
    let notint = "ERR value is not an integer or out of range";
    let syntax = "ERR syntax error";
    let cases: &[(&str, &str)] = &[
        // Unknown operation.
        (
            "CACHE.RULE SET keep ON user OPS create,upsert INVALIDATE 1 x",
            "ERR unknown operation 'upsert', expected create, update or delete",
        ),
        (
            "CACHE.RULE SET keep ON user OPS create, INVALIDATE 1 x",
            "ERR unknown operation '', expected create, update or delete",
        ),
        // Count mismatch.
        (
            "CACHE.RULE SET keep ON user INVALIDATE 3 a b",
            "ERR INVALIDATE count 3 doesn't match the number of templates given",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 a b",
            "ERR INVALIDATE count 1 doesn't match the number of templates given (or 'b' is not an option)",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 0 a",
            "ERR INVALIDATE needs at least one template",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE -1 a",
            "ERR INVALIDATE needs at least one template",
        ),
        ("CACHE.RULE SET keep ON user INVALIDATE x a", notint),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 257 a",
            "ERR too many templates (limit 256)",
        ),
        // Templates.
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 user:{name}",
            "ERR unknown placeholder '{name}' in template 'user:{name}', expected {type}, {id} or {op}",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 2 ok:{id} {ID}",
            "ERR unknown placeholder '{ID}' in template '{ID}', expected {type}, {id} or {op}",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 x{}",
            "ERR unknown placeholder '{}' in template 'x{}', expected {type}, {id} or {op}",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 user:{id",
            "ERR unclosed '{' in template 'user:{id' (write '{{' for a literal '{')",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 a}b",
            "ERR unmatched '}' in template 'a}b' (write '}}' for a literal '}')",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 {{id}",
            "ERR unmatched '}' in template '{{id}' (write '}}' for a literal '}')",
        ),
        // Priority.
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 x PRIORITY -1",
            "ERR PRIORITY can't be negative",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 x PRIORITY 2147483648",
            "ERR PRIORITY is out of range, must be between 0 and 2147483647",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 x PRIORITY 99999999999999999999",
            notint,
        ),
        ("CACHE.RULE SET keep ON user INVALIDATE 1 x PRIORITY high", notint),
        // Strategy.
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 x STRATEGY soon",
            "ERR unknown strategy 'soon', expected IMMEDIATE, LAZY or BATCHED",
        ),
        // Missing parts, repeated options, values missing.
        (
            "CACHE.RULE SET keep INVALIDATE 1 x",
            "ERR CACHE.RULE SET needs ON <type>",
        ),
        (
            "CACHE.RULE SET keep ON user",
            "ERR CACHE.RULE SET needs INVALIDATE <count> <template> [<template> ...]",
        ),
        (
            "CACHE.RULE SET keep ON user ON post INVALIDATE 1 x",
            "ERR ON given more than once",
        ),
        (
            "CACHE.RULE SET keep ON user OPS create OPS delete INVALIDATE 1 x",
            "ERR OPS given more than once",
        ),
        (
            "CACHE.RULE SET keep ON user MATCH a MATCH b INVALIDATE 1 x",
            "ERR MATCH given more than once",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 x INVALIDATE 1 y",
            "ERR INVALIDATE given more than once",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 x STRATEGY BATCHED STRATEGY BATCHED",
            "ERR STRATEGY given more than once",
        ),
        (
            "CACHE.RULE SET keep ON user INVALIDATE 1 x PRIORITY 1 PRIORITY 1",
            "ERR PRIORITY given more than once",
        ),
        ("CACHE.RULE SET keep ON", syntax),
        ("CACHE.RULE SET keep ON user INVALIDATE", syntax),
        ("CACHE.RULE SET keep ON user INVALIDATE 1 x PRIORITY", syntax),
        ("CACHE.RULE SET keep ON user INVALIDATE 1 x MATCH", syntax),
        ("CACHE.RULE SET keep ON user FOO 1 INVALIDATE 1 x", syntax),
        ("CACHE.RULE SET keep ON user INVALIDATE 1 x PRIORITY 1 FOO", syntax),
        // Arity and subcommands.
        ("CACHE.RULE", "ERR wrong number of arguments for 'cache.rule' command"),
        (
            "CACHE.RULE SET",
            "ERR wrong number of arguments for 'cache.rule' command",
        ),
        (
            "CACHE.RULE DEL",
            "ERR wrong number of arguments for 'cache.rule' command",
        ),
        (
            "CACHE.RULE DEL keep extra",
            "ERR wrong number of arguments for 'cache.rule' command",
        ),
        (
            "CACHE.RULE LIST all",
            "ERR wrong number of arguments for 'cache.rule' command",
        ),
        (
            "CACHE.RULE HELP me",
            "ERR wrong number of arguments for 'cache.rule' command",
        ),
        (
            "CACHE.RULE ADD keep",
            "ERR unknown subcommand 'ADD'. Try CACHE.RULE HELP.",
        ),
    ];
    for (line, expected) in cases {
        rejected_line(&mut c, line, expected);
    }
    // Arguments with empty or oversized names.
    let long = "n".repeat(1025);
    let long_pattern = "*".repeat(4097);
    let odd: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "CACHE.RULE",
                "SET",
                "",
                "ON",
                "user",
                "INVALIDATE",
                "1",
                "x",
            ],
            "ERR rule name can't be empty".into(),
        ),
        (
            vec![
                "CACHE.RULE",
                "SET",
                "keep",
                "ON",
                "",
                "INVALIDATE",
                "1",
                "x",
            ],
            "ERR type can't be empty".into(),
        ),
        (
            vec![
                "CACHE.RULE",
                "SET",
                &long,
                "ON",
                "user",
                "INVALIDATE",
                "1",
                "x",
            ],
            "ERR rule name is too long (limit 1024 bytes)".into(),
        ),
        (
            vec![
                "CACHE.RULE",
                "SET",
                "keep",
                "ON",
                &long,
                "INVALIDATE",
                "1",
                "x",
            ],
            "ERR type is too long (limit 1024 bytes)".into(),
        ),
        (
            vec![
                "CACHE.RULE",
                "SET",
                "keep",
                "ON",
                "user",
                "MATCH",
                &long_pattern,
                "INVALIDATE",
                "1",
                "x",
            ],
            "ERR MATCH pattern is too long (limit 4096 bytes)".into(),
        ),
        (
            vec![
                "CACHE.RULE",
                "SET",
                "keep",
                "ON",
                "user",
                "INVALIDATE",
                "1",
                "",
            ],
            "ERR template can't be empty".into(),
        ),
        (
            vec![
                "CACHE.RULE",
                "SET",
                "keep",
                "ON",
                "user",
                "OPS",
                "",
                "INVALIDATE",
                "1",
                "x",
            ],
            "ERR unknown operation '', expected create, update or delete".into(),
        ),
    ];
    for (parts, expected) in &odd {
        rejected(&mut c, parts, expected);
    }
    // Still the original rule, unchanged and working.
    assert_eq!(
        defs(&mut c),
        vec![def(
            "keep",
            "user",
            &["update"],
            Some("*"),
            &["k:{id}"],
            "immediate",
            3
        )]
    );
    assert_eq!(write(&mut c, "user 1"), 4);
    assert_eq!(stat(&mut c, "keep"), (1, 1));
    verify(&mut c);
}

#[test]
fn relate_bad_input_is_rejected_and_changes_nothing() {
    let (_s, mut c) = with_state();
    let arity = "ERR wrong number of arguments for 'cache.relate' command";
    let cases: &[(&str, &str)] = &[
        ("CACHE.RELATE a b DEPTH -1", "ERR DEPTH can't be negative"),
        (
            "CACHE.RELATE user profile DEPTH -1",
            "ERR DEPTH can't be negative",
        ),
        ("CACHE.RELATE a b DEPTH 0", "ERR DEPTH must be at least 1"),
        (
            "CACHE.RELATE a b DEPTH 4294967296",
            "ERR DEPTH is out of range, must be between 1 and 4294967295",
        ),
        (
            "CACHE.RELATE a b DEPTH two",
            "ERR value is not an integer or out of range",
        ),
        ("CACHE.RELATE a b DEPTH", "ERR syntax error"),
        ("CACHE.RELATE a b DEPTH 2 c", "ERR syntax error"),
        ("CACHE.RELATE a b BIDIRECTIONAL c", "ERR syntax error"),
        (
            "CACHE.RELATE a b DEPTH 2 DEPTH 3",
            "ERR DEPTH given more than once",
        ),
        (
            "CACHE.RELATE a b BIDIRECTIONAL BIDIRECTIONAL",
            "ERR BIDIRECTIONAL given more than once",
        ),
        (
            "CACHE.RELATE a DEPTH 2",
            "ERR CACHE.RELATE needs at least one target",
        ),
        (
            "CACHE.RELATE a bidirectional",
            "ERR CACHE.RELATE needs at least one target",
        ),
        (
            "CACHE.RELATE a a",
            "ERR a type can't be related to itself ('a')",
        ),
        // One bad target rejects the whole command: a -> b is not added either.
        (
            "CACHE.RELATE a b a",
            "ERR a type can't be related to itself ('a')",
        ),
        ("CACHE.RELATE", arity),
        ("CACHE.RELATE a", arity),
        ("CACHE.RELATE DEL a", arity),
        ("CACHE.RELATE DEL a b c", arity),
        ("CACHE.RELATE LIST x", arity),
        ("CACHE.RELATE HELP x", arity),
        // DEL/LIST/HELP are subcommands: such a type can't be a source.
        ("CACHE.RELATE Del b", arity),
        ("CACHE.RELATE list b c", arity),
    ];
    for (line, expected) in cases {
        rejected_line(&mut c, line, expected);
    }
    let long = "t".repeat(1025);
    let odd: Vec<(Vec<&str>, &str)> = vec![
        (vec!["CACHE.RELATE", "a", ""], "ERR type can't be empty"),
        (vec!["CACHE.RELATE", "", "a"], "ERR type can't be empty"),
        (
            vec!["CACHE.RELATE", "a", &long],
            "ERR type is too long (limit 1024 bytes)",
        ),
    ];
    for (parts, expected) in &odd {
        rejected(&mut c, parts, expected);
    }
    assert_eq!(relations(&mut c), vec![rl("user", "profile", 2, 0)]);
    assert_eq!(write(&mut c, "user 1"), 4);
    verify(&mut c);
}

#[test]
fn write_bad_input_is_rejected_and_changes_nothing() {
    let (_s, mut c) = with_state();
    let cases: &[(&str, &str)] = &[
        (
            "CACHE.WRITE user 1 OP upsert",
            "ERR unknown operation 'upsert', expected create, update or delete",
        ),
        (
            "CACHE.WRITE user 1 OP create,update",
            "ERR unknown operation 'create,update', expected create, update or delete",
        ),
        ("CACHE.WRITE user 1 OP", "ERR syntax error"),
        ("CACHE.WRITE user 1 CONTEXT", "ERR syntax error"),
        ("CACHE.WRITE user 1 FOO bar", "ERR syntax error"),
        ("CACHE.WRITE user 1 DEPTH 2", "ERR syntax error"),
        (
            "CACHE.WRITE user 1 OP create OP delete",
            "ERR OP given more than once",
        ),
        (
            "CACHE.WRITE user 1 CONTEXT a CONTEXT b",
            "ERR CONTEXT given more than once",
        ),
        (
            "CACHE.WRITE",
            "ERR wrong number of arguments for 'cache.write' command",
        ),
        (
            "CACHE.WRITE user",
            "ERR wrong number of arguments for 'cache.write' command",
        ),
    ];
    for (line, expected) in cases {
        rejected_line(&mut c, line, expected);
    }
    rejected(&mut c, &["CACHE.WRITE", "", "1"], "ERR type can't be empty");
    assert_eq!(stat(&mut c, "keep"), (0, 0));
    assert_eq!(all(&mut c), sv(&["a", "k1", "p1", "u1"]));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------------------------

/// Rules (one of each kind), relations, entries, and writes that moved the counters.
fn populate(c: &mut Connection) {
    for line in [
        "CACHE.RULE SET sessions ON user INVALIDATE 2 sessions:{id} listing PRIORITY 2",
        "CACHE.RULE SET feed ON post OPS create,delete MATCH 1* INVALIDATE 1 {{{type}}}:{id}:{op}",
        "CACHE.RULE SET later ON user INVALIDATE 1 later STRATEGY BATCHED PRIORITY 1",
        "CACHE.RELATE user profile feed DEPTH 3",
        "CACHE.RELATE post user BIDIRECTIONAL",
    ] {
        assert_eq!(run(c, line), Value::Okay, "{line}");
    }
    entry(c, "u7", &["user:7"], &[]);
    entry(c, "s7", &["sessions:7"], &[]);
    entry(c, "l1", &["listing"], &[]);
    entry(c, "p8", &["profile:8"], &[]);
    entry(c, "keep", &["other"], &["p8"]);
    assert_eq!(write(c, "user 7"), 3);
    assert_eq!(write(c, "post 12 OP create"), 0);
}

/// Entries that the writes after a reload act on.
fn refill(c: &mut Connection) {
    entry(c, "u9", &["user:9"], &[]);
    entry(c, "pf9", &["profile:9"], &[]);
}

/// After a reload, the rules still fire: a write on user 9 reaches profile.
fn still_works(c: &mut Connection) {
    refill(c);
    assert_eq!(write(c, "user 9"), 2);
}

#[test]
fn rules_and_relations_survive_debug_reload() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    populate(&mut c);
    let rows = rules(&mut c);
    let rels = relations(&mut c);
    assert_eq!(rows.len(), 3);
    assert_eq!(rels.len(), 3);
    let d = digest(&mut c);
    assert_eq!(run(&mut c, "DEBUG RELOAD"), Value::Okay);
    // Definitions and counters (RDB aux data carries both).
    assert_eq!(rules(&mut c), rows);
    assert_eq!(relations(&mut c), rels);
    assert_eq!(digest(&mut c), d);
    assert_eq!(all(&mut c), sv(&["keep", "p8"]));
    still_works(&mut c);
    assert_eq!(
        stat(&mut c, "sessions"),
        (rows[0].executions + 1, rows[0].entries)
    );
    // Deleting everything and reloading gives nothing back.
    for n in ["sessions", "feed", "later"] {
        assert_eq!(num(&mut c, &format!("CACHE.RULE DEL {n}")), 1);
    }
    for (s1, t1, _, _) in &rels {
        assert_eq!(num(&mut c, &format!("CACHE.RELATE DEL {s1} {t1}")), 1);
    }
    assert_eq!(num(&mut c, "CACHE.PENDING FLUSH"), 0);
    assert_eq!(run(&mut c, "DEBUG RELOAD"), Value::Okay);
    assert!(rules(&mut c).is_empty());
    assert!(relations(&mut c).is_empty());
    verify(&mut c);
}

#[test]
fn rules_and_relations_survive_save_and_restart() {
    let mut s = Server::start();
    let mut c = s.conn();
    populate(&mut c);
    let rows = rules(&mut c);
    let rels = relations(&mut c);
    let d = digest(&mut c);
    assert_eq!(run(&mut c, "SAVE"), Value::Okay);
    s.restart("NOSAVE");
    let mut c = s.conn();
    assert_eq!(rules(&mut c), rows);
    assert_eq!(relations(&mut c), rels);
    assert_eq!(digest(&mut c), d);
    still_works(&mut c);
    verify(&mut c);
}

fn aof_server(preamble: bool) -> Server {
    Server::with(
        &[],
        &[
            "--appendonly",
            "yes",
            "--aof-use-rdb-preamble",
            if preamble { "yes" } else { "no" },
        ],
    )
}

/// BGREWRITEAOF, then waits (bounded) until it finished successfully.
fn rewrite_aof(c: &mut Connection) {
    ok(c, &["BGREWRITEAOF"]);
    eventually("the AOF rewrite finished", || {
        info_field(c, "persistence", "aof_rewrite_in_progress") == "0"
            && info_field(c, "persistence", "aof_rewrite_scheduled") == "0"
    });
    assert_eq!(
        info_field(c, "persistence", "aof_last_bgrewrite_status"),
        "ok"
    );
}

/// Rows with the counters as an AOF replay of `CACHE.RULE SET` leaves them: zero.
fn zeroed(rows: &[RuleRow]) -> Vec<RuleRow> {
    rows.iter()
        .map(|r| RuleRow {
            def: r.def.clone(),
            executions: 0,
            entries: 0,
            last_run_ms: -1,
        })
        .collect()
}

#[test]
fn rules_and_relations_survive_an_aof_restart_with_an_rdb_preamble() {
    let mut s = aof_server(true);
    let mut c = s.conn();
    populate(&mut c);
    let rows = rules(&mut c);
    let rels = relations(&mut c);
    let d = digest(&mut c);
    assert!(rows.iter().any(|r| r.executions > 0));
    s.restart("NOSAVE");
    let mut c = s.conn();
    // The AOF holds the CACHE.RULE SET / CACHE.RELATE commands as sent (CACHE.WRITE only as its
    // deletes): the definitions come back; the counters are node-local and start again at 0.
    assert_eq!(rules(&mut c), zeroed(&rows));
    assert_eq!(relations(&mut c), rels);
    assert_eq!(digest(&mut c), d);
    still_works(&mut c);

    // After a rewrite the RDB preamble carries the rules with their counters.
    let rows = rules(&mut c);
    let d = digest(&mut c);
    assert!(rows.iter().any(|r| r.executions > 0));
    rewrite_aof(&mut c);
    s.restart("NOSAVE");
    let mut c = s.conn();
    assert_eq!(rules(&mut c), rows);
    assert_eq!(relations(&mut c), rels);
    assert_eq!(digest(&mut c), d);
    // A rule set after the rewrite (in the AOF tail) comes back too.
    assert_eq!(
        run(&mut c, "CACHE.RULE SET tail ON t INVALIDATE 1 x"),
        Value::Okay
    );
    assert_eq!(num(&mut c, "CACHE.RULE DEL feed"), 1);
    assert_eq!(num(&mut c, "CACHE.RELATE DEL post user"), 1);
    let rows = rules(&mut c);
    let rels = relations(&mut c);
    s.restart("NOSAVE");
    let mut c = s.conn();
    assert_eq!(rules(&mut c), rows);
    assert_eq!(relations(&mut c), rels);
    verify(&mut c);
}

#[test]
fn without_an_rdb_preamble_rules_survive_a_restart_and_a_rewrite() {
    let mut s = aof_server(false);
    let mut c = s.conn();
    populate(&mut c);
    let rows = rules(&mut c);
    let rels = relations(&mut c);
    let d = digest(&mut c);
    // No rewrite: the AOF replays the CACHE.RULE SET / CACHE.RELATE commands.
    s.restart("NOSAVE");
    let mut c = s.conn();
    assert_eq!(rules(&mut c), zeroed(&rows));
    assert_eq!(relations(&mut c), rels);
    assert_eq!(digest(&mut c), d);
    let keys_before = all(&mut c);

    // An AOF rewrite without an RDB preamble writes the entries as CACHE.SET commands and the
    // rules and relations, with the first entry, as one CACHE.PENDING STATE.
    rewrite_aof(&mut c);
    s.restart("NOSAVE");
    let mut c = s.conn();
    assert_eq!(rules(&mut c), zeroed(&rows));
    assert_eq!(relations(&mut c), rels);
    assert_eq!(all(&mut c), keys_before);
    assert_eq!(digest(&mut c), d);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Replication
// ---------------------------------------------------------------------------------------------

/// Makes a replica a master again (to read what only a master answers: CACHE.RELATE LIST).
fn promote(r: &mut Connection) {
    assert_eq!(run(r, "REPLICAOF NO ONE"), Value::Okay);
}

#[test]
fn rules_set_on_the_master_replicate_and_a_replica_refuses_changes() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    populate(&mut mc);
    sync(&mut mc, &mut rc);

    // Definitions are equal; counters are node-local: the master's CACHE.WRITE replicated only
    // its deletes, so the replica never ran a rule.
    let m_rows = rules(&mut mc);
    assert_eq!(defs(&mut rc), defs(&mut mc));
    assert_eq!(m_rows.len(), 3);
    assert!(m_rows.iter().any(|r| r.executions > 0));
    assert_eq!(rules(&mut rc), zeroed(&m_rows));
    assert_eq!(all(&mut rc), all(&mut mc));
    assert_eq!(all(&mut rc), sv(&["keep", "p8"]));
    verify(&mut rc);

    // Writes the master makes with the rules replicate as their effects.
    refill(&mut mc);
    entry(&mut mc, "s9", &["sessions:9"], &[]);
    entry(&mut mc, "l9", &["listing"], &[]);
    entry(&mut mc, "dep", &[], &["pf9"]);
    // Removed later by the BATCHED rule `later`, on the master, replicated as a DEL.
    entry(&mut mc, "lt", &["later"], &[]);
    assert_eq!(write(&mut mc, "user 9 CONTEXT repl"), 5);
    eventually("the BATCHED rule applied on the master", || {
        all(&mut mc) == sv(&["keep", "p8"])
    });
    sync(&mut mc, &mut rc);
    assert_eq!(all(&mut rc), sv(&["keep", "p8"]));
    assert_eq!(all(&mut rc), all(&mut mc));
    assert_eq!(rules(&mut rc), zeroed(&m_rows));

    // Nothing that changes nothing is propagated: DEL of a missing rule or relation, LIST,
    // HELP, a rejected SET.
    let offset = repl_offset(&mut mc);
    assert_eq!(num(&mut mc, "CACHE.RULE DEL missing"), 0);
    assert_eq!(num(&mut mc, "CACHE.RELATE DEL x y"), 0);
    run(&mut mc, "CACHE.RULE LIST");
    run(&mut mc, "CACHE.RULE HELP");
    run(&mut mc, "CACHE.RELATE LIST");
    assert_eq!(
        err(&mut mc, &a("CACHE.RULE SET bad ON user INVALIDATE 2 x")),
        "ERR INVALIDATE count 2 doesn't match the number of templates given"
    );
    assert_eq!(repl_offset(&mut mc), offset);

    // The replica refuses every change, answers CACHE.RULE LIST / HELP.
    let d = digest(&mut rc);
    let before = rules(&mut rc);
    for line in [
        "CACHE.RULE SET x ON user INVALIDATE 1 x",
        "CACHE.RULE SET sessions ON user INVALIDATE 1 x",
        "CACHE.RULE DEL sessions",
        "CACHE.RULE DEL missing",
        "CACHE.RELATE a b",
        "CACHE.RELATE DEL user profile",
        "CACHE.WRITE user 7",
        "CACHE.WRITE user 9 OP delete CONTEXT x",
        // CACHE.RELATE is one write-flagged command: even LIST and HELP are refused.
        "CACHE.RELATE LIST",
        "CACHE.RELATE HELP",
    ] {
        assert_eq!(err(&mut rc, &a(line)), READONLY, "{line}");
    }
    assert_eq!(rules(&mut rc), before);
    assert_eq!(strings(&run(&mut rc, "CACHE.RULE HELP")).len(), 11);
    assert_eq!(digest(&mut rc), d);

    // Changes on the master follow: replace, DEL, RELATE, RELATE DEL.
    assert_eq!(
        run(
            &mut mc,
            "CACHE.RULE SET sessions ON user INVALIDATE 1 s2:{id} PRIORITY 9"
        ),
        Value::Okay
    );
    assert_eq!(num(&mut mc, "CACHE.RULE DEL feed"), 1);
    assert_eq!(run(&mut mc, "CACHE.RELATE a b c DEPTH 2"), Value::Okay);
    assert_eq!(num(&mut mc, "CACHE.RELATE DEL user feed"), 1);
    sync(&mut mc, &mut rc);
    assert_eq!(
        defs(&mut rc),
        vec![
            def(
                "sessions",
                "user",
                &["*"],
                None,
                &["s2:{id}"],
                "immediate",
                9
            ),
            def("later", "user", &["*"], None, &["later"], "batched", 1),
        ]
    );
    assert_eq!(defs(&mut rc), defs(&mut mc));
    verify(&mut mc);
    verify(&mut rc);

    // Promoted, the replica shows the master's relations and applies its rules.
    let rels = relations(&mut mc);
    assert_eq!(
        rels,
        vec![
            rl("a", "b", 2, 0),
            rl("a", "c", 2, 0),
            rl("post", "user", 1, 1),
            rl("user", "profile", 3, 0),
        ]
    );
    promote(&mut rc);
    assert_eq!(relations(&mut rc), rels);
    refill(&mut rc);
    entry(&mut rc, "s2", &["s2:9"], &[]);
    assert_eq!(write(&mut rc, "user 9"), 3);
    assert_eq!(stat(&mut rc, "sessions"), (1, 1));
    verify(&mut rc);
}

#[test]
fn a_full_sync_carries_rules_relations_and_the_counters_of_that_moment() {
    let m = master();
    let mut mc = m.conn();
    populate(&mut mc);
    let rows = rules(&mut mc);
    let rels = relations(&mut mc);
    assert!(rows.iter().any(|r| r.executions > 0));

    let r = replica_of(&m);
    let mut rc = r.conn();
    wait_link(&mut rc);
    sync(&mut mc, &mut rc);
    // The RDB aux data carries definitions and the master's counters as they were.
    assert_eq!(rules(&mut rc), rows);
    assert_eq!(all(&mut rc), all(&mut mc));

    // From then on the counters are node-local: the master's move, the replica's stay.
    refill(&mut mc);
    assert_eq!(write(&mut mc, "user 9"), 2);
    sync(&mut mc, &mut rc);
    assert_ne!(rules(&mut mc), rows);
    assert_eq!(rules(&mut rc), rows);
    assert_eq!(defs(&mut rc), defs(&mut mc));
    assert_eq!(all(&mut rc), all(&mut mc));
    verify(&mut mc);
    verify(&mut rc);

    promote(&mut rc);
    assert_eq!(relations(&mut rc), rels);
    still_works(&mut rc);
    verify(&mut rc);
}

#[test]
fn a_replica_with_rules_of_its_own_takes_the_masters_on_full_sync() {
    let m = master();
    let mut mc = m.conn();
    assert_eq!(
        run(&mut mc, "CACHE.RULE SET mine ON user INVALIDATE 1 m:{id}"),
        Value::Okay
    );
    assert_eq!(run(&mut mc, "CACHE.RELATE user profile"), Value::Okay);
    let s = Server::start();
    let mut rc = s.conn();
    assert_eq!(
        run(&mut rc, "CACHE.RULE SET stale ON user INVALIDATE 1 st:{id}"),
        Value::Okay
    );
    assert_eq!(run(&mut rc, "CACHE.RELATE old new"), Value::Okay);
    let port = m.port.to_string();
    assert_eq!(ok(&mut rc, &["REPLICAOF", "127.0.0.1", &port]), Value::Okay);
    wait_link(&mut rc);
    sync(&mut mc, &mut rc);
    assert_eq!(rules(&mut rc), rules(&mut mc));
    promote(&mut rc);
    assert_eq!(relations(&mut rc), vec![rl("user", "profile", 1, 0)]);
    verify(&mut rc);
    verify(&mut mc);
}

/// A master without any rule, relation or queued request: its full sync should still leave the
/// replica with no rules ("CACHE.RULE LIST on a replica equals the master's"). Passes on
/// Redis 7.0 (the server always calls `aux_save`); fails on Redis 8.2, Valkey 8.1 and 9.1,
/// where the module's `aux_save2` writes no aux data when the master's rules and queue are
/// empty, so `aux_load` never runs on the replica and its own rules stay.
#[test]
fn a_replica_with_rules_of_its_own_loses_them_when_the_master_has_none() {
    let m = master();
    let mut mc = m.conn();
    entry(&mut mc, "k", &["t"], &[]);
    let s = Server::start();
    let mut rc = s.conn();
    assert_eq!(
        run(&mut rc, "CACHE.RULE SET stale ON user INVALIDATE 1 st:{id}"),
        Value::Okay
    );
    assert_eq!(run(&mut rc, "CACHE.RELATE old new"), Value::Okay);
    let port = m.port.to_string();
    assert_eq!(ok(&mut rc, &["REPLICAOF", "127.0.0.1", &port]), Value::Okay);
    wait_link(&mut rc);
    sync(&mut mc, &mut rc);
    assert_eq!(all(&mut rc), sv(&["k"]));
    assert!(rules(&mut mc).is_empty());
    assert_eq!(
        rules(&mut rc),
        vec![],
        "the replica kept rules its master does not have"
    );
    promote(&mut rc);
    assert_eq!(relations(&mut rc), vec![]);
    verify(&mut rc);
    verify(&mut mc);
}

// ---------------------------------------------------------------------------------------------
// Binary safety, limits, cascade
// ---------------------------------------------------------------------------------------------

fn b(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

#[test]
fn names_types_ids_and_templates_are_binary_safe() {
    let s = Server::start();
    let mut c = s.conn();
    let name: &[u8] = b"r\xff name";
    let ty: &[u8] = b"ty pe\x00";
    assert_eq!(
        ok(
            &mut c,
            &b(&[
                b"CACHE.RULE",
                b"SET",
                name,
                b"ON",
                ty,
                b"MATCH",
                b"\x01*",
                b"INVALIDATE",
                b"1",
                b"t:{id}\x00{{",
            ])
        ),
        Value::Okay
    );
    let row = list(&run(&mut c, "CACHE.RULE LIST")).remove(0);
    assert_eq!(field(&row, "name"), Value::BulkString(name.to_vec()));
    assert_eq!(field(&row, "on"), Value::BulkString(ty.to_vec()));
    assert_eq!(field(&row, "match"), Value::BulkString(b"\x01*".to_vec()));
    assert_eq!(
        field(&row, "invalidate"),
        Value::Array(vec![Value::BulkString(b"t:{id}\x00{{".to_vec())])
    );
    let id: &[u8] = b"\x01\xff x";
    let implicit = [ty, b":", id].concat();
    let ruled = [b"t:", id, b"\x00{"].concat();
    for (key, tag) in [(&b"k1"[..], &implicit), (b"k2", &ruled)] {
        assert_eq!(
            ok(&mut c, &b(&[b"CACHE.SET", key, b"v", b"TAGS", b"1", tag])),
            Value::Okay
        );
    }
    entry(&mut c, "other", &["t:"], &[]);
    assert_eq!(ok(&mut c, &b(&[b"CACHE.WRITE", ty, id])), Value::Int(2));
    assert_eq!(all(&mut c), sv(&["other"]));
    // MATCH applies to the id bytes: an id without the leading \x01 fires nothing.
    assert_eq!(
        ok(&mut c, &b(&[b"CACHE.WRITE", ty, b"\xff x"])),
        Value::Int(0)
    );
    assert_eq!(
        int(&field(
            &list(&run(&mut c, "CACHE.RULE LIST"))[0],
            "executions"
        )),
        1
    );
    assert_eq!(
        ok(&mut c, &b(&[b"CACHE.RULE", b"DEL", name])),
        Value::Int(1)
    );
    verify(&mut c);
}

/// Rejections at the limits are checked cheaply (a LIST of 10 000 rows is slow to parse in a
/// debug build): the digest, and the one row the command could have added or changed.
#[test]
fn rule_and_relation_limits_are_enforced() {
    let s = Server::start();
    let mut c = s.conn();
    let d = digest(&mut c);
    let mut p = redis::pipe();
    for i in 0..10_000 {
        p.cmd("CACHE.RULE")
            .arg("SET")
            .arg(format!("r{i:05}"))
            .arg("ON")
            .arg("t")
            .arg("INVALIDATE")
            .arg(1)
            .arg("x")
            .ignore();
    }
    p.query::<()>(&mut c).expect("10000 rules");
    assert_eq!(
        err(&mut c, &a("CACHE.RULE SET extra ON t INVALIDATE 1 x")),
        "ERR too many rules (limit 10000)"
    );
    assert_eq!(num(&mut c, "CACHE.RULE DEL extra"), 0);
    assert_eq!(digest(&mut c), d);
    // Replacing one at the limit is fine.
    assert_eq!(
        run(
            &mut c,
            "CACHE.RULE SET r00007 ON t INVALIDATE 1 y PRIORITY 1"
        ),
        Value::Okay
    );
    // The rule limit still holds after a replace.
    assert_eq!(
        err(&mut c, &a("CACHE.RULE SET extra ON t INVALIDATE 1 x")),
        "ERR too many rules (limit 10000)"
    );
    assert_eq!(num(&mut c, "CACHE.RULE DEL r00000"), 1);
    assert_eq!(
        run(&mut c, "CACHE.RULE SET extra ON t INVALIDATE 1 x"),
        Value::Okay
    );

    // Relations: 10000 targets in one command, then no more.
    let targets: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    let mut parts: Vec<&str> = vec!["CACHE.RELATE", "s"];
    parts.extend(targets.iter().map(String::as_str));
    assert_eq!(ok(&mut c, &parts), Value::Okay);
    for (line, source, target) in [
        ("CACHE.RELATE s x", "s", "x"),
        ("CACHE.RELATE x y", "x", "y"),
    ] {
        assert_eq!(
            err(&mut c, &a(line)),
            "ERR too many relations (limit 10000)"
        );
        assert_eq!(
            num(&mut c, &format!("CACHE.RELATE DEL {source} {target}")),
            0
        );
    }
    // Replacing an existing pair is fine.
    assert_eq!(run(&mut c, "CACHE.RELATE s t5 DEPTH 2"), Value::Okay);
    // One free slot, two new targets: the whole command is refused (t1 keeps its depth).
    assert_eq!(num(&mut c, "CACHE.RELATE DEL s t0"), 1);
    assert_eq!(
        err(&mut c, &a("CACHE.RELATE s t1 n1 n2 DEPTH 9")),
        "ERR too many relations (limit 10000)"
    );
    assert_eq!(num(&mut c, "CACHE.RELATE DEL s n2"), 0);
    assert_eq!(run(&mut c, "CACHE.RELATE s n1"), Value::Okay);
    let rels = relations(&mut c);
    assert_eq!(rels.len(), 10_000);
    assert!(rels.contains(&rl("s", "t5", 2, 0)));
    assert!(rels.contains(&rl("s", "t1", 1, 0)));
    assert!(rels.contains(&rl("s", "n1", 1, 0)));
    assert!(!rels.contains(&rl("s", "t0", 1, 0)));
    assert_eq!(digest(&mut c), d);
    // A write on s reaches every target in one step.
    entry(&mut c, "k", &["t9999:1"], &[]);
    entry(&mut c, "n", &["n1:1"], &[]);
    assert_eq!(write(&mut c, "s 1"), 2);
    // Full registries (r00007 replaced first, r00000 gone) come back from a reload.
    let raw_rules = run(&mut c, "CACHE.RULE LIST");
    let rows = rule_rows(&raw_rules, false);
    assert_eq!(rows.len(), 10_000);
    assert_eq!(
        rows[0].def,
        def("r00007", "t", &["*"], None, &["y"], "immediate", 1)
    );
    assert_eq!(
        rows[1].def,
        def("extra", "t", &["*"], None, &["x"], "immediate", 0)
    );
    assert_eq!(rows[2].def.name, "r00001");
    assert_eq!(rows[9_999].def.name, "r09999");
    let raw_rels = run(&mut c, "CACHE.RELATE LIST");
    assert_eq!(run(&mut c, "DEBUG RELOAD"), Value::Okay);
    assert_eq!(run(&mut c, "CACHE.RULE LIST"), raw_rules);
    assert_eq!(run(&mut c, "CACHE.RELATE LIST"), raw_rels);
    verify(&mut c);
}

#[test]
fn write_cascades_to_dependents_up_to_the_configured_depth() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        run(&mut c, "CACHE.RULE SET r ON user INVALIDATE 1 x:{id}"),
        Value::Okay
    );
    let fill_chain = |c: &mut Connection| {
        entry(c, "u1", &["user:1"], &[]);
        entry(c, "d1", &[], &["u1"]);
        entry(c, "d2", &[], &["d1"]);
        entry(c, "x1", &["x:1"], &[]);
        entry(c, "dx", &[], &["x1"]);
    };
    fill_chain(&mut c);
    // Default depth (16): everything.
    assert_eq!(write(&mut c, "user 1"), 5);
    assert!(all(&mut c).is_empty());
    config_set(&mut c, "cache.max-cascade-depth", "1");
    fill_chain(&mut c);
    assert_eq!(write(&mut c, "user 1"), 4);
    assert_eq!(all(&mut c), sv(&["d2"]));
    config_set(&mut c, "cache.max-cascade-depth", "0");
    fill_chain(&mut c);
    assert_eq!(write(&mut c, "user 1"), 2);
    assert_eq!(all(&mut c), sv(&["d1", "d2", "dx"]));
    assert_eq!(stat(&mut c, "r"), (3, 5));
    verify(&mut c);
}
