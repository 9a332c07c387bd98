/**
 * The systems under test, started on loopback ports: sipledger (the built binary, MySQL backend on
 * the Kamailio subscriber table, file log with fsync=batch) and Kamailio 5.6 with the reference
 * configuration in usrloc db_mode 0 or 1.
 */
import dgram from 'node:dgram';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { type Child, sleep, startChild } from './procs.js';
import { DB_NAME, DB_PASSWORD, DB_USER, DOMAIN } from './provision.js';
import { freePort } from '../../test/support/ports.js';

export { freePort };

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const DEFAULT_BIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
export const KAMAILIO_CFG = path.join(HERE, 'kamailio', 'auth-proxy.cfg');

export interface SystemUnderTest {
  /** Short key used in tables: sipledger, kam-db0, kam-db1. */
  readonly name: string;
  readonly description: string;
  readonly port: number;
  /** Root pid of the server's process tree. */
  readonly pid: number;
  readonly child: Child;
  stop(): Promise<void>;
}

/** Sends OPTIONS until anything answers (any status means the server is up). */
export async function waitForSip(port: number, timeoutMs: number, child: Child): Promise<void> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const local = sock.address().port;
  let answered = false;
  sock.on('message', () => (answered = true));
  const deadline = Date.now() + timeoutMs;
  try {
    for (let i = 0; !answered && Date.now() < deadline; i++) {
      if (child.proc.exitCode !== null || child.proc.signalCode !== null) break;
      const branch = `z9hG4bKprobe${Date.now()}${i}`;
      const msg =
        `OPTIONS sip:${DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${local};branch=${branch};rport\r\nMax-Forwards: 70\r\n` +
        `From: <sip:probe@${DOMAIN}>;tag=p${i}\r\nTo: <sip:${DOMAIN}>\r\nCall-ID: probe-${branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;
      sock.send(msg, port, '127.0.0.1');
      await sleep(250);
    }
  } finally {
    sock.close();
  }
  if (!answered) throw new Error(`no SIP answer on 127.0.0.1:${port}; last output:\n${child.output.slice(-20).join('\n')}`);
}

/**
 * Node options sipledger runs with as deploy/sipledger.service starts it: a 64 MiB young
 * generation. A transaction's objects live for its 32 s (timer J), so with V8's default 16 MiB
 * semi-spaces every scavenge copies many survivors and promotes them into the old generation, which
 * then needs mark-compacts (measured with bench/sip/syscalls.ts at 500 REGISTER/s: scavenges 7.2 ->
 * 1.8 and mark-compacts 0.2 -> 0 per 1,000 registrations, GC pause 60 -> 41 µs per registration).
 * The benchmark measures sipledger as deployed; `env: { NODE_OPTIONS: '' }` measures it without.
 */
export const SERVICE_NODE_OPTIONS = '--max-semi-space-size=64';

export async function startSipledgerSystem(opts: {
  workDir: string;
  bin: string;
  dbPort: number;
  nodeArgs?: string[];
  cacheTtlMs?: number;
  maxTransactions?: number;
  /** listen[].ioThread for the UDP listener; unset leaves sipledger's default (the main thread). */
  ioThread?: boolean;
  name?: string;
  /** Extra environment variables for the process. */
  env?: Record<string, string>;
  /** Top-level configuration sections replaced for an experiment (e.g. `{ log: {...} }`). */
  configOverrides?: Record<string, unknown>;
}): Promise<SystemUnderTest> {
  const name = opts.name ?? 'sipledger';
  const dir = path.join(opts.workDir, name);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = {
    listen: [{ transport: 'udp', address: '127.0.0.1', port, ...(opts.ioThread !== undefined ? { ioThread: opts.ioThread } : {}) }],
    // Every REGISTER transaction is kept 64*T1 = 32 s to absorb retransmissions (RFC 3261 timer J),
    // two per registration: at 5,000 registrations/s that is 320,000 alive. The default cap (20,000)
    // suits ~300 registrations/s; a deployment sizes it as 2 x peak REGISTER/s x 32.
    limits: { maxTransactions: opts.maxTransactions ?? 400_000 },
    domains: [{ domain: DOMAIN, backend: 'subscribers' }],
    backends: {
      subscribers: {
        type: 'mysql',
        host: '127.0.0.1',
        port: opts.dbPort,
        user: DB_USER,
        password: DB_PASSWORD,
        database: DB_NAME,
        // As the reference Kamailio config (auth_db use_domain 0).
        useDomain: false,
        ...(opts.cacheTtlMs ? { cacheTtlMs: opts.cacheTtlMs } : {}),
      },
    },
    auth: { secret: 'sipbench-fixed-secret-0123456789', nonceLifetime: 300 },
    log: { type: 'file', dir: './log', fsync: 'batch' },
    admin: { enabled: false },
    // Nothing is logged per request at info; the start-up line is.
    logging: { level: 'info' },
    ...opts.configOverrides,
  };
  const configFile = path.join(dir, 'sipledger.yaml');
  writeFileSync(configFile, YAML.stringify(config));
  const child = startChild(process.execPath, [...(opts.nodeArgs ?? []), opts.bin, 'start', '-c', configFile], {
    cwd: dir,
    env: { ...process.env, NODE_OPTIONS: SERVICE_NODE_OPTIONS, ...opts.env },
  });
  await waitForSip(port, 30_000, child);
  return {
    name,
    description: `sipledger (MySQL auth${opts.cacheTtlMs ? `, credential cache ${opts.cacheTtlMs / 1000} s` : ''}${opts.ioThread === undefined ? '' : opts.ioThread ? ', UDP on an I/O thread' : ', UDP on the main thread'}, file log fsync=batch, NODE_OPTIONS=${opts.env?.['NODE_OPTIONS'] ?? SERVICE_NODE_OPTIONS})`,
    port,
    pid: child.pid,
    child,
    stop: () => child.stop(10_000),
  };
}

export async function startKamailioSystem(opts: { workDir: string; kamailio: string; dbPort: number; dbMode: 0 | 1 | 3; workers: number; shmMb: number }): Promise<SystemUnderTest> {
  const name = `kam-db${opts.dbMode}`;
  const dir = path.join(opts.workDir, name);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const dburl = `mysql://${DB_USER}:${DB_PASSWORD}@127.0.0.1:${opts.dbPort}/${DB_NAME}`;
  const variant = opts.dbMode === 1 ? ['-A', 'UL_WRITETHROUGH'] : opts.dbMode === 3 ? ['-A', 'UL_DBONLY'] : [];
  const args = [
    '-f', KAMAILIO_CFG,
    '-l', `udp:127.0.0.1:${port}`,
    '-n', String(opts.workers),
    '-DD', '-E',
    '-m', String(opts.shmMb),
    '-M', '16',
    '-Y', dir,
    '-P', path.join(dir, 'kamailio.pid'),
    '-A', `DBURL="${dburl}"`,
    ...variant,
  ];
  const child = startChild(opts.kamailio, args, { cwd: dir });
  await waitForSip(port, 30_000, child);
  const mode = { 0: 'memory only', 1: 'write-through', 3: 'DB only' }[opts.dbMode];
  return {
    name,
    description: `Kamailio 5.6, usrloc db_mode ${opts.dbMode} (${mode}), ${opts.workers} UDP workers`,
    port,
    pid: child.pid,
    child,
    stop: () => child.stop(10_000),
  };
}
