/**
 * Bans in force: scope ('ip' or 'user') and value -> until, rebuilt from ban.added / ban.removed.
 * The brute-force guard consults it per request and the `sipledger ban` command lists it; because it
 * is fed from the log like every projection, a ban survives a restart and reaches every instance
 * sharing the log.
 *
 * Rules:
 * - values are canonicalised on apply (see canonicalBanValue), so `::ffff:203.0.113.9` and
 *   `203.0.113.9` are one ban; an 'ip' value may be a CIDR prefix, which bans every address in it;
 * - the newest ban.added for a value replaces the previous one (an operator can shorten a ban by
 *   adding it again with an earlier end); ban.removed lifts it; a ban lifting a prefix does not lift
 *   a ban of an address inside it, nor the other way round;
 * - expiry is `until > now` with `now` given by the caller (DESIGN.md, contract 1); bans that ended
 *   long before the newest event applied are purged, so memory holds what is in force.
 *
 * `apply` reads no clock: purging is driven by event times alone, so a replay and a live run that see
 * the same events hold the same state.
 */
import type { BanScope, SipledgerEvent } from '../core/log/events.js';
import type { Projection } from '../core/log/projection.js';
import { canonicalBanValue, type BanReader, type BanView } from '../core/security/ban-values.js';
import { cidrContains, parseCidr, parseIp, type Cidr } from '../core/security/ip.js';

export interface Ban extends BanView {
  /** The instance that wrote the ban.added (absent for single-instance logs and the CLI). */
  readonly instance?: string;
}

export interface BansSnapshot {
  readonly bans: Ban[];
  readonly newestTime: number;
  readonly purgeAt: number;
}

/**
 * How long after the newest event time an ended ban is still kept. Purging never changes an answer
 * for a query time at or after the events; the margin covers instances whose clocks lag the writers'.
 */
const PURGE_MARGIN_MS = 10 * 60_000;
/** Purge when the table has doubled since the last purge, and never below this size. */
const MIN_PURGE_SIZE = 1024;

function keyOf(scope: BanScope, value: string): string {
  return `${scope}\u0000${value}`;
}

export class BansProjection implements Projection, BanReader {
  readonly name = 'bans';
  readonly version = 1;
  #bans = new Map<string, Ban>();
  /** Prefix bans, also in #bans; kept apart so an address lookup scans only these. */
  #prefixes = new Map<string, { cidr: Cidr; ban: Ban }>();
  #newestTime = 0;
  #purgeAt = MIN_PURGE_SIZE;

  apply(event: SipledgerEvent): void {
    if (event.time > this.#newestTime) this.#newestTime = event.time;
    switch (event.type) {
      case 'ban.added': {
        const value = canonicalBanValue(event.scope, event.value);
        // A value that names no address or user can never match a request; nothing to keep.
        if (value === undefined) return;
        const ban: Ban = {
          scope: event.scope,
          value,
          until: event.until,
          reason: event.reason,
          since: event.time,
          ...(event.instance !== undefined ? { instance: event.instance } : {}),
        };
        this.#set(ban);
        if (this.#bans.size > this.#purgeAt) this.#purge();
        break;
      }
      case 'ban.removed': {
        const value = canonicalBanValue(event.scope, event.value);
        if (value === undefined) return;
        this.#bans.delete(keyOf(event.scope, value));
        this.#prefixes.delete(value);
        break;
      }
      default:
        break;
    }
  }

  #set(ban: Ban): void {
    this.#bans.set(keyOf(ban.scope, ban.value), ban);
    if (ban.scope === 'ip' && ban.value.includes('/')) this.#prefixes.set(ban.value, { cidr: parseCidr(ban.value)!, ban });
  }

  #purge(): void {
    const horizon = this.#newestTime - PURGE_MARGIN_MS;
    for (const [k, b] of this.#bans) {
      if (b.until > horizon) continue;
      this.#bans.delete(k);
      if (b.scope === 'ip') this.#prefixes.delete(b.value);
    }
    this.#purgeAt = Math.max(MIN_PURGE_SIZE, 2 * this.#bans.size);
  }

  /**
   * The ban in force at `now`. For scope 'ip', `value` is an address: its own ban first, else the
   * ban of a prefix that holds it (the one ending last). For 'user', `value` is `user@realm`.
   */
  banned(scope: BanScope, value: string, now: number): Ban | undefined {
    const canonical = canonicalBanValue(scope, value);
    if (canonical === undefined) return undefined;
    const own = this.#bans.get(keyOf(scope, canonical));
    if (own && own.until > now) return own;
    if (scope !== 'ip' || this.#prefixes.size === 0) return undefined;
    const ip = parseIp(canonical);
    if (!ip) return undefined;
    let best: Ban | undefined;
    for (const { cidr, ban } of this.#prefixes.values()) {
      if (ban.until > now && cidrContains(cidr, ip) && (!best || ban.until > best.until)) best = ban;
    }
    return best;
  }

  /** The ban recorded for exactly this value (a prefix for a prefix), in force or not. */
  get(scope: BanScope, value: string): Ban | undefined {
    const canonical = canonicalBanValue(scope, value);
    return canonical === undefined ? undefined : this.#bans.get(keyOf(scope, canonical));
  }

  /** Bans in force at `now`, those ending first first. */
  active(now: number): Ban[] {
    const out: Ban[] = [];
    for (const b of this.#bans.values()) if (b.until > now) out.push(b);
    return out.sort((a, b) => a.until - b.until || (a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : 0) || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  }

  /** How many bans are in force at `now`. */
  count(now: number): number {
    let n = 0;
    for (const b of this.#bans.values()) if (b.until > now) n++;
    return n;
  }

  /** Entries held in memory, ended ones not yet purged included (for metrics and tests). */
  get size(): number {
    return this.#bans.size;
  }

  truncate(): void {
    this.#bans = new Map();
    this.#prefixes = new Map();
    this.#newestTime = 0;
    this.#purgeAt = MIN_PURGE_SIZE;
  }

  toSnapshot(): BansSnapshot {
    return { bans: [...this.#bans.values()], newestTime: this.#newestTime, purgeAt: this.#purgeAt };
  }

  restore(state: unknown): void {
    const s = state as Partial<BansSnapshot> | null;
    if (!s || !Array.isArray(s.bans) || typeof s.newestTime !== 'number' || typeof s.purgeAt !== 'number') {
      throw new TypeError('malformed bans snapshot');
    }
    for (const b of s.bans) {
      const ok =
        b !== null &&
        typeof b === 'object' &&
        (b.scope === 'ip' || b.scope === 'user') &&
        typeof b.value === 'string' &&
        canonicalBanValue(b.scope, b.value) === b.value &&
        typeof b.until === 'number' &&
        typeof b.since === 'number' &&
        typeof b.reason === 'string';
      if (!ok) throw new TypeError('malformed ban in bans snapshot');
    }
    this.truncate();
    for (const b of s.bans) this.#set(b);
    this.#newestTime = s.newestTime;
    this.#purgeAt = s.purgeAt;
  }
}
