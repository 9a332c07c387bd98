import { startCommand } from './start.js';
import { configCommand } from './config.js';
import { usersCommand } from './users.js';
import { locationCommand } from './location.js';
import { auditCommand } from './audit.js';
import { logCommand } from './log.js';
import { rebuildCommand } from './rebuild.js';
import { banCommand } from './ban.js';

export interface Command {
  readonly summary: string;
  readonly help: string;
  /** Resolves the exit code; -1 means the command keeps running (a server). */
  run(argv: string[]): Promise<number>;
}

export const commands: Record<string, Command> = {
  start: startCommand,
  config: configCommand,
  users: usersCommand,
  location: locationCommand,
  audit: auditCommand,
  log: logCommand,
  rebuild: rebuildCommand,
  ban: banCommand,
};
