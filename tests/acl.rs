//! ACL-aware reach: an invalidation (IMMEDIATE, BATCHED, CACHE.WRITE) only removes entries its
//! user may delete, skipping the others (not removed, not counted, not cascaded through, the
//! first one recorded in ACL LOG); CACHE.KEYS lists exactly what the same INVALIDATE would remove;
//! CACHE.INSPECT dependents and CACHE.HOTKEYS never show a key the user may not read.

mod common;
use common::*;

fn user(s: &Server, name: &str) -> Connection {
    let mut c = s.conn();
    let _: Value = redis::cmd("AUTH")
        .arg(name)
        .arg("pw")
        .query(&mut c)
        .expect("AUTH");
    c
}

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
    let mut alice = user(&s, "alice");
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
    let mut reader = user(&s, "reader");
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
    let mut alice = user(&s, "alice");
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
    let mut alice = user(&s, "alice");
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
    let mut reader = user(&s, "reader");
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
