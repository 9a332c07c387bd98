/**
 * FileLog: sipledger's embedded event log, in segment files on local disk.
 *
 * Layout of `dir`:
 *   LOG_ID                 a UUID naming this log (snapshots taken from another log are not trusted)
 *   LOCK                   the pid of the process that has the log open (one writer at a time)
 *   <20-digit offset>.seg  segments, named by the logical byte offset of their first record
 *
 * Each record is framed as `[u32 LE payload length][u32 LE CRC-32C of payload][payload: event JSON]`.
 * A cursor (LogPosition `{"0": n}`) is the logical byte offset of the next record.
 *
 * Durability policy (`fsync`), the promise made when append resolves:
 * - `batch` (default): group commit. Appends that arrive while the previous group is being written
 *   form the next group: one write() and one fdatasync() for all of them. Each append resolves after
 *   the fdatasync of its group, so an acknowledged event survives a process crash and a power loss.
 * - `always`: every append is written and fsync()ed on its own (no coalescing): the same promise, with
 *   file metadata synced too, at a much lower throughput. For disks where batching is not wanted.
 * - `none`: appends resolve once written to the operating system (page cache). Survives a crash of
 *   sipledger (kill -9), not a crash of the machine or a power loss.
 *
 * On open, the last segment is scanned: a torn or corrupt tail (a record cut short by a crash or
 * failing its CRC) is cut off, with a warning naming how many bytes. Opening never fails because of
 * a damaged tail, so a crash never turns into a crash loop.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { crc32c } from '../../core/log/crc32c.js';
import {
  LogError,
  type AppendResult,
  type EventLog,
  type LogPosition,
  type LogRecord,
  type ReadOptions,
  type Subscription,
  type TailHandler,
  type TailOptions,
} from '../../core/log/event-log.js';
import type { SipledgerEvent } from '../../core/log/events.js';
import { decodeEvent, defaultUpcasters, type UpcasterRegistry } from '../../core/log/schemas.js';

export type FsyncPolicy = 'always' | 'batch' | 'none';

export interface FileLogConfig {
  readonly dir: string;
  /** Default 'batch'. */
  readonly fsync?: FsyncPolicy;
  /** A new segment starts once the current one reaches this size. Default 64 MiB. */
  readonly segmentBytes?: number;
}

export interface FileLogOptions extends FileLogConfig {
  readonly logger: Logger;
  readonly upcasters?: UpcasterRegistry;
}

const HEADER = 8;
/** Records larger than this are refused on append and treated as corruption on read. */
export const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const READ_CHUNK = 4 * 1024 * 1024;
const SEGMENT_RE = /^(\d{20})\.seg$/;

const openDirs = new Set<string>();

interface Segment {
  readonly base: number;
  readonly file: string;
  size: number;
}

interface PendingAppend {
  readonly events: readonly SipledgerEvent[];
  readonly frames: Buffer[];
  readonly bytes: number;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: unknown) => void;
}

type LiveListener = (records: readonly LogRecord[]) => void;

function segmentName(base: number): string {
  return `${String(base).padStart(20, '0')}.seg`;
}

function ioError(message: string, cause: unknown): LogError {
  return new LogError('LOG_IO', message, true, { cause });
}

/** Scans `buf` from `start`: the offset just after the last whole, intact record. */
function validPrefix(buf: Buffer, start = 0): number {
  let at = start;
  while (at + HEADER <= buf.length) {
    const len = buf.readUInt32LE(at);
    if (len > MAX_RECORD_BYTES || at + HEADER + len > buf.length) break;
    if (crc32c(buf, at + HEADER, at + HEADER + len) !== buf.readUInt32LE(at + 4)) break;
    at += HEADER + len;
  }
  return at;
}

/**
 * After damage at `from`, the first offset from which non-empty, CRC-valid records run exactly to
 * the end of the buffer, or undefined when there is none (a torn tail). A torn write leaves
 * garbage or zeros at the very end, never an intact record after it.
 */
function resyncPoint(buf: Buffer, from: number): number | undefined {
  for (let at = from + 1; at + HEADER < buf.length; at++) {
    const len = buf.readUInt32LE(at);
    if (len === 0 || len > MAX_RECORD_BYTES || at + HEADER + len > buf.length) continue;
    if (crc32c(buf, at + HEADER, at + HEADER + len) !== buf.readUInt32LE(at + 4)) continue;
    let p = at;
    while (p + HEADER <= buf.length) {
      const l = buf.readUInt32LE(p);
      if (l === 0 || l > MAX_RECORD_BYTES || p + HEADER + l > buf.length) break;
      if (crc32c(buf, p + HEADER, p + HEADER + l) !== buf.readUInt32LE(p + 4)) break;
      p += HEADER + l;
    }
    if (p === buf.length) return at;
  }
  return undefined;
}

export class FileLog implements EventLog {
  readonly identity: string;
  readonly #dir: string;
  readonly #policy: FsyncPolicy;
  readonly #segmentBytes: number;
  readonly #logger: Logger;
  readonly #upcasters: UpcasterRegistry;
  readonly #segments: Segment[];
  #fh: fs.FileHandle;
  /** Logical offset up to which records are written and durable under the policy: what readers see. */
  #durableEnd: number;
  #pending: PendingAppend[] = [];
  #flushing: Promise<void> | null = null;
  #failed: LogError | null = null;
  #closed = false;
  readonly #live = new Set<LiveListener>();
  /** Counters since open: how well group commit is coalescing. */
  readonly stats = { appends: 0, groups: 0, events: 0, bytes: 0 };

  private constructor(
    dir: string,
    identity: string,
    opts: FileLogOptions,
    segments: Segment[],
    fh: fs.FileHandle,
  ) {
    this.#dir = dir;
    this.identity = identity;
    this.#policy = opts.fsync ?? 'batch';
    this.#segmentBytes = Math.max(HEADER + 1, opts.segmentBytes ?? 64 * 1024 * 1024);
    this.#logger = opts.logger;
    this.#upcasters = opts.upcasters ?? defaultUpcasters;
    this.#segments = segments;
    this.#fh = fh;
    const last = segments[segments.length - 1]!;
    this.#durableEnd = last.base + last.size;
  }

  /** Opens (creating when absent) the log in `opts.dir`, repairing a torn tail. */
  static async open(opts: FileLogOptions): Promise<FileLog> {
    const policy = opts.fsync ?? 'batch';
    if (!['always', 'batch', 'none'].includes(policy)) {
      throw new LogError('LOG_IO', `fsync must be always, batch or none, not ${String(policy)}`, false);
    }
    const dir = path.resolve(opts.dir);
    try {
      await fs.mkdir(dir, { recursive: true });
    } catch (err) {
      throw ioError(`cannot create log directory ${dir}`, err);
    }
    await FileLog.#lock(dir);
    try {
      const segments = await FileLog.#segmentsOf(dir);
      if (segments.length === 0) {
        const file = path.join(dir, segmentName(0));
        await (await fs.open(file, 'a')).close();
        await FileLog.#syncDir(dir);
        segments.push({ base: 0, file, size: 0 });
      }
      const cut = await FileLog.#repairTail(segments, opts.logger);
      // A cut tail may have held events that a snapshot already contains (fsync=none and a power
      // loss): a new identity makes every earlier snapshot untrusted, so the next start replays all.
      const identity = await FileLog.#identity(dir, cut > 0);
      const last = segments[segments.length - 1]!;
      const fh = await fs.open(last.file, 'r+');
      return new FileLog(dir, identity, opts, segments, fh);
    } catch (err) {
      await FileLog.#unlock(dir);
      if (err instanceof LogError) throw err;
      throw ioError(`cannot open log in ${dir}`, err);
    }
  }

  static async #lock(dir: string): Promise<void> {
    const lockFile = path.join(dir, 'LOCK');
    if (openDirs.has(dir)) throw new LogError('LOG_LOCKED', `log ${dir} is already open in this process`, false);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await fs.writeFile(lockFile, String(process.pid), { flag: 'wx' });
        openDirs.add(dir);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(`cannot lock ${dir}`, err);
      }
      const holder = Number((await fs.readFile(lockFile, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) {
        throw new LogError('LOG_LOCKED', `log ${dir} is held by process ${holder}`, false);
      }
      // The holder died without closing (a crash): the lock is stale.
      await fs.rm(lockFile, { force: true });
    }
    throw new LogError('LOG_LOCKED', `cannot take the lock of ${dir}`, true);
  }

  static async #unlock(dir: string): Promise<void> {
    openDirs.delete(dir);
    await fs.rm(path.join(dir, 'LOCK'), { force: true }).catch(() => undefined);
  }

  static async #identity(dir: string, renew: boolean): Promise<string> {
    const file = path.join(dir, 'LOG_ID');
    if (!renew) {
      try {
        const id = (await fs.readFile(file, 'utf8')).trim();
        if (id) return `file:${id}`;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    const id = randomUUID();
    const tmp = `${file}.tmp`;
    await fs.writeFile(tmp, id + '\n');
    await fs.rename(tmp, file);
    await FileLog.#syncDir(dir);
    return `file:${id}`;
  }

  static async #segmentsOf(dir: string): Promise<Segment[]> {
    const out: Segment[] = [];
    for (const name of await fs.readdir(dir)) {
      const m = SEGMENT_RE.exec(name);
      if (!m) continue;
      const file = path.join(dir, name);
      out.push({ base: Number(m[1]), file, size: (await fs.stat(file)).size });
    }
    out.sort((a, b) => a.base - b.base);
    // Segments must tile the offset space; one that does not follow on (left by a crash while
    // rolling over, or by a cut tail) and everything after it are moved aside, not trusted.
    for (let i = 1; i < out.length; i++) {
      const prev = out[i - 1]!;
      if (out[i]!.base !== prev.base + prev.size) {
        for (const s of out.splice(i)) await fs.rename(s.file, `${s.file}.orphan-${Date.now()}`);
        break;
      }
    }
    return out;
  }

  /**
   * Repairs the last segment. A torn tail (the end of a write cut short by a crash) is cut off. But
   * damage followed by intact records up to the end of the segment is not a torn write: cutting
   * there would drop acknowledged records, so only the damaged bytes are taken out (kept aside in a
   * `.damaged-<time>` file for inspection) and the records after them stay. Returns how many bytes
   * left the segment; either way the log's identity is renewed, so older snapshots are not trusted.
   */
  static async #repairTail(segments: Segment[], logger: Logger): Promise<number> {
    const last = segments[segments.length - 1]!;
    if (last.size === 0) return 0;
    const buf = await fs.readFile(last.file);
    const valid = validPrefix(buf);
    if (valid === buf.length) return 0;
    const resume = resyncPoint(buf, valid);
    if (resume !== undefined) {
      const damaged = buf.subarray(valid, resume);
      const aside = `${last.file}.damaged-${Date.now()}`;
      await fs.writeFile(aside, damaged);
      const kept = Buffer.concat([buf.subarray(0, valid), buf.subarray(resume)]);
      const tmp = `${last.file}.repair`;
      const th = await fs.open(tmp, 'w');
      try {
        await th.writeFile(kept);
        await th.sync();
      } finally {
        await th.close();
      }
      await fs.rename(tmp, last.file);
      await FileLog.#syncDir(path.dirname(last.file));
      last.size = kept.length;
      logger.error(
        { segment: path.basename(last.file), damagedAt: valid, bytesRemoved: damaged.length, recordsKeptAfter: buf.length - resume, savedTo: path.basename(aside) },
        `log segment damaged in the middle: removed ${damaged.length} damaged bytes, kept the intact records after them`,
      );
      return damaged.length;
    }
    const cut = buf.length - valid;
    const fh = await fs.open(last.file, 'r+');
    try {
      await fh.truncate(valid);
      await fh.sync();
    } finally {
      await fh.close();
    }
    last.size = valid;
    logger.warn(
      { segment: path.basename(last.file), bytesCut: cut, keptBytes: valid },
      `log tail was torn or corrupt: cut ${cut} bytes`,
    );
    return cut;
  }

  static async #syncDir(dir: string): Promise<void> {
    const dh = await fs.open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  // ---------------------------------------------------------------------------------------- append

  append(events: readonly SipledgerEvent[]): Promise<AppendResult> {
    if (this.#closed) return Promise.reject(new LogError('LOG_CLOSED', 'log is closed', false));
    if (this.#failed) return Promise.reject(this.#failed);
    const frames: Buffer[] = [];
    let bytes = 0;
    for (const e of events) {
      const json = JSON.stringify(e);
      const frame = Buffer.allocUnsafe(HEADER + Buffer.byteLength(json));
      const len = frame.write(json, HEADER, 'utf8');
      if (len > MAX_RECORD_BYTES) {
        return Promise.reject(new LogError('LOG_RECORD_TOO_LARGE', `event ${e.type} is ${len} bytes`, false));
      }
      frame.writeUInt32LE(len, 0);
      frame.writeUInt32LE(crc32c(frame, HEADER, HEADER + len), 4);
      frames.push(frame);
      bytes += frame.length;
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.#pending.push({ events, frames, bytes, resolve, reject });
      this.#flushing ??= this.#flushLoop();
    });
  }

  async #flushLoop(): Promise<void> {
    try {
      while (this.#pending.length > 0) {
        // Group commit: everything queued while the previous group was written goes in one write
        // and one fdatasync. Under 'always' each append is its own group.
        const group = this.#policy === 'always' ? this.#pending.splice(0, 1) : this.#pending.splice(0);
        await this.#commit(group);
      }
    } finally {
      this.#flushing = null;
    }
  }

  async #commit(group: PendingAppend[]): Promise<void> {
    if (this.#failed) {
      for (const a of group) a.reject(this.#failed);
      return;
    }
    const frames: Buffer[] = [];
    let bytes = 0;
    for (const a of group) {
      for (const f of a.frames) frames.push(f);
      bytes += a.bytes;
    }
    const startEnd = this.#durableEnd;
    let segment = this.#segments[this.#segments.length - 1]!;
    try {
      if (segment.size > 0 && segment.size + bytes > this.#segmentBytes) segment = await this.#roll();
      const buf = frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes);
      let written = 0;
      while (written < buf.length) {
        const { bytesWritten } = await this.#fh.write(buf, written, buf.length - written, segment.size + written);
        written += bytesWritten;
      }
      if (this.#policy === 'batch') await this.#fh.datasync();
      else if (this.#policy === 'always') await this.#fh.sync();
    } catch (err) {
      const error = ioError(`append to ${segment.file} failed`, err);
      // Cut whatever part of the group reached the file, so the log never holds records that were
      // reported as failed. If even that fails, refuse further appends until reopened (open repairs).
      try {
        await this.#fh.truncate(segment.size);
      } catch (cutErr) {
        this.#failed = new LogError('LOG_IO', `log ${this.#dir} is in an unknown state; reopen it`, false, { cause: cutErr });
        this.#logger.error({ err: cutErr, dir: this.#dir }, 'could not undo a failed append');
      }
      for (const a of group) a.reject(error);
      return;
    }
    segment.size += bytes;
    this.#durableEnd = startEnd + bytes;
    this.stats.groups++;
    this.stats.appends += group.length;
    this.stats.bytes += bytes;
    this.stats.events += frames.length;
    // Tails see the group before any append of it resolves: the ledger's read-your-writes relies on it.
    let offset = startEnd;
    const results: Array<{ a: PendingAppend; position: LogPosition }> = [];
    const records: LogRecord[] = [];
    for (const a of group) {
      for (let i = 0; i < a.events.length; i++) {
        offset += a.frames[i]!.length;
        records.push({ position: { '0': offset }, event: a.events[i]! });
      }
      results.push({ a, position: { '0': offset } });
    }
    for (const listener of this.#live) {
      try {
        listener(records);
      } catch (err) {
        this.#logger.error({ err }, 'log tail handler failed');
      }
    }
    for (const { a, position } of results) a.resolve({ position });
  }

  async #roll(): Promise<Segment> {
    const last = this.#segments[this.#segments.length - 1]!;
    const base = last.base + last.size;
    const file = path.join(this.#dir, segmentName(base));
    const fh = await fs.open(file, 'wx+');
    await FileLog.#syncDir(this.#dir);
    const old = this.#fh;
    this.#fh = fh;
    await old.close();
    const segment: Segment = { base, file, size: 0 };
    this.#segments.push(segment);
    this.#logger.info({ segment: path.basename(file) }, 'log segment started');
    return segment;
  }

  // ------------------------------------------------------------------------------------------ read

  /** Batches of records from `from` up to `end` (logical offsets). */
  async *#chunks(from: number, end: number, signal?: AbortSignal): AsyncGenerator<LogRecord[]> {
    let at = from;
    while (at < end) {
      if (signal?.aborted) return;
      const segIndex = this.#segmentIndexOf(at);
      const seg = this.#segments[segIndex];
      if (!seg) throw new LogError('LOG_CORRUPT', `no segment holds offset ${at} in ${this.#dir}`, false);
      const segEnd = Math.min(end, seg.base + seg.size);
      const fh = await fs.open(seg.file, 'r').catch((err: unknown) => {
        throw ioError(`cannot read ${seg.file}`, err);
      });
      try {
        let carry: Buffer = Buffer.alloc(0);
        let fileAt = at - seg.base;
        while (seg.base + fileAt < segEnd) {
          const want = Math.min(READ_CHUNK, segEnd - seg.base - fileAt);
          const chunk = Buffer.allocUnsafe(want);
          const { bytesRead } = await fh.read(chunk, 0, want, fileAt);
          if (bytesRead === 0) break;
          fileAt += bytesRead;
          const buf: Buffer = carry.length ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
          const batch: LogRecord[] = [];
          let p = 0;
          while (p + HEADER <= buf.length) {
            const len = buf.readUInt32LE(p);
            if (len > MAX_RECORD_BYTES) throw this.#corrupt(at, 'record length out of range');
            if (p + HEADER + len > buf.length) break;
            if (crc32c(buf, p + HEADER, p + HEADER + len) !== buf.readUInt32LE(p + 4)) throw this.#corrupt(at, 'CRC mismatch');
            let event: SipledgerEvent;
            try {
              event = decodeEvent(JSON.parse(buf.toString('utf8', p + HEADER, p + HEADER + len)), this.#upcasters);
            } catch (err) {
              throw new LogError('LOG_CORRUPT', `undecodable record at offset ${at} in ${this.#dir}`, false, { cause: err });
            }
            p += HEADER + len;
            at += HEADER + len;
            batch.push({ position: { '0': at }, event });
          }
          carry = buf.subarray(p);
          if (batch.length > 0) yield batch;
        }
        if (carry.length > 0) throw this.#corrupt(at, 'record runs past the end of its segment');
      } finally {
        await fh.close();
      }
      if (at < segEnd) throw this.#corrupt(at, 'segment shorter than recorded');
    }
  }

  #corrupt(offset: number, why: string): LogError {
    return new LogError('LOG_CORRUPT', `${why} at offset ${offset} in ${this.#dir}`, false);
  }

  #segmentIndexOf(offset: number): number {
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#segments[mid]!.base <= offset) lo = mid;
      else hi = mid - 1;
    }
    const seg = this.#segments[lo]!;
    // An offset at the very end of a full segment belongs to the next one.
    if (offset >= seg.base + seg.size && lo + 1 < this.#segments.length) return lo + 1;
    return lo;
  }

  #cursorOf(from: LogPosition | 'start'): number {
    const at = from === 'start' ? 0 : (from['0'] ?? 0);
    if (!Number.isSafeInteger(at) || at < 0) throw new LogError('LOG_CORRUPT', `not a position of this log: ${JSON.stringify(from)}`, false);
    if (at > this.#durableEnd) {
      throw new LogError('LOG_CORRUPT', `position ${at} is past the end of ${this.#dir} (${this.#durableEnd})`, false);
    }
    return at;
  }

  async *read(from: LogPosition | 'start', opts: ReadOptions = {}): AsyncIterable<LogRecord> {
    if (this.#closed) throw new LogError('LOG_CLOSED', 'log is closed', false);
    const start = this.#cursorOf(from);
    let n = 0;
    for await (const batch of this.#chunks(start, this.#durableEnd, opts.signal)) {
      for (const r of batch) {
        if (opts.limit !== undefined && n >= opts.limit) return;
        n++;
        yield r;
      }
    }
  }

  tail(from: LogPosition | 'start', handler: TailHandler, opts: TailOptions = {}): Subscription {
    if (this.#closed) throw new LogError('LOG_CLOSED', 'log is closed', false);
    const start = this.#cursorOf(from);
    // Register for live records and fix the catch-up end in the same tick, so that every record is
    // delivered exactly once: those before `end` by the catch-up read, the rest by the listener.
    const end = this.#durableEnd;
    const queue: LogRecord[] = [];
    let open = true;
    let catchingUp = true;
    let busy: Promise<void> | null = null;
    const pump = (): void => {
      if (busy || catchingUp) return;
      while (open && queue.length > 0) {
        const r = handler(queue.shift()!);
        if (r instanceof Promise) {
          busy = r.then(
            () => {
              busy = null;
              pump();
            },
            (err: unknown) => {
              busy = null;
              open = false;
              this.#logger.error({ err }, 'log tail handler failed; subscription stopped');
            },
          );
          return;
        }
      }
    };
    const listener: LiveListener = (records) => {
      if (!open) return;
      for (const r of records) queue.push(r);
      pump();
    };
    this.#live.add(listener);
    const catchUp = (async () => {
      try {
        for await (const batch of this.#chunks(start, end)) {
          for (const r of batch) {
            if (!open) return;
            const p = handler(r);
            if (p instanceof Promise) await p;
          }
        }
      } catch (err) {
        open = false;
        this.#live.delete(listener);
        this.#logger.error({ err }, 'log tail could not read the log; subscription stopped');
        opts.onError?.(err instanceof LogError ? err : ioError('log tail failed', err));
        return;
      }
      catchingUp = false;
      pump();
    })();
    return {
      close: async () => {
        open = false;
        this.#live.delete(listener);
        await catchUp;
        await busy;
      },
    };
  }

  async end(): Promise<LogPosition> {
    return { '0': this.#durableEnd };
  }

  /** Waits for queued appends, then releases the files and the lock. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#flushing) await this.#flushing;
    this.#live.clear();
    await this.#fh.close().catch(() => undefined);
    await FileLog.#unlock(this.#dir);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when `dir` holds a file log (used by tools that must not create one by accident). */
export function isFileLogDir(dir: string): boolean {
  return existsSync(path.join(dir, 'LOG_ID'));
}
