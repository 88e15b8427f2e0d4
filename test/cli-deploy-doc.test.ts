/**
 * docs/DEPLOY.md's systemd units are valid: each `ini` block under a `/etc/systemd/system/NAME.service` heading
 * passes `systemd-analyze verify` (with `ExecStart=` pointed at this checkout's build, since the documented path
 * is where an install puts it). Skipped where systemd-analyze is not installed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DOC = fileURLToPath(new URL('../docs/DEPLOY.md', import.meta.url));
const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

describe('docs/DEPLOY.md', () => {
  const units = [...readFileSync(DOC, 'utf8').matchAll(/`\/etc\/systemd\/system\/([\w@-]+\.service)`:\n\n```ini\n([\s\S]*?)```/g)];

  it('documents a unit for the server and one for an exposing agent', () => {
    expect(units.map((m) => m[1])).toEqual(['tcp-punch-server.service', 'tcp-punch-expose.service']);
    for (const [, , body] of units) expect(body).toMatch(/^LoadCredential=secret:\/etc\/tcp-punch\/secret$/m);
  });

  it.skipIf(!hasAnalyze)('each unit passes systemd-analyze verify', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcp-punch-units-'));
    try {
      for (const [, name, body] of units) {
        const path = join(dir, name!);
        writeFileSync(path, body!.replaceAll('/usr/local/bin/tcp-punch', `${process.execPath} ${MAIN}`));
        const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
        expect(`${r.stdout}${r.stderr}`, name).toBe('');
        expect(r.status, name).toBe(0);
      }
      // The check itself can fail: an unknown key is reported.
      const bad = join(dir, 'bad.service');
      writeFileSync(bad, units[0]![2]!.replaceAll('/usr/local/bin/tcp-punch', process.execPath).replace('[Service]', '[Service]\nNoSuchKey=1'));
      const r = spawnSync('systemd-analyze', ['verify', bad], { encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`).toMatch(/Unknown key 'NoSuchKey'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
