#!/usr/bin/env bash
# Instructions and simulated cache misses per call of CACHE.GET/CACHE.SET and what they are
# compared with (GET, SET, and the floor module's FLOOR.GET/FLOOR.SET), counted by callgrind over
# the server while redis-benchmark runs each command. Unlike rates, these counts repeat from run
# to run, so they show what a change to a command's path does to it.
#   scripts/bench/callgrind.sh                 # 20 000 calls of each
#   CALLS=5000 scripts/bench/callgrind.sh
#   TAGCACHE_SERVER=/path/to/valkey-server scripts/bench/callgrind.sh
#   TAGCACHE_MODULE=/path/to/other/libtagcache.so scripts/bench/callgrind.sh   # another build
#   GUARD_FACTS=600000 scripts/bench/callgrind.sh  # then CACHE.SET ... GUARD over a history of
#                                                  # that many invalidations (60 s at 10 000/s)
# The last level of the simulated cache is 1 MiB (this machine's L2 per core), so its misses are
# what does not stay in L2 across 100 000 keys.
set -euo pipefail
# shellcheck source=scripts/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/../servers.sh"
cd "$TC_ROOT"
tc_ensure_apt_packages
tc_apt_install valgrind
cargo build --release
floor=$(tc_build_floor_module) || tc_die "the floor module could not be built"
server=${TAGCACHE_SERVER:-/usr/bin/redis-server}
module=${TAGCACHE_MODULE:-$PWD/target/release/libtagcache.so}
calls=${CALLS:-20000}
keys=50000
port=$(cd scripts && python3 -c 'from bench import free_port; print(free_port())')
dir=$(mktemp -d)
# KEEP=1 keeps the dumps (callgrind_annotate them by function).
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; [ -n "${KEEP:-}" ] && echo "dumps kept in $dir" || rm -rf "$dir"' EXIT

valgrind --tool=callgrind --cache-sim=yes --LL=1048576,8,64 --instr-atstart=no \
    --callgrind-out-file="$dir/out" "$server" --port "$port" --save '' --dir "$dir" \
    --loadmodule "$module" --loadmodule "$floor" \
    >"$dir/log" 2>&1 &
vg=$!
for _ in $(seq 300); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
redis-cli -p "$port" ping >/dev/null || tc_die "the server did not start under valgrind ($dir/log)"

# The keys the commands hit: plain strings and cache entries with three tags, 100-byte values.
python3 - "$port" "$keys" <<'PY'
import sys
sys.path.insert(0, "scripts")
from bench import Resp  # raises on an error reply
port, n = int(sys.argv[1]), int(sys.argv[2])
v = b"x" * 100
c = Resp(port)
c.pipeline([["SET", "p:%012d" % i, v] for i in range(n)])
c.pipeline([["CACHE.SET", "c:%012d" % i, v, "TAGS", "3", "tag:a", "tag:b", "item:%d" % i]
            for i in range(n)])
PY

value=$(printf 'x%.0s' $(seq 100))
declare -a names=(GET FLOOR.GET CACHE.GET SET FLOOR.SET CACHE.SET)
declare -A spec=(
    [GET]="GET p:__rand_int__"
    [FLOOR.GET]="FLOOR.GET p:__rand_int__"
    [CACHE.GET]="CACHE.GET c:__rand_int__"
    [SET]="SET p:__rand_int__ $value"
    [FLOOR.SET]="FLOOR.SET p:__rand_int__ $value"
    [CACHE.SET]="CACHE.SET c:__rand_int__ $value TAGS 3 tag:a tag:b item:__rand_int__"
)
i=0
for name in "${names[@]}"; do
    i=$((i + 1))
    callgrind_control -i on "$vg" >/dev/null 2>&1
    # shellcheck disable=SC2086
    redis-benchmark -p "$port" -P 16 -c 10 -n "$calls" -r "$keys" -q ${spec[$name]} >/dev/null
    callgrind_control -i off "$vg" >/dev/null 2>&1
    callgrind_control -d "$name" "$vg" >/dev/null 2>&1
    echo "$name $i" >>"$dir/order"
done

# The stale-set guard (issue 25): CACHE.SET with and without GUARD once the history holds
# GUARD_FACTS invalidations (one tag each, none selecting the entries written). A fresh token
# has seen them all (the check's fast path); an old one, taken before them, is checked against
# the history: its key, tags and namespaces looked up.
guard_facts=${GUARD_FACTS:-0}
if [ "$guard_facts" -gt 0 ]; then
    # Kept whole however slowly valgrind builds it: the old token stays one the node vouches for.
    redis-cli -p "$port" config set cache.guard-max-bytes $((1 << 30)) >/dev/null
    redis-cli -p "$port" config set cache.guard-window-ms 86400000 >/dev/null
    old_token=$(redis-cli -p "$port" cache.token)
    python3 - "$port" "$guard_facts" <<'PY'
import sys
sys.path.insert(0, "scripts")
from bench import Resp
port, n = int(sys.argv[1]), int(sys.argv[2])
c = Resp(port)
for start in range(0, n, 10000):
    c.pipeline([["CACHE.INVALIDATE", "DEPTH", "0", "TAG", "inv:%d" % i]
                for i in range(start, min(n, start + 10000))])
PY
    fresh_token=$(redis-cli -p "$port" cache.token)
    # Entries rewritten as they are (1 000 keys, the same three tags), so that every call does
    # the same work: the main runs above draw a new item tag per call, whose relinking moves the
    # count by a few percent from run to run. The plain CACHE.SET runs before and after the
    # guarded ones; how far apart they are is the noise.
    gspec="CACHE.SET g:__rand_int__ $value TAGS 3 tag:a tag:b tag:c"
    # shellcheck disable=SC2086
    redis-benchmark -p "$port" -P 16 -c 10 -n 20000 -r 1000 -q $gspec >/dev/null
    spec["CACHE.SET/history"]="$gspec"
    spec["CACHE.SET/again"]="$gspec"
    spec["GUARD/fresh"]="$gspec GUARD $fresh_token"
    spec["GUARD/old"]="$gspec GUARD $old_token"
    for name in "CACHE.SET/history" "GUARD/fresh" "GUARD/old" "CACHE.SET/again"; do
        i=$((i + 1))
        callgrind_control -i on "$vg" >/dev/null 2>&1
        # shellcheck disable=SC2086
        redis-benchmark -p "$port" -P 16 -c 10 -n "$calls" -r 1000 -q ${spec[$name]} >/dev/null
        callgrind_control -i off "$vg" >/dev/null 2>&1
        callgrind_control -d "guard$i" "$vg" >/dev/null 2>&1
        echo "$name $i" >>"$dir/order"
    done
    accepted=$(redis-cli -p "$port" cache.stats json | python3 -c 'import json,sys; print(json.load(sys.stdin)["guard"]["accepted"])')
    echo "guarded sets accepted: $accepted of $((2 * calls))"
fi
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$vg" || true

# One dump per command, in order (out.1, out.2, ...): Ir, D1mr and DLmr per call.
python3 - "$dir" "$calls" <<'PY'
import glob, os, re, subprocess, sys
d, calls = sys.argv[1], int(sys.argv[2])
order = [l.split() for l in open(os.path.join(d, "order"))]
figures = {}
for name, i in order:
    files = [f for f in glob.glob(os.path.join(d, "out*")) if re.search(r"\.%s$" % i, f)]
    if not files:
        sys.exit("callgrind: no dump for %s" % name)
    text = subprocess.run(["callgrind_annotate", files[0]], capture_output=True, text=True).stdout
    events = re.search(r"^Events shown:\s+(.*)$", text, re.M).group(1).split()
    totals = next(l for l in text.splitlines() if "PROGRAM TOTALS" in l)
    counts = [int(x.replace(",", "")) for x in re.findall(r"([\d,]+) \(", totals)]
    row = dict(zip(events, counts))
    figures[name] = {k: row.get(k, 0) / calls for k in ("Ir", "D1mr", "DLmr")}
    print("%-18s %8.0f instructions  %6.1f L1 data read misses  %5.1f 1 MiB LL data read misses  per call"
          % (name, figures[name]["Ir"], figures[name]["D1mr"], figures[name]["DLmr"]))
if "GUARD/old" in figures:
    plains = [figures[k]["Ir"] for k in ("CACHE.SET/history", "CACHE.SET/again")]
    plain = sum(plains) / 2
    print("instructions GUARD/plain CACHE.SET (goal <= 1.10): fresh token %.3f  old token %.3f"
          "  (the two plain runs differ by %.1f%%)"
          % (figures["GUARD/fresh"]["Ir"] / plain, figures["GUARD/old"]["Ir"] / plain,
             100.0 * abs(plains[0] - plains[1]) / plain))
for ours, floor, plain in (("CACHE.GET", "FLOOR.GET", "GET"), ("CACHE.SET", "FLOOR.SET", "SET")):
    print("instructions %s/%s %.2f  %s/%s %.2f" % (
        plain, ours, figures[plain]["Ir"] / figures[ours]["Ir"],
        plain, floor, figures[plain]["Ir"] / figures[floor]["Ir"]))
PY
