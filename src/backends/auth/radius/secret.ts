/**
 * Where a RADIUS shared secret comes from in the configuration: inline, an environment variable, or
 * a file (a Kubernetes/Docker secret mount). The value itself never appears in an error or a log.
 */
import { readFileSync } from 'node:fs';

export type RadiusSecretSource = string | { readonly env: string } | { readonly file: string };

export class RadiusSecretError extends Error {
  readonly code = 'RADIUS_SECRET';
  readonly retriable = false;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RadiusSecretError';
  }
}

/** Resolves a secret source to the secret; throws RadiusSecretError naming the source when it is unusable. */
export function readRadiusSecret(source: RadiusSecretSource, env: NodeJS.ProcessEnv = process.env): string {
  let secret: string;
  let where: string;
  if (typeof source === 'string') {
    secret = source;
    where = 'the inline secret';
  } else if ('env' in source) {
    where = `environment variable ${source.env}`;
    const value = env[source.env];
    if (value === undefined) throw new RadiusSecretError(`${where} is not set`);
    secret = value;
  } else {
    where = `secret file ${source.file}`;
    try {
      // One trailing newline is what editors and `echo` add; it is not part of the secret.
      secret = readFileSync(source.file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new RadiusSecretError(`${where} cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
    }
  }
  if (secret.length === 0) throw new RadiusSecretError(`${where} is empty`);
  return secret;
}
