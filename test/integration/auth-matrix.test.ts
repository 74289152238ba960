/**
 * Authorization matrix (issue 3, "Proof"): every /v2 route × every principal (anonymous, the
 * bootstrap admin, each built-in role registry-wide and on `team-a/*`, repository-scoped tokens
 * with each system scope map and a custom one, a disabled token) × an allowed and a denied
 * repository. The expected statuses are the tables in auth-matrix.data.ts; each cell asks the
 * token endpoint for exactly the scope its route needs (as docker does), then sends the request.
 *
 * Service identities sign in through OIDC federation (`/oauth2/exchange`), which is not part of
 * this change; their access tokens are issued with `AuthService.issue`, the same decision the
 * token endpoint makes once a caller is signed in. Everything else uses the token endpoint.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseScopes, ROLES, SYSTEM_SCOPE_MAPS } from '../../src/auth/index.js';
import { ADMIN_ACTOR, authOf, bearer, bootstrapOf, challengeOf, EventRecorder, fetchToken, requestToken, TEST_CLIENT, withToken, type Credentials } from '../testkit/auth-client.js';
import {
  descriptorOf,
  errorCode,
  header,
  imageManifest,
  MT,
  pushBlob,
  pushImage,
  pushManifest,
  randomBlob,
  startApp,
  startUpload,
  type PushedImage,
  type Res,
  type TestApp,
} from '../testkit/inject.js';
import { ALLOWED, CUSTOM_SCOPE_MAPS, DENIED, MOUNT_SOURCE, REPOSITORIES, registryRows, repositoryRows, ROUTES, type RepositoryRow } from './auth-matrix.data.js';

const EXTERNAL_URL = 'https://registry.test';
const REALM = `${EXTERNAL_URL}/oauth2/token`;

/** Gets the access token a cell sends for `scopes`; undefined sends no Authorization header. */
type TokenSource = (scopes: readonly string[]) => Promise<string | undefined>;

interface Cell {
  readonly method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  readonly url: string;
  readonly headers?: Record<string, string>;
  readonly payload?: Buffer;
  /** what the token request asks for */
  readonly scopes: readonly string[];
  /** the scope a 401 challenge must name (undefined: none) */
  readonly challenge: string | undefined;
  /** bytes a 200/206 GET must return */
  readonly body?: Buffer;
}

/** Everything the seeding pushed, by repository. */
type Seeded = Record<string, PushedImage>;

function slug(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

/** Every scope any cell may need: what the disabled token obtains before it is disabled. */
const ALL_SCOPES = ['registry:catalog:*', ...REPOSITORIES.map((r) => `repository:${r}:pull,push,delete`)];

/** Builds the principal a row label describes (see auth-matrix.data.ts). */
async function principalOf(t: TestApp, label: string): Promise<{ token: TokenSource; disabled?: Credentials }> {
  const auth = authOf(t);
  if (label === 'none') return { token: async () => undefined };
  if (label === 'anonymous') return { token: (scopes) => fetchToken(t, undefined, scopes) };
  if (label === 'bootstrap-admin') return { token: (scopes) => fetchToken(t, bootstrapOf(t), scopes) };
  const tok = /^token:([A-Za-z0-9_-]+)(\(disabled\))?$/.exec(label);
  if (tok !== null) {
    const map = tok[1] ?? '';
    const custom = CUSTOM_SCOPE_MAPS[map];
    if (custom !== undefined) await auth.directory.createScopeMap(ADMIN_ACTOR, { name: map, actions: custom });
    const name = `tok-${tok[2] !== undefined ? 'disabled-' : ''}${slug(map)}`;
    const created = await auth.directory.createToken(ADMIN_ACTOR, { name, scopeMap: map });
    const creds = { username: name, password: created.password.value };
    if (tok[2] === undefined) return { token: (scopes) => fetchToken(t, creds, scopes) };
    // Obtained while enabled, then the token is disabled: every later request must fail.
    const before = await fetchToken(t, creds, ALL_SCOPES);
    await auth.directory.setTokenStatus(ADMIN_ACTOR, name, 'disabled');
    return { token: async () => before, disabled: creds };
  }
  const assignments = label.split('+').map((part) => {
    const m = /^([A-Za-z]+)@(.+)$/.exec(part);
    assert.ok(m !== null, `unknown principal label ${label}`);
    return { role: m[1] ?? '', scope: m[2] ?? '' };
  });
  const name = `svc-${slug(label).slice(0, 46)}`;
  await auth.directory.createService(ADMIN_ACTOR, { name });
  for (const a of assignments) await auth.directory.assignRole(ADMIN_ACTOR, { principal: `service:${name}`, role: a.role, scope: a.scope });
  return { token: async (scopes) => (await auth.issue({ sub: `service:${name}` }, parseScopes(scopes), TEST_CLIENT)).token };
}

/** How each column's request is made; content a destructive request consumes is pushed per cell. */
function cellBuilders(admin: () => Promise<TestApp>, seeded: Seeded): Record<string, (repo: string) => Promise<Cell>> {
  const seed = (repo: string): PushedImage => {
    const s = seeded[repo];
    assert.ok(s !== undefined);
    return s;
  };
  const repoCell = (repo: string, action: string, c: Omit<Cell, 'scopes' | 'challenge'>): Cell => ({ ...c, scopes: [`repository:${repo}:${action}`], challenge: `repository:${repo}:${action}` });
  const session = async (repo: string): Promise<string> => startUpload(await admin(), repo);
  const mount = (from: string) => async (repo: string): Promise<Cell> => {
    const blob = randomBlob(32);
    await pushBlob(await admin(), from, blob);
    // docker asks for push on the target and pull on the source
    return { method: 'POST', url: `/v2/${repo}/blobs/uploads/?mount=${blob.digest}&from=${from}`, scopes: [`repository:${repo}:pull,push`, `repository:${from}:pull`], challenge: `repository:${repo}:push` };
  };
  let manifests = 0;
  /** A manifest not yet in the repository (its blobs are). */
  const newManifest = (repo: string) => {
    const s = seed(repo);
    return imageManifest({ config: descriptorOf(s.config, MT.ociConfig), layers: [descriptorOf(s.layer, MT.ociLayer)], annotations: { cell: String(++manifests) } });
  };
  const chunk = randomBlob(10);
  return {
    bHEAD: async (repo) => repoCell(repo, 'pull', { method: 'HEAD', url: `/v2/${repo}/blobs/${seed(repo).layer.digest}` }),
    bGET: async (repo) => repoCell(repo, 'pull', { method: 'GET', url: `/v2/${repo}/blobs/${seed(repo).layer.digest}`, body: seed(repo).layer.data }),
    bRANGE: async (repo) =>
      repoCell(repo, 'pull', { method: 'GET', url: `/v2/${repo}/blobs/${seed(repo).layer.digest}`, headers: { range: 'bytes=0-9' }, body: seed(repo).layer.data.subarray(0, 10) }),
    bDEL: async (repo) => {
      const blob = randomBlob(16);
      await pushBlob(await admin(), repo, blob);
      return repoCell(repo, 'delete', { method: 'DELETE', url: `/v2/${repo}/blobs/${blob.digest}` });
    },
    upPOST: async (repo) => repoCell(repo, 'push', { method: 'POST', url: `/v2/${repo}/blobs/uploads/` }),
    upMONO: async (repo) => {
      const blob = randomBlob(24);
      return repoCell(repo, 'push', { method: 'POST', url: `/v2/${repo}/blobs/uploads/?digest=${blob.digest}`, headers: { 'content-type': 'application/octet-stream' }, payload: blob.data });
    },
    upPATCH: async (repo) =>
      repoCell(repo, 'push', { method: 'PATCH', url: await session(repo), headers: { 'content-type': 'application/octet-stream', 'content-range': '0-9' }, payload: chunk.data }),
    upPUT: async (repo) => {
      const blob = randomBlob(20);
      return repoCell(repo, 'push', { method: 'PUT', url: `${await session(repo)}?digest=${blob.digest}`, headers: { 'content-type': 'application/octet-stream' }, payload: blob.data });
    },
    upGET: async (repo) => repoCell(repo, 'push', { method: 'GET', url: await session(repo) }),
    upDEL: async (repo) => repoCell(repo, 'push', { method: 'DELETE', url: await session(repo) }),
    mntA: mount(MOUNT_SOURCE.mntA),
    mntB: mount(MOUNT_SOURCE.mntB),
    mHEAD: async (repo) => repoCell(repo, 'pull', { method: 'HEAD', url: `/v2/${repo}/manifests/v1` }),
    mGET: async (repo) => repoCell(repo, 'pull', { method: 'GET', url: `/v2/${repo}/manifests/v1`, body: seed(repo).manifest.body }),
    m404: async (repo) => repoCell(repo, 'pull', { method: 'GET', url: `/v2/${repo}/manifests/no-such-tag` }),
    mPUT: async (repo) => {
      const m = newManifest(repo);
      return repoCell(repo, 'push', { method: 'PUT', url: `/v2/${repo}/manifests/cell-${manifests}`, headers: { 'content-type': m.mediaType }, payload: m.body });
    },
    mDEL: async (repo) => {
      const m = newManifest(repo);
      await pushManifest(await admin(), repo, m.digest, m);
      return repoCell(repo, 'delete', { method: 'DELETE', url: `/v2/${repo}/manifests/${m.digest}` });
    },
    tags: async (repo) => repoCell(repo, 'pull', { method: 'GET', url: `/v2/${repo}/tags/list` }),
    refs: async (repo) => repoCell(repo, 'pull', { method: 'GET', url: `/v2/${repo}/referrers/${seed(repo).manifest.digest}` }),
  };
}

/** What is wrong with a response, given the expected status; undefined when it is right. */
function problemOf(res: Res, expected: number, cell: Cell): string | undefined {
  if (res.statusCode !== expected) return `got ${res.statusCode}${res.body === '' ? '' : ` ${res.body.slice(0, 160)}`}`;
  const hasBody = cell.method !== 'HEAD';
  if (expected === 401) {
    const c = challengeOf(res);
    if (c === undefined) return `401 without a Bearer challenge (${header(res, 'www-authenticate')})`;
    if (c.realm !== REALM || c.service !== 'bulwark' || c.scope !== cell.challenge) return `challenge ${header(res, 'www-authenticate')}, expected scope ${cell.challenge ?? '(none)'}`;
    if (hasBody && errorCode(res) !== 'UNAUTHORIZED') return `401 with code ${errorCode(res)}`;
  }
  if (expected === 403 && hasBody && errorCode(res) !== 'DENIED') return `403 with code ${errorCode(res)}`;
  if (expected === 404 && errorCode(res) !== 'MANIFEST_UNKNOWN') return `404 with code ${errorCode(res)}`;
  if ((expected === 200 || expected === 206) && cell.body !== undefined && !res.rawPayload.equals(cell.body)) return 'wrong body';
  return undefined;
}

/** The rows of one principal as a table, mismatching cells as `expected→got`. */
function renderRows(columns: readonly string[], rows: readonly RepositoryRow[], got: ReadonlyMap<string, number>): string {
  const width = (c: string): number => Math.max(c.length, 7);
  const head = ['repo'.padEnd(11), ...columns.map((c) => c.padEnd(width(c)))].join(' ');
  const body = rows.map((r) =>
    [
      r.repo.padEnd(11),
      ...columns.map((c) => {
        const e = r.expected[c] ?? 0;
        const g = got.get(`${r.repo} ${c}`);
        return (g === undefined || g === e ? String(e) : `${e}→${g}!`).padEnd(width(c));
      }),
    ].join(' '),
  );
  return [head, ...body].join('\n');
}

describe('authorization matrix', () => {
  let t: TestApp;
  let adminToken: { token: string; until: number } | undefined;
  const principals = new Map<string, { token: TokenSource; disabled?: Credentials }>();
  let cells: ReturnType<typeof cellBuilders>;
  const { columns, rows } = repositoryRows();
  const registry = registryRows();

  /** The bootstrap admin, for setting up content each cell needs. */
  const admin = async (): Promise<TestApp> => {
    if (adminToken === undefined || adminToken.until < Date.now()) {
      adminToken = { token: await fetchToken(t, bootstrapOf(t), ALL_SCOPES), until: Date.now() + 60_000 };
    }
    return withToken(t, adminToken.token);
  };

  before(async () => {
    t = await startApp({ 'auth.enabled': true, 'auth.disableAdminOnFirstOwner': false, externalUrl: EXTERNAL_URL, 'auth.failures.perAddress': 100_000 });
    const seeded: Seeded = {};
    for (const repo of REPOSITORIES) seeded[repo] = await pushImage(await admin(), repo, 'v1');
    cells = cellBuilders(admin, seeded);
    for (const label of new Set([...registry.map((r) => r.principal), ...rows.map((r) => r.principal)])) principals.set(label, await principalOf(t, label));
  });
  after(() => t.close());

  it('has a row for every built-in role (registry-wide, and on team-a/* unless control-plane), every system scope map, and a cell for every route', () => {
    const labels = new Set(rows.map((r) => r.principal));
    const missing: string[] = [];
    for (const r of ROLES.values()) {
      if (!labels.has(`${r.name}@*`)) missing.push(`${r.name}@*`);
      if (!r.registryWideOnly && !labels.has(`${r.name}@team-a/*`)) missing.push(`${r.name}@team-a/*`);
    }
    for (const m of SYSTEM_SCOPE_MAPS) if (!labels.has(`token:${m.name}`)) missing.push(`token:${m.name}`);
    for (const p of ['none', 'anonymous', 'bootstrap-admin']) if (!labels.has(p)) missing.push(p);
    assert.deepEqual(missing, [], 'principals missing from the matrix');
    assert.deepEqual([...labels].sort(), registry.map((r) => r.principal).sort(), 'both tables list the same principals');
    for (const label of labels) assert.deepEqual(rows.filter((r) => r.principal === label).map((r) => r.repo), [ALLOWED, DENIED], label);
    assert.deepEqual(['base', 'catalog', ...columns].sort(), Object.keys(ROUTES).sort(), 'every route is a column');
    assert.deepEqual(Object.keys(cells).sort(), [...columns].sort(), 'every column has a request');
  });

  describe('registry routes: GET /v2/ and the catalog', () => {
    for (const row of registry) {
      it(`${row.principal}: /v2/ ${row.base}, catalog ${row.catalog}${row.lists !== undefined ? ` listing [${row.lists.join(' ')}]` : ''}`, async () => {
        const p = principals.get(row.principal);
        assert.ok(p !== undefined);
        const problems: string[] = [];
        const base = await p.token([]);
        const baseRes = await t.req('GET', '/v2/', { headers: base === undefined ? {} : bearer(base) });
        const baseProblem = problemOf(baseRes, row.base, { method: 'GET', url: '/v2/', scopes: [], challenge: undefined });
        if (baseProblem !== undefined) problems.push(`GET /v2/: expected ${row.base}, ${baseProblem}`);
        const cat = await p.token(['registry:catalog:*']);
        const catRes = await t.req('GET', '/v2/_catalog', { headers: cat === undefined ? {} : bearer(cat) });
        const catProblem = problemOf(catRes, row.catalog, { method: 'GET', url: '/v2/_catalog', scopes: [], challenge: 'registry:catalog:*' });
        if (catProblem !== undefined) problems.push(`GET /v2/_catalog: expected ${row.catalog}, ${catProblem}`);
        else if (row.lists !== undefined) {
          const listed = catRes.json<{ repositories: string[] }>().repositories;
          if (listed.join(' ') !== row.lists.join(' ')) problems.push(`GET /v2/_catalog listed [${listed.join(' ')}], expected [${row.lists.join(' ')}]`);
        }
        assert.deepEqual(problems, [], `${row.principal}:\n  ${problems.join('\n  ')}`);
      });
    }
  });

  describe('repository routes', () => {
    for (const label of new Set(rows.map((r) => r.principal))) {
      const mine = rows.filter((r) => r.principal === label);
      it(`${label}: ${mine.map((r) => `${r.repo} ${summary(r)}`).join('; ')}`, async () => {
        const p = principals.get(label);
        assert.ok(p !== undefined);
        const got = new Map<string, number>();
        const problems: string[] = [];
        for (const row of mine) {
          if (p.disabled !== undefined) {
            const refused = await requestToken(t, [`repository:${row.repo}:pull`], { creds: p.disabled });
            if (refused.statusCode !== 401) problems.push(`${row.repo}: the token endpoint answered a disabled token's credentials ${refused.statusCode}`);
          }
          for (const column of columns) {
            const build = cells[column];
            assert.ok(build !== undefined);
            const cell = await build(row.repo);
            const token = await p.token(cell.scopes);
            const res = await t.req(cell.method, cell.url, { headers: { ...cell.headers, ...(token === undefined ? {} : bearer(token)) }, ...(cell.payload !== undefined ? { payload: cell.payload } : {}) });
            got.set(`${row.repo} ${column}`, res.statusCode);
            const expected = row.expected[column] ?? 0;
            const problem = problemOf(res, expected, cell);
            if (problem !== undefined) problems.push(`${row.repo} ${column} (${ROUTES[column]?.request}): expected ${expected}, ${problem}`);
          }
        }
        assert.ok(problems.length === 0, `${label}\n${renderRows(columns, mine, got)}\n  ${problems.join('\n  ')}`);
      });
    }
  });

  describe('around the matrix', () => {
    it('a token for pull used to push, by an identity that may push, gets 401 insufficient_scope (ask again), not 403', async () => {
      const token = await principals.get('AcrPush@team-a/*')?.token([`repository:${ALLOWED}:pull`]);
      assert.ok(token !== undefined);
      const res = await t.req('POST', `/v2/${ALLOWED}/blobs/uploads/`, { headers: bearer(token) });
      assert.equal(res.statusCode, 401);
      assert.deepEqual(challengeOf(res), { realm: REALM, service: 'bulwark', scope: `repository:${ALLOWED}:push`, error: 'insufficient_scope' });
    });

    it('a refusal for lack of rights is audited as auth.denied with principal and scope', async () => {
      const events = new EventRecorder(t);
      try {
        const token = await principals.get('AcrPull@team-a/*')?.token([`repository:${DENIED}:pull`]);
        assert.ok(token !== undefined);
        const res = await t.req('GET', `/v2/${DENIED}/tags/list`, { headers: bearer(token) });
        assert.equal(res.statusCode, 403);
        const denied = events.of('auth.denied');
        assert.equal(denied.length, 1);
        assert.equal(denied[0]?.principal, 'service:svc-acrpull-team-a');
        assert.equal(denied[0]?.target, `repository:${DENIED}:pull,metadata_read`);
        assert.equal(denied[0]?.outcome, 'failure');
      } finally {
        events.close();
      }
    });

    it('an upload session of team-b cannot be continued through a team-a URL by a team-a pusher', async () => {
      const foreign = await startUpload(await admin(), DENIED);
      const id = foreign.split('/').pop() ?? '';
      const token = await principals.get('AcrPush@team-a/*')?.token([`repository:${ALLOWED}:push`]);
      assert.ok(token !== undefined);
      const res = await t.req('PATCH', `/v2/${ALLOWED}/blobs/uploads/${id}`, {
        headers: { ...bearer(token), 'content-type': 'application/octet-stream', 'content-range': '0-3' },
        payload: Buffer.from('evil'),
      });
      assert.equal(res.statusCode, 404);
      assert.equal(errorCode(res), 'BLOB_UPLOAD_UNKNOWN');
      // untouched: its owner's first chunk still starts at 0
      const own = await (await admin()).req('PATCH', foreign, { headers: { 'content-type': 'application/octet-stream', 'content-range': '0-3' }, payload: Buffer.from('good') });
      assert.equal(own.statusCode, 202, own.body);
      assert.equal(header(own, 'range'), '0-3');
    });

    it('a mount without from= never takes the blob from a repository the caller may not pull (202, not 201)', async () => {
      const blob = randomBlob(40);
      await pushBlob(await admin(), DENIED, blob);
      const token = await principals.get('AcrPush@team-a/*')?.token([`repository:${ALLOWED}:pull,push`]);
      assert.ok(token !== undefined);
      const res = await t.req('POST', `/v2/${ALLOWED}/blobs/uploads/?mount=${blob.digest}`, { headers: bearer(token) });
      assert.equal(res.statusCode, 202);
      const head = await t.req('HEAD', `/v2/${ALLOWED}/blobs/${blob.digest}`, { headers: bearer(token) });
      assert.equal(head.statusCode, 404, 'the blob was not linked into team-a/app');
      // the same request from an identity that may pull team-b/app mounts it
      const adminRes = await (await admin()).req('POST', `/v2/${ALLOWED}/blobs/uploads/?mount=${blob.digest}`);
      assert.equal(adminRes.statusCode, 201);
    });

    it('the filtered catalog pages through what the caller may see, with a Link while more remain', async () => {
      const token = await principals.get('RepositoryCatalogLister@team-a/*')?.token(['registry:catalog:*']);
      assert.ok(token !== undefined);
      const first = await t.req('GET', '/v2/_catalog?n=1', { headers: bearer(token) });
      assert.equal(first.statusCode, 200);
      assert.deepEqual(first.json(), { repositories: ['team-a/app'] });
      assert.equal(header(first, 'link'), `<${EXTERNAL_URL}/v2/_catalog?n=1&last=team-a%2Fapp>; rel="next"`, 'absolute on the configured external URL');
      const second = await t.req('GET', '/v2/_catalog?n=1&last=team-a%2Fapp', { headers: bearer(token) });
      assert.deepEqual(second.json(), { repositories: ['team-a/src'] });
      assert.equal(header(second, 'link'), undefined);
    });
  });
});

describe('authorization: anonymous pull (auth.anonymousPull=team-a/*)', () => {
  let t: TestApp;
  before(async () => {
    t = await startApp({ 'auth.enabled': true, 'auth.anonymousPull': 'team-a/*', externalUrl: EXTERNAL_URL });
    const admin = withToken(t, await fetchToken(t, bootstrapOf(t), ALL_SCOPES));
    await pushImage(admin, ALLOWED, 'v1');
    await pushImage(admin, DENIED, 'v1');
  });
  after(() => t.close());

  it('anyone may pull team-a/*, with an anonymous token, and nothing else', async () => {
    const token = await fetchToken(t, undefined, [`repository:${ALLOWED}:pull,push,delete`, `repository:${DENIED}:pull`, 'registry:catalog:*']);
    const pull = await t.req('GET', `/v2/${ALLOWED}/manifests/v1`, { headers: bearer(token) });
    assert.equal(pull.statusCode, 200);
    const tags = await t.req('GET', `/v2/${ALLOWED}/tags/list`, { headers: bearer(token) });
    assert.deepEqual(tags.json(), { name: ALLOWED, tags: ['v1'] });
    for (const [method, url, scope] of [
      ['POST', `/v2/${ALLOWED}/blobs/uploads/`, `repository:${ALLOWED}:push`],
      ['DELETE', `/v2/${ALLOWED}/manifests/v1`, `repository:${ALLOWED}:delete`],
      ['GET', `/v2/${DENIED}/manifests/v1`, `repository:${DENIED}:pull`],
      ['GET', '/v2/_catalog', 'registry:catalog:*'],
    ] as const) {
      const res = await t.req(method, url, { headers: bearer(token) });
      assert.equal(res.statusCode, 401, `${method} ${url}`);
      assert.equal(challengeOf(res)?.scope, scope);
    }
  });

  it('without any token the pull is challenged first (the docker flow), with the scope to ask for', async () => {
    const res = await t.req('GET', `/v2/${ALLOWED}/manifests/v1`);
    assert.equal(res.statusCode, 401);
    assert.deepEqual(challengeOf(res), { realm: REALM, service: 'bulwark', scope: `repository:${ALLOWED}:pull` });
  });
});

/** `team-a/app 200 200 206 ...` shortened for a test name: how many cells succeed. */
function summary(r: RepositoryRow): string {
  const values = Object.values(r.expected);
  const ok = values.filter((s) => s < 400 || s === 404).length;
  return ok === 0 ? `all ${[...new Set(values)].join('/')}` : `${ok}/${values.length} allowed`;
}
