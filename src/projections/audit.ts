/**
 * The audit trail: "who failed to authenticate, from where, why, how often" as a query (DESIGN.md,
 * "Who uses it"). Keeps the most recent failed attempts (a bounded window, by count), indexed by user
 * and by source IP, totals per cause since the log began, the last success per user, and bans.
 *
 * Pure: windows are given by the caller (`since`, `until`, `now`), never read from a clock.
 */
import { detach } from '../core/sip/detach.js';
import type { AuthFailureCause, BanScope, SipledgerEvent, Source, Transport } from '../core/log/events.js';
import type { Projection } from '../core/log/projection.js';

export interface AuthFailure {
  readonly id: string;
  readonly time: number;
  readonly user?: string;
  readonly realm: string;
  readonly domain: string;
  readonly method: string;
  readonly ip: string;
  readonly port: number;
  readonly transport: Transport;
  readonly userAgent?: string;
  readonly algorithm: string;
  readonly cause: AuthFailureCause;
  readonly callId?: string;
  readonly instance?: string;
}

export interface AuthSuccess {
  readonly time: number;
  readonly user: string;
  readonly realm: string;
  readonly source: Source;
  readonly userAgent?: string;
}

export interface Ban {
  readonly scope: BanScope;
  readonly value: string;
  readonly until: number;
  readonly reason: string;
  readonly since: number;
}

export interface FailureQuery {
  /** Inclusive lower bound on event time, epoch ms. */
  readonly since: number;
  /** Exclusive upper bound on event time; unbounded when absent. */
  readonly until?: number;
  readonly user?: string;
  readonly realm?: string;
  readonly ip?: string;
  readonly cause?: AuthFailureCause;
  /** Most recent first; at most this many. */
  readonly limit?: number;
}

export interface WindowQuery {
  readonly since: number;
  readonly until?: number;
}

export interface KeyCount {
  readonly key: string;
  readonly count: number;
}

export interface AuditProjectionOptions {
  /** How many failed attempts to keep for queries (oldest dropped first). Default 100,000. */
  readonly capacity?: number;
}

/** A FIFO of sequence numbers with O(1) amortised removal at the head. */
class SeqQueue {
  items: number[] = [];
  head = 0;
  push(seq: number): void {
    this.items.push(seq);
  }
  dropHead(seq: number): void {
    if (this.items[this.head] === seq) this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
  get size(): number {
    return this.items.length - this.head;
  }
}

interface AuditSnapshot {
  readonly capacity: number;
  readonly failures: AuthFailure[];
  readonly totals: { succeeded: number; failed: Record<string, number> };
  readonly lastSuccess: AuthSuccess[];
  readonly bans: Ban[];
}

export class AuditProjection implements Projection {
  readonly name = 'audit';
  readonly version = 1;
  readonly #capacity: number;
  /** Ring of failures by sequence number: seq % capacity. */
  #ring: Array<AuthFailure | undefined> = [];
  #nextSeq = 0;
  #byUser = new Map<string, SeqQueue>();
  #byIp = new Map<string, SeqQueue>();
  #succeeded = 0;
  #failedByCause = new Map<string, number>();
  #lastSuccess = new Map<string, AuthSuccess>();
  #bans = new Map<string, Ban>();

  constructor(opts: AuditProjectionOptions = {}) {
    this.#capacity = Math.max(1, opts.capacity ?? 100_000);
  }

  apply(event: SipledgerEvent): void {
    switch (event.type) {
      case 'auth.failed': {
        const f: AuthFailure = {
          id: event.id,
          time: event.time,
          realm: event.realm,
          domain: event.domain,
          method: event.method,
          ip: event.source.address,
          port: event.source.port,
          transport: event.source.transport,
          algorithm: event.algorithm,
          cause: event.cause,
          ...(event.user !== undefined && { user: event.user }),
          ...(event.userAgent !== undefined && { userAgent: event.userAgent }),
          ...(event.callId !== undefined && { callId: event.callId }),
          ...(event.instance !== undefined && { instance: event.instance }),
        };
        this.#addFailure(f);
        this.#failedByCause.set(f.cause, (this.#failedByCause.get(f.cause) ?? 0) + 1);
        break;
      }
      case 'auth.succeeded':
        this.#succeeded++;
        // Kept until the user's next success: copies, not views onto the request's text.
        this.#lastSuccess.set(detach(`${event.user}@${event.realm}`), {
          time: event.time,
          user: detach(event.user),
          realm: detach(event.realm),
          source: event.source,
          ...(event.userAgent !== undefined && { userAgent: detach(event.userAgent) }),
        });
        break;
      case 'ban.added':
        this.#bans.set(`${event.scope}\u0000${event.value}`, {
          scope: event.scope,
          value: event.value,
          until: event.until,
          reason: event.reason,
          since: event.time,
        });
        break;
      case 'ban.removed':
        this.#bans.delete(`${event.scope}\u0000${event.value}`);
        break;
      default:
        break;
    }
  }

  #addFailure(f: AuthFailure): void {
    const seq = this.#nextSeq++;
    const slot = seq % this.#capacity;
    const evicted = this.#ring[slot];
    if (evicted) {
      const old = seq - this.#capacity;
      if (evicted.user !== undefined) this.#dropIndex(this.#byUser, evicted.user, old);
      this.#dropIndex(this.#byIp, evicted.ip, old);
    }
    this.#ring[slot] = f;
    if (f.user !== undefined) this.#index(this.#byUser, f.user, seq);
    this.#index(this.#byIp, f.ip, seq);
  }

  #index(map: Map<string, SeqQueue>, key: string, seq: number): void {
    let q = map.get(key);
    if (!q) map.set(key, (q = new SeqQueue()));
    q.push(seq);
  }

  #dropIndex(map: Map<string, SeqQueue>, key: string, seq: number): void {
    const q = map.get(key);
    if (!q) return;
    q.dropHead(seq);
    if (q.size === 0) map.delete(key);
  }

  /** Sequence numbers to scan, newest first. */
  *#candidates(q: { user?: string; ip?: string }): Iterable<number> {
    const index = q.user !== undefined ? this.#byUser.get(q.user) : q.ip !== undefined ? this.#byIp.get(q.ip) : undefined;
    if (q.user !== undefined || q.ip !== undefined) {
      if (!index) return;
      for (let i = index.items.length - 1; i >= index.head; i--) yield index.items[i]!;
      return;
    }
    const oldest = Math.max(0, this.#nextSeq - this.#capacity);
    for (let s = this.#nextSeq - 1; s >= oldest; s--) yield s;
  }

  #matching(q: FailureQuery): AuthFailure[] {
    const out: AuthFailure[] = [];
    const limit = q.limit ?? Infinity;
    for (const seq of this.#candidates(q)) {
      if (out.length >= limit) break;
      const f = this.#ring[seq % this.#capacity]!;
      if (f.time < q.since || (q.until !== undefined && f.time >= q.until)) continue;
      if (q.user !== undefined && f.user !== q.user) continue;
      if (q.ip !== undefined && f.ip !== q.ip) continue;
      if (q.realm !== undefined && f.realm !== q.realm) continue;
      if (q.cause !== undefined && f.cause !== q.cause) continue;
      out.push(f);
    }
    return out;
  }

  /** Failed attempts in the window matching every given filter, most recently applied first. */
  failures(q: FailureQuery): AuthFailure[] {
    return this.#matching(q);
  }

  /** How many failed attempts in the window match every given filter. */
  countFailures(q: Omit<FailureQuery, 'limit'>): number {
    return this.#matching(q).length;
  }

  #countBy(q: WindowQuery, keyOf: (f: AuthFailure) => string | undefined): KeyCount[] {
    const counts = new Map<string, number>();
    for (const f of this.#matching(q)) {
      const k = keyOf(f);
      if (k !== undefined) counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    return [...counts].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
  }

  /** Failed attempts per user in the window, highest first (attempts without a user are left out). */
  countByUser(q: WindowQuery): KeyCount[] {
    return this.#countBy(q, (f) => f.user);
  }

  /** Failed attempts per source IP in the window, highest first. */
  countByIp(q: WindowQuery): KeyCount[] {
    return this.#countBy(q, (f) => f.ip);
  }

  /** Failed attempts per cause in the window, highest first. */
  countByCause(q: WindowQuery): KeyCount[] {
    return this.#countBy(q, (f) => f.cause);
  }

  /** Counts since the log began (not limited by the window capacity). */
  totals(): { succeeded: number; failed: Partial<Record<AuthFailureCause, number>> } {
    return { succeeded: this.#succeeded, failed: Object.fromEntries(this.#failedByCause) };
  }

  lastSuccess(user: string, realm: string): AuthSuccess | undefined {
    return this.#lastSuccess.get(`${user}@${realm}`);
  }

  /** Bans in force at `now`. */
  bans(now: number): Ban[] {
    return [...this.#bans.values()].filter((b) => b.until > now);
  }

  banned(scope: BanScope, value: string, now: number): Ban | undefined {
    const b = this.#bans.get(`${scope}\u0000${value}`);
    return b && b.until > now ? b : undefined;
  }

  truncate(): void {
    this.#ring = [];
    this.#nextSeq = 0;
    this.#byUser = new Map();
    this.#byIp = new Map();
    this.#succeeded = 0;
    this.#failedByCause = new Map();
    this.#lastSuccess = new Map();
    this.#bans = new Map();
  }

  toSnapshot(): AuditSnapshot {
    const failures: AuthFailure[] = [];
    const oldest = Math.max(0, this.#nextSeq - this.#capacity);
    for (let s = oldest; s < this.#nextSeq; s++) failures.push(this.#ring[s % this.#capacity]!);
    return {
      capacity: this.#capacity,
      failures,
      totals: { succeeded: this.#succeeded, failed: Object.fromEntries(this.#failedByCause) },
      lastSuccess: [...this.#lastSuccess.values()],
      bans: [...this.#bans.values()],
    };
  }

  restore(state: unknown): void {
    const s = state as Partial<AuditSnapshot> | null;
    if (!s || !Array.isArray(s.failures) || !s.totals || !Array.isArray(s.lastSuccess) || !Array.isArray(s.bans)) {
      throw new TypeError('malformed audit snapshot');
    }
    if (s.capacity !== this.#capacity) throw new TypeError('audit snapshot was taken with another capacity');
    this.truncate();
    for (const f of s.failures) this.#addFailure(f);
    this.#succeeded = s.totals.succeeded;
    this.#failedByCause = new Map(Object.entries(s.totals.failed));
    for (const x of s.lastSuccess) this.#lastSuccess.set(`${x.user}@${x.realm}`, x);
    for (const b of s.bans) this.#bans.set(`${b.scope}\u0000${b.value}`, b);
  }
}
