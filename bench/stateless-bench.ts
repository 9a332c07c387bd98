/**
 * Server CPU per statelessly answered REGISTER (a REGISTER without credentials answered with a
 * 401 challenge), compared with a bare Node UDP responder that answers without parsing: the cost
 * of sipledger's transport, parser, transaction layer, router and nonce signing over the floor of
 * Node's UDP socket. SIPp drives both at the same fixed rate, interleaved (A B A B), and the CPU is
 * read from /proc/PID/stat.
 *
 *   node --import tsx bench/stateless-bench.ts [--rate 2000] [--seconds 10] [--rounds 2]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : Number(args[i + 1]);
};
const RATE = opt('rate', 2000);
const SECONDS = opt('seconds', 10);
const ROUNDS = opt('rounds', 2);

if (spawnSync('sipp', ['-v']).error) {
  console.error('sipp not found: apt-get install sip-tester');
  process.exit(2);
}

const SCENARIO = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register-challenge">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:user[call_number]@example.com>;tag=[pid]R[call_number]
      To: <sip:user[call_number]@example.com>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:user[call_number]@[local_ip]:[local_port]>
      Expires: 3600
      User-Agent: Grandstream BT110 1.0.8.33
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" timeout="5000"/>
</scenario>
`;

/** A responder that answers every datagram 401 by swapping the start line, parsing nothing. */
const ECHO = `
const dgram = require('node:dgram');
const sock = dgram.createSocket('udp4');
const line = Buffer.from('SIP/2.0 401 Unauthorized');
sock.on('message', (m, r) => {
  const eol = m.indexOf(13);
  sock.send(Buffer.concat([line, m.subarray(eol)]), r.port, r.address);
});
sock.bind(Number(process.argv[1]), '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
  return (ticks * 1000) / 100; // USER_HZ = 100 on Linux
}

async function waitFor(child: ChildProcess, pattern: RegExp): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const on = (b: Buffer): void => {
      out += b.toString();
      if (pattern.test(out)) resolve();
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.once('exit', (c) => reject(new Error(`exited ${c}: ${out.slice(-500)}`)));
  });
}

async function runSipp(port: number, dir: string): Promise<{ ok: number; failed: number }> {
  const scen = path.join(dir, 'scenario.xml');
  writeFileSync(scen, SCENARIO);
  const calls = RATE * SECONDS;
  const child = spawn('sipp', [`127.0.0.1:${port}`, '-sf', scen, '-i', '127.0.0.1', '-m', String(calls), '-r', String(RATE), '-nostdin', '-timeout', `${SECONDS + 20}s`, '-trace_stat', '-stf', path.join(dir, 'stat.csv')], {
    cwd: dir,
    stdio: 'ignore',
  });
  await new Promise((r) => child.once('exit', r));
  const lines = readFileSync(path.join(dir, 'stat.csv'), 'utf8').trim().split('\n');
  const head = lines[0]!.split(';');
  const last = lines[lines.length - 1]!.split(';');
  return { ok: Number(last[head.indexOf('SuccessfulCall(C)')]), failed: Number(last[head.indexOf('FailedCall(C)')]) };
}

async function measure(kind: 'sipledger' | 'echo', port: number): Promise<{ usPerReq: number; ok: number; failed: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), `bench-${kind}-`));
  let child: ChildProcess;
  if (kind === 'echo') {
    child = spawn(process.execPath, ['-e', ECHO, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitFor(child, /ready/);
  } else {
    const config = {
      listen: [{ transport: 'udp', address: '127.0.0.1', port }],
      domains: [{ domain: 'example.com', backend: 'local' }],
      backends: { local: { type: 'memory', users: [{ username: 'alice', password: 'alice-secret' }] } },
      auth: { secret: 'bench-secret-0123456789abcdef' },
      log: { type: 'file', dir: path.join(dir, 'log') },
      admin: { enabled: false },
      logging: { level: 'warn' },
    };
    writeFileSync(path.join(dir, 'c.yaml'), YAML.stringify(config));
    child = spawn(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'start', '-c', path.join(dir, 'c.yaml'), '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitFor(child, /sipledger started/);
  }
  const before = cpuMs(child.pid!);
  const r = await runSipp(port, dir);
  const used = cpuMs(child.pid!) - before;
  child.kill('SIGKILL');
  return { usPerReq: (used * 1000) / Math.max(1, r.ok), ...r };
}

async function main(): Promise<void> {
  const port = 30000 + Math.floor(Math.random() * 20000);
  console.log(`stateless REGISTER -> 401, SIPp at ${RATE}/s for ${SECONDS}s, ${ROUNDS} rounds (interleaved)`);
  const rows: Array<{ round: number; echo: number; sipledger: number }> = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const echo = await measure('echo', port);
    const sl = await measure('sipledger', port + 1);
    console.log(
      `round ${round}: bare UDP responder ${echo.usPerReq.toFixed(1)} us/req (${echo.ok} ok, ${echo.failed} failed); ` +
        `sipledger ${sl.usPerReq.toFixed(1)} us/req (${sl.ok} ok, ${sl.failed} failed); ratio ${(sl.usPerReq / echo.usPerReq).toFixed(2)}x`,
    );
    rows.push({ round, echo: echo.usPerReq, sipledger: sl.usPerReq });
  }
  const med = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const e = med(rows.map((r) => r.echo));
  const s = med(rows.map((r) => r.sipledger));
  console.log(`median: bare ${e.toFixed(1)} us/req, sipledger ${s.toFixed(1)} us/req, ratio ${(s / e).toFixed(2)}x`);
}

void main();
