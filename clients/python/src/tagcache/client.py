"""The CACHE.* commands on top of redis-py.

`TagCache` is a `redis.Redis`, `AsyncTagCache` a `redis.asyncio.Redis`; both get the same command
methods from `CacheCommands`, which builds the argument list and says how to parse the reply.
Replies are parsed the same way under RESP2 (flat `field, value` arrays) and RESP3 (maps): the
parsers accept both, and `stats()`/`recommend()` ask the server for its JSON form.

The cache methods `set`, `get`, `mget` and `keys` take the place of redis-py's plain `SET`,
`GET`, `MGET`, `MSET` and `KEYS` methods on these classes; `client.plain` is a `redis.Redis` (or
`redis.asyncio.Redis`) on the same connection pool for plain commands (and for `lock()`, which
calls `set`).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import redis
import redis.asyncio

from . import compute as _compute

Names = Union[str, bytes, Iterable[Union[str, bytes]], None]
Seconds = Union[int, float, _dt.timedelta, None]

FETCH_STATES = ("hit", "miss", "wait", "refresh", "stale")


# ------------------------------------------------------------------ reply helpers
def _s(x: Any) -> Any:
    """bytes -> str (names are binary-safe; undecodable bytes survive as surrogates)."""
    if isinstance(x, bytes):
        return x.decode("utf-8", "surrogateescape")
    return x


def _map(x: Any) -> Dict[str, Any]:
    """A RESP3 map (dict) or a RESP2 flat array -> dict with str keys (values untouched)."""
    if x is None:
        return {}
    if isinstance(x, dict):
        return {_s(k): v for k, v in x.items()}
    it = iter(x)
    return {_s(k): v for k, v in zip(it, it)}


def _deep(x: Any) -> Any:
    """Decode every bytes in a nested reply to str."""
    if isinstance(x, (list, tuple)):
        return [_deep(v) for v in x]
    if isinstance(x, dict):
        return {_s(k): _deep(v) for k, v in x.items()}
    return _s(x)


def _strs(x: Any) -> List[str]:
    if x is None:
        return []
    if isinstance(x, (bytes, str)):
        return [_s(x)]
    return [_s(v) for v in x]


def _names(x: Names) -> List[Union[str, bytes]]:
    if x is None:
        return []
    if isinstance(x, (str, bytes)):
        return [x]
    return list(x)


def _ok(x: Any) -> bool:
    return x is not None and _s(x) == "OK" or x is True


def _stored(x: Any) -> bool:
    """CACHE.SET: OK -> True, nil (NX/XX unmet, GUARD refused) -> False."""
    return x is not None


def _int(x: Any) -> int:
    return int(x)


def _pairs(x: Any) -> List[Tuple[str, int]]:
    out = []
    for p in x or []:
        out.append((_s(p[0]), int(p[1])))
    return out


def _json(x: Any) -> Any:
    return json.loads(_s(x))


# ------------------------------------------------------------------ reply types
@dataclass
class FetchResult:
    """`CACHE.FETCH key [LEASE ms] WITHTOKEN` -> [value-or-nil, state, token]."""

    value: Optional[bytes]
    state: str
    token: Optional[int] = None

    @property
    def holds_lease(self) -> bool:
        """miss/refresh: this caller holds the lease and should compute and SET (GUARD token)."""
        return self.state in ("miss", "refresh")

    @property
    def usable(self) -> bool:
        """hit/stale/refresh carry a value the caller may use now."""
        return self.state in ("hit", "stale", "refresh")


@dataclass
class Inspect:
    tags: List[str]
    depends: List[str]
    dependents: List[str]
    meta: Optional[Any]  # parsed JSON object (dict), or None
    ttl_ms: int  # -1: no TTL
    created_ms: int
    hits: int
    size: int
    stale_ms: Optional[int] = None  # only while the entry is stale (STRATEGY SOFT)

    @property
    def stale(self) -> bool:
        return self.stale_ms is not None


@dataclass
class Event:
    timestamp_ms: int
    type: str
    pattern: str
    keys_invalidated: int
    duration_us: int
    context: Optional[str]
    strategy: str


@dataclass
class Recommendation:
    severity: str
    issue: str
    message: str
    suggestions: List[str]


@dataclass
class Stats:
    """`CACHE.STATS JSON`. The top-level figures as attributes, each section as a dict;
    `raw` holds the whole document (sections added by later module versions appear there)."""

    entries: int
    tags: int
    tagged_entries: int
    resources: int
    dependency_edges: int
    hits: int
    misses: int
    hit_rate: float
    total_invalidations: int
    total_keys_invalidated: int
    rates: Dict[str, Any] = field(default_factory=dict)
    thresholds: Dict[str, Any] = field(default_factory=dict)
    patterns: Dict[str, Any] = field(default_factory=dict)
    efficiency: Dict[str, Any] = field(default_factory=dict)
    removals: Dict[str, Any] = field(default_factory=dict)
    operations: Dict[str, Any] = field(default_factory=dict)
    memory: Dict[str, Any] = field(default_factory=dict)
    lazy: Dict[str, Any] = field(default_factory=dict)
    soft: Dict[str, Any] = field(default_factory=dict)
    guard: Dict[str, Any] = field(default_factory=dict)
    metrics_since_ms: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def alert_level(self) -> str:
        return self.thresholds.get("current_alert_level", "normal")


_STATS_SCALARS = (
    "entries tags tagged_entries resources dependency_edges hits misses hit_rate "
    "total_invalidations total_keys_invalidated"
).split()
_STATS_SECTIONS = "rates thresholds patterns efficiency removals operations memory lazy soft guard".split()


def parse_stats(x: Any) -> Stats:
    d = _json(x)
    kw = {k: d.get(k, 0) for k in _STATS_SCALARS}
    kw.update({k: d.get(k, {}) for k in _STATS_SECTIONS})
    return Stats(metrics_since_ms=d.get("metrics_since_ms", 0), raw=d, **kw)


def parse_recommend(x: Any) -> List[Recommendation]:
    return [
        Recommendation(r["severity"], r["issue"], r["message"], list(r.get("suggestions", [])))
        for r in _json(x)
    ]


def parse_fetch(x: Any) -> FetchResult:
    token = int(x[2]) if len(x) > 2 and x[2] is not None else None
    return FetchResult(x[0], _s(x[1]), token)


def parse_inspect(x: Any) -> Optional[Inspect]:
    if x is None:
        return None
    m = _map(x)
    meta = m.get("meta")
    stale = m.get("stale_ms")
    return Inspect(
        tags=_strs(m.get("tags")),
        depends=_strs(m.get("depends")),
        dependents=_strs(m.get("dependents")),
        meta=None if meta is None else json.loads(_s(meta)),
        ttl_ms=int(m.get("ttl_ms", -1)),
        created_ms=int(m.get("created_ms", 0)),
        hits=int(m.get("hits", 0)),
        size=int(m.get("size", 0)),
        stale_ms=None if stale is None else int(stale),
    )


def parse_events(x: Any) -> List[Event]:
    out = []
    for e in x or []:
        m = _map(e)
        out.append(
            Event(
                timestamp_ms=int(m["timestamp_ms"]),
                type=_s(m["type"]),
                pattern=_s(m["pattern"]),
                keys_invalidated=int(m["keys_invalidated"]),
                duration_us=int(m["duration_us"]),
                context=_s(m.get("context")) or None,
                strategy=_s(m["strategy"]),
            )
        )
    return out


def _list_of_maps(x: Any) -> List[Dict[str, Any]]:
    return [{k: _deep(v) for k, v in _map(e).items()} for e in x or []]


def _rule_list(x: Any) -> List[Dict[str, Any]]:
    out = _list_of_maps(x)
    for r in out:
        r["invalidate"] = _strs(r.get("invalidate"))
    return out


# ------------------------------------------------------------------ argument helpers
def _ttl_args(ttl: Seconds, ex, px, exat, pxat, keepttl) -> List[Any]:
    """ttl: seconds (int -> EX, float -> PX rounded up) or a timedelta."""
    given = [x is not None for x in (ttl, ex, px, exat, pxat)] + [bool(keepttl)]
    if sum(given) > 1:
        raise redis.DataError("give at most one of ttl, ex, px, exat, pxat, keepttl")
    if isinstance(ttl, _dt.timedelta):
        px, ttl = int(ttl.total_seconds() * 1000), None
    if ttl is not None:
        if isinstance(ttl, float) and not ttl.is_integer():
            px = max(1, int(round(ttl * 1000)))
        else:
            ex = int(ttl)
    if isinstance(exat, _dt.datetime):
        exat = int(exat.timestamp())
    if isinstance(pxat, _dt.datetime):
        pxat = int(pxat.timestamp() * 1000)
    if ex is not None:
        return ["EX", int(ex)]
    if px is not None:
        return ["PX", int(px)]
    if exat is not None:
        return ["EXAT", int(exat)]
    if pxat is not None:
        return ["PXAT", int(pxat)]
    if keepttl:
        return ["KEEPTTL"]
    return []


def _meta_arg(meta: Any) -> Optional[str]:
    if meta is None:
        return None
    if isinstance(meta, (str, bytes)):
        return meta  # already JSON
    return json.dumps(meta, separators=(",", ":"), default=str)


def set_args(
    key, value, ttl=None, *, ex=None, px=None, exat=None, pxat=None, keepttl=False,
    nx=False, xx=False, tags=None, depends=None, meta=None, guard=None,
) -> List[Any]:
    args: List[Any] = ["CACHE.SET", key, value]
    args += _ttl_args(ttl, ex, px, exat, pxat, keepttl)
    if nx and xx:
        raise redis.DataError("nx and xx are mutually exclusive")
    if nx:
        args.append("NX")
    if xx:
        args.append("XX")
    t = _names(tags)
    if tags is not None:
        args += ["TAGS", len(t), *t]
    d = _names(depends)
    if depends is not None:
        args += ["DEPENDS", len(d), *d]
    m = _meta_arg(meta)
    if m is not None:
        args += ["META", m]
    if guard is not None:
        args += ["GUARD", int(guard)]
    return args


# The options CACHE.MSET shares among its entries; with any other (nx, xx, keepttl, guard)
# mset() sends one CACHE.SET per key instead.
_MSET_OPTIONS = {"ex", "px", "exat", "pxat", "tags", "depends", "meta"}


# Entries per CACHE.MSET that mset() sends (the module takes at most 10 000 entries and 50 000
# tag and resource names per call): a larger mapping goes as several, each atomic.
MSET_CHUNK = 1000


def mset_args(mapping, ttl=None, *, ex=None, px=None, exat=None, pxat=None, tags=None,
              depends=None, meta=None) -> List[Any]:
    """CACHE.MSET with the options shared by every entry, then ENTRY key value for each."""
    args: List[Any] = ["CACHE.MSET"] + _ttl_args(ttl, ex, px, exat, pxat, False)
    if tags is not None:
        t = _names(tags)
        args += ["TAGS", len(t), *t]
    if depends is not None:
        d = _names(depends)
        args += ["DEPENDS", len(d), *d]
    m = _meta_arg(meta)
    if m is not None:
        args += ["META", m]
    for k, v in mapping.items():
        args += ["ENTRY", k, v]
    return args


def _chunks(mapping, kw):
    """The mapping in dicts of at most MSET_CHUNK entries, fewer when each carries many tags and
    dependencies (every entry of a CACHE.MSET counts the shared ones)."""
    names = len(_names(kw.get("tags"))) + len(_names(kw.get("depends")))
    size = max(1, min(MSET_CHUNK, 40_000 // max(1, names)))
    items = list(mapping.items())
    for i in range(0, len(items), size):
        yield dict(items[i:i + size])


def _one_mset(mapping, kw) -> bool:
    """Whether mset(mapping, **kw) is one CACHE.MSET (atomic) rather than a pipeline of CACHE.SET."""
    return bool(mapping) and all(k in _MSET_OPTIONS or not v for k, v in kw.items())


def _selector(key=None, keys=None, tag=None, tags=None, pattern=None, namespace=None,
              dependents=None, all=False) -> List[Any]:
    sel = []
    if key is not None or keys is not None:
        sel.append(["KEY", *(_names(key) + _names(keys))])
    if tag is not None or tags is not None:
        sel.append(["TAG", *(_names(tag) + _names(tags))])
    if pattern is not None:
        sel.append(["PATTERN", pattern])
    if namespace is not None:
        sel.append(["NAMESPACE", namespace])
    if dependents is not None:
        sel.append(["DEPENDENTS", *_names(dependents)])
    if all:
        sel.append(["ALL"])
    if len(sel) != 1:
        raise redis.DataError(
            "give exactly one selector: key(s)=, tag(s)=, pattern=, namespace=, dependents= or all=True"
        )
    if len(sel[0]) == 1 and sel[0][0] in ("KEY", "TAG", "DEPENDENTS"):
        raise redis.DataError(f"{sel[0][0]} selector needs at least one name")
    return sel[0]


# ------------------------------------------------------------------ the commands
class CacheCommands:
    """Every CACHE.* command. `_call(parse, *args)` runs a command and parses the reply (sync or
    async, supplied by the concrete class)."""

    def _call(self, parse: Callable[[Any], Any], *args: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    # -- entries
    def set(self, key, value, ttl: Seconds = None, **kw) -> bool:
        """CACHE.SET. ttl: seconds (or ex=/px=/exat=/pxat=/keepttl=); nx/xx; tags, depends
        (lists of names); meta (dict, dumped as JSON, or a JSON string); guard (a token from
        token()/fetch()). True when stored; False when NX/XX is unmet or the GUARD refused it."""
        return self._call(_stored, *set_args(key, value, ttl, **kw))

    def get(self, key) -> Optional[bytes]:
        """CACHE.GET: the value (bytes), or None."""
        return self._call(lambda x: x, "CACHE.GET", key)

    def mget(self, keys, *more) -> List[Optional[bytes]]:
        ks = _names(keys) + list(more)
        return self._call(list, "CACHE.MGET", *ks)

    def fetch(self, key, lease_ms: Optional[int] = None, with_token: bool = True) -> FetchResult:
        """CACHE.FETCH key [LEASE ms] [WITHTOKEN] -> FetchResult(value, state, token)."""
        args: List[Any] = ["CACHE.FETCH", key]
        if lease_ms is not None:
            args += ["LEASE", int(lease_ms)]
        if with_token:
            args.append("WITHTOKEN")
        return self._call(parse_fetch, *args)

    def token(self, key=None) -> int:
        """CACHE.TOKEN [key]: the node's invalidation token, for a later set(..., guard=token)."""
        args: List[Any] = ["CACHE.TOKEN"] + ([] if key is None else [key])
        return self._call(_int, *args)

    def tag(self, key, *tags) -> int:
        """CACHE.TAG: adds tags to an existing entry; the number that were new."""
        return self._call(_int, "CACHE.TAG", key, *tags)

    def depend(self, key, *resources) -> int:
        return self._call(_int, "CACHE.DEPEND", key, *resources)

    def inspect(self, key) -> Optional[Inspect]:
        return self._call(parse_inspect, "CACHE.INSPECT", key)

    # -- invalidation
    def invalidate(self, *, key=None, keys=None, tag=None, tags=None, pattern=None, namespace=None,
                   dependents=None, all=False, strategy: Optional[str] = None,
                   grace: Optional[int] = None, depth: Optional[int] = None,
                   context: Optional[str] = None, local: bool = False) -> int:
        """CACHE.INVALIDATE with exactly one selector; the number of entries invalidated."""
        args: List[Any] = ["CACHE.INVALIDATE"]
        if local:
            args.append("LOCAL")
        if depth is not None:
            args += ["DEPTH", int(depth)]
        if context is not None:
            args += ["CONTEXT", context]
        if strategy is not None:
            args += ["STRATEGY", strategy.upper()]
        if grace is not None:
            args += ["GRACE", int(grace)]
        args += _selector(key, keys, tag, tags, pattern, namespace, dependents, all)
        return self._call(_int, *args)

    def keys(self, *, key=None, keys=None, tag=None, tags=None, pattern=None, namespace=None,
             dependents=None, all=False, depth: Optional[int] = None, local: bool = False) -> List[str]:
        """CACHE.KEYS: the dry run of invalidate() with the same selector (sorted keys)."""
        args: List[Any] = ["CACHE.KEYS"]
        if local:
            args.append("LOCAL")
        if depth is not None:
            args += ["DEPTH", int(depth)]
        args += _selector(key, keys, tag, tags, pattern, namespace, dependents, all)
        return self._call(_strs, *args)

    def tags(self, match: Optional[str] = None, count: Optional[int] = None,
             local: bool = False) -> List[Tuple[str, int]]:
        """CACHE.TAGS -> [(tag, entries)], largest first."""
        args: List[Any] = ["CACHE.TAGS"]
        if local:
            args.append("LOCAL")
        if match is not None:
            args += ["MATCH", match]
        if count is not None:
            args += ["COUNT", int(count)]
        return self._call(_pairs, *args)

    # -- metrics
    def stats(self, local: bool = False) -> Stats:
        args = ["CACHE.STATS"] + (["LOCAL"] if local else []) + ["JSON"]
        return self._call(parse_stats, *args)

    def recommend(self) -> List[Recommendation]:
        return self._call(parse_recommend, "CACHE.RECOMMEND", "JSON")

    def events(self, count: Optional[int] = None) -> List[Event]:
        args: List[Any] = ["CACHE.EVENTS"] + ([] if count is None else ["COUNT", int(count)])
        return self._call(parse_events, *args)

    def hotkeys(self, count: Optional[int] = None) -> List[Tuple[str, int]]:
        args: List[Any] = ["CACHE.HOTKEYS"] + ([] if count is None else ["COUNT", int(count)])
        return self._call(_pairs, *args)

    def reset_stats(self) -> bool:
        """CACHE.RESET: zeroes the metrics (named so that redis-py's reset(), the RESET
        command, keeps its meaning)."""
        return self._call(_ok, "CACHE.RESET")

    # -- queues
    def pending(self) -> List[Dict[str, Any]]:
        """CACHE.PENDING: the queued BATCHED requests."""
        return self._call(_list_of_maps, "CACHE.PENDING")

    def pending_lazy(self) -> List[Dict[str, Any]]:
        return self._call(_list_of_maps, "CACHE.PENDING", "LAZY")

    def pending_flush(self) -> int:
        return self._call(_int, "CACHE.PENDING", "FLUSH")

    # -- write-driven invalidation
    def rule_set(self, name, on, invalidate: Sequence[str], *, ops: Union[str, Sequence[str], None] = None,
                 match: Optional[str] = None, strategy: Optional[str] = None,
                 priority: Optional[int] = None) -> bool:
        tpl = _names(invalidate)
        args: List[Any] = ["CACHE.RULE", "SET", name, "ON", on]
        if ops is not None:
            args += ["OPS", ops if isinstance(ops, str) else ",".join(ops)]
        if match is not None:
            args += ["MATCH", match]
        args += ["INVALIDATE", len(tpl), *tpl]
        if strategy is not None:
            args += ["STRATEGY", strategy.upper()]
        if priority is not None:
            args += ["PRIORITY", int(priority)]
        return self._call(_ok, *args)

    def rule_del(self, name) -> bool:
        return self._call(lambda x: int(x) == 1, "CACHE.RULE", "DEL", name)

    def rule_list(self) -> List[Dict[str, Any]]:
        return self._call(_rule_list, "CACHE.RULE", "LIST")

    def relate(self, source, *targets, depth: Optional[int] = None, bidirectional: bool = False) -> bool:
        args: List[Any] = ["CACHE.RELATE", source, *targets]
        if depth is not None:
            args += ["DEPTH", int(depth)]
        if bidirectional:
            args.append("BIDIRECTIONAL")
        return self._call(_ok, *args)

    def relate_del(self, source, target) -> bool:
        return self._call(lambda x: int(x) == 1, "CACHE.RELATE", "DEL", source, target)

    def relate_list(self) -> List[Dict[str, Any]]:
        return self._call(_list_of_maps, "CACHE.RELATE", "LIST")

    def write(self, type, id, op: Optional[str] = None, context: Optional[str] = None,
              local: bool = False) -> int:
        """CACHE.WRITE: report a database write; the number of entries invalidated now."""
        args: List[Any] = ["CACHE.WRITE"] + (["LOCAL"] if local else []) + [type, id]
        if op is not None:
            args += ["OP", op]
        if context is not None:
            args += ["CONTEXT", context]
        return self._call(_int, *args)

    # -- debugging
    def debug_verify(self) -> List[str]:
        return self._call(_strs, "CACHE.DEBUG", "VERIFY")

    def debug_rebuild(self) -> int:
        return self._call(_int, "CACHE.DEBUG", "REBUILD")

    def debug_reclaim_step(self, keys: Optional[int] = None) -> int:
        args: List[Any] = ["CACHE.DEBUG", "RECLAIM", "STEP"] + ([] if keys is None else [int(keys)])
        return self._call(_int, *args)

    def debug_reclaim_pause(self) -> bool:
        return self._call(_ok, "CACHE.DEBUG", "RECLAIM", "PAUSE")

    def debug_reclaim_resume(self) -> bool:
        return self._call(_ok, "CACHE.DEBUG", "RECLAIM", "RESUME")


CACHE_COMMANDS = (
    "CACHE.SET CACHE.MSET CACHE.GET CACHE.MGET CACHE.FETCH CACHE.TOKEN CACHE.TAG CACHE.DEPEND CACHE.INSPECT "
    "CACHE.INVALIDATE CACHE.KEYS CACHE.TAGS CACHE.STATS CACHE.RECOMMEND CACHE.EVENTS CACHE.HOTKEYS "
    "CACHE.RESET CACHE.PENDING CACHE.RULE CACHE.RELATE CACHE.WRITE CACHE.DEBUG"
).split()


def _dispatch(response, **options):
    """The response callback of every CACHE.* command: pipelines queue the parser with the
    command (option _tc_parse) and it runs on the reply at execute()."""
    parse = options.get("_tc_parse")
    return response if parse is None or isinstance(response, Exception) else parse(response)


def _register(client):
    for name in CACHE_COMMANDS:
        client.set_response_callback(name, _dispatch)


class _PipelineCommands(CacheCommands):
    """The CACHE.* methods on a pipeline: each queues its command; execute() returns the parsed
    replies in order."""

    def _call(self, parse, *args):
        return self.execute_command(*args, _tc_parse=parse)

    def mset(self, mapping, ttl=None, **kw):
        for k, v in mapping.items():
            self.set(k, v, ttl, **kw)
        return self


class TagCachePipeline(_PipelineCommands, redis.client.Pipeline):
    pass


class AsyncTagCachePipeline(_PipelineCommands, redis.asyncio.client.Pipeline):
    pass


class TagCache(CacheCommands, redis.Redis):
    """redis.Redis with the CACHE.* commands (see CacheCommands) and get_or_compute.
    pipeline() has the CACHE.* methods too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _register(self)

    def _call(self, parse, *args):
        return parse(self.execute_command(*args))

    def pipeline(self, transaction=True, shard_hint=None) -> TagCachePipeline:
        p = super().pipeline(transaction, shard_hint)
        p.__class__ = TagCachePipeline
        return p

    @property
    def plain(self) -> redis.Redis:
        """A plain redis.Redis on the same connection pool (SET/GET/KEYS/lock() as redis-py has them)."""
        return redis.Redis(connection_pool=self.connection_pool)

    def mset(self, mapping: Mapping[Any, Any], ttl: Seconds = None, **kw) -> List[bool]:
        """Several entries with the same options: CACHE.MSET (atomic for each MSET_CHUNK entries),
        or with nx, xx, keepttl or guard one CACHE.SET per key in one pipeline (not atomic). One bool per key,
        as set() returns. In a cluster the keys of one CACHE.MSET must share a slot."""
        if _one_mset(mapping, kw):
            for part in _chunks(mapping, kw):
                self.execute_command(*mset_args(part, ttl, **kw))
            return [True] * len(mapping)
        pipe = self.pipeline(transaction=False)
        pipe.mset(mapping, ttl, **kw)
        return pipe.execute()

    def get_or_compute(self, key, compute: Callable[[], Any], ttl: Seconds = None, *, tags=None,
                       depends=None, meta=None, wait: float = 5.0, lease_ms: Optional[int] = None,
                       dumps: Optional[Callable[[Any], Any]] = None,
                       loads: Optional[Callable[[Any], Any]] = None) -> Any:
        """The FETCH protocol (see tagcache.compute)."""
        return _compute.get_or_compute(self, key, compute, ttl, tags=tags, depends=depends, meta=meta,
                                       wait=wait, lease_ms=lease_ms, dumps=dumps, loads=loads)


class AsyncTagCache(CacheCommands, redis.asyncio.Redis):
    """redis.asyncio.Redis with the CACHE.* commands; every method is a coroutine."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _register(self)

    async def _call(self, parse, *args):
        return parse(await self.execute_command(*args))

    def pipeline(self, transaction=True, shard_hint=None) -> AsyncTagCachePipeline:
        p = super().pipeline(transaction, shard_hint)
        p.__class__ = AsyncTagCachePipeline
        return p

    @property
    def plain(self) -> redis.asyncio.Redis:
        return redis.asyncio.Redis(connection_pool=self.connection_pool)

    async def mset(self, mapping: Mapping[Any, Any], ttl: Seconds = None, **kw) -> List[bool]:
        """See TagCache.mset."""
        if _one_mset(mapping, kw):
            for part in _chunks(mapping, kw):
                await self.execute_command(*mset_args(part, ttl, **kw))
            return [True] * len(mapping)
        pipe = self.pipeline(transaction=False)
        pipe.mset(mapping, ttl, **kw)
        return await pipe.execute()

    async def get_or_compute(self, key, compute, ttl: Seconds = None, *, tags=None, depends=None,
                             meta=None, wait: float = 5.0, lease_ms: Optional[int] = None,
                             dumps=None, loads=None) -> Any:
        """The FETCH protocol; compute may be a coroutine function or a plain one."""
        return await _compute.async_get_or_compute(
            self, key, compute, ttl, tags=tags, depends=depends, meta=meta, wait=wait,
            lease_ms=lease_ms, dumps=dumps, loads=loads)
