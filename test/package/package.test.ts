/**
 * The package as a user gets it: `npm pack`, then `npm install <tarball>` into a scratch project on a machine with
 * no usable compiler (CC/CXX=false; PATH holds node, npm and sh only: no make, g++ or python3), three ways:
 * - with the prebuilds: the install builds nothing, punch() works on loopback, `require()` works from CommonJS and
 *   a `"type": "commonjs"` TypeScript project type-checks against the package;
 * - without them: the install still succeeds (with a warning), the library loads, punch() fails with
 *   ERR_NATIVE_UNAVAILABLE, and `tcp-punch serve` runs and answers a Peer;
 * - with a prebuild that cannot load here (the arm64 one in place of the x64 one, as a too-old glibc would): the same
 *   coded error, with the loader's error as its cause.
 * Needs both prebuilds (`npm run prebuild`) and npm's registry or cache for the three dependencies.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NPM_CLI = join(dirname(process.execPath), '..', 'lib/node_modules/npm/bin/npm-cli.js');
const T = { timeout: 300_000 };

let scratch: string;
let tarball: string;
/** PATH of the "no compiler" machine: node, npm and sh, nothing else. */
let bareEnv: NodeJS.ProcessEnv;

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'tcp-punch-package-'));
  const bin = join(scratch, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  writeFileSync(join(bin, 'npm'), `#!/bin/sh\nexec "${process.execPath}" "${NPM_CLI}" "$@"\n`, { mode: 0o755 });
  symlinkSync('/bin/sh', join(bin, 'sh'));
  bareEnv = { HOME: process.env.HOME, PATH: bin, CC: 'false', CXX: 'false', npm_config_update_notifier: 'false' };
  // prepack refuses without both prebuilds; prepare builds dist/.
  const out = execFileSync(process.execPath, [NPM_CLI, 'pack', '--json', '--pack-destination', scratch], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  tarball = join(scratch, (JSON.parse(out) as { filename: string }[])[0]!.filename);
}, 300_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** The tarball with its `package/` tree changed by `edit`. */
function variant(name: string, edit: (pkg: string) => void): string {
  const dir = join(scratch, `variant-${name}`);
  mkdirSync(dir);
  execFileSync('tar', ['xzf', tarball, '-C', dir]);
  edit(join(dir, 'package'));
  const out = join(scratch, `tcp-punch-${name}.tgz`);
  execFileSync('tar', ['czf', out, '-C', dir, 'package']);
  return out;
}

/** A scratch project with `tgz` installed on the bare machine; resolves the project dir and npm's output. */
function install(name: string, tgz: string, type: 'module' | 'commonjs' = 'module'): { dir: string; code: number | null; output: string } {
  const dir = join(scratch, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `try-${name}`, private: true, type }));
  const r = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', tgz], { cwd: dir, env: bareEnv, encoding: 'utf8', timeout: 240_000 });
  return { dir, code: r.status, output: `${r.stdout}${r.stderr}` };
}

/** Runs an ES module script in `dir` on the bare machine; resolves its stdout parsed as JSON. */
function run(dir: string, file: string, source: string): Record<string, unknown> {
  writeFileSync(join(dir, file), source);
  const r = spawnSync('node', [file], { cwd: dir, env: bareEnv, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${file} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

// Ports the kernel picks: a fixed one can be held by another socket's ephemeral port (the earlier tiers leave
// thousands of loopback connections closing), and then the bind fails with EADDRINUSE.
const PUNCH = `
import { bindReusable, punch } from 'tcp-punch';
const [pa, pb] = await Promise.all([bindReusable({ address: '127.0.0.1' }), bindReusable({ address: '127.0.0.1' })]);
const ends = await Promise.all([
  punch({ port: pa, remote: { host: '127.0.0.1', port: pb.port } }),
  punch({ port: pb, remote: { host: '127.0.0.1', port: pa.port } }),
]);
const got = new Promise((r) => ends[1].once('data', (d) => r(d.toString())));
ends[0].write('through the prebuild');
console.log(JSON.stringify({ got: await got }));
for (const s of ends) s.destroy();
pa.close();
pb.close();
`;

const UNAVAILABLE = `
import { punch, startServer } from 'tcp-punch';
const err = await punch({ remote: { host: '127.0.0.1', port: 9 } }).catch((e) => e);
const server = await startServer({ host: '127.0.0.1', port: 0 });
await server.close();
console.log(JSON.stringify({ name: err.name, code: err.code, message: err.message, cause: String(err.cause), serverRan: true }));
`;

describe('the packed package, installed where nothing can be compiled', () => {
  it('ships both prebuilds, the LICENSE, and source maps only of shipped files', () => {
    const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean);
    expect(files).toEqual(expect.arrayContaining(['package/LICENSE', 'package/prebuilds/linux-x64/tcp-punch.node', 'package/prebuilds/linux-arm64/tcp-punch.node']));
    const dir = join(scratch, 'contents');
    mkdirSync(dir);
    execFileSync('tar', ['xzf', tarball, '-C', dir]);
    const maps = files.filter((f) => f.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    const missing = maps.flatMap((m) => {
      const { sources } = JSON.parse(readFileSync(join(dir, m), 'utf8')) as { sources: string[] };
      return sources.map((s) => join(dirname(join(dir, m)), s)).filter((p) => !existsSync(p));
    });
    expect(missing).toEqual([]);
  });

  it('with the prebuilds: installs without building, punch() works, CommonJS require() and types work', T, () => {
    const { dir, code, output } = install('with-prebuild', tarball);
    expect(code, output).toBe(0);
    expect(existsSync(join(dir, 'node_modules/tcp-punch/build'))).toBe(false);
    expect(run(dir, 'punch.mjs', PUNCH)).toEqual({ got: 'through the prebuild' });
    expect(run(dir, 'require.cjs', `const t = require('tcp-punch'); console.log(JSON.stringify({ punch: typeof t.punch, pump: t.choosePump().kind }));`)).toEqual({ punch: 'function', pump: 'native' });
    // A "type": "commonjs" TypeScript project (module node20, the setting for Node >= 20.19's require(esm)).
    writeFileSync(join(dir, 'index.ts'), `import { punch, TcpPunchError, type PunchOptions } from 'tcp-punch';\nconst o: PunchOptions = { remote: { host: '127.0.0.1', port: 1 } };\nexport const x: [typeof punch, PunchOptions, string] = [punch, o, new TcpPunchError('ERR_X', 'x').code];\n`);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')), type: 'commonjs' }));
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--module', 'node20', '--target', 'es2022', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules/@types'), 'index.ts'], { cwd: dir, encoding: 'utf8' });
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
  });

  it('without the prebuilds: the install succeeds with a warning, the library loads, punch() has a coded error, `serve` answers', T, async () => {
    const { dir, code, output } = install('without-prebuild', variant('no-prebuilds', (pkg) => rmSync(join(pkg, 'prebuilds'), { recursive: true })));
    expect(code, output).toBe(0);
    expect(output).toContain('tcp-punch: no usable prebuild for linux-x64 and the native addon could not be built');
    const r = run(dir, 'unavailable.mjs', UNAVAILABLE);
    expect(r).toMatchObject({ name: 'TcpPunchError', code: 'ERR_NATIVE_UNAVAILABLE', serverRan: true });
    expect(r.message).toMatch(/^punch\(\) needs the tcp-punch native addon, which did not load from \S+\/prebuilds\/linux-x64 or \S+\/build\/Release \(No native build was found/);
    expect(r.message).toContain('npm rebuild tcp-punch');
    // The CLI: `serve` listens (its log goes to stderr) and a Peer of the same addon-less install registers with it.
    const serve = spawn('node', ['node_modules/.bin/tcp-punch', 'serve', '--json', '--host', '127.0.0.1', '--port', '0', '--no-probe'], { cwd: dir, env: bareEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      let port = 0;
      for await (const line of createInterface({ input: serve.stderr! })) {
        const e = JSON.parse(line) as { event?: string; port?: number };
        if (e.event === 'listening') {
          port = e.port!;
          break;
        }
      }
      expect(port).toBeGreaterThan(0);
      const peer = run(dir, 'peer.mjs', `import { Peer } from 'tcp-punch';\nconst p = await Peer.connect({ server: '127.0.0.1:${port}', id: 'newcomer' });\nconsole.log(JSON.stringify({ id: p.id }));\nawait p.close();\n`);
      expect(peer).toEqual({ id: 'newcomer' });
      const version = spawnSync('node', ['node_modules/.bin/tcp-punch', '--version'], { cwd: dir, env: bareEnv, encoding: 'utf8' });
      expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
    } finally {
      serve.kill('SIGINT');
      await once(serve, 'exit');
    }
  });

  it('with a prebuild that cannot load here: the install succeeds and punch() has the same coded error, the load error as cause', T, () => {
    const tgz = variant('unloadable', (pkg) => cpSync(join(pkg, 'prebuilds/linux-arm64/tcp-punch.node'), join(pkg, 'prebuilds/linux-x64/tcp-punch.node')));
    const { dir, code, output } = install('unloadable-prebuild', tgz);
    expect(code, output).toBe(0);
    const r = run(dir, 'unavailable.mjs', UNAVAILABLE);
    expect(r).toMatchObject({ name: 'TcpPunchError', code: 'ERR_NATIVE_UNAVAILABLE', serverRan: true });
    expect(r.cause).toMatch(/ELF|wrong|cannot open shared object/i);
  });
});
