/**
 * Fuzzing the two authentication exchanges that see network input, with an exact oracle: nobody is let in without
 * the key.
 *
 * - Control registration (hello → challenge → auth → welcome) against a live server, secret and open: the client
 *   side is generated (ids, nonces, proofs right and wrong, replays, proofs for another id or with the nonces
 *   swapped, messages out of order, silence, and structure-aware mutations of the hello and auth frames). The
 *   server must answer `welcome` exactly when the proof it decodes is the right one (open server: when the id is
 *   free or the proof matches the id's token), with a server proof that verifies, and otherwise one `error` with a
 *   documented code; a registered victim stays online throughout.
 * - Direct auth on a punched socket (lib/peer/handshake.ts): whatever the far side sends (its frame right or with
 *   any field wrong, reflected, replayed from another attempt, mutated, junk, nothing), directAuth resolves only
 *   for the exact expected frame and otherwise rejects with ERR_AUTH_FAILED, ETIMEDOUT or ECONNRESET.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Peer } from '../../lib/peer/peer.js';
import { directAuth } from '../../lib/peer/handshake.js';
import { clientProof, deriveIdKey, directMac, serverProof } from '../../lib/protocol/crypto.js';
import { FrameDecoder } from '../../lib/protocol/frame.js';
import { decodeMessage, encodeMessage } from '../../lib/protocol/messages.js';
import type { Message } from '../../lib/protocol/messages.js';
import type { RendezvousServer } from '../../lib/server/server.js';
import { socketPair } from '../helpers/pair.js';
import { LOOSE, addr, next, raw, server } from '../helpers/rendezvous.js';
import { record, scale } from '../reliability/summary.js';
import { mutate, opsArb, schemaStructured, type Structured } from './mutate.js';

const SECRET = 'fuzz-auth-secret';
const stats: Record<string, unknown> = {};

const CONTROL_CODES = new Set([
  'ERR_AUTH_FAILED', 'ERR_ID_TAKEN', 'ERR_UNEXPECTED_MESSAGE', 'ERR_MALFORMED_FRAME', 'ERR_UNKNOWN_TYPE', 'ERR_BAD_MAGIC',
  'ERR_UNSUPPORTED_VERSION', 'ERR_FRAME_TOO_LARGE', 'ERR_HANDSHAKE_TIMEOUT', 'ERR_INVALID_TOKEN', 'ERR_RELAY_TOKEN_INVALID',
  'ERR_MALFORMED_FRAME',
]);

type ProofKind = 'correct' | 'wrong-key' | 'random' | 'empty' | 'other-id' | 'swapped' | 'replay' | 'none' | 'hello-again' | 'ping';

const planArb = fc.record({
  id: fc.oneof(fc.constantFrom('victim', 'alice', 'bob'), fc.stringMatching(/^[\x21-\x7e]{1,64}$/)),
  nonce: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  helloOps: fc.option(opsArb, { freq: 2 }),
  proof: fc.constantFrom<ProofKind>('correct', 'correct', 'correct', 'wrong-key', 'random', 'empty', 'other-id', 'swapped', 'replay', 'none', 'hello-again', 'ping'),
  authOps: fc.option(opsArb, { freq: 2 }),
  other: fc.oneof(schemaStructured('ping'), schemaStructured('connect'), schemaStructured('auth'), schemaStructured('observe')),
});

/** A structured hello/auth (the mutator needs field boundaries). */
function structured(msg: Message): Structured {
  const wire = encodeMessage(msg);
  return { type: wire[3]!, name: msg.type, fields: [{ name: 'body', spec: { kind: 'bytes', len: wire.length - 6 }, bytes: wire.subarray(6) }] };
}

function fieldsOf(msg: Message): Structured {
  // Field-exact structure for the two handshake messages, so field-level mutations hit real field boundaries.
  const w = (b: Uint8Array | number[]): Buffer => Buffer.from(b);
  const str = (s: string): Buffer => Buffer.concat([w([Buffer.byteLength(s) >> 8, Buffer.byteLength(s) & 0xff]), Buffer.from(s)]);
  if (msg.type === 'hello')
    return {
      type: 0x01,
      name: 'hello',
      fields: [
        { name: 'id', spec: { kind: 'string', max: 64, pattern: /^[\x21-\x7e]{1,64}$/ }, bytes: str(msg.id) },
        { name: 'nonce', spec: { kind: 'bytes', len: 16 }, bytes: w(msg.nonce) },
        { name: 'software', spec: { kind: 'string', max: 64 }, bytes: str(msg.software) },
      ],
    };
  if (msg.type === 'auth')
    return { type: 0x03, name: 'auth', fields: [{ name: 'proof', spec: { kind: 'varbytes', lens: [0, 32] }, bytes: Buffer.concat([w([msg.proof.length]), w(msg.proof)]) }] };
  return structured(msg);
}

/**
 * What the server's decoder makes of bytes we send: the first message (undefined if there is none valid), and
 * whether bytes follow it. Bytes after a valid frame (1..3 of junk from the mutator, or a second frame) can never
 * combine with the next frame we send into a valid one: a header needs 'T' 'P' 1 and a type, and our next frame
 * starts with 'T' 'P' 1, so junk of 1, 2 or 3 bytes puts 'T' where the magic's 'P', the version or the type must
 * be: bad magic, bad version, unknown type 0x54.
 */
function localDecode(bytes: Buffer): { msg: Message | undefined; trailing: boolean } {
  const d = new FrameDecoder({ maxFrameSize: 4096 });
  try {
    d.write(bytes);
    const f = d.read();
    if (!f) return { msg: undefined, trailing: false };
    return { msg: decodeMessage(f), trailing: d.buffered !== 0 };
  } catch {
    return { msg: undefined, trailing: false };
  }
}

async function runControlFuzz(s: RendezvousServer, mode: 'secret' | 'open', victimToken: Uint8Array | undefined, numRuns: number) {
  const outcomes: Record<string, number> = {};
  let welcomes = 0;
  let recorded: { proof: Uint8Array } | undefined;
  const tokens = new Map<string, Uint8Array>(); // open mode: tokens issued to the fuzzer's own registrations
  if (victimToken) tokens.set('victim', victimToken);
  await fc.assert(
    fc.asyncProperty(planArb, async (plan) => {
      const sock = await raw(s);
      const count = (k: string): void => void (outcomes[k] = (outcomes[k] ?? 0) + 1);
      try {
        const helloMsg: Message = { type: 'hello', id: plan.id, nonce: plan.nonce, software: 'fuzz', private: [], warm: false };
        const helloBytes = plan.helloOps ? mutate(fieldsOf(helloMsg), plan.helloOps, plan.other).bytes : encodeMessage(helloMsg);
        const { msg: hello, trailing: helloJunk } = localDecode(helloBytes);
        sock.write(helloBytes);
        const first = await next(sock, 3000);
        if (hello?.type !== 'hello') {
          // Not a valid hello: the server must refuse (a valid other first frame is refused or routed elsewhere).
          expect(first?.type).not.toBe('challenge');
          if (first?.type === 'error') expect(CONTROL_CODES.has(first.code)).toBe(true);
          return count(`hello-invalid:${first?.type === 'error' ? first.code : first?.type ?? 'closed'}`);
        }
        if (helloJunk && first?.type === 'error') return count(`hello-junk:${first.code}`);
        expect(first?.type).toBe('challenge');
        if (first?.type !== 'challenge') return;
        const ns = first.nonce;
        const id = hello.id;
        const nc = hello.nonce;
        // The key this id really has, if the fuzzer knows it.
        let key: Uint8Array | undefined;
        if (mode === 'secret') key = id === 'victim' ? undefined : deriveIdKey(SECRET, id);
        else if (first.auth === 'token') key = id === 'victim' ? undefined : tokens.get(id);
        const expectedAuth = mode === 'secret' ? 'secret' : tokens.has(id) || id === 'victim' ? 'token' : first.auth;
        expect(first.auth).toBe(expectedAuth);
        let proof: Uint8Array;
        switch (plan.proof) {
          case 'correct':
            proof = key ? clientProof(key, ns, nc, id) : new Uint8Array(32).fill(3);
            break;
          case 'wrong-key':
            proof = clientProof(deriveIdKey('not-the-secret', id), ns, nc, id);
            break;
          case 'random':
            proof = plan.nonce.length === 16 ? Buffer.concat([plan.nonce, plan.nonce]) : new Uint8Array(32);
            break;
          case 'empty':
            proof = new Uint8Array(0);
            break;
          case 'other-id':
            proof = clientProof(deriveIdKey(SECRET, `${id}x`.slice(-64)), ns, nc, `${id}x`.slice(-64));
            break;
          case 'swapped':
            proof = key ? clientProof(key, Buffer.concat([nc, nc]), ns.subarray(0, 16), id) : new Uint8Array(32);
            break;
          case 'replay':
            proof = recorded?.proof ?? new Uint8Array(32);
            break;
          default:
            proof = new Uint8Array(0);
        }
        let sent: Message | undefined;
        let authJunk = false;
        if (plan.proof === 'none') {
          // Silence: the handshake deadline closes it.
        } else if (plan.proof === 'hello-again') {
          sock.write(encodeMessage(helloMsg));
        } else if (plan.proof === 'ping') {
          sock.write(encodeMessage({ type: 'ping', seq: 1, rttUs: 0 }));
        } else {
          const authMsg: Message = { type: 'auth', proof };
          const bytes = plan.authOps ? mutate(fieldsOf(authMsg), plan.authOps, plan.other).bytes : encodeMessage(authMsg);
          const local = localDecode(bytes);
          sent = helloJunk ? undefined : local.msg;
          authJunk = local.trailing;
          sock.write(bytes);
        }
        const reply = await next(sock, 3000);
        // The oracle: welcome exactly when the decoded proof is right.
        let entitled = false;
        if (sent?.type === 'auth') {
          if (mode === 'open' && first.auth === 'none') entitled = true;
          else if (key) entitled = Buffer.from(sent.proof).equals(clientProof(key, ns, nc, id));
        }
        // A frame pipelined behind the auth may be refused (ERR_UNEXPECTED_MESSAGE) when it arrives while the
        // registry is answering (open servers): the right proof then need not be welcomed, but a wrong one never is.
        if (entitled && authJunk && reply?.type === 'error') return count(`auth-pipelined:${reply.code}`);
        if (entitled) {
          expect(reply?.type).toBe('welcome');
          if (reply?.type !== 'welcome') return;
          welcomes++;
          const k = mode === 'secret' ? key! : first.auth === 'none' ? reply.token : key!;
          expect(Buffer.from(reply.proof).equals(serverProof(k, ns, nc, id))).toBe(true);
          if (mode === 'open' && first.auth === 'none') tokens.set(id, Uint8Array.from(reply.token));
          if (sent?.type === 'auth') recorded = { proof: sent.proof };
          return count('welcome');
        }
        expect(reply?.type).not.toBe('welcome');
        if (reply?.type === 'error') expect(CONTROL_CODES.has(reply.code)).toBe(true);
        count(reply?.type === 'error' ? reply.code : reply?.type ?? 'closed');
      } finally {
        sock.destroy();
      }
    }),
    { numRuns },
  );
  return { runs: numRuns, welcomes, outcomes };
}

describe('fuzz: control registration', () => {
  let secretServer: RendezvousServer;
  let openServer: RendezvousServer;
  let victims: Peer[] = [];
  beforeAll(async () => {
    secretServer = await server({ ...LOOSE, secret: SECRET, handshakeTimeoutMs: 150 });
    openServer = await server({ ...LOOSE, handshakeTimeoutMs: 150 });
    victims = [
      await Peer.connect({ server: addr(secretServer), id: 'victim', idKey: deriveIdKey(SECRET, 'victim') }),
      await Peer.connect({ server: addr(openServer), id: 'victim' }),
    ];
  });
  afterAll(async () => {
    for (const v of victims) await v.close();
    await secretServer.close();
    await openServer.close();
  });

  it('secret server: welcome exactly for the right proof, a documented error otherwise', async () => {
    stats.secret = await runControlFuzz(secretServer, 'secret', undefined, scale(250, 5000));
    expect(victims[0]!.online).toBe(true);
    expect((stats.secret as { welcomes: number }).welcomes).toBeGreaterThan(0);
  });

  it('open server: welcome for a free id or the holder of its token, a documented error otherwise', async () => {
    stats.open = await runControlFuzz(openServer, 'open', victims[1]!.token, scale(250, 5000));
    expect(victims[1]!.online).toBe(true);
  });
});

describe('fuzz: direct auth on a punched socket', () => {
  it('accepts only the exact expected frame', async () => {
    const outcomes: Record<string, number> = {};
    const pairKey = Buffer.alloc(32, 5);
    const coordId = Buffer.alloc(16, 6);
    const nonce = Buffer.alloc(16, 7);
    const attempt = 2;
    const good = (): Message => ({ type: 'direct-auth', coordId, attempt, role: 'responder', mac: directMac(pairKey, coordId, attempt, 'responder', nonce) });
    const variant = fc.oneof(
      fc.constant({ kind: 'exact', bytes: encodeMessage(good()) }),
      fc.constant({ kind: 'reflected', bytes: encodeMessage({ ...good(), role: 'initiator', mac: directMac(pairKey, coordId, attempt, 'initiator', nonce) } as Message) }),
      fc.constant({ kind: 'other-attempt', bytes: encodeMessage({ ...good(), attempt: 1, mac: directMac(pairKey, coordId, 1, 'responder', nonce) } as Message) }),
      fc.constant({ kind: 'wrong-key', bytes: encodeMessage({ ...good(), mac: directMac(Buffer.alloc(32, 9), coordId, attempt, 'responder', nonce) } as Message) }),
      fc.constant({ kind: 'other-nonce', bytes: encodeMessage({ ...good(), mac: directMac(pairKey, coordId, attempt, 'responder', Buffer.alloc(16, 8)) } as Message) }),
      fc.constant({ kind: 'nothing', bytes: Buffer.alloc(0) }),
      fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => ({ kind: 'junk', bytes: Buffer.from(b) })),
      fc.tuple(schemaStructured('direct-auth'), opsArb, schemaStructured('ping')).map(([s, ops, o]) => ({ kind: 'mutated-any', bytes: mutate(s, ops, o).bytes })),
      fc.tuple(opsArb, schemaStructured('ping')).map(([ops, o]) => {
        const g = good() as Extract<Message, { type: 'direct-auth' }>;
        const s: Structured = {
          type: 0x30,
          name: 'direct-auth',
          fields: [
            { name: 'coordId', spec: { kind: 'bytes', len: 16 }, bytes: Buffer.from(g.coordId) },
            { name: 'attempt', spec: { kind: 'u8' }, bytes: Buffer.from([g.attempt]) },
            { name: 'role', spec: { kind: 'enum', values: ['initiator', 'responder'] }, bytes: Buffer.from([1]) },
            { name: 'mac', spec: { kind: 'bytes', len: 32 }, bytes: Buffer.from(g.mac) },
          ],
        };
        return { kind: 'mutated-good', bytes: mutate(s, ops, o).bytes };
      }),
    );
    await fc.assert(
      fc.asyncProperty(variant, fc.boolean(), async (v, close) => {
        const [a, b] = await socketPair();
        a.on('error', () => undefined);
        b.on('error', () => undefined);
        a.on('data', () => undefined);
        if (close) a.end(v.bytes);
        else a.write(v.bytes);
        let code = 'ok';
        try {
          await directAuth(b, { pairKey, coordId, attempt, role: 'initiator', nonce, timeoutMs: 150 });
        } catch (err) {
          code = (err as { code: string }).code;
        }
        a.destroy();
        b.destroy();
        outcomes[`${v.kind}:${code}`] = (outcomes[`${v.kind}:${code}`] ?? 0) + 1;
        // Bytes after the frame are the application's (left in the socket): only the frame itself must be exact.
        const exact = v.bytes.subarray(0, encodeMessage(good()).length).equals(encodeMessage(good()));
        if (exact) expect(code).toBe('ok');
        else expect(['ERR_AUTH_FAILED', 'ETIMEDOUT', 'ECONNRESET']).toContain(code);
      }),
      { numRuns: scale(250, 5000) },
    );
    stats.directAuth = { runs: scale(250, 5000), outcomes };
    record('fuzz-auth', 'auth', stats);
  });
});
