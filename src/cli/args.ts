/** A small, strict option parser: every unknown option is an error naming it. */
export interface OptionSpec {
  readonly [name: string]: { readonly type: 'string' | 'boolean'; readonly short?: string };
}

export class UsageError extends Error {
  readonly code = 'USAGE';
}

export interface Parsed {
  readonly options: Record<string, string | boolean | undefined>;
  readonly positionals: string[];
}

export function parseArgs(argv: readonly string[], spec: OptionSpec): Parsed {
  const options: Record<string, string | boolean | undefined> = {};
  const positionals: string[] = [];
  const byShort = new Map<string, string>();
  for (const [name, s] of Object.entries(spec)) if (s.short) byShort.set(s.short, name);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq === -1 ? a.slice(2) : a.slice(2, eq);
      inline = eq === -1 ? undefined : a.slice(eq + 1);
    } else if (a.startsWith('-') && a.length === 2) {
      name = byShort.get(a.slice(1));
      if (!name) throw new UsageError(`unknown option ${a}`);
    } else {
      positionals.push(a);
      continue;
    }
    const s = spec[name];
    if (!s) throw new UsageError(`unknown option --${name}`);
    if (s.type === 'boolean') {
      options[name] = true;
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined) throw new UsageError(`option --${name} needs a value`);
    options[name] = v;
  }
  return { options, positionals };
}
