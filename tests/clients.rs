//! What other clients see: keyspace notifications and CLIENT TRACKING invalidation messages.
//!
//! Notifications: `cache.set`, `cache.tag` and `cache.depend` are module-class (`d`) events
//! (`cache.tag`/`cache.depend` only when something was added), `del` (generic class) for every
//! key an invalidation removes; nothing for reads or rejected commands.
//!
//! Pub/sub and push messages are read with a tiny RESP client over a plain TcpStream. To know
//! that every message a command caused has arrived, the listening connection sends PING after
//! the command returned: the server appends messages to a client's output in order, so every
//! message before the PONG is all there is.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis::ConnectionLike;

/// A RESP2/RESP3 value as the wire has it.
#[derive(Debug, Clone, PartialEq)]
enum R {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<R>),
    Map(Vec<(R, R)>),
    Push(Vec<R>),
    Other(String),
}

impl R {
    fn text(&self) -> String {
        match self {
            R::Simple(s) | R::Error(s) | R::Other(s) => s.clone(),
            R::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            R::Int(n) => n.to_string(),
            other => panic!("not a string: {other:?}"),
        }
    }

    fn items(&self) -> Vec<R> {
        match self {
            R::Array(a) | R::Push(a) => a.clone(),
            R::Null => vec![],
            other => panic!("not an array: {other:?}"),
        }
    }
}

struct Resp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Resp {
    fn connect(s: &Server) -> Resp {
        let stream = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Resp {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    /// A RESP3 connection (HELLO 3).
    fn connect3(s: &Server) -> Resp {
        let mut c = Resp::connect(s);
        match c.call(&["HELLO", "3"]) {
            R::Map(_) => c,
            other => panic!("HELLO 3: {other:?}"),
        }
    }

    fn send(&mut self, parts: &[&str]) {
        let mut out = format!("*{}\r\n", parts.len()).into_bytes();
        for p in parts {
            out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out).expect("write");
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.reader.read_line(&mut l).expect("read");
        assert!(n > 0, "connection closed");
        l.trim_end_matches("\r\n").to_string()
    }

    fn read(&mut self) -> R {
        let l = self.line();
        let (kind, rest) = l.split_at(1);
        let num = || rest.parse::<i64>().expect("length");
        match kind {
            "+" => R::Simple(rest.into()),
            "-" => R::Error(rest.into()),
            ":" => R::Int(num()),
            "_" => R::Null,
            "$" | "=" | "!" => {
                let n = num();
                if n < 0 {
                    return R::Null;
                }
                let mut buf = vec![0; n as usize + 2];
                self.reader.read_exact(&mut buf).expect("bulk");
                buf.truncate(n as usize);
                if kind == "!" {
                    R::Error(String::from_utf8_lossy(&buf).into_owned())
                } else {
                    R::Bulk(buf)
                }
            }
            "*" | "~" | ">" => {
                let n = num();
                if n < 0 {
                    return R::Null;
                }
                let items = (0..n).map(|_| self.read()).collect();
                if kind == ">" {
                    R::Push(items)
                } else {
                    R::Array(items)
                }
            }
            "%" | "|" => {
                let n = num();
                let pairs: Vec<(R, R)> = (0..n).map(|_| (self.read(), self.read())).collect();
                if kind == "|" {
                    // An attribute precedes the real reply.
                    return self.read();
                }
                R::Map(pairs)
            }
            "," | "(" | "#" => R::Other(rest.into()),
            other => panic!("unknown RESP type {other:?} in {l:?}"),
        }
    }

    /// Sends a command and returns its reply; push messages read on the way are dropped
    /// (callers that care use `ping_collect`).
    fn call(&mut self, parts: &[&str]) -> R {
        self.send(parts);
        loop {
            match self.read() {
                R::Push(_) => continue,
                r => return r,
            }
        }
    }

    /// Sends PING and returns every message that arrived before its reply (RESP3 pushes, or
    /// RESP2 pub/sub messages on a subscribed connection).
    fn ping_collect(&mut self) -> Vec<R> {
        self.send(&["PING"]);
        let mut out = Vec::new();
        loop {
            let r = self.read();
            match &r {
                R::Simple(s) if s == "PONG" => return out,
                // A subscribed RESP2 client answers PING with ["pong", ""].
                R::Array(a) if a.first().map(|x| x.text()) == Some("pong".into()) => return out,
                _ => out.push(r),
            }
        }
    }
}

/// Keys named by RESP3 `invalidate` pushes.
fn invalidated3(msgs: &[R]) -> Vec<String> {
    let mut out = Vec::new();
    for m in msgs {
        let R::Push(items) = m else {
            panic!("unexpected message {m:?}")
        };
        assert_eq!(items[0].text(), "invalidate", "{m:?}");
        out.extend(items[1].items().iter().map(R::text));
    }
    out.sort();
    out
}

/// Keys named by RESP2 `__redis__:invalidate` messages.
fn invalidated2(msgs: &[R]) -> Vec<String> {
    let mut out = Vec::new();
    for m in msgs {
        let items = m.items();
        assert_eq!(items[0].text(), "message", "{m:?}");
        assert_eq!(items[1].text(), "__redis__:invalidate", "{m:?}");
        out.extend(items[2].items().iter().map(R::text));
    }
    out.sort();
    out
}

/// `(event, key)` pairs of keyevent pmessages, in arrival order.
fn events(msgs: &[R]) -> Vec<(String, String)> {
    msgs.iter()
        .map(|m| {
            let items = m.items();
            assert_eq!(items[0].text(), "pmessage", "{m:?}");
            let channel = items[2].text();
            let event = channel
                .strip_prefix("__keyevent@0__:")
                .unwrap_or_else(|| panic!("channel {channel}"))
                .to_string();
            (event, items[3].text())
        })
        .collect()
}

fn ev(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(e, k)| (e.to_string(), k.to_string()))
        .collect()
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// A server with notifications for every class (`A` includes the module class `d` on every
/// server tried) and a subscriber to db 0's keyevent channels.
fn notifying() -> (Server, Connection, Resp) {
    let s = Server::start();
    let mut c = s.conn();
    ok(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    let mut sub = Resp::connect(&s);
    let r = sub.call(&["PSUBSCRIBE", "__keyevent@0__:*"]);
    assert_eq!(r.items()[0].text(), "psubscribe");
    (s, c, sub)
}

#[test]
fn notifications_for_writes_and_invalidations() {
    let (_s, mut c, mut sub) = notifying();
    let step = |c: &mut Connection, sub: &mut Resp, parts: &[&str], want: Value| {
        assert_eq!(ok(c, parts), want, "{parts:?}");
        events(&sub.ping_collect())
    };

    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.SET", "a", "1", "TAGS", "1", "t1"],
        Value::Okay,
    );
    assert_eq!(e, ev(&[("cache.set", "a")]));
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.SET", "b", "2", "DEPENDS", "1", "a", "EX", "100"],
        Value::Okay,
    );
    assert_eq!(e, ev(&[("cache.set", "b")]));
    let e = step(
        &mut c,
        &mut sub,
        &[
            "CACHE.SET",
            "c",
            "3",
            "DEPENDS",
            "1",
            "b",
            "TAGS",
            "2",
            "t1",
            "t2",
        ],
        Value::Okay,
    );
    assert_eq!(e, ev(&[("cache.set", "c")]));
    // Overwriting: one cache.set, nothing else.
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.SET", "a", "1b", "TAGS", "1", "t1", "META", "{}"],
        Value::Okay,
    );
    assert_eq!(e, ev(&[("cache.set", "a")]));
    // Conditions not met: no write, no event.
    let e = step(&mut c, &mut sub, &["CACHE.SET", "a", "x", "NX"], Value::Nil);
    assert_eq!(e, ev(&[]));
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.SET", "zz", "x", "XX"],
        Value::Nil,
    );
    assert_eq!(e, ev(&[]));
    // CACHE.TAG / CACHE.DEPEND: an event only when something was added.
    let e = step(&mut c, &mut sub, &["CACHE.TAG", "a", "t1"], Value::Int(0));
    assert_eq!(e, ev(&[]));
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.TAG", "a", "t3", "t1", "t4"],
        Value::Int(2),
    );
    assert_eq!(e, ev(&[("cache.tag", "a")]));
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.DEPEND", "a", "row:1"],
        Value::Int(1),
    );
    assert_eq!(e, ev(&[("cache.depend", "a")]));
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.DEPEND", "a", "row:1"],
        Value::Int(0),
    );
    assert_eq!(e, ev(&[]));

    // Invalidation by key cascades a -> b -> c: one del each.
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.INVALIDATE", "KEY", "a"],
        Value::Int(3),
    );
    assert_eq!(sorted(e), ev(&[("del", "a"), ("del", "b"), ("del", "c")]));
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.INVALIDATE", "TAG", "t1"],
        Value::Int(0),
    );
    assert_eq!(e, ev(&[]));
    for k in ["p:1", "p:2", "q:1"] {
        ok(&mut c, &["CACHE.SET", k, "v", "TAGS", "1", "t"]);
    }
    sub.ping_collect();
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.INVALIDATE", "NAMESPACE", "p"],
        Value::Int(2),
    );
    assert_eq!(sorted(e), ev(&[("del", "p:1"), ("del", "p:2")]));
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.INVALIDATE", "DEPTH", "0", "PATTERN", "q*"],
        Value::Int(1),
    );
    assert_eq!(e, ev(&[("del", "q:1")]));

    // A deadline already past: the module removes the old entry (one del) and stores nothing,
    // as SET with a past EXAT would; for a missing key nothing happens at all.
    ok(&mut c, &["CACHE.SET", "old", "v"]);
    sub.ping_collect();
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.SET", "old", "v", "PXAT", "1"],
        Value::Okay,
    );
    assert_eq!(e, ev(&[("del", "old")]));
    let e = step(
        &mut c,
        &mut sub,
        &["CACHE.SET", "never", "v", "PXAT", "1"],
        Value::Okay,
    );
    assert_eq!(e, ev(&[]));
    assert_eq!(int(&ok(&mut c, &["EXISTS", "old", "never"])), 0);
    verify(&mut c);
}

#[test]
fn no_notifications_for_reads_or_rejected_commands() {
    let (_s, mut c, mut sub) = notifying();
    ok(&mut c, &["CACHE.SET", "a", "1", "TAGS", "1", "t1"]);
    ok(&mut c, &["CACHE.SET", "b", "2", "DEPENDS", "1", "a"]);
    ok(&mut c, &["SET", "plain", "s"]);
    assert_eq!(
        events(&sub.ping_collect()),
        ev(&[("cache.set", "a"), ("cache.set", "b"), ("set", "plain")])
    );
    let d0 = digest(&mut c);

    ok(&mut c, &["CACHE.GET", "a"]);
    ok(&mut c, &["CACHE.GET", "missing"]);
    ok(&mut c, &["CACHE.MGET", "a", "b", "missing", "plain"]);
    ok(&mut c, &["CACHE.INSPECT", "a"]);
    ok(&mut c, &["CACHE.INSPECT", "missing"]);
    assert_eq!(keys(&mut c, &["TAG", "t1"]), vec!["a", "b"]);
    assert_eq!(keys(&mut c, &["ALL"]), vec!["a", "b"]);
    ok(&mut c, &["CACHE.TAGS"]);
    ok(&mut c, &["CACHE.DEBUG", "VERIFY"]);
    let rejected: &[(&[&str], &str)] = &[
        (&["CACHE.SET", "a", "v", "EX", "0"], "ERR invalid expire time in 'cache.set' command"),
        (&["CACHE.SET", "a", "v", "BOGUS"], "ERR syntax error"),
        (&["CACHE.SET", "a", "v", "TAGS", "2", "x"], "ERR syntax error"),
        (&["CACHE.SET", "plain", "v"], WRONGTYPE),
        (&["CACHE.TAG", "missing", "t"], "ERR no such key"),
        (&["CACHE.TAG", "plain", "t"], WRONGTYPE),
        (&["CACHE.DEPEND", "plain", "r"], WRONGTYPE),
        (&["CACHE.GET", "plain"], WRONGTYPE),
        (&["CACHE.INSPECT", "plain"], WRONGTYPE),
        (&["CACHE.INVALIDATE", "STRATEGY", "SOON", "TAG", "t1"], "ERR unknown strategy 'SOON', expected IMMEDIATE, LAZY, BATCHED or SOFT"),
        (&["CACHE.INVALIDATE", "BOGUS"], "ERR unknown selector 'BOGUS', expected KEY, TAG, PATTERN, NAMESPACE, ALL or DEPENDENTS"),
        (&["CACHE.INVALIDATE", "DEPTH", "x", "ALL"], "ERR value is not an integer or out of range"),
    ];
    for (parts, want) in rejected {
        assert_eq!(err(&mut c, parts), *want, "{parts:?}");
    }
    assert_eq!(events(&sub.ping_collect()), ev(&[]));
    assert_eq!(digest(&mut c), d0);
    assert_eq!(keys(&mut c, &["TAG", "t1"]), vec!["a", "b"]);
    verify(&mut c);
}

/// A tracking client (RESP3, default mode) and a second, plain connection for the writes.
fn tracking() -> (Server, Connection, Resp) {
    let s = Server::start();
    let c = s.conn();
    let mut t = Resp::connect3(&s);
    assert_eq!(
        t.call(&["CLIENT", "TRACKING", "ON"]),
        R::Simple("OK".into())
    );
    (s, c, t)
}

/// The tracking client reads `key` with CACHE.GET and gets `want`.
fn read(t: &mut Resp, key: &str, want: Option<&str>) {
    let got = t.call(&["CACHE.GET", key]);
    match want {
        Some(v) => assert_eq!(got, R::Bulk(v.as_bytes().to_vec()), "CACHE.GET {key}"),
        None => assert_eq!(got, R::Null, "CACHE.GET {key}"),
    }
}

#[test]
fn tracking_resp3_invalidations_by_cache_commands() {
    let (_s, mut c, mut t) = tracking();
    for (k, tag) in [("k1", "red"), ("k2", "blue"), ("u:1", "x"), ("u:2", "x")] {
        ok(&mut c, &["CACHE.SET", k, "v", "TAGS", "1", tag]);
    }
    ok(&mut c, &["CACHE.SET", "dep", "v", "DEPENDS", "1", "k2"]);
    ok(&mut c, &["CACHE.SET", "dep2", "v", "DEPENDS", "1", "dep"]);
    for k in ["k1", "k2", "u:1", "dep", "dep2"] {
        read(&mut t, k, Some("v"));
    }
    assert_eq!(invalidated3(&t.ping_collect()), Vec::<String>::new());

    // By tag: only k1 (u:2 was never read, k2 is blue).
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "TAG", "red"])), 1);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["k1"]);
    // By pattern.
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "PATTERN", "u:*"])), 2);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["u:1"]);
    // Cascade: dep and dep2 depend (transitively) on k2.
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "KEY", "k2"])), 3);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["dep", "dep2", "k2"]);
    // Each read is reported once: a second invalidation of the same, recreated keys is not.
    ok(&mut c, &["CACHE.SET", "k1", "v", "TAGS", "1", "red"]);
    assert_eq!(invalidated3(&t.ping_collect()), Vec::<String>::new());

    // Namespace and dependents.
    ok(&mut c, &["CACHE.SET", "n:1", "v"]);
    ok(&mut c, &["CACHE.SET", "r1", "v", "DEPENDS", "1", "row:7"]);
    read(&mut t, "n:1", Some("v"));
    read(&mut t, "r1", Some("v"));
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "NAMESPACE", "n"])), 1);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["n:1"]);
    assert_eq!(
        int(&ok(&mut c, &["CACHE.INVALIDATE", "DEPENDENTS", "row:7"])),
        1
    );
    assert_eq!(invalidated3(&t.ping_collect()), vec!["r1"]);

    // A key read while missing is reported when CACHE.SET creates it.
    read(&mut t, "later", None);
    ok(&mut c, &["CACHE.SET", "later", "v"]);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["later"]);

    // CACHE.MGET and CACHE.INSPECT remember their keys too.
    ok(&mut c, &["CACHE.SET", "m1", "v", "TAGS", "1", "m"]);
    ok(&mut c, &["CACHE.SET", "m2", "v", "TAGS", "1", "m"]);
    ok(&mut c, &["CACHE.SET", "i1", "v", "TAGS", "1", "m"]);
    assert_eq!(t.call(&["CACHE.MGET", "m1", "m2", "nope"]).items().len(), 3);
    assert!(matches!(t.call(&["CACHE.INSPECT", "i1"]), R::Map(_)));
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "TAG", "m"])), 3);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["i1", "m1", "m2"]);
    verify(&mut c);
}

#[test]
fn tracking_resp3_overwrite_and_plain_commands() {
    let (_s, mut c, mut t) = tracking();
    ok(&mut c, &["CACHE.SET", "a", "1", "TAGS", "1", "t"]);
    ok(&mut c, &["CACHE.SET", "b", "1", "TAGS", "1", "t"]);
    ok(&mut c, &["CACHE.SET", "d", "1", "TAGS", "1", "t"]);
    read(&mut t, "a", Some("1"));
    read(&mut t, "b", Some("1"));
    read(&mut t, "d", Some("1"));

    // Overwrite with CACHE.SET.
    ok(&mut c, &["CACHE.SET", "a", "2", "TAGS", "1", "t"]);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["a"]);
    read(&mut t, "a", Some("2"));
    // Overwrite with a plain SET: the entry is gone from the index as well.
    ok(&mut c, &["SET", "a", "plain"]);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["a"]);
    assert_eq!(keys(&mut c, &["TAG", "t"]), vec!["b", "d"]);
    // DEL.
    assert_eq!(int(&ok(&mut c, &["DEL", "b"])), 1);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["b"]);
    // CACHE.TAG changes the entry: its readers hear of it.
    assert_eq!(int(&ok(&mut c, &["CACHE.TAG", "d", "t2"])), 1);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["d"]);
    assert_eq!(keys(&mut c, &["TAG", "t2"]), vec!["d"]);
    verify(&mut c);
}

#[test]
fn tracking_resp3_expiry() {
    let (_s, mut c, mut t) = tracking();
    // The read must see the entry before it expires: retry with a longer TTL if it did not.
    let mut px = 200;
    loop {
        ok(
            &mut c,
            &[
                "CACHE.SET",
                "e",
                "v",
                "PX",
                &px.to_string(),
                "TAGS",
                "1",
                "t",
            ],
        );
        if t.call(&["CACHE.GET", "e"]) == R::Bulk(b"v".to_vec()) {
            break;
        }
        px *= 2;
        assert!(px < 60_000, "could not read the entry before it expired");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(Instant::now() < deadline, "no invalidation for the expiry");
        std::thread::sleep(Duration::from_millis(20));
        // Another client's access expires the key if the active cycle has not yet.
        ok(&mut c, &["EXISTS", "e"]);
        got = invalidated3(&t.ping_collect());
    }
    assert_eq!(got, vec!["e"]);
    assert_eq!(keys(&mut c, &["TAG", "t"]), Vec::<String>::new());
    assert_eq!(keys(&mut c, &["ALL"]), Vec::<String>::new());
    verify(&mut c);
}

#[test]
fn tracking_resp3_eviction() {
    let s = Server::with(&[], &["--maxmemory-policy", "volatile-lru"]);
    let mut c = s.conn();
    let mut t = Resp::connect3(&s);
    assert_eq!(
        t.call(&["CLIENT", "TRACKING", "ON"]),
        R::Simple("OK".into())
    );
    // Only `ev` has a TTL, so under volatile-lru it is the only key eviction may take.
    ok(
        &mut c,
        &["CACHE.SET", "ev", "v", "EX", "1000", "TAGS", "1", "t"],
    );
    ok(&mut c, &["CACHE.SET", "keep", "v", "TAGS", "1", "t"]);
    read(&mut t, "ev", Some("v"));
    read(&mut t, "keep", Some("v"));
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no invalidation for the eviction"
        );
        // Any command runs the eviction first.
        ok(&mut c, &["PING"]);
        got = invalidated3(&t.ping_collect());
        if got.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(got, vec!["ev"]);
    assert_eq!(keys(&mut c, &["TAG", "t"]), vec!["keep"]);
    assert_eq!(int(&ok(&mut c, &["EXISTS", "ev"])), 0);
    verify(&mut c);
}

#[test]
fn tracking_resp2_redirect() {
    let s = Server::start();
    let mut c = s.conn();
    let mut a = Resp::connect(&s);
    let id = a.call(&["CLIENT", "ID"]).text();
    let r = a.call(&["SUBSCRIBE", "__redis__:invalidate"]);
    assert_eq!(r.items()[0].text(), "subscribe");
    let mut b = Resp::connect(&s);
    assert_eq!(
        b.call(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id]),
        R::Simple("OK".into())
    );
    for k in ["k1", "k2", "k3", "k4"] {
        ok(&mut c, &["CACHE.SET", k, "v", "TAGS", "1", "t"]);
    }
    ok(&mut c, &["CACHE.SET", "k5", "v", "DEPENDS", "1", "k4"]);
    assert_eq!(b.call(&["CACHE.GET", "k1"]), R::Bulk(b"v".to_vec()));
    assert_eq!(
        b.call(&["CACHE.MGET", "k2", "k3", "k5", "none"]),
        R::Array(vec![
            R::Bulk(b"v".to_vec()),
            R::Bulk(b"v".to_vec()),
            R::Bulk(b"v".to_vec()),
            R::Null
        ])
    );
    assert_eq!(invalidated2(&a.ping_collect()), Vec::<String>::new());

    assert_eq!(
        int(&ok(&mut c, &["CACHE.INVALIDATE", "KEY", "k1", "k2"])),
        2
    );
    assert_eq!(invalidated2(&a.ping_collect()), vec!["k1", "k2"]);
    // k5 goes by cascade from k4 (which B never read).
    assert_eq!(int(&ok(&mut c, &["CACHE.INVALIDATE", "KEY", "k4"])), 2);
    assert_eq!(invalidated2(&a.ping_collect()), vec!["k5"]);
    ok(&mut c, &["CACHE.SET", "k3", "w"]);
    assert_eq!(invalidated2(&a.ping_collect()), vec!["k3"]);
    // B itself got nothing inline (RESP2 with a redirect).
    assert_eq!(b.call(&["PING"]), R::Simple("PONG".into()));
    verify(&mut c);
}

#[test]
fn command_info_declares_read_only_commands_and_keys() {
    let s = Server::start();
    let mut c = s.conn();
    // (command, readonly, first key, last key, step)
    for (name, readonly, first, last, step) in [
        ("cache.get", true, 1, 1, 1),
        ("cache.mget", true, 1, -1, 1),
        ("cache.inspect", true, 1, 1, 1),
        ("cache.set", false, 1, 1, 1),
        ("cache.tag", false, 1, 1, 1),
        ("cache.depend", false, 1, 1, 1),
    ] {
        let info = list(&ok(&mut c, &["COMMAND", "INFO", name]));
        assert_eq!(info.len(), 1, "{name}");
        let doc = list(&info[0]);
        assert_eq!(strings(&Value::Array(vec![doc[0].clone()])), vec![name]);
        let flags: Vec<String> = list(&doc[2])
            .iter()
            .map(|f| match f {
                Value::SimpleString(s) => s.clone(),
                Value::Okay => "OK".into(),
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("flag {other:?}"),
            })
            .collect();
        assert_eq!(
            flags.iter().any(|f| f == "readonly"),
            readonly,
            "{name}: {flags:?}"
        );
        assert_eq!(
            flags.iter().any(|f| f == "write"),
            !readonly,
            "{name}: {flags:?}"
        );
        assert_eq!(
            (int(&doc[3]), int(&doc[4]), int(&doc[5])),
            (first, last, step),
            "{name} key positions"
        );
    }
    // The keys of a call, as the server (and so tracking) extracts them.
    assert_eq!(
        strings(&ok(
            &mut c,
            &["COMMAND", "GETKEYS", "CACHE.MGET", "a", "b", "c"]
        )),
        vec!["a", "b", "c"]
    );
    assert_eq!(
        strings(&ok(&mut c, &["COMMAND", "GETKEYS", "CACHE.GET", "a"])),
        vec!["a"]
    );
    verify(&mut c);
}

// ---------------------------------------------------------------------------------------------
// Issue 21: what WATCH, CLIENT TRACKING and keyspace events see, strategy by strategy
// ---------------------------------------------------------------------------------------------

/// A tracking client that read a key a LAZY mark covers hears of it when the mark is made, not
/// only when the reclaimer deletes the key (defect 6's tracking half).
#[test]
fn tracking_hears_of_a_lazy_mark_at_once() {
    let (_s, mut c, mut t) = tracking();
    ok(&mut c, &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    ok(&mut c, &["CACHE.SET", "k", "v", "TAGS", "1", "t"]);
    ok(&mut c, &["CACHE.SET", "dep", "v", "DEPENDS", "1", "k"]);
    ok(&mut c, &["CACHE.SET", "other", "v", "TAGS", "1", "o"]);
    for k in ["k", "dep", "other"] {
        read(&mut t, k, Some("v"));
    }
    assert_eq!(
        int(&ok(
            &mut c,
            &["CACHE.INVALIDATE", "STRATEGY", "LAZY", "TAG", "t"]
        )),
        2,
        "k, and dep through the cascade"
    );
    assert_eq!(invalidated3(&t.ping_collect()), vec!["dep", "k"]);
    // The reclaimer's DEL later: the client read nothing since, so nothing more.
    ok(&mut c, &["CACHE.DEBUG", "RECLAIM", "STEP"]);
    assert_eq!(int(&ok(&mut c, &["EXISTS", "k", "dep"])), 0);
    assert_eq!(invalidated3(&t.ping_collect()), Vec::<String>::new());
    read(&mut t, "other", Some("v"));
    verify(&mut c);
}

/// What one strategy's invalidation of `k` showed: at the command (for a stepped IMMEDIATE:
/// once its mark is made, before its steps), then after its background work (the reclaimer's
/// steps, the BATCHED queue applied, the SOFT grace's end).
#[derive(Debug, PartialEq)]
struct Seen {
    events: Vec<(String, String)>,
    tracked: Vec<String>,
    /// A transaction watching `k` from before this moment still ran (false: EXEC failed).
    exec_ran: bool,
}

fn seen(events: &[(&str, &str)], tracked: &[&str], exec_ran: bool) -> Seen {
    Seen {
        events: ev(events),
        tracked: tracked.iter().map(|s| s.to_string()).collect(),
        exec_ran,
    }
}

/// Runs `MULTI` / `PING` / `EXEC` on a connection that watches: whether EXEC ran.
fn exec_runs(w: &mut Connection) -> bool {
    assert_eq!(ok(w, &["MULTI"]), Value::Okay);
    ok(w, &["PING"]);
    match w.req_command(&redis::cmd("EXEC")).expect("EXEC") {
        Value::Nil => false,
        Value::Array(_) => true,
        other => panic!("EXEC: {other:?}"),
    }
}

/// Measures `strategy` ("IMMEDIATE", "STEPPED", "LAZY", "SOFT", "BATCHED") on one entry `k`:
/// (at the command, after the background work).
fn measure(strategy: &str) -> (Seen, Seen) {
    let (s, mut c, mut sub) = notifying();
    let mut t = Resp::connect3(&s);
    assert_eq!(
        t.call(&["CLIENT", "TRACKING", "ON"]),
        R::Simple("OK".into())
    );
    ok(&mut c, &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    config_set(&mut c, "cache.batch-delay-ms", "5000");
    ok(&mut c, &["CACHE.SET", "k", "v", "TAGS", "1", "t"]);
    let _ = sub.ping_collect();
    let mut w1 = s.conn();
    assert_eq!(ok(&mut w1, &["WATCH", "k"]), Value::Okay);
    read(&mut t, "k", Some("v"));
    let mut blocked = s.conn();
    match strategy {
        "STEPPED" => {
            config_set(&mut c, "cache.stepped-threshold", "1");
            let cmd = redis::cmd("CACHE.INVALIDATE")
                .arg("TAG")
                .arg("t")
                .get_packed_command();
            blocked.send_packed_command(&cmd).expect("send");
            eventually("the stepped invalidation's mark", || {
                get(&mut c, "k").is_none()
            });
        }
        "SOFT" => {
            let n = ok(
                &mut c,
                &[
                    "CACHE.INVALIDATE",
                    "STRATEGY",
                    "SOFT",
                    "GRACE",
                    "1",
                    "TAG",
                    "t",
                ],
            );
            assert_eq!(int(&n), 1);
        }
        other => {
            let n = ok(&mut c, &["CACHE.INVALIDATE", "STRATEGY", other, "TAG", "t"]);
            assert_eq!(int(&n), if other == "BATCHED" { 0 } else { 1 });
        }
    }
    let at_command = Seen {
        events: events(&sub.ping_collect()),
        tracked: invalidated3(&t.ping_collect()),
        exec_ran: exec_runs(&mut w1),
    };
    // Read again (a miss, or still a hit for BATCHED) and watched again: does the background
    // work tell these too?
    let mut w2 = s.conn();
    assert_eq!(ok(&mut w2, &["WATCH", "k"]), Value::Okay);
    let _ = t.call(&["CACHE.GET", "k"]);
    match strategy {
        "STEPPED" | "LAZY" => {
            ok(&mut c, &["CACHE.DEBUG", "RECLAIM", "STEP"]);
            if strategy == "STEPPED" {
                assert_eq!(int(&blocked.recv_response().expect("reply")), 1);
            }
        }
        "BATCHED" => assert_eq!(int(&ok(&mut c, &["CACHE.PENDING", "FLUSH"])), 1),
        "SOFT" => eventually("the grace ends", || int(&ok(&mut c, &["EXISTS", "k"])) == 0),
        _ => {}
    }
    assert_eq!(
        int(&ok(&mut c, &["EXISTS", "k"])),
        0,
        "{strategy}: k is gone"
    );
    let after = Seen {
        events: events(&sub.ping_collect()),
        tracked: invalidated3(&t.ping_collect()),
        exec_ran: exec_runs(&mut w2),
    };
    verify(&mut c);
    (at_command, after)
}

/// The table in README "What other clients see, strategy by strategy", measured.
#[test]
fn what_watch_tracking_and_events_see_for_each_strategy() {
    let nothing = || seen(&[], &[], true);
    let cases = [
        ("IMMEDIATE", seen(&[("del", "k")], &["k"], false), nothing()),
        (
            "STEPPED",
            seen(&[], &["k"], false),
            seen(&[("del", "k")], &["k"], false),
        ),
        (
            "LAZY",
            seen(&[], &["k"], false),
            seen(&[("del", "k")], &["k"], false),
        ),
        (
            "SOFT",
            seen(&[("cache.soft", "k")], &["k"], false),
            seen(&[("expired", "k")], &["k"], false),
        ),
        ("BATCHED", nothing(), seen(&[("del", "k")], &["k"], false)),
    ];
    for (strategy, at_command, after) in cases {
        assert_eq!(
            measure(strategy),
            (at_command, after),
            "{strategy}: (at the command, after the background work)"
        );
    }
}

/// On a replica: a client tracking what it read there hears of the master's LAZY mark when the
/// mark arrives (`CACHE.PENDING MARK`), not when the master's reclaimer sends the DEL.
#[test]
fn tracking_on_a_replica_hears_of_the_masters_mark() {
    let m = master();
    let r = replica_of(&m);
    let mut mc = m.conn();
    let mut rc = r.conn();
    wait_link(&mut rc);
    ok(&mut mc, &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    ok(&mut mc, &["CACHE.SET", "k", "v", "TAGS", "1", "t"]);
    ok(&mut mc, &["CACHE.SET", "other", "v", "TAGS", "1", "o"]);
    sync(&mut mc, &mut rc);
    let mut t = Resp::connect3(&r);
    assert_eq!(
        t.call(&["CLIENT", "TRACKING", "ON"]),
        R::Simple("OK".into())
    );
    read(&mut t, "k", Some("v"));
    read(&mut t, "other", Some("v"));
    let n = ok(
        &mut mc,
        &["CACHE.INVALIDATE", "STRATEGY", "LAZY", "TAG", "t"],
    );
    assert_eq!(int(&n), 1);
    assert_eq!(int(&ok(&mut mc, &["WAIT", "1", "5000"])), 1);
    assert_eq!(int(&ok(&mut rc, &["EXISTS", "k"])), 1, "not reclaimed yet");
    assert_eq!(invalidated3(&t.ping_collect()), vec!["k"]);
    read(&mut t, "k", None);
    verify(&mut rc);
}

/// A client tracking in BCAST mode (prefixes, no record of what it read) hears of a LAZY
/// invalidation's keys when the reclaimer deletes them, unless some client watched or tracked
/// the key (then at the mark, see `watch.rs`).
#[test]
fn tracking_in_bcast_mode_hears_of_lazy_at_the_reclaimers_del() {
    let s = Server::start();
    let mut c = s.conn();
    let mut t = Resp::connect3(&s);
    let on = t.call(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "b:"]);
    assert_eq!(on, R::Simple("OK".into()));
    ok(&mut c, &["CACHE.DEBUG", "RECLAIM", "PAUSE"]);
    ok(&mut c, &["CACHE.SET", "b:1", "v", "TAGS", "1", "t"]);
    assert_eq!(invalidated3(&t.ping_collect()), vec!["b:1"], "the write");
    let n = ok(
        &mut c,
        &["CACHE.INVALIDATE", "STRATEGY", "LAZY", "TAG", "t"],
    );
    assert_eq!(int(&n), 1);
    assert_eq!(invalidated3(&t.ping_collect()), Vec::<String>::new());
    ok(&mut c, &["CACHE.DEBUG", "RECLAIM", "STEP"]);
    assert_eq!(
        invalidated3(&t.ping_collect()),
        vec!["b:1"],
        "the reclaimer's DEL"
    );
    verify(&mut c);
}
