/**
 * A Kafka-protocol broker for tests (see shared recipes, "A Kafka broker for tests on this machine").
 *
 * With KAFKA_BROKERS=host:port[,host:port] set, that broker (a real Kafka or Redpanda) is used and
 * nothing is started. Otherwise librdkafka's mock cluster is started through kcat, behind a small TCP
 * relay that fixes two things kafkajs cannot live with:
 *   1. the mock advertises its own random port: the relay rewrites the broker port in Metadata and
 *      FindCoordinator responses to the relay's, so clients keep talking through the relay;
 *   2. the mock reports ControllerId 0 while its broker ids start at 1: kafkajs sends the idempotent
 *      producer's InitProducerId to the controller, so the relay rewrites ControllerId to the broker id.
 * Everything else is forwarded byte for byte. The mock keeps nothing on disk and about 5 MiB per
 * partition: use a fresh topic per test.
 *
 * Usage: `const broker = await startKafkaBroker(); ... await broker.stop();`
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export interface KafkaBroker {
  readonly brokers: string[];
  stop(): Promise<void>;
}

const API_METADATA = 3;
const API_FIND_COORDINATOR = 10;

export async function startKafkaBroker(): Promise<KafkaBroker> {
  const fromEnv = process.env.KAFKA_BROKERS?.split(',').map((s) => s.trim()).filter(Boolean);
  if (fromEnv && fromEnv.length > 0) return { brokers: fromEnv, stop: async () => undefined };

  const { child, port: mockPort } = await startMock();
  const relay = await startRelay(mockPort);
  return {
    brokers: [`127.0.0.1:${relay.port}`],
    stop: async () => {
      await relay.close();
      await stopMock(child);
    },
  };
}

function startMock(): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    // stdin stays open: kcat (and its mock cluster) exits when it closes, so no broker outlives us.
    const child = spawn('kcat', ['-b', '127.0.0.1:1', '-P', '-t', '__mock_keepalive', '-X', 'test.mock.num.brokers=1'], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kcat mock cluster did not start: ${stderr}`));
    }, 10_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run kcat (apt-get install kcat): ${err.message}`));
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      const m = /replaced with 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kcat exited (${String(code)}) before the mock cluster started: ${stderr}`));
    });
  });
}

function stopMock(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.stdin!.end();
  });
}

/** Splits a byte stream into size-prefixed Kafka frames (int32 size, then that many bytes). */
class Framer {
  #buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    const frames: Buffer[] = [];
    while (this.#buf.length >= 4) {
      const size = this.#buf.readInt32BE(0);
      if (this.#buf.length < 4 + size) break;
      frames.push(this.#buf.subarray(0, 4 + size));
      this.#buf = this.#buf.subarray(4 + size);
    }
    return frames;
  }
}

function startRelay(mockPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let relayPort = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(mockPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const pending = new Map<number, { apiKey: number; apiVersion: number }>();
    const requests = new Framer();
    const responses = new Framer();
    client.on('data', (chunk: Buffer) => {
      for (const frame of requests.push(chunk)) {
        // Request header v0/v1/v2: size, api_key int16, api_version int16, correlation_id int32.
        if (frame.length >= 12) pending.set(frame.readInt32BE(8), { apiKey: frame.readInt16BE(4), apiVersion: frame.readInt16BE(6) });
        upstream.write(frame);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      for (const frame of responses.push(chunk)) {
        const correlationId = frame.readInt32BE(4);
        const request = pending.get(correlationId);
        pending.delete(correlationId);
        if (request) {
          try {
            rewrite(frame, request.apiKey, request.apiVersion, relayPort);
          } catch {
            // A response this relay does not understand is forwarded untouched.
          }
        }
        client.write(frame);
      }
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      relayPort = (server.address() as net.AddressInfo).port;
      resolve({
        port: relayPort,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/** Rewrites in place (the fields are fixed-size): advertised ports and the controller id. */
function rewrite(frame: Buffer, apiKey: number, apiVersion: number, relayPort: number): void {
  // Response header v0: size int32, correlation_id int32; body follows. Flexible versions (Metadata
  // v9+, FindCoordinator v3+) use compact encodings and are left alone; kafkajs 2.x does not use them.
  let at = 8;
  const readString = (): void => {
    const len = frame.readInt16BE(at);
    at += 2 + Math.max(0, len);
  };
  if (apiKey === API_METADATA && apiVersion <= 8) {
    if (apiVersion >= 3) at += 4; // throttle_time_ms
    const brokers = frame.readInt32BE(at);
    at += 4;
    let firstNodeId: number | undefined;
    for (let i = 0; i < brokers; i++) {
      const nodeId = frame.readInt32BE(at);
      firstNodeId ??= nodeId;
      at += 4;
      readString(); // host
      frame.writeInt32BE(relayPort, at);
      at += 4;
      if (apiVersion >= 1) readString(); // rack
    }
    if (apiVersion >= 2) readString(); // cluster_id
    if (apiVersion >= 1 && firstNodeId !== undefined) frame.writeInt32BE(firstNodeId, at); // controller_id
  } else if (apiKey === API_FIND_COORDINATOR && apiVersion <= 2) {
    if (apiVersion >= 1) at += 4; // throttle_time_ms
    at += 2; // error_code
    if (apiVersion >= 1) readString(); // error_message
    at += 4; // node_id
    readString(); // host
    frame.writeInt32BE(relayPort, at);
  }
}
