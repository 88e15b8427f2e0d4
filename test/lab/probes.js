// @ts-check
/**
 * Orchestration of the Python probes (probe.py) across lab namespaces. Used by lab.test.ts and
 * scenario.mjs; stands in for the library until Peer.dial is plugged into the lab.
 */
import readline from 'node:readline';

/**
 * @typedef {import('./topology.js').Lab} Lab
 * @typedef {import('node:child_process').ChildProcess} ChildProcess
 */

/** @param {string} host @param {number} port */
export function ep(host, port) {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** @param {string} s */
export function parseEp(s) {
  const m = /^\[(.+)\]:(\d+)$/.exec(s) ?? /^(.+):(\d+)$/.exec(s);
  if (!m) throw new Error(`bad endpoint ${s}`);
  return { host: /** @type {string} */ (m[1]), port: Number(m[2]) };
}

/**
 * Collects the JSON lines a probe prints, with a way to wait for one that matches.
 * @param {ChildProcess} child
 */
function jsonLines(child) {
  /** @type {any[]} */
  const events = [];
  /** @type {{ pred: (e: any) => boolean, resolve: (e: any) => void }[]} */
  let waiters = [];
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d) => {
    if (stderr.length < 16384) stderr += d;
  });
  if (child.stdout) {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let e;
      try {
        e = JSON.parse(line);
      } catch {
        return;
      }
      events.push(e);
      waiters = waiters.filter((w) => {
        if (!w.pred(e)) return true;
        w.resolve(e);
        return false;
      });
    });
  }
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  return {
    events,
    stderr: () => stderr,
    /**
     * @param {(e: any) => boolean} pred @param {number} timeoutMs @param {string} what
     * @returns {Promise<any>}
     */
    wait(pred, timeoutMs, what) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w.resolve !== done);
          reject(new Error(`probe: no ${what} within ${timeoutMs} ms${exited ? ' (probe exited)' : ''}; stderr: ${stderr.trim()}`));
        }, timeoutMs);
        /** @param {any} e */
        const done = (e) => {
          clearTimeout(timer);
          resolve(e);
        };
        waiters.push({ pred, resolve: done });
        child.once('exit', () =>
          setTimeout(() => {
            // give readline a tick to deliver the last lines
            if (waiters.some((w) => w.resolve === done)) {
              clearTimeout(timer);
              waiters = waiters.filter((w) => w.resolve !== done);
              reject(new Error(`probe: exited before ${what}; stderr: ${stderr.trim()}`));
            }
          }, 50),
        );
      });
    },
  };
}

/**
 * Runs one probe to completion and returns its last JSON event.
 * @param {Lab} lab @param {string} node @param {string[]} args @param {number} [timeoutMs]
 */
export async function probe(lab, node, args, timeoutMs = 30_000) {
  const child = lab.python(node, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const j = jsonLines(child);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await new Promise((r) => child.once('close', r));
  clearTimeout(timer);
  const last = j.events[j.events.length - 1];
  if (!last) throw new Error(`probe ${args[0]} in ${node} printed nothing; stderr: ${j.stderr().trim()}`);
  return last;
}

/**
 * Starts the observer (a TCP "what address do you come from" server) on the server host.
 * @param {Lab} lab @param {{ ports?: number[], ipv6?: boolean, node?: string, lifetimeS?: number }} [o]
 */
export async function startObserver(lab, o = {}) {
  const ports = o.ports ?? [7001, 7002];
  const args = ['observer', '--ports', ports.join(','), '--lifetime', String(o.lifetimeS ?? 600)];
  if (o.ipv6) args.push('--ipv6');
  const child = lab.python(o.node ?? 'server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const j = jsonLines(child);
  await j.wait((e) => e.event === 'ready', 5000, 'observer ready');
  return {
    ports,
    child,
    /** accept events: { local, from } */
    accepts: () => j.events.filter((e) => e.event === 'accept'),
    stop: () => {
      child.kill('SIGTERM');
    },
  };
}

/**
 * Connects from one local port of a peer host to several server endpoints (keeping each open) and
 * returns the public mapping the server saw for each. With holdS the connections (and so the NAT
 * mappings) stay open that long after this resolves.
 * @param {Lab} lab @param {string} who @param {number} lport @param {string[]} servers endpoints "ip:port"
 * @param {{ holdS?: number }} [o]
 * @returns {Promise<string[]>} observed "ip:port" per server (or "error:<ERRNO>")
 */
export async function observeMapping(lab, who, lport, servers, o = {}) {
  const args = ['observe', '--lport', String(lport), '--server', servers.join(','), '--hold', String(o.holdS ?? 0)];
  const child = lab.python(who, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const j = jsonLines(child);
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000 + (o.holdS ?? 0) * 1000);
  child.once('exit', () => clearTimeout(timer));
  const e = await j.wait((x) => x.event === 'observed', 15_000, `observed mapping of ${who}`);
  return e.results.map((/** @type {any} */ r) => r.observed ?? `error:${r.error}`);
}

/**
 * Sends a SYN from a node to ip:port and classifies the answer.
 * @param {Lab} lab @param {string} node @param {string} to "ip:port"
 * @param {{ sport?: number, timeoutS?: number }} [o]
 * @returns {Promise<{ outcome: 'connected'|'rst'|'icmp'|'timeout'|'error', errno?: string, icmp: { type: number, code: number, from: string, kind: string }[], ms: number }>}
 */
export function synProbe(lab, node, to, o = {}) {
  const args = ['synprobe', '--to', to, '--timeout', String(o.timeoutS ?? 2.5)];
  if (o.sport) args.push('--sport', String(o.sport));
  return probe(lab, node, args);
}

/**
 * Sends a SYN with a small TTL and reports which router answered with ICMP time-exceeded.
 * @param {Lab} lab @param {string} node @param {string} to @param {number} ttl
 * @returns {Promise<{ icmp: { type: number, code: number, from: string, kind: string }[] }>}
 */
export function ttlProbe(lab, node, to, ttl) {
  return probe(lab, node, ['ttl', '--to', to, '--ttl', String(ttl)]);
}

/**
 * TCP connect() round-trip samples from a node to a listener.
 * @param {Lab} lab @param {string} node @param {string} to @param {number} [count]
 * @returns {Promise<{ samples: number[], median: number | null }>}
 */
export function connectRtt(lab, node, to, count = 7) {
  return probe(lab, node, ['rtt', '--to', to, '--count', String(count)]);
}

/**
 * @param {Lab} lab @param {string} node @param {number} port
 */
export async function startUdpEcho(lab, node, port) {
  const child = lab.python(node, ['udpecho', '--port', String(port), '--lifetime', '300'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const j = jsonLines(child);
  await j.wait((e) => e.event === 'ready', 5000, 'udpecho ready');
  return { child, stop: () => child.kill('SIGTERM') };
}

/**
 * @param {Lab} lab @param {string} node @param {string} to
 * @param {{ count?: number, intervalMs?: number, waitS?: number }} [o]
 * @returns {Promise<{ sent: number, received: number, lost: number, inversions: number, rtt_median: number | null, rtt_min: number | null, rtt_max: number | null }>}
 */
export function udpPing(lab, node, to, o = {}) {
  return probe(lab, node, [
    'udpping', '--to', to, '--count', String(o.count ?? 100), '--interval', String(o.intervalMs ?? 5), '--wait', String(o.waitS ?? 1),
  ]);
}

/**
 * @typedef {{ ok: boolean, name: string, attempts: number, errors: string[], ms: number, via?: 'connect'|'accept',
 *   observed: string | null, peer: string, remote?: string, local?: string, got?: string }} PunchResult
 */

/**
 * Raw TCP simultaneous open between the two peer hosts with the Python probe, the way a punching
 * library would do it: each side listens on its port, learns its public mapping from the observer on
 * the server (connection kept open), the "rendezvous" (this function) swaps the mappings and a start
 * moment, and both connect() to each other at that moment, retrying on errors.
 *
 * @param {Lab} lab
 * @param {{ lportA?: number, lportB?: number, observerPort?: number, ipv6?: boolean,
 *   target?: 'public'|'private', startInMs?: number, skewMs?: number, timeoutS?: number, attemptTimeoutS?: number, retryGapS?: number,
 *   ttl?: number | 'auto' }} [o]
 *   target 'public': dial the peer's observed mapping (default); 'private': its LAN address (same-NAT case).
 *   skewMs: b starts this much later than a (a's first SYN then meets b's NAT before b's SYN has left).
 *   retryGapS: pause after a refused attempt (RST or ICMP killed the socket) before the next (default 0.2).
 *   ttl: IP TTL of each side's first, short SYN (opens the own mapping without reaching the peer's NAT);
 *   'auto': each peer's ttlToInternet (the SYN expires at the internet router).
 * @returns {Promise<{ a: PunchResult, b: PunchResult, observed: { a: string, b: string } }>}
 */
export async function rawPunch(lab, o = {}) {
  const lport = { a: o.lportA ?? 41000 + Math.floor(Math.random() * 10000), b: o.lportB ?? 0 };
  if (!lport.b) lport.b = lport.a + 1;
  const server = o.ipv6 ? lab.server.ip6 : lab.server.ip;
  const observer = ep(server, o.observerPort ?? 7001);
  /** @type {Record<'a'|'b', ChildProcess>} */
  const kids = /** @type {any} */ ({});
  /** @type {Record<'a'|'b', ReturnType<typeof jsonLines>>} */
  const lines = /** @type {any} */ ({});
  const timeoutS = o.timeoutS ?? 8;
  for (const who of /** @type {const} */ (['a', 'b'])) {
    const args = ['punch', '--name', who, '--lport', String(lport[who]), '--observe', observer, '--timeout', String(timeoutS)];
    if (o.ipv6) args.push('--ipv6');
    if (o.attemptTimeoutS) args.push('--attempt-timeout', String(o.attemptTimeoutS));
    if (o.retryGapS !== undefined) args.push('--retry-gap', String(o.retryGapS));
    const ttl = o.ttl === 'auto' ? lab.peers[who].ttlToInternet : o.ttl;
    if (ttl) args.push('--ttl', String(ttl));
    kids[who] = lab.python(who, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    lines[who] = jsonLines(kids[who]);
  }
  const guard = setTimeout(() => {
    kids.a.kill('SIGKILL');
    kids.b.kill('SIGKILL');
  }, (timeoutS + 20) * 1000);
  try {
    const [oa, ob] = await Promise.all([
      lines.a.wait((e) => e.event === 'observed', 10_000, 'observed mapping of a'),
      lines.b.wait((e) => e.event === 'observed', 10_000, 'observed mapping of b'),
    ]);
    if (!oa.observed || !ob.observed) throw new Error(`observe failed: a=${JSON.stringify(oa)} b=${JSON.stringify(ob)}`);
    const priv = (/** @type {'a'|'b'} */ who) => ep(o.ipv6 ? lab.peers[who].ip6 : lab.peers[who].ip, lport[who]);
    const target = {
      a: o.target === 'private' ? priv('b') : ob.observed,
      b: o.target === 'private' ? priv('a') : oa.observed,
    };
    const at = Date.now() + (o.startInMs ?? 200);
    kids.a.stdin?.end(JSON.stringify({ peer: target.a, at }) + '\n');
    kids.b.stdin?.end(JSON.stringify({ peer: target.b, at: at + (o.skewMs ?? 0) }) + '\n');
    const waitMs = (timeoutS + 10) * 1000;
    const [ra, rb] = await Promise.all([
      lines.a.wait((e) => e.event === 'result', waitMs, 'punch result of a'),
      lines.b.wait((e) => e.event === 'result', waitMs, 'punch result of b'),
    ]);
    return { a: ra, b: rb, observed: { a: oa.observed, b: ob.observed } };
  } finally {
    clearTimeout(guard);
    for (const k of [kids.a, kids.b]) if (k.exitCode === null && k.signalCode === null) k.kill('SIGTERM');
  }
}
