/**
 * The authorization matrix, as data: for every principal, the status each /v2 route must answer
 * on a repository the principal is meant to reach (`team-a/app`) and one it is not
 * (`team-b/app`). auth-matrix.test.ts performs every cell and compares; nothing here is derived
 * from src/auth, so the table states independently what each role and scope map must grant,
 * no more and no less.
 *
 * Principals (the row label is the setup):
 * - `none`: no Authorization header at all;
 * - `anonymous`: a token from /oauth2/token without credentials (auth.anonymousPull is empty);
 * - `bootstrap-admin`: the bootstrap admin's Basic credentials;
 * - `<Role>@<scope>`: a service identity holding that role assignment (`+` joins several);
 * - `token:<scope map>`: a repository-scoped token with that scope map, signing in with Basic;
 * - `token:<scope map>(disabled)`: such a token, disabled after it obtained its access tokens.
 *
 * Statuses: the route's success status (or its normal 404 for content that does not exist);
 * 401 = UNAUTHORIZED with a Bearer challenge naming the route's scope; 403 = DENIED.
 */
import type { RepositoryAction } from '../../src/auth/index.js';

export const ALLOWED = 'team-a/app';
export const DENIED = 'team-b/app';
/** Sources of the cross-repository mounts (columns mntA and mntB). */
export const MOUNT_SOURCE = { mntA: 'team-a/src', mntB: 'team-b/src' } as const;
/** Every repository the setup creates: what an unfiltered catalog lists. */
export const REPOSITORIES = ['team-a/app', 'team-a/src', 'team-b/app', 'team-b/src'] as const;

/** The custom scope map of `token:team-a-writers`. */
export const CUSTOM_SCOPE_MAPS: Record<string, readonly string[]> = {
  'team-a-writers': ['repositories/team-a/*/content/read', 'repositories/team-a/*/content/write', 'repositories/team-a/*/metadata/read'],
};

export interface RouteSpec {
  readonly request: string;
  /** the action the route needs (the scope of its challenge); `none`: any valid token */
  readonly needs: RepositoryAction | 'catalog' | 'none';
  readonly success: string;
}

/** The columns of the tables below. `<repo>` is the row's repository; `<layer>` a blob in it. */
export const ROUTES: Record<string, RouteSpec> = {
  base: { request: 'GET /v2/', needs: 'none', success: '200' },
  catalog: { request: 'GET /v2/_catalog', needs: 'catalog', success: '200, listing only what the caller may see' },
  bHEAD: { request: 'HEAD /v2/<repo>/blobs/<layer>', needs: 'pull', success: '200' },
  bGET: { request: 'GET /v2/<repo>/blobs/<layer>', needs: 'pull', success: '200' },
  bRANGE: { request: 'GET /v2/<repo>/blobs/<layer> with Range: bytes=0-9', needs: 'pull', success: '206' },
  bDEL: { request: 'DELETE /v2/<repo>/blobs/<a blob pushed for the cell>', needs: 'delete', success: '202' },
  upPOST: { request: 'POST /v2/<repo>/blobs/uploads/ (open a session)', needs: 'push', success: '202' },
  upMONO: { request: 'POST /v2/<repo>/blobs/uploads/?digest= with the blob (monolithic)', needs: 'push', success: '201' },
  upPATCH: { request: 'PATCH <session> with a chunk', needs: 'push', success: '202' },
  upPUT: { request: 'PUT <session>?digest= with the last chunk', needs: 'push', success: '201' },
  upGET: { request: 'GET <session> (status)', needs: 'push', success: '204' },
  upDEL: { request: 'DELETE <session> (cancel)', needs: 'push', success: '204' },
  mntA: { request: 'POST /v2/<repo>/blobs/uploads/?mount=<blob>&from=team-a/src', needs: 'push', success: '201 with pull on team-a/src, else 202 (a plain session)' },
  mntB: { request: 'POST /v2/<repo>/blobs/uploads/?mount=<blob>&from=team-b/src', needs: 'push', success: '201 with pull on team-b/src, else 202 (a plain session)' },
  mHEAD: { request: 'HEAD /v2/<repo>/manifests/v1', needs: 'pull', success: '200' },
  mGET: { request: 'GET /v2/<repo>/manifests/v1', needs: 'pull', success: '200' },
  m404: { request: 'GET /v2/<repo>/manifests/no-such-tag', needs: 'pull', success: '404 MANIFEST_UNKNOWN' },
  mPUT: { request: 'PUT /v2/<repo>/manifests/<new tag>', needs: 'push', success: '201' },
  mDEL: { request: 'DELETE /v2/<repo>/manifests/<digest of a manifest pushed for the cell>', needs: 'delete', success: '202' },
  tags: { request: 'GET /v2/<repo>/tags/list', needs: 'pull', success: '200 (pull or metadata_read)' },
  refs: { request: 'GET /v2/<repo>/referrers/<digest of v1>', needs: 'pull', success: '200' },
};

/**
 * Registry-level routes: `base` and `catalog` statuses, then what the catalog lists (`-`: nothing).
 * `anonymous` holds a token from the endpoint (with an empty access claim): GET /v2/ only checks
 * that the token is one of this registry's, as Distribution does, so it answers 200.
 * The catalog lists what the caller has rights on, plus the names a RepositoryCatalogLister
 * assignment covers (ACR's Catalog Lister): registry-wide it lists every repository.
 */
export const REGISTRY_MATRIX = `
principal                                            base  catalog  lists
none                                                 401   401
anonymous                                            200   401
bootstrap-admin                                      200   200      team-a/app team-a/src team-b/app team-b/src
Owner@*                                              200   200      team-a/app team-a/src team-b/app team-b/src
Contributor@*                                        200   200      team-a/app team-a/src team-b/app team-b/src
Reader@*                                             200   200      team-a/app team-a/src team-b/app team-b/src
AcrPull@*                                            200   403
AcrPush@*                                            200   403
AcrDelete@*                                          200   403
AcrImageSigner@*                                     200   403
AcrQuarantineReader@*                                200   403
AcrQuarantineWriter@*                                200   403
RepositoryReader@*                                   200   403
RepositoryWriter@*                                   200   403
RepositoryContributor@*                              200   403
RepositoryCatalogLister@*                            200   200      team-a/app team-a/src team-b/app team-b/src
RepositoryCatalogLister@team-a/*                     200   200      team-a/app team-a/src
AcrPull@team-a/*                                     200   403
AcrPush@team-a/*                                     200   403
AcrDelete@team-a/*                                   200   403
AcrImageSigner@team-a/*                              200   403
AcrQuarantineReader@team-a/*                         200   403
AcrQuarantineWriter@team-a/*                         200   403
RepositoryReader@team-a/*                            200   403
RepositoryWriter@team-a/*                            200   403
RepositoryContributor@team-a/*                       200   403
RepositoryCatalogLister@*+RepositoryReader@team-a/*  200   200      team-a/app team-a/src team-b/app team-b/src
token:_repositories_pull                             200   403
token:_repositories_pull_metadata_read               200   403
token:_repositories_push                             200   403
token:_repositories_push_metadata_write              200   403
token:_repositories_admin                            200   403
token:team-a-writers                                 200   403
token:_repositories_admin(disabled)                  401   401
`;

/** Repository routes, one row per principal and repository. */
export const REPOSITORY_MATRIX = `
principal                                            repo        bHEAD  bGET  bRANGE  bDEL  upPOST  upMONO  upPATCH  upPUT  upGET  upDEL  mntA  mntB  mHEAD  mGET  m404  mPUT  mDEL  tags  refs
none                                                 team-a/app  401    401   401     401   401     401     401      401    401    401    401   401   401    401   401   401   401   401   401
none                                                 team-b/app  401    401   401     401   401     401     401      401    401    401    401   401   401    401   401   401   401   401   401
anonymous                                            team-a/app  401    401   401     401   401     401     401      401    401    401    401   401   401    401   401   401   401   401   401
anonymous                                            team-b/app  401    401   401     401   401     401     401      401    401    401    401   401   401    401   401   401   401   401   401
bootstrap-admin                                      team-a/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
bootstrap-admin                                      team-b/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
Owner@*                                              team-a/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
Owner@*                                              team-b/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
Contributor@*                                        team-a/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
Contributor@*                                        team-b/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
Reader@*                                             team-a/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
Reader@*                                             team-b/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
AcrPull@*                                            team-a/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
AcrPull@*                                            team-b/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
AcrPush@*                                            team-a/app  200    200   206     403   202     201     202      201    204    204    201   201   200    200   404   201   403   200   200
AcrPush@*                                            team-b/app  200    200   206     403   202     201     202      201    204    204    201   201   200    200   404   201   403   200   200
AcrDelete@*                                          team-a/app  403    403   403     202   403     403     403      403    403    403    403   403   403    403   403   403   202   403   403
AcrDelete@*                                          team-b/app  403    403   403     202   403     403     403      403    403    403    403   403   403    403   403   403   202   403   403
AcrImageSigner@*                                     team-a/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrImageSigner@*                                     team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrQuarantineReader@*                                team-a/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrQuarantineReader@*                                team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrQuarantineWriter@*                                team-a/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrQuarantineWriter@*                                team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
RepositoryReader@*                                   team-a/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
RepositoryReader@*                                   team-b/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
RepositoryWriter@*                                   team-a/app  200    200   206     403   202     201     202      201    204    204    201   201   200    200   404   201   403   200   200
RepositoryWriter@*                                   team-b/app  200    200   206     403   202     201     202      201    204    204    201   201   200    200   404   201   403   200   200
RepositoryContributor@*                              team-a/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
RepositoryContributor@*                              team-b/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
RepositoryCatalogLister@*                            team-a/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
RepositoryCatalogLister@team-a/*                     team-a/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
RepositoryCatalogLister@*                            team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
RepositoryCatalogLister@team-a/*                     team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrPull@team-a/*                                     team-a/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
AcrPull@team-a/*                                     team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrPush@team-a/*                                     team-a/app  200    200   206     403   202     201     202      201    204    204    201   202   200    200   404   201   403   200   200
AcrPush@team-a/*                                     team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrDelete@team-a/*                                   team-a/app  403    403   403     202   403     403     403      403    403    403    403   403   403    403   403   403   202   403   403
AcrDelete@team-a/*                                   team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrImageSigner@team-a/*                              team-a/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrImageSigner@team-a/*                              team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrQuarantineReader@team-a/*                         team-a/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrQuarantineReader@team-a/*                         team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrQuarantineWriter@team-a/*                         team-a/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
AcrQuarantineWriter@team-a/*                         team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
RepositoryReader@team-a/*                            team-a/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
RepositoryReader@team-a/*                            team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
RepositoryWriter@team-a/*                            team-a/app  200    200   206     403   202     201     202      201    204    204    201   202   200    200   404   201   403   200   200
RepositoryWriter@team-a/*                            team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
RepositoryContributor@team-a/*                       team-a/app  200    200   206     202   202     201     202      201    204    204    201   202   200    200   404   201   202   200   200
RepositoryContributor@team-a/*                       team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
RepositoryCatalogLister@*+RepositoryReader@team-a/*  team-a/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
RepositoryCatalogLister@*+RepositoryReader@team-a/*  team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
token:_repositories_pull                             team-a/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
token:_repositories_pull                             team-b/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
token:_repositories_pull_metadata_read               team-a/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
token:_repositories_pull_metadata_read               team-b/app  200    200   206     403   403     403     403      403    403    403    403   403   200    200   404   403   403   200   200
token:_repositories_push                             team-a/app  200    200   206     403   202     201     202      201    204    204    201   201   200    200   404   201   403   200   200
token:_repositories_push                             team-b/app  200    200   206     403   202     201     202      201    204    204    201   201   200    200   404   201   403   200   200
token:_repositories_push_metadata_write              team-a/app  200    200   206     403   202     201     202      201    204    204    201   201   200    200   404   201   403   200   200
token:_repositories_push_metadata_write              team-b/app  200    200   206     403   202     201     202      201    204    204    201   201   200    200   404   201   403   200   200
token:_repositories_admin                            team-a/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
token:_repositories_admin                            team-b/app  200    200   206     202   202     201     202      201    204    204    201   201   200    200   404   201   202   200   200
token:team-a-writers                                 team-a/app  200    200   206     403   202     201     202      201    204    204    201   202   200    200   404   201   403   200   200
token:team-a-writers                                 team-b/app  403    403   403     403   403     403     403      403    403    403    403   403   403    403   403   403   403   403   403
token:_repositories_admin(disabled)                  team-a/app  401    401   401     401   401     401     401      401    401    401    401   401   401    401   401   401   401   401   401
token:_repositories_admin(disabled)                  team-b/app  401    401   401     401   401     401     401      401    401    401    401   401   401    401   401   401   401   401   401
`;

// --- the tables as records ---------------------------------------------------------------------

export interface RegistryRow {
  readonly principal: string;
  readonly base: number;
  readonly catalog: number;
  /** what the catalog lists, when it answers 200 */
  readonly lists: readonly string[] | undefined;
}

export interface RepositoryRow {
  readonly principal: string;
  readonly repo: string;
  readonly expected: Readonly<Record<string, number>>;
}

function lines(table: string): string[][] {
  return table
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => l.split(/\s+/));
}

export function registryRows(): RegistryRow[] {
  const [header, ...rows] = lines(REGISTRY_MATRIX);
  if (header?.join(' ') !== 'principal base catalog lists') throw new Error('REGISTRY_MATRIX: unexpected header');
  return rows.map(([principal = '', base = '', catalog = '', ...lists]) => ({
    principal,
    base: Number(base),
    catalog: Number(catalog),
    lists: catalog !== '200' ? undefined : lists.join(' ') === '-' ? [] : lists,
  }));
}

export function repositoryRows(): { columns: string[]; rows: RepositoryRow[] } {
  const [header = [], ...rows] = lines(REPOSITORY_MATRIX);
  const columns = header.slice(2);
  const unknown = columns.filter((c) => ROUTES[c] === undefined);
  if (header[0] !== 'principal' || header[1] !== 'repo' || unknown.length > 0) throw new Error(`REPOSITORY_MATRIX: bad header ${unknown.join(' ')}`);
  return {
    columns,
    rows: rows.map(([principal = '', repo = '', ...cells]) => {
      if (cells.length !== columns.length) throw new Error(`REPOSITORY_MATRIX: ${principal} ${repo} has ${cells.length} cells, expected ${columns.length}`);
      return { principal, repo, expected: Object.fromEntries(columns.map((c, i) => [c, Number(cells[i])])) };
    }),
  };
}
