#!/usr/bin/env bash
# Build the module (release) and run a Redis server with it loaded, in the
# foreground, using redis.conf from the repository root.
#
#   scripts/run.sh                     # redis-server on 127.0.0.1:6379
#   PORT=7000 scripts/run.sh           # another port
#   scripts/run.sh --loglevel debug    # extra arguments go to redis-server
#   TAGCACHE_SERVER=/path/to/valkey-server scripts/run.sh   # another server binary
#
# Then e.g.: redis-cli -p 6379 MODULE LIST
set -euo pipefail

# shellcheck source=scripts/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"
cd "$TC_ROOT"

PORT="${PORT:-6379}"
SERVER="${TAGCACHE_SERVER:-/usr/bin/redis-server}"

tc_ensure_apt_packages
command -v cargo >/dev/null 2>&1 || tc_die "cargo not found on PATH"

cargo build --release
MODULE="$TC_ROOT/target/release/libtagcache.so"
[ -f "$MODULE" ] || tc_die "build did not produce $MODULE"
[ -x "$SERVER" ] || tc_die "server binary not found: $SERVER"

# Refuse to start if something already listens on the port (typically the
# Debian redis-server service), instead of failing obscurely in redis-server.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    tc_die "port $PORT on 127.0.0.1 is already in use (a running redis-server service?
  stop it with: service redis-server stop   (or systemctl stop redis-server)
  or pick another port: PORT=6380 scripts/run.sh)"
fi

tc_log "starting $SERVER on port $PORT with $MODULE"
# redis.conf holds "dir ./target" and "loadmodule ./release/libtagcache.so"
# (relative to ./target, since Redis chdirs to dir before loading modules);
# "./target" itself is relative to the current directory, the repository root.
# Command-line options after the config file override it.
exec "$SERVER" "$TC_ROOT/redis.conf" --port "$PORT" "$@"
