#!/usr/bin/env node
// The package's install hook. node-gyp-build uses a prebuild from prebuilds/ when one loads here, else builds the
// addon with node-gyp. When neither works (no prebuild for this platform, or one this glibc cannot load, and no
// compiler) the install still succeeds: the library loads without the addon (server, relay with the JS pump,
// protocol, `tcp-punch serve`), and punching throws ERR_NATIVE_UNAVAILABLE saying how to get it.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const bin = createRequire(import.meta.url).resolve('node-gyp-build/bin.js');
const run = spawnSync(process.execPath, [bin], { stdio: 'inherit' });
if (run.status !== 0) {
  console.warn(
    `tcp-punch: no usable prebuild for ${process.platform}-${process.arch} and the native addon could not be built ` +
      '(see above). The library works without it, except hole punching, reusable ports and the native relay pump ' +
      '(ERR_NATIVE_UNAVAILABLE). To get it: install make, g++ and python3, then run `npm rebuild tcp-punch`.',
  );
}
