import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { MemoryLog } from '../../src/core/log/memory-log.js';
import { FileLog } from '../../src/backends/log/file-log.js';
import type { EventLog } from '../../src/core/log/event-log.js';
import { eventLogContract } from '../support/log-contract.js';

const logger = pino({ level: 'silent' });

eventLogContract(
  'MemoryLog',
  async () => {
    const log = new MemoryLog();
    return { log, cleanup: () => log.close() };
  },
  { totalOrder: true, settleMs: 100 },
);

for (const fsync of ['batch', 'always', 'none'] as const) {
  eventLogContract(
    `FileLog (fsync=${fsync}, small segments)`,
    async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'sipledger-filelog-'));
      // Small segments so that reads, tails and cursors cross segment boundaries.
      const open = (): Promise<FileLog> => FileLog.open({ dir, fsync, segmentBytes: 4096, logger });
      let current: EventLog = await open();
      return {
        get log() {
          return current;
        },
        reopen: async () => {
          await current.close();
          current = await open();
          return current;
        },
        cleanup: async () => {
          await current.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
    { totalOrder: true, settleMs: 100 },
  );
}
