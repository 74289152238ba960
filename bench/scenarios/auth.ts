/**
 * Scenario "auth": what token authentication costs, Bulwark against itself. The bench's Bulwark
 * runs with authentication off; this scenario starts a second one with it on (its own data dir,
 * its bootstrap admin) and measures:
 * - access tokens issued per second at concurrency 16: GET /oauth2/token with the bootstrap
 *   admin's Basic credentials (what `docker pull` does after `docker login`), and POST
 *   /oauth2/token with grant_type=refresh_token (a stored identity token);
 * - manifest GET by tag at concurrency 64 (docker's Accept header) with a bearer token, fetched
 *   once and reused until it nears expiry as docker does, against the auth-on server; and the same
 *   GETs without a token against the auth-off server, in alternating rounds so that drifts of the
 *   machine hit both. Target: auth on >= 0.9x auth off.
 * Distribution has no authentication: the scenario has no steps for it, its column reads "-".
 */
import { bootstrapCredentials, startServer, type Credentials, type RunningServer } from '../../test/testkit/server.js';
import { RegistryClient } from '../client.js';
import { boundedLoop, percentile, sum, type LoopResult } from '../load.js';
import type { ProcessMonitor } from '../procstats.js';
import { BearerToken, parseChallenge, TokenEndpoint, tokenAnswer } from '../token-client.js';
import { watchExtraProcess } from '../extra-process.js';
import type { Measurement, Scenario, ScenarioContext, Step } from '../types.js';
import { configBlob, imageManifest, layerBlob } from './fixtures.js';

const TOKEN_CONCURRENCY = 16;
const GET_CONCURRENCY = 64;
/** Tags pushed to both servers before the timed loops; GETs rotate over them. */
const WARM_TAGS = 100;
/** Every token answer carries this (checked without parsing the JSON, to keep the client cheap). */
const TOKEN_FIELD = Buffer.from('"access_token":"');

/** The auth-on server and the clients of the timed loops, made by the setup step. */
interface AuthOn {
  server: RunningServer;
  monitor: ProcessMonitor;
  admin: Credentials;
  /** the token endpoint, on a client that sends only the credentials each call passes */
  endpoint: TokenEndpoint;
  refreshToken: string;
  pullToken: BearerToken;
  /** manifest GETs to the auth-on server, with the pull token */
  on: RegistryClient;
  /** manifest GETs to the auth-off server (a fresh agent, like `on`) */
  off: RegistryClient;
}

export const authScenario: Scenario = {
  name: 'auth',
  description: `Bulwark with authentication on: access tokens/s (c=${TOKEN_CONCURRENCY}), manifest GET auth on vs off (c=${GET_CONCURRENCY})`,
  steps(ctx: ScenarioContext): Step[] {
    if (ctx.target !== 'bulwark') return [];
    const repo = `bench-${ctx.runId}/auth`;
    const pullScope = `repository:${repo}:pull`;
    const tokenBounds = { concurrency: TOKEN_CONCURRENCY, maxCount: ctx.quick ? 500 : 20000, maxSeconds: ctx.quick ? 2 : 8 };
    const getBounds = { concurrency: GET_CONCURRENCY, maxCount: ctx.quick ? 1000 : 40000, maxSeconds: ctx.quick ? 2 : 8 };
    const rounds = ctx.quick ? 1 : 3;
    let state: AuthOn | undefined;
    const live = (): AuthOn => {
      if (state === undefined) throw new Error('the auth-on server was not set up');
      return state;
    };
    const authCpu = (): number => live().monitor.cpuSecondsNow();

    const tokenStep = (grant: 'basic' | 'refresh'): Step => ({
      name: `access tokens, ${grant === 'basic' ? 'Basic credentials' : 'refresh_token grant'}, c=${TOKEN_CONCURRENCY}`,
      run: async () => {
        const s = live();
        const issue = grant === 'basic' ? () => s.endpoint.withPassword(s.admin.username, s.admin.password, pullScope) : () => s.endpoint.withRefreshToken(s.refreshToken, pullScope);
        const r = await boundedLoop({ ...tokenBounds, cpu: authCpu }, async () => {
          const res = await issue();
          if (!res.body.includes(TOKEN_FIELD)) throw new Error(`token endpoint (${grant}): 200 without an access_token`);
        });
        return tokenRows(grant, r);
      },
    });

    const off: LoopResult[] = [];
    const on: LoopResult[] = [];
    const getRound = (which: 'off' | 'on', round: number): Step => ({
      name: `manifest GET c=${GET_CONCURRENCY}, auth ${which} (round ${round + 1}/${rounds})`,
      run: async () => {
        const s = live();
        const client = which === 'on' ? s.on : s.off;
        const r = await boundedLoop({ ...getBounds, cpu: which === 'on' ? authCpu : ctx.serverCpuSeconds }, async (i) => {
          const res = await client.getManifest(repo, `warm-${i % WARM_TAGS}`);
          if (res.body.length === 0) throw new Error(`GET manifest warm-${i % WARM_TAGS} (auth ${which}): empty body`);
        });
        (which === 'on' ? on : off).push(r);
        return which === 'on' && on.length === rounds ? getRows(sum(off), sum(on), s) : [];
      },
    });

    const setup: Step = {
      name: 'start a Bulwark with authentication on, push and warm up (untimed)',
      run: async () => {
        state = await setUp(ctx, repo, pullScope);
        return [];
      },
    };
    const gets = Array.from({ length: rounds }, (_, k) => [getRound('off', k), getRound('on', k)]).flat();
    return [setup, tokenStep('basic'), tokenStep('refresh'), ...gets];
  },
};

async function setUp(ctx: ScenarioContext, repo: string, pullScope: string): Promise<AuthOn> {
  const server = await startServer({ auth: true });
  ctx.defer(() => server.dispose());
  const monitor = watchExtraProcess(ctx, 'auth-on server', server.child.pid);
  ctx.log(`auth-on Bulwark listening on ${server.url}, pid ${monitor.pid}, data in ${server.dataDir}`);
  const admin = await bootstrapCredentials(server.dataDir);

  const clients: RegistryClient[] = [];
  const client = (url: string, authorization?: () => Promise<string>): RegistryClient => {
    const c = new RegistryClient(url, authorization === undefined ? {} : { authorization });
    clients.push(c);
    return c;
  };
  ctx.defer(async () => clients.forEach((c) => c.close()));

  // Find the token endpoint as a client does: an anonymous request answers 401 with the challenge.
  const tokenClient = client(server.url);
  const challenge = parseChallenge(await tokenClient.request('GET', `/v2/${repo}/manifests/warm-0`, { expect: [401] }));
  if (challenge.scope !== pullScope) throw new Error(`401 challenge: scope ${String(challenge.scope)}, expected ${pullScope}`);
  const endpoint = new TokenEndpoint(tokenClient, challenge);
  const tokenFor = (scope: string): BearerToken => new BearerToken(async () => tokenAnswer(await endpoint.withPassword(admin.username, admin.password, scope)));

  // The same repository content on both servers.
  const layer = layerBlob('auth-layer', 4096);
  const config = configBlob([layer], '2024-01-01T00:00:00Z');
  const manifest = (i: number): Buffer => imageManifest(config, [layer], { 'org.example.bench.id': `auth-${i}` });
  const pusher = client(server.url, tokenFor(`repository:${repo}:pull,push`).header);
  const off = client(ctx.client.base.href);
  const warmUp = (maxCount: number, op: (i: number) => Promise<void>): Promise<unknown> => boundedLoop({ concurrency: 1, maxCount, maxSeconds: 30 }, op);
  for (const c of [pusher, off]) {
    await c.pushMonolithic(repo, layer);
    await c.pushMonolithic(repo, config);
    await warmUp(WARM_TAGS, (i) => c.putManifest(repo, `warm-${i}`, manifest(i)));
  }

  const pullToken = tokenFor(pullScope);
  const on = client(server.url, pullToken.header);
  for (const c of [on, off]) {
    const first = await c.getManifest(repo, 'warm-0');
    if (!first.body.equals(manifest(0))) throw new Error(`GET manifest warm-0 from ${c.base.href}: body differs from the manifest PUT`);
    await warmUp(200, async (i) => void (await c.getManifest(repo, `warm-${i % WARM_TAGS}`)));
  }
  const refreshToken = await endpoint.refreshToken(admin.username, admin.password, pullScope);
  await warmUp(50, async () => {
    tokenAnswer(await endpoint.withPassword(admin.username, admin.password, pullScope));
    tokenAnswer(await endpoint.withRefreshToken(refreshToken, pullScope));
  });
  // The auth-on server's own window: its peak RSS over the timed steps.
  monitor.begin();
  return { server, monitor, admin, endpoint, refreshToken, pullToken, on, off };
}

function detail(r: LoopResult): Record<string, number | boolean> {
  return { count: r.count, seconds: r.seconds, timeBound: r.timeBound, serverCpuSeconds: r.cpuSeconds };
}

function tokenRows(grant: 'basic' | 'refresh', r: LoopResult): Measurement[] {
  const base = { scenario: 'auth', detail: detail(r) };
  const what = `access tokens, ${grant === 'basic' ? 'Basic (bootstrap admin)' : 'refresh_token grant'}, c=${TOKEN_CONCURRENCY}`;
  return [
    { ...base, id: `auth.token.${grant}.c${TOKEN_CONCURRENCY}.tps`, label: what, unit: 'tokens/s', better: 'higher', value: r.count / r.seconds },
    { ...base, id: `auth.token.${grant}.c${TOKEN_CONCURRENCY}.p50`, label: `${what} p50`, unit: 'ms', better: 'lower', value: percentile(r.latenciesMs, 50) },
    { ...base, id: `auth.token.${grant}.c${TOKEN_CONCURRENCY}.p99`, label: `${what} p99`, unit: 'ms', better: 'lower', value: percentile(r.latenciesMs, 99) },
    { ...base, id: `auth.token.${grant}.c${TOKEN_CONCURRENCY}.cpu`, label: `${what}: server CPU`, unit: 'CPU us/token', better: 'lower', value: (r.cpuSeconds * 1e6) / r.count },
  ];
}

function getRows(off: LoopResult, on: LoopResult, s: AuthOn): Measurement[] {
  const c = GET_CONCURRENCY;
  const rate = (r: LoopResult): number => r.count / r.seconds;
  const one = (which: 'off' | 'on', r: LoopResult): Measurement[] => {
    const base = { scenario: 'auth', detail: which === 'on' ? { ...detail(r), tokensFetched: s.pullToken.fetches } : detail(r) };
    const what = `manifest GET c=${c}, auth ${which}${which === 'on' ? ' (bearer)' : ''}`;
    return [
      { ...base, id: `auth.get.c${c}.${which}.rps`, label: what, unit: 'req/s', better: 'higher', value: rate(r) },
      { ...base, id: `auth.get.c${c}.${which}.p99`, label: `${what} p99`, unit: 'ms', better: 'lower', value: percentile(r.latenciesMs, 99) },
      { ...base, id: `auth.get.c${c}.${which}.cpu`, label: `${what}: server CPU`, unit: 'CPU us/req', better: 'lower', value: (r.cpuSeconds * 1e6) / r.count },
    ];
  };
  const window = s.monitor.end();
  return [
    ...one('off', off),
    ...one('on', on),
    {
      id: `auth.get.c${c}.on-vs-off`,
      scenario: 'auth',
      label: `manifest GET c=${c}: auth on / auth off`,
      unit: 'x',
      better: 'higher',
      goal: { kind: 'bulwark-min', min: 0.9 },
      value: rate(on) / rate(off),
      // Server CPU per request is the steadier comparison on a busy machine: both are kept.
      detail: { onCount: on.count, offCount: off.count, onSeconds: on.seconds, offSeconds: off.seconds, cpuUsPerReqOn: (on.cpuSeconds * 1e6) / on.count, cpuUsPerReqOff: (off.cpuSeconds * 1e6) / off.count },
    },
    { id: 'auth.on.rss', scenario: 'auth', label: 'auth-on server peak RSS, timed steps', unit: 'MiB', better: 'lower', value: window.peakRssMiB },
    { id: 'auth.on.cpu', scenario: 'auth', label: 'auth-on server CPU, timed steps', unit: 'CPU s', better: 'lower', value: window.cpuSeconds },
  ];
}
