/**
 * The events of the log a configuration names, for the read-only tools (location, audit, log).
 * A file log is read with the lock-free reader (it works while sipledger runs); a Kafka log is read
 * from the start of every partition up to the end it had when reading began.
 */
import type { Logger } from 'pino';
import type { SipledgerEvent } from '../core/log/events.js';
import type { SipledgerConfig } from '../config/config.js';
import { KafkaLog } from '../backends/log/kafka-log.js';
import { UsageError } from './args.js';
import { readRecords, type LogProblem } from './log-reader.js';

export interface SourcedEvent {
  readonly event: SipledgerEvent;
  /** Logical offset in a file log; undefined for Kafka. */
  readonly offset?: number;
}

export async function* configEvents(config: SipledgerConfig, logger: Logger, onProblem: (p: LogProblem) => void): AsyncGenerator<SourcedEvent> {
  const log = config.log;
  if (log.type === 'memory') throw new UsageError("log.type is 'memory': that log lives only inside the running process and keeps nothing to read");
  if (log.type === 'file') {
    for await (const r of readRecords(log.dir, { onProblem })) yield { event: r.event, offset: r.offset };
    return;
  }
  const kafka = await KafkaLog.open({
    brokers: log.brokers,
    topic: log.topic,
    clientId: `${log.clientId ?? 'sipledger'}-cli-${process.pid}`,
    logger,
  });
  try {
    for await (const r of kafka.read('start')) yield { event: r.event };
  } finally {
    await kafka.close();
  }
}

/** Where the configured log is, for messages. */
export function describeLog(config: SipledgerConfig): string {
  const log = config.log;
  return log.type === 'file' ? log.dir : log.type === 'kafka' ? `kafka topic ${log.topic}` : 'memory';
}
