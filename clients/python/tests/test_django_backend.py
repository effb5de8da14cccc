"""What TagCacheBackend adds to Django's API: tags, dependencies, the tagged view, a clear()
that keeps plain keys and other prefixes, incr keeping the entry's tags and TTL."""

import asyncio

import django_env

django_env.ensure()

import pytest  # noqa: E402
import redis  # noqa: E402
from django.core.cache import caches  # noqa: E402
from django.test import override_settings  # noqa: E402

import tagcache  # noqa: E402

BACKEND = "tagcache.django.TagCacheBackend"


@pytest.fixture
def dj(server):
    conf = {
        "default": {"BACKEND": BACKEND, "LOCATION": server.url, "KEY_PREFIX": "site", "TIMEOUT": 60},
        "other": {"BACKEND": BACKEND, "LOCATION": server.url, "KEY_PREFIX": "other"},
        "noprefix": {"BACKEND": BACKEND, "LOCATION": server.url},
    }
    with override_settings(CACHES=conf):
        yield caches["default"]


def test_set_with_tags_and_depends_then_invalidate(dj):
    dj.set("user:1", {"name": "Ada"}, tags=["users", "org:7"], depends=["db:users:1"])
    dj.set("page", "<html>", depends=[dj.make_key("user:1")])
    dj.set("user:2", {"name": "Bob"}, tags=["users"])
    tc = dj.client
    i = tc.inspect("site:1:user:1")
    assert sorted(i.tags) == ["org:7", "users"] and 0 < i.ttl_ms <= 60000
    assert dj.invalidate_dependents("db:users:1") == 2  # user:1 and, by the cascade, page
    assert dj.get("user:1") is None and dj.get("page") is None
    assert dj.get("user:2") == {"name": "Bob"}
    assert dj.invalidate_tags("users") == 1
    assert dj.get("user:2") is None


def test_tagged_view(dj):
    t = dj.tagged(["posts", "feed"])
    t.set("p1", [1, 2])
    t.set_many({"p2": 2, "p3": 3})
    assert t.get_or_set("p4", lambda: "computed") == "computed"
    dj.set("untagged", 1)
    assert sorted(x for x, _ in dj.client.tags()) == ["feed", "posts"]
    assert t.flush() == 4
    assert dj.get_many(["p1", "p2", "p3", "p4", "untagged"]) == {"untagged": 1}


def test_clear_keeps_plain_keys_and_other_prefixes(dj):
    other = caches["other"]
    dj.set("a", 1)
    dj.set("b", 2, version=2)
    other.set("a", 3)
    plain = dj.client.plain
    plain.set("site:1:plain", "stays")
    assert dj.clear()
    assert dj.get("a") is None and dj.get("b", version=2) is None
    assert other.get("a") == 3
    assert plain.get("site:1:plain") == b"stays"
    caches["noprefix"].set("x", 1)
    caches["noprefix"].clear()  # keys ":1:x": pattern ":*"
    assert caches["noprefix"].get("x") is None and other.get("a") == 3


def test_incr_keeps_tags_ttl_and_meta(dj):
    dj.set("n", 41, 100, tags=["counters"], depends=["r"], meta={"why": "test"})
    assert dj.incr("n") == 42 and dj.decr("n", 2) == 40
    i = dj.client.inspect("site:1:n")
    assert i.tags == ["counters"] and i.depends == ["r"] and i.meta == {"why": "test"}
    assert 0 < i.ttl_ms <= 100000
    assert dj.get("n") == 40
    dj.client.plain.set("site:1:plainnum", 5)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):  # a plain key is no cache entry
        dj.incr("plainnum")
    assert dj.client.plain.get("site:1:plainnum") == b"5"


def test_incr_is_atomic_under_threads(dj):
    import threading

    dj.set("c", 0)

    def bump():
        for _ in range(50):
            dj.incr("c")

    ts = [threading.Thread(target=bump) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert dj.get("c") == 200


def test_touch_and_has_key_only_see_cache_entries(dj):
    dj.client.plain.set("site:1:plain", "v")
    assert dj.touch("plain", 10) is False
    assert dj.has_key("plain") is False
    assert dj.client.plain.ttl("site:1:plain") == -1
    dj.set("soft", "v")
    dj.client.invalidate(key="site:1:soft", strategy="soft")
    assert dj.has_key("soft") is False and dj.get("soft") is None


def test_async_variants(dj):
    async def main():
        await dj.aset("k", {"v": 1}, tags=["t"])
        assert await dj.ainvalidate_tags("t") == 1
        await dj.aset("k", {"v": 1}, depends=["r"])
        assert await dj.aget("k") == {"v": 1}
        assert await dj.aadd("k", 2) is False
        await dj.aset("n", 1)
        assert await dj.aincr("n") == 2
        assert await dj.aget_or_set("g", "d") == "d"
        await dj.aset_many({"m1": 1, "m2": 2})
        assert await dj.aget_many(["m1", "m2"]) == {"m1": 1, "m2": 2}
        assert await dj.adelete("k") is True
        assert await dj.ahas_key("k") is False
        await dj.aclear()
        assert await dj.aget("n") is None

    asyncio.run(main())


def test_values_are_binary_safe_pickles(dj):
    blob = bytes(range(256)) * 4
    dj.set("blob", blob)
    assert dj.get("blob") == blob
    assert isinstance(tagcache.TagCache, type)


def test_incr_version_keeps_tags(dj):
    dj.set("v", "x", 100, tags=["t"])
    assert dj.incr_version("v") == 2
    assert dj.get("v") is None and dj.get("v", version=2) == "x"
    i = dj.client.inspect("site:2:v")
    assert i.tags == ["t"] and 0 < i.ttl_ms <= 100000
    assert dj.decr_version("v", version=2) == 1 and dj.get("v") == "x"
    with pytest.raises(ValueError):
        dj.incr_version("missing")
    assert dj.invalidate_tags("t") == 1


def test_resp3_connection(server):
    conf = {"default": {"BACKEND": BACKEND, "LOCATION": server.url, "OPTIONS": {"protocol": 3}}}
    with override_settings(CACHES=conf):
        c = caches["default"]
        c.set("k", {"a": 1}, tags=["t"])
        c.set("n", 1)
        assert c.get("k") == {"a": 1} and c.incr("n") == 2 and c.has_key("k")
        assert c.get_many(["k", "n"]) == {"k": {"a": 1}, "n": 2}
        assert c.client.connection_pool.connection_kwargs["protocol"] == 3
        assert c.invalidate_tags("t") == 1


def test_clear_escapes_glob_characters_of_the_prefix(server):
    conf = {
        "default": {"BACKEND": BACKEND, "LOCATION": server.url, "KEY_PREFIX": "a*[b]"},
        "near": {"BACKEND": BACKEND, "LOCATION": server.url, "KEY_PREFIX": "ax[b]"},
        "custom": {"BACKEND": BACKEND, "LOCATION": server.url,
                   "KEY_FUNCTION": lambda k, p, v: f"c/{k}", "OPTIONS": {"CLEAR_PATTERN": "c/*"}},
    }
    with override_settings(CACHES=conf):
        caches["default"].set("k", 1)
        caches["near"].set("k", 2)
        caches["custom"].set("k", 3)
        caches["default"].clear()
        assert caches["default"].get("k") is None and caches["near"].get("k") == 2
        caches["custom"].clear()
        assert caches["custom"].get("k") is None and caches["near"].get("k") == 2
