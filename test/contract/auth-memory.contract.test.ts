import { MemoryBackend } from '../../src/backends/auth/memory.js';
import { describeCredentialStoreContract } from './auth-backend.contract.js';

describeCredentialStoreContract('memory', async (fixture) => {
  const backend = new MemoryBackend({
    name: 'memory-contract',
    // Each user stored the three ways a configuration file may hold it: the contract checks that
    // whatever comes back is consistent with the password.
    users: fixture.users.map((u, i) => ({
      username: u.username,
      domain: u.domain,
      ...(i === 1 ? { ha1: u.ha1, ha1b: u.ha1b } : { password: u.password }),
      attributes: u.attributes,
      ...(() => {
        const row = fixture.identities.find((r) => r.auth.user === u.username && r.auth.domain === u.domain);
        return row ? { identities: row.sip.map((s) => `${s.user}@${s.domain}`) } : {};
      })(),
    })),
    aliases: fixture.aliases.map((a) => ({ alias: `${a.alias.user}@${a.alias.domain}`, target: `${a.target.user}@${a.target.domain}` })),
  });
  // In-process data cannot become unreachable; a closed store is the nearest failure.
  return { backend, identities: true, aliases: true, breakBackend: () => backend.close() };
});
