/**
 * `npm run fuzz -- --count N [--seed S] [--log memory|file] [--no-drain] [--max-live N]
 * [--heap-snapshot-at N[,N...]]`:
 * feeds N mutated SIP messages through sipledger's whole request path in process and prints messages,
 * crashes, hangs and heap growth. Exits 1 when any invariant failed.
 *
 * The heap growth compares two moments with no transaction alive (after warm-up and at the end, each
 * once the transactions lingering for timer J have ended: about 32 s each); `--no-drain` skips both
 * waits and reports the live transaction counts beside the figures instead. `--heap-snapshot-at`
 * writes a V8 heap snapshot to the working directory at the first progress report at or past each
 * given message count (read it with scripts/bench-heap-summary.ts). `--max-live` is the
 * number of server (and of client) transactions alive at which feeding pauses (default 100000).
 */
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { runFuzz } from '../test/stress/fuzz-engine.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100000' },
    seed: { type: 'string' },
    log: { type: 'string', default: 'file' },
    drain: { type: 'boolean', default: true },
    'no-drain': { type: 'boolean', default: false },
    'max-live': { type: 'string' },
    'hang-after': { type: 'string', default: '40000' },
    json: { type: 'boolean', default: false },
    'heap-snapshot-at': { type: 'string' },
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
const snapshotsAt = (values['heap-snapshot-at'] ?? '').split(',').filter((s) => s !== '').map(Number);
if (snapshotsAt.some((n) => !Number.isInteger(n) || n <= 0)) {
  console.error('fuzz: --heap-snapshot-at must be message counts, comma-separated');
  process.exit(2);
}
const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
const report = await runFuzz({
  count,
  ...(values.seed !== undefined ? { seed: Number(values.seed) } : {}),
  log: values.log,
  drain: values.drain && !values['no-drain'],
  ...(values['max-live'] !== undefined ? { maxLiveTransactions: Number(values['max-live']) } : {}),
  hangAfterMs: Number(values['hang-after']),
  progressEvery: Math.max(10_000, Math.floor(count / 50)),
  onProgress: (p) => {
    console.error(
      `${p.messages} messages, ${Math.round(p.elapsedMs / 1000)} s, crashes ${p.crashes}, hangs ${p.hangs}, heap ${mb(p.heapUsedBytes)}, live transactions ${p.serverTransactions} server, ${p.clientTransactions} client`,
    );
    for (const f of p.newFindings) console.error(`  finding: ${f}`);
    if (snapshotsAt.length > 0 && p.messages >= snapshotsAt[0]!) {
      while (snapshotsAt.length > 0 && p.messages >= snapshotsAt[0]!) snapshotsAt.shift();
      console.error(`  heap snapshot: ${v8.writeHeapSnapshot()}`);
    }
  },
});
if (values.json) console.log(JSON.stringify(report, null, 2));
else {
  console.log(`seed:                 ${report.seed}`);
  console.log(`messages:             ${report.messages} (${report.parsedInputs} parsed, ${report.messagesPerSecond}/s over ${Math.round(report.durationMs / 1000)} s)`);
  console.log(`cpu:                  ${Math.round(report.cpuMs / 1000)} s while feeding, ${report.messagesPerCpuSecond} messages per CPU second`);
  console.log(`crashes:              ${report.crashes}`);
  console.log(`hangs:                ${report.hangs}`);
  console.log(`responses:            ${report.responses} (malformed ${report.malformedResponses}; malformed stateless error answers ${report.malformedErrorAnswers})`);
  console.log(`relayed requests:     ${report.relayedRequests} (malformed ${report.malformedRelays})`);
  console.log(`registrations:        ${report.registrations}`);
  console.log(
    `heap growth:          ${mb(report.heapGrowthBytes)} (baseline ${mb(report.heapBaselineBytes)} with ${report.liveTransactionsAtBaseline} transactions alive, end ${mb(report.heapEndBytes)} with ${report.liveServerTransactions + report.liveClientTransactions}, peak ${mb(report.heapPeakBytes)})`,
  );
  console.log(`heap at last message: ${mb(report.heapFeedEndBytes)} with ${report.liveTransactionsAtFeedEnd} transactions alive`);
  console.log(`live transactions:    ${report.liveServerTransactions} server, ${report.liveClientTransactions} client (at the end)`);
  console.log(`statuses:             ${Object.entries(report.statuses).sort().map(([k, v]) => `${k}:${v}`).join(' ')}`);
  console.log(`5xx sent, by reason:  ${Object.entries(report.serverErrors).sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, v]) => `${k}: ${v}`).join('; ')}`);
  for (const d of [...report.crashDetails, ...report.hangDetails, ...report.badDetails, ...report.errorAnswerDetails.slice(0, 5)]) console.log(`---\n${d}`);
}
process.exit(report.crashes + report.hangs + report.malformedResponses + report.malformedRelays > 0 ? 1 : 0);
