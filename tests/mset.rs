//! CACHE.MSET (issue 26): shared and own options, all or nothing, keys for cluster and ACL,
//! replication as one transaction.

mod common;

use common::*;
use redis::Connection;

fn inspect(c: &mut Connection, key: &str) -> Vec<(String, redis::Value)> {
    map(&ok(c, &["CACHE.INSPECT", key]))
}

fn names(c: &mut Connection, key: &str, what: &str) -> Vec<String> {
    let v = inspect(c, key);
    let (_, list) = v.iter().find(|(k, _)| k == what).expect(what);
    strings(list)
}

#[test]
fn shared_options_apply_to_every_entry_and_an_entrys_own_replace_them() {
    let s = Server::start();
    let mut c = s.conn();
    ok(
        &mut c,
        &[
            "CACHE.MSET",
            "EX",
            "100",
            "TAGS",
            "2",
            "a",
            "b",
            "META",
            r#"{"s":1}"#,
            "ENTRY",
            "k1",
            "v1",
            "ENTRY",
            "k2",
            "v2",
            "TAGS",
            "1",
            "c",
            "DEPENDS",
            "1",
            "k1",
            "ENTRY",
            "k3",
            "v3",
            "PX",
            "500000",
            "META",
            r#"{"own":2}"#,
        ],
    );
    assert_eq!(get(&mut c, "k1").as_deref(), Some("v1"));
    assert_eq!(names(&mut c, "k1", "tags"), sv(&["a", "b"]));
    assert_eq!(names(&mut c, "k2", "tags"), sv(&["c"]));
    assert_eq!(names(&mut c, "k2", "depends"), sv(&["k1"]));
    assert_eq!(names(&mut c, "k3", "tags"), sv(&["a", "b"]));
    let meta = |c: &mut Connection, k: &str| text(&field(&ok(c, &["CACHE.INSPECT", k]), "meta"));
    assert_eq!(meta(&mut c, "k2"), r#"{"s":1}"#);
    assert_eq!(meta(&mut c, "k3"), r#"{"own":2}"#);
    assert!((90_000..=100_000).contains(&pttl(&mut c, "k1")));
    assert!(pttl(&mut c, "k3") > 400_000);
    // The entries are indexed as CACHE.SET indexes them: a cascade from k1 reaches k2.
    assert_eq!(keys(&mut c, &["DEPTH", "0", "TAG", "a"]), sv(&["k1", "k3"]));
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "KEY", "k1"])), 2);
    assert_eq!(get(&mut c, "k2"), None);
    // A later entry of the same key wins; a deadline in the past removes the key.
    ok(
        &mut c,
        &[
            "CACHE.MSET",
            "ENTRY",
            "d",
            "1",
            "ENTRY",
            "d",
            "2",
            "ENTRY",
            "k3",
            "x",
            "PXAT",
            "1",
        ],
    );
    assert_eq!(get(&mut c, "d").as_deref(), Some("2"));
    assert_eq!(exists(&mut c, "k3"), 0);
    verify(&mut c);
}

#[test]
fn a_bad_entry_anywhere_stores_nothing() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["SET", "plain", "x"]);
    entry(&mut c, "old", &["t"], &[]);
    let before = digest(&mut c);
    let many_tags: Vec<String> = (0..1100).map(|i| format!("t{i}")).collect();
    let mut over = vec![
        "CACHE.MSET",
        "ENTRY",
        "new1",
        "v",
        "ENTRY",
        "new2",
        "v",
        "TAGS",
        "1100",
    ];
    over.extend(many_tags.iter().map(String::as_str));
    // Past what one command may carry (the 50 ms bound): entries, and names over all entries.
    let mut big: Vec<String> = vec!["CACHE.MSET".into()];
    for i in 0..10_001 {
        big.extend(["ENTRY".into(), format!("b{i}"), "v".into()]);
    }
    let mut wide: Vec<String> = vec!["CACHE.MSET".into()];
    for i in 0..50_001 / 1000 + 1 {
        let names = if i == 50 { 1 } else { 1000 };
        wide.extend([
            "ENTRY".into(),
            format!("w{i}"),
            "v".into(),
            "DEPENDS".into(),
        ]);
        wide.push(names.to_string());
        wide.extend((0..names).map(|j| format!("r{j}")));
    }
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["CACHE.MSET", "ENTRY", "new1", "v", "ENTRY", "plain", "y"],
            "WRONGTYPE",
        ),
        (
            vec![
                "CACHE.MSET",
                "ENTRY",
                "old",
                "v",
                "ENTRY",
                "new2",
                "v",
                "NX",
            ],
            "ERR syntax error",
        ),
        (
            vec!["CACHE.MSET", "ENTRY", "old", "v", "KEEPTTL"],
            "ERR syntax error",
        ),
        (
            vec!["CACHE.MSET", "ENTRY", "old", "v", "GUARD", "1"],
            "ERR syntax error",
        ),
        (
            vec!["CACHE.MSET", "ENTRY", "old", "v", "TAGS", "2", "a"],
            "ERR syntax error",
        ),
        (
            vec!["CACHE.MSET", "ENTRY", "old", "v", "EX", "1", "PX", "1"],
            "ERR syntax error",
        ),
        (
            vec!["CACHE.MSET", "ENTRY", "old", "v", "ENTRY", "new1"],
            "ERR syntax error",
        ),
        (
            vec!["CACHE.MSET", "ENTRY", "old", "v", "META", "[1]"],
            "ERR META must be a JSON object",
        ),
        (
            vec!["CACHE.MSET", "EX", "0", "ENTRY", "old", "v"],
            "ERR invalid expire time in 'cache.mset' command",
        ),
        (
            vec!["CACHE.MSET"],
            "ERR wrong number of arguments for 'cache.mset' command",
        ),
        (
            vec!["CACHE.MSET", "TAGS", "1", "a"],
            "ERR wrong number of arguments for 'cache.mset' command",
        ),
        (over, "ERR too many tags for one entry"),
        (big.iter().map(String::as_str).collect(), "ERR CACHE.MSET too large: 10001 entries, the limit is 10000; send several"),
        (wide.iter().map(String::as_str).collect(), "ERR CACHE.MSET too large: 50001 tag and resource names, the limit is 50000; send several"),
    ];
    for (args, want) in cases {
        let e = err(&mut c, &args);
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert_eq!(digest(&mut c), before, "{args:?} changed the dataset");
    }
    assert_eq!(get(&mut c, "old").as_deref(), Some("v-old"));
    verify(&mut c);
}

#[test]
fn keys_are_found_by_parsing_for_getkeys_and_acl() {
    let s = Server::start();
    let mut c = s.conn();
    let got = strings(&ok(
        &mut c,
        &[
            "COMMAND",
            "GETKEYS",
            "CACHE.MSET",
            "TAGS",
            "1",
            "ENTRY",
            "ENTRY",
            "a",
            "1",
            "META",
            "{}",
            "ENTRY",
            "b",
            "2",
            "DEPENDS",
            "2",
            "x",
            "y",
        ],
    ));
    assert_eq!(got, sv(&["a", "b"]));
    ok(
        &mut c,
        &["ACL", "SETUSER", "app", "on", "nopass", "~app:*", "+@all"],
    );
    let mut u = s.conn();
    ok(&mut u, &["AUTH", "app", "x"]);
    let e = err(
        &mut u,
        &["CACHE.MSET", "ENTRY", "app:1", "v", "ENTRY", "other", "v"],
    );
    assert!(e.starts_with("NOPERM"), "{e}");
    assert_eq!(exists(&mut c, "app:1"), 0, "nothing stored");
    ok(
        &mut u,
        &[
            "CACHE.MSET",
            "TAGS",
            "1",
            "t",
            "ENTRY",
            "app:1",
            "v",
            "ENTRY",
            "app:2",
            "w",
        ],
    );
    assert_eq!(keys(&mut c, &["TAG", "t"]), sv(&["app:1", "app:2"]));
    verify(&mut c);
}

#[test]
fn a_replica_gets_the_batch_with_the_same_deadlines() {
    let m = master();
    let r = replica_of(&m);
    let (mut mc, mut rc) = (m.conn(), r.conn());
    wait_link(&mut rc);
    ok(
        &mut mc,
        &[
            "CACHE.MSET",
            "EX",
            "1000",
            "TAGS",
            "1",
            "t",
            "ENTRY",
            "a",
            "1",
            "ENTRY",
            "b",
            "2",
            "DEPENDS",
            "1",
            "a",
            "ENTRY",
            "c",
            "3",
            "PX",
            "1",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    sync(&mut mc, &mut rc);
    for k in ["a", "b"] {
        let at = |c: &mut Connection| int(&ok(c, &["PEXPIRETIME", k]));
        assert_eq!(at(&mut mc), at(&mut rc), "{k}'s deadline");
    }
    assert_eq!(keys(&mut rc, &["TAG", "t"]), sv(&["a", "b"]));
    assert_eq!(keys(&mut rc, &["DEPENDENTS", "a"]), sv(&["b"]));
    verify(&mut mc);
    verify(&mut rc);
}
