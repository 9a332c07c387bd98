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

/**
 * Operations per CPU-second of this process (user + system), so that other load on a shared
 * machine does not count against us; wall-clock rate alongside for reference.
 */
function run(c: Case): { cpu: number; wall: number } {
  // Warm up so the JIT has settled before timing.
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += c.work(c.bytes);
  let ops = 0;
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < 1000; i++) sink += c.work(c.bytes);
    ops += 1000;
    now = process.hrtime.bigint();
  }
  const cpu = process.cpuUsage(cpu0);
  if (sink === 0) throw new Error('no work done');
  return { cpu: ops / ((cpu.user + cpu.system) / 1e6), wall: ops / (Number(now - start) / 1e9) };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US').padStart(10);
console.log(`node ${process.version}, ${seconds}s per case, one core; rates per CPU-second (wall-clock in brackets)`);
for (const c of cases) {
  const r = run(c);
  console.log(`${c.name.padEnd(52)} ${fmt(r.cpu)} /s  (wall ${fmt(r.wall).trim()} /s, ${c.bytes.length} bytes)`);
}
