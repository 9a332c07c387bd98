/**
 * Message-layer throughput on one core: parse a received message, change one header the way a
 * proxy does (Max-Forwards decrement), serialise it again.
 *
 *   node --import tsx bench/sip-bench.ts [seconds-per-case=3]
 *
 * Messages are the golden fixtures: the Grandstream REGISTER with digest credentials from the
 * OpenSER walkthrough, and the Grandstream INVITE with its SDP offer.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseMessage, serialize, type SipRequest } from '../src/core/sip/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixture = (name: string): Buffer => readFileSync(path.join(root, 'test', 'fixtures', 'sip', name));
const seconds = Number(process.argv[2] ?? 3);

interface Case {
  readonly name: string;
  readonly bytes: Buffer;
  readonly work: (buf: Buffer) => number;
}

/** Parse, decrement Max-Forwards, serialise: what a proxy does to every request it relays. */
function relayOnce(buf: Buffer): number {
  const r = parseMessage(buf);
  if (!r.ok) throw new Error(`fixture does not parse: ${r.reason}`);
  const msg = r.message as SipRequest;
  const mf = msg.maxForwards() ?? 70;
  msg.set('Max-Forwards', String(mf - 1));
  return serialize(msg).length;
}

function parseOnly(buf: Buffer): number {
  const r = parseMessage(buf);
  if (!r.ok) throw new Error(`fixture does not parse: ${r.reason}`);
  return r.message.headers.length;
}

function untouchedRoundTrip(buf: Buffer): number {
  const r = parseMessage(buf);
  if (!r.ok) throw new Error(`fixture does not parse: ${r.reason}`);
  return serialize(r.message).length;
}

const register = fixture('seed-register-auth.sip');
const invite = fixture('seed-invite-sdp.sip');

const cases: Case[] = [
  { name: 'REGISTER parse + Max-Forwards change + serialize', bytes: register, work: relayOnce },
  { name: 'INVITE+SDP parse + Max-Forwards change + serialize', bytes: invite, work: relayOnce },
  { name: 'REGISTER parse only', bytes: register, work: parseOnly },
  { name: 'REGISTER parse + serialize untouched', bytes: register, work: untouchedRoundTrip },
];

function run(c: Case): number {
  // Warm up so the JIT has settled before timing.
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += c.work(c.bytes);
  let ops = 0;
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const start = process.hrtime.bigint();
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < 1000; i++) sink += c.work(c.bytes);
    ops += 1000;
    now = process.hrtime.bigint();
  }
  if (sink === 0) throw new Error('no work done');
  return ops / (Number(now - start) / 1e9);
}

console.log(`node ${process.version}, ${seconds}s per case, one core`);
for (const c of cases) {
  const rate = run(c);
  console.log(`${c.name.padEnd(52)} ${Math.round(rate).toLocaleString('en-US').padStart(10)} /s  (${c.bytes.length} bytes)`);
}
