// @ts-check
/**
 * NAT lab: real Linux NATs in network namespaces.
 *
 * createLab(spec) builds, with `ip netns`, veth pairs and iptables (nft backend):
 *
 *   peer a host ── NAT a ──┐                    ┌── NAT b ── peer b host
 *   (10.1.0.2)  (198.18.1.2)│                    │(198.18.2.2)  (10.2.0.2)
 *                         internet router (inet) ── server (198.18.0.2)
 *
 * Every address lives only inside namespaces the lab creates; no namespace has
 * a link to the host's own namespace, so nothing can be routed to or from it.
 * See docs/LAB.md for the address plan and each behaviour's rules.
 *
 * Plain JavaScript with JSDoc (types in topology.d.ts) so that vitest tests and
 * a plain `node test/lab/scenario.mjs` can both use it.
 */
import { spawn as cpSpawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const LAB_DIR = HERE;
export const PROBE_PY = path.join(HERE, 'probe.py');
export const DELAY_SRC = path.join(HERE, 'nfq-delay.c');
export const DELAY_BIN = path.join(HERE, '.build', 'nfq-delay');

/** Namespace names are `tpl<pid>-<n>-<node>`; interface names are short and per namespace. */
export const LAB_PREFIX = 'tpl';
const NS_RE = /^tpl(\d+)-(\d+)-[a-z0-9-]+$/;

/** @type {readonly string[]} */
export const BEHAVIOURS = Object.freeze(['cone', 'cone-rst', 'cone-icmp', 'symmetric', 'full-cone', 'dmz', 'public', 'open', 'cgnat']);
const NAT_LIKE = new Set(['cone', 'cone-rst', 'cone-icmp', 'symmetric', 'full-cone', 'dmz']);
// NATs that forward unsolicited inbound TCP to their one LAN host (endpoint-independent filtering).
const FORWARDING = new Set(['full-cone', 'dmz']);

// Queue numbers of the delay programs, one per internet-router link.
const QUEUE = { s0: 10, pa: 11, pb: 12 };

// ------------------------------------------------------------------ helpers

/**
 * Runs a command (no shell) and collects its output.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ input?: string, timeoutMs?: number, env?: NodeJS.ProcessEnv }} [opts]
 * @returns {Promise<{ stdout: string, stderr: string, code: number | null, signal: NodeJS.Signals | null }>}
 */
function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = cpSpawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    const cap = 8 << 20;
    child.stdout.setEncoding('utf8').on('data', (d) => {
      if (stdout.length < cap) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      if (stderr.length < cap) stderr += d;
    });
    /** @type {NodeJS.Timeout | undefined} */
    let timer;
    if (opts.timeoutMs) {
      timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
      timer.unref();
    }
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ stdout, stderr, code, signal });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/**
 * Like run() but throws with the command's stderr when it fails.
 * @param {string} cmd @param {string[]} args @param {{ input?: string, timeoutMs?: number }} [opts]
 */
async function must(cmd, args, opts = {}) {
  const r = await run(cmd, args, { timeoutMs: 20_000, ...opts });
  if (r.code !== 0) {
    const shown = opts.input ? `\n--- input ---\n${opts.input}` : '';
    throw new Error(`lab: \`${cmd} ${args.join(' ')}\` failed (${r.code ?? r.signal}): ${r.stderr.trim()}${shown}`);
  }
  return r;
}

/** @param {string} name */
function findExecutable(name) {
  if (name.includes('/')) return fs.existsSync(name) ? name : null;
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {}
  }
  return null;
}

/** The Python used for probes: Debian's own if present (no shim start-up cost), else python3 on PATH. */
export function pythonPath() {
  return findExecutable('/usr/bin/python3') ?? findExecutable('python3') ?? 'python3';
}

/** @param {number} pid */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return /** @type {NodeJS.ErrnoException} */ (e).code === 'EPERM';
  }
}

/**
 * What the lab needs on this machine.
 * @param {{ delay?: boolean, hairpin?: boolean }} [need] also check the delay tool's build deps / nft
 * @returns {{ ok: boolean, missing: string[] }}
 */
export function labPrerequisites(need = {}) {
  const missing = [];
  if (process.platform !== 'linux') missing.push('linux');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) missing.push('root');
  for (const c of ['ip', 'iptables-restore', 'ip6tables-restore', 'iptables', 'sysctl']) {
    if (!findExecutable(c)) missing.push(c);
  }
  if (!findExecutable('/usr/bin/python3') && !findExecutable('python3')) missing.push('python3');
  if (need.hairpin && !findExecutable('nft')) missing.push('nft (apt: nftables)');
  if (need.delay) {
    if (!findExecutable('gcc') && !fs.existsSync(DELAY_BIN)) missing.push('gcc');
    if (!fs.existsSync('/usr/include/libnetfilter_queue/libnetfilter_queue.h') && !fs.existsSync(DELAY_BIN)) {
      missing.push('libnetfilter_queue headers (apt: libnetfilter-queue-dev)');
    }
  }
  return { ok: missing.length === 0, missing };
}

/**
 * Builds test/lab/.build/nfq-delay from nfq-delay.c when the binary is missing or older than the source.
 * Safe to call from several processes at once (build to a temp name, then rename).
 * @returns {Promise<string>} path of the binary
 */
export async function buildDelayTool() {
  const srcTime = fs.statSync(DELAY_SRC).mtimeMs;
  try {
    if (fs.statSync(DELAY_BIN).mtimeMs >= srcTime) return DELAY_BIN;
  } catch {}
  fs.mkdirSync(path.dirname(DELAY_BIN), { recursive: true });
  const tmp = `${DELAY_BIN}.tmp-${process.pid}`;
  await must('gcc', ['-O2', '-Wall', '-o', tmp, DELAY_SRC, '-lnetfilter_queue'], { timeoutMs: 60_000 });
  fs.renameSync(tmp, DELAY_BIN);
  return DELAY_BIN;
}

// ------------------------------------------------------- stale lab cleanup

/** @param {string} ns */
function killNamespacePidsSync(ns) {
  let out = '';
  try {
    out = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return;
  }
  for (const s of out.split(/\s+/)) {
    const pid = Number(s);
    if (pid > 1 && pid !== process.pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  }
}

/** Kills every process inside the given namespaces, then deletes them. Synchronous: usable from 'exit'. @param {string[]} names */
function sweepSync(names) {
  for (const ns of names) killNamespacePidsSync(ns);
  for (const ns of names) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {}
  }
}

function listNamespacesSync() {
  let out = '';
  try {
    out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return [];
  }
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/** Names of all namespaces that look like the lab's. */
export function listLabNamespaces() {
  return listNamespacesSync().filter((n) => NS_RE.test(n));
}

/**
 * Removes leftovers of crashed runs: every lab namespace (and the processes in it) whose owning
 * process is gone; with `all: true`, every lab namespace not owned by a live lab of this process.
 * @param {{ all?: boolean }} [opts]
 * @returns {string[]} the namespaces removed
 */
export function cleanupStaleLabs(opts = {}) {
  const mine = new Set();
  for (const lab of activeLabs) for (const n of lab._namespaces) mine.add(n);
  const stale = [];
  for (const n of listLabNamespaces()) {
    if (mine.has(n)) continue;
    const m = NS_RE.exec(n);
    if (!m) continue;
    const owner = Number(m[1]);
    if (opts.all || (owner !== process.pid && !alive(owner))) stale.push(n);
  }
  sweepSync(stale);
  return stale;
}

// ---------------------------------------------------------- exit handlers

/** @type {Set<Lab>} */
const activeLabs = new Set();
let handlersInstalled = false;
let labCounter = 0;
let staleChecked = false;

function sweepAllActiveSync() {
  for (const lab of activeLabs) lab._sweepSync();
  activeLabs.clear();
}

function installExitHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', sweepAllActiveSync);
  for (const sig of /** @type {NodeJS.Signals[]} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
    const onSignal = () => {
      sweepAllActiveSync();
      process.removeListener(sig, onSignal);
      // Nobody else handles it: die from the signal as we would have without this handler.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

// ------------------------------------------------------------------- spec

/**
 * @typedef {'cone'|'cone-rst'|'cone-icmp'|'symmetric'|'full-cone'|'dmz'|'public'|'open'|'cgnat'} Behaviour
 * @typedef {{ delayMs?: number, jitterMs?: number, lossPct?: number, reorder?: boolean }} LinkShape
 * @typedef {LinkShape & { nat: Behaviour, icmp?: 'port'|'admin', cgn?: 'cone'|'symmetric', home?: Behaviour,
 *   ipv6?: boolean }} PeerSpec
 * @typedef {{ a: Behaviour | PeerSpec, b?: Behaviour | PeerSpec, sameNat?: boolean, hairpin?: boolean,
 *   server?: LinkShape, ipv6?: boolean, seed?: number, delayMax?: number, fastOpen?: boolean }} LabSpec
 */

/** @param {Behaviour | PeerSpec | undefined} p @param {string} who */
function normPeer(p, who) {
  /** @type {PeerSpec} */
  const s = typeof p === 'string' ? { nat: p } : p ? { ...p } : { nat: 'cone' };
  if (!BEHAVIOURS.includes(s.nat)) throw new Error(`lab: peer ${who}: unknown behaviour ${s.nat}`);
  if (s.nat === 'cgnat') {
    s.home = s.home ?? 'cone';
    s.cgn = s.cgn ?? 'cone';
    if (!NAT_LIKE.has(s.home)) throw new Error(`lab: peer ${who}: cgnat home NAT must be a NAT behaviour, got ${s.home}`);
  }
  if (s.nat === 'cone-icmp' || s.home === 'cone-icmp') s.icmp = s.icmp ?? 'port';
  for (const k of /** @type {const} */ (['delayMs', 'jitterMs', 'lossPct'])) {
    const v = s[k];
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && Number.isFinite(v))) throw new Error(`lab: ${who}.${k} must be >= 0`);
  }
  if ((s.lossPct ?? 0) > 100) throw new Error(`lab: ${who}.lossPct must be <= 100`);
  return s;
}

/** @param {LinkShape | undefined} l */
function hasShape(l) {
  return !!l && ((l.delayMs ?? 0) > 0 || (l.jitterMs ?? 0) > 0 || (l.lossPct ?? 0) > 0);
}

// ---------------------------------------------------------------- rules

/**
 * iptables target for unsolicited inbound TCP.
 * @param {Behaviour} b @param {'port'|'admin'|undefined} icmp @param {4|6} v
 */
function unsolicitedTarget(b, icmp, v) {
  if (b === 'cone-rst') return 'REJECT --reject-with tcp-reset';
  if (b === 'cone-icmp') {
    if (v === 4) return `REJECT --reject-with ${icmp === 'admin' ? 'icmp-admin-prohibited' : 'icmp-port-unreachable'}`;
    return `REJECT --reject-with ${icmp === 'admin' ? 'icmp6-adm-prohibited' : 'icmp6-port-unreachable'}`;
  }
  return 'DROP';
}

/**
 * Filter + nat rules of a home NAT / firewall router with interfaces `wan` and `lan`.
 * @param {{ behaviour: Behaviour, icmp?: 'port'|'admin', lanNet: string, v: 4|6, hairpin?: boolean, natPub?: string,
 *   host?: string }} o
 *   hairpin: only for the same-NAT router (true/false); undefined for a router with one host
 *   host: the one LAN host (full-cone and dmz forward inbound TCP to it)
 */
function routerRules(o) {
  const { behaviour: b, v } = o;
  const icmpProto = v === 4 ? 'icmp' : 'ipv6-icmp';
  const L = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]'];
  if (b === 'open') {
    L.splice(2, 1, ':FORWARD ACCEPT [0:0]');
    L.push('COMMIT');
    return L.join('\n') + '\n';
  }
  // The router itself: reachable from the LAN, answers pings and ICMP (v6: neighbour discovery), else like the NAT.
  L.push('-A INPUT -i lo -j ACCEPT');
  L.push('-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT');
  L.push('-A INPUT -m conntrack --ctstate INVALID -j DROP');
  L.push(`-A INPUT -p ${icmpProto} -j ACCEPT`);
  if (o.hairpin === false && o.natPub && v === 4) {
    // same-NAT without hairpinning: a LAN host dialing the NAT's public address gets nothing back
    L.push(`-A INPUT -i lan -d ${o.natPub} -p tcp -j DROP`);
  }
  L.push('-A INPUT -i lan -j ACCEPT');
  // Unsolicited inbound TCP (no conntrack entry): dropped, or answered per behaviour. A stateful firewall
  // ('public') always drops. IPv4 NAT: it is addressed to the router itself (INPUT), since nothing maps it.
  // IPv6 (no translation): it is addressed to the host (FORWARD).
  const unsolicited = b === 'public' ? 'DROP' : unsolicitedTarget(b, o.icmp, v);
  L.push(`-A INPUT -i wan -p tcp -j ${unsolicited}`);
  L.push('-A INPUT -i wan -j DROP');
  // Forwarding: stateful. Crossing SYNs are fine: our outbound SYN created the entry, theirs is its reply.
  L.push('-A FORWARD -m conntrack --ctstate INVALID -j DROP');
  L.push('-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT');
  L.push('-A FORWARD -i lan -o wan -j ACCEPT');
  // Inbound the NAT translated towards the host on purpose (a port forward, or a full-cone mapping).
  if (v === 4 && FORWARDING.has(b)) L.push('-A FORWARD -i wan -o lan -m conntrack --ctstate DNAT -j ACCEPT');
  // Same-NAT LAN: traffic between the two hosts (bridged; br_netfilter may show it to FORWARD) and,
  // with hairpinning, host → public mapping → host.
  if (o.hairpin !== undefined) L.push('-A FORWARD -i lan -o lan -j ACCEPT');
  if (v === 6 || b === 'public') L.push(`-A FORWARD -i wan -p tcp -j ${unsolicited}`);
  L.push('COMMIT');
  if (v === 4 && NAT_LIKE.has(b)) {
    L.push('*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]');
    // A DMZ host (a port forward of every TCP port): whatever arrives unsolicited goes to the host.
    if (b === 'dmz') L.push(`-A PREROUTING -i wan -p tcp -j DNAT --to-destination ${forwardTo(o)}`);
    L.push(`-A POSTROUTING -o wan -s ${o.lanNet} -j MASQUERADE${b === 'symmetric' ? ' --random-fully' : ''}`);
    L.push('COMMIT');
  }
  return L.join('\n') + '\n';
}

/** The LAN host a forwarding NAT sends inbound to. @param {{ behaviour: Behaviour, host?: string }} o */
function forwardTo(o) {
  if (!o.host) throw new Error(`lab: a ${o.behaviour} router needs its one LAN host`);
  return o.host;
}

/**
 * Full-cone NAT (endpoint-independent mapping and filtering, RFC 4787 terms) on top of the port-preserving
 * MASQUERADE: learn each public port the host's connections leave from, then forward any inbound TCP SYN to such a
 * port to the host, whoever sends it. Linux conntrack alone filters per remote endpoint; this set is the "cone".
 * @param {string} host the LAN host
 */
function fullConeNft(host) {
  return [
    'table ip tpl_fullcone {',
    '  set mapped { type inet_service; flags timeout; timeout 30m; size 65536; }',
    '  chain learn {',
    '    type filter hook postrouting priority 200; policy accept;',
    `    oifname "wan" meta l4proto tcp ct original ip saddr ${host} update @mapped { tcp sport }`,
    '  }',
    '  chain pre {',
    '    type nat hook prerouting priority -110; policy accept;',
    `    iifname "wan" tcp dport @mapped dnat to ${host}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * Carrier-grade NAT: interfaces `wan` (internet) and `in` (100.64.0.0/10 side). Drops unsolicited inbound silently.
 * @param {'cone'|'symmetric'} mapping @param {string} insideNet
 */
function cgnRules(mapping, insideNet) {
  return [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A INPUT -i lo -j ACCEPT',
    '-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A INPUT -p icmp -j ACCEPT',
    '-A INPUT -i in -j ACCEPT',
    '-A INPUT -i wan -j DROP',
    '-A FORWARD -m conntrack --ctstate INVALID -j DROP',
    '-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A FORWARD -i in -o wan -j ACCEPT',
    'COMMIT',
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    `-A POSTROUTING -o wan -s ${insideNet} -j MASQUERADE${mapping === 'symmetric' ? ' --random-fully' : ''}`,
    'COMMIT',
    '',
  ].join('\n');
}

/**
 * Internet router: plain forwarding, no conntrack; drops (and counts) packets with private or CGNAT
 * addresses that would otherwise leak onto the "internet"; queues shaped links to nfq-delay.
 * @param {{ ifname: string, queue: number }[]} shaped
 */
function inetRules(shaped) {
  const L = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':LEAK - [0:0]'];
  for (const net of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10']) {
    L.push(`-A FORWARD -s ${net} -j LEAK`, `-A FORWARD -d ${net} -j LEAK`);
  }
  L.push('-A LEAK -j DROP', 'COMMIT', ...shapeRules(shaped));
  return L.join('\n') + '\n';
}

/** IPv6 side of the internet router: no addresses to police, the same shaped links. @param {{ ifname: string, queue: number }[]} shaped */
function inet6Rules(shaped) {
  const L = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', 'COMMIT', ...shapeRules(shaped)];
  return L.join('\n') + '\n';
}

/**
 * The mangle table that hands every packet of a shaped link, both ways, to its nfq-delay queue. The same lines
 * serve iptables-restore and ip6tables-restore.
 * @param {{ ifname: string, queue: number }[]} shaped
 */
function shapeRules(shaped) {
  if (!shaped.length) return [];
  const L = ['*mangle', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]'];
  for (const s of shaped) {
    L.push(`-A PREROUTING -i ${s.ifname} -j NFQUEUE --queue-num ${s.queue}`);
    L.push(`-A POSTROUTING -o ${s.ifname} -j NFQUEUE --queue-num ${s.queue}`);
  }
  L.push('COMMIT');
  return L;
}

/**
 * nftables hairpinning for a port-preserving NAT with two LAN hosts: learn which host owns each public
 * port as its connections leave through `wan`, then DNAT LAN→public:port to that host and SNAT the
 * hairpinned flow to the public address (so the target sees the sender's public mapping, RFC 5382 REQ-8).
 * @param {string} natPub @param {string} lanNet @param {{ ip: string, set: string }[]} hosts
 */
function hairpinNft(natPub, lanNet, hosts) {
  const L = ['table ip tpl_hairpin {'];
  for (const h of hosts) L.push(`  set ${h.set} { type inet_service; flags timeout; timeout 30m; size 65536; }`);
  L.push('  chain learn {', '    type filter hook postrouting priority 200; policy accept;');
  for (const h of hosts) {
    L.push(`    oifname "wan" meta l4proto tcp ct original ip saddr ${h.ip} update @${h.set} { tcp sport }`);
  }
  L.push('  }', '  chain pre {', '    type nat hook prerouting priority -110; policy accept;');
  for (const h of hosts) L.push(`    iifname "lan" ip daddr ${natPub} tcp dport @${h.set} dnat to ${h.ip}`);
  L.push('  }', '  chain post {', '    type nat hook postrouting priority 90; policy accept;');
  L.push(`    oifname "lan" ct status dnat ip saddr ${lanNet} snat to ${natPub}`);
  L.push('  }', '}', '');
  return L.join('\n');
}

// ------------------------------------------------------------------- plan

/**
 * @typedef {{ key: string, ns: string, router: boolean, ipv4?: string[], routes: string[], routes6: string[],
 *   rules4?: string, rules6?: string, nft?: string, noV6?: boolean }} NodePlan
 * @typedef {{ a: [string, string], b: [string, string], addrA?: string, addrB?: string, addr6A?: string, addr6B?: string }} LinkPlan
 */

/**
 * @param {string} prefix @param {LabSpec} spec
 */
function planLab(prefix, spec) {
  const ipv6 = !!spec.ipv6;
  const sameNat = !!spec.sameNat;
  const pa = normPeer(spec.a, 'a');
  const pb = sameNat ? { ...pa, ...(typeof spec.b === 'object' ? spec.b : {}), nat: pa.nat } : normPeer(spec.b, 'b');
  if (sameNat && (!NAT_LIKE.has(pa.nat) || FORWARDING.has(pa.nat))) {
    throw new Error(`lab: sameNat needs a NAT behaviour that forwards nothing, got ${pa.nat}`);
  }
  if (sameNat && spec.b !== undefined && (typeof spec.b === 'string' ? spec.b : spec.b.nat) !== pa.nat) {
    throw new Error('lab: sameNat: a and b share one NAT, give the behaviour once (in a)');
  }

  /** @type {Map<string, NodePlan>} */
  const nodes = new Map();
  /** @param {string} key @param {boolean} router @returns {NodePlan} */
  const node = (key, router) => {
    /** @type {NodePlan} */
    const n = { key, ns: `${prefix}-${key}`, router, routes: [], routes6: [] };
    nodes.set(key, n);
    return n;
  };
  /** @type {{ ns: string, cmds: string[] }[]} */
  const ipCmds = []; // per-namespace `ip -batch` lines, in order
  /** @param {NodePlan} n @param {string} line */
  const ipc = (n, line) => {
    let e = ipCmds.find((x) => x.ns === n.ns);
    if (!e) ipCmds.push((e = { ns: n.ns, cmds: [] }));
    e.cmds.push(line);
  };
  /** @type {{ ns: string, args: string[] }[]} veth / bridge creation, run in order */
  const linkCmds = [];
  /**
   * @param {NodePlan} n1 @param {string} if1 @param {NodePlan} n2 @param {string} if2
   * @param {string} [a1] @param {string} [a2] @param {string} [a61] @param {string} [a62]
   */
  const veth = (n1, if1, n2, if2, a1, a2, a61, a62) => {
    linkCmds.push({ ns: n1.ns, args: ['link', 'add', if1, 'type', 'veth', 'peer', 'name', if2, 'netns', n2.ns] });
    for (const [n, ifn, a, a6] of /** @type {const} */ ([[n1, if1, a1, a61], [n2, if2, a2, a62]])) {
      if (a) ipc(n, `addr add ${a} dev ${ifn}`);
      if (a6 && ipv6) ipc(n, `addr add ${a6} dev ${ifn} nodad`);
      ipc(n, `link set ${ifn} up`);
    }
  };

  const inet = node('inet', true);
  const server = node('server', false);
  veth(inet, 's0', server, 'eth0', '198.18.0.1/24', '198.18.0.2/24', '2001:db8::1/64', '2001:db8::2/64');
  ipc(server, 'addr add 198.18.0.3/24 dev eth0');
  server.routes.push('default via 198.18.0.1');
  server.routes6.push('default via 2001:db8::1');

  /** @type {Record<string, any>} */
  const peers = {};
  const shaped = [];
  const delays = [];
  if (hasShape(spec.server)) {
    shaped.push({ ifname: 's0', queue: QUEUE.s0 });
    delays.push({ link: 'server', ifname: 's0', queue: QUEUE.s0, ...spec.server });
  }

  /** @param {'a'|'b'} who @param {PeerSpec} p */
  const addShape = (who, p) => {
    if (!hasShape(p)) return;
    const ifname = who === 'a' ? 'pa' : 'pb';
    const queue = who === 'a' ? QUEUE.pa : QUEUE.pb;
    shaped.push({ ifname, queue });
    delays.push({ link: who, ifname, queue, delayMs: p.delayMs, jitterMs: p.jitterMs, lossPct: p.lossPct, reorder: p.reorder });
  };

  if (sameNat) {
    const nat = node('nat', true);
    const natPub = '198.18.1.2';
    veth(inet, 'pa', nat, 'wan', '198.18.1.1/24', `${natPub}/24`, '2001:db8:1::1/64', '2001:db8:1::2/64');
    linkCmds.push({ ns: nat.ns, args: ['link', 'add', 'lan', 'type', 'bridge'] });
    ipc(nat, 'addr add 10.0.0.1/24 dev lan');
    if (ipv6) ipc(nat, "addr add 2001:db8:1:1::1/64 dev lan nodad");
    ipc(nat, 'link set lan up');
    nat.routes.push('default via 198.18.1.1');
    nat.routes6.push('default via 2001:db8:1::1');
    inet.routes6.push('2001:db8:1::/48 via 2001:db8:1::2');
    const hosts = [];
    for (const [who, i] of /** @type {const} */ ([['a', 2], ['b', 3]])) {
      const h = node(who, false);
      veth(nat, `l${who}`, h, 'eth0', undefined, `10.0.0.${i}/24`, undefined, `2001:db8:1:1::${i}/64`);
      ipc(nat, `link set l${who} master lan`);
      h.routes.push('default via 10.0.0.1');
      h.routes6.push('default via 2001:db8:1:1::1');
      hosts.push({ ip: `10.0.0.${i}`, set: `ports_${who}` });
      peers[who] = {
        ns: h.ns, behaviour: pa.nat, ip: `10.0.0.${i}`, ip6: ipv6 ? `2001:db8:1:1::${i}` : undefined,
        publicIp: natPub, publicIp6: ipv6 ? `2001:db8:1:1::${i}` : undefined, natNs: nat.ns, cgnNs: undefined,
        ttlToInternet: 2, spec: who === 'a' ? pa : pb,
      };
    }
    const hairpin = !!spec.hairpin;
    nat.rules4 = routerRules({ behaviour: pa.nat, icmp: pa.icmp, lanNet: '10.0.0.0/24', v: 4, hairpin, natPub });
    if (ipv6) nat.rules6 = routerRules({ behaviour: pa.nat, icmp: pa.icmp, lanNet: '2001:db8:1:1::/64', v: 6, hairpin: false });
    if (hairpin) nat.nft = hairpinNft(natPub, '10.0.0.0/24', hosts);
    addShape('a', pa);
  } else {
    for (const [who, i, p] of /** @type {const} */ ([['a', 1, pa], ['b', 2, pb]])) {
      const up = `198.18.${i}.1`;
      const wanIp = `198.18.${i}.2`;
      const lan6 = `2001:db8:${i}:1::`;
      const host = node(who, false);
      // A host without IPv6 in a lab that has it (an IPv4-only network next to a dual-stack one).
      const v6Host = ipv6 && p.ipv6 !== false;
      const host6 = v6Host ? `${lan6}2/64` : undefined;
      if (!v6Host) host.noV6 = true;
      /** @type {NodePlan} */
      let edge; // the router on the access link
      let nat;
      let cgn;
      let hostIp;
      let publicIp;
      let innerPublic;
      let ttl = 2;
      if (p.nat === 'cgnat') {
        cgn = node(`cgn-${who}`, true);
        nat = node(`nat-${who}`, true);
        edge = cgn;
        veth(inet, `p${who}`, cgn, 'wan', `${up}/24`, `${wanIp}/24`, `2001:db8:${i}::1/64`, `2001:db8:${i}::2/64`);
        innerPublic = `100.64.${i}.2`;
        veth(cgn, 'in', nat, 'wan', `100.64.${i}.1/24`, `${innerPublic}/24`, `2001:db8:${i}:2::1/64`, `2001:db8:${i}:2::2/64`);
        veth(nat, 'lan', host, 'eth0', `10.${i}.0.1/24`, `10.${i}.0.2/24`, `${lan6}1/64`, host6);
        cgn.routes.push(`default via ${up}`);
        cgn.routes6.push(`default via 2001:db8:${i}::1`, `${lan6}/64 via 2001:db8:${i}:2::2`);
        nat.routes.push(`default via 100.64.${i}.1`);
        nat.routes6.push(`default via 2001:db8:${i}:2::1`);
        host.routes.push(`default via 10.${i}.0.1`);
        cgn.rules4 = cgnRules(p.cgn ?? 'cone', `100.64.${i}.0/24`);
        nat.rules4 = routerRules({ behaviour: /** @type {Behaviour} */ (p.home), icmp: p.icmp, lanNet: `10.${i}.0.0/24`, v: 4, host: `10.${i}.0.2` });
        if (p.home === 'full-cone') nat.nft = fullConeNft(`10.${i}.0.2`);
        if (ipv6) nat.rules6 = routerRules({ behaviour: /** @type {Behaviour} */ (p.home), icmp: p.icmp, lanNet: `${lan6}/64`, v: 6 });
        hostIp = `10.${i}.0.2`;
        publicIp = wanIp;
        ttl = 3;
      } else {
        nat = node(`nat-${who}`, true);
        edge = nat;
        veth(inet, `p${who}`, nat, 'wan', `${up}/24`, `${wanIp}/24`, `2001:db8:${i}::1/64`, `2001:db8:${i}::2/64`);
        nat.routes.push(`default via ${up}`);
        nat.routes6.push(`default via 2001:db8:${i}::1`);
        if (p.nat === 'public' || p.nat === 'open') {
          hostIp = `198.18.${100 + i}.2`;
          veth(nat, 'lan', host, 'eth0', `198.18.${100 + i}.1/24`, `${hostIp}/24`, `${lan6}1/64`, host6);
          host.routes.push(`default via 198.18.${100 + i}.1`);
          inet.routes.push(`198.18.${100 + i}.0/24 via ${wanIp}`);
          publicIp = hostIp;
          nat.rules4 = routerRules({ behaviour: p.nat, lanNet: `198.18.${100 + i}.0/24`, v: 4 });
        } else {
          hostIp = `10.${i}.0.2`;
          veth(nat, 'lan', host, 'eth0', `10.${i}.0.1/24`, `${hostIp}/24`, `${lan6}1/64`, host6);
          host.routes.push(`default via 10.${i}.0.1`);
          publicIp = wanIp;
          nat.rules4 = routerRules({ behaviour: p.nat, icmp: p.icmp, lanNet: `10.${i}.0.0/24`, v: 4, host: hostIp });
          if (p.nat === 'full-cone') nat.nft = fullConeNft(hostIp);
        }
        if (ipv6) nat.rules6 = routerRules({ behaviour: p.nat, icmp: p.icmp, lanNet: `${lan6}/64`, v: 6 });
      }
      if (v6Host) host.routes6.push(`default via ${lan6}1`);
      inet.routes6.push(`2001:db8:${i}::/48 via 2001:db8:${i}::2`);
      peers[who] = {
        ns: host.ns, behaviour: p.nat, ip: hostIp, ip6: v6Host ? `${lan6}2` : undefined, publicIp,
        publicIp6: v6Host ? `${lan6}2` : undefined, natNs: nat.ns, cgnNs: cgn?.ns, innerPublicIp: innerPublic,
        ttlToInternet: ttl, spec: p, edgeNs: edge.ns,
      };
      addShape(who, p);
    }
  }
  inet.rules4 = inetRules(shaped);
  if (ipv6) inet.rules6 = inet6Rules(shaped);
  return { nodes, ipCmds, linkCmds, peers, delays, ipv6, pa, pb, sameNat, hairpin: sameNat ? !!spec.hairpin : undefined };
}

// -------------------------------------------------------------------- Lab

/**
 * A built topology. Create with createLab(); always destroy().
 */
export class Lab {
  /** @param {string} id @param {LabSpec} spec */
  constructor(id, spec) {
    this.id = id;
    this.spec = spec;
    /** @type {string[]} */
    this._namespaces = [];
    /** @type {Set<import('node:child_process').ChildProcess>} */
    this._children = new Set();
    /** @type {Record<string, string>} node key → namespace name */
    this.ns = {};
    this.destroyed = false;
    /** @type {any} */
    this.server = undefined;
    /** @type {any} */
    this.peers = undefined;
    /** @type {any[]} */
    this.delays = [];
    /** @type {{ ns: string } | undefined} */
    this.internet = undefined;
    this.sameNat = false;
    /** @type {boolean | undefined} */
    this.hairpin = undefined;
  }

  /** Namespace name for a node key ('server', 'a', 'b', 'inet', 'nat-a', 'cgn-b', 'nat', ...) or a full name. @param {string} node */
  nsName(node) {
    const n = this.ns[node];
    if (n) return n;
    if (this._namespaces.includes(node)) return node;
    throw new Error(`lab ${this.id}: no node ${JSON.stringify(node)} (have ${Object.keys(this.ns).join(', ')})`);
  }

  /**
   * Spawns argv inside a node's namespace (`ip netns exec`). The child is killed on destroy().
   * @param {string} node @param {string[]} argv @param {import('node:child_process').SpawnOptions} [opts]
   */
  spawn(node, argv, opts = {}) {
    if (this.destroyed) throw new Error(`lab ${this.id}: destroyed`);
    const child = cpSpawn('ip', ['netns', 'exec', this.nsName(node), ...argv], { stdio: 'pipe', ...opts });
    this._children.add(child);
    child.once('exit', () => this._children.delete(child));
    child.once('error', () => this._children.delete(child));
    return child;
  }

  /**
   * Runs argv inside a node's namespace and collects its output. Does not throw on a non-zero exit
   * unless `check` is set. Bounded by timeoutMs (default 30 s; the process is SIGKILLed).
   * @param {string} node @param {string[]} argv
   * @param {{ input?: string, timeoutMs?: number, check?: boolean, env?: NodeJS.ProcessEnv }} [opts]
   * @returns {Promise<{ stdout: string, stderr: string, code: number | null, signal: NodeJS.Signals | null }>}
   */
  exec(node, argv, opts = {}) {
    return new Promise((resolve, reject) => {
      /** @type {import('node:child_process').ChildProcess} */
      let child;
      try {
        child = this.spawn(node, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
      } catch (e) {
        reject(e);
        return;
      }
      let stdout = '';
      let stderr = '';
      child.stdout?.setEncoding('utf8').on('data', (d) => (stdout += d));
      child.stderr?.setEncoding('utf8').on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (opts.check && code !== 0) {
          reject(new Error(`lab ${this.id}: ${node}: \`${argv.join(' ')}\` exited ${code ?? signal}: ${stderr.trim()}`));
        } else resolve({ stdout, stderr, code, signal });
      });
      child.stdin?.on('error', () => {});
      child.stdin?.end(opts.input ?? '');
    });
  }

  /**
   * Starts a Node.js module inside a node's namespace with an IPC channel (child.send / 'message'),
   * like child_process.fork(). The child is killed on destroy().
   * @param {string} node @param {string} modulePath @param {string[]} [args]
   * @param {{ execArgv?: string[], env?: NodeJS.ProcessEnv, serialization?: 'json'|'advanced', stdio?: import('node:child_process').StdioOptions }} [opts]
   */
  fork(node, modulePath, args = [], opts = {}) {
    return this.spawn(node, [process.execPath, ...(opts.execArgv ?? []), modulePath, ...args], {
      stdio: opts.stdio ?? ['pipe', 'pipe', 'pipe', 'ipc'],
      serialization: opts.serialization ?? 'json',
      env: opts.env ?? process.env,
    });
  }

  /**
   * Runs test/lab/probe.py with the given arguments inside a node's namespace.
   * @param {string} node @param {string[]} args @param {import('node:child_process').SpawnOptions} [opts]
   */
  python(node, args, opts) {
    return this.spawn(node, [pythonPath(), '-u', PROBE_PY, ...args], opts);
  }

  /** Packets the internet router dropped because they carried private/CGNAT addresses (a NAT leaked). */
  async leaks() {
    const r = await this.exec('inet', ['iptables', '-L', 'LEAK', '-v', '-x', '-n'], { check: true });
    const m = /^\s*(\d+)\s+\d+\s+DROP/m.exec(r.stdout);
    return m ? Number(m[1]) : 0;
  }

  /** The conntrack-relevant rules of every router (for debugging): `iptables-save` per namespace. */
  async dumpRules() {
    /** @type {Record<string, string>} */
    const out = {};
    for (const [key, ns] of Object.entries(this.ns)) {
      if (key === 'a' || key === 'b' || key === 'server') continue;
      out[key] = (await this.exec(ns, ['iptables-save'])).stdout;
    }
    return out;
  }

  /** Removes everything: kills the lab's processes, deletes its namespaces (and with them every veth). Idempotent. */
  async destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    const children = [...this._children];
    for (const c of children) {
      try {
        c.kill('SIGTERM');
      } catch {}
    }
    await Promise.race([
      Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => c.once('exit', r))))),
      new Promise((r) => setTimeout(r, 1000).unref()),
    ]);
    this._sweepSync();
    activeLabs.delete(this);
  }

  /** @internal synchronous teardown (exit handlers) */
  _sweepSync() {
    this.destroyed = true;
    for (const c of this._children) {
      try {
        c.kill('SIGKILL');
      } catch {}
    }
    this._children.clear();
    sweepSync(this._namespaces);
  }
}

/**
 * Starts one nfq-delay process inside the internet router for a shaped link.
 * Delay semantics: `delayMs` is what the link adds to a round trip; each direction is held delayMs/2
 * (± jitterMs/2), and each packet crossing the link is lost with probability lossPct%.
 * @param {Lab} lab @param {any} d @param {number} seed @param {number} max
 */
async function startDelay(lab, d, seed, max) {
  const args = [
    DELAY_BIN, '--queue', String(d.queue), '--delay', String((d.delayMs ?? 0) / 2), '--jitter', String((d.jitterMs ?? 0) / 2),
    '--loss', String(d.lossPct ?? 0), '--seed', String(seed), '--max', String(max),
  ];
  if (d.reorder) args.push('--reorder');
  const child = lab.spawn('inet', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (s) => {
    err += s;
    if (err.length > 4096) err = err.slice(-4096);
  });
  d.child = child;
  d.stats = () => err.trim();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lab: nfq-delay for link ${d.link} did not start: ${err}`)), 5000);
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (s) => {
      out += s;
      if (out.includes('ready')) {
        clearTimeout(timer);
        resolve(undefined);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`lab: nfq-delay for link ${d.link} exited (${code}): ${err}`));
    });
  });
}

/**
 * Builds a topology. See docs/LAB.md.
 * @param {LabSpec} spec
 * @returns {Promise<Lab>}
 */
export async function createLab(spec) {
  const id = `${LAB_PREFIX}${process.pid}-${labCounter++}`;
  const plan = planLab(id, spec);
  const pre = labPrerequisites({ delay: plan.delays.length > 0, hairpin: [...plan.nodes.values()].some((n) => n.nft) });
  if (!pre.ok) throw new Error(`lab: missing prerequisites: ${pre.missing.join(', ')}`);
  if (!staleChecked) {
    staleChecked = true;
    cleanupStaleLabs();
  }
  if (plan.delays.length) await buildDelayTool();

  const lab = new Lab(id, spec);
  installExitHandlers();
  activeLabs.add(lab);
  for (const n of plan.nodes.values()) {
    lab.ns[n.key] = n.ns;
    lab._namespaces.push(n.ns);
  }
  if (plan.sameNat) {
    lab.ns['nat-a'] = lab.ns['nat'] ?? '';
    lab.ns['nat-b'] = lab.ns['nat'] ?? '';
  }
  try {
    // 1. namespaces, loopback up, sysctls (IPv6 off unless asked: keeps router solicitations and DAD away)
    const nodes = [...plan.nodes.values()];
    for (const n of nodes) await must('ip', ['netns', 'add', n.ns]);
    await Promise.all(
      nodes.map((n) => {
        const v6 = plan.ipv6 && !n.noV6 ? '0' : '1';
        const sysctls = [`net.ipv6.conf.all.disable_ipv6=${v6}`, `net.ipv6.conf.default.disable_ipv6=${v6}`];
        if (plan.ipv6) {
          // no DAD (link-local addresses would stay tentative for ~2 s and neighbour discovery fail meanwhile), no RA
          sysctls.push('net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.dad_transmits=0');
          sysctls.push('net.ipv6.conf.default.accept_ra=0', 'net.ipv6.conf.all.accept_ra=0');
        }
        // The server takes data in SYNs, as docs/DEPLOY.md asks of a relay (a relay join then rides in its SYN).
        if (n.key === 'server' && spec.fastOpen !== false) sysctls.push('net.ipv4.tcp_fastopen=3');
        if (n.router) {
          sysctls.push('net.ipv4.ip_forward=1');
          if (plan.ipv6) sysctls.push('net.ipv6.conf.all.forwarding=1');
        }
        return must('ip', ['netns', 'exec', n.ns, 'sysctl', '-q', '-w', ...sysctls]);
      }),
    );
    // 2. links: veth pairs created directly inside the namespaces (never in the root namespace)
    for (const l of plan.linkCmds) await must('ip', ['-n', l.ns, ...l.args]);
    // 3. addresses, links up, routes: one `ip -batch` per namespace
    await Promise.all(
      nodes.map((n) => {
        const e = plan.ipCmds.find((x) => x.ns === n.ns);
        const cmds = ['link set lo up', ...(e?.cmds ?? []), ...n.routes.map((r) => `route add ${r}`)];
        if (plan.ipv6) cmds.push(...n.routes6.map((r) => `route add ${r.replace(/^default /, '::/0 ')}`));
        return must('ip', ['-n', n.ns, '-batch', '-'], { input: cmds.join('\n') + '\n' });
      }),
    );
    // 4. delay programs (before their NFQUEUE rules exist, so no packet ever waits on an unbound queue)
    const seed = spec.seed ?? 1;
    lab.delays = plan.delays;
    for (const [i, d] of plan.delays.entries()) await startDelay(lab, d, seed + i, spec.delayMax ?? 4096);
    // 5. firewall / NAT rules
    await Promise.all(
      nodes.map(async (n) => {
        if (n.rules4) await must('ip', ['netns', 'exec', n.ns, 'iptables-restore'], { input: n.rules4 });
        if (n.rules6) await must('ip', ['netns', 'exec', n.ns, 'ip6tables-restore'], { input: n.rules6 });
        if (n.nft) await must('ip', ['netns', 'exec', n.ns, 'nft', '-f', '-'], { input: n.nft });
      }),
    );
  } catch (e) {
    await lab.destroy();
    throw e;
  }

  lab.server = {
    ns: lab.ns.server,
    ip: '198.18.0.2',
    ip2: '198.18.0.3',
    ip6: plan.ipv6 ? '2001:db8::2' : undefined,
  };
  lab.peers = plan.peers;
  lab.internet = { ns: lab.ns.inet };
  lab.sameNat = plan.sameNat;
  lab.hairpin = plan.hairpin;
  return lab;
}
