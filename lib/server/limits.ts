/**
 * Rate and connection limits: a lazy token bucket and a per-IP table of live connections and connection rate.
 */

/** A token bucket refilled continuously at `rate` tokens per second up to `burst`. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now = performance.now(),
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token; false when the bucket is empty. */
  take(now = performance.now()): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** True when the bucket is full again (its state carries no information). */
  full(now = performance.now()): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }
}

interface IpState {
  live: number;
  bucket: TokenBucket;
}

/** Why {@link IpTable.admit} refused a connection. */
export type AdmitRefusal = 'ERR_TOO_MANY_CONNECTIONS' | 'ERR_RATE_LIMITED';

/** Tracks live connections and the connection rate per IP address. */
export class IpTable {
  private readonly ips = new Map<string, IpState>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly maxPerIp: number,
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.sweeper = setInterval(() => this.sweep(), 5000);
    this.sweeper.unref();
  }

  /** Counts a new connection from `ip`, or says why it must be refused (then nothing is counted). */
  admit(ip: string): AdmitRefusal | undefined {
    let st = this.ips.get(ip);
    if (!st) {
      st = { live: 0, bucket: new TokenBucket(this.rate, this.burst) };
      this.ips.set(ip, st);
    }
    if (st.live >= this.maxPerIp) return 'ERR_TOO_MANY_CONNECTIONS';
    if (!st.bucket.take()) return 'ERR_RATE_LIMITED';
    st.live++;
    return undefined;
  }

  /** Forgets one connection of `ip` admitted earlier. */
  release(ip: string): void {
    const st = this.ips.get(ip);
    if (!st) return;
    st.live = Math.max(0, st.live - 1);
    if (st.live === 0 && st.bucket.full()) this.ips.delete(ip);
  }

  /** Number of IPs with state. */
  get size(): number {
    return this.ips.size;
  }

  /** Stops the periodic sweep. */
  close(): void {
    clearInterval(this.sweeper);
  }

  private sweep(): void {
    const now = performance.now();
    for (const [ip, st] of this.ips) if (st.live === 0 && st.bucket.full(now)) this.ips.delete(ip);
  }
}

