//! ACL-aware reach: an invalidation (IMMEDIATE, BATCHED, CACHE.WRITE) only removes entries its
//! user may delete, skipping the others (not removed, not counted, not cascaded through, the
//! first one recorded in ACL LOG); CACHE.KEYS lists exactly what the same INVALIDATE would remove;
//! CACHE.INSPECT dependents and CACHE.HOTKEYS never show a key the user may not read.

mod common;
use common::*;

/// public:1 and secret:1 carry tag t; public:2 depends on secret:1, public:3 on public:1.
fn setup(s: &Server) -> Connection {
    let mut c = s.conn();
    ok(&mut c, &["CACHE.SET", "public:1", "a", "TAGS", "1", "t"]);
    ok(&mut c, &["CACHE.SET", "secret:1", "b", "TAGS", "1", "t"]);
    ok(
        &mut c,
        &["CACHE.SET", "public:2", "c", "DEPENDS", "1", "secret:1"],
    );
    ok(
        &mut c,
        &["CACHE.SET", "public:3", "d", "DEPENDS", "1", "public:1"],
    );
    for (name, keys) in [("alice", "~public:*"), ("reader", "%R~*")] {
        ok(
            &mut c,
            &["ACL", "SETUSER", name, "on", ">pw", keys, "+@all"],
        );
    }
    c
}

fn acl_log_objects(c: &mut Connection) -> Vec<String> {
    list(&ok(c, &["ACL", "LOG"]))
        .iter()
        .map(|e| {
            String::from_utf8_lossy(&bytes(&field(e, "object")).unwrap_or_default()).into_owned()
        })
        .collect()
}

#[test]
fn invalidation_skips_what_the_user_may_not_delete() {
    let s = Server::start();
    let mut admin = setup(&s);
    let mut alice = as_user(&s, "alice");
    let d = digest(&mut admin);
    // The dry run shows exactly what alice's invalidation removes: secret:1 is skipped, and
    // public:2 (reached only through it) with it.
    assert_eq!(
        keys(&mut alice, &["TAG", "t"]),
        vec!["public:1", "public:3"]
    );
    assert_eq!(digest(&mut admin), d, "the dry run changes nothing");
    assert_eq!(int(&ok(&mut alice, &["CACHE.INVALIDATE", "TAG", "t"])), 2);
    assert_eq!(keys(&mut admin, &["ALL"]), vec!["public:2", "secret:1"]);
    assert_eq!(acl_log_objects(&mut admin), vec!["secret:1"]);
    // The default user (all keys) reaches everything.
    assert_eq!(
        keys(&mut admin, &["TAG", "t"]),
        vec!["public:2", "secret:1"]
    );
    verify(&mut admin);
}

#[test]
fn a_read_only_user_invalidates_nothing() {
    let s = Server::start();
    let mut admin = setup(&s);
    let mut reader = as_user(&s, "reader");
    let d = digest(&mut admin);
    assert!(keys(&mut reader, &["ALL"]).is_empty());
    assert_eq!(int(&ok(&mut reader, &["CACHE.INVALIDATE", "ALL"])), 0);
    assert_eq!(digest(&mut admin), d);
    verify(&mut admin);
}

#[test]
fn inspect_and_hotkeys_hide_keys_the_user_may_not_read() {
    let s = Server::start();
    let mut admin = setup(&s);
    let mut alice = as_user(&s, "alice");
    for _ in 0..3 {
        ok(&mut admin, &["CACHE.GET", "secret:1"]);
    }
    ok(&mut admin, &["CACHE.GET", "public:1"]);
    ok(
        &mut admin,
        &["CACHE.SET", "public:4", "e", "DEPENDS", "1", "public:1"],
    );
    ok(
        &mut admin,
        &["CACHE.SET", "secret:2", "f", "DEPENDS", "1", "public:1"],
    );
    let deps =
        |c: &mut Connection| strings(&field(&ok(c, &["CACHE.INSPECT", "public:1"]), "dependents"));
    assert_eq!(deps(&mut admin), vec!["public:3", "public:4", "secret:2"]);
    assert_eq!(deps(&mut alice), vec!["public:3", "public:4"]);
    let hot = |c: &mut Connection| -> Vec<String> {
        list(&ok(c, &["CACHE.HOTKEYS"]))
            .iter()
            .map(|p| String::from_utf8_lossy(&bytes(&list(p)[0]).unwrap_or_default()).into_owned())
            .collect()
    };
    assert_eq!(hot(&mut admin), vec!["secret:1", "public:1"]);
    assert_eq!(hot(&mut alice), vec!["public:1"]);
    verify(&mut admin);
}

#[test]
fn batched_and_write_invalidations_use_the_callers_permissions() {
    let s = Server::start();
    let mut admin = setup(&s);
    let mut alice = as_user(&s, "alice");
    ok(
        &mut admin,
        &["CONFIG", "SET", "cache.batch-delay-ms", "5000"],
    );
    assert_eq!(
        int(&ok(
            &mut alice,
            &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "TAG", "t"]
        )),
        0
    );
    // Applied (here by an admin's FLUSH) with alice's permissions, as she queued it.
    assert_eq!(int(&ok(&mut admin, &["CACHE.PENDING", "FLUSH"])), 2);
    assert_eq!(keys(&mut admin, &["ALL"]), vec!["public:2", "secret:1"]);
    // CACHE.WRITE: the implicit tag of the written row.
    ok(
        &mut admin,
        &["CACHE.SET", "secret:9", "x", "TAGS", "1", "user:9"],
    );
    ok(
        &mut admin,
        &["CACHE.SET", "public:9", "y", "TAGS", "1", "user:9"],
    );
    assert_eq!(int(&ok(&mut alice, &["CACHE.WRITE", "user", "9"])), 1);
    assert_eq!(keys(&mut admin, &["TAG", "user:9"]), vec!["secret:9"]);
    verify(&mut admin);
}

/// Key specs: reads declare read-only access, writes read-write, so a user with `%R~` key
/// patterns reads entries and cannot change them.
#[test]
fn a_read_only_user_reads_entries_and_cannot_write_them() {
    let s = Server::start();
    let mut admin = setup(&s);
    let mut reader = as_user(&s, "reader");
    assert_eq!(
        bytes(&ok(&mut reader, &["CACHE.GET", "secret:1"])),
        Some(b"b".to_vec())
    );
    assert_eq!(
        strings(&ok(&mut reader, &["CACHE.MGET", "secret:1", "public:1"])),
        vec!["b", "a"]
    );
    assert_eq!(
        strings(&field(
            &ok(&mut reader, &["CACHE.INSPECT", "secret:1"]),
            "tags"
        )),
        vec!["t"]
    );
    let d = digest(&mut admin);
    for cmd in [
        &["CACHE.SET", "secret:1", "x"][..],
        &["CACHE.TAG", "secret:1", "u"],
        &["CACHE.DEPEND", "secret:1", "r"],
    ] {
        assert!(err(&mut reader, cmd).starts_with("NOPERM"), "{cmd:?}");
    }
    assert_eq!(digest(&mut admin), d);
    assert_eq!(
        strings(&ok(
            &mut admin,
            &["COMMAND", "GETKEYS", "CACHE.MGET", "a", "b"]
        )),
        vec!["a", "b"]
    );
    verify(&mut admin);
}

/// app:1 and other:1 carry tag t; app:2 and other:2 depend on app:1; app:3 depends on other:2
/// (so it is reached only through a key the `~app:*` user may not touch).
fn app_setup(admin: &mut Connection) {
    ok(admin, &["FLUSHALL"]);
    ok(admin, &["ACL", "LOG", "RESET"]);
    entry(admin, "app:1", &["t"], &[]);
    entry(admin, "other:1", &["t"], &[]);
    entry(admin, "app:2", &[], &["app:1"]);
    entry(admin, "other:2", &[], &["app:1"]);
    entry(admin, "app:3", &[], &["other:2"]);
}

#[test]
fn a_user_limited_to_app_keys_invalidates_by_tag_pattern_all_and_key_cascade() {
    let s = Server::start();
    let mut admin = s.conn();
    ok(
        &mut admin,
        &["ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+@all"],
    );
    let mut app = as_user(&s, "app");
    // (selector, what the app user removes, what stays)
    let cases: [(&[&str], &[&str], &[&str]); 5] = [
        (
            &["TAG", "t"],
            &["app:1", "app:2"],
            &["app:3", "other:1", "other:2"],
        ),
        (
            &["PATTERN", "*:1"],
            &["app:1", "app:2"],
            &["app:3", "other:1", "other:2"],
        ),
        (
            &["ALL"],
            &["app:1", "app:2", "app:3"],
            &["other:1", "other:2"],
        ),
        // The cascade reaches other:2, which is skipped, and does not pass through it: app:3
        // stays.
        (
            &["KEY", "app:1"],
            &["app:1", "app:2"],
            &["app:3", "other:1", "other:2"],
        ),
        (
            &["KEY", "other:1"],
            &[],
            &["app:1", "app:2", "app:3", "other:1", "other:2"],
        ),
    ];
    for (selector, removed, stays) in cases {
        app_setup(&mut admin);
        let d = digest(&mut admin);
        assert_eq!(keys(&mut app, selector), removed.to_vec(), "{selector:?}");
        assert_eq!(digest(&mut admin), d, "the dry run changes nothing");
        let mut line = vec!["CACHE.INVALIDATE"];
        line.extend_from_slice(selector);
        assert_eq!(
            int(&ok(&mut app, &line)),
            removed.len() as i64,
            "{selector:?}"
        );
        assert_eq!(keys(&mut admin, &["ALL"]), stays.to_vec(), "{selector:?}");
        // The first key it was kept from is in ACL LOG.
        let logged = acl_log_objects(&mut admin);
        assert_eq!(logged.len(), 1, "{selector:?}: {logged:?}");
        assert!(logged[0].starts_with("other:"), "{selector:?}: {logged:?}");
        verify(&mut admin);
    }
}

#[test]
fn listings_leave_out_keys_the_app_user_may_not_read() {
    let s = Server::start();
    let mut admin = s.conn();
    ok(
        &mut admin,
        &["ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+@all"],
    );
    let mut app = as_user(&s, "app");
    app_setup(&mut admin);
    for k in ["other:1", "other:2", "app:1"] {
        ok(&mut admin, &["CACHE.GET", k]);
    }
    assert_eq!(keys(&mut app, &["ALL"]), vec!["app:1", "app:2", "app:3"]);
    assert_eq!(keys(&mut app, &["DEPENDENTS", "app:1"]), vec!["app:2"]);
    let dependents =
        |c: &mut Connection| strings(&field(&ok(c, &["CACHE.INSPECT", "app:1"]), "dependents"));
    assert_eq!(dependents(&mut admin), vec!["app:2", "other:2"]);
    assert_eq!(dependents(&mut app), vec!["app:2"]);
    let hot = |c: &mut Connection| -> Vec<String> {
        let mut v: Vec<String> = list(&ok(c, &["CACHE.HOTKEYS"]))
            .iter()
            .map(|p| String::from_utf8_lossy(&bytes(&list(p)[0]).unwrap_or_default()).into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(hot(&mut admin), vec!["app:1", "other:1", "other:2"]);
    assert_eq!(hot(&mut app), vec!["app:1"]);
    // The user may not open other:* at all.
    assert!(err(&mut app, &["CACHE.INSPECT", "other:1"]).starts_with("NOPERM"));
    assert!(err(&mut app, &["CACHE.GET", "other:1"]).starts_with("NOPERM"));
    verify(&mut admin);
}

#[test]
fn a_user_with_only_cache_get_and_cache_stats_is_refused_every_write() {
    let s = Server::start();
    let mut admin = setup(&s);
    ok(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "ro",
            "on",
            ">pw",
            "~*",
            "-@all",
            "+cache.get",
            "+cache.stats",
        ],
    );
    let mut ro = as_user(&s, "ro");
    assert_eq!(
        bytes(&ok(&mut ro, &["CACHE.GET", "public:1"])),
        Some(b"a".to_vec())
    );
    assert_eq!(int(&field(&ok(&mut ro, &["CACHE.STATS"]), "entries")), 4);
    let d = digest(&mut admin);
    for line in [
        &["CACHE.SET", "public:1", "x"][..],
        &["CACHE.SET", "new", "x"],
        &["CACHE.TAG", "public:1", "u"],
        &["CACHE.DEPEND", "public:1", "r"],
        &["CACHE.INVALIDATE", "ALL"],
        &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "TAG", "t"],
        &["CACHE.WRITE", "user", "1"],
        &[
            "CACHE.RULE",
            "SET",
            "r",
            "ON",
            "user",
            "INVALIDATE",
            "1",
            "t",
        ],
        &["CACHE.RELATE", "user", "post"],
        &["CACHE.PENDING", "FLUSH"],
        &["CACHE.RESET"],
        &["CACHE.DEBUG", "VERIFY"],
        &["CACHE.KEYS", "ALL"],
        &["CACHE.MGET", "public:1"],
        &["CACHE.INSPECT", "public:1"],
        &["DEL", "public:1"],
    ] {
        let e = err(&mut ro, line);
        assert!(e.starts_with("NOPERM"), "{line:?}: {e}");
    }
    assert_eq!(digest(&mut admin), d, "a refused command changed something");
    assert!(list(&ok(&mut admin, &["CACHE.PENDING"])).is_empty());
    assert!(list(&ok(&mut admin, &["CACHE.RULE", "LIST"])).is_empty());
    let stats = ok(&mut admin, &["CACHE.STATS"]);
    assert_eq!(int(&field(&stats, "total_invalidations")), 0);
    assert_eq!(int(&field(&stats, "hits")), 1, "the one CACHE.GET");
    verify(&mut admin);
}

/// Issue 21, defect 4: BATCHED requests of different users are never folded into one; each is
/// applied with the rights of the user who queued it. Identical requests of one user still fold.
#[test]
fn batched_requests_of_different_users_are_not_folded() {
    let s = Server::start();
    let mut admin = s.conn();
    ok(
        &mut admin,
        &["CONFIG", "SET", "cache.batch-delay-ms", "5000"],
    );
    ok(
        &mut admin,
        &["ACL", "SETUSER", "app", "on", ">pw", "~app:*", "+@all"],
    );
    ok(&mut admin, &["CACHE.SET", "app:1", "a", "TAGS", "1", "t"]);
    ok(&mut admin, &["CACHE.SET", "other:1", "b", "TAGS", "1", "t"]);
    let mut app = as_user(&s, "app");
    let batched = ["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "TAG", "t"];
    assert_eq!(int(&ok(&mut app, &batched)), 0);
    assert_eq!(int(&ok(&mut admin, &batched)), 0);
    assert_eq!(int(&ok(&mut admin, &batched)), 0);
    let rows = list(&ok(&mut admin, &["CACHE.PENDING"]));
    assert_eq!(rows.len(), 2, "one request per user: {rows:?}");
    let coalesced: Vec<i64> = rows.iter().map(|r| int(&field(r, "coalesced"))).collect();
    assert_eq!(coalesced, vec![0, 1], "the same user's requests still fold");
    // app's removes app:1, default's other:1.
    assert_eq!(int(&ok(&mut admin, &["CACHE.PENDING", "FLUSH"])), 2);
    assert_eq!(keys(&mut admin, &["ALL"]), Vec::<String>::new());
    verify(&mut admin);
}
// ---------------------------------------------------------------------------------------------
// Visibility: a user restricted by key patterns learns no key name outside them from any cache
// command. `narrow` may use `app:*` only; `wide` reads every key (as the default user does).
// ---------------------------------------------------------------------------------------------

fn narrow_and_wide(s: &Server) -> (Connection, Connection, Connection) {
    let mut admin = s.conn();
    for (name, keys) in [("narrow", "~app:*"), ("wide", "~*")] {
        ok(
            &mut admin,
            &[
                "ACL",
                "SETUSER",
                name,
                "on",
                ">pw",
                keys,
                "+@all",
                "-@dangerous",
            ],
        );
    }
    app_setup(&mut admin);
    entry(&mut admin, "other:3", &["u"], &[]);
    entry(&mut admin, "app:4", &["u"], &[]);
    (admin, as_user(s, "narrow"), as_user(s, "wide"))
}

/// Every string anywhere in a reply, map keys included.
fn all_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(a) | Value::Set(a) => a.iter().for_each(|x| all_text(x, out)),
        Value::Map(m) => m.iter().for_each(|(k, x)| {
            all_text(k, out);
            all_text(x, out);
        }),
        _ => {}
    }
}

/// The reply names nothing outside `app:*`: no `other` anywhere in it (keys, patterns and
/// contexts below all carry that word).
fn names_no_other(what: &str, v: &Value) {
    let mut t = Vec::new();
    all_text(v, &mut t);
    let leaked: Vec<&String> = t.iter().filter(|s| s.contains("other")).collect();
    assert!(leaked.is_empty(), "{what} shows {leaked:?}");
}

fn mentions_other(v: &Value) -> bool {
    let mut t = Vec::new();
    all_text(v, &mut t);
    t.iter().any(|s| s.contains("other"))
}

/// Invalidations by the wide user (every strategy) and one by the narrow user.
fn invalidate_as_both(admin: &mut Connection, narrow: &mut Connection, wide: &mut Connection) {
    ok(
        wide,
        &["CACHE.INVALIDATE", "CONTEXT", "other-ctx", "KEY", "other:1"],
    );
    ok(
        wide,
        &[
            "CACHE.INVALIDATE",
            "STRATEGY",
            "LAZY",
            "CONTEXT",
            "other-lazy",
            "PATTERN",
            "other:2*",
        ],
    );
    ok(
        wide,
        &[
            "CACHE.INVALIDATE",
            "STRATEGY",
            "SOFT",
            "CONTEXT",
            "other-soft",
            "DEPENDENTS",
            "other:9",
        ],
    );
    ok(admin, &["CACHE.INVALIDATE", "NAMESPACE", "other"]);
    ok(
        narrow,
        &["CACHE.INVALIDATE", "CONTEXT", "mine", "KEY", "app:2"],
    );
}

#[test]
fn events_show_other_users_names_only_to_users_who_read_every_key() {
    let s = Server::start();
    let (mut admin, mut narrow, mut wide) = narrow_and_wide(&s);
    invalidate_as_both(&mut admin, &mut narrow, &mut wide);
    let seen = ok(&mut narrow, &["CACHE.EVENTS"]);
    names_no_other("CACHE.EVENTS", &seen);
    let items = list(&seen);
    assert_eq!(
        items.len(),
        5,
        "every event is listed, by counts: {items:?}"
    );
    // Its own event in full, the others with pattern and context nil.
    assert_eq!(text(&field(&items[0], "pattern")), "app:2");
    assert_eq!(text(&field(&items[0], "context")), "mine");
    for e in &items[1..] {
        assert_eq!(field(e, "pattern"), Value::Nil, "{e:?}");
        assert_eq!(field(e, "context"), Value::Nil, "{e:?}");
        int(&field(e, "keys_invalidated"));
    }
    assert_eq!(
        items
            .iter()
            .map(|e| text(&field(e, "type")))
            .collect::<Vec<_>>(),
        vec!["key", "namespace", "dependents", "pattern", "key"]
    );
    // Users who read every key see everything.
    for c in [&mut wide, &mut admin] {
        let all = ok(c, &["CACHE.EVENTS"]);
        assert!(mentions_other(&all), "{all:?}");
        assert_eq!(events(c)[3].1, "other:2*");
    }
}

#[test]
fn stats_and_recommend_name_only_the_users_own_patterns_and_contexts() {
    let s = Server::start();
    let (mut admin, mut narrow, mut wide) = narrow_and_wide(&s);
    invalidate_as_both(&mut admin, &mut narrow, &mut wide);
    for _ in 0..3 {
        // "Dominant invalidation pattern" names the wide user's pattern.
        ok(&mut wide, &["CACHE.INVALIDATE", "KEY", "other:7"]);
        ok(&mut wide, &["CACHE.INVALIDATE", "KEY", "other:7"]);
    }
    let stats = ok(&mut narrow, &["CACHE.STATS"]);
    names_no_other("CACHE.STATS", &stats);
    let patterns = field(&stats, "patterns");
    let common: Vec<String> = map(&field(&patterns, "most_common_patterns"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(common, vec!["key app:2"]);
    let contexts: Vec<String> = map(&field(&patterns, "by_context"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(contexts, vec!["mine"]);
    assert_eq!(
        int(&field(&stats, "total_invalidations")),
        11,
        "counts cover everyone"
    );
    for line in [
        &["CACHE.STATS", "JSON"][..],
        &["CACHE.STATS", "LOCAL", "JSON"],
        &["CACHE.RECOMMEND"],
        &["CACHE.RECOMMEND", "JSON"],
    ] {
        names_no_other(&format!("{line:?}"), &ok(&mut narrow, line));
    }
    for c in [&mut wide, &mut admin] {
        let stats = ok(c, &["CACHE.STATS"]);
        let common = field(&field(&stats, "patterns"), "most_common_patterns");
        assert!(mentions_other(&common), "{common:?}");
        assert!(mentions_other(&ok(c, &["CACHE.RECOMMEND"])));
        assert!(mentions_other(&ok(c, &["CACHE.STATS", "JSON"])));
    }
}

#[test]
fn pending_shows_other_users_requests_and_marks_without_their_names() {
    let s = Server::start();
    let (mut admin, mut narrow, mut wide) = narrow_and_wide(&s);
    config_set(&mut admin, "cache.batch-delay-ms", "5000");
    ok(&mut admin, &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    let batched = |c: &mut Connection, sel: &[&str], context: &str| {
        let mut line = vec![
            "CACHE.INVALIDATE",
            "STRATEGY",
            "BATCHED",
            "CONTEXT",
            context,
        ];
        line.extend_from_slice(sel);
        ok(c, &line);
    };
    batched(&mut wide, &["PATTERN", "other:*"], "other-batch");
    batched(&mut admin, &["KEY", "other:3"], "other-batch2");
    batched(&mut narrow, &["KEY", "app:1"], "mine");
    for c in [&mut wide, &mut narrow] {
        ok(
            c,
            &[
                "CACHE.INVALIDATE",
                "STRATEGY",
                "LAZY",
                "CONTEXT",
                "lazy",
                "TAG",
                "u",
            ],
        );
    }
    ok(
        &mut wide,
        &[
            "CACHE.INVALIDATE",
            "STRATEGY",
            "LAZY",
            "CONTEXT",
            "other-lazy",
            "KEY",
            "other:2",
        ],
    );
    let queue = ok(&mut narrow, &["CACHE.PENDING"]);
    names_no_other("CACHE.PENDING", &queue);
    let queue = list(&queue);
    assert_eq!(queue.len(), 3, "{queue:?}");
    assert_eq!(field(&queue[0], "pattern"), Value::Nil);
    assert_eq!(field(&queue[1], "context"), Value::Nil);
    assert_eq!(text(&field(&queue[1], "type")), "key");
    assert_eq!(text(&field(&queue[2], "pattern")), "app:1");
    assert_eq!(text(&field(&queue[2], "context")), "mine");
    let marks = ok(&mut narrow, &["CACHE.PENDING", "LAZY"]);
    names_no_other("CACHE.PENDING LAZY", &marks);
    let marks = list(&marks);
    assert_eq!(marks.len(), 3, "{marks:?}");
    assert_eq!(field(&marks[0], "pattern"), Value::Nil);
    assert_eq!(text(&field(&marks[1], "pattern")), "u");
    assert_eq!(field(&marks[2], "pattern"), Value::Nil);
    for c in [&mut wide, &mut admin] {
        assert!(mentions_other(&ok(c, &["CACHE.PENDING"])));
        assert!(mentions_other(&ok(c, &["CACHE.PENDING", "LAZY"])));
    }
    ok(&mut admin, &["CACHE.DEBUG", "RECLAIM", "RESUME"]);
    verify(&mut admin);
}

#[test]
fn tags_needs_read_access_to_every_key() {
    let s = Server::start();
    let (mut admin, mut narrow, mut wide) = narrow_and_wide(&s);
    ok(
        &mut admin,
        &["ACL", "SETUSER", "reads", "on", ">pw", "%R~*", "+@all"],
    );
    let mut reads = as_user(&s, "reads");
    // `t` is on app:1 and other:1: a count of 2 would tell of an entry out of reach.
    for line in [&["CACHE.TAGS"][..], &["CACHE.TAGS", "MATCH", "t"]] {
        let e = err(&mut narrow, line);
        assert!(
            e.starts_with("NOPERM CACHE.TAGS needs read access to every key"),
            "{e}"
        );
    }
    let expected = vec![
        Value::Array(vec![Value::BulkString(b"t".to_vec()), Value::Int(2)]),
        Value::Array(vec![Value::BulkString(b"u".to_vec()), Value::Int(2)]),
    ];
    for c in [&mut admin, &mut wide, &mut reads] {
        assert_eq!(list(&ok(c, &["CACHE.TAGS"])), expected);
    }
}

#[test]
fn inspect_shows_no_dependency_named_like_a_key_out_of_reach() {
    let s = Server::start();
    let (mut admin, mut narrow, mut wide) = narrow_and_wide(&s);
    ok(
        &mut admin,
        &[
            "CACHE.SET",
            "app:9",
            "v",
            "DEPENDS",
            "3",
            "other:1",
            "app:1",
            "db:users",
        ],
    );
    let depends =
        |c: &mut Connection| strings(&field(&ok(c, &["CACHE.INSPECT", "app:9"]), "depends"));
    assert_eq!(depends(&mut narrow), vec!["app:1"]);
    for c in [&mut wide, &mut admin] {
        assert_eq!(depends(c), vec!["app:1", "db:users", "other:1"]);
    }
}

#[test]
fn recommend_does_not_tell_a_restricted_user_of_tags_on_entries_out_of_reach() {
    let s = Server::start();
    let (mut admin, mut narrow, _wide) = narrow_and_wide(&s);
    let mut pipe = redis::pipe();
    for i in 0..120 {
        pipe.cmd("CACHE.SET")
            .arg(format!("other:big:{i}"))
            .arg("v")
            .arg("TAGS")
            .arg(1)
            .arg("big")
            .ignore();
    }
    pipe.query::<()>(&mut admin).expect("fill");
    let issues = |c: &mut Connection| -> Vec<String> {
        list(&ok(c, &["CACHE.RECOMMEND"]))
            .iter()
            .map(|r| text(&field(r, "issue")))
            .collect()
    };
    assert!(issues(&mut admin).contains(&"Oversized tag".to_string()));
    assert!(!issues(&mut narrow).contains(&"Oversized tag".to_string()));
}
