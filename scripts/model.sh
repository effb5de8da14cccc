#!/usr/bin/env bash
# Long runs of the differential model test (tests/strategies.rs, issue 21): seeded random steps
# under every strategy, checked against IMMEDIATE semantics, on chosen servers for as long as
# asked. Each diverging seed is printed with its first diverging step (the step's commands, the
# keys that differ) and a shrunk reproduction.
#
#   scripts/model.sh                        # 600 s per server, every server
#   scripts/model.sh 3600                   # an hour per server
#   TAGCACHE_SERVERS="redis-7.0 valkey-9.1" scripts/model.sh 900
#   TAGCACHE_SEED=1234 TAGCACHE_STRATEGY_STEPS=700 scripts/model.sh   # replay one seed
#
# Both tests of tests/strategies.rs run side by side (default cascade depth, and
# max-cascade-depth 2), each for the given time, seeds counting up from
# TAGCACHE_STRATEGY_FIRST_SEED (default: from the clock, printed) and, for the second test,
# from that plus 1000000. Passed through: TAGCACHE_STRATEGY_STEPS (steps per seed, default 700),
# TAGCACHE_STRATEGY_SHRINK (seconds to shrink a divergence, default 30),
# TAGCACHE_STRATEGY_KEEP_GOING (default 1 here: go on after a divergence),
# TAGCACHE_STRATEGY_SKIP, TAGCACHE_STRATEGY_FOCUS (see the header of tests/strategies.rs).
# Logs: target/test-logs/model-<server>.log. The last lines: seeds x steps and divergences
# per server.
set -euo pipefail

# shellcheck source=scripts/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"
cd "$TC_ROOT"

PER_SERVER="${1:-600}"
LOGDIR="$TC_ROOT/target/test-logs"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export TAGCACHE_STRATEGY_KEEP_GOING="${TAGCACHE_STRATEGY_KEEP_GOING:-1}"
if [ -z "${TAGCACHE_STRATEGY_FIRST_SEED:-}" ]; then
    TAGCACHE_STRATEGY_FIRST_SEED="$(( $(date +%s) % 100000 * 1000 ))"
fi
export TAGCACHE_STRATEGY_FIRST_SEED

tc_ensure_apt_packages
tc_ensure_rust_tools
tc_ensure_venv
mkdir -p "$LOGDIR"

SERVERS_ALL="$(tc_server_list)"
SERVERS=()
if [ -n "${TAGCACHE_SERVERS:-}" ]; then
    for want in $TAGCACHE_SERVERS; do
        line="$(awk -v n="$want" '$1 == n' <<<"$SERVERS_ALL")"
        [ -n "$line" ] || tc_die "server '$want' not available (have: $(awk '{print $1}' <<<"$SERVERS_ALL" | tr '\n' ' '))"
        SERVERS+=("$line")
    done
else
    while IFS= read -r line; do
        [ -n "$line" ] && SERVERS+=("$line")
    done <<<"$SERVERS_ALL"
fi
[ "${#SERVERS[@]}" -gt 0 ] || tc_die "no server binaries"

cargo build
MODULE="$TC_ROOT/target/debug/libtagcache.so"
cargo test --test strategies --no-run

if [ -n "${TAGCACHE_SEED:-}" ]; then
    tc_log "replaying seed $TAGCACHE_SEED"
else
    tc_log "seeds from $TAGCACHE_STRATEGY_FIRST_SEED (and $((TAGCACHE_STRATEGY_FIRST_SEED + 1000000)) for the shallow cascade), ${PER_SERVER} s per server"
fi

RC=0
SUMMARY=()
for line in "${SERVERS[@]}"; do
    read -r name path <<<"$line"
    log="$LOGDIR/model-$name.log"
    printf '\n==================== model: %s (%s) ====================\n' "$name" "$path"
    set +e
    env TAGCACHE_SERVER="$path" TAGCACHE_MODULE="$MODULE" \
        TAGCACHE_STRATEGY_SECONDS="$PER_SERVER" \
        timeout --kill-after=30 "$((PER_SERVER * 2 + 600))" \
        cargo test --test strategies -- --nocapture --test-threads=2 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || RC=1
    while IFS= read -r l; do
        SUMMARY+=("$(printf '  %-12s %s' "$name" "$l")")
    done < <(grep -E '^strategies.*seeds x' "$log" || echo "no summary (exit $rc): see $log")
done

printf '\n==================== summary ====================\n'
for l in "${SUMMARY[@]}"; do echo "$l"; done
exit "$RC"
