import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML, { isMap, isSeq, type Document, YAMLMap, YAMLSeq } from 'yaml';
import { createSubscriberAdmin, type AdminResult, type SubscriberAdmin } from '../../backends/auth/subscriber-admin.js';
import { mysqlConnection, type BackendConfig, type MemoryUserConfig, type SipledgerConfig } from '../../config/config.js';
import { parseArgs, UsageError } from '../args.js';
import { lockHolder } from '../log-reader.js';
import type { Command } from './index.js';
import { CommandFailure, configFor, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, guard, out, table, toolLogger } from './shared.js';

const HELP = `Usage: sipledger users add    USER[@DOMAIN] [PASSWORD] [-c FILE] [--backend NAME] [--plaintext] [--reload]
       sipledger users passwd USER[@DOMAIN] [PASSWORD] [-c FILE] [--backend NAME] [--plaintext] [--reload]
       sipledger users rm     USER[@DOMAIN] [-c FILE] [--backend NAME] [--reload]
       sipledger users list   [--domain DOMAIN] [-c FILE] [--backend NAME] [--json]
       sipledger users show   USER[@DOMAIN] [-c FILE] [--backend NAME] [--json]

Manages the subscribers of a credential backend named in the configuration, as kamctl
add / passwd / rm / show do.

Which backend: --backend NAME; otherwise the backend of the domain given in USER@DOMAIN;
otherwise the only memory or mysql backend in the configuration. DOMAIN defaults to the first
domain served by that backend.

The password: the PASSWORD argument, or else read from standard input (one line; prompted
without echo on a terminal). Prefer standard input: arguments are visible to other users in
the process list. Passwords and HA1 values are never printed.

memory backend (users listed in YAML):
  The commands edit the backend's usersFile (a YAML file with a 'users:' list, relative to the
  configuration file; created when missing, comments kept, mode 0600). Users written inline in
  the configuration under 'users:' are shown by list and show but are read-only here: edit the
  configuration for those. A backend without usersFile cannot be edited by these commands.
  add and passwd store ha1 and ha1b (MD5 of user:realm:password), never the clear text,
  unless --plaintext is given or the domain offers a SHA-2 algorithm (which needs the clear
  text). The running sipledger picks up the change on SIGHUP: --reload sends it to the
  process holding the configured file log; otherwise run 'systemctl reload sipledger' or
  'kill -HUP PID'.

mysql backend (the Kamailio subscriber table):
  add, passwd, rm, list and show work on the table (and dbaliases) with kamctl's semantics:
  ha1 = MD5(user:domain:password), ha1b = MD5(user@domain:domain:password), the clear-text
  password column left empty unless --plaintext is given or the backend has calculateHa1: true.
  rm also removes the aliases pointing at the subscriber. The running sipledger sees the change
  at once (its cache, when cacheTtlMs is set, after that long).

Options:
  -c, --config FILE   configuration file (default: the embedded quick-start configuration)
      --backend NAME  the backend to manage (a key under 'backends')
      --domain DOMAIN list: only this domain
      --plaintext     store the clear-text password as well (memory: instead of ha1/ha1b)
      --reload        memory: send SIGHUP to the running sipledger after the change
      --json          list, show: machine-readable output

Exit codes: 0 done, 1 refused (the user exists, is not found, is read-only) or the database
failed, 2 usage or configuration error.

Examples:
  sipledger users add carol@example.com -c /etc/sipledger/sipledger.yaml < password.txt
  sipledger users passwd alice -c site.yaml --backend db
  sipledger users list -c site.yaml --json
`;

interface Target {
  readonly name: string;
  readonly backend: BackendConfig;
}

interface Subject {
  readonly user: string;
  readonly domain: string;
}

export const usersCommand: Command = {
  summary: 'add, remove, list and show subscribers (memory and MySQL backends)',
  help: HELP,
  run: (argv) =>
    guard('users', async () => {
      const { options, positionals } = parseArgs(argv, {
        config: { type: 'string', short: 'c' },
        backend: { type: 'string' },
        domain: { type: 'string' },
        plaintext: { type: 'boolean' },
        reload: { type: 'boolean' },
        json: { type: 'boolean' },
      });
      const [sub, who, password, ...extra] = positionals;
      const subs = ['add', 'passwd', 'rm', 'list', 'show'];
      if (!sub || !subs.includes(sub)) throw new UsageError(sub ? `unknown subcommand '${sub}' (expected: ${subs.join(', ')})` : `missing subcommand (expected: ${subs.join(', ')})`);
      const maxArgs = sub === 'add' || sub === 'passwd' ? 2 : sub === 'list' ? 0 : 1;
      const given = [who, password, ...extra].filter((x) => x !== undefined);
      if (given.length > maxArgs) throw new UsageError(`unexpected argument '${given[maxArgs]}'`);
      if (sub !== 'list' && who === undefined) throw new UsageError(`${sub} needs USER[@DOMAIN]`);
      const config = configFor(options['config'] as string | undefined);
      const target = pickBackend(config, options['backend'] as string | undefined, who);
      const subject = who !== undefined ? subjectOf(config, target, who) : undefined;
      const json = options['json'] === true;
      const plaintext = options['plaintext'] === true;

      if (target.backend.type === 'mysql') {
        const admin = mysqlAdmin(config, target);
        try {
          switch (sub) {
            case 'add':
            case 'passwd': {
              const pw = password ?? (await readPassword());
              const input = { ...subject!, password: pw, storePlaintextPassword: plaintext || target.backend.calculateHa1 === true };
              return result(sub === 'add' ? await admin.addUser(input) : await admin.setPassword(input), `${sub === 'add' ? 'added' : 'password changed for'} ${subject!.user}@${subject!.domain}`);
            }
            case 'rm':
              return result(await admin.removeUser(subject!), `removed ${subject!.user}@${subject!.domain} (and its aliases)`);
            case 'list': {
              const rows = await admin.listUsers(options['domain'] !== undefined ? { domain: options['domain'] as string } : {});
              if (json) out(JSON.stringify(rows, null, 2) + '\n');
              else out(table(['USER', 'DOMAIN', 'PLAINTEXT'], rows.map((r) => [r.user, r.domain, r.plaintextPasswordStored ? 'yes' : 'no'])) + `${rows.length} subscriber(s)\n`);
              return EXIT_OK;
            }
            default: {
              const d = await admin.showUser(subject!);
              if (!d) throw new CommandFailure(`no subscriber ${subject!.user}@${subject!.domain}`);
              if (json) out(JSON.stringify(d, null, 2) + '\n');
              else {
                out(`user: ${d.user}\ndomain: ${d.domain}\nbackend: ${target.name} (mysql)\n`);
                out(`credentials: ${[d.ha1Stored && 'ha1', d.ha1bStored && 'ha1b', d.plaintextPasswordStored && 'password'].filter(Boolean).join(', ') || 'none'}\n`);
                for (const [k, v] of Object.entries(d.columns)) out(`${k}: ${v === null ? '' : String(v)}\n`);
              }
              return EXIT_OK;
            }
          }
        } finally {
          await admin.close();
        }
      }
      if (target.backend.type !== 'memory') {
        throw new UsageError(`backend '${target.name}' is ${target.backend.type}: its users live on the RADIUS server (FreeRADIUS users file or SQL)`);
      }
      const store = new MemoryUsers(config, target.name, target.backend);
      switch (sub) {
        case 'list': {
          const domain = options['domain'] as string | undefined;
          const rows = store.all().filter((u) => domain === undefined || u.domain.toLowerCase() === domain.toLowerCase());
          if (json) out(JSON.stringify(rows, null, 2) + '\n');
          else out(table(['USER', 'DOMAIN', 'SOURCE', 'CREDENTIALS'], rows.map((r) => [r.username, r.domain, r.source, r.credentials.join(',')])) + `${rows.length} user(s)\n`);
          return EXIT_OK;
        }
        case 'show': {
          const u = store.all().find((x) => same(x, subject!));
          if (!u) throw new CommandFailure(`no user ${subject!.user}@${subject!.domain} in backend '${target.name}'`);
          if (json) out(JSON.stringify(u, null, 2) + '\n');
          else {
            out(`user: ${u.username}\ndomain: ${u.domain}\nbackend: ${target.name} (memory)\nsource: ${u.source}\ncredentials: ${u.credentials.join(', ')}\n`);
            if (u.identities?.length) out(`identities: ${u.identities.join(', ')}\n`);
            for (const [k, v] of Object.entries(u.attributes ?? {})) out(`attribute ${k}: ${String(v)}\n`);
          }
          return EXIT_OK;
        }
        default: {
          const inline = store.inline().find((x) => same(x, subject!));
          if (inline) throw new CommandFailure(`${subject!.user}@${subject!.domain} is defined inline in the configuration (backends.${target.name}.users): edit it there`);
          if (sub === 'rm') store.remove(subject!);
          else {
            const pw = password ?? (await readPassword());
            const clear = plaintext || needsClearText(config, subject!.domain);
            store.put(subject!, credentialsFor(config, subject!, pw, clear), sub === 'add');
          }
          out(`${sub === 'add' ? 'added' : sub === 'rm' ? 'removed' : 'password changed for'} ${subject!.user}@${subject!.domain} in ${store.file}\n`);
          reloadHint(config, options['reload'] === true);
          return EXIT_OK;
        }
      }
    }),
};

function result(r: AdminResult, done: string): number {
  if (r.ok) {
    out(`${done}\n`);
    return EXIT_OK;
  }
  process.stderr.write(`sipledger users: ${r.message}\n`);
  return r.reason === 'invalid' ? EXIT_USAGE : EXIT_FAILURE;
}

function pickBackend(config: SipledgerConfig, name: string | undefined, who: string | undefined): Target {
  if (name !== undefined) {
    const b = config.backends[name];
    if (!b) throw new UsageError(`--backend: no backend named '${name}' (defined: ${Object.keys(config.backends).join(', ')})`);
    return { name, backend: b };
  }
  const at = who?.lastIndexOf('@') ?? -1;
  if (who !== undefined && at > 0) {
    const d = config.domains.find((x) => x.domain.toLowerCase() === who.slice(at + 1).toLowerCase());
    if (d) return { name: d.backend, backend: config.backends[d.backend]! };
  }
  const editable = Object.entries(config.backends).filter(([, b]) => b.type === 'memory' || b.type === 'mysql');
  if (editable.length === 1) return { name: editable[0]![0], backend: editable[0]![1] };
  throw new UsageError(
    editable.length === 0
      ? 'the configuration has no memory or mysql backend'
      : `several backends could be meant (${editable.map(([n]) => n).join(', ')}): choose one with --backend NAME`,
  );
}

function subjectOf(config: SipledgerConfig, target: Target, who: string): Subject {
  const text = who.replace(/^sips?:/i, '');
  const at = text.lastIndexOf('@');
  const user = at === -1 ? text : text.slice(0, at);
  let domain = at === -1 ? undefined : text.slice(at + 1);
  if (!user || /[\s:]/.test(user)) throw new UsageError(`'${who}' is not a username (no spaces or colons)`);
  if (domain === '') throw new UsageError(`'${who}': the domain after @ is empty`);
  domain ??= config.domains.find((d) => d.backend === target.name)?.domain;
  if (!domain) throw new UsageError(`backend '${target.name}' serves no domain: give USER@DOMAIN`);
  return { user, domain };
}

function realmOf(config: SipledgerConfig, domain: string): string {
  return config.domains.find((d) => d.domain.toLowerCase() === domain.toLowerCase())?.realm ?? domain;
}

function needsClearText(config: SipledgerConfig, domain: string): boolean {
  const d = config.domains.find((x) => x.domain.toLowerCase() === domain.toLowerCase());
  return (d?.algorithms ?? ['MD5']).some((a) => !a.startsWith('MD5'));
}

const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex');

function credentialsFor(config: SipledgerConfig, s: Subject, password: string, clear: boolean): Pick<MemoryUserConfig, 'password' | 'ha1' | 'ha1b'> {
  if (clear) return { password };
  const realm = realmOf(config, s.domain);
  return { ha1: md5(`${s.user}:${realm}:${password}`), ha1b: md5(`${s.user}@${s.domain}:${realm}:${password}`) };
}

function same(u: { username: string; domain: string }, s: Subject): boolean {
  return u.username === s.user && u.domain.toLowerCase() === s.domain.toLowerCase();
}

interface ListedUser {
  readonly username: string;
  readonly domain: string;
  readonly source: string;
  /** Which kinds of credential are stored; never their values. */
  readonly credentials: string[];
  readonly attributes?: Record<string, string | number>;
  readonly identities?: string[];
}

/** The users of one memory backend: inline (read-only) and those of its usersFile (editable). */
class MemoryUsers {
  readonly file: string | undefined;
  readonly #defaultDomain: string;
  constructor(
    private readonly config: SipledgerConfig,
    private readonly name: string,
    private readonly backend: Extract<BackendConfig, { type: 'memory' }>,
  ) {
    this.file = backend.usersFile !== undefined ? path.resolve(config.baseDir, backend.usersFile) : undefined;
    this.#defaultDomain = config.domains.find((d) => d.backend === name)?.domain ?? '';
  }

  #list(users: readonly MemoryUserConfig[], source: string): ListedUser[] {
    return users.map((u) => ({
      username: u.username,
      domain: u.domain ?? this.#defaultDomain,
      source,
      credentials: [u.password !== undefined && (typeof u.password === 'string' ? 'password' : 'env' in u.password ? `password (env ${u.password.env})` : `password (file ${u.password.file})`), u.ha1 !== undefined && 'ha1', u.ha1b !== undefined && 'ha1b'].filter((x): x is string => typeof x === 'string'),
      ...(u.attributes ? { attributes: u.attributes } : {}),
      ...(u.identities ? { identities: u.identities } : {}),
    }));
  }

  inline(): ListedUser[] {
    return this.#list(this.backend.users ?? [], 'configuration');
  }

  all(): ListedUser[] {
    const fromFile = this.file && existsSync(this.file) ? this.#list(this.#fileUsers(this.#read()), path.basename(this.file)) : [];
    return [...this.inline(), ...fromFile];
  }

  #requireFile(): string {
    if (!this.file) {
      throw new CommandFailure(
        `backend '${this.name}' has no usersFile: add 'usersFile: users.yaml' under backends.${this.name} in the configuration to manage its users with this command`,
      );
    }
    return this.file;
  }

  #read(): Document {
    const file = this.#requireFile();
    if (!existsSync(file)) return new YAML.Document({ users: [] });
    let doc: Document;
    try {
      doc = YAML.parseDocument(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new CommandFailure(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (doc.errors.length) throw new CommandFailure(`${file}: not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
    if (doc.contents === null) doc.contents = doc.createNode({ users: [] }) as never;
    if (!isMap(doc.contents)) throw new CommandFailure(`${file}: expected a mapping with a 'users:' list`);
    const users = doc.get('users');
    if (users === undefined || users === null) doc.set('users', new YAMLSeq());
    else if (!isSeq(users)) throw new CommandFailure(`${file}: 'users' must be a list`);
    return doc;
  }

  #fileUsers(doc: Document): MemoryUserConfig[] {
    const users = (doc.toJS() as { users?: unknown } | null)?.users;
    return Array.isArray(users) ? (users as MemoryUserConfig[]) : [];
  }

  #indexOf(doc: Document, s: Subject): number {
    return this.#fileUsers(doc).findIndex((u) => u.username === s.user && (u.domain ?? this.#defaultDomain).toLowerCase() === s.domain.toLowerCase());
  }

  put(s: Subject, credentials: Pick<MemoryUserConfig, 'password' | 'ha1' | 'ha1b'>, create: boolean): void {
    const doc = this.#read();
    const seq = doc.get('users') as YAMLSeq;
    const i = this.#indexOf(doc, s);
    if (create && i !== -1) throw new CommandFailure(`${s.user}@${s.domain} already exists in ${this.file}`);
    if (!create && i === -1) throw new CommandFailure(`no user ${s.user}@${s.domain} in ${this.file}`);
    if (create) {
      const entry: Record<string, string> = { username: s.user };
      if (s.domain.toLowerCase() !== this.#defaultDomain.toLowerCase()) entry['domain'] = s.domain;
      seq.add(doc.createNode({ ...entry, ...credentials }));
    } else {
      const node = seq.items[i];
      if (!(node instanceof YAMLMap)) throw new CommandFailure(`${this.file}: users[${i}] is not a mapping`);
      // A changed password replaces every stored form, so no stale credential survives.
      for (const k of ['password', 'ha1', 'ha1b']) node.delete(k);
      for (const [k, v] of Object.entries(credentials)) node.set(k, v);
    }
    this.#write(doc);
  }

  remove(s: Subject): void {
    const doc = this.#read();
    const i = this.#indexOf(doc, s);
    if (i === -1) throw new CommandFailure(`no user ${s.user}@${s.domain} in ${this.file}`);
    (doc.get('users') as YAMLSeq).delete(i);
    this.#write(doc);
  }

  /** Written to a temporary file and renamed: a reload never reads half a file. */
  #write(doc: Document): void {
    const file = this.#requireFile();
    const tmp = `${file}.${process.pid}.tmp`;
    const mode = existsSync(file) ? statSync(file).mode & 0o777 : 0o600;
    writeFileSync(tmp, doc.toString(), { mode });
    chmodSync(tmp, mode);
    renameSync(tmp, file);
  }
}

function reloadHint(config: SipledgerConfig, reload: boolean): void {
  const pid = config.log.type === 'file' ? lockHolder(config.log.dir) : undefined;
  if (reload) {
    if (config.log.type !== 'file') {
      out("--reload finds the running sipledger through its file log's LOCK; with this log, run 'systemctl reload sipledger' or 'kill -HUP PID'\n");
      return;
    }
    if (pid === undefined) {
      out('no running sipledger found on this configuration\'s log: the change applies at its next start\n');
      return;
    }
    process.kill(pid, 'SIGHUP');
    out(`sent SIGHUP to sipledger (pid ${pid}): users reloaded\n`);
    return;
  }
  if (pid !== undefined) out(`sipledger is running (pid ${pid}): reload with 'kill -HUP ${pid}' (or --reload, or systemctl reload sipledger)\n`);
}

function mysqlAdmin(config: SipledgerConfig, t: Target): SubscriberAdmin {
  const b = t.backend as Extract<BackendConfig, { type: 'mysql' }>;
  return createSubscriberAdmin({ ...mysqlConnection(b, config.baseDir), logger: toolLogger('warn') });
}

/** One line from standard input; on a terminal, prompted twice without echo. */
async function readPassword(): Promise<string> {
  const stdin = process.stdin;
  if (stdin.isTTY) {
    const first = await promptHidden('Password: ');
    const again = await promptHidden('Password (again): ');
    if (first !== again) throw new UsageError('the passwords do not match');
    if (!first) throw new UsageError('the password is empty');
    return first;
  }
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(c as Buffer);
  const line = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  if (!line) throw new UsageError('no password: give it as an argument or on standard input');
  return line;
}

function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    let value = '';
    const onData = (buf: Buffer): void => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new UsageError('interrupted'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const done = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}
