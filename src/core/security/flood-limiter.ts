/**
 * The flood limit (what Kamailio's pike module does): a request rate per source address. A source
 * over `requests` per `windowSeconds` has its requests dropped while other sources keep being served.
 *
 * The rate is a sliding window estimated from two fixed windows (the previous one weighted by how
 * much of it still overlaps the sliding window, plus the current one): constant memory per source
 * and no timer. Dropped requests count too, as with pike: a source that keeps flooding stays blocked
 * until its own rate falls below the limit, rather than being served a trickle of its flood.
 *
 * Memory is bounded: at most `maxTracked` sources, those not seen for longest forgotten first
 * (BoundedMap), so a flood from a million spoofed addresses costs a fixed amount of memory and a
 * real flooder (seen on every request) is never the one forgotten. Time is given by the caller; nothing here reads a clock.
 */
import { DEFAULT_FLOOD, type FloodConfig } from './config.js';
import { BoundedMap } from './bounded-map.js';
import { CidrList, canonicalIp } from './ip.js';

export type FloodDecision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      /** True at most once per logIntervalSeconds per source: the caller logs this one. */
      readonly log: boolean;
      /** Requests from this source dropped since it was last logged (this one included). */
      readonly droppedSinceLog: number;
    };

export interface FloodStats {
  /** Requests allowed (exempt sources included). */
  allowed: number;
  /** Requests dropped over the limit. */
  dropped: number;
  /** Sources forgotten because maxTracked was reached. */
  readonly evicted: number;
  /** Sources held in memory now. */
  readonly tracked: number;
}

interface Source {
  /** Index of the current fixed window (floor(now / window)). */
  index: number;
  current: number;
  previous: number;
  lastLog: number;
  droppedSinceLog: number;
}

const ALLOWED: FloodDecision = Object.freeze({ allowed: true });

export class FloodLimiter {
  readonly stats: FloodStats;
  readonly #config: FloodConfig;
  readonly #windowMs: number;
  readonly #logMs: number;
  readonly #exempt: CidrList;
  readonly #sources: BoundedMap<Source>;

  constructor(config: FloodConfig = DEFAULT_FLOOD) {
    this.#config = config;
    this.#windowMs = config.windowSeconds * 1000;
    this.#logMs = config.logIntervalSeconds * 1000;
    this.#exempt = new CidrList(config.exempt);
    const sources = (this.#sources = new BoundedMap<Source>(config.maxTracked));
    this.stats = {
      allowed: 0,
      dropped: 0,
      get evicted() {
        return sources.evicted;
      },
      get tracked() {
        return sources.size;
      },
    };
  }

  get config(): FloodConfig {
    return this.#config;
  }

  /** True when a request from `ip` at `now` (epoch ms) is within the limit. */
  allow(ip: string, now: number): boolean {
    return this.admit(ip, now).allowed;
  }

  /** Counts a request from `ip` at `now` and says whether to serve it, and whether to log the drop. */
  admit(ip: string, now: number): FloodDecision {
    if (!this.#config.enabled) {
      this.stats.allowed++;
      return ALLOWED;
    }
    const key = sourceKey(ip);
    if (this.#exempt.size > 0 && this.#exempt.has(key)) {
      this.stats.allowed++;
      return ALLOWED;
    }
    const index = Math.floor(now / this.#windowMs);
    let s = this.#sources.get(key);
    if (s) {
      if (index !== s.index) {
        s.previous = index === s.index + 1 ? s.current : 0;
        s.current = 0;
        s.index = index;
      }
    } else {
      s = { index, current: 0, previous: 0, lastLog: -Infinity, droppedSinceLog: 0 };
      this.#sources.set(key, s);
    }
    s.current++;
    const elapsed = (now - index * this.#windowMs) / this.#windowMs;
    const rate = s.previous * (1 - elapsed) + s.current;
    if (rate <= this.#config.requests) {
      this.stats.allowed++;
      return ALLOWED;
    }
    this.stats.dropped++;
    s.droppedSinceLog++;
    if (now - s.lastLog >= this.#logMs) {
      const dropped = s.droppedSinceLog;
      s.lastLog = now;
      s.droppedSinceLog = 0;
      return { allowed: false, log: true, droppedSinceLog: dropped };
    }
    return { allowed: false, log: false, droppedSinceLog: s.droppedSinceLog };
  }

  /** Forgets every source (a reload with a new limit). */
  clear(): void {
    this.#sources.clear();
  }
}

/**
 * The table key of a source: the address as the socket reports it, which is canonical already for
 * IPv4; IPv6 and mapped spellings are canonicalised so one host is one entry.
 */
function sourceKey(ip: string): string {
  if (!ip.includes(':')) return ip;
  return canonicalIp(ip) ?? ip;
}
