/**
 * A read-only reader of a file event log's segments, for the command-line tools.
 *
 * FileLog (src/backends/log/file-log.ts) takes the log's LOCK and repairs a torn tail when it opens;
 * an operator's tool must do neither: it may run beside the sipledger process that owns the log, and
 * it must show damage rather than cut it. This reader therefore opens segment files read-only,
 * decodes the same framing (`[u32 LE length][u32 LE CRC-32C][event JSON]`), and reports problems as
 * values instead of throwing, resynchronising after a damaged region so the rest stays readable.
 *
 * Records are addressed by their logical offset (segment base + position in the segment), the same
 * number FileLog uses in its cursors (`{"0": offset}`).
 */
import { existsSync, promises as fs, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { crc32c } from '../core/log/crc32c.js';
import type { SipledgerEvent } from '../core/log/events.js';
import { decodeEvent } from '../core/log/schemas.js';

const HEADER = 8;
/** The same bound FileLog applies: anything larger is damage, not a record. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const SEGMENT_RE = /^(\d{20})\.seg$/;

export interface SegmentInfo {
  readonly base: number;
  readonly file: string;
  readonly size: number;
}

export interface RawRecord {
  /** Logical offset of the record's header. */
  readonly offset: number;
  /** Logical offset just after the record: FileLog's cursor `{"0": end}`. */
  readonly end: number;
  readonly segment: string;
  /** Payload bytes. */
  readonly length: number;
  readonly event: SipledgerEvent;
}

export type ProblemKind =
  /** Bytes that are not a valid record, followed by valid records: real damage. */
  | 'corrupt'
  /** An incomplete or invalid region at the very end of the log: a write cut short (or in progress). */
  | 'torn-tail'
  /** A record whose frame is intact but whose JSON is not an event. */
  | 'undecodable'
  /** Segments that do not follow on from each other. */
  | 'gap'
  /** Files that FileLog moved aside when opening (`*.orphan-*`). */
  | 'orphan';

export interface LogProblem {
  readonly kind: ProblemKind;
  readonly segment: string;
  /** Logical offset where the problem starts. */
  readonly offset: number;
  /** How many bytes it covers. */
  readonly bytes: number;
  readonly reason: string;
}

/** A log directory that is not a file log, or cannot be read. */
export class LogDirError extends Error {
  readonly code = 'LOG_DIR';
  readonly retriable = false;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LogDirError';
  }
}

/** The segments of the file log in `dir`, in offset order. Throws LogDirError when `dir` holds no file log. */
export function listSegments(dir: string): SegmentInfo[] {
  if (!existsSync(dir)) throw new LogDirError(`no event log at ${dir} (the directory does not exist)`);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new LogDirError(`cannot read ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
  const out: SegmentInfo[] = [];
  for (const name of names) {
    const m = SEGMENT_RE.exec(name);
    if (!m) continue;
    const file = path.join(dir, name);
    out.push({ base: Number(m[1]), file, size: statSync(file).size });
  }
  if (out.length === 0 && !existsSync(path.join(dir, 'LOG_ID'))) throw new LogDirError(`no event log at ${dir} (no LOG_ID, no segments)`);
  return out.sort((a, b) => a.base - b.base);
}

/** The identity FileLog gives this log (`file:<uuid>`), or undefined. */
export function logIdentity(dir: string): string | undefined {
  try {
    const id = readFileSync(path.join(dir, 'LOG_ID'), 'utf8').trim();
    return id ? `file:${id}` : undefined;
  } catch {
    return undefined;
  }
}

/** The pid holding the log's LOCK when that process is alive: sipledger is running on this log. */
export function lockHolder(dir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(dir, 'LOCK'), 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/** Total bytes of the log: its end offset as a reader sees it now. */
export function logEnd(dir: string): number {
  const segs = listSegments(dir);
  const last = segs[segs.length - 1];
  return last ? last.base + last.size : 0;
}

/** True when a valid frame starts at `p` in `buf`. */
function frameAt(buf: Buffer, p: number): number | undefined {
  if (p + HEADER > buf.length) return undefined;
  const len = buf.readUInt32LE(p);
  if (len > MAX_RECORD_BYTES || p + HEADER + len > buf.length) return undefined;
  if (crc32c(buf, p + HEADER, p + HEADER + len) !== buf.readUInt32LE(p + 4)) return undefined;
  return len;
}

export interface ReadOptions {
  /** Logical offset to start at (a record boundary); default 0. */
  readonly from?: number;
  /** Called for each damaged region met; reading goes on after it. */
  readonly onProblem?: (p: LogProblem) => void;
  /**
   * The end of the last segment is a write in progress when sipledger is running: an incomplete
   * final record is then reported as 'torn-tail' only if this is true (default true).
   */
  readonly reportTornTail?: boolean;
}

/**
 * Every record from `from` to the end of the log as it is now, in order. Damaged regions are passed
 * to onProblem and skipped: the reader looks for the next intact frame and carries on from there.
 */
export async function* readRecords(dir: string, opts: ReadOptions = {}): AsyncGenerator<RawRecord> {
  const segments = listSegments(dir);
  const from = opts.from ?? 0;
  const report = opts.onProblem ?? (() => undefined);
  for (const p of orphans(dir)) report(p);
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const prev = segments[i - 1];
    if (prev && seg.base !== prev.base + prev.size) {
      report({
        kind: 'gap',
        segment: path.basename(seg.file),
        offset: prev.base + prev.size,
        bytes: seg.base - (prev.base + prev.size),
        reason: `segment ${path.basename(seg.file)} does not follow on from ${path.basename(prev.file)}`,
      });
    }
    if (seg.base + seg.size <= from) continue;
    // Only the part from the start offset on is read: following a large segment stays cheap.
    const skip = Math.max(0, from - seg.base);
    let buf: Buffer;
    try {
      buf = await readFrom(seg.file, skip);
    } catch (err) {
      throw new LogDirError(`cannot read ${seg.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
    }
    const base = seg.base + skip;
    const last = i === segments.length - 1;
    const name = path.basename(seg.file);
    let p = 0;
    while (p < buf.length) {
      const len = frameAt(buf, p);
      if (len !== undefined) {
        const offset = base + p;
        let event: SipledgerEvent | undefined;
        try {
          event = decodeEvent(JSON.parse(buf.toString('utf8', p + HEADER, p + HEADER + len)));
        } catch (err) {
          report({ kind: 'undecodable', segment: name, offset, bytes: HEADER + len, reason: (err as Error).message });
        }
        p += HEADER + len;
        if (event) yield { offset, end: base + p, segment: name, length: len, event };
        continue;
      }
      // Damage: find the next offset where an intact frame starts.
      const start = p;
      let next = p + 1;
      while (next < buf.length && frameAt(buf, next) === undefined) next++;
      const bytes = next - start;
      if (next >= buf.length && last) {
        if (opts.reportTornTail ?? true) {
          report({
            kind: 'torn-tail',
            segment: name,
            offset: base + start,
            bytes,
            reason: 'the last record is incomplete or fails its CRC (a write cut short by a crash, or in progress); sipledger cuts it when it next opens the log',
          });
        }
      } else {
        report({ kind: 'corrupt', segment: name, offset: base + start, bytes, reason: describeDamage(buf, start) });
      }
      p = next;
    }
  }
}

async function readFrom(file: string, position: number): Promise<Buffer> {
  if (position === 0) return fs.readFile(file);
  const fh = await fs.open(file, 'r');
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(Math.max(0, size - position));
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

function describeDamage(buf: Buffer, p: number): string {
  if (p + HEADER > buf.length) return 'a record header runs past the end of its segment';
  const len = buf.readUInt32LE(p);
  if (len > MAX_RECORD_BYTES) return `record length ${len} out of range`;
  if (p + HEADER + len > buf.length) return 'record runs past the end of its segment';
  return 'CRC mismatch';
}

function orphans(dir: string): LogProblem[] {
  const out: LogProblem[] = [];
  for (const name of readdirSync(dir)) {
    if (!/\.seg\.orphan-\d+$/.test(name)) continue;
    out.push({
      kind: 'orphan',
      segment: name,
      offset: Number(name.slice(0, 20)) || 0,
      bytes: statSync(path.join(dir, name)).size,
      reason: 'a segment set aside when the log was opened (it did not follow on from the segment before it); not read',
    });
  }
  return out;
}

export interface VerifyReport {
  readonly dir: string;
  readonly identity: string | undefined;
  readonly segments: number;
  readonly bytes: number;
  readonly records: number;
  readonly byType: Record<string, number>;
  readonly firstTime?: number;
  readonly lastTime?: number;
  readonly problems: LogProblem[];
}

/** Reads the whole log, checking every frame's CRC and that every payload decodes to an event. */
export async function verifyLog(dir: string): Promise<VerifyReport> {
  const segments = listSegments(dir);
  const problems: LogProblem[] = [];
  const byType: Record<string, number> = {};
  let records = 0;
  let firstTime: number | undefined;
  let lastTime: number | undefined;
  for await (const r of readRecords(dir, { onProblem: (p) => problems.push(p) })) {
    records++;
    byType[r.event.type] = (byType[r.event.type] ?? 0) + 1;
    firstTime ??= r.event.time;
    lastTime = r.event.time;
  }
  return {
    dir,
    identity: logIdentity(dir),
    segments: segments.length,
    bytes: segments.reduce((n, s) => n + s.size, 0),
    records,
    byType,
    ...(firstTime !== undefined ? { firstTime } : {}),
    ...(lastTime !== undefined ? { lastTime } : {}),
    problems,
  };
}

export interface FollowOptions {
  /** Logical offset to start at; default the end of the log now. */
  readonly from?: number;
  /** How often to look for new bytes; default 200 ms. */
  readonly intervalMs?: number;
  readonly signal: AbortSignal;
  readonly onProblem?: (p: LogProblem) => void;
}

/**
 * Follows the log: yields each record appended from `from` on, as soon as it is complete on disk,
 * until the signal aborts. An incomplete record at the end is waited for, not reported.
 */
export async function* followRecords(dir: string, opts: FollowOptions): AsyncGenerator<RawRecord> {
  let at = opts.from ?? logEnd(dir);
  const interval = opts.intervalMs ?? 200;
  while (!opts.signal.aborted) {
    if (logEnd(dir) > at) {
      for await (const r of readRecords(dir, {
        from: at,
        reportTornTail: false,
        ...(opts.onProblem ? { onProblem: (p: LogProblem) => p.kind !== 'orphan' && p.kind !== 'gap' && opts.onProblem!(p) } : {}),
      })) {
        at = r.end;
        yield r;
        if (opts.signal.aborted) return;
      }
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, interval);
      opts.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(t);
          resolve();
        },
        { once: true },
      );
    });
  }
}
