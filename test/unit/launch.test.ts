/**
 * `bulwark` runs with the same node options however it is started (ADR 0014): its shebang
 * (`npx bulwark`, an installed bin), `npm start`, and the test kit and benchmark, which spawn
 * `node <options> dist/cli/main.js` so that what they measure is what users run.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cliNodeOptions, repoRoot } from '../testkit/server.js';

describe('launch options', () => {
  test('the shebang, npm start and the test kit pass the same node options', async () => {
    const shebang = (await readFile(join(repoRoot, 'src', 'cli', 'main.ts'), 'utf8')).split('\n')[0];
    assert.equal(shebang, `#!/usr/bin/env -S node ${cliNodeOptions.join(' ')}`);
    const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.start, `node ${cliNodeOptions.join(' ')} dist/cli/main.js serve`);
  });
});
