/**
 * buildah builds an image from scratch (two commits, so two layers), pushes it to the registry
 * under test, and skopeo checks what the registry serves against what buildah reported. Buildah
 * runs with its own vfs storage and policy in a temp dir; `from scratch` needs no network.
 *
 * buildah signs in with `buildah login --password-stdin` (the bootstrap admin when Bulwark runs with
 * authentication); its pushes and the skopeo checks read the client's auth file.
 *
 * E2E_TARGET=distribution runs the same file against CNCF Distribution.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hashBlob, layoutDescriptor, readBlobJson, readLayerFiles } from '../testkit/oci-layout.js';
import { describeWithTools, loginArgs, makeClientEnv, run, startTarget, tempDir, type ClientEnv, type RunOptions, type RunResult, type TargetServer } from './tools.js';

const sha256 = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

interface Rootfs {
  rootfs: { diff_ids: string[] };
}

interface Manifest {
  mediaType: string;
  config: { digest: string };
  layers: { digest: string }[];
}

describeWithTools('buildah', ['buildah', 'skopeo'], () => {
  let server: TargetServer;
  let client: ClientEnv;
  let work: string;
  /** id (config digest, hex) of the two-layer image built in before() */
  let imageId: string;

  const buildah = (args: string[], opts: Pick<RunOptions, 'input'> = {}): Promise<RunResult> => {
    const d = client.dir;
    return run('buildah', ['--root', join(d, 'root'), '--runroot', join(d, 'runroot'), '--storage-driver', 'vfs', ...args], {
      ...opts,
      env: client.env,
    });
  };
  const policy = (): string[] => ['--signature-policy', client.policyPath];
  const skopeo = (args: string[]): Promise<RunResult> => run('skopeo', ['--policy', client.policyPath, ...args], { env: client.env });

  /** Build: scratch + a.txt → commit "base"; from base + dir/b.txt → commit "app" (two layers). */
  const buildTwoLayerImage = async (): Promise<string> => {
    const ctx = join(work, 'context');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'a.txt'), 'first layer from buildah\n');
    await writeFile(join(ctx, 'b.txt'), 'second layer from buildah\n');
    const base = (await buildah(['from', ...policy(), 'scratch'])).stdout.trim();
    await buildah(['copy', base, join(ctx, 'a.txt'), '/a.txt']);
    await buildah(['config', '--cmd', '/a.txt', '--label', 'org.example.e2e=bulwark', base]);
    await buildah(['commit', ...policy(), base, 'localhost/e2e-base']);
    const app = (await buildah(['from', ...policy(), '--pull-never', 'localhost/e2e-base'])).stdout.trim();
    await buildah(['copy', app, join(ctx, 'b.txt'), '/dir/b.txt']);
    return (await buildah(['commit', ...policy(), app, 'localhost/e2e-app'])).stdout.trim().split('\n').pop() ?? '';
  };

  before(async () => {
    server = await startTarget();
    client = await makeClientEnv(server.host);
    work = await tempDir('buildah');
    if (server.admin !== undefined) await buildah(loginArgs(client, server.host, server.admin.username), { input: server.admin.password });
    imageId = await buildTwoLayerImage();
  });
  after(async () => {
    await server.dispose();
    await client.dispose();
    await rm(work, { recursive: true, force: true });
  });

  const rawManifest = async (ref: string): Promise<string> =>
    (await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${server.host}/${ref}`])).stdout;
  const pushApp = async (ref: string, extra: string[] = []): Promise<string> => {
    const digestFile = join(work, `${ref.replace(/\W/g, '_')}.digest`);
    await buildah(['push', '--tls-verify=false', ...policy(), ...extra, '--digestfile', digestFile, 'localhost/e2e-app', `docker://${server.host}/${ref}`]);
    return (await readFile(digestFile, 'utf8')).trim();
  };

  test('buildah push: the registry serves the manifest digest buildah reports, with its config and two layers', async () => {
    const pushed = await pushApp('e2e/buildah:v1');
    const raw = await rawManifest('e2e/buildah:v1');
    assert.equal(sha256(raw), pushed);
    const manifest = JSON.parse(raw) as Manifest;
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(manifest.config.digest, `sha256:${imageId}`, 'config digest is the image id buildah committed');
    assert.equal(manifest.layers.length, 2);
    const config = JSON.parse((await skopeo(['inspect', '--config', '--raw', '--tls-verify=false', `docker://${server.host}/e2e/buildah:v1`])).stdout) as {
      config: { Labels?: Record<string, string> };
    };
    assert.equal(config.config.Labels?.['org.example.e2e'], 'bulwark');
  });

  test('an image pulled back from the registry holds the files buildah copied, layer by layer', async () => {
    const pushed = await pushApp('e2e/buildah-files:v1');
    const back = join(work, 'pulled');
    await skopeo(['copy', '--src-tls-verify=false', `docker://${server.host}/e2e/buildah-files:v1`, `oci:${back}:v1`]);
    assert.equal((await layoutDescriptor(back, 'v1')).digest, pushed);
    const manifest = await readBlobJson<Manifest>(back, pushed);
    for (const layer of manifest.layers) assert.equal(await hashBlob(back, layer.digest), layer.digest);
    const [first, second] = manifest.layers;
    assert.ok(first !== undefined && second !== undefined);
    assert.equal((await readLayerFiles(back, first.digest)).get('a.txt')?.toString(), 'first layer from buildah\n');
    const top = await readLayerFiles(back, second.digest);
    assert.equal(top.get('dir/b.txt')?.toString(), 'second layer from buildah\n');
    assert.equal(top.has('a.txt'), false, 'the second layer holds only the second commit');
  });

  test('buildah push --format v2s2 stores a Docker schema 2 manifest of the same filesystem', async () => {
    const pushed = await pushApp('e2e/buildah-docker:v1', ['--format', 'v2s2']);
    const raw = await rawManifest('e2e/buildah-docker:v1');
    assert.equal(sha256(raw), pushed);
    const manifest = JSON.parse(raw) as Manifest;
    assert.equal(manifest.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(manifest.layers.length, 2);
    // diff_ids (uncompressed layer digests) survive the conversion to Docker's config format.
    const served = JSON.parse((await skopeo(['inspect', '--config', '--raw', '--tls-verify=false', `docker://${server.host}/e2e/buildah-docker:v1`])).stdout) as Rootfs;
    const local = JSON.parse((await buildah(['inspect', '--type', 'image', 'localhost/e2e-app'])).stdout) as { OCIv1: Rootfs };
    assert.deepEqual(served.rootfs.diff_ids, local.OCIv1.rootfs.diff_ids);
  });
});
