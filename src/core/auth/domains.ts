/**
 * Served domains and their backends (Kamailio: several auth backends in parallel, one per domain).
 *
 * Checked once when built: every problem is an {@link AuthConfigError} naming the key, so a bad
 * configuration stops start-up instead of failing the first request.
 */
import type { AuthBackend, DigestAlgorithm } from './backend.js';
import { DIGEST_ALGORITHMS, strongestFirst } from './digest.js';
import { AuthConfigError } from './errors.js';

/** One served domain as configured. */
export interface DomainAuth {
  /** The SIP domain (host part of To/From URIs), matched case-insensitively. */
  readonly domain: string;
  /** The digest realm offered in challenges. Default: the domain (Kamailio's empty-realm rule). */
  readonly realm?: string;
  readonly backend: AuthBackend;
  /** Algorithms offered, in any order; challenges go out strongest first. Default ['MD5']. */
  readonly algorithms?: readonly DigestAlgorithm[];
  /** Other host names for the same domain (e.g. the proxy's IP address), matched case-insensitively. */
  readonly aliases?: readonly string[];
}

/** A served domain after validation. */
export interface ResolvedDomain {
  /** Canonical lower-case domain name. */
  readonly domain: string;
  readonly realm: string;
  readonly backend: AuthBackend;
  /** Algorithms actually offered, strongest first (for a verifier: only those it can check). */
  readonly algorithms: readonly DigestAlgorithm[];
  /** The domain and its aliases, lower-case. */
  readonly names: readonly string[];
}

/** Lower-case, without surrounding space or a trailing dot (`example.com.` is `example.com`). */
export function normalizeDomain(domain: string): string {
  const d = domain.trim().toLowerCase();
  return d.endsWith('.') ? d.slice(0, -1) : d;
}

export class DomainTable {
  readonly #byName = new Map<string, ResolvedDomain>();
  readonly #byRealm = new Map<string, ResolvedDomain>();
  readonly #all: ResolvedDomain[] = [];
  /** Algorithms dropped because a verifier cannot check them, for a start-up warning. */
  readonly dropped: ReadonlyArray<{ readonly domain: string; readonly algorithms: readonly DigestAlgorithm[] }>;

  constructor(domains: readonly DomainAuth[]) {
    if (!Array.isArray(domains) || domains.length === 0) {
      throw new AuthConfigError('domains', 'at least one served domain is required');
    }
    const dropped: Array<{ domain: string; algorithms: DigestAlgorithm[] }> = [];
    domains.forEach((d, i) => {
      const key = `domains[${i}]`;
      if (typeof d.domain !== 'string' || normalizeDomain(d.domain) === '') throw new AuthConfigError(`${key}.domain`, 'must be a non-empty host name');
      const domain = normalizeDomain(d.domain);
      const realm = d.realm ?? domain;
      if (typeof realm !== 'string' || realm.trim() === '' || /["\\\r\n]/.test(realm)) {
        throw new AuthConfigError(`${key}.realm`, 'must be a non-empty string without quotes, backslashes or line breaks');
      }
      if (d.backend === undefined || d.backend === null || (d.backend.kind !== 'store' && d.backend.kind !== 'verifier')) {
        throw new AuthConfigError(`${key}.backend`, 'must be a credential store or a digest verifier');
      }
      const configured = d.algorithms ?? ['MD5'];
      if (!Array.isArray(configured) || configured.length === 0) throw new AuthConfigError(`${key}.algorithms`, 'must list at least one algorithm');
      for (const a of configured) {
        if (!DIGEST_ALGORITHMS.includes(a)) {
          throw new AuthConfigError(`${key}.algorithms`, `unknown algorithm ${String(a)} (known: ${DIGEST_ALGORITHMS.join(', ')})`);
        }
      }
      let algorithms = strongestFirst(configured);
      if (d.backend.kind === 'verifier') {
        // A verifier checks the digest itself; offering an algorithm it cannot check would reject
        // every honest phone that picks it.
        const supported = new Set(d.backend.algorithms);
        const unsupported = algorithms.filter((a) => !supported.has(a));
        algorithms = algorithms.filter((a) => supported.has(a));
        if (algorithms.length === 0) {
          throw new AuthConfigError(
            `${key}.algorithms`,
            `backend ${d.backend.name} can check only ${d.backend.algorithms.join(', ') || 'nothing'}; none of ${configured.join(', ')}`,
          );
        }
        if (unsupported.length > 0) dropped.push({ domain, algorithms: unsupported });
      }
      const names = [domain, ...(d.aliases ?? []).map(normalizeDomain)];
      const resolved: ResolvedDomain = { domain, realm, backend: d.backend, algorithms, names: [...new Set(names)] };
      for (const name of resolved.names) {
        if (name === '') throw new AuthConfigError(`${key}.aliases`, 'must not contain an empty name');
        if (this.#byName.has(name)) throw new AuthConfigError(`${key}.domain`, `${name} is served twice`);
        this.#byName.set(name, resolved);
      }
      const realmKey = realm.toLowerCase();
      if (this.#byRealm.has(realmKey)) throw new AuthConfigError(`${key}.realm`, `realm ${realm} is used by two domains`);
      this.#byRealm.set(realmKey, resolved);
      this.#all.push(resolved);
    });
    this.dropped = dropped;
  }

  /** The served domain for a host name (case-insensitive), or undefined. */
  get(domain: string): ResolvedDomain | undefined {
    return this.#byName.get(normalizeDomain(domain));
  }

  /** The served domain whose realm is `realm` (case-insensitive), or undefined. */
  byRealm(realm: string): ResolvedDomain | undefined {
    return this.#byRealm.get(realm.toLowerCase());
  }

  all(): readonly ResolvedDomain[] {
    return this.#all;
  }
}
