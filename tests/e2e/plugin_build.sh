#!/usr/bin/env bash
# plugin_build.sh BUILD_DIR SOURCE_DIR
#
# Checks that a plugin builds out of tree against an installed Hopper, the way
# docs/plugins.md tells plugin authors to: install the build into a scratch prefix,
# find hopper-plugin.pc there, and compile examples/greeter/greeter.c with nothing
# but `pkg-config --cflags hopper-plugin`. Also checks the .pc file's version, its
# abi_version and that it has no Libs. Prints "plugin_build: ok" on success; any
# failure exits nonzero with a message saying which step failed.
#
# If HOPPER_PLUGIN_BUILD_OUT is set, the built greeter.so is copied into that
# directory (for a test that runs it through `hopper worker`).
set -euo pipefail
trap 'echo "plugin_build: failed at line $LINENO" >&2' ERR

fail()
{
    echo "plugin_build: FAIL: $*" >&2
    exit 1
}

[ $# -eq 2 ] || fail "usage: $0 BUILD_DIR SOURCE_DIR"
build=$(cd "$1" && pwd) || fail "no build dir $1"
src=$(cd "$2" && pwd) || fail "no source dir $2"
[ -f "$build/CMakeCache.txt" ] || fail "$build is not a configured CMake build dir"
[ -f "$src/examples/greeter/greeter.c" ] || fail "no examples/greeter/greeter.c in $src"
for tool in cmake pkg-config cc nm; do
    command -v "$tool" >/dev/null || fail "$tool is not installed"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hopper-plugin-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

# ---- Install into a prefix chosen now, not at configure time ----
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install $build --prefix $prefix"; }

[ -x "$prefix/bin/hopper" ] || fail "no executable bin/hopper under the prefix"
[ -f "$prefix/include/hopper/plugin.h" ] || fail "no include/hopper/plugin.h under the prefix"

# The libdir depends on GNUInstallDirs (lib, lib64, lib/x86_64-linux-gnu): find it.
pcs=$(find "$prefix" -name hopper-plugin.pc -path '*/pkgconfig/*')
[ -n "$pcs" ] || fail "no hopper-plugin.pc installed under $prefix"
[ "$(printf '%s\n' "$pcs" | wc -l)" -eq 1 ] || fail "more than one hopper-plugin.pc: $pcs"
pcdir=$(dirname "$pcs")
echo "plugin_build: found ${pcs#"$prefix"/}"

# Only the scratch prefix: never a hopper-plugin.pc from the system.
export PKG_CONFIG_PATH=$pcdir
export PKG_CONFIG_LIBDIR=$pcdir

# ---- The .pc file ----
cflags=$(pkg-config --cflags hopper-plugin) || fail "pkg-config --cflags hopper-plugin"
echo "plugin_build: cflags: $cflags"
incdir=$(pkg-config --variable=includedir hopper-plugin)
[ -f "$incdir/hopper/plugin.h" ] ||
    fail "includedir $incdir (from the .pc) has no hopper/plugin.h"
[ "$(cd "$incdir" && pwd -P)" = "$(cd "$prefix/include" && pwd -P)" ] ||
    fail "includedir $incdir is not the install prefix's include dir"

libs=$(pkg-config --libs hopper-plugin)
[ -z "${libs// /}" ] || fail "the .pc has Libs ($libs): plugins must not link against Hopper"

want=$(sed -n 's/^CMAKE_PROJECT_VERSION:[A-Z]*=//p' "$build/CMakeCache.txt")
if [ -z "$want" ]; then
    want=$(sed -n 's/^#define HOPPER_VERSION_STRING *"\(.*\)"/\1/p' "$src/common/version.h")
fi
[ -n "$want" ] || fail "cannot read the project version from the build or common/version.h"
got=$(pkg-config --modversion hopper-plugin)
[ "$got" = "$want" ] || fail "pkg-config --modversion says $got, the project is $want"

abi_major=$(sed -n 's/^#define HOPPER_ABI_VERSION_MAJOR *\([0-9]*\).*/\1/p' "$incdir/hopper/plugin.h")
abi_minor=$(sed -n 's/^#define HOPPER_ABI_VERSION_MINOR *\([0-9]*\).*/\1/p' "$incdir/hopper/plugin.h")
abi=$(pkg-config --variable=abi_version hopper-plugin)
[ "$abi" = "$abi_major.$abi_minor" ] ||
    fail "abi_version in the .pc is '$abi', the installed header says $abi_major.$abi_minor"

# ---- Build the example out of tree, exactly as docs/plugins.md says ----
mkdir "$tmp/greeter"
cp "$src/examples/greeter/greeter.c" "$tmp/greeter/"
(
    cd "$tmp/greeter"
    # shellcheck disable=SC2046 # the flags are meant to split into words
    cc -shared -fPIC $(pkg-config --cflags hopper-plugin) greeter.c -o greeter.so
) || fail "cc -shared -fPIC \$(pkg-config --cflags hopper-plugin) greeter.c -o greeter.so"

# The same source must also be clean under strict flags, as a plugin author's may be.
(
    cd "$tmp/greeter"
    # shellcheck disable=SC2046
    cc -std=c11 -Wall -Wextra -Wpedantic -Werror -shared -fPIC \
        $(pkg-config --cflags hopper-plugin) greeter.c -o greeter-strict.so
) || fail "greeter.c does not build cleanly with -std=c11 -Wall -Wextra -Wpedantic -Werror"

syms=$(nm -D --defined-only "$tmp/greeter/greeter.so") || fail "nm -D greeter.so"
printf '%s\n' "$syms" | grep -Eq '^[0-9a-fA-F]+ T hopper_plugin_init$' ||
    fail "greeter.so does not export hopper_plugin_init; nm -D shows:
$syms"

# ---- Run it: the installed `hopper worker` loads the out-of-tree plugin ----
redis_pid=""
worker_pid=""
stop_servers() {
    if [ -n "$worker_pid" ]; then kill -TERM "$worker_pid" 2>/dev/null; wait "$worker_pid" || true; fi
    if [ -n "$redis_pid" ]; then kill -TERM "$redis_pid" 2>/dev/null; wait "$redis_pid" || true; fi
    return 0
}
trap 'stop_servers; rm -rf "$tmp"' EXIT
# A Unix socket in our own temp dir: no port that another test could hold.
sock="$tmp/redis.sock"
redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no \
    --daemonize no --loglevel warning >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do
    redis-cli -s "$sock" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -s "$sock" ping >/dev/null 2>&1 || { cat "$tmp/redis.log" >&2; fail "could not start a redis-server"; }
export HOPPER_REDIS_URL="unix://$sock"
hopper="$prefix/bin/hopper"
"$hopper" worker --queues greetings --plugins "$tmp/greeter/greeter.so" --processes 1 \
    --threads 1 >"$tmp/worker.log" 2>&1 &
worker_pid=$!
id=$("$hopper" enqueue --queue greetings --type greet --payload '{"name":"Ada"}') ||
    fail "enqueue failed"
state=""
for _ in $(seq 200); do
    out=$("$hopper" job "$id" 2>&1) || true
    case "$out" in *'"state": "succeeded"'*) state=succeeded; break ;; esac
    sleep 0.05
done
[ "$state" = succeeded ] || { cat "$tmp/worker.log" >&2; fail "greet job did not succeed: $out"; }
case "$out" in *'hello, Ada'*) ;; *) fail "greet result lacks the greeting: $out" ;; esac
echo "plugin_build: the worker ran greeter.so: $id succeeded"

echo "plugin_build: ok"
