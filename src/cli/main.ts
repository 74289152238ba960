#!/usr/bin/env node
/** The `bulwark` command: one file per verb. */
import { Command } from 'commander';
import { registerServe } from './serve.js';
import { registerFsck } from './fsck.js';
import { registerConfigDocs } from './config-docs.js';

const program = new Command('bulwark').description('Bulwark: a zero-trust OCI container registry');
registerServe(program);
registerFsck(program);
registerConfigDocs(program);
await program.parseAsync(process.argv);
