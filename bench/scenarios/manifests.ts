/**
 * Scenario "manifests": manifest PUT (each one unique, under its own tag) and manifest GET by tag
 * with the Accept header of docker/containerd, at concurrency 1, 16 and 64.
 */
import { MediaType } from '../client.js';
import { sha256 } from '../content.js';
import { boundedLoop, percentile, type LoopResult } from '../load.js';
import type { Goal, Measurement, Scenario, ScenarioContext, Step } from '../types.js';
import { configBlob, imageManifest, layerBlob } from './fixtures.js';

const CONCURRENCY = [1, 16, 64] as const;
/** Tags pushed before the timed loops; GETs rotate over them. */
const WARM_TAGS = 100;

export const manifestsScenario: Scenario = {
  name: 'manifests',
  description: 'manifest PUT and GET by tag at concurrency 1, 16, 64',
  steps(ctx: ScenarioContext): Step[] {
    const { client } = ctx;
    const repo = `bench-${ctx.runId}/manifests`;
    const layer = layerBlob('manifests-layer', 4096);
    const config = configBlob([layer], '2024-01-01T00:00:00Z');
    const manifest = (id: string): Buffer => imageManifest(config, [layer], { 'org.example.bench.id': id });
    const putBounds = { maxCount: ctx.quick ? 300 : 4000, maxSeconds: ctx.quick ? 2 : 8, cpu: ctx.serverCpuSeconds };
    const getBounds = { maxCount: ctx.quick ? 1000 : 40000, maxSeconds: ctx.quick ? 2 : 8, cpu: ctx.serverCpuSeconds };

    const setup: Step = {
      name: 'setup and warm-up (untimed)',
      run: async () => {
        // Distribution requires the referenced blobs to exist in the repository first.
        await client.pushMonolithic(repo, layer);
        await client.pushMonolithic(repo, config);
        // The tags that the GET loops read, and a first check of the GET answer.
        for (let i = 0; i < WARM_TAGS; i++) await client.putManifest(repo, `warm-${i}`, manifest(`warm-${i}`));
        const first = await client.getManifest(repo, 'warm-0');
        checkGet(first.body, first.headers['content-type'], first.headers['docker-content-digest'], manifest('warm-0'));
        for (let i = 0; i < 200; i++) await client.getManifest(repo, `warm-${i % WARM_TAGS}`);
        return [];
      },
    };
    const puts = CONCURRENCY.map(
      (c): Step => ({
        name: `PUT c=${c}`,
        run: async () => {
          const r = await boundedLoop({ concurrency: c, ...putBounds }, async (i) => {
            await client.putManifest(repo, `c${c}-${i}`, manifest(`c${c}-${i}`));
          });
          return rows('put', c, r, { kind: 'ratio', min: 1.5 });
        },
      }),
    );
    const gets = CONCURRENCY.map(
      (c): Step => ({
        name: `GET c=${c}`,
        run: async () => {
          const r = await boundedLoop({ concurrency: c, ...getBounds }, async (i) => {
            const res = await client.getManifest(repo, `warm-${i % WARM_TAGS}`);
            if (res.body.length === 0) throw new Error(`GET manifest warm-${i % WARM_TAGS}: empty body`);
          });
          return rows('get', c, r, c === 64 ? { kind: 'ratio', min: 3 } : undefined);
        },
      }),
    );
    return [setup, ...puts, ...gets];
  },
};

function rows(op: 'put' | 'get', c: number, r: LoopResult, goal: Goal | undefined): Measurement[] {
  const detail = { count: r.count, seconds: r.seconds, timeBound: r.timeBound, serverCpuSeconds: r.cpuSeconds };
  const base = { scenario: 'manifests', detail };
  const what = `manifest ${op.toUpperCase()} c=${c}`;
  return [
    {
      ...base,
      id: `manifests.${op}.c${c}.rps`,
      label: what,
      unit: 'req/s',
      better: 'higher',
      ...(goal === undefined ? {} : { goal }),
      value: r.count / r.seconds,
    },
    { ...base, id: `manifests.${op}.c${c}.p50`, label: `${what} p50`, unit: 'ms', better: 'lower', value: percentile(r.latenciesMs, 50) },
    { ...base, id: `manifests.${op}.c${c}.p99`, label: `${what} p99`, unit: 'ms', better: 'lower', value: percentile(r.latenciesMs, 99) },
    {
      ...base,
      id: `manifests.${op}.c${c}.cpu`,
      label: `${what}: server CPU`,
      unit: 'CPU us/req',
      better: 'lower',
      value: (r.cpuSeconds * 1e6) / r.count,
    },
  ];
}

/** The GET answer must be the bytes that were PUT, with their digest and media type. */
function checkGet(body: Buffer, contentType: string | undefined, digest: string | string[] | undefined, expected: Buffer): void {
  if (!body.equals(expected)) throw new Error('GET manifest: body differs from the manifest PUT');
  if (contentType !== MediaType.ociManifest) throw new Error(`GET manifest: Content-Type ${String(contentType)}`);
  // Docker-Content-Digest is optional in distribution-spec v1.1, but must be right when sent.
  if (digest !== undefined && digest !== sha256(expected)) throw new Error(`GET manifest: Docker-Content-Digest ${String(digest)}`);
}
