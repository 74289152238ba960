#!/usr/bin/env node
/** The `bulwark` command: one file per verb. */
import { Command } from 'commander';
import { registerServe } from './serve.js';
import { registerFsck } from './fsck.js';
import { registerConfigDocs } from './config-docs.js';
import { registerOpenApi } from './openapi.js';
import { registerToken } from './token.js';
import { registerScopeMap } from './scope-map.js';
import { registerRole } from './role.js';
import { registerFederation } from './federation.js';
import { registerService } from './service.js';
import { registerAccess } from './access.js';
import { registerAdmin } from './admin.js';
import { registerEncryption } from './encryption.js';
import { registerCheckHealth } from './check-health.js';
import { registerGateway } from './gateway.js';

const program = new Command('bulwark').description('Bulwark: a zero-trust OCI container registry');
registerServe(program);
registerFsck(program);
registerConfigDocs(program);
(await import('./login.js')).registerLogin(program);
registerOpenApi(program);
registerToken(program);
registerScopeMap(program);
registerRole(program);
registerFederation(program);
registerService(program);
registerAccess(program);
registerAdmin(program);
registerEncryption(program);
registerCheckHealth(program);
registerGateway(program);
try {
  await program.parseAsync(process.argv);
} catch (e) {
  // One line for people and scripts; the stack only on request (it says nothing to a user).
  process.stderr.write(`bulwark: ${(e as Error).message}\n`);
  if (process.env.BULWARK_DEBUG === '1') process.stderr.write(`${(e as Error).stack ?? ''}\n`);
  process.exitCode = 1;
}
