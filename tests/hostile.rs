//! Security and hostile input: the configured limits (tags and dependencies per entry, name,
//! META and pattern sizes, cascade size), the ACL category, OOM behaviour, glob abuse,
//! thousands of random argument lists over every command, and corrupted RESTORE payloads.
//! Each test ends with the server alive and CACHE.DEBUG VERIFY empty.

mod common;
use common::*;

fn pong(c: &mut Connection) {
    assert_eq!(
        cmd(c, &["PING"]).map_err(|e| e.to_string()),
        Ok(Value::SimpleString("PONG".into())),
        "the server answers PING"
    );
}

fn tags_of(c: &mut Connection, key: &str) -> Vec<String> {
    strings(&field(&ok(c, &["CACHE.INSPECT", key]), "tags"))
}

fn deps_of(c: &mut Connection, key: &str) -> Vec<String> {
    strings(&field(&ok(c, &["CACHE.INSPECT", key]), "depends"))
}

// ---------------------------------------------------------------------------------------------
// Limits

/// A server with small limits, given as `loadmodule` arguments.
fn limited() -> Server {
    Server::with(
        &[
            "max-tags-per-entry",
            "3",
            "max-depends-per-entry",
            "2",
            "max-name-bytes",
            "8",
            "max-meta-bytes",
            "16",
            "max-pattern-bytes",
            "10",
        ],
        &[],
    )
}

#[test]
fn limits_refuse_oversized_cache_set_and_change_nothing() {
    let s = limited();
    let mut c = s.conn();
    ok(
        &mut c,
        &["CACHE.SET", "k", "v", "TAGS", "1", "t", "DEPENDS", "1", "r"],
    );
    let d = digest(&mut c);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["CACHE.SET", "k", "new", "TAGS", "4", "a", "b", "c", "d"],
            "ERR too many tags for one entry: 4, the limit is 3 (cache.max-tags-per-entry)",
        ),
        (
            vec!["CACHE.SET", "k", "new", "DEPENDS", "3", "a", "b", "c"],
            "ERR too many dependencies for one entry: 3, the limit is 2 (cache.max-depends-per-entry)",
        ),
        (
            vec!["CACHE.SET", "k", "new", "TAGS", "1", "123456789"],
            "ERR tag too long: 9 bytes, the limit is 8 (cache.max-name-bytes)",
        ),
        (
            vec!["CACHE.SET", "k", "new", "DEPENDS", "1", "123456789"],
            "ERR resource name too long: 9 bytes, the limit is 8 (cache.max-name-bytes)",
        ),
        (
            vec!["CACHE.SET", "k", "new", "META", r#"{"a":"1234567890"}"#],
            "ERR META too large: 18 bytes, the limit is 16 (cache.max-meta-bytes)",
        ),
        (
            vec!["CACHE.SET", "fresh", "new", "TAGS", "4", "a", "b", "c", "d"],
            "ERR too many tags for one entry: 4, the limit is 3 (cache.max-tags-per-entry)",
        ),
    ];
    for (line, expected) in &cases {
        assert_eq!(err(&mut c, line), *expected, "{line:?}");
        assert_eq!(digest(&mut c), d, "{line:?} changed something");
    }
    assert_eq!(bytes(&ok(&mut c, &["CACHE.GET", "k"])), Some(b"v".to_vec()));
    assert_eq!(int(&ok(&mut c, &["EXISTS", "fresh"])), 0);
    // Names count once: five arguments, three distinct tags, at the limits exactly.
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "k",
            "v2",
            "TAGS",
            "5",
            "a",
            "b",
            "c",
            "a",
            "b",
            "DEPENDS",
            "2",
            "r",
            "12345678",
            "META",
            r#"{"a":"12345678"}"#,
        ],
    );
    assert_eq!(tags_of(&mut c, "k"), vec!["a", "b", "c"]);
    // A syntax error is reported as such before any limit.
    assert_eq!(
        err(&mut c, &["CACHE.SET", "k", "v", "TAGS", "4000000000", "a"]),
        "ERR syntax error"
    );
    verify(&mut c);
}

#[test]
fn limits_hold_for_cache_tag_and_cache_depend() {
    let s = limited();
    let mut c = s.conn();
    ok(
        &mut c,
        &[
            "CACHE.SET",
            "k",
            "v",
            "TAGS",
            "2",
            "a",
            "b",
            "DEPENDS",
            "1",
            "r",
        ],
    );
    let d = digest(&mut c);
    assert_eq!(
        err(&mut c, &["CACHE.TAG", "k", "c", "d"]),
        "ERR too many tags for one entry: 4, the limit is 3 (cache.max-tags-per-entry)"
    );
    assert_eq!(
        err(&mut c, &["CACHE.DEPEND", "k", "s", "t"]),
        "ERR too many dependencies for one entry: 3, the limit is 2 (cache.max-depends-per-entry)"
    );
    assert_eq!(
        err(&mut c, &["CACHE.TAG", "k", "123456789"]),
        "ERR tag too long: 9 bytes, the limit is 8 (cache.max-name-bytes)"
    );
    assert_eq!(
        digest(&mut c),
        d,
        "a refused CACHE.TAG/DEPEND changed something"
    );
    assert_eq!(tags_of(&mut c, "k"), vec!["a", "b"]);
    // Names it already has don't count again.
    assert_eq!(int(&ok(&mut c, &["CACHE.TAG", "k", "a", "b", "c", "c"])), 1);
    assert_eq!(int(&ok(&mut c, &["CACHE.DEPEND", "k", "r", "s"])), 1);
    assert_eq!(deps_of(&mut c, "k"), vec!["r", "s"]);
    assert_eq!(int(&ok(&mut c, &["CACHE.TAG", "k", "a"])), 0);
    // Missing entry: the usual error, not a limit.
    assert_eq!(err(&mut c, &["CACHE.TAG", "nope", "x"]), "ERR no such key");
    assert_eq!(keys(&mut c, &["TAG", "c"]), vec!["k"]);
    verify(&mut c);
}

#[test]
fn limits_on_patterns_and_configs_at_run_time() {
    let s = limited();
    let mut c = s.conn();
    entry(&mut c, "a:1", &["t"], &[]);
    let d = digest(&mut c);
    let long = "a:[01234567]"; // 12 bytes
    let expected = "ERR pattern too long: 12 bytes, the limit is 10 (cache.max-pattern-bytes)";
    assert_eq!(
        err(&mut c, &["CACHE.INVALIDATE", "PATTERN", long]),
        expected
    );
    assert_eq!(err(&mut c, &["CACHE.KEYS", "PATTERN", long]), expected);
    assert_eq!(err(&mut c, &["CACHE.TAGS", "MATCH", long]), expected);
    assert_eq!(
        err(
            &mut c,
            &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "PATTERN", long]
        ),
        expected
    );
    assert!(list(&ok(&mut c, &["CACHE.PENDING"])).is_empty());
    assert_eq!(digest(&mut c), d);
    // The configs are ordinary module configs: CONFIG GET/SET, ranges enforced.
    assert_eq!(
        strings(&ok(&mut c, &["CONFIG", "GET", "cache.max-pattern-bytes"])),
        vec!["cache.max-pattern-bytes", "10"]
    );
    config_set(&mut c, "cache.max-pattern-bytes", "12");
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "PATTERN", long])), 1);
    for (name, bad) in [
        ("cache.max-pattern-bytes", "0"),
        ("cache.max-name-bytes", "0"),
        ("cache.max-tags-per-entry", "-1"),
        ("cache.max-cascade-entries", "-1"),
    ] {
        let before = strings(&ok(&mut c, &["CONFIG", "GET", name]));
        assert!(
            cmd(&mut c, &["CONFIG", "SET", name, bad]).is_err(),
            "{name} {bad}"
        );
        assert_eq!(strings(&ok(&mut c, &["CONFIG", "GET", name])), before);
    }
    // The defaults of a server started without arguments.
    let s2 = Server::start();
    let mut c2 = s2.conn();
    for (name, default) in [
        ("cache.max-tags-per-entry", "1024"),
        ("cache.max-depends-per-entry", "1024"),
        ("cache.max-name-bytes", "4096"),
        ("cache.max-meta-bytes", "65536"),
        ("cache.max-pattern-bytes", "4096"),
        ("cache.max-cascade-entries", "1000000"),
    ] {
        assert_eq!(
            strings(&ok(&mut c2, &["CONFIG", "GET", name])),
            vec![name, default]
        );
    }
    verify(&mut c);
}

/// root <- n1 <- n2 <- ... <- n9 (each depends on the one before), all tagged `user:1`'s way.
fn chain(c: &mut Connection) {
    entry(c, "root", &["user:1"], &[]);
    for i in 1..10 {
        let prev = if i == 1 {
            "root".to_string()
        } else {
            format!("n{}", i - 1)
        };
        entry(c, &format!("n{i}"), &[], &[&prev]);
    }
}

#[test]
fn a_cascade_over_the_limit_is_refused_before_anything_is_deleted() {
    let s = Server::with(&["max-cascade-entries", "5"], &[]);
    let mut c = s.conn();
    chain(&mut c);
    let d = digest(&mut c);
    let refused = "ERR cascade too large: more than 5 dependent entries, the limit is 5 \
                   (cache.max-cascade-entries); invalidate with a smaller DEPTH or raise the limit";
    for line in [
        &["CACHE.INVALIDATE", "KEY", "root"][..],
        &["CACHE.INVALIDATE", "TAG", "user:1"],
        &["CACHE.INVALIDATE", "DEPTH", "6", "KEY", "root"],
        &["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "KEY", "root"],
        &["CACHE.KEYS", "KEY", "root"],
        &["CACHE.WRITE", "user", "1"],
    ] {
        assert_eq!(err(&mut c, line), refused, "{line:?}");
        assert_eq!(digest(&mut c), d, "{line:?} changed something");
    }
    assert!(list(&ok(&mut c, &["CACHE.PENDING"])).is_empty());
    assert_eq!(
        int(&field(&ok(&mut c, &["CACHE.STATS"]), "total_invalidations")),
        0,
        "a refused invalidation records nothing"
    );
    // The entries the selector picks itself don't count: ALL and DEPENDENTS with DEPTH 0 pass.
    assert_eq!(keys(&mut c, &["DEPTH", "5", "KEY", "root"]).len(), 6);
    assert_eq!(
        keys(
            &mut c,
            &[
                "DEPTH",
                "0",
                "DEPENDENTS",
                "root",
                "n1",
                "n2",
                "n3",
                "n4",
                "n5",
                "n6"
            ]
        )
        .len(),
        7
    );
    // Within the limit it goes through; the rest stays.
    assert_eq!(
        int(&ok(
            &mut c,
            &["CACHE.INVALIDATE", "DEPTH", "5", "KEY", "root"]
        )),
        6
    );
    assert_eq!(keys(&mut c, &["ALL"]), vec!["n6", "n7", "n8", "n9"]);
    // 0: no limit.
    chain(&mut c);
    config_set(&mut c, "cache.max-cascade-entries", "0");
    assert_eq!(int(&ok(&mut c, &["CACHE.WRITE", "user", "1"])), 10);
    assert!(keys(&mut c, &["ALL"]).is_empty());
    verify(&mut c);
}

/// What the master accepted the replica applies, whatever its own limits; the same for an AOF
/// replayed under lower limits.
#[test]
fn limits_do_not_apply_to_the_master_stream_or_the_aof() {
    let m = master();
    let port = m.port.to_string();
    let r = Server::with(
        &["max-tags-per-entry", "1", "max-meta-bytes", "2"],
        &["--replicaof", "127.0.0.1", &port],
    );
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    ok(
        &mut mc,
        &[
            "CACHE.SET",
            "k",
            "v",
            "EX",
            "100",
            "TAGS",
            "3",
            "a",
            "b",
            "c",
            "META",
            r#"{"x":1}"#,
        ],
    );
    ok(&mut mc, &["CACHE.TAG", "k", "d"]);
    sync(&mut mc, &mut rc);
    assert_eq!(tags_of(&mut rc, "k"), vec!["a", "b", "c", "d"]);
    verify(&mut rc);

    // An AOF written under higher limits, replayed at a restart under the lower ones the
    // server starts with.
    let mut s = Server::with(
        &["max-tags-per-entry", "1", "max-depends-per-entry", "1"],
        &["--appendonly", "yes"],
    );
    let mut c = s.conn();
    config_set(&mut c, "cache.max-tags-per-entry", "10");
    config_set(&mut c, "cache.max-depends-per-entry", "10");
    ok(&mut c, &["CACHE.SET", "k", "v", "TAGS", "3", "a", "b", "c"]);
    ok(&mut c, &["CACHE.DEPEND", "k", "r1", "r2"]);
    s.restart("NOSAVE");
    let mut c = s.conn();
    assert_eq!(tags_of(&mut c, "k"), vec!["a", "b", "c"]);
    assert_eq!(deps_of(&mut c, "k"), vec!["r1", "r2"]);
    // The client is still held to them.
    assert!(
        err(&mut c, &["CACHE.SET", "k2", "v", "TAGS", "2", "a", "b"])
            .contains("cache.max-tags-per-entry")
    );
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// ACL category

fn category_supported(c: &mut Connection) -> bool {
    let (flavour, major, minor) = server_version(c);
    flavour == "valkey" || (major, minor) >= (7, 2)
}

#[test]
fn acl_category_cache_holds_every_command_where_the_server_has_module_categories() {
    let s = Server::start();
    let mut c = s.conn();
    if !category_supported(&mut c) {
        // Redis 7.0: no module categories; the module loaded all the same.
        assert_eq!(
            err(&mut c, &["ACL", "CAT", "cache"]),
            "ERR Unknown category 'cache'"
        );
        eprintln!("skipped: this server has no module ACL categories");
        return;
    }
    let mut listed = strings(&ok(&mut c, &["ACL", "CAT", "cache"]));
    listed.sort();
    let mut commands = strings(&ok(
        &mut c,
        &["COMMAND", "LIST", "FILTERBY", "MODULE", "cache"],
    ));
    commands.sort();
    // Subcommands included.
    for sub in ["set", "del", "list", "help"] {
        assert!(
            listed.contains(&format!("cache.rule|{sub}")),
            "cache.rule|{sub}"
        );
    }
    assert_eq!(listed, commands, "ACL CAT cache vs the module's commands");
    // The standard categories follow each command's flags.
    for (category, member, not_member) in [
        ("read", "cache.get", "cache.set"),
        ("read", "cache.rule|list", "cache.rule|set"),
        ("write", "cache.rule|del", "cache.mget"),
        ("fast", "cache.inspect", "cache.invalidate"),
        ("admin", "cache.reset", "cache.stats"),
        ("dangerous", "cache.debug", "cache.tag"),
    ] {
        let names = strings(&ok(&mut c, &["ACL", "CAT", category]));
        assert!(names.iter().any(|n| n == member), "{member} in @{category}");
        assert!(
            !names.iter().any(|n| n == not_member),
            "{not_member} not in @{category}"
        );
    }
    assert!(strings(&ok(&mut c, &["ACL", "CAT"])).contains(&"cache".to_string()));

    // A user with only @cache runs cache commands and nothing else.
    ok(
        &mut c,
        &[
            "ACL", "SETUSER", "cacher", "on", ">pw", "~*", "-@all", "+@cache",
        ],
    );
    let mut u = s.conn();
    ok(&mut u, &["AUTH", "cacher", "pw"]);
    ok(&mut u, &["CACHE.SET", "k", "v", "TAGS", "1", "t"]);
    assert_eq!(bytes(&ok(&mut u, &["CACHE.GET", "k"])), Some(b"v".to_vec()));
    assert!(err(&mut u, &["GET", "k"]).starts_with("NOPERM"));
    assert!(err(&mut u, &["SET", "k2", "v"]).starts_with("NOPERM"));
    // And one without it none of them.
    ok(
        &mut c,
        &[
            "ACL", "SETUSER", "plain", "on", ">pw", "~*", "+@all", "-@cache",
        ],
    );
    let mut p = s.conn();
    ok(&mut p, &["AUTH", "plain", "pw"]);
    assert!(err(&mut p, &["CACHE.GET", "k"]).starts_with("NOPERM"));
    assert!(err(&mut p, &["CACHE.RULE", "LIST"]).starts_with("NOPERM"));
    assert_eq!(bytes(&ok(&mut p, &["GET", "plain"])), None);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// OOM

#[test]
fn under_maxmemory_noeviction_cache_set_fails_with_oom_and_invalidate_frees_memory() {
    let s = Server::with(&[], &["--maxmemory-policy", "noeviction"]);
    let mut c = s.conn();
    let value = "x".repeat(2048);
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("CACHE.SET")
            .arg(format!("bulk:{i}"))
            .arg(&value)
            .arg("TAGS")
            .arg(1)
            .arg("bulk")
            .ignore();
    }
    pipe.query::<()>(&mut c).expect("fill");
    entry(&mut c, "other", &["keep"], &["bulk:1"]);
    let used: i64 = info_field(&mut c, "memory", "used_memory")
        .parse()
        .expect("used_memory");
    // Below what is in use: every deny-oom command is refused from now on.
    config_set(&mut c, "maxmemory", &(used - 512 * 1024).to_string());
    let d = digest(&mut c);
    for line in [
        &["CACHE.SET", "new", "v"][..],
        &["CACHE.SET", "other", "v2"],
        &["CACHE.TAG", "other", "t2"],
        &["CACHE.DEPEND", "other", "r2"],
    ] {
        let e = err(&mut c, line);
        assert!(e.starts_with("OOM"), "{line:?}: {e}");
    }
    assert_eq!(digest(&mut c), d);
    // Reads and invalidations still run.
    assert_eq!(
        bytes(&ok(&mut c, &["CACHE.GET", "other"])),
        Some(b"v-other".to_vec())
    );
    assert_eq!(keys(&mut c, &["KEY", "other"]), vec!["other"]);
    assert_eq!(
        int(&ok(
            &mut c,
            &["CACHE.INVALIDATE", "DEPTH", "0", "TAG", "bulk"]
        )),
        2000
    );
    let after: i64 = info_field(&mut c, "memory", "used_memory")
        .parse()
        .expect("used_memory");
    assert!(
        after < used - 2 * 1024 * 1024,
        "used_memory {used} -> {after} after invalidating 4 MB"
    );
    // Room again.
    assert_eq!(ok(&mut c, &["CACHE.SET", "new", "v"]), Value::Okay);
    assert_eq!(keys(&mut c, &["ALL"]), vec!["new", "other"]);
    config_set(&mut c, "maxmemory", "0");
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Glob abuse

#[test]
fn pathological_patterns_return_and_the_server_answers() {
    let s = Server::start();
    let mut c = s.conn();
    let long_a = "a".repeat(300);
    let mut pipe = redis::pipe();
    for i in 100..300 {
        pipe.cmd("CACHE.SET")
            .arg(format!("{long_a}{i}"))
            .arg("v")
            .arg("TAGS")
            .arg(1)
            .arg(format!("{long_a}{i}"))
            .ignore();
    }
    pipe.query::<()>(&mut c).expect("fill");
    // Each within the default 4096 bytes; (pattern, entries it matches).
    let stars = format!("{}b", "a*".repeat(2000));
    let cases: Vec<(String, usize)> = vec![
        (stars.clone(), 0),
        ("*?".repeat(2000), 0),
        (format!("{}*", "[a-z]".repeat(800)), 0),
        (format!("[{}]*", "a-z".repeat(1300)), 200),
        (format!("[^{}]*", "b-z".repeat(1300)), 200),
        (format!("{}*", "\\a".repeat(300)), 200),
        (format!("{}*1??", "a*".repeat(300)), 100),
    ];
    for (p, expected) in &cases {
        assert!(p.len() <= 4096, "{} bytes", p.len());
        assert_eq!(keys(&mut c, &["PATTERN", p]).len(), *expected, "{p:.40}");
        let tags = list(&ok(&mut c, &["CACHE.TAGS", "MATCH", p])).len();
        assert_eq!(tags, *expected, "tags have the names of the keys: {p:.40}");
        pong(&mut c);
    }
    assert_eq!(
        int(&ok(&mut c, &["CACHE.INVALIDATE", "PATTERN", &stars])),
        0
    );
    assert_eq!(
        int(&ok(&mut c, &["CACHE.INVALIDATE", "PATTERN", &cases[6].0])),
        100
    );
    // Over the limit: refused at once.
    let huge = "a*".repeat(100_000);
    assert!(
        err(&mut c, &["CACHE.INVALIDATE", "PATTERN", &huge]).contains("cache.max-pattern-bytes")
    );
    pong(&mut c);
    verify(&mut c);
}

/// Issue 22: the worst patterns within the 4096-byte limit over long keys. Those the matcher
/// takes in time linear in the key run and answer right; a piece between two stars that would
/// cost more than a few steps per key byte (more than 128 positions with `?` or `[...]`
/// inside) is refused before anything changes, by every command that takes a pattern.
#[test]
fn worst_case_patterns_over_long_keys_finish_or_are_refused() {
    let s = Server::start();
    let mut c = s.conn();
    let mut pipe = redis::pipe();
    for i in 0..200 {
        let key = format!(
            "{}{i:04}{}",
            "a".repeat(4090),
            if i == 7 { "b" } else { "a" }
        );
        pipe.cmd("CACHE.SET")
            .arg(&key)
            .arg("v")
            .arg("TAGS")
            .arg(1)
            .arg(&key)
            .ignore();
    }
    pipe.query::<()>(&mut c).expect("fill");
    let wanted = format!("{}0007b", "a".repeat(4090));
    // The issue's pattern: one star, then 4094 `?` and a `b` (the tail, checked at the end).
    let issue = format!("*{}b", "?".repeat(4094));
    // The same with the `?`s inside a piece between stars, up to the limit.
    let at_limit = format!("*a{}c*", "?".repeat(126));
    let at_limit_hit = format!("*a{}0007b*", "?".repeat(122));
    for (p, expected) in [
        (&issue, vec![wanted.clone()]),
        (&at_limit, vec![]),
        (&at_limit_hit, vec![wanted.clone()]),
    ] {
        assert!(p.len() <= 4096, "{} bytes", p.len());
        assert_eq!(keys(&mut c, &["PATTERN", p]), expected, "{p:.20}");
        let tags: Vec<String> = list(&ok(&mut c, &["CACHE.TAGS", "MATCH", p]))
            .iter()
            .map(|pair| text(&list(pair)[0]))
            .collect();
        assert_eq!(tags, expected, "{p:.20}: tags have the names of the keys");
        pong(&mut c);
    }
    let d = digest(&mut c);
    let over = format!("*a{}b*", "?".repeat(127));
    let dense = format!("*a{}b*", "?".repeat(4092));
    let classes = format!("*{}*", "[ab]".repeat(200));
    for p in [&over, &dense, &classes] {
        let widest = if p == &classes { 200 } else { p.len() - 2 };
        let expected = format!(
            "ERR pattern too complex: {widest} bytes between two stars with ? or [...] inside, the limit is 128"
        );
        for line in [
            vec!["CACHE.KEYS", "PATTERN", p],
            vec!["CACHE.INVALIDATE", "PATTERN", p],
            vec!["CACHE.INVALIDATE", "STRATEGY", "LAZY", "PATTERN", p],
            vec!["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "PATTERN", p],
            vec![
                "CACHE.INVALIDATE",
                "STRATEGY",
                "SOFT",
                "GRACE",
                "5",
                "PATTERN",
                p,
            ],
            vec!["CACHE.TAGS", "MATCH", p],
            vec![
                "CACHE.RULE",
                "SET",
                "r",
                "ON",
                "user",
                "MATCH",
                p,
                "INVALIDATE",
                "1",
                "t",
            ],
        ] {
            assert_eq!(err(&mut c, &line), expected, "{:?}", &line[..2]);
        }
    }
    assert_eq!(digest(&mut c), d, "a refused pattern changed something");
    assert!(list(&ok(&mut c, &["CACHE.PENDING"])).is_empty());
    assert!(list(&ok(&mut c, &["CACHE.PENDING", "LAZY"])).is_empty());
    assert!(list(&ok(&mut c, &["CACHE.RULE", "LIST"])).is_empty());
    assert_eq!(
        int(&ok(&mut c, &["CACHE.INVALIDATE", "PATTERN", &issue])),
        1
    );
    pong(&mut c);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Random hostile arguments

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

const COMMANDS: &[&str] = &[
    "CACHE.SET",
    "CACHE.GET",
    "CACHE.FETCH",
    "CACHE.MGET",
    "CACHE.TAG",
    "CACHE.DEPEND",
    "CACHE.INSPECT",
    "CACHE.INVALIDATE",
    "CACHE.KEYS",
    "CACHE.PENDING",
    "CACHE.RULE",
    "CACHE.RELATE",
    "CACHE.WRITE",
    "CACHE.TAGS",
    "CACHE.STATS",
    "CACHE.RECOMMEND",
    "CACHE.EVENTS",
    "CACHE.HOTKEYS",
    "CACHE.RESET",
    "CACHE.DEBUG",
];

const WORDS: &[&str] = &[
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "KEEPTTL",
    "NX",
    "XX",
    "TAGS",
    "DEPENDS",
    "META",
    "DEPTH",
    "CONTEXT",
    "STRATEGY",
    "IMMEDIATE",
    "LAZY",
    "BATCHED",
    "SOFT",
    "GRACE",
    "LEASE",
    "MARK",
    "STATE",
    "KEY",
    "TAG",
    "PATTERN",
    "NAMESPACE",
    "ALL",
    "DEPENDENTS",
    "MATCH",
    "COUNT",
    "JSON",
    "FLUSH",
    "HELP",
    "VERIFY",
    "SET",
    "DEL",
    "LIST",
    "ON",
    "OPS",
    "INVALIDATE",
    "PRIORITY",
    "BIDIRECTIONAL",
    "OP",
    "create",
    "update",
    "delete",
    "ADD",
    "DONE",
    "COALESCE",
    "{id}",
    "{type}:{id}",
    "{",
    "}}",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "-1",
    "-0",
    "01",
    "+1",
    " 1",
    "1.5",
    "1e3",
    "4000000000",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "99999999999999999999999",
];

const OTHER: &[&str] = &[
    "",
    "k0",
    "k1",
    "k2",
    "k3",
    "t0",
    "t1",
    "r0",
    "user",
    "post",
    "*",
    "k*",
    "[",
    "[^",
    "\\",
    "a*a*a*a*a*a*b",
    "{}",
    "{\"a\":1}",
    "[1]",
    "{\"a\":",
    "\"x\"",
    "null",
    "\r\n",
    "CACHE.SET",
    "plain",
];

fn random_arg(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0..=2 => rng.pick(WORDS).as_bytes().to_vec(),
        3..=4 => rng.pick(NUMBERS).as_bytes().to_vec(),
        5..=7 => rng.pick(OTHER).as_bytes().to_vec(),
        8 => {
            // Binary junk: NUL, CR/LF, invalid UTF-8, high bytes.
            let n = rng.below(40);
            (0..n).map(|_| rng.next() as u8).collect()
        }
        _ => {
            // A long string (names, patterns and META near or past the limits).
            let n = [100, 5000, 70_000][rng.below(3)];
            let c = b"a*[\\{x"[rng.below(6)];
            vec![c; n]
        }
    }
}

#[test]
fn thousands_of_random_argument_lists_leave_the_server_alive_and_consistent() {
    let s = Server::start();
    let mut c = s.conn();
    let mut rng = Rng(0x7a67_6361_6368_6531);
    // Some state for the commands to act on: entries with tags and a chain of dependencies,
    // a plain key, a rule and a relation.
    for i in 0..4 {
        let dep = format!("k{}", (i + 3) % 4);
        entry(
            &mut c,
            &format!("k{i}"),
            &["t0", &format!("t{i}")],
            &[&dep, "r0"],
        );
    }
    ok(&mut c, &["SET", "plain", "p"]);
    ok(
        &mut c,
        &[
            "CACHE.RULE",
            "SET",
            "r",
            "ON",
            "user",
            "INVALIDATE",
            "1",
            "t{id}",
        ],
    );
    ok(&mut c, &["CACHE.RELATE", "user", "post"]);
    config_set(&mut c, "cache.batch-delay-ms", "10");
    let mut errors = 0;
    for round in 0..4000 {
        let name = rng.pick(COMMANDS);
        let mut args: Vec<Vec<u8>> = vec![name.as_bytes().to_vec()];
        // Mostly a plausible shape: the command's usual first words, then anything.
        let n = rng.below(9);
        for _ in 0..n {
            args.push(random_arg(&mut rng));
        }
        if name == "CACHE.SET" && rng.below(3) == 0 {
            // Keep entries around: a valid SET now and then.
            args = vec![
                b"CACHE.SET".to_vec(),
                rng.pick(&["k0", "k1", "k2", "k3", "k4"])
                    .as_bytes()
                    .to_vec(),
                b"v".to_vec(),
                b"TAGS".to_vec(),
                b"1".to_vec(),
                rng.pick(&["t0", "t1", "t2"]).as_bytes().to_vec(),
                b"DEPENDS".to_vec(),
                b"1".to_vec(),
                rng.pick(&["k0", "k1", "r0"]).as_bytes().to_vec(),
            ];
        }
        if name == "CACHE.DEBUG"
            && args
                .get(1)
                .is_some_and(|a| a.eq_ignore_ascii_case(b"VERIFY"))
        {
            args.truncate(2);
        }
        match cmd(&mut c, &args) {
            Ok(_) => {}
            Err(e) if e.kind() == redis::ErrorKind::ParseError => {
                // The server's own error for an unknown subcommand of a container command
                // quotes it raw, which the client cannot read as UTF-8 (the module's errors
                // are always UTF-8). A new connection, and on.
                assert_eq!(name, "CACHE.RULE", "round {round}: {args:?} -> {e}");
                c = s.conn();
            }
            Err(e) => {
                errors += 1;
                let code = e.code().unwrap_or("");
                let text = format!("{code} {}", e.detail().unwrap_or(""));
                assert!(
                    matches!(code, "ERR" | "WRONGTYPE"),
                    "round {round}: {args:?} -> unexpected error {e}"
                );
                assert!(
                    !text.contains("internal error"),
                    "round {round}: {args:?} -> a panic was caught: {text}"
                );
            }
        }
        if round % 500 == 0 {
            pong(&mut c);
        }
    }
    pong(&mut c);
    assert!(
        (1000..3900).contains(&errors),
        "most random lines are errors, not all ({errors} of 4000)"
    );
    assert!(
        !s.log().contains("tagcache: command failed"),
        "a command panicked:\n{}",
        s.log()
    );
    // Settle any BATCHED request a random line queued, then check.
    ok(&mut c, &["CACHE.PENDING", "FLUSH"]);
    verify(&mut c);
    // The data the module never owned is untouched.
    assert_eq!(bytes(&ok(&mut c, &["GET", "plain"])), Some(b"p".to_vec()));
}

#[test]
fn oversized_counts_fail_fast() {
    let s = Server::start();
    let mut c = s.conn();
    entry(&mut c, "k", &["t"], &[]);
    let d = digest(&mut c);
    for line in [
        &["CACHE.SET", "k", "v", "TAGS", "4000000000", "a"][..],
        &["CACHE.SET", "k", "v", "DEPENDS", "9223372036854775807", "a"],
        &["CACHE.SET", "k", "v", "TAGS", "-1"],
        &["CACHE.SET", "k", "v", "TAGS", "18446744073709551616", "a"],
    ] {
        let e = err(&mut c, line);
        assert!(
            e == "ERR syntax error" || e == "ERR value is not an integer or out of range",
            "{line:?}: {e}"
        );
    }
    assert_eq!(digest(&mut c), d);
    for line in [
        &["CACHE.TAGS", "COUNT", "4000000000"][..],
        &["CACHE.EVENTS", "COUNT", "9223372036854775807"],
        &["CACHE.HOTKEYS", "COUNT", "9223372036854775807"],
        &["CACHE.KEYS", "DEPTH", "4000000000", "KEY", "k"],
        &[
            "CACHE.INVALIDATE",
            "DEPTH",
            "9223372036854775807",
            "KEY",
            "nothing",
        ],
    ] {
        ok(&mut c, line);
    }
    for line in [
        &[
            "CACHE.RULE",
            "SET",
            "r",
            "ON",
            "u",
            "INVALIDATE",
            "4000000000",
            "x",
        ][..],
        &["CACHE.RELATE", "a", "b", "DEPTH", "9223372036854775807"],
        &[
            "CACHE.RULE",
            "SET",
            "r",
            "ON",
            "u",
            "PRIORITY",
            "4000000000",
            "INVALIDATE",
            "1",
            "x",
        ],
    ] {
        let e = err(&mut c, line);
        assert!(e.starts_with("ERR"), "{line:?}: {e}");
    }
    assert!(list(&ok(&mut c, &["CACHE.RULE", "LIST"])).is_empty());
    pong(&mut c);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Corrupted RESTORE payloads

/// One entry's DUMP payload (uncompressed), plus an entry that stays.
fn payload(c: &mut Connection) -> Vec<u8> {
    config_set(c, "rdbcompression", "no");
    ok(
        c,
        &[
            "CACHE.SET",
            "src",
            "VALUEMARK",
            "TAGS",
            "2",
            "t1",
            "t2",
            "DEPENDS",
            "2",
            "keep",
            "r",
            "META",
            r#"{"k":[1,2]}"#,
        ],
    );
    entry(c, "keep", &["t1"], &[]);
    let v: Option<Vec<u8>> = redis::cmd("DUMP").arg("src").query(c).expect("DUMP");
    fixed_creation_time(v.expect("payload"))
}

/// The payload with the entry's creation time (the varint after the META JSON) replaced by a
/// fixed one of the same length, resealed: the same bytes on every run. With the clock in the
/// payload, its checksum changed from run to run, and so did what a truncated payload read from
/// the footer; a cut that happened to decode was a one-in-hundreds failure.
fn fixed_creation_time(mut p: Vec<u8>) -> Vec<u8> {
    let meta = br#"{"k":[1,2]}"#;
    let at = p
        .windows(meta.len())
        .position(|w| w == meta)
        .expect("the meta inside the payload")
        + meta.len();
    let len = p[at..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("the creation time's varint")
        + 1;
    // 2025-06-15T16:00:00Z in ms: 41 bits, six varint bytes, like any time from 2004 to 2039.
    let mut fixed = Vec::new();
    let mut v: u64 = 1_750_003_200_000;
    while v >= 0x80 {
        fixed.push((v as u8) | 0x80);
        v >>= 7;
    }
    fixed.push(v as u8);
    assert_eq!(len, fixed.len(), "the creation time's varint length");
    p[at..at + len].copy_from_slice(&fixed);
    reseal(p)
}

/// RESTOREs `bad` under `bad`: either refused, or a consistent entry (then removed again).
fn restore_survives(c: &mut Connection, bad: &[u8], what: &str) -> bool {
    let r: redis::RedisResult<Value> = redis::cmd("RESTORE").arg("bad").arg(0).arg(bad).query(c);
    pong(c);
    let restored = r.is_ok();
    if restored {
        // Whatever it decoded to, the index follows it.
        verify(c);
        ok(c, &["DEL", "bad"]);
    } else {
        assert_eq!(int(&ok(c, &["EXISTS", "bad"])), 0, "{what}");
    }
    restored
}

#[test]
fn random_bit_flips_and_truncations_of_restore_payloads_never_crash() {
    let s = Server::start();
    let mut c = s.conn();
    let good = payload(&mut c);
    let d = digest(&mut c);
    let body = good.len() - 10; // the footer: 2 bytes RDB version, 8 bytes CRC-64
    let mut rng = Rng(0x0bad_5eed_0000_0001);
    let (mut accepted, mut tried) = (0, 0);
    for i in 0..600 {
        let mut bad = good.clone();
        // Never the first byte, the RDB type: another type would test the server's loaders.
        for _ in 0..1 + rng.below(3) {
            let at = 1 + rng.below(body - 1);
            bad[at] ^= 1 << rng.below(8);
        }
        if bad == good {
            continue;
        }
        tried += 1;
        if restore_survives(&mut c, &reseal(bad), &format!("flips #{i}")) {
            accepted += 1;
        }
    }
    // Flips in the value or a name decode to another valid entry; the others are refused.
    assert!(
        0 < accepted && accepted < tried,
        "{accepted} of {tried} accepted"
    );
    // Every truncation, with a valid footer and checksum. Only a cut of the last bytes can
    // pass, when the footer's bytes happen to complete the entry (a hit count, the EOF opcode).
    let mut refused = 0;
    for cut in 1..body {
        let mut bad = good[..cut].to_vec();
        bad.extend_from_slice(&good[body..]);
        if !restore_survives(&mut c, &reseal(bad), &format!("cut at {cut}")) {
            refused += 1;
        } else {
            assert!(
                cut + 3 >= body,
                "a payload cut at {cut} of {body} bytes was accepted"
            );
        }
    }
    assert!(
        refused + 3 >= body - 1,
        "{refused} of {} truncations refused",
        body - 1
    );
    // A declared module string length of 2^40 bytes: [length][version][value length]VALUEMARK.
    let p = good
        .windows(9)
        .position(|w| w == b"VALUEMARK")
        .expect("the value inside the payload");
    assert_eq!(
        usize::from(good[p - 3]),
        body - (p - 3) - 2,
        "string length byte"
    );
    let mut huge = good[..p - 3].to_vec();
    huge.push(0x81);
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge.extend_from_slice(&good[p - 2..]);
    assert!(!restore_survives(&mut c, &reseal(huge), "huge length"));
    assert_eq!(digest(&mut c), d, "the dataset is as before");
    assert_eq!(keys(&mut c, &["TAG", "t1"]), vec!["keep", "src"]);
    // The good payload still restores.
    let r: Value = redis::cmd("RESTORE")
        .arg("copy")
        .arg(0)
        .arg(&good)
        .query(&mut c)
        .expect("RESTORE of the good payload");
    assert_eq!(r, Value::Okay);
    assert_eq!(keys(&mut c, &["TAG", "t1"]), vec!["copy", "keep", "src"]);
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Command flags

fn flags_of(c: &mut Connection, name: &str) -> Vec<String> {
    let info = list(&ok(c, &["COMMAND", "INFO", name]));
    assert_eq!(info.len(), 1, "{name}");
    let doc = list(&info[0]);
    list(&doc[2])
        .iter()
        .map(|f| match f {
            Value::SimpleString(s) => s.clone(),
            Value::Okay => "OK".into(),
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("flag {other:?}"),
        })
        .collect()
}

#[test]
fn command_flags_keep_invalidation_possible_under_oom_and_admin_commands_for_admins() {
    let s = Server::start();
    let mut c = s.conn();
    // (command, flags it must have, flags it must not have)
    let write_oom: &[&str] = &["write", "denyoom"];
    let cases: Vec<(&str, &[&str], &[&str])> = vec![
        ("cache.set", write_oom, &["readonly"]),
        ("cache.mset", write_oom, &["readonly"]),
        ("cache.tag", write_oom, &["readonly"]),
        ("cache.depend", write_oom, &["readonly"]),
        ("cache.get", &["readonly", "fast"], &["write"]),
        ("cache.fetch", &["readonly", "fast"], &["write"]),
        ("cache.token", &["readonly", "fast"], &["write"]),
        ("cache.mget", &["readonly", "fast"], &["write"]),
        ("cache.inspect", &["readonly", "fast"], &["write"]),
        ("cache.keys", &["readonly"], &["write"]),
        ("cache.tags", &["readonly"], &["write"]),
        ("cache.stats", &["readonly"], &["write"]),
        ("cache.recommend", &["readonly"], &["write"]),
        ("cache.events", &["readonly"], &["write"]),
        ("cache.hotkeys", &["readonly"], &["write"]),
        ("cache.invalidate", &["write"], &["denyoom"]),
        ("cache.write", &["write"], &["denyoom"]),
        ("cache.relate", &["write"], &["denyoom"]),
        ("cache.pending", &["write"], &["denyoom"]),
        ("cache.rule|set", write_oom, &["readonly"]),
        ("cache.rule|del", &["write"], &["denyoom"]),
        ("cache.rule|list", &["readonly"], &["write"]),
        ("cache.reset", &["admin"], &[]),
        ("cache.debug", &["admin"], &[]),
    ];
    for &(name, must, must_not) in &cases {
        let flags = flags_of(&mut c, name);
        for f in must {
            assert!(flags.iter().any(|x| x == f), "{name} lacks {f}: {flags:?}");
        }
        for f in must_not {
            assert!(!flags.iter().any(|x| x == f), "{name} has {f}: {flags:?}");
        }
    }
    if !category_supported(&mut c) {
        // Redis 7.0 puts module commands in no ACL category, whatever their flags, and has no
        // call to set one: -@admin does not take CACHE.RESET away there (README).
        let admin = strings(&ok(&mut c, &["ACL", "CAT", "admin"]));
        assert!(!admin.iter().any(|n| n.starts_with("cache.")), "{admin:?}");
        eprintln!("skipped the category checks: this server has no module ACL categories");
        return;
    }
    // The standard categories follow the flags.
    for (category, flag) in [("write", "write"), ("read", "readonly"), ("admin", "admin")] {
        let mut listed: Vec<String> = strings(&ok(&mut c, &["ACL", "CAT", category]))
            .into_iter()
            .filter(|n| n.starts_with("cache."))
            .collect();
        listed.sort();
        let mut expected: Vec<String> = cases
            .iter()
            .filter(|(_, must, _)| must.contains(&flag))
            .map(|(name, _, _)| name.to_string())
            .collect();
        expected.sort();
        assert_eq!(listed, expected, "ACL CAT {category}");
    }
    // Admin commands need @admin.
    ok(
        &mut c,
        &[
            "ACL", "SETUSER", "ops", "on", ">pw", "~*", "+@all", "-@admin",
        ],
    );
    let mut ops = s.conn();
    ok(&mut ops, &["AUTH", "ops", "pw"]);
    assert!(err(&mut ops, &["CACHE.RESET"]).starts_with("NOPERM"));
    assert!(err(&mut ops, &["CACHE.DEBUG", "VERIFY"]).starts_with("NOPERM"));
    ok(&mut ops, &["CACHE.SET", "k", "v"]);
    ok(&mut ops, &["CACHE.STATS"]);
    // A read-only role by category: reads yes, writes no.
    ok(
        &mut c,
        &[
            "ACL", "SETUSER", "viewer", "on", ">pw", "~*", "-@all", "+@read",
        ],
    );
    let mut viewer = s.conn();
    ok(&mut viewer, &["AUTH", "viewer", "pw"]);
    assert_eq!(
        bytes(&ok(&mut viewer, &["CACHE.GET", "k"])),
        Some(b"v".to_vec())
    );
    ok(&mut viewer, &["CACHE.STATS"]);
    assert!(err(&mut viewer, &["CACHE.SET", "k", "w"]).starts_with("NOPERM"));
    assert!(err(&mut viewer, &["CACHE.INVALIDATE", "ALL"]).starts_with("NOPERM"));
    verify(&mut c);
}

/// Listings are bounded: CACHE.KEYS and CACHE.TAGS without COUNT refuse an answer over
/// `cache.max-reply-keys` (counted in the index before anything is opened) and change nothing;
/// CACHE.INSPECT lists at most 1 000 dependents and counts the rest.
#[test]
fn listings_past_the_reply_limit_are_refused_and_inspect_is_cut() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(config_get(&mut c, "cache.max-reply-keys"), "20000");
    config_set(&mut c, "cache.max-reply-keys", "100");
    let mut p = redis::pipe();
    for i in 0..1500 {
        p.cmd("CACHE.SET")
            .arg(format!("d:{i}"))
            .arg("v")
            .arg("TAGS")
            .arg(2)
            .arg(format!("t:{i}"))
            .arg(if i < 100 { "small" } else { "big" })
            .arg("DEPENDS")
            .arg(1)
            .arg("root");
    }
    p.query::<()>(&mut c).unwrap();
    entry(&mut c, "root", &["r"], &[]);
    // 100 keys are allowed, 101 are not: by a tag, a pattern, ALL, and through a cascade.
    assert_eq!(keys(&mut c, &["TAG", "small"]).len(), 100);
    for sel in [
        &["TAG", "big"][..],
        &["PATTERN", "d:*"],
        &["NAMESPACE", "d"],
        &["ALL"],
        &["DEPENDENTS", "root"],
        &["KEY", "root"],
    ] {
        let mut args = vec!["CACHE.KEYS"];
        args.extend_from_slice(sel);
        let e = err(&mut c, &args);
        assert!(
            e.contains(
                "CACHE.KEYS selects more than 100 keys, the limit is 100 (cache.max-reply-keys)"
            ),
            "{sel:?}: {e}"
        );
    }
    // Within the limit through DEPTH 0, and KEY root alone.
    assert_eq!(keys(&mut c, &["DEPTH", "0", "KEY", "root"]), ["root"]);
    // CACHE.TAGS: every tag is over the limit; COUNT and a narrow MATCH answer.
    let e = err(&mut c, &["CACHE.TAGS"]);
    assert!(e.contains("CACHE.TAGS selects more than 100 tags"), "{e}");
    let top = list(&ok(&mut c, &["CACHE.TAGS", "COUNT", "2"]));
    assert_eq!(text(&list(&top[0])[0]), "big");
    assert_eq!(int(&list(&top[0])[1]), 1400);
    assert_eq!(text(&list(&top[1])[0]), "small");
    assert_eq!(
        list(&ok(&mut c, &["CACHE.TAGS", "MATCH", "t:1?"])).len(),
        10
    );
    // INSPECT: 1 000 dependents listed (sorted), the other 500 counted.
    let r = ok(&mut c, &["CACHE.INSPECT", "root"]);
    let deps = strings(&field(&r, "dependents"));
    assert_eq!(deps.len(), 1000);
    assert!(deps.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(int(&field(&r, "dependents_more")), 500);
    let one = ok(&mut c, &["CACHE.INSPECT", "d:0"]);
    assert!(map(&one).iter().all(|(k, _)| k != "dependents_more"));
    // Nothing was removed by the refusals; without the limit the listing is whole.
    assert_eq!(dbsize(&mut c), 1501);
    config_set(&mut c, "cache.max-reply-keys", "0");
    assert_eq!(keys(&mut c, &["KEY", "root"]).len(), 1501);
    assert_eq!(list(&ok(&mut c, &["CACHE.TAGS"])).len(), 1503);
    // STATS' figures, kept as links change, agree with the data.
    let st = ok(&mut c, &["CACHE.STATS"]);
    assert_eq!(int(&field(&st, "tagged_entries")), 1501);
    assert_eq!(int(&field(&st, "dependency_edges")), 1500);
    verify(&mut c);
}

/// CACHE.TAGS while a LAZY mark waits opens each tagged entry: past twice the reply limit it
/// answers TRYAGAIN instead, and answers again once the reclaimer is done.
#[test]
fn tags_while_a_lazy_mark_waits_are_bounded() {
    let s = Server::start();
    let mut c = s.conn();
    config_set(&mut c, "cache.max-reply-keys", "50");
    let mut p = redis::pipe();
    for i in 0..300 {
        p.cmd("CACHE.SET")
            .arg(format!("k:{i}"))
            .arg("v")
            .arg("TAGS")
            .arg(1)
            .arg("all");
    }
    p.query::<()>(&mut c).unwrap();
    ok(&mut c, &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    assert_eq!(
        int(&ok(
            &mut c,
            &["CACHE.INVALIDATE", "STRATEGY", "LAZY", "PATTERN", "k:1*"]
        )),
        111
    );
    let e = err(&mut c, &["CACHE.TAGS", "COUNT", "1"]);
    assert!(
        e.starts_with("TRYAGAIN CACHE.TAGS would open more than 100 entries"),
        "{e}"
    );
    ok(&mut c, &["CACHE.DEBUG", "RECLAIM", "RESUME"]);
    eventually("the mark is reclaimed", || dbsize(&mut c) == 189);
    let top = list(&ok(&mut c, &["CACHE.TAGS", "COUNT", "1"]));
    assert_eq!(
        (text(&list(&top[0])[0]), int(&list(&top[0])[1])),
        ("all".into(), 189)
    );
    verify(&mut c);
}
