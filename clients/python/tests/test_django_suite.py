"""The external oracle: Django's own cache tests (BaseCacheTests from the pinned Django sdist's
tests/cache/tests.py) against tagcache.django.TagCacheBackend, subclassed as Django's
RedisCacheTests does, each test on a server of its own.

RedisCacheTests' own tests are about django.core.cache.backends.redis.RedisCacheClient
internals (its class, its connection-pool index and pools, get_client(write=True) during
incr); they do not apply. Their counterparts for this backend are below (timeouts, serializer,
OPTIONS reaching the pool). Nothing of BaseCacheTests is skipped here; test_cull,
test_zero_cull and test_cull_delete_when_store_empty skip themselves ("Culling isn't
implemented."), as for RedisCache: the cull caches are excluded exactly as RedisCacheTests does.
"""

import django_env

django_env.ensure()

import redis  # noqa: E402
from cache.tests import BaseCacheTests, caches_setting_for_tests  # noqa: E402
from django.core.cache import cache, caches  # noqa: E402
from django.test import TestCase, override_settings  # noqa: E402
from server import Server  # noqa: E402

from tagcache.django import TagCacheBackend, TagCacheSerializer  # noqa: E402

BACKEND = "tagcache.django.TagCacheBackend"
redis_excluded_caches = {"cull", "zero_cull"}  # as Django's RedisCacheTests


class TagCacheBackendTests(BaseCacheTests, TestCase):
    incr_decr_type_error = redis.ResponseError  # as RedisCacheTests: the server's error

    def setUp(self):
        self.server = Server()
        self.addCleanup(self.server.stop)
        o = override_settings(CACHES=caches_setting_for_tests(
            base={"BACKEND": BACKEND, "LOCATION": self.server.url}, exclude=redis_excluded_caches))
        o.enable()
        self.addCleanup(o.disable)
        super().setUp()

    # -- counterparts of RedisCacheTests' own tests
    def test_cache_client_class(self):
        self.assertIsInstance(caches["default"], TagCacheBackend)
        import tagcache

        self.assertIsInstance(cache.client, tagcache.TagCache)

    def test_get_backend_timeout_method(self):
        self.assertEqual(cache.get_backend_timeout(10), 10)
        self.assertEqual(cache.get_backend_timeout(-5), 0)
        self.assertIsNone(cache.get_backend_timeout(None))

    def test_serializer_dumps(self):
        s = TagCacheSerializer()
        self.assertEqual(s.dumps(123), 123)
        self.assertIsInstance(s.dumps(True), bytes)
        self.assertIsInstance(s.dumps("abc"), bytes)

    def test_redis_pool_options(self):
        with override_settings(CACHES=caches_setting_for_tests(
                base={"BACKEND": BACKEND, "LOCATION": self.server.url},
                exclude=redis_excluded_caches,
                OPTIONS={"db": 5, "socket_timeout": 0.1, "retry_on_timeout": True})):
            kw = cache.client.connection_pool.connection_kwargs
            self.assertEqual(kw["db"], 5)
            self.assertEqual(kw["socket_timeout"], 0.1)
            self.assertIs(kw["retry_on_timeout"], True)
