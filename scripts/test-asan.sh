#!/usr/bin/env bash
# Runs the native-facing tests against the addon built with -fsanitize=address,undefined (cmake-js build).
# Node itself is not instrumented, so the sanitizer runtimes are preloaded; leak checking is off because Node
# keeps its own allocations alive at exit (fd-leak assertions in the tests cover our descriptors).
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js rebuild --out build-asan --CDTCP_PUNCH_SANITIZE=ON >/dev/null
asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
export TCP_PUNCH_ADDON="$PWD/build-asan/Release/tcp_punch.node"
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
files=(test/punch.test.ts test/native*.test.ts test/fast-open.test.ts)
[ -n "$(ls test/pump*.test.ts 2>/dev/null)" ] && files+=(test/pump*.test.ts)
exec npx vitest run "${files[@]}" "$@"
