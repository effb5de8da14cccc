#!/usr/bin/env python3
"""tagcache benchmark: the module against the client-side schemes it replaces, side by side in
one run on one server. Prints one line per figure and a final JSON summary (ratios).

Run through scripts/bench.sh, which builds the release module first.
Environment: TAGCACHE_SERVER (server binary), TAGCACHE_MODULE (module .so), BENCH_SCALE (1.0
default; 0.1 for a quick run: every entry count is scaled).
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SCALE = float(os.environ.get("BENCH_SCALE", "1.0"))
SERVER = os.environ.get("TAGCACHE_SERVER", "/usr/bin/redis-server")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.environ.get("TAGCACHE_MODULE", os.path.join(ROOT, "target/release/libtagcache.so"))
# FLOOR.GET and FLOOR.SET (scripts/bench/floor.c), loaded beside the module when built.
FLOOR = os.environ.get("TAGCACHE_FLOOR_MODULE", "")
VALUE = b"x" * 100


def n(count):
    return max(100, int(count * SCALE))


class Resp:
    """A minimal RESP2 client with pipelining."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, int):
                a = str(a).encode()
            elif isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, size):
        while len(self.buf) < size + 2:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:size], self.buf[size + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exact(size)
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.read() for _ in range(size)]
        raise RuntimeError("unexpected reply %r" % line)

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        return self.read()

    def pipeline(self, commands, batch=2000):
        """Sends commands in batches; raises on the first error reply."""
        for i in range(0, len(commands), batch):
            part = commands[i:i + batch]
            self.sock.sendall(b"".join(self.encode(c) for c in part))
            for _ in part:
                self.read()

    def info(self, section):
        text = self.call("INFO", section).decode()
        out = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tagcache-bench-")
        self.port = free_port()
        self.launch()

    def launch(self):
        self.proc = subprocess.Popen(
            [SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--logfile", "server.log",
             "--enable-debug-command", "yes", "--loadmodule", MODULE]
            + (["--loadmodule", FLOOR] if FLOOR else []),
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                self.conn = Resp(self.port)
                self.conn.call("PING")
                break
            except (ConnectionError, OSError, RuntimeError):
                if time.time() > deadline or self.proc.poll() is not None:
                    raise SystemExit("server did not start (%s)" % SERVER)
                time.sleep(0.05)

    def restart_loading(self):
        """SAVE, restart on the same directory, and the load time the server logs (seconds)."""
        self.conn.call("SAVE")
        try:
            self.conn.call("SHUTDOWN", "NOSAVE")
        except (ConnectionError, OSError, RuntimeError):
            pass
        self.proc.wait(timeout=60)
        self.launch()
        while True:
            try:
                self.conn.call("DBSIZE")
                break
            except RuntimeError:  # -LOADING
                time.sleep(0.05)
        with open(os.path.join(self.dir, "server.log")) as f:
            found = re.findall(r"DB loaded from disk: ([0-9.]+) seconds", f.read())
        return float(found[-1])

    def stop(self):
        try:
            self.conn.call("SHUTDOWN", "NOSAVE")
        except (ConnectionError, OSError, RuntimeError):
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


RESULTS = {}


def report(name, value, unit, note=""):
    RESULTS[name] = value
    print("%-44s %14.3f %-8s %s" % (name, value, unit, note), flush=True)


def used_memory(c):
    return int(c.info("memory")["used_memory"])


def flush(c):
    c.call("FLUSHALL")
    c.call("CACHE.DEBUG", "VERIFY")


def timed(c, *args):
    """Wall time of one command in ms (client side, loopback) and its reply."""
    t = time.perf_counter()
    reply = c.call(*args)
    return (time.perf_counter() - t) * 1000.0, reply


# ---------------------------------------------------------------------------------------------
# 1. Throughput with redis-benchmark.

def server_cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc; 10 ms ticks)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def benchmark_rps(srv, command, requests):
    """redis-benchmark's rate, and the server's CPU time per request in ns (what the server
    spends, whatever share of the two cores the client takes)."""
    before = server_cpu_seconds(srv.proc.pid)
    out = subprocess.run(
        ["redis-benchmark", "-p", str(srv.port), "-P", "16", "-c", "50", "-n", str(requests),
         "-r", "100000", "--csv"] + command,
        check=True, capture_output=True, text=True).stdout
    cpu_ns = (server_cpu_seconds(srv.proc.pid) - before) / requests * 1e9
    rows = [line for line in out.splitlines() if line and not line.startswith('"test"')]
    return float(rows[-1].split(",")[1].strip('"')), cpu_ns


def throughput(srv):
    c = srv.conn
    flush(c)
    requests = n(300_000)
    value = "x" * 100
    tags = ["TAGS", "3", "tag:a", "tag:b", "item:__rand_int__"]
    # Populate both keyspaces so GET and CACHE.GET hit.
    c.pipeline([["SET", "p:%012d" % i, VALUE] for i in range(100_000)])
    c.pipeline([["CACHE.SET", "c:%012d" % i, VALUE] + tags[:4] + ["item:%d" % i]
                for i in range(100_000)])
    cmds = {
        "SET": ["SET", "p:__rand_int__", value],
        "CACHE.SET": ["CACHE.SET", "c:__rand_int__", value] + tags,
        "GET": ["GET", "p:__rand_int__"],
        "CACHE.GET": ["CACHE.GET", "c:__rand_int__"],
    }
    if FLOOR:
        # The same string operations as SET and GET, through the module API only.
        cmds["FLOOR.SET"] = ["FLOOR.SET", "p:__rand_int__", value]
        # With CACHE.SET's argument count: the arguments after the value are ignored.
        cmds["FLOOR.SET+tags"] = ["FLOOR.SET", "p:__rand_int__", value] + tags
        cmds["CACHE.SET no tags"] = ["CACHE.SET", "n:__rand_int__", value]
        cmds["FLOOR.GET"] = ["FLOOR.GET", "p:__rand_int__"]
    runs = {k: [] for k in cmds}
    for _ in range(5):  # interleaved rounds
        for k, cmd in cmds.items():
            runs[k].append(benchmark_rps(srv, cmd, requests))
    med = {k: statistics.median(r for r, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(ns for _, ns in v) for k, v in runs.items()}
    for k in cmds:
        report("rps %s" % k, med[k], "ops/s", "median of 5, -P 16 -c 50")
    for k in cmds:
        report("server CPU per %s" % k, cpu[k], "ns", "median of 5")
    report("ratio CACHE.SET/SET (goal >= 0.85)", med["CACHE.SET"] / med["SET"], "x")
    report("ratio CACHE.GET/GET (goal >= 0.90)", med["CACHE.GET"] / med["GET"], "x")
    report("ratio CPU SET/CACHE.SET", cpu["SET"] / cpu["CACHE.SET"], "x",
           "the throughput ratio if the server alone set the pace")
    report("ratio CPU GET/CACHE.GET", cpu["GET"] / cpu["CACHE.GET"], "x")
    if FLOOR:
        # What a module command costs before doing work of its own: a ceiling for the ratios
        # above.
        report("ratio floor FLOOR.SET/SET (module API only)", med["FLOOR.SET"] / med["SET"], "x")
        report("ratio floor FLOOR.GET/GET (module API only)", med["FLOOR.GET"] / med["GET"], "x")
        report("ratio floor CPU SET/FLOOR.SET", cpu["SET"] / cpu["FLOOR.SET"], "x")
        report("ratio floor CPU GET/FLOOR.GET", cpu["GET"] / cpu["FLOOR.GET"], "x")
        # CACHE.SET against its floor at the same argument count (issue 26: goal >= 0.85).
        report("ratio CPU FLOOR.SET+tags/CACHE.SET (%d args each; goal >= 0.85)"
               % (len(cmds["CACHE.SET"])), cpu["FLOOR.SET+tags"] / cpu["CACHE.SET"], "x")
        report("ratio CPU FLOOR.SET/CACHE.SET no tags (3 args each)",
               cpu["FLOOR.SET"] / cpu["CACHE.SET no tags"], "x")
        report("ratio rps CACHE.SET/FLOOR.SET+tags (same args)",
               med["CACHE.SET"] / med["FLOOR.SET+tags"], "x")
        report("ratio CPU FLOOR.GET/CACHE.GET (goal >= 0.95)",
               cpu["FLOOR.GET"] / cpu["CACHE.GET"], "x")


# ---------------------------------------------------------------------------------------------
# 2. Memory per entry with 3 tags.

def memory(srv):
    c = srv.conn
    count = n(200_000)
    keys = ["k:%012d" % i for i in range(count)]
    tags = lambda i: ["t10:%d" % (i % 10), "t100:%d" % (i % 100), "t1000:%d" % (i % 1000)]

    flush(c)
    base = used_memory(c)
    c.pipeline([["SET", k, VALUE] for k in keys])
    plain = used_memory(c) - base

    flush(c)
    base = used_memory(c)
    c.pipeline([["SET", k, VALUE] for k in keys])
    c.pipeline([["SADD", "tagset:" + t, k] for i, k in enumerate(keys) for t in tags(i)])
    tagset = used_memory(c) - base

    flush(c)
    base = used_memory(c)
    c.pipeline([["CACHE.SET", k, VALUE, "TAGS", "3"] + tags(i) for i, k in enumerate(keys)])
    cache = used_memory(c) - base
    flush(c)

    ours = (cache - plain) / count
    theirs = (tagset - plain) / count
    report("bytes/entry plain string", plain / count, "B")
    report("extra bytes/entry tag-set scheme (3 tags)", theirs, "B")
    report("extra bytes/entry tagcache (3 tags)", ours, "B")
    report("ratio memory tagcache/tag-set (goal <= 0.5)", ours / theirs, "x")


def settled_memory(c, seconds=3.0):
    """used_memory once the server's cron has had time to shrink its tables (it resizes a
    database's dict when under a tenth full, one step per 100 ms)."""
    time.sleep(seconds)
    return used_memory(c)


def memory_return(srv):
    """Issue 22: what used_memory keeps after a load-and-invalidate cycle, per peak entry,
    against the same server before the load. The tag-set scheme (SET + SADD, then UNLINK of the
    members and the sets) is the peer; the module's own `memory` fields say where its part is."""
    c = srv.conn
    count = n(1_000_000)
    keys = ["k:%012d" % i for i in range(count)]
    tags = lambda i: ["t10:%d" % (i % 10), "t100:%d" % (i % 100), "t1000:%d" % (i % 1000)]
    chunk = 50_000

    flush(c)
    base = settled_memory(c)
    for i in range(0, count, chunk):
        c.pipeline([["SET", k, VALUE] for k in keys[i:i + chunk]])
        c.pipeline([["SADD", "tagset:" + t, k] for j, k in enumerate(keys[i:i + chunk], i)
                    for t in tags(j)])
    peak = used_memory(c) - base
    for t in range(10):
        members = c.call("SMEMBERS", "tagset:t10:%d" % t)
        for j in range(0, len(members), 1000):
            c.call("UNLINK", *members[j:j + 1000])
    c.call("UNLINK", *["tagset:" + t for i in range(1000) for t in tags(i)])
    while c.info("memory").get("lazyfree_pending_objects", "0") != "0":
        time.sleep(0.05)
    peer_left = settled_memory(c) - base
    assert c.call("DBSIZE") == 0

    flush(c)
    base = settled_memory(c)
    before = json.loads(c.call("CACHE.STATS", "LOCAL", "JSON"))["memory"]
    for i in range(0, count, chunk):
        c.pipeline([["CACHE.SET", k, VALUE, "TAGS", "3"] + tags(j)
                    for j, k in enumerate(keys[i:i + chunk], i)])
    ours_peak = used_memory(c) - base
    removed = sum(c.call("CACHE.INVALIDATE", "TAG", "t10:%d" % t) for t in range(10))
    assert removed == count, removed
    while c.call("DBSIZE") != 0:
        time.sleep(0.05)
    ours_left = settled_memory(c) - base
    after = json.loads(c.call("CACHE.STATS", "LOCAL", "JSON"))["memory"]
    # The stale-set guard remembers what was removed for cache.guard-window-ms (60 s): shorten
    # the window to see what is kept once it has passed.
    window = c.call("CONFIG", "GET", "cache.guard-window-ms")[1]
    c.call("CONFIG", "SET", "cache.guard-window-ms", "1000")
    deadline = time.time() + 60
    while time.time() < deadline:
        if json.loads(c.call("CACHE.STATS", "LOCAL", "JSON"))["memory"]["history_bytes"] < 65536:
            break
        time.sleep(0.2)
    ours_later = settled_memory(c) - base
    later = json.loads(c.call("CACHE.STATS", "LOCAL", "JSON"))["memory"]
    c.call("CONFIG", "SET", "cache.guard-window-ms", window)
    c.call("CACHE.DEBUG", "VERIFY")
    report("peak bytes/entry tag-set scheme (3 tags)", peak / count, "B")
    report("peak bytes/entry tagcache (3 tags)", ours_peak / count, "B")
    report("bytes/peak entry kept after, tag-set scheme", peer_left / count, "B")
    report("bytes/peak entry kept after, tagcache (guard window)", ours_left / count, "B")
    for field in sorted(after):
        grown = after[field] - before.get(field, 0)
        if grown:
            report("  of which memory.%s" % field, grown / count, "B")
    report("bytes/peak entry kept after the guard window", ours_later / count, "B")
    for field in sorted(later):
        grown = later[field] - before.get(field, 0)
        if grown:
            report("  of which memory.%s " % field, grown / count, "B")


# ---------------------------------------------------------------------------------------------
# 3. Tag invalidation of 100 000 entries.

LUA_TAG_INVALIDATE = """
local members = redis.call('SMEMBERS', KEYS[1])
for i = 1, #members, 1000 do
  redis.call('UNLINK', unpack(members, i, math.min(i + 999, #members)))
end
redis.call('DEL', KEYS[1])
return #members
"""


TAG_ROUNDS = 5


def tag_invalidation(srv):
    """The three schemes in interleaved rounds, each figure the median of its rounds: one
    invalidation of 100 000 keys is a single timing of about 100 ms, which machine noise moves
    by a third from one run to the next."""
    c = srv.conn
    count = n(100_000)
    keys = ["e:%012d" % i for i in range(count)]
    times = {"cache": [], "lua": [], "unlink": []}

    for _ in range(TAG_ROUNDS):
        flush(c)
        c.pipeline([["CACHE.SET", k, VALUE, "TAGS", "2", "bulk", "item:%d" % i]
                    for i, k in enumerate(keys)])
        ms, removed = timed(c, "CACHE.INVALIDATE", "TAG", "bulk")
        assert removed == count, removed
        times["cache"].append(ms)

        flush(c)
        c.pipeline([["SET", k, VALUE] for k in keys])
        c.pipeline([["SADD", "tagset:bulk", k] for k in keys])
        ms, removed = timed(c, "EVAL", LUA_TAG_INVALIDATE, "1", "tagset:bulk")
        assert removed == count, removed
        times["lua"].append(ms)

        flush(c)
        c.pipeline([["SET", k, VALUE] for k in keys])
        ms, removed = timed(c, "UNLINK", *keys)
        assert removed == count, removed
        times["unlink"].append(ms)
    flush(c)

    med = {k: statistics.median(v) for k, v in times.items()}
    note = "median of %d, interleaved" % TAG_ROUNDS
    report("ms tag invalidation tagcache (%d)" % count, med["cache"], "ms", note)
    report("ms tag invalidation Lua tag-set", med["lua"], "ms", note)
    report("ms single UNLINK of the plain keys", med["unlink"], "ms", note)
    report("speedup vs Lua tag-set (goal >= 3)", med["lua"] / med["cache"], "x", "of the medians")
    report("ratio vs single UNLINK (goal <= 1.5)", med["cache"] / med["unlink"], "x",
           "of the medians")


# ---------------------------------------------------------------------------------------------
# 4. Pattern invalidation of a 1% prefix among 1 000 000 entries.

def pattern_invalidation(srv):
    c = srv.conn
    count = n(1_000_000)
    hot = count // 100
    keys = ["hot:%d" % i for i in range(hot)] + ["cold:%d" % i for i in range(count - hot)]

    flush(c)
    c.pipeline([["CACHE.SET", k, VALUE] for k in keys])
    ms_cache, removed = timed(c, "CACHE.INVALIDATE", "PATTERN", "hot:*")
    assert removed == hot, removed

    flush(c)
    c.pipeline([["SET", k, VALUE] for k in keys])
    t = time.perf_counter()
    cursor, removed = b"0", 0
    while True:
        cursor, batch = c.call("SCAN", cursor, "MATCH", "hot:*", "COUNT", "1000")
        if batch:
            removed += c.call("UNLINK", *batch)
        if cursor == b"0":
            break
    ms_scan = (time.perf_counter() - t) * 1000.0
    assert removed == hot, removed
    flush(c)

    report("ms pattern hot:* tagcache (%d of %d)" % (hot, count), ms_cache, "ms")
    report("ms pattern hot:* SCAN MATCH + UNLINK", ms_scan, "ms")
    report("speedup vs SCAN + UNLINK (goal >= 50)", ms_scan / ms_cache, "x")


# ---------------------------------------------------------------------------------------------
# 5. Cascade through a 100 000-entry dependency tree.

def cascade(srv):
    c = srv.conn
    count = n(100_000)
    flush(c)
    cmds = [["CACHE.SET", "node:0", VALUE]]
    cmds += [["CACHE.SET", "node:%d" % i, VALUE, "DEPENDS", "1", "node:%d" % ((i - 1) // 10)]
             for i in range(1, count)]
    c.pipeline(cmds)
    ms, removed = timed(c, "CACHE.INVALIDATE", "DEPTH", "100", "KEY", "node:0")
    assert removed == count, removed
    report("ms cascade from the root (%d, 10-ary)" % count, ms, "ms")


# ---------------------------------------------------------------------------------------------
# 6. Longest main-thread stall while invalidating 1 000 000 entries.

def stall(srv):
    c = srv.conn
    count = n(1_000_000)
    flush(c)
    c.pipeline([["CACHE.SET", "s:%d" % i, VALUE, "TAGS", "1", "everything"] for i in range(count)])
    c.call("CONFIG", "SET", "latency-monitor-threshold", "1")
    c.call("LATENCY", "RESET")
    c.call("SLOWLOG", "RESET")
    c.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
    steps_before = c.call("CACHE.STATS", "LOCAL", "JSON")
    steps_before = json.loads(steps_before)["lazy"]["steps"]
    # A second client pings all along: its longest round trip is the longest time the main
    # thread did not serve clients (whatever the module does: one command, steps, timers).
    probe = Resp(srv.port)
    stop = threading.Event()
    worst = [0.0]

    def ping():
        while not stop.is_set():
            t = time.perf_counter()
            probe.call("PING")
            worst[0] = max(worst[0], (time.perf_counter() - t) * 1000.0)
            time.sleep(0.0005)

    prober = threading.Thread(target=ping)
    prober.start()
    time.sleep(0.05)
    ms, removed = timed(c, "CACHE.INVALIDATE", "TAG", "everything")
    time.sleep(0.05)
    stop.set()
    prober.join()
    assert removed == count, removed
    longest_us = max((entry[2] for entry in c.call("SLOWLOG", "GET", "128")), default=0)
    stats = json.loads(c.call("CACHE.STATS", "LOCAL", "JSON"))["lazy"]
    c.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")
    flush(c)
    report("ms invalidating %d entries (client wall)" % count, ms, "ms")
    report("ms longest command (SLOWLOG)", longest_us / 1000.0, "ms")
    report("steps of the stepped invalidation", stats["steps"] - steps_before, "")
    report("ms longest step (lazy.max_step_us)", stats["max_step_us"] / 1000.0, "ms")
    report("ms longest PING round trip meanwhile (goal <= 50)", worst[0], "ms")


# ---------------------------------------------------------------------------------------------
# 6b. Worst cases (issue 22): the longest PING round trip from a second connection while each
# runs (goal <= 50 ms). The pinger is another process, so reading a large reply here does not
# hold it up.

def _pinger(port, stop, out):
    probe = Resp(port)
    worst = 0.0
    while not stop.is_set():
        t = time.perf_counter()
        probe.call("PING")
        worst = max(worst, (time.perf_counter() - t) * 1000.0)
        time.sleep(0.0005)
    out.put(worst)


def longest_ping(srv, *command):
    """Runs one command; returns (its wall ms, the longest PING round trip meanwhile, reply)."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_pinger, args=(srv.port, stop, out))
    proc.start()
    time.sleep(0.1)
    t = time.perf_counter()
    try:
        reply = srv.conn.call(*command)
    except RuntimeError as e:
        reply = "error: %s" % str(e)[:60]
    ms = (time.perf_counter() - t) * 1000.0
    time.sleep(0.05)
    stop.set()
    worst = out.get()
    proc.join()
    return ms, worst, reply


def pings_on(ports, conn, *command):
    """Runs one command on `conn` with a PING client on each of `ports`; returns (its wall ms,
    the longest PING round trip on each port meanwhile, reply)."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    pingers = []
    for port in ports:
        out = ctx.Queue()
        proc = ctx.Process(target=_pinger, args=(port, stop, out))
        proc.start()
        pingers.append((proc, out))
    time.sleep(0.1)
    t = time.perf_counter()
    reply = conn.call(*command)
    ms = (time.perf_counter() - t) * 1000.0
    time.sleep(0.05)
    stop.set()
    worst = [out.get() for _, out in pingers]
    for proc, _ in pingers:
        proc.join()
    return ms, worst, reply


def worst_cases(srv):
    c = srv.conn

    def figure(label, *command):
        ms, worst, reply = longest_ping(srv, *command)
        if isinstance(reply, list):
            what = "%d items" % len(reply)
        elif isinstance(reply, bytes):
            what = "%d bytes" % len(reply)
        else:
            what = str(reply)
        report("ms longest PING during %s" % label, worst, "ms", "(%s; client %.0f ms)" % (what, ms))

    flush(c)
    long_keys = n(2000)
    c.pipeline([["CACHE.SET", "a" * 4090 + "%05d" % i, "v", "TAGS", "1", "a" * 4090 + "%05d" % i]
                for i in range(long_keys)], batch=200)
    issue = "*" + "?" * 4094 + "b"
    piece = "*a" + "?" * 126 + "b*"
    figure("KEYS '*'+'?'x4094+'b' (%d keys of 4 KB)" % long_keys, "CACHE.KEYS", "PATTERN", issue)
    figure("KEYS '*a'+'?'x126+'b*' (the costliest piece allowed)", "CACHE.KEYS", "PATTERN", piece)
    figure("KEYS '*a'+'?'x4092+'b*' (refused)", "CACHE.KEYS", "PATTERN",
           "*a" + "?" * 4092 + "b*")
    figure("TAGS MATCH '*'+'?'x4094+'b' (%d tags of 4 KB)" % long_keys,
           "CACHE.TAGS", "MATCH", issue)
    figure("INVALIDATE PATTERN '*'+'?'x4094+'b'", "CACHE.INVALIDATE", "PATTERN", issue)
    flush(c)
    kb_keys = n(10_000)
    c.pipeline([["CACHE.SET", "a" * 1019 + "%05d" % i, "v"] for i in range(kb_keys)], batch=500)
    figure("KEYS 900-byte pattern (%d keys of 1 KB)" % kb_keys,
           "CACHE.KEYS", "PATTERN", "*" + "?" * 898 + "b")
    flush(c)
    count = n(1_000_000)
    c.pipeline([["CACHE.SET", "k:%d" % i, "v", "TAGS", "2", "t:%d" % i, "all",
                 "DEPENDS", "1", "root"] for i in range(count)])
    c.call("CACHE.SET", "root", "v")
    figure("KEYS TAG all (%d entries)" % count, "CACHE.KEYS", "TAG", "all")
    figure("KEYS PATTERN k:* (%d entries)" % count, "CACHE.KEYS", "PATTERN", "k:*")
    figure("INSPECT of an entry with %d dependents" % count, "CACHE.INSPECT", "root")
    figure("STATS over %d tags" % count, "CACHE.STATS", "LOCAL")
    figure("TAGS COUNT 10 over %d tags" % count, "CACHE.TAGS", "LOCAL", "COUNT", "10")
    figure("INVALIDATE KEY root (cascade of %d)" % count, "CACHE.INVALIDATE", "KEY", "root")
    flush(c)
    # A selection over cache.stepped-threshold that is a small part of the database: 6% of
    # 1 000 000 entries, in steps over a walk of all of them.
    c.pipeline([["CACHE.SET", "k:%d" % i, "v", "TAGS", "1", "few" if i % 16 == 0 else "rest"]
                for i in range(count)])
    figure("INVALIDATE TAG few (%d of %d entries)" % (count // 16, count),
           "CACHE.INVALIDATE", "DEPTH", "0", "TAG", "few")
    flush(c)
    # The largest CACHE.MSET allowed: 10 000 entries, 50 000 tag names over them.
    mset = ["CACHE.MSET"]
    for i in range(10_000):
        mset += ["ENTRY", "m:%d" % i, VALUE.decode(), "TAGS", "5"] + ["t%d" % ((i + j) % 1000)
                                                                       for j in range(5)]
    figure("MSET of 10 000 entries with 5 tags each (the limit)", *mset)
    flush(c)


# ---------------------------------------------------------------------------------------------
# 7. Cost of CACHE.STATS and CACHE.RECOMMEND after 100 and after 100 000 invalidations.

def stats_cost(srv):
    c = srv.conn
    flush(c)
    c.call("CACHE.RESET")
    c.pipeline([["CACHE.SET", "s:%d" % i, VALUE, "TAGS", "1", "t%d" % (i % 50)] for i in range(1000)])

    def median_us(cmd):
        times = []
        for _ in range(200):
            t = time.perf_counter()
            c.call(*cmd)
            times.append((time.perf_counter() - t) * 1e6)
        return statistics.median(times)

    def invalidations(count, start):
        c.pipeline([["CACHE.INVALIDATE", "CONTEXT", "bench %d" % (i % 40), "KEY", "missing:%d" % (start + i)]
                    for i in range(count)])

    invalidations(100, 0)
    few = (median_us(["CACHE.STATS"]), median_us(["CACHE.RECOMMEND"]))
    invalidations(n(100_000) - 100, 100)
    many = (median_us(["CACHE.STATS"]), median_us(["CACHE.RECOMMEND"]))
    flush(c)
    report("us CACHE.STATS after 100 invalidations", few[0], "us", "median of 200, client side")
    report("us CACHE.STATS after %d invalidations" % n(100_000), many[0], "us")
    report("us CACHE.RECOMMEND after 100", few[1], "us")
    report("us CACHE.RECOMMEND after %d" % n(100_000), many[1], "us")
    report("ratio STATS cost many/few (flat: ~1)", many[0] / few[0], "x")

# ---------------------------------------------------------------------------------------------
# 8. LAZY: the command's time for 1 000 and for 1 000 000 covered entries (flat), and the
#    reclaimer's longest step (the module's own timing, CACHE.STATS lazy.max_step_us).

def lazy_stats(c):
    stats = c.call("CACHE.STATS")
    lazy = stats[stats.index(b"lazy") + 1]
    return {lazy[i].decode(): lazy[i + 1] for i in range(0, len(lazy), 2)}


def last_event_us(c):
    event = c.call("CACHE.EVENTS", "COUNT", "1")[0]
    return event[event.index(b"duration_us") + 1]


def wait_reclaimed(c):
    t = time.perf_counter()
    while c.call("CACHE.PENDING", "LAZY"):
        time.sleep(0.01)
    return (time.perf_counter() - t) * 1000.0


def lazy(srv):
    c = srv.conn
    count = n(1_000_000)
    groups = max(1, count // 1000)
    flush(c)
    c.pipeline([["CACHE.SET", "z:%d" % i, VALUE, "TAGS", "2", "all", "g:%d" % (i % groups)]
                for i in range(count)])
    # The reclaimer's longest step since here (the stall figure's stepped run used longer ones).
    c.call("CACHE.RESET")
    small = []
    for g in range(20):
        wall, covered = timed(c, "CACHE.INVALIDATE", "STRATEGY", "LAZY", "TAG", "g:%d" % g)
        assert covered == count // groups, covered
        small.append((wall, last_event_us(c)))
        wait_reclaimed(c)
    before = lazy_stats(c)
    wall_big, covered = timed(c, "CACHE.INVALIDATE", "STRATEGY", "LAZY", "TAG", "all")
    assert covered == count - 20 * (count // groups), covered
    big_us = last_event_us(c)
    drain_ms = wait_reclaimed(c)
    after = lazy_stats(c)
    assert c.call("DBSIZE") == 0
    flush(c)
    small_us = statistics.median(u for _, u in small)
    report("us LAZY TAG covering %d (module, median of 20)" % (count // groups), small_us, "us")
    report("us LAZY TAG covering %d (module)" % covered, big_us, "us")
    report("ms LAZY TAG covering %d (client wall)" % covered, wall_big, "ms")
    report("ratio LAZY time big/small (flat: ~1)", big_us / max(small_us, 1), "x")
    report("ms reclaiming %d entries in the background" % covered, drain_ms, "ms")
    report("reclaimer steps for them", after["steps"] - before["steps"], "steps")
    report("us longest reclaimer step (goal ~1000)", after["max_step_us"], "us")

# ---------------------------------------------------------------------------------------------
# 9. Thundering herd: N clients read a key at the same moment right after it was invalidated,
#    and each one that finds no value recomputes it (a 20 ms "database query") and writes it.
#    Plain CACHE.GET after an IMMEDIATE invalidation: every client recomputes. CACHE.FETCH
#    after a SOFT invalidation: one caller gets the lease (`refresh`), the others are served the
#    stale value at once; after an IMMEDIATE one: one `miss`, the others `wait` and retry.
#    Recomputes are counted as CACHE.SET calls (INFO commandstats).

HERD_CLIENTS = 50
HERD_ROUNDS = 5
RECOMPUTE_S = 0.02


def set_calls(c):
    line = c.info("commandstats").get("cmdstat_cache.set", "calls=0")
    return int(line.split(",")[0].split("=")[1])


def herd_round(port, key, use_fetch):
    """One herd on `key`; returns (recomputes counted by the clients, per-client latency ms)."""
    import threading
    conns = [Resp(port) for _ in range(HERD_CLIENTS)]
    start = threading.Barrier(HERD_CLIENTS)
    recomputes = [0] * HERD_CLIENTS
    latency = [0.0] * HERD_CLIENTS

    def client(i):
        c = conns[i]
        start.wait()
        t = time.perf_counter()
        while True:
            if use_fetch:
                value, state = c.call("CACHE.FETCH", key)
                if state == b"wait":
                    time.sleep(0.002)
                    continue
                must = state in (b"miss", b"refresh")
            else:
                value = c.call("CACHE.GET", key)
                must = value is None
            if must:
                time.sleep(RECOMPUTE_S)
                c.call("CACHE.SET", key, VALUE, "EX", "3600", "TAGS", "1", "herd")
                recomputes[i] += 1
            break
        latency[i] = (time.perf_counter() - t) * 1000.0

    threads = [threading.Thread(target=client, args=(i,)) for i in range(HERD_CLIENTS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for c in conns:
        c.sock.close()
    return sum(recomputes), latency


def herd(srv):
    c = srv.conn
    flush(c)
    schemes = [("CACHE.GET after IMMEDIATE", "IMMEDIATE", False),
               ("CACHE.FETCH after IMMEDIATE", "IMMEDIATE", True),
               ("CACHE.FETCH after SOFT", "SOFT", True)]
    out = {}
    for label, strategy, use_fetch in schemes:
        sets, lat = 0, []
        for r in range(HERD_ROUNDS):
            key = "herd:%s:%d" % (strategy, r)
            c.call("CACHE.SET", key, VALUE, "EX", "3600", "TAGS", "1", "herd")
            c.call("CACHE.INVALIDATE", "STRATEGY", strategy, "KEY", key)
            before = set_calls(c)
            counted, latency = herd_round(srv.port, key, use_fetch)
            server_sets = set_calls(c) - before
            assert server_sets == counted, (server_sets, counted)
            sets += server_sets
            lat += latency
        lat.sort()
        out[label] = sets / HERD_ROUNDS
        report("recomputes per herd of %d, %s" % (HERD_CLIENTS, label), sets / HERD_ROUNDS,
               "SETs", "mean of %d herds" % HERD_ROUNDS)
        report("ms client p50 latency, %s" % label, statistics.median(lat), "ms")
        report("ms client max latency, %s" % label, lat[-1], "ms")
    assert c.call("CACHE.DEBUG", "VERIFY") == []
    flush(c)
    report("ratio recomputes GET/FETCH after SOFT",
           out["CACHE.GET after IMMEDIATE"] / max(out["CACHE.FETCH after SOFT"], 1e-9), "x")


# ---------------------------------------------------------------------------------------------
# The stale-set guard: what CACHE.SET ... GUARD costs over CACHE.SET with a full history.

def guard(srv):
    c = srv.conn
    flush(c)
    value = "x" * 100
    c.pipeline([["CACHE.SET", "c:%012d" % i, VALUE, "TAGS", "3", "tag:a", "tag:b", "item:%d" % i]
                for i in range(100_000)])
    # A 60 s history of 10 000 invalidations per second: 600 000 facts (one tag each), kept
    # whole (the memory bound raised for it; its default is 64 MiB).
    count = n(600_000)
    c.call("CONFIG", "SET", "cache.guard-max-bytes", str(1 << 30))
    before = used_memory(c)
    c.pipeline([["CACHE.INVALIDATE", "DEPTH", "0", "TAG", "inv:%d" % i] for i in range(count)])
    st = c.call("CACHE.STATS", "JSON")
    g = json.loads(st)["guard"]
    report("guard history facts", g["history_facts"], "facts", "%d invalidations" % count)
    report("guard history bytes per invalidation", g["history_bytes"] / count, "B",
           "the history's own estimate")
    report("guard used_memory per invalidation", (used_memory(c) - before) / count, "B",
           "used_memory, events and windows included")
    token = str(c.call("CACHE.TOKEN"))
    requests = n(300_000)
    tags = ["TAGS", "3", "tag:a", "tag:b", "item:__rand_int__"]
    cmds = {
        "CACHE.SET": ["CACHE.SET", "c:__rand_int__", value] + tags,
        "CACHE.SET GUARD": ["CACHE.SET", "c:__rand_int__", value] + tags + ["GUARD", token],
    }
    runs = {k: [] for k in cmds}
    for _ in range(5):  # interleaved rounds
        for k, cmd in cmds.items():
            runs[k].append(benchmark_rps(srv, cmd, requests))
    cpu = {k: statistics.median(ns for _, ns in v) for k, v in runs.items()}
    for k in cmds:
        report("server CPU per %s (full history)" % k, cpu[k], "ns", "median of 5")
    accepted = json.loads(c.call("CACHE.STATS", "JSON"))["guard"]["accepted"]
    report("guarded sets accepted", accepted, "sets", "every one: nothing invalidated since")
    report("ratio CPU GUARD/plain CACHE.SET (goal <= 1.10)",
           cpu["CACHE.SET GUARD"] / cpu["CACHE.SET"], "x")
    c.call("CONFIG", "SET", "cache.guard-max-bytes", str(64 << 20))

# ---------------------------------------------------------------------------------------------
# The real peer (issue 26): Symfony Cache's RedisTagAwareAdapter through its own API
# (saveDeferred + commit, getItems, invalidateTags) against tagcache from the same PHP client
# (phpredis rawCommand, pipelines of 1000), scripts/bench/peer.php. Each side gets a fresh
# server of the same binary in this run; the server's CPU comes from INFO cpu.

PEER = os.path.join(ROOT, "scripts", "bench", "peer.php")


def peer_side(side, count):
    srv = Server()
    try:
        out = subprocess.run(["php", PEER, side, str(srv.port), str(count)],
                             check=True, capture_output=True, text=True).stdout
    finally:
        srv.stop()
    return json.loads(out.strip().splitlines()[-1])


def symfony(srv):
    if not shutil.which("php"):
        print("symfony: no php (scripts/bench.sh installs php-cli php-redis php-symfony-cache);"
              " left out", flush=True)
        return
    count = n(100_000)
    sides = {s: peer_side(s, count) for s in ("symfony", "tagcache", "tagcache-mset")}
    for s, f in sides.items():
        assert f["read_hits"] == count, (s, f["read_hits"])
        assert f["hits_after_small"] == 0 and f["hits_after_all"] == 0, (s, f)
    small = sides["tagcache"]["small_tag_entries"]
    rows = [
        ("server CPU per saved entry", "us", lambda f: f["cpu_save_s"] / count * 1e6),
        ("server CPU per entry read (batches of 1000)", "us",
         lambda f: f["cpu_read_s"] / count * 1e6),
        ("bytes per entry", "B", lambda f: f["memory_bytes"] / count),
        ("invalidate the tag all %d share: server CPU" % count, "ms",
         lambda f: f["cpu_invalidate_all_s"] * 1e3),
        ("longest PING round trip during it", "ms", lambda f: f["ping_max_ms"]),
        ("invalidate a 1%% tag (%d entries): server CPU" % small, "ms",
         lambda f: f["cpu_invalidate_small_s"] * 1e3),
    ]
    print("%-52s %12s %12s %10s" % ("figure (%d entries, 3 tags, 100 B)" % count, "Symfony",
                                    "tagcache", "tc/Symfony"), flush=True)
    for label, unit, get in rows:
        theirs, ours = get(sides["symfony"]), get(sides["tagcache"])
        print("%-52s %9.2f %-2s %9.2f %-2s %10.3f" % (label, theirs, unit, ours, unit,
                                                     ours / theirs if theirs else float("nan")),
              flush=True)
        RESULTS["peer %s Symfony" % label] = theirs
        RESULTS["peer %s tagcache" % label] = ours
        RESULTS["peer ratio %s tagcache/Symfony" % label] = ours / theirs if theirs else None
    for what in ("keys_left_after_invalidations", "keys_left_after_ttl"):
        label = what.replace("_", " ")
        print("%-52s %12d %12d %10s" % (label, sides["symfony"][what], sides["tagcache"][what],
                                        "-"), flush=True)
        RESULTS["peer %s Symfony" % label] = sides["symfony"][what]
        RESULTS["peer %s tagcache" % label] = sides["tagcache"][what]
    save = sides["tagcache"]["cpu_save_s"] / sides["symfony"]["cpu_save_s"]
    report("ratio CPU per saved entry tagcache/Symfony (goal <= 0.5)", save, "x",
           "pipelined CACHE.SET against commit")
    mset = sides["tagcache-mset"]["cpu_save_s"] / sides["symfony"]["cpu_save_s"]
    report("ratio CPU per saved entry CACHE.MSET/Symfony (goal <= 0.5)", mset, "x",
           "one CACHE.MSET per batch of %d against commit" % sides["tagcache-mset"]["batch"])
    report("ratio CPU per saved entry CACHE.MSET/pipelined CACHE.SET",
           sides["tagcache-mset"]["cpu_save_s"] / sides["tagcache"]["cpu_save_s"], "x")
    inv = sides["tagcache"]["cpu_invalidate_small_s"] / sides["symfony"]["cpu_invalidate_small_s"]
    report("ratio CPU 1% tag tagcache/Symfony (goal <= 0.5)", inv, "x")
    mem = sides["tagcache"]["memory_bytes"] / sides["symfony"]["memory_bytes"]
    report("ratio bytes per entry tagcache/Symfony (goal <= 0.5)", mem, "x")
    read = sides["tagcache"]["cpu_read_s"] / sides["symfony"]["cpu_read_s"]
    report("ratio CPU per entry read tagcache/Symfony (goal <= 1.0)", read, "x")


# ---------------------------------------------------------------------------------------------
# Scale (issue 26): the same figures at 1M and 10M entries (BENCH_SCALE_SIZES, default
# "1000000 10000000", each scaled): bytes per entry, CACHE.SET and CACHE.GET CPU per request,
# the longest PING while invalidating 10% of the entries, and the RDB load time against a
# plain-string dataset of the same keys and values.

def _bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


def fast_load(c, count, cache, chunk=5000):
    """Entries `e:<i>` with a 100-byte value: CACHE.MSET of `chunk` entries, each with the tags
    all, g.<i % 100> and i.<i> (as the Symfony figure), or plain MSET when not `cache`."""
    value = _bulk(VALUE)
    for start in range(0, count, chunk):
        ids = range(start, min(count, start + chunk))
        if cache:
            head = [_bulk(b"CACHE.MSET")]
            parts = [b"$5\r\nENTRY\r\n" + _bulk(b"e:%d" % i) + value + b"$4\r\nTAGS\r\n$1\r\n3\r\n"
                     + b"$3\r\nall\r\n" + _bulk(b"g.%d" % (i % 100)) + _bulk(b"i.%d" % i)
                     for i in ids]
            argc = 1 + 8 * len(ids)
        else:
            head = [_bulk(b"MSET")]
            parts = [_bulk(b"e:%d" % i) + value for i in ids]
            argc = 1 + 2 * len(ids)
        c.sock.sendall(b"*%d\r\n" % argc + b"".join(head) + b"".join(parts))
        c.read()


def scale(srv):
    sizes = [n(int(x)) for x in os.environ.get("BENCH_SCALE_SIZES", "1000000 10000000").split()]
    for count in sizes:
        fresh = Server()
        try:
            c = fresh.conn
            base = used_memory(c)
            t = time.perf_counter()
            fast_load(c, count, cache=True)
            load_s = time.perf_counter() - t
            per_entry = (used_memory(c) - base) / count
            report("scale %d: bytes per entry (3 tags)" % count, per_entry, "B",
                   "loaded in %.1f s" % load_s)
            ms_cache = fresh.restart_loading() * 1000.0
            c = fresh.conn
            report("scale %d: RDB load ms, tagcache" % count, ms_cache, "ms", "the server's log")
            tags = ["g.%d" % g for g in range(10)]
            ms, worst, removed = longest_ping(fresh, "CACHE.INVALIDATE", "DEPTH", "0", "TAG", *tags)
            assert removed == count // 10, removed
            report("scale %d: longest PING invalidating 10%% (goal <= 10)" % count, worst, "ms",
                   "%s entries, %.0f ms" % (removed, ms))
            # On the 90% left: keys e:<i> for i below 100 000 (CACHE.GET hits nine in ten);
            # CACHE.SET writes keys of their own, so the dataset's entries stay as loaded.
            for label, cmd in (("CACHE.GET", ["CACHE.GET", "e:__rand_int__"]),
                               ("CACHE.SET", ["CACHE.SET", "s:__rand_int__", VALUE.decode(),
                                              "TAGS", "3", "all", "g.1", "i.__rand_int__"])):
                runs = [benchmark_rps(fresh, cmd, n(200_000))[1] for _ in range(3)]
                report("scale %d: server CPU per %s" % (count, label), statistics.median(runs),
                       "ns", "median of 3 runs of redis-benchmark -P 16 -r 100000")
            assert c.call("CACHE.DEBUG", "VERIFY") == []
            c.call("FLUSHALL")
            fast_load(c, count, cache=False)
            ms_plain = fresh.restart_loading() * 1000.0
            report("scale %d: RDB load ms, plain strings" % count, ms_plain, "ms")
            report("scale %d: ratio RDB load tagcache/plain (goal <= 1.5)" % count,
                   ms_cache / ms_plain, "x")
        finally:
            fresh.stop()


# ---------------------------------------------------------------------------------------------
# Cluster: a cluster-wide tag invalidation over 3 masters x 200 000 entries.

CLUSTER_ROUNDS = 3


def cluster_figure(_srv):
    """Three masters (redis-cli --cluster create), 200 000 entries tagged t on each, none
    depending on anything. The cluster-wide CACHE.INVALIDATE TAG t from one master against the
    slowest master's own part (CACHE.INVALIDATE LOCAL TAG t on each; `stepped-threshold 0`, so
    that it runs at once as a cluster-wide invalidation does): what the fan-out and the
    cascade bookkeeping add (issue 23, defect 6: every master used to send back every key it
    removed, for a cascade round no master could take). Then the same with one entry on the
    third master depending on a key of the first: the keys are needed and asked for."""
    count = n(200_000)
    root = tempfile.mkdtemp(prefix="tagcache-bench-cluster-")
    procs, ports = [], []
    try:
        for i in range(3):
            port = free_port()
            while any(abs(port - p) == 10000 for p in ports) or port > 55535:
                port = free_port()
            d = os.path.join(root, "n%d" % i)
            os.makedirs(d)
            procs.append(subprocess.Popen(
                [SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
                 "--appendonly", "no", "--logfile", "server.log", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "60000",
                 "--loadmodule", MODULE, "cluster-timeout-ms", "40000",
                 "stepped-threshold", "0"],
                cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(port)
        conns = []
        for port in ports:
            deadline = time.time() + 10
            while True:
                try:
                    c = Resp(port)
                    c.call("PING")
                    conns.append(c)
                    break
                except (ConnectionError, OSError, RuntimeError):
                    if time.time() > deadline:
                        raise SystemExit("cluster node did not start")
                    time.sleep(0.05)
        subprocess.run(["redis-cli", "--cluster", "create"]
                       + ["127.0.0.1:%d" % p for p in ports] + ["--cluster-yes"],
                       check=True, capture_output=True)
        deadline = time.time() + 30
        while not all(b"cluster_state:ok" in c.call("CLUSTER", "INFO") for c in conns):
            if time.time() > deadline:
                raise SystemExit("cluster not ok")
            time.sleep(0.1)
        time.sleep(1)
        # A hash tag on each master: all of its entries in one of that master's slots.
        slots = conns[0].call("CLUSTER", "SLOTS")
        owner = {}
        for first, last, master, *_ in slots:
            owner[(first, last)] = ports.index(master[1])
        tags = [None] * 3
        g = 0
        while None in tags:
            slot = conns[0].call("CLUSTER", "KEYSLOT", "{g%d}" % g)
            for (first, last), m in owner.items():
                if first <= slot <= last and tags[m] is None:
                    tags[m] = "{g%d}" % g
            g += 1

        def fill():
            for c, tag in zip(conns, tags):
                c.pipeline([["CACHE.SET", "%s:%d" % (tag, i), VALUE, "TAGS", "1", "t"]
                            for i in range(count)])

        # CPU time of the masters (/proc, 10 ms ticks), robust to a loaded machine, beside the
        # wall time of the command.
        def cpu(i=None):
            pids = [p.pid for p in procs] if i is None else [procs[i].pid]
            return sum(server_cpu_seconds(pid) for pid in pids) * 1000.0

        rows = {k: [] for k in ("cluster", "local", "dep")}
        for _ in range(CLUSTER_ROUNDS):
            fill()
            before, before0 = cpu(), cpu(0)
            ms, removed = timed(conns[0], "CACHE.INVALIDATE", "TAG", "t")
            assert removed == 3 * count, removed
            rows["cluster"].append((ms, cpu(0) - before0, cpu() - before))
            fill()
            before, before0, local = cpu(), cpu(0), []
            for c in conns:
                ms, removed = timed(c, "CACHE.INVALIDATE", "LOCAL", "TAG", "t")
                assert removed == count, removed
                local.append(ms)
            rows["local"].append((max(local), cpu(0) - before0, cpu() - before))
            fill()
            conns[2].call("CACHE.SET", "%s:dep" % tags[2], VALUE, "DEPENDS", "1", "%s:7" % tags[0])
            before, before0 = cpu(), cpu(0)
            ms, removed = timed(conns[0], "CACHE.INVALIDATE", "TAG", "t")
            assert removed == 3 * count + 1, removed
            rows["dep"].append((ms, cpu(0) - before0, cpu() - before))
        # The longest PING round trip on each master (a second connection each) while the
        # cluster-wide invalidation runs: at once (`stepped-threshold 0`, as above), then with
        # the default threshold, each master's part in the reclaimer's steps (issue 23,
        # defect 5; goal <= 20 ms).
        stalls = {}
        for label, threshold in (("at once", "0"), ("stepped", "50000")):
            for c in conns:
                c.call("CONFIG", "SET", "cache.stepped-threshold", threshold)
            worst = []
            for _ in range(CLUSTER_ROUNDS):
                fill()
                ms, pings, removed = pings_on(ports, conns[0], "CACHE.INVALIDATE", "TAG", "t")
                assert removed == 3 * count, removed
                worst.append((ms, pings))
            stalls[label] = worst
        for c in conns:
            c.call("CONFIG", "SET", "cache.stepped-threshold", "0")
        for c in conns:
            assert c.call("CACHE.DEBUG", "VERIFY") == [], "VERIFY"
        med = {k: [statistics.median(r[j] for r in v) for j in range(3)]
               for k, v in rows.items()}
        note = "3 masters, median of %d" % CLUSTER_ROUNDS
        report("ms cluster-wide tag invalidation (3x%d)" % count, med["cluster"][0], "ms", note)
        report("ms slowest master's LOCAL part (%d)" % count, med["local"][0], "ms", note)
        report("ms cluster-wide, one cross-shard dependency", med["dep"][0], "ms", note)
        report("ms CPU, sender, cluster-wide", med["cluster"][1], "ms", note)
        report("ms CPU, sender, its LOCAL part", med["local"][1], "ms", note)
        report("ms CPU, sender, one dependency", med["dep"][1], "ms", note)
        report("ratio sender CPU cluster-wide vs LOCAL", med["cluster"][1] / med["local"][1], "x",
               "no dependency (the cascade bookkeeping)")
        report("ratio all masters' CPU cluster-wide vs LOCAL", med["cluster"][2] / med["local"][2],
               "x", "no dependency")
        report("ratio sender CPU, one dependency vs LOCAL", med["dep"][1] / med["local"][1], "x",
               "the keys are asked for")
        for label, worst in stalls.items():
            for m in range(3):
                report("ms longest PING on master %d, cluster-wide tag invalidation (3x%d), %s"
                       % (m, count, label), max(p[m] for _, p in worst), "ms",
                       "worst of %d; master 0 sends" % CLUSTER_ROUNDS)
            report("ms cluster-wide tag invalidation (3x%d), %s" % (count, label),
                   statistics.median(ms for ms, _ in worst), "ms", note)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def main():
    if not os.path.exists(MODULE):
        raise SystemExit("module not found: %s (run scripts/bench.sh)" % MODULE)
    version = subprocess.run([SERVER, "--version"], capture_output=True, text=True).stdout.strip()
    print("server: %s\nmodule: %s\nscale: %s" % (version, MODULE, SCALE), flush=True)
    only = set(sys.argv[1:])
    figures = [("throughput", throughput), ("memory", memory), ("return", memory_return), ("tag", tag_invalidation),
               ("pattern", pattern_invalidation), ("cascade", cascade), ("stall", stall),
               ("worst", worst_cases),
               ("stats", stats_cost), ("lazy", lazy), ("herd", herd), ("guard", guard),
               ("symfony", symfony), ("scale", scale), ("cluster", cluster_figure)]
    srv = Server()
    try:
        for name, fn in figures:
            if not only or name in only:
                fn(srv)
    finally:
        srv.stop()
    print("SUMMARY " + json.dumps({"server": version, "scale": SCALE, **RESULTS}, sort_keys=True))


if __name__ == "__main__":
    main()
