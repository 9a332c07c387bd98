import { startCommand } from './start.js';
import { configCommand } from './config.js';

export interface Command {
  readonly summary: string;
  readonly help: string;
  /** Resolves the exit code; -1 means the command keeps running (a server). */
  run(argv: string[]): Promise<number>;
}

export const commands: Record<string, Command> = {
  start: startCommand,
  config: configCommand,
};
