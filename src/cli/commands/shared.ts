import path from 'node:path';
import { ConfigError, configFromObject, loadConfig, packageRoot, type SipledgerConfig } from '../../config/config.js';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';

/**
 * The configuration named by -c, or the embedded quick-start configuration with its data
 * directory under the current directory.
 */
export function configFor(file: string | undefined): SipledgerConfig {
  if (file) return loadConfig(file);
  const embedded = path.join(packageRoot(), 'examples', 'quickstart.yaml');
  return configFromObject(YAML.parse(readFileSync(embedded, 'utf8')), embedded, process.cwd());
}

/** Prints a configuration error the way every command does, and returns exit code 2. */
export function reportConfigError(err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
  throw err;
}
