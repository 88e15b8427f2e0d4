/**
 * The id registry: who holds which peer id, and with what credential. Live control connections stay in the
 * server process; the registry only keeps what a shared store would have to share (the per-id token of an open
 * server and how long an offline id stays reserved), behind a small async interface.
 */

/** What the registry knows about one id. */
export interface IdRecord {
  /** Open servers: the token issued to the id's first registrant (32 bytes). Null on secret servers. */
  token: Uint8Array | null;
  /** Null while the id is online; otherwise the time (ms since the epoch) its reservation lapses. */
  expiresAt: number | null;
}

/**
 * Storage for {@link IdRecord}s. Implementations must make {@link Registry.create} atomic (insert if absent);
 * expired records must behave as absent.
 */
export interface Registry {
  /** The record of `id`, or undefined if the id is free (never held, or its reservation lapsed). */
  get(id: string): Promise<IdRecord | undefined>;
  /** Stores `record` if the id is free; false if it is held. */
  create(id: string, record: IdRecord): Promise<boolean>;
  /** Replaces the record of an id that is held. */
  update(id: string, record: IdRecord): Promise<void>;
  /** Frees the id. */
  delete(id: string): Promise<void>;
}

/** Options of {@link MemoryRegistry}. */
export interface MemoryRegistryOptions {
  /** Most ids held at once (online or reserved); `create` refuses more. Default 1,000,000. */
  maxEntries?: number;
}

/** The default, in-process {@link Registry}. */
export class MemoryRegistry implements Registry {
  private readonly records = new Map<string, IdRecord>();
  private readonly maxEntries: number;

  constructor(options: MemoryRegistryOptions = {}) {
    this.maxEntries = options.maxEntries ?? 1_000_000;
  }

  /** Ids currently held. */
  get size(): number {
    return this.records.size;
  }

  async get(id: string): Promise<IdRecord | undefined> {
    return this.live(id);
  }

  async create(id: string, record: IdRecord): Promise<boolean> {
    if (this.live(id)) return false;
    if (this.records.size >= this.maxEntries) this.sweep();
    if (this.records.size >= this.maxEntries) return false;
    this.records.set(id, copy(record));
    return true;
  }

  async update(id: string, record: IdRecord): Promise<void> {
    this.records.set(id, copy(record));
  }

  async delete(id: string): Promise<void> {
    this.records.delete(id);
  }

  private live(id: string): IdRecord | undefined {
    const r = this.records.get(id);
    if (r && r.expiresAt !== null && r.expiresAt <= Date.now()) {
      this.records.delete(id);
      return undefined;
    }
    return r && copy(r);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, r] of this.records) if (r.expiresAt !== null && r.expiresAt <= now) this.records.delete(id);
  }
}

function copy(r: IdRecord): IdRecord {
  return { token: r.token && Uint8Array.from(r.token), expiresAt: r.expiresAt };
}
