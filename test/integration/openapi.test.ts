/**
 * docs/openapi.yaml documents exactly the admin API that is served: the committed file is what
 * `bulwark openapi` renders, every route the admin plugin mounts is in it, and every operation
 * in it answers (with a 401 challenge, since none is public).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { ADMIN_ENDPOINTS, adminRoutes, openApiDocument, renderOpenApi } from '../../src/routes/admin/index.js';
import { startApp, type TestApp } from '../testkit/inject.js';
import { repoRoot } from '../testkit/server.js';

type Doc = { paths: Record<string, Record<string, { security: Record<string, string[]>[] }>> };

/** `METHOD /api/v1/path/{param}` for every operation of the document. */
function documented(doc: Doc): string[] {
  return Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
}

describe('the OpenAPI document of the admin API', () => {
  let t: TestApp;
  before(async () => {
    t = await startApp({ 'auth.enabled': true });
  });
  after(() => t.close());

  test('docs/openapi.yaml is exactly what `bulwark openapi` renders from the endpoint table', async () => {
    const onDisk = await readFile(join(repoRoot, 'docs', 'openapi.yaml'), 'utf8');
    assert.equal(onDisk, renderOpenApi(ADMIN_ENDPOINTS), 'regenerate with: node dist/cli/main.js openapi > docs/openapi.yaml');
  });

  test('every route the admin plugin mounts is documented, and nothing else is', async () => {
    const bare = Fastify({ exposeHeadRoutes: false }); // as the app's server (src/http/server.ts)
    const mounted: string[] = [];
    bare.addHook('onRoute', (r) => {
      for (const m of [r.method].flat()) mounted.push(`${m} ${r.url.replace(/:([A-Za-z]+)/g, '{$1}')}`);
    });
    assert.ok(t.app.auth !== undefined);
    adminRoutes(bare, t.app.auth, 'http://registry.test', { health: () => Promise.reject(new Error('not called')) });
    await bare.ready();
    await bare.close();
    assert.deepEqual(mounted.sort(), documented(openApiDocument(ADMIN_ENDPOINTS) as Doc));
  });

  test('every documented operation is served and asks for a token', async () => {
    const doc = openApiDocument(ADMIN_ENDPOINTS) as Doc;
    for (const op of documented(doc)) {
      const [method, path] = op.split(' ') as ['GET', string];
      const url = path.replace(/\{id\}/g, '00000000-0000-4000-8000-000000000000').replace(/\{slot\}/g, 'password1').replace(/\{[A-Za-z]+\}/g, 'some-name');
      const res = await t.req(method, url);
      assert.equal(res.statusCode, 401, `${op}: ${res.statusCode} ${res.body}`);
      const scopes = doc.paths[path]?.[method.toLowerCase()]?.security[0]?.bearer ?? [];
      const challenge = String(res.headers['www-authenticate']);
      if (scopes.length > 0) assert.match(challenge, new RegExp(`scope="${scopes[0] ?? ''}"`), op);
      else assert.doesNotMatch(challenge, /scope=/, op);
    }
  });
});
