/**
 * The destination filter: relaying to a protected address (a PSTN gateway, a media server, the
 * management network) is refused with `473 Filtered Destination` unless the request may reach it:
 * it came from an allowed source prefix, or its caller authenticated as an allowed user. This closes
 * the hole where an authenticated phone (or a forged Route) makes the proxy send requests to hosts
 * that trust the proxy's own address (seed 002, "IP blacklists").
 *
 * Check the address the request is about to be sent to, after DNS resolution: a host name that
 * resolves to a protected address is caught only there. An address that is not an IP literal
 * matches no rule and is allowed. As OpenSER's dst_blacklist entries, a rule may be limited to some
 * ports and transports.
 */
import type { DestinationFilterConfig, ProtectedDestinationConfig } from './config.js';
import { CidrList, parseIp, type IpAddress } from './ip.js';

export type DestinationVerdict = 'allow' | 'deny';
export type DestinationTransport = 'udp' | 'tcp' | 'tls';

/** Who is asking for the relay. */
export interface DestinationCaller {
  /** Source address of the request. */
  readonly ip?: string;
  /** `user@domain` the caller authenticated as, when it did. */
  readonly user?: string;
}

/**
 * 473 is not an RFC 3261 code: it is the answer of OpenSER's dst_blacklist (seed 002: requests that
 * hit a blacklist "will be automatically rejected by a 473"), kept so that operators and their
 * monitoring recognise it.
 */
export const FILTERED_DESTINATION_STATUS = 473;
export const FILTERED_DESTINATION_REASON = 'Filtered Destination';

interface Rule {
  readonly name: string;
  readonly addresses: CidrList;
  readonly ports: ReadonlySet<number> | undefined;
  readonly transports: ReadonlySet<string> | undefined;
  readonly allowSources: CidrList;
  readonly allowUsers: ReadonlySet<string>;
}

export interface DestinationFilterStats {
  denied: number;
  /** Relays to a protected destination let through by an allow-list. */
  allowedByRule: number;
}

export class DestinationFilter {
  readonly stats: DestinationFilterStats = { denied: 0, allowedByRule: 0 };
  readonly #rules: readonly Rule[];

  /** Throws a TypeError naming the first address or prefix that does not parse. */
  constructor(config: DestinationFilterConfig) {
    this.#rules = config.protected.map((d, i) => ruleOf(d, i));
  }

  /** True when no destination is protected (the filter can be skipped). */
  get empty(): boolean {
    return this.#rules.length === 0;
  }

  /** The name of the first rule protecting `address`:`port` (over `transport`), or undefined. */
  match(address: string, port: number, transport?: DestinationTransport): string | undefined {
    const ip = parseIp(address);
    if (!ip) return undefined;
    for (const r of this.#rules) if (covered(r, ip, port, transport)) return r.name;
    return undefined;
  }

  /**
   * 'deny' when `address`:`port` is protected by a rule whose allow-lists do not admit `caller`;
   * 'allow' otherwise. Every protecting rule must admit the caller.
   */
  check(address: string, port: number, caller: DestinationCaller = {}, transport?: DestinationTransport): DestinationVerdict {
    if (this.#rules.length === 0) return 'allow';
    const ip = parseIp(address);
    if (!ip) return 'allow';
    let protectedHit = false;
    for (const r of this.#rules) {
      if (!covered(r, ip, port, transport)) continue;
      protectedHit = true;
      if (!admits(r, caller)) {
        this.stats.denied++;
        return 'deny';
      }
    }
    if (protectedHit) this.stats.allowedByRule++;
    return 'allow';
  }
}

function covered(r: Rule, ip: IpAddress, port: number, transport: DestinationTransport | undefined): boolean {
  if (r.ports && !r.ports.has(port)) return false;
  // A rule limited to some transports covers a destination whose transport is unknown: fail closed.
  if (r.transports && transport !== undefined && !r.transports.has(transport)) return false;
  return r.addresses.has(ip);
}

function admits(r: Rule, caller: DestinationCaller): boolean {
  if (caller.ip !== undefined && r.allowSources.has(caller.ip)) return true;
  if (caller.user !== undefined && r.allowUsers.has(normalUser(caller.user))) return true;
  return false;
}

function normalUser(u: string): string {
  const at = u.lastIndexOf('@');
  return at === -1 ? u : `${u.slice(0, at)}@${u.slice(at + 1).toLowerCase()}`;
}

function ruleOf(d: ProtectedDestinationConfig, i: number): Rule {
  return {
    name: d.name ?? `protected[${i}]`,
    addresses: new CidrList(d.addresses),
    ports: d.ports && d.ports.length > 0 ? new Set(d.ports) : undefined,
    transports: d.transports && d.transports.length > 0 ? new Set(d.transports) : undefined,
    allowSources: new CidrList(d.allowSources ?? []),
    allowUsers: new Set((d.allowUsers ?? []).map(normalUser)),
  };
}
