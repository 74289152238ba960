/**
 * Scenario "images": 16 concurrent clients push small images (3 layers of 1-64 KiB, a config, a
 * manifest), then pull them back, the way docker/containerd do: HEAD each blob first and upload
 * only the missing ones (POST + PUT), PUT the manifest by tag; pull = GET manifest by tag, GET
 * config, GET layers, each blob verified against its digest.
 */
import type { RegistryClient } from '../client.js';
import { boundedLoop, percentile, type LoopResult } from '../load.js';
import type { Measurement, Scenario, ScenarioContext, Step } from '../types.js';
import { smallImage, type Blob } from './fixtures.js';

const CLIENTS = 16;
/** Images spread over this many repositories (image i goes to repository i mod REPOS). */
const REPOS = 16;

interface ManifestRef {
  digest: string;
}

export const imagesScenario: Scenario = {
  name: 'images',
  description: `${CLIENTS} concurrent clients push then pull small images (3 layers of 1-64 KiB)`,
  steps(ctx: ScenarioContext): Step[] {
    const { client } = ctx;
    const maxCount = ctx.quick ? 64 : 1600;
    const maxSeconds = ctx.quick ? 5 : 20;
    const repo = (i: number): string => `bench-${ctx.runId}/images-${i % REPOS}`;
    let pushed = 0;
    return [
      {
        name: `push (${CLIENTS} clients)`,
        run: async () => {
          // Built before the clock starts (and cached): the same images for both registries.
          for (let i = 0; i < maxCount; i++) smallImage(i);
          const r = await boundedLoop({ concurrency: CLIENTS, maxCount, maxSeconds, cpu: ctx.serverCpuSeconds }, async (i) => {
            const img = smallImage(i);
            for (const blob of [...img.layers, img.config]) await pushIfMissing(client, repo(i), blob);
            await client.putManifest(repo(i), `v${i}`, img.manifest);
          });
          pushed = r.count;
          return rows('push', r);
        },
      },
      {
        name: `pull (${CLIENTS} clients)`,
        run: async () => {
          const r = await boundedLoop({ concurrency: CLIENTS, maxCount: pushed, maxSeconds, cpu: ctx.serverCpuSeconds }, async (i) => {
            const res = await client.getManifest(repo(i), `v${i}`);
            const manifest = JSON.parse(res.body.toString('utf8')) as { config?: ManifestRef; layers?: ManifestRef[] };
            const refs = [manifest.config, ...(manifest.layers ?? [])];
            if (refs.length !== 4 || refs.some((x) => x === undefined)) throw new Error(`GET manifest v${i}: unexpected manifest`);
            for (const x of refs) if (x !== undefined) await client.pullBlob(repo(i), x.digest);
          });
          return rows('pull', r);
        },
      },
    ];
  },
};

async function pushIfMissing(client: RegistryClient, repo: string, blob: Blob): Promise<void> {
  if (await client.headBlob(repo, blob.digest)) return;
  await client.pushMonolithic(repo, blob);
}

function rows(op: 'push' | 'pull', r: LoopResult): Measurement[] {
  const detail = { count: r.count, seconds: r.seconds, timeBound: r.timeBound, serverCpuSeconds: r.cpuSeconds };
  const base = { scenario: 'images', detail };
  return [
    {
      ...base,
      id: `images.${op}.ips`,
      label: `small images ${op}ed, ${CLIENTS} clients`,
      unit: 'images/s',
      better: 'higher',
      goal: { kind: 'ratio', min: 1.5 },
      value: r.count / r.seconds,
    },
    { ...base, id: `images.${op}.p50`, label: `small image ${op} p50`, unit: 'ms', better: 'lower', value: percentile(r.latenciesMs, 50) },
    { ...base, id: `images.${op}.p99`, label: `small image ${op} p99`, unit: 'ms', better: 'lower', value: percentile(r.latenciesMs, 99) },
    {
      ...base,
      id: `images.${op}.cpu`,
      label: `small image ${op}: server CPU`,
      unit: 'CPU ms/image',
      better: 'lower',
      value: (r.cpuSeconds * 1e3) / r.count,
    },
  ];
}
