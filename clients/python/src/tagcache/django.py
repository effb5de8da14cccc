"""A Django cache backend on tagcache entries.

    CACHES = {
        "default": {
            "BACKEND": "tagcache.django.TagCacheBackend",
            "LOCATION": "redis://127.0.0.1:6379/0",
            "TIMEOUT": 300,
            "KEY_PREFIX": "site",
            "VERSION": 1,
            "OPTIONS": {"socket_timeout": 5},   # passed to redis-py's ConnectionPool.from_url
        }
    }

Configured like Django's RedisCache; every value is a cache entry (CACHE.SET), so besides the
BaseCache API it has ``set(..., tags=, depends=, meta=)``, ``invalidate_tags``,
``invalidate_dependents`` and ``tagged(tags)``. Differences from RedisCache:

- One server: the first of LOCATION (RedisCache reads from replicas listed after it).
- ``clear()`` invalidates the cache entries whose keys start with ``KEY_PREFIX:`` (all versions),
  never plain keys and never other prefixes' entries (RedisCache runs FLUSHDB). With a custom
  KEY_FUNCTION the keys' shape is unknown: give ``OPTIONS["CLEAR_PATTERN"]`` (a glob), or it
  invalidates every cache entry of the database (never plain keys).
- ``delete()`` is ``CACHE.INVALIDATE KEY``: entries that depend on the deleted key go too.
- ``incr()``/``decr()`` run one Lua script (atomic): CACHE.GET, integer check, then CACHE.SET with
  KEEPTTL and the entry's own tags, dependencies and meta (from CACHE.INSPECT). Values within
  +/-2^53 (Lua numbers are doubles).
- ``incr_version()`` renames the entry (tags, dependencies, meta and TTL stay with it).
- Tags and resources are used as given (not prefixed).
"""

from __future__ import annotations

import pickle
import re

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from redis.exceptions import ResponseError
from django.utils.functional import cached_property
from django.utils.module_loading import import_string

from .client import TagCache

_MISSING = object()


class TagCacheSerializer:
    """As Django's RedisSerializer: ints stored raw (so incr works on them), the rest pickled."""

    def __init__(self, protocol=None):
        self.protocol = pickle.HIGHEST_PROTOCOL if protocol is None else protocol

    def dumps(self, obj):
        if type(obj) is int:
            return obj
        return pickle.dumps(obj, self.protocol)

    def loads(self, data):
        try:
            return int(data)
        except ValueError:
            return pickle.loads(data)


# KEYS[1]; ARGV[1] = delta. nil when the key holds no cache entry; an error reply (a
# redis.ResponseError in Python) when the value is not an integer.
_INCR = """
local v = redis.call('CACHE.GET', KEYS[1])
if not v then return false end
if not string.match(v, '^%-?%d+$') then
  return redis.error_reply('ERR value is not an integer or out of range')
end
local n = tonumber(v) + tonumber(ARGV[1])
if n ~= n or n >= 9007199254740992 or n <= -9007199254740992 then
  return redis.error_reply('ERR increment or decrement would overflow')
end
local i = redis.call('CACHE.INSPECT', KEYS[1])
local f = {}
for j = 1, #i, 2 do f[i[j]] = i[j + 1] end
local args = {'CACHE.SET', KEYS[1], string.format('%d', n), 'KEEPTTL'}
args[#args + 1] = 'TAGS'; args[#args + 1] = #f['tags']
for _, t in ipairs(f['tags']) do args[#args + 1] = t end
args[#args + 1] = 'DEPENDS'; args[#args + 1] = #f['depends']
for _, d in ipairs(f['depends']) do args[#args + 1] = d end
if f['meta'] then args[#args + 1] = 'META'; args[#args + 1] = f['meta'] end
redis.call(unpack(args))
return string.format('%d', n)
"""

# touch: EXPIRE/PERSIST only when the key holds a cache entry. ARGV[1] = seconds or ''.
_TOUCH = """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'tagcache0' then return 0 end
if ARGV[1] == '' then
  if redis.call('PERSIST', KEYS[1]) == 1 then return 1 end
  return redis.call('PTTL', KEYS[1]) == -1 and 1 or 0
end
return redis.call('EXPIRE', KEYS[1], ARGV[1])
"""


# incr_version: RENAME the entry to its new version's key (value, tags, dependencies, meta and
# TTL move with it; a LAZY-covered entry stays covered). 0 when there is no fresh entry.
_RENAME = """
local i = redis.call('CACHE.INSPECT', KEYS[1])
if not i then return 0 end
for j = 1, #i, 2 do if i[j] == 'stale_ms' then return 0 end end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"""


def _glob_escape(s: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", s)


class TagCacheBackend(BaseCache):
    def __init__(self, server, params):
        super().__init__(params)
        if isinstance(server, str):
            self._servers = [s for s in re.split("[;,]", server) if s]
        else:
            self._servers = list(server)
        options = dict(params.get("OPTIONS", {}))
        serializer = options.pop("serializer", None)
        if isinstance(serializer, str):
            serializer = import_string(serializer)
        if callable(serializer):
            serializer = serializer()
        self._serializer = serializer or TagCacheSerializer()
        self._clear_pattern = options.pop("CLEAR_PATTERN", None)
        self._custom_key_func = params.get("KEY_FUNCTION") is not None
        options.pop("decode_responses", None)  # values are bytes (pickles)
        self._options = options

    @cached_property
    def client(self) -> TagCache:
        return TagCache.from_url(self._servers[0], **self._options)

    @cached_property
    def _incr_script(self):
        return self.client.register_script(_INCR)

    @cached_property
    def _touch_script(self):
        return self.client.register_script(_TOUCH)

    @cached_property
    def _rename_script(self):
        return self.client.register_script(_RENAME)

    def get_backend_timeout(self, timeout=DEFAULT_TIMEOUT):
        if timeout == DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        # None: no expiry; non-positive: the key is deleted.
        return None if timeout is None else max(0, int(timeout))

    # -- the BaseCache API
    def _store(self, key, value, timeout, nx=False, tags=None, depends=None, meta=None):
        v = self._serializer.dumps(value)
        if timeout == 0:
            if nx:
                ok = self.client.set(key, v, nx=True, tags=tags, depends=depends, meta=meta)
                if ok:
                    self.client.invalidate(key=key, depth=0)
                return ok
            self.client.invalidate(key=key)
            return True
        return self.client.set(key, v, timeout, nx=nx, tags=tags, depends=depends, meta=meta)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, *, tags=None, depends=None, meta=None):
        key = self.make_and_validate_key(key, version=version)
        return self._store(key, value, self.get_backend_timeout(timeout), nx=True,
                           tags=tags, depends=depends, meta=meta)

    def get(self, key, default=None, version=None):
        key = self.make_and_validate_key(key, version=version)
        v = self.client.get(key)
        return default if v is None else self._serializer.loads(v)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, *, tags=None, depends=None, meta=None):
        key = self.make_and_validate_key(key, version=version)
        self._store(key, value, self.get_backend_timeout(timeout), tags=tags, depends=depends, meta=meta)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        t = self.get_backend_timeout(timeout)
        return bool(self._touch_script(keys=[key], args=["" if t is None else t]))

    def delete(self, key, version=None):
        key = self.make_and_validate_key(key, version=version)
        return bool(self.client.invalidate(key=key))

    def get_many(self, keys, version=None):
        key_map = {self.make_and_validate_key(k, version=version): k for k in keys}
        if not key_map:
            return {}
        values = self.client.mget(list(key_map))
        return {key_map[k]: self._serializer.loads(v) for k, v in zip(key_map, values) if v is not None}

    def has_key(self, key, version=None):
        key = self.make_and_validate_key(key, version=version)
        try:
            i = self.client.inspect(key)
        except ResponseError as e:
            if str(e).startswith("WRONGTYPE"):
                return False  # a plain key: no cache value
            raise
        return i is not None and not i.stale

    def incr(self, key, delta=1, version=None):
        key = self.make_and_validate_key(key, version=version)
        r = self._incr_script(keys=[key], args=[int(delta)])
        if r is None:
            raise ValueError("Key '%s' not found." % key)
        return int(r)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None, *, tags=None, depends=None, meta=None):
        if not data:
            return []
        t = self.get_backend_timeout(timeout)
        safe = {self.make_and_validate_key(k, version=version): self._serializer.dumps(v) for k, v in data.items()}
        if t == 0:
            self.client.invalidate(keys=list(safe))
        else:
            self.client.mset(safe, t, tags=tags, depends=depends, meta=meta)
        return []

    def delete_many(self, keys, version=None):
        safe = [self.make_and_validate_key(k, version=version) for k in keys]
        if safe:
            self.client.invalidate(keys=safe)

    def incr_version(self, key, delta=1, version=None):
        """As BaseCache's (the value moves to version + delta), in one step that keeps the
        entry's tags, dependencies, meta and TTL (BaseCache's get/set/delete would drop them)."""
        if version is None:
            version = self.version
        old = self.make_and_validate_key(key, version=version)
        new = self.make_and_validate_key(key, version=version + delta)
        if old != new and not self._rename_script(keys=[old, new]):
            raise ValueError("Key '%s' not found." % key)
        if old == new and not self.has_key(key, version=version):
            raise ValueError("Key '%s' not found." % key)
        return version + delta

    def clear(self):
        if self._clear_pattern is not None:
            self.client.invalidate(pattern=self._clear_pattern)
        elif self._custom_key_func:
            self.client.invalidate(all=True)
        else:
            self.client.invalidate(pattern=_glob_escape(self.key_prefix) + ":*")
        return True

    def close(self, **kwargs):
        pass

    # -- tags and dependencies
    def invalidate_tags(self, *tags, strategy=None, context=None):
        """Invalidates every entry carrying any of the tags; the number invalidated."""
        tags = [t for group in tags for t in ([group] if isinstance(group, (str, bytes)) else group)]
        return self.client.invalidate(tags=tags, strategy=strategy, context=context) if tags else 0

    def invalidate_dependents(self, *resources, strategy=None, context=None):
        """Invalidates every entry depending on any of the resources (and the cascade)."""
        res = [r for group in resources for r in ([group] if isinstance(group, (str, bytes)) else group)]
        return self.client.invalidate(dependents=res, strategy=strategy, context=context) if res else 0

    # The async variants: BaseCache runs the sync methods in a thread (as for RedisCache); these
    # add the tags/depends/meta keywords to them.
    async def aset(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, **kw):
        return await sync_to_async(self.set, thread_sensitive=True)(key, value, timeout, version, **kw)

    async def aadd(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, **kw):
        return await sync_to_async(self.add, thread_sensitive=True)(key, value, timeout, version, **kw)

    async def aset_many(self, data, timeout=DEFAULT_TIMEOUT, version=None, **kw):
        return await sync_to_async(self.set_many, thread_sensitive=True)(data, timeout, version, **kw)

    async def ainvalidate_tags(self, *tags, **kw):
        return await sync_to_async(self.invalidate_tags, thread_sensitive=True)(*tags, **kw)

    async def ainvalidate_dependents(self, *resources, **kw):
        return await sync_to_async(self.invalidate_dependents, thread_sensitive=True)(*resources, **kw)

    def tagged(self, tags):
        """A view whose writes carry `tags` (Laravel's Cache::tags()); flush() invalidates them."""
        return TaggedCache(self, [tags] if isinstance(tags, (str, bytes)) else list(tags))


class TaggedCache:
    def __init__(self, cache: TagCacheBackend, tags):
        self._cache = cache
        self.tags = tags

    def _merge(self, tags):
        return self.tags + (list(tags) if tags else [])

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, *, tags=None, **kw):
        return self._cache.set(key, value, timeout, version, tags=self._merge(tags), **kw)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, *, tags=None, **kw):
        return self._cache.add(key, value, timeout, version, tags=self._merge(tags), **kw)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None, *, tags=None, **kw):
        return self._cache.set_many(data, timeout, version, tags=self._merge(tags), **kw)

    def get_or_set(self, key, default, timeout=DEFAULT_TIMEOUT, version=None):
        val = self._cache.get(key, _MISSING, version=version)
        if val is _MISSING:
            if callable(default):
                default = default()
            self.add(key, default, timeout=timeout, version=version)
            return self._cache.get(key, default, version=version)
        return val

    def get(self, *a, **kw):
        return self._cache.get(*a, **kw)

    def get_many(self, *a, **kw):
        return self._cache.get_many(*a, **kw)

    def flush(self, **kw):
        """Invalidates every entry carrying any of this view's tags."""
        return self._cache.invalidate_tags(self.tags, **kw)
