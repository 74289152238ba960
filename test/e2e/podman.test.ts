/**
 * podman push / pull against the registry under test. Podman runs with its own storage (vfs
 * driver, --root/--runroot/--tmpdir in a temp dir) and its own policy and registries.conf, so
 * the host's containers configuration and storage are never touched and nothing is fetched
 * from the internet: the image comes from an OCI layout built offline.
 *
 * podman signs in with `podman login --password-stdin` (the bootstrap admin when Bulwark runs with
 * authentication); push, pull and the skopeo checks read the client's auth file.
 *
 * E2E_TARGET=distribution runs the same file against CNCF Distribution.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildImageLayout, type BuiltImage } from '../testkit/oci-layout.js';
import { describeWithTools, loginArgs, makeClientEnv, podmanGlobalArgs, run, startTarget, tempDir, type ClientEnv, type RunOptions, type RunResult, type TargetServer } from './tools.js';

const sha256 = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

interface PodmanImage {
  Id: string;
  Digest: string;
  RepoDigests: string[];
  RootFS: { Layers: string[] };
}

describeWithTools('podman', ['podman', 'skopeo'], () => {
  let server: TargetServer;
  let client: ClientEnv;
  let work: string;
  let image: BuiltImage;
  let layout: string;

  before(async () => {
    server = await startTarget();
    client = await makeClientEnv(server.host);
    work = await tempDir('podman');
    layout = join(work, 'layout');
    image = await buildImageLayout(layout, {
      tag: 'v1',
      layers: [{ sizeBytes: 512 * 1024, files: { 'hello.txt': 'from podman\n' } }, { sizeBytes: 16 * 1024 }],
    });
    if (server.admin !== undefined) await podman(loginArgs(client, server.host, server.admin.username), { input: server.admin.password });
  });
  after(async () => {
    await server.dispose();
    await client.dispose();
    await rm(work, { recursive: true, force: true });
  });

  const podman = (args: string[], opts: Pick<RunOptions, 'input'> = {}): Promise<RunResult> =>
    run('podman', [...podmanGlobalArgs(client), ...args], { ...opts, env: client.env });
  const policy = (): string[] => ['--signature-policy', client.policyPath];
  const inspect = async (name: string): Promise<PodmanImage> => {
    const [img] = JSON.parse((await podman(['image', 'inspect', name])).stdout) as PodmanImage[];
    assert.ok(img !== undefined, `podman image inspect ${name} returned nothing`);
    return img;
  };
  /** The manifest bytes exactly as the registry serves them, read by another client. */
  const rawManifest = async (ref: string): Promise<string> =>
    (await run('skopeo', ['--policy', client.policyPath, 'inspect', '--raw', '--tls-verify=false', `docker://${ref}`], { env: client.env })).stdout;

  test('push from podman storage, remove locally, pull back: same image id, layers and digest', async () => {
    const ref = `${server.host}/e2e/podman:v1`;
    await podman(['pull', ...policy(), `oci:${layout}:v1`]);
    // The image id is the config digest; tagging by id avoids depending on how podman names
    // an image pulled from an OCI layout.
    await podman(['tag', image.config.digest.slice('sha256:'.length), ref]);
    const local = await inspect(ref);
    assert.equal(`sha256:${local.Id}`, image.config.digest);
    assert.deepEqual(local.RootFS.Layers, image.diffIds);

    const digestFile = join(work, 'pushed.digest');
    await podman(['push', '--tls-verify=false', ...policy(), '--digestfile', digestFile, ref]);
    const pushed = (await readFile(digestFile, 'utf8')).trim();
    assert.equal(sha256(await rawManifest(ref)), pushed, 'registry serves the manifest podman pushed');

    await podman(['rmi', '--force', '--all']);
    await assert.rejects(inspect(ref), 'image is gone locally before the pull');
    await podman(['pull', '--tls-verify=false', ...policy(), ref]);
    const pulled = await inspect(ref);
    assert.equal(`sha256:${pulled.Id}`, image.config.digest);
    assert.deepEqual(pulled.RootFS.Layers, image.diffIds);
    assert.equal(pulled.Digest, pushed);
    assert.ok(pulled.RepoDigests.includes(`${server.host}/e2e/podman@${pushed}`), `RepoDigests: ${pulled.RepoDigests.join(', ')}`);
  });

  test('push as Docker schema 2 (--format v2s2), then pull by digest: same layers', async () => {
    const ref = `${server.host}/e2e/podman-v2s2:v1`;
    await podman(['pull', ...policy(), `oci:${layout}:v1`]);
    await podman(['tag', image.config.digest.slice('sha256:'.length), ref]);
    const digestFile = join(work, 'v2s2.digest');
    await podman(['push', '--tls-verify=false', ...policy(), '--format', 'v2s2', '--digestfile', digestFile, ref]);
    const pushed = (await readFile(digestFile, 'utf8')).trim();
    const raw = await rawManifest(ref);
    assert.equal(sha256(raw), pushed);
    assert.equal((JSON.parse(raw) as { mediaType: string }).mediaType, 'application/vnd.docker.distribution.manifest.v2+json');

    await podman(['rmi', '--force', '--all']);
    const byDigest = `${server.host}/e2e/podman-v2s2@${pushed}`;
    await podman(['pull', '--tls-verify=false', ...policy(), byDigest]);
    const pulled = await inspect(byDigest);
    // The config is rewritten in Docker's format (new image id), but the layers are the same.
    assert.deepEqual(pulled.RootFS.Layers, image.diffIds);
    assert.equal(pulled.Digest, pushed);
  });
});
