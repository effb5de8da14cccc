//! The cluster harness (tests/cluster.rs, tests/cluster_oracle.rs): three masters and a
//! replica of the first, each a real server with the module, formed with `redis-cli --cluster`.

use super::*;
use redis::cluster::{ClusterClient, ClusterConnection};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The cluster harness.
// ---------------------------------------------------------------------------------------------

/// Node indexes: 0, 1 and 2 are the masters, 3 the replica of master 0.
pub const MASTERS: [usize; 3] = [0, 1, 2];
pub const REPLICA: usize = 3;
pub const NODE_TIMEOUT_MS: &str = "2000";

pub static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// One server process of the cluster.
pub struct Node {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub id: String,
}

impl Node {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three masters and a replica of master 0, with the module, on loopback ports, each in its own
/// directory under one temporary root. Every process is killed and the root removed on drop,
/// also when a test panics (then the end of each node's log is printed first).
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub root: PathBuf,
    /// The nodes that are masters now: `MASTERS` until a failover (`failover`) swaps the
    /// replica and its master.
    pub masters: Vec<usize>,
    /// The replica now (`REPLICA` until a failover) and its master.
    pub replica: usize,
    pub replica_of: usize,
}

/// A port `p` such that `p` and its cluster bus port `p + 10000` are free now and not in `taken`.
pub fn free_cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..1000 {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(p) = l.local_addr().map(|a| a.port()) else {
            continue;
        };
        if p > 55535
            || taken
                .iter()
                .any(|&t| t == p || t + 10000 == p || p + 10000 == t)
        {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair for a cluster node");
}

pub fn connect(port: u16) -> redis::RedisResult<Connection> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    c.get_connection_with_timeout(Duration::from_secs(5))
}

/// `INFO`/`CLUSTER INFO`-style text: the value of `name:`.
pub fn text_field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLine {
    pub id: String,
    pub port: u16,
    pub flags: Vec<String>,
    pub master: String,
    pub link: String,
    /// Slot ranges as written (`0-5460`, `7`, or `[slot->-id]` while migrating).
    pub slots: Vec<String>,
}

pub fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f[1].split('@').next().unwrap_or("");
            let port = addr.rsplit(':').next().unwrap_or("0").parse().unwrap_or(0);
            NodeLine {
                id: f[0].to_string(),
                port,
                flags: f[2].split(',').map(String::from).collect(),
                master: f[3].to_string(),
                link: f.get(7).unwrap_or(&"").to_string(),
                slots: f.iter().skip(8).map(|s| s.to_string()).collect(),
            }
        })
        .collect()
}

/// Runs `redis-cli` with `args`, bounded by `secs`; output goes to a file in the cluster's root.
/// Returns (success, output).
pub fn redis_cli(root: &std::path::Path, args: &[String], secs: u64) -> (bool, String) {
    let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
    let out_path = root.join(format!("redis-cli-{n}.out"));
    let out = std::fs::File::create(&out_path).expect("redis-cli output file");
    let err = out.try_clone().expect("redis-cli output file");
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("redis-cli on PATH (Debian's redis-tools)");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().expect("redis-cli wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(st) => (st.success(), text),
        None => (false, format!("{text}\n(redis-cli killed after {secs} s)")),
    }
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::with(&[])
    }

    /// `module_args` go after the module path on `--loadmodule` (e.g. `["cluster-timeout-ms",
    /// "500"]`).
    pub fn with(module_args: &[&str]) -> Cluster {
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let root =
            std::env::temp_dir().join(format!("tagcache-cluster-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("cluster temp dir");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            root,
            masters: MASTERS.to_vec(),
            replica: REPLICA,
            replica_of: 0,
        };
        // Start all four, then wait for each: the servers boot in parallel.
        let mut taken = Vec::new();
        for i in 0..4 {
            let dir = cluster.root.join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            let port = free_cluster_port(&taken);
            taken.push(port);
            let mut node = Node {
                child: None,
                port,
                dir,
                id: String::new(),
            };
            Cluster::spawn(&mut node, module_args);
            cluster.nodes.push(node);
        }
        for i in 0..4 {
            let mut attempts = 0;
            while !cluster.wait_ready(i) {
                attempts += 1;
                cluster.nodes[i].kill();
                assert!(
                    attempts < 5,
                    "node {i} did not start; log:\n{}",
                    cluster.nodes[i].log()
                );
                // Most likely a port taken meanwhile: another pair.
                let taken: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
                cluster.nodes[i].port = free_cluster_port(&taken);
                Cluster::spawn(&mut cluster.nodes[i], module_args);
            }
        }
        for i in 0..4 {
            let mut c = cluster.conn(i);
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut c)
                .expect("CLUSTER MYID");
            cluster.nodes[i].id = id;
        }
        cluster.create();
        cluster
    }

    pub fn spawn(node: &mut Node, module_args: &[&str]) {
        let mut load = vec![module_path().display().to_string()];
        load.extend(module_args.iter().map(|s| s.to_string()));
        let child = Command::new(server_binary())
            .current_dir(&node.dir)
            .args(["--port", &node.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &node.dir.display().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .args(["--logfile", "server.log"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", NODE_TIMEOUT_MS])
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--loadmodule")
            .args(&load)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server_binary()));
        node.child = Some(child);
    }

    pub fn wait_ready(&mut self, i: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.nodes[i].child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if let Ok(mut c) = connect(self.nodes[i].port) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `redis-cli --cluster create` with the masters, then `add-node --cluster-slave` for the
    /// replica; waits until the cluster is stable.
    pub fn create(&mut self) {
        let addr = |i: usize| format!("127.0.0.1:{}", self.nodes[i].port);
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(MASTERS.iter().map(|&i| addr(i)));
        args.push("--cluster-yes".into());
        let (ok, out) = redis_cli(&self.root, &args, 60);
        assert!(ok, "redis-cli --cluster create failed:\n{out}");
        let args: Vec<String> = [
            "--cluster",
            "add-node",
            &addr(REPLICA),
            &addr(0),
            "--cluster-slave",
            "--cluster-master-id",
            &self.nodes[0].id,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (ok, out) = redis_cli(&self.root, &args, 60);
        assert!(ok, "redis-cli --cluster add-node failed:\n{out}");
        self.wait_stable();
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    pub fn id(&self, i: usize) -> &str {
        &self.nodes[i].id
    }

    pub fn conn(&self, i: usize) -> Connection {
        connect(self.nodes[i].port)
            .unwrap_or_else(|e| panic!("connect to node {i} (port {}): {e}", self.port(i)))
    }

    /// A connection to the replica that may read (`READONLY`).
    pub fn replica_conn(&self) -> Connection {
        let mut c = self.conn(self.replica);
        assert_eq!(must(&mut c, &["READONLY"]), Value::Okay);
        c
    }

    /// A cluster client (redis-rs `ClusterClient`) seeded with every running master.
    pub fn client(&self) -> ClusterConnection {
        let urls: Vec<String> = self
            .masters
            .iter()
            .filter(|&&i| self.nodes[i].running())
            .map(|&i| format!("redis://127.0.0.1:{}/", self.port(i)))
            .collect();
        ClusterClient::new(urls)
            .and_then(|c| c.get_connection())
            .expect("cluster client")
    }

    /// The index of the node listening on `port`.
    pub fn index_of_port(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// A running master to ask about the cluster.
    pub fn any_master(&self) -> usize {
        *self
            .masters
            .iter()
            .find(|&&i| self.nodes[i].running())
            .expect("a running master")
    }

    pub fn slot(&self, key: &str) -> u16 {
        let mut c = self.conn(self.any_master());
        int(&must(&mut c, &["CLUSTER", "KEYSLOT", key])) as u16
    }

    /// (first slot, last slot, master index) from `CLUSTER SLOTS` of a running master.
    pub fn slot_map(&self) -> Vec<(u16, u16, usize)> {
        let mut c = self.conn(self.any_master());
        list(&must(&mut c, &["CLUSTER", "SLOTS"]))
            .iter()
            .map(|range| {
                let r = list(range);
                let master = list(&r[2]);
                (
                    int(&r[0]) as u16,
                    int(&r[1]) as u16,
                    self.index_of_port(int(&master[1]) as u16),
                )
            })
            .collect()
    }

    /// The master that owns `key`'s slot (`CLUSTER KEYSLOT` + `CLUSTER SLOTS`).
    pub fn owner(&self, key: &str) -> usize {
        let slot = self.slot(key);
        self.slot_map()
            .into_iter()
            .find(|&(a, b, _)| a <= slot && slot <= b)
            .map(|(_, _, m)| m)
            .unwrap_or_else(|| panic!("slot {slot} of {key} has no owner"))
    }

    /// `count` keys `<prefix><n>` whose slots master `m` owns.
    pub fn keys_on(&self, m: usize, prefix: &str, count: usize) -> Vec<String> {
        self.names_on(m, count, |n| format!("{prefix}{n}"))
    }

    /// The first `count` of `name(0)`, `name(1)`, ... whose slots master `m` owns.
    pub fn names_on(&self, m: usize, count: usize, name: impl Fn(usize) -> String) -> Vec<String> {
        let map = self.slot_map();
        let mut out = Vec::new();
        for n in 0.. {
            if out.len() == count {
                break;
            }
            let k = name(n);
            let slot = self.slot(&k);
            if map
                .iter()
                .any(|&(a, b, o)| o == m && a <= slot && slot <= b)
            {
                out.push(k);
            }
            assert!(n < 10_000, "no key like {} on master {m}", name(0));
        }
        out
    }

    pub fn key_on(&self, m: usize, prefix: &str) -> String {
        self.keys_on(m, prefix, 1).remove(0)
    }

    /// Kills node `i` (SIGKILL): it answers nothing from now on.
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Freezes node `i` (SIGSTOP): its connections stay up, it answers nothing until `resume`.
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].child.as_ref().expect("a running node").id();
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill {sig} {pid}");
    }

    /// CACHE.DEBUG VERIFY is empty on every running node.
    pub fn verify_all(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.running() {
                continue;
            }
            let diffs = strings(&must(&mut self.conn(i), &["CACHE.DEBUG", "VERIFY"]));
            assert!(diffs.is_empty(), "node {i}: CACHE.DEBUG VERIFY: {diffs:#?}");
        }
    }

    /// Waits (bounded) until the replica processed everything its master propagated so far and
    /// holds the same data. (Not `WAIT` on a new connection: it waits for the offset of that
    /// connection's own last write, none.)
    pub fn sync_replica(&self) {
        let mut m = self.conn(self.replica_of);
        let mut r = self.conn(self.replica);
        let target = repl_offset(&mut m);
        eventually("the replica reached master 0's offset", || {
            repl_offset(&mut r) >= target
        });
        eventually("replica converged", || digest(&mut m) == digest(&mut r));
    }

    /// What is not yet right with node `i`'s view of the cluster (None: all good). `slots` gets
    /// the node's slot assignment, to compare between nodes.
    pub fn unstable(&self, i: usize, slots: &mut Vec<(u16, Vec<String>)>) -> Option<String> {
        let mut c = match connect(self.port(i)) {
            Ok(c) => c,
            Err(e) => return Some(format!("node {i}: {e}")),
        };
        let info: String = match redis::cmd("CLUSTER").arg("INFO").query(&mut c) {
            Ok(t) => t,
            Err(e) => return Some(format!("node {i}: CLUSTER INFO: {e}")),
        };
        for (name, want) in [
            ("cluster_state", "ok"),
            ("cluster_slots_assigned", "16384"),
            ("cluster_slots_ok", "16384"),
            ("cluster_known_nodes", "4"),
            ("cluster_size", "3"),
        ] {
            let got = text_field(&info, name).unwrap_or_default();
            if got != want {
                return Some(format!("node {i}: {name}:{got}, want {want}"));
            }
        }
        let text: String = match redis::cmd("CLUSTER").arg("NODES").query(&mut c) {
            Ok(t) => t,
            Err(e) => return Some(format!("node {i}: CLUSTER NODES: {e}")),
        };
        let lines = parse_nodes(&text);
        if lines.len() != 4 {
            return Some(format!("node {i} knows {} nodes:\n{text}", lines.len()));
        }
        for l in &lines {
            let bad = ["handshake", "fail", "fail?", "noaddr"];
            if l.flags.iter().any(|f| bad.contains(&f.as_str())) || l.link != "connected" {
                return Some(format!("node {i} sees {l:?}"));
            }
            if l.slots.iter().any(|s| s.starts_with('[')) {
                return Some(format!("node {i}: a slot is migrating: {l:?}"));
            }
            let want_replica = l.port == self.port(self.replica);
            let is_replica = l.flags.iter().any(|f| f == "slave");
            if want_replica != is_replica
                || (is_replica && l.master != self.nodes[self.replica_of].id)
                || (!is_replica && !l.flags.iter().any(|f| f == "master"))
            {
                return Some(format!("node {i}: unexpected role: {l:?}"));
            }
        }
        // Each other node has a link to this one that this one has tied to it (the other's
        // PING arrived on it), as well as a link from this one. Valkey 8.1 closes an inbound
        // link whose first message is a module message and drops that message: a cluster-wide
        // request sent before then could go unanswered.
        let links: Value = match redis::cmd("CLUSTER").arg("LINKS").query(&mut c) {
            Ok(v) => v,
            Err(e) => return Some(format!("node {i}: CLUSTER LINKS: {e}")),
        };
        let links: Vec<(String, String)> = list(&links)
            .iter()
            .map(|l| {
                let fields = map(l);
                let get = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| super::text(v))
                        .unwrap_or_default()
                };
                (get("direction"), get("node"))
            })
            .collect();
        for (j, other) in self.nodes.iter().enumerate().filter(|&(j, _)| j != i) {
            for direction in ["to", "from"] {
                if !links.iter().any(|(d, n)| d == direction && *n == other.id) {
                    return Some(format!("node {i} has no link {direction} node {j}"));
                }
            }
        }
        let mut view: Vec<(u16, Vec<String>)> = lines
            .iter()
            .filter(|l| !l.slots.is_empty())
            .map(|l| (l.port, l.slots.clone()))
            .collect();
        view.sort();
        *slots = view;
        if i == self.replica {
            let repl: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut c)
                .unwrap_or_default();
            if text_field(&repl, "master_link_status").as_deref() != Some("up") {
                return Some("the replica's link is not up".into());
            }
        }
        None
    }

    /// Waits (bounded) until every node reports `cluster_state:ok`, knows the four nodes in
    /// their roles with no failure flag nor migrating slot, all nodes agree on the slots, and
    /// the replica's link is up.
    pub fn wait_stable(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut problem = None;
            let mut first: Option<Vec<(u16, Vec<String>)>> = None;
            for i in 0..4 {
                let mut view = Vec::new();
                if let Some(p) = self.unstable(i, &mut view) {
                    problem = Some(p);
                    break;
                }
                match &first {
                    None => first = Some(view),
                    Some(f) if *f != view => {
                        problem = Some(format!("node {i} sees slots {view:?}, node 0 {f:?}"));
                        break;
                    }
                    _ => {}
                }
            }
            let Some(problem) = problem else {
                return;
            };
            if Instant::now() > deadline {
                let views: Vec<String> = (0..4)
                    .map(|i| {
                        let t: String = connect(self.port(i))
                            .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query(&mut c))
                            .unwrap_or_else(|e| e.to_string());
                        format!("node {i} (port {}):\n{t}", self.port(i))
                    })
                    .collect();
                panic!(
                    "cluster not stable after 30 s: {problem}\n{}",
                    views.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cli --cluster reshard`: `slots` slots from master `from` to master `to`, then
    /// waits until the cluster is stable again.
    pub fn reshard(&self, from: usize, to: usize, slots: usize) {
        let args: Vec<String> = [
            "--cluster".to_string(),
            "reshard".into(),
            format!("127.0.0.1:{}", self.port(0)),
            "--cluster-from".into(),
            self.id(from).into(),
            "--cluster-to".into(),
            self.id(to).into(),
            "--cluster-slots".into(),
            slots.to_string(),
            "--cluster-yes".into(),
        ]
        .to_vec();
        let (ok, out) = redis_cli(&self.root, &args, 120);
        assert!(ok, "redis-cli --cluster reshard failed:\n{out}");
        self.wait_stable();
    }
}

impl Cluster {
    /// `CLUSTER FAILOVER` (graceful: the master pauses its clients until the replica caught up)
    /// or `CLUSTER FAILOVER TAKEOVER` (the replica takes the slots without its master's consent;
    /// first waits until it holds the master's data, so nothing is lost) sent to the replica;
    /// then waits until the two swapped roles and the cluster is stable again.
    pub fn failover(&mut self, takeover: bool) {
        let (r, m) = (self.replica, self.replica_of);
        if takeover {
            self.sync_replica();
        }
        let mut parts = vec!["CLUSTER", "FAILOVER"];
        if takeover {
            parts.push("TAKEOVER");
        }
        // A manual failover that does not complete (the replica's election timed out) is
        // given up by the server after a while: sent again, up to three times.
        let swapped = || {
            info_field(&mut self.conn(r), "replication", "role") == "master"
                && info_field(&mut self.conn(m), "replication", "role") == "slave"
        };
        let mut attempts = 0;
        'attempts: loop {
            attempts += 1;
            assert_eq!(must(&mut self.conn(r), &parts), Value::Okay, "{parts:?}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if swapped() {
                    break 'attempts;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                attempts < 3,
                "{parts:?} on node {r}: the replica did not become a master, three times"
            );
            eprintln!("{parts:?} on node {r} did not complete within 10 s: sent again");
        }
        for x in self.masters.iter_mut() {
            if *x == m {
                *x = r;
            }
        }
        self.replica = m;
        self.replica_of = r;
        self.wait_stable();
        self.sync_replica();
    }

    /// The first step of a slot's migration, as `redis-cli --cluster reshard` takes it:
    /// `CLUSTER SETSLOT slot IMPORTING` on the target, then `MIGRATING` on the source.
    pub fn migrate_begin(&self, slot: u16, from: usize, to: usize) {
        let s = slot.to_string();
        let (idf, idt) = (self.id(from).to_string(), self.id(to).to_string());
        must(
            &mut self.conn(to),
            &["CLUSTER", "SETSLOT", &s, "IMPORTING", &idf],
        );
        must(
            &mut self.conn(from),
            &["CLUSTER", "SETSLOT", &s, "MIGRATING", &idt],
        );
    }

    /// Moves up to `count` keys of `slot` from `from` to `to` with one `MIGRATE ... KEYS`
    /// (`CLUSTER GETKEYSINSLOT` first, as redis-cli does). Returns the keys moved.
    pub fn migrate_keys(&self, slot: u16, from: usize, to: usize, count: usize) -> Vec<String> {
        let mut src = self.conn(from);
        let keys = strings(&must(
            &mut src,
            &[
                "CLUSTER",
                "GETKEYSINSLOT",
                &slot.to_string(),
                &count.to_string(),
            ],
        ));
        if keys.is_empty() {
            return keys;
        }
        let port = self.port(to).to_string();
        let mut parts = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        parts.extend(keys.iter().map(String::as_str));
        must(&mut src, &parts);
        keys
    }

    /// The last step: `CLUSTER SETSLOT slot NODE <to>` on the target, the source, then the
    /// other masters (as redis-cli does; the replica learns it over the bus).
    pub fn migrate_end(&self, slot: u16, from: usize, to: usize) {
        let s = slot.to_string();
        let idt = self.id(to).to_string();
        let mut order = vec![to, from];
        order.extend(self.masters.iter().filter(|&&m| m != to && m != from));
        for n in order {
            must(&mut self.conn(n), &["CLUSTER", "SETSLOT", &s, "NODE", &idt]);
        }
    }
}

impl Drop for Cluster {
    /// Kills every node and removes the directories; when the test failed, first prints the
    /// last lines of each node's log.
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() {
            for (i, n) in self.nodes.iter().enumerate() {
                let log = n.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                eprintln!("--- node {i} (port {}), end of server.log:\n{tail}", n.port);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

// ---------------------------------------------------------------------------------------------
// Command helpers for any connection (a node's or the cluster client's).
// ---------------------------------------------------------------------------------------------

pub fn run<C: redis::ConnectionLike>(c: &mut C, parts: &[&str]) -> redis::RedisResult<Value> {
    let mut k = redis::cmd(parts[0]);
    for p in &parts[1..] {
        k.arg(*p);
    }
    k.query(c)
}

/// A command that must succeed.
pub fn must<C: redis::ConnectionLike>(c: &mut C, parts: &[&str]) -> Value {
    run(c, parts).unwrap_or_else(|e| panic!("{parts:?} failed: {e}"))
}

/// A command that must fail: the error as the server sent it ("MOVED 12 127.0.0.1:7001").
pub fn fails<C: redis::ConnectionLike>(c: &mut C, parts: &[&str]) -> String {
    match run(c, parts) {
        Ok(v) => panic!("{parts:?}: expected an error, got {v:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
            .trim()
            .to_string(),
    }
}
