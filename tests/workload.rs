//! A seeded random workload over two databases, checked against a simple model of the expected
//! entries: CACHE.SET with tags and dependencies, CACHE.TAG, CACHE.DEPEND, CACHE.INVALIDATE with
//! every selector and random depths, and the keyspace paths the index must follow without any
//! CACHE command (DEL, RENAME, MOVE, COPY, expiry, SWAPDB, FLUSHDB, overwrite by SET).
//!
//! Every reply is checked against the model as it is applied; every few hundred steps the whole
//! visible state is compared (CACHE.KEYS ALL, CACHE.TAGS, keys per tag with and without the
//! cascade, CACHE.INSPECT links of every entry, DBSIZE) and CACHE.DEBUG VERIFY must be empty.
//!
//! The seed is printed; `TAGCACHE_SEED=<n>` replays another one.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Entry {
        value: String,
        tags: BTreeSet<String>,
        deps: BTreeSet<String>,
    },
    Plain(String),
}

type Db = BTreeMap<String, Val>;

const TAGS: [&str; 8] = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"];
const ROWS: [&str; 5] = ["row:0", "row:1", "row:2", "row:3", "row:4"];
const PATTERNS: [&str; 14] = [
    "u:1*", "p:?", "s:[0-4]", "*:1?", "u:*", "*5", "[ps]:1", "p:1[0-2]", "*", "s:[^1]", "?:??",
    "u:\\*", "*:[a-z]", "s:1?",
];
const NAMESPACES: [&str; 4] = ["u", "p", "s", "none"];
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[test]
fn model_glob_agrees_with_redis_on_the_patterns_used() {
    assert!(glob(b"u:1*", b"u:12"));
    assert!(!glob(b"u:1*", b"u:2"));
    assert!(glob(b"s:[0-4]", b"s:3") && !glob(b"s:[0-4]", b"s:5"));
    assert!(glob(b"s:[^1]", b"s:2") && !glob(b"s:[^1]", b"s:1"));
    assert!(glob(b"[ps]:1", b"p:1") && !glob(b"[ps]:1", b"u:1"));
    assert!(glob(b"u:\\*", b"u:*") && !glob(b"u:\\*", b"u:1"));
    assert!(glob(b"?:??", b"u:10") && !glob(b"?:??", b"u:1"));
}

enum Selector {
    Keys(Vec<String>),
    Tags(Vec<String>),
    Pattern(String),
    Namespace(String),
    All,
    Dependents(Vec<String>),
}

impl Selector {
    fn args(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        match self {
            Selector::Keys(k) => {
                v.push("KEY".into());
                v.extend(k.iter().cloned());
            }
            Selector::Tags(t) => {
                v.push("TAG".into());
                v.extend(t.iter().cloned());
            }
            Selector::Pattern(p) => v.extend(["PATTERN".into(), p.clone()]),
            Selector::Namespace(n) => v.extend(["NAMESPACE".into(), n.clone()]),
            Selector::All => v.push("ALL".into()),
            Selector::Dependents(r) => {
                v.push("DEPENDENTS".into());
                v.extend(r.iter().cloned());
            }
        }
        v
    }
}

fn entries(db: &Db) -> impl Iterator<Item = (&String, &BTreeSet<String>, &BTreeSet<String>)> {
    db.iter().filter_map(|(k, v)| match v {
        Val::Entry { tags, deps, .. } => Some((k, tags, deps)),
        Val::Plain(_) => None,
    })
}

/// The keys an invalidation removes: the selected entries, then, up to `depth` hops, every entry
/// depending on a key removed in the previous hop.
fn resolve(db: &Db, sel: &Selector, depth: u32) -> BTreeSet<String> {
    let seeds: BTreeSet<String> = entries(db)
        .filter(|(k, tags, deps)| match sel {
            Selector::Keys(keys) => keys.contains(k),
            Selector::Tags(t) => t.iter().any(|t| tags.contains(t)),
            Selector::Pattern(p) => glob(p.as_bytes(), k.as_bytes()),
            Selector::Namespace(ns) => k.starts_with(&format!("{ns}:")),
            Selector::All => true,
            Selector::Dependents(r) => r.iter().any(|r| deps.contains(r)),
        })
        .map(|(k, _, _)| k.clone())
        .collect();
    let mut seen = seeds.clone();
    let mut frontier = seeds;
    for _ in 0..depth {
        if frontier.is_empty() {
            break;
        }
        let next: BTreeSet<String> = entries(db)
            .filter(|(k, _, deps)| !seen.contains(*k) && deps.iter().any(|d| frontier.contains(d)))
            .map(|(k, _, _)| k.clone())
            .collect();
        seen.extend(next.iter().cloned());
        frontier = next;
    }
    seen
}

struct Run {
    c: Connection,
    rng: Rng,
    dbs: [Db; 2],
    cur: usize,
    names: Vec<String>,
    default_depth: u32,
    log: Vec<String>,
    step: usize,
}

impl Run {
    fn fail(&self, what: &str) -> ! {
        let from = self.log.len().saturating_sub(25);
        panic!(
            "step {}: {what}\nlast operations (db selected at the end: {}):\n{}",
            self.step,
            self.cur,
            self.log[from..].join("\n")
        );
    }

    fn check<T: PartialEq + std::fmt::Debug>(&self, got: T, want: T, what: &str) {
        if got != want {
            self.fail(&format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    fn run(&mut self, parts: &[String]) -> redis::RedisResult<Value> {
        self.log
            .push(format!("[db{}] {}", self.cur, parts.join(" ")));
        cmd(&mut self.c, parts)
    }

    fn ok(&mut self, parts: &[String]) -> Value {
        match self.run(parts) {
            Ok(v) => v,
            Err(e) => self.fail(&format!("{parts:?} failed: {e}")),
        }
    }

    fn err(&mut self, parts: &[String]) -> String {
        match self.run(parts) {
            Ok(v) => self.fail(&format!("{parts:?} should fail, got {v:?}")),
            Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
                .trim()
                .to_string(),
        }
    }

    fn db(&mut self) -> &mut Db {
        &mut self.dbs[self.cur]
    }

    fn name(&mut self) -> String {
        let i = self.rng.below(self.names.len());
        self.names[i].clone()
    }

    fn names(&mut self, max: usize) -> Vec<String> {
        let n = self.rng.below(max + 1);
        let mut v: Vec<String> = Vec::new();
        for _ in 0..n {
            let k = self.name();
            if !v.contains(&k) {
                v.push(k);
            }
        }
        v
    }

    fn tags(&mut self, min: usize, max: usize) -> Vec<String> {
        let n = min + self.rng.below(max - min + 1);
        (0..n).map(|_| self.rng.pick(&TAGS).to_string()).collect()
    }

    /// Dependencies: mostly other entries' keys, sometimes outside resources.
    fn resources(&mut self, min: usize, max: usize) -> Vec<String> {
        let n = min + self.rng.below(max - min + 1);
        (0..n)
            .map(|_| {
                if self.rng.chance(80) {
                    self.name()
                } else {
                    self.rng.pick(&ROWS).to_string()
                }
            })
            .collect()
    }

    fn s(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| p.to_string()).collect()
    }

    fn select(&mut self, db: usize) {
        if self.cur != db {
            self.cur = db;
            let r = self.ok(&Self::s(&["SELECT", &db.to_string()]));
            self.check(r, Value::Okay, "SELECT");
        }
    }

    fn cache_set(&mut self) {
        let k = self.name();
        let value = format!("v{}", self.step);
        let tags = self.tags(0, 3);
        // Sparse enough that cascades do not sweep the whole database every time.
        let deps = if self.rng.chance(50) {
            Vec::new()
        } else {
            self.resources(1, 2)
        };
        let mut parts = Self::s(&["CACHE.SET", &k, &value]);
        let roll = self.rng.below(100);
        if roll < 15 {
            parts.extend(Self::s(&[
                "PX",
                &(300_000 + self.rng.below(1000)).to_string(),
            ]));
        } else if roll < 20 {
            parts.push("KEEPTTL".into());
        }
        let cond = self.rng.below(100);
        if cond < 10 {
            parts.push("NX".into());
        } else if cond < 20 {
            parts.push("XX".into());
        }
        if !tags.is_empty() || self.rng.chance(10) {
            parts.extend(["TAGS".into(), tags.len().to_string()]);
            parts.extend(tags.iter().cloned());
        }
        if !deps.is_empty() || self.rng.chance(10) {
            parts.extend(["DEPENDS".into(), deps.len().to_string()]);
            parts.extend(deps.iter().cloned());
        }
        if self.rng.chance(10) {
            parts.extend(["META".into(), format!("{{\"step\":{}}}", self.step)]);
        }
        let existing = self.db().get(&k).cloned();
        match existing {
            Some(Val::Plain(_)) => {
                let e = self.err(&parts);
                self.check(e.as_str(), WRONGTYPE, "CACHE.SET over a string");
            }
            Some(Val::Entry { .. }) if cond < 10 => {
                let r = self.ok(&parts);
                self.check(r, Value::Nil, "CACHE.SET NX over an entry");
            }
            None if (10..20).contains(&cond) => {
                let r = self.ok(&parts);
                self.check(r, Value::Nil, "CACHE.SET XX on a missing key");
            }
            _ => {
                let r = self.ok(&parts);
                self.check(r, Value::Okay, "CACHE.SET");
                self.db().insert(
                    k,
                    Val::Entry {
                        value,
                        tags: tags.into_iter().collect(),
                        deps: deps.into_iter().collect(),
                    },
                );
            }
        }
    }

    /// CACHE.TAG or CACHE.DEPEND.
    fn add_links(&mut self, tag: bool) {
        let k = self.name();
        let names = if tag {
            self.tags(1, 3)
        } else {
            self.resources(1, 3)
        };
        let mut parts = vec![
            if tag { "CACHE.TAG" } else { "CACHE.DEPEND" }.to_string(),
            k.clone(),
        ];
        parts.extend(names.iter().cloned());
        let existing = self.db().get(&k).cloned();
        match existing {
            None => {
                let e = self.err(&parts);
                self.check(e.as_str(), "ERR no such key", "link on a missing key");
            }
            Some(Val::Plain(_)) => {
                let e = self.err(&parts);
                self.check(e.as_str(), WRONGTYPE, "link on a string");
            }
            Some(Val::Entry {
                value,
                mut tags,
                mut deps,
            }) => {
                let list = if tag { &mut tags } else { &mut deps };
                let before = list.len();
                list.extend(names);
                let added = (list.len() - before) as i64;
                let r = self.ok(&parts);
                self.check(r, Value::Int(added), "links added");
                self.db().insert(k, Val::Entry { value, tags, deps });
            }
        }
    }

    fn invalidate(&mut self) {
        let sel = match self.rng.below(100) {
            0..=24 => Selector::Tags(self.tags(1, 2)),
            25..=44 => {
                let mut keys = self.names(3);
                if keys.is_empty() {
                    keys.push(self.name());
                }
                if self.rng.chance(10) {
                    // A key named twice is still one entry.
                    keys.push(keys[0].clone());
                }
                Selector::Keys(keys)
            }
            45..=64 => Selector::Pattern(self.rng.pick(&PATTERNS).to_string()),
            65..=79 => Selector::Namespace(self.rng.pick(&NAMESPACES).to_string()),
            80..=97 => Selector::Dependents(self.resources(1, 2)),
            _ => Selector::All,
        };
        let depth = if self.rng.chance(40) {
            Some(self.rng.below(5) as u32)
        } else {
            None
        };
        let want = resolve(
            &self.dbs[self.cur],
            &sel,
            depth.unwrap_or(self.default_depth),
        );
        let mut opts: Vec<String> = Vec::new();
        if let Some(d) = depth {
            opts.extend(["DEPTH".into(), d.to_string()]);
        }
        opts.extend(sel.args());
        // The dry run first: same keys, nothing removed.
        let mut dry = vec!["CACHE.KEYS".to_string()];
        dry.extend(opts.iter().cloned());
        let r = self.ok(&dry);
        self.check(
            strings(&r),
            want.iter().cloned().collect::<Vec<_>>(),
            "CACHE.KEYS",
        );
        let mut parts = vec!["CACHE.INVALIDATE".to_string()];
        if self.rng.chance(20) {
            parts.extend(["CONTEXT".into(), format!("step {}", self.step)]);
        }
        parts.extend(opts);
        let r = self.ok(&parts);
        self.check(r, Value::Int(want.len() as i64), "CACHE.INVALIDATE count");
        for k in want {
            self.db().remove(&k);
        }
    }

    fn del(&mut self) {
        let mut keys = self.names(3);
        if keys.is_empty() {
            keys.push(self.name());
        }
        let n = keys
            .iter()
            .filter(|k| self.dbs[self.cur].contains_key(*k))
            .count();
        let word = if self.rng.chance(30) { "UNLINK" } else { "DEL" };
        let mut parts = vec![word.to_string()];
        parts.extend(keys.iter().cloned());
        let r = self.ok(&parts);
        self.check(r, Value::Int(n as i64), "DEL/UNLINK count");
        for k in keys {
            self.db().remove(&k);
        }
    }

    fn rename(&mut self) {
        let (a, b) = (self.name(), self.name());
        if a == b {
            return;
        }
        let parts = Self::s(&["RENAME", &a, &b]);
        match self.db().remove(&a) {
            None => {
                let e = self.err(&parts);
                self.check(e.as_str(), "ERR no such key", "RENAME of a missing key");
            }
            Some(v) => {
                let r = self.ok(&parts);
                self.check(r, Value::Okay, "RENAME");
                self.db().insert(b, v);
            }
        }
    }

    /// COPY within the database or (`DB`) into the other one.
    fn copy(&mut self) {
        let (a, b) = (self.name(), self.name());
        let to = if self.rng.chance(30) {
            1 - self.cur
        } else {
            self.cur
        };
        if a == b && to == self.cur {
            return;
        }
        let replace = self.rng.chance(50);
        let mut parts = Self::s(&["COPY", &a, &b]);
        if to != self.cur {
            parts.extend(["DB".into(), to.to_string()]);
        }
        if replace {
            parts.push("REPLACE".into());
        }
        let src = self.db().get(&a).cloned();
        let dst_exists = self.dbs[to].contains_key(&b);
        let done = src.is_some() && (replace || !dst_exists);
        let r = self.ok(&parts);
        self.check(r, Value::Int(done as i64), "COPY");
        let plain = matches!(src, Some(Val::Plain(_)));
        if let (true, Some(v)) = (done, src) {
            self.dbs[to].insert(b, v);
        }
        if to != self.cur {
            self.check_client_db(plain);
        }
    }

    /// After a MOVE or a COPY into the other database the client must still be on its own.
    /// Valkey 8.1 leaves it on the destination when a module subscribes to keyspace events
    /// (valkey-io/valkey#4024); the module undoes that for every MOVE and for COPY of cache
    /// entries. COPY of a plain key is not covered (see
    /// `copy_of_a_plain_key_keeps_the_client_on_its_database`): select ours again then, so this
    /// workload keeps checking the index.
    fn check_client_db(&mut self, plain_copy: bool) {
        let info: String = match redis::cmd("CLIENT").arg("INFO").query(&mut self.c) {
            Ok(i) => i,
            Err(e) => self.fail(&format!("CLIENT INFO: {e}")),
        };
        let db = info
            .split_whitespace()
            .find_map(|f| f.strip_prefix("db="))
            .and_then(|d| d.parse::<usize>().ok());
        if db == Some(self.cur) {
            return;
        }
        if plain_copy {
            let cur = self.cur.to_string();
            let r = self.ok(&Self::s(&["SELECT", &cur]));
            self.check(r, Value::Okay, "SELECT");
            return;
        }
        self.fail(&format!(
            "the client is on db {db:?} after a MOVE/COPY, not on {}",
            self.cur
        ));
    }

    fn move_key(&mut self) {
        let k = self.name();
        let other = 1 - self.cur;
        let parts = Self::s(&["MOVE", &k, &other.to_string()]);
        let moved = self.dbs[self.cur].contains_key(&k) && !self.dbs[other].contains_key(&k);
        let r = self.ok(&parts);
        self.check(r, Value::Int(moved as i64), "MOVE");
        if moved {
            let v = self.db().remove(&k).expect("moved");
            self.dbs[other].insert(k, v);
        }
        self.check_client_db(false);
    }

    /// PEXPIRE 1, then wait until the key is gone (EXISTS expires it lazily at the latest).
    fn expire(&mut self) {
        let k = self.name();
        let exists = self.db().contains_key(&k);
        let r = self.ok(&Self::s(&["PEXPIRE", &k, "1"]));
        self.check(r, Value::Int(exists as i64), "PEXPIRE");
        if !exists {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            std::thread::sleep(Duration::from_millis(2));
            match cmd(&mut self.c, &["EXISTS", k.as_str()]) {
                Ok(Value::Int(0)) => break,
                Ok(Value::Int(1)) if Instant::now() < deadline => {}
                other => self.fail(&format!("{k} did not expire: {other:?}")),
            }
        }
        self.db().remove(&k);
    }

    fn plain_set(&mut self) {
        let k = self.name();
        let v = format!("plain{}", self.step);
        let r = self.ok(&Self::s(&["SET", &k, &v]));
        self.check(r, Value::Okay, "SET");
        self.db().insert(k, Val::Plain(v));
    }

    fn get(&mut self) {
        let k = self.name();
        let parts = Self::s(&["CACHE.GET", &k]);
        match self.db().get(&k).cloned() {
            Some(Val::Plain(_)) => {
                let e = self.err(&parts);
                self.check(e.as_str(), WRONGTYPE, "CACHE.GET of a string");
            }
            Some(Val::Entry { value, .. }) => {
                let r = self.ok(&parts);
                self.check(bytes(&r), Some(value.into_bytes()), "CACHE.GET");
            }
            None => {
                let r = self.ok(&parts);
                self.check(r, Value::Nil, "CACHE.GET of a missing key");
            }
        }
    }

    fn swapdb(&mut self) {
        let r = self.ok(&Self::s(&["SWAPDB", "0", "1"]));
        self.check(r, Value::Okay, "SWAPDB");
        self.dbs.swap(0, 1);
    }

    fn flush(&mut self) {
        if self.rng.chance(30) {
            let r = self.ok(&Self::s(&["FLUSHALL"]));
            self.check(r, Value::Okay, "FLUSHALL");
            self.dbs = [Db::new(), Db::new()];
        } else {
            let r = self.ok(&Self::s(&["FLUSHDB"]));
            self.check(r, Value::Okay, "FLUSHDB");
            self.db().clear();
        }
    }

    /// DUMP a key and RESTORE it under another name (REPLACE or not).
    fn restore(&mut self) {
        let (a, b) = (self.name(), self.name());
        let Some(v) = self.db().get(&a).cloned() else {
            return;
        };
        let replace = self.rng.chance(50);
        self.log.push(format!(
            "[db{}] DUMP {a} + RESTORE {b} 0 <payload>{}",
            self.cur,
            if replace { " REPLACE" } else { "" }
        ));
        let payload: Vec<u8> = match redis::cmd("DUMP").arg(&a).query(&mut self.c) {
            Ok(p) => p,
            Err(e) => self.fail(&format!("DUMP {a}: {e}")),
        };
        let mut k = redis::cmd("RESTORE");
        k.arg(&b).arg(0).arg(payload);
        if replace {
            k.arg("REPLACE");
        }
        let got: redis::RedisResult<Value> = k.query(&mut self.c);
        if self.db().contains_key(&b) && !replace {
            let e = got
                .err()
                .map(|e| format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")));
            self.check(
                e.as_deref(),
                Some("BUSYKEY Target key name already exists."),
                "RESTORE onto an existing key",
            );
        } else {
            self.check(got.ok(), Some(Value::Okay), "RESTORE");
            self.db().insert(b, v);
        }
    }

    fn one_step(&mut self) {
        match self.rng.below(1000) {
            0..=379 | 710..=729 => self.cache_set(),
            380..=429 => self.add_links(true),
            430..=474 => self.add_links(false),
            475..=554 => self.invalidate(),
            555..=584 => self.del(),
            585..=624 => self.rename(),
            625..=659 => self.move_key(),
            660..=689 => self.copy(),
            690..=709 => self.expire(),
            730..=749 => self.plain_set(),
            750..=859 => self.get(),
            860..=959 => {
                let other = 1 - self.cur;
                self.select(other);
            }
            960..=979 => self.swapdb(),
            980..=989 => self.restore(),
            _ => {
                if self.rng.chance(15) {
                    self.flush();
                }
            }
        }
    }

    /// Compares everything visible about both databases with the model; VERIFY must be empty.
    fn checkpoint(&mut self) {
        let back = self.cur;
        let diffs = strings(&self.ok(&Self::s(&["CACHE.DEBUG", "VERIFY"])));
        self.check(diffs, vec![], "CACHE.DEBUG VERIFY");
        for db in 0..2 {
            self.select(db);
            let model = self.dbs[db].clone();
            let size = int(&self.ok(&Self::s(&["DBSIZE"])));
            self.check(size, model.len() as i64, "DBSIZE");
            let all: Vec<String> = entries(&model).map(|(k, _, _)| k.clone()).collect();
            let got = strings(&self.ok(&Self::s(&["CACHE.KEYS", "ALL"])));
            self.check(got, all.clone(), "CACHE.KEYS ALL");
            // CACHE.TAGS: largest first, then by name.
            let mut sizes: Vec<(String, i64)> = TAGS
                .iter()
                .map(|t| {
                    let n = entries(&model)
                        .filter(|(_, tags, _)| tags.contains(*t))
                        .count();
                    (t.to_string(), n as i64)
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let got: Vec<(String, i64)> = list(&self.ok(&Self::s(&["CACHE.TAGS"])))
                .iter()
                .map(|p| {
                    let p = list(p);
                    let name = bytes(&p[0]).unwrap_or_default();
                    (String::from_utf8_lossy(&name).into_owned(), int(&p[1]))
                })
                .collect();
            self.check(got, sizes, "CACHE.TAGS");
            for t in TAGS {
                for depth in [Some(0), None] {
                    let sel = Selector::Tags(vec![t.to_string()]);
                    let want: Vec<String> =
                        resolve(&model, &sel, depth.unwrap_or(self.default_depth))
                            .into_iter()
                            .collect();
                    let mut parts = vec!["CACHE.KEYS".to_string()];
                    if let Some(d) = depth {
                        parts.extend(["DEPTH".into(), d.to_string()]);
                    }
                    parts.extend(["TAG".into(), t.into()]);
                    let got = strings(&self.ok(&parts));
                    self.check(got, want, &format!("db {db}: {parts:?}"));
                }
            }
            for k in &all {
                let Some(Val::Entry { tags, deps, .. }) = model.get(k) else {
                    unreachable!()
                };
                let dependents: Vec<String> = entries(&model)
                    .filter(|(_, _, d)| d.contains(k))
                    .map(|(n, _, _)| n.clone())
                    .collect();
                let ins = self.ok(&Self::s(&["CACHE.INSPECT", k]));
                let got = (
                    strings(&field(&ins, "tags")),
                    strings(&field(&ins, "depends")),
                    strings(&field(&ins, "dependents")),
                );
                let want = (
                    tags.iter().cloned().collect::<Vec<_>>(),
                    deps.iter().cloned().collect::<Vec<_>>(),
                    dependents,
                );
                self.check(got, want, &format!("db {db}: CACHE.INSPECT {k}"));
            }
        }
        self.select(back);
    }
}

fn seed(default: u64) -> u64 {
    std::env::var("TAGCACHE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn workload(module_args: &[&str], default_depth: u32, seed: u64, steps: usize) {
    eprintln!("workload seed = {seed} (replay with TAGCACHE_SEED={seed})");
    let s = Server::with(module_args, &[]);
    let mut names: Vec<String> = Vec::new();
    for ns in ["u", "p", "s"] {
        names.extend((0..20).map(|i| format!("{ns}:{i}")));
    }
    let mut run = Run {
        c: s.conn(),
        rng: Rng(seed | 1),
        dbs: [Db::new(), Db::new()],
        cur: 0,
        names,
        default_depth,
        log: Vec::new(),
        step: 0,
    };
    let mut counts = BTreeMap::new();
    let mut sizes = Vec::new();
    for step in 1..=steps {
        run.step = step;
        let before = run.log.len();
        run.one_step();
        if let Some(op) = run.log.get(before) {
            let word = op.split_whitespace().nth(1).unwrap_or("").to_string();
            *counts.entry(word).or_insert(0) += 1;
        }
        if step % 300 == 0 {
            run.checkpoint();
            if step % 1500 == 0 {
                // A reload rebuilds every index from the entries it loads.
                let r = run.ok(&Run::s(&["DEBUG", "RELOAD"]));
                run.check(r, Value::Okay, "DEBUG RELOAD");
                run.checkpoint();
            }
            sizes.push([0, 1].map(|db| {
                let n = entries(&run.dbs[db]).count();
                (n, run.dbs[db].len() - n)
            }));
        }
    }
    run.checkpoint();
    eprintln!("operations: {counts:?}");
    eprintln!("[(entries, strings) in db0, db1] at each checkpoint: {sizes:?}");
    verify(&mut run.c);
}

#[test]
fn random_workload_matches_the_model() {
    workload(&[], 16, seed(0x7A6C_AC4E_5EED_0001), 3000);
}

#[test]
fn random_workload_with_a_shallow_default_cascade() {
    // The configured default depth applies when DEPTH is not given.
    workload(
        &["max-cascade-depth", "2"],
        2,
        seed(0x7A6C_AC4E_5EED_0002),
        3000,
    );
}

#[test]
fn move_and_copy_keep_the_client_on_its_database() {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["SELECT", "1"]);
    ok(&mut c, &["CACHE.SET", "a", "1", "TAGS", "1", "t"]);
    ok(&mut c, &["CACHE.SET", "b", "2", "TAGS", "1", "t"]);
    ok(&mut c, &["SET", "plain", "x"]);
    assert_eq!(int(&ok(&mut c, &["MOVE", "a", "0"])), 1);
    assert_eq!(int(&ok(&mut c, &["MOVE", "plain", "0"])), 1);
    assert_eq!(int(&ok(&mut c, &["COPY", "b", "b2", "DB", "0"])), 1);
    // Still on database 1.
    assert_eq!(keys(&mut c, &["ALL"]), vec!["b"]);
    assert_eq!(bytes(&ok(&mut c, &["CACHE.GET", "b"])), Some(b"2".to_vec()));
    assert_eq!(int(&ok(&mut c, &["DBSIZE"])), 1);
    ok(&mut c, &["SELECT", "0"]);
    assert_eq!(keys(&mut c, &["ALL"]), vec!["a", "b2"]);
    assert_eq!(keys(&mut c, &["TAG", "t"]), vec!["a", "b2"]);
    assert_eq!(int(&ok(&mut c, &["DBSIZE"])), 3);
    verify(&mut c);
}

#[test]
fn copy_of_a_plain_key_keeps_the_client_on_its_database() {
    // Fails on Valkey 8.1 (valkey-io/valkey#4024): with the module loaded the client is left on
    // the destination database; the module's workaround covers MOVE and COPY of cache entries
    // only.
    let s = Server::start();
    let mut c = s.conn();
    if server_version(&mut c) == ("valkey".to_string(), 8, 1) {
        // A server bug the module cannot undo for plain keys (it never sees their source
        // database); fixed in Valkey 9. Documented in README ("Known server issues").
        eprintln!("skipped on Valkey 8.1: valkey-io/valkey#4024");
        return;
    }
    ok(&mut c, &["SELECT", "1"]);
    ok(&mut c, &["SET", "p", "x"]);
    ok(&mut c, &["CACHE.SET", "e", "1"]);
    assert_eq!(int(&ok(&mut c, &["COPY", "p", "p2", "DB", "0"])), 1);
    assert_eq!(int(&ok(&mut c, &["DBSIZE"])), 2, "still on database 1");
    assert_eq!(bytes(&ok(&mut c, &["CACHE.GET", "e"])), Some(b"1".to_vec()));
    ok(&mut c, &["SELECT", "0"]);
    assert_eq!(int(&ok(&mut c, &["DBSIZE"])), 1);
    verify(&mut c);
}
