#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of the module's pure core:
#   args    the argument parser of every command, with what the handlers do next
#   glob    the glob matcher
#   decode  the decoders of entries (RDB, DUMP/RESTORE), the BATCHED queue and the rules
#
#   scripts/fuzz.sh                 # each target for FUZZ_SECONDS (default 10) seconds
#   FUZZ_SECONDS=600 scripts/fuzz.sh decode    # a longer run of one target
#   FUZZ_SANITIZER=address scripts/fuzz.sh     # with AddressSanitizer (RUSTC_BOOTSTRAP=1)
#
# Each target starts from the checked-in seeds (fuzz/corpus/<target>, written by
# fuzz/make_seeds.py) and grows a working corpus in target/fuzz-corpus/<target> (kept between
# runs, not committed). A crash, panic, leak, allocation over 64 MB or input slower than 10 s
# stops the target; the input is saved under target/fuzz-artifacts/<target>/ and the script
# exits non-zero. One line per target: "fuzz <target>: N runs in S s, ok|FAILED". The last line
# is "N passed, M failed" (one per target).
set -euo pipefail

# shellcheck source=scripts/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"
cd "$TC_ROOT"

SECONDS_EACH="${FUZZ_SECONDS:-10}"
SANITIZER="${FUZZ_SANITIZER:-none}"
TARGETS=("$@")
[ "${#TARGETS[@]}" -eq 0 ] && TARGETS=(args glob decode)

tc_ensure_cargo_fuzz
if [ "$SANITIZER" != none ]; then export RUSTC_BOOTSTRAP=1; fi

cd "$TC_ROOT/fuzz"
mkdir -p "$TC_ROOT/target"
if ! cargo fuzz build --sanitizer "$SANITIZER" >"$TC_ROOT/target/fuzz-build.log" 2>&1; then
    cat "$TC_ROOT/target/fuzz-build.log"
    tc_die "cargo fuzz build failed"
fi

passed=0
failed=0
for t in "${TARGETS[@]}"; do
    work="$TC_ROOT/target/fuzz-corpus/$t"
    artifacts="$TC_ROOT/target/fuzz-artifacts/$t/"
    log="$TC_ROOT/target/fuzz-$t.log"
    mkdir -p "$work" "$artifacts"
    set +e
    cargo fuzz run --sanitizer "$SANITIZER" "$t" "$work" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64 \
        -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    runs="$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1 runs in \2 s/p' "$log" | tail -n1)"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "fuzz $t: ${runs:-? runs}, ok"
    else
        failed=$((failed + 1))
        echo "fuzz $t: FAILED (exit $rc); log $log, inputs in $artifacts"
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -n 10 || true
    fi
done
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
