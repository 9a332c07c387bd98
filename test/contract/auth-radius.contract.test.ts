import pino from 'pino';
import { createRadiusBackend } from '../../src/backends/auth/radius/backend.js';
import { startFreeRadius } from '../support/freeradius.js';
import { describeDigestVerifierContract } from './auth-backend.contract.js';

// The verifier contract against a real FreeRADIUS 3.2 (rlm_digest) started from the project's
// private configuration; "unreachable" is a hung (SIGSTOPped) server.
describeDigestVerifierContract('radius', async () => {
  const server = await startFreeRadius();
  const backend = createRadiusBackend({
    name: 'radius-contract',
    servers: [{ host: server.host, port: server.port, secret: server.secret }],
    timeoutMs: 1_000,
    retries: 1,
    logger: pino({ level: 'silent' }),
  });
  return {
    backend,
    realm: 'example.com',
    users: [
      {
        username: 'alice',
        password: 'alice-secret',
        attributes: { rpid: '<sip:+15550001@example.com>', class: 3, email: 'alice@example.com', 'Reply-Message': 'welcome alice' },
      },
    ],
    breakBackend: async () => server.pause(),
    teardown: () => server.stop(),
  };
});
