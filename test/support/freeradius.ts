/**
 * Starts a real FreeRADIUS 3.2 (`freeradius -f`) from a private copy of test/fixtures/radius/raddb on
 * a free loopback UDP port, and waits until it answers Status-Server. Never the system service.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { radiusCodec } from '../../src/backends/auth/radius/dictionary.js';

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'radius', 'raddb');
const FREERADIUS = process.env.FREERADIUS_BIN ?? 'freeradius';

/** The shared secret of the only client in the fixture's clients.conf. */
export const FIXTURE_SECRET = 'testing123-sip';

export interface FreeRadius {
  readonly host: string;
  readonly port: number;
  readonly secret: string;
  readonly pid: number;
  /** SIGSTOP: the server stays bound but answers nothing (a hung server). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** SIGTERM (SIGKILL after 3 s) and removal of the private directory. Idempotent. */
  stop(): Promise<void>;
  /** The server's log file (one "Login OK/incorrect" line per request). */
  log(): string;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startFreeRadius(): Promise<FreeRadius> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await startOnce(await freeUdpPort());
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOnce(port: number): Promise<FreeRadius> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sipledger-freeradius-'));
  const raddb = path.join(dir, 'raddb');
  const rundir = path.join(dir, 'run');
  cpSync(FIXTURE, raddb, { recursive: true });
  mkdirSync(rundir);
  // FreeRADIUS refuses a configuration directory that others can write to.
  restrict(dir);

  const child = spawn(FREERADIUS, ['-f', '-d', raddb], {
    env: { ...process.env, SIPRAD_RADDB: raddb, SIPRAD_RUNDIR: rundir, SIPRAD_AUTH_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let paused = false;
  let stopped = false;

  const readLog = (): string => {
    try {
      return readFileSync(path.join(rundir, 'radius.log'), 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      if (paused) child.kill('SIGCONT');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    running.delete(child);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitForStatusServer(port, child, exited);
  } catch (err) {
    const log = readLog();
    await stop();
    throw new Error(`freeradius did not start on 127.0.0.1:${port}: ${(err as Error).message}\n${output}\n${log}`);
  }

  return {
    host: '127.0.0.1',
    port,
    secret: FIXTURE_SECRET,
    pid: child.pid!,
    pause: () => {
      paused = true;
      child.kill('SIGSTOP');
    },
    resume: () => {
      paused = false;
      child.kill('SIGCONT');
    },
    stop,
    log: readLog,
  };
}

function restrict(dir: string): void {
  for (const entry of readdirSync(dir)) {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) {
      chmodSync(full, 0o700);
      restrict(full);
    } else {
      chmodSync(full, 0o600);
    }
  }
  chmodSync(dir, 0o700);
}

/** A UDP port that was free a moment ago (start-up retries on the rare race). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

/** Polls with RFC 5997 Status-Server until the server answers, the child exits, or 10 s pass. */
async function waitForStatusServer(port: number, child: ChildProcess, exited: Promise<void>): Promise<void> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  let answered = false;
  let died = false;
  void exited.then(() => (died = true));
  socket.on('message', (_msg, rinfo) => {
    if (rinfo.port === port) answered = true;
  });
  try {
    const deadline = Date.now() + 10_000;
    let id = 0;
    while (!answered) {
      if (died) throw new Error(`exited with ${child.exitCode ?? child.signalCode}`);
      if (Date.now() > deadline) throw new Error('no answer to Status-Server within 10 s');
      const packet = radiusCodec().encode({
        code: 'Status-Server',
        secret: FIXTURE_SECRET,
        identifier: id++ % 256,
        attributes: [['NAS-IP-Address', '127.0.0.1']],
        authenticator: randomBytes(16),
      });
      socket.send(packet, port, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    socket.close();
  }
}
