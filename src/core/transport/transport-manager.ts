import dgram from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import {
  type AnyMessage,
  type ParseLimits,
  REASON,
  type SipRequest,
  type SipResponse,
  type Source,
  type Transport,
  createResponse,
  parseMessage,
  serialize,
} from '../sip/index.js';
import { TransportError } from './errors.js';
import { StreamFramer } from './stream-framer.js';
import { ThreadedUdpSocket } from './udp-thread.js';
import { type ResponseTarget, firstVia, responseTarget, stampVia } from './via.js';

export interface ListenSpec {
  transport: Transport;
  address: string;
  port: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** UDP only: receive and send on an I/O thread of its own (udp-thread.ts). */
  ioThread?: boolean;
  /** With ioThread: most datagrams handed to the main thread and not yet taken in (default 2048). */
  ioThreadMaxBacklog?: number;
}

/** What the transport needs of a UDP socket: Node's own, or one run by an I/O thread. */
interface UdpSocket {
  send(bytes: Uint8Array, port: number, address: string, cb: (err: Error | null) => void): void;
  close(cb?: () => void): void;
}

/** Where to send a message. For stream transports, `connectionId` names a connection to reuse. */
export interface Destination {
  address: string;
  port: number;
  transport: Transport;
  connectionId?: number;
}

/** A response serialised once, with where it goes: see TransportManager.prepareResponse. */
export interface PreparedResponse {
  readonly bytes: Buffer;
  readonly target: ResponseTarget;
  readonly to: Source | undefined;
}

export interface TransportOptions {
  listen: ListenSpec[];
  limits: ParseLimits;
  logger: Logger;
  /** Close a TCP/TLS connection after this long without traffic (default 120 s). */
  tcpIdleTimeoutMs?: number;
  /** Most inbound TCP/TLS connections at once (default 4096). */
  maxConnections?: number;
  /** Most inbound TCP/TLS connections from one IP address (default 64). */
  maxConnectionsPerIp?: number;
  /** Give up connecting out after this long (default 5 s). */
  connectTimeoutMs?: number;
  /** Options for outgoing TLS connections (trusted CAs, servername); verification stays on by default. */
  tlsClient?: tls.ConnectionOptions;
  /** Bytes queued for a peer that does not read, before the connection is dropped (default 1 MiB). */
  maxWriteBufferBytes?: number;
  /** Malformed input is logged at most once per source address per this interval (default 60 s). */
  malformedLogIntervalMs?: number;
  /**
   * Logs every message received and sent (info level, `sip` field), with Authorization and
   * Proxy-Authorization values redacted. For troubleshooting; off by default.
   */
  trace?: boolean;
}

export interface TransportStats {
  messagesReceived: number;
  messagesSent: number;
  bytesReceived: number;
  bytesSent: number;
  /** Inputs that did not parse (answered with 400/505/513 where possible, else dropped). */
  malformed: number;
  /** Malformed requests answered statelessly with an error response. */
  errorsAnswered: number;
  connectionsAccepted: number;
  connectionsRejected: number;
  connectionsOpen: number;
  idleTimeouts: number;
  keepAlivePongs: number;
  sendErrors: number;
  /** UDP datagrams an I/O thread dropped because the main thread was too far behind (listen[].ioThread). */
  udpBacklogDrops: number;
}

interface Listener {
  readonly transport: Transport;
  readonly address: string;
  readonly port: number;
  readonly udp?: UdpSocket;
  /** The UDP socket is run by an I/O thread (listen[].ioThread). */
  readonly ioThread?: boolean;
  readonly server?: net.Server;
}

interface Connection {
  readonly id: number;
  readonly socket: net.Socket;
  readonly transport: 'tcp' | 'tls';
  readonly remote: { readonly address: string; readonly port: number };
  readonly local: { readonly address: string; readonly port: number };
  readonly framer: StreamFramer;
  readonly key: string;
  closed: boolean;
}

/**
 * The transport layer (RFC 3261 s18): listens on UDP, TCP and TLS, frames streams, parses, records
 * the real source of each request in its Via, answers what cannot be parsed, and sends requests
 * and responses where they belong.
 */
export class TransportManager {
  readonly stats: TransportStats = {
    messagesReceived: 0,
    messagesSent: 0,
    bytesReceived: 0,
    bytesSent: 0,
    malformed: 0,
    errorsAnswered: 0,
    connectionsAccepted: 0,
    connectionsRejected: 0,
    connectionsOpen: 0,
    idleTimeouts: 0,
    keepAlivePongs: 0,
    sendErrors: 0,
    udpBacklogDrops: 0,
  };

  private readonly listeners: Listener[] = [];
  private readonly connections = new Map<number, Connection>();
  /** Open connections by `transport|address|port` of the peer (inbound and outbound). */
  private readonly byRemote = new Map<string, number>();
  private readonly connecting = new Map<string, Promise<Connection>>();
  private readonly inboundPerIp = new Map<string, number>();
  private inboundTotal = 0;
  private readonly lastLogged = new Map<string, number>();
  private handler: (msg: AnyMessage) => void = () => undefined;
  private nextId = 1;
  private closing = false;
  private readonly logger: Logger;
  private readonly limits: ParseLimits;
  private readonly idleMs: number;
  private readonly maxConnections: number;
  private readonly maxPerIp: number;
  private readonly connectTimeoutMs: number;
  private readonly maxWriteBuffer: number;
  private readonly logIntervalMs: number;
  private readonly tlsClient: tls.ConnectionOptions;
  private readonly trace: boolean;

  private constructor(opts: TransportOptions) {
    this.logger = opts.logger;
    this.limits = opts.limits;
    this.idleMs = opts.tcpIdleTimeoutMs ?? 120_000;
    this.maxConnections = opts.maxConnections ?? 4096;
    this.maxPerIp = opts.maxConnectionsPerIp ?? 64;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    this.maxWriteBuffer = opts.maxWriteBufferBytes ?? 1 << 20;
    this.logIntervalMs = opts.malformedLogIntervalMs ?? 60_000;
    this.tlsClient = opts.tlsClient ?? {};
    this.trace = opts.trace ?? false;
  }

  /** Binds every listen address; rejects with TRANSPORT_LISTEN_FAILED (and binds nothing) if one fails. */
  static async listen(opts: TransportOptions): Promise<TransportManager> {
    const tm = new TransportManager(opts);
    try {
      for (const spec of opts.listen) tm.listeners.push(await tm.bind(spec));
    } catch (err) {
      await tm.close();
      throw err;
    }
    return tm;
  }

  /** Every message received and parsed; requests carry the received/rport stamp in their top Via. */
  onMessage(handler: (msg: AnyMessage) => void): void {
    this.handler = handler;
  }

  /** The addresses actually bound (a port 0 in the spec becomes the port the system chose). */
  listening(): Array<{ transport: Transport; address: string; port: number; ioThread: boolean }> {
    return this.listeners.map((l) => ({ transport: l.transport, address: l.address, port: l.port, ioThread: l.ioThread === true }));
  }

  /** The connection a stream message came on, while it is open (for tests and diagnostics). */
  hasConnection(id: number): boolean {
    const c = this.connections.get(id);
    return c !== undefined && !c.closed;
  }

  /**
   * Sends bytes. TCP/TLS: the connection `connectionId` if still open, else an open connection to
   * that address and port, else a new one.
   */
  async send(bytes: Buffer, dest: Destination): Promise<void> {
    if (this.closing) throw new TransportError('TRANSPORT_CLOSED', 'transport closed', false);
    if (dest.transport === 'udp') return this.sendUdp(bytes, dest.address, dest.port, undefined);
    const conn = await this.streamTo(dest.transport, dest.address, dest.port, dest.connectionId);
    return this.write(conn, bytes);
  }

  /**
   * Sends a response where its top Via says (RFC 3261 s18.2.2, RFC 3581 s4). `to`, the source of
   * the request, lets stream responses use the very connection the request came on and UDP
   * responses leave from the socket it arrived at.
   */
  async sendResponse(res: SipResponse, to?: Source): Promise<void> {
    return this.sendPrepared(this.prepareResponse(res, to));
  }

  /**
   * Serialises a response and works out where it goes (its top Via, s18.2.2), without sending it:
   * a transaction that must repeat its final response keeps these bytes instead of the messages.
   * Throws TRANSPORT_NO_ROUTE for a response without a usable top Via.
   */
  prepareResponse(res: SipResponse, to?: Source): PreparedResponse {
    let via;
    try {
      via = firstVia(res);
    } catch (err) {
      throw new TransportError('TRANSPORT_NO_ROUTE', 'response has a malformed top Via', false, { cause: err });
    }
    if (!via) throw new TransportError('TRANSPORT_NO_ROUTE', 'response has no Via', false);
    const target = responseTarget(via);
    if (!target) throw new TransportError('TRANSPORT_NO_ROUTE', `no transport for Via ${via.transport}`, false);
    return { bytes: serialize(res), target, to };
  }

  /** Sends a prepared response (again): what sendResponse does after serialising. */
  async sendPrepared(p: PreparedResponse): Promise<void> {
    if (this.closing) throw new TransportError('TRANSPORT_CLOSED', 'transport closed', false);
    const { bytes, target, to } = p;
    // s18.2.2: "the response MUST be sent using the existing connection to the source of the
    // original request" -- also when a confused client put UDP in the Via of a TCP request.
    const own = to?.connectionId !== undefined ? this.live(to.connectionId) : undefined;
    if (own) return this.write(own, bytes);
    if (target.transport === 'udp') {
      return this.sendUdp(bytes, target.address, target.port, to?.transport === 'udp' ? to.local : undefined);
    }
    // The request's own connection first, then any open one to where it came from, then connect.
    let conn: Connection | undefined;
    if (target.connectionPort !== undefined && target.connectionAddress !== undefined) {
      conn = this.findRemote(target.transport, target.connectionAddress, target.connectionPort);
    }
    conn ??= await this.streamTo(target.transport, target.address, target.port, undefined);
    return this.write(conn, bytes);
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const c of this.connections.values()) c.socket.destroy();
    this.connections.clear();
    this.byRemote.clear();
    await Promise.all(
      this.listeners.map(
        (l) =>
          new Promise<void>((resolve) => {
            if (l.udp) l.udp.close(() => resolve());
            else if (l.server) l.server.close(() => resolve());
            else resolve();
          }),
      ),
    );
    this.listeners.length = 0;
  }

  // ---- binding ----------------------------------------------------------------------------------

  private async bind(spec: ListenSpec): Promise<Listener> {
    try {
      if (spec.transport === 'udp') return await this.bindUdp(spec);
      return await this.bindStream(spec);
    } catch (err) {
      if (err instanceof TransportError) throw err;
      throw new TransportError('TRANSPORT_LISTEN_FAILED', `cannot listen on ${spec.transport}:${spec.address}:${spec.port}`, false, { cause: err });
    }
  }

  private async bindUdp(spec: ListenSpec): Promise<Listener> {
    if (spec.ioThread) {
      const ref: { listener?: Listener } = {};
      let droppedBefore = 0;
      const sock = await ThreadedUdpSocket.bind({
        type: net.isIPv6(spec.address) ? 'udp6' : 'udp4',
        address: spec.address,
        port: spec.port,
        recvBufferSize: 4 << 20,
        ...(spec.ioThreadMaxBacklog !== undefined ? { maxBacklog: spec.ioThreadMaxBacklog } : {}),
        // The listener exists once bind resolves; nothing is received before the thread reports bound.
        onMessage: (buf, rinfo) => {
          if (ref.listener) this.onDatagram(buf, rinfo, ref.listener);
        },
        onError: (err) => this.logger.warn({ err, address: spec.address, port: spec.port }, 'UDP socket error'),
        onDropped: (total) => {
          this.stats.udpBacklogDrops += total - droppedBefore;
          droppedBefore = total;
          this.logOnce(`backlog ${spec.address}:${spec.port}`, { address: spec.address, port: spec.port, dropped: total }, 'UDP datagrams dropped: the main thread is too far behind its I/O thread');
        },
        onStopped: (err) => {
          // A listener that can no longer receive is a dead server: stop the process, so that its
          // supervisor restarts it (the log replay restores its state), rather than run deaf.
          this.logger.fatal({ err, address: spec.address, port: spec.port }, 'UDP I/O thread stopped');
          setImmediate(() => {
            throw err;
          });
        },
      });
      const addr = sock.address();
      ref.listener = { transport: 'udp', address: addr.address, port: addr.port, udp: sock, ioThread: true };
      return ref.listener;
    }
    const sock = dgram.createSocket({ type: net.isIPv6(spec.address) ? 'udp6' : 'udp4', lookup: literalLookup });
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error): void => {
        sock.close();
        reject(err);
      };
      sock.once('error', failed);
      sock.bind({ address: spec.address, port: spec.port }, () => {
        sock.off('error', failed);
        resolve();
      });
    });
    // Node reads whole datagrams of up to 64 KiB, so an oversized request still parses far enough
    // for its 513. A larger kernel buffer rides out bursts; the system may cap it, which is fine.
    try {
      sock.setRecvBufferSize(4 << 20);
    } catch {
      /* capped by the system */
    }
    const addr = sock.address();
    const listener: Listener = { transport: 'udp', address: addr.address, port: addr.port, udp: sock };
    sock.on('message', (buf, rinfo) => this.onDatagram(buf, rinfo, listener));
    sock.on('error', (err) => this.logger.warn({ err, address: addr.address, port: addr.port }, 'UDP socket error'));
    return listener;
  }

  private async bindStream(spec: ListenSpec): Promise<Listener> {
    let server: net.Server;
    if (spec.transport === 'tls') {
      if (!spec.tls) throw new TransportError('TRANSPORT_LISTEN_FAILED', `TLS listen ${spec.address}:${spec.port} needs tls.cert and tls.key`, false);
      server = tls.createServer({ cert: spec.tls.cert, key: spec.tls.key, handshakeTimeout: Math.min(this.idleMs, 10_000) });
      server.on('secureConnection', (sock: tls.TLSSocket) => this.attach(sock, 'tls', true));
      server.on('tlsClientError', (err) => this.logger.debug({ err }, 'TLS handshake failed'));
      // Caps are checked on the raw connection, ahead of the TLS machinery, before a handshake
      // costs anything.
      server.prependListener('connection', (sock: net.Socket) => this.admit(sock));
    } else {
      server = net.createServer();
      server.on('connection', (sock: net.Socket) => {
        if (this.admit(sock)) this.attach(sock, 'tcp', true);
      });
    }
    server.on('error', (err) => this.logger.warn({ err }, 'stream listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: spec.address, port: spec.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address() as net.AddressInfo;
    return { transport: spec.transport, address: addr.address, port: addr.port, server };
  }

  /** Enforces maxConnections and maxConnectionsPerIp on inbound connections. */
  private admit(sock: net.Socket): boolean {
    const ip = normalizeAddress(sock.remoteAddress ?? '');
    const perIp = this.inboundPerIp.get(ip) ?? 0;
    if (this.closing || this.inboundTotal >= this.maxConnections || perIp >= this.maxPerIp) {
      this.stats.connectionsRejected++;
      this.logOnce(ip, { ip, total: this.inboundTotal, perIp }, 'connection refused: connection limit reached');
      sock.destroy();
      return false;
    }
    this.inboundTotal++;
    this.inboundPerIp.set(ip, perIp + 1);
    sock.once('close', () => {
      this.inboundTotal--;
      const n = (this.inboundPerIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.inboundPerIp.delete(ip);
      else this.inboundPerIp.set(ip, n);
    });
    return true;
  }

  // ---- receiving --------------------------------------------------------------------------------

  private onDatagram(buf: Buffer, rinfo: { address: string; port: number }, listener: Listener): void {
    this.stats.bytesReceived += buf.length;
    // RFC 5626 s4.4.1 / RFC 3261 s7.5: a datagram of CRLFs is a keep-alive; nothing to parse.
    if (buf.length <= 4 && buf.every((b) => b === 0x0d || b === 0x0a)) return;
    const source: Source = {
      address: normalizeAddress(rinfo.address),
      port: rinfo.port,
      transport: 'udp',
      local: { address: listener.address, port: listener.port },
    };
    this.handleBytes(buf, source, true);
  }

  private attach(sock: net.Socket, transport: 'tcp' | 'tls', inbound: boolean): Connection | undefined {
    if (sock.destroyed) return undefined; // refused by admit()
    const remote = { address: normalizeAddress(sock.remoteAddress ?? ''), port: sock.remotePort ?? 0 };
    const local = { address: normalizeAddress(sock.localAddress ?? ''), port: sock.localPort ?? 0 };
    const key = remoteKey(transport, remote.address, remote.port);
    const conn: Connection = {
      id: this.nextId++,
      socket: sock,
      transport,
      remote,
      local,
      framer: new StreamFramer({ maxMessageBytes: this.limits.maxMessageBytes, headroomBytes: 4096 }),
      key,
      closed: false,
    };
    this.connections.set(conn.id, conn);
    this.byRemote.set(key, conn.id);
    this.stats.connectionsOpen = this.connections.size;
    if (inbound) this.stats.connectionsAccepted++;
    sock.setNoDelay(true);
    sock.setTimeout(this.idleMs);
    sock.on('timeout', () => {
      this.stats.idleTimeouts++;
      this.logger.debug({ connection: conn.id, remote }, 'idle connection closed');
      sock.destroy();
    });
    sock.on('data', (chunk: Buffer) => this.onStreamData(conn, chunk));
    sock.on('error', (err) => this.logger.debug({ err, connection: conn.id, remote }, 'connection error'));
    sock.on('close', () => this.forget(conn));
    return conn;
  }

  private forget(conn: Connection): void {
    conn.closed = true;
    this.connections.delete(conn.id);
    if (this.byRemote.get(conn.key) === conn.id) this.byRemote.delete(conn.key);
    this.stats.connectionsOpen = this.connections.size;
  }

  private onStreamData(conn: Connection, chunk: Buffer): void {
    this.stats.bytesReceived += chunk.length;
    const source: Source = {
      address: conn.remote.address,
      port: conn.remote.port,
      transport: conn.transport,
      local: conn.local,
      connectionId: conn.id,
    };
    for (const ev of conn.framer.push(chunk)) {
      if (ev.type === 'message') {
        this.handleBytes(ev.bytes, source, false);
      } else if (ev.type === 'ping') {
        // RFC 5626 s3.5.1: "When a SIP ... receives a double-CRLF ("ping") it MUST respond with a
        // single CRLF ("pong")".
        this.stats.keepAlivePongs++;
        if (!conn.closed) conn.socket.write('\r\n');
      } else {
        // The stream cannot be framed past this point: answer what can be answered, then close.
        this.stats.malformed++;
        this.logOnce(source.address, { source, reason: ev.reason }, 'unframeable stream input; closing the connection');
        const parsed = parseMessage(ev.head, { ...this.limits, maxMessageBytes: Number.MAX_SAFE_INTEGER }, true);
        const req = parsed.ok ? (parsed.message.isRequest ? parsed.message : undefined) : parsed.partial;
        if (req) this.answerError(req, ev.status, ev.reason, source);
        conn.socket.end();
        setTimeout(() => conn.socket.destroy(), 2000).unref();
        return;
      }
    }
  }

  private handleBytes(buf: Buffer, source: Source, datagram: boolean): void {
    if (this.trace) this.traceMessage('in', source.transport, source.address, source.port, buf);
    const r = parseMessage(buf, this.limits, datagram);
    if (!r.ok) {
      this.stats.malformed++;
      this.logOnce(source.address, { source, reason: r.reason, status: r.status }, 'malformed SIP message');
      if (r.partial) this.answerError(r.partial, r.status, r.reason, source);
      return;
    }
    const msg = r.message;
    if (msg.isRequest) {
      try {
        stampVia(msg, source);
      } catch (err) {
        this.logger.debug({ err }, 'cannot stamp Via');
      }
    }
    msg.source = source;
    this.stats.messagesReceived++;
    try {
      this.handler(msg);
    } catch (err) {
      this.logger.error({ err }, 'message handler threw');
    }
  }

  /**
   * Answers a request that could not be accepted (400, 505, 513), statelessly, with a reason
   * phrase that names the problem. An ACK is never answered (RFC 3261 s17).
   */
  private answerError(req: SipRequest, status: number, reason: string, source: Source): void {
    if (req.method === 'ACK') return;
    try {
      stampVia(req, source);
      const phrase = `${REASON[status] ?? 'Error'} (${reason.replace(/[^\x20-\x7e]/g, '?')})`;
      const res = createResponse(req, status, { reason: phrase });
      this.stats.errorsAnswered++;
      this.sendResponse(res, source).catch((err: unknown) => this.logger.debug({ err, status }, 'cannot send error response'));
    } catch (err) {
      this.logger.debug({ err, status }, 'cannot build error response');
    }
  }

  private traceMessage(direction: 'in' | 'out', transport: Transport, address: string, port: number, bytes: Buffer): void {
    this.logger.info({ direction, transport, remote: `${address}:${port}`, sip: redactCredentials(bytes.toString('utf8')) }, `SIP ${direction}`);
  }

  private logOnce(key: string, obj: object, msg: string): void {
    const now = Date.now();
    const last = this.lastLogged.get(key);
    if (last !== undefined && now - last < this.logIntervalMs) return;
    if (this.lastLogged.size >= 10_000) this.lastLogged.clear();
    this.lastLogged.set(key, now);
    this.logger.info(obj, msg);
  }

  // ---- sending ----------------------------------------------------------------------------------

  private async sendUdp(bytes: Buffer, address: string, port: number, local: Source['local']): Promise<void> {
    let ip = net.isIP(address) ? address : await this.resolve(address);
    // An address from net.isIP or the resolver: only IPv6 has colons (no per-send regex).
    const family = ip.includes(':') ? 6 : 4;
    let sock = this.udpSocketFor(family, local);
    if (!sock && family === 4) {
      // A dual-stack socket bound to "::" reaches IPv4 peers through mapped addresses.
      sock = this.listeners.find((l) => l.udp && l.address === '::')?.udp;
      if (sock) ip = `::ffff:${ip}`;
    }
    if (!sock) {
      this.stats.sendErrors++;
      throw new TransportError('TRANSPORT_NO_ROUTE', `no UDP listener for IPv${family}`, false);
    }
    if (this.trace) this.traceMessage('out', 'udp', ip, port, bytes);
    await new Promise<void>((resolve, reject) => {
      sock.send(bytes, port, ip, (err) => {
        if (err) {
          this.stats.sendErrors++;
          reject(new TransportError('TRANSPORT_SEND_FAILED', `UDP send to ${ip}:${port} failed`, true, { cause: err }));
        } else {
          this.stats.messagesSent++;
          this.stats.bytesSent += bytes.length;
          resolve();
        }
      });
    });
  }

  private udpSocketFor(family: 4 | 6, local: Source['local']): UdpSocket | undefined {
    let fallback: UdpSocket | undefined;
    for (const l of this.listeners) {
      if (!l.udp) continue;
      const lf = l.address.includes(':') ? 6 : 4;
      if (local && l.address === local.address && l.port === local.port && lf === family) return l.udp;
      if (lf === family) fallback ??= l.udp;
    }
    return fallback;
  }

  private async resolve(host: string): Promise<string> {
    try {
      return (await lookup(host)).address;
    } catch (err) {
      this.stats.sendErrors++;
      throw new TransportError('TRANSPORT_NO_ROUTE', `cannot resolve ${host}`, true, { cause: err });
    }
  }

  private live(id: number): Connection | undefined {
    const c = this.connections.get(id);
    return c && !c.closed && !c.socket.destroyed ? c : undefined;
  }

  private findRemote(transport: Transport, address: string, port: number): Connection | undefined {
    const id = this.byRemote.get(remoteKey(transport, address, port));
    return id === undefined ? undefined : this.live(id);
  }

  private async streamTo(transport: 'tcp' | 'tls', address: string, port: number, connectionId: number | undefined): Promise<Connection> {
    if (connectionId !== undefined) {
      const c = this.live(connectionId);
      if (c) return c;
    }
    const ip = net.isIP(address) ? address : await this.resolve(address);
    const existing = this.findRemote(transport, ip, port);
    if (existing) return existing;
    const key = remoteKey(transport, ip, port);
    let pending = this.connecting.get(key);
    if (!pending) {
      pending = this.connect(transport, ip, port, net.isIP(address) ? undefined : address).finally(() => this.connecting.delete(key));
      this.connecting.set(key, pending);
    }
    return pending;
  }

  private connect(transport: 'tcp' | 'tls', ip: string, port: number, servername: string | undefined): Promise<Connection> {
    return new Promise<Connection>((resolve, reject) => {
      const sock =
        transport === 'tls'
          ? tls.connect({ ...this.tlsClient, host: ip, port, ...(servername ? { servername } : {}) })
          : net.connect({ host: ip, port });
      const timer = setTimeout(() => {
        sock.destroy();
        fail(new Error('connect timeout'));
      }, this.connectTimeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        this.stats.sendErrors++;
        reject(new TransportError('TRANSPORT_CONNECT_FAILED', `cannot connect to ${transport}:${ip}:${port}`, true, { cause: err }));
      };
      sock.once('error', fail);
      sock.once(transport === 'tls' ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        sock.off('error', fail);
        if (this.closing) {
          sock.destroy();
          reject(new TransportError('TRANSPORT_CLOSED', 'transport closed', false));
          return;
        }
        const conn = this.attach(sock, transport, false);
        if (!conn) reject(new TransportError('TRANSPORT_CONNECT_FAILED', `connection to ${ip}:${port} closed`, true));
        else resolve(conn);
      });
    });
  }

  private write(conn: Connection, bytes: Buffer): Promise<void> {
    if (conn.closed || conn.socket.destroyed) {
      this.stats.sendErrors++;
      return Promise.reject(new TransportError('TRANSPORT_SEND_FAILED', `connection ${conn.id} is closed`, true));
    }
    if (conn.socket.writableLength + bytes.length > this.maxWriteBuffer) {
      // A peer that does not read must not make us hold its data without bound.
      this.stats.sendErrors++;
      this.logger.info({ connection: conn.id, remote: conn.remote, queued: conn.socket.writableLength }, 'peer does not read; connection dropped');
      conn.socket.destroy();
      return Promise.reject(new TransportError('TRANSPORT_PEER_SLOW', `peer ${conn.remote.address}:${conn.remote.port} does not read`, true));
    }
    if (this.trace) this.traceMessage('out', conn.transport, conn.remote.address, conn.remote.port, bytes);
    return new Promise<void>((resolve, reject) => {
      conn.socket.write(bytes, (err) => {
        if (err) {
          this.stats.sendErrors++;
          reject(new TransportError('TRANSPORT_SEND_FAILED', `write to connection ${conn.id} failed`, true, { cause: err }));
        } else {
          this.stats.messagesSent++;
          this.stats.bytesSent += bytes.length;
          resolve();
        }
      });
    });
  }
}

/** Credentials never reach a log: the values of (Proxy-)Authorization rows, folded lines included. */
export function redactCredentials(text: string): string {
  return text.replace(/^((?:proxy-)?authorization)[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*/gim, '$1: <redacted>');
}

function remoteKey(transport: Transport, address: string, port: number): string {
  return `${transport}|${address}|${port}`;
}

/** IPv4-mapped IPv6 addresses (dual-stack sockets) are reported as plain IPv4. */
function normalizeAddress(a: string): string {
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

/**
 * dgram resolves the address of every send, even a literal, through dns.lookup and a deferred
 * callback. sendUdp resolves names itself beforehand, so the socket only ever sees literals: they
 * are handed straight back; anything else still goes to the system resolver.
 */
function literalLookup(address: string, family: unknown, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const fam = family === 6 ? 6 : 4;
  if (net.isIPv4(address) || address.includes(':')) callback(null, address, fam);
  else dnsLookup(address, { family: fam }, callback);
}
