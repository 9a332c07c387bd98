/**
 * A configuration problem found when the authenticator or a backend is built (never per request):
 * names the key and the problem so start-up can print it and exit non-zero.
 */
export class AuthConfigError extends Error {
  readonly code = 'AUTH_CONFIG';
  readonly retriable = false;
  constructor(
    /** The configuration key at fault, e.g. `domains[1].algorithms`. */
    readonly key: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${key}: ${problem}`, options);
    this.name = 'AuthConfigError';
  }
}
