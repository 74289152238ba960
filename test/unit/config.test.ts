/**
 * Configuration is validated once (ARCHITECTURE principle 7): defaults < file < environment < flags,
 * every problem reported together, the result immutable, and docs/configuration.md generated.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig, OPTIONS, renderConfigDocs } from '../../src/config/index.js';
import { repoRoot } from '../testkit/server.js';

let dir: string;
let n = 0;
async function configFile(doc: unknown): Promise<string> {
  const path = join(dir, `config-${n++}.json`);
  await writeFile(path, JSON.stringify(doc));
  return path;
}

function problemsOf(fn: () => unknown): readonly string[] {
  let caught: unknown;
  assert.throws(fn, (e: unknown) => {
    caught = e;
    return e instanceof ConfigError;
  });
  assert.ok(caught instanceof ConfigError);
  assert.equal(caught.code, 'CONFIG_INVALID');
  return caught.problems;
}

describe('loadConfig', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulwark-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('with no sources every option takes its documented default', () => {
    const c = loadConfig({});
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 5000 });
    assert.equal(c.dataDir, resolve('./data'));
    assert.deepEqual(c.storage, { blobDriver: 'filesystem', metadataDriver: 'sqlite', directIoMinBytes: 8 * 1024 * 1024, deleteEnabled: true });
    assert.equal(c.limits.manifestMaxBytes, 4 * 1024 * 1024);
    assert.equal(c.audit.file, join(resolve('./data'), 'audit.log'));
    assert.equal(c.log.level, 'info');
  });

  test('a file overrides defaults, the environment overrides the file, flags override the environment', async () => {
    const file = await configFile({
      listen: '0.0.0.0:6000',
      dataDir: '/srv/from-file',
      limits: { listMax: 50, manifestMaxBytes: 2048 },
      log: { level: 'debug' },
    });
    const c = loadConfig({
      file,
      env: { BULWARK_LISTEN: '127.0.0.1:7000', BULWARK_LIMITS_LIST_MAX: '60', BULWARK_DATA_DIR: '/srv/from-env' },
      flags: { listen: '[::1]:8000', dataDir: undefined },
    });
    assert.deepEqual(c.listen, { host: '::1', port: 8000 }, 'flag beats env and file');
    assert.equal(c.dataDir, '/srv/from-env', 'env beats file when no flag is given');
    assert.equal(c.limits.listMax, 60, 'env beats file');
    assert.equal(c.limits.manifestMaxBytes, 2048, 'file beats default');
    assert.equal(c.log.level, 'debug', 'file beats default');
    assert.equal(c.uploads.purgeAfterSeconds, 86400, 'default when nobody sets it');
  });

  test('environment strings are coerced to booleans and integers', () => {
    const c = loadConfig({ env: { BULWARK_STORAGE_DELETE_ENABLED: 'false', BULWARK_HTTP_IDLE_TIMEOUT_MS: '1500' } });
    assert.equal(c.storage.deleteEnabled, false);
    assert.equal(c.http.idleTimeoutMs, 1500);
  });

  test('the audit log follows dataDir, and an empty audit.file disables it', () => {
    assert.equal(loadConfig({ flags: { dataDir: '/srv/reg' } }).audit.file, '/srv/reg/audit.log');
    assert.equal(loadConfig({ env: { BULWARK_AUDIT_FILE: '' } }).audit.file, '');
  });

  test('every invalid value is reported at once, each naming its option and variable', async () => {
    const file = await configFile({ limits: { manifestMaxBytes: 'big' }, http: { idleTimeoutMs: 1.5 } });
    const problems = problemsOf(() =>
      loadConfig({
        file,
        env: {
          BULWARK_LISTEN: 'nope',
          BULWARK_LIMITS_LIST_MAX: '0',
          BULWARK_LOG_LEVEL: 'loud',
          BULWARK_STORAGE_DELETE_ENABLED: 'yes',
          BULWARK_STORAGE_BLOB_DRIVER: 's3-not-yet',
        },
        flags: { listen: undefined },
      }),
    );
    const expected = ['listen (BULWARK_LISTEN)', 'limits.listMax (BULWARK_LIMITS_LIST_MAX)', 'log.level (BULWARK_LOG_LEVEL)', 'storage.deleteEnabled', 'storage.blobDriver', 'limits.manifestMaxBytes', 'http.idleTimeoutMs'];
    for (const e of expected) assert.ok(problems.some((p) => p.startsWith(e)), `${e} not reported in:\n${problems.join('\n')}`);
    assert.equal(problems.length, expected.length);
  });

  test('addresses must be host:port with a port up to 65535', () => {
    for (const bad of ['localhost', ':5000', '127.0.0.1:65536', '127.0.0.1:-1', '::1:5000', 'a b:80']) {
      assert.equal(problemsOf(() => loadConfig({ env: { BULWARK_LISTEN: bad } })).length, 1, bad);
    }
    assert.deepEqual(loadConfig({ env: { BULWARK_LISTEN: 'registry.internal:443', BULWARK_NETWORK_ALLOW_PLAIN_HTTP: 'true' } }).listen, { host: 'registry.internal', port: 443 });
    // plain HTTP beyond loopback needs TLS or the explicit allowance (ADR 0010)
    assert.match(problemsOf(() => loadConfig({ env: { BULWARK_LISTEN: 'registry.internal:443' } })).join('\n'), /plain HTTP on registry\.internal/);
    assert.equal(loadConfig({ env: { BULWARK_LISTEN: 'registry.internal:443', BULWARK_TLS_CERT_FILE: '/x.crt', BULWARK_TLS_KEY_FILE: '/x.key' } }).externalUrl, 'https://registry.internal:443');
    assert.match(problemsOf(() => loadConfig({ env: { BULWARK_TLS_CERT_FILE: '/x.crt' } })).join('\n'), /give both, or neither/);
    // the data endpoint (ADR 0011): under the same loopback rule; a wildcard needs a URL; https with TLS
    assert.match(problemsOf(() => loadConfig({ env: { BULWARK_DATA_ENDPOINT_LISTEN: '10.0.0.5:5001' } })).join('\n'), /plain HTTP on 10\.0\.0\.5/);
    assert.match(problemsOf(() => loadConfig({ env: { BULWARK_DATA_ENDPOINT_LISTEN: '0.0.0.0:5001', BULWARK_NETWORK_ALLOW_PLAIN_HTTP: 'true' } })).join('\n'), /required when dataEndpoint\.listen is a wildcard/);
    const tlsData = { BULWARK_TLS_CERT_FILE: '/x.crt', BULWARK_TLS_KEY_FILE: '/x.key', BULWARK_DATA_ENDPOINT_LISTEN: '10.0.0.5:5001' };
    assert.equal(loadConfig({ env: tlsData }).dataEndpoint.url, 'https://10.0.0.5:5001');
    assert.match(problemsOf(() => loadConfig({ env: { ...tlsData, BULWARK_DATA_ENDPOINT_URL: 'http://data.example.com' } })).join('\n'), /http:\/\/ URL while the data endpoint serves HTTPS/);
    assert.match(problemsOf(() => loadConfig({ env: { BULWARK_DATA_ENDPOINT_URL_TTL_SECONDS: '600', BULWARK_DATA_ENDPOINT_KEY_ROTATION_SECONDS: '300' } })).join('\n'), /at least dataEndpoint\.urlTtlSeconds/);
  });

  test('integers outside their range or with trailing text are rejected', () => {
    for (const bad of ['1023', '67108865', '12abc', '1e6', '']) {
      assert.equal(problemsOf(() => loadConfig({ env: { BULWARK_LIMITS_MANIFEST_MAX_BYTES: bad } })).length, 1, bad);
    }
  });

  test('an unknown key in the config file is rejected, with every other problem', async () => {
    const file = await configFile({ listn: '0.0.0.0:5000', limits: { manifestMaxByte: 1, listMax: 0 } });
    const problems = problemsOf(() => loadConfig({ file }));
    assert.ok(problems.some((p) => p.startsWith('listn:')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('limits.manifestMaxByte:')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('limits.listMax')), problems.join('\n'));
  });

  test('the loaded configuration is frozen all the way down', () => {
    const c = loadConfig({});
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.limits) && Object.isFrozen(c.listen));
    assert.throws(() => {
      (c.limits as { listMax: number }).listMax = 1;
    }, TypeError);
    assert.throws(() => {
      (c as unknown as { extra: number }).extra = 1;
    }, TypeError);
    assert.equal(c.limits.listMax, 10000);
  });
});

describe('configuration reference', () => {
  test('docs/configuration.md is exactly what `bulwark config-docs` renders from the schema', async () => {
    const onDisk = await readFile(join(repoRoot, 'docs', 'configuration.md'), 'utf8');
    assert.equal(onDisk, renderConfigDocs(), 'regenerate with: node dist/cli/main.js config-docs > docs/configuration.md');
  });

  test('every option appears in the reference with its environment variable', () => {
    const docs = renderConfigDocs();
    for (const o of OPTIONS) assert.ok(docs.includes(`| \`${o.key}\` | \`${o.env}\` |`), o.key);
  });
});

test('a malformed or missing config file is a ConfigError naming the file, and null values are refused', async () => {
  const load = loadConfig;
  const CE = ConfigError;
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-cfg-'));
  const bad = join(dir, 'bad.json');
  await writeFile(bad, '{ not json');
  assert.throws(() => load({ file: bad }), (e: unknown) => e instanceof CE && e.message.includes(bad));
  assert.throws(() => load({ file: join(dir, 'missing.json') }), (e: unknown) => e instanceof CE && e.message.includes('missing.json'));
  const nul = join(dir, 'null.json');
  await writeFile(nul, JSON.stringify({ limits: { listMax: null } }));
  assert.throws(() => load({ file: nul }), (e: unknown) => e instanceof CE && e.message.includes('limits.listMax'));
});
