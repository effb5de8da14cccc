#!/usr/bin/env bash
# Benchmark tagcache against the schemes it replaces, in one run on one server.
#   scripts/bench.sh                      # everything, full size (a few minutes)
#   BENCH_SCALE=0.1 scripts/bench.sh      # every entry count x0.1
#   scripts/bench.sh memory tag           # only some figures: throughput memory return tag pattern cascade stall worst stats lazy herd guard symfony scale cluster
#   TAGCACHE_SERVER=/path/to/valkey-server scripts/bench.sh
set -euo pipefail
# shellcheck source=scripts/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"
cd "$TC_ROOT"
tc_ensure_apt_packages
# The real peer (figure `symfony`): Symfony Cache's RedisTagAwareAdapter from Debian, no composer.
tc_apt_install php-cli php-redis php-symfony-cache
cargo build --release
# The floor module (scripts/bench/floor.c): GET and SET through the module API and nothing else,
# to show what any module command pays.
if floor=$(tc_build_floor_module); then
    export TAGCACHE_FLOOR_MODULE="$floor"
else
    echo "bench: could not build the floor module; its figures are left out" >&2
fi
exec python3 scripts/bench.py "$@"
