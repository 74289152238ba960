/**
 * Auth building blocks: scope parsing, repository patterns, scope maps, the role table (as data),
 * networks and CIDRs, role-assignment conditions, the access decision, the failure limiter, and
 * the AuthStore conformance suite against the memory and SQLite stores.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  AccessPolicy,
  ADMIN_ACTIONS,
  allows,
  formatScope,
  inNetworks,
  isCidr,
  MemoryAuthStore,
  mergeAccess,
  parseScope,
  parseScopes,
  REPOSITORY_ACTIONS,
  ROLES,
  SqliteAuthStore,
  SYSTEM_SCOPE_MAPS,
  type Access,
  type AuthStore,
  type RoleAssignmentRecord,
} from '../../src/auth/index.js';
import { FailureLimiter } from '../../src/auth/failure-limiter.js';
import { subscriberKey } from '../../src/network/index.js';
import { CachingAuthStore } from '../../src/auth/caching-auth-store.js';
import { isRepositoryPattern, matchesRepository } from '../../src/auth/patterns.js';
import { assignmentApplies, type DecisionContext } from '../../src/auth/policy.js';
import { assertScopeMapInput, MAX_SCOPE_MAP_ACTIONS, parseScopeMapAction, scopeMapActions, scopeMapRules } from '../../src/auth/scope-maps.js';
import { throwsWithCode } from '../testkit/assert-registry-error.js';
import { runAuthStoreSuite } from '../testkit/auth-store-suite.js';

describe('parseScope', () => {
  test('repository scopes: one or several actions, * for all, duplicates and empty items dropped', () => {
    assert.deepEqual(parseScope('repository:team-a/app:pull'), { type: 'repository', name: 'team-a/app', actions: ['pull'] });
    assert.deepEqual(parseScope('repository:a:push,pull,push,,'), { type: 'repository', name: 'a', actions: ['push', 'pull'] });
    assert.deepEqual(parseScope('repository:a.b/c_d/e__f/g--h:*'), { type: 'repository', name: 'a.b/c_d/e__f/g--h', actions: [...REPOSITORY_ACTIONS] });
    assert.deepEqual(parseScope('repository:a:pull,*'), { type: 'repository', name: 'a', actions: [...REPOSITORY_ACTIONS] });
  });

  test('registry scopes: catalog takes *, admin takes read/write/access or *', () => {
    assert.deepEqual(parseScope('registry:catalog:*'), { type: 'registry', name: 'catalog', actions: ['*'] });
    assert.deepEqual(parseScope('registry:catalog:*,*'), { type: 'registry', name: 'catalog', actions: ['*'] });
    assert.deepEqual(parseScope('registry:admin:write,read'), { type: 'registry', name: 'admin', actions: ['write', 'read'] });
    assert.deepEqual(parseScope('registry:admin:*'), { type: 'registry', name: 'admin', actions: [...ADMIN_ACTIONS] });
  });

  test('a scope of exactly 512 characters is parsed; 513 is too long', () => {
    const head = `repository:${'a'.repeat(255)}:`;
    const s512 = `${head}${'pull,'.repeat(49)}`;
    assert.equal(s512.length, 512);
    assert.deepEqual(parseScope(s512).actions, ['pull']);
    throwsWithCode(() => parseScope(`${s512}p`), 'BAD_REQUEST');
  });

  const invalid = [
    '',
    'repository',
    'repository:a',
    'repository::pull',
    'repository:a:',
    'repository:a:,',
    ':a:pull',
    'repository:../a:pull',
    'repository:a/../b:pull',
    'repository:a/./b:pull',
    'repository:/a:pull',
    'repository:a/:pull',
    'repository:a//b:pull',
    'repository:*:pull',
    'repository:a/*:pull',
    'repository:A:pull',
    'repository:a-:pull',
    'repository:-a:pull',
    'repository:a___b:pull',
    `repository:${'a'.repeat(256)}:pull`,
    'repository:\u0430:pull',
    'repository:ａ:pull',
    'repository:a:pull\u0000',
    'repository:a:pull\n',
    'repository:a b:pull',
    'repository:a:pull,fetch',
    'repository:a:Pull',
    'repository:host:5000/a:pull',
    'registry:catalog:pull',
    'registry:catalog:*,read',
    'registry:admin:root',
    'registry:admin:pull',
    'registry:other:*',
    'registry:admin:read:write',
    'Repository:a:pull',
    'image:a:pull',
  ];
  for (const s of invalid) {
    test(`refuses ${JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s)} with BAD_REQUEST`, () => {
      const e = throwsWithCode(() => parseScope(s), 'BAD_REQUEST');
      assert.ok(JSON.stringify(e.detail ?? {}).length < 400, 'the detail quotes at most a bounded part of the input');
    });
  }
});

describe('parseScopes, formatScope, mergeAccess, allows', () => {
  test('space-separated scopes in one or several parameters are merged per resource, in order of appearance', () => {
    assert.deepEqual(parseScopes(['repository:a:pull repository:b:push', 'repository:a:push', '', ' registry:catalog:* ']), [
      { type: 'repository', name: 'a', actions: ['pull', 'push'] },
      { type: 'repository', name: 'b', actions: ['push'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
    assert.deepEqual(parseScopes([]), []);
    assert.deepEqual(parseScopes(['', '  ']), []);
  });

  test('32 scopes are accepted, 33 refused, however they are split', () => {
    const many = (n: number): string[] => Array.from({ length: n }, (_, i) => `repository:r${i}:pull`);
    assert.equal(parseScopes(many(32)).length, 32);
    throwsWithCode(() => parseScopes(many(33)), 'BAD_REQUEST');
    throwsWithCode(() => parseScopes([many(33).join(' ')]), 'BAD_REQUEST');
    assert.equal(parseScopes([Array(32).fill('repository:same:pull').join(' ')]).length, 1, 'counted before merging, merged after');
  });

  test('one bad scope among good ones refuses the whole request', () => {
    throwsWithCode(() => parseScopes(['repository:a:pull', 'repository:../b:pull']), 'BAD_REQUEST');
  });

  test('formatScope is the inverse of parseScope', () => {
    for (const s of ['repository:team-a/app:pull,push', 'registry:catalog:*', 'registry:admin:read,access']) assert.equal(formatScope(parseScope(s)), s);
  });

  test('mergeAccess drops entries without actions and keeps first-appearance order', () => {
    const list: Access[] = [
      { type: 'repository', name: 'b', actions: [] },
      { type: 'repository', name: 'a', actions: ['pull'] },
      { type: 'registry', name: 'catalog', actions: [] },
      { type: 'repository', name: 'a', actions: ['pull', 'delete'] },
    ];
    assert.deepEqual(mergeAccess(list), [{ type: 'repository', name: 'a', actions: ['pull', 'delete'] }]);
  });

  test('allows matches type, name and action exactly', () => {
    const granted: Access[] = [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }];
    assert.equal(allows(granted, 'repository', 'team-a/app', 'pull'), true);
    assert.equal(allows(granted, 'repository', 'team-a/app', 'push'), false);
    assert.equal(allows(granted, 'repository', 'team-a/ap', 'pull'), false);
    assert.equal(allows(granted, 'repository', 'team-a/app/x', 'pull'), false);
    assert.equal(allows(granted, 'registry', 'team-a/app', 'pull'), false);
  });
});

describe('repository patterns', () => {
  test('valid patterns: *, a name, <prefix>/*', () => {
    for (const p of ['*', 'a', 'team-a/app', 'team-a/*', 'a/b/c/*']) assert.equal(isRepositoryPattern(p), true, p);
    for (const p of ['', '**', '*/a', 'a*', 'team-a/a*', 'team-a/*/x', 'team-a/**', '../*', 'a/../*', '/*', 'A/*', '\u0430/*', `${'a'.repeat(256)}/*`, 'a/ *']) {
      assert.equal(isRepositoryPattern(p), false, p);
    }
  });

  const cases: [string, string, boolean][] = [
    ['*', 'anything/at/all', true],
    ['team-a/app', 'team-a/app', true],
    ['team-a/app', 'team-a/app/sub', false],
    ['team-a/app', 'team-a/ap', false],
    ['team-a/*', 'team-a/app', true],
    ['team-a/*', 'team-a/app/deep/er', true],
    ['team-a/*', 'team-a', false],
    ['team-a/*', 'team-ab/app', false],
    ['team-a/*', 'team-a-b/app', false],
    ['team-a/*', 'x/team-a/app', false],
    ['a/b/*', 'a/b/c', true],
    ['a/b/*', 'a/bc/d', false],
  ];
  for (const [pattern, name, expected] of cases) {
    test(`${pattern} ${expected ? 'matches' : 'does not match'} ${name}`, () => assert.equal(matchesRepository(pattern, name), expected));
  }
});

describe('scope maps', () => {
  test('each entry is repositories/<pattern>/<content|metadata>/<verb> and maps to one repository action', () => {
    assert.deepEqual(parseScopeMapAction('repositories/team-a/*/content/read'), { pattern: 'team-a/*', action: 'pull' });
    assert.deepEqual(parseScopeMapAction('repositories/*/content/write'), { pattern: '*', action: 'push' });
    assert.deepEqual(parseScopeMapAction('repositories/a/b/content/delete'), { pattern: 'a/b', action: 'delete' });
    assert.deepEqual(parseScopeMapAction('repositories/a/metadata/read'), { pattern: 'a', action: 'metadata_read' });
    assert.deepEqual(parseScopeMapAction('repositories/a/metadata/write'), { pattern: 'a', action: 'metadata_write' });
    for (const bad of ['repositories/a/content/admin', 'repositories//content/read', 'repository/a/content/read', 'repositories/a/metadata/delete', 'repositories/../a/content/read', 'repositories/a*/content/read', 'repositories/a/content/read/', ' repositories/a/content/read']) {
      assert.equal(parseScopeMapAction(bad), undefined, bad);
    }
  });

  test('a custom scope map is validated with every problem reported at once', () => {
    const e = throwsWithCode(() => assertScopeMapInput('x', ['repositories/a/content/read', 'nope', 'repositories/*/content/sudo']), 'BAD_REQUEST');
    const problems = (e.detail as { problems: string[] }).problems;
    assert.equal(problems.length, 3, problems.join('; '));
    assert.match(problems[0] ?? '', /^name/);
    assert.match(problems[1] ?? '', /^actions\[1\]/);
    assert.match(problems[2] ?? '', /^actions\[2\]/);
    throwsWithCode(() => assertScopeMapInput('valid-name', []), 'BAD_REQUEST');
    const max = Array.from({ length: MAX_SCOPE_MAP_ACTIONS }, (_, i) => `repositories/r${i}/content/read`);
    assert.equal(assertScopeMapInput('valid-name', max).length, MAX_SCOPE_MAP_ACTIONS);
    throwsWithCode(() => assertScopeMapInput('valid-name', [...max, 'repositories/x/content/read']), 'BAD_REQUEST');
  });

  test('the system scope maps grant exactly (on every repository)', () => {
    const expected: Record<string, string> = {
      _repositories_pull: 'pull',
      _repositories_pull_metadata_read: 'pull metadata_read',
      _repositories_push: 'pull push',
      _repositories_push_metadata_write: 'pull push metadata_read metadata_write',
      _repositories_admin: 'pull push delete metadata_read metadata_write',
    };
    assert.deepEqual(SYSTEM_SCOPE_MAPS.map((m) => m.name).sort(), Object.keys(expected).sort());
    for (const m of SYSTEM_SCOPE_MAPS) {
      assert.equal(m.system, true);
      for (const repo of ['a', 'team-b/x/y']) assert.deepEqual([...scopeMapActions(scopeMapRules(m), repo)].sort(), (expected[m.name] ?? '').split(' ').sort(), `${m.name} on ${repo}`);
    }
  });

  test('a prefix scope map grants under the prefix only, each action on its own pattern', () => {
    const rules = scopeMapRules({ name: 'm', description: '', system: false, actions: ['repositories/team-a/*/content/read', 'repositories/team-a/app/content/write', 'not an entry'] });
    assert.equal(rules.length, 2, 'unparseable entries grant nothing');
    assert.deepEqual([...scopeMapActions(rules, 'team-a/app')].sort(), ['pull', 'push']);
    assert.deepEqual([...scopeMapActions(rules, 'team-a/other')], ['pull']);
    assert.deepEqual([...scopeMapActions(rules, 'team-ab/app')], []);
    assert.deepEqual([...scopeMapActions(rules, 'team-a')], []);
  });
});

describe('built-in roles', () => {
  /** What each role grants: repository actions, catalog, admin actions, registry-wide only. */
  const TABLE: Record<string, [repository: string, catalog: boolean, admin: string, registryWideOnly: boolean]> = {
    Owner: ['pull push delete metadata_read metadata_write', true, 'read write access', true],
    Contributor: ['pull push delete metadata_read metadata_write', true, 'read write', true],
    Reader: ['pull metadata_read', true, 'read', true],
    AcrPull: ['pull', false, '', false],
    AcrPush: ['pull push', false, '', false],
    AcrDelete: ['delete', false, '', false],
    AcrImageSigner: ['sign', false, '', false],
    AcrQuarantineReader: ['quarantine_read', false, '', false],
    AcrQuarantineWriter: ['quarantine_read quarantine_write', false, '', false],
    RepositoryReader: ['pull metadata_read', false, '', false],
    RepositoryWriter: ['pull push metadata_read metadata_write', false, '', false],
    RepositoryContributor: ['pull push delete metadata_read metadata_write', false, '', false],
    RepositoryCatalogLister: ['', true, '', false],
  };
  const words = (s: string): string[] => s.split(' ').filter((w) => w !== '').sort();

  test('the roles are exactly these', () => assert.deepEqual([...ROLES.keys()].sort(), Object.keys(TABLE).sort()));
  for (const [name, [repository, catalog, admin, wideOnly]] of Object.entries(TABLE)) {
    test(`${name}: repository [${repository}], catalog ${catalog}, admin [${admin}]${wideOnly ? ', registry-wide only' : ''}`, () => {
      const r = ROLES.get(name as never);
      assert.ok(r !== undefined);
      assert.deepEqual([[...r.repository].sort(), r.catalog, [...r.admin].sort(), r.registryWideOnly], [words(repository), catalog, words(admin), wideOnly]);
      assert.ok(r.description.length > 0);
    });
  }
});

describe('networks', () => {
  const inside: [string, string][] = [
    ['10.0.0.0', '10.0.0.0/8'],
    ['10.255.255.255', '10.0.0.0/8'],
    ['192.0.2.1', '192.0.2.1/32'],
    ['203.0.113.9', '0.0.0.0/0'],
    ['172.16.0.1', '10.1.2.3/12 172.16.0.0/12'],
    ['::ffff:10.1.2.3', '10.0.0.0/8'],
    ['::ffff:10.1.2.3', '::ffff:10.0.0.0/104'],
    ['10.1.2.3', '::ffff:10.0.0.0/104'],
    ['2001:db8::1', '2001:db8::/32'],
    ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db8::/32'],
    ['2001:DB8::1', '2001:db8::/32'],
    ['::1', '::1/128'],
    ['fe80::1', '::/0'],
  ];
  const outside: [string, string][] = [
    ['11.0.0.0', '10.0.0.0/8'],
    ['9.255.255.255', '10.0.0.0/8'],
    ['192.0.2.2', '192.0.2.1/32'],
    ['2001:db8::1', '0.0.0.0/0'],
    ['2001:db9::1', '2001:db8::/32'],
    ['2001:db7:ffff::1', '2001:db8::/32'],
    ['::2', '::1/128'],
    ['::ffff:11.1.2.3', '10.0.0.0/8'],
    ['internal', '0.0.0.0/0'],
    ['', '0.0.0.0/0'],
    ['localhost', '127.0.0.0/8'],
    ['10.0.0.1:443', '10.0.0.0/8'],
    ['10.0.0.1', ''],
  ];
  for (const [address, cidrs] of inside) test(`${address} is in ${cidrs}`, () => assert.equal(inNetworks(address, cidrs.split(' ')), true));
  for (const [address, cidrs] of outside) test(`${address} is not in ${cidrs || '(none)'}`, () => assert.equal(inNetworks(address, cidrs === '' ? [] : cidrs.split(' ')), false));

  test('a malformed entry in the list matches nothing and breaks nothing (records written before validation)', () => {
    for (const bad of ['10.0.0.0/33', '10.0.0.0/abc', '10.0.0.0/', '2001:db8::/129', 'garbage', '10.0.0.0/-1']) {
      assert.equal(inNetworks('10.1.2.3', [bad, '10.0.0.0/8']), true, bad);
      assert.equal(inNetworks('10.1.2.3', [bad]), false, bad);
    }
  });

  test('isCidr: an IPv4 or IPv6 network with a prefix length in range', () => {
    for (const c of ['10.0.0.0/8', '0.0.0.0/0', '192.0.2.1/32', '10.1.2.3/8', '::/0', '::1/128', '2001:db8::/32', '::ffff:10.0.0.0/104']) assert.equal(isCidr(c), true, c);
    for (const c of ['10.0.0.0', '10.0.0.0/', '/8', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/8/8', '10.0.0.0/8 ', ' 10.0.0.0/8', '10.0.0/8', '256.0.0.0/8', '01.2.3.4/8', '2001:db8::/129', 'example.com/8', '10.0.0.0/1000', '']) {
      assert.equal(isCidr(c), false, c);
    }
  });
});

describe('role-assignment conditions', () => {
  const NOW = 1_800_000_000_000;
  const base: RoleAssignmentRecord = { id: 'x', principal: 'service:ci-builder', role: 'AcrPull', scope: '*', createdAt: NOW - 1000, createdBy: 'admin:bulwark-admin' };
  const ctx = (o: Partial<DecisionContext> = {}): DecisionContext => ({ principal: 'service:ci-builder', clientAddress: '10.1.2.3', now: NOW, ...o });
  const applies = (a: Partial<RoleAssignmentRecord>, c: Partial<DecisionContext> = {}): boolean => assignmentApplies({ ...base, ...a }, ctx(c));

  test('without conditions or expiry it applies', () => assert.equal(applies({}), true));

  test('expiresAt: applies before, not at or after', () => {
    assert.equal(applies({ expiresAt: NOW + 1 }), true);
    assert.equal(applies({ expiresAt: NOW }), false);
    assert.equal(applies({ expiresAt: NOW - 1 }), false);
  });

  test('validity window: from notBefore (inclusive) until notAfter (exclusive)', () => {
    const w = { conditions: { notBefore: NOW, notAfter: NOW + 1000 } };
    assert.equal(applies(w, { now: NOW - 1 }), false);
    assert.equal(applies(w, { now: NOW }), true);
    assert.equal(applies(w, { now: NOW + 999 }), true);
    assert.equal(applies(w, { now: NOW + 1000 }), false);
  });

  test('requiredAmr: every listed method must be in the amr claim', () => {
    const mfa = { conditions: { requiredAmr: ['mfa', 'hwk'] } };
    assert.equal(applies(mfa, { amr: ['pwd', 'mfa', 'hwk'] }), true);
    assert.equal(applies(mfa, { amr: ['mfa'] }), false);
    assert.equal(applies(mfa, { amr: [] }), false);
    assert.equal(applies(mfa, {}), false, 'no amr at all (a token or password sign-in)');
  });

  test('sourceCidrs: the client address must be in one of the networks', () => {
    const net = { conditions: { sourceCidrs: ['10.0.0.0/8', '2001:db8::/32'] } };
    assert.equal(applies(net, { clientAddress: '10.9.9.9' }), true);
    assert.equal(applies(net, { clientAddress: '::ffff:10.9.9.9' }), true);
    assert.equal(applies(net, { clientAddress: '2001:db8::5' }), true);
    assert.equal(applies(net, { clientAddress: '192.0.2.1' }), false);
    assert.equal(applies(net, { clientAddress: 'internal' }), false);
    assert.equal(applies({ conditions: { sourceCidrs: [] } }, { clientAddress: '10.9.9.9' }), false, 'an empty list admits nobody');
  });

  test('all conditions must hold together', () => {
    const all = { expiresAt: NOW + 10, conditions: { sourceCidrs: ['10.0.0.0/8'], requiredAmr: ['mfa'], notBefore: NOW - 10 } };
    assert.equal(applies(all, { amr: ['mfa'] }), true);
    assert.equal(applies(all, { amr: ['mfa'], clientAddress: '192.0.2.1' }), false);
    assert.equal(applies(all, { amr: [] }), false);
    assert.equal(applies(all, { amr: ['mfa'], now: NOW + 10 }), false);
  });
});

describe('AccessPolicy.decide', () => {
  const NOW = Date.now();
  async function policyWith(records: { kind: 'admin' | 'token' | 'role-assignment' | 'scope-map'; id: string; value: unknown }[], anonymousPull: string[] = []): Promise<AccessPolicy> {
    const store = new MemoryAuthStore();
    for (const r of records) await store.put(r.kind, r.id, r.value);
    return new AccessPolicy(store, anonymousPull);
  }
  const assignment = (id: string, principal: string, role: string, scope: string, extra: object = {}): { kind: 'role-assignment'; id: string; value: unknown } => ({
    kind: 'role-assignment',
    id,
    value: { id, principal, role, scope, createdAt: NOW, createdBy: 'admin:x', ...extra },
  });
  const ctx = (principal: string, o: Partial<DecisionContext> = {}): DecisionContext => ({ principal, clientAddress: '10.0.0.1', now: NOW, ...o });
  const ask = parseScopes(['repository:team-a/app:pull,push,delete,metadata_read', 'repository:team-b/app:pull,push', 'registry:catalog:*', 'registry:admin:*']);

  test('grants the union of the roles that apply, intersected with what was asked', async () => {
    const p = await policyWith([assignment('1', 'service:ci', 'AcrPull', 'team-a/*'), assignment('2', 'service:ci', 'AcrDelete', 'team-a/app'), assignment('3', 'service:other', 'Owner', '*')]);
    assert.deepEqual(await p.decide(ctx('service:ci'), ask), [{ type: 'repository', name: 'team-a/app', actions: ['pull', 'delete'] }]);
  });

  test('registry rights come from registry-wide assignments only', async () => {
    const p = await policyWith([assignment('1', 'user:a@https://idp', 'Reader', '*'), assignment('2', 'user:b@https://idp', 'Reader', 'team-a/*')]);
    assert.deepEqual(await p.decide(ctx('user:a@https://idp'), ask), [
      { type: 'repository', name: 'team-a/app', actions: ['pull', 'metadata_read'] },
      { type: 'repository', name: 'team-b/app', actions: ['pull'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
      { type: 'registry', name: 'admin', actions: ['read'] },
    ]);
    assert.deepEqual(await p.decide(ctx('user:b@https://idp'), ask), [{ type: 'repository', name: 'team-a/app', actions: ['pull', 'metadata_read'] }]);
  });

  test('an assignment whose conditions fail grants nothing; invalidate() picks up changes', async () => {
    const store = new MemoryAuthStore();
    await store.put('role-assignment', '1', { id: '1', principal: 'service:ci', role: 'AcrPush', scope: '*', createdAt: NOW, createdBy: 'x', conditions: { sourceCidrs: ['10.0.0.0/8'] } });
    const p = new AccessPolicy(store, []);
    assert.equal((await p.decide(ctx('service:ci'), ask)).length, 2);
    assert.deepEqual(await p.decide(ctx('service:ci', { clientAddress: '192.0.2.1' }), ask), []);
    await store.delete('role-assignment', '1');
    assert.equal((await p.decide(ctx('service:ci'), ask)).length, 2, 'a snapshot until invalidated');
    p.invalidate();
    assert.deepEqual(await p.decide(ctx('service:ci'), ask), []);
  });

  test('tokens: their scope map while enabled, plus role assignments; never catalog or admin from the map', async () => {
    const p = await policyWith([
      { kind: 'token', id: 'on', value: { name: 'on', scopeMap: '_repositories_push', status: 'enabled', passwords: [], createdAt: NOW } },
      { kind: 'token', id: 'off', value: { name: 'off', scopeMap: '_repositories_admin', status: 'disabled', passwords: [], createdAt: NOW } },
      { kind: 'token', id: 'custom', value: { name: 'custom', scopeMap: 'team-a-only', status: 'enabled', passwords: [], createdAt: NOW } },
      { kind: 'token', id: 'orphan', value: { name: 'orphan', scopeMap: 'deleted-map', status: 'enabled', passwords: [], createdAt: NOW } },
      { kind: 'scope-map', id: 'team-a-only', value: { name: 'team-a-only', description: '', actions: ['repositories/team-a/*/content/delete'], createdAt: NOW } },
      assignment('1', 'token:off', 'AcrPull', 'team-b/*'),
    ]);
    assert.deepEqual(await p.decide(ctx('token:on'), ask), [
      { type: 'repository', name: 'team-a/app', actions: ['pull', 'push'] },
      { type: 'repository', name: 'team-b/app', actions: ['pull', 'push'] },
    ]);
    assert.deepEqual(await p.decide(ctx('token:off'), ask), [{ type: 'repository', name: 'team-b/app', actions: ['pull'] }], 'disabled: its map grants nothing');
    assert.deepEqual(await p.decide(ctx('token:custom'), ask), [{ type: 'repository', name: 'team-a/app', actions: ['delete'] }]);
    assert.deepEqual(await p.decide(ctx('token:orphan'), ask), [], 'a token whose scope map is gone grants nothing');
  });

  test('the bootstrap admin has everything while enabled, nothing once disabled', async () => {
    const p = await policyWith([
      { kind: 'admin', id: 'root', value: { username: 'root', passwordHash: 'x', enabled: true, createdAt: NOW } },
      { kind: 'admin', id: 'old', value: { username: 'old', passwordHash: 'x', enabled: false, createdAt: NOW } },
    ]);
    assert.deepEqual(await p.decide(ctx('admin:root'), ask), [
      { type: 'repository', name: 'team-a/app', actions: ['pull', 'push', 'delete', 'metadata_read'] },
      { type: 'repository', name: 'team-b/app', actions: ['pull', 'push'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
      { type: 'registry', name: 'admin', actions: ['read', 'write', 'access'] },
    ]);
    assert.deepEqual(await p.decide(ctx('admin:old'), ask), []);
    assert.deepEqual(await p.decide(ctx('admin:nobody'), ask), []);
  });

  test('anonymous: pull on auth.anonymousPull only, whatever assignments name "anonymous"', async () => {
    const p = await policyWith([assignment('1', 'anonymous', 'Owner', '*')], ['team-a/*']);
    assert.deepEqual(await p.decide(ctx('anonymous'), ask), [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }]);
    assert.equal((await p.visibility(ctx('anonymous')))('team-b/app'), false);
  });
});

describe('FailureLimiter', () => {
  const limits = { perIdentity: 3, perAddress: 5, windowMs: 10_000 };
  /** A whole failed attempt, as the auth service makes one. */
  const fail = (l: FailureLimiter, identity: string, address: string, now: number): void => l.begin(identity, address).fail(now);
  /** What a new attempt is told before anything is checked, as the auth service asks. */
  const retryAfter = (l: FailureLimiter, identity: string, address: string, now: number): number => {
    const attempt = l.begin(identity, address);
    try {
      return attempt.retryAfter(now);
    } finally {
      attempt.end();
    }
  };

  test('IPv6 failures count per /64, IPv4 per address, IPv4-mapped IPv6 as IPv4', () => {
    assert.equal(subscriberKey('2001:db8:0:1:aaaa:bbbb:cccc:dddd'), '2001:db8:0:1::/64');
    assert.equal(subscriberKey('2001:db8:0:1::2'), '2001:db8:0:1::/64');
    assert.equal(subscriberKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(subscriberKey('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(subscriberKey('10.1.2.3'), '10.1.2.3');
    const l = new FailureLimiter(limits);
    // one host stepping through its /64 still hits the per-address limit
    for (let i = 1; i <= 5; i++) fail(l, `user${i}`, `2001:db8:0:1::${i.toString(16)}`, 0);
    assert.ok(retryAfter(l, 'someone', '2001:db8:0:1::ffff', 1) > 0);
    assert.equal(retryAfter(l, 'someone', '2001:db8:0:2::1', 1), 0, 'another /64 is not affected');
  });

  test('per identity and address: the limit-th failure starts the wait, Retry-After counts from the oldest counted failure', () => {
    const l = new FailureLimiter(limits);
    fail(l, 'alice', '10.0.0.1', 0);
    fail(l, 'alice', '10.0.0.1', 1_000);
    assert.equal(retryAfter(l, 'alice', '10.0.0.1', 2_000), 0);
    fail(l, 'alice', '10.0.0.1', 2_000);
    assert.equal(retryAfter(l, 'alice', '10.0.0.1', 2_000), 8);
    assert.equal(retryAfter(l, 'alice', '10.0.0.1', 9_999), 1, 'rounded up');
    assert.equal(retryAfter(l, 'alice', '10.0.0.1', 10_000), 0, 'the first failure left the window');
    assert.equal(retryAfter(l, 'alice', '10.0.0.2', 2_000), 0, 'another address');
    assert.equal(retryAfter(l, 'bob', '10.0.0.1', 2_000), 0, 'another identity from the same address (3 < 5)');
  });

  test('the window slides: a failure inside it keeps counting after older ones leave', () => {
    const l = new FailureLimiter(limits);
    for (const at of [0, 5_000, 9_000]) fail(l, 'alice', 'a', at);
    assert.equal(retryAfter(l, 'alice', 'a', 9_000), 1);
    assert.equal(retryAfter(l, 'alice', 'a', 10_000), 0);
    fail(l, 'alice', 'a', 12_000);
    assert.equal(retryAfter(l, 'alice', 'a', 12_000), 3, '5 000, 9 000, 12 000: wait until 15 000');
  });

  test('per address: failures of any identities add up', () => {
    const l = new FailureLimiter(limits);
    for (const [i, who] of ['a', 'b', 'c', 'd'].entries()) fail(l, who, '10.0.0.9', i);
    assert.equal(retryAfter(l, 'e', '10.0.0.9', 4), 0);
    fail(l, 'e', '10.0.0.9', 4);
    assert.equal(retryAfter(l, 'zed', '10.0.0.9', 4), 10);
    assert.equal(retryAfter(l, 'zed', '10.0.0.8', 4), 0);
  });

  test('a success clears the failures of the identity at that address, not those of the address', () => {
    const l = new FailureLimiter({ perIdentity: 2, perAddress: 3, windowMs: 10_000 });
    fail(l, 'alice', 'a', 0);
    fail(l, 'alice', 'a', 1);
    assert.ok(retryAfter(l, 'alice', 'a', 2) > 0);
    l.begin('alice', 'a').succeed();
    assert.equal(retryAfter(l, 'alice', 'a', 2), 0);
    fail(l, 'mallory', 'a', 3);
    assert.ok(retryAfter(l, 'alice', 'a', 3) > 0, 'the address has 3 failures in the window');
  });

  test('attempts in flight hold places in the address allowance until they end, and each counts once', () => {
    const l = new FailureLimiter({ perIdentity: 3, perAddress: 3, windowMs: 10_000 });
    const [a, b, c] = ['a', 'b', 'c'].map((who) => l.begin(who, '10.0.0.7'));
    assert.equal(a?.retryAfter(0), 0, 'itself and two others in flight: 3, within the limit');
    const d = l.begin('d', '10.0.0.7');
    assert.equal(d.retryAfter(0), 1, 'a fourth comes back in a second, when the others may have ended');
    assert.equal(retryAfter(l, 'e', '10.0.0.6', 0), 0, 'another address is not affected');
    d.end();
    d.end();
    assert.equal(retryAfter(l, 'z', '10.0.0.7', 0), 1, 'a, b and c are still in flight: ending d twice freed one place');
    a?.fail(0);
    a?.fail(0);
    b?.succeed();
    assert.equal(retryAfter(l, 'z', '10.0.0.7', 0), 0, 'one failure, one in flight: 2 of 3');
    c?.fail(0);
    const e = l.begin('e', '10.0.0.7');
    assert.equal(e.retryAfter(0), 0, 'two failures and itself');
    e.fail(0);
    assert.equal(retryAfter(l, 'z', '10.0.0.7', 0), 10, 'three failures, each counted once: the window');
  });

  test('memory is bounded: the oldest keys are forgotten first', () => {
    const l = new FailureLimiter({ perIdentity: 1, perAddress: 1_000_000, windowMs: 60_000 });
    fail(l, 'first', 'address-0', 0);
    assert.ok(retryAfter(l, 'first', 'address-0', 0) > 0);
    for (let i = 1; i <= 60_000; i++) fail(l, 'x', `address-${i}`, 0);
    assert.equal(retryAfter(l, 'first', 'address-0', 0), 0, 'forgotten after 120 000 keys');
    assert.ok(retryAfter(l, 'x', 'address-60000', 0) > 0, 'the newest are kept');
  });
});

runAuthStoreSuite('memory', async () => ({ store: new MemoryAuthStore(), cleanup: async () => {} }));
runAuthStoreSuite('caching over memory', async () => ({ store: new CachingAuthStore(new MemoryAuthStore()), cleanup: async () => {} }));

runAuthStoreSuite('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-auth-'));
  const path = join(dir, 'auth.db');
  let current: AuthStore = new SqliteAuthStore(path);
  return {
    get store() {
      return current;
    },
    reopen: async () => {
      await current.close();
      current = new SqliteAuthStore(path);
      return current;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('CachingAuthStore', () => {
  test('reads are served from the cache until a write, and a read overlapping a write is not kept', async () => {
    const inner = new MemoryAuthStore();
    let reads = 0;
    let gate: Promise<void> | undefined;
    const slow: AuthStore = {
      get: async (kind, id) => {
        reads++;
        const v = await inner.get(kind, id);
        await gate;
        return v as never;
      },
      list: (kind) => inner.list(kind),
      put: (kind, id, value, expect) => inner.put(kind, id, value, expect),
      delete: (kind, id, expect) => inner.delete(kind, id, expect),
      close: () => inner.close(),
    };
    const store = new CachingAuthStore(slow);
    await store.put('token', 't', { status: 'enabled' });
    assert.deepEqual((await store.get('token', 't'))?.value, { status: 'enabled' });
    assert.deepEqual((await store.get('token', 't'))?.value, { status: 'enabled' });
    assert.equal(reads, 1, 'the second read came from the cache');
    // a read that started before a write finishes after it: it must not re-cache the old value
    let release!: () => void;
    gate = new Promise((r) => (release = r));
    await store.put('token', 't', { status: 'enabled', n: 1 });
    const racing = store.get('token', 't');
    await store.put('token', 't', { status: 'disabled' });
    release();
    await racing;
    gate = undefined;
    assert.deepEqual((await store.get('token', 't'))?.value, { status: 'disabled' });
    const copy = await store.get<{ status: string }>('token', 't');
    assert.ok(copy !== undefined);
    copy.value.status = 'mutated';
    assert.deepEqual((await store.get('token', 't'))?.value, { status: 'disabled' }, 'callers get copies');
  });
});

describe('SqliteAuthStore on disk', () => {
  test('auth.db and its -wal/-shm files are readable by the owner only (they hold signing keys and password hashes)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulwark-auth-mode-'));
    const old = process.umask(0o022);
    try {
      const store = new SqliteAuthStore(join(dir, 'auth.db'));
      await store.put('signing-key', 'k', { privateJwk: { d: 'secret' } });
      for (const f of ['auth.db', 'auth.db-wal', 'auth.db-shm']) {
        assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
      }
      await store.close();
    } finally {
      process.umask(old);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
