//! Redis Cluster: a real cluster of three masters and one replica (of the first master), each a
//! server with the module, formed with `redis-cli --cluster`. Keyed commands route like any
//! keyed command (cluster clients, `redis-cli -c`, `MOVED`, `CROSSSLOT`); invalidations, the
//! dry run, tag lists, statistics, rules and relations apply to every master (`LOCAL` keeps them
//! on one node), with the cascade crossing shards; resharding moves entries with their index; a
//! master that does not answer makes a cluster-wide command fail after
//! `cache.cluster-timeout-ms`, naming how many masters answered.
//!
//! Every test ends with `CACHE.DEBUG VERIFY` empty on every running node, replica included.

mod common;
use common::cluster::*;
use common::*;

use redis::cluster::ClusterConnection;
use redis::ConnectionLike;
use std::time::{Duration, Instant};

/// CACHE.SET key v-<key> [TAGS ...] [DEPENDS ...] through any connection.
fn put<C: redis::ConnectionLike>(c: &mut C, key: &str, tags: &[&str], deps: &[&str]) {
    let value = format!("v-{key}");
    let mut p: Vec<&str> = vec!["CACHE.SET", key, &value];
    let (nt, nd) = (tags.len().to_string(), deps.len().to_string());
    if !tags.is_empty() {
        p.extend(["TAGS", &nt]);
        p.extend_from_slice(tags);
    }
    if !deps.is_empty() {
        p.extend(["DEPENDS", &nd]);
        p.extend_from_slice(deps);
    }
    assert_eq!(must(c, &p), Value::Okay, "{p:?}");
}

fn exists<C: redis::ConnectionLike>(c: &mut C, key: &str) -> bool {
    int(&must(c, &["EXISTS", key])) == 1
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `CACHE.KEYS <selector...>` as strings (the harness's, with the command in a failure).
fn keys(c: &mut Connection, selector: &[&str]) -> Vec<String> {
    let mut parts = vec!["CACHE.KEYS"];
    parts.extend_from_slice(selector);
    strings(&must(c, &parts))
}

/// `CACHE.TAGS ...` as (tag, entries) pairs.
fn tag_counts(c: &mut Connection, args: &[&str]) -> Vec<(String, i64)> {
    let mut p = vec!["CACHE.TAGS"];
    p.extend_from_slice(args);
    list(&must(c, &p))
        .iter()
        .map(|pair| {
            let pair = list(pair);
            (text(&pair[0]), int(&pair[1]))
        })
        .collect()
}

/// The fields of `CACHE.STATS ...` (a map).
fn stats(c: &mut Connection, args: &[&str]) -> Value {
    let mut p = vec!["CACHE.STATS"];
    p.extend_from_slice(args);
    must(c, &p)
}

fn has_field(v: &Value, name: &str) -> bool {
    map(v).iter().any(|(k, _)| k == name)
}

/// A rule or relation listing without the per-node counters.
fn definitions(c: &mut Connection, parts: &[&str]) -> Vec<Vec<(String, Value)>> {
    list(&must(c, parts))
        .iter()
        .map(|r| {
            map(r)
                .into_iter()
                .filter(|(k, _)| {
                    !["executions", "entries_invalidated", "last_run_ms"].contains(&k.as_str())
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Keyed commands route like keyed commands.
// ---------------------------------------------------------------------------------------------

#[test]
fn keyed_commands_route_through_cluster_clients() {
    let cl = Cluster::start();
    let mut cc = cl.client();

    // redis-rs ClusterClient: one slot via a hash tag.
    assert_eq!(
        must(
            &mut cc,
            &[
                "CACHE.SET",
                "{u}:1",
                "ada",
                "TAGS",
                "1",
                "users",
                "DEPENDS",
                "1",
                "db:users:1",
                "META",
                "{\"n\":1}",
            ]
        ),
        Value::Okay
    );
    put(&mut cc, "{u}:2", &["users"], &["{u}:1"]);
    assert_eq!(
        bytes(&must(&mut cc, &["CACHE.GET", "{u}:1"])),
        Some(b"ada".to_vec())
    );
    let ins = must(&mut cc, &["CACHE.INSPECT", "{u}:1"]);
    assert_eq!(strings(&field(&ins, "tags")), owned(&["users"]));
    assert_eq!(strings(&field(&ins, "depends")), owned(&["db:users:1"]));
    assert_eq!(strings(&field(&ins, "dependents")), owned(&["{u}:2"]));
    let meta: serde_json::Value = serde_json::from_str(&text(&field(&ins, "meta"))).unwrap();
    assert_eq!(meta, serde_json::json!({"n": 1}));
    let got = list(&must(&mut cc, &["CACHE.MGET", "{u}:1", "{u}:2", "{u}:3"]));
    assert_eq!(
        got.iter().map(bytes).collect::<Vec<_>>(),
        vec![Some(b"ada".to_vec()), Some(b"v-{u}:2".to_vec()), None]
    );
    let fetched = list(&must(&mut cc, &["CACHE.FETCH", "{u}:1"]));
    assert_eq!(text(&fetched[1]), "hit");
    assert_eq!(int(&must(&mut cc, &["CACHE.TAG", "{u}:1", "admins"])), 1);
    assert_eq!(
        int(&must(&mut cc, &["CACHE.DEPEND", "{u}:1", "db:orgs:7"])),
        1
    );
    let owner = cl.owner("{u}:1");
    let mut oc = cl.conn(owner);
    let ins = must(&mut oc, &["CACHE.INSPECT", "{u}:1"]);
    assert_eq!(strings(&field(&ins, "tags")), owned(&["admins", "users"]));

    // An entry on every master through the client: each lands on its slot's owner.
    for m in MASTERS {
        let k = cl.key_on(m, "route:");
        put(&mut cc, &k, &["r"], &[]);
        assert_eq!(
            bytes(&must(&mut cc, &["CACHE.GET", &k])),
            Some(format!("v-{k}").into_bytes())
        );
        let mut c = cl.conn(m);
        assert!(exists(&mut c, &k), "{k} on master {m}");
        let ins = must(&mut c, &["CACHE.INSPECT", &k]);
        assert_eq!(strings(&field(&ins, "tags")), owned(&["r"]));
    }

    // COMMAND GETKEYS: the key only, never tags or resources.
    let mut c0 = cl.conn(0);
    for (cmdline, want) in [
        (
            vec!["CACHE.SET", "k", "v", "TAGS", "1", "t", "DEPENDS", "1", "r"],
            vec!["k"],
        ),
        (
            vec!["CACHE.SET", "k", "v", "EX", "10", "META", "{}"],
            vec!["k"],
        ),
        (vec!["CACHE.GET", "k"], vec!["k"]),
        (vec!["CACHE.FETCH", "k", "LEASE", "100"], vec!["k"]),
        (vec!["CACHE.MGET", "a", "b", "c"], vec!["a", "b", "c"]),
        (vec!["CACHE.TAG", "k", "t1", "t2"], vec!["k"]),
        (vec!["CACHE.DEPEND", "k", "r1", "r2"], vec!["k"]),
        (vec!["CACHE.INSPECT", "k"], vec!["k"]),
    ] {
        let mut p = vec!["COMMAND", "GETKEYS"];
        p.extend_from_slice(&cmdline);
        assert_eq!(strings(&must(&mut c0, &p)), owned(&want), "{cmdline:?}");
    }
    // Keyless commands declare no key.
    for cmdline in [
        vec!["CACHE.INVALIDATE", "TAG", "t"],
        vec!["CACHE.KEYS", "KEY", "k"],
        vec!["CACHE.WRITE", "user", "1"],
    ] {
        let mut p = vec!["COMMAND", "GETKEYS"];
        p.extend_from_slice(&cmdline);
        assert!(cmd(&mut c0, &p).is_err(), "{cmdline:?} has no keys");
    }

    // A node that does not own the slot redirects, and changes nothing.
    let k = cl.key_on(2, "moved:");
    let slot = cl.slot(&k);
    let mut c1 = cl.conn(1);
    let before = dbsize(&mut c1);
    for p in [
        vec!["CACHE.SET", &k, "v", "TAGS", "1", "t"],
        vec!["CACHE.GET", &k],
        vec!["CACHE.FETCH", &k],
        vec!["CACHE.INSPECT", &k],
        vec!["CACHE.TAG", &k, "t"],
        vec!["CACHE.DEPEND", &k, "r"],
        vec!["CACHE.MGET", &k],
    ] {
        assert_eq!(
            fails(&mut c1, &p),
            format!("MOVED {slot} 127.0.0.1:{}", cl.port(2)),
            "{p:?}"
        );
    }
    assert_eq!(dbsize(&mut c1), before);

    // Keys of different slots in one CACHE.MGET.
    let a = cl.key_on(1, "x:");
    let b = cl
        .keys_on(1, "y:", 5)
        .into_iter()
        .find(|b| cl.slot(b) != cl.slot(&a))
        .expect("a second slot on master 1");
    let e = fails(&mut c1, &["CACHE.MGET", &a, &b]);
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    let e = fails(&mut cc, &["CACHE.MGET", &a, &b]);
    assert!(e.contains("CROSSSLOT"), "cluster client: {e}");

    // Keyless commands are taken by any master.
    for m in MASTERS {
        let mut c = cl.conn(m);
        must(&mut c, &["CACHE.TAGS"]);
        must(&mut c, &["CACHE.STATS"]);
        must(&mut c, &["CACHE.KEYS", "TAG", "nothing"]);
        must(&mut c, &["CACHE.INVALIDATE", "TAG", "nothing"]);
    }

    // redis-cli -c follows the redirect: set through master 0, read through master 1, of a key
    // master 2 owns.
    let k = cl.key_on(2, "cli:");
    let cli = |port: u16, args: &[&str]| {
        let mut a = vec![
            "-c".to_string(),
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        let (ok, out) = redis_cli(&cl.root, &a, 20);
        assert!(ok, "redis-cli {a:?}: {out}");
        out.trim().to_string()
    };
    assert_eq!(
        cli(cl.port(0), &["CACHE.SET", &k, "hello", "TAGS", "1", "cli"]),
        "OK"
    );
    assert_eq!(cli(cl.port(1), &["CACHE.GET", &k]), "hello");
    let mut c2 = cl.conn(2);
    let ins = must(&mut c2, &["CACHE.INSPECT", &k]);
    assert_eq!(strings(&field(&ins, "tags")), owned(&["cli"]));

    cl.sync_replica();
    cl.verify_all();
}

// ---------------------------------------------------------------------------------------------
// 2. Cluster-wide invalidation by tag, pattern and dependents, issued on each master in turn.
// ---------------------------------------------------------------------------------------------

/// Entries on every master, written through the cluster client: per master two tagged `t`, one
/// matching `pat:*`, one depending on `db:r`, and one tagged `keep`; plus a plain key matching
/// `pat:*` (not an entry, must stay). Returns (tagged, pattern, dependents, kept) keys.
struct Spread {
    tagged: Vec<String>,
    pattern: Vec<String>,
    dependents: Vec<String>,
    kept: Vec<String>,
}

fn spread(cl: &Cluster, cc: &mut ClusterConnection, round: usize) -> Spread {
    let mut s = Spread {
        tagged: vec![],
        pattern: vec![],
        dependents: vec![],
        kept: vec![],
    };
    for m in MASTERS {
        for k in cl.keys_on(m, &format!("t{round}:"), 2) {
            put(cc, &k, &["t"], &[]);
            s.tagged.push(k);
        }
        let k = cl.key_on(m, &format!("pat:{round}:"));
        put(cc, &k, &["p"], &[]);
        s.pattern.push(k);
        let k = cl.key_on(m, &format!("dep{round}:"));
        put(cc, &k, &[], &["db:r"]);
        s.dependents.push(k);
        let k = cl.key_on(m, &format!("keep{round}:"));
        put(cc, &k, &["keep"], &["db:other"]);
        s.kept.push(k);
    }
    s
}

#[test]
fn invalidation_applies_on_every_master() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    let plain = cl.key_on(1, "pat:plain:");
    assert_eq!(must(&mut cc, &["SET", &plain, "x"]), Value::Okay);

    for (round, issuer) in MASTERS.into_iter().enumerate() {
        let s = spread(&cl, &mut cc, round);
        let mut c = cl.conn(issuer);
        let gone = |cc: &mut ClusterConnection, keys: &[String]| {
            for k in keys {
                assert!(!exists(cc, k), "round {round}: {k} still exists");
            }
        };

        let n = int(&must(&mut c, &["CACHE.INVALIDATE", "TAG", "t"]));
        assert_eq!(n, 6, "round {round}: TAG t from master {issuer}");
        gone(&mut cc, &s.tagged);
        let n = int(&must(&mut c, &["CACHE.INVALIDATE", "PATTERN", "pat:*"]));
        assert_eq!(n, 3, "round {round}: PATTERN pat:* from master {issuer}");
        gone(&mut cc, &s.pattern);
        assert!(
            exists(&mut cc, &plain),
            "a plain key matching the pattern stays"
        );
        let n = int(&must(&mut c, &["CACHE.INVALIDATE", "DEPENDENTS", "db:r"]));
        assert_eq!(n, 3, "round {round}: DEPENDENTS db:r from master {issuer}");
        gone(&mut cc, &s.dependents);

        // Nothing left to find, anywhere.
        let n = int(&must(&mut c, &["CACHE.INVALIDATE", "TAG", "t"]));
        assert_eq!(n, 0, "round {round}: a second TAG t");
        for k in &s.kept {
            assert!(exists(&mut cc, k), "round {round}: {k} (tag keep) stays");
        }
        for m in MASTERS {
            assert_eq!(
                dbsize(&mut cl.conn(m)),
                // The kept entries of all rounds so far, plus the plain key on master 1.
                (round as i64 + 1) + i64::from(m == 1),
                "round {round}: master {m}"
            );
        }

        // The replica of master 0 followed.
        cl.sync_replica();
        let mut r = cl.replica_conn();
        for k in s.tagged.iter().chain(&s.pattern).chain(&s.dependents) {
            if cl.owner(k) == 0 {
                assert!(!exists(&mut r, k), "round {round}: {k} on the replica");
            }
        }
        assert_eq!(dbsize(&mut r), dbsize(&mut cl.conn(0)));
        cl.verify_all();
    }

    // Through the cluster client itself (README, "Clients and keyless commands"): redis-rs
    // routes a command it does not know by its first argument, taken as a key, to that slot's
    // master, which fans out as any master does.
    let s = spread(&cl, &mut cc, 3);
    assert_eq!(int(&must(&mut cc, &["CACHE.INVALIDATE", "TAG", "t"])), 6);
    for k in &s.tagged {
        assert!(!exists(&mut cc, k), "through the cluster client: {k}");
    }
    assert_eq!(
        strings(&must(&mut cc, &["CACHE.KEYS", "TAG", "keep"])).len(),
        12
    );
    cl.verify_all();
}

// ---------------------------------------------------------------------------------------------
// 3. The cascade crosses shards.
// ---------------------------------------------------------------------------------------------

/// x (master 0, tag t, depends on x2), y (master 1, on x), z (master 2, on y), x2 (master 0, on
/// z): a chain through the three masters that comes back to the first and closes a cycle;
/// w (master 2) depends on x and y (a diamond). From `TAG t`: depth 0 {x}, 1 {x, y, w},
/// 2 + {z}, 3 + {x2}.
struct Chain {
    x: String,
    y: String,
    z: String,
    x2: String,
    w: String,
}

fn chain(cl: &Cluster, cc: &mut ClusterConnection) -> Chain {
    let ch = Chain {
        x: cl.key_on(0, "x:"),
        y: cl.key_on(1, "y:"),
        z: cl.key_on(2, "z:"),
        x2: cl.key_on(0, "x2:"),
        w: cl.key_on(2, "w:"),
    };
    put(cc, &ch.x, &["t"], &[&ch.x2]);
    put(cc, &ch.y, &[], &[&ch.x]);
    put(cc, &ch.z, &[], &[&ch.y]);
    put(cc, &ch.x2, &[], &[&ch.z]);
    put(cc, &ch.w, &[], &[&ch.x, &ch.y]);
    ch
}

#[test]
fn cascade_crosses_shards() {
    let cl = Cluster::start();
    let mut cc = cl.client();

    for issuer in MASTERS {
        let ch = chain(&cl, &mut cc);
        let all = [&ch.x, &ch.y, &ch.z, &ch.x2, &ch.w];
        let mut c = cl.conn(issuer);
        let set = |v: &[&String]| sorted(v.iter().map(|s| s.to_string()).collect());

        // The dry run: the sorted union over the masters, cascade included; removes nothing.
        assert_eq!(keys(&mut c, &["TAG", "t"]), set(&all), "from {issuer}");
        assert_eq!(keys(&mut c, &["DEPTH", "0", "TAG", "t"]), set(&[&ch.x]));
        assert_eq!(
            keys(&mut c, &["DEPTH", "1", "TAG", "t"]),
            set(&[&ch.x, &ch.y, &ch.w])
        );
        assert_eq!(
            keys(&mut c, &["DEPTH", "2", "TAG", "t"]),
            set(&[&ch.x, &ch.y, &ch.w, &ch.z])
        );
        // A KEY selector naming a key of another master.
        assert_eq!(
            keys(&mut c, &["DEPTH", "1", "KEY", &ch.z]),
            set(&[&ch.z, &ch.x2])
        );
        for k in all {
            assert!(exists(&mut cc, k), "{k} after the dry runs");
        }

        // DEPTH 1: x, y and w go; z and x2 stay.
        let n = int(&must(
            &mut c,
            &["CACHE.INVALIDATE", "DEPTH", "1", "TAG", "t"],
        ));
        assert_eq!(n, 3, "DEPTH 1 from master {issuer}");
        for k in [&ch.x, &ch.y, &ch.w] {
            assert!(!exists(&mut cc, k), "{k} after DEPTH 1");
        }
        for k in [&ch.z, &ch.x2] {
            assert!(exists(&mut cc, k), "{k} after DEPTH 1");
        }
        // The rest by a KEY on another master than the issuer's.
        let n = int(&must(&mut c, &["CACHE.INVALIDATE", "KEY", &ch.z]));
        assert_eq!(n, 2, "KEY z from master {issuer}");
        for k in all {
            assert!(!exists(&mut cc, k), "{k} after KEY z");
        }

        // The whole chain at once: each entry counts once, the cycle ends.
        let ch = chain(&cl, &mut cc);
        let n = int(&must(&mut c, &["CACHE.INVALIDATE", "TAG", "t"]));
        assert_eq!(n, 5, "TAG t from master {issuer}");
        for k in [&ch.x, &ch.y, &ch.z, &ch.x2, &ch.w] {
            assert!(!exists(&mut cc, k), "{k} after TAG t");
        }
        // DEPTH 2 stops before x2 (hop 3), wherever it is sent.
        let ch = chain(&cl, &mut cc);
        let n = int(&must(
            &mut c,
            &["CACHE.INVALIDATE", "DEPTH", "2", "TAG", "t"],
        ));
        assert_eq!(n, 4, "DEPTH 2 from master {issuer}");
        assert!(exists(&mut cc, &ch.x2));
        let n = int(&must(&mut c, &["CACHE.INVALIDATE", "KEY", &ch.x2]));
        assert_eq!(n, 1);
        for m in MASTERS {
            assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
        }
        cl.sync_replica();
        assert_eq!(dbsize(&mut cl.conn(REPLICA)), 0);
        cl.verify_all();
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Resharding moves entries with their tags, dependencies and metadata.
// ---------------------------------------------------------------------------------------------

/// Groups `{g<n>}` on master 0, each `{g<n>}:a` (tags t and g<n>, depends on row:<n>, META
/// {"n":n}) and `{g<n>}:b` (tag t, depends on `{g<n>}:a`, META {"of":"a"}), same slot; one
/// entry tagged t on masters 1 and 2 each; and on master 2 an untagged entry depending on the
/// first group's `a` (a cross-shard dependent). Then half of master 0's slots go to master 1.
struct Resharded {
    cl: Cluster,
    groups: Vec<String>,
    moved: Vec<String>,
    stayed: Vec<String>,
    others: Vec<String>,
    cross: String,
}

fn resharded() -> Resharded {
    let cl = Cluster::start();
    let mut cc = cl.client();
    // A group "{g7}": all its keys share its slot.
    let groups = cl.names_on(0, 24, |n| format!("{{g{n}}}"));
    for (n, g) in groups.iter().enumerate() {
        let a = format!("{g}:a");
        let b = format!("{g}:b");
        let tag = format!("g{n}");
        let row = format!("row:{n}");
        let meta = format!("{{\"n\":{n}}}");
        assert_eq!(
            must(
                &mut cc,
                &[
                    "CACHE.SET",
                    &a,
                    "va",
                    "EX",
                    "100000",
                    "TAGS",
                    "2",
                    "t",
                    &tag,
                    "DEPENDS",
                    "1",
                    &row,
                    "META",
                    &meta,
                ]
            ),
            Value::Okay
        );
        assert_eq!(
            must(
                &mut cc,
                &[
                    "CACHE.SET",
                    &b,
                    "vb",
                    "TAGS",
                    "1",
                    "t",
                    "DEPENDS",
                    "1",
                    &a,
                    "META",
                    "{\"of\":\"a\"}",
                ]
            ),
            Value::Okay
        );
    }
    let others = vec![cl.key_on(1, "other:"), cl.key_on(2, "other:")];
    for k in &others {
        put(&mut cc, k, &["t"], &[]);
    }
    let cross = cl.key_on(2, "cross:");
    put(&mut cc, &cross, &[], &[&format!("{}:a", groups[0])]);
    assert_eq!(dbsize(&mut cl.conn(0)), 2 * groups.len() as i64);

    let half = cl
        .slot_map()
        .iter()
        .filter(|r| r.2 == 0)
        .map(|r| (r.1 - r.0 + 1) as usize)
        .sum::<usize>()
        / 2;
    cl.reshard(0, 1, half);
    let (moved, stayed): (Vec<String>, Vec<String>) =
        groups.iter().cloned().partition(|g| cl.owner(g) == 1);
    for g in &stayed {
        assert_eq!(cl.owner(g), 0, "{g} is on master 0 or 1");
    }
    assert!(
        !moved.is_empty() && !stayed.is_empty(),
        "moved {moved:?}, stayed {stayed:?}"
    );
    Resharded {
        cl,
        groups,
        moved,
        stayed,
        others,
        cross,
    }
}

#[test]
fn resharding_moves_entries_with_their_index() {
    let rs = resharded();
    let cl = &rs.cl;
    cl.sync_replica();
    cl.verify_all();

    let mut m0 = cl.conn(0);
    let mut m1 = cl.conn(1);
    assert_eq!(dbsize(&mut m0), 2 * rs.stayed.len() as i64);
    assert_eq!(dbsize(&mut m1), 2 * rs.moved.len() as i64 + 1);
    assert_eq!(dbsize(&mut cl.conn(REPLICA)), dbsize(&mut m0));

    for (n, g) in rs.groups.iter().enumerate() {
        let owner = if rs.moved.contains(g) { 1 } else { 0 };
        let mut c = cl.conn(owner);
        let a = format!("{g}:a");
        let b = format!("{g}:b");
        let ins = must(&mut c, &["CACHE.INSPECT", &a]);
        assert_eq!(
            strings(&field(&ins, "tags")),
            sorted(owned(&["t", &format!("g{n}")])),
            "{a} on master {owner}"
        );
        assert_eq!(strings(&field(&ins, "depends")), vec![format!("row:{n}")]);
        assert_eq!(strings(&field(&ins, "dependents")), vec![b.clone()], "{a}");
        let meta: serde_json::Value = serde_json::from_str(&text(&field(&ins, "meta"))).unwrap();
        assert_eq!(meta, serde_json::json!({ "n": n }), "{a}");
        let ttl = int(&field(&ins, "ttl_ms"));
        assert!(ttl > 90_000_000 && ttl <= 100_000_000, "{a}: ttl_ms {ttl}");
        let ins = must(&mut c, &["CACHE.INSPECT", &b]);
        assert_eq!(strings(&field(&ins, "tags")), owned(&["t"]));
        assert_eq!(strings(&field(&ins, "depends")), vec![a.clone()]);
        let meta: serde_json::Value = serde_json::from_str(&text(&field(&ins, "meta"))).unwrap();
        assert_eq!(meta, serde_json::json!({"of": "a"}));
        // The old owner redirects.
        let other = 1 - owner;
        let e = fails(&mut cl.conn(other), &["CACHE.GET", &a]);
        assert!(e.starts_with("MOVED"), "{a} on master {other}: {e}");
    }

    // A fresh cluster client reads the moved entries; an invalidation on the new owner (one
    // group's own tag, which only that group carries) removes the moved entry and its
    // dependent, both moved with it.
    let mut cc = cl.client();
    // Not the first group: an entry on master 2 depends on that one.
    let g = rs.moved.iter().find(|g| **g != rs.groups[0]).unwrap();
    let n = rs.groups.iter().position(|x| x == g).unwrap();
    assert_eq!(
        bytes(&must(&mut cc, &["CACHE.GET", &format!("{g}:a")])),
        Some(b"va".to_vec())
    );
    let tag = format!("g{n}");
    let removed = int(&must(
        &mut m1,
        &["CACHE.INVALIDATE", "DEPTH", "1", "TAG", &tag],
    ));
    assert_eq!(removed, 2, "TAG {tag} on its new owner");
    assert!(!exists(&mut cc, &format!("{g}:a")));
    assert!(!exists(&mut cc, &format!("{g}:b")));
    cl.sync_replica();
    cl.verify_all();
}

#[test]
fn resharded_entries_take_part_in_cluster_wide_invalidation() {
    let rs = resharded();
    let cl = &rs.cl;
    let mut cc = cl.client();
    let total = 2 * rs.groups.len() + rs.others.len() + 1;
    for m in MASTERS {
        let mut c = cl.conn(m);
        assert_eq!(
            keys(&mut c, &["TAG", "t"]).len(),
            total,
            "dry run on master {m}"
        );
    }
    let n = int(&must(&mut cl.conn(2), &["CACHE.INVALIDATE", "TAG", "t"]));
    assert_eq!(n as usize, total, "TAG t: every entry, moved ones included");
    for g in &rs.groups {
        assert!(!exists(&mut cc, &format!("{g}:a")), "{g}:a");
        assert!(!exists(&mut cc, &format!("{g}:b")), "{g}:b");
    }
    for k in rs.others.iter().chain([&rs.cross]) {
        assert!(!exists(&mut cc, k), "{k}");
    }
    for m in MASTERS {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }
    cl.sync_replica();
    assert_eq!(dbsize(&mut cl.conn(REPLICA)), 0);
    cl.verify_all();
}

// ---------------------------------------------------------------------------------------------
// 5. LOCAL, and the aggregation of CACHE.TAGS / CACHE.STATS.
// ---------------------------------------------------------------------------------------------

#[test]
fn local_commands_stay_on_their_node() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    // Master m holds m + 1 entries tagged t.
    let own: Vec<Vec<String>> = MASTERS
        .iter()
        .map(|&m| cl.keys_on(m, &format!("l{m}:"), m + 1))
        .collect();
    for k in own.iter().flatten() {
        put(&mut cc, k, &["t"], &[]);
    }
    // On master 0, an entry depending on one of master 2's: a LOCAL invalidation on master 2
    // does not reach it.
    let dependent = cl.key_on(0, "dependent:");
    put(&mut cc, &dependent, &[], &[&own[2][0]]);

    let mut m1 = cl.conn(1);
    assert_eq!(
        keys(&mut m1, &["LOCAL", "TAG", "t"]),
        sorted(own[1].clone())
    );
    assert_eq!(
        keys(&mut m1, &["LOCAL", "DEPTH", "0", "ALL"]),
        sorted(own[1].clone())
    );
    assert_eq!(tag_counts(&mut m1, &["LOCAL"]), pairs(&[("t", 2)]));
    assert_eq!(
        tag_counts(&mut m1, &["LOCAL", "MATCH", "t*", "COUNT", "5"]),
        pairs(&[("t", 2)])
    );
    let st = stats(&mut m1, &["LOCAL"]);
    assert_eq!(int(&field(&st, "entries")), 2);
    assert!(
        !has_field(&st, "masters"),
        "CACHE.STATS LOCAL has no masters: {st:?}"
    );
    let js: serde_json::Value =
        serde_json::from_str(&text(&stats(&mut m1, &["LOCAL", "JSON"]))).unwrap();
    assert_eq!(js["entries"], 2);
    assert!(js.get("masters").is_none(), "{js}");

    // Only master 1's entries go.
    let n = int(&must(&mut m1, &["CACHE.INVALIDATE", "LOCAL", "TAG", "t"]));
    assert_eq!(n, 2);
    for k in &own[1] {
        assert!(!exists(&mut cc, k), "{k}");
    }
    for k in own[0].iter().chain(&own[2]).chain([&dependent]) {
        assert!(exists(&mut cc, k), "{k} stays");
    }
    assert!(keys(&mut m1, &["LOCAL", "TAG", "t"]).is_empty());
    let mut m2 = cl.conn(2);
    assert_eq!(
        keys(&mut m2, &["LOCAL", "TAG", "t"]),
        sorted(own[2].clone())
    );

    // LOCAL first, then the usual options. The cascade stays on the node too.
    let n = int(&must(
        &mut m2,
        &[
            "CACHE.INVALIDATE",
            "LOCAL",
            "DEPTH",
            "5",
            "CONTEXT",
            "c",
            "TAG",
            "t",
        ],
    ));
    assert_eq!(n, 3);
    assert!(
        exists(&mut cc, &dependent),
        "the cascade does not leave master 2"
    );
    for k in &own[2] {
        assert!(!exists(&mut cc, k), "{k}");
    }

    // On master 0 (which has a replica): its entry and the dependent go, and the replica
    // follows.
    let mut m0 = cl.conn(0);
    let n = int(&must(&mut m0, &["CACHE.INVALIDATE", "LOCAL", "ALL"]));
    assert_eq!(n, 2);
    for m in MASTERS {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }
    cl.sync_replica();
    assert_eq!(dbsize(&mut cl.conn(REPLICA)), 0);
    cl.verify_all();
}

#[test]
fn tags_and_stats_aggregate_over_masters() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    // t: 1 + 2 + 3 entries; u and v: one entry per master carries both; only0: on master 0.
    let mut all = Vec::new();
    for m in MASTERS {
        for k in cl.keys_on(m, &format!("a{m}:"), m + 1) {
            put(&mut cc, &k, &["t"], &[]);
            all.push(k);
        }
        let k = cl.key_on(m, "uv:");
        put(&mut cc, &k, &["u", "v"], &[]);
        all.push(k);
    }
    let k = cl.key_on(0, "only:");
    put(&mut cc, &k, &["only0"], &[]);
    all.push(k);
    assert_eq!(all.len(), 10);

    // Reads: a hit per entry, a miss per master.
    for k in &all[..] {
        must(&mut cc, &["CACHE.GET", k]);
    }
    for m in MASTERS {
        let missing = cl.key_on(m, "missing:");
        assert_eq!(bytes(&must(&mut cc, &["CACHE.GET", &missing])), None);
    }

    for m in MASTERS {
        let mut c = cl.conn(m);
        assert_eq!(
            tag_counts(&mut c, &[]),
            pairs(&[("t", 6), ("u", 3), ("v", 3), ("only0", 1)]),
            "CACHE.TAGS on master {m}"
        );
        assert_eq!(
            tag_counts(&mut c, &["COUNT", "2"]),
            pairs(&[("t", 6), ("u", 3)])
        );
        assert_eq!(
            tag_counts(&mut c, &["MATCH", "[uv]", "COUNT", "1"]),
            pairs(&[("u", 3)])
        );
        assert_eq!(tag_counts(&mut c, &["MATCH", "o*"]), pairs(&[("only0", 1)]));
        assert_eq!(keys(&mut c, &["TAG", "u"]).len(), 3);
        assert_eq!(keys(&mut c, &["ALL"]), sorted(all.clone()));

        let st = stats(&mut c, &[]);
        assert_eq!(int(&field(&st, "entries")), 10, "entries from master {m}");
        assert_eq!(int(&field(&st, "masters")), 3, "masters from master {m}");
        assert_eq!(int(&field(&st, "hits")), 10, "hits from master {m}");
        assert_eq!(int(&field(&st, "misses")), 3, "misses from master {m}");
        let js: serde_json::Value = serde_json::from_str(&text(&stats(&mut c, &["JSON"]))).unwrap();
        assert_eq!(js["entries"], 10, "{js}");
        assert_eq!(js["masters"], 3, "{js}");
    }
    // Each master's own figures add up to the merged ones.
    let local: Vec<(i64, i64)> = MASTERS
        .iter()
        .map(|&m| {
            let st = stats(&mut cl.conn(m), &["LOCAL"]);
            (int(&field(&st, "entries")), int(&field(&st, "hits")))
        })
        .collect();
    assert_eq!(local, vec![(3, 3), (3, 3), (4, 4)]);
    assert_eq!(
        tag_counts(&mut cl.conn(0), &["LOCAL"]),
        pairs(&[("only0", 1), ("t", 1), ("u", 1), ("v", 1)])
    );
    assert_eq!(
        tag_counts(&mut cl.conn(2), &["LOCAL"]),
        pairs(&[("t", 3), ("u", 1), ("v", 1)])
    );

    // Writes paused on master 2 for longer than the cluster timeout: reads still get its part
    // (as its own clients' reads do), an invalidation waits for it and fails after the timeout.
    let mut c0 = cl.conn(0);
    must(
        &mut c0,
        &["CONFIG", "SET", "cache.cluster-timeout-ms", "1000"],
    );
    let mut c2 = cl.conn(2);
    must(&mut c2, &["CLIENT", "PAUSE", "60000", "WRITE"]);
    let st = stats(&mut c0, &[]);
    assert_eq!(int(&field(&st, "masters")), 3);
    assert_eq!(int(&field(&st, "entries")), 10);
    assert_eq!(keys(&mut c0, &["TAG", "u"]).len(), 3);
    assert_eq!(tag_counts(&mut c0, &["COUNT", "1"]), pairs(&[("t", 6)]));
    let e = fails(&mut c0, &["CACHE.INVALIDATE", "TAG", "only0"]);
    assert!(e.contains("2 of 3 masters answered"), "{e}");
    must(&mut c2, &["CLIENT", "UNPAUSE"]);
    must(
        &mut c0,
        &["CONFIG", "SET", "cache.cluster-timeout-ms", "5000"],
    );
    cl.sync_replica();
    cl.verify_all();
}

/// Issue 22, Visibility: the merged CACHE.STATS (RESP and JSON) names only the narrow user's
/// own patterns and contexts, on every master; CACHE.TAGS is refused to it before fanning out.
#[test]
fn merged_stats_name_nothing_out_of_a_restricted_users_reach() {
    let cl = Cluster::start();
    for m in MASTERS {
        must(
            &mut cl.conn(m),
            &["ACL", "SETUSER", "narrow", "on", ">pw", "~app:*", "+@all"],
        );
    }
    let mut cc = cl.client();
    for m in MASTERS {
        put(&mut cc, &cl.key_on(m, "other:"), &["t"], &[]);
        put(&mut cc, &cl.key_on(m, "app:"), &["t"], &[]);
    }
    let mut c0 = cl.conn(0);
    must(
        &mut c0,
        &[
            "CACHE.INVALIDATE",
            "CONTEXT",
            "other-ctx",
            "PATTERN",
            "other:*",
        ],
    );
    must(
        &mut c0,
        &["CACHE.INVALIDATE", "KEY", &cl.key_on(1, "other:")],
    );
    let mut narrow = cl.conn(2);
    must(&mut narrow, &["AUTH", "narrow", "pw"]);
    must(
        &mut narrow,
        &["CACHE.INVALIDATE", "CONTEXT", "mine", "PATTERN", "app:*"],
    );
    let named = |v: &Value| format!("{v:?}").contains("other");
    for m in MASTERS {
        let mut c = cl.conn(m);
        must(&mut c, &["AUTH", "narrow", "pw"]);
        let st = stats(&mut c, &[]);
        assert!(!named(&st), "master {m}: {st:?}");
        let common = map(&field(&field(&st, "patterns"), "most_common_patterns"));
        assert_eq!(common.len(), 1, "master {m}: {common:?}");
        assert_eq!(common[0].0, "pattern app:*");
        assert_eq!(int(&common[0].1), 3, "one per master");
        let js = text(&stats(&mut c, &["JSON"]));
        assert!(!js.contains("other"), "master {m}: {js}");
        assert!(js.contains("pattern app:*"), "{js}");
        let e = fails(&mut c, &["CACHE.TAGS"]);
        assert!(e.starts_with("NOPERM"), "{e}");
        // The default user sees everyone's.
        let all = stats(&mut cl.conn(m), &[]);
        assert!(named(&all), "master {m}");
    }
    cl.verify_all();
}

/// Outside cluster mode LOCAL is accepted and changes nothing.
#[test]
fn local_is_accepted_outside_cluster_mode() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "a", &["t"], &[]);
    entry(&mut c, "b", &[], &["a"]);
    entry(&mut c, "c", &["user:1"], &[]);
    assert_eq!(keys(&mut c, &["LOCAL", "TAG", "t"]), owned(&["a", "b"]));
    assert_eq!(
        keys(&mut c, &["LOCAL", "DEPTH", "0", "TAG", "t"]),
        owned(&["a"])
    );
    assert_eq!(
        tag_counts(&mut c, &["LOCAL"]),
        pairs(&[("t", 1), ("user:1", 1)])
    );
    assert_eq!(int(&field(&stats(&mut c, &["LOCAL"]), "entries")), 3);
    let js: serde_json::Value =
        serde_json::from_str(&text(&stats(&mut c, &["LOCAL", "JSON"]))).unwrap();
    assert_eq!(js["entries"], 3);
    assert_eq!(
        int(&must(&mut c, &["CACHE.INVALIDATE", "LOCAL", "TAG", "t"])),
        2
    );
    assert_eq!(
        int(&must(&mut c, &["CACHE.WRITE", "LOCAL", "user", "1"])),
        1
    );
    assert_eq!(int(&must(&mut c, &["DBSIZE"])), 0);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// 6. Rules and relations are the same on every master; CACHE.WRITE applies everywhere.
// ---------------------------------------------------------------------------------------------

#[test]
fn rules_and_relations_apply_on_every_master() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    let mut m0 = cl.conn(0);
    let mut m1 = cl.conn(1);
    let mut m2 = cl.conn(2);
    assert_eq!(
        must(
            &mut m0,
            &[
                "CACHE.RULE",
                "SET",
                "pages",
                "ON",
                "user",
                "INVALIDATE",
                "1",
                "page:{id}"
            ]
        ),
        Value::Okay
    );
    assert_eq!(
        must(&mut m2, &["CACHE.RELATE", "user", "post"]),
        Value::Okay
    );
    // A refused definition changes nothing anywhere.
    let e = err(
        &mut m1,
        &[
            "CACHE.RULE",
            "SET",
            "bad",
            "ON",
            "user",
            "INVALIDATE",
            "2",
            "x",
        ],
    );
    assert!(e.starts_with("ERR"), "{e}");

    cl.sync_replica();
    let rules = definitions(&mut m0, &["CACHE.RULE", "LIST"]);
    assert_eq!(rules.len(), 1, "{rules:?}");
    let relations = definitions(&mut m0, &["CACHE.RELATE", "LIST"]);
    assert_eq!(relations.len(), 1, "{relations:?}");
    for i in [1, 2, REPLICA] {
        let mut c = cl.conn(i);
        assert_eq!(
            definitions(&mut c, &["CACHE.RULE", "LIST"]),
            rules,
            "node {i}"
        );
        // CACHE.RELATE is a write command as a whole: a replica answers its LIST with
        // READONLY (not a cluster matter), so only the masters are asked.
        if i != REPLICA {
            assert_eq!(
                definitions(&mut c, &["CACHE.RELATE", "LIST"]),
                relations,
                "node {i}"
            );
        }
    }

    // Per master: user:7 (the written tag), page:7 (the rule), post:7 (the relation), and
    // user:8 (another id).
    let mut seven = Vec::new();
    let mut eight = Vec::new();
    for m in MASTERS {
        for (prefix, tag) in [("uk:", "user:7"), ("pg:", "page:7"), ("po:", "post:7")] {
            let k = cl.key_on(m, prefix);
            put(&mut cc, &k, &[tag], &[]);
            seven.push(k);
        }
        let k = cl.key_on(m, "u8:");
        put(&mut cc, &k, &["user:8"], &[]);
        eight.push(k);
    }
    let n = int(&must(&mut m1, &["CACHE.WRITE", "user", "7"]));
    assert_eq!(n, 9, "CACHE.WRITE user 7 on master 1");
    for k in &seven {
        assert!(!exists(&mut cc, k), "{k}");
    }
    for k in &eight {
        assert!(exists(&mut cc, k), "{k} stays");
    }
    // LOCAL: master 2's user:8 entry only.
    let n = int(&must(&mut m2, &["CACHE.WRITE", "LOCAL", "user", "8"]));
    assert_eq!(n, 1);
    assert!(!exists(&mut cc, &eight[2]));
    assert!(exists(&mut cc, &eight[0]) && exists(&mut cc, &eight[1]));

    // Deleting, from another master, deletes everywhere.
    assert_eq!(int(&must(&mut m2, &["CACHE.RULE", "DEL", "pages"])), 1);
    assert_eq!(
        int(&must(&mut m1, &["CACHE.RELATE", "DEL", "user", "post"])),
        1
    );
    cl.sync_replica();
    for i in [0, 1, 2, REPLICA] {
        let mut c = cl.conn(i);
        assert!(
            list(&must(&mut c, &["CACHE.RULE", "LIST"])).is_empty(),
            "node {i}"
        );
        if i != REPLICA {
            assert!(
                list(&must(&mut c, &["CACHE.RELATE", "LIST"])).is_empty(),
                "node {i}"
            );
        }
    }
    // Without the rule and the relation: only the tag itself.
    let p = cl.key_on(1, "pg8:");
    put(&mut cc, &p, &["page:8"], &[]);
    let n = int(&must(&mut m0, &["CACHE.WRITE", "user", "8"]));
    assert_eq!(n, 2);
    assert!(exists(&mut cc, &p));
    cl.sync_replica();
    cl.verify_all();
}

// ---------------------------------------------------------------------------------------------
// 7. A master that does not answer.
// ---------------------------------------------------------------------------------------------

#[test]
fn unresponsive_or_stopped_master_fails_with_partial_effect() {
    let mut cl = Cluster::start();
    let mut cc = cl.client();
    let mut m0 = cl.conn(0);
    assert_eq!(
        strings(&must(
            &mut m0,
            &["CONFIG", "GET", "cache.cluster-timeout-ms"]
        )),
        owned(&["cache.cluster-timeout-ms", "5000"])
    );
    for i in 0..4 {
        config_set(&mut cl.conn(i), "cache.cluster-timeout-ms", "500");
    }
    // Per master: two entries tagged t, one tagged u.
    for m in MASTERS {
        for k in cl.keys_on(m, "t:", 2) {
            put(&mut cc, &k, &["t"], &[]);
        }
        let k = cl.key_on(m, "u:");
        put(&mut cc, &k, &["u"], &[]);
    }
    drop(cc);
    cl.sync_replica();
    let partial = |e: &str| e.starts_with("ERR") && e.contains("2 of 3 masters answered");

    // Master 2 frozen (SIGSTOP): its link is up but it answers nothing. The client waits for
    // the timeout; the server does not: another client of master 0 is served meanwhile.
    cl.pause(2);
    let port0 = cl.port(0);
    let waiter = std::thread::spawn(move || {
        let mut c = connect(port0).expect("connect");
        let start = Instant::now();
        let e = err(&mut c, &["CACHE.INVALIDATE", "TAG", "t"]);
        (e, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    assert_eq!(must(&mut m0, &["PING"]), Value::SimpleString("PONG".into()));
    let ping = start.elapsed();
    let (e, took) = waiter.join().expect("the waiting client");
    assert!(partial(&e), "{e}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(4000),
        "the error came after {took:?} (cache.cluster-timeout-ms 500)"
    );
    assert!(
        ping < Duration::from_millis(300),
        "PING took {ping:?} while a client waited"
    );
    // The reachable masters did their part, and the replica of master 0 followed (keyless
    // checks: the cluster may be marked down later on).
    for m in [0, 1] {
        let mut c = cl.conn(m);
        assert_eq!(dbsize(&mut c), 1, "master {m} keeps its u entry only");
        assert!(
            keys(&mut c, &["LOCAL", "TAG", "t"]).is_empty(),
            "master {m}"
        );
    }
    cl.sync_replica();
    assert_eq!(dbsize(&mut cl.conn(REPLICA)), 1);

    // Master 2 gone (killed): the same error, from any master, for every cluster-wide command.
    cl.resume(2);
    cl.stop(2);
    let mut m1 = cl.conn(1);
    let start = Instant::now();
    let e = err(&mut m1, &["CACHE.INVALIDATE", "TAG", "u"]);
    assert!(partial(&e), "{e}");
    assert!(
        start.elapsed() < Duration::from_millis(4000),
        "{:?}",
        start.elapsed()
    );
    for m in [0, 1] {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }
    let e = err(&mut m0, &["CACHE.KEYS", "TAG", "u"]);
    assert!(partial(&e), "CACHE.KEYS: {e}");
    let e = err(&mut m0, &["CACHE.WRITE", "user", "1"]);
    assert!(partial(&e), "CACHE.WRITE: {e}");
    // LOCAL still works.
    assert!(keys(&mut m1, &["LOCAL", "ALL"]).is_empty());
    assert_eq!(
        int(&must(&mut m1, &["CACHE.INVALIDATE", "LOCAL", "TAG", "u"])),
        0
    );
    cl.sync_replica();
    assert_eq!(dbsize(&mut cl.conn(REPLICA)), 0);
    cl.verify_all();
}

// ---------------------------------------------------------------------------------------------
// 8. Where a cluster-wide command cannot wait; large invalidations; atomic slot migration.
// ---------------------------------------------------------------------------------------------

#[test]
fn cluster_wide_commands_refuse_multi_but_local_ones_run_there() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    let mut keys = Vec::new();
    for m in MASTERS {
        let k = cl.key_on(m, "t:");
        put(&mut cc, &k, &["t"], &[]);
        keys.push(k);
    }
    let mut m0 = cl.conn(0);
    must(&mut m0, &["MULTI"]);
    must(&mut m0, &["CACHE.INVALIDATE", "TAG", "t"]);
    must(&mut m0, &["CACHE.INVALIDATE", "LOCAL", "TAG", "t"]);
    let replies = match m0.req_command(&redis::cmd("EXEC")) {
        Ok(Value::Array(v)) => v,
        other => panic!("EXEC: {other:?}"),
    };
    match &replies[0] {
        Value::ServerError(e) => {
            let text = e.details().unwrap_or_default();
            assert!(text.contains("cannot wait"), "{text}");
            assert!(text.contains("LOCAL"), "{text}");
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    // LOCAL in the same transaction ran: this master's entry only.
    assert_eq!(int(&replies[1]), 1);
    assert_eq!(keys.iter().filter(|k| exists(&mut cc, k)).count(), 2);
    // A script cannot wait either.
    let e = fails(
        &mut m0,
        &["EVAL", "return redis.call('CACHE.KEYS', 'ALL')", "0"],
    );
    assert!(e.contains("cannot wait"), "{e}");
    // A rules change, which has no LOCAL, is refused too and changes nothing anywhere.
    must(&mut m0, &["MULTI"]);
    must(
        &mut m0,
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
    );
    let _ = m0.req_command(&redis::cmd("EXEC"));
    for m in MASTERS {
        assert!(definitions(&mut cl.conn(m), &["CACHE.RULE", "LIST"]).is_empty());
    }
    cl.verify_all();
}

/// The reclaimer's steps taken so far on one node (`CACHE.STATS LOCAL JSON`, `lazy.steps`).
fn reclaim_steps(c: &mut Connection) -> u64 {
    let j = text(&must(c, &["CACHE.STATS", "LOCAL", "JSON"]));
    let j: serde_json::Value = serde_json::from_str(&j).expect("json");
    j["lazy"]["steps"].as_u64().expect("steps")
}

/// Every master's step count now.
fn steps_on_masters(cl: &Cluster) -> Vec<u64> {
    MASTERS
        .iter()
        .map(|&m| reclaim_steps(&mut cl.conn(m)))
        .collect()
}

/// Asserts that every master took a reclaimer step since `before`.
fn stepped_everywhere(cl: &Cluster, before: &[u64]) {
    for (&m, b) in MASTERS.iter().zip(before) {
        assert!(
            reclaim_steps(&mut cl.conn(m)) > *b,
            "master {m} took no reclaimer step: its part ran at once"
        );
    }
}

/// One hash tag per master (`{<prefix><n>}`, a slot of that master), each with `per` entries
/// tagged t (`tagged_group`).
fn groups_tagged_t(cl: &Cluster, prefix: &str, per: usize) -> Vec<String> {
    let groups: Vec<String> = MASTERS
        .iter()
        .map(|&m| cl.names_on(m, 1, |n| format!("{{{prefix}{n}}}")).remove(0))
        .collect();
    fill_groups(cl, &groups, per);
    groups
}

/// `per` entries tagged t in each of `groups` (master by master).
fn fill_groups(cl: &Cluster, groups: &[String], per: usize) {
    for (m, g) in MASTERS.iter().zip(groups) {
        tagged_group(&mut cl.conn(*m), g, per);
    }
}

/// Every IMMEDIATE invalidation of 100 entries or more runs in steps, on one node and
/// cluster-wide: each master's part (the sender's own too) runs in the reclaimer's steps, and
/// the reply, the sum, comes when every master is done (issue 23, defect 5).
#[test]
fn a_large_cluster_wide_invalidation_runs_in_steps_on_every_master() {
    let cl = Cluster::with(&["stepped-threshold", "100"]);
    const PER: usize = 2000;
    let groups = groups_tagged_t(&cl, "s", PER);
    let before = steps_on_masters(&cl);
    let n = int(&must(&mut cl.conn(1), &["CACHE.INVALIDATE", "TAG", "t"]));
    assert_eq!(n, (3 * PER) as i64);
    for m in MASTERS {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }
    stepped_everywhere(&cl, &before);
    // A small one runs at once everywhere.
    let mut cc = cl.client();
    for m in MASTERS {
        for k in cl.keys_on(m, "small:", 5) {
            put(&mut cc, &k, &["small"], &[]);
        }
    }
    assert_eq!(
        int(&must(
            &mut cl.conn(0),
            &["CACHE.INVALIDATE", "TAG", "small"]
        )),
        15
    );
    // LAZY is no IMMEDIATE: marked everywhere, the reply at once.
    fill_groups(&cl, &groups, 200);
    assert_eq!(
        int(&must(
            &mut cl.conn(2),
            &["CACHE.INVALIDATE", "STRATEGY", "LAZY", "TAG", "t"]
        )),
        600
    );
    eventually("the reclaimers are done", || {
        MASTERS.iter().all(|&m| dbsize(&mut cl.conn(m)) == 0)
    });
    cl.sync_replica();
    assert_eq!(dbsize(&mut cl.replica_conn()), 0);
    cl.verify_all();
}

/// The cascade crosses shards from stepped parts: 1500 entries tagged t on each master (masters
/// 0 and 1 have no dependency, so their parts' frontiers are only the selected entries the
/// reclaimer deleted, and they hold them, over 1024 keys); on master 2, d0 depends on a key of
/// master 0, d1 on one of master 1, e on d0, f on d1 by two hops. Every part runs in steps and
/// the next round goes out once they all answered.
#[test]
fn a_stepped_cluster_wide_invalidation_cascades_across_shards() {
    let cl = Cluster::with(&["stepped-threshold", "100"]);
    let mut cc = cl.client();
    const PER: usize = 1500;
    let groups = groups_tagged_t(&cl, "c", PER);
    let a = format!("{}:7", groups[0]);
    let b = format!("{}:9", groups[1]);
    let d0 = cl.key_on(2, "d0:");
    let d1 = cl.key_on(2, "d1:");
    let e = cl.key_on(2, "e:");
    // f on master 0 depends on d1 (master 2): a third round, back on a stepped shard.
    let f = cl.key_on(0, "f:");
    put(&mut cc, &d0, &[], &[&a]);
    put(&mut cc, &d1, &[], &[&b]);
    put(&mut cc, &e, &[], &[&d0]);
    put(&mut cc, &f, &[], &[&d1]);
    let before = steps_on_masters(&cl);
    let n = int(&must(&mut cl.conn(1), &["CACHE.INVALIDATE", "TAG", "t"]));
    assert_eq!(n, (3 * PER + 4) as i64);
    for k in [&a, &b, &d0, &d1, &e, &f] {
        assert!(!exists(&mut cc, k), "{k} left");
    }
    for m in MASTERS {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }
    stepped_everywhere(&cl, &before);

    // DEPTH 1: d0 and d1 go (one hop), e and f stay.
    fill_groups(&cl, &groups, PER);
    put(&mut cc, &d0, &[], &[&a]);
    put(&mut cc, &d1, &[], &[&b]);
    put(&mut cc, &e, &[], &[&d0]);
    put(&mut cc, &f, &[], &[&d1]);
    let n = int(&must(
        &mut cl.conn(0),
        &["CACHE.INVALIDATE", "DEPTH", "1", "TAG", "t"],
    ));
    assert_eq!(n, (3 * PER + 2) as i64);
    assert!(!exists(&mut cc, &d0) && !exists(&mut cc, &d1));
    assert!(exists(&mut cc, &e) && exists(&mut cc, &f));
    cl.sync_replica();
    cl.verify_all();
}

/// A stepped part that takes longer than `cache.cluster-timeout-ms` is waited for while its
/// master reports that it goes on: master 2's reclaimer is paused and stepped by hand, a few
/// entries at a time, over several times the 400 ms timeout. A master that reports nothing (its
/// reclaimer paused and not stepped) makes the command fail after the timeout, as a silent
/// master does, and its part still ends later.
#[test]
fn a_stepped_part_longer_than_the_timeout_is_waited_for() {
    let cl = Cluster::with(&["stepped-threshold", "100"]);
    const PER: usize = 1600;
    let groups = groups_tagged_t(&cl, "w", PER);
    for m in MASTERS {
        config_set(&mut cl.conn(m), "cache.cluster-timeout-ms", "400");
    }
    let mut m2 = cl.conn(2);
    must(&mut m2, &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    let port0 = cl.port(0);
    let sender = std::thread::spawn(move || {
        let mut c = connect(port0).expect("connect");
        run(&mut c, &["CACHE.INVALIDATE", "TAG", "t"])
    });
    // Steps of 4 entries, 5 ms apart: master 2's part takes two seconds or more.
    for _ in 0..100_000 {
        if sender.is_finished() {
            break;
        }
        must(&mut m2, &["CACHE.DEBUG", "RECLAIM", "STEP", "4"]);
        std::thread::sleep(Duration::from_millis(5));
    }
    let reply = sender.join().expect("sender");
    assert_eq!(int(&reply.expect("the reply")), (3 * PER) as i64);
    for m in MASTERS {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }

    // Silent: no step at all on master 2.
    fill_groups(&cl, &groups, PER);
    let e = err(&mut cl.conn(0), &["CACHE.INVALIDATE", "TAG", "t"]);
    assert!(
        e.starts_with("ERR CACHE.INVALIDATE reached only part of the cluster: 2 of 3 masters"),
        "{e}"
    );
    assert!(
        e.contains(&format!("{} entries invalidated", 2 * PER)),
        "{e}"
    );
    must(&mut m2, &["CACHE.DEBUG", "RECLAIM", "RESUME"]);
    eventually("master 2's part ended", || dbsize(&mut cl.conn(2)) == 0);
    cl.sync_replica();
    cl.verify_all();
}

/// A master whose part is stepping becomes a replica (a takeover by its replica): it answers
/// with what it deleted so far, covering no slot, and the sender asks the new master, whose
/// reclaimer goes on with the mark it replicated. The reply counts every shard, or fails
/// loudly.
#[test]
fn a_failover_while_a_part_steps_reaches_the_new_master() {
    let cl = Cluster::with(&["stepped-threshold", "100"]);
    const PER: usize = 500;
    groups_tagged_t(&cl, "f", PER);
    cl.sync_replica();
    let mut m0 = cl.conn(0);
    must(&mut m0, &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    let port1 = cl.port(1);
    let sender = std::thread::spawn(move || {
        let mut c = connect(port1).expect("connect");
        run(&mut c, &["CACHE.INVALIDATE", "TAG", "t"])
    });
    // Master 0 marked its part (the entries read as missing) and waits for its steps.
    eventually("master 0 made its mark", || {
        keys(&mut cl.conn(0), &["LOCAL", "TAG", "t"]).is_empty()
    });
    cl.sync_replica();
    let mut r = cl.conn(REPLICA);
    assert_eq!(
        must(&mut r, &["CLUSTER", "FAILOVER", "TAKEOVER"]),
        Value::Okay
    );
    // Master 0's part cannot end (its reclaimer is paused): as it becomes a replica it answers
    // at once that it reached only part, instead of leaving the sender to time out.
    let e = sender
        .join()
        .expect("the sending client")
        .expect_err("a part cut short by a failover");
    let e = e.to_string();
    assert!(
        e.contains("reached only part of the cluster: a master became a replica"),
        "{e}"
    );
    eventually("the new master's reclaimer is done", || {
        dbsize(&mut cl.conn(REPLICA)) == 0
    });
    for m in [1, 2] {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }
    must(&mut cl.conn(0), &["CACHE.DEBUG", "RECLAIM", "RESUME"]);
    eventually("the old master follows the new one", || {
        let mut c = cl.conn(0);
        info_field(&mut c, "replication", "role") == "slave"
            && digest(&mut c) == digest(&mut cl.conn(REPLICA))
    });
    cl.verify_all();
}

#[test]
fn atomic_slot_migration_moves_entries_with_their_index() {
    let cl = Cluster::start();
    let (flavour, major, _) = server_version(&mut cl.conn(0));
    if flavour != "valkey" || major < 9 {
        // Only Valkey 9 has CLUSTER MIGRATESLOTS (Redis 8.2.3 has no atomic slot migration).
        eprintln!("skipped: {flavour} {major} has no atomic slot migration");
        return;
    }
    let mut cc = cl.client();
    // The first half of master 0's first slot range moves to master 1 (all of its slots would
    // turn master 0 into a replica of master 1: Valkey's replica migration).
    let (a, b, _) = cl
        .slot_map()
        .into_iter()
        .find(|(_, _, m)| *m == 0)
        .expect("a range of master 0");
    let mid = a + (b - a) / 2;
    let all = cl.keys_on(0, "m:", 80);
    let (moving, staying): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|k| cl.slot(k) <= mid);
    assert!(moving.len() >= 10 && !staying.is_empty());
    for (i, k) in moving.iter().chain(&staying).enumerate() {
        let root = format!("root{}", i % 3);
        must(
            &mut cc,
            &[
                "CACHE.SET",
                k,
                "v",
                "TAGS",
                "1",
                "t",
                "DEPENDS",
                "1",
                &root,
                "META",
                "{\"n\":1}",
            ],
        );
    }
    for k in cl.keys_on(1, "s:", 5) {
        put(&mut cc, &k, &["t"], &[]);
    }
    let total = (moving.len() + staying.len() + 5) as i64;
    let (a, mid) = (a.to_string(), mid.to_string());
    must(
        &mut cl.conn(0),
        &[
            "CLUSTER",
            "MIGRATESLOTS",
            "SLOTSRANGE",
            &a,
            &mid,
            "NODE",
            cl.id(1),
        ],
    );
    let mut m0 = cl.conn(0);
    let mut m1 = cl.conn(1);
    let (on0, on1) = (staying.len() as i64, (moving.len() + 5) as i64);
    eventually("the migration to finish", || {
        dbsize(&mut m0) == on0 && dbsize(&mut m1) == on1
    });
    // The moved entries keep tags, dependencies and meta, and are found by cluster-wide commands.
    let k = &moving[0];
    let inspect = must(&mut m1, &["CACHE.INSPECT", k]);
    assert_eq!(strings(&field(&inspect, "tags")), owned(&["t"]));
    assert_eq!(strings(&field(&inspect, "depends")), owned(&["root0"]));
    assert_eq!(text(&field(&inspect, "meta")), "{\"n\":1}");
    let moved_root1 = (0..moving.len()).filter(|i| i % 3 == 1).count();
    assert_eq!(
        keys(&mut m1, &["LOCAL", "DEPENDENTS", "root1"]).len(),
        moved_root1
    );
    assert_eq!(
        keys(&mut m0, &["LOCAL", "TAG", "t"]),
        sorted(staying.clone())
    );
    cl.verify_all();
    assert_eq!(
        int(&must(&mut cl.conn(2), &["CACHE.INVALIDATE", "TAG", "t"])),
        total
    );
    for m in MASTERS {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }
    cl.verify_all();
}

// ---------------------------------------------------------------------------------------------
// 9. Failover while a cluster-wide invalidation is in flight (issue 23, defect 1).
// ---------------------------------------------------------------------------------------------

/// Master 0 is paused for writes, so the request waits there; its replica takes over meanwhile.
/// The old master then answers as a replica, covering no slot: the sender must ask the new
/// master for those slots (or fail loudly), never count the shard as done.
#[test]
fn an_invalidation_during_a_failover_reaches_the_new_master() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    const PER: usize = 40;
    for m in MASTERS {
        for k in cl.keys_on(m, "t:", PER) {
            put(&mut cc, &k, &["t"], &[]);
        }
    }
    drop(cc);
    cl.sync_replica();
    let mut m0 = cl.conn(0);
    assert_eq!(
        must(&mut m0, &["CLIENT", "PAUSE", "3000", "WRITE"]),
        Value::Okay
    );
    let port1 = cl.port(1);
    let sender = std::thread::spawn(move || {
        let mut c = connect(port1).expect("connect");
        run(&mut c, &["CACHE.INVALIDATE", "TAG", "t"])
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut r = cl.conn(REPLICA);
    assert_eq!(
        must(&mut r, &["CLUSTER", "FAILOVER", "TAKEOVER"]),
        Value::Okay
    );
    eventually("the replica became a master", || {
        info_field(&mut cl.conn(REPLICA), "replication", "role") == "master"
    });
    let reply = sender.join().expect("the sending client");
    // The new master holds the slots of master 0: nothing tagged t may be left there.
    let mut new_master = cl.conn(REPLICA);
    let left = keys(&mut new_master, &["LOCAL", "TAG", "t"]);
    match reply {
        Ok(v) => {
            assert_eq!(int(&v), (3 * PER) as i64, "the reply counts every shard");
            assert!(
                left.is_empty(),
                "{} entries tagged t left on the new master",
                left.len()
            );
        }
        Err(e) => {
            // Failing loudly is allowed; a silent short count is not.
            let e = e.to_string();
            assert!(e.contains("reached only part of the cluster"), "{e}");
        }
    }
    for m in [1, 2] {
        assert!(
            keys(&mut cl.conn(m), &["LOCAL", "TAG", "t"]).is_empty(),
            "master {m}"
        );
    }
    eventually("the old master follows the new one", || {
        let mut c = cl.conn(0);
        info_field(&mut c, "replication", "role") == "slave"
            && digest(&mut c) == digest(&mut cl.conn(REPLICA))
    });
    cl.verify_all();
}

/// With `cluster-node-timeout` (2000 here) below `cache.cluster-timeout-ms` (5000), a frozen
/// master is marked failed before the module's deadline, and Redis 7.0/8.2 would answer the
/// blocked client `CLUSTERDOWN` themselves: the module answers first, with its own error that
/// says what was done (issue 23, defect 4).
#[test]
fn a_frozen_master_gets_the_modules_error_before_the_cluster_goes_down() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    for m in MASTERS {
        for k in cl.keys_on(m, "t:", 3) {
            put(&mut cc, &k, &["t"], &[]);
        }
    }
    drop(cc);
    let mut m0 = cl.conn(0);
    assert_eq!(config_get(&mut m0, "cache.cluster-timeout-ms"), "5000");
    cl.pause(2);
    let e = err(&mut m0, &["CACHE.INVALIDATE", "TAG", "t"]);
    cl.resume(2);
    assert!(
        e.starts_with("ERR CACHE.INVALIDATE reached only part of the cluster: 2 of 3 masters"),
        "{e}"
    );
    assert!(e.contains("6 entries invalidated"), "{e}");
    assert!(e.contains("within 1500 ms"), "{e}");
    cl.wait_stable();
    cl.verify_all();
}

/// a1 on master 0; c1 on master 2 depends on a1; b1 on master 1 depends on c1. Master 2 sleeps
/// through the invalidation of a1: the command fails with the partial error, and once master 2
/// answers (late), the cascade goes on by itself to c1 and then b1, with no client waiting
/// (issue 23, defect 3). Before, c1 and b1 stayed, and a retry found nothing to start from.
#[test]
fn a_cascade_through_a_silent_master_completes_when_it_answers() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    let a1 = cl.key_on(0, "a1:");
    let c1 = cl.key_on(2, "c1:");
    let b1 = cl.key_on(1, "b1:");
    put(&mut cc, &a1, &[], &[]);
    put(&mut cc, &c1, &[], &[&a1]);
    put(&mut cc, &b1, &[], &[&c1]);
    let sleeper = master_asleep(&cl, 2);
    let e = err(&mut cl.conn(0), &["CACHE.INVALIDATE", "KEY", &a1]);
    assert!(e.contains("reached only part of the cluster"), "{e}");
    sleeper.join().expect("sleeper");
    eventually("the cascade reached c1 and b1", || {
        !exists(&mut cc, &c1) && !exists(&mut cc, &b1)
    });
    assert!(!exists(&mut cc, &a1));
    cl.verify_all();
}

/// `CACHE.SET ... GUARD` through the cluster client: true when stored, false when refused.
fn guarded_set(cc: &mut ClusterConnection, key: &str, rest: &[&str], token: i64) -> bool {
    let t = token.to_string();
    let mut parts = vec!["CACHE.SET", key, "old"];
    parts.extend_from_slice(rest);
    parts.extend(["GUARD", &t]);
    match must(cc, &parts) {
        Value::Okay => true,
        Value::Nil => false,
        other => panic!("{parts:?}: {other:?}"),
    }
}

/// The stale-set guard in a cluster (issue 25): a token taken on the key's master (CACHE.TOKEN
/// key, or FETCH WITHTOKEN, through the cluster client), a cluster-wide invalidation sent to
/// another master, the guarded SET on the key's master refused; a token of another master
/// refused; a token taken after the invalidation accepted.
#[test]
fn cluster_wide_invalidations_refuse_guarded_sets_on_the_keys_master() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    let k = cl.key_on(1, "g:");
    let dep = cl.key_on(0, "gd:");
    let tok = |cc: &mut ClusterConnection, key: &str| int(&must(cc, &["CACHE.TOKEN", key]));

    // TAG, sent to master 0.
    let t = tok(&mut cc, &k);
    must(&mut cl.conn(0), &["CACHE.INVALIDATE", "TAG", "gt"]);
    assert!(
        !guarded_set(&mut cc, &k, &["TAGS", "1", "gt"], t),
        "TAG from master 0"
    );
    let t = tok(&mut cc, &k);
    assert!(
        guarded_set(&mut cc, &k, &["TAGS", "1", "gt"], t),
        "a token after it"
    );

    // DEPENDENTS, sent to master 2; the token from FETCH WITHTOKEN.
    let r = must(&mut cc, &["CACHE.FETCH", &k, "WITHTOKEN"]);
    let t = int(&list(&r)[2]);
    must(&mut cl.conn(2), &["CACHE.INVALIDATE", "DEPENDENTS", "db:g"]);
    assert!(
        !guarded_set(&mut cc, &k, &["DEPENDS", "1", "db:g"], t),
        "DEPENDENTS from master 2"
    );
    let t = tok(&mut cc, &k);
    assert!(guarded_set(&mut cc, &k, &["DEPENDS", "1", "db:g"], t));

    // A cross-shard cascade: the dependency lives on master 0, the invalidation is sent to
    // master 2, the guarded entry depending on it is written on master 1.
    put(&mut cc, &dep, &["gc"], &[]);
    let t = tok(&mut cc, &k);
    must(&mut cl.conn(2), &["CACHE.INVALIDATE", "TAG", "gc"]);
    assert!(!exists(&mut cc, &dep));
    assert!(
        !guarded_set(&mut cc, &k, &["DEPENDS", "1", &dep], t),
        "the cascade through {dep} (master 0), from master 2"
    );
    let t = tok(&mut cc, &k);
    assert!(guarded_set(&mut cc, &k, &["DEPENDS", "1", &dep], t));

    // A token of another master is refused.
    let other = int(&must(&mut cl.conn(0), &["CACHE.TOKEN"]));
    assert!(
        !guarded_set(&mut cc, &k, &[], other),
        "master 0's token on master 1"
    );
    cl.verify_all();
}

// ---------------------------------------------------------------------------------------------
// 11. Resharding and LAZY marks (found by tests/cluster_oracle.rs).
// ---------------------------------------------------------------------------------------------

/// An entry a LAZY mark covers, not yet reclaimed, moves with a reshard (`MIGRATE` =
/// `DUMP`/`RESTORE`): it must stay gone on its new node, as it is on one server; one written
/// after the mark stays a hit. Found by tests/cluster_oracle.rs (seed 1 and the long run's seed
/// 19): the target took every restored entry as new, so a covered one read as a hit again.
#[test]
fn a_reshard_keeps_an_entry_a_lazy_mark_covers_gone() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    let k = cl.key_on(0, "k:");
    let fresh = format!("{{{k}}}:fresh");
    put(&mut cc, &k, &["t"], &[]);
    for i in 0..4 {
        must(&mut cl.conn(i), &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    }
    assert_eq!(
        int(&must(
            &mut cl.conn(1),
            &["CACHE.INVALIDATE", "STRATEGY", "LAZY", "TAG", "t"]
        )),
        1
    );
    // Written after the mark: fresh, and it must stay a hit after the move.
    put(&mut cc, &fresh, &["t"], &[]);
    assert_eq!(must(&mut cc, &["CACHE.GET", &k]), Value::Nil);
    let slot = cl.slot(&k);
    cl.migrate_begin(slot, 0, 1);
    let moved = cl.migrate_keys(slot, 0, 1, 10);
    assert_eq!(moved.len(), 2, "{moved:?}");
    cl.migrate_end(slot, 0, 1);
    cl.wait_stable();
    let mut cc = cl.client();
    assert_eq!(
        must(&mut cc, &["CACHE.GET", &k]),
        Value::Nil,
        "{k} came back"
    );
    assert_eq!(
        keys(&mut cl.conn(2), &["TAG", "t"]),
        vec![fresh.clone()],
        "CACHE.KEYS over the cluster"
    );
    assert_eq!(
        text(&must(&mut cc, &["CACHE.GET", &fresh])),
        format!("v-{fresh}")
    );
    cl.verify_all();
}

// ---------------------------------------------------------------------------------------------
// 12. Large frontiers from masters without dependencies (issue 23, defect 6).
// ---------------------------------------------------------------------------------------------

/// `count` entries `<group>:<n>` tagged `t` (one slot: the group's hash tag), pipelined on
/// the connection to their master.
fn tagged_group(c: &mut Connection, group: &str, count: usize) {
    let mut p = redis::pipe();
    for n in 0..count {
        p.cmd("CACHE.SET")
            .arg(format!("{group}:{n}"))
            .arg("v")
            .arg("TAGS")
            .arg(1)
            .arg("t")
            .ignore();
    }
    p.query::<()>(c).expect("pipelined CACHE.SET");
}

/// 1500 entries tagged t on each master, none depending on anything, so masters 0 and 1 (no
/// dependency at all) hold their frontiers (over 1024 keys) instead of sending them. On master
/// 2: d0 depends on a key of master 0, d1 on a key of master 1, e on d0. The cascade must still
/// cross: the sender asks the holders for their keys because master 2 has dependencies (also as
/// a dry run, and when master 2 answers late); with no dependency anywhere nothing is asked.
#[test]
fn a_large_cascade_crosses_from_masters_without_dependencies() {
    let cl = Cluster::start();
    let mut cc = cl.client();
    const PER: usize = 1500;
    let groups: Vec<String> = MASTERS
        .iter()
        .map(|&m| cl.names_on(m, 1, |n| format!("{{g{n}}}")).remove(0))
        .collect();
    let fill = |cl: &Cluster| {
        for (m, g) in MASTERS.iter().zip(&groups) {
            tagged_group(&mut cl.conn(*m), g, PER);
        }
    };
    fill(&cl);
    let d0 = cl.key_on(2, "d0:");
    let d1 = cl.key_on(2, "d1:");
    let e = cl.key_on(2, "e:");
    let a = format!("{}:7", groups[0]);
    let b = format!("{}:9", groups[1]);
    put(&mut cc, &d0, &[], &[&a]);
    put(&mut cc, &d1, &[], &[&b]);
    put(&mut cc, &e, &[], &[&d0]);

    // The dry run: depth 1 reaches d0 and d1 (not e).
    let listed = keys(&mut cl.conn(1), &["DEPTH", "1", "TAG", "t"]);
    assert_eq!(listed.len(), 3 * PER + 2);
    assert!(listed.contains(&d0) && listed.contains(&d1) && !listed.contains(&e));

    // From master 1, which holds its own keys and has no dependency either.
    let n = int(&must(&mut cl.conn(1), &["CACHE.INVALIDATE", "TAG", "t"]));
    assert_eq!(n, (3 * PER + 3) as i64);
    for k in [&d0, &d1, &e, &a, &b] {
        assert!(!exists(&mut cc, k), "{k} left");
    }
    cl.verify_all();

    // No dependency anywhere: every frontier stays where it is (and is dropped).
    fill(&cl);
    let n = int(&must(&mut cl.conn(0), &["CACHE.INVALIDATE", "TAG", "t"]));
    assert_eq!(n, (3 * PER) as i64);
    for m in MASTERS {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }

    // Master 2, the one with dependencies, answers late: the cascade goes on by itself from
    // its answer, asking the holders for their keys then.
    fill(&cl);
    put(&mut cc, &d0, &[], &[&a]);
    put(&mut cc, &d1, &[], &[&b]);
    let sleeper = master_asleep(&cl, 2);
    let e = err(&mut cl.conn(0), &["CACHE.INVALIDATE", "TAG", "t"]);
    assert!(e.contains("reached only part of the cluster"), "{e}");
    sleeper.join().expect("sleeper");
    eventually("the late cascade reached d0 and d1", || {
        !exists(&mut cc, &d0) && !exists(&mut cc, &d1)
    });
    for m in MASTERS {
        assert_eq!(dbsize(&mut cl.conn(m)), 0, "master {m}");
    }
    cl.verify_all();
}

/// Every master waits 300 ms for the others, and master `i` sleeps for a second (`DEBUG SLEEP`)
/// from 100 ms before this returns: a cluster-wide command sent now misses it.
fn master_asleep(cl: &Cluster, i: usize) -> std::thread::JoinHandle<()> {
    for m in MASTERS {
        config_set(&mut cl.conn(m), "cache.cluster-timeout-ms", "300");
    }
    let port = cl.port(i);
    let sleeper = std::thread::spawn(move || {
        let mut c = connect(port).expect("connect");
        let _ = run(&mut c, &["DEBUG", "SLEEP", "1"]);
    });
    std::thread::sleep(Duration::from_millis(100));
    sleeper
}
