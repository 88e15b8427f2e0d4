#!/usr/bin/env python3
"""Connectivity probes for the NAT lab (standard library only).

Every subcommand runs inside one lab namespace (the lab starts it with
`ip netns exec`), is bounded in time, and prints JSON lines on stdout.
Only addresses given on the command line are contacted; the lab only ever
passes addresses of its own namespaces.

  observer  --ports 7001,7002 [--lifetime S]
      TCP servers that tell each client the address they see ("ip port\\n")
      and log {"event":"accept",...}. Connections stay open until the client
      closes, so NAT mappings stay alive while a probe holds them.
  observe   --lport P --server ip:port[,ip:port...] [--hold S]
      From one local port (SO_REUSEADDR+SO_REUSEPORT), connect to each server
      endpoint while keeping the previous connections open; report the
      mapping the server saw for each one.
  synprobe  --to ip:port [--sport P] [--timeout S]
      Send a SYN (a plain connect()) and classify what comes back:
      connected / rst / icmp (type, code) / timeout. ICMP is told apart from
      RST with a raw ICMP socket (ICMP port-unreachable and RST both give
      ECONNREFUSED).
  ttl       --to ip:port --ttl N [--timeout S]
      Send SYNs with IP_TTL=N and report the sources of ICMP time-exceeded.
  punch     --lport P [--observe ip:port] [--peer ip:port --at MS] ...
      TCP simultaneous open: listen on P, optionally learn the public mapping
      from an observer, then (peer/start time from the arguments or from a
      JSON line on stdin) connect() to the peer from P at the agreed moment,
      retrying on errors, accepting the peer's SYN on the listener too.
      On success both sides exchange a line and check it.
  rtt       --to ip:port [--count N]
      TCP connect() time samples (ms) to a listener.
  udpecho   --port P [--lifetime S]          UDP echo server.
  udpping   --to ip:port [--count N] [--interval MS] [--wait S]
      Numbered UDP datagrams; reports received, lost, reordering, RTTs.
"""
import argparse
import errno
import json
import os
import select
import socket
import struct
import sys
import time


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def parse_ep(s):
    """'1.2.3.4:80' or '[2001:db8::1]:80' -> (host, port)."""
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
    else:
        host, _, port = s.rpartition(":")
    return host, int(port)


def fam(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def fmt_ep(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reuse_socket(family, lport, bind_host=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((bind_host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), lport))
    return s


TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV = 1, 2, 3


def tcp_state(sock):
    """tcpi_state from TCP_INFO (1 ESTABLISHED, 2 SYN_SENT, 3 SYN_RECV, 7 CLOSE, ...)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 0


def errname(e):
    return errno.errorcode.get(e, str(e))


# ---------------------------------------------------------------- observer
def cmd_observer(a):
    ports = [int(p) for p in a.ports.split(",")]
    listeners = {}
    for p in ports:
        for family in ([socket.AF_INET, socket.AF_INET6] if a.ipv6 else [socket.AF_INET]):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", p))
            s.listen(128)
            listeners[s] = p
    out({"event": "ready", "ports": ports})
    conns = set()
    deadline = time.monotonic() + a.lifetime
    while time.monotonic() < deadline:
        r, _, _ = select.select(list(listeners) + list(conns), [], [], 0.5)
        for s in r:
            if s in listeners:
                try:
                    c, addr = s.accept()
                except OSError:
                    continue
                host, port = addr[0], addr[1]
                out({"event": "accept", "local": listeners[s], "from": fmt_ep(host, port)})
                try:
                    c.sendall(f"{host} {port}\n".encode())
                except OSError:
                    c.close()
                    continue
                if len(conns) >= 512:  # bounded: drop the new one
                    c.close()
                else:
                    conns.add(c)
            else:
                try:
                    d = s.recv(4096)
                except OSError:
                    d = b""
                if not d:
                    conns.discard(s)
                    s.close()


# ----------------------------------------------------------------- observe
def read_line(sock, timeout):
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < 512:
        d = sock.recv(512)
        if not d:
            break
        buf += d
    return buf.decode().strip()


def observe_one(lport, ep, timeout=3.0):
    host, port = ep
    s = reuse_socket(fam(host), lport)
    s.settimeout(timeout)
    s.connect((host, port))
    line = read_line(s, timeout)
    ohost, oport = line.split(" ")
    return s, fmt_ep(ohost, int(oport))


def cmd_observe(a):
    eps = [parse_ep(x) for x in a.server.split(",")]
    socks, seen = [], []
    for ep in eps:
        try:
            s, o = observe_one(a.lport, ep)
            socks.append(s)
            seen.append({"server": fmt_ep(*ep), "observed": o})
        except OSError as e:
            seen.append({"server": fmt_ep(*ep), "error": errname(e.errno) if e.errno else str(e)})
    out({"event": "observed", "lport": a.lport, "results": seen})
    time.sleep(min(a.hold, 30))
    for s in socks:
        s.close()


# ---------------------------------------------------------------- synprobe
def open_icmp(family):
    if family == socket.AF_INET6:
        return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)


def parse_icmp(family, data, addr):
    """Return (type, code, src, (sport, dport) of the quoted TCP header or None) of an ICMP message
    read from a raw socket (IPv4 raw sockets include the IP header, IPv6 ones do not)."""
    off = (data[0] & 0x0F) * 4 if family == socket.AF_INET else 0
    t, c = data[off], data[off + 1]
    quoted = off + 8  # the offending packet's IP header starts after the 8-byte ICMP header
    ports = None
    try:
        if family == socket.AF_INET:
            qihl = (data[quoted] & 0x0F) * 4
            if data[quoted + 9] == socket.IPPROTO_TCP:
                ports = struct.unpack("!HH", data[quoted + qihl:quoted + qihl + 4])
        elif data[quoted + 6] == socket.IPPROTO_TCP:
            ports = struct.unpack("!HH", data[quoted + 40:quoted + 44])
    except (IndexError, struct.error):
        ports = None
    return t, c, addr[0], ports


def read_icmp(family, icmp, sport, sink):
    """Read one ICMP message; keep it in sink when it is about our TCP source port."""
    data, addr = icmp.recvfrom(2048)
    t, c, src, ports = parse_icmp(family, data, addr)
    if t in ICMP_INTERESTING[family] and ports is not None and ports[0] == sport:
        sink.append({"type": t, "code": c, "from": src, "kind": ICMP_INTERESTING[family][t]})


ICMP_INTERESTING = {
    socket.AF_INET: {3: "unreachable", 11: "time-exceeded"},
    socket.AF_INET6: {1: "unreachable", 3: "time-exceeded"},
}


def cmd_synprobe(a):
    host, port = parse_ep(a.to)
    family = fam(host)
    icmp = open_icmp(family)
    s = socket.socket(family, socket.SOCK_STREAM)
    if a.sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", a.sport))
    s.setblocking(False)
    t0 = time.monotonic()
    rc = s.connect_ex((host, port))
    sport = s.getsockname()[1]
    result = {"event": "synprobe", "to": fmt_ep(host, port), "sport": sport}
    icmps = []
    outcome = None
    deadline = t0 + a.timeout
    while outcome is None:
        left = deadline - time.monotonic()
        if left <= 0:
            outcome = "timeout"
            break
        r, w, _ = select.select([icmp], [s], [], left)
        if icmp in r:
            read_icmp(family, icmp, sport, icmps)
        if s in w:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                outcome = "connected"
            else:
                result["errno"] = errname(err)
                # let a just-arrived ICMP copy reach the raw socket
                r2, _, _ = select.select([icmp], [], [], 0.05)
                while r2:
                    read_icmp(family, icmp, sport, icmps)
                    r2, _, _ = select.select([icmp], [], [], 0)
                outcome = "icmp" if any(i["kind"] == "unreachable" for i in icmps) else (
                    "rst" if err == errno.ECONNREFUSED else "error")
    result.update({"outcome": outcome, "icmp": icmps, "ms": round((time.monotonic() - t0) * 1000, 2)})
    out(result)
    s.close()


# --------------------------------------------------------------------- ttl
def cmd_ttl(a):
    host, port = parse_ep(a.to)
    family = fam(host)
    icmp = open_icmp(family)
    s = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, a.ttl)
    else:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, a.ttl)
    s.setblocking(False)
    s.connect_ex((host, port))
    sport = s.getsockname()[1]
    seen = []
    deadline = time.monotonic() + a.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([icmp], [], [], left)
        if not r:
            break
        read_icmp(family, icmp, sport, seen)
        if seen:
            break
    out({"event": "ttl", "to": fmt_ep(host, port), "ttl": a.ttl, "icmp": seen})
    s.close()


# ------------------------------------------------------------------- punch
def cmd_punch(a):
    t_start = time.time()
    observed = None
    peer_host = None
    family = socket.AF_INET6 if a.ipv6 else socket.AF_INET
    lst = reuse_socket(family, a.lport)
    lst.listen(8)
    keep = []
    if a.observe:
        try:
            s, observed = observe_one(a.lport, parse_ep(a.observe))
            keep.append(s)
        except OSError as e:
            out({"event": "observed", "error": errname(e.errno) if e.errno else str(e)})
            return
    out({"event": "observed", "lport": a.lport, "observed": observed})
    if a.peer:
        peer, at = parse_ep(a.peer), a.at
    else:
        r, _, _ = select.select([sys.stdin], [], [], a.wait)
        if not r:
            out({"event": "result", "ok": False, "error": "no peer on stdin"})
            return
        msg = json.loads(sys.stdin.readline())
        peer, at = parse_ep(msg["peer"]), msg["at"]
    peer_host = peer[0]
    delay = at / 1000.0 - time.time()
    if 0 < delay < 30:
        time.sleep(delay)
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    attempts, errors, conn, via = 0, [], None, None
    # With a low first-SYN TTL, record the ICMP errors about our port independently of the socket: Linux
    # aborts a SYN_SENT socket on them only when the kernel does not hold the socket at that moment.
    icmp, icmp_seen = (open_icmp(family) if a.ttl else None), []
    while conn is None and attempts < a.max_attempts and time.monotonic() < deadline:
        attempts += 1
        s = reuse_socket(family, a.lport)
        if a.ttl and attempts == 1:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, a.ttl)
            else:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, a.ttl)
        s.setblocking(False)
        started = time.monotonic()
        # Retries are paced start to start, not by a pause after each failure: an ICMP error takes a round trip to
        # abort the attempt, and while no connector is open the peer's SYN meets only the listener, whose SYN-ACK
        # carries a new sequence number that our NAT's conntrack (which saw the aborted SYN) drops. The 4-tuple then
        # stays taken by that dead-end request (EADDRNOTAVAIL) until the punch times out.
        next_start = lambda: max(time.monotonic(), started + a.retry_gap)
        rc = s.connect_ex(peer)
        low_ttl = bool(a.ttl) and attempts == 1
        watch = None
        extended = False
        if low_ttl:  # the SYN is out; retransmits and a SYN-ACK (simultaneous open) use the normal TTL
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, -1)
            else:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, -1)
        # A low-TTL SYN only opens our own mapping (it expires before the peer's NAT, so no RST or
        # ICMP comes from there). The socket is kept: the peer's SYN then passes our NAT and meets it
        # (simultaneous open), or its own retransmission (normal TTL, ~1 s later) goes through.
        # Replacing it by a new socket is risky: once the peer's SYN has been seen, conntrack holds
        # a new ISN on the same 4-tuple to be INVALID (dropped, or sent out untranslated).
        wait = a.ttl_wait if (low_ttl and a.ttl_wait > 0) else a.attempt_timeout
        attempt_end = min(deadline, time.monotonic() + wait)
        done = False
        if rc not in (0, errno.EINPROGRESS):
            errors.append(errname(rc))
            wlist = []
        else:
            wlist = [s]
        while not done:
            left = attempt_end - time.monotonic()
            if left <= 0:
                st = tcp_state(s) if (wlist or watch) else 0
                if st == TCP_ESTABLISHED:
                    conn, via = s, "connect"
                elif st == TCP_SYN_RECV and not extended:
                    # the peer's SYN met this socket (simultaneous open half-way): never close it now
                    extended = True
                    attempt_end = min(deadline + 1.0, time.monotonic() + 1.0)
                    continue
                elif wlist or watch:
                    errors.append("low-ttl" if low_ttl else "attempt-timeout")
                break
            r, w, _ = select.select([lst] + ([icmp] if icmp else []), wlist, [], min(left, 0.005) if watch else left)
            if icmp is not None and icmp in r:
                read_icmp(family, icmp, a.lport, icmp_seen)
            if watch is not None:
                st = tcp_state(watch)
                if st == TCP_ESTABLISHED:
                    conn, via = watch, "connect"
                    done = True
                    break
                if st not in (TCP_SYN_SENT, TCP_SYN_RECV):
                    errors.append("closed")
                    watch = None
                    attempt_end = min(attempt_end, next_start())
            if lst in r:
                c, addr = lst.accept()
                if addr[0] == peer_host:
                    conn, via = c, "accept"
                    done = True
                    break
                c.close()
            if s in w:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                st = tcp_state(s)
                if st == TCP_ESTABLISHED:
                    conn, via = s, "connect"
                    if err:
                        errors.append(errname(err) + "(soft)")
                    done = True
                    break
                if st in (TCP_SYN_SENT, TCP_SYN_RECV):
                    # A soft error: recent Linux reports an ICMP error on a connecting socket
                    # (SO_ERROR, EPOLLERR) but keeps it in SYN_SENT, retransmitting. Closing it now
                    # could kill a simultaneous open in progress, so keep it and, since poll keeps
                    # flagging it, watch its state every few ms instead.
                    errors.append(errname(err) + "(soft)" if err else "wakeup")
                    wlist, watch = [], s
                    continue
                errors.append(errname(err) if err else "closed")
                wlist = []
                # hard failure (RST or ICMP: the socket is closed): the next SYN, still watching the listener
                attempt_end = min(attempt_end, next_start())
        if conn is not s:
            s.close()
    res = {"event": "result", "name": a.name, "lport": a.lport, "peer": fmt_ep(*peer), "observed": observed,
           "attempts": attempts, "errors": errors[:20]}
    if icmp is not None:
        # The low-TTL SYN's ICMP and the peer's SYN can arrive in either order (here both take two link delays):
        # when the punch won first, wait a little for the ICMP, so what is recorded does not depend on that race.
        grace_end = time.monotonic() + 0.3
        while True:
            left = grace_end - time.monotonic() if not icmp_seen else 0
            if not select.select([icmp], [], [], max(0, left))[0]:
                break
            read_icmp(family, icmp, a.lport, icmp_seen)
        icmp.close()
        res["icmp"] = icmp_seen[:20]
    if conn is None:
        res.update({"ok": False, "ms": round((time.monotonic() - t0) * 1000, 2)})
        out(res)
        return
    connect_ms = round((time.monotonic() - t0) * 1000, 2)
    conn.setblocking(True)
    remote = conn.getpeername()
    try:
        conn.sendall(f"hello from {a.name} {a.lport}\n".encode())
        line = read_line(conn, 5.0)
        ok = line.startswith("hello from ")
    except OSError as e:
        line, ok = "error " + (errname(e.errno) if e.errno else str(e)), False
    res.update({"ok": ok, "via": via, "ms": connect_ms, "remote": fmt_ep(remote[0], remote[1]),
                "local": fmt_ep(*conn.getsockname()[:2]), "got": line,
                "wall_ms": round((time.time() - t_start) * 1000, 2)})
    out(res)
    try:
        conn.shutdown(socket.SHUT_WR)
        read_line(conn, 2.0)
    except OSError:
        pass
    conn.close()


# --------------------------------------------------------------------- rtt
def cmd_rtt(a):
    host, port = parse_ep(a.to)
    samples = []
    for _ in range(a.count):
        s = socket.socket(fam(host), socket.SOCK_STREAM)
        s.settimeout(5)
        t = time.monotonic()
        try:
            s.connect((host, port))
            samples.append(round((time.monotonic() - t) * 1000, 3))
        except OSError:
            pass
        s.close()
        time.sleep(0.02)
    srt = sorted(samples)
    out({"event": "rtt", "to": a.to, "samples": samples, "median": srt[len(srt) // 2] if srt else None})


# --------------------------------------------------------------------- udp
def cmd_udpecho(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", a.port))
    out({"event": "ready", "port": a.port})
    deadline = time.monotonic() + a.lifetime
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.5)
        if r:
            d, addr = s.recvfrom(2048)
            s.sendto(d, addr)


def cmd_udpping(a):
    host, port = parse_ep(a.to)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    sent = {}
    got = []
    rtts = []

    def drain(timeout):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            r, _, _ = select.select([s], [], [], max(left, 0))
            if not r:
                return
            try:
                d = s.recv(64)
            except OSError:
                continue
            seq, = struct.unpack("!I", d[:4])
            got.append(seq)
            if seq in sent:
                rtts.append((time.monotonic() - sent[seq]) * 1000)

    for i in range(a.count):
        sent[i] = time.monotonic()
        try:
            s.send(struct.pack("!I", i) + b"x" * 28)
        except OSError:
            pass
        drain(a.interval / 1000.0)
    drain(a.wait)
    uniq = sorted(set(got))
    inversions = sum(1 for x, y in zip(got, got[1:]) if y < x)
    srt = sorted(rtts)
    out({"event": "udpping", "sent": a.count, "received": len(uniq), "lost": a.count - len(uniq),
         "inversions": inversions, "rtt_median": round(srt[len(srt) // 2], 3) if srt else None,
         "rtt_min": round(srt[0], 3) if srt else None, "rtt_max": round(srt[-1], 3) if srt else None})


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("observer")
    o.add_argument("--ports", required=True)
    o.add_argument("--lifetime", type=float, default=600)
    o.add_argument("--ipv6", action="store_true")
    o = sub.add_parser("observe")
    o.add_argument("--lport", type=int, required=True)
    o.add_argument("--server", required=True)
    o.add_argument("--hold", type=float, default=0)
    o = sub.add_parser("synprobe")
    o.add_argument("--to", required=True)
    o.add_argument("--sport", type=int, default=0)
    o.add_argument("--timeout", type=float, default=2.5)
    o = sub.add_parser("ttl")
    o.add_argument("--to", required=True)
    o.add_argument("--ttl", type=int, required=True)
    o.add_argument("--timeout", type=float, default=2.0)
    o = sub.add_parser("punch")
    o.add_argument("--name", default="peer")
    o.add_argument("--lport", type=int, required=True)
    o.add_argument("--ipv6", action="store_true")
    o.add_argument("--observe")
    o.add_argument("--peer")
    o.add_argument("--at", type=float, default=0)
    o.add_argument("--wait", type=float, default=10)
    o.add_argument("--timeout", type=float, default=8)
    o.add_argument("--attempt-timeout", type=float, default=2.5)
    o.add_argument("--retry-gap", type=float, default=0.2, help="least time from one attempt's start to the next")
    o.add_argument("--max-attempts", type=int, default=20)
    o.add_argument("--ttl", type=int, default=0, help="IP TTL of the first attempt's SYN (0: default)")
    o.add_argument("--ttl-wait", type=float, default=0,
                   help="give up the low-TTL first attempt after this long (s); 0: a full attempt")
    o = sub.add_parser("rtt")
    o.add_argument("--to", required=True)
    o.add_argument("--count", type=int, default=5)
    o = sub.add_parser("udpecho")
    o.add_argument("--port", type=int, required=True)
    o.add_argument("--lifetime", type=float, default=600)
    o = sub.add_parser("udpping")
    o.add_argument("--to", required=True)
    o.add_argument("--count", type=int, default=100)
    o.add_argument("--interval", type=float, default=5)
    o.add_argument("--wait", type=float, default=1.0)
    a = p.parse_args()
    if a.cmd in ("observer", "udpecho"):
        a.lifetime = min(a.lifetime, 3600)
    globals()["cmd_" + a.cmd](a)


if __name__ == "__main__":
    main()
