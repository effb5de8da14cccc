"""tagcache: a redis-py client for the tagcache Redis module (CACHE.* commands)."""

from .client import (
    AsyncTagCache,
    CacheCommands,
    Event,
    FetchResult,
    Inspect,
    Recommendation,
    Stats,
    TagCache,
)
from .compute import args_hash, cached

__all__ = [
    "AsyncTagCache", "CacheCommands", "Event", "FetchResult", "Inspect", "Recommendation",
    "Stats", "TagCache", "args_hash", "cached",
]
__version__ = "0.1.0"
