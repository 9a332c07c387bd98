/**
 * The contract every authentication backend passes, whatever it is built on. One suite per shape:
 *
 * - {@link describeCredentialStoreContract}: stores that return a password / HA1 / HA1b plus
 *   attributes (memory, MySQL). The suite hands `setup` a fixture to provision (rows to insert,
 *   users to list) and checks the backend both directly and through the real DigestAuthenticator.
 * - {@link describeDigestVerifierContract}: backends that check the digest themselves (RADIUS).
 *   `setup` says which subscribers its server knows, since those usually live in the server's own
 *   configuration.
 *
 * Call from a `*.contract.test.ts` (or `*.int.test.ts` when the backend needs a real server):
 *
 *   describeCredentialStoreContract('mysql', async (fixture) => {
 *     const db = await createDatabase(); await insertSubscribers(db, fixture);
 *     return { backend: createMysqlBackend({...}), identities: true, aliases: true,
 *              breakBackend: () => db.drop(), teardown: () => db.drop() };
 *   });
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  answerDigestChallenge,
  BackendUnavailableError,
  computeHa1,
  DigestAuthenticator,
  type Attributes,
  type AuthRequest,
  type AuthResult,
  type CredentialStore,
  type DigestAlgorithm,
  type DigestVerifier,
  type IdentityTable,
  type LookupOptions,
} from '../../src/core/auth/index.js';

const SECRET = 'contract suite secret, 32 bytes!';
const silent = pino({ level: 'silent' });

function options(): LookupOptions {
  return { signal: AbortSignal.timeout(10_000) };
}

const md5Ha1 = (username: string, realm: string, password: string): string => computeHa1({ algorithm: 'MD5', username, realm, password });

/** One subscriber of the fixture. Every secret form is given (consistent with each other); store what the backend stores. */
export interface ContractUser {
  readonly username: string;
  readonly domain: string;
  readonly password: string;
  /** MD5(username:domain:password). */
  readonly ha1: string;
  /** MD5(username@domain:domain:password). */
  readonly ha1b: string;
  readonly attributes: Attributes;
}

export interface CredentialStoreFixture {
  /** The served domain (its realm is the domain). */
  readonly domain: string;
  /** A second domain holding a user of the same name with another password. */
  readonly otherDomain: string;
  readonly users: readonly ContractUser[];
  /** uri-table rows: `auth` may also use each of `sip` (all in the auth id's own domain). */
  readonly identities: ReadonlyArray<{ readonly auth: { readonly user: string; readonly domain: string }; readonly sip: ReadonlyArray<{ readonly user: string; readonly domain: string }> }>;
  /** aliases-table rows. */
  readonly aliases: ReadonlyArray<{ readonly alias: { readonly user: string; readonly domain: string }; readonly target: { readonly user: string; readonly domain: string } }>;
}

function contractUser(username: string, domain: string, password: string, attributes: Attributes = {}): ContractUser {
  return { username, domain, password, ha1: md5Ha1(username, domain, password), ha1b: md5Ha1(`${username}@${domain}`, domain, password), attributes };
}

/** The data every credential store is tested with. */
export const CREDENTIAL_STORE_FIXTURE: CredentialStoreFixture = {
  domain: 'example.com',
  otherDomain: 'example.org',
  users: [
    contractUser('alice', 'example.com', 'alice-secret', { rpid: 'sip:+15550001@example.com' }),
    contractUser('bob', 'example.com', 'bob-secret'),
    contractUser('alice', 'example.org', 'alice-other-secret', { rpid: 'sip:+15550002@example.org' }),
  ],
  identities: [{ auth: { user: 'alice', domain: 'example.com' }, sip: [{ user: 'sales', domain: 'example.com' }] }],
  aliases: [{ alias: { user: 'support', domain: 'example.com' }, target: { user: 'alice', domain: 'example.com' } }],
};

export interface CredentialStoreSubject {
  readonly backend: CredentialStore & IdentityTable;
  /** True when the fixture's uri-table rows were provisioned (the backend has ownsIdentity). */
  readonly identities?: boolean;
  /** True when the fixture's aliases were provisioned (the backend has resolveAlias). */
  readonly aliases?: boolean;
  /**
   * Makes the backend unable to answer (stop or firewall the server, drop the database...). When
   * given, the suite checks that lookups then fail with BackendUnavailableError and that the
   * framework answers 503, not a challenge.
   */
  readonly breakBackend?: () => Promise<void>;
  /** Releases what setup created (databases, servers, temp dirs). The suite closes the backend itself. */
  readonly teardown?: () => Promise<void>;
}

function request(identity: { user: string; domain: string }, credentials: string[] = []): AuthRequest {
  return {
    method: 'REGISTER',
    requestUri: `sip:${identity.domain}`,
    body: Buffer.alloc(0),
    credentials,
    identity,
    source: { address: '127.0.0.1', port: 5060, transport: 'udp' },
  };
}

/** REGISTER challenged then answered as a phone would, through the real framework. */
async function register(
  auth: DigestAuthenticator,
  identity: { user: string; domain: string },
  username: string,
  password: string,
  extra: { algorithm?: DigestAlgorithm; qop?: 'auth' | 'none' } = {},
): Promise<AuthResult> {
  const first = await auth.authenticate(request(identity));
  expect(first.outcome).toBe('no_credentials');
  const challenge = first.reply!.headers.map(([, v]) => v).find((v) => extra.algorithm === undefined || v.includes(`algorithm=${extra.algorithm},`) || v.endsWith(`algorithm=${extra.algorithm}`));
  expect(challenge, `a challenge for ${extra.algorithm ?? 'the first algorithm'}`).toBeDefined();
  const credential = answerDigestChallenge({
    challenge: challenge!,
    username,
    password,
    method: 'REGISTER',
    uri: `sip:${identity.domain}`,
    ...(extra.qop !== undefined ? { qop: extra.qop } : {}),
  });
  return auth.authenticate(request(identity, [credential]));
}

function lower(value: string | undefined): string | undefined {
  return value?.toLowerCase();
}

/**
 * Registers the credential-store contract for `name`. `setup` receives the fixture to provision and
 * is called twice: once for the read-only checks, once for the destructive ones (failure, close).
 */
export function describeCredentialStoreContract(name: string, setup: (fixture: CredentialStoreFixture) => Promise<CredentialStoreSubject>): void {
  const fixture = CREDENTIAL_STORE_FIXTURE;
  const [alice, bob, aliceOther] = fixture.users as [ContractUser, ContractUser, ContractUser];

  describe(`credential store contract: ${name}`, () => {
    let subject: CredentialStoreSubject;
    let auth: DigestAuthenticator;

    beforeAll(async () => {
      subject = await setup(fixture);
      auth = new DigestAuthenticator({
        secret: SECRET,
        logger: silent,
        domains: [
          { domain: fixture.domain, backend: subject.backend },
          { domain: fixture.otherDomain, backend: subject.backend },
        ],
      });
    });

    afterAll(async () => {
      await subject?.backend.close();
      await subject?.teardown?.();
    });

    it('is a credential store with a name', () => {
      expect(subject.backend.kind).toBe('store');
      expect(typeof subject.backend.name).toBe('string');
      expect(subject.backend.name.length).toBeGreaterThan(0);
    });

    it('returns at least one secret form for a subscriber, each consistent with the password', async () => {
      for (const user of fixture.users) {
        const found = await subject.backend.lookup({ username: user.username, domain: user.domain }, options());
        expect(found, `${user.username}@${user.domain}`).not.toBeNull();
        const c = found!;
        expect(c.password !== undefined || c.ha1 !== undefined || c.ha1b !== undefined).toBe(true);
        if (c.password !== undefined) expect(c.password).toBe(user.password);
        if (c.ha1 !== undefined) expect(lower(c.ha1)).toBe(user.ha1);
        if (c.ha1b !== undefined) expect(lower(c.ha1b)).toBe(user.ha1b);
      }
    });

    it('returns the attributes loaded with the credentials', async () => {
      const found = await subject.backend.lookup({ username: alice.username, domain: alice.domain }, options());
      expect(found?.attributes.rpid).toBe(alice.attributes.rpid);
      const other = await subject.backend.lookup({ username: aliceOther.username, domain: aliceOther.domain }, options());
      expect(other?.attributes.rpid).toBe(aliceOther.attributes.rpid);
    });

    it('returns null, not an error, for a user it does not know', async () => {
      expect(await subject.backend.lookup({ username: 'mallory', domain: fixture.domain }, options())).toBeNull();
      expect(await subject.backend.lookup({ username: bob.username, domain: fixture.otherDomain }, options())).toBeNull();
      expect(await subject.backend.lookup({ username: 'alice', domain: 'unknown.invalid' }, options())).toBeNull();
    });

    it('matches domains case-insensitively and usernames exactly', async () => {
      expect(await subject.backend.lookup({ username: 'alice', domain: 'EXAMPLE.com' }, options())).not.toBeNull();
      expect(await subject.backend.lookup({ username: 'Alice', domain: 'example.com' }, options())).toBeNull();
      expect(await subject.backend.lookup({ username: 'alice ', domain: 'example.com' }, options())).toBeNull();
    });

    it('keeps users of the same name in different domains apart', async () => {
      const a = await subject.backend.lookup({ username: 'alice', domain: fixture.domain }, options());
      const b = await subject.backend.lookup({ username: 'alice', domain: fixture.otherDomain }, options());
      const secret = (c: typeof a) => c?.password ?? lower(c?.ha1) ?? lower(c?.ha1b);
      expect(secret(a)).not.toBe(secret(b));
    });

    it('answers many concurrent lookups correctly', async () => {
      const queries = Array.from({ length: 60 }, (_, i) => fixture.users[i % fixture.users.length]!);
      const answers = await Promise.all(queries.map((u) => subject.backend.lookup({ username: u.username, domain: u.domain }, options())));
      answers.forEach((c, i) => {
        const u = queries[i]!;
        expect(c?.password ?? lower(c?.ha1) ?? lower(c?.ha1b)).toBe(c?.password !== undefined ? u.password : c?.ha1 !== undefined ? u.ha1 : u.ha1b);
      });
    });

    describe('through the digest authentication framework', () => {
      it('authenticates a subscriber with the right password, with its attributes', async () => {
        const result = await register(auth, { user: 'alice', domain: fixture.domain }, 'alice', alice.password);
        expect(result).toMatchObject({ outcome: 'ok', user: 'alice', realm: fixture.domain, backend: subject.backend.name });
        expect(result.attributes?.rpid).toBe(alice.attributes.rpid);
      });

      it('answers a wrong password with bad_password and an unknown user with unknown_user, both challenged', async () => {
        const wrong = await register(auth, { user: 'alice', domain: fixture.domain }, 'alice', 'not-the-password');
        expect(wrong).toMatchObject({ outcome: 'bad_password', reply: { status: 401 } });
        const unknown = await register(auth, { user: 'mallory', domain: fixture.domain }, 'mallory', 'whatever');
        expect(unknown).toMatchObject({ outcome: 'unknown_user', reply: { status: 401 } });
      });

      it('uses each domain\'s own secret for a username present in two domains', async () => {
        expect((await register(auth, { user: 'alice', domain: fixture.otherDomain }, 'alice', aliceOther.password)).outcome).toBe('ok');
        expect((await register(auth, { user: 'alice', domain: fixture.otherDomain }, 'alice', alice.password)).outcome).toBe('bad_password');
      });

      it('authenticates an RFC 2069 phone (no qop)', async () => {
        expect((await register(auth, { user: 'bob', domain: fixture.domain }, 'bob', bob.password, { qop: 'none' })).outcome).toBe('ok');
      });

      it('authenticates a phone that sends user@domain as the username when the store returns a password or an HA1b', async () => {
        const stored = await subject.backend.lookup({ username: 'alice', domain: fixture.domain }, options());
        const result = await register(auth, { user: 'alice', domain: fixture.domain }, `alice@${fixture.domain}`, alice.password);
        const usable = stored?.password !== undefined || stored?.ha1b !== undefined;
        expect(result.outcome).toBe(usable ? 'ok' : 'bad_password');
      });
    });

    it('answers the uri table: own AOR and listed AORs allowed, others refused, no rows means null', async () => {
      const table = subject.backend.ownsIdentity?.bind(subject.backend);
      if (!subject.identities) {
        // Without a uri table the framework's default rule applies: the backend must not decide.
        if (table !== undefined) expect(await table({ user: 'alice', domain: fixture.domain }, { user: 'sales', domain: fixture.domain }, options())).toBeNull();
        else expect(table).toBeUndefined();
        return;
      }
      expect(table).toBeDefined();
      const authId = fixture.identities[0]!.auth;
      const listed = fixture.identities[0]!.sip[0]!;
      expect(await table!(authId, listed, options())).toBe(true);
      expect(await table!(authId, { user: authId.user, domain: authId.domain.toUpperCase() }, options())).toBe(true);
      expect(await table!(authId, { user: 'bob', domain: fixture.domain }, options())).toBe(false);
      expect(await table!({ user: 'bob', domain: fixture.domain }, { user: 'bob', domain: fixture.domain }, options())).toBeNull();
      // Through the framework: alice may register "sales", not bob.
      expect((await register(auth, listed, 'alice', alice.password)).outcome).toBe('ok');
      expect((await register(auth, { user: 'bob', domain: fixture.domain }, 'alice', alice.password)).outcome).toBe('identity_mismatch');
    });

    it('resolves aliases to their canonical AOR, null for a name that is no alias', async () => {
      const resolve = subject.backend.resolveAlias?.bind(subject.backend);
      if (!subject.aliases) {
        if (resolve !== undefined) expect(await resolve(fixture.aliases[0]!.alias, options())).toBeNull();
        else expect(resolve).toBeUndefined();
        return;
      }
      const row = fixture.aliases[0]!;
      const target = await resolve!(row.alias, options());
      expect({ user: target?.user, domain: target?.domain.toLowerCase() }).toEqual(row.target);
      expect(await resolve!({ user: 'nobody', domain: fixture.domain }, options())).toBeNull();
    });
  });

  describe(`credential store contract: ${name} when it fails`, () => {
    let subject: CredentialStoreSubject;

    beforeAll(async () => {
      subject = await setup(fixture);
    });

    afterAll(async () => {
      await subject?.backend.close();
      await subject?.teardown?.();
    });

    it('reports an unreachable store as BackendUnavailableError, and the framework answers 503 without a challenge', async () => {
      if (subject.breakBackend === undefined) {
        // A backend with nothing to break (in-process data) is still checked after close, below.
        expect(subject.backend.kind).toBe('store');
        return;
      }
      const auth = new DigestAuthenticator({ secret: SECRET, logger: silent, domains: [{ domain: fixture.domain, backend: subject.backend }] });
      const challenge = (await auth.authenticate(request({ user: 'alice', domain: fixture.domain }))).reply!.headers[0]![1];
      await subject.breakBackend();
      const err = await subject.backend.lookup({ username: 'alice', domain: fixture.domain }, options()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendUnavailableError);
      expect(err).toMatchObject({ code: 'BACKEND_UNAVAILABLE', retriable: true, backend: subject.backend.name });
      const credential = answerDigestChallenge({ challenge, username: 'alice', password: alice.password, method: 'REGISTER', uri: `sip:${fixture.domain}` });
      const result = await auth.authenticate(request({ user: 'alice', domain: fixture.domain }, [credential]));
      expect(result.outcome).toBe('backend_unavailable');
      expect(result.reply!.status).toBe(503);
      expect(result.reply!.headers.map(([n]) => n)).toEqual(['Retry-After']);
    });

    it('fails lookups with BackendUnavailableError once closed (never a hang or a "no such user"), and closes twice safely', async () => {
      await subject.backend.close();
      await subject.backend.close();
      const err = await subject.backend.lookup({ username: 'alice', domain: fixture.domain }, options()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendUnavailableError);
    });
  });
}

export interface VerifierUser {
  readonly username: string;
  readonly password: string;
  /** Attributes the verifier is expected to return on accept (a subset check). */
  readonly attributes?: Attributes;
}

export interface DigestVerifierSubject {
  readonly backend: DigestVerifier;
  /** The realm (served domain) the verifier's users belong to. */
  readonly realm: string;
  /** Subscribers the verifier's server knows with clear-text passwords (at least one). */
  readonly users: readonly VerifierUser[];
  /** Makes the server unreachable; when given, the suite checks the failure is reported as unavailable. */
  readonly breakBackend?: () => Promise<void>;
  readonly teardown?: () => Promise<void>;
}

/** Registers the digest-verifier contract for `name`. `setup` is called once per describe block. */
export function describeDigestVerifierContract(name: string, setup: () => Promise<DigestVerifierSubject>): void {
  describe(`digest verifier contract: ${name}`, () => {
    let subject: DigestVerifierSubject;
    let user: VerifierUser;

    beforeAll(async () => {
      subject = await setup();
      expect(subject.users.length).toBeGreaterThan(0);
      user = subject.users[0]!;
    });

    afterAll(async () => {
      await subject?.backend.close();
      await subject?.teardown?.();
    });

    it('is a verifier with a name, checking at least MD5 (the default algorithm)', () => {
      expect(subject.backend.kind).toBe('verifier');
      expect(subject.backend.name.length).toBeGreaterThan(0);
      expect(subject.backend.algorithms).toContain('MD5');
    });

    it('accepts the right password and rejects a wrong one, for every algorithm it claims, through the framework', async () => {
      for (const algorithm of subject.backend.algorithms) {
        const auth = new DigestAuthenticator({ secret: SECRET, logger: silent, domains: [{ domain: subject.realm, backend: subject.backend, algorithms: [algorithm] }] });
        const identity = { user: user.username, domain: subject.realm };
        const ok = await register(auth, identity, user.username, user.password);
        expect(ok, algorithm).toMatchObject({ outcome: 'ok', algorithm, backend: subject.backend.name });
        if (user.attributes !== undefined) expect(ok.attributes).toMatchObject(user.attributes);
        const wrong = await register(auth, identity, user.username, `${user.password}-wrong`);
        expect(wrong, algorithm).toMatchObject({ outcome: 'bad_password', reply: { status: 401 } });
      }
    });

    it('accepts an RFC 2069 answer (no qop)', async () => {
      const auth = new DigestAuthenticator({ secret: SECRET, logger: silent, domains: [{ domain: subject.realm, backend: subject.backend }] });
      const result = await register(auth, { user: user.username, domain: subject.realm }, user.username, user.password, { qop: 'none' });
      expect(result.outcome).toBe('ok');
    });

    it('rejects an unknown user as a value, not an error', async () => {
      const auth = new DigestAuthenticator({ secret: SECRET, logger: silent, domains: [{ domain: subject.realm, backend: subject.backend }] });
      const result = await register(auth, { user: 'mallory-unknown', domain: subject.realm }, 'mallory-unknown', 'whatever');
      expect(result).toMatchObject({ outcome: 'bad_password', reply: { status: 401 } });
    });

    it('answers many concurrent verifications correctly', async () => {
      const auth = new DigestAuthenticator({ secret: SECRET, logger: silent, domains: [{ domain: subject.realm, backend: subject.backend }] });
      const attempts = Array.from({ length: 20 }, (_, i) => i % 2 === 0);
      const results = await Promise.all(
        attempts.map((right) => register(auth, { user: user.username, domain: subject.realm }, user.username, right ? user.password : 'wrong-password')),
      );
      expect(results.map((r) => r.outcome)).toEqual(attempts.map((right) => (right ? 'ok' : 'bad_password')));
    });
  });

  describe(`digest verifier contract: ${name} when it fails`, () => {
    let subject: DigestVerifierSubject;

    beforeAll(async () => {
      subject = await setup();
    });

    afterAll(async () => {
      await subject?.backend.close();
      await subject?.teardown?.();
    });

    it('reports an unreachable server as BackendUnavailableError, and the framework answers 503 without a challenge', async () => {
      if (subject.breakBackend === undefined) {
        expect(subject.backend.kind).toBe('verifier');
        return;
      }
      const user = subject.users[0]!;
      const auth = new DigestAuthenticator({ secret: SECRET, logger: silent, lookupTimeoutMs: 5_000, domains: [{ domain: subject.realm, backend: subject.backend }] });
      const identity = { user: user.username, domain: subject.realm };
      const challenge = (await auth.authenticate(request(identity))).reply!.headers[0]![1];
      await subject.breakBackend();
      const credential = answerDigestChallenge({ challenge, username: user.username, password: user.password, method: 'REGISTER', uri: `sip:${subject.realm}` });
      const result = await auth.authenticate(request(identity, [credential]));
      expect(result.outcome).toBe('backend_unavailable');
      expect(result.reply!.status).toBe(503);
    });
  });
}
