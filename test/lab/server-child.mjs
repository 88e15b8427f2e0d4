// @ts-check
// The library's rendezvous server inside the lab's server namespace, driven over the IPC channel of
// `lab.fork()`. Runs the compiled library (dist/).
//
//   node test/lab/server-child.mjs '<json ServerOptions>'     (started by test/lab/matrix-driver.js)
//
// To the parent: { type: 'ready', address } once listening, or { type: 'fatal', code, message }.
// From the parent: { type: 'stats', seq } → { type: 'stats', seq, stats }; { type: 'close' } → closes and exits.
import { startServer } from '../../dist/index.js';

// `probePorts` (not a ServerOptions field): the server's NAT probe listeners (`natProbe`), none when absent.
const { probePorts, ...options } = JSON.parse(process.argv[2] ?? '{}');
const send = (/** @type {any} */ msg) => {
  if (process.connected) process.send?.(msg);
};

let server;
try {
  server = await startServer({ ...options, natProbe: probePorts ? { ports: probePorts } : false });
} catch (err) {
  send({ type: 'fatal', code: /** @type {any} */ (err)?.code ?? null, message: String(/** @type {any} */ (err)?.message ?? err) });
  process.exit(1);
}

process.on('message', async (/** @type {any} */ msg) => {
  if (msg.type === 'stats') send({ type: 'stats', seq: msg.seq, stats: server.stats() });
  if (msg.type === 'close') {
    await Promise.race([server.close(), new Promise((r) => setTimeout(r, 2000))]).catch(() => undefined);
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', address: server.address() });
