import { OPTIONS } from './schema.js';

/** Render docs/configuration.md from the schema (kept in sync by a test). */
export function renderConfigDocs(): string {
  const rows = OPTIONS.map((o) => {
    const type = o.type === 'enum' ? (o.values ?? []).map((v) => `\`${v}\``).join(' \\| ') : o.type;
    const range = o.min !== undefined ? ` (${o.min}–${o.max})` : '';
    return `| \`${o.key}\` | \`${o.env}\` | ${o.flag !== undefined ? `\`${o.flag}\`` : ''} | ${type}${range} | \`${String(o.default)}\` | ${o.doc} |`;
  });
  return [
    '# Configuration',
    '',
    'Bulwark reads its configuration once at start, in this order (later wins): built-in defaults,',
    'a JSON file given with `--config FILE` (nested objects, e.g. `{"limits": {"manifestMaxBytes": 1048576}}`),',
    'environment variables, then command-line flags. Every value is validated; an invalid or unknown',
    'option stops the start with a message naming each problem. The configuration cannot change while',
    'the server runs.',
    '',
    'This page is generated from `src/config/schema.ts` by `bulwark config-docs`; a test fails when they differ.',
    '',
    '| option | environment | flag | type | default | meaning |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
