#!/usr/bin/env node
// Refuses to pack a package without both Linux prebuilds (`prepack`): prebuilds/linux-x64 and prebuilds/linux-arm64
// must each hold an ELF shared object of that machine. `npm run prebuild` makes them.
import { existsSync, openSync, readSync, readdirSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** ELF e_machine of each prebuild directory. */
const PREBUILDS = { 'linux-x64': 0x3e, 'linux-arm64': 0xb7 };

const problems = [];
for (const [dir, machine] of Object.entries(PREBUILDS)) {
  const path = join(ROOT, 'prebuilds', dir);
  const files = existsSync(path) ? readdirSync(path).filter((f) => f.endsWith('.node')) : [];
  if (files.length === 0) {
    problems.push(`prebuilds/${dir}: no .node file`);
    continue;
  }
  for (const f of files) {
    const head = Buffer.alloc(20);
    const fd = openSync(join(path, f), 'r');
    readSync(fd, head, 0, 20, 0);
    closeSync(fd);
    const elf = head.readUInt32BE(0) === 0x7f454c46;
    const got = head.readUInt16LE(18);
    if (!elf || got !== machine) problems.push(`prebuilds/${dir}/${f}: not an ELF object for ${dir} (e_machine 0x${got.toString(16)})`);
  }
}
if (problems.length > 0) {
  console.error(`tcp-punch: refusing to pack without both prebuilds:\n  ${problems.join('\n  ')}\nRun \`npm run prebuild\` first.`);
  process.exit(1);
}
console.error(`tcp-punch: prebuilds present for ${Object.keys(PREBUILDS).join(', ')}`);
