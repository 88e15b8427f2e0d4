// @ts-check
// One raw punch() inside a lab namespace (run by connectivity.test.ts): waits until `startAt` (Date.now() of the
// parent: one machine, one clock), punches, sends one line each way, and prints one JSON line with the outcome.
//
//   node test/lab/punch-child.mjs '{"localAddress":"2001:db8:1:1::2","localPort":41001,"family":6,
//     "remote":{"host":"2001:db8:2:1::2","port":41002},"timeoutMs":5000,"startAt":1700000000000}'
import { bindReusable, punchDetailed } from '../../dist/index.js';

const o = JSON.parse(process.argv[2] ?? '{}');
const print = (/** @type {any} */ r) => process.stdout.write(`${JSON.stringify(r)}\n`);

// Listen at once (before the other side's SYN can arrive), punch at the agreed moment.
const port = await bindReusable({ port: o.localPort, family: o.family, ...(o.localAddress ? { address: o.localAddress } : {}) });
await new Promise((r) => setTimeout(r, Math.max(0, (o.startAt ?? 0) - Date.now())));
try {
  const r = await punchDetailed({ port, remote: o.remote, timeoutMs: o.timeoutMs });
  // What the socket itself is bound to (the source address the other side saw), before it closes.
  const local = { host: r.socket.localAddress, port: r.socket.localPort };
  r.socket.end('hello\n');
  const got = await new Promise((resolve) => {
    let buf = '';
    r.socket.setEncoding('utf8').on('data', (d) => (buf += d)).on('end', () => resolve(buf)).on('error', () => resolve(buf));
  });
  print({
    ok: true,
    via: r.via,
    local,
    remote: r.remote,
    attempts: r.attempts,
    elapsedMs: r.elapsedMs,
    got,
  });
} catch (err) {
  const e = /** @type {any} */ (err);
  print({ ok: false, code: e.code ?? null, message: String(e.message ?? e) });
} finally {
  port.close();
}
