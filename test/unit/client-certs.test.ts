/** Mutual TLS mapping (ADR 0013): which verified client certificate signs in as which service identity. */
import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import { test } from 'node:test';
import { ClientIdentities, parseClientIdentity } from '../../src/network/index.js';

const FP = 'AB:'.repeat(31) + 'AB';
const cert = (o: { fingerprint256?: string; subjectaltname?: string }): PeerCertificate => ({ fingerprint256: FP.replace(/AB/g, 'CD'), subjectaltname: '', ...o }) as PeerCertificate;

test('entries: a service identity and a fingerprint, SAN URI or SAN DNS name; anything else is refused', () => {
  assert.deepEqual(parseClientIdentity(`service:ci-runner=sha256:${FP}`), { principal: 'service:ci-runner', kind: 'sha256', value: 'ab'.repeat(32) });
  assert.deepEqual(parseClientIdentity('service:ci-runner=uri:spiffe://example.org/ci'), { principal: 'service:ci-runner', kind: 'uri', value: 'spiffe://example.org/ci' });
  assert.deepEqual(parseClientIdentity('service:build-svc=dns:Build.Example.org'), { principal: 'service:build-svc', kind: 'dns', value: 'build.example.org' });
  for (const bad of ['admin:root=sha256:' + 'ab'.repeat(32), 'token:push=uri:spiffe://x', 'service:ci=uri:spiffe://x', 'service:ci-runner=sha256:abcd', 'service:ci-runner=cn:ci', 'service:ci-runner', 'service:ci-runner=dns:*.example.org']) {
    assert.equal(parseClientIdentity(bad), undefined, bad);
  }
});

test('the first matching entry decides; a certificate matching none signs nobody in', () => {
  const ids = new ClientIdentities([`service:pinned-one=sha256:${FP}`, 'service:ci-runner=uri:spiffe://example.org/ci', 'service:build-svc=dns:build.example.org']);
  assert.equal(ids.principalOf(cert({ fingerprint256: FP, subjectaltname: 'URI:spiffe://example.org/ci' })), 'service:pinned-one');
  assert.equal(ids.principalOf(cert({ subjectaltname: 'DNS:other.example.org, URI:spiffe://example.org/ci' })), 'service:ci-runner');
  assert.equal(ids.principalOf(cert({ subjectaltname: 'DNS:BUILD.example.org' })), 'service:build-svc');
  assert.equal(ids.principalOf(cert({ subjectaltname: 'URI:spiffe://example.org/ci/extra, DNS:build.example.org.evil' })), undefined, 'exact matches only');
  assert.equal(ids.principalOf(cert({})), undefined);
});

test('a certificate with a quoted SAN entry (node quotes those holding , " \' or \\) matches by fingerprint only', () => {
  const ids = new ClientIdentities([`service:pinned-one=sha256:${FP}`, 'service:ci-runner=uri:spiffe://example.org/ci']);
  // one URI SAN whose value a CA copied from a request: `a:b, URI:spiffe://example.org/ci, c:d`
  const injected = '"URI:a:b, URI:spiffe://example.org/ci, c:d"';
  assert.equal(ids.principalOf(cert({ subjectaltname: injected })), undefined);
  assert.equal(ids.principalOf(cert({ subjectaltname: `URI:spiffe://example.org/ci, ${injected}` })), undefined, 'any quoted entry: no SAN matching at all');
  assert.equal(ids.principalOf(cert({ fingerprint256: FP, subjectaltname: injected })), 'service:pinned-one');
  assert.equal(parseClientIdentity('service:ci-runner=uri:spiffe://x/a,b'), undefined);
});
