/**
 * The `security:` section of the configuration: brute-force guard, flood limit, destination
 * filter. The JSON Schema fragment (config-fragment.json) checks shapes and ranges at load time;
 * `securityConfigFrom` fills in defaults and checks what a schema cannot (that each CIDR parses),
 * naming the key path of every problem.
 */
import { AUTH_FAILURE_CAUSES, type AuthFailureCause } from '../log/events.js';
import { parseCidr } from './ip.js';

export interface ThresholdConfig {
  /** Failures within the window that cause a ban; 0 turns this scope off. */
  readonly failures: number;
  readonly windowSeconds: number;
  readonly banSeconds: number;
}

export interface NatConfig {
  /** How long a successful authentication from an address counts in its favour. */
  readonly windowSeconds: number;
  /** Each distinct user seen authenticating from the address adds this many times the base threshold. */
  readonly perUser: number;
  /** The IP threshold never exceeds this many times the base threshold. */
  readonly maxMultiplier: number;
}

export type BanAction = 'reject' | 'drop';

export interface BruteForceConfig {
  /** Off: no automatic bans; bans in the log (added with `sipledger ban add`) are still enforced. */
  readonly enabled: boolean;
  /** What happens to a request from a banned source or for a banned user: 403, or no answer. */
  readonly action: BanAction;
  readonly ip: ThresholdConfig;
  readonly user: ThresholdConfig;
  readonly nat: NatConfig;
  /** Failure causes that count. Never a challenge (no_credentials is not an event). */
  readonly causes: readonly AuthFailureCause[];
  /** Addresses and prefixes never banned by IP (trusted gateways, the office's own NAT). */
  readonly exempt: readonly string[];
  /** Addresses and users tracked at most (least recently seen forgotten first). */
  readonly maxTracked: number;
}

export interface FloodConfig {
  readonly enabled: boolean;
  /** Requests allowed per source address per window. */
  readonly requests: number;
  readonly windowSeconds: number;
  /** A source over the limit is logged at most once per this many seconds. */
  readonly logIntervalSeconds: number;
  /** Source addresses tracked at most (least recently seen forgotten first). */
  readonly maxTracked: number;
  /** Sources never limited (trusted gateways, load balancers). */
  readonly exempt: readonly string[];
}

export interface ProtectedDestinationConfig {
  /** A name for logs and metrics. */
  readonly name?: string;
  /** Addresses and CIDR prefixes, IPv4 or IPv6. */
  readonly addresses: readonly string[];
  /** Only these ports are protected; every port when absent. */
  readonly ports?: readonly number[];
  /** Only these transports are protected; every transport when absent. */
  readonly transports?: ReadonlyArray<'udp' | 'tcp' | 'tls'>;
  /** Requests received from these prefixes may be relayed here. */
  readonly allowSources?: readonly string[];
  /** Requests whose caller authenticated as one of these (`user@domain`) may be relayed here. */
  readonly allowUsers?: readonly string[];
}

export interface DestinationFilterConfig {
  readonly protected: readonly ProtectedDestinationConfig[];
}

export interface SecurityConfig {
  readonly bruteForce: BruteForceConfig;
  readonly flood: FloodConfig;
  readonly destinations: DestinationFilterConfig;
}

/** Failures that say something about the password or the account; see docs/security.md. */
export const DEFAULT_COUNTED_CAUSES: readonly AuthFailureCause[] = ['bad_password', 'unknown_user', 'malformed'];

export const DEFAULT_BRUTE_FORCE: BruteForceConfig = {
  enabled: true,
  action: 'reject',
  ip: { failures: 20, windowSeconds: 60, banSeconds: 600 },
  user: { failures: 10, windowSeconds: 300, banSeconds: 300 },
  nat: { windowSeconds: 3600, perUser: 1, maxMultiplier: 20 },
  causes: DEFAULT_COUNTED_CAUSES,
  exempt: [],
  maxTracked: 100_000,
};

export const DEFAULT_FLOOD: FloodConfig = {
  enabled: true,
  requests: 100,
  windowSeconds: 2,
  logIntervalSeconds: 10,
  maxTracked: 100_000,
  // Local tools and health checks on the same host are not an attack.
  exempt: ['127.0.0.0/8', '::1'],
};

export const DEFAULT_SECURITY: SecurityConfig = {
  bruteForce: DEFAULT_BRUTE_FORCE,
  flood: DEFAULT_FLOOD,
  destinations: { protected: [] },
};

export interface SecurityConfigProblem {
  /** Key path from the top of the configuration file, e.g. `security.flood.exempt[2]`. */
  readonly path: string;
  readonly message: string;
}

export class SecurityConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(readonly problems: readonly SecurityConfigProblem[]) {
    super(`invalid security configuration\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`);
    this.name = 'SecurityConfigError';
  }
}

/** Shapes as they come from the file (already checked by the schema fragment), every key optional. */
export interface SecurityConfigInput {
  readonly bruteForce?: Partial<Omit<BruteForceConfig, 'ip' | 'user' | 'nat'>> & {
    readonly ip?: Partial<ThresholdConfig>;
    readonly user?: Partial<ThresholdConfig>;
    readonly nat?: Partial<NatConfig>;
  };
  readonly flood?: Partial<FloodConfig>;
  readonly destinations?: Partial<DestinationFilterConfig>;
}

/**
 * The complete security configuration: `input` (the `security:` mapping, or undefined) over the
 * defaults. Throws SecurityConfigError listing every address or prefix that does not parse and every
 * value out of range, each with its key path.
 */
export function securityConfigFrom(input: SecurityConfigInput | undefined, base = 'security'): SecurityConfig {
  const raw = input ?? {};
  const bf = raw.bruteForce ?? {};
  const bruteForce: BruteForceConfig = {
    ...DEFAULT_BRUTE_FORCE,
    ...bf,
    ip: { ...DEFAULT_BRUTE_FORCE.ip, ...(bf.ip ?? {}) },
    user: { ...DEFAULT_BRUTE_FORCE.user, ...(bf.user ?? {}) },
    nat: { ...DEFAULT_BRUTE_FORCE.nat, ...(bf.nat ?? {}) },
  };
  const flood: FloodConfig = { ...DEFAULT_FLOOD, ...(raw.flood ?? {}) };
  const destinations: DestinationFilterConfig = { protected: raw.destinations?.protected ?? [] };

  const problems: SecurityConfigProblem[] = [];
  const prefixes = (list: readonly string[] | undefined, p: string): void => {
    (list ?? []).forEach((text, i) => {
      if (typeof text !== 'string' || !parseCidr(text)) problems.push({ path: `${p}[${i}]`, message: `'${String(text)}' is not an IP address or CIDR prefix` });
    });
  };
  const positive = (v: unknown, p: string, min: number): void => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) problems.push({ path: p, message: `must be a number >= ${min}` });
  };
  for (const scope of ['ip', 'user'] as const) {
    positive(bruteForce[scope].failures, `${base}.bruteForce.${scope}.failures`, 0);
    positive(bruteForce[scope].windowSeconds, `${base}.bruteForce.${scope}.windowSeconds`, 1);
    positive(bruteForce[scope].banSeconds, `${base}.bruteForce.${scope}.banSeconds`, 1);
  }
  positive(bruteForce.nat.windowSeconds, `${base}.bruteForce.nat.windowSeconds`, 0);
  positive(bruteForce.nat.perUser, `${base}.bruteForce.nat.perUser`, 0);
  positive(bruteForce.nat.maxMultiplier, `${base}.bruteForce.nat.maxMultiplier`, 1);
  positive(bruteForce.maxTracked, `${base}.bruteForce.maxTracked`, 1);
  if (bruteForce.action !== 'reject' && bruteForce.action !== 'drop') {
    problems.push({ path: `${base}.bruteForce.action`, message: "must be 'reject' or 'drop'" });
  }
  bruteForce.causes.forEach((c, i) => {
    if (!AUTH_FAILURE_CAUSES.includes(c)) problems.push({ path: `${base}.bruteForce.causes[${i}]`, message: `'${String(c)}' is not an authentication failure cause` });
  });
  prefixes(bruteForce.exempt, `${base}.bruteForce.exempt`);
  positive(flood.requests, `${base}.flood.requests`, 1);
  positive(flood.windowSeconds, `${base}.flood.windowSeconds`, 0.001);
  positive(flood.logIntervalSeconds, `${base}.flood.logIntervalSeconds`, 0);
  positive(flood.maxTracked, `${base}.flood.maxTracked`, 1);
  prefixes(flood.exempt, `${base}.flood.exempt`);
  destinations.protected.forEach((d, i) => {
    const p = `${base}.destinations.protected[${i}]`;
    if (!d.addresses || d.addresses.length === 0) problems.push({ path: `${p}.addresses`, message: 'needs at least one address or prefix' });
    prefixes(d.addresses, `${p}.addresses`);
    prefixes(d.allowSources, `${p}.allowSources`);
    (d.ports ?? []).forEach((port, j) => {
      if (!Number.isInteger(port) || port < 1 || port > 65535) problems.push({ path: `${p}.ports[${j}]`, message: 'must be a port number 1-65535' });
    });
    (d.transports ?? []).forEach((t, j) => {
      if (t !== 'udp' && t !== 'tcp' && t !== 'tls') problems.push({ path: `${p}.transports[${j}]`, message: "must be 'udp', 'tcp' or 'tls'" });
    });
    (d.allowUsers ?? []).forEach((u, j) => {
      if (typeof u !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(u)) problems.push({ path: `${p}.allowUsers[${j}]`, message: "must be 'user@domain'" });
    });
  });
  if (problems.length) throw new SecurityConfigError(problems);
  return { bruteForce, flood, destinations };
}
