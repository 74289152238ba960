/**
 * Assertions on coded registry errors: tests switch on `err.code`, never on messages (STYLE rule 2).
 */
import assert from 'node:assert/strict';
import { isRegistryError, type ErrorCode, type RegistryError } from '../../src/oci/index.js';

function matcher(code: ErrorCode, seen: { error?: RegistryError }): (e: unknown) => true {
  return (e: unknown) => {
    assert.ok(isRegistryError(e), `expected a RegistryError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    seen.error = e;
    return true;
  };
}

/** Asserts `e` is a RegistryError of `code`. */
export function assertRegistryError(e: unknown, code: ErrorCode): asserts e is RegistryError {
  matcher(code, {})(e);
}

/** Awaits `p` and asserts it rejects with a RegistryError of `code`; returns the error. */
export async function rejectsWithCode(p: Promise<unknown>, code: ErrorCode): Promise<RegistryError> {
  const seen: { error?: RegistryError } = {};
  await assert.rejects(p, matcher(code, seen));
  assert.ok(seen.error !== undefined);
  return seen.error;
}

/** Calls `fn` and asserts it throws a RegistryError of `code`; returns the error. */
export function throwsWithCode(fn: () => unknown, code: ErrorCode): RegistryError {
  const seen: { error?: RegistryError } = {};
  assert.throws(fn, matcher(code, seen));
  assert.ok(seen.error !== undefined);
  return seen.error;
}
