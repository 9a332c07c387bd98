/**
 * `npm run fuzz -- --count N [--seed S] [--log memory|file] [--drain]`: feeds N mutated SIP messages
 * through sipledger's whole request path in process and prints messages, crashes, hangs and heap
 * growth. Exits 1 when any invariant failed.
 */
import { parseArgs } from 'node:util';
import { runFuzz } from '../test/stress/fuzz-engine.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100000' },
    seed: { type: 'string' },
    log: { type: 'string', default: 'file' },
    drain: { type: 'boolean', default: false },
    'hang-after': { type: 'string', default: '40000' },
    json: { type: 'boolean', default: false },
  },
});
const count = Number(values.count);
if (!Number.isInteger(count) || count <= 0) {
  console.error('fuzz: --count must be a positive integer');
  process.exit(2);
}
if (values.log !== 'memory' && values.log !== 'file') {
  console.error('fuzz: --log must be memory or file');
  process.exit(2);
}
const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
const report = await runFuzz({
  count,
  ...(values.seed !== undefined ? { seed: Number(values.seed) } : {}),
  log: values.log,
  drain: values.drain,
  hangAfterMs: Number(values['hang-after']),
  progressEvery: Math.max(10_000, Math.floor(count / 50)),
  onProgress: (p) => {
    console.error(
      `${p.messages} messages, ${Math.round(p.elapsedMs / 1000)} s, crashes ${p.crashes}, hangs ${p.hangs}, heap ${mb(p.heapUsedBytes)}, live server transactions ${p.serverTransactions}`,
    );
    for (const f of p.newFindings) console.error(`  finding: ${f}`);
  },
});
if (values.json) console.log(JSON.stringify(report, null, 2));
else {
  console.log(`seed:                 ${report.seed}`);
  console.log(`messages:             ${report.messages} (${report.parsedInputs} parsed, ${report.messagesPerSecond}/s over ${Math.round(report.durationMs / 1000)} s)`);
  console.log(`crashes:              ${report.crashes}`);
  console.log(`hangs:                ${report.hangs}`);
  console.log(`responses:            ${report.responses} (malformed ${report.malformedResponses}; malformed stateless error answers ${report.malformedErrorAnswers})`);
  console.log(`relayed requests:     ${report.relayedRequests} (malformed ${report.malformedRelays})`);
  console.log(`registrations:        ${report.registrations}`);
  console.log(`heap growth:          ${mb(report.heapGrowthBytes)} (baseline ${mb(report.heapBaselineBytes)}, end ${mb(report.heapEndBytes)}, peak ${mb(report.heapPeakBytes)})`);
  console.log(`live transactions:    ${report.liveServerTransactions} server, ${report.liveClientTransactions} client`);
  console.log(`statuses:             ${Object.entries(report.statuses).sort().map(([k, v]) => `${k}:${v}`).join(' ')}`);
  for (const d of [...report.crashDetails, ...report.hangDetails, ...report.badDetails, ...report.errorAnswerDetails.slice(0, 5)]) console.log(`---\n${d}`);
}
process.exit(report.crashes + report.hangs + report.malformedResponses + report.malformedRelays > 0 ? 1 : 0);
