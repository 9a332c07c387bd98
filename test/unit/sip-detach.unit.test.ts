import { describe, expect, it } from 'vitest';
import { detach } from '../../src/core/sip/detach.js';

describe('detach', () => {
  it('returns the same text for every length and character class, cut from a larger message or not', () => {
    const message = 'REGISTER sip:example.com SIP/2.0\r\nCall-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nUser-Agent: Téléphone ☎ 𝄞\r\n\r\n';
    const cuts = [
      '',
      'a',
      'x'.repeat(12),
      'x'.repeat(13),
      message.slice(message.indexOf('a84b'), message.indexOf('\r\nUser')),
      message.slice(message.indexOf('Téléphone'), message.indexOf('\r\n\r\n')),
      message,
      `${message.slice(0, 20)}|${message.slice(40, 80)}`,
    ];
    for (const s of cuts) {
      const d = detach(s);
      expect(d).toBe(s);
      expect(d.length).toBe(s.length);
    }
  });
});
