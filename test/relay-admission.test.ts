/**
 * The relay's admission hook (RelayService.admission, lib/relay/admission.ts) on loopback, with a hook that answers
 * what the test tells it and records every call: a side is admitted or refused after the relay's own checks, a
 * refusal ends the session for both sides with the relay's own limit code, a hook that fails counts as `unknown`
 * (admitted), and every admitted side is released exactly once when its session ends, whatever the reason.
 */
import { once } from 'node:events';
import { connect } from 'node:net';

import { afterEach, describe, expect, it } from 'vitest';

import { encodeRelayFrame } from '../lib/relay/frames.js';
import type { RelayAdmissionHook, RelayAdmissionResult, RelayJoinSide } from '../lib/relay/admission.js';
import type { RelayLimits } from '../lib/relay/limits.js';
import { joinRelay } from '../lib/relay/relay-client.js';
import { listenRelay, type RelayListener } from '../lib/relay/relay-server.js';
import { RelayService } from '../lib/relay/relay-service.js';
import { until } from './helpers/poll.js';

const SECRET = 'relay-admission-secret-0123456789';

/** A hook whose answers the test sets per peer id; a peer without an answer is admitted (`ok`). */
class RecordingHook implements RelayAdmissionHook {
  readonly answers = new Map<string, RelayAdmissionResult | 'throw'>();
  readonly admitted: string[] = [];
  readonly released: string[] = [];
  /** Peer ids asked about, as soon as asked. */
  readonly asked: string[] = [];
  /** How long an answer takes (a Redis round trip): the relay goes on meanwhile. */
  delayMs = 5;
  async admit(s: RelayJoinSide): Promise<RelayAdmissionResult> {
    this.asked.push(s.peerId);
    await new Promise((r) => setTimeout(r, this.delayMs));
    const a = this.answers.get(s.peerId) ?? 'ok';
    if (a === 'throw') throw new Error('redis down');
    if (a === 'ok' || a === 'unknown') this.admitted.push(`${s.sessionId}/${s.side}/${s.peerId}/${s.ip}`);
    return a;
  }
  release(s: RelayJoinSide): void {
    this.released.push(`${s.sessionId}/${s.side}/${s.peerId}/${s.ip}`);
  }
}

const listeners: RelayListener[] = [];
afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.close()));
});

async function start(limits: Partial<RelayLimits> = {}) {
  const hook = new RecordingHook();
  const service = new RelayService({ secret: SECRET, admission: hook, limits });
  const listener = await listenRelay(service, { host: '127.0.0.1' });
  listeners.push(listener);
  const server = { host: '127.0.0.1', port: listener.address().port };
  const join = (token: string) => joinRelay({ server, token, timeoutMs: 5000 });
  const code = (token: string) => join(token).then((c) => (c.socket.destroy(), 'paired'), (e: { code: string }) => e.code);
  return { hook, service, server, join, code };
}

describe('relay admission hook', () => {
  it('refuses an admission option that is no hook, naming it', () => {
    expect(() => new RelayService({ secret: SECRET, admission: { admit: async () => 'ok' } as never })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', message: expect.stringContaining('options.admission') }),
    );
  });

  it('admits sides it accepts and releases each exactly once when the session ends', async () => {
    const { hook, service, join } = await start();
    const t = service.issueTokens({ a: 'alice', b: 'bob' });
    const [ca, cb] = await Promise.all([join(t.a), join(t.b)]);
    ca.socket.write('hi');
    const got = await new Promise<string>((r) => cb.socket.once('data', (d: Buffer) => r(d.toString())));
    expect(got).toBe('hi');
    expect(hook.admitted.sort()).toEqual([`${t.sessionId}/a/alice/127.0.0.1`, `${t.sessionId}/b/bob/127.0.0.1`]);
    expect(hook.released).toEqual([]);
    ca.socket.end();
    cb.socket.end();
    expect(await until(() => hook.released.length === 2)).toBe(true);
    expect(hook.released.sort()).toEqual(hook.admitted);
    expect(service.stats()).toMatchObject({ pending: 0, active: 0 });
  });

  it.each([
    ['peer', 'ERR_RELAY_LIMIT_PEER'],
    ['ip', 'ERR_RELAY_LIMIT_IP'],
  ] as const)("a '%s' refusal ends the session for both sides with %s and holds nothing", async (answer, expected) => {
    const { hook, service, join, code } = await start();
    hook.answers.set('bob', answer);
    const t = service.issueTokens({ a: 'alice', b: 'bob' });
    const first = join(t.a).then(() => 'paired', (e: { code: string }) => e.code);
    await until(() => service.stats().pending === 1); // alice waits, admitted
    expect(await code(t.b)).toBe(expected);
    expect(await first).toBe(expected); // the waiting side is refused too
    expect(hook.released).toEqual([`${t.sessionId}/a/alice/127.0.0.1`]); // only the admitted side
    expect(service.stats().rejected[expected]).toBe(2);
    // The relay's own counts were given back: bob can relay in a new session.
    hook.answers.delete('bob');
    const u = service.issueTokens({ a: 'alice', b: 'bob' });
    const [ca, cb] = await Promise.all([join(u.a), join(u.b)]);
    ca.socket.destroy();
    cb.socket.destroy();
  });

  it('sessions placed while a side waited for the hook count against maxSessions', async () => {
    const { hook, service, code } = await start({ maxSessions: 1, joinTimeoutMs: 500 });
    hook.delayMs = 100;
    const [s1, s2] = [service.issueTokens({ a: 'alice', b: 'bob' }), service.issueTokens({ a: 'carol', b: 'dave' })];
    // Both first sides pass the relay's own check (nothing pending yet); the one placed second finds the relay full,
    // the other waits for its partner until the join timeout.
    const codes = await Promise.all([code(s1.a), code(s2.a)]);
    expect(codes.sort()).toEqual(['ERR_RELAY_JOIN_TIMEOUT', 'ERR_RELAY_LIMIT_SESSIONS']);
    expect(await until(() => hook.released.length === 2)).toBe(true); // both were admitted by the hook, both released
    expect(service.stats()).toMatchObject({ pending: 0, active: 0 });
  });

  it('a hook that fails admits (unknown), and a side that left while it was asked is released', async () => {
    const { hook, service, server, join } = await start();
    hook.answers.set('alice', 'throw');
    const t = service.issueTokens({ a: 'alice', b: 'bob' });
    const [ca, cb] = await Promise.all([join(t.a), join(t.b)]);
    ca.socket.destroy();
    cb.socket.destroy();
    expect(await until(() => hook.released.length === 2)).toBe(true);

    // The first side closes before the hook answers: its session ends as peer-gone and the side is released.
    hook.delayMs = 300;
    const u = service.issueTokens({ a: 'carol', b: 'dave' });
    const ends: string[] = [];
    service.on('session-end', (e) => ends.push(`${e.reason} ${e.code}`));
    const s = connect({ host: '127.0.0.1', port: server.port });
    await once(s, 'connect');
    s.write(encodeRelayFrame('relay-join', { token: u.a }));
    await until(() => hook.asked.includes('carol'));
    s.destroy();
    expect(await until(() => ends.length === 1)).toBe(true);
    expect(ends).toEqual(['peer-gone ERR_RELAY_PEER_GONE']);
    expect(hook.released).toContain(`${u.sessionId}/a/carol/127.0.0.1`);
    expect(service.stats()).toMatchObject({ pending: 0, active: 0 });
  });
});
