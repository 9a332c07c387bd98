/**
 * An asynchronous RADIUS client over UDP (RFC 2865, RFC 3579, RFC 5997) around the `radius` codec.
 *
 * The codec only turns attributes into bytes and back. This client owns everything else:
 * - identifiers: one per request in flight on a socket (8 bits, so at most 256 per socket; more
 *   sockets are opened up to a limit, then requests wait in a FIFO queue);
 * - a per-attempt timeout and identical retransmissions (same bytes, same identifier, same server,
 *   so the server's duplicate cache answers them), then failover to the next server, re-encoded
 *   with that server's secret;
 * - dead servers: a server that stays silent is skipped for `deadTimeMs`, then probed with
 *   Status-Server and used again only once it answers;
 * - reply checks: only replies from the address and port the request went to, carrying a correct
 *   Response Authenticator and Message-Authenticator (compared in constant time), are accepted;
 *   everything else is dropped and counted.
 *
 * Nothing here blocks: every request is a set of timers and socket callbacks, so a silent server
 * delays only the requests sent to it.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { BackendUnavailableError } from '../../../core/auth/backend.js';
import { radiusCodec, type DecodedPacket } from './dictionary.js';
import { CODE, HEADER_LENGTH, requestAuthenticatorOf, verifyReply } from './packet.js';

export interface RadiusServerConfig {
  host: string;
  /** Default 1812. */
  port?: number;
  secret: string;
}

export interface RadiusClientOptions {
  /** Instance name, used in logs and errors. */
  name: string;
  /** Tried in order; a request fails over to the next server when one stays silent. */
  servers: RadiusServerConfig[];
  /** Per attempt. Default 1500 ms. */
  timeoutMs?: number;
  /** Identical retransmissions per server after the first transmission. Default 1. */
  retries?: number;
  /** How long a silent server is skipped before it is probed with Status-Server. Default 10 s. */
  deadTimeMs?: number;
  /** Sent in Status-Server probes. Default '127.0.0.1'. */
  nasIpAddress?: string;
  /** Sockets per address family; each carries at most 256 requests in flight. Default 8. */
  maxSockets?: number;
  /** SO_RCVBUF of each socket. Default 1 MiB (the kernel default drops replies at ~200 in flight). */
  recvBufferSize?: number;
  logger: Logger;
  /** Clock seam for dead-time bookkeeping. Default Date.now. */
  now?: () => number;
}

export type RadiusAttributeList = Array<[string | number, string | number | Buffer]>;

export interface RadiusReply {
  /** 'Access-Accept', 'Access-Reject' or 'Access-Challenge'. */
  readonly code: string;
  /** Attributes by dictionary name, as decoded by the codec (repeated attributes become arrays). */
  readonly attributes: Record<string, unknown>;
  /** Attributes in packet order, undecoded. */
  readonly raw: ReadonlyArray<readonly [number, Buffer]>;
  /** `host:port` of the server that answered. */
  readonly server: string;
}

export interface RadiusStats {
  /** verify() / request() calls. */
  requests: number;
  /** Identical retransmissions after an attempt timed out. */
  retransmissions: number;
  /** Times a request moved on to the next server because the previous one stayed silent. */
  failovers: number;
  /** Attempts (transmissions) that got no acceptable reply in time. */
  timeouts: number;
  /** Replies dropped: unknown identifier, wrong source, unverifiable, malformed. */
  droppedReplies: number;
  /** Status-Server probes sent, and those that got no acceptable answer. */
  probes: number;
  probeFailures: number;
  /** Requests that had to wait for a free identifier. */
  queued: number;
}

export interface RadiusServerHealth {
  readonly host: string;
  readonly port: number;
  readonly state: 'alive' | 'dead';
  /** While dead: when the next Status-Server probe is due (epoch ms). */
  readonly deadUntil?: number;
}

const DEFAULT_PORT = 1812;
const IDS_PER_SOCKET = 256;

interface Server {
  readonly host: string;
  readonly port: number;
  readonly secret: string;
  readonly label: string;
  target?: Target;
  state: 'alive' | 'dead';
  deadUntil: number;
  probe?: Promise<boolean>;
}

interface Target {
  readonly address: string;
  readonly family: 4 | 6;
}

/** What a socket waits for on one identifier. */
interface Pending {
  readonly address: string;
  readonly port: number;
  readonly secret: string;
  readonly requestAuthenticator: Buffer;
  readonly expectedCodes: readonly number[];
  /** Called with a verified reply; returns false when it cannot be decoded (then it is dropped). */
  accept(packet: Buffer): boolean;
  fail(error: Error): void;
}

interface Endpoint {
  readonly socket: dgram.Socket;
  /** undefined: free; null: reserved for a request between transmissions; Pending: waiting. */
  readonly slots: Array<Pending | null | undefined>;
  inFlight: number;
  cursor: number;
}

interface Slot {
  readonly endpoint: Endpoint;
  readonly id: number;
}

interface Waiter {
  resolve(slot: Slot): void;
  reject(error: Error): void;
}

type DropHandler = (reason: string, from: string) => void;

/** The sockets of one address family, and the identifiers in use on each. */
class SocketPool {
  private readonly endpoints: Endpoint[] = [];
  private readonly waiters: Waiter[] = [];
  private opening: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly type: 'udp4' | 'udp6',
    private readonly maxSockets: number,
    private readonly recvBufferSize: number,
    private readonly onDrop: DropHandler,
    private readonly onQueued: () => void,
  ) {}

  /** An identifier unique among the requests in flight on its socket. */
  async acquire(signal: AbortSignal, fail: (why: 'closed' | 'aborted' | 'socket', cause: unknown) => Error): Promise<Slot> {
    let queuedOnce = false;
    for (;;) {
      if (this.closed) throw fail('closed', undefined);
      if (signal.aborted) throw fail('aborted', signal.reason);
      const slot = this.take();
      if (slot !== null) return slot;
      if (this.endpoints.length < this.maxSockets) {
        this.opening ??= this.open().finally(() => {
          this.opening = undefined;
        });
        try {
          await this.opening;
        } catch (err) {
          throw fail('socket', err);
        }
        continue;
      }
      // RFC 2865 section 3: the Identifier is one octet; with every socket at 256 requests in flight
      // a new request waits for one to finish rather than reuse an identifier still in flight.
      if (!queuedOnce) this.onQueued();
      queuedOnce = true;
      const slotFromQueue = await new Promise<Slot>((resolve, reject) => {
        const onAbort = (): void => {
          const index = this.waiters.indexOf(waiter);
          if (index !== -1) this.waiters.splice(index, 1);
          reject(fail('aborted', signal.reason));
        };
        const waiter: Waiter = {
          resolve: (s) => {
            signal.removeEventListener('abort', onAbort);
            resolve(s);
          },
          reject: (e) => {
            signal.removeEventListener('abort', onAbort);
            reject(e);
          },
        };
        signal.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(waiter);
      });
      return slotFromQueue;
    }
  }

  release(slot: Slot): void {
    const waiter = this.waiters.shift();
    if (waiter !== undefined && !this.closed) {
      // Hand the identifier straight to the oldest waiting request.
      slot.endpoint.slots[slot.id] = null;
      waiter.resolve(slot);
      return;
    }
    slot.endpoint.slots[slot.id] = undefined;
    slot.endpoint.inFlight -= 1;
  }

  /** Waits on `slot` for a reply; the caller transmits after arming. */
  arm(slot: Slot, pending: Pending): void {
    slot.endpoint.slots[slot.id] = pending;
  }

  disarm(slot: Slot): void {
    if (slot.endpoint.slots[slot.id] !== undefined) slot.endpoint.slots[slot.id] = null;
  }

  send(slot: Slot, packet: Buffer, target: Target, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      slot.endpoint.socket.send(packet, port, target.address, (err) => (err ? reject(err) : resolve()));
    });
  }

  async close(error: Error): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
    await Promise.all(
      this.endpoints.map(
        (endpoint) =>
          new Promise<void>((resolve) => {
            for (const pending of endpoint.slots) pending?.fail(error);
            endpoint.socket.close(() => resolve());
          }),
      ),
    );
  }

  private take(): Slot | null {
    for (const endpoint of this.endpoints) {
      if (endpoint.inFlight >= IDS_PER_SOCKET) continue;
      // Round-robin from the last identifier used, so an identifier is reused as late as possible
      // and a late reply to an old request meets a different (or no) request.
      for (let i = 0; i < IDS_PER_SOCKET; i++) {
        const id = (endpoint.cursor + i) % IDS_PER_SOCKET;
        if (endpoint.slots[id] === undefined) {
          endpoint.slots[id] = null;
          endpoint.inFlight += 1;
          endpoint.cursor = (id + 1) % IDS_PER_SOCKET;
          return { endpoint, id };
        }
      }
    }
    return null;
  }

  private async open(): Promise<void> {
    const socket = dgram.createSocket({ type: this.type, recvBufferSize: this.recvBufferSize });
    const endpoint: Endpoint = { socket, slots: new Array<Pending | null | undefined>(IDS_PER_SOCKET), inFlight: 0, cursor: 0 };
    socket.on('message', (message, rinfo) => this.onMessage(endpoint, message, rinfo));
    // A UDP socket reports ICMP errors and the like here; requests then simply time out.
    socket.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    // Sockets do not keep the process alive; pending requests do, through their timers.
    socket.unref();
    this.endpoints.push(endpoint);
  }

  private onMessage(endpoint: Endpoint, message: Buffer, rinfo: dgram.RemoteInfo): void {
    const from = `${rinfo.address}:${rinfo.port}`;
    if (message.length < HEADER_LENGTH) return this.onDrop('shorter than a RADIUS header', from);
    const pending = endpoint.slots[message[1]!];
    if (pending === undefined || pending === null) return this.onDrop('no request in flight with this identifier', from);
    // RFC 2865 section 3: replies are matched to requests by source address, port and Identifier;
    // a reply from anywhere else is not an answer to this request.
    if (normalizeAddress(rinfo.address) !== pending.address || rinfo.port !== pending.port) {
      return this.onDrop('reply from an address or port the request was not sent to', from);
    }
    if (!pending.expectedCodes.includes(message[0]!)) return this.onDrop(`unexpected code ${message[0]}`, from);
    // RFC 2865 section 3: "A RADIUS client MUST [...] silently discard a reply whose Response
    // Authenticator is invalid"; RFC 3579 section 3.2: a packet "with an invalid
    // Message-Authenticator [...] MUST be silently discarded".
    const verdict = verifyReply(message, pending.requestAuthenticator, pending.secret);
    if (!verdict.ok) return this.onDrop(verdict.reason, from);
    if (!pending.accept(verdict.packet)) return this.onDrop('verified reply could not be decoded', from);
  }
}

/** IPv6 literals in one canonical form, so that configured and received addresses compare equal. */
function normalizeAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}

export class RadiusClient {
  private readonly servers: Server[];
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly deadTimeMs: number;
  private readonly nasIpAddress: string;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly pools: { 4: SocketPool; 6: SocketPool };
  private readonly counters: RadiusStats = {
    requests: 0,
    retransmissions: 0,
    failovers: 0,
    timeouts: 0,
    droppedReplies: 0,
    probes: 0,
    probeFailures: 0,
    queued: 0,
  };
  private closed = false;

  constructor(private readonly options: RadiusClientOptions) {
    if (options.servers.length === 0) throw new TypeError(`radius backend ${options.name}: servers must not be empty`);
    this.servers = options.servers.map((s, i) => {
      const port = s.port ?? DEFAULT_PORT;
      if (typeof s.host !== 'string' || s.host.length === 0) throw new TypeError(`radius backend ${options.name}: servers[${i}].host is empty`);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`radius backend ${options.name}: servers[${i}].port ${port} is not a UDP port`);
      if (typeof s.secret !== 'string' || s.secret.length === 0) throw new TypeError(`radius backend ${options.name}: servers[${i}].secret is empty`);
      return { host: s.host, port, secret: s.secret, label: `${s.host}:${port}`, state: 'alive', deadUntil: 0 };
    });
    this.timeoutMs = positive(options.timeoutMs ?? 1500, 'timeoutMs', options.name);
    this.retries = nonNegativeInteger(options.retries ?? 1, 'retries', options.name);
    this.deadTimeMs = nonNegative(options.deadTimeMs ?? 10_000, 'deadTimeMs', options.name);
    this.nasIpAddress = options.nasIpAddress ?? '127.0.0.1';
    if (isIP(this.nasIpAddress) !== 4) throw new TypeError(`radius backend ${options.name}: nasIpAddress must be an IPv4 address`);
    const maxSockets = nonNegativeInteger(options.maxSockets ?? 8, 'maxSockets', options.name) || 1;
    const recvBufferSize = options.recvBufferSize ?? 1024 * 1024;
    this.log = options.logger.child({ radius: options.name });
    this.now = options.now ?? Date.now;
    const onDrop: DropHandler = (reason, from) => {
      this.counters.droppedReplies += 1;
      this.log.debug({ from, reason }, 'radius reply dropped');
    };
    const onQueued = (): void => {
      this.counters.queued += 1;
    };
    this.pools = {
      4: new SocketPool('udp4', maxSockets, recvBufferSize, onDrop, onQueued),
      6: new SocketPool('udp6', maxSockets, recvBufferSize, onDrop, onQueued),
    };
    // Load the dictionary now, not on the first request.
    radiusCodec();
  }

  /** A snapshot of the counters. */
  get stats(): Readonly<RadiusStats> {
    return { ...this.counters };
  }

  health(): RadiusServerHealth[] {
    return this.servers.map((s) =>
      s.state === 'alive' ? { host: s.host, port: s.port, state: s.state } : { host: s.host, port: s.port, state: s.state, deadUntil: s.deadUntil },
    );
  }

  /**
   * Sends an Access-Request built from `attributes` (Message-Authenticator is added) to the first
   * live server, failing over in order. Resolves the first verified reply; throws
   * BackendUnavailableError when no server answers, when `signal` aborts, or after close().
   */
  async request(attributes: RadiusAttributeList, signal: AbortSignal): Promise<RadiusReply> {
    this.counters.requests += 1;
    if (this.closed) throw this.unavailable('backend is closed');
    if (signal.aborted) throw this.unavailable('lookup budget exhausted before the request was sent', signal.reason);

    let candidates = this.liveServers();
    if (candidates.length === 0) {
      const revived = await this.awaitRevival(signal);
      if (revived === null) throw this.unavailable('every RADIUS server is marked dead');
      candidates = [revived];
    }
    let previousFailed = false;
    for (const server of candidates) {
      // Another request may have found this server silent meanwhile.
      if (server.state === 'dead') continue;
      if (previousFailed) this.counters.failovers += 1;
      const reply = await this.exchange(server, 'Access-Request', attributes, [CODE.ACCESS_ACCEPT, CODE.ACCESS_REJECT, CODE.ACCESS_CHALLENGE], signal);
      if (reply !== null) return reply;
      this.markDead(server);
      previousFailed = true;
    }
    throw this.unavailable(`no RADIUS server answered (${this.servers.map((s) => s.label).join(', ')})`);
  }

  /**
   * RFC 5997 Status-Server to one server (index into the configured list). Resolves true when it
   * answered with a verified Access-Accept; updates the server's dead/alive state accordingly.
   */
  async statusServer(index = 0, signal: AbortSignal = new AbortController().signal): Promise<boolean> {
    const server = this.servers[index];
    if (server === undefined) throw new RangeError(`radius backend ${this.options.name}: no server ${index}`);
    return this.probe(server, signal);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const error = this.unavailable('backend is closed');
    await Promise.all([this.pools[4].close(error), this.pools[6].close(error)]);
  }

  private async probe(server: Server, signal: AbortSignal): Promise<boolean> {
    this.counters.probes += 1;
    let ok = false;
    try {
      // RFC 5997 section 3: "Status-Server packets [...] MUST contain a Message-Authenticator".
      const reply = await this.exchange(server, 'Status-Server', [['NAS-IP-Address', this.nasIpAddress]], [CODE.ACCESS_ACCEPT], signal);
      ok = reply !== null;
    } catch {
      ok = false;
    }
    if (ok) this.markAlive(server);
    else {
      this.counters.probeFailures += 1;
      this.markDead(server);
    }
    return ok;
  }

  /** Live servers in order; dead ones whose dead time is over get a background probe. */
  private liveServers(): Server[] {
    const now = this.now();
    const live: Server[] = [];
    for (const server of this.servers) {
      if (server.state === 'alive') live.push(server);
      else if (now >= server.deadUntil) this.startProbe(server);
    }
    return live;
  }

  private startProbe(server: Server): void {
    if (server.probe !== undefined || this.closed) return;
    this.log.debug({ server: server.label }, 'probing dead radius server with Status-Server');
    server.probe = this.probe(server, new AbortController().signal).finally(() => {
      server.probe = undefined;
    });
  }

  /** With every server dead: the first one whose probe succeeds, or null. */
  private async awaitRevival(signal: AbortSignal): Promise<Server | null> {
    const probing = this.servers.filter((s) => s.probe !== undefined);
    if (probing.length === 0) return null;
    const revived = Promise.any(
      probing.map((s) => s.probe!.then((ok) => (ok ? s : Promise.reject(new Error('probe failed'))))),
    ).catch(() => null);
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<null>((resolve) => {
      onAbort = () => resolve(null);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([revived, aborted]);
    } finally {
      signal.removeEventListener('abort', onAbort!);
    }
  }

  private markDead(server: Server): void {
    server.deadUntil = this.now() + this.deadTimeMs;
    // A hostname is resolved again before the next probe.
    if (isIP(server.host) === 0) server.target = undefined;
    if (server.state === 'dead') return;
    server.state = 'dead';
    this.log.warn({ server: server.label, deadTimeMs: this.deadTimeMs }, 'radius server not answering; skipped until it answers Status-Server');
  }

  private markAlive(server: Server): void {
    if (server.state === 'alive') return;
    server.state = 'alive';
    this.log.info({ server: server.label }, 'radius server answering again');
  }

  private async resolve(server: Server): Promise<Target | null> {
    if (server.target !== undefined) return server.target;
    const family = isIP(server.host);
    if (family === 4 || family === 6) {
      server.target = { address: normalizeAddress(server.host), family };
      return server.target;
    }
    try {
      const found = await lookup(server.host);
      server.target = { address: normalizeAddress(found.address), family: found.family === 6 ? 6 : 4 };
      return server.target;
    } catch (err) {
      this.log.warn({ server: server.label, err }, 'radius server name does not resolve');
      return null;
    }
  }

  /**
   * One server: the first transmission plus `retries` identical retransmissions, each waiting
   * `timeoutMs`. Resolves the verified reply, or null when the server stayed silent.
   */
  private async exchange(
    server: Server,
    code: 'Access-Request' | 'Status-Server',
    attributes: RadiusAttributeList,
    expectedCodes: readonly number[],
    signal: AbortSignal,
  ): Promise<RadiusReply | null> {
    const target = await this.resolve(server);
    if (target === null) return null;
    const pool = this.pools[target.family];
    const slot = await pool.acquire(signal, (why, cause) =>
      this.unavailable(
        why === 'closed' ? 'backend is closed' : why === 'aborted' ? 'lookup budget exhausted while waiting for a free identifier' : 'cannot open a UDP socket',
        cause,
      ),
    );
    try {
      const codec = radiusCodec();
      // The codec appends to the array it is given: encode a copy, so the caller's list can be
      // encoded again with another server's secret on failover.
      const packet = codec.encode({
        code,
        secret: server.secret,
        identifier: slot.id,
        attributes: attributes.map((a) => [a[0], a[1]]),
        add_message_authenticator: true,
      });
      const requestAuthenticator = requestAuthenticatorOf(packet);
      for (let attempt = 0; attempt <= this.retries; attempt++) {
        if (attempt > 0) this.counters.retransmissions += 1;
        const reply = await this.transmit(pool, slot, packet, server, target, requestAuthenticator, expectedCodes, signal);
        if (reply !== null) return reply;
        this.counters.timeouts += 1;
      }
      return null;
    } finally {
      pool.release(slot);
    }
  }

  private transmit(
    pool: SocketPool,
    slot: Slot,
    packet: Buffer,
    server: Server,
    target: Target,
    requestAuthenticator: Buffer,
    expectedCodes: readonly number[],
    signal: AbortSignal,
  ): Promise<RadiusReply | null> {
    return new Promise<RadiusReply | null>((resolve, reject) => {
      let settled = false;
      const finish = (): void => {
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        pool.disarm(slot);
      };
      const onAbort = (): void => {
        if (settled) return;
        finish();
        reject(this.unavailable('lookup budget exhausted while waiting for the radius server', signal.reason));
      };
      const timer = setTimeout(() => {
        if (settled) return;
        finish();
        resolve(null);
      }, this.timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      pool.arm(slot, {
        address: target.address,
        port: server.port,
        secret: server.secret,
        requestAuthenticator,
        expectedCodes,
        accept: (verified) => {
          if (settled) return false;
          let decoded: DecodedPacket;
          try {
            decoded = radiusCodec().decode({ packet: verified, secret: server.secret });
          } catch {
            return false;
          }
          finish();
          resolve({ code: decoded.code, attributes: decoded.attributes, raw: decoded.raw_attributes, server: server.label });
          return true;
        },
        fail: (error) => {
          if (settled) return;
          finish();
          reject(error);
        },
      });
      pool.send(slot, packet, target, server.port).catch((err: unknown) => {
        // Nothing was sent: no reply can come, so this attempt has failed now.
        this.log.debug({ server: server.label, err }, 'radius request could not be sent');
        if (settled) return;
        finish();
        resolve(null);
      });
    });
  }

  private unavailable(message: string, cause?: unknown): BackendUnavailableError {
    return new BackendUnavailableError(this.options.name, `radius backend ${this.options.name}: ${message}`, cause === undefined ? undefined : { cause });
  }
}

function positive(value: number, key: string, name: string): number {
  if (!Number.isFinite(value) || value <= 0) throw new TypeError(`radius backend ${name}: ${key} must be a positive number`);
  return value;
}

function nonNegative(value: number, key: string, name: string): number {
  if (!Number.isFinite(value) || value < 0) throw new TypeError(`radius backend ${name}: ${key} must not be negative`);
  return value;
}

function nonNegativeInteger(value: number, key: string, name: string): number {
  if (!Number.isInteger(value) || value < 0) throw new TypeError(`radius backend ${name}: ${key} must be a non-negative integer`);
  return value;
}
