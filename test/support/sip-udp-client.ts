/**
 * A tiny raw SIP client over UDP (and a TCP helper) for end-to-end tests whose requests SIPp cannot
 * express: spoofed identities, replayed or forged credentials, oversized or slow input. It builds
 * requests as text, sends them byte for byte, and parses what comes back with sipledger's parser.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { parseMessage, type SipResponse } from '../../src/core/sip/index.js';
import { digestResponse } from './digest.js';

export interface Received {
  readonly raw: Buffer;
  readonly response: SipResponse | undefined;
  readonly status: number | undefined;
}

export interface RequestSpec {
  readonly method: string;
  readonly uri: string;
  readonly from: string;
  readonly to: string;
  readonly callId?: string;
  readonly cseq?: number;
  readonly branch?: string;
  readonly contact?: string;
  readonly headers?: readonly string[];
  readonly body?: string;
  /** Transport token of the Via (UDP default). */
  readonly transport?: 'UDP' | 'TCP';
}

export function newBranch(): string {
  return `z9hG4bK${randomBytes(8).toString('hex')}`;
}

/** A request as wire text (CRLF line ends). `viaHost` is our address as the Via's sent-by. */
export function buildRequest(spec: RequestSpec, viaHost: string): string {
  const body = spec.body ?? '';
  return [
    `${spec.method} ${spec.uri} SIP/2.0`,
    `Via: SIP/2.0/${spec.transport ?? 'UDP'} ${viaHost};branch=${spec.branch ?? newBranch()};rport`,
    'Max-Forwards: 70',
    `From: ${spec.from};tag=${randomBytes(4).toString('hex')}`,
    `To: ${spec.to}`,
    `Call-ID: ${spec.callId ?? `${randomBytes(8).toString('hex')}@test`}`,
    `CSeq: ${spec.cseq ?? 1} ${spec.method}`,
    ...(spec.contact ? [`Contact: ${spec.contact}`] : []),
    ...(spec.headers ?? []),
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');
}

function toReceived(raw: Buffer): Received {
  const r = parseMessage(raw);
  const response = r.ok && !r.message.isRequest ? r.message : undefined;
  return { raw, response, status: response?.status };
}

/** A challenge's parameters (realm, nonce, stale...) from a WWW-/Proxy-Authenticate value. */
export function challengeParams(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of value.matchAll(/(\w+)=(?:"([^"]*)"|([^\s,]+))/g)) out[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
  return out;
}

/** A Digest credentials value answering `challenge` (qop=auth when offered). */
export function answerChallenge(
  challenge: string,
  o: { username: string; password: string; method: string; uri: string; nc?: string; cnonce?: string; nonce?: string; realm?: string },
): string {
  const p = challengeParams(challenge);
  const realm = o.realm ?? p['realm'] ?? '';
  const nonce = o.nonce ?? p['nonce'] ?? '';
  const qop = p['qop'] !== undefined ? 'auth' : undefined;
  const nc = o.nc ?? '00000001';
  const cnonce = o.cnonce ?? randomBytes(6).toString('hex');
  const response = digestResponse({ username: o.username, realm, password: o.password, method: o.method, uri: o.uri, nonce, ...(qop ? { qop, nc, cnonce } : {}) });
  return `Digest username="${o.username}", realm="${realm}", nonce="${nonce}", uri="${o.uri}", response="${response}", algorithm=MD5${qop ? `, qop=${qop}, nc=${nc}, cnonce="${cnonce}"` : ''}`;
}

export class SipUdpClient {
  readonly #sock: dgram.Socket;
  readonly #inbox: Received[] = [];
  readonly #waiters = new Set<() => void>();
  /** Every datagram received, in order. */
  readonly received: Received[] = [];

  private constructor(sock: dgram.Socket) {
    this.#sock = sock;
    sock.on('message', (raw) => {
      const r = toReceived(raw);
      this.received.push(r);
      this.#inbox.push(r);
      for (const w of [...this.#waiters]) w();
    });
  }

  static async open(): Promise<SipUdpClient> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
    return new SipUdpClient(sock);
  }

  get port(): number {
    return this.#sock.address().port;
  }

  /** Our sent-by for Via headers. */
  get viaHost(): string {
    return `127.0.0.1:${this.port}`;
  }

  send(data: string | Buffer, port: number, host = '127.0.0.1'): void {
    this.#sock.send(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, port, host);
  }

  /**
   * Sends a request and resolves with the first final response (>= 200) whose Via branch is the
   * request's; undefined after `timeoutMs` without one.
   */
  async request(data: string, port: number, timeoutMs = 5000): Promise<Received | undefined> {
    const branch = /branch=([^;\s,]+)/.exec(data)?.[1];
    this.send(data, port);
    return this.waitFor((r) => r.status !== undefined && r.status >= 200 && (branch === undefined || r.raw.includes(branch)), timeoutMs);
  }

  /** Resolves with the first (not yet taken) datagram matching `pred`, or undefined after `timeoutMs`. */
  waitFor(pred: (r: Received) => boolean, timeoutMs = 5000): Promise<Received | undefined> {
    return new Promise((resolve) => {
      const check = (): boolean => {
        const i = this.#inbox.findIndex(pred);
        if (i === -1) return false;
        const [r] = this.#inbox.splice(i, 1);
        resolve(r);
        return true;
      };
      if (check()) return;
      const waiter = (): void => {
        if (check()) done();
      };
      const timer = setTimeout(() => {
        done();
        resolve(undefined);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      };
      this.#waiters.add(waiter);
    });
  }

  close(): void {
    this.#sock.close();
  }
}

/** Opens a TCP connection to the proxy; resolves once connected. */
export function tcpConnect(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Everything a TCP socket receives until it closes or `timeoutMs` passes. */
export function tcpCollect(sock: net.Socket, timeoutMs: number): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    const onData = (b: Buffer): void => void chunks.push(b);
    const finish = (): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      resolve({ data: Buffer.concat(chunks), closed });
    };
    sock.on('data', onData);
    sock.once('close', () => {
      closed = true;
      finish();
    });
    const timer = setTimeout(finish, timeoutMs);
  });
}
