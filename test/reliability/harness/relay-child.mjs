// @ts-check
// A standalone relay (RelayService + listenRelay, lib/relay) in a process of its own, for the "relay dies
// mid-session" fault: the test joins both sides with joinRelay() and then kills this process.
//
//   node relay-child.mjs '{}'
//
// To the parent: { type: 'ready', port }. From the parent: { type: 'issue', seq, a, b } -> { a, b } tokens;
// { type: 'stats', seq } -> the service's stats.
const { RelayService, listenRelay } = await import('../../../dist/index.js');

const send = (/** @type {any} */ msg) => {
  if (process.connected) process.send?.(msg);
};
const service = new RelayService({ secret: 'relay-child-secret-0123456789abcdef' });
const listener = await listenRelay(service, { host: '127.0.0.1' });
process.on('message', (/** @type {any} */ msg) => {
  if (msg.type === 'issue') {
    const t = service.issueTokens({ a: msg.a, b: msg.b });
    send({ type: 'reply', seq: msg.seq, a: t.a, b: t.b });
  } else if (msg.type === 'stats') {
    send({ type: 'reply', seq: msg.seq, stats: service.stats() });
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', port: listener.address().port });
