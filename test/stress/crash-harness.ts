/**
 * Crash safety of the real process (DESIGN.md contract 2): under a SIPp registration load, sipledger
 * is killed with SIGKILL at random moments and restarted on the same data directory and port; every
 * REGISTER that SIPp saw answered 200 OK (read from SIPp's own message log) must be in the location
 * table afterwards, as the admin API reports it.
 *
 * Each user registers once (a sequential injection file, a slice per up period), with a Contact that
 * names the user and the period, so "acknowledged" and "present" are compared binding by binding.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';

export interface CrashRunOptions {
  readonly kills: number;
  /** The event log: file (fsync=batch) or Kafka (brokers and a fresh topic). */
  readonly log: { type: 'file' } | { type: 'kafka'; brokers: string[]; topic: string };
  /** Registrations per second offered by SIPp. */
  readonly rate?: number;
  /** How long sipledger runs under load before each kill: uniformly in [min, max] ms. */
  readonly upMs?: readonly [number, number];
  readonly seed?: number;
  readonly onEvent?: (msg: string) => void;
  /** A directory to keep SIPp's message logs and sipledger's output in (for a failed run). */
  readonly keepLogs?: string;
}

export interface CrashReport {
  readonly kills: number;
  readonly registersOffered: number;
  readonly acknowledged: number;
  readonly lost: number;
  readonly lostBindings: string[];
  readonly presentAfter: number;
  readonly users: number;
}

export const DOMAIN = 'example.com';

/** user00001 ... with a password SIPp can use (not starting with 0x). */
export function crashUser(i: number): { username: string; password: string } {
  return { username: `user${String(i).padStart(5, '0')}`, password: `pw${(i * 7919) % 100003}x${i}` };
}

export function registerScenario(): string {
  const msg = (auth: boolean, cseq: number): string => `    <![CDATA[

      REGISTER sip:[field1] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:[field0]@[field1]>;tag=[pid]R[call_number]
      To: <sip:[field0]@[field1]>
      Call-ID: [call_id]
      CSeq: ${cseq} REGISTER
      Contact: <sip:[field0]@[field3]>
${auth ? '      [field2]\n' : ''}      Expires: 3600
      User-Agent: sipp-crash
      Content-Length: 0

    ]]>`;
  return `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register-crash">
  <send retrans="500">
${msg(false, 1)}
  </send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send retrans="500">
${msg(true, 2)}
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
</scenario>
`;
}

/** Every 200 OK to a REGISTER in a SIPp message log: the To user and the Contact it acknowledged. */
export function acknowledgedRegistrations(messageLog: string): Array<{ user: string; contact: string; callId: string }> {
  const out: Array<{ user: string; contact: string; callId: string }> = [];
  const blocks = messageLog.split(/^-{10,}.*$/m);
  for (const block of blocks) {
    if (!/message received/i.test(block)) continue;
    const start = block.search(/^SIP\/2\.0 /m);
    if (start === -1) continue;
    const text = block.slice(start);
    if (!/^SIP\/2\.0 200 /.test(text)) continue;
    const header = (name: string): string | undefined => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'mi').exec(text)?.[1]?.trim();
    if (!/REGISTER/i.test(header('CSeq') ?? '')) continue;
    const to = header('To') ?? header('t') ?? '';
    const user = /sip:([^@>;]+)@/.exec(to)?.[1];
    const callId = header('Call-ID') ?? header('i') ?? '';
    // The 200 lists every binding of the AOR; ours names the user in its URI.
    const contacts = [...text.matchAll(/^(?:Contact|m)\s*:\s*(.*)$/gim)].flatMap((m) => m[1]!.split(/,(?=\s*<)/));
    const mine = contacts.map((c) => /<([^>]+)>/.exec(c)?.[1]).find((u) => u !== undefined && user !== undefined && u.startsWith(`sip:${user}@`));
    if (user && mine) out.push({ user, contact: mine, callId });
  }
  return out;
}

class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  float(): number {
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s / 0x1_0000_0000;
  }
}

interface SippRun {
  stop(): Promise<string>;
}

function startSippLoad(target: string, rows: string[], rate: number, dir: string): SippRun {
  const scenario = path.join(dir, 'register-crash.xml');
  writeFileSync(scenario, registerScenario());
  const csv = path.join(dir, 'users.csv');
  writeFileSync(csv, ['SEQUENTIAL', ...rows].join('\n') + '\n');
  const messages = path.join(dir, 'messages.log');
  const child = spawn(
    'sipp',
    [
      target,
      '-sf', scenario,
      '-inf', csv,
      '-i', '127.0.0.1',
      '-p', '0',
      '-t', 'u1',
      '-m', String(rows.length),
      '-r', String(rate),
      '-l', String(Math.max(50, rate * 4)),
      '-nostdin',
      '-trace_msg', '-message_file', messages,
      '-timeout', '120s',
      '-max_recv_loops', '1000',
    ],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // SIGUSR1: SIPp stops and flushes its logs.
        child.kill('SIGUSR1');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      await exited;
      if (!existsSync(messages)) throw new Error(`SIPp wrote no message log: ${stderr.slice(0, 2000)}`);
      return readFileSync(messages, 'latin1');
    },
  };
}

async function location(proc: RunningSipledger): Promise<Map<string, string[]>> {
  const res = await fetch(`${proc.adminUrl}/location`);
  if (!res.ok) throw new Error(`admin /location answered ${res.status}`);
  const body = (await res.json()) as { aors: Array<{ aor: string; bindings: Array<{ contact: string }> }> };
  const out = new Map<string, string[]>();
  for (const a of body.aors) out.set(a.aor, a.bindings.map((b) => /<([^>]+)>/.exec(b.contact)?.[1] ?? b.contact));
  return out;
}

export async function runCrashTest(opts: CrashRunOptions): Promise<CrashReport> {
  const rng = new Rng(opts.seed ?? Date.now());
  const rate = opts.rate ?? 150;
  const [minUp, maxUp] = opts.upMs ?? [1500, 3500];
  const perPeriod = Math.ceil((rate * maxUp) / 1000) + rate;
  const users = perPeriod * opts.kills;
  const log = opts.onEvent ?? (() => undefined);
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'sipledger-crash-'));
  const userList = Array.from({ length: users }, (_, i) => crashUser(i + 1));
  const config = baseConfig(
    {
      backends: { local: { type: 'memory', users: userList } },
      log: opts.log.type === 'file' ? { type: 'file', dir: './data/log', fsync: 'batch' } : { type: 'kafka', brokers: opts.log.brokers, topic: opts.log.topic },
      logging: { level: 'info' },
      ...(opts.log.type === 'kafka' ? { instance: 'crash' } : {}),
    },
    port,
  );
  const acked: Array<{ user: string; contact: string; callId: string }> = [];
  let proc: RunningSipledger | undefined;
  let offered = 0;
  try {
    for (let k = 0; k < opts.kills; k++) {
      proc = await startSipledger(config, { dir, timeoutMs: 60_000 });
      const rows = userList.slice(k * perPeriod, (k + 1) * perPeriod).map((u) => `${u.username};${DOMAIN};[authentication username=${u.username} password=${u.password}];127.0.0.1:${20000 + k}`);
      offered += rows.length;
      const sippDir = mkdtempSync(path.join(tmpdir(), 'sipp-crash-'));
      const sipp = startSippLoad(`127.0.0.1:${port}`, rows, rate, sippDir);
      const upMs = Math.round(minUp + rng.float() * (maxUp - minUp));
      await new Promise((r) => setTimeout(r, upMs));
      await proc.kill();
      if (opts.keepLogs) writeFileSync(path.join(opts.keepLogs, `sipledger-${k + 1}.log`), proc.output.join('\n'));
      const messages = await sipp.stop();
      const seen = new Set(acked.map((a) => `${a.user} ${a.contact}`));
      const got = acknowledgedRegistrations(messages).filter((a) => {
        const key = `${a.user} ${a.contact}`;
        if (seen.has(key)) return false; // a 200 retransmitted for a retransmitted REGISTER
        seen.add(key);
        return true;
      });
      acked.push(...got);
      if (opts.keepLogs) writeFileSync(path.join(opts.keepLogs, `sipp-messages-${k + 1}.log`), messages);
      rmSync(sippDir, { recursive: true, force: true });
      log(`kill ${k + 1}/${opts.kills} after ${upMs} ms: ${got.length} registrations acknowledged in this period (${acked.length} in all)`);
    }
    proc = await startSipledger(config, { dir, timeoutMs: 60_000 });
    const table = await location(proc);
    const lostBindings: string[] = [];
    for (const a of acked) {
      const contacts = table.get(`sip:${a.user}@${DOMAIN}`) ?? [];
      if (!contacts.includes(a.contact)) lostBindings.push(`${a.user} ${a.contact} (Call-ID ${a.callId})`);
    }
    let present = 0;
    for (const c of table.values()) present += c.length;
    return { kills: opts.kills, registersOffered: offered, acknowledged: acked.length, lost: lostBindings.length, lostBindings: lostBindings.slice(0, 50), presentAfter: present, users };
  } finally {
    await proc?.stop().catch(() => undefined);
    removeDir(dir);
  }
}
