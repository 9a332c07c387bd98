/**
 * The UDP I/O thread (see udp-thread.ts): owns one bound UDP socket, hands every datagram it
 * receives to the main thread in batches (one message per turn of this thread's event loop), and
 * sends the batches of datagrams the main thread hands it. It parses nothing and keeps no state
 * beyond the socket: the SIP layers all stay on the main thread.
 */
import dgram from 'node:dgram';
import { parentPort, workerData } from 'node:worker_threads';
import { BatchWriter, readBatch } from './udp-batch.js';

export interface UdpWorkerData {
  readonly type: 'udp4' | 'udp6';
  readonly address: string;
  readonly port: number;
  readonly recvBufferSize: number;
  /**
   * Shared counters (Int32Array over a SharedArrayBuffer): [0] datagrams the main thread has taken
   * in, [1] datagrams this thread dropped because the main thread was too far behind.
   */
  readonly counters: SharedArrayBuffer;
  /** Most datagrams handed over and not yet taken in by the main thread. */
  readonly maxBacklog: number;
}

/** Messages from the I/O thread to the main thread. */
export type FromUdpWorker =
  | { readonly t: 'bound'; readonly address: string; readonly port: number }
  | { readonly t: 'bind-failed'; readonly message: string; readonly code: string | undefined }
  | { readonly t: 'rx'; readonly batch: ArrayBuffer }
  | { readonly t: 'sent'; readonly through: number; readonly failed: ReadonlyArray<{ readonly seq: number; readonly message: string }> }
  | { readonly t: 'error'; readonly message: string }
  | { readonly t: 'closed' };

/** Messages from the main thread: a batch to send (its datagrams numbered from `first`), or close. */
export type ToUdpWorker = { readonly t: 'tx'; readonly first: number; readonly batch: ArrayBuffer } | { readonly t: 'close' };

const port = parentPort!;
const data = workerData as UdpWorkerData;

const sock = dgram.createSocket({
  type: data.type,
  // Only literals are ever sent from here: hand them back without dns.lookup.
  lookup: (address: string, _family: unknown, callback: (err: null, address: string, family: number) => void) =>
    callback(null, address, address.includes(':') ? 6 : 4),
});

const counters = new Int32Array(data.counters);
/** Datagrams handed to the main thread so far (wraps as the shared counter does). */
let handedOver = 0;
const rx = new BatchWriter();
let rxScheduled = false;
const flushRx = (): void => {
  rxScheduled = false;
  if (rx.length === 0) return;
  handedOver = (handedOver + rx.length) | 0;
  const batch = rx.take();
  port.postMessage({ t: 'rx', batch } satisfies FromUdpWorker, [batch]);
};

// Sends complete in order; their outcome goes back once per turn, as the highest sequence number
// done and the ones that failed.
let sentThrough = -1;
let failed: Array<{ seq: number; message: string }> = [];
let txScheduled = false;
const flushSent = (): void => {
  txScheduled = false;
  port.postMessage({ t: 'sent', through: sentThrough, failed } satisfies FromUdpWorker);
  failed = [];
};
const done = (seq: number, err: Error | null): void => {
  if (err) failed.push({ seq, message: err.message });
  if (seq > sentThrough) sentThrough = seq;
  if (!txScheduled) {
    txScheduled = true;
    setImmediate(flushSent);
  }
};

sock.once('error', (err: NodeJS.ErrnoException) => {
  port.postMessage({ t: 'bind-failed', message: err.message, code: err.code } satisfies FromUdpWorker);
});
sock.bind({ address: data.address, port: data.port }, () => {
  sock.removeAllListeners('error');
  sock.on('error', (err) => port.postMessage({ t: 'error', message: err.message } satisfies FromUdpWorker));
  try {
    sock.setRecvBufferSize(data.recvBufferSize);
  } catch {
    /* capped by the system */
  }
  const a = sock.address();
  sock.on('message', (buf, rinfo) => {
    // Backpressure: a main thread that falls behind would otherwise see its queue grow without
    // bound and answer requests long abandoned. Past the limit a datagram is dropped, as the
    // kernel drops what overflows a socket's buffer; the sender retransmits.
    if (((handedOver - Atomics.load(counters, 0)) | 0) + rx.length >= data.maxBacklog) {
      Atomics.add(counters, 1, 1);
      return;
    }
    rx.push(buf, rinfo.address, rinfo.port);
    if (!rxScheduled) {
      rxScheduled = true;
      setImmediate(flushRx);
    }
  });
  port.postMessage({ t: 'bound', address: a.address, port: a.port } satisfies FromUdpWorker);
});

port.on('message', (m: ToUdpWorker) => {
  if (m.t === 'tx') {
    let seq = m.first;
    readBatch(m.batch, (ab, offset, length, address, p) => {
      const n = seq++;
      sock.send(new Uint8Array(ab, offset, length), p, address, (err) => done(n, err));
    });
  } else {
    sock.close(() => {
      port.postMessage({ t: 'closed' } satisfies FromUdpWorker);
      port.close();
    });
  }
});
