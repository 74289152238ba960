/**
 * Protocol errors are registered data (STYLE rule 1): every code in the registry is documented in
 * docs/errors.md with its HTTP status, message and description, and the page documents nothing
 * the registry does not have.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { allErrorCodes, describeError, registryError, type ErrorCode } from '../../src/oci/index.js';
import { repoRoot } from '../testkit/server.js';
import { assertError, startApp } from '../testkit/inject.js';

interface Row {
  code: string;
  status: number;
  message: string;
  description: string;
}

/** Rows of the markdown table whose first cell is a `CODE`; cells split on unescaped pipes. */
function parseTable(markdown: string): Row[] {
  const rows: Row[] = [];
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('| `')) continue;
    const cells = line
      .slice(1, line.endsWith('|') ? -1 : undefined)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim().replace(/\\\|/g, '|'));
    assert.equal(cells.length, 4, `a row has code, status, message, description: ${line}`);
    const [code = '', status = '', message = '', description = ''] = cells;
    rows.push({ code: code.replace(/`/g, ''), status: Number(status), message, description });
  }
  return rows;
}

const SPEC_CODES: readonly ErrorCode[] = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS',
];

describe('docs/errors.md', () => {
  it('documents every registered code with its HTTP status, message and description', async () => {
    const rows = parseTable(await readFile(join(repoRoot, 'docs', 'errors.md'), 'utf8'));
    const byCode = new Map(rows.map((r) => [r.code, r]));
    for (const d of allErrorCodes()) {
      const row = byCode.get(d.code);
      assert.ok(row !== undefined, `${d.code} is missing from docs/errors.md`);
      assert.equal(row.status, d.httpStatus, `${d.code} status`);
      assert.equal(row.message, d.message, `${d.code} message`);
      assert.equal(row.description, d.description, `${d.code} description`);
    }
  });

  it('documents no code the registry does not have, and each code once', async () => {
    const rows = parseTable(await readFile(join(repoRoot, 'docs', 'errors.md'), 'utf8'));
    const registered = new Set(allErrorCodes().map((d) => d.code as string));
    for (const r of rows) assert.ok(registered.has(r.code), `${r.code} is documented but not registered`);
    assert.equal(new Set(rows.map((r) => r.code)).size, rows.length, 'duplicate rows');
    assert.equal(rows.length, registered.size);
  });

  it('describes the error envelope', async () => {
    const text = await readFile(join(repoRoot, 'docs', 'errors.md'), 'utf8');
    assert.match(text, /\{"errors":\[\{"code":/);
  });
});

describe('error registry', () => {
  it('holds all fourteen distribution-spec codes', () => {
    const registered = new Set(allErrorCodes().map((d) => d.code));
    for (const c of SPEC_CODES) assert.ok(registered.has(c), c);
  });

  it('gives every code a 4xx or 5xx status and a message', () => {
    for (const d of allErrorCodes()) {
      assert.ok(d.httpStatus >= 400 && d.httpStatus < 600, `${d.code}: ${d.httpStatus}`);
      assert.ok(d.message.length > 0 && d.description.length > 0, d.code);
      assert.equal(describeError(d.code), d);
      assert.equal(registryError(d.code).httpStatus, d.httpStatus);
    }
  });

  it('the HTTP layer answers with the documented status for codes seen on the wire', async () => {
    const t = await startApp();
    try {
      assertError(await t.req('GET', `/v2/x/blobs/sha256:${'0'.repeat(64)}`), describeError('BLOB_UNKNOWN').httpStatus, 'BLOB_UNKNOWN');
      assertError(await t.req('GET', '/v2/x/blobs/uploads/00000000-0000-0000-0000-000000000000'), describeError('BLOB_UPLOAD_UNKNOWN').httpStatus, 'BLOB_UPLOAD_UNKNOWN');
      assertError(await t.req('GET', '/v2/x/blobs/sha256:0'), describeError('DIGEST_INVALID').httpStatus, 'DIGEST_INVALID');
      assertError(await t.req('GET', '/v2/X/tags/list'), describeError('NAME_INVALID').httpStatus, 'NAME_INVALID');
      assertError(await t.req('GET', '/v2/x/tags/list'), describeError('NAME_UNKNOWN').httpStatus, 'NAME_UNKNOWN');
      assertError(await t.req('PUT', '/v2/x/manifests/v1', { payload: 'not json' }), describeError('MANIFEST_INVALID').httpStatus, 'MANIFEST_INVALID');
      assertError(await t.req('PATCH', '/v2/x/manifests/v1'), describeError('METHOD_NOT_ALLOWED').httpStatus, 'METHOD_NOT_ALLOWED');
      assertError(await t.req('GET', '/v3/'), describeError('NOT_FOUND').httpStatus, 'NOT_FOUND');
      assertError(await t.req('GET', '/v2/_catalog?n=x'), describeError('BAD_REQUEST').httpStatus, 'BAD_REQUEST');
    } finally {
      await t.close();
    }
  });
});
