/**
 * When the relay ends a tunnel's session (here its byte limit), both sides' `tunnel closed` report the relay's
 * reason and code, not the reset it caused, however the reset and the relay's notice race (real processes,
 * several tunnels in a row).
 */
import { describe, expect, it } from 'vitest';
import type { CliProcess } from './helpers/cli.js';
import { client, connectTo, expose, freePort, serve, until, useRig } from './helpers/tunnel-rig.js';

const { track, echo: trackedEcho } = useRig();
const closes = (p: CliProcess) => p.events.filter((e) => e.event === 'tunnel-close');

describe('a relayed tunnel the relay ends', () => {
  it.each([
    ['zero-copy', []],
    ['encrypted', ['--key', 'k-limit']],
  ])('%s: both sides report limit-bytes (ERR_RELAY_LIMIT_BYTES), for every tunnel', async (_name, keyArgs) => {
    const echo = await trackedEcho();
    const serverPort = await freePort();
    await track(serve(serverPort, ['--relay-max-bytes', '256k'])).waitFor('listening');
    const exposer = track(expose(serverPort, 'svc', echo.port, keyArgs));
    await exposer.waitFor('exposing');
    const connector = track(connectTo(serverPort, 'svc', ['--strategy', 'relay', ...keyArgs]));
    const port = (await connector.waitFor('listening')).port as number;
    const TUNNELS = 3;
    for (let i = 0; i < TUNNELS; i++) expect(await client(port, 2 * 1024 * 1024)).toMatchObject({ ok: false });
    expect(await until(() => closes(connector).length >= TUNNELS && closes(exposer).length >= TUNNELS, 15_000)).toBe(true);
    for (const e of [...closes(connector), ...closes(exposer)]) {
      expect(e).toMatchObject({ path: 'relay', reason: 'limit-bytes', error: 'ERR_RELAY_LIMIT_BYTES' });
    }
  });
});
