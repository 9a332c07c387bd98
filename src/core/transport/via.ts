import { isIP } from 'node:net';
import { type SipMessage, type SipRequest, type Source, type Transport, type Via, formatVia, parseVia, splitCommaList } from '../sip/index.js';

/**
 * The top Via value, parsed on its own: an answer only needs the top one, and a request whose lower
 * Via values are malformed must still get its 400 (SipMessage.topVia() parses them all).
 */
export function firstVia(msg: SipMessage): Via | undefined {
  const row = msg.headers.find((h) => h.key === 'via');
  if (!row) return undefined;
  const first = splitCommaList(row.value)[0];
  return first === undefined ? undefined : parseVia(first);
}

/**
 * Records where a request really came from in its top Via, before anyone else looks at it.
 *
 * RFC 3261 s18.2.1: "If the host portion of the "sent-by" field contains a domain name, or if it
 * contains an IP address that differs from the packet source address, the server MUST add a
 * "received" parameter to that Via header field value."
 *
 * RFC 3581 s4: "If this Via header field value contains an "rport" parameter with no value, it
 * MUST set the value of the parameter to the source port of the request ... the server MUST
 * insert a "received" parameter containing the source IP address that the request came from,
 * even if it is identical to the value of the "sent-by" component."
 *
 * Returns true when the top Via was rewritten.
 */
export function stampVia(req: SipRequest, source: Pick<Source, 'address' | 'port'>): boolean {
  const via = firstVia(req);
  if (!via) return false;
  const rport = via.params.get('rport');
  const wantsRport = via.params.has('rport') && (rport === null || rport === '');
  const differs = !sameHost(via.host, source.address);
  if (!wantsRport && !differs) return false;
  const params = new Map(via.params);
  // received before rport reads naturally, but Map.set keeps an existing key's place.
  params.set('received', source.address);
  if (wantsRport) params.set('rport', String(source.port));
  req.removeFirstValue('via');
  req.prepend('via', formatVia({ protocol: via.protocol, transport: via.transport, host: via.host, port: via.port, params }));
  return true;
}

function sameHost(viaHost: string, address: string): boolean {
  const h = viaHost.startsWith('[') ? viaHost.slice(1, -1) : viaHost;
  if (h === address) return true;
  if (isIP(h) === 6 && isIP(address) === 6) return expand6(h) === expand6(address);
  return false;
}

/** Canonical long form of an IPv6 address, for comparison only. */
function expand6(a: string): string {
  let addr = a.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(addr);
  if (v4) {
    const n = v4.slice(1).map(Number);
    addr = addr.slice(0, v4.index) + `${((n[0]! << 8) | n[1]!).toString(16)}:${((n[2]! << 8) | n[3]!).toString(16)}`;
  }
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((x) => x.padStart(4, '0')).join(':');
}

/** Where a response goes, per RFC 3261 s18.2.2 and RFC 3581 s4. */
export interface ResponseTarget {
  readonly transport: Transport;
  readonly address: string;
  readonly port: number;
  /** For stream transports: the address and port the request's connection came from, if known. */
  readonly connectionAddress?: string;
  readonly connectionPort?: number;
}

export function defaultPortFor(transport: Transport): number {
  return transport === 'tls' ? 5061 : 5060;
}

/** Computes the response target from the top Via; undefined when the Via names no usable transport. */
export function responseTarget(via: Via): ResponseTarget | undefined {
  const t = via.transport.toLowerCase();
  if (t !== 'udp' && t !== 'tcp' && t !== 'tls') return undefined;
  const transport = t as Transport;
  const host = via.host.startsWith('[') ? via.host.slice(1, -1) : via.host;
  const port = via.port ?? defaultPortFor(transport);
  const received = paramValue(via, 'received');
  const rportText = paramValue(via, 'rport');
  const rport = rportText !== undefined && /^\d{1,5}$/.test(rportText) ? Number(rportText) : undefined;
  if (transport !== 'udp') {
    // "If the "sent-protocol" is a reliable transport protocol such as TCP or SCTP, or TLS over
    // those, the response MUST be sent using the existing connection to the source of the
    // original request ... If that connection is no longer open, the server SHOULD open a
    // connection to the IP address in the "received" parameter, if present, using the port in
    // the "sent-by" value, or the default port for that transport, if no port is specified."
    const connectionAddress = received ?? host;
    return { transport, address: received ?? host, port, connectionAddress, ...(rport !== undefined ? { connectionPort: rport } : {}) };
  }
  // "Otherwise, if the Via header field value contains a "maddr" parameter, the response MUST be
  // forwarded to the address listed there, using the port indicated in "sent-by", or port 5060".
  const maddr = paramValue(via, 'maddr');
  if (maddr !== undefined) return { transport, address: maddr, port };
  // RFC 3581 s4: "the response MUST be sent to the IP address listed in the "received" parameter,
  // and the port in the "rport" parameter."
  if (received !== undefined) return { transport, address: received, port: rport ?? port };
  return { transport, address: host, port };
}

function paramValue(via: Via, name: string): string | undefined {
  const v = via.params.get(name);
  if (v === undefined || v === null || v === '') return undefined;
  return v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v;
}
