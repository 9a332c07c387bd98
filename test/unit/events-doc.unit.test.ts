import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { renderEventsDoc } from '../../scripts/gen-events-doc.js';
import { EVENT_TYPES } from '../../src/core/log/events.js';

describe('docs/events.md', () => {
  it('is what scripts/gen-events-doc.ts renders from the schemas (run it after changing a schema)', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../docs/events.md', import.meta.url)), 'utf8');
    const rendered = renderEventsDoc(fileURLToPath(new URL('../../schemas/events', import.meta.url)));
    expect(doc).toBe(rendered);
    for (const type of EVENT_TYPES) expect(doc).toContain(`## \`${type}\` v1`);
  });
});
