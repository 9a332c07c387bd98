/**
 * Would a worker thread pay for the per-registration crypto? Measures, on this machine, in CPU
 * microseconds of the main thread:
 *  - one challenge's nonce (issue) and one answer's nonce check (verify), HMAC-SHA-256 each;
 *  - one digest check as the authenticator does it (HA2, response: two MD5s over short strings);
 *  - the main thread's share of one round trip to a worker thread (postMessage + message event),
 *    which is what offloading that work would cost before the worker did anything.
 *
 *   node --import tsx bench/worker-offload-bench.ts [iterations=200000]
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { NonceCodec } from '../src/core/auth/nonce.js';

const N = Number(process.argv[2] ?? 200_000);

function cpuUs(fn: () => void, n: number): number {
  for (let i = 0; i < Math.min(n, 20_000); i++) fn();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

const codec = new NonceCodec({ secret: 'worker-offload-bench-secret-0123' });
let nonce = codec.issue('bench.test');
const issue = cpuUs(() => {
  nonce = codec.issue('bench.test');
}, N);
const verify = cpuUs(() => {
  if (codec.verify(nonce, 'bench.test').status !== 'valid') throw new Error('nonce not valid');
}, N);
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
const ha1 = md5('user00001:bench.test:secret');
const digest = cpuUs(() => {
  md5(`${ha1}:${nonce}:00000001:0a4f113b:auth:${md5('REGISTER:sip:bench.test')}`);
}, N);

// Round trips to an echo worker, many in flight (as under load), main thread CPU only.
const worker = new Worker(`const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => parentPort.postMessage(m));`, { eval: true });
const trips = Math.min(N, 100_000);
const inFlight = 64;
const c0 = process.cpuUsage();
await new Promise<void>((resolve) => {
  let sent = 0;
  let received = 0;
  const payload = { nonce, realm: 'bench.test', ha1, method: 'REGISTER', uri: 'sip:bench.test', nc: '00000001', cnonce: '0a4f113b' };
  worker.on('message', () => {
    received++;
    if (sent < trips) {
      sent++;
      worker.postMessage(payload);
    }
    if (received === trips) resolve();
  });
  for (; sent < inFlight; sent++) worker.postMessage(payload);
});
const c = process.cpuUsage(c0);
await worker.terminate();
const trip = (c.user + c.system) / trips;

console.log(`node ${process.version}; CPU microseconds on the calling thread`);
console.log(`nonce issue (HMAC-SHA-256, 39 bytes)      ${issue.toFixed(2)} us`);
console.log(`nonce verify (HMAC-SHA-256, 39 bytes)     ${verify.toFixed(2)} us`);
console.log(`digest response check (2 x MD5)           ${digest.toFixed(2)} us`);
console.log(`worker round trip, main thread share      ${trip.toFixed(2)} us  (${inFlight} in flight)`);
console.log(`crypto per registration ${(issue + verify + digest).toFixed(2)} us vs offload cost ${(2 * trip).toFixed(2)} us (two hand-offs)`);
