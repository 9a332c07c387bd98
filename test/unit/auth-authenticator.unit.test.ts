/**
 * The digest authentication framework, outcome by outcome: given a configured authenticator and a
 * subscriber, when a request arrives with some credentials, then the outcome and the reply.
 * The clock is a fake (a seam); the backends are the real in-memory store or small test doubles of
 * the backend contract.
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryBackend, type MemoryUser } from '../../src/backends/auth/memory.js';
import {
  answerDigestChallenge,
  AuthConfigError,
  BackendUnavailableError,
  computeHa1,
  DigestAuthenticator,
  parseDigestChallenge,
  type AuthBackend,
  type AuthRequest,
  type AuthResult,
  type CredentialStore,
  type DigestAlgorithm,
  type DigestAuthenticatorOptions,
  type DigestVerifier,
  type DigestVerifyRequest,
  type LookupOptions,
} from '../../src/core/auth/index.js';

const SECRET = 'test secret: thirty-two bytes ok';
const T0 = 1_700_000_000_000;
const silent = pino({ level: 'silent' });

const ALICE: MemoryUser = { username: 'alice', domain: 'example.com', password: 'alice-secret', attributes: { rpid: 'sip:+15550001@example.com', class: 3 } };
const BOB: MemoryUser = { username: 'bob', domain: 'example.com', ha1: computeHa1({ algorithm: 'MD5', username: 'bob', realm: 'example.com', password: 'bob-secret' }) };
const CAROL: MemoryUser = {
  username: 'carol',
  domain: 'example.com',
  ha1b: computeHa1({ algorithm: 'MD5', username: 'carol@example.com', realm: 'example.com', password: 'carol-secret' }),
};
const DAVE: MemoryUser = { username: 'dave', domain: 'example.com', password: 'dave-secret', identities: ['sales@example.com', 'dave@partner.net'] };

interface World {
  auth: DigestAuthenticator;
  clock: { now: number };
  backend: AuthBackend;
}

function given(options: Partial<DigestAuthenticatorOptions> & { users?: MemoryUser[]; algorithms?: DigestAlgorithm[]; backend?: AuthBackend } = {}): World {
  const clock = { now: T0 };
  const backend = options.backend ?? new MemoryBackend({ name: 'mem', users: options.users ?? [ALICE, BOB, CAROL, DAVE] });
  const auth = new DigestAuthenticator({
    secret: SECRET,
    clock: () => clock.now,
    logger: silent,
    domains: options.domains ?? [{ domain: 'example.com', backend, ...(options.algorithms ? { algorithms: options.algorithms } : {}) }],
    ...options,
  });
  return { auth, clock, backend };
}

function request(over: Partial<AuthRequest> = {}): AuthRequest {
  return {
    method: 'REGISTER',
    requestUri: 'sip:example.com',
    body: Buffer.alloc(0),
    credentials: [],
    identity: { user: 'alice', domain: 'example.com' },
    source: { address: '127.0.0.1', port: 5062, transport: 'udp' },
    callId: 'call-1@127.0.0.1',
    ...over,
  };
}

/** The first challenge of a no-credentials answer for `req`. */
async function challengeFor(auth: DigestAuthenticator, req: AuthRequest, pick = 0): Promise<string> {
  const first = await auth.authenticate({ ...req, credentials: [] });
  expect(first.outcome).toBe('no_credentials');
  return first.reply!.headers[pick]![1];
}

interface Answer {
  username?: string;
  password?: string;
  nc?: number;
  qop?: 'auth' | 'auth-int' | 'none';
  cnonce?: string;
  uri?: string;
  algorithm?: DigestAlgorithm;
  body?: Buffer;
}

function answer(challenge: string, req: AuthRequest, a: Answer = {}): string {
  return answerDigestChallenge({
    challenge,
    username: a.username ?? req.identity.user,
    password: a.password ?? `${req.identity.user}-secret`,
    method: req.method,
    uri: a.uri ?? req.requestUri,
    ...(a.nc !== undefined ? { nc: a.nc } : {}),
    ...(a.qop !== undefined ? { qop: a.qop } : {}),
    ...(a.cnonce !== undefined ? { cnonce: a.cnonce } : {}),
    ...(a.algorithm !== undefined ? { algorithm: a.algorithm } : {}),
    ...(a.body !== undefined ? { body: a.body } : {}),
  });
}

/** Challenge, answer as a phone would, and return the second outcome. */
async function exchange(world: World, req: AuthRequest = request(), a: Answer = {}): Promise<{ result: AuthResult; credential: string; challenge: string }> {
  const challenge = await challengeFor(world.auth, req);
  const credential = answer(challenge, req, a);
  return { result: await world.auth.authenticate({ ...req, credentials: [credential] }), credential, challenge };
}

function challengeParams(result: AuthResult, index = 0) {
  const header = result.reply?.headers[index];
  if (header === undefined) throw new Error('no challenge in the reply');
  const parsed = parseDigestChallenge(header[1]);
  if (!parsed.ok) throw new Error(parsed.reason);
  return { name: header[0], ...parsed.challenge };
}

/** A credential store that counts lookups and answers from a function. */
function storeDouble(answerFn: (options: LookupOptions) => Promise<ReturnType<CredentialStore['lookup']> extends Promise<infer T> ? T : never>): CredentialStore & { lookups: number; signals: AbortSignal[] } {
  const double = {
    kind: 'store' as const,
    name: 'double',
    lookups: 0,
    signals: [] as AbortSignal[],
    async lookup(_q: unknown, options: LookupOptions) {
      double.lookups++;
      double.signals.push(options.signal);
      return answerFn(options);
    },
    async close() {},
  };
  return double;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('no_credentials', () => {
  it('given a REGISTER without Authorization, then 401 with one MD5 WWW-Authenticate challenge for the To domain, qop=auth, not stale', async () => {
    const { auth } = given();
    const result = await auth.authenticate(request());
    expect(result).toMatchObject({ outcome: 'no_credentials', realm: 'example.com', domain: 'example.com', reply: { status: 401, reason: 'Unauthorized' } });
    expect(result.reply!.headers).toHaveLength(1);
    expect(challengeParams(result)).toMatchObject({ name: 'WWW-Authenticate', realm: 'example.com', algorithm: 'MD5', qop: ['auth'], stale: false });
  });

  it('given an INVITE without Proxy-Authorization, then 407 with Proxy-Authenticate for the From domain', async () => {
    const { auth } = given();
    const result = await auth.authenticate(request({ method: 'INVITE', requestUri: 'sip:bob@example.com' }));
    expect(result.reply).toMatchObject({ status: 407, reason: 'Proxy Authentication Required' });
    expect(challengeParams(result)).toMatchObject({ name: 'Proxy-Authenticate', realm: 'example.com' });
  });

  it('given credentials only for another realm (a downstream proxy), then a challenge for ours and nothing consumed', async () => {
    const { auth } = given();
    const foreign = 'Digest username="alice", realm="carrier.net", nonce="x", uri="sip:bob@carrier.net", response="00112233445566778899aabbccddeeff"';
    const result = await auth.authenticate(request({ method: 'INVITE', credentials: [foreign, 'Basic YWxpY2U6c2VjcmV0'] }));
    expect(result.outcome).toBe('no_credentials');
    expect(result.reply?.status).toBe(407);
    expect(result.detail).toMatch(/carrier\.net/);
  });

  it('given several algorithms for a domain, then one challenge per algorithm, strongest first, sharing one nonce (RFC 8760)', async () => {
    const { auth } = given({ algorithms: ['MD5', 'SHA-256', 'SHA-512-256'] });
    const result = await auth.authenticate(request());
    const offered = result.reply!.headers.map((_h, i) => challengeParams(result, i));
    expect(offered.map((c) => c.algorithm)).toEqual(['SHA-512-256', 'SHA-256', 'MD5']);
    expect(new Set(offered.map((c) => c.nonce)).size).toBe(1);
    expect(offered.every((c) => c.name === 'WWW-Authenticate')).toBe(true);
  });

  it('gives a fresh nonce in every challenge', async () => {
    const { auth } = given();
    const a = challengeParams(await auth.authenticate(request()));
    const b = challengeParams(await auth.authenticate(request()));
    expect(a.nonce).not.toBe(b.nonce);
  });
});

describe('ok', () => {
  it('given alice answers the challenge with her password, then ok with her attributes, and the credential consumed', async () => {
    const world = given();
    const { result } = await exchange(world);
    expect(result).toMatchObject({
      outcome: 'ok',
      user: 'alice',
      realm: 'example.com',
      domain: 'example.com',
      algorithm: 'MD5',
      backend: 'mem',
      nonce: 'valid',
      attributes: { rpid: 'sip:+15550001@example.com', class: 3 },
      consumed: [0],
    });
    expect(result.reply).toBeUndefined();
  });

  it('given credentials for our realm among others, then only ours are consumed (the next hop keeps its own)', async () => {
    const world = given();
    const req = request({ method: 'INVITE', requestUri: 'sip:bob@example.com' });
    const challenge = await challengeFor(world.auth, req);
    const foreign = 'Digest username="alice", realm="carrier.net", nonce="x", uri="sip:bob@example.com", response="00112233445566778899aabbccddeeff"';
    const result = await world.auth.authenticate({ ...req, credentials: [foreign, answer(challenge, req), 'Bearer token'] });
    expect(result.outcome).toBe('ok');
    expect(result.consumed).toEqual([1]);
  });

  it('accepts each algorithm when offered, the -sess variants included', async () => {
    for (const algorithm of ['MD5', 'MD5-sess', 'SHA-256', 'SHA-256-sess', 'SHA-512-256', 'SHA-512-256-sess'] as const) {
      const world = given({ algorithms: [algorithm] });
      const { result } = await exchange(world);
      expect(result, algorithm).toMatchObject({ outcome: 'ok', algorithm });
    }
  });

  it('given several algorithms offered and the phone answers the second, then ok with that algorithm', async () => {
    const world = given({ algorithms: ['MD5', 'SHA-256'] });
    const req = request();
    const sha = await challengeFor(world.auth, req, 0);
    expect(parseDigestChallenge(sha)).toMatchObject({ ok: true, challenge: { algorithm: 'SHA-256' } });
    const result = await world.auth.authenticate({ ...req, credentials: [answer(sha, req)] });
    expect(result).toMatchObject({ outcome: 'ok', algorithm: 'SHA-256' });
  });

  it('accepts an RFC 2069 answer without qop, and qop=auth-int over the body', async () => {
    const world = given();
    expect((await exchange(world, request(), { qop: 'none' })).result.outcome).toBe('ok');
    const invite = request({ method: 'INVITE', requestUri: 'sip:bob@example.com', body: Buffer.from('v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n') });
    expect((await exchange(world, invite, { qop: 'auth-int', body: invite.body })).result.outcome).toBe('ok');
  });

  it('accepts a stored HA1 (MD5) and, for a user@domain username, a stored HA1b', async () => {
    const world = given();
    expect((await exchange(world, request({ identity: { user: 'bob', domain: 'example.com' } }))).result).toMatchObject({ outcome: 'ok', user: 'bob' });
    const carol = request({ identity: { user: 'carol', domain: 'example.com' } });
    const { result } = await exchange(world, carol, { username: 'carol@example.com', password: 'carol-secret' });
    expect(result).toMatchObject({ outcome: 'ok', user: 'carol@example.com' });
  });

  it('matches the served domain case-insensitively (and ignores a trailing dot)', async () => {
    const world = given();
    expect(world.auth.servesDomain('EXAMPLE.com')).toBe(true);
    expect(world.auth.servesDomain('example.com.')).toBe(true);
    const { result } = await exchange(world, request({ identity: { user: 'alice', domain: 'Example.COM' } }));
    expect(result).toMatchObject({ outcome: 'ok', realm: 'example.com' });
  });

  it('accepts a digest uri other than the Request-URI by default (SIPp and some phones put the target there)', async () => {
    const world = given();
    const { result } = await exchange(world, request(), { uri: 'sip:127.0.0.1:5060' });
    expect(result.outcome).toBe('ok');
  });

  it('given nonce counts 1, 2, then 3 before a late 2... each new count is accepted once', async () => {
    const world = given();
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    for (const nc of [1, 3, 2]) {
      const result = await world.auth.authenticate({ ...req, credentials: [answer(challenge, req, { nc })] });
      expect(result.outcome, `nc=${nc}`).toBe('ok');
    }
  });

  it('given a nonce within lifetime plus drift, then still ok', async () => {
    const world = given({ nonceLifetimeMs: 30_000, clockDriftMs: 1_000 });
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    world.clock.now += 31_000;
    expect((await world.auth.authenticate({ ...req, credentials: [answer(challenge, req)] })).outcome).toBe('ok');
  });
});

describe('unknown_user and bad_password', () => {
  it('given an unknown user, then a fresh 401 challenge without stale', async () => {
    const world = given();
    const { result, challenge } = await exchange(world, request({ identity: { user: 'mallory', domain: 'example.com' } }));
    expect(result).toMatchObject({ outcome: 'unknown_user', user: 'mallory', reply: { status: 401 } });
    const fresh = challengeParams(result);
    expect(fresh.stale).toBe(false);
    expect(fresh.nonce).not.toBe(parseDigestChallenge(challenge).ok && (parseDigestChallenge(challenge) as { challenge: { nonce: string } }).challenge.nonce);
  });

  it('given a wrong password, then a fresh challenge without stale', async () => {
    const world = given();
    const { result } = await exchange(world, request(), { password: 'guess' });
    expect(result).toMatchObject({ outcome: 'bad_password', user: 'alice', reply: { status: 401 } });
    expect(challengeParams(result).stale).toBe(false);
  });

  it('answers an unknown user exactly like a wrong password, so status codes do not enumerate users', async () => {
    const world = given();
    const unknown = (await exchange(world, request({ identity: { user: 'mallory', domain: 'example.com' } }))).result;
    const wrong = (await exchange(world, request(), { password: 'guess' })).result;
    const shape = (r: AuthResult) => ({
      status: r.reply?.status,
      reason: r.reply?.reason,
      headers: r.reply?.headers.map(([name, value]) => [name, value.replace(/nonce="[^"]*"/, 'nonce=*')]),
    });
    expect(shape(unknown)).toEqual(shape(wrong));
  });

  it('given a stored MD5 HA1 only and a SHA-256 answer, then bad_password saying the secret cannot be used', async () => {
    const world = given({ algorithms: ['SHA-256'] });
    const { result } = await exchange(world, request({ identity: { user: 'bob', domain: 'example.com' } }));
    expect(result).toMatchObject({ outcome: 'bad_password', detail: 'no stored secret usable with SHA-256' });
  });

  it('given a body changed after signing with auth-int, then bad_password', async () => {
    const world = given();
    const req = request({ method: 'INVITE', requestUri: 'sip:bob@example.com', body: Buffer.from('v=0\r\n') });
    const challenge = await challengeFor(world.auth, req);
    const credential = answer(challenge, req, { qop: 'auth-int', body: req.body });
    const result = await world.auth.authenticate({ ...req, body: Buffer.from('v=1\r\n'), credentials: [credential] });
    expect(result.outcome).toBe('bad_password');
  });

  it('given alice of domain A answering in domain B with her A password, then bad_password (per-domain backends)', async () => {
    const a = new MemoryBackend({ name: 'mem-a', users: [{ username: 'alice', domain: 'a.example', password: 'password-a' }] });
    const b = new MemoryBackend({ name: 'mem-b', users: [{ username: 'alice', domain: 'b.example', password: 'password-b' }] });
    const world = given({
      domains: [
        { domain: 'a.example', backend: a },
        { domain: 'b.example', backend: b },
      ],
    });
    const inA = request({ identity: { user: 'alice', domain: 'a.example' } });
    const inB = request({ identity: { user: 'alice', domain: 'b.example' } });
    expect((await exchange(world, inA, { password: 'password-a' })).result).toMatchObject({ outcome: 'ok', backend: 'mem-a', realm: 'a.example' });
    expect((await exchange(world, inB, { password: 'password-b' })).result).toMatchObject({ outcome: 'ok', backend: 'mem-b', realm: 'b.example' });
    expect((await exchange(world, inB, { password: 'password-a' })).result).toMatchObject({ outcome: 'bad_password', backend: 'mem-b' });
  });
});

describe('stale_nonce', () => {
  it('given a correct answer to an expired nonce, then a fresh challenge with stale=true (the phone retries silently)', async () => {
    const world = given({ nonceLifetimeMs: 30_000, clockDriftMs: 1_000 });
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    world.clock.now += 31_001;
    const result = await world.auth.authenticate({ ...req, credentials: [answer(challenge, req)] });
    expect(result).toMatchObject({ outcome: 'stale_nonce', nonce: 'expired', user: 'alice', reply: { status: 401 } });
    expect(challengeParams(result).stale).toBe(true);
    // The fresh nonce works.
    const retry = await world.auth.authenticate({ ...req, credentials: [answer(result.reply!.headers[0]![1], req)] });
    expect(retry.outcome).toBe('ok');
  });

  it('given a wrong password on an expired nonce, then bad_password without stale (stale never hides a wrong password)', async () => {
    const world = given();
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    world.clock.now += 120_000;
    const result = await world.auth.authenticate({ ...req, credentials: [answer(challenge, req, { password: 'guess' })] });
    expect(result).toMatchObject({ outcome: 'bad_password', nonce: 'expired' });
    expect(challengeParams(result).stale).toBe(false);
  });

  it('given a forged nonce, then a challenge without stale, and the backend is not consulted', async () => {
    const double = storeDouble(async () => ({ password: 'alice-secret', attributes: {} }));
    const world = given({ backend: double });
    const req = request();
    const forger = new DigestAuthenticator({ secret: 'someone else entirely, 32 bytes!', logger: silent, domains: [{ domain: 'example.com', backend: double }] });
    const forged = challengeParams(await forger.authenticate(req));
    const credential = answerDigestChallenge({ challenge: `Digest realm="example.com", nonce="${forged.nonce}", qop="auth"`, username: 'alice', password: 'alice-secret', method: 'REGISTER', uri: req.requestUri });
    const result = await world.auth.authenticate({ ...req, credentials: [credential] });
    expect(result).toMatchObject({ outcome: 'stale_nonce', nonce: 'forged', reply: { status: 401 } });
    expect(challengeParams(result).stale).toBe(false);
    expect(double.lookups).toBe(0);
  });

  it('given a nonce issued for another served domain, then it is not accepted there', async () => {
    const backend = new MemoryBackend({ name: 'mem', users: [{ username: 'alice', domain: 'a.example', password: 'p' }, { username: 'alice', domain: 'b.example', password: 'p' }] });
    const world = given({ domains: [{ domain: 'a.example', backend }, { domain: 'b.example', backend }] });
    const nonceA = challengeParams(await world.auth.authenticate(request({ identity: { user: 'alice', domain: 'a.example' } }))).nonce;
    const reqB = request({ identity: { user: 'alice', domain: 'b.example' } });
    const credential = answerDigestChallenge({ challenge: `Digest realm="b.example", nonce="${nonceA}", qop="auth"`, username: 'alice', password: 'p', method: 'REGISTER', uri: 'sip:b.example' });
    expect((await world.auth.authenticate({ ...reqB, credentials: [credential] })).nonce).toBe('forged');
  });

  it('accepts a nonce issued by another instance configured with the same secret (a cluster)', async () => {
    const backend = new MemoryBackend({ name: 'mem', users: [ALICE] });
    const a = given({ backend });
    const b = given({ backend });
    const req = request();
    const challenge = await challengeFor(a.auth, req);
    expect((await b.auth.authenticate({ ...req, credentials: [answer(challenge, req)] })).outcome).toBe('ok');
  });

  it('given more live nonces than the replay memory holds, then a forgotten nonce gets stale=true instead of being replayable', async () => {
    const world = given({ maxTrackedNonces: 2 });
    const req = request();
    const first = await challengeFor(world.auth, req);
    expect((await world.auth.authenticate({ ...req, credentials: [answer(first, req)] })).outcome).toBe('ok');
    world.clock.now += 10;
    for (let i = 0; i < 2; i++) {
      const c = await challengeFor(world.auth, req);
      expect((await world.auth.authenticate({ ...req, credentials: [answer(c, req)] })).outcome).toBe('ok');
    }
    const result = await world.auth.authenticate({ ...req, credentials: [answer(first, req, { nc: 2 })] });
    expect(result).toMatchObject({ outcome: 'stale_nonce', nonce: 'forgotten' });
    expect(challengeParams(result).stale).toBe(true);
  });
});

describe('nonce_reused', () => {
  it('given the same nonce count presented twice (a replay), then nonce_reused and a challenge without stale', async () => {
    const world = given();
    const req = request();
    const { credential } = await exchange(world, req);
    const replay = await world.auth.authenticate({ ...req, credentials: [credential] });
    expect(replay).toMatchObject({ outcome: 'nonce_reused', user: 'alice', reply: { status: 401 } });
    expect(challengeParams(replay).stale).toBe(false);
  });

  it('given a count that fell below the replay window, then nonce_reused', async () => {
    const world = given({ replayWindow: 4 });
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    expect((await world.auth.authenticate({ ...req, credentials: [answer(challenge, req, { nc: 10 })] })).outcome).toBe('ok');
    expect((await world.auth.authenticate({ ...req, credentials: [answer(challenge, req, { nc: 7 })] })).outcome).toBe('ok');
    expect((await world.auth.authenticate({ ...req, credentials: [answer(challenge, req, { nc: 6 })] })).outcome).toBe('nonce_reused');
  });

  it('given two concurrent requests with the same nonce and count, then exactly one is accepted', async () => {
    const world = given();
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    const credential = answer(challenge, req);
    const results = await Promise.all([1, 2, 3].map(() => world.auth.authenticate({ ...req, credentials: [credential] })));
    expect(results.map((r) => r.outcome).sort()).toEqual(['nonce_reused', 'nonce_reused', 'ok']);
  });

  it('given a wrong response with a used count, then bad_password: a guess never burns an honest count', async () => {
    const world = given();
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    expect((await world.auth.authenticate({ ...req, credentials: [answer(challenge, req, { password: 'guess', nc: 1 })] })).outcome).toBe('bad_password');
    expect((await world.auth.authenticate({ ...req, credentials: [answer(challenge, req, { nc: 1 })] })).outcome).toBe('ok');
  });
});

describe('identity_mismatch (check_to / check_from)', () => {
  it('given alice registering bob\'s AOR with her own credentials, then 403 naming To', async () => {
    const world = given();
    const req = request({ identity: { user: 'bob', domain: 'example.com' } });
    const { result } = await exchange(world, req, { username: 'alice', password: 'alice-secret' });
    expect(result).toMatchObject({ outcome: 'identity_mismatch', user: 'alice', reply: { status: 403, headers: [] } });
    expect(result.reply!.reason).toMatch(/^Forbidden .*To/);
  });

  it('given alice calling with bob in From, then 403 naming From', async () => {
    const world = given();
    const req = request({ method: 'INVITE', requestUri: 'sip:carol@example.com', identity: { user: 'bob', domain: 'example.com' } });
    const { result } = await exchange(world, req, { username: 'alice', password: 'alice-secret' });
    expect(result).toMatchObject({ outcome: 'identity_mismatch', reply: { status: 403 } });
    expect(result.reply!.reason).toMatch(/From/);
  });

  it('given a uri table entry, then the auth id may use the listed AORs and its own, and nothing else', async () => {
    const world = given();
    const as = (user: string, domain = 'example.com') => request({ identity: { user, domain } });
    expect((await exchange(world, as('sales'), { username: 'dave', password: 'dave-secret' })).result.outcome).toBe('ok');
    expect((await exchange(world, as('dave'), { username: 'dave', password: 'dave-secret' })).result.outcome).toBe('ok');
    expect((await exchange(world, as('alice'), { username: 'dave', password: 'dave-secret' })).result.outcome).toBe('identity_mismatch');
  });

  it('given a uri table granting a foreign AOR, then credentials for our realm authenticate it although its domain is not served', async () => {
    const world = given();
    const req = request({ method: 'INVITE', requestUri: 'sip:bob@example.com', identity: { user: 'dave', domain: 'partner.net' } });
    // No challenge for a domain we do not serve...
    expect((await world.auth.authenticate(req)).outcome).toBe('realm_mismatch');
    // ...but a phone that answered our challenge earlier presents credentials for our realm.
    const challenge = await challengeFor(world.auth, request({ method: 'INVITE' }));
    const credential = answer(challenge, req, { username: 'dave', password: 'dave-secret' });
    expect((await world.auth.authenticate({ ...req, credentials: [credential] })).outcome).toBe('ok');
  });

  it('asks a verifier domain\'s default rule when the backend has no uri table', async () => {
    const world = given({ backend: verifierDouble(async () => ({ result: 'accept', attributes: {} })) });
    const req = request({ identity: { user: 'bob', domain: 'example.com' } });
    expect((await exchange(world, req, { username: 'alice', password: 'x' })).result.outcome).toBe('identity_mismatch');
  });
});

describe('realm_mismatch', () => {
  it('given a request for a domain we do not serve, then 403 and never a challenge with our realm', async () => {
    const world = given();
    for (const method of ['REGISTER', 'INVITE']) {
      const result = await world.auth.authenticate(request({ method, identity: { user: 'alice', domain: 'elsewhere.net' } }));
      // The identity's own domain fills the audit fields: never our realm.
      expect(result).toMatchObject({ outcome: 'realm_mismatch', realm: 'elsewhere.net', domain: 'elsewhere.net', algorithm: 'MD5', reply: { status: 403, headers: [] } });
    }
    expect(world.auth.challenge('INVITE', 'elsewhere.net')).toBeUndefined();
    expect(world.auth.challenge('INVITE', 'example.com')?.status).toBe(407);
  });
});

describe('malformed', () => {
  const cases: Array<[string, (challenge: string, req: AuthRequest) => string, RegExp]> = [
    ['an unreadable Digest value', () => 'Digest username="alice" realm=', /credentials #0/],
    ['a duplicated parameter', (c, r) => `${answer(c, r)}, response="00112233445566778899aabbccddeeff"`, /duplicate parameter response/],
    ['qop without nc', (c, r) => answer(c, r).replace(/, nc=[0-9a-f]+/, ''), /nc/],
    ['nc of zero', (c, r) => answer(c, r).replace(/nc=[0-9a-f]+/, 'nc=00000000'), /nc/],
    ['an unknown qop', (c, r) => answer(c, r).replace('qop=auth', 'qop=auth-conf'), /qop/],
    ['a non-hex response', (c, r) => answer(c, r).replace(/response="[0-9a-f]+"/, 'response="zz"'), /hexadecimal/],
    ['an algorithm not offered', (c, r) => answer(c, r, { algorithm: 'SHA-256' }), /not offered/],
    ['userhash', (c, r) => `${answer(c, r)}, userhash=true`, /userhash/],
  ];
  it.each(cases)('given %s, then 400', async (_name, build, detail) => {
    const world = given();
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    const result = await world.auth.authenticate({ ...req, credentials: [build(challenge, req)] });
    expect(result).toMatchObject({ outcome: 'malformed', reply: { status: 400, headers: [] } });
    expect(result.detail).toMatch(detail);
  });

  it('given strict uri checking and a digest uri other than the Request-URI, then 400 (RFC 2617 s3.2.2.5); the same uri passes', async () => {
    const world = given({ strictUri: true });
    expect((await exchange(world, request(), { uri: 'sip:127.0.0.1' })).result).toMatchObject({ outcome: 'malformed', detail: /Request-URI/ });
    expect((await exchange(world, request(), { uri: 'SIP:EXAMPLE.COM' })).result.outcome).toBe('ok');
  });
});

function verifierDouble(
  decide: (request: DigestVerifyRequest, options: LookupOptions) => Promise<Awaited<ReturnType<DigestVerifier['verify']>>>,
  algorithms: DigestAlgorithm[] = ['MD5', 'MD5-sess'],
): DigestVerifier & { requests: DigestVerifyRequest[] } {
  const requests: DigestVerifyRequest[] = [];
  return {
    kind: 'verifier',
    name: 'verifier-double',
    algorithms,
    requests,
    async verify(request, options) {
      requests.push(request);
      return decide(request, options);
    },
    async close() {},
  };
}

describe('verifying backends', () => {
  it('offers only the algorithms the verifier can check', async () => {
    const world = given({ backend: verifierDouble(async () => ({ result: 'accept', attributes: {} })), algorithms: ['SHA-256', 'MD5'] });
    const result = await world.auth.authenticate(request());
    expect(result.reply!.headers.map((_h, i) => challengeParams(result, i).algorithm)).toEqual(['MD5']);
    expect(world.auth.domain('example.com')?.algorithms).toEqual(['MD5']);
  });

  it('hands the verifier the whole digest and the claimed user, and returns its attributes on accept', async () => {
    const verifier = verifierDouble(async () => ({ result: 'accept', attributes: { rpid: 'sip:+1555@example.com' } }));
    const world = given({ backend: verifier });
    const req = request({ method: 'INVITE', requestUri: 'sip:bob@example.com', body: Buffer.from('v=0\r\n') });
    const { result, credential } = await exchange(world, req, { qop: 'auth-int', body: req.body, cnonce: 'c0ffee' });
    expect(result).toMatchObject({ outcome: 'ok', attributes: { rpid: 'sip:+1555@example.com' }, backend: 'verifier-double' });
    const response = /response="([0-9a-f]+)"/.exec(credential)![1];
    expect(verifier.requests[0]).toMatchObject({
      username: 'alice',
      realm: 'example.com',
      uri: 'sip:bob@example.com',
      method: 'INVITE',
      response,
      algorithm: 'MD5',
      qop: 'auth-int',
      nc: '00000001',
      cnonce: 'c0ffee',
      sipUriUser: 'alice',
      sourceAddress: '127.0.0.1',
    });
    expect(verifier.requests[0]!.bodyDigest).toMatch(/^[0-9a-f]{32}$/);
  });

  it('given a reject, then bad_password with a fresh challenge', async () => {
    const world = given({ backend: verifierDouble(async () => ({ result: 'reject', reason: 'Access-Reject' })) });
    const { result } = await exchange(world);
    expect(result).toMatchObject({ outcome: 'bad_password', detail: /Access-Reject/, reply: { status: 401 } });
  });

  it('refuses a domain whose verifier can check none of its algorithms, naming the key', () => {
    expect(() => given({ backend: verifierDouble(async () => ({ result: 'accept', attributes: {} }), ['MD5']), algorithms: ['SHA-256'] })).toThrow(/domains\[0\]\.algorithms/);
  });
});

describe('backend_unavailable', () => {
  it('given a backend that reports it is down, then 503 with Retry-After and no challenge', async () => {
    const world = given({ backend: storeDouble(async () => Promise.reject(new BackendUnavailableError('double', 'connection refused'))) });
    const { result } = await exchange(world);
    expect(result).toMatchObject({ outcome: 'backend_unavailable', backend: 'double', reply: { status: 503, reason: 'Service Unavailable', headers: [['Retry-After', '5']] } });
    expect(result.detail).toMatch(/connection refused/);
  });

  it('can answer 500 instead, with the configured Retry-After', async () => {
    const world = given({ unavailableStatus: 500, retryAfterSeconds: 30, backend: storeDouble(async () => Promise.reject(new BackendUnavailableError('double', 'down'))) });
    expect((await exchange(world)).result.reply).toEqual({ status: 500, reason: 'Server Internal Error', headers: [['Retry-After', '30']] });
  });

  it('given a backend that throws something unexpected (a bug), then still an answer, not a crash', async () => {
    const world = given({ backend: storeDouble(() => { throw new TypeError('undefined is not a function'); }) });
    expect((await exchange(world)).result).toMatchObject({ outcome: 'backend_unavailable', detail: /unexpected error/ });
  });

  it('given a backend that never answers, then backend_unavailable once the lookup budget runs out, and the lookup is aborted', async () => {
    const double = storeDouble(() => new Promise(() => {}));
    const world = given({ backend: double, lookupTimeoutMs: 2_000 });
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    vi.useFakeTimers();
    let settled: AuthResult | undefined;
    const pending = world.auth.authenticate({ ...req, credentials: [answer(challenge, req)] }).then((r) => (settled = r));
    await vi.advanceTimersByTimeAsync(1_999);
    expect(settled).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    await pending;
    expect(settled).toMatchObject({ outcome: 'backend_unavailable', reply: { status: 503 }, detail: /timed out after 2000 ms/ });
    expect(double.signals[0]!.aborted).toBe(true);
    expect(double.signals[0]!.reason).toBeInstanceOf(BackendUnavailableError);
  });

  it('given a backend that first reads the abort signal after the budget ran out, then it finds the signal aborted, and the deadline it was given is the budget', async () => {
    let seen: LookupOptions | undefined;
    let startedAt = 0;
    const store: CredentialStore = {
      kind: 'store',
      name: 'late-reader',
      lookup(_q, options) {
        seen = options;
        startedAt = performance.now();
        return new Promise(() => {});
      },
      async close() {},
    };
    const world = given({ backend: store, lookupTimeoutMs: 50 });
    const req = request();
    const challenge = await challengeFor(world.auth, req);
    const result = await world.auth.authenticate({ ...req, credentials: [answer(challenge, req)] });
    expect(result).toMatchObject({ outcome: 'backend_unavailable', detail: /timed out after 50 ms/ });
    expect(seen!.deadline! - startedAt).toBeGreaterThan(40);
    expect(seen!.deadline! - startedAt).toBeLessThanOrEqual(50);
    expect(seen!.signal.aborted).toBe(true);
    expect(seen!.signal.reason).toBeInstanceOf(BackendUnavailableError);
  });

  it('keeps answering other domains while one backend hangs', async () => {
    const hanging = storeDouble(() => new Promise(() => {}));
    const healthy = new MemoryBackend({ name: 'mem', users: [{ username: 'alice', domain: 'b.example', password: 'alice-secret' }] });
    const world = given({ lookupTimeoutMs: 60_000, domains: [{ domain: 'a.example', backend: hanging }, { domain: 'b.example', backend: healthy }] });
    const reqA = request({ identity: { user: 'alice', domain: 'a.example' } });
    const challengeA = await challengeFor(world.auth, reqA);
    let aDone = false;
    void world.auth.authenticate({ ...reqA, credentials: [answer(challengeA, reqA)] }).then(() => (aDone = true));
    const { result } = await exchange(world, request({ identity: { user: 'alice', domain: 'b.example' } }));
    expect(result.outcome).toBe('ok');
    expect(aDone).toBe(false);
  });

  it('given the uri table lookup fails, then backend_unavailable rather than a guess', async () => {
    const memory = new MemoryBackend({ name: 'mem', users: [ALICE] });
    const backend: AuthBackend = Object.assign(Object.create(memory) as MemoryBackend, {
      ownsIdentity: async () => Promise.reject(new BackendUnavailableError('mem', 'uri table unreachable')),
    });
    const world = given({ backend });
    expect((await exchange(world)).result).toMatchObject({ outcome: 'backend_unavailable', detail: /uri table unreachable/ });
  });
});

describe('audit fields', () => {
  it('names a realm, a domain and an algorithm in every failure, as auth.failed events require', async () => {
    const world = given({ algorithms: ['SHA-256', 'MD5'] });
    const req = request();
    const challenge = await challengeFor(world.auth, req, 1);
    const failures = [
      await world.auth.authenticate(req),
      await world.auth.authenticate({ ...req, credentials: ['Digest ==='] }),
      await world.auth.authenticate({ ...req, credentials: [answer(challenge, req, { algorithm: 'MD5-sess' })] }),
      await world.auth.authenticate({ ...req, credentials: [answer(challenge, req, { password: 'guess' })] }),
      await world.auth.authenticate(request({ identity: { user: 'x', domain: 'Elsewhere.NET' } })),
      await world.auth.authenticate({ ...request({ identity: { user: 'x', domain: 'elsewhere.net' } }), credentials: ['Digest username="x", realm="elsewhere.net", nonce="n", uri="u", response="00", algorithm=SHA-256'] }),
      await world.auth.authenticate({ ...request({ identity: { user: 'x', domain: 'elsewhere.net' } }), credentials: ['Digest username="x" realm'] }),
    ];
    expect(failures.map((f) => f.outcome)).toEqual(['no_credentials', 'malformed', 'malformed', 'bad_password', 'realm_mismatch', 'realm_mismatch', 'malformed']);
    for (const f of failures) {
      expect(f.realm, f.outcome).toMatch(/^\S+$/);
      expect(f.domain, f.outcome).toMatch(/^\S+$/);
      expect(f.algorithm, f.outcome).toMatch(/^(MD5|SHA-256)$/);
    }
    expect(failures[0]).toMatchObject({ realm: 'example.com', domain: 'example.com', algorithm: 'SHA-256' });
    expect(failures[3]).toMatchObject({ algorithm: 'MD5', user: 'alice' });
    expect(failures[4]).toMatchObject({ realm: 'elsewhere.net', domain: 'elsewhere.net' });
    expect(failures[5]).toMatchObject({ user: 'x', algorithm: 'SHA-256' });
  });
});

describe('secrets stay out of results', () => {
  it('never puts a password, an HA1 or a response into any result', async () => {
    const world = given();
    const results: AuthResult[] = [];
    const collect = async (req: AuthRequest, a: Answer = {}) => {
      const { result, credential } = await exchange(world, req, a);
      results.push(result);
      return credential;
    };
    const credential = await collect(request());
    results.push(await world.auth.authenticate({ ...request(), credentials: [credential] }));
    await collect(request(), { password: 'guess-password' });
    await collect(request({ identity: { user: 'bob', domain: 'example.com' } }), { password: 'alice-secret', username: 'alice' });
    const text = JSON.stringify(results);
    for (const secret of ['alice-secret', 'guess-password', BOB.ha1!, computeHa1({ algorithm: 'MD5', username: 'alice', realm: 'example.com', password: 'alice-secret' })]) {
      expect(text).not.toContain(secret);
    }
    expect(text).not.toContain(/response="([0-9a-f]+)"/.exec(credential)![1]);
  });
});

describe('configuration', () => {
  const backend = new MemoryBackend({ name: 'mem', users: [] });
  it.each([
    ['no domains', { domains: [] }, /^domains: /],
    ['a domain served twice', { domains: [{ domain: 'example.com', backend }, { domain: 'EXAMPLE.com', backend }] }, /domains\[1\]\.domain: example\.com is served twice/],
    ['an alias colliding with a domain', { domains: [{ domain: 'a.example', backend }, { domain: 'b.example', aliases: ['a.example'], backend }] }, /served twice/],
    ['one realm for two domains', { domains: [{ domain: 'a.example', realm: 'R', backend }, { domain: 'b.example', realm: 'r', backend }] }, /domains\[1\]\.realm/],
    ['an unknown algorithm', { domains: [{ domain: 'a.example', backend, algorithms: ['SHA-1' as DigestAlgorithm] }] }, /domains\[0\]\.algorithms: unknown algorithm SHA-1/],
    ['a realm with a quote', { domains: [{ domain: 'a.example', realm: 'a"b', backend }] }, /domains\[0\]\.realm/],
    ['a short secret', { secret: 'short' }, /^secret: /],
    ['a zero lookup budget', { lookupTimeoutMs: 0 }, /^lookupTimeoutMs: /],
    ['a replay window too large', { replayWindow: 100_000 }, /^replayWindow: /],
  ] as const)('refuses %s at construction, naming the key', (_name, options, message) => {
    const build = () => new DigestAuthenticator({ secret: SECRET, logger: silent, domains: [{ domain: 'example.com', backend }], ...(options as Partial<DigestAuthenticatorOptions>) });
    expect(build).toThrow(AuthConfigError);
    expect(build).toThrow(message);
  });

  it('serves aliases of a domain with the domain\'s realm and backend', async () => {
    const world = given({ domains: [{ domain: 'example.com', aliases: ['192.0.2.10', 'SIP.example.com'], backend: new MemoryBackend({ name: 'mem', users: [ALICE] }) }] });
    expect(world.auth.servesDomain('sip.example.com')).toBe(true);
    expect(world.auth.domain('192.0.2.10')).toMatchObject({ domain: 'example.com', realm: 'example.com' });
    const { result } = await exchange(world, request({ identity: { user: 'alice', domain: '192.0.2.10' } }));
    expect(result).toMatchObject({ outcome: 'ok', realm: 'example.com' });
  });

  it('uses a configured realm in challenges and for the backend lookup', async () => {
    const backend = new MemoryBackend({ name: 'mem', users: [{ username: 'alice', domain: 'Example Realm', password: 'alice-secret' }] });
    const world = given({ domains: [{ domain: 'example.com', realm: 'Example Realm', backend }] });
    const { result, challenge } = await exchange(world);
    expect(challenge).toContain('realm="Example Realm"');
    expect(result).toMatchObject({ outcome: 'ok', realm: 'Example Realm', domain: 'example.com' });
  });

  it('resolves aliases through the domain\'s backend', async () => {
    const backend = new MemoryBackend({ name: 'mem', users: [ALICE], aliases: [{ alias: 'support@example.com', target: 'alice@example.com' }] });
    const world = given({ backend });
    expect(await world.auth.resolveAlias({ user: 'support', domain: 'EXAMPLE.COM' })).toEqual({ user: 'alice', domain: 'example.com' });
    expect(await world.auth.resolveAlias({ user: 'nobody', domain: 'example.com' })).toBeNull();
    expect(await world.auth.resolveAlias({ user: 'support', domain: 'elsewhere.net' })).toBeNull();
  });
});
