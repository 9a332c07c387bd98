/**
 * The MySQL backend when the database misbehaves: stopped, crashed, hung, slow, or killing our
 * connections. Every failure must be a BackendUnavailableError (never a hang, never "no such
 * user"), and the same backend object must work again once the database does.
 *
 * The bound on "never hangs" is a liveness bound (several times queryTimeoutMs), not a speed
 * measurement: it fails only when a lookup would otherwise wait forever.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackendUnavailableError, type Credentials } from '../../src/core/auth/backend.js';
import { createMysqlBackend, type MysqlBackend, type MysqlBackendOptions } from '../../src/backends/auth/mysql.js';
import { createTestDatabase, startPrivateMariadb, type PrivateMariadb, type TestDatabase } from '../support/mariadb.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const logger = pino({ level: 'silent' });
const QUERY_TIMEOUT_MS = 600;
/** Generous: a lookup that has not settled by then is hanging. */
const LIVENESS_MS = QUERY_TIMEOUT_MS * 5;
const alice = { username: 'alice', domain: 'example.test' };
const opts = (): { signal: AbortSignal } => ({ signal: new AbortController().signal });

async function provision(db: TestDatabase): Promise<void> {
  for (const f of ['standard', 'auth_db']) await db.sqlFile(path.join(root, 'schemas', 'sql', `${f}-create.sql`));
  await db.sql("INSERT INTO subscriber (username, domain, password, ha1) VALUES ('alice', 'example.test', 'pw', 'a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1')");
}

/** Settles the lookup or fails the test if it has not settled within the liveness bound. */
async function settle(p: Promise<Credentials | null>): Promise<{ value?: Credentials | null; error?: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`lookup still pending after ${LIVENESS_MS} ms: it hangs`)), LIVENESS_MS);
  });
  try {
    return await Promise.race([p.then((value) => ({ value }), (error: unknown) => ({ error })), hang]);
  } finally {
    clearTimeout(timer);
  }
}

const open: MysqlBackend[] = [];
function backend(db: TestDatabase, extra: Partial<MysqlBackendOptions> = {}): MysqlBackend {
  const b = createMysqlBackend({ name: 'db', url: db.url, logger, queryTimeoutMs: QUERY_TIMEOUT_MS, calculateHa1: true, ...extra });
  open.push(b);
  return b;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

describe('MySQL backend against a private mariadbd that stops, crashes and hangs', () => {
  let server: PrivateMariadb;
  let db: TestDatabase;

  beforeAll(async () => {
    server = await startPrivateMariadb();
    db = await server.createDatabase('sloutage');
    await provision(db);
  });

  afterAll(async () => {
    await server?.destroy();
  });

  it('rejects with BackendUnavailableError while the server is stopped and works again after a restart, same object', async () => {
    const b = backend(db, { poolSize: 3 });
    // Fill the pool with idle connections that the shutdown will break.
    await Promise.all([b.lookup(alice, opts()), b.lookup(alice, opts()), b.lookup(alice, opts())]);
    await server.stop('SIGTERM');

    const down = await settle(b.lookup(alice, opts()));
    expect(down.error).toBeInstanceOf(BackendUnavailableError);
    expect((down.error as BackendUnavailableError).retriable).toBe(true);
    expect((down.error as Error).cause).toBeDefined();
    // More failures than pool slots: failed connection attempts must not use the pool up.
    const again = await Promise.all(Array.from({ length: 12 }, () => settle(b.lookup(alice, opts()))));
    for (const r of again) expect(r.error).toBeInstanceOf(BackendUnavailableError);

    await server.start();
    const up = await settle(b.lookup(alice, opts()));
    expect(up.error).toBeUndefined();
    expect(up.value?.password).toBe('pw');
  });

  it('recovers after a crash (SIGKILL) and restart without losing a request once the server is back', async () => {
    const b = backend(db, { poolSize: 4 });
    await Promise.all([1, 2, 3, 4].map(() => b.lookup(alice, opts())));
    await server.stop('SIGKILL');
    const down = await settle(b.lookup(alice, opts()));
    expect(down.error).toBeInstanceOf(BackendUnavailableError);
    await server.start();
    const results = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map(() => settle(b.lookup(alice, opts()))));
    for (const r of results) expect(r.value?.password).toBe('pw');
  });

  it('gives up on a hung server (SIGSTOP) with BackendUnavailableError and serves again after SIGCONT', async () => {
    const b = backend(db, { poolSize: 2 });
    await b.lookup(alice, opts());
    server.pause();
    try {
      // Both an idle pooled connection and a fresh connection attempt meet the silence.
      const hung = await Promise.all([settle(b.lookup(alice, opts())), settle(b.lookup(alice, opts())), settle(b.lookup(alice, opts()))]);
      for (const r of hung) {
        expect(r.error).toBeInstanceOf(BackendUnavailableError);
        expect((r.error as Error).message).toMatch(/within 600 ms|ETIMEDOUT/);
      }
    } finally {
      server.resume();
    }
    const back = await settle(b.lookup(alice, opts()));
    expect(back.value?.password).toBe('pw');
  });

  it('honours the caller deadline while the server hangs, without reading the signal', async () => {
    const b = backend(db, { queryTimeoutMs: 60_000 });
    await b.lookup(alice, opts());
    server.pause();
    try {
      const options = {
        deadline: performance.now() + 150,
        get signal(): AbortSignal {
          throw new Error('the signal was read although a deadline was given');
        },
      };
      const started = performance.now();
      const r = await settle(b.lookup(alice, options));
      expect(r.error).toBeInstanceOf(BackendUnavailableError);
      expect((r.error as Error).message).not.toContain('signal was read');
      // Given up at the caller's deadline, not after the backend's own 60 s.
      expect(performance.now() - started).toBeLessThan(10_000);
    } finally {
      server.resume();
    }
    expect((await b.lookup(alice, opts()))?.password).toBe('pw');
  });

  it('honours the caller abort signal while the server hangs', async () => {
    const b = backend(db, { queryTimeoutMs: 60_000 });
    await b.lookup(alice, opts());
    server.pause();
    try {
      const ac = new AbortController();
      const p = settle(b.lookup(alice, { signal: ac.signal }));
      setTimeout(() => ac.abort(), 100);
      const r = await p;
      expect(r.error).toBeInstanceOf(BackendUnavailableError);
      expect((r.error as Error).message).toContain('aborted');
    } finally {
      server.resume();
    }
    expect((await b.lookup(alice, opts()))?.password).toBe('pw');
  });
});

describe('MySQL backend when connections are killed or statements are slow', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase('slkill');
    await provision(db);
    // A subscriber view whose every row costs five seconds: a slow database, seen from the backend.
    await db.sql('CREATE VIEW slow_subscriber AS SELECT * FROM subscriber WHERE SLEEP(5) = 0');
  });

  afterAll(async () => {
    await db?.drop();
  });

  /** Server thread ids of this database's connections other than the test's own. */
  async function backendThreads(): Promise<number[]> {
    const rows = await db.sql<Array<{ ID: number }>>(
      'SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()',
      [db.name],
    );
    return rows.map((r) => Number(r.ID));
  }

  it('loses no request when every pooled connection was killed (KILL CONNECTION) while idle', async () => {
    const b = backend(db, { poolSize: 4 });
    for (let round = 0; round < 5; round += 1) {
      await Promise.all([1, 2, 3, 4].map(() => b.lookup(alice, opts())));
      const ids = await backendThreads();
      expect(ids.length).toBeGreaterThan(0);
      // A thread of an earlier, closed backend may end between the listing and the KILL.
      for (const id of ids) await db.sql(`KILL CONNECTION ${id}`).catch((e: { errno?: number }) => expect(e.errno).toBe(1094));
      const results = await Promise.all([1, 2, 3, 4, 5, 6].map(() => settle(b.lookup(alice, opts()))));
      for (const r of results) expect(r.value?.password).toBe('pw');
    }
  });

  it('sends the statement once more when its connection is killed mid-statement', async () => {
    const b = backend(db, { poolSize: 1, queryTimeoutMs: 10_000 });
    await b.lookup(alice, opts());
    const before = b.stats.queries;
    // Hold the statement on the server (metadata lock), kill its connection, then let the retry through.
    await db.sql('LOCK TABLES subscriber WRITE');
    let released = false;
    try {
      const pending = b.lookup(alice, opts());
      let victim: number | undefined;
      for (let i = 0; i < 100 && victim === undefined; i += 1) {
        const rows = await db.sql<Array<{ ID: number }>>(
          "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID() AND INFO LIKE 'SELECT%'",
          [db.name],
        );
        victim = rows[0]?.ID;
        if (victim === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      expect(victim).toBeDefined();
      await db.sql(`KILL CONNECTION ${victim}`);
      // Give the retry time to reach the server before the lock goes; it must then succeed.
      await new Promise((r) => setTimeout(r, 100));
      await db.sql('UNLOCK TABLES');
      released = true;
      const r = await settle(pending);
      expect(r.error).toBeUndefined();
      expect(r.value?.password).toBe('pw');
      expect(b.stats.queries - before).toBe(2);
    } finally {
      if (!released) await db.sql('UNLOCK TABLES');
    }
  });

  it('bounds a slow statement (SELECT ... SLEEP) by queryTimeoutMs with BackendUnavailableError', async () => {
    const b = backend(db, { table: 'slow_subscriber' });
    const r = await settle(b.lookup(alice, opts()));
    expect(r.error).toBeInstanceOf(BackendUnavailableError);
    expect((r.error as Error).message).toMatch(/within 600 ms|max_statement_time|ER_STATEMENT_TIMEOUT/i);
  });

  it('keeps serving after a statement overran the budget: the busy connection is not reused', async () => {
    const b = backend(db, { poolSize: 1 });
    await db.sql('LOCK TABLES subscriber WRITE');
    let r: { value?: Credentials | null; error?: unknown };
    try {
      r = await settle(b.lookup(alice, opts()));
    } finally {
      await db.sql('UNLOCK TABLES');
    }
    expect(r.error).toBeInstanceOf(BackendUnavailableError);
    // With one pooled connection, a reused busy connection would queue this lookup behind the stale one.
    const after = await settle(b.lookup(alice, opts()));
    expect(after.value?.password).toBe('pw');
  });
});
