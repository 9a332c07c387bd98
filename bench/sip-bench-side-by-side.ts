/**
 * `npm run bench:sip`: sipledger against Kamailio, side by side, on this machine (see bench/sip/run.ts
 * for what is measured and the options). Everything it starts runs on loopback and is stopped at the end.
 */
await import('./sip/run.js');
