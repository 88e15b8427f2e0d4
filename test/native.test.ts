/**
 * The addon's argument handling, hit directly with arbitrary values: every call either works or throws a
 * TypeError/RangeError with an ERR_* code, or an errno-coded Error; nothing crashes and no fd is left open.
 * Run under ASan/UBSan with `npm run test:asan`.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { fdOf, kernelRttMs, requireNative } from '../lib/native.js';
import { openFds, settledFds } from './helpers/fds.js';

// `npm test` needs the addon: without it this file fails at once with ERR_NATIVE_UNAVAILABLE.
const binding = requireNative('test/native.test.ts');

const anyValue = fc.oneof(
  fc.anything(),
  fc.integer(),
  fc.double(),
  fc.string(),
  fc.constantFrom('127.0.0.1', '::1', '0.0.0.0', '999.1.1.1', 'fe80::1%9999999999', '', '::ffff:127.0.0.1'),
);
const endpoint = fc.record({ host: anyValue, port: fc.oneof(anyValue, fc.integer({ min: -5, max: 70_000 })) }, { requiredKeys: [] });

/** Valid values most of the time, so that many calls get past validation into the state machine. */
function mostly<T>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: other, weight: 1 });
}

function expectCleanThrow(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (err) {
    expect(err).toBeInstanceOf(Error);
    const code = (err as { code?: unknown }).code;
    expect(typeof code).toBe('string');
    expect(code as string).toMatch(/^(ERR_[A-Z_]+|E[A-Z0-9]+)$/);
    return undefined;
  }
}

describe('native argument handling', () => {
  let baseline = 0;
  beforeAll(() => {
    baseline = openFds();
  });
  afterAll(async () => {
    expect(await settledFds(baseline)).toBe(baseline);
  });

  it('socketBind takes any value without crashing', () => {
    fc.assert(
      fc.property(fc.oneof(endpoint, anyValue), anyValue, (local, listen) => {
        const bound = expectCleanThrow(() => binding.socketBind(local as never, listen as never)) as { fd: number } | undefined;
        if (bound) binding.socketClose(bound.fd);
      }),
      { numRuns: 500 },
    );
  });

  it('socketClose rejects what is not a descriptor', () => {
    for (const v of [undefined, null, 'x', -1, {}, Number.NaN]) expectCleanThrow(() => binding.socketClose(v as never));
  });

  it('socketRtt reads a connected socket and rejects what is not one with an errno code', async () => {
    for (const v of [undefined, null, 'x', -1, {}, Number.NaN]) expectCleanThrow(() => binding.socketRtt(v as never));
    expect(() => binding.socketRtt(2_000_000)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'getsockopt' }));
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    const [accepted] = (await once(server, 'connection')) as [Socket];
    try {
      await once(client, 'connect');
      // Both ends have the handshake's sample; kernelRttMs reads the same figure in ms.
      expect(binding.socketRtt(fdOf(client, 'client', 'ERR_TEST'))).toBeGreaterThan(0);
      expect(kernelRttMs(accepted)).toBeGreaterThan(0);
    } finally {
      client.destroy();
      accepted.destroy();
      await new Promise((r) => server.close(r));
    }
    expect(kernelRttMs(client)).toBeUndefined(); // closed: no descriptor
  });

  it('punchStart takes any options without crashing, and every started punch ends', async () => {
    const started: Promise<unknown>[] = [];
    fc.assert(
      fc.property(
        fc.record(
          {
            local: mostly(fc.constant({ host: '127.0.0.1', port: 0 }), endpoint),
            listenFd: mostly(fc.constant(-1), fc.integer({ min: -3, max: 100_000 })),
            listen: mostly(fc.boolean(), anyValue),
            targets: mostly(
              fc.array(fc.oneof(fc.constant({ host: '127.0.0.1', port: 9 }), endpoint), { minLength: 1, maxLength: 3 }),
              fc.oneof(anyValue, fc.array(endpoint, { maxLength: 20 })),
            ),
            timeoutMs: mostly(fc.integer({ min: 1, max: 100 }), fc.oneof(anyValue, fc.integer({ min: -1, max: 200 }))),
            retryMs: mostly(fc.integer({ min: -1, max: 50 }), anyValue),
            firstTtl: mostly(fc.integer({ min: 0, max: 255 }), fc.oneof(anyValue, fc.integer({ min: -1, max: 300 }))),
          },
          { requiredKeys: [] },
        ),
        fc.boolean(),
        (options, abort) => {
          let done!: () => void;
          const finished = new Promise<void>((resolve) => (done = resolve));
          const id = expectCleanThrow(() =>
            binding.punchStart(options as never, (err, res) => {
              if (!err) binding.socketClose(res.fd);
              done();
            }),
          );
          if (typeof id === 'number') {
            if (abort) binding.punchAbort(id);
            started.push(finished);
          }
        },
      ),
      { numRuns: 400 },
    );
    await Promise.all(started);
    expect(started.length).toBeGreaterThan(0);
  });

  it('punchAbort ignores unknown and finished ids', () => {
    for (const v of [0, 1, 2 ** 32 - 1, 123456]) binding.punchAbort(v);
    expectCleanThrow(() => binding.punchAbort('x' as never));
  });
});
