"""get_or_compute and @cached: the FETCH protocol against a real server."""

import asyncio
import pickle
import threading

import pytest

import tagcache
from tagcache import cached


def test_miss_then_hit(tc):
    calls = []
    v = tc.get_or_compute("k", lambda: calls.append(1) or b"v1", 60, tags=["t"], meta={"m": 1})
    assert v == b"v1" and calls == [1]
    assert tc.get_or_compute("k", lambda: calls.append(1) or b"v2") == b"v1" and calls == [1]
    i = tc.inspect("k")
    assert i.tags == ["t"] and i.meta == {"m": 1} and i.ttl_ms > 0


def test_herd_computes_once_per_key(server):
    """32 threads on 4 keys: one compute per key, every thread gets that key's value."""
    computes = {}
    lock = threading.Lock()
    start = threading.Barrier(32)
    release = threading.Event()
    results = []

    def compute(key):
        with lock:
            computes[key] = computes.get(key, 0) + 1
        release.wait(10)  # hold the lease until every thread has fetched at least once
        return f"value-of-{key}".encode()

    def worker(n):
        c = tagcache.TagCache(port=server.port)
        key = f"herd:{n % 4}"
        start.wait()
        results.append((key, c.get_or_compute(key, lambda: compute(key), 60, wait=30)))
        c.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    c = tagcache.TagCache(port=server.port)
    # Every key's lease is taken (fetches counted) before the computes may finish.
    for _ in range(1000):
        if c.stats().soft["fetches"]["wait"] >= 28 and len(computes) == 4:
            break
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(30)
    assert computes == {f"herd:{i}": 1 for i in range(4)}
    assert len(results) == 32
    assert all(v == f"value-of-{k}".encode() for k, v in results)


def test_wait_is_bounded_then_computes_without_storing(tc):
    lease = tc.fetch("busy", lease_ms=60000)
    assert lease.state == "miss"
    v = tc.get_or_compute("busy", lambda: b"mine", wait=0.2)
    assert v == b"mine"
    assert tc.get("busy") is None  # not stored: the lease holder stores
    assert tc.set("busy", b"holder", guard=lease.token)
    assert tc.get_or_compute("busy", lambda: b"x") == b"holder"


def test_refresh_and_stale_return_the_stale_value(tc):
    tc.set("s", b"old", 60)
    tc.invalidate(key="s", strategy="soft", grace=60)
    lease = tc.fetch("s", lease_ms=60000)  # someone else took the refresh lease
    assert lease.state == "refresh"
    assert tc.get_or_compute("s", lambda: b"never") == b"old"  # stale
    assert tc.set("s", b"new", 60, guard=lease.token)
    assert tc.get_or_compute("s", lambda: b"never") == b"new"


def _race(tc, guarded: bool) -> tuple:
    """The stale-set race: a writer reads row:1 (version 1) to compute view:1; meanwhile the row
    is bumped to 2 and DEPENDENTS row:1 invalidated; then the writer stores what it read.
    Returns (row version, entry value or None)."""
    plain = tc.plain
    plain.set("row:1", 1)
    have_read = threading.Event()
    go_on = threading.Event()

    def compute():
        v = plain.get("row:1")
        have_read.set()
        go_on.wait(10)
        return v

    def writer():
        if guarded:
            tc.get_or_compute("view:1", compute, 60, depends=["row:1"])
        else:  # the same loop without the guard: what a client without tokens does
            r = tc.fetch("view:1")
            assert r.state == "miss"
            tc.set("view:1", compute(), 60, depends=["row:1"])

    t = threading.Thread(target=writer)
    t.start()
    assert have_read.wait(10)
    plain.incr("row:1")
    tc.invalidate(dependents="row:1", context="row 1 saved")
    go_on.set()
    t.join(10)
    return int(plain.get("row:1")), tc.get("view:1")


def test_stale_set_race_guard_stores_nothing_older_than_the_row(tc):
    row, entry = _race(tc, guarded=True)
    assert row == 2
    assert entry is None or int(entry) == row
    assert tc.stats().guard["refused"] == 1
    # The next reader computes from the new row.
    assert int(tc.get_or_compute("view:1", lambda: tc.plain.get("row:1"), depends=["row:1"])) == 2


def test_stale_set_race_without_guard_leaves_a_stale_entry(tc):
    """The control: the same race through an unguarded SET does leave version 1 behind."""
    row, entry = _race(tc, guarded=False)
    assert row == 2 and int(entry) == 1


def test_stale_set_race_many_writers(server):
    """Free-running: 4 writers recompute view:n from row:n while a bumper bumps the rows and
    invalidates their dependents; after the bumper stops and the writers drain, no entry is
    older than its row."""
    c = tagcache.TagCache(port=server.port)
    rows = [f"row:{i}" for i in range(3)]
    for r in rows:
        c.plain.set(r, 0)
    stop = threading.Event()

    def writer(n):
        w = tagcache.TagCache(port=server.port)
        i = n
        while not stop.is_set():
            r = rows[i % 3]
            w.get_or_compute(f"view:{r}", lambda: w.plain.get(r), 60, depends=[r], wait=1)
            i += 1
        w.close()

    def bumper():
        b = tagcache.TagCache(port=server.port)
        for k in range(300):
            r = rows[k % 3]
            b.plain.incr(r)
            b.invalidate(dependents=r)
        b.close()

    ws = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in ws:
        t.start()
    bumper()
    stop.set()
    for t in ws:
        t.join(30)
    for r in rows:
        entry = c.get(f"view:{r}")
        assert entry is None or int(entry) == int(c.plain.get(r)), r
    assert c.debug_verify() == []


def test_async_get_or_compute_and_herd(server):
    async def main():
        c = tagcache.AsyncTagCache(port=server.port)
        computes = []

        async def compute():
            computes.append(1)
            await asyncio.sleep(0.05)
            return b"v"

        vals = await asyncio.gather(*[c.get_or_compute("a", compute, 60, wait=10) for _ in range(20)])
        assert vals == [b"v"] * 20 and computes == [1]
        assert await c.get_or_compute("b", lambda: b"sync-fn") == b"sync-fn"
        await c.aclose()

    asyncio.run(main())


def test_cached_decorator(tc):
    calls = []

    @cached(tc, 60, tags=lambda user_id, **kw: [f"user:{user_id}"], depends=["db:songs"])
    def songs(user_id, genre=None):
        calls.append((user_id, genre))
        return {"user": user_id, "genre": genre, "songs": [1, 2]}

    assert songs(1, genre="jazz") == {"user": 1, "genre": "jazz", "songs": [1, 2]}
    assert songs(1, genre="jazz")["songs"] == [1, 2]
    assert calls == [(1, "jazz")]
    songs(2)
    key = songs.key_for(1, genre="jazz")
    assert key.startswith("cached:test_compute.test_cached_decorator.<locals>.songs:")
    assert key == songs.key_for(1, genre="jazz") != songs.key_for(1, genre="rock")
    i = tc.inspect(key)
    assert sorted(i.tags) == sorted([songs.tag, "user:1"]) and i.depends == ["db:songs"]
    assert i.meta["function"].endswith("songs") and i.meta["args"] == "1, genre='jazz'"
    assert i.meta["called_at"] > 0
    assert pickle.loads(tc.get(key))["genre"] == "jazz"
    tc.invalidate(tag="user:2")
    songs(1, genre="jazz")
    songs(2)
    assert calls == [(1, "jazz"), (2, None), (2, None)]
    assert songs.invalidate() == 2  # by function name
    songs(1, genre="jazz")
    assert len(calls) == 4


def test_args_hash_is_stable():
    assert tagcache.args_hash((1, {"b": 2, "a": 1}), {}) == tagcache.args_hash((1, {"a": 1, "b": 2}), {})
    assert tagcache.args_hash((1,), {}) != tagcache.args_hash(("1",), {})
    assert tagcache.args_hash(({1, 2, 3},), {"x": b"\x00"}) == "%s" % tagcache.args_hash(({3, 2, 1},), {"x": b"\x00"})


def test_cached_async(server):
    async def main():
        c = tagcache.AsyncTagCache(port=server.port)
        n = []

        @cached(c, 30, tags=["t"])
        async def f(x):
            n.append(x)
            return x * 2

        assert await f(3) == 6 and await f(3) == 6 and n == [3]
        assert await f.invalidate() == 1
        await c.aclose()

    asyncio.run(main())
