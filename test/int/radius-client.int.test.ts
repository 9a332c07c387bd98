/**
 * The RADIUS client against a scripted RADIUS peer on loopback UDP: what FreeRADIUS never does on
 * purpose (forged, unsigned or misdirected replies, unanswered first transmissions, hundreds of
 * requests held at once). The peer signs replies with its own implementation of RFC 2865/3579.
 */
import { createHash, createHmac } from 'node:crypto';
import dgram from 'node:dgram';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BackendUnavailableError } from '../../src/core/auth/backend.js';
import { createRadiusBackend, type RadiusBackend, type RadiusBackendOptions } from '../../src/backends/auth/radius/backend.js';
import { RadiusClient } from '../../src/backends/auth/radius/client.js';
import { registerDigest } from '../support/digest.js';

const logger = pino({ level: 'silent' });
const budget = (): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(20_000) });
const SECRET = 'peer-secret';

type Attr = [number, Buffer];

function parseAttributes(packet: Buffer): Attr[] {
  const out: Attr[] = [];
  const length = packet.readUInt16BE(2);
  for (let o = 20; o < length; o += packet[o + 1]!) out.push([packet[o]!, packet.subarray(o + 2, o + packet[o + 1]!)]);
  return out;
}

function attr(type: number, value: string | Buffer): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([Buffer.from([type, v.length + 2]), v]);
}

/** RFC 3579 section 3.2 check of a request's Message-Authenticator. */
function requestSignedWith(request: Buffer, secret: string): boolean {
  const copy = Buffer.from(request);
  let ma: Buffer | undefined;
  for (let o = 20; o < copy.length; o += copy[o + 1]!) {
    if (copy[o] === 80) {
      ma = Buffer.from(copy.subarray(o + 2, o + 18));
      copy.fill(0, o + 2, o + 18);
    }
  }
  return ma !== undefined && createHmac('md5', secret).update(copy).digest().equals(ma);
}

interface ReplyOptions {
  code?: number;
  attributes?: Buffer[];
  messageAuthenticator?: 'good' | 'bad' | 'none';
  responseAuthenticator?: 'good' | 'bad';
  secret?: string;
  identifier?: number;
}

/** A reply to `request` built from RFC 2865 section 3 and RFC 3579 section 3.2. */
function reply(request: Buffer, o: ReplyOptions = {}): Buffer {
  const secret = o.secret ?? SECRET;
  const ma = o.messageAuthenticator ?? 'good';
  const attrs = Buffer.concat([...(o.attributes ?? []), ...(ma === 'none' ? [] : [attr(80, Buffer.alloc(16))])]);
  const packet = Buffer.concat([Buffer.from([o.code ?? 2, o.identifier ?? request[1]!, 0, 0]), request.subarray(4, 20), attrs]);
  packet.writeUInt16BE(packet.length, 2);
  if (ma !== 'none') {
    const mac = createHmac('md5', secret).update(packet).digest();
    if (ma === 'bad') mac[0]! ^= 1;
    mac.copy(packet, packet.length - 16);
  }
  const auth = createHash('md5').update(packet).update(secret).digest();
  if (o.responseAuthenticator === 'bad') auth[15]! ^= 0x80;
  auth.copy(packet, 4);
  return packet;
}

/** A scripted RADIUS server: `onRequest` decides what to send back, and from which socket. */
class Peer {
  readonly received: Array<{ packet: Buffer; port: number; address: string }> = [];
  onRequest: (packet: Buffer, from: dgram.RemoteInfo, peer: Peer) => void = () => undefined;
  private constructor(
    readonly socket: dgram.Socket,
    readonly other: dgram.Socket,
  ) {
    socket.on('message', (packet, from) => {
      this.received.push({ packet, port: from.port, address: from.address });
      this.onRequest(packet, from, this);
    });
  }
  static async start(): Promise<Peer> {
    const bind = async (): Promise<dgram.Socket> => {
      const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      return s;
    };
    return new Peer(await bind(), await bind());
  }
  get port(): number {
    return this.socket.address().port;
  }
  send(packet: Buffer, to: dgram.RemoteInfo, via: 'same' | 'other' = 'same'): void {
    (via === 'same' ? this.socket : this.other).send(packet, to.port, to.address);
  }
  close(): void {
    this.socket.close();
    this.other.close();
  }
}

describe('RADIUS client against a scripted peer', () => {
  const peers: Peer[] = [];
  const closers: Array<{ close(): Promise<void> }> = [];

  const peer = async (): Promise<Peer> => {
    const p = await Peer.start();
    peers.push(p);
    return p;
  };
  const backendFor = (servers: Peer[], extra: Partial<RadiusBackendOptions> = {}): RadiusBackend => {
    const b = createRadiusBackend({
      name: 'radius-peer',
      servers: servers.map((p) => ({ host: '127.0.0.1', port: p.port, secret: SECRET })),
      // Generous for answers on a busy machine; tests that expect silence set their own.
      timeoutMs: 2_000,
      retries: 0,
      logger,
      ...extra,
    });
    closers.push(b);
    return b;
  };

  afterEach(async () => {
    await Promise.all(closers.splice(0).map((c) => c.close()));
    for (const p of peers.splice(0)) p.close();
  });

  it('sends the draft-sterman-aaa-sip layout with a valid Message-Authenticator', async () => {
    const p = await peer();
    p.onRequest = (packet, from) => p.send(reply(packet), from);
    const request = registerDigest('alice', { password: 'alice-secret' }, { algorithm: 'MD5-sess' });
    expect((await backendFor([p]).verify(request, budget())).result).toBe('accept');

    const packet = p.received[0]!.packet;
    expect(packet[0]).toBe(1);
    expect(requestSignedWith(packet, SECRET)).toBe(true);
    const attrs = parseAttributes(packet);
    const one = (type: number): Buffer => attrs.find(([t]) => t === type)![1];
    expect(one(1).toString()).toBe('alice@example.com');
    expect(one(206).toString()).toBe(request.response);
    expect(one(6).readUInt32BE(0)).toBe(15);
    expect(one(208).toString()).toBe('alice');
    expect([...one(4)]).toEqual([127, 0, 0, 1]);
    const subs = attrs.filter(([t]) => t === 207).map(([, v]) => [v[0], v.subarray(2).toString()]);
    expect(subs).toEqual([
      [1, 'example.com'],
      [2, request.nonce],
      [3, 'REGISTER'],
      [4, 'sip:example.com'],
      [5, 'auth'],
      [6, 'MD5-sess'],
      [8, request.cnonce],
      [9, '00000001'],
      [10, 'alice'],
    ]);
  });

  it('accepts a correctly signed Access-Accept and maps SIP-AVPs and Reply-Message', async () => {
    const p = await peer();
    p.onRequest = (packet, from) =>
      p.send(reply(packet, { attributes: [attr(225, 'rpid:<sip:1@example.com>'), attr(225, 'class#3'), attr(225, 'class#4'), attr(225, 'broken'), attr(18, 'hi')] }), from);
    const b = backendFor([p]);
    expect(await b.verify(registerDigest('alice', { password: 'x' }), budget())).toEqual({
      result: 'accept',
      attributes: { rpid: '<sip:1@example.com>', class: [3, 4], 'Reply-Message': 'hi' },
    });
    expect(b.stats.droppedReplies).toBe(0);
  });

  it('treats Access-Challenge as Access-Reject and carries the Reply-Message as reason', async () => {
    const p = await peer();
    p.onRequest = (packet, from) => p.send(reply(packet, { code: 11, attributes: [attr(18, 'more please'), attr(225, 'leak:x')] }), from);
    expect(await backendFor([p]).verify(registerDigest('alice', { password: 'x' }), budget())).toEqual({ result: 'reject', reason: 'more please' });
  });

  const forgeries: Array<[string, (packet: Buffer, from: dgram.RemoteInfo, p: Peer) => void]> = [
    ['a correctly signed reply from another port', (packet, from, p) => p.send(reply(packet), from, 'other')],
    ['a reply without Message-Authenticator', (packet, from, p) => p.send(reply(packet, { messageAuthenticator: 'none' }), from)],
    ['a reply with a wrong Message-Authenticator', (packet, from, p) => p.send(reply(packet, { messageAuthenticator: 'bad' }), from)],
    ['a reply with a wrong Response Authenticator', (packet, from, p) => p.send(reply(packet, { responseAuthenticator: 'bad' }), from)],
    ['a reply signed with another shared secret', (packet, from, p) => p.send(reply(packet, { secret: 'other-secret' }), from)],
    ['a reply carrying another identifier', (packet, from, p) => p.send(reply(packet, { identifier: (packet[1]! + 1) % 256 }), from)],
    ['a truncated reply', (packet, from, p) => p.send(reply(packet).subarray(0, 30), from)],
    ['an Accounting-Response', (packet, from, p) => p.send(reply(packet, { code: 5 }), from)],
  ];
  for (const [what, forge] of forgeries) {
    it(`drops ${what}, counts it, and never accepts`, async () => {
      const p = await peer();
      p.onRequest = forge;
      const b = backendFor([p], { timeoutMs: 400 });
      await expect(b.verify(registerDigest('alice', { password: 'x' }), budget())).rejects.toBeInstanceOf(BackendUnavailableError);
      // Retransmissions and Status-Server probes may draw further forged replies under load:
      // every one of them is dropped, none accepted.
      expect(b.stats.droppedReplies).toBeGreaterThanOrEqual(1);
      expect(b.stats.timeouts).toBeGreaterThanOrEqual(1);
    });
  }

  it('keeps waiting after a dropped reply and takes the genuine one that follows', async () => {
    const p = await peer();
    p.onRequest = (packet, from) => {
      p.send(reply(packet, { secret: 'attacker' }), from);
      setTimeout(() => p.send(reply(packet, { code: 3 }), from), 20);
    };
    const b = backendFor([p], { timeoutMs: 2_000 });
    expect((await b.verify(registerDigest('alice', { password: 'x' }), budget())).result).toBe('reject');
    expect(b.stats.droppedReplies).toBe(1);
  });

  it('retransmits identical bytes after a timeout', async () => {
    const p = await peer();
    p.onRequest = (packet, from, self) => {
      if (self.received.length >= 2) p.send(reply(packet), from);
    };
    const b = backendFor([p], { timeoutMs: 400, retries: 2 });
    expect((await b.verify(registerDigest('alice', { password: 'x' }), budget())).result).toBe('accept');
    expect(p.received).toHaveLength(2);
    expect(p.received[1]!.packet.equals(p.received[0]!.packet)).toBe(true);
    expect(p.received[1]!.port).toBe(p.received[0]!.port);
    expect(b.stats).toMatchObject({ retransmissions: 1, timeouts: 1 });
  });

  it('re-encodes for the next server with that server’s secret on failover', async () => {
    const silent = await peer();
    const live = await peer();
    live.onRequest = (packet, from) => {
      if (requestSignedWith(packet, 'second-secret')) live.send(reply(packet, { secret: 'second-secret' }), from);
    };
    const b = createRadiusBackend({
      name: 'radius-peer',
      servers: [
        { host: '127.0.0.1', port: silent.port, secret: SECRET },
        { host: '127.0.0.1', port: live.port, secret: 'second-secret' },
      ],
      timeoutMs: 400,
      retries: 0,
      logger,
    });
    closers.push(b);
    expect((await b.verify(registerDigest('alice', { password: 'x' }), budget())).result).toBe('accept');
    expect(requestSignedWith(silent.received[0]!.packet, SECRET)).toBe(true);
    expect(live.received[0]!.packet.subarray(4, 20).equals(silent.received[0]!.packet.subarray(4, 20))).toBe(false);
    expect(b.stats.failovers).toBe(1);
  });

  it('keeps identifiers unique per socket with 600 requests in flight at once', async () => {
    const p = await peer();
    const held: Array<[Buffer, dgram.RemoteInfo]> = [];
    p.onRequest = (packet, from) => {
      held.push([packet, from]);
      if (held.length === 600) for (const [pk, fr] of held) p.send(reply(pk), fr);
    };
    const b = backendFor([p], { timeoutMs: 10_000 });
    const results = await Promise.all(Array.from({ length: 600 }, () => b.verify(registerDigest('alice', { password: 'x' }), budget())));
    expect(results.every((r) => r.result === 'accept')).toBe(true);
    const keys = new Set(held.map(([pk, fr]) => `${fr.port}/${pk[1]}`));
    expect(keys.size).toBe(600);
    expect(new Set(held.map(([, fr]) => fr.port)).size).toBeGreaterThanOrEqual(3);
    expect(b.stats).toMatchObject({ requests: 600, timeouts: 0, droppedReplies: 0 });
  });

  it('queues requests beyond 256 in flight when it may open only one socket', async () => {
    const p = await peer();
    const held: Array<[Buffer, dgram.RemoteInfo]> = [];
    let released = false;
    p.onRequest = (packet, from) => {
      if (released) return p.send(reply(packet), from);
      held.push([packet, from]);
      if (held.length === 256) {
        released = true;
        for (const [pk, fr] of held) p.send(reply(pk), fr);
      }
    };
    const client = new RadiusClient({ name: 'radius-one-socket', servers: [{ host: '127.0.0.1', port: p.port, secret: SECRET }], maxSockets: 1, timeoutMs: 10_000, logger });
    closers.push(client);
    const replies = await Promise.all(Array.from({ length: 300 }, () => client.request([['User-Name', 'alice@example.com']], budget().signal)));
    expect(replies.every((r) => r.code === 'Access-Accept')).toBe(true);
    expect(new Set(held.map(([pk]) => pk[1])).size).toBe(256);
    expect(new Set(p.received.map((r) => r.port)).size).toBe(1);
    expect(client.stats.queued).toBe(44);
  });

  it('probes with a signed Status-Server and marks a silent server dead', async () => {
    const p = await peer();
    p.onRequest = (packet, from) => {
      if (packet[0] === 12 && requestSignedWith(packet, SECRET)) p.send(reply(packet), from);
    };
    const silent = await peer();
    const client = new RadiusClient({
      name: 'radius-probe',
      servers: [
        { host: '127.0.0.1', port: p.port, secret: SECRET },
        { host: '127.0.0.1', port: silent.port, secret: SECRET },
      ],
      timeoutMs: 400,
      retries: 0,
      logger,
    });
    closers.push(client);
    expect(await client.statusServer(0)).toBe(true);
    expect(await client.statusServer(1)).toBe(false);
    expect(silent.received[0]!.packet[0]).toBe(12);
    expect(client.health().map((h) => h.state)).toEqual(['alive', 'dead']);
    expect(client.stats).toMatchObject({ probes: 2, probeFailures: 1 });
  });

  it('refuses work after close with BackendUnavailableError', async () => {
    const p = await peer();
    const b = backendFor([p]);
    await b.close();
    await expect(b.verify(registerDigest('alice', { password: 'x' }), budget())).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
  });

  it('rejects a configuration without servers or with an empty secret, naming the problem', () => {
    expect(() => createRadiusBackend({ name: 'r', servers: [], logger })).toThrow(/servers must not be empty/);
    expect(() => createRadiusBackend({ name: 'r', servers: [{ host: '127.0.0.1', secret: '' }], logger })).toThrow(/servers\[0\]\.secret is empty/);
    expect(() => createRadiusBackend({ name: 'r', servers: [{ host: '127.0.0.1', port: 70000, secret: 's' }], logger })).toThrow(/port/);
  });

  it('never writes the shared secret or the digest response to its log, even at trace level', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const traced = pino({ level: 'trace' }, sink);
    const dead = await peer();
    const forger = await peer();
    forger.onRequest = (packet, from) => forger.send(reply(packet, { secret: 'attacker' }), from);
    const b = createRadiusBackend({
      name: 'radius-logged',
      servers: [
        { host: '127.0.0.1', port: dead.port, secret: 'first-secret-value' },
        { host: '127.0.0.1', port: forger.port, secret: 'second-secret-value' },
      ],
      timeoutMs: 100,
      retries: 0,
      deadTimeMs: 0,
      logger: traced,
    });
    closers.push(b);
    const request = registerDigest('alice', { password: 'alice-secret' });
    await expect(b.verify(request, budget())).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(b.verify(request, budget())).rejects.toBeInstanceOf(BackendUnavailableError);
    const log = lines.join('');
    expect(log).toMatch(/radius reply dropped/);
    expect(log).toMatch(/not answering/);
    for (const secret of ['first-secret-value', 'second-secret-value', 'alice-secret', request.response]) expect(log).not.toContain(secret);
  });
});
