/**
 * A restart under load: each run starts a fresh server and at once sends SIPp's register-auth
 * scenario at --rate for --seconds, then stops it; systems interleaved over rounds. It prints the
 * time from spawn to the first SIP answer and the registration response times of the first
 * seconds, when a Node process still runs code V8 has not compiled yet (what `warmUp` addresses).
 *
 *   npx tsx bench/sip/cold-start.ts [--rate 1000] [--seconds 8] [--rounds 3] [--users 10000]
 *       [--system LABEL=PATH/main.js[@REGISTRATIONS[,CALLS]] ...] [--kam 1] [--calls]
 *
 * --calls: instead of registrations, the callees (10) register and then SIPp's call-auth scenario
 * runs at --rate (INVITE -> 407 -> INVITE with credentials -> relayed to a SIPp UAS -> 200/ACK/BYE);
 * the call-setup times are printed.
 *
 * Without --system, the current build (dist/src/cli/main.js) runs with its default warm-up
 * ('sipledger') and with none ('sipledger-cold'). --kam N adds Kamailio usrloc db_mode N, started
 * fresh in the same way.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startPrivateMariadb } from '../../test/support/mariadb.js';
import { findTool, median } from './procs.js';
import { generateUsers, provisionKamailioSchema } from './provision.js';
import { p, runSipp, startUas } from './sipp.js';
import { DEFAULT_BIN, freePort, startKamailioSystem, startSipledgerSystem, type SystemUnderTest } from './systems.js';

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    users: { type: 'string', default: '10000' },
    system: { type: 'string', multiple: true },
    kam: { type: 'string' },
    calls: { type: 'boolean', default: false },
  },
});
const sipp = findTool('sipp');
if (!sipp) throw new Error('needs sipp (apt-get install sip-tester)');
const kamailio = findTool('kamailio', ['/usr/sbin/kamailio']);
if (args.kam && !kamailio) throw new Error('--kam needs kamailio (apt-get install kamailio kamailio-mysql-modules)');

interface Variant {
  readonly label: string;
  start(workDir: string, dbPort: number, round: number): Promise<SystemUnderTest>;
}
const variants: Variant[] = (args.system ?? [`sipledger=${DEFAULT_BIN}`, `sipledger-cold=${DEFAULT_BIN}@0`]).map((spec) => {
  const label = spec.slice(0, spec.indexOf('='));
  const [bin, warm] = spec.slice(label.length + 1).split('@') as [string, string | undefined];
  const [registrations, calls] = (warm ?? '').split(',');
  return {
    label,
    start: (workDir, dbPort, round) =>
      startSipledgerSystem({
        workDir,
        bin,
        dbPort,
        name: `${label}-${round}`,
        ...(warm !== undefined
          ? { configOverrides: { warmUp: { registrations: Number(registrations), ...(calls !== undefined ? { calls: Number(calls) } : {}) } } }
          : {}),
      }),
  };
});
if (args.kam) {
  const dbMode = Number(args.kam) as 0 | 1 | 3;
  variants.push({
    label: `kam-db${dbMode}`,
    start: (workDir, dbPort, round) => startKamailioSystem({ workDir: path.join(workDir, `r${round}`), kamailio: kamailio!, dbPort, dbMode, workers: 4, shmMb: 256 }),
  });
}

const rate = Number(args.rate);
const seconds = Number(args.seconds);
const workDir = mkdtempSync(path.join(tmpdir(), 'sipledger-cold-start-'));
const db = await startPrivateMariadb();
const p99s = new Map<string, number[]>();
const starts = new Map<string, number[]>();
let n = 0;
const uasPort = await freePort();
const uas = args.calls ? startUas(sipp, uasPort, path.join(workDir, 'uas')) : undefined;
const rtd = args.calls ? 'call_setup' : 'register';
try {
  const files = generateUsers(path.join(workDir, 'data'), Number(args.users), 10);
  await provisionKamailioSchema(db.port, files.users);
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const v of variants) {
      const t0 = Date.now();
      const sys = await v.start(workDir, db.port, round);
      const startMs = Date.now() - t0;
      try {
        if (args.calls) {
          const callees = await runSipp({
            sipp,
            scenario: 'register-auth.xml',
            target: { host: '127.0.0.1', port: sys.port },
            localPort: await freePort(),
            inf: files.callees,
            rate: 100,
            calls: 10,
            dir: path.join(workDir, 'runs', `${++n}-callees`),
            keys: { contact_hostport: `127.0.0.1:${uasPort}` },
            timeoutSeconds: 30,
          });
          if (callees.succeeded !== 10) throw new Error(`${v.label}: callee registration failed (${callees.succeeded}/10)`);
        }
        const r = await runSipp({
          sipp,
          scenario: args.calls ? 'call-auth.xml' : 'register-auth.xml',
          target: { host: '127.0.0.1', port: sys.port },
          localPort: await freePort(),
          inf: args.calls ? files.calls : files.regUsers,
          rate,
          calls: rate * seconds,
          dir: path.join(workDir, 'runs', String(++n)),
          ...(args.calls ? {} : { keys: { contact_hostport: '127.0.0.1:5099' } }),
          timeoutSeconds: 60 + seconds * 2,
          extra: ['-max_retrans', '5'],
        });
        const q = ['50', '90', '99'].map((x) => p(r.rtd[rtd], Number(x))).join('/');
        console.log(
          `r${round + 1} ${v.label.padEnd(16)} answering after ${String(startMs).padStart(5)} ms  ok ${r.succeeded}/${rate * seconds} retrans ${r.retransmissions}  ${args.calls ? 'call setup' : 'registration'} p50/p90/p99 ${q} ms`,
        );
        p99s.set(v.label, [...(p99s.get(v.label) ?? []), p(r.rtd[rtd], 99)]);
        starts.set(v.label, [...(starts.get(v.label) ?? []), startMs]);
      } finally {
        await sys.stop();
      }
    }
  }
  console.log(`\nfirst ${seconds} s at ${rate} ${args.calls ? 'calls' : 'REGISTER'}/s from a fresh start (medians of rounds):`);
  for (const [label, xs] of p99s) {
    console.log(`  ${label.padEnd(16)} ${args.calls ? 'call setup' : 'registration'} p99 ${xs.join(', ')} ms (median ${median(xs)}); answering after ${median(starts.get(label)!)} ms`);
  }
} finally {
  await uas?.stop().catch(() => undefined);
  await db.stop();
  rmSync(workDir, { recursive: true, force: true });
}
