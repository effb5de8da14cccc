"""get-or-compute over CACHE.FETCH leases and the stale-set guard, and the @cached decorator.

The loop (README "CACHE.FETCH"):

    r = CACHE.FETCH key [LEASE ms] WITHTOKEN        -> [value-or-nil, state, token]
    hit, stale     -> return the value
    miss, refresh  -> this caller holds the lease: value = compute()
                      CACHE.SET key value ... GUARD token   (stored, or nil when an
                      invalidation since the token would select the entry; either way
                      the lease ends)  -> return value
    wait           -> another caller holds the lease: back off (5 ms doubling to 100 ms) and
                      fetch again, for at most `wait` seconds in all; then compute without
                      storing (the caller gets a value, the lease holder still stores its own)

The token is taken by the FETCH, before compute() reads anything, so a value computed from
data read before an invalidation is refused by the server and never stored (the caller still
gets the value it computed).

- compute() raising: the exception propagates; the lease stays until it expires (LEASE ms,
  default cache.lease-ms), the module has no command to give it back, so meanwhile the others
  wait (up to `wait`) and then compute for themselves.
- Values go to CACHE.SET as they are (bytes, str, int, float) unless `dumps`/`loads` are given
  (@cached pickles).
- `refresh` (a stale or refresh-ahead value and the lease) recomputes before returning.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import pickle
import time
from typing import Any, Callable, Optional

_BACKOFF_FIRST = 0.005
_BACKOFF_MAX = 0.1


def _decode(loads, value):
    return value if loads is None else loads(value)


def get_or_compute(client, key, compute, ttl=None, *, tags=None, depends=None, meta=None,
                   wait=5.0, lease_ms=None, dumps=None, loads=None):
    deadline = time.monotonic() + max(0.0, wait)
    delay = _BACKOFF_FIRST
    while True:
        r = client.fetch(key, lease_ms=lease_ms, with_token=True)
        if r.state in ("hit", "stale"):
            return _decode(loads, r.value)
        if r.state in ("miss", "refresh"):
            value = compute()
            stored = value if dumps is None else dumps(value)
            client.set(key, stored, ttl, tags=tags, depends=depends,
                       meta=meta() if callable(meta) else meta, guard=r.token)
            return value
        # wait: someone else computes.
        left = deadline - time.monotonic()
        if left <= 0:
            return compute()
        time.sleep(min(delay, left))
        delay = min(delay * 2, _BACKOFF_MAX)


async def async_get_or_compute(client, key, compute, ttl=None, *, tags=None, depends=None,
                               meta=None, wait=5.0, lease_ms=None, dumps=None, loads=None):
    async def run():
        v = compute()
        if inspect.isawaitable(v):
            v = await v
        return v

    deadline = time.monotonic() + max(0.0, wait)
    delay = _BACKOFF_FIRST
    while True:
        r = await client.fetch(key, lease_ms=lease_ms, with_token=True)
        if r.state in ("hit", "stale"):
            return _decode(loads, r.value)
        if r.state in ("miss", "refresh"):
            value = await run()
            stored = value if dumps is None else dumps(value)
            await client.set(key, stored, ttl, tags=tags, depends=depends,
                             meta=meta() if callable(meta) else meta, guard=r.token)
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return await run()
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, _BACKOFF_MAX)


# ------------------------------------------------------------------ @cached
def _stable(obj: Any) -> Any:
    """A JSON-able form of arguments that does not depend on dict order or object ids
    (objects without a stable form use their repr)."""
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, bytes):
        return {"b": obj.hex()}
    if isinstance(obj, (list, tuple)):
        return [_stable(x) for x in obj]
    if isinstance(obj, dict):
        return {"d": sorted(([json.dumps(_stable(k), sort_keys=True), _stable(v)] for k, v in obj.items()))}
    if isinstance(obj, (set, frozenset)):
        return {"s": sorted(json.dumps(_stable(x), sort_keys=True) for x in obj)}
    return {"r": repr(obj)}


def args_hash(args: tuple, kwargs: dict) -> str:
    doc = json.dumps([_stable(list(args)), _stable(kwargs)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


def _summary(args: tuple, kwargs: dict, limit: int = 200) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in sorted(kwargs.items())]
    s = ", ".join(parts)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def cached(client, ttl=None, *, tags=None, depends=None, prefix: str = "cached", wait: float = 5.0,
           lease_ms: Optional[int] = None, dumps: Callable = pickle.dumps, loads: Callable = pickle.loads):
    """Caches a function's results in tagcache entries, through get_or_compute.

    - Key: ``<prefix>:<module>.<qualname>:<sha256 of the arguments' stable JSON form>``.
    - Tags: ``fn:<module>.<qualname>`` always (``wrapper.invalidate()`` drops every result of
      the function: invalidation by function name), plus ``tags`` (a list, or a callable taking
      the function's arguments and returning one). ``depends`` likewise.
    - META: ``{"function", "args" (a repr summary), "called_at" (Unix seconds)}``.
    - Values are pickled (``dumps``/``loads``). A coroutine function needs an AsyncTagCache.
    """

    def names(spec, args, kwargs):
        if spec is None:
            return []
        if callable(spec):
            spec = spec(*args, **kwargs)
        return [spec] if isinstance(spec, (str, bytes)) else list(spec)

    def decorate(fn):
        qual = f"{fn.__module__}.{fn.__qualname__}"
        fn_tag = f"fn:{qual}"

        def plan(args, kwargs):
            key = f"{prefix}:{qual}:{args_hash(args, kwargs)}"
            t = [fn_tag] + names(tags, args, kwargs)
            d = names(depends, args, kwargs)
            meta = {"function": qual, "args": _summary(args, kwargs), "called_at": time.time()}
            return key, t, d, meta

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args, **kwargs):
                key, t, d, meta = plan(args, kwargs)
                return await client.get_or_compute(
                    key, lambda: fn(*args, **kwargs), ttl, tags=t, depends=d, meta=meta,
                    wait=wait, lease_ms=lease_ms, dumps=dumps, loads=loads)

            wrapper = awrapper
        else:
            @functools.wraps(fn)
            def swrapper(*args, **kwargs):
                key, t, d, meta = plan(args, kwargs)
                return client.get_or_compute(
                    key, lambda: fn(*args, **kwargs), ttl, tags=t, depends=d, meta=meta,
                    wait=wait, lease_ms=lease_ms, dumps=dumps, loads=loads)

            wrapper = swrapper

        wrapper.key_for = lambda *a, **kw: plan(a, kw)[0]
        wrapper.tag = fn_tag
        wrapper.invalidate = lambda **kw: client.invalidate(tag=fn_tag, **kw)
        return wrapper

    return decorate
