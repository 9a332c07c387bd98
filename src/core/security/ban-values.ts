/**
 * What a ban names, and the one spelling of it every writer and reader agrees on, so that a ban
 * added as `::ffff:203.0.113.9` is found for a request from `203.0.113.9`, and a user ban added for
 * `alice@Example.COM` is found for `alice@example.com`.
 */
import type { BanScope } from '../log/events.js';
import { canonicalIp, formatCidr, parseCidr } from './ip.js';

/** A ban in force, as the guard and the CLI see it. */
export interface BanView {
  readonly scope: BanScope;
  readonly value: string;
  /** Epoch ms; in force while until > now. */
  readonly until: number;
  readonly reason: string;
  /** Epoch ms of the ban.added event. */
  readonly since: number;
}

/** What the brute-force guard needs of the ban projection. */
export interface BanReader {
  /**
   * The ban in force at `now` for `value` in `scope`. For scope 'ip' the value is an address and a
   * ban of a prefix holding it counts.
   */
  banned(scope: BanScope, value: string, now: number): BanView | undefined;
}

/** The key of a user ban: `user@realm`, the user part as authenticated, the realm lowercased. */
export function userKey(user: string, realm: string): string {
  return `${user}@${realm.toLowerCase()}`;
}

/**
 * The canonical value of a ban, or undefined when it names nothing a request could match:
 * scope 'ip' takes an address (canonical text) or a CIDR prefix (`net/len`, canonical, a host
 * prefix becoming the bare address); scope 'user' takes `user@realm` (realm lowercased).
 */
export function canonicalBanValue(scope: BanScope, value: string): string | undefined {
  const v = value.trim();
  if (v === '') return undefined;
  if (scope === 'ip') {
    if (!v.includes('/')) return canonicalIp(v);
    const c = parseCidr(v);
    if (!c) return undefined;
    const host = c.family === 4 ? 32 : 128;
    return c.prefix === host ? canonicalIp(formatCidr(c).split('/')[0]!) : formatCidr(c);
  }
  const at = v.lastIndexOf('@');
  if (at <= 0 || at === v.length - 1) return undefined;
  return userKey(v.slice(0, at), v.slice(at + 1));
}
