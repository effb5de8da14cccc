"""An endpoint cache in a plain script (the shape of a FastAPI handler): product pages computed
from a "database", cached with tags and dependencies, recomputed once per invalidation even
under a herd, and never left stale by a slow writer (get_or_compute's FETCH WITHTOKEN ->
compute -> SET GUARD loop).

    python examples/endpoint_cache.py [redis://127.0.0.1:6379]   # a server with the module
"""

import sys
import threading
import time

from tagcache import TagCache, cached

r = TagCache.from_url(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379")
DB = {1: {"name": "Lamp", "price": 30}, 2: {"name": "Desk", "price": 120}}
computes = []


@cached(r, 300, tags=lambda pid: [f"product:{pid}", "catalog"], depends=lambda pid: [f"db:product:{pid}"])
def product_page(pid: int) -> dict:
    """The endpoint: slow to render, so cached."""
    computes.append(pid)
    time.sleep(0.2)
    row = DB[pid]
    return {"id": pid, "title": row["name"], "price": row["price"]}


def save_product(pid: int, **changes) -> None:
    """The write path: update the row, then drop what depended on it."""
    DB[pid].update(changes)
    n = r.invalidate(dependents=f"db:product:{pid}", context=f"product {pid} saved")
    print(f"saved product {pid}: {n} cached entries invalidated")


if __name__ == "__main__":
    r.invalidate(tag="catalog")
    # A herd of 20 requests for the same page: one render.
    threads = [threading.Thread(target=product_page, args=(1,)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("renders after a herd of 20:", len(computes))
    print("page:", product_page(1))
    save_product(1, price=25)
    print("page after the save:", product_page(1), "renders:", len(computes))
    key = product_page.key_for(1)
    print("entry:", r.inspect(key))
    # The low-level loop get_or_compute runs, by hand:
    f = r.fetch("report:daily", lease_ms=5000)  # [value, state, token]
    if f.state in ("miss", "refresh"):  # we hold the lease
        value = b"computed from the database read after the FETCH"
        stored = r.set("report:daily", value, 60, tags=["reports"], guard=f.token)
        print("report stored:", stored, "(False: an invalidation since the token would select it)")
    print("stats:", r.stats().entries, "entries,", r.stats().guard)
