/**
 * SIPp scenarios generated per test: a sequence of REGISTER exchanges on one Call-ID, each
 * challenged (401) and answered with the digest SIPp computes from -au/-ap, and each expecting a
 * given final status. Written to a temp file and run with runSipp.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface RegisterStep {
  /** The Contact header value; `<sip:USER@[contact]>` when absent. Use '' for a query (no Contact). */
  readonly contact?: string;
  /** The Expires header; omitted when undefined. */
  readonly expires?: number;
  /** Final status expected for the authenticated REGISTER. */
  readonly expect: number;
  /** POSIX extended regular expressions the response must match (each checked), e.g. on its Contact rows. */
  readonly contactMatches?: readonly string[];
  /** A header that must be present in the final response, e.g. 'Min-Expires:'. */
  readonly headerPresent?: string;
  /** Send the authenticated REGISTER without a fresh challenge: expect the final status directly. */
  readonly skipChallenge?: boolean;
  /** A raw Authorization header to send instead of SIPp's [authentication]. */
  readonly authorization?: string;
}

export interface RegisterScenarioOptions {
  /** The user in To (and From unless fromUser is given). */
  readonly user: string;
  readonly domain: string;
  readonly fromUser?: string;
  readonly steps: readonly RegisterStep[];
}

function cdata(lines: string[]): string {
  return `    <![CDATA[\n\n${lines.map((l) => `      ${l}`).join('\n')}\n\n    ]]>`;
}

export function registerScenario(o: RegisterScenarioOptions): string {
  const parts: string[] = [];
  let cseq = 1;
  let checkVar = 0;
  const vars: string[] = [];
  const from = o.fromUser ?? o.user;
  for (const step of o.steps) {
    const contactLine =
      step.contact === '' ? undefined : `Contact: ${step.contact ?? `<sip:${o.user}@[contact]>`}`;
    const base = (auth: boolean): string[] =>
      [
        `REGISTER sip:${o.domain} SIP/2.0`,
        'Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport',
        'Max-Forwards: 70',
        `From: <sip:${from}@${o.domain}>;tag=[pid]R[call_number]`,
        `To: <sip:${o.user}@${o.domain}>`,
        'Call-ID: [call_id]',
        `CSeq: ${cseq++} REGISTER`,
        ...(contactLine ? [contactLine] : []),
        ...(auth ? [step.authorization ? `Authorization: ${step.authorization}` : '[authentication]'] : []),
        ...(step.expires !== undefined ? [`Expires: ${step.expires}`] : []),
        'User-Agent: sipp-test',
        'Content-Length: 0',
      ];
    if (!step.skipChallenge) {
      parts.push(`  <send retrans="500">\n${cdata(base(false))}\n  </send>`);
      parts.push('  <recv response="100" optional="true"/>');
      parts.push('  <recv response="401" auth="true"/>');
    }
    parts.push(`  <send retrans="500">\n${cdata(base(true))}\n  </send>`);
    parts.push('  <recv response="100" optional="true"/>');
    const checks: string[] = [];
    for (const re of step.contactMatches ?? []) {
      const v = `c${checkVar++}`;
      vars.push(v);
      checks.push(`      <ereg regexp="${escapeXml(re)}" search_in="msg" check_it="true" assign_to="${v}"/>`);
    }
    if (step.headerPresent) {
      const v = `c${checkVar++}`;
      vars.push(v);
      checks.push(`      <ereg regexp=".*" search_in="hdr" header="${escapeXml(step.headerPresent)}" check_it="true" assign_to="${v}"/>`);
    }
    const auth = step.expect === 401 || step.expect === 407 ? ' auth="true"' : '';
    parts.push(checks.length ? `  <recv response="${step.expect}"${auth}>\n    <action>\n${checks.join('\n')}\n    </action>\n  </recv>` : `  <recv response="${step.expect}"${auth}/>`);
  }
  const reference = vars.length ? `  <Reference variables="${vars.join(',')}"/>\n` : '';
  return `<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n<scenario name="register-steps">\n${parts.join('\n')}\n${reference}</scenario>\n`;
}

/** Writes a generated scenario and returns its path. */
export function writeScenario(xml: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'sipp-scn-'));
  const file = path.join(dir, 'scenario.xml');
  writeFileSync(file, xml);
  return file;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
