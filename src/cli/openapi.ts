import type { Command } from 'commander';

/** `bulwark openapi`: print docs/openapi.yaml, the admin API's description, from the route table. */
export function registerOpenApi(program: Command): void {
  program.command('openapi').description('print the admin API description (OpenAPI 3.1, YAML)').action(async () => {
    // loaded on use: the admin commands should not pay for the server's modules at start
    const { ADMIN_ENDPOINTS, renderOpenApi } = await import('../routes/admin/index.js');
    process.stdout.write(renderOpenApi(ADMIN_ENDPOINTS));
  });
}
