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
 * - `batch` (default): group commit. Appends made in the same turn of the event loop, and those that
 *   arrive while the previous group is being written, form the next group: one write for all of
 *   them, made durable as fdatasync() would. Each append resolves after its group is durable, so
 *   an acknowledged event survives a process crash and a power loss. A deferrable append (one that
 *   answers nobody: a call step, an authentication record) waits up to `lingerMs` (10 ms) for other
 *   appends before its group starts, so that records arriving one by one share a write; any other
 *   append starts the group at once and takes the waiting ones along, in order.
 * - `always`: every append is written and synced on its own, as fsync() would (no coalescing): the
 *   same promise, with file metadata synced too, at a much lower throughput. For disks where batching
 *   is not wanted.
 * - `none`: appends resolve once written to the operating system (page cache). Survives a crash of
 *   sipledger (kill -9), not a crash of the machine or a power loss.
 *
 * The segment being written is opened with O_DSYNC (`batch`) or O_SYNC (`always`): the kernel makes
 * each write durable before the write returns, exactly as a write followed by fdatasync() (fsync())
 * would, in one system call and one trip through libuv's thread pool instead of two. Where the
 * platform has no such flag, the write is followed by fdatasync() or fsync().
 *
 * On open, the last segment is scanned: a torn or corrupt tail (a record cut short by a crash or
 * failing its CRC) is cut off, with a warning naming how many bytes. Opening never fails because of
 * a damaged tail, so a crash never turns into a crash loop.
 */
import { randomUUID } from 'node:crypto';
import {
  close as closeFd,
  constants as fsConstants,
  existsSync,
  fdatasync,
  fsync,
  ftruncate,
  open as openFd,
  promises as fs,
  writev,
} from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { crc32c } from '../../core/log/crc32c.js';
import {
  LogError,
  type AppendOptions,
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
  /**
   * How long a deferrable append (AppendOptions.deferrable) may wait for company before its group is
   * written, in ms. Default 10; 0 writes it in the next group like any other append.
   */
  readonly lingerMs?: number;
}

export interface FileLogOptions extends FileLogConfig {
  readonly logger: Logger;
  readonly upcasters?: UpcasterRegistry;
}

const HEADER = 8;
/** Records larger than this are refused on append and treated as corruption on read. */
export const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const READ_CHUNK = 4 * 1024 * 1024;
const MAX_WRITEV_BUFFERS = 64;
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
  readonly deferrable: boolean;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: unknown) => void;
}

type SyncCall = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => void;

/**
 * How a policy makes a write durable: an open(2) flag under which each write returns only once
 * durable, or, where the platform lacks the flag, a sync call after the write.
 */
function durabilityOf(policy: FsyncPolicy): { flag: number; after: SyncCall | undefined } {
  if (policy === 'none') return { flag: 0, after: undefined };
  const flag = policy === 'batch' ? fsConstants.O_DSYNC : fsConstants.O_SYNC;
  if (typeof flag === 'number' && flag !== 0) return { flag, after: undefined };
  return { flag: 0, after: policy === 'batch' ? fdatasync : fsync };
}

/** Opens a raw descriptor (the append path uses the callback API: fewer allocations and promise hops). */
function openRaw(file: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) => openFd(file, flags, 0o666, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function closeRaw(fd: number): Promise<void> {
  return new Promise((resolve, reject) => closeFd(fd, (err) => (err ? reject(err) : resolve())));
}

/** `bufs` without its first `n` bytes (after a short write). */
function dropBytes(bufs: readonly Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) n -= b.length;
    else {
      out.push(n > 0 ? b.subarray(n) : b);
      n = 0;
    }
  }
  return out;
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
  /** The last segment, opened with the policy's flag (see durabilityOf). */
  #fd: number;
  readonly #openFlags: number;
  readonly #syncAfterWrite: SyncCall | undefined;
  /** Logical offset up to which records are written and durable under the policy: what readers see. */
  #durableEnd: number;
  #pending: PendingAppend[] = [];
  /**
   * A group is being written or about to be (its start is scheduled); appends queue in #pending
   * meanwhile and join it or form the next group.
   */
  #writing = false;
  readonly #lingerMs: number;
  /** Armed while every append in #pending is deferrable and no group is being written. */
  #lingerTimer: NodeJS.Timeout | undefined;
  /** Set by close() while a group is being written: called once the queue is empty. */
  #onIdle: (() => void) | undefined;
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
    fd: number,
  ) {
    this.#dir = dir;
    this.identity = identity;
    this.#policy = opts.fsync ?? 'batch';
    this.#segmentBytes = Math.max(HEADER + 1, opts.segmentBytes ?? 64 * 1024 * 1024);
    this.#lingerMs = Math.max(0, opts.lingerMs ?? 10);
    this.#logger = opts.logger;
    this.#upcasters = opts.upcasters ?? defaultUpcasters;
    this.#segments = segments;
    this.#fd = fd;
    const durability = durabilityOf(this.#policy);
    this.#openFlags = durability.flag;
    this.#syncAfterWrite = durability.after;
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
      const fd = await openRaw(last.file, fsConstants.O_RDWR | durabilityOf(policy).flag);
      return new FileLog(dir, identity, opts, segments, fd);
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

  append(events: readonly SipledgerEvent[], opts?: AppendOptions): Promise<AppendResult> {
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
    const deferrable = opts?.deferrable === true && this.#lingerMs > 0;
    return new Promise<AppendResult>((resolve, reject) => {
      this.#pending.push({ events, frames, bytes, deferrable, resolve, reject });
      if (this.#writing) return;
      if (deferrable) {
        // Nobody waits on it: it waits up to lingerMs for other appends to share its write (call
        // steps and authentication records arrive one by one, each would otherwise cost a sync).
        this.#lingerTimer ??= setTimeout(this.#writeLingering, this.#lingerMs);
        return;
      }
      // The first append after a pause starts a group in the check phase of this turn of the event
      // loop (setImmediate), after every I/O callback the poll phase delivered: appends made by
      // datagrams and database replies that arrived together share one write and one trip through
      // the thread pool, at no added wait (the loop does not sleep before the check phase). Deferred
      // appends waiting for their linger go along.
      this.#disarmLinger();
      this.#writing = true;
      setImmediate(this.#startGroup);
    });
  }

  readonly #startGroup = (): void => this.#flush();

  /** Starts a group now with what is pending (lingering deferrable appends included), if idle. */
  readonly #writeLingering = (): void => {
    this.#disarmLinger();
    if (this.#writing || this.#pending.length === 0) return;
    this.#writing = true;
    this.#flush();
  };

  #disarmLinger(): void {
    if (this.#lingerTimer === undefined) return;
    clearTimeout(this.#lingerTimer);
    this.#lingerTimer = undefined;
  }

  /**
   * Writes the next group: everything queued while the previous group was written goes in one write,
   * made durable as one fdatasync would (group commit). Under 'always' each append is its own group.
   * Callback-driven, one step per completion, so that a group costs the event loop as little as
   * possible; exactly one group is in flight at a time.
   */
  #flush(): void {
    let group: PendingAppend[];
    if (this.#policy === 'always') group = this.#pending.splice(0, 1);
    else {
      group = this.#pending;
      this.#pending = [];
    }
    this.#writing = true;
    if (this.#failed) {
      for (const a of group) a.reject(this.#failed);
      this.#next();
      return;
    }
    let frames: Buffer[] = [];
    let bytes = 0;
    for (const a of group) {
      for (const f of a.frames) frames.push(f);
      bytes += a.bytes;
    }
    // One writev for a small group; a large one is copied into one buffer, so that the kernel sees a
    // single write (a writev of more than IOV_MAX buffers is split, each part synced on its own).
    if (frames.length > MAX_WRITEV_BUFFERS) frames = [Buffer.concat(frames, bytes)];
    const segment = this.#segments[this.#segments.length - 1]!;
    if (segment.size > 0 && segment.size + bytes > this.#segmentBytes) {
      this.#roll().then(
        (next) => this.#write(group, frames, bytes, next, 0),
        (err: unknown) => this.#undo(group, segment, err),
      );
      return;
    }
    this.#write(group, frames, bytes, segment, 0);
  }

  /** Writes `bufs` (the group's frames after the first `written` bytes) at the end of `segment`. */
  #write(group: PendingAppend[], bufs: readonly Buffer[], bytes: number, segment: Segment, written: number): void {
    writev(this.#fd, bufs, segment.size + written, (err, n) => {
      if (err) return this.#undo(group, segment, err);
      if (written + n < bytes) return this.#write(group, dropBytes(bufs, n), bytes, segment, written + n);
      const sync = this.#syncAfterWrite;
      if (!sync) return this.#durable(group, segment, bytes);
      sync(this.#fd, (syncErr) => (syncErr ? this.#undo(group, segment, syncErr) : this.#durable(group, segment, bytes)));
    });
  }

  /** The group failed: cut whatever part of it reached the file, then reject its appends. */
  #undo(group: PendingAppend[], segment: Segment, err: unknown): void {
    const error = ioError(`append to ${segment.file} failed`, err);
    // Cut whatever part of the group reached the file, so the log never holds records that were
    // reported as failed. If even that fails, refuse further appends until reopened (open repairs).
    // `segment` is the last one, #fd's (a failed roll-over leaves the previous one in place).
    ftruncate(this.#fd, segment.size, (cutErr) => {
      if (cutErr) {
        this.#failed = new LogError('LOG_IO', `log ${this.#dir} is in an unknown state; reopen it`, false, { cause: cutErr });
        this.#logger.error({ err: cutErr, dir: this.#dir }, 'could not undo a failed append');
      }
      for (const a of group) a.reject(error);
      this.#next();
    });
  }

  /** The group is durable: readers see it, then its appends resolve. */
  #durable(group: PendingAppend[], segment: Segment, bytes: number): void {
    const startEnd = this.#durableEnd;
    segment.size += bytes;
    this.#durableEnd = startEnd + bytes;
    this.stats.groups++;
    this.stats.appends += group.length;
    this.stats.bytes += bytes;
    // Tails see the group before any append of it resolves: the ledger's read-your-writes relies on it.
    let offset = startEnd;
    const records: LogRecord[] = [];
    const positions: LogPosition[] = [];
    for (const a of group) {
      for (let i = 0; i < a.events.length; i++) {
        offset += a.frames[i]!.length;
        records.push({ position: { '0': offset }, event: a.events[i]! });
      }
      positions.push({ '0': offset });
    }
    this.stats.events += records.length;
    for (const listener of this.#live) {
      try {
        listener(records);
      } catch (err) {
        this.#logger.error({ err }, 'log tail handler failed');
      }
    }
    for (let i = 0; i < group.length; i++) group[i]!.resolve({ position: positions[i]! });
    this.#next();
  }

  #next(): void {
    this.#writing = false;
    if (this.#pending.length > 0) {
      // Every append that came in meanwhile is deferrable: they linger for company, unless the log closes.
      if (!this.#closed && !this.#pending.some((a) => !a.deferrable)) this.#lingerTimer ??= setTimeout(this.#writeLingering, this.#lingerMs);
      else this.#writeLingering();
    } else if (this.#onIdle) {
      const idle = this.#onIdle;
      this.#onIdle = undefined;
      idle();
    }
  }

  async #roll(): Promise<Segment> {
    const last = this.#segments[this.#segments.length - 1]!;
    const base = last.base + last.size;
    const file = path.join(this.#dir, segmentName(base));
    const fd = await openRaw(file, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL | this.#openFlags);
    try {
      await FileLog.#syncDir(this.#dir);
    } catch (err) {
      await closeRaw(fd).catch(() => undefined);
      throw err;
    }
    const old = this.#fd;
    const segment: Segment = { base, file, size: 0 };
    this.#fd = fd;
    this.#segments.push(segment);
    await closeRaw(old).catch((err: unknown) => this.#logger.warn({ err }, 'could not close the previous log segment'));
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
    // Deferrable appends still lingering are written now.
    this.#writeLingering();
    if (this.#writing) await new Promise<void>((resolve) => (this.#onIdle = resolve));
    this.#live.clear();
    await closeRaw(this.#fd).catch(() => undefined);
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
