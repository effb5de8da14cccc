//! Integration harness: a real server per test, on a free port, in its own temporary directory,
//! with the module loaded. The server binary comes from `TAGCACHE_SERVER` (default
//! `redis-server` on PATH), the module from `TAGCACHE_MODULE` (default the debug build).
#![allow(dead_code)]

pub mod cluster;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use redis::{Connection, Value};

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    module_args: Vec<String>,
    extra: Vec<String>,
}

pub fn server_binary() -> String {
    std::env::var("TAGCACHE_SERVER").unwrap_or_else(|_| "redis-server".into())
}

pub fn module_path() -> PathBuf {
    let p = std::env::var("TAGCACHE_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/libtagcache.so")
        });
    assert!(
        p.exists(),
        "module {} not found: run `cargo build` first (scripts/test.sh does)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Server {
    /// A server with the module and default settings.
    pub fn start() -> Server {
        Server::with(&[], &[])
    }

    /// `module_args` go after the module path on `--loadmodule`; `extra` are server options
    /// such as `["--maxmemory", "1mb"]`.
    pub fn with(module_args: &[&str], extra: &[&str]) -> Server {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("tagcache-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut s = Server {
            child: None,
            port: 0,
            dir,
            module_args: module_args.iter().map(|s| s.to_string()).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        for _attempt in 0..5 {
            self.port = free_port();
            let mut load = vec![module_path().display().to_string()];
            load.extend(self.module_args.iter().cloned());
            let mut cmd = Command::new(server_binary());
            cmd.current_dir(&self.dir)
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--dir", &self.dir.display().to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--enable-debug-command", "yes"])
                .args(["--logfile", "server.log"])
                .arg("--loadmodule")
                .args(&load)
                .args(&self.extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", server_binary()));
            self.child = Some(child);
            if self.wait_ready() {
                return;
            }
            self.kill();
        }
        panic!("server did not start; log:\n{}", self.log());
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if let Ok(mut c) = self.try_conn() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn try_conn(&self) -> redis::RedisResult<Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }

    pub fn conn(&self) -> Connection {
        self.try_conn().expect("connect")
    }

    /// A RESP3 connection.
    pub fn conn3(&self) -> Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", self.port))
            .and_then(|c| c.get_connection())
            .expect("connect resp3")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stops the server (SHUTDOWN with the given mode, e.g. "NOSAVE" or "SAVE") and starts it
    /// again in the same directory, same port if possible.
    pub fn restart(&mut self, shutdown: &str) {
        let mut c = self.conn();
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg(shutdown).query(&mut c);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.launch();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("server dir kept: {}", self.dir.display());
        }
    }
}

/// Runs a command given as string-ish parts.
pub fn cmd<A: redis::ToRedisArgs>(c: &mut Connection, parts: &[A]) -> redis::RedisResult<Value> {
    let mut k =
        redis::cmd(std::str::from_utf8(&parts[0].to_redis_args()[0]).expect("command name"));
    for p in &parts[1..] {
        k.arg(p);
    }
    k.query(c)
}

/// Runs a command that must succeed.
pub fn ok<A: redis::ToRedisArgs>(c: &mut Connection, parts: &[A]) -> Value {
    cmd(c, parts).unwrap_or_else(|e| panic!("command failed: {e}"))
}

/// Runs a command that must fail; returns the error text as the server sent it
/// (e.g. "ERR syntax error", "WRONGTYPE Operation ...").
pub fn err<A: redis::ToRedisArgs>(c: &mut Connection, parts: &[A]) -> String {
    match cmd(c, parts) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            let code = e.code().unwrap_or("");
            let detail = e.detail().unwrap_or("");
            format!("{code} {detail}").trim().to_string()
        }
    }
}

pub fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

pub fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Nil => None,
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        other => panic!("expected a bulk string or nil, got {other:?}"),
    }
}

pub fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a.clone(),
        Value::Nil => vec![],
        other => panic!("expected an array, got {other:?}"),
    }
}

/// An array of bulk strings as UTF-8 (lossy) strings.
pub fn strings(v: &Value) -> Vec<String> {
    list(v)
        .iter()
        .map(|x| String::from_utf8_lossy(&bytes(x).unwrap_or_default()).into_owned())
        .collect()
}

/// A map reply (RESP3 map or RESP2 flat array) as (field, value) pairs in order.
pub fn map(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&bytes(k).unwrap_or_default()).into_owned(),
                    v.clone(),
                )
            })
            .collect(),
        Value::Array(a) => a
            .chunks(2)
            .map(|p| {
                (
                    String::from_utf8_lossy(&bytes(&p[0]).unwrap_or_default()).into_owned(),
                    p[1].clone(),
                )
            })
            .collect(),
        other => panic!("expected a map, got {other:?}"),
    }
}

/// One field of a map reply.
pub fn field(v: &Value, name: &str) -> Value {
    map(v)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {name} in {v:?}"))
}

/// CACHE.KEYS <selector...> as strings.
pub fn keys(c: &mut Connection, selector: &[&str]) -> Vec<String> {
    let mut parts = vec!["CACHE.KEYS"];
    parts.extend_from_slice(selector);
    strings(&ok(c, &parts))
}

/// Asserts CACHE.DEBUG VERIFY reports no difference.
pub fn verify(c: &mut Connection) {
    let diffs = strings(&ok(c, &["CACHE.DEBUG", "VERIFY"]));
    assert!(diffs.is_empty(), "CACHE.DEBUG VERIFY: {diffs:#?}");
}

/// A fingerprint of the whole dataset, to check that a rejected command changed nothing.
pub fn digest(c: &mut Connection) -> String {
    let d: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(c)
        .expect("DEBUG DIGEST");
    d
}

/// The server's flavour and version, e.g. ("valkey", 8, 1) or ("redis", 7, 0).
pub fn server_version(c: &mut Connection) -> (String, u32, u32) {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(c)
        .expect("INFO server");
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let (flavour, version) = match field("valkey_version:") {
        Some(v) => ("valkey", v),
        None => ("redis", field("redis_version:").unwrap_or_default()),
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (flavour.to_string(), major, minor)
}

// ---------------------------------------------------------------------------------------------
// Replication helpers (a master and its replica, each a real server).
// ---------------------------------------------------------------------------------------------

/// A master that starts a full sync at once and does not ping its replicas during a test (the
/// periodic PING would move `master_repl_offset`).
pub fn master() -> Server {
    Server::with(
        &[],
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-ping-replica-period",
            "3600",
        ],
    )
}

/// A replica of `m`, attached from its start.
pub fn replica_of(m: &Server) -> Server {
    let port = m.port.to_string();
    Server::with(&[], &["--replicaof", "127.0.0.1", &port])
}

/// One `INFO` section as text.
pub fn info(c: &mut Connection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query::<String>(c)
        .expect("INFO")
}

/// One field of an `INFO` section.
pub fn info_field(c: &mut Connection, section: &str, name: &str) -> String {
    let text = info(c, section);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in INFO {section}:\n{text}"))
}

pub fn repl_offset(c: &mut Connection) -> i64 {
    info_field(c, "replication", "master_repl_offset")
        .parse()
        .expect("offset")
}

/// Polls `cond` every 10 ms until it holds; fails after 20 s.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until the replica's link to its master is up.
pub fn wait_link(r: &mut Connection) {
    eventually("replica link up", || {
        info(r, "replication").contains("master_link_status:up")
    });
}

/// Waits until the replica acknowledged everything the master propagated, then (bounded) until
/// both datasets have the same digest.
pub fn sync(m: &mut Connection, r: &mut Connection) {
    assert_eq!(int(&ok(m, &["WAIT", "1", "5000"])), 1, "WAIT 1 5000");
    eventually("replica converged", || digest(m) == digest(r));
}

// ---------------------------------------------------------------------------------------------
// Small command helpers shared by the suites.
// ---------------------------------------------------------------------------------------------

/// An entry `key` with value `v-<key>`, tags and dependencies; must reply OK.
pub fn entry(c: &mut Connection, key: &str, tags: &[&str], deps: &[&str]) {
    let mut p: Vec<String> = vec!["CACHE.SET".into(), key.into(), format!("v-{key}")];
    for (word, names) in [("TAGS", tags), ("DEPENDS", deps)] {
        if !names.is_empty() {
            p.push(word.into());
            p.push(names.len().to_string());
            p.extend(names.iter().map(|s| s.to_string()));
        }
    }
    assert_eq!(ok(c, &p), Value::Okay, "{p:?}");
}

pub fn select(c: &mut Connection, db: u32) {
    assert_eq!(ok(c, &["SELECT", &db.to_string()]), Value::Okay);
}

pub fn config_set(c: &mut Connection, name: &str, value: &str) {
    assert_eq!(
        ok(c, &["CONFIG", "SET", name, value]),
        Value::Okay,
        "CONFIG SET {name} {value}"
    );
}

/// `CONFIG GET name` -> its value.
pub fn config_get(c: &mut Connection, name: &str) -> String {
    let v = strings(&ok(c, &["CONFIG", "GET", name]));
    assert_eq!(v.len(), 2, "CONFIG GET {name}: {v:?}");
    assert_eq!(v[0], name);
    v[1].clone()
}

/// `CACHE.GET key` as text.
pub fn get(c: &mut Connection, key: &str) -> Option<String> {
    bytes(&ok(c, &["CACHE.GET", key])).map(|b| String::from_utf8(b).expect("utf-8"))
}

pub fn dbsize(c: &mut Connection) -> i64 {
    int(&ok(c, &["DBSIZE"]))
}

pub fn pttl(c: &mut Connection, key: &str) -> i64 {
    int(&ok(c, &["PTTL", key]))
}

/// `(name, count)` pairs as owned strings, to compare with a reply.
pub fn pairs(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

/// The server's clock (TIME) in milliseconds.
pub fn server_ms(c: &mut Connection) -> i64 {
    let t = strings(&ok(c, &["TIME"]));
    let secs: i64 = t[0].parse().expect("seconds");
    let us: i64 = t[1].parse().expect("microseconds");
    secs * 1000 + us / 1000
}

// ---------------------------------------------------------------------------------------------
// DUMP payloads.
// ---------------------------------------------------------------------------------------------

/// Redis's CRC-64 (Jones polynomial, reflected, as DUMP payloads carry it).
pub fn crc64(data: &[u8]) -> u64 {
    let mut crc = 0u64;
    for &byte in data {
        crc ^= u64::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x95ac_9329_ac4b_c9b5
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Recomputes the checksum in a payload's footer, so the server hands the bytes to the module.
pub fn reseal(mut v: Vec<u8>) -> Vec<u8> {
    let n = v.len() - 8;
    let crc = crc64(&v[..n]);
    v[n..].copy_from_slice(&crc.to_le_bytes());
    v
}

/// A string reply as text (nil is a test failure).
pub fn text(v: &Value) -> String {
    String::from_utf8(bytes(v).expect("a string, not nil")).expect("utf-8")
}

pub fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A command written as one line of text, split at spaces (no quoting): its reply, which must
/// not be an error. `send(c, "CACHE.SET k v TAGS 1 t")`.
pub fn send(c: &mut Connection, line: &str) -> Value {
    ok(c, &line.split_whitespace().collect::<Vec<_>>())
}

/// A connection authenticated as ACL user `name` (password `pw`, as the tests create users).
pub fn as_user(s: &Server, name: &str) -> Connection {
    let mut c = s.conn();
    ok(&mut c, &["AUTH", name, "pw"]);
    c
}

/// `CACHE.STATS JSON`, parsed.
pub fn stats(c: &mut Connection) -> serde_json::Value {
    parse_stats(&ok(c, &["CACHE.STATS", "JSON"]))
}

/// A `CACHE.STATS JSON` reply, parsed.
pub fn parse_stats(v: &Value) -> serde_json::Value {
    let raw = text(v);
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("CACHE.STATS JSON: {e}: {raw}"))
}

/// A numeric field of `INFO cache` (`cache_entries`, ...).
pub fn info_cache(c: &mut Connection, name: &str) -> u64 {
    let value = info_field(c, "cache", name);
    value
        .parse()
        .unwrap_or_else(|_| panic!("INFO cache {name} is not a count: {value}"))
}

pub fn exists(c: &mut Connection, key: &str) -> i64 {
    int(&ok(c, &["EXISTS", key]))
}

/// One CACHE.EVENTS row: type, pattern, keys_invalidated, context, strategy.
pub type Ev = (String, String, i64, String, String);

/// CACHE.EVENTS, newest first.
pub fn events(c: &mut Connection) -> Vec<Ev> {
    list(&ok(c, &["CACHE.EVENTS"]))
        .iter()
        .map(|e| {
            (
                text(&field(e, "type")),
                text(&field(e, "pattern")),
                int(&field(e, "keys_invalidated")),
                // No context reads as nil; "" here.
                bytes(&field(e, "context"))
                    .map(|b| String::from_utf8(b).expect("utf-8"))
                    .unwrap_or_default(),
                text(&field(e, "strategy")),
            )
        })
        .collect()
}

pub fn ev(kind: &str, pattern: &str, keys: i64, ctx: &str, strategy: &str) -> Ev {
    (
        kind.into(),
        pattern.into(),
        keys,
        ctx.into(),
        strategy.into(),
    )
}

// ---------------------------------------------------------------------------------------------
// Seeded models (tests/workload.rs, tests/strategies.rs).
// ---------------------------------------------------------------------------------------------

/// xorshift64*: tiny, deterministic, good enough to pick operations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
}

/// splitmix64: spreads consecutive seeds over the xorshift state (never 0).
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// An environment variable as a number (unset or not a number: None).
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

/// Redis glob matching (`*`, `?`, `[...]` with ranges and `^`, `\` escapes) for the model.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else { return false };
            let mut i = 1;
            let negate = p.get(1) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            while i < p.len() && p[i] != b']' {
                if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
                    let (lo, hi) = (p[i].min(p[i + 2]), p[i].max(p[i + 2]));
                    hit |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    hit |= p[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob(&p[(i + 1).min(p.len())..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}
