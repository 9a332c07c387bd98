/**
 * docs/configuration.md lists every key of schemas/config.schema.json, and nothing else: the
 * first column of its tables is compared with the key paths walked out of the schema.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface SchemaNode {
  $ref?: string;
  properties?: Record<string, SchemaNode | boolean>;
  allOf?: Array<{ then?: SchemaNode }>;
  items?: SchemaNode;
  additionalProperties?: SchemaNode | boolean;
}

/** Every key path: `listen[].port`, `backends.<name>.servers[].secret`, ... */
export function schemaKeyPaths(schema: SchemaNode & { definitions: Record<string, SchemaNode> }): string[] {
  const out: string[] = [];
  const walk = (n: SchemaNode, at: string): void => {
    const node = n.$ref ? schema.definitions[n.$ref.split('/').pop()!]! : n;
    for (const [k, v] of Object.entries(node.properties ?? {})) {
      if (typeof v === 'boolean') continue;
      const p = at ? `${at}.${k}` : k;
      out.push(p);
      walk(v, p);
    }
    for (const a of node.allOf ?? []) if (a.then) walk(a.then, at);
    if (node.items && typeof node.items === 'object') walk(node.items, `${at}[]`);
    if (node.additionalProperties && typeof node.additionalProperties === 'object') walk(node.additionalProperties, `${at}.<name>`);
  };
  walk(schema, '');
  return [...new Set(out)];
}

describe('docs/configuration.md', () => {
  const schema = JSON.parse(readFileSync(path.join(root, 'schemas', 'config.schema.json'), 'utf8')) as SchemaNode & { definitions: Record<string, SchemaNode> };
  const doc = readFileSync(path.join(root, 'docs', 'configuration.md'), 'utf8');
  const documented = new Set([...doc.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!));

  it('documents every key of the configuration schema', () => {
    const missing = schemaKeyPaths(schema).filter((k) => !documented.has(k));
    expect(missing).toEqual([]);
  });

  it('documents no key the schema does not have', () => {
    const keys = new Set(schemaKeyPaths(schema));
    // Rows of the "Secrets" table are forms, not keys.
    const extra = [...documented].filter((k) => !keys.has(k) && !/^(a string|\{env|\{file)/.test(k) && !k.includes(':'));
    expect(extra).toEqual([]);
  });

  it('walks nested keys out of the schema (the walker itself)', () => {
    const paths = schemaKeyPaths(schema);
    expect(paths).toContain('listen[].transport');
    expect(paths).toContain('backends.<name>.servers[].secret');
    expect(paths).toContain('log.fsync');
  });
});
