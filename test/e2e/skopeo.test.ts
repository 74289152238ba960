/**
 * skopeo (containers/image) against the registry under test: push and pull OCI layouts, inspect,
 * list tags, delete, cross-repository mount, multi-arch indexes, a >100 MiB layer, zstd layers
 * and Docker schema 2 manifests. Images are built offline by test/testkit/oci-layout.ts.
 *
 * skopeo signs in once (`skopeo login --password-stdin`, as the bootstrap admin when Bulwark runs
 * with authentication) and every command reads the stored credentials from the client's auth file.
 *
 * E2E_TARGET=distribution runs the same file against CNCF Distribution.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MediaType,
  buildImageLayout,
  buildMultiArchLayout,
  hashBlob,
  layoutDescriptor,
  readLayerFiles,
} from '../testkit/oci-layout.js';
import { describeWithTools, loginArgs, makeClientEnv, run, startTarget, tempDir, type ClientEnv, type RunResult, type TargetServer } from './tools.js';

const sha256 = (s: string | Buffer): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

interface Manifest {
  mediaType?: string;
  config: { digest: string; mediaType: string };
  layers: { digest: string; mediaType: string }[];
}

describeWithTools('skopeo', ['skopeo'], () => {
  let server: TargetServer;
  let client: ClientEnv;
  let work: string;

  before(async () => {
    server = await startTarget();
    client = await makeClientEnv(server.host);
    work = await tempDir('skopeo');
    if (server.admin !== undefined) await run('skopeo', loginArgs(client, server.host, server.admin.username), { env: client.env, input: server.admin.password });
  });
  after(async () => {
    await server.dispose();
    await client.dispose();
    await rm(work, { recursive: true, force: true });
  });

  const skopeo = (args: string[], timeoutMs = 120_000): Promise<RunResult> =>
    run('skopeo', ['--policy', client.policyPath, ...args], { env: client.env, timeoutMs });
  const remote = (ref: string): string => `docker://${server.host}/${ref}`;
  const push = (layout: string, tag: string, ref: string, extra: string[] = []): Promise<RunResult> =>
    skopeo(['copy', '--dest-tls-verify=false', ...extra, `oci:${layout}:${tag}`, remote(ref)], 300_000);
  const pull = (ref: string, layout: string, tag: string, extra: string[] = []): Promise<RunResult> =>
    skopeo(['copy', '--src-tls-verify=false', ...extra, remote(ref), `oci:${layout}:${tag}`], 300_000);
  /** The manifest bytes exactly as served (skopeo prints them unmodified; JSON is UTF-8). */
  const rawManifest = async (ref: string): Promise<string> =>
    (await skopeo(['inspect', '--raw', '--tls-verify=false', remote(ref)])).stdout;

  test('pushing an OCI layout keeps the manifest digest, and pulling it back returns the same blobs', async () => {
    const src = join(work, 'roundtrip-src');
    const image = await buildImageLayout(src, {
      tag: 'v1',
      layers: [{ sizeBytes: 256 * 1024, files: { 'hello.txt': 'hello bulwark\n' } }, { sizeBytes: 4096, files: { 'etc/motd': 'second layer\n' } }],
    });
    await push(src, 'v1', 'e2e/roundtrip:v1');
    assert.equal(sha256(await rawManifest('e2e/roundtrip:v1')), image.manifestDigest);

    const back = join(work, 'roundtrip-back');
    await pull('e2e/roundtrip:v1', back, 'v1');
    assert.equal((await layoutDescriptor(back, 'v1')).digest, image.manifestDigest);
    for (const layer of [image.config, ...image.layers]) {
      assert.equal(await hashBlob(back, layer.digest), layer.digest, `blob ${layer.digest} content`);
    }
    const files = await readLayerFiles(back, image.layers[0]?.digest ?? '');
    assert.equal(files.get('hello.txt')?.toString(), 'hello bulwark\n');
  });

  test('inspect reports digest, tags, platform, layers and the config with diff_ids', async () => {
    const src = join(work, 'inspect-src');
    const image = await buildImageLayout(src, { tag: 'v1', layers: [{ sizeBytes: 1024 }, { sizeBytes: 2048 }] });
    await push(src, 'v1', 'e2e/inspect:v1');
    const info = JSON.parse((await skopeo(['inspect', '--tls-verify=false', remote('e2e/inspect:v1')])).stdout) as {
      Digest: string; RepoTags: string[]; Architecture: string; Os: string; Layers: string[];
    };
    assert.equal(info.Digest, image.manifestDigest);
    assert.deepEqual(info.RepoTags, ['v1']);
    assert.equal(info.Architecture, 'amd64');
    assert.equal(info.Os, 'linux');
    assert.deepEqual(info.Layers, image.layers.map((l) => l.digest));

    const config = (await skopeo(['inspect', '--config', '--raw', '--tls-verify=false', remote('e2e/inspect:v1')])).stdout;
    assert.equal(sha256(config), image.config.digest, 'config blob served byte for byte');
    assert.deepEqual((JSON.parse(config) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids, image.diffIds);
  });

  test('list-tags returns every tag pushed to a repository', async () => {
    const src = join(work, 'tags-src');
    await buildImageLayout(src, { tag: 'x', layers: [{ sizeBytes: 1024 }] });
    for (const tag of ['1.0', '1.1', 'latest']) await push(src, 'x', `e2e/tags:${tag}`);
    const listed = JSON.parse((await skopeo(['list-tags', '--tls-verify=false', remote('e2e/tags')])).stdout) as {
      Repository: string; Tags: string[];
    };
    assert.equal(listed.Repository, `${server.host}/e2e/tags`);
    assert.deepEqual([...listed.Tags].sort(), ['1.0', '1.1', 'latest']);
  });

  test('delete removes the manifest and all its tags, and leaves other repositories alone', async () => {
    const src = join(work, 'delete-src');
    const image = await buildImageLayout(src, { tag: 'v1', layers: [{ sizeBytes: 1024 }] });
    await push(src, 'v1', 'e2e/delete:v1');
    await push(src, 'v1', 'e2e/delete:alias');
    await push(src, 'v1', 'e2e/delete-other:v1');
    await skopeo(['delete', '--tls-verify=false', remote('e2e/delete:v1')]);
    const unknown = /manifest unknown|not found|404/i;
    await assert.rejects(rawManifest('e2e/delete:v1'), unknown);
    await assert.rejects(rawManifest(`e2e/delete@${image.manifestDigest}`), unknown);
    // Deleting by digest untags every tag that pointed at it (distribution spec, "Deleting Manifests").
    await assert.rejects(rawManifest('e2e/delete:alias'), unknown);
    const listed = await skopeo(['list-tags', '--tls-verify=false', remote('e2e/delete')]).then(
      (r) => (JSON.parse(r.stdout) as { Tags: string[] | null }).Tags ?? [],
      () => [] as string[], // a repository with no tags left may also answer NAME_UNKNOWN
    );
    assert.deepEqual(listed, []);
    assert.equal(sha256(await rawManifest('e2e/delete-other:v1')), image.manifestDigest);
  });

  test('copying between repositories mounts the layers instead of uploading them again', async () => {
    const src = join(work, 'mount-src');
    const image = await buildImageLayout(src, { tag: 'v1', layers: [{ sizeBytes: 64 * 1024 }, { sizeBytes: 32 * 1024 }] });
    await push(src, 'v1', 'e2e/mount-from:v1');
    const { stderr } = await skopeo([
      '--debug', 'copy', '--src-tls-verify=false', '--dest-tls-verify=false', remote('e2e/mount-from:v1'), remote('e2e/mount-to:v1'),
    ]);
    // containers/image first HEADs the blob in the target repository (must be absent: blobs are
    // not visible across repositories), then POSTs ?mount=&from= and expects 201 Created.
    const mounted = stderr.split('\n').filter((l) => l.includes('mount OK')).length;
    assert.ok(mounted >= image.layers.length, `expected ${image.layers.length} mounts, saw ${mounted}:\n${stderr.slice(-4000)}`);
    assert.equal(sha256(await rawManifest('e2e/mount-to:v1')), image.manifestDigest);
    const back = join(work, 'mount-back');
    await pull('e2e/mount-to:v1', back, 'v1');
    for (const layer of image.layers) assert.equal(await hashBlob(back, layer.digest), layer.digest);
  });

  test('a multi-arch index pushed with --all keeps its digest and every platform manifest', async () => {
    const src = join(work, 'multi-src');
    const built = await buildMultiArchLayout(src, { tag: 'v1' });
    await push(src, 'v1', 'e2e/multi:v1', ['--all']);
    const raw = await rawManifest('e2e/multi:v1');
    assert.equal(sha256(raw), built.indexDigest);
    assert.equal((JSON.parse(raw) as { mediaType: string }).mediaType, MediaType.ociIndex);
    for (const img of built.images) {
      assert.equal(sha256(await rawManifest(`e2e/multi@${img.manifestDigest}`)), img.manifestDigest);
    }
    // Platform selection resolves the index to the arm64 image (whose config is unique to it).
    const armConfig = (
      await skopeo(['--override-arch', 'arm64', '--override-variant', 'v8', 'inspect', '--config', '--raw', '--tls-verify=false', remote('e2e/multi:v1')])
    ).stdout;
    assert.equal(sha256(armConfig), built.images[1]?.config.digest);
    assert.equal((JSON.parse(armConfig) as { architecture: string }).architecture, 'arm64');

    const back = join(work, 'multi-back');
    await pull('e2e/multi:v1', back, 'v1', ['--all']);
    assert.equal((await layoutDescriptor(back, 'v1')).digest, built.indexDigest);
    for (const img of built.images) assert.equal(await hashBlob(back, img.layers[0]?.digest ?? ''), img.layers[0]?.digest);
  });

  test('an image with a layer over 100 MiB round-trips intact', { timeout: 300_000 }, async () => {
    const src = join(work, 'big-src');
    const image = await buildImageLayout(src, { tag: 'v1', layers: [{ sizeBytes: 110 * 1024 * 1024 }, { sizeBytes: 1024 }] });
    assert.ok((image.layers[0]?.size ?? 0) > 100 * 1024 * 1024);
    await push(src, 'v1', 'e2e/big:v1');
    assert.equal(sha256(await rawManifest('e2e/big:v1')), image.manifestDigest);
    const back = join(work, 'big-back');
    await pull('e2e/big:v1', back, 'v1');
    await rm(src, { recursive: true, force: true }); // keep the disk footprint to one copy
    for (const layer of image.layers) assert.equal(await hashBlob(back, layer.digest), layer.digest);
    await rm(back, { recursive: true, force: true });
  });

  test('zstd-compressed layers (--dest-compress-format zstd) are stored and served unchanged', async () => {
    const src = join(work, 'zstd-src');
    const image = await buildImageLayout(src, { tag: 'v1', layers: [{ sizeBytes: 16 * 1024, files: { 'z.txt': 'zstd\n' } }] });
    await push(src, 'v1', 'e2e/zstd:v1', ['--dest-compress-format', 'zstd']);
    const raw = await rawManifest('e2e/zstd:v1');
    const manifest = JSON.parse(raw) as Manifest;
    // The registry stores layer media types it has no reason to understand.
    assert.deepEqual(manifest.layers.map((l) => l.mediaType), ['application/vnd.oci.image.layer.v1.tar+zstd']);
    const back = join(work, 'zstd-back');
    await pull('e2e/zstd:v1', back, 'v1');
    assert.equal((await layoutDescriptor(back, 'v1')).digest, sha256(raw));
    const layer = manifest.layers[0]?.digest ?? '';
    assert.equal(await hashBlob(back, layer), layer);
    assert.equal(await hashBlob(back, image.config.digest), image.config.digest);
  });

  test('a Docker schema 2 push (--format v2s2) is served back byte for byte with Docker media types', async () => {
    const src = join(work, 'v2s2-src');
    const image = await buildImageLayout(src, { tag: 'v1', layers: [{ sizeBytes: 8192, files: { 'docker.txt': 'v2s2\n' } }] });
    await push(src, 'v1', 'e2e/docker:v1', ['--format', 'v2s2']);
    const raw = await rawManifest('e2e/docker:v1');
    const manifest = JSON.parse(raw) as Manifest;
    assert.equal(manifest.mediaType, MediaType.dockerManifest);
    assert.equal(manifest.config.mediaType, MediaType.dockerConfig);
    assert.deepEqual(manifest.layers.map((l) => l.mediaType), [MediaType.dockerLayerGzip]);
    // Same compressed bytes, so the layer digest survives the conversion.
    assert.deepEqual(manifest.layers.map((l) => l.digest), image.layers.map((l) => l.digest));

    // The dir: transport stores the manifest exactly as the registry served it.
    const back = join(work, 'v2s2-back');
    await skopeo(['copy', '--src-tls-verify=false', remote('e2e/docker:v1'), `dir:${back}`]);
    const stored = await readFile(join(back, 'manifest.json'));
    assert.equal(sha256(stored), sha256(raw));
    const files = await readdir(back);
    for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
      assert.ok(files.includes(d.slice('sha256:'.length)), `blob ${d} pulled`);
      assert.equal(sha256(await readFile(join(back, d.slice('sha256:'.length)))), d, `blob ${d} content`);
    }
    const config = JSON.parse(await readFile(join(back, manifest.config.digest.slice('sha256:'.length)), 'utf8')) as {
      rootfs: { diff_ids: string[] };
    };
    assert.deepEqual(config.rootfs.diff_ids, image.diffIds);
  });
});
