/**
 * The server runs with the same node options under `npm start` (the Quickstart) and in the test
 * kit and the benchmark, which spawn `node <options> dist/cli/main.js serve` so that what they
 * measure is what users run (ADR 0014). The `bulwark` bin keeps a plain `#!/usr/bin/env node`:
 * `env -S` is missing from BusyBox (Alpine images).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cliNodeOptions, repoRoot } from '../testkit/server.js';

describe('launch options', () => {
  test('npm start and the test kit pass the same node options; the bin runs anywhere node does', async () => {
    const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.start, `node ${cliNodeOptions.join(' ')} dist/cli/main.js serve`);
    const shebang = (await readFile(join(repoRoot, 'src', 'cli', 'main.ts'), 'utf8')).split('\n')[0];
    assert.equal(shebang, '#!/usr/bin/env node');
  });
});
