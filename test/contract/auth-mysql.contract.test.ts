/**
 * The credential-store contract for the MySQL backend, against a private mariadbd (so that
 * "unreachable" is a stopped server, not a simulation), in the two ways sites run it:
 * Kamailio's default (ha1/ha1b, uri and dbaliases tables) and clear-text passwords.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll } from 'vitest';
import { createMysqlBackend, type MysqlBackendOptions } from '../../src/backends/auth/mysql.js';
import { startPrivateMariadb, type PrivateMariadb } from '../support/mariadb.js';
import { describeCredentialStoreContract, type CredentialStoreFixture, type CredentialStoreSubject } from './auth-backend.contract.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const logger = pino({ level: 'silent' });

let server: PrivateMariadb | undefined;

afterAll(async () => {
  await server?.destroy();
});

/** One private server for the file; a suite that stopped it (breakBackend) gets it restarted here. */
async function runningServer(): Promise<PrivateMariadb> {
  server ??= await startPrivateMariadb();
  await server.start();
  return server;
}

function setupWith(options: Partial<MysqlBackendOptions>): (fixture: CredentialStoreFixture) => Promise<CredentialStoreSubject> {
  return async (fixture) => {
    const srv = await runningServer();
    const db = await srv.createDatabase('slcontract');
    for (const f of ['standard', 'auth_db', 'uri_db', 'alias_db']) await db.sqlFile(path.join(root, 'schemas', 'sql', `${f}-create.sql`));
    const attributeNames = [...new Set(fixture.users.flatMap((u) => Object.keys(u.attributes)))];
    for (const a of attributeNames) await db.sql(`ALTER TABLE subscriber ADD COLUMN \`${a}\` VARCHAR(128) NULL`);
    for (const u of fixture.users) {
      const cols = ['username', 'domain', 'password', 'ha1', 'ha1b', ...attributeNames];
      const vals = [u.username, u.domain, u.password, u.ha1, u.ha1b, ...attributeNames.map((a) => u.attributes[a] ?? null)];
      await db.sql(`INSERT INTO subscriber (${cols.map((c) => `\`${c}\``).join(',')}) VALUES (${cols.map(() => '?').join(',')})`, vals);
    }
    for (const row of fixture.identities) {
      for (const sip of row.sip) {
        await db.sql('INSERT INTO uri (username, domain, uri_user) VALUES (?, ?, ?)', [row.auth.user, row.auth.domain, sip.user]);
      }
    }
    for (const a of fixture.aliases) {
      await db.sql('INSERT INTO dbaliases (alias_username, alias_domain, username, domain) VALUES (?, ?, ?, ?)', [
        a.alias.user,
        a.alias.domain,
        a.target.user,
        a.target.domain,
      ]);
    }
    const backend = createMysqlBackend({
      name: 'mysql-contract',
      url: db.url,
      logger,
      queryTimeoutMs: 2000,
      loadCredentials: Object.fromEntries(attributeNames.map((a) => [a, a])),
      ...options,
    });
    return {
      backend,
      identities: options.uriTable !== undefined && options.uriTable !== false,
      aliases: options.aliasTable !== undefined && options.aliasTable !== false,
      breakBackend: () => srv.stop('SIGTERM'),
      // A stopped server takes its databases with it when the file's server is destroyed.
      teardown: async () => {
        if (srv.pid !== undefined) await db.drop();
      },
    };
  };
}

describeCredentialStoreContract('mysql (ha1/ha1b, uri and dbaliases tables)', setupWith({ uriTable: 'uri', aliasTable: 'dbaliases' }));
describeCredentialStoreContract('mysql (clear-text passwords, no identity tables)', setupWith({ calculateHa1: true }));
