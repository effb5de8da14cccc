#!/usr/bin/env python3
"""Writes the checked-in seed corpus of the fuzz targets (fuzz/corpus/<target>/): valid and
near-valid inputs, so a short run starts deep in each parser. Re-run after changing an encoding
or a command's syntax: python3 fuzz/make_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def vbytes(b):
    return varint(len(b)) + b


# --- args: NUL-separated argument lists, one per command form ------------------------------
ARGS = {
    "set_min": ["CACHE.SET", "k", "v"],
    "set_full": ["CACHE.SET", "user:1", "{}", "EX", "60", "NX", "TAGS", "2", "users", "org:7",
                 "DEPENDS", "1", "db:users:1", "META", '{"q":[1,{"a":null}]}'],
    "set_pxat_keepttl": ["cache.set", "k", "v", "PXAT", "1700000000000", "XX"],
    "set_keepttl": ["cache.set", "k", "v", "KEEPTTL", "TAGS", "0", "DEPENDS", "0"],
    "set_huge_count": ["CACHE.SET", "k", "v", "TAGS", "4000000000", "a"],
    "set_negative": ["CACHE.SET", "k", "v", "EX", "-1"],
    "set_overflow": ["CACHE.SET", "k", "v", "EX", "9223372036854775807"],
    "set_meta_bad": ["CACHE.SET", "k", "v", "META", "[1,2"],
    "get": ["CACHE.GET", "k"],
    "mget": ["CACHE.MGET", "a", "b", "c"],
    "tag": ["CACHE.TAG", "k", "t1", "t2"],
    "depend": ["CACHE.DEPEND", "k", "r1"],
    "inspect": ["CACHE.INSPECT", "k"],
    "inv_key": ["CACHE.INVALIDATE", "DEPTH", "2", "CONTEXT", "c", "STRATEGY", "IMMEDIATE", "KEY", "a"],
    "inv_tag": ["CACHE.INVALIDATE", "TAG", "t", "u"],
    "inv_pattern": ["CACHE.INVALIDATE", "PATTERN", "n:[a-c]*\\?"],
    "inv_ns": ["CACHE.INVALIDATE", "NAMESPACE", "n"],
    "inv_all": ["CACHE.INVALIDATE", "STRATEGY", "BATCHED", "ALL"],
    "inv_dependents": ["CACHE.INVALIDATE", "DEPTH", "0", "DEPENDENTS", "r", "a"],
    "keys": ["CACHE.KEYS", "DEPTH", "3", "KEY", "a"],
    "tags": ["CACHE.TAGS", "MATCH", "t*", "COUNT", "5"],
    "stats": ["CACHE.STATS", "JSON"],
    "events": ["CACHE.EVENTS", "COUNT", "10"],
    "hotkeys": ["CACHE.HOTKEYS", "COUNT", "3"],
    "pending": ["CACHE.PENDING", "FLUSH"],
    "pending_done": ["CACHE.PENDING", "DONE", "3"],
    "debug": ["CACHE.DEBUG", "VERIFY"],
    "rule_set": ["CACHE.RULE", "SET", "r1", "ON", "user", "OPS", "update,delete", "MATCH", "1*",
                 "INVALIDATE", "2", "user:{id}", "{type}s:{op}", "STRATEGY", "BATCHED",
                 "PRIORITY", "5"],
    "rule_del": ["CACHE.RULE", "DEL", "r1"],
    "rule_list": ["CACHE.RULE", "LIST"],
    "relate": ["CACHE.RELATE", "user", "post", "comment", "DEPTH", "2", "BIDIRECTIONAL"],
    "relate_del": ["CACHE.RELATE", "DEL", "user", "post"],
    "write": ["CACHE.WRITE", "user", "7", "OP", "create", "CONTEXT", "signup"],
}
for name, argv in ARGS.items():
    write("args", name, b"\0".join(a.encode() for a in argv))

# --- glob: pattern NUL subject ------------------------------------------------------------
GLOBS = [
    (b"user:*", b"user:1"),
    (b"a*a*a*a*a*a*a*b", b"a" * 64),
    (b"[^a-z]?\\*[]x", b"Z1*x"),
    (b"[z-a\\]]*", b"m]"),
    (b"*", b""),
    (b"[", b"["),
    (b"\\", b"\\"),
]
for i, (p, s) in enumerate(GLOBS):
    write("glob", "g%d" % i, p + b"\0" + s)


# --- decode: selector byte (0 entry, 1 batch, 2 rules, 3 batch item), then the bytes -------
def entry(value, tags, deps, meta, created=1700000000000, hits=3):
    out = b"\x01" + vbytes(value)
    for names in (tags, deps):
        out += varint(len(names)) + b"".join(vbytes(n) for n in sorted(names))
    out += b"\x00" if meta is None else b"\x01" + vbytes(meta)
    return out + varint(created) + varint(hits)


def item(id_, kind, args, depth=None, context=None, rule=None, user=None):
    out = varint(id_) + varint(0) + bytes([kind]) + varint(len(args))
    out += b"".join(vbytes(a) for a in args)
    out += varint(0 if depth is None else depth + 1)
    for f in (context, rule, user):
        out += b"\x00" if f is None else b"\x01" + vbytes(f)
    return out + varint(1700000000000) + varint(1700000000100) + varint(0)


def u32(n):
    return struct.pack("<I", n)


def lb(b):
    return u32(len(b)) + b


def rules():
    out = b"TCRL\x01" + u32(1)
    out += lb(b"r1") + lb(b"user") + b"\x03" + b"\x01" + lb(b"1*")
    out += u32(2) + lb(b"user:{id}") + lb(b"{type}s")
    out += b"\x02" + struct.pack("<q", 5) + struct.pack("<Q", 2) + struct.pack("<Q", 9)
    out += b"\x01" + struct.pack("<q", 1700000000000)
    out += u32(1) + lb(b"user") + lb(b"post") + u32(2) + b"\x01"
    return out


DECODE = {
    "entry_full": b"\x00" + entry(b"VALUE", [b"t1", b"t2"], [b"r"], b'{"k":1}'),
    "entry_bare": b"\x00" + entry(b"", [], [], None, 0, 0),
    "entry_binary": b"\x00" + entry(bytes(range(256)), [b"\x00", b"\xff"], [b""], None),
    "entry_huge_len": b"\x00\x01" + varint(2**62) + b"x",
    "entry_unsorted": b"\x00\x01" + vbytes(b"v") + b"\x02" + vbytes(b"b") + vbytes(b"a") + b"\x00\x00\x00\x00",
    "batch": b"\x01\x04" + varint(9) + varint(2) + item(3, 1, [b"t"], 2, b"ctx", b"r1", b"alice")
    + item(4, 4, []),
    "batch_huge_count": b"\x01\x04" + varint(1) + varint(2**40),
    "rules": b"\x02" + rules(),
    "rules_huge_count": b"\x02TCRL\x01" + u32(0xFFFFFFFF),
    "item": b"\x03\x04" + item(7, 2, [b"user:*"], None, None, None, None),
}
for name, data in DECODE.items():
    write("decode", name, data)
