/**
 * Child process of the crash test: appends registrations through Ledger + FileLog as fast as it can,
 * from many concurrent writers, and prints `ok <aor> <uri>` for each append that resolved. The test
 * kills it with SIGKILL at a random moment.
 *
 *   node --import tsx test/support/log-crash-writer.ts <logDir> <snapshotDir> <runId>
 */
import pino from 'pino';
import { FileLog } from '../../src/backends/log/file-log.js';
import { contactBound } from '../../src/core/log/events.js';
import { Ledger } from '../../src/core/log/ledger.js';

const [logDir, snapshotDir, runId] = process.argv.slice(2);
if (!logDir || !snapshotDir || !runId) {
  console.error('usage: log-crash-writer <logDir> <snapshotDir> <runId>');
  process.exit(2);
}

/** Registrations stay live for a year of event time, so every one must still be there when checked. */
export const CRASH_T0 = Date.UTC(2024, 0, 1);
const YEAR = 365 * 24 * 3_600_000;

const logger = pino({ level: 'warn' }, pino.destination(2));
const ledger = await Ledger.open({
  log: await FileLog.open({ dir: logDir, fsync: 'batch', segmentBytes: 256 * 1024, logger }),
  snapshotDir,
  snapshotEvery: 700,
  logger,
});
process.stdout.write(`ready ${ledger.location.count(CRASH_T0)}\n`);

let seq = 0;
async function writer(w: number): Promise<void> {
  for (;;) {
    const n = seq++;
    const user = `r${runId}w${w}n${n}`;
    const uri = `sip:${user}@10.${w}.${(n >> 8) & 255}.${n & 255}:5060`;
    const time = CRASH_T0 + n;
    const batch = [
      contactBound(
        {
          aor: `sip:${user}@crash.example.com`,
          contact: `<${uri}>;expires=3600`,
          uri,
          expiresAt: time + YEAR,
          q: 1,
          callId: `${user}@crash`,
          cseq: 1,
          source: { address: '127.0.0.1', port: 5060, transport: 'udp' },
        },
        { time },
      ),
    ];
    await ledger.append(batch);
    // Only after append resolved: the binding is durable and in the projection.
    process.stdout.write(`ok ${batch[0]!.aor} ${uri}\n`);
  }
}

await Promise.all(Array.from({ length: 32 }, (_, w) => writer(w)));
