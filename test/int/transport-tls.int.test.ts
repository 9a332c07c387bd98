import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { type AnyMessage, DEFAULT_LIMITS, type SipRequest, createResponse } from '../../src/core/sip/index.js';
import { TransportManager } from '../../src/core/transport/index.js';

const REQUEST =
  'OPTIONS sip:probe@example.com SIP/2.0\r\n' +
  'Via: SIP/2.0/TLS 10.9.9.9:5061;rport;branch=z9hG4bKtls1\r\n' +
  'Max-Forwards: 70\r\n' +
  'From: <sip:a@example.com>;tag=f1\r\n' +
  'To: <sip:b@example.com>\r\n' +
  'Call-ID: tls-1\r\n' +
  'CSeq: 1 OPTIONS\r\n' +
  'Content-Length: 0\r\n\r\n';

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('TLS transport on loopback', () => {
  let dir: string;
  let cert: Buffer;
  let key: Buffer;
  let tm: TransportManager;
  let received: AnyMessage[];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sipledger-tls-'));
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    cert = readFileSync(path.join(dir, 'cert.pem'));
    key = readFileSync(path.join(dir, 'key.pem'));
    tm = await TransportManager.listen({
      listen: [
        { transport: 'tls', address: '127.0.0.1', port: 0, tls: { cert, key } },
        { transport: 'tcp', address: '127.0.0.1', port: 0 },
      ],
      limits: DEFAULT_LIMITS,
      logger: pino({ level: 'silent' }),
      tlsClient: { ca: cert },
    });
    received = [];
    tm.onMessage((m) => received.push(m));
  });

  afterAll(async () => {
    await tm?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('listens on several addresses at once', () => {
    expect(tm.listening().map((l) => l.transport)).toEqual(['tls', 'tcp']);
    expect(tm.listening().every((l) => l.port > 0)).toBe(true);
  });

  it('accepts a request over TLS with the configured certificate and answers on the same connection', async () => {
    const port = tm.listening()[0]!.port;
    let data = '';
    const sock = tls.connect({ host: '127.0.0.1', port, ca: cert, servername: 'localhost' });
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('secureConnect', () => resolve());
        sock.once('error', reject);
      });
      expect(sock.authorized).toBe(true);
      sock.on('data', (b) => (data += b.toString()));
      sock.write(REQUEST);
      await until(() => received.length === 1, 'the request');
      const req = received[0] as SipRequest;
      expect(req.source).toMatchObject({ transport: 'tls', address: '127.0.0.1', port: sock.localPort });
      await tm.sendResponse(createResponse(req, 200), req.source);
      await until(() => data.includes('SIP/2.0 200 OK'), 'the response');
      expect(data).toContain('Call-ID: tls-1');
      const before = data.length;
      sock.write('\r\n\r\n');
      await until(() => data.length > before, 'the pong');
      expect(data.slice(before)).toBe('\r\n');
    } finally {
      sock.destroy();
    }
  });

  it('connects out over TLS, verifying the peer against the configured CA', async () => {
    const other = await TransportManager.listen({
      listen: [{ transport: 'tls', address: '127.0.0.1', port: 0, tls: { cert, key } }],
      limits: DEFAULT_LIMITS,
      logger: pino({ level: 'silent' }),
    });
    const got: AnyMessage[] = [];
    other.onMessage((m) => got.push(m));
    try {
      await tm.send(Buffer.from(REQUEST.replace('tls-1', 'tls-out')), { address: '127.0.0.1', port: other.listening()[0]!.port, transport: 'tls' });
      await until(() => got.length === 1, 'the request at the other side');
      expect(got[0]!.callId).toBe('tls-out');
      expect(got[0]!.source!.transport).toBe('tls');
    } finally {
      await other.close();
    }
  });

  it('refuses to connect to a peer whose certificate it cannot verify', async () => {
    const strict = await TransportManager.listen({ listen: [], limits: DEFAULT_LIMITS, logger: pino({ level: 'silent' }) });
    try {
      await expect(
        strict.send(Buffer.from(REQUEST), { address: '127.0.0.1', port: tm.listening()[0]!.port, transport: 'tls' }),
      ).rejects.toMatchObject({ code: 'TRANSPORT_CONNECT_FAILED' });
    } finally {
      await strict.close();
    }
  });
});
