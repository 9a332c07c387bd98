/**
 * Subscribers and SIPp injection files for the side-by-side benchmark, and the Kamailio schema in a
 * private MariaDB: the same generator as the shared material's gen-users.js (users user00001..N,
 * deterministic passwords, the last CALLEES users are callees), written to the run's own directory.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';

export const DOMAIN = 'bench.test';
export const DB_USER = 'kamailio';
export const DB_PASSWORD = 'kamailiorw';
export const DB_NAME = 'kamailio';
const KAMAILIO_SQL = '/usr/share/kamailio/mysql';

export interface UserFiles {
  readonly dir: string;
  /** Load users (callers): field0 user, field1 domain, field2 SIPp auth keyword, field3 password. */
  readonly regUsers: string;
  readonly callees: string;
  /** field0 caller, field1 domain, field2 caller auth, field3 callee. */
  readonly calls: string;
  readonly users: Array<{ name: string; password: string }>;
}

export function generateUsers(dir: string, n: number, callees: number): UserFiles {
  if (!(callees > 0 && callees < n)) throw new Error('need 0 < callees < users');
  mkdirSync(dir, { recursive: true });
  const width = Math.max(5, String(n).length);
  const name = (i: number): string => 'user' + String(i).padStart(width, '0');
  // SIPp treats a password starting with "0x" as hex key material, so every password starts with a letter.
  const pass = (i: number): string =>
    'p' + createHash('sha256').update(`sipbench-${i}`).digest('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 11);
  const auth = (i: number): string => `[authentication username=${name(i)} password=${pass(i)}]`;
  const callerMax = n - callees;
  const reg = ['SEQUENTIAL'];
  const cal = ['SEQUENTIAL'];
  const calls = ['SEQUENTIAL'];
  const users: Array<{ name: string; password: string }> = [];
  for (let i = 1; i <= n; i++) {
    const row = `${name(i)};${DOMAIN};${auth(i)};${pass(i)}`;
    users.push({ name: name(i), password: pass(i) });
    if (i <= callerMax) {
      reg.push(row);
      calls.push(`${name(i)};${DOMAIN};${auth(i)};${name(callerMax + 1 + ((i - 1) % callees))}`);
    } else cal.push(row);
  }
  const files = {
    dir,
    regUsers: path.join(dir, 'reg-users.csv'),
    callees: path.join(dir, 'callees.csv'),
    calls: path.join(dir, 'calls.csv'),
    users,
  };
  writeFileSync(files.regUsers, reg.join('\n') + '\n');
  writeFileSync(files.callees, cal.join('\n') + '\n');
  writeFileSync(files.calls, calls.join('\n') + '\n');
  return files;
}

/**
 * Creates the Kamailio database (schema from the packaged SQL), one usrloc table per Kamailio
 * variant (location, location_wt for db_mode 1, location_db for db_mode 3), the kamailio account,
 * and the subscribers with both the plain password (Kamailio's reference config, calculate_ha1=1)
 * and the HA1 (what sipledger reads).
 */
export async function provisionKamailioSchema(port: number, users: UserFiles['users']): Promise<void> {
  const conn = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', password: '', multipleStatements: true });
  try {
    await conn.query(`DROP DATABASE IF EXISTS ${DB_NAME}; CREATE DATABASE ${DB_NAME} CHARACTER SET latin1;
      CREATE USER IF NOT EXISTS '${DB_USER}'@'127.0.0.1' IDENTIFIED BY '${DB_PASSWORD}';
      CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASSWORD}';
      GRANT ALL ON ${DB_NAME}.* TO '${DB_USER}'@'127.0.0.1'; GRANT ALL ON ${DB_NAME}.* TO '${DB_USER}'@'localhost';
      FLUSH PRIVILEGES; USE ${DB_NAME};`);
    for (const f of ['standard', 'auth_db', 'usrloc', 'uri_db']) {
      await conn.query(readFileSync(path.join(KAMAILIO_SQL, `${f}-create.sql`), 'utf8'));
    }
    for (const t of ['location_wt', 'location_db']) {
      await conn.query(`CREATE TABLE ${t} LIKE location;
        INSERT INTO version (table_name, table_version) VALUES ('${t}', (SELECT table_version FROM version v WHERE v.table_name='location'))`);
    }
    const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
    for (let i = 0; i < users.length; i += 1000) {
      const rows = users.slice(i, i + 1000).map((u) => [u.name, DOMAIN, u.password, md5(`${u.name}:${DOMAIN}:${u.password}`), md5(`${u.name}@${DOMAIN}:${DOMAIN}:${u.password}`)]);
      await conn.query('INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ?', [rows]);
    }
  } finally {
    await conn.end();
  }
}

/** Empties the usrloc tables between phases so that every variant starts from the same state. */
export async function truncateLocations(port: number): Promise<void> {
  const conn = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', password: '', database: DB_NAME, multipleStatements: true });
  try {
    await conn.query('DELETE FROM location; DELETE FROM location_wt; DELETE FROM location_db;');
  } finally {
    await conn.end();
  }
}
