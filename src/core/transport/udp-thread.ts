/**
 * A UDP socket whose system calls run on a thread of their own (`listen[].ioThread`): the I/O
 * thread (udp-io-worker.ts) receives and sends the datagrams, and the main thread, which keeps
 * every SIP layer, exchanges them with it in batches, one message each way per turn of either
 * event loop. Under load a batch carries tens of datagrams, so the main thread trades a
 * `recvmsg` or `sendmsg` per datagram (each a kernel entry that may wake the peer and be
 * preempted by it on a busy machine) for a share of one hand-off. Order is kept both ways: one
 * thread, one socket, batches in sequence.
 */
import { Worker } from 'node:worker_threads';
import { BatchWriter, readBatch } from './udp-batch.js';
import type { FromUdpWorker, ToUdpWorker, UdpWorkerData } from './udp-io-worker.js';

export interface ThreadedUdpOptions {
  readonly type: 'udp4' | 'udp6';
  readonly address: string;
  readonly port: number;
  readonly recvBufferSize: number;
  /** Most datagrams received and not yet taken in by the main thread; past it they are dropped. */
  readonly maxBacklog?: number;
  /** Each datagram received, in its own Buffer. */
  readonly onMessage: (buf: Buffer, rinfo: { address: string; port: number }) => void;
  /** The I/O thread dropped datagrams (`total` so far) because the main thread was too far behind. */
  readonly onDropped?: (total: number) => void;
  /** Socket errors after binding (they do not close the socket). */
  readonly onError: (err: Error) => void;
  /** The I/O thread stopped without being closed: the socket receives and sends nothing more. */
  readonly onStopped: (err: Error) => void;
}

type SendCallback = (err: Error | null) => void;

/**
 * A quarter to half a second of datagrams at the rates one main thread sustains (about 4,000 REGISTER
 * datagrams/s, 8,000 call datagrams/s), and several times what a kernel socket buffer of the usual
 * maximum holds: a backlog that drains within a first retransmission's 500 ms (T1) is worth keeping,
 * a longer one only delays every answer.
 */
const DEFAULT_MAX_BACKLOG = 2048;

const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './udp-io-worker.ts' : './udp-io-worker.js', import.meta.url);

export class ThreadedUdpSocket {
  private readonly tx = new BatchWriter();
  private txScheduled = false;
  private nextSeq = 0;
  /** Callbacks of sends handed over and not yet reported, in sequence order from `pendingFirst`. */
  private pending: Array<SendCallback | undefined> = [];
  private pendingFirst = 0;
  private closed = false;
  private droppedSeen = 0;
  private closeWaiters: Array<() => void> = [];
  private bound: { address: string; port: number } = { address: '', port: 0 };

  private constructor(
    private readonly worker: Worker,
    private readonly opts: ThreadedUdpOptions,
    private readonly counters: Int32Array,
  ) {}

  /** Datagrams the I/O thread dropped because the main thread was `maxBacklog` behind. */
  get dropped(): number {
    return Atomics.load(this.counters, 1);
  }

  /** Starts the I/O thread and binds; rejects with the bind error (EADDRINUSE...) if it fails. */
  static async bind(opts: ThreadedUdpOptions): Promise<ThreadedUdpSocket> {
    const counters = new SharedArrayBuffer(8);
    const data: UdpWorkerData = {
      type: opts.type,
      address: opts.address,
      port: opts.port,
      recvBufferSize: opts.recvBufferSize,
      counters,
      maxBacklog: opts.maxBacklog ?? DEFAULT_MAX_BACKLOG,
    };
    const worker = workerUrl.pathname.endsWith('.ts')
      ? // The TypeScript sources (the test suite) load the thread through tsx, as they were loaded.
        new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(workerUrl.href)}); })`, {
          eval: true,
          workerData: data,
        })
      : new Worker(workerUrl, { workerData: data });
    const sock = new ThreadedUdpSocket(worker, opts, new Int32Array(counters));
    await new Promise<void>((resolve, reject) => {
      const onExit = (code: number): void => reject(new Error(`UDP I/O thread exited (${code}) before binding`));
      const onError = (err: Error): void => reject(err);
      worker.once('exit', onExit);
      worker.once('error', onError);
      const onFirst = (m: FromUdpWorker): void => {
        worker.off('exit', onExit);
        worker.off('error', onError);
        if (m.t === 'bound') {
          sock.bound = { address: m.address, port: m.port };
          worker.on('message', (msg: FromUdpWorker) => sock.onWorkerMessage(msg));
          worker.on('error', (err) => opts.onError(err));
          worker.once('exit', (code) => {
            if (sock.closed) return;
            sock.closed = true;
            const err = new Error(`UDP I/O thread stopped (exit code ${code})`);
            sock.failPending(err);
            opts.onStopped(err);
          });
          resolve();
        } else if (m.t === 'bind-failed') {
          void worker.terminate();
          reject(Object.assign(new Error(m.message), { code: m.code }));
        } else {
          reject(new Error(`UDP I/O thread: unexpected ${m.t} before binding`));
        }
      };
      worker.once('message', onFirst);
    });
    return sock;
  }

  address(): { address: string; port: number } {
    return this.bound;
  }

  /** Queues a datagram; it leaves with this turn's batch. `cb` gets the send's outcome. */
  send(bytes: Uint8Array, port: number, address: string, cb: SendCallback): void {
    if (this.closed) {
      queueMicrotask(() => cb(new Error('socket closed')));
      return;
    }
    this.tx.push(bytes, address, port);
    this.pending.push(cb);
    if (!this.txScheduled) {
      this.txScheduled = true;
      setImmediate(this.flushTx);
    }
  }

  close(cb?: () => void): void {
    if (cb) this.closeWaiters.push(cb);
    if (this.closed) return;
    this.flushTx();
    this.closed = true;
    this.worker.postMessage({ t: 'close' } satisfies ToUdpWorker);
    // Whatever the thread does, it is gone within a second.
    const kill = setTimeout(() => void this.worker.terminate(), 1000);
    kill.unref();
    this.worker.once('exit', () => {
      clearTimeout(kill);
      this.failPending(new Error('socket closed'));
      for (const w of this.closeWaiters.splice(0)) w();
    });
  }

  private readonly flushTx = (): void => {
    this.txScheduled = false;
    const n = this.tx.length;
    if (n === 0) return;
    const batch = this.tx.take();
    const first = this.nextSeq;
    this.nextSeq += n;
    this.worker.postMessage({ t: 'tx', first, batch } satisfies ToUdpWorker, [batch]);
  };

  private onWorkerMessage(m: FromUdpWorker): void {
    if (m.t === 'rx') {
      let n = 0;
      readBatch(m.batch, (ab, offset, length, address, port) => {
        // A datagram of its own: a message kept for long (a ringing INVITE) must not hold the batch.
        const buf = Buffer.allocUnsafeSlow(length);
        buf.set(new Uint8Array(ab, offset, length));
        this.opts.onMessage(buf, { address, port });
        n++;
      });
      Atomics.add(this.counters, 0, n);
      const dropped = Atomics.load(this.counters, 1);
      if (dropped !== this.droppedSeen) {
        this.droppedSeen = dropped;
        this.opts.onDropped?.(dropped);
      }
    } else if (m.t === 'sent') {
      let f = 0;
      const pending = this.pending;
      let i = 0;
      while (this.pendingFirst <= m.through && i < pending.length) {
        const seq = this.pendingFirst++;
        const cb = pending[i++];
        let err: Error | null = null;
        while (f < m.failed.length && m.failed[f]!.seq < seq) f++;
        if (f < m.failed.length && m.failed[f]!.seq === seq) err = new Error(m.failed[f]!.message);
        cb?.(err);
      }
      // Reported callbacks leave from the front in one splice, not one shift each.
      pending.splice(0, i);
    } else if (m.t === 'error') {
      this.opts.onError(new Error(m.message));
    }
  }

  private failPending(err: Error): void {
    const cbs = this.pending;
    this.pending = [];
    this.pendingFirst = this.nextSeq;
    for (const cb of cbs) cb?.(err);
  }
}
