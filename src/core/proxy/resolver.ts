/**
 * Next-hop resolution for relayed requests (RFC 3263 s4): transport, then SRV, then A/AAAA.
 * NAPTR is not consulted (node:dns has it, but deployed SIP domains almost always publish SRV
 * directly and the RFC allows falling back to SRV when NAPTR is absent).
 */
import { promises as dnsPromises } from 'node:dns';
import { isIP } from 'node:net';
import type { SipUri } from '../sip/uri.js';

export type TransportName = 'udp' | 'tcp' | 'tls';

export interface Hop {
  readonly address: string;
  readonly port: number;
  readonly transport: TransportName;
}

export interface DnsLike {
  resolveSrv(name: string): Promise<Array<{ name: string; port: number; priority: number; weight: number }>>;
  lookup(host: string, opts: { all: true }): Promise<Array<{ address: string; family: number }>>;
}

export class ResolveError extends Error {
  readonly code = 'SIP_RESOLVE_FAILED';
  readonly retriable = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const SYSTEM_DNS: DnsLike = {
  resolveSrv: (name) => dnsPromises.resolveSrv(name),
  lookup: (host, opts) => dnsPromises.lookup(host, opts),
};

export class Resolver {
  constructor(
    private readonly dns: DnsLike = SYSTEM_DNS,
    private readonly timeoutMs = 2000,
  ) {}

  /**
   * Ordered candidate hops for a URI. The caller tries them in order (RFC 3263 s4.3: on failure of
   * one, the next).
   */
  async resolve(uri: SipUri): Promise<Hop[]> {
    const maddr = uri.params.get('maddr');
    const host = stripBrackets(maddr ?? uri.host);
    const tparam = (uri.params.get('transport') ?? '').toLowerCase();
    let transport: TransportName = uri.scheme === 'sips' ? 'tls' : tparam === 'tcp' ? 'tcp' : tparam === 'tls' ? 'tls' : 'udp';
    if (uri.scheme === 'sips' && tparam === 'tcp') transport = 'tls';
    const defaultPort = transport === 'tls' ? 5061 : 5060;

    // s4.2: "If the TARGET was a numeric IP address, the client uses that address. If the URI also
    // contains a port, it uses that port. If no port is specified, it uses the default port".
    if (isIP(host)) return [{ address: host, port: uri.port ?? defaultPort, transport }];

    // s4.2: "If the TARGET was not a numeric IP address, but a port is present in the URI, the
    // client performs an A or AAAA record lookup of the domain name."
    if (uri.port !== undefined) {
      const addrs = await this.withTimeout(this.dns.lookup(host, { all: true }), host);
      return addrs.map((a) => ({ address: a.address, port: uri.port!, transport }));
    }

    // s4.2: "If the TARGET was not a numeric IP address, and no port was present in the URI, the
    // client performs an SRV query on the record returned from the NAPTR processing ... or
    // _sips._tcp / _sip._tcp / _sip._udp".
    const service = transport === 'tls' ? '_sips._tcp' : transport === 'tcp' ? '_sip._tcp' : '_sip._udp';
    let srv: Array<{ name: string; port: number; priority: number; weight: number }> = [];
    try {
      srv = await this.withTimeout(this.dns.resolveSrv(`${service}.${host}`), host);
    } catch {
      srv = [];
    }
    if (srv.length > 0) {
      const hops: Hop[] = [];
      for (const rec of orderSrv(srv)) {
        try {
          const addrs = await this.withTimeout(this.dns.lookup(rec.name, { all: true }), rec.name);
          for (const a of addrs) hops.push({ address: a.address, port: rec.port, transport });
        } catch {
          // an SRV target without addresses is skipped; the next one is tried
        }
      }
      if (hops.length > 0) return hops;
    }
    // "If no SRV records were found, the client performs an A or AAAA record lookup of the domain name."
    const addrs = await this.withTimeout(this.dns.lookup(host, { all: true }), host);
    return addrs.map((a) => ({ address: a.address, port: defaultPort, transport }));
  }

  private async withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, rej) => {
          timer = setTimeout(() => rej(new ResolveError(`DNS lookup of ${what} timed out`)), this.timeoutMs);
        }),
      ]);
    } catch (err) {
      if (err instanceof ResolveError) throw err;
      throw new ResolveError(`DNS lookup of ${what} failed`, { cause: err });
    } finally {
      if (timer) clearTimeout(timer);
    }
  }
}

/** RFC 2782 ordering: by priority, then weighted random within a priority. */
function orderSrv<T extends { priority: number; weight: number }>(records: T[]): T[] {
  const byPriority = new Map<number, T[]>();
  for (const r of records) {
    const list = byPriority.get(r.priority) ?? [];
    list.push(r);
    byPriority.set(r.priority, list);
  }
  const out: T[] = [];
  for (const prio of [...byPriority.keys()].sort((a, b) => a - b)) {
    const pool = byPriority.get(prio)!.slice();
    while (pool.length) {
      const total = pool.reduce((s, r) => s + r.weight, 0);
      let pick = Math.random() * (total || 1);
      let idx = 0;
      if (total > 0) {
        for (; idx < pool.length - 1; idx++) {
          pick -= pool[idx]!.weight;
          if (pick < 0) break;
        }
      }
      out.push(pool.splice(idx, 1)[0]!);
    }
  }
  return out;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
