import { parseArgs, UsageError } from '../args.js';
import { ConfigError, loadConfig } from '../../config/config.js';
import { checkOperational } from './shared.js';
import type { Command } from './index.js';

export const configCommand: Command = {
  summary: 'check a configuration file (sipledger config check FILE)',
  help: `Usage: sipledger config check FILE

Validates FILE against the configuration schema (schemas/config.schema.json) and the references
between its sections (domains -> backends), checks that secrets named by {env: ...} or
{file: ...} are present, that memory backends' usersFile can be read, and that an admin API
bound off loopback has a token. Opens no socket and connects to nothing.
Prints 'FILE: ok' and exits 0, or lists every problem with its key path and exits 2.
`,
  async run(argv) {
    try {
      const { positionals } = parseArgs(argv, {});
      const [sub, file] = positionals;
      if (sub !== 'check' || !file) throw new UsageError('usage: sipledger config check FILE');
      const cfg = loadConfig(file);
      checkOperational(cfg, file);
      process.stdout.write(
        `${file}: ok (${cfg.domains.length} domain(s), backends: ${Object.entries(cfg.backends)
          .map(([n, b]) => `${n}=${b.type}`)
          .join(', ')}, log: ${cfg.log.type})\n`,
      );
      return 0;
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`${err.message}\n`);
        return 2;
      }
      if (err instanceof UsageError) {
        process.stderr.write(`sipledger config: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
  },
};
