"""Every CACHE.* command through TagCache, under RESP2 and RESP3 (the `tc` fixture)."""

import asyncio
import datetime as dt

import pytest
import redis

import tagcache
from tagcache import Event, FetchResult, Inspect, Recommendation, Stats


def test_set_get_with_tags_depends_meta(tc):
    assert tc.set("user:1", b"\x00ada\xff", 60, tags=["users", "org:7"], depends=["db:users:1"],
                  meta={"q": "u1"}) is True
    assert tc.get("user:1") == b"\x00ada\xff"
    i = tc.inspect("user:1")
    assert isinstance(i, Inspect)
    assert sorted(i.tags) == ["org:7", "users"] and i.depends == ["db:users:1"]
    assert i.meta == {"q": "u1"} and 0 < i.ttl_ms <= 60000 and i.size == 5 and not i.stale
    assert tc.inspect("nope") is None
    assert tc.get("nope") is None


def test_ttl_forms_nx_xx(tc):
    assert tc.set("a", "1", 1.5)
    assert 0 < tc.inspect("a").ttl_ms <= 1500
    assert tc.set("b", "1", dt.timedelta(seconds=10))
    assert 1500 < tc.inspect("b").ttl_ms <= 10000
    assert tc.set("c", "1", pxat=int((dt.datetime.now().timestamp() + 100) * 1000))
    assert tc.inspect("c").ttl_ms > 10000
    assert tc.set("a", "2", nx=True) is False
    assert tc.set("z", "2", xx=True) is False
    assert tc.set("a", "3", xx=True, keepttl=True) is True
    assert 0 < tc.inspect("a").ttl_ms <= 1500
    assert tc.set("n", "v") and tc.inspect("n").ttl_ms == -1
    with pytest.raises(redis.DataError):
        tc.set("a", "v", 1, px=5)


def test_mget_mset(tc):
    assert tc.mset({"k1": "a", "k2": b"b"}, 30, tags=["t"]) == [True, True]
    assert tc.mget(["k1", "missing", "k2"]) == [b"a", None, b"b"]
    assert tc.mget("k1", "k2") == [b"a", b"b"]
    assert tc.mset({"k1": "x", "k3": "y"}, nx=True) == [False, True]
    assert sorted(tc.keys(tag="t")) == ["k1", "k2"]


def test_mset_is_one_atomic_command(tc):
    tc.plain.set("plain", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        tc.mset({"m1": "a", "plain": "b"}, tags=["m"])
    assert tc.mget(["m1"]) == [None], "nothing stored"
    assert tc.mset({"m1": "a", "m2": "b"}, 60, tags=["m"], meta={"by": "mset"}) == [True, True]
    assert sorted(tc.keys(tag="m")) == ["m1", "m2"]
    assert tc.inspect("m2").meta == {"by": "mset"}
    assert 0 < tc.inspect("m1").ttl_ms <= 60_000
    # Past one CACHE.MSET's limits: sent as several.
    many = {"many:%d" % i: "v" for i in range(2500)}
    assert tc.mset(many, tags=["t%d" % i for i in range(30)]) == [True] * 2500
    assert len(tc.keys(tag="t29")) == 2500


@pytest.mark.parametrize("transaction", [False, True], ids=["pipeline", "multi"])
def test_pipeline_parses_replies(tc, transaction):
    tc.set("x", "v", tags=["t"])
    p = tc.pipeline(transaction=transaction)
    p.set("a", "1", 10, tags=["t"]).get("a").inspect("a").fetch("nope").keys(tag="t")
    p.mset({"b": "2", "c": "3"}, nx=True).stats()
    a_set, a_get, a_inspect, f, ks, b, c, st = p.execute()
    assert a_set is True and a_get == b"1" and a_inspect.tags == ["t"] and a_inspect.ttl_ms > 0
    assert f.state == "miss" and isinstance(f.token, int)
    assert ks == ["a", "x"] and b is True and c is True and st.entries == 4
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        tc.plain.set("p", "v")
        tc.pipeline(transaction=transaction).get("p").execute()


def test_tag_depend(tc):
    tc.set("e", "v")
    assert tc.tag("e", "a", "b") == 2
    assert tc.tag("e", "a") == 0
    assert tc.depend("e", "r1") == 1
    i = tc.inspect("e")
    assert sorted(i.tags) == ["a", "b"] and i.depends == ["r1"]
    with pytest.raises(redis.ResponseError, match="no such key"):
        tc.tag("nope", "a")


def test_invalidate_every_selector(tc):
    tc.mset({"u:1": "a", "u:2": "b"}, tags=["users"])
    tc.set("p:1", "c", depends=["u:1"])
    tc.set("ns:x:1", "d")
    tc.set("img:9", "e", depends=["row:9"])
    tc.plain.set("u:plain", "stays")
    assert tc.keys(dependents="row:9") == ["img:9"]
    assert tc.invalidate(key="u:1", context="saved") == 2  # and the cascade to p:1
    assert tc.get("p:1") is None
    assert tc.invalidate(tags=["users", "other"]) == 1
    assert tc.invalidate(namespace="ns:x") == 1
    assert tc.invalidate(dependents=["row:9"], depth=0) == 1
    tc.set("q:1", "v")
    assert tc.invalidate(pattern="q:*", strategy="lazy") == 1
    assert tc.get("q:1") is None
    tc.set("s:1", "v")
    assert tc.invalidate(key="s:1", strategy="soft", grace=30) == 1
    assert tc.get("s:1") is None
    assert tc.inspect("s:1").stale
    f = tc.fetch("s:1")
    assert f.state == "refresh" and f.value == b"v" and f.holds_lease
    assert tc.invalidate(all=True) == 1
    assert tc.plain.get("u:plain") == b"stays"
    ev = tc.events()
    assert all(isinstance(e, Event) for e in ev) and ev[-1].context == "saved"
    assert ev[-1].type == "key" and ev[-1].keys_invalidated == 2
    assert [e.strategy for e in tc.events(count=2)] == ["immediate", "soft"]
    with pytest.raises(redis.DataError):
        tc.invalidate(tag="a", key="b")
    with pytest.raises(redis.DataError):
        tc.invalidate()


def test_batched_and_pending(tc):
    tc.set("b:1", "v", tags=["t"])
    assert tc.invalidate(tag="t", strategy="batched", context="later") == 0
    p = tc.pending()
    assert len(p) == 1 and p[0]["type"] == "tag" and p[0]["context"] == "later"
    assert tc.pending_flush() == 1
    assert tc.pending() == []
    tc.debug_reclaim_pause()
    tc.set("l:1", "v")
    tc.invalidate(key="l:1", strategy="lazy")
    marks = tc.pending_lazy()
    assert len(marks) == 1 and marks[0]["selected"] == 1
    assert tc.debug_reclaim_step() == 1
    assert tc.debug_reclaim_resume()


def test_fetch_states_and_token(tc):
    t0 = tc.token()
    assert isinstance(t0, int) and isinstance(tc.token("k"), int)
    f = tc.fetch("k", lease_ms=10000)
    assert f == FetchResult(None, "miss", f.token) and isinstance(f.token, int)
    assert tc.fetch("k").state == "wait"
    assert tc.set("k", "v", guard=f.token)
    assert tc.fetch("k") == FetchResult(b"v", "hit", tc.fetch("k").token)
    assert tc.fetch("k", with_token=False).token is None


def test_guard_refuses_after_invalidation(tc):
    t = tc.token()
    tc.set("g", "old", tags=["t"])
    tc.invalidate(tag="t")
    assert tc.set("g", "stale", tags=["t"], guard=t) is False
    assert tc.get("g") is None
    assert tc.set("g", "fresh", tags=["t"], guard=tc.token()) is True
    assert tc.stats().guard["refused"] == 1


def test_tags_hotkeys_stats_recommend_reset(tc):
    tc.mset({f"e{i}": "v" for i in range(3)}, tags=["big"])
    tc.set("x", "v", tags=["small"])
    for _ in range(3):
        tc.get("e1")
    assert tc.tags() == [("big", 3), ("small", 1)]
    assert tc.tags(match="s*", count=1) == [("small", 1)]
    assert tc.hotkeys(count=1) == [("e1", 3)]
    s = tc.stats()
    assert isinstance(s, Stats) and s.entries == 4 and s.hits == 3 and s.alert_level == "normal"
    assert s.operations["get"]["count"] == 3 and "guard" in s.raw
    tc.invalidate(tag="big")
    recs = tc.recommend()
    assert recs and all(isinstance(r, Recommendation) for r in recs)
    assert any(r.issue == "Dominant invalidation pattern" for r in recs)
    assert tc.reset_stats() is True
    assert tc.stats().total_invalidations == 0 and tc.events() == []


def test_rules_relations_write(tc):
    assert tc.rule_set("sessions", "user", ["sessions:{id}", "listing"], ops=["update", "delete"],
                       strategy="immediate", priority=3)
    rules = tc.rule_list()
    assert rules[0]["name"] == "sessions" and rules[0]["invalidate"] == ["sessions:{id}", "listing"]
    assert rules[0]["priority"] == 3
    assert tc.relate("user", "post", depth=1)
    assert tc.relate_list()[0]["target"] == "post"
    tc.set("s", "v", tags=["sessions:7"])
    tc.set("p", "v", tags=["post:7"])
    tc.set("other", "v", tags=["sessions:8"])
    assert tc.write("user", 7, op="update", context="profile saved") == 2
    assert tc.keys(all=True) == ["other"]
    assert tc.relate_del("user", "post") and not tc.relate_del("user", "post")
    assert tc.rule_del("sessions") and tc.rule_list() == []
    with pytest.raises(redis.ResponseError, match="unknown placeholder"):
        tc.rule_set("bad", "user", ["x:{user}"])


def test_errors_carry_the_servers_message(tc):
    tc.plain.set("plain", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        tc.get("plain")
    with pytest.raises(redis.ResponseError, match="META must be a JSON object"):
        tc.set("k", "v", meta="[1]")
    with pytest.raises(redis.ResponseError, match="unknown strategy"):
        tc.invalidate(all=True, strategy="sometimes")


def test_debug_verify_rebuild(tc):
    tc.set("a", "v", tags=["t"], depends=["r"])
    assert tc.debug_verify() == []
    assert tc.debug_rebuild() == 1


def test_plain_commands_stay_reachable(tc):
    assert tc.plain.set("p", "1") and tc.plain.incr("p") == 2
    with tc.plain.lock("lk", timeout=5):
        assert tc.plain.exists("lk") == 1


def test_async_client(server, protocol):
    async def main():
        c = tagcache.AsyncTagCache(port=server.port, protocol=protocol)
        try:
            assert await c.set("a", "v", 10, tags=["t"]) is True
            assert await c.get("a") == b"v"
            assert (await c.inspect("a")).tags == ["t"]
            assert await c.mset({"b": "1", "c": "2"}, tags=["t"]) == [True, True]
            assert await c.keys(tag="t") == ["a", "b", "c"]
            f = await c.fetch("d")
            assert f.state == "miss"
            assert await c.set("d", "x", guard=f.token)
            assert (await c.stats()).entries == 4
            assert await c.invalidate(tag="t") == 3
            assert (await c.events())[0].keys_invalidated == 3
            p = c.pipeline()
            p.set("e", "1", tags=["u"]).inspect("e").invalidate(tag="u")
            assert [type(x).__name__ for x in await p.execute()] == ["bool", "Inspect", "int"]
            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                await c.plain.set("p", "v")
                await c.get("p")
        finally:
            await c.aclose()

    asyncio.run(main())
