//! Soft invalidation, stale-while-revalidate and single-flight leases (issue 8):
//! `CACHE.INVALIDATE STRATEGY SOFT [GRACE s]` makes entries stale (plain reads: nil; removed
//! when the grace ends; never extends a life), `CACHE.FETCH key [LEASE ms]` answers
//! `[value-or-nil, hit|miss|wait|refresh|stale]` with one lease per key, ended by CACHE.SET or
//! its expiry; refresh-ahead hands a hot entry near its end to one caller; stale marks persist
//! and replicate; replicas never hand out leases.
//!
//! No timing assertions: where something must expire, the test polls with a deadline.

mod common;
use common::*;

fn a(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// `CACHE.FETCH <args>` -> (value, state).
fn fetch(c: &mut Connection, args: &str) -> (Option<String>, String) {
    let mut parts = vec!["CACHE.FETCH"];
    parts.extend(a(args));
    let r = list(&ok(c, &parts));
    assert_eq!(r.len(), 2, "{r:?}");
    let v = bytes(&r[0]).map(|b| String::from_utf8(b).expect("utf-8"));
    let s = String::from_utf8(bytes(&r[1]).expect("state")).expect("utf-8");
    (v, s)
}

fn st(v: Option<&str>, s: &str) -> (Option<String>, String) {
    (v.map(str::to_string), s.to_string())
}

/// `CACHE.INVALIDATE <args>` -> its integer reply.
fn inv(c: &mut Connection, args: &str) -> i64 {
    let mut parts = vec!["CACHE.INVALIDATE"];
    parts.extend(a(args));
    int(&ok(c, &parts))
}

/// INSPECT's `stale_ms` (-1 here when the field is absent: the entry is fresh).
fn stale_ms(c: &mut Connection, key: &str) -> i64 {
    map(&ok(c, &["CACHE.INSPECT", key]))
        .into_iter()
        .find(|(k, _)| k == "stale_ms")
        .map_or(-1, |(_, v)| int(&v))
}

fn soft_stat(c: &mut Connection, name: &str) -> i64 {
    let s = stats(c);
    s["soft"][name]
        .as_i64()
        .unwrap_or_else(|| panic!("no soft.{name} in {s}"))
}

fn issues(c: &mut Connection) -> Vec<String> {
    list(&ok(c, &["CACHE.RECOMMEND"]))
        .iter()
        .map(|r| String::from_utf8(bytes(&field(r, "issue")).unwrap()).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The state machine
// ---------------------------------------------------------------------------------------------

#[test]
fn a_miss_grants_one_lease_others_wait_and_cache_set_ends_it() {
    let s = Server::start();
    let mut c = s.conn();
    let mut other = s.conn();
    assert_eq!(fetch(&mut c, "k"), st(None, "miss"));
    assert_eq!(fetch(&mut other, "k"), st(None, "wait"));
    assert_eq!(fetch(&mut c, "k"), st(None, "wait"), "one lease per key");
    assert_eq!(fetch(&mut c, "k2"), st(None, "miss"), "per key");
    assert_eq!(get(&mut c, "k"), None);
    ok(&mut c, &a("CACHE.SET k computed"));
    assert_eq!(fetch(&mut other, "k"), st(Some("computed"), "hit"));
    assert_eq!(fetch(&mut other, "k"), st(Some("computed"), "hit"));
    // The entry is read: FETCH hits count like CACHE.GET's.
    assert_eq!(int(&field(&ok(&mut c, &a("CACHE.INSPECT k")), "hits")), 2);
    // Deleted again: the next caller gets a new lease.
    ok(&mut c, &a("DEL k"));
    assert_eq!(fetch(&mut other, "k"), st(None, "miss"));
    assert_eq!(fetch(&mut c, "k"), st(None, "wait"));
    assert_eq!(soft_stat(&mut c, "leases_granted"), 3);
    assert_eq!(soft_stat(&mut c, "leases_completed"), 1);
    assert_eq!(soft_stat(&mut c, "leases_active"), 2);
    let f = &stats(&mut c)["soft"]["fetches"];
    assert_eq!(
        (f["hit"].as_i64(), f["miss"].as_i64(), f["wait"].as_i64()),
        (Some(2), Some(3), Some(3))
    );
    verify(&mut c);
}

#[test]
fn soft_invalidation_serves_stale_to_all_but_one_refresher() {
    let s = Server::start();
    let mut c = s.conn();
    let mut other = s.conn();
    entry(&mut c, "p:1", &["t"], &[]);
    entry(&mut c, "p:2", &["t"], &[]);
    entry(&mut c, "q", &["u"], &[]);
    assert_eq!(inv(&mut c, "STRATEGY SOFT TAG t"), 2);
    // Plain reads know nothing of leases: a stale entry is a miss.
    assert_eq!(get(&mut c, "p:1"), None);
    assert_eq!(
        list(&ok(&mut c, &a("CACHE.MGET p:1 q"))),
        vec![Value::Nil, Value::BulkString(b"v-q".to_vec())]
    );
    // Still in the keyspace (within its grace), listed by CACHE.KEYS.
    assert_eq!(int(&ok(&mut c, &a("EXISTS p:1 p:2"))), 2);
    assert_eq!(keys(&mut c, &["TAG", "t"]), vec!["p:1", "p:2"]);
    assert_eq!(fetch(&mut c, "p:1"), st(Some("v-p:1"), "refresh"));
    assert_eq!(fetch(&mut other, "p:1"), st(Some("v-p:1"), "stale"));
    assert_eq!(fetch(&mut c, "p:1"), st(Some("v-p:1"), "stale"));
    assert_eq!(fetch(&mut other, "q"), st(Some("v-q"), "hit"));
    ok(&mut c, &a("CACHE.SET p:1 new TAGS 1 t"));
    assert_eq!(fetch(&mut other, "p:1"), st(Some("new"), "hit"));
    assert_eq!(get(&mut other, "p:1"), Some("new".into()));
    assert_eq!(stale_ms(&mut c, "p:1"), -1, "a write makes it fresh");
    assert_eq!(pttl(&mut c, "p:1"), -1, "with its own TTL");
    let g = stale_ms(&mut c, "p:2");
    assert!((0..=60_000).contains(&g), "default grace 60 s: {g}");
    assert_eq!(soft_stat(&mut c, "stale_serves"), 3);
    assert_eq!(soft_stat(&mut c, "invalidations"), 1);
    assert_eq!(soft_stat(&mut c, "entries_made_stale"), 2);
    let s = stats(&mut c);
    assert_eq!(s["patterns"]["by_strategy"]["soft"], 1);
    assert_eq!(s["total_keys_invalidated"], 2);
    let ev = list(&ok(&mut c, &a("CACHE.EVENTS COUNT 1")));
    assert_eq!(bytes(&field(&ev[0], "strategy")), Some(b"soft".to_vec()));
    verify(&mut c);
}

#[test]
fn stale_entries_read_as_missing_to_writes_that_need_one() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "k", &["t"], &[]);
    ok(&mut c, &a("CACHE.SET x v EX 100 TAGS 1 t"));
    assert_eq!(inv(&mut c, "STRATEGY SOFT TAG t"), 2);
    assert_eq!(err(&mut c, &a("CACHE.TAG k t2")), "ERR no such key");
    assert_eq!(err(&mut c, &a("CACHE.DEPEND k r")), "ERR no such key");
    assert_eq!(ok(&mut c, &a("CACHE.SET k v2 XX")), Value::Nil);
    assert_eq!(ok(&mut c, &a("CACHE.SET k v2 NX")), Value::Okay);
    assert_eq!(get(&mut c, "k"), Some("v2".into()));
    // KEEPTTL finds no entry to keep a deadline from: the refreshed value has none.
    assert_eq!(ok(&mut c, &a("CACHE.SET x v2 KEEPTTL")), Value::Okay);
    assert_eq!(pttl(&mut c, "x"), -1);
    // IMMEDIATE removes stale entries like any other.
    assert_eq!(inv(&mut c, "STRATEGY SOFT KEY k"), 1);
    assert_eq!(inv(&mut c, "KEY k x"), 2);
    assert_eq!(int(&ok(&mut c, &a("EXISTS k x"))), 0);
    verify(&mut c);
}

#[test]
fn soft_never_extends_an_entrys_life() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &a("CACHE.SET short v EX 5 TAGS 1 t"));
    ok(&mut c, &a("CACHE.SET long v TAGS 1 t"));
    assert_eq!(inv(&mut c, "STRATEGY SOFT GRACE 1000 TAG t"), 2);
    assert!(pttl(&mut c, "short") <= 5000, "the earlier TTL stays");
    let first = int(&ok(&mut c, &a("PEXPIRETIME long")));
    assert!(pttl(&mut c, "long") <= 1_000_000);
    assert!(
        stale_ms(&mut c, "short") > 5000,
        "stale mark at now + grace"
    );
    // A second SOFT with a longer grace keeps both deadlines.
    assert_eq!(inv(&mut c, "STRATEGY SOFT GRACE 5000 TAG t"), 2);
    assert_eq!(int(&ok(&mut c, &a("PEXPIRETIME long"))), first);
    assert!(stale_ms(&mut c, "long") <= 1_000_000);
    // A shorter one brings them forward.
    assert_eq!(inv(&mut c, "GRACE 100 STRATEGY SOFT KEY long"), 1);
    assert!(int(&ok(&mut c, &a("PEXPIRETIME long"))) < first - 800_000);
    assert!(stale_ms(&mut c, "long") <= 100_000);
    assert!(pttl(&mut c, "long") <= 100_000);
    verify(&mut c);
}

#[test]
fn stale_entries_are_removed_when_the_grace_ends() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "k", &["t"], &[]);
    assert_eq!(inv(&mut c, "STRATEGY SOFT GRACE 1 TAG t"), 1);
    assert_eq!(fetch(&mut c, "k LEASE 600000"), st(Some("v-k"), "refresh"));
    eventually("the stale entry expires", || {
        int(&ok(&mut c, &a("EXISTS k"))) == 0
    });
    // Its lease is still held by the refresher: others wait, not stampede.
    assert_eq!(fetch(&mut c, "k"), st(None, "wait"));
    let s = stats(&mut c);
    assert_eq!(s["removals"]["expired"], 1);
    verify(&mut c);
}

#[test]
fn a_lease_expires_so_a_crashed_caller_blocks_nobody() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(fetch(&mut c, "k LEASE 50"), st(None, "miss"));
    // Waiters wait until the lease expires, then one of them gets it.
    eventually("the lease expires", || {
        fetch(&mut c, "k") == st(None, "miss")
    });
    assert_eq!(fetch(&mut c, "k"), st(None, "wait"));
    assert_eq!(soft_stat(&mut c, "leases_expired"), 1);
    // The default lease (cache.lease-ms) for a stale entry.
    config_set(&mut c, "cache.lease-ms", "60");
    entry(&mut c, "s", &[], &[]);
    assert_eq!(inv(&mut c, "STRATEGY SOFT KEY s"), 1);
    assert_eq!(fetch(&mut c, "s"), st(Some("v-s"), "refresh"));
    assert_eq!(fetch(&mut c, "s"), st(Some("v-s"), "stale"));
    eventually("the stale lease expires", || {
        fetch(&mut c, "s") == st(Some("v-s"), "refresh")
    });
    assert_eq!(soft_stat(&mut c, "leases_expired"), 2);
    verify(&mut c);
}

#[test]
fn soft_cascades_like_immediate_and_skips_what_the_user_may_not_delete() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "pub:a", &[], &[]);
    entry(&mut c, "pub:b", &[], &["pub:a"]);
    entry(&mut c, "pub:c", &[], &["pub:b"]);
    entry(&mut c, "sec:d", &[], &["pub:a"]);
    entry(&mut c, "pub:e", &[], &["sec:d"]);
    assert_eq!(inv(&mut c, "STRATEGY SOFT DEPTH 1 KEY pub:a"), 3);
    assert_eq!(stale_ms(&mut c, "pub:c"), -1, "beyond DEPTH 1");
    ok(&mut c, &a("ACL SETUSER alice on >pw ~pub:* +@all"));
    let mut alice = s.conn();
    ok(&mut alice, &a("AUTH alice pw"));
    ok(&mut c, &a("CACHE.SET pub:a v"));
    ok(&mut c, &a("CACHE.SET sec:d v DEPENDS 1 pub:a"));
    ok(&mut c, &a("CACHE.SET pub:b v DEPENDS 1 pub:a"));
    // sec:d is skipped, and the cascade does not pass through it to pub:e.
    assert_eq!(inv(&mut alice, "STRATEGY SOFT KEY pub:a"), 3);
    assert_eq!(stale_ms(&mut c, "sec:d"), -1);
    assert_eq!(stale_ms(&mut c, "pub:e"), -1);
    assert!(stale_ms(&mut c, "pub:c") >= 0);
    verify(&mut c);
}

#[test]
fn refresh_ahead_hands_a_hot_entry_near_its_end_to_one_caller() {
    let s = Server::start();
    let mut c = s.conn();
    let mut other = s.conn();
    ok(&mut c, &a("CACHE.SET k v PX 20000"));
    // Off by default: a hot entry near its end is a plain hit.
    for _ in 0..12 {
        assert_eq!(fetch(&mut c, "k"), st(Some("v"), "hit"));
    }
    config_set(&mut c, "cache.refresh-ahead-percent", "99");
    config_set(&mut c, "cache.hot-threshold", "1000");
    // Less than 99 % of the TTL left (19 800 ms) once PTTL is below 19 700.
    eventually("1 % of the TTL passes", || pttl(&mut c, "k") < 19_700);
    assert_eq!(fetch(&mut c, "k"), st(Some("v"), "hit"), "not hot yet");
    config_set(&mut c, "cache.hot-threshold", "10");
    assert_eq!(fetch(&mut c, "k"), st(Some("v"), "refresh"));
    assert_eq!(
        fetch(&mut other, "k"),
        st(Some("v"), "hit"),
        "one refresher"
    );
    assert_eq!(soft_stat(&mut c, "refresh_ahead"), 1);
    assert_eq!(get(&mut other, "k"), Some("v".into()), "still fresh");
    ok(&mut c, &a("CACHE.SET k v2 PX 20000"));
    // A new entry starts with no reads and a full TTL.
    assert_eq!(fetch(&mut other, "k"), st(Some("v2"), "hit"));
    assert_eq!(soft_stat(&mut c, "leases_completed"), 1);
    // Entries without a TTL are never due.
    ok(&mut c, &a("CACHE.SET forever v"));
    config_set(&mut c, "cache.hot-threshold", "0");
    assert_eq!(fetch(&mut c, "forever"), st(Some("v"), "hit"));
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Bad input, other databases
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "k", &["t"], &[]);
    ok(&mut c, &a("SET plain x"));
    let before = digest(&mut c);
    for (cmd, e) in [
        (
            "CACHE.FETCH",
            "ERR wrong number of arguments for 'cache.fetch' command",
        ),
        ("CACHE.FETCH k LEASE 1 x", "ERR syntax error"),
        ("CACHE.FETCH k WITHTOKEN WITHTOKEN", "ERR syntax error"),
        ("CACHE.FETCH k LEASE", "ERR syntax error"),
        ("CACHE.FETCH k TTL 5", "ERR syntax error"),
        (
            "CACHE.FETCH k LEASE 0",
            "ERR value is out of range, must be positive",
        ),
        (
            "CACHE.FETCH k LEASE -5",
            "ERR value is out of range, must be positive",
        ),
        (
            "CACHE.FETCH k LEASE x",
            "ERR value is not an integer or out of range",
        ),
        (
            "CACHE.FETCH plain",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        ("CACHE.INVALIDATE GRACE 5 TAG t", "ERR syntax error"),
        (
            "CACHE.INVALIDATE STRATEGY LAZY GRACE 5 TAG t",
            "ERR syntax error",
        ),
        (
            "CACHE.INVALIDATE STRATEGY SOFT GRACE 0 TAG t",
            "ERR value is out of range, must be positive",
        ),
        (
            "CACHE.INVALIDATE STRATEGY SOFT GRACE 1.5 TAG t",
            "ERR value is not an integer or out of range",
        ),
        (
            "CACHE.INVALIDATE STRATEGY SOFT GRACE 1 GRACE 1 TAG t",
            "ERR syntax error",
        ),
        ("CACHE.INVALIDATE STRATEGY SOFT TAG", "ERR syntax error"),
        (
            "CACHE.PENDING STALE 99999999999999 k",
            "ERR CACHE.PENDING STALE is internal: only the master and the AOF send it",
        ),
        ("CONFIG SET cache.refresh-ahead-percent 101", ""),
        ("CONFIG SET cache.lease-ms 0", ""),
        ("CONFIG SET cache.soft-grace-seconds 0", ""),
    ] {
        let got = err(&mut c, &a(cmd));
        if !e.is_empty() {
            assert_eq!(got, e, "{cmd}");
        }
    }
    assert_eq!(digest(&mut c), before);
    assert_eq!(stale_ms(&mut c, "k"), -1);
    assert_eq!(soft_stat(&mut c, "leases_granted"), 0);
    assert_eq!(soft_stat(&mut c, "invalidations"), 0);
    for (name, value) in [
        ("cache.soft-grace-seconds", "60"),
        ("cache.lease-ms", "5000"),
        ("cache.refresh-ahead-percent", "0"),
        ("cache.hot-threshold", "10"),
    ] {
        assert_eq!(strings(&ok(&mut c, &["CONFIG", "GET", name]))[1], value);
    }
    verify(&mut c);
}

#[test]
fn leases_are_per_database_and_go_with_flush_and_swapdb() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(fetch(&mut c, "k"), st(None, "miss"));
    select(&mut c, 1);
    assert_eq!(fetch(&mut c, "k"), st(None, "miss"));
    ok(&mut c, &a("FLUSHDB"));
    assert_eq!(fetch(&mut c, "k"), st(None, "miss"), "db 1 flushed");
    select(&mut c, 0);
    assert_eq!(fetch(&mut c, "k"), st(None, "wait"), "db 0 kept its lease");
    ok(&mut c, &a("SWAPDB 0 1"));
    assert_eq!(fetch(&mut c, "k"), st(None, "miss"));
    ok(&mut c, &a("FLUSHALL"));
    assert_eq!(fetch(&mut c, "k"), st(None, "miss"));
    // Stale marks live in the entry: it keeps them when it moves.
    entry(&mut c, "m", &[], &[]);
    assert_eq!(inv(&mut c, "STRATEGY SOFT KEY m"), 1);
    ok(&mut c, &a("MOVE m 2"));
    select(&mut c, 2);
    assert_eq!(get(&mut c, "m"), None);
    assert_eq!(fetch(&mut c, "m"), st(Some("v-m"), "refresh"));
    assert!(pttl(&mut c, "m") > 0);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Persistence and replication
// ---------------------------------------------------------------------------------------------

#[test]
fn stale_marks_survive_reload_and_leases_do_not() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "k", &["t"], &[]);
    entry(&mut c, "f", &["u"], &[]);
    assert_eq!(inv(&mut c, "STRATEGY SOFT GRACE 500 TAG t"), 1);
    let at = int(&ok(&mut c, &a("PEXPIRETIME k")));
    let mark = stale_ms(&mut c, "k");
    assert_eq!(fetch(&mut c, "k"), st(Some("v-k"), "refresh"));
    assert_eq!(fetch(&mut c, "gone"), st(None, "miss"));
    let before = digest(&mut c);
    ok(&mut c, &a("DEBUG RELOAD"));
    assert_eq!(digest(&mut c), before);
    assert_eq!(int(&ok(&mut c, &a("PEXPIRETIME k"))), at);
    let after = stale_ms(&mut c, "k");
    assert!(after <= mark && after >= 0, "{after} vs {mark}");
    assert_eq!(get(&mut c, "k"), None);
    // Leases are node-local and not persisted: reloading dropped them.
    assert_eq!(fetch(&mut c, "k"), st(Some("v-k"), "refresh"));
    assert_eq!(fetch(&mut c, "gone"), st(None, "miss"));
    assert_eq!(fetch(&mut c, "f"), st(Some("v-f"), "hit"));
    verify(&mut c);
}

fn wait_rewrite(c: &mut Connection) {
    eventually("the AOF rewrite", || {
        let p = info(c, "persistence");
        p.contains("aof_rewrite_in_progress:0") && p.contains("aof_rewrite_scheduled:0")
    });
}

/// A restart from the AOF (commands only, no RDB preamble) keeps the stale marks: once as the
/// replicated `CACHE.PENDING STALE`, once as what an AOF rewrite emits.
#[test]
fn stale_marks_survive_a_restart_from_the_aof() {
    let mut s = Server::with(
        &[],
        &["--appendonly", "yes", "--aof-use-rdb-preamble", "no"],
    );
    let (at1, at2) = {
        let mut c = s.conn();
        wait_rewrite(&mut c);
        entry(&mut c, "k1", &["t"], &[]);
        entry(&mut c, "k2", &["t2"], &[]);
        entry(&mut c, "fresh", &["u"], &[]);
        assert_eq!(inv(&mut c, "STRATEGY SOFT GRACE 500 TAG t"), 1);
        ok(&mut c, &a("BGREWRITEAOF"));
        wait_rewrite(&mut c);
        assert_eq!(inv(&mut c, "STRATEGY SOFT GRACE 600 TAG t2"), 1);
        (
            int(&ok(&mut c, &a("PEXPIRETIME k1"))),
            int(&ok(&mut c, &a("PEXPIRETIME k2"))),
        )
    };
    s.restart("NOSAVE");
    let mut c = s.conn();
    assert_eq!(int(&ok(&mut c, &a("DBSIZE"))), 3, "the AOF was not loaded");
    assert_eq!(int(&ok(&mut c, &a("PEXPIRETIME k1"))), at1);
    assert_eq!(int(&ok(&mut c, &a("PEXPIRETIME k2"))), at2);
    for k in ["k1", "k2"] {
        assert_eq!(get(&mut c, k), None, "{k}");
        let left = stale_ms(&mut c, k);
        assert!((0..=600_000).contains(&left), "{k}: {left}");
    }
    assert_eq!(stale_ms(&mut c, "fresh"), -1);
    assert_eq!(fetch(&mut c, "k1"), st(Some("v-k1"), "refresh"));
    verify(&mut c);
}

#[test]
fn stale_marks_replicate_and_replicas_hand_out_no_leases() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    entry(&mut mc, "k", &["t"], &[]);
    entry(&mut mc, "d", &[], &["k"]);
    entry(&mut mc, "f", &["u"], &[]);
    assert_eq!(inv(&mut mc, "STRATEGY SOFT GRACE 300 TAG t"), 2);
    // The digest covers stale marks and their deadlines.
    sync(&mut mc, &mut rc);
    for k in ["k", "d"] {
        assert_eq!(
            int(&ok(&mut rc, &["PEXPIRETIME", k])),
            int(&ok(&mut mc, &["PEXPIRETIME", k])),
            "{k}"
        );
        assert!(stale_ms(&mut rc, k) >= 0, "{k} stale on the replica");
    }
    assert_eq!(get(&mut rc, "k"), None);
    // On the replica: stale or miss only, however often.
    for _ in 0..3 {
        assert_eq!(fetch(&mut rc, "k"), st(Some("v-k"), "stale"));
        assert_eq!(fetch(&mut rc, "nothing"), st(None, "miss"));
        assert_eq!(fetch(&mut rc, "f"), st(Some("v-f"), "hit"));
    }
    assert_eq!(soft_stat(&mut rc, "leases_granted"), 0);
    // The master hands out the lease; the refreshed value replicates fresh.
    assert_eq!(fetch(&mut mc, "k"), st(Some("v-k"), "refresh"));
    ok(&mut mc, &a("CACHE.SET k new TAGS 1 t"));
    sync(&mut mc, &mut rc);
    assert_eq!(fetch(&mut rc, "k"), st(Some("new"), "hit"));
    assert_eq!(stale_ms(&mut rc, "k"), -1);
    // A second SOFT with a longer grace changes nothing on either side.
    let at = int(&ok(&mut mc, &["PEXPIRETIME", "d"]));
    assert_eq!(inv(&mut mc, "STRATEGY SOFT GRACE 900 KEY d"), 1);
    sync(&mut mc, &mut rc);
    assert_eq!(int(&ok(&mut rc, &["PEXPIRETIME", "d"])), at);
    // CACHE.FETCH never propagates, even when it grants.
    let offset = repl_offset(&mut mc);
    fetch(&mut mc, "other");
    fetch(&mut mc, "d");
    assert_eq!(repl_offset(&mut mc), offset);
    verify(&mut mc);
    verify(&mut rc);
}

// ---------------------------------------------------------------------------------------------
// Metrics and advice
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_and_advice_on_stale_serves_and_expiring_leases() {
    let s = Server::start();
    let mut c = s.conn();
    let m = stats(&mut c)["soft"].clone();
    for f in [
        "invalidations",
        "entries_made_stale",
        "stale_serves",
        "leases_granted",
        "leases_completed",
        "leases_expired",
        "leases_active",
        "refresh_ahead",
    ] {
        assert_eq!(m[f], 0, "{f} in {m}");
    }
    // The RESP form has the section too, before the guard's.
    let resp = map(&ok(&mut c, &["CACHE.STATS"]));
    let names: Vec<&str> = resp.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["soft", "guard"]);
    assert!(!issues(&mut c)
        .iter()
        .any(|i| i.contains("Stale") || i.contains("Leases")));
    entry(&mut c, "k", &[], &[]);
    assert_eq!(inv(&mut c, "STRATEGY SOFT KEY k"), 1);
    assert_eq!(fetch(&mut c, "k LEASE 600000"), st(Some("v-k"), "refresh"));
    for _ in 0..120 {
        fetch(&mut c, "k");
    }
    assert_eq!(soft_stat(&mut c, "stale_serves"), 121);
    assert!(issues(&mut c).contains(&"Stale serves dominate".to_string()));
    for i in 0..20 {
        assert_eq!(fetch(&mut c, &format!("x{i} LEASE 1")).1, "miss");
    }
    for i in 0..20 {
        // Once expired, the next caller gets a new (long) lease.
        eventually("the lease expires", || {
            fetch(&mut c, &format!("x{i} LEASE 600000")).1 == "miss"
        });
    }
    assert_eq!(soft_stat(&mut c, "leases_expired"), 20);
    assert!(issues(&mut c).contains(&"Leases often expire".to_string()));
    ok(&mut c, &["CACHE.RESET"]);
    assert_eq!(soft_stat(&mut c, "stale_serves"), 0);
    assert_eq!(
        soft_stat(&mut c, "leases_active"),
        21,
        "RESET keeps the leases"
    );
    verify(&mut c);
}

/// Issue 21, defect 3: a deadline already past removes the entry whatever state it is in —
/// stale (SOFT) or covered by a LAZY mark, as well as fresh — and the removal is a `DEL` in the
/// AOF: after a restart the entry does not come back.
#[test]
fn a_past_deadline_removes_a_stale_or_covered_entry_and_the_aof_keeps_it_removed() {
    let mut s = Server::with(&[], &["--appendonly", "yes"]);
    {
        let mut c = s.conn();
        wait_rewrite(&mut c);
        // The reclaimer must not remove the covered entry itself.
        ok(&mut c, &a("CACHE.DEBUG RECLAIM PAUSE"));
        // Stale.
        ok(&mut c, &a("CACHE.SET p v TAGS 1 t"));
        assert_eq!(inv(&mut c, "STRATEGY SOFT GRACE 1000 TAG t"), 1);
        assert_eq!(ok(&mut c, &a("CACHE.SET p new PXAT 1000")), Value::Okay);
        assert_eq!(exists(&mut c, "p"), 0, "the stale entry is removed");
        assert_eq!(fetch(&mut c, "p"), st(None, "miss"));
        // Covered by LAZY, with a dependent that stays covered.
        ok(&mut c, &a("CACHE.SET q v TAGS 1 u"));
        ok(&mut c, &a("CACHE.SET qdep v DEPENDS 1 q"));
        assert_eq!(inv(&mut c, "STRATEGY LAZY TAG u"), 2, "q and qdep");
        assert_eq!(ok(&mut c, &a("CACHE.SET q new EXAT 1")), Value::Okay);
        assert_eq!(exists(&mut c, "q"), 0, "the covered entry is removed");
        assert_eq!(get(&mut c, "qdep"), None);
        // The server's own paths with a past deadline (PEXPIREAT, RESTORE ... ABSTTL) remove a
        // stale and a covered entry as well.
        ok(&mut c, &a("CACHE.SET s v TAGS 1 t2"));
        ok(&mut c, &a("CACHE.SET x v TAGS 1 u2"));
        let dump = ok(&mut c, &a("DUMP x"));
        assert_eq!(inv(&mut c, "STRATEGY SOFT TAG t2"), 1);
        assert_eq!(inv(&mut c, "STRATEGY LAZY TAG u2"), 1);
        assert_eq!(int(&ok(&mut c, &a("PEXPIREAT s 1000"))), 1);
        let dump = bytes(&dump).expect("DUMP");
        let restore: Value = redis::cmd("RESTORE")
            .arg("x")
            .arg(1000)
            .arg(dump)
            .arg("REPLACE")
            .arg("ABSTTL")
            .query(&mut c)
            .expect("RESTORE");
        assert_eq!(restore, Value::Okay);
        assert_eq!(exists(&mut c, "s") + exists(&mut c, "x"), 0);
        // Fresh (the control).
        ok(&mut c, &a("CACHE.SET r v"));
        assert_eq!(ok(&mut c, &a("CACHE.SET r new PXAT 1000")), Value::Okay);
        assert_eq!(exists(&mut c, "r"), 0);
        verify(&mut c);
    }
    s.restart("NOSAVE");
    let mut c = s.conn();
    for k in ["p", "q", "r", "s", "x"] {
        assert_eq!(exists(&mut c, k), 0, "{k} came back from the AOF");
    }
    assert_eq!(fetch(&mut c, "p"), st(None, "miss"));
    assert_eq!(get(&mut c, "qdep"), None);
    verify(&mut c);
}
