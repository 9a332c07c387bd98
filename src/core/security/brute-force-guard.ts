/**
 * The brute-force guard: counts failed authentications per source address and per user over
 * sliding windows and, when a threshold is crossed, produces a `ban.added` event for the caller to
 * append. The ban itself lives in the log, so it survives a restart and reaches every instance
 * sharing the log; `check` answers from the ban projection (plus the bans this guard has just
 * produced, until the log delivers them back).
 *
 * NAT awareness: an address from which N distinct users authenticated successfully in the recent
 * past (an office behind one public address) gets an IP threshold N times higher (bounded), and a
 * user who keeps failing is banned as a user, never by banning the address. One phone with a wrong
 * password behind an office NAT therefore locks out its own account for a while, not the office.
 *
 * What counts: only the configured causes (by default bad_password, unknown_user, malformed). A
 * challenge (no credentials) is never an event; stale_nonce and nonce_reused say nothing about the
 * password (the digest was right, the nonce old); identity_mismatch, realm_mismatch and
 * backend_unavailable are not guesses either. Per user, only failures that name an existing account
 * count (unknown_user and malformed have no account to protect).
 *
 * The guard is driven by event times only: `observe` never reads a clock, so the same events give
 * the same bans. Memory is bounded: at most `maxTracked` addresses and users, those not seen for
 * longest forgotten first (BoundedMap), and each window keeps at most as many timestamps as its
 * threshold.
 */
import type { Logger } from 'pino';
import { banAdded, type BanAddedEvent, type BanScope, type SipledgerEvent } from '../log/events.js';
import { canonicalBanValue, userKey, type BanReader } from './ban-values.js';
import { DEFAULT_BRUTE_FORCE, type BanAction, type BruteForceConfig, type ThresholdConfig } from './config.js';
import { BoundedMap } from './bounded-map.js';
import { CidrList, canonicalIp } from './ip.js';

export type BanVerdict =
  | { readonly banned: false }
  | { readonly banned: true; readonly scope: BanScope; readonly value: string; readonly until: number; readonly action: BanAction };

export interface BanCheck {
  /** The request's source address (the socket's, not what the message claims). */
  readonly ip: string;
  /** `user@realm` of the account the request claims, when known. */
  readonly user?: string;
  readonly now: number;
}

export interface BruteForceGuardOptions {
  readonly config?: BruteForceConfig;
  readonly bans: BanReader;
  /**
   * This instance's name (config `instance`). Only failures this instance recorded (event.instance
   * equal to this) produce a ban event, so instances sharing a log do not each write the same ban;
   * every instance still counts every failure, so an attack spread over instances is seen whole.
   */
  readonly instance?: string;
  readonly logger?: Logger;
}

export interface BruteForceStats {
  /** Ban events produced by this guard. */
  bansProduced: number;
  /** Failures counted toward a threshold. */
  failuresCounted: number;
  /** Failures seen but not counted (a cause that does not count, an exempt or already banned source). */
  failuresIgnored: number;
  /** Windows forgotten because maxTracked was reached. */
  readonly evicted: number;
}

const NOT_BANNED: BanVerdict = Object.freeze({ banned: false });

/** Recent failure times of one address or user, oldest first, at most `cap` of them. */
type Window = number[];

export class BruteForceGuard {
  readonly stats: BruteForceStats;
  readonly #config: BruteForceConfig;
  readonly #bans: BanReader;
  readonly #instance: string | undefined;
  readonly #logger: Logger | undefined;
  readonly #exempt: CidrList;
  readonly #counted: ReadonlySet<string>;
  /** Failure windows per address and per user, least recently used forgotten first. */
  readonly #ipFailures: BoundedMap<Window>;
  readonly #userFailures: BoundedMap<Window>;
  /** Per address: user@realm -> time of its last success from there, oldest first. */
  readonly #successes: BoundedMap<Map<string, number>>;
  /** Bans this guard produced or saw in the log: key -> until. Covers the gap before the projection has them. */
  readonly #known = new Map<string, number>();
  readonly #maxUsersPerIp: number;

  constructor(opts: BruteForceGuardOptions) {
    const evicted = (): number => this.#ipFailures.evicted + this.#userFailures.evicted + this.#successes.evicted;
    this.stats = {
      bansProduced: 0,
      failuresCounted: 0,
      failuresIgnored: 0,
      get evicted() {
        return evicted();
      },
    };
    this.#config = opts.config ?? DEFAULT_BRUTE_FORCE;
    this.#bans = opts.bans;
    this.#instance = opts.instance;
    this.#logger = opts.logger;
    this.#exempt = new CidrList(this.#config.exempt);
    this.#counted = new Set(this.#config.causes);
    this.#ipFailures = new BoundedMap(this.#config.maxTracked);
    this.#userFailures = new BoundedMap(this.#config.maxTracked);
    this.#successes = new BoundedMap(this.#config.maxTracked);
    const { perUser, maxMultiplier } = this.#config.nat;
    // Users beyond this many cannot raise the threshold further; no need to remember them.
    this.#maxUsersPerIp = perUser > 0 ? Math.max(1, Math.ceil((maxMultiplier - 1) / perUser)) : 0;
  }

  get config(): BruteForceConfig {
    return this.#config;
  }

  /** Addresses and users whose windows are held in memory. */
  get tracked(): { ips: number; users: number; successSources: number } {
    return { ips: this.#ipFailures.size, users: this.#userFailures.size, successSources: this.#successes.size };
  }

  /**
   * Feeds one event from the log (auth.succeeded, auth.failed, ban.added, ban.removed; others are
   * ignored). Returns the ban events to append: none, or one per threshold crossed by this event.
   * Register it after the ledger has caught up (Ledger.onEvent), so replaying history at start-up
   * never produces bans for old attacks.
   */
  observe(event: SipledgerEvent): BanAddedEvent[] {
    switch (event.type) {
      case 'auth.succeeded':
        this.#success(canonicalIp(event.source.address) ?? event.source.address, userKey(event.user, event.realm), event.time);
        return [];
      case 'auth.failed':
        return this.#failure(event);
      case 'ban.added': {
        const value = canonicalBanValue(event.scope, event.value);
        if (value === undefined) return [];
        const key = `${event.scope}\u0000${value}`;
        this.#known.set(key, event.until);
        this.#forget(event.scope, value);
        this.#boundKnown(event.time);
        return [];
      }
      case 'ban.removed': {
        const value = canonicalBanValue(event.scope, event.value);
        if (value === undefined) return [];
        this.#known.delete(`${event.scope}\u0000${value}`);
        // An operator lifted it: counting starts afresh, so the next failure does not re-ban at once.
        this.#forget(event.scope, value);
        return [];
      }
      default:
        return [];
    }
  }

  /**
   * Whether a request from `ip` (for `user`, when known) must be refused because of a ban in force
   * at `now`. An exempt address is never refused for an IP ban; a user ban applies from anywhere.
   */
  check(q: BanCheck): BanVerdict {
    const ip = canonicalIp(q.ip);
    if (ip !== undefined && !this.#exempt.has(ip)) {
      const v = this.#bannedAt('ip', ip, q.now);
      if (v) return v;
    }
    if (q.user !== undefined) {
      const user = canonicalBanValue('user', q.user);
      if (user !== undefined) {
        const v = this.#bannedAt('user', user, q.now);
        if (v) return v;
      }
    }
    return NOT_BANNED;
  }

  #bannedAt(scope: BanScope, value: string, now: number): BanVerdict | undefined {
    const ban = this.#bans.banned(scope, value, now);
    if (ban) return { banned: true, scope, value: ban.value, until: ban.until, action: this.#config.action };
    const until = this.#known.get(`${scope}\u0000${value}`);
    if (until !== undefined && until > now) return { banned: true, scope, value, until, action: this.#config.action };
    return undefined;
  }

  #isBanned(scope: BanScope, value: string, now: number): boolean {
    return this.#bannedAt(scope, value, now) !== undefined;
  }

  #success(ip: string, user: string, time: number): void {
    // The user proved the password: earlier failures of that account were typos or an old password.
    this.#userFailures.delete(user);
    if (this.#maxUsersPerIp === 0) return;
    let users = this.#successes.get(ip);
    if (!users) {
      users = new Map();
      this.#successes.set(ip, users);
    }
    const previous = users.get(user);
    if (previous === undefined && users.size >= this.#maxUsersPerIp) {
      // Full: the new user replaces the one whose last success is oldest (a small map, at most a
      // few dozen entries).
      let oldestKey: string | undefined;
      let oldest = Infinity;
      for (const [k, t] of users) if (t < oldest) [oldestKey, oldest] = [k, t];
      if (oldestKey !== undefined) users.delete(oldestKey);
    }
    users.set(user, previous !== undefined && previous > time ? previous : time);
  }

  /** Distinct users that authenticated from `ip` within the NAT window before `time`. */
  #recentUsers(ip: string, time: number): number {
    const users = this.#successes.get(ip);
    if (!users) return 0;
    const since = time - this.#config.nat.windowSeconds * 1000;
    let n = 0;
    for (const t of users.values()) if (t > since) n++;
    return n;
  }

  #ipThreshold(ip: string, time: number): { threshold: number; users: number } {
    const users = this.#recentUsers(ip, time);
    const { perUser, maxMultiplier } = this.#config.nat;
    const multiplier = Math.min(maxMultiplier, 1 + perUser * users);
    return { threshold: Math.ceil(this.#config.ip.failures * multiplier), users };
  }

  #failure(event: Extract<SipledgerEvent, { type: 'auth.failed' }>): BanAddedEvent[] {
    if (!this.#config.enabled || !this.#counted.has(event.cause)) {
      this.stats.failuresIgnored++;
      return [];
    }
    const time = event.time;
    const local = event.instance === this.#instance;
    const out: BanAddedEvent[] = [];
    let counted = false;

    const ip = canonicalIp(event.source.address);
    const ipCfg = this.#config.ip;
    if (ip !== undefined && ipCfg.failures > 0 && !this.#exempt.has(ip) && !this.#isBanned('ip', ip, time)) {
      counted = true;
      const { threshold, users } = this.#ipThreshold(ip, time);
      const n = this.#count(this.#ipFailures, ip, time, ipCfg, threshold);
      if (n >= threshold && local) {
        const nat = users > 0 ? `; threshold raised to ${threshold} for ${users} user(s) authenticated from this address` : '';
        out.push(this.#ban('ip', ip, time, ipCfg, `${n} failed authentications in ${ipCfg.windowSeconds} s${nat}`));
      }
    }

    const userCfg = this.#config.user;
    const accountCause = event.cause !== 'unknown_user' && event.cause !== 'malformed';
    // Without a realm there is no account to name (the request never reached a served domain).
    if (event.user !== undefined && event.user !== '' && event.realm !== '' && accountCause && userCfg.failures > 0) {
      const user = userKey(event.user, event.realm);
      if (!this.#isBanned('user', user, time)) {
        counted = true;
        const n = this.#count(this.#userFailures, user, time, userCfg, userCfg.failures);
        if (n >= userCfg.failures && local) {
          out.push(this.#ban('user', user, time, userCfg, `${n} failed authentications in ${userCfg.windowSeconds} s`));
        }
      }
    }
    if (counted) this.stats.failuresCounted++;
    else this.stats.failuresIgnored++;
    return out;
  }

  /** Adds a failure at `time` to the window of `key` and returns how many fall within the window. */
  #count(map: BoundedMap<Window>, key: string, time: number, cfg: ThresholdConfig, threshold: number): number {
    let w = map.get(key);
    if (!w) {
      w = [];
      map.set(key, w);
    }
    // Events from several instances may arrive slightly out of order: keep the window sorted.
    let i = w.length;
    while (i > 0 && w[i - 1]! > time) i--;
    w.splice(i, 0, time);
    const newest = w[w.length - 1]!;
    const since = newest - cfg.windowSeconds * 1000;
    let drop = 0;
    while (drop < w.length && w[drop]! <= since) drop++;
    // Only whether `threshold` failures fall in the window matters: older ones beyond that are noise.
    drop = Math.max(drop, w.length - threshold);
    if (drop > 0) w.splice(0, drop);
    return w.length;
  }

  #ban(scope: BanScope, value: string, time: number, cfg: ThresholdConfig, reason: string): BanAddedEvent {
    const until = time + cfg.banSeconds * 1000;
    this.#known.set(`${scope}\u0000${value}`, until);
    this.#forget(scope, value);
    this.#boundKnown(time);
    this.stats.bansProduced++;
    this.#logger?.warn({ scope, value, until: new Date(until).toISOString(), reason }, 'ban produced');
    return banAdded({ scope, value, until, reason }, { time, ...(this.#instance !== undefined ? { instance: this.#instance } : {}) });
  }

  #forget(scope: BanScope, value: string): void {
    if (scope === 'ip') this.#ipFailures.delete(value);
    else this.#userFailures.delete(value);
  }

  /** Keeps the known-ban table bounded: ended bans go first, then the oldest entries. */
  #boundKnown(time: number): void {
    if (this.#known.size <= this.#config.maxTracked) return;
    for (const [k, until] of this.#known) if (until <= time) this.#known.delete(k);
    while (this.#known.size > this.#config.maxTracked) this.#known.delete(this.#known.keys().next().value!);
  }
}
