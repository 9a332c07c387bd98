/**
 * Where a registration's response time goes: SIPp's register-auth scenario against sipledger at a
 * few fixed rates, printing the challenge, auth and whole-registration response-time percentiles,
 * for sipledger as configured and for variants (file log fsync none / always, Kamailio db_mode 1).
 *
 *   npx tsx bench/sip/latency-probe.ts [--rates 100,500,1000] [--seconds 6] [--variants batch,none,kam1]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startPrivateMariadb } from '../../test/support/mariadb.js';
import { findTool } from './procs.js';
import { generateUsers, provisionKamailioSchema } from './provision.js';
import { p, runSipp } from './sipp.js';
import { DEFAULT_BIN, freePort, startKamailioSystem, startSipledgerSystem, type SystemUnderTest } from './systems.js';

const { values: args } = parseArgs({
  options: {
    rates: { type: 'string', default: '100,500,1000' },
    seconds: { type: 'string', default: '6' },
    variants: { type: 'string', default: 'batch,none,kam1' },
    bin: { type: 'string', default: DEFAULT_BIN },
    env: { type: 'string', multiple: true },
  },
});
const sipp = findTool('sipp');
const kamailio = findTool('kamailio', ['/usr/sbin/kamailio']);
if (!sipp) throw new Error('needs sipp (apt-get install sip-tester)');
const workDir = mkdtempSync(path.join(tmpdir(), 'sipledger-latency-'));
const db = await startPrivateMariadb();
const systems: SystemUnderTest[] = [];
try {
  const files = generateUsers(path.join(workDir, 'data'), 5000, 10);
  await provisionKamailioSchema(db.port, files.users);
  const env: Record<string, string> = {};
  for (const e of args.env ?? []) env[e.slice(0, e.indexOf('='))] = e.slice(e.indexOf('=') + 1);
  for (const v of args.variants!.split(',')) {
    if (v === 'kam1' || v === 'kam0') {
      if (!kamailio) continue;
      systems.push(await startKamailioSystem({ workDir, kamailio, dbPort: db.port, dbMode: v === 'kam1' ? 1 : 0, workers: 4, shmMb: 256 }));
    } else {
      systems.push(
        await startSipledgerSystem({ workDir, bin: args.bin!, dbPort: db.port, name: v, env, configOverrides: { log: { type: 'file', dir: './log', fsync: v } } }),
      );
    }
  }
  let n = 0;
  for (const rate of [1000, ...args.rates!.split(',').map(Number)]) {
    for (const sys of systems) {
      const calls = Math.round(rate * Number(args.seconds));
      const r = await runSipp({
        sipp,
        scenario: 'register-auth.xml',
        target: { host: '127.0.0.1', port: sys.port },
        localPort: await freePort(),
        inf: files.regUsers,
        rate,
        calls,
        dir: path.join(workDir, 'runs', String(++n)),
        keys: { contact_hostport: '127.0.0.1:5099' },
        timeoutSeconds: 60,
        extra: ['-max_retrans', '5'],
      });
      const q = (k: string): string => ['50', '90', '99'].map((x) => p(r.rtd[k], Number(x))).join('/');
      console.log(
        `${sys.name.padEnd(10)} ${String(rate).padStart(5)}/s ok ${r.succeeded}/${calls} retrans ${r.retransmissions}  challenge ${q('challenge')}  auth ${q('auth')}  register ${q('register')} ms (p50/p90/p99)`,
      );
    }
  }
} finally {
  for (const s of systems) await s.stop();
  await db.stop();
  rmSync(workDir, { recursive: true, force: true });
}
