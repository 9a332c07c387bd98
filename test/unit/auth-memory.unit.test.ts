import { describe, expect, it } from 'vitest';
import { MemoryBackend, type MemoryUser } from '../../src/backends/auth/memory.js';
import { AuthConfigError, BackendUnavailableError } from '../../src/core/auth/index.js';

const signal = () => ({ signal: new AbortController().signal });
const HA1 = '0123456789abcdef0123456789ABCDEF';

describe('MemoryBackend', () => {
  it('returns the secret forms and attributes of a subscriber, matching the domain case-insensitively and the username exactly', async () => {
    const m = new MemoryBackend({ name: 'mem', users: [{ username: 'alice', domain: 'Example.com', password: 'pw', ha1: HA1, attributes: { rpid: 'sip:+1@example.com', tags: ['a', 1] } }] });
    expect(m.kind).toBe('store');
    expect(await m.lookup({ username: 'alice', domain: 'EXAMPLE.COM' }, signal())).toEqual({
      password: 'pw',
      ha1: HA1.toLowerCase(),
      attributes: { rpid: 'sip:+1@example.com', tags: ['a', 1] },
    });
    expect(await m.lookup({ username: 'Alice', domain: 'example.com' }, signal())).toBeNull();
    expect(await m.lookup({ username: 'alice', domain: 'example.org' }, signal())).toBeNull();
  });

  it('hands out credentials callers cannot change', async () => {
    const m = new MemoryBackend({ name: 'mem', users: [{ username: 'alice', domain: 'example.com', password: 'pw', attributes: { rpid: 'x' } }] });
    const c = (await m.lookup({ username: 'alice', domain: 'example.com' }, signal()))!;
    expect(() => ((c.attributes as Record<string, unknown>).rpid = 'y')).toThrow(TypeError);
    expect((await m.lookup({ username: 'alice', domain: 'example.com' }, signal()))!.attributes.rpid).toBe('x');
  });

  it('answers the uri table: null without entries, its own AOR and the listed ones true, anything else false', async () => {
    const m = new MemoryBackend({
      name: 'mem',
      users: [
        { username: 'dave', domain: 'example.com', password: 'pw', identities: ['sales@example.com', 'sip:dave@Partner.NET'] },
        { username: 'alice', domain: 'example.com', password: 'pw' },
      ],
    });
    const auth = { user: 'dave', domain: 'example.com' };
    expect(await m.ownsIdentity({ user: 'alice', domain: 'example.com' }, { user: 'alice', domain: 'example.com' }, signal())).toBeNull();
    expect(await m.ownsIdentity(auth, { user: 'dave', domain: 'EXAMPLE.com' }, signal())).toBe(true);
    expect(await m.ownsIdentity(auth, { user: 'sales', domain: 'example.com' }, signal())).toBe(true);
    expect(await m.ownsIdentity(auth, { user: 'dave', domain: 'partner.net' }, signal())).toBe(true);
    expect(await m.ownsIdentity(auth, { user: 'alice', domain: 'example.com' }, signal())).toBe(false);
    expect(await m.ownsIdentity({ user: 'nobody', domain: 'example.com' }, { user: 'nobody', domain: 'example.com' }, signal())).toBeNull();
  });

  it('resolves aliases to their canonical AOR', async () => {
    const m = new MemoryBackend({ name: 'mem', users: [], aliases: [{ alias: 'sip:support@Example.com', target: 'alice@example.com' }] });
    expect(await m.resolveAlias({ user: 'support', domain: 'example.com' }, signal())).toEqual({ user: 'alice', domain: 'example.com' });
    expect(await m.resolveAlias({ user: 'sales', domain: 'example.com' }, signal())).toBeNull();
  });

  it('replaces every user and alias on reload (SIGHUP), and keeps the old ones when the new list is invalid', async () => {
    const m = new MemoryBackend({ name: 'mem', users: [{ username: 'alice', domain: 'example.com', password: 'old' }] });
    m.reload([{ username: 'bob', domain: 'example.com', password: 'new' }], [{ alias: 'b@example.com', target: 'bob@example.com' }]);
    expect(await m.lookup({ username: 'alice', domain: 'example.com' }, signal())).toBeNull();
    expect((await m.lookup({ username: 'bob', domain: 'example.com' }, signal()))?.password).toBe('new');
    expect(await m.resolveAlias({ user: 'b', domain: 'example.com' }, signal())).not.toBeNull();
    expect(() => m.reload([{ username: 'carol', domain: 'example.com', password: 'x' }, { username: 'dave', domain: 'example.com' }])).toThrow(AuthConfigError);
    expect((await m.lookup({ username: 'bob', domain: 'example.com' }, signal()))?.password).toBe('new');
    expect(await m.lookup({ username: 'carol', domain: 'example.com' }, signal())).toBeNull();
    expect(m.size).toBe(1);
  });

  it.each([
    ['a user without any secret', [{ username: 'a', domain: 'd' }], /users\[0\]: user a@d needs password, ha1 or ha1b/],
    ['an empty username', [{ username: '', domain: 'd', password: 'p' }], /users\[0\]\.username/],
    ['an HA1 that is not 32 hex digits', [{ username: 'a', domain: 'd', ha1: 'xyz' }], /users\[0\]\.ha1: must be 32 hexadecimal digits/],
    ['an HA1b that is not 32 hex digits', [{ username: 'a', domain: 'd', ha1b: HA1 + '00' }], /users\[0\]\.ha1b/],
    ['the same user twice', [{ username: 'a', domain: 'd', password: 'p' }, { username: 'a', domain: 'D', password: 'q' }], /users\[1\]\.username: a@d is listed twice/],
    ['an identity that is not user@domain', [{ username: 'a', domain: 'd', password: 'p', identities: ['nobody'] }], /users\[0\]\.identities\[0\]/],
    ['an attribute that is an object', [{ username: 'a', domain: 'd', password: 'p', attributes: { x: {} } }], /users\[0\]\.attributes\.x/],
  ])('refuses %s, naming the key', (_name, users, message) => {
    expect(() => new MemoryBackend({ name: 'mem', users: users as unknown as MemoryUser[] })).toThrow(message);
  });

  it('refuses a malformed alias and a missing name', () => {
    expect(() => new MemoryBackend({ name: 'mem', users: [], aliases: [{ alias: 'x', target: 'a@b' }] })).toThrow(/aliases\[0\]\.alias/);
    expect(() => new MemoryBackend({ name: '', users: [] })).toThrow(/^name: /);
  });

  it('reports itself unavailable once closed or when the lookup was aborted', async () => {
    const m = new MemoryBackend({ name: 'mem', users: [{ username: 'a', domain: 'd', password: 'p' }] });
    const aborted = new AbortController();
    aborted.abort();
    await expect(m.lookup({ username: 'a', domain: 'd' }, { signal: aborted.signal })).rejects.toBeInstanceOf(BackendUnavailableError);
    await m.close();
    const err = await m.lookup({ username: 'a', domain: 'd' }, signal()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'BACKEND_UNAVAILABLE', retriable: true, backend: 'mem' });
  });
});
