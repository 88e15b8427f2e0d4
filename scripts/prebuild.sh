#!/usr/bin/env bash
# `npm run prebuild`: N-API prebuilds for linux-x64 and linux-arm64 into prebuilds/ (what `npm pack` ships).
# Built offline against the local Node's headers (prebuildify -t <this Node>, node-gyp's nodedir from npm's config);
# arm64 cross-built with Debian's g++-aarch64-linux-gnu. The C++ runtime is linked in (binding.gyp), so each needs
# only glibc. The sources are built in a scratch copy: build/ (the development build) is left alone.
# Then each prebuild is checked: its machine, the libraries it needs (glibc only), the newest glibc symbol version
# it uses (the minimum glibc the README states), and the arm64 one is loaded (dlopen) under qemu-user if present.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node-gyp >/dev/null || [ -z "${npm_config_nodedir:-}" ]; then
  echo "run this as \`npm run prebuild\` (npm provides node-gyp and its nodedir setting)" >&2
  exit 2
fi
root=$PWD
node_version=$(node -p process.versions.node)
prebuildify=("$root/node_modules/.bin/prebuildify" --napi --strip -t "$node_version")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r native binding.gyp package.json "$work/"
ln -s "$root/node_modules" "$work/node_modules"
cd "$work"
"${prebuildify[@]}" >build-x64.log 2>&1 || { cat build-x64.log; exit 1; }
CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ "${prebuildify[@]}" --arch arm64 --strip-bin aarch64-linux-gnu-strip \
  >build-arm64.log 2>&1 || { cat build-arm64.log; exit 1; }
rm -rf "$root/prebuilds"
cp -r prebuilds "$root/prebuilds"
cd "$root"

status=0
for dir in prebuilds/linux-x64 prebuilds/linux-arm64; do
  f=$(ls "$dir"/*.node)
  machine=$(readelf -h "$f" | sed -n 's/^ *Machine: *//p')
  needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
  glibc=$(readelf --dyn-syms -W "$f" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1)
  echo "$f: $machine; needs: $needed; newest symbol version: $glibc"
  for lib in $needed; do
    case $lib in libc.so.* | libm.so.* | ld-linux-*.so.*) ;; *) echo "  $lib: not part of glibc" >&2; status=1 ;; esac
  done
done

if command -v qemu-aarch64 >/dev/null && [ -d /usr/aarch64-linux-gnu/lib ]; then
  # No arm64 Node here: a small loader dlopen()s the addon (relocations, symbol versions, initialisers) and finds
  # its N-API entry point, which only Node can call. The symbols Node itself exports (napi_*, uv_*) are given by a
  # stub library loaded first: node-addon-api takes the address of some (napi_create_error...), and such data
  # relocations are bound at load time even with RTLD_LAZY, so without stubs no addon would load outside Node.
  f=$(ls prebuilds/linux-arm64/*.node)
  aarch64-linux-gnu-readelf --dyn-syms -W "$f" | awk '$7 == "UND" && $5 == "GLOBAL" && $8 !~ /@/ { print "void " $8 "(void) {}" }' \
    >"$work/node-stubs.c"
  aarch64-linux-gnu-gcc -shared -fPIC -o "$work/node-stubs.so" "$work/node-stubs.c"
  cat >"$work/load.c" <<'C'
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
  if (!dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL)) { fprintf(stderr, "dlopen stubs: %s\n", dlerror()); return 1; }
  void *h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
  if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
  if (!dlsym(h, "napi_register_module_v1")) { fprintf(stderr, "no napi_register_module_v1\n"); return 2; }
  return 0;
}
C
  aarch64-linux-gnu-gcc -o "$work/load" "$work/load.c" -ldl
  if qemu-aarch64 -L /usr/aarch64-linux-gnu "$work/load" "$work/node-stubs.so" "$f"; then
    echo "prebuilds/linux-arm64: loads under qemu-aarch64 (dlopen RTLD_NOW against stubs of Node's exports, N-API entry point found)"
  else
    status=1
  fi
else
  echo "prebuilds/linux-arm64: not load-tested (no qemu-user or arm64 glibc here)"
fi
node scripts/check-prebuilds.mjs
exit $status
