/**
 * Attacks on the transport, each against the real process: a thousand headers, a 10 MB body over
 * TCP, a slowloris TCP client, and reflection (answers to unauthenticated requests from a source
 * that may be spoofed must not be much bigger than the requests).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { SipUdpClient, buildRequest, tcpCollect, tcpConnect } from '../support/sip-udp-client.js';

let sl: RunningSipledger;
let c: SipUdpClient;

beforeAll(async () => {
  sl = await startSipledger(baseConfig());
  c = await SipUdpClient.open();
});
afterAll(async () => {
  c?.close();
  await sl?.stop();
  if (sl) removeDir(sl.dir);
});

const options = (): string => buildRequest({ method: 'OPTIONS', uri: 'sip:example.com', from: '<sip:probe@example.net>', to: '<sip:example.com>' }, c.viaHost);

/** Resident memory of the sipledger process, in bytes. */
function rss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${sl.child.pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

async function alive(): Promise<void> {
  expect(sl.child.exitCode).toBeNull();
  const r = await c.request(options(), sl.sipPort);
  expect(r?.status).toBe(200);
}

describe('oversized input', () => {
  it('a request with 1000 headers is refused (400 or 513) and the process keeps serving', async () => {
    const headers = Array.from({ length: 1000 }, (_, i) => `X-Filler-${i}: ${i}`);
    const r = await c.request(buildRequest({ method: 'OPTIONS', uri: 'sip:example.com', from: '<sip:probe@example.net>', to: '<sip:example.com>', headers }, c.viaHost), sl.sipPort);
    expect([400, 513]).toContain(r?.status);
    await alive();
  });

  it('a 10 MB body over TCP: the connection is closed, the process keeps serving and its memory stays bounded', async () => {
    const before = rss();
    const sock = await tcpConnect(sl.ports['tcp']!);
    const size = 10 * 1024 * 1024;
    const head = buildRequest({ method: 'MESSAGE', uri: 'sip:alice@example.com', from: '<sip:probe@example.net>', to: '<sip:alice@example.com>', transport: 'TCP', headers: ['Content-Type: text/plain'] }, '127.0.0.1:9')
      .replace(/Content-Length: 0\r\n\r\n$/, `Content-Length: ${size}\r\n\r\n`);
    const collected = tcpCollect(sock, 20_000);
    sock.on('error', () => undefined); // a reset once the server closes is expected
    sock.write(head);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (let sent = 0; sent < size && !sock.destroyed; sent += chunk.length) {
      if (!sock.write(chunk)) await new Promise((r) => { sock.once('drain', r); sock.once('close', r); });
    }
    const { data, closed } = await collected;
    sock.destroy();
    expect(closed).toBe(true);
    // Answered 513 before closing, when the answer could still be written.
    if (data.length > 0) expect(data.toString('latin1')).toMatch(/^SIP\/2\.0 513 /);
    await alive();
    expect(rss() - before).toBeLessThan(64 * 1024 * 1024);
  });
});

describe('slow clients', () => {
  it('slowloris: a TCP client sending one byte per second does not keep others from being served over UDP and TCP', async () => {
    const slow = await tcpConnect(sl.ports['tcp']!);
    slow.on('error', () => undefined);
    const text = Buffer.from(buildRequest({ method: 'OPTIONS', uri: 'sip:example.com', from: '<sip:slow@example.net>', to: '<sip:example.com>', transport: 'TCP' }, '127.0.0.1:9'));
    let i = 0;
    const drip = setInterval(() => {
      if (i < text.length && !slow.destroyed) slow.write(text.subarray(i, ++i));
    }, 1000);
    try {
      await new Promise((r) => setTimeout(r, 2500));
      // While the slow request is still arriving, others are answered at once, over UDP and TCP.
      for (let k = 0; k < 5; k++) await alive();
      const fast = await tcpConnect(sl.ports['tcp']!);
      const got = tcpCollect(fast, 5000);
      fast.write(buildRequest({ method: 'OPTIONS', uri: 'sip:example.com', from: '<sip:fast@example.net>', to: '<sip:example.com>', transport: 'TCP' }, '127.0.0.1:9'));
      const { data } = await got;
      fast.destroy();
      expect(data.toString('latin1')).toMatch(/^SIP\/2\.0 200 /);
      expect(i).toBeLessThan(text.length); // the slow request was still incomplete throughout
    } finally {
      clearInterval(drip);
      slow.destroy();
    }
  });
});

describe('reflection', () => {
  it('answers to unauthenticated UDP requests (a spoofable source) stay about the size of the request', async () => {
    const cases: Array<{ name: string; text: string; expect: number }> = [
      { name: 'REGISTER', text: buildRequest({ method: 'REGISTER', uri: 'sip:example.com', from: '<sip:alice@example.com>', to: '<sip:alice@example.com>', contact: '<sip:alice@127.0.0.1:9>' }, c.viaHost), expect: 401 },
      { name: 'INVITE from a served domain', text: buildRequest({ method: 'INVITE', uri: 'sip:bob@example.com', from: '<sip:alice@example.com>', to: '<sip:bob@example.com>' }, c.viaHost), expect: 407 },
      { name: 'INVITE from a stranger to a foreign domain', text: buildRequest({ method: 'INVITE', uri: 'sip:x@198.51.100.1', from: '<sip:m@evil.example>', to: '<sip:x@198.51.100.1>' }, c.viaHost), expect: 403 },
      { name: 'OPTIONS to the proxy', text: options(), expect: 200 },
      { name: 'MESSAGE to an unregistered user', text: buildRequest({ method: 'MESSAGE', uri: 'sip:carol@example.com', from: '<sip:m@evil.example>', to: '<sip:carol@example.com>' }, c.viaHost), expect: 404 },
    ];
    const figures: string[] = [];
    for (const k of cases) {
      const before = c.received.length;
      const r = await c.request(k.text, sl.sipPort);
      expect(r?.status).toBe(k.expect);
      await new Promise((res) => setTimeout(res, 100));
      const answered = c.received.slice(before).reduce((n, x) => n + x.raw.length, 0);
      const ratio = answered / Buffer.byteLength(k.text);
      figures.push(`${k.name}: request ${Buffer.byteLength(k.text)} B, answers ${answered} B (${c.received.length - before} datagrams), ratio ${ratio.toFixed(2)}`);
      // A reflector worth abusing multiplies traffic; sipledger's answers stay below twice the request.
      expect(ratio).toBeLessThan(2);
    }
    console.log(figures.join('\n'));
  });
});
